// Signed audit checkpoints. Every audit_checkpoint_lines lines (and at
// start and at a clean stop) the writer chains an "audit_checkpoint"
// record: the chain head, the count of lines before it, signed (ES256) by
// the token's audit key "p11vault-audit", whose public key is in
// audit/audit-key.pem. Anyone who can write the file can change a line
// and recompute every later "prev" hash (the plain chain then checks
// out); `audit verify` still catches it, at the checkpoint whose head no
// longer matches, without the token key. An auditor with only the PEM and
// a copy of the files verifies with --public-key; with the oldest rotated
// files archived, verify starts at the oldest file held and says so.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startVault, stopVault, raw, token, p11vault, keyName, API_VERSION } from './lib/vault.mjs';

const sha256 = (s) => crypto.createHash('sha256').update(s).digest('hex');

async function verify(dir, extra = []) {
  const r = await p11vault(['audit', 'verify', '--data', dir, ...extra]);
  let json;
  try { json = JSON.parse(r.stdout.trim().split('\n').pop()); } catch { json = undefined; }
  return { ...r, json };
}

const linesOf = (file) => fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);

// The chain as vault/auditlog.c makes it: each line's "prev" is the
// SHA-256 (hex) of the previous line's bytes without its newline.
function chainHolds(lines, first = '0'.repeat(64)) {
  let prev = first;
  for (const l of lines) {
    if (JSON.parse(l).prev !== prev) return false;
    prev = sha256(l);
  }
  return true;
}

