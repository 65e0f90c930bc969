/*
 * main.c — the one main() of p11vault: sub-command dispatch, `init`,
 * `serve`, `audit verify`. Administrator commands are in cli_admin.c.
 *
 * Must never: print a PIN; print a client secret except the admin
 * credential file it writes (mode 0600) at init.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "api/api.h"
#include "hsm/harden.h"

static void
die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("p11vault: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* --flag VALUE lookup; NULL if absent. A flag without a value dies. */
static const char *
opt(int argc, char **argv, const char *name)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], name) != 0)
			continue;
		if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
			die("%s needs a value", name);
		return argv[i + 1];
	}
	return NULL;
}

static int
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
			die("unknown argument '%s' (see --help)", argv[i]);
	}
}

/* Host part of https://HOST[:PORT][/...] into out. */
static int
url_host(const char *url, char *out, size_t len, char *hostport,
    size_t hp_len)
{
	const char *p, *end;
	size_t n;

	if (strncmp(url, "https://", 8) != 0)
		return -1;
	p = url + 8;
	end = p + strcspn(p, "/?#");
	n = (size_t)(end - p);
	if (n == 0 || n >= hp_len || n >= len)
		return -1;
	memcpy(hostport, p, n);
	hostport[n] = '\0';
	if (p[0] == '[') {
		const char *rb = memchr(p, ']', n);
		if (rb == NULL)
			return -1;
		n = (size_t)(rb - p - 1);
		memcpy(out, p + 1, n);
	} else {
		const char *colon = memchr(p, ':', n);
		if (colon)
			n = (size_t)(colon - p);
		memcpy(out, p, n);
	}
	out[n] = '\0';
	return n ? 0 : -1;
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
	char hsm_dir[4200], pem[4200], tls[4200], out[300], *text;
	const char *why = "cannot read it";
	size_t len;
	FILE *f;
	int rc = -1;

	snprintf(hsm_dir, sizeof(hsm_dir), "%s/hsm", dir);
	snprintf(pem, sizeof(pem), "%s/tls/%s.pem", dir, name);
	snprintf(tls, sizeof(tls), "%s/tls", dir);
	snprintf(out, sizeof(out), "%s.cred", name);
	if (access(pem, F_OK) != 0)
		return;
	if ((f = fopen(pem, "re")) == NULL)
		goto out;
	text = calloc(1, 64 * 1024);
	len = text ? fread(text, 1, 64 * 1024 - 1, f) : 0;
	fclose(f);
	if (text != NULL && len > 0)
		rc = hsm_at_rest_seal(hsm_dir, cred, (const uint8_t *)text, len,
		    tls, out, &why);
	if (text != NULL) {
		OPENSSL_cleanse(text, 64 * 1024);
		free(text);
	}
	if (rc == 0)
		hsm_shred(pem);
out:
	if (rc != 0)
		fprintf(stderr, "{\"level\":\"warning\",\"event\":"
		    "\"tls_key_in_plaintext\",\"msg\":\"tls/%s.pem stays in "
		    "plaintext: %s\"}\n", name, why);
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
 * or the key opened from its at-rest form (wipe and free). */
static int
open_tls_key(const char *dir, char **pem, char *err, size_t err_len)
{
	char hsm_dir[4200], path[4200];
	const char *why = "";
	size_t len = 0;

	*pem = NULL;
	seal_tls_key(dir);
	snprintf(path, sizeof(path), "%s/tls/server-key.pem", dir);
	if (access(path, F_OK) == 0)
		return 0;
	snprintf(hsm_dir, sizeof(hsm_dir), "%s/hsm", dir);
	snprintf(path, sizeof(path), "%s/tls/server-key.cred", dir);
	if (access(path, F_OK) == 0) {
		if ((*pem = calloc(1, 64 * 1024)) == NULL)
			return -1;
		if (hsm_at_rest_open(hsm_dir, TLS_KEY_CRED, path,
		    (uint8_t *)*pem, 64 * 1024 - 1, &len, &why) != 0) {
			OPENSSL_cleanse(*pem, 64 * 1024);
			free(*pem);
			*pem = NULL;
			snprintf(err, err_len, "cannot open the TLS key "
			    "(tls/server-key.cred): %s", why);
			return -1;
		}
		return 0;
	}
	snprintf(err, err_len, "the TLS key is missing (tls/server-key.pem or "
	    ".cred)");
	return -1;
}

/* ---- init ----------------------------------------------------------------- */

static int
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
	"--tenant-id", "--tls-ca-cert", "--tls-ca-key", "--module",
	"--token-label", "--key-shares", "--key-threshold", "--auto-unseal",
	"--share-keys", NULL };
