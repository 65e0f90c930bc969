// Data-plane parity with Azure found by the JS SDK's own live tests (issue
// 14, point 7) and the BYOK points a newcomer hit (point 8): EC keys on
// P-256K (secp256k1) with ES256K through the real @azure/keyvault-keys
// (create, get, sign/verify, JWK import, backup/restore, BYOK); the
// versions of a name without a key list empty (200) as Azure's do, with
// 403 kept for an identity without list; a BYOK blob whose key is not of
// the declared kty/crv is 400; base64url only (no standard alphabet) in
// key material; and `p11vault byok`: refuses a key the vault cannot
// import, takes --passin as OpenSSL does, never prompts without a terminal.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import {
  startVault, stopVault, keyClient, cryptoClient, raw, token, keyName, p11vault, b64u, BIN, REPO,
} from './lib/vault.mjs';
import { createIdentity, setPolicy } from './lib/identity.mjs';

const POLL = { intervalInMs: 200 };

// The public key of an SDK KeyVaultKey on P-256K, for Node's crypto.
function k1Public(key) {
  return crypto.createPublicKey({
    key: { kty: 'EC', crv: 'secp256k1', x: b64u(key.key.x), y: b64u(key.key.y) }, format: 'jwk',
  });
}

const verifyLocally = (pub, data, sig) =>
  crypto.verify('sha256', data, { key: pub, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig));

