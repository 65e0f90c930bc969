// PUT /admin/vault/accessPolicies/{add,replace,remove} takes a batch of
// policies and is all or nothing: every item is checked first, and the
// whole batch is stored in one transaction, so a batch whose later item
// is refused changes nothing - in the answer of GET /admin/vault and in
// what the caller may do with its next token.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startVault, stopVault, raw, token } from './lib/vault.mjs';

describe('access policy batches are atomic', { timeout: 120000 }, () => {
  let v;
  let t;
  const admin = (method, p, body) => raw(v, method, p, { body, token: t });
  const identity = async (displayName) => {
    const r = await admin('POST', '/admin/identities', { displayName });
    assert.equal(r.status, 201, r.text);
    return r.json.objectId;
  };
  const batch = (kind, policies) => admin('PUT', `/admin/vault/accessPolicies/${kind}`, { properties: { accessPolicies: policies } });
  const permsOf = async (oid) => {
    const r = await admin('GET', '/admin/vault');
    assert.equal(r.status, 200, r.text);
    const p = r.json.properties.accessPolicies.find((x) => x.objectId === oid);
    return p ? [...p.permissions.keys].sort() : null;
  };
  const pol = (objectId, keys) => ({ tenantId: v.admin.tenantId, objectId, permissions: { keys } });

  before(async () => {
    v = await startVault();
    t = await token(v);
  });
  after(async () => { await stopVault(v); });

  test('an add whose second item has an unknown permission adds nothing', async () => {
    const a = await identity('batch-a');
    const b = await identity('batch-b');
    const r = await batch('add', [pol(a, ['get']), pol(b, ['fly'])]);
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error.code, 'BadParameter');
    assert.equal(await permsOf(a), null, 'the first item was not applied');
    assert.equal(await permsOf(b), null);
  });

  test('a replace whose last item names another tenant leaves every policy as it was', async () => {
    const a = await identity('batch-c');
    assert.equal((await batch('add', [pol(a, ['get', 'list'])])).status, 200);
    const b = await identity('batch-d');
    const r = await batch('replace', [pol(a, ['sign']), { ...pol(b, ['get']), tenantId: '00000000-0000-4000-8000-000000000000' }]);
    assert.equal(r.status, 400, r.text);
    assert.deepEqual(await permsOf(a), ['get', 'list']);
    assert.equal(await permsOf(b), null);
  });

  test('a remove whose second item is not a UUID removes nothing', async () => {
    const a = await identity('batch-e');
    assert.equal((await batch('add', [pol(a, ['get'])])).status, 200);
    const r = await batch('remove', [{ objectId: a }, { objectId: 'not-a-uuid' }]);
    assert.equal(r.status, 400, r.text);
    assert.deepEqual(await permsOf(a), ['get']);
  });

  test('a good batch applies every item in order, the same object twice included', async () => {
    const a = await identity('batch-f');
    const b = await identity('batch-g');
    const r = await batch('add', [pol(a, ['get']), pol(b, ['sign']), pol(a, ['list'])]);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(await permsOf(a), ['get', 'list']);
    assert.deepEqual(await permsOf(b), ['sign']);
    const rm = await batch('remove', [pol(a, ['get']), { objectId: b }]);
    assert.equal(rm.status, 200, rm.text);
    assert.deepEqual(await permsOf(a), ['list']);
    assert.equal(await permsOf(b), null);
  });
});
