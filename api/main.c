/*
 * main.c — the one main() of p11vault: the process policy (umask, the
 * wiping Jansson allocator), sub-command dispatch, `init`, `serve`,
 * `audit verify`. The other sub-commands are declared in api/cli.h.
 *
 * Must never: print a PIN; print a client secret except the admin
 * credential file it writes (mode 0600) at init.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "api/admit.h"
#include "api/api.h"
#include "api/cli.h"
#include "api/cli_session.h"
#include "hsm/affinity.h"
#include "hsm/base.h"
#include "api/http.h"
#include "api/tlsgen.h"
#include "hsm/harden.h"

#define TLS_PEM_MAX (64 * 1024)
#define SHARES_MAX 16

/* --flag VALUE lookup; NULL if absent. A flag without a value dies. */
static const char *
opt(int argc, char **argv, const char *name)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], name) != 0)
			continue;
		if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
			cli_die("%s needs a value", name);
		return argv[i + 1];
	}
	return NULL;
}

static API_WUR int
flag(int argc, char **argv, const char *name)
{
	int i;

	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
}

static void
check_args(int argc, char **argv, const char *const *with_value,
    const char *const *bare)
{
	int i;
	size_t j;

	for (i = 1; i < argc; i++) {
		int ok = 0;
		for (j = 0; with_value[j]; j++)
			if (strcmp(argv[i], with_value[j]) == 0) {
				ok = 1;
				i++;
				break;
			}
		for (j = 0; !ok && bare[j]; j++)
			if (strcmp(argv[i], bare[j]) == 0)
				ok = 1;
		if (!ok)
			cli_die("unknown argument '%s' (see --help)", argv[i]);
	}
}

/* dir/name (dies if it does not fit). */
static void
path_of(char *dst, size_t cap, const char *dir, const char *name)
{
	if (str_fmt(dst, cap, "%s/%s", dir, name) != 0)
		cli_die("the path %s/%s is too long", dir, name);
}

/* Host part of https://HOST[:PORT][/...] into out (brackets dropped). */
static API_WUR int
url_host(const char *url, char *out, size_t len)
{
	const char *p, *end, *stop;
	size_t n;

	if (strncmp(url, "https://", 8) != 0)
		return -1;
	p = url + 8;
	end = p + strcspn(p, "/?#");
	if (p[0] == '[') {
		if ((stop = memchr(p, ']', (size_t)(end - p))) == NULL)
			return -1;
		p++;
	} else if ((stop = memchr(p, ':', (size_t)(end - p))) == NULL)
		stop = end;
	n = (size_t)(stop - p);
	if (n == 0 || n >= len)
		return -1;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

/* ---- the TLS private key at rest ------------------------------------------- */

#define TLS_KEY_CRED "p11vault-tls-key"

/* DIR/tls/NAME.pem into DIR/tls/NAME.cred (systemd-creds:
 * hsm_at_rest_seal, credential cred), the plaintext file shredded. Where
 * that cannot be done (not root, no systemd-creds) the key stays a
 * plaintext PEM and a warning says so. */
static void
seal_tls_file(const char *dir, const char *name, const char *cred)
{
	char hsm_dir[4200], pem[4200], tls[4200], out[300];
	const char *why = "cannot read it";
	buf_t *text = NULL;
	int rc = -1;

	if (str_fmt(hsm_dir, sizeof(hsm_dir), "%s/hsm", dir) != 0 ||
	    str_fmt(pem, sizeof(pem), "%s/tls/%s.pem", dir, name) != 0 ||
	    str_fmt(tls, sizeof(tls), "%s/tls", dir) != 0 ||
	    str_fmt(out, sizeof(out), "%s.cred", name) != 0)
		why = "its path is too long";
	else if (access(pem, F_OK) != 0)
		return;
	else if (file_read(pem, TLS_PEM_MAX - 1, &text) == 0 &&
	    buf_len(text) > 0)
		rc = hsm_at_rest_seal(hsm_dir, cred, buf_ptr(text),
		    buf_len(text), tls, out, &why);
	buf_free(text);
	if (rc == 0)
		hsm_shred(pem);
	else
		fprintf(stderr,
		    "{\"level\":\"warning\",\"event\":"
		    "\"tls_key_in_plaintext\",\"msg\":\"tls/%s.pem stays in "
		    "plaintext: %s\"}\n",
		    name, why);
}

/* The server's TLS key and the vault's own CA key (kept, sealed, so that
 * an operator can issue a new server certificate on this machine:
 * systemd-creds decrypt --name=p11vault-tls-ca-key tls/ca-key.cred -). */
static void
seal_tls_key(const char *dir)
{
	seal_tls_file(dir, "server-key", TLS_KEY_CRED);
	seal_tls_file(dir, "ca-key", "p11vault-tls-ca-key");
}

/* The TLS key as serve needs it: *pem NULL (read DIR/tls/server-key.pem)
 * or the key opened from its at-rest form (freezero(*pem, TLS_PEM_MAX)). */
static API_WUR int
open_tls_key(const char *dir, char **pem, char *err, size_t err_len)
{
	char hsm_dir[4200], path[4200];
	const char *why = "";
	size_t len = 0;

	*pem = NULL;
	seal_tls_key(dir);
	path_of(path, sizeof(path), dir, "tls/server-key.pem");
	if (access(path, F_OK) == 0)
		return 0;
	path_of(hsm_dir, sizeof(hsm_dir), dir, "hsm");
	path_of(path, sizeof(path), dir, "tls/server-key.cred");
	if (access(path, F_OK) != 0) {
		err_set(err, err_len,
		    "the TLS key is missing "
		    "(tls/server-key.pem or .cred)");
		return -1;
	}
	if ((*pem = calloc(1, TLS_PEM_MAX)) == NULL)
		return -1;
	if (hsm_at_rest_open(hsm_dir, TLS_KEY_CRED, path, (uint8_t *)*pem,
	        TLS_PEM_MAX - 1, &len, &why) != 0) {
		freezero(*pem, TLS_PEM_MAX);
		*pem = NULL;
		err_set(err, err_len,
		    "cannot open the TLS key "
		    "(tls/server-key.cred): %s",
		    why);
		return -1;
	}
	return 0;
}

/* ---- init ----------------------------------------------------------------- */

static API_WUR int
write_secret_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	size_t n = strlen(text);
	int rc = -1;

	if (fd < 0)
		return -1;
	if (write(fd, text, n) == (ssize_t)n && fsync(fd) == 0)
		rc = 0;
	close(fd);
	return rc;
}

