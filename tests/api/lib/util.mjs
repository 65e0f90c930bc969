// Small helpers shared by the API tests and the other lib modules: the
// core of one HTTPS request, a recursive file listing, and a search of
// byte strings in named places. Imports nothing from the other lib files
// (vault.mjs imports this one).

import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';

// One https.request(options) with payload (a Buffer or undefined) ->
// {status, headers, json, text}; json is undefined when the body is not
// JSON. Rejects on a socket error or after timeoutMs without an answer.
export function httpsRequest(options, payload, timeoutMs) {
  const { method, path: p } = options;
  return new Promise((resolve, reject) => {
    const req = https.request(options, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, json, text });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${p}: timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

// Every regular file below dir (recursively, depth first), as paths.
export function filesUnder(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

// places: [[where, data: Buffer]], needles: [[label, needle: Buffer]] ->
// ["<label> in <where>", ...] for every needle found in every place.
export function findNeedles(places, needles) {
  const found = [];
  for (const [where, data] of places) {
    for (const [label, needle] of needles) if (data.includes(needle)) found.push(`${label} in ${where}`);
  }
  return found;
}
