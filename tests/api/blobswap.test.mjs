// Blobs are bound to what they are (name and version): someone who can
// write the store (vault.db) and moves key A's blob into key B's row gets
// an error from B, never A's private key behind B's name. Edits vault.db
// behind the stopped server with python3's sqlite3, then restarts it.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import {
  startVault, stopVault, keyClient, cryptoClient, raw, token, keyName, b64u,
} from './lib/vault.mjs';

// swap A B | strip FROM TO (TO gets FROM's blob in the shape of format 1:
// the header with version byte 1 and the ciphertext, without the IV and
// the GCM tag of format 3) | get NAME (hex of the blob). One transaction
// each.
const PY = `
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
op, a = sys.argv[2], sys.argv[3]
get = lambda n: db.execute("SELECT blob FROM key_versions WHERE name = ?", (n,)).fetchone()[0]
put = lambda n, b: db.execute("UPDATE key_versions SET blob = ? WHERE name = ?", (b, n)).rowcount
with db:
    if op == "get":
        print(get(a).hex())
    elif op == "swap":
        b = sys.argv[4]; x, y = get(a), get(b)
        assert put(a, y) == 1 and put(b, x) == 1
    elif op == "strip":
        b = sys.argv[4]; x = get(a)
        assert x[4] == 3
        assert put(b, x[:4] + bytes([1]) + x[5:8] + x[20:-16]) == 1
    elif op == "set":
        assert put(a, bytes.fromhex(sys.argv[4])) == 1
db.close()
`;

const db = (v, ...args) => execFileSync('python3', ['-c', PY, path.join(v.dir, 'vault.db'), ...args],
  { encoding: 'utf8' }).trim();

