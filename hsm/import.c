/*
 * import.c — bringing keys into the token, and sealing backups.
 *
 * Owns: plaintext import of a PKCS#8 private key (C_CreateObject as a
 * short-lived session object, then wrapped under the domain key), BYOK
 * transfer blobs (CKM_RSA_AES_KEY_WRAP done as two C_UnwrapKey steps:
 * RSA-OAEP-SHA-1 into a session AES key, AES-KWP into the private key), and
 * AES-256-GCM sealing with the token's backup key. Imported keys are
 * bound like generated ones (keys.c); a BYOK KEK is used only once its
 * blob verified against the KEK's bind.
 * Must never: keep a plaintext private key beyond the call (every copy is
 * wiped), read a secret value out of the token, leave an intermediate
 * object (KEK handle, transfer AES key, imported key) behind.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "hsm/hsm_int.h"

#define EC_PARAMS_MAX 16
#define SEAL_MAGIC "P11S"
#define SEAL_VERSION 1
#define SEAL_IV 12
#define SEAL_TAG 16
#define SEAL_HDR (5 + SEAL_IV)
#define SEAL_MAX (64 * 1024 * 1024)
#define RSA_PART_MAX 512

static CK_BBOOL ck_true = CK_TRUE;
static CK_BBOOL ck_false = CK_FALSE;

/* one creator of the backup key at a time, in this process */
static pthread_mutex_t backup_key_mu = PTHREAD_MUTEX_INITIALIZER;

static void
destroy(tok_t *h, struct hsm_sess *s, CK_OBJECT_HANDLE *o)
{
	if (*o != CK_INVALID_HANDLE)
		(void)hsm_ck(s, h->f->C_DestroyObject(s->h, *o));
	*o = CK_INVALID_HANDLE;
}

/* Maps a failure of an operation on caller-supplied input: token trouble
 * stays UNAVAILABLE, anything else is the input's fault. */
static int
input_rv(struct hsm_sess *s, CK_RV rv)
{
	if (rv == CKR_OK)
		return 0;
	if (hsm_rv_lost(rv) || rv == CKR_HOST_MEMORY ||
	    rv == CKR_DEVICE_MEMORY)
		return hsm_ck(s, rv);
	return HSM_ERR_ARGS;
}

static int
wrap_domain(tok_t *h, struct hsm_sess *s, CK_OBJECT_HANDLE priv,
    const char *bind, const struct hsm_key_desc *d, uint8_t **blob,
    size_t *blob_len)
{
	unsigned param;
	size_t field;
	int rc;

	if (d->kty == HSM_KTY_RSA)
		param = d->rsa_bits;
	else if ((rc = hsm_curve_code(d->ec_nid, &param, &field)) != 0)
		return rc;
	return hsm_domain_wrap(h, s, priv, bind, d->kty, param, blob,
	    blob_len);
}

/* ---- plaintext import -------------------------------------------------- */

struct bnbuf {
	CK_ATTRIBUTE_TYPE type;
	const char *param;
	uint8_t *buf;
	size_t len;
};

