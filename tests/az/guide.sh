#!/usr/bin/env bash
# tests/az/guide.sh — the customer-managed-key guides' flow (container
# registry, managed disks, image galleries) with Debian's real az 2.45
# against a fresh appliance with a vault domain: a resource group, a user-
# assigned identity, a vault with purge protection, an access policy of
# get/wrapKey/unwrapKey, a key, the identity wrapping and unwrapping a DEK
# (the Azure SDK for Python, strict challenge check on), revocation with
# delete-policy and a re-grant, rotation and its policy, key delete /
# purge refused / recover, vault delete / purge refused / recover, list and
# show, and a second vault the identity gets 403 from.
#
# Each guide step is one "ok - " / "not ok - " line. `az keyvault key …`
# is tried where the guides use it; Debian's az 2.45 cannot load those
# commands (the track-1 SDK modules azure.keyvault.v7_0 and
# azure.keyvault.key_vault_id are not packaged): then the step's az line is
# "ok - … # SKIP" naming the missing module and `p11vault key …` (the same
# sub-command and flags) does the step on its own line.
#
# Set-up as tests/az/signin.sh: root, a private mount namespace (unshare
# --mount) whose /etc/hosts (a bind-mounted file) names the appliance's
# hosts 127.0.0.1, az's state in a temporary HOME; nothing is cached
# between runs. az takes 1-3 s per command: the flow runs each once.
set -u
cd "$(dirname "$0")/../.."
root=$(pwd)
BIN=${P11VAULT_BIN:-$root/build/p11vault}
PY=/usr/bin/python3 # Debian's python3-azure is for the system Python
[ -x "$PY" ] || PY=python3
DOMAIN=vault.p11vault.test
HOST=$DOMAIN

skip() { echo "ok - az guide flow # SKIP $1"; exit 0; }
if [ -z "${P11VAULT_AZ_NS:-}" ]; then
	[ "$(id -u)" -eq 0 ] || skip "not root (a private mount namespace is needed)"
	command -v az >/dev/null || skip "az (azure-cli) is not installed"
	command -v unshare >/dev/null || skip "unshare is not installed"
	"$PY" -c 'import azure.keyvault.keys, azure.identity' 2>/dev/null ||
		skip "python3-azure is not installed"
	exec unshare --mount --propagation private env P11VAULT_AZ_NS=1 bash "$0" "$@"
fi

