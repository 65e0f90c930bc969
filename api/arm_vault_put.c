/*
 * arm_vault_put.c — PUT and PATCH of Microsoft.KeyVault/vaults: the
 * request checked whole (properties, sku, access policies, flags this
 * appliance cannot keep refused), then a new vault made, an existing one
 * updated (idempotent), or a deleted one recovered (createMode recover,
 * as `az keyvault recover` sends it).
 *
 * Must never: change anything before the request is checked; turn purge
 * protection off.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/arm.h"
#include "hsm/base.h"

/* What a PUT or PATCH asks for. */
struct spec {
	const char *loc, *sku;
	json_t *tags;      /* owned; NULL: none given */
	int retention, pp; /* -1: not given */
	int recover;
	int has_policies;
	struct arm_pol *pol; /* owned */
	size_t npol;
};

static void
spec_clear(struct spec *s)
{
	json_decref(s->tags);
	free(s->pol);
}

static int
spec_flags(struct api_req *q, struct api_resp *r, json_t *pr, struct spec *s)
{
	json_t *v;

	v = json_object_get(pr, "tenantId");
	if (v != NULL &&
	    (!json_is_string(v) ||
	        strcasecmp(json_string_value(v), q->ctx->tenant_id) != 0))
		return arm_error(r, 400, "BadRequest",
		    "properties.tenantId must be the appliance's tenant.");
	v = json_object_get(pr, "enableSoftDelete");
	if (v != NULL && !json_is_null(v) && !json_is_true(v))
		return arm_error(r, 400, "BadRequest",
		    "Soft delete is always on and cannot be disabled.");
	v = json_object_get(pr, "enableRbacAuthorization");
	if (v != NULL && !json_is_null(v) && !json_is_boolean(v))
		return arm_error(r, 400, "BadRequest",
		    "enableRbacAuthorization must be a boolean.");
	if (json_is_true(v))
		return arm_error(r, 400, "BadRequest",
		    "enableRbacAuthorization is not supported by this "
		    "appliance: vaults use access policies.");
	v = json_object_get(pr, "softDeleteRetentionInDays");
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_integer(v) ||
		    vault_retention_check(json_integer_value(v)) != 0)
			return arm_error(r, 400, "BadRequest",
			    "softDeleteRetentionInDays must be an integer from "
			    "7 to 90.");
		s->retention = (int)json_integer_value(v);
	}
	v = json_object_get(pr, "enablePurgeProtection");
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_boolean(v))
			return arm_error(r, 400, "BadRequest",
			    "enablePurgeProtection must be a boolean.");
		s->pp = json_is_true(v);
	}
	v = json_object_get(pr, "createMode");
	if (v != NULL && !json_is_null(v) &&
	    (!json_is_string(v) ||
	        (strcasecmp(json_string_value(v), "default") != 0 &&
	            strcasecmp(json_string_value(v), "recover") != 0)))
		return arm_error(r, 400, "BadRequest",
		    "properties.createMode must be default or recover.");
	s->recover = json_is_string(v) &&
	    strcasecmp(json_string_value(v), "recover") == 0;
	return 0;
}

static int
spec_parse(struct api_req *q, struct api_resp *r, json_t *body, int patch,
    struct spec *s)
{
	json_t *pr = json_object_get(body, "properties"), *v;

	memset(s, 0, sizeof(*s));
	s->retention = s->pp = -1;
	if (arm_location(body, 0, &s->loc, r) != 0 ||
	    arm_tags(body, &s->tags, r) != 0)
		return VLT_ERR_BAD_PARAM;
	if (pr == NULL && patch)
		return 0;
	if (!json_is_object(pr))
		return arm_error(r, 400, "BadRequest",
		    "The request needs a properties object.");
	if (spec_flags(q, r, pr, s) != 0)
		return VLT_ERR_BAD_PARAM;
	v = json_object_get(json_object_get(pr, "sku"), "name");
	if (v != NULL &&
	    (!json_is_string(v) ||
	        (strcasecmp(json_string_value(v), "standard") != 0 &&
	            strcasecmp(json_string_value(v), "premium") != 0)))
		return arm_error(r, 400, "BadRequest",
		    "properties.sku.name must be standard or premium.");
	if (v != NULL)
		s->sku = strcasecmp(json_string_value(v), "standard") == 0 ?
		    "standard" :
		    "premium";
	v = json_object_get(pr, "accessPolicies");
	if (v == NULL || json_is_null(v))
		return 0;
	s->has_policies = 1;
	return arm_policies_parse(q, r, v, &s->pol, &s->npol);
}

