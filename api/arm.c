/*
 * arm.c — the management API in Azure Resource Manager's shapes, so that
 * `az group|identity|keyvault` work against the appliance: the path
 * /subscriptions/{sub}/... parsed, the caller checked (administrators
 * only, ARM's AuthorizationFailed otherwise; deny by default), ARM's
 * api-version rules per resource type, ARM's error envelope, and the
 * dispatch to arm_groups.c, arm_vaults.c and arm_identities.c.
 *
 * Every answer is synchronous: a PUT answers 200/201 with
 * provisioningState "Succeeded", which azure-core's ARM poller takes as
 * done; a DELETE or a purge answers 200.
 * Must never: change anything before the request is checked whole.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/arm.h"
#include "hsm/base.h"

/* The api-versions each resource provider accepts: those of the mgmt
 * SDKs az 2.45 ships (and their later GA versions). */
static const char *const kv_versions[] = { "2015-06-01", "2016-10-01",
	"2018-02-14", "2019-09-01", "2020-04-01-preview", "2021-04-01-preview",
	"2021-06-01-preview", "2021-10-01", "2021-11-01-preview",
	"2022-02-01-preview", "2022-07-01", "2022-11-01", "2023-02-01",
	"2023-07-01", "2024-11-01", NULL };
static const char *const msi_versions[] = { "2015-08-31-preview", "2018-11-30",
	"2021-09-30-preview", "2022-01-31-preview", "2023-01-31",
	"2023-07-31-preview", "2024-11-30", NULL };
static const char *const rm_versions[] = { "2015-11-01", "2016-02-01",
	"2016-09-01", "2017-05-10", "2018-02-01", "2018-05-01", "2019-03-01",
	"2019-05-01", "2019-05-10", "2019-07-01", "2019-08-01", "2019-10-01",
	"2020-01-01", "2020-06-01", "2020-10-01", "2021-01-01", "2021-04-01",
	"2022-01-01", "2022-09-01", "2022-12-01", "2023-07-01", "2024-03-01",
	NULL };

const char *
arm_subscription_id(const struct api_ctx *c)
{
	return c->subscription_id;
}

const char *
arm_default_group(const struct api_ctx *c)
{
	const char *s = vault_config(c->vault, "resource_group");

	return s != NULL ? s : "p11vault";
}

const char *
arm_default_location(const struct api_ctx *c)
{
	const char *s = vault_config(c->vault, "location");

	return s != NULL ? s : "local";
}

int
arm_error(struct api_resp *r, unsigned status, const char *code,
    const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (k < 0)
		msg[0] = '\0';
	api_resp_set(r, status,
	    json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg));
	return status == 404 ? VLT_ERR_NOT_FOUND :
	    status == 409    ? VLT_ERR_CONFLICT :
	    status == 403    ? VLT_ERR_FORBIDDEN :
	    status >= 500    ? VLT_ERR_INTERNAL :
	                       VLT_ERR_BAD_PARAM;
}

int
arm_vault_error(struct api_resp *r, int err)
{
	switch (err) {
	case VLT_ERR_BAD_PARAM:
		return arm_error(r, 400, "BadRequest",
		    "The request is invalid.");
	case VLT_ERR_NOT_FOUND:
		return arm_error(r, 404, "ResourceNotFound",
		    "The resource was not found.");
	case VLT_ERR_CONFLICT:
	case VLT_ERR_DELETED_RECOVERABLE:
		return arm_error(r, 409, "ConflictError",
		    "The resource is in use.");
	case VLT_ERR_PURGE_PROTECTED:
		return arm_error(r, 409, "ConflictError",
		    "Purge protection is enabled: the vault is purged when its "
		    "retention period ends.");
	case VLT_ERR_STORAGE:
	case VLT_ERR_UNAVAILABLE:
	case VLT_ERR_SEALED:
		r->retry_after = 5;
		return arm_error(r, 503, "ServiceUnavailable",
		    "The appliance cannot serve the request now; retry later.");
	default:
		return arm_error(r, 500, "InternalServerError",
		    "The appliance failed to serve the request.");
	}
}

