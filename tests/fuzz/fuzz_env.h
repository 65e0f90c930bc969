/*
 * fuzz_env.h — the one-time environment of the request-level fuzz targets
 * (fuzz_router, fuzz_jwk, fuzz_restore, fuzz_form): a real vault (SoftHSMv2
 * token, SQLite store) in a fresh directory under /dev/shm, a policy table
 * with a fixed administrator, a valid admin bearer token, and a few keys.
 *
 * Owns: nothing of the product; it only drives api_route() as http.c does.
 * Must never: mock the HSM or skip authentication (the token is real).
 *
 * Header-only on purpose: each target is one translation unit plus the
 * product sources (see tests/fuzz/build.sh).
 */
#ifndef P11VAULT_FUZZ_ENV_H
#define P11VAULT_FUZZ_ENV_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "api/api.h"
#include "hsm/hsm.h"

/* The vault starts its token process as /proc/self/exe HSM_TOKEN_ARGV:
 * this fuzzer binary becomes it before libFuzzer's main() runs. */
__attribute__((constructor)) static void
fz_token_process(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], HSM_TOKEN_ARGV) == 0)
		exit(hsm_token_main(argc, argv));
}
#include "hsm/hsm.h"

/* Fixed identities: seeds in the corpus may name them. */
#define FZ_TENANT "72f988bf-86f1-41af-91ab-2d7cd011db47"
#define FZ_ADMIN_OID "11111111-2222-4333-8444-555555555555"
#define FZ_ADMIN_CID "66666666-7777-4888-9999-aaaaaaaaaaaa"
#define FZ_USER_OID "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff"
#define FZ_USER_CID "01234567-89ab-4cde-8f01-23456789abcd"
#define FZ_SECRET "fuzz-secret-not-a-secret"
#define FZ_URL "https://127.0.0.1:8443"

static struct api_ctx fz_ctx;
static char fz_dir[64];
static char *fz_token;      /* "Bearer eyJ..." */
static char *fz_cheap_hash; /* scrypt N=2: fast to check */
/* A second session pool on the vault's token (never closed), so that a
 * target can seal its own plaintext with the domain key as a backup is
 * sealed: that is how fuzz_restore reaches the parser behind the MAC. */
static hsm_t *fz_hsm;

