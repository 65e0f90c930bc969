#!/usr/bin/env bash
# Runs every test suite and ends with one line "N passed, N failed".
# The API suites (Node, the real Azure SDK) against the sanitizer build,
# and the build-sensitive part of them again against the release binary
# (release_files below), the Python SDK tests
# (tests/python/*.py) and the az tests (tests/az/*.sh) once against the
# release binary, all start first in the background: most of their time is
# spent waiting (restarts, SIGKILLs, timeouts, az's start-up), so the
# CPU-bound suites run meanwhile in the foreground: the style checks
# (clang-format, clang-tidy), unit tests (ASan+UBSan builds), the sampled
# torture and the fuzz corpora. Then every background suite is reported.
# Counts come from "ok -"/"not ok -" lines (unit, torture, Python, az) and
# node's "# pass N"/"# fail N" summary lines.
set -u
cd "$(dirname "$0")/.."
root=$(pwd)
out=$(mktemp -d /tmp/p11vault-test.XXXXXX)
passed=0
failed=0

# malloc_context_size: 10 frames of allocation/free stack in a report
# (the default 30 costs every malloc of every sanitized server)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:thread_local_quarantine_size_kb=64:malloc_context_size=10"
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

report_ok_lines() {  # LOGNAME: a background suite's lines and counts
	local log="$out/$1.log" rc
	rc=$(cat "$log.rc" 2>/dev/null || echo 1)
	grep -E '^(not ok|ok) - ' "$log" | sed 's/^/  /'
	if [ "$rc" -ne 0 ]; then echo "  $1 exited $rc:"; tail -30 "$log" | sed 's/^/    /'; fi
	count_unit "$log" "$rc"
}

t0=$(date +%s)
since() { echo "  ($(($(date +%s) - t0)) s since the start)"; }

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

start_node() {  # label, binary, files at once, [files]: in the background, status in .rc
	local log="$out/node-$1.log"
	(P11VAULT_BIN="$2" node --test --test-concurrency="$3" --test-reporter=tap \
		${4:-tests/api/} >"$log" 2>&1; echo $? >"$log.rc") &
}

# Every API file but the cluster's (below) runs against the sanitizer build (ASan+UBSan: memory
# and undefined-behaviour errors anywhere the suite reaches). The release
# build, the one that ships, runs again the files whose outcome can depend
# on the build: the SDK's main flows and parity, timing and load (hostile
# clients, throttling, crashes, faults, the token process's restarts),
# what is left in memory (the sanitizer's quarantine and redzones change
# it), the system-call filter and the privilege drop, the PostgreSQL store.
# Running all of them twice had taken the suite past its 12 minutes.
# The cluster's files (several nodes, PostgreSQL primary and standby,
# HAProxy: a minute of orchestration each) run against the release build
# only; the code they reach (store_pg.c, cluster_pg.c, coherence.c) runs
# under the sanitizers in tests/unit/test_store.c and test_cluster.c
# against a real PostgreSQL, and pg.test.mjs runs in both passes.
release_files="sdk-keys parity errors parse hostile throttle crash fault fiu
	diskfull tokenproc memscan secrets privdrop restart pg newcomer byok
	revocation cluster failover"
release_only="cluster failover"

report_node() {  # label
	local log="$out/node-$1.log" p f rc
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

start_node release "$root/build/p11vault" 2 \
	"$(for f in $release_files; do printf 'tests/api/%s.test.mjs ' "$f"; done)"
if [ "${P11VAULT_SKIP_SAN_API:-0}" != 1 ]; then
	# the slower pass runs two files at a time (files of the two passes
	# already run side by side, so no file may assume it is alone)
	start_node asan "$root/build/san/p11vault" 2 \
		"$(for f in tests/api/*.test.mjs; do
			b=$(basename "$f" .test.mjs)
			[[ " $release_only " == *" $b "* ]] || printf '%s ' "$f"
		done)"
fi
# Once, against the release binary (they test the clients, not the build):
# every tests/python/*.py (tests/python/lib/ holds what they share), one
# after another; every tests/az/*.sh, one after another.
py=/usr/bin/python3   # Debian's python3-azure is for the system Python
[ -x "$py" ] || py=python3
py_suites=""
az_suites=""
for t in tests/python/*.py; do py_suites="$py_suites python-$(basename "$t" .py)"; done
for t in tests/az/*.sh; do az_suites="$az_suites az-$(basename "$t" .sh)"; done
(for t in tests/python/*.py; do
	n="python-$(basename "$t" .py)"
	env P11VAULT_BIN="$root/build/p11vault" "$py" "$t" >"$out/$n.log" 2>&1
	echo $? >"$out/$n.log.rc"
done) &
(for t in tests/az/*.sh; do
	n="az-$(basename "$t" .sh)"
	bash "$t" >"$out/$n.log" 2>&1
	echo $? >"$out/$n.log.rc"
done) &
# the bench harness at tiny size (it judges no timing, so it may share the
# cores; run last and alone it had added a minute to the run)
(bash tests/bench/smoke.sh >"$out/bench-smoke.log" 2>&1
	echo $? >"$out/bench-smoke.log.rc") &

echo "== style (clang-format, clang-tidy)"
run_ok_lines style bash tests/style.sh

echo "== unit tests (ASan+UBSan)"
for t in build/san/tests/test_*; do
	[ -x "$t" ] || continue
	run_ok_lines "$(basename "$t")" "$t"
done

since
echo "== torture (allocation failures, sampled)"
run_ok_lines torture bash tests/torture/run.sh sampled

since
echo "== fuzz corpora replay (libFuzzer targets, ASan+UBSan)"
run_ok_lines fuzz-replay bash tests/fuzz/replay.sh

since
wait   # every background suite
report_node release
if [ "${P11VAULT_SKIP_SAN_API:-0}" != 1 ]; then
	report_node asan
fi
echo "== Python SDK (azure-identity, azure-keyvault-keys; release binary)"
for n in $py_suites; do report_ok_lines "$n"; done
echo "== Azure CLI (az 2.45 against the release binary, once)"
for n in $az_suites; do report_ok_lines "$n"; done
since

echo "== bench harness smoke (tiny size; no timing asserted)"
report_ok_lines bench-smoke

echo "logs: $out"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
