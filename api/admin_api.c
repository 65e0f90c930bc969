/*
 * admin_api.c — the management REST API under /admin, in the shapes of
 * Azure Resource Manager's Microsoft.KeyVault/vaults resource: vault
 * properties, access policies, identities.
 *
 * Every change is made durable in the store first, then applied to the
 * in-memory policy table, then acknowledged: a revoked grant is gone for
 * the very next request. Validation happens before any change, so a bad
 * request changes nothing. Callers are administrators (router.c checks).
 * Must never: show a client secret except once, in the response that
 * creates it; store it other than as policy's slow hash.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "api/api.h"
#include "hsm/base.h"

#define DISPLAY_NAME_MAX 256
_Static_assert(DISPLAY_NAME_MAX <
        sizeof(((struct vlt_principal *)0)->display_name),
    "a display name fits vlt_principal");

static int
uuid_valid(const char *s)
{
	size_t i;

	if (strlen(s) != POLICY_ID_LEN)
		return 0;
	for (i = 0; i < POLICY_ID_LEN; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!isxdigit((unsigned char)s[i])) {
			return 0;
		}
	}
	return 1;
}

static json_t *
perms_json(unsigned perms)
{
	json_t *a = json_array();
	unsigned bit;

	for (bit = 1; bit && bit <= PERM_ALL; bit <<= 1)
		if ((perms & bit) && policy_perm_name(bit))
			json_array_append_new(a,
			    json_string(policy_perm_name(bit)));
	return a;
}

static json_t *
policies_json(struct api_req *q)
{
	struct vlt_access_policy *items = NULL;
	size_t n = 0, i;
	json_t *a = json_array();

	if (vault_access_list(q->vault, &items, &n) != 0)
		return a;
	for (i = 0; i < n; i++)
		json_array_append_new(a,
		    json_pack("{s:s, s:s, s:{s:o, s:[], s:[], s:[]}}",
		        "tenantId", items[i].tenant_id, "objectId",
		        items[i].object_id, "permissions", "keys",
		        perms_json(items[i].perms), "secrets", "certificates",
		        "storage"));
	free(items);
	return a;
}

static json_t *
vault_json(struct api_req *q)
{
	struct api_ctx *c = q->ctx;
	struct vlt_settings s;
	const char *host = strstr(q->vault_url, "://");

	if (vault_settings_get(q->vault, &s) != 0)
		return NULL;
	host = host ? host + 3 : q->vault_url;
	return json_pack(
	    "{s:s, s:s, s:s, s:{s:s, s:s, s:{s:s, s:s}, s:b, "
	    "s:i, s:b, s:o}}",
	    "id", "/admin/vault", "name", host, "type",
	    "Microsoft.KeyVault/vaults", "properties", "vaultUri", q->vault_url,
	    "tenantId", c->tenant_id, "sku", "family", "A", "name", "premium",
	    "enableSoftDelete", 1, "softDeleteRetentionInDays",
	    s.retention_days, "enablePurgeProtection", s.purge_protection,
	    "accessPolicies", policies_json(q));
}

static void
send_vault(struct api_req *q, struct api_resp *r)
{
	json_t *j = vault_json(q);

	if (j == NULL)
		api_resp_vault_error(r, VLT_ERR_UNAVAILABLE, NULL, NULL);
	else
		api_resp_set(r, 200, j);
}

static void
vault_patch(struct api_req *q, struct api_resp *r)
{
	json_t *body = NULL, *props, *v;
	struct vlt_settings s;
	int retention = -1, pp = -1, rc;

	if (api_body_object(q, r, &body) != 0)
		return;
	props = json_object_get(body, "properties");
	if (!json_is_object(props)) {
		api_resp_error(r, 400, "BadParameter",
		    "The field 'properties' must be an object.");
		goto out;
	}
	v = json_object_get(props, "enableSoftDelete");
	if (v && !json_is_true(v)) {
		api_resp_error(r, 400, "BadParameter",
		    "Soft delete is always on in this vault and cannot be "
		    "disabled.");
		goto out;
	}
	v = json_object_get(props, "softDeleteRetentionInDays");
	if (v) {
		if (!json_is_integer(v) ||
		    vault_retention_check(json_integer_value(v)) != 0) {
			api_resp_error(r, 400, "BadParameter",
			    "softDeleteRetentionInDays must be an integer "
			    "from 7 to 90.");
			goto out;
		}
		retention = (int)json_integer_value(v);
	}
	v = json_object_get(props, "enablePurgeProtection");
	if (v && !json_is_null(v)) {
		if (!json_is_boolean(v)) {
			api_resp_error(r, 400, "BadParameter",
			    "enablePurgeProtection must be a boolean.");
			goto out;
		}
		if (vault_settings_get(q->vault, &s) != 0) {
			api_resp_vault_error(r, VLT_ERR_UNAVAILABLE, NULL,
			    NULL);
			goto out;
		}
		if (json_is_false(v) && s.purge_protection) {
			api_resp_error(r, 400, "BadParameter",
			    "Purge protection is enabled on this vault and "
			    "cannot be disabled once enabled.");
			goto out;
		}
		pp = json_is_true(v) ? 1 : -1;
	}
	rc = vault_settings_update(q->vault, retention, pp);
	if (rc != 0) {
		api_resp_vault_error(r, rc, NULL, NULL);
		goto out;
	}
	send_vault(q, r);
out:
	json_decref(body);
}

enum pol_kind { POL_ADD, POL_REPLACE, POL_REMOVE };

/* One access policy of a request, parsed. */
struct pol_change {
	char oid[POLICY_ID_LEN + 1];
	unsigned perms;
	int has_keys;
};

