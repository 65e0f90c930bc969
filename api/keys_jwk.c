/*
 * keys_jwk.c — JSON Web Keys both ways: the public JWK of a stored key
 * (from its SubjectPublicKeyInfo), and an imported JWK with private parts
 * checked (consistent CRT parts, point on the curve, sizes) and written as
 * the PKCS#8 that goes to vault/.
 *
 * The PKCS#8 is written here, by a small DER writer into one buffer the
 * caller wipes, and the key is checked with BIGNUMs made by BN_secure_new
 * and a BN_CTX_secure_new context: OpenSSL wipes those when it frees or
 * grows them. Going through EVP_PKEY_fromdata and i2d_PKCS8_PRIV_KEY_INFO
 * instead leaves copies of every part in freed memory (OSSL_PARAM blocks,
 * encoder buffers).
 *
 * Must never: echo or log key material (errors name fields, never
 * values); keep a decoded private part beyond the call (each is wiped).
 */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "api/keys.h"
#include "hsm/buf.h"

#define PART_MAX 1024 /* RSA-4096 parts are 512 bytes */
#define EC_POINT_MAX (1 + 2 * 66)
#define CURVE_OID_MAX 16

/* ---- the public JWK -------------------------------------------------------- */

static int
rsa_public(json_t *jwk, EVP_PKEY *pk)
{
	BIGNUM *n = NULL, *e = NULL;
	uint8_t buf[PART_MAX];
	int len, rc = VLT_ERR_INTERNAL, bad = 0;

	if (!EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n) ||
	    !EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e) ||
	    BN_num_bytes(n) > (int)sizeof(buf) ||
	    BN_num_bytes(e) > (int)sizeof(buf))
		goto out;
	len = BN_bn2bin(n, buf);
	api_json_put(jwk, "n", api_json_b64(buf, (size_t)len), &bad);
	len = BN_bn2bin(e, buf);
	api_json_put(jwk, "e", api_json_b64(buf, (size_t)len), &bad);
	rc = bad ? VLT_ERR_NO_MEMORY : 0;
out:
	BN_free(n);
	BN_free(e);
	return rc;
}

static int
ec_public(json_t *jwk, EVP_PKEY *pk, const struct vlt_key_info *k)
{
	const struct hsm_curve_info *c = hsm_curve_by_code((unsigned)k->crv);
	uint8_t pt[EC_POINT_MAX];
	size_t len = 0, fl;
	int bad = 0;

	if (c != NULL)
		api_json_put(jwk, "crv", json_string(c->jwk), &bad);
	if (!EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, pt,
	        sizeof(pt), &len) ||
	    len <= 1 || pt[0] != 0x04)
		return VLT_ERR_INTERNAL;
	fl = (len - 1) / 2;
	api_json_put(jwk, "x", api_json_b64(pt + 1, fl), &bad);
	api_json_put(jwk, "y", api_json_b64(pt + 1 + fl, fl), &bad);
	return bad ? VLT_ERR_NO_MEMORY : 0;
}

json_t *
keys_jwk_public(const struct vlt_key_info *k, const char *kid)
{
	const unsigned char *p = k->spki;
	EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)k->spki_len);
	int rsa = k->kty == VLT_KTY_RSA, bad = 0;
	json_t *jwk;

	if (pk == NULL)
		return NULL;
	jwk = json_object();
	api_json_put(jwk, "kid", json_string(kid), &bad);
	api_json_put(jwk, "kty",
	    json_string(rsa ? (k->hsm ? "RSA-HSM" : "RSA") :
	                      (k->hsm ? "EC-HSM" : "EC")),
	    &bad);
	api_json_put(jwk, "key_ops", keys_ops_json(k->key_ops), &bad);
	/* a key whose numbers cannot be read still answers, without them,
	 * as it always has; a JWK short of memory is not answered at all */
	if ((rsa ? rsa_public(jwk, pk) : ec_public(jwk, pk, k)) ==
	    VLT_ERR_NO_MEMORY)
		bad = 1;
	EVP_PKEY_free(pk);
	ERR_clear_error();
	if (bad) {
		json_decref(jwk);
		return NULL;
	}
	return jwk;
}

/* ---- a JWK with private parts to PKCS#8 ------------------------------------ */

#define RSA_NPARTS 8
#define STACK_SCRUB (64 * 1024)

struct part {
	const char *jwk; /* JWK field */
	uint8_t *b;      /* big-endian, as decoded */
	size_t len;
};

