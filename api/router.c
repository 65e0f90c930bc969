/*
 * router.c — from a path to the room that answers it: the path split into
 * segments, a table from the first segment to the handler, and what each
 * route asks before its handler runs (api-version, a token, the
 * administrator role; the checks themselves are authz.c's).
 *
 * Deny by default: every /keys, /deletedkeys and /admin request is
 * authenticated before anything about keys is looked at; what no route
 * names goes to the identity provider's endpoints (token_api.c).
 * Must never: read the Authorization header (authz.c does), or decide a
 * permission.
 */
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "hsm/base.h"

#define ROUTE_MAX_SEGS 12
#define ROUTE_MAX_PATH 2048

static const char *const api_versions[] = {
	"7.0",
	"7.1",
	"7.2",
	"7.3",
	"7.4",
	"7.5",
	"7.6",
	"2025-07-01",
	"7.3-preview",
	"7.4-preview.1",
	"7.5-preview.1",
	"7.6-preview.1",
	"7.6-preview.2",
	NULL,
};

static int
api_version_check(struct api_req *q, struct api_resp *r)
{
	size_t i;

	if (q->api_version == NULL || q->api_version[0] == '\0') {
		api_resp_error(r, 400, "MissingApiVersionParameter",
		    "The api-version query parameter (?api-version=) is "
		    "required for all requests.");
		return VLT_ERR_BAD_PARAM;
	}
	for (i = 0; api_versions[i]; i++)
		if (strcmp(q->api_version, api_versions[i]) == 0)
			return 0;
	api_resp_error(r, 400, "BadParameter",
	    "The specified version (%.32s) is not recognized. Consider using "
	    "the latest supported version (2025-07-01). Supported versions: "
	    "7.0, 7.1, 7.2, 7.3, 7.4, 7.5, 7.6, 2025-07-01.",
	    q->api_version);
	return VLT_ERR_BAD_PARAM;
}

/* 503 {"status":"storage"}: the disk refuses the store's or the audit
 * log's writes; which, and why (a SQLite message or an errno text). */
static void
health_storage(struct api_req *q, struct api_resp *r)
{
	struct vlt_storage_status st;

	if (vault_storage_status(q->ctx->vault, &st) != 0)
		memset(&st, 0, sizeof(st));
	api_resp_set(r, 503,
	    json_pack("{s:s, s:s, s:s, s:s}", "status", "storage", "reason",
	        st.reason[0] != '\0' ? st.reason :
	                               "the vault's storage cannot be written",
	        "store", st.store_failing ? "failing" : "ok", "audit",
	        st.audit_failing ? "failing" : "ok"));
	r->retry_after = 5;
}

/* GET /healthz: anyone may ask, sealed or not. */
static void
route_health(struct api_req *q, struct api_resp *r, char **segs, size_t n)
{
	int rc;

	(void)segs;
	(void)n;
	q->audit_optional = 1;
	if ((rc = vault_health(q->ctx->vault)) == 0)
		api_resp_set(r, 200, json_pack("{s:s}", "status", "ok"));
	else if (rc == VLT_ERR_STORAGE)
		health_storage(q, r);
	else if (rc == VLT_ERR_SEALED) {
		api_resp_set(r, 503,
		    json_pack("{s:s, s:s}", "status", "sealed", "reason",
		        "the vault is sealed: unseal it with "
		        "operator key shares (p11vault unseal) or its unattended "
		        "method"));
		r->retry_after = 5;
	} else {
		api_resp_set(r, 503, json_pack("{s:s}", "status", "not ok"));
		r->retry_after = 1;
	}
}

/* GET /metrics: administrators; a sealed vault (nobody can have a token)
 * serves the seal gauges alone to anyone, as /healthz and
 * /sys/seal-status do. */
