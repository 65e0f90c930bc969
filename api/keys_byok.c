/*
 * keys_byok.c — key import (a JsonWebKey with private parts, or a BYOK
 * key_hsm transfer blob), backup, restore and rotation policies.
 *
 * Owns: parsing and validating imported JWKs with OpenSSL (consistent CRT
 * parts, point on the curve, sizes) into a PKCS#8 that goes straight to
 * vault/; the BYOK transfer blob's JSON; the rotation policy's JSON and
 * ISO 8601 durations with Azure's minimums.
 *
 * Must never: echo or log key material (errors name fields, never
 * values); keep a private part beyond the request (every decoded copy,
 * and the JSON strings that carried them, are wiped before return).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/x509.h>

#include "api/api.h"

#define TAGS_MAX 15
#define TAG_NAME_MAX 512
#define TAG_VALUE_MAX 256
#define PART_MAX 1024          /* RSA-4096 parts are 512 bytes */
#define TRANSFER_MAX (16 * 1024)
#define BACKUP_MAX (API_BODY_MAX)
#define DAY 86400LL

static void
bad(struct api_resp *r, const char *msg)
{
	api_resp_error(r, 400, "BadParameter", "%s", msg);
}

/* ---- shared request parts -------------------------------------------------- */

static int
parse_ops(json_t *arr, unsigned *out, struct api_resp *r)
{
	unsigned bit;
	size_t i;
	json_t *v;

	*out = 0;
	if (arr == NULL || json_is_null(arr))
		return 0;
	if (!json_is_array(arr)) {
		bad(r, "The field 'key_ops' must be an array of strings.");
		return -1;
	}
	json_array_foreach(arr, i, v) {
		const char *s = json_string_value(v);
		if (s == NULL || api_key_op_bit(s, &bit) != 0) {
			bad(r, "The field 'key_ops' holds an unknown key "
			    "operation.");
			return -1;
		}
		*out |= bit;
	}
	return 0;
}

/* attributes and tags of an import body into req; *tags malloc'd */
static int
parse_common(json_t *body, struct vlt_import_req *req, char **tags,
    struct api_resp *r)
{
	json_t *a = json_object_get(body, "attributes"), *v, *t;
	const char *k;
	int has;

	req->enabled = 1;
	*tags = NULL;
	if (a != NULL && !json_is_null(a)) {
		if (!json_is_object(a)) {
			bad(r, "The field 'attributes' must be an object.");
			return -1;
		}
		v = json_object_get(a, "enabled");
		if (v != NULL && !json_is_null(v)) {
			if (!json_is_boolean(v)) {
				bad(r, "The field 'attributes.enabled' must be "
				    "a boolean.");
				return -1;
			}
			req->enabled = json_is_true(v);
		}
		v = json_object_get(a, "exportable");
		if (v != NULL && json_is_true(v)) {
			bad(r, "Exportable keys are not supported: private "
			    "keys never leave this vault's HSM.");
			return -1;
		}
		if (api_parse_time(a, "nbf", &has, &req->nbf, r) != 0 ||
		    api_parse_time(a, "exp", &has, &req->exp, r) != 0)
			return -1;
	}
	t = json_object_get(body, "tags");
	if (t == NULL || json_is_null(t))
		return 0;
	if (!json_is_object(t) || json_object_size(t) > TAGS_MAX) {
		bad(r, "The field 'tags' must be an object of at most 15 "
		    "strings.");
		return -1;
	}
	json_object_foreach(t, k, v) {
		if (!json_is_string(v) || strlen(k) > TAG_NAME_MAX ||
		    json_string_length(v) > TAG_VALUE_MAX) {
			bad(r, "Tag names are at most 512 characters and "
			    "values strings of at most 256.");
			return -1;
		}
	}
	if ((*tags = json_dumps(t, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		api_resp_vault_error(r, VLT_ERR_NO_MEMORY, NULL, NULL);
		return -1;
	}
	return 0;
}

/* Overwrites a JSON string's text in place (the private parts). */
static void
wipe_json_string(json_t *obj, const char *field)
{
	json_t *v = json_object_get(obj, field);

	if (json_is_string(v))
		OPENSSL_cleanse((char *)json_string_value(v),
		    json_string_length(v));
}

/* ---- JWK with private parts -------------------------------------------------- */

struct part {
	const char *jwk;         /* JWK field */
	const char *param;       /* OpenSSL parameter */
	uint8_t *b;
	size_t len;
	BIGNUM *bn;
};

static int
decode_part(json_t *key, struct part *p, struct api_resp *r)
{
	const char *s;

	if (api_field_string(key, p->jwk, 1, &s, r) != 0)
		return -1;
	if (strlen(s) > (PART_MAX / 3 + 1) * 4 + 4 ||
	    policy_b64url_decode(s, strlen(s), &p->b, &p->len) != 0 ||
	    p->len == 0 || p->len > PART_MAX) {
		api_resp_error(r, 400, "BadParameter", "The field 'key.%s' is "
		    "not valid base64url of a key part.", p->jwk);
		return -1;
	}
	return 0;
}

static void
parts_free(struct part *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i].b != NULL)
			OPENSSL_clear_free(p[i].b, p[i].len);
		BN_clear_free(p[i].bn);
		p[i].b = NULL;
		p[i].bn = NULL;
	}
}

