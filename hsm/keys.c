/*
 * hsm/keys.c — customer keys coming into being: the one skeleton every
 * new key goes through (generated here, imported or BYOK in import.c),
 * generation itself, the upgrade of blobs of older formats, and forget.
 *
 * The skeleton (hsm_key_new): a pool session; the maker makes the
 * template and creates or unwraps the private key in the token (a
 * session object: sensitive, extractable only under a trusted key); the
 * public part is read (from the public object when there is one, unless
 * the maker already has it); the private key is wrapped under the domain
 * key and sealed into a blob bound to bind; every object goes, on every
 * path.
 * Must never: read a private or secret key's value out of the token; keep
 * a new private key as anything but a short-lived session object; re-bind
 * a bound blob.
 */
#include <stdlib.h>
#include <string.h>

#include "hsm/buf.h"
#include "hsm/hsm_int.h"


static CK_BBOOL ck_true = CK_TRUE;
static CK_BBOOL ck_false = CK_FALSE;

/* The public part of a new key as SPKI: from the public object pub (RSA:
 * a private object answers for n and e too). */
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
		return hsm_rsa_spki(a, rt[0].ulValueLen, b, rt[1].ulValueLen,
		    spki, spki_len);
	return hsm_ec_spki(b, et[0].ulValueLen, a, et[1].ulValueLen, spki,
	    spki_len);
}

/* The blob header's param of a key: RSA bits, or the curve's code. */
static int
desc_param(const struct hsm_key_desc *d, unsigned *param)
{
	const struct hsm_curve_info *ci;

	if (d->kty == HSM_KTY_RSA) {
		if (d->rsa_bits != 2048 && d->rsa_bits != 3072 &&
		    d->rsa_bits != 4096)
			return HSM_ERR_ARGS;
		*param = d->rsa_bits;
		return 0;
	}
	if (d->kty != HSM_KTY_EC || (ci = hsm_curve_by_nid(d->ec_nid)) == NULL)
		return HSM_ERR_ARGS;
	*param = ci->code;
	return 0;
}

/* The steps of the skeleton in the session: make, public part, wrap. */
static int
key_new_in(tok_t *h, struct hsm_sess *s, const char *bind, hsm_key_maker make,
    const void *arg, struct hsm_key_new *k, uint8_t **blob, size_t *blob_len)
{
	unsigned param;
	int rc;

	if ((rc = make(h, s, arg, k)) != 0)
		return rc;
	if ((rc = desc_param(&k->desc, &param)) != 0)
		return rc;
	if (k->spki == NULL &&
	    (rc = pub_to_spki(h, s, k->desc.kty, k->pub, &k->spki,
	         &k->spki_len)) != 0)
		return rc;
	return hsm_domain_wrap(h, s, k->priv, bind, k->desc.kty, param, blob,
	    blob_len);
}

int
hsm_key_new(tok_t *h, const char *bind, hsm_key_maker make, const void *arg,
    struct hsm_key_desc *desc, uint8_t **blob, size_t *blob_len, uint8_t **spki,
    size_t *spki_len)
{
	struct hsm_key_new k;
	struct hsm_sess s;
	int rc;

	if (h == NULL || blob == NULL || blob_len == NULL || spki == NULL ||
	    spki_len == NULL)
		return HSM_ERR_ARGS;
	*blob = NULL;
	*spki = NULL;
	if (desc != NULL)
		memset(desc, 0, sizeof(*desc));
	if (hsm_bind_check(bind) != 0)
		return HSM_ERR_ARGS;
	memset(&k, 0, sizeof(k));
	k.priv = k.pub = CK_INVALID_HANDLE;
	if ((rc = hsm_sess_take(h, &s)) != 0)
		return rc;
	rc = key_new_in(h, &s, bind, make, arg, &k, blob, blob_len);
	hsm_destroy(h->f, &s, &k.priv);
	hsm_destroy(h->f, &s, &k.pub);
	hsm_sess_give(h, &s);
	if (rc != 0) {
		free(k.spki);
		free(*blob);
		*blob = NULL;
		return rc;
	}
	*spki = k.spki;
	*spki_len = k.spki_len;
	if (desc != NULL)
		*desc = k.desc;
	return 0;
}

/* ---- generation ---- */

struct gen_arg {
	enum hsm_kty kty;
	unsigned rsa_bits;
	int ec_nid;
};

