/*
 * router.c — from a path to a handler: api-version, authentication,
 * and the one permission each operation needs.
 *
 * Deny by default: every /keys, /deletedkeys and /admin request is
 * authenticated before anything about keys is looked at.
 * Must never: log the Authorization header.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/api.h"

#define ROUTE_MAX_SEGS 8
#define ROUTE_MAX_PATH 2048
#define TOKEN_MAX 8192

static const char *const api_versions[] = {
	"7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01",
	"7.3-preview", "7.4-preview.1", "7.5-preview.1", "7.6-preview.1",
	"7.6-preview.2", NULL,
};

static int
api_version_check(struct api_req *q, struct api_resp *r)
{
	size_t i;

	if (q->api_version == NULL || q->api_version[0] == '\0') {
		api_resp_error(r, 400, "MissingApiVersionParameter",
		    "The api-version query parameter (?api-version=) is "
		    "required for all requests.");
		return -1;
	}
	for (i = 0; api_versions[i]; i++)
		if (strcmp(q->api_version, api_versions[i]) == 0)
			return 0;
	api_resp_error(r, 400, "BadParameter",
	    "The specified version (%.32s) is not recognized. Consider using "
	    "the latest supported version (2025-07-01). Supported versions: "
	    "7.0, 7.1, 7.2, 7.3, 7.4, 7.5, 7.6, 2025-07-01.", q->api_version);
	return -1;
}

int
api_verify_key_refresh(struct api_ctx *c)
{
	uint8_t *spki = NULL;
	size_t len = 0;
	int rc;

	if (__atomic_load_n(&c->verify_key_set, __ATOMIC_ACQUIRE))
		return 0;
	rc = vault_jwt_public(c->vault, &spki, &len);
	if (rc == 0 && (rc = policy_set_verify_key(c->policy, spki, len)) ==
	    0)
		__atomic_store_n(&c->verify_key_set, 1, __ATOMIC_RELEASE);
	free(spki);
	return rc;
}

int
api_authn(struct api_req *q, struct api_resp *r)
{
	const char *a = q->authorization;
	int rc;

	if (q->authenticated)
		return 0;
	/* started sealed: no token can be checked until the unseal */
	if (api_verify_key_refresh(q->ctx) == VLT_ERR_SEALED) {
		api_resp_vault_error(r, VLT_ERR_SEALED, NULL, NULL);
		return VLT_ERR_SEALED;
	}
	if (a == NULL || strncasecmp(a, "Bearer ", 7) != 0) {
		api_resp_unauthorized(q, r,
		    "AKV10000: Request is missing a Bearer or PoP token.");
		return VLT_ERR_UNAUTHORIZED;
	}
	a += 7;
	while (*a == ' ')
		a++;
	if (strlen(a) > TOKEN_MAX) {
		api_resp_unauthorized(q, r, "AKV10022: Invalid audience, "
		    "issuer, signature or lifetime in the access token.");
		return VLT_ERR_UNAUTHORIZED;
	}
	rc = policy_token_verify(q->ctx->policy, a, q->ctx->resource,
	    (int64_t)time(NULL), &q->caller);
	if (rc != 0) {
		api_resp_unauthorized(q, r, "AKV10022: Invalid audience, "
		    "issuer, signature or lifetime in the access token.");
		return VLT_ERR_UNAUTHORIZED;
	}
	q->authenticated = 1;
	return 0;
}

static const char *
vault_name(struct api_ctx *c)
{
	const char *u = c->vault_url;
	const char *p = strstr(u, "://");
	return p ? p + 3 : u;
}

int
api_authz(struct api_req *q, struct api_resp *r, unsigned perm,
    const char *perm_name)
{
	int rc;

	if ((rc = api_authn(q, r)) != 0)
		return rc;
	if (policy_check_perm(q->ctx->policy, q->caller.oid, perm) ==
	    POLICY_OK)
		return 0;
	api_resp_error(r, 403, "Forbidden",
	    "The user, group or application 'appid=%s;oid=%s' does not have "
	    "keys %s permission on key vault '%s'. For help resolving this "
	    "issue, ask the vault's administrator for an access policy.",
	    q->caller.appid, q->caller.oid, perm_name, vault_name(q->ctx));
	return VLT_ERR_FORBIDDEN;
}

