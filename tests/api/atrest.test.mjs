// At rest: what a copy of the data directory gives a thief who has nothing
// else (no running vault, no memory, no credentials, not the host's
// systemd-creds key). The attack (lib/offline.mjs): blobScan tries every
// 32-byte window of every small file as the AES key of every key blob in
// vault.db (and, for format 3, the two-key attacks with every 32-byte
// CKA_VALUE lying in the clear in a token object file as the domain key);
// pinScan tries every printable word of every file as the token's USER and
// SO PIN.
//
//   1. The attack proves itself on the previous version's layout (the
//      fixture tests/fixtures/v3-datadir/, made by git commit 8d9070f; see
//      tests/fixtures/make-v3-datadir.sh): SoftHSMv2 keeps the domain key, a
//      public token object, in the clear in its object file, so every blob
//      opens; and hsm/user.pin and hsm/so.pin hold the PINs.
//   2. A new vault (sealed at rest: PINs derived from an unseal secret S
//      that rests nowhere, blobs format 3 under a private token key) gives
//      it nothing, after keys were made, used, and used again after a
//      restart.
//   3. The previous version's directory, served once by this version, is
//      migrated (PIN files shredded, blobs format 3, every recorded key
//      version still works) and then gives the attack nothing; `p11vault
//      rekey` then issues operator key shares and the vault still unseals
//      by itself (systemd-creds) and serves the same keys.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  startVault, openVault, stopVault, raw, token, tokenPins, p11vault, keyName, b64u, unb64u,
} from './lib/vault.mjs';
import { legacyTempCopy } from './lib/legacy.mjs';
import { blobScan, pinScan, pinWords, readBlobs } from './lib/offline.mjs';

// ---------------------------------------------------------------- helpers

// Every regular file under dir: [{rel, abs}]
function filesOf(dir) {
  const out = [];
  const rec = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) rec(p);
      else if (e.isFile()) out.push({ rel: path.relative(dir, p), abs: p });
    }
  };
  rec(dir);
  return out;
}

// sha256 of every file under dir, by relative path
function digests(dir) {
  return Object.fromEntries(filesOf(dir).map((f) =>
    [f.rel, crypto.createHash('sha256').update(fs.readFileSync(f.abs)).digest('hex')]));
}

// Where any needle ({what, bytes}) occurs in any file under dir: ["what in file@offset"]
function byteSearch(dir, needles) {
  const hits = [];
  for (const f of filesOf(dir)) {
    const buf = fs.readFileSync(f.abs);
    for (const n of needles) {
      const o = buf.indexOf(n.bytes);
      if (o >= 0) hits.push(`${n.what} in ${f.rel}@${o}`);
    }
  }
  return hits;
}

// The forms a secret could rest in: as is, hex (both cases), base64(url)
function forms(what, bytes) {
  const b = Buffer.from(bytes);
  return [
    { what, bytes: b },
    { what: `${what} (hex)`, bytes: Buffer.from(b.toString('hex')) },
    { what: `${what} (HEX)`, bytes: Buffer.from(b.toString('hex').toUpperCase()) },
    { what: `${what} (base64)`, bytes: Buffer.from(b.toString('base64').replace(/=+$/, '')) },
    { what: `${what} (base64url)`, bytes: Buffer.from(b.toString('base64url')) },
  ];
}

// The needles of a sealed vault's secrets: S, the PINs (hex text, and the
// raw HKDF output they are the hex of), and key shares ("i-hex" and the
// share bytes).
function secretNeedles(pins, shares = []) {
  return [
    ...forms('S', pins.secret),
    { what: 'user PIN', bytes: Buffer.from(pins.user) },
    ...forms('user PIN bytes', Buffer.from(pins.user, 'hex')),
    { what: 'SO PIN', bytes: Buffer.from(pins.so) },
    ...forms('SO PIN bytes', Buffer.from(pins.so, 'hex')),
    ...shares.flatMap((s, i) => [
      { what: `share ${i + 1}`, bytes: Buffer.from(s) },
      ...forms(`share ${i + 1} bytes`, Buffer.from(s.replace(/^\d+-/, ''), 'hex')),
    ]),
  ];
}

