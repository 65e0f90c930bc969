/*
 * keys.c — token initialisation, customer key generation, blobs, and the
 * handle cache.
 *
 * Owns: tok_token_init (domain key as SO, JWT and bind keys as user),
 * generation of key pairs inside the token and their wrapping under the
 * domain key (CKM_AES_KEY_WRAP_PAD) into versioned blobs bound to what
 * they are (a tag made in the token with the bind key over the caller's
 * bind and the blob), the one-way upgrade of unbound (version 1) blobs,
 * unwrapping verified blobs into non-extractable session objects, and the
 * bounded LRU cache of those handles (refcounted: an evicted handle is
 * destroyed by its last user).
 * Must never: read a private or secret key's value out of the token; keep
 * a generated private key as anything but a short-lived session object;
 * unwrap a blob for use before its tag verified against the bind it is
 * used under; re-bind a bound blob.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "hsm/hsm_int.h"

#define HSM_CACHE_DEFAULT 4096
#define HSM_CACHE_MAX (1024 * 1024)
#define HSM_EC_PARAMS_MAX 16

static CK_BBOOL ck_true = CK_TRUE;
static CK_BBOOL ck_false = CK_FALSE;
static CK_OBJECT_CLASS tmpl_priv_cls = CKO_PRIVATE_KEY;

/* ---- curves and public keys ---- */

int
hsm_curve_code(int nid, unsigned *code, size_t *size)
{
	switch (nid) {
	case NID_X9_62_prime256v1: *code = HSM_CURVE_P256; *size = 32; return 0;
	case NID_secp384r1: *code = HSM_CURVE_P384; *size = 48; return 0;
	case NID_secp521r1: *code = HSM_CURVE_P521; *size = 66; return 0;
	default: return HSM_ERR_ARGS;
	}
}

static int
curve_to_nid(unsigned code)
{
	switch (code) {
	case HSM_CURVE_P256: return NID_X9_62_prime256v1;
	case HSM_CURVE_P384: return NID_secp384r1;
	case HSM_CURVE_P521: return NID_secp521r1;
	default: return NID_undef;
	}
}

/* DER of the curve's OID, as CKA_EC_PARAMS wants it. */
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

static int
pkey_to_spki(EVP_PKEY *pk, uint8_t **spki, size_t *len)
{
	unsigned char *der = NULL;
	int n = i2d_PUBKEY(pk, &der);

	if (n <= 0)
		return HSM_ERR_INTERNAL;
	/* hand back plain malloc'd memory: the caller frees with free() */
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
hsm_ec_spki(const CK_BYTE *params, size_t params_len, const CK_BYTE *point,
    size_t point_len, uint8_t **spki, size_t *len)
{
	const unsigned char *p = params;
	ASN1_OBJECT *oid = NULL;
	ASN1_OCTET_STRING *os = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pk = NULL;
	const unsigned char *pt = point;
	size_t pt_len = point_len, field;
	unsigned code;
	int nid, rc = HSM_ERR_INTERNAL;

	*spki = NULL;
	if (d2i_ASN1_OBJECT(&oid, &p, (long)params_len) == NULL ||
	    p != params + params_len)
		goto out;
	nid = OBJ_obj2nid(oid);
	if (hsm_curve_code(nid, &code, &field) != 0)
		goto out;
	/* PKCS#11 says CKA_EC_POINT is a DER OCTET STRING; some modules give
	 * the raw point. Accept both, insisting on an uncompressed point. */
	p = point;
	if (d2i_ASN1_OCTET_STRING(&os, &p, (long)point_len) != NULL &&
	    p == point + point_len &&
	    (size_t)ASN1_STRING_length(os) == 2 * field + 1) {
		pt = ASN1_STRING_get0_data(os);
		pt_len = (size_t)ASN1_STRING_length(os);
	}
	if (pt_len != 2 * field + 1 || pt[0] != 0x04)
		goto out;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
	    OBJ_nid2sn(nid), 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
	    pt, pt_len))
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

