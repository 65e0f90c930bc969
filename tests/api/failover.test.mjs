// Durability through failover, and HAProxy in front of the nodes
// (docs/cluster.md, docs/haproxy.cfg.example): a PostgreSQL primary and a
// synchronous standby (tests/tools/pgtmp.sh start-primary/start-standby),
// three nodes on that store (init --store, then node init --store,
// approve, join), all serving one vault URL and one certificate, and
// HAProxy on loopback running docs/haproxy.cfg.example. Then: the SDK's
// flows through HAProxy; a node SIGKILLed during a write storm (the SDK
// rides over it, every acknowledged create is there); the standby
// stopped (a COMMIT cancelled on the server, or by p11vault after its
// 5 s bound, answers 503: it is on the primary only); the primary
// SIGKILLed during a storm of creates, deletes and access-policy changes
// and the standby promoted (the nodes follow it by themselves: every
// acknowledged write is there, no wrong answer, only 2xx and 503 with
// Retry-After seen); a new standby from the promoted primary, and an
// address naming it first still writes; a database that cannot be
// reached and a node
// without the domain key refused with nothing changed.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { KeyClient } from '@azure/keyvault-keys';
import {
  REPO, openVault, p11vault, freePort, raw, token, keyName, credential, testCa, waitFor,
  cryptoClient,
} from './lib/vault.mjs';
import { HAVE_PG, psql, nodeInit, approveJoin } from './lib/cluster.mjs';

const PGTMP = path.join(REPO, 'tests', 'tools', 'pgtmp.sh');
const HAPROXY = ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy'].find((p) => fs.existsSync(p));
const SKIP = !HAVE_PG ? 'PostgreSQL 15 is not installed (/usr/lib/postgresql/15/bin): make deps'
  : !HAPROXY ? 'haproxy is not installed: make deps' : false;
const POLL = { intervalInMs: 200 };
const pg = (...args) => execFileSync(PGTMP, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
const pgDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'p11vault-pgf-'));

// One certificate for the vault URL's host, from the test CA: every node
// serves it (tls/server.pem and tls/server-key.pem, sealed at start).
function issueCert(ca, dir, base) {
  const key = path.join(dir, `${base}.key`);
  const csr = path.join(dir, `${base}.csr`);
  const crt = path.join(dir, `${base}.pem`);
  const ext = path.join(dir, `${base}.ext`);
  fs.writeFileSync(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', csr, '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  execFileSync('openssl', ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial',
    '-days', '2', '-extfile', ext, '-out', crt], { stdio: 'ignore' });
  return { key, crt };
}

// docs/haproxy.cfg.example as it is, but on loopback: its global section
// replaced (foreground, no chroot or user, a stats socket in dir), the
// nodes' addresses, the bind port and the /etc and /run paths.
function haproxyConfig(dir, haPort, nodePorts, caPem, downPem) {
  let cfg = fs.readFileSync(path.join(REPO, 'docs', 'haproxy.cfg.example'), 'utf8');
  cfg = cfg.slice(cfg.indexOf('\ndefaults'));
  cfg = `global\n\tstats socket ${dir}/admin.sock mode 600 level admin\n\tpidfile ${dir}/haproxy.pid\n` +
    `\tlog stderr format short local0 info\n${cfg}`;
  cfg = cfg.replace('bind :8443', `bind 127.0.0.1:${haPort}`)
    .replaceAll('/run/haproxy/p11vault-down.sock', path.join(dir, 'down.sock'))
    .replaceAll('/etc/haproxy/p11vault-ca.pem', caPem)
    .replaceAll('/etc/haproxy/p11vault-down.pem', downPem)
    .replaceAll('vault.example', '127.0.0.1');
  nodePorts.forEach((p, i) => { cfg = cfg.replace(`10.0.0.1${i + 1}:8443`, `127.0.0.1:${p}`); });
  assert.doesNotMatch(cfg, /10\.0\.0\.|\/etc\/|\/run\/|:8443/, 'every address of the example replaced');
  const file = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(file, cfg);
  return file;
}