static int
decode_part(json_t *key, struct part *p, struct api_resp *r)
{
	const char *s;

	int rc;

	if ((rc = api_field_string(key, p->jwk, 1, &s, r)) != 0)
		return rc;
	if (strlen(s) > (PART_MAX / 3 + 1) * 4 + 4 ||
	    policy_b64url_decode(s, strlen(s), &p->b, &p->len) != 0 ||
	    p->len == 0 || p->len > PART_MAX) {
		api_resp_error(r, 400, "BadParameter",
		    "The field 'key.%s' is "
		    "not valid base64url of a key part.",
		    p->jwk);
		return VLT_ERR_BAD_PARAM;
	}
	return 0;
}

static void
parts_free(struct part *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		freezero(p[i].b, p[i].len);
		p[i].b = NULL;
	}
}

/*
 * OpenSSL's arithmetic on the parts leaves some of them in stack frames
 * below the caller's (bn_mul_mont's scratch words, ecp_nistz256's scalar
 * digits): once it has returned, this overwrites that much of the
 * thread's stack (connection threads have HTTP_THREAD_STACK, 512 KiB).
 */
static void __attribute__((noinline)) stack_scrub(void)
{
	unsigned char pad[STACK_SCRUB];

	OPENSSL_cleanse(pad, sizeof(pad));
}

/* A part as a BIGNUM that OpenSSL wipes; NULL when out of memory. */
static BIGNUM *
part_bn(const struct part *p)
{
	BIGNUM *bn = BN_secure_new();

	if (bn == NULL)
		return NULL;
	BN_set_flags(bn, BN_FLG_CONSTTIME);
	if (BN_bin2bn(p->b, (int)p->len, bn) == NULL) {
		BN_clear_free(bn);
		return NULL;
	}
	return bn;
}

/* Bits of a big-endian unsigned number. */
static int
be_bits(const uint8_t *b, size_t n)
{
	int bits;

	while (n > 0 && b[0] == 0) {
		b++;
		n--;
	}
	if (n == 0)
		return 0;
	for (bits = 8; bits > 0 && !(b[0] & (1u << (bits - 1))); bits--)
		;
	return (int)(8 * (n - 1)) + bits;
}

/*
 * 1 if n, e, d, p, q, dp, dq, qi form an RSA key pair, as OpenSSL's key
 * checks had it: e odd and 17 to 256 bits (SP 800-56B), p and q primes of
 * half the modulus' bits with n = p q, 1 < d < n, e d = 1 mod p-1 and
 * mod q-1, dp = d mod p-1, dq = d mod q-1, q qi = 1 mod p. 0 if not,
 * VLT_ERR_NO_MEMORY when out of memory.
 */
static int
rsa_consistent(const struct part *ps, int bits)
{
	BIGNUM *v[RSA_NPARTS] = { NULL };
	BIGNUM *n, *e, *d, *p, *q, *dp, *dq, *qi, *t, *p1, *q1;
	BN_CTX *ctx = BN_CTX_secure_new();
	size_t i;
	int rc = VLT_ERR_NO_MEMORY, good, prime;

	if (ctx == NULL)
		return VLT_ERR_NO_MEMORY;
	BN_CTX_start(ctx);
	for (i = 0; i < RSA_NPARTS; i++)
		if ((v[i] = part_bn(&ps[i])) == NULL)
			goto out;
	n = v[0];
	e = v[1];
	d = v[2];
	p = v[3];
	q = v[4];
	dp = v[5];
	dq = v[6];
	qi = v[7];
	t = BN_CTX_get(ctx);
	p1 = BN_CTX_get(ctx);
	q1 = BN_CTX_get(ctx);
	if (q1 == NULL || BN_copy(p1, p) == NULL || BN_copy(q1, q) == NULL ||
	    !BN_sub_word(p1, 1) || !BN_sub_word(q1, 1))
		goto out;
	good = BN_is_odd(e) && BN_num_bits(e) > 16 && BN_num_bits(e) <= 256 &&
	    BN_num_bits(p) == bits / 2 && BN_num_bits(q) == bits / 2 &&
	    BN_cmp(d, BN_value_one()) > 0 && BN_cmp(d, n) < 0 &&
	    BN_cmp(qi, p) < 0;
	if (!BN_mul(t, p, q, ctx))
		goto out;
	good &= BN_cmp(t, n) == 0;
	if (!BN_mod_mul(t, e, d, p1, ctx))
		goto out;
	good &= BN_is_one(t);
	if (!BN_mod_mul(t, e, d, q1, ctx))
		goto out;
	good &= BN_is_one(t);
	if (!BN_mod(t, d, p1, ctx))
		goto out;
	good &= BN_cmp(t, dp) == 0;
	if (!BN_mod(t, d, q1, ctx))
		goto out;
	good &= BN_cmp(t, dq) == 0;
	if (!BN_mod_mul(t, q, qi, p, ctx))
		goto out;
	good &= BN_is_one(t);
	/* the costly part last, and only for a key that is otherwise right */
	for (i = 3; good && i <= 4; i++) {
		if ((prime = BN_check_prime(v[i], ctx, NULL)) < 0)
			goto out;
		good &= prime;
	}
	rc = good;
out:
	for (i = 0; i < RSA_NPARTS; i++)
		BN_clear_free(v[i]);
	BN_CTX_end(ctx);
	BN_CTX_free(ctx);
	return rc;
}

