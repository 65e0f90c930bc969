// The sealed vault (docs/security.md, "At rest"): the token's PINs derive
// from an unseal secret that rests nowhere. Without its unattended method a
// vault starts sealed: key operations 503 "sealed" in Azure's envelope,
// /healthz and /metrics say so; M of N operator key shares unseal it (a
// wrong or repeated share refused, a reset starts over); a restart seals it
// again; `p11vault rekey` issues new shares and the old ones stop working.
// The unattended methods: systemd-creds (host key) and Clevis with a real
// Tang server (tangd behind systemd-socket-activate on loopback); a
// missing or wrong credential, or Tang gone, gives a sealed vault, never a
// half-open one.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  startVault, stopVault, raw, token, keyName, b64u, p11vault, waitFor,
} from './lib/vault.mjs';
import { startTang } from './lib/tang.mjs';

const isSealed503 = (r) => r.status === 503 && r.json?.error?.code === 'ServiceUnavailable' &&
  /sealed/.test(r.json?.error?.message) && Number(r.headers['retry-after']) >= 1;

const unseal = (v, body) => raw(v, 'PUT', '/sys/unseal', { body });
const status = async (v) => (await raw(v, 'GET', '/sys/seal-status')).json;

// p11vault with stdin
function withStdin(args, input) {
  return p11vault(args, { input });
}