/* permissions.keys of one policy into ch */
static int
parse_keys_perms(json_t *e, enum pol_kind kind, struct pol_change *ch,
    struct api_resp *r)
{
	json_t *keys = json_object_get(json_object_get(e, "permissions"),
	           "keys"),
	       *p;
	unsigned bits;
	size_t j;

	if (keys == NULL || json_is_null(keys)) {
		if (kind == POL_REMOVE)
			return 0;
		return api_resp_bad(r, "permissions.keys is required.");
	}
	if (!json_is_array(keys))
		return api_resp_bad(r, "permissions.keys must be an array.");
	ch->has_keys = 1;
	json_array_foreach(keys, j, p) {
		if (!json_is_string(p) ||
		    policy_perm_parse(json_string_value(p), &bits) != 0)
			return api_resp_bad(r,
			    "permissions.keys holds an unknown "
			    "permission (allowed: get list update create import "
			    "delete recover backup restore decrypt encrypt "
			    "unwrapKey wrapKey verify sign purge rotate "
			    "getrotationpolicy setrotationpolicy all).");
		ch->perms |= bits;
	}
	return 0;
}

static int
parse_policy_item(struct api_req *q, json_t *e, enum pol_kind kind,
    struct pol_change *ch, struct api_resp *r)
{
	const char *oid, *tid;

	if (!json_is_object(e))
		return api_resp_bad(r, "Each access policy must be an object.");
	if (api_field_string(e, "objectId", 1, &oid, r) != 0 ||
	    api_field_string(e, "tenantId", 0, &tid, r) != 0)
		return VLT_ERR_BAD_PARAM;
	if (!uuid_valid(oid))
		return api_resp_bad(r, "objectId must be a UUID.");
	if (tid && strcasecmp(tid, q->ctx->tenant_id) != 0)
		return api_resp_bad(r, "tenantId must be this vault's tenant.");
	memcpy(ch->oid, oid, POLICY_ID_LEN + 1);
	return parse_keys_perms(e, kind, ch, r);
}

/* The permissions each item leaves its object with, in request order (a
 * later item for the same object starts from an earlier one's result). */
static int
policy_targets(struct api_req *q, enum pol_kind kind,
    const struct pol_change *ch, size_t n, struct vlt_access_policy *out,
    struct api_resp *r)
{
	size_t i, j, added = 0, count = 0;
	struct vlt_access_policy *cur = NULL;
	unsigned have;