/*
 * 1 if d is a private key of the curve nid (0 < d < order) whose public
 * point is pt (uncompressed, ptlen bytes), so pt is on the curve; 0 if
 * not, VLT_ERR_NO_MEMORY when out of memory.
 */
static int
ec_consistent(int nid, const struct part *dp, const uint8_t *pt, size_t ptlen)
{
	EC_GROUP *g = EC_GROUP_new_by_curve_name(nid);
	BN_CTX *ctx = BN_CTX_secure_new();
	EC_POINT *pub = NULL;
	BIGNUM *d = NULL;
	uint8_t mine[1 + 2 * 66];
	size_t n;
	int rc = VLT_ERR_NO_MEMORY;

	if (g == NULL || ctx == NULL || (pub = EC_POINT_new(g)) == NULL ||
	    (d = part_bn(dp)) == NULL)
		goto out;
	rc = 0;
	if (BN_is_zero(d) || BN_cmp(d, EC_GROUP_get0_order(g)) >= 0)
		goto out;
	rc = VLT_ERR_NO_MEMORY;
	if (!EC_POINT_mul(g, pub, d, NULL, NULL, ctx))
		goto out;
	n = EC_POINT_point2oct(g, pub, POINT_CONVERSION_UNCOMPRESSED, mine,
	    sizeof(mine), ctx);
	/* public values: an ordinary comparison */
	rc = n == ptlen && memcmp(mine, pt, n) == 0;
out:
	BN_clear_free(d);
	EC_POINT_clear_free(pub);
	BN_CTX_free(ctx);
	EC_GROUP_free(g);
	return rc;
}

/* A DER writer that only measures when p is NULL. Lengths are below
 * 2^24 (parts are at most PART_MAX bytes). */
struct der {
	uint8_t *p;
	size_t len;
};

static size_t
der_len_size(size_t n)
{
	return n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 4;
}

/* bytes of a TLV with n bytes of content */
static size_t
der_tlv(size_t n)
{
	return 1 + der_len_size(n) + n;
}

static void
der_put(struct der *w, const void *b, size_t n)
{
	if (w->p != NULL && n > 0)
		memcpy(w->p + w->len, b, n);
	w->len += n;
}

static void
der_hdr(struct der *w, uint8_t tag, size_t n)
{
	uint8_t h[5];
	size_t k = der_len_size(n), i;

	h[0] = tag;
	if (k == 1) {
		h[1] = (uint8_t)n;
	} else {
		h[1] = (uint8_t)(0x80 | (k - 1));
		for (i = 0; i + 1 < k; i++)
			h[2 + i] = (uint8_t)(n >> (8 * (k - 2 - i)));
	}
	der_put(w, h, 1 + k);
}

/* content bytes of the INTEGER of an unsigned big-endian number (n >= 1) */
static size_t
der_uint_len(const uint8_t *b, size_t n)
{
	while (n > 1 && b[0] == 0) {
		b++;
		n--;
	}
	return n + ((b[0] & 0x80) ? 1 : 0);
}

static void
der_uint(struct der *w, const uint8_t *b, size_t n)
{
	static const uint8_t zero;

	while (n > 1 && b[0] == 0) {
		b++;
		n--;
	}
	der_hdr(w, 0x02, n + ((b[0] & 0x80) ? 1 : 0));
	if (b[0] & 0x80)
		der_put(w, &zero, 1);
	der_put(w, b, n);
}

static const uint8_t der_v0[] = { 0x02, 0x01, 0x00 };
static const uint8_t der_v1[] = { 0x02, 0x01, 0x01 };
/* AlgorithmIdentifier { rsaEncryption, NULL } */
static const uint8_t der_alg_rsa[] = { 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48,
	0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00 };
