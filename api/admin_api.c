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

#define DISPLAY_NAME_MAX 256

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
policies_json(struct api_ctx *c)
{
	struct vlt_access_policy *items = NULL;
	size_t n = 0, i;
	json_t *a = json_array();

	if (vault_access_list(c->vault, &items, &n) != 0)
		return a;
	for (i = 0; i < n; i++)
		json_array_append_new(a, json_pack(
		    "{s:s, s:s, s:{s:o, s:[], s:[], s:[]}}",
		    "tenantId", items[i].tenant_id,
		    "objectId", items[i].object_id,
		    "permissions", "keys", perms_json(items[i].perms),
		    "secrets", "certificates", "storage"));
	free(items);
	return a;
}

static json_t *
vault_json(struct api_ctx *c)
{
	struct vlt_settings s;
	const char *host = strstr(c->vault_url, "://");

	if (vault_settings_get(c->vault, &s) != 0)
		return NULL;
	host = host ? host + 3 : c->vault_url;
	return json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:{s:s, s:s}, s:b, "
	    "s:i, s:b, s:o}}",
	    "id", "/admin/vault", "name", host,
	    "type", "Microsoft.KeyVault/vaults",
	    "properties",
	    "vaultUri", c->vault_url, "tenantId", c->tenant_id,
	    "sku", "family", "A", "name", "premium",
	    "enableSoftDelete", 1,
	    "softDeleteRetentionInDays", s.retention_days,
	    "enablePurgeProtection", s.purge_protection,
	    "accessPolicies", policies_json(c));
}

