// The appliance as its own identity provider: OpenID discovery, the
// client-credentials token endpoint, the JWT's claims and signature against
// the published keys, and refusal of forged tokens on the data plane.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startVault, stopVault, raw, token, tokenRequest, keyClient, keyName } from './lib/vault.mjs';

const RESOURCE = 'https://vault.azure.net';

function decodeJwt(jwt) {
  const parts = jwt.split('.');
  assert.equal(parts.length, 3, 'JWT has three parts');
  return {
    parts,
    header: JSON.parse(Buffer.from(parts[0], 'base64url')),
    payload: JSON.parse(Buffer.from(parts[1], 'base64url')),
    signature: Buffer.from(parts[2], 'base64url'),
  };
}

function verifyJwt(jwt, jwk) {
  const { parts, header, signature } = decodeJwt(jwt);
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const data = Buffer.from(`${parts[0]}.${parts[1]}`);
  if (header.alg === 'ES256') return crypto.verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, signature);
  if (header.alg === 'RS256') return crypto.verify('sha256', data, key, signature);
  throw new Error(`unexpected JWT alg ${header.alg}`);
}

describe('identity provider and bearer tokens', { timeout: 60000 }, () => {
  let v;
  let tid;
  let keyPath;

  before(async () => {
    v = await startVault();
    tid = v.admin.tenantId;
    const name = keyName('tok');
    await keyClient(v).createRsaKey(name);
    keyPath = `/keys/${name}?api-version=7.6`;
  });
  after(async () => { await stopVault(v); });

  test('GET /{tenantId}/v2.0/.well-known/openid-configuration has issuer, token_endpoint, authorization_endpoint, jwks_uri', async () => {
    const r = await raw(v, 'GET', `/${tid}/v2.0/.well-known/openid-configuration`);
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers['content-type'] || '', /^application\/json/);
    for (const f of ['issuer', 'token_endpoint', 'authorization_endpoint', 'jwks_uri']) {
      assert.equal(typeof r.json[f], 'string', f);
    }
    assert.equal(r.json.token_endpoint, `${v.url}/${tid}/oauth2/v2.0/token`);
    assert.equal(r.json.jwks_uri, `${v.url}/${tid}/discovery/v2.0/keys`);
  });

  test('token endpoint: wrong secret is 401 invalid_client; unknown client is 401 invalid_client', async () => {
    const wrong = await tokenRequest(v, { clientId: v.admin.clientId, clientSecret: v.admin.clientSecret + 'x' });
    assert.equal(wrong.status, 401, wrong.text);
    assert.equal(wrong.json?.error, 'invalid_client');
    assert.ok(!wrong.text.includes(v.admin.clientSecret), 'the secret is not echoed');
    const unknown = await tokenRequest(v, { clientId: crypto.randomUUID(), clientSecret: v.admin.clientSecret });
    assert.equal(unknown.status, 401, unknown.text);
    assert.equal(unknown.json?.error, 'invalid_client');
    const empty = await tokenRequest(v, { clientId: v.admin.clientId, clientSecret: '' });
    assert.equal(empty.status, 401, empty.text);
  });

  test('good credentials give a Bearer token with expires_in 3599', async () => {
    const r = await tokenRequest(v, { clientId: v.admin.clientId, clientSecret: v.admin.clientSecret });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.token_type, 'Bearer');
    assert.equal(Number(r.json.expires_in), 3599);
    assert.equal(typeof r.json.access_token, 'string');
  });

  test('the JWT carries iss, aud, tid, oid, appid, iat, nbf, exp and verifies with the published key', async () => {
    const jwt = await token(v);
    const { header, payload } = decodeJwt(jwt);
    assert.ok(['ES256', 'RS256'].includes(header.alg), `alg ${header.alg}`);
    for (const c of ['iss', 'aud', 'tid', 'oid', 'appid', 'iat', 'nbf', 'exp']) assert.ok(payload[c] !== undefined, `claim ${c}`);
    assert.equal(payload.tid, tid);
    assert.equal(payload.oid, v.admin.objectId);
    assert.equal(payload.appid, v.admin.clientId);
    assert.equal(payload.aud.replace(/\/$/, ''), RESOURCE);
    const now = Math.floor(Date.now() / 1000);
    assert.ok(Math.abs(payload.iat - now) < 300, 'iat is now');
    assert.ok(payload.nbf <= now + 5);
    assert.ok(payload.exp > now && payload.exp <= now + 3700, 'exp about an hour ahead');

    const conf = (await raw(v, 'GET', `/${tid}/v2.0/.well-known/openid-configuration`)).json;
    assert.equal(payload.iss, conf.issuer);
    const jwks = await raw(v, 'GET', `/${tid}/discovery/v2.0/keys`);
    assert.equal(jwks.status, 200, jwks.text);
    assert.ok(Array.isArray(jwks.json.keys) && jwks.json.keys.length > 0);
    const jwk = header.kid ? jwks.json.keys.find((k) => k.kid === header.kid) : jwks.json.keys[0];
    assert.ok(jwk, `no published key with kid ${header.kid}`);
    for (const p of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(jwk[p], undefined, `published key has private part ${p}`);
    const { kid, use, alg, x5c, x5t, ...pub } = jwk; // eslint-disable-line no-unused-vars
    assert.ok(verifyJwt(jwt, pub), 'signature verifies');
  });

  test('the token is accepted on the data plane', async () => {
    const r = await raw(v, 'GET', keyPath, { token: await token(v) });
    assert.equal(r.status, 200, r.text);
  });

  test('a token with one flipped signature byte is 401', async () => {
    const jwt = await token(v);
    const { parts, signature } = decodeJwt(jwt);
    signature[5] ^= 0x01;
    const forged = `${parts[0]}.${parts[1]}.${signature.toString('base64url')}`;
    const r = await raw(v, 'GET', keyPath, { token: forged });
    assert.equal(r.status, 401, r.text);
    assert.ok(r.headers['www-authenticate'], 'challenge header');
  });

  test('a token with a modified payload (other oid) is 401', async () => {
    const jwt = await token(v);
    const { parts, payload } = decodeJwt(jwt);
    const p2 = Buffer.from(JSON.stringify({ ...payload, oid: crypto.randomUUID() })).toString('base64url');
    const r = await raw(v, 'GET', keyPath, { token: `${parts[0]}.${p2}.${parts[2]}` });
    assert.equal(r.status, 401, r.text);
  });

  test('alg none tokens are 401 (with and without a signature part)', async () => {
    const jwt = await token(v);
    const { header, payload } = decodeJwt(jwt);
    const h = Buffer.from(JSON.stringify({ ...header, alg: 'none' })).toString('base64url');
    const p = Buffer.from(JSON.stringify(payload)).toString('base64url');
    for (const t of [`${h}.${p}.`, `${h}.${p}`, `${h}.${p}.${decodeJwt(jwt).parts[2]}`]) {
      const r = await raw(v, 'GET', keyPath, { token: t });
      assert.equal(r.status, 401, r.text);
    }
  });

  test('garbage, empty and HS256 tokens are 401', async () => {
    const jwt = await token(v);
    const { header, payload } = decodeJwt(jwt);
    const h = Buffer.from(JSON.stringify({ ...header, alg: 'HS256' })).toString('base64url');
    const p = Buffer.from(JSON.stringify(payload)).toString('base64url');
    const mac = crypto.createHmac('sha256', '').update(`${h}.${p}`).digest('base64url');
    for (const t of ['garbage', 'a.b.c', `${h}.${p}.${mac}`]) {
      const r = await raw(v, 'GET', keyPath, { token: t });
      assert.equal(r.status, 401, `${t.slice(0, 20)}: ${r.text}`);
    }
    const r = await raw(v, 'GET', keyPath, { headers: { Authorization: 'Bearer' } });
    assert.equal(r.status, 401);
    const basic = await raw(v, 'GET', keyPath, { headers: { Authorization: 'Basic dXNlcjpwYXNz' } });
    assert.equal(basic.status, 401);
  });

  test('a token for another resource (audience) is refused', async () => {
    const r = await tokenRequest(v, { clientId: v.admin.clientId, clientSecret: v.admin.clientSecret, scope: 'https://management.azure.com/.default' });
    if (r.status !== 200) return; // refusing to issue it at all is fine too
    const d = await raw(v, 'GET', keyPath, { token: r.json.access_token });
    assert.equal(d.status, 401, d.text);
  });
});