	for (i = 0; i < n; i++) {
		have = policy_access_get_in(q->ctx->policy, q->vault_scope,
		    ch[i].oid);
		for (j = 0; j < i; j++)
			if (strcmp(out[j].object_id, ch[i].oid) == 0)
				have = out[j].perms;
		added += have == 0 && kind != POL_REMOVE;
		memcpy(out[i].object_id, ch[i].oid, POLICY_ID_LEN + 1);
		if (str_fmt(out[i].tenant_id, sizeof(out[i].tenant_id), "%s",
		        q->ctx->tenant_id) != 0)
			return api_resp_bad(r,
			    "The vault's tenant id is too long.");
		out[i].perms = kind == POL_REPLACE ?
		    ch[i].perms :
		    kind == POL_ADD ?
		    (have | ch[i].perms) :
		    (ch[i].has_keys && ch[i].perms ? (have & ~ch[i].perms) : 0);
	}
	if (kind == POL_REMOVE)
		return 0;
	if (vault_access_list(q->vault, &cur, &count) != 0) {
		api_resp_vault_error(r, VLT_ERR_UNAVAILABLE, NULL, NULL);
		return VLT_ERR_UNAVAILABLE;
	}
	free(cur);
	if (count + added > POLICY_MAX_POLICIES) {
		api_resp_error(r, 400, "BadParameter",
		    "A vault holds at most %d access policies.",
		    POLICY_MAX_POLICIES);
		return VLT_ERR_BAD_PARAM;
	}
	return 0;
}

/* PUT /admin/vault/accessPolicies/{add|replace|remove}: every policy is
 * checked, then all are stored in one transaction, then the in-memory
 * table follows. */
static void
access_policies(struct api_req *q, struct api_resp *r, const char *kind_s)
{
	enum pol_kind kind = strcasecmp(kind_s, "add") == 0 ? POL_ADD :
	    strcasecmp(kind_s, "replace") == 0              ? POL_REPLACE :
	                                                      POL_REMOVE;
	struct vlt_access_policy *items = NULL;
	struct pol_change *ch = NULL;
	json_t *body = NULL, *list, *e;
	size_t i, n;
	int rc;

	if (kind == POL_REMOVE && strcasecmp(kind_s, "remove") != 0) {
		api_resp_error(r, 404, "NotFound",
		    "The operation must be add, replace or remove.");
		return;
	}
	if (api_body_object(q, r, &body) != 0)
		return;
	list = json_object_get(json_object_get(body, "properties"),
	    "accessPolicies");
	n = json_array_size(list);
	if (!json_is_array(list) || n == 0 || n > POLICY_MAX_POLICIES) {
		api_resp_error(r, 400, "BadParameter",
		    "properties.accessPolicies must be an array of 1 to %d "
		    "policies.",
		    POLICY_MAX_POLICIES);
		goto out;
	}
	if ((ch = calloc(n, sizeof(*ch))) == NULL ||
	    (items = calloc(n, sizeof(*items))) == NULL) {
		api_resp_vault_error(r, VLT_ERR_NO_MEMORY, NULL, NULL);
		goto out;
	}
	json_array_foreach(list, i, e) {
		if (parse_policy_item(q, e, kind, &ch[i], r) != 0)
			goto out;
	}
	if (policy_targets(q, kind, ch, n, items, r) != 0)
		goto out;
	if ((rc = vault_access_apply(q->vault, items, n)) != 0) {
		api_resp_vault_error(r, rc, NULL, NULL);
		goto out;
	}
	for (i = 0, rc = 0; i < n; i++) {
		if (items[i].perms == 0) {
			if (policy_access_remove_in(q->ctx->policy,
			        q->vault_scope,
			        items[i].object_id) != POLICY_OK)
				rc = VLT_ERR_INTERNAL;
		} else if (policy_access_set_in(q->ctx->policy, q->vault_scope,
		               items[i].object_id, items[i].perms) != 0)
			rc = VLT_ERR_INTERNAL;
	}
	if (rc != 0)
		api_resp_vault_error(r, rc, NULL, NULL);
	else
		api_resp_set(r, 200,
		    json_pack("{s:s, s:{s:o}}", "id",
		        "/admin/vault/accessPolicies", "properties",
		        "accessPolicies", policies_json(q)));
out:
	free(items);
	free(ch);
	json_decref(body);
}

