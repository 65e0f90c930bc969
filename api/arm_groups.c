/*
 * arm_groups.c — resource groups (`az group create|show|exists|update|
 * delete|list`) and the subscription's resource list (GET
 * /subscriptions/{sub}/resources, which `az keyvault list` reads with a
 * resourceType filter).
 *
 * A group is a record of the root's store (vault/records.c) with its
 * location and tags as meta. The default vault's group (config
 * resource_group) always exists and cannot be deleted. Deleting another
 * group deletes what it holds, as ARM does: its vaults are soft-deleted
 * (recoverable, names reserved), its identities deleted.
 * Must never: delete a group's contents when the request is refused.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/arm.h"
#include "hsm/base.h"

#define TYPE_GROUPS "Microsoft.Resources/resourceGroups"

/* ARM's rule: 1..90 of letters, digits, '_', '-', '.', '(', ')', not
 * ending with '.'. */
static int
group_name_ok(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > ARM_GROUP_NAME_MAX || s[n - 1] == '.')
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || strchr("_-.()", c) != NULL))
			return 0;
	}
	return 1;
}

static json_t *
group_json(const struct api_ctx *c, const char *name, const char *loc,
    json_t *tags)
{
	char id[256];
	json_t *j;

	if (str_fmt(id, sizeof(id), "/subscriptions/%s/resourceGroups/%s",
	        arm_subscription_id(c), name) != 0)
		return NULL;
	j = json_pack("{s:s, s:s, s:s, s:s, s:{s:s}}", "id", id, "name", name,
	    "type", TYPE_GROUPS, "location", loc, "properties",
	    "provisioningState", "Succeeded");
	if (j != NULL)
		json_object_set_new(j, "tags",
		    tags != NULL ? json_incref(tags) : json_object());
	return j;
}

/* The JSON of record x (a stored group). */
static json_t *
record_json(const struct api_ctx *c, const struct vlt_record *x)
{
	json_t *l = arm_meta_get(x->meta, "location"),
	       *t = arm_meta_get(x->meta, "tags"), *j;

	j = group_json(c, x->name,
	    json_is_string(l) ? json_string_value(l) : "", t);
	json_decref(l);
	json_decref(t);
	return j;
}

/* The default group as it stands (a record of it holds its tags). */
static json_t *
default_json(struct api_req *q)
{
	const char *name = arm_default_group(q->ctx);
	struct vlt_record x;
	json_t *t = NULL, *j;

	if (vault_record_get(q->ctx->vault, ARM_KIND_GROUP, "", name, &x) ==
	    0) {
		t = arm_meta_get(x.meta, "tags");
		vlt_record_clear(&x);
	}
	j = group_json(q->ctx, name, arm_default_location(q->ctx), t);
	json_decref(t);
	return j;
}

static void
group_list(struct api_req *q, struct api_resp *r)
{
	struct vlt_record *items = NULL;
	size_t n = 0, i;
	json_t *a;
	int rc;

	q->operation = "ArmGroupList";
	rc = vault_record_list(q->ctx->vault, ARM_KIND_GROUP, "", &items, &n);
	if (rc != 0) {
		arm_vault_error(r, rc);
		return;
	}
	a = json_array();
	json_array_append_new(a, default_json(q));
	for (i = 0; i < n; i++)
		if (strcasecmp(items[i].name, arm_default_group(q->ctx)) != 0)
			json_array_append_new(a,
			    record_json(q->ctx, &items[i]));
	vlt_record_free_array(items, n);
	api_resp_set(r, 200, json_pack("{s:o}", "value", a));
}

static void
group_get(struct api_req *q, struct api_resp *r, const char *name, int head)
{
	struct vlt_record x;
	int rc;

	q->operation = head ? "ArmGroupExists" : "ArmGroupGet";
	if (strcasecmp(name, arm_default_group(q->ctx)) == 0) {
		if (head)
			api_resp_set(r, 204, NULL);
		else
			api_resp_set(r, 200, default_json(q));
		return;
	}
	rc = strlen(name) > ARM_GROUP_NAME_MAX ?
	    VLT_ERR_NOT_FOUND :
	    vault_record_get(q->ctx->vault, ARM_KIND_GROUP, "", name, &x);
	if (rc == VLT_ERR_NOT_FOUND) {
		arm_error(r, 404, "ResourceGroupNotFound",
		    "Resource group '%.90s' could not be found.", name);
		return;
	}
	if (rc != 0) {
		arm_vault_error(r, rc);
		return;
	}
	if (head)
		api_resp_set(r, 204, NULL);
	else
		api_resp_set(r, 200, record_json(q->ctx, &x));
	vlt_record_clear(&x);
}