static const uint8_t der_oid_ecpub[] = { 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce,
	0x3d, 0x02, 0x01 };

/*
 * PKCS#8 PrivateKeyInfo { 0, rsaEncryption, RSAPrivateKey { 0, n, e, d,
 * p, q, dp, dq, qi } } (RFC 5208, RFC 8017 A.1.2).
 */
static void
der_rsa_pkcs8(struct der *w, const struct part *ps)
{
	size_t i, rk = sizeof(der_v0), oct;

	for (i = 0; i < RSA_NPARTS; i++)
		rk += der_tlv(der_uint_len(ps[i].b, ps[i].len));
	oct = der_tlv(rk);
	der_hdr(w, 0x30, sizeof(der_v0) + sizeof(der_alg_rsa) + der_tlv(oct));
	der_put(w, der_v0, sizeof(der_v0));
	der_put(w, der_alg_rsa, sizeof(der_alg_rsa));
	der_hdr(w, 0x04, oct);
	der_hdr(w, 0x30, rk);
	der_put(w, der_v0, sizeof(der_v0));
	for (i = 0; i < RSA_NPARTS; i++)
		der_uint(w, ps[i].b, ps[i].len);
}

/*
 * PKCS#8 PrivateKeyInfo { 0, { id-ecPublicKey, curve }, ECPrivateKey { 1,
 * d, [0] curve, [1] public point } } (RFC 5208, RFC 5915).
 */
static void
der_ec_pkcs8(struct der *w, const uint8_t *oid, size_t oid_len,
    const struct part *d, const uint8_t *pt, size_t ptlen)
{
	size_t alg = sizeof(der_oid_ecpub) + oid_len;
	size_t bits = der_tlv(1 + ptlen);
	size_t ek = sizeof(der_v1) + der_tlv(d->len) + der_tlv(oid_len) +
	    der_tlv(bits);
	static const uint8_t unused_bits;

	der_hdr(w, 0x30, sizeof(der_v0) + der_tlv(alg) + der_tlv(der_tlv(ek)));
	der_put(w, der_v0, sizeof(der_v0));
	der_hdr(w, 0x30, alg);
	der_put(w, der_oid_ecpub, sizeof(der_oid_ecpub));
	der_put(w, oid, oid_len);
	der_hdr(w, 0x04, der_tlv(ek));
	der_hdr(w, 0x30, ek);
	der_put(w, der_v1, sizeof(der_v1));
	der_hdr(w, 0x04, d->len);
	der_put(w, d->b, d->len);
	der_hdr(w, 0xa0, oid_len);
	der_put(w, oid, oid_len);
	der_hdr(w, 0xa1, bits);
	der_hdr(w, 0x03, 1 + ptlen);
	der_put(w, &unused_bits, 1);
	der_put(w, pt, ptlen);
}


/* The DER of a curve's OID (06 len bytes), from OpenSSL's object table. */
static int
curve_oid(int nid, uint8_t *out, size_t cap, size_t *len)
{
	const ASN1_OBJECT *o = OBJ_nid2obj(nid);
	unsigned char *p = out;
	int n;

	if (o == NULL || (n = i2d_ASN1_OBJECT(o, NULL)) <= 0 ||
	    (size_t)n > cap || i2d_ASN1_OBJECT(o, &p) != n)
		return VLT_ERR_INTERNAL;
	*len = (size_t)n;
	return 0;
}

/* An imported key's parts, decoded, and what the PKCS#8 needs of them. */
struct jwk_key {
	enum vlt_kty kty;
	struct part *ps;
	size_t np;
	const struct hsm_curve_info *crv;
	uint8_t pt[EC_POINT_MAX]; /* EC: the uncompressed public point */
	size_t ptlen;
	uint8_t oid[CURVE_OID_MAX];
	size_t oid_len;
};

/* 1 consistent, 0 not, or a negative error with r filled */
static int
rsa_check(struct jwk_key *jk, struct api_resp *r)
{
	int bits = be_bits(jk->ps[0].b, jk->ps[0].len);

	if (bits != 2048 && bits != 3072 && bits != 4096)
		return api_resp_bad(r,
		    "The RSA key size must be 2048, 3072 or 4096 "
		    "bits.");
	return rsa_consistent(jk->ps, bits);
}