static void
identity_create(struct api_req *q, struct api_resp *r)
{
	struct vlt_principal p;
	json_t *body = NULL, *v;
	const char *name;
	char secret[64];
	int rc;

	memset(&p, 0, sizeof(p));
	secret[0] = '\0';
	if (api_body_object(q, r, &body) != 0)
		return;
	if (api_field_string(body, "displayName", 1, &name, r) != 0)
		goto out;
	if (name[0] == '\0' || strlen(name) > DISPLAY_NAME_MAX) {
		api_resp_error(r, 400, "BadParameter",
		    "displayName must be 1 to %d characters.",
		    DISPLAY_NAME_MAX);
		goto out;
	}
	v = json_object_get(body, "isAdmin");
	if (v && !json_is_boolean(v)) {
		api_resp_error(r, 400, "BadParameter",
		    "isAdmin must be a boolean.");
		goto out;
	}
	p.is_admin = json_is_true(v);
	policy_uuid(p.object_id);
	policy_uuid(p.client_id);
	memcpy(p.display_name, name, strlen(name) + 1); /* fits: checked */
	policy_secret_new(secret);
	if (policy_secret_hash(secret, &p.secret_hash) != 0) {
		api_resp_vault_error(r, VLT_ERR_INTERNAL, NULL, NULL);
		goto out;
	}
	p.created = vault_now(q->ctx->vault);
	rc = vault_principal_put(q->ctx->vault, &p);
	if (rc == 0 &&
	    policy_principal_set(q->ctx->policy, p.object_id, p.client_id,
	        p.secret_hash, p.is_admin) != 0)
		rc = VLT_ERR_INTERNAL;
	if (rc != 0) {
		api_resp_vault_error(r, rc, NULL, NULL);
		goto out;
	}
	api_resp_set(r, 201,
	    json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "objectId", p.object_id,
	        "clientId", p.client_id, "clientSecret", secret, "tenantId",
	        q->ctx->tenant_id, "displayName", p.display_name, "isAdmin",
	        p.is_admin));
out:
	OPENSSL_cleanse(secret, sizeof(secret));
	free(p.secret_hash);
	json_decref(body);
}

static json_t *
identity_json(const struct vlt_principal *p)
{
	return json_pack("{s:s, s:s, s:s, s:b, s:I}", "objectId", p->object_id,
	    "clientId", p->client_id, "displayName", p->display_name, "isAdmin",
	    p->is_admin, "created", (json_int_t)p->created);
}

static void
identity_list(struct api_req *q, struct api_resp *r)
{
	struct vlt_principal *items = NULL;
	size_t n = 0, i;
	json_t *a;
	int rc = vault_principal_list(q->ctx->vault, &items, &n);

	if (rc != 0) {
		api_resp_vault_error(r, rc, NULL, NULL);
		return;
	}
	a = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(a, identity_json(&items[i]));
	vlt_principal_free_array(items, n);
	api_resp_set(r, 200, json_pack("{s:o}", "value", a));
}

static void
identity_delete(struct api_req *q, struct api_resp *r, const char *oid)
{
	int rc;

	if (!uuid_valid(oid) ||
	    policy_principal_find(q->ctx->policy, oid) != POLICY_OK) {
		api_resp_error(r, 404, "NotFound",
		    "No identity with that objectId.");
		return;
	}
	if (strcmp(oid, q->caller.oid) == 0) {
		api_resp_error(r, 400, "BadParameter",
		    "An administrator cannot delete its own identity.");
		return;
	}
	/* its grants in every vault go with it */
	rc = api_principal_forget(q->ctx, oid);
	if (rc != 0) {
		api_resp_vault_error_in(r, rc, API_SUBJ_IDENTITY, NULL, NULL);
		return;
	}
	api_resp_set(r, 200, json_pack("{s:s}", "objectId", oid));
}

