/*
 * tests/unit/es256.h — the tests' ES256 signer: a P-256 key held by the
 * test itself signs data as JWS wants it (SHA-256, JOSE's 64-byte r||s),
 * in the shape of policy_sign_fn so that it can stand in for the HSM's
 * signer. Header-only, for tests/unit, tests/fuzz and tests/bench alike.
 *
 * Test code only: never linked into the product.
 */
#ifndef P11VAULT_TESTS_ES256_H
#define P11VAULT_TESTS_ES256_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

/* ctx is the EVP_PKEY (EC P-256) to sign with. 0, or -1. */
static inline int
es256_sign(void *ctx, const uint8_t *data, size_t len, uint8_t sig[64])
{
	EVP_PKEY *key = ctx;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char der[128];
	const unsigned char *q = der;
	size_t der_len = sizeof(der);
	ECDSA_SIG *es = NULL;
	int r = -1;

	if (md == NULL ||
	    EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(md, der, &der_len, data, len) != 1)
		goto out;
	if ((es = d2i_ECDSA_SIG(NULL, &q, (long)der_len)) == NULL)
		goto out;
	if (BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32) != 32 ||
	    BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32) != 32)
		goto out;
	r = 0;
out:
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	return r;
}

#endif