int
tok_key_import(tok_t *h, const char *bind, const uint8_t *pkcs8,
    size_t pkcs8_len, struct hsm_key_desc *desc, uint8_t **blob,
    size_t *blob_len, uint8_t **spki, size_t *spki_len)
{
	struct bnbuf parts[] = {
		{ CKA_MODULUS, OSSL_PKEY_PARAM_RSA_N, NULL, 0 },
		{ CKA_PUBLIC_EXPONENT, OSSL_PKEY_PARAM_RSA_E, NULL, 0 },
		{ CKA_PRIVATE_EXPONENT, OSSL_PKEY_PARAM_RSA_D, NULL, 0 },
		{ CKA_PRIME_1, OSSL_PKEY_PARAM_RSA_FACTOR1, NULL, 0 },
		{ CKA_PRIME_2, OSSL_PKEY_PARAM_RSA_FACTOR2, NULL, 0 },
		{ CKA_EXPONENT_1, OSSL_PKEY_PARAM_RSA_EXPONENT1, NULL, 0 },
		{ CKA_EXPONENT_2, OSSL_PKEY_PARAM_RSA_EXPONENT2, NULL, 0 },
		{ CKA_COEFFICIENT, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, NULL, 0 },
	};
	const size_t nparts = sizeof(parts) / sizeof(parts[0]);
	CK_KEY_TYPE kt;
	CK_BBOOL is_rsa;
	CK_ATTRIBUTE t[20];
	CK_ULONG nt = 0;
	CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE;
	const unsigned char *p = pkcs8;
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	EVP_PKEY *pk = NULL;
	BIGNUM *bn = NULL;
	uint8_t params[EC_PARAMS_MAX], dval[66];
	size_t plen = sizeof(params), field = 0, i;
	unsigned code;
	unsigned char *der = NULL;
	char group[64];
	struct hsm_sess s;
	int have_sess = 0, rc = HSM_ERR_ARGS, n;

	if (h == NULL || pkcs8 == NULL || desc == NULL || blob == NULL ||
	    blob_len == NULL || spki == NULL || spki_len == NULL)
		return HSM_ERR_ARGS;
	*blob = NULL;
	*spki = NULL;
	memset(desc, 0, sizeof(*desc));
	memset(dval, 0, sizeof(dval));
	if (pkcs8_len == 0 || pkcs8_len > HSM_WRAP_BUF ||
	    hsm_bind_check(bind) != 0)
		return HSM_ERR_ARGS;
	if ((p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)pkcs8_len)) ==
	    NULL || p != pkcs8 + pkcs8_len ||
	    (pk = EVP_PKCS82PKEY(p8)) == NULL)
		goto out;
	nt = hsm_priv_template(t, &kt, &is_rsa);
	if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA) {
		desc->kty = HSM_KTY_RSA;
		desc->rsa_bits = (unsigned)EVP_PKEY_get_bits(pk);
		if (desc->rsa_bits != 2048 && desc->rsa_bits != 3072 &&
		    desc->rsa_bits != 4096)
			goto out;
		kt = CKK_RSA;
		is_rsa = CK_TRUE;
		for (i = 0; i < nparts; i++) {
			if (!EVP_PKEY_get_bn_param(pk, parts[i].param, &bn))
				goto out;
			n = BN_num_bytes(bn);
			if (n <= 0 || n > RSA_PART_MAX ||
			    (parts[i].buf = malloc((size_t)n)) == NULL) {
				rc = n > 0 && n <= RSA_PART_MAX ?
				    HSM_ERR_NO_MEMORY : HSM_ERR_ARGS;
				goto out;
			}
			parts[i].len = (size_t)BN_bn2bin(bn, parts[i].buf);
			BN_clear_free(bn);
			bn = NULL;
			t[nt++] = (CK_ATTRIBUTE){ parts[i].type, parts[i].buf,
			    parts[i].len };
		}
	} else if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC) {
		desc->kty = HSM_KTY_EC;
		kt = CKK_EC;
		is_rsa = CK_FALSE;
		if (!EVP_PKEY_get_utf8_string_param(pk,
		    OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL))
			goto out;
		desc->ec_nid = OBJ_sn2nid(group);
		if (desc->ec_nid == NID_undef)
			desc->ec_nid = EC_curve_nist2nid(group);
		if (hsm_curve_code(desc->ec_nid, &code, &field) != 0 ||
		    hsm_curve_der(desc->ec_nid, params, &plen) != 0)
			goto out;
		if (!EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_PRIV_KEY, &bn) ||
		    BN_bn2binpad(bn, dval, (int)field) != (int)field)
			goto out;
		t[nt++] = (CK_ATTRIBUTE){ CKA_EC_PARAMS, params, plen };
		t[nt++] = (CK_ATTRIBUTE){ CKA_VALUE, dval, field };
	} else {
		goto out;
	}
	if ((n = i2d_PUBKEY(pk, &der)) <= 0) {
		rc = HSM_ERR_INTERNAL;
		goto out;
	}
	if ((*spki = malloc((size_t)n)) == NULL) {
		rc = HSM_ERR_NO_MEMORY;
		goto out;
	}
	memcpy(*spki, der, (size_t)n);
	*spki_len = (size_t)n;
	if ((rc = hsm_sess_take(h, &s)) != 0)
		goto out;
	have_sess = 1;
	if ((rc = input_rv(&s, h->f->C_CreateObject(s.h, t, nt, &priv))) != 0)
		goto out;
	rc = wrap_domain(h, &s, priv, bind, desc, blob, blob_len);
