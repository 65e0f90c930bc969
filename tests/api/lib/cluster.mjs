// Cluster helpers for the API tests: a throwaway PostgreSQL
// (tests/tools/pgtmp.sh), a first vault made on it with `init --store`,
// and nodes made with `node init --store`, approved on a stopped node of
// the cluster and joined (docs/cluster.md). Every node serves the first
// vault's URL on a port of its own; raw() and token() reach a node by
// its port.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { REPO, openVault, p11vault, freePort } from './vault.mjs';

const PGTMP = path.join(REPO, 'tests', 'tools', 'pgtmp.sh');
export const PGBIN = '/usr/lib/postgresql/15/bin';
export const HAVE_PG = fs.existsSync(path.join(PGBIN, 'initdb'));

export const shares = (list, n) => list.slice(0, n).join('\n') + '\n';

export function pgStart() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p11vault-pgc-'));
  const db = execFileSync(PGTMP, ['start', dir], { stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
  return { dir, db, destroy: () => execFileSync(PGTMP, ['destroy', dir], { stdio: 'ignore' }) };
}

export function psql(db, sql) {
  return execFileSync(path.join(PGBIN, 'psql'), [db, '-Atc', sql], { stdio: ['ignore', 'pipe', 'pipe'] })
    .toString().trim();
}

// `node init --store db` of a node named name for the cluster of a (a
// handle of startVault) -> {dir, out (node init's JSON), req}.
export async function nodeInit(a, name, db, extra = []) {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `p11vault-${name}-`));
  await fsp.rm(dir, { recursive: true });
  const r = await p11vault(['node', 'init', '--data', dir, '--name', name, '--store', db,
    '--vault-url', a.url, '--tenant-id', a.admin.tenantId,
    '--tls-ca-cert', a.ca.cert, '--tls-ca-key', a.ca.key, ...extra]);
  if (r.code !== 0) throw new Error(`node init ${name}: ${r.stderr}`);
  return { dir, name, out: JSON.parse(r.stdout), req: path.join(dir, 'join-request.json') };
}

// Approves node n on the stopped node a (its shares), joins n with its
// own, and gives n the first administrator's credentials file.
export async function approveJoin(a, n) {
  const bundle = path.join(n.dir, 'bundle.json');
  const ap = await p11vault(['node', 'approve', '--data', a.dir, '--request', n.req,
    '--fingerprint', n.out.fingerprint, '--out', bundle], { input: shares(a.shares || a.init.unsealKeyShares, 3) });
  if (ap.code !== 0) throw new Error(`node approve ${n.name}: ${ap.stderr}`);
  const j = await p11vault(['node', 'join', '--data', n.dir, '--bundle', bundle],
    { input: shares(n.out.unsealKeyShares, 3) });
  if (j.code !== 0) throw new Error(`node join ${n.name}: ${j.stderr}`);
  await fsp.copyFile(path.join(a.dir, 'admin.json'), path.join(n.dir, 'admin.json'));
}

// Serves node n (approved and joined) on a port of its own.
export async function serveNode(a, n, { extraArgs = [] } = {}) {
  const v = await openVault(n.dir, { port: await freePort(), url: a.url, extraArgs });
  v.name = n.name;
  return v;
}
