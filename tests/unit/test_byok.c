/*
 * test_byok — plaintext import, BYOK transfer blobs (two C_UnwrapKey steps)
 * and backup sealing, against a real SoftHSMv2 token in a private temporary
 * token directory. Transfer blobs are built here with plain OpenSSL
 * (RSA-OAEP-SHA-1 + AES-256 key wrap with padding), independently of the
 * code under test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

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
#define LABEL "p11vault-byok"
#define LABEL2 "p11vault-other"
#define SO_PIN "so-secret-1234"
#define USER_PIN "user-secret-1234"

#define HSM_TEST_BLOB_MAX 4096

static char tmpdir[] = "/tmp/p11vault-byok-XXXXXX";

static EVP_PKEY *
gen_key(const char *type, int bits_or_nid)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pk = NULL;

	if (c == NULL || EVP_PKEY_keygen_init(c) != 1)
		goto out;
	if (strcmp(type, "RSA") == 0) {
		if (EVP_PKEY_CTX_set_rsa_keygen_bits(c, bits_or_nid) != 1)
			goto out;
	} else if (EVP_PKEY_CTX_set_ec_paramgen_curve_nid(c, bits_or_nid) !=
	    1) {
		goto out;
	}
	(void)EVP_PKEY_keygen(c, &pk);
out:
	EVP_PKEY_CTX_free(c);
	return pk;
}

static int
pkcs8_of(EVP_PKEY *pk, uint8_t **der, size_t *len)
{
	PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pk);
	unsigned char *d = NULL;
	int n = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, &d) : -1;

	PKCS8_PRIV_KEY_INFO_free(p8);
	if (n <= 0)
		return -1;
	*der = d;
	*len = (size_t)n;
	return 0;
}

static int
spki_matches(EVP_PKEY *pk, const uint8_t *spki, size_t len)
{
	unsigned char *d = NULL;
	int n = i2d_PUBKEY(pk, &d), ok;

	ok = n > 0 && (size_t)n == len && memcmp(d, spki, len) == 0;
	OPENSSL_free(d);
	return ok;
}

/* The transfer ciphertext, as Azure's BYOK tooling makes it. */
static int
make_transfer(const uint8_t *kek_spki, size_t kek_len, EVP_PKEY *target,
    uint8_t **out, size_t *out_len)
{
	const unsigned char *p = kek_spki;
	EVP_PKEY *kek = d2i_PUBKEY(NULL, &p, (long)kek_len);
	EVP_PKEY_CTX *c = kek ? EVP_PKEY_CTX_new(kek, NULL) : NULL;
	EVP_CIPHER_CTX *cc = EVP_CIPHER_CTX_new();
	uint8_t aes[32], *p8 = NULL, *buf = NULL;
	size_t p8len = 0, rlen = 0;
	int l1 = 0, l2 = 0, ok = 0;

	if (c == NULL || cc == NULL || RAND_bytes(aes, 32) != 1 ||
	    pkcs8_of(target, &p8, &p8len) != 0)
		goto out;
	if (EVP_PKEY_encrypt_init(c) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha1()) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha1()) != 1 ||
	    EVP_PKEY_encrypt(c, NULL, &rlen, aes, 32) != 1)
		goto out;
	if ((buf = malloc(rlen + p8len + 16)) == NULL ||
	    EVP_PKEY_encrypt(c, buf, &rlen, aes, 32) != 1)
		goto out;
	EVP_CIPHER_CTX_set_flags(cc, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	if (EVP_EncryptInit_ex(cc, EVP_aes_256_wrap_pad(), NULL, aes, NULL) !=
	        1 ||
	    EVP_EncryptUpdate(cc, buf + rlen, &l1, p8, (int)p8len) != 1 ||
	    EVP_EncryptFinal_ex(cc, buf + rlen + l1, &l2) != 1)
		goto out;
	*out = buf;
	*out_len = rlen + (size_t)l1 + (size_t)l2;
	buf = NULL;
	ok = 1;
out:
	OPENSSL_cleanse(aes, sizeof(aes));
	if (p8)
		OPENSSL_clear_free(p8, p8len);
	free(buf);
	EVP_CIPHER_CTX_free(cc);
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(kek);
	ERR_clear_error();
	return ok ? 0 : -1;
}

/* Signs with the token and verifies with the original key in OpenSSL.
 * ec: 0 for RSA, else the field size in bytes. */
