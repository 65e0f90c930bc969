/*
 * arm_vaults.c — Microsoft.KeyVault/vaults in ARM's shapes: create or
 * update (PUT, idempotent; createMode recover), GET, PATCH, DELETE (soft),
 * the lists, accessPolicies/{add|replace|remove}. The vault itself is
 * vault/children.c's; what ARM adds (resource group, location, tags, sku)
 * is the vault's meta text {"resourceGroup","location","tags","sku"}.
 * The default vault (config vault_name at vault_url) is in the default
 * group (config resource_group) at config location, and cannot be deleted.
 *
 * Every request is checked whole before anything changes.
 * Must never: enable a setting this appliance cannot keep (RBAC, soft
 * delete off, purge protection off once on).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/arm.h"
#include "hsm/base.h"


void
arm_vref_clear(struct vref *f)
{
	if (f->v != NULL && !f->dflt)
		vault_child_release(f->v);
	free(f->meta);
	memset(f, 0, sizeof(*f));
}

/* Hands f's vault to the request (its audit line names it). */
void
arm_vref_to_request(struct api_req *q, struct vref *f)
{
	if (f->dflt || f->v == NULL || q->vault != q->ctx->vault)
		return;
	q->vault = f->v;
	f->v = NULL;
}

int
arm_is_default_vault(const struct api_ctx *c, const char *name)
{
	return c->vault_name != NULL && strcasecmp(name, c->vault_name) == 0;
}

int
arm_meta_group_is(const char *meta, const char *group)
{
	json_t *g = arm_meta_get(meta, "resourceGroup");
	int ok = json_is_string(g) &&
	    strcasecmp(json_string_value(g), group) == 0;

	json_decref(g);
	return ok;
}

/* The live vault name in group: 0 (f filled), VLT_ERR_NOT_FOUND. */
int
arm_vref_find(struct api_req *q, const char *group, const char *name,
    struct vref *f)
{
	struct vlt_vault x;
	int rc;

	memset(f, 0, sizeof(*f));
	if (strlen(name) > VLT_VAULT_NAME_MAX)
		return VLT_ERR_NOT_FOUND;
	if (arm_is_default_vault(q->ctx, name)) {
		if (strcasecmp(group, arm_default_group(q->ctx)) != 0)
			return VLT_ERR_NOT_FOUND;
		f->dflt = 1;
		f->v = q->ctx->vault;
		memcpy(f->name, q->ctx->vault_name,
		    strlen(q->ctx->vault_name) + 1);
		return 0;
	}
	if ((rc = vault_child_get(q->ctx->vault, name, 0, &x)) != 0)
		return rc;
	if (!arm_meta_group_is(x.meta, group)) {
		vlt_vault_clear(&x);
		return VLT_ERR_NOT_FOUND;
	}
	memcpy(f->name, x.name, sizeof(f->name));
	f->meta = x.meta;
	if ((rc = vault_child_acquire(q->ctx->vault, x.name, &f->v)) != 0)
		arm_vref_clear(f);
	return rc;
}

int
arm_vault_not_found(struct api_resp *r, const char *group, const char *name)
{
	return arm_error(r, 404, "ResourceNotFound",
	    "The Resource '" ARM_TYPE_VAULTS
	    "/%.24s' under resource group "
	    "'%.90s' was not found.",
	    name, group);
}

/* The vault's URL with ARM's trailing slash. */
static json_t *
vault_uri(const struct api_ctx *c, const struct vref *f)
{
	char u[512];

	if (f->dflt ? str_fmt(u, sizeof(u), "%s/", c->vault_url) :
	              str_fmt(u, sizeof(u), "https://%s.%s%s/", f->name,
	                  c->vault_domain != NULL ? c->vault_domain : "",
	                  c->vault_port))
		return NULL;
	return json_string(u);
}

