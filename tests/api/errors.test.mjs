// Raw-HTTP conformance of the keys API's edges: api-version handling, the
// 401 challenge, input validation (names, JSON, types, enums, sizes,
// base64url), the no-oracle rule for unwrap failures, limits, 404s, paging
// bounds, response headers, the exact error envelope, path case-insensitivity
// and the trailing slash - and that no refused request changed anything.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startVault, stopVault, raw, token, keyName, b64u } from './lib/vault.mjs';

const MISSING_API_VERSION = 'The api-version query parameter (?api-version=) is required for all requests.';
const SUPPORTED = ['7.0', '7.1', '7.2', '7.3', '7.4', '7.5', '7.6', '2025-07-01'];

describe('raw HTTP: errors, limits and conventions', { timeout: 120000 }, () => {
  let v;
  let t;
  let rsa; // KeyBundle of an RSA-2048 key
  let ec; // KeyBundle of a P-256 key
  const requestIds = [];

  // Every response goes through here: headers are checked on all of them.
  const req = async (method, p, opts = {}) => {
    const r = await raw(v, method, p, { token: t, ...opts });
    const id = r.headers['x-ms-request-id'];
    assert.ok(id, `${method} ${p}: x-ms-request-id missing`);
    requestIds.push(id);
    if (r.status !== 401) {
      assert.ok(r.headers['x-ms-keyvault-service-version'], `${method} ${p}: x-ms-keyvault-service-version missing`);
    }
    return r;
  };
  const av = (p, ver = '7.6') => p + (p.includes('?') ? '&' : '?') + `api-version=${ver}`;

  // The Azure error envelope, exactly: {error:{code,message[,innererror]}}.
  const expectError = (r, status, code) => {
    assert.equal(r.status, status, `expected ${status} ${code ?? ''}, got ${r.status}: ${r.text.slice(0, 300)}`);
    assert.match(r.headers['content-type'] || '', /^application\/json;\s*charset=utf-8$/i, 'error content-type');
    assert.ok(r.json, `error body is JSON: ${r.text.slice(0, 200)}`);
    assert.deepEqual(Object.keys(r.json), ['error'], 'only "error" at top level');
    const extra = Object.keys(r.json.error).filter((k) => !['code', 'message', 'innererror'].includes(k));
    assert.deepEqual(extra, [], 'error has only code, message, innererror');
    assert.equal(typeof r.json.error.code, 'string');
    assert.equal(typeof r.json.error.message, 'string');
    assert.ok(r.json.error.message.length > 0);
    if (code) assert.equal(r.json.error.code, code, r.json.error.message);
    return r.json.error;
  };

  const listAll = async () => {
    const items = [];
    let next = av('/keys?maxresults=25');
    while (next) {
      const r = await req('GET', next);
      assert.equal(r.status, 200, r.text);
      items.push(...r.json.value.map((i) => `${i.kid} ${i.attributes.enabled} ${i.attributes.updated}`));
      next = r.json.nextLink ? new URL(r.json.nextLink).pathname + new URL(r.json.nextLink).search : null;
    }
    const versions = await req('GET', av(`/keys/${rsa.name}/versions`));
    return { items: items.sort(), versions: versions.json.value.map((i) => i.kid).sort() };
  };
  let snapshot;
  const assertUnchanged = async (what) => {
    assert.deepEqual(await listAll(), snapshot, `state changed after ${what}`);
  };

  const wrap = (alg, value, k = rsa) => req('POST', av(`/keys/${k.name}/wrapkey`), { body: { alg, value } });
  const unwrap = (alg, value, k = rsa) => req('POST', av(`/keys/${k.name}/unwrapkey`), { body: { alg, value } });

  before(async () => {
    v = await startVault();
    t = await token(v);
    const name = keyName('err');
    let r = await raw(v, 'POST', av(`/keys/${name}/create`), { token: t, body: { kty: 'RSA', key_size: 2048 } });
    assert.equal(r.status, 200, r.text);
    rsa = { name, ...r.json };
    const ecName = keyName('errec');
    r = await raw(v, 'POST', av(`/keys/${ecName}/create`), { token: t, body: { kty: 'EC', crv: 'P-256' } });
    assert.equal(r.status, 200, r.text);
    ec = { name: ecName, ...r.json };
    snapshot = await listAll();
  });
  after(async () => { await stopVault(v); });

  test('missing api-version is 400 MissingApiVersionParameter with the exact message', async () => {
    for (const p of [`/keys/${rsa.name}`, '/keys', `/keys/${rsa.name}?maxresults=1`]) {
      const r = await req('GET', p);
      const e = expectError(r, 400, 'MissingApiVersionParameter');
      assert.equal(e.message, MISSING_API_VERSION);
    }
    const r = await req('POST', `/keys/${keyName('nover')}/create`, { body: { kty: 'RSA' } });
    expectError(r, 400, 'MissingApiVersionParameter');
    await assertUnchanged('create without api-version');
  });

  test('unknown api-version is 400 BadParameter naming the supported versions', async () => {
    for (const ver of ['1999-01-01', '7.99', '', 'latest']) {
      const r = await req('GET', `/keys/${rsa.name}?api-version=${encodeURIComponent(ver)}`);
      if (ver === '' && r.json?.error?.code === 'MissingApiVersionParameter') continue; // empty = missing is fine
      const e = expectError(r, 400, 'BadParameter');
      assert.ok(e.message.includes('7.6'), `message names supported versions: ${e.message}`);
    }
  });

  test('every supported api-version is accepted, also percent-encoded as api%2Dversion', async () => {
    for (const ver of SUPPORTED) {
      const r = await req('GET', `/keys/${rsa.name}?api-version=${ver}`);
      assert.equal(r.status, 200, `${ver}: ${r.text}`);
    }
    const r = await req('GET', `/keys/${rsa.name}?api%2Dversion=2025-07-01`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.key.kid, rsa.key.kid);
  });

  test('no token is 401 with WWW-Authenticate: Bearer authorization="{url}/{tenantId}", resource="https://vault.azure.net"', async () => {
    const want = `Bearer authorization="${v.url}/${v.admin.tenantId}", resource="https://vault.azure.net"`;
    for (const [m, p, body] of [['GET', av(`/keys/${rsa.name}`)], ['GET', av('/keys')],
      ['POST', av(`/keys/${rsa.name}/wrapkey`), { alg: 'RSA-OAEP', value: b64u(Buffer.alloc(32)) }],
      ['POST', av(`/keys/${keyName('anon')}/create`), { kty: 'RSA' }]]) {
      const r = await req(m, p, { token: null, body });
      expectError(r, 401);
      assert.equal(r.headers['www-authenticate'], want, `${m} ${p}`);
    }
    await assertUnchanged('unauthenticated create');
  });

  test('bad key names are 400 BadParameter; 127 characters of [0-9a-zA-Z-] is fine', async () => {
    for (const bad of ['bad_name', 'a'.repeat(128), 'has.dot', 'sp%20ace', 'caf%C3%A9', '-'.repeat(128)]) {
      const r = await req('POST', av(`/keys/${bad}/create`), { body: { kty: 'RSA' } });
      expectError(r, 400, 'BadParameter');
      const g = await req('GET', av(`/keys/${bad}`));
      assert.ok([400, 404].includes(g.status), `GET ${bad}: ${g.status}`);
    }
    await assertUnchanged('bad names');
    const good = 'A-' + 'z9'.repeat(62) + 'Q'; // 127
    assert.equal(good.length, 127);
    const r = await req('POST', av(`/keys/${good}/create`), { body: { kty: 'EC', crv: 'P-256' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.key.kid.split('/')[4], good);
    snapshot = await listAll();
  });

  test('create with invalid JSON, duplicate keys, wrong types, unknown kty/crv/key_ops, key_size 1024, bad exponent, EC wrapKey is 400 BadParameter and stores nothing', async () => {
    const cases = [
      ['invalid JSON', '{"kty": "RSA",'],
      ['not an object', '["RSA"]'],
      ['empty body', ''],
      ['duplicate keys', '{"kty":"RSA","kty":"EC","crv":"P-256"}'],
      ['key_size as string', { kty: 'RSA', key_size: '2048' }],
      ['kty as number', { kty: 1 }],
      ['missing kty', { key_size: 2048 }],
      ['unknown kty', { kty: 'RSA-FOO' }],
      ['oct kty', { kty: 'oct', key_size: 256 }],
      ['unknown crv', { kty: 'EC', crv: 'P-999' }],
      ['unknown key_op', { kty: 'RSA', key_ops: ['wrapKey', 'frobnicate'] }],
      ['key_ops not an array', { kty: 'RSA', key_ops: 'wrapKey' }],
      ['key_size 1024', { kty: 'RSA', key_size: 1024 }],
      ['key_size 2047', { kty: 'RSA', key_size: 2047 }],
      ['key_size 8192', { kty: 'RSA', key_size: 8192 }],
      ['public_exponent 3', { kty: 'RSA', public_exponent: 3 }],
      ['EC with wrapKey', { kty: 'EC', crv: 'P-256', key_ops: ['sign', 'wrapKey'] }],
      ['EC with decrypt', { kty: 'EC', crv: 'P-256', key_ops: ['decrypt'] }],
      ['enabled as string', { kty: 'RSA', attributes: { enabled: 'yes' } }],
      ['exp as string', { kty: 'RSA', attributes: { exp: '2030-01-01' } }],
      ['16 tags', { kty: 'RSA', tags: Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`t${i}`, 'v'])) }],
      ['tag value 257 chars', { kty: 'RSA', tags: { t: 'v'.repeat(257) } }],
    ];
    for (const [what, body] of cases) {
      const name = keyName('bad');
      const r = await req('POST', av(`/keys/${name}/create`), { body });
      expectError(r, 400, 'BadParameter');
      const g = await req('GET', av(`/keys/${name}`));
      expectError(g, 404, 'KeyNotFound');
      assert.ok(g.status === 404, `${what}: nothing stored`);
    }
    // The same with the existing name: no new version appears.
    const r = await req('POST', av(`/keys/${rsa.name}/create`), { body: { kty: 'RSA', key_size: 1024 } });
    expectError(r, 400, 'BadParameter');
    await assertUnchanged('invalid create bodies');
  });

  test('unknown extra fields are ignored', async () => {
    const name = keyName('extra');
    const r = await req('POST', av(`/keys/${name}/create`), { body: { kty: 'EC', crv: 'P-256', frobnicate: { a: 1 } } });
    assert.equal(r.status, 200, r.text);
    snapshot = await listAll();
  });

  test('wrapkey/unwrapkey with unknown alg, missing value, non-base64url value is 400 BadParameter', async () => {
    const dek = b64u(crypto.randomBytes(32));
    expectError(await wrap('RSA-OAEP-512', dek), 400, 'BadParameter');
    expectError(await wrap('A256KW', dek), 400, 'BadParameter');
    expectError(await wrap('RSA-OAEP', undefined), 400, 'BadParameter');
    expectError(await wrap(undefined, dek), 400, 'BadParameter');
    expectError(await wrap('RSA-OAEP', 12345), 400, 'BadParameter');
    for (const junk of ['!!!not base64!!!', 'ab$d', 'a b c']) {
      expectError(await wrap('RSA-OAEP', junk), 400, 'BadParameter');
      expectError(await unwrap('RSA-OAEP', junk), 400, 'BadParameter');
    }
    expectError(await wrap('RSA-OAEP', b64u(crypto.randomBytes(215))), 400, 'BadParameter'); // > 214 for OAEP-2048
    expectError(await wrap('RSA-OAEP-256', b64u(crypto.randomBytes(191))), 400, 'BadParameter');
    expectError(await wrap('RSA1_5', b64u(crypto.randomBytes(246))), 400, 'BadParameter');
  });

  test('an operation outside the key\'s key_ops (wrapkey on an EC key) is 403 Forbidden "not permitted"', async () => {
    const r = await req('POST', av(`/keys/${ec.name}/wrapkey`), { body: { alg: 'RSA-OAEP', value: b64u(crypto.randomBytes(32)) } });
    const e = expectError(r, 403, 'Forbidden');
    assert.match(e.message, /not permitted/i);
  });

  test('padded base64url input is accepted and output is unpadded', async () => {
    const dek = crypto.randomBytes(32);
    const padded = dek.toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
    assert.ok(padded.endsWith('='));
    const w = await wrap('RSA-OAEP', padded);
    assert.equal(w.status, 200, w.text);
    assert.ok(!w.json.value.includes('='), 'output unpadded');
    assert.match(w.json.value, /^[A-Za-z0-9_-]+$/);
    const u = await unwrap('RSA-OAEP', w.json.value + '='.repeat((4 - (w.json.value.length % 4)) % 4));
    assert.equal(u.status, 200, u.text);
    assert.deepEqual(Buffer.from(u.json.value, 'base64url'), dek);
  });

  test('ciphertext of the wrong length is 400 BadParameter', async () => {
    for (const alg of ['RSA-OAEP', 'RSA-OAEP-256', 'RSA1_5']) {
      for (const len of [0, 1, 255, 257, 512]) {
        expectError(await unwrap(alg, b64u(crypto.randomBytes(len))), 400, 'BadParameter');
      }
    }
    // >= modulus (all 0xff) is refused too.
    expectError(await unwrap('RSA-OAEP', b64u(Buffer.alloc(256, 0xff))), 400, 'BadParameter');
  });

  test('tampered ciphertext is one indistinguishable 400 for every alg (no padding oracle)', async () => {
    const seen = new Set();
    for (const alg of ['RSA-OAEP', 'RSA-OAEP-256', 'RSA1_5']) {
      const w = await wrap(alg, b64u(crypto.randomBytes(32)));
      assert.equal(w.status, 200, w.text);
      const ct = Buffer.from(w.json.value, 'base64url');
      for (const pos of [0, 1, 100, 255]) {
        const bad = Buffer.from(ct);
        bad[pos] ^= 0x40;
        const r = await unwrap(alg, b64u(bad));
        // RSA1_5 tampering may by chance still decode (probability ~2^-16 per try): allow only 200 or the one error.
        if (r.status === 200 && alg === 'RSA1_5') continue;
        expectError(r, 400, 'BadParameter');
        seen.add(JSON.stringify(r.json));
      }
      // Random bytes below the modulus: also the same error.
      const rnd = crypto.randomBytes(256);
      rnd[0] = 0x00;
      const r = await unwrap(alg, b64u(rnd));
      if (!(r.status === 200 && alg === 'RSA1_5')) {
        expectError(r, 400, 'BadParameter');
        seen.add(JSON.stringify(r.json));
      }
      // Ciphertext for another algorithm: the same error again.
      const other = alg === 'RSA-OAEP' ? 'RSA-OAEP-256' : 'RSA-OAEP';
      const cross = await unwrap(other, w.json.value);
      expectError(cross, 400, 'BadParameter');
      seen.add(JSON.stringify(cross.json));
    }
    assert.equal(seen.size, 1, `different error bodies for padding failures: ${[...seen].join(' | ')}`);
    await assertUnchanged('failed unwraps');
  });

  test('sign with a digest of the wrong length is 400 BadParameter; EC alg on RSA key is 400', async () => {
    const sign = (k, alg, d) => req('POST', av(`/keys/${k.name}/sign`), { body: { alg, value: b64u(d) } });
    expectError(await sign(rsa, 'RS256', crypto.randomBytes(31)), 400, 'BadParameter');
    expectError(await sign(rsa, 'RS384', crypto.randomBytes(32)), 400, 'BadParameter');
    expectError(await sign(ec, 'ES256', crypto.randomBytes(48)), 400, 'BadParameter');
    expectError(await sign(rsa, 'ES256', crypto.randomBytes(32)), 400);
    expectError(await sign(ec, 'RS256', crypto.randomBytes(32)), 400);
    expectError(await sign(rsa, 'HS256', crypto.randomBytes(32)), 400, 'BadParameter');
    const ok = await sign(rsa, 'RS256', crypto.randomBytes(32));
    assert.equal(ok.status, 200, ok.text);
  });

  test('a body over 256 KiB is 413 or 400', async () => {
    const big = JSON.stringify({ kty: 'RSA', tags: { t: 'x' }, pad: 'a'.repeat(257 * 1024) });
    const name = keyName('big');
    const r = await req('POST', av(`/keys/${name}/create`), { body: big });
    assert.ok([400, 413].includes(r.status), `status ${r.status}`);
    if (r.json) expectError(r, r.status);
    const g = await req('GET', av(`/keys/${name}`));
    assert.equal(g.status, 404);
    const w = await wrap('RSA-OAEP', 'A'.repeat(300 * 1024));
    assert.ok([400, 413].includes(w.status), `wrapkey status ${w.status}`);
  });

  test('GET unknown key is 404 KeyNotFound; unknown version 404; versions of unknown key 200 and empty (as Azure)', async () => {
    expectError(await req('GET', av(`/keys/${keyName('nope')}`)), 404, 'KeyNotFound');
    const ver = crypto.randomBytes(16).toString('hex');
    expectError(await req('GET', av(`/keys/${rsa.name}/${ver}`)), 404, 'KeyNotFound');
    expectError(await req('POST', av(`/keys/${rsa.name}/${ver}/wrapkey`), { body: { alg: 'RSA-OAEP', value: b64u(Buffer.alloc(32)) } }), 404, 'KeyNotFound');
    expectError(await req('GET', av(`/deletedkeys/${rsa.name}`)), 404, 'KeyNotFound');
    expectError(await req('DELETE', av(`/keys/${keyName('nope')}`)), 404, 'KeyNotFound');
    const vs = await req('GET', av(`/keys/${keyName('nope')}/versions`));
    assert.equal(vs.status, 200, vs.text);
    assert.deepEqual(vs.json, { value: [], nextLink: null });
    await assertUnchanged('404s');
  });

  test('maxresults outside 1..25 is 400; 1 and 25 page correctly', async () => {
    for (const n of ['0', '26', '-1', 'abc', '1.5']) {
      expectError(await req('GET', av(`/keys?maxresults=${n}`)), 400, 'BadParameter');
      expectError(await req('GET', av(`/keys/${rsa.name}/versions?maxresults=${n}`)), 400, 'BadParameter');
    }
    const one = await req('GET', av('/keys?maxresults=1'));
    assert.equal(one.status, 200, one.text);
    assert.equal(one.json.value.length, 1);
    assert.ok(one.json.nextLink, 'nextLink when more keys exist');
    const nl = new URL(one.json.nextLink);
    assert.equal(nl.origin, v.url, 'nextLink is an absolute URL on this vault');
    assert.ok(nl.searchParams.get('api-version'), 'nextLink carries the api-version');
    const all = await req('GET', av('/keys?maxresults=25'));
    assert.equal(all.status, 200);
    assert.ok(all.json.value.length >= 3);
    assert.ok(!all.json.nextLink, 'no nextLink on the last page');
  });

  test('x-ms-request-id is unique per request and x-ms-keyvault-service-version is present', async () => {
    for (let i = 0; i < 5; i++) await req('GET', av(`/keys/${rsa.name}`));
    await req('GET', `/keys/${rsa.name}`); // an error too
    assert.ok(requestIds.length >= 6);
    assert.equal(new Set(requestIds).size, requestIds.length, 'request ids repeat');
  });

  test('the operation segment is case-insensitive (WRAPKEY, wrapkey, wrapKey, UnwrapKey)', async () => {
    const dek = crypto.randomBytes(32);
    const cts = [];
    for (const op of ['WRAPKEY', 'wrapkey', 'wrapKey']) {
      const r = await req('POST', av(`/keys/${rsa.name}/${op}`), { body: { alg: 'RSA-OAEP', value: b64u(dek) } });
      assert.equal(r.status, 200, `${op}: ${r.text}`);
      cts.push(r.json.value);
    }
    for (const [op, ct] of [['UNWRAPKEY', cts[0]], ['unwrapkey', cts[1]], ['UnwrapKey', cts[2]]]) {
      const r = await req('POST', av(`/keys/${rsa.name}/${op}`), { body: { alg: 'RSA-OAEP', value: ct } });
      assert.equal(r.status, 200, `${op}: ${r.text}`);
      assert.deepEqual(Buffer.from(r.json.value, 'base64url'), dek);
      assert.equal(r.json.kid, rsa.key.kid, 'kid names the version that did the work');
    }
  });

  test('GET /keys/{name}/ (trailing slash) is the latest version', async () => {
    const r2 = await req('POST', av(`/keys/${rsa.name}/create`), { body: { kty: 'RSA' } });
    assert.equal(r2.status, 200, r2.text);
    const latest = await req('GET', av(`/keys/${rsa.name}/`));
    assert.equal(latest.status, 200, latest.text);
    assert.equal(latest.json.key.kid, r2.json.key.kid);
    const plain = await req('GET', av(`/keys/${rsa.name}`));
    assert.equal(plain.json.key.kid, r2.json.key.kid);
    assert.notEqual(r2.json.key.kid, rsa.key.kid);
    const old = await req('GET', av(`/keys/${rsa.name}/${rsa.key.kid.split('/').pop()}`));
    assert.equal(old.status, 200);
    assert.equal(old.json.key.kid, rsa.key.kid);
  });

  test('responses never carry private key parts', async () => {
    for (const p of [`/keys/${rsa.name}`, `/keys/${ec.name}`]) {
      const r = await req('GET', av(p));
      for (const part of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(r.json.key[part], undefined, `${p} ${part}`);
      assert.notEqual(r.json.attributes.exportable, true);
    }
  });
});
