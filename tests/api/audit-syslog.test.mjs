// audit_syslog=true: every line of audit.log (checkpoints and repair
// records included, each with its "prev" hash) is also sent, as it reaches
// the file, as one RFC 3164 datagram "<86>Mmm dd hh:mm:ss
// p11vault-audit[PID]: LINE" (authpriv.info) to audit_syslog_socket
// (default /dev/log): a copy the vault cannot rewrite, against which a
// truncated or rewritten file shows. The listener here is python3 on an
// AF_UNIX datagram socket in the test's temp dir (Node has no unix
// datagram sockets). The server runs as it does in production: under its
// system-call filter (no socket, no connect once it serves) and, as root,
// with --user (the socket is reached after the privileges are dropped).
// A dead listener never fails or slows a request: the lines are counted
// as dropped in /metrics and logged once; a restarted listener gets the
// lines again. A bad audit_syslog value refuses to start, naming the line.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  startVault, stopVault, raw, token, p11vault, freePort, keyName, waitFor, API_VERSION,
} from './lib/vault.mjs';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const USER = 'p11vault-test';
const sha256 = (s) => crypto.createHash('sha256').update(s).digest('hex');
const HEADER = /^<86>(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 1-3]\d \d\d:\d\d:\d\d p11vault-audit\[(\d+)\]: /;

// The listener: binds PATH (replacing a stale socket), lets anyone send
// (the server may run as another user), says "ready", then appends each
// datagram and a newline to OUT.
const LISTENER = `
import os, socket, sys
path, out = sys.argv[1], sys.argv[2]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
f = open(out, 'ab', buffering=0)
print('ready', flush=True)
while True:
    f.write(s.recv(1 << 17) + b'\\n')
`;

function startListener(sock, out) {
  const child = spawn('python3', ['-c', LISTENER, sock, out], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`listener exited (${code})`)));
    child.stdout.on('data', (d) => { if (String(d).includes('ready')) resolve(child); });
  });
}

function killListener(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) { resolve(); return; }
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

function serverUser() {
  for (const name of [USER, 'nobody']) {
    try {
      execFileSync('id', ['-u', name], { stdio: 'ignore' });
      return name;
    } catch { /* absent */ }
    if (name === USER) {
      try {
        execFileSync('useradd', ['--system', '--no-create-home', '--home-dir', '/nonexistent',
          '--shell', '/usr/sbin/nologin', USER], { stdio: 'ignore' });
        return USER;
      } catch { /* fall back to nobody */ }
    }
  }
  return null;
}

const fileLines = (file) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

// The received datagrams' lines (their headers checked and cut off).
function received(out, pid) {
  return fileLines(out).map((m) => {
    const h = HEADER.exec(m);
    assert.ok(h, `a datagram in RFC 3164 form: ${m.slice(0, 120)}`);
    if (pid !== undefined) assert.equal(Number(h[2]), pid, 'the tag names the server\'s pid');
    return m.slice(h[0].length);
  });
}

// Waits until the listener has every line of audit.log from line `from`
// on, then checks that it got exactly those, in order.
async function assertForwarded(auditFile, from, out, pid, what) {
  const same = () => {
    const want = fileLines(auditFile).slice(from);
    const got = received(out, pid);
    return want.length > 0 && got.length === want.length && got.every((l, i) => l === want[i]);
  };
  await waitFor(same, { timeoutMs: 15000, intervalMs: 50 });
  assert.deepEqual(received(out, pid), fileLines(auditFile).slice(from), what);
}

async function metric(v, tok, name) {
  const m = await raw(v, 'GET', '/metrics', { token: tok });
  assert.equal(m.status, 200);
  const r = new RegExp(`^${name} (\\d+)$`, 'm').exec(m.text);
  assert.ok(r, `/metrics has ${name}:\n${m.text.slice(-1500)}`);
  return Number(r[1]);
}

