/*
 * hsm/crypto.c — operations with keys: private ones in the token, public ones
 * in OpenSSL.
 *
 * Owns: decrypt (OAEP-SHA-1 in the token; OAEP-SHA-256 and PKCS#1 v1.5 as
 * raw RSA in the token plus constant-time decoding here), sign (RS*, PS*,
 * ES*), the JWT signature, and public-key encrypt/verify on SPKI DER.
 * Must never: let the raw RSA result leave this file (it is wiped on every
 * path); give a padding failure any answer but HSM_ERR_DECRYPT; use a
 * blob whose tag did not verify against cache_id (hsm_key_get checks).
 */
/* RSA_padding_check_* are the constant-time decoders we need; OpenSSL 3
 * deprecates them, it does not remove them. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "hsm/base.h"
#include "hsm/hsm_int.h"

#define RSA_MAX_BYTES 512 /* 4096 bits */

struct alg_info {
	enum hsm_alg alg;
	enum hsm_kty kty;
	size_t dlen; /* digest length; 0 for decrypt algs */
	CK_MECHANISM_TYPE hash;
	CK_RSA_PKCS_MGF_TYPE mgf;
	size_t field;      /* ES*: field bytes of the matching curve */
	const uint8_t *di; /* RS*: DigestInfo prefix */
	size_t di_len;
};

static const uint8_t di_sha256[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
	0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04,
	0x20 };
static const uint8_t di_sha384[] = { 0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60,
	0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04,
	0x30 };
static const uint8_t di_sha512[] = { 0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60,
	0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04,
	0x40 };

static const struct alg_info algs[] = {
	{ HSM_ALG_RSA_OAEP, HSM_KTY_RSA, 0, CKM_SHA_1, CKG_MGF1_SHA1, 0, NULL,
	    0 },
	{ HSM_ALG_RSA_OAEP_256, HSM_KTY_RSA, 0, CKM_SHA256, CKG_MGF1_SHA256, 0,
	    NULL, 0 },
	{ HSM_ALG_RSA1_5, HSM_KTY_RSA, 0, 0, 0, 0, NULL, 0 },
	{ HSM_ALG_RS256, HSM_KTY_RSA, 32, CKM_SHA256, CKG_MGF1_SHA256, 0,
	    di_sha256, sizeof(di_sha256) },
	{ HSM_ALG_RS384, HSM_KTY_RSA, 48, CKM_SHA384, CKG_MGF1_SHA384, 0,
	    di_sha384, sizeof(di_sha384) },
	{ HSM_ALG_RS512, HSM_KTY_RSA, 64, CKM_SHA512, CKG_MGF1_SHA512, 0,
	    di_sha512, sizeof(di_sha512) },
	{ HSM_ALG_PS256, HSM_KTY_RSA, 32, CKM_SHA256, CKG_MGF1_SHA256, 0, NULL,
	    0 },
	{ HSM_ALG_PS384, HSM_KTY_RSA, 48, CKM_SHA384, CKG_MGF1_SHA384, 0, NULL,
	    0 },
	{ HSM_ALG_PS512, HSM_KTY_RSA, 64, CKM_SHA512, CKG_MGF1_SHA512, 0, NULL,
	    0 },
	{ HSM_ALG_ES256, HSM_KTY_EC, 32, 0, 0, 32, NULL, 0 },
	{ HSM_ALG_ES384, HSM_KTY_EC, 48, 0, 0, 48, NULL, 0 },
	{ HSM_ALG_ES512, HSM_KTY_EC, 64, 0, 0, 66, NULL, 0 },
	{ HSM_ALG_ES256K, HSM_KTY_EC, 32, 0, 0, 32, NULL, 0 },
};

static const struct alg_info *
alg_find(enum hsm_alg alg)
{
	size_t i;

	for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
		if (algs[i].alg == alg)
			return &algs[i];
	return NULL;
}

static int
is_decrypt_alg(enum hsm_alg alg)
{
	return alg == HSM_ALG_RSA_OAEP || alg == HSM_ALG_RSA_OAEP_256 ||
	    alg == HSM_ALG_RSA1_5;
}

