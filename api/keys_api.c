/*
 * keys_api.c — the Azure Key Vault keys data plane: /keys and
 * /deletedkeys. Parses and validates requests, asks policy for the one
 * permission each operation needs, calls vault/, renders Azure's JSON.
 *
 * Must never: return private key parts; echo request values (plaintexts,
 * ciphertexts, digests) in errors; keep a plaintext beyond the request
 * (wiped before return).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "api/api.h"

#define TAGS_MAX 15
#define TAG_NAME_MAX 512
#define TAG_VALUE_MAX 256
#define CRYPTO_IN_MAX 1024     /* ciphertext of RSA-4096 is 512 */
#define DIGEST_MAX 64
#define SIG_MAX 1024

/* ---- names and small parsers -------------------------------------------- */

static int
name_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > VLT_NAME_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-')
			return 0;
	return 1;
}

static int
check_name(struct api_resp *r, const char *name)
{
	if (name_valid(name))
		return 0;
	api_resp_error(r, 400, "BadParameter",
	    "The key name is invalid: it must be 1 to 127 characters of "
	    "0-9, a-z, A-Z and '-'.");
	return -1;
}

static const struct { const char *name; unsigned bit; } key_ops_tab[] = {
	{ "encrypt", VLT_OP_ENCRYPT }, { "decrypt", VLT_OP_DECRYPT },
	{ "sign", VLT_OP_SIGN }, { "verify", VLT_OP_VERIFY },
	{ "wrapKey", VLT_OP_WRAP }, { "unwrapKey", VLT_OP_UNWRAP },
	{ "import", VLT_OP_IMPORT },
};
#define N_KEY_OPS (sizeof(key_ops_tab) / sizeof(key_ops_tab[0]))

static const struct { const char *name; enum vlt_alg alg; } alg_tab[] = {
	{ "RSA-OAEP", VLT_ALG_RSA_OAEP }, { "RSA-OAEP-256", VLT_ALG_RSA_OAEP_256 },
	{ "RSA1_5", VLT_ALG_RSA1_5 },
	{ "RS256", VLT_ALG_RS256 }, { "RS384", VLT_ALG_RS384 },
	{ "RS512", VLT_ALG_RS512 }, { "PS256", VLT_ALG_PS256 },
	{ "PS384", VLT_ALG_PS384 }, { "PS512", VLT_ALG_PS512 },
	{ "ES256", VLT_ALG_ES256 }, { "ES384", VLT_ALG_ES384 },
	{ "ES512", VLT_ALG_ES512 },
};

static const char *const curve_names[] = { NULL, "P-256", "P-384", "P-521" };

int
api_key_op_bit(const char *s, unsigned *bit)
{
	size_t j;

	for (j = 0; j < N_KEY_OPS; j++) {
		if (strcasecmp(s, key_ops_tab[j].name) == 0) {
			*bit = key_ops_tab[j].bit;
			return 0;
		}
	}
	return -1;
}

static int
parse_key_ops(json_t *arr, unsigned *out, struct api_resp *r)
{
	unsigned bit;
	size_t i;
	json_t *v;

	*out = 0;
	if (!json_is_array(arr)) {
		api_resp_error(r, 400, "BadParameter",
		    "The field 'key_ops' must be an array of strings.");
		return -1;
	}
	json_array_foreach(arr, i, v) {
		const char *s = json_string_value(v);
		if (s == NULL) {
			api_resp_error(r, 400, "BadParameter",
			    "The field 'key_ops' must be an array of strings.");
			return -1;
		}
		if (api_key_op_bit(s, &bit) != 0) {
			api_resp_error(r, 400, "BadParameter",
			    "The field 'key_ops' holds an unknown key "
			    "operation.");
			return -1;
		}
		*out |= bit;
	}
	return 0;
}

int
api_parse_time(json_t *attrs, const char *field, int *has, int64_t *out,
    struct api_resp *r)
{
	json_t *v = json_object_get(attrs, field);

	*has = 0;
	*out = 0;
	if (v == NULL)
		return 0;
	*has = 1;
	if (json_is_null(v))
		return 0;
	if (!json_is_number(v) || json_number_value(v) < 0 ||
	    json_number_value(v) > 253402300799.0) {
		api_resp_error(r, 400, "BadParameter",
		    "The field 'attributes.%s' must be a Unix time in "
		    "seconds.", field);
		return -1;
	}
	*out = (int64_t)json_number_value(v);
	return 0;
}

struct attrs_in {
	int has_enabled, enabled;
	int has_nbf, has_exp;
	int64_t nbf, exp;
};

