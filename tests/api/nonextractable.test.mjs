// Key material stays in the token: after keys were made through the API and
// the server stopped, the PKCS#11 token (read with pkcs11-tool and the
// vault's own PIN) gives no key out in plaintext, no file under the data dir
// holds a private key in a plaintext format, and neither the admin client
// secret nor the PIN leaks into files or the server's output.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  startVault, stopVault, keyClient, cryptoClient, keyName, runProcess, SOFTHSM_MODULE,
  tokenPins,
} from './lib/vault.mjs';
import { filesUnder } from './lib/util.mjs';

// pkcs11-tool --list-objects output -> [{kind, label, id, access: [..], usage}]
function parseObjects(text) {
  const objs = [];
  let cur = null;
  for (const line of text.split('\n')) {
    const m = /^(Private Key|Public Key|Secret Key|Data|Certificate|Profile) Object/.exec(line);
    if (m) {
      cur = { kind: m[1], head: line.trim(), access: [], id: null, label: null };
      objs.push(cur);
      continue;
    }
    if (!cur) continue;
    const kv = /^\s+([A-Za-z ]+):\s*(.*)$/.exec(line);
    if (!kv) continue;
    const [, k, val] = kv;
    if (k === 'ID') cur.id = val.trim();
    else if (k === 'label') cur.label = val.trim();
    else if (k === 'Access') cur.access = val.split(',').map((s) => s.trim()).filter(Boolean);
    else if (k === 'Usage') cur.usage = val.trim();
  }
  return objs;
}

// Byte patterns of plaintext private keys: PKCS#8 (RSA, EC) and the start
// of PKCS#1 RSAPrivateKey / SEC1 ECPrivateKey.
const PKCS8_RSA = Buffer.from('020100300d06092a864886f70d0101010500', 'hex');
const PKCS8_EC = Buffer.from('06072a8648ce3d0201', 'hex'); // id-ecPublicKey, after 02 01 00 30 LL
function findDerPrivateKey(buf) {
  if (buf.includes(PKCS8_RSA)) return 'PKCS#8 RSA private key';
  for (let i = buf.indexOf(PKCS8_EC); i !== -1; i = buf.indexOf(PKCS8_EC, i + 1)) {
    if (i >= 5 && buf[i - 5] === 0x02 && buf[i - 4] === 0x01 && buf[i - 3] === 0x00 && buf[i - 2] === 0x30) return 'PKCS#8 EC private key';
  }
  const pkcs1 = Buffer.from('0201000282', 'hex'); // version 0, then a long INTEGER (the modulus)
  for (let i = buf.indexOf(pkcs1); i !== -1; i = buf.indexOf(pkcs1, i + 1)) {
    if (i >= 4 && buf[i - 4] === 0x30 && buf[i - 3] === 0x82) return 'PKCS#1 RSA private key';
  }
  for (const tail of ['0201010420', '0201010430', '0201010442']) { // SEC1 v1, OCTET STRING of 32/48/66
    const p = Buffer.from(tail, 'hex');
    for (let i = buf.indexOf(p); i !== -1; i = buf.indexOf(p, i + 1)) {
      if ((i >= 2 && buf[i - 2] === 0x30) || (i >= 3 && buf[i - 3] === 0x30 && buf[i - 2] === 0x81)) return 'SEC1 EC private key';
    }
  }
  return null;
}

