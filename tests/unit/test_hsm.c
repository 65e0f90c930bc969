/*
 * test_hsm — the hsm module against a real SoftHSMv2 token in a private
 * temporary token directory. No mocks: every check goes through the token.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include "hsm/hsm_int.h"
#include "hsm/token.h"
#include "tests/unit/softhsm_setup.h"
#include "tests/unit/t.h"

/* A well-formed blob of a format before the current one. */
static int
blob_is_old(const uint8_t *blob, size_t blob_len)
{
	unsigned f;

	return hsm_blob_format(blob, blob_len, &f) == HSM_OK &&
	    f < HSM_BLOB_FORMAT_CURRENT;
}

#define MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define LABEL "p11vault-test"
#define SO_PIN "so-secret-1234"
#define USER_PIN "user-secret-1234"

struct key {
	const char *name;
	const char *id;
	uint8_t *blob, *spki;
	size_t blob_len, spki_len;
};

static tok_t *H;
static struct key RSA_K = { "rsa2048", "kv-rsa", NULL, NULL, 0, 0 };
static struct key EC_K[4] = {
	{ "p256", "kv-p256", NULL, NULL, 0, 0 },
	{ "p384", "kv-p384", NULL, NULL, 0, 0 },
	{ "p521", "kv-p521", NULL, NULL, 0, 0 },
	{ "p256k", "kv-p256k", NULL, NULL, 0, 0 }, /* secp256k1 */
};
static char tmpdir[] = "/tmp/p11vault-hsm-XXXXXX";

static EVP_PKEY *
load_spki(const uint8_t *spki, size_t len)
{
	const unsigned char *p = spki;

	return d2i_PUBKEY(NULL, &p, (long)len);
}

static int
contains(const uint8_t *hay, size_t hlen, const uint8_t *needle, size_t nlen)
{
	size_t i;

	for (i = 0; nlen <= hlen && i + nlen <= hlen; i++)
		if (memcmp(hay + i, needle, nlen) == 0)
			return 1;
	return 0;
}

/* OpenSSL encrypts with the SPKI; the token decrypts. */
static int
openssl_encrypt(const struct key *k, enum hsm_alg alg, const uint8_t *in,
    size_t in_len, uint8_t *out, size_t *out_len)
{
	EVP_PKEY *pk = load_spki(k->spki, k->spki_len);
	EVP_PKEY_CTX *ctx = pk ? EVP_PKEY_CTX_new(pk, NULL) : NULL;
	const EVP_MD *md = alg == HSM_ALG_RSA_OAEP ? EVP_sha1() : EVP_sha256();
	int ok = 0;

	if (ctx == NULL || EVP_PKEY_encrypt_init(ctx) != 1)
		goto out;
	if (alg == HSM_ALG_RSA1_5) {
		if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1)
			goto out;
	} else if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) !=
	        1 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) != 1) {
		goto out;
	}
	ok = EVP_PKEY_encrypt(ctx, out, out_len, in, in_len) == 1;
out:
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return ok;
}

static const EVP_MD *
md_for(size_t dlen)
{
	return dlen == 32 ? EVP_sha256() :
	    dlen == 48    ? EVP_sha384() :
	                    EVP_sha512();
}

/* Plain OpenSSL verification, independent of hsm_pub_verify. */
static int
openssl_verify(const struct key *k, enum hsm_alg alg, const uint8_t *dg,
    size_t dlen, const uint8_t *sig, size_t sig_len)
{
	EVP_PKEY *pk = load_spki(k->spki, k->spki_len);
	EVP_PKEY_CTX *ctx = pk ? EVP_PKEY_CTX_new(pk, NULL) : NULL;
	unsigned char *der = NULL;
	const unsigned char *vs = sig;
	size_t vl = sig_len;
	ECDSA_SIG *es = NULL;
	int ok = 0, n;

	if (ctx == NULL || EVP_PKEY_verify_init(ctx) != 1)
		goto out;
	if (alg >= HSM_ALG_ES256) {
		es = ECDSA_SIG_new();
		if (es == NULL ||
		    ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)sig_len / 2, NULL),
		        BN_bin2bn(sig + sig_len / 2, (int)sig_len / 2, NULL)) !=
		        1)
			goto out;
		if ((n = i2d_ECDSA_SIG(es, &der)) <= 0)
			goto out;
		vs = der;
		vl = (size_t)n;
	} else {
		if (EVP_PKEY_CTX_set_signature_md(ctx, md_for(dlen)) != 1)
			goto out;
		if (alg >= HSM_ALG_PS256) {
			if (EVP_PKEY_CTX_set_rsa_padding(ctx,
			        RSA_PKCS1_PSS_PADDING) != 1 ||
			    EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)dlen) !=
			        1)
				goto out;
		} else if (EVP_PKEY_CTX_set_rsa_padding(ctx,
		               RSA_PKCS1_PADDING) != 1) {
			goto out;
		}
	}
	ok = EVP_PKEY_verify(ctx, vs, vl, dg, dlen) == 1;
out:
	ERR_clear_error();
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return ok;
}

static void
test_init_open(void)
{
	struct tok_config bad = { MODULE, LABEL, "wrong-pin", 2, 4 };
	tok_t *h2 = NULL;

	T_CHECK(tok_token_init(MODULE, LABEL, SO_PIN, USER_PIN) == 0,
	    "token init succeeds on a fresh token");
	T_CHECK(tok_token_init(MODULE, LABEL, SO_PIN, USER_PIN) ==
	        HSM_ERR_EXISTS,
	    "second token init with the same label: EXISTS");
	T_CHECK(tok_open(&bad, &h2) == HSM_ERR_ARGS && h2 == NULL,
	    "open with a wrong PIN fails with ARGS");
	bad.token_label = "no-such-token";
	bad.user_pin = USER_PIN;
	T_CHECK(tok_open(&bad, &h2) == HSM_ERR_UNAVAILABLE && h2 == NULL,
	    "open of an unknown token label is UNAVAILABLE");
}

static void
test_generate(void)
{
	static const int nids[4] = { NID_X9_62_prime256v1, NID_secp384r1,
		NID_secp521r1, NID_secp256k1 };
	static const size_t fields[4] = { 32, 48, 66, 32 };
	uint8_t *b = NULL, *s = NULL;
	size_t bl = 0, sl = 0;
	char name[128];
	int i;

	T_CHECK(tok_key_generate(H, RSA_K.id, HSM_KTY_RSA, 2048, 0, &RSA_K.blob,
	            &RSA_K.blob_len, &RSA_K.spki, &RSA_K.spki_len) == 0,
	    "generate RSA 2048");
	T_CHECK(RSA_K.blob != NULL && RSA_K.blob[4] == 3 &&
	        !blob_is_old(RSA_K.blob, RSA_K.blob_len),
	    "a generated blob is format 3 (sealed and bound), not legacy");
	T_CHECK(hsm_pub_size(RSA_K.spki, RSA_K.spki_len) == 256,
	    "RSA 2048 public size is 256 bytes");
	for (i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "generate EC %s", EC_K[i].name);
		T_CHECK(tok_key_generate(H, EC_K[i].id, HSM_KTY_EC, 0, nids[i],
		            &EC_K[i].blob, &EC_K[i].blob_len, &EC_K[i].spki,
		            &EC_K[i].spki_len) == 0,
		    name);
		snprintf(name, sizeof(name), "EC %s public size", EC_K[i].name);
		T_CHECK(hsm_pub_size(EC_K[i].spki, EC_K[i].spki_len) ==
		        fields[i],
		    name);
	}
	T_CHECK(tok_key_generate(H, "x", HSM_KTY_RSA, 1024, 0, &b, &bl, &s,
	            &sl) == HSM_ERR_ARGS &&
	        b == NULL && s == NULL,
	    "generate RSA 1024 is refused");
	T_CHECK(tok_key_generate(H, "x", HSM_KTY_EC, 0, NID_secp224r1, &b, &bl,
	            &s, &sl) == HSM_ERR_ARGS,
	    "generate on secp224r1 (not in the curve table) is refused");
	{
		char longbind[HSM_BIND_MAX + 2];

		memset(longbind, 'a', sizeof(longbind) - 1);
		longbind[sizeof(longbind) - 1] = '\0';
		T_CHECK(tok_key_generate(H, NULL, HSM_KTY_EC, 0,
		            NID_X9_62_prime256v1, &b, &bl, &s,
		            &sl) == HSM_ERR_ARGS &&
		        tok_key_generate(H, "", HSM_KTY_EC, 0,
		            NID_X9_62_prime256v1, &b, &bl, &s,
		            &sl) == HSM_ERR_ARGS &&
		        tok_key_generate(H, longbind, HSM_KTY_EC, 0,
		            NID_X9_62_prime256v1, &b, &bl, &s,
		            &sl) == HSM_ERR_ARGS &&
		        b == NULL,
		    "generate with a NULL, empty or over-long "
		    "bind is refused with ARGS");
	}
}