int
hsm_rsa_spki(const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len,
    uint8_t **spki, size_t *len)
{
	OSSL_PARAM_BLD *bld = NULL;
	BIGNUM *bn = NULL, *be = NULL;
	EVP_PKEY *pk = NULL;
	int rc = HSM_ERR_INTERNAL;

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

/* ---- blobs ---- */

int
hsm_blob_parse(const uint8_t *blob, size_t len, struct hsm_blob_info *bi)
{
	unsigned param;
	size_t tag_len;

	memset(bi, 0, sizeof(*bi));
	if (blob == NULL || len < HSM_BLOB_HDR || len > HSM_BLOB_MAX)
		return HSM_ERR_INTERNAL;
	if (memcmp(blob, HSM_BLOB_MAGIC, 4) != 0)
		return HSM_ERR_INTERNAL;
	if (blob[4] == HSM_BLOB_VERSION)
		tag_len = HSM_BLOB_IV + HSM_BLOB_GCM_TAG;
	else if (blob[4] == HSM_BLOB_BOUND)
		tag_len = HSM_BLOB_TAG;
	else if (blob[4] == HSM_BLOB_LEGACY)
		tag_len = 0;
	else
		return HSM_ERR_INTERNAL;
	if (len < HSM_BLOB_HDR + 16 + tag_len)
		return HSM_ERR_INTERNAL;
	param = (unsigned)blob[6] << 8 | blob[7];
	switch (blob[5]) {
	case HSM_KTY_RSA:
		if (param != 2048 && param != 3072 && param != 4096)
			return HSM_ERR_INTERNAL;
		bi->kty = HSM_KTY_RSA;
		bi->size = param / 8;
		break;
	case HSM_KTY_EC:
		if (curve_to_nid(param) == NID_undef)
			return HSM_ERR_INTERNAL;
		bi->kty = HSM_KTY_EC;
		bi->size = param == HSM_CURVE_P256 ? 32 :
		    param == HSM_CURVE_P384 ? 48 : 66;
		break;
	default:
		return HSM_ERR_INTERNAL;
	}
	bi->version = blob[4];
	bi->param = param;
	bi->hdr = blob;
	if (bi->version == HSM_BLOB_VERSION) {
		bi->iv = blob + HSM_BLOB_HDR;
		bi->ct = bi->iv + HSM_BLOB_IV;
		bi->ct_len = len - HSM_BLOB_HDR - tag_len;
		if (bi->ct_len % 8 != 0 || bi->ct_len > HSM_WRAP_BUF)
			return HSM_ERR_INTERNAL;
		return 0;
	}
	bi->wrapped = blob + HSM_BLOB_HDR;
	bi->wrapped_len = len - HSM_BLOB_HDR - tag_len;
	bi->tag = tag_len != 0 ? blob + len - tag_len : NULL;
	if (bi->wrapped_len % 8 != 0)
		return HSM_ERR_INTERNAL;
	return 0;
}

int
hsm_blob_is_legacy(const uint8_t *blob, size_t blob_len)
{
	struct hsm_blob_info bi;

	return hsm_blob_parse(blob, blob_len, &bi) == 0 &&
	    bi.version != HSM_BLOB_VERSION;
}

int
hsm_blob_is_unbound(const uint8_t *blob, size_t blob_len)
{
	struct hsm_blob_info bi;

	return hsm_blob_parse(blob, blob_len, &bi) == 0 &&
	    bi.version == HSM_BLOB_LEGACY;
}

int
hsm_bind_check(const char *bind)
{
	size_t n;

	if (bind == NULL || (n = strnlen(bind, HSM_BIND_MAX + 1)) == 0 ||
	    n > HSM_BIND_MAX)
		return HSM_ERR_ARGS;
	return 0;
}

static uint8_t *
lp_put(uint8_t *p, const void *data, size_t len)
{
	p[0] = (uint8_t)(len >> 24);
	p[1] = (uint8_t)(len >> 16);
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
	memcpy(p + 4, data, len);
	return p + 4 + len;
}

/*
 * The tag of (bind, header, wrapped): HMAC-SHA-256 with the bind key, in
 * the token, over the length-prefixed encoding of hsm_int.h. Every part
 * is length-prefixed, so no two (bind, blob) pairs encode alike.
 */
static int
blob_mac(tok_t *h, struct hsm_sess *s, const char *bind, const uint8_t *hdr,
    const uint8_t *wrapped, size_t wrapped_len, uint8_t tag[HSM_BLOB_TAG])
{
	CK_MECHANISM m = { CKM_SHA256_HMAC, NULL, 0 };
	size_t bind_len = strlen(bind), dlen = sizeof(HSM_BIND_DOMAIN) - 1;
	size_t len = 16 + dlen + bind_len + HSM_BLOB_HDR + wrapped_len;
	CK_ULONG tlen = HSM_BLOB_TAG;
	uint8_t *msg, *p;
	int rc;

	if (wrapped_len > HSM_BLOB_MAX || bind_len > HSM_BIND_MAX)
		return HSM_ERR_INTERNAL;
	if ((msg = malloc(len)) == NULL)
		return HSM_ERR_NO_MEMORY;
	p = lp_put(msg, HSM_BIND_DOMAIN, dlen);
	p = lp_put(p, bind, bind_len);
	p = lp_put(p, hdr, HSM_BLOB_HDR);
	(void)lp_put(p, wrapped, wrapped_len);
	rc = hsm_ck(s, h->f->C_SignInit(s->h, &m, s->bind_key));
	if (rc == 0)
		rc = hsm_ck(s, h->f->C_Sign(s->h, msg, len, tag, &tlen));
	if (rc == 0 && tlen != HSM_BLOB_TAG)
		rc = HSM_ERR_INTERNAL;
	free(msg);
	return rc;
}

/*
 * The tag is recomputed in the token and compared here with CRYPTO_memcmp:
 * SoftHSMv2's C_Verify of an HMAC compares with memcmp, which is not
 * constant time.
 */
/* One line for the custodian: the store holds a blob that is not the one
 * made for this key version (moved, altered, or unbound). The bind (a key
 * name and a version id) is not secret; printed only if it is plain. */
static void
log_unbound(const char *bind)
{
	size_t i;

	for (i = 0; bind[i] != '\0'; i++)
		if (!((bind[i] >= 'a' && bind[i] <= 'z') ||
		    (bind[i] >= '0' && bind[i] <= '9') || bind[i] == '-' ||
		    bind[i] == '/' || bind[i] == '_'))
			break;
	fprintf(stderr, "{\"level\":\"error\",\"event\":"
	    "\"blob_binding_failed\",\"key\":\"%s\",\"msg\":\"the stored "
	    "blob of this key version was not made for it; refused\"}\n",
	    bind[i] == '\0' ? bind : "?");
}

int
hsm_blob_verify(tok_t *h, struct hsm_sess *s, const char *bind,
    const struct hsm_blob_info *bi)
{
	uint8_t tag[HSM_BLOB_TAG];
	int rc;

	if (hsm_bind_check(bind) != 0)
		return HSM_ERR_INTERNAL;
	if (bi->version != HSM_BLOB_BOUND || bi->tag == NULL) {
		log_unbound(bind);
		return HSM_ERR_INTERNAL;
	}
	if ((rc = blob_mac(h, s, bind, bi->hdr, bi->wrapped, bi->wrapped_len,
	    tag)) != 0)
		return rc;
	rc = CRYPTO_memcmp(tag, bi->tag, HSM_BLOB_TAG) == 0 ? 0 :
	    HSM_ERR_INTERNAL;
	OPENSSL_cleanse(tag, sizeof(tag));
	if (rc != 0)
		log_unbound(bind);
	return rc;
}

/* The AAD of a version-3 blob: lp(HSM_SEAL_DOMAIN) | lp(bind) | lp(hdr).
 * *len is its length; malloc'd. */
static uint8_t *
seal_aad(const char *bind, const uint8_t *hdr, size_t *len)
{
	size_t bind_len = strlen(bind), dlen = sizeof(HSM_SEAL_DOMAIN) - 1;
	uint8_t *aad, *p;

	*len = 12 + dlen + bind_len + HSM_BLOB_HDR;
	if ((aad = malloc(*len)) == NULL)
		return NULL;
	p = lp_put(aad, HSM_SEAL_DOMAIN, dlen);
	p = lp_put(p, bind, bind_len);
	(void)lp_put(p, hdr, HSM_BLOB_HDR);
	return aad;
}

static void
seal_params(CK_GCM_PARAMS *gp, const uint8_t *iv, uint8_t *aad,
    size_t aad_len)
{
	memset(gp, 0, sizeof(*gp));
	gp->pIv = (CK_BYTE *)iv;
	gp->ulIvLen = HSM_BLOB_IV;
	gp->ulIvBits = HSM_BLOB_IV * 8;
	gp->pAAD = aad;
	gp->ulAADLen = aad_len;
	gp->ulTagBits = HSM_BLOB_GCM_TAG * 8;
}

int
hsm_blob_open(tok_t *h, struct hsm_sess *s, const char *bind,
    struct hsm_blob_info *bi, uint8_t *buf)
{
	CK_GCM_PARAMS gp;
	CK_MECHANISM m = { CKM_AES_GCM, &gp, sizeof(gp) };
	CK_ULONG plen = HSM_WRAP_BUF;
	uint8_t *aad;
	size_t aad_len;
	CK_RV rv;
	int rc;

	if (hsm_bind_check(bind) != 0)
		return HSM_ERR_INTERNAL;
	if (bi->version != HSM_BLOB_VERSION || bi->ct == NULL) {
		log_unbound(bind);
		return HSM_ERR_INTERNAL;
	}
	if ((aad = seal_aad(bind, bi->hdr, &aad_len)) == NULL)
		return HSM_ERR_NO_MEMORY;
	seal_params(&gp, bi->iv, aad, aad_len);
	if ((rc = hsm_ck(s, h->f->C_DecryptInit(s->h, &m, s->seal_key))) ==
	    0) {
		/* the ciphertext and its tag, as PKCS#11 GCM takes them */
		rv = h->f->C_Decrypt(s->h, (CK_BYTE *)bi->ct,
		    bi->ct_len + HSM_BLOB_GCM_TAG, buf, &plen);
		if (hsm_rv_lost(rv) || rv == CKR_HOST_MEMORY ||
		    rv == CKR_DEVICE_MEMORY)
			rc = hsm_ck(s, rv);
		else if (rv != CKR_OK || plen != bi->ct_len)
			rc = HSM_ERR_INTERNAL;
	}
	free(aad);
	if (rc == HSM_ERR_INTERNAL)
		log_unbound(bind);
	if (rc != 0) {
		OPENSSL_cleanse(buf, HSM_WRAP_BUF);
		return rc;
	}
	bi->wrapped = buf;
	bi->wrapped_len = plen;
	return 0;
}

int
hsm_blob_build(tok_t *h, struct hsm_sess *s, const char *bind,
    enum hsm_kty kty, unsigned param, const uint8_t *wrapped,
    size_t wrapped_len, uint8_t **blob, size_t *blob_len)
{
	CK_GCM_PARAMS gp;
	CK_MECHANISM m = { CKM_AES_GCM, &gp, sizeof(gp) };
	CK_ULONG clen;
	uint8_t *b, *aad = NULL;
	size_t len, aad_len;
	int rc;

	*blob = NULL;
	if (hsm_bind_check(bind) != 0)
		return HSM_ERR_ARGS;
	if (wrapped_len > HSM_WRAP_BUF)
		return HSM_ERR_INTERNAL;
	len = HSM_BLOB_HDR + HSM_BLOB_IV + wrapped_len + HSM_BLOB_GCM_TAG;
	if ((b = malloc(len)) == NULL)
		return HSM_ERR_NO_MEMORY;
	memcpy(b, HSM_BLOB_MAGIC, 4);
	b[4] = HSM_BLOB_VERSION;
	b[5] = (uint8_t)kty;
	b[6] = (uint8_t)(param >> 8);
	b[7] = (uint8_t)param;
	if (RAND_bytes(b + HSM_BLOB_HDR, HSM_BLOB_IV) != 1) {
		rc = HSM_ERR_INTERNAL;
		goto out;
	}
	if ((aad = seal_aad(bind, b, &aad_len)) == NULL) {
		rc = HSM_ERR_NO_MEMORY;
		goto out;
	}
	seal_params(&gp, b + HSM_BLOB_HDR, aad, aad_len);
	clen = wrapped_len + HSM_BLOB_GCM_TAG;
	if ((rc = hsm_ck(s, h->f->C_EncryptInit(s->h, &m, s->seal_key))) ==
	    0)
		rc = hsm_ck(s, h->f->C_Encrypt(s->h, (CK_BYTE *)wrapped,
		    wrapped_len, b + HSM_BLOB_HDR + HSM_BLOB_IV, &clen));
	if (rc == 0 && clen != wrapped_len + HSM_BLOB_GCM_TAG)
		rc = HSM_ERR_INTERNAL;
out:
	free(aad);
	if (rc != 0) {
		free(b);
		return rc;
	}
	*blob = b;
	*blob_len = len;
	return 0;
}

/* ---- token initialisation ---- */

static int
init_rv(CK_RV rv)
{
	if (rv == CKR_OK)
		return 0;
	if (rv == CKR_HOST_MEMORY)
		return HSM_ERR_NO_MEMORY;
	if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE ||
	    rv == CKR_PIN_INVALID || rv == CKR_ARGUMENTS_BAD)
		return HSM_ERR_ARGS;
	return HSM_ERR_UNAVAILABLE;
}