describe('private key material never leaves the token', { timeout: 120000 }, () => {
  let v;
  let pin;
  let secret;
  let env;
  const created = [];
  let serverOutput = '';

  const p11 = (args, { login = true } = {}) => runProcess('pkcs11-tool', [
    '--module', SOFTHSM_MODULE, ...(login ? ['--login', '--pin', pin] : []), ...args,
  ], { env, timeoutMs: 30000 });

  before(async () => {
    v = await startVault();
    const kc = keyClient(v);
    for (const [kind, opt] of [['rsa', { keySize: 2048 }], ['rsa', { keySize: 3072 }], ['ec', { curve: 'P-256' }], ['ec', { curve: 'P-384' }]]) {
      const k = kind === 'rsa' ? await kc.createRsaKey(keyName('nx'), opt) : await kc.createEcKey(keyName('nx'), opt);
      created.push(k);
    }
    // Use them, so that session objects and caches exist before the stop.
    const dek = crypto.randomBytes(32);
    const cc = cryptoClient(v, created[0].id);
    const w = await cc.wrapKey('RSA-OAEP-256', dek);
    assert.deepEqual(Buffer.from((await cc.unwrapKey('RSA-OAEP-256', w.result)).result), dek);
    await cryptoClient(v, created[2].id).sign('ES256', crypto.createHash('sha256').update('x').digest());
    await (await kc.beginDeleteKey(created[1].name, { intervalInMs: 200 })).pollUntilDone();
    await v.stop();
    serverOutput = v.stdout + v.stderr; // serve's output, all of it
    pin = tokenPins(v).user;
    secret = v.admin.clientSecret;
    env = { ...process.env, SOFTHSM2_CONF: path.join(v.dir, 'softhsm2.conf') };
  });
  after(async () => { await stopVault(v); });

  let objects = [];

  test('pkcs11-tool with the vault PIN lists the token objects, among them the domain key', async () => {
    assert.ok(pin.length >= 4, 'the unseal secret gives the user PIN');
    const r = await p11(['--list-objects']);
    assert.equal(r.code, 0, r.stderr);
    objects = parseObjects(r.stdout);
    const keys = objects.filter((o) => o.kind === 'Secret Key' || o.kind === 'Private Key');
    assert.ok(keys.length >= 1, `no key objects listed:\n${r.stdout}`);
    assert.ok(objects.some((o) => o.kind === 'Secret Key' && /AES/.test(o.head)), 'an AES domain key is in the token');
  });

  // The token keys every node of a cluster shares (docs/cluster.md:
  // domain, seal, bind, backup) are extractable only wrapped by a trusted
  // key (CKA_WRAP_WITH_TRUSTED, which pkcs11-tool does not show;
  // tests/unit/test_hsm.c and test_join.c check it), so that the join
  // ceremony can copy them to another node's token; the wrap attack below
  // shows that a key of our own cannot take them out.
  const SHARED = new Set(['p11vault-domain', 'p11vault-seal', 'p11vault-bind', 'p11vault-backup']);
  test('every private and secret key object in the token is sensitive; secret keys are not extractable (the shared token keys: only under a trusted key)', () => {
    for (const o of objects.filter((x) => x.kind === 'Secret Key' || x.kind === 'Private Key')) {
      assert.ok(o.access.includes('sensitive'), `${o.head} ${o.label}: not sensitive (${o.access.join(', ')})`);
      if (o.kind === 'Secret Key' && !SHARED.has(o.label)) {
        assert.ok(!o.access.includes('extractable'), `${o.head} ${o.label}: extractable`);
      }
    }
    assert.ok(objects.some((o) => o.kind === 'Secret Key' && o.label === 'p11vault-bind'), 'the bind key is in the token');
  });

  test('--read-object of every private and secret key yields nothing (with and without login)', async () => {
    const out = path.join(v.dir, '..', `p11vault-readout-${process.pid}-${Date.now()}`);
    try {
      for (const o of objects.filter((x) => x.kind === 'Secret Key' || x.kind === 'Private Key')) {
        const type = o.kind === 'Secret Key' ? 'secrkey' : 'privkey';
        const sel = o.id ? ['--id', o.id] : ['--label', o.label];
        for (const login of [true, false]) {
          fs.rmSync(out, { force: true });
          const r = await p11(['--read-object', '--type', type, ...sel, '--output-file', out], { login });
          const got = fs.existsSync(out) ? fs.readFileSync(out) : Buffer.alloc(0);
          assert.equal(got.length, 0, `${type} ${o.label} (login ${login}) was read out: ${got.length} bytes, exit ${r.code}`);
        }
      }
      // And without naming one: the first private key.
      fs.rmSync(out, { force: true });
      await p11(['--read-object', '--type', 'privkey', '--output-file', out]);
      assert.ok(!fs.existsSync(out) || fs.statSync(out).size === 0, 'a private key was read out');
    } finally {
      fs.rmSync(out, { force: true });
    }
  });

  test('C_WrapKey with a key of our own cannot take the domain key out (positive control: our extractable key can)', async () => {
    const out = path.join(v.dir, '..', `p11vault-wrapout-${process.pid}-${Date.now()}`);
    try {
      let r = await p11(['--keygen', '--key-type', 'AES:32', '--id', 'f17e57', '--label', 'attacker-kek', '--usage-wrap']);
      assert.equal(r.code, 0, `creating our wrapping key: ${r.stderr}`);
      r = await p11(['--keygen', '--key-type', 'AES:32', '--id', 'f17e58', '--label', 'attacker-extractable', '--extractable']);
      assert.equal(r.code, 0, `creating our extractable key: ${r.stderr}`);
      r = await p11(['--wrap', '--mechanism', '0x210A', '--id', 'f17e57', '--application-id', 'f17e58', '--output-file', out]);
      assert.equal(r.code, 0, `control wrap failed, the method is broken: ${r.stderr}`);
      assert.ok(fs.statSync(out).size > 32, 'control wrap produced a blob');
      for (const o of objects.filter((x) => x.kind === 'Secret Key' && x.id)) {
        fs.rmSync(out, { force: true });
        for (const mech of ['0x210A', 'AES-KEY-WRAP', 'AES-CBC']) {
          r = await p11(['--wrap', '--mechanism', mech, '--id', 'f17e57', '--application-id', o.id, '--output-file', out]);
          assert.ok(!fs.existsSync(out) || fs.statSync(out).size === 0, `${o.label} wrapped out with ${mech}`);
          assert.notEqual(r.code, 0, `${o.label} ${mech}: wrap did not fail`);
        }
      }
    } finally {
      fs.rmSync(out, { force: true });
    }
  });

  test('no file under the data dir holds a PEM or DER (PKCS#8/PKCS#1/SEC1) private key, except the TLS server key', () => {
    const vaultPubs = created.map((k) => {
      const jwk = k.key.kty.startsWith('RSA')
        ? { kty: 'RSA', n: Buffer.from(k.key.n).toString('base64url'), e: Buffer.from(k.key.e).toString('base64url') }
        : { kty: 'EC', crv: k.key.crv, x: Buffer.from(k.key.x).toString('base64url'), y: Buffer.from(k.key.y).toString('base64url') };
      return crypto.createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'der' });
    });
    const files = filesUnder(v.dir);
    assert.ok(files.length > 0);
    for (const f of files) {
      const buf = fs.readFileSync(f);
      const rel = path.relative(v.dir, f);
      const isTls = rel.split(path.sep)[0] === 'tls';
      if (buf.includes('PRIVATE KEY')) {
        assert.ok(isTls, `${rel} holds a PEM private key`);
        // The HTTPS server's own key may live in DIR/tls: it must be private
        // to the owner and must not be any customer key.
        assert.equal(fs.statSync(f).mode & 0o077, 0, `${rel} is readable by group/others`);
        const priv = crypto.createPrivateKey(buf);
        const pub = crypto.createPublicKey(priv).export({ type: 'spki', format: 'der' });
        assert.ok(!vaultPubs.some((p) => p.equals(pub)), `${rel} is a customer key`);
        continue;
      }
      const der = findDerPrivateKey(buf);
      assert.equal(der, null, `${rel} holds a ${der}`);
    }
  });

  test('neither the admin client secret nor the PIN appears in server output or in any other file', () => {
    assert.ok(secret && secret.length >= 16, 'admin secret present');
    const forms = (s) => [s, Buffer.from(s).toString('hex'), Buffer.from(s).toString('base64')];
    for (const f of forms(secret)) assert.ok(!serverOutput.includes(f), 'admin client secret in server output');
    // A short PIN could match by chance in binary files; the generated one is long.
    const pinChecked = pin.length >= 8;
    if (pinChecked) for (const f of forms(pin)) assert.ok(!serverOutput.includes(f), 'PIN in server output');
    for (const file of filesUnder(v.dir)) {
      const rel = path.relative(v.dir, file);
      const text = fs.readFileSync(file).toString('latin1');
      if (rel !== 'admin.json') {
        for (const f of forms(secret)) assert.ok(!text.includes(f), `admin client secret in ${rel}`);
      }
      if (pinChecked) {
        assert.ok(!text.includes(pin), `PIN in ${rel}`);
      }
    }
    const mode = fs.statSync(path.join(v.dir, 'admin.json')).mode & 0o777;
    assert.equal(mode, 0o600, 'admin.json is mode 0600');
    const sealMode = fs.statSync(path.join(v.dir, 'hsm', 'seal.conf')).mode & 0o077;
    assert.equal(sealMode, 0, 'seal.conf is not readable by group/others');
  });
});
