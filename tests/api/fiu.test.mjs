// Injected I/O faults with libfiu: the real server runs under fiu-run's
// POSIX preload (fiu-run -x), and EIO or ENOSPC is injected at random into
// the audit log's write(), into fdatasync/fsync (SQLite's WAL and the audit
// log) and into pwrite (SQLite's WAL) while four clients storm the vault
// with key creates, tag updates, deletes, recovers and access-policy
// changes. libfiu's points fail every caller, and write() is also
// libmicrohttpd's eventfd wake-up (responses go out through GnuTLS's
// sendmsg, the token channel through sendmsg too: checked with strace), so
// tests/fault/fiuaim.c enables the points with an external callback that
// fails write() only when the p11vault executable itself calls it, and
// counts the calls it saw and the faults it injected. It enables them in
// the serve process only: the token launcher and token process inherit
// LD_PRELOAD, but nothing is enabled in them.
//
// Every answer must be 2xx (the change made and durable) or 503 in Azure's
// envelope naming storage, with Retry-After (never a 500, a 4xx the model
// does not expect, a dropped connection or the HSM's message). After each
// phase the faults stop and the vault must serve again by itself (no
// restart): every acknowledged change is read back exactly (versions, tags,
// deletions, policies), and again after a restart; `p11vault audit verify`
// reports the chain intact.
//
// A 503 from the audit log after a write was committed (the line could not
// be written or synced after the change was made) is a change the client
// was told failed: the model keeps such a change as "may have happened"
// and counts it; a 503 from the store must have changed nothing.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import {
  REPO, BIN, startVault, stopVault, token, p11vault, runProcess, sleep, API_VERSION,
} from './lib/vault.mjs';

const EIO = 5;
const ENOSPC = 28;
// tests/fault/fiuaim.c's kinds: write() by p11vault (the audit log),
// fdatasync/fsync by p11vault (the audit log), by SQLite, pwrite (SQLite)
const AIM = { write: 1, auditSync: 2, dbSync: 4, pwrite: 8 };
const KINDS = ['write', 'auditSync', 'dbSync', 'pwrite'];
const STORAGE_MSG = /The vault's storage cannot be written \(disk full or failing\)/;
const CLIENTS = 4;
const NAMES = 3;
const STEPS = Number(process.env.P11VAULT_FIU_STEPS || 10); // per client per phase
// store: only the store's writes fail, so a 503 must have changed nothing;
// audit: the audit line of a committed change may fail (see above)
const PHASES = [
  { what: 'SQLite fdatasync EIO', on: AIM.dbSync, err: EIO, permille: 200, store: true },
  { what: 'audit write() EIO', on: AIM.write, err: EIO, permille: 200 },
  { what: 'SQLite fdatasync ENOSPC + pwrite ENOSPC', on: AIM.dbSync | AIM.pwrite, err: ENOSPC, permille: 100, store: true },
  { what: 'audit write() and fdatasync ENOSPC', on: AIM.write | AIM.auditSync, err: ENOSPC, permille: 200 },
];
const PERMS = ['get', 'list', 'wrapKey', 'unwrapKey', 'sign', 'verify', 'create', 'delete'];

function which(cmd) {
  try { return execFileSync('sh', ['-c', `command -v ${cmd}`]).toString().trim(); } catch { return ''; }
}
const SKIP = !which('fiu-run') ? 'fiu-run not found: install fiu-utils and libfiu-dev (make deps) to run the libfiu fault runs'
  : !fs.existsSync('/usr/include/fiu-control.h') ? 'libfiu-dev (fiu-control.h) not installed: cannot build tests/fault/fiuaim.c'
    : false;

// The LD_PRELOAD fiu-run -x sets (its own libraries, found where it looks).
function fiuRunEnv(fifo) {
  const out = execFileSync('fiu-run', ['-x', '-f', fifo, 'env']).toString();
  const get = (k) => new RegExp(`^${k}=(.*)$`, 'm').exec(out)?.[1] ?? '';
  return { LD_PRELOAD: get('LD_PRELOAD').trim(), FIU_CTRL_FIFO: get('FIU_CTRL_FIFO') };
}