static int
is_pss(enum hsm_alg alg)
{
	return alg == HSM_ALG_PS256 || alg == HSM_ALG_PS384 ||
	    alg == HSM_ALG_PS512;
}

static const EVP_MD *
alg_md(const struct alg_info *a)
{
	switch (a->alg) {
	case HSM_ALG_RSA_OAEP:
		return EVP_sha1();
	case HSM_ALG_RSA_OAEP_256:
		return EVP_sha256();
	default:
		break;
	}
	switch (a->dlen) {
	case 32:
		return EVP_sha256();
	case 48:
		return EVP_sha384();
	case 64:
		return EVP_sha512();
	default:
		return NULL;
	}
}

/* ---- private-key operations in the token ---- */

/* Raw RSA in the token, then constant-time OAEP-SHA-256 / type-2 decoding.
 * Returns the plaintext length in *n, or HSM_ERR_DECRYPT. */
static int
decrypt_raw(tok_t *h, struct hsm_sess *s, CK_OBJECT_HANDLE key,
    enum hsm_alg alg, const uint8_t *in, size_t k, uint8_t *dec, size_t *n)
{
	CK_MECHANISM m = { CKM_RSA_X_509, NULL, 0 };
	uint8_t raw[RSA_MAX_BYTES];
	CK_ULONG rlen = k;
	CK_RV rv;
	int r, rc;

	rv = h->f->C_DecryptInit(s->h, &m, key);
	if (rv != CKR_OK) {
		rc = hsm_ck(s, rv);
		goto out;
	}
	rv = h->f->C_Decrypt(s->h, (CK_BYTE *)in, k, raw, &rlen);
	if (rv != CKR_OK) {
		/* e.g. a ciphertext >= n: a decoding failure like any other */
		rc = hsm_ck_blame(s, rv, HSM_ERR_DECRYPT);
		goto out;
	}
	if (rlen > k) {
		rc = HSM_ERR_INTERNAL;
		goto out;
	}
	if (rlen < k) { /* a module that strips leading zeros */
		memmove(raw + (k - rlen), raw, rlen);
		memset(raw, 0, k - rlen);
	}
	if (alg == HSM_ALG_RSA_OAEP_256)
		r = RSA_padding_check_PKCS1_OAEP_mgf1(dec, (int)k, raw, (int)k,
		    (int)k, NULL, 0, EVP_sha256(), EVP_sha256());
	else
		r = RSA_padding_check_PKCS1_type_2(dec, (int)k, raw, (int)k,
		    (int)k);
	/* both decoders raise errors in constant time; drop them all */
	ERR_clear_error();
	if (r < 0) {
		rc = HSM_ERR_DECRYPT;
		goto out;
	}
	*n = (size_t)r;
	rc = 0;
out:
	OPENSSL_cleanse(raw, sizeof(raw));
	return rc;
}

static int
decrypt_oaep1(tok_t *h, struct hsm_sess *s, CK_OBJECT_HANDLE key,
    const uint8_t *in, size_t k, uint8_t *dec, size_t *n)
{
	CK_RSA_PKCS_OAEP_PARAMS p = { CKM_SHA_1, CKG_MGF1_SHA1,
		CKZ_DATA_SPECIFIED, NULL, 0 };
	CK_MECHANISM m = { CKM_RSA_PKCS_OAEP, &p, sizeof(p) };
	CK_ULONG dlen = k;
	CK_RV rv;

	rv = h->f->C_DecryptInit(s->h, &m, key);
	if (rv != CKR_OK)
		return hsm_ck(s, rv);
	rv = h->f->C_Decrypt(s->h, (CK_BYTE *)in, k, dec, &dlen);
	if (rv != CKR_OK)
		return hsm_ck_blame(s, rv, HSM_ERR_DECRYPT);
	if (dlen > k)
		return HSM_ERR_INTERNAL;
	*n = dlen;
	return 0;
}

/* Hands back what key_take took. */
static void
key_give(tok_t *h, struct hsm_sess *s, struct hsm_cache_ent *e)
{
	hsm_key_put(h, s, e);
	hsm_sess_give(h, s);
}