W=$(mktemp -d /tmp/p11vault-azg.XXXXXX)
server_pid=""
cleanup() {
	if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; fi
	[ -n "${P11VAULT_AZ_KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
fails=0
log="$W/check.log"
check() { # NAME COMMAND...: one ok/not ok line
	local name=$1
	shift
	echo "---- $name" >>"$log"
	if "$@" >>"$log" 2>&1; then
		echo "ok - $name"
	else
		echo "not ok - $name"
		fails=$((fails + 1))
		tail -15 "$log" | sed 's/^/#   /'
	fi
}
jget() { # FILE PATH.TO.FIELD
	node -e 'const o=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));const v=process.argv[2].split(".").reduce((a,k)=>a?.[k],o);if(v===undefined)process.exit(1);console.log(typeof v==="object"?JSON.stringify(v):v)' "$@"
}
# az_key NAME OUT ARGS...: `az keyvault key ARGS` as the guide step NAME,
# its stdout in OUT. 0: ran; 3: az cannot load the command (an "ok - #
# SKIP" line; the caller does the step with p11vault key); 1: failed.
az_key() {
	local name=$1 out=$2
	shift 2
	echo "---- $name" >>"$log"
	if az keyvault key "$@" >"$out" 2>"$W/az.err"; then
		echo "ok - $name"
		return 0
	fi
	cat "$W/az.err" >>"$log"
	local miss
	miss=$(grep -o "No module named '[a-z0-9_.]*'" "$W/az.err" | head -1)
	if [ -n "$miss" ]; then
		local sub=$1
		[ "$1" = rotation-policy ] && sub="$1 $2"
		echo "ok - $name # SKIP Debian's az 2.45 cannot load it ($miss): p11vault key $sub instead"
		return 3
	fi
	echo "not ok - $name"
	fails=$((fails + 1))
	tail -15 "$W/az.err" | sed 's/^/#   /'
	return 1
}
pk() { "$BIN" key "$1" --data "$D" "${@:2}"; } # p11vault key SUB ARGS...

# ---- the names, a fresh appliance with a vault domain ------------------------
printf '127.0.0.1 localhost\n127.0.0.1 %s cmk1.%s cmk2.%s\n::1 localhost\n' \
	"$HOST" "$DOMAIN" "$DOMAIN" >"$W/hosts"
mount --bind "$W/hosts" /etc/hosts || { echo "not ok - az guide: cannot bind-mount the hosts file"; exit 1; }
port=""
for _ in $(seq 1 50); do
	p=$((20000 + RANDOM % 40000))
	if ! ss -ltnH 2>/dev/null | awk '{print $4}' | grep -q ":$p\$"; then port=$p; break; fi
done
[ -n "$port" ] || { echo "not ok - az guide: no free port"; exit 1; }
D="$W/vault"
url="https://$HOST:$port"
"$BIN" init --data "$D" --vault-url "$url" --vault-domain "$DOMAIN" >"$W/init.json" 2>"$W/init.log" ||
	{ echo "not ok - az guide: init failed"; cat "$W/init.log"; exit 1; }
"$BIN" serve --data "$D" --listen "127.0.0.1:$port" >"$W/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
	grep -q "listening on" "$W/serve.log" 2>/dev/null && break
	kill -0 "$server_pid" 2>/dev/null || { echo "not ok - az guide: serve failed"; cat "$W/serve.log"; exit 1; }
	sleep 0.1
done
CA="$D/tls/ca.pem"
admin_oid=$(jget "$D/admin.json" objectId)
export HOME="$W/home" AZURE_CONFIG_DIR="$W/home/.azure" AZURE_CORE_COLLECT_TELEMETRY=0
export AZURE_CORE_NO_COLOR=1 AZURE_CORE_ONLY_SHOW_ERRORS=1
mkdir -p "$HOME"
signin() { "$BIN" az-cloud --data "$D" >"$W/lines.sh" && eval "$(cat "$W/lines.sh")"; }
check "set-up: eval \"\$(p11vault az-cloud --data DIR)\" signs az in as the administrator" signin
export REQUESTS_CA_BUNDLE="$CA"
RG=cmk-rg
k1="https://cmk1.$DOMAIN:$port/keys/cmk"  # the guides give the key's URL without a version
k2="https://cmk2.$DOMAIN:$port/keys/cmk"
dek() { "$PY" tests/az/dek.py "$W/id.json" "$@"; } # KEY_URL CA ACTION [STATE]

# ---- the identity and the vault ----------------------------------------------------
check "az group create --name $RG --location local" \
	az group create --name "$RG" --location local -o none
identity() {
	az identity create --resource-group "$RG" --name cmk-id -o json >"$W/ident.json" &&
		pid=$(az identity show --resource-group "$RG" --name cmk-id --query principalId -o tsv) &&
		[ "$pid" = "$(jget "$W/ident.json" principalId)" ] &&
		[ -n "$(jget "$W/ident.json" clientId)" ] && echo "$pid" >"$W/pid"
}
check "az identity create; az identity show --query principalId -o tsv" identity
P=$(cat "$W/pid" 2>/dev/null)
kv_create() { # NAME: as the guides, without --no-self-perms (az reads Graph)
	az keyvault create --name "$1" --resource-group "$RG" --enable-purge-protection true \
		--retention-days 7 -o json >"$W/$1.json" &&
		[ "$(jget "$W/$1.json" properties.enablePurgeProtection)" = true ] &&
		[ "$(jget "$W/$1.json" properties.softDeleteRetentionInDays)" = 7 ] &&
		[ "$(jget "$W/$1.json" properties.vaultUri)" = "https://$1.$DOMAIN:$port/" ] &&
		[ "$(jget "$W/$1.json" properties.provisioningState)" = Succeeded ] &&
		[ "$(jget "$W/$1.json" location)" = local ] &&
		# the signed-in administrator's own policy (az looked it up in Graph)
		jget "$W/$1.json" properties.accessPolicies | grep -q "\"objectId\":\"$admin_oid\""
}
check "az keyvault create --name cmk1 --enable-purge-protection true --retention-days 7 (self-perms via Graph)" \
	kv_create cmk1
grant() {
	az keyvault set-policy --name cmk1 --object-id "$P" --key-permissions get unwrapKey wrapKey \
		-o json >"$W/setp.json" &&
		jget "$W/setp.json" properties.accessPolicies | grep -q "\"objectId\":\"$P\""
}
check "az keyvault set-policy --name cmk1 --object-id PRINCIPAL --key-permissions get unwrapKey wrapKey" grant

# ---- the key ------------------------------------------------------------------------
rc=0
az_key "az keyvault key create --vault-name cmk1 --name cmk --kty RSA --size 3072" "$W/key.json" \
	create --vault-name cmk1 --name cmk --kty RSA --size 3072 || rc=$?
[ "$rc" -eq 3 ] && check "p11vault key create --vault-name cmk1 --name cmk --kty RSA --size 3072" \
	pk create --vault-name cmk1 --name cmk --kty RSA --size 3072
rc=0
az_key "az keyvault key show --vault-name cmk1 --name cmk --query key.kid" "$W/kid" \
	show --vault-name cmk1 --name cmk --query key.kid -o tsv || rc=$?
kid_of() { pk show --vault-name "$1" --name cmk >"$W/show.json" && jget "$W/show.json" key.kid >"$W/kid"; }
[ "$rc" -eq 3 ] && check "p11vault key show --vault-name cmk1 --name cmk (key.kid)" kid_of cmk1
remote_show() { # a remote administrator: the vault domain from the challenge's resource
	"$BIN" key show --vault-url "$url" --admin "$D/admin.json" --ca "$CA" --vault-name cmk1 \
		--name cmk >"$W/rshow.json" && [ "$(jget "$W/rshow.json" key.kid)" = "$(cat "$W/kid")" ]
}
check "p11vault key show --vault-url URL --admin FILE --vault-name cmk1 (remote: no config)" remote_show
kid1=$(cat "$W/kid" 2>/dev/null)
check "the key's kid is https://cmk1.$DOMAIN:PORT/keys/cmk/VERSION" \
	grep -Eq "^$k1/[0-9a-f]{32}\$" "$W/kid"

# ---- the workload identity wraps and unwraps ---------------------------------------
credential() { "$BIN" identity credential --data "$D" --object-id "$P" >"$W/id.json" && jget "$W/id.json" clientSecret >/dev/null; }
check "p11vault identity credential --object-id PRINCIPAL (the identity's secret)" credential
check "the identity wraps and unwraps a DEK at $k1 (Python SDK, strict challenge check)" \
	dek "$k1" "$CA" wrap "$W/dek1.json"
check "az keyvault delete-policy --name cmk1 --object-id PRINCIPAL" \
	az keyvault delete-policy --name cmk1 --object-id "$P" -o none
check "after delete-policy the identity's next wrap is refused (403)" dek "$k1" "$CA" refused
regrant() { grant && dek "$k1" "$CA" unwrap "$W/dek1.json"; }
check "az keyvault set-policy again (re-grant): the identity unwraps its DEK again" regrant

# ---- rotation ------------------------------------------------------------------------
rc=0
az_key "az keyvault key rotate --vault-name cmk1 --name cmk" "$W/rot.json" \
	rotate --vault-name cmk1 --name cmk -o json || rc=$?
rot() { pk rotate --vault-name cmk1 --name cmk >"$W/rot.json"; }
[ "$rc" -eq 3 ] && check "p11vault key rotate --vault-name cmk1 --name cmk" rot
rotated() {
	local k
	k=$(jget "$W/rot.json" key.kid) && [ "$k" != "$kid1" ] && grep -Eq "^$k1/[0-9a-f]{32}\$" <<<"$k" &&
		dek "$k1" "$CA" wrap "$W/dek2.json" && [ "$(jget "$W/dek2.json" kid)" = "$k" ] &&
		dek "$k1" "$CA" unwrap "$W/dek1.json"
}
check "after rotation: new wraps use the new version, the old DEK still unwraps" rotated
policy='{"lifetimeActions":[{"trigger":{"timeBeforeExpiry":"P30D"},"action":{"type":"Rotate"}},{"trigger":{"timeBeforeExpiry":"P7D"},"action":{"type":"Notify"}}],"attributes":{"expiryTime":"P90D"}}'
echo "$policy" >"$W/policy.json"
rc=0
az_key "az keyvault key rotation-policy update --vault-name cmk1 --name cmk --value POLICY" "$W/rp.json" \
	rotation-policy update --vault-name cmk1 --name cmk --value "$W/policy.json" -o json || rc=$?
rp_update() { "$BIN" key rotation-policy update --data "$D" --vault-name cmk1 --name cmk --value "$W/policy.json" >"$W/rp.json"; }
[ "$rc" -eq 3 ] && check "p11vault key rotation-policy update --vault-name cmk1 --name cmk --value POLICY" rp_update
rc=0
az_key "az keyvault key rotation-policy show --vault-name cmk1 --name cmk" "$W/rps.json" \
	rotation-policy show --vault-name cmk1 --name cmk -o json || rc=$?
rp_show() { "$BIN" key rotation-policy show --data "$D" --vault-name cmk1 --name cmk >"$W/rps.json"; }
[ "$rc" -eq 3 ] && check "p11vault key rotation-policy show --vault-name cmk1 --name cmk" rp_show
rp_kept() { # az's output shape (the track-2 SDK's KeyRotationPolicy), p11vault key's too
	[ "$(jget "$W/rps.json" expiresIn)" = P90D ] &&
		jget "$W/rps.json" lifetimeActions | grep -q '"action":"Rotate","timeAfterCreate":null,"timeBeforeExpiry":"P30D"' &&
		jget "$W/rps.json" lifetimeActions | grep -q '"action":"Notify","timeAfterCreate":null,"timeBeforeExpiry":"P7D"'
}
check "the rotation policy shown is the one set (P30D rotate, P7D notify, P90D expiry)" rp_kept

# ---- key delete / purge refused / recover ------------------------------------------------
k_delete() { pk delete --vault-name cmk1 --name cmk >"$W/del.json" && jget "$W/del.json" recoveryId >/dev/null; }
k_purge_refused() {
	! pk purge --vault-name cmk1 --name cmk >"$W/purge.out" 2>&1 && cat "$W/purge.out" &&
		grep -qi 'purge' "$W/purge.out"
}
k_recover() { pk recover --vault-name cmk1 --name cmk >/dev/null; }
rc=0
az_key "az keyvault key delete --vault-name cmk1 --name cmk" "$W/del.json" \
	delete --vault-name cmk1 --name cmk -o json || rc=$?
[ "$rc" -eq 3 ] && check "p11vault key delete --vault-name cmk1 --name cmk (soft delete)" k_delete
check "the deleted key: the identity's wrap is refused (404)" dek "$k1" "$CA" refused 404
name="az keyvault key purge --vault-name cmk1 --name cmk: refused (purge protection)"
if az keyvault key purge --vault-name cmk1 --name cmk >"$W/purge.out" 2>"$W/az.err"; then
	echo "not ok - $name (it was not refused)"
	fails=$((fails + 1))
elif miss=$(grep -o "No module named '[a-z0-9_.]*'" "$W/az.err" | head -1); then
	echo "ok - $name # SKIP Debian's az 2.45 cannot load it ($miss): p11vault key purge instead"
	check "p11vault key purge --vault-name cmk1 --name cmk: refused (purge protection)" k_purge_refused
else
	check "$name" grep -qi purge "$W/az.err"
fi
rc=0
az_key "az keyvault key recover --vault-name cmk1 --name cmk" "$W/rec.json" \
	recover --vault-name cmk1 --name cmk -o json || rc=$?
[ "$rc" -eq 3 ] && check "p11vault key recover --vault-name cmk1 --name cmk" k_recover
unwrap_both() { dek "$k1" "$CA" unwrap "$W/dek1.json" && dek "$k1" "$CA" unwrap "$W/dek2.json"; }
check "the recovered key: the identity unwraps both DEKs" unwrap_both

# ---- a second vault: isolated -----------------------------------------------------------
check "az keyvault create --name cmk2 (a second vault)" kv_create cmk2
other_key() {
	pk create --vault-name cmk2 --name cmk --kty RSA --size 2048 >"$W/k2.json" &&
		[ "$(jget "$W/k2.json" key.kid | cut -d/ -f1-5)" = "$k2" ] &&
		[ "$(jget "$W/k2.json" key.n)" != "$(jget "$W/show.json" key.n)" ]
}
check "p11vault key create --vault-name cmk2 --name cmk (the same name: another key)" other_key
check "the identity (granted on cmk1 only) gets 403 from cmk2" dek "$k2" "$CA" refused
lists() {
	az keyvault list -o json >"$W/list.json" &&
		node -e 'const l=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).map(v=>v.name).sort().join(",");if(!/^cmk1,cmk2,/.test(l+","))throw new Error(l)' "$W/list.json"
}
check "az keyvault list: cmk1 and cmk2" lists
shows() {
	az keyvault show --name cmk1 -o json >"$W/show1.json" &&
		[ "$(jget "$W/show1.json" properties.vaultUri)" = "https://cmk1.$DOMAIN:$port/" ] &&
		[ "$(jget "$W/show1.json" resourceGroup)" = "$RG" ] &&
		jget "$W/show1.json" properties.accessPolicies | grep -q "\"objectId\":\"$P\""
}
check "az keyvault show --name cmk1: its URI, group and the identity's policy" shows

# ---- vault delete / purge refused / recover -----------------------------------------------
check "az keyvault delete --name cmk1" az keyvault delete --name cmk1 -o none
check "the deleted vault: its host answers 404 to the identity" dek "$k1" "$CA" refused 404
listdel() { az keyvault list-deleted -o json >"$W/ldel.json" && grep -q '"name": "cmk1"' "$W/ldel.json"; }
check "az keyvault list-deleted: cmk1" listdel
v_purge_refused() {
	! az keyvault purge --name cmk1 -o none 2>"$W/vpurge.err" && cat "$W/vpurge.err" &&
		grep -qi protection "$W/vpurge.err"
}
check "az keyvault purge --name cmk1: refused (purge protection)" v_purge_refused
v_recover() { az keyvault recover --name cmk1 -o none && dek "$k1" "$CA" unwrap "$W/dek1.json"; }
check "az keyvault recover --name cmk1: the identity unwraps its DEK again" v_recover
[ "$fails" -eq 0 ]
