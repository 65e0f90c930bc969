// The unmodified Azure SDK (@azure/keyvault-keys + @azure/identity) against a
// real p11vault: key lifecycle, paging, crypto round trips, interop with
// Node's own crypto, disable/enable, soft delete, recover and purge.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  startVault, stopVault, keyClient, cryptoClient, raw, token, keyName, b64u, rejectsWithStatus,
} from './lib/vault.mjs';

const POLL = { intervalInMs: 200 };

function jwkOf(key) {
  const k = key.key;
  if (k.kty.startsWith('RSA')) return { kty: 'RSA', n: b64u(k.n), e: b64u(k.e) };
  return { kty: 'EC', crv: k.crv, x: b64u(k.x), y: b64u(k.y) };
}

function publicKeyOf(key) {
  return crypto.createPublicKey({ key: jwkOf(key), format: 'jwk' });
}

const HASH = { 256: 'sha256', 384: 'sha384', 512: 'sha512' };

function localVerify(alg, pub, data, sig) {
  const hash = HASH[alg.slice(2)];
  if (alg.startsWith('RS')) {
    return crypto.verify(hash, data, { key: pub, padding: crypto.constants.RSA_PKCS1_PADDING }, sig);
  }
  if (alg.startsWith('PS')) {
    return crypto.verify(hash, data, {
      key: pub, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: crypto.constants.RSA_PSS_SALTLEN_DIGEST,
    }, sig);
  }
  return crypto.verify(hash, data, { key: pub, dsaEncoding: 'ieee-p1363' }, sig);
}

