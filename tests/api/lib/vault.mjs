// Test harness for the p11vault API tests: starts a real vault (init + serve)
// on a free port in a fresh temp dir, and gives the tests SDK clients and a
// raw HTTPS helper. It owns only test processes and temp dirs; it never
// touches anything outside os.tmpdir() and never logs secrets it reads.

import { spawn, execFile, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ClientSecretCredential } from '@azure/identity';
import { KeyClient, CryptographyClient } from '@azure/keyvault-keys';
import { httpsRequest } from './util.mjs';

const execFileP = promisify(execFile);

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BIN = process.env.P11VAULT_BIN || path.join(REPO, 'build', 'p11vault');
export const API_VERSION = '7.6';
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const READY_TIMEOUT_MS = 20000;
const STOP_TIMEOUT_MS = 10000;

// ---------------------------------------------------------------- test CA

let caPromise = null;

// The CA every test vault's server certificate is issued by. tests/run.sh
// makes one and exports its paths (and NODE_EXTRA_CA_CERTS so the Azure SDK
// trusts it); without it we make one here, but the SDK can then only be told
// about it through tlsOptions, because NODE_EXTRA_CA_CERTS is read at start.
export function testCa() {
  if (!caPromise) caPromise = loadOrMakeCa();
  return caPromise;
}

async function loadOrMakeCa() {
  const cert = process.env.P11VAULT_TEST_CA_CERT;
  const key = process.env.P11VAULT_TEST_CA_KEY;
  if (cert && key) {
    if (!process.env.NODE_EXTRA_CA_CERTS) {
      process.emitWarning('NODE_EXTRA_CA_CERTS is not set: the SDK clients get the test CA through tlsOptions instead');
    }
    return { cert, key, pem: fs.readFileSync(cert), viaEnv: !!process.env.NODE_EXTRA_CA_CERTS };
  }
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'p11vault-testca-'));
  process.once('exit', () => { try { fs.rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ } });
  const certPath = path.join(dir, 'ca.pem');
  const keyPath = path.join(dir, 'ca.key');
  await execFileP('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
    '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=p11vault test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  process.emitWarning('P11VAULT_TEST_CA_CERT/P11VAULT_TEST_CA_KEY not set: made a CA in ' + dir +
    '; NODE_EXTRA_CA_CERTS must be set at process start for the SDK to trust it, ' +
    'so the SDK clients get it through tlsOptions instead (run the suite through tests/run.sh)');
  return { cert: certPath, key: keyPath, pem: fs.readFileSync(certPath), viaEnv: false };
}

// ---------------------------------------------------------------- ports

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------- processes

function run(bin, args, { env, timeoutMs = 120000, input } = {}) {
  return new Promise((resolve) => {
    let out = '';
    let err = '';
    let child;
    try {
      child = spawn(bin, args, { env: env || process.env, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    } catch (e) {
      resolve({ code: -1, stdout: '', stderr: String(e) });
      return;
    }
    if (input !== undefined) child.stdin.end(input);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('error', (e) => { clearTimeout(timer); resolve({ code: -1, stdout: out, stderr: err + String(e) }); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code === null ? -1 : code, signal, stdout: out, stderr: err });
    });
  });
}

export { run as runProcess };

// Runs `p11vault ARGS...` and returns {code, stdout, stderr}.
export function p11vault(args, opts) {
  return run(BIN, args, opts);
}