/* The stored principal oid into *out (its secret_hash owned by *out). */
static int
principal_get(struct api_req *q, const char *oid, struct vlt_principal *out)
{
	struct vlt_principal *items = NULL;
	size_t n = 0, i;
	int rc = vault_principal_list(q->ctx->vault, &items, &n);

	if (rc != 0)
		return rc;
	rc = VLT_ERR_NOT_FOUND;
	for (i = 0; i < n && rc != 0; i++) {
		if (strcmp(items[i].object_id, oid) != 0)
			continue;
		*out = items[i];
		items[i].secret_hash = NULL;
		rc = 0;
	}
	vlt_principal_free_array(items, n);
	return rc;
}

/* POST /admin/identities/{objectId}/credential: a new client secret,
 * shown once; the old one stops working before the answer is sent
 * (stored first, then the in-memory table). Tokens already issued stay
 * valid until they expire, as Entra ID's do. */
static void
identity_credential(struct api_req *q, struct api_resp *r, const char *oid)
{
	struct vlt_principal p;
	char secret[64], *hash = NULL;
	int rc;

	memset(&p, 0, sizeof(p));
	secret[0] = '\0';
	if (!uuid_valid(oid) || principal_get(q, oid, &p) != 0) {
		api_resp_error(r, 404, "NotFound",
		    "No identity with that objectId.");
		return;
	}
	policy_secret_new(secret);
	if (policy_secret_hash(secret, &hash) != 0) {
		api_resp_vault_error(r, VLT_ERR_INTERNAL, NULL, NULL);
		goto out;
	}
	free(p.secret_hash);
	p.secret_hash = hash;
	hash = NULL;
	rc = vault_principal_put(q->ctx->vault, &p);
	if (rc == 0 &&
	    policy_principal_set(q->ctx->policy, p.object_id, p.client_id,
	        p.secret_hash, p.is_admin) != 0)
		rc = VLT_ERR_INTERNAL;
	if (rc != 0) {
		api_resp_vault_error(r, rc, NULL, NULL);
		goto out;
	}
	api_resp_set(r, 200,
	    json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "objectId", p.object_id,
	        "clientId", p.client_id, "clientSecret", secret, "tenantId",
	        q->ctx->tenant_id, "displayName", p.display_name, "isAdmin",
	        p.is_admin));
out:
	OPENSSL_cleanse(secret, sizeof(secret));
	free(hash);
	free(p.secret_hash);
}

void
api_admin(struct api_req *q, struct api_resp *r, char **segs, size_t n)
{
	const char *m = q->method;

	if (n == 1 && strcmp(segs[0], "vault") == 0) {
		if (strcmp(m, "GET") == 0) {
			q->operation = "VaultGet";
			send_vault(q, r);
			return;
		}
		if (strcmp(m, "PATCH") == 0) {
			q->operation = "VaultUpdate";
			vault_patch(q, r);
			return;
		}
	} else if (n == 3 && strcmp(segs[0], "vault") == 0 &&
	    strcmp(segs[1], "accessPolicies") == 0 && strcmp(m, "PUT") == 0) {
		q->operation = "VaultAccessPolicyUpdate";
		access_policies(q, r, segs[2]);
		return;
	} else if (n == 1 && strcmp(segs[0], "identities") == 0) {
		if (strcmp(m, "POST") == 0) {
			q->operation = "IdentityCreate";
			identity_create(q, r);
			return;
		}
		if (strcmp(m, "GET") == 0) {
			q->operation = "IdentityList";
			identity_list(q, r);
			return;
		}
	} else if (n == 2 && strcmp(segs[0], "identities") == 0 &&
	    strcmp(m, "DELETE") == 0) {
		q->operation = "IdentityDelete";
		identity_delete(q, r, segs[1]);
		return;
	} else if (n == 3 && strcmp(segs[0], "identities") == 0 &&
	    strcmp(segs[2], "credential") == 0 && strcmp(m, "POST") == 0) {
		q->operation = "IdentityCredentialReset";
		identity_credential(q, r, segs[1]);
		return;
	}
	api_resp_error(r, 404, "NotFound", "No such management resource.");
}
