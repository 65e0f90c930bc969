/*
 * vault/vault.c — the domain operations: keys and versions, attributes,
 * soft delete, recovery, purge, retention, purge protection, the data
 * directory's creation and opening, principals and access policies
 * (persistence only).
 *
 * Owns: the vault_t (config, store, hsm_t), the rules (names, sizes,
 * curves, key_ops, the enabled/nbf/exp window), the mapping of HSM_ERR_*
 * to VLT_ERR_*, what each blob is bound to ("name/version", blob_bind)
 * and the one-time binding of a store's unbound blobs (upgrade_blobs).
 *
 * Must never: contain SQL (vault/store.c does), call the hsm while holding
 * the store's lock (token work is slow), know HTTP or JSON, log or keep
 * PINs, plaintexts or key material; hand the token a blob under anything
 * but the bind of the row it was read from.
 */
#include "vault/vault.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>

#include "hsm/hsm.h"
#include "vault/audit.h"
#include "vault/config.h"
#include "vault/store.h"

#define SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define DEFAULT_LABEL "p11vault"
#define DEFAULT_URL "https://127.0.0.1:8443"
#define DEFAULT_LISTEN "127.0.0.1:8443"
#define PIN_HEX_LEN 32
#define CLOCK_FILE_MAX 64

#define OPS_ALL (VLT_OP_ENCRYPT | VLT_OP_DECRYPT | VLT_OP_SIGN | \
	VLT_OP_VERIFY | VLT_OP_WRAP | VLT_OP_UNWRAP | VLT_OP_IMPORT)
#define OPS_RSA_DEFAULT (VLT_OP_ENCRYPT | VLT_OP_DECRYPT | VLT_OP_SIGN | \
	VLT_OP_VERIFY | VLT_OP_WRAP | VLT_OP_UNWRAP)
#define OPS_EC (VLT_OP_SIGN | VLT_OP_VERIFY)

struct vault {
	char *data_dir;
	struct vlt_conf *conf;
	hsm_t *hsm;
	store_t *store;
	struct vlt_audit *audit;
	pthread_mutex_t clock_lock;
	char *clock_file;
};

/* ---- small helpers ----------------------------------------------------- */

static int
map_hsm(int r)
{
	switch (r) {
	case HSM_OK:
		return VLT_OK;
	case HSM_ERR_ARGS:
		return VLT_ERR_BAD_PARAM;
	case HSM_ERR_DECRYPT:
		return VLT_ERR_DECRYPT;
	case HSM_ERR_UNAVAILABLE:
		return VLT_ERR_UNAVAILABLE;
	case HSM_ERR_NO_MEMORY:
		return VLT_ERR_NO_MEMORY;
	case HSM_ERR_SEALED:
		return VLT_ERR_SEALED;
	case HSM_ERR_IO:
		return VLT_ERR_IO;
	default:
		return VLT_ERR_INTERNAL;
	}
}

static int
name_ok(const char *name)
{
	size_t i;

	if (name == NULL || name[0] == '\0')
		return 0;
	for (i = 0; name[i] != '\0'; i++) {
		char c = name[i];

		if (i >= VLT_NAME_MAX)
			return 0;
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z') || c == '-'))
			return 0;
	}
	return 1;
}

/* NULL or "": latest, *out NULL. Malformed: VLT_ERR_NOT_FOUND (no such
 * version can exist). */
