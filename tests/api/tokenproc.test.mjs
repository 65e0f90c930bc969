// The token process (docs/security.md): the server's PKCS#11 work runs in
// a child process of its own. kill -9 of that child during a storm of
// wrap/unwrap/sign/create from 4 clients: only 200s and 503s (503 with
// Retry-After in Azure's envelope), every 200 correct, service back
// without a restart of the server. While no token process can start
// (its PIN file is gone), key operations are 503, reads that need no
// token keep working, /healthz is not ok; once it can, service resumes.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  startVault, stopVault, raw, token, keyName, b64u, unb64u, sleep, waitFor, children,
} from './lib/vault.mjs';

// The token process: a grandchild of the server, started by the token
// launcher (argv "token-process launcher"), which holds nothing.
function tokenProcess(v) {
  const todo = children(v.child.pid);
  while (todo.length > 0) {
    const c = todo.shift();
    try {
      const argv = fs.readFileSync(`/proc/${c}/cmdline`, 'utf8').split('\0');
      if (argv[1] === 'token-process' && argv[2] === 'launcher') todo.push(...children(c));
      else if (argv[1] === 'token-process') return c;
    } catch { /* gone */ }
  }
  return null;
}

// A file of every thread of process pid (/proc/PID/task/*/NAME). A thread
// may end between the listing and the read (the server's connection
// threads come and go with connections): it is skipped.
function perThread(pid, name) {
  const out = [];
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      out.push(fs.readFileSync(`/proc/${pid}/task/${t}/${name}`, 'utf8'));
    } catch (e) {
      if (e.code === 'ENOENT' || e.code === 'ESRCH') continue;
      throw e;
    }
  }
  return out;
}

// The nice value of every thread of process pid (stat: field 19, counted
// after the parenthesised command name).
function nices(pid) {
  return new Set(perThread(pid, 'stat').map((st) => Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[16])));
}

// The CPUs a process or thread may run on (status: Cpus_allowed_list,
// e.g. "0-3,6"), as numbers.
function cpusAllowed(status) {
  const list = /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)[1];
  return list.split(',').flatMap((r) => {
    const [a, b = a] = r.split('-').map(Number);
    return Array.from({ length: b - a + 1 }, (_, i) => a + i);
  });
}

function isEnvelope503(r) {
  return r.status === 503 && typeof r.json?.error?.code === 'string' &&
    typeof r.json?.error?.message === 'string' && Number(r.headers['retry-after']) >= 1;
}

