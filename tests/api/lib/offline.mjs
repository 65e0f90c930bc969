// The offline attack: what a thief holding only a copy of a data directory
// (no running vault, no memory, no credentials) would try.
//
//   blobScan(dir): every 32-byte window of every small file as an AES-256
//     key against every key blob in dir/vault.db.
//   pinScan(dir):  every printable word of every file as the token's USER
//     and SO PIN, through the PKCS#11 module, on a copy of the token.
//
// Neither changes dir: blobScan only reads (vault.db is read from a temp
// copy), pinScan logs in to a temp copy of the token. They compile their C
// halves (tests/tools/blobscan.c, pinscan.c) with cc into temp dirs; they
// need the sqlite3 CLI (Debian package sqlite3), the libssl and p11-kit
// headers (the build's) and pkcs11-tool (opensc).

import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const KWP_IV = Buffer.from('A65959A6', 'hex');
const MAGIC = Buffer.from('P11V');
const HDR = 8;
const HMAC_TAG = 32;
const GCM_IV = 12;
const GCM_TAG = 16;
export const WINDOW_FILE_MAX = 256 * 1024;

// ---------------------------------------------------------------- files

// Every regular file under dir (symlinks not followed): [{rel, abs, size}].
async function walk(dir) {
  const out = [];
  async function rec(d) {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      const abs = path.join(d, e.name);
      if (e.isDirectory()) await rec(abs);
      else if (e.isFile()) out.push({ rel: path.relative(dir, abs), abs, size: (await fsp.stat(abs)).size });
    }
  }
  await rec(dir);
  out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  return out;
}

// ---------------------------------------------------------------- blobs

async function sqlite(db, sql) {
  const { stdout } = await execFileP('sqlite3', ['-json', '-bail', db, sql], { maxBuffer: 256 * 1024 * 1024 });
  return stdout.trim() ? JSON.parse(stdout) : [];
}

const q = (id) => `"${String(id).replace(/"/g, '""')}"`;

