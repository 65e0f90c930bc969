#!/usr/bin/env bash
# tests/bench/run.sh — `make bench`: a fresh vault, every figure measured
# side by side in one run on this machine, one table on stdout and the same
# as JSON in $BENCH_OUT (build/bench.json).
#
# Environment (defaults in brackets):
#   BENCH_SECONDS [8]     length of each timed run
#   BENCH_KEYS    [10000] keys in the store for the key-count row
#   BENCH_SPREAD  [1000]  distinct keys the spread run cycles over
#   BENCH_CONNS   [8]     concurrent keep-alive connections (wrk, 2 threads)
#   BENCH_BASE_KEYS [8]   distinct RSA keys behind the BENCH_KEYS names
#   BENCH_FILL_CONNS [8]  concurrent imports while filling the store
#   BENCH_OVERLOAD_CONNS [8 512 2000] connection counts of the overload rows
#   BENCH_OVERLOAD_RAMP [200/100] new connections per ms while ramping up
#   BENCH_OVERLOAD_WARM [1] seconds after the ramp before measuring
#   BENCH_OVERLOAD_OFF  [unset] 1: the overload rows with admission=false too
#   BENCH_OVERLOAD_PAIRS [3] paired runs, fewest and most connections back
#                       to back (ABBA order), for the goodput ratio row
#   BENCH_OUT     [build/bench.json]
#   P11VAULT_BIN  [build/p11vault]
# Needs: wrk, curl, node, cc, OpenSSL (headers), SoftHSMv2. Exit 0 when the run completed
# (goals missed are reported in the table, not by the exit status).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
S=${BENCH_SECONDS:-8}
KEYS=${BENCH_KEYS:-10000}
SPREAD=${BENCH_SPREAD:-1000}
C=${BENCH_CONNS:-8}
OUT=${BENCH_OUT:-$root/build/bench.json}
BIN=${P11VAULT_BIN:-$root/build/p11vault}
MODULE=${BENCH_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
COLD=20
[ "$KEYS" -ge $((COLD * 2)) ] || { echo "bench: BENCH_KEYS must be >= $((COLD * 2))" >&2; exit 2; }
[ "$SPREAD" -gt $((KEYS - COLD)) ] && SPREAD=$((KEYS - COLD))
BASE_KEYS=${BENCH_BASE_KEYS:-8}
FILL_CONNS=${BENCH_FILL_CONNS:-8}

W=$(mktemp -d /tmp/p11vault-bench.XXXXXX)
server_pid=""
cleanup() {
	if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
	rm -rf "$W"
}
[ -n "${BENCH_KEEP:-}" ] || trap cleanup EXIT
say() { echo "bench: $*" >&2; }
jget() { node -e 'const o=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));const v=process.argv[2].split(".").reduce((a,k)=>a?.[k],o);if(v===undefined)process.exit(1);console.log(typeof v==="object"?JSON.stringify(v):v)' "$@"; }

# ---- build the helpers ------------------------------------------------------
mkdir -p "$W/bin"
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror $(pkg-config --cflags p11-kit-1) \
	tests/bench/raw_token.c -ldl -lpthread -o "$W/bin/raw_token"
# the split's cost: the hsm module in this process vs through the token
# process (it links hsm/ alone, as the token process does)
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -I. $(pkg-config --cflags p11-kit-1 libcrypto libseccomp) \
	tests/bench/split.c hsm/*.c $(pkg-config --libs libcrypto libseccomp libgfshare) -ldl -lpthread -o "$W/bin/split"
# the overload rows' load generator (wrk opens every connection at once and
# does not wait out a Retry-After)
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror $(pkg-config --cflags openssl) \
	tests/bench/overload.c $(pkg-config --libs openssl) -lpthread -o "$W/bin/overload"

# ---- the raw token (a separate SoftHSMv2 token directory) --------------------
say "raw token: C_Decrypt and C_GenerateKeyPair, 1 and 2 threads, ${S}s each"
mkdir -p "$W/raw/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
	"$W/raw/tokens" >"$W/raw/softhsm2.conf"
SOFTHSM2_CONF="$W/raw/softhsm2.conf" "$W/bin/raw_token" "$MODULE" "$S" 2 >"$W/raw.json"
SPLIT_ROUNDS=${BENCH_SPLIT_ROUNDS:-3}
say "the token process: decrypt in this process vs through it, $C threads, $SPLIT_ROUNDS rounds in $((2 * S))s"
# split's token has a plaintext user.pin in its hsm_dir and no seal.conf:
# the token process uses that PIN and is told not to migrate it
SOFTHSM2_CONF="$W/raw/softhsm2.conf" P11VAULT_NO_SEAL_MIGRATION=1 \
	"$W/bin/split" "$MODULE" "$((2 * S))" "$C" "$SPLIT_ROUNDS" >"$W/split.json" 2>"$W/split.log" ||
	{ cat "$W/split.log" >&2; exit 1; }

# ---- a fresh vault -----------------------------------------------------------
port=""
for _ in $(seq 1 50); do
	p=$((20000 + RANDOM % 40000))
	# the server binds with SO_REUSEPORT: make sure nobody else is there
	if ! ss -ltnH 2>/dev/null | awk '{print $4}' | grep -q ":$p\$"; then port=$p; break; fi
done
[ -n "$port" ] || { say "no free port"; exit 1; }
D="$W/vault"
url="https://127.0.0.1:$port"
# init as root seals the vault under systemd-creds with the host key (an
# unattended unseal: the server serves at start); its stdout is the JSON
# with the operator key shares, its stderr advice: both kept in $W
"$BIN" init --data "$D" --vault-url "$url" >"$W/init.json" 2>"$W/init.log" ||
	{ cat "$W/init.log" >&2; exit 1; }
start_server() {
	"$BIN" serve --data "$D" --listen "127.0.0.1:$port" >>"$W/serve.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 1 600); do
		grep -q "listening on" "$W/serve.log" 2>/dev/null && break
		kill -0 "$server_pid" 2>/dev/null || { cat "$W/serve.log" >&2; exit 1; }
		sleep 0.1
	done
}
start_server
CA="$D/tls/ca.pem"
# the server and every process under it: the token launcher and the token
# process it starts (argv[1] token-process), however deep
descendants() {
	local c
	for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do echo "$c"; descendants "$c"; done
}
server_procs() { echo "$server_pid"; descendants "$server_pid"; }
rss_kib() {  # all of them
	local p f=()
	for p in $(server_procs); do f+=("/proc/$p/status"); done
	awk '/^VmRSS:/ {s += $2} END {print s}' "${f[@]}" 2>/dev/null
}
curl -sf --cacert "$CA" "$url/healthz" >/dev/null
sleep 0.5
rss_idle=$(rss_kib)

# a managed identity with get/create/import/wrapKey/unwrapKey, its token
"$BIN" identity create --data "$D" --name bench >"$W/id.json"
oid=$(jget "$W/id.json" objectId)
"$BIN" policy set --data "$D" --object-id "$oid" --key-permissions \
	get create import wrapKey unwrapKey >/dev/null
tenant=$(jget "$W/id.json" tenantId)
id_token() {  # IDENTITY_JSON OUT_JSON: the identity's bearer token for the vault
	curl -sf --cacert "$CA" "$url/$tenant/oauth2/v2.0/token" \
		--data-urlencode grant_type=client_credentials \
		--data-urlencode "client_id=$(jget "$1" clientId)" \
		--data-urlencode "client_secret=$(jget "$1" clientSecret)" \
		--data-urlencode scope=https://vault.azure.net/.default >"$2"
}
id_token "$W/id.json" "$W/tok.json"
export BENCH_TOKEN
BENCH_TOKEN=$(jget "$W/tok.json" access_token)

api() {  # METHOD PATH [BODY] -> body on stdout; fails on non-2xx
	curl -sf --cacert "$CA" -X "$1" -H "Authorization: Bearer $BENCH_TOKEN" \
		-H 'Content-Type: application/json' ${3:+--data "$3"} \
		"$url$2$( [[ $2 == *\?* ]] && echo '&' || echo '?')api-version=7.4"
}
mkkey() {  # NAME -> version
	api POST "/keys/$1/create" '{"kty":"RSA","key_size":2048}' >"$W/k.json"
	jget "$W/k.json" key.kid | sed 's#.*/##'
}
wrapct() {  # NAME VERSION ALG -> base64url ciphertext of a 32-byte key
	api POST "/keys/$1/$2/wrapkey" "{\"alg\":\"$3\",\"value\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\"}" >"$W/w.json"
	jget "$W/w.json" value
}