static const char *const no_opts[] = { NULL };

static int
cmd_init(int argc, char **argv)
{
	const char *dir = opt(argc, argv, "--data");
	const char *url = opt(argc, argv, "--vault-url");
	const char *tenant = opt(argc, argv, "--tenant-id");
	const char *ca_cert = opt(argc, argv, "--tls-ca-cert");
	const char *ca_key = opt(argc, argv, "--tls-ca-key");
	const char *ks = opt(argc, argv, "--key-shares");
	const char *kt = opt(argc, argv, "--key-threshold");
	const char *au = opt(argc, argv, "--auto-unseal");
	const char *sk = opt(argc, argv, "--share-keys");
	unsigned nshares = ks ? (unsigned)strtoul(ks, NULL, 10) :
	    sk ? (unsigned)cli_seal_count_keys(sk) : 5;
	unsigned thresh = kt ? (unsigned)strtoul(kt, NULL, 10) :
	    (nshares < 3 ? nshares : 3);
	char *shares = NULL;
	char host[256], hostport[300], tls_dir[4096], path[4200], err[256];
	char tid[POLICY_ID_LEN + 1], secret[64], *json = NULL;
	struct vlt_init_params ip;
	struct vlt_open_opts oo;
	struct vlt_principal admin;
	struct vlt_access_policy ap;
	vault_t *v = NULL;
	int rc;

	if (flag(argc, argv, "--help")) {
		puts("usage: p11vault init --data DIR [--vault-url URL] "
		    "[--tenant-id UUID]\n"
		    "       [--tls-ca-cert PEM --tls-ca-key PEM] "
		    "[--module PKCS11.so --token-label LABEL]\n"
		    "       [--key-shares N (5)] [--key-threshold M (3)]\n"
		    "       [--share-keys A.pem,B.pem,... (each share encrypted "
		    "to one custodian)]\n"
		    "       [--auto-unseal auto|none|systemd-creds[:host|tpm2|"
		    "host+tpm2|auto]|clevis:PIN CONFIG]\n"
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
		return 0;
	}
	check_args(argc, argv, init_opts, no_opts);
	if (dir == NULL)
		die("init needs --data DIR");
	if (url == NULL)
		url = "https://127.0.0.1:8443";
	if (url_host(url, host, sizeof(host), hostport, sizeof(hostport)))
		die("--vault-url must look like https://HOST[:PORT]");
	if ((ca_cert == NULL) != (ca_key == NULL))
		die("--tls-ca-cert and --tls-ca-key go together");
	if (au == NULL || strcmp(au, "auto") == 0)
		au = cli_seal_default_auto();
	if (nshares > 16 || thresh > nshares || (nshares > 0 && thresh == 0))
		die("--key-threshold must be 1..--key-shares, and --key-shares "
		    "0..16");
	if (sk != NULL && (unsigned)cli_seal_count_keys(sk) != nshares)
		die("--share-keys names %d keys for %u shares", 
		    cli_seal_count_keys(sk), nshares);
	if (nshares == 0 && strcmp(au, "none") == 0)
		die("--key-shares 0 needs an --auto-unseal method: nothing "
		    "else could unseal the vault");
	if (vault_exists(dir))
		die("%s already holds a vault; nothing was changed", dir);
	if (tenant == NULL) {
		policy_uuid(tid);
		tenant = tid;
	} else if (strlen(tenant) != POLICY_ID_LEN) {
		die("--tenant-id must be a UUID");
	}
	umask(077);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		die("cannot create %s: %s", dir, strerror(errno));
	snprintf(tls_dir, sizeof(tls_dir), "%s/tls", dir);
	if (tlsgen_create(tls_dir, host, ca_cert, ca_key, err, sizeof(err)))
		die("TLS: %s", err);

	memset(&ip, 0, sizeof(ip));
	ip.data_dir = dir;
	ip.vault_url = url;
	ip.tenant_id = tenant;
	ip.module_path = opt(argc, argv, "--module");
	ip.module_allow = getenv("P11VAULT_MODULE_ALLOW");
	ip.token_label = opt(argc, argv, "--token-label");
	ip.key_shares = nshares;
	ip.key_threshold = thresh;
	ip.auto_unseal = au;
	ip.shares_out = &shares;
	rc = vault_init(&ip);
	if (rc == VLT_ERR_EXISTS)
		die("%s already holds a vault; nothing was changed", dir);
	if (rc != 0)
		die("cannot initialise the vault (error %d%s)", rc,
		    rc == VLT_ERR_BAD_PARAM ? ": a bad --auto-unseal" :
		    rc == VLT_ERR_UNAVAILABLE ? ": the token, or the "
		    "unattended method, failed: see above" : "");
	memset(&oo, 0, sizeof(oo));
	oo.pool_size = 2;
	oo.module_allow = ip.module_allow;
	if (vault_open(dir, &oo, &v) != 0)
		die("cannot open the new vault");

	memset(&admin, 0, sizeof(admin));
	policy_uuid(admin.object_id);
	policy_uuid(admin.client_id);
	snprintf(admin.display_name, sizeof(admin.display_name),
	    "vault-administrator");
	admin.is_admin = 1;
	admin.created = (int64_t)time(NULL);
	policy_secret_new(secret);
	if (policy_secret_hash(secret, &admin.secret_hash) != 0 ||
	    vault_principal_put(v, &admin) != 0)
		die("cannot create the administrator");
	memset(&ap, 0, sizeof(ap));
	memcpy(ap.object_id, admin.object_id, sizeof(ap.object_id));
	snprintf(ap.tenant_id, sizeof(ap.tenant_id), "%s", tenant);
	ap.perms = PERM_ALL;
	if (vault_access_put(v, &ap) != 0)
		die("cannot create the administrator's access policy");
	{
		json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s}",
		    "tenantId", tenant, "objectId", admin.object_id,
		    "clientId", admin.client_id, "clientSecret", secret,
		    "vaultUrl", url);
		json = json_dumps(j, JSON_INDENT(2));
		json_decref(j);
	}
	snprintf(path, sizeof(path), "%s/admin.json", dir);
	if (json == NULL || write_secret_file(path, json) != 0)
		die("cannot write %s", path);
	OPENSSL_cleanse(json, strlen(json));
	free(json);
	OPENSSL_cleanse(secret, sizeof(secret));
	free(admin.secret_hash);
	vault_close(v);
	seal_tls_key(dir);
	{
		json_t *sh = sk != NULL ? cli_seal_shares_for(shares ? shares :
		    "", sk, err, sizeof(err)) : cli_seal_shares_json(shares ?
		    shares : "");
		json_t *j;

		if (sh == NULL)
			die("the vault is made, but its key shares could not be "
			    "encrypted (%s): remove %s and run init again", err,
			    dir);
		j = json_pack("{s:s, s:s, s:s, s:s+, s:s+, s:o, s:i, "
		    "s:s}", "dataDir", dir, "vaultUrl", url, "tenantId",
		    tenant, "adminCredential", dir, "/admin.json",
		    "caCertificate", dir, "/tls/ca.pem", sk != NULL ?
		    "unsealKeySharesEncrypted" : "unsealKeyShares", sh,
		    "unsealThreshold", (int)thresh, "autoUnseal", au);
		json = j ? json_dumps(j, JSON_COMPACT) : NULL;
		json_decref(j);
	}
	if (shares != NULL) {
		OPENSSL_cleanse(shares, strlen(shares));
		free(shares);
	}
	if (json == NULL)
		die("out of memory");
	printf("%s\n", json);
	OPENSSL_cleanse(json, strlen(json));
	free(json);
	cli_seal_advice(stderr, thresh, nshares, au);
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

	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		pthread_mutex_unlock(&s->lock);
		if (vault_purge_due(s->v) < 0)
			fprintf(stderr, "{\"level\":\"warn\",\"event\":"
			    "\"purge_sweep_failed\"}\n");
		if (vault_rotation_due(s->v) < 0)
			fprintf(stderr, "{\"level\":\"warn\",\"event\":"
			    "\"rotation_sweep_failed\"}\n");
		pthread_mutex_lock(&s->lock);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		if (!s->stop)
			pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static int
