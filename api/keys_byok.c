/*
 * keys_byok.c — key import (a JsonWebKey with private parts, or a BYOK
 * key_hsm transfer blob), backup, restore and rotation policies.
 *
 * Owns: parsing and validating imported JWKs (consistent CRT parts, point
 * on the curve, sizes; OpenSSL BIGNUM arithmetic on wiped numbers) into a
 * PKCS#8 it writes itself, that goes straight to vault/; the BYOK transfer
 * blob's JSON; the rotation policy's JSON and ISO 8601 durations with
 * Azure's minimums.
 *
 * Must never: echo or log key material (errors name fields, never
 * values); keep a private part beyond the request (every decoded copy,
 * and the JSON strings that carried them, are wiped before return).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>

#include "api/api.h"

#define TAGS_MAX 15
#define TAG_NAME_MAX 512
#define TAG_VALUE_MAX 256
#define PART_MAX 1024          /* RSA-4096 parts are 512 bytes */
#define TRANSFER_MAX (16 * 1024)
#define BACKUP_MAX (API_BODY_MAX)
#define DAY 86400LL

static void
bad(struct api_resp *r, const char *msg)
{
	api_resp_error(r, 400, "BadParameter", "%s", msg);
}

/* ---- shared request parts -------------------------------------------------- */

static int
parse_ops(json_t *arr, unsigned *out, struct api_resp *r)
{
	unsigned bit;
	size_t i;
	json_t *v;

	*out = 0;
	if (arr == NULL || json_is_null(arr))
		return 0;
	if (!json_is_array(arr)) {
		bad(r, "The field 'key_ops' must be an array of strings.");
		return -1;
	}
	json_array_foreach(arr, i, v) {
		const char *s = json_string_value(v);
		if (s == NULL || api_key_op_bit(s, &bit) != 0) {
			bad(r, "The field 'key_ops' holds an unknown key "
			    "operation.");
			return -1;
		}
		*out |= bit;
	}
	return 0;
}

/* attributes and tags of an import body into req; *tags malloc'd */
static int
parse_common(json_t *body, struct vlt_import_req *req, char **tags,
    struct api_resp *r)
{
	json_t *a = json_object_get(body, "attributes"), *v, *t;
	const char *k;
	int has;

	req->enabled = 1;
	*tags = NULL;
	if (a != NULL && !json_is_null(a)) {
		if (!json_is_object(a)) {
			bad(r, "The field 'attributes' must be an object.");
			return -1;
		}
		v = json_object_get(a, "enabled");
		if (v != NULL && !json_is_null(v)) {
			if (!json_is_boolean(v)) {
				bad(r, "The field 'attributes.enabled' must be "
				    "a boolean.");
				return -1;
			}
			req->enabled = json_is_true(v);
		}
		v = json_object_get(a, "exportable");
		if (v != NULL && json_is_true(v)) {
			bad(r, "Exportable keys are not supported: private "
			    "keys never leave this vault's HSM.");
			return -1;
		}
		if (api_parse_time(a, "nbf", &has, &req->nbf, r) != 0 ||
		    api_parse_time(a, "exp", &has, &req->exp, r) != 0)
			return -1;
	}
	t = json_object_get(body, "tags");
	if (t == NULL || json_is_null(t))
		return 0;
	if (!json_is_object(t) || json_object_size(t) > TAGS_MAX) {
		bad(r, "The field 'tags' must be an object of at most 15 "
		    "strings.");
		return -1;
	}
	json_object_foreach(t, k, v) {
		if (!json_is_string(v) || strlen(k) > TAG_NAME_MAX ||
		    json_string_length(v) > TAG_VALUE_MAX) {
			bad(r, "Tag names are at most 512 characters and "
			    "values strings of at most 256.");
			return -1;
		}
	}
	if ((*tags = json_dumps(t, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		api_resp_vault_error(r, VLT_ERR_NO_MEMORY, NULL, NULL);
		return -1;
	}
	return 0;
}

/* Overwrites a JSON string's text in place (the private parts). */
static void
wipe_json_string(json_t *obj, const char *field)
{
	json_t *v = json_object_get(obj, field);

	if (json_is_string(v))
		OPENSSL_cleanse((char *)json_string_value(v),
		    json_string_length(v));
}

/* ---- JWK with private parts -------------------------------------------------- */
/*
 * The PKCS#8 that goes to vault/ is written here, by a small DER writer
 * into one buffer the caller wipes, and the key is checked with BIGNUMs
 * made by BN_secure_new and a BN_CTX_secure_new context: OpenSSL wipes
 * those when it frees or grows them. Going through EVP_PKEY_fromdata and
 * i2d_PKCS8_PRIV_KEY_INFO instead leaves copies of every part in freed
 * memory (OSSL_PARAM blocks, encoder buffers).
 */

#define RSA_NPARTS 8
#define STACK_SCRUB (64 * 1024)

struct part {
	const char *jwk;         /* JWK field */
	uint8_t *b;              /* big-endian, as decoded */
	size_t len;
};

static int
decode_part(json_t *key, struct part *p, struct api_resp *r)
{
	const char *s;

	if (api_field_string(key, p->jwk, 1, &s, r) != 0)
		return -1;
	if (strlen(s) > (PART_MAX / 3 + 1) * 4 + 4 ||
	    policy_b64url_decode(s, strlen(s), &p->b, &p->len) != 0 ||
	    p->len == 0 || p->len > PART_MAX) {
		api_resp_error(r, 400, "BadParameter", "The field 'key.%s' is "
		    "not valid base64url of a key part.", p->jwk);
		return -1;
	}
	return 0;
}

static void
parts_free(struct part *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i].b != NULL)
			OPENSSL_clear_free(p[i].b, p[i].len);
		p[i].b = NULL;
	}
}