static const char *const init_opts[] = { "--data", "--vault-url",
	"--vault-domain", "--tenant-id", "--tls-ca-cert", "--tls-ca-key",
	"--module", "--token-label", "--key-shares", "--key-threshold",
	"--auto-unseal", "--share-keys", "--store", "--name", NULL };
static const char *const no_opts[] = { NULL };
/* `p11vault node init`: init's token is a node's, yet to join */
static int init_as_node;

struct init_args {
	const char *dir, *url, *domain, *tenant, *ca_cert, *ca_key, *au, *sk;
	const char *store;
	unsigned nshares, thresh;
	char host[256];
	char tid[POLICY_ID_LEN + 1];
};

static void
init_help(void)
{
	puts(
	    "usage: p11vault init --data DIR [--vault-url URL] "
	    "[--tenant-id UUID]\n"
	    "       [--vault-domain DOMAIN (other vaults at "
	    "https://NAME.DOMAIN)]\n"
	    "       [--tls-ca-cert PEM --tls-ca-key PEM] "
	    "[--module PKCS11.so --token-label LABEL]\n"
	    "       [--key-shares N (5)] [--key-threshold M (3)]\n"
	    "       [--share-keys A.pem,B.pem,... (each share encrypted "
	    "to one custodian)]\n"
	    "       [--auto-unseal auto|none|systemd-creds[:host|tpm2|"
	    "host+tpm2|auto]|clevis:PIN CONFIG]\n"
	    "       [--store CONNINFO (the metadata in PostgreSQL: "
	    "docs/cluster.md)]\n"
	    "Creates a new vault in DIR: the token, the domain key, "
	    "the store, TLS material\n"
	    "and the first administrator (DIR/admin.json, mode 0600). "
	    "The token's PINs derive\n"
	    "from an unseal secret split into N operator key shares "
	    "(any M unseal), printed\n"
	    "once; --auto-unseal (default auto: systemd-creds with the "
	    "host key when run as\n"
	    "root, else none) lets the server unseal by itself at "
	    "start.");
}

/* --key-shares / --key-threshold: a whole number 0..SHARES_MAX, or die. */
static unsigned
share_opt(const char *name, const char *v)
{
	uint64_t n;

	if (parse_u64(v, SHARES_MAX, &n) != 0)
		cli_die("%s must be a whole number 0..%d, not '%.32s'", name,
		    SHARES_MAX, v);
	return (unsigned)n;
}

/* The arguments of init, checked (dies with the reason). */
static void
init_parse(int argc, char **argv, struct init_args *a)
{
	const char *ks = opt(argc, argv, "--key-shares");
	const char *kt = opt(argc, argv, "--key-threshold");

	check_args(argc, argv, init_opts, no_opts);
	a->dir = opt(argc, argv, "--data");
	a->url = opt(argc, argv, "--vault-url");
	a->domain = opt(argc, argv, "--vault-domain");
	a->tenant = opt(argc, argv, "--tenant-id");
	a->ca_cert = opt(argc, argv, "--tls-ca-cert");
	a->ca_key = opt(argc, argv, "--tls-ca-key");
	a->au = opt(argc, argv, "--auto-unseal");
	a->sk = opt(argc, argv, "--share-keys");
	a->store = opt(argc, argv, "--store");
	a->nshares = ks ? share_opt("--key-shares", ks) :
	    a->sk       ? (unsigned)cli_seal_count_keys(a->sk) :
	                  5;
	a->thresh = kt ? share_opt("--key-threshold", kt) :
	                 (a->nshares < 3 ? a->nshares : 3);
	if (a->dir == NULL)
		cli_die("init needs --data DIR");
	if (a->url == NULL)
		a->url = "https://127.0.0.1:8443";
	if (url_host(a->url, a->host, sizeof(a->host)) != 0)
		cli_die("--vault-url must look like https://HOST[:PORT]");
	if ((a->ca_cert == NULL) != (a->ca_key == NULL))
		cli_die("--tls-ca-cert and --tls-ca-key go together");
	if (a->au == NULL || strcmp(a->au, "auto") == 0)
		a->au = cli_seal_default_auto();
	if (a->nshares > SHARES_MAX || a->thresh > a->nshares ||
	    (a->nshares > 0 && a->thresh == 0))
		cli_die(
		    "--key-threshold must be 1..--key-shares, and --key-shares "
		    "0..16");
	if (a->sk != NULL && (unsigned)cli_seal_count_keys(a->sk) != a->nshares)
		cli_die("--share-keys names %d keys for %u shares",
		    cli_seal_count_keys(a->sk), a->nshares);
	if (a->nshares == 0 && strcmp(a->au, "none") == 0)
		cli_die(
		    "--key-shares 0 needs an --auto-unseal method: nothing "
		    "else could unseal the vault");
	if (a->tenant == NULL) {
		policy_uuid(a->tid);
		a->tenant = a->tid;
	} else if (strlen(a->tenant) != POLICY_ID_LEN)
		cli_die("--tenant-id must be a UUID");
}

