// The authorization matrix, generated from one table: every data-plane and
// management endpoint x every kind of caller -> the one expected status.
// Callers: no token, a refused token (bad signature, alg none, expired,
// not yet valid, other audience, other tenant — each otherwise valid for
// the administrator, signed with the vault's own key where that matters),
// an identity holding exactly one permission (one per Azure permission),
// one holding "all", one holding nothing, the first administrator (admin
// role + "all"), and a second administrator (admin role, no access
// policy). A cell is right only if its status is exactly what the table
// says; a row fails naming every wrong cell.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startVault, stopVault, token, keyName, API_VERSION } from './lib/vault.mjs';
import { ALL_PERMS, pool, createIdentity, refusedTokens, rawKA, closeKeepAlive } from './lib/identity.mjs';

const TOKEN_COLUMNS = ['noToken', 'badSignature', 'algNone', 'expired', 'notYetValid', 'otherAudience',
  'otherAudienceIssued', 'otherTenant'];
const CONCURRENCY = 6;
const av = (p) => `${p}${p.includes('?') ? '&' : '?'}api-version=${API_VERSION}`;
const dummyOid = crypto.randomUUID();
const b64u = (b) => Buffer.from(b).toString('base64url');

// ok: the statuses a caller holding the permission may get (the success
// code; or a 4xx other than 401/403 where the body is deliberately minimal,
// e.g. 400 for restoring a blob that is not a backup). setup: runs (as the administrator) only for
// allowed cells, and names the resource the request then targets; denied
// cells target a name that does not exist, so a missing check shows up as
// 404/200 instead of 403.
function table(f) {
  const jwk = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return [
    { name: 'list keys', perm: 'list', method: 'GET', path: () => '/keys', ok: [200] },
    { name: 'list key versions', perm: 'list', method: 'GET', path: () => `/keys/${f.ec}/versions`, ok: [200] },
    { name: 'get key', perm: 'get', method: 'GET', path: () => `/keys/${f.ec}`, ok: [200] },
    { name: 'get key version', perm: 'get', method: 'GET', path: () => `/keys/${f.ec}/${f.ecVer}`, ok: [200] },
    { name: 'update key', perm: 'update', method: 'PATCH', path: () => `/keys/${f.ec}`, body: { attributes: { enabled: true } }, ok: [200] },
    { name: 'update key version', perm: 'update', method: 'PATCH', path: () => `/keys/${f.ec}/${f.ecVer}`, body: { tags: { matrix: 'yes' } }, ok: [200] },
    { name: 'create key (EC P-256)', perm: 'create', method: 'POST', path: () => `/keys/${keyName('mxc')}/create`, body: { kty: 'EC', crv: 'P-256' }, ok: [200] },
    { name: 'import key', perm: 'import', method: 'PUT', path: () => `/keys/${keyName('mxi')}`, body: { key: { ...jwk, key_ops: ['sign', 'verify'] } }, ok: [200] },
    { name: 'delete key', perm: 'delete', method: 'DELETE', path: (r) => `/keys/${r || keyName('mxnone')}`, setup: f.fresh, ok: [200] },
    { name: 'backup key', perm: 'backup', method: 'POST', path: () => `/keys/${f.ec}/backup`, ok: [200] },
    { name: 'restore key (garbage blob)', perm: 'restore', method: 'POST', path: () => '/keys/restore', body: { value: b64u(Buffer.from('not a backup blob')) }, ok: [400] },
    { name: 'rotate key', perm: 'rotate', method: 'POST', path: () => `/keys/${f.ec}/rotate`, ok: [200] },
    { name: 'get rotation policy', perm: 'getrotationpolicy', method: 'GET', path: () => `/keys/${f.ec}/rotationpolicy`, ok: [200] },
    {
      name: 'set rotation policy', perm: 'setrotationpolicy', method: 'PUT', path: () => `/keys/${f.ec}/rotationpolicy`,
      body: { lifetimeActions: [{ trigger: { timeBeforeExpiry: 'P30D' }, action: { type: 'Notify' } }], attributes: { expiryTime: 'P90D' } },
      ok: [200],
    },
    { name: 'encrypt', perm: 'encrypt', method: 'POST', path: () => `/keys/${f.rsa}/encrypt`, body: { alg: 'RSA-OAEP-256', value: b64u(Buffer.alloc(16, 7)) }, ok: [200] },
    { name: 'decrypt', perm: 'decrypt', method: 'POST', path: () => `/keys/${f.rsa}/${f.rsaVer}/decrypt`, body: () => ({ alg: 'RSA-OAEP-256', value: f.ciphertext }), ok: [200] },
    { name: 'wrapKey', perm: 'wrapKey', method: 'POST', path: () => `/keys/${f.rsa}/wrapkey`, body: { alg: 'RSA-OAEP-256', value: b64u(Buffer.alloc(32, 9)) }, ok: [200] },
    { name: 'unwrapKey', perm: 'unwrapKey', method: 'POST', path: () => `/keys/${f.rsa}/${f.rsaVer}/unwrapkey`, body: () => ({ alg: 'RSA-OAEP-256', value: f.wrapped }), ok: [200] },
    { name: 'sign', perm: 'sign', method: 'POST', path: () => `/keys/${f.ec}/${f.ecVer}/sign`, body: { alg: 'ES256', value: b64u(crypto.randomBytes(32)) }, ok: [200] },
    { name: 'verify', perm: 'verify', method: 'POST', path: () => `/keys/${f.ec}/${f.ecVer}/verify`, body: () => ({ alg: 'ES256', digest: f.digest, value: f.signature }), ok: [200] },
    { name: 'list deleted keys', perm: 'list', method: 'GET', path: () => '/deletedkeys', ok: [200] },
    { name: 'get deleted key', perm: 'get', method: 'GET', path: () => `/deletedkeys/${f.deleted}`, ok: [200] },
    { name: 'purge deleted key', perm: 'purge', method: 'DELETE', path: (r) => `/deletedkeys/${r || keyName('mxnone')}`, setup: f.freshDeleted, ok: [204] },
    { name: 'recover deleted key', perm: 'recover', method: 'POST', path: (r) => `/deletedkeys/${r || keyName('mxnone')}/recover`, setup: f.freshDeleted, ok: [200] },
    { name: 'admin: GET /admin/vault', perm: 'admin', method: 'GET', path: () => '/admin/vault', ok: [200] },
    { name: 'admin: PATCH /admin/vault', perm: 'admin', method: 'PATCH', path: () => '/admin/vault', body: { properties: { softDeleteRetentionInDays: 90 } }, ok: [200] },
    { name: 'admin: accessPolicies/add', perm: 'admin', method: 'PUT', path: () => '/admin/vault/accessPolicies/add', body: () => f.policyBody(['get']), ok: [200] },
    { name: 'admin: accessPolicies/replace', perm: 'admin', method: 'PUT', path: () => '/admin/vault/accessPolicies/replace', body: () => f.policyBody(['list']), ok: [200] },
    { name: 'admin: accessPolicies/remove', perm: 'admin', method: 'PUT', path: () => '/admin/vault/accessPolicies/remove', body: () => f.policyBody([]), ok: [200] },
    { name: 'admin: POST /admin/identities', perm: 'admin', method: 'POST', path: () => '/admin/identities', body: { displayName: 'matrix-made' }, ok: [201] },
    { name: 'admin: GET /admin/identities', perm: 'admin', method: 'GET', path: () => '/admin/identities', ok: [200] },
    { name: 'admin: DELETE /admin/identities/{oid}', perm: 'admin', method: 'DELETE', path: (r) => `/admin/identities/${r || crypto.randomUUID()}`, setup: f.freshIdentity, ok: [200] },
    // the ARM-shaped management API: administrators only, ARM's 403 code
    { name: 'arm: list vaults', perm: 'admin', arm: true, method: 'GET', path: () => `/subscriptions/${f.sub}/providers/Microsoft.KeyVault/vaults?api-version=2022-07-01`, ok: [200] },
    { name: 'arm: list resource groups', perm: 'admin', arm: true, method: 'GET', path: () => `/subscriptions/${f.sub}/resourcegroups?api-version=2021-04-01`, ok: [200] },
    { name: 'arm: PUT resource group', perm: 'admin', arm: true, method: 'PUT', path: () => `/subscriptions/${f.sub}/resourcegroups/${keyName('mxrg')}?api-version=2021-04-01`, body: { location: 'local' }, ok: [201] },
    { name: 'arm: PUT identity', perm: 'admin', arm: true, method: 'PUT', path: () => `/subscriptions/${f.sub}/resourceGroups/p11vault/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${keyName('mxid')}?api-version=2023-01-31`, body: { location: 'local' }, ok: [201] },
    { name: 'arm: PUT default vault access policies', perm: 'admin', arm: true, method: 'PUT', path: () => `/subscriptions/${f.sub}/resourceGroups/p11vault/providers/Microsoft.KeyVault/vaults/default/accessPolicies/add?api-version=2022-07-01`, body: () => f.policyBody(['get']), ok: [200] },
  ];
}

