/*
 * vault/vault.c — the domain operations: keys and versions, attributes,
 * soft delete, recovery, purge, retention, purge protection, the data
 * directory's creation and opening, principals and access policies
 * (persistence only).
 *
 * Owns: the vault_t (config, store, hsm_t), the rules (names, sizes,
 * curves, key_ops, the enabled/nbf/exp window), the mapping of HSM_ERR_*
 * to VLT_ERR_*.
 *
 * Must never: contain SQL (vault/store.c does), call the hsm while holding
 * the store's lock (token work is slow), know HTTP or JSON, log or keep
 * PINs, plaintexts or key material.
 */
#include "vault/vault.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	char so_pin[PIN_HEX_LEN + 1], user_pin[PIN_HEX_LEN + 1];
	char tenant[VLT_ID_LEN + 1], listen[300], *shtext = NULL;
	const char *module, *label, *url;
	struct vlt_conf *conf = NULL;
	struct vlt_settings set = { 90, 0 };
	store_t *store = NULL;
	int r, n;

	memset(so_pin, 0, sizeof(so_pin));
	memset(user_pin, 0, sizeof(user_pin));
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
	if ((r = random_hex(so_pin, PIN_HEX_LEN)) != 0 ||
	    (r = random_hex(user_pin, PIN_HEX_LEN)) != 0)
		goto out;
	if ((r = fs_join(path, sizeof(path), hsmdir, "so.pin")) != 0 ||
	    (r = fs_write_private(path, so_pin, PIN_HEX_LEN)) != 0)
		goto out;
	if ((r = fs_join(path, sizeof(path), hsmdir, "user.pin")) != 0 ||
	    (r = fs_write_private(path, user_pin, PIN_HEX_LEN)) != 0)
		goto out;

	r = hsm_token_init(module, label, so_pin, user_pin);
	if (r != 0) {
		r = r == HSM_ERR_EXISTS ? VLT_ERR_EXISTS : map_hsm(r);
		goto out;
	}

	if ((r = fs_join(path, sizeof(path), dir, "vault.db")) != 0 ||
	    (r = store_open(path, 1, &store)) != 0 ||
	    (r = store_settings_init(store, &set)) != 0)
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
	r = conf_write_new(conf, path);
out:
	OPENSSL_cleanse(so_pin, sizeof(so_pin));
	OPENSSL_cleanse(user_pin, sizeof(user_pin));
	free(shtext);
	store_close(store);
	conf_free(conf);
	return r;
}

int
vault_open(const char *data_dir, size_t pool_size, vault_t **out)
{
	char path[PATH_MAX], dir[PATH_MAX], pin[256];
	struct hsm_config hc;
	const char *shconf;
	vault_t *v = NULL;
	size_t pin_len = 0;
	long ncpu;
	int r;

	memset(pin, 0, sizeof(pin));
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
	if ((r = fs_join(path, sizeof(path), dir, "hsm/user.pin")) != 0)
		goto out;
	if ((r = fs_read_small(path, pin, sizeof(pin), &pin_len)) != 0) {
		r = VLT_ERR_IO;
		goto out;
	}
	if (pool_size == 0) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		pool_size = ncpu > 0 ? (size_t)ncpu * 2 : 4;
		if (pool_size < 4)
			pool_size = 4;
	}
	memset(&hc, 0, sizeof(hc));
	hc.module_path = conf_get(v->conf, "module");
	hc.token_label = conf_get(v->conf, "token_label");
	hc.user_pin = pin;
	hc.pool_size = pool_size;
	if ((r = hsm_open(&hc, &v->hsm)) != 0) {
		r = map_hsm(r);
		goto out;
	}
	if ((r = fs_join(path, sizeof(path), dir, "vault.db")) != 0 ||
	    (r = store_open(path, 0, &v->store)) != 0)
		goto out;
	if ((r = vlt_audit_open(dir, 0, &v->audit)) != 0)
		goto out;
	*out = v;
	v = NULL;
	r = 0;
out:
	OPENSSL_cleanse(pin, sizeof(pin));
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
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	unsigned bits = 0, ops;
	int r, nid = 0, attempt;
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

	r = hsm_key_generate(v->hsm, req->kty == VLT_KTY_RSA ? HSM_KTY_RSA :
	    HSM_KTY_EC, bits, nid, &blob, &blob_len, &k.spki, &k.spki_len);
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
	for (attempt = 0; attempt < 3; attempt++) {
		if ((r = random_hex(k.version, VLT_VERSION_LEN)) != 0)
			goto out;
		r = store_version_insert(v->store, &k, blob, blob_len);
		if (r != VLT_ERR_CONFLICT)   /* a version id collision */
			break;
	}
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

int
vault_key_delete(vault_t *v, const char *name, struct vlt_key_info *out)
{
	struct vlt_key_info tmp;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || !name_ok(name))
		return VLT_ERR_BAD_PARAM;
	r = store_key_delete(v->store, name, vault_now(v), &tmp);
	if (r == 0)
		key_info_give(&tmp, out);
	return r;
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
	struct vlt_key_info tmp;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || !name_ok(name))
		return VLT_ERR_BAD_PARAM;
	r = store_key_recover(v->store, name, &tmp);
	if (r == 0)
		key_info_give(&tmp, out);
	return r;
}

