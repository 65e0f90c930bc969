// No secret leaves: plants known secrets (client secrets, a DEK sent to
// wrapkey, encrypt/decrypt plaintexts, the PINs, access tokens, a marker in
// malformed requests) and searches the server's stdout/stderr, the audit
// log and every file of the data directory (except admin.json and
// hsm/*.pin, which hold them by design and must be 0600, owner-only) for
// the raw bytes, hex, base64 and base64url forms. Error responses never echo
// request content. The server leaves no core dump.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  startVault, stopVault, raw, token, tokenRequest, keyName, b64u, unb64u, BIN, freePort, sleep,
  tokenPins,
} from './lib/vault.mjs';
import { filesUnder, findNeedles } from './lib/util.mjs';

// The encodings a secret's bytes can take in a file or a log. Base64 is
// searched at all three alignments (a secret inside a longer base64 string).
function forms(label, bytes) {
  const out = [{ label: `${label} (raw)`, needle: Buffer.from(bytes) }];
  const hex = Buffer.from(bytes).toString('hex');
  out.push({ label: `${label} (hex)`, needle: Buffer.from(hex) });
  out.push({ label: `${label} (HEX)`, needle: Buffer.from(hex.toUpperCase()) });
  for (const enc of ['base64', 'base64url']) {
    for (let o = 0; o < 3; o++) {
      const s = Buffer.concat([Buffer.alloc(o), Buffer.from(bytes)]).toString(enc).replace(/=+$/, '');
      const skip = [0, 2, 3][o];
      const core = s.slice(skip, s.length - 4);
      if (core.length >= 12) out.push({ label: `${label} (${enc}, offset ${o})`, needle: Buffer.from(core) });
    }
  }
  return out;
}

