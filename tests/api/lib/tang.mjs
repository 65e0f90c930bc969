// Test helpers for the unattended-unseal methods (docs/unseal-methods-notes.md):
// a throwaway Tang server on loopback, Clevis encrypt/decrypt of a 32-byte
// hex secret, and systemd-creds encrypt/decrypt with a throwaway host key.
// Imports nothing from the other lib files. Everything it creates lives
// under os.tmpdir() and is removed at process exit; every process it starts
// is killed (by process group) at process exit.
//
// Tang is socket-activated (one tangd per connection, HTTP on stdin/stdout).
// Without systemd as PID 1 it runs as:
//   systemd-socket-activate --inetd -a -l 127.0.0.1:PORT /usr/libexec/tangd KEYDIR
// (systemd package), or, where that is missing:
//   socat TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr,fork EXEC:"/usr/libexec/tangd KEYDIR"
//
// Debian packages: clevis (pulls jose, curl), tang-common (tangd,
// tangd-keygen; the package `tang` only adds systemd units and enables
// tangd.socket on port 80), systemd (systemd-creds, systemd-socket-activate);
// socat optional.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const TANGD = '/usr/libexec/tangd';
export const TANGD_KEYGEN = '/usr/libexec/tangd-keygen';
export const UNSEAL_CRED_NAME = 'p11vault-unseal';

const HEX64 = /^[0-9a-f]{64}$/;
const READY_TIMEOUT_MS = 5000;
const STOP_TIMEOUT_MS = 3000;

// ---- cleanup at exit -------------------------------------------------------

const liveGroups = new Set(); // pids of process-group leaders we started
const tempDirs = new Set();

process.once('exit', () => {
  for (const pid of liveGroups) killGroup(pid, 'SIGKILL');
  for (const d of tempDirs) { try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ } }
});

function killGroup(pid, signal) {
  try { process.kill(-pid, signal); } catch { /* group gone */ }
}

async function tempDir(prefix) {
  const d = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}

// ---- availability ----------------------------------------------------------

// Full path of an executable found on PATH (or the absolute path itself), or null.
export function which(name) {
  const dirs = name.includes('/') ? [''] : (process.env.PATH || '/usr/bin:/bin').split(':');
  for (const d of dirs) {
    const p = d ? path.join(d, name) : name;
    try { fs.accessSync(p, fs.constants.X_OK); if (fs.statSync(p).isFile()) return p; } catch { /* next */ }
  }
  return null;
}

function tangLauncher() {
  if (which('systemd-socket-activate')) return 'systemd-socket-activate';
  if (which('socat')) return 'socat';
  return null;
}

// True when a Tang server can be started here and Clevis can encrypt to it
// and decrypt from it: clevis with its tang pin, jose, curl, tangd,
// tangd-keygen and a socket launcher. Tests skip themselves when false.
export function haveClevis() {
  return ['clevis', 'clevis-encrypt-tang', 'clevis-decrypt-tang', 'jose', 'curl', TANGD, TANGD_KEYGEN]
    .every((x) => which(x) !== null) && tangLauncher() !== null;
}

// True when systemd-creds is installed (systemd >= 250). It needs no running
// systemd; --with-key=host needs a host key file it can read (root for the
// real /var/lib/systemd/credential.secret; see credsHostKey()).
export function haveSystemdCreds() {
  return which('systemd-creds') !== null;
}

// ---- running a command -----------------------------------------------------

// Runs argv in a process group of its own, input (string/Buffer) on stdin.
// -> {code, signal, stdout: Buffer, stderr: string, ms, exitMs, timedOut}:
// ms is when stdout and stderr closed (or the timeout), exitMs when the direct
// child exited. On timeout the WHOLE group is SIGKILLed: clevis is a chain of
// bash scripts, and its curl and the clevis-decrypt-tang script inherit our
// stdout, so killing only the direct child leaves them running and the stdout
// pipe open. With sss, `clevis decrypt` can print the secret, close stdout and
// exit 0 while the pin of a hung server (clevis-decrypt-tang and its curl)
// goes on and holds STDERR open: then code is 0, exitMs small, and ms the
// timeout (a caller that waits for stderr EOF hangs; one that waits for exit
// and stdout EOF does not, but must still kill the group).
export function run(argv, { input, env, timeoutMs = 20000 } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), {
      stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: env ?? process.env,
    });
    liveGroups.add(child.pid);
    const out = []; const err = [];
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; killGroup(child.pid, 'SIGKILL'); }, timeoutMs);
    child.stdout.on('data', (c) => out.push(c));
    child.stderr.on('data', (c) => err.push(c));
    let exitMs = null;
    child.on('exit', () => { exitMs = Number(process.hrtime.bigint() - t0) / 1e6; });
    child.on('error', (e) => { clearTimeout(timer); liveGroups.delete(child.pid); reject(e); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      liveGroups.delete(child.pid);
      resolve({
        code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8'),
        ms: Number(process.hrtime.bigint() - t0) / 1e6, exitMs, timedOut,
      });
    });
    child.stdin.on('error', () => { /* child exited before reading */ });
    child.stdin.end(input ?? '');
  });
}

