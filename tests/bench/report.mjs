// report.mjs — the bench table: reads the raw figures run.sh collected
// (one JSON object), computes every ratio against its goal, prints one
// table and writes {rows, raw} as JSON.
// Usage: node report.mjs ALL.json OUT.json
import { readFileSync, writeFileSync } from 'node:fs';

const [, , inFile, outFile] = process.argv;
const a = JSON.parse(readFileSync(inFile, 'utf8'));
const f0 = (x) => Math.round(x).toLocaleString('en-US');
const f1 = (x) => x.toFixed(1);
const f2 = (x) => x.toFixed(2);
const raw1 = a.raw.decrypt['1'];
// the ceiling for the unwrap rows: the mean of the 2-thread figure before
// the unwrap runs and right after them (the machine's speed drifts)
const raw2before = a.raw.decrypt['2'];
const raw2after = a.raw_after.decrypt['2'];
const raw2 = (raw2before + raw2after) / 2;
const rawCpu = (a.raw.cpu_us_per_op + a.raw_after.cpu_us_per_op) / 2;
const gen2 = a.raw.keygen['2'];
const cold = [...a.cold_ms].sort((x, y) => x - y);
const coldMed = cold[Math.floor(cold.length / 2)] ?? NaN;
const coldMax = cold[cold.length - 1] ?? NaN;
const mib = (kib) => kib / 1024;
const peak = a.unwrap.rps;

const rows = [];
function row(name, measured, ratio, goal, pass) {
  rows.push({ row: name, measured, ratio, goal, pass });
}
row('raw token C_Decrypt RSA-2048 OAEP',
  `${f0(raw1)}/s (1 thread), ${f0(raw2before)}/s (2 threads), ` +
  `${f0(raw2after)}/s (2 threads, after the unwrap runs)`, null,
  `the ceiling: ${f0(raw2)}/s, the mean of the 2-thread figures`, null);
row('raw token C_GenerateKeyPair RSA-2048',
  `${f2(a.raw.keygen['1'])}/s (1 thread), ${f2(gen2)}/s (2 threads)`, null,
  'the ceiling for create', null);
row('unwrapKey RSA-OAEP over HTTPS', `${f0(a.unwrap.rps)}/s`,
  a.unwrap.rps / raw2, '>= 0.90 x raw 2-thread', a.unwrap.rps / raw2 >= 0.90);
row('unwrapKey RSA-OAEP-256 over HTTPS', `${f0(a.unwrap256.rps)}/s`,
  a.unwrap256.rps / raw2, '>= 0.85 x raw 2-thread',
  a.unwrap256.rps / raw2 >= 0.85);
row('the token process: decrypt through it vs in this process',
  `${f0(a.split.split.rps)}/s vs ${f0(a.split.inproc.rps)}/s; CPU ` +
  `${f0(a.split.split.cpu_us)} us vs ${f0(a.split.inproc.cpu_us)} us ` +
  `(+${f0(a.split.split.cpu_us - a.split.inproc.cpu_us)} us), ` +
  `${a.split.threads} threads`,
  a.split.split.rps / a.split.inproc.rps,
  '>= 0.95 x in-process and <= +40 us CPU',
  a.split.split.rps / a.split.inproc.rps >= 0.95 &&
  a.split.split.cpu_us - a.split.inproc.cpu_us <= 40);
row('CPU per unwrapKey (RSA-OAEP) vs per raw C_Decrypt',
  `server (all its processes) ${f0(a.unwrap.server_cpu_us)} us, all processes and kernel ` +
  `${f0(a.unwrap.busy_cpu_us)} us; raw ${f0(rawCpu)} us`,
  a.unwrap.server_cpu_us / rawCpu, 'information (ratio: server / raw)', null);
row('authenticated no-op (HTTP+TLS+token ceiling)', `${f0(a.noop.rps)}/s`,
  null, 'reference for wrapKey', null);
row('wrapKey RSA-OAEP', `${f0(a.wrap.rps)}/s`, a.wrap.rps / a.noop.rps,
  '>= 0.70 x no-op and >= 8,000/s',
  a.wrap.rps / a.noop.rps >= 0.70 && a.wrap.rps >= 8000);