static int
make_domain_key(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ULONG vlen = 32;
	CK_OBJECT_CLASS priv_cls = CKO_PRIVATE_KEY;
	/* Whatever is unwrapped with the domain key stays a sensitive,
	 * non-extractable private key, whoever asks. Without this anyone
	 * holding the user PIN could unwrap a blob into an extractable
	 * object and read the key out (tests/unit/test_hsm.c shows it). */
	CK_ATTRIBUTE unwrap_tmpl[] = {
		{ CKA_CLASS, &priv_cls, sizeof(priv_cls) },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		{ CKA_EXTRACTABLE, &ck_false, sizeof(ck_false) },
		{ CKA_DERIVE, &ck_false, sizeof(ck_false) },
	};
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
		{ CKA_LABEL, HSM_DOMAIN_LABEL, sizeof(HSM_DOMAIN_LABEL) - 1 },
		{ CKA_TOKEN, &ck_true, sizeof(ck_true) },
		{ CKA_PRIVATE, &ck_false, sizeof(ck_false) },
		{ CKA_TRUSTED, &ck_true, sizeof(ck_true) },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		{ CKA_EXTRACTABLE, &ck_false, sizeof(ck_false) },
		{ CKA_MODIFIABLE, &ck_false, sizeof(ck_false) },
		{ CKA_WRAP, &ck_true, sizeof(ck_true) },
		{ CKA_UNWRAP, &ck_true, sizeof(ck_true) },
		{ CKA_ENCRYPT, &ck_false, sizeof(ck_false) },
		{ CKA_DECRYPT, &ck_false, sizeof(ck_false) },
		{ CKA_SIGN, &ck_false, sizeof(ck_false) },
		{ CKA_VERIFY, &ck_false, sizeof(ck_false) },
		{ CKA_DERIVE, &ck_false, sizeof(ck_false) },
		{ CKA_UNWRAP_TEMPLATE, unwrap_tmpl, sizeof(unwrap_tmpl) },
	};
	CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_OBJECT_HANDLE k;

	return init_rv(f->C_GenerateKey(s, &m, t, sizeof(t) / sizeof(t[0]),
	    &k));
}