static int
sign_works(tok_t *h, const char *id, const uint8_t *blob, size_t blob_len,
    EVP_PKEY *pk, int ec)
{
	uint8_t dg[64], sig[1024], *der = NULL;
	size_t sl = sizeof(sig), fl, dl = ec == 48 ? 48 : ec == 66 ? 64 : 32;
	const EVP_MD *md = dl == 48 ? EVP_sha384() :
	    dl == 64                ? EVP_sha512() :
	                              EVP_sha256();
	enum hsm_alg alg = ec == 0 ? HSM_ALG_RS256 :
	    dl == 48               ? HSM_ALG_ES384 :
	    dl == 64               ? HSM_ALG_ES512 :
	                             HSM_ALG_ES256;
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pk, NULL);
	ECDSA_SIG *es = NULL;
	const unsigned char *vs = sig;
	size_t vl;
	int ok = 0, n;

	if (EVP_Digest("byok", 4, dg, NULL, md, NULL) != 1 ||
	    tok_key_sign(h, id, blob, blob_len, alg, dg, dl, sig, &sl) != 0)
		goto out;
	vl = sl;
	if (c == NULL || EVP_PKEY_verify_init(c) != 1)
		goto out;
	if (ec) {
		fl = sl / 2;
		es = ECDSA_SIG_new();
		if (es == NULL ||
		    ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)fl, NULL),
		        BN_bin2bn(sig + fl, (int)fl, NULL)) != 1 ||
		    (n = i2d_ECDSA_SIG(es, &der)) <= 0)
			goto out;
		vs = der;
		vl = (size_t)n;
	} else if (EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) != 1) {
		goto out;
	}
	ok = EVP_PKEY_verify(c, vs, vl, dg, dl) == 1;
out:
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_PKEY_CTX_free(c);
	ERR_clear_error();
	return ok;
}

static void
test_plain_import(tok_t *h)
{
	static const struct {
		const char *type;
		int arg;
		int ec;
	} cases[] = {
		{ "RSA", 2048, 0 },
		{ "RSA", 3072, 0 },
		{ "EC", NID_X9_62_prime256v1, 32 },
		{ "EC", NID_secp384r1, 48 },
		{ "EC", NID_secp521r1, 66 },
	};
	struct hsm_key_desc d;
	uint8_t *p8 = NULL, *blob = NULL, *spki = NULL;
	size_t p8len, blen, slen, i;
	char name[128], id[32];
	EVP_PKEY *pk;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pk = gen_key(cases[i].type, cases[i].arg);
		if (pk == NULL || pkcs8_of(pk, &p8, &p8len) != 0) {
			T_CHECK(0, "make a key to import");
			EVP_PKEY_free(pk);
			continue;
		}
		snprintf(name, sizeof(name),
		    "plaintext import %s/%d: the "
		    "public key matches and the token signs with it",
		    cases[i].type, cases[i].arg);
		snprintf(id, sizeof(id), "plain-%zu", i);
		T_CHECK(tok_key_import(h, id, p8, p8len, &d, &blob, &blen,
		            &spki, &slen) == 0 &&
		        spki_matches(pk, spki, slen) &&
		        d.kty == (cases[i].ec ? HSM_KTY_EC : HSM_KTY_RSA) &&
		        sign_works(h, id, blob, blen, pk, cases[i].ec),
		    name);
		snprintf(name, sizeof(name),
		    "plaintext import %s/%d: the "
		    "blob is bound to its bind, refused under another",
		    cases[i].type, cases[i].arg);
		T_CHECK(blob != NULL && !blob_is_old(blob, blen) &&
		        !sign_works(h, "plain-other", blob, blen, pk,
		            cases[i].ec),
		    name);
		/* the blob is wrapped, not the plaintext */
		T_CHECK(blob == NULL ||
		        memmem(blob, blen, p8 + p8len - 16, 16) == NULL,
		    "the blob does not hold the PKCS#8 bytes");
		OPENSSL_clear_free(p8, p8len);
		free(blob);
		free(spki);
		blob = spki = NULL;
		EVP_PKEY_free(pk);
	}
	{
		uint8_t junk[300];
		memset(junk, 0x30, sizeof(junk));
		T_CHECK(tok_key_import(h, "junk", junk, sizeof(junk), &d, &blob,
		            &blen, &spki, &slen) == HSM_ERR_ARGS &&
		        blob == NULL,
		    "a malformed PKCS#8 is refused with ARGS");
	}
	pk = gen_key("RSA", 1024);
	if (pk != NULL && pkcs8_of(pk, &p8, &p8len) == 0) {
		T_CHECK(tok_key_import(h, "rsa1024", p8, p8len, &d, &blob,
		            &blen, &spki, &slen) == HSM_ERR_ARGS &&
		        blob == NULL,
		    "an RSA-1024 key is refused with ARGS");
		T_CHECK(tok_key_import(h, "", p8, p8len, &d, &blob, &blen,
		            &spki, &slen) == HSM_ERR_ARGS &&
		        blob == NULL,
		    "an empty bind is refused with ARGS");
		OPENSSL_clear_free(p8, p8len);
	}
	EVP_PKEY_free(pk);
}