// Azure's BYOK transfer blob, built with Node's crypto (as byok.test.mjs).
function transferBlob(kekPem, kid, privateKey) {
  const aes = crypto.randomBytes(32);
  const wrappedAes = crypto.publicEncrypt({ key: kekPem, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, aes);
  const c = crypto.createCipheriv('id-aes256-wrap-pad', aes, Buffer.from('A65959A6', 'hex'));
  const wrappedKey = Buffer.concat([c.update(privateKey.export({ format: 'der', type: 'pkcs8' })), c.final()]);
  return Buffer.from(JSON.stringify({
    schema_version: '1.0.0',
    header: { kid, alg: 'dir', enc: 'CKM_RSA_AES_KEY_WRAP' },
    ciphertext: b64u(Buffer.concat([wrappedAes, wrappedKey])),
    generator: 'p11vault parity test',
  }));
}

function kekPemOf(kek) {
  return crypto.createPublicKey({ key: { kty: 'RSA', n: b64u(kek.key.n), e: b64u(kek.key.e) }, format: 'jwk' })
    .export({ format: 'pem', type: 'spki' });
}

// `p11vault ARGS` with fd 3 open on a pipe that carries fd3 (for --passin fd:3).
function p11vaultFd3(args, fd3) {
  return new Promise((resolve) => {
    const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.stdio[3].on('error', () => {});
    child.stdio[3].end(fd3);
    child.on('close', (code) => resolve({ code, stdout: out, stderr: err }));
  });
}

describe('parity with Azure: P-256K, empty version lists, BYOK checks', { timeout: 180000 }, () => {
  let v;
  let kc;
  let kek;
  let kekPem;
  let dir;
  const put = async (name, body) => raw(v, 'PUT', `/keys/${name}`, { apiVersion: true, token: await token(v), body });

  before(async () => {
    v = await startVault();
    kc = keyClient(v);
    kek = await kc.createRsaKey(keyName('kek'), { hsm: true, keySize: 2048, keyOps: ['import'] });
    kekPem = kekPemOf(kek);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p11vault-parity-'));
  });
  after(async () => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    await stopVault(v);
  });

  test('SDK createEcKey on P-256K, getKey answers crv P-256K; ES256K signs (raw r||s) and verifies', async () => {
    const name = keyName('k1');
    const k = await kc.createEcKey(name, { curve: 'P-256K' });
    assert.equal(k.keyType, 'EC');
    assert.equal(k.key.crv, 'P-256K');
    assert.equal(k.key.x.length, 32);
    assert.equal(k.key.d, undefined, 'private part d returned');
    assert.deepEqual([...k.keyOperations].sort(), ['sign', 'verify']);
    const got = await kc.getKey(name);
    assert.equal(got.key.crv, 'P-256K');
    const pub = k1Public(got);
    const cc = cryptoClient(v, k.id);
    const data = crypto.randomBytes(50);
    const digest = crypto.createHash('sha256').update(data).digest();
    const s = await cc.sign('ES256K', digest);
    assert.equal(s.result.length, 64);
    assert.ok(verifyLocally(pub, data, s.result), 'ES256K signature verifies with Node (secp256k1)');
    assert.equal((await cc.verify('ES256K', digest, s.result)).result, true);
    const other = crypto.createHash('sha256').update('other').digest();
    assert.equal((await cc.verify('ES256K', other, s.result)).result, false);
    // ES256 is P-256's algorithm: refused on a P-256K key, and ES256K on P-256
    const r = await raw(v, 'POST', `/keys/${name}/sign`, { apiVersion: true, token: await token(v), body: { alg: 'ES256', value: b64u(digest) } });
    assert.equal(r.status, 400, r.text);
    const p256 = await kc.createEcKey(keyName('p256'), { curve: 'P-256' });
    const r2 = await raw(v, 'POST', `/keys/${p256.name}/sign`, { apiVersion: true, token: await token(v), body: { alg: 'ES256K', value: b64u(digest) } });
    assert.equal(r2.status, 400, r2.text);
    // an unknown curve is still BadParameter naming the field and P-256K
    const bad = await raw(v, 'POST', `/keys/${keyName('bad')}/create`, { apiVersion: true, token: await token(v), body: { kty: 'EC', crv: 'secp256k1' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'BadParameter');
    assert.match(bad.json.error.message, /'crv'.*P-256K/);
  });

  test('SDK importKey of a secp256k1 JWK, then backup, purge and restore: the same key signs', async () => {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
    const jwk = privateKey.export({ format: 'jwk' });
    const name = keyName('k1imp');
    const k = await kc.importKey(name, {
      kty: 'EC', crv: 'P-256K', x: Buffer.from(jwk.x, 'base64url'), y: Buffer.from(jwk.y, 'base64url'), d: Buffer.from(jwk.d, 'base64url'),
    }, {});
    assert.equal(k.key.crv, 'P-256K');
    assert.equal(b64u(k.key.x), jwk.x);
    const backup = await kc.backupKey(name);
    await (await kc.beginDeleteKey(name, POLL)).pollUntilDone();
    await kc.purgeDeletedKey(name);
    const back = await kc.restoreKeyBackup(backup);
    assert.equal(back.key.crv, 'P-256K');
    assert.equal(back.id, k.id);
    const digest = crypto.createHash('sha256').update('restored').digest();
    const s = await cryptoClient(v, back.id).sign('ES256K', digest);
    assert.ok(verifyLocally(publicKey, Buffer.from('restored'), s.result));
  });

  test('BYOK of a secp256k1 key (EC-HSM, crv P-256K) imports and signs', async () => {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
    const r = await put(keyName('k1byok'), { key: { kty: 'EC-HSM', crv: 'P-256K', key_hsm: b64u(transferBlob(kekPem, kek.id, privateKey)) } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.key.crv, 'P-256K');
    assert.equal(r.json.key.x, publicKey.export({ format: 'jwk' }).x);
    const digest = crypto.createHash('sha256').update('byok').digest();
    const s = await cryptoClient(v, r.json.key.kid).sign('ES256K', digest);
    assert.ok(verifyLocally(publicKey, Buffer.from('byok'), s.result));
  });

  test('versions of a name without a key: 200 and empty (SDK and raw), also for an identity with list; 403 without list', async () => {
    const missing = keyName('never');
    const seen = [];
    for await (const p of kc.listPropertiesOfKeyVersions(missing)) seen.push(p);
    assert.deepEqual(seen, []);
    const adminTok = await token(v);
    const r = await raw(v, 'GET', `/keys/${missing}/versions`, { apiVersion: true, token: adminTok });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { value: [], nextLink: null });
    // a soft-deleted key lists no versions either
    const gone = await kc.createEcKey(keyName('gone'), { curve: 'P-256' });
    await (await kc.beginDeleteKey(gone.name, POLL)).pollUntilDone();
    const rd = await raw(v, 'GET', `/keys/${gone.name}/versions`, { apiVersion: true, token: adminTok });
    assert.equal(rd.status, 200, rd.text);
    assert.deepEqual(rd.json.value, []);
    const lister = await createIdentity(v, adminTok, 'lister', ['list']);
    const getter = await createIdentity(v, adminTok, 'getter', ['get']);
    const lr = await raw(v, 'GET', `/keys/${missing}/versions`, { apiVersion: true, token: await token(v, lister) });
    assert.equal(lr.status, 200, lr.text);
    assert.deepEqual(lr.json, { value: [], nextLink: null });
    const gr = await raw(v, 'GET', `/keys/${missing}/versions`, { apiVersion: true, token: await token(v, getter) });
    assert.equal(gr.status, 403, gr.text);
    await setPolicy(v, adminTok, getter.objectId, ['get', 'list']);
    const gr2 = await raw(v, 'GET', `/keys/${missing}/versions`, { apiVersion: true, token: await token(v, getter) });
    assert.equal(gr2.status, 200, gr2.text);
  });

  test('BYOK: a blob whose key is not of the declared kty or crv is 400 and nothing is stored', async () => {
    const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const p256 = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const cases = {
      'RSA key declared EC-HSM': { kty: 'EC-HSM', crv: 'P-256', key_hsm: b64u(transferBlob(kekPem, kek.id, rsa)) },
      'RSA key declared EC-HSM, no crv': { kty: 'EC-HSM', key_hsm: b64u(transferBlob(kekPem, kek.id, rsa)) },
      'EC key declared RSA-HSM': { kty: 'RSA-HSM', key_hsm: b64u(transferBlob(kekPem, kek.id, p256)) },
      'P-256 key declared P-384': { kty: 'EC-HSM', crv: 'P-384', key_hsm: b64u(transferBlob(kekPem, kek.id, p256)) },
    };
    for (const [what, key] of Object.entries(cases)) {
      const name = keyName('mism');
      const r = await put(name, { key });
      assert.equal(r.status, 400, `${what}: ${r.text}`);
      assert.equal(r.json.error.code, 'BadParameter');
      assert.match(r.json.error.message, /declared key type/, what);
      const g = await raw(v, 'GET', `/keys/${name}`, { apiVersion: true, token: await token(v) });
      assert.equal(g.status, 404, `${what}: nothing stored`);
    }
    // the same blobs with the right kty import
    const ok = await put(keyName('okrsa'), { key: { kty: 'RSA-HSM', key_hsm: cases['RSA key declared EC-HSM'].key_hsm } });
    assert.equal(ok.status, 200, ok.text);
  });

  test('key material is base64url only: the standard alphabet (+ /) is 400, padding is accepted', async () => {
    // a P-256 JWK whose coordinates need '+' or '/' in standard base64
    let jwk;
    let std;
    for (;;) {
      jwk = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
      std = Object.fromEntries(['x', 'y', 'd'].map((f) => [f, Buffer.from(jwk[f], 'base64url').toString('base64')]));
      if (/[+/]/.test(std.x + std.y + std.d)) break;
    }
    const r = await put(keyName('std'), { key: { kty: 'EC', crv: 'P-256', ...std } });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error.message, /base64url/);
    const padded = Object.fromEntries(['x', 'y', 'd'].map((f) => [f, std[f].replace(/\+/g, '-').replace(/\//g, '_')]));
    const ok = await put(keyName('padded'), { key: { kty: 'EC', crv: 'P-256', ...padded } });
    assert.equal(ok.status, 200, ok.text);
    // key_hsm too: standard base64 of a transfer blob is refused
    // "???" is "Pz8/" in base64 at any alignment: this blob's standard
    // base64 has a '/' for sure
    const blob = JSON.parse(transferBlob(kekPem, kek.id, crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey));
    const s64 = Buffer.from(JSON.stringify({ ...blob, generator: '??????' })).toString('base64');
    assert.match(s64, /[+/]/);
    const rb = await put(keyName('stdhsm'), { key: { kty: 'EC-HSM', key_hsm: s64 } });
    assert.equal(rb.status, 400, rb.text);
    assert.match(rb.json.error.message, /key_hsm.*base64url/);
  });

  describe('p11vault byok', () => {
    const files = {};
    before(() => {
      fs.writeFileSync(path.join(dir, 'kek.pem'), kekPem);
      const ed = crypto.generateKeyPairSync('ed25519').privateKey;
      fs.writeFileSync(path.join(dir, 'ed.pem'), ed.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
      const r1024 = crypto.generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
      fs.writeFileSync(path.join(dir, 'r1024.pem'), r1024.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
      const p224 = crypto.generateKeyPairSync('ec', { namedCurve: 'secp224r1' }).privateKey;
      fs.writeFileSync(path.join(dir, 'p224.pem'), p224.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
      files.k1 = crypto.generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
      fs.writeFileSync(path.join(dir, 'enc.pem'), files.k1.privateKey.export({
        format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'correct horse',
      }), { mode: 0o600 });
      fs.writeFileSync(path.join(dir, 'pass.txt'), 'correct horse\n', { mode: 0o600 });
    });
    const byok = (key, out, extra = [], opts) => p11vault(['byok', '--kek-kid', kek.id, '--kek-public', path.join(dir, 'kek.pem'),
      '--key', path.join(dir, key), '--out', path.join(dir, out), ...extra], opts);

    test('an Ed25519, an RSA-1024 or a P-224 PEM is refused with a clear error and no blob', async () => {
      for (const [f, re] of [['ed.pem', /ED25519/], ['r1024.pem', /1024 bits/], ['p224.pem', /secp224r1/]]) {
        const c = await byok(f, `${f}.byok`);
        assert.notEqual(c.code, 0, `${f}: ${c.stdout}`);
        assert.match(c.stderr, re, f);
        assert.match(c.stderr, /imports RSA keys of 2048, 3072 or 4096 bits and EC keys on P-256, P-256K/, f);
        assert.equal(fs.existsSync(path.join(dir, `${f}.byok`)), false, `${f}: a blob was written`);
      }
    });

    test('an encrypted PEM without --passin and stdin not a terminal: refused at once, no prompt', async () => {
      // stdin is a pipe, not a terminal: no prompt, a clear error
      const c = await byok('enc.pem', 'noprompt.byok', [], { input: '', timeoutMs: 20000 });
      assert.notEqual(c.code, 0);
      assert.match(c.stderr, /encrypted and stdin is not a terminal: give its pass phrase with --passin/);
      assert.equal(fs.existsSync(path.join(dir, 'noprompt.byok')), false);
      const wrong = await byok('enc.pem', 'wrong.byok', ['--passin', 'pass:wrong horse']);
      assert.notEqual(wrong.code, 0);
      assert.match(wrong.stderr, /wrong pass phrase/);
      assert.ok(!wrong.stderr.includes('wrong horse'), 'the pass phrase is echoed');
      const bad = await byok('enc.pem', 'bad.byok', ['--passin', 'nonsense']);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /--passin wants pass:PHRASE, env:VAR, file:PATH, fd:N or stdin/);
      const unset = await byok('enc.pem', 'unset.byok', ['--passin', 'env:P11VAULT_NO_SUCH_VAR']);
      assert.notEqual(unset.code, 0);
      assert.match(unset.stderr, /not set/);
    });

    test('--passin pass:, env:, file:, fd: and stdin decrypt the PEM; the P-256K blob imports and signs', async () => {
      const runs = {
        pass: () => byok('enc.pem', 'pass.byok', ['--passin', 'pass:correct horse']),
        env: () => byok('enc.pem', 'env.byok', ['--passin', 'env:P11VAULT_TEST_PASS'], { env: { ...process.env, P11VAULT_TEST_PASS: 'correct horse' } }),
        file: () => byok('enc.pem', 'file.byok', ['--passin', `file:${path.join(dir, 'pass.txt')}`]),
        fd: () => p11vaultFd3(['byok', '--kek-kid', kek.id, '--kek-public', path.join(dir, 'kek.pem'), '--key', path.join(dir, 'enc.pem'),
          '--out', path.join(dir, 'fd.byok'), '--passin', 'fd:3'], 'correct horse\n'),
        stdin: () => byok('enc.pem', 'stdin.byok', ['--passin', 'stdin'], { input: 'correct horse\r\n' }),
      };
      for (const [how, go] of Object.entries(runs)) {
        const c = await go();
        assert.equal(c.code, 0, `${how}: ${c.stderr}`);
        assert.ok(fs.existsSync(path.join(dir, `${how}.byok`)), how);
      }
      const blob = fs.readFileSync(path.join(dir, 'fd.byok'));
      const r = await put(keyName('k1cli'), { key: { kty: 'EC-HSM', crv: 'P-256K', key_hsm: b64u(blob) } });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.key.x, files.k1.publicKey.export({ format: 'jwk' }).x);
      const digest = crypto.createHash('sha256').update('cli').digest();
      const s = await cryptoClient(v, r.json.key.kid).sign('ES256K', digest);
      assert.ok(verifyLocally(files.k1.publicKey, Buffer.from('cli'), s.result));
      // declared as RSA-HSM, the same blob is refused
      const wrong = await put(keyName('k1cliw'), { key: { kty: 'RSA-HSM', key_hsm: b64u(blob) } });
      assert.equal(wrong.status, 400, wrong.text);
    });

    test('byok --help says the KEK is fetched from the vault without --kek-public, as docs/byok.md does', async () => {
      const h = await p11vault(['byok', '--help']);
      assert.equal(h.code, 0);
      assert.match(h.stdout.replace(/\s+/g, ' '), /without it, the KEK's public key is fetched from the vault/);
      const doc = fs.readFileSync(path.join(REPO, 'docs', 'byok.md'), 'utf8');
      assert.ok(!/does not fetch/.test(doc), 'docs/byok.md still says byok cannot fetch the KEK');
      assert.match(doc.replace(/\s+/g, ' '), /without `--kek-public`, `byok` fetches/i);
    });
  });
});
