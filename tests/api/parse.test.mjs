// One parser for the parts that create, update and import share
// (attributes, tags, key_ops): the same body part gets the same answer
// on every path. Where the paths used to disagree, Azure Key Vault
// decides: "tags": null is the same as no "tags" (unchanged on update,
// none on create and import; {} clears), and attributes.exportable must
// be a boolean (true is refused here: keys never leave the HSM).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startVault, stopVault, raw, token, keyName } from './lib/vault.mjs';

describe('request bodies: one parser for attributes, tags and key_ops', { timeout: 120000 }, () => {
  let v;
  let t;
  const call = (method, p, body) => raw(v, method, p, { body, token: t, apiVersion: true });
  const ecJwk = () => {
    const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const j = privateKey.export({ format: 'jwk' });
    return { kty: 'EC', crv: j.crv, x: j.x, y: j.y, d: j.d };
  };
  const create = (name, extra = {}) => call('POST', `/keys/${name}/create`, { kty: 'EC', ...extra });
  const importKey = (name, extra = {}, key = ecJwk()) => call('PUT', `/keys/${name}`, { key, ...extra });
  const bad = (r, what) => {
    assert.equal(r.status, 400, `${what}: ${r.text.slice(0, 300)}`);
    assert.equal(r.json?.error?.code, 'BadParameter', what);
  };

  before(async () => {
    v = await startVault();
    t = await token(v);
  });
  after(async () => { await stopVault(v); });

  test('PATCH with "tags": null leaves the tags as they were', async () => {
    const name = keyName('tagnull');
    assert.equal((await create(name, { tags: { a: '1' } })).status, 200);
    const r = await call('PATCH', `/keys/${name}`, { tags: null });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.tags, { a: '1' }, 'the answer keeps the tags');
    const g = await call('GET', `/keys/${name}`);
    assert.deepEqual(g.json.tags, { a: '1' }, 'the stored key keeps the tags');
  });

  test('PATCH with "tags": {} clears the tags', async () => {
    const name = keyName('tagclear');
    assert.equal((await create(name, { tags: { a: '1' } })).status, 200);
    const r = await call('PATCH', `/keys/${name}`, { tags: {} });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.tags, undefined);
    assert.equal((await call('GET', `/keys/${name}`)).json.tags, undefined);
  });

  test('"tags": null on create and on import means no tags', async () => {
    const c = await create(keyName('ctagnull'), { tags: null });
    assert.equal(c.status, 200, c.text);
    assert.equal(c.json.tags, undefined);
    const i = await importKey(keyName('itagnull'), { tags: null });
    assert.equal(i.status, 200, i.text);
    assert.equal(i.json.tags, undefined);
  });

  test('a non-boolean attributes.exportable is refused by create and by import, and nothing is stored', async () => {
    for (const value of ['yes', 1, {}, []]) {
      const cn = keyName('cexp');
      bad(await create(cn, { attributes: { exportable: value } }), `create exportable ${JSON.stringify(value)}`);
      assert.equal((await call('GET', `/keys/${cn}`)).status, 404);
      const iname = keyName('iexp');
      bad(await importKey(iname, { attributes: { exportable: value } }), `import exportable ${JSON.stringify(value)}`);
      assert.equal((await call('GET', `/keys/${iname}`)).status, 404);
    }
  });

  test('exportable false is accepted and true refused, on create and on import', async () => {
    assert.equal((await create(keyName('cexpf'), { attributes: { exportable: false } })).status, 200);
    assert.equal((await importKey(keyName('iexpf'), { attributes: { exportable: false } })).status, 200);
    bad(await create(keyName('cexpt'), { attributes: { exportable: true } }), 'create exportable true');
    bad(await importKey(keyName('iexpt'), { attributes: { exportable: true } }), 'import exportable true');
  });

  test('tags are checked the same way on create, update and import', async () => {
    const many = Object.fromEntries([...Array(16).keys()].map((i) => [`t${i}`, 'v']));
    const cases = [
      ['not an object', 'x'],
      ['an array', ['a']],
      ['a non-string value', { a: 1 }],
      ['16 tags', many],
      ['a 513-character name', { ['n'.repeat(513)]: 'v' }],
      ['a 257-character value', { a: 'v'.repeat(257) }],
    ];
    const existing = keyName('tagupd');
    assert.equal((await create(existing)).status, 200);
    for (const [what, tags] of cases) {
      bad(await create(keyName('ctag'), { tags }), `create with ${what}`);
      bad(await call('PATCH', `/keys/${existing}`, { tags }), `update with ${what}`);
      bad(await importKey(keyName('itag'), { tags }), `import with ${what}`);
    }
    const ok = { ['n'.repeat(512)]: 'v'.repeat(256) };
    const i = await importKey(keyName('itagok'), { tags: ok });
    assert.equal(i.status, 200, i.text);
    assert.deepEqual(i.json.tags, ok);
  });

  test('attributes are checked the same way on create, update and import', async () => {
    const cases = [
      ['attributes not an object', { attributes: 'x' }],
      ['enabled not a boolean', { attributes: { enabled: 'true' } }],
      ['nbf not a time', { attributes: { nbf: 'soon' } }],
      ['exp negative', { attributes: { exp: -1 } }],
    ];
    const existing = keyName('attrupd');
    assert.equal((await create(existing)).status, 200);
    for (const [what, extra] of cases) {
      bad(await create(keyName('cattr'), extra), `create with ${what}`);
      bad(await call('PATCH', `/keys/${existing}`, extra), `update with ${what}`);
      bad(await importKey(keyName('iattr'), extra), `import with ${what}`);
    }
    const i = await importKey(keyName('iattrok'), { attributes: { enabled: false, nbf: 1000, exp: 4102444800 } });
    assert.equal(i.status, 200, i.text);
    assert.equal(i.json.attributes.enabled, false);
    assert.equal(i.json.attributes.nbf, 1000);
    assert.equal(i.json.attributes.exp, 4102444800);
  });

  test('key_ops are checked the same way on create, update and import', async () => {
    const existing = keyName('opsupd');
    assert.equal((await create(existing)).status, 200);
    for (const [what, ops] of [['not an array', 'sign'], ['a non-string', [1]], ['an unknown operation', ['fly']]]) {
      bad(await create(keyName('cops'), { key_ops: ops }), `create with ${what}`);
      bad(await call('PATCH', `/keys/${existing}`, { key_ops: ops }), `update with ${what}`);
      bad(await importKey(keyName('iops'), {}, { ...ecJwk(), key_ops: ops }), `import with ${what}`);
    }
    bad(await create(keyName('cec'), { key_ops: ['wrapKey'] }), 'create EC with wrapKey');
    bad(await importKey(keyName('iec'), {}, { ...ecJwk(), key_ops: ['wrapKey'] }), 'import EC with wrapKey');
    const i = await importKey(keyName('iopsok'), {}, { ...ecJwk(), key_ops: ['SIGN'] });
    assert.equal(i.status, 200, i.text);
    assert.deepEqual(i.json.key.key_ops, ['sign'], 'names match in any case and answer in Azure case');
  });
});