// An ASan build must find its runtime first in the library list: its
// libasan goes in front of libfiu's preloads.
function asanRuntime(bin) {
  const m = /^\s*(libasan\.so\S*) => (\S+)/m.exec(execFileSync('ldd', [bin]).toString());
  return m ? m[2] : null;
}

// Linked against libfiu's preloads (DT_NEEDED) so that they are set up
// before its constructor runs: it calls open/mmap/malloc, which they wrap.
async function buildAim(preloads) {
  const out = path.join(REPO, 'build', 'fault', 'libfiuaim.so');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const r = await runProcess('cc', ['-shared', '-fPIC', '-O1', '-Wall', '-Wextra', '-Werror',
    path.join(REPO, 'tests', 'fault', 'fiuaim.c'), '-o', tmp, '-Wl,--no-as-needed', ...preloads, '-lfiu', '-ldl']);
  if (r.code !== 0) throw new Error(`cannot build fiuaim: ${r.stderr}`);
  fs.renameSync(tmp, out);
  return out;
}

// struct fiuaim_ctl: pid, on, permille, err, calls[4], faults[4], seed, hooks
const W = { pid: 0, on: 1, permille: 2, err: 3, calls: 4, faults: 8, seed: 12, hooks: 13 };
function ctlRead(file) {
  const b = fs.readFileSync(file);
  const u = (i) => b.readUInt32LE(4 * i);
  return { pid: u(W.pid), calls: [0, 1, 2, 3].map((i) => u(W.calls + i)), faults: [0, 1, 2, 3].map((i) => u(W.faults + i)) };
}
function ctlSet(file, fields) {
  const fd = fs.openSync(file, 'r+');
  try {
    for (const [k, val] of Object.entries(fields)) {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(val >>> 0);
      fs.writeSync(fd, b, 0, 4, 4 * W[k]);
    }
  } finally { fs.closeSync(fd); }
}

function req(v, agent, method, p, { body, tok } = {}) {
  p += (p.includes('?') ? '&' : '?') + `api-version=${API_VERSION}`;
  const h = { Authorization: `Bearer ${tok}` };
  let payload;
  if (body !== undefined) {
    payload = Buffer.from(JSON.stringify(body));
    h['Content-Type'] = 'application/json';
    h['Content-Length'] = payload.length;
  } else if (method !== 'GET' && method !== 'DELETE') {
    h['Content-Length'] = 0;
  }
  return new Promise((resolve, reject) => {
    const r = https.request({ host: '127.0.0.1', port: v.port, method, path: p, headers: h, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, json, text });
      });
      res.on('error', reject);
    });
    r.setTimeout(20000, () => r.destroy(new Error(`${method} ${p}: timeout`)));
    r.on('error', reject);
    if (payload) r.write(payload);
    r.end();
  });
}

const ok = (r) => r.status >= 200 && r.status < 300;
const pick = (a) => a[Math.floor(Math.random() * a.length)];
const permKey = (perms) => (perms && perms.length ? [...perms].map((p) => p.toLowerCase()).sort().join(',') : 'none');
const verOf = (kid) => kid.split('/').pop();