out:
	if (have_sess) {
		destroy(h, &s, &priv);
		hsm_sess_give(h, &s);
	}
	for (i = 0; i < nparts; i++) {
		if (parts[i].buf != NULL)
			OPENSSL_cleanse(parts[i].buf, parts[i].len);
		free(parts[i].buf);
	}
	OPENSSL_cleanse(dval, sizeof(dval));
	BN_clear_free(bn);
	OPENSSL_free(der);
	EVP_PKEY_free(pk);
	PKCS8_PRIV_KEY_INFO_free(p8);
	ERR_clear_error();
	if (rc != 0) {
		free(*spki);
		*spki = NULL;
		free(*blob);
		*blob = NULL;
	}
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

	return input_rv(s, h->f->C_UnwrapKey(s->h, &m, aes, (CK_BYTE *)w,
	    wlen, t, nt, obj));
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
	    !BN_mod_sub(u1, order, u1, order, ctx) ||   /* -e/r */
	    !BN_mod_mul(u2, sv, ri, order, ctx))         /* s/r */
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
	size_t fl = 0, ptlen;
	unsigned code;
	int i, j, k, found = -1, rc;

	if ((rc = hsm_curve_code(nid, &code, &fl)) != 0)
		return rc;
	SHA256((const unsigned char *)"p11vault ec public 1", 20, dg[0]);
	SHA256((const unsigned char *)"p11vault ec public 2", 20, dg[1]);
	for (i = 0; i < 2; i++) {
		slen = sizeof(sig[i]);
		if ((rc = hsm_ck(s, h->f->C_SignInit(s->h, &m, priv))) != 0)
			return rc;
		if ((rc = hsm_ck(s, h->f->C_Sign(s->h, dg[i], 32, sig[i],
		    &slen))) != 0)
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
			if (found < 0 && EC_POINT_cmp(g, qa[j], qb[k], ctx) == 0)
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
    CK_KEY_TYPE kt, struct hsm_key_desc *d, uint8_t **spki,
    size_t *spki_len)
{
	CK_BYTE a[1024], b[512];
	CK_ATTRIBUTE rt[] = {
		{ CKA_MODULUS, a, sizeof(a) },
		{ CKA_PUBLIC_EXPONENT, b, sizeof(b) },
	};
	CK_ATTRIBUTE et[] = { { CKA_EC_PARAMS, b, sizeof(b) } };
	const unsigned char *p = b;
	ASN1_OBJECT *oid = NULL;
	unsigned code;
	size_t fl;
	int rc;

	if (kt == CKK_RSA) {
		if ((rc = hsm_ck(s, h->f->C_GetAttributeValue(s->h, priv, rt,
		    2))) != 0)
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
	if ((rc = hsm_ck(s, h->f->C_GetAttributeValue(s->h, priv, et, 1))) !=
	    0)
		return rc;
	if (d2i_ASN1_OBJECT(&oid, &p, (long)et[0].ulValueLen) == NULL) {
		ERR_clear_error();
		return HSM_ERR_ARGS;
	}
	d->kty = HSM_KTY_EC;
	d->ec_nid = OBJ_obj2nid(oid);
	ASN1_OBJECT_free(oid);
	if (hsm_curve_code(d->ec_nid, &code, &fl) != 0)
		return HSM_ERR_ARGS;
	return ec_public(h, s, priv, d->ec_nid, b, et[0].ulValueLen, spki,
	    spki_len);
}

int
tok_key_import_byok(tok_t *h, const char *bind, const char *kek_bind,
    const uint8_t *kek_blob, size_t kek_blob_len, const uint8_t *transfer,
    size_t transfer_len, struct hsm_key_desc *desc, uint8_t **blob,
    size_t *blob_len, uint8_t **spki, size_t *spki_len)
{
	CK_RSA_PKCS_OAEP_PARAMS oaep = { CKM_SHA_1, CKG_MGF1_SHA1,
	    CKZ_DATA_SPECIFIED, NULL, 0 };
	CK_MECHANISM mo = { CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep) };
	CK_OBJECT_CLASS scls = CKO_SECRET_KEY;
	CK_KEY_TYPE aes_kt = CKK_AES, kt = CKK_RSA;
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
	CK_OBJECT_HANDLE kek = CK_INVALID_HANDLE, aes = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE;
	struct hsm_blob_info bi;
	struct hsm_sess s;
	uint8_t wbuf[HSM_WRAP_BUF];
	size_t mlen;
	int have_sess = 0, rc;

	if (h == NULL || kek_blob == NULL || transfer == NULL || desc == NULL ||
	    blob == NULL || blob_len == NULL || spki == NULL ||
	    spki_len == NULL)
		return HSM_ERR_ARGS;
	*blob = NULL;
	*spki = NULL;
	memset(desc, 0, sizeof(*desc));
	if (hsm_bind_check(bind) != 0 || hsm_bind_check(kek_bind) != 0)
		return HSM_ERR_ARGS;
	if ((rc = hsm_blob_parse(kek_blob, kek_blob_len, &bi)) != 0)
		return rc;
	if (bi.version != HSM_BLOB_VERSION)
		return HSM_ERR_INTERNAL;   /* an unbound KEK: never used */
	if (bi.kty != HSM_KTY_RSA)
		return HSM_ERR_ARGS;
	mlen = bi.size;
	/* RSA block, then at least one KWP block pair of a real key */
	if (transfer_len < mlen + 64 || transfer_len > mlen + HSM_WRAP_BUF ||
	    (transfer_len - mlen) % 8 != 0)
		return HSM_ERR_ARGS;
	if ((rc = hsm_sess_take(h, &s)) != 0)
		return rc;
	have_sess = 1;
	/* the KEK: its blob must be the one bound to kek_bind, then a
	 * session object that can unwrap and nothing else */
	if ((rc = hsm_blob_open(h, &s, kek_bind, &bi, wbuf)) != 0)
		goto out;
	rc = hsm_domain_unwrap(h, &s, &bi, 1, &kek);
	OPENSSL_cleanse(wbuf, sizeof(wbuf));
	if (rc != 0)
		goto out;
	/* step 1: the transfer AES key, unwrapped by the KEK */
	if ((rc = input_rv(&s, h->f->C_UnwrapKey(s.h, &mo, kek,
	    (CK_BYTE *)transfer, mlen, at, sizeof(at) / sizeof(at[0]),
	    &aes))) != 0)
		goto out;
	if ((rc = hsm_ck(&s, h->f->C_GetAttributeValue(s.h, aes, lt, 1))) !=
	    0)
		goto out;
	/* SoftHSMv2 leaves CKA_VALUE_LEN of an unwrapped key at 0 */
	if (aes_len != 0 && aes_len != 32) {
		rc = HSM_ERR_ARGS;
		goto out;
	}
	/* step 2: the target key, unwrapped by the AES key. The blob does not
	 * say the key's type: try RSA, then EC. */
	rc = target_unwrap(h, &s, aes, CKK_RSA, transfer + mlen,
	    transfer_len - mlen, &priv);
	if (rc == HSM_ERR_ARGS) {
		kt = CKK_EC;
		rc = target_unwrap(h, &s, aes, CKK_EC, transfer + mlen,
		    transfer_len - mlen, &priv);
	}
	if (rc != 0)
		goto out;
	destroy(h, &s, &aes);
	destroy(h, &s, &kek);
	if ((rc = target_describe(h, &s, priv, kt, desc, spki,
	    spki_len)) != 0)
		goto out;
	rc = wrap_domain(h, &s, priv, bind, desc, blob, blob_len);
out:
	if (have_sess) {
		destroy(h, &s, &priv);
		destroy(h, &s, &aes);
		destroy(h, &s, &kek);
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

/* ---- backup sealing ------------------------------------------------------ */

static int
backup_key(tok_t *h, struct hsm_sess *s, CK_OBJECT_HANDLE *key)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE ft[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, HSM_BACKUP_LABEL, sizeof(HSM_BACKUP_LABEL) - 1 },
	};
	CK_OBJECT_HANDLE found[2];
	CK_ULONG n = 0;
	int rc;

	pthread_mutex_lock(&backup_key_mu);
	if ((rc = hsm_ck(s, h->f->C_FindObjectsInit(s->h, ft, 2))) != 0)
		goto out;
	rc = hsm_ck(s, h->f->C_FindObjects(s->h, found, 2, &n));
	(void)h->f->C_FindObjectsFinal(s->h);
	if (rc != 0)
		goto out;
	if (n == 1) {
		*key = found[0];
	} else if (n == 0) {
		/* pool sessions are read-only: a token object needs a R/W
		 * session (the login is the application's, shared) */
		CK_SESSION_HANDLE rw = CK_INVALID_HANDLE;
		rc = hsm_ck(s, h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION |
		    CKF_RW_SESSION, NULL, NULL, &rw));
		if (rc == 0) {
			rc = hsm_ck(s, hsm_gen_aes_key(h->f, rw,
			    HSM_BACKUP_LABEL, key));
			(void)h->f->C_CloseSession(rw);
		}
	} else {
		rc = HSM_ERR_INTERNAL;   /* two keys claim one role */
	}
