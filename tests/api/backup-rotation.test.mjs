// Backup/restore (same vault after purge; another vault; conflicts;
// tampering), rotation, and rotation policies enforced by the server's
// own sweeper (time driven by --insecure-test-clock).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  startVault, stopVault, keyClient, cryptoClient, raw, token, keyName, b64u, waitFor,
} from './lib/vault.mjs';

const POLL = { intervalInMs: 200 };
const DAY = 86400;

describe('backup and restore', { timeout: 300000 }, () => {
  let v, other;
  before(async () => { v = await startVault(); other = await startVault(); });
  after(async () => { await stopVault(v); await stopVault(other); });

  test('restore after purge brings back every version; old ciphertexts unwrap', async () => {
    const kc = keyClient(v);
    const name = keyName('bk');
    const v1 = await kc.createRsaKey(name, { keySize: 2048, tags: { a: '1' } });
    const v2 = await kc.rotateKey(name);
    await kc.updateKeyProperties(name, v1.properties.version, { enabled: false });
    const dek = crypto.randomBytes(32);
    const w2 = await cryptoClient(v, v2.id).wrapKey('RSA-OAEP', dek);
    const backup = await kc.backupKey(name);
    assert.ok(backup.length > 100);
    assert.equal(Buffer.from(backup).indexOf(Buffer.from(name)), -1, 'the backup is opaque');

    // restore onto the existing (live) name: 409
    await assert.rejects(kc.restoreKeyBackup(backup), (e) => e.statusCode === 409);
    await (await kc.beginDeleteKey(name, POLL)).pollUntilDone();
    await assert.rejects(kc.restoreKeyBackup(backup), (e) => e.statusCode === 409, 'deleted name: 409');
    await kc.purgeDeletedKey(name);
    await waitFor(async () => (await raw(v, 'GET', `/deletedkeys/${name}`, { apiVersion: true, token: await token(v) })).status === 404);

    const restored = await kc.restoreKeyBackup(backup);
    assert.equal(restored.id, v2.id);
    const versions = [];
    for await (const p of kc.listPropertiesOfKeyVersions(name)) versions.push(p);
    assert.deepEqual(versions.map((p) => p.version).sort(), [v1.properties.version, v2.properties.version].sort());
    const p1 = versions.find((p) => p.version === v1.properties.version);
    assert.equal(p1.enabled, false, 'attributes come back');
    assert.deepEqual(restored.properties.tags, { a: '1' });
    const u = await cryptoClient(v, v2.id).unwrapKey('RSA-OAEP', w2.result);
    assert.ok(Buffer.from(u.result).equals(dek), 'an old ciphertext unwraps after restore');
  });

  test('another vault cannot restore it; an altered blob is 400', async () => {
    const kc = keyClient(v);
    const name = keyName('bk2');
    await kc.createEcKey(name, { curve: 'P-256' });
    const backup = Buffer.from(await kc.backupKey(name));
    await assert.rejects(keyClient(other).restoreKeyBackup(backup), (e) => e.statusCode === 400);
    const g = await raw(other, 'GET', `/keys/${name}`, { apiVersion: true, token: await token(other) });
    assert.equal(g.status, 404);
    await (await kc.beginDeleteKey(name, POLL)).pollUntilDone();
    await kc.purgeDeletedKey(name);
    for (const at of [20, backup.length - 5]) {
      const bad = Buffer.from(backup); bad[at] ^= 1;
      const r = await raw(v, 'POST', '/keys/restore', { apiVersion: true, token: await token(v), body: { value: b64u(bad) } });
      assert.equal(r.status, 400, r.text);
    }
    const r = await raw(v, 'POST', '/keys/restore', { apiVersion: true, token: await token(v), body: { value: b64u(backup.subarray(0, 40)) } });
    assert.equal(r.status, 400);
    assert.equal((await raw(v, 'GET', `/keys/${name}`, { apiVersion: true, token: await token(v) })).status, 404);
    await keyClient(v).restoreKeyBackup(backup);
  });
});

