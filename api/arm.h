/*
 * api/arm.h — private to the management API's files (arm.c,
 * arm_vaults.c, arm_identities.c, arm_groups.c): the parsed ARM path,
 * ARM's error envelope and the helpers they share.
 *
 * Must never: be included outside these files.
 */
#ifndef P11VAULT_API_ARM_H
#define P11VAULT_API_ARM_H

#include "api/api.h"

#define ARM_NS_KEYVAULT "Microsoft.KeyVault"
#define ARM_NS_IDENTITY "Microsoft.ManagedIdentity"
#define ARM_TYPE_VAULTS "Microsoft.KeyVault/vaults"
#define ARM_TYPE_IDENTITIES "Microsoft.ManagedIdentity/userAssignedIdentities"
#define ARM_KIND_GROUP "group"
#define ARM_KIND_IDENTITY "identity"
#define ARM_GROUP_NAME_MAX 90

/*
 * /subscriptions/{sub}[/resourceGroups/{rg}][/providers/{ns}
 * [/locations/{loc}]/{type}[/{name}[/rest...]]] or /subscriptions/{sub}/
 * resources: each part NULL when absent; rest: what follows the name.
 */
struct arm_path {
	const char *sub;
	int groups;        /* "resourceGroups" was named */
	const char *group; /* its name */
	int providers;     /* "providers" was named */
	const char *ns;
	const char *loc; /* .../locations/{loc}/{type}/... */
	const char *type;
	const char *name;
	char **rest;
	size_t n_rest;
	int resources; /* /subscriptions/{sub}/resources */
};

/* arm.c */
/* The subscription's id: config subscription_id, else the tenant's. */
const char *arm_subscription_id(const struct api_ctx *c);
/* The default vault's resource group and location (config resource_group,
 * location; "p11vault" and "local" when absent). */
const char *arm_default_group(const struct api_ctx *c);
const char *arm_default_location(const struct api_ctx *c);
/* ARM's envelope {"error":{"code","message"}}; returns a negative error
 * for "return arm_error(...)". */
int arm_error(struct api_resp *r, unsigned status, const char *code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* A vault error in ARM's terms. */
int arm_vault_error(struct api_resp *r, int err);
/* The request body as a JSON object (400 InvalidRequestContent else). */
int arm_body(struct api_req *q, struct api_resp *r, json_t **out) API_WUR;
/* "tags": absent (NULL out, 0), or an object of at most 50 string values
 * (a new reference in *out); else 400. */
int arm_tags(json_t *body, json_t **out, struct api_resp *r) API_WUR;
/* "location": a string of 1..64 characters (required: 400
 * LocationRequired when absent). */
int arm_location(json_t *body, int required, const char **out,
    struct api_resp *r) API_WUR;
/* The meta text's member key (NULL when absent or malformed). */
json_t *arm_meta_get(const char *meta, const char *key);
/* A resource group exists (the default one always does): 0, else 404
 * ResourceGroupNotFound answered. *loc: its location (may be NULL). */
int arm_group_find(struct api_req *q, struct api_resp *r, const char *group,
    char *loc, size_t cap) API_WUR;
/* "/subscriptions/{sub}/resourceGroups/{rg}/providers/{type}/{name}" */
json_t *arm_resource_id(const struct api_ctx *c, const char *group,
    const char *type, const char *name);
/* ISO 8601 UTC time of Unix seconds t, as a JSON string. */
json_t *arm_time(int64_t t);
int arm_uuid_valid(const char *s);

/* arm_policies.c — one entry of properties.accessPolicies */
struct arm_pol {
	char oid[POLICY_ID_LEN + 1];
	unsigned perms;
	int has_keys; /* permissions.keys was given */
};
/* v's policies in ARM's shape (NULL: the store failed). */
json_t *arm_policies_json(struct api_req *q, vault_t *v);
int arm_policies_parse(struct api_req *q, struct api_resp *r, json_t *list,
    struct arm_pol **out, size_t *n) API_WUR;
/* kind: "set" (the whole set), "add", "replace", "remove"; v's store,
 * then the table under scope ("" the default vault). 0, or answered. */
int arm_policies_change(struct api_req *q, struct api_resp *r, vault_t *v,
    const char *scope, const char *kind, const struct arm_pol *pol,
    size_t n) API_WUR;

/* arm_vaults.c */
/* A vault found by group and name: the default one or a child (v held
 * until arm_vref_clear). */
struct vref {
	char name[VLT_VAULT_NAME_MAX + 1];
	int dflt;
	vault_t *v;
	char *meta; /* the child's; owned */
};
void arm_vref_clear(struct vref *f);
/* Hands f's vault to the request (its audit line names it). */
void arm_vref_to_request(struct api_req *q, struct vref *f);
/* The live vault name in group: 0 (f filled, its vault held), else
 * VLT_ERR_NOT_FOUND or another error. */
int arm_vref_find(struct api_req *q, const char *group, const char *name,
    struct vref *f) API_WUR;
json_t *arm_vault_json(struct api_req *q, const struct vref *f);
/* 404 ResourceNotFound for vault name of group. */
int arm_vault_not_found(struct api_resp *r, const char *group,
    const char *name);
int arm_meta_group_is(const char *meta, const char *group);
int arm_is_default_vault(const struct api_ctx *c, const char *name);
/* arm_vault_put.c */
void arm_vault_put(struct api_req *q, struct api_resp *r, const char *group,
    const char *name, int patch);

void arm_vaults(struct api_req *q, struct api_resp *r,
    const struct arm_path *p);
void arm_deleted_vaults(struct api_req *q, struct api_resp *r,
    const struct arm_path *p);
void arm_name_check(struct api_req *q, struct api_resp *r);
/* Every vault's {id,name,type,location,tags} into a (group NULL: all). */
int arm_vault_resources(struct api_req *q, const char *group, json_t *a);
/* Soft-deletes every vault of group (its deletion). */
int arm_vaults_delete_group(struct api_req *q, const char *group) API_WUR;

/* arm_identities.c */
void arm_identities(struct api_req *q, struct api_resp *r,
    const struct arm_path *p);
int arm_identity_resources(struct api_req *q, const char *group, json_t *a);
int arm_identities_delete_group(struct api_req *q, const char *group) API_WUR;

/* arm_groups.c */
void arm_groups(struct api_req *q, struct api_resp *r,
    const struct arm_path *p);
void arm_resources(struct api_req *q, struct api_resp *r);

#endif