static int
parse_attributes(json_t *body, struct attrs_in *a, struct api_resp *r)
{
	json_t *attrs = json_object_get(body, "attributes");
	json_t *v;

	memset(a, 0, sizeof(*a));
	if (attrs == NULL || json_is_null(attrs))
		return 0;
	if (!json_is_object(attrs)) {
		api_resp_error(r, 400, "BadParameter",
		    "The field 'attributes' must be an object.");
		return -1;
	}
	v = json_object_get(attrs, "enabled");
	if (v && !json_is_null(v)) {
		if (!json_is_boolean(v)) {
			api_resp_error(r, 400, "BadParameter",
			    "The field 'attributes.enabled' must be a boolean.");
			return -1;
		}
		a->has_enabled = 1;
		a->enabled = json_is_true(v);
	}
	v = json_object_get(attrs, "exportable");
	if (v && !json_is_null(v) && !json_is_boolean(v)) {
		api_resp_error(r, 400, "BadParameter",
		    "The field 'attributes.exportable' must be a boolean.");
		return -1;
	}
	if (v && json_is_true(v)) {
		api_resp_error(r, 400, "BadParameter",
		    "Exportable keys are not supported: private keys never "
		    "leave this vault's HSM.");
		return -1;
	}
	if (api_parse_time(attrs, "nbf", &a->has_nbf, &a->nbf, r) != 0 ||
	    api_parse_time(attrs, "exp", &a->has_exp, &a->exp, r) != 0)
		return -1;
	return 0;
}

/* *tags: NULL when absent; else malloc'd compact JSON text. */
static int
parse_tags(json_t *body, char **tags, struct api_resp *r)
{
	json_t *t = json_object_get(body, "tags");
	const char *k;
	json_t *v;

	*tags = NULL;
	if (t == NULL)
		return 0;
	if (json_is_null(t)) {
		*tags = strdup("{}");
		return *tags ? 0 : -1;
	}
	if (!json_is_object(t)) {
		api_resp_error(r, 400, "BadParameter",
		    "The field 'tags' must be an object of strings.");
		return -1;
	}
	if (json_object_size(t) > TAGS_MAX) {
		api_resp_error(r, 400, "BadParameter",
		    "At most %d tags are allowed.", TAGS_MAX);
		return -1;
	}
	json_object_foreach(t, k, v) {
		if (!json_is_string(v)) {
			api_resp_error(r, 400, "BadParameter",
			    "Tag values must be strings.");
			return -1;
		}
		if (strlen(k) > TAG_NAME_MAX ||
		    json_string_length(v) > TAG_VALUE_MAX) {
			api_resp_error(r, 400, "BadParameter",
			    "Tag names are at most %d characters and values "
			    "at most %d.", TAG_NAME_MAX, TAG_VALUE_MAX);
			return -1;
		}
	}
	*tags = json_dumps(t, JSON_COMPACT | JSON_SORT_KEYS);
	return *tags ? 0 : -1;
}

/* ---- rendering ------------------------------------------------------------ */

static json_t *
jwk_from_spki(const struct vlt_key_info *k, const char *kid)
{
	const unsigned char *p = k->spki;
	EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)k->spki_len);
	json_t *jwk = NULL, *ops;
	size_t i;

	if (pk == NULL)
		return NULL;
	jwk = json_object();
	ops = json_array();
	json_object_set_new(jwk, "kid", json_string(kid));
	for (i = 0; i < N_KEY_OPS; i++)
		if (k->key_ops & key_ops_tab[i].bit)
			json_array_append_new(ops,
			    json_string(key_ops_tab[i].name));
	if (k->kty == VLT_KTY_RSA) {
		BIGNUM *n = NULL, *e = NULL;
		uint8_t buf[1024];
		int len;
		json_object_set_new(jwk, "kty",
		    json_string(k->hsm ? "RSA-HSM" : "RSA"));
		json_object_set_new(jwk, "key_ops", ops);
		if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n) &&
		    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e)) {
			len = BN_bn2bin(n, buf);
			json_object_set_new(jwk, "n",
			    api_json_b64(buf, (size_t)len));
			len = BN_bn2bin(e, buf);
			json_object_set_new(jwk, "e",
			    api_json_b64(buf, (size_t)len));
		}
		BN_free(n);
		BN_free(e);
	} else {
		uint8_t pt[200];
		size_t len = 0, fl;
		json_object_set_new(jwk, "kty",
		    json_string(k->hsm ? "EC-HSM" : "EC"));
		json_object_set_new(jwk, "key_ops", ops);
		if (k->crv > VLT_CRV_NONE && k->crv <= VLT_CRV_P521)
			json_object_set_new(jwk, "crv",
			    json_string(curve_names[k->crv]));
		if (EVP_PKEY_get_octet_string_param(pk,
		    OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &len) &&
		    len > 1 && pt[0] == 0x04) {
			fl = (len - 1) / 2;
			json_object_set_new(jwk, "x", api_json_b64(pt + 1, fl));
			json_object_set_new(jwk, "y",
			    api_json_b64(pt + 1 + fl, fl));
		}
	}
	EVP_PKEY_free(pk);
	return jwk;
}

