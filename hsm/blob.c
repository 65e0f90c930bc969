/*
 * hsm/blob.c — the blob: the format of a customer key wrapped under the
 * domain key and sealed in the token (hsm_int.h describes it), and the
 * two ways across the domain key.
 *
 * Owns: parsing blobs of every version, the bind (what a blob is for),
 * the version-2 tag check, sealing and opening version 3 (AES-GCM under
 * the seal key, in the token), the template of every private key made or
 * imported here, and wrapping a private key under the domain key
 * (CKM_AES_KEY_WRAP_PAD) into a blob and back into a session object.
 * Must never: hand out a blob's inside before it opened against its bind;
 * unwrap into anything extractable; call up into the pool or the cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "hsm/buf.h"
#include "hsm/hsm_int.h"

static CK_BBOOL ck_true = CK_TRUE;
static CK_BBOOL ck_false = CK_FALSE;
static CK_OBJECT_CLASS tmpl_priv_cls = CKO_PRIVATE_KEY;

int
hsm_blob_parse(const uint8_t *blob, size_t len, struct hsm_blob_info *bi)
{
	const struct hsm_curve_info *ci;
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
		if ((ci = hsm_curve_by_code(param)) == NULL)
			return HSM_ERR_INTERNAL;
		bi->kty = HSM_KTY_EC;
		bi->size = ci->field;
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
hsm_blob_format(const uint8_t *blob, size_t blob_len, unsigned *format)
{
	struct hsm_blob_info bi;

	if (hsm_blob_parse(blob, blob_len, &bi) != 0)
		return HSM_ERR_ARGS;
	*format = bi.version;
	return HSM_OK;
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
	freezero(msg, len);
	return rc;
}

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
	fprintf(stderr,
	    "{\"level\":\"error\",\"event\":"
	    "\"blob_binding_failed\",\"key\":\"%s\",\"msg\":\"the stored "
	    "blob of this key version was not made for it; refused\"}\n",
	    bind[i] == '\0' ? bind : "?");
}

/* The tag is recomputed in the token and compared here with
 * CRYPTO_memcmp: SoftHSMv2's C_Verify of an HMAC compares with memcmp,
 * which is not constant time. */
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
seal_params(CK_GCM_PARAMS *gp, const uint8_t *iv, uint8_t *aad, size_t aad_len)
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
	if ((rc = hsm_ck(s, h->f->C_DecryptInit(s->h, &m, s->seal_key))) == 0) {
		/* the ciphertext and its tag, as PKCS#11 GCM takes them */
		rv = h->f->C_Decrypt(s->h, (CK_BYTE *)bi->ct,
		    bi->ct_len + HSM_BLOB_GCM_TAG, buf, &plen);
		if ((rc = hsm_ck_blame(s, rv, HSM_ERR_INTERNAL)) == 0 &&
		    plen != bi->ct_len)
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
hsm_blob_build(tok_t *h, struct hsm_sess *s, const char *bind, enum hsm_kty kty,
    unsigned param, const uint8_t *wrapped, size_t wrapped_len, uint8_t **blob,
    size_t *blob_len)
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
	if ((rc = hsm_ck(s, h->f->C_EncryptInit(s->h, &m, s->seal_key))) == 0)
		rc = hsm_ck(s,
		    h->f->C_Encrypt(s->h, (CK_BYTE *)wrapped, wrapped_len,
		        b + HSM_BLOB_HDR + HSM_BLOB_IV, &clen));
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

size_t
/* kt and is_rsa are pointed to by the template, hence not const */
hsm_priv_template(CK_ATTRIBUTE t[HSM_PRIV_TEMPLATE_N],
    CK_KEY_TYPE *kt,  /* NOLINT(readability-non-const-parameter) */
    CK_BBOOL *is_rsa) /* NOLINT(readability-non-const-parameter) */
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
	rc = hsm_ck(s,
	    h->f->C_WrapKey(s->h, &m, s->domain_key, priv, wrapped, &wlen));
	if (rc == 0)
		rc = hsm_blob_build(h, s, bind, kty, param, wrapped, wlen, blob,
		    blob_len);
	freezero(wrapped, HSM_WRAP_BUF);
	return rc;
}

