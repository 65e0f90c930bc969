/*
 * policy/token.c — ES256 JWT bearer tokens: the verify key and its JWK,
 * issuing (signature through the caller's callback), verification and the
 * cache of verified signatures.
 *
 * Owns: the verify key, the kid, the token cache. Must never: hold a
 * private key (signing is the callback's, i.e. the HSM's), accept any alg
 * but ES256, trust a cached entry for claims (only for the signature), or
 * log or keep a token (the cache holds SHA-256 digests only).
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "policy/internal.h"

#define TOKEN_MAX 8192          /* longest bearer token examined */
#define SPKI_MAX 1024
#define AUDIENCE_MAX 1024
#define CLOCK_SKEW 60

void
policy_token_state_free(policy_t *p)
{
	EVP_PKEY_free(p->verify_key);
	p->verify_key = NULL;
}

int
policy_set_verify_key(policy_t *p, const uint8_t *spki, size_t len)
{
	EVP_PKEY *key = NULL;
	const unsigned char *q = spki;
	unsigned char *der = NULL;
	uint8_t digest[SHA256_DIGEST_LENGTH], coord[32];
	char group[64], *kid = NULL, *x = NULL, *y = NULL;
	BIGNUM *bx = NULL, *by = NULL;
	int der_len, r = POLICY_ERR_ARGS;

	if (p == NULL || spki == NULL || len == 0 || len > SPKI_MAX)
		return POLICY_ERR_ARGS;
	if ((key = d2i_PUBKEY(NULL, &q, (long)len)) == NULL ||
	    (size_t)(q - spki) != len)
		goto out;
	if (!EVP_PKEY_is_a(key, "EC") ||
	    EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME,
	    group, sizeof(group), NULL) != 1 ||
	    strcmp(group, "prime256v1") != 0)
		goto out;
	r = POLICY_ERR_INTERNAL;
	/* kid from the canonical encoding, whatever encoding we were given. */
	if ((der_len = i2d_PUBKEY(key, &der)) <= 0 ||
	    SHA256(der, (size_t)der_len, digest) == NULL)
		goto out;
	if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &bx) != 1 ||
	    EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &by) != 1)
		goto out;
	if ((r = policy_b64url_encode(digest, 16, &kid)) != POLICY_OK)
		goto out;
	r = POLICY_ERR_INTERNAL;
	if (BN_bn2binpad(bx, coord, sizeof(coord)) != (int)sizeof(coord))
		goto out;
	if ((r = policy_b64url_encode(coord, sizeof(coord), &x)) != POLICY_OK)
		goto out;
	r = POLICY_ERR_INTERNAL;
	if (BN_bn2binpad(by, coord, sizeof(coord)) != (int)sizeof(coord))
		goto out;
	if ((r = policy_b64url_encode(coord, sizeof(coord), &y)) != POLICY_OK)
		goto out;
	r = POLICY_ERR_INTERNAL;
	if (strlen(kid) != POLICY_KID_LEN || strlen(x) != POLICY_COORD_LEN ||
	    strlen(y) != POLICY_COORD_LEN)
		goto out;
	if (pthread_rwlock_wrlock(&p->lock) != 0)
		goto out;
	EVP_PKEY_free(p->verify_key);
	p->verify_key = key;
	key = NULL;
	/* Cached signatures were checked against the old key: a new
	 * generation makes every cache slot stale. */
	p->key_gen++;
	memcpy(p->kid, kid, POLICY_KID_LEN + 1);
	memcpy(p->jwk_x, x, POLICY_COORD_LEN + 1);
	memcpy(p->jwk_y, y, POLICY_COORD_LEN + 1);
	pthread_rwlock_unlock(&p->lock);
	r = POLICY_OK;
out:
	EVP_PKEY_free(key);
	OPENSSL_free(der);
	BN_free(bx);
	BN_free(by);
	free(kid);
	free(x);
	free(y);
	return r;
}

int
policy_jwk(policy_t *p, char **kid, char **x, char **y)
{
	char k[POLICY_KID_LEN + 1], cx[POLICY_COORD_LEN + 1];
	char cy[POLICY_COORD_LEN + 1];
	int have;

	if (p == NULL || kid == NULL || x == NULL || y == NULL)
		return POLICY_ERR_ARGS;
	*kid = *x = *y = NULL;
	if (pthread_rwlock_rdlock(&p->lock) != 0)
		return POLICY_ERR_INTERNAL;
	if ((have = p->verify_key != NULL)) {
		memcpy(k, p->kid, sizeof(k));
		memcpy(cx, p->jwk_x, sizeof(cx));
		memcpy(cy, p->jwk_y, sizeof(cy));
	}
	pthread_rwlock_unlock(&p->lock);
	if (!have)
		return POLICY_ERR_ARGS;
	if ((*kid = strdup(k)) == NULL || (*x = strdup(cx)) == NULL ||
	    (*y = strdup(cy)) == NULL) {
		free(*kid);
		free(*x);
		*kid = *x = NULL;
		return POLICY_ERR_NO_MEMORY;
	}
	return POLICY_OK;
}

