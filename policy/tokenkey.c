/*
 * policy/tokenkey.c — the key that verifies tokens: its public key, kid and
 * JWK coordinates, its generation, the ES256 check made with it, and the
 * cache of token signatures already verified under it.
 *
 * Owns: the verify key and the cache (SHA-256 digests of whole tokens,
 * each valid for one key generation). Must never: hold a private key,
 * keep a token, or let a cache entry outlive a key change.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "hsm/pkey.h"
#include "policy/internal.h"

#define SPKI_MAX 1024

void
policy_verify_key_free(policy_t *p)
{
	EVP_PKEY_free(p->verify_key);
	p->verify_key = NULL;
}

/* One 32-byte coordinate of the key, base64url. */
static POLICY_WUR int
coord_b64(const BIGNUM *bn, char **out)
{
	uint8_t coord[32];

	if (BN_bn2binpad(bn, coord, sizeof(coord)) != (int)sizeof(coord))
		return POLICY_ERR_INTERNAL;
	return policy_b64url_encode(coord, sizeof(coord), out);
}

int
policy_set_verify_key(policy_t *p, const uint8_t *spki, size_t len)
{
	EVP_PKEY *key = NULL;
	const unsigned char *q = spki;
	unsigned char *der = NULL;
	uint8_t digest[SHA256_DIGEST_LENGTH];
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
	if ((r = policy_b64url_encode(digest, 16, &kid)) != POLICY_OK ||
	    (r = coord_b64(bx, &x)) != POLICY_OK ||
	    (r = coord_b64(by, &y)) != POLICY_OK)
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

int
policy_verify_key_take(policy_t *p, EVP_PKEY **key,
    char kid[POLICY_KID_LEN + 1], uint64_t *gen)
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
cache_index(const uint8_t digest[32])
{
	/* Only tokens whose signature verified get in, so nobody can choose
	 * digests to crowd the cache; direct mapping is enough. */
	return ((size_t)digest[0] << 8 | digest[1]) % POLICY_TOKEN_CACHE_SLOTS;
}

int
policy_sig_cache_lookup(policy_t *p, const uint8_t digest[32], uint64_t gen)
{
	struct policy_token_slot *s;
	int r = POLICY_ERR_NOT_FOUND;

	if (pthread_mutex_lock(&p->cache_lock) != 0)
		return POLICY_ERR_NOT_FOUND;
	s = &p->cache[cache_index(digest)];
	if (s->key_gen == gen && gen != 0 &&
	    CRYPTO_memcmp(s->digest, digest, SHA256_DIGEST_LENGTH) == 0)
		r = POLICY_OK;
	pthread_mutex_unlock(&p->cache_lock);
	return r;
}

void
policy_sig_cache_put(policy_t *p, const uint8_t digest[32], uint64_t gen)
{
	struct policy_token_slot *s;

	if (pthread_mutex_lock(&p->cache_lock) != 0)
		return;
	s = &p->cache[cache_index(digest)];
	memcpy(s->digest, digest, SHA256_DIGEST_LENGTH);
	s->key_gen = gen;
	pthread_mutex_unlock(&p->cache_lock);
}

int
policy_es256_verify(EVP_PKEY *key, const uint8_t *data, size_t len,
    const uint8_t *raw, size_t raw_len)
{
	EVP_MD_CTX *ctx = NULL;
	uint8_t *der = NULL;
	size_t der_len = 0;
	int r = POLICY_ERR_DENIED;

	if (raw_len != POLICY_ES256_SIG_LEN ||
	    hsm_ecdsa_sig_der(raw, raw_len, &der, &der_len) != 0)
		goto out;
	if ((ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) != 1)
		goto out;
	if (EVP_DigestVerify(ctx, der, der_len, data, len) == 1)
		r = POLICY_OK;
out:
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	return r;
}
