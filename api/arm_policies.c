/*
 * arm_policies.c — a vault's access policies in ARM's shape: parsed from
 * properties.accessPolicies (a vault's PUT replaces them all;
 * accessPolicies/{add|replace|remove} changes some), stored in the
 * vault's store in one transaction (vault_access_apply), then the
 * in-memory table, under the vault's name, follows: a revoked grant is
 * gone for the very next request.
 *
 * Only key permissions exist here: an entry with no key permission
 * grants nothing and is not kept. Must never: change anything before
 * every entry is checked.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/arm.h"
#include "hsm/base.h"

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

json_t *
arm_policies_json(struct api_req *q, vault_t *v)
{
	struct vlt_access_policy *items = NULL;
	size_t n = 0, i;
	json_t *a = json_array();

	if (vault_access_list(v, &items, &n) != 0) {
		json_decref(a);
		return NULL;
	}
	for (i = 0; i < n; i++)
		json_array_append_new(a,
		    json_pack("{s:s, s:s, s:{s:o, s:[], s:[], s:[]}}",
		        "tenantId", q->ctx->tenant_id, "objectId",
		        items[i].object_id, "permissions", "keys",
		        perms_json(items[i].perms), "secrets", "certificates",
		        "storage"));
	free(items);
	return a;
}

/* One entry of a list into *p. */
static int
entry_parse(struct api_req *q, struct api_resp *r, json_t *e, struct arm_pol *p)
{
	json_t *oid = json_object_get(e, "objectId"),
	       *tid = json_object_get(e, "tenantId"), *keys, *k;
	unsigned bits;
	size_t j;

	if (!json_is_object(e) || !json_is_string(oid) ||
	    !arm_uuid_valid(json_string_value(oid)))
		return arm_error(r, 400, "BadRequest",
		    "Each access policy needs an objectId (a UUID).");
	if (tid != NULL && !json_is_null(tid) &&
	    (!json_is_string(tid) ||
	        strcasecmp(json_string_value(tid), q->ctx->tenant_id) != 0))
		return arm_error(r, 400, "BadRequest",
		    "An access policy's tenantId must be the appliance's "
		    "tenant.");
	memcpy(p->oid, json_string_value(oid), POLICY_ID_LEN + 1);
	keys = json_object_get(json_object_get(e, "permissions"), "keys");
	if (keys == NULL || json_is_null(keys))
		return 0;
	if (!json_is_array(keys))
		return arm_error(r, 400, "BadRequest",
		    "permissions.keys must be an array.");
	p->has_keys = 1;
	json_array_foreach(keys, j, k) {
		if (!json_is_string(k) ||
		    policy_perm_parse(json_string_value(k), &bits) != 0)
			return arm_error(r, 400, "BadRequest",
			    "permissions.keys holds an unknown permission "
			    "(allowed: get list update create import delete "
			    "recover backup restore decrypt encrypt unwrapKey "
			    "wrapKey verify sign purge rotate getrotationpolicy "
			    "setrotationpolicy all).");
		p->perms |= bits;
	}
	return 0;
}

int
arm_policies_parse(struct api_req *q, struct api_resp *r, json_t *list,
    struct arm_pol **out, size_t *n)
{
	struct arm_pol *p;
	json_t *e;
	size_t i;

	*out = NULL;
	*n = json_array_size(list);
	if (!json_is_array(list) || *n > POLICY_MAX_POLICIES)
		return arm_error(r, 400, "BadRequest",
		    "properties.accessPolicies must be an array of at most %d "
		    "policies.",
		    POLICY_MAX_POLICIES);
	if ((p = calloc(*n + 1, sizeof(*p))) == NULL)
		return arm_vault_error(r, VLT_ERR_NO_MEMORY);
	json_array_foreach(list, i, e) {
		if (entry_parse(q, r, e, &p[i]) != 0) {
			free(p);
			return VLT_ERR_BAD_PARAM;
		}
	}
	*out = p;
	return 0;
}