/* The first administrator: its principal, its access policy (all), and
 * DIR/admin.json (0600) with its credential. */
static void
init_admin(vault_t *v, const struct init_args *a)
{
	struct vlt_principal admin;
	struct vlt_access_policy ap;
	char secret[64], path[4200], *json;
	json_t *j;

	memset(&admin, 0, sizeof(admin));
	policy_uuid(admin.object_id);
	policy_uuid(admin.client_id);
	if (str_fmt(admin.display_name, sizeof(admin.display_name),
	        "vault-administrator") != 0)
		cli_die("cannot name the administrator");
	admin.is_admin = 1;
	admin.created = (int64_t)time(NULL);
	policy_secret_new(secret);
	if (policy_secret_hash(secret, &admin.secret_hash) != 0 ||
	    vault_principal_put(v, &admin) != 0)
		cli_die("cannot create the administrator");
	memset(&ap, 0, sizeof(ap));
	memcpy(ap.object_id, admin.object_id, sizeof(ap.object_id));
	if (str_fmt(ap.tenant_id, sizeof(ap.tenant_id), "%s", a->tenant) != 0)
		cli_die("--tenant-id must be a UUID");
	ap.perms = PERM_ALL;
	if (vault_access_put(v, &ap) != 0)
		cli_die("cannot create the administrator's access policy");
	j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "tenantId", a->tenant,
	    "objectId", admin.object_id, "clientId", admin.client_id,
	    "clientSecret", secret, "vaultUrl", a->url);
	json = j != NULL ? json_dumps(j, JSON_INDENT(2)) : NULL;
	json_decref(j);
	OPENSSL_cleanse(secret, sizeof(secret));
	free(admin.secret_hash);
	path_of(path, sizeof(path), a->dir, "admin.json");
	if (json == NULL || write_secret_file(path, json) != 0)
		cli_die("cannot write %s", path);
	freezero_str(json);
}

/* What init made, as one JSON line on stdout, with the key shares. */
static void
init_report(const struct init_args *a, const char *shares)
{
	char err[256], *json;
	json_t *sh, *j;

	sh = a->sk != NULL ?
	    cli_seal_shares_for(shares, a->sk, err, sizeof(err)) :
	    cli_seal_shares_json(shares);
	if (sh == NULL)
		cli_die(
		    "the vault is made, but its key shares could not be "
		    "encrypted (%s): remove %s and run init again",
		    a->sk ? err : "out of memory", a->dir);
	j = json_pack("{s:s, s:s, s:s, s:s+, s:s+, s:o, s:i, s:s}", "dataDir",
	    a->dir, "vaultUrl", a->url, "tenantId", a->tenant,
	    "adminCredential", a->dir, "/admin.json", "caCertificate", a->dir,
	    "/tls/ca.pem",
	    a->sk != NULL ? "unsealKeySharesEncrypted" : "unsealKeyShares", sh,
	    "unsealThreshold", (int)a->thresh, "autoUnseal", a->au);
	json = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (json == NULL)
		cli_die("out of memory");
	printf("%s\n", json);
	freezero_str(json);
}