static const enum hsm_alg dec_algs[3] = { HSM_ALG_RSA_OAEP,
	HSM_ALG_RSA_OAEP_256, HSM_ALG_RSA1_5 };
static const char *dec_names[3] = { "RSA-OAEP", "RSA-OAEP-256", "RSA1_5" };

/* One algorithm: the token decrypts what pub_encrypt and OpenSSL encrypt;
 * tampered and wrong-length ciphertexts are refused. */
static void
decrypt_alg(int i, const uint8_t *msg, size_t msg_len)
{
	uint8_t ct[512], pt[512];
	size_t ctl, ptl;
	char name[128];
	int j, all;

	ctl = sizeof(ct);
	T_CHECK(hsm_pub_encrypt(RSA_K.spki, RSA_K.spki_len, dec_algs[i], msg,
	            msg_len, ct, &ctl) == 0 &&
	        ctl == 256,
	    dec_names[i]);
	ptl = sizeof(pt);
	snprintf(name, sizeof(name),
	    "%s: pub_encrypt then token "
	    "decrypt round trips",
	    dec_names[i]);
	T_CHECK(tok_key_decrypt(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len,
	            dec_algs[i], ct, ctl, pt, &ptl) == 0 &&
	        ptl == msg_len && memcmp(pt, msg, ptl) == 0,
	    name);

	ctl = sizeof(ct);
	snprintf(name, sizeof(name),
	    "%s: OpenSSL-encrypted "
	    "ciphertext decrypts in the token",
	    dec_names[i]);
	ptl = sizeof(pt);
	T_CHECK(openssl_encrypt(&RSA_K, dec_algs[i], msg, msg_len, ct, &ctl) &&
	        tok_key_decrypt(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len,
	            dec_algs[i], ct, ctl, pt, &ptl) == 0 &&
	        ptl == msg_len && memcmp(pt, msg, ptl) == 0,
	    name);

	/* several tampered ciphertexts: each one the same error */
	all = 1;
	for (j = 0; j < 8; j++) {
		uint8_t bad[256];

		memcpy(bad, ct, 256);
		bad[(size_t)j * 31 % 256] ^= (uint8_t)(1u << j);
		if (j == 7)
			bad[0] = 0xff; /* >= n: the token refuses */
		ptl = sizeof(pt);
		if (tok_key_decrypt(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len,
		        dec_algs[i], bad, 256, pt, &ptl) != HSM_ERR_DECRYPT)
			all = 0;
	}
	snprintf(name, sizeof(name),
	    "%s: tampered ciphertexts all "
	    "give HSM_ERR_DECRYPT",
	    dec_names[i]);
	T_CHECK(all, name);

	ptl = sizeof(pt);
	snprintf(name, sizeof(name),
	    "%s: wrong-length ciphertext "
	    "is ARGS",
	    dec_names[i]);
	T_CHECK(tok_key_decrypt(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len,
	            dec_algs[i], ct, 255, pt, &ptl) == HSM_ERR_ARGS &&
	        tok_key_decrypt(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len,
	            dec_algs[i], ct, 257, pt, &ptl) == HSM_ERR_ARGS,
	    name);
}

static void
decrypt_fresh(void)
{
	uint8_t msg[32], ct[512], pt[512], prev[3][256];
	size_t ctl, ptl;
	int i, j, all;

	/* the per-thread contexts are reused: interleave the algorithms,
	 * every ciphertext fresh (OAEP and v1.5 pad randomly) and right */
	all = 1;
	memset(prev, 0, sizeof(prev));
	for (j = 0; j < 12; j++) {
		i = (j * 7) % 3;
		RAND_bytes(msg, sizeof(msg));
		ctl = sizeof(ct);
		ptl = sizeof(pt);
		if (hsm_pub_encrypt(RSA_K.spki, RSA_K.spki_len, dec_algs[i],
		        msg, sizeof(msg), ct, &ctl) != 0 ||
		    ctl != 256 || memcmp(ct, prev[i], 256) == 0 ||
		    tok_key_decrypt(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len,
		        dec_algs[i], ct, ctl, pt, &ptl) != 0 ||
		    ptl != sizeof(msg) || memcmp(pt, msg, ptl) != 0)
			all = 0;
		memcpy(prev[i], ct, 256);
	}
	T_CHECK(all,
	    "12 pub_encrypts interleaving the three algorithms on "
	    "one key: each ciphertext new and decrypting right");
	ctl = sizeof(ct);
	T_CHECK(hsm_pub_encrypt(RSA_K.spki, RSA_K.spki_len,
	            HSM_ALG_RSA_OAEP_256, pt, 256 - 65, ct,
	            &ctl) == HSM_ERR_ARGS,
	    "pub_encrypt of an over-long plaintext is ARGS");
	ctl = sizeof(ct);
	RAND_bytes(msg, sizeof(msg));
	T_CHECK(hsm_pub_encrypt(RSA_K.spki, RSA_K.spki_len,
	            HSM_ALG_RSA_OAEP_256, msg, sizeof(msg), ct, &ctl) == 0 &&
	        (ptl = sizeof(pt),
	            tok_key_decrypt(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len,
	                HSM_ALG_RSA_OAEP_256, ct, ctl, pt, &ptl)) == 0 &&
	        ptl == sizeof(msg) && memcmp(pt, msg, ptl) == 0,
	    "after a refused call the next pub_encrypt still works");
	ptl = sizeof(pt);
	T_CHECK(tok_key_decrypt(H, EC_K[0].id, EC_K[0].blob, EC_K[0].blob_len,
	            HSM_ALG_RSA_OAEP, ct, 256, pt, &ptl) == HSM_ERR_ARGS,
	    "decrypt with an EC key is ARGS");
}

static void
test_decrypt(void)
{
	uint8_t msg[32];
	int i;

	RAND_bytes(msg, sizeof(msg));
	for (i = 0; i < 3; i++)
		decrypt_alg(i, msg, sizeof(msg));
	decrypt_fresh();
}

