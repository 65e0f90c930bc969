// The join ceremony end to end, with the real binary and real SoftHSMv2
// tokens: vault A makes a key; node B is made with `node init` and refuses
// to serve (no domain key); A approves B's request (an SO ceremony: A's key
// shares on stdin) — a tampered request, no shares, and a removed node are
// refused; B joins with its own shares; A's store is put under B by hand
// (the shared store is another part of the work) and B unwraps what A
// wrapped, and accepts a token A issued.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  startVault, stopVault, openVault, keyClient, cryptoClient, raw, token, keyName, p11vault,
} from './lib/vault.mjs';

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