// Every BLOB value starting with "P11V" in any column of any table of
// dir/vault.db: [{table, column, rowid, name, version, blob}]. vault.db
// (and a -wal if the copy has one) is copied to a temp dir first, so the
// copy under attack is only read, and a WAL a live copy left is applied.
export async function readBlobs(dir) {
  const src = path.join(dir, 'vault.db');
  if (!fs.existsSync(src)) return [];
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'p11vault-offline-db-'));
  try {
    const db = path.join(tmp, 'vault.db');
    await fsp.copyFile(src, db);
    if (fs.existsSync(src + '-wal')) await fsp.copyFile(src + '-wal', db + '-wal');
    const cols = await sqlite(db, "SELECT m.name AS t, p.name AS c, m.sql LIKE '%WITHOUT ROWID%' AS norowid " +
      "FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' ORDER BY m.name, p.cid");
    const tables = new Map();
    for (const r of cols) {
      if (!tables.has(r.t)) tables.set(r.t, { cols: [], norowid: !!r.norowid });
      tables.get(r.t).cols.push(r.c);
    }
    const parts = [];
    for (const [t, { cols: cs, norowid }] of tables) {
      const lc = cs.map((c) => c.toLowerCase());
      const name = lc.includes('name') ? q(cs[lc.indexOf('name')]) : 'NULL';
      const version = lc.includes('version') ? q(cs[lc.indexOf('version')]) : 'NULL';
      for (const c of cs) {
        parts.push(`SELECT ${sqlStr(t)} AS t, ${sqlStr(c)} AS c, ${norowid ? 'NULL' : 'rowid'} AS r, ` +
          `${name} AS name, ${version} AS version, hex(${q(c)}) AS h FROM ${q(t)} ` +
          `WHERE typeof(${q(c)}) = 'blob' AND substr(${q(c)}, 1, 4) = X'50313156'`);
      }
    }
    if (parts.length === 0) return [];
    const rows = await sqlite(db, parts.join(' UNION ALL '));
    return rows.map((r) => ({
      table: r.t, column: r.c, rowid: r.r, name: r.name, version: r.version != null ? String(r.version) : null,
      blob: Buffer.from(r.h, 'hex'),
    }));
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

function sqlStr(s) {
  return `'${String(s).replace(/'/g, "''")}'`;
}

// The parts of a blob (hsm/hsm_int.h): header "P11V" | version | kty |
// param u16 BE; v1: KWP ciphertext; v2: KWP ciphertext | 32-byte HMAC;
// v3: 12-byte IV | GCM ciphertext (of a KWP ciphertext) | 16-byte tag.
export function parseBlob(b) {
  if (b.length < HDR || !b.subarray(0, 4).equals(MAGIC)) return null;
  const info = { blobVersion: b[4], kty: b[5], param: b.readUInt16BE(6), hdr: b.subarray(0, HDR), len: b.length };
  if (info.blobVersion === 1) info.kwp = b.subarray(HDR);
  else if (info.blobVersion === 2 && b.length > HDR + HMAC_TAG) info.kwp = b.subarray(HDR, b.length - HMAC_TAG);
  else if (info.blobVersion >= 3 && b.length > HDR + GCM_IV + GCM_TAG) {
    info.iv = b.subarray(HDR, HDR + GCM_IV);
    info.ct = b.subarray(HDR + GCM_IV, b.length - GCM_TAG);
    info.tag = b.subarray(b.length - GCM_TAG);
  }
  return info;
}

// ---------------------------------------------------------------- crypto

function kwpUnwrap(key, ct) {
  if (ct.length < 16 || ct.length % 8 !== 0) return null;
  try {
    const d = crypto.createDecipheriv('id-aes256-wrap-pad', key, KWP_IV);
    return Buffer.concat([d.update(ct), d.final()]);
  } catch {
    return null;
  }
}

function gcmOpen(key, iv, ct, tag, aad) {
  try {
    const d = crypto.createDecipheriv('aes-256-gcm', key, iv);
    d.setAAD(aad);
    d.setAuthTag(tag);
    return Buffer.concat([d.update(ct), d.final()]);
  } catch {
    return null;
  }
}

// GCM without its tag is CTR from J0+1 = IV | 00000002: the plaintext under
// key whatever the AAD; only the KWP check inside tells a right key.
function gcmNoTag(key, iv, ct) {
  const c = crypto.createDecipheriv('aes-256-ctr', key, Buffer.concat([iv, Buffer.from([0, 0, 0, 2])]));
  return Buffer.concat([c.update(ct), c.final()]);
}

// A PKCS#8 DER key -> its public JWK, or null if it is not one.
function pkcs8Public(der) {
  try {
    const k = crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    const j = crypto.createPublicKey(k).export({ format: 'jwk' });
    return j.kty === 'RSA' ? { kty: 'RSA', n: j.n, e: j.e } : { kty: j.kty, crv: j.crv, x: j.x, y: j.y };
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- blobScan

// Distinct 32-byte windows of every file <= WINDOW_FILE_MAX under dir, and
// which of them are 32-byte CKA_VALUE attributes in SoftHSMv2's object
// file format (type u64 = 0x11 | kind u64 = 3 (byte string) | length u64 =
// 32 | value): a token's AES-256 key where it keeps it in the clear (a
// public object; private objects' values are encrypted, other lengths).
async function candidates(dir) {
  const seen = new Map();   // latin1 string -> index in windows
  const windows = [];       // {key, file, offset}
  const attrValues = [];    // indexes of windows that are 32-byte attribute values
  const valueAttr = Buffer.from('000000000000001100000000000000030000000000000020', 'hex');
  let files = 0;
  let bytes = 0;
  for (const f of await walk(dir)) {
    if (f.size > WINDOW_FILE_MAX || f.size < 32) continue;
    const buf = await fsp.readFile(f.abs);
    files++;
    bytes += buf.length;
    const s = buf.toString('latin1');
    for (let o = 0; o + 32 <= buf.length; o++) {
      const w = s.slice(o, o + 32);
      if (!seen.has(w)) {
        seen.set(w, windows.length);
        windows.push({ key: buf.subarray(o, o + 32), file: f.rel, offset: o });
      }
    }
    for (let o = buf.indexOf(valueAttr); o >= 0; o = buf.indexOf(valueAttr, o + 1)) {
      const v = o + valueAttr.length;
      if (v + 32 <= buf.length) {
        const i = seen.get(s.slice(v, v + 32));
        if (!attrValues.includes(i)) attrValues.push(i);
      }
    }
  }
  return { windows, attrValues, files, bytes };
}

// blobScan(dir, {exhaustive, engine}) -> {tried, attempts, files, bytes, blobs, opened, ms, engine}
//   tried: distinct candidate keys (32-byte windows); attempts: decryptions
//   tried; blobs: [{table, column, rowid, name, version, blobVersion, kty,
//   param, len}]; opened: [{index (in blobs), ...blob, file, offset, how,
//   pkcs8 (DER Buffer), jwk (public)}] (file
//   and offset: where the key that opened it lies; for the two-key v3
//   attacks domainFile/domainOffset name the domain key).
//   A blob stops being tried once opened, unless exhaustive.
//   engine: 'c' (default; tests/tools/blobscan.c, compiled on the fly, all
//   cores) or 'node' (the same attack in Node's crypto, ~7x slower on RSA
//   blobs: OpenSSL's id-aes256-wrap-pad is slow). Either way every hit is
//   checked again here with Node's crypto.
//
// Per blob version:
//   v1, v2: each window as the AES-KWP key of the KWP part.
//   v3: each window (a) as the GCM key with AAD = the 8-byte header, the
//       plaintext then unwrapped with each candidate domain key; (b) as the
//       KWP key directly on the GCM ciphertext; (c) as the GCM key with the
//       tag ignored (GCM is CTR underneath: no AAD needed), then unwrapped
//       with each candidate domain key. Candidate domain keys: 32-byte
//       CKA_VALUEs in SoftHSM object files (a public token key lies there
//       in the clear) and every window that opened a v1/v2 blob.
//   An opening must also parse as a PKCS#8 private key (a KWP check passing
//   by chance is not an opening).
export async function blobScan(dir, { exhaustive = false, engine = 'c' } = {}) {
  const t0 = Date.now();
  const rows = await readBlobs(dir);
  const { windows, attrValues, files, bytes } = await candidates(dir);
  const parsed = rows.map((r) => ({ row: r, info: parseBlob(r.blob) })).filter((x) => x.info);
  const blobs = parsed.map(({ row, info }) => ({
    table: row.table, column: row.column, rowid: row.rowid, name: row.name, version: row.version,
    blobVersion: info.blobVersion, kty: info.kty, param: info.param, len: info.len,
  }));
  const domainIdx = [...new Set(attrValues)];
  const opened = [];
  const isOpen = new Set();

  // checks a hit with Node's crypto; records it if it is a PKCS#8 key
  const check = (bi, how, wi, di) => {
    if (isOpen.has(bi) && !exhaustive) return true;
    const { info } = parsed[bi];
    const w = windows[wi];
    const d = di >= 0 ? windows[di] : null;
    let pt = null;
    if (how === 'kwp') pt = kwpUnwrap(w.key, info.kwp);
    else if (how === 'kwp-on-gcm-ciphertext') pt = kwpUnwrap(w.key, info.ct);
    else if (how === 'gcm-aad-header+kwp') {
      const inner = gcmOpen(w.key, info.iv, info.ct, info.tag, info.hdr);
      pt = inner && kwpUnwrap(d.key, inner);
    } else if (how === 'gcm-untagged+kwp') pt = kwpUnwrap(d.key, gcmNoTag(w.key, info.iv, info.ct));
    const jwk = pt && pkcs8Public(pt);
    if (!jwk) return false;
    isOpen.add(bi);
    opened.push({ index: bi, ...blobs[bi], file: w.file, offset: w.offset, how, pkcs8: pt, jwk,
      ...(d ? { domainFile: d.file, domainOffset: d.offset } : {}) });
    return true;
  };

  let attempts = 0;
  if (engine === 'c') {
    attempts = await blobScanC(windows, domainIdx, parsed, exhaustive, check);
  } else {
    attempts = blobScanNode(windows, domainIdx, parsed, exhaustive, check);
  }
  opened.sort((a, b) => a.index - b.index);
  return { tried: windows.length, attempts, files, bytes, blobs, opened, ms: Date.now() - t0, engine };
}

let blobscanBin = null;

async function blobScanC(windows, domainIdx, parsed, exhaustive, check) {
  if (!blobscanBin || !fs.existsSync(blobscanBin)) blobscanBin = await compileTool('blobscan', ['-lcrypto', '-lpthread']);
  const u32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; };
  const input = Buffer.concat([
    u32(windows.length), ...windows.map((w) => w.key),
    u32(domainIdx.length), ...domainIdx.map(u32),
    u32(parsed.length), ...parsed.flatMap(({ row }) => [u32(row.blob.length), row.blob]),
  ]);
  const out = await new Promise((resolve, reject) => {
    const child = execFile(blobscanBin, exhaustive ? ['--all'] : [], { maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (e, stdout, stderr) => (e ? reject(new Error(`blobscan: ${e.message} ${stderr}`)) : resolve(stdout)));
    child.stdin.end(input);
  });
  let attempts = 0;
  for (const line of out.trim().split('\n')) {
    const r = JSON.parse(line);
    if (r.attempts !== undefined) attempts = r.attempts;
    else check(r.blob, r.how, r.win, r.dom);
  }
  return attempts;
}

function blobScanNode(windows, domainIdx, parsed, exhaustive, check) {
  let attempts = 0;
  const domains = [...domainIdx];
  // v1/v2 first: the keys that open them join the v3 domain candidates
  parsed.forEach(({ info }, bi) => {
    if (!info.kwp) return;
    for (let wi = 0; wi < windows.length; wi++) {
      attempts++;
      if (kwpUnwrap(windows[wi].key, info.kwp) && check(bi, 'kwp', wi, -1)) {
        if (!domains.includes(wi)) domains.push(wi);
        if (!exhaustive) break;
      }
    }
  });
  parsed.forEach(({ info }, bi) => {
    if (!info.ct) return;
    let done = false;
    const viaDomains = (inner, how, wi) => domains.some((di) => {
      attempts++;
      return kwpUnwrap(windows[di].key, inner) && check(bi, how, wi, di);
    });
    for (let wi = 0; wi < windows.length && (exhaustive || !done); wi++) {
      const w = windows[wi];
      attempts++;
      const g = gcmOpen(w.key, info.iv, info.ct, info.tag, info.hdr);
      if (g && viaDomains(g, 'gcm-aad-header+kwp', wi)) done = true;
      attempts++;
      if (kwpUnwrap(w.key, info.ct) && check(bi, 'kwp-on-gcm-ciphertext', wi, -1)) done = true;
      if (domains.length && viaDomains(gcmNoTag(w.key, info.iv, info.ct), 'gcm-untagged+kwp', wi)) done = true;
    }
  });
  return attempts;
}

// Compiles tests/tools/NAME.c into a temp dir (once per process).
const toolDirs = [];
process.once('exit', () => {
  for (const d of toolDirs) { try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ } }
});
async function compileTool(name, libs, cflags = []) {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `p11vault-${name}-`));
  toolDirs.push(dir);
  const bin = path.join(dir, name);
  try {
    await execFileP(process.env.CC || 'cc', ['-O2', '-std=c11', '-D_GNU_SOURCE', '-Wall', '-Wextra', ...cflags,
      path.join(REPO, 'tests', 'tools', `${name}.c`), ...libs, '-o', bin]);
  } catch (e) {
    throw new Error(`cannot compile tests/tools/${name}.c: ${e.stderr || e.message}`);
  }
  return bin;
}