/* What the BYOK steps share: the token, two RSA KEKs (kek/1, kek2/1),
 * the RSA key to bring and its transfer blob for kek/1. */
struct byok_ctx {
	tok_t *h;
	uint8_t *kek, *kek_spki, *kek2, *kek2_spki, *tr;
	size_t kl, ksl, k2l, k2sl, trl;
	EVP_PKEY *target;
};

/* An RSA key brought under kek/1: imported, signs and decrypts in the
 * token, bound to its own name. */
static void
byok_rsa(struct byok_ctx *x)
{
	tok_t *h = x->h;
	struct hsm_key_desc d;
	uint8_t *blob = NULL, *spki = NULL;
	size_t blen, slen;
	uint8_t ct[256], pt[64];
	size_t ctl = sizeof(ct), ptl = sizeof(pt);
	int rc;

	T_CHECK(make_transfer(x->kek_spki, x->ksl, x->target, &x->tr,
	            &x->trl) == 0,
	    "OpenSSL builds an RSA-OAEP + AES-KWP transfer ciphertext");
	T_CHECK(tok_key_import_byok(h, "byok-rsa", "kek2/1", x->kek, x->kl,
	            x->tr, x->trl, &d, &blob, &blen, &spki,
	            &slen) == HSM_ERR_INTERNAL &&
	        blob == NULL,
	    "BYOK with a KEK blob bound to another name "
	    "(kek_bind): INTERNAL, nothing made");
	rc = tok_key_import_byok(h, "byok-rsa", "kek/1", x->kek, x->kl, x->tr,
	    x->trl, &d, &blob, &blen, &spki, &slen);
	if (rc != 0)
		printf("# byok rc %d\n", rc);
	T_CHECK(rc == 0 && d.kty == HSM_KTY_RSA && d.rsa_bits == 2048 &&
	        spki_matches(x->target, spki, slen),
	    "BYOK RSA import: two-step unwrap in the token, public key "
	    "matches");
	T_CHECK(blob && sign_works(h, "byok-rsa", blob, blen, x->target, 0),
	    "the BYOK-imported key signs inside the token");
	T_CHECK(blob && !sign_works(h, "kek/1", blob, blen, x->target, 0),
	    "the BYOK-imported blob is bound to its bind, not the KEK's");
	/* a public-key encryption that the imported key decrypts */
	if (blob != NULL) {
		EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(x->target, NULL);
		int ok = c && EVP_PKEY_encrypt_init(c) == 1 &&
		    EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) ==
		        1 &&
		    EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha1()) == 1 &&
		    EVP_PKEY_encrypt(c, ct, &ctl, (const uint8_t *)"hello",
		        5) == 1;
		EVP_PKEY_CTX_free(c);
		T_CHECK(ok &&
		        tok_key_decrypt(h, "byok-rsa", blob, blen,
		            HSM_ALG_RSA_OAEP, ct, ctl, pt, &ptl) == 0 &&
		        ptl == 5 && memcmp(pt, "hello", 5) == 0,
		    "the BYOK-imported key decrypts inside the token");
	}
	free(blob);
	free(spki);
	blob = spki = NULL;
}

/* Refused imports: an unbound KEK blob, another KEK, a truncated or
 * altered transfer blob. */