/* A session and, in it, the key object of blob (hsm_key_get); when this
 * fails, nothing is held. key_give hands both back. */
static int
key_take(tok_t *h, struct hsm_sess *s, const char *cache_id,
    const uint8_t *blob, size_t blob_len, struct hsm_cache_ent **e)
{
	int rc;

	*e = NULL;
	if ((rc = hsm_sess_take(h, s)) != 0)
		return rc;
	if ((rc = hsm_key_get(h, s, cache_id, blob, blob_len, e)) != 0)
		key_give(h, s, *e);
	return rc;
}

int
tok_key_decrypt(tok_t *h, const char *cache_id, const uint8_t *blob,
    size_t blob_len, enum hsm_alg alg, const uint8_t *in, size_t in_len,
    uint8_t *out, size_t *out_len)
{
	struct hsm_blob_info bi;
	struct hsm_cache_ent *e = NULL;
	struct hsm_sess s;
	uint8_t dec[RSA_MAX_BYTES];
	size_t n = 0;
	int have_sess = 0, rc;

	if (h == NULL || in == NULL || out == NULL || out_len == NULL ||
	    !is_decrypt_alg(alg))
		return HSM_ERR_ARGS;
	if ((rc = hsm_blob_parse(blob, blob_len, &bi)) != 0)
		return rc;
	if (bi.version != HSM_BLOB_VERSION)
		return HSM_ERR_INTERNAL; /* bound to nothing: never used */
	if (bi.kty != HSM_KTY_RSA || in_len != bi.size ||
	    bi.size > RSA_MAX_BYTES)
		return HSM_ERR_ARGS;
	if ((rc = key_take(h, &s, cache_id, blob, blob_len, &e)) != 0)
		goto out;
	have_sess = 1;
	if (alg == HSM_ALG_RSA_OAEP)
		rc = decrypt_oaep1(h, &s, e->obj, in, bi.size, dec, &n);
	else
		rc = decrypt_raw(h, &s, e->obj, alg, in, bi.size, dec, &n);
	if (rc != 0)
		goto out;
	if (n > *out_len) {
		rc = HSM_ERR_ARGS;
		goto out;
	}
	memcpy(out, dec, n);
	*out_len = n;
out:
	OPENSSL_cleanse(dec, sizeof(dec));
	if (have_sess)
		key_give(h, &s, e);
	return rc;
}

static int
sign_in_token(tok_t *h, struct hsm_sess *s, CK_OBJECT_HANDLE key,
    const struct alg_info *a, const uint8_t *digest, size_t dlen, uint8_t *sig,
    size_t need)
{
	CK_RSA_PKCS_PSS_PARAMS pss = { a->hash, a->mgf, a->dlen };
	CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
	uint8_t buf[32 + 64];
	const uint8_t *msg = digest;
	CK_ULONG mlen = dlen, slen = need;
	CK_RV rv;

	if (a->kty == HSM_KTY_RSA && is_pss(a->alg)) {
		m.mechanism = CKM_RSA_PKCS_PSS;
		m.pParameter = &pss;
		m.ulParameterLen = sizeof(pss);
	} else if (a->kty == HSM_KTY_RSA) {
		m.mechanism = CKM_RSA_PKCS;
		memcpy(buf, a->di, a->di_len);
		memcpy(buf + a->di_len, digest, dlen);
		msg = buf;
		mlen = a->di_len + dlen;
	}
	rv = h->f->C_SignInit(s->h, &m, key);
	if (rv != CKR_OK)
		return hsm_ck(s, rv);
	rv = h->f->C_Sign(s->h, (CK_BYTE *)msg, mlen, sig, &slen);
	if (rv != CKR_OK)
		return hsm_ck(s, rv);
	if (slen != need)
		return HSM_ERR_INTERNAL;
	return 0;
}

