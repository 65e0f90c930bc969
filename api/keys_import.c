/*
 * keys_import.c — PUT /keys/{name}: import of a JsonWebKey with private
 * parts (checked and turned into PKCS#8 by keys_jwk.c), or of a BYOK
 * key_hsm transfer blob (unwrapped inside the token by vault/).
 *
 * Owns: the import body (key, Hsm) and the transfer blob's JSON; the
 * attributes, tags and key_ops go through keys_parse.c as create's do.
 * Must never: echo or log key material; keep a private part beyond the
 * request (the decoded PKCS#8 and the JSON strings that carried the parts
 * are wiped before return).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/keys.h"
#include "hsm/base.h"

#define TRANSFER_MAX (16 * 1024)

/* KEK name and version ("" for the latest) from a kid URL of this vault. */
static int
kek_from_kid(struct api_req *q, const char *kid, char *name, size_t ncap,
    char *version, size_t vcap)
{
	size_t ul = strlen(q->vault_url), nl;
	const char *p, *slash;

	name[0] = version[0] = '\0';
	if (strncasecmp(kid, q->vault_url, ul) != 0 ||
	    strncasecmp(kid + ul, "/keys/", 6) != 0)
		return VLT_ERR_BAD_PARAM;
	p = kid + ul + 6;
	slash = strchr(p, '/');
	nl = slash ? (size_t)(slash - p) : strlen(p);
	if (nl == 0 || nl >= ncap)
		return VLT_ERR_BAD_PARAM;
	memcpy(name, p, nl);
	name[nl] = '\0';
	if (slash == NULL)
		return 0;
	if (strchr(slash + 1, '/') != NULL ||
	    str_fmt(version, vcap, "%s", slash + 1) != 0)
		return VLT_ERR_BAD_PARAM;
	return 0;
}

/* The KEK named by the transfer blob's header, and its ciphertext. */
static int
parse_transfer(struct api_req *q, struct api_resp *r, json_t *blob, char *kname,
    size_t ncap, char *kver, size_t vcap, uint8_t **ct, size_t *ct_len)
{
	json_t *hdr = json_object_get(blob, "header");
	const char *kid = json_string_value(json_object_get(hdr, "kid"));
	const char *s = json_string_value(json_object_get(hdr, "enc"));

	if (kid == NULL || s == NULL || strcmp(s, "CKM_RSA_AES_KEY_WRAP") != 0)
		return api_resp_bad(r,
		    "The transfer blob's header must name the key "
		    "exchange key (kid) and enc CKM_RSA_AES_KEY_WRAP.");
	s = json_string_value(json_object_get(hdr, "alg"));
	if (s != NULL && strcmp(s, "dir") != 0)
		return api_resp_bad(r,
		    "The transfer blob's header alg must be 'dir'.");
	if (kek_from_kid(q, kid, kname, ncap, kver, vcap) != 0)
		return api_resp_bad(r,
		    "The transfer blob's kid does not name a key "
		    "exchange key of this vault.");
	return api_field_b64(blob, "ciphertext", TRANSFER_MAX, 1, ct, ct_len,
	    r);
}

static void
import_byok(struct api_req *q, struct api_resp *r, const char *name,
    json_t *key, const struct vlt_import_req *req)
{
	uint8_t *raw = NULL, *ct = NULL;
	size_t raw_len = 0, ct_len = 0;
	char kname[VLT_NAME_MAX + 1], kver[VLT_VERSION_LEN + 1];
	struct vlt_key_info k;
	json_t *blob = NULL;
	int rc;

	memset(&k, 0, sizeof(k));
	if (api_field_b64(key, "key_hsm", TRANSFER_MAX * 2, 1, &raw, &raw_len,
	        r) != 0)
		return;
	blob = json_loadb((const char *)raw, raw_len, JSON_REJECT_DUPLICATES,
	    NULL);
	if (!json_is_object(blob)) {
		(void)api_resp_bad(r,
		    "The field 'key.key_hsm' is not a BYOK transfer "
		    "blob.");
		goto out;
	}
	if (parse_transfer(q, r, blob, kname, sizeof(kname), kver, sizeof(kver),
	        &ct, &ct_len) != 0)
		goto out;
	rc = vault_key_import_byok(q->vault, name, req, kname,
	    kver[0] ? kver : NULL, ct, ct_len, &k);
	if (rc != 0)
		api_resp_vault_error_in(r, rc, API_SUBJ_TRANSFER, name, NULL);
	else
		keys_send_key(q, r, rc, name, k.name, &k);
out:
	json_decref(blob);
	freezero(raw, raw_len);
	freezero(ct, ct_len);
}

/* The import request's parts other than the key material. */
static int
parse_import(json_t *body, json_t *key, enum vlt_kty *kty,
    struct vlt_import_req *req, char **tags, struct api_resp *r)
{
	struct keys_attrs a;
	json_t *v;
	int rc, has;

	if ((rc = keys_parse_kty(key, "key.kty", kty, &req->hsm, r)) != 0)
		return rc;
	v = json_object_get(body, "Hsm");
	if (v == NULL)
		v = json_object_get(body, "hsm");
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_boolean(v))
			return api_resp_bad(r,
			    "The field 'Hsm' must be a boolean.");
		req->hsm = req->hsm || json_is_true(v);
	}
	if ((rc = keys_parse_ops(json_object_get(key, "key_ops"), &req->key_ops,
	         &has, r)) != 0 ||
	    (rc = keys_check_ops(*kty, req->key_ops, r)) != 0 ||
	    (rc = keys_parse_attrs(body, &a, r)) != 0 ||
	    (rc = keys_parse_tags(body, tags, r)) != 0)
		return rc;
	req->enabled = a.has_enabled ? a.enabled : 1;
	req->nbf = a.nbf;
	req->exp = a.exp;
	req->tags = *tags;
	return 0;
}

void
keys_import(struct api_req *q, struct api_resp *r, const struct key_target *t)
{
	struct vlt_import_req req;
	struct vlt_key_info k;
	const struct hsm_curve_info *crv = NULL;
	json_t *body = NULL, *key = NULL;
	enum vlt_kty kty;
	uint8_t *pkcs8 = NULL;
	size_t p8len = 0;
	char *tags = NULL;
	int rc;

	memset(&req, 0, sizeof(req));
	memset(&k, 0, sizeof(k));
	if (api_body_object(q, r, &body) != 0)
		return;
	key = json_object_get(body, "key");
	if (!json_is_object(key)) {
		(void)api_resp_bad(r,
		    "The field 'key' must be a JsonWebKey object.");
		goto out;
	}
	if (parse_import(body, key, &kty, &req, &tags, r) != 0)
		goto out;
	if (json_object_get(key, "key_hsm") != NULL) {
		req.kty = kty;
		if (kty == VLT_KTY_EC &&
		    keys_parse_crv(key, "key.crv", 0, &crv, r) != 0)
			goto out;
		req.crv = crv != NULL ? (enum vlt_curve)crv->code :
		                        VLT_CRV_NONE;
		import_byok(q, r, t->name, key, &req);
		goto out;
	}
	if (keys_jwk_pkcs8(key, kty, &pkcs8, &p8len, r) != 0)
		goto out;
	rc = vault_key_import(q->vault, t->name, &req, pkcs8, p8len, &k);
	freezero(pkcs8, p8len);
	keys_send_key(q, r, rc, t->name, k.name, &k);
out:
	keys_jwk_wipe(key);
	free(tags);
	json_decref(body);
}
