// The previous version's data directory (tests/fixtures/v3-datadir/, made by
// git commit 8d9070f with tests/fixtures/make-v3-datadir.sh): legacyCopy()
// puts a usable copy of it in a directory of the test's own.
//
// The fixture is init's data directory minus tls/ (and SQLite's empty
// -wal/-shm): p11vault.conf, softhsm2.conf, vault.db, blobs-bound,
// admin.json, hsm/{user,so}.pin, tokens/ (the SoftHSMv2 token) and
// audit/audit.log. Its keys (v3-datadir.keys.json, one entry per version):
// rsa1 (RSA-2048, two versions), ec1 (P-256), kek1 (RSA-2048, key_ops
// [import]) and byok1 (RSA-2048, imported as a BYOK blob for kek1).

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures');
export const LEGACY_FIXTURE = path.join(FIXTURES, 'v3-datadir');
export const LEGACY_KEYS = path.join(FIXTURES, 'v3-datadir.keys.json');
export const LEGACY_COMMIT = '8d9070f';

// key=value lines, as vault/config.c writes them
function confGet(text, key) {
  const m = new RegExp(`^${key}=(.*)$`, 'm').exec(text);
  return m ? m[1] : null;
}
function confSet(text, key, value) {
  const re = new RegExp(`^${key}=.*$`, 'm');
  return re.test(text) ? text.replace(re, `${key}=${value}`) : `${text.replace(/\n?$/, '\n')}${key}=${value}\n`;
}

async function fixModes(p) {
  const st = await fsp.lstat(p);
  if (st.isDirectory()) {
    await fsp.chmod(p, 0o700);
    for (const e of await fsp.readdir(p)) await fixModes(path.join(p, e));
  } else if (st.isFile()) {
    await fsp.chmod(p, 0o600);
  }
}

// tls/{ca.pem,server.pem,server-key.pem} as init would have made them (EC
// P-256 server key; SAN DNS:localhost, IP:127.0.0.1 and the URL's host),
// the server certificate issued by ca ({cert, key}: PEM file paths); with
// no ca, a CA of its own in tls/ (with tls/ca-key.pem, as init without
// --tls-ca-cert leaves it).
async function issueTls(dir, host, ca) {
  const tls = path.join(dir, 'tls');
  await fsp.mkdir(tls, { recursive: true, mode: 0o700 });
  if (!ca) {
    ca = { cert: path.join(tls, 'ca.pem'), key: path.join(tls, 'ca-key.pem') };
    await execFileP('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
      '-nodes', '-keyout', ca.key, '-out', ca.cert, '-days', '2', '-subj', '/O=p11vault/CN=p11vault CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  } else {
    await fsp.copyFile(ca.cert, path.join(tls, 'ca.pem'));
  }
  const isIp = /^[0-9.]+$|:/.test(host);
  const san = ['DNS:localhost', 'IP:127.0.0.1'];
  if (host !== 'localhost' && host !== '127.0.0.1') san.push(`${isIp ? 'IP' : 'DNS'}:${host}`);
  await execFileP('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
    '-nodes', '-keyout', path.join(tls, 'server-key.pem'), '-out', path.join(tls, 'server.pem'),
    '-days', '2', '-subj', `/O=p11vault/CN=${host}`, '-CA', ca.cert, '-CAkey', ca.key,
    '-addext', 'basicConstraints=critical,CA:FALSE',
    '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment',
    '-addext', 'extendedKeyUsage=serverAuth', '-addext', `subjectAltName=${san.join(',')}`]);
}