ver=$(mkkey hot)
ct1=$(wrapct hot "$ver" RSA-OAEP)
ct256=$(wrapct hot "$ver" RSA-OAEP-256)
# one check that an unwrap answers 200 before timing anything
api POST "/keys/hot/$ver/unwrapkey" "{\"alg\":\"RSA-OAEP\",\"value\":\"$ct1\"}" >/dev/null

# CPU time in clock ticks: the server's, and the whole machine's busy time
# the server's: the network process, the launcher and the token process
srv_ticks() {
	local p f=()
	for p in $(server_procs); do f+=("/proc/$p/stat"); done
	# after "(comm)", utime and stime are fields 14 and 15 of the line
	sed 's/^.*) //' "${f[@]}" 2>/dev/null | awk '{t += $12 + $13} END {print t + 0}'
}
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
wrkrun() {  # NAME CONNS SECONDS [extra env...] -> $W/NAME.json
	local name=$1 conns=$2 secs=$3 s0 b0 s1 b1
	shift 3
	s0=$(srv_ticks); b0=$(busy_ticks)
	env "$@" wrk -t2 -c"$conns" -d"${secs}s" --timeout 10s -s tests/bench/req.lua "$url/" \
		>"$W/$name.wrk" 2>&1 || { cat "$W/$name.wrk" >&2; exit 1; }
	s1=$(srv_ticks); b1=$(busy_ticks)
	grep '^BENCHJSON ' "$W/$name.wrk" | sed 's/^BENCHJSON //' >"$W/$name.json"
	[ -s "$W/$name.json" ] || { cat "$W/$name.wrk" >&2; exit 1; }
	# CPU microseconds per request: the server's, and everything's
	# (server, wrk, kernel) — the load generator shares the cores
	node -e 'const fs=require("fs"),f=process.argv[1],o=JSON.parse(fs.readFileSync(f,"utf8"));
const hz=+process.argv[4],n=Math.max(o.requests,1);
o.server_cpu_us=+process.argv[2]*1e6/hz/n;o.busy_cpu_us=+process.argv[3]*1e6/hz/n;
fs.writeFileSync(f,JSON.stringify(o));' "$W/$name.json" $((s1 - s0)) $((b1 - b0)) "$(getconf CLK_TCK)"
}
unwrap_env() {  # NAME VERSION ALG CT
	echo "BENCH_PATH=/keys/$1/$2/unwrapkey?api-version=7.4" \
		"BENCH_BODY={\"alg\":\"$3\",\"value\":\"$4\"}"
}

