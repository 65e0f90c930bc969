// Least privilege at runtime: `serve --user NAME` binds as root, then runs
// as NAME (uid, gid, no supplementary groups, no capabilities, no_new_privs)
// and still works; it refuses a data dir NAME does not own; every file it
// leaves in the data dir is NAME's, 0600 (directories 0700). Needs root
// (CI is root); elsewhere it is skipped.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  startVault, stopVault, keyClient, cryptoClient, p11vault, keyName, freePort,
} from './lib/vault.mjs';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const USER = 'p11vault-test';

function ensureUser() {
  try {
    return { name: USER, uid: Number(execFileSync('id', ['-u', USER], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim()) };
  } catch { /* absent */ }
  try {
    execFileSync('useradd', ['--system', '--no-create-home', '--home-dir', '/nonexistent',
      '--shell', '/usr/sbin/nologin', USER], { stdio: 'ignore' });
    return { name: USER, uid: Number(execFileSync('id', ['-u', USER], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim()) };
  } catch {
    return { name: 'nobody', uid: Number(execFileSync('id', ['-u', 'nobody']).toString().trim()) };
  }
}

function procStatus(pid) {
  const out = {};
  for (const line of fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

function walk(dir, acc = []) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    acc.push({ p, st: fs.lstatSync(p) });
    if (e.isDirectory()) walk(p, acc);
  }
  return acc;
}

describe('serve --user drops root after binding', { timeout: 90000, skip: isRoot ? false : 'needs root' }, () => {
  let v;
  let user;
  let gid;

  before(async () => {
    user = ensureUser();
    gid = Number(execFileSync('id', ['-g', user.name]).toString().trim());
    v = await startVault();
    await v.stop();
  });
  after(async () => { await stopVault(v); });

  test('refuses an unknown user and a data dir the user does not own', async () => {
    const port = await freePort();
    const base = ['serve', '--data', v.dir, '--listen', `127.0.0.1:${port}`];
    const none = await p11vault([...base, '--user', 'no-such-user-p11v'], { timeoutMs: 15000 });
    assert.notEqual(none.code, 0, 'an unknown user is refused');
    assert.doesNotMatch(none.stderr, /unknown argument/, 'the binary supports --user (apply the main.c change)');
    assert.match(none.stderr, /no such user/i, none.stderr);
    const notOwner = await p11vault([...base, '--user', user.name], { timeoutMs: 15000 });
    assert.notEqual(notOwner.code, 0, 'a data dir owned by root is refused');
    assert.match(notOwner.stderr, /owned by/i, notOwner.stderr);
    assert.doesNotMatch(notOwner.stdout, /listening on/);
  });

  test('runs as the user with no way back to root, and works across a restart', async () => {
    execFileSync('chown', ['-R', `${user.uid}:${gid}`, v.dir]);
    v.serveArgs.push('--user', user.name);
    await v.start();
    const st = procStatus(v.child.pid);
    const ids = (s) => s.split(/\s+/).map(Number);
    assert.deepEqual(ids(st.Uid), [user.uid, user.uid, user.uid, user.uid], `Uid: ${st.Uid}`);
    assert.deepEqual(ids(st.Gid), [gid, gid, gid, gid], `Gid: ${st.Gid}`);
    assert.equal(st.Groups, '', `supplementary groups: ${st.Groups}`);
    assert.equal(st.NoNewPrivs, '1');
    assert.equal(BigInt('0x' + st.CapEff), 0n, `CapEff ${st.CapEff}`);
    assert.equal(BigInt('0x' + st.CapPrm), 0n, `CapPrm ${st.CapPrm}`);
    // every thread (MHD pool, sweeper) changed too, not just the main one
    for (const tid of fs.readdirSync(`/proc/${v.child.pid}/task`)) {
      const ts = procStatus(`${v.child.pid}/task/${tid}`);
      assert.equal(ids(ts.Uid)[1], user.uid, `thread ${tid} euid`);
    }

    const kc = keyClient(v);
    const k = await kc.createRsaKey(keyName('priv'), { keySize: 2048 });
    const dek = crypto.randomBytes(32);
    const w = await cryptoClient(v, k.id).wrapKey('RSA-OAEP-256', dek);
    assert.deepEqual(Buffer.from((await cryptoClient(v, k.id).unwrapKey('RSA-OAEP-256', w.result)).result), dek);

    // the token objects and database pages written as the user reopen
    const stopped = await v.stop();
    assert.equal(stopped?.code, 0, `exit ${JSON.stringify(stopped)}`);
    await v.start();
    assert.equal(ids(procStatus(v.child.pid).Uid)[1], user.uid);
    const k2 = await kc.createEcKey(keyName('priv-ec'), { curve: 'P-256' });
    assert.equal(k2.key.crv, 'P-256');
    assert.deepEqual(Buffer.from((await cryptoClient(v, k.id).unwrapKey('RSA-OAEP-256', w.result)).result), dek);
    await v.stop();
  });

  test('every file in the data dir is the user\'s, files 0600 and directories 0700', () => {
    const bad = [];
    const rootSt = fs.statSync(v.dir);
    if (rootSt.uid !== user.uid || (rootSt.mode & 0o777) !== 0o700) bad.push(`${v.dir} uid ${rootSt.uid} mode ${(rootSt.mode & 0o777).toString(8)}`);
    for (const { p, st } of walk(v.dir)) {
      const mode = st.mode & 0o777;
      const want = st.isDirectory() ? 0o700 : 0o600;
      if (st.isSymbolicLink()) bad.push(`${p} is a symlink`);
      else if (st.uid !== user.uid || mode !== want) bad.push(`${p} uid ${st.uid} mode ${mode.toString(8)}`);
    }
    assert.deepEqual(bad, []);
  });
});
