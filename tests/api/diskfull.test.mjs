// A full disk: the data directory (token, store, audit log) on a 6 MiB
// tmpfs, filled by a filler file. A create the disk refuses is a 503 that
// names storage (not the HSM's message, with Retry-After); /healthz is 503
// {"status":"storage"} with the reason; once the audit log cannot be
// written, reads and crypto are refused with the storage error before they
// run (fail closed: no request is answered with success that left no audit
// line); /metrics shows p11vault_storage_ok 0 and the errors; the fault is
// logged once per episode, not once per request. Then space returns (the
// filler is deleted) and service resumes by itself: every acknowledged
// create is there, new operations succeed, and `p11vault audit verify`
// finds the chain intact. Then the crash: the disk filled again, the
// server SIGKILLed while full, a torn last audit line (a crash mid-write:
// forced, so the test does not depend on where the kill lands), and a
// restart while the disk is still full: the server starts, serving the
// storage error (reads and crypto included) with /healthz not ok; when
// space returns it finishes the repair and resumes by itself, with no
// second restart: every acknowledged create is there and `audit verify`
// finds the chain intact and lists the repair. Needs root (mount);
// skipped otherwise.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  openVault, stopVault, token, tokenRequest, raw, p11vault, testCa, freePort, keyName, waitFor, API_VERSION,
} from './lib/vault.mjs';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const SKIP = isRoot ? false : 'needs root to mount a tmpfs (mount -t tmpfs); run as root, as CI does';
const STORAGE_MSG = /The vault's storage cannot be written \(disk full or failing\)/;
const HSM_MSG = /HSM is temporarily unavailable/;
const MAX_CREATES = 400; // the disk is full after a few: a bound, not a wait
const MAX_READS = 400;

const q = (p) => p + (p.includes('?') ? '&' : '?') + `api-version=${API_VERSION}`;

// Fills the file system holding dir: a file written until ENOSPC, then
// cut by leave bytes (room for a few creates, which fill the rest).
function fill(file, leave = 0) {
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (e) {
    if (e.code !== 'ENOSPC') throw e;
  }
  // the last bytes that fit in a partial chunk
  try {
    for (;;) fs.writeSync(fd, chunk, 0, 512);
  } catch (e) {
    if (e.code !== 'ENOSPC') throw e;
  } finally {
    if (leave > 0) fs.ftruncateSync(fd, Math.max(0, fs.fstatSync(fd).size - leave));
    fs.closeSync(fd);
  }
}
const ROOM = 384 * 1024; // a few dozen creates' worth

function assertStorage(r, what) {
  assert.equal(r.status, 503, `${what}: expected 503, got ${r.status}: ${r.text.slice(0, 300)}`);
  assert.equal(r.json?.error?.code, 'ServiceUnavailable', what);
  assert.match(r.json.error.message, STORAGE_MSG, `${what}: the message names storage`);
  assert.doesNotMatch(r.json.error.message, HSM_MSG, `${what}: not the HSM's message`);
  assert.equal(r.headers['retry-after'], '5', `${what}: Retry-After`);
}

const count = (text, re) => (text.match(re) || []).length;