// ---------------------------------------------------------------- pinScan

let pinscanBin = null;

async function buildPinscan() {
  if (pinscanBin && fs.existsSync(pinscanBin)) return pinscanBin;
  let cflags = ['-I/usr/include/p11-kit-1'];
  try {
    cflags = (await execFileP('pkg-config', ['--cflags', 'p11-kit-1'])).stdout.trim().split(/\s+/).filter(Boolean);
  } catch { /* the Debian path */ }
  pinscanBin = await compileTool('pinscan', ['-ldl'], cflags);
  return pinscanBin;
}

// Candidate PINs: maximal runs of printable non-space ASCII (0x21-0x7e) of
// 4..255 bytes in every file, and every file's whole content trimmed if it
// is 4..255 bytes long; deduplicated, in file order.
export async function pinWords(dir) {
  const words = new Map();   // latin1 string -> {file}
  const add = (w, file) => { if (w.length >= 4 && w.length <= 255 && !words.has(w)) words.set(w, file); };
  for (const f of await walk(dir)) {
    const s = (await fsp.readFile(f.abs)).toString('latin1');
    add(s.trim(), f.rel);
    for (const m of s.matchAll(/[\x21-\x7e]+/g)) add(m[0], f.rel);
  }
  return words;
}

function confValue(text, key) {
  const m = new RegExp(`^${key}=(.*)$`, 'm').exec(text);
  return m ? m[1].trim() : null;
}

