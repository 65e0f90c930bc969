/*
 * arm_api.c — what Azure CLI calls once signed in, besides the resource
 * providers: the management (ARM-shaped) audience and its gate, the one
 * subscription (/subscriptions), the tenant (/tenants), and the Graph read
 * `az keyvault create` makes for the signed-in principal (/graph/v1.0/...).
 *
 * Owns: the subscription's id and shape, ARM's api-version answer and
 * its 401/403 wording, the management and Graph audiences, Graph's
 * servicePrincipal shape. Deny by default: a management call needs a
 * token for API_ARM_AUDIENCE and an administrator (a principal that is
 * not one lists no subscription and gets 403 AuthorizationFailed below
 * it); Graph shows an administrator every principal, anyone else only
 * itself.
 * Must never: accept a token for another audience (the data plane's
 * included), show a secret or a secret hash, or let a caller through on
 * any result but 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/sha.h>

#include "api/api.h"
#include "hsm/base.h"

#define ARM_SCOPE_MAX 512
#define SP_FILTER_MAX 256

/* The versions of Microsoft.Resources' subscriptions API answered here
 * (one shape for all: 2019-11-01's; az 2.45 asks 2019-11-01). */
static const char *const arm_sub_versions[] = {
	"2016-06-01",
	"2018-06-01",
	"2019-06-01",
	"2019-11-01",
	"2020-01-01",
	"2021-01-01",
	"2022-01-01",
	"2022-12-01",
	NULL,
};

/* ---- identifiers --------------------------------------------------------- */

int
api_graph_audience(const struct api_ctx *c, char *out, size_t cap)
{
	return str_fmt(out, cap, "%s/graph/", c->vault_url) == 0 ?
	    0 :
	    VLT_ERR_BAD_PARAM;
}

int
api_arm_subscription_id(const struct api_ctx *c, char out[POLICY_ID_LEN + 1])
{
	const char *set = vault_config(c->vault, "subscription_id");
	uint8_t d[SHA256_DIGEST_LENGTH];
	char name[128];

	/* subscription_id= in the config, else one derived from the tenant */
	if (set != NULL)
		return str_fmt(out, POLICY_ID_LEN + 1, "%s", set) == 0 ?
		    0 :
		    VLT_ERR_BAD_PARAM;
	if (str_fmt(name, sizeof(name), "p11vault subscription of tenant %s",
	        c->tenant_id) != 0 ||
	    SHA256((const unsigned char *)name, strlen(name), d) == NULL)
		return VLT_ERR_INTERNAL;
	/* RFC 9562's UUIDv8 (a name-based UUID of our own hash) */
	d[6] = (uint8_t)((d[6] & 0x0f) | 0x80);
	d[8] = (uint8_t)((d[8] & 0x3f) | 0x80);
	return str_fmt(out, POLICY_ID_LEN + 1,
	           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	           "%02x%02x%02x%02x%02x%02x",
	           d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9],
	           d[10], d[11], d[12], d[13], d[14], d[15]) == 0 ?
	    0 :
	    VLT_ERR_INTERNAL;
}

/* The host of the vault URL (for display names and domains). */
static void
url_host(const struct api_ctx *c, char *out, size_t cap)
{
	const char *p = strstr(c->vault_url, "://");
	size_t n;

	p = p != NULL ? p + 3 : c->vault_url;
	n = strcspn(p, ":/");
	if (n >= cap)
		n = cap - 1;
	memcpy(out, p, n);
	out[n] = '\0';
}

/* ---- the gate ------------------------------------------------------------ */

/* ARM's answer to a missing or unknown api-version: 0 when it is one of
 * versions. */
static int
arm_api_version(struct api_req *q, struct api_resp *r,
    const char *const *versions)
{
	char list[512] = "";
	size_t i, len = 0;

	if (q->api_version == NULL || q->api_version[0] == '\0') {
		api_resp_error(r, 400, "MissingApiVersionParameter",
		    "The api-version query parameter (?api-version=) is "
		    "required for all requests.");
		return VLT_ERR_BAD_PARAM;
	}
	for (i = 0; versions[i]; i++) {
		if (strcmp(q->api_version, versions[i]) == 0)
			return 0;
		if (str_fmt(list + len, sizeof(list) - len, "%s%s",
		        i ? "," : "", versions[i]) == 0)
			len += strlen(list + len);
	}
	api_resp_error(r, 400, "InvalidApiVersionParameter",
	    "The api-version '%.32s' is invalid. The supported versions are "
	    "'%s'.",
	    q->api_version, list);
	return VLT_ERR_BAD_PARAM;
}