int
arm_body(struct api_req *q, struct api_resp *r, json_t **out)
{
	json_error_t e;
	json_t *j;

	*out = NULL;
	j = q->body_len == 0 ? NULL :
	                       json_loadb((const char *)q->body, q->body_len,
	                           JSON_REJECT_DUPLICATES, &e);
	if (!json_is_object(j)) {
		json_decref(j);
		return arm_error(r, 400, "InvalidRequestContent",
		    "The request content was invalid and could not be "
		    "deserialized: a JSON object is required.");
	}
	*out = j;
	return 0;
}

int
arm_tags(json_t *body, json_t **out, struct api_resp *r)
{
	json_t *t = json_object_get(body, "tags"), *v;
	const char *k;

	*out = NULL;
	if (t == NULL || json_is_null(t))
		return 0;
	if (!json_is_object(t) || json_object_size(t) > 50)
		return arm_error(r, 400, "InvalidTag",
		    "tags must be an object of at most 50 tags.");
	json_object_foreach(t, k, v) {
		if (!json_is_string(v) || strlen(k) == 0 || strlen(k) > 512 ||
		    strlen(json_string_value(v)) > 256)
			return arm_error(r, 400, "InvalidTag",
			    "Each tag needs a name of 1 to 512 characters and "
			    "a string value of at most 256.");
	}
	*out = json_incref(t);
	return 0;
}

int
arm_location(json_t *body, int required, const char **out, struct api_resp *r)
{
	json_t *l = json_object_get(body, "location");

	*out = NULL;
	if (l == NULL || json_is_null(l)) {
		if (!required)
			return 0;
		return arm_error(r, 400, "LocationRequired",
		    "The location property is required for this definition.");
	}
	if (!json_is_string(l) || json_string_length(l) == 0 ||
	    json_string_length(l) > 64)
		return arm_error(r, 400, "InvalidRequestContent",
		    "location must be a string of 1 to 64 characters.");
	*out = json_string_value(l);
	return 0;
}

json_t *
arm_meta_get(const char *meta, const char *key)
{
	json_t *j, *v;

	if (meta == NULL || (j = json_loads(meta, 0, NULL)) == NULL)
		return NULL;
	v = json_incref(json_object_get(j, key));
	json_decref(j);
	return v;
}

int
arm_group_find(struct api_req *q, struct api_resp *r, const char *group,
    char *loc, size_t cap)
{
	struct vlt_record x;
	json_t *l;
	int rc;

	if (strcasecmp(group, arm_default_group(q->ctx)) == 0) {
		if (loc != NULL &&
		    str_fmt(loc, cap, "%s", arm_default_location(q->ctx)) != 0)
			loc[0] = '\0';
		return 0;
	}
	rc = strlen(group) > ARM_GROUP_NAME_MAX ?
	    VLT_ERR_NOT_FOUND :
	    vault_record_get(q->ctx->vault, ARM_KIND_GROUP, "", group, &x);
	if (rc == VLT_ERR_NOT_FOUND)
		return arm_error(r, 404, "ResourceGroupNotFound",
		    "Resource group '%.90s' could not be found.", group);
	if (rc != 0)
		return arm_vault_error(r, rc);
	l = arm_meta_get(x.meta, "location");
	if (loc != NULL &&
	    str_fmt(loc, cap, "%s",
	        json_is_string(l) ? json_string_value(l) : "") != 0)
		loc[0] = '\0';
	json_decref(l);
	vlt_record_clear(&x);
	return 0;
}

json_t *
arm_resource_id(const struct api_ctx *c, const char *group, const char *type,
    const char *name)
{
	char id[600];

	if (str_fmt(id, sizeof(id),
	        "/subscriptions/%s/resourceGroups/%s/providers/%s/%s",
	        arm_subscription_id(c), group, type, name) != 0)
		return NULL;
	return json_string(id);
}

json_t *
arm_time(int64_t t)
{
	char buf[32];
	struct tm tm;
	time_t tt = (time_t)t;

	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return NULL;
	return json_string(buf);
}

int
arm_uuid_valid(const char *s)
{
	size_t i;

	if (s == NULL || strlen(s) != POLICY_ID_LEN)
		return 0;
	for (i = 0; i < POLICY_ID_LEN; i++) {
		int dash = i == 8 || i == 13 || i == 18 || i == 23;
		char ch = s[i];

		if (dash ? ch != '-' :
		           !((ch >= '0' && ch <= '9') ||
		               (ch >= 'a' && ch <= 'f') ||
		               (ch >= 'A' && ch <= 'F')))
			return 0;
	}
	return 1;
}

