// `p11vault key …` (az keyvault key's sub-commands, flags and JSON output)
// run through the customer-managed-key guides' key steps against a real
// vault, and `p11vault identity credential` (a new client secret; the old
// one refused at once). Output shapes are compared with what az 2.45
// itself makes of the same REST bodies (tests/api/lib/az_shape.py runs
// az's transformer and todict), when azure-cli's modules are installed.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  startVault, stopVault, p11vault, raw, token, tokenRequest,
} from './lib/vault.mjs';

const AZ_SHAPE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'lib', 'az_shape.py');
const ITEM_KEYS = ['attributes', 'kid', 'managed', 'name', 'tags'];
const BUNDLE_KEYS = ['attributes', 'key', 'managed', 'releasePolicy', 'tags'];
const ATTR_KEYS = ['created', 'enabled', 'expires', 'exportable', 'notBefore', 'recoverableDays', 'recoveryLevel', 'updated'];
const sorted = (o) => Object.keys(o).sort();

// az's output for REST bodies, or null when azure-cli is not installed.
function azShape(input) {
  const r = spawnSync('/usr/bin/python3', [AZ_SHAPE], { input: JSON.stringify(input), encoding: 'utf8' });
  if (r.status === 3 || r.error) return null;
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

describe('p11vault key (az keyvault key)', { timeout: 240000 }, () => {
  let v;
  let tmp;
  let adminToken;
  const seen = {}; // {bundle, policy}: {ours, rest} for the comparison with az
  const key = (args, opts) => p11vault(['key', ...args, '--data', v.dir], opts);
  const ok = async (args) => {
    const r = await key(args);
    assert.equal(r.code, 0, `p11vault key ${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr, '', 'nothing on stderr (no sanitizer report either)');
    return r.stdout.trim() === '' ? null : JSON.parse(r.stdout);
  };
  const fails = async (args, code, re) => {
    const r = await key(args);
    assert.equal(r.code, code, `p11vault key ${args.join(' ')} exit ${r.code}: ${r.stdout}${r.stderr}`);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    if (re) assert.match(r.stderr, re);
    return r;
  };
  const rest = async (p) => {
    const r = await raw(v, 'GET', p, { token: adminToken, apiVersion: true });
    assert.equal(r.status, 200, r.text);
    return r.json;
  };

  before(async () => {
    v = await startVault();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'p11vault-cli-key-'));
    adminToken = await token(v);
  });
  after(async () => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    if (v) await stopVault(v);
  });

  test('create RSA 3072, show (as az prints it), --id, list', async () => {
    const k = await ok(['create', '--name', 'cmk', '--vault-name', 'default', '--kty', 'RSA', '--size', '3072',
      '--ops', 'wrapKey', 'unwrapKey', 'encrypt', 'decrypt', 'sign', 'verify', '--tags', 'env=test', 'team']);
    assert.deepEqual(sorted(k), BUNDLE_KEYS);
    assert.deepEqual(sorted(k.attributes), ATTR_KEYS);
    assert.equal(k.key.kty, 'RSA');
    assert.equal(Buffer.from(k.key.n, 'base64').length, 384);
    assert.match(k.key.n, /^[A-Za-z0-9+/]+=*$/, 'standard base64, as az prints');
    assert.deepEqual(k.tags, { env: 'test', team: '' });
    assert.match(k.attributes.created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$/);
    assert.ok(k.key.kid.startsWith(`${v.url}/keys/cmk/`));
    seen.created = k;

    const shown = await ok(['show', '--name', 'cmk', '--vault-name', 'default']);
    seen.bundle = { ours: shown, rest: await rest('/keys/cmk') };
    assert.equal(shown.key.kid, k.key.kid); // --query key.kid
    const byId = await ok(['show', '--id', k.key.kid]);
    assert.deepEqual(byId.key, shown.key);

    const list = await ok(['list', '--vault-name', 'default']);
    const item = list.find((i) => i.name === 'cmk');
    assert.ok(item, JSON.stringify(list));
    assert.deepEqual(sorted(item), ITEM_KEYS);
    assert.equal(item.kid, `${v.url}/keys/cmk`);
  });

  test('rotate, list-versions, rotation-policy update/show', async () => {
    const before1 = seen.created;
    const rotated = await ok(['rotate', '-n', 'cmk', '--vault-name', 'default']);
    assert.notEqual(rotated.key.kid, before1.key.kid);
    assert.equal(Buffer.from(rotated.key.n, 'base64').length, 384);
    const versions = await ok(['list-versions', '-n', 'cmk']);
    assert.equal(versions.length, 2);
    assert.ok(versions.every((i) => i.name === 'cmk' && sorted(i).join() === ITEM_KEYS.join()));
    assert.deepEqual(versions.map((i) => i.kid).sort(), [before1.key.kid, rotated.key.kid].sort());
    seen.rotated = rotated;

    const file = path.join(tmp, 'policy.json');
    fs.writeFileSync(file, JSON.stringify({
      lifetime_actions: [{ trigger: { time_after_create: 'P18M' }, action: { type: 'Rotate' } }],
      attributes: { expiry_time: 'P2Y' },
    }));
    const set = await ok(['rotation-policy', 'update', '-n', 'cmk', '--vault-name', 'default', '--value', file]);
    assert.deepEqual(sorted(set), ['createdOn', 'expiresIn', 'id', 'lifetimeActions', 'updatedOn']);
    assert.equal(set.expiresIn, 'P2Y');
    assert.deepEqual(set.lifetimeActions, [{ action: 'Rotate', timeAfterCreate: 'P18M', timeBeforeExpiry: null }]);
    const shown = await ok(['rotation-policy', 'show', '-n', 'cmk']);
    seen.policy = { ours: shown, rest: await rest('/keys/cmk/rotationpolicy') };
    // camelCase (the REST shape) as --value JSON works too
    const camel = await ok(['rotation-policy', 'update', '-n', 'cmk', '--value',
      '{"lifetimeActions":[{"trigger":{"timeBeforeExpiry":"P30D"},"action":{"type":"Notify"}}],"attributes":{"expiryTime":"P1Y"}}']);
    assert.deepEqual(camel.lifetimeActions, [{ action: 'Notify', timeAfterCreate: null, timeBeforeExpiry: 'P30D' }]);
  });

  test('encrypt/decrypt, sign/verify', async () => {
    const pt = crypto.randomBytes(32);
    const enc = await ok(['encrypt', '-n', 'cmk', '--algorithm', 'RSA-OAEP-256', '--value', pt.toString('base64')]);
    assert.deepEqual(sorted(enc), ['aad', 'algorithm', 'iv', 'kid', 'result', 'tag']);
    assert.equal(Buffer.from(enc.result, 'base64').length, 384);
    const dec = await ok(['decrypt', '--id', enc.kid, '-a', 'RSA-OAEP-256', '--value', enc.result]);
    assert.deepEqual(sorted(dec), ['algorithm', 'kid', 'result']);
    assert.equal(dec.result, pt.toString('base64'));
    const encText = await ok(['encrypt', '-n', 'cmk', '-a', 'RSA-OAEP', '--value', 'hello az', '--data-type', 'plaintext']);
    const decText = await ok(['decrypt', '-n', 'cmk', '-a', 'RSA-OAEP', '--value', encText.result, '--data-type', 'plaintext']);
    assert.equal(decText.result, 'hello az');

    const digest = crypto.createHash('sha256').update('the guide').digest();
    const sig = await ok(['sign', '-n', 'cmk', '-a', 'RS256', '--digest', digest.toString('base64')]);
    assert.deepEqual(sorted(sig), ['algorithm', 'kid', 'signature']);
    const shown = seen.rotated;
    assert.equal(sig.kid, shown.key.kid, 'the latest version signed');
    const pub = crypto.createPublicKey({ key: { kty: 'RSA', n: b64uOf(shown.key.n), e: b64uOf(shown.key.e) }, format: 'jwk' });
    assert.ok(crypto.verify('sha256', Buffer.from('the guide'), pub, Buffer.from(sig.signature, 'base64')));
    const good = await ok(['verify', '--id', sig.kid, '-a', 'RS256', '--digest', digest.toString('base64'), '--signature', sig.signature]);
    assert.equal(good.isValid, true);
    const wrong = crypto.createHash('sha256').update('another').digest().toString('base64');
    const bad = await ok(['verify', '--id', sig.kid, '-a', 'RS256', '--digest', wrong, '--signature', sig.signature]);
    assert.equal(bad.isValid, false);
  });

  test('set-attributes --enabled false refuses crypto; true again', async () => {
    const off = await ok(['set-attributes', '-n', 'cmk', '--enabled', 'false', '--tags', 'env=prod']);
    assert.equal(off.attributes.enabled, false);
    assert.deepEqual(off.tags, { env: 'prod' });
    await fails(['encrypt', '-n', 'cmk', '-a', 'RSA-OAEP', '--value', 'AAAA'], 1, /403 Forbidden: .*disabled/);
    const on = await ok(['set-attributes', '-n', 'cmk', '--enabled', '--expires', '2099-01-01T00:00:00Z']);
    assert.equal(on.attributes.enabled, true);
    assert.equal(on.attributes.expires, '2099-01-01T00:00:00+00:00');
  });

  test('backup, delete, list-deleted, recover, purge, restore', async () => {
    const file = path.join(tmp, 'cmk.backup');
    assert.equal(await ok(['backup', '-n', 'cmk', '--file', file]), null);
    assert.ok(fs.statSync(file).size > 100);
    const del = await ok(['delete', '-n', 'cmk', '--vault-name', 'default']);
    assert.deepEqual(sorted(del), ['attributes', 'deletedDate', 'key', 'managed', 'recoveryId', 'scheduledPurgeDate', 'tags']);
    assert.equal(del.recoveryId, `${v.url}/deletedkeys/cmk`);
    const deleted = await ok(['list-deleted']);
    const item = deleted.find((i) => i.name === 'cmk');
    assert.deepEqual(sorted(item), ['attributes', 'deletedDate', 'kid', 'managed', 'name', 'recoveryId', 'scheduledPurgeDate', 'tags']);
    const rec = await ok(['recover', '--id', del.recoveryId]);
    assert.equal(rec.key.kid.split('/')[4], 'cmk');
    await ok(['delete', '-n', 'cmk']);
    assert.equal(await ok(['purge', '-n', 'cmk']), null);
    const restored = await ok(['restore', '--file', file, '--vault-name', 'default']);
    assert.deepEqual(sorted(restored), BUNDLE_KEYS);
    assert.equal(restored.key.kid.split('/')[4], 'cmk');
  });

  test('import a PEM (RSA, encrypted EC), download PEM and DER', async () => {
    const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pemFile = path.join(tmp, 'rsa.pem');
    fs.writeFileSync(pemFile, rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const imp = await ok(['import', '-n', 'imported', '--vault-name', 'default', '--pem-file', pemFile, '--protection', 'hsm', '--ops', 'sign', 'verify']);
    assert.deepEqual(sorted(imp), BUNDLE_KEYS);
    assert.equal(imp.key.n, Buffer.from(rsa.publicKey.export({ format: 'jwk' }).n, 'base64url').toString('base64'));
    assert.deepEqual(imp.key.keyOps, ['sign', 'verify']);
    assert.equal(imp.key.d, null);

    const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const ecFile = path.join(tmp, 'ec.pem');
    fs.writeFileSync(ecFile, ec.privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'pw-123' }));
    await fails(['import', '-n', 'ecimp', '--pem-file', ecFile], 1, /encrypted\? give --pem-password/);
    const ecImp = await ok(['import', '-n', 'ecimp', '--pem-file', ecFile, '--pem-password', 'pw-123']);
    assert.equal(ecImp.key.crv, 'P-256');
    assert.equal(ecImp.key.x, Buffer.from(ec.publicKey.export({ format: 'jwk' }).x, 'base64url').toString('base64'));

    const pemOut = path.join(tmp, 'imported.pub.pem');
    assert.equal(await ok(['download', '-n', 'imported', '--file', pemOut, '--encoding', 'PEM']), null);
    assert.equal(fs.readFileSync(pemOut, 'utf8'), rsa.publicKey.export({ type: 'spki', format: 'pem' }));
    const derOut = path.join(tmp, 'ec.pub.der');
    assert.equal(await ok(['download', '-n', 'ecimp', '-f', derOut, '-e', 'DER']), null);
    assert.deepEqual(fs.readFileSync(derOut), ec.publicKey.export({ type: 'spki', format: 'der' }));
    await fails(['download', '-n', 'ecimp', '-f', derOut], 1, /already exists/);
  });

  test('bad arguments: exit 2 with az-like messages; other failures exit 1', async () => {
    await fails(['create', '-n', 'x', '--bogus'], 2, /unrecognized arguments: --bogus/);
    await fails(['create', '--vault-name', 'default'], 2, /the following arguments are required: --name\/-n/);
    await fails(['create', '-n', 'x', '--kty', 'DSA'], 2, /argument --kty: invalid choice: 'DSA'/);
    await fails(['create', '-n', 'x', '--expires', 'next tuesday'], 2, /argument --expires: invalid datetime/);
    await fails(['create', '-n', 'bad_name!'], 2, /key name/);
    await fails(['encrypt', '-n', 'x', '-a', 'A256GCM', '--value', 'AAAA'], 2, /--algorithm\/-a: invalid choice/);
    await fails(['show', '--id', `${v.url}/keys/x`, '--name', 'x'], 2, /--id \| --vault-name --name/);
    await fails(['backup', '-n', 'imported'], 2, /required: --file\/-f/);
    await fails(['show', '-n', 'x', '--vault-name', 'elsewhere'], 1, /no vault named 'elsewhere'/);
    // the admin token never goes to a host that is not this appliance's vault
    await fails(['show', '--id', 'https://attacker.example/keys/x'], 1, /not a vault of this appliance/);
    await fails(['show', '-n', 'nosuchkey'], 1, /404 KeyNotFound/);
    const help = await key(['create', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--kty/);
  });

  // one run of az's own code (its Python start-up is slow) for both shapes
  test('show and rotation-policy show print what az prints', (t) => {
    assert.ok(seen.bundle && seen.policy, 'the earlier tests ran');
    const az = azShape({ bundle: seen.bundle.rest, policy: seen.policy.rest });
    if (!az) {
      t.skip('azure-cli (python3 modules) not installed: make deps');
      return;
    }
    assert.deepEqual(seen.bundle.ours, az.bundle, 'p11vault key show = az keyvault key show');
    assert.deepEqual(seen.policy.ours, az.policy, 'rotation-policy show = az keyvault key rotation-policy show');
  });

  test('identity credential: a new secret, the old one refused at once', async () => {
    const made = await p11vault(['identity', 'create', '--name', 'workload', '--data', v.dir]);
    assert.equal(made.code, 0, made.stderr);
    const id = JSON.parse(made.stdout);
    assert.equal((await tokenRequest(v, id)).status, 200);
    const r = await p11vault(['identity', 'credential', '--object-id', id.objectId, '--data', v.dir]);
    assert.equal(r.code, 0, r.stderr);
    const cred = JSON.parse(r.stdout);
    assert.equal(cred.appId, id.clientId);
    assert.equal(cred.tenant, id.tenantId);
    assert.equal(cred.password, cred.clientSecret);
    assert.notEqual(cred.password, id.clientSecret);
    assert.equal(cred.objectId, id.objectId);
    assert.equal(cred.vaultUrl, v.url);
    const old = await tokenRequest(v, id);
    assert.equal(old.status, 401, old.text);
    assert.equal((await tokenRequest(v, { clientId: cred.appId, clientSecret: cred.password })).status, 200);
    // unknown identity: 404, exit 1; missing --object-id: exit 2
    const none = await p11vault(['identity', 'credential', '--object-id', '00000000-0000-0000-0000-000000000000', '--data', v.dir]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /404 NotFound/);
    assert.equal((await p11vault(['identity', 'credential', '--data', v.dir])).code, 2);
  });
});

function b64uOf(std) {
  return Buffer.from(std, 'base64').toString('base64url');
}
