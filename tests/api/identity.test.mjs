// Managed identities and access policies end to end: the admin CLI
// (identity create/list/delete, policy set/list/delete, --admin), the
// management REST API's shapes and limits, and one workload identity used
// through unmodified ClientSecretCredential and unmodified
// ManagedIdentityCredential (through `p11vault identity-agent`, the IMDS
// token protocol): get, wrap and unwrap work; everything not granted is
// 403 with Azure's message.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { ManagedIdentityCredential } from '@azure/identity';
import {
  startVault, stopVault, raw, token, p11vault, keyClient, cryptoClient, credential, keyName,
  rejectsWithStatus, API_VERSION,
} from './lib/vault.mjs';
import { startAgent, decodeJwt, setPolicy } from './lib/identity.mjs';
import { filesUnder } from './lib/util.mjs';

function get(url, headers = {}) {
  return new Promise((resolve, reject) => {
    http.get(url, { headers }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => { let json; try { json = JSON.parse(text); } catch { /* not JSON */ } resolve({ status: res.statusCode, json, text }); });
    }).on('error', reject);
  });
}

const FORBIDDEN_MSG = (perm) => new RegExp(`The user, group or application '.*oid=[0-9a-f-]{36}.*' does not have keys ${perm} permission on key vault '127\\.0\\.0\\.1:[0-9]+'`);