describe('no secret leaves the server', { timeout: 120000 }, () => {
  let v;
  const secrets = [];          // {label, bytes}
  const marker = `PLANTED${crypto.randomBytes(18).toString('hex')}`;
  const errorResponses = [];   // {what, status, text, headers}
  let keyId;

  const plant = (label, bytes) => secrets.push({ label, bytes: Buffer.from(bytes) });

  before(async () => {
    v = await startVault();
    plant('admin client secret', v.admin.clientSecret);
    const pins = tokenPins(v);
    plant('user PIN', pins.user);
    plant('SO PIN', pins.so);
    plant('unseal secret', pins.secret.toString('hex'));
    for (const [i, sh] of v.init.unsealKeyShares.entries()) plant(`unseal key share ${i + 1}`, sh);
    const adminTok = await token(v);
    plant('admin access token', adminTok);
    plant('admin access token signature', adminTok.split('.')[2]);

    // a second identity: its secret and its token
    const id = await raw(v, 'POST', '/admin/identities', { token: adminTok, body: { displayName: 'secrets-app' } });
    assert.ok(id.status === 200 || id.status === 201, id.text);
    plant('app client secret', id.json.clientSecret);
    const pol = await raw(v, 'PUT', '/admin/vault/accessPolicies/add', {
      token: adminTok,
      body: { properties: { accessPolicies: [{ tenantId: v.admin.tenantId, objectId: id.json.objectId, permissions: { keys: ['get', 'wrapKey', 'unwrapKey', 'encrypt', 'decrypt'] } }] } },
    });
    assert.equal(pol.status, 200, pol.text);
    const appTok = await token(v, { clientId: id.json.clientId, clientSecret: id.json.clientSecret, tenantId: v.admin.tenantId });
    plant('app access token', appTok);
    plant('app access token signature', appTok.split('.')[2]);
    // a wrong secret for a real client id: must not be logged either
    const wrongSecret = `wrong-${crypto.randomBytes(20).toString('hex')}`;
    plant('wrong client secret', wrongSecret);
    const bad = await tokenRequest(v, { clientId: id.json.clientId, clientSecret: wrongSecret });
    assert.equal(bad.status >= 400, true);
    errorResponses.push({ what: 'token with a wrong secret', ...bad });

    // key material in use: a DEK wrapped and unwrapped, a plaintext encrypted and decrypted
    const name = keyName('secrets');
    const k = await raw(v, 'POST', `/keys/${name}/create`, { apiVersion: true, token: adminTok, body: { kty: 'RSA', key_size: 2048 } });
    assert.equal(k.status, 200, k.text);
    keyId = `/keys/${name}/${k.json.key.kid.split('/').pop()}`;
    const dek = crypto.randomBytes(32);
    plant('DEK', dek);
    const w = await raw(v, 'POST', `${keyId}/wrapkey`, { apiVersion: true, token: appTok, body: { alg: 'RSA-OAEP-256', value: b64u(dek) } });
    assert.equal(w.status, 200, w.text);
    const u = await raw(v, 'POST', `${keyId}/unwrapkey`, { apiVersion: true, token: appTok, body: { alg: 'RSA-OAEP-256', value: w.json.value } });
    assert.deepEqual(unb64u(u.json.value), dek);
    const pt = crypto.randomBytes(48);
    plant('plaintext', pt);
    const e = await raw(v, 'POST', `${keyId}/encrypt`, { apiVersion: true, token: appTok, body: { alg: 'RSA-OAEP', value: b64u(pt) } });
    assert.equal(e.status, 200, e.text);
    const d = await raw(v, 'POST', `${keyId}/decrypt`, { apiVersion: true, token: appTok, body: { alg: 'RSA-OAEP', value: e.json.value } });
    assert.deepEqual(unb64u(d.json.value), pt);
    // a DEK that only ever travels inside a failing request
    const dek2 = crypto.randomBytes(32);
    plant('DEK of a rejected wrap', dek2);
    errorResponses.push({ what: 'wrap with an unknown alg', ...await raw(v, 'POST', `${keyId}/wrapkey`, { apiVersion: true, token: appTok, body: { alg: 'NOPE', value: b64u(dek2) } }) });

    // malformed requests carrying the marker in every place we can think of
    plant('marker', marker);
    const t = adminTok;
    const bad2 = (what, method, p, opts, okAllowed = false) => raw(v, method, p, { apiVersion: true, token: t, ...opts }).then((r) => errorResponses.push({ what, okAllowed, ...r }));
    await bad2('marker as alg', 'POST', `${keyId}/wrapkey`, { body: { alg: marker, value: b64u(dek) } });
    await bad2('marker as value (not base64)', 'POST', `${keyId}/wrapkey`, { body: { alg: 'RSA-OAEP', value: `${marker}!!*` } });
    await bad2('marker as an unknown field', 'POST', `${keyId}/wrapkey`, { body: { alg: 'RSA-OAEP', value: b64u(dek), [marker]: 1 } }, true);
    await bad2('marker in truncated JSON', 'POST', `${keyId}/wrapkey`, { body: `{"alg":"RSA-OAEP","value":"${marker}` });
    await bad2('marker as the whole body', 'POST', `${keyId}/wrapkey`, { body: marker });
    await bad2('marker after valid JSON', 'POST', `${keyId}/wrapkey`, { body: `{"alg":"RSA-OAEP","value":"AAAA"} ${marker}` });
    await bad2('marker as a bad token', 'POST', `${keyId}/unwrapkey`, { token: marker, body: { alg: 'RSA-OAEP', value: 'AAAA' } });
    await bad2('marker as a forged JWT', 'GET', '/keys', { token: `eyJhbGciOiJFUzI1NiJ9.${b64u(marker)}.${b64u(marker)}` });
    await bad2('marker as kty', 'POST', `/keys/${name}/create`, { body: { kty: marker } });
    await bad2('marker as crv', 'POST', `/keys/${name}/create`, { body: { kty: 'EC', crv: marker } });
    await bad2('marker as a key_op', 'POST', `/keys/${name}/create`, { body: { kty: 'RSA', key_ops: [marker] } });
    await bad2('marker as a tag and enabled', 'PATCH', `/keys/${name}`, { body: { attributes: { enabled: marker } } });
    await bad2('marker as a sign digest', 'POST', `${keyId}/sign`, { body: { alg: 'RS256', value: b64u(marker) } });
    await bad2('marker as an unwrap ciphertext', 'POST', `${keyId}/unwrapkey`, { body: { alg: 'RSA-OAEP', value: b64u(marker) } });
    await bad2('marker as objectId', 'PUT', '/admin/vault/accessPolicies/replace', { body: { properties: { accessPolicies: [{ objectId: marker, permissions: { keys: ['get'] } }] } } });
    await bad2('marker as a permission', 'PUT', '/admin/vault/accessPolicies/replace', { body: { properties: { accessPolicies: [{ objectId: crypto.randomUUID(), permissions: { keys: [marker] } }] } } });
    await bad2('marker as isAdmin', 'POST', '/admin/identities', { body: { displayName: 'x', isAdmin: marker } });
    await bad2('marker as api-version', 'GET', `/keys/${name}?api-version=${marker}`, { apiVersion: false });
    await bad2('marker in a header', 'GET', `/keys/${name}`, { headers: { 'X-Planted': marker, 'User-Agent': marker } }, true);
    for (const [f, val] of [['client_secret', marker], ['grant_type', marker], ['scope', marker], ['client_id', marker]]) {
      const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: id.json.clientId, client_secret: 'x', scope: 'https://vault.azure.net/.default', [f]: val });
      const r = await raw(v, 'POST', `/${v.admin.tenantId}/oauth2/v2.0/token`, { body: form.toString(), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
      errorResponses.push({ what: `token endpoint, marker as ${f}`, ...r });
    }
    const st = await v.stop();
    assert.equal(st?.code, 0, `serve exit ${JSON.stringify(st)}`);
  });
  after(async () => { await stopVault(v); });

  test('responses never echo request content (errors, ignored fields, headers)', () => {
    const leaks = [];
    for (const r of errorResponses) {
      assert.ok(r.okAllowed || r.status >= 400, `${r.what}: expected an error, got ${r.status} ${r.text}`);
      const all = `${r.text}\n${JSON.stringify(r.headers)}`;
      for (const s of secrets) {
        for (const f of forms(s.label, s.bytes)) {
          if (Buffer.from(all).includes(f.needle)) leaks.push(`${r.what} (${r.status}): ${f.label} in ${r.text.slice(0, 200)}`);
        }
      }
    }
    assert.deepEqual(leaks, []);
  });

  test('stdout, stderr, the audit log and every data file hold none of them', () => {
    const exempt = new Set([path.join(v.dir, 'admin.json'), ...fs.readdirSync(path.join(v.dir, 'hsm')).filter((f) => f.endsWith('.pin')).map((f) => path.join(v.dir, 'hsm', f))]);
    const places = [
      ['stdout', Buffer.from(v.stdout)],
      ['stderr', Buffer.from(v.stderr)],
      // init prints the operator key shares once, by design: nothing else
      ['init output', Buffer.from(v.initOutput.replace(/"adminCredential":"[^"]*"/, '').replace(/"unsealKeyShares":\[[^\]]*\]/, ''))],
    ];
    const files = filesUnder(v.dir).filter((f) => !exempt.has(f));
    assert.ok(files.some((f) => f.endsWith('audit.log')), 'the audit log is searched');
    assert.ok(files.some((f) => f.endsWith('vault.db')), 'the database is searched');
    for (const f of files) places.push([path.relative(v.dir, f), fs.readFileSync(f)]);
    const leaks = findNeedles(places, secrets.flatMap((s) => forms(s.label, s.bytes).map((f) => [f.label, f.needle])));
    assert.deepEqual(leaks, [], `searched ${places.length} places for ${secrets.length} secrets`);
    // the audit log did see the traffic (so the search is meaningful)
    const audit = fs.readFileSync(files.find((f) => f.endsWith('audit.log')), 'utf8');
    assert.match(audit, /unwrap/i);
    assert.match(audit, /wrapkey|wrapKey/);
  });

  test('the files that hold secrets are 0600 and owner-only, in 0700 directories', () => {
    const uid = process.getuid();
    const check = (p, want) => {
      const st = fs.statSync(p);
      assert.equal((st.mode & 0o777).toString(8), want.toString(8), `${p} mode`);
      assert.equal(st.uid, uid, `${p} owner`);
    };
    check(path.join(v.dir, 'admin.json'), 0o600);
    check(v.dir, 0o700);
    check(path.join(v.dir, 'hsm'), 0o700);
    const pins = fs.readdirSync(path.join(v.dir, 'hsm')).filter((f) => f.endsWith('.pin'));
    assert.deepEqual(pins, [], 'no PIN file rests in hsm/');
    for (const f of fs.readdirSync(path.join(v.dir, 'hsm'))) check(path.join(v.dir, 'hsm', f), 0o600);
    // the TLS key rests under the unattended method, never in plaintext
    assert.ok(!fs.existsSync(path.join(v.dir, 'tls', 'server-key.pem')), 'no plaintext TLS key');
    check(path.join(v.dir, 'tls', 'server-key.cred'), 0o600);
  });

  test('no core dump: RLIMIT_CORE is 0 inside serve and SIGSEGV/SIGABRT leave no core file', async () => {
    const pattern = fs.readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim();
    for (const sig of ['SIGSEGV', 'SIGABRT']) {
      const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'p11vault-core-'));
      try {
        const port = await freePort();
        const child = spawn('bash', ['-c', 'ulimit -c unlimited; exec "$0" serve --data "$1" --listen "$2"', BIN, v.dir, `127.0.0.1:${port}`],
          { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (d) => { out += d; });
        child.stderr.on('data', () => {});
        const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
        for (let i = 0; i < 200 && !out.includes('listening on'); i++) await sleep(50);
        assert.match(out, /listening on/);
        const limits = fs.readFileSync(`/proc/${child.pid}/limits`, 'utf8');
        const core = /Max core file size\s+(\S+)\s+(\S+)/.exec(limits);
        assert.equal(core[1], '0', `serve's soft core limit (started with ulimit -c unlimited): ${core[0]}`);
        child.kill(sig);
        const how = await exited;
        assert.ok(how.signal || how.code !== 0, `serve died of ${sig}: ${JSON.stringify(how)}`);
        await sleep(300);
        const cores = [...fs.readdirSync(cwd), ...fs.readdirSync(v.dir)].filter((f) => /^core/.test(f));
        assert.deepEqual(cores, [], `core files after ${sig} (core_pattern ${pattern})`);
      } finally {
        fs.rmSync(cwd, { recursive: true, force: true });
      }
    }
  });
});