/* A token for audience, in the wording of ARM (graph 0) or Graph (1). */
static int
arm_authn(struct api_req *q, struct api_resp *r, const char *audience,
    int graph)
{
	int rc = api_bearer_check(q, audience);

	if (rc == VLT_ERR_SEALED) {
		api_resp_vault_error(r, VLT_ERR_SEALED, NULL, NULL);
		return rc;
	}
	if (rc == VLT_ERR_NOT_FOUND) {
		api_resp_error(r, 401,
		    graph ? "InvalidAuthenticationToken" :
		            "AuthenticationFailed",
		    graph ?
		        "Access token is empty." :
		        "Authentication failed. The 'Authorization' header is "
		        "missing.");
		return VLT_ERR_UNAUTHORIZED;
	}
	if (rc != 0) {
		api_resp_error(r, 401, "InvalidAuthenticationToken",
		    graph ? "Access token validation failure. Invalid audience "
		            "or token." :
		            "The access token is invalid, or was obtained for "
		            "another audience (it must be %s).",
		    audience);
		return VLT_ERR_UNAUTHORIZED;
	}
	/* fail closed: nothing is answered that the audit log cannot record */
	if (vault_storage_ready(q->ctx->vault) != 0) {
		api_resp_vault_error(r, VLT_ERR_STORAGE, NULL, NULL);
		return VLT_ERR_STORAGE;
	}
	return 0;
}

int
api_arm_authz(struct api_req *q, struct api_resp *r, const char *action,
    const char *scope)
{
	int rc;

	if ((rc = arm_authn(q, r, API_ARM_AUDIENCE, 0)) != 0)
		return rc;
	if (policy_check_admin(q->ctx->policy, q->caller.oid) == POLICY_OK)
		return 0;
	api_resp_error(r, 403, "AuthorizationFailed",
	    "The client '%s' with object id '%s' does not have authorization "
	    "to perform action '%s' over scope '%s' or the scope is invalid. "
	    "Only the appliance's administrators may use its management API.",
	    q->caller.appid, q->caller.oid, action, scope);
	return VLT_ERR_FORBIDDEN;
}

/* ---- /subscriptions, /tenants -------------------------------------------- */

static json_t *
subscription_json(const struct api_ctx *c, const char *sub)
{
	char host[256], path[64];

	url_host(c, host, sizeof(host));
	if (str_fmt(path, sizeof(path), "/subscriptions/%s", sub) != 0)
		return NULL;
	return json_pack(
	    "{s:s, s:s, s:[], s:s, s:s, s:s+, s:s, "
	    "s:{s:s, s:s, s:s}}",
	    "id", path, "authorizationSource", "RoleBased", "managedByTenants",
	    "subscriptionId", sub, "tenantId", c->tenant_id, "displayName",
	    "p11vault ", host, "state", "Enabled", "subscriptionPolicies",
	    "locationPlacementId", "Internal_2014-09-01", "quotaId",
	    "Internal_2014-09-01", "spendingLimit", "Off");
}

/* ARM's action for a request below the subscription, for a 403. */
static void
arm_action(const struct api_req *q, char **segs, size_t n, char *out,
    size_t cap)
{
	const char *verb = strcmp(q->method, "GET") == 0 ? "read" :
	    strcmp(q->method, "DELETE") == 0             ? "delete" :
	    strcmp(q->method, "POST") == 0               ? "action" :
	                                                   "write";
	size_t i;

	for (i = 0; i + 2 < n; i++)
		if (strcasecmp(segs[i], "providers") == 0) {
			if (str_fmt(out, cap, "%.64s/%.64s/%s", segs[i + 1],
			        segs[i + 2], verb) != 0)
				break;
			return;
		}
	if (str_fmt(out, cap, "Microsoft.Resources/subscriptions/%s%s",
	        n > 0 && strcasecmp(segs[0], "resourcegroups") == 0 ?
	            "resourceGroups/" :
	            "",
	        verb) != 0)
		out[0] = '\0';
}

/* Below /subscriptions/{id}/ (segs from the id on), after the gate: the
 * resource providers (resource groups, vaults, identities; arm.c). */
static void
arm_in_subscription(struct api_req *q, struct api_resp *r, char **segs,
    size_t n)
{
	api_arm(q, r, segs, n);
}

/* GET /subscriptions: the one subscription to an administrator, none to
 * anyone else (as ARM lists only what the caller may read). */