say "unwrapKey RSA-OAEP, RSA-OAEP-256, wrapKey, no-op: ${S}s each, $C connections"
# shellcheck disable=SC2046
wrkrun unwrap "$C" "$S" $(unwrap_env hot "$ver" RSA-OAEP "$ct1")
# shellcheck disable=SC2046
wrkrun unwrap256 "$C" "$S" $(unwrap_env hot "$ver" RSA-OAEP-256 "$ct256")
# the ceiling again right after: the unwrap rows are compared with the
# mean of the raw figures before and after them (the machine drifts)
SOFTHSM2_CONF="$W/raw/softhsm2.conf" "$W/bin/raw_token" "$MODULE" "$S" 2 decrypt >"$W/raw_after.json"
wrkrun wrap "$C" "$S" "BENCH_PATH=/keys/hot/$ver/wrapkey?api-version=7.4" \
	"BENCH_BODY={\"alg\":\"RSA-OAEP\",\"value\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\"}"
# the authenticated no-op: the token is verified, then 404 with no key work
# (a GET: a POST would be "mutating" and pay an fsynced audit line)
noop_status=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$CA" \
	-H "Authorization: Bearer $BENCH_TOKEN" "$url/keys/hot/$ver/noop?api-version=7.4")
[ "$noop_status" = 404 ] || { say "no-op answered $noop_status, want 404"; exit 1; }
wrkrun noop "$C" "$S" BENCH_METHOD=GET "BENCH_PATH=/keys/hot/$ver/noop?api-version=7.4"