/*
 * OpenSSL's arithmetic on the parts leaves some of them in stack frames
 * below the caller's (bn_mul_mont's scratch words, ecp_nistz256's scalar
 * digits): once it has returned, this overwrites that much of the
 * thread's stack (connection threads have HTTP_THREAD_STACK, 512 KiB).
 */
static void __attribute__((noinline))
stack_scrub(void)
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
 * mod q-1, dp = d mod p-1, dq = d mod q-1, q qi = 1 mod p. 0 if not, -1
 * when out of memory.
 */
static int
rsa_consistent(const struct part *ps, int bits)
{
	BIGNUM *v[RSA_NPARTS] = { NULL };
	BIGNUM *n, *e, *d, *p, *q, *dp, *dq, *qi, *t, *p1, *q1;
	BN_CTX *ctx = BN_CTX_secure_new();
	size_t i;
	int rc = -1, good, prime;

	if (ctx == NULL)
		return -1;
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
 * not, -1 when out of memory.
 */
static int
ec_consistent(int nid, const struct part *dp, const uint8_t *pt,
    size_t ptlen)
{
	EC_GROUP *g = EC_GROUP_new_by_curve_name(nid);
	BN_CTX *ctx = BN_CTX_secure_new();
	EC_POINT *pub = NULL;
	BIGNUM *d = NULL;
	uint8_t mine[1 + 2 * 66];
	size_t n;
	int rc = -1;

	if (g == NULL || ctx == NULL || (pub = EC_POINT_new(g)) == NULL ||
	    (d = part_bn(dp)) == NULL)
		goto out;
	rc = 0;
	if (BN_is_zero(d) || BN_cmp(d, EC_GROUP_get0_order(g)) >= 0)
		goto out;
	rc = -1;
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
static const uint8_t der_alg_rsa[] = { 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86,
	0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00 };
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

static const struct {
	const char *crv;
	int nid;
	size_t field;
	uint8_t oid[10];
	size_t oid_len;
} ec_curves[] = {
	{ "P-256", NID_X9_62_prime256v1, 32, { 0x06, 0x08, 0x2a, 0x86, 0x48,
	    0xce, 0x3d, 0x03, 0x01, 0x07 }, 10 },
	{ "P-384", NID_secp384r1, 48, { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00,
	    0x22 }, 7 },
	{ "P-521", NID_secp521r1, 66, { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00,
	    0x23 }, 7 },
};

/* *pkcs8 (OPENSSL_malloc'd; free with OPENSSL_clear_free) from a JWK; -1
 * with r filled. */
static int
jwk_to_pkcs8(json_t *key, int is_rsa, uint8_t **pkcs8, size_t *len,
    struct api_resp *r)
{
	struct part rsa[RSA_NPARTS] = {
		{ "n", NULL, 0 }, { "e", NULL, 0 }, { "d", NULL, 0 },
		{ "p", NULL, 0 }, { "q", NULL, 0 }, { "dp", NULL, 0 },
		{ "dq", NULL, 0 }, { "qi", NULL, 0 },
	};
	struct part ec[] = {
		{ "x", NULL, 0 }, { "y", NULL, 0 }, { "d", NULL, 0 },
	};
	struct part *ps = is_rsa ? rsa : ec;
	size_t np = is_rsa ? RSA_NPARTS : 3, i, c = 0, field = 0, ptlen = 0;
	struct der w = { NULL, 0 };
	uint8_t pt[1 + 2 * 66];
	const char *crv = NULL;
	int rc = -1, ok, bits = 0;

	*pkcs8 = NULL;
	if (!is_rsa) {
		if (api_field_string(key, "crv", 1, &crv, r) != 0)
			goto out;
		for (c = 0; c < sizeof(ec_curves) / sizeof(ec_curves[0]); c++)
			if (strcmp(crv, ec_curves[c].crv) == 0)
				break;
		if (c == sizeof(ec_curves) / sizeof(ec_curves[0])) {
			bad(r, "The field 'key.crv' must be P-256, P-384 or "
			    "P-521.");
			goto out;
		}
		field = ec_curves[c].field;
	}
	for (i = 0; i < np; i++)
		if (decode_part(key, &ps[i], r) != 0)
			goto out;
	if (is_rsa) {
		bits = be_bits(ps[0].b, ps[0].len);
		if (bits != 2048 && bits != 3072 && bits != 4096) {
			bad(r, "The RSA key size must be 2048, 3072 or 4096 "
			    "bits.");
			goto out;
		}
		ok = rsa_consistent(ps, bits);
	} else {
		if (ps[0].len != field || ps[1].len != field ||
		    ps[2].len != field) {
			bad(r, "The EC key's x, y and d must be as long as the "
			    "curve's field.");
			goto out;
		}
		pt[0] = 0x04;
		memcpy(pt + 1, ps[0].b, field);
		memcpy(pt + 1 + field, ps[1].b, field);
		ptlen = 1 + 2 * field;
		ok = ec_consistent(ec_curves[c].nid, &ps[2], pt, ptlen);
	}
	stack_scrub();
	if (ok < 0) {
		api_resp_vault_error(r, VLT_ERR_NO_MEMORY, NULL, NULL);
		goto out;
	}
	if (ok == 0) {
		bad(r, is_rsa ? "The RSA key is inconsistent: its parts do not "
		    "form a valid key pair." : "The EC key is invalid: the "
		    "point is not on the curve or does not match the private "
		    "key.");
		goto out;
	}
	/* measure, then write */
	if (is_rsa)
		der_rsa_pkcs8(&w, ps);
	else
		der_ec_pkcs8(&w, ec_curves[c].oid, ec_curves[c].oid_len,
		    &ps[2], pt, ptlen);
	*len = w.len;
	if ((w.p = OPENSSL_malloc(w.len)) == NULL) {
		api_resp_vault_error(r, VLT_ERR_NO_MEMORY, NULL, NULL);
		goto out;
	}
	w.len = 0;
	if (is_rsa)
		der_rsa_pkcs8(&w, ps);
	else
		der_ec_pkcs8(&w, ec_curves[c].oid, ec_curves[c].oid_len,
		    &ps[2], pt, ptlen);
	*pkcs8 = w.p;
	rc = 0;
out:
	OPENSSL_cleanse(pt, sizeof(pt));
	parts_free(ps, np);
	ERR_clear_error();
	return rc;
}

/* ---- BYOK ------------------------------------------------------------------ */

/* KEK name and version from a kid URL of this vault. */
static int
kek_from_kid(struct api_req *q, const char *kid, char *name, size_t ncap,
    char *version, size_t vcap)
{
	size_t ul = strlen(q->ctx->vault_url);
	const char *p, *slash;

	name[0] = version[0] = '\0';
	if (strncasecmp(kid, q->ctx->vault_url, ul) != 0 ||
	    strncasecmp(kid + ul, "/keys/", 6) != 0)
		return -1;
	p = kid + ul + 6;
	slash = strchr(p, '/');
	if (slash == NULL) {
		if (strlen(p) == 0 || strlen(p) >= ncap)
			return -1;
		snprintf(name, ncap, "%s", p);
		return 0;
	}
	if ((size_t)(slash - p) == 0 || (size_t)(slash - p) >= ncap ||
	    strlen(slash + 1) >= vcap || strchr(slash + 1, '/') != NULL)
		return -1;
	memcpy(name, p, (size_t)(slash - p));
	name[slash - p] = '\0';
	snprintf(version, vcap, "%s", slash + 1);
	return 0;
}

static void
import_byok(struct api_req *q, struct api_resp *r, const char *name,
    json_t *key, const struct vlt_import_req *req)
{
	uint8_t *raw = NULL, *ct = NULL;
	size_t raw_len = 0, ct_len = 0;
	json_t *blob = NULL, *hdr;
	const char *kid, *s;
	char kname[VLT_NAME_MAX + 1], kver[VLT_VERSION_LEN + 1];
	struct vlt_key_info k;
	int rc;

	memset(&k, 0, sizeof(k));
	if (api_field_b64(key, "key_hsm", TRANSFER_MAX * 2, 1, &raw, &raw_len,
	    r) != 0)
		return;
	blob = json_loadb((const char *)raw, raw_len, JSON_REJECT_DUPLICATES,
	    NULL);
	if (!json_is_object(blob)) {
		bad(r, "The field 'key.key_hsm' is not a BYOK transfer blob.");
		goto out;
	}
	hdr = json_object_get(blob, "header");
	kid = json_string_value(json_object_get(hdr, "kid"));
	s = json_string_value(json_object_get(hdr, "enc"));
	if (kid == NULL || s == NULL ||
	    strcmp(s, "CKM_RSA_AES_KEY_WRAP") != 0) {
		bad(r, "The transfer blob's header must name the key exchange "
		    "key (kid) and enc CKM_RSA_AES_KEY_WRAP.");
		goto out;
	}
	s = json_string_value(json_object_get(hdr, "alg"));
	if (s != NULL && strcmp(s, "dir") != 0) {
		bad(r, "The transfer blob's header alg must be 'dir'.");
		goto out;
	}
	if (kek_from_kid(q, kid, kname, sizeof(kname), kver,
	    sizeof(kver)) != 0) {
		bad(r, "The transfer blob's kid does not name a key exchange "
		    "key of this vault.");
		goto out;
	}
	if (api_field_b64(blob, "ciphertext", TRANSFER_MAX, 1, &ct, &ct_len,
	    r) != 0)
		goto out;
	rc = vault_key_import_byok(q->ctx->vault, name, req, kname,
	    kver[0] ? kver : NULL, ct, ct_len, &k);
	if (rc == VLT_ERR_BAD_PARAM) {
		bad(r, "The transfer blob cannot be imported: it is not for "
		    "this key exchange key, the key exchange key does not "
		    "allow import, or the blob is damaged.");
		goto out;
	}
	api_send_key(q, r, rc, name, k.name, &k);
out:
	json_decref(blob);
	OPENSSL_clear_free(raw, raw_len);
	OPENSSL_clear_free(ct, ct_len);
}

void
api_key_import(struct api_req *q, struct api_resp *r, const char *name)
{
	static const char *const priv[] = { "d", "p", "q", "dp", "dq", "qi" };
	struct vlt_import_req req;
	struct vlt_key_info k;
	json_t *body = NULL, *key, *v;
	const char *kty;
	uint8_t *pkcs8 = NULL;
	size_t p8len = 0, i;
	char *tags = NULL;
	int is_rsa, rc;

	memset(&req, 0, sizeof(req));
	memset(&k, 0, sizeof(k));
	if (api_body_object(q, r, &body) != 0)
		return;
	key = json_object_get(body, "key");
	if (!json_is_object(key)) {
		bad(r, "The field 'key' must be a JsonWebKey object.");
		goto out;
	}
	if (api_field_string(key, "kty", 1, &kty, r) != 0)
		goto out;
	if (strcmp(kty, "RSA") == 0 || strcmp(kty, "RSA-HSM") == 0)
		is_rsa = 1;
	else if (strcmp(kty, "EC") == 0 || strcmp(kty, "EC-HSM") == 0)
		is_rsa = 0;
	else {
		bad(r, "The field 'key.kty' must be one of RSA, RSA-HSM, EC, "
		    "EC-HSM.");
		goto out;
	}
	req.hsm = strstr(kty, "-HSM") != NULL;
	v = json_object_get(body, "Hsm");
	if (v == NULL)
		v = json_object_get(body, "hsm");
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_boolean(v)) {
			bad(r, "The field 'Hsm' must be a boolean.");
			goto out;
		}
		req.hsm = req.hsm || json_is_true(v);
	}
	if (parse_ops(json_object_get(key, "key_ops"), &req.key_ops, r) != 0)
		goto out;
	if (!is_rsa && (req.key_ops & ~(unsigned)(VLT_OP_SIGN |
	    VLT_OP_VERIFY))) {
		bad(r, "Unsupported key operation(s) for an EC key: only sign "
		    "and verify are possible.");
		goto out;
	}
	if (parse_common(body, &req, &tags, r) != 0)
		goto out;
	req.tags = tags;
	if (json_object_get(key, "key_hsm") != NULL) {
		import_byok(q, r, name, key, &req);
		goto out;
	}
	if (jwk_to_pkcs8(key, is_rsa, &pkcs8, &p8len, r) != 0)
		goto out;
	rc = vault_key_import(q->ctx->vault, name, &req, pkcs8, p8len, &k);
	OPENSSL_clear_free(pkcs8, p8len);
	pkcs8 = NULL;
	api_send_key(q, r, rc, name, k.name, &k);
out:
	if (json_is_object(key))
		for (i = 0; i < sizeof(priv) / sizeof(priv[0]); i++)
			wipe_json_string(key, priv[i]);
	free(tags);
	json_decref(body);
}