async function pkcs11Login(module, label, conf, type, pin) {
  const args = ['--module', module, '--token-label', label, '--login', '--list-objects'];
  // an SO login is refused while a R/O session exists (CKR_SESSION_READ_ONLY_EXISTS)
  if (type === 'so') args.push('--login-type', 'so', '--so-pin', pin, '--session-rw');
  else args.push('--pin', pin);
  try {
    const { stdout } = await execFileP('pkcs11-tool', args, { env: { ...process.env, SOFTHSM2_CONF: conf } });
    return { ok: true, objects: (stdout.match(/^\S.* Object;/gm) || []).length };
  } catch (e) {
    return { ok: false, error: String(e.stderr || e.message).trim().split('\n').pop() };
  }
}

// pinScan(dir, {module, exhaustive}) -> {tried, logins, userPin, soPin, proof, rv, flags, ms}
//   Copies dir to a temp dir, points SOFTHSM2_CONF at a softhsm2.conf for
//   the copy's tokens/, and tries every pinWords() word as USER and SO PIN
//   (tests/tools/pinscan.c, compiled on the fly). A PIN found is proved
//   again with pkcs11-tool (--login [--login-type so --session-rw]
//   --list-objects): proof.{user,so} = {ok, objects (listed), file (where
//   the word was found)}. Stops once both are found, unless exhaustive.
//   SoftHSMv2 2.6 never locks a PIN: a failed C_Login only sets
//   CKF_USER/SO_PIN_COUNT_LOW (written to the copy's token.object; a
//   successful login clears it), so any number of words can be tried.
//   rv: C_Login results by CKR value (0x0 OK, 0xa0 PIN_INCORRECT, 0xa2
//   PIN_LEN_RANGE, 0xa4 PIN_LOCKED); flags: CK_TOKEN_INFO flags before/after.
//   A data directory whose token is not SoftHSMv2 in dir/tokens: tried 0.
export async function pinScan(dir, { module = '/usr/lib/softhsm/libsofthsm2.so', exhaustive = false } = {}) {
  const t0 = Date.now();
  const none = { tried: 0, logins: 0, userPin: null, soPin: null, proof: {}, rv: {}, flags: null };
  const confText = await fsp.readFile(path.join(dir, 'p11vault.conf'), 'utf8').catch(() => '');
  const label = confValue(confText, 'token_label') || 'p11vault';
  if (!fs.existsSync(path.join(dir, 'tokens'))) return { ...none, ms: Date.now() - t0 };
  const words = await pinWords(dir);
  const bin = await buildPinscan();
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'p11vault-pinscan-copy-'));
  try {
    const copy = path.join(tmp, 'data');
    await fsp.cp(dir, copy, { recursive: true });
    const shconf = path.join(tmp, 'softhsm2.conf');
    let sh = await fsp.readFile(path.join(copy, 'softhsm2.conf'), 'utf8').catch(() => 'objectstore.backend = file\n');
    sh = /^directories\.tokendir/m.test(sh)
      ? sh.replace(/^directories\.tokendir\s*=.*$/m, `directories.tokendir = ${path.join(copy, 'tokens')}`)
      : `directories.tokendir = ${path.join(copy, 'tokens')}\n${sh}`;
    await fsp.writeFile(shconf, sh, { mode: 0o600 });

    const list = [...words.keys()];
    const enc = Buffer.concat(list.flatMap((w) => {
      const b = Buffer.from(w, 'latin1');
      const l = Buffer.alloc(2);
      l.writeUInt16BE(b.length);
      return [l, b];
    }));
    const wf = path.join(tmp, 'words');
    await fsp.writeFile(wf, enc, { mode: 0o600 });
    const args = [module, label, wf];
    if (exhaustive) args.push('--all');
    const { stdout } = await execFileP(bin, args, {
      env: { ...process.env, SOFTHSM2_CONF: shconf }, maxBuffer: 1024 * 1024, timeout: 600000,
    }).catch((e) => { throw new Error(`pinscan failed: ${e.stdout || ''}${e.stderr || ''}${e.message}`); });
    const r = JSON.parse(stdout);
    if (r.error) throw new Error(`pinscan: ${r.error} (rv ${r.rv})`);
    const userPin = r.user >= 0 ? list[r.user] : null;
    const soPin = r.so >= 0 ? list[r.so] : null;
    const proof = {};
    if (userPin) proof.user = { ...await pkcs11Login(module, label, shconf, 'user', userPin), file: words.get(userPin) };
    if (soPin) proof.so = { ...await pkcs11Login(module, label, shconf, 'so', soPin), file: words.get(soPin) };
    return {
      tried: r.tried, words: list.length, logins: r.logins, userPin, soPin, proof, rv: r.rv,
      flags: { before: r.flags_before, after: r.flags_after }, ms: Date.now() - t0,
    };
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}
