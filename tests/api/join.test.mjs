// The join ceremony end to end, with the real binary and real SoftHSMv2
// tokens: vault A makes a key; node B is made with `node init` and refuses
// to serve (no domain key); A approves B's request (an SO ceremony: A's key
// shares on stdin) — a tampered request, no shares, and a removed node are
// refused; B joins with its own shares; A's store is put under B by hand
// (the shared store is another part of the work) and B unwraps what A
// wrapped, and accepts a token A issued. Then the rotation of the domain
// key (rekey-domain), interrupted mid-way and resumed.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  startVault, stopVault, openVault, keyClient, cryptoClient, raw, token, keyName, p11vault, SOFTHSM_MODULE,
} from './lib/vault.mjs';
import { readBlobs } from './lib/offline.mjs';
import { legacyTempCopy, legacyFixturePresent } from './lib/legacy.mjs';

const shares = (list, n) => list.slice(0, n).join('\n') + '\n';

describe('joining a node', { timeout: 240000 }, () => {
  let a; let b; let bdir;
  const s = {};

  before(async () => {
    a = await startVault();
    s.key = await keyClient(a).createRsaKey(keyName('joined'), { keySize: 2048 });
    s.dek = crypto.randomBytes(32);
    s.ct = (await cryptoClient(a, s.key.id).wrapKey('RSA-OAEP', s.dek)).result;
    s.tokenA = await token(a);
    await a.stop();
    bdir = await fsp.mkdtemp(path.join(os.tmpdir(), 'p11vault-node-'));
    s.nodeInit = await p11vault(['node', 'init', '--data', bdir, '--name', 'node-b',
      '--vault-url', a.url, '--tenant-id', a.admin.tenantId,
      '--tls-ca-cert', a.ca.cert, '--tls-ca-key', a.ca.key]);
    s.req = path.join(bdir, 'join-request.json');
    s.bundle = path.join(os.tmpdir(), `p11vault-bundle-${process.pid}.json`);
  });
  after(async () => {
    if (b) await stopVault(b);
    else if (bdir) await fsp.rm(bdir, { recursive: true, force: true });
    if (a) await a.remove();
    await fsp.rm(s.bundle, { force: true });
  });

  test('node init makes a token with a transport key and prints its fingerprint and shares', () => {
    assert.equal(s.nodeInit.code, 0, s.nodeInit.stderr);
    s.out = JSON.parse(s.nodeInit.stdout);
    assert.match(s.out.fingerprint, /^[0-9a-f]{64}$/);
    assert.equal(s.out.unsealKeyShares.length, 5);
    const req = JSON.parse(fs.readFileSync(s.req, 'utf8'));
    assert.equal(req.node, 'node-b');
    assert.equal(req.fingerprint, s.out.fingerprint);
    assert.equal(crypto.createHash('sha256').update(Buffer.from(req.transportKey, 'base64')).digest('hex'),
      s.out.fingerprint);
  });

  test('a node that has not joined refuses to start, and says why', async () => {
    const r = await p11vault(['serve', '--data', bdir, '--listen', '127.0.0.1:1'], { timeoutMs: 60000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /holds no domain key/);
  });

  test('a tampered request is refused (fingerprint mismatch)', async () => {
    const req = JSON.parse(fs.readFileSync(s.req, 'utf8'));
    const k = Buffer.from(req.transportKey, 'base64');
    k[100] ^= 1;
    const bad = path.join(bdir, 'tampered.json');
    fs.writeFileSync(bad, JSON.stringify({ ...req, transportKey: k.toString('base64') }));
    const r = await p11vault(['node', 'approve', '--data', a.dir, '--request', bad,
      '--fingerprint', s.out.fingerprint, '--out', s.bundle], { input: shares(a.init.unsealKeyShares, 3) });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /fingerprint/);
    assert.equal(fs.existsSync(s.bundle), false);
  });

  test('approve without the SO secret (no shares, or too few) is refused', async () => {
    for (const input of [undefined, shares(a.init.unsealKeyShares, 2)]) {
      const r = await p11vault(['node', 'approve', '--data', a.dir, '--request', s.req,
        '--fingerprint', s.out.fingerprint, '--out', s.bundle], { input });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /too few valid key shares/);
    }
    assert.equal(fs.existsSync(s.bundle), false);
  });

  test('A approves B with its shares; B joins with its own', async () => {
    const r = await p11vault(['node', 'approve', '--data', a.dir, '--request', s.req,
      '--fingerprint', s.out.fingerprint, '--out', s.bundle], { input: shares(a.init.unsealKeyShares, 3) });
    assert.equal(r.code, 0, r.stderr);
    const noShares = await p11vault(['node', 'join', '--data', bdir, '--bundle', s.bundle]);
    assert.equal(noShares.code, 1);
    const j = await p11vault(['node', 'join', '--data', bdir, '--bundle', s.bundle],
      { input: shares(s.out.unsealKeyShares, 3) });
    assert.equal(j.code, 0, j.stderr);
    const again = await p11vault(['node', 'join', '--data', bdir, '--bundle', s.bundle],
      { input: shares(s.out.unsealKeyShares, 3) });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /holds a domain already/);
  });

  test('B serves A\'s keys from A\'s store rows, and accepts a token A issued', async () => {
    // the shared store by hand: A's vault.db (A is stopped) under B
    for (const f of ['vault.db-wal', 'vault.db-shm']) await fsp.rm(path.join(bdir, f), { force: true });
    await fsp.copyFile(path.join(a.dir, 'vault.db'), path.join(bdir, 'vault.db'));
    await fsp.copyFile(path.join(a.dir, 'admin.json'), path.join(bdir, 'admin.json'));
    b = await openVault(bdir, { port: a.port, url: a.url });
    const u = await cryptoClient(b, s.key.id).unwrapKey('RSA-OAEP', s.ct);
    assert.deepEqual(Buffer.from(u.result), s.dek);
    const listed = await raw(b, 'GET', '/keys', { apiVersion: true, token: s.tokenA });
    assert.equal(listed.status, 200, 'a token signed on A verifies on B');
    await b.stop();
  });

  test('nodes are listed; a removed node can never be approved again', async () => {
    let l = await p11vault(['node', 'list', '--data', a.dir]);
    assert.equal(l.code, 0, l.stderr);
    assert.deepEqual(JSON.parse(l.stdout).nodes.map((n) => [n.name, n.state]), [['node-b', 'approved']]);
    const noShares = await p11vault(['node', 'remove', '--data', a.dir, '--name', 'node-b']);
    assert.equal(noShares.code, 1);
    const rm = await p11vault(['node', 'remove', '--data', a.dir, '--name', 'node-b'],
      { input: shares(a.init.unsealKeyShares, 3) });
    assert.equal(rm.code, 0, rm.stderr);
    l = await p11vault(['node', 'list', '--data', a.dir]);
    assert.deepEqual(JSON.parse(l.stdout).nodes.map((n) => [n.name, n.state]), [['node-b', 'removed']]);
    await fsp.rm(s.bundle, { force: true });
    const r = await p11vault(['node', 'approve', '--data', a.dir, '--request', s.req,
      '--fingerprint', s.out.fingerprint, '--out', s.bundle], { input: shares(a.init.unsealKeyShares, 3) });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /removed/);
    assert.equal(fs.existsSync(s.bundle), false);
  });

  test('A still serves after the ceremonies', async () => {
    await a.start();
    const u = await cryptoClient(a, s.key.id).unwrapKey('RSA-OAEP', s.ct);
    assert.deepEqual(Buffer.from(u.result), s.dek);
    await a.stop();
  });
});

