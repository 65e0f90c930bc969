/*
 * hsm/import.c — keys brought into the token: plaintext PKCS#8 and BYOK
 * transfer blobs, each a maker for the skeleton of keys.c.
 *
 * Owns: PKCS#8 into a C_CreateObject template (a short-lived session
 * object, then wrapped under the domain key like a generated key), and
 * BYOK transfer blobs (CKM_RSA_AES_KEY_WRAP done as two C_UnwrapKey
 * steps: RSA-OAEP-SHA-1 into a session AES key, AES-KWP into the private
 * key), with the public part of an unwrapped EC key recovered from two
 * signatures. A BYOK KEK is used only once its blob opened against the
 * KEK's bind.
 * Must never: keep a plaintext private key beyond the call (every copy is
 * wiped), read a secret value out of the token, leave an intermediate
 * object (KEK handle, transfer AES key, imported key) behind.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "hsm/buf.h"
#include "hsm/hsm_int.h"

#define EC_PARAMS_MAX 16
#define EC_VALUE_MAX 66
#define RSA_PART_MAX 512
#define RSA_PARTS 8
#define P8_ATTRS (HSM_PRIV_TEMPLATE_N + RSA_PARTS)

static CK_BBOOL ck_true = CK_TRUE;
static CK_BBOOL ck_false = CK_FALSE;

/* ---- plaintext import -------------------------------------------------- */

static const struct {
	CK_ATTRIBUTE_TYPE type;
	const char *param;
} rsa_part[RSA_PARTS] = {
	{ CKA_MODULUS, OSSL_PKEY_PARAM_RSA_N },
	{ CKA_PUBLIC_EXPONENT, OSSL_PKEY_PARAM_RSA_E },
	{ CKA_PRIVATE_EXPONENT, OSSL_PKEY_PARAM_RSA_D },
	{ CKA_PRIME_1, OSSL_PKEY_PARAM_RSA_FACTOR1 },
	{ CKA_PRIME_2, OSSL_PKEY_PARAM_RSA_FACTOR2 },
	{ CKA_EXPONENT_1, OSSL_PKEY_PARAM_RSA_EXPONENT1 },
	{ CKA_EXPONENT_2, OSSL_PKEY_PARAM_RSA_EXPONENT2 },
	{ CKA_COEFFICIENT, OSSL_PKEY_PARAM_RSA_COEFFICIENT1 },
};

/* A PKCS#8 key as the template that creates it in the token. Every
 * buffer is wiped by p8_clear. */
struct p8_key {
	EVP_PKEY *pk;
	CK_ATTRIBUTE t[P8_ATTRS];
	CK_ULONG nt;
	CK_KEY_TYPE kt;
	CK_BBOOL is_rsa;
	uint8_t *part[RSA_PARTS];
	size_t part_len[RSA_PARTS];
	uint8_t params[EC_PARAMS_MAX];
	uint8_t dval[EC_VALUE_MAX];
	struct hsm_key_desc desc;
};

static int
p8_rsa(struct p8_key *k)
{
	BIGNUM *bn = NULL;
	size_t i;
	int n, rc = HSM_ERR_ARGS;

	k->desc.kty = HSM_KTY_RSA;
	k->desc.rsa_bits = (unsigned)EVP_PKEY_get_bits(k->pk);
	if (k->desc.rsa_bits != 2048 && k->desc.rsa_bits != 3072 &&
	    k->desc.rsa_bits != 4096)
		return HSM_ERR_ARGS;
	k->kt = CKK_RSA;
	k->is_rsa = CK_TRUE;
	for (i = 0; i < RSA_PARTS; i++) {
		if (!EVP_PKEY_get_bn_param(k->pk, rsa_part[i].param, &bn))
			goto out;
		n = BN_num_bytes(bn);
		if (n <= 0 || n > RSA_PART_MAX)
			goto out;
		if ((k->part[i] = malloc((size_t)n)) == NULL) {
			rc = HSM_ERR_NO_MEMORY;
			goto out;
		}
		k->part_len[i] = (size_t)BN_bn2bin(bn, k->part[i]);
		BN_clear_free(bn);
		bn = NULL;
		k->t[k->nt++] = (CK_ATTRIBUTE){ rsa_part[i].type, k->part[i],
			k->part_len[i] };
	}
	rc = 0;
out:
	BN_clear_free(bn);
	return rc;
}

