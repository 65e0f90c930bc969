// Torn tails and empty verdicts. A crash mid-write leaves an incomplete
// last line in audit/audit.log; the next start moves those bytes aside into
// audit/audit.log.torn-N (0600), cuts the file back to its last complete
// line and chains an "audit_tail_repaired" record saying what was cut
// (offset, length, SHA-256 of the cut bytes, side file). `audit verify`
// then reports the chain intact and lists the repair, while a changed line
// elsewhere is still tampering, named by its line. And verify never says
// intact when it checked nothing: a missing data directory, a deleted
// audit.log, an emptied one.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startVault, stopVault, raw, token, p11vault, keyName, API_VERSION } from './lib/vault.mjs';

const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

async function verify(dir) {
  const r = await p11vault(['audit', 'verify', '--data', dir]);
  let json;
  try { json = JSON.parse(r.stdout.trim().split('\n').pop()); } catch { json = undefined; }
  return { ...r, json };
}

// Kills the server the way a crash does (no shutdown path runs).
async function crash(v) {
  const gone = new Promise((resolve) => v.child.once('exit', resolve));
  v.child.kill('SIGKILL');
  await gone;
  await v.stop();   // reaps the handle (already dead)
}

describe('audit log: torn tails repaired at start, empty verdicts refused', { timeout: 120000 }, () => {
  let v;
  let tok;
  let key;
  let file;

  before(async () => {
    v = await startVault();
    tok = await token(v);
    key = keyName('tail');
    const k = await raw(v, 'POST', `/keys/${key}/create?api-version=${API_VERSION}`, { token: tok, body: { kty: 'EC', crv: 'P-256' } });
    assert.equal(k.status, 200, k.text);
    for (let i = 0; i < 3; i += 1) {
      assert.equal((await raw(v, 'GET', `/keys/${key}?api-version=${API_VERSION}`, { token: tok })).status, 200);
    }
    file = path.join(v.dir, 'audit', 'audit.log');
  });
  after(async () => { await stopVault(v); });

  test('a torn last line (crash mid-write) is moved aside at start, recorded in the chain, and verify lists it as a repair', async () => {
    await crash(v);
    const complete = fs.readFileSync(file);
    assert.equal(complete[complete.length - 1], 0x0a, 'the log ends with a complete line before the tear');
    const torn = Buffer.from('{"prev":"ab');
    fs.appendFileSync(file, torn);

    // before the restart: the complete lines verify, the tail is named, not called tampering
    const pending = await verify(v.dir);
    assert.equal(pending.code, 0, pending.stdout + pending.stderr);
    assert.equal(pending.json.intact, true);
    assert.deepEqual(pending.json.unrepairedTail, { file: 'audit.log', offset: complete.length, length: torn.length });

    await v.start();
    const after = fs.readFileSync(file);
    assert.deepEqual(after.subarray(0, complete.length), complete, 'every complete line stays as it was');
    const added = after.subarray(complete.length).toString('utf8').split('\n').filter(Boolean);
    const rec = JSON.parse(added[0]);
    assert.equal(rec.event, 'audit_tail_repaired', `the first line after the cut is the repair record: ${added[0]}`);
    assert.equal(rec.prev, sha256(complete.subarray(0, complete.length - 1).toString('utf8').split('\n').pop()), 'chained to the last complete line');
    assert.equal(rec.offset, complete.length);
    assert.equal(rec.length, torn.length);
    assert.equal(rec.sha256, sha256(torn));
    assert.equal(rec.file, 'audit.log');
    assert.match(rec.sideFile, /^audit\.log\.torn-\d+$/);
    const side = path.join(v.dir, 'audit', rec.sideFile);
    assert.deepEqual(fs.readFileSync(side), torn, 'the side file holds exactly the cut bytes');
    assert.equal(fs.statSync(side).mode & 0o777, 0o600, 'the side file is 0600');

    // new requests keep the chain intact
    for (let i = 0; i < 3; i += 1) {
      assert.equal((await raw(v, 'GET', `/keys/${key}?api-version=${API_VERSION}`, { token: tok })).status, 200);
    }
    const ok = await verify(v.dir);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.equal(ok.json.intact, true);
    assert.equal(ok.json.unrepairedTail, undefined);
    assert.equal(ok.json.repairs.length, 1, ok.stdout);
    const [r] = ok.json.repairs;
    assert.equal(r.offset, complete.length);
    assert.equal(r.length, torn.length);
    assert.equal(r.sha256, sha256(torn));
    assert.equal(r.sideFile, rec.sideFile);
    const recLine = complete.toString('utf8').split('\n').filter(Boolean).length + 1;
    assert.equal(r.at, `audit.log:${recLine}`);
    assert.ok(ok.json.lines >= recLine + 3, `lines checked: ${ok.json.lines}`);
  });

  test('a second tear gets its own side file; a clean stop and start repairs nothing', async () => {
    await v.stop();
    await v.start();
    assert.equal(fs.readdirSync(path.join(v.dir, 'audit')).filter((f) => f.includes('.torn-')).length, 1, 'nothing cut at a clean start');
    await crash(v);
    const torn = Buffer.from('{"prev":"0123456789abcdef","time":"2024-');   // a longer fragment, not even a prefix of the right line
    fs.appendFileSync(file, torn);
    await v.start();
    assert.equal((await raw(v, 'GET', '/healthz')).status, 200);
    const ok = await verify(v.dir);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.equal(ok.json.repairs.length, 2);
    assert.notEqual(ok.json.repairs[0].sideFile, ok.json.repairs[1].sideFile);
    assert.equal(ok.json.repairs[1].sha256, sha256(torn));
    assert.deepEqual(fs.readFileSync(path.join(v.dir, 'audit', ok.json.repairs[1].sideFile)), torn);
  });

  test('after a repair, a changed line in the middle is still tampering, named by its line', async () => {
    const text = fs.readFileSync(file, 'utf8');
    const lines = text.split('\n');
    const target = 2;                       // 0-based: the 3rd line, well before the repairs
    const at = lines.slice(0, target).reduce((s, l) => s + Buffer.byteLength(l) + 1, 0) + lines[target].indexOf('"httpStatus":') + 13;
    const fd = fs.openSync(file, 'r+');
    const b = Buffer.alloc(1);
    try {
      fs.readSync(fd, b, 0, 1, at);
      const orig = b[0];
      b[0] = orig === 0x32 ? 0x33 : 0x32;
      fs.writeSync(fd, b, 0, 1, at);
      const bad = await verify(v.dir);
      assert.notEqual(bad.code, 0, 'verify fails');
      assert.equal(bad.json.intact, false);
      assert.equal(bad.json.firstBroken, `audit.log:${target + 2}`);
      assert.match(bad.stderr, new RegExp(`audit chain broken at audit\\.log:${target + 2}\\b`));
      b[0] = orig;
      fs.writeSync(fd, b, 0, 1, at);
    } finally {
      fs.closeSync(fd);
    }
    assert.equal((await verify(v.dir)).code, 0);
  });

  test('a forged repair record (the chain fine, its fields not) is a break, not a repair', async () => {
    await v.stop();
    const orig = fs.readFileSync(file);
    try {
      const last = orig.toString('utf8').split('\n').filter(Boolean).pop();
      const forged = `{"prev":"${sha256(last)}","event":"audit_tail_repaired","offset":-1}\n`;
      fs.appendFileSync(file, forged);
      const bad = await verify(v.dir);
      assert.notEqual(bad.code, 0);
      assert.equal(bad.json.intact, false);
      const n = orig.toString('utf8').split('\n').filter(Boolean).length + 1;
      assert.equal(bad.json.firstBroken, `audit.log:${n}`);
    } finally {
      fs.writeFileSync(file, orig);
    }
    await v.start();
  });

  test('a torn tail on a full disk: the vault still starts, nothing is cut until it can be kept aside, and once space returns the repair is finished and verify is intact', async (t) => {
    if (process.getuid() !== 0) { t.skip('needs root to mount a tmpfs on DIR/audit'); return; }
    await crash(v);
    const adir = path.join(v.dir, 'audit');
    const keep = fs.mkdtempSync(path.join(os.tmpdir(), 'p11vault-audit-copy-'));
    for (const f of fs.readdirSync(adir)) fs.copyFileSync(path.join(adir, f), path.join(keep, f));
    const size = fs.readdirSync(keep).reduce((s, f) => s + fs.statSync(path.join(keep, f)).size, 0);
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size + 256 * 1024},mode=0700`, 'tmpfs', adir]);
    try {
      for (const f of fs.readdirSync(keep)) fs.copyFileSync(path.join(keep, f), path.join(adir, f));
      const before = fs.readFileSync(file);
      const torn = Buffer.from('{"prev":"cd');
      fs.appendFileSync(file, torn);
      // fill the file system: not one more page
      const filler = path.join(adir, 'filler');
      const fd = fs.openSync(filler, 'w');
      const chunk = Buffer.alloc(4096, 0x41);
      try { for (;;) fs.writeSync(fd, chunk); } catch (e) { assert.equal(e.code, 'ENOSPC'); }
      try { for (;;) fs.writeSync(fd, chunk, 0, 1); } catch (e) { assert.equal(e.code, 'ENOSPC'); }
      fs.closeSync(fd);
      await v.start();                      // it must start
      assert.equal(fs.readFileSync(file).subarray(0, before.length).equals(before), true, 'complete lines untouched');
      assert.deepEqual(fs.readdirSync(adir).filter((f) => f.includes('.torn-') && !fs.readdirSync(keep).includes(f)), [], 'no side file (no space)');
      assert.deepEqual(fs.readFileSync(file), Buffer.concat([before, torn]), 'nothing cut that could not be kept');
      assert.equal((await raw(v, 'GET', `/keys/${key}?api-version=${API_VERSION}`, { token: tok })).status, 503, 'fail closed meanwhile');
      fs.unlinkSync(filler);                // space returns
      assert.equal((await raw(v, 'GET', `/keys/${key}?api-version=${API_VERSION}`, { token: tok })).status, 200);
      await v.stop();                       // writes whatever is still pending
      const ok = await verify(v.dir);
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
      const last = ok.json.repairs[ok.json.repairs.length - 1];
      assert.equal(last.offset, before.length);
      assert.equal(last.length, torn.length);
      assert.equal(last.sha256, sha256(torn));
      assert.match(last.sideFile, /^audit\.log\.torn-\d+$/, 'kept aside once there was room');
      assert.deepEqual(fs.readFileSync(path.join(adir, last.sideFile)), torn);
      for (const f of fs.readdirSync(adir)) fs.copyFileSync(path.join(adir, f), path.join(keep, f));
    } finally {
      if (v.child && v.child.exitCode === null) await v.stop();
      execFileSync('umount', [adir]);
      for (const f of fs.readdirSync(keep)) fs.copyFileSync(path.join(keep, f), path.join(adir, f));
      fs.rmSync(keep, { recursive: true, force: true });
    }
    await v.start();
    assert.equal((await verify(v.dir)).code, 0);
  });

  test('verify on a missing directory: not intact, non-zero exit, says why', async () => {
    const missing = path.join(os.tmpdir(), `p11vault-no-such-dir-${process.pid}-${Date.now()}`);
    const r = await verify(missing);
    assert.notEqual(r.code, 0);
    assert.equal(r.json?.intact, false, r.stdout);
    assert.match(r.stderr, /no such data directory/);
  });

  test('verify on a directory that is no vault (no audit/): not intact, non-zero exit', async () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'p11vault-empty-'));
    try {
      const r = await verify(empty);
      assert.notEqual(r.code, 0);
      assert.equal(r.json?.intact, false, r.stdout);
      assert.match(r.stderr, /no audit directory/);
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });

  test('verify on a data dir whose audit.log was deleted, or emptied: not intact, non-zero exit', async () => {
    await v.stop();
    const orig = fs.readFileSync(file);
    try {
      fs.unlinkSync(file);
      const gone = await verify(v.dir);
      assert.notEqual(gone.code, 0);
      assert.equal(gone.json?.intact, false, gone.stdout);
      assert.match(gone.stderr, /audit\.log is missing/);
      fs.writeFileSync(file, '');
      const empty = await verify(v.dir);
      assert.notEqual(empty.code, 0);
      assert.equal(empty.json?.intact, false, empty.stdout);
      assert.match(empty.stderr, /holds no audit line/);
    } finally {
      fs.writeFileSync(file, orig, { mode: 0o600 });
    }
    assert.equal((await verify(v.dir)).code, 0);
    await v.start();
  });
});