static API_WUR int
cmd_init(int argc, char **argv)
{
	struct init_args a;
	struct vlt_init_params ip;
	struct vlt_open_opts oo;
	char tls_dir[4200], err[256], *shares = NULL;
	vault_t *v = NULL;
	int rc;

	if (flag(argc, argv, "--help")) {
		init_help();
		return 0;
	}
	memset(&a, 0, sizeof(a));
	init_parse(argc, argv, &a);
	if (hsm_env_check(err, sizeof(err)) != 0)
		cli_die("%s", err);
	if (vault_find(a.dir) == 0)
		cli_die("%s already holds a vault; nothing was changed", a.dir);
	if (a.store != NULL &&
	    (init_as_node ?
	            vault_store_check_joinable(a.store, err, sizeof(err)) :
	            vault_store_check(a.store, err, sizeof(err))) != 0)
		cli_die("%s; nothing was changed", err);
	if (mkdir(a.dir, 0700) != 0 && errno != EEXIST)
		cli_die("cannot create %s: %s", a.dir, strerror(errno));
	path_of(tls_dir, sizeof(tls_dir), a.dir, "tls");
	if (tlsgen_create_domain(tls_dir, a.host, a.domain, a.ca_cert, a.ca_key,
	        err, sizeof(err)) != 0)
		cli_die("TLS: %s", err);

	memset(&ip, 0, sizeof(ip));
	ip.data_dir = a.dir;
	ip.vault_url = a.url;
	ip.vault_domain = a.domain;
	ip.tenant_id = a.tenant;
	ip.module_path = opt(argc, argv, "--module");
	ip.module_allow = getenv("P11VAULT_MODULE_ALLOW");
	ip.token_label = opt(argc, argv, "--token-label");
	ip.key_shares = a.nshares;
	ip.key_threshold = a.thresh;
	ip.auto_unseal = a.au;
	ip.shares_out = &shares;
	ip.store = a.store;
	ip.node = init_as_node;
	rc = vault_init(&ip);
	if (rc == VLT_ERR_EXISTS)
		cli_die("%s already holds a vault; nothing was changed", a.dir);
	if (rc != 0)
		cli_die("cannot initialise the vault (error %d%s)", rc,
		    rc == VLT_ERR_BAD_PARAM ?
		        ": a bad --auto-unseal" :
		        rc == VLT_ERR_UNAVAILABLE ?
		        ": the token, or the "
		        "unattended method, failed: see above" :
		        "");
	if (init_as_node) {
		/* no domain yet, so nothing to open: the join request */
		seal_tls_key(a.dir);
		rc = cli_node_request(a.dir, opt(argc, argv, "--name"),
		    shares != NULL ? shares : "");
		freezero_str(shares);
		return rc;
	}
	memset(&oo, 0, sizeof(oo));
	oo.pool_size = 2;
	oo.module_allow = ip.module_allow;
	if (vault_open(a.dir, &oo, &v) != 0)
		cli_die("cannot open the new vault");
	init_admin(v, &a);
	vault_close(v);
	seal_tls_key(a.dir);
	init_report(&a, shares != NULL ? shares : "");
	freezero_str(shares);
	cli_seal_advice(stderr, a.thresh, a.nshares, a.au);
	return 0;
}

/* ---- serve ---------------------------------------------------------------- */

struct sweeper {
	vault_t *v;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stop;
};