json_t *
arm_vault_json(struct api_req *q, const struct vref *f)
{
	struct vlt_settings s;
	json_t *loc = arm_meta_get(f->meta, "location"),
	       *tags = arm_meta_get(f->meta, "tags"),
	       *sku = arm_meta_get(f->meta, "sku"), *g, *j = NULL;
	int bad = 0;

	g = f->dflt ? json_string(arm_default_group(q->ctx)) :
	              arm_meta_get(f->meta, "resourceGroup");
	if (vault_settings_get(f->v, &s) != 0 || !json_is_string(g))
		goto out;
	j = json_pack("{s:o, s:s, s:s, s:s, s:o}", "id",
	    arm_resource_id(q->ctx, json_string_value(g), ARM_TYPE_VAULTS,
	        f->name),
	    "name", f->name, "type", ARM_TYPE_VAULTS, "location",
	    json_is_string(loc) ? json_string_value(loc) :
	                          arm_default_location(q->ctx),
	    "tags", json_is_object(tags) ? json_incref(tags) : json_object());
	api_json_put(j, "properties",
	    json_pack("{s:s, s:{s:s, s:s}, s:o, s:o, s:b, s:b, s:b, s:b, "
	              "s:i, s:b, s:b, s:s, s:s}",
	        "tenantId", q->ctx->tenant_id, "sku", "family", "A", "name",
	        json_is_string(sku) ? json_string_value(sku) : "premium",
	        "accessPolicies", arm_policies_json(q, f->v), "vaultUri",
	        vault_uri(q->ctx, f), "enabledForDeployment", 0,
	        "enabledForDiskEncryption", 0, "enabledForTemplateDeployment",
	        0, "enableSoftDelete", 1, "softDeleteRetentionInDays",
	        s.retention_days, "enableRbacAuthorization", 0,
	        "enablePurgeProtection", s.purge_protection,
	        "provisioningState", "Succeeded", "publicNetworkAccess",
	        "Enabled"),
	    &bad);
	if (bad) {
		json_decref(j);
		j = NULL;
	}
out:
	json_decref(g);
	json_decref(loc);
	json_decref(tags);
	json_decref(sku);
	return j;
}

static void
vault_delete(struct api_req *q, struct api_resp *r, const char *group,
    const char *name)
{
	struct vref f;
	int rc;

	q->operation = "ArmVaultDelete";
	if ((rc = arm_vref_find(q, group, name, &f)) == VLT_ERR_NOT_FOUND) {
		api_resp_set(r, 204, NULL);
		return;
	}
	if (rc == 0 && f.dflt)
		arm_error(r, 409, "ConflictError",
		    "The appliance's default vault '%s' cannot be deleted.",
		    f.name);
	else if (rc != 0 ||
	    (rc = vault_child_delete(q->ctx->vault, f.name)) != 0)
		arm_vault_error(r, rc);
	else
		api_resp_set(r, 200, json_object());
	arm_vref_to_request(q, &f);
	arm_vref_clear(&f);
}

/* The vaults of group (NULL: all), each through add. */
static int
vaults_each(struct api_req *q, const char *group,
    int (*add)(struct api_req *, struct vref *, json_t *), json_t *a)
{
	struct vlt_vault *items = NULL;
	struct vref f;
	size_t n = 0, i;
	int rc;

	if ((group == NULL ||
	        strcasecmp(group, arm_default_group(q->ctx)) == 0) &&
	    q->ctx->vault_name != NULL &&
	    arm_vref_find(q, arm_default_group(q->ctx), q->ctx->vault_name,
	        &f) == 0 &&
	    (rc = add(q, &f, a)) != 0)
		return rc;
	if ((rc = vault_child_list(q->ctx->vault, 0, &items, &n)) != 0)
		return rc;
	for (i = 0; i < n && rc == 0; i++) {
		json_t *g = arm_meta_get(items[i].meta, "resourceGroup");

		if (json_is_string(g) &&
		    (group == NULL ||
		        arm_meta_group_is(items[i].meta, group)) &&
		    arm_vref_find(q, json_string_value(g), items[i].name, &f) ==
		        0) {
			rc = add(q, &f, a);
			arm_vref_clear(&f);
		}
		json_decref(g);
	}
	vlt_vault_free_array(items, n);
	return rc;
}

static int
add_full(struct api_req *q, struct vref *f, json_t *a)
{
	json_t *j = arm_vault_json(q, f);

	return j == NULL || json_array_append_new(a, j) != 0 ?
	    VLT_ERR_UNAVAILABLE :
	    0;
}