# latency at 80% of the peak unwrap rate: each of LC connections waits
# between response and next request (wrk delay(), whole ms); one short
# calibration run measures the service time to subtract.
peak=$(jget "$W/unwrap.json" rps)
LC=$((C * 2))
target=$(node -e "console.log(Math.max(1, 0.8 * $peak))")
d0=$(node -e "console.log(Math.max(1, Math.round($LC * 1000 / $target)))")
say "latency at 80% of $peak/s: $LC connections, calibrating"
# shellcheck disable=SC2046
wrkrun latcal "$LC" "$(( (S + 1) / 2 ))" BENCH_DELAY_MS="$d0" $(unwrap_env hot "$ver" RSA-OAEP "$ct1")
r0=$(jget "$W/latcal.json" rps)
d1=$(node -e "const r0=$r0,t=$target,d0=$d0,lc=$LC;
  // per-connection period = delay + service; solve for the delay
  const svc = lc * 1000 / Math.max(r0, 1) - d0;
  console.log(Math.max(1, Math.round(lc * 1000 / t - svc)))")
# shellcheck disable=SC2046
wrkrun latency "$LC" "$S" BENCH_DELAY_MS="$d1" $(unwrap_env hot "$ver" RSA-OAEP "$ct1")

# ---- create: RSA-2048 over the API -------------------------------------------
say "create RSA-2048 over the API: ${S}s"
wrkrun create "$C" "$S" "BENCH_PATH=/keys/created/create?api-version=7.4" \
	'BENCH_BODY={"kty":"RSA","key_size":2048}'

# ---- overload: unwrapKey at rising connections, the admission gate on --------
# tests/bench/overload.c: N keep-alive connections opened at most
# BENCH_OVERLOAD_RAMP (200 per 100 ms), each in a closed loop that waits out
# the x-ms-retry-after-ms / Retry-After of a 429 as the Azure SDKs do;
# after the ramp and a warm-up (BENCH_OVERLOAD_WARM s), S seconds measured:
# admitted (200) and refused (429) answers with latencies of their own, and
# the server's RSS (all its processes) with every connection still open.
# Then a second identity on one connection (its own token, closed loop)
# while the first runs the largest count. BENCH_OVERLOAD_OFF=1 runs the
# same with admission=false as well (the before figures, same run).
OVER=${BENCH_OVERLOAD_CONNS:-8 512 2000}
OVER_MAX=$(printf '%s\n' $OVER | sort -n | tail -1)
OVER_RAMP=${BENCH_OVERLOAD_RAMP:-200/100}
OVER_WARM=${BENCH_OVERLOAD_WARM:-1}
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt $((OVER_MAX + 256)) ]; then
	say "overload: ulimit -Hn is $(ulimit -Hn): $OVER_MAX connections need $((OVER_MAX + 256)) descriptors (the server's and the generator's)"
	exit 1
fi
# the second identity: the same permissions, a token of its own
"$BIN" identity create --data "$D" --name bench2 >"$W/id2.json"
"$BIN" policy set --data "$D" --object-id "$(jget "$W/id2.json" objectId)" \
	--key-permissions get unwrapKey >/dev/null
id_token "$W/id2.json" "$W/tok2.json"
export BENCH_TOKEN2
BENCH_TOKEN2=$(jget "$W/tok2.json" access_token)
overrun() {  # NAME CONNS [overload options...] -> $W/NAME.json
	local name=$1 conns=$2
	shift 2
	"$W/bin/overload" -c "$conns" -d "$S" -w "$OVER_WARM" -r "$OVER_RAMP" -a "$CA" \
		-p "$(server_procs | paste -sd,)" -b "{\"alg\":\"RSA-OAEP\",\"value\":\"$ct1\"}" "$@" \
		"$url/keys/hot/$ver/unwrapkey?api-version=7.4" >"$W/$name.json" 2>"$W/$name.log" ||
		{ cat "$W/$name.log" >&2; exit 1; }
	node -e 'JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"))' "$W/$name.json" ||
		{ say "overload: $name: not one JSON line"; cat "$W/$name.json" "$W/$name.log" >&2; exit 1; }
}
overload_runs() {  # SUFFIX
	local c
	for c in $OVER; do
		say "overload: unwrapKey, $c connections, ${S}s ($1)"
		overrun "over$1$c" "$c"
	done
	say "overload: a second identity on one connection, the first on $OVER_MAX, ${S}s ($1)"
	overrun "over$1probe" "$OVER_MAX" -2
}
overload_runs on
# The goodput ratio, paired: the machine's speed drifts by 10-20 % within
# minutes (a neighbour on the host), which moves a ratio of two runs taken
# a minute apart more than anything the server does. Runs at the fewest
# and the most connections back to back, in the order max,min,min,max,...
# give one ratio per pair; the row reports every pair and their median.
OVER_MIN=$(printf '%s\n' $OVER | sort -n | head -1)
OVER_PAIRS=${BENCH_OVERLOAD_PAIRS:-3}
for i in $(seq 1 "$OVER_PAIRS"); do
	if [ $((i % 2)) = 1 ]; then order="$OVER_MAX $OVER_MIN"; else order="$OVER_MIN $OVER_MAX"; fi
	for c in $order; do
		say "overload: pair $i of $OVER_PAIRS, unwrapKey, $c connections, ${S}s"
		overrun "pair${i}_$c" "$c"
	done