static int
version_arg(const char *version, const char **out)
{
	size_t i;

	*out = NULL;
	if (version == NULL || version[0] == '\0')
		return 0;
	for (i = 0; i < VLT_VERSION_LEN; i++) {
		char c = version[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return VLT_ERR_NOT_FOUND;
	}
	if (version[VLT_VERSION_LEN] != '\0')
		return VLT_ERR_NOT_FOUND;
	*out = version;
	return 0;
}

static int
check_ops(enum vlt_kty kty, unsigned ops)
{
	if ((ops & ~(unsigned)OPS_ALL) != 0)
		return VLT_ERR_BAD_PARAM;
	if (kty == VLT_KTY_EC && (ops & ~(unsigned)OPS_EC) != 0)
		return VLT_ERR_BAD_PARAM;
	return 0;
}

static int
random_hex(char *dst, size_t hex_len)
{
	static const char hx[] = "0123456789abcdef";
	unsigned char raw[64];
	size_t i, nbytes = hex_len / 2;

	if (hex_len % 2 != 0 || nbytes > sizeof(raw))
		return VLT_ERR_INTERNAL;
	if (RAND_bytes(raw, (int)nbytes) != 1)
		return VLT_ERR_INTERNAL;
	for (i = 0; i < nbytes; i++) {
		dst[2 * i] = hx[raw[i] >> 4];
		dst[2 * i + 1] = hx[raw[i] & 0xf];
	}
	dst[hex_len] = '\0';
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

static int
random_uuid(char dst[VLT_ID_LEN + 1])
{
	unsigned char b[16];
	int n;

	if (RAND_bytes(b, sizeof(b)) != 1)
		return VLT_ERR_INTERNAL;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	n = snprintf(dst, VLT_ID_LEN + 1,
	    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
	    b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
	return n == VLT_ID_LEN ? 0 : VLT_ERR_INTERNAL;
}

/*
 * What a blob is bound to (hsm.h): the key's name lower-cased (names
 * compare case-insensitively), "/", the version id. Every token call on
 * a blob names it, so that a blob moved to another row of the store opens
 * nowhere.
 */
#define BIND_MAX (VLT_NAME_MAX + 1 + VLT_VERSION_LEN + 1)

static int
blob_bind(char bind[BIND_MAX], const char *name, const char *version)
{
	size_t i;
	int n;

	if (name == NULL || version == NULL || name[0] == '\0' ||
	    strlen(version) != VLT_VERSION_LEN)
		return VLT_ERR_INTERNAL;
	n = snprintf(bind, BIND_MAX, "%s/%s", name, version);
	if (n < 0 || (size_t)n >= BIND_MAX)
		return VLT_ERR_INTERNAL;
	for (i = 0; bind[i] != '/'; i++)
		bind[i] = (char)tolower((unsigned char)bind[i]);
	return 0;
}

/*
 * A new version's id, drawn before the token makes its blob (the blob is
 * bound to it). If the insert then finds the id in use (a 128-bit random
 * collision) the call fails with VLT_ERR_INTERNAL rather than making the
 * key again under a new id: that never happens in practice, and a retry
 * would need a second, slow token call.
 */
static int
new_version(const char *name, char version[VLT_VERSION_LEN + 1],
    char bind[BIND_MAX])
{
	int r;

	if ((r = random_hex(version, VLT_VERSION_LEN)) != 0)
		return r;
	return blob_bind(bind, name, version);
}

static int
curve_nid(enum vlt_curve crv)
{
	switch (crv) {
	case VLT_CRV_P256: return NID_X9_62_prime256v1;
	case VLT_CRV_P384: return NID_secp384r1;
	case VLT_CRV_P521: return NID_secp521r1;
	default: return 0;
	}
}

static int
map_alg(enum vlt_alg a, enum hsm_alg *out)
{
	switch (a) {
	case VLT_ALG_RSA_OAEP: *out = HSM_ALG_RSA_OAEP; return 0;
	case VLT_ALG_RSA_OAEP_256: *out = HSM_ALG_RSA_OAEP_256; return 0;
	case VLT_ALG_RSA1_5: *out = HSM_ALG_RSA1_5; return 0;
	case VLT_ALG_RS256: *out = HSM_ALG_RS256; return 0;
	case VLT_ALG_RS384: *out = HSM_ALG_RS384; return 0;
	case VLT_ALG_RS512: *out = HSM_ALG_RS512; return 0;
	case VLT_ALG_PS256: *out = HSM_ALG_PS256; return 0;
	case VLT_ALG_PS384: *out = HSM_ALG_PS384; return 0;
	case VLT_ALG_PS512: *out = HSM_ALG_PS512; return 0;
	case VLT_ALG_ES256: *out = HSM_ALG_ES256; return 0;
	case VLT_ALG_ES384: *out = HSM_ALG_ES384; return 0;
	case VLT_ALG_ES512: *out = HSM_ALG_ES512; return 0;
	default: return VLT_ERR_BAD_PARAM;
	}
}

static int
alg_is_enc(enum vlt_alg a)
{
	return a == VLT_ALG_RSA_OAEP || a == VLT_ALG_RSA_OAEP_256 ||
	    a == VLT_ALG_RSA1_5;
}

static int
alg_is_sig(enum vlt_alg a)
{
	return a >= VLT_ALG_RS256 && a <= VLT_ALG_ES512;
}

/* kty (and curve) compatibility of a signature algorithm. */
static int
sig_alg_fits(enum vlt_alg a, const struct vlt_key_info *k)
{
	switch (a) {
	case VLT_ALG_ES256: return k->kty == VLT_KTY_EC &&
	    k->crv == VLT_CRV_P256;
	case VLT_ALG_ES384: return k->kty == VLT_KTY_EC &&
	    k->crv == VLT_CRV_P384;
	case VLT_ALG_ES512: return k->kty == VLT_KTY_EC &&
	    k->crv == VLT_CRV_P521;
	default: return k->kty == VLT_KTY_RSA;
	}
}

void
vlt_key_info_clear(struct vlt_key_info *k)
{
	if (k == NULL)
		return;
	free(k->tags);
	free(k->spki);
	memset(k, 0, sizeof(*k));
}

void
vlt_key_info_free_array(struct vlt_key_info *items, size_t n)
{
	size_t i;

	if (items == NULL)
		return;
	for (i = 0; i < n; i++)
		vlt_key_info_clear(&items[i]);
	free(items);
}

/* Copies a key info (deep) into out, or clears src when out is NULL. */
static int
key_info_give(struct vlt_key_info *src, struct vlt_key_info *out)
{
	if (out != NULL)
		*out = *src;   /* ownership moves */
	else
		vlt_key_info_clear(src);
	memset(src, 0, sizeof(*src));
	return 0;
}

/* ---- data directory ---------------------------------------------------- */

/* host:port of a URL; DEFAULT_LISTEN when none can be found. */
static int
listen_from_url(const char *url, char *dst, size_t cap)
{
	const char *p, *end, *at, *colon;
	size_t len;
	int n, https = 1;

	p = strstr(url, "://");
	if (p != NULL) {
		https = (size_t)(p - url) == 5 && strncasecmp(url, "https", 5) == 0;
		p += 3;
	} else {
		p = url;
	}
	end = p + strcspn(p, "/?#");
	for (at = p; at < end; at++)
		if (*at == '@')
			p = at + 1;
	len = (size_t)(end - p);
	if (len == 0 || len > 255)
		goto dflt;
	if (p[0] == '[') {
		const char *rb = memchr(p, ']', len);

		if (rb == NULL)
			goto dflt;
		colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(p, ':', len);
	}
	if (colon != NULL && colon + 1 < end)
		n = snprintf(dst, cap, "%.*s", (int)len, p);
	else
		n = snprintf(dst, cap, "%.*s:%s",
		    (int)(colon != NULL ? (size_t)(colon - p) : len), p,
		    https ? "443" : "80");
	if (n < 0 || (size_t)n >= cap)
		goto dflt;
	return 0;
dflt:
	n = snprintf(dst, cap, "%s", DEFAULT_LISTEN);
	return n < 0 || (size_t)n >= cap ? VLT_ERR_INTERNAL : 0;
}

/*
 * The one-time upgrade of a store made before blobs were bound: every
 * format-1 blob, of live and deleted keys, is bound to the row it is in,
 * in one store transaction (the token work first: never under the store
 * lock), then DIR/blobs-bound records that it is done.
 *
 * This is trust on first use: whatever row a format-1 blob sits in at
 * that first open is what it is bound to from then on. It must happen
 * only once: a bound blob with its tag cut off and its version byte set
 * back to 1 is a well-formed format-1 blob (the wrapped bytes are the
 * same), so a store writer could plant key A's blob, so stripped, in key
 * B's row, and an upgrade at every open would bind it to B. Once the
 * file exists, format-1 blobs are never bound here again; they are
 * refused at use (and by backup). An operator who puts back a vault.db
 * from before the upgrade removes the file to run it again. A blob the
 * domain key does not open is left as it is (it never worked).
 */
#define BLOBS_BOUND_FILE "blobs-bound"
#define BLOBS_BOUND_TEXT "2\n"
/*
 * Then the upgrade to format 3 (sealed under the token's private seal
 * key): every format-2 blob, whose MAC verifies against its row, and the
 * format-1 blobs of the first upgrade above, are re-wrapped; DIR/
 * blobs-sealed records that it is done.
 */
#define BLOBS_SEALED_FILE "blobs-sealed"
#define BLOBS_SEALED_TEXT "3\n"
#define UPGRADE_PAGE 256

static int
upgrade_blobs(vault_t *v, const char *dir)
{
	char path[PATH_MAX], bind[BIND_MAX];
	struct store_blob *page = NULL, *todo = NULL, *tmp;
	size_t n = 0, i, ntodo = 0, cap = 0, replaced = 0;
	int64_t after = 0;
	int r, bound;

	if ((r = fs_join(path, sizeof(path), dir, BLOBS_SEALED_FILE)) != 0)
		return r;
	if (fs_exists(path))
		return 0;
	if ((r = fs_join(path, sizeof(path), dir, BLOBS_BOUND_FILE)) != 0)
		return r;
	bound = fs_exists(path);
	do {
		if ((r = store_blob_scan(v->store, after, UPGRADE_PAGE, &page,
		    &n)) != 0)
			goto out;
		for (i = 0; i < n; i++) {
			struct store_blob *b = &page[i];

			after = b->seq;
			if (!hsm_blob_is_legacy(b->blob, b->blob_len) ||
			    (bound && hsm_blob_is_unbound(b->blob,
			    b->blob_len)) ||
			    blob_bind(bind, b->name, b->version) != 0)
				continue;
			r = hsm_blob_upgrade(v->hsm, bind, b->blob,
			    b->blob_len, &b->bound, &b->bound_len);
			if (r == HSM_ERR_UNAVAILABLE ||
			    r == HSM_ERR_NO_MEMORY) {
				r = map_hsm(r);
				goto out;
			}
			if (r != 0)
				continue;
			if (ntodo == cap) {
				cap = cap ? cap * 2 : 64;
				if ((tmp = reallocarray(todo, cap,
				    sizeof(*todo))) == NULL) {
					r = VLT_ERR_NO_MEMORY;
					goto out;
				}
				todo = tmp;
			}
			todo[ntodo++] = *b;   /* ownership moves */
			b->blob = b->bound = NULL;
		}
		store_blob_free_array(page, n);
		page = NULL;
	} while (n == UPGRADE_PAGE);
	r = 0;
	if (ntodo > 0 &&
	    (r = store_blob_replace(v->store, todo, ntodo, &replaced)) != 0)
		goto out;
	if (!bound && (r = fs_write_private(path, BLOBS_BOUND_TEXT,
	    sizeof(BLOBS_BOUND_TEXT) - 1)) != 0)
		goto out;
	if ((r = fs_join(path, sizeof(path), dir, BLOBS_SEALED_FILE)) != 0)
		goto out;
	r = fs_write_private(path, BLOBS_SEALED_TEXT,
	    sizeof(BLOBS_SEALED_TEXT) - 1);
out:
	store_blob_free_array(page, n);
	store_blob_free_array(todo, ntodo);
	return r;
}

int
vault_exists(const char *data_dir)
{
	char path[PATH_MAX];

	if (data_dir == NULL ||
	    fs_join(path, sizeof(path), data_dir, "p11vault.conf") != 0)
		return 0;
	return fs_exists(path);
}

int
vault_init(const struct vlt_init_params *p)
{
	char dir[PATH_MAX], path[PATH_MAX], hsmdir[PATH_MAX];
	char tokdir[PATH_MAX], shconf[PATH_MAX], modabs[PATH_MAX];
	char tenant[VLT_ID_LEN + 1], listen[300], *shtext = NULL;
	char *shares = NULL;
	struct hsm_init hi;
	const char *module, *label, *url;
	struct vlt_conf *conf = NULL;
	struct vlt_settings set = { 90, 0 };
	store_t *store = NULL;
	int r, n;

	if (p != NULL && p->shares_out != NULL)
		*p->shares_out = NULL;
	if (p == NULL || p->data_dir == NULL || p->data_dir[0] == '\0')
		return VLT_ERR_BAD_PARAM;
	url = p->vault_url != NULL ? p->vault_url : DEFAULT_URL;
	label = p->token_label != NULL ? p->token_label : DEFAULT_LABEL;

	/* Refuse, changing nothing, if DIR holds a vault (or the remains of
	 * one: a store without a config). */
	if ((r = fs_join(path, sizeof(path), p->data_dir, "p11vault.conf")) != 0)
		goto out;
	if (fs_exists(path)) {
		r = VLT_ERR_EXISTS;
		goto out;
	}
	if ((r = fs_join(path, sizeof(path), p->data_dir, "vault.db")) != 0)
		goto out;
	if (fs_exists(path)) {
		r = VLT_ERR_EXISTS;
		goto out;
	}

	umask(077);
	if ((r = fs_mkdir_private(p->data_dir)) != 0)
		goto out;
	if (realpath(p->data_dir, dir) == NULL) {
		r = VLT_ERR_IO;
		goto out;
	}

	if (p->module_path == NULL) {
		module = SOFTHSM_MODULE;
		if ((r = fs_join(tokdir, sizeof(tokdir), dir, "tokens")) != 0 ||
		    (r = fs_join(shconf, sizeof(shconf), dir,
		    "softhsm2.conf")) != 0)
			goto out;
		if ((r = fs_mkdir_private(tokdir)) != 0)
			goto out;
		n = asprintf(&shtext, "directories.tokendir = %s\n"
		    "objectstore.backend = file\nlog.level = ERROR\n"
		    "slots.removable = false\n", tokdir);
		if (n < 0) {
			shtext = NULL;
			r = VLT_ERR_NO_MEMORY;
			goto out;
		}
		if ((r = fs_write_private(shconf, shtext, (size_t)n)) != 0)
			goto out;
		if (setenv("SOFTHSM2_CONF", shconf, 1) != 0) {
			r = VLT_ERR_INTERNAL;
			goto out;
		}
	} else {
		module = p->module_path;
		if (realpath(module, modabs) != NULL)
			module = modabs;
		shconf[0] = '\0';
	}

	if ((r = fs_join(hsmdir, sizeof(hsmdir), dir, "hsm")) != 0 ||
	    (r = fs_mkdir_private(hsmdir)) != 0)
		goto out;
	memset(&hi, 0, sizeof(hi));
	hi.module_path = module;
	hi.module_allow = p->module_allow;
	hi.token_label = label;
	hi.hsm_dir = hsmdir;
	hi.shares = p->key_shares;
	hi.threshold = p->key_threshold;
	hi.auto_method = p->auto_unseal != NULL ? p->auto_unseal :
	    "systemd-creds:host";
	r = hsm_token_init(&hi, &shares);
	if (r != 0) {
		r = r == HSM_ERR_EXISTS ? VLT_ERR_EXISTS : map_hsm(r);
		goto out;
	}

	if ((r = fs_join(path, sizeof(path), dir, "vault.db")) != 0 ||
	    (r = store_open(path, 1, &store)) != 0 ||
	    (r = store_settings_init(store, &set)) != 0)
		goto out;
	/* a new store holds no unbound blob: nothing ever to upgrade */
	if ((r = fs_join(path, sizeof(path), dir, BLOBS_BOUND_FILE)) != 0 ||
	    (r = fs_write_private(path, BLOBS_BOUND_TEXT,
	    sizeof(BLOBS_BOUND_TEXT) - 1)) != 0 ||
	    (r = fs_join(path, sizeof(path), dir, BLOBS_SEALED_FILE)) != 0 ||
	    (r = fs_write_private(path, BLOBS_SEALED_TEXT,
	    sizeof(BLOBS_SEALED_TEXT) - 1)) != 0)
		goto out;

	if (p->tenant_id != NULL) {
		n = snprintf(tenant, sizeof(tenant), "%s", p->tenant_id);
		if (n < 0 || (size_t)n >= sizeof(tenant)) {
			r = VLT_ERR_BAD_PARAM;
			goto out;
		}
	} else if ((r = random_uuid(tenant)) != 0) {
		goto out;
	}
	if ((r = listen_from_url(url, listen, sizeof(listen))) != 0)
		goto out;
	if ((conf = conf_new()) == NULL) {
		r = VLT_ERR_NO_MEMORY;
		goto out;
	}
	if ((r = conf_set(conf, "vault_url", url)) != 0 ||
	    (r = conf_set(conf, "tenant_id", tenant)) != 0 ||
	    (r = conf_set(conf, "resource", "https://vault.azure.net")) != 0 ||
	    (r = conf_set(conf, "listen", listen)) != 0 ||
	    (r = conf_set(conf, "module", module)) != 0 ||
	    (r = conf_set(conf, "token_label", label)) != 0 ||
	    (shconf[0] != '\0' &&
	    (r = conf_set(conf, "softhsm_conf", shconf)) != 0) ||
	    (r = conf_set(conf, "token_lifetime", "3600")) != 0)
		goto out;
	/* Last: from here on DIR holds a vault. */
	if ((r = fs_join(path, sizeof(path), dir, "p11vault.conf")) != 0)
		goto out;
	if ((r = conf_write_new(conf, path)) == 0 && p->shares_out != NULL) {
		*p->shares_out = shares;
		shares = NULL;
	}
out:
	if (shares != NULL) {
		OPENSSL_cleanse(shares, strlen(shares));
		free(shares);
	}
	free(shtext);
	store_close(store);
	conf_free(conf);
	return r;
}

int
vault_open(const char *data_dir, const struct vlt_open_opts *o,
    vault_t **out)
{
	size_t pool_size = o != NULL ? o->pool_size : 0;
	char path[PATH_MAX], dir[PATH_MAX], hsm_dir[PATH_MAX];
	struct hsm_config hc;
	struct hsm_seal_status st;
	const char *shconf;
	vault_t *v = NULL;
	long ncpu;
	unsigned long long audit_max;
	int r;

	if (out == NULL || data_dir == NULL)
		return VLT_ERR_BAD_PARAM;
	*out = NULL;
	umask(077);
	if (realpath(data_dir, dir) == NULL)
		return errno == ENOENT ? VLT_ERR_NOT_FOUND : VLT_ERR_IO;
	if ((v = calloc(1, sizeof(*v))) == NULL)
		return VLT_ERR_NO_MEMORY;
	if (pthread_mutex_init(&v->clock_lock, NULL) != 0) {
		free(v);
		return VLT_ERR_INTERNAL;
	}
	if ((v->data_dir = strdup(dir)) == NULL) {
		r = VLT_ERR_NO_MEMORY;
		goto out;
	}
	if ((r = fs_join(path, sizeof(path), dir, "p11vault.conf")) != 0 ||
	    (r = conf_read(path, &v->conf)) != 0)
		goto out;
	if (conf_get(v->conf, "module") == NULL ||
	    conf_get(v->conf, "token_label") == NULL) {
		r = VLT_ERR_IO;
		goto out;
	}
	shconf = conf_get(v->conf, "softhsm_conf");
	if (shconf != NULL && setenv("SOFTHSM2_CONF", shconf, 1) != 0) {
		r = VLT_ERR_INTERNAL;
		goto out;
	}
	/* the token process unseals; this process never sees a PIN */
	if ((r = fs_join(hsm_dir, sizeof(hsm_dir), dir, "hsm")) != 0)
		goto out;
	if (pool_size == 0) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		pool_size = ncpu > 0 ? (size_t)ncpu * 2 : 4;
		if (pool_size < 4)
			pool_size = 4;
	}
	memset(&hc, 0, sizeof(hc));
	hc.module_path = conf_get(v->conf, "module");
	hc.token_label = conf_get(v->conf, "token_label");
	hc.hsm_dir = hsm_dir;
	hc.module_allow = o != NULL ? o->module_allow : NULL;
	hc.run_as = o != NULL ? o->token_user : NULL;
	hc.pool_size = pool_size;
	if ((r = hsm_open(&hc, &v->hsm)) != 0) {
		r = map_hsm(r);
		goto out;
	}
	if ((r = fs_join(path, sizeof(path), dir, "vault.db")) != 0 ||
	    (r = store_open(path, 0, &v->store)) != 0)
		goto out;
	/* a sealed vault upgrades its blobs when it is unsealed */
	if (hsm_seal_status(v->hsm, &st) == HSM_OK && !st.sealed &&
	    (r = upgrade_blobs(v, dir)) != 0)
		goto out;
	{
		/* audit_max_bytes=N in p11vault.conf: rotate the audit log
		 * beyond N bytes (default 64 MiB) */
		const char *amb = conf_get(v->conf, "audit_max_bytes");
		audit_max = amb ? strtoull(amb, NULL, 10) : 0;
	}
	if ((r = vlt_audit_open(dir, (size_t)audit_max, &v->audit)) != 0)
		goto out;
	*out = v;
	v = NULL;
	r = 0;
out:
	vault_close(v);
	return r;
}

void
vault_close(vault_t *v)
{
	if (v == NULL)
		return;
	vlt_audit_close(v->audit);
	store_close(v->store);
	hsm_close(v->hsm);
	conf_free(v->conf);
	free(v->data_dir);
	free(v->clock_file);
	pthread_mutex_destroy(&v->clock_lock);
	free(v);
}

const char *
vault_config(vault_t *v, const char *key)
{
	if (v == NULL || key == NULL)
		return NULL;
	return conf_get(v->conf, key);
}

const char *
vault_data_dir(vault_t *v)
{
	return v == NULL ? NULL : v->data_dir;
}

void
vault_set_test_clock(vault_t *v, const char *offset_file)
{
	char *dup = offset_file != NULL ? strdup(offset_file) : NULL;

	pthread_mutex_lock(&v->clock_lock);
	free(v->clock_file);
	v->clock_file = dup;
	pthread_mutex_unlock(&v->clock_lock);
}

int64_t
vault_now(vault_t *v)
{
	char buf[CLOCK_FILE_MAX], *end;
	int64_t now = (int64_t)time(NULL);
	long long off;
	size_t len;

	if (v == NULL)
		return now;
	pthread_mutex_lock(&v->clock_lock);
	if (v->clock_file != NULL &&
	    fs_read_small(v->clock_file, buf, sizeof(buf), &len) == 0) {
		errno = 0;
		off = strtoll(buf, &end, 10);
		while (*end == ' ' || *end == '\t' || *end == '\n')
			end++;
		if (errno == 0 && end != buf && *end == '\0' &&
		    off > -(1LL << 40) && off < (1LL << 40))
			now += off;
	}
	pthread_mutex_unlock(&v->clock_lock);
	return now;
}

/* ---- vault settings ---------------------------------------------------- */

int
vault_settings_get(vault_t *v, struct vlt_settings *out)
{
	if (v == NULL || out == NULL)
		return VLT_ERR_BAD_PARAM;
	return store_settings_get(v->store, out);
}

int
vault_settings_update(vault_t *v, int retention_days, int purge_protection)
{
	if (v == NULL)
		return VLT_ERR_BAD_PARAM;
	if (retention_days >= 0 && (retention_days < 7 || retention_days > 90))
		return VLT_ERR_BAD_PARAM;
	if (purge_protection < -1 || purge_protection > 1)
		return VLT_ERR_BAD_PARAM;
	return store_settings_update(v->store, retention_days,
	    purge_protection);
}

const char *
vault_recovery_level(const struct vlt_settings *s)
{
	if (s->retention_days == 90)
		return s->purge_protection ? "Recoverable" :
		    "Recoverable+Purgeable";
	return s->purge_protection ? "CustomizedRecoverable" :
	    "CustomizedRecoverable+Purgeable";
}

/* ---- keys -------------------------------------------------------------- */

int
vault_key_create(vault_t *v, const char *name,
    const struct vlt_create_req *req, struct vlt_key_info *out)
{
	struct vlt_key_info k, probe;
	char bind[BIND_MAX];
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	unsigned bits = 0, ops;
	int r, nid = 0;
	int64_t now;

	memset(&k, 0, sizeof(k));
	memset(&probe, 0, sizeof(probe));
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || req == NULL || !name_ok(name))
		return VLT_ERR_BAD_PARAM;
	switch (req->kty) {
	case VLT_KTY_RSA:
		bits = req->key_size == 0 ? 2048 : req->key_size;
		if ((bits != 2048 && bits != 3072 && bits != 4096) ||
		    req->crv != VLT_CRV_NONE)
			return VLT_ERR_BAD_PARAM;
		ops = req->key_ops == 0 ? OPS_RSA_DEFAULT : req->key_ops;
		break;
	case VLT_KTY_EC:
		if ((nid = curve_nid(req->crv)) == 0)
			return VLT_ERR_BAD_PARAM;
		ops = req->key_ops == 0 ? OPS_EC : req->key_ops;
		break;
	default:
		return VLT_ERR_BAD_PARAM;
	}
	if ((r = check_ops(req->kty, ops)) != 0)
		return r;

	/* A deleted name fails before the slow generation; the insert
	 * checks again inside its transaction. */
	r = store_version_get(v->store, name, NULL, 1, &probe, NULL, NULL);
	vlt_key_info_clear(&probe);
	if (r == 0)
		return VLT_ERR_DELETED_RECOVERABLE;
	if (r != VLT_ERR_NOT_FOUND)
		return r;

	if ((r = new_version(name, k.version, bind)) != 0)
		goto out;
	r = hsm_key_generate(v->hsm, bind, req->kty == VLT_KTY_RSA ?
	    HSM_KTY_RSA : HSM_KTY_EC, bits, nid, &blob, &blob_len, &k.spki,
	    &k.spki_len);
	if (r != 0) {
		r = map_hsm(r);
		goto out;
	}
	snprintf(k.name, sizeof(k.name), "%s", name);
	k.kty = req->kty;
	k.hsm = req->hsm ? 1 : 0;
	k.key_size = bits;
	k.crv = req->kty == VLT_KTY_EC ? req->crv : VLT_CRV_NONE;
	k.key_ops = ops;
	k.attrs.enabled = req->enabled ? 1 : 0;
	k.attrs.nbf = req->nbf;
	k.attrs.exp = req->exp;
	now = vault_now(v);
	k.attrs.created = now;
	k.attrs.updated = now;
	if (req->tags != NULL && (k.tags = strdup(req->tags)) == NULL) {
		r = VLT_ERR_NO_MEMORY;
		goto out;
	}
	r = store_version_insert(v->store, &k, blob, blob_len);
	if (r == VLT_ERR_CONFLICT)   /* a version id collision: new_version */
		r = VLT_ERR_INTERNAL;
	if (r != 0)
		goto out;
	/* The stored name (names compare case-insensitively). */
	r = store_version_get(v->store, name, k.version, 0, &probe, NULL, NULL);
	if (r == 0)
		key_info_give(&probe, out);
out:
	vlt_key_info_clear(&k);
	vlt_key_info_clear(&probe);
	if (blob != NULL) {
		OPENSSL_cleanse(blob, blob_len);
		free(blob);
	}
	return r;
}

int
vault_key_get(vault_t *v, const char *name, const char *version,
    struct vlt_key_info *out)
{
	const char *ver;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || out == NULL || !name_ok(name))
		return VLT_ERR_BAD_PARAM;
	if ((r = version_arg(version, &ver)) != 0)
		return r;
	return store_version_get(v->store, name, ver, 0, out, NULL, NULL);
}