static json_t *key_json(struct api_ctx *c, const struct vlt_key_info *k,
    int item, const struct vlt_settings *sp);

/* The vault's retention settings (they shape every bundle's attributes). */
static void
settings_or_default(struct api_ctx *c, struct vlt_settings *s)
{
	if (vault_settings_get(c->vault, s) != 0) {
		s->retention_days = 90;
		s->purge_protection = 0;
	}
}

json_t *
api_key_bundle(struct api_ctx *c, const struct vlt_key_info *k, int item)
{
	struct vlt_settings s;

	settings_or_default(c, &s);
	return key_json(c, k, item, &s);
}

static json_t *
key_json(struct api_ctx *c, const struct vlt_key_info *k, int item,
    const struct vlt_settings *sp)
{
	struct vlt_settings s = *sp;
	char kid[512];
	json_t *b, *attrs;

	if (item == 2)
		snprintf(kid, sizeof(kid), "%s/keys/%s", c->vault_url, k->name);
	else
		snprintf(kid, sizeof(kid), "%s/keys/%s/%s", c->vault_url,
		    k->name, k->version);
	b = json_object();
	if (item) {
		json_object_set_new(b, "kid", json_string(kid));
	} else {
		json_t *jwk = jwk_from_spki(k, kid);
		if (jwk == NULL) {
			json_decref(b);
			return NULL;
		}
		json_object_set_new(b, "key", jwk);
	}
	attrs = json_object();
	json_object_set_new(attrs, "enabled", json_boolean(k->attrs.enabled));
	if (k->attrs.nbf)
		json_object_set_new(attrs, "nbf", json_integer(k->attrs.nbf));
	if (k->attrs.exp)
		json_object_set_new(attrs, "exp", json_integer(k->attrs.exp));
	json_object_set_new(attrs, "created", json_integer(k->attrs.created));
	json_object_set_new(attrs, "updated", json_integer(k->attrs.updated));
	json_object_set_new(attrs, "recoveryLevel",
	    json_string(vault_recovery_level(&s)));
	json_object_set_new(attrs, "recoverableDays",
	    json_integer(s.retention_days));
	json_object_set_new(attrs, "exportable", json_false());
	json_object_set_new(b, "attributes", attrs);
	if (k->tags) {
		json_t *t = json_loads(k->tags, 0, NULL);
		if (t && json_object_size(t) > 0)
			json_object_set_new(b, "tags", t);
		else
			json_decref(t);
	}
	if (k->deleted_date) {
		char rid[512];
		snprintf(rid, sizeof(rid), "%s/deletedkeys/%s", c->vault_url,
		    k->name);
		json_object_set_new(b, "recoveryId", json_string(rid));
		json_object_set_new(b, "deletedDate",
		    json_integer(k->deleted_date));
		json_object_set_new(b, "scheduledPurgeDate",
		    json_integer(k->scheduled_purge_date));
	}
	return b;
}

static void
send_bundle(struct api_req *q, struct api_resp *r, struct vlt_key_info *k)
{
	json_t *b = api_key_bundle(q->ctx, k, 0);

	if (b == NULL)
		api_resp_vault_error(r, VLT_ERR_INTERNAL, k->name, NULL);
	else
		api_resp_set(r, 200, b);
	vlt_key_info_clear(k);
}

static void
set_key_id(struct api_req *q, const char *name, const char *version)
{
	snprintf(q->key_id, sizeof(q->key_id), "%s/keys/%s%s%s",
	    q->ctx->vault_url, name, version && *version ? "/" : "",
	    version ? version : "");
}

void
api_send_key(struct api_req *q, struct api_resp *r, int rc,
    const char *err_name, const char *id_name, struct vlt_key_info *k)
{
	if (rc != 0) {
		api_resp_vault_error(r, rc, err_name, NULL);
		return;
	}
	if (id_name != NULL)
		set_key_id(q, id_name, k->version);
	send_bundle(q, r, k);
}

