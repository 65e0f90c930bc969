/*
 * hsm/pkey.c — see pkey.h. Owns the curve table. Must never: hold a
 * private key.
 */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>

#include "hsm/hsm_int.h"
#include "hsm/pkey.h"

static const struct hsm_curve_info curves[] = {
	{ "P-256", NID_X9_62_prime256v1, HSM_CURVE_P256, 32, "ES256" },
	{ "P-384", NID_secp384r1, HSM_CURVE_P384, 48, "ES384" },
	{ "P-521", NID_secp521r1, HSM_CURVE_P521, 66, "ES512" },
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