static __attribute__((unused)) int
fz_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static __attribute__((unused)) void
fz_cleanup(void)
{
	if (fz_ctx.vault) {
		vault_close(fz_ctx.vault);
		fz_ctx.vault = NULL;
	}
	if (fz_dir[0])
		nftw(fz_dir, fz_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static __attribute__((unused)) void
fz_die(const char *what)
{
	fprintf(stderr, "fuzz env: %s\n", what);
	fz_cleanup();
	abort();
}

static __attribute__((unused)) int
fz_sign(void *ctx, const uint8_t *data, size_t len, uint8_t sig[64])
{
	return vault_jwt_sign(ctx, data, len, sig);
}

/* "scrypt$2$1$1$salt$dk" of FZ_SECRET: checking it costs microseconds,
 * where the product's N=16384 costs ~50 ms. */
static __attribute__((unused)) char *
fz_make_cheap_hash(void)
{
	static const uint8_t salt[16] = "fuzz-salt-16byte";
	uint8_t dk[32];
	char *s = NULL, *d = NULL, buf[256];

	if (EVP_PBE_scrypt(FZ_SECRET, strlen(FZ_SECRET), salt, sizeof(salt), 2,
	        1, 1, 0, dk, sizeof(dk)) != 1 ||
	    policy_b64url_encode(salt, sizeof(salt), &s) != 0 ||
	    policy_b64url_encode(dk, sizeof(dk), &d) != 0)
		fz_die("scrypt");
	snprintf(buf, sizeof(buf), "scrypt$2$1$1$%s$%s", s, d);
	free(s);
	free(d);
	return strdup(buf);
}

/* The policy table as load_policy() in main.c builds it; called once and
 * again after every input (the admin API may have changed it). */
static __attribute__((unused)) void
fz_policy_reset(void)
{
	if (policy_principal_set(fz_ctx.policy, FZ_ADMIN_OID, FZ_ADMIN_CID,
	        fz_cheap_hash, 1) != 0 ||
	    policy_principal_set(fz_ctx.policy, FZ_USER_OID, FZ_USER_CID,
	        fz_cheap_hash, 0) != 0 ||
	    policy_access_set(fz_ctx.policy, FZ_ADMIN_OID, PERM_ALL) != 0)
		fz_die("policy reset");
}

static __attribute__((unused)) void
fz_create(const char *name, enum vlt_kty kty, unsigned ops)
{
	struct vlt_create_req req;
	struct vlt_key_info k;

	memset(&req, 0, sizeof(req));
	memset(&k, 0, sizeof(k));
	req.kty = kty;
	req.crv = kty == VLT_KTY_EC ? VLT_CRV_P256 : VLT_CRV_NONE;
	req.key_size = kty == VLT_KTY_RSA ? 2048 : 0;
	req.key_ops = ops;
	req.enabled = 1;
	req.hsm = 1;
	if (vault_key_create(fz_ctx.vault, name, &req, &k) != 0)
		fprintf(stderr, "fuzz env: cannot create %s (continuing)\n",
		    name);
	vlt_key_info_clear(&k);
}

static __attribute__((unused)) void
fz_env_init(void)
{
	struct vlt_init_params ip;
	struct policy_config pc;
	uint8_t *spki = NULL;
	size_t spki_len = 0;
	char *jwt = NULL;
	int64_t exp_in = 0;
	size_t tl;

	if (fz_ctx.vault)
		return;
	/* the audit/DB fsyncs are cheap on tmpfs */
	snprintf(fz_dir, sizeof(fz_dir), "/dev/shm/p11vault-fuzz-XXXXXX");
	if (access("/dev/shm", W_OK) != 0)
		snprintf(fz_dir, sizeof(fz_dir), "/tmp/p11vault-fuzz-XXXXXX");
	if (mkdtemp(fz_dir) == NULL) {
		fz_dir[0] = '\0';
		fz_die("mkdtemp");
	}
	/* OpenSSL makes its method store on first use; made inside an
	 * allocation-failure run (tests/torture) it is left without its lock
	 * and the next digest crashes, in OpenSSL: the digests the audit
	 * chain and the tokens use are fetched once here, before any run */
	{
		unsigned char d[SHA256_DIGEST_LENGTH];

		(void)SHA256((const unsigned char *)"", 0, d);
	}
	atexit(fz_cleanup);
	memset(&ip, 0, sizeof(ip));
	ip.data_dir = fz_dir;
	ip.vault_url = FZ_URL;
	ip.tenant_id = FZ_TENANT;
	if (vault_init(&ip) != 0 ||
	    vault_open(fz_dir, &(struct vlt_open_opts){ .pool_size = 2 },
	        &fz_ctx.vault) != 0)
		fz_die("vault init/open");
	fz_ctx.vault_url = FZ_URL;
	fz_ctx.tenant_id = FZ_TENANT;
	fz_ctx.resource = "https://vault.azure.net";
	snprintf(fz_ctx.issuer, sizeof(fz_ctx.issuer), "%s/%s/v2.0", FZ_URL,
	    FZ_TENANT);
	snprintf(fz_ctx.challenge, sizeof(fz_ctx.challenge),
	    "Bearer authorization=\"%s/%s\", resource=\"%s\"", FZ_URL,
	    FZ_TENANT, fz_ctx.resource);
	memset(&pc, 0, sizeof(pc));
	pc.tenant_id = FZ_TENANT;
	pc.issuer = fz_ctx.issuer;
	/* long-lived: a run of many hours keeps a valid token */
	pc.token_lifetime = 30 * 24 * 3600;
	if (policy_new(&pc, &fz_ctx.policy) != 0)
		fz_die("policy_new");
	if ((fz_cheap_hash = fz_make_cheap_hash()) == NULL)
		fz_die("hash");
	fz_policy_reset();
	if (vault_jwt_public(fz_ctx.vault, &spki, &spki_len) != 0 ||
	    policy_set_verify_key(fz_ctx.policy, spki, spki_len) != 0)
		fz_die("verify key");
	free(spki);
	if (policy_token_issue(fz_ctx.policy, FZ_ADMIN_OID, FZ_ADMIN_CID,
	        fz_ctx.resource, (int64_t)time(NULL), fz_sign, fz_ctx.vault,
	        &jwt, &exp_in) != 0)
		fz_die("token issue");
	tl = strlen(jwt) + 8;
	if ((fz_token = malloc(tl)) == NULL)
		fz_die("oom");
	snprintf(fz_token, tl, "Bearer %s", jwt);
	free(jwt);
	{
		struct hsm_config hc;
		char pinf[128];
		snprintf(pinf, sizeof(pinf), "%s/hsm", fz_dir);
		memset(&hc, 0, sizeof(hc));
		hc.module_path = "/usr/lib/softhsm/libsofthsm2.so";
		hc.token_label = "p11vault";
		hc.hsm_dir = pinf;
		hc.pool_size = 1;
		if (hsm_open(&hc, &fz_hsm) != 0)
			fz_hsm = NULL;
	}
	/* One key of each kind, made once: keygen stays out of the loop. */
	fz_create("k1", VLT_KTY_RSA, 0);
	fz_create("e1", VLT_KTY_EC, 0);
	/* a key-exchange key for BYOK (key_ops import), if supported */
	fz_create("kek", VLT_KTY_RSA, VLT_OP_IMPORT);
}

/* After an input: give the fixed keys back their usable state, so that a
 * fuzzed PATCH (enabled=false, exp in the past, key_ops=[]) or DELETE does
 * not make the rest of the run a wall of 403/404s. Cheap: only when the
 * input was a mutating request. */
static __attribute__((unused)) void
fz_keys_reset(void)
{
	static const char *const names[] = { "k1", "e1", "kek" };
	static const unsigned ops[] = {
		VLT_OP_ENCRYPT | VLT_OP_DECRYPT | VLT_OP_SIGN | VLT_OP_VERIFY |
		    VLT_OP_WRAP | VLT_OP_UNWRAP,
		VLT_OP_SIGN | VLT_OP_VERIFY,
		VLT_OP_IMPORT,
	};
	struct vlt_update_req u;
	struct vlt_key_info k;
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		memset(&k, 0, sizeof(k));
		if (vault_key_get(fz_ctx.vault, names[i], NULL, &k) != 0) {
			vlt_key_info_clear(&k);
			memset(&k, 0, sizeof(k));
			if (vault_key_recover(fz_ctx.vault, names[i], &k) !=
			    0) {
				vlt_key_info_clear(&k);
				continue;
			}
		}
		vlt_key_info_clear(&k);
		memset(&k, 0, sizeof(k));
		memset(&u, 0, sizeof(u));
		u.has_enabled = 1;
		u.enabled = 1;
		u.has_nbf = 1;
		u.has_exp = 1;
		u.has_key_ops = 1;
		u.key_ops = ops[i];
		if (vault_key_update(fz_ctx.vault, names[i], NULL, &u, &k) != 0)
			; /* best effort */
		vlt_key_info_clear(&k);
	}
}

/*
 * One request through the router, as http.c would make it. Every string
 * and the body are exact-size heap copies so that ASan sees any overread.
 * Returns the status.
 */
static __attribute__((unused)) unsigned
fz_request(const char *method, const char *path, const char *api_version,
    const char *maxresults, const char *skiptoken, int with_token,
    const uint8_t *body, size_t body_len)
{
	struct api_req q;
	struct api_resp r;
	uint8_t *b = NULL;
	unsigned status;

	memset(&q, 0, sizeof(q));
	memset(&r, 0, sizeof(r));
	if (body_len > API_BODY_MAX)
		body_len = API_BODY_MAX;
	if (body_len) {
		if ((b = malloc(body_len)) == NULL)
			return 0;
		memcpy(b, body, body_len);
	}
	q.ctx = &fz_ctx;
	q.method = method;
	q.path = path;
	q.api_version = api_version;
	q.maxresults = maxresults;
	q.skiptoken = skiptoken;
	q.authorization = with_token ? fz_token : NULL;
	q.body = b;
	q.body_len = body_len;
	policy_uuid(q.request_id);
	snprintf(q.client_addr, sizeof(q.client_addr), "127.0.0.1");
	api_route(&q, &r);
	status = r.status;
	if (getenv("FUZZ_DEBUG"))
		fprintf(stderr, "%s %s -> %u %.*s\n", method, path, status,
		    (int)(r.body_len > 160 ? 160 : r.body_len),
		    r.body ? r.body : "");
	if (r.status < 100 || r.status > 599)
		abort(); /* every path must set a status */
	if (r.body)
		OPENSSL_clear_free(r.body, r.body_len);
	free(b);
	if (q.mutating) {
		fz_policy_reset();
		fz_keys_reset();
	}
	return status;
}

/* Case-insensitive substring search in a NUL-terminated string. */
static __attribute__((unused)) int
fz_has(const char *s, const char *needle)
{
	return strcasestr(s, needle) != NULL;
}

/* Case-insensitive search in a byte buffer (the body). */
static __attribute__((unused)) int
fz_mem_has(const uint8_t *b, size_t len, const char *needle)
{
	size_t n = strlen(needle), i;

	for (i = 0; n <= len && i <= len - n; i++)
		if (strncasecmp((const char *)b + i, needle, n) == 0)
			return 1;
	return 0;
}

static __attribute__((unused)) int
fz_hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* token_api.c's form decoding, repeated here only to predict whether the
 * request will reach policy_authenticate with an unknown client_id (the
 * product then runs scrypt on its dummy hash, ~50 ms). */
static __attribute__((unused)) int
fz_form_reaches_dummy_scrypt(const uint8_t *body, size_t len)
{
	char *buf, *p, *save = NULL, *w, *s;
	const char *grant = NULL, *cid = NULL, *sec = NULL, *scope = NULL;
	int dup = 0, slow = 0;
	size_t sl;

	if (memchr(body, '\0', len) || (buf = malloc(len + 1)) == NULL)
		return 0;
	memcpy(buf, body, len);
	buf[len] = '\0';
	for (p = strtok_r(buf, "&", &save); p; p = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(p, '=');
		char *parts[2];
		int k;
		if (eq == NULL)
			goto out;
		*eq = '\0';
		parts[0] = p;
		parts[1] = eq + 1;
		for (k = 0; k < 2; k++) {
			for (w = s = parts[k]; *s; s++) {
				if (*s == '+') {
					*w++ = ' ';
				} else if (*s == '%') {
					int hi = fz_hex((unsigned char)s[1]);
					int lo = hi < 0 ?
					    -1 :
					    fz_hex((unsigned char)s[2]);
					if (hi < 0 || lo < 0)
						goto out;
					*w++ = (char)(hi * 16 + lo);
					s += 2;
				} else {
					*w++ = *s;
				}
			}
			*w = '\0';
		}
#define FZ_FIELD(name, var) \
	if (strcmp(p, name) == 0) { \
		dup |= var != NULL; \
		var = eq + 1; \
	}
		FZ_FIELD("grant_type", grant)
		FZ_FIELD("client_id", cid)
		FZ_FIELD("client_secret", sec)
		FZ_FIELD("scope", scope)
#undef FZ_FIELD
	}
	/* conservative: anything that might get to scrypt with a client
	 * other than the two cheap principals counts as slow */
	(void)dup;
	if (grant && cid && sec && scope) {
		sl = strlen(scope);
		slow = strcmp(grant, "client_credentials") == 0 && sl > 9 &&
		    strcmp(scope + sl - 9, "/.default") == 0 &&
		    strcmp(cid, FZ_ADMIN_CID) != 0 &&
		    strcmp(cid, FZ_USER_CID) != 0;
	}
out:
	free(buf);
	return slow;
}

/*
 * The slow-input filter, documented in tests/fuzz/README.md. 1 means skip:
 *  - POST .../create whose body may ask for RSA (RSA keygen: 50-500 ms);
 *    EC keygen is ~1 ms and is fuzzed;
 *  - POST .../rotate of anything but the EC key e1;
 *  - POST /admin/identities (scrypt N=16384, ~50 ms, per identity);
 *  - a token request whose form reaches scrypt with a client_id other than
 *    the two fixed principals (their hashes are cheap; the dummy hash for
 *    unknown clients is the product's full-cost one).
 */
static __attribute__((unused)) int
fz_slow(const char *method, const char *path, const uint8_t *body, size_t len)
{
	if (strcmp(method, "POST") != 0)
		return 0;
	if (fz_has(path, "create") &&
	    (fz_mem_has(body, len, "RSA") || fz_mem_has(body, len, "\\u") ||
	        !fz_mem_has(body, len, "EC")))
		return 1;
	if (fz_has(path, "rotate") && !fz_has(path, "/e1/"))
		return 1;
	if (fz_has(path, "identities"))
		return 1;
	if (fz_has(path, "token"))
		return fz_form_reaches_dummy_scrypt(body, len);
	return 0;
}

/* The libFuzzer entry points of every target that includes this header. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The usual start: the environment, once. A target that needs more at
 * start (fuzz_restore) defines FZ_OWN_INITIALIZE before including this
 * header and writes its own LLVMFuzzerInitialize. */
#ifndef FZ_OWN_INITIALIZE
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_env_init();
	return 0;
}
#endif

#endif
