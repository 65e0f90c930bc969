// Configuration mistakes and relocated data directories (docs/operations.md,
// "Configuration errors" and "Moving or copying a data directory").
//
// (a) A p11vault.conf with an unknown key, a bad value, a key twice or a
//     line that is not key=value, and a bad numeric P11VAULT_* variable of
//     the environment: `serve` refuses to start, naming the file, the line
//     and the key (or the variable); nothing falls back to a default.
// (b) A restore drill on one host: the data directory copied (cp -a) to a
//     new path serves while the original runs too, from its own token
//     (the token process's SOFTHSM2_CONF and the token directory it names
//     are the copy's); with its tokens/ moved away the copy refuses to
//     start, naming the original's directory, and never runs on the
//     original's token; the original keeps serving throughout.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  startVault, stopVault, openVault, p11vault, freePort, raw, token, keyName, children,
} from './lib/vault.mjs';

const REFUSE_TIMEOUT_MS = 30000;

// Every token process of a server: grandchildren started by its token
// launcher (argv "token-process launcher").
function tokenProcesses(v) {
  const todo = children(v.child.pid);
  const found = [];
  while (todo.length > 0) {
    const c = todo.shift();
    try {
      const argv = fs.readFileSync(`/proc/${c}/cmdline`, 'utf8').split('\0');
      if (argv[1] === 'token-process' && argv[2] === 'launcher') todo.push(...children(c));
      else if (argv[1] === 'token-process') found.push(c);
    } catch { /* gone */ }
  }
  return found;
}