static int
p8_ec(struct p8_key *k)
{
	const struct hsm_curve_info *ci;
	BIGNUM *bn = NULL;
	size_t plen = sizeof(k->params);
	char group[64];
	int rc = HSM_ERR_ARGS;

	k->desc.kty = HSM_KTY_EC;
	k->kt = CKK_EC;
	k->is_rsa = CK_FALSE;
	if (!EVP_PKEY_get_utf8_string_param(k->pk, OSSL_PKEY_PARAM_GROUP_NAME,
	        group, sizeof(group), NULL))
		return HSM_ERR_ARGS;
	k->desc.ec_nid = OBJ_sn2nid(group);
	if (k->desc.ec_nid == NID_undef)
		k->desc.ec_nid = EC_curve_nist2nid(group);
	if ((ci = hsm_curve_by_nid(k->desc.ec_nid)) == NULL ||
	    hsm_curve_der(k->desc.ec_nid, k->params, &plen) != 0)
		return HSM_ERR_ARGS;
	if (!EVP_PKEY_get_bn_param(k->pk, OSSL_PKEY_PARAM_PRIV_KEY, &bn) ||
	    BN_bn2binpad(bn, k->dval, (int)ci->field) != (int)ci->field)
		goto out;
	k->t[k->nt++] = (CK_ATTRIBUTE){ CKA_EC_PARAMS, k->params, plen };
	k->t[k->nt++] = (CK_ATTRIBUTE){ CKA_VALUE, k->dval, ci->field };
	rc = 0;
out:
	BN_clear_free(bn);
	return rc;
}

/* pkcs8 into k; HSM_ERR_ARGS for anything malformed or unsupported. */
static int
p8_parse(const uint8_t *pkcs8, size_t len, struct p8_key *k)
{
	const unsigned char *p = pkcs8;
	PKCS8_PRIV_KEY_INFO *p8;
	int rc = HSM_ERR_ARGS;

	if ((p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len)) == NULL ||
	    p != pkcs8 + len || (k->pk = EVP_PKCS82PKEY(p8)) == NULL)
		goto out;
	k->nt = hsm_priv_template(k->t, &k->kt, &k->is_rsa);
	if (EVP_PKEY_get_base_id(k->pk) == EVP_PKEY_RSA)
		rc = p8_rsa(k);
	else if (EVP_PKEY_get_base_id(k->pk) == EVP_PKEY_EC)
		rc = p8_ec(k);
out:
	PKCS8_PRIV_KEY_INFO_free(p8);
	ERR_clear_error();
	return rc;
}

static void
p8_clear(struct p8_key *k)
{
	size_t i;

	for (i = 0; i < RSA_PARTS; i++)
		freezero(k->part[i], k->part_len[i]);
	OPENSSL_cleanse(k->dval, sizeof(k->dval));
	EVP_PKEY_free(k->pk);
	memset(k, 0, sizeof(*k));
}

/* The maker of tok_key_import: the key created from its template; the
 * public part from the parsed key. */
static int
p8_create(tok_t *h, struct hsm_sess *s, const void *arg, struct hsm_key_new *nk)
{
	const struct p8_key *k = arg;
	unsigned char *der = NULL;
	int n;

	nk->desc = k->desc;
	if ((n = i2d_PUBKEY(k->pk, &der)) <= 0)
		return HSM_ERR_INTERNAL;
	nk->spki = malloc((size_t)n);
	if (nk->spki != NULL) {
		memcpy(nk->spki, der, (size_t)n);
		nk->spki_len = (size_t)n;
	}
	OPENSSL_free(der);
	if (nk->spki == NULL)
		return HSM_ERR_NO_MEMORY;
	return hsm_ck_blame(s,
	    h->f->C_CreateObject(s->h, (CK_ATTRIBUTE *)k->t, k->nt, &nk->priv),
	    HSM_ERR_ARGS);
}

