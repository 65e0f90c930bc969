// What Azure CLI's sign-in asks of the appliance, at the protocol level
// (tests/az/signin.sh runs the real az once): the ADFS-style authority
// (/adfs/.well-known/openid-configuration, /adfs/oauth2/token with MSAL's
// form), one issuer for the data-plane, management and Graph audiences,
// each refused where it does not belong, /subscriptions and /tenants with
// ARM's api-version handling and envelope, administrators only below the
// subscription, and the Graph servicePrincipal read.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startVault, stopVault, raw, token } from './lib/vault.mjs';
import { createIdentity, decodeJwt } from './lib/identity.mjs';

const MGMT = 'https://management.p11vault/';
const VAULT = 'https://vault.azure.net';
const SUBS_V = 'api-version=2019-11-01';

// The token request MSAL Python (az 2.45) sends to an ADFS authority.
function adfsToken(v, who, fields) {
  const form = new URLSearchParams({ client_id: who.clientId, grant_type: 'client_credentials', client_info: '1', client_secret: who.clientSecret, ...fields });
  return raw(v, 'POST', '/adfs/oauth2/token', { body: form.toString(), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
}

async function adfsAccess(v, who, scope) {
  const r = await adfsToken(v, who, { scope });
  assert.equal(r.status, 200, r.text);
  return r.json.access_token;
}

describe('az sign-in: ADFS authority, management and Graph audiences', { timeout: 90000 }, () => {
  let v;
  let adminMgmt;
  let adminVault;
  let adminGraph;
  let wl;
  let wlMgmt;
  let sub;

  before(async () => {
    v = await startVault();
    adminMgmt = await adfsAccess(v, v.admin, `${MGMT}/.default`);
    adminVault = await token(v);
    adminGraph = await adfsAccess(v, v.admin, `${v.url}/graph//.default`);
    wl = await createIdentity(v, adminVault, 'workload', ['get']);
    wlMgmt = await adfsAccess(v, wl, `${MGMT}/.default`);
  });
  after(async () => { await stopVault(v); });

  test('GET /adfs/.well-known/openid-configuration: the endpoints MSAL reads, the one issuer', async () => {
    const r = await raw(v, 'GET', '/adfs/.well-known/openid-configuration');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.token_endpoint, `${v.url}/adfs/oauth2/token`);
    assert.equal(r.json.authorization_endpoint, `${v.url}/adfs/oauth2/authorize`);
    assert.equal(r.json.jwks_uri, `${v.url}/adfs/discovery/keys`);
    const v2 = await raw(v, 'GET', `/${v.admin.tenantId}/v2.0/.well-known/openid-configuration`);
    assert.equal(r.json.issuer, v2.json.issuer);
    const k1 = await raw(v, 'GET', '/adfs/discovery/keys');
    const k2 = await raw(v, 'GET', `/${v.admin.tenantId}/discovery/v2.0/keys`);
    assert.equal(k1.status, 200);
    assert.deepEqual(k1.json, k2.json);
  });

  test('POST /adfs/oauth2/token: scope or resource names the audience; bad requests refused', async () => {
    assert.equal(decodeJwt(adminMgmt).payload.aud, MGMT);
    const byRes = await adfsToken(v, v.admin, { resource: VAULT });
    assert.equal(byRes.status, 200, byRes.text);
    assert.equal(decodeJwt(byRes.json.access_token).payload.aud, VAULT);
    const both = await adfsToken(v, v.admin, { resource: VAULT, scope: `${VAULT}/.default` });
    assert.equal(both.status, 400);
    assert.equal(both.json.error, 'invalid_scope');
    const bad = await adfsToken(v, { ...v.admin, clientSecret: 'wrong' }, { scope: `${MGMT}/.default` });
    assert.equal(bad.status, 401);
    assert.equal(bad.json.error, 'invalid_client');
  });

  test('each audience is accepted only where it belongs', async () => {
    assert.equal((await raw(v, 'GET', `/subscriptions?${SUBS_V}`, { token: adminMgmt })).status, 200);
    assert.equal((await raw(v, 'GET', '/keys', { token: adminVault, apiVersion: true })).status, 200);
    const mgmtOnData = await raw(v, 'GET', '/keys', { token: adminMgmt, apiVersion: true });
    assert.equal(mgmtOnData.status, 401, mgmtOnData.text);
    assert.equal((await raw(v, 'GET', '/admin/vault', { token: adminMgmt, apiVersion: true })).status, 401);
    for (const t of [adminVault, adminGraph]) {
      const r = await raw(v, 'GET', `/subscriptions?${SUBS_V}`, { token: t });
      assert.equal(r.status, 401, r.text);
      assert.equal(r.json.error.code, 'InvalidAuthenticationToken');
    }
    const none = await raw(v, 'GET', `/tenants?${SUBS_V}`);
    assert.equal(none.status, 401);
    assert.equal(none.json.error.code, 'AuthenticationFailed');
    const mgmtOnGraph = await raw(v, 'GET', '/graph/v1.0/servicePrincipals', { token: adminMgmt });
    assert.equal(mgmtOnGraph.status, 401, mgmtOnGraph.text);
  });

  test("api-version: ARM's MissingApiVersionParameter and InvalidApiVersionParameter", async () => {
    const miss = await raw(v, 'GET', '/subscriptions', { token: adminMgmt });
    assert.equal(miss.status, 400);
    assert.equal(miss.json.error.code, 'MissingApiVersionParameter');
    const bad = await raw(v, 'GET', '/tenants?api-version=2099-01-01', { token: adminMgmt });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'InvalidApiVersionParameter');
    assert.match(bad.json.error.message, /'2099-01-01' is invalid\. The supported versions are '.*2019-11-01/);
  });

  test('the administrator: one subscription, stable across a restart, and the tenant', async () => {
    const r = await raw(v, 'GET', `/subscriptions?${SUBS_V}`, { token: adminMgmt });
    assert.equal(r.json.value.length, 1);
    const s = r.json.value[0];
    sub = s.subscriptionId;
    assert.match(sub, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(s.id, `/subscriptions/${sub}`);
    assert.equal(s.tenantId, v.admin.tenantId);
    assert.equal(s.state, 'Enabled');
    assert.ok(s.displayName);
    const one = await raw(v, 'GET', `/subscriptions/${sub}?${SUBS_V}`, { token: adminMgmt });
    assert.equal(one.status, 200, one.text);
    assert.deepEqual(one.json, s);
    const other = await raw(v, 'GET', `/subscriptions/00000000-0000-0000-0000-000000000000?${SUBS_V}`, { token: adminMgmt });
    assert.equal(other.status, 404);
    assert.equal(other.json.error.code, 'SubscriptionNotFound');
    const t = await raw(v, 'GET', `/tenants?${SUBS_V}`, { token: adminMgmt });
    assert.equal(t.status, 200);
    assert.deepEqual(t.json.value.map((x) => [x.id, x.tenantId]), [[`/tenants/${v.admin.tenantId}`, v.admin.tenantId]]);
    await v.restart();
    const again = await raw(v, 'GET', `/subscriptions?${SUBS_V}`, { token: adminMgmt });
    assert.equal(again.json.value[0].subscriptionId, sub);
  });

  test('a non-administrator: a management token, no subscription, 403 AuthorizationFailed below it', async () => {
    const list = await raw(v, 'GET', `/subscriptions?${SUBS_V}`, { token: wlMgmt });
    assert.equal(list.status, 200, list.text);
    assert.deepEqual(list.json.value, []);
    const t = await raw(v, 'GET', `/tenants?${SUBS_V}`, { token: wlMgmt });
    assert.equal(t.status, 200);
    assert.equal(t.json.value.length, 1);
    for (const [p, action] of [[`/subscriptions/${sub}?${SUBS_V}`, 'Microsoft.Resources/subscriptions/read'],
      [`/subscriptions/${sub}/resourcegroups?api-version=2021-04-01`, 'Microsoft.Resources/subscriptions/resourceGroups/read'],
      [`/subscriptions/${sub}/providers/Microsoft.KeyVault/vaults?api-version=2022-07-01`, 'Microsoft.KeyVault/vaults/read']]) {
      const r = await raw(v, 'GET', p, { token: wlMgmt });
      assert.equal(r.status, 403, `${p}: ${r.text}`);
      assert.equal(r.json.error.code, 'AuthorizationFailed');
      assert.ok(r.json.error.message.includes(`'${action}'`), r.json.error.message);
      assert.ok(r.json.error.message.includes(wl.objectId));
    }
  });

  test('Graph: /me refused for an application, the servicePrincipal by appId filter and by id', async () => {
    const me = await raw(v, 'GET', '/graph/v1.0/me', { token: adminGraph });
    assert.equal(me.status, 400);
    assert.ok(me.json.error.message);
    const filter = (app) => `/graph/v1.0/servicePrincipals?$filter=${encodeURIComponent(`servicePrincipalNames/any(c:c eq '${app}')`)}`;
    const r = await raw(v, 'GET', filter(v.admin.clientId), { token: adminGraph });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.value.length, 1);
    assert.deepEqual([r.json.value[0].id, r.json.value[0].appId], [v.admin.objectId, v.admin.clientId]);
    assert.ok(r.json.value[0].displayName);
    assert.doesNotMatch(r.text, /secret|scrypt/i);
    const byId = await raw(v, 'GET', `/graph/v1.0/servicePrincipals/${wl.objectId}`, { token: adminGraph });
    assert.equal(byId.status, 200);
    assert.equal(byId.json.appId, wl.clientId);
    const odd = await raw(v, 'GET', `/graph/v1.0/servicePrincipals?$filter=${encodeURIComponent("displayName eq 'x'")}`, { token: adminGraph });
    assert.equal(odd.status, 400);
  });

  test('Graph: a non-administrator sees itself only', async () => {
    const g = await adfsAccess(v, wl, `${v.url}/graph//.default`);
    const filter = (app) => `/graph/v1.0/servicePrincipals?$filter=${encodeURIComponent(`appId eq '${app}'`)}`;
    const self = await raw(v, 'GET', filter(wl.clientId), { token: g });
    assert.deepEqual(self.json.value.map((x) => x.id), [wl.objectId]);
    const adm = await raw(v, 'GET', filter(v.admin.clientId), { token: g });
    assert.deepEqual(adm.json.value, []);
    const byId = await raw(v, 'GET', `/graph/v1.0/servicePrincipals/${v.admin.objectId}`, { token: g });
    assert.equal(byId.status, 404);
  });
});