static int
make_jwt_key(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s)
{
	uint8_t params[HSM_EC_PARAMS_MAX];
	size_t plen = sizeof(params);
	CK_ATTRIBUTE pub[] = {
		{ CKA_TOKEN, &ck_true, sizeof(ck_true) },
		{ CKA_PRIVATE, &ck_false, sizeof(ck_false) },
		{ CKA_LABEL, HSM_JWT_LABEL, sizeof(HSM_JWT_LABEL) - 1 },
		{ CKA_EC_PARAMS, params, 0 },
		{ CKA_VERIFY, &ck_true, sizeof(ck_true) },
	};
	CK_ATTRIBUTE priv[] = {
		{ CKA_TOKEN, &ck_true, sizeof(ck_true) },
		{ CKA_PRIVATE, &ck_true, sizeof(ck_true) },
		{ CKA_LABEL, HSM_JWT_LABEL, sizeof(HSM_JWT_LABEL) - 1 },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		{ CKA_EXTRACTABLE, &ck_false, sizeof(ck_false) },
		{ CKA_SIGN, &ck_true, sizeof(ck_true) },
		{ CKA_DECRYPT, &ck_false, sizeof(ck_false) },
		{ CKA_DERIVE, &ck_false, sizeof(ck_false) },
		{ CKA_UNWRAP, &ck_false, sizeof(ck_false) },
	};
	CK_MECHANISM m = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_OBJECT_HANDLE hpub, hpriv;
	int rc;

	if ((rc = hsm_curve_der(NID_X9_62_prime256v1, params, &plen)) != 0)
		return rc;
	pub[3].ulValueLen = plen;
	return init_rv(f->C_GenerateKeyPair(s, &m, pub,
	    sizeof(pub) / sizeof(pub[0]), priv, sizeof(priv) / sizeof(priv[0]),
	    &hpub, &hpriv));
}

/*
 * The bind key: the HMAC key of blob tags. Sign and verify only; it
 * leaves the token only wrapped by a trusted key (for a later clustering
 * ceremony), never in plaintext. Made in a R/W session logged in as user.
 */
static int
make_bind_key(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *k)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
	CK_ULONG vlen = 32;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
		{ CKA_LABEL, HSM_BIND_LABEL, sizeof(HSM_BIND_LABEL) - 1 },
		{ CKA_TOKEN, &ck_true, sizeof(ck_true) },
		{ CKA_PRIVATE, &ck_true, sizeof(ck_true) },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		{ CKA_EXTRACTABLE, &ck_true, sizeof(ck_true) },
		{ CKA_WRAP_WITH_TRUSTED, &ck_true, sizeof(ck_true) },
		{ CKA_MODIFIABLE, &ck_false, sizeof(ck_false) },
		{ CKA_SIGN, &ck_true, sizeof(ck_true) },
		{ CKA_VERIFY, &ck_true, sizeof(ck_true) },
		{ CKA_ENCRYPT, &ck_false, sizeof(ck_false) },
		{ CKA_DECRYPT, &ck_false, sizeof(ck_false) },
		{ CKA_WRAP, &ck_false, sizeof(ck_false) },
		{ CKA_UNWRAP, &ck_false, sizeof(ck_false) },
		{ CKA_DERIVE, &ck_false, sizeof(ck_false) },
	};
	CK_MECHANISM m = { CKM_GENERIC_SECRET_KEY_GEN, NULL, 0 };

	return init_rv(f->C_GenerateKey(s, &m, t, sizeof(t) / sizeof(t[0]),
	    k));
}

/*
 * A token-resident AES-256 key for AES-GCM, labelled label: a private
 * token object (SoftHSMv2 stores it encrypted under a key derived from
 * the user PIN), sensitive, never extractable, encrypt and decrypt only.
 * The seal key of version-3 blobs and the backup key (import.c). s: a
 * R/W session logged in as user.
 */
CK_RV
hsm_gen_aes_key(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, const char *label,
    CK_OBJECT_HANDLE *k)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ULONG vlen = 32;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_TOKEN, &ck_true, sizeof(ck_true) },
		{ CKA_PRIVATE, &ck_true, sizeof(ck_true) },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		{ CKA_EXTRACTABLE, &ck_false, sizeof(ck_false) },
		{ CKA_MODIFIABLE, &ck_false, sizeof(ck_false) },
		{ CKA_ENCRYPT, &ck_true, sizeof(ck_true) },
		{ CKA_DECRYPT, &ck_true, sizeof(ck_true) },
		{ CKA_SIGN, &ck_false, sizeof(ck_false) },
		{ CKA_VERIFY, &ck_false, sizeof(ck_false) },
		{ CKA_WRAP, &ck_false, sizeof(ck_false) },
		{ CKA_UNWRAP, &ck_false, sizeof(ck_false) },
		{ CKA_DERIVE, &ck_false, sizeof(ck_false) },
	};
	CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };

	return f->C_GenerateKey(s, &m, t, sizeof(t) / sizeof(t[0]), k);
}

static int
make_seal_key(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *k)
{
	return init_rv(hsm_gen_aes_key(f, s, HSM_SEAL_LABEL, k));
}

/* How many keys labelled label s sees (0, 1 or 2: two is already too
 * many). */
static int
role_key_count(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, const char *label,
    CK_OBJECT_HANDLE *key, CK_ULONG *n)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};
	CK_OBJECT_HANDLE found[2];
	CK_RV rv;

	*n = 0;
	if ((rv = f->C_FindObjectsInit(s, t, 2)) != CKR_OK)
		return init_rv(rv);
	rv = f->C_FindObjects(s, found, 2, n);
	(void)f->C_FindObjectsFinal(s);
	if (rv != CKR_OK)
		return init_rv(rv);
	if (*n == 1)
		*key = found[0];
	return 0;
}

