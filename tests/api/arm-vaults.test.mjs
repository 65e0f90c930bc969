// Several vaults through the ARM-shaped management API: two vaults made
// with PUT .../Microsoft.KeyVault/vaults/{name}, the same key name in both
// being two keys (the JS SDK at https://NAME.<vault-domain>:PORT with its
// strict challenge-resource check on), an identity granted on one vault
// refused on the other, audit lines naming the vault, soft delete (keys
// unreachable, name reserved), recovery (keys and policies back), purge
// refused under purge protection and allowed otherwise (the vault's files
// gone), a restart keeping everything, and bad input answered in ARM's
// envelope with nothing changed.
//
// Names resolve in this test process only: dns.lookup answers
// *.vault.p11vault.test with 127.0.0.1 (the machine's /etc/hosts is not
// touched); the server needs no resolution (Host routing).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dns from 'node:dns';
import fs from 'node:fs';
import path from 'node:path';
import { ClientSecretCredential } from '@azure/identity';
import { KeyClient } from '@azure/keyvault-keys';
import { startVault, stopVault, raw, token, p11vault } from './lib/vault.mjs';

const DOMAIN = 'vault.p11vault.test';
const KV = '2022-07-01';
const RG = '2021-04-01';
const MSI = '2023-01-31';
const MGMT_SCOPE = 'https://management.p11vault//.default';

const origLookup = dns.lookup;
function fakeDns() {
  dns.lookup = function lookup(host, opts, cb) {
    if (typeof opts === 'function') { cb = opts; opts = {}; }
    if (typeof host === 'string' && (host === DOMAIN || host.endsWith(`.${DOMAIN}`))) {
      if (opts && opts.all) return process.nextTick(cb, null, [{ address: '127.0.0.1', family: 4 }]);
      return process.nextTick(cb, null, '127.0.0.1', 4);
    }
    return origLookup.call(this, host, opts, cb);
  };
}