static void
byok_refused(struct byok_ctx *x)
{
	tok_t *h = x->h;
	struct hsm_key_desc d;
	uint8_t *blob = NULL, *spki = NULL;
	size_t blen, slen;

	{
		/* the KEK's blob in the shape of version 1: the header
		 * (version 1) and the ciphertext, without IV and GCM tag */
		uint8_t old[HSM_TEST_BLOB_MAX];
		size_t ol = x->kl - 12 - 16;

		if (ol <= sizeof(old)) {
			memcpy(old, x->kek, 8);
			memcpy(old + 8, x->kek + 20, ol - 8);
			old[4] = 1;
		}
		T_CHECK(ol <= sizeof(old) && blob_is_old(old, ol) &&
		        tok_key_import_byok(h, "b", "kek/1", old, ol, x->tr,
		            x->trl, &d, &blob, &blen, &spki,
		            &slen) == HSM_ERR_INTERNAL &&
		        blob == NULL,
		    "BYOK with an unbound (version 1) KEK "
		    "blob: INTERNAL");
	}
	T_CHECK(tok_key_import_byok(h, "b", "kek2/1", x->kek2, x->k2l, x->tr,
	            x->trl, &d, &blob, &blen, &spki, &slen) == HSM_ERR_ARGS &&
	        blob == NULL,
	    "a transfer blob for another KEK: ARGS, nothing made");
	T_CHECK(tok_key_import_byok(h, "b", "kek/1", x->kek, x->kl, x->tr,
	            x->trl - 8, &d, &blob, &blen, &spki,
	            &slen) == HSM_ERR_ARGS &&
	        blob == NULL,
	    "a truncated transfer blob: ARGS");
	x->tr[x->trl - 20] ^= 0x01;
	T_CHECK(tok_key_import_byok(h, "b", "kek/1", x->kek, x->kl, x->tr,
	            x->trl, &d, &blob, &blen, &spki, &slen) == HSM_ERR_ARGS &&
	        blob == NULL,
	    "an altered transfer blob (key wrap part): ARGS");
	x->tr[x->trl - 20] ^= 0x01;
	x->tr[10] ^= 0x01;
	T_CHECK(tok_key_import_byok(h, "b", "kek/1", x->kek, x->kl, x->tr,
	            x->trl, &d, &blob, &blen, &spki, &slen) == HSM_ERR_ARGS &&
	        blob == NULL,
	    "an altered transfer blob (RSA part): ARGS");
	free(x->tr);
	x->tr = NULL;
}

/* An EC key brought under kek/1; an EC key is no KEK. */
static void
byok_ec(struct byok_ctx *x)
{
	tok_t *h = x->h;
	struct hsm_key_desc d;
	uint8_t *blob = NULL, *spki = NULL;
	size_t blen, slen;
	uint8_t *ec_kek = NULL, *ec_kek_spki = NULL;
	size_t ekl, eksl;
	EVP_PKEY *ect;

	ect = gen_key("EC", NID_secp384r1);
	if (ect != NULL &&
	    make_transfer(x->kek_spki, x->ksl, ect, &x->tr, &x->trl) == 0) {
		T_CHECK(tok_key_import_byok(h, "byok-ec", "kek/1", x->kek,
		            x->kl, x->tr, x->trl, &d, &blob, &blen, &spki,
		            &slen) == 0 &&
		        d.kty == HSM_KTY_EC && d.ec_nid == NID_secp384r1 &&
		        spki_matches(ect, spki, slen),
		    "BYOK EC P-384 import: public key recovered in the token "
		    "matches");
		T_CHECK(blob && sign_works(h, "byok-ec", blob, blen, ect, 48),
		    "the BYOK-imported EC key signs inside the token");
		free(blob);
		free(spki);
		blob = spki = NULL;
		free(x->tr);
		x->tr = NULL;
	}
	EVP_PKEY_free(ect);
	/* an EC key is no KEK */
	if (tok_key_generate(h, "eckek/1", HSM_KTY_EC, 0, NID_X9_62_prime256v1,
	        &ec_kek, &ekl, &ec_kek_spki, &eksl) == 0) {
		uint8_t fake[512];
		memset(fake, 7, sizeof(fake));
		T_CHECK(tok_key_import_byok(h, "b", "eckek/1", ec_kek, ekl,
		            fake, sizeof(fake), &d, &blob, &blen, &spki,
		            &slen) == HSM_ERR_ARGS,
		    "an EC key as KEK: ARGS");
	}
	free(ec_kek);
	free(ec_kek_spki);
}

