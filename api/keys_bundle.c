/*
 * keys_bundle.c — how a key looks to a client: KeyBundle, KeyItem and
 * their Deleted* forms, list pages with maxresults and nextLink, key ids
 * (kid, recoveryId, and the audit event's key id).
 *
 * Must never: put a private part in a bundle (the JWK is rendered from
 * the public key only, by keys_jwk.c).
 */
#include <stdlib.h>
#include <string.h>

#include "api/keys.h"
#include "hsm/base.h"

#define SKIPTOKEN_MAX 1024
#define LINK_MAX 2048

int
keys_kid(struct api_req *q, const char *name, const char *version, char *out,
    size_t cap)
{
	int has_v = version != NULL && *version != '\0';

	if (str_fmt(out, cap, "%s/keys/%s%s%s", q->vault_url, name,
	        has_v ? "/" : "", has_v ? version : "") != 0)
		return VLT_ERR_BAD_PARAM;
	return 0;
}

int
keys_set_key_id(struct api_req *q, struct api_resp *r, const char *name,
    const char *version, int deleted)
{
	int rc;

	if (deleted)
		rc = str_fmt(q->key_id, sizeof(q->key_id), "%s/deletedkeys/%s",
		         q->vault_url, name) != 0 ?
		    VLT_ERR_BAD_PARAM :
		    0;
	else
		rc = keys_kid(q, name, version, q->key_id, sizeof(q->key_id));
	if (rc != 0)
		api_resp_error(r, 400, "BadParameter",
		    "The key identifier is too long.");
	return rc;
}

/* The vault's retention settings (they shape every bundle's attributes). */
static void
settings_or_default(struct api_req *q, struct vlt_settings *s)
{
	if (vault_settings_get(q->vault, s) != 0) {
		s->retention_days = 90;
		s->purge_protection = 0;
	}
}

static json_t *
attrs_json(const struct vlt_key_info *k, const struct vlt_settings *s)
{
	json_t *a = json_object();
	int bad = 0;

	api_json_put(a, "enabled", json_boolean(k->attrs.enabled), &bad);
	if (k->attrs.nbf)
		api_json_put(a, "nbf", json_integer(k->attrs.nbf), &bad);
	if (k->attrs.exp)
		api_json_put(a, "exp", json_integer(k->attrs.exp), &bad);
	api_json_put(a, "created", json_integer(k->attrs.created), &bad);
	api_json_put(a, "updated", json_integer(k->attrs.updated), &bad);
	api_json_put(a, "recoveryLevel", json_string(vault_recovery_level(s)),
	    &bad);
	api_json_put(a, "recoverableDays", json_integer(s->retention_days),
	    &bad);
	api_json_put(a, "exportable", json_false(), &bad);
	if (bad) {
		json_decref(a);
		return NULL;
	}
	return a;
}

/* tags and the deleted-key fields of b */
static int
extras_json(struct api_req *q, json_t *b, const struct vlt_key_info *k)
{
	char rid[512];
	int bad = 0;

	if (k->tags) {
		json_t *t = json_loads(k->tags, 0, NULL);
		if (t == NULL)
			return VLT_ERR_NO_MEMORY; /* the store holds valid JSON */
		if (json_object_size(t) > 0)
			api_json_put(b, "tags", t, &bad);
		else
			json_decref(t);
	}
	if (k->deleted_date == 0)
		return bad ? VLT_ERR_NO_MEMORY : 0;
	if (str_fmt(rid, sizeof(rid), "%s/deletedkeys/%s", q->vault_url,
	        k->name) != 0)
		return VLT_ERR_INTERNAL;
	api_json_put(b, "recoveryId", json_string(rid), &bad);
	api_json_put(b, "deletedDate", json_integer(k->deleted_date), &bad);
	api_json_put(b, "scheduledPurgeDate",
	    json_integer(k->scheduled_purge_date), &bad);
	return bad ? VLT_ERR_NO_MEMORY : 0;
}

static json_t *
bundle_json(struct api_req *q, const struct vlt_key_info *k,
    enum keys_shape shape, const struct vlt_settings *s)
{
	char kid[512];
	json_t *b, *jwk;
	int bad = 0;

	if (keys_kid(q, k->name, shape == KEYS_ITEM_KEY ? NULL : k->version,
	        kid, sizeof(kid)) != 0)
		return NULL;
	b = json_object();
	if (shape != KEYS_BUNDLE) {
		api_json_put(b, "kid", json_string(kid), &bad);
	} else {
		if ((jwk = keys_jwk_public(k, kid)) == NULL) {
			json_decref(b);
			return NULL;
		}
		api_json_put(b, "key", jwk, &bad);
	}
	api_json_put(b, "attributes", attrs_json(k, s), &bad);
	if (bad || extras_json(q, b, k) != 0) {
		json_decref(b);
		return NULL;
	}
	return b;
}