/* PUT (create or update; the location cannot change) and PATCH (tags). */
static void
group_put(struct api_req *q, struct api_resp *r, const char *name, int patch)
{
	char have[80];
	const char *loc = NULL;
	json_t *body = NULL, *tags = NULL, *meta = NULL;
	struct vlt_record x;
	struct api_resp tmp;
	int exists, rc;

	memset(&tmp, 0, sizeof(tmp));
	q->operation = patch ? "ArmGroupUpdate" : "ArmGroupPut";
	if (!group_name_ok(name)) {
		arm_error(r, 400, "InvalidResourceGroupName",
		    "Resource group names are 1 to 90 letters, digits, "
		    "underscores, hyphens, periods and parentheses, and do not "
		    "end in a period.");
		return;
	}
	if (arm_body(q, r, &body) != 0 || arm_tags(body, &tags, r) != 0 ||
	    arm_location(body, !patch, &loc, r) != 0)
		goto out;
	exists = arm_group_find(q, &tmp, name, have, sizeof(have)) == 0;
	if (!exists && tmp.status != 404) {
		arm_vault_error(r, VLT_ERR_UNAVAILABLE);
		goto out;
	}
	if (patch && !exists) {
		arm_error(r, 404, "ResourceGroupNotFound",
		    "Resource group '%.90s' could not be found.", name);
		goto out;
	}
	if (exists && loc != NULL && strcasecmp(loc, have) != 0) {
		arm_error(r, 409, "InvalidResourceGroupLocation",
		    "Invalid resource group location '%.64s'. The Resource "
		    "group already exists in location '%.64s'.",
		    loc, have);
		goto out;
	}
	memset(&x, 0, sizeof(x));
	memcpy(x.kind, ARM_KIND_GROUP, sizeof(ARM_KIND_GROUP));
	memcpy(x.name, name, strlen(name) + 1); /* fits: checked */
	meta = json_pack("{s:s}", "location", exists ? have : loc);
	if (meta == NULL ||
	    (tags != NULL && json_object_set(meta, "tags", tags) != 0) ||
	    (x.meta = json_dumps(meta, JSON_COMPACT)) == NULL) {
		arm_vault_error(r, VLT_ERR_NO_MEMORY);
		goto out;
	}
	rc = vault_record_put(q->ctx->vault, &x, 0);
	free(x.meta);
	if (rc != 0) {
		arm_vault_error(r, rc);
		goto out;
	}
	api_resp_set(r, exists ? 200 : 201,
	    group_json(q->ctx, name, exists ? have : loc, tags));
out:
	free(tmp.body);
	json_decref(meta);
	json_decref(tags);
	json_decref(body);
}

static void
group_delete(struct api_req *q, struct api_resp *r, const char *name)
{
	int rc;

	q->operation = "ArmGroupDelete";
	if (strcasecmp(name, arm_default_group(q->ctx)) == 0) {
		arm_error(r, 409, "ConflictError",
		    "The resource group '%.90s' holds the appliance's default "
		    "vault and cannot be deleted.",
		    name);
		return;
	}
	if (arm_group_find(q, r, name, NULL, 0) != 0)
		return;
	if ((rc = arm_vaults_delete_group(q, name)) != 0 ||
	    (rc = arm_identities_delete_group(q, name)) != 0 ||
	    (rc = vault_record_delete(q->ctx->vault, ARM_KIND_GROUP, "",
	         name)) != 0) {
		arm_vault_error(r, rc);
		return;
	}
	api_resp_set(r, 200, json_object());
}

void
arm_groups(struct api_req *q, struct api_resp *r, const struct arm_path *p)
{
	const char *m = q->method;

	if (p->group == NULL && strcmp(m, "GET") == 0)
		group_list(q, r);
	else if (p->group == NULL)
		arm_error(r, 405, "MethodNotAllowed",
		    "The method is not allowed on the resource group list.");
	else if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)
		group_get(q, r, p->group, m[0] == 'H');
	else if (strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0)
		group_put(q, r, p->group, m[1] == 'A');
	else if (strcmp(m, "DELETE") == 0)
		group_delete(q, r, p->group);
	else
		arm_error(r, 405, "MethodNotAllowed",
		    "The method is not allowed on a resource group.");
}

/* $filter: none, or resourceType eq '<type>' (what az sends). *type:
 * NULL for every type. */
static int
filter_parse(const char *f, const char **type)
{
	static const char *const types[] = { ARM_TYPE_VAULTS,
		ARM_TYPE_IDENTITIES };
	const char *pre = "resourceType eq '";
	size_t i, k;

	*type = NULL;
	if (f == NULL || f[0] == '\0')
		return 0;
	if (strncasecmp(f, pre, strlen(pre)) != 0)
		return -1;
	f += strlen(pre);
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		k = strlen(types[i]);
		if (strncasecmp(f, types[i], k) == 0 &&
		    strcmp(f + k, "'") == 0) {
			*type = types[i];
			return 0;
		}
	}
	return f[strcspn(f, "'")] == '\'' &&
	        strcmp(f + strcspn(f, "'"), "'") == 0 ?
	    1 :
	    -1;
}

void
arm_resources(struct api_req *q, struct api_resp *r)
{
	const char *type;
	json_t *a;
	int k, rc = 0;

	q->operation = "ArmResourceList";
	if (strcmp(q->method, "GET") != 0) {
		arm_error(r, 405, "MethodNotAllowed",
		    "The method is not allowed on the resource list.");
		return;
	}
	if ((k = filter_parse(q->odata_filter, &type)) < 0) {
		arm_error(r, 400, "InvalidFilterInQueryString",
		    "The $filter is not supported here: give none, or "
		    "resourceType eq '<type>'.");
		return;
	}
	a = json_array();
	if (k == 0 && (type == NULL || strcmp(type, ARM_TYPE_VAULTS) == 0))
		rc = arm_vault_resources(q, NULL, a);
	if (rc == 0 && k == 0 &&
	    (type == NULL || strcmp(type, ARM_TYPE_IDENTITIES) == 0))
		rc = arm_identity_resources(q, NULL, a);
	if (rc != 0) {
		json_decref(a);
		arm_vault_error(r, rc);
		return;
	}
	api_resp_set(r, 200, json_pack("{s:o}", "value", a));
}