/* The meta text of a vault in group from s (old: the stored meta, for
 * what s does not give; patch keeps old tags when s has none). */
static char *
meta_text(const char *group, const struct spec *s, const char *old, int patch)
{
	json_t *m, *t = NULL, *l = arm_meta_get(old, "location"),
	           *k = arm_meta_get(old, "sku");
	char *text = NULL;

	if (patch && s->tags == NULL)
		t = arm_meta_get(old, "tags");
	m = json_pack("{s:s, s:s, s:s, s:o}", "resourceGroup", group,
	    "location",
	    json_is_string(l) ? json_string_value(l) : (s->loc ? s->loc : ""),
	    "sku",
	    s->sku ? s->sku :
	             (json_is_string(k) ? json_string_value(k) : "premium"),
	    "tags",
	    s->tags ? json_incref(s->tags) :
	              (t ? json_incref(t) : json_object()));
	if (m != NULL)
		text = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	json_decref(t);
	json_decref(l);
	json_decref(k);
	return text;
}

/* PUT or PATCH of an existing vault. */
static void
vault_update(struct api_req *q, struct api_resp *r, const char *group,
    struct vref *f, const struct spec *s, int patch)
{
	struct vlt_settings cur;
	json_t *l = arm_meta_get(f->meta, "location");
	const char *have = json_is_string(l) ? json_string_value(l) :
	                                       arm_default_location(q->ctx);
	char *meta = NULL;
	int rc;

	if ((rc = vault_settings_get(f->v, &cur)) != 0) {
		arm_vault_error(r, rc);
		goto out;
	}
	if (s->loc != NULL && strcasecmp(s->loc, have) != 0) {
		arm_error(r, 409, "InvalidResourceLocation",
		    "The resource '%s' already exists in location '%.64s'; a "
		    "resource with the same name cannot be made in location "
		    "'%.64s'.",
		    f->name, have, s->loc);
		goto out;
	}
	if (s->pp == 0 && cur.purge_protection) {
		arm_error(r, 400, "BadRequest",
		    "Purge protection is enabled on vault '%s' and cannot be "
		    "disabled once enabled.",
		    f->name);
		goto out;
	}
	if (!f->dflt && (meta = meta_text(group, s, f->meta, patch)) == NULL) {
		arm_vault_error(r, VLT_ERR_NO_MEMORY);
		goto out;
	}
	if ((s->retention >= 0 || s->pp == 1) &&
	    (rc = vault_settings_update(f->v, s->retention,
	         s->pp == 1 ? 1 : -1)) != 0) {
		arm_vault_error(r, rc);
		goto out;
	}
	if (s->has_policies &&
	    arm_policies_change(q, r, f->v, f->dflt ? "" : f->name, "set",
	        s->pol, s->npol) != 0)
		goto out;
	if (meta != NULL &&
	    (rc = vault_child_set_meta(q->ctx->vault, f->name, meta)) != 0) {
		arm_vault_error(r, rc);
		goto out;
	}
	if (meta != NULL) {
		free(f->meta);
		f->meta = meta;
		meta = NULL;
	}
	api_resp_set(r, 200, arm_vault_json(q, f));
out:
	free(meta);
	json_decref(l);
}