/* The maker of tok_key_generate: a key pair made in the token. */
static int
gen_pair(tok_t *h, struct hsm_sess *s, const void *arg, struct hsm_key_new *k)
{
	const struct gen_arg *g = arg;
	enum hsm_kty kty = g->kty;
	uint8_t params[HSM_EC_PARAMS_MAX];
	size_t plen = sizeof(params);
	int rc;
	CK_ULONG mbits = g->rsa_bits;
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
		{ CKA_EC_PARAMS, params, 0 },
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

	k->desc.kty = kty;
	k->desc.rsa_bits = kty == HSM_KTY_RSA ? g->rsa_bits : 0;
	k->desc.ec_nid = kty == HSM_KTY_EC ? g->ec_nid : 0;
	if (kty == HSM_KTY_RSA) {
		rv = h->f->C_GenerateKeyPair(s->h, &mr, rpub, 5, tpriv, 7,
		    &k->pub, &k->priv);
	} else {
		if ((rc = hsm_curve_der(g->ec_nid, params, &plen)) != 0)
			return rc;
		epub[1].ulValueLen = plen;
		rv = h->f->C_GenerateKeyPair(s->h, &me, epub, 3, tpriv, 7,
		    &k->pub, &k->priv);
	}
	return hsm_ck(s, rv);
}

int
tok_key_generate(tok_t *h, const char *bind, enum hsm_kty kty,
    unsigned rsa_bits, int ec_nid, uint8_t **blob, size_t *blob_len,
    uint8_t **spki, size_t *spki_len)
{
	struct gen_arg g = { kty, rsa_bits, ec_nid };
	struct hsm_key_desc d = { kty, rsa_bits, ec_nid };
	unsigned param;

	/* a request the token cannot make is refused before a session */
	if (desc_param(&d, &param) != 0)
		return HSM_ERR_ARGS;
	return hsm_key_new(h, bind, gen_pair, &g, NULL, blob, blob_len, spki,
	    spki_len);
}

void
tok_key_forget(tok_t *h, const char *cache_id)
{
	struct hsm_sess s;
	int have_sess;

	if (h == NULL || cache_id == NULL)
		return;
	/* Holding a session keeps recovery away while we touch the handle. */
	have_sess = hsm_sess_take(h, &s) == 0;
	hsm_cache_forget(h, have_sess ? &s : NULL, cache_id);
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
		return HSM_ERR_ARGS; /* a sealed blob is never re-bound */
	if ((rc = hsm_sess_take(h, &s)) != 0)
		return rc;
	/* A bound blob keeps its bind (its tag must verify). Only what the
	 * domain key opens, as the key type its header says, is sealed:
	 * the session object proves it and goes at once. */
	if (bi.version == HSM_BLOB_BOUND)
		rc = hsm_blob_verify(h, &s, bind, &bi);
	if (rc == 0 && (rc = hsm_domain_unwrap(h, &s, &bi, 0, &obj)) == 0) {
		hsm_destroy(h->f, &s, &obj);
		rc = hsm_blob_build(h, &s, bind, bi.kty, bi.param, bi.wrapped,
		    bi.wrapped_len, out, out_len);
	}
	hsm_sess_give(h, &s);
	return rc;
}

int
tok_blob_rewrap(tok_t *h, const char *bind, const uint8_t *blob,
    size_t blob_len, uint8_t **out, size_t *out_len)
{
	struct hsm_blob_info bi;
	struct hsm_sess s;
	uint8_t *buf;
	int rc;

	if (h == NULL || out == NULL || out_len == NULL)
		return HSM_ERR_ARGS;
	*out = NULL;
	if (hsm_bind_check(bind) != 0 ||
	    hsm_blob_parse(blob, blob_len, &bi) != 0 ||
	    bi.version != HSM_BLOB_VERSION)
		return HSM_ERR_ARGS;
	if ((buf = malloc(HSM_WRAP_BUF)) == NULL)
		return HSM_ERR_NO_MEMORY;
	if ((rc = hsm_sess_take(h, &s)) != 0) {
		free(buf);
		return rc;
	}
	/* it must open against its bind first: a blob is never re-bound */
	if ((rc = hsm_blob_open(h, &s, bind, &bi, buf)) == 0)
		rc = hsm_domain_rewrap(h, &s, &bi, bind, out, out_len);
	hsm_sess_give(h, &s);
	freezero(buf, HSM_WRAP_BUF);
	return rc;
}