// ---- Tang server -----------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function getAdv(port, timeoutMs) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/adv', timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

// Starts tangd on 127.0.0.1. opts.keyDir: reuse that key directory (else a
// new one under os.tmpdir() with fresh keys from tangd-keygen); opts.port:
// listen there (else a free port). Restarting with the same keyDir and port
// gives the same URL and keys, so JWEs made earlier decrypt again.
// -> {url, port, keyDir, pid, stop(), pause(), resume(), stderr()}.
// pause()/resume() SIGSTOP/SIGCONT the listener: the kernel still accepts
// TCP connections but no answer comes, as with a hung Tang server.
export async function startTang(opts = {}) {
  if (!haveClevis()) throw new Error('tang/clevis not installed (apt-get install clevis tang-common)');
  let keyDir = opts.keyDir;
  if (!keyDir) {
    keyDir = await tempDir('p11vault-tang-');
    // As root it also chowns the keys to _tang (mode 0440); root still reads
    // them. Not root: it warns "Unable to change owner/group" and goes on.
    const kg = await run([TANGD_KEYGEN, keyDir], { timeoutMs: 10000 });
    if (kg.code !== 0) throw new Error(`tangd-keygen failed (${kg.code}): ${kg.stderr}`);
  }
  const launcher = tangLauncher();
  let lastErr;
  for (let attempt = 0; attempt < (opts.port ? 1 : 5); attempt++) {
    const port = opts.port ?? await freePort();
    const argv = launcher === 'systemd-socket-activate'
      ? ['systemd-socket-activate', '--inetd', '-a', '-l', `127.0.0.1:${port}`, TANGD, keyDir]
      : ['socat', `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `EXEC:${TANGD} ${keyDir}`];
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    liveGroups.add(child.pid);
    let log = '';
    child.stderr.on('data', (c) => { log = (log + c.toString('utf8')).slice(-8192); });
    let exited = null;
    const exitP = new Promise((r) => child.once('exit', (code, signal) => { exited = { code, signal }; liveGroups.delete(child.pid); r(exited); }));
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!exited && Date.now() < deadline) {
      if (await getAdv(port, 1000)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (exited || Date.now() >= deadline) {
      killGroup(child.pid, 'SIGKILL');
      await exitP;
      lastErr = new Error(`tang did not start on port ${port} (${launcher}): ${log.trim()}`);
      continue;
    }
    child.unref();
    child.stderr.unref();
    return {
      url: `http://127.0.0.1:${port}`, port, keyDir, pid: child.pid, launcher,
      stderr: () => log,
      pause: () => killGroup(child.pid, 'SIGSTOP'),
      resume: () => killGroup(child.pid, 'SIGCONT'),
      stop: async () => {
        if (exited) return exited;
        killGroup(child.pid, 'SIGCONT');
        killGroup(child.pid, 'SIGTERM');
        const timer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), STOP_TIMEOUT_MS);
        const r = await exitP;
        clearTimeout(timer);
        killGroup(child.pid, 'SIGKILL'); // any tangd still serving a connection
        return r;
      },
    };
  }
  throw lastErr;
}

// ---- Clevis ----------------------------------------------------------------

function checkHex(secretHex) {
  if (!HEX64.test(secretHex)) throw new Error('secret must be 64 lowercase hex characters');
}

// Encrypts secretHex + "\n" to one Tang URL (pin tang) or, for an array of
// URLs, to a Shamir policy (pin sss) needing opts.threshold of them (default 1).
// -y trusts the advertised keys without asking (it otherwise asks on
// /dev/tty and fails without one). -> the JWE (compact, one line, no newline);
// also written to opts.file (mode 0600) when given.
export async function clevisEncrypt(secretHex, url, opts = {}) {
  checkHex(secretHex);
  const [pin, cfg] = Array.isArray(url)
    ? ['sss', { t: opts.threshold ?? 1, pins: { tang: url.map((u) => ({ url: u })) } }]
    : ['tang', { url }];
  const r = await run(['clevis', 'encrypt', pin, JSON.stringify(cfg), '-y'],
    { input: `${secretHex}\n`, timeoutMs: opts.timeoutMs ?? 20000 });
  if (r.code !== 0 || r.stdout.length === 0) {
    throw new Error(`clevis encrypt ${pin} failed (code ${r.code}${r.timedOut ? ', timed out' : ''}): ${r.stderr.trim()}`);
  }
  const jwe = r.stdout.toString('utf8');
  if (opts.file) await fsp.writeFile(opts.file, jwe, { mode: 0o600 });
  return jwe;
}

// A CURL_HOME directory whose .curlrc bounds every curl that clevis runs
// (clevis calls curl without -q, so curl reads $CURL_HOME/.curlrc, else
// $XDG_CONFIG_HOME/.curlrc, else $HOME/.curlrc). Without it a Tang server that
// accepts but never answers makes `clevis decrypt` hang for ever.
export async function curlHome({ connectTimeout = 3, maxTime = 5 } = {}) {
  const d = await tempDir('p11vault-curlhome-');
  await fsp.writeFile(path.join(d, '.curlrc'), `connect-timeout = ${connectTimeout}\nmax-time = ${maxTime}\n`);
  return d;
}