/* A new child vault: created, its policies stored and loaded. */
static void
vault_create(struct api_req *q, struct api_resp *r, const char *group,
    const char *name, const struct spec *s)
{
	struct vlt_settings set = { s->retention >= 0 ? s->retention : 90,
		s->pp == 1 };
	struct vref f;
	char *meta;
	int rc;

	memset(&f, 0, sizeof(f));
	if (vault_child_name_check(name) != 0) {
		arm_error(r, 400, "VaultNameNotValid",
		    "The vault name '%.64s' is invalid: 3 to 24 letters, "
		    "digits and hyphens, starting with a letter, ending with a "
		    "letter or digit, no consecutive hyphens.",
		    name);
		return;
	}
	if (s->loc == NULL) {
		arm_error(r, 400, "LocationRequired",
		    "The location property is required for this definition.");
		return;
	}
	if ((meta = meta_text(group, s, NULL, 0)) == NULL) {
		arm_vault_error(r, VLT_ERR_NO_MEMORY);
		return;
	}
	rc = vault_child_create(q->ctx->vault, name, &set, meta, NULL);
	free(meta);
	if (rc == 0)
		rc = arm_vref_find(q, group, name, &f);
	if (rc != 0) {
		arm_vault_error(r, rc);
		return;
	}
	if (arm_policies_change(q, r, f.v, f.name, "set", s->pol, s->npol) ==
	    0) {
		api_resp_set(r, 201, arm_vault_json(q, &f));
		arm_vref_to_request(q, &f);
	}
	arm_vref_clear(&f);
}

/* createMode recover: the deleted vault name of group comes back. */
static void
vault_recover(struct api_req *q, struct api_resp *r, const char *group,
    const char *name)
{
	struct vlt_vault x;
	struct vref f;
	int rc;

	q->operation = "ArmVaultRecover";
	if ((rc = vault_child_get(q->ctx->vault, name, 1, &x)) != 0) {
		arm_error(r, 404, "ResourceNotFound",
		    "No deleted vault '%.24s' to recover.", name);
		return;
	}
	rc = arm_meta_group_is(x.meta, group);
	vlt_vault_clear(&x);
	if (!rc) {
		arm_error(r, 400, "BadRequest",
		    "The deleted vault '%.24s' belongs to another resource "
		    "group.",
		    name);
		return;
	}
	if ((rc = vault_child_recover(q->ctx->vault, name)) != 0 ||
	    (rc = arm_vref_find(q, group, name, &f)) != 0) {
		arm_vault_error(r, rc);
		return;
	}
	if ((rc = api_vault_policies_load(q->ctx, f.v)) != 0)
		arm_vault_error(r, rc);
	else
		api_resp_set(r, 200, arm_vault_json(q, &f));
	arm_vref_to_request(q, &f);
	arm_vref_clear(&f);
}

/* Why name cannot be a new vault (answered), or 0. */
static int
name_taken(struct api_req *q, struct api_resp *r, const char *name)
{
	struct vlt_vault x;

	if (arm_is_default_vault(q->ctx, name) ||
	    vault_child_get(q->ctx->vault, name, 0, &x) == 0) {
		if (!arm_is_default_vault(q->ctx, name))
			vlt_vault_clear(&x);
		return arm_error(r, 409, "VaultAlreadyExists",
		    "The vault name '%.24s' is already in use. Vault names are "
		    "unique on the appliance.",
		    name);
	}
	if (vault_child_get(q->ctx->vault, name, 1, &x) == 0) {
		vlt_vault_clear(&x);
		return arm_error(r, 409, "ConflictError",
		    "A vault with the same name already exists in deleted "
		    "state. You need to either recover or purge existing key "
		    "vault.");
	}
	return 0;
}

void
arm_vault_put(struct api_req *q, struct api_resp *r, const char *group,
    const char *name, int patch)
{
	json_t *body = NULL;
	struct spec s;
	struct vref f;
	int rc;

	memset(&s, 0, sizeof(s));
	q->operation = patch ? "ArmVaultUpdate" : "ArmVaultPut";
	if (arm_body(q, r, &body) != 0 ||
	    spec_parse(q, r, body, patch, &s) != 0)
		goto out;
	if (s.recover && !patch) {
		vault_recover(q, r, group, name);
		goto out;
	}
	rc = arm_vref_find(q, group, name, &f);
	if (rc == 0) {
		vault_update(q, r, group, &f, &s, patch);
		arm_vref_to_request(q, &f);
		arm_vref_clear(&f);
	} else if (rc != VLT_ERR_NOT_FOUND) {
		arm_vault_error(r, rc);
	} else if (patch) {
		arm_vault_not_found(r, group, name);
	} else if (name_taken(q, r, name) == 0) {
		vault_create(q, r, group, name, &s);
	}
out:
	spec_clear(&s);
	json_decref(body);
}