int
vault_key_update(vault_t *v, const char *name, const char *version,
    const struct vlt_update_req *req, struct vlt_key_info *out)
{
	struct vlt_key_info tmp;
	struct store_update u;
	const char *ver;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || req == NULL || !name_ok(name))
		return VLT_ERR_BAD_PARAM;
	if ((r = version_arg(version, &ver)) != 0)
		return r;
	if (req->has_key_ops && (req->key_ops & ~(unsigned)OPS_ALL) != 0)
		return VLT_ERR_BAD_PARAM;
	memset(&u, 0, sizeof(u));
	u.has_key_ops = req->has_key_ops;
	u.key_ops = req->key_ops;
	u.has_enabled = req->has_enabled;
	u.enabled = req->enabled;
	u.has_nbf = req->has_nbf;
	u.nbf = req->nbf;
	u.has_exp = req->has_exp;
	u.exp = req->exp;
	u.tags = req->tags;
	u.updated = vault_now(v);
	r = store_version_update(v->store, name, ver, &u, check_ops, &tmp);
	if (r == 0)
		key_info_give(&tmp, out);
	return r;
}

/* Continuation tokens: a type letter and the keyset position (a key name,
 * or a version's seq in decimal). Opaque to callers; URL-safe. */
static int
cont_parse_name(const char *cont, char type, const char **after)
{
	*after = NULL;
	if (cont == NULL || cont[0] == '\0')
		return 0;
	if (cont[0] != type || !name_ok(cont + 1))
		return VLT_ERR_BAD_PARAM;
	*after = cont + 1;
	return 0;
}