describe('audit_syslog: every audit line copied to a syslog socket', { timeout: 180000 }, () => {
  let v;
  let tmp;
  let sock;
  let listener;
  let auditFile;
  let key;

  before(async () => {
    v = await startVault();
    await v.stop();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'p11vault-syslog-'));
    fs.chmodSync(tmp, 0o755); // the server may reach it as --user
    sock = path.join(tmp, 'log.sock');
    fs.appendFileSync(path.join(v.dir, 'p11vault.conf'), `audit_syslog=true\naudit_syslog_socket=${sock}\n`);
    if (isRoot) {
      const user = serverUser();
      if (user) {
        execFileSync('chown', ['-R', `${user}:`, v.dir]);
        v.serveArgs.push('--user', user);
      }
    }
    auditFile = path.join(v.dir, 'audit', 'audit.log');
    key = keyName('sys');
  });
  after(async () => {
    if (listener) await killListener(listener);
    await stopVault(v);
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('every line the server writes (repair record, checkpoint, requests) reaches the listener, in order, after the filter and the drop to --user', async () => {
    // a torn tail, as after a crash: the start's repair record is a line too
    const from = fileLines(auditFile).length;
    fs.appendFileSync(auditFile, '{"prev":"0123');
    listener = await startListener(sock, path.join(tmp, 'one.log'));
    await v.start();
    const tok = await token(v);
    assert.equal((await raw(v, 'POST', `/keys/${key}/create?api-version=${API_VERSION}`,
      { token: tok, body: { kty: 'EC', crv: 'P-256' } })).status, 200);
    for (let i = 0; i < 5; i += 1) {
      assert.equal((await raw(v, 'GET', `/keys/${key}?api-version=${API_VERSION}`, { token: tok })).status, 200);
    }
    await assertForwarded(auditFile, from, path.join(tmp, 'one.log'), v.child.pid, 'the listener holds audit.log\'s new lines');
    const got = received(path.join(tmp, 'one.log'));
    const events = got.map((l) => JSON.parse(l).event);
    assert.ok(events.includes('audit_tail_repaired'), `the repair record was sent: ${events}`);
    assert.ok(events.includes('audit_checkpoint'), `the start's checkpoint was sent: ${events}`);
    // the copy carries the chain: each line's prev is the hash of the one before
    for (let i = 1; i < got.length; i += 1) assert.equal(JSON.parse(got[i]).prev, sha256(got[i - 1]));
    assert.equal(await metric(v, tok, 'p11vault_audit_syslog_dropped_total'), 0);
    assert.ok(await metric(v, tok, 'p11vault_audit_syslog_sent_total') >= got.length);
  });

  test('with the listener dead, requests still succeed; the lines are counted as dropped and logged once', async () => {
    await killListener(listener);
    listener = null;
    const tok = await token(v);
    const before = await metric(v, tok, 'p11vault_audit_syslog_dropped_total');
    for (let i = 0; i < 4; i += 1) {
      assert.equal((await raw(v, 'GET', `/keys/${key}?api-version=${API_VERSION}`, { token: tok })).status, 200);
    }
    const after = await metric(v, tok, 'p11vault_audit_syslog_dropped_total');
    assert.ok(after >= before + 4, `dropped grew from ${before} to ${after}`);
    assert.equal(v.stderr.split('"event":"audit_syslog_failing"').length - 1, 1,
      `one audit_syslog_failing line for the episode:\n${v.stderr.slice(-1500)}`);
  });

  test('a restarted listener gets the lines again, the clean stop\'s checkpoint included', async () => {
    const from = fileLines(auditFile).length;
    const out = path.join(tmp, 'two.log');
    listener = await startListener(sock, out);
    const tok = await token(v);
    for (let i = 0; i < 3; i += 1) {
      assert.equal((await raw(v, 'GET', `/keys/${key}?api-version=${API_VERSION}`, { token: tok })).status, 200);
    }
    const pid = v.child.pid;
    await assertForwarded(auditFile, from, out, pid, 'forwarding resumed');
    assert.match(v.stderr, /"event":"audit_syslog_recovered","dropped":\d+/);
    await v.stop();
    await assertForwarded(auditFile, from, out, pid, 'the stop\'s checkpoint was sent too');
    assert.equal(JSON.parse(received(out).pop()).event, 'audit_checkpoint');
    const vr = await p11vault(['audit', 'verify', '--data', v.dir]);
    assert.equal(vr.code, 0, vr.stdout + vr.stderr);
  });

  test('audit_syslog=maybe refuses to start, naming the line', async () => {
    const confPath = path.join(v.dir, 'p11vault.conf');
    const good = fs.readFileSync(confPath, 'utf8');
    const text = good.replace(/^audit_syslog=true$/m, 'audit_syslog=maybe');
    const line = text.split('\n').indexOf('audit_syslog=maybe') + 1;
    fs.writeFileSync(confPath, text);
    try {
      const r = await p11vault(['serve', '--data', v.dir, '--listen', `127.0.0.1:${await freePort()}`],
        { timeoutMs: 20000 });
      assert.ok(r.code !== 0 && r.code !== -1, `serve exit ${r.code}`);
      assert.ok(r.stderr.includes(`${confPath}:${line}: audit_syslog='maybe' is neither true nor false`), r.stderr);
      assert.equal(r.stdout.includes('listening on'), false);
    } finally {
      fs.writeFileSync(confPath, good);
    }
  });
});