/* A counted reference to the current verify key, its kid and generation. */
static int
verify_key_take(policy_t *p, EVP_PKEY **key, char kid[POLICY_KID_LEN + 1],
    uint64_t *gen)
{
	int r = POLICY_ERR_DENIED;

	*key = NULL;
	if (pthread_rwlock_rdlock(&p->lock) != 0)
		return POLICY_ERR_INTERNAL;
	if (p->verify_key != NULL && EVP_PKEY_up_ref(p->verify_key) == 1) {
		*key = p->verify_key;
		memcpy(kid, p->kid, POLICY_KID_LEN + 1);
		*gen = p->key_gen;
		r = POLICY_OK;
	}
	pthread_rwlock_unlock(&p->lock);
	return r;
}

static size_t
cache_index(const uint8_t digest[SHA256_DIGEST_LENGTH])
{
	/* Only tokens whose signature verified get in, so nobody can choose
	 * digests to crowd the cache; direct mapping is enough. */
	return ((size_t)digest[0] << 8 | digest[1]) % POLICY_TOKEN_CACHE_SLOTS;
}

static int
cache_has(policy_t *p, const uint8_t digest[SHA256_DIGEST_LENGTH],
    uint64_t gen)
{
	struct policy_token_slot *s;
	int hit;

	if (pthread_mutex_lock(&p->cache_lock) != 0)
		return 0;
	s = &p->cache[cache_index(digest)];
	hit = s->key_gen == gen && gen != 0 &&
	    CRYPTO_memcmp(s->digest, digest, SHA256_DIGEST_LENGTH) == 0;
	pthread_mutex_unlock(&p->cache_lock);
	return hit;
}

static void
cache_put(policy_t *p, const uint8_t digest[SHA256_DIGEST_LENGTH],
    uint64_t gen)
{
	struct policy_token_slot *s;

	if (pthread_mutex_lock(&p->cache_lock) != 0)
		return;
	s = &p->cache[cache_index(digest)];
	memcpy(s->digest, digest, SHA256_DIGEST_LENGTH);
	s->key_gen = gen;
	pthread_mutex_unlock(&p->cache_lock);
}

/* 1 if raw (r||s, 64 bytes) is a valid ES256 signature over data. */
static int
es256_verify(EVP_PKEY *key, const uint8_t *data, size_t len,
    const uint8_t *raw, size_t raw_len)
{
	ECDSA_SIG *sig = NULL;
	BIGNUM *r = NULL, *s = NULL;
	EVP_MD_CTX *ctx = NULL;
	unsigned char *der = NULL;
	int der_len, ok = 0;

	if (raw_len != 64)
		return 0;
	if ((sig = ECDSA_SIG_new()) == NULL ||
	    (r = BN_bin2bn(raw, 32, NULL)) == NULL ||
	    (s = BN_bin2bn(raw + 32, 32, NULL)) == NULL)
		goto out;
	if (ECDSA_SIG_set0(sig, r, s) != 1)
		goto out;
	r = s = NULL;
	if ((der_len = i2d_ECDSA_SIG(sig, &der)) <= 0)
		goto out;
	if ((ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) != 1)
		goto out;
	ok = EVP_DigestVerify(ctx, der, (size_t)der_len, data, len) == 1;
out:
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(sig);
	return ok;
}

static int
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

/* "https://x" and "https://x/" name the same audience. */
static int
audience_matches(const char *claim, const char *audience)
{
	size_t a = strlen(claim), b = strlen(audience);

	if (a > 0 && claim[a - 1] == '/')
		a--;
	if (b > 0 && audience[b - 1] == '/')
		b--;
	return a > 0 && a == b && memcmp(claim, audience, a) == 0;
}

static const char *
claim_str(json_t *o, const char *name, size_t max)
{
	json_t *v = json_object_get(o, name);
	const char *s;

	if (!json_is_string(v))
		return NULL;
	s = json_string_value(v);
	if (strlen(s) != json_string_length(v) || strlen(s) > max)
		return NULL;    /* embedded NUL or too long */
	return s;
}

static int
claim_int(json_t *o, const char *name, int64_t *out)
{
	json_t *v = json_object_get(o, name);

	if (!json_is_integer(v))
		return -1;
	*out = (int64_t)json_integer_value(v);
	return 0;
}

static int
copy_id(char dst[POLICY_ID_LEN + 1], const char *src)
{
	if (!policy_id_valid(src, POLICY_ID_LEN))
		return -1;
	memcpy(dst, src, strlen(src) + 1);
	return 0;
}