describe('the token process', { timeout: 120000 }, () => {
  let v, tok;
  const keys = {};

  before(async () => {
    v = await startVault();
    tok = await token(v);
    for (const [k, body] of [['rsa', { kty: 'RSA', key_size: 2048 }], ['rsa2', { kty: 'RSA', key_size: 2048 }],
      ['ec', { kty: 'EC', crv: 'P-256' }]]) {
      const name = keyName(`tp-${k}`);
      const r = await raw(v, 'POST', `/keys/${name}/create`, { body, token: tok, apiVersion: true });
      assert.equal(r.status, 200, r.text);
      keys[k] = { name, kid: r.json.key.kid, jwk: r.json.key };
    }
  });
  after(async () => { await stopVault(v); });

  test('runs as a child of the server, not the server itself, with no network socket', () => {
    const pid = tokenProcess(v);
    assert.ok(pid, 'a child with argv[1] token-process');
    const fds = fs.readdirSync(`/proc/${pid}/fd`).map((f) => {
      try { return fs.readlinkSync(`/proc/${pid}/fd/${f}`); } catch { return ''; }
    });
    const sockets = fds.filter((l) => l.startsWith('socket:')).map((l) => l.slice(8, -1));
    // every socket it holds is a unix socket (its channels), none TCP
    const tcp = ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((f) => fs.readFileSync(f, 'utf8')
      .split('\n').slice(1).map((l) => l.trim().split(/\s+/)[9]).filter(Boolean));
    for (const ino of sockets) assert.ok(!tcp.includes(ino), `socket inode ${ino} is TCP`);
    assert.ok(sockets.length >= 2, `channels: ${sockets.length}`);
    const maps = fs.readFileSync(`/proc/${v.child.pid}/maps`, 'utf8');
    assert.ok(!/softhsm/i.test(maps), 'the network process has not loaded the PKCS#11 module');
    assert.ok(/softhsm/i.test(fs.readFileSync(`/proc/${pid}/maps`, 'utf8')), 'the token process has');
  });

  test('kill -9 during a storm: only 200s and 503s, every 200 correct, service back', async () => {
    const serverPid = v.child.pid;
    const before = tokenProcess(v);
    const tally = { ok: 0, unavailable: 0, other: [] };
    let stop = false;
    const pubs = {
      rsa: crypto.createPublicKey({ key: { kty: 'RSA', n: keys.rsa.jwk.n, e: keys.rsa.jwk.e }, format: 'jwk' }),
    };
    const note = (r, what, correct) => {
      if (r.status === 200) {
        if (correct(r)) tally.ok++;
        else tally.other.push(`${what}: a 200 with a wrong result`);
      } else if (isEnvelope503(r)) {
        tally.unavailable++;
      } else {
        tally.other.push(`${what}: ${r.status} ${r.text.slice(0, 200)}`);
      }
    };
    const client = async (i) => {
      let n = 0;
      while (!stop) {
        n++;
        const kind = (i + n) % 4;
        if (kind === 0 || kind === 1) {
          // wrap here (public key), unwrap there (token)
          const k = i % 2 ? keys.rsa2 : keys.rsa;
          const dek = crypto.randomBytes(32);
          const w = await raw(v, 'POST', `/keys/${k.name}/${k.kid.split('/').pop()}/wrapkey`,
            { body: { alg: 'RSA-OAEP', value: b64u(dek) }, token: tok, apiVersion: true });
          note(w, 'wrapKey', () => typeof w.json?.value === 'string');
          if (w.status !== 200) continue;
          const u = await raw(v, 'POST', `/keys/${k.name}/${k.kid.split('/').pop()}/unwrapkey`,
            { body: { alg: 'RSA-OAEP', value: w.json.value }, token: tok, apiVersion: true });
          note(u, 'unwrapKey', () => unb64u(u.json.value).equals(dek));
        } else if (kind === 2) {
          const msg = Buffer.from(`m${i}-${n}`);
          const digest = crypto.createHash('sha256').update(msg).digest();
          const s = await raw(v, 'POST', `/keys/${keys.rsa.name}/sign`,
            { body: { alg: 'PS256', value: b64u(digest) }, token: tok, apiVersion: true });
          note(s, 'sign', () => crypto.verify('sha256', msg, {
            key: pubs.rsa, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32,
          }, unb64u(s.json.value)));
        } else {
          const c = await raw(v, 'POST', `/keys/${keyName(`tp-new${i}`)}/create`,
            { body: { kty: 'EC', crv: 'P-256' }, token: tok, apiVersion: true });
          note(c, 'create', () => c.json?.key?.kty === 'EC' && typeof c.json.key.x === 'string');
        }
      }
    };
    const runs = [0, 1, 2, 3].map(client);
    await sleep(1500);
    process.kill(before, 'SIGKILL');
    await sleep(4000);
    stop = true;
    await Promise.all(runs);
    assert.deepEqual(tally.other, [], 'nothing but correct 200s and 503s');
    assert.ok(tally.ok > 20, `correct answers: ${tally.ok}`);
    assert.ok(tally.unavailable >= 1, `requests in flight at the kill answered 503: ${tally.unavailable}`);
    assert.equal(v.child.pid, serverPid);
    assert.equal(v.child.exitCode, null, 'the server did not exit');
    const after = await waitFor(() => { const p = tokenProcess(v); return p && p !== before ? p : null; });
    assert.notEqual(after, before);
    const k = keys.rsa;
    const dek = crypto.randomBytes(32);
    const ct = crypto.publicEncrypt({ key: pubs.rsa, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING }, dek);
    const u = await raw(v, 'POST', `/keys/${k.name}/unwrapkey`,
      { body: { alg: 'RSA-OAEP', value: b64u(ct) }, token: tok, apiVersion: true });
    assert.equal(u.status, 200, u.text);
    assert.ok(unb64u(u.json.value).equals(dek));
    const h = await raw(v, 'GET', '/healthz');
    assert.equal(h.status, 200);
    const m = await raw(v, 'GET', '/metrics', { token: tok });
    assert.match(m.text, /p11vault_token_process_restarts_total [1-9]/);
    console.log(`# storm: ${JSON.stringify({ ok: tally.ok, unavailable: tally.unavailable })}`);
  });

  test('no token process can start: key operations 503, reads work, /healthz not ok; then it recovers', async () => {
    // without hsm/seal.conf nothing can open the token: each new token
    // process gives up at boot
    const pin = path.join(v.dir, 'hsm', 'seal.conf');
    const away = `${pin}.away`;
    fs.renameSync(pin, away);
    try {
      process.kill(tokenProcess(v), 'SIGKILL');
      await waitFor(async () => (await raw(v, 'GET', '/healthz')).status === 503, { timeoutMs: 5000 });
      const h = await raw(v, 'GET', '/healthz');
      assert.equal(h.status, 503);
      assert.equal(h.json.status, 'not ok');
      const dek = crypto.randomBytes(32);
      const w = await raw(v, 'POST', `/keys/${keys.rsa.name}/wrapkey`,
        { body: { alg: 'RSA-OAEP', value: b64u(dek) }, token: tok, apiVersion: true });
      assert.equal(w.status, 200, 'wrapKey needs only the public key');
      const u = await raw(v, 'POST', `/keys/${keys.rsa.name}/unwrapkey`,
        { body: { alg: 'RSA-OAEP', value: w.json.value }, token: tok, apiVersion: true });
      assert.ok(isEnvelope503(u), `unwrapKey: ${u.status} ${u.text}`);
      const g = await raw(v, 'GET', `/keys/${keys.ec.name}`, { token: tok, apiVersion: true });
      assert.equal(g.status, 200, 'a GET needs no token');
      const l = await raw(v, 'GET', '/keys', { token: tok, apiVersion: true });
      assert.equal(l.status, 200);
      assert.doesNotMatch(v.stderr, /user-?pin[^"]*[0-9a-f]{16}/i);
    } finally {
      fs.renameSync(away, pin);
    }
    await waitFor(async () => (await raw(v, 'GET', '/healthz')).status === 200, { timeoutMs: 15000 });
    const s = await raw(v, 'POST', `/keys/${keys.ec.name}/sign`,
      { body: { alg: 'ES256', value: b64u(crypto.randomBytes(32)) }, token: tok, apiVersion: true });
    assert.equal(s.status, 200, s.text);
  });

  test('runs below the network process (nice 10, every thread), restarted ones too', () => {
    // the token process here was started again by the tests above
    const pid = tokenProcess(v);
    assert.ok(pid, 'a token process');
    assert.deepEqual([...nices(pid)], [10], 'the token process\'s threads');
    assert.deepEqual([...nices(v.child.pid)], [0], 'the network process\'s threads');
  });

  test('pins each channel thread to one CPU, the channels spread over every CPU the server may use', () => {
    const pid = tokenProcess(v);
    assert.ok(pid, 'a token process');
    const mine = cpusAllowed(fs.readFileSync(`/proc/${v.child.pid}/status`, 'utf8'));
    const pinned = perThread(pid, 'status').map(cpusAllowed).filter((c) => c.length === 1).map((c) => c[0]);
    if (mine.length < 2) {
      assert.deepEqual(pinned, [], 'one CPU: nothing to pin');
      return;
    }
    // the channels: the session pool (2 per CPU, at least 4) and 2 spare
    assert.ok(pinned.length >= 6, `pinned threads: ${pinned.length}`);
    assert.deepEqual([...new Set(pinned)].sort((a, b) => a - b), mine.slice(0, Math.min(mine.length, 64)),
      'every CPU of the server has channels, and no other CPU');
    const per = mine.map((c) => pinned.filter((p) => p === c).length);
    assert.ok(Math.max(...per) - Math.min(...per) <= 1, `channels per CPU: ${per}`);
  });
});