static void
route_metrics(struct api_req *q, struct api_resp *r, char **segs, size_t n)
{
	int rc;

	(void)segs;
	(void)n;
	q->audit_optional = 1;
	if (strcmp(q->method, "GET") != 0) {
		api_resp_error(r, 405, "MethodNotAllowed",
		    "The HTTP method is not allowed on this resource.");
		return;
	}
	if (vault_health(q->ctx->vault) == VLT_ERR_SEALED)
		rc = api_metrics_render_sealed(q->ctx, &r->body, &r->body_len);
	else if (api_authz_admin(q, r) != 0)
		return;
	else
		rc = api_metrics_render(q->ctx, &r->body, &r->body_len);
	if (rc != 0) {
		api_resp_vault_error(r, VLT_ERR_NO_MEMORY, NULL, NULL);
		return;
	}
	r->status = 200;
	r->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* What a route asks of a request before its handler runs. */
enum route_gate {
	GATE_NONE,  /* the handler decides (health, seal, metrics) */
	GATE_TOKEN, /* ?api-version= and a valid token: the data plane */
	GATE_ADMIN, /* an administrator's token: the management API */
};

typedef void route_fn(struct api_req *q, struct api_resp *r, char **segs,
    size_t n);

static const struct route {
	const char *first; /* the first path segment */
	int any_case;      /* Azure's data-plane paths ignore case */
	size_t n_segs;     /* segments of the whole path; 0: any */
	enum route_gate gate;
	const char *operation; /* the audit line's, when the route knows it */
	route_fn *handler;     /* gets the segments after the first */
} routes[] = {
	{ "healthz", 0, 1, GATE_NONE, "Health", route_health },
	{ "sys", 0, 0, GATE_NONE, NULL, api_sys },
	{ "keys", 1, 0, GATE_TOKEN, NULL, api_keys },
	{ "deletedkeys", 1, 0, GATE_TOKEN, NULL, api_deletedkeys },
	{ "metrics", 0, 1, GATE_NONE, "Metrics", route_metrics },
	{ "admin", 0, 0, GATE_ADMIN, "Admin", api_admin },
	/* az's sign-in and management calls: their handlers check the
	 * audience of the token (token_api.c, arm_api.c) */
	{ "adfs", 0, 0, GATE_NONE, NULL, api_adfs },
	{ "subscriptions", 1, 0, GATE_NONE, NULL, api_arm_subscriptions },
	{ "tenants", 1, 0, GATE_NONE, NULL, api_arm_tenants },
	{ "graph", 0, 0, GATE_NONE, NULL, api_graph },
};

#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

static const struct route *
route_find(char **segs, size_t n)
{
	for (size_t i = 0; i < N_ROUTES; i++) {
		const struct route *rt = &routes[i];

		if (rt->n_segs != 0 && rt->n_segs != n)
			continue;
		if (rt->any_case ? strcasecmp(segs[0], rt->first) == 0 :
		                   strcmp(segs[0], rt->first) == 0)
			return rt;
	}
	return NULL;
}

/* The path's non-empty segments, in buf (a copy of the path): 0, or a
 * negative error after answering (400 bad path, 404 too many or none). */
static int
path_split(struct api_req *q, struct api_resp *r, char *buf, char **segs,
    size_t *n)
{
	size_t len = strlen(q->path);
	char *p, *save = NULL;

	*n = 0;
	if (len > ROUTE_MAX_PATH || q->path[0] != '/') {
		api_resp_error(r, 400, "BadParameter", "The path is invalid.");
		return VLT_ERR_BAD_PARAM;
	}
	memcpy(buf, q->path, len + 1);
	for (p = strtok_r(buf + 1, "/", &save); p;
	     p = strtok_r(NULL, "/", &save)) {
		if (*n == ROUTE_MAX_SEGS)
			break;
		segs[(*n)++] = p;
	}
	if (p != NULL || *n == 0) {
		api_resp_error(r, 404, "NotFound", "No such resource.");
		return VLT_ERR_NOT_FOUND;
	}
	return 0;
}

void
api_route_begin(struct api_req *q)
{
	q->vault = q->ctx->vault;
	q->vault_url = q->ctx->vault_url;
	q->vault_scope = "";
}

void
api_route_done(struct api_req *q)
{
	if (q->vault != NULL && q->vault != q->ctx->vault)
		vault_child_release(q->vault);
	q->vault = q->ctx->vault;
}

/* The vault name a Host header names: "NAME.<vault_domain>[:port]" puts
 * NAME in name (1); any other host is the default vault's (0). */
static int
host_vault(const struct api_ctx *c, const char *host, char *name, size_t cap)
{
	size_t hl, dl;
	const char *colon;

	if (c->vault_domain == NULL || host == NULL)
		return 0;
	colon = strrchr(host, ':');
	hl = colon != NULL && strchr(host, ']') == NULL ?
	    (size_t)(colon - host) :
	    strlen(host);
	dl = strlen(c->vault_domain);
	if (hl <= dl + 1 || host[hl - dl - 1] != '.' ||
	    strncasecmp(host + hl - dl, c->vault_domain, dl) != 0)
		return 0;
	hl -= dl + 1;
	if (hl >= cap || memchr(host, '.', hl) != NULL)
		return -1; /* no vault can have that name */
	memcpy(name, host, hl);
	name[hl] = '\0';
	return 1;
}

/* A request for NAME.<vault_domain>: that vault, held for the request;
 * none such (or deleted): 404. */
static int
route_vault(struct api_req *q, struct api_resp *r)
{
	char name[VLT_VAULT_NAME_MAX + 1];
	vault_t *v;
	int k = host_vault(q->ctx, q->host, name, sizeof(name));

	if (k == 0 ||
	    (k > 0 && q->ctx->vault_name != NULL &&
	        strcasecmp(name, q->ctx->vault_name) == 0))
		return 0; /* the default vault, by any name */
	if (k < 0 || vault_child_acquire(q->ctx->vault, name, &v) != 0) {
		api_resp_error(r, 404, "VaultNotFound",
		    "No vault is at this host name.");
		return VLT_ERR_NOT_FOUND;
	}
	q->vault = v;
	q->vault_scope = vault_child_name(v);
	if (str_fmt(q->vault_url_buf, sizeof(q->vault_url_buf),
	        "https://%s.%s%s", q->vault_scope, q->ctx->vault_domain,
	        q->ctx->vault_port) != 0) {
		api_resp_vault_error(r, VLT_ERR_INTERNAL, NULL, NULL);
		return VLT_ERR_INTERNAL;
	}
	q->vault_url = q->vault_url_buf;
	return 0;
}

void
api_route(struct api_req *q, struct api_resp *r)
{
	char buf[ROUTE_MAX_PATH + 1];
	char *segs[ROUTE_MAX_SEGS];
	const struct route *rt;
	size_t n;

	if (q->vault == NULL)
		api_route_begin(q); /* a caller other than http.c */
	/* Every non-GET changes state except the cryptographic operations
	 * and token issue, which clear the flag in their handlers. */
	q->mutating = strcmp(q->method, "GET") != 0 &&
	    strcmp(q->method, "HEAD") != 0;
	if (path_split(q, r, buf, segs, &n) != 0)
		return;
	if ((rt = route_find(segs, n)) == NULL) {
		api_token(q, r, segs, n);
		return;
	}
	if (rt->operation != NULL)
		q->operation = rt->operation;
	if (rt->gate != GATE_NONE && route_vault(q, r) != 0)
		return;
	if (rt->gate == GATE_TOKEN &&
	    (api_version_check(q, r) != 0 || api_authn(q, r) != 0))
		return;
	if (rt->gate == GATE_ADMIN && api_authz_admin(q, r) != 0)
		return;
	/* fail closed: nothing is done that the audit log cannot record */
	if (rt->gate != GATE_NONE && vault_storage_ready(q->ctx->vault) != 0) {
		api_resp_vault_error(r, VLT_ERR_STORAGE, NULL, NULL);
		return;
	}
	/* a key route logs its own started line, after its permission */
	if (rt->gate == GATE_ADMIN && q->mutating &&
	    api_audit_intent(q, r) != 0)
		return;
	rt->handler(q, r, segs + 1, n - 1);
}
