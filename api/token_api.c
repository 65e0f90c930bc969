/*
 * token_api.c — the vault as its own identity provider for on-prem
 * workloads: the OpenID configuration, the OAuth2 client-credentials token
 * endpoint and the JWKS, at the paths Microsoft Entra ID uses so that
 * unmodified @azure/identity credentials work; and the same issuer at
 * ADFS's paths (/adfs/...), the authority Azure CLI can be pointed at
 * without instance discovery.
 *
 * Must never: log or echo a client secret or an issued token; keep the
 * form body after the request (wiped).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "api/admit.h"
#include "api/api.h"
#include "hsm/base.h"

#define FORM_FIELDS_MAX 32

static void
oauth_error(struct api_resp *r, unsigned status, const char *error,
    const char *desc)
{
	api_resp_set(r, status,
	    json_pack("{s:s, s:s}", "error", error, "error_description", desc));
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* In-place x-www-form-urlencoded decoding. VLT_ERR_BAD_PARAM on a bad
 * escape. */
static int API_WUR
form_decode(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (*s == '+') {
			*w++ = ' ';
		} else if (*s == '%') {
			int hi = hexval((unsigned char)s[1]);
			int lo = hi < 0 ? -1 : hexval((unsigned char)s[2]);
			if (hi < 0 || lo < 0)
				return VLT_ERR_BAD_PARAM;
			*w++ = (char)(hi * 16 + lo);
			s += 2;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
	return 0;
}

struct form {
	char *buf;
	size_t len;
	const char *key[FORM_FIELDS_MAX];
	const char *val[FORM_FIELDS_MAX];
	size_t n;
};

/* 0, or VLT_ERR_BAD_PARAM (VLT_ERR_NO_MEMORY) */
static int API_WUR
form_parse(struct form *f, const uint8_t *body, size_t len)
{
	char *p, *save = NULL;

	memset(f, 0, sizeof(*f));
	f->buf = malloc(len + 1);
	if (f->buf == NULL)
		return VLT_ERR_NO_MEMORY;
	/* an empty body may come as (NULL, 0): no memcpy/memchr on NULL */
	if (len > 0)
		memcpy(f->buf, body, len);
	f->buf[len] = '\0';
	f->len = len;
	if (len > 0 && memchr(body, '\0', len))
		return VLT_ERR_BAD_PARAM;
	for (p = strtok_r(f->buf, "&", &save); p;
	     p = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(p, '=');
		if (eq == NULL || f->n == FORM_FIELDS_MAX)
			return VLT_ERR_BAD_PARAM;
		*eq = '\0';
		if (form_decode(p) != 0 || form_decode(eq + 1) != 0)
			return VLT_ERR_BAD_PARAM;
		f->key[f->n] = p;
		f->val[f->n] = eq + 1;
		f->n++;
	}
	return 0;
}

static const char *
form_get(const struct form *f, const char *key)
{
	size_t i;
	const char *found = NULL;

	for (i = 0; i < f->n; i++) {
		if (strcmp(f->key[i], key) != 0)
			continue;
		if (found)
			return NULL; /* a repeated field is refused */
		found = f->val[i];
	}
	return found;
}

static void
form_free(struct form *f)
{
	freezero(f->buf, f->len + 1); /* it held the client secret */
	memset(f, 0, sizeof(*f));
}

static int
jwt_sign_cb(void *ctx, const uint8_t *data, size_t len, uint8_t sig[64])
{
	return vault_jwt_sign(ctx, data, len, sig);
}

/* The audience asked for: scope "{resource}/.default" (v2.0, as
 * @azure/identity and MSAL send it) or resource "{resource}" (the v1 and
 * ADFS form), not both. 0, or VLT_ERR_BAD_PARAM after the answer. */
static int API_WUR
token_audience(const struct form *f, struct api_resp *r, char *aud, size_t cap)
{
	const char *scope = form_get(f, "scope");
	const char *res = form_get(f, "resource");
	size_t sl = scope ? strlen(scope) : 0;

	if (scope == NULL && res != NULL && res[0] != '\0' &&
	    strchr(res, ' ') == NULL && str_fmt(aud, cap, "%s", res) == 0)
		return 0;
	if (res != NULL || sl <= 9 || sl - 9 >= cap ||
	    strcmp(scope + sl - 9, "/.default") != 0 ||
	    strchr(scope, ' ') != NULL) {
		oauth_error(r, 400, "invalid_scope",
		    "The scope must be a single resource's '/.default' scope "
		    "(or give resource= alone).");
		return VLT_ERR_BAD_PARAM;
	}
	memcpy(aud, scope, sl - 9);
	aud[sl - 9] = '\0';
	return 0;
}

/* The token endpoint (/{tenant}/oauth2/v2.0/token and ADFS's
 * /adfs/oauth2/token): one issuer for every audience; which audience a
 * token may be used for is each route's check (api_bearer_check). */
static void
token_issue(struct api_req *q, struct api_resp *r)
{
	struct form f;
	const char *grant, *client_id, *secret;
	char oid[POLICY_ID_LEN + 1], audience[512];
	char *jwt = NULL;
	int64_t expires_in = 0;
	struct admit_ticket tk;
	int is_admin = 0, rc;

	q->operation = "TokenIssue";
	q->mutating = 0;
	if (form_parse(&f, q->body, q->body_len) != 0) {
		oauth_error(r, 400, "invalid_request",
		    "The request body must be application/x-www-form-urlencoded.");
		goto out;
	}
	grant = form_get(&f, "grant_type");
	client_id = form_get(&f, "client_id");
	secret = form_get(&f, "client_secret");
	if (grant == NULL || strcmp(grant, "client_credentials") != 0) {
		oauth_error(r, 400, "unsupported_grant_type",
		    "Only grant_type=client_credentials is supported.");
		goto out;
	}
	if (client_id == NULL || secret == NULL) {
		oauth_error(r, 400, "invalid_request",
		    "client_id and client_secret are required.");
		goto out;
	}
	if (token_audience(&f, r, audience, sizeof(audience)) != 0)
		goto out;
	if (policy_authenticate(q->ctx->policy, client_id, secret, oid,
	        &is_admin) != 0) {
		oauth_error(r, 401, "invalid_client",
		    "AADSTS7000215: Invalid client secret provided, or the "
		    "client is unknown.");
		goto out;
	}
	/* the audit event's caller; an appid is cut to a UUID's length */
	if (str_fmt(q->caller.oid, sizeof(q->caller.oid), "%s", oid) != 0 ||
	    str_fmt(q->caller.appid, sizeof(q->caller.appid), "%.36s",
	        client_id) != 0) {
		api_resp_vault_error(r, VLT_ERR_INTERNAL, NULL, NULL);
		goto out;
	}
	/* the signature is token work: it takes a slot of the gate */
	if (api_admit_enter(q, r, ADMIT_FAST, &tk) != 0)
		goto out;
	rc = policy_token_issue(q->ctx->policy, oid, client_id, audience,
	    (int64_t)time(NULL), jwt_sign_cb, q->ctx->vault, &jwt, &expires_in);
	api_admit_leave(q, &tk);
	if (rc != 0) {
		api_resp_vault_error(r,
		    vault_health(q->ctx->vault) == VLT_ERR_SEALED ?
		        VLT_ERR_SEALED :
		        VLT_ERR_UNAVAILABLE,
		    NULL, NULL);
		goto out;
	}
	/* as Entra ID does: one second less than the token's lifetime */
	if (expires_in > 1)
		expires_in--;
	api_resp_set(r, 200,
	    json_pack("{s:s, s:I, s:I, s:s}", "token_type", "Bearer",
	        "expires_in", (json_int_t)expires_in, "ext_expires_in",
	        (json_int_t)expires_in, "access_token", jwt));
out:
	freezero_str(jwt);
	form_free(&f);
}

/* The OpenID configuration under base ("{vault_url}/{tenant}" with the
 * v2.0 paths, or "{vault_url}/adfs" with ADFS's, which MSAL reads for an
 * authority ending in /adfs). The issuer is the one of every token. */
static void
openid_config(struct api_req *q, struct api_resp *r, int adfs)
{
	const char *u = q->ctx->vault_url, *t = q->ctx->tenant_id;
	const char *v2 = adfs ? "" : "/v2.0";
	char base[512], tok[600], auth[600], jwks[600];

	q->operation = "OpenIdConfiguration";
	if ((adfs ? str_fmt(base, sizeof(base), "%s/adfs", u) :
	            str_fmt(base, sizeof(base), "%s/%s", u, t)) != 0 ||
	    str_fmt(tok, sizeof(tok), "%s/oauth2%s/token", base, v2) != 0 ||
	    str_fmt(auth, sizeof(auth), "%s/oauth2%s/authorize", base, v2) !=
	        0 ||
	    str_fmt(jwks, sizeof(jwks), "%s/discovery%s/keys", base, v2) != 0) {
		api_resp_vault_error(r, VLT_ERR_INTERNAL, NULL, NULL);
		return;
	}
	api_resp_set(r, 200,
	    json_pack(
	        "{s:s, s:s, s:s, s:s, s:s, s:[s], s:[s], s:[s], s:[s], s:[s]}",
	        "issuer", q->ctx->issuer, "token_endpoint", tok,
	        "authorization_endpoint", auth, "jwks_uri", jwks,
	        "tenant_region_scope", "NA", "grant_types_supported",
	        "client_credentials", "token_endpoint_auth_methods_supported",
	        "client_secret_post", "id_token_signing_alg_values_supported",
	        "ES256", "response_types_supported", "token",
	        "scopes_supported", "openid"));
}

static void
jwks(struct api_req *q, struct api_resp *r)
{
	char *kid = NULL, *x = NULL, *y = NULL;

	q->operation = "Jwks";
	if (policy_jwk(q->ctx->policy, &kid, &x, &y) != 0) {
		api_resp_vault_error(r, VLT_ERR_INTERNAL, NULL, NULL);
		return;
	}
	api_resp_set(r, 200,
	    json_pack("{s:[{s:s, s:s, s:s, s:s, s:s, s:s, "
	              "s:s}]}",
	        "keys", "kty", "EC", "use", "sig", "alg", "ES256", "crv",
	        "P-256", "kid", kid, "x", x, "y", y));
	free(kid);
	free(x);
	free(y);
}

void
api_token(struct api_req *q, struct api_resp *r, char **segs, size_t n)
{
	if (n < 3 || strcmp(segs[0], q->ctx->tenant_id) != 0) {
		api_resp_error(r, 404, "NotFound", "No such resource.");
		return;
	}
	if (n == 4 && strcmp(segs[1], "v2.0") == 0 &&
	    strcmp(segs[2], ".well-known") == 0 &&
	    strcmp(segs[3], "openid-configuration") == 0 &&
	    strcmp(q->method, "GET") == 0) {
		openid_config(q, r, 0);
		return;
	}
	if (n == 4 && strcmp(segs[1], "oauth2") == 0 &&
	    strcmp(segs[2], "v2.0") == 0 && strcmp(segs[3], "token") == 0 &&
	    strcmp(q->method, "POST") == 0) {
		token_issue(q, r);
		return;
	}
	if (n == 4 && strcmp(segs[1], "discovery") == 0 &&
	    strcmp(segs[2], "v2.0") == 0 && strcmp(segs[3], "keys") == 0 &&
	    strcmp(q->method, "GET") == 0) {
		jwks(q, r);
		return;
	}
	api_resp_error(r, 404, "NotFound", "No such resource.");
}

void
api_adfs(struct api_req *q, struct api_resp *r, char **segs, size_t n)
{
	int get = strcmp(q->method, "GET") == 0;

	if (n == 2 && get && strcmp(segs[0], ".well-known") == 0 &&
	    strcmp(segs[1], "openid-configuration") == 0) {
		openid_config(q, r, 1);
		return;
	}
	if (n == 2 && strcmp(q->method, "POST") == 0 &&
	    strcmp(segs[0], "oauth2") == 0 && strcmp(segs[1], "token") == 0) {
		token_issue(q, r);
		return;
	}
	if (n == 2 && get && strcmp(segs[0], "discovery") == 0 &&
	    strcmp(segs[1], "keys") == 0) {
		jwks(q, r);
		return;
	}
	api_resp_error(r, 404, "NotFound", "No such resource.");
}