static EVP_PKEY *
fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pk = NULL;

	if (params != NULL && c != NULL && EVP_PKEY_fromdata_init(c) == 1 &&
	    EVP_PKEY_fromdata(c, &pk, EVP_PKEY_KEYPAIR, params) != 1)
		pk = NULL;
	OSSL_PARAM_free(params);
	EVP_PKEY_CTX_free(c);
	return pk;
}

static int
key_checks(EVP_PKEY *pk)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pk, NULL);
	int ok = c != NULL && EVP_PKEY_public_check(c) == 1 &&
	    EVP_PKEY_private_check(c) == 1 && EVP_PKEY_pairwise_check(c) == 1;

	EVP_PKEY_CTX_free(c);
	return ok;
}

/* *pkcs8 (OPENSSL_malloc'd) from a JWK; -1 with r filled. */
static int
jwk_to_pkcs8(json_t *key, int is_rsa, uint8_t **pkcs8, size_t *len,
    struct api_resp *r)
{
	struct part rsa[] = {
		{ "n", OSSL_PKEY_PARAM_RSA_N, NULL, 0, NULL },
		{ "e", OSSL_PKEY_PARAM_RSA_E, NULL, 0, NULL },
		{ "d", OSSL_PKEY_PARAM_RSA_D, NULL, 0, NULL },
		{ "p", OSSL_PKEY_PARAM_RSA_FACTOR1, NULL, 0, NULL },
		{ "q", OSSL_PKEY_PARAM_RSA_FACTOR2, NULL, 0, NULL },
		{ "dp", OSSL_PKEY_PARAM_RSA_EXPONENT1, NULL, 0, NULL },
		{ "dq", OSSL_PKEY_PARAM_RSA_EXPONENT2, NULL, 0, NULL },
		{ "qi", OSSL_PKEY_PARAM_RSA_COEFFICIENT1, NULL, 0, NULL },
	};
	struct part ec[] = {
		{ "x", NULL, NULL, 0, NULL }, { "y", NULL, NULL, 0, NULL },
		{ "d", OSSL_PKEY_PARAM_PRIV_KEY, NULL, 0, NULL },
	};
	struct part *ps = is_rsa ? rsa : ec;
	size_t np = is_rsa ? 8 : 3, i, field = 0;
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	EVP_PKEY *pk = NULL;
	uint8_t pt[1 + 2 * 66];
	unsigned char *der = NULL;
	const char *crv = NULL, *group = NULL;
	int n, rc = -1, bits;