/* ---- the path ---------------------------------------------------------- */

static int
is(const char *seg, const char *word)
{
	return seg != NULL && strcasecmp(seg, word) == 0;
}

/* segs after "subscriptions" into p: 0, or -1 for a shape ARM has not. */
static int
path_parse(char **segs, size_t n, struct arm_path *p)
{
	size_t i = 1;

	memset(p, 0, sizeof(*p));
	if (n == 0)
		return -1;
	p->sub = segs[0];
	if (i < n && is(segs[i], "resources")) {
		p->resources = 1;
		return i + 1 == n ? 0 : -1;
	}
	if (i < n && is(segs[i], "resourceGroups")) {
		p->groups = 1;
		p->group = i + 1 < n ? segs[i + 1] : NULL;
		i += 2;
	}
	if (i >= n)
		return 0;
	if (p->group == NULL || !is(segs[i], "providers") || i + 1 >= n)
		return -1;
	p->providers = 1;
	p->ns = segs[i + 1];
	i += 2;
	if (i + 1 < n && p->group == NULL && is(p->ns, ARM_NS_KEYVAULT) &&
	    is(segs[i], "locations")) {
		p->loc = segs[i + 1];
		i += 2;
	}
	if (i >= n)
		return -1;
	p->type = segs[i++];
	p->name = i < n ? segs[i++] : NULL;
	p->rest = segs + i;
	p->n_rest = n - i;
	return 0;
}

/* In path_parse, "providers" right after the subscription. */
static int
path_parse_sub_providers(char **segs, size_t n, struct arm_path *p)
{
	size_t i = 3;

	memset(p, 0, sizeof(*p));
	p->sub = segs[0];
	p->providers = 1;
	p->ns = segs[2];
	if (i + 1 < n && is(p->ns, ARM_NS_KEYVAULT) &&
	    is(segs[i], "locations")) {
		p->loc = segs[i + 1];
		i += 2;
	}
	if (i >= n)
		return -1;
	p->type = segs[i++];
	p->name = i < n ? segs[i++] : NULL;
	p->rest = segs + i;
	p->n_rest = n - i;
	return 0;
}

/* ---- api-version --------------------------------------------------------- */

static int
version_in(const char *v, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(v, *list) == 0)
			return 1;
	return 0;
}

static void
versions_text(const char *const *list, char *out, size_t cap)
{
	size_t len = 0;

	out[0] = '\0';
	for (; *list != NULL; list++) {
		size_t k = strlen(*list);

		if (len + k + 3 >= cap)
			break;
		if (len > 0) {
			memcpy(out + len, ", ", 2);
			len += 2;
		}
		memcpy(out + len, *list, k + 1);
		len += k;
	}
}

/* The api-version the resource type takes: 0, or 400 answered. */
static int
version_check(struct api_req *q, struct api_resp *r, const struct arm_path *p)
{
	const char *const *list = rm_versions;
	const char *v = q->api_version;
	char text[600];

	if (v == NULL || v[0] == '\0')
		return arm_error(r, 400, "MissingApiVersionParameter",
		    "The api-version query parameter (?api-version=) is "
		    "required for all requests.");
	if (p->providers && !is(p->ns, ARM_NS_KEYVAULT) &&
	    !is(p->ns, ARM_NS_IDENTITY))
		return arm_error(r, 404, "InvalidResourceNamespace",
		    "The resource namespace '%.64s' is invalid.", p->ns);
	if (p->providers)
		list = is(p->ns, ARM_NS_KEYVAULT) ? kv_versions : msi_versions;
	if (version_in(v, list))
		return 0;
	versions_text(list, text, sizeof(text));
	if (!p->providers)
		return arm_error(r, 400, "InvalidApiVersionParameter",
		    "The api-version '%.40s' is invalid. The supported "
		    "versions are '%s'.",
		    v, text);
	return arm_error(r, 400, "NoRegisteredProviderFound",
	    "No registered resource provider found for location '%.40s' and "
	    "API version '%.40s' for type '%.64s'. The supported api-versions "
	    "are '%s'.",
	    arm_default_location(q->ctx), v, p->type, text);
}