async function tempCopy(dir, prefix) {
  const parent = await fsp.mkdtemp(path.join(os.tmpdir(), `p11vault-atrest-${prefix}-`));
  const copy = path.join(parent, 'data');
  await fsp.cp(dir, copy, { recursive: true });
  return { dir: copy, remove: () => fsp.rm(parent, { recursive: true, force: true }) };
}

// 32-byte CKA_VALUE attributes in the clear in SoftHSMv2 object files (a
// public token AES-256 key): what blobScan takes as domain key candidates
function clearAesValues(dir) {
  const attr = Buffer.from('000000000000001100000000000000030000000000000020', 'hex');
  let n = 0;
  for (const f of filesOf(dir)) {
    if (!f.rel.startsWith('tokens/')) continue;
    const buf = fs.readFileSync(f.abs);
    for (let o = buf.indexOf(attr); o >= 0; o = buf.indexOf(attr, o + 1)) n++;
  }
  return n;
}

// The offline attack on dir (a copy): no blob opens, no PIN logs in.
async function attackFindsNothing(t, dir, { blobs }) {
  const b = await blobScan(dir);
  t.diagnostic(`blobScan: ${b.tried} candidate keys from ${b.files} files (${b.bytes} bytes), ` +
    `${clearAesValues(dir)} AES values in the clear in token files, ${b.attempts} attempts, ` +
    `${b.blobs.length} blobs, ${b.opened.length} opened, ${b.ms} ms (${b.engine})`);
  assert.ok(b.tried > 0 && b.attempts > 0, 'blobScan tried candidate keys');
  assert.equal(b.blobs.length, blobs, 'one blob per key version');
  for (const x of b.blobs) assert.equal(x.blobVersion, 3, `${x.name}/${x.version}: blob format`);
  assert.deepEqual(b.opened.map((o) => `${o.name}/${o.version} by ${o.how} with ${o.file}@${o.offset}`), [],
    'no blob opens');

  const p = await pinScan(dir);
  t.diagnostic(`pinScan: ${p.words} words, ${p.tried} tried, ${p.logins} logins, rv ${JSON.stringify(p.rv)}, ${p.ms} ms`);
  assert.ok(p.words > 0 && p.tried === p.words, `every word tried (${p.tried} of ${p.words})`);
  assert.equal(p.userPin, null, 'no word is the user PIN');
  assert.equal(p.soPin, null, 'no word is the SO PIN');
  assert.deepEqual(Object.keys(p.rv), ['0xa0'], 'every login: CKR_PIN_INCORRECT');
  return { b, p };
}

// The words of every file are not the PINs, and no secret is in any file.
async function noSecretRests(dir, pins, shares) {
  const words = await pinWords(dir);
  assert.ok(words.size > 0);
  assert.ok(!words.has(pins.user), `the user PIN is a word of ${words.get(pins.user)}`);
  assert.ok(!words.has(pins.so), `the SO PIN is a word of ${words.get(pins.so)}`);
  assert.deepEqual(byteSearch(dir, secretNeedles(pins, shares)), [], 'no secret rests in the data directory');
}

// ---------------------------------------------------------------- key use

const API = { apiVersion: true };

async function call(v, tok, method, p, body) {
  const r = await raw(v, method, p, { ...API, token: tok, body });
  assert.equal(r.status, 200, `${method} ${p}: ${r.status} ${r.text.slice(0, 300)}`);
  return r.json;
}

const pubOf = (jwk) => crypto.createPublicKey({ key: jwk, format: 'jwk' });