int
tok_key_sign(tok_t *h, const char *cache_id, const uint8_t *blob,
    size_t blob_len, enum hsm_alg alg, const uint8_t *digest, size_t dlen,
    uint8_t *sig, size_t *sig_len)
{
	const struct alg_info *a = alg_find(alg);
	struct hsm_blob_info bi;
	struct hsm_cache_ent *e = NULL;
	struct hsm_sess s;
	size_t need;
	int have_sess = 0, rc;

	if (h == NULL || a == NULL || is_decrypt_alg(alg) || digest == NULL ||
	    sig == NULL || sig_len == NULL || dlen != a->dlen)
		return HSM_ERR_ARGS;
	if ((rc = hsm_blob_parse(blob, blob_len, &bi)) != 0)
		return rc;
	if (bi.version != HSM_BLOB_VERSION)
		return HSM_ERR_INTERNAL;
	if (bi.kty != a->kty || (a->kty == HSM_KTY_EC && bi.size != a->field))
		return HSM_ERR_ARGS;
	need = a->kty == HSM_KTY_RSA ? bi.size : 2 * bi.size;
	if (*sig_len < need)
		return HSM_ERR_ARGS;
	if ((rc = key_take(h, &s, cache_id, blob, blob_len, &e)) != 0)
		goto out;
	have_sess = 1;
	if ((rc = sign_in_token(h, &s, e->obj, a, digest, dlen, sig, need)) !=
	    0)
		goto out;
	*sig_len = need;
out:
	if (have_sess)
		key_give(h, &s, e);
	return rc;
}

int
tok_jwt_sign(tok_t *h, const uint8_t *data, size_t len, uint8_t sig[64])
{
	const struct alg_info *a = alg_find(HSM_ALG_ES256);
	uint8_t digest[32];
	struct hsm_sess s;
	int rc;

	if (h == NULL || (data == NULL && len > 0) || sig == NULL)
		return HSM_ERR_ARGS;
	SHA256(data, len, digest);
	if ((rc = hsm_sess_take(h, &s)) != 0)
		return rc;
	rc = sign_in_token(h, &s, s.jwt_priv, a, digest, sizeof(digest), sig,
	    64);
	hsm_sess_give(h, &s);
	return rc;
}

int
tok_jwt_public(tok_t *h, uint8_t **spki, size_t *spki_len)
{
	if (h == NULL || spki == NULL || spki_len == NULL)
		return HSM_ERR_ARGS;
	if ((*spki = malloc(h->jwt_spki_len)) == NULL)
		return HSM_ERR_NO_MEMORY;
	memcpy(*spki, h->jwt_spki, h->jwt_spki_len);
	*spki_len = h->jwt_spki_len;
	return 0;
}

/* ---- public-key operations in OpenSSL ---- */

static EVP_PKEY *
spki_decode(const uint8_t *spki, size_t len)
{
	const unsigned char *p = spki;
	EVP_PKEY *pk;

	pk = d2i_PUBKEY(NULL, &p, (long)len);
	if (pk != NULL && p != spki + len) {
		EVP_PKEY_free(pk);
		pk = NULL;
	}
	ERR_clear_error();
	return pk;
}

/*
 * Decoding a public key with OpenSSL 3 costs more than the RSA public
 * operation itself, so each thread keeps its last decoded keys: a small
 * direct-mapped cache, per thread (no lock, no sharing), freed when the
 * thread ends. A hit compares the whole SPKI, not just its hash. Each
 * slot also keeps, per encryption algorithm, a context already set up
 * for it (padding, digests): setting one up costs OpenSSL 3 provider
 * lookups on every call otherwise.
 */
#define PUB_CACHE_SLOTS 64
#define PUB_ENC_ALGS 3 /* HSM_ALG_RSA_OAEP .. HSM_ALG_RSA1_5 */

struct pub_slot {
	uint8_t *spki;
	size_t len;
	EVP_PKEY *pk;
	EVP_PKEY_CTX *enc[PUB_ENC_ALGS];
};

static void
pub_slot_clear(struct pub_slot *sl)
{
	size_t j;

	for (j = 0; j < PUB_ENC_ALGS; j++) {
		EVP_PKEY_CTX_free(sl->enc[j]);
		sl->enc[j] = NULL;
	}
	free(sl->spki);
	EVP_PKEY_free(sl->pk);
	sl->spki = NULL;
	sl->pk = NULL;
	sl->len = 0;
}