/* ---- paging --------------------------------------------------------------- */

static int
parse_paging(struct api_req *q, struct api_resp *r, size_t *max, char **cont)
{
	*max = VLT_MAX_RESULTS;
	*cont = NULL;
	if (q->maxresults) {
		char *end;
		long v = strtol(q->maxresults, &end, 10);
		if (*q->maxresults == '\0' || *end != '\0' || v < 1 ||
		    v > VLT_MAX_RESULTS) {
			api_resp_error(r, 400, "BadParameter",
			    "maxresults must be an integer from 1 to 25.");
			return -1;
		}
		*max = (size_t)v;
	}
	if (q->skiptoken && *q->skiptoken) {
		uint8_t *raw = NULL;
		size_t len = 0;
		if (strlen(q->skiptoken) > 1024 ||
		    policy_b64url_decode(q->skiptoken, strlen(q->skiptoken),
		    &raw, &len) != 0 || len == 0 || memchr(raw, 0, len)) {
			free(raw);
			api_resp_error(r, 400, "BadParameter",
			    "The continuation token ($skiptoken) is invalid.");
			return -1;
		}
		*cont = calloc(1, len + 1);
		if (*cont)
			memcpy(*cont, raw, len);
		free(raw);
	}
	return 0;
}

static void
send_list(struct api_req *q, struct api_resp *r, int rc,
    struct vlt_key_info *items, size_t n, char *next, const char *path,
    size_t max, int versioned)
{
	struct vlt_settings s;
	json_t *arr, *doc;
	size_t i;

	if (rc != 0) {
		api_resp_vault_error(r, rc, NULL, NULL);
		goto out;
	}
	settings_or_default(q->ctx, &s);    /* once per page, not per item */
	arr = json_array();
	for (i = 0; i < n; i++) {
		json_t *it = key_json(q->ctx, &items[i], versioned ? 1 : 2,
		    &s);
		if (it)
			json_array_append_new(arr, it);
	}
	doc = json_pack("{s:o}", "value", arr);
	if (next) {
		char *tok = NULL, link[2048];
		if (policy_b64url_encode((const uint8_t *)next, strlen(next),
		    &tok) == 0) {
			snprintf(link, sizeof(link),
			    "%s%s?api-version=%s&maxresults=%zu&$skiptoken=%s",
			    q->ctx->vault_url, path, q->api_version, max, tok);
			json_object_set_new(doc, "nextLink", json_string(link));
		}
		free(tok);
	} else {
		json_object_set_new(doc, "nextLink", json_null());
	}
	api_resp_set(r, 200, doc);
out:
	vlt_key_info_free_array(items, n);
	free(next);
}

/* ---- key management ------------------------------------------------------- */