int
api_authz_admin(struct api_req *q, struct api_resp *r)
{
	int rc;

	if ((rc = api_authn(q, r)) != 0)
		return rc;
	if (policy_check_admin(q->ctx->policy, q->caller.oid) == POLICY_OK)
		return 0;
	api_resp_error(r, 403, "Forbidden",
	    "The caller 'oid=%s' is not an administrator of vault '%s'.",
	    q->caller.oid, vault_name(q->ctx));
	return VLT_ERR_FORBIDDEN;
}

static void
health(struct api_req *q, struct api_resp *r)
{
	int rc;

	q->operation = "Health";
	if ((rc = vault_health(q->ctx->vault)) == 0)
		api_resp_set(r, 200, json_pack("{s:s}", "status", "ok"));
	else if (rc == VLT_ERR_SEALED) {
		api_resp_set(r, 503, json_pack("{s:s, s:s}", "status",
		    "sealed", "reason", "the vault is sealed: unseal it with "
		    "operator key shares (p11vault unseal) or its unattended "
		    "method"));
		r->retry_after = 5;
	} else {
		api_resp_set(r, 503, json_pack("{s:s}", "status", "not ok"));
		r->retry_after = 1;
	}
}

void
api_route(struct api_req *q, struct api_resp *r)
{
	char buf[ROUTE_MAX_PATH + 1];
	char *segs[ROUTE_MAX_SEGS];
	size_t n = 0, len;
	char *p, *save = NULL;

	/* Every non-GET changes state except the cryptographic operations
	 * and token issue, which clear the flag in their handlers. */
	q->mutating = strcmp(q->method, "GET") != 0 &&
	    strcmp(q->method, "HEAD") != 0;
	len = strlen(q->path);
	if (len > ROUTE_MAX_PATH || q->path[0] != '/') {
		api_resp_error(r, 400, "BadParameter", "The path is invalid.");
		return;
	}
	memcpy(buf, q->path, len + 1);
	for (p = strtok_r(buf + 1, "/", &save); p;
	    p = strtok_r(NULL, "/", &save)) {
		if (n == ROUTE_MAX_SEGS) {
			api_resp_error(r, 404, "NotFound",
			    "No such resource.");
			return;
		}
		segs[n++] = p;
	}
	if (n == 0) {
		api_resp_error(r, 404, "NotFound", "No such resource.");
		return;
	}
	if (strcmp(segs[0], "healthz") == 0 && n == 1) {
		health(q, r);
		return;
	}
	if (strcmp(segs[0], "sys") == 0) {
		api_sys(q, r, segs + 1, n - 1);
		return;
	}
	if (strcasecmp(segs[0], "keys") == 0 ||
	    strcasecmp(segs[0], "deletedkeys") == 0) {
		if (api_version_check(q, r) != 0)
			return;
		if (api_authn(q, r) != 0)
			return;
		if (strcasecmp(segs[0], "keys") == 0)
			api_keys(q, r, segs + 1, n - 1);
		else
			api_deletedkeys(q, r, segs + 1, n - 1);
		return;
	}
	if (strcmp(segs[0], "metrics") == 0 && n == 1) {
		q->operation = "Metrics";
		if (strcmp(q->method, "GET") != 0) {
			api_resp_error(r, 405, "MethodNotAllowed",
			    "The HTTP method is not allowed on this resource.");
			return;
		}
		/* sealed, nobody can have a token: the seal gauges alone
		 * are served to anyone, as /healthz and /sys/seal-status */
		if (vault_health(q->ctx->vault) == VLT_ERR_SEALED) {
			if (api_metrics_render_sealed(q->ctx, &r->body,
			    &r->body_len) != 0) {
				api_resp_vault_error(r, VLT_ERR_NO_MEMORY, NULL,
				    NULL);
				return;
			}
		} else if (api_authz_admin(q, r) != 0) {
			return;
		} else if (api_metrics_render(q->ctx, &r->body,
		    &r->body_len) != 0) {
			api_resp_vault_error(r, VLT_ERR_NO_MEMORY, NULL, NULL);
			return;
		}
		r->status = 200;
		r->content_type = "text/plain; version=0.0.4; charset=utf-8";
		return;
	}
	if (strcmp(segs[0], "admin") == 0) {
		q->operation = "Admin";
		if (api_authz_admin(q, r) != 0)
			return;
		api_admin(q, r, segs + 1, n - 1);
		return;
	}
	api_token(q, r, segs, n);
}