function spawnServe(v) {
  const args = ['serve', '--data', v.dir, '--listen', `127.0.0.1:${v.port}`];
  if (v.clockFile) args.push('--insecure-test-clock', v.clockFile);
  args.push(...v.serveArgs);
  const want = `listening on https://127.0.0.1:${v.port}`;
  return new Promise((resolve, reject) => {
    let child;
    try {
      child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: v.env || process.env });
    } catch (e) {
      reject(new Error(`cannot start ${BIN}: ${e.message}`));
      return;
    }
    let done = false;
    let lineBuf = '';
    const finish = (e) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (e) {
        child.kill('SIGKILL');
        reject(e);
      } else {
        resolve(child);
      }
    };
    const timer = setTimeout(() => finish(new Error(
      `p11vault serve did not print "${want}" within ${READY_TIMEOUT_MS} ms; stderr: ${v.stderr.slice(-2000)}`)),
      READY_TIMEOUT_MS);
    child.stdout.on('data', (d) => {
      v.stdout += d;
      lineBuf += d;
      const lines = lineBuf.split('\n');
      lineBuf = lines.pop();
      if (lines.some((l) => l.trim() === want)) finish();
    });
    child.stderr.on('data', (d) => { v.stderr += d; });
    child.on('error', (e) => finish(new Error(`cannot start ${BIN}: ${e.message}`)));
    child.on('exit', (code, signal) => {
      v.exits.push({ code, signal });
      finish(new Error(`p11vault serve exited early (code ${code}, signal ${signal}); stderr: ${v.stderr.slice(-2000)}`));
    });
  });
}

function stopChild(child) {
  return new Promise((resolve) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      resolve(child ? { code: child.exitCode, signal: child.signalCode } : null);
      return;
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    child.once('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal }); });
    child.kill('SIGTERM');
  });
}

const liveVaults = new Set();
process.once('exit', () => {
  for (const v of liveVaults) { try { v.child?.kill('SIGKILL'); } catch { /* already gone */ } }
});

// start/stop/restart/remove on a vault handle. A sanitizer build reports
// errors and leaks on stderr (leaks at exit): any such report fails the
// test that stopped the server.
function withLifecycle(v) {
  v.start = async () => {
    v.child = await spawnServe(v);
    liveVaults.add(v);
  };
  v.stop = async () => {
    const r = await stopChild(v.child);
    liveVaults.delete(v);
    const m = /(ERROR: (Address|Leak)Sanitizer|runtime error:)[^]*/.exec(v.stderr);
    if (m && !v.sanitizerReported) {
      v.sanitizerReported = true;
      throw new Error(`sanitizer report from p11vault serve:\n${m[0].slice(0, 4000)}`);
    }
    return r;
  };
  v.restart = async () => {
    await v.stop();
    await v.start();
  };
  v.remove = () => fsp.rm(v.dir, { recursive: true, force: true });
  return v;
}

// startVault({port, extraArgs, initArgs, clock}) -> vault handle.
//   extraArgs: more `serve` arguments; initArgs: more `init` arguments;
//   clock: pass --insecure-test-clock (setClockOffset needs it).
export async function startVault({ port, extraArgs = [], initArgs = [], clock = false } = {}) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`p11vault binary not found at ${BIN} (build it with make, or set P11VAULT_BIN)`);
  }
  const ca = await testCa();
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'p11vault-test-'));
  port = port || await freePort();
  const url = `https://127.0.0.1:${port}`;
  const init = await p11vault(['init', '--data', dir, '--vault-url', url,
    '--tls-ca-cert', ca.cert, '--tls-ca-key', ca.key, ...initArgs]);
  if (init.code !== 0) {
    if (!process.env.P11VAULT_KEEP_TEST_DIRS) await fsp.rm(dir, { recursive: true, force: true });
    throw new Error(`p11vault init failed (exit ${init.code}): ${init.stderr.trim()}`);
  }
  const v = {
    dir, port, url, ca, admin: null,
    stdout: '', stderr: '', initOutput: init.stdout + init.stderr,
    init: JSON.parse(init.stdout.trim().split('\n').pop()),
    exits: [], child: null, serveArgs: extraArgs,
    clockFile: clock ? path.join(dir, 'test-clock') : null,
  };
  if (v.clockFile) fs.writeFileSync(v.clockFile, '0\n');
  v.admin = JSON.parse(fs.readFileSync(path.join(dir, 'admin.json'), 'utf8'));
  withLifecycle(v);
  v.setClockOffset = (seconds) => {
    if (!v.clockFile) throw new Error('startVault({clock: true}) is needed for setClockOffset');
    fs.writeFileSync(v.clockFile + '.tmp', `${Math.trunc(seconds)}\n`);
    fs.renameSync(v.clockFile + '.tmp', v.clockFile);
  };
  try {
    await v.start();
  } catch (e) {
    if (!process.env.P11VAULT_KEEP_TEST_DIRS) await v.remove();
    e.message += ` [data dir ${dir}; set P11VAULT_KEEP_TEST_DIRS=1 to keep it]`;
    throw e;
  }
  return v;
}

