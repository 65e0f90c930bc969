#!/usr/bin/env bash
# tests/bench/smoke.sh — runs the bench harness at tiny size so that it
# cannot rot; no timing is judged. Prints one "ok - bench smoke" or
# "not ok - bench smoke" line (details on stderr when it fails).
set -u
cd "$(dirname "$0")/../.."
log=$(mktemp /tmp/p11vault-bench-smoke.XXXXXX)
out=$(mktemp /tmp/p11vault-bench-smoke-json.XXXXXX)
if BENCH_SECONDS=1 BENCH_KEYS=50 BENCH_SPREAD=20 BENCH_BASE_KEYS=2 BENCH_CONNS=4 BENCH_OVERLOAD_CONNS="8 16" \
	BENCH_OUT="$out" timeout 180 bash tests/bench/run.sh >"$log" 2>&1 &&
	node -e 'const o=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
	  if (!Array.isArray(o.rows) || o.rows.length < 10) process.exit(1);
	  for (const r of o.rows) if (typeof r.measured !== "string") process.exit(1);' "$out"; then
	echo "ok - bench smoke"
	rc=0
else
	echo "not ok - bench smoke"
	tail -30 "$log" >&2
	rc=1
fi
rm -f "$log" "$out"
exit $rc