// signs through the API (RS256 or ES256) and verifies here with jwk
async function signs(v, tok, name, version, jwk) {
  const msg = crypto.randomBytes(48);
  const alg = jwk.kty === 'EC' ? 'ES256' : 'RS256';
  const digest = crypto.createHash('sha256').update(msg).digest();
  const s = await call(v, tok, 'POST', `/keys/${name}/${version}/sign`, { alg, value: b64u(digest) });
  const ok = crypto.verify('sha256', msg, { key: pubOf(jwk), dsaEncoding: 'ieee-p1363' }, unb64u(s.value));
  assert.ok(ok, `${name}/${version}: the ${alg} signature verifies with the public key`);
}

// wraps a DEK here with jwk (RSA-OAEP) and unwraps it through the API
async function unwraps(v, tok, name, version, jwk) {
  const dek = crypto.randomBytes(32);
  const ct = crypto.publicEncrypt({ key: pubOf(jwk), padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, dek);
  const u = await call(v, tok, 'POST', `/keys/${name}/${version}/unwrapkey`, { alg: 'RSA-OAEP', value: b64u(ct) });
  assert.ok(unb64u(u.value).equals(dek), `${name}/${version}: unwrapKey gives the DEK back`);
}

// Azure's BYOK transfer blob (as tests/api/byok.test.mjs builds it):
// RSA-OAEP(SHA-1) of a fresh AES-256 key under the KEK, then the AES-KWP
// (RFC 5649) wrap of the PKCS#8 key under it.
function transferBlob(kekJwk, kid, privateKey) {
  const aes = crypto.randomBytes(32);
  const wrappedAes = crypto.publicEncrypt({ key: pubOf(kekJwk), padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, aes);
  const c = crypto.createCipheriv('id-aes256-wrap-pad', aes, Buffer.from('A65959A6', 'hex'));
  const wrappedKey = Buffer.concat([c.update(privateKey.export({ format: 'der', type: 'pkcs8' })), c.final()]);
  return Buffer.from(JSON.stringify({
    schema_version: '1.0.0',
    header: { kid, alg: 'dir', enc: 'CKM_RSA_AES_KEY_WRAP' },
    ciphertext: b64u(Buffer.concat([wrappedAes, wrappedKey])),
    generator: 'p11vault atrest test',
  }));
}

const publicJwk = (k) => (k.kty.startsWith('RSA') ? { kty: 'RSA', n: k.n, e: k.e } : { kty: 'EC', crv: k.crv, x: k.x, y: k.y });

// every key version that signs signs, every one that unwraps unwraps
async function useAll(v, keys) {
  const tok = await token(v);
  for (const k of keys) {
    if (k.key_ops.includes('sign')) await signs(v, tok, k.name, k.version, k.jwk);
    if (k.key_ops.includes('unwrapKey')) await unwraps(v, tok, k.name, k.version, k.jwk);
  }
}

const events = (v, name) => v.stderr.split('\n').filter((l) => {
  try { return JSON.parse(l).event === name; } catch { return false; }
});

// ---------------------------------------------------------------- 1

describe('the attack works on the previous version\'s layout (a deliberately weak copy)', { timeout: 60000 }, () => {
  let L;
  let before0;

  before(async () => {
    L = await legacyTempCopy();
    before0 = digests(L.dir);
  });
  after(async () => { await L?.remove(); });

  test('the fixture: one version-2 blob per recorded key version', async () => {
    const rows = await readBlobs(L.dir);
    assert.equal(rows.length, L.keys.length);
    for (const k of L.keys) {
      const r = rows.find((x) => x.version === k.version);
      assert.ok(r, `no blob for ${k.name}/${k.version}`);
      assert.equal(r.name, k.name);
      assert.equal(r.table, 'key_versions');
      assert.equal(r.blob.subarray(0, 4).toString(), 'P11V');
      assert.equal(r.blob[4], 2, `${k.name}/${k.version}: blob version`);
    }
    assert.deepEqual(L.keys.map((k) => k.name).sort(), ['byok1', 'ec1', 'kek1', 'rsa1', 'rsa1']);
  });

  test('blobScan opens every blob, and the private keys are the vault\'s', async (t) => {
    const r = await blobScan(L.dir);
    t.diagnostic(`blobScan: ${r.tried} candidate keys from ${r.files} files (${r.bytes} bytes), ` +
      `${r.attempts} attempts, ${r.blobs.length} blobs, ${r.opened.length} opened, ${r.ms} ms (${r.engine})`);
    assert.equal(r.blobs.length, L.keys.length);
    assert.equal(r.opened.length, r.blobs.length, 'every blob opens');
    for (const k of L.keys) {
      const o = r.opened.find((x) => x.version === k.version);
      assert.ok(o, `${k.name}/${k.version} did not open`);
      assert.equal(o.how, 'kwp');
      assert.deepEqual(o.jwk, k.jwk, `${k.name}/${k.version}: the recovered key's public part`);
      // the opener is the domain key, in the clear in a token object file
      assert.match(o.file, /^tokens\/[^/]+\/[^/]+\.object$/);
      // and the PKCS#8 is a whole private key: it signs verifiably
      const priv = crypto.createPrivateKey({ key: o.pkcs8, format: 'der', type: 'pkcs8' });
      const pub = crypto.createPublicKey({ key: k.jwk, format: 'jwk' });
      const sig = crypto.sign('sha256', Buffer.from('at rest'), priv);
      assert.ok(crypto.verify('sha256', Buffer.from('at rest'), pub, sig));
    }
    const openers = new Set(r.opened.map((o) => `${o.file}@${o.offset}`));
    assert.equal(openers.size, 1, 'one key (the domain key) opens them all');
  });

  test('pinScan finds the user PIN and the SO PIN, and both log in', async (t) => {
    const r = await pinScan(L.dir);
    t.diagnostic(`pinScan: ${r.words} words, ${r.tried} tried, ${r.logins} logins, rv ${JSON.stringify(r.rv)}, ${r.ms} ms`);
    assert.equal(r.userPin, fs.readFileSync(path.join(L.dir, 'hsm', 'user.pin'), 'latin1').trim());
    assert.equal(r.soPin, fs.readFileSync(path.join(L.dir, 'hsm', 'so.pin'), 'latin1').trim());
    assert.equal(r.proof.user.ok, true, `pkcs11-tool user login: ${r.proof.user.error}`);
    assert.ok(r.proof.user.objects >= 4, 'the user sees the private objects too');
    assert.equal(r.proof.so.ok, true, `pkcs11-tool SO login: ${r.proof.so.error}`);
    assert.equal(r.proof.user.file, 'hsm/user.pin');
    assert.equal(r.proof.so.file, 'hsm/so.pin');
  });

  test('the scans changed nothing in the copy they were given', () => {
    assert.deepEqual(digests(L.dir), before0);
  });
});

// ---------------------------------------------------------------- 2

describe('a new vault\'s data directory yields nothing', { timeout: 90000 }, () => {
  let v;
  let copy;
  let pins;
  const keys = [];   // every version: {name, version, key_ops, jwk}

  before(async () => { v = await startVault(); });
  after(async () => {
    await copy?.remove();
    await stopVault(v);
  });

  test('RSA-2048 (two versions), EC P-256, a BYOK import: used, used again after a restart', async () => {
    const tok = await token(v);
    const record = (name, bundle) => {
      const k = bundle.key;
      keys.push({ name, version: k.kid.split('/').pop(), key_ops: k.key_ops, jwk: publicJwk(k) });
      return k;
    };
    const rsa = keyName('rest-rsa');
    const ec = keyName('rest-ec');
    const kek = keyName('rest-kek');
    const byok = keyName('rest-byok');
    record(rsa, await call(v, tok, 'POST', `/keys/${rsa}/create`, { kty: 'RSA-HSM', key_size: 2048 }));
    record(rsa, await call(v, tok, 'POST', `/keys/${rsa}/create`, { kty: 'RSA-HSM', key_size: 2048 }));
    record(ec, await call(v, tok, 'POST', `/keys/${ec}/create`, { kty: 'EC-HSM', crv: 'P-256' }));
    const kk = record(kek, await call(v, tok, 'POST', `/keys/${kek}/create`, { kty: 'RSA-HSM', key_size: 2048, key_ops: ['import'] }));
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const imported = record(byok, await call(v, tok, 'PUT', `/keys/${byok}`, {
      key: { kty: 'RSA-HSM', key_ops: ['sign', 'verify', 'wrapKey', 'unwrapKey'], key_hsm: b64u(transferBlob(publicJwk(kk), kk.kid, privateKey)) },
    }));
    assert.equal(imported.n, privateKey.export({ format: 'jwk' }).n, 'the vault holds the imported key');
    assert.equal(new Set(keys.map((k) => k.version)).size, 5);

    await useAll(v, keys);
    await v.restart();
    await useAll(v, keys);
    pins = tokenPins(v);
    await v.stop();
    copy = await tempCopy(v.dir, 'new');
  });

  test('the data directory: no PIN file, no PIN and no secret in any file', async () => {
    assert.ok(pins, 'the keys were made');
    assert.deepEqual(fs.readdirSync(path.join(copy.dir, 'hsm')).sort(), ['seal.conf', 'unseal.cred']);
    const shares = v.init.unsealKeyShares;
    assert.ok(shares?.length > 0, 'init printed key shares (searched for too)');
    await noSecretRests(copy.dir, pins, shares);
  });

  test('the offline attack on a copy: no blob opens, no PIN logs in', async (t) => {
    assert.ok(pins, 'the keys were made');
    await attackFindsNothing(t, copy.dir, { blobs: keys.length });
  });

  test('the control: pinScan finds the real PINs once a file of the copy holds them', async (t) => {
    assert.ok(pins, 'the keys were made');
    fs.writeFileSync(path.join(copy.dir, 'planted.txt'), `${pins.user}\n${pins.so}\n`);
    const p = await pinScan(copy.dir);
    t.diagnostic(`pinScan with the PINs planted: ${p.words} words, ${p.tried} tried, ${p.ms} ms`);
    assert.equal(p.userPin, pins.user);
    assert.equal(p.soPin, pins.so);
    assert.equal(p.proof.user.ok, true, `pkcs11-tool user login: ${p.proof.user.error}`);
    assert.equal(p.proof.so.ok, true, `pkcs11-tool SO login: ${p.proof.so.error}`);
  });
});

// ---------------------------------------------------------------- 3

describe('migration of the previous version\'s directory', { timeout: 120000 }, () => {
  let L;
  let v;
  let oldPins;
  let pins;
  let copy;

  before(async () => {
    // no url: p11vault.conf keeps the fixture's vault_url, so the kids are
    // the recorded ones (the clients below speak to v.port)
    L = await legacyTempCopy();
    oldPins = {
      user: fs.readFileSync(path.join(L.dir, 'hsm', 'user.pin'), 'latin1').trim(),
      so: fs.readFileSync(path.join(L.dir, 'hsm', 'so.pin'), 'latin1').trim(),
    };
    v = await openVault(L.dir);
  });
  after(async () => {
    await copy?.remove();
    await v?.stop();
    await L?.remove();
  });

  test('the first serve migrates: seal_migrated, the PIN files gone, seal.conf and unseal.cred', async () => {
    assert.equal(events(v, 'seal_migrated').length, 1, `one seal_migrated event; stderr: ${v.stderr.slice(-1500)}`);
    assert.deepEqual(events(v, 'seal_migration_failed'), []);
    assert.deepEqual(fs.readdirSync(path.join(L.dir, 'hsm')).sort(), ['seal.conf', 'unseal.cred'],
      'hsm/user.pin and hsm/so.pin are gone');
    const st = (await raw(v, 'GET', '/sys/seal-status')).json;
    assert.deepEqual({ sealed: st.sealed, type: st.type, plaintextPins: st.plaintextPins },
      { sealed: false, type: 'unattended', plaintextPins: false });
    pins = tokenPins(v);
    assert.notEqual(pins.user, oldPins.user, 'a new user PIN');
    assert.notEqual(pins.so, oldPins.so, 'a new SO PIN');
  });

  test('every recorded key version: the same kid and public key, and it still works', async () => {
    const tok = await token(v);
    for (const k of L.keys) {
      const g = await call(v, tok, 'GET', `/keys/${k.name}/${k.version}`);
      assert.equal(g.key.kid, k.kid, `${k.name}/${k.version}: kid`);
      assert.deepEqual(publicJwk(g.key), k.jwk, `${k.name}/${k.version}: public key`);
    }
    await useAll(v, L.keys);
    const used = L.keys.filter((k) => k.key_ops.includes('sign') || k.key_ops.includes('unwrapKey'));
    assert.deepEqual(used.map((k) => k.name).sort(), ['byok1', 'ec1', 'rsa1', 'rsa1']);
  });

  test('stopped: every blob is format 3; the offline attack on a copy finds nothing, the old PINs log in no more', async (t) => {
    assert.ok(pins, 'the migration gave the new PINs (see the first test)');
    await v.stop();
    const rows = await readBlobs(L.dir);
    assert.deepEqual(rows.map((r) => `${r.name}/${r.version}:${r.blob[4]}`).sort(),
      L.keys.map((k) => `${k.name}/${k.version}:3`).sort(), 'one format-3 blob per recorded version');
    copy = await tempCopy(L.dir, 'migrated');
    await noSecretRests(copy.dir, pins, []);
    assert.deepEqual(byteSearch(copy.dir, [
      { what: 'old user PIN', bytes: Buffer.from(oldPins.user) },
      { what: 'old SO PIN', bytes: Buffer.from(oldPins.so) },
    ]), [], 'the old PINs rest nowhere');
    await attackFindsNothing(t, copy.dir, { blobs: L.keys.length });
    // a thief with an old backup of the PIN files: they open nothing now
    fs.writeFileSync(path.join(copy.dir, 'old-pins.txt'), `${oldPins.user}\n${oldPins.so}\n`);
    const p = await pinScan(copy.dir);
    assert.deepEqual([p.userPin, p.soPin], [null, null], 'the old PINs log in no more');
  });

  test('rekey with no share on stdin: 3 shares; started again, unsealed by systemd-creds, the keys still work', async () => {
    assert.ok(pins, 'the migration gave the new PINs (see the first test)');
    const r = await p11vault(['rekey', '--data', L.dir, '--key-shares', '3', '--key-threshold', '2'], { input: '' });
    assert.equal(r.code, 0, `rekey: ${r.stderr}`);
    const out = JSON.parse(r.stdout);
    assert.equal(out.unsealKeyShares.length, 3);
    assert.equal(new Set(out.unsealKeyShares).size, 3);
    for (const s of out.unsealKeyShares) assert.match(s, /^[1-3]-[0-9a-f]{64}$/);
    assert.equal(out.unsealThreshold, 2);
    assert.deepEqual(fs.readdirSync(path.join(L.dir, 'hsm')).sort(), ['seal.conf', 'unseal.cred']);
    const after = tokenPins(v);
    assert.ok(!after.secret.equals(pins.secret), 'rekey made a new unseal secret');
    await noSecretRests(L.dir, after, out.unsealKeyShares);

    await v.start();
    const st = (await raw(v, 'GET', '/sys/seal-status')).json;
    assert.deepEqual({ sealed: st.sealed, type: st.type, t: st.t, n: st.n },
      { sealed: false, type: 'shamir', t: 2, n: 3 }, 'unsealed at start, with 2-of-3 shares');
    assert.equal(events(v, 'seal_migrated').length, 1, 'no second migration');
    await useAll(v, L.keys);
    const tok = await token(v);
    for (const k of L.keys) {
      const g = await call(v, tok, 'GET', `/keys/${k.name}/${k.version}`);
      assert.equal(g.key.kid, k.kid, `${k.name}/${k.version}: kid after rekey`);
    }
  });
});
