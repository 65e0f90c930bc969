#!/usr/bin/env bash
# tests/fuzz/run.sh — `make fuzz`: builds the targets and fuzzes each for
# SECONDS (argument, or FUZZ_SECONDS, default 60), one after another,
# JOBS at a time (FUZZ_JOBS, default 1). New interesting inputs go to
# build/fuzz/work/<target>/ (not committed); crashes, leaks and timeouts
# are written as tests/fuzz/corpus/<target>/crash-* (leak-*, timeout-*) so
# that the replay in `make test` keeps them as regressions. Prints, per
# target, the executions and the coverage (cov = edges, ft = features).
# To fold new inputs into the committed corpus (keeps it small):
#   build/fuzz/T -merge=1 tests/fuzz/corpus/T build/fuzz/work/T
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-${FUZZ_SECONDS:-60}}
jobs=${FUZZ_JOBS:-1}
bash tests/fuzz/build.sh || exit 1
mkdir -p build/fuzz/logs
targets=()
for src in tests/fuzz/fuzz_*.c; do t=${src##*/}; targets+=("${t%.c}"); done
if (($# > 1)); then targets=("${@:2}"); fi

run_one() {
	local t=$1 log=build/fuzz/logs/$1.log
	mkdir -p "build/fuzz/work/$t" "tests/fuzz/corpus/$t"
	timeout $((secs + 60)) "build/fuzz/$t" -max_total_time="$secs" \
	    -print_final_stats=1 -timeout=25 -rss_limit_mb=2048 \
	    -artifact_prefix="tests/fuzz/corpus/$t/" \
	    "build/fuzz/work/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1
	local rc=$?
	local last execs
	last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	printf '%-14s rc=%d execs=%s %s\n' "$t" "$rc" "${execs:-?}" \
	    "$(echo "$last" | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [^ ]+')"
	((rc == 0)) || grep -m3 -E 'ERROR|runtime error|SUMMARY' "$log"
	return $rc
}

failed=build/fuzz/logs/failed.$$
rm -f "$failed"
for t in "${targets[@]}"; do
	while (($(jobs -rp | wc -l) >= jobs)); do wait -n; done
	{ run_one "$t" || echo "$t" >>"$failed"; } &
done
wait
if [[ -s $failed ]]; then
	echo "fuzz: failures in: $(tr '\n' ' ' <"$failed")"
	rm -f "$failed"
	exit 1
fi
exit 0