	*pkcs8 = NULL;
	if (bld == NULL) {
		api_resp_vault_error(r, VLT_ERR_NO_MEMORY, NULL, NULL);
		goto out;
	}
	if (!is_rsa) {
		if (api_field_string(key, "crv", 1, &crv, r) != 0)
			goto out;
		if (strcmp(crv, "P-256") == 0) {
			group = "prime256v1";
			field = 32;
		} else if (strcmp(crv, "P-384") == 0) {
			group = "secp384r1";
			field = 48;
		} else if (strcmp(crv, "P-521") == 0) {
			group = "secp521r1";
			field = 66;
		} else {
			bad(r, "The field 'key.crv' must be P-256, P-384 or "
			    "P-521.");
			goto out;
		}
	}
	for (i = 0; i < np; i++)
		if (decode_part(key, &ps[i], r) != 0)
			goto out;
	if (is_rsa) {
		for (i = 0; i < np; i++)
			if ((ps[i].bn = BN_bin2bn(ps[i].b, (int)ps[i].len,
			    NULL)) == NULL || !OSSL_PARAM_BLD_push_BN(bld,
			    ps[i].param, ps[i].bn))
				goto fail;
		if ((pk = fromdata("RSA", bld)) == NULL)
			goto fail;
		bits = EVP_PKEY_get_bits(pk);
		if (bits != 2048 && bits != 3072 && bits != 4096) {
			bad(r, "The RSA key size must be 2048, 3072 or 4096 "
			    "bits.");
			goto out;
		}
	} else {
		if (ps[0].len != field || ps[1].len != field ||
		    ps[2].len != field) {
			bad(r, "The EC key's x, y and d must be as long as the "
			    "curve's field.");
			goto out;
		}
		pt[0] = 0x04;
		memcpy(pt + 1, ps[0].b, field);
		memcpy(pt + 1 + field, ps[1].b, field);
		if ((ps[2].bn = BN_bin2bn(ps[2].b, (int)field, NULL)) == NULL ||
		    !OSSL_PARAM_BLD_push_utf8_string(bld,
		    OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld,
		    OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * field) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY,
		    ps[2].bn))
			goto fail;
		if ((pk = fromdata("EC", bld)) == NULL)
			goto fail;
	}
	if (!key_checks(pk))
		goto fail;
	if ((p8 = EVP_PKEY2PKCS8(pk)) == NULL ||
	    (n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der)) <= 0) {
		api_resp_vault_error(r, VLT_ERR_INTERNAL, NULL, NULL);
		goto out;
	}
	*pkcs8 = der;
	*len = (size_t)n;
	rc = 0;
	goto out;
fail:
	bad(r, is_rsa ? "The RSA key is inconsistent: its parts do not form "
	    "a valid key pair." : "The EC key is invalid: the point is not on "
	    "the curve or does not match the private key.");
out:
	OPENSSL_cleanse(pt, sizeof(pt));
	parts_free(ps, np);
	OSSL_PARAM_BLD_free(bld);
	PKCS8_PRIV_KEY_INFO_free(p8);
	EVP_PKEY_free(pk);
	ERR_clear_error();
	return rc;
}

/* ---- BYOK ------------------------------------------------------------------ */

/* KEK name and version from a kid URL of this vault. */
static int
kek_from_kid(struct api_req *q, const char *kid, char *name, size_t ncap,
    char *version, size_t vcap)
{
	size_t ul = strlen(q->ctx->vault_url);
	const char *p, *slash;

	name[0] = version[0] = '\0';
	if (strncasecmp(kid, q->ctx->vault_url, ul) != 0 ||
	    strncasecmp(kid + ul, "/keys/", 6) != 0)
		return -1;
	p = kid + ul + 6;
	slash = strchr(p, '/');
	if (slash == NULL) {
		if (strlen(p) == 0 || strlen(p) >= ncap)
			return -1;
		snprintf(name, ncap, "%s", p);
		return 0;
	}
	if ((size_t)(slash - p) == 0 || (size_t)(slash - p) >= ncap ||
	    strlen(slash + 1) >= vcap || strchr(slash + 1, '/') != NULL)
		return -1;
	memcpy(name, p, (size_t)(slash - p));
	name[slash - p] = '\0';
	snprintf(version, vcap, "%s", slash + 1);
	return 0;
}

static void
import_byok(struct api_req *q, struct api_resp *r, const char *name,
    json_t *key, const struct vlt_import_req *req)
{
	uint8_t *raw = NULL, *ct = NULL;
	size_t raw_len = 0, ct_len = 0;
	json_t *blob = NULL, *hdr;
	const char *kid, *s;
	char kname[VLT_NAME_MAX + 1], kver[VLT_VERSION_LEN + 1];
	struct vlt_key_info k;
	int rc;

	memset(&k, 0, sizeof(k));
	if (api_field_b64(key, "key_hsm", TRANSFER_MAX * 2, 1, &raw, &raw_len,
	    r) != 0)
		return;
	blob = json_loadb((const char *)raw, raw_len, JSON_REJECT_DUPLICATES,
	    NULL);
	if (!json_is_object(blob)) {
		bad(r, "The field 'key.key_hsm' is not a BYOK transfer blob.");
		goto out;
	}
	hdr = json_object_get(blob, "header");
	kid = json_string_value(json_object_get(hdr, "kid"));
	s = json_string_value(json_object_get(hdr, "enc"));
	if (kid == NULL || s == NULL ||
	    strcmp(s, "CKM_RSA_AES_KEY_WRAP") != 0) {
		bad(r, "The transfer blob's header must name the key exchange "
		    "key (kid) and enc CKM_RSA_AES_KEY_WRAP.");
		goto out;
	}
	s = json_string_value(json_object_get(hdr, "alg"));
	if (s != NULL && strcmp(s, "dir") != 0) {
		bad(r, "The transfer blob's header alg must be 'dir'.");
		goto out;
	}
	if (kek_from_kid(q, kid, kname, sizeof(kname), kver,
	    sizeof(kver)) != 0) {
		bad(r, "The transfer blob's kid does not name a key exchange "
		    "key of this vault.");
		goto out;
	}
	if (api_field_b64(blob, "ciphertext", TRANSFER_MAX, 1, &ct, &ct_len,
	    r) != 0)
		goto out;
	rc = vault_key_import_byok(q->ctx->vault, name, req, kname,
	    kver[0] ? kver : NULL, ct, ct_len, &k);
	if (rc == VLT_ERR_BAD_PARAM) {
		bad(r, "The transfer blob cannot be imported: it is not for "
		    "this key exchange key, the key exchange key does not "
		    "allow import, or the blob is damaged.");
		goto out;
	}
	api_send_key(q, r, rc, name, k.name, &k);
out:
	json_decref(blob);
	free(raw);
	free(ct);
}