int
hsm_role_key_find(CK_FUNCTION_LIST *f, CK_SLOT_ID slot, CK_SESSION_HANDLE s,
    const char *label, int create, CK_OBJECT_HANDLE *key)
{
	CK_SESSION_HANDLE rw = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE k;
	CK_ULONG n;
	int rc;

	if ((rc = role_key_count(f, s, label, key, &n)) != 0)
		return rc;
	if (n == 1)
		return 0;
	if (n > 1)
		return HSM_ERR_INTERNAL;   /* two keys claim one role */
	if (!create)
		return HSM_ERR_UNAVAILABLE;
	/* A token from before the role: it gets its key now. The pool's
	 * sessions are read-only; the login is shared. */
	if ((rc = init_rv(f->C_OpenSession(slot, CKF_SERIAL_SESSION |
	    CKF_RW_SESSION, NULL, NULL, &rw))) != 0)
		return rc;
	rc = strcmp(label, HSM_SEAL_LABEL) == 0 ? make_seal_key(f, rw, &k) :
	    make_bind_key(f, rw, &k);
	(void)f->C_CloseSession(rw);
	if (rc != 0)
		return rc;
	if ((rc = role_key_count(f, s, label, key, &n)) != 0)
		return rc;
	return n == 1 ? 0 : HSM_ERR_INTERNAL;
}

int
tok_token_init(const char *module_path, const char *token_label,
    const char *so_pin, const char *user_pin)
{
	CK_FUNCTION_LIST *f = NULL;
	CK_SLOT_ID *slots = NULL, slot = 0;
	CK_ULONG n = 0, i;
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE bind_key;
	unsigned char label[32];
	void *dl = NULL;
	int owns = 0, found = 0, logged = 0, rc;

	if (module_path == NULL || token_label == NULL || so_pin == NULL ||
	    user_pin == NULL || *token_label == '\0' ||
	    strlen(token_label) > 32 || *so_pin == '\0' || *user_pin == '\0')
		return HSM_ERR_ARGS;
	if ((rc = hsm_load(module_path, &dl, &f, &owns)) != 0)
		return rc;
	if (hsm_find_slot(f, token_label, &slot) == 0) {
		rc = HSM_ERR_EXISTS;
		goto out;
	}
	rc = HSM_ERR_UNAVAILABLE;
	if (f->C_GetSlotList(CK_TRUE, NULL, &n) != CKR_OK || n == 0)
		goto out;
	if ((slots = calloc(n, sizeof(*slots))) == NULL) {
		rc = HSM_ERR_NO_MEMORY;
		goto out;
	}
	if (f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
		goto out;
	for (i = 0; i < n && !found; i++) {
		if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    !(ti.flags & CKF_TOKEN_INITIALIZED)) {
			slot = slots[i];
			found = 1;
		}
	}
	if (!found)
		goto out;
	hsm_pad_label(token_label, label);
	if ((rc = init_rv(f->C_InitToken(slot, (CK_UTF8CHAR *)so_pin,
	    strlen(so_pin), label))) != 0)
		goto out;
	/* some modules (SoftHSMv2) move an initialised token to a new slot */
	if ((rc = hsm_find_slot(f, token_label, &slot)) != 0)
		goto out;
	if ((rc = init_rv(f->C_OpenSession(slot,
	    CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s))) != 0)
		goto out;
	if ((rc = init_rv(f->C_Login(s, CKU_SO, (CK_UTF8CHAR *)so_pin,
	    strlen(so_pin)))) != 0)
		goto out;
	logged = 1;
	if ((rc = init_rv(f->C_InitPIN(s, (CK_UTF8CHAR *)user_pin,
	    strlen(user_pin)))) != 0)
		goto out;
	/* CKA_TRUSTED can only be set by the SO, on a public object */
	if ((rc = make_domain_key(f, s)) != 0)
		goto out;
	(void)f->C_Logout(s);
	logged = 0;
	if ((rc = init_rv(f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)user_pin,
	    strlen(user_pin)))) != 0)
		goto out;
	logged = 1;
	if ((rc = make_jwt_key(f, s)) != 0)
		goto out;
	if ((rc = make_bind_key(f, s, &bind_key)) != 0 ||
	    (rc = make_seal_key(f, s, &bind_key)) != 0)
		goto out;
	rc = 0;
out:
	if (logged)
		(void)f->C_Logout(s);
	if (s != CK_INVALID_HANDLE)
		(void)f->C_CloseSession(s);
	free(slots);
	hsm_unload(dl, f, owns);
	return rc;
}

/* One PIN, old to new, in R/W session s. A PIN that is already new
 * (the old one refused, the new one taken) counts as changed. */
static int
change_pin(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_USER_TYPE who,
    const char *old, const char *new_pin)
{
	CK_RV rv;

	rv = f->C_Login(s, who, (CK_UTF8CHAR *)old, strlen(old));
	if (rv == CKR_PIN_INCORRECT) {
		rv = f->C_Login(s, who, (CK_UTF8CHAR *)new_pin,
		    strlen(new_pin));
		if (rv == CKR_OK)
			(void)f->C_Logout(s);
		return rv == CKR_OK ? 0 : HSM_ERR_ARGS;
	}
	if (rv != CKR_OK)
		return init_rv(rv);
	rv = f->C_SetPIN(s, (CK_UTF8CHAR *)old, strlen(old),
	    (CK_UTF8CHAR *)new_pin, strlen(new_pin));
	(void)f->C_Logout(s);
	return init_rv(rv);
}

int
tok_change_pins(const char *module_path, const char *token_label,
    const char *old_user, const char *new_user, const char *old_so,
    const char *new_so)
{
	CK_FUNCTION_LIST *f = NULL;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_SLOT_ID slot;
	void *dl = NULL;
	int owns = 0, rc;

	if ((rc = hsm_load(module_path, &dl, &f, &owns)) != 0)
		return rc;
	if ((rc = hsm_find_slot(f, token_label, &slot)) != 0)
		goto out;
	if ((rc = init_rv(f->C_OpenSession(slot,
	    CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s))) != 0)
		goto out;
	if ((rc = change_pin(f, s, CKU_SO, old_so, new_so)) != 0)
		goto out;
	rc = change_pin(f, s, CKU_USER, old_user, new_user);
out:
	if (s != CK_INVALID_HANDLE)
		(void)f->C_CloseSession(s);
	hsm_unload(dl, f, owns);
	return rc;
}

/* ---- generation ---- */