// The token's domain keys (public objects: no login), by their CKA_ID.
function domainKeys(v) {
  const conf = JSON.parse(JSON.stringify(process.env));
  conf.SOFTHSM2_CONF = path.join(v.dir, 'softhsm2.conf');
  const out = execFileSync('pkcs11-tool', ['--module', SOFTHSM_MODULE, '--token-label', 'p11vault',
    '--list-objects', '--type', 'secrkey'], { env: conf, stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  return out.split(/\n(?=Secret Key Object)/).filter((o) => /label:\s+p11vault-domain/.test(o))
    .map((o) => (/ID:\s+([0-9a-f]+)/.exec(o) || [])[1] || '');
}

describe('rotating the domain key', { timeout: 240000 }, () => {
  let v;
  const s = { wraps: [] };

  before(async () => {
    v = await startVault();
    const kc = keyClient(v);
    s.keys = [await kc.createRsaKey(keyName('rot-rsa'), { keySize: 2048 })];
    for (let i = 0; i < 18; i++) s.keys.push(await kc.createEcKey(keyName(`rot-ec${i}`), { curve: 'P-256' }));
    const dek = crypto.randomBytes(32);
    s.wraps.push({ id: s.keys[0].id, dek, ct: (await cryptoClient(v, s.keys[0].id).wrapKey('RSA-OAEP', dek)).result });
    s.digest = crypto.createHash('sha256').update('rotate').digest();
    await v.stop();
    s.before = await readBlobs(v.dir);
    s.domainBefore = domainKeys(v);
  });
  after(async () => { await stopVault(v); });

  test('an interrupted rekey-domain leaves a mark that serve refuses; run again, it resumes', async () => {
    assert.equal(s.domainBefore.length, 1);
    const input = shares(v.init.unsealKeyShares, 3);
    const none = await p11vault(['rekey-domain', '--data', v.dir]);
    assert.equal(none.code, 1, 'no shares: refused');
    const env = { ...process.env, P11VAULT_INSECURE_TEST_REKEY_DOMAIN_CRASH: '1' };
    const crashed = await p11vault(['rekey-domain', '--data', v.dir], { input, env });
    assert.notEqual(crashed.code, 0, 'the test knob interrupts it');
    assert.equal(domainKeys(v).length, 2, 'old and new domain keys side by side');
    const mid = await readBlobs(v.dir);
    const moved = mid.filter((b) => !s.before.some((o) => o.blob.equals(b.blob))).length;
    assert.ok(moved > 0 && moved < s.before.length, `mid-way: ${moved} of ${s.before.length} moved`);
    const serve = await p11vault(['serve', '--data', v.dir, '--listen', '127.0.0.1:1'], { timeoutMs: 30000 });
    assert.notEqual(serve.code, 0);
    assert.match(serve.stderr, /rotation .* is unfinished/);
    const r = await p11vault(['rekey-domain', '--data', v.dir], { input });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).rewrapped, s.before.length - moved);
  });

  test('every blob is new, the old domain key is gone, and every key still works', async () => {
    const after_ = await readBlobs(v.dir);
    assert.equal(after_.length, s.before.length);
    for (const b of after_) assert.ok(!s.before.some((o) => o.blob.equals(b.blob)), `${b.name}: old blob left`);
    const d = domainKeys(v);
    assert.equal(d.length, 1);
    assert.notEqual(d[0], s.domainBefore[0], 'a new domain key (generation)');
    await v.start();
    for (const { id, dek, ct } of s.wraps) {
      const u = await cryptoClient(v, id).unwrapKey('RSA-OAEP', ct);
      assert.deepEqual(Buffer.from(u.result), dek);
    }
    for (const k of s.keys.slice(1)) {
      const sig = await cryptoClient(v, k.id).sign('ES256', s.digest);
      const ok = await cryptoClient(v, k.id).verify('ES256', s.digest, sig.result);
      assert.equal(ok.result, true, k.name);
    }
    const created = await keyClient(v).createEcKey(keyName('after-rot'), { curve: 'P-256' });
    const sig = await cryptoClient(v, created.id).sign('ES256', s.digest);
    assert.equal(sig.result.length, 64, 'a key made after the rotation works');
  });
});

