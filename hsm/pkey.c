/*
 * hsm/pkey.c — public-key facts and formats (pkey.h). Owns the curve
 * table and every encoding of a public key or signature that needs no
 * token: SPKI from RSA n/e or from an EC point, the curve OID as
 * CKA_EC_PARAMS wants it, r||s to DER. Must never: hold a private key.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "hsm/hsm_int.h"
#include "hsm/pkey.h"

static const struct hsm_curve_info curves[] = {
	{ "P-256", NID_X9_62_prime256v1, HSM_CURVE_P256, 32, "ES256" },
	{ "P-384", NID_secp384r1, HSM_CURVE_P384, 48, "ES384" },
	{ "P-521", NID_secp521r1, HSM_CURVE_P521, 66, "ES512" },
	{ "P-256K", NID_secp256k1, HSM_CURVE_P256K, 32, "ES256K" },
};
#define NCURVES (sizeof(curves) / sizeof(curves[0]))

const struct hsm_curve_info *
hsm_curve_by_name(const char *jwk)
{
	size_t i;

	for (i = 0; jwk != NULL && i < NCURVES; i++)
		if (strcmp(curves[i].jwk, jwk) == 0)
			return &curves[i];
	return NULL;
}

const struct hsm_curve_info *
hsm_curve_by_nid(int nid)
{
	size_t i;

	for (i = 0; i < NCURVES; i++)
		if (curves[i].nid == nid)
			return &curves[i];
	return NULL;
}

const struct hsm_curve_info *
hsm_curve_by_code(unsigned code)
{
	size_t i;

	for (i = 0; i < NCURVES; i++)
		if (curves[i].code == code)
			return &curves[i];
	return NULL;
}

int
hsm_ecdsa_sig_der(const uint8_t *rs, size_t rs_len, uint8_t **der,
    size_t *der_len)
{
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *s = NULL;
	unsigned char *p = NULL;
	size_t half = rs_len / 2;
	int n, rc = HSM_ERR_INTERNAL;

	*der = NULL;
	if (rs_len == 0 || rs_len % 2 != 0 || rs_len > 2 * 66)
		return HSM_ERR_ARGS;
	if ((es = ECDSA_SIG_new()) == NULL ||
	    (r = BN_bin2bn(rs, (int)half, NULL)) == NULL ||
	    (s = BN_bin2bn(rs + half, (int)half, NULL)) == NULL ||
	    ECDSA_SIG_set0(es, r, s) != 1)
		goto out;
	r = s = NULL;
	if ((n = i2d_ECDSA_SIG(es, &p)) <= 0)
		goto out;
	*der = p;
	*der_len = (size_t)n;
	rc = HSM_OK;
out:
	ERR_clear_error();
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return rc;
}

int
hsm_curve_der(int nid, uint8_t *der, size_t *der_len)
{
	const ASN1_OBJECT *obj = OBJ_nid2obj(nid);
	unsigned char *p = der;
	int n;

	if (obj == NULL || (n = i2d_ASN1_OBJECT(obj, NULL)) <= 0 ||
	    (size_t)n > *der_len)
		return HSM_ERR_INTERNAL;
	if (i2d_ASN1_OBJECT(obj, &p) != n)
		return HSM_ERR_INTERNAL;
	*der_len = (size_t)n;
	return 0;
}

/* The SPKI DER of pk as plain malloc'd memory (the caller frees with
 * free()). */
static int
pkey_to_spki(EVP_PKEY *pk, uint8_t **spki, size_t *len)
{
	unsigned char *der = NULL;
	int n = i2d_PUBKEY(pk, &der);

	if (n <= 0)
		return HSM_ERR_INTERNAL;
	if ((*spki = malloc((size_t)n)) == NULL) {
		OPENSSL_free(der);
		return HSM_ERR_NO_MEMORY;
	}
	memcpy(*spki, der, (size_t)n);
	*len = (size_t)n;
	OPENSSL_free(der);
	return 0;
}

static int
pkey_from_params(const char *type, OSSL_PARAM_BLD *bld, EVP_PKEY **pk)
{
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	int rc = HSM_ERR_INTERNAL;

	*pk = NULL;
	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
		goto out;
	if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL)) == NULL)
		goto out;
	if (EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	rc = 0;
out:
	OSSL_PARAM_free(params);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

int
hsm_rsa_spki(const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len,
    uint8_t **spki, size_t *len)
{
	OSSL_PARAM_BLD *bld = NULL;
	BIGNUM *bn = NULL, *be = NULL;
	EVP_PKEY *pk = NULL;
	int rc = HSM_ERR_INTERNAL;

	*spki = NULL;
	if ((bn = BN_bin2bn(n, (int)n_len, NULL)) == NULL ||
	    (be = BN_bin2bn(e, (int)e_len, NULL)) == NULL)
		goto out;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
		goto out;
	if ((rc = pkey_from_params("RSA", bld, &pk)) != 0)
		goto out;
	rc = pkey_to_spki(pk, spki, len);
out:
	ERR_clear_error();
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	EVP_PKEY_free(pk);
	return rc;
}

int
hsm_ec_spki(const uint8_t *params, size_t params_len, const uint8_t *point,
    size_t point_len, uint8_t **spki, size_t *len)
{
	const unsigned char *p = params;
	const struct hsm_curve_info *ci;
	ASN1_OBJECT *oid = NULL;
	ASN1_OCTET_STRING *os = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pk = NULL;
	const unsigned char *pt = point;
	size_t pt_len = point_len;
	int nid, rc = HSM_ERR_INTERNAL;

	*spki = NULL;
	if (d2i_ASN1_OBJECT(&oid, &p, (long)params_len) == NULL ||
	    p != params + params_len)
		goto out;
	nid = OBJ_obj2nid(oid);
	if ((ci = hsm_curve_by_nid(nid)) == NULL)
		goto out;
	/* PKCS#11 says CKA_EC_POINT is a DER OCTET STRING; some modules give
	 * the raw point. Accept both, insisting on an uncompressed point. */
	p = point;
	if (d2i_ASN1_OCTET_STRING(&os, &p, (long)point_len) != NULL &&
	    p == point + point_len &&
	    (size_t)ASN1_STRING_length(os) == 2 * ci->field + 1) {
		pt = ASN1_STRING_get0_data(os);
		pt_len = (size_t)ASN1_STRING_length(os);
	}
	if (pt_len != 2 * ci->field + 1 || pt[0] != 0x04)
		goto out;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
	        OBJ_nid2sn(nid), 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt,
	        pt_len))
		goto out;
	if ((rc = pkey_from_params("EC", bld, &pk)) != 0)
		goto out;
	rc = pkey_to_spki(pk, spki, len);
out:
	ERR_clear_error();
	ASN1_OBJECT_free(oid);
	ASN1_OCTET_STRING_free(os);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_free(pk);
	return rc;
}
