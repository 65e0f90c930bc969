/*
 * policy/token.c — ES256 JWT bearer tokens: the compact form's parser, the
 * header and claim checks of verification, and issuing (the signature
 * through the caller's callback, checked against the verify key of
 * tokenkey.c before the token leaves).
 *
 * Owns: what a valid token is (alg ES256 only, our kid, iss, tid, aud,
 * nbf/exp with 60 s of skew, a principal that still exists). Must never:
 * hold a private key (signing is the callback's, i.e. the HSM's), accept
 * any alg but ES256, trust a cached entry for claims (only for the
 * signature), or log or keep a token.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "hsm/buf.h"
#include "policy/internal.h"

#define TOKEN_MAX 8192 /* longest bearer token examined or issued */
#define AUDIENCE_MAX 1024
#define CLOCK_SKEW 60
#define ES256_SIG_B64_LEN 86 /* base64url of an r||s signature */

/* ---- verification ------------------------------------------------------ */

/* A compact JWS: three non-empty base64url segments. */
struct jwt_parts {
	const char *hdr, *claims, *sig;
	size_t hdr_len, claims_len, sig_len;
	size_t signed_len; /* of "header.claims" */
};

static POLICY_WUR int
jwt_split(const char *jwt, size_t len, struct jwt_parts *j)
{
	const char *dot1, *dot2, *end = jwt + len;

	if ((dot1 = memchr(jwt, '.', len)) == NULL ||
	    (dot2 = memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1))) == NULL ||
	    memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)) != NULL)
		return POLICY_ERR_DENIED;
	j->hdr = jwt;
	j->hdr_len = (size_t)(dot1 - jwt);
	j->claims = dot1 + 1;
	j->claims_len = (size_t)(dot2 - dot1 - 1);
	j->sig = dot2 + 1;
	j->sig_len = (size_t)(end - dot2 - 1);
	j->signed_len = (size_t)(dot2 - jwt);
	if (j->hdr_len == 0 || j->claims_len == 0 || j->sig_len == 0)
		return POLICY_ERR_DENIED;
	return POLICY_OK;
}

/* One segment: base64url of a JSON object (no duplicate names). */
static POLICY_WUR int
b64url_json(const char *seg, size_t len, json_t **out)
{
	uint8_t *raw = NULL;
	size_t raw_len;
	json_error_t err;
	int r = POLICY_ERR_DENIED;

	*out = NULL;
	if (len == 0 || policy_b64url_decode(seg, len, &raw, &raw_len) != 0)
		goto out;
	*out = json_loadb((const char *)raw, raw_len, JSON_REJECT_DUPLICATES,
	    &err);
	if (*out == NULL || !json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		goto out;
	}
	r = POLICY_OK;
out:
	free(raw);
	return r;
}

/* A string member without embedded NUL, at most max bytes; NULL if not. */
static const char *
claim_str(json_t *o, const char *name, size_t max)
{
	json_t *v = json_object_get(o, name);
	const char *s;

	if (!json_is_string(v))
		return NULL;
	s = json_string_value(v);
	if (strlen(s) != json_string_length(v) || strlen(s) > max)
		return NULL;
	return s;
}

/* POLICY_OK if member name is the string want, else POLICY_ERR_DENIED. */
static POLICY_WUR int
claim_eq(json_t *o, const char *name, size_t max, const char *want)
{
	const char *s = claim_str(o, name, max);

	return s != NULL && strcmp(s, want) == 0 ? POLICY_OK :
	                                           POLICY_ERR_DENIED;
}

static POLICY_WUR int
claim_int(json_t *o, const char *name, int64_t *out)
{
	json_t *v = json_object_get(o, name);

	if (!json_is_integer(v))
		return POLICY_ERR_DENIED;
	*out = (int64_t)json_integer_value(v);
	return POLICY_OK;
}

