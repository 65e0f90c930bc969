// The audit log: exactly one JSON line per request (token issue, data
// plane, management; allowed or denied) with the agreed fields; the hash
// chain that `p11vault audit verify` checks (and that breaks, naming the
// line, when one byte of a past line changes, also across a rotated file);
// and planted secrets — an identity's client secret, a DEK sent to
// wrapkey, access tokens — never reach the audit log, the server's
// stdout/stderr or any file of the data directory.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startVault, stopVault, raw, token, tokenRequest, p11vault, keyName, API_VERSION } from './lib/vault.mjs';
import { auditLines, createIdentity, badSignature } from './lib/identity.mjs';
import { filesUnder, findNeedles } from './lib/util.mjs';

const FIELDS = ['prev', 'time', 'requestId', 'callerOid', 'callerAppId', 'clientAddress', 'operation', 'keyId', 'httpStatus', 'result', 'durationMs'];

describe('audit log', { timeout: 120000 }, () => {
  let v;
  let adminTok;
  let id;
  let idTok;
  let key;
  const dek = crypto.randomBytes(32);

  before(async () => {
    v = await startVault();
    adminTok = await token(v);
    key = keyName('aud');
    const k = await raw(v, 'POST', `/keys/${key}/create?api-version=${API_VERSION}`, { token: adminTok, body: { kty: 'RSA', key_size: 2048 } });
    assert.equal(k.status, 200, k.text);
    id = await createIdentity(v, adminTok, 'audited', ['get', 'wrapKey', 'unwrapKey']);
    idTok = await token(v, id);
  });
  after(async () => { await stopVault(v); });

  // Runs fn (one request) and returns [response, its one final audit
  // line]. A state change has one more line before it, its "Started"
  // line (httpStatus 0, the same request id), synced before anything
  // changed.
  async function one(fn) {
    const n = auditLines(v).length;
    const r = await fn();
    const lines = auditLines(v);
    const added = lines.slice(n);
    const started = added.filter((l) => l.result === 'Started');
    assert.equal(added.length - started.length, 1, `exactly one final audit line for the request (got ${added.length - started.length})`);
    const line = lines[lines.length - 1];
    assert.notEqual(line.result, 'Started', 'the final line comes last');
    assert.ok(started.length <= 1, 'at most one Started line');
    for (const s of started) {
      assert.equal(s.requestId, line.requestId, 'the Started line is the same request\'s');
      assert.equal(s.httpStatus, 0);
    }
    for (const f of FIELDS) assert.ok(f in line, `field ${f}`);
    assert.match(line.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(line.httpStatus, r.status);
    if (r.headers['x-ms-request-id']) assert.equal(line.requestId, r.headers['x-ms-request-id'], 'request id matches the response');
    assert.match(line.clientAddress, /127\.0\.0\.1/);
    assert.equal(typeof line.durationMs, 'number');
    return [r, line];
  }

  test('one line per request, with caller, operation, key id, status and result — allowed and denied, all planes', async () => {
    const kp = `/keys/${key}`;
    let [r, l] = await one(() => tokenRequest(v, { clientId: id.clientId, clientSecret: id.clientSecret }));
    assert.equal(r.status, 200);
    assert.equal(l.operation, 'TokenIssue');
    assert.equal(l.callerOid, id.objectId);
    assert.equal(l.callerAppId, id.clientId);
    assert.equal(l.result, 'Success');

    [r, l] = await one(() => tokenRequest(v, { clientId: id.clientId, clientSecret: 'wrong' }));
    assert.equal(r.status, 401);
    assert.equal(l.operation, 'TokenIssue');
    assert.equal(l.result, 'Unauthorized');

    [r, l] = await one(() => raw(v, 'POST', `${kp}/wrapkey?api-version=${API_VERSION}`, { token: idTok, body: { alg: 'RSA-OAEP-256', value: dek.toString('base64url') } }));
    assert.equal(r.status, 200);
    assert.equal(l.operation, 'wrapKey');
    assert.equal(l.callerOid, id.objectId);
    assert.match(l.keyId, new RegExp(`/keys/${key}/[0-9a-f]{32}$`));
    assert.equal(l.result, 'Success');
    const wrapped = r.json.value;

    [r, l] = await one(() => raw(v, 'POST', `${kp}/unwrapkey?api-version=${API_VERSION}`, { token: idTok, body: { alg: 'RSA-OAEP-256', value: wrapped } }));
    assert.equal(r.status, 200);
    assert.equal(l.operation, 'unwrapKey');

    [r, l] = await one(() => raw(v, 'POST', `${kp}/sign?api-version=${API_VERSION}`, { token: idTok, body: { alg: 'RS256', value: crypto.randomBytes(32).toString('base64url') } }));
    assert.equal(r.status, 403);
    assert.equal(l.operation, 'sign');
    assert.equal(l.result, 'Forbidden');
    assert.equal(l.callerOid, id.objectId);
    assert.match(l.keyId, new RegExp(`/keys/${key}$`));

    [r, l] = await one(() => raw(v, 'GET', `${kp}?api-version=${API_VERSION}`, { token: badSignature(idTok) }));
    assert.equal(r.status, 401);
    assert.equal(l.result, 'Unauthorized');
    assert.equal(l.callerOid, '');
    assert.equal(l.path, kp, 'an unauthenticated request still says what it asked for');

    [r, l] = await one(() => raw(v, 'GET', '/admin/identities', { token: idTok }));
    assert.equal(r.status, 403);
    assert.equal(l.result, 'Forbidden');
    assert.equal(l.callerOid, id.objectId);

    [r, l] = await one(() => raw(v, 'PUT', '/admin/vault/accessPolicies/add', {
      token: adminTok,
      body: { properties: { accessPolicies: [{ tenantId: v.admin.tenantId, objectId: id.objectId, permissions: { keys: ['list'] } }] } },
    }));
    assert.equal(r.status, 200);
    assert.equal(l.operation, 'VaultAccessPolicyUpdate');
    assert.equal(l.callerOid, v.admin.objectId);

    [r, l] = await one(() => raw(v, 'GET', '/healthz'));
    assert.equal(r.status, 200);

    // a key id made of bytes that are not UTF-8 still gets its line
    [r, l] = await one(() => raw(v, 'POST', `${kp}/%ff%fe/wrapkey?api-version=${API_VERSION}`, { token: idTok, body: { alg: 'RSA-OAEP-256', value: dek.toString('base64url') } }));
    assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
  });

  test('the SDK-sized burst: N concurrent requests give exactly N lines and an intact chain', async () => {
    const n = auditLines(v).length;
    await Promise.all(Array.from({ length: 24 }, () => raw(v, 'GET', `/keys/${key}?api-version=${API_VERSION}`, { token: idTok })));
    assert.equal(auditLines(v).length, n + 24);
    const ok = await p11vault(['audit', 'verify', '--data', v.dir]);
    assert.equal(ok.code, 0, ok.stderr);
  });

  test('audit verify passes, then fails naming the line after one byte of a past line is changed', async () => {
    const ok = await p11vault(['audit', 'verify', '--data', v.dir]);
    assert.equal(ok.code, 0, ok.stderr);
    const file = path.join(v.dir, 'audit', 'audit.log');
    const text = fs.readFileSync(file, 'utf8');
    const lines = text.split('\n');
    const target = 3;                      // 0-based: the 4th line
    const col = lines[target].indexOf('"httpStatus":') + '"httpStatus":'.length;
    const offset = lines.slice(0, target).reduce((s, l) => s + Buffer.byteLength(l) + 1, 0) + col;
    const fd = fs.openSync(file, 'r+');
    try {
      const b = Buffer.alloc(1);
      fs.readSync(fd, b, 0, 1, offset);
      const orig = b[0];
      b[0] = orig === 0x32 ? 0x33 : 0x32;  // 200 -> 300, or 4xx -> 2xx
      fs.writeSync(fd, b, 0, 1, offset);
      const bad = await p11vault(['audit', 'verify', '--data', v.dir]);
      assert.notEqual(bad.code, 0, 'verify fails');
      // the chain breaks where the next line's "prev" no longer matches
      assert.match(bad.stderr, new RegExp(`audit\\.log:${target + 2}\\b`), bad.stderr);
      b[0] = orig;
      fs.writeSync(fd, b, 0, 1, offset);
    } finally {
      fs.closeSync(fd);
    }
    const again = await p11vault(['audit', 'verify', '--data', v.dir]);
    assert.equal(again.code, 0, `restored: ${again.stderr}`);
  });

  test('a deleted line is caught too (verify names where the chain breaks)', async () => {
    const file = path.join(v.dir, 'audit', 'audit.log');
    const orig = fs.readFileSync(file);
    const lines = orig.toString('utf8').split('\n');
    try {
      const noSecond = [lines[0], ...lines.slice(2)].join('\n');
      fs.writeFileSync(file, noSecond);
      const bad = await p11vault(['audit', 'verify', '--data', v.dir]);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /audit\.log:2\b/);
    } finally {
      // the server appends through O_APPEND on the same inode: restore in place
      fs.writeFileSync(file, orig);
    }
    assert.equal((await p11vault(['audit', 'verify', '--data', v.dir])).code, 0);
  });

  test('rotation: the chain carries from the rotated file into the new one; verify checks both, naming the file', async () => {
    await v.stop();
    const dir = path.join(v.dir, 'audit');
    fs.renameSync(path.join(dir, 'audit.log'), path.join(dir, 'audit.log.1'));   // as the size rotation does
    await v.start();
    const r = await raw(v, 'GET', `/keys/${key}?api-version=${API_VERSION}`, { token: idTok });
    assert.equal(r.status, 200);
    const first = auditLines(v)[0];
    const rotated = fs.readFileSync(path.join(dir, 'audit.log.1'), 'utf8').split('\n').filter(Boolean);
    assert.equal(first.prev, crypto.createHash('sha256').update(rotated[rotated.length - 1]).digest('hex'), 'the new file continues the chain');
    const ok = await p11vault(['audit', 'verify', '--data', v.dir]);
    assert.equal(ok.code, 0, ok.stderr);
    const f1 = path.join(dir, 'audit.log.1');
    const orig = fs.readFileSync(f1);
    const changed = Buffer.from(orig);
    const i = changed.indexOf('"operation":"') + 13;
    changed[i] = changed[i] === 0x58 ? 0x59 : 0x58;
    fs.writeFileSync(f1, changed);
    const bad = await p11vault(['audit', 'verify', '--data', v.dir]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /audit\.log\.1:\d+/);
    fs.writeFileSync(f1, orig);
    assert.equal((await p11vault(['audit', 'verify', '--data', v.dir])).code, 0);
  });

  test('planted secrets (client secret, DEK sent to wrapkey, access tokens) appear nowhere: audit log, server stdout/stderr, data directory', async () => {
    // the secret travels in a token request, the token in Authorization
    // headers (valid and forged), the DEK in wrapkey and out of unwrapkey
    const w = await raw(v, 'POST', `/keys/${key}/wrapkey?api-version=${API_VERSION}`, { token: idTok, body: { alg: 'RSA-OAEP-256', value: dek.toString('base64url') } });
    assert.equal(w.status, 200);
    const u = await raw(v, 'POST', `/keys/${key}/unwrapkey?api-version=${API_VERSION}`, { token: idTok, body: { alg: 'RSA-OAEP-256', value: w.json.value } });
    assert.equal(u.status, 200);
    await raw(v, 'POST', `/keys/${key}/wrapkey?api-version=${API_VERSION}`, { token: badSignature(idTok), body: { alg: 'RSA-OAEP-256', value: dek.toString('base64url') } });
    await raw(v, 'POST', `/keys/${key}/encrypt?api-version=${API_VERSION}`, { token: idTok, body: { alg: 'RSA-OAEP-256', value: dek.toString('base64url') } });
    await tokenRequest(v, { clientId: id.clientId, clientSecret: id.clientSecret });
    await tokenRequest(v, { clientId: id.clientId, clientSecret: `${id.clientSecret}x` });
    await tokenRequest(v, { clientId: v.admin.clientId, clientSecret: v.admin.clientSecret });
    await v.stop();      // flush everything; also the shutdown path's output
    const sig = idTok.split('.')[2];
    const needles = {
      'client secret': Buffer.from(id.clientSecret),
      'admin secret': Buffer.from(v.admin.clientSecret),
      'access token': Buffer.from(idTok),
      'access token signature': Buffer.from(sig),
      'admin token signature': Buffer.from(adminTok.split('.')[2]),
      'DEK (raw)': dek,
      'DEK (base64url)': Buffer.from(dek.toString('base64url')),
      'DEK (base64)': Buffer.from(dek.toString('base64')),
      'DEK (hex)': Buffer.from(dek.toString('hex')),
    };
    const places = [['server stdout', Buffer.from(v.stdout)], ['server stderr', Buffer.from(v.stderr)]];
    for (const f of filesUnder(v.dir)) {
      // admin.json holds the admin credential by design (0600), nothing else may
      if (path.basename(f) === 'admin.json') continue;
      places.push([path.relative(v.dir, f), fs.readFileSync(f)]);
    }
    assert.ok(places.some(([n]) => n.startsWith('audit')), 'the audit log was searched');
    const found = findNeedles(places, Object.entries(needles));
    assert.deepEqual(found, []);
    await v.start();
  });

  test('size rotation: with audit_max_bytes= in p11vault.conf the server rotates audit.log by itself, and the chain verifies across the files', async () => {
    await v.stop();
    const confPath = path.join(v.dir, 'p11vault.conf');
    fs.writeFileSync(confPath, fs.readFileSync(confPath, 'utf8').replace(/\n?$/, '\naudit_max_bytes=4096\n'));
    await v.start();
    const dir = path.join(v.dir, 'audit');
    const before = fs.readdirSync(dir).filter((f) => /^audit\.log\.\d+$/.test(f)).length;
    for (let i = 0; i < 40; i += 1) {
      await raw(v, 'GET', '/healthz');
    }
    const rotated = fs.readdirSync(dir).filter((f) => /^audit\.log\.\d+$/.test(f));
    assert.ok(rotated.length >= before + 2, `audit.log rotated by size (${before} -> ${rotated.length} rotated files)`);
    // the first file rotated in this test holds the log of the tests before
    // it; every later one was cut at the limit (one line may cross it)
    for (const f of rotated.filter((n) => Number(n.split('.').pop()) > before + 1)) {
      assert.ok(fs.statSync(path.join(dir, f)).size < 4096 + 2048, `${f} stays near the limit`);
    }
    const vr = await p11vault(['audit', 'verify', '--data', v.dir]);
    assert.equal(vr.code, 0, vr.stdout + vr.stderr);
  });
});