void
api_key_import(struct api_req *q, struct api_resp *r, const char *name)
{
	static const char *const priv[] = { "d", "p", "q", "dp", "dq", "qi" };
	struct vlt_import_req req;
	struct vlt_key_info k;
	json_t *body = NULL, *key, *v;
	const char *kty;
	uint8_t *pkcs8 = NULL;
	size_t p8len = 0, i;
	char *tags = NULL;
	int is_rsa, rc;

	memset(&req, 0, sizeof(req));
	memset(&k, 0, sizeof(k));
	if (api_body_object(q, r, &body) != 0)
		return;
	key = json_object_get(body, "key");
	if (!json_is_object(key)) {
		bad(r, "The field 'key' must be a JsonWebKey object.");
		goto out;
	}
	if (api_field_string(key, "kty", 1, &kty, r) != 0)
		goto out;
	if (strcmp(kty, "RSA") == 0 || strcmp(kty, "RSA-HSM") == 0)
		is_rsa = 1;
	else if (strcmp(kty, "EC") == 0 || strcmp(kty, "EC-HSM") == 0)
		is_rsa = 0;
	else {
		bad(r, "The field 'key.kty' must be one of RSA, RSA-HSM, EC, "
		    "EC-HSM.");
		goto out;
	}
	req.hsm = strstr(kty, "-HSM") != NULL;
	v = json_object_get(body, "Hsm");
	if (v == NULL)
		v = json_object_get(body, "hsm");
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_boolean(v)) {
			bad(r, "The field 'Hsm' must be a boolean.");
			goto out;
		}
		req.hsm = req.hsm || json_is_true(v);
	}
	if (parse_ops(json_object_get(key, "key_ops"), &req.key_ops, r) != 0)
		goto out;
	if (!is_rsa && (req.key_ops & ~(unsigned)(VLT_OP_SIGN |
	    VLT_OP_VERIFY))) {
		bad(r, "Unsupported key operation(s) for an EC key: only sign "
		    "and verify are possible.");
		goto out;
	}
	if (parse_common(body, &req, &tags, r) != 0)
		goto out;
	req.tags = tags;
	if (json_object_get(key, "key_hsm") != NULL) {
		import_byok(q, r, name, key, &req);
		goto out;
	}
	if (jwk_to_pkcs8(key, is_rsa, &pkcs8, &p8len, r) != 0)
		goto out;
	rc = vault_key_import(q->ctx->vault, name, &req, pkcs8, p8len, &k);
	OPENSSL_clear_free(pkcs8, p8len);
	pkcs8 = NULL;
	api_send_key(q, r, rc, name, k.name, &k);
out:
	if (json_is_object(key))
		for (i = 0; i < sizeof(priv) / sizeof(priv[0]); i++)
			wipe_json_string(key, priv[i]);
	free(tags);
	json_decref(body);
}

/* ---- backup and restore ---------------------------------------------------- */

void
api_key_backup(struct api_req *q, struct api_resp *r, const char *name)
{
	uint8_t *blob = NULL;
	size_t len = 0;
	int rc;

	rc = vault_key_backup(q->ctx->vault, name, &blob, &len);
	if (rc != 0) {
		api_resp_vault_error(r, rc, name, NULL);
		return;
	}
	api_resp_set(r, 200, json_pack("{s:o}", "value",
	    api_json_b64(blob, len)));
	free(blob);
}