function environOf(pid) {
  const env = {};
  for (const kv of fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return env;
}

function openFiles(pid) {
  return fs.readdirSync(`/proc/${pid}/fd`).map((f) => {
    try { return fs.readlinkSync(`/proc/${pid}/fd/${f}`); } catch { return ''; }
  }).filter((p) => p.startsWith('/'));
}

function tokendirOf(shconf) {
  const m = /^\s*directories\.tokendir\s*=\s*(.*?)\s*$/m.exec(fs.readFileSync(shconf, 'utf8'));
  return m ? m[1] : null;
}

function confSet(text, key, value) {
  const re = new RegExp(`^${key}=.*$`, 'm');
  return re.test(text) ? text.replace(re, `${key}=${value}`) : text.replace(/\n?$/, `\n${key}=${value}\n`);
}

// `serve` on dir, expected to refuse: {code, stderr}. A server that starts
// after all is stopped (SIGKILL at the timeout), so the test fails on it
// instead of hanging.
async function serveRefused(dir, env = process.env) {
  const port = await freePort();
  return p11vault(['serve', '--data', dir, '--listen', `127.0.0.1:${port}`],
    { env, timeoutMs: REFUSE_TIMEOUT_MS });
}

async function createKey(v, name) {
  const r = await raw(v, 'POST', `/keys/${name}/create`, {
    apiVersion: true, token: await token(v), body: { kty: 'RSA', key_size: 2048 },
  });
  assert.equal(r.status, 200, `create ${name}: ${r.status} ${r.text.slice(0, 300)}`);
  return r.json;
}

async function getKey(v, name) {
  return raw(v, 'GET', `/keys/${name}`, { apiVersion: true, token: await token(v) });
}

// A private-key operation: the token process unwraps the key's blob.
async function signWith(v, kid) {
  const version = kid.split('/').pop();
  const name = kid.split('/').slice(-2, -1)[0];
  return raw(v, 'POST', `/keys/${name}/${version}/sign`, {
    apiVersion: true, token: await token(v),
    body: { alg: 'RS256', value: Buffer.alloc(32, 7).toString('base64url') },
  });
}

describe('configuration mistakes refuse to start', { timeout: 180000 }, () => {
  let v;
  let confPath;
  let good;

  before(async () => {
    v = await startVault();
    await v.stop();
    confPath = path.join(v.dir, 'p11vault.conf');
    good = fs.readFileSync(confPath, 'utf8');
  });
  after(async () => {
    if (good) fs.writeFileSync(confPath, good);
    await stopVault(v);
  });

  // text: the conf to try; line/what: what stderr must name.
  async function refusedWith(text, line, what) {
    fs.writeFileSync(confPath, text);
    try {
      const r = await serveRefused(v.dir);
      assert.notEqual(r.code, 0, `serve started (exit ${r.code}) with a bad p11vault.conf:\n${text}`);
      assert.notEqual(r.code, -1, `serve kept running with a bad p11vault.conf:\n${text}`);
      assert.ok(r.stderr.includes(`${confPath}:${line}:`),
        `stderr names ${confPath}:${line}: ${r.stderr.slice(-500)}`);
      assert.match(r.stderr, what);
      assert.equal(r.stdout.includes('listening on'), false);
    } finally {
      fs.writeFileSync(confPath, good);
    }
  }

  const lineOf = (text, key) => text.split('\n').findIndex((l) => l.startsWith(`${key}=`)) + 1;

  test('a misspelt key (token_lifetme=) names the file, the line and the key', async () => {
    const text = good.replace(/\n?$/, '\ntoken_lifetme=60\n');
    await refusedWith(text, lineOf(text, 'token_lifetme'), /unknown key 'token_lifetme'/);
  });

  test('a non-number where a number is expected (token_lifetime=abc, audit_max_bytes=-1, token_lifetime=0)', async () => {
    for (const [key, bad] of [['token_lifetime', 'abc'], ['audit_max_bytes', '-1'], ['token_lifetime', '0'],
      ['token_lifetime', '99999999999'], ['audit_max_bytes', '64 MiB']]) {
      const text = confSet(good, key, bad);
      await refusedWith(text, lineOf(text, key), new RegExp(`${key}='${bad}' is not a number`));
    }
  });

  test('a key given twice, an empty value, a line that is not key=value, spaces around =', async () => {
    let text = good.replace(/\n?$/, '\ntoken_lifetime=60\n');
    await refusedWith(text, text.trimEnd().split('\n').length, /token_lifetime is set twice/);
    text = confSet(good, 'tenant_id', '');
    await refusedWith(text, lineOf(text, 'tenant_id'), /tenant_id is empty/);
    text = good.replace(/\n?$/, '\n\n# a comment is fine\njust some words\n');
    await refusedWith(text, text.trimEnd().split('\n').length, /not a key=value line/);
    text = good.replace(/^token_lifetime=(.*)$/m, 'token_lifetime = $1');
    await refusedWith(text, text.split('\n').findIndex((l) => l.startsWith('token_lifetime ')) + 1, /is not a key/);
  });

  test('a bad numeric P11VAULT_* variable of the environment is an error naming it, not a default', async () => {
    for (const [name, bad] of [['P11VAULT_HSM_DEADLINE_MS', 'abc'], ['P11VAULT_HSM_DEADLINE_MS', '0'],
      ['P11VAULT_HSM_DEADLINE_MS', '5s'], ['P11VAULT_HSM_DEADLINE_MS', '600001'],
      ['P11VAULT_UNSEAL_TIMEOUT_MS', '-1'], ['P11VAULT_UNSEAL_TIMEOUT_MS', '']]) {
      const r = await serveRefused(v.dir, { ...process.env, [name]: bad });
      assert.ok(r.code !== 0 && r.code !== -1, `${name}='${bad}': serve exit ${r.code}`);
      assert.ok(r.stderr.includes(`${name}='${bad}' is not a whole number of milliseconds`),
        `${name}='${bad}': ${r.stderr.slice(-400)}`);
    }
    const init = await p11vault(['init', '--data', path.join(v.dir, 'never')],
      { env: { ...process.env, P11VAULT_HSM_DEADLINE_MS: 'soon' } });
    assert.notEqual(init.code, 0, 'init refuses a bad P11VAULT_HSM_DEADLINE_MS too');
    assert.match(init.stderr, /P11VAULT_HSM_DEADLINE_MS='soon'/);
    assert.equal(fs.existsSync(path.join(v.dir, 'never')), false, 'init created nothing');
  });

  test('the unchanged config, and good values of the same knobs, start', async () => {
    fs.writeFileSync(confPath, confSet(confSet(good, 'token_lifetime', '600'), 'audit_max_bytes', '1048576'));
    v.env = { ...process.env, P11VAULT_HSM_DEADLINE_MS: '4000', P11VAULT_UNSEAL_TIMEOUT_MS: '20000' };
    try {
      await v.start();
      await v.stop();
    } finally {
      delete v.env;
      fs.writeFileSync(confPath, good);
    }
  });
});

describe('a copied data directory runs on its own token, or not at all', { timeout: 240000 }, () => {
  let orig;
  let copy;
  let parent;
  let k1;

  before(async () => {
    orig = await startVault();
    k1 = await createKey(orig, keyName('drill'));
    await orig.stop();
    parent = await fsp.mkdtemp(path.join(os.tmpdir(), 'p11vault-drill-'));
    execFileSync('cp', ['-a', orig.dir, path.join(parent, 'data')]);
    await orig.start();
  });
  after(async () => {
    if (copy) await copy.stop().catch(() => {});
    await stopVault(orig);
    if (parent && !process.env.P11VAULT_KEEP_TEST_DIRS) await fsp.rm(parent, { recursive: true, force: true });
  });

  test('a new vault names its files relative to its directory', () => {
    const conf = fs.readFileSync(path.join(orig.dir, 'p11vault.conf'), 'utf8');
    assert.match(conf, /^softhsm_conf=softhsm2\.conf$/m);
  });

  test('the copy serves the keys from its own token while the original runs', async () => {
    const dir = path.join(parent, 'data');
    copy = await openVault(dir);
    const own = fs.realpathSync(dir);
    const tps = tokenProcesses(copy);
    assert.ok(tps.length > 0, 'the copy has a token process');
    for (const pid of tps) {
      const sh = environOf(pid).SOFTHSM2_CONF;
      assert.equal(sh, path.join(own, 'softhsm2.conf'), `token process ${pid}: SOFTHSM2_CONF`);
      assert.equal(tokendirOf(sh), path.join(own, 'tokens'), `${sh} names the copy's tokens/`);
      for (const f of openFiles(pid)) {
        assert.ok(!f.startsWith(orig.dir + '/'), `token process ${pid} of the copy has ${f} open`);
      }
    }
    assert.equal(tokendirOf(path.join(orig.dir, 'softhsm2.conf')), path.join(orig.dir, 'tokens'),
      "the original's softhsm2.conf is untouched");
    // the old key, with a private-key operation (the copy's token)
    const name = k1.key.kid.split('/').slice(-2, -1)[0];
    assert.equal((await getKey(copy, name)).status, 200);
    const sig = await signWith(copy, k1.key.kid);
    assert.equal(sig.status, 200, `sign on the copy: ${sig.status} ${sig.text.slice(0, 200)}`);
    // a key made in the copy is the copy's alone
    const k2 = keyName('copyonly');
    await createKey(copy, k2);
    assert.equal((await getKey(copy, k2)).status, 200);
    assert.equal((await getKey(orig, k2)).status, 404, 'a key created in the copy is not in the original');
    assert.equal((await signWith(orig, k1.key.kid)).status, 200, 'the original serves on');
    await copy.stop();
    copy = null;
  });

  test('a copy whose p11vault.conf names the original absolutely (an older vault) resolves to its own files', async () => {
    const dir = path.join(parent, 'data');
    const confPath = path.join(dir, 'p11vault.conf');
    const before = fs.readFileSync(confPath, 'utf8');
    fs.writeFileSync(confPath, confSet(before, 'softhsm_conf', path.join(orig.dir, 'softhsm2.conf')));
    const sh = path.join(dir, 'softhsm2.conf');
    fs.writeFileSync(sh, fs.readFileSync(sh, 'utf8').replace(/^directories\.tokendir\s*=.*$/m,
      `directories.tokendir = ${path.join(orig.dir, 'tokens')}`));
    try {
      copy = await openVault(dir);
      const own = fs.realpathSync(dir);
      for (const pid of tokenProcesses(copy)) {
        assert.equal(environOf(pid).SOFTHSM2_CONF, path.join(own, 'softhsm2.conf'), `token process ${pid}`);
      }
      assert.equal(tokendirOf(sh), path.join(own, 'tokens'), 'the copy\'s softhsm2.conf now names its own tokens/');
      assert.equal(fs.readFileSync(confPath, 'utf8'), confSet(before, 'softhsm_conf', path.join(orig.dir, 'softhsm2.conf')),
        'p11vault.conf is never rewritten');
      assert.equal((await signWith(copy, k1.key.kid)).status, 200);
      await copy.stop();
      copy = null;
    } finally {
      fs.writeFileSync(confPath, before);
    }
  });

  test("with its tokens/ moved away the copy refuses to start, and never uses the original's token", async () => {
    const dir = path.join(parent, 'data');
    const own = fs.realpathSync(dir);
    fs.renameSync(path.join(dir, 'tokens'), path.join(parent, 'tokens.away'));
    // started before: its softhsm2.conf names its own (missing) tokens/
    let r = await serveRefused(dir);
    assert.ok(r.code !== 0 && r.code !== -1, `serve exit ${r.code}: ${r.stderr.slice(-400)}`);
    assert.ok(r.stderr.includes(`${path.join(own, 'tokens')} is missing`), r.stderr.slice(-400));
    // never started at its new path: its softhsm2.conf still names the
    // original's tokens/
    const sh = path.join(dir, 'softhsm2.conf');
    fs.writeFileSync(sh, fs.readFileSync(sh, 'utf8').replace(/^directories\.tokendir\s*=.*$/m,
      `directories.tokendir = ${path.join(orig.dir, 'tokens')}`));
    r = await serveRefused(dir);
    assert.ok(r.code !== 0 && r.code !== -1, `serve exit ${r.code}: ${r.stderr.slice(-400)}`);
    assert.ok(r.stderr.includes(`is in the data directory ${orig.dir}, not in ${own}`), r.stderr.slice(-500));
    assert.match(r.stderr, /never uses another's token/);
    assert.equal(tokendirOf(sh), path.join(orig.dir, 'tokens'), 'nothing was rewritten');
    // an older p11vault.conf naming the original's softhsm2.conf, and no
    // softhsm2.conf of its own
    const confPath = path.join(dir, 'p11vault.conf');
    const before = fs.readFileSync(confPath, 'utf8');
    fs.writeFileSync(confPath, confSet(before, 'softhsm_conf', path.join(orig.dir, 'softhsm2.conf')));
    fs.renameSync(sh, path.join(parent, 'softhsm2.conf.away'));
    r = await serveRefused(dir);
    assert.ok(r.code !== 0 && r.code !== -1, `serve exit ${r.code}: ${r.stderr.slice(-400)}`);
    assert.ok(r.stderr.includes(`is in the data directory ${orig.dir}, not in ${own}`), r.stderr.slice(-500));
    fs.writeFileSync(confPath, before);
    // the original served on throughout
    assert.equal(orig.child.exitCode, null, 'the original is still running');
    assert.equal((await signWith(orig, k1.key.kid)).status, 200);
  });
});
