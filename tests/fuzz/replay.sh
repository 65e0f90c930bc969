#!/usr/bin/env bash
# tests/fuzz/replay.sh — part of `make test`: builds the fuzz targets and
# replays every committed input in tests/fuzz/corpus/<target>/ once
# (libFuzzer's run-these-files mode: deterministic, no mutation). One TAP
# line per target: "ok - fuzz replay <target> (<N> inputs)" or "not ok".
# A crash-* file kept in a corpus as a regression input fails the replay
# until the bug is fixed (intended).
cd "$(dirname "$0")/../.."
if ! out=$(bash tests/fuzz/build.sh 2>&1); then
	echo "$out" | tail -n 20 >&2
	echo "not ok - fuzz replay: build of the fuzz targets failed"
	exit 1
fi
mkdir -p build/fuzz/logs
fail=0
for src in tests/fuzz/fuzz_*.c; do
	t=${src##*/}; t=${t%.c}
	dir=tests/fuzz/corpus/$t
	files=()
	[[ -d $dir ]] && while IFS= read -r -d '' f; do files+=("$f"); done \
	    < <(find "$dir" -maxdepth 1 -type f -print0 | sort -z)
	log=build/fuzz/logs/replay-$t.log
	if ((${#files[@]} == 0)); then
		echo "not ok - fuzz replay $t (no corpus in $dir)"
		fail=1
		continue
	fi
	# -rss_limit_mb/-timeout: a hang or a blow-up is a failure too
	if ASAN_OPTIONS=detect_leaks=1 timeout 300 "build/fuzz/$t" \
	    -timeout=25 -rss_limit_mb=2048 "${files[@]}" >"$log" 2>&1; then
		echo "ok - fuzz replay $t (${#files[@]} inputs)"
	else
		echo "not ok - fuzz replay $t (${#files[@]} inputs; see $log)"
		grep -m3 -E 'ERROR|runtime error|SUMMARY|Running: ' "$log" | \
		    sed 's/^/#   /'
		fail=1
	fi
done
exit $fail