/* The only process-wide state of hsm/: the key that finds each thread's
 * cache. It is written once, by pthread_once, and only read after that
 * (immutable after init); what it finds is the calling thread's own, so
 * nothing here is shared between threads. A context cannot hold it: the
 * public-key calls take none, and vault/ calls them from every worker. */
static pthread_key_t pub_cache_key;
static pthread_once_t pub_cache_once = PTHREAD_ONCE_INIT;

static void
pub_cache_free(void *arg)
{
	struct pub_slot *slots = arg;
	size_t i;

	for (i = 0; slots && i < PUB_CACHE_SLOTS; i++)
		pub_slot_clear(&slots[i]);
	free(slots);
}

static void
pub_cache_init(void)
{
	(void)pthread_key_create(&pub_cache_key, pub_cache_free);
}

/* This thread's cache slot holding spki decoded, or NULL. Borrowed:
 * valid until this thread's next call; never freed by the caller. */
static struct pub_slot *
spki_slot(const uint8_t *spki, size_t len)
{
	struct pub_slot *slots, *sl;

	if (spki == NULL || len == 0 || len > 4096)
		return NULL;
	pthread_once(&pub_cache_once, pub_cache_init);
	slots = pthread_getspecific(pub_cache_key);
	if (slots == NULL) {
		slots = calloc(PUB_CACHE_SLOTS, sizeof(*slots));
		if (slots == NULL ||
		    pthread_setspecific(pub_cache_key, slots) != 0) {
			free(slots);
			return NULL;
		}
	}
	sl = &slots[hash_fnv1a(spki, len) % PUB_CACHE_SLOTS];
	if (sl->pk && sl->len == len && memcmp(sl->spki, spki, len) == 0)
		return sl;
	pub_slot_clear(sl);
	sl->spki = malloc(len);
	if (sl->spki == NULL)
		return NULL;
	if ((sl->pk = spki_decode(spki, len)) == NULL) {
		free(sl->spki);
		sl->spki = NULL;
		return NULL;
	}
	memcpy(sl->spki, spki, len);
	sl->len = len;
	return sl;
}

/* A decoded key for spki, borrowed as spki_slot's. */
static EVP_PKEY *
spki_parse(const uint8_t *spki, size_t len)
{
	struct pub_slot *sl = spki_slot(spki, len);

	return sl ? sl->pk : NULL;
}

/* A context set up to encrypt with the slot's key under alg, kept in the
 * slot; NULL on failure. */
static EVP_PKEY_CTX *
enc_ctx(struct pub_slot *sl, enum hsm_alg alg, const struct alg_info *a)
{
	size_t j = (size_t)(alg - HSM_ALG_RSA_OAEP);
	EVP_PKEY_CTX *ctx;

	if (j >= PUB_ENC_ALGS)
		return NULL;
	if (sl->enc[j] != NULL)
		return sl->enc[j];
	if ((ctx = EVP_PKEY_CTX_new(sl->pk, NULL)) == NULL ||
	    EVP_PKEY_encrypt_init(ctx) != 1)
		goto fail;
	if (alg == HSM_ALG_RSA1_5) {
		if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1)
			goto fail;
	} else if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) !=
	        1 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, alg_md(a)) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, alg_md(a)) != 1) {
		goto fail;
	}
	sl->enc[j] = ctx;
	return ctx;
fail:
	EVP_PKEY_CTX_free(ctx);
	return NULL;
}

size_t
hsm_pub_size(const uint8_t *spki, size_t spki_len)
{
	EVP_PKEY *pk = spki_parse(spki, spki_len);
	size_t n = 0;

	if (pk != NULL && (EVP_PKEY_is_a(pk, "RSA") || EVP_PKEY_is_a(pk, "EC")))
		n = ((size_t)EVP_PKEY_get_bits(pk) + 7) / 8;
	return n;
}