static int
add_resource(struct api_req *q, struct vref *f, json_t *a)
{
	json_t *j = arm_vault_json(q, f);

	if (j == NULL)
		return VLT_ERR_UNAVAILABLE;
	json_object_del(j, "properties");
	return json_array_append_new(a, j) != 0 ? VLT_ERR_NO_MEMORY : 0;
}

int
arm_vault_resources(struct api_req *q, const char *group, json_t *a)
{
	return vaults_each(q, group, add_resource, a);
}

int
arm_vaults_delete_group(struct api_req *q, const char *group)
{
	struct vlt_vault *items = NULL;
	size_t n = 0, i;
	int rc = vault_child_list(q->ctx->vault, 0, &items, &n);

	for (i = 0; rc == 0 && i < n; i++)
		if (arm_meta_group_is(items[i].meta, group))
			rc = vault_child_delete(q->ctx->vault, items[i].name);
	vlt_vault_free_array(items, n);
	return rc;
}

static void
vault_list(struct api_req *q, struct api_resp *r, const char *group)
{
	json_t *a = json_array();
	int rc;

	q->operation = "ArmVaultList";
	if (group != NULL && arm_group_find(q, r, group, NULL, 0) != 0) {
		json_decref(a);
		return;
	}
	if ((rc = vaults_each(q, group, add_full, a)) != 0) {
		json_decref(a);
		arm_vault_error(r, rc);
		return;
	}
	api_resp_set(r, 200, json_pack("{s:o}", "value", a));
}

static void vault_policies(struct api_req *q, struct api_resp *r,
    const char *group, const char *name, const char *kind);

void
arm_vaults(struct api_req *q, struct api_resp *r, const struct arm_path *p)
{
	const char *m = q->method;
	struct vref f;
	int rc;

	if (p->name == NULL) {
		if (strcmp(m, "GET") == 0)
			vault_list(q, r, p->group);
		else
			arm_error(r, 405, "MethodNotAllowed",
			    "The method is not allowed on a vault list.");
		return;
	}
	if (p->group == NULL || p->n_rest > 2 ||
	    (p->n_rest > 0 &&
	        (p->n_rest != 2 ||
	            strcasecmp(p->rest[0], "accessPolicies") != 0))) {
		arm_error(r, 404, "NotFound", "No such resource path.");
		return;
	}
	if (arm_group_find(q, r, p->group, NULL, 0) != 0)
		return;
	if (p->n_rest == 2 && strcmp(m, "PUT") == 0) {
		vault_policies(q, r, p->group, p->name, p->rest[1]);
	} else if (p->n_rest == 2) {
		arm_error(r, 405, "MethodNotAllowed",
		    "Access policies are changed with PUT.");
	} else if (strcmp(m, "GET") == 0) {
		q->operation = "ArmVaultGet";
		if ((rc = arm_vref_find(q, p->group, p->name, &f)) != 0) {
			(void)(rc == VLT_ERR_NOT_FOUND ?
			        arm_vault_not_found(r, p->group, p->name) :
			        arm_vault_error(r, rc));
			return;
		}
		api_resp_set(r, 200, arm_vault_json(q, &f));
		arm_vref_to_request(q, &f);
		arm_vref_clear(&f);
	} else if (strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0) {
		arm_vault_put(q, r, p->group, p->name, m[1] == 'A');
	} else if (strcmp(m, "DELETE") == 0) {
		vault_delete(q, r, p->group, p->name);
	} else {
		arm_error(r, 405, "MethodNotAllowed",
		    "The method is not allowed on a vault.");
	}
}