// Runs `clevis decrypt < file` as the token process will.
// opts.timeoutMs: kill the process group after that long (default 20000);
// opts.curl: {connectTimeout, maxTime} in seconds to bound curl itself;
// opts.env: the whole environment (default process.env).
// -> {ok, secret (string, trailing newline removed, or null), code, signal,
//     stdout: Buffer, stderr, ms, timedOut}. Never throws on a failed decrypt.
export async function clevisDecrypt(file, opts = {}) {
  const env = { ...(opts.env ?? process.env) };
  if (opts.curl) env.CURL_HOME = await curlHome(opts.curl);
  const input = await fsp.readFile(file);
  const r = await run(['clevis', 'decrypt'], { input, env, timeoutMs: opts.timeoutMs ?? 20000 });
  const text = r.stdout.toString('utf8');
  const ok = r.code === 0 && HEX64.test(text.replace(/\n$/, ''));
  return { ok, secret: ok ? text.replace(/\n$/, '') : null, ...r };
}

// ---- systemd-creds ---------------------------------------------------------

// A throwaway host key for systemd-creds: the path to give as
// SYSTEMD_CREDENTIAL_SECRET (which systemd-creds 252 honours in place of
// /var/lib/systemd/credential.secret). `systemd-creds setup` creates it
// (4096 bytes, mode 0400). Use it in env for both encrypt and decrypt.
export async function credsHostKey() {
  const d = await tempDir('p11vault-credkey-');
  const secret = path.join(d, 'credential.secret');
  const r = await run(['systemd-creds', 'setup'], { env: { ...process.env, SYSTEMD_CREDENTIAL_SECRET: secret } });
  if (r.code !== 0) throw new Error(`systemd-creds setup failed (${r.code}): ${r.stderr.trim()}`);
  return secret;
}

// systemd-creds encrypt --with-key=KEY --name=NAME - FILE with secretHex + "\n"
// on stdin. opts: name (default p11vault-unseal), withKey (default host),
// hostKey (a SYSTEMD_CREDENTIAL_SECRET path), notAfter, env. Always pass the
// name: without --name the output file's basename is embedded instead.
export async function credsEncrypt(secretHex, file, opts = {}) {
  checkHex(secretHex);
  const env = { ...(opts.env ?? process.env) };
  if (opts.hostKey) env.SYSTEMD_CREDENTIAL_SECRET = opts.hostKey;
  const argv = ['systemd-creds', 'encrypt', `--with-key=${opts.withKey ?? 'host'}`,
    `--name=${opts.name ?? UNSEAL_CRED_NAME}`];
  if (opts.notAfter) argv.push(`--not-after=${opts.notAfter}`);
  argv.push('-', file);
  const r = await run(argv, { input: `${secretHex}\n`, env });
  if (r.code !== 0) throw new Error(`systemd-creds encrypt failed (${r.code}): ${r.stderr.trim()}`);
  await fsp.chmod(file, 0o600);
  return file;
}

// systemd-creds decrypt --name=NAME FILE - as the token process will.
// -> {ok, secret, code, signal, stdout, stderr, ms, timedOut}; never throws on
// a failed decrypt.
export async function credsDecrypt(file, opts = {}) {
  const env = { ...(opts.env ?? process.env) };
  if (opts.hostKey) env.SYSTEMD_CREDENTIAL_SECRET = opts.hostKey;
  const r = await run(['systemd-creds', 'decrypt', `--name=${opts.name ?? UNSEAL_CRED_NAME}`, file, '-'],
    { env, timeoutMs: opts.timeoutMs ?? 10000 });
  const text = r.stdout.toString('utf8');
  const ok = r.code === 0 && HEX64.test(text.replace(/\n$/, ''));
  return { ok, secret: ok ? text.replace(/\n$/, '') : null, ...r };
}

// The key type of an encrypted credential file: its first 16 bytes (after
// base64) are an id that names the key(s) it was sealed with. 'null' means
// no confidentiality at all (--with-key=tpm2-absent, or auto-initrd without
// a TPM) and systemd-creds 252 still decrypts it, with only a warning.
const CRED_KEY_IDS = {
  '5a1c6a86df9d4096b1d5a65e0862f19a': 'host',
  '0c7cc07b117645919c4b0bea08bc20fe': 'tpm2',
  'faf7eb9341e3412ca1a436f95a29362f': 'tpm2-with-public-key',
  '93a894094874449090caf2fc93cab553': 'host+tpm2',
  'af4950a849134eb1a73846304ff30c05': 'host+tpm2-with-public-key',
  '058469daf6f54324800549da0f8ea2fb': 'null',
};
export function credKeyType(file) {
  const raw = Buffer.from(fs.readFileSync(file, 'utf8').replace(/\s+/g, ''), 'base64');
  if (raw.length < 16) return null;
  return CRED_KEY_IDS[raw.subarray(0, 16).toString('hex')] ?? 'unknown';
}