static void
send_vault(struct api_req *q, struct api_resp *r)
{
	json_t *j = vault_json(q->ctx);

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
		if (!json_is_integer(v) || json_integer_value(v) < 7 ||
		    json_integer_value(v) > 90) {
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
		if (vault_settings_get(q->ctx->vault, &s) != 0) {
			api_resp_vault_error(r, VLT_ERR_UNAVAILABLE, NULL, NULL);
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
	rc = vault_settings_update(q->ctx->vault, retention, pp);
	if (rc != 0) {
		api_resp_vault_error(r, rc, NULL, NULL);
		goto out;
	}
	send_vault(q, r);
out:
	json_decref(body);
}

struct pol_change {
	char oid[POLICY_ID_LEN + 1];
	unsigned perms;
	int has_keys;
};

static void
access_policies(struct api_req *q, struct api_resp *r, const char *kind)
{
	json_t *body = NULL, *list, *e;
	struct pol_change *ch = NULL;
	size_t i, j, n = 0, count = 0;
	struct vlt_access_policy *cur = NULL;
	int add = strcasecmp(kind, "add") == 0;
	int replace = strcasecmp(kind, "replace") == 0;
	int remove = strcasecmp(kind, "remove") == 0;
	int rc;

	if (!add && !replace && !remove) {
		api_resp_error(r, 404, "NotFound",
		    "The operation must be add, replace or remove.");
		return;
	}
	if (api_body_object(q, r, &body) != 0)
		return;
	list = json_object_get(json_object_get(body, "properties"),
	    "accessPolicies");
	if (!json_is_array(list) || json_array_size(list) == 0 ||
	    json_array_size(list) > POLICY_MAX_POLICIES) {
		api_resp_error(r, 400, "BadParameter",
		    "properties.accessPolicies must be an array of 1 to %d "
		    "policies.", POLICY_MAX_POLICIES);
		goto out;
	}
	n = json_array_size(list);
	ch = calloc(n, sizeof(*ch));
	if (ch == NULL) {
		api_resp_vault_error(r, VLT_ERR_NO_MEMORY, NULL, NULL);
		goto out;
	}
	/* validate everything before changing anything */
	json_array_foreach(list, i, e) {
		const char *oid, *tid;
		json_t *keys, *p;
		if (!json_is_object(e) ||
		    api_field_string(e, "objectId", 1, &oid, r) != 0 ||
		    api_field_string(e, "tenantId", 0, &tid, r) != 0) {
			if (r->status == 0)
				api_resp_error(r, 400, "BadParameter",
				    "Each access policy must be an object.");
			goto out;
		}
		if (!uuid_valid(oid)) {
			api_resp_error(r, 400, "BadParameter",
			    "objectId must be a UUID.");
			goto out;
		}
		if (tid && strcasecmp(tid, q->ctx->tenant_id) != 0) {
			api_resp_error(r, 400, "BadParameter",
			    "tenantId must be this vault's tenant.");
			goto out;
		}
		snprintf(ch[i].oid, sizeof(ch[i].oid), "%s", oid);
		keys = json_object_get(json_object_get(e, "permissions"),
		    "keys");
		if (keys && !json_is_null(keys)) {
			if (!json_is_array(keys)) {
				api_resp_error(r, 400, "BadParameter",
				    "permissions.keys must be an array.");
				goto out;
			}
			ch[i].has_keys = 1;
			json_array_foreach(keys, j, p) {
				unsigned bits;
				if (!json_is_string(p) || policy_perm_parse(
				    json_string_value(p), &bits) != 0) {
					api_resp_error(r, 400, "BadParameter",
					    "permissions.keys holds an unknown "
					    "permission (allowed: get list "
					    "update create import delete "
					    "recover backup restore decrypt "
					    "encrypt unwrapKey wrapKey verify "
					    "sign purge rotate "
					    "getrotationpolicy "
					    "setrotationpolicy all).");
					goto out;
				}
				ch[i].perms |= bits;
			}
		} else if (!remove) {
			api_resp_error(r, 400, "BadParameter",
			    "permissions.keys is required.");
			goto out;
		}
	}
	if (!remove) {
		size_t added = 0;
		if (vault_access_list(q->ctx->vault, &cur, &count) != 0) {
			api_resp_vault_error(r, VLT_ERR_UNAVAILABLE, NULL, NULL);
			goto out;
		}
		for (i = 0; i < n; i++)
			if (policy_access_get(q->ctx->policy, ch[i].oid) == 0)
				added++;
		if (count + added > POLICY_MAX_POLICIES) {
			api_resp_error(r, 400, "BadParameter",
			    "A vault holds at most %d access policies.",
			    POLICY_MAX_POLICIES);
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		struct vlt_access_policy a;
		unsigned have = policy_access_get(q->ctx->policy, ch[i].oid);
		unsigned want = replace ? ch[i].perms :
		    add ? (have | ch[i].perms) :
		    (ch[i].has_keys && ch[i].perms ? (have & ~ch[i].perms) : 0);
		memset(&a, 0, sizeof(a));
		snprintf(a.object_id, sizeof(a.object_id), "%s", ch[i].oid);
		snprintf(a.tenant_id, sizeof(a.tenant_id), "%s",
		    q->ctx->tenant_id);
		a.perms = want;
		if (want == 0) {
			rc = vault_access_delete(q->ctx->vault, ch[i].oid);
			if (rc == VLT_ERR_NOT_FOUND)
				rc = 0;
			if (rc == 0)
				policy_access_remove(q->ctx->policy, ch[i].oid);
		} else {
			rc = vault_access_put(q->ctx->vault, &a);
			if (rc == 0 && policy_access_set(q->ctx->policy,
			    ch[i].oid, want) != 0)
				rc = VLT_ERR_INTERNAL;
		}
		if (rc != 0) {
			api_resp_vault_error(r, rc, NULL, NULL);
			goto out;
		}
	}
	api_resp_set(r, 200, json_pack("{s:s, s:{s:o}}", "id",
	    "/admin/vault/accessPolicies", "properties", "accessPolicies",
	    policies_json(q->ctx)));
out:
	free(cur);
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
	p.is_admin = v && json_is_true(v);
	policy_uuid(p.object_id);
	policy_uuid(p.client_id);
	snprintf(p.display_name, sizeof(p.display_name), "%s", name);
	policy_secret_new(secret);
	if (policy_secret_hash(secret, &p.secret_hash) != 0) {
		api_resp_vault_error(r, VLT_ERR_INTERNAL, NULL, NULL);
		goto out;
	}
	p.created = vault_now(q->ctx->vault);
	rc = vault_principal_put(q->ctx->vault, &p);
	if (rc == 0 && policy_principal_set(q->ctx->policy, p.object_id,
	    p.client_id, p.secret_hash, p.is_admin) != 0)
		rc = VLT_ERR_INTERNAL;
	if (rc != 0) {
		api_resp_vault_error(r, rc, NULL, NULL);
		goto out;
	}
	api_resp_set(r, 201, json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}",
	    "objectId", p.object_id, "clientId", p.client_id,
	    "clientSecret", secret, "tenantId", q->ctx->tenant_id,
	    "displayName", p.display_name, "isAdmin", p.is_admin));
out:
	OPENSSL_cleanse(secret, sizeof(secret));
	free(p.secret_hash);
	json_decref(body);
}

static json_t *
identity_json(const struct vlt_principal *p)
{
	return json_pack("{s:s, s:s, s:s, s:b, s:I}", "objectId", p->object_id,
	    "clientId", p->client_id, "displayName", p->display_name,
	    "isAdmin", p->is_admin, "created", (json_int_t)p->created);
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
	rc = vault_principal_delete(q->ctx->vault, oid);
	if (rc == VLT_ERR_NOT_FOUND) {
		/* not "A key ... was not found": this is an identity */
		api_resp_error(r, 404, "NotFound",
		    "No identity with that objectId.");
		return;
	}
	if (rc != 0) {
		api_resp_vault_error(r, rc, NULL, NULL);
		return;
	}
	policy_access_remove(q->ctx->policy, oid);
	policy_principal_remove(q->ctx->policy, oid);
	api_resp_set(r, 200, json_pack("{s:s}", "objectId", oid));
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
	}
	api_resp_error(r, 404, "NotFound", "No such management resource.");
}
