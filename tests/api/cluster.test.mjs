// Several nodes on one PostgreSQL store (docs/cluster.md): a first vault
// A made with `init --store`, nodes B and C made with `node init --store`
// (they join the store, make no schema), approved on A and joined; every
// node serves the same keys. Then coherence: a write acknowledged by one
// node holds on another node's very next request (a policy removed, a key
// disabled, deleted, purged, an identity removed); a fourth node joins
// and serves every key; a removed node is refused; the purge sweeper runs
// on one node only and carries on on another when that one is SIGKILLed.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  startVault, stopVault, keyClient, cryptoClient, raw, token, keyName, p11vault, testCa, waitFor,
} from './lib/vault.mjs';
import { createIdentity, setPolicy } from './lib/identity.mjs';
import { HAVE_PG, pgStart, psql, nodeInit, approveJoin, serveNode, shares } from './lib/cluster.mjs';

const SKIP = HAVE_PG ? false : 'PostgreSQL 15 is not installed (/usr/lib/postgresql/15/bin): make deps';
const DAY = 86400;

describe('a cluster of nodes on one PostgreSQL store', { timeout: 240000, skip: SKIP }, () => {
  let pg; let a; const nodes = {}; const s = {};
  const clock = (v, secs) => {
    fs.writeFileSync(v.clockFile + '.tmp', `${Math.trunc(secs)}\n`);
    fs.renameSync(v.clockFile + '.tmp', v.clockFile);
  };
  const unwrap = (v, tok, name, version, ct) => raw(v, 'POST', `/keys/${name}/${version}/unwrapkey`,
    { apiVersion: true, token: tok, body: { alg: 'RSA-OAEP', value: Buffer.from(ct).toString('base64url') } });
  const serve = async (n) => {
    const clockFile = path.join(n.dir, 'test-clock');
    fs.writeFileSync(clockFile, '0\n');
    const v = await serveNode(a, n, { extraArgs: ['--insecure-test-clock', clockFile] });
    v.clockFile = clockFile;
    return v;
  };

  before(async () => {
    pg = pgStart();
    a = await startVault({ initArgs: ['--store', pg.db], clock: true });
    s.key = await keyClient(a).createRsaKey(keyName('cl'), { keySize: 2048 });
    s.dek = crypto.randomBytes(32);
    s.ct = (await cryptoClient(a, s.key.id).wrapKey('RSA-OAEP', s.dek)).result;
    await a.stop();
    for (const name of ['node-b', 'node-c']) {
      nodes[name] = await nodeInit(a, name, pg.db);
      await approveJoin(a, nodes[name]);
    }
    await a.start();
    s.b = await serve(nodes['node-b']);
    s.c = await serve(nodes['node-c']);
    s.adminA = await token(a);
  });
  after(async () => {
    for (const v of [s.b, s.c, s.d]) await stopVault(v).catch(() => {});
    await stopVault(a);
    pg?.destroy();
  });

  test('node init --store joins the store: store= in its config, no vault.db', () => {
    for (const n of Object.values(nodes)) {
      const conf = fs.readFileSync(path.join(n.dir, 'p11vault.conf'), 'utf8');
      assert.ok(conf.includes(`store = ${pg.db}`) || conf.includes(`store=${pg.db}`), conf);
      assert.equal(fs.existsSync(path.join(n.dir, 'vault.db')), false);
    }
  });

  test('node init --store on a database without a p11vault store: refused, nothing made', async () => {
    const ca = await testCa();
    const dir = path.join(os.tmpdir(), `p11vault-cl-${crypto.randomBytes(4).toString('hex')}`);
    const other = pg.db.replace('dbname=postgres', 'dbname=template1');
    const r = await p11vault(['node', 'init', '--data', dir, '--name', 'x', '--store', other,
      '--tls-ca-cert', ca.cert, '--tls-ca-key', ca.key]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /holds no p11vault store/);
    assert.equal(fs.existsSync(dir), false);
  });

  test('every node serves the keys made on A', async () => {
    for (const v of [a, s.b, s.c]) {
      const r = await unwrap(v, await token(v), s.key.name, s.key.properties.version, s.ct);
      assert.equal(r.status, 200, `${v.port}: ${r.text}`);
      assert.deepEqual(Buffer.from(r.json.value, 'base64url'), s.dek);
    }
  });

  test('node list on any node shows every node (the registry is in the store)', async () => {
    for (const dir of [a.dir, nodes['node-c'].dir]) {
      const l = await p11vault(['node', 'list', '--data', dir]);
      assert.equal(l.code, 0, l.stderr);
      assert.deepEqual(JSON.parse(l.stdout).nodes.map((n) => [n.name, n.state]).sort(),
        [['node-b', 'approved'], ['node-c', 'approved']]);
    }
  });

  test('an access policy removed on A: the identity\'s next request on B is refused', async () => {
    const id = await createIdentity(a, s.adminA, 'cl-app', ['get', 'unwrapKey']);
    const who = { tenantId: a.admin.tenantId, clientId: id.clientId, clientSecret: id.clientSecret };
    const tok = await token(s.b, who);
    const before_ = await unwrap(s.b, tok, s.key.name, s.key.properties.version, s.ct);
    assert.equal(before_.status, 200, before_.text);
    await setPolicy(a, s.adminA, id.objectId, ['get', 'unwrapKey'], 'remove');
    const r = await unwrap(s.b, tok, s.key.name, s.key.properties.version, s.ct);
    assert.equal(r.status, 403, r.text);
    // granted again on C, then the identity removed on C: refused on B at once
    await setPolicy(s.c, await token(s.c), id.objectId, ['get', 'unwrapKey']);
    assert.equal((await unwrap(s.b, tok, s.key.name, s.key.properties.version, s.ct)).status, 200);
    const del = await raw(s.c, 'DELETE', `/admin/identities/${id.objectId}`, { token: await token(s.c) });
    assert.ok(del.status === 200 || del.status === 204, del.text);
    const gone = await unwrap(s.b, tok, s.key.name, s.key.properties.version, s.ct);
    assert.equal(gone.status, 401, gone.text);
  });

  test('a key disabled on B: unwrap on C refused at once; enabled again: served', async () => {
    const tc = await token(s.c);
    assert.equal((await unwrap(s.c, tc, s.key.name, s.key.properties.version, s.ct)).status, 200);
    const patch = (v, tok, enabled) => raw(v, 'PATCH', `/keys/${s.key.name}/${s.key.properties.version}`,
      { apiVersion: true, token: tok, body: { attributes: { enabled } } });
    assert.equal((await patch(s.b, await token(s.b), false)).status, 200);
    const r = await unwrap(s.c, tc, s.key.name, s.key.properties.version, s.ct);
    assert.equal(r.status, 403, r.text);
    assert.match(r.json.error.message, /disabled/);
    assert.equal((await patch(s.b, await token(s.b), true)).status, 200);
    assert.equal((await unwrap(s.c, tc, s.key.name, s.key.properties.version, s.ct)).status, 200);
  });

  test('a key deleted on C: 404 on A and B at once; purged on A: gone from the others', async () => {
    const name = keyName('cl-del');
    const k = await keyClient(a).createEcKey(name, { curve: 'P-256' });
    const get = async (v, p) => (await raw(v, 'GET', p, { apiVersion: true, token: await token(v) })).status;
    for (const v of [a, s.b]) assert.equal(await get(v, `/keys/${name}/${k.properties.version}`), 200);
    assert.equal((await raw(s.c, 'DELETE', `/keys/${name}`, { apiVersion: true, token: await token(s.c) })).status, 200);
    for (const v of [a, s.b]) assert.equal(await get(v, `/keys/${name}/${k.properties.version}`), 404);
    for (const v of [a, s.b]) assert.equal(await get(v, `/deletedkeys/${name}`), 200);
    assert.equal((await raw(a, 'DELETE', `/deletedkeys/${name}`, { apiVersion: true, token: s.adminA })).status, 204);
    for (const v of [s.b, s.c]) assert.equal(await get(v, `/deletedkeys/${name}`), 404);
  });

  test('a fourth node joins and serves every existing key', async () => {
    s.dName = 'node-d';
    nodes[s.dName] = await nodeInit(a, s.dName, pg.db);
    await a.stop();
    await approveJoin(a, nodes[s.dName]);
    await a.start();
    s.d = await serve(nodes[s.dName]);
    const names = [];
    for await (const p of keyClient(a).listPropertiesOfKeys()) names.push(p);
    assert.ok(names.length >= 1);
    const td = await token(s.d);
    for (const p of names) {
      const r = await raw(s.d, 'GET', `/keys/${p.name}`, { apiVersion: true, token: td });
      assert.equal(r.status, 200, `${p.name}: ${r.text}`);
    }
    const r = await unwrap(s.d, td, s.key.name, s.key.properties.version, s.ct);
    assert.deepEqual(Buffer.from(r.json.value, 'base64url'), s.dek);
  });

  test('a removed node is refused: it stops answering, and its serve refuses to start', async () => {
    await a.stop();
    const rm = await p11vault(['node', 'remove', '--data', a.dir, '--name', s.dName],
      { input: shares(a.init.unsealKeyShares, 3) });
    assert.equal(rm.code, 0, rm.stderr);
    await a.start();
    const l = await p11vault(['node', 'list', '--data', nodes['node-b'].dir]);
    assert.ok(JSON.parse(l.stdout).nodes.some((n) => n.name === s.dName && n.state === 'removed'));
    const refused = await waitFor(async () => (await raw(s.d, 'GET', '/healthz')).status === 503,
      { timeoutMs: 10000, intervalMs: 100 });
    assert.ok(refused, 'the removed node still answers');
    await s.d.stop();
    const r = await p11vault(['serve', '--data', s.d.dir, '--listen', `127.0.0.1:${s.d.port}`], { timeoutMs: 30000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /removed from the cluster/);
  });

  test('the purge sweeper runs on one node; when it is SIGKILLed another carries on', async () => {
    const kc = keyClient(a);
    const due = [];
    for (let i = 0; i < 3; i++) {
      due.push(keyName('cl-due'));
      await kc.createEcKey(due[i], { curve: 'P-256' });
      await (await kc.beginDeleteKey(due[i], { intervalInMs: 200 })).pollUntilDone();
    }
    const live = [a, s.b, s.c];
    const mark = new Map(live.map((v) => [v, v.stderr.length]));
    const purged = (v) => [...v.stderr.slice(mark.get(v)).matchAll(/"event":"purge_sweep","purged":(\d+)/g)]
      .reduce((t, m) => t + Number(m[1]), 0);
    const holders = () => Number(psql(pg.db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' " +
      'AND classid = 28721 AND objid = 2 AND granted'));
    for (const v of live) clock(v, 91 * DAY);
    const gone = (name) => psql(pg.db, `SELECT count(*) FROM p11vault.keys WHERE lower(name) = lower('${name}')`) === '0';
    const total = (vs) => vs.reduce((t, v) => t + purged(v), 0);
    // gone from the store, and the sweep's log line read
    assert.ok(await waitFor(() => due.every(gone) && total(live) >= 3, { timeoutMs: 15000, intervalMs: 200 }), 'purged');
    assert.equal(holders(), 1, 'one node holds the sweeper lock');
    const sweepers = live.filter((v) => purged(v) > 0);
    assert.equal(sweepers.length, 1, 'one node swept');
    assert.equal(purged(sweepers[0]), 3, 'each key purged once');
    // that node dies; another takes over
    const dead = sweepers[0];
    dead.child.kill('SIGKILL');
    await new Promise((r) => dead.child.once('exit', r));
    const rest = live.filter((v) => v !== dead);
    for (const v of rest) mark.set(v, v.stderr.length);
    const late = keyName('cl-late');
    const kr = await raw(rest[0], 'POST', `/keys/${late}/create`,
      { apiVersion: true, token: await token(rest[0]), body: { kty: 'EC', crv: 'P-256' } });
    assert.equal(kr.status, 200, kr.text);
    const dr = await raw(rest[0], 'DELETE', `/keys/${late}`, { apiVersion: true, token: await token(rest[0]) });
    assert.equal(dr.status, 200, dr.text);
    for (const v of rest) clock(v, 200 * DAY);
    assert.ok(await waitFor(() => gone(late) && total(rest) >= 1, { timeoutMs: 20000, intervalMs: 200 }),
      'purged after the kill');
    assert.equal(holders(), 1, 'one node holds the sweeper lock again');
    assert.equal(rest.filter((v) => purged(v) > 0).length, 1, 'one node swept');
  });
});

// Another vault of the appliance, made and deleted on one node: the other
// node serves it on its next request, and refuses it once deleted.
describe('a cluster: other vaults made and deleted on one node', { timeout: 120000, skip: SKIP }, () => {
  const DOMAIN = 'vault.p11vault.test';
  let pg; let a; let b; let bn; const s = {};
  const KV = '2022-07-01';
  const vaultPath = '/resourceGroups/rg-c/providers/Microsoft.KeyVault/vaults/alpha';
  const inAlpha = (v, method, p, body) => raw(v, method, `${p}?api-version=7.6`,
    { token: s.data, body, headers: { Host: `alpha.${DOMAIN}:${v.port}` } });

  before(async () => {
    pg = pgStart();
    a = await startVault({ initArgs: ['--store', pg.db, '--vault-domain', DOMAIN] });
    await a.stop();
    bn = await nodeInit(a, 'node-b', pg.db, ['--vault-domain', DOMAIN]);
    await approveJoin(a, bn);
    await a.start();
    b = await serveNode(a, bn);
    const conf = fs.readFileSync(path.join(a.dir, 'p11vault.conf'), 'utf8');
    const resource = /^resource\s*=\s*(\S+)/m.exec(conf)[1];
    s.mgmt = await token(a, a.admin, { scope: 'https://management.p11vault//.default' });
    s.data = await token(b, a.admin, { scope: `${resource}/.default` });
    const subs = await raw(a, 'GET', '/subscriptions?api-version=2019-11-01', { token: s.mgmt });
    s.sub = subs.json.value[0].subscriptionId;
    s.arm = (method, p, body, v) => raw(a, method, `/subscriptions/${s.sub}${p}?api-version=${v}`, { token: s.mgmt, body });
  });
  after(async () => {
    await stopVault(b);
    await stopVault(a);
    pg?.destroy();
  });

  test('a vault made on A serves on B at once; deleted on A, B refuses it at once', async () => {
    let r = await s.arm('PUT', '/resourcegroups/rg-c', { location: 'local' }, '2021-04-01');
    assert.equal(r.status, 201, r.text);
    assert.equal((await inAlpha(b, 'POST', '/keys/k/create', { kty: 'EC', crv: 'P-256' })).status, 404,
      'no such vault yet');
    r = await s.arm('PUT', vaultPath, {
      location: 'local',
      properties: {
        tenantId: a.admin.tenantId, sku: { family: 'A', name: 'standard' },
        accessPolicies: [{ tenantId: a.admin.tenantId, objectId: a.admin.objectId, permissions: { keys: ['all'] } }],
      },
    }, KV);
    assert.equal(r.status, 201, r.text);
    r = await inAlpha(b, 'POST', '/keys/k/create', { kty: 'EC', crv: 'P-256' });
    assert.equal(r.status, 200, r.text);
    assert.equal((await inAlpha(a, 'GET', '/keys/k')).status, 200, 'the key B made in alpha, on A');
    r = await s.arm('DELETE', vaultPath, undefined, KV);
    assert.ok(r.status === 200 || r.status === 204, r.text);
    r = await inAlpha(b, 'GET', '/keys/k');
    assert.equal(r.status, 404, r.text);
  });
});