static void
test_sign(void)
{
	static const struct {
		enum hsm_alg alg;
		const char *name;
		size_t dlen;
		struct key *k;
	} cases[] = {
		{ HSM_ALG_RS256, "RS256", 32, &RSA_K },
		{ HSM_ALG_RS384, "RS384", 48, &RSA_K },
		{ HSM_ALG_RS512, "RS512", 64, &RSA_K },
		{ HSM_ALG_PS256, "PS256", 32, &RSA_K },
		{ HSM_ALG_PS384, "PS384", 48, &RSA_K },
		{ HSM_ALG_PS512, "PS512", 64, &RSA_K },
		{ HSM_ALG_ES256, "ES256", 32, &EC_K[0] },
		{ HSM_ALG_ES384, "ES384", 48, &EC_K[1] },
		{ HSM_ALG_ES512, "ES512", 64, &EC_K[2] },
		{ HSM_ALG_ES256K, "ES256K", 32, &EC_K[3] },
	};
	uint8_t dg[64], sig[512];
	size_t i, sl;
	int valid;
	char name[128];

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct key *k = cases[i].k;

		RAND_bytes(dg, sizeof(dg));
		sl = sizeof(sig);
		snprintf(name, sizeof(name), "%s: token signs", cases[i].name);
		T_CHECK(tok_key_sign(H, k->id, k->blob, k->blob_len,
		            cases[i].alg, dg, cases[i].dlen, sig, &sl) == 0,
		    name);
		valid = -1;
		snprintf(name, sizeof(name), "%s: hsm_pub_verify accepts",
		    cases[i].name);
		T_CHECK(hsm_pub_verify(k->spki, k->spki_len, cases[i].alg, dg,
		            cases[i].dlen, sig, sl, &valid) == 0 &&
		        valid == 1,
		    name);
		snprintf(name, sizeof(name), "%s: plain OpenSSL verifies",
		    cases[i].name);
		T_CHECK(openssl_verify(k, cases[i].alg, dg, cases[i].dlen, sig,
		            sl),
		    name);
		sig[sl / 2] ^= 0x01;
		snprintf(name, sizeof(name), "%s: a flipped bit is invalid",
		    cases[i].name);
		T_CHECK(hsm_pub_verify(k->spki, k->spki_len, cases[i].alg, dg,
		            cases[i].dlen, sig, sl, &valid) == 0 &&
		        valid == 0,
		    name);
		sl = sizeof(sig);
		snprintf(name, sizeof(name), "%s: wrong digest length is ARGS",
		    cases[i].name);
		T_CHECK(tok_key_sign(H, k->id, k->blob, k->blob_len,
		            cases[i].alg, dg, cases[i].dlen - 1, sig,
		            &sl) == HSM_ERR_ARGS &&
		        hsm_pub_verify(k->spki, k->spki_len, cases[i].alg, dg,
		            cases[i].dlen + 1, sig, 64, &valid) == HSM_ERR_ARGS,
		    name);
	}
	sl = sizeof(sig);
	T_CHECK(tok_key_sign(H, EC_K[1].id, EC_K[1].blob, EC_K[1].blob_len,
	            HSM_ALG_ES256, dg, 32, sig, &sl) == HSM_ERR_ARGS,
	    "ES256 with a P-384 key is ARGS");
	sl = 100;
	T_CHECK(tok_key_sign(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len,
	            HSM_ALG_RS256, dg, 32, sig, &sl) == HSM_ERR_ARGS,
	    "signature buffer too small is ARGS");
}

static void
test_jwt(void)
{
	static const char data[] = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0";
	uint8_t sig[64], dg[32], *spki = NULL;
	size_t spki_len = 0;
	struct key k = { "jwt", NULL, NULL, NULL, 0, 0 };
	int valid = -1;

	T_CHECK(tok_jwt_sign(H, (const uint8_t *)data, strlen(data), sig) == 0,
	    "jwt sign");
	T_CHECK(tok_jwt_public(H, &spki, &spki_len) == 0 &&
	        hsm_pub_size(spki, spki_len) == 32,
	    "jwt public key is P-256");
	SHA256((const uint8_t *)data, strlen(data), dg);
	T_CHECK(hsm_pub_verify(spki, spki_len, HSM_ALG_ES256, dg, 32, sig, 64,
	            &valid) == 0 &&
	        valid == 1,
	    "jwt signature verifies");
	k.spki = spki;
	k.spki_len = spki_len;
	T_CHECK(openssl_verify(&k, HSM_ALG_ES256, dg, 32, sig, 64),
	    "jwt signature verifies in plain OpenSSL");
	free(spki);
}

/* ---- raw PKCS#11, to look at the token from outside the module ---- */

static void *raw_dl;
static CK_FUNCTION_LIST *P;
static CK_SLOT_ID raw_slot;
static CK_SESSION_HANDLE RS;

static int
raw_open(void)
{
	CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR);
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16, i;
	CK_TOKEN_INFO ti;
	CK_RV rv;

	if ((raw_dl = dlopen(MODULE, RTLD_NOW)) == NULL)
		return 0;
	*(void **)(&gfl) = dlsym(raw_dl, "C_GetFunctionList");
	if (gfl == NULL || gfl(&P) != CKR_OK)
		return 0;
	rv = P->C_Initialize(NULL);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
		return 0;
	if (P->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
		return 0;
	for (i = 0; i < n; i++)
		if (P->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    memcmp(ti.label, LABEL, strlen(LABEL)) == 0)
			raw_slot = slots[i];
	if (P->C_OpenSession(raw_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
	        NULL, NULL, &RS) != CKR_OK)
		return 0;
	rv = P->C_Login(RS, CKU_USER, (CK_UTF8CHAR *)USER_PIN,
	    strlen(USER_PIN));
	return rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN;
}

static CK_ULONG
raw_find(CK_OBJECT_CLASS cls, int session_only, CK_OBJECT_HANDLE *out,
    CK_ULONG max)
{
	CK_BBOOL f = CK_FALSE;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_TOKEN, &f, sizeof(f) },
	};
	CK_ULONG n = 0;

	if (P->C_FindObjectsInit(RS, t, session_only ? 2 : 1) != CKR_OK)
		return 0;
	if (P->C_FindObjects(RS, out, max, &n) != CKR_OK)
		n = 0;
	P->C_FindObjectsFinal(RS);
	return n;
}

