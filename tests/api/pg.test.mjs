// The PostgreSQL store (vault/store_pg.c, docs/cluster.md): a vault made
// with `init --store CONNINFO` keeps its metadata in a throwaway
// PostgreSQL server this file starts once (tests/tools/pgtmp.sh: initdb
// in a temporary directory, a unix socket there, as the postgres user).
// The SDK's key flows run on it, a restart keeps everything, the
// database stopped answers 503 with Retry-After (never a 500) and started
// again serves without restarting p11vault; a bad or unreachable database
// at init or at start is a clear error that changes nothing and never
// shows the connection string's password.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  REPO, startVault, stopVault, keyClient, cryptoClient, raw, token, keyName, p11vault,
  testCa, freePort, rejectsWithStatus,
} from './lib/vault.mjs';

const PGTMP = path.join(REPO, 'tests', 'tools', 'pgtmp.sh');
const HAVE_PG = fs.existsSync('/usr/lib/postgresql/15/bin/initdb');
const POLL = { intervalInMs: 200 };
const pg = (cmd, dir) => execFileSync(PGTMP, [cmd, dir], { stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();

describe('the PostgreSQL store', {
  timeout: 240000,
  skip: HAVE_PG ? false : 'PostgreSQL 15 is not installed (/usr/lib/postgresql/15/bin): make deps',
}, () => {
  let pgdir;
  let db;
  let v;
  const s = {};

  before(async () => {
    pgdir = fs.mkdtempSync(path.join(os.tmpdir(), 'p11vault-pg-'));
    db = pg('start', pgdir);
    v = await startVault({ initArgs: ['--store', db] });
  });
  after(async () => {
    await stopVault(v);
    if (pgdir) pg('destroy', pgdir);
  });

  test('the config names the database; DIR holds no vault.db', () => {
    const conf = fs.readFileSync(path.join(v.dir, 'p11vault.conf'), 'utf8');
    assert.match(conf, /^store ?= ?host=/m);
    assert.equal(fs.existsSync(path.join(v.dir, 'vault.db')), false);
    const tables = execFileSync('/usr/lib/postgresql/15/bin/psql',
      [db, '-Atc', "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'p11vault'"])
      .toString().trim();
    assert.ok(Number(tables) >= 8, `tables in schema p11vault: ${tables}`);
  });

  test('the SDK key flows: create, versions, sign/verify, wrap/unwrap, update, list, delete, recover', async () => {
    const kc = keyClient(v);
    s.rsa = keyName('pg-rsa');
    const r1 = await kc.createRsaKey(s.rsa, { keySize: 2048 });
    s.r2 = await kc.createRsaKey(s.rsa, { keySize: 2048, tags: { gen: '2' } });
    s.ec = await kc.createEcKey(keyName('pg-ec'), { curve: 'P-256' });
    s.dek = crypto.randomBytes(32);
    s.wrapped = (await cryptoClient(v, s.r2.id).wrapKey('RSA-OAEP-256', s.dek)).result;
    const u = await cryptoClient(v, s.r2.id).unwrapKey('RSA-OAEP-256', s.wrapped);
    assert.deepEqual(Buffer.from(u.result), s.dek);
    const digest = crypto.createHash('sha256').update('pg').digest();
    const sig = await cryptoClient(v, s.ec.id).sign('ES256', digest);
    assert.equal((await cryptoClient(v, s.ec.id).verify('ES256', digest, sig.result)).result, true);
    const versions = [];
    for await (const p of kc.listPropertiesOfKeyVersions(s.rsa)) versions.push(p.version);
    assert.deepEqual(versions.sort(), [r1.properties.version, s.r2.properties.version].sort());
    const upd = await kc.updateKeyProperties(s.rsa, r1.properties.version, { enabled: false, tags: { off: '1' } });
    assert.equal(upd.properties.enabled, false);
    const names = [];
    for await (const p of kc.listPropertiesOfKeys()) names.push(p.name);
    assert.ok(names.includes(s.rsa) && names.includes(s.ec.name), names.join(','));
    s.del = keyName('pg-del');
    await kc.createRsaKey(s.del);
    await (await kc.beginDeleteKey(s.del, POLL)).pollUntilDone();
    await rejectsWithStatus(kc.getKey(s.del), 404, assert);
    s.rec = keyName('pg-rec');
    await kc.createEcKey(s.rec, { curve: 'P-384' });
    await (await kc.beginDeleteKey(s.rec, POLL)).pollUntilDone();
    await (await kc.beginRecoverDeletedKey(s.rec, POLL)).pollUntilDone();
    assert.equal((await kc.getKey(s.rec)).name, s.rec);
  });

  test('a restart keeps everything', async () => {
    await v.restart();
    const kc = keyClient(v);
    const latest = await kc.getKey(s.rsa);
    assert.equal(latest.properties.version, s.r2.properties.version);
    assert.deepEqual(latest.properties.tags, { gen: '2' });
    const u = await cryptoClient(v, s.r2.id).unwrapKey('RSA-OAEP-256', s.wrapped);
    assert.deepEqual(Buffer.from(u.result), s.dek);
    assert.equal((await kc.getDeletedKey(s.del)).name, s.del);
    assert.equal((await kc.getKey(s.rec)).name, s.rec);
  });

  test('the database stopped: 503 with Retry-After, never a 500; started again: served without a restart', async () => {
    const tok = await token(v);
    pg('stop', pgdir);
    try {
      const list = await raw(v, 'GET', '/keys?maxresults=5', { apiVersion: true, token: tok });
      assert.equal(list.status, 503, JSON.stringify(list.json));
      assert.ok(Number(list.headers['retry-after']) >= 1, `Retry-After: ${list.headers['retry-after']}`);
      const create = await raw(v, 'POST', `/keys/${keyName('pg-down')}/create`,
        { apiVersion: true, token: tok, body: { kty: 'EC', crv: 'P-256' } });
      assert.equal(create.status, 503, JSON.stringify(create.json));
      assert.ok(create.headers['retry-after']);
      const health = await raw(v, 'GET', '/healthz');
      assert.notEqual(health.status, 500);
      assert.notEqual(health.status, 200);
    } finally {
      pg('start', pgdir);
    }
    // the node answers again once its listener has reconnected and renewed
    // its lease (docs/cluster.md): until then 503, never anything else
    const t0 = Date.now();
    for (;;) {
      const h = await raw(v, 'GET', '/healthz');
      if (h.status === 200) break;
      assert.equal(h.status, 503, `healthz while reconnecting: ${h.status}`);
      assert.ok(Date.now() - t0 < 30000, 'not served again within 30 s of the restart');
      await new Promise((res) => setTimeout(res, 100));
    }
    const kc = keyClient(v);
    const k = await kc.createEcKey(keyName('pg-back'), { curve: 'P-256' });
    assert.equal((await kc.getKey(k.name)).properties.version, k.properties.version);
    assert.equal((await raw(v, 'GET', '/healthz')).status, 200);
    assert.equal(v.child.exitCode, null, 'the server kept running');
    assert.doesNotMatch(v.stderr, /password=|Sekr1t/);
  });

  test('an unreachable database at start: a clear error, nothing changed', async () => {
    await v.stop();
    pg('stop', pgdir);
    const before = fs.readFileSync(path.join(v.dir, 'p11vault.conf'));
    try {
      const r = await p11vault(['serve', '--data', v.dir, '--listen', `127.0.0.1:${await freePort()}`],
        { timeoutMs: 60000 });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /PostgreSQL store cannot be opened/);
    } finally {
      pg('start', pgdir);
    }
    assert.deepEqual(fs.readFileSync(path.join(v.dir, 'p11vault.conf')), before);
    await v.start();
    assert.equal((await keyClient(v).getKey(s.rsa)).name, s.rsa);
  });

  test('init with a bad or unreachable database: a clear error, nothing made, no password shown', async () => {
    const ca = await testCa();
    const cases = [
      [`host=${pgdir}/nowhere port=5432 user=postgres password=Sekr1tPw dbname=postgres`, /cannot be reached/],
      ['postgresql://postgres:Sekr1tPw@[::1/postgres', /not a valid PostgreSQL connection string/],
      [`${db} password=Sekr1tPw`, /already holds a p11vault store/],
    ];
    for (const [addr, want] of cases) {
      const dir = path.join(os.tmpdir(), `p11vault-pg-init-${crypto.randomBytes(4).toString('hex')}`);
      const r = await p11vault(['init', '--data', dir, '--tls-ca-cert', ca.cert, '--tls-ca-key', ca.key,
        '--store', addr]);
      assert.notEqual(r.code, 0, addr);
      assert.match(r.stderr, want);
      assert.match(r.stderr, /nothing was changed/);
      assert.doesNotMatch(r.stdout + r.stderr, /Sekr1tPw/);
      assert.equal(fs.existsSync(dir), false, `${dir} was made`);
    }
  });
});