/* ---- backup and restore ---------------------------------------------------- */

void
api_key_backup(struct api_req *q, struct api_resp *r, const char *name)
{
	uint8_t *blob = NULL;
	size_t len = 0;
	int rc;

	rc = vault_key_backup(q->ctx->vault, name, &blob, &len);
	if (rc != 0) {
		api_resp_vault_error(r, rc, name, NULL);
		return;
	}
	api_resp_set(r, 200, json_pack("{s:o}", "value",
	    api_json_b64(blob, len)));
	OPENSSL_clear_free(blob, len);
}

void
api_key_restore(struct api_req *q, struct api_resp *r)
{
	struct vlt_key_info k;
	json_t *body = NULL;
	uint8_t *blob = NULL;
	size_t len = 0;
	int rc;

	memset(&k, 0, sizeof(k));
	if (api_body_object(q, r, &body) != 0)
		return;
	if (api_field_b64(body, "value", BACKUP_MAX, 1, &blob, &len, r) != 0)
		goto out;
	rc = vault_key_restore(q->ctx->vault, blob, len, &k);
	if (rc == VLT_ERR_BAD_PARAM) {
		bad(r, "The backup blob is invalid, damaged, or was made by "
		    "a vault with another security domain.");
		goto out;
	}
	if (rc == VLT_ERR_CONFLICT) {
		api_resp_error(r, 409, "Conflict", "A key with the backup's "
		    "name already exists in this vault (live or deleted).");
		goto out;
	}
	api_send_key(q, r, rc, NULL, k.name, &k);
out:
	OPENSSL_clear_free(blob, len);
	json_decref(body);
}