int
tok_key_import(tok_t *h, const char *bind, const uint8_t *pkcs8,
    size_t pkcs8_len, struct hsm_key_desc *desc, uint8_t **blob,
    size_t *blob_len, uint8_t **spki, size_t *spki_len)
{
	struct p8_key k;
	int rc;

	if (h == NULL || pkcs8 == NULL || desc == NULL || blob == NULL ||
	    blob_len == NULL || spki == NULL || spki_len == NULL)
		return HSM_ERR_ARGS;
	*blob = NULL;
	*spki = NULL;
	memset(desc, 0, sizeof(*desc));
	if (pkcs8_len == 0 || pkcs8_len > HSM_WRAP_BUF ||
	    hsm_bind_check(bind) != 0)
		return HSM_ERR_ARGS;
	memset(&k, 0, sizeof(k));
	if ((rc = p8_parse(pkcs8, pkcs8_len, &k)) == 0)
		rc = hsm_key_new(h, bind, p8_create, &k, desc, blob, blob_len,
		    spki, spki_len);
	p8_clear(&k);
	return rc;
}

/* ---- BYOK ---------------------------------------------------------------- */

static int
target_unwrap(tok_t *h, struct hsm_sess *s, CK_OBJECT_HANDLE aes,
    CK_KEY_TYPE kt, const uint8_t *w, size_t wlen, CK_OBJECT_HANDLE *obj)
{
	CK_BBOOL is_rsa = kt == CKK_RSA ? CK_TRUE : CK_FALSE;
	CK_ATTRIBUTE t[HSM_PRIV_TEMPLATE_N];
	CK_ULONG nt = hsm_priv_template(t, &kt, &is_rsa);
	CK_MECHANISM m = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };

	return hsm_ck_blame(s,
	    h->f->C_UnwrapKey(s->h, &m, aes, (CK_BYTE *)w, wlen, t, nt, obj),
	    HSM_ERR_ARGS);
}

/* Both candidate public points for an ECDSA signature (r, s) over e. */
static int
ec_candidates(const EC_GROUP *g, const uint8_t *sig, size_t fl,
    const uint8_t *dg, size_t dlen, EC_POINT *q[2], BN_CTX *ctx)
{
	BIGNUM *r, *sv, *e, *ri, *u1, *u2;
	const BIGNUM *order = EC_GROUP_get0_order(g);
	EC_POINT *R = NULL;
	int j, rc = HSM_ERR_INTERNAL;

	BN_CTX_start(ctx);
	r = BN_CTX_get(ctx);
	sv = BN_CTX_get(ctx);
	e = BN_CTX_get(ctx);
	ri = BN_CTX_get(ctx);
	u1 = BN_CTX_get(ctx);
	u2 = BN_CTX_get(ctx);
	if (u2 == NULL || (R = EC_POINT_new(g)) == NULL)
		goto out;
	if (!BN_bin2bn(sig, (int)fl, r) || !BN_bin2bn(sig + fl, (int)fl, sv) ||
	    !BN_bin2bn(dg, (int)dlen, e))
		goto out;
	if (!BN_mod_inverse(ri, r, order, ctx) ||
	    !BN_mod_mul(u1, e, ri, order, ctx) ||
	    !BN_mod_sub(u1, order, u1, order, ctx) || /* -e/r */
	    !BN_mod_mul(u2, sv, ri, order, ctx))      /* s/r */
		goto out;
	for (j = 0; j < 2; j++) {
		if (!EC_POINT_set_compressed_coordinates(g, R, r, j, ctx) ||
		    !EC_POINT_mul(g, q[j], u1, R, u2, ctx))
			goto out;
	}
	rc = 0;
out:
	EC_POINT_free(R);
	BN_CTX_end(ctx);
	return rc;
}