// HAProxy's view of the servers: {node1: 'UP', ...} (show stat over the
// stats socket).
function haStat(dir) {
  return new Promise((resolve, reject) => {
    const c = net.connect(path.join(dir, 'admin.sock'));
    let out = '';
    c.on('data', (d) => { out += d; });
    c.on('error', reject);
    c.on('end', () => {
      const lines = out.trim().split('\n');
      const head = lines[0].replace(/^# /, '').split(',');
      const sv = head.indexOf('svname');
      const st = head.indexOf('status');
      const res = {};
      for (const l of lines.slice(1)) {
        const f = l.split(',');
        if (f[0] === 'p11vault_nodes') res[f[sv]] = f[st];
      }
      resolve(res);
    });
    c.end('show stat\n');
  });
}

describe('failover: a synchronous standby, three nodes, HAProxy', { timeout: 180000, skip: SKIP }, () => {
  const s = { nodes: [], procs: [] };
  let ha; // {port, url, dir, child}
  let a; // the first vault as lib/cluster.mjs wants it

  const lb = () => ({ port: ha.port, ca: a.ca, dir: a.dir, admin: a.admin });
  const haClient = (retry = {}) => new KeyClient(ha.url, credential({ ...lb(), url: ha.url }), {
    disableChallengeResourceVerification: true,
    retryOptions: { maxRetries: 6, retryDelayInMs: 200, maxRetryDelayInMs: 2000, ...retry },
  });
  const allUp = async () => {
    const st = await haStat(ha.dir);
    return ['node1', 'node2', 'node3'].every((n) => st[n] === 'UP') ? st : null;
  };

  before(async () => {
    const ca = await testCa();
    s.tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'p11vault-fo-'));
    s.primary = pgDir();
    s.standby = pgDir();
    pg('start-primary', s.primary);
    pg('start-standby', s.primary, s.standby);
    s.db = `host=${s.primary},${s.standby} port=5432 user=postgres dbname=postgres ` +
      'target_session_attrs=read-write connect_timeout=2';
    ha = { port: await freePort(), dir: s.tmp };
    ha.url = `https://127.0.0.1:${ha.port}`;
    s.ports = [await freePort(), await freePort(), await freePort()];

    // A: init --store on the pair; B and C: node init --store, approved on
    // A, joined; every node the same certificate (docs/cluster.md)
    const adir = path.join(s.tmp, 'node1');
    const init = await p11vault(['init', '--data', adir, '--vault-url', ha.url,
      '--tls-ca-cert', ca.cert, '--tls-ca-key', ca.key, '--store', s.db]);
    assert.equal(init.code, 0, init.stderr);
    a = {
      dir: adir, url: ha.url, ca, init: JSON.parse(init.stdout.trim().split('\n').pop()),
      admin: JSON.parse(fs.readFileSync(path.join(adir, 'admin.json'), 'utf8')),
    };
    const dirs = [adir];
    for (const name of ['node2', 'node3']) {
      const n = await nodeInit(a, name, s.db);
      await approveJoin(a, n);
      dirs.push(n.dir);
    }
    const cert = issueCert(ca, s.tmp, 'vault');
    for (const d of dirs) {
      await fsp.copyFile(cert.crt, path.join(d, 'tls', 'server.pem'));
      await fsp.copyFile(cert.key, path.join(d, 'tls', 'server-key.pem'));
      await fsp.chmod(path.join(d, 'tls', 'server-key.pem'), 0o600);
      await fsp.rm(path.join(d, 'tls', 'server-key.cred'), { force: true });
    }
    for (let i = 0; i < 3; i++) s.nodes.push(await openVault(dirs[i], { port: s.ports[i], url: ha.url }));

    // HAProxy: the example's file; its fallback's own certificate
    const down = issueCert(ca, s.tmp, 'down');
    const downPem = path.join(s.tmp, 'down-crt.pem');
    fs.writeFileSync(downPem, Buffer.concat([fs.readFileSync(down.crt), fs.readFileSync(down.key)]));
    const cfg = haproxyConfig(s.tmp, ha.port, s.ports, ca.cert, downPem);
    const check = await new Promise((resolve) => {
      const c = spawn(HAPROXY, ['-c', '-q', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
      let e = '';
      c.stderr.on('data', (d) => { e += d; });
      c.stdout.on('data', (d) => { e += d; });
      c.on('close', (code) => resolve({ code, e }));
    });
    assert.equal(check.code, 0, `haproxy -c: ${check.e}`);
    ha.log = '';
    ha.child = spawn(HAPROXY, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    ha.child.stdout.on('data', (d) => { ha.log += d; });
    ha.child.stderr.on('data', (d) => { ha.log += d; });
    s.procs.push(ha.child);
    const up = await waitFor(() => allUp().catch(() => null), { timeoutMs: 15000, intervalMs: 200 });
    assert.ok(up, `HAProxy sees every node up; ${ha.log.slice(-2000)}`);
  });

  after(async () => {
    if (process.env.FO_HALOG && ha?.log) fs.writeFileSync(process.env.FO_HALOG, ha.log);
    for (const c of s.procs) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const v of s.nodes) {
      try { await v.stop(); } catch (e) { s.afterError = e; }
    }
    for (const d of [s.standby2, s.standby, s.primary]) if (d) pg('destroy', d);
    if (!process.env.P11VAULT_KEEP_TEST_DIRS) {
      for (const v of s.nodes) await v.remove();
      if (s.tmp) await fsp.rm(s.tmp, { recursive: true, force: true });
    }
    if (s.afterError) throw s.afterError;
  });

  test('the SDK through HAProxy: create, get, wrap/unwrap, list, delete; the nodes share the work', async () => {
    const kc = haClient();
    const k = await kc.createRsaKey(keyName('ha'), { keySize: 2048 });
    assert.equal((await kc.getKey(k.name)).properties.version, k.properties.version);
    const dek = crypto.randomBytes(32);
    const cc = cryptoClient({ ...lb(), url: ha.url }, k.id);
    const w = await cc.wrapKey('RSA-OAEP-256', dek);
    assert.deepEqual(Buffer.from((await cc.unwrapKey('RSA-OAEP-256', w.result)).result), dek);
    const names = [];
    for await (const p of kc.listPropertiesOfKeys()) names.push(p.name);
    assert.ok(names.includes(k.name), names.join(','));
    await (await kc.beginDeleteKey(k.name, POLL)).pollUntilDone();
    assert.equal((await kc.getDeletedKey(k.name)).name, k.name);
    // every node answers for the key's deletion, straight (not through HAProxy)
    const tok = await token(lb());
    for (const v of s.nodes) {
      const r = await raw(v, 'GET', `/deletedkeys/${k.name}`, { apiVersion: true, token: tok });
      assert.equal(r.status, 200, `${v.port}: ${r.text}`);
    }
    // HAProxy spread the connections (leastconn): more than one node served
    const st = await new Promise((resolve, reject) => {
      const c = net.connect(path.join(ha.dir, 'admin.sock'));
      let out = '';
      c.on('data', (d) => { out += d; });
      c.on('error', reject);
      c.on('end', () => resolve(out));
      c.end('show stat\n');
    });
    const head = st.split('\n')[0].replace(/^# /, '').split(',');
    const served = st.split('\n').map((l) => l.split(','))
      .filter((f) => f[0] === 'p11vault_nodes' && /^node\d$/.test(f[1]) && Number(f[head.indexOf('stot')]) > 0);
    assert.ok(served.length >= 2, `sessions per node: ${served.map((f) => f[1]).join(',')}`);
  });

  test('a node SIGKILLed during a write storm: the SDK rides over it, every acknowledged create is there', async () => {
    const kc = haClient();
    const acked = [];
    const failed = [];
    let stop = false;
    const worker = async () => {
      while (!stop) {
        const name = keyName('storm');
        try {
          const k = await kc.createEcKey(name, { curve: 'P-256' });
          acked.push(k);
        } catch (e) {
          failed.push(`${name}: ${e.statusCode ?? e.code} ${e.message}`);
        }
      }
    };
    const workers = Array.from({ length: 6 }, worker);
    await waitFor(() => acked.length >= 10, { timeoutMs: 20000, intervalMs: 50 });
    const victim = s.nodes[1];
    const before = acked.length;
    victim.child.kill('SIGKILL');
    await waitFor(async () => (await haStat(ha.dir)).node2 === 'DOWN', { timeoutMs: 10000, intervalMs: 100 });
    await waitFor(() => acked.length >= before + 20, { timeoutMs: 20000, intervalMs: 50 });
    stop = true;
    await Promise.all(workers);
    assert.deepEqual(failed, [], 'every create went through (the SDK retried)');
    assert.ok(acked.length >= before + 20, `creates after the kill: ${acked.length - before}`);
    const tok = await token(lb());
    for (const k of acked) {
      const r = await raw(lb(), 'GET', `/keys/${k.name}`, { apiVersion: true, token: tok });
      assert.equal(r.status, 200, `${k.name}: ${r.text}`);
      assert.equal(r.json.key.kid.split('/').pop(), k.properties.version);
    }
    s.nodeKill = { writes: acked.length };
    // the node comes back (no other change) and HAProxy takes it again
    await victim.start();
    assert.ok(await waitFor(() => allUp().catch(() => null), { timeoutMs: 15000, intervalMs: 200 }),
      'node2 up again');
  });

  test('the synchronous standby gone: a COMMIT whose wait is cut short (a cancel, or the write timeout) answers 503, never 200', async () => {
    const primary = `host=${s.primary} port=5432 user=postgres dbname=postgres`;
    const n1 = s.nodes[0];
    const tok = await token(n1);
    const create = (name) => raw(n1, 'POST', `/keys/${name}/create`,
      { apiVersion: true, token: tok, body: { kty: 'EC', crv: 'P-256' }, timeoutMs: 30000 });
    const waitingSql = "FROM pg_stat_activity WHERE application_name = 'p11vault' AND wait_event = 'SyncRep'";
    let cut; let timedOut; let read;
    pg('stop', s.standby); // every COMMIT on the primary now waits for it
    try {
      const pending = create(keyName('cut'));
      assert.ok(await waitFor(() => Number(psql(primary, `SELECT count(*) ${waitingSql}`)) > 0,
        { timeoutMs: 10000, intervalMs: 100 }), 'the COMMIT waits for the standby');
      psql(primary, `SELECT pg_cancel_backend(pid) ${waitingSql}`);
      cut = await pending;
      timedOut = await create(keyName('slow')); // nobody cancels: the write timeout (5 s) cuts it
      read = await raw(n1, 'GET', '/keys?maxresults=1', { apiVersion: true, token: tok });
    } finally {
      pg('start', s.standby);
    }
    assert.equal(cut.status, 503, `committed on the primary only (cancelled), answered ${cut.status} ${cut.text}`);
    assert.ok(Number(cut.headers['retry-after']) >= 1);
    assert.equal(timedOut.status, 503, `committed on the primary only (timeout), answered ${timedOut.status} ${timedOut.text}`);
    // a read: served, or 503 from a node that cannot confirm it is in step
    // (its lease is a write); never anything else
    assert.ok(read.status === 200 || (read.status === 503 && Number(read.headers['retry-after']) >= 1),
      `${read.status} ${read.text}`);
    assert.ok(await waitFor(() => allUp().catch(() => null), { timeoutMs: 15000, intervalMs: 200 }), 'all up again');
    assert.equal((await create(keyName('back'))).status, 200);
  });

  test('the primary SIGKILLed during a storm of writes, the standby promoted: no acknowledged write lost, no wrong answer, only 2xx/503', async () => {
    const tok = await token(lb());
    const tenantId = a.admin.tenantId;
    const statuses = {};
    const wrong = [];
    const errors = [];
    const keys = []; // {name, kid (its create acknowledged), state: created|deleted|unknown|unknown-delete}
    const pols = []; // {oid, acked: perms|null, after: [perms of unknown outcome since]}
    const PERMS = [['get'], ['get', 'list'], ['wrapKey', 'unwrapKey'], ['sign', 'verify', 'get']];
    let acks = 0;
    let acksAfterPromote = -1;
    let stop = false;
    const see = (r) => {
      statuses[r.status] = (statuses[r.status] || 0) + 1;
      if (r.status === 503 && !(Number(r.headers['retry-after']) >= 1)) wrong.push(`503 without Retry-After: ${r.text}`);
      return r;
    };
    const call = async (method, p, body) => {
      try {
        return see(await raw(lb(), method, p, { apiVersion: true, token: tok, body, timeoutMs: 20000 }));
      } catch (e) {
        errors.push(`${method} ${p}: ${e.message}`);
        return { status: 0 };
      }
    };
    const ack = () => { acks += 1; if (acksAfterPromote >= 0) acksAfterPromote += 1; };
    const policy = (oid, perms) => ({
      properties: { accessPolicies: [{ tenantId, objectId: oid, permissions: { keys: perms } }] },
    });

    const worker = async (w) => {
      const mine = [];
      const pol = { oid: crypto.randomUUID(), acked: null, ackedCount: 0, after: [] };
      pols.push(pol);
      for (let i = 0; !stop; i++) {
        const op = i % 4;
        if (op === 0 || op === 3 || mine.length === 0) { // create
          const k = { name: keyName(`fo${w}`), state: 'unknown' };
          keys.push(k);
          const r = await call('POST', `/keys/${k.name}/create`, { kty: 'EC', crv: 'P-256' });
          if (r.status === 200) {
            k.state = 'created';
            k.kid = r.json?.key?.kid;
            if (!k.kid || !k.kid.includes(`/keys/${k.name}/`)) wrong.push(`create ${k.name}: ${r.text}`);
            mine.push(k);
            ack();
          } else if (r.status !== 503) wrong.push(`create ${k.name}: ${r.status} ${r.text}`);
        } else if (op === 1) { // delete an acknowledged key of this worker
          const k = mine.shift();
          const r = await call('DELETE', `/keys/${k.name}`);
          if (r.status === 200) {
            k.state = 'deleted';
            ack();
          } else if (r.status === 503) k.state = 'unknown-delete';
          else wrong.push(`delete ${k.name}: ${r.status} ${r.text}`);
        } else { // access-policy change, then read one known key back
          const perms = PERMS[i % PERMS.length];
          const r = await call('PUT', '/admin/vault/accessPolicies/replace', policy(pol.oid, perms));
          if (r.status === 200) {
            pol.acked = perms;
            pol.ackedCount += 1;
            pol.after = [];
            ack();
          } else if (r.status === 503) pol.after.push(perms);
          else wrong.push(`policy ${pol.oid}: ${r.status} ${r.text}`);
          const k = mine[mine.length - 1];
          if (k) {
            const g = await call('GET', `/keys/${k.name}`);
            if (g.status === 200 && g.json?.key?.kid !== k.kid) wrong.push(`get ${k.name}: ${g.text}`);
            else if (g.status !== 200 && g.status !== 503) wrong.push(`get ${k.name}: ${g.status} ${g.text}`);
          }
        }
      }
    };
    const workers = Array.from({ length: 6 }, (_, w) => worker(w));
    await waitFor(() => acks >= 30, { timeoutMs: 20000, intervalMs: 50 });
    pg('crash', s.primary);
    // the switch: nodes and HAProxy answer 503 meanwhile
    await waitFor(() => (statuses[503] || 0) >= 10, { timeoutMs: 10000, intervalMs: 50 });
    pg('promote', s.standby);
    acksAfterPromote = 0;
    const back = await waitFor(() => acksAfterPromote >= 30, { timeoutMs: 30000, intervalMs: 100 });
    stop = true;
    await Promise.all(workers);
    assert.ok(back, `writes acknowledged after the promotion: ${acksAfterPromote}; statuses ${JSON.stringify(statuses)}`);
    const exits = s.nodes.map((v) => `${v.port}: ${JSON.stringify(v.exits)} ${v.stderr.slice(-600)}`).join('\n');
    const halog = ha.log.split('\n').filter((l) => !/ -- |Health check|is UP|is DOWN/.test(l)).slice(-40).join('\n');
    assert.deepEqual(errors, [], `no request failed without an answer; nodes:\n${exits}\nhaproxy:\n${halog}`);
    assert.deepEqual(wrong, [], 'no wrong answer');
    for (const st of Object.keys(statuses)) {
      assert.ok(/^2\d\d$/.test(st) || st === '503', `status ${st} seen (${JSON.stringify(statuses)})`);
    }
    assert.ok(statuses[503] > 0, 'the switch was seen (503)');
    assert.ok(acks > 0);

    // every acknowledged write holds, read back from every node straight
    await waitFor(() => allUp().catch(() => null), { timeoutMs: 15000, intervalMs: 200 });
    let checked = 0; // acknowledged creates and deletes, each read back
    let polChecked = 0; // access policies, each one's last acknowledged change read back on every node
    const vault = [];
    for (const v of s.nodes) {
      const r = await raw(v, 'GET', '/admin/vault', { token: tok });
      assert.equal(r.status, 200, `${v.port}: ${r.text}`);
      vault.push(r.json.properties.accessPolicies);
    }
    for (const k of keys) {
      const v = s.nodes[(checked + k.name.length) % 3];
      const g = await raw(v, 'GET', `/keys/${k.name}`, { apiVersion: true, token: tok });
      const d = await raw(v, 'GET', `/deletedkeys/${k.name}`, { apiVersion: true, token: tok });
      const live = g.status === 200 && g.json.key.kid === k.kid;
      const gone = d.status === 200 && d.json.key.kid === k.kid && g.status === 404;
      if (k.state === 'created') {
        assert.ok(live && d.status === 404, `acknowledged create of ${k.name} lost: ${g.status} ${d.status}`);
        checked += 1;
      } else if (k.state === 'deleted') {
        assert.ok(gone, `acknowledged delete of ${k.name} lost: ${g.status} ${d.status}`);
        checked += 2; // its create and its delete
      } else if (k.kid) { // created, its delete of unknown outcome: one or the other
        assert.ok(live !== gone, `${k.name}: ${g.status} ${d.status}`);
        checked += 1;
      } else { // a create of unknown outcome: there whole, or not at all
        assert.ok((g.status === 200 && g.json.key.kid.includes(`/keys/${k.name}/`) && d.status === 404) ||
          (g.status === 404 && d.status === 404), `${k.name}: ${g.status} ${d.status}`);
      }
    }
    for (const p of pols) {
      if (p.acked === null && p.after.length === 0) continue;
      for (const list of vault) {
        const e = list.find((x) => x.objectId === p.oid);
        const got = e ? [...e.permissions.keys].sort() : null;
        const allowed = [p.acked, ...p.after].map((x) => (x ? [...x].sort() : null));
        assert.ok(allowed.some((x) => JSON.stringify(x) === JSON.stringify(got)),
          `policy of ${p.oid}: ${JSON.stringify(got)}, acknowledged ${JSON.stringify(p.acked)}`);
      }
      if (p.acked !== null) polChecked += 1;
    }
    const polAcks = pols.reduce((n, p) => n + p.ackedCount, 0);
    assert.equal(checked + polAcks, acks, 'every acknowledged create and delete was read back');
    console.log(`# failover: node SIGKILL: ${s.nodeKill?.writes} acknowledged creates read back; primary SIGKILL: ` +
      `${checked} acknowledged creates and deletes read back, ${polAcks} policy changes acknowledged ` +
      `(${polChecked} policies' last one read back on 3 nodes); statuses ${JSON.stringify(statuses)}; ` +
      `${keys.filter((k) => !k.kid).length} creates of unknown outcome (503), none half there`);
    for (const v of s.nodes) assert.equal(v.child.exitCode, null, 'no node restarted');
  });

  test('a new standby made from the promoted primary; a conninfo naming it first without target_session_attrs still writes', async () => {
    s.standby2 = pgDir();
    pg('start-standby', s.standby, s.standby2);
    const v = s.nodes[2];
    const conf = path.join(v.dir, 'p11vault.conf');
    const text = fs.readFileSync(conf, 'utf8');
    await v.stop();
    fs.writeFileSync(conf, text.replace(/^store ?=.*$/m,
      `store=host=${s.standby2},${s.standby} port=5432 user=postgres dbname=postgres connect_timeout=2`));
    try {
      await v.start();
      const tok = await token(v);
      const name = keyName('rw');
      const r = await raw(v, 'POST', `/keys/${name}/create`, { apiVersion: true, token: tok, body: { kty: 'EC', crv: 'P-256' } });
      assert.equal(r.status, 200, `a write through a node whose first host is a standby: ${r.status} ${r.text}`);
      assert.equal(psql(`host=${s.standby2} port=5432 user=postgres dbname=postgres`,
        `SELECT count(*) FROM p11vault.keys WHERE name = '${name}'`), '1', 'replicated to the new standby');
    } finally {
      await v.stop();
      fs.writeFileSync(conf, text);
      await v.start();
    }
  });

  test('a database that cannot be reached, a node without the domain key: clear errors, nothing changed', async () => {
    const ca = await testCa();
    const db = `host=${s.standby} port=5432 user=postgres dbname=postgres`;
    const rows = () => psql(db, 'SELECT count(*) FROM p11vault.keys') + '/' +
      psql(db, "SELECT md5(string_agg(name || deleted_date, ',' ORDER BY name)) FROM p11vault.keys");
    const before = rows();
    // node init --store on a database that is not there (both hosts gone)
    const gone = `host=${s.primary}/x,${s.tmp}/y port=5432 user=postgres dbname=postgres connect_timeout=1`;
    const dir = path.join(os.tmpdir(), `p11vault-fo-x-${crypto.randomBytes(4).toString('hex')}`);
    const r = await p11vault(['node', 'init', '--data', dir, '--name', 'nx', '--store', gone,
      '--tls-ca-cert', ca.cert, '--tls-ca-key', ca.key]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cannot be reached/);
    assert.equal(fs.existsSync(dir), false);
    // a node on the cluster's store whose token has no domain key (not joined)
    const n = await nodeInit(a, 'node4', s.db);
    try {
      await fsp.copyFile(path.join(a.dir, 'admin.json'), path.join(n.dir, 'admin.json'));
      const sv = await p11vault(['serve', '--data', n.dir, '--listen', `127.0.0.1:${await freePort()}`],
        { timeoutMs: 60000 });
      assert.notEqual(sv.code, 0);
      assert.match(sv.stderr, /holds no domain key/);
    } finally {
      await fsp.rm(n.dir, { recursive: true, force: true });
    }
    assert.equal(rows(), before, 'the store is unchanged');
    // and the cluster serves on
    const kc = haClient();
    const k = await kc.createEcKey(keyName('after'), { curve: 'P-256' });
    assert.equal((await kc.getKey(k.name)).properties.version, k.properties.version);
  });
});
