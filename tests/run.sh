#!/usr/bin/env bash
# Runs every test suite and ends with one line "N passed, N failed".
# The style checks (clang-format, clang-tidy), unit tests (ASan+UBSan
# builds), then the API suites (Node, the real
# Azure SDK) against the release binary and again against the sanitizer
# build, and the Python SDK tests (tests/python/*.py) once, against the
# release binary. Counts come from "ok -"/"not ok -" lines (unit, Python) and
# node's "# pass N"/"# fail N" summary lines.
set -u
cd "$(dirname "$0")/.."
root=$(pwd)
out=$(mktemp -d /tmp/p11vault-test.XXXXXX)
passed=0
failed=0

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:thread_local_quarantine_size_kb=64"
export LSAN_OPTIONS="suppressions=$root/tests/unit/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

count_unit() {  # file, exit status
	local p f
	p=$(grep -c '^ok - ' "$1")
	f=$(grep -c '^not ok - ' "$1")
	if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crash/sanitizer
	passed=$((passed + p)); failed=$((failed + f))
}

run_ok_lines() {  # LOGNAME COMMAND...: a suite that prints "ok - " lines
	local log="$out/$1.log" rc
	shift
	"$@" >"$log" 2>&1
	rc=$?
	grep -E '^(not ok|ok) - ' "$log" | sed 's/^/  /'
	if [ $rc -ne 0 ]; then echo "  $* exited $rc:"; tail -30 "$log" | sed 's/^/    /'; fi
	count_unit "$log" $rc
}

echo "== style (clang-format, clang-tidy)"
run_ok_lines style bash tests/style.sh

echo "== unit tests (ASan+UBSan)"
for t in build/san/tests/test_*; do
	[ -x "$t" ] || continue
	run_ok_lines "$(basename "$t")" "$t"
done

echo "== torture (allocation failures, sampled)"
run_ok_lines torture bash tests/torture/run.sh sampled

echo "== fuzz corpora replay (libFuzzer targets, ASan+UBSan)"
run_ok_lines fuzz-replay bash tests/fuzz/replay.sh

# One test CA for every vault the API suites create, so that the Azure
# SDK (which reads NODE_EXTRA_CA_CERTS at start) trusts them all.
ca="$out/ca"
mkdir -p "$ca"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$ca/ca-key.pem" -out "$ca/ca.pem" -days 2 -subj "/CN=p11vault test CA" \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
	>/dev/null 2>&1
export NODE_EXTRA_CA_CERTS="$ca/ca.pem"
export P11VAULT_TEST_CA_CERT="$ca/ca.pem"
export P11VAULT_TEST_CA_KEY="$ca/ca-key.pem"

# The release and the sanitizer passes run at the same time (each suite
# still runs its files one at a time): most of an API test's time is spent
# waiting (restarts, SIGKILLs, timeouts), so two passes on two cores take
# little longer than the slower one alone.
start_node() {  # label, binary: runs in the background, status in .rc
	local log="$out/node-$1.log"
	(P11VAULT_BIN="$2" node --test --test-concurrency=1 --test-reporter=tap \
		tests/api/ >"$log" 2>&1; echo $? >"$log.rc") &
}

report_node() {  # label
	local log="$out/node-$1.log" p f rc
	wait
	echo "== API tests ($1)"
	rc=$(cat "$log.rc" 2>/dev/null || echo 1)
	grep -E '^\s*(not ok|ok) [0-9]+ - ' "$log" | sed 's/^ */  /' | head -400
	p=$(grep -E '^# pass [0-9]+' "$log" | awk '{print $3}' | tail -1)
	f=$(grep -E '^# fail [0-9]+' "$log" | awk '{print $3}' | tail -1)
	p=${p:-0}; f=${f:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; tail -40 "$log"; fi
	if [ "$f" -ne 0 ]; then
		grep -B2 -A30 '^\s*not ok' "$log" | head -200
	fi
	passed=$((passed + p)); failed=$((failed + f))
}

start_node release "$root/build/p11vault"
if [ "${P11VAULT_SKIP_SAN_API:-0}" != 1 ]; then
	start_node asan "$root/build/san/p11vault"
fi
report_node release
if [ "${P11VAULT_SKIP_SAN_API:-0}" != 1 ]; then
	report_node asan
fi

# Once, against the release binary (it tests the SDK, not the build):
# every tests/python/*.py (tests/python/lib/ holds what they share).
echo "== Python SDK (azure-identity, azure-keyvault-keys; release binary)"
py=/usr/bin/python3   # Debian's python3-azure is for the system Python
[ -x "$py" ] || py=python3
for t in tests/python/*.py; do
	run_ok_lines "python-$(basename "$t" .py)" env P11VAULT_BIN="$root/build/p11vault" "$py" "$t"
done

echo "== Azure CLI sign-in (az 2.45 against the release binary, once)"
run_ok_lines az-signin bash tests/az/signin.sh
echo "== Azure CLI: the customer-managed-key guides' flow (az 2.45, Python SDK; release binary, once)"
run_ok_lines az-guide bash tests/az/guide.sh

echo "== bench harness smoke (tiny size; no timing asserted)"
run_ok_lines bench-smoke bash tests/bench/smoke.sh

echo "logs: $out"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