row('unwrapKey latency p50/p99/p99.9',
  `${f2(a.latency.p50_ms)} / ${f2(a.latency.p99_ms)} / ` +
  `${f2(a.latency.p999_ms)} ms at ${f0(a.latency.rps)}/s`,
  a.latency.rps / peak, 'at 0.80 x peak: p99 <= 5 ms',
  a.latency.p99_ms <= 5);
row(`key count: ${f0(a.params.spread)} of ${f0(a.params.keys)} keys vs one`,
  `${f0(a.spread.rps)}/s vs ${f0(a.hotfull.rps)}/s`,
  a.spread.rps / a.hotfull.rps, '>= 0.90 x one key',
  a.spread.rps / a.hotfull.rps >= 0.90);
row('first use of a cold key (unwrapKey)',
  `median ${f2(coldMed)} ms, max ${f2(coldMax)} ms (${cold.length} keys)`,
  null, '<= 5 ms', coldMax <= 5);
row('fill the store: imports over the API (PUT /keys/{name})',
  `${f0(a.params.keys)} keys (${a.params.base_keys} RSA-2048 keys) in ` +
  `${f1(a.params.fill_seconds)} s, ${f0(a.params.keys / a.params.fill_seconds)}/s`,
  null, 'fixture (information)', null);
// overload: the admission gate sheds the excess with 429 (goodput = 2xx/s)
const good = (o) => (o.requests - o.non2xx) / o.seconds;
for (const [gate, runs] of Object.entries(a.overload ?? {})) {
  const base = runs.find((o) => o.conns === 8) ?? runs[0];
  for (const o of runs) {
    const last = o.conns >= 2000;
    row(`unwrapKey at ${f0(o.conns)} connections, admission ${gate}`,
      `${f0(good(o))}/s admitted, ${f0(o.non2xx / o.seconds)}/s refused (429); ` +
      `all answers p50/p99 ${f2(o.p50_ms)} / ${f2(o.p99_ms)} ms; RSS ${f1(mib(o.rss_kib))} MiB`,
      base ? good(o) / good(base) : null,
      last ? '>= 0.95 x goodput at 8 connections' : 'information (ratio: goodput / at 8)',
      last && gate === 'on' ? good(o) / good(base) >= 0.95 : null);
  }
}
row('create RSA-2048 over the API', `${f2(a.create.rps)}/s`,
  a.create.rps / gen2, '>= 0.90 x raw 2-thread', a.create.rps / gen2 >= 0.90);
row('server RSS idle (all its processes)', `${f1(mib(a.rss_idle_kib))} MiB`, null, '<= 64 MiB',
  mib(a.rss_idle_kib) <= 64);
row(`server RSS with ${f0(a.params.keys)} keys after the key-count run`,
  `${f1(mib(a.rss_loaded_kib))} MiB`, null,
  '<= 256 MiB (goal at 100,000 keys)', mib(a.rss_loaded_kib) <= 256);

const head = ['row', 'measured', 'ratio', 'goal', 'met'];
const cells = rows.map((r) => [r.row, r.measured,
  r.ratio == null ? '' : f2(r.ratio), r.goal,
  r.pass == null ? '' : (r.pass ? 'yes' : 'NO')]);
const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
const line = (c) => '| ' + c.map((x, i) => x.padEnd(w[i])).join(' | ') + ' |';
const p = a.params;
console.log(`p11vault bench — ${p.date}, ${p.cpus} CPUs (${p.cpu_model}), ` +
  `${p.seconds}s per run, ${p.conns} connections`);
console.log(line(head));
console.log('|' + w.map((n) => '-'.repeat(n + 2)).join('|') + '|');
for (const c of cells) console.log(line(c));
const missed = rows.filter((r) => r.pass === false).map((r) => r.row);
console.log(missed.length ? `goals missed: ${missed.join('; ')}` : 'every goal met');
writeFileSync(outFile, JSON.stringify({ rows, raw: a }, null, 2) + '\n');
console.log(`written: ${outFile}`);