/* PUT .../vaults/{name}/accessPolicies/{add|replace|remove} */
static void
vault_policies(struct api_req *q, struct api_resp *r, const char *group,
    const char *name, const char *kind)
{
	struct arm_pol *pol = NULL;
	json_t *body = NULL, *a;
	struct vref f;
	size_t n = 0;
	char id[700];
	int rc;

	q->operation = "ArmVaultAccessPolicyUpdate";
	memset(&f, 0, sizeof(f));
	if (strcasecmp(kind, "add") != 0 && strcasecmp(kind, "replace") != 0 &&
	    strcasecmp(kind, "remove") != 0) {
		arm_error(r, 400, "BadRequest",
		    "The operation kind must be add, replace or remove.");
		return;
	}
	if (arm_body(q, r, &body) != 0 ||
	    arm_policies_parse(q, r,
	        json_object_get(json_object_get(body, "properties"),
	            "accessPolicies"),
	        &pol, &n) != 0)
		goto out;
	if ((rc = arm_vref_find(q, group, name, &f)) != 0) {
		(void)(rc == VLT_ERR_NOT_FOUND ?
		        arm_vault_not_found(r, group, name) :
		        arm_vault_error(r, rc));
		goto out;
	}
	if (arm_policies_change(q, r, f.v, f.dflt ? "" : f.name,
	        strcasecmp(kind, "add") == 0         ? "add" :
	            strcasecmp(kind, "replace") == 0 ? "replace" :
	                                               "remove",
	        pol, n) != 0)
		goto out;
	a = arm_policies_json(q, f.v);
	if (str_fmt(id, sizeof(id),
	        "/subscriptions/%s/resourceGroups/%s/providers/%s/%s/"
	        "accessPolicies/%s",
	        arm_subscription_id(q->ctx), group, ARM_TYPE_VAULTS, f.name,
	        kind) != 0 ||
	    a == NULL) {
		json_decref(a);
		arm_vault_error(r, VLT_ERR_INTERNAL);
		goto out;
	}
	api_resp_set(r, 200,
	    json_pack("{s:s, s:s, s:{s:o}}", "id", id, "type",
	        ARM_TYPE_VAULTS "/accessPolicies", "properties",
	        "accessPolicies", a));
out:
	arm_vref_to_request(q, &f);
	arm_vref_clear(&f);
	free(pol);
	json_decref(body);
}

/* ---- deleted vaults, name availability ------------------------------------ */

static json_t *
deleted_json(struct api_req *q, const struct vlt_vault *x)
{
	json_t *loc = arm_meta_get(x->meta, "location"),
	       *g = arm_meta_get(x->meta, "resourceGroup"),
	       *tags = arm_meta_get(x->meta, "tags"), *j = NULL;
	const char *l = json_is_string(loc) ? json_string_value(loc) :
	                                      arm_default_location(q->ctx);
	char id[400];

	if (json_is_string(g) &&
	    str_fmt(id, sizeof(id),
	        "/subscriptions/%s/providers/" ARM_NS_KEYVAULT
	        "/locations/%s/deletedVaults/%s",
	        arm_subscription_id(q->ctx), l, x->name) == 0)
		j = json_pack(
		    "{s:s, s:s, s:s, s:{s:o, s:s, s:o, s:o, s:o, s:b}}", "id",
		    id, "name", x->name, "type",
		    ARM_NS_KEYVAULT "/deletedVaults", "properties", "vaultId",
		    arm_resource_id(q->ctx, json_string_value(g),
		        ARM_TYPE_VAULTS, x->name),
		    "location", l, "deletionDate", arm_time(x->deleted_date),
		    "scheduledPurgeDate", arm_time(x->scheduled_purge_date),
		    "tags",
		    json_is_object(tags) ? json_incref(tags) : json_object(),
		    "purgeProtectionEnabled", x->settings.purge_protection);
	json_decref(loc);
	json_decref(g);
	json_decref(tags);
	return j;
}

static void
deleted_list(struct api_req *q, struct api_resp *r)
{
	struct vlt_vault *items = NULL;
	size_t n = 0, i;
	json_t *a;
	int rc;

	q->operation = "ArmDeletedVaultList";
	if ((rc = vault_child_list(q->ctx->vault, 1, &items, &n)) != 0) {
		arm_vault_error(r, rc);
		return;
	}
	a = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(a, deleted_json(q, &items[i]));
	vlt_vault_free_array(items, n);
	api_resp_set(r, 200, json_pack("{s:o}", "value", a));
}