/* ---- rotation policies -------------------------------------------------------- */

/* ISO 8601 duration (PnYnMnWnD and TnHnMnS) in seconds; -1 if malformed. */
static int64_t
duration_secs(const char *s)
{
	int64_t total = 0, n;
	int in_time = 0, any = 0;
	const char *p = s;

	if (s == NULL || strlen(s) >= VLT_DURATION_MAX || *p++ != 'P')
		return -1;
	while (*p != '\0') {
		if (*p == 'T') {
			if (in_time)
				return -1;
			in_time = 1;
			p++;
			continue;
		}
		if (!isdigit((unsigned char)*p))
			return -1;
		n = 0;
		while (isdigit((unsigned char)*p)) {
			n = n * 10 + (*p++ - '0');
			if (n > 100000)
				return -1;
		}
		switch (*p++) {
		case 'Y': if (in_time) return -1; total += n * 365 * DAY; break;
		case 'M': total += in_time ? n * 60 : n * 30 * DAY; break;
		case 'W': if (in_time) return -1; total += n * 7 * DAY; break;
		case 'D': if (in_time) return -1; total += n * DAY; break;
		case 'H': if (!in_time) return -1; total += n * 3600; break;
		case 'S': if (!in_time) return -1; total += n; break;
		default: return -1;
		}
		any = 1;
	}
	return any ? total : -1;
}