static int
ec_check(struct jwk_key *jk, struct api_resp *r)
{
	size_t field = jk->crv->field;

	if (jk->ps[0].len != field || jk->ps[1].len != field ||
	    jk->ps[2].len != field)
		return api_resp_bad(r,
		    "The EC key's x, y and d must be as long as the "
		    "curve's field.");
	if (curve_oid(jk->crv->nid, jk->oid, sizeof(jk->oid), &jk->oid_len) !=
	    0)
		return VLT_ERR_INTERNAL;
	jk->pt[0] = 0x04;
	memcpy(jk->pt + 1, jk->ps[0].b, field);
	memcpy(jk->pt + 1 + field, jk->ps[1].b, field);
	jk->ptlen = 1 + 2 * field;
	return ec_consistent(jk->crv->nid, &jk->ps[2], jk->pt, jk->ptlen);
}

static void
der_pkcs8(struct der *w, const struct jwk_key *jk)
{
	if (jk->kty == VLT_KTY_RSA)
		der_rsa_pkcs8(w, jk->ps);
	else
		der_ec_pkcs8(w, jk->oid, jk->oid_len, &jk->ps[2], jk->pt,
		    jk->ptlen);
}

/* Decodes and checks the parts of jk; 0 when they form a key. */
static int
jwk_check(json_t *key, struct jwk_key *jk, struct api_resp *r)
{
	size_t i;
	int rc, ok;

	if (jk->kty == VLT_KTY_EC &&
	    (rc = keys_parse_crv(key, "key.crv", 1, &jk->crv, r)) != 0)
		return rc;
	for (i = 0; i < jk->np; i++)
		if ((rc = decode_part(key, &jk->ps[i], r)) != 0)
			return rc;
	ok = jk->kty == VLT_KTY_RSA ? rsa_check(jk, r) : ec_check(jk, r);
	stack_scrub();
	if (ok == VLT_ERR_BAD_PARAM)
		return ok;
	if (ok < 0) {
		api_resp_vault_error(r, VLT_ERR_NO_MEMORY, NULL, NULL);
		return VLT_ERR_NO_MEMORY;
	}
	if (ok == 0)
		return api_resp_bad(r,
		    jk->kty == VLT_KTY_RSA ?
		        "The RSA key is "
		        "inconsistent: its parts do not form a valid key pair." :
		        "The EC key is invalid: the point is not on the curve or "
		        "does not match the private key.");
	return 0;
}

int
keys_jwk_pkcs8(json_t *key, enum vlt_kty kty, uint8_t **pkcs8, size_t *len,
    struct api_resp *r)
{
	struct part rsa[RSA_NPARTS] = {
		{ "n", NULL, 0 },
		{ "e", NULL, 0 },
		{ "d", NULL, 0 },
		{ "p", NULL, 0 },
		{ "q", NULL, 0 },
		{ "dp", NULL, 0 },
		{ "dq", NULL, 0 },
		{ "qi", NULL, 0 },
	};
	struct part ec[] = {
		{ "x", NULL, 0 },
		{ "y", NULL, 0 },
		{ "d", NULL, 0 },
	};
	struct jwk_key jk;
	struct der w = { NULL, 0 };
	int rc;

	*pkcs8 = NULL;
	*len = 0;
	memset(&jk, 0, sizeof(jk));
	jk.kty = kty;
	jk.ps = kty == VLT_KTY_RSA ? rsa : ec;
	jk.np = kty == VLT_KTY_RSA ? RSA_NPARTS : 3;
	if ((rc = jwk_check(key, &jk, r)) != 0)
		goto out;
	der_pkcs8(&w, &jk); /* measure, then write */
	if ((w.p = malloc(w.len)) == NULL) {
		rc = VLT_ERR_NO_MEMORY;
		api_resp_vault_error(r, rc, NULL, NULL);
		goto out;
	}
	*len = w.len;
	w.len = 0;
	der_pkcs8(&w, &jk);
	*pkcs8 = w.p;
out:
	OPENSSL_cleanse(jk.pt, sizeof(jk.pt));
	parts_free(jk.ps, jk.np);
	ERR_clear_error();
	return rc;
}

void
keys_jwk_wipe(json_t *key)
{
	static const char *const priv[] = { "d", "p", "q", "dp", "dq", "qi" };
	size_t i;
	json_t *v;

	if (!json_is_object(key))
		return;
	for (i = 0; i < sizeof(priv) / sizeof(priv[0]); i++) {
		v = json_object_get(key, priv[i]);
		if (json_is_string(v))
			OPENSSL_cleanse((char *)json_string_value(v),
			    json_string_length(v));
	}
}
