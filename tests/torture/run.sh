#!/usr/bin/env bash
# tests/torture/run.sh full|sampled — the allocation-failure torture run
# (tests/torture/torture.c): for each target, count its allocations K,
# then fail each one (full) or a sample (sampled: N = 1..50 and about 60
# more, evenly spread) and check: no crash, no sanitizer report, no leak,
# no wrong success. One "ok - torture: ..." / "not ok - ..." line a target.
set -u
cd "$(dirname "$0")/../.."
mode=${1:-sampled}
bin=build/san/tests/torture
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$PWD/tests/unit/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
log=$(mktemp /tmp/p11vault-torture.XXXXXX)
fail=0
for t in ${P11VAULT_TORTURE_TARGETS:-base policy secret store json requests tokp}; do
	"$bin" "$t" "$mode" >"$log" 2>&1
	rc=$?
	res=$(grep "^torture-result $t " "$log" | tail -1)
	if [ $rc -eq 0 ] && [ -n "$res" ] && [[ $res == *good ]] &&
	    ! grep -qE 'Sanitizer|runtime error' "$log"; then
		set -- $res
		echo "ok - torture: $t ($3 allocations, $4 runs)"
	else
		echo "not ok - torture: $t (exit $rc)"
		grep -E '^torture-(bad|note)|ERROR|SUMMARY|runtime error|^ +#[0-9]' "$log" | head -30 | sed 's/^/    /'
		fail=1
	fi
	grep '^torture-note' "$log" | head -5 | sed 's/^/    # /'
done
rm -f "$log"
exit $fail