/*
 * The public point of an EC private key object, whose CKA_VALUE is never
 * read: recovered from two ECDSA signatures made in the token (each gives
 * two candidates; the one both share is the key).
 */
static int
ec_public(tok_t *h, struct hsm_sess *s, CK_OBJECT_HANDLE priv, int nid,
    const uint8_t *params, size_t plen, uint8_t **spki, size_t *spki_len)
{
	CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
	uint8_t dg[2][32], sig[2][132], pt[133];
	CK_ULONG slen;
	EC_GROUP *g = NULL;
	EC_POINT *qa[2] = { NULL, NULL }, *qb[2] = { NULL, NULL };
	BN_CTX *ctx = NULL;
	const struct hsm_curve_info *ci = hsm_curve_by_nid(nid);
	size_t fl, ptlen;
	int i, j, k, found = -1, rc;

	if (ci == NULL)
		return HSM_ERR_ARGS;
	fl = ci->field;
	SHA256((const unsigned char *)"p11vault ec public 1", 20, dg[0]);
	SHA256((const unsigned char *)"p11vault ec public 2", 20, dg[1]);
	for (i = 0; i < 2; i++) {
		slen = sizeof(sig[i]);
		if ((rc = hsm_ck(s, h->f->C_SignInit(s->h, &m, priv))) != 0)
			return rc;
		if ((rc = hsm_ck(s,
		         h->f->C_Sign(s->h, dg[i], 32, sig[i], &slen))) != 0)
			return rc;
		if (slen != 2 * fl)
			return HSM_ERR_INTERNAL;
	}
	rc = HSM_ERR_INTERNAL;
	if ((g = EC_GROUP_new_by_curve_name(nid)) == NULL ||
	    (ctx = BN_CTX_new()) == NULL)
		goto out;
	for (i = 0; i < 2; i++)
		if ((qa[i] = EC_POINT_new(g)) == NULL ||
		    (qb[i] = EC_POINT_new(g)) == NULL)
			goto out;
	if (ec_candidates(g, sig[0], fl, dg[0], 32, qa, ctx) != 0 ||
	    ec_candidates(g, sig[1], fl, dg[1], 32, qb, ctx) != 0)
		goto out;
	for (j = 0; j < 2; j++)
		for (k = 0; k < 2; k++)
			if (found < 0 &&
			    EC_POINT_cmp(g, qa[j], qb[k], ctx) == 0)
				found = j;
	if (found < 0)
		goto out;
	ptlen = EC_POINT_point2oct(g, qa[found], POINT_CONVERSION_UNCOMPRESSED,
	    pt, sizeof(pt), ctx);
	if (ptlen != 2 * fl + 1)
		goto out;
	rc = hsm_ec_spki(params, plen, pt, ptlen, spki, spki_len);
out:
	for (i = 0; i < 2; i++) {
		EC_POINT_free(qa[i]);
		EC_POINT_free(qb[i]);
	}
	BN_CTX_free(ctx);
	EC_GROUP_free(g);
	ERR_clear_error();
	return rc;
}