describe('libfiu: EIO/ENOSPC in the audit write and SQLite sync during a write storm', { skip: SKIP, timeout: 120000 }, () => {
  let v;
  let tok;
  let ctl;
  let agent;
  const tally = { faults: 0, requests: 0, during: 0, ok: 0, s503: 0, doneDespite503: 0, recovered: 0, ops: {}, phases: [] };
  const clients = [];

  before(async () => {
    v = await startVault();
    await v.stop();
    ctl = path.join(v.dir, '..', `fiuaim-${path.basename(v.dir)}.ctl`);
    const page = Buffer.alloc(4096);
    const seed = (Number(process.env.P11VAULT_FIU_SEED) || (Date.now() % 0xfffffff) + 1) >>> 0;
    page.writeUInt32LE(seed, 4 * W.seed);
    fs.writeFileSync(ctl, page);
    const fiu = fiuRunEnv(path.join(v.dir, 'fiu-ctrl'));
    const aim = await buildAim(fiu.LD_PRELOAD.split(/\s+/).filter(Boolean));
    const asan = asanRuntime(BIN);
    v.env = {
      ...process.env,
      LD_PRELOAD: [asan, fiu.LD_PRELOAD, aim].filter(Boolean).join(' '),
      FIU_CTRL_FIFO: fiu.FIU_CTRL_FIFO, FIU_ENABLE: '', P11FIU_CTL: ctl,
    };
    await v.start();
    tok = await token(v);
    agent = new https.Agent({ keepAlive: true, maxSockets: CLIENTS, ca: [v.ca.pem] });
    process.stdout.write(`# fiu: seed ${seed}${asan ? ' (ASan runtime preloaded first)' : ''}\n`);
    for (let c = 0; c < CLIENTS; c++) {
      const r = await req(v, agent, 'POST', '/admin/identities', { body: { displayName: `fiu-${process.pid}-c${c}` }, tok });
      assert.ok(ok(r), r.text);
      const keys = [];
      for (let i = 0; i < NAMES; i++) {
        keys.push({ name: `fiu-${process.pid}-c${c}-k${i}`, state: 'absent', versions: new Set(), tag: null, uncertain: null, hist: [] });
      }
      clients.push({ id: c, oid: r.json.objectId, perms: 'none', uncertain: null, keys });
    }
  });

  after(async () => {
    if (ctl) fs.rmSync(ctl, { force: true });
    agent?.destroy();
    process.stdout.write(`# fiu: ${JSON.stringify(tally)}\n`);
    await stopVault(v);
  });

  // A 503's shape; whether it came from the audit log (after the change
  // may have been made) is told by the vault's log, not by the answer.
  function check503(r, what) {
    assert.equal(r.json?.error?.code, 'ServiceUnavailable', `${what}: ${r.text}`);
    assert.match(r.json.error.message, STORAGE_MSG, `${what}: names storage`);
    assert.ok(Number(r.headers['retry-after']) > 0, `${what}: Retry-After`);
  }

  // One request of one client. A key (or the client's policy) answered
  // 503 is uncertain until read back: its next step reads it first (and
  // waits when the read is refused too).
  async function step(cl, ph) {
    const k = pick(cl.keys);
    if (cl.uncertain && await resolvePolicy(cl, ph) === null) return;
    if (k.uncertain && await resolveKey(k, ph) === null) return;
    let op;
    if (Math.random() < 0.15) op = 'policy';
    else if (k.state === 'absent') op = 'create';
    else if (k.state === 'deleted') op = 'recover';
    else op = pick(['create', 'update', 'update', 'delete']);
    tally.ops[op] = (tally.ops[op] || 0) + 1;
    let r;
    let apply;
    let maybe;
    if (op === 'policy') {
      const remove = Math.random() < 0.3;
      const perms = [...new Set(Array.from({ length: 1 + Math.floor(Math.random() * 4) }, () => pick(PERMS)))];
      const want = remove ? 'none' : permKey(perms);
      const body = { properties: { accessPolicies: [{ tenantId: v.admin.tenantId, objectId: cl.oid, permissions: remove ? {} : { keys: perms } }] } };
      r = await req(v, agent, 'PUT', `/admin/vault/accessPolicies/${remove ? 'remove' : 'replace'}`, { body, tok });
      apply = () => { cl.perms = want; };
      maybe = () => { cl.uncertain = want; };
    } else if (op === 'create') {
      r = await req(v, agent, 'POST', `/keys/${k.name}/create`, { body: { kty: 'EC', crv: 'P-256' }, tok });
      // a new version carries no tags
      apply = () => { k.state = 'live'; k.versions.add(verOf(r.json.key.kid)); k.tag = null; };
      maybe = () => { k.uncertain = 'create'; };
    } else if (op === 'update') {
      const tag = `t${Math.random().toString(36).slice(2, 8)}`;
      r = await req(v, agent, 'PATCH', `/keys/${k.name}`, { body: { tags: { fiu: tag } }, tok });
      apply = () => { k.tag = tag; };
      maybe = () => { k.uncertain = 'update'; };
    } else if (op === 'delete') {
      r = await req(v, agent, 'DELETE', `/keys/${k.name}`, { tok });
      apply = () => { k.state = 'deleted'; };
      maybe = () => { k.uncertain = 'delete'; };
    } else {
      r = await req(v, agent, 'POST', `/deletedkeys/${k.name}/recover`, { tok });
      apply = () => { k.state = 'live'; };
      maybe = () => { k.uncertain = 'recover'; };
    }
    tally.requests += 1;
    const what = `client ${cl.id} ${op} ${k.name}`;
    k.hist = (k.hist || []).concat(`${op}:${r.status}`).slice(-12);
    if (ok(r)) { tally.ok += 1; apply(); return; }
    assert.equal(r.status, 503, `${what}: only 2xx or 503, got ${r.status}: ${r.text.slice(0, 300)}`);
    check503(r, what);
    tally.s503 += 1;
    maybe();
  }

  // A change the vault made though it answered 503 is a wrong answer,
  // whichever file failed: a state change's "started" line is synced
  // before anything changes, so a 503 means nothing changed.
  function changedDespite503(what, ph) {
    tally.doneDespite503 += 1;
    assert.fail(`${ph?.what}: ${what} although the answer was 503 (a 503 must change nothing)`);
  }

  async function resolvePolicy(cl, ph) {
    const vault = await req(v, agent, 'GET', '/admin/vault', { tok });
    if (vault.status === 503) return null;
    assert.equal(vault.status, 200, `GET /admin/vault ${vault.text}`);
    const pol = vault.json.properties.accessPolicies.find((p) => p.objectId === cl.oid);
    const have = permKey(pol?.permissions?.keys);
    if (have !== cl.perms) {
      assert.ok(cl.uncertain === have, `client ${cl.id} policy ${have}, acknowledged ${cl.perms}`);
      changedDespite503(`client ${cl.id}'s policy was changed`, ph);
      cl.perms = have;
    }
    cl.uncertain = null;
    return true;
  }

  async function resolveKey(k, ph) {
    const live = await req(v, agent, 'GET', `/keys/${k.name}`, { tok });
    const del = await req(v, agent, 'GET', `/deletedkeys/${k.name}`, { tok });
    const vers = live.status === 200 ? await req(v, agent, 'GET', `/keys/${k.name}/versions`, { tok }) : null;
    if ([live, del, vers].some((r) => r?.status === 503)) return null;
    const label = `${k.name} (${k.hist})`;
    assert.ok([200, 404].includes(live.status) && [200, 404].includes(del.status), `${label}: ${live.status} ${del.status}`);
    const state = live.status === 200 ? 'live' : del.status === 200 ? 'deleted' : 'absent';
    if (state !== k.state) {
      const via = { live: ['create', 'recover'], deleted: ['delete'], absent: [] }[state];
      assert.ok(via.includes(k.uncertain), `${label}: is ${state}, acknowledged ${k.state}`);
      changedDespite503(`${k.name}: ${k.uncertain} was made`, ph);
      k.state = state;
    }
    if (state === 'live') {
      assert.equal(vers.status, 200, vers.text);
      const ids = new Set(vers.json.value.map((x) => verOf(x.kid)));
      for (const id of k.versions) assert.ok(ids.has(id), `${label}: acknowledged version ${id} is there`);
      const extra = [...ids].filter((id) => !k.versions.has(id));
      if (extra.length) {
        assert.ok(extra.length === 1 && k.uncertain === 'create', `${label}: versions ${extra} no create acknowledged`);
        changedDespite503(`${k.name}: a version was created`, ph);
        k.versions.add(extra[0]);
        k.tag = null;
      }
    }
    if (state !== 'absent') {
      const tag = (live.status === 200 ? live : del).json.tags?.fiu ?? null;
      if (tag !== k.tag) {
        assert.ok(k.uncertain === 'update' || k.uncertain === 'create', `${label}: tag ${tag}, acknowledged ${k.tag}`);
        if (k.uncertain === 'update') changedDespite503(`${k.name}: the tags were updated`, ph);
        k.tag = tag;
      }
    }
    k.uncertain = null;
    return true;
  }

  // Reads every client's keys and policy back and compares them with the
  // model (a key still uncertain is settled here).
  async function readBack(label, ph) {
    for (const cl of clients) {
      cl.uncertain = cl.uncertain || cl.perms;
      assert.ok(await resolvePolicy(cl, ph), `${label}: policies readable`);
      for (const k of cl.keys) {
        k.uncertain = k.uncertain || 'none';
        assert.ok(await resolveKey(k, ph), `${label}: ${k.name} readable`);
      }
    }
  }

  // After the faults stop: the next gated requests write what is pending;
  // no restart, no admin action. Bounded by count, not time.
  async function recovers(label) {
    const k = clients[0].keys[0];
    for (let i = 0; i < 40; i++) {
      const r = await req(v, agent, 'GET', `/keys/${k.name}`, { tok });
      if (r.status === 200 || r.status === 404) {
        const h = await req(v, agent, 'GET', '/healthz', {});
        if (h.status === 200) { tally.recovered += 1; return; }
      }
      await sleep(100);
    }
    assert.fail(`${label}: the vault did not serve again by itself after the faults stopped`);
  }

  test('the points are enabled in the serve process only', async () => {
    const c = ctlRead(ctl);
    assert.equal(c.pid, v.child.pid, 'fiuaim enabled its points in p11vault serve');
  });

  for (const ph of PHASES) {
    test(`storm with ${ph.what}: only 2xx or storage 503, nothing acknowledged lost`, async () => {
      const c0 = ctlRead(ctl);
      const n0 = tally.requests;
      const s0 = tally.s503;
      const d0 = tally.doneDespite503;
      ctlSet(ctl, { err: ph.err, permille: ph.permille, on: ph.on });
      try {
        await Promise.all(clients.map(async (cl) => { for (let i = 0; i < STEPS; i++) await step(cl, ph); }));
      } finally {
        ctlSet(ctl, { on: 0 });
      }
      const c = ctlRead(ctl);
      const faults = Object.fromEntries(KINDS.map((kd, i) => [kd, c.faults[i] - c0.faults[i]]));
      const calls = Object.fromEntries(KINDS.map((kd, i) => [kd, c.calls[i] - c0.calls[i]]));
      const injected = Object.values(faults).reduce((x, y) => x + y, 0);
      tally.faults += injected;
      tally.during += tally.requests - n0;
      // settle what the storm left uncertain, with the faults off
      await recovers(ph.what);
      await readBack(`after ${ph.what}`, ph);
      tally.phases.push({ what: ph.what, requests: tally.requests - n0, s503: tally.s503 - s0,
        doneDespite503: tally.doneDespite503 - d0, faults, calls });
      assert.ok(injected > 0, `${ph.what}: faults were injected (calls ${JSON.stringify(calls)})`);
    });
  }

  test('after a restart every acknowledged change is there, and the audit chain verifies', async () => {
    await v.stop();
    agent.destroy();
    v.env = process.env;
    await v.start();
    tok = await token(v);
    agent = new https.Agent({ keepAlive: true, maxSockets: CLIENTS, ca: [v.ca.pem] });
    await readBack('after restart', { what: 'restart', store: true });
    await v.stop();
    const ver = await p11vault(['audit', 'verify', '--data', v.dir]);
    assert.equal(ver.code, 0, ver.stdout + ver.stderr);
    assert.match(ver.stdout, /"intact":true/);
    await v.start();
  });
});