load_policy(vault_t *v, policy_t *p, int *key_set)
{
	struct vlt_principal *pr = NULL;
	struct vlt_access_policy *ap = NULL;
	uint8_t *spki = NULL;
	size_t n = 0, m = 0, i, len = 0;
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
	vlt_principal_free_array(pr, n);
	free(ap);
	return rc;
}

static const char *const serve_opts[] = { "--data", "--listen",
	"--insecure-test-clock", "--user", NULL };

static int
cmd_serve(int argc, char **argv)
{
	const char *dir = opt(argc, argv, "--data");
	const char *listen = opt(argc, argv, "--listen");
	const char *clock_file = opt(argc, argv, "--insecure-test-clock");
	const char *user = opt(argc, argv, "--user");
	struct api_server_opts so;
	struct api_server *srv = NULL;
	struct vlt_open_opts oo;
	struct api_ctx ctx;
	struct policy_config pc;
	struct sweeper sw;
	struct rlimit nocore = { 0, 0 }, nofile;
	char cert[4200], key[4200], err[512], *key_pem = NULL;
	const char *lifetime;
	int rc;
	pthread_t sweep_thread;
	sigset_t sigs;
	int sig = 0;

	if (flag(argc, argv, "--help")) {
		puts("usage: p11vault serve --data DIR [--listen HOST:PORT] "
		    "[--user NAME]\n"
		    "Serves the vault over HTTPS (default 127.0.0.1:8443). "
		    "SIGINT/SIGTERM finish\n"
		    "in-flight requests and exit 0.\n"
		    "Test only: --insecure-test-clock FILE adds the seconds "
		    "held in FILE to the\n"
		    "vault's clock (never use it in production).");
		return 0;
	}
	check_args(argc, argv, serve_opts, no_opts);
	if (dir == NULL)
		die("serve needs --data DIR");
	/* no core dumps: they would hold session keys and plaintexts */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	setrlimit(RLIMIT_CORE, &nocore);
	/* thousands of TLS connections need more than the usual 1,024 fds */
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 &&
	    nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &nofile);
	}
	umask(077);

	/* block the signals before any thread starts; sigwait below */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	memset(&ctx, 0, sizeof(ctx));
	/* one server per data directory; rekey waits for it to stop */
	if (vault_exists(dir) && cli_serve_lock(dir) == -1)
		die("another p11vault serve (or a rekey) holds %s/serve.lock",
		    dir);
	if (user && hsm_check_data_owner(dir, user, err, sizeof(err)) != 0)
		die("%s", err);
	if (!vault_exists(dir))
		die("%s holds no vault (run p11vault init --data %s)", dir,
		    dir);
	memset(&oo, 0, sizeof(oo));
	oo.module_allow = getenv("P11VAULT_MODULE_ALLOW");
	oo.token_user = user;
	if (vault_open(dir, &oo, &ctx.vault) != 0)
		die("cannot open the vault in %s (is the token reachable?)",
		    dir);
	if (clock_file) {
		vault_set_test_clock(ctx.vault, clock_file);
		fprintf(stderr, "{\"level\":\"warn\",\"event\":"
		    "\"insecure_test_clock\",\"msg\":\"the vault clock is "
		    "shifted by a test knob; never use this in production\"}\n");
	}
	ctx.vault_url = vault_config(ctx.vault, "vault_url");
	ctx.tenant_id = vault_config(ctx.vault, "tenant_id");
	ctx.resource = vault_config(ctx.vault, "resource");
	if (ctx.resource == NULL)
		ctx.resource = "https://vault.azure.net";
	if (ctx.vault_url == NULL || ctx.tenant_id == NULL)
		die("the vault's config lacks vault_url or tenant_id");
	snprintf(ctx.issuer, sizeof(ctx.issuer), "%s/%s/v2.0", ctx.vault_url,
	    ctx.tenant_id);
	snprintf(ctx.challenge, sizeof(ctx.challenge),
	    "Bearer authorization=\"%s/%s\", resource=\"%s\"", ctx.vault_url,
	    ctx.tenant_id, ctx.resource);
	memset(&pc, 0, sizeof(pc));
	pc.tenant_id = ctx.tenant_id;
	pc.issuer = ctx.issuer;
	lifetime = vault_config(ctx.vault, "token_lifetime");
	pc.token_lifetime = lifetime ? atoll(lifetime) : 3600;
	if (policy_new(&pc, &ctx.policy) != 0 ||
	    load_policy(ctx.vault, ctx.policy, &ctx.verify_key_set) != 0)
		die("cannot load identities and access policies");

	if (listen == NULL)
		listen = vault_config(ctx.vault, "listen");
	if (listen == NULL)
		listen = "127.0.0.1:8443";
	snprintf(cert, sizeof(cert), "%s/tls/server.pem", dir);
	snprintf(key, sizeof(key), "%s/tls/server-key.pem", dir);
	memset(&so, 0, sizeof(so));
	so.listen = listen;
	so.cert_pem_file = cert;
	so.key_pem_file = key;
	if (open_tls_key(dir, &key_pem, err, sizeof(err)) != 0)
		die("%s", err);
	so.key_pem = key_pem;
	rc = api_server_start(&ctx, &so, &srv, err, sizeof(err));
	if (key_pem != NULL) {
		OPENSSL_cleanse(key_pem, 64 * 1024);
		free(key_pem);
	}
	if (rc != 0)
		die("%s", err);
	/* after the bind, with the vault and the token open */
	if (user && hsm_drop_privileges(user, err, sizeof(err)) != 0)
		die("%s", err);

	memset(&sw, 0, sizeof(sw));
	sw.v = ctx.vault;
	pthread_mutex_init(&sw.lock, NULL);
	pthread_cond_init(&sw.cond, NULL);
	if (pthread_create(&sweep_thread, NULL, sweeper_main, &sw) != 0)
		die("cannot start the purge sweeper");
	/* every thread is running: from here on only the system calls
	 * serving needs (hsm/seccomp.c), for all of them */
	if (hsm_seccomp_network() != 0)
		die("cannot install the system-call filter");

	printf("listening on https://%s\n", listen);
	fflush(stdout);
	while (sigwait(&sigs, &sig) != 0)
		;
	fprintf(stderr, "{\"level\":\"info\",\"event\":\"shutdown\","
	    "\"signal\":%d}\n", sig);
	api_server_stop(srv);
	pthread_mutex_lock(&sw.lock);
	sw.stop = 1;
	pthread_cond_signal(&sw.cond);
	pthread_mutex_unlock(&sw.lock);
	pthread_join(sweep_thread, NULL);
	policy_free(ctx.policy);
	vault_close(ctx.vault);
	return 0;
}

