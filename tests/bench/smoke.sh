#!/usr/bin/env bash
# tests/bench/smoke.sh — runs the bench harness at tiny size so that it
# cannot rot; no timing is judged. Prints one "ok - bench smoke" or
# "not ok - bench smoke" line (details on stderr when it fails).
set -u
cd "$(dirname "$0")/../.."
log=$(mktemp /tmp/p11vault-bench-smoke.XXXXXX)
out=$(mktemp /tmp/p11vault-bench-smoke-json.XXXXXX)
if BENCH_SECONDS=1 BENCH_KEYS=50 BENCH_SPREAD=20 BENCH_BASE_KEYS=2 BENCH_CONNS=4 BENCH_OVERLOAD_CONNS="4 8" \
	BENCH_OVERLOAD_WARM=0.2 BENCH_OVERLOAD_PAIRS=1 BENCH_SPLIT_ROUNDS=2 \
	BENCH_OUT="$out" timeout 300 bash tests/bench/run.sh >"$log" 2>&1 &&
	node -e 'const o=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
	  if (!Array.isArray(o.rows) || o.rows.length < 10) process.exit(1);
	  for (const r of o.rows) if (typeof r.measured !== "string") process.exit(1);
	  // the overload generator (tests/bench/overload.c): a well-formed
	  // line per run, something admitted; no figure is judged
	  const ov = o.raw.overload && o.raw.overload.on;
	  if (!ov || !Array.isArray(ov.runs) || ov.runs.length !== 2 || !ov.probe) process.exit(1);
	  if (!Array.isArray(ov.pairs) || ov.pairs.length !== 1 || !(ov.pairs[0].min.ok > 0) || !(ov.pairs[0].max.ok > 0)) process.exit(1);
	  for (const x of [...ov.runs, ov.probe, ov.probe.probe]) {
	    if (!x || !Number.isInteger(x.ok) || !(x.ok > 0) || typeof x.statuses !== "object" ||
	        !Number.isInteger(x.refused) || !Number.isInteger(x.errors)) process.exit(1);
	  }
	  if (!(ov.runs[0].rss_kib > 0) || ov.runs[0].established !== ov.runs[0].conns) process.exit(1);
	  // the split rounds (tests/bench/split.c)
	  const sp = o.raw.split;
	  if (!sp || !Array.isArray(sp.rounds) || sp.rounds.length !== 2 || !(sp.median_ratio > 0) ||
	      typeof sp.median_cpu_delta_us !== "number") process.exit(1);
	  for (const x of sp.rounds) if (!(x.inproc.rps > 0) || !(x.split.rps > 0) || !(x.split.cpu_us > 0)) process.exit(1);
	  // the cluster row (a node on PostgreSQL vs SQLite) when PostgreSQL is there
	  if (require("fs").existsSync("/usr/lib/postgresql/15/bin/initdb")) {
	    const cl = o.raw.cluster;
	    if (!cl || !(cl.pg.requests > 0) || !(cl.sqlite.requests > 0) || cl.pg.non2xx || cl.sqlite.non2xx) process.exit(1);
	  }' "$out"; then
	echo "ok - bench smoke"
	rc=0
else
	echo "not ok - bench smoke"
	tail -30 "$log" >&2
	rc=1
fi
rm -f "$log" "$out"
exit $rc