static int
gen_pair(tok_t *h, struct hsm_sess *s, enum hsm_kty kty, unsigned bits,
    const uint8_t *params, size_t plen, CK_OBJECT_HANDLE *pub,
    CK_OBJECT_HANDLE *priv)
{
	CK_ULONG mbits = bits;
	CK_BYTE e[] = { 0x01, 0x00, 0x01 };
	CK_BBOOL is_rsa = kty == HSM_KTY_RSA ? CK_TRUE : CK_FALSE;
	CK_ATTRIBUTE rpub[] = {
		{ CKA_TOKEN, &ck_false, sizeof(ck_false) },
		{ CKA_MODULUS_BITS, &mbits, sizeof(mbits) },
		{ CKA_PUBLIC_EXPONENT, e, sizeof(e) },
		{ CKA_ENCRYPT, &ck_true, sizeof(ck_true) },
		{ CKA_VERIFY, &ck_true, sizeof(ck_true) },
	};
	CK_ATTRIBUTE epub[] = {
		{ CKA_TOKEN, &ck_false, sizeof(ck_false) },
		{ CKA_EC_PARAMS, (void *)params, plen },
		{ CKA_VERIFY, &ck_true, sizeof(ck_true) },
	};
	CK_ATTRIBUTE tpriv[] = {
		{ CKA_TOKEN, &ck_false, sizeof(ck_false) },
		{ CKA_PRIVATE, &ck_true, sizeof(ck_true) },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		{ CKA_EXTRACTABLE, &ck_true, sizeof(ck_true) },
		{ CKA_WRAP_WITH_TRUSTED, &ck_true, sizeof(ck_true) },
		{ CKA_SIGN, &ck_true, sizeof(ck_true) },
		{ CKA_DECRYPT, &is_rsa, sizeof(is_rsa) },
	};
	CK_MECHANISM mr = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
	CK_MECHANISM me = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_RV rv;

	if (kty == HSM_KTY_RSA)
		rv = h->f->C_GenerateKeyPair(s->h, &mr, rpub, 5, tpriv, 7, pub,
		    priv);
	else
		rv = h->f->C_GenerateKeyPair(s->h, &me, epub, 3, tpriv, 7, pub,
		    priv);
	return hsm_ck(s, rv);
}

static int
pub_to_spki(tok_t *h, struct hsm_sess *s, enum hsm_kty kty,
    CK_OBJECT_HANDLE pub, uint8_t **spki, size_t *spki_len)
{
	CK_BYTE a[1024], b[512];
	CK_ATTRIBUTE rt[] = {
		{ CKA_MODULUS, a, sizeof(a) },
		{ CKA_PUBLIC_EXPONENT, b, sizeof(b) },
	};
	CK_ATTRIBUTE et[] = {
		{ CKA_EC_PARAMS, b, sizeof(b) },
		{ CKA_EC_POINT, a, sizeof(a) },
	};
	CK_ATTRIBUTE *t = kty == HSM_KTY_RSA ? rt : et;
	int rc;

	if ((rc = hsm_ck(s, h->f->C_GetAttributeValue(s->h, pub, t, 2))) != 0)
		return rc;
	if (kty == HSM_KTY_RSA)
		return hsm_rsa_spki(a, rt[0].ulValueLen, b, rt[1].ulValueLen, spki,
		    spki_len);
	return hsm_ec_spki(b, et[0].ulValueLen, a, et[1].ulValueLen, spki,
	    spki_len);
}

int
tok_key_generate(tok_t *h, const char *bind, enum hsm_kty kty,
    unsigned rsa_bits, int ec_nid, uint8_t **blob, size_t *blob_len,
    uint8_t **spki, size_t *spki_len)
{
	struct hsm_sess s;
	CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
	uint8_t params[HSM_EC_PARAMS_MAX];
	size_t plen = sizeof(params), field;
	unsigned param;
	int have_sess = 0, rc;

	if (h == NULL || blob == NULL || blob_len == NULL || spki == NULL ||
	    spki_len == NULL)
		return HSM_ERR_ARGS;
	*blob = NULL;
	*spki = NULL;
	if (hsm_bind_check(bind) != 0)
		return HSM_ERR_ARGS;
	if (kty == HSM_KTY_RSA) {
		if (rsa_bits != 2048 && rsa_bits != 3072 && rsa_bits != 4096)
			return HSM_ERR_ARGS;
		param = rsa_bits;
	} else if (kty == HSM_KTY_EC) {
		if (hsm_curve_code(ec_nid, &param, &field) != 0)
			return HSM_ERR_ARGS;
		if ((rc = hsm_curve_der(ec_nid, params, &plen)) != 0)
			return rc;
	} else {
		return HSM_ERR_ARGS;
	}
	if ((rc = hsm_sess_take(h, &s)) != 0)
		goto out;
	have_sess = 1;
	if ((rc = gen_pair(h, &s, kty, rsa_bits, params, plen, &pub,
	    &priv)) != 0)
		goto out;
	if ((rc = pub_to_spki(h, &s, kty, pub, spki, spki_len)) != 0)
		goto out;
	rc = hsm_domain_wrap(h, &s, priv, bind, kty, param, blob, blob_len);
out:
	if (have_sess) {
		if (priv != CK_INVALID_HANDLE)
			(void)hsm_ck(&s, h->f->C_DestroyObject(s.h, priv));
		if (pub != CK_INVALID_HANDLE)
			(void)hsm_ck(&s, h->f->C_DestroyObject(s.h, pub));
		hsm_sess_give(h, &s);
	}
	if (rc != 0) {
		free(*spki);
		*spki = NULL;
		free(*blob);
		*blob = NULL;
	}
	return rc;
}

/* ---- the handle cache ---- */

static uint64_t
id_hash(const char *id)
{
	uint64_t x = 0xcbf29ce484222325ULL;

	for (; *id != '\0'; id++) {
		x ^= (unsigned char)*id;
		x *= 0x100000001b3ULL;
	}
	return x;
}

int
hsm_cache_init(tok_t *h, size_t cache_size)
{
	size_t nb = 16;

	if (cache_size == 0)
		cache_size = HSM_CACHE_DEFAULT;
	if (cache_size > HSM_CACHE_MAX)
		return HSM_ERR_ARGS;
	while (nb < cache_size * 2)
		nb *= 2;
	if ((h->buckets = calloc(nb, sizeof(*h->buckets))) == NULL)
		return HSM_ERR_NO_MEMORY;
	if (pthread_mutex_init(&h->cmu, NULL) != 0) {
		free(h->buckets);
		h->buckets = NULL;
		return HSM_ERR_NO_MEMORY;
	}
	h->nbuckets = nb;
	h->cache_size = cache_size;
	h->cache_ok = 1;
	return 0;
}

static void
ent_free(struct hsm_cache_ent *e)
{
	if (e == NULL)
		return;
	free(e->id);
	free(e);
}

static struct hsm_cache_ent *
cache_lookup(tok_t *h, const char *id)
{
	struct hsm_cache_ent *e;

	e = h->buckets[id_hash(id) & (h->nbuckets - 1)];
	for (; e != NULL; e = e->hnext)
		if (strcmp(e->id, id) == 0)
			return e;
	return NULL;
}