static POLICY_WUR int
claim_id(json_t *o, const char *name, char dst[POLICY_ID_LEN + 1])
{
	const char *s = claim_str(o, name, POLICY_ID_LEN);

	if (policy_id_check(s, POLICY_ID_LEN) != 0)
		return POLICY_ERR_DENIED;
	memcpy(dst, s, strlen(s) + 1);
	return POLICY_OK;
}

/* The header: alg ES256 only, our kid, typ JWT if there, no crit. */
static POLICY_WUR int
jwt_header_check(const struct jwt_parts *j, const char *kid)
{
	json_t *hdr = NULL;
	int r = POLICY_ERR_DENIED;

	if (b64url_json(j->hdr, j->hdr_len, &hdr) != POLICY_OK)
		goto out;
	if (claim_eq(hdr, "alg", 16, "ES256") != 0 ||
	    claim_eq(hdr, "kid", 64, kid) != 0)
		goto out;
	if (json_object_get(hdr, "typ") != NULL &&
	    claim_eq(hdr, "typ", 16, "JWT") != 0)
		goto out;
	/* We understand no critical extensions (RFC 7515 §4.1.11). */
	if (json_object_get(hdr, "crit") != NULL)
		goto out;
	r = POLICY_OK;
out:
	json_decref(hdr);
	return r;
}

/* The signature, or a cache hit for this very token under this key. */
static POLICY_WUR int
jwt_signature_check(policy_t *p, EVP_PKEY *key, uint64_t gen, const char *jwt,
    size_t len, const struct jwt_parts *j)
{
	uint8_t digest[SHA256_DIGEST_LENGTH], *sig = NULL;
	size_t sig_len = 0;
	int r;

	if (SHA256((const unsigned char *)jwt, len, digest) == NULL)
		return POLICY_ERR_INTERNAL;
	if (policy_sig_cache_lookup(p, digest, gen) == POLICY_OK)
		return POLICY_OK;
	if ((r = policy_b64url_decode(j->sig, j->sig_len, &sig, &sig_len)) !=
	    POLICY_OK) {
		r = POLICY_ERR_DENIED;
		goto out;
	}
	if ((r = policy_es256_verify(key, (const uint8_t *)jwt, j->signed_len,
	         sig, sig_len)) != POLICY_OK)
		goto out;
	policy_sig_cache_put(p, digest, gen);
out:
	free(sig);
	return r;
}

/* "https://x" and "https://x/" name the same audience. */
static POLICY_WUR int
audience_check(const char *claim, const char *audience)
{
	size_t a = strlen(claim), b = strlen(audience);

	if (a > 0 && claim[a - 1] == '/')
		a--;
	if (b > 0 && audience[b - 1] == '/')
		b--;
	return a > 0 && a == b && memcmp(claim, audience, a) == 0 ?
	    POLICY_OK :
	    POLICY_ERR_DENIED;
}

/* nbf <= now + skew and exp > now - skew, without overflow. */
static POLICY_WUR int
lifetime_check(int64_t nbf, int64_t exp, int64_t now)
{
	int64_t d;

	if (__builtin_sub_overflow(nbf, now, &d) || d > CLOCK_SKEW)
		return POLICY_ERR_DENIED;
	if (__builtin_sub_overflow(exp, now, &d))
		return exp < now ? POLICY_ERR_DENIED : POLICY_OK;
	return d <= -CLOCK_SKEW ? POLICY_ERR_DENIED : POLICY_OK;
}

/* The claims, every time: a cached signature says nothing about the clock
 * or about who still exists. */