void
api_key_restore(struct api_req *q, struct api_resp *r)
{
	struct vlt_key_info k;
	json_t *body = NULL;
	uint8_t *blob = NULL;
	size_t len = 0;
	int rc;

	memset(&k, 0, sizeof(k));
	if (api_body_object(q, r, &body) != 0)
		return;
	if (api_field_b64(body, "value", BACKUP_MAX, 1, &blob, &len, r) != 0)
		goto out;
	rc = vault_key_restore(q->ctx->vault, blob, len, &k);
	if (rc == VLT_ERR_BAD_PARAM) {
		bad(r, "The backup blob is invalid, damaged, or was made by "
		    "a vault with another security domain.");
		goto out;
	}
	if (rc == VLT_ERR_CONFLICT) {
		api_resp_error(r, 409, "Conflict", "A key with the backup's "
		    "name already exists in this vault (live or deleted).");
		goto out;
	}
	api_send_key(q, r, rc, NULL, k.name, &k);
out:
	free(blob);
	json_decref(body);
}

/* ---- rotation policies -------------------------------------------------------- */

/* ISO 8601 duration (PnYnMnWnD and TnHnMnS) in seconds; -1 if malformed. */
static int64_t
duration_secs(const char *s)
{
	int64_t total = 0, n;
	int in_time = 0, any = 0;
	const char *p = s;

	if (s == NULL || strlen(s) >= VLT_DURATION_MAX || *p++ != 'P')
		return -1;
	while (*p != '\0') {
		if (*p == 'T') {
			if (in_time)
				return -1;
			in_time = 1;
			p++;
			continue;
		}
		if (!isdigit((unsigned char)*p))
			return -1;
		n = 0;
		while (isdigit((unsigned char)*p)) {
			n = n * 10 + (*p++ - '0');
			if (n > 100000)
				return -1;
		}
		switch (*p++) {
		case 'Y': if (in_time) return -1; total += n * 365 * DAY; break;
		case 'M': total += in_time ? n * 60 : n * 30 * DAY; break;
		case 'W': if (in_time) return -1; total += n * 7 * DAY; break;
		case 'D': if (in_time) return -1; total += n * DAY; break;
		case 'H': if (!in_time) return -1; total += n * 3600; break;
		case 'S': if (!in_time) return -1; total += n; break;
		default: return -1;
		}
		any = 1;
	}
	return any ? total : -1;
}

static json_t *
policy_json(struct api_req *q, const char *name,
    const struct vlt_rotation_policy *p)
{
	json_t *doc, *acts = json_array(), *attrs = json_object();
	char id[512];
	size_t i;

	snprintf(id, sizeof(id), "%s/keys/%s/rotationpolicy",
	    q->ctx->vault_url, name);
	if (p->created == 0) {
		/* Azure's answer for a key without a policy */
		json_array_append_new(acts, json_pack("{s:{s:s}, s:{s:s}}",
		    "trigger", "timeBeforeExpiry", "P30D", "action", "type",
		    "Notify"));
	}
	for (i = 0; i < p->n; i++)
		json_array_append_new(acts, json_pack("{s:{s:s}, s:{s:s}}",
		    "trigger", p->a[i].trigger == VLT_ROT_AFTER_CREATE ?
		    "timeAfterCreate" : "timeBeforeExpiry", p->a[i].duration,
		    "action", "type", p->a[i].action == VLT_ROT_ROTATE ?
		    "Rotate" : "Notify"));
	if (p->expiry[0] != '\0')
		json_object_set_new(attrs, "expiryTime",
		    json_string(p->expiry));
	if (p->created != 0) {
		json_object_set_new(attrs, "created",
		    json_integer(p->created));
		json_object_set_new(attrs, "updated",
		    json_integer(p->updated));
	}
	doc = json_pack("{s:s, s:o, s:o}", "id", id, "lifetimeActions", acts,
	    "attributes", attrs);
	return doc;
}

void
api_rotation_policy_get(struct api_req *q, struct api_resp *r,
    const char *name)
{
	struct vlt_rotation_policy p;
	int rc;

	rc = vault_rotation_policy_get(q->ctx->vault, name, &p);
	if (rc != 0) {
		api_resp_vault_error(r, rc, name, NULL);
		return;
	}
	api_resp_set(r, 200, policy_json(q, name, &p));
}