done
if [ -n "${BENCH_OVERLOAD_OFF:-}" ]; then
	kill "$server_pid"; wait "$server_pid" || true
	echo admission=false >>"$D/p11vault.conf"
	: >"$W/serve.log"
	start_server
	overload_runs off
	kill "$server_pid"; wait "$server_pid" || true
	sed -i '/^admission=false$/d' "$D/p11vault.conf"
	: >"$W/serve.log"
	start_server
fi
OVER_MIN=$OVER_MIN OVER_MAX=$OVER_MAX OVER_PAIRS=$OVER_PAIRS node -e 'const fs=require("fs"),W=process.argv[1],out={};
const rd=(f)=>fs.existsSync(f)?JSON.parse(fs.readFileSync(f,"utf8")):null;
for (const g of ["on","off"]) {
 const runs=process.argv.slice(2).map((c)=>rd(`${W}/over${g}${c}.json`)).filter((o)=>o);
 if (runs.length) out[g]={runs,probe:rd(`${W}/over${g}probe.json`)};
}
const pairs=[];
for (let i=1;i<=Number(process.env.OVER_PAIRS);i++) {
 const lo=rd(`${W}/pair${i}_${process.env.OVER_MIN}.json`), hi=rd(`${W}/pair${i}_${process.env.OVER_MAX}.json`);
 if (lo && hi) pairs.push({min:lo,max:hi});
}
if (out.on) out.on.pairs=pairs;
fs.writeFileSync(`${W}/overload.json`,JSON.stringify(out));' "$W" $OVER

# ---- key count ----------------------------------------------------------------
say "filling the store to $KEYS keys ($BASE_KEYS generated here, each imported under many names)"
# every copy is imported through the API (PUT /keys/{name}): the vault
# binds and seals each blob itself; bct.txt: "base_index ciphertext"
fill0=$(date +%s.%N)
node tests/bench/fill.mjs "$url" "$CA" "$KEYS" "$BASE_KEYS" "$FILL_CONNS" "$W/bct.txt" \
	>"$W/filled.txt" 2>"$W/fill.log" || { cat "$W/fill.log" >&2; exit 1; }
fill_s=$(node -e "console.log(($(date +%s.%N) - $fill0).toFixed(2))")
say "$(cat "$W/fill.log") — ${fill_s} s in all"
# a restart, as before: the key-count and cold rows start with no key used
# since start (the token process holds no unsealed key)
kill "$server_pid"; wait "$server_pid" || true
: >"$W/serve.log"
start_server
# the spread: SPREAD distinct keys picked at random, each with a
# ciphertext made under its base key
shuf "$W/filled.txt" >"$W/shuffled.txt"
head -n "$COLD" "$W/shuffled.txt" >"$W/cold.keys"
awk -v a="$COLD" -v n="$SPREAD" 'NR > a && NR <= a + n' "$W/shuffled.txt" | awk -v q='"' 'NR==FNR {ct[$1]=$2; next}
	{ printf "/keys/%s/%s/unwrapkey?api-version=7.4\t{%salg%s:%sRSA-OAEP%s,%svalue%s:%s%s%s}\n",
	  $1, $2, q, q, q, q, q, q, q, ct[$3], q }' "$W/bct.txt" - >"$W/spread.req"
