// Several nodes on one PostgreSQL store (docs/cluster.md): a first vault
// A made with `init --store`, nodes B and C made with `node init --store`
// (they join the store, make no schema), approved on A and joined; every
// node serves the same vaults and keys.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  startVault, stopVault, keyClient, cryptoClient, raw, token, keyName, p11vault, testCa,
} from './lib/vault.mjs';
import { HAVE_PG, pgStart, nodeInit, approveJoin, serveNode } from './lib/cluster.mjs';

const SKIP = HAVE_PG ? false : 'PostgreSQL 15 is not installed (/usr/lib/postgresql/15/bin): make deps';

describe('a cluster of nodes on one PostgreSQL store', { timeout: 240000, skip: SKIP }, () => {
  let pg; let a; const nodes = {}; const s = {};

  before(async () => {
    pg = pgStart();
    a = await startVault({ initArgs: ['--store', pg.db] });
    s.key = await keyClient(a).createRsaKey(keyName('cl'), { keySize: 2048 });
    s.dek = crypto.randomBytes(32);
    s.ct = (await cryptoClient(a, s.key.id).wrapKey('RSA-OAEP', s.dek)).result;
    await a.stop();
    for (const name of ['node-b', 'node-c']) {
      nodes[name] = await nodeInit(a, name, pg.db);
      await approveJoin(a, nodes[name]);
    }
    await a.start();
    s.b = await serveNode(a, nodes['node-b']);
    s.c = await serveNode(a, nodes['node-c']);
  });
  after(async () => {
    for (const v of [s.b, s.c]) await stopVault(v);
    await stopVault(a);
    pg?.destroy();
  });

  test('node init --store joins the store: store= in its config, no vault.db, no second schema', () => {
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
      const tok = await token(v);
      const r = await raw(v, 'POST', `/keys/${s.key.name}/${s.key.properties.version}/unwrapkey`,
        { apiVersion: true, token: tok, body: { alg: 'RSA-OAEP', value: Buffer.from(s.ct).toString('base64url') } });
      assert.equal(r.status, 200, `${v.port}: ${r.text}`);
      assert.deepEqual(Buffer.from(r.json.value, 'base64url'), s.dek);
    }
  });
});