static int
parse_policy(json_t *body, struct vlt_rotation_policy *p, struct api_resp *r)
{
	json_t *acts = json_object_get(body, "lifetimeActions"), *a, *trig,
	    *attrs = json_object_get(body, "attributes"), *v;
	const char *type, *dur = NULL, *tk;
	size_t i, rotates = 0;
	int64_t secs;

	memset(p, 0, sizeof(*p));
	if (attrs != NULL && !json_is_null(attrs)) {
		if (!json_is_object(attrs)) {
			bad(r, "The field 'attributes' must be an object.");
			return -1;
		}
		v = json_object_get(attrs, "expiryTime");
		if (v != NULL && !json_is_null(v)) {
			dur = json_string_value(v);
			secs = duration_secs(dur);
			if (secs < 0) {
				bad(r, "The field 'attributes.expiryTime' must "
				    "be an ISO 8601 duration.");
				return -1;
			}
			if (secs < 28 * DAY) {
				bad(r, "The rotation policy's expiryTime must "
				    "be at least 28 days (P28D).");
				return -1;
			}
			p->expiry_secs = secs;
			snprintf(p->expiry, sizeof(p->expiry), "%s", dur);
		}
	}
	if (acts == NULL || json_is_null(acts))
		return 0;
	if (!json_is_array(acts) || json_array_size(acts) >
	    VLT_ROT_ACTIONS_MAX) {
		bad(r, "The field 'lifetimeActions' must be an array of at "
		    "most 4 actions.");
		return -1;
	}
	json_array_foreach(acts, i, a) {
		struct vlt_rotation_action *x = &p->a[p->n];
		trig = json_object_get(a, "trigger");
		type = json_string_value(json_object_get(
		    json_object_get(a, "action"), "type"));
		if (!json_is_object(trig) || json_object_size(trig) != 1 ||
		    type == NULL) {
			bad(r, "Each lifetime action needs one trigger and an "
			    "action type.");
			return -1;
		}
		if (strcasecmp(type, "Rotate") == 0)
			x->action = VLT_ROT_ROTATE;
		else if (strcasecmp(type, "Notify") == 0)
			x->action = VLT_ROT_NOTIFY;
		else {
			bad(r, "The lifetime action type must be Rotate or "
			    "Notify.");
			return -1;
		}
		json_object_foreach(trig, tk, v) {
			if (strcmp(tk, "timeAfterCreate") == 0)
				x->trigger = VLT_ROT_AFTER_CREATE;
			else if (strcmp(tk, "timeBeforeExpiry") == 0)
				x->trigger = VLT_ROT_BEFORE_EXPIRY;
			dur = json_string_value(v);
		}
		if (x->trigger == 0 || (secs = duration_secs(dur)) < 0) {
			bad(r, "A trigger is timeAfterCreate or "
			    "timeBeforeExpiry with an ISO 8601 duration.");
			return -1;
		}
		if (secs < 7 * DAY) {
			bad(r, "A rotation policy trigger must be at least 7 "
			    "days (P7D).");
			return -1;
		}
		if (x->action == VLT_ROT_NOTIFY &&
		    x->trigger != VLT_ROT_BEFORE_EXPIRY) {
			bad(r, "A Notify action needs a timeBeforeExpiry "
			    "trigger.");
			return -1;
		}
		if (x->action == VLT_ROT_ROTATE && ++rotates > 1) {
			bad(r, "A rotation policy has at most one Rotate "
			    "action.");
			return -1;
		}
		if (p->expiry_secs != 0 && secs > p->expiry_secs - 7 * DAY &&
		    x->trigger == VLT_ROT_AFTER_CREATE) {
			bad(r, "timeAfterCreate must be at least 7 days shorter "
			    "than expiryTime.");
			return -1;
		}
		x->secs = secs;
		snprintf(x->duration, sizeof(x->duration), "%s", dur);
		p->n++;
	}
	return 0;
}

void
api_rotation_policy_set(struct api_req *q, struct api_resp *r,
    const char *name)
{
	struct vlt_rotation_policy p, out;
	json_t *body = NULL;
	int rc;

	if (api_body_object(q, r, &body) != 0)
		return;
	if (parse_policy(body, &p, r) != 0)
		goto out;
	rc = vault_rotation_policy_set(q->ctx->vault, name, &p, &out);
	if (rc != 0) {
		api_resp_vault_error(r, rc, name, NULL);
		goto out;
	}
	api_resp_set(r, 200, policy_json(q, name, &out));
out:
	json_decref(body);
}