// legacyCopy(destDir, {url, ca, tls}) -> {dir, keys, url, tenantId, admin, tokenLabel, commit}
//   Copies the fixture to destDir (made if missing; it should be empty),
//   rewrites the absolute paths init wrote (p11vault.conf softhsm_conf,
//   softhsm2.conf directories.tokendir) for destDir, sets the modes the
//   vault expects (0700 dirs, 0600 files) and, unless tls is false, issues
//   tls/ so that `serve` starts.
//   url: a vault URL (https://127.0.0.1:PORT) to put in p11vault.conf as
//     vault_url and listen (default: the fixture's, https://127.0.0.1:18443;
//     `serve --listen` overrides listen either way, but the token issuer and
//     the key ids follow vault_url).
//   ca: {cert, key} PEM paths of the CA to issue the server certificate
//     with: pass the test CA (testCa() of vault.mjs) so that the SDK trusts
//     it. Default: P11VAULT_TEST_CA_CERT/KEY if set, else a CA of its own.
//   keys: the recorded versions, [{name, version, kid, kty, key_ops, jwk}],
//     the kids as the fixture's vault_url wrote them.
export async function legacyCopy(destDir, { url, ca, tls = true } = {}) {
  await fsp.mkdir(destDir, { recursive: true, mode: 0o700 });
  await fsp.cp(LEGACY_FIXTURE, destDir, { recursive: true, errorOnExist: true, force: false });
  const dir = await fsp.realpath(destDir);

  const confPath = path.join(dir, 'p11vault.conf');
  let conf = await fsp.readFile(confPath, 'utf8');
  conf = confSet(conf, 'softhsm_conf', path.join(dir, 'softhsm2.conf'));
  if (url) {
    const u = new URL(url);
    if (u.protocol !== 'https:' || !u.port) throw new Error(`legacyCopy: url must be https://HOST:PORT, not ${url}`);
    conf = confSet(conf, 'vault_url', `https://${u.host}`);
    conf = confSet(conf, 'listen', `${u.hostname.replace(/^\[|\]$/g, '')}:${u.port}`);
    const adminPath = path.join(dir, 'admin.json');
    const admin = JSON.parse(await fsp.readFile(adminPath, 'utf8'));
    admin.vaultUrl = `https://${u.host}`;
    await fsp.writeFile(adminPath, JSON.stringify(admin, null, 2));
  }
  await fsp.writeFile(confPath, conf);
  const shPath = path.join(dir, 'softhsm2.conf');
  const sh = await fsp.readFile(shPath, 'utf8');
  await fsp.writeFile(shPath, sh.replace(/^directories\.tokendir\s*=.*$/m,
    `directories.tokendir = ${path.join(dir, 'tokens')}`));

  const vaultUrl = confGet(conf, 'vault_url');
  if (tls) {
    if (!ca && process.env.P11VAULT_TEST_CA_CERT && process.env.P11VAULT_TEST_CA_KEY) {
      ca = { cert: process.env.P11VAULT_TEST_CA_CERT, key: process.env.P11VAULT_TEST_CA_KEY };
    }
    await issueTls(dir, new URL(vaultUrl).hostname.replace(/^\[|\]$/g, ''), ca);
  }
  await fixModes(dir);

  const keys = JSON.parse(await fsp.readFile(LEGACY_KEYS, 'utf8')).keys;
  return {
    dir,
    keys,
    url: vaultUrl,
    tenantId: confGet(conf, 'tenant_id'),
    tokenLabel: confGet(conf, 'token_label'),
    admin: JSON.parse(await fsp.readFile(path.join(dir, 'admin.json'), 'utf8')),
    commit: LEGACY_COMMIT,
  };
}

// A fresh temp dir under os.tmpdir() holding a legacyCopy(); remove() deletes it.
export async function legacyTempCopy(opts) {
  const parent = await fsp.mkdtemp(path.join(os.tmpdir(), 'p11vault-legacy-'));
  const r = await legacyCopy(path.join(parent, 'data'), opts);
  r.remove = () => fsp.rm(parent, { recursive: true, force: true });
  return r;
}

export function legacyFixturePresent() {
  return fs.existsSync(path.join(LEGACY_FIXTURE, 'p11vault.conf')) && fs.existsSync(LEGACY_KEYS);
}