describe('a vault with operator key shares and no unattended method', () => {
  let v;
  let shares;
  let kid;
  const name = keyName('sealed');

  before(async () => {
    v = await startVault({ initArgs: ['--auto-unseal', 'none', '--key-shares', '5', '--key-threshold', '3'] });
    shares = v.init.unsealKeyShares;
  });
  after(async () => { await stopVault(v); });

  test('init prints 5 shares once, keeps no PIN file and no unattended credential', () => {
    assert.equal(shares.length, 5);
    assert.equal(new Set(shares).size, 5);
    for (const s of shares) assert.match(s, /^[1-5]-[0-9a-f]{64}$/);
    assert.equal(v.init.unsealThreshold, 3);
    const hsm = fs.readdirSync(path.join(v.dir, 'hsm')).sort();
    assert.deepEqual(hsm, ['seal.conf']);
    const conf = fs.readFileSync(path.join(v.dir, 'hsm', 'seal.conf'), 'utf8');
    for (const s of shares) assert.ok(!conf.includes(s.slice(2)), 'no share in seal.conf');
  });

  test('it starts sealed: /healthz, /sys/seal-status, /metrics say so; a token and key operations are 503 "sealed"', async () => {
    const h = await raw(v, 'GET', '/healthz');
    assert.equal(h.status, 503);
    assert.equal(h.json.status, 'sealed');
    assert.ok(Number(h.headers['retry-after']) >= 1);
    const st = await status(v);
    assert.deepEqual({ sealed: st.sealed, t: st.t, n: st.n, progress: st.progress }, { sealed: true, t: 3, n: 5, progress: 0 });
    const m = await raw(v, 'GET', '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.text, /^p11vault_sealed 1$/m);
    assert.match(m.text, /^p11vault_unseal_shares\{kind="threshold"\} 3$/m);
    const t = await raw(v, 'POST', `/${v.admin.tenantId}/oauth2/v2.0/token`, {
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: v.admin.clientId,
        client_secret: v.admin.clientSecret, scope: 'https://vault.azure.net/.default' }).toString(),
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    assert.ok(isSealed503(t), `token: ${t.status} ${t.text}`);
    const g = await raw(v, 'GET', '/keys', { token: 'x.y.z', apiVersion: true });
    assert.ok(isSealed503(g), `GET /keys: ${g.status} ${g.text}`);
  });

  test('shares one at a time: a wrong one, a repeated one and a malformed one are refused; reset starts over', async () => {
    const wrong = `1-${crypto.randomBytes(32).toString('hex')}`;
    let r = await unseal(v, { key: wrong });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'BadParameter');
    assert.match(r.json.error.message, /not one of this vault's/);
    r = await unseal(v, { key: shares[0] });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual([r.json.sealed, r.json.progress], [true, 1]);
    r = await unseal(v, { key: shares[0] });
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, /already given/);
    r = await unseal(v, { key: 'not a share' });
    assert.equal(r.status, 400);
    r = await unseal(v, { nothing: 1 });
    assert.equal(r.status, 400);
    r = await unseal(v, { key: shares[1] });
    assert.equal(r.json.progress, 2);
    r = await unseal(v, { reset: true });
    assert.equal(r.status, 200);
    assert.equal(r.json.progress, 0);
    assert.equal((await status(v)).sealed, true, 'two shares then a reset: still sealed');
    for (const line of v.stderr.split('\n')) for (const s of [...shares, wrong]) assert.ok(!line.includes(s.slice(2)), 'a share in the server log');
  });

  test('`p11vault unseal` gives M shares (progress shown): unsealed, keys work', async () => {
    for (const [i, s] of [shares[4], shares[2]].entries()) {
      const r = await withStdin(['unseal', '--data', v.dir], `${s}\n`);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`sealed: ${i + 1} of 3 key shares given`));
    }
    const bad = await withStdin(['unseal', '--data', v.dir], `${shares[2]}\n`);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /already given/);
    const last = await withStdin(['unseal', '--data', v.dir], `${shares[1]}\n`);
    assert.equal(last.code, 0, last.stderr);
    assert.match(last.stdout, /^unsealed$/m);
    assert.equal((await raw(v, 'GET', '/healthz')).status, 200);
    const tok = await token(v);
    const c = await raw(v, 'POST', `/keys/${name}/create`, { body: { kty: 'EC', crv: 'P-256' }, token: tok, apiVersion: true });
    assert.equal(c.status, 200, c.text);
    kid = c.json.key.kid;
    const s = await raw(v, 'POST', `/keys/${name}/sign`, { body: { alg: 'ES256', value: b64u(crypto.randomBytes(32)) }, token: tok, apiVersion: true });
    assert.equal(s.status, 200, s.text);
    const m = await raw(v, 'GET', '/metrics', { token: tok });
    assert.match(m.text, /^p11vault_sealed 0$/m);
    assert.equal((await raw(v, 'GET', '/metrics')).status, 401, 'an unsealed vault\'s metrics need a token again');
  });

  test('a restart seals it again: the token from before is refused as "sealed", not served', async () => {
    const tok = await token(v);
    await v.restart();
    assert.equal((await status(v)).sealed, true);
    const s = await raw(v, 'POST', `/keys/${name}/sign`, { body: { alg: 'ES256', value: b64u(crypto.randomBytes(32)) }, token: tok, apiVersion: true });
    assert.ok(isSealed503(s), `${s.status} ${s.text}`);
    for (const sh of shares.slice(0, 3)) await unseal(v, { key: sh });
    assert.equal((await status(v)).sealed, false);
    const s2 = await raw(v, 'POST', `/keys/${name}/sign`, { body: { alg: 'ES256', value: b64u(crypto.randomBytes(32)) }, token: tok, apiVersion: true });
    assert.equal(s2.status, 200, 'the token from before the restart works once unsealed');
  });

  test('rekey (server stopped): refused while it runs; too few shares change nothing; then new shares, the old ones open nothing', async () => {
    const running = await withStdin(['rekey', '--data', v.dir], `${shares[0]}\n${shares[1]}\n${shares[2]}\n`);
    assert.equal(running.code, 1);
    assert.match(running.stderr, /a server is running/);
    assert.equal((await raw(v, 'GET', '/healthz')).status, 200, 'the running vault is untouched');
    await v.stop();
    const few = await withStdin(['rekey', '--data', v.dir, '--key-shares', '3', '--key-threshold', '2'], `${shares[0]}\n${shares[1]}\n`);
    assert.equal(few.code, 1, 'two of three shares do not rekey');
    const ok = await withStdin(['rekey', '--data', v.dir, '--key-shares', '3', '--key-threshold', '2'], `${shares[0]}\n${shares[3]}\n${shares[4]}\n`);
    assert.equal(ok.code, 0, ok.stderr);
    const fresh = JSON.parse(ok.stdout).unsealKeyShares;
    assert.equal(fresh.length, 3);
    for (const f of fresh) assert.ok(!shares.includes(f));
    await v.start();
    assert.deepEqual([(await status(v)).t, (await status(v)).n], [2, 3]);
    for (const old of shares) {
      const r = await unseal(v, { key: old });
      assert.equal(r.status, 400, 'an old share is refused');
    }
    await unseal(v, { key: fresh[2] });
    const r = await unseal(v, { key: fresh[0] });
    assert.equal(r.json.sealed, false);
    const tok = await token(v);
    const g = await raw(v, 'GET', `/keys/${name}`, { token: tok, apiVersion: true });
    assert.equal(g.json.key.kid, kid, 'the same keys');
    const s = await raw(v, 'POST', `/keys/${name}/sign`, { body: { alg: 'ES256', value: b64u(crypto.randomBytes(32)) }, token: tok, apiVersion: true });
    assert.equal(s.status, 200, 'the key made before the rekey signs');
  });
});

