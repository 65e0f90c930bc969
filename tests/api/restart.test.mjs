// Durability across a restart on the same data dir: keys, versions,
// attributes, tags and soft-delete state survive, and ciphertext wrapped
// before the restart unwraps after it (the blobs reopen in the token).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  startVault, stopVault, keyClient, cryptoClient, raw, token, keyName, rejectsWithStatus,
} from './lib/vault.mjs';

const POLL = { intervalInMs: 200 };

describe('restart on the same data dir', { timeout: 120000 }, () => {
  let v;
  const s = {};

  before(async () => {
    v = await startVault();
    const kc = keyClient(v);
    s.name = keyName('durable');
    s.v1 = await kc.createRsaKey(s.name, { keySize: 2048 });
    s.v2 = await kc.createRsaKey(s.name, { keySize: 2048, tags: { gen: '2' } });
    s.ec = await kc.createEcKey(keyName('durable-ec'), { curve: 'P-256' });
    s.disabled = await kc.createRsaKey(keyName('durable-off'), { enabled: false });
    s.deleted = await kc.createRsaKey(keyName('durable-del'));
    s.deletedWrap = [];
    for (const k of [s.v1, s.v2, s.deleted]) {
      const dek = crypto.randomBytes(32);
      for (const alg of ['RSA-OAEP', 'RSA-OAEP-256', 'RSA1_5']) {
        const w = await cryptoClient(v, k.id).wrapKey(alg, dek);
        s.deletedWrap.push({ id: k.id, alg, dek, ct: w.result });
      }
    }
    await (await kc.beginDeleteKey(s.deleted.name, POLL)).pollUntilDone();
    s.deletedBefore = await kc.getDeletedKey(s.deleted.name);
    s.listBefore = (await raw(v, 'GET', '/keys?maxresults=25', { apiVersion: true, token: await token(v) })).json;
    const stopped = await v.stop();
    s.exit = stopped;
    await v.start();
  });
  after(async () => { await stopVault(v); });

  test('serve exits 0 on SIGTERM', () => {
    assert.equal(s.exit?.code, 0, `exit ${JSON.stringify(s.exit)}`);
  });

  test('ciphertext wrapped with each version before the restart unwraps after it (every algorithm)', async () => {
    for (const { id, alg, dek, ct } of s.deletedWrap.filter((w) => !w.id.includes(s.deleted.name))) {
      const u = await cryptoClient(v, id).unwrapKey(alg, ct);
      assert.deepEqual(Buffer.from(u.result), dek, `${id} ${alg}`);
    }
  });

  test('keys, versions, attributes and tags survive', async () => {
    const kc = keyClient(v);
    const latest = await kc.getKey(s.name);
    assert.equal(latest.properties.version, s.v2.properties.version);
    assert.deepEqual(latest.properties.tags, { gen: '2' });
    assert.deepEqual(Buffer.from(latest.key.n), Buffer.from(s.v2.key.n));
    const old = await kc.getKey(s.name, { version: s.v1.properties.version });
    assert.deepEqual(Buffer.from(old.key.n), Buffer.from(s.v1.key.n));
    const versions = [];
    for await (const p of kc.listPropertiesOfKeyVersions(s.name)) versions.push(p.version);
    assert.deepEqual(versions.sort(), [s.v1.properties.version, s.v2.properties.version].sort());
    const ec = await kc.getKey(s.ec.name);
    assert.deepEqual(Buffer.from(ec.key.x), Buffer.from(s.ec.key.x));
    const sig = await cryptoClient(v, ec.id).sign('ES256', crypto.createHash('sha256').update('after').digest());
    assert.equal(sig.result.length, 64);
    const off = await kc.getKey(s.disabled.name);
    assert.equal(off.properties.enabled, false, 'disabled stays disabled');
    const listAfter = (await raw(v, 'GET', '/keys?maxresults=25', { apiVersion: true, token: await token(v) })).json;
    const ids = (l) => l.value.map((i) => i.kid).sort();
    assert.deepEqual(ids(listAfter), ids(s.listBefore));
  });

  test('the deleted key is still deleted, with the same dates, and recovers with working versions', async () => {
    const kc = keyClient(v);
    await rejectsWithStatus(kc.getKey(s.deleted.name), 404, assert);
    const d = await kc.getDeletedKey(s.deleted.name);
    assert.equal(d.properties.recoveryId, s.deletedBefore.properties.recoveryId);
    assert.equal(d.properties.deletedOn.getTime(), s.deletedBefore.properties.deletedOn.getTime());
    assert.equal(d.properties.scheduledPurgeDate.getTime(), s.deletedBefore.properties.scheduledPurgeDate.getTime());
    await (await kc.beginRecoverDeletedKey(s.deleted.name, POLL)).pollUntilDone();
    for (const { id, alg, dek, ct } of s.deletedWrap.filter((w) => w.id.includes(s.deleted.name))) {
      const u = await cryptoClient(v, id).unwrapKey(alg, ct);
      assert.deepEqual(Buffer.from(u.result), dek, `${id} ${alg}`);
    }
  });

  test('tokens issued before the restart are still accepted (the signing key lives in the token)', async () => {
    const t = await token(v);
    await v.restart();
    const r = await raw(v, 'GET', `/keys/${s.name}`, { apiVersion: true, token: t });
    assert.equal(r.status, 200, r.text);
  });
});