static void
key_create(struct api_req *q, struct api_resp *r, const char *name)
{
	struct vlt_create_req req;
	struct vlt_key_info k;
	struct attrs_in a;
	json_t *body = NULL, *v;
	const char *kty, *crv;
	char *tags = NULL;
	int rc;

	memset(&req, 0, sizeof(req));
	memset(&k, 0, sizeof(k));
	if (api_body_object(q, r, &body) != 0)
		return;
	if (api_field_string(body, "kty", 1, &kty, r) != 0)
		goto out;
	if (strcmp(kty, "RSA") == 0 || strcmp(kty, "RSA-HSM") == 0)
		req.kty = VLT_KTY_RSA;
	else if (strcmp(kty, "EC") == 0 || strcmp(kty, "EC-HSM") == 0)
		req.kty = VLT_KTY_EC;
	else {
		api_resp_error(r, 400, "BadParameter",
		    "The field 'kty' must be one of RSA, RSA-HSM, EC, EC-HSM.");
		goto out;
	}
	req.hsm = strstr(kty, "-HSM") != NULL;
	v = json_object_get(body, "key_size");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || req.kty != VLT_KTY_RSA ||
		    (json_integer_value(v) != 2048 &&
		    json_integer_value(v) != 3072 &&
		    json_integer_value(v) != 4096)) {
			api_resp_error(r, 400, "BadParameter",
			    "The field 'key_size' must be 2048, 3072 or 4096 "
			    "for an RSA key.");
			goto out;
		}
		req.key_size = (unsigned)json_integer_value(v);
	}
	v = json_object_get(body, "public_exponent");
	if (v && !json_is_null(v) && (!json_is_integer(v) ||
	    json_integer_value(v) != 65537 || req.kty != VLT_KTY_RSA)) {
		api_resp_error(r, 400, "BadParameter",
		    "The field 'public_exponent' must be 65537.");
		goto out;
	}
	if (api_field_string(body, "crv", 0, &crv, r) != 0)
		goto out;
	if (crv) {
		if (req.kty != VLT_KTY_EC) {
			api_resp_error(r, 400, "BadParameter",
			    "The field 'crv' applies to EC keys only.");
			goto out;
		}
		if (strcmp(crv, "P-256") == 0)
			req.crv = VLT_CRV_P256;
		else if (strcmp(crv, "P-384") == 0)
			req.crv = VLT_CRV_P384;
		else if (strcmp(crv, "P-521") == 0)
			req.crv = VLT_CRV_P521;
		else {
			api_resp_error(r, 400, "BadParameter",
			    "The field 'crv' must be P-256, P-384 or P-521.");
			goto out;
		}
	} else if (req.kty == VLT_KTY_EC) {
		req.crv = VLT_CRV_P256;
	}
	v = json_object_get(body, "key_ops");
	if (v && !json_is_null(v)) {
		if (parse_key_ops(v, &req.key_ops, r) != 0)
			goto out;
		if (req.kty == VLT_KTY_EC && (req.key_ops & ~(unsigned)(VLT_OP_SIGN |
		    VLT_OP_VERIFY))) {
			api_resp_error(r, 400, "BadParameter",
			    "Unsupported key operation(s) for an EC key: only "
			    "sign and verify are possible.");
			goto out;
		}
		if (req.key_ops == 0) {
			api_resp_error(r, 400, "BadParameter",
			    "The field 'key_ops' must not be empty.");
			goto out;
		}
	}
	if (parse_attributes(body, &a, r) != 0 || parse_tags(body, &tags, r))
		goto out;
	req.enabled = a.has_enabled ? a.enabled : 1;
	req.nbf = a.nbf;
	req.exp = a.exp;
	req.tags = tags;
	rc = vault_key_create(q->ctx->vault, name, &req, &k);
	api_send_key(q, r, rc, name, name, &k);
out:
	free(tags);
	json_decref(body);
}

static void
key_rotate(struct api_req *q, struct api_resp *r, const char *name)
{
	struct vlt_key_info k;

	memset(&k, 0, sizeof(k));
	api_send_key(q, r, vault_key_rotate(q->ctx->vault, name, &k), name,
	    name, &k);
}

static void
key_get(struct api_req *q, struct api_resp *r, const char *name,
    const char *version)
{
	struct vlt_key_info k;

	memset(&k, 0, sizeof(k));
	api_send_key(q, r, vault_key_get(q->ctx->vault, name, version, &k),
	    name, NULL, &k);
}

static void
key_update(struct api_req *q, struct api_resp *r, const char *name,
    const char *version)
{
	struct vlt_update_req req;
	struct vlt_key_info k;
	struct attrs_in a;
	json_t *body = NULL, *v;
	char *tags = NULL;
	int rc;

	memset(&req, 0, sizeof(req));
	memset(&k, 0, sizeof(k));
	if (api_body_object(q, r, &body) != 0)
		return;
	v = json_object_get(body, "key_ops");
	if (v && !json_is_null(v)) {
		if (parse_key_ops(v, &req.key_ops, r) != 0)
			goto out;
		req.has_key_ops = 1;
	}
	if (parse_attributes(body, &a, r) != 0 || parse_tags(body, &tags, r))
		goto out;
	req.has_enabled = a.has_enabled;
	req.enabled = a.enabled;
	req.has_nbf = a.has_nbf;
	req.nbf = a.nbf;
	req.has_exp = a.has_exp;
	req.exp = a.exp;
	req.tags = tags;
	rc = vault_key_update(q->ctx->vault, name, version, &req, &k);
	api_send_key(q, r, rc, name, NULL, &k);
out:
	free(tags);
	json_decref(body);
}

static void
key_list(struct api_req *q, struct api_resp *r)
{
	struct vlt_key_info *items = NULL;
	size_t n = 0, max;
	char *cont, *next = NULL;
	int rc;

	if (parse_paging(q, r, &max, &cont) != 0)
		return;
	rc = vault_key_list(q->ctx->vault, cont, max, &items, &n, &next);
	free(cont);
	send_list(q, r, rc, items, n, next, "/keys", max, 0);
}