// openVault(dir, {port, extraArgs, url}) -> a handle like startVault's, for a
// data directory that exists already (no init: v.init is null): `serve
// --data dir --listen 127.0.0.1:PORT` is started. url: v.url (default
// https://127.0.0.1:PORT; the SDK clients need it to be the dir's vault_url,
// raw() and token() only use v.port). v.remove() deletes dir.
export async function openVault(dir, { port, extraArgs = [], url } = {}) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`p11vault binary not found at ${BIN} (build it with make, or set P11VAULT_BIN)`);
  }
  port = port || await freePort();
  const v = {
    dir, port, url: url || `https://127.0.0.1:${port}`, ca: await testCa(),
    admin: JSON.parse(fs.readFileSync(path.join(dir, 'admin.json'), 'utf8')),
    stdout: '', stderr: '', initOutput: '', init: null,
    exits: [], child: null, serveArgs: extraArgs, clockFile: null,
  };
  withLifecycle(v);
  try {
    await v.start();
  } catch (e) {
    e.message += ` [data dir ${dir}]`;
    throw e;
  }
  return v;
}

// The vault's unseal secret S, as the unattended method keeps it
// (systemd-creds, host key: the tests run as root), and the token PINs
// derived from it (hsm/seal.c: HKDF-SHA-256, salt "p11vault-seal-v1").
// The tests play the custodian here; nothing of the vault writes these.
export function unsealSecret(v) {
  const out = execFileSync('systemd-creds', ['decrypt', '--name=p11vault-unseal',
    path.join(v.dir, 'hsm', 'unseal.cred'), '-'], { stdio: ['ignore', 'pipe', 'ignore'] });
  return Buffer.from(out.toString('utf8').trim(), 'hex');
}

export function tokenPins(v) {
  const s = unsealSecret(v);
  const pin = (what) => Buffer.from(crypto.hkdfSync('sha256', s, 'p11vault-seal-v1', `${what}-pin`, 32)).toString('hex');
  return { secret: s, user: pin('user'), so: pin('so') };
}

// Stops a vault if one was started; safe to call with undefined.
export async function stopVault(v, { keep = !!process.env.P11VAULT_KEEP_TEST_DIRS } = {}) {
  if (!v) return;
  await v.stop();
  if (!keep) await v.remove();
}

// ---------------------------------------------------------------- SDK clients

function sdkTlsOptions(v) {
  return v.ca.viaEnv ? {} : { tlsOptions: { ca: [v.ca.pem, ...caFromDir(v)] } };
}

function caFromDir(v) {
  const p = path.join(v.dir, 'tls', 'ca.pem');
  return fs.existsSync(p) ? [fs.readFileSync(p)] : [];
}

export function credential(v, who = v.admin) {
  return new ClientSecretCredential(who.tenantId, who.clientId, who.clientSecret, {
    authorityHost: v.url,
    disableInstanceDiscovery: true,
    ...sdkTlsOptions(v),
  });
}

export function keyClient(v, cred = credential(v)) {
  return new KeyClient(v.url, cred, {
    disableChallengeResourceVerification: true,
    retryOptions: { maxRetries: 0 },
    ...sdkTlsOptions(v),
  });
}

export function cryptoClient(v, keyIdOrKey, cred = credential(v)) {
  return new CryptographyClient(keyIdOrKey, cred, {
    disableChallengeResourceVerification: true,
    retryOptions: { maxRetries: 0 },
    ...sdkTlsOptions(v),
  });
}

// ---------------------------------------------------------------- raw HTTPS