/* ---- the caller ------------------------------------------------------------ */

/* The provider's types this appliance serves, and their handlers. */
static void
dispatch_provider(struct api_req *q, struct api_resp *r,
    const struct arm_path *p)
{
	int kv = is(p->ns, ARM_NS_KEYVAULT), msi = is(p->ns, ARM_NS_IDENTITY);

	if (!kv && !msi) {
		arm_error(r, 404, "InvalidResourceNamespace",
		    "The resource namespace '%.64s' is invalid.", p->ns);
	} else if (kv && p->loc == NULL && is(p->type, "vaults")) {
		arm_vaults(q, r, p);
	} else if (kv && is(p->type, "deletedVaults")) {
		arm_deleted_vaults(q, r, p);
	} else if (kv && p->group == NULL && p->loc == NULL &&
	    p->name == NULL && is(p->type, "checkNameAvailability") &&
	    strcmp(q->method, "POST") == 0) {
		q->operation = "ArmVaultNameCheck";
		arm_name_check(q, r);
	} else if (kv && p->loc == NULL && p->name == NULL &&
	    strcmp(q->method, "GET") == 0 &&
	    (is(p->type, "managedHSMs") || is(p->type, "deletedManagedHSMs"))) {
		/* az keyvault list / list-deleted ask for HSMs too: none */
		q->operation = "ArmHsmList";
		api_resp_set(r, 200, json_pack("{s:[]}", "value"));
	} else if (msi && p->loc == NULL &&
	    is(p->type, "userAssignedIdentities")) {
		arm_identities(q, r, p);
	} else {
		arm_error(r, 400, "InvalidResourceType",
		    "The resource type '%.64s' could not be found in the "
		    "namespace '%.64s' for api version '%.40s'.",
		    p->type, p->ns, q->api_version);
	}
}

/* GET /subscriptions/{sub}: the one subscription. */
static void
subscription_get(struct api_req *q, struct api_resp *r)
{
	const char *sub = arm_subscription_id(q->ctx);
	char id[128];

	q->operation = "ArmSubscriptionGet";
	if (strcmp(q->method, "GET") != 0 ||
	    str_fmt(id, sizeof(id), "/subscriptions/%s", sub) != 0) {
		arm_error(r, 405, "MethodNotAllowed",
		    "The method is not allowed on a subscription.");
		return;
	}
	api_resp_set(r, 200,
	    json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s}}", "id", id,
	        "subscriptionId", sub, "tenantId", q->ctx->tenant_id,
	        "displayName", "p11vault", "state", "Enabled",
	        "subscriptionPolicies", "locationPlacementId",
	        "Public_2014-09-01", "quotaId", "p11vault", "spendingLimit",
	        "Off"));
}

void
api_arm(struct api_req *q, struct api_resp *r, char **segs, size_t n)
{
	struct arm_path p;
	int bad;

	/* the gate (a management token of an administrator, storage) is
	 * arm_api.c's, before this */
	q->operation = "Arm";
	bad = n >= 3 && is(segs[1], "providers") ?
	    path_parse_sub_providers(segs, n, &p) :
	    path_parse(segs, n, &p);
	if (bad != 0) {
		arm_error(r, 404, "NotFound", "No such resource path.");
		return;
	}
	if (strcasecmp(p.sub, arm_subscription_id(q->ctx)) != 0) {
		arm_error(r, 404, "SubscriptionNotFound",
		    "The subscription '%.64s' could not be found.", p.sub);
		return;
	}
	if (version_check(q, r, &p) != 0)
		return;
	/* fail closed: nothing is done that the audit log cannot record */
	if (vault_storage_ready(q->ctx->vault) != 0) {
		arm_vault_error(r, VLT_ERR_STORAGE);
		return;
	}
	if (q->mutating && api_audit_intent(q, r) != 0)
		return;
	if (p.resources)
		arm_resources(q, r);
	else if (p.providers)
		dispatch_provider(q, r, &p);
	else if (p.groups)
		arm_groups(q, r, &p);
	else
		subscription_get(q, r);
}