static int
cont_make(char type, const char *pos, char **next)
{
	if (asprintf(next, "%c%s", type, pos) < 0) {
		*next = NULL;
		return VLT_ERR_NO_MEMORY;
	}
	return 0;
}

static int
list_keys(vault_t *v, int deleted, const char *cont, size_t max,
    struct vlt_key_info **items, size_t *n, char **next_cont)
{
	char type = deleted ? 'D' : 'K';
	const char *after;
	int r, more = 0;

	if (items != NULL)
		*items = NULL;
	if (n != NULL)
		*n = 0;
	if (next_cont != NULL)
		*next_cont = NULL;
	if (v == NULL || items == NULL || n == NULL || next_cont == NULL ||
	    max < 1 || max > VLT_MAX_RESULTS)
		return VLT_ERR_BAD_PARAM;
	if ((r = cont_parse_name(cont, type, &after)) != 0)
		return r;
	r = store_key_list(v->store, deleted, after, max, items, n, &more);
	if (r != 0)
		return r;
	if (more && *n > 0 &&
	    (r = cont_make(type, (*items)[*n - 1].name, next_cont)) != 0) {
		vlt_key_info_free_array(*items, *n);
		*items = NULL;
		*n = 0;
	}
	return r;
}

int
vault_key_list(vault_t *v, const char *cont, size_t max,
    struct vlt_key_info **items, size_t *n, char **next_cont)
{
	return list_keys(v, 0, cont, max, items, n, next_cont);
}

int
vault_deleted_list(vault_t *v, const char *cont, size_t max,
    struct vlt_key_info **items, size_t *n, char **next_cont)
{
	return list_keys(v, 1, cont, max, items, n, next_cont);
}

int
vault_key_versions(vault_t *v, const char *name, const char *cont,
    size_t max, struct vlt_key_info **items, size_t *n, char **next_cont)
{
	char pos[32];
	int64_t after = 0, last = 0;
	size_t i;
	int r, more = 0;

	if (items != NULL)
		*items = NULL;
	if (n != NULL)
		*n = 0;
	if (next_cont != NULL)
		*next_cont = NULL;
	if (v == NULL || items == NULL || n == NULL || next_cont == NULL ||
	    max < 1 || max > VLT_MAX_RESULTS || !name_ok(name))
		return VLT_ERR_BAD_PARAM;
	if (cont != NULL && cont[0] != '\0') {
		if (cont[0] != 'V' || cont[1] == '\0' || strlen(cont) > 19)
			return VLT_ERR_BAD_PARAM;
		for (i = 1; cont[i] != '\0'; i++) {
			if (cont[i] < '0' || cont[i] > '9')
				return VLT_ERR_BAD_PARAM;
			after = after * 10 + (cont[i] - '0');
		}
	}
	r = store_version_list(v->store, name, after, max, items, n, &last,
	    &more);
	if (r != 0)
		return r;
	if (more && *n > 0) {
		snprintf(pos, sizeof(pos), "%lld", (long long)last);
		if ((r = cont_make('V', pos, next_cont)) != 0) {
			vlt_key_info_free_array(*items, *n);
			*items = NULL;
			*n = 0;
		}
	}
	return r;
}

/* Deletes (deleting) or recovers a key; out (optional) gets it as it now
 * is. */
static int
delete_or_recover(vault_t *v, const char *name, int deleting,
    struct vlt_key_info *out)
{
	struct vlt_key_info tmp;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || !name_ok(name))
		return VLT_ERR_BAD_PARAM;
	if (deleting)
		r = store_key_delete(v->store, name, vault_now(v), &tmp);
	else
		r = store_key_recover(v->store, name, &tmp);
	if (r == 0)
		key_info_give(&tmp, out);
	return r;
}

int
vault_key_delete(vault_t *v, const char *name, struct vlt_key_info *out)
{
	return delete_or_recover(v, name, 1, out);
}

int
vault_deleted_get(vault_t *v, const char *name, struct vlt_key_info *out)
{
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || out == NULL || !name_ok(name))
		return VLT_ERR_BAD_PARAM;
	return store_version_get(v->store, name, NULL, 1, out, NULL, NULL);
}

int
vault_key_recover(vault_t *v, const char *name, struct vlt_key_info *out)
{
	return delete_or_recover(v, name, 0, out);
}

/* Purges one key; due_before as store_key_purge. */
static int
purge_one(vault_t *v, const char *name, int64_t due_before)
{
	char (*ids)[VLT_VERSION_LEN + 1] = NULL;
	char bind[BIND_MAX];
	size_t n = 0, i;
	int r;

	r = store_key_purge(v->store, name, due_before, &ids, &n);
	if (r != 0)
		return r;
	/* The blobs are gone from the store; drop the unwrapped handles. */
	for (i = 0; i < n; i++)
		if (blob_bind(bind, name, ids[i]) == 0)
			hsm_key_forget(v->hsm, bind);
	free(ids);
	return 0;
}

int
vault_key_purge(vault_t *v, const char *name)
{
	if (v == NULL || !name_ok(name))
		return VLT_ERR_BAD_PARAM;
	return purge_one(v, name, 0);
}