// What an attacker with write access does: change line m, then recompute
// every later "prev" so that the plain chain checks out again.
function rewrite(lines, m, edit) {
  const out = lines.slice();
  out[m] = edit(out[m]);
  for (let i = m + 1; i < out.length; i += 1) {
    out[i] = out[i].replace(/^\{"prev":"[0-9a-f]{64}"/, `{"prev":"${sha256(out[i - 1])}"`);
  }
  return out;
}

function copyAudit(from, to) {
  fs.mkdirSync(path.join(to, 'audit'), { recursive: true });
  for (const f of fs.readdirSync(path.join(from, 'audit'))) {
    if (/^audit\.log(\.\d+)?$/.test(f)) fs.copyFileSync(path.join(from, 'audit', f), path.join(to, 'audit', f));
  }
}

describe('audit log: signed checkpoints', { timeout: 180000 }, () => {
  let v;
  let file;
  let tmp;

  before(async () => {
    v = await startVault();
    await v.stop();
    fs.appendFileSync(path.join(v.dir, 'p11vault.conf'), 'audit_checkpoint_lines=5\n');
    await v.start();
    const tok = await token(v);
    const key = keyName('ckpt');
    assert.equal((await raw(v, 'POST', `/keys/${key}/create?api-version=${API_VERSION}`, { token: tok, body: { kty: 'EC', crv: 'P-256' } })).status, 200);
    for (let i = 0; i < 20; i += 1) {
      assert.equal((await raw(v, 'GET', `/keys/${key}?api-version=${API_VERSION}`, { token: tok })).status, 200);
    }
    await v.stop();
    file = path.join(v.dir, 'audit', 'audit.log');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'p11vault-ckpt-'));
  });
  after(async () => {
    await stopVault(v);
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('checkpoints are written (every 5 lines, at start and at stop), the public key is audit-key.pem (0600, as every file of the data directory), and verify checks them all', async () => {
    const pem = path.join(v.dir, 'audit', 'audit-key.pem');
    assert.equal(fs.statSync(pem).mode & 0o777, 0o600);
    assert.match(fs.readFileSync(pem, 'utf8'), /^-----BEGIN PUBLIC KEY-----/);
    const lines = linesOf(file);
    const cps = lines.map((l, i) => [JSON.parse(l), i]).filter(([o]) => o.event === 'audit_checkpoint');
    assert.ok(cps.length >= 3, `checkpoints: ${cps.length}`);
    for (const [o, i] of cps) {
      assert.equal(o.head, o.prev, 'head is the hash of the line before');
      assert.equal(o.lines, i, 'lines counts the chain before it');
      // the signature checks with the PEM alone, outside the vault
      const msg = `p11vault-audit-checkpoint-v1\n${o.time}\n${o.lines}\n${o.head}\n`;
      const ok = crypto.verify('sha256', Buffer.from(msg), { key: fs.readFileSync(pem), dsaEncoding: 'ieee-p1363' }, Buffer.from(o.sig, 'base64url'));
      assert.ok(ok, `signature of line ${i + 1}`);
    }
    assert.equal(JSON.parse(lines[lines.length - 1]).event, 'audit_checkpoint', 'a clean stop ends with a checkpoint');
    const r = await verify(v.dir);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.json.intact, true);
    assert.equal(r.json.checkpoints, cps.length);
    assert.equal(r.json.lastCheckpoint, `audit.log:${lines.length}`);
    assert.equal(r.json.unsignedTail, 0);
  });

  test('a line changed and every later hash recomputed: the plain chain holds, verify fails at the next checkpoint', async () => {
    const lines = linesOf(file);
    const objs = lines.map((l) => JSON.parse(l));
    const m = objs.findIndex((o, i) => i > 3 && o.method === 'GET' && objs.slice(i + 1).some((p) => p.event === 'audit_checkpoint'));
    assert.ok(m > 0);
    const forged = rewrite(lines, m, (l) => l.replace('"httpStatus":200', '"httpStatus":404').replace('"result":"Success"', '"result":"Failure"'));
    assert.notEqual(forged[m], lines[m]);
    assert.ok(chainHolds(forged), 'the attacker\'s file passes a plain chain check');
    const dir = path.join(tmp, 'forged');
    copyAudit(v.dir, dir);
    fs.copyFileSync(path.join(v.dir, 'audit', 'audit-key.pem'), path.join(dir, 'audit', 'audit-key.pem'));
    fs.writeFileSync(path.join(dir, 'audit', 'audit.log'), forged.join('\n') + '\n');
    const next = objs.findIndex((o, i) => i > m && o.event === 'audit_checkpoint');
    const r = await verify(dir);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(r.json.intact, false);
    assert.equal(r.json.firstBroken, `audit.log:${next + 1}`, 'names the checkpoint line');
    assert.match(r.json.reason, /head/);

    // and the forger who also rewrites the head cannot sign it
    const forged2 = forged.slice();
    forged2[next] = forged2[next].replace(/"head":"[0-9a-f]{64}"/, `"head":"${sha256(forged2[next - 1])}"`);
    const redo = rewrite(forged2, next, (l) => l);
    fs.writeFileSync(path.join(dir, 'audit', 'audit.log'), redo.join('\n') + '\n');
    const r2 = await verify(dir);
    assert.equal(r2.code, 1, r2.stdout + r2.stderr);
    assert.equal(r2.json.firstBroken, `audit.log:${next + 1}`);
    assert.match(r2.json.reason, /signature/);

    // nor drop the checkpoints: with a key, a log without any is refused
    const bare = rewrite(lines.filter((l) => JSON.parse(l).event !== 'audit_checkpoint'), 0,
      (l) => l.replace(/^\{"prev":"[0-9a-f]{64}"/, `{"prev":"${'0'.repeat(64)}"`));
    assert.ok(chainHolds(bare));
    fs.writeFileSync(path.join(dir, 'audit', 'audit.log'), bare.join('\n') + '\n');
    const r3 = await verify(dir);
    assert.equal(r3.code, 1, r3.stdout + r3.stderr);
    assert.match(r3.json.reason, /no signed checkpoint/);
  });

  test('an auditor with only the PEM and a copy of the files verifies with --public-key; another key fails', async () => {
    const dir = path.join(tmp, 'copy');
    copyAudit(v.dir, dir);
    const pem = path.join(tmp, 'vault-audit.pem');
    fs.copyFileSync(path.join(v.dir, 'audit', 'audit-key.pem'), pem);
    assert.ok(!fs.existsSync(path.join(dir, 'audit', 'audit-key.pem')));
    const r = await verify(dir, ['--public-key', pem]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.json.intact, true);
    assert.ok(r.json.checkpoints >= 3);

    const other = path.join(tmp, 'other.pem');
    const { publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    fs.writeFileSync(other, publicKey.export({ type: 'spki', format: 'pem' }));
    const bad = await verify(dir, ['--public-key', other]);
    assert.equal(bad.code, 1, bad.stdout + bad.stderr);
    assert.equal(bad.json.intact, false);

    const none = await verify(dir, ['--public-key', path.join(tmp, 'nope.pem')]);
    assert.equal(none.code, 1);
  });

  test('rotated files archived: verify starts at the oldest file held, anchored by its first checkpoint, and says so', async () => {
    fs.appendFileSync(path.join(v.dir, 'p11vault.conf'), 'audit_max_bytes=3000\n');
    await v.start();
    const tok = await token(v);
    for (let i = 0; i < 40; i += 1) {
      assert.equal((await raw(v, 'GET', `/keys?api-version=${API_VERSION}`, { token: tok })).status, 200);
    }
    await v.stop();
    const rotated = fs.readdirSync(path.join(v.dir, 'audit')).filter((f) => /^audit\.log\.\d+$/.test(f)).sort();
    assert.ok(rotated.length >= 3, `rotated: ${rotated}`);
    const whole = await verify(v.dir);
    assert.equal(whole.code, 0, whole.stdout + whole.stderr);
    assert.equal(whole.json.startsAt, undefined);

    const dir = path.join(tmp, 'archived');
    copyAudit(v.dir, dir);
    fs.rmSync(path.join(dir, 'audit', 'audit.log.1'));
    fs.rmSync(path.join(dir, 'audit', 'audit.log.2'));
    const pem = path.join(v.dir, 'audit', 'audit-key.pem');
    const r = await verify(dir, ['--public-key', pem]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.json.intact, true);
    assert.equal(r.json.startsAt, 'audit.log.3:1');

    // a file missing between held ones is still a break
    fs.rmSync(path.join(dir, 'audit', 'audit.log.4'));
    const gap = await verify(dir, ['--public-key', pem]);
    assert.equal(gap.code, 1, gap.stdout + gap.stderr);
    assert.equal(gap.json.firstBroken, 'audit.log.4 (missing)');
  });
});