# first use of a cold key: on an open connection (after a warm request),
# time one unwrap on each of $COLD keys never used before (not in the spread)
say "first use of cold keys"
: >"$W/cold.txt"
while read -r name v b; do
	curl -s -o /dev/null --cacert "$CA" -w '%{time_total}\n' \
		-H "Authorization: Bearer $BENCH_TOKEN" -H 'Content-Type: application/json' \
		--data "{\"alg\":\"RSA-OAEP\",\"value\":\"$ct1\"}" \
		"$url/keys/hot/$ver/unwrapkey?api-version=7.4" \
		--next -s -o /dev/null --cacert "$CA" -w '%{time_total} %{http_code}\n' \
		-H "Authorization: Bearer $BENCH_TOKEN" -H 'Content-Type: application/json' \
		--data "{\"alg\":\"RSA-OAEP\",\"value\":\"$(awk -v b="$b" '$1==b {print $2}' "$W/bct.txt")\"}" \
		"$url/keys/$name/$v/unwrapkey?api-version=7.4" | tail -1 >>"$W/cold.txt"
done <"$W/cold.keys"
grep -q ' 200$' "$W/cold.txt" && ! grep -qv ' 200$' "$W/cold.txt" || { say "cold unwrap failed"; cat "$W/cold.txt" >&2; exit 1; }
say "unwrapKey: one hot key vs $SPREAD keys of $KEYS, ${S}s each"
# one untimed pass over the spread first: the row compares steady states
# (a cold key's first use is the row above)
wrkrun spreadwarm "$C" 3 BENCH_REQFILE="$W/spread.req"
# then hot, spread, spread, hot, each half as long (ABBA: a linear drift
# of the machine's speed during the four runs favours neither side)
H=$(( (S + 1) / 2 ))
# shellcheck disable=SC2046
wrkrun hot1 "$C" "$H" $(unwrap_env hot "$ver" RSA-OAEP "$ct1")
wrkrun spread1 "$C" "$H" BENCH_REQFILE="$W/spread.req"
wrkrun spread2 "$C" "$H" BENCH_REQFILE="$W/spread.req"
# shellcheck disable=SC2046
wrkrun hot2 "$C" "$H" $(unwrap_env hot "$ver" RSA-OAEP "$ct1")
merge2() {  # OUT A B: requests and seconds summed, the rate recomputed
	node -e 'const fs=require("fs"),[o,a,b]=process.argv.slice(1).map((f)=>f);
const x=JSON.parse(fs.readFileSync(a,"utf8")),y=JSON.parse(fs.readFileSync(b,"utf8"));
const m={...x,requests:x.requests+y.requests,seconds:x.seconds+y.seconds,
 non2xx:x.non2xx+y.non2xx,errors:x.errors+y.errors,
 p99_ms:Math.max(x.p99_ms,y.p99_ms),max_ms:Math.max(x.max_ms,y.max_ms)};
// CPU per request: the mean over both runs, weighted by their requests
for (const k of ["server_cpu_us","busy_cpu_us"])
 m[k]=(x[k]*x.requests+y[k]*y.requests)/Math.max(m.requests,1);
m.rps=m.requests/m.seconds;fs.writeFileSync(o,JSON.stringify(m));' "$1" "$2" "$3"
}
merge2 "$W/hotfull.json" "$W/hot1.json" "$W/hot2.json"
merge2 "$W/spread.json" "$W/spread1.json" "$W/spread2.json"
rss_loaded=$(rss_kib)

