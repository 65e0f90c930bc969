// Crash durability: SIGKILL the server in the middle of a storm of creates,
// rotations, wraps, deletes, recovers, purges and access-policy changes from
// several clients, restart it, and check every acknowledged (2xx) effect is
// there: versions exist and unwrap (or sign) with the ciphertexts wrapped
// after them, deleted keys carry their deletion record, purged keys are
// gone, policies are as last acknowledged. Requests in flight at the kill
// may have happened or not; nothing else may differ, and nothing half-made
// (a listed version whose blob does not work) may be visible. Each client
// owns its key names and its identity, and sends one request at a time, so
// each name's history is a sequence the model can follow.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import https from 'node:https';
import {
  startVault, stopVault, token, p11vault, API_VERSION, b64u, unb64u, sleep,
} from './lib/vault.mjs';

const KILLS = Number(process.env.P11VAULT_CRASH_KILLS || 22);
const CLIENTS = 4;
const NAMES_PER_CLIENT = 3;
const PERM_POOL = ['get', 'list', 'wrapKey', 'unwrapKey', 'sign', 'verify', 'create', 'delete'];
const MAX_CTS_PER_VERSION = 2;

// One HTTPS request on a keep-alive agent. Resolves {status, json, text};
// rejects when the connection breaks before the whole response arrived
// (the outcome is then unknown).
function req(v, agent, method, path, { body, tok } = {}) {
  const p = path.includes('api-version=') ? path : path + (path.includes('?') ? '&' : '?') + `api-version=${API_VERSION}`;
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
        if (!res.complete) { reject(new Error('response cut off')); return; }
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
        resolve({ status: res.statusCode, json, text });
      });
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('aborted')));
    });
    r.setTimeout(20000, () => r.destroy(new Error(`${method} ${path}: timeout`)));
    r.on('error', reject);
    if (payload) r.write(payload);
    r.end();
  });
}

const ok = (r) => r.status >= 200 && r.status < 300;
const versionOf = (kid) => kid.split('/').pop();
const permKey = (perms) => (perms && perms.length ? [...perms].map((p) => p.toLowerCase()).sort().join(',') : 'none');
const pick = (a) => a[Math.floor(Math.random() * a.length)];

