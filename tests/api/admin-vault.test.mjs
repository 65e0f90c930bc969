// Vault management over /admin/vault: defaults, retention bounds, the
// recovery level keys report, purge protection (one way only), the server's
// own purge at scheduledPurgeDate (driven by the insecure test clock), and
// that the management API is for authenticated administrators only.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startVault, stopVault, keyClient, raw, token, keyName, waitFor, rejectsWithStatus,
} from './lib/vault.mjs';

const POLL = { intervalInMs: 200 };

function assertAzureError(r, status) {
  assert.equal(r.status, status, r.text);
  assert.match(r.headers['content-type'] || '', /^application\/json/);
  assert.equal(typeof r.json?.error?.code, 'string', r.text);
  assert.equal(typeof r.json.error.message, 'string', r.text);
  assert.ok(r.json.error.message.length > 0);
}

describe('vault administration', { timeout: 180000 }, () => {
  let v;
  let kc;
  let adminToken;

  const getVault = async () => {
    const r = await raw(v, 'GET', '/admin/vault', { token: adminToken });
    assert.equal(r.status, 200, r.text);
    return r.json.properties;
  };
  const patchVault = (properties, t = adminToken) => raw(v, 'PATCH', '/admin/vault', { token: t, body: { properties } });

  // Deletes a fresh key and returns its DeletedKey as the SDK sees it.
  const deletedKey = async (prefix) => {
    const name = keyName(prefix);
    await kc.createRsaKey(name);
    await (await kc.beginDeleteKey(name, POLL)).pollUntilDone();
    return kc.getDeletedKey(name);
  };

  // Moves the server clock past a deleted key's scheduledPurgeDate and waits
  // for the server's own sweep; the clock goes back to real time afterwards.
  const expectServerPurge = async (names, { liveName } = {}) => {
    let latest = 0;
    for (const name of names) {
      const dk = await kc.getDeletedKey(name);
      latest = Math.max(latest, dk.properties.scheduledPurgeDate.getTime());
    }
    v.setClockOffset(Math.ceil((latest - Date.now()) / 1000) + 120);
    try {
      // Tokens issued before the jump are expired in server time: get a new one.
      const t = await waitFor(async () => { try { return await token(v); } catch { return null; } }, { timeoutMs: 5000 });
      assert.ok(t, 'token endpoint works with the moved clock');
      for (const name of names) {
        const gone = await waitFor(async () => {
          const r = await raw(v, 'GET', `/deletedkeys/${name}`, { apiVersion: true, token: t });
          return r.status === 404 ? r : null;
        }, { timeoutMs: 15000, intervalMs: 500 });
        assert.ok(gone, `deleted key ${name} was not purged by the server after its scheduledPurgeDate`);
        assert.equal(gone.json?.error?.code, 'KeyNotFound');
        const live = await raw(v, 'GET', `/keys/${name}`, { apiVersion: true, token: t });
        assert.equal(live.status, 404);
      }
      if (liveName) {
        const l = await raw(v, 'GET', `/keys/${liveName}`, { apiVersion: true, token: t });
        assert.equal(l.status, 200, 'a live key is never purged');
      }
    } finally {
      v.setClockOffset(0);
    }
  };

  before(async () => {
    v = await startVault({ clock: true });
    kc = keyClient(v);
    adminToken = await token(v);
  });
  after(async () => { await stopVault(v); });

  test('GET /admin/vault shows the defaults: soft delete on, 90 days, no purge protection', async () => {
    const p = await getVault();
    assert.equal(p.enableSoftDelete, true);
    assert.equal(p.softDeleteRetentionInDays, 90);
    assert.equal(p.enablePurgeProtection, false);
    assert.equal(p.tenantId, v.admin.tenantId);
    assert.equal(p.vaultUri.replace(/\/$/, ''), v.url);
    assert.ok(Array.isArray(p.accessPolicies));
  });

  test('PATCH retention accepts 7..90 and refuses 6 and 91 with 400 in the Azure error envelope', async () => {
    for (const bad of [6, 91, 0, -1]) {
      const r = await patchVault({ softDeleteRetentionInDays: bad });
      assertAzureError(r, 400);
      assert.equal((await getVault()).softDeleteRetentionInDays, 90, `unchanged after ${bad}`);
    }
    const wrongType = await patchVault({ softDeleteRetentionInDays: '30' });
    assertAzureError(wrongType, 400);
    for (const good of [7, 90]) {
      const r = await patchVault({ softDeleteRetentionInDays: good });
      assert.equal(r.status, 200, r.text);
      assert.equal((await getVault()).softDeleteRetentionInDays, good);
    }
  });

  test('soft delete cannot be turned off', async () => {
    const r = await patchVault({ enableSoftDelete: false });
    assertAzureError(r, 400);
    assert.equal((await getVault()).enableSoftDelete, true);
  });

  test('keys report Recoverable+Purgeable/90 by default and CustomizedRecoverable+Purgeable/30 at 30 days', async () => {
    const k90 = await kc.createRsaKey(keyName('rl90'));
    assert.equal(k90.properties.recoveryLevel, 'Recoverable+Purgeable');
    assert.equal(k90.properties.recoverableDays, 90);
    const r = await patchVault({ softDeleteRetentionInDays: 30 });
    assert.equal(r.status, 200, r.text);
    const k30 = await kc.createRsaKey(keyName('rl30'));
    assert.equal(k30.properties.recoveryLevel, 'CustomizedRecoverable+Purgeable');
    assert.equal(k30.properties.recoverableDays, 30);
    const again = await kc.getKey(k90.name);
    assert.equal(again.properties.recoveryLevel, 'CustomizedRecoverable+Purgeable', 'existing keys follow the vault setting');
    assert.equal(again.properties.recoverableDays, 30);
    const dk = await deletedKey('rl30del');
    const days = (dk.properties.scheduledPurgeDate.getTime() - dk.properties.deletedOn.getTime()) / 86400000;
    assert.equal(days, 30, 'scheduledPurgeDate = deletedDate + 30 days');
  });

  test('the server purges a deleted key by itself once the clock passes scheduledPurgeDate', async () => {
    const dk = await deletedKey('autopurge');
    const other = await deletedKey('notyet');
    // Both were deleted within seconds, so both are due; a live key must stay.
    const live = await kc.createRsaKey(keyName('stays'));
    await expectServerPurge([dk.name, other.name], { liveName: live.name });
  });

  test('a key deleted before the clock moves is still recoverable while before scheduledPurgeDate', async () => {
    const dk = await deletedKey('early');
    v.setClockOffset(86400); // one day later: well inside 30 days
    try {
      await new Promise((r) => setTimeout(r, 2500)); // let a sweep or two run
      const t = await token(v);
      const r = await raw(v, 'GET', `/deletedkeys/${dk.name}`, { apiVersion: true, token: t });
      assert.equal(r.status, 200, 'not purged early');
    } finally {
      v.setClockOffset(0);
    }
    await (await kc.beginRecoverDeletedKey(dk.name, POLL)).pollUntilDone();
  });

  test('with purge protection on: keys report (Customized)Recoverable, purge is 403 Forbidden and the key stays recoverable', async () => {
    const dk = await deletedKey('pp');
    let r = await patchVault({ enablePurgeProtection: true });
    assert.equal(r.status, 200, r.text);
    assert.equal((await getVault()).enablePurgeProtection, true);
    const k = await kc.createRsaKey(keyName('pp30'));
    assert.equal(k.properties.recoveryLevel, 'CustomizedRecoverable');
    assert.equal(k.properties.recoverableDays, 30);
    r = await patchVault({ softDeleteRetentionInDays: 90 });
    assert.equal(r.status, 200, r.text);
    const k90 = await kc.getKey(k.name);
    assert.equal(k90.properties.recoveryLevel, 'Recoverable');
    assert.equal(k90.properties.recoverableDays, 90);

    const e = await rejectsWithStatus(kc.purgeDeletedKey(dk.name), 403, assert);
    assert.equal(e.code, 'Forbidden');
    const rp = await raw(v, 'DELETE', `/deletedkeys/${dk.name}`, { apiVersion: true, token: adminToken });
    assertAzureError(rp, 403);
    assert.equal(rp.json.error.code, 'Forbidden');
    assert.match(rp.json.error.message, /purge protection/i);
    const still = await kc.getDeletedKey(dk.name);
    assert.equal(still.name, dk.name);
    const rec = await (await kc.beginRecoverDeletedKey(dk.name, POLL)).pollUntilDone();
    assert.equal(rec.name, dk.name);
  });

  test('purge protection cannot be turned off (400, stays on)', async () => {
    const r = await patchVault({ enablePurgeProtection: false });
    assertAzureError(r, 400);
    assert.equal((await getVault()).enablePurgeProtection, true);
  });

  test('with purge protection the server still purges at scheduledPurgeDate', async () => {
    const r = await patchVault({ softDeleteRetentionInDays: 7 });
    assert.equal(r.status, 200, r.text);
    const dk = await deletedKey('ppauto');
    const days = (dk.properties.scheduledPurgeDate.getTime() - dk.properties.deletedOn.getTime()) / 86400000;
    assert.equal(days, 7);
    await expectServerPurge([dk.name]);
  });

  test('/admin/vault without a token is 401; with a bad token 401; a non-admin identity gets 403', async () => {
    const r = await raw(v, 'GET', '/admin/vault');
    assertAzureError(r, 401);
    const p = await patchVault({ softDeleteRetentionInDays: 8 }, null);
    assertAzureError(p, 401);
    const bad = await raw(v, 'GET', '/admin/vault', { token: adminToken.slice(0, -4) + 'AAAA' });
    assert.equal(bad.status, 401);
    const created = await raw(v, 'POST', '/admin/identities', { token: adminToken, body: { displayName: 'not-an-admin' } });
    assert.equal(created.status, 201, created.text);
    const who = created.json;
    assert.ok(who.clientId && who.clientSecret && who.objectId);
    const t = await token(v, { ...who, tenantId: who.tenantId || v.admin.tenantId });
    const g = await raw(v, 'GET', '/admin/vault', { token: t });
    assertAzureError(g, 403);
    const pt = await patchVault({ softDeleteRetentionInDays: 8 }, t);
    assertAzureError(pt, 403);
    assert.equal((await getVault()).softDeleteRetentionInDays, 7, 'nothing changed');
  });
});
