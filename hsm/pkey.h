/*
 * hsm/pkey.h — public-key facts and formats that need no token, written
 * once for every room: the curve table (JWK name, OpenSSL NID, blob code,
 * field size), SubjectPublicKeyInfo from RSA n and e or from an EC point,
 * the curve OID for PKCS#11, and an ECDSA signature from JOSE's r||s to
 * DER. Holds nothing secret.
 */
#ifndef P11VAULT_HSM_PKEY_H
#define P11VAULT_HSM_PKEY_H

#include <stddef.h>
#include <stdint.h>

#include "hsm/hsm.h"

struct hsm_curve_info {
	const char *jwk; /* "P-256", "P-384", "P-521", "P-256K" */
	int nid;         /* OpenSSL NID */
	unsigned code;   /* enum hsm_curve: the blob header's param */
	size_t field;    /* bytes of a coordinate, and of r and of s */
	const char *alg; /* the JWS algorithm that goes with it: ES256... */
};

/* NULL when unknown. by_name is exact and case-sensitive, as JWK is. */
const struct hsm_curve_info *hsm_curve_by_name(const char *jwk);
const struct hsm_curve_info *hsm_curve_by_nid(int nid);
const struct hsm_curve_info *hsm_curve_by_code(unsigned code);

/* An RSA SubjectPublicKeyInfo (DER, malloc'd) from big-endian n and e. */
int hsm_rsa_spki(const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len,
    uint8_t **spki, size_t *len) HSM_WUR;
/* An EC SubjectPublicKeyInfo from the curve's OID (DER, as CKA_EC_PARAMS)
 * and its uncompressed point (raw, or as PKCS#11's DER OCTET STRING). */
int hsm_ec_spki(const uint8_t *params, size_t params_len, const uint8_t *point,
    size_t point_len, uint8_t **spki, size_t *len) HSM_WUR;
/* The DER of curve nid's OID, as CKA_EC_PARAMS wants it, into
 * der[*der_len]; *der_len becomes its length. */
int hsm_curve_der(int nid, uint8_t *der, size_t *der_len) HSM_WUR;
/* JOSE's r||s (2 * field bytes) to a DER ECDSA-Sig-Value (OPENSSL_free
 * it). */
int hsm_ecdsa_sig_der(const uint8_t *rs, size_t rs_len, uint8_t **der,
    size_t *der_len) HSM_WUR;

#endif