static void
subscriptions_list(struct api_req *q, struct api_resp *r, const char *sub)
{
	json_t *list;

	q->operation = "ArmSubscriptionsList";
	if (arm_api_version(q, r, arm_sub_versions) != 0 ||
	    arm_authn(q, r, API_ARM_AUDIENCE, 0) != 0)
		return;
	list = json_array();
	if (list != NULL &&
	    policy_check_admin(q->ctx->policy, q->caller.oid) == POLICY_OK &&
	    json_array_append_new(list, subscription_json(q->ctx, sub)) != 0) {
		json_decref(list);
		list = NULL;
	}
	api_resp_set(r, 200,
	    list != NULL ? json_pack("{s:o}", "value", list) : NULL);
}

void
api_arm_subscriptions(struct api_req *q, struct api_resp *r, char **segs,
    size_t n)
{
	char sub[POLICY_ID_LEN + 1], scope[ARM_SCOPE_MAX], action[200];

	if (api_arm_subscription_id(q->ctx, sub) != 0) {
		api_resp_vault_error(r, VLT_ERR_INTERNAL, NULL, NULL);
		return;
	}
	if (n == 0 && strcmp(q->method, "GET") == 0) {
		subscriptions_list(q, r, sub);
		return;
	}
	if (n == 0) {
		q->operation = "ArmRequest";
		api_resp_error(r, 405, "MethodNotAllowed",
		    "The subscriptions collection can only be listed (GET).");
		return;
	}
	if (strcasecmp(segs[0], sub) != 0) {
		q->operation = "ArmRequest";
		if (arm_authn(q, r, API_ARM_AUDIENCE, 0) != 0)
			return;
		api_resp_error(r, 404, "SubscriptionNotFound",
		    "The subscription '%.64s' could not be found.", segs[0]);
		return;
	}
	arm_action(q, segs + 1, n - 1, action, sizeof(action));
	if (str_fmt(scope, sizeof(scope), "%s", q->path) != 0)
		scope[0] = '\0';
	if (n == 1 && strcmp(q->method, "GET") == 0) {
		q->operation = "ArmSubscriptionGet";
		if (arm_api_version(q, r, arm_sub_versions) == 0 &&
		    api_arm_authz(q, r, action, scope) == 0)
			api_resp_set(r, 200, subscription_json(q->ctx, sub));
		return;
	}
	if (api_arm_authz(q, r, action, scope) != 0)
		return;
	arm_in_subscription(q, r, segs, n);
}

void
api_arm_tenants(struct api_req *q, struct api_resp *r, char **segs, size_t n)
{
	const char *t = q->ctx->tenant_id;
	char host[256], path[64];

	(void)segs;
	q->operation = "ArmTenantsList";
	if (n != 0 || strcmp(q->method, "GET") != 0) {
		api_resp_error(r, 404, "NotFound", "No such resource.");
		return;
	}
	if (arm_api_version(q, r, arm_sub_versions) != 0 ||
	    arm_authn(q, r, API_ARM_AUDIENCE, 0) != 0)
		return;
	url_host(q->ctx, host, sizeof(host));
	if (str_fmt(path, sizeof(path), "/tenants/%s", t) != 0) {
		api_resp_vault_error(r, VLT_ERR_INTERNAL, NULL, NULL);
		return;
	}
	api_resp_set(r, 200,
	    json_pack("{s:[{s:s, s:s, s:s, s:s+, s:[s], s:s}]}", "value", "id",
	        path, "tenantId", t, "tenantCategory", "Home", "displayName",
	        "p11vault ", host, "domains", host, "defaultDomain", host));
}

/* ---- Graph: the servicePrincipal read ------------------------------------ */

static json_t *
sp_json(const struct api_ctx *c, const struct vlt_principal *p)
{
	return json_pack("{s:s, s:s, s:s, s:[s], s:s, s:b, s:s}", "id",
	    p->object_id, "appId", p->client_id, "displayName", p->display_name,
	    "servicePrincipalNames", p->client_id, "servicePrincipalType",
	    "Application", "accountEnabled", 1, "appOwnerOrganizationId",
	    c->tenant_id);
}

/* The appId a $filter asks for: "servicePrincipalNames/any(c:c eq 'X')"
 * (what az sends for a service principal) or "appId eq 'X'"; *app NULL
 * without a filter. 0, or VLT_ERR_BAD_PARAM for any other filter. */