static POLICY_WUR int
jwt_claims_check(policy_t *p, const struct jwt_parts *j, const char *audience,
    int64_t now, struct policy_caller *c)
{
	json_t *claims = NULL;
	const char *aud;
	int64_t nbf, exp, iat;
	int r = POLICY_ERR_DENIED;

	if (b64url_json(j->claims, j->claims_len, &claims) != POLICY_OK)
		goto out;
	if (claim_eq(claims, "iss", 2048, p->issuer) != 0 ||
	    claim_eq(claims, "tid", POLICY_ID_LEN, p->tenant_id) != 0)
		goto out;
	if ((aud = claim_str(claims, "aud", AUDIENCE_MAX)) == NULL ||
	    audience_check(aud, audience) != 0)
		goto out;
	if (claim_int(claims, "nbf", &nbf) != 0 ||
	    claim_int(claims, "exp", &exp) != 0)
		goto out;
	if (json_object_get(claims, "iat") != NULL &&
	    claim_int(claims, "iat", &iat) != 0)
		goto out;
	if (lifetime_check(nbf, exp, now) != 0)
		goto out;
	if (claim_id(claims, "oid", c->oid) != 0 ||
	    claim_id(claims, "appid", c->appid) != 0 ||
	    claim_id(claims, "tid", c->tid) != 0)
		goto out;
	c->exp = exp;
	if (policy_principal_find(p, c->oid) != POLICY_OK)
		goto out;
	r = POLICY_OK;
out:
	json_decref(claims);
	return r;
}

int
policy_token_verify(policy_t *p, const char *jwt, const char *audience,
    int64_t now, struct policy_caller *out)
{
	EVP_PKEY *key = NULL;
	char kid[POLICY_KID_LEN + 1];
	struct jwt_parts j;
	struct policy_caller c;
	size_t len;
	uint64_t gen = 0;
	int r;

	if (p == NULL || audience == NULL || out == NULL)
		return POLICY_ERR_ARGS;
	memset(out, 0, sizeof(*out));
	memset(&c, 0, sizeof(c));
	if (jwt == NULL || (len = strnlen(jwt, TOKEN_MAX + 1)) > TOKEN_MAX ||
	    strnlen(audience, AUDIENCE_MAX + 1) > AUDIENCE_MAX ||
	    jwt_split(jwt, len, &j) != POLICY_OK)
		return POLICY_ERR_DENIED;
	if ((r = policy_verify_key_take(p, &key, kid, &gen)) != POLICY_OK)
		goto out;
	if ((r = jwt_header_check(&j, kid)) != POLICY_OK ||
	    (r = jwt_signature_check(p, key, gen, jwt, len, &j)) != POLICY_OK ||
	    (r = jwt_claims_check(p, &j, audience, now, &c)) != POLICY_OK)
		goto out;
	*out = c;
out:
	EVP_PKEY_free(key);
	OPENSSL_cleanse(&c, sizeof(c));
	return r;
}

/* ---- issuing ----------------------------------------------------------- */

/* Appends base64url(compact JSON of o) to b. */
static POLICY_WUR int
jwt_part_put(buf_t *b, json_t *o)
{
	char *text = NULL, *b64 = NULL;
	int r = POLICY_ERR_NO_MEMORY;

	if (o == NULL || (text = json_dumps(o, JSON_COMPACT)) == NULL)
		goto out;
	if ((r = policy_b64url_encode((const uint8_t *)text, strlen(text),
	         &b64)) != POLICY_OK)
		goto out;
	r = buf_put_str(b, b64) == 0 ? POLICY_OK : POLICY_ERR_ARGS;
out:
	free(text);
	free(b64);
	return r;
}

/* "base64url(header).base64url(claims)" into b: the signing input. */
static POLICY_WUR int
jwt_signing_input(policy_t *p, buf_t *b, const char *kid, const char *oid,
    const char *appid, const char *audience, int64_t now, int64_t exp)
{
	json_t *hdr = NULL, *claims = NULL;
	char jti[POLICY_ID_LEN + 1];
	int r;

	policy_uuid(jti);
	hdr = json_pack("{s:s,s:s,s:s}", "alg", "ES256", "typ", "JWT", "kid",
	    kid);
	claims = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s}", "iss",
	    p->issuer, "aud", audience, "tid", p->tenant_id, "oid", oid,
	    "appid", appid, "iat", (json_int_t)now, "nbf", (json_int_t)now,
	    "exp", (json_int_t)exp, "jti", jti);
	if (hdr == NULL || claims == NULL) {
		r = POLICY_ERR_NO_MEMORY;
		goto out;
	}
	if ((r = jwt_part_put(b, hdr)) != POLICY_OK)
		goto out;
	if (buf_put_u8(b, '.') != 0) {
		r = POLICY_ERR_ARGS;
		goto out;
	}
	r = jwt_part_put(b, claims);