int
vault_purge_due(vault_t *v)
{
	char (*names)[VLT_NAME_MAX + 1] = NULL;
	size_t n = 0, i;
	int64_t now;
	int r, count = 0, err = 0;

	if (v == NULL)
		return VLT_ERR_BAD_PARAM;
	now = vault_now(v);
	if ((r = store_purge_due_list(v->store, now, &names, &n)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		r = purge_one(v, names[i], now);
		if (r == 0)
			count++;
		else if (r != VLT_ERR_NOT_FOUND && err == 0)
			err = r;   /* recovered meanwhile: NOT_FOUND, fine */
	}
	free(names);
	return err != 0 ? err : count;
}

/*
 * The version a crypto operation runs on, after the checks in the order
 * the API reports them: enabled, nbf, exp, then the operation in key_ops.
 */
static int
key_for_op(vault_t *v, const char *name, const char *version, unsigned op,
    int need_blob, struct vlt_key_info *k, uint8_t **blob, size_t *blob_len)
{
	const char *ver;
	int64_t now;
	int r;

	memset(k, 0, sizeof(*k));
	if (blob != NULL)
		*blob = NULL;
	if (!name_ok(name))
		return VLT_ERR_BAD_PARAM;
	if ((r = version_arg(version, &ver)) != 0)
		return r;
	r = store_version_get(v->store, name, ver, 0, k,
	    need_blob ? blob : NULL, need_blob ? blob_len : NULL);
	if (r != 0)
		return r;
	now = vault_now(v);
	if (!k->attrs.enabled)
		r = VLT_ERR_KEY_DISABLED;
	else if (k->attrs.nbf != 0 && k->attrs.nbf > now)
		r = VLT_ERR_KEY_NOT_YET_VALID;
	else if (k->attrs.exp != 0 && k->attrs.exp <= now)
		r = VLT_ERR_KEY_EXPIRED;
	else if ((k->key_ops & op) == 0)
		r = VLT_ERR_OP_NOT_PERMITTED;
	if (r != 0) {
		vlt_key_info_clear(k);
		if (blob != NULL && *blob != NULL) {
			free(*blob);
			*blob = NULL;
		}
	}
	return r;
}

static void
kid_out(char *kid_version, const struct vlt_key_info *k)
{
	if (kid_version != NULL)
		snprintf(kid_version, VLT_VERSION_LEN + 1, "%s", k->version);
}

/* key_for_op for a crypto operation whose key must also suit alg: RSA for
 * an encryption algorithm, sig_alg_fits for a signature one. */
static int
key_for_alg(vault_t *v, const char *name, const char *version, unsigned op,
    enum vlt_alg alg, struct vlt_key_info *k, uint8_t **blob,
    size_t *blob_len)
{
	int r;

	r = key_for_op(v, name, version, op, blob != NULL, k, blob, blob_len);
	if (r != 0)
		return r;
	if (alg_is_sig(alg) ? sig_alg_fits(alg, k) : k->kty == VLT_KTY_RSA)
		return 0;
	vlt_key_info_clear(k);
	if (blob != NULL) {
		free(*blob);
		*blob = NULL;
	}
	return VLT_ERR_BAD_PARAM;
}

/* Ends a crypto operation: r, with the key's version in kid_version if
 * it succeeded; frees the key and blob. */
static int
op_end(int r, char *kid_version, struct vlt_key_info *k, uint8_t *blob)
{
	if (r == 0)
		kid_out(kid_version, k);
	vlt_key_info_clear(k);
	free(blob);
	return r;
}

int
vault_key_encrypt(vault_t *v, const char *name, const char *version,
    unsigned op, enum vlt_alg alg, const uint8_t *in, size_t in_len,
    uint8_t *out, size_t *out_len, char kid_version[VLT_VERSION_LEN + 1])
{
	struct vlt_key_info k;
	enum hsm_alg ha;
	int r;

	if (v == NULL || in == NULL || out == NULL || out_len == NULL ||
	    (op != VLT_OP_ENCRYPT && op != VLT_OP_WRAP) || !alg_is_enc(alg) ||
	    map_alg(alg, &ha) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = key_for_alg(v, name, version, op, alg, &k, NULL, NULL)) != 0)
		return r;
	r = map_hsm(hsm_pub_encrypt(k.spki, k.spki_len, ha, in, in_len, out,
	    out_len));
	return op_end(r, kid_version, &k, NULL);
}

int
vault_key_decrypt(vault_t *v, const char *name, const char *version,
    unsigned op, enum vlt_alg alg, const uint8_t *in, size_t in_len,
    uint8_t *out, size_t *out_len, char kid_version[VLT_VERSION_LEN + 1])
{
	struct vlt_key_info k;
	char bind[BIND_MAX];
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	enum hsm_alg ha;
	int r;

	if (v == NULL || in == NULL || out == NULL || out_len == NULL ||
	    (op != VLT_OP_DECRYPT && op != VLT_OP_UNWRAP) || !alg_is_enc(alg) ||
	    map_alg(alg, &ha) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = key_for_alg(v, name, version, op, alg, &k, &blob,
	    &blob_len)) != 0)
		return r;
	if ((r = blob_bind(bind, k.name, k.version)) == 0)
		r = map_hsm(hsm_key_decrypt(v->hsm, bind, blob, blob_len, ha,
		    in, in_len, out, out_len));
	return op_end(r, kid_version, &k, blob);
}

int
vault_key_sign(vault_t *v, const char *name, const char *version,
    enum vlt_alg alg, const uint8_t *digest, size_t dlen, uint8_t *sig,
    size_t *sig_len, char kid_version[VLT_VERSION_LEN + 1])
{
	struct vlt_key_info k;
	char bind[BIND_MAX];
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	enum hsm_alg ha;
	int r;

	if (v == NULL || digest == NULL || sig == NULL || sig_len == NULL ||
	    !alg_is_sig(alg) || map_alg(alg, &ha) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = key_for_alg(v, name, version, VLT_OP_SIGN, alg, &k, &blob,
	    &blob_len)) != 0)
		return r;
	if ((r = blob_bind(bind, k.name, k.version)) == 0)
		r = map_hsm(hsm_key_sign(v->hsm, bind, blob, blob_len, ha,
		    digest, dlen, sig, sig_len));
	return op_end(r, kid_version, &k, blob);
}

int
vault_key_verify(vault_t *v, const char *name, const char *version,
    enum vlt_alg alg, const uint8_t *digest, size_t dlen,
    const uint8_t *sig, size_t sig_len, int *valid,
    char kid_version[VLT_VERSION_LEN + 1])
{
	struct vlt_key_info k;
	enum hsm_alg ha;
	int r;

	if (valid != NULL)
		*valid = 0;
	if (v == NULL || digest == NULL || sig == NULL || valid == NULL ||
	    !alg_is_sig(alg) || map_alg(alg, &ha) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = key_for_alg(v, name, version, VLT_OP_VERIFY, alg, &k, NULL,
	    NULL)) != 0)
		return r;
	r = map_hsm(hsm_pub_verify(k.spki, k.spki_len, ha, digest, dlen, sig,
	    sig_len, valid));
	return op_end(r, kid_version, &k, NULL);
}

/* ---- principals and access policies ------------------------------------ */

static int
field_ok(const char *s, size_t cap)
{
	size_t len = strnlen(s, cap);

	return len > 0 && len < cap;
}

/* An object id as the delete calls take it: 1 to VLT_ID_LEN chars. */
static int
object_id_ok(const char *object_id)
{
	return object_id != NULL && object_id[0] != '\0' &&
	    strlen(object_id) <= VLT_ID_LEN;
}

int
vault_principal_put(vault_t *v, const struct vlt_principal *p)
{
	if (v == NULL || p == NULL ||
	    !field_ok(p->object_id, sizeof(p->object_id)) ||
	    !field_ok(p->client_id, sizeof(p->client_id)) ||
	    strnlen(p->display_name, sizeof(p->display_name)) ==
	    sizeof(p->display_name))
		return VLT_ERR_BAD_PARAM;
	return store_principal_put(v->store, p);
}

int
vault_principal_delete(vault_t *v, const char *object_id)
{
	if (v == NULL || !object_id_ok(object_id))
		return VLT_ERR_BAD_PARAM;
	return store_principal_delete(v->store, object_id);
}

int
vault_principal_list(vault_t *v, struct vlt_principal **items, size_t *n)
{
	if (v == NULL || items == NULL || n == NULL)
		return VLT_ERR_BAD_PARAM;
	return store_principal_list(v->store, items, n);
}

void
vlt_principal_free_array(struct vlt_principal *items, size_t n)
{
	size_t i;

	if (items == NULL)
		return;
	for (i = 0; i < n; i++) {
		if (items[i].secret_hash != NULL) {
			OPENSSL_cleanse(items[i].secret_hash,
			    strlen(items[i].secret_hash));
			free(items[i].secret_hash);
		}
	}
	free(items);
}

int
vault_access_put(vault_t *v, const struct vlt_access_policy *a)
{
	if (v == NULL || a == NULL ||
	    !field_ok(a->object_id, sizeof(a->object_id)) ||
	    !field_ok(a->tenant_id, sizeof(a->tenant_id)))
		return VLT_ERR_BAD_PARAM;
	return store_access_put(v->store, a);
}

int
vault_access_delete(vault_t *v, const char *object_id)
{
	if (v == NULL || !object_id_ok(object_id))
		return VLT_ERR_BAD_PARAM;
	return store_access_delete(v->store, object_id);
}

int
vault_access_apply(vault_t *v, const struct vlt_access_policy *items,
    size_t n)
{
	size_t i;

	if (v == NULL || (items == NULL && n > 0))
		return VLT_ERR_BAD_PARAM;
	for (i = 0; i < n; i++)
		if (!object_id_ok(items[i].object_id) ||
		    (items[i].perms != 0 &&
		    !field_ok(items[i].tenant_id, sizeof(items[i].tenant_id))))
			return VLT_ERR_BAD_PARAM;
	return store_access_apply(v->store, items, n);
}

