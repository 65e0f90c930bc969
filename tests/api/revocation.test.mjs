// Revocation under concurrent traffic: workers wrap and unwrap in a loop
// with one identity's token while the policy is deleted (by the CLI, as an
// administrator would); once the delete is acknowledged, no request of that
// identity that starts afterwards succeeds. Re-granting restores access to
// the same key and old ciphertexts unwrap to the same DEK. Deleting the
// identity makes its (unexpired) token worthless on the very next request.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { startVault, stopVault, raw, token, p11vault, keyName, sleep, API_VERSION } from './lib/vault.mjs';
import { rawKA, closeKeepAlive } from './lib/identity.mjs';

const WORKERS = 4;

describe('revocation and re-grant under concurrent traffic', { timeout: 120000 }, () => {
  let v;
  let id;
  let idTok;
  let key;
  let ver;
  const dek = crypto.randomBytes(32);
  let oldWrapped;

  const wrap = (tok, value = dek) => rawKA(v, 'POST', `/keys/${key}/wrapkey?api-version=${API_VERSION}`,
    { token: tok, body: { alg: 'RSA-OAEP-256', value: value.toString('base64url') } });
  const unwrap = (tok, value) => rawKA(v, 'POST', `/keys/${key}/${ver}/unwrapkey?api-version=${API_VERSION}`,
    { token: tok, body: { alg: 'RSA-OAEP-256', value } });

  // Runs the workers until stop() and returns [{t0, t1, status, op}].
  function traffic(tok) {
    const log = [];
    let running = true;
    const worker = async (w) => {
      for (let i = 0; running; i++) {
        const t0 = performance.now();
        const r = (i + w) % 2 ? await wrap(tok) : await unwrap(tok, oldWrapped);
        log.push({ t0, t1: performance.now(), status: r.status, op: (i + w) % 2 ? 'wrap' : 'unwrap', text: r.text });
      }
    };
    const done = Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
    return { log, stop: async () => { running = false; await done; return log; } };
  }

  before(async () => {
    v = await startVault();
    const c = await p11vault(['identity', 'create', '--name', 'disk-encryption-set', '--data', v.dir]);
    assert.equal(c.code, 0, c.stderr);
    id = JSON.parse(c.stdout);
    const s = await p11vault(['policy', 'set', '--object-id', id.objectId, '--key-permissions', 'get', 'wrapKey', 'unwrapKey', '--data', v.dir]);
    assert.equal(s.code, 0, s.stderr);
    key = keyName('rev');
    const k = await raw(v, 'POST', `/keys/${key}/create?api-version=${API_VERSION}`, { token: await token(v), body: { kty: 'RSA', key_size: 2048 } });
    assert.equal(k.status, 200, k.text);
    ver = k.json.key.kid.split('/').pop();
    idTok = await token(v, id);
    const w = await wrap(idTok);
    assert.equal(w.status, 200, w.text);
    oldWrapped = w.json.value;
  });
  after(async () => { closeKeepAlive(v); await stopVault(v); });

  test('policy delete (CLI) during a wrap/unwrap loop: after the acknowledgement every request of the identity is 403', async () => {
    const t = traffic(idTok);
    await sleep(300);
    const d = await p11vault(['policy', 'delete', '--object-id', id.objectId, '--data', v.dir]);
    const ack = performance.now();
    assert.equal(d.code, 0, d.stderr);
    await sleep(400);
    const log = await t.stop();
    const before_ = log.filter((e) => e.t1 < ack);
    const after_ = log.filter((e) => e.t0 > ack);
    assert.ok(before_.some((e) => e.status === 200), 'requests succeeded before the revocation');
    assert.ok(after_.length >= 8, `enough requests after the acknowledgement (${after_.length})`);
    const leaked = after_.filter((e) => e.status !== 403);
    assert.equal(leaked.length, 0, `requests started after the acknowledged delete that did not get 403: ${leaked.map((e) => `${e.op} ${e.status}`).join(', ')}`);
    for (const e of after_.slice(0, 4)) {
      assert.match(JSON.parse(e.text).error.message, new RegExp(`does not have keys (wrapKey|unwrapKey) permission`));
    }
    assert.ok(log.every((e) => e.status === 200 || e.status === 403), `only 200/403: ${[...new Set(log.map((e) => e.status))]}`);
    const list = JSON.parse((await p11vault(['policy', 'list', '--data', v.dir])).stdout);
    assert.ok(!list.some((p) => p.objectId === id.objectId), 'policy list no longer shows it');
  });

  test('policy set again restores access to the same key; the ciphertext from before unwraps to the same DEK', async () => {
    const s = await p11vault(['policy', 'set', '--object-id', id.objectId, '--key-permissions', 'get', 'wrapKey', 'unwrapKey', '--data', v.dir]);
    assert.equal(s.code, 0, s.stderr);
    const u = await unwrap(idTok, oldWrapped);
    assert.equal(u.status, 200, u.text);
    assert.ok(Buffer.from(u.json.value, 'base64url').equals(dek), 'same DEK');
    const w = await wrap(idTok);
    assert.equal(w.status, 200, w.text);
  });

  test('revoke and re-grant repeatedly: each change holds from the next request', async () => {
    const adminTok = await token(v);
    const body = (keys) => ({ properties: { accessPolicies: [{ tenantId: v.admin.tenantId, objectId: id.objectId, permissions: { keys } }] } });
    for (let i = 0; i < 5; i++) {
      const del = await rawKA(v, 'PUT', '/admin/vault/accessPolicies/remove', { token: adminTok, body: body([]) });
      assert.equal(del.status, 200, del.text);
      assert.equal((await unwrap(idTok, oldWrapped)).status, 403, `round ${i}: revoked`);
      const add = await rawKA(v, 'PUT', '/admin/vault/accessPolicies/add', { token: adminTok, body: body(['wrapKey', 'unwrapKey']) });
      assert.equal(add.status, 200, add.text);
      assert.equal((await unwrap(idTok, oldWrapped)).status, 200, `round ${i}: re-granted`);
      // removing one permission leaves the others
      const rm = await rawKA(v, 'PUT', '/admin/vault/accessPolicies/remove', { token: adminTok, body: body(['unwrapKey']) });
      assert.equal(rm.status, 200, rm.text);
      assert.equal((await unwrap(idTok, oldWrapped)).status, 403, `round ${i}: unwrapKey removed`);
      assert.equal((await wrap(idTok)).status, 200, `round ${i}: wrapKey kept`);
      const back = await rawKA(v, 'PUT', '/admin/vault/accessPolicies/add', { token: adminTok, body: body(['unwrapKey']) });
      assert.equal(back.status, 200, back.text);
    }
  });

  test('identity delete during traffic: after the acknowledgement its token gets 401 with the challenge; its secret no longer gets tokens', async () => {
    const adminTok = await token(v);
    const t = traffic(idTok);
    await sleep(300);
    const d = await raw(v, 'DELETE', `/admin/identities/${id.objectId}`, { token: adminTok });
    const ack = performance.now();
    assert.equal(d.status, 200, d.text);
    await sleep(400);
    const log = await t.stop();
    assert.ok(log.some((e) => e.t1 < ack && e.status === 200), 'requests succeeded before');
    const after_ = log.filter((e) => e.t0 > ack);
    assert.ok(after_.length >= 8, `enough requests after (${after_.length})`);
    const leaked = after_.filter((e) => e.status !== 401);
    assert.equal(leaked.length, 0, `after the identity was deleted: ${leaked.map((e) => `${e.op} ${e.status}`).join(', ')}`);
    const r = await raw(v, 'POST', `/keys/${key}/wrapkey?api-version=${API_VERSION}`, { token: idTok, body: { alg: 'RSA-OAEP-256', value: dek.toString('base64url') } });
    assert.equal(r.status, 401);
    assert.match(r.headers['www-authenticate'] || '', /^Bearer authorization="/);
    const tr = await raw(v, 'POST', `/${v.admin.tenantId}/oauth2/v2.0/token`, {
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: id.clientId, client_secret: id.clientSecret, scope: 'https://vault.azure.net/.default' }).toString(),
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(tr.status, 401, tr.text);
    assert.equal(tr.json.error, 'invalid_client');
    const list = JSON.parse((await p11vault(['identity', 'list', '--data', v.dir])).stdout);
    assert.ok(!list.value.some((i) => i.objectId === id.objectId), 'identity list no longer shows it');
    const pol = JSON.parse((await p11vault(['policy', 'list', '--data', v.dir])).stdout);
    assert.ok(!pol.some((p) => p.objectId === id.objectId), 'its access policy went with it');
  });

  test('a restart keeps the revocation (durable before acknowledged)', async () => {
    await v.restart();
    closeKeepAlive(v);
    const r = await wrap(idTok);
    assert.equal(r.status, 401, r.text);
    const pol = JSON.parse((await p11vault(['policy', 'list', '--data', v.dir])).stdout);
    assert.ok(!pol.some((p) => p.objectId === id.objectId));
  });
});