/* Purges one key; due_before as store_key_purge. */
static int
purge_one(vault_t *v, const char *name, int64_t due_before)
{
	char (*ids)[VLT_VERSION_LEN + 1] = NULL;
	size_t n = 0, i;
	int r;

	r = store_key_purge(v->store, name, due_before, &ids, &n);
	if (r != 0)
		return r;
	/* The blobs are gone from the store; drop the unwrapped handles. */
	for (i = 0; i < n; i++)
		hsm_key_forget(v->hsm, ids[i]);
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

int
vault_key_encrypt(vault_t *v, const char *name, const char *version,
    unsigned op, enum vlt_alg alg, const uint8_t *in, size_t in_len,
    uint8_t *out, size_t *out_len, char kid_version[VLT_VERSION_LEN + 1])
{
	struct vlt_key_info k;
	enum hsm_alg ha;
	int r;

	memset(&k, 0, sizeof(k));
	if (v == NULL || in == NULL || out == NULL || out_len == NULL ||
	    (op != VLT_OP_ENCRYPT && op != VLT_OP_WRAP) || !alg_is_enc(alg) ||
	    map_alg(alg, &ha) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = key_for_op(v, name, version, op, 0, &k, NULL, NULL)) != 0)
		return r;
	if (k.kty != VLT_KTY_RSA) {
		r = VLT_ERR_BAD_PARAM;
		goto out;
	}
	r = map_hsm(hsm_pub_encrypt(k.spki, k.spki_len, ha, in, in_len, out,
	    out_len));
	if (r == 0)
		kid_out(kid_version, &k);
out:
	vlt_key_info_clear(&k);
	return r;
}

int
vault_key_decrypt(vault_t *v, const char *name, const char *version,
    unsigned op, enum vlt_alg alg, const uint8_t *in, size_t in_len,
    uint8_t *out, size_t *out_len, char kid_version[VLT_VERSION_LEN + 1])
{
	struct vlt_key_info k;
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	enum hsm_alg ha;
	int r;

	memset(&k, 0, sizeof(k));
	if (v == NULL || in == NULL || out == NULL || out_len == NULL ||
	    (op != VLT_OP_DECRYPT && op != VLT_OP_UNWRAP) || !alg_is_enc(alg) ||
	    map_alg(alg, &ha) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = key_for_op(v, name, version, op, 1, &k, &blob,
	    &blob_len)) != 0)
		return r;
	if (k.kty != VLT_KTY_RSA) {
		r = VLT_ERR_BAD_PARAM;
		goto out;
	}
	r = map_hsm(hsm_key_decrypt(v->hsm, k.version, blob, blob_len, ha, in,
	    in_len, out, out_len));
	if (r == 0)
		kid_out(kid_version, &k);
out:
	vlt_key_info_clear(&k);
	free(blob);
	return r;
}

int
vault_key_sign(vault_t *v, const char *name, const char *version,
    enum vlt_alg alg, const uint8_t *digest, size_t dlen, uint8_t *sig,
    size_t *sig_len, char kid_version[VLT_VERSION_LEN + 1])
{
	struct vlt_key_info k;
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	enum hsm_alg ha;
	int r;

	memset(&k, 0, sizeof(k));
	if (v == NULL || digest == NULL || sig == NULL || sig_len == NULL ||
	    !alg_is_sig(alg) || map_alg(alg, &ha) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = key_for_op(v, name, version, VLT_OP_SIGN, 1, &k, &blob,
	    &blob_len)) != 0)
		return r;
	if (!sig_alg_fits(alg, &k)) {
		r = VLT_ERR_BAD_PARAM;
		goto out;
	}
	r = map_hsm(hsm_key_sign(v->hsm, k.version, blob, blob_len, ha, digest,
	    dlen, sig, sig_len));
	if (r == 0)
		kid_out(kid_version, &k);
out:
	vlt_key_info_clear(&k);
	free(blob);
	return r;
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

	memset(&k, 0, sizeof(k));
	if (valid != NULL)
		*valid = 0;
	if (v == NULL || digest == NULL || sig == NULL || valid == NULL ||
	    !alg_is_sig(alg) || map_alg(alg, &ha) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = key_for_op(v, name, version, VLT_OP_VERIFY, 0, &k, NULL,
	    NULL)) != 0)
		return r;
	if (!sig_alg_fits(alg, &k)) {
		r = VLT_ERR_BAD_PARAM;
		goto out;
	}
	r = map_hsm(hsm_pub_verify(k.spki, k.spki_len, ha, digest, dlen, sig,
	    sig_len, valid));
	if (r == 0)
		kid_out(kid_version, &k);
out:
	vlt_key_info_clear(&k);
	return r;
}

/* ---- principals and access policies ------------------------------------ */

static int
field_ok(const char *s, size_t cap)
{
	size_t len = strnlen(s, cap);

	return len > 0 && len < cap;
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
	if (v == NULL || object_id == NULL || object_id[0] == '\0' ||
	    strlen(object_id) > VLT_ID_LEN)
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
	if (v == NULL || object_id == NULL || object_id[0] == '\0' ||
	    strlen(object_id) > VLT_ID_LEN)
		return VLT_ERR_BAD_PARAM;
	return store_access_delete(v->store, object_id);
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