describe('blobs swapped in the store', { timeout: 180000 }, () => {
  let v;
  const s = {};

  // unwrap, sign and decrypt on key k, each as raw HTTP
  async function useKey(k, dek) {
    const t = await token(v);
    const base = `/keys/${k.name}/${k.version}`;
    const unwrap = await raw(v, 'POST', `${base}/unwrapkey`, {
      apiVersion: true, token: t, body: { alg: 'RSA-OAEP-256', value: b64u(s.wrapped[k.name]) },
    });
    const sign = await raw(v, 'POST', `${base}/sign`, {
      apiVersion: true, token: t, body: { alg: 'RS256', value: b64u(s.digest) },
    });
    const decrypt = await raw(v, 'POST', `${base}/decrypt`, {
      apiVersion: true, token: t, body: { alg: 'RSA-OAEP', value: b64u(s.encrypted[k.name]) },
    });
    return { unwrap, sign, decrypt, dek };
  }

  function refusedCleanly(r, what) {
    assert.equal(r.status, 500, `${what}: ${r.status} ${r.text.slice(0, 200)}`);
    assert.equal(r.json?.error?.code, 'InternalServerError', `${what}: Azure's error envelope`);
    assert.equal(typeof r.json?.error?.message, 'string');
    assert.equal(r.json?.value, undefined, `${what}: no result`);
  }

  function works(r, k) {
    assert.equal(r.unwrap.status, 200, r.unwrap.text);
    assert.deepEqual(Buffer.from(r.unwrap.json.value, 'base64url'), s.dek[k.name]);
    assert.equal(r.decrypt.status, 200, r.decrypt.text);
    assert.deepEqual(Buffer.from(r.decrypt.json.value, 'base64url'), s.plain);
    assert.equal(r.sign.status, 200, r.sign.text);
    const ok = crypto.verify('sha256', s.message, { key: s.pem[k.name] },
      Buffer.from(r.sign.json.value, 'base64url'));
    assert.ok(ok, `${k.name}: the signature verifies with its own public key`);
  }

  async function ecWorks() {
    const sig = await cryptoClient(v, s.ec.id).sign('ES256', s.digest);
    const { result } = await cryptoClient(v, s.ec.id).verify('ES256', s.digest, sig.result);
    assert.equal(result, true);
  }

  before(async () => {
    v = await startVault();
    const kc = keyClient(v);
    s.message = Buffer.from('p11vault blob binding');
    s.digest = crypto.createHash('sha256').update(s.message).digest();
    s.plain = crypto.randomBytes(24);
    s.keys = [];
    s.dek = {};
    s.wrapped = {};
    s.encrypted = {};
    s.pem = {};
    for (const p of ['swap-a', 'swap-b']) {
      const k = await kc.createRsaKey(keyName(p), { keySize: 2048 });
      const c = cryptoClient(v, k.id);
      const dek = crypto.randomBytes(32);
      s.keys.push({ name: k.name, version: k.properties.version });
      s.dek[k.name] = dek;
      s.wrapped[k.name] = (await c.wrapKey('RSA-OAEP-256', dek)).result;
      s.encrypted[k.name] = (await c.encrypt({ algorithm: 'RSA-OAEP', plaintext: s.plain })).result;
      s.pem[k.name] = crypto.createPublicKey({ key: {
        kty: 'RSA', n: Buffer.from(k.key.n).toString('base64url'), e: Buffer.from(k.key.e).toString('base64url'),
      }, format: 'jwk' });
    }
    s.ec = await kc.createEcKey(keyName('swap-ec'), { curve: 'P-256' });
    const [a, b] = s.keys;
    works(await useKey(a), a);
    works(await useKey(b), b);
    await ecWorks();
    await v.stop();
    s.blobA = db(v, 'get', a.name);
    s.blobB = db(v, 'get', b.name);
    db(v, 'swap', a.name, b.name);
    await v.start();
    s.exits = v.exits.length;
  });
  after(async () => { await stopVault(v); });

  test('the store holds sealed, bound (format 3) blobs', () => {
    assert.equal(s.blobA.slice(0, 10), Buffer.from('P11V\x03').toString('hex'));
    assert.equal(s.blobB.slice(0, 10), Buffer.from('P11V\x03').toString('hex'));
  });

  test('after the swap, unwrap, sign and decrypt on both RSA keys fail cleanly (500 in Azure\'s envelope, no result)', async () => {
    for (const k of s.keys) {
      const r = await useKey(k);
      refusedCleanly(r.unwrap, `${k.name} unwrapKey`);
      refusedCleanly(r.sign, `${k.name} sign`);
      refusedCleanly(r.decrypt, `${k.name} decrypt`);
    }
    // B's row now holds A's blob: A's ciphertext sent to B is refused too
    const [a, b] = s.keys;
    const r = await raw(v, 'POST', `/keys/${b.name}/${b.version}/unwrapkey`, {
      apiVersion: true, token: await token(v), body: { alg: 'RSA-OAEP-256', value: b64u(s.wrapped[a.name]) },
    });
    refusedCleanly(r, 'A\'s ciphertext through B');
    // the custodian is told which key version's blob was refused
    for (const k of s.keys) {
      assert.match(v.stderr, new RegExp(`"event":"blob_binding_failed","key":"${k.name.toLowerCase()}/${k.version}"`));
    }
  });

  test('the server did not crash, and the untouched EC key still works', async () => {
    assert.equal(v.exits.length, s.exits, 'no exit since the restart');
    assert.equal(v.child.exitCode, null);
    const r = await raw(v, 'GET', `/keys/${s.ec.name}`, { apiVersion: true, token: await token(v) });
    assert.equal(r.status, 200, r.text);
    await ecWorks();
  });

  test('a blob stripped to the unbound format and planted in another row is refused, not re-bound at restart', async () => {
    const [a, b] = s.keys;
    await v.stop();
    db(v, 'set', a.name, s.blobA);
    db(v, 'strip', a.name, b.name);
    await v.start();
    const r = await useKey(b);
    refusedCleanly(r.unwrap, 'stripped A in B: unwrapKey');
    refusedCleanly(r.sign, 'stripped A in B: sign');
    works(await useKey(a), a);
    await v.stop();
    assert.equal(db(v, 'get', b.name).slice(8, 10), '01', 'the planted blob was left unbound');
    await v.start();
  });

  test('swapped back, both RSA keys work again', async () => {
    const [a, b] = s.keys;
    await v.stop();
    db(v, 'set', a.name, s.blobA);
    db(v, 'set', b.name, s.blobB);
    await v.start();
    works(await useKey(a), a);
    works(await useKey(b), b);
    await ecWorks();
  });
});