out:
	pthread_mutex_unlock(&backup_key_mu);
	return rc;
}

/* AES-GCM parameters of a sealed blob whose header (magic, version, IV)
 * starts at hdr: the IV from the header, the 5 bytes before it as AAD. */
static void
seal_gcm_params(CK_GCM_PARAMS *gp, const uint8_t *hdr)
{
	memset(gp, 0, sizeof(*gp));
	gp->pIv = (CK_BYTE *)hdr + 5;
	gp->ulIvLen = SEAL_IV;
	gp->ulIvBits = SEAL_IV * 8;
	gp->pAAD = (CK_BYTE *)hdr;   /* the header is authenticated too */
	gp->ulAADLen = 5;
	gp->ulTagBits = SEAL_TAG * 8;
}

int
tok_seal(tok_t *h, const uint8_t *in, size_t in_len, uint8_t **out,
    size_t *out_len)
{
	CK_GCM_PARAMS gp;
	CK_MECHANISM m = { CKM_AES_GCM, &gp, sizeof(gp) };
	CK_OBJECT_HANDLE key;
	CK_ULONG clen;
	uint8_t *b = NULL;
	struct hsm_sess s;
	int rc;

	if (h == NULL || in == NULL || out == NULL || out_len == NULL ||
	    in_len == 0 || in_len > SEAL_MAX)
		return HSM_ERR_ARGS;
	*out = NULL;
	if ((b = malloc(SEAL_HDR + in_len + SEAL_TAG)) == NULL)
		return HSM_ERR_NO_MEMORY;
	memcpy(b, SEAL_MAGIC, 4);
	b[4] = SEAL_VERSION;
	if (RAND_bytes(b + 5, SEAL_IV) != 1) {
		free(b);
		return HSM_ERR_INTERNAL;
	}
	seal_gcm_params(&gp, b);
	if ((rc = hsm_sess_take(h, &s)) != 0) {
		free(b);
		return rc;
	}
	clen = in_len + SEAL_TAG;
	if ((rc = backup_key(h, &s, &key)) == 0 &&
	    (rc = hsm_ck(&s, h->f->C_EncryptInit(s.h, &m, key))) == 0)
		rc = hsm_ck(&s, h->f->C_Encrypt(s.h, (CK_BYTE *)in, in_len,
		    b + SEAL_HDR, &clen));
	hsm_sess_give(h, &s);
	if (rc == 0 && clen != in_len + SEAL_TAG)
		rc = HSM_ERR_INTERNAL;
	if (rc != 0) {
		free(b);
		return rc;
	}
	*out = b;
	*out_len = SEAL_HDR + clen;
	return 0;
}