int
hsm_pub_encrypt(const uint8_t *spki, size_t spki_len, enum hsm_alg alg,
    const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len)
{
	const struct alg_info *a = alg_find(alg);
	struct pub_slot *sl;
	EVP_PKEY_CTX *ctx;
	size_t k, max, n;
	int rc = HSM_ERR_ARGS;

	if (a == NULL || !is_decrypt_alg(alg) || (in == NULL && in_len > 0) ||
	    out == NULL || out_len == NULL)
		return HSM_ERR_ARGS;
	if ((sl = spki_slot(spki, spki_len)) == NULL ||
	    !EVP_PKEY_is_a(sl->pk, "RSA"))
		goto out;
	k = ((size_t)EVP_PKEY_get_bits(sl->pk) + 7) / 8;
	max = alg == HSM_ALG_RSA_OAEP   ? k - 42 :
	    alg == HSM_ALG_RSA_OAEP_256 ? k - 66 :
	                                  k - 11;
	if (k < 128 || k > RSA_MAX_BYTES || in_len > max || *out_len < k)
		goto out;
	rc = HSM_ERR_INTERNAL;
	if ((ctx = enc_ctx(sl, alg, a)) == NULL)
		goto out;
	n = *out_len;
	if (EVP_PKEY_encrypt(ctx, out, &n, in, in_len) != 1) {
		/* never reuse a context that failed */
		EVP_PKEY_CTX_free(ctx);
		sl->enc[alg - HSM_ALG_RSA_OAEP] = NULL;
		goto out;
	}
	*out_len = n;
	rc = 0;
out:
	ERR_clear_error();
	return rc;
}

int
hsm_pub_verify(const uint8_t *spki, size_t spki_len, enum hsm_alg alg,
    const uint8_t *digest, size_t dlen, const uint8_t *sig, size_t sig_len,
    int *valid)
{
	const struct alg_info *a = alg_find(alg);
	EVP_PKEY *pk = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	uint8_t *der = NULL;
	const unsigned char *vsig = sig;
	size_t vlen = sig_len, size, der_len = 0;
	int rc = HSM_ERR_ARGS;

	if (valid == NULL)
		return HSM_ERR_ARGS;
	*valid = 0;
	if (a == NULL || is_decrypt_alg(alg) || digest == NULL ||
	    dlen != a->dlen || (sig == NULL && sig_len > 0))
		return HSM_ERR_ARGS;
	if ((pk = spki_parse(spki, spki_len)) == NULL)
		goto out;
	size = ((size_t)EVP_PKEY_get_bits(pk) + 7) / 8;
	if (a->kty == HSM_KTY_RSA) {
		if (!EVP_PKEY_is_a(pk, "RSA"))
			goto out;
		if (sig_len != size) {
			rc = 0; /* well-formed question, answer: invalid */
			goto out;
		}
	} else {
		if (!EVP_PKEY_is_a(pk, "EC") || size != a->field)
			goto out;
		if (sig_len != 2 * size) {
			rc = 0;
			goto out;
		}
		rc = hsm_ecdsa_sig_der(sig, sig_len, &der, &der_len);
		if (rc != 0)
			goto out;
		vsig = der;
		vlen = der_len;
	}
	rc = HSM_ERR_INTERNAL;
	if ((ctx = EVP_PKEY_CTX_new(pk, NULL)) == NULL ||
	    EVP_PKEY_verify_init(ctx) != 1)
		goto out;
	if (a->kty == HSM_KTY_RSA) {
		if (EVP_PKEY_CTX_set_signature_md(ctx, alg_md(a)) != 1)
			goto out;
		if (is_pss(alg)) {
			if (EVP_PKEY_CTX_set_rsa_padding(ctx,
			        RSA_PKCS1_PSS_PADDING) != 1 ||
			    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, alg_md(a)) != 1 ||
			    EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx,
			        RSA_PSS_SALTLEN_DIGEST) != 1)
				goto out;
		} else if (EVP_PKEY_CTX_set_rsa_padding(ctx,
		               RSA_PKCS1_PADDING) != 1) {
			goto out;
		}
	}
	*valid = EVP_PKEY_verify(ctx, vsig, vlen, digest, dlen) == 1;
	rc = 0;
out:
	ERR_clear_error();
	OPENSSL_free(der);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}