static void
test_byok(tok_t *h)
{
	struct byok_ctx x;

	memset(&x, 0, sizeof(x));
	x.h = h;
	x.target = gen_key("RSA", 2048);
	T_CHECK(tok_key_generate(h, "kek/1", HSM_KTY_RSA, 2048, 0, &x.kek,
	            &x.kl, &x.kek_spki, &x.ksl) == 0 &&
	        tok_key_generate(h, "kek2/1", HSM_KTY_RSA, 3072, 0, &x.kek2,
	            &x.k2l, &x.kek2_spki, &x.k2sl) == 0,
	    "two KEKs generated");
	if (x.kek == NULL || x.kek2 == NULL || x.target == NULL)
		goto out;
	byok_rsa(&x);
	byok_refused(&x);
	byok_ec(&x);
out:
	free(x.kek);
	free(x.kek_spki);
	free(x.kek2);
	free(x.kek2_spki);
	free(x.tr);
	EVP_PKEY_free(x.target);
}

static void
test_seal(tok_t *h, tok_t *other)
{
	static const uint8_t msg[] = "every version and attribute";
	uint8_t *sealed = NULL, *sealed2 = NULL, *open = NULL;
	size_t sl = 0, sl2 = 0, ol = 0;
	int rc = tok_seal(h, msg, 4, &sealed, &sl);

	if (rc != 0)
		printf("# seal rc %d\n", rc);
	free(sealed);
	sealed = NULL;

	T_CHECK(tok_seal(h, msg, sizeof(msg), &sealed, &sl) == 0 &&
	        sl > sizeof(msg) && memmem(sealed, sl, msg, 10) == NULL,
	    "seal: ciphertext, not the plaintext");
	T_CHECK(sealed && tok_unseal(h, sealed, sl, &open, &ol) == 0 &&
	        ol == sizeof(msg) && memcmp(open, msg, ol) == 0,
	    "unseal in the same token gives the payload back");
	free(open);
	open = NULL;
	T_CHECK(tok_seal(h, msg, sizeof(msg), &sealed2, &sl2) == 0 &&
	        sl2 == sl && memcmp(sealed, sealed2, sl) != 0,
	    "two seals of one payload differ (fresh IV)");
	if (sealed != NULL) {
		sealed[sl - 3] ^= 0x80;
		T_CHECK(tok_unseal(h, sealed, sl, &open, &ol) ==
		            HSM_ERR_DECRYPT &&
		        open == NULL,
		    "an altered sealed blob: DECRYPT");
		sealed[sl - 3] ^= 0x80;
		sealed[4] = 9;
		T_CHECK(tok_unseal(h, sealed, sl, &open, &ol) ==
		        HSM_ERR_DECRYPT,
		    "a wrong format version: DECRYPT");
		sealed[4] = 1;
		T_CHECK(tok_unseal(h, sealed, sl - 1, &open, &ol) ==
		        HSM_ERR_DECRYPT,
		    "a truncated sealed blob: DECRYPT");
		T_CHECK(other != NULL &&
		        tok_unseal(other, sealed, sl, &open, &ol) ==
		            HSM_ERR_DECRYPT &&
		        open == NULL,
		    "another token (its own backup key) cannot unseal");
	}
	free(sealed);
	free(sealed2);
}

int
main(void)
{
	struct tok_config cfg = { MODULE, LABEL, USER_PIN, 4, 16 };
	struct tok_config cfg2 = { MODULE, LABEL2, USER_PIN, 2, 4 };
	tok_t *h = NULL, *h2 = NULL;
	char cmd[600];

	if (softhsm_setup(tmpdir) != 0) {
		T_CHECK(0, "set up a private SoftHSMv2 token directory");
		return T_DONE();
	}
	T_CHECK(tok_token_init(MODULE, LABEL, SO_PIN, USER_PIN) == 0 &&
	        tok_token_init(MODULE, LABEL2, SO_PIN, USER_PIN) == 0,
	    "two tokens initialised");
	T_CHECK(tok_open(&cfg, &h) == 0 && tok_open(&cfg2, &h2) == 0,
	    "both tokens open");
	if (h != NULL) {
		test_plain_import(h);
		test_byok(h);
		test_seal(h, h2);
	}
	tok_close(h);
	tok_close(h2);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return T_DONE();
}