static CK_RV
raw_get(CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
	uint8_t buf[1024];
	CK_ATTRIBUTE a = { type, buf, sizeof(buf) };
	CK_RV rv = P->C_GetAttributeValue(RS, o, &a, 1);

	/* an attribute not held at all is also "unavailable" */
	if (rv == CKR_OK && a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
		rv = CKR_ATTRIBUTE_SENSITIVE;
	return rv;
}

/* No private attribute of any key in the token can be read; every private
 * key is sensitive and not extractable. */
static void
nx_attributes(void)
{
	static const CK_ATTRIBUTE_TYPE secret_attrs[] = {
		CKA_PRIVATE_EXPONENT,
		CKA_PRIME_1,
		CKA_PRIME_2,
		CKA_EXPONENT_1,
		CKA_EXPONENT_2,
		CKA_COEFFICIENT,
		CKA_VALUE,
	};
	CK_OBJECT_HANDLE objs[64];
	CK_ULONG n, i, j, sess_objs;
	CK_BBOOL ext = CK_TRUE, sens = CK_FALSE, wwt = CK_FALSE;
	CK_ATTRIBUTE ea[] = {
		{ CKA_EXTRACTABLE, &ext, sizeof(ext) },
		{ CKA_SENSITIVE, &sens, sizeof(sens) },
		{ CKA_WRAP_WITH_TRUSTED, &wwt, sizeof(wwt) },
	};
	int all_sensitive = 1, all_flags = 1;

	/* make sure some unwrapped session objects exist right now */
	{
		uint8_t dg[32] = { 1 }, sig[512];
		size_t sl = sizeof(sig);

		T_CHECK(tok_key_sign(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len,
		            HSM_ALG_RS256, dg, 32, sig, &sl) == 0,
		    "sign (unwraps into a session object)");
	}
	n = raw_find(CKO_PRIVATE_KEY, 0, objs, 64);
	sess_objs = raw_find(CKO_PRIVATE_KEY, 1, objs + n, 64 - n);
	T_CHECK(n >= 2 && sess_objs >= 1,
	    "the token holds the JWT key and unwrapped session keys");
	for (i = 0; i < n; i++) {
		CK_KEY_TYPE kt = CKK_RSA;
		CK_ATTRIBUTE kta = { CKA_KEY_TYPE, &kt, sizeof(kt) };

		if (P->C_GetAttributeValue(RS, objs[i], &kta, 1) != CKR_OK)
			all_sensitive = 0;
		for (j = 0; j < sizeof(secret_attrs) / sizeof(secret_attrs[0]);
		     j++) {
			/* RSA: the CRT parts; EC: CKA_VALUE (the scalar) */
			if ((kt == CKK_RSA) != (secret_attrs[j] != CKA_VALUE))
				continue;
			if (raw_get(objs[i], secret_attrs[j]) !=
			    CKR_ATTRIBUTE_SENSITIVE)
				all_sensitive = 0;
		}
		ext = CK_TRUE;
		sens = CK_FALSE;
		wwt = CK_FALSE;
		/* the token's own keys (JWT, audit) leave it only wrapped by
		 * a trusted key, to a joining node (hsm/node.c) */
		if (P->C_GetAttributeValue(RS, objs[i], ea, 3) != CKR_OK ||
		    (ext != CK_FALSE && wwt != CK_TRUE) || sens != CK_TRUE)
			all_flags = 0;
	}
	T_CHECK(all_sensitive,
	    "no private key attribute of any private key "
	    "can be read (CKR_ATTRIBUTE_SENSITIVE)");
	T_CHECK(all_flags,
	    "every private key in the token is sensitive and not "
	    "extractable, or extractable only wrapped by a trusted key");
	n = raw_find(CKO_SECRET_KEY, 0, objs, 64);
	all_sensitive = n >= 1;
	for (i = 0; i < n; i++)
		if (raw_get(objs[i], CKA_VALUE) != CKR_ATTRIBUTE_SENSITIVE)
			all_sensitive = 0;
	T_CHECK(all_sensitive, "the domain key's CKA_VALUE is sensitive");
}

/* The blob is ciphertext: a plaintext PKCS#8 would carry n. */
static void
nx_blob_is_ciphertext(void)
{
	EVP_PKEY *pub;
	BIGNUM *nbn = NULL;
	uint8_t nbytes[256];

	pub = load_spki(RSA_K.spki, RSA_K.spki_len);
	if (pub != NULL)
		EVP_PKEY_get_bn_param(pub, "n", &nbn);
	T_CHECK(nbn != NULL && BN_bn2binpad(nbn, nbytes, 256) == 256 &&
	        !contains(RSA_K.blob, RSA_K.blob_len, nbytes + 100, 16),
	    "the RSA blob does not contain the modulus (it is not PKCS#8 "
	    "plaintext)");
	BN_free(nbn);
	EVP_PKEY_free(pub);
}

static void
nx_unwrap_attack(void)
{
	CK_OBJECT_HANDLE objs[64];
	CK_ULONG n;
	CK_OBJECT_HANDLE dom = CK_INVALID_HANDLE, unw = CK_INVALID_HANDLE;
	CK_OBJECT_CLASS sk = CKO_SECRET_KEY, pk = CKO_PRIVATE_KEY;
	CK_KEY_TYPE rsa = CKK_RSA;
	CK_BBOOL t = CK_TRUE, f = CK_FALSE;
	CK_ATTRIBUTE find_dom[] = {
		{ CKA_CLASS, &sk, sizeof(sk) },
		{ CKA_LABEL, "p11vault-domain", 15 },
	};
	CK_ATTRIBUTE evil[] = {
		{ CKA_CLASS, &pk, sizeof(pk) },
		{ CKA_KEY_TYPE, &rsa, sizeof(rsa) },
		{ CKA_TOKEN, &f, sizeof(f) },
		{ CKA_SENSITIVE, &f, sizeof(f) },
		{ CKA_EXTRACTABLE, &t, sizeof(t) },
	};
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	uint8_t wbuf[8192];
	CK_ULONG wlen = sizeof(wbuf);
	CK_RV rv;

	/* The attack: unwrap a blob with the domain key into an extractable
	 * object and read d. The domain key's unwrap template forbids it;
	 * if the token let it through, check the blob against d anyway. */
	if (P->C_FindObjectsInit(RS, find_dom, 2) == CKR_OK) {
		CK_ULONG c = 0;

		P->C_FindObjects(RS, &dom, 1, &c);
		P->C_FindObjectsFinal(RS);
	}
	rv = P->C_UnwrapKey(RS, &kwp, dom, RSA_K.blob + 8,
	    RSA_K.blob_len - 8 - 32, evil, 5, &unw);
	if (rv == CKR_OK) {
		uint8_t d[512];
		CK_ATTRIBUTE da = { CKA_PRIVATE_EXPONENT, d, sizeof(d) };

		T_CHECK(P->C_GetAttributeValue(RS, unw, &da, 1) == CKR_OK &&
		        !contains(RSA_K.blob, RSA_K.blob_len, d, da.ulValueLen),
		    "the blob does not contain the private exponent");
		P->C_DestroyObject(RS, unw);
	}
	T_CHECK(rv != CKR_OK,
	    "unwrapping a blob into a non-sensitive, "
	    "extractable object is refused by the domain key");
	{
		CK_KEY_TYPE gs = CKK_GENERIC_SECRET;
		CK_ATTRIBUTE evil2[] = {
			{ CKA_CLASS, &sk, sizeof(sk) },
			{ CKA_KEY_TYPE, &gs, sizeof(gs) },
			{ CKA_TOKEN, &f, sizeof(f) },
			{ CKA_SENSITIVE, &f, sizeof(f) },
			{ CKA_EXTRACTABLE, &t, sizeof(t) },
		};

		unw = CK_INVALID_HANDLE;
		rv = P->C_UnwrapKey(RS, &kwp, dom, RSA_K.blob + 8,
		    RSA_K.blob_len - 8 - 32, evil2, 5, &unw);
		if (rv == CKR_OK)
			P->C_DestroyObject(RS, unw);
		T_CHECK(rv != CKR_OK,
		    "unwrapping a blob as a readable "
		    "generic secret is refused by the domain key");
	}
	n = raw_find(CKO_PRIVATE_KEY, 1, objs, 64);
	wlen = sizeof(wbuf);
	T_CHECK(n >= 1 &&
	        P->C_WrapKey(RS, &kwp, dom, objs[0], wbuf, &wlen) != CKR_OK,
	    "an unwrapped session key cannot be wrapped out");
}

static void
test_non_extractable(void)
{
	nx_attributes();
	nx_blob_is_ciphertext();
	nx_unwrap_attack();
}

/* The bind key: as specified, and its value never readable. */
static void
test_bind_key(void)
{
	CK_OBJECT_CLASS sk = CKO_SECRET_KEY;
	CK_ATTRIBUTE find[] = {
		{ CKA_CLASS, &sk, sizeof(sk) },
		{ CKA_LABEL, "p11vault-bind", 13 },
	};
	CK_OBJECT_HANDLE k[2];
	CK_ULONG n = 0, vlen = 0;
	CK_KEY_TYPE kt = 0;
	CK_BBOOL tok = 0, priv = 0, sens = 0, ext = 0, wwt = 0, sign = 0,
	         vfy = 0, enc = 1, dec = 1, wrap = 1, unwrap = 1, derive = 1;
	CK_ATTRIBUTE a[] = {
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
		{ CKA_TOKEN, &tok, 1 },
		{ CKA_PRIVATE, &priv, 1 },
		{ CKA_SENSITIVE, &sens, 1 },
		{ CKA_EXTRACTABLE, &ext, 1 },
		{ CKA_WRAP_WITH_TRUSTED, &wwt, 1 },
		{ CKA_SIGN, &sign, 1 },
		{ CKA_VERIFY, &vfy, 1 },
		{ CKA_ENCRYPT, &enc, 1 },
		{ CKA_DECRYPT, &dec, 1 },
		{ CKA_WRAP, &wrap, 1 },
		{ CKA_UNWRAP, &unwrap, 1 },
		{ CKA_DERIVE, &derive, 1 },
	};

	if (P->C_FindObjectsInit(RS, find, 2) == CKR_OK) {
		P->C_FindObjects(RS, k, 2, &n);
		P->C_FindObjectsFinal(RS);
	}
	T_CHECK(n == 1,
	    "the token holds exactly one bind key "
	    "(\"p11vault-bind\")");
	if (n != 1)
		return;
	T_CHECK(P->C_GetAttributeValue(RS, k[0], a, sizeof(a) / sizeof(a[0])) ==
	            CKR_OK &&
	        kt == CKK_GENERIC_SECRET && vlen == 32 && tok && priv && sens &&
	        ext && wwt && sign && vfy && !enc && !dec && !wrap && !unwrap &&
	        !derive,
	    "bind key: generic secret, 32 "
	    "bytes, token, private, sensitive, extractable only under a "
	    "trusted key, sign/verify only");
	T_CHECK(raw_get(k[0], CKA_VALUE) == CKR_ATTRIBUTE_SENSITIVE,
	    "the bind key's value cannot be read");
	{
		/* an AES key of our own, not trusted, cannot wrap it out */
		CK_KEY_TYPE aes = CKK_AES;
		CK_ULONG len = 32, wl;
		CK_BBOOL t = CK_TRUE, f = CK_FALSE;
		CK_ATTRIBUTE at[] = {
			{ CKA_CLASS, &sk, sizeof(sk) },
			{ CKA_KEY_TYPE, &aes, sizeof(aes) },
			{ CKA_VALUE_LEN, &len, sizeof(len) },
			{ CKA_TOKEN, &f, 1 },
			{ CKA_WRAP, &t, 1 },
		};
		CK_MECHANISM gen = { CKM_AES_KEY_GEN, NULL, 0 };
		CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
		CK_OBJECT_HANDLE mine = CK_INVALID_HANDLE;
		uint8_t out[256];

		wl = sizeof(out);
		T_CHECK(P->C_GenerateKey(RS, &gen, at, 5, &mine) == CKR_OK &&
		        P->C_WrapKey(RS, &kwp, mine, k[0], out, &wl) != CKR_OK,
		    "an untrusted key of our own cannot wrap the bind key out");
		if (mine != CK_INVALID_HANDLE)
			P->C_DestroyObject(RS, mine);
	}
}

/* A blob as format 1 had it, from a format-2 one: the same AES-KWP
 * bytes (KWP is deterministic), version 1, no tag. A test-only path;
 * it also shows why an upgrade is trust on first use. */
static size_t
legacy_of(const char *bind, const uint8_t *blob, size_t len, uint8_t *out,
    size_t cap)
{
	struct hsm_blob_info bi;
	struct hsm_sess s;
	uint8_t w[HSM_WRAP_BUF];
	size_t n = 0;

	/* the format-3 layer opened in the token, as the upgrade does: what
	 * is left is the domain key's wrapping, as format 1 held it */
	if (hsm_blob_parse(blob, len, &bi) != 0 || hsm_sess_take(H, &s) != 0)
		return 0;
	if (hsm_blob_open(H, &s, bind, &bi, w) == 0 &&
	    8 + bi.wrapped_len <= cap) {
		memcpy(out, blob, 8);
		out[4] = 1;
		memcpy(out + 8, bi.wrapped, bi.wrapped_len);
		n = 8 + bi.wrapped_len;
	}
	hsm_sess_give(H, &s);
	OPENSSL_cleanse(w, sizeof(w));
	return n;
}

/* A format-1 blob made as the code before binding made one, through raw
 * PKCS#11 (not the module under test): a session key pair, the private
 * key wrapped under the domain key, the version-1 header. *pub is the
 * public key object (the caller destroys it). */
static size_t
raw_legacy_rsa(uint8_t *out, size_t cap, CK_OBJECT_HANDLE *pub)
{
	CK_OBJECT_CLASS sk = CKO_SECRET_KEY;
	CK_ATTRIBUTE find_dom[] = {
		{ CKA_CLASS, &sk, sizeof(sk) },
		{ CKA_LABEL, "p11vault-domain", 15 },
	};
	CK_BBOOL t = CK_TRUE, f = CK_FALSE;
	CK_ULONG bits = 2048, c = 0, wlen;
	CK_BYTE e[] = { 1, 0, 1 };
	CK_ATTRIBUTE pt[] = {
		{ CKA_TOKEN, &f, 1 },
		{ CKA_MODULUS_BITS, &bits, sizeof(bits) },
		{ CKA_PUBLIC_EXPONENT, e, 3 },
		{ CKA_VERIFY, &t, 1 },
	};
	CK_ATTRIBUTE kt[] = {
		{ CKA_TOKEN, &f, 1 },
		{ CKA_PRIVATE, &t, 1 },
		{ CKA_SENSITIVE, &t, 1 },
		{ CKA_EXTRACTABLE, &t, 1 },
		{ CKA_WRAP_WITH_TRUSTED, &t, 1 },
		{ CKA_SIGN, &t, 1 },
		{ CKA_DECRYPT, &t, 1 },
	};
	CK_MECHANISM gen = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_OBJECT_HANDLE dom = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
	CK_RV rv;

	*pub = CK_INVALID_HANDLE;
	if (cap < 8 || P->C_FindObjectsInit(RS, find_dom, 2) != CKR_OK)
		return 0;
	P->C_FindObjects(RS, &dom, 1, &c);
	P->C_FindObjectsFinal(RS);
	if (c != 1 ||
	    P->C_GenerateKeyPair(RS, &gen, pt, 4, kt, 7, pub, &priv) != CKR_OK)
		return 0;
	wlen = cap - 8;
	rv = P->C_WrapKey(RS, &kwp, dom, priv, out + 8, &wlen);
	P->C_DestroyObject(RS, priv);
	if (rv != CKR_OK)
		return 0;
	memcpy(out, "P11V\x01\x01\x08\x00", 8); /* v1, RSA, 2048 */
	return 8 + wlen;
}

/* RS256 by the module on blob under id, verified by the token with the
 * raw public key object. */
static int
raw_sign_verifies(const char *id, const uint8_t *blob, size_t len,
    CK_OBJECT_HANDLE pub)
{
	static const uint8_t m[] = "p11vault legacy";
	CK_MECHANISM mv = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	uint8_t dg[32], sig[512];
	size_t sl = sizeof(sig);

	SHA256(m, sizeof(m), dg);
	if (tok_key_sign(H, id, blob, len, HSM_ALG_RS256, dg, 32, sig, &sl) !=
	    0)
		return 0;
	return P->C_VerifyInit(RS, &mv, pub) == CKR_OK &&
	    P->C_Verify(RS, (CK_BYTE *)m, sizeof(m), sig, sl) == CKR_OK;
}

/* A blob is bound to the bind it was made with: any other bind, any
 * altered byte, the unbound format: HSM_ERR_INTERNAL and no result. */
/* What the binding steps share: a message and its RSA-OAEP ciphertext. */
struct bind_ctx {
	uint8_t msg[32], ct[256];
	size_t ctl;
};

static void
bind_ids(struct bind_ctx *b)
{
	uint8_t pt[256], zero[256], dg[32] = { 3 }, dg48[48] = { 4 }, sig[512];
	size_t ptl, sl;
	uint64_t h0, m0, h1, m1;

	memset(zero, 0, sizeof(zero));
	/* bind A works, bind B does not, whether or not A is cached */
	ptl = sizeof(pt);
	T_CHECK(tok_key_decrypt(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len,
	            HSM_ALG_RSA_OAEP, b->ct, b->ctl, pt, &ptl) == 0 &&
	        ptl == sizeof(b->msg),
	    "decrypt under the blob's own bind works (and is cached)");
	memset(pt, 0, sizeof(pt));
	ptl = sizeof(pt);
	tok_stats(H, &h0, &m0, NULL, NULL);
	T_CHECK(tok_key_decrypt(H, "kv-other", RSA_K.blob, RSA_K.blob_len,
	            HSM_ALG_RSA_OAEP, b->ct, b->ctl, pt,
	            &ptl) == HSM_ERR_INTERNAL &&
	        ptl == sizeof(pt) && memcmp(pt, zero, sizeof(pt)) == 0,
	    "decrypt of a blob under another bind: INTERNAL, no result");
	tok_stats(H, &h1, &m1, NULL, NULL);
	T_CHECK(h1 == h0,
	    "the refused bind was no cache hit (the cached "
	    "handle of the blob's own bind is not lent to another)");
	sl = sizeof(sig);
	T_CHECK(tok_key_sign(H, "kv-other", RSA_K.blob, RSA_K.blob_len,
	            HSM_ALG_RS256, dg, 32, sig, &sl) == HSM_ERR_INTERNAL &&
	        sl == sizeof(sig),
	    "sign with a blob under another bind: "
	    "INTERNAL, no result");
	sl = sizeof(sig);
	T_CHECK(tok_key_sign(H, "kv-rsa ", RSA_K.blob, RSA_K.blob_len,
	            HSM_ALG_RS256, dg, 32, sig, &sl) == HSM_ERR_INTERNAL,
	    "a bind differing by one trailing byte is another bind");
	/* the swap: key A's blob presented under B's id, B cached */
	sl = sizeof(sig);
	T_CHECK(tok_key_sign(H, EC_K[0].id, EC_K[0].blob, EC_K[0].blob_len,
	            HSM_ALG_ES256, dg, 32, sig, &sl) == 0,
	    "EC key B signs (cached)");
	sl = sizeof(sig);
	T_CHECK(tok_key_sign(H, EC_K[0].id, EC_K[1].blob, EC_K[1].blob_len,
	            HSM_ALG_ES384, dg48, 48, sig, &sl) == HSM_ERR_INTERNAL,
	    "another key's blob under B's (cached) bind is refused");
	ptl = sizeof(pt);
	T_CHECK(tok_key_decrypt(H, EC_K[0].id, RSA_K.blob, RSA_K.blob_len,
	            HSM_ALG_RSA_OAEP, b->ct, b->ctl, pt,
	            &ptl) == HSM_ERR_INTERNAL,
	    "an RSA blob moved under an EC key's bind: INTERNAL");
	sl = sizeof(sig);
	T_CHECK(tok_key_sign(H, EC_K[0].id, EC_K[0].blob, EC_K[0].blob_len,
	            HSM_ALG_ES256, dg, 32, sig, &sl) == 0,
	    "after the refusals B's own blob still works");
}

static void
bind_tampered(struct bind_ctx *b)
{
	uint8_t pt[256], dg[32] = { 3 }, sig[512], bad[4096];
	size_t ptl, sl;

	/* altered bytes */
	memcpy(bad, RSA_K.blob, RSA_K.blob_len);
	bad[RSA_K.blob_len - 1] ^= 0x01;
	ptl = sizeof(pt);
	sl = sizeof(sig);
	T_CHECK(tok_key_decrypt(H, RSA_K.id, bad, RSA_K.blob_len,
	            HSM_ALG_RSA_OAEP, b->ct, b->ctl, pt,
	            &ptl) == HSM_ERR_INTERNAL &&
	        tok_key_sign(H, RSA_K.id, bad, RSA_K.blob_len, HSM_ALG_RS256,
	            dg, 32, sig, &sl) == HSM_ERR_INTERNAL,
	    "a tampered tag: INTERNAL "
	    "(decrypt and sign), though the id is cached");
	memcpy(bad, RSA_K.blob, RSA_K.blob_len);
	bad[20] ^= 0x01;
	ptl = sizeof(pt);
	T_CHECK(tok_key_decrypt(H, RSA_K.id, bad, RSA_K.blob_len,
	            HSM_ALG_RSA_OAEP, b->ct, b->ctl, pt,
	            &ptl) == HSM_ERR_INTERNAL,
	    "a tampered wrapped key: INTERNAL");
	ptl = sizeof(pt);
	T_CHECK(tok_key_decrypt(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len - 32,
	            HSM_ALG_RSA_OAEP, b->ct, b->ctl, pt,
	            &ptl) == HSM_ERR_INTERNAL,
	    "a blob without its tag: INTERNAL");
	ptl = sizeof(pt);
	T_CHECK(tok_key_decrypt(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len,
	            HSM_ALG_RSA_OAEP, b->ct, b->ctl, pt, &ptl) == 0 &&
	        ptl == sizeof(b->msg) && memcmp(pt, b->msg, ptl) == 0,
	    "the genuine blob still decrypts");
}

static void
bind_upgrade(struct bind_ctx *b)
{
	uint8_t pt[256], dg[32] = { 3 }, sig[512], bad[4096], *up = NULL,
	                 *up2 = NULL;
	size_t ptl, sl, bl, upl = 0, up2l = 0;

	/* format 1: refused for use; the upgrade binds it once */
	bl = legacy_of(RSA_K.id, RSA_K.blob, RSA_K.blob_len, bad, sizeof(bad));
	T_CHECK(bl > 0 && blob_is_old(bad, bl) &&
	        !blob_is_old(RSA_K.blob, RSA_K.blob_len) &&
	        !blob_is_old(bad, bl - 1) && !blob_is_old(NULL, 0),
	    "hsm_blob_format: an older format for a well-formed format-1 blob only");
	ptl = sizeof(pt);
	sl = sizeof(sig);
	T_CHECK(tok_key_decrypt(H, "up/1", bad, bl, HSM_ALG_RSA_OAEP, b->ct,
	            b->ctl, pt, &ptl) == HSM_ERR_INTERNAL &&
	        tok_key_sign(H, "up/1", bad, bl, HSM_ALG_RS256, dg, 32, sig,
	            &sl) == HSM_ERR_INTERNAL,
	    "a format-1 blob is refused by decrypt and sign");
	T_CHECK(tok_blob_upgrade(H, "up/1", bad, bl, &up, &upl) == 0 &&
	        up != NULL && !blob_is_old(up, upl) && upl == RSA_K.blob_len,
	    "upgrade of a format-1 blob gives a "
	    "format-3 blob");
	ptl = sizeof(pt);
	T_CHECK(up != NULL &&
	        tok_key_decrypt(H, "up/1", up, upl, HSM_ALG_RSA_OAEP, b->ct,
	            b->ctl, pt, &ptl) == 0 &&
	        ptl == sizeof(b->msg) && memcmp(pt, b->msg, ptl) == 0,
	    "the upgraded blob decrypts under "
	    "the bind it was upgraded to");
	ptl = sizeof(pt);
	T_CHECK(up != NULL &&
	        tok_key_decrypt(H, RSA_K.id, up, upl, HSM_ALG_RSA_OAEP, b->ct,
	            b->ctl, pt, &ptl) == HSM_ERR_INTERNAL,
	    "... and under no other");
	T_CHECK(up != NULL &&
	        tok_blob_upgrade(H, "up/2", up, upl, &up2, &up2l) ==
	            HSM_ERR_ARGS &&
	        up2 == NULL &&
	        tok_blob_upgrade(H, "up/2", RSA_K.blob, RSA_K.blob_len, &up2,
	            &up2l) == HSM_ERR_ARGS,
	    "upgrade of a format-3 blob: ARGS (never "
	    "re-bound)");
	T_CHECK(tok_blob_upgrade(H, "", bad, bl, &up2, &up2l) == HSM_ERR_ARGS &&
	        tok_blob_upgrade(H, "x", bad, 7, &up2, &up2l) == HSM_ERR_ARGS,
	    "upgrade with an empty bind or of junk: ARGS");
	bad[30] ^= 0x40;
	T_CHECK(tok_blob_upgrade(H, "up/3", bad, bl, &up2, &up2l) ==
	            HSM_ERR_INTERNAL &&
	        up2 == NULL,
	    "upgrade of a format-1 blob "
	    "the domain key does not open: INTERNAL, nothing bound");
	bad[30] ^= 0x40;
	bad[5] = 2; /* EC, P-256: the header lies */
	bad[6] = 0;
	bad[7] = 1;
	T_CHECK(tok_blob_upgrade(H, "up/4", bad, bl, &up2, &up2l) ==
	            HSM_ERR_INTERNAL &&
	        up2 == NULL,
	    "upgrade of a format-1 blob "
	    "whose header names another key type: INTERNAL");
	free(up);
}

static void
test_binding(void)
{
	struct bind_ctx b;

	b.ctl = sizeof(b.ct);
	RAND_bytes(b.msg, sizeof(b.msg));
	T_CHECK(hsm_pub_encrypt(RSA_K.spki, RSA_K.spki_len, HSM_ALG_RSA_OAEP,
	            b.msg, sizeof(b.msg), b.ct, &b.ctl) == 0,
	    "encrypt for the binding tests");
	bind_ids(&b);
	bind_tampered(&b);
	bind_upgrade(&b);
}

/* A format-1 blob as the old code made it (raw PKCS#11), end to end. */
static void
test_legacy(void)
{
	uint8_t old[4096], *up = NULL, dg[32] = { 5 }, sig[512];
	size_t ol, upl = 0, sl = sizeof(sig);
	CK_OBJECT_HANDLE pub;

	ol = raw_legacy_rsa(old, sizeof(old), &pub);
	T_CHECK(ol > 8 && blob_is_old(old, ol),
	    "raw PKCS#11 makes a format-1 blob, as before binding");
	if (ol <= 8)
		return;
	T_CHECK(tok_key_sign(H, "legacy/1", old, ol, HSM_ALG_RS256, dg, 32, sig,
	            &sl) == HSM_ERR_INTERNAL,
	    "the old blob is refused for use");
	T_CHECK(tok_blob_upgrade(H, "legacy/1", old, ol, &up, &upl) == 0 &&
	        raw_sign_verifies("legacy/1", up, upl, pub),
	    "upgraded, it signs under its bind (verified with the raw "
	    "public key)");
	sl = sizeof(sig);
	T_CHECK(up != NULL &&
	        tok_key_sign(H, "legacy/2", up, upl, HSM_ALG_RS256, dg, 32, sig,
	            &sl) == HSM_ERR_INTERNAL,
	    "the upgraded blob is refused under another bind");
	free(up);
	P->C_DestroyObject(RS, pub);
}

/* A copy of k's key bound to id (the upgrade of its format-1 form). */
static int
bound_copy(const struct key *k, const char *id, uint8_t **blob, size_t *len)
{
	uint8_t old[4096];
	size_t ol = legacy_of(k->id, k->blob, k->blob_len, old, sizeof(old));

	*blob = NULL;
	return ol > 0 && tok_blob_upgrade(H, id, old, ol, blob, len) == 0;
}

static void
test_cache(void)
{
	uint64_t hits0, miss0, hits1, miss1;
	size_t busy, total, i, ptl;
	uint8_t msg[16] = "cache-test-msg!", ct[256], pt[256], dg[32] = { 7 };
	uint8_t sig[512];
	size_t ctl = sizeof(ct), sl;
	CK_OBJECT_HANDLE objs[64];
	char id[32];
	int ok = 1;

	T_CHECK(hsm_pub_encrypt(RSA_K.spki, RSA_K.spki_len, HSM_ALG_RSA_OAEP,
	            msg, sizeof(msg), ct, &ctl) == 0,
	    "encrypt for the cache tests");
	tok_stats(H, &hits0, &miss0, &busy, &total);
	ptl = sizeof(pt);
	T_CHECK(tok_key_decrypt(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len,
	            HSM_ALG_RSA_OAEP, ct, ctl, pt, &ptl) == 0,
	    "decrypt (cached)");
	tok_stats(H, &hits1, &miss1, &busy, &total);
	T_CHECK(hits1 == hits0 + 1 && miss1 == miss0 && busy == 0 && total == 4,
	    "a second use of a cache_id is a cache hit");
	tok_key_forget(H, RSA_K.id);
	ptl = sizeof(pt);
	T_CHECK(tok_key_decrypt(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len,
	            HSM_ALG_RSA_OAEP, ct, ctl, pt, &ptl) == 0 &&
	        ptl == sizeof(msg) && memcmp(pt, msg, ptl) == 0,
	    "after tok_key_forget, decrypt still works (re-unwraps)");
	tok_stats(H, &hits0, &miss0, NULL, NULL);
	T_CHECK(miss0 == miss1 + 1, "the forgotten id was a cache miss");

	for (i = 0; i < 20; i++) {
		uint8_t *b = NULL;
		size_t bl = 0;

		snprintf(id, sizeof(id), "evict-%zu", i);
		ptl = sizeof(pt);
		sl = sizeof(sig);
		if (!bound_copy(&RSA_K, id, &b, &bl) ||
		    tok_key_decrypt(H, id, b, bl, HSM_ALG_RSA_OAEP, ct, ctl, pt,
		        &ptl) != 0 ||
		    ptl != sizeof(msg) ||
		    tok_key_sign(H, id, b, bl, HSM_ALG_RS256, dg, 32, sig,
		        &sl) != 0)
			ok = 0;
		free(b);
	}
	T_CHECK(ok, "20 cache_ids through a cache of 4 all work (eviction)");
	T_CHECK(raw_find(CKO_PRIVATE_KEY, 1, objs, 64) <= 4,
	    "evicted handles are destroyed: at most cache_size session keys");
}

struct worker {
	int ok;
	unsigned seed;
};

/* 7 ids per key, each with the key's blob bound to it */
#define TH_IDS 7
static uint8_t *th_blob[2][TH_IDS];
static size_t th_len[2][TH_IDS];

static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	uint8_t dg[32], sig[512];
	char id[32];
	size_t sl;
	unsigned j;
	int i, valid;

	w->ok = 1;
	for (i = 0; i < 40; i++) {
		struct key *k = (i % 2) ? &RSA_K : &EC_K[0];
		enum hsm_alg alg = (i % 2) ? HSM_ALG_PS256 : HSM_ALG_ES256;

		j = (w->seed + (unsigned)i) % TH_IDS;
		snprintf(id, sizeof(id), "%s-%u", k->name, j);
		RAND_bytes(dg, sizeof(dg));
		sl = sizeof(sig);
		if (tok_key_sign(H, id, th_blob[i % 2][j], th_len[i % 2][j],
		        alg, dg, 32, sig, &sl) != 0 ||
		    hsm_pub_verify(k->spki, k->spki_len, alg, dg, 32, sig, sl,
		        &valid) != 0 ||
		    valid != 1)
			w->ok = 0;
		/* a blob bound to another id of the same key: refused */
		sl = sizeof(sig);
		if (i % 5 == 0 &&
		    tok_key_sign(H, id, th_blob[i % 2][(j + 1) % TH_IDS],
		        th_len[i % 2][(j + 1) % TH_IDS], alg, dg, 32, sig,
		        &sl) != HSM_ERR_INTERNAL)
			w->ok = 0;
		if (i % 10 == 0)
			tok_key_forget(H, id);
	}
	return NULL;
}