int
vault_retention_check(long long days)
{
	return days >= 7 && days <= 90 ? VLT_OK : VLT_ERR_BAD_PARAM;
}

int
vault_name_check(const char *name)
{
	return name_ok(name) ? VLT_OK : VLT_ERR_BAD_PARAM;
}

int
vault_access_list(vault_t *v, struct vlt_access_policy **items, size_t *n)
{
	if (v == NULL || items == NULL || n == NULL)
		return VLT_ERR_BAD_PARAM;
	return store_access_list(v->store, items, n);
}

/* ---- audit ------------------------------------------------------------ */

int
vault_audit_append(vault_t *v, const char *object_json, int sync)
{
	if (v == NULL || object_json == NULL)
		return VLT_ERR_BAD_PARAM;
	return vlt_audit_append(v->audit, object_json, sync);
}

/* ---- token signing, health --------------------------------------------- */

int
vault_jwt_sign(vault_t *v, const uint8_t *data, size_t len, uint8_t sig[64])
{
	if (v == NULL || data == NULL || sig == NULL)
		return VLT_ERR_BAD_PARAM;
	return map_hsm(hsm_jwt_sign(v->hsm, data, len, sig));
}

int
vault_jwt_public(vault_t *v, uint8_t **spki, size_t *len)
{
	if (v == NULL || spki == NULL || len == NULL)
		return VLT_ERR_BAD_PARAM;
	return map_hsm(hsm_jwt_public(v->hsm, spki, len));
}

static void
seal_status_of(const struct hsm_seal_status *h, struct vlt_seal_status *st)
{
	st->sealed = h->sealed;
	st->threshold = h->threshold;
	st->shares = h->shares;
	st->progress = h->progress;
	st->plaintext_pins = h->plaintext_pins;
	st->result = h->result;
}

int
vault_seal_status(vault_t *v, struct vlt_seal_status *st)
{
	struct hsm_seal_status h;
	int r;

	if (v == NULL || st == NULL)
		return VLT_ERR_BAD_PARAM;
	memset(st, 0, sizeof(*st));
	if ((r = hsm_seal_status(v->hsm, &h)) != 0)
		return map_hsm(r);
	seal_status_of(&h, st);
	return 0;
}

int
vault_unseal(vault_t *v, const char *share, struct vlt_seal_status *st)
{
	struct hsm_seal_status h;
	int r, was_sealed;

	if (v == NULL || st == NULL)
		return VLT_ERR_BAD_PARAM;
	memset(st, 0, sizeof(*st));
	if ((r = hsm_seal_status(v->hsm, &h)) != 0)
		return map_hsm(r);
	was_sealed = h.sealed;
	if ((r = hsm_unseal_share(v->hsm, share, &h)) != 0)
		return r == HSM_ERR_ARGS ? VLT_ERR_CONFLICT : map_hsm(r);
	seal_status_of(&h, st);
	if (was_sealed && !h.sealed)
		return upgrade_blobs(v, v->data_dir);
	return 0;
}

int
vault_rekey(const char *data_dir, unsigned key_shares,
    unsigned key_threshold, const char *auto_unseal, const char *old_shares,
    const char *module_allow, char **shares_out)
{
	char path[PATH_MAX], dir[PATH_MAX], hsm_dir[PATH_MAX];
	struct vlt_conf *conf = NULL;
	struct hsm_init hi;
	const char *shconf;
	int r;

	*shares_out = NULL;
	if (data_dir == NULL || realpath(data_dir, dir) == NULL)
		return VLT_ERR_NOT_FOUND;
	if ((r = fs_join(path, sizeof(path), dir, "p11vault.conf")) != 0 ||
	    (r = conf_read(path, &conf)) != 0)
		return r;
	shconf = conf_get(conf, "softhsm_conf");
	if (shconf != NULL && setenv("SOFTHSM2_CONF", shconf, 1) != 0) {
		r = VLT_ERR_INTERNAL;
		goto out;
	}
	if ((r = fs_join(hsm_dir, sizeof(hsm_dir), dir, "hsm")) != 0)
		goto out;
	memset(&hi, 0, sizeof(hi));
	hi.module_path = conf_get(conf, "module");
	hi.token_label = conf_get(conf, "token_label");
	hi.module_allow = module_allow;
	hi.hsm_dir = hsm_dir;
	hi.shares = key_shares;
	hi.threshold = key_threshold;
	hi.auto_method = auto_unseal != NULL ? auto_unseal : "";
	r = map_hsm(hsm_rekey(&hi, old_shares, shares_out));
out:
	conf_free(conf);
	return r;
}

int
vault_health(vault_t *v)
{
	int r;

	if (v == NULL)
		return VLT_ERR_BAD_PARAM;
	if ((r = hsm_health(v->hsm)) != 0)
		return map_hsm(r);
	return store_ping(v->store);
}

/* ---- import, backup and restore, rotation -------------------------------- */

static int
crv_from_nid(int nid, enum vlt_curve *crv)
{
	switch (nid) {
	case NID_X9_62_prime256v1: *crv = VLT_CRV_P256; return 0;
	case NID_secp384r1: *crv = VLT_CRV_P384; return 0;
	case NID_secp521r1: *crv = VLT_CRV_P521; return 0;
	default: return VLT_ERR_BAD_PARAM;
	}
}

/* Stores an imported key (blob + k->spki) as the new version k->version
 * (new_version, drawn before the import) of name. */
static int
import_store(vault_t *v, const char *name, const struct vlt_import_req *req,
    const struct hsm_key_desc *d, struct vlt_key_info *k, const uint8_t *blob,
    size_t blob_len, struct vlt_key_info *out)
{
	struct vlt_key_info probe;
	int64_t now;
	int r;

	memset(&probe, 0, sizeof(probe));
	snprintf(k->name, sizeof(k->name), "%s", name);
	if (d->kty == HSM_KTY_RSA) {
		k->kty = VLT_KTY_RSA;
		k->key_size = d->rsa_bits;
		k->crv = VLT_CRV_NONE;
		k->key_ops = req->key_ops ? req->key_ops : OPS_RSA_DEFAULT;
	} else {
		k->kty = VLT_KTY_EC;
		if ((r = crv_from_nid(d->ec_nid, &k->crv)) != 0)
			return r;
		k->key_ops = req->key_ops ? req->key_ops : OPS_EC;
	}
	if ((r = check_ops(k->kty, k->key_ops)) != 0)
		return r;
	k->hsm = req->hsm ? 1 : 0;
	k->attrs.enabled = req->enabled ? 1 : 0;
	k->attrs.nbf = req->nbf;
	k->attrs.exp = req->exp;
	now = vault_now(v);
	k->attrs.created = now;
	k->attrs.updated = now;
	if (req->tags != NULL && (k->tags = strdup(req->tags)) == NULL)
		return VLT_ERR_NO_MEMORY;
	r = store_version_insert(v->store, k, blob, blob_len);
	if (r == VLT_ERR_CONFLICT)   /* a version id collision: new_version */
		r = VLT_ERR_INTERNAL;
	if (r != 0)
		return r;
	r = store_version_get(v->store, name, k->version, 0, &probe, NULL,
	    NULL);
	if (r == 0)
		key_info_give(&probe, out);
	vlt_key_info_clear(&probe);
	return r;
}

/* Refuses a deleted name before the token work. */
static int
import_precheck(vault_t *v, const char *name, const struct vlt_import_req *r)
{
	struct vlt_key_info probe;
	int rc;

	if (v == NULL || r == NULL || !name_ok(name))
		return VLT_ERR_BAD_PARAM;
	memset(&probe, 0, sizeof(probe));
	rc = store_version_get(v->store, name, NULL, 1, &probe, NULL, NULL);
	vlt_key_info_clear(&probe);
	if (rc == 0)
		return VLT_ERR_DELETED_RECOVERABLE;
	return rc == VLT_ERR_NOT_FOUND ? 0 : rc;
}

int
vault_key_import(vault_t *v, const char *name,
    const struct vlt_import_req *req, const uint8_t *pkcs8, size_t len,
    struct vlt_key_info *out)
{
	struct hsm_key_desc d;
	struct vlt_key_info k;
	char bind[BIND_MAX];
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	memset(&k, 0, sizeof(k));
	if (pkcs8 == NULL || len == 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = import_precheck(v, name, req)) != 0)
		return r;
	if ((r = new_version(name, k.version, bind)) != 0)
		return r;
	if ((r = hsm_key_import(v->hsm, bind, pkcs8, len, &d, &blob, &blob_len,
	    &k.spki, &k.spki_len)) != 0) {
		r = map_hsm(r);
		goto out;
	}
	r = import_store(v, name, req, &d, &k, blob, blob_len, out);
out:
	vlt_key_info_clear(&k);
	if (blob != NULL) {
		OPENSSL_cleanse(blob, blob_len);
		free(blob);
	}
	return r;
}