int
hsm_domain_unwrap(tok_t *h, struct hsm_sess *s, const struct hsm_blob_info *bi,
    int kek, CK_OBJECT_HANDLE *obj)
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
		/* what the domain key's unwrap template asks, of either
		 * kind (before and since clustering, p11.c) */
		{ CKA_WRAP_WITH_TRUSTED, &ck_true, sizeof(ck_true) },
		{ CKA_DERIVE, &ck_false, sizeof(ck_false) },
		{ CKA_SIGN, &sign, sizeof(sign) },
		{ CKA_DECRYPT, &decrypt, sizeof(decrypt) },
		{ CKA_UNWRAP, &ck_true, sizeof(ck_true) }, /* KEKs only */
	};
	CK_MECHANISM m = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_ULONG nt = sizeof(t) / sizeof(t[0]) - (kek ? 0 : 1);
	CK_RV rv;

	rv = h->f->C_UnwrapKey(s->h, &m, s->domain_key, (CK_BYTE *)bi->wrapped,
	    bi->wrapped_len, t, nt, obj);
	/* a rotation under way: a blob not yet moved is under the old key */
	if (rv != CKR_OK && s->domain_old != CK_INVALID_HANDLE)
		rv = h->f->C_UnwrapKey(s->h, &m, s->domain_old,
		    (CK_BYTE *)bi->wrapped, bi->wrapped_len, t, nt, obj);
	/* else: a wrong domain key, a corrupt blob, a template mismatch */
	return hsm_ck_blame(s, rv, HSM_ERR_INTERNAL);
}

int
hsm_domain_rewrap(tok_t *h, struct hsm_sess *s, const struct hsm_blob_info *bi,
    const char *bind, uint8_t **out, size_t *out_len)
{
	CK_KEY_TYPE kt = bi->kty == HSM_KTY_RSA ? CKK_RSA : CKK_EC;
	/* extractable only under a trusted key, for the one wrap below;
	 * a session object, destroyed at once */
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &tmpl_priv_cls, sizeof(tmpl_priv_cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_TOKEN, &ck_false, sizeof(ck_false) },
		{ CKA_PRIVATE, &ck_true, sizeof(ck_true) },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		{ CKA_EXTRACTABLE, &ck_true, sizeof(ck_true) },
		{ CKA_WRAP_WITH_TRUSTED, &ck_true, sizeof(ck_true) },
		{ CKA_DERIVE, &ck_false, sizeof(ck_false) },
		{ CKA_SIGN, &ck_false, sizeof(ck_false) },
		{ CKA_DECRYPT, &ck_false, sizeof(ck_false) },
	};
	CK_MECHANISM m = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
	CK_ULONG nt = sizeof(t) / sizeof(t[0]);
	CK_RV rv;
	int rc;

	if (s->domain_old == CK_INVALID_HANDLE)
		return HSM_ERR_ARGS; /* no rotation under way */
	rv = h->f->C_UnwrapKey(s->h, &m, s->domain_key, (CK_BYTE *)bi->wrapped,
	    bi->wrapped_len, t, nt, &o);
	if (rv == CKR_OK) {
		hsm_destroy(h->f, s, &o);
		return HSM_ERR_EXISTS; /* moved already */
	}
	rv = h->f->C_UnwrapKey(s->h, &m, s->domain_old, (CK_BYTE *)bi->wrapped,
	    bi->wrapped_len, t, nt, &o);
	/* the old key's unwrap template pins what it opens as not
	 * extractable (a vault of before clustering): it cannot move */
	if (rv == CKR_TEMPLATE_INCONSISTENT)
		return HSM_ERR_NOT_SHAREABLE;
	if ((rc = hsm_ck_blame(s, rv, HSM_ERR_INTERNAL)) != 0)
		return rc;
	rc = hsm_domain_wrap(h, s, o, bind, bi->kty, bi->param, out, out_len);
	hsm_destroy(h->f, s, &o);
	return rc;
}
