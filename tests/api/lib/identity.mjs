// Helpers for the identity / access-policy / audit suites: identities and
// policies through the management REST API, tokens crafted and signed with
// the vault's own token-signing key (through pkcs11-tool on the test
// vault's SoftHSM token, so the signature is right and only the claim under
// test is wrong), the identity agent as a child process, a small promise
// pool. Owns only test processes; never prints a secret or a token.

import { execFile, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { promisify } from 'node:util';
import { BIN, raw, token, freePort, SOFTHSM_MODULE, tokenPins } from './vault.mjs';
import { httpsRequest } from './util.mjs';

const execFileP = promisify(execFile);

export const ALL_PERMS = ['get', 'list', 'update', 'create', 'import', 'delete', 'recover', 'backup',
  'restore', 'decrypt', 'encrypt', 'unwrapKey', 'wrapKey', 'verify', 'sign', 'purge', 'rotate',
  'getrotationpolicy', 'setrotationpolicy'];

// Runs async fns from `tasks` with at most `n` in flight; results in order.
export async function pool(n, tasks) {
  const out = new Array(tasks.length);
  let next = 0;
  async function worker() {
    while (next < tasks.length) {
      const i = next++;
      out[i] = await tasks[i]();
    }
  }
  await Promise.all(Array.from({ length: Math.min(n, tasks.length) }, worker));
  return out;
}

// POST /admin/identities (+ an access policy when perms is given) -> credential.
export async function createIdentity(v, adminTok, name, perms, { isAdmin = false } = {}) {
  const body = { displayName: name };
  if (isAdmin) body.isAdmin = true;
  const r = await raw(v, 'POST', '/admin/identities', { token: adminTok, body });
  if (r.status !== 201) throw new Error(`POST /admin/identities: ${r.status} ${r.text.slice(0, 300)}`);
  const cred = r.json;
  if (perms && perms.length) await setPolicy(v, adminTok, cred.objectId, perms);
  return cred;
}

export async function setPolicy(v, adminTok, oid, perms, kind = 'replace') {
  const r = await raw(v, 'PUT', `/admin/vault/accessPolicies/${kind}`, {
    token: adminTok,
    body: { properties: { accessPolicies: [{ tenantId: v.admin.tenantId, objectId: oid, permissions: { keys: perms } }] } },
  });
  if (r.status !== 200) throw new Error(`PUT accessPolicies/${kind}: ${r.status} ${r.text.slice(0, 300)}`);
  return r;
}

export function decodeJwt(jwt) {
  const [h, p, s] = jwt.split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), payload: JSON.parse(Buffer.from(p, 'base64url')), sig: s };
}

