// The command line refuses a malformed number with a message naming the
// option, instead of reading what it can of it ("x" as 0, "3x" as 3):
// init and rekey key shares, vault update's retention, identity-agent's
// port. None of these needs a running vault, and none may leave anything
// behind.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { p11vault } from './lib/vault.mjs';

describe('command-line numbers', { timeout: 60000 }, () => {
  let tmp;

  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'p11vault-cliargs-')); });
  after(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

  for (const bad of ['x', '3x', '-1', '', '99']) {
    test(`init --key-shares '${bad}' is refused before anything is made`, async () => {
      const dir = path.join(tmp, `init-${bad.replace(/\W/g, '_') || 'empty'}`);
      const r = await p11vault(['init', '--data', dir, '--key-shares', bad, '--auto-unseal', 'none']);
      assert.notEqual(r.code, 0, r.stdout);
      if (bad === '' || bad === '-1') {
        // "--key-shares needs a value" ('' and '-1' look like a missing value to the option reader)
        assert.match(r.stderr, /--key-shares/);
      } else {
        assert.match(r.stderr, /--key-shares must be a whole number 0\.\.16/, r.stderr);
      }
      assert.equal(fs.existsSync(dir), false, 'init made the data directory');
    });
  }

  test('init --key-threshold 2x is refused', async () => {
    const dir = path.join(tmp, 'init-threshold');
    const r = await p11vault(['init', '--data', dir, '--key-shares', '3', '--key-threshold', '2x']);
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, /--key-threshold must be a whole number/, r.stderr);
    assert.equal(fs.existsSync(dir), false);
  });

  test('rekey --key-shares 2x is a usage error', async () => {
    const r = await p11vault(['rekey', '--data', path.join(tmp, 'none'), '--key-shares', '2x'], { input: '' });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--key-shares needs a whole number 0\.\.16/, r.stderr);
  });

  test('vault update --retention-days 7x is a usage error', async () => {
    const r = await p11vault(['vault', 'update', '--data', path.join(tmp, 'none'), '--retention-days', '7x']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--retention-days needs a whole number of days/, r.stderr);
  });

  test('identity-agent --listen 127.0.0.1:80x is a usage error', async () => {
    const r = await p11vault(['identity-agent', '--credential', path.join(tmp, 'none.json'), '--listen', '127.0.0.1:80x']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--listen must be a loopback address/, r.stderr);
  });
});
