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
{
  // rounds of in-process, split, split, in-process; each round judged on
  // its own (the machine drifts between rounds), the median decides
  const sp = a.split;
  const us = (d) => `${d < 0 ? '-' : '+'}${f0(Math.abs(d))} us`;
  const each = sp.rounds.map(x => `${f2(x.split.rps / x.inproc.rps)} ` +
    `(${us(x.split.cpu_us - x.inproc.cpu_us)})`).join(', ');
  const ratio = sp.median_ratio, delta = sp.median_cpu_delta_us;
  row('the token process: decrypt through it vs in this process',
    `${f0(sp.split.rps)}/s vs ${f0(sp.inproc.rps)}/s; CPU ` +
    `${f0(sp.split.cpu_us)} us vs ${f0(sp.inproc.cpu_us)} us, ` +
    `${sp.threads} threads; ${sp.rounds.length} rounds: ${each}; ` +
    `median ${f2(ratio)} (${us(delta)})`,
    ratio,
    '>= 0.95 x in-process and <= +40 us CPU (median of the rounds)',
    ratio >= 0.95 && delta <= 40);
}
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
// overload (tests/bench/overload.c): goodput = 200 answers per second;
// the refused are 429s, the generator waits out their Retry-After
const ms = (x) => (x == null ? '-' : f2(x));
const le = (x, lim) => x != null && x <= lim;
for (const [gate, { runs, probe, pairs }] of Object.entries(a.overload ?? {})) {
  const base = runs.find((o) => o.conns === 8) ?? runs[0];
  // with paired runs the ratio is judged on them (below), not on one run
  const paired = gate === 'on' && Array.isArray(pairs) && pairs.length > 0;
  const g = (o) => o.ok_rps;
  const others = (o) => {
    const n = o.other + o.errors + o.timeouts;
    return n ? `; other statuses ${f0(o.other)}, errors or timeouts ${f0(o.errors + o.timeouts)}` : '';
  };
  for (const o of runs) {
    const top = o.conns >= 2000 && gate === 'on';
    const name = `unwrapKey at ${f0(o.conns)} connections, admission ${gate}`;
    row(name,
      `${f0(g(o))}/s admitted, p50/p99 ${ms(o.ok_p50_ms)} / ${ms(o.ok_p99_ms)} ms; ` +
      `${f0(o.refused_rps)}/s refused (429), p99/max ${ms(o.refused_p99_ms)} / ` +
      `${ms(o.refused_max_ms)} ms${others(o)}; RSS ${f1(mib(o.rss_kib))} MiB, ` +
      `${f0(o.server_threads)} threads; ramp ${f1(o.ramp_s)} s` +
      (o.established_at_start < o.conns ? ` (${f0(o.established_at_start)} up at the start)` : ''),
      base ? g(o) / g(base) : null,
      top && !paired ? '>= 0.95 x goodput at 8 connections' :
        top ? 'information (one run; the paired row decides)' : 'information (ratio: goodput / at 8)',
      top && !paired ? g(o) / g(base) >= 0.95 : null);
    if (!top) continue;
    row(`${name}: latency`,
      `admitted p99 ${ms(o.ok_p99_ms)} ms, refused max ${ms(o.refused_max_ms)} ms ` +
      `(Retry-After ${o.retry_after_ms_p50 ?? '-'} ms)`, null,
      'admitted p99 <= 50 ms, every 429 within 5 ms',
      le(o.ok_p99_ms, 50) && (o.refused === 0 || le(o.refused_max_ms, 5)));
    row(`server RSS with ${f0(o.open_at_end)} connections open`,
      `${f1(mib(o.rss_kib))} MiB`, null, '<= 128 MiB', mib(o.rss_kib) <= 128);
  }
  if (paired) {
    const rs = pairs.map((x) => g(x.max) / g(x.min));
    const sorted = [...rs].sort((x, y) => x - y);
    const med = sorted.length % 2 ? sorted[(sorted.length - 1) / 2] :
      (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
    row(`unwrapKey goodput at ${f0(pairs[0].max.conns)} over ${f0(pairs[0].min.conns)} connections, ` +
      `${pairs.length} pairs back to back (median)`,
      pairs.map((x, i) => `${f0(g(x.max))} / ${f0(g(x.min))}/s = ${f2(rs[i])}`).join('; '),
      med, '>= 0.95 (median of the pairs)', med >= 0.95);
  }
  if (probe?.probe) {
    const p = probe.probe;
    row(`a second identity on one connection, the first on ${f0(probe.conns)}, admission ${gate}`,
      `${f0(p.ok_rps)}/s, p50/p99 ${ms(p.ok_p50_ms)} / ${ms(p.ok_p99_ms)} ms, ` +
      `${f0(p.refused)} refused (429)${others(p)}; the first: ${f0(probe.ok_rps)}/s admitted`,
      null, gate === 'on' ? 'p99 <= 20 ms' : 'information',
      gate === 'on' ? le(p.ok_p99_ms, 20) : null);
  }
}
// cluster (docs/cluster.md): unwrapKey on a node of a two-node cluster on
// PostgreSQL against the SQLite vault, alternating (ABBA)
if (a.cluster) {
  const { sqlite, pg } = a.cluster;
  row('unwrapKey on a node of a two-node cluster (PostgreSQL) vs the SQLite vault',
    `${f0(pg.rps)}/s vs ${f0(sqlite.rps)}/s; server CPU ${f0(pg.server_cpu_us)} us vs ` +
    `${f0(sqlite.server_cpu_us)} us`,
    pg.rps / sqlite.rps, '>= 0.90 x SQLite', pg.rps / sqlite.rps >= 0.90);
} else {
  row('unwrapKey on a node of a two-node cluster (PostgreSQL) vs the SQLite vault',
    'not measured: PostgreSQL 15 is not installed (make deps)', null, '>= 0.90 x SQLite', null);
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