static void *
sweeper_main(void *arg)
{
	struct sweeper *s = arg;
	struct timespec ts;
	int leader, was_leader = 0, purged;

	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		pthread_mutex_unlock(&s->lock);
		/* a cluster's background work runs on one node: the holder
		 * of the leader lock (SQLite: always this node) */
		leader = vault_cluster_leader(s->v);
		if (leader != was_leader && vault_store_networked(s->v))
			fprintf(stderr,
			    "{\"level\":\"info\",\"event\":\"%s\"}\n",
			    leader ? "sweeper_leader" : "sweeper_follower");
		was_leader = leader;
		if (!leader)
			goto next;
		if ((purged = vault_purge_due(s->v)) < 0)
			fprintf(stderr,
			    "{\"level\":\"warn\",\"event\":"
			    "\"purge_sweep_failed\"}\n");
		else if (purged > 0)
			fprintf(stderr,
			    "{\"level\":\"info\",\"event\":"
			    "\"purge_sweep\",\"purged\":%d}\n",
			    purged);
		if (vault_rotation_due(s->v) < 0)
			fprintf(stderr,
			    "{\"level\":\"warn\",\"event\":"
			    "\"rotation_sweep_failed\"}\n");
next:
		pthread_mutex_lock(&s->lock);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		if (!s->stop)
			pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* The principals and the default vault's access policies into p. */
static API_WUR int
load_tables(vault_t *v, policy_t *p)
{
	struct vlt_principal *pr = NULL;
	struct vlt_access_policy *ap = NULL;
	size_t n = 0, m = 0, i;
	int rc = -1;

	if (vault_principal_list(v, &pr, &n) != 0 ||
	    vault_access_list(v, &ap, &m) != 0)
		goto out;
	for (i = 0; i < n; i++)
		if (policy_principal_set(p, pr[i].object_id, pr[i].client_id,
		        pr[i].secret_hash, pr[i].is_admin) != 0)
			goto out;
	for (i = 0; i < m; i++)
		if (policy_access_set(p, ap[i].object_id, ap[i].perms) != 0)
			goto out;
	rc = 0;
out:
	vlt_principal_free_array(pr, n);
	free(ap);
	return rc;
}

static API_WUR int
load_policy(vault_t *v, policy_t *p, int *key_set)
{
	uint8_t *spki = NULL;
	size_t len = 0;
	int rc = -1;

	if (load_tables(v, p) != 0)
		goto out;
	/* a sealed vault's key comes at unseal (api_verify_key_refresh) */
	rc = vault_jwt_public(v, &spki, &len);
	if (rc == VLT_ERR_SEALED) {
		rc = 0;
		goto out;
	}
	if (rc != 0 || policy_set_verify_key(p, spki, len) != 0) {
		rc = -1;
		goto out;
	}
	*key_set = 1;
	rc = 0;
out:
	free(spki);
	return rc;
}

/* ---- a node of a cluster: another node's write (docs/cluster.md) ---- */

struct coherence {
	struct api_ctx *ctx;
	policy_t *spare; /* the listener thread's only */
};

/* On the listener thread, the vault's caches already dropped: every
 * identity and access policy read again into the spare tables, which
 * then replace the live ones in one step. A failed read keeps the live
 * tables, and the listener does not renew the lease (its round fails
 * next time if the store is gone). */
static void
coherence_reload(void *arg)
{
	struct coherence *co = arg;
	struct api_ctx tmp = *co->ctx;
	uint64_t m;
	int tries;

	tmp.policy = co->spare;
	/* a change this node made meanwhile (after its own write) may be
	 * missing from what was read: read again */
	for (tries = 0; tries < 8; tries++) {
		m = policy_mutations(co->ctx->policy);
		policy_tables_clear(co->spare);
		if (load_tables(co->ctx->vault, co->spare) != 0 ||
		    api_vaults_load(&tmp) != 0)
			break;
		if (policy_tables_swap(co->ctx->policy, co->spare, m) == 0)
			return;
	}
	fprintf(stderr,
	    "{\"level\":\"warn\",\"event\":"
	    "\"cluster_policy_reload_failed\"}\n");
}

static void
coherence_start(struct api_ctx *ctx, struct coherence *co)
{
	struct policy_config pc;
	char err[256];
	int rc;

	memset(co, 0, sizeof(*co));
	co->ctx = ctx;
	if (!vault_store_networked(ctx->vault))
		return;
	memset(&pc, 0, sizeof(pc));
	pc.tenant_id = ctx->tenant_id;
	pc.issuer = ctx->issuer;
	if (policy_new(&pc, &co->spare) != 0)
		cli_die("cannot start the cluster listener");
	rc = vault_cluster_start(ctx->vault, coherence_reload, co, err,
	    sizeof(err));
	if (rc != 0)
		cli_die("%s",
		    err[0] != '\0' ? err :
		                     "cannot start the cluster "
		                     "listener");
}

static void
coherence_stop(struct api_ctx *ctx, struct coherence *co)
{
	vault_cluster_stop(ctx->vault);
	policy_free(co->spare);
	co->spare = NULL;
}

static const char *const serve_opts[] = { "--data", "--listen",
	"--metrics-listen", "--insecure-test-clock", "--user", NULL };

static void
serve_help(void)
{
	puts(
	    "usage: p11vault serve --data DIR [--listen HOST:PORT] "
	    "[--metrics-listen HOST:PORT] [--user NAME]\n"
	    "Serves the vault over HTTPS at --listen, else listen= of "
	    "DIR/p11vault.conf\n"
	    "(init writes the vault URL's port: on 0.0.0.0 when its host "
	    "is a name), else\n"
	    "127.0.0.1:8443. --metrics-listen (else metrics_listen= of the "
	    "config) also\n"
	    "serves GET /metrics over plain HTTP without a token, for "
	    "Prometheus; keep it\n"
	    "on 127.0.0.1. SIGINT/SIGTERM finish in-flight requests and "
	    "exit 0.\n"
	    "Test only: --insecure-test-clock FILE adds the seconds "
	    "held in FILE to the\n"
	    "vault's clock (never use it in production).");
}

/* What a server process is allowed and owed before it starts: no core
 * dumps (they would hold session keys and plaintexts), as many
 * descriptors as it may have (thousands of TLS connections), SIGINT and
 * SIGTERM blocked in every thread (main sigwaits them), no SIGPIPE.
 * And malloc arenas as many as usable CPUs (at least 2): glibc's default of
 * 8 per CPU, across ~200 threads that each allocate a little per
 * request, left the server's heap at 93 MiB with 512 connections open
 * where 2 arenas hold it at 56 MiB (docs/performance.md). */
static void
serve_process(sigset_t *sigs)
{
	struct rlimit nocore = { 0, 0 }, nofile;
	unsigned ncpu = hsm_cpus_count();

	(void)mallopt(M_ARENA_MAX, ncpu > 2 ? (int)(ncpu < 64 ? ncpu : 64) : 2);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	(void)setrlimit(RLIMIT_CORE, &nocore);
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 &&
	    nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &nofile);
	}
	sigemptyset(sigs);
	sigaddset(sigs, SIGINT);
	sigaddset(sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* The request context of the vault open in ctx->vault: its URL, tenant,
 * token audience, issuer, challenge, and the policy with its identities. */
static void
serve_context(struct api_ctx *ctx)
{
	struct policy_config pc;
	const char *lifetime;
	int64_t secs = 3600;

	ctx->vault_url = vault_config(ctx->vault, "vault_url");
	ctx->tenant_id = vault_config(ctx->vault, "tenant_id");
	ctx->resource = vault_config(ctx->vault, "resource");
	if (ctx->resource == NULL)
		ctx->resource = CLI_DEFAULT_RESOURCE;
	if (ctx->vault_url == NULL || ctx->tenant_id == NULL)
		cli_die("the vault's config lacks vault_url or tenant_id");
	if (api_vaults_context(ctx) != 0)
		cli_die("the vault's config has a bad vault_domain");
	if (str_fmt(ctx->issuer, sizeof(ctx->issuer), "%s/%s/v2.0",
	        ctx->vault_url, ctx->tenant_id) != 0 ||
	    str_fmt(ctx->challenge, sizeof(ctx->challenge),
	        "Bearer authorization=\"%s/%s\", resource=\"%s\"",
	        ctx->vault_url, ctx->tenant_id, ctx->resource) != 0)
		cli_die(
		    "the vault's config has too long a vault_url, tenant_id "
		    "or resource");
	lifetime = vault_config(ctx->vault, "token_lifetime");
	if (lifetime != NULL && parse_i64(lifetime, 1, INT32_MAX, &secs) != 0)
		cli_die(
		    "the vault's config has a bad token_lifetime '%.32s' "
		    "(seconds)",
		    lifetime);
	memset(&pc, 0, sizeof(pc));
	pc.tenant_id = ctx->tenant_id;
	pc.issuer = ctx->issuer;
	pc.token_lifetime = secs;
	if (policy_new(&pc, &ctx->policy) != 0 ||
	    load_policy(ctx->vault, ctx->policy, &ctx->verify_key_set) != 0 ||
	    api_vaults_load(ctx) != 0)
		cli_die("cannot load identities and access policies");
}

/* The HTTPS listener on listen, with DIR's TLS certificate and key. */
static API_WUR struct api_server *
serve_listen(struct api_ctx *ctx, const char *dir, const char *listen)
{
	struct api_server_opts so;
	struct api_server *srv = NULL;
	char cert[4200], key[4200], err[512], *key_pem = NULL;
	int rc;

	path_of(cert, sizeof(cert), dir, "tls/server.pem");
	path_of(key, sizeof(key), dir, "tls/server-key.pem");
	memset(&so, 0, sizeof(so));
	so.listen = listen;
	so.cert_pem_file = cert;
	so.key_pem_file = key;
	if (open_tls_key(dir, &key_pem, err, sizeof(err)) != 0)
		cli_die("%s", err);
	so.key_pem = key_pem;
	rc = api_server_start(ctx, &so, &srv, err, sizeof(err));
	freezero(key_pem, key_pem != NULL ? TLS_PEM_MAX : 0);
	if (rc != 0)
		cli_die("%s", err);
	return srv;
}

static void
sweeper_start(struct sweeper *sw, vault_t *v, pthread_t *t)
{
	memset(sw, 0, sizeof(*sw));
	sw->v = v;
	pthread_mutex_init(&sw->lock, NULL);
	pthread_cond_init(&sw->cond, NULL);
	if (pthread_create(t, NULL, sweeper_main, sw) != 0)
		cli_die("cannot start the purge sweeper");
}

static void
sweeper_stop(struct sweeper *sw, pthread_t t)
{
	pthread_mutex_lock(&sw->lock);
	sw->stop = 1;
	pthread_cond_signal(&sw->cond);
	pthread_mutex_unlock(&sw->lock);
	pthread_join(t, NULL);
}

/* Opens DIR's vault for serving (one server per data directory). */
static void
serve_open(struct api_ctx *ctx, const char *dir, const char *user,
    const char *clock_file)
{
	struct vlt_open_opts oo;
	char err[512];
	int rc, lock; /* the lock is held until the process ends */

	/* rekey waits for the lock to go */
	if (vault_find(dir) == 0 && (rc = cli_serve_lock(dir, &lock)) != 0) {
		if (rc == VLT_ERR_CONFLICT)
			cli_die(
			    "another p11vault serve (or a rekey) holds "
			    "%s/serve.lock",
			    dir);
		cli_die("cannot open %s/serve.lock: %s", dir, strerror(errno));
	}
	if (user && hsm_check_data_owner(dir, user, err, sizeof(err)) != 0)
		cli_die("%s", err);
	if (vault_find(dir) != 0)
		cli_die("%s holds no vault (run p11vault init --data %s)", dir,
		    dir);
	if (vault_rotation_pending(dir))
		cli_die(
		    "a domain-key rotation of %s is unfinished: run "
		    "p11vault rekey-domain --data %s again",
		    dir, dir);
	memset(&oo, 0, sizeof(oo));
	oo.module_allow = getenv("P11VAULT_MODULE_ALLOW");
	oo.token_user = user;
	oo.err = err;
	oo.err_len = sizeof(err);
	if (vault_open(dir, &oo, &ctx->vault) != 0) {
		if (err[0] != '\0')
			cli_die("cannot open the vault in %s: %s", dir, err);
		cli_die("cannot open the vault in %s (is the token reachable?)",
		    dir);
	}
	if (clock_file) {
		vault_set_test_clock(ctx->vault, clock_file);
		fprintf(stderr,
		    "{\"level\":\"warn\",\"event\":"
		    "\"insecure_test_clock\",\"msg\":\"the vault clock is "
		    "shifted by a test knob; never use this in production\"}\n");
	}
}

/* A data directory made before init wrote 0.0.0.0 for a vault URL naming
 * a host has listen=NAME:PORT, NAME being the URL's host: that is all
 * addresses at PORT (the name need not resolve here). Other listen values
 * are used as they are. */
static const char *
serve_listen_compat(const char *listen, const char *url, char *buf, size_t cap)
{
	const char *colon = strrchr(listen, ':'), *h = strstr(url, "://");
	unsigned char addr[16];
	char host[256];
	size_t hl = colon != NULL ? (size_t)(colon - listen) : 0;

	if (h == NULL || hl == 0 || hl >= sizeof(host) || listen[0] == '[')
		return listen;
	h += 3;
	memcpy(host, listen, hl);
	host[hl] = '\0';
	if (inet_pton(AF_INET, host, addr) == 1 ||
	    strcmp(host, "localhost") == 0 || strncasecmp(h, host, hl) != 0 ||
	    (h[hl] != ':' && h[hl] != '/' && h[hl] != '\0') ||
	    str_fmt(buf, cap, "0.0.0.0%s", colon) != 0)
		return listen;
	return buf;
}

/* The metrics listener, when --metrics-listen or metrics_listen= asks. */
static struct api_metrics_server *
serve_metrics(struct api_ctx *ctx, const char *listen)
{
	struct api_metrics_server *m = NULL;
	char err[512];

	if (listen == NULL)
		listen = vault_config(ctx->vault, "metrics_listen");
	if (listen == NULL)
		return NULL;
	if (api_metrics_server_start(ctx, listen, &m, err, sizeof(err)) != 0)
		cli_die("%s", err);
	return m;
}

static API_WUR int
cmd_serve(int argc, char **argv)
{
	const char *dir = opt(argc, argv, "--data");
	const char *listen = opt(argc, argv, "--listen");
	const char *user = opt(argc, argv, "--user");
	struct api_server *srv;
	struct api_metrics_server *met;
	struct api_ctx ctx;
	struct sweeper sw;
	struct coherence co;
	char err[512], compat[300];
	pthread_t sweep_thread;
	sigset_t sigs;
	int sig = 0;

	if (flag(argc, argv, "--help")) {
		serve_help();
		return 0;
	}
	check_args(argc, argv, serve_opts, no_opts);
	if (dir == NULL)
		cli_die("serve needs --data DIR");
	if (hsm_env_check(err, sizeof(err)) != 0)
		cli_die("%s", err);
	/* before any thread starts */
	serve_process(&sigs);
	memset(&ctx, 0, sizeof(ctx));
	serve_open(&ctx, dir, user, opt(argc, argv, "--insecure-test-clock"));
	serve_context(&ctx);
	if (api_admit_open(&ctx, err, sizeof(err)) != 0)
		cli_die("the vault's config: %s", err);
	if (listen == NULL &&
	    (listen = vault_config(ctx.vault, "listen")) != NULL)
		listen = serve_listen_compat(listen, ctx.vault_url, compat,
		    sizeof(compat));
	if (listen == NULL)
		listen = "127.0.0.1:8443";
	/* in step with the cluster's other nodes before serving */
	coherence_start(&ctx, &co);
	srv = serve_listen(&ctx, dir, listen);
	met = serve_metrics(&ctx, opt(argc, argv, "--metrics-listen"));
	/* after the bind, with the vault and the token open */
	if (user && hsm_drop_privileges(user, err, sizeof(err)) != 0)
		cli_die("%s", err);
	sweeper_start(&sw, ctx.vault, &sweep_thread);
	/* every thread is running: from here on only the system calls
	 * serving needs (hsm/seccomp.c), for all of them */
	if ((vault_store_networked(ctx.vault) ? hsm_seccomp_network_db() :
	                                        hsm_seccomp_network()) != 0)
		cli_die("cannot install the system-call filter");

	printf("listening on https://%s\n", listen);
	fflush(stdout);
	while (sigwait(&sigs, &sig) != 0)
		;
	fprintf(stderr,
	    "{\"level\":\"info\",\"event\":\"shutdown\","
	    "\"signal\":%d}\n",
	    sig);
	api_metrics_server_stop(met);
	api_server_stop(srv);
	sweeper_stop(&sw, sweep_thread);
	coherence_stop(&ctx, &co);
	api_admit_close(&ctx);
	policy_free(ctx.policy);
	vault_close(ctx.vault);
	return 0;
}

/* ---- audit ---------------------------------------------------------------- */

/* The verdict's repairs (and a tail not repaired yet) as JSON members. */
static void
print_repairs(const struct vlt_audit_verdict *vd)
{
	size_t i,
	    n = vd->nrepairs < VLT_AUDIT_REPAIRS_MAX ? vd->nrepairs :
	                                               VLT_AUDIT_REPAIRS_MAX;

	printf(",\"repairCount\":%zu,\"repairs\":[", vd->nrepairs);
	for (i = 0; i < n; i++) {
		const struct vlt_audit_repair *r = &vd->repairs[i];

		printf(
		    "%s{\"at\":\"%s\",\"offset\":%llu,\"length\":%llu,"
		    "\"sha256\":\"%s\",\"sideFile\":\"%s\"}",
		    i ? "," : "", r->at, (unsigned long long)r->offset,
		    (unsigned long long)r->length, r->sha256, r->side_file);
	}
	printf("]");
	if (vd->tail_len > 0)
		printf(
		    ",\"unrepairedTail\":{\"file\":\"audit.log\","
		    "\"offset\":%llu,\"length\":%llu}",
		    (unsigned long long)vd->tail_off,
		    (unsigned long long)vd->tail_len);
}

static API_WUR int
cmd_audit(int argc, char **argv)
{
	const char *dir;
	char why[512];
	struct vlt_audit_verdict vd;
	static const char *const o[] = { "--data", "--public-key", NULL };
	int r;

	if (argc < 2 || strcmp(argv[1], "verify") != 0 ||
	    flag(argc, argv, "--help")) {
		puts(
		    "usage: p11vault audit verify --data DIR [--public-key "
		    "FILE]\n"
		    "Checks the audit log's hash chain and every signed "
		    "checkpoint (with\nFILE, else DIR/audit/audit-key.pem); "
		    "names the first broken line,\nand lists the torn tails "
		    "repaired at start. Nothing to check (no DIR,\nno "
		    "audit.log, no line) is a failure.");
		return argc >= 2 && flag(argc, argv, "--help") ? 0 : 2;
	}
	check_args(argc - 1, argv + 1, o, no_opts);
	dir = opt(argc, argv, "--data");
	if (dir == NULL)
		cli_die("audit verify needs --data DIR");
	if ((r = vault_audit_verify_key(dir, opt(argc, argv, "--public-key"),
	         &vd, why, sizeof(why))) != 0) {
		printf("{\"intact\":false,\"error\":\"nothing verified\"}\n");
		fprintf(stderr, "p11vault: audit verify: %s\n",
		    r == VLT_ERR_NOT_FOUND ? why : "cannot read the audit log");
		return 1;
	}
	if (!vd.intact) {
		printf(
		    "{\"intact\":false,\"firstBroken\":\"%s\","
		    "\"reason\":\"%s\"}\n",
		    vd.broken, vd.broken_why ? vd.broken_why : "");
		fprintf(stderr, "p11vault: audit chain broken at %s: %s\n",
		    vd.broken, vd.broken_why ? vd.broken_why : "");
		return 1;
	}
	printf("{\"intact\":true,\"files\":%u,\"lines\":%llu", vd.files,
	    (unsigned long long)vd.lines);
	printf(
	    ",\"checkpoints\":%llu,\"lastCheckpoint\":\"%s\","
	    "\"unsignedTail\":%llu",
	    (unsigned long long)vd.checkpoints, vd.last_checkpoint,
	    (unsigned long long)vd.unsigned_tail);
	if (vd.starts_at[0] != '\0')
		printf(",\"startsAt\":\"%s\"", vd.starts_at);
	print_repairs(&vd);
	printf("}\n");
	if (vd.tail_len > 0)
		fprintf(stderr,
		    "p11vault: audit.log ends in an incomplete line (%llu "
		    "bytes, a crash mid-write?); the next start moves it "
		    "aside\n",
		    (unsigned long long)vd.tail_len);
	return 0;
}

static void
usage(FILE *f)
{
	fputs(
	    "usage: p11vault COMMAND [ARGS]   (COMMAND --help for more)\n"
	    "  init      create a new vault in a data directory\n"
	    "  serve     serve a vault over HTTPS\n"
	    "  unseal    give an operator key share to a sealed server\n"
	    "  rekey     new key shares and PINs (server stopped)\n"
	    "  node      init | approve | join | list | remove: cluster "
	    "nodes\n"
	    "  rekey-domain  a new domain key, every blob re-wrapped "
	    "(server stopped)\n"
	    "  vault     show | update the vault's properties\n"
	    "  identity  create | list | delete | credential: workload "
	    "identities\n"
	    "  policy    set | list | delete access policies\n"
	    "  key       az keyvault key's commands (create, show, list, ...)\n"
	    "  audit     verify the audit log's hash chain\n"
	    "  byok      build a BYOK transfer blob from a PEM key\n"
	    "  identity-agent  serve IMDS tokens for a workload host\n"
	    "  az-cloud  shell lines that point Azure CLI at the appliance\n",
	    f);
}

int
main(int argc, char **argv)
{
	/* Process policy, decided once here for every sub-command and the
	 * token process: files this program creates are its owner's alone,
	 * and every buffer Jansson frees is wiped first (bodies, credentials
	 * and tokens pass through it). */
	umask(077);
	/* the token process: before anything else of this program runs */
	if (argc >= 2 && strcmp(argv[1], HSM_TOKEN_ARGV) == 0)
		return hsm_token_main(argc, argv);
	api_json_wipe_on_free();
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "init") == 0)
		return cmd_init(argc - 1, argv + 1);
	if (strcmp(argv[1], "serve") == 0)
		return cmd_serve(argc - 1, argv + 1);
	if (strcmp(argv[1], "audit") == 0)
		return cmd_audit(argc - 1, argv + 1);
	if (strcmp(argv[1], "unseal") == 0)
		return cli_unseal(argc - 1, argv + 1);
	if (strcmp(argv[1], "rekey") == 0)
		return cli_rekey(argc - 1, argv + 1);
	if (strcmp(argv[1], "node") == 0 && argc >= 3 &&
	    strcmp(argv[2], "init") == 0) {
		init_as_node = 1;
		return cmd_init(argc - 2, argv + 2);
	}
	if (strcmp(argv[1], "node") == 0)
		return cli_node(argc - 1, argv + 1);
	if (strcmp(argv[1], "rekey-domain") == 0)
		return cli_rekey_domain(argc - 1, argv + 1);
	if (strcmp(argv[1], "key") == 0)
		return cli_key(argc - 1, argv + 1);
	if (strcmp(argv[1], "byok") == 0)
		return cli_byok(argc - 1, argv + 1);
	if (strcmp(argv[1], "identity-agent") == 0)
		return cli_identity_agent(argc - 1, argv + 1);
	if (strcmp(argv[1], "az-cloud") == 0)
		return cli_az_cloud(argc - 1, argv + 1);
	if (strcmp(argv[1], "vault") == 0 || strcmp(argv[1], "identity") == 0 ||
	    strcmp(argv[1], "policy") == 0)
		return cli_admin(argc - 1, argv + 1);
	cli_fail_line("unknown command '%s'", argv[1]);
	usage(stderr);
	return 2;
}