/* The store's change, then the table's. */
static int
apply(struct api_req *q, struct api_resp *r, vault_t *v, const char *scope,
    const struct vlt_access_policy *items, size_t n)
{
	size_t i;
	int rc;

	if ((rc = vault_access_apply(v, items, n)) != 0)
		return arm_vault_error(r, rc);
	for (i = 0, rc = 0; i < n; i++) {
		if (items[i].perms == 0) {
			if (policy_access_remove_in(q->ctx->policy, scope,
			        items[i].object_id) != POLICY_OK)
				rc = VLT_ERR_INTERNAL;
		} else if (policy_access_set_in(q->ctx->policy, scope,
		               items[i].object_id, items[i].perms) != 0)
			rc = VLT_ERR_INTERNAL;
	}
	return rc != 0 ? arm_vault_error(r, rc) : 0;
}

/* Where oid ends in items[0..n) (the last entry for it wins). */
static struct vlt_access_policy *
item_of(struct vlt_access_policy *items, size_t n, const char *oid)
{
	while (n-- > 0)
		if (strcmp(items[n].object_id, oid) == 0)
			return &items[n];
	return NULL;
}

static int
items_add(struct api_req *q, struct vlt_access_policy *items, size_t *n,
    const char *oid, unsigned perms)
{
	struct vlt_access_policy *it = item_of(items, *n, oid);

	if (it == NULL) {
		it = &items[(*n)++];
		memcpy(it->object_id, oid, POLICY_ID_LEN + 1);
		if (str_fmt(it->tenant_id, sizeof(it->tenant_id), "%s",
		        q->ctx->tenant_id) != 0)
			return VLT_ERR_BAD_PARAM;
	}
	it->perms = perms;
	return 0;
}

/* The number of policies items leaves, from cur (the stored ones). */
static size_t
count_after(const struct vlt_access_policy *cur, size_t m,
    struct vlt_access_policy *items, size_t n)
{
	size_t i, k = 0;

	for (i = 0; i < m; i++)
		k += item_of(items, n, cur[i].object_id) == NULL;
	for (i = 0; i < n; i++)
		k += items[i].perms != 0;
	return k;
}

/*
 * kind "set": pol is the whole new set; "add": permissions added;
 * "replace": the named objects' permissions replaced; "remove": the
 * named permissions (or, without permissions.keys, the whole policy)
 * removed.
 */
int
arm_policies_change(struct api_req *q, struct api_resp *r, vault_t *v,
    const char *scope, const char *kind, const struct arm_pol *pol, size_t n)
{
	struct vlt_access_policy *cur = NULL, *items = NULL, *c;
	size_t m = 0, k = 0, i;
	unsigned have;
	int rc;

	if ((rc = vault_access_list(v, &cur, &m)) != 0)
		return arm_vault_error(r, rc);
	if ((items = calloc(n + m + 1, sizeof(*items))) == NULL) {
		rc = arm_vault_error(r, VLT_ERR_NO_MEMORY);
		goto out;
	}
	for (i = 0; strcmp(kind, "set") == 0 && i < m; i++)
		rc |= items_add(q, items, &k, cur[i].object_id, 0);
	for (i = 0; i < n && rc == 0; i++) {
		c = item_of(items, k, pol[i].oid);
		have = c != NULL ? c->perms :
		    item_of(cur, m, pol[i].oid) != NULL ?
		                   item_of(cur, m, pol[i].oid)->perms :
		                   0;
		if (strcmp(kind, "add") == 0)
			have |= pol[i].perms;
		else if (strcmp(kind, "remove") == 0)
			have = pol[i].has_keys && pol[i].perms ?
			    (have & ~pol[i].perms) :
			    0;
		else
			have = pol[i].perms;
		rc = items_add(q, items, &k, pol[i].oid, have);
	}
	if (rc != 0)
		rc = arm_vault_error(r, VLT_ERR_BAD_PARAM);
	else if (count_after(cur, m, items, k) > POLICY_MAX_POLICIES)
		rc = arm_error(r, 400, "BadRequest",
		    "A vault holds at most %d access policies.",
		    POLICY_MAX_POLICIES);
	else if (k > 0)
		rc = apply(q, r, v, scope, items, k);
out:
	free(items);
	free(cur);
	return rc;
}