static void
key_versions(struct api_req *q, struct api_resp *r, const char *name)
{
	struct vlt_key_info *items = NULL;
	size_t n = 0, max;
	char *cont, *next = NULL, path[256];
	int rc;

	if (parse_paging(q, r, &max, &cont) != 0)
		return;
	rc = vault_key_versions(q->ctx->vault, name, cont, max, &items, &n,
	    &next);
	free(cont);
	if (rc != 0) {
		api_resp_vault_error(r, rc, name, NULL);
		vlt_key_info_free_array(items, n);
		free(next);
		return;
	}
	snprintf(path, sizeof(path), "/keys/%s/versions", name);
	send_list(q, r, rc, items, n, next, path, max, 1);
}

static void
key_delete(struct api_req *q, struct api_resp *r, const char *name)
{
	struct vlt_key_info k;

	memset(&k, 0, sizeof(k));
	api_send_key(q, r, vault_key_delete(q->ctx->vault, name, &k), name,
	    NULL, &k);
}

/* ---- cryptography --------------------------------------------------------- */

enum crypto_kind { CK_ENCRYPT, CK_DECRYPT, CK_SIGN, CK_VERIFY };

static const struct crypto_op {
	const char *path;       /* lower case */
	const char *azure;      /* operation name in messages */
	enum crypto_kind kind;
	unsigned perm;
	unsigned op;
} crypto_ops[] = {
	{ "encrypt", "encrypt", CK_ENCRYPT, PERM_ENCRYPT, VLT_OP_ENCRYPT },
	{ "decrypt", "decrypt", CK_DECRYPT, PERM_DECRYPT, VLT_OP_DECRYPT },
	{ "wrapkey", "wrapKey", CK_ENCRYPT, PERM_WRAPKEY, VLT_OP_WRAP },
	{ "unwrapkey", "unwrapKey", CK_DECRYPT, PERM_UNWRAPKEY, VLT_OP_UNWRAP },
	{ "sign", "sign", CK_SIGN, PERM_SIGN, VLT_OP_SIGN },
	{ "verify", "verify", CK_VERIFY, PERM_VERIFY, VLT_OP_VERIFY },
};

static const struct crypto_op *
find_crypto_op(const char *seg)
{
	size_t i;

	for (i = 0; i < sizeof(crypto_ops) / sizeof(crypto_ops[0]); i++)
		if (strcasecmp(seg, crypto_ops[i].path) == 0)
			return &crypto_ops[i];
	return NULL;
}

static int
parse_alg(json_t *body, enum crypto_kind kind, enum vlt_alg *alg,
    struct api_resp *r)
{
	const char *s;
	size_t i;

	if (api_field_string(body, "alg", 1, &s, r) != 0)
		return -1;
	for (i = 0; i < sizeof(alg_tab) / sizeof(alg_tab[0]); i++) {
		if (strcmp(s, alg_tab[i].name) != 0)
			continue;
		int is_enc = alg_tab[i].alg <= VLT_ALG_RSA1_5;
		if (is_enc != (kind == CK_ENCRYPT || kind == CK_DECRYPT))
			break;
		*alg = alg_tab[i].alg;
		return 0;
	}
	api_resp_error(r, 400, "BadParameter",
	    "The field 'alg' holds an algorithm that is unknown or not "
	    "valid for this operation.");
	return -1;
}

