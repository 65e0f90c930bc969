// The authorization matrix's vault dimension: an appliance with a vault
// domain, two vaults made through the management API (alpha, beta) beside
// the default vault, the same key names in all three. An identity holding
// exactly one key permission in alpha gets that operation in alpha, and
// 403 Forbidden (naming the vault) for it in beta and in the default
// vault, where the keys it targets exist, so a missing check would show
// as a 200. One holding "all" in beta only is refused everything in
// alpha. Removing a policy in alpha refuses the next request there and
// changes nothing in beta. The vault is chosen by the Host header, as a
// client reaching NAME.<vault domain> sends it.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startVault, stopVault, raw, token, keyName, API_VERSION } from './lib/vault.mjs';

const DOMAIN = 'vault.p11vault.test';
const KV = '2022-07-01';
const RG = '2021-04-01';
const MGMT_SCOPE = 'https://management.p11vault//.default';
const b64u = (b) => Buffer.from(b).toString('base64url');

describe('authorization matrix: the vault dimension', { timeout: 180000 }, () => {
  let v;
  let mgmt;
  let sub;
  let data;     // the administrator's data-plane token
  let resource; // the data plane's audience (resource= of the config)
  const hostOf = (vault) => (vault === 'default' ? `127.0.0.1:${v.port}` : `${vault}.${DOMAIN}:${v.port}`);
  const req = (vault, method, p, tok, body) => raw(v, method, `${p}${p.includes('?') ? '&' : '?'}api-version=${API_VERSION}`,
    { token: tok, body, headers: { Host: hostOf(vault) } });
  const arm = (method, p, body, apiVersion) => raw(v, method, `/subscriptions/${sub}${p}?api-version=${apiVersion}`, { token: mgmt, body });
  const vaultPath = (name) => `/resourceGroups/rg-m/providers/Microsoft.KeyVault/vaults/${name}`;
  const fx = {}; // per vault: the RSA key's version, a wrapped DEK, the EC key's version

  before(async () => {
    v = await startVault({ initArgs: ['--vault-domain', DOMAIN] });
    const conf = fs.readFileSync(path.join(v.dir, 'p11vault.conf'), 'utf8');
    resource = /^resource\s*=\s*(\S+)/m.exec(conf)[1];
    mgmt = await token(v, v.admin, { scope: MGMT_SCOPE });
    data = await token(v, v.admin, { scope: `${resource}/.default` });
    const subs = await raw(v, 'GET', '/subscriptions?api-version=2019-11-01', { token: mgmt });
    assert.equal(subs.status, 200, subs.text);
    sub = subs.json.value[0].subscriptionId;
    let r = await arm('PUT', '/resourcegroups/rg-m', { location: 'local' }, RG);
    assert.equal(r.status, 201, r.text);
    for (const name of ['alpha', 'beta']) {
      r = await arm('PUT', vaultPath(name), {
        location: 'local',
        properties: {
          tenantId: v.admin.tenantId, sku: { family: 'A', name: 'standard' },
          accessPolicies: [{ tenantId: v.admin.tenantId, objectId: v.admin.objectId, permissions: { keys: ['all'] } }],
        },
      }, KV);
      assert.equal(r.status, 201, r.text);
    }
    for (const vault of ['alpha', 'beta', 'default']) {
      const k = await req(vault, 'POST', '/keys/k/create', data, { kty: 'RSA', key_size: 2048 });
      assert.equal(k.status, 200, `${vault}: ${k.text}`);
      const e = await req(vault, 'POST', '/keys/e/create', data, { kty: 'EC', crv: 'P-256' });
      assert.equal(e.status, 200, `${vault}: ${e.text}`);
      const w = await req(vault, 'POST', '/keys/k/wrapkey', data, { alg: 'RSA-OAEP', value: b64u(crypto.randomBytes(32)) });
      assert.equal(w.status, 200, w.text);
      fx[vault] = { kVer: k.json.key.kid.split('/').pop(), wrapped: w.json.value };
    }
  });
  after(async () => { await stopVault(v); });

  // One operation per permission: [permission, method, path, body, the
  // allowed status]; {V} stands for the target vault's fixtures.
  const ops = [
    ['get', 'GET', () => '/keys/k', undefined, 200],
    ['list', 'GET', () => '/keys', undefined, 200],
    ['create', 'POST', () => `/keys/${keyName('vc')}/create`, { kty: 'EC', crv: 'P-256' }, 200],
    ['update', 'PATCH', () => '/keys/e', { tags: { m: 'v' } }, 200],
    ['wrapKey', 'POST', () => '/keys/k/wrapkey', { alg: 'RSA-OAEP', value: b64u(Buffer.alloc(32, 3)) }, 200],
    ['unwrapKey', 'POST', (V) => `/keys/k/${V.kVer}/unwrapkey`, (V) => ({ alg: 'RSA-OAEP', value: V.wrapped }), 200],
    ['sign', 'POST', () => '/keys/e/sign', { alg: 'ES256', value: b64u(crypto.randomBytes(32)) }, 200],
    ['backup', 'POST', () => '/keys/e/backup', undefined, 200],
    ['getrotationpolicy', 'GET', () => '/keys/e/rotationpolicy', undefined, 200],
  ];

  async function grant(vault, oid, keys, kind = 'add') {
    const r = await arm('PUT', `${vaultPath(vault)}/accessPolicies/${kind}`,
      { properties: { accessPolicies: [{ tenantId: v.admin.tenantId, objectId: oid, permissions: { keys } }] } }, KV);
    assert.equal(r.status, 200, r.text);
  }
  async function identity(name) {
    const r = await raw(v, 'POST', '/admin/identities', { token: data, body: { displayName: name } });
    assert.equal(r.status, 201, r.text);
    return r.json;
  }
  const forbidden = (r, vault) => r.status === 403 && r.json?.error?.code === 'Forbidden' &&
    (r.json.error.message || '').includes(vault === 'default' ? `127.0.0.1:${v.port}` : `${vault}.${DOMAIN}`);

  for (const [perm, method, p, body, okStatus] of ops) {
    test(`${perm}: granted in alpha only -> allowed there, 403 in beta and in the default vault`, async () => {
      const who = await identity(`mv-${perm}`);
      await grant('alpha', who.objectId, [perm]);
      const tok = await token(v, who, { scope: `${resource}/.default` });
      const cells = [];
      for (const vault of ['alpha', 'beta', 'default']) {
        const V = fx[vault];
        const r = await req(vault, method, p(V), tok, typeof body === 'function' ? body(V) : body);
        const good = vault === 'alpha' ? r.status === okStatus : forbidden(r, vault);
        if (!good) cells.push(`${vault}: ${r.status} ${r.text.slice(0, 160)}`);
      }
      assert.deepEqual(cells, [], `wrong cells for ${perm}`);
    });
  }

  test('"all" in beta only: every operation refused in alpha; a policy removed in alpha refuses there at once, beta unchanged', async () => {
    const who = await identity('mv-all-beta');
    await grant('beta', who.objectId, ['all']);
    const tok = await token(v, who, { scope: `${resource}/.default` });
    for (const [perm, method, p, body] of ops) {
      const r = await req('alpha', method, p(fx.alpha), tok, typeof body === 'function' ? body(fx.alpha) : body);
      assert.ok(forbidden(r, 'alpha'), `${perm} in alpha: ${r.status} ${r.text.slice(0, 160)}`);
    }
    assert.equal((await req('beta', 'GET', '/keys/k', tok)).status, 200);
    await grant('alpha', who.objectId, ['get']);
    assert.equal((await req('alpha', 'GET', '/keys/k', tok)).status, 200, 'granted in alpha too');
    await grant('alpha', who.objectId, [], 'remove');
    assert.ok(forbidden(await req('alpha', 'GET', '/keys/k', tok), 'alpha'), 'removed in alpha: refused on the next request');
    assert.equal((await req('beta', 'GET', '/keys/k', tok)).status, 200, 'beta unchanged');
  });
});