# ---- cluster: a node of a two-node cluster on PostgreSQL vs this vault ----------
# docs/cluster.md: a vault made with init --store on a throwaway PostgreSQL
# (tests/tools/pgtmp.sh, a unix socket in $W/pg), a second node made with
# node init --store, approved and joined; both serve (the second idle, its
# listener and lease running, as the first's). unwrapKey on the first node
# against unwrapKey on the SQLite vault above, ABBA, each half as long.
cluster_pids=()
pgdir=""
cluster_cleanup() {
	local p
	for p in "${cluster_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	cluster_pids=()
	if [ -n "$pgdir" ]; then tests/tools/pgtmp.sh destroy "$pgdir" >/dev/null 2>&1 || true; pgdir=""; fi
}
trap 'cluster_cleanup; [ -n "${BENCH_KEEP:-}" ] || cleanup' EXIT
free_port() {
	local p
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 40000))
		if ! ss -ltnH 2>/dev/null | awk '{print $4}' | grep -q ":$p\$"; then echo "$p"; return 0; fi
	done
	return 1
}
serve_node() {  # DIR PORT LOG -> pid in $node_pid
	"$BIN" serve --data "$1" --listen "127.0.0.1:$2" >>"$3" 2>&1 &
	node_pid=$!
	cluster_pids+=("$node_pid")
	for _ in $(seq 1 600); do
		grep -q "listening on" "$3" 2>/dev/null && return 0
		kill -0 "$node_pid" 2>/dev/null || { cat "$3" >&2; exit 1; }
		sleep 0.1
	done
	say "cluster: $1 did not start"; cat "$3" >&2; exit 1
}
first3() { node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).unsealKeyShares.slice(0,3).join("\n")+"\n")' "$1"; }
# pgtmp runs the server as the postgres user: it must reach $W/pg
chmod 755 "$W"
mkdir -p "$W/pg"
set +e
db=$(tests/tools/pgtmp.sh start "$W/pg" 2>"$W/pg.log")
pgrc=$?
set -e
if [ "$pgrc" -eq 77 ]; then
	say "cluster: PostgreSQL is not installed (make deps): row skipped"
elif [ "$pgrc" -ne 0 ]; then
	cat "$W/pg.log" >&2; exit 1
else
	pgdir="$W/pg"
	say "cluster: a two-node cluster on PostgreSQL, unwrapKey on one node vs this SQLite vault, ${S}s each"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$W/cca.key" -out "$W/cca.pem" -days 2 -subj '/CN=p11vault bench cluster CA' \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
		>/dev/null 2>&1
	pa=$(free_port); pb=$(free_port)
	curl2="https://127.0.0.1:$pa"
	"$BIN" init --data "$W/na" --vault-url "$curl2" --store "$db" \
		--tls-ca-cert "$W/cca.pem" --tls-ca-key "$W/cca.key" >"$W/na.json" 2>"$W/na.log" ||
		{ cat "$W/na.log" >&2; exit 1; }
	ctenant=$(jget "$W/na.json" tenantId)
	"$BIN" node init --data "$W/nb" --name node-b --store "$db" --vault-url "$curl2" \
		--tenant-id "$ctenant" --tls-ca-cert "$W/cca.pem" --tls-ca-key "$W/cca.key" \
		>"$W/nb.json" 2>"$W/nb.log" || { cat "$W/nb.log" >&2; exit 1; }
	first3 "$W/na.json" | "$BIN" node approve --data "$W/na" --request "$W/nb/join-request.json" \
		--fingerprint "$(jget "$W/nb.json" fingerprint)" --out "$W/bundle.json" >"$W/nb.log" 2>&1 ||
		{ cat "$W/nb.log" >&2; exit 1; }
	first3 "$W/nb.json" | "$BIN" node join --data "$W/nb" --bundle "$W/bundle.json" >"$W/nb.log" 2>&1 ||
		{ cat "$W/nb.log" >&2; exit 1; }
	serve_node "$W/na" "$pa" "$W/na-serve.log"
	na_pid=$node_pid
	# the CLI reaches the serving node (its management API)
	"$BIN" identity create --data "$W/na" --name bench >"$W/cid.json"
	"$BIN" policy set --data "$W/na" --object-id "$(jget "$W/cid.json" objectId)" \
		--key-permissions get create wrapKey unwrapKey >/dev/null
	serve_node "$W/nb" "$pb" "$W/nb-serve.log"
	ctok=$(curl -sf --cacert "$W/cca.pem" "$curl2/$ctenant/oauth2/v2.0/token" \
		--data-urlencode grant_type=client_credentials \
		--data-urlencode "client_id=$(jget "$W/cid.json" clientId)" \
		--data-urlencode "client_secret=$(jget "$W/cid.json" clientSecret)" \
		--data-urlencode scope=https://vault.azure.net/.default | node -e \
		'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>console.log(JSON.parse(s).access_token))')
	capi() {  # METHOD PATH BODY -> body on stdout; fails on non-2xx
		curl -sf --cacert "$W/cca.pem" -X "$1" -H "Authorization: Bearer $ctok" \
			-H 'Content-Type: application/json' --data "$3" "$curl2$2?api-version=7.4"
	}
	capi POST /keys/hot/create '{"kty":"RSA","key_size":2048}' >"$W/ck.json"
	cver=$(jget "$W/ck.json" key.kid | sed 's#.*/##')
	capi POST "/keys/hot/$cver/wrapkey" '{"alg":"RSA-OAEP","value":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}' >"$W/cw.json"
	cct=$(jget "$W/cw.json" value)
	# node B serves the key too (it is a cluster), then stays idle
	curl -sf --cacert "$W/cca.pem" --connect-to "127.0.0.1:$pa:127.0.0.1:$pb" \
		-H "Authorization: Bearer $ctok" -H 'Content-Type: application/json' \
		--data "{\"alg\":\"RSA-OAEP\",\"value\":\"$cct\"}" \
		"$curl2/keys/hot/$cver/unwrapkey?api-version=7.4" >/dev/null ||
		{ say "cluster: node B does not serve the key"; exit 1; }
	pgwrk() {  # NAME SECONDS: unwrapKey on node A (its CPU as the server's)
		local server_pid=$na_pid url=$curl2
		# shellcheck disable=SC2046
		wrkrun "$1" "$C" "$2" "BENCH_TOKEN=$ctok" $(unwrap_env hot "$cver" RSA-OAEP "$cct")
	}
	# one untimed second on each first (connections, caches)
	pgwrk clwarm 1
	# shellcheck disable=SC2046
	wrkrun clsq1 "$C" "$H" $(unwrap_env hot "$ver" RSA-OAEP "$ct1")
	pgwrk clpg1 "$H"
	pgwrk clpg2 "$H"
	# shellcheck disable=SC2046
	wrkrun clsq2 "$C" "$H" $(unwrap_env hot "$ver" RSA-OAEP "$ct1")
	merge2 "$W/clsq.json" "$W/clsq1.json" "$W/clsq2.json"
	merge2 "$W/clpg.json" "$W/clpg1.json" "$W/clpg2.json"
	cluster_cleanup