static void
test_threads(void)
{
	pthread_t th[6];
	struct worker w[6];
	char id[32];
	int i, ok = 1;
	unsigned j;
	size_t busy = 1;

	for (i = 0; i < 2; i++) {
		struct key *k = i ? &RSA_K : &EC_K[0];

		for (j = 0; j < TH_IDS; j++) {
			snprintf(id, sizeof(id), "%s-%u", k->name, j);
			if (!bound_copy(k, id, &th_blob[i][j], &th_len[i][j]))
				ok = 0;
		}
	}
	T_CHECK(ok, "14 bound copies for the thread test");
	if (!ok)
		goto out;
	for (i = 0; i < 6; i++) {
		w[i].seed = (unsigned)i * 3;
		pthread_create(&th[i], NULL, worker_run, &w[i]);
	}
	for (i = 0; i < 6; i++) {
		pthread_join(th[i], NULL);
		ok &= w[i].ok;
	}
	tok_stats(H, NULL, NULL, &busy, NULL);
	T_CHECK(ok && busy == 0,
	    "6 threads x 40 signs over 14 ids, cache of "
	    "4, pool of 4, with forgets and blobs of other ids: all verify, "
	    "every misbound blob refused");
out:
	for (i = 0; i < 2; i++)
		for (j = 0; j < TH_IDS; j++)
			free(th_blob[i][j]);
}