describe('a vault made before clustering', { timeout: 120000, skip: !legacyFixturePresent() && 'no legacy fixture' }, () => {
  let old; let ndir;
  before(async () => {
    old = await legacyTempCopy();
    ndir = await fsp.mkdtemp(path.join(os.tmpdir(), 'p11vault-node-'));
    const r = await p11vault(['node', 'init', '--data', ndir, '--name', 'n1', '--auto-unseal', 'none',
      '--key-shares', '1', '--key-threshold', '1']);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await old?.remove();
    if (ndir) await fsp.rm(ndir, { recursive: true, force: true });
  });

  test('refuses to approve a node and to rotate its domain key, and says why; nothing changes', async () => {
    const req = path.join(ndir, 'join-request.json');
    const fp = JSON.parse(fs.readFileSync(req, 'utf8')).fingerprint;
    const out = path.join(ndir, 'bundle.json');
    const a = await p11vault(['node', 'approve', '--data', old.dir, '--request', req, '--fingerprint', fp, '--out', out]);
    assert.equal(a.code, 1);
    assert.match(a.stderr, /made before clustering/);
    assert.equal(fs.existsSync(out), false);
    const before = await readBlobs(old.dir);
    const r = await p11vault(['rekey-domain', '--data', old.dir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /made before clustering/);
    assert.equal(fs.existsSync(path.join(old.dir, 'domain-rotation')), false);
    const after_ = await readBlobs(old.dir);
    assert.deepEqual(after_.map((b) => b.blob.toString('hex')), before.map((b) => b.blob.toString('hex')));
  });
});