static json_t *
policy_json(struct api_req *q, const char *name,
    const struct vlt_rotation_policy *p)
{
	json_t *doc, *acts = json_array(), *attrs = json_object();
	char id[512];
	size_t i;

	snprintf(id, sizeof(id), "%s/keys/%s/rotationpolicy",
	    q->ctx->vault_url, name);
	if (p->created == 0) {
		/* Azure's answer for a key without a policy */
		json_array_append_new(acts, json_pack("{s:{s:s}, s:{s:s}}",
		    "trigger", "timeBeforeExpiry", "P30D", "action", "type",
		    "Notify"));
	}
	for (i = 0; i < p->n; i++)
		json_array_append_new(acts, json_pack("{s:{s:s}, s:{s:s}}",
		    "trigger", p->a[i].trigger == VLT_ROT_AFTER_CREATE ?
		    "timeAfterCreate" : "timeBeforeExpiry", p->a[i].duration,
		    "action", "type", p->a[i].action == VLT_ROT_ROTATE ?
		    "Rotate" : "Notify"));
	if (p->expiry[0] != '\0')
		json_object_set_new(attrs, "expiryTime",
		    json_string(p->expiry));
	if (p->created != 0) {
		json_object_set_new(attrs, "created",
		    json_integer(p->created));
		json_object_set_new(attrs, "updated",
		    json_integer(p->updated));
	}
	doc = json_pack("{s:s, s:o, s:o}", "id", id, "lifetimeActions", acts,
	    "attributes", attrs);
	return doc;
}