void
keys_send_key(struct api_req *q, struct api_resp *r, int rc,
    const char *err_name, const char *id_name, struct vlt_key_info *k)
{
	struct vlt_settings s;
	json_t *b;

	if (rc != 0) {
		api_resp_vault_error(r, rc, err_name, NULL);
		goto out;
	}
	if (id_name != NULL &&
	    keys_set_key_id(q, r, id_name, k->version, 0) != 0)
		goto out;
	settings_or_default(q, &s);
	if ((b = bundle_json(q, k, KEYS_BUNDLE, &s)) == NULL)
		api_resp_vault_error(r, VLT_ERR_INTERNAL, k->name, NULL);
	else
		api_resp_set(r, 200, b);
out:
	vlt_key_info_clear(k);
}

/* ---- paging ----------------------------------------------------------------- */

static int
parse_skiptoken(const char *tok, char **cont, struct api_resp *r)
{
	uint8_t *raw = NULL;
	size_t len = 0;

	if (strlen(tok) > SKIPTOKEN_MAX ||
	    policy_b64url_decode(tok, strlen(tok), &raw, &len) != 0 ||
	    len == 0 || memchr(raw, 0, len)) {
		free(raw);
		api_resp_error(r, 400, "BadParameter",
		    "The continuation token ($skiptoken) is invalid.");
		return VLT_ERR_BAD_PARAM;
	}
	if ((*cont = calloc(1, len + 1)) == NULL) {
		free(raw);
		api_resp_vault_error(r, VLT_ERR_NO_MEMORY, NULL, NULL);
		return VLT_ERR_NO_MEMORY;
	}
	memcpy(*cont, raw, len);
	free(raw);
	return 0;
}

int
keys_parse_paging(struct api_req *q, struct api_resp *r, size_t *max,
    char **cont)
{
	uint64_t v;

	*max = VLT_MAX_RESULTS;
	*cont = NULL;
	if (q->maxresults) {
		if (parse_u64(q->maxresults, VLT_MAX_RESULTS, &v) != 0 ||
		    v < 1) {
			api_resp_error(r, 400, "BadParameter",
			    "maxresults must be an integer from 1 to 25.");
			return VLT_ERR_BAD_PARAM;
		}
		*max = (size_t)v;
	}
	if (q->skiptoken && *q->skiptoken)
		return parse_skiptoken(q->skiptoken, cont, r);
	return 0;
}

/* doc.nextLink: the next page's absolute URL, or null on the last */
static int
next_link(struct api_req *q, json_t *doc, const char *next, const char *path,
    size_t max)
{
	char *tok = NULL, link[LINK_MAX];
	int rc = 0;

	if (next == NULL)
		return json_object_set_new(doc, "nextLink", json_null()) == 0 ?
		    0 :
		    VLT_ERR_NO_MEMORY;
	if (policy_b64url_encode((const uint8_t *)next, strlen(next), &tok) !=
	    0)
		return VLT_ERR_NO_MEMORY;
	if (str_fmt(link, sizeof(link),
	        "%s%s?api-version=%s&maxresults=%zu&$skiptoken=%s",
	        q->vault_url, path, q->api_version, max, tok) != 0)
		rc = VLT_ERR_INTERNAL;
	else if (json_object_set_new(doc, "nextLink", json_string(link)) != 0)
		rc = VLT_ERR_NO_MEMORY;
	free(tok);
	return rc;
}

void
keys_send_list(struct api_req *q, struct api_resp *r, int rc,
    struct vlt_key_info *items, size_t n, char *next, const char *path,
    size_t max, enum keys_shape shape)
{
	struct vlt_settings s;
	json_t *arr, *doc;
	size_t i;

	if (rc != 0) {
		api_resp_vault_error(r, rc, NULL, NULL);
		goto out;
	}
	settings_or_default(q, &s); /* once per page, not per item */
	arr = json_array();
	for (i = 0; i < n; i++) {
		json_t *it = bundle_json(q, &items[i], shape, &s);
		if (it)
			json_array_append_new(arr, it);
	}
	doc = json_pack("{s:o}", "value", arr);
	if (doc == NULL || next_link(q, doc, next, path, max) != 0) {
		json_decref(doc);
		api_resp_vault_error(r, VLT_ERR_INTERNAL, NULL, NULL);
		goto out;
	}
	api_resp_set(r, 200, doc);
out:
	vlt_key_info_free_array(items, n);
	free(next);
}