int
vault_key_import_byok(vault_t *v, const char *name,
    const struct vlt_import_req *req, const char *kek_name,
    const char *kek_version, const uint8_t *transfer, size_t len,
    struct vlt_key_info *out)
{
	struct hsm_key_desc d;
	struct vlt_key_info k, kek;
	char bind[BIND_MAX], kek_bind[BIND_MAX];
	uint8_t *blob = NULL, *kek_blob = NULL;
	size_t blob_len = 0, kek_len = 0;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	memset(&k, 0, sizeof(k));
	memset(&kek, 0, sizeof(kek));
	if (transfer == NULL || len == 0 || kek_name == NULL)
		return VLT_ERR_BAD_PARAM;
	if ((r = import_precheck(v, name, req)) != 0)
		return r;
	/* a KEK that is missing, disabled, expired or without import is
	 * the request's fault: 400, as Azure answers */
	r = key_for_op(v, kek_name, kek_version, VLT_OP_IMPORT, 1, &kek,
	    &kek_blob, &kek_len);
	if (r != 0) {
		r = r == VLT_ERR_UNAVAILABLE || r == VLT_ERR_NO_MEMORY ||
		    r == VLT_ERR_INTERNAL ? r : VLT_ERR_BAD_PARAM;
		goto out;
	}
	if (kek.kty != VLT_KTY_RSA) {
		r = VLT_ERR_BAD_PARAM;
		goto out;
	}
	if ((r = blob_bind(kek_bind, kek.name, kek.version)) != 0 ||
	    (r = new_version(name, k.version, bind)) != 0)
		goto out;
	if ((r = hsm_key_import_byok(v->hsm, bind, kek_bind, kek_blob,
	    kek_len, transfer, len, &d, &blob, &blob_len, &k.spki,
	    &k.spki_len)) != 0) {
		r = map_hsm(r);
		goto out;
	}
	r = import_store(v, name, req, &d, &k, blob, blob_len, out);
out:
	vlt_key_info_clear(&k);
	vlt_key_info_clear(&kek);
	free(kek_blob);
	if (blob != NULL) {
		OPENSSL_cleanse(blob, blob_len);
		free(blob);
	}
	return r;
}

/*
 * Backup payload (sealed as a whole by hsm_seal): "P11K" | 1 | u32 count |
 * per version, oldest first: str name, str version, u32 kty, hsm,
 * key_size, crv, key_ops, enabled, i64 nbf, exp, created, updated, u32
 * has_tags, str tags, bytes spki, bytes blob. str/bytes: u32 length + data.
 * Integers big-endian.
 */
#define BK_MAGIC "P11K"
#define BK_VERSION 1
#define BK_VERSIONS_MAX 10000