describe('Azure SDK keys API', { timeout: 180000 }, () => {
  let v;
  let kc;
  // label -> KeyVaultKey; reading a label an earlier (failed) test did not set says so.
  const keys = new Proxy({}, {
    get(t, p) {
      if (typeof p === 'string' && !(p in t)) throw new Error(`prerequisite "${p}" missing: an earlier test failed`);
      return t[p];
    },
  });

  before(async () => {
    v = await startVault();
    kc = keyClient(v);
  });
  after(async () => { await stopVault(v); });

  test('createRsaKey makes RSA 2048, 3072 and 4096 keys with public parts only', async () => {
    for (const size of [2048, 3072, 4096]) {
      const name = keyName(`rsa${size}`);
      const k = await kc.createRsaKey(name, { keySize: size });
      keys[`rsa${size}`] = k;
      assert.equal(k.name, name);
      assert.equal(k.keyType, 'RSA');
      assert.equal(k.key.n.length, size / 8, 'modulus length');
      assert.deepEqual(Buffer.from(k.key.e), Buffer.from([1, 0, 1]));
      for (const p of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(k.key[p], undefined, `private part ${p} returned`);
      assert.match(k.properties.version, /^[0-9a-f]{32}$/);
      assert.equal(k.id, `${v.url}/keys/${name}/${k.properties.version}`);
      assert.equal(k.properties.enabled, true);
      assert.ok(k.properties.createdOn instanceof Date);
      assert.deepEqual([...k.keyOperations].sort(),
        ['decrypt', 'encrypt', 'sign', 'unwrapKey', 'verify', 'wrapKey']);
    }
  });

  test('createEcKey makes P-256, P-384 and P-521 keys with sign/verify only', async () => {
    for (const [curve, bytes] of [['P-256', 32], ['P-384', 48], ['P-521', 66]]) {
      const k = await kc.createEcKey(keyName(`ec${curve.slice(2)}`), { curve });
      keys[curve] = k;
      assert.equal(k.keyType, 'EC');
      assert.equal(k.key.crv, curve);
      assert.equal(k.key.x.length, bytes);
      assert.equal(k.key.y.length, bytes);
      assert.equal(k.key.d, undefined, 'private part d returned');
      assert.deepEqual([...k.keyOperations].sort(), ['sign', 'verify']);
      publicKeyOf(k); // the point is on the curve, or Node refuses it
    }
  });

  test('createKey with kty RSA-HSM echoes RSA-HSM and works', async () => {
    const k = await kc.createKey(keyName('rsahsm'), 'RSA-HSM', { keySize: 2048 });
    keys.rsaHsm = k;
    assert.equal(k.keyType, 'RSA-HSM');
    assert.equal(k.key.n.length, 256);
    const cc = cryptoClient(v, k.id);
    const dek = crypto.randomBytes(32);
    const w = await cc.wrapKey('RSA-OAEP', dek);
    const u = await cc.unwrapKey('RSA-OAEP', w.result);
    assert.deepEqual(Buffer.from(u.result), dek);
  });

  test('getKey returns the latest version, and a named version', async () => {
    const k = keys.rsa2048;
    const latest = await kc.getKey(k.name);
    assert.equal(latest.id, k.id);
    assert.deepEqual(Buffer.from(latest.key.n), Buffer.from(k.key.n));
    const byVersion = await kc.getKey(k.name, { version: k.properties.version });
    assert.equal(byVersion.id, k.id);
  });

  test('listPropertiesOfKeys pages with maxPageSize 2 across several pages, one item per name', async () => {
    const pages = [];
    for await (const page of kc.listPropertiesOfKeys().byPage({ maxPageSize: 2 })) pages.push(page);
    assert.ok(pages.length > 1, `expected more than one page, got ${pages.length}`);
    const names = [];
    for (const page of pages) {
      assert.ok(page.length <= 2, `page of ${page.length} items`);
      for (const p of page) names.push(p.name);
    }
    assert.equal(new Set(names).size, names.length, 'duplicate names across pages');
    for (const k of Object.values(keys)) assert.ok(names.includes(k.name), `${k.name} missing from the list`);
  });

  test('createRsaKey on an existing name makes a new version; listPropertiesOfKeyVersions pages over all of them', async () => {
    const name = keyName('multi');
    const versions = [];
    for (let i = 0; i < 3; i++) versions.push(await kc.createRsaKey(name, { keySize: 2048 }));
    const ids = versions.map((k) => k.properties.version);
    assert.equal(new Set(ids).size, 3, 'versions are distinct');
    assert.equal((await kc.getKey(name)).properties.version, ids[2], 'latest is the newest');
    const pages = [];
    for await (const page of kc.listPropertiesOfKeyVersions(name).byPage({ maxPageSize: 2 })) pages.push(page);
    assert.ok(pages.length >= 2, `expected at least two pages, got ${pages.length}`);
    const listed = pages.flat().map((p) => p.version);
    assert.deepEqual([...listed].sort(), [...ids].sort());
    keys.multi = versions[2];
  });

  test('updateKeyProperties sets enabled, notBefore/expiresOn and tags, and getKey sees them', async () => {
    const k = keys.rsa3072;
    const nbf = new Date((Math.floor(Date.now() / 1000) - 3600) * 1000);
    const exp = new Date((Math.floor(Date.now() / 1000) + 86400) * 1000);
    const u = await kc.updateKeyProperties(k.name, k.properties.version, {
      notBefore: nbf, expiresOn: exp, tags: { env: 'test', owner: 'api-tests' },
    });
    assert.equal(u.properties.notBefore.getTime(), nbf.getTime());
    assert.equal(u.properties.expiresOn.getTime(), exp.getTime());
    assert.deepEqual(u.properties.tags, { env: 'test', owner: 'api-tests' });
    const g = await kc.getKey(k.name);
    assert.equal(g.properties.expiresOn.getTime(), exp.getTime());
    assert.deepEqual(g.properties.tags, { env: 'test', owner: 'api-tests' });
    assert.ok(g.properties.updatedOn.getTime() >= g.properties.createdOn.getTime());
    const d = await kc.updateKeyProperties(k.name, { enabled: false });
    assert.equal(d.properties.enabled, false);
    const e = await kc.updateKeyProperties(k.name, { enabled: true });
    assert.equal(e.properties.enabled, true);
    assert.deepEqual(e.properties.tags, { env: 'test', owner: 'api-tests' }, 'tags kept when not sent');
  });

  test('wrapKey/unwrapKey round-trips a 32-byte DEK with RSA-OAEP, RSA-OAEP-256 and RSA1_5 on every RSA size', async () => {
    for (const label of ['rsa2048', 'rsa3072', 'rsa4096']) {
      const cc = cryptoClient(v, keys[label].id);
      for (const alg of ['RSA-OAEP', 'RSA-OAEP-256', 'RSA1_5']) {
        const dek = crypto.randomBytes(32);
        const w = await cc.wrapKey(alg, dek);
        assert.equal(w.result.length, keys[label].key.n.length, `${label} ${alg} ciphertext length`);
        const u = await cc.unwrapKey(alg, w.result);
        assert.deepEqual(Buffer.from(u.result), dek, `${label} ${alg}`);
        assert.equal(u.keyID, keys[label].id);
      }
    }
  });

  test('server-side wrapkey output (raw HTTP) unwraps through the SDK for every algorithm', async () => {
    const k = keys.rsa2048;
    const t = await token(v);
    for (const alg of ['RSA-OAEP', 'RSA-OAEP-256', 'RSA1_5']) {
      const dek = crypto.randomBytes(32);
      const r = await raw(v, 'POST', `/keys/${k.name}/${k.properties.version}/wrapkey`, {
        apiVersion: true, token: t, body: { alg, value: b64u(dek) },
      });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.kid, k.id);
      const u = await cryptoClient(v, k.id).unwrapKey(alg, Buffer.from(r.json.value, 'base64url'));
      assert.deepEqual(Buffer.from(u.result), dek, alg);
    }
  });

  test('encrypt/decrypt round-trips with RSA-OAEP, RSA-OAEP-256 and RSA1_5', async () => {
    const cc = cryptoClient(v, keys.rsa2048.id);
    for (const alg of ['RSA-OAEP', 'RSA-OAEP-256', 'RSA1_5']) {
      const plaintext = crypto.randomBytes(100);
      const e = await cc.encrypt({ algorithm: alg, plaintext });
      const d = await cc.decrypt({ algorithm: alg, ciphertext: e.result });
      assert.deepEqual(Buffer.from(d.result), plaintext, alg);
    }
  });

  test('ciphertext made locally by Node crypto (OAEP SHA-1, OAEP SHA-256, PKCS#1 v1.5) with the fetched JWK unwraps on the server', async () => {
    const k = await kc.getKey(keys.rsa2048.name);
    const pub = publicKeyOf(k);
    const cc = cryptoClient(v, k.id);
    const cases = [
      ['RSA-OAEP', { padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }],
      ['RSA-OAEP-256', { padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }],
      ['RSA1_5', { padding: crypto.constants.RSA_PKCS1_PADDING }],
    ];
    for (const [alg, opts] of cases) {
      const dek = crypto.randomBytes(32);
      const ct = crypto.publicEncrypt({ key: pub, ...opts }, dek);
      const u = await cc.unwrapKey(alg, ct);
      assert.deepEqual(Buffer.from(u.result), dek, alg);
      const d = await cc.decrypt({ algorithm: alg, ciphertext: ct });
      assert.deepEqual(Buffer.from(d.result), dek, `${alg} decrypt`);
    }
  });

  test('sign/verify RS256/384/512 and PS256/384/512 on RSA; signatures verify locally with Node crypto', async () => {
    const k = keys.rsa2048;
    const cc = cryptoClient(v, k.id);
    const pub = publicKeyOf(k);
    for (const alg of ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']) {
      const data = crypto.randomBytes(200);
      const digest = crypto.createHash(HASH[alg.slice(2)]).update(data).digest();
      const s = await cc.sign(alg, digest);
      assert.equal(s.result.length, 256, `${alg} signature length`);
      assert.equal((await cc.verify(alg, digest, s.result)).result, true, `${alg} server verify`);
      assert.ok(localVerify(alg, pub, data, Buffer.from(s.result)), `${alg} local verify`);
      const bad = Buffer.from(s.result);
      bad[10] ^= 1;
      assert.equal((await cc.verify(alg, digest, bad)).result, false, `${alg} tampered signature`);
    }
    // A bigger key too, once.
    const big = keys.rsa4096;
    const data = crypto.randomBytes(64);
    const s = await cryptoClient(v, big.id).sign('PS512', crypto.createHash('sha512').update(data).digest());
    assert.ok(localVerify('PS512', publicKeyOf(big), data, Buffer.from(s.result)), 'RSA-4096 PS512 local verify');
  });

  test('sign/verify ES256/ES384/ES512 on P-256/P-384/P-521; raw r||s signatures verify locally', async () => {
    for (const [curve, alg, sigLen] of [['P-256', 'ES256', 64], ['P-384', 'ES384', 96], ['P-521', 'ES512', 132]]) {
      const k = keys[curve];
      const cc = cryptoClient(v, k.id);
      const data = crypto.randomBytes(100);
      const digest = crypto.createHash(HASH[alg.slice(2)]).update(data).digest();
      const s = await cc.sign(alg, digest);
      assert.equal(s.result.length, sigLen, `${alg} signature is raw r||s`);
      assert.equal((await cc.verify(alg, digest, s.result)).result, true, `${alg} server verify`);
      assert.ok(localVerify(alg, publicKeyOf(k), data, Buffer.from(s.result)), `${alg} local verify`);
      const other = crypto.createHash(HASH[alg.slice(2)]).update('other').digest();
      assert.equal((await cc.verify(alg, other, s.result)).result, false, `${alg} wrong digest`);
    }
  });

  test('signData/verifyData work for RSA and EC', async () => {
    for (const [label, alg] of [['rsa2048', 'RS256'], ['rsa2048', 'RS512'], ['P-256', 'ES256'], ['P-384', 'ES384']]) {
      const cc = cryptoClient(v, keys[label].id);
      const data = Buffer.from(`some data for ${alg}`);
      const s = await cc.signData(alg, data);
      assert.equal((await cc.verifyData(alg, data, s.result)).result, true, `${alg} verifyData`);
      assert.equal((await cc.verifyData(alg, Buffer.from('not it'), s.result)).result, false, `${alg} other data`);
      assert.ok(localVerify(alg, publicKeyOf(keys[label]), data, Buffer.from(s.result)), `${alg} local verify`);
    }
  });

  test('signData with PS384 verifies on the server and locally (SDK verifyData is not used for PS*)', async () => {
    // @azure/keyvault-keys 4.10.2 verifies RSA signatures locally in
    // verifyData with PKCS#1 v1.5 padding even for PS*, so it answers false
    // for every valid PSS signature: a client-side bug, not the vault's.
    const cc = cryptoClient(v, keys.rsa2048.id);
    const data = Buffer.from('some data for PS384');
    const s = await cc.signData('PS384', data);
    const digest = crypto.createHash('sha384').update(data).digest();
    assert.equal((await cc.verify('PS384', digest, s.result)).result, true, 'server verify');
    assert.ok(localVerify('PS384', publicKeyOf(keys.rsa2048), data, Buffer.from(s.result)), 'local verify');
  });

  test('a disabled key refuses crypto operations with 403; enabling it again makes them work', async () => {
    const k = keys.rsa2048;
    const dek = crypto.randomBytes(32);
    const wrapped = (await cryptoClient(v, k.id).wrapKey('RSA-OAEP', dek)).result;
    await kc.updateKeyProperties(k.name, k.properties.version, { enabled: false });
    const cc = cryptoClient(v, k.id);
    await rejectsWithStatus(cc.unwrapKey('RSA-OAEP', wrapped), 403, assert);
    await rejectsWithStatus(cc.decrypt({ algorithm: 'RSA-OAEP', ciphertext: wrapped }), 403, assert);
    await rejectsWithStatus(cc.sign('RS256', crypto.createHash('sha256').update('x').digest()), 403, assert);
    await rejectsWithStatus(cc.wrapKey('RSA-OAEP-256', dek), 403, assert); // remote in the SDK
    const t = await token(v);
    const r = await raw(v, 'POST', `/keys/${k.name}/wrapkey`, { apiVersion: true, token: t, body: { alg: 'RSA-OAEP', value: b64u(dek) } });
    assert.equal(r.status, 403, r.text);
    assert.equal(r.json.error.code, 'Forbidden');
    assert.match(r.json.error.message, /disabled/i);
    await kc.updateKeyProperties(k.name, k.properties.version, { enabled: true });
    const u = await cryptoClient(v, k.id).unwrapKey('RSA-OAEP', wrapped);
    assert.deepEqual(Buffer.from(u.result), dek);
  });

  test('soft delete: getKey 404, re-create 409 ObjectIsDeletedButRecoverable, listed and readable as deleted', async () => {
    const k = keys.multi;
    const name = k.name;
    // Wrap a DEK under every version first, for the recovery test below.
    keys.multiWrapped = [];
    for await (const p of kc.listPropertiesOfKeyVersions(name)) {
      const dek = crypto.randomBytes(32);
      const w = await cryptoClient(v, p.id).wrapKey('RSA-OAEP-256', dek);
      keys.multiWrapped.push({ id: p.id, dek, ct: w.result });
    }
    assert.equal(keys.multiWrapped.length, 3);
    const before = Math.floor(Date.now() / 1000);
    const deleted = await (await kc.beginDeleteKey(name, POLL)).pollUntilDone();
    assert.equal(deleted.name, name);
    await rejectsWithStatus(kc.getKey(name), 404, assert);
    const e = await rejectsWithStatus(kc.createRsaKey(name), 409, assert);
    assert.equal(e.code, 'Conflict');
    const t = await token(v);
    const r = await raw(v, 'POST', `/keys/${name}/create`, { apiVersion: true, token: t, body: { kty: 'RSA' } });
    assert.equal(r.status, 409);
    assert.equal(r.json.error.code, 'Conflict');
    assert.equal(r.json.error.innererror?.code, 'ObjectIsDeletedButRecoverable');

    const listed = [];
    for await (const d of kc.listDeletedKeys()) listed.push(d.name);
    assert.ok(listed.includes(name), 'listDeletedKeys includes the key');
    const dk = await kc.getDeletedKey(name);
    assert.equal(dk.properties.recoveryId, `${v.url}/deletedkeys/${name}`);
    assert.ok(dk.properties.deletedOn instanceof Date);
    assert.ok(dk.properties.deletedOn.getTime() / 1000 >= before - 5);
    const retention = (dk.properties.scheduledPurgeDate.getTime() - dk.properties.deletedOn.getTime()) / 86400000;
    assert.equal(retention, 90, 'scheduledPurgeDate = deletedDate + 90 days');
    const listedKeys = [];
    for await (const p of kc.listPropertiesOfKeys()) listedKeys.push(p.name);
    assert.ok(!listedKeys.includes(name), 'deleted key not in listPropertiesOfKeys');
  });

  test('beginRecoverDeletedKey restores every version: each old ciphertext unwraps again', async () => {
    const name = keys.multi.name;
    const rec = await (await kc.beginRecoverDeletedKey(name, POLL)).pollUntilDone();
    assert.equal(rec.name, name);
    assert.equal(rec.properties.version, keys.multi.properties.version);
    for (const { id, dek, ct } of keys.multiWrapped) {
      const u = await cryptoClient(v, id).unwrapKey('RSA-OAEP-256', ct);
      assert.deepEqual(Buffer.from(u.result), dek, id);
    }
    await rejectsWithStatus(kc.getDeletedKey(name), 404, assert);
  });

  test('purgeDeletedKey destroys the key: getDeletedKey 404, the name can be created fresh, old ciphertext is dead', async () => {
    const name = keys.multi.name;
    await (await kc.beginDeleteKey(name, POLL)).pollUntilDone();
    await kc.purgeDeletedKey(name);
    await rejectsWithStatus(kc.getDeletedKey(name), 404, assert);
    await rejectsWithStatus(kc.getKey(name), 404, assert);
    const fresh = await kc.createRsaKey(name);
    assert.notEqual(fresh.properties.version, keys.multi.properties.version);
    const versions = [];
    for await (const p of kc.listPropertiesOfKeyVersions(name)) versions.push(p.version);
    assert.deepEqual(versions, [fresh.properties.version], 'only the fresh version exists');
    const old = keys.multiWrapped[0];
    await rejectsWithStatus(cryptoClient(v, old.id).unwrapKey('RSA-OAEP-256', old.ct), 404, assert);
  });
});