// raw(v, method, path, {body, token, headers, query}) -> {status, headers, json, text}.
// path is used as given (add ?api-version yourself, or pass apiVersion: true).
// body: an object (sent as JSON), a string or a Buffer (sent as is).
export function raw(v, method, p, { body, token, headers = {}, apiVersion = false, timeoutMs = 30000 } = {}) {
  if (apiVersion) p += (p.includes('?') ? '&' : '?') + `api-version=${API_VERSION}`;
  let payload;
  const h = { ...headers };
  if (body !== undefined) {
    payload = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['Content-Type'] = 'application/json';
    h['Content-Length'] = payload.length;
  }
  if (token) h.Authorization = `Bearer ${token}`;
  return httpsRequest({
    host: '127.0.0.1', port: v.port, method, path: p, headers: h,
    ca: [v.ca.pem, ...caFromDir(v)], agent: false,
  }, payload, timeoutMs);
}

// POST /{tenantId}/oauth2/v2.0/token with client credentials -> access token.
export async function token(v, who = v.admin, { scope = 'https://vault.azure.net/.default' } = {}) {
  const r = await tokenRequest(v, { clientId: who.clientId, clientSecret: who.clientSecret, scope, tenantId: who.tenantId || v.admin.tenantId });
  if (r.status !== 200 || !r.json?.access_token) {
    throw new Error(`token endpoint answered ${r.status}: ${r.text.slice(0, 300)}`);
  }
  return r.json.access_token;
}

export function tokenRequest(v, { clientId, clientSecret, scope = 'https://vault.azure.net/.default', tenantId = v.admin.tenantId }) {
  const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret, scope });
  return raw(v, 'POST', `/${tenantId}/oauth2/v2.0/token`, {
    body: form.toString(), headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
  });
}

// ---------------------------------------------------------------- helpers

export const b64u = (buf) => Buffer.from(buf).toString('base64url');
export const unb64u = (s) => Buffer.from(s, 'base64url');

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Polls fn() until it returns a truthy value or timeoutMs passes; returns the last value.
export async function waitFor(fn, { timeoutMs = 10000, intervalMs = 250 } = {}) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last || Date.now() > end) return last;
    await sleep(intervalMs);
  }
}

// Asserts that an SDK promise rejects with the given HTTP status; returns the error.
export async function rejectsWithStatus(promise, status, assert) {
  try {
    await promise;
  } catch (e) {
    assert.equal(e.statusCode, status, `expected HTTP ${status}, got ${e.statusCode}: ${e.message}`);
    return e;
  }
  assert.fail(`expected HTTP ${status}, but the call succeeded`);
}

// Unique key names per test run (names are 1-127 of [0-9a-zA-Z-]).
let nameCounter = 0;
// The child processes of pid, every thread's (/proc/PID/task/T/children).
export function children(pid) {
  const out = [];
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      out.push(...fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean));
    } catch { /* thread gone */ }
  }
  return out.map(Number);
}

export function keyName(prefix = 'k') {
  nameCounter += 1;
  return `${prefix}-${process.pid}-${nameCounter}-${Math.random().toString(36).slice(2, 8)}`;
}

// holdConnections(v, n) -> {close()}: n idle TLS connections to v, each
// opened again when the server closes it (its idle timeout), so that the
// server's connection threads (at most 64: docs/design.md) stay taken and
// every further connection is served by the event-driven I/O threads.
// parallel: all n opened at once (a burst), else one after the other.
export async function holdConnections(v, n = 64, { parallel = false } = {}) {
  const socks = new Set();
  let closing = false;
  const open = () => new Promise((resolve) => {
    // a holder, not a check of the server: the peer's name is not verified
    const s = tls.connect({ host: '127.0.0.1', port: v.port, ca: [v.ca.pem, ...caFromDir(v)], checkServerIdentity: () => undefined });
    let up = false;
    socks.add(s);
    s.on('secureConnect', () => { up = true; resolve(s); });
    s.on('error', () => {});
    // again only for a connection the server had taken and then closed
    // (never after a failed connect: a stopped server would make a loop)
    s.on('close', () => { socks.delete(s); resolve(s); if (up && !closing) open(); });
  });
  if (parallel) await Promise.all(Array.from({ length: n }, open));
  else for (let i = 0; i < n; i++) await open();
  return {
    get open() { return [...socks].filter((s) => !s.destroyed).length; },
    close() { closing = true; for (const s of socks) s.destroy(); },
  };
}