static void
crypto(struct api_req *q, struct api_resp *r, const char *name,
    const char *version, const struct crypto_op *co)
{
	uint8_t out[SIG_MAX];
	size_t out_len = sizeof(out), in_len = 0, sig_len = 0;
	uint8_t *in = NULL, *sig = NULL;
	char kv[VLT_VERSION_LEN + 1] = "";
	char kid[512];
	json_t *body = NULL;
	enum vlt_alg alg;
	struct timespec t0, t1;
	int rc, valid = 0;

	q->operation = co->azure;
	q->mutating = 0;
	if (api_authz(q, r, co->perm, co->azure) != 0)
		return;
	if (api_body_object(q, r, &body) != 0)
		return;
	if (parse_alg(body, co->kind, &alg, r) != 0)
		goto out;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	switch (co->kind) {
	case CK_ENCRYPT:
	case CK_DECRYPT:
		if (api_field_b64(body, "value", CRYPTO_IN_MAX, 1, &in,
		    &in_len, r) != 0)
			goto out;
		if (co->kind == CK_ENCRYPT)
			rc = vault_key_encrypt(q->ctx->vault, name, version,
			    co->op, alg, in, in_len, out, &out_len, kv);
		else
			rc = vault_key_decrypt(q->ctx->vault, name, version,
			    co->op, alg, in, in_len, out, &out_len, kv);
		if (co->kind == CK_DECRYPT && rc == VLT_ERR_BAD_PARAM)
			rc = VLT_ERR_DECRYPT;
		break;
	case CK_SIGN:
		if (api_field_b64(body, "value", DIGEST_MAX, 1, &in, &in_len,
		    r) != 0)
			goto out;
		rc = vault_key_sign(q->ctx->vault, name, version, alg, in,
		    in_len, out, &out_len, kv);
		break;
	case CK_VERIFY:
	default:
		if (api_field_b64(body, "digest", DIGEST_MAX, 1, &in, &in_len,
		    r) != 0 || api_field_b64(body, "value", SIG_MAX, 1, &sig,
		    &sig_len, r) != 0)
			goto out;
		rc = vault_key_verify(q->ctx->vault, name, version, alg, in,
		    in_len, sig, sig_len, &valid, kv);
		break;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	api_metrics_observe_token(co->azure, rc == 0,
	    (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	if (rc == VLT_ERR_BAD_PARAM) {
		api_resp_error(r, 400, "BadParameter",
		    "The value's length does not fit the key and algorithm.");
		goto out;
	}
	if (rc != 0) {
		api_resp_vault_error(r, rc, name, co->azure);
		goto out;
	}
	snprintf(kid, sizeof(kid), "%s/keys/%s/%s", q->ctx->vault_url, name,
	    kv);
	set_key_id(q, name, kv);
	if (co->kind == CK_VERIFY)
		api_resp_set(r, 200, json_pack("{s:b}", "value", valid));
	else
		api_resp_set(r, 200, json_pack("{s:s, s:o}", "kid", kid,
		    "value", api_json_b64(out, out_len)));
out:
	OPENSSL_cleanse(out, sizeof(out));
	if (in) {
		OPENSSL_cleanse(in, in_len);
		free(in);
	}
	free(sig);
	json_decref(body);
}

/* ---- routing within /keys ------------------------------------------------- */

static int
is_version(const char *s)
{
	size_t i, n = strlen(s);

	if (n != VLT_VERSION_LEN)
		return 0;
	for (i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return 0;
	return 1;
}

static void
method_not_allowed(struct api_resp *r)
{
	api_resp_error(r, 405, "MethodNotAllowed",
	    "The HTTP method is not allowed on this resource.");
}

#define AUTHZ(perm, pname) do { \
	q->operation = (pname); \
	if (api_authz(q, r, (perm), (pname)) != 0) return; \
} while (0)

void
api_keys(struct api_req *q, struct api_resp *r, char **segs, size_t n)
{
	const char *m = q->method;
	const struct crypto_op *co;

	if (n == 0) {
		if (strcmp(m, "GET") != 0) {
			method_not_allowed(r);
			return;
		}
		AUTHZ(PERM_LIST, "list");
		key_list(q, r);
		return;
	}
	if (check_name(r, segs[0]) != 0)
		return;
	set_key_id(q, segs[0], NULL);
	if (n == 1) {
		if (strcmp(m, "GET") == 0) {
			AUTHZ(PERM_GET, "get");
			key_get(q, r, segs[0], NULL);
			return;
		}
		if (strcmp(m, "PATCH") == 0) {
			AUTHZ(PERM_UPDATE, "update");
			key_update(q, r, segs[0], NULL);
			return;
		}
		if (strcmp(m, "DELETE") == 0) {
			AUTHZ(PERM_DELETE, "delete");
			key_delete(q, r, segs[0]);
			return;
		}
		if (strcmp(m, "PUT") == 0) {
			AUTHZ(PERM_IMPORT, "import");
			api_key_import(q, r, segs[0]);
			return;
		}
		if (strcasecmp(segs[0], "restore") == 0 &&
		    strcmp(m, "POST") == 0) {
			AUTHZ(PERM_RESTORE, "restore");
			api_key_restore(q, r);
			return;
		}
		method_not_allowed(r);
		return;
	}
	if (n == 2) {
		const char *s1 = segs[1];
		if (strcasecmp(s1, "create") == 0) {
			if (strcmp(m, "POST") != 0) {
				method_not_allowed(r);
				return;
			}
			AUTHZ(PERM_CREATE, "create");
			key_create(q, r, segs[0]);
			return;
		}
		if (strcasecmp(s1, "versions") == 0) {
			if (strcmp(m, "GET") != 0) {
				method_not_allowed(r);
				return;
			}
			AUTHZ(PERM_LIST, "list");
			key_versions(q, r, segs[0]);
			return;
		}
		if (strcasecmp(s1, "rotate") == 0) {
			if (strcmp(m, "POST") != 0) {
				method_not_allowed(r);
				return;
			}
			AUTHZ(PERM_ROTATE, "rotate");
			key_rotate(q, r, segs[0]);
			return;
		}
		if ((co = find_crypto_op(s1)) != NULL) {
			if (strcmp(m, "POST") != 0) {
				method_not_allowed(r);
				return;
			}
			crypto(q, r, segs[0], NULL, co);
			return;
		}
		if (strcasecmp(s1, "backup") == 0) {
			if (strcmp(m, "POST") != 0) {
				method_not_allowed(r);
				return;
			}
			AUTHZ(PERM_BACKUP, "backup");
			api_key_backup(q, r, segs[0]);
			return;
		}
		if (strcasecmp(s1, "rotationpolicy") == 0) {
			if (strcmp(m, "GET") == 0) {
				AUTHZ(PERM_GETROTATIONPOLICY,
				    "getrotationpolicy");
				api_rotation_policy_get(q, r, segs[0]);
				return;
			}
			if (strcmp(m, "PUT") == 0) {
				AUTHZ(PERM_SETROTATIONPOLICY,
				    "setrotationpolicy");
				api_rotation_policy_set(q, r, segs[0]);
				return;
			}
			method_not_allowed(r);
			return;
		}
		if (!is_version(s1)) {
			api_resp_vault_error(r, VLT_ERR_NOT_FOUND, segs[0], NULL);
			return;
		}
		set_key_id(q, segs[0], s1);
		if (strcmp(m, "GET") == 0) {
			AUTHZ(PERM_GET, "get");
			key_get(q, r, segs[0], s1);
			return;
		}
		if (strcmp(m, "PATCH") == 0) {
			AUTHZ(PERM_UPDATE, "update");
			key_update(q, r, segs[0], s1);
			return;
		}
		method_not_allowed(r);
		return;
	}
	if (n == 3 && (co = find_crypto_op(segs[2])) != NULL) {
		if (strcmp(m, "POST") != 0) {
			method_not_allowed(r);
			return;
		}
		set_key_id(q, segs[0], segs[1]);
		crypto(q, r, segs[0], segs[1], co);
		return;
	}
	api_resp_error(r, 404, "NotFound", "No such resource.");
}

void
api_deletedkeys(struct api_req *q, struct api_resp *r, char **segs, size_t n)
{
	const char *m = q->method;
	struct vlt_key_info k;
	int rc;

	memset(&k, 0, sizeof(k));
	if (n == 0) {
		struct vlt_key_info *items = NULL;
		size_t cnt = 0, max;
		char *cont, *next = NULL;
		if (strcmp(m, "GET") != 0) {
			method_not_allowed(r);
			return;
		}
		AUTHZ(PERM_LIST, "list");
		if (parse_paging(q, r, &max, &cont) != 0)
			return;
		rc = vault_deleted_list(q->ctx->vault, cont, max, &items, &cnt,
		    &next);
		free(cont);
		send_list(q, r, rc, items, cnt, next, "/deletedkeys", max, 0);
		return;
	}
	if (check_name(r, segs[0]) != 0)
		return;
	snprintf(q->key_id, sizeof(q->key_id), "%s/deletedkeys/%s",
	    q->ctx->vault_url, segs[0]);
	if (n == 1 && strcmp(m, "GET") == 0) {
		AUTHZ(PERM_GET, "get");
		rc = vault_deleted_get(q->ctx->vault, segs[0], &k);
		api_send_key(q, r, rc, segs[0], NULL, &k);
		return;
	}
	if (n == 1 && strcmp(m, "DELETE") == 0) {
		AUTHZ(PERM_PURGE, "purge");
		rc = vault_key_purge(q->ctx->vault, segs[0]);
		if (rc != 0) {
			api_resp_vault_error(r, rc, segs[0], "purge");
			return;
		}
		api_resp_set(r, 204, NULL);
		return;
	}
	if (n == 2 && strcasecmp(segs[1], "recover") == 0) {
		if (strcmp(m, "POST") != 0) {
			method_not_allowed(r);
			return;
		}
		AUTHZ(PERM_RECOVER, "recover");
		rc = vault_key_recover(q->ctx->vault, segs[0], &k);
		api_send_key(q, r, rc, segs[0], NULL, &k);
		return;
	}
	if (n <= 2) {
		method_not_allowed(r);
		return;
	}
	api_resp_error(r, 404, "NotFound", "No such resource.");
}