static void
lru_unlink(tok_t *h, struct hsm_cache_ent *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		h->lru_head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		h->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void
lru_push(tok_t *h, struct hsm_cache_ent *e)
{
	e->prev = NULL;
	e->next = h->lru_head;
	if (h->lru_head != NULL)
		h->lru_head->prev = e;
	h->lru_head = e;
	if (h->lru_tail == NULL)
		h->lru_tail = e;
}

/* Takes e out of the map and the LRU; with cmu held. */
static void
cache_remove(tok_t *h, struct hsm_cache_ent *e)
{
	struct hsm_cache_ent **pp;

	pp = &h->buckets[id_hash(e->id) & (h->nbuckets - 1)];
	for (; *pp != NULL; pp = &(*pp)->hnext) {
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	}
	e->hnext = NULL;
	lru_unlink(h, e);
	h->ncached--;
	e->evicted = 1;
}

static void
cache_insert(tok_t *h, struct hsm_cache_ent *e)
{
	size_t b = id_hash(e->id) & (h->nbuckets - 1);

	e->hnext = h->buckets[b];
	h->buckets[b] = e;
	lru_push(h, e);
	h->ncached++;
}

static void
destroy_ent(tok_t *h, struct hsm_sess *s, struct hsm_cache_ent *e)
{
	if (s != NULL && e->obj != CK_INVALID_HANDLE)
		(void)hsm_ck(s, h->f->C_DestroyObject(s->h, e->obj));
	ent_free(e);
}

void
hsm_cache_clear(tok_t *h)
{
	struct hsm_cache_ent *e, *next;

	pthread_mutex_lock(&h->cmu);
	for (e = h->lru_head; e != NULL; e = next) {
		next = e->next;
		ent_free(e);
	}
	memset(h->buckets, 0, h->nbuckets * sizeof(*h->buckets));
	h->lru_head = h->lru_tail = NULL;
	h->ncached = 0;
	pthread_mutex_unlock(&h->cmu);
}

void
hsm_cache_free(tok_t *h)
{
	if (!h->cache_ok)
		return;
	hsm_cache_clear(h);
	pthread_mutex_destroy(&h->cmu);
	free(h->buckets);
	h->buckets = NULL;
	h->cache_ok = 0;
}

/* ---- the domain key ---- */

size_t
hsm_priv_template(CK_ATTRIBUTE t[HSM_PRIV_TEMPLATE_N], CK_KEY_TYPE *kt,
    CK_BBOOL *is_rsa)
{
	size_t n = 0;

	t[n++] = (CK_ATTRIBUTE){ CKA_CLASS, &tmpl_priv_cls,
	    sizeof(tmpl_priv_cls) };
	t[n++] = (CK_ATTRIBUTE){ CKA_KEY_TYPE, kt, sizeof(*kt) };
	t[n++] = (CK_ATTRIBUTE){ CKA_TOKEN, &ck_false, sizeof(ck_false) };
	t[n++] = (CK_ATTRIBUTE){ CKA_PRIVATE, &ck_true, sizeof(ck_true) };
	t[n++] = (CK_ATTRIBUTE){ CKA_SENSITIVE, &ck_true, sizeof(ck_true) };
	t[n++] = (CK_ATTRIBUTE){ CKA_EXTRACTABLE, &ck_true, sizeof(ck_true) };
	t[n++] = (CK_ATTRIBUTE){ CKA_WRAP_WITH_TRUSTED, &ck_true,
	    sizeof(ck_true) };
	t[n++] = (CK_ATTRIBUTE){ CKA_SIGN, &ck_true, sizeof(ck_true) };
	t[n++] = (CK_ATTRIBUTE){ CKA_DERIVE, &ck_false, sizeof(ck_false) };
	t[n++] = (CK_ATTRIBUTE){ CKA_DECRYPT, is_rsa, sizeof(*is_rsa) };
	return n;
}

int
hsm_domain_wrap(tok_t *h, struct hsm_sess *s, CK_OBJECT_HANDLE priv,
    const char *bind, enum hsm_kty kty, unsigned param, uint8_t **blob,
    size_t *blob_len)
{
	CK_MECHANISM m = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_ULONG wlen = HSM_WRAP_BUF;
	uint8_t *wrapped;
	int rc;

	if ((wrapped = malloc(HSM_WRAP_BUF)) == NULL)
		return HSM_ERR_NO_MEMORY;
	/* The size query answers 0 on SoftHSMv2: give a buffer instead. */
	rc = hsm_ck(s, h->f->C_WrapKey(s->h, &m, s->domain_key, priv,
	    wrapped, &wlen));
	if (rc == 0)
		rc = hsm_blob_build(h, s, bind, kty, param, wrapped, wlen, blob,
		    blob_len);
	free(wrapped);
	return rc;
}

int
hsm_domain_unwrap(tok_t *h, struct hsm_sess *s,
    const struct hsm_blob_info *bi, int kek, CK_OBJECT_HANDLE *obj)
{
	CK_KEY_TYPE kt = kek || bi->kty == HSM_KTY_RSA ? CKK_RSA : CKK_EC;
	CK_BBOOL sign = kek ? CK_FALSE : CK_TRUE;
	CK_BBOOL decrypt = !kek && bi->kty == HSM_KTY_RSA ? CK_TRUE : CK_FALSE;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &tmpl_priv_cls, sizeof(tmpl_priv_cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_TOKEN, &ck_false, sizeof(ck_false) },
		{ CKA_PRIVATE, &ck_true, sizeof(ck_true) },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		{ CKA_EXTRACTABLE, &ck_false, sizeof(ck_false) },
		{ CKA_DERIVE, &ck_false, sizeof(ck_false) },  /* the domain */
		{ CKA_SIGN, &sign, sizeof(sign) },            /* key's unwrap */
		{ CKA_DECRYPT, &decrypt, sizeof(decrypt) },   /* template */
		{ CKA_UNWRAP, &ck_true, sizeof(ck_true) },    /* KEKs only */
	};
	CK_MECHANISM m = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_RV rv;

	rv = h->f->C_UnwrapKey(s->h, &m, s->domain_key,
	    (CK_BYTE *)bi->wrapped, bi->wrapped_len, t,
	    sizeof(t) / sizeof(t[0]) - (kek ? 0 : 1), obj);
	if (rv == CKR_OK)
		return 0;
	if (hsm_rv_lost(rv) || rv == CKR_HOST_MEMORY ||
	    rv == CKR_DEVICE_MEMORY)
		return hsm_ck(s, rv);
	/* wrong domain key, corrupt blob, template mismatch */
	return HSM_ERR_INTERNAL;
}