describe('a full disk: storage errors, fail-closed audit, recovery by itself', { skip: SKIP }, () => {
  let base;
  let dir;
  let mounted = false;
  let v;
  let port;
  let tok;
  const acked = [];
  let rsa;
  let wrapped;
  const dek = crypto.randomBytes(32);

  before(async () => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'p11vault-diskfull-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m,mode=0700', 'tmpfs', base]);
    mounted = true;
    dir = path.join(base, 'data');
    const ca = await testCa();
    port = await freePort();
    const init = await p11vault(['init', '--data', dir, '--vault-url', `https://127.0.0.1:${port}`,
      '--tls-ca-cert', ca.cert, '--tls-ca-key', ca.key]);
    assert.equal(init.code, 0, `init on the tmpfs: ${init.stderr}`);
    v = await openVault(dir, { port });
    tok = await token(v);
  });

  after(async () => {
    if (v) await v.stop().catch(() => {});
    if (mounted) {
      try { execFileSync('umount', [base]); } catch { execFileSync('umount', ['-l', base]); }
    }
    if (base) fs.rmSync(base, { recursive: true, force: true });
  });

  test('the vault serves from the tmpfs before it fills', async () => {
    rsa = keyName('rsa');
    let r = await raw(v, 'POST', q(`/keys/${rsa}/create`), { token: tok, body: { kty: 'RSA', key_size: 2048 } });
    assert.equal(r.status, 200, r.text);
    acked.push(rsa);
    r = await raw(v, 'POST', q(`/keys/${rsa}/wrapkey`), { token: tok, body: { alg: 'RSA-OAEP-256', value: dek.toString('base64url') } });
    assert.equal(r.status, 200, r.text);
    wrapped = r.json.value;
    r = await raw(v, 'GET', '/healthz');
    assert.deepEqual([r.status, r.json], [200, { status: 'ok' }]);
  });

  test('with the disk full, a create is refused with the storage error, not the HSM one', async () => {
    fill(path.join(base, 'filler'), ROOM);
    let refused;
    for (let i = 0; i < MAX_CREATES && !refused; i++) {
      const name = keyName('full');
      const r = await raw(v, 'POST', q(`/keys/${name}/create`), { token: tok, body: { kty: 'EC', crv: 'P-256' } });
      if (r.status === 200) acked.push(name);
      else refused = r;
    }
    assert.ok(refused, `a create was refused within ${MAX_CREATES}`);
    assert.ok(acked.length > 2, `creates were served until the disk filled: ${acked.length}`);
    assertStorage(refused, 'create on a full disk');
  });

  test('once the audit log cannot be written, reads and crypto are refused before they run', async () => {
    // the audit log's last page may take a few more lines: reads are
    // served while their lines fit, and refused from the first that does not
    let refused;
    for (let i = 0; i < MAX_READS && !refused; i++) {
      const r = await raw(v, 'GET', q(`/keys/${rsa}`), { token: tok });
      if (r.status !== 200) refused = r;
    }
    assert.ok(refused, `a read was refused within ${MAX_READS}`);
    assertStorage(refused, 'a read whose audit line cannot be written');

    const h = await raw(v, 'GET', '/healthz');
    assert.equal(h.status, 503, h.text);
    assert.equal(h.json.status, 'storage');
    assert.equal(h.json.audit, 'failing');
    assert.match(h.json.reason, /audit\.log: .*(No space left on device|Disk quota)/, h.text);
    assert.equal(h.headers['retry-after'], '5');

    assertStorage(await raw(v, 'GET', q(`/keys/${rsa}`), { token: tok }), 'GET key');
    assertStorage(await raw(v, 'POST', q(`/keys/${rsa}/unwrapkey`), { token: tok, body: { alg: 'RSA-OAEP-256', value: wrapped } }), 'unwrapKey');
    assertStorage(await raw(v, 'POST', q(`/keys/${keyName('full')}/create`), { token: tok, body: { kty: 'EC', crv: 'P-256' } }), 'create');

    const m = await raw(v, 'GET', '/metrics', { token: tok });
    assert.equal(m.status, 200, 'metrics are served while the disk is full');
    assert.match(m.text, /^p11vault_storage_ok 0$/m);
    assert.match(m.text, /^p11vault_storage_ok\{part="audit"\} 0$/m);
    const errs = Number(/^p11vault_storage_errors_total (\d+)$/m.exec(m.text)?.[1]);
    assert.ok(errs >= 2, `storage errors counted: ${errs}`);

    // many refusals, one episode per part: not one log line per request
    // (the server logs before it answers; the pipe may be read later)
    assert.ok(await waitFor(() => /"event":"storage_error","source":"audit"/.test(v.stderr)), 'the fault is logged');
    assert.equal(count(v.stderr, /"event":"storage_error","source":"audit"/g), 1, v.stderr.slice(-3000));
    assert.ok(count(v.stderr, /"event":"storage_error","source":"store"/g) <= 1, v.stderr.slice(-3000));
  });

  test('when space returns, service resumes by itself: nothing lost, chain intact', async () => {
    fs.unlinkSync(path.join(base, 'filler'));
    // no restart, no admin action: the next request writes the pending lines
    let r = await raw(v, 'POST', q(`/keys/${rsa}/unwrapkey`), { token: tok, body: { alg: 'RSA-OAEP-256', value: wrapped } });
    assert.equal(r.status, 200, r.text);
    assert.equal(Buffer.from(r.json.value, 'base64url').toString('hex'), dek.toString('hex'));
    r = await raw(v, 'GET', '/healthz');
    assert.deepEqual([r.status, r.json], [200, { status: 'ok' }]);
    assert.ok(await waitFor(() => /"event":"storage_recovered","source":"audit"/.test(v.stderr)), 'the recovery is logged');

    for (const name of acked) {
      r = await raw(v, 'GET', q(`/keys/${name}`), { token: tok });
      assert.equal(r.status, 200, `acknowledged create of ${name} is there: ${r.text}`);
    }
    const name = keyName('after');
    r = await raw(v, 'POST', q(`/keys/${name}/create`), { token: tok, body: { kty: 'EC', crv: 'P-256' } });
    assert.equal(r.status, 200, r.text);
    const m = await raw(v, 'GET', '/metrics', { token: tok });
    assert.match(m.text, /^p11vault_storage_ok 1$/m);

    await v.stop();
    if (process.env.P11VAULT_DISKFULL_LOG) console.log(`acknowledged creates: ${acked.length}\n${v.stderr}`);
    const ver = await p11vault(['audit', 'verify', '--data', dir]);
    assert.equal(ver.code, 0, ver.stdout + ver.stderr);
    assert.match(ver.stdout, /"intact":true/);
    // every refused request was recorded too, in order, after space returned
    const log = fs.readFileSync(path.join(dir, 'audit', 'audit.log'), 'utf8');
    assert.ok(count(log, /"httpStatus":503/g) >= 3, 'the refusals are in the log');
  });

  // ---- a crash while full, and a restart while still full

  const reserve = () => path.join(base, 'reserve');
  const torn = Buffer.from('{"prev":"0123456789abcdef0123456789abcdef","time":"2');
  let tornAt;

  test('the disk fills again; the server is SIGKILLed while full, mid-line', async () => {
    v = await openVault(dir, { port });
    tok = await token(v);
    // room kept back for the torn line written after the kill
    fs.writeFileSync(reserve(), Buffer.alloc(256 * 1024, 0x5a));
    fill(path.join(base, 'filler'), ROOM);
    const ackedBefore = acked.length;
    let refused;
    for (let i = 0; i < MAX_CREATES && !refused; i++) {
      const name = keyName('full2');
      const r = await raw(v, 'POST', q(`/keys/${name}/create`), { token: tok, body: { kty: 'EC', crv: 'P-256' } });
      if (r.status === 200) acked.push(name);
      else refused = r;
    }
    assert.ok(refused, `a create was refused within ${MAX_CREATES}`);
    assert.ok(acked.length > ackedBefore + 2, `creates were served until the disk filled: ${acked.length - ackedBefore}`);
    assertStorage(refused, 'create on a full disk (second fill)');
    for (let i = 0; i < MAX_READS; i++) {
      const r = await raw(v, 'GET', q(`/keys/${rsa}`), { token: tok });
      if (r.status !== 200) { assertStorage(r, 'read, second fill'); break; }
    }
    assertStorage(await raw(v, 'GET', q(`/keys/${rsa}`), { token: tok }), 'GET key before the kill');

    const child = v.child;
    await new Promise((res) => { child.once('exit', res); child.kill('SIGKILL'); });
    // a crash mid-write: the file ends in part of a line (whatever the
    // kill left, plus these bytes), written into the room kept back
    const file = path.join(dir, 'audit', 'audit.log');
    const before = fs.readFileSync(file);
    tornAt = before.lastIndexOf(0x0a) + 1;
    fs.unlinkSync(reserve());
    fs.appendFileSync(file, torn);
    fill(path.join(base, 'filler2'));
    const pending = await p11vault(['audit', 'verify', '--data', dir]);
    assert.match(pending.stderr, /ends in an incomplete line/, pending.stdout + pending.stderr);
  });

  test('restarted while still full, it starts, fails closed with the storage error and says so', async () => {
    v = await openVault(dir, { port });
    // a token request is refused like the rest while the log cannot be
    // written: the one issued before the crash is still good
    const h = await raw(v, 'GET', '/healthz');
    assert.equal(h.status, 503, h.text);
    assert.equal(h.json.status, 'storage', h.text);
    assert.equal(h.json.audit, 'failing', h.text);
    assert.equal(h.headers['retry-after'], '5');
    assertStorage(await raw(v, 'GET', q(`/keys/${rsa}`), { token: tok }), 'GET key after a restart on a full disk');
    assertStorage(await raw(v, 'POST', q(`/keys/${rsa}/wrapkey`), { token: tok, body: { alg: 'RSA-OAEP-256', value: dek.toString('base64url') } }), 'wrapKey after a restart on a full disk');
    assertStorage(await raw(v, 'POST', q(`/keys/${rsa}/unwrapkey`), { token: tok, body: { alg: 'RSA-OAEP-256', value: wrapped } }), 'unwrapKey after a restart on a full disk');
    assertStorage(await raw(v, 'POST', q(`/keys/${keyName('full3')}/create`), { token: tok, body: { kty: 'EC', crv: 'P-256' } }), 'create after a restart on a full disk');
    const t = await tokenRequest(v, { clientId: v.admin.clientId, clientSecret: v.admin.clientSecret });
    assert.equal(t.status, 503, `a new token is refused too: ${t.text}`);
    assert.equal(t.headers['retry-after'], '5');
    const m = await raw(v, 'GET', '/metrics', { token: tok });
    assert.equal(m.status, 200, m.text);
    assert.match(m.text, /^p11vault_storage_ok\{part="audit"\} 0$/m);
  });

  test('when space returns, the restarted server repairs and resumes by itself: nothing lost, the repair listed', async () => {
    fs.unlinkSync(path.join(base, 'filler'));
    fs.unlinkSync(path.join(base, 'filler2'));
    // no second restart: the next request finishes the repair first
    let r = await raw(v, 'POST', q(`/keys/${rsa}/unwrapkey`), { token: tok, body: { alg: 'RSA-OAEP-256', value: wrapped } });
    assert.equal(r.status, 200, r.text);
    assert.equal(Buffer.from(r.json.value, 'base64url').toString('hex'), dek.toString('hex'));
    r = await raw(v, 'GET', '/healthz');
    assert.deepEqual([r.status, r.json], [200, { status: 'ok' }]);
    tok = await token(v);
    for (const name of acked) {
      r = await raw(v, 'GET', q(`/keys/${name}`), { token: tok });
      assert.equal(r.status, 200, `acknowledged create of ${name} is there: ${r.text}`);
    }
    r = await raw(v, 'POST', q(`/keys/${keyName('after2')}/create`), { token: tok, body: { kty: 'EC', crv: 'P-256' } });
    assert.equal(r.status, 200, r.text);

    await v.stop();
    if (process.env.P11VAULT_DISKFULL_LOG) console.log(`acknowledged creates: ${acked.length}\n${v.stderr}`);
    const ver = await p11vault(['audit', 'verify', '--data', dir]);
    assert.equal(ver.code, 0, ver.stdout + ver.stderr);
    const out = JSON.parse(ver.stdout);
    assert.equal(out.intact, true, ver.stdout);
    assert.equal(out.unrepairedTail, undefined, ver.stdout);
    assert.equal(out.repairs?.length, 1, ver.stdout);
    const [rep] = out.repairs;
    assert.equal(rep.offset, tornAt, ver.stdout);
    assert.ok(rep.length >= torn.length, ver.stdout);
    assert.match(rep.sideFile, /^audit\.log\.torn-\d+$/, 'the cut bytes were kept aside once there was room');
    const side = fs.readFileSync(path.join(dir, 'audit', rep.sideFile));
    assert.equal(side.length, rep.length);
    assert.deepEqual(side.subarray(side.length - torn.length), torn, 'the side file ends with the torn bytes');
    assert.equal(rep.sha256, crypto.createHash('sha256').update(side).digest('hex'));
  });
});