static int
target_describe(tok_t *h, struct hsm_sess *s, CK_OBJECT_HANDLE priv,
    CK_KEY_TYPE kt, struct hsm_key_desc *d, uint8_t **spki, size_t *spki_len)
{
	CK_BYTE a[1024], b[512];
	CK_ATTRIBUTE rt[] = {
		{ CKA_MODULUS, a, sizeof(a) },
		{ CKA_PUBLIC_EXPONENT, b, sizeof(b) },
	};
	CK_ATTRIBUTE et[] = { { CKA_EC_PARAMS, b, sizeof(b) } };
	const unsigned char *p = b;
	ASN1_OBJECT *oid = NULL;
	int rc;

	if (kt == CKK_RSA) {
		if ((rc = hsm_ck(s,
		         h->f->C_GetAttributeValue(s->h, priv, rt, 2))) != 0)
			return rc;
		d->kty = HSM_KTY_RSA;
		d->rsa_bits = (unsigned)rt[0].ulValueLen * 8;
		if (rt[0].ulValueLen == 0 || a[0] < 0x80 ||
		    (d->rsa_bits != 2048 && d->rsa_bits != 3072 &&
		        d->rsa_bits != 4096))
			return HSM_ERR_ARGS;
		return hsm_rsa_spki(a, rt[0].ulValueLen, b, rt[1].ulValueLen,
		    spki, spki_len);
	}
	if ((rc = hsm_ck(s, h->f->C_GetAttributeValue(s->h, priv, et, 1))) != 0)
		return rc;
	if (d2i_ASN1_OBJECT(&oid, &p, (long)et[0].ulValueLen) == NULL) {
		ERR_clear_error();
		return HSM_ERR_ARGS;
	}
	d->kty = HSM_KTY_EC;
	d->ec_nid = OBJ_obj2nid(oid);
	ASN1_OBJECT_free(oid);
	if (hsm_curve_by_nid(d->ec_nid) == NULL)
		return HSM_ERR_ARGS;
	return ec_public(h, s, priv, d->ec_nid, b, et[0].ulValueLen, spki,
	    spki_len);
}

struct byok_arg {
	const char *kek_bind;
	struct hsm_blob_info kek; /* parsed, not opened */
	const uint8_t *transfer;
	size_t transfer_len;
};

/* Step 1: the transfer AES key, unwrapped by the KEK (whose blob must be
 * the one bound to kek_bind; a session object that unwraps and nothing
 * else). */
static int
byok_aes(tok_t *h, struct hsm_sess *s, const struct byok_arg *a,
    CK_OBJECT_HANDLE *kek, CK_OBJECT_HANDLE *aes)
{
	CK_RSA_PKCS_OAEP_PARAMS oaep = { CKM_SHA_1, CKG_MGF1_SHA1,
		CKZ_DATA_SPECIFIED, NULL, 0 };
	CK_MECHANISM mo = { CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep) };
	CK_OBJECT_CLASS scls = CKO_SECRET_KEY;
	CK_KEY_TYPE aes_kt = CKK_AES;
	CK_ATTRIBUTE at[] = {
		{ CKA_CLASS, &scls, sizeof(scls) },
		{ CKA_KEY_TYPE, &aes_kt, sizeof(aes_kt) },
		{ CKA_TOKEN, &ck_false, sizeof(ck_false) },
		{ CKA_PRIVATE, &ck_true, sizeof(ck_true) },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		{ CKA_EXTRACTABLE, &ck_false, sizeof(ck_false) },
		{ CKA_UNWRAP, &ck_true, sizeof(ck_true) },
		{ CKA_WRAP, &ck_false, sizeof(ck_false) },
		{ CKA_ENCRYPT, &ck_false, sizeof(ck_false) },
		{ CKA_DECRYPT, &ck_false, sizeof(ck_false) },
		{ CKA_DERIVE, &ck_false, sizeof(ck_false) },
	};
	CK_ULONG aes_len = 0;
	CK_ATTRIBUTE lt[] = { { CKA_VALUE_LEN, &aes_len, sizeof(aes_len) } };
	struct hsm_blob_info bi = a->kek;
	uint8_t wbuf[HSM_WRAP_BUF];
	int rc;

	if ((rc = hsm_blob_open(h, s, a->kek_bind, &bi, wbuf)) != 0)
		return rc;
	rc = hsm_domain_unwrap(h, s, &bi, 1, kek);
	OPENSSL_cleanse(wbuf, sizeof(wbuf));
	if (rc != 0)
		return rc;
	if ((rc = hsm_ck_blame(s,
	         h->f->C_UnwrapKey(s->h, &mo, *kek, (CK_BYTE *)a->transfer,
	             a->kek.size, at, sizeof(at) / sizeof(at[0]), aes),
	         HSM_ERR_ARGS)) != 0)
		return rc;
	if ((rc = hsm_ck(s, h->f->C_GetAttributeValue(s->h, *aes, lt, 1))) != 0)
		return rc;
	/* SoftHSMv2 leaves CKA_VALUE_LEN of an unwrapped key at 0 */
	return aes_len != 0 && aes_len != 32 ? HSM_ERR_ARGS : 0;
}