int
policy_token_verify(policy_t *p, const char *jwt, const char *audience,
    int64_t now, struct policy_caller *out)
{
	json_t *hdr = NULL, *claims = NULL;
	EVP_PKEY *key = NULL;
	char kid[POLICY_KID_LEN + 1];
	uint8_t digest[SHA256_DIGEST_LENGTH], *sig = NULL;
	const char *dot1, *dot2, *s, *oid, *appid, *tid;
	size_t len, sig_len;
	uint64_t gen = 0;
	int64_t nbf, exp, iat, d;
	struct policy_caller c;
	int r = POLICY_ERR_DENIED;

	if (p == NULL || audience == NULL || out == NULL)
		return POLICY_ERR_ARGS;
	memset(out, 0, sizeof(*out));
	memset(&c, 0, sizeof(c));
	if (jwt == NULL || (len = strnlen(jwt, TOKEN_MAX + 1)) > TOKEN_MAX ||
	    strnlen(audience, AUDIENCE_MAX + 1) > AUDIENCE_MAX)
		return POLICY_ERR_DENIED;
	/* Exactly three non-empty segments. */
	if ((dot1 = memchr(jwt, '.', len)) == NULL ||
	    (dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - jwt))) ==
	    NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - jwt)) !=
	    NULL || dot1 == jwt || dot2 == dot1 + 1 || dot2 + 1 == jwt + len)
		return POLICY_ERR_DENIED;
	if ((r = verify_key_take(p, &key, kid, &gen)) != POLICY_OK)
		goto out;
	r = POLICY_ERR_DENIED;

	if (b64url_json(jwt, (size_t)(dot1 - jwt), &hdr) != POLICY_OK)
		goto out;
	if ((s = claim_str(hdr, "alg", 16)) == NULL || strcmp(s, "ES256") != 0)
		goto out;
	if ((s = claim_str(hdr, "kid", 64)) == NULL || strcmp(s, kid) != 0)
		goto out;
	if (json_object_get(hdr, "typ") != NULL &&
	    ((s = claim_str(hdr, "typ", 16)) == NULL || strcmp(s, "JWT") != 0))
		goto out;
	/* We understand no critical extensions (RFC 7515 §4.1.11). */
	if (json_object_get(hdr, "crit") != NULL)
		goto out;

	if (SHA256((const unsigned char *)jwt, len, digest) == NULL) {
		r = POLICY_ERR_INTERNAL;
		goto out;
	}
	if (!cache_has(p, digest, gen)) {
		if (policy_b64url_decode(dot2 + 1, len - (size_t)(dot2 + 1 -
		    jwt), &sig, &sig_len) != POLICY_OK)
			goto out;
		if (!es256_verify(key, (const uint8_t *)jwt,
		    (size_t)(dot2 - jwt), sig, sig_len))
			goto out;
		cache_put(p, digest, gen);
	}

	/* The claims, every time: a cached signature says nothing about
	 * the clock or about who still exists. */
	if (b64url_json(dot1 + 1, (size_t)(dot2 - dot1 - 1), &claims) !=
	    POLICY_OK)
		goto out;
	if ((s = claim_str(claims, "iss", 2048)) == NULL ||
	    strcmp(s, p->issuer) != 0)
		goto out;
	if ((tid = claim_str(claims, "tid", POLICY_ID_LEN)) == NULL ||
	    strcmp(tid, p->tenant_id) != 0)
		goto out;
	if ((s = claim_str(claims, "aud", AUDIENCE_MAX)) == NULL ||
	    !audience_matches(s, audience))
		goto out;
	if (claim_int(claims, "nbf", &nbf) != 0 ||
	    claim_int(claims, "exp", &exp) != 0)
		goto out;
	if (json_object_get(claims, "iat") != NULL &&
	    claim_int(claims, "iat", &iat) != 0)
		goto out;
	/* nbf <= now + skew and exp > now - skew, without overflow. */
	if (__builtin_sub_overflow(nbf, now, &d) || d > CLOCK_SKEW)
		goto out;
	if (__builtin_sub_overflow(exp, now, &d)) {
		if (exp < now)
			goto out;
	} else if (d <= -CLOCK_SKEW) {
		goto out;
	}
	if ((oid = claim_str(claims, "oid", POLICY_ID_LEN)) == NULL ||
	    (appid = claim_str(claims, "appid", POLICY_ID_LEN)) == NULL ||
	    copy_id(c.oid, oid) != 0 || copy_id(c.appid, appid) != 0 ||
	    copy_id(c.tid, tid) != 0)
		goto out;
	c.exp = exp;
	if (policy_principal_find(p, c.oid) != POLICY_OK)
		goto out;
	*out = c;
	r = POLICY_OK;