struct buf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void
buf_put(struct buf *b, const void *d, size_t n)
{
	uint8_t *np;
	size_t nc;

	if (b->err)
		return;
	if (b->len + n > b->cap) {
		nc = b->cap ? b->cap : 4096;
		while (nc < b->len + n)
			nc *= 2;
		if ((np = realloc(b->p, nc)) == NULL) {
			b->err = 1;
			return;
		}
		b->p = np;
		b->cap = nc;
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void
buf_u64(struct buf *b, uint64_t x, size_t n)
{
	uint8_t t[8];
	size_t i;

	for (i = 0; i < n; i++)
		t[i] = (uint8_t)(x >> (8 * (n - 1 - i)));
	buf_put(b, t, n);
}

static void
buf_bytes(struct buf *b, const void *d, size_t n)
{
	buf_u64(b, n, 4);
	buf_put(b, d, n);
}

struct rd {
	const uint8_t *p;
	size_t left;
	int err;
};

static uint64_t
rd_u64(struct rd *r, size_t n)
{
	uint64_t x = 0;
	size_t i;

	if (r->err || r->left < n) {
		r->err = 1;
		return 0;
	}
	for (i = 0; i < n; i++)
		x = x << 8 | r->p[i];
	r->p += n;
	r->left -= n;
	return x;
}

static const uint8_t *
rd_bytes(struct rd *r, size_t *n)
{
	const uint8_t *d;

	*n = (size_t)rd_u64(r, 4);
	if (r->err || r->left < *n) {
		r->err = 1;
		return NULL;
	}
	d = r->p;
	r->p += *n;
	r->left -= *n;
	return d;
}

static void
rd_str(struct rd *r, char *dst, size_t cap)
{
	size_t n;
	const uint8_t *d = rd_bytes(r, &n);

	if (d == NULL || n >= cap || memchr(d, 0, n) != NULL) {
		r->err = 1;
		dst[0] = '\0';
		return;
	}
	memcpy(dst, d, n);
	dst[n] = '\0';
}

static void
put_version(struct buf *b, const struct vlt_key_info *k, const uint8_t *blob,
    size_t blob_len)
{
	buf_bytes(b, k->name, strlen(k->name));
	buf_bytes(b, k->version, strlen(k->version));
	buf_u64(b, (uint64_t)k->kty, 4);
	buf_u64(b, (uint64_t)k->hsm, 4);
	buf_u64(b, k->key_size, 4);
	buf_u64(b, (uint64_t)k->crv, 4);
	buf_u64(b, k->key_ops, 4);
	buf_u64(b, (uint64_t)k->attrs.enabled, 4);
	buf_u64(b, (uint64_t)k->attrs.nbf, 8);
	buf_u64(b, (uint64_t)k->attrs.exp, 8);
	buf_u64(b, (uint64_t)k->attrs.created, 8);
	buf_u64(b, (uint64_t)k->attrs.updated, 8);
	buf_u64(b, k->tags != NULL, 4);
	buf_bytes(b, k->tags ? k->tags : "", k->tags ? strlen(k->tags) : 0);
	buf_bytes(b, k->spki, k->spki_len);
	buf_bytes(b, blob, blob_len);
}

int
vault_key_backup(vault_t *v, const char *name, uint8_t **out,
    size_t *out_len)
{
	struct vlt_key_info *items = NULL, k;
	struct buf b = { NULL, 0, 0, 0 };
	uint8_t *blob = NULL;
	size_t n = 0, i, blob_len = 0, count = 0, count_at;
	int64_t after = 0, last = 0;
	int more = 1, r = 0;

	memset(&k, 0, sizeof(k));
	if (out != NULL)
		*out = NULL;
	if (v == NULL || out == NULL || out_len == NULL || !name_ok(name))
		return VLT_ERR_BAD_PARAM;
	/* the key must be live: NOT_FOUND otherwise */
	if ((r = store_version_get(v->store, name, NULL, 0, &k, NULL,
	    NULL)) != 0)
		return r;
	vlt_key_info_clear(&k);
	buf_put(&b, BK_MAGIC, 4);
	buf_u64(&b, BK_VERSION, 1);
	count_at = b.len;
	buf_u64(&b, 0, 4);
	while (more && r == 0) {
		r = store_version_list(v->store, name, after, VLT_MAX_RESULTS,
		    &items, &n, &last, &more);
		for (i = 0; r == 0 && i < n; i++) {
			r = store_version_get(v->store, name, items[i].version,
			    0, &k, &blob, &blob_len);
			if (r != 0)
				break;
			/* the store's blobs were bound at its upgrade
			 * (upgrade_blobs): an unbound one is planted, and
			 * a backup would have restore bind it */
			if (hsm_blob_is_legacy(blob, blob_len)) {
				r = VLT_ERR_INTERNAL;
				break;
			}
			put_version(&b, &k, blob, blob_len);
			count++;
			vlt_key_info_clear(&k);
			free(blob);
			blob = NULL;
		}
		vlt_key_info_free_array(items, n);
		items = NULL;
		after = last;
		if (n == 0)
			break;
	}
	if (r != 0)
		goto out;
	if (b.err || count == 0 || count > BK_VERSIONS_MAX) {
		r = b.err ? VLT_ERR_NO_MEMORY : VLT_ERR_INTERNAL;
		goto out;
	}
	for (i = 0; i < 4; i++)
		b.p[count_at + i] = (uint8_t)(count >> (8 * (3 - i)));
	r = map_hsm(hsm_seal(v->hsm, b.p, b.len, out, out_len));
out:
	vlt_key_info_clear(&k);
	free(blob);
	free(b.p);
	return r;
}

static int
hex32_ok(const char *s)
{
	size_t i;

	if (strlen(s) != VLT_VERSION_LEN)
		return 0;
	for (i = 0; i < VLT_VERSION_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

int
vault_key_restore(vault_t *v, const uint8_t *in, size_t len,
    struct vlt_key_info *out)
{
	struct vlt_key_info *ks = NULL, probe;
	uint8_t **blobs = NULL, *plain = NULL;
	size_t *lens = NULL, plain_len = 0, count = 0, i, n;
	const uint8_t *d;
	struct rd rd;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	memset(&probe, 0, sizeof(probe));
	if (v == NULL || in == NULL || len == 0)
		return VLT_ERR_BAD_PARAM;
	r = hsm_unseal(v->hsm, in, len, &plain, &plain_len);
	if (r != 0)
		return r == HSM_ERR_DECRYPT || r == HSM_ERR_ARGS ?
		    VLT_ERR_BAD_PARAM : map_hsm(r);
	rd.p = plain;
	rd.left = plain_len;
	rd.err = 0;
	r = VLT_ERR_BAD_PARAM;
	if (plain_len < 9 || memcmp(plain, BK_MAGIC, 4) != 0 ||
	    plain[4] != BK_VERSION)
		goto out;
	rd.p += 5;
	rd.left -= 5;
	count = (size_t)rd_u64(&rd, 4);
	if (rd.err || count == 0 || count > BK_VERSIONS_MAX)
		goto out;
	if ((ks = calloc(count, sizeof(*ks))) == NULL ||
	    (blobs = calloc(count, sizeof(*blobs))) == NULL ||
	    (lens = calloc(count, sizeof(*lens))) == NULL) {
		r = VLT_ERR_NO_MEMORY;
		goto out;
	}
	for (i = 0; i < count && !rd.err; i++) {
		struct vlt_key_info *k = &ks[i];
		rd_str(&rd, k->name, sizeof(k->name));
		rd_str(&rd, k->version, sizeof(k->version));
		k->kty = (enum vlt_kty)rd_u64(&rd, 4);
		k->hsm = (int)rd_u64(&rd, 4);
		k->key_size = (unsigned)rd_u64(&rd, 4);
		k->crv = (enum vlt_curve)rd_u64(&rd, 4);
		k->key_ops = (unsigned)rd_u64(&rd, 4);
		k->attrs.enabled = (int)rd_u64(&rd, 4);
		k->attrs.nbf = (int64_t)rd_u64(&rd, 8);
		k->attrs.exp = (int64_t)rd_u64(&rd, 8);
		k->attrs.created = (int64_t)rd_u64(&rd, 8);
		k->attrs.updated = (int64_t)rd_u64(&rd, 8);
		if (rd_u64(&rd, 4) != 0) {
			d = rd_bytes(&rd, &n);
			if (d != NULL && (k->tags = strndup((const char *)d,
			    n)) == NULL) {
				r = VLT_ERR_NO_MEMORY;
				goto out;
			}
		} else {
			(void)rd_bytes(&rd, &n);
		}
		d = rd_bytes(&rd, &n);
		if (d == NULL || n == 0 || (k->spki = malloc(n)) == NULL) {
			rd.err = 1;
			break;
		}
		memcpy(k->spki, d, n);
		k->spki_len = n;
		d = rd_bytes(&rd, &n);
		if (d == NULL || n == 0 || (blobs[i] = malloc(n)) == NULL) {
			rd.err = 1;
			break;
		}
		memcpy(blobs[i], d, n);
		lens[i] = n;
		if (!name_ok(k->name) || !hex32_ok(k->version) ||
		    strcasecmp(k->name, ks[0].name) != 0 ||
		    check_ops(k->kty, k->key_ops) != 0)
			rd.err = 1;
	}
	if (rd.err || rd.left != 0)
		goto out;
	/* A backup keeps each blob's name and version, so its blobs stay
	 * bound; one made before blobs were bound is bound now. The sealed
	 * payload is authentic (the backup key), so its rows are trusted. */
	for (i = 0; i < count; i++) {
		char bind[BIND_MAX];
		uint8_t *up = NULL;
		size_t up_len = 0;

		if (!hsm_blob_is_legacy(blobs[i], lens[i]))
			continue;
		if ((r = blob_bind(bind, ks[i].name, ks[i].version)) != 0)
			goto out;
		r = hsm_blob_upgrade(v->hsm, bind, blobs[i], lens[i], &up,
		    &up_len);
		if (r != 0) {
			r = r == HSM_ERR_UNAVAILABLE || r == HSM_ERR_NO_MEMORY ?
			    map_hsm(r) : VLT_ERR_BAD_PARAM;
			goto out;
		}
		free(blobs[i]);
		blobs[i] = up;
		lens[i] = up_len;
	}
	if ((r = store_key_restore(v->store, ks, blobs, lens, count)) != 0)
		goto out;
	r = store_version_get(v->store, ks[0].name, NULL, 0, &probe, NULL,
	    NULL);
	if (r == 0)
		key_info_give(&probe, out);
out:
	for (i = 0; ks != NULL && i < count; i++)
		vlt_key_info_clear(&ks[i]);
	for (i = 0; blobs != NULL && i < count; i++)
		free(blobs[i]);
	free(ks);
	free(blobs);
	free(lens);
	if (plain != NULL) {
		OPENSSL_cleanse(plain, plain_len);
		free(plain);
	}
	vlt_key_info_clear(&probe);
	return r;
}

int
vault_key_rotate(vault_t *v, const char *name, struct vlt_key_info *out)
{
	struct vlt_rotation_policy pol;
	struct vlt_create_req req;
	struct vlt_key_info cur;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	memset(&cur, 0, sizeof(cur));
	memset(&req, 0, sizeof(req));
	if (v == NULL || !name_ok(name))
		return VLT_ERR_BAD_PARAM;
	if ((r = store_version_get(v->store, name, NULL, 0, &cur, NULL,
	    NULL)) != 0)
		return r;
	req.kty = cur.kty;
	req.hsm = cur.hsm;
	req.key_size = cur.key_size;
	req.crv = cur.crv;
	req.key_ops = cur.key_ops;
	req.enabled = 1;
	req.tags = cur.tags;
	r = store_rotation_get(v->store, name, &pol);
	if (r == 0 && pol.expiry_secs > 0)
		req.exp = vault_now(v) + pol.expiry_secs;
	else if (r != 0 && r != VLT_ERR_NOT_FOUND)
		goto out;
	r = vault_key_create(v, name, &req, out);
out:
	vlt_key_info_clear(&cur);
	return r;
}

int
vault_rotation_policy_get(vault_t *v, const char *name,
    struct vlt_rotation_policy *out)
{
	struct vlt_key_info k;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || out == NULL || !name_ok(name))
		return VLT_ERR_BAD_PARAM;
	memset(&k, 0, sizeof(k));
	if ((r = store_version_get(v->store, name, NULL, 0, &k, NULL,
	    NULL)) != 0)
		return r;
	vlt_key_info_clear(&k);
	r = store_rotation_get(v->store, name, out);
	return r == VLT_ERR_NOT_FOUND ? 0 : r;
}

int
vault_rotation_policy_set(vault_t *v, const char *name,
    const struct vlt_rotation_policy *p, struct vlt_rotation_policy *out)
{
	size_t i;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || p == NULL || !name_ok(name) ||
	    p->n > VLT_ROT_ACTIONS_MAX || p->expiry_secs < 0)
		return VLT_ERR_BAD_PARAM;
	for (i = 0; i < p->n; i++)
		if (p->a[i].secs <= 0 || strchr(p->a[i].duration, ' ') ||
		    p->a[i].duration[0] == '\0')
			return VLT_ERR_BAD_PARAM;
	if ((r = store_rotation_put(v->store, name, p, vault_now(v))) != 0)
		return r;
	return out != NULL ? vault_rotation_policy_get(v, name, out) : 0;
}

/* The Rotate action of p that is due for key k at now, or NULL. */
static const struct vlt_rotation_action *
rotation_due_action(const struct vlt_rotation_policy *p,
    const struct vlt_key_info *k, int64_t now)
{
	size_t i;

	for (i = 0; i < p->n; i++) {
		const struct vlt_rotation_action *a = &p->a[i];
		if (a->action != VLT_ROT_ROTATE)
			continue;
		if (a->trigger == VLT_ROT_AFTER_CREATE &&
		    now >= k->attrs.created + a->secs)
			return a;
		if (a->trigger == VLT_ROT_BEFORE_EXPIRY && k->attrs.exp != 0 &&
		    now >= k->attrs.exp - a->secs)
			return a;
	}
	return NULL;
}

int
vault_rotation_due(vault_t *v)
{
	char (*names)[VLT_NAME_MAX + 1] = NULL;
	struct vlt_rotation_policy *pols = NULL;
	const struct vlt_rotation_action *a;
	struct vlt_key_info k, nk;
	char line[1024], ts[32];
	size_t n = 0, i;
	int64_t now;
	time_t t;
	struct tm tm;
	int r, count = 0, err = 0, len;

	if (v == NULL)
		return VLT_ERR_BAD_PARAM;
	if ((r = store_rotation_list(v->store, &names, &pols, &n)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		memset(&k, 0, sizeof(k));
		memset(&nk, 0, sizeof(nk));
		now = vault_now(v);
		if (store_version_get(v->store, names[i], NULL, 0, &k, NULL,
		    NULL) != 0)
			continue;   /* deleted meanwhile */
		a = rotation_due_action(&pols[i], &k, now);
		vlt_key_info_clear(&k);
		if (a == NULL)
			continue;
		r = vault_key_rotate(v, names[i], &nk);
		t = (time_t)now;
		gmtime_r(&t, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
		/* names are [0-9A-Za-z-] and versions hex: nothing to escape */
		len = snprintf(line, sizeof(line), "{\"time\":\"%s\","
		    "\"requestId\":\"\",\"callerOid\":\"p11vault\","
		    "\"callerAppId\":\"rotation-policy\",\"method\":\"\","
		    "\"operation\":\"RotateKey\",\"trigger\":\"%s\","
		    "\"keyId\":\"%s/keys/%s%s%s\",\"httpStatus\":%d,"
		    "\"result\":\"%s\"}", ts,
		    a->trigger == VLT_ROT_AFTER_CREATE ? "timeAfterCreate" :
		    "timeBeforeExpiry",
		    vault_config(v, "vault_url") ? vault_config(v,
		    "vault_url") : "", names[i], r == 0 ? "/" : "",
		    r == 0 ? nk.version : "", r == 0 ? 200 : 500,
		    r == 0 ? "Success" : "Failure");
		if ((len <= 0 || (size_t)len >= sizeof(line) ||
		    vault_audit_append(v, line, 1) != 0) && err == 0)
			err = VLT_ERR_IO;   /* the rotation stands; say so */
		vlt_key_info_clear(&nk);
		if (r == 0)
			count++;
		else if (err == 0)
			err = r;
	}
	free(names);
	free(pols);
	return err != 0 ? err : count;
}

int
vault_version_cache_stats(vault_t *v, uint64_t *hits, uint64_t *misses)
{
	if (v == NULL || v->store == NULL)
		return VLT_ERR_BAD_PARAM;
	store_vcache_stats(v->store, hits, misses);
	return 0;
}

/* Session-pool and handle-cache figures for GET /metrics (issue 6). */
int
vault_hsm_stats(vault_t *v, uint64_t *cache_hits, uint64_t *cache_misses,
    size_t *sessions_busy, size_t *sessions_total)
{
	if (v == NULL || v->hsm == NULL)
		return VLT_ERR_BAD_PARAM;
	hsm_stats(v->hsm, cache_hits, cache_misses, sessions_busy,
	    sessions_total);
	return 0;
}

int
vault_token_process(vault_t *v, int *up, uint64_t *restarts)
{
	long pid;

	if (v == NULL || v->hsm == NULL)
		return VLT_ERR_BAD_PARAM;
	hsm_process(v->hsm, &pid, restarts);
	*up = pid > 0;
	return 0;
}
