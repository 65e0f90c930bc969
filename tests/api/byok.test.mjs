// Import: plaintext JWKs (RSA and EC, validated) and BYOK key_hsm transfer
// blobs (built here with Node's crypto, and by `p11vault byok`), then a
// scan of the data directory and the server's output for private parts.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import {
  startVault, stopVault, keyClient, cryptoClient, raw, token, keyName, p11vault, b64u,
} from './lib/vault.mjs';
import { filesUnder } from './lib/util.mjs';

const jwkOf = (k) => k.export({ format: 'jwk' });
// The SDK's JsonWebKey carries the parts as bytes.
const sdkJwk = (jwk) => Object.fromEntries(Object.entries(jwk).map(([f, x]) =>
  [f, ['kty', 'crv'].includes(f) ? x : Buffer.from(x, 'base64url')]));

// Azure's BYOK transfer blob, built independently of p11vault's code.
function transferBlob(kekPem, kid, privateKey) {
  const aes = crypto.randomBytes(32);
  const wrappedAes = crypto.publicEncrypt({ key: kekPem, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, aes);
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  const c = crypto.createCipheriv('id-aes256-wrap-pad', aes, Buffer.from('A65959A6', 'hex'));
  const wrappedKey = Buffer.concat([c.update(pkcs8), c.final()]);
  const blob = {
    schema_version: '1.0.0',
    header: { kid, alg: 'dir', enc: 'CKM_RSA_AES_KEY_WRAP' },
    ciphertext: b64u(Buffer.concat([wrappedAes, wrappedKey])),
    generator: 'p11vault node test',
  };
  return Buffer.from(JSON.stringify(blob));
}

function kekPemOf(kekBundle) {
  const k = kekBundle.key;
  return crypto.createPublicKey({ key: { kty: 'RSA', n: Buffer.from(k.n).toString('base64url'), e: Buffer.from(k.e).toString('base64url') }, format: 'jwk' })
    .export({ format: 'pem', type: 'spki' });
}

async function importRaw(v, name, body) {
  return raw(v, 'PUT', `/keys/${name}`, { apiVersion: true, token: await token(v), body });
}

async function wrapUnwrapWorks(v, id, pub) {
  const dek = crypto.randomBytes(32);
  const ct = crypto.publicEncrypt({ key: pub, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, dek);
  const r = await cryptoClient(v, id).unwrapKey('RSA-OAEP', ct);
  return Buffer.from(r.result).equals(dek);
}

describe('key import and BYOK', { timeout: 300000 }, () => {
  let v;
  const secrets = [];   // private parts that must never be stored or logged
  const remember = (jwk) => {
    for (const f of ['d', 'p', 'q']) {
      if (!jwk[f]) continue;
      const b = Buffer.from(jwk[f], 'base64url');
      secrets.push({ f, b }, { f: `${f}(b64u)`, b: Buffer.from(jwk[f]) },
        { f: `${f}(b64)`, b: Buffer.from(b.toString('base64').replace(/=+$/, '')) },
        { f: `${f}(hex)`, b: Buffer.from(b.toString('hex')) });
    }
  };

  before(async () => { v = await startVault(); });
  after(async () => { await stopVault(v); });

  test('SDK importKey of an RSA-2048 JWK: the vault decrypts and signs with it', async () => {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = jwkOf(privateKey);
    remember(jwk);
    const kc = keyClient(v);
    const name = keyName('imp-rsa');
    const k = await kc.importKey(name, { ...sdkJwk(jwk), kty: 'RSA', keyOps: ['decrypt', 'sign', 'verify', 'unwrapKey', 'wrapKey', 'encrypt'] }, { hardwareProtected: true });
    assert.equal(k.keyType, 'RSA-HSM');
    assert.equal(Buffer.from(k.key.n).toString('base64url'), jwk.n);
    assert.equal(k.key.d, undefined);
    assert.ok(await wrapUnwrapWorks(v, k.id, publicKey));
    const dg = crypto.createHash('sha256').update('x').digest();
    const s = await cryptoClient(v, k.id).sign('RS256', dg);
    assert.ok(crypto.verify('sha256', Buffer.from('x'), publicKey, Buffer.from(s.result)));
  });

  for (const crv of ['P-256', 'P-384', 'P-521']) {
    test(`SDK importKey of an EC ${crv} JWK signs verifiably`, async () => {
      const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: crv });
      const jwk = jwkOf(privateKey);
      remember(jwk);
      const name = keyName('imp-ec');
      const k = await keyClient(v).importKey(name, sdkJwk(jwk), {});
      assert.equal(k.key.crv, crv);
      const h = { 'P-256': 'sha256', 'P-384': 'sha384', 'P-521': 'sha512' }[crv];
      const alg = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' }[crv];
      const dg = crypto.createHash(h).update('m').digest();
      const s = await cryptoClient(v, k.id).sign(alg, dg);
      assert.ok(crypto.verify(h, Buffer.from('m'), { key: publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(s.result)));
    });
  }

  test('inconsistent or unsupported JWKs: 400 and nothing stored', async () => {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const good = jwkOf(privateKey);
    const other = jwkOf(crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
    const small = jwkOf(crypto.generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey);
    const ec = jwkOf(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
    const yb = Buffer.from(ec.y, 'base64url'); yb[31] ^= 1;
    const cases = {
      'wrong CRT part': { ...good, qi: other.qi },
      'p from another key': { ...good, p: other.p },
      'wrong d': { ...good, d: other.d },
      'RSA-1024': small,
      'point off the curve': { ...ec, y: b64u(yb) },
      'd of another EC key': { ...ec, d: jwkOf(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey).d },
      'missing dq': { ...good, dq: undefined },
    };
    for (const [what, key] of Object.entries(cases)) {
      const name = keyName('bad');
      const r = await importRaw(v, name, { key, Hsm: true });
      assert.equal(r.status, 400, `${what}: ${r.text}`);
      assert.equal(r.json.error.code, 'BadParameter');
      for (const f of ['d', 'p', 'q']) if (key[f]) assert.ok(!r.text.includes(key[f]), `${what}: error echoes ${f}`);
      const g = await raw(v, 'GET', `/keys/${name}`, { apiVersion: true, token: await token(v) });
      assert.equal(g.status, 404, `${what}: nothing stored`);
    }
  });

  describe('BYOK', () => {
    let kek, kekPem, kek2, noImport;
    before(async () => {
      const kc = keyClient(v);
      kek = await kc.createRsaKey(keyName('kek'), { hsm: true, keySize: 2048, keyOps: ['import'] });
      kek2 = await kc.createRsaKey(keyName('kek2'), { hsm: true, keySize: 3072, keyOps: ['import'] });
      noImport = await kc.createRsaKey(keyName('nokek'), { hsm: true, keySize: 2048, keyOps: ['decrypt'] });
      kekPem = kekPemOf(kek);
    });

    test('the KEK can do nothing but import', async () => {
      assert.deepEqual(kek.keyOperations, ['import']);
      const ct = crypto.publicEncrypt({ key: kekPem, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, Buffer.alloc(32, 1));
      // raw HTTP: the SDK refuses locally before asking the server
      const r = await raw(v, 'POST', `/keys/${kek.name}/decrypt`, { apiVersion: true, token: await token(v), body: { alg: 'RSA-OAEP', value: b64u(ct) } });
      assert.equal(r.status, 403, r.text);
    });

    test('a blob built with Node crypto imports (RSA and EC) and works', async () => {
      const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 3072 });
      remember(jwkOf(privateKey));
      const name = keyName('byok-rsa');
      const r = await importRaw(v, name, { key: { kty: 'RSA-HSM', key_ops: ['unwrapKey', 'wrapKey'], key_hsm: b64u(transferBlob(kekPem, kek.id, privateKey)) } });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.key.kty, 'RSA-HSM');
      assert.equal(r.json.key.n, jwkOf(publicKey).n);
      assert.deepEqual(r.json.key.key_ops, ['wrapKey', 'unwrapKey']);
      assert.ok(await wrapUnwrapWorks(v, r.json.key.kid, publicKey));

      const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
      remember(jwkOf(ec.privateKey));
      const r2 = await importRaw(v, keyName('byok-ec'), { key: { kty: 'EC-HSM', crv: 'P-256', key_hsm: b64u(transferBlob(kekPem, kek.id, ec.privateKey)) } });
      assert.equal(r2.status, 200, r2.text);
      assert.equal(r2.json.key.x, jwkOf(ec.publicKey).x);
      const dg = crypto.createHash('sha256').update('e').digest();
      const s = await cryptoClient(v, r2.json.key.kid).sign('ES256', dg);
      assert.ok(crypto.verify('sha256', Buffer.from('e'), { key: ec.publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(s.result)));
    });

    test('a blob built by `p11vault byok` from a PEM imports', async () => {
      const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
      remember(jwkOf(privateKey));
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p11vault-byok-'));
      try {
        fs.writeFileSync(path.join(dir, 'key.pem'), privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
        fs.writeFileSync(path.join(dir, 'kek.pem'), kekPem);
        const out = path.join(dir, 'blob.byok');
        const c = await p11vault(['byok', '--kek-kid', kek.id, '--kek-public', path.join(dir, 'kek.pem'), '--key', path.join(dir, 'key.pem'), '--out', out]);
        assert.equal(c.code, 0, c.stderr);
        const blob = fs.readFileSync(out);
        const j = JSON.parse(blob);
        assert.equal(j.header.kid, kek.id);
        assert.equal(j.header.enc, 'CKM_RSA_AES_KEY_WRAP');
        const r = await importRaw(v, keyName('byok-cli'), { key: { kty: 'RSA-HSM', key_hsm: b64u(blob) } });
        assert.equal(r.status, 200, r.text);
        assert.ok(await wrapUnwrapWorks(v, r.json.key.kid, publicKey));
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    test('`p11vault byok --kek-kid` fetches the KEK public key from the vault (admin credential) and the blob imports', async () => {
      const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
      remember(jwkOf(privateKey));
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p11vault-byok-'));
      try {
        fs.writeFileSync(path.join(dir, 'key.pem'), privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
        const out = path.join(dir, 'blob.byok');
        const c = await p11vault(['byok', '--kek-kid', kek.id, '--data', v.dir, '--key', path.join(dir, 'key.pem'), '--out', out]);
        assert.equal(c.code, 0, c.stderr);
        const r = await importRaw(v, keyName('byok-kid'), { key: { kty: 'RSA-HSM', key_hsm: b64u(fs.readFileSync(out)) } });
        assert.equal(r.status, 200, r.text);
        assert.ok(await wrapUnwrapWorks(v, r.json.key.kid, publicKey));
        const bad = await p11vault(['byok', '--kek-kid', `${v.url}/keys/no-such-kek`, '--data', v.dir, '--key', path.join(dir, 'key.pem'), '--out', out + '2']);
        assert.notEqual(bad.code, 0);
        assert.match(bad.stderr, /404/);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    test('wrong KEK, KEK without import, truncated or altered blob: 400, nothing stored', async () => {
      const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
      remember(jwkOf(privateKey));
      const good = JSON.parse(transferBlob(kekPem, kek.id, privateKey));
      const ct = Buffer.from(good.ciphertext, 'base64url');
      const altered = Buffer.from(ct); altered[ct.length - 9] ^= 4;
      const cases = {
        'blob for another KEK (kid names kek2)': { ...good, header: { ...good.header, kid: kek2.id } },
        'KEK without import': JSON.parse(transferBlob(kekPemOf(noImport), noImport.id, privateKey)),
        truncated: { ...good, ciphertext: b64u(ct.subarray(0, ct.length - 8)) },
        altered: { ...good, ciphertext: b64u(altered) },
        'kid of another vault': { ...good, header: { ...good.header, kid: `https://elsewhere.example/keys/x` } },
      };
      for (const [what, blob] of Object.entries(cases)) {
        const name = keyName('byok-bad');
        const r = await importRaw(v, name, { key: { kty: 'RSA-HSM', key_hsm: b64u(Buffer.from(JSON.stringify(blob))) } });
        assert.equal(r.status, 400, `${what}: ${r.text}`);
        const g = await raw(v, 'GET', `/keys/${name}`, { apiVersion: true, token: await token(v) });
        assert.equal(g.status, 404, `${what}: nothing stored`);
      }
    });
  });

  test('no private part of any imported key in the data directory or the server output', async () => {
    await v.stop();
    const hay = [{ where: 'server stdout', b: Buffer.from(v.stdout) }, { where: 'server stderr', b: Buffer.from(v.stderr) }];
    for (const p of filesUnder(v.dir)) hay.push({ where: p, b: fs.readFileSync(p) });
    assert.ok(secrets.length >= 20, 'the secrets were recorded');
    assert.ok(hay.length > 5);
    for (const s of secrets) {
      for (const h of hay) assert.equal(h.b.indexOf(s.b), -1, `${s.f} found in ${h.where}`);
    }
    await v.start();
  });
});