describe('several vaults through the ARM-shaped management API', { timeout: 180000 }, () => {
  let v;
  let tok;     // the administrator's management token
  let dataTok; // the administrator's data-plane token (the /admin API)
  let sub;
  const arm = async (method, p, body, { apiVersion, who } = {}) => {
    const q = apiVersion === null ? '' : `${p.includes('?') ? '&' : '?'}api-version=${apiVersion}`;
    return raw(v, method, `/subscriptions/${sub}${p}${q}`, { body, token: who || tok });
  };
  const vaultPath = (rg, name) => `/resourceGroups/${rg}/providers/Microsoft.KeyVault/vaults/${name}`;
  const vaultBody = (extra = {}, policies) => ({
    location: 'local',
    tags: { team: 'storage' },
    properties: {
      tenantId: v.admin.tenantId,
      sku: { family: 'A', name: 'standard' },
      accessPolicies: policies || [{ tenantId: v.admin.tenantId, objectId: v.admin.objectId, permissions: { keys: ['all'], secrets: ['all'] } }],
      ...extra,
    },
  });
  const urlOf = (name) => `https://${name}.${DOMAIN}:${v.port}`;
  const cred = (who) => new ClientSecretCredential(who.tenantId || v.admin.tenantId, who.clientId, who.clientSecret,
    { authorityHost: v.url, disableInstanceDiscovery: true });
  // the SDK's strict challenge check stays on (no disableChallengeResourceVerification)
  const client = (name, who = v.admin) => new KeyClient(urlOf(name), cred(who), { retryOptions: { maxRetries: 0 } });
  const auditLines = () => fs.readFileSync(path.join(v.dir, 'audit', 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const vaultDirs = () => (fs.existsSync(path.join(v.dir, 'vaults')) ? fs.readdirSync(path.join(v.dir, 'vaults')) : []);
  let app;

  before(async () => {
    fakeDns();
    v = await startVault({ initArgs: ['--vault-domain', DOMAIN] });
    // the management API takes tokens for its own audience only
    tok = await token(v, v.admin, { scope: MGMT_SCOPE });
    dataTok = await token(v, v.admin, { scope: `https://${DOMAIN}:${v.port}/.default` });
    const subs = await raw(v, 'GET', '/subscriptions?api-version=2019-11-01', { token: tok });
    assert.equal(subs.status, 200, subs.text);
    sub = subs.json.value[0].subscriptionId;
  });
  after(async () => {
    dns.lookup = origLookup;
    await stopVault(v);
  });

  test('resource groups and two vaults, each at its own host', async () => {
    let r = await arm('PUT', '/resourcegroups/rg-a', { location: 'local', tags: { env: 'test' } }, { apiVersion: RG });
    assert.equal(r.status, 201, r.text);
    r = await arm('PUT', '/resourcegroups/rg-a', { location: 'local', tags: { env: 'test' } }, { apiVersion: RG });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.properties.provisioningState, 'Succeeded');
    r = await arm('GET', '/resourcegroups', undefined, { apiVersion: RG });
    assert.deepEqual(r.json.value.map((g) => g.name).sort(), ['p11vault', 'rg-a']);

    r = await arm('PUT', vaultPath('rg-a', 'alpha'), vaultBody({ enablePurgeProtection: true }), { apiVersion: KV });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.properties.provisioningState, 'Succeeded');
    assert.equal(r.json.properties.vaultUri, `${urlOf('alpha')}/`);
    assert.equal(r.json.properties.enablePurgeProtection, true);
    assert.equal(r.json.id, `/subscriptions/${sub}/resourceGroups/rg-a/providers/Microsoft.KeyVault/vaults/alpha`);
    r = await arm('PUT', vaultPath('rg-a', 'beta'), vaultBody({ softDeleteRetentionInDays: 7 }), { apiVersion: KV });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.properties.softDeleteRetentionInDays, 7);
    // idempotent PUT: the same document again is 200 and the same vault
    const again = await arm('PUT', vaultPath('rg-a', 'beta'), vaultBody({ softDeleteRetentionInDays: 7 }), { apiVersion: KV });
    assert.equal(again.status, 200, again.text);
    assert.deepEqual(again.json, r.json);

    r = await arm('GET', '/providers/Microsoft.KeyVault/vaults', undefined, { apiVersion: KV });
    assert.deepEqual(r.json.value.map((x) => x.name).sort(), ['alpha', 'beta', 'default']);
    r = await arm('GET', "/resources?$filter=resourceType%20eq%20'Microsoft.KeyVault%2Fvaults'", undefined, { apiVersion: '2015-11-01' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.value.map((x) => x.name).sort(), ['alpha', 'beta', 'default']);
    r = await arm('GET', '/resourceGroups/rg-a/providers/Microsoft.KeyVault/vaults', undefined, { apiVersion: KV });
    assert.deepEqual(r.json.value.map((x) => x.name).sort(), ['alpha', 'beta']);
  });

  test('the same key name in two vaults is two keys (SDK, strict challenge check)', async () => {
    const a = await client('alpha').createRsaKey('k1');
    const b = await client('beta').createRsaKey('k1');
    assert.equal(a.id.startsWith(`${urlOf('alpha')}/keys/k1/`), true, a.id);
    assert.equal(b.id.startsWith(`${urlOf('beta')}/keys/k1/`), true, b.id);
    assert.notDeepEqual(Buffer.from(a.key.n), Buffer.from(b.key.n));
    await assert.rejects(client('default').getKey('k1'), (e) => e.statusCode === 404);
    const lines = auditLines().filter((l) => l.operation === 'create' && l.httpStatus === 200);
    assert.deepEqual(lines.map((l) => l.vault).sort(), ['alpha', 'beta']);
    // the CLI: --vault-name NAME is https://NAME.<vault-domain>:PORT, --id of a child vault is this appliance's
    const c = await p11vault(['key', 'create', '--vault-name', 'Beta', '--name', 'cli1', '--data', v.dir]);
    assert.equal(c.code, 0, c.stderr);
    const kid = JSON.parse(c.stdout).key.kid;
    assert.equal(kid.startsWith(`${urlOf('beta')}/keys/cli1/`), true, kid);
    const sh = await p11vault(['key', 'show', '--id', kid, '--data', v.dir]);
    assert.equal(sh.code, 0, sh.stderr);
    assert.equal(JSON.parse(sh.stdout).key.kid, kid);
    const d = await p11vault(['key', 'show', '--vault-name', 'default', '--name', 'cli1', '--data', v.dir]);
    assert.notEqual(d.code, 0); // the default vault has no key cli1
    const bad = await p11vault(['key', 'show', '--id', `https://beta.elsewhere.test:${v.port}/keys/cli1`, '--data', v.dir]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /not a vault of this appliance/);
  });

  test('an identity granted on one vault gets 403 on the other', async () => {
    let r = await arm('PUT', '/resourceGroups/rg-a/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app1',
      { location: 'local' }, { apiVersion: MSI });
    assert.equal(r.status, 201, r.text);
    const { principalId, clientId, tenantId } = r.json.properties;
    assert.equal(tenantId, v.admin.tenantId);
    r = await arm('PUT', '/resourceGroups/rg-a/providers/Microsoft.ManagedIdentity/userAssignedIdentities/App1',
      { location: 'local' }, { apiVersion: MSI });
    assert.equal(r.status, 200, r.text); // names are case-insensitive: the same identity
    assert.equal(r.json.properties.principalId, principalId);
    const c = await raw(v, 'POST', `/admin/identities/${principalId}/credential`, { token: dataTok });
    assert.equal(c.status, 200, c.text);
    app = { tenantId, clientId, clientSecret: c.json.clientSecret, objectId: principalId };
    r = await arm('PUT', `${vaultPath('rg-a', 'alpha')}/accessPolicies/add`,
      { properties: { accessPolicies: [{ tenantId, objectId: principalId, permissions: { keys: ['get', 'wrapKey', 'unwrapKey'] } }] } },
      { apiVersion: KV });
    assert.equal(r.status, 200, r.text);
    assert.equal((await client('alpha', app).getKey('k1')).name, 'k1');
    await assert.rejects(client('beta', app).getKey('k1'), (e) => e.statusCode === 403);
    await assert.rejects(client('default', app).getKey('k1'), (e) => e.statusCode === 403);
    // not an administrator: the management API refuses
    const appTok = await token(v, app, { scope: MGMT_SCOPE });
    r = await arm('GET', '/providers/Microsoft.KeyVault/vaults', undefined, { apiVersion: KV, who: appTok });
    assert.equal(r.status, 403, r.text);
    assert.equal(r.json.error.code, 'AuthorizationFailed');
  });

  test('bad input: ARM\'s envelope, nothing changed', async () => {
    const before = await arm('GET', '/providers/Microsoft.KeyVault/vaults', undefined, { apiVersion: KV });
    const cases = [
      ['PUT', vaultPath('rg-a', 'gamma'), vaultBody(), '2099-01-01', 400, 'NoRegisteredProviderFound'],
      ['PUT', vaultPath('rg-a', 'gamma'), vaultBody(), null, 400, 'MissingApiVersionParameter'],
      ['GET', '/resourcegroups', undefined, '1999-01-01', 400, 'InvalidApiVersionParameter'],
      ['PUT', '/resourceGroups/rg-a/providers/Microsoft.KeyVault/safes/gamma', vaultBody(), KV, 400, 'InvalidResourceType'],
      ['PUT', '/resourceGroups/rg-a/providers/Microsoft.Nope/things/gamma', vaultBody(), KV, 404, 'InvalidResourceNamespace'],
      ['PUT', vaultPath('rg-a', 'gamma'), '{"location": "local", "properties": {', KV, 400, 'InvalidRequestContent'],
      ['PUT', vaultPath('rg-a', 'gamma'), '{"location":"local","location":"x","properties":{}}', KV, 400, 'InvalidRequestContent'],
      ['PUT', vaultPath('rg-a', 'alpha'.toUpperCase()), vaultBody({ enablePurgeProtection: false }), KV, 400, 'BadRequest'],
      ['PUT', vaultPath('rg-b', 'alpha'), vaultBody(), KV, 404, 'ResourceGroupNotFound'],
      ['PUT', vaultPath('p11vault', 'alpha'), vaultBody(), KV, 409, 'VaultAlreadyExists'],
      ['PUT', vaultPath('rg-a', 'default'), vaultBody(), KV, 409, 'VaultAlreadyExists'],
      ['PUT', vaultPath('rg-a', 'gamma'), vaultBody({ softDeleteRetentionInDays: 6 }), KV, 400, 'BadRequest'],
      ['PUT', vaultPath('rg-a', 'gamma'), vaultBody({ softDeleteRetentionInDays: 91 }), KV, 400, 'BadRequest'],
      ['PUT', vaultPath('rg-a', 'gamma'), vaultBody({ enableRbacAuthorization: true }), KV, 400, 'BadRequest'],
      ['PUT', vaultPath('rg-a', 'gamma'), vaultBody({ enableSoftDelete: false }), KV, 400, 'BadRequest'],
      ['PUT', vaultPath('rg-a', 'gamma'), vaultBody({}, [{ objectId: v.admin.objectId, permissions: { keys: ['fly'] } }]), KV, 400, 'BadRequest'],
      ['PUT', vaultPath('rg-a', 'a--b'), vaultBody(), KV, 400, 'VaultNameNotValid'],
      ['PUT', vaultPath('rg-a', '9lives'), vaultBody(), KV, 400, 'VaultNameNotValid'],
      ['PUT', vaultPath('rg-a', 'alpha'), { ...vaultBody(), location: 'elsewhere' }, KV, 409, 'InvalidResourceLocation'],
      ['DELETE', vaultPath('p11vault', 'default'), undefined, KV, 409, 'ConflictError'],
      ['GET', vaultPath('rg-a', 'gamma'), undefined, KV, 404, 'ResourceNotFound'],
      ['GET', '/resourcegroups/rg-zzz', undefined, RG, 404, 'ResourceGroupNotFound'],
      ['DELETE', '/resourcegroups/p11vault', undefined, RG, 409, 'ConflictError'],
    ];
    for (const [method, p, body, apiVersion, status, code] of cases) {
      const r = await arm(method, p, body, { apiVersion });
      assert.equal(r.status, status, `${method} ${p} (${apiVersion}): ${r.text}`);
      assert.equal(r.json?.error?.code, code, `${method} ${p}: ${r.text}`);
      assert.equal(typeof r.json.error.message, 'string');
    }
    const r = await raw(v, 'GET', `/subscriptions/00000000-0000-4000-8000-000000000000/resourcegroups?api-version=${RG}`, { token: tok });
    assert.equal(r.status, 404);
    assert.equal(r.json.error.code, 'SubscriptionNotFound');
    const after = await arm('GET', '/providers/Microsoft.KeyVault/vaults', undefined, { apiVersion: KV });
    assert.deepEqual(after.json, before.json);
    assert.equal(after.json.value.find((x) => x.name === 'alpha').properties.enablePurgeProtection, true);
    const n = await arm('POST', '/providers/Microsoft.KeyVault/checkNameAvailability', { name: 'gamma', type: 'Microsoft.KeyVault/vaults' }, { apiVersion: KV });
    assert.deepEqual(n.json, { nameAvailable: true });
  });

  test('soft delete, name reserved, recover with keys and policies back', async () => {
    let r = await arm('DELETE', vaultPath('rg-a', 'alpha'), undefined, { apiVersion: KV });
    assert.equal(r.status, 200, r.text);
    await assert.rejects(client('alpha').getKey('k1'), (e) => e.statusCode === 404);
    r = await arm('GET', vaultPath('rg-a', 'alpha'), undefined, { apiVersion: KV });
    assert.equal(r.status, 404);
    r = await arm('PUT', vaultPath('rg-a', 'alpha'), vaultBody(), { apiVersion: KV });
    assert.equal(r.status, 409, r.text);
    assert.equal(r.json.error.code, 'ConflictError');
    r = await arm('POST', '/providers/Microsoft.KeyVault/checkNameAvailability', { name: 'ALPHA', type: 'Microsoft.KeyVault/vaults' }, { apiVersion: KV });
    assert.equal(r.json.nameAvailable, false);
    assert.equal(r.json.reason, 'AlreadyExists');
    r = await arm('GET', '/providers/Microsoft.KeyVault/deletedVaults', undefined, { apiVersion: KV });
    assert.deepEqual(r.json.value.map((x) => x.name), ['alpha']);
    assert.equal(r.json.value[0].properties.purgeProtectionEnabled, true);
    assert.equal(r.json.value[0].properties.vaultId, `/subscriptions/${sub}/resourceGroups/rg-a/providers/Microsoft.KeyVault/vaults/alpha`);
    // purge protection holds
    r = await arm('POST', '/providers/Microsoft.KeyVault/locations/local/deletedVaults/alpha/purge', undefined, { apiVersion: KV });
    assert.equal(r.status, 409, r.text);
    assert.equal(r.json.error.code, 'ConflictError');
    // recover as az sends it
    r = await arm('PUT', vaultPath('rg-a', 'alpha'), {
      location: 'local', properties: { tenantId: v.admin.tenantId, sku: { family: 'A', name: 'standard' }, createMode: 'recover' },
    }, { apiVersion: KV });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.properties.accessPolicies.length, 2);
    assert.equal((await client('alpha', app).getKey('k1')).name, 'k1');
    assert.equal((await client('alpha').getKey('k1')).name, 'k1');
  });

  test('purge: the vault and its files go; purge protection refuses', async () => {
    const dirs = vaultDirs();
    assert.equal(dirs.length, 2);
    let r = await arm('DELETE', vaultPath('rg-a', 'beta'), undefined, { apiVersion: KV });
    assert.equal(r.status, 200, r.text);
    r = await arm('GET', '/providers/Microsoft.KeyVault/locations/local/deletedVaults/beta', undefined, { apiVersion: KV });
    assert.equal(r.status, 200, r.text);
    r = await arm('POST', '/providers/Microsoft.KeyVault/locations/local/deletedVaults/beta/purge', undefined, { apiVersion: KV });
    assert.equal(r.status, 200, r.text);
    assert.equal(vaultDirs().length, 1);
    r = await arm('GET', '/providers/Microsoft.KeyVault/locations/local/deletedVaults/beta', undefined, { apiVersion: KV });
    assert.equal(r.status, 404);
    // the name is free again, and a new beta has none of the old keys
    r = await arm('PUT', vaultPath('rg-a', 'beta'), vaultBody(), { apiVersion: KV });
    assert.equal(r.status, 201, r.text);
    await assert.rejects(client('beta').getKey('k1'), (e) => e.statusCode === 404);
  });

  test('a restart keeps vaults, keys, policies, identities and deleted vaults', async () => {
    let r = await arm('DELETE', vaultPath('rg-a', 'beta'), undefined, { apiVersion: KV });
    assert.equal(r.status, 200, r.text);
    await v.restart();
    tok = await token(v, v.admin, { scope: MGMT_SCOPE });
    assert.equal((await client('alpha', app).getKey('k1')).name, 'k1');
    await assert.rejects(client('beta', app).getKey('k1'), (e) => e.statusCode === 404);
    r = await arm('GET', '/providers/Microsoft.KeyVault/deletedVaults', undefined, { apiVersion: KV });
    assert.deepEqual(r.json.value.map((x) => x.name), ['beta']);
    r = await arm('GET', '/resourceGroups/rg-a/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app1', undefined, { apiVersion: MSI });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.properties.principalId, app.objectId);
    r = await arm('GET', vaultPath('rg-a', 'alpha'), undefined, { apiVersion: KV });
    assert.deepEqual(r.json.tags, { team: 'storage' });
    assert.equal(r.json.properties.enablePurgeProtection, true);
  });

  test('deleting an identity takes its grants in every vault; deleting a group soft-deletes its vaults', async () => {
    let r = await arm('DELETE', '/resourceGroups/rg-a/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app1', undefined, { apiVersion: MSI });
    assert.equal(r.status, 200, r.text);
    r = await arm('GET', vaultPath('rg-a', 'alpha'), undefined, { apiVersion: KV });
    assert.deepEqual(r.json.properties.accessPolicies.map((p) => p.objectId), [v.admin.objectId]);
    r = await arm('DELETE', '/resourcegroups/rg-a', undefined, { apiVersion: RG });
    assert.equal(r.status, 200, r.text);
    r = await arm('GET', '/providers/Microsoft.KeyVault/deletedVaults', undefined, { apiVersion: KV });
    assert.deepEqual(r.json.value.map((x) => x.name).sort(), ['alpha', 'beta']);
    r = await arm('GET', '/resourcegroups/rg-a', undefined, { apiVersion: RG });
    assert.equal(r.status, 404);
  });
});