/* ---- audit ---------------------------------------------------------------- */

static int
cmd_audit(int argc, char **argv)
{
	const char *dir;
	char where[256];
	static const char *const o[] = { "--data", NULL };

	if (argc < 2 || strcmp(argv[1], "verify") != 0 ||
	    flag(argc, argv, "--help")) {
		puts("usage: p11vault audit verify --data DIR\n"
		    "Checks the audit log's hash chain; names the first broken "
		    "line.");
		return argc >= 2 && flag(argc, argv, "--help") ? 0 : 2;
	}
	check_args(argc - 1, argv + 1, o, no_opts);
	dir = opt(argc, argv, "--data");
	if (dir == NULL)
		die("audit verify needs --data DIR");
	if (vault_audit_verify(dir, where, sizeof(where)) != 0) {
		printf("{\"intact\":false,\"firstBroken\":\"%s\"}\n", where);
		fprintf(stderr, "p11vault: audit chain broken at %s\n", where);
		return 1;
	}
	printf("{\"intact\":true}\n");
	return 0;
}

static void
usage(FILE *f)
{
	fputs("usage: p11vault COMMAND [ARGS]   (COMMAND --help for more)\n"
	    "  init      create a new vault in a data directory\n"
	    "  serve     serve a vault over HTTPS\n"
	    "  unseal    give an operator key share to a sealed server\n"
	    "  rekey     new key shares and PINs (server stopped)\n"
	    "  vault     show | update the vault's properties\n"
	    "  identity  create | list | delete workload identities\n"
	    "  policy    set | list | delete access policies\n"
	    "  audit     verify the audit log's hash chain\n"
	    "  byok      build a BYOK transfer blob from a PEM key\n"
	    "  identity-agent  serve IMDS tokens for a workload host\n", f);
}

int
main(int argc, char **argv)
{
	/* the token process: before anything else of this program runs */
	if (argc >= 2 && strcmp(argv[1], HSM_TOKEN_ARGV) == 0)
		return hsm_token_main(argc, argv);
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
	if (strcmp(argv[1], "byok") == 0)
		return cli_byok(argc - 1, argv + 1);
	if (strcmp(argv[1], "identity-agent") == 0)
		return cli_identity_agent(argc - 1, argv + 1);
	if (strcmp(argv[1], "vault") == 0 || strcmp(argv[1], "identity") == 0 ||
	    strcmp(argv[1], "policy") == 0)
		return cli_admin(argc - 1, argv + 1);
	fprintf(stderr, "p11vault: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
