// fill.mjs — a benchmark fixture: fills a vault's store with many keys.
//
// Generates BASES RSA-2048 keys here (node:crypto, i.e. OpenSSL) and imports
// each one's private JWK under many key names "bk<i>" (bk<i> is a copy of
// base i % BASES) through the API, PUT /keys/{name} with {"key": JWK}, on
// CONNS keep-alive connections at once. Every copy is a real import, so its
// blob is made, bound to its own name and version, and sealed by the vault
// itself (format 3: a blob cannot be copied into another row). A ciphertext
// made under a base key unwraps under every copy of it.
//
// Writes "name version base_index" per key to stdout, and to OUT_CT the
// lines "base_index ciphertext": a 32-byte key wrapped with RSA-OAEP
// (SHA-1, as Azure's RSA-OAEP) under each base key, made here.
// Environment: BENCH_TOKEN (a bearer token with the import permission).
// Must never: be used on a real vault.
//
// Usage: node fill.mjs URL CA_PEM COUNT BASES CONNS OUT_CT
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import { promisify } from 'node:util';

const [, , url, caFile, countS, basesS, connsS, ctFile] = process.argv;
const count = +countS;
const nbase = +basesS;
const conns = +connsS;
if (!url || !caFile || !ctFile || !(count >= 1) || !(nbase >= 1) || !(conns >= 1)) {
  console.error('usage: node fill.mjs URL CA_PEM COUNT BASES CONNS OUT_CT');
  process.exit(2);
}
const token = process.env.BENCH_TOKEN || '';
const u = new URL(url);
const agent = new https.Agent({ keepAlive: true, maxSockets: conns, ca: fs.readFileSync(caFile) });
const dek = Buffer.from('AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8', 'base64url');

function put(name, body) {
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request({
      agent, host: u.hostname, port: u.port, method: 'PUT',
      path: `/keys/${name}?api-version=7.4`,
      headers: {
        Authorization: `Bearer ${token}`, 'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(data),
      },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) {
          reject(new Error(`PUT /keys/${name}: ${res.statusCode} ${text.slice(0, 300)}`));
          return;
        }
        try {
          resolve(JSON.parse(text).key.kid.replace(/.*\//, ''));
        } catch (e) {
          reject(new Error(`PUT /keys/${name}: ${e.message}`));
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
}

const t0 = process.hrtime.bigint();
const gen = promisify(crypto.generateKeyPair);
const pairs = await Promise.all(Array.from({ length: nbase }, () => gen('rsa', { modulusLength: 2048 })));
const jwks = pairs.map((p) => p.privateKey.export({ format: 'jwk' }));
fs.writeFileSync(ctFile, pairs.map((p, i) => `${i} ${crypto.publicEncrypt({
  key: p.publicKey, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1',
}, dek).toString('base64url')}\n`).join(''));
const t1 = process.hrtime.bigint();

const out = new Array(count + 1);
let next = 1;
async function worker() {
  while (next <= count) {
    const i = next++;
    const b = i % nbase;
    const v = await put(`bk${i}`, { key: jwks[b] });
    out[i] = `bk${i} ${v} ${b}\n`;
  }
}
try {
  await Promise.all(Array.from({ length: Math.min(conns, count) }, worker));
} catch (e) {
  console.error(`fill: ${e.message}`);
  process.exit(1);
}
agent.destroy();
const t2 = process.hrtime.bigint();
process.stdout.write(out.slice(1).join(''));
const ms = (a, b) => Number(b - a) / 1e6;
console.error(`fill: ${nbase} base keys generated in ${(ms(t0, t1) / 1000).toFixed(2)} s, ` +
  `${count} imported in ${(ms(t1, t2) / 1000).toFixed(2)} s ` +
  `(${(count * 1000 / ms(t1, t2)).toFixed(0)}/s, ${conns} connections)`);
