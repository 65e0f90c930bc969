/*
 * cli_byok.c — `p11vault byok`: builds a BYOK transfer blob on the
 * administrator's workstation, with OpenSSL only (no vault, no token).
 *
 * Owns: reading a PEM private key and a KEK public key, the transfer
 * ciphertext (RSA-OAEP-SHA-1 of a fresh AES-256 key, then RFC 5649 AES key
 * wrap with padding of the PKCS#8 key) and the JSON transfer blob file.
 * Must never: write or print the private key or the AES key; keep either
 * beyond the call (wiped).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "api/api.h"

static int
byok_usage(FILE *f)
{
	fputs("usage: p11vault byok --kek-kid URL [--kek-public FILE] "
	    "--key FILE.pem --out FILE\n"
	    "       [--data DIR | --vault-url URL --admin FILE [--ca FILE]]\n"
	    "  Without --kek-public, the KEK's public key is fetched from the\n"
	    "  vault with the administrator's credential.\n"
	    "  Builds a BYOK transfer blob for importing FILE.pem (RSA or EC\n"
	    "  private key, PEM) into p11vault under the key exchange key\n"
	    "  URL (a kid; create it with key_ops [\"import\"]). FILE is the\n"
	    "  KEK's public key (PEM). --out receives the JSON transfer blob\n"
	    "  (what Azure's tooling writes as a .byok file); the import\n"
	    "  request's key.key_hsm is base64url of that file's bytes.\n", f);
	return f == stdout ? 0 : 2;
}

static int
transfer(EVP_PKEY *kek, EVP_PKEY *key, uint8_t **out, size_t *out_len)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(kek, NULL);
	EVP_CIPHER_CTX *cc = EVP_CIPHER_CTX_new();
	PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(key);
	unsigned char *der = NULL;
	uint8_t aes[32], *buf = NULL;
	size_t rlen = 0, dlen = 0;
	int n, l1 = 0, l2 = 0, rc = -1;

	if (c == NULL || cc == NULL || p8 == NULL ||
	    (n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der)) <= 0 ||
	    RAND_bytes(aes, sizeof(aes)) != 1)
		goto out;
	dlen = (size_t)n;
	if (EVP_PKEY_encrypt_init(c) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha1()) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha1()) != 1 ||
	    EVP_PKEY_encrypt(c, NULL, &rlen, aes, sizeof(aes)) != 1 ||
	    (buf = malloc(rlen + dlen + 16)) == NULL ||
	    EVP_PKEY_encrypt(c, buf, &rlen, aes, sizeof(aes)) != 1)
		goto out;
	EVP_CIPHER_CTX_set_flags(cc, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	if (EVP_EncryptInit_ex(cc, EVP_aes_256_wrap_pad(), NULL, aes,
	    NULL) != 1 || EVP_EncryptUpdate(cc, buf + rlen, &l1, der,
	    (int)dlen) != 1 || EVP_EncryptFinal_ex(cc, buf + rlen + l1,
	    &l2) != 1)
		goto out;
	*out = buf;
	*out_len = rlen + (size_t)l1 + (size_t)l2;
	buf = NULL;
	rc = 0;
out:
	OPENSSL_cleanse(aes, sizeof(aes));
	if (der != NULL)
		OPENSSL_clear_free(der, dlen);
	free(buf);
	PKCS8_PRIV_KEY_INFO_free(p8);
	EVP_CIPHER_CTX_free(cc);
	EVP_PKEY_CTX_free(c);
	return rc;
}

int
cli_byok(int argc, char **argv)
{
	const char *kid = NULL, *kek_file = NULL, *key_file = NULL,
	    *out_file = NULL, *data = NULL, *vault_url = NULL, *admin = NULL,
	    *ca = NULL;
	EVP_PKEY *kek = NULL, *key = NULL;
	uint8_t *ct = NULL;
	size_t ct_len = 0;
	char *ct64 = NULL, *text = NULL;
	json_t *doc = NULL;
	FILE *f = NULL;
	int i, rc = 1;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0)
			return byok_usage(stdout);
		if (i + 1 >= argc)
			return byok_usage(stderr);
		if (strcmp(argv[i], "--kek-kid") == 0)
			kid = argv[++i];
		else if (strcmp(argv[i], "--kek-public") == 0)
			kek_file = argv[++i];
		else if (strcmp(argv[i], "--key") == 0)
			key_file = argv[++i];
		else if (strcmp(argv[i], "--out") == 0)
			out_file = argv[++i];
		else if (strcmp(argv[i], "--data") == 0)
			data = argv[++i];
		else if (strcmp(argv[i], "--vault-url") == 0)
			vault_url = argv[++i];
		else if (strcmp(argv[i], "--admin") == 0)
			admin = argv[++i];
		else if (strcmp(argv[i], "--ca") == 0)
			ca = argv[++i];
		else
			return byok_usage(stderr);
	}
	if (kid == NULL || key_file == NULL || out_file == NULL)
		return byok_usage(stderr);
	if (kek_file == NULL) {
		if ((rc = cli_admin_fetch_kek(data, vault_url, admin, ca, kid,
		    &kek)) != 0)
			return rc;
		rc = 1;
	} else if ((f = fopen(kek_file, "r")) == NULL ||
	    (kek = PEM_read_PUBKEY(f, NULL, NULL, NULL)) == NULL ||
	    EVP_PKEY_get_base_id(kek) != EVP_PKEY_RSA) {
		fprintf(stderr, "p11vault byok: %s is not an RSA public key "
		    "(PEM)\n", kek_file);
		goto out;
	}
	if (f != NULL)
		fclose(f);
	if ((f = fopen(key_file, "r")) == NULL ||
	    (key = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL) {
		fprintf(stderr, "p11vault byok: cannot read the private key "
		    "in %s (PEM, unencrypted)\n", key_file);
		goto out;
	}
	fclose(f);
	f = NULL;
	if (transfer(kek, key, &ct, &ct_len) != 0 ||
	    policy_b64url_encode(ct, ct_len, &ct64) != 0) {
		fprintf(stderr, "p11vault byok: cannot build the transfer "
		    "blob\n");
		goto out;
	}
	doc = json_pack("{s:s, s:{s:s, s:s, s:s}, s:s, s:s}",
	    "schema_version", "1.0.0", "header", "kid", kid, "alg", "dir",
	    "enc", "CKM_RSA_AES_KEY_WRAP", "ciphertext", ct64,
	    "generator", "p11vault byok");
	if (doc == NULL || (text = json_dumps(doc, JSON_COMPACT)) == NULL ||
	    (f = fopen(out_file, "w")) == NULL ||
	    fputs(text, f) == EOF) {
		fprintf(stderr, "p11vault byok: cannot write %s\n", out_file);
		goto out;
	}
	if (fclose(f) != 0) {
		f = NULL;
		fprintf(stderr, "p11vault byok: cannot write %s\n", out_file);
		goto out;
	}
	f = NULL;
	printf("wrote %s\n", out_file);
	rc = 0;
out:
	if (f != NULL)
		fclose(f);
	ERR_clear_error();
	free(ct);
	free(ct64);
	free(text);
	json_decref(doc);
	EVP_PKEY_free(kek);
	EVP_PKEY_free(key);
	return rc;
}
