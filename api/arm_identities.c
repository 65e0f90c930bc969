/*
 * arm_identities.c — Microsoft.ManagedIdentity/userAssignedIdentities
 * (`az identity create|show|delete|list`): each one a principal of the
 * appliance's identity provider, made with a new object id and client
 * id and no usable secret (`p11vault identity credential` issues one).
 * Its name is unique in its resource group: a record of the root's
 * store (kind "identity", scope the group, ref the object id, meta its
 * location and tags).
 *
 * Order of changes: create makes the principal, then the record (a
 * record never names a principal that is not there; a failed record
 * takes the principal back); delete removes the record, then the
 * principal and its grants in every vault.
 * Must never: make or show a usable secret.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "api/arm.h"
#include "hsm/base.h"

/* ARM's rule for the name: 3..128 of letters, digits, '-' and '_',
 * starting with a letter or digit. */
static int
name_ok(const char *s)
{
	size_t n = strlen(s), i;

	if (n < 3 || n > 128 || s[0] == '-' || s[0] == '_')
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

/* The principal's client id: 0, VLT_ERR_NOT_FOUND. */
static int
client_id_of(struct api_req *q, const char *oid, char out[VLT_ID_LEN + 1])
{
	struct vlt_principal *items = NULL;
	size_t n = 0, i;
	int rc = vault_principal_list(q->ctx->vault, &items, &n);

	if (rc != 0)
		return rc;
	rc = VLT_ERR_NOT_FOUND;
	for (i = 0; i < n && rc != 0; i++)
		if (strcmp(items[i].object_id, oid) == 0) {
			memcpy(out, items[i].client_id, VLT_ID_LEN + 1);
			rc = 0;
		}
	vlt_principal_free_array(items, n);
	return rc;
}

static json_t *
identity_json(struct api_req *q, const struct vlt_record *x)
{
	char cid[VLT_ID_LEN + 1];
	json_t *l, *t, *j;

	if (client_id_of(q, x->ref, cid) != 0)
		return NULL;
	l = arm_meta_get(x->meta, "location");
	t = arm_meta_get(x->meta, "tags");
	j = json_pack("{s:o, s:s, s:s, s:s, s:o, s:{s:s, s:s, s:s}}", "id",
	    arm_resource_id(q->ctx, x->scope, ARM_TYPE_IDENTITIES, x->name),
	    "name", x->name, "type", ARM_TYPE_IDENTITIES, "location",
	    json_is_string(l) ? json_string_value(l) : "", "tags",
	    json_is_object(t) ? json_incref(t) : json_object(), "properties",
	    "tenantId", q->ctx->tenant_id, "principalId", x->ref, "clientId",
	    cid);
	json_decref(l);
	json_decref(t);
	return j;
}

static int
not_found(struct api_resp *r, const char *group, const char *name)
{
	return arm_error(r, 404, "ResourceNotFound",
	    "The Resource '" ARM_TYPE_IDENTITIES
	    "/%.128s' under resource "
	    "group '%.90s' was not found.",
	    name, group);
}

/* A new principal for identity name: its object id into x->ref. */
static int
principal_new(struct api_req *q, const char *name, struct vlt_record *x)
{
	struct vlt_principal p;
	char secret[64];
	int rc;

	memset(&p, 0, sizeof(p));
	policy_uuid(p.object_id);
	policy_uuid(p.client_id);
	memcpy(p.display_name, name, strlen(name) + 1); /* <= 128: fits */
	/* a secret nobody is told: none works until one is issued */
	policy_secret_new(secret);
	rc = policy_secret_hash(secret, &p.secret_hash) != 0 ?
	    VLT_ERR_INTERNAL :
	    0;
	OPENSSL_cleanse(secret, sizeof(secret));
	p.created = vault_now(q->ctx->vault);
	if (rc == 0)
		rc = vault_principal_put(q->ctx->vault, &p);
	if (rc == 0 &&
	    policy_principal_set(q->ctx->policy, p.object_id, p.client_id,
	        p.secret_hash, 0) != 0)
		rc = VLT_ERR_INTERNAL;
	free(p.secret_hash);
	if (rc == 0)
		memcpy(x->ref, p.object_id, sizeof(x->ref));
	return rc;
}

static char *
meta_text(const char *loc, json_t *tags)
{
	json_t *m = json_pack("{s:s, s:o}", "location", loc, "tags",
	    tags != NULL ? json_incref(tags) : json_object());
	char *t = m != NULL ? json_dumps(m, JSON_COMPACT) : NULL;

	json_decref(m);
	return t;
}

/* The record as given, or a new one (x filled, *created set). */
static int
identity_store(struct api_req *q, struct vlt_record *x, const char *loc,
    json_t *tags, int exists)
{
	int rc;

	if ((x->meta = meta_text(loc, tags)) == NULL)
		return VLT_ERR_NO_MEMORY;
	if (exists)
		return vault_record_put(q->ctx->vault, x, 0);
	if ((rc = principal_new(q, x->name, x)) != 0)
		return rc;
	if ((rc = vault_record_put(q->ctx->vault, x, 1)) != 0 &&
	    api_principal_forget(q->ctx, x->ref) != 0)
		rc = VLT_ERR_INTERNAL;
	return rc;
}

static void
identity_put(struct api_req *q, struct api_resp *r, const char *group,
    const char *name)
{
	json_t *body = NULL, *tags = NULL, *l = NULL;
	const char *loc;
	struct vlt_record x, old;
	int exists, rc;

	q->operation = "ArmIdentityPut";
	memset(&x, 0, sizeof(x));
	if (!name_ok(name)) {
		arm_error(r, 400, "InvalidResourceName",
		    "Identity names are 3 to 128 letters, digits, hyphens and "
		    "underscores, starting with a letter or digit.");
		return;
	}
	if (arm_body(q, r, &body) != 0 || arm_tags(body, &tags, r) != 0 ||
	    arm_location(body, 1, &loc, r) != 0)
		goto out;
	rc = vault_record_get(q->ctx->vault, ARM_KIND_IDENTITY, group, name,
	    &old);
	if (rc != 0 && rc != VLT_ERR_NOT_FOUND) {
		arm_vault_error(r, rc);
		goto out;
	}
	exists = rc == 0;
	if (exists) {
		l = arm_meta_get(old.meta, "location");
		x = old;
		x.meta = NULL;
		vlt_record_clear(&old);
		if (json_is_string(l) &&
		    strcasecmp(json_string_value(l), loc) != 0) {
			arm_error(r, 409, "InvalidResourceLocation",
			    "The identity '%.128s' already exists in location "
			    "'%.64s'.",
			    name, json_string_value(l));
			goto out;
		}
	} else {
		memcpy(x.kind, ARM_KIND_IDENTITY, sizeof(ARM_KIND_IDENTITY));
		memcpy(x.scope, group, strlen(group) + 1); /* <= 90: fits */
		memcpy(x.name, name, strlen(name) + 1);
	}
	if ((rc = identity_store(q, &x, loc, tags, exists)) != 0) {
		arm_vault_error(r, rc);
		goto out;
	}
	api_resp_set(r, exists ? 200 : 201, identity_json(q, &x));
out:
	vlt_record_clear(&x);
	json_decref(l);
	json_decref(tags);
	json_decref(body);
}

static void
identity_get_delete(struct api_req *q, struct api_resp *r, const char *group,
    const char *name, int del)
{
	struct vlt_record x;
	int rc;

	q->operation = del ? "ArmIdentityDelete" : "ArmIdentityGet";
	rc = strlen(name) > VLT_RECORD_NAME_MAX ?
	    VLT_ERR_NOT_FOUND :
	    vault_record_get(q->ctx->vault, ARM_KIND_IDENTITY, group, name, &x);
	if (rc == VLT_ERR_NOT_FOUND) {
		if (del)
			api_resp_set(r, 204, NULL);
		else
			not_found(r, group, name);
		return;
	}
	if (rc != 0) {
		arm_vault_error(r, rc);
		return;
	}
	if (!del)
		api_resp_set(r, 200, identity_json(q, &x));
	else if (strcmp(x.ref, q->caller.oid) == 0)
		arm_error(r, 400, "BadRequest",
		    "An administrator cannot delete its own identity.");
	else if ((rc = vault_record_delete(q->ctx->vault, ARM_KIND_IDENTITY,
	              group, x.name)) != 0 ||
	    (rc = api_principal_forget(q->ctx, x.ref)) != 0)
		arm_vault_error(r, rc);
	else
		api_resp_set(r, 200, json_object());
	vlt_record_clear(&x);
}

/* Each identity of group (NULL: all) into a; full: with properties. */
static int
identities_each(struct api_req *q, const char *group, int full, json_t *a)
{
	struct vlt_record *items = NULL;
	size_t n = 0, i;
	json_t *j;
	int rc = vault_record_list(q->ctx->vault, ARM_KIND_IDENTITY, group,
	    &items, &n);

	for (i = 0; rc == 0 && i < n; i++) {
		if ((j = identity_json(q, &items[i])) == NULL)
			continue; /* its principal was deleted (/admin) */
		if (!full)
			json_object_del(j, "properties");
		if (json_array_append_new(a, j) != 0)
			rc = VLT_ERR_NO_MEMORY;
	}
	vlt_record_free_array(items, n);
	return rc;
}

int
arm_identity_resources(struct api_req *q, const char *group, json_t *a)
{
	return identities_each(q, group, 0, a);
}

int
arm_identities_delete_group(struct api_req *q, const char *group)
{
	struct vlt_record *items = NULL;
	size_t n = 0, i;
	int rc = vault_record_list(q->ctx->vault, ARM_KIND_IDENTITY, group,
	    &items, &n);

	for (i = 0; rc == 0 && i < n; i++) {
		if (strcmp(items[i].ref, q->caller.oid) == 0)
			continue; /* never the caller's own */
		if ((rc = vault_record_delete(q->ctx->vault, ARM_KIND_IDENTITY,
		         group, items[i].name)) == 0)
			rc = api_principal_forget(q->ctx, items[i].ref);
	}
	vlt_record_free_array(items, n);
	return rc;
}

void
arm_identities(struct api_req *q, struct api_resp *r, const struct arm_path *p)
{
	const char *m = q->method;
	json_t *a;
	int rc;

	if (p->n_rest > 0 || (p->group == NULL && p->name != NULL)) {
		arm_error(r, 404, "NotFound", "No such resource path.");
		return;
	}
	if (p->group != NULL && arm_group_find(q, r, p->group, NULL, 0) != 0)
		return;
	if (p->name == NULL && strcmp(m, "GET") == 0) {
		q->operation = "ArmIdentityList";
		a = json_array();
		if ((rc = identities_each(q, p->group, 1, a)) != 0) {
			json_decref(a);
			arm_vault_error(r, rc);
			return;
		}
		api_resp_set(r, 200, json_pack("{s:o}", "value", a));
	} else if (p->name != NULL && strcmp(m, "PUT") == 0) {
		identity_put(q, r, p->group, p->name);
	} else if (p->name != NULL &&
	    (strcmp(m, "GET") == 0 || strcmp(m, "DELETE") == 0)) {
		identity_get_delete(q, r, p->group, p->name, m[0] == 'D');
	} else {
		arm_error(r, 405, "MethodNotAllowed",
		    "The method is not allowed here.");
	}
}