static int
sp_filter(const char *f, char *app, size_t cap, int *any)
{
	static const char *const pre[] = { "servicePrincipalNames/any(c:c eq '",
		"appId eq '" };
	static const char *const post[] = { "')", "'" };
	size_t i, lp, lq, len;

	*any = f == NULL;
	if (f == NULL)
		return 0;
	len = strlen(f);
	for (i = 0; i < 2; i++) {
		lp = strlen(pre[i]);
		lq = strlen(post[i]);
		if (len <= lp + lq || strncmp(f, pre[i], lp) != 0 ||
		    strcmp(f + len - lq, post[i]) != 0 || len - lp - lq >= cap)
			continue;
		memcpy(app, f + lp, len - lp - lq);
		app[len - lp - lq] = '\0';
		return strchr(app, '\'') == NULL ? 0 : VLT_ERR_BAD_PARAM;
	}
	return VLT_ERR_BAD_PARAM;
}

/* The principals the caller may see that match (id, or the filter's
 * appId), as a JSON array. */
static json_t *
sp_select(struct api_req *q, const char *id, const char *app, int any)
{
	struct vlt_principal *pr = NULL;
	size_t n = 0, i;
	json_t *out;
	int admin = policy_check_admin(q->ctx->policy, q->caller.oid) ==
	    POLICY_OK;

	if (vault_principal_list(q->ctx->vault, &pr, &n) != 0 ||
	    (out = json_array()) == NULL) {
		vlt_principal_free_array(pr, n);
		return NULL;
	}
	for (i = 0; i < n; i++) {
		if (!admin && strcmp(pr[i].object_id, q->caller.oid) != 0)
			continue;
		if (id != NULL ? strcasecmp(pr[i].object_id, id) != 0 :
		                 !any && strcasecmp(pr[i].client_id, app) != 0)
			continue;
		if (json_array_append_new(out, sp_json(q->ctx, &pr[i])) != 0) {
			json_decref(out);
			out = NULL;
			break;
		}
	}
	vlt_principal_free_array(pr, n);
	return out;
}

static void
graph_sps(struct api_req *q, struct api_resp *r, const char *id)
{
	char app[SP_FILTER_MAX];
	json_t *list;
	int any = 0;

	q->operation = id ? "GraphServicePrincipalGet" :
	                    "GraphServicePrincipalsList";
	if (id == NULL &&
	    sp_filter(q->odata_filter, app, sizeof(app), &any) != 0) {
		api_resp_error(r, 400, "Request_UnsupportedQuery",
		    "Unsupported query: only servicePrincipalNames/any(c:c eq "
		    "'APPID') and appId eq 'APPID' are answered here.");
		return;
	}
	if ((list = sp_select(q, id, app, any)) == NULL) {
		api_resp_vault_error(r, VLT_ERR_UNAVAILABLE, NULL, NULL);
		return;
	}
	if (id == NULL) {
		api_resp_set(r, 200,
		    json_pack("{s:s, s:o}", "@odata.context",
		        "https://graph.microsoft.com/v1.0/"
		        "$metadata#servicePrincipals",
		        "value", list));
		return;
	}
	if (json_array_size(list) == 1)
		api_resp_set(r, 200, json_incref(json_array_get(list, 0)));
	else
		api_resp_error(r, 404, "Request_ResourceNotFound",
		    "Resource '%.64s' does not exist or one of its queried "
		    "reference-property objects are not present.",
		    id);
	json_decref(list);
}

void
api_graph(struct api_req *q, struct api_resp *r, char **segs, size_t n)
{
	char aud[600];

	q->operation = "GraphRequest";
	if (api_graph_audience(q->ctx, aud, sizeof(aud)) != 0) {
		api_resp_vault_error(r, VLT_ERR_INTERNAL, NULL, NULL);
		return;
	}
	if (n < 2 || strcmp(segs[0], "v1.0") != 0 ||
	    strcmp(q->method, "GET") != 0) {
		api_resp_error(r, 404, "Request_ResourceNotFound",
		    "Only reads of servicePrincipals are answered here.");
		return;
	}
	if (arm_authn(q, r, aud, 1) != 0)
		return;
	if (n == 2 && strcmp(segs[1], "me") == 0) {
		q->operation = "GraphMe";
		api_resp_error(r, 400, "BadRequest",
		    "/me request is only valid with delegated authentication "
		    "flow.");
	} else if (n == 2 && strcmp(segs[1], "servicePrincipals") == 0)
		graph_sps(q, r, NULL);
	else if (n == 3 && strcmp(segs[1], "servicePrincipals") == 0)
		graph_sps(q, r, segs[2]);
	else
		api_resp_error(r, 404, "Request_ResourceNotFound",
		    "Only reads of servicePrincipals are answered here.");
}