out:
	json_decref(hdr);
	json_decref(claims);
	return r;
}

/* Signs b's signing input through the callback, checks the signature
 * against the published key, and appends ".base64url(r||s)". */
static POLICY_WUR int
jwt_sign_append(buf_t *b, EVP_PKEY *key, policy_sign_fn sign, void *sign_ctx)
{
	uint8_t sig[POLICY_ES256_SIG_LEN];
	char *s64 = NULL;
	int r = POLICY_ERR_INTERNAL;

	if (buf_len(b) + 1 + ES256_SIG_B64_LEN > TOKEN_MAX)
		return POLICY_ERR_ARGS;
	if (sign(sign_ctx, buf_ptr(b), buf_len(b), sig) != 0)
		goto out;
	/* A signer that does not match the published key would hand out
	 * tokens nobody accepts: check once here. */
	if (policy_es256_verify(key, buf_ptr(b), buf_len(b), sig,
	        sizeof(sig)) != POLICY_OK)
		goto out;
	if ((r = policy_b64url_encode(sig, sizeof(sig), &s64)) != POLICY_OK)
		goto out;
	r = POLICY_ERR_INTERNAL;
	if (strlen(s64) != ES256_SIG_B64_LEN || buf_put_u8(b, '.') != 0 ||
	    buf_put_str(b, s64) != 0)
		goto out;
	r = POLICY_OK;
out:
	free(s64);
	return r;
}

int
policy_token_issue(policy_t *p, const char *oid, const char *appid,
    const char *audience, int64_t now, policy_sign_fn sign, void *sign_ctx,
    char **jwt, int64_t *expires_in)
{
	EVP_PKEY *key = NULL;
	char kid[POLICY_KID_LEN + 1];
	uint8_t digest[SHA256_DIGEST_LENGTH];
	buf_t *b = NULL;
	uint64_t gen = 0;
	int64_t exp;
	size_t len;
	int r;

	if (jwt != NULL)
		*jwt = NULL;
	if (expires_in != NULL)
		*expires_in = 0;
	if (p == NULL || jwt == NULL || expires_in == NULL || sign == NULL ||
	    policy_id_check(oid, POLICY_ID_LEN) != 0 ||
	    policy_id_check(appid, POLICY_ID_LEN) != 0 || audience == NULL ||
	    audience[0] == '\0' ||
	    strnlen(audience, AUDIENCE_MAX + 1) > AUDIENCE_MAX)
		return POLICY_ERR_ARGS;
	if (__builtin_add_overflow(now, p->token_lifetime, &exp))
		return POLICY_ERR_ARGS;
	if (policy_verify_key_take(p, &key, kid, &gen) != POLICY_OK)
		return POLICY_ERR_INTERNAL; /* no key configured */
	if ((b = buf_new(TOKEN_MAX)) == NULL) {
		r = POLICY_ERR_NO_MEMORY;
		goto out;
	}
	if ((r = jwt_signing_input(p, b, kid, oid, appid, audience, now,
	         exp)) != POLICY_OK ||
	    (r = jwt_sign_append(b, key, sign, sign_ctx)) != POLICY_OK)
		goto out;
	/* The signature was just checked: the first use skips it. */
	if (SHA256(buf_ptr(b), buf_len(b), digest) != NULL)
		policy_sig_cache_put(p, digest, gen);
	*jwt = buf_steal(b, &len);
	b = NULL;
	if (*jwt == NULL) {
		r = POLICY_ERR_NO_MEMORY;
		goto out;
	}
	*expires_in = p->token_lifetime;
	r = POLICY_OK;
out:
	buf_free(b);
	EVP_PKEY_free(key);
	return r;
}