/* The deleted vault name at location loc: 0, or 404 answered. */
static int
deleted_find(struct api_req *q, struct api_resp *r, const char *loc,
    const char *name, struct vlt_vault *x)
{
	json_t *l;
	int ok;

	if (strlen(name) > VLT_VAULT_NAME_MAX ||
	    vault_child_get(q->ctx->vault, name, 1, x) != 0)
		return arm_error(r, 404, "ResourceNotFound",
		    "The deleted vault '%.24s' was not found in location "
		    "'%.64s'.",
		    name, loc);
	l = arm_meta_get(x->meta, "location");
	ok = strcasecmp(loc,
	         json_is_string(l) ? json_string_value(l) :
	                             arm_default_location(q->ctx)) == 0;
	json_decref(l);
	if (ok)
		return 0;
	vlt_vault_clear(x);
	return arm_error(r, 404, "ResourceNotFound",
	    "The deleted vault '%.24s' was not found in location '%.64s'.",
	    name, loc);
}

static void
deleted_purge(struct api_req *q, struct api_resp *r, const struct vlt_vault *x)
{
	int rc;

	q->operation = "ArmDeletedVaultPurge";
	rc = vault_child_purge(q->ctx->vault, x->name);
	if (rc == VLT_ERR_PURGE_PROTECTED) {
		arm_error(r, 409, "ConflictError",
		    "Vault '%s' has purge protection enabled: it cannot be "
		    "purged before its scheduled purge date, when the appliance "
		    "purges it.",
		    x->name);
		return;
	}
	if (rc != 0) {
		arm_vault_error(r, rc);
		return;
	}
	policy_access_drop_vault(q->ctx->policy, x->name);
	api_resp_set(r, 200, json_object());
}

void
arm_deleted_vaults(struct api_req *q, struct api_resp *r,
    const struct arm_path *p)
{
	struct vlt_vault x;
	int get = strcmp(q->method, "GET") == 0;

	if (p->group == NULL && p->loc == NULL && p->name == NULL && get) {
		deleted_list(q, r);
	} else if (p->group != NULL || p->loc == NULL || p->name == NULL ||
	    p->n_rest > 1 ||
	    (p->n_rest == 1 && strcasecmp(p->rest[0], "purge") != 0)) {
		arm_error(r, 404, "NotFound", "No such resource path.");
	} else if (p->n_rest == 0 ? !get : strcmp(q->method, "POST") != 0) {
		arm_error(r, 405, "MethodNotAllowed",
		    "The method is not allowed on a deleted vault.");
	} else if (deleted_find(q, r, p->loc, p->name, &x) == 0) {
		if (p->n_rest == 1)
			deleted_purge(q, r, &x);
		else {
			q->operation = "ArmDeletedVaultGet";
			api_resp_set(r, 200, deleted_json(q, &x));
		}
		vlt_vault_clear(&x);
	}
}

/* POST .../providers/Microsoft.KeyVault/checkNameAvailability */
void
arm_name_check(struct api_req *q, struct api_resp *r)
{
	struct vlt_vault x;
	json_t *body = NULL, *name, *type;
	const char *n;
	int taken = 0;

	if (arm_body(q, r, &body) != 0)
		return;
	name = json_object_get(body, "name");
	type = json_object_get(body, "type");
	if (!json_is_string(name) || !json_is_string(type) ||
	    strcasecmp(json_string_value(type), ARM_TYPE_VAULTS) != 0) {
		arm_error(r, 400, "BadRequest",
		    "The request needs a name and the type " ARM_TYPE_VAULTS
		    ".");
		goto out;
	}
	n = json_string_value(name);
	if (vault_child_name_check(n) != 0) {
		api_resp_set(r, 200,
		    json_pack("{s:b, s:s, s:s}", "nameAvailable", 0, "reason",
		        "AccountNameInvalid", "message",
		        "Vault names are 3 to 24 letters, digits and hyphens, "
		        "start with a letter, end with a letter or digit, and "
		        "have no consecutive hyphens."));
		goto out;
	}
	if (arm_is_default_vault(q->ctx, n))
		taken = 1;
	else if (vault_child_get(q->ctx->vault, n, 0, &x) == 0 ||
	    vault_child_get(q->ctx->vault, n, 1, &x) == 0) {
		taken = 1;
		vlt_vault_clear(&x);
	}
	api_resp_set(r, 200,
	    taken ? json_pack("{s:b, s:s, s:s}", "nameAvailable", 0, "reason",
	                "AlreadyExists", "message",
	                "The vault name is already in use (a live or a "
	                "deleted vault).") :
	            json_pack("{s:b}", "nameAvailable", 1));
out:
	json_decref(body);
}