static void
test_recovery(void)
{
	uint8_t dg[32] = { 9 }, sig[512];
	size_t sl = sizeof(sig);

	/* Close every session of this process (the module's too) and log
	 * out: the next call fails, the one after recovers. */
	T_CHECK(P->C_CloseAllSessions(raw_slot) == CKR_OK,
	    "raw C_CloseAllSessions");
	T_CHECK(tok_key_sign(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len,
	            HSM_ALG_RS256, dg, 32, sig, &sl) == HSM_ERR_UNAVAILABLE,
	    "a call on a lost session is UNAVAILABLE");
	sl = sizeof(sig);
	T_CHECK(tok_key_sign(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len,
	            HSM_ALG_RS256, dg, 32, sig, &sl) == 0,
	    "the next call recovers (sessions reopened, login, cache cleared)");
	T_CHECK(tok_health(H) == 0, "health is OK after recovery");
}

/*
 * A token without a seal key (one initialised before blobs were sealed)
 * gets one at tok_open. Here the seal key is destroyed by hand, so the
 * new one also shows that blobs fail closed when the key changes.
 */
static void
test_bind_key_created(void)
{
	struct tok_config cfg = { MODULE, LABEL, USER_PIN, 2, 4 };
	CK_OBJECT_CLASS sk = CKO_SECRET_KEY;
	CK_ATTRIBUTE find[] = {
		{ CKA_CLASS, &sk, sizeof(sk) },
		{ CKA_LABEL, "p11vault-seal", 13 },
	};
	CK_OBJECT_HANDLE k[2];
	CK_ULONG n = 0;
	uint8_t dg[32] = { 2 }, sig[512], *b = NULL, *s = NULL;
	size_t sl = sizeof(sig), bl = 0, spl = 0;

	T_CHECK(raw_open(), "raw session again, the module closed");
	if (P->C_FindObjectsInit(RS, find, 2) == CKR_OK) {
		P->C_FindObjects(RS, k, 2, &n);
		P->C_FindObjectsFinal(RS);
	}
	T_CHECK(n == 1 && P->C_DestroyObject(RS, k[0]) == CKR_OK,
	    "the seal key is destroyed by hand");
	T_CHECK(tok_open(&cfg, &H) == 0, "open a token without a seal key");
	if (H == NULL)
		return;
	n = 0;
	if (P->C_FindObjectsInit(RS, find, 2) == CKR_OK) {
		P->C_FindObjects(RS, k, 2, &n);
		P->C_FindObjectsFinal(RS);
	}
	T_CHECK(n == 1, "tok_open made a seal key");
	T_CHECK(tok_key_sign(H, RSA_K.id, RSA_K.blob, RSA_K.blob_len,
	            HSM_ALG_RS256, dg, 32, sig, &sl) == HSM_ERR_INTERNAL,
	    "a blob sealed by the old seal key fails closed");
	sl = sizeof(sig);
	T_CHECK(tok_key_generate(H, "new/1", HSM_KTY_EC, 0,
	            NID_X9_62_prime256v1, &b, &bl, &s, &spl) == 0 &&
	        tok_key_sign(H, "new/1", b, bl, HSM_ALG_ES256, dg, 32, sig,
	            &sl) == 0,
	    "new blobs are sealed with the new key");
	free(b);
	free(s);
	tok_close(H);
	H = NULL;
}

static void
free_key(struct key *k)
{
	free(k->blob);
	free(k->spki);
}

int
main(void)
{
	struct tok_config cfg = { MODULE, LABEL, USER_PIN, 4, 4 };
	char cmd[256];
	int i;

	if (softhsm_setup(tmpdir) != 0) {
		T_CHECK(0, "set up a private SoftHSMv2 token directory");
		return T_DONE();
	}
	test_init_open();
	T_CHECK(tok_open(&cfg, &H) == 0 && H != NULL, "open the token");
	if (H == NULL)
		return T_DONE();
	T_CHECK(tok_health(H) == 0, "health is OK");
	T_CHECK(raw_open(), "raw PKCS#11 session with the user PIN");
	test_generate();
	test_decrypt();
	test_sign();
	test_jwt();
	test_bind_key();
	test_binding();
	test_legacy();
	test_non_extractable();
	test_cache();
	test_threads();
	test_recovery();
	tok_close(H);
	test_bind_key_created();
	if (raw_dl != NULL)
		dlclose(raw_dl);
	free_key(&RSA_K);
	for (i = 0; i < 4; i++)
		free_key(&EC_K[i]);
	if (snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir) <
	    (int)sizeof(cmd))
		i = system(cmd);
	return T_DONE();
}