int
tok_unseal(tok_t *h, const uint8_t *in, size_t in_len, uint8_t **out,
    size_t *out_len)
{
	CK_GCM_PARAMS gp;
	CK_MECHANISM m = { CKM_AES_GCM, &gp, sizeof(gp) };
	CK_OBJECT_HANDLE key;
	CK_ULONG plen;
	CK_RV rv;
	uint8_t *b = NULL;
	struct hsm_sess s;
	int rc;

	if (h == NULL || in == NULL || out == NULL || out_len == NULL)
		return HSM_ERR_ARGS;
	*out = NULL;
	if (in_len < SEAL_HDR + SEAL_TAG + 1 ||
	    in_len > SEAL_HDR + SEAL_MAX + SEAL_TAG ||
	    memcmp(in, SEAL_MAGIC, 4) != 0 || in[4] != SEAL_VERSION)
		return HSM_ERR_DECRYPT;
	if ((b = malloc(in_len)) == NULL)
		return HSM_ERR_NO_MEMORY;
	seal_gcm_params(&gp, in);
	if ((rc = hsm_sess_take(h, &s)) != 0) {
		free(b);
		return rc;
	}
	plen = in_len;
	if ((rc = backup_key(h, &s, &key)) == 0 &&
	    (rc = hsm_ck(&s, h->f->C_DecryptInit(s.h, &m, key))) == 0) {
		rv = h->f->C_Decrypt(s.h, (CK_BYTE *)in + SEAL_HDR,
		    in_len - SEAL_HDR, b, &plen);
		rc = input_rv(&s, rv);
		if (rc == HSM_ERR_ARGS)
			rc = HSM_ERR_DECRYPT;
	}
	hsm_sess_give(h, &s);
	if (rc == 0 && plen != in_len - SEAL_HDR - SEAL_TAG)
		rc = HSM_ERR_DECRYPT;
	if (rc != 0) {
		OPENSSL_cleanse(b, in_len);
		free(b);
		return rc;
	}
	*out = b;
	*out_len = plen;
	return 0;
}
