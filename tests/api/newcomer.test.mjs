// What a newcomer following docs/ does (issue 14, point 8): a vault URL
// naming a host that does not resolve on this machine, resource= set in
// the config so that the SDKs' strict challenge check could pass, and
// Prometheus scraping /metrics without the administrator's token.
//
// * init writes listen=0.0.0.0:PORT for such a URL, and serve needs no
//   --listen; a data directory from before (listen=NAME:PORT) serves the
//   same way.
// * admin commands with --data reach the local server without resolving
//   the name (the certificate is still checked against it) and ask for a
//   token for the config's resource; with --vault-url --admin they take
//   the resource from the vault's challenge. No --resource needed.
// * metrics_listen=127.0.0.1:PORT serves GET /metrics over plain HTTP
//   without a token, and nothing else.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dns from 'node:dns';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { BIN, freePort, p11vault } from './lib/vault.mjs';

const HOST = 'vault.example.test'; // .test: reserved, never resolves

function serve(dir, args = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ['serve', '--data', dir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`serve did not start: ${err}`)); }, 60000);
    child.stderr.on('data', (d) => { err += d; });
    child.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('listening on '));
      if (line) { clearTimeout(timer); resolve({ child, line }); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`serve exited ${code}: ${err}`)); });
  });
}

function stop(s) {
  if (!s || s.child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => { s.child.removeAllListeners('exit'); s.child.on('exit', resolve); s.child.kill('SIGTERM'); });
}

function get(mod, options) {
  return new Promise((resolve, reject) => {
    const req = mod.request(options, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.setTimeout(10000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

function setConf(dir, key, value) {
  const p = path.join(dir, 'p11vault.conf');
  const lines = fs.readFileSync(p, 'utf8').split('\n').filter((l) => l && !l.startsWith(`${key}=`));
  if (value !== null) lines.push(`${key}=${value}`);
  fs.writeFileSync(p, lines.join('\n') + '\n', { mode: 0o600 });
}

describe('a newcomer: a host name in the vault URL, resource= set, Prometheus', { timeout: 180000 }, () => {
  let dir; let port; let mport; let srv; let ca;

  before(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'p11vault-test-'));
    port = await freePort();
    mport = await freePort();
    const init = await p11vault(['init', '--data', dir, '--vault-url', `https://${HOST}:${port}`]);
    assert.equal(init.code, 0, init.stderr);
    ca = fs.readFileSync(path.join(dir, 'tls', 'ca.pem'));
    setConf(dir, 'resource', `https://${HOST}`);
    setConf(dir, 'metrics_listen', `127.0.0.1:${mport}`);
    srv = await serve(dir);
  });

  after(async () => {
    await stop(srv);
    if (dir && !process.env.P11VAULT_KEEP_TEST_DIRS) await fsp.rm(dir, { recursive: true, force: true });
  });

  test('the name does not resolve here (the premise)', async () => {
    await assert.rejects(dns.promises.lookup(HOST));
  });

  test('init writes listen=0.0.0.0:PORT; serve without --listen listens there', async () => {
    const conf = fs.readFileSync(path.join(dir, 'p11vault.conf'), 'utf8');
    assert.match(conf, new RegExp(`^listen=0\\.0\\.0\\.0:${port}$`, 'm'));
    assert.equal(srv.line, `listening on https://0.0.0.0:${port}`);
    const r = await get(https, { host: '127.0.0.1', port, path: '/healthz', ca, servername: HOST });
    assert.equal(r.status, 200);
  });

  test('admin commands with --data reach it without DNS and with the config\'s resource', async () => {
    const r = await p11vault(['identity', 'list', '--data', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(JSON.parse(r.stdout).value.some((i) => i.isAdmin));
  });

  test('--vault-url --admin takes the resource from the vault\'s challenge', async () => {
    const where = ['--vault-url', `https://127.0.0.1:${port}`, '--admin', path.join(dir, 'admin.json'),
      '--ca', path.join(dir, 'tls', 'ca.pem')];
    const r = await p11vault(['vault', 'show', ...where]);
    assert.equal(r.code, 0, r.stderr);
    // the vault does refuse the default audience: the check above is real
    const wrong = await p11vault(['vault', 'show', ...where, '--resource', 'https://vault.azure.net']);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /401/);
  });

  test('metrics_listen serves GET /metrics over HTTP without a token, and nothing else', async () => {
    const m = await get(http, { host: '127.0.0.1', port: mport, path: '/metrics' });
    assert.equal(m.status, 200);
    assert.match(m.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    assert.match(m.body, /^p11vault_http_requests_total\{operation="IdentityList",status="200"\} \d+$/m);
    for (const p of ['/keys?api-version=7.6', '/admin/vault', '/', '/metrics/x']) {
      assert.equal((await get(http, { host: '127.0.0.1', port: mport, path: p })).status, 404, p);
    }
    assert.equal((await get(http, { host: '127.0.0.1', port: mport, path: '/metrics', method: 'POST' })).status, 405);
    // the HTTPS /metrics still wants the administrator
    const tls = await get(https, { host: '127.0.0.1', port, path: '/metrics', ca, servername: HOST });
    assert.equal(tls.status, 401);
  });

  test('a data directory from before (listen=NAME:PORT) serves on all addresses', async () => {
    await stop(srv);
    srv = null;
    setConf(dir, 'listen', `${HOST}:${port}`);
    srv = await serve(dir);
    assert.equal(srv.line, `listening on https://0.0.0.0:${port}`);
    const r = await p11vault(['identity', 'list', '--data', dir]);
    assert.equal(r.code, 0, r.stderr);
  });

  test('a config the CLI cannot read is an error, not the default resource', async () => {
    const p = path.join(dir, 'p11vault.conf');
    const saved = fs.readFileSync(p);
    fs.appendFileSync(p, 'no such line\n');
    try {
      const r = await p11vault(['identity', 'list', '--data', dir]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /p11vault\.conf/);
    } finally {
      fs.writeFileSync(p, saved, { mode: 0o600 });
    }
  });
});