int
hsm_key_get(tok_t *h, struct hsm_sess *s, const char *cache_id,
    const uint8_t *blob, size_t blob_len, struct hsm_cache_ent **out)
{
	struct hsm_cache_ent *e, *old, *victims = NULL, *v;
	struct hsm_blob_info bi;
	uint8_t hash[32], wbuf[HSM_WRAP_BUF];
	CK_OBJECT_HANDLE obj;
	int rc;

	*out = NULL;
	if (hsm_bind_check(cache_id) != 0)
		return HSM_ERR_ARGS;
	if ((rc = hsm_blob_parse(blob, blob_len, &bi)) != 0)
		return rc;
	if (bi.version != HSM_BLOB_VERSION)
		return HSM_ERR_INTERNAL;   /* an old format: upgrade it first */
	/* An entry is (cache_id, hash of every byte of the blob, tag
	 * included): it was made after the tag verified against exactly
	 * that bind and blob, so a hit needs no second check, and another
	 * bind or another blob is a miss that verifies. */
	SHA256(blob, blob_len, hash);

	pthread_mutex_lock(&h->cmu);
	e = cache_lookup(h, cache_id);
	if (e != NULL && memcmp(e->blob_hash, hash, sizeof(hash)) == 0) {
		e->refs++;
		lru_unlink(h, e);
		lru_push(h, e);
		h->hits++;
		pthread_mutex_unlock(&h->cmu);
		*out = e;
		return 0;
	}
	h->misses++;
	pthread_mutex_unlock(&h->cmu);

	/* before anything is unwrapped, and without touching the entry
	 * another blob may hold under this id */
	if ((rc = hsm_blob_open(h, s, cache_id, &bi, wbuf)) != 0)
		return rc;
	rc = hsm_domain_unwrap(h, s, &bi, 0, &obj);
	OPENSSL_cleanse(wbuf, sizeof(wbuf));
	if (rc != 0)
		return rc;
	if ((e = calloc(1, sizeof(*e))) == NULL ||
	    (e->id = strdup(cache_id)) == NULL) {
		free(e);
		(void)hsm_ck(s, h->f->C_DestroyObject(s->h, obj));
		return HSM_ERR_NO_MEMORY;
	}
	memcpy(e->blob_hash, hash, sizeof(hash));
	e->obj = obj;
	e->info = bi;
	e->info.hdr = NULL;
	e->info.wrapped = NULL;
	e->info.wrapped_len = 0;
	e->info.tag = NULL;
	e->info.iv = e->info.ct = NULL;
	e->info.ct_len = 0;
	e->refs = 1;

	pthread_mutex_lock(&h->cmu);
	old = cache_lookup(h, cache_id);
	if (old != NULL && memcmp(old->blob_hash, hash, sizeof(hash)) == 0) {
		/* another thread unwrapped it meanwhile: use theirs */
		old->refs++;
		lru_unlink(h, old);
		lru_push(h, old);
		pthread_mutex_unlock(&h->cmu);
		destroy_ent(h, s, e);
		*out = old;
		return 0;
	}
	if (old != NULL) {
		/* same id, another blob: the old handle is stale */
		cache_remove(h, old);
		if (old->refs == 0) {
			old->hnext = victims;
			victims = old;
		}
	}
	cache_insert(h, e);
	while (h->ncached > h->cache_size && h->lru_tail != e) {
		v = h->lru_tail;
		cache_remove(h, v);
		if (v->refs == 0) {
			v->hnext = victims;
			victims = v;
		}
	}
	pthread_mutex_unlock(&h->cmu);
	while (victims != NULL) {
		v = victims;
		victims = v->hnext;
		destroy_ent(h, s, v);
	}
	*out = e;
	return 0;
}

void
hsm_key_put(tok_t *h, struct hsm_sess *s, struct hsm_cache_ent *e)
{
	int destroy;

	if (e == NULL)
		return;
	pthread_mutex_lock(&h->cmu);
	destroy = --e->refs == 0 && e->evicted;
	pthread_mutex_unlock(&h->cmu);
	if (destroy)
		destroy_ent(h, s, e);
}

void
tok_key_forget(tok_t *h, const char *cache_id)
{
	struct hsm_cache_ent *e;
	struct hsm_sess s;
	int have_sess, destroy = 0;

	if (h == NULL || cache_id == NULL)
		return;
	/* Holding a session keeps recovery away while we touch the handle. */
	have_sess = hsm_sess_take(h, &s) == 0;
	pthread_mutex_lock(&h->cmu);
	e = cache_lookup(h, cache_id);
	if (e != NULL) {
		cache_remove(h, e);
		destroy = e->refs == 0;
	}
	pthread_mutex_unlock(&h->cmu);
	if (destroy)
		destroy_ent(h, have_sess ? &s : NULL, e);
	if (have_sess)
		hsm_sess_give(h, &s);
}

/* ---- the upgrade of blobs of older formats ---- */

int
tok_blob_upgrade(tok_t *h, const char *bind, const uint8_t *blob,
    size_t blob_len, uint8_t **out, size_t *out_len)
{
	struct hsm_blob_info bi;
	struct hsm_sess s;
	CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
	int rc;

	if (h == NULL || out == NULL || out_len == NULL)
		return HSM_ERR_ARGS;
	*out = NULL;
	if (hsm_bind_check(bind) != 0 ||
	    hsm_blob_parse(blob, blob_len, &bi) != 0 ||
	    bi.version == HSM_BLOB_VERSION)
		return HSM_ERR_ARGS;   /* a sealed blob is never re-bound */
	if ((rc = hsm_sess_take(h, &s)) != 0)
		return rc;
	/* A bound blob keeps its bind (its tag must verify). Only what the
	 * domain key opens, as the key type its header says, is sealed:
	 * the session object proves it and goes at once. */
	if (bi.version == HSM_BLOB_BOUND)
		rc = hsm_blob_verify(h, &s, bind, &bi);
	if (rc == 0 && (rc = hsm_domain_unwrap(h, &s, &bi, 0, &obj)) == 0) {
		(void)hsm_ck(&s, h->f->C_DestroyObject(s.h, obj));
		rc = hsm_blob_build(h, &s, bind, bi.kty, bi.param, bi.wrapped,
		    bi.wrapped_len, out, out_len);
	}
	hsm_sess_give(h, &s);
	return rc;
}