describe('systemd-creds (host key): the unattended unseal and its failures', () => {
  let v;
  let other;
  before(async () => {
    v = await startVault();
    other = await startVault({ initArgs: ['--key-shares', '1', '--key-threshold', '1'] });
  });
  after(async () => { await stopVault(v); await stopVault(other); });

  test('a vault with its own CA (no --tls-ca-*): the CA key rests under systemd-creds too, and opens back on this machine', async () => {
    const dir = fs.mkdtempSync(path.join(path.dirname(v.dir), 'p11vault-ownca-'));
    try {
      const r = await p11vault(['init', '--data', path.join(dir, 'v'), '--key-shares', '1', '--key-threshold', '1']);
      assert.equal(r.code, 0, r.stderr);
      const tls = path.join(dir, 'v', 'tls');
      assert.deepEqual(fs.readdirSync(tls).sort(), ['ca-key.cred', 'ca.pem', 'server-key.cred', 'server.pem']);
      const pem = execFileSync('systemd-creds', ['decrypt', '--name=p11vault-tls-ca-key', path.join(tls, 'ca-key.cred'), '-'],
        { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
      const ca = new crypto.X509Certificate(fs.readFileSync(path.join(tls, 'ca.pem')));
      const srv = new crypto.X509Certificate(fs.readFileSync(path.join(tls, 'server.pem')));
      assert.ok(srv.verify(crypto.createPublicKey(crypto.createPrivateKey(pem))), 'the opened CA key signed the server certificate');
      assert.ok(ca.publicKey.export({ format: 'der', type: 'spki' }).equals(crypto.createPublicKey(crypto.createPrivateKey(pem)).export({ format: 'der', type: 'spki' })));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('init\'s default, as root: systemd-creds with the host key; the vault serves at start', async () => {
    assert.equal(v.init.autoUnseal, 'systemd-creds:host');
    assert.ok(fs.existsSync(path.join(v.dir, 'hsm', 'unseal.cred')));
    assert.deepEqual(fs.readdirSync(path.join(v.dir, 'tls')).filter((f) => /key/.test(f)), ['server-key.cred'],
      'no private key in tls/ in plaintext');
    assert.equal((await status(v)).sealed, false);
    assert.equal((await raw(v, 'GET', '/healthz')).status, 200);
  });

  test('a missing, an altered and another vault\'s credential: sealed with a clear log line, never half-open; shares still unseal', async () => {
    const cred = path.join(v.dir, 'hsm', 'unseal.cred');
    const good = fs.readFileSync(cred);
    const cases = [
      ['missing', () => fs.rmSync(cred), /credential file is missing/],
      ['altered', () => { const b = Buffer.from(good); b[b.length - 20] ^= 1; fs.writeFileSync(cred, b); }, /systemd-creds decrypt failed/],
      ['another vault\'s', () => fs.copyFileSync(path.join(other.dir, 'hsm', 'unseal.cred'), cred), /another vault's secret/],
    ];
    for (const [what, spoil, why] of cases) {
      await v.stop();
      spoil();
      const before = v.stderr.length;
      await v.start();
      assert.equal((await status(v)).sealed, true, `${what} credential: sealed`);
      assert.match(v.stderr.slice(before), why, `${what} credential: the log says why`);
      const h = await raw(v, 'GET', '/healthz');
      assert.equal(h.json.status, 'sealed');
      const w = await raw(v, 'POST', `/keys/${keyName('x')}/create`, { body: { kty: 'RSA' }, token: 'a.b.c', apiVersion: true });
      assert.ok(isSealed503(w), `${what}: ${w.status} ${w.text}`);
      fs.writeFileSync(cred, good);
    }
    for (const sh of v.init.unsealKeyShares.slice(0, v.init.unsealThreshold)) await unseal(v, { key: sh });
    assert.equal((await status(v)).sealed, false, 'the shares unseal a vault whose credential failed');
    await v.restart();
    assert.equal((await status(v)).sealed, false, 'the good credential unseals again');
  });

  test('LoadCredentialEncrypted=: the secret systemd hands over in $CREDENTIALS_DIRECTORY unseals', async () => {
    const dir = fs.mkdtempSync(path.join(v.dir, '..', 'p11vault-creds-'));
    try {
      await v.stop();
      const cred = path.join(v.dir, 'hsm', 'unseal.cred');
      execFileSync('systemd-creds', ['decrypt', '--name=p11vault-unseal', cred, path.join(dir, 'p11vault-unseal')], { stdio: 'ignore' });
      fs.renameSync(cred, `${cred}.away`);
      v.env = { ...process.env, CREDENTIALS_DIRECTORY: dir };
      await v.start();
      assert.equal((await status(v)).sealed, false);
      await v.stop();
      fs.renameSync(`${cred}.away`, cred);
      v.env = undefined;
      await v.start();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Clevis with a real Tang server on loopback', () => {
  let tang;
  let v;
  before(async () => {
    tang = await startTang();
    v = await startVault({ initArgs: ['--auto-unseal', `clevis:tang {"url":"${tang.url}"}`, '--key-shares', '2', '--key-threshold', '2'] });
  });
  after(async () => { await stopVault(v); if (tang) await tang.stop(); });

  test('init encrypts the unseal secret to Tang (hsm/unseal.jwe); the vault unseals at start by asking Tang', async () => {
    assert.match(v.init.autoUnseal, /^clevis:tang /);
    assert.ok(fs.existsSync(path.join(v.dir, 'hsm', 'unseal.jwe')));
    assert.ok(!fs.existsSync(path.join(v.dir, 'hsm', 'unseal.cred')));
    assert.equal((await status(v)).sealed, false);
    const tok = await token(v);
    const c = await raw(v, 'POST', `/keys/${keyName('tang')}/create`, { body: { kty: 'EC', crv: 'P-256' }, token: tok, apiVersion: true });
    assert.equal(c.status, 200, c.text);
  });

  test('Tang gone: the vault starts sealed with a clear log line (not half-open), the shares still unseal; Tang back: unsealed at start again', async () => {
    await v.stop();
    await tang.stop();
    const before = v.stderr.length;
    v.env = { ...process.env, P11VAULT_UNSEAL_TIMEOUT_MS: '15000' };
    await v.start();
    assert.equal((await status(v)).sealed, true);
    assert.match(v.stderr.slice(before), /"auto_unseal_failed","msg":"clevis decrypt failed/);
    const w = await raw(v, 'GET', '/keys', { token: 'a.b.c', apiVersion: true });
    assert.ok(isSealed503(w), `${w.status} ${w.text}`);
    for (const sh of v.init.unsealKeyShares) await unseal(v, { key: sh });
    assert.equal((await status(v)).sealed, false, 'the shares unseal while Tang is down');
    await v.stop();
    tang = await startTang({ keyDir: tang.keyDir, port: tang.port });
    v.env = undefined;
    await v.start();
    assert.equal((await status(v)).sealed, false, 'Tang answers again: unsealed at start');
  });
});

describe('shares written encrypted to custodians\' public keys', () => {
  let v;
  const custodians = [];
  before(async () => {
    const dir = fs.mkdtempSync(path.join(process.env.TMPDIR || '/tmp', 'p11vault-custodians-'));
    for (let i = 0; i < 3; i++) {
      const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
      const pub = path.join(dir, `custodian${i}.pem`);
      const key = path.join(dir, `custodian${i}-key.pem`);
      fs.writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }));
      fs.writeFileSync(key, privateKey.export({ type: 'pkcs8', format: 'pem' }));
      custodians.push({ pub, key, privateKey });
    }
    v = await startVault({ initArgs: ['--auto-unseal', 'none', '--key-threshold', '2',
      '--share-keys', custodians.map((c) => c.pub).join(',')] });
  });
  after(async () => { await stopVault(v); });

  test('init prints each share only encrypted (RSA-OAEP-SHA-256) to its custodian; each opens with openssl pkeyutl and unseals', async () => {
    assert.equal(v.init.unsealKeyShares, undefined, 'no plaintext shares');
    const enc = v.init.unsealKeySharesEncrypted;
    assert.equal(enc.length, 3);
    assert.deepEqual(enc.map((e) => e.recipient), custodians.map((c) => c.pub));
    assert.equal((await status(v)).sealed, true);
    const shares = [];
    // the documented command, for the first custodian
    const ct = path.join(path.dirname(custodians[0].pub), 'share0.bin');
    fs.writeFileSync(ct, Buffer.from(enc[0].share, 'base64'));
    shares.push(execFileSync('openssl', ['pkeyutl', '-decrypt', '-inkey', custodians[0].key, '-in', ct,
      '-pkeyopt', 'rsa_padding_mode:oaep', '-pkeyopt', 'rsa_oaep_md:sha256', '-pkeyopt', 'rsa_mgf1_md:sha256']).toString());
    shares.push(crypto.privateDecrypt({ key: custodians[2].privateKey, oaepHash: 'sha256' }, Buffer.from(enc[2].share, 'base64')).toString());
    for (const s of shares) {
      assert.match(s, /^[1-3]-[0-9a-f]{64}$/);
      assert.ok(!v.initOutput.includes(s.slice(2)), 'a plaintext share in init\'s output');
    }
    for (const s of shares) await unseal(v, { key: s });
    assert.equal((await status(v)).sealed, false);
    fs.rmSync(path.dirname(custodians[0].pub), { recursive: true, force: true });
  });
});

describe('a rekey interrupted between the PIN change and its commit', () => {
  let v;
  before(async () => {
    v = await startVault({ initArgs: ['--auto-unseal', 'none', '--key-shares', '3', '--key-threshold', '2'] });
    const s = v.init.unsealKeyShares;
    for (const sh of s.slice(0, 2)) await unseal(v, { key: sh });
  });
  after(async () => { await stopVault(v); });

  test('is undone at the next unseal: the old shares open the vault, the keys work, a new rekey then succeeds', async () => {
    const s = v.init.unsealKeyShares;
    const tok = await token(v);
    const name = keyName('rk');
    const c = await raw(v, 'POST', `/keys/${name}/create`, { body: { kty: 'EC', crv: 'P-256' }, token: tok, apiVersion: true });
    assert.equal(c.status, 200, c.text);
    await v.stop();
    // the test knob: the one-shot token process dies right after it changed the token's PINs
    const crash = await p11vault(['rekey', '--data', v.dir, '--key-shares', '2', '--key-threshold', '1'],
      { input: `${s[0]}\n${s[1]}\n`, env: { ...process.env, P11VAULT_INSECURE_TEST_REKEY_CRASH: '1' } });
    assert.equal(crash.code, 1, 'the interrupted rekey fails');
    assert.equal(crash.stdout.includes('unsealKeyShares'), false, 'no new share was shown');
    assert.ok(fs.existsSync(path.join(v.dir, 'hsm', 'seal.pending')), 'the new secret waits, encrypted, in seal.pending');
    const before = v.stderr.length;
    await v.start();
    for (const sh of s.slice(1, 3)) await unseal(v, { key: sh });
    assert.equal((await status(v)).sealed, false, 'the old shares unseal');
    assert.match(v.stderr.slice(before), /"event":"rekey_rolled_back"/);
    assert.deepEqual(fs.readdirSync(path.join(v.dir, 'hsm')).sort(), ['seal.conf']);
    const sg = await raw(v, 'POST', `/keys/${name}/sign`, { body: { alg: 'ES256', value: b64u(crypto.randomBytes(32)) }, token: await token(v), apiVersion: true });
    assert.equal(sg.status, 200, sg.text);
    await v.stop();
    const ok = await p11vault(['rekey', '--data', v.dir, '--key-shares', '2', '--key-threshold', '1'], { input: `${s[2]}\n${s[0]}\n` });
    assert.equal(ok.code, 0, ok.stderr);
    const fresh = JSON.parse(ok.stdout).unsealKeyShares;
    await v.start();
    await unseal(v, { key: fresh[1] });
    assert.equal((await status(v)).sealed, false);
  });
});