describe('crash durability under SIGKILL', { timeout: 240000 }, () => {
  let v;
  let tok;
  let agentOpts;
  const stats = { kills: 0, acked: 0, unknown: 0, rejected: 0, fivexx: 0, verifiedVersions: 0, unwraps: 0, signs: 0, ops: {} };
  const prefix = `crash-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
  const clients = [];

  before(async () => {
    v = await startVault();
    tok = await token(v);
    agentOpts = { keepAlive: true, maxSockets: 1, ca: [v.ca.pem] };
    const agent = new https.Agent(agentOpts);
    for (let c = 0; c < CLIENTS; c++) {
      const r = await req(v, agent, 'POST', '/admin/identities', { body: { displayName: `${prefix}-c${c}` }, tok });
      assert.ok(r.status === 200 || r.status === 201, r.text);
      const keys = [];
      for (let i = 0; i < NAMES_PER_CLIENT; i++) {
        keys.push({
          name: `${prefix}-c${c}-k${i}`,
          kty: i % 2 === 0 ? 'RSA' : 'EC',
          states: new Set(['absent']),
          versions: new Map(), // version -> {cts: [{dek, ct}]}
          maybeExtra: false,   // an unknown create/rotate may have added a version
        });
      }
      clients.push({ id: c, oid: r.json.objectId, perms: new Set(['none']), keys });
    }
    agent.destroy();
  });
  after(async () => {
    if (stats.kills) {
      process.stdout.write(`# crash: ${JSON.stringify(stats)}\n`);
    }
    await stopVault(v);
  });

  const state = (k) => (k.states.size === 1 ? [...k.states][0] : null);

  // One operation; returns false when the outcome is unknown (stop the client).
  async function step(cl, agent, killed) {
    const k = pick(cl.keys);
    const s = state(k);
    let op;
    const roll = Math.random();
    if (roll < 0.1) op = 'policy';
    else if (s === 'absent') op = 'create';
    else if (s === 'deleted') op = Math.random() < 0.55 ? 'purge' : 'recover';
    else if (s === 'live') {
      const many = k.versions.size >= 4;
      const r2 = Math.random();
      if (many ? r2 < 0.5 : r2 < 0.18) op = 'delete';
      else if (r2 < (many ? 0.6 : 0.45)) op = 'rotate';
      else if (r2 < (many ? 0.7 : 0.6)) op = 'create';
      else op = k.kty === 'RSA' ? 'wrap' : 'rotate';
    } else return true;
    stats.ops[op] = (stats.ops[op] || 0) + 1;

    const unknown = (apply) => { stats.unknown += 1; apply(); return false; };
    let r;
    try {
      switch (op) {
        case 'policy': {
          const remove = Math.random() < 0.3;
          const perms = [...new Set(Array.from({ length: 1 + Math.floor(Math.random() * 4) }, () => pick(PERM_POOL)))];
          const body = { properties: { accessPolicies: [{ tenantId: v.admin.tenantId, objectId: cl.oid, permissions: { keys: remove ? [] : perms } }] } };
          if (remove) delete body.properties.accessPolicies[0].permissions.keys;
          const want = remove ? 'none' : permKey(perms);
          try {
            r = await req(v, agent, 'PUT', `/admin/vault/accessPolicies/${remove ? 'remove' : 'replace'}`, { body, tok });
          } catch { return unknown(() => cl.perms.add(want)); }
          if (ok(r)) cl.perms = new Set([want]);
          break;
        }
        case 'create':
        case 'rotate': {
          const body = op === 'rotate' ? undefined : (k.kty === 'RSA' ? { kty: 'RSA', key_size: 2048 } : { kty: 'EC', crv: 'P-256' });
          try {
            r = await req(v, agent, 'POST', `/keys/${k.name}/${op}`, { body, tok });
          } catch { return unknown(() => { k.maybeExtra = true; if (op === 'create') k.states.add('live'); }); }
          if (!ok(r)) break;
          const ver = versionOf(r.json.key.kid);
          k.states = new Set(['live']);
          k.versions.set(ver, { cts: [] });
          if (k.kty === 'RSA' && !killed()) return wrap(k, ver, agent);
          break;
        }
        case 'wrap':
          return wrap(k, pick([...k.versions.keys()]), agent);
        case 'delete':
          try { r = await req(v, agent, 'DELETE', `/keys/${k.name}`, { tok }); } catch { return unknown(() => k.states.add('deleted')); }
          if (ok(r)) k.states = new Set(['deleted']);
          break;
        case 'recover':
          try { r = await req(v, agent, 'POST', `/deletedkeys/${k.name}/recover`, { tok }); } catch { return unknown(() => k.states.add('live')); }
          if (ok(r)) k.states = new Set(['live']);
          break;
        case 'purge':
          try { r = await req(v, agent, 'DELETE', `/deletedkeys/${k.name}`, { tok }); } catch { return unknown(() => k.states.add('absent')); }
          if (ok(r)) { k.states = new Set(['absent']); k.versions.clear(); }
          break;
        default:
          break;
      }
    } catch (e) {
      throw new Error(`client ${cl.id} ${op} ${k.name}: ${e.message}`);
    }
    return settle(r, `${op} ${k.name}`);
  }

  function settle(r, what) {
    if (ok(r)) { stats.acked += 1; return true; }
    if (r.status >= 500) {
      // a 5xx is not an acknowledgement; count it and treat it as unknown
      stats.fivexx += 1;
      throw new Error(`${what}: server error ${r.status} ${r.text.slice(0, 200)}`);
    }
    stats.rejected += 1;
    return true;
  }

  async function wrap(k, ver, agent) {
    if (!ver) return true;
    const dek = crypto.randomBytes(32);
    let r;
    try {
      r = await req(v, agent, 'POST', `/keys/${k.name}/${ver}/wrapkey`, { body: { alg: 'RSA-OAEP-256', value: b64u(dek) }, tok });
    } catch { stats.unknown += 1; return false; }
    if (ok(r)) {
      const cts = k.versions.get(ver)?.cts;
      if (cts) { cts.push({ dek, ct: r.json.value }); if (cts.length > MAX_CTS_PER_VERSION) cts.shift(); }
    }
    return settle(r, `wrap ${k.name}/${ver}`);
  }

  async function storm(durationMs) {
    let isKilled = false;
    const killed = () => isKilled;
    const errors = [];
    const agents = clients.map(() => new https.Agent(agentOpts));
    const loops = clients.map(async (cl, i) => {
      try {
        while (!isKilled) {
          if (!(await step(cl, agents[i], killed))) break;
        }
      } catch (e) { errors.push(e); }
    });
    await sleep(durationMs);
    const child = v.child;
    await new Promise((res) => {
      if (child.exitCode !== null || child.signalCode !== null) { res(); return; }
      child.once('exit', res);
      isKilled = true;
      child.kill('SIGKILL');
    });
    isKilled = true;
    stats.kills += 1;
    await Promise.all(loops);
    for (const a of agents) a.destroy();
    if (errors.length) throw errors[0];
  }

  async function listAll(agent, path) {
    const names = [];
    let next = `${path}?maxresults=25`;
    for (let i = 0; next && i < 50; i++) {
      const r = await req(v, agent, 'GET', next, { tok });
      assert.equal(r.status, 200, `${next}: ${r.text}`);
      for (const it of r.json.value) names.push(it.kid || it.recoveryId);
      next = r.json.nextLink ? (({ pathname, search }) => pathname + search)(new URL(r.json.nextLink)) : null;
    }
    return names;
  }

  async function checkVersion(agent, k, ver) {
    const g = await req(v, agent, 'GET', `/keys/${k.name}/${ver}`, { tok });
    assert.equal(g.status, 200, `listed version ${k.name}/${ver} cannot be read: ${g.text}`);
    stats.verifiedVersions += 1;
    if (k.kty === 'RSA') {
      for (const { dek, ct } of k.versions.get(ver)?.cts || []) {
        const u = await req(v, agent, 'POST', `/keys/${k.name}/${ver}/unwrapkey`, { body: { alg: 'RSA-OAEP-256', value: ct }, tok });
        assert.equal(u.status, 200, `acknowledged ciphertext of ${k.name}/${ver} does not unwrap: ${u.text}`);
        assert.deepEqual(unb64u(u.json.value), dek, `${k.name}/${ver} unwraps to other bytes`);
        stats.unwraps += 1;
      }
      // the blob works: a fresh round trip
      const dek = crypto.randomBytes(16);
      const w = await req(v, agent, 'POST', `/keys/${k.name}/${ver}/wrapkey`, { body: { alg: 'RSA-OAEP', value: b64u(dek) }, tok });
      assert.equal(w.status, 200, `${k.name}/${ver} wrap: ${w.text}`);
      const u = await req(v, agent, 'POST', `/keys/${k.name}/${ver}/unwrapkey`, { body: { alg: 'RSA-OAEP', value: w.json.value }, tok });
      assert.equal(u.status, 200, `${k.name}/${ver} has no working blob: ${u.text}`);
      assert.deepEqual(unb64u(u.json.value), dek);
      stats.unwraps += 1;
    } else {
      const data = crypto.randomBytes(40);
      const digest = crypto.createHash('sha256').update(data).digest();
      const s = await req(v, agent, 'POST', `/keys/${k.name}/${ver}/sign`, { body: { alg: 'ES256', value: b64u(digest) }, tok });
      assert.equal(s.status, 200, `${k.name}/${ver} has no working blob: ${s.text}`);
      const pub = crypto.createPublicKey({ key: { kty: 'EC', crv: g.json.key.crv, x: g.json.key.x, y: g.json.key.y }, format: 'jwk' });
      assert.ok(crypto.verify('sha256', data, { key: pub, dsaEncoding: 'ieee-p1363' }, unb64u(s.json.value)),
        `${k.name}/${ver} signs with another key than the one it publishes`);
      stats.signs += 1;
    }
  }

  async function verify(round) {
    const agent = new https.Agent(agentOpts);
    try {
      const live = new Set((await listAll(agent, '/keys')).map((kid) => kid.split('/').pop()));
      const deleted = new Set((await listAll(agent, '/deletedkeys')).map((rid) => rid.split('/').pop()));
      const vault = await req(v, agent, 'GET', '/admin/vault', { tok });
      assert.equal(vault.status, 200, vault.text);
      const pols = new Map(vault.json.properties.accessPolicies.map((p) => [p.objectId, permKey(p.permissions?.keys)]));
      for (const cl of clients) {
        const actual = pols.get(cl.oid) || 'none';
        assert.ok(cl.perms.has(actual), `round ${round}: access policy of client ${cl.id} is ${actual}, acknowledged/possible: ${[...cl.perms]}`);
        cl.perms = new Set([actual]);
        for (const k of cl.keys) {
          const g = await req(v, agent, 'GET', `/keys/${k.name}`, { tok });
          let actualState;
          if (g.status === 200) actualState = 'live';
          else {
            assert.equal(g.status, 404, `GET /keys/${k.name}: ${g.text}`);
            const d = await req(v, agent, 'GET', `/deletedkeys/${k.name}`, { tok });
            if (d.status === 200) {
              actualState = 'deleted';
              for (const f of ['recoveryId', 'deletedDate', 'scheduledPurgeDate']) {
                assert.ok(d.json[f], `deleted key ${k.name} lacks ${f} (deletion record): ${d.text}`);
              }
              const ver = versionOf(d.json.key.kid);
              assert.ok(k.versions.has(ver) || k.maybeExtra, `deleted ${k.name} shows unknown version ${ver}`);
            } else {
              assert.equal(d.status, 404, `GET /deletedkeys/${k.name}: ${d.text}`);
              actualState = 'absent';
            }
          }
          assert.ok(k.states.has(actualState),
            `round ${round}: ${k.name} is ${actualState}, but the acknowledged/possible states are ${[...k.states]}`);
          assert.equal(live.has(k.name), actualState === 'live', `${k.name} in the /keys list vs its state ${actualState}`);
          assert.equal(deleted.has(k.name), actualState === 'deleted', `${k.name} in the /deletedkeys list vs its state ${actualState}`);
          k.states = new Set([actualState]);
          if (actualState === 'absent') { k.versions.clear(); k.maybeExtra = false; continue; }
          if (actualState === 'deleted') continue;
          const listed = (await listAll(agent, `/keys/${k.name}/versions`)).map(versionOf);
          const listedSet = new Set(listed);
          for (const ver of k.versions.keys()) {
            assert.ok(listedSet.has(ver), `round ${round}: acknowledged version ${k.name}/${ver} is missing after the crash`);
          }
          for (const ver of listed) {
            if (!k.versions.has(ver)) {
              assert.ok(k.maybeExtra, `round ${round}: ${k.name}/${ver} appeared with no create/rotate in flight`);
              k.versions.set(ver, { cts: [] });
            }
          }
          assert.ok(listedSet.has(versionOf(g.json.key.kid)), `${k.name}: the current version is not in its version list`);
          k.maybeExtra = false;
          for (const ver of listed) await checkVersion(agent, k, ver);
        }
      }
    } finally {
      agent.destroy();
    }
  }

  test(`${KILLS} SIGKILLs mid-storm lose no acknowledged write and leave nothing half-made`, async () => {
    const t0 = Date.now();
    for (let round = 1; round <= KILLS; round++) {
      await storm(100 + Math.floor(Math.random() * 500));
      await v.start();
      await verify(round);
    }
    stats.seconds = Math.round((Date.now() - t0) / 1000);
    assert.equal(stats.kills, KILLS);
    assert.ok(stats.acked >= KILLS, `too little work acknowledged: ${JSON.stringify(stats)}`);
    assert.equal(stats.fivexx, 0);
  });

  test('the hash-chained audit log verifies after the crashes', async () => {
    await v.stop();
    const r = await p11vault(['audit', 'verify', '--data', v.dir], { timeoutMs: 30000 });
    assert.equal(r.code, 0, `audit verify: ${r.stdout}${r.stderr}`);
  });
});