// The expected statuses of one cell.
function expected(row, col) {
  if (TOKEN_COLUMNS.includes(col)) return [401];
  if (row.perm === 'admin') return col === 'admin' || col === 'secondAdmin' ? row.ok : [403];
  const allowed = col === 'admin' || col === 'allPerms' || col === `perm:${row.perm}`;
  return allowed ? row.ok : [403];
}

describe('authorization matrix', { timeout: 240000 }, () => {
  let v;
  let adminTok;
  const tokens = {};   // column -> bearer token (undefined: none)
  const mgmtTokens = {}; // column -> a token for the management audience (ARM rows)
  const f = {};
  let rows;
  const columns = [...TOKEN_COLUMNS, ...ALL_PERMS.map((p) => `perm:${p}`), 'allPerms', 'none', 'admin', 'secondAdmin'];

  const adm = async (method, p, body) => {
    const r = await rawKA(v, method, av(p), { token: adminTok, body });
    if (r.status >= 300) throw new Error(`${method} ${p}: ${r.status} ${r.text.slice(0, 200)}`);
    return r.json;
  };

  before(async () => {
    v = await startVault();
    adminTok = await token(v);
    // fixtures
    f.ec = keyName('mxec');
    f.rsa = keyName('mxrsa');
    f.deleted = keyName('mxdel');
    f.ecVer = (await adm('POST', `/keys/${f.ec}/create`, { kty: 'EC', crv: 'P-256' })).key.kid.split('/').pop();
    f.rsaVer = (await adm('POST', `/keys/${f.rsa}/create`, { kty: 'RSA', key_size: 2048 })).key.kid.split('/').pop();
    await adm('POST', `/keys/${f.deleted}/create`, { kty: 'EC', crv: 'P-256' });
    await adm('DELETE', `/keys/${f.deleted}`);
    f.wrapped = (await adm('POST', `/keys/${f.rsa}/${f.rsaVer}/wrapkey`, { alg: 'RSA-OAEP-256', value: b64u(Buffer.alloc(32, 1)) })).value;
    f.ciphertext = (await adm('POST', `/keys/${f.rsa}/${f.rsaVer}/encrypt`, { alg: 'RSA-OAEP-256', value: b64u(Buffer.alloc(16, 2)) })).value;
    f.digest = b64u(crypto.createHash('sha256').update('matrix').digest());
    f.signature = (await adm('POST', `/keys/${f.ec}/${f.ecVer}/sign`, { alg: 'ES256', value: f.digest })).value;
    f.fresh = async () => {
      const n = keyName('mxf');
      await adm('POST', `/keys/${n}/create`, { kty: 'EC', crv: 'P-256' });
      return n;
    };
    f.freshDeleted = async () => {
      const n = await f.fresh();
      await adm('DELETE', `/keys/${n}`);
      return n;
    };
    f.freshIdentity = async () => (await createIdentity(v, adminTok, 'matrix-victim')).objectId;
    // the management API takes tokens for its own audience only
    const mgmt = { scope: 'https://management.p11vault//.default' };
    mgmtTokens.admin = await token(v, v.admin, mgmt);
    const subs = await rawKA(v, 'GET', '/subscriptions?api-version=2019-11-01', { token: mgmtTokens.admin });
    assert.equal(subs.status, 200, subs.text);
    f.sub = subs.json.value[0].subscriptionId;
    f.policyBody = (keys) => ({ properties: { accessPolicies: [{ tenantId: v.admin.tenantId, objectId: dummyOid, permissions: { keys } }] } });

    // callers: identities once, tokens once per identity
    const specs = [...ALL_PERMS.map((p) => [`perm:${p}`, [p], false]), ['allPerms', ['all'], false], ['none', null, false], ['secondAdmin', null, true]];
    await pool(4, specs.map(([col, perms, isAdmin]) => async () => {
      const cred = await createIdentity(v, adminTok, `matrix-${col.replace(':', '-')}`, perms, { isAdmin });
      tokens[col] = await token(v, cred);
      mgmtTokens[col] = await token(v, cred, mgmt);
    }));
    tokens.admin = adminTok;
    const { refused } = await refusedTokens(v, v.admin);
    Object.assign(tokens, refused);
    assert.ok(tokens.otherAudienceIssued, 'the token endpoint issues a storage.azure.com token to test with');
    tokens.noToken = undefined;
    rows = table(f);
  });
  after(async () => { closeKeepAlive(v); await stopVault(v); });

  test('the table has a row for every Azure key permission and covers every caller', () => {
    const perms = new Set(rows.filter((r) => r.perm !== 'admin').map((r) => r.perm));
    assert.deepEqual([...perms].sort(), [...ALL_PERMS].sort());
    assert.equal(columns.length, TOKEN_COLUMNS.length + ALL_PERMS.length + 4);
    for (const c of columns) if (c !== 'noToken') assert.ok(tokens[c], `a token for column ${c}`);
  });

  // One test per row (registered lazily: rows need the fixtures).
  const ROW_NAMES = table(new Proxy({}, { get: () => () => '' })).map((r) => r.name);
  for (const [i, rowName] of ROW_NAMES.entries()) {
    test(`matrix row: ${rowName}`, async () => {
      const row = rows[i];
      assert.equal(row.name, rowName);
      const cells = await pool(CONCURRENCY, columns.map((col) => async () => {
        const want = expected(row, col);
        const resource = row.setup && !want.includes(401) && !want.includes(403) ? await row.setup() : undefined;
        const p = row.perm === 'admin' ? row.path(resource) : av(row.path(resource));
        const body = typeof row.body === 'function' ? row.body() : row.body;
        const tk = row.arm && mgmtTokens[col] !== undefined ? mgmtTokens[col] : tokens[col];
        const r = await rawKA(v, row.method, p, { token: tk, body });
        const problems = [];
        if (!want.includes(r.status)) problems.push(`status ${r.status}, want ${want.join('|')}`);
        // (the management API's 401 is ARM's, without the data plane's challenge)
        if (r.status === 401 && !row.arm && !/^Bearer authorization="[^"]+", resource="[^"]+"$/.test(r.headers['www-authenticate'] || '')) {
          problems.push('401 without the WWW-Authenticate challenge');
        }
        if (r.status === 403 && want.includes(403)) {
          const code = row.arm ? 'AuthorizationFailed' : 'Forbidden';
          if (r.json?.error?.code !== code) problems.push(`403 code ${r.json?.error?.code}`);
          if (row.perm !== 'admin' && !new RegExp(`does not have keys ${row.perm} permission on key vault`).test(r.json?.error?.message || '')) {
            problems.push(`403 message "${r.json?.error?.message}"`);
          }
        }
        return problems.length ? `${col}: ${problems.join('; ')} (${r.text.slice(0, 160)})` : null;
      }));
      const wrong = cells.filter(Boolean);
      assert.equal(wrong.length, 0, `${row.method} ${row.name}: ${wrong.length} wrong cell(s):\n  ${wrong.join('\n  ')}`);
    });
  }
});