out:
	json_decref(hdr);
	json_decref(claims);
	free(sig);
	EVP_PKEY_free(key);
	OPENSSL_cleanse(&c, sizeof(c));
	return r;
}

int
policy_token_issue(policy_t *p, const char *oid, const char *appid,
    const char *audience, int64_t now, policy_sign_fn sign, void *sign_ctx,
    char **jwt, int64_t *expires_in)
{
	json_t *hdr = NULL, *claims = NULL;
	EVP_PKEY *key = NULL;
	char kid[POLICY_KID_LEN + 1], jti[POLICY_ID_LEN + 1];
	char *hdr_json = NULL, *claims_json = NULL, *h64 = NULL, *c64 = NULL;
	char *s64 = NULL, *tok = NULL;
	uint8_t sig[64], digest[SHA256_DIGEST_LENGTH];
	size_t hl, cl, sl, signed_len, total;
	uint64_t gen = 0;
	int64_t exp;
	int r = POLICY_ERR_ARGS;

	if (jwt != NULL)
		*jwt = NULL;
	if (expires_in != NULL)
		*expires_in = 0;
	if (p == NULL || jwt == NULL || expires_in == NULL || sign == NULL ||
	    !policy_id_valid(oid, POLICY_ID_LEN) ||
	    !policy_id_valid(appid, POLICY_ID_LEN) || audience == NULL ||
	    audience[0] == '\0' ||
	    strnlen(audience, AUDIENCE_MAX + 1) > AUDIENCE_MAX)
		return POLICY_ERR_ARGS;
	if (__builtin_add_overflow(now, p->token_lifetime, &exp))
		return POLICY_ERR_ARGS;
	if ((r = verify_key_take(p, &key, kid, &gen)) != POLICY_OK) {
		r = POLICY_ERR_INTERNAL;        /* no key configured */
		goto out;
	}
	policy_uuid(jti);
	r = POLICY_ERR_NO_MEMORY;
	hdr = json_pack("{s:s,s:s,s:s}", "alg", "ES256", "typ", "JWT",
	    "kid", kid);
	claims = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s}",
	    "iss", p->issuer, "aud", audience, "tid", p->tenant_id,
	    "oid", oid, "appid", appid, "iat", (json_int_t)now,
	    "nbf", (json_int_t)now, "exp", (json_int_t)exp, "jti", jti);
	if (hdr == NULL || claims == NULL ||
	    (hdr_json = json_dumps(hdr, JSON_COMPACT)) == NULL ||
	    (claims_json = json_dumps(claims, JSON_COMPACT)) == NULL)
		goto out;
	if ((r = policy_b64url_encode((const uint8_t *)hdr_json,
	    strlen(hdr_json), &h64)) != POLICY_OK ||
	    (r = policy_b64url_encode((const uint8_t *)claims_json,
	    strlen(claims_json), &c64)) != POLICY_OK)
		goto out;
	hl = strlen(h64);
	cl = strlen(c64);
	signed_len = hl + 1 + cl;
	total = signed_len + 1 + 86;    /* 64-byte signature in base64url */
	if (total > TOKEN_MAX) {
		r = POLICY_ERR_ARGS;
		goto out;
	}
	if ((tok = malloc(total + 1)) == NULL) {
		r = POLICY_ERR_NO_MEMORY;
		goto out;
	}
	memcpy(tok, h64, hl);
	tok[hl] = '.';
	memcpy(tok + hl + 1, c64, cl);
	tok[signed_len] = '\0';
	if (sign(sign_ctx, (const uint8_t *)tok, signed_len, sig) != 0) {
		r = POLICY_ERR_INTERNAL;
		goto out;
	}
	/* A signer that does not match the published key would hand out
	 * tokens nobody accepts: check once here, and cache the result. */
	if (!es256_verify(key, (const uint8_t *)tok, signed_len, sig,
	    sizeof(sig))) {
		r = POLICY_ERR_INTERNAL;
		goto out;
	}
	if ((r = policy_b64url_encode(sig, sizeof(sig), &s64)) != POLICY_OK)
		goto out;
	sl = strlen(s64);
	if (sl != 86) {
		r = POLICY_ERR_INTERNAL;
		goto out;
	}
	tok[signed_len] = '.';
	memcpy(tok + signed_len + 1, s64, sl + 1);
	if (SHA256((const unsigned char *)tok, total, digest) != NULL)
		cache_put(p, digest, gen);
	*jwt = tok;
	tok = NULL;
	*expires_in = p->token_lifetime;
	r = POLICY_OK;
out:
	if (tok != NULL) {
		OPENSSL_cleanse(tok, strlen(tok));
		free(tok);
	}
	json_decref(hdr);
	json_decref(claims);
	free(hdr_json);
	free(claims_json);
	free(h64);
	free(c64);
	free(s64);
	EVP_PKEY_free(key);
	return r;
}
