/*
 * api/authz.c — authentication and authorization of a request: the bearer
 * token (through policy_token_verify), the one key permission an operation
 * needs, the administrator role, and the answers when they fail (401 with
 * the challenge, 403 naming the caller and the permission, 503 sealed).
 * Also gives policy/ the token verify key when the vault first has it.
 *
 * Owns: the Authorization header's reading and the refusals' wording.
 * Must never: log the Authorization header or the token, cache a decision
 * (revocation is effective on the next request), or let a caller through
 * on any result but 0.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/api.h"
#include "api/authz.h"

#define TOKEN_MAX 8192

static const char invalid_token[] =
    "AKV10022: Invalid audience, issuer, "
    "signature or lifetime in the access token.";

int
api_verify_key_refresh(struct api_ctx *c)
{
	uint8_t *spki = NULL;
	size_t len = 0;
	int rc;

	if (__atomic_load_n(&c->verify_key_set, __ATOMIC_ACQUIRE))
		return 0;
	rc = vault_jwt_public(c->vault, &spki, &len);
	if (rc == 0 && (rc = policy_set_verify_key(c->policy, spki, len)) == 0)
		__atomic_store_n(&c->verify_key_set, 1, __ATOMIC_RELEASE);
	free(spki);
	return rc;
}

int
api_bearer_check(struct api_req *q, const char *audience)
{
	const char *a = q->authorization;

	/* started sealed: no token can be checked until the unseal */
	if (api_verify_key_refresh(q->ctx) == VLT_ERR_SEALED)
		return VLT_ERR_SEALED;
	if (a == NULL || strncasecmp(a, "Bearer ", 7) != 0)
		return VLT_ERR_NOT_FOUND;
	a += 7;
	while (*a == ' ')
		a++;
	if (strlen(a) > TOKEN_MAX ||
	    policy_token_verify(q->ctx->policy, a, audience,
	        (int64_t)time(NULL), &q->caller) != POLICY_OK)
		return VLT_ERR_UNAUTHORIZED;
	return 0;
}

int
api_authn(struct api_req *q, struct api_resp *r)
{
	int rc;

	if (q->authenticated)
		return 0;
	rc = api_bearer_check(q, q->ctx->resource);
	if (rc == VLT_ERR_SEALED) {
		api_resp_vault_error(r, VLT_ERR_SEALED, NULL, NULL);
		return VLT_ERR_SEALED;
	}
	if (rc == VLT_ERR_NOT_FOUND) {
		api_resp_unauthorized(q, r,
		    "AKV10000: Request is missing a Bearer or PoP token.");
		return VLT_ERR_UNAUTHORIZED;
	}
	if (rc != 0) {
		api_resp_unauthorized(q, r, invalid_token);
		return VLT_ERR_UNAUTHORIZED;
	}
	q->authenticated = 1;
	return 0;
}

/* The vault's name in a 403: its URL without the scheme. */
static const char *
vault_name(const struct api_req *q)
{
	const char *u = q->vault_url;
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
	if (policy_check_perm_in(q->ctx->policy, q->vault_scope, q->caller.oid,
	        perm) == POLICY_OK)
		return 0;
	api_resp_error(r, 403, "Forbidden",
	    "The user, group or application 'appid=%s;oid=%s' does not have "
	    "keys %s permission on key vault '%s'. For help resolving this "
	    "issue, ask the vault's administrator for an access policy.",
	    q->caller.appid, q->caller.oid, perm_name, vault_name(q));
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
	    q->caller.oid, vault_name(q));
	return VLT_ERR_FORBIDDEN;
}