/* The maker of tok_key_import_byok. Step 2: the target key, unwrapped by
 * the AES key. The transfer does not say the key's type: RSA, then EC. */
static int
byok_unwrap(tok_t *h, struct hsm_sess *s, const void *arg,
    struct hsm_key_new *k)
{
	const struct byok_arg *a = arg;
	CK_OBJECT_HANDLE kek = CK_INVALID_HANDLE, aes = CK_INVALID_HANDLE;
	const uint8_t *w = a->transfer + a->kek.size;
	size_t wlen = a->transfer_len - a->kek.size;
	CK_KEY_TYPE kt = CKK_RSA;
	int rc;

	if ((rc = byok_aes(h, s, a, &kek, &aes)) != 0)
		goto out;
	rc = target_unwrap(h, s, aes, CKK_RSA, w, wlen, &k->priv);
	if (rc == HSM_ERR_ARGS) {
		kt = CKK_EC;
		rc = target_unwrap(h, s, aes, CKK_EC, w, wlen, &k->priv);
	}
	if (rc != 0)
		goto out;
	hsm_destroy(h->f, s, &aes);
	hsm_destroy(h->f, s, &kek);
	rc = target_describe(h, s, k->priv, kt, &k->desc, &k->spki,
	    &k->spki_len);
out:
	hsm_destroy(h->f, s, &aes);
	hsm_destroy(h->f, s, &kek);
	return rc;
}

int
tok_key_import_byok(tok_t *h, const char *bind, const char *kek_bind,
    const uint8_t *kek_blob, size_t kek_blob_len, const uint8_t *transfer,
    size_t transfer_len, struct hsm_key_desc *desc, uint8_t **blob,
    size_t *blob_len, uint8_t **spki, size_t *spki_len)
{
	struct byok_arg a;
	size_t mlen;
	int rc;

	if (h == NULL || kek_blob == NULL || transfer == NULL || desc == NULL ||
	    blob == NULL || blob_len == NULL || spki == NULL ||
	    spki_len == NULL)
		return HSM_ERR_ARGS;
	*blob = NULL;
	*spki = NULL;
	memset(desc, 0, sizeof(*desc));
	if (hsm_bind_check(bind) != 0 || hsm_bind_check(kek_bind) != 0)
		return HSM_ERR_ARGS;
	if ((rc = hsm_blob_parse(kek_blob, kek_blob_len, &a.kek)) != 0)
		return rc;
	if (a.kek.version != HSM_BLOB_VERSION)
		return HSM_ERR_INTERNAL; /* an unbound KEK: never used */
	if (a.kek.kty != HSM_KTY_RSA)
		return HSM_ERR_ARGS;
	mlen = a.kek.size;
	/* RSA block, then at least one KWP block pair of a real key */
	if (transfer_len < mlen + 64 || transfer_len > mlen + HSM_WRAP_BUF ||
	    (transfer_len - mlen) % 8 != 0)
		return HSM_ERR_ARGS;
	a.kek_bind = kek_bind;
	a.transfer = transfer;
	a.transfer_len = transfer_len;
	return hsm_key_new(h, bind, byok_unwrap, &a, desc, blob, blob_len, spki,
	    spki_len);
}