describe('identities, access policies, both credential types', { timeout: 180000 }, () => {
  let v;
  let id;          // the workload identity (disk-encryption-set)
  let rsa;         // an RSA key the admin made
  let agent;

  before(async () => {
    v = await startVault();
    rsa = keyName('des');
    await keyClient(v).createRsaKey(rsa, { keySize: 2048 });
  });
  after(async () => {
    if (agent) await agent.stop();
    await stopVault(v);
  });

  test('identity create --name prints objectId, clientId, clientSecret, tenantId; identity list shows it without any secret', async () => {
    const r = await p11vault(['identity', 'create', '--name', 'disk-encryption-set', '--data', v.dir]);
    assert.equal(r.code, 0, r.stderr);
    id = JSON.parse(r.stdout);
    for (const f of ['objectId', 'clientId', 'clientSecret', 'tenantId']) assert.equal(typeof id[f], 'string', f);
    assert.match(id.objectId, /^[0-9a-f-]{36}$/);
    assert.equal(id.tenantId, v.admin.tenantId);
    assert.equal(id.displayName, 'disk-encryption-set');
    assert.equal(id.isAdmin, false);
    assert.ok(id.clientSecret.length >= 32);
    const l = await p11vault(['identity', 'list', '--data', v.dir]);
    assert.equal(l.code, 0, l.stderr);
    const mine = JSON.parse(l.stdout).value.find((i) => i.objectId === id.objectId);
    assert.ok(mine, 'listed');
    assert.equal(mine.displayName, 'disk-encryption-set');
    assert.ok(!l.stdout.includes(id.clientSecret), 'the secret is shown once only');
    assert.ok(!/secret|scrypt|hash/i.test(l.stdout), 'no secret or hash field in the list');
  });

  test('the client secret is stored only as a salted scrypt hash (nowhere in the data directory)', () => {
    const needle = Buffer.from(id.clientSecret);
    for (const f of filesUnder(v.dir)) {
      assert.ok(!fs.readFileSync(f).includes(needle), `secret found in ${f}`);
    }
    const db = Buffer.concat(fs.readdirSync(v.dir).filter((n) => n.startsWith('vault.db')).map((n) => fs.readFileSync(path.join(v.dir, n))));
    assert.ok(db.includes(Buffer.from('scrypt$')), 'an scrypt hash is stored');
  });

  test('policy set --object-id OID --key-permissions get wrapKey unwrapKey; policy list shows it in ARM shape', async () => {
    const s = await p11vault(['policy', 'set', '--object-id', id.objectId, '--key-permissions', 'get', 'wrapKey', 'unwrapKey', '--data', v.dir]);
    assert.equal(s.code, 0, s.stderr);
    const l = await p11vault(['policy', 'list', '--data', v.dir]);
    assert.equal(l.code, 0, l.stderr);
    const p = JSON.parse(l.stdout).find((x) => x.objectId === id.objectId);
    assert.ok(p, 'listed');
    assert.equal(p.tenantId, v.admin.tenantId);
    assert.deepEqual([...p.permissions.keys].sort(), ['get', 'unwrapKey', 'wrapKey']);
    const vault = await raw(v, 'GET', '/admin/vault', { token: await token(v) });
    assert.equal(vault.status, 200);
    assert.ok(vault.json.properties.accessPolicies.some((x) => x.objectId === id.objectId && x.permissions.keys.includes('wrapKey')));
  });

  test('unknown permission names: the CLI fails naming them, the REST API answers 400, nothing changes', async () => {
    const s = await p11vault(['policy', 'set', '--object-id', id.objectId, '--key-permissions', 'get', 'launchMissiles', '--data', v.dir]);
    assert.notEqual(s.code, 0);
    assert.match(s.stderr, /400 BadParameter: .*unknown permission/);
    const r = await raw(v, 'PUT', '/admin/vault/accessPolicies/add', {
      token: await token(v),
      body: { properties: { accessPolicies: [{ tenantId: v.admin.tenantId, objectId: id.objectId, permissions: { keys: ['sign', 'bogus'] } }] } },
    });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error.code, 'BadParameter');
    const l = JSON.parse((await p11vault(['policy', 'list', '--data', v.dir])).stdout);
    assert.deepEqual([...l.find((x) => x.objectId === id.objectId).permissions.keys].sort(), ['get', 'unwrapKey', 'wrapKey']);
  });

  async function exercise(cred, label) {
    const kc = keyClient(v, cred);
    const k = await kc.getKey(rsa);
    assert.equal(k.name, rsa, `${label}: get`);
    const cc = cryptoClient(v, k.id, cred);
    const dek = crypto.randomBytes(32);
    const w = await cc.wrapKey('RSA-OAEP-256', dek);
    const u = await cc.unwrapKey('RSA-OAEP-256', w.result);
    assert.ok(Buffer.from(u.result).equals(dek), `${label}: unwrap gives the DEK back`);
    const checks = [
      ['create', () => kc.createEcKey(keyName('no'), { curve: 'P-256' })],
      ['delete', () => kc.beginDeleteKey(rsa)],
      ['purge', () => kc.purgeDeletedKey(rsa)],
      ['list', async () => { for await (const x of kc.listPropertiesOfKeys()) void x; }],
      ['sign', () => cc.sign('RS256', crypto.createHash('sha256').update('x').digest())],
      ['decrypt', () => cc.decrypt({ algorithm: 'RSA-OAEP-256', ciphertext: w.result })],
      ['update', () => kc.updateKeyProperties(rsa, { tags: { a: 'b' } })],
      ['rotate', () => kc.rotateKey(rsa)],
    ];
    for (const [perm, fn] of checks) {
      const e = await rejectsWithStatus(fn(), 403, assert);
      if (perm === 'list') continue;   // the SDK's pager drops the body (the matrix checks it raw)
      assert.equal(e.code, 'Forbidden', `${label} ${perm}: error code`);
      assert.match(e.message, FORBIDDEN_MSG(perm), `${label} ${perm}: Azure's message`);
    }
    const still = await kc.getKey(rsa);
    assert.equal(still.properties.enabled, true, 'nothing happened to the key');
  }

  test('ClientSecretCredential (unmodified): get, wrapKey, unwrapKey work; create, delete, purge, list, sign, decrypt, update, rotate are 403 with Azure\'s message', async () => {
    await exercise(credential(v, id), 'ClientSecretCredential');
  });

  test('identity-agent speaks IMDS: Metadata header required, both token paths, string numbers, the identity\'s token', async () => {
    agent = await startAgent(v, id);
    const q = 'api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net';
    const no = await get(`${agent.url}/metadata/identity/oauth2/token/?${q}`);
    assert.equal(no.status, 400, no.text);
    const yes = await get(`${agent.url}/metadata/identity/oauth2/token/?${q}`, { Metadata: 'true' });
    assert.equal(yes.status, 200, yes.text);
    for (const f of ['access_token', 'expires_in', 'expires_on', 'resource', 'token_type']) assert.equal(typeof yes.json[f], 'string', f);
    assert.equal(yes.json.token_type, 'Bearer');
    assert.ok(Number(yes.json.expires_in) > 3000 && Number(yes.json.expires_on) > Date.now() / 1000);
    assert.ok(Number(yes.json.not_before) <= Math.ceil(Date.now() / 1000), 'not_before is not in the future');
    const claims = decodeJwt(yes.json.access_token).payload;
    assert.equal(claims.oid, id.objectId);
    assert.equal(claims.appid, id.clientId);
    const noSlash = await get(`${agent.url}/metadata/identity/oauth2/token?${q}`, { Metadata: 'true' });
    assert.equal(noSlash.status, 200, noSlash.text);
    const noRes = await get(`${agent.url}/metadata/identity/oauth2/token/?api-version=2018-02-01`, { Metadata: 'true' });
    assert.equal(noRes.status, 400);
    assert.ok(!agent.output().includes(id.clientSecret) && !agent.output().includes(yes.json.access_token), 'the agent logs no secret or token');
  });

  test('ManagedIdentityCredential (unmodified, AZURE_POD_IDENTITY_AUTHORITY_HOST = the agent): get, wrapKey, unwrapKey work; the rest is 403', async () => {
    process.env.AZURE_POD_IDENTITY_AUTHORITY_HOST = agent.url;
    const mi = new ManagedIdentityCredential();
    const t = await mi.getToken('https://vault.azure.net/.default');
    assert.equal(decodeJwt(t.token).payload.oid, id.objectId, 'the token is the identity\'s');
    await exercise(mi, 'ManagedIdentityCredential');
  });

  test('policy delete --object-id: the SDK client (token cached) gets 403 on its next wrap; policy set restores it and old ciphertexts unwrap', async () => {
    const cred = credential(v, id);
    const cc = cryptoClient(v, (await keyClient(v, cred).getKey(rsa)).id, cred);
    const dek = crypto.randomBytes(32);
    const w = await cc.wrapKey('RSA-OAEP-256', dek);
    const d = await p11vault(['policy', 'delete', '--object-id', id.objectId, '--data', v.dir]);
    assert.equal(d.code, 0, d.stderr);
    const e = await rejectsWithStatus(cc.wrapKey('RSA-OAEP-256', dek), 403, assert);
    assert.match(e.message, FORBIDDEN_MSG('wrapKey'));
    await rejectsWithStatus(cc.unwrapKey('RSA-OAEP-256', w.result), 403, assert);
    const s = await p11vault(['policy', 'set', '--object-id', id.objectId, '--key-permissions', 'get,wrapKey,unwrapKey', '--data', v.dir]);
    assert.equal(s.code, 0, s.stderr);
    const u = await cc.unwrapKey('RSA-OAEP-256', w.result);
    assert.ok(Buffer.from(u.result).equals(dek));
  });

  test('identity create --admin makes another administrator; a non-admin identity gets 403 on every /admin endpoint', async () => {
    const r = await p11vault(['identity', 'create', '--name', 'second-admin', '--admin', '--data', v.dir]);
    assert.equal(r.code, 0, r.stderr);
    const adm2 = JSON.parse(r.stdout);
    assert.equal(adm2.isAdmin, true);
    const file = path.join(v.dir, '..', `p11vault-adm2-${process.pid}.json`);
    fs.writeFileSync(file, JSON.stringify({ ...adm2, vaultUrl: v.url }), { mode: 0o600 });
    try {
      // the second admin drives the CLI from "another machine"
      const c = await p11vault(['identity', 'create', '--name', 'made-by-second', '--vault-url', v.url, '--admin', file, '--ca', path.join(v.dir, 'tls', 'ca.pem')]);
      assert.equal(c.code, 0, c.stderr);
      assert.equal(JSON.parse(c.stdout).isAdmin, false);
      const show = await p11vault(['vault', 'show', '--vault-url', v.url, '--admin', file, '--ca', path.join(v.dir, 'tls', 'ca.pem')]);
      assert.equal(show.code, 0, show.stderr);
    } finally {
      fs.rmSync(file, { force: true });
    }
    const t2 = await token(v, adm2);
    assert.equal((await raw(v, 'GET', '/admin/identities', { token: t2 })).status, 200);
    // an admin role is not a data-plane grant
    assert.equal((await raw(v, 'GET', `/keys/${rsa}?api-version=${API_VERSION}`, { token: t2 })).status, 403);
    const ti = await token(v, id);
    const oid = crypto.randomUUID();
    const pol = { properties: { accessPolicies: [{ tenantId: v.admin.tenantId, objectId: oid, permissions: { keys: ['get'] } }] } };
    for (const [m, p, body] of [['GET', '/admin/vault'], ['PATCH', '/admin/vault', { properties: {} }],
      ['PUT', '/admin/vault/accessPolicies/add', pol], ['PUT', '/admin/vault/accessPolicies/replace', pol],
      ['PUT', '/admin/vault/accessPolicies/remove', pol], ['POST', '/admin/identities', { displayName: 'x', isAdmin: true }],
      ['GET', '/admin/identities'], ['DELETE', `/admin/identities/${adm2.objectId}`], ['GET', '/admin/nonexistent']]) {
      const x = await raw(v, m, p, { token: ti, body });
      assert.equal(x.status, 403, `${m} ${p}: ${x.text}`);
      assert.equal(x.json.error.code, 'Forbidden');
    }
    // the CLI with a non-admin credential fails with the 403 line
    const file2 = path.join(v.dir, '..', `p11vault-nonadm-${process.pid}.json`);
    fs.writeFileSync(file2, JSON.stringify({ ...id, vaultUrl: v.url }), { mode: 0o600 });
    try {
      const c = await p11vault(['policy', 'list', '--vault-url', v.url, '--admin', file2, '--ca', path.join(v.dir, 'tls', 'ca.pem')]);
      assert.notEqual(c.code, 0);
      assert.match(c.stderr, /403 Forbidden/);
    } finally {
      fs.rmSync(file2, { force: true });
    }
    // an administrator cannot delete itself; can delete the other admin
    const self = await raw(v, 'DELETE', `/admin/identities/${adm2.objectId}`, { token: t2 });
    assert.equal(self.status, 400, self.text);
    const del = await p11vault(['identity', 'delete', '--object-id', adm2.objectId, '--data', v.dir]);
    assert.equal(del.code, 0, del.stderr);
    assert.equal((await raw(v, 'GET', '/admin/identities', { token: t2 })).status, 401, 'its token died with it');
  });

  test('at most 1024 access policies: filling up is 200, one more is 400 and changes nothing, replacing an existing one still works', async () => {
    const adminTok = await token(v);
    const have = (await raw(v, 'GET', '/admin/vault', { token: adminTok })).json.properties.accessPolicies.length;
    const oids = Array.from({ length: 1024 - have }, () => crypto.randomUUID());
    const body = (list, keys = ['get']) => ({ properties: { accessPolicies: list.map((o) => ({ tenantId: v.admin.tenantId, objectId: o, permissions: { keys } })) } });
    const fill = await raw(v, 'PUT', '/admin/vault/accessPolicies/add', { token: adminTok, body: body(oids), timeoutMs: 120000 });
    assert.equal(fill.status, 200, fill.text.slice(0, 300));
    assert.equal(fill.json.properties.accessPolicies.length, 1024);
    const extra = crypto.randomUUID();
    const over = await raw(v, 'PUT', '/admin/vault/accessPolicies/add', { token: adminTok, body: body([extra]) });
    assert.equal(over.status, 400, over.text);
    const cli = await p11vault(['policy', 'set', '--object-id', extra, '--key-permissions', 'get', '--data', v.dir]);
    assert.notEqual(cli.code, 0, 'the CLI reports the limit too');
    assert.match(cli.stderr, /400/);
    const again = await raw(v, 'PUT', '/admin/vault/accessPolicies/replace', { token: adminTok, body: body([oids[0]], ['list']) });
    assert.equal(again.status, 200, again.text.slice(0, 300));
    const tooMany = await raw(v, 'PUT', '/admin/vault/accessPolicies/add', { token: adminTok, body: body(Array.from({ length: 1025 }, () => crypto.randomUUID())) });
    assert.equal(tooMany.status, 400);
    const after_ = (await raw(v, 'GET', '/admin/vault', { token: adminTok })).json.properties.accessPolicies;
    assert.equal(after_.length, 1024);
    assert.ok(!after_.some((p) => p.objectId === extra));
    const rm = await raw(v, 'PUT', '/admin/vault/accessPolicies/remove', { token: adminTok, body: body(oids, []), timeoutMs: 120000 });
    assert.equal(rm.status, 200, rm.text.slice(0, 300));
    assert.equal(rm.json.properties.accessPolicies.length, have);
    await setPolicy(v, adminTok, extra, ['get']);   // room again
  });

  test('identity delete --object-id (CLI): the identity\'s token is refused at once (401 with the challenge)', async () => {
    const t = await token(v, id);
    assert.equal((await raw(v, 'GET', `/keys/${rsa}?api-version=${API_VERSION}`, { token: t })).status, 200);
    const d = await p11vault(['identity', 'delete', '--object-id', id.objectId, '--data', v.dir]);
    assert.equal(d.code, 0, d.stderr);
    const r = await raw(v, 'GET', `/keys/${rsa}?api-version=${API_VERSION}`, { token: t });
    assert.equal(r.status, 401, r.text);
    assert.match(r.headers['www-authenticate'], /^Bearer authorization="https:\/\/127\.0\.0\.1:\d+\/[0-9a-f-]{36}", resource="https:\/\/vault\.azure\.net"$/);
    const again = await p11vault(['identity', 'delete', '--object-id', id.objectId, '--data', v.dir]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /404/);
  });

  test('token lifetime is configurable (token_lifetime= in p11vault.conf, read at serve start); the default is one hour', async () => {
    const before_ = decodeJwt(await token(v)).payload;
    assert.equal(before_.exp - before_.iat, 3600);
    await v.stop();
    const confPath = path.join(v.dir, 'p11vault.conf');
    fs.writeFileSync(confPath, fs.readFileSync(confPath, 'utf8').replace(/^token_lifetime=.*$/m, 'token_lifetime=120'));
    await v.start();
    const r = await raw(v, 'POST', `/${v.admin.tenantId}/oauth2/v2.0/token`, {
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: v.admin.clientId, client_secret: v.admin.clientSecret, scope: 'https://vault.azure.net/.default' }).toString(),
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.expires_in, 119);
    const p = decodeJwt(r.json.access_token).payload;
    assert.equal(p.exp - p.iat, 120);
  });
});