function conf(v) {
  const out = {};
  for (const line of fs.readFileSync(path.join(v.dir, 'p11vault.conf'), 'utf8').split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

// Signs header.payload with the vault's token-signing key (label
// p11vault-jwt) in the vault's SoftHSM token: raw ECDSA over SHA-256.
async function hsmSign(v, data) {
  const c = conf(v);
  const tmp = fs.mkdtempSync(path.join(v.dir, '..', 'p11vault-sign-'));
  try {
    fs.writeFileSync(path.join(tmp, 'in'), crypto.createHash('sha256').update(data).digest());
    await execFileP('pkcs11-tool', ['--module', c.module || SOFTHSM_MODULE, '--token-label', c.token_label || 'p11vault',
      '--login', '--pin', tokenPins(v).user,
      '--sign', '--mechanism', 'ECDSA', '--label', 'p11vault-jwt',
      '-i', path.join(tmp, 'in'), '-o', path.join(tmp, 'out')],
    // softhsm_conf= is relative to the data directory (new vaults) or absolute
    { env: { ...process.env, SOFTHSM2_CONF: path.resolve(v.dir, c.softhsm_conf || 'softhsm2.conf') } });
    const sig = fs.readFileSync(path.join(tmp, 'out'));
    if (sig.length !== 64) throw new Error(`pkcs11-tool gave a ${sig.length}-byte signature`);
    return sig;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

// A JWT like the vault's own, for `who`, with claims/header overridden,
// correctly signed by the vault's key (unless sign: false).
export async function craftToken(v, who, { claims = {}, header = {} } = {}) {
  const jwks = await raw(v, 'GET', `/${v.admin.tenantId}/discovery/v2.0/keys`);
  const now = Math.floor(Date.now() / 1000);
  const h = { alg: 'ES256', typ: 'JWT', kid: jwks.json.keys[0].kid, ...header };
  const p = {
    iss: `${v.url}/${v.admin.tenantId}/v2.0`, aud: 'https://vault.azure.net', tid: v.admin.tenantId,
    oid: who.objectId, appid: who.clientId, iat: now, nbf: now, exp: now + 3600, jti: crypto.randomUUID(), ...claims,
  };
  const signing = `${Buffer.from(JSON.stringify(h)).toString('base64url')}.${Buffer.from(JSON.stringify(p)).toString('base64url')}`;
  const sig = await hsmSign(v, signing);
  return `${signing}.${sig.toString('base64url')}`;
}

// The same token with one byte of its signature changed.
export function badSignature(jwt) {
  const parts = jwt.split('.');
  const sig = Buffer.from(parts[2], 'base64url');
  sig[10] ^= 0x40;
  return `${parts[0]}.${parts[1]}.${sig.toString('base64url')}`;
}

// alg none, no signature, same claims.
export function algNone(jwt) {
  const parts = jwt.split('.');
  const h = { ...JSON.parse(Buffer.from(parts[0], 'base64url')), alg: 'none' };
  return `${Buffer.from(JSON.stringify(h)).toString('base64url')}.${parts[1]}.`;
}

// The tokens that must all be refused with 401, for `who` (normally an
// administrator, so that only the broken property can be the reason).
export async function refusedTokens(v, who) {
  const good = await token(v, who);
  const now = Math.floor(Date.now() / 1000);
  const otherTenant = crypto.randomUUID();
  const other = await raw(v, 'POST', `/${v.admin.tenantId}/oauth2/v2.0/token`, {
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: who.clientId, client_secret: who.clientSecret, scope: 'https://storage.azure.com/.default' }).toString(),
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
  });
  const t = {
    badSignature: badSignature(good),
    algNone: algNone(good),
    expired: await craftToken(v, who, { claims: { iat: now - 7200, nbf: now - 7200, exp: now - 3600 } }),
    notYetValid: await craftToken(v, who, { claims: { iat: now + 3600, nbf: now + 3600, exp: now + 7200 } }),
    otherAudience: await craftToken(v, who, { claims: { aud: 'https://storage.azure.com' } }),
    otherTenant: await craftToken(v, who, { claims: { tid: otherTenant, iss: `${v.url}/${otherTenant}/v2.0` } }),
  };
  // The vault's own token endpoint issues tokens for other resources; they
  // must be refused on the data plane just the same.
  if (other.status === 200) t.otherAudienceIssued = other.json.access_token;
  return { good, refused: t };
}

// Starts `p11vault identity-agent` for the credential; {port, url, stop(), output()}.
export async function startAgent(v, cred, { port } = {}) {
  port = port || await freePort();
  const file = path.join(v.dir, '..', `p11vault-agent-cred-${process.pid}-${port}.json`);
  fs.writeFileSync(file, JSON.stringify({ ...cred, vaultUrl: v.url }), { mode: 0o600 });
  const child = spawn(BIN, ['identity-agent', '--credential', file, '--listen', `127.0.0.1:${port}`,
    '--vault-url', v.url, '--ca', path.join(v.dir, 'tls', 'ca.pem')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const want = `listening on http://127.0.0.1:${port}`;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`identity-agent did not start: ${out}`)), 15000);
    const check = () => { if (out.includes(want)) { clearTimeout(timer); resolve(); } };
    child.stdout.on('data', check);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`identity-agent exited ${code}: ${out}`)); });
  });
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    output: () => out,
    stop: () => new Promise((resolve) => {
      fs.rmSync(file, { force: true });
      if (child.exitCode !== null || child.signalCode !== null) { resolve(child.exitCode); return; }
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      child.once('exit', (code) => { clearTimeout(timer); resolve(code); });
      child.kill('SIGTERM');
    }),
  };
}

// Lines of DIR/audit/audit.log as parsed objects.
export function auditLines(v, file = 'audit.log') {
  const p = path.join(v.dir, 'audit', file);
  if (!fs.existsSync(p)) return [];
  return fs.readFileSync(p, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

// Like vault.mjs's raw(), but over a keep-alive connection pool per vault
// (a TLS handshake per request makes a thousand-cell matrix slow). Call
// closeKeepAlive(v) when done.
const agents = new Map();
export function rawKA(v, method, p, { body, token: tok, headers = {}, timeoutMs = 30000 } = {}) {
  let agent = agents.get(v);
  if (!agent) {
    agent = new https.Agent({ keepAlive: true, maxSockets: 8, ca: [v.ca.pem, fs.readFileSync(path.join(v.dir, 'tls', 'ca.pem'))] });
    agents.set(v, agent);
  }
  const h = { ...headers };
  let payload;
  if (body !== undefined) {
    payload = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    h['Content-Type'] = h['Content-Type'] || 'application/json';
    h['Content-Length'] = payload.length;
  }
  if (tok) h.Authorization = `Bearer ${tok}`;
  return httpsRequest({ host: '127.0.0.1', port: v.port, method, path: p, headers: h, agent }, payload, timeoutMs);
}

export function closeKeepAlive(v) {
  const a = agents.get(v);
  if (a) a.destroy();
  agents.delete(v);
}