void
api_rotation_policy_get(struct api_req *q, struct api_resp *r,
    const char *name)
{
	struct vlt_rotation_policy p;
	int rc;

	rc = vault_rotation_policy_get(q->ctx->vault, name, &p);
	if (rc != 0) {
		api_resp_vault_error(r, rc, name, NULL);
		return;
	}
	api_resp_set(r, 200, policy_json(q, name, &p));
}

static int
parse_policy(json_t *body, struct vlt_rotation_policy *p, struct api_resp *r)
{
	json_t *acts = json_object_get(body, "lifetimeActions"), *a, *trig,
	    *attrs = json_object_get(body, "attributes"), *v;
	const char *type, *dur = NULL, *tk;
	size_t i, rotates = 0;
	int64_t secs;

	memset(p, 0, sizeof(*p));
	if (attrs != NULL && !json_is_null(attrs)) {
		if (!json_is_object(attrs)) {
			bad(r, "The field 'attributes' must be an object.");
			return -1;
		}
		v = json_object_get(attrs, "expiryTime");
		if (v != NULL && !json_is_null(v)) {
			dur = json_string_value(v);
			secs = duration_secs(dur);
			if (secs < 0) {
				bad(r, "The field 'attributes.expiryTime' must "
				    "be an ISO 8601 duration.");
				return -1;
			}
			if (secs < 28 * DAY) {
				bad(r, "The rotation policy's expiryTime must "
				    "be at least 28 days (P28D).");
				return -1;
			}
			p->expiry_secs = secs;
			snprintf(p->expiry, sizeof(p->expiry), "%s", dur);
		}
	}
	if (acts == NULL || json_is_null(acts))
		return 0;
	if (!json_is_array(acts) || json_array_size(acts) >
	    VLT_ROT_ACTIONS_MAX) {
		bad(r, "The field 'lifetimeActions' must be an array of at "
		    "most 4 actions.");
		return -1;
	}
	json_array_foreach(acts, i, a) {
		struct vlt_rotation_action *x = &p->a[p->n];
		trig = json_object_get(a, "trigger");
		type = json_string_value(json_object_get(
		    json_object_get(a, "action"), "type"));
		if (!json_is_object(trig) || json_object_size(trig) != 1 ||
		    type == NULL) {
			bad(r, "Each lifetime action needs one trigger and an "
			    "action type.");
			return -1;
		}
		if (strcasecmp(type, "Rotate") == 0)
			x->action = VLT_ROT_ROTATE;
		else if (strcasecmp(type, "Notify") == 0)
			x->action = VLT_ROT_NOTIFY;
		else {
			bad(r, "The lifetime action type must be Rotate or "
			    "Notify.");
			return -1;
		}
		json_object_foreach(trig, tk, v) {
			if (strcmp(tk, "timeAfterCreate") == 0)
				x->trigger = VLT_ROT_AFTER_CREATE;
			else if (strcmp(tk, "timeBeforeExpiry") == 0)
				x->trigger = VLT_ROT_BEFORE_EXPIRY;
			dur = json_string_value(v);
		}
		if (x->trigger == 0 || (secs = duration_secs(dur)) < 0) {
			bad(r, "A trigger is timeAfterCreate or "
			    "timeBeforeExpiry with an ISO 8601 duration.");
			return -1;
		}
		if (secs < 7 * DAY) {
			bad(r, "A rotation policy trigger must be at least 7 "
			    "days (P7D).");
			return -1;
		}
		if (x->action == VLT_ROT_NOTIFY &&
		    x->trigger != VLT_ROT_BEFORE_EXPIRY) {
			bad(r, "A Notify action needs a timeBeforeExpiry "
			    "trigger.");
			return -1;
		}
		if (x->action == VLT_ROT_ROTATE && ++rotates > 1) {
			bad(r, "A rotation policy has at most one Rotate "
			    "action.");
			return -1;
		}
		if (p->expiry_secs != 0 && secs > p->expiry_secs - 7 * DAY &&
		    x->trigger == VLT_ROT_AFTER_CREATE) {
			bad(r, "timeAfterCreate must be at least 7 days shorter "
			    "than expiryTime.");
			return -1;
		}
		x->secs = secs;
		snprintf(x->duration, sizeof(x->duration), "%s", dur);
		p->n++;
	}
	return 0;
}

void
api_rotation_policy_set(struct api_req *q, struct api_resp *r,
    const char *name)
{
	struct vlt_rotation_policy p, out;
	json_t *body = NULL;
	int rc;

	if (api_body_object(q, r, &body) != 0)
		return;
	if (parse_policy(body, &p, r) != 0)
		goto out;
	rc = vault_rotation_policy_set(q->ctx->vault, name, &p, &out);
	if (rc != 0) {
		api_resp_vault_error(r, rc, name, NULL);
		goto out;
	}
	api_resp_set(r, 200, policy_json(q, name, &out));
out:
	json_decref(body);
}