describe('rotation and rotation policies', { timeout: 300000 }, () => {
  let v;
  before(async () => { v = await startVault({ clock: true }); });
  after(async () => { await stopVault(v); });

  test('rotate keeps type, size and key_ops; versionless wrap uses the newest version', async () => {
    const kc = keyClient(v);
    const name = keyName('rot');
    const k1 = await kc.createRsaKey(name, { keySize: 3072, keyOps: ['wrapKey', 'unwrapKey'] });
    const dek = crypto.randomBytes(32);
    const w1 = await cryptoClient(v, k1.id).wrapKey('RSA-OAEP', dek);
    const k2 = await kc.rotateKey(name);
    assert.notEqual(k2.properties.version, k1.properties.version);
    assert.equal(k2.key.n.length, 384);
    assert.deepEqual(k2.keyOperations, ['wrapKey', 'unwrapKey']);
    const r = await raw(v, 'POST', `/keys/${name}/wrapkey`, { apiVersion: true, token: await token(v), body: { alg: 'RSA-OAEP', value: b64u(dek) } });
    assert.equal(r.status, 200);
    assert.equal(r.json.kid, k2.id);
    assert.ok(Buffer.from((await cryptoClient(v, k1.id).unwrapKey('RSA-OAEP', w1.result)).result).equals(dek));
  });

  test('policy: default shape, Azure minimums, round trip', async () => {
    const kc = keyClient(v);
    const name = keyName('pol');
    await kc.createRsaKey(name);
    const d = await raw(v, 'GET', `/keys/${name}/rotationpolicy`, { apiVersion: true, token: await token(v) });
    assert.equal(d.status, 200);
    assert.equal(d.json.id, `${v.url}/keys/${name}/rotationpolicy`);
    assert.deepEqual(d.json.lifetimeActions, [{ trigger: { timeBeforeExpiry: 'P30D' }, action: { type: 'Notify' } }]);
    const put = (body) => raw(v, 'PUT', `/keys/${name}/rotationpolicy`, { apiVersion: true, token: await_tok, body });
    const await_tok = await token(v);
    for (const bad of [
      { lifetimeActions: [{ trigger: { timeAfterCreate: 'P6D' }, action: { type: 'Rotate' } }] },
      { lifetimeActions: [], attributes: { expiryTime: 'P27D' } },
      { lifetimeActions: [{ trigger: { timeAfterCreate: 'P30D' }, action: { type: 'Notify' } }] },
      { lifetimeActions: [{ trigger: { timeAfterCreate: 'P30D' }, action: { type: 'Rotate' } }, { trigger: { timeBeforeExpiry: 'P30D' }, action: { type: 'Rotate' } }] },
      { lifetimeActions: [{ trigger: { timeAfterCreate: 'thirty days' }, action: { type: 'Rotate' } }] },
    ]) {
      const r = await put(bad);
      assert.equal(r.status, 400, JSON.stringify(bad));
    }
    const p = await kc.updateKeyRotationPolicy(name, {
      lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P30D' }, { action: 'Notify', timeBeforeExpiry: 'P10D' }],
      expiresIn: 'P90D',
    });
    assert.equal(p.expiresIn, 'P90D');
    const g = await kc.getKeyRotationPolicy(name);
    assert.equal(g.expiresIn, 'P90D');
    assert.deepEqual(g.lifetimeActions.map((a) => [a.action, a.timeAfterCreate, a.timeBeforeExpiry]),
      [['Rotate', 'P30D', undefined], ['Notify', undefined, 'P10D']]);
    assert.ok(g.createdOn instanceof Date);
  });

  test('the server rotates a due key by itself, with exp from the policy, and audits it', async () => {
    const kc = keyClient(v);
    const name = keyName('auto');
    const k1 = await kc.createEcKey(name, { curve: 'P-384' });
    await kc.updateKeyRotationPolicy(name, { lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P7D' }], expiresIn: 'P28D' });
    const count = async () => { let n = 0; for await (const _ of kc.listPropertiesOfKeyVersions(name)) n++; return n; };
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(await count(), 1, 'not due yet: no rotation');
    v.setClockOffset(7 * DAY + 60);
    await waitFor(async () => (await count()) === 2, { timeoutMs: 15000 });
    const k2 = await kc.getKey(name);
    assert.notEqual(k2.properties.version, k1.properties.version);
    assert.equal(k2.key.crv, 'P-384');
    const created = k2.properties.createdOn.getTime() / 1000;
    assert.equal(k2.properties.expiresOn.getTime() / 1000, created + 28 * DAY);
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(await count(), 2, 'rotated once, not again');
    const audit = fs.readFileSync(path.join(v.dir, 'audit', 'audit.log'), 'utf8');
    const line = audit.split('\n').find((l) => l.includes('"RotateKey"') && l.includes(k2.properties.version));
    assert.ok(line, 'the automatic rotation is in the audit log');
    assert.match(line, /"trigger":"timeAfterCreate"/);
  });
});