fi

# ---- the table -----------------------------------------------------------------
node -e 'const fs=require("fs");const W=process.argv[1];
const r=n=>JSON.parse(fs.readFileSync(`${W}/${n}.json`,"utf8"));
const cold=fs.readFileSync(`${W}/cold.txt`,"utf8").trim().split("\n").map(l=>parseFloat(l)*1000);
const o={raw:r("raw"),raw_after:r("raw_after"),split:r("split"),unwrap:r("unwrap"),unwrap256:r("unwrap256"),wrap:r("wrap"),
 noop:r("noop"),latency:r("latency"),overload:r("overload"),latency_calibration:r("latcal"),create:r("create"),
 hotfull:r("hotfull"),spread:r("spread"),cold_ms:cold,
 cluster:fs.existsSync(`${W}/clpg.json`)?{sqlite:r("clsq"),pg:r("clpg")}:null,
 rss_idle_kib:+process.argv[2],rss_loaded_kib:+process.argv[3],
 params:{seconds:+process.argv[4],keys:+process.argv[5],spread:+process.argv[6],
  conns:+process.argv[7],fill_seconds:+process.argv[8],base_keys:+process.argv[9],cpus:require("os").cpus().length,
  cpu_model:require("os").cpus()[0]?.model,date:new Date().toISOString()}};
fs.writeFileSync(`${W}/all.json`,JSON.stringify(o));' \
	"$W" "$rss_idle" "$rss_loaded" "$S" "$KEYS" "$SPREAD" "$C" "$fill_s" "$BASE_KEYS"
mkdir -p "$(dirname "$OUT")"
node tests/bench/report.mjs "$W/all.json" "$OUT"
grep -q '"non2xx":[1-9]' "$W"/unwrap*.json "$W"/wrap.json "$W"/latency.json "$W"/create.json \
	"$W"/hotfull.json "$W"/spread.json $(ls "$W"/clsq.json "$W"/clpg.json 2>/dev/null) && { say "some requests failed (non-2xx)"; exit 1; }
exit 0
