/*
 * cli_byok.c — `p11vault byok`: builds a BYOK transfer blob on the
 * administrator's workstation, with OpenSSL only (no vault, no token).
 *
 * Owns: reading a PEM private key and a KEK public key (from a file, or
 * fetched from the vault through cli_session.h), the transfer ciphertext
 * (RSA-OAEP-SHA-1 of a fresh AES-256 key, then RFC 5649 AES key wrap with
 * padding of the PKCS#8 key) and the JSON transfer blob file.
 * Must never: write or print the private key or the AES key; keep either
 * beyond the call (wiped).
 */
#include <limits.h>
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

#include "api/cli.h"
#include "api/cli_session.h"
#include "hsm/buf.h"
#include "hsm/pkey.h"

static int
byok_usage(FILE *f)
{
	fputs(
	    "usage: p11vault byok --kek-kid URL [--kek-public FILE] "
	    "--key FILE.pem --out FILE\n"
	    "       [--data DIR | --vault-url URL --admin FILE [--ca FILE]]\n"
	    "  Without --kek-public, the KEK's public key is fetched from the\n"
	    "  vault with the administrator's credential.\n"
	    "  Builds a BYOK transfer blob for importing FILE.pem (RSA or EC\n"
	    "  private key, PEM) into p11vault under the key exchange key\n"
	    "  URL (a kid; create it with key_ops [\"import\"]). FILE is the\n"
	    "  KEK's public key (PEM). --out receives the JSON transfer blob\n"
	    "  (what Azure's tooling writes as a .byok file); the import\n"
	    "  request's key.key_hsm is base64url of that file's bytes.\n",
	    f);
	return f == stdout ? 0 : 2;
}

static API_WUR int
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
	if (EVP_EncryptInit_ex(cc, EVP_aes_256_wrap_pad(), NULL, aes, NULL) !=
	        1 ||
	    EVP_EncryptUpdate(cc, buf + rlen, &l1, der, (int)dlen) != 1 ||
	    EVP_EncryptFinal_ex(cc, buf + rlen + l1, &l2) != 1)
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

/* One base64url member of a JWK, decoded (free it). */
static API_WUR int
jwk_bytes(const json_t *jwk, const char *field, uint8_t **out, size_t *len)
{
	const char *s = json_string_value(json_object_get(jwk, field));

	*out = NULL;
	return s != NULL && policy_b64url_decode(s, strlen(s), out, len) == 0 ?
	    0 :
	    -1;
}

/* The public key of the RSA key kid (a KEK), fetched with the admin
 * credential: 0, or a negative VLT_ERR_* after its line. */
static API_WUR int
fetch_kek(const struct cli_where *w, const char *kid, EVP_PKEY **out)
{
	cli_session_t *s = NULL;
	json_t *resp = NULL, *jwk;
	uint8_t *n = NULL, *e = NULL, *spki = NULL;
	const unsigned char *p;
	size_t n_len = 0, e_len = 0, spki_len = 0;
	const char *path = strstr(kid, "/keys/");
	int rc;

	*out = NULL;
	if (path == NULL || strncmp(kid, "https://", 8) != 0) {
		cli_fail_line(
		    "--kek-kid must be a key identifier "
		    "https://HOST/keys/NAME/VERSION");
		return VLT_ERR_BAD_PARAM;
	}
	if ((rc = cli_session_open(w, &s)) != 0 ||
	    (rc = cli_session_call(s, "GET", path, NULL, &resp)) != 0)
		goto out;
	rc = VLT_ERR_IO;
	jwk = json_object_get(resp, "key");
	if (!json_is_object(jwk) || jwk_bytes(jwk, "n", &n, &n_len) != 0 ||
	    jwk_bytes(jwk, "e", &e, &e_len) != 0) {
		cli_fail_line("the key %s is not an RSA key", kid);
		goto out;
	}
	if (hsm_rsa_spki(n, n_len, e, e_len, &spki, &spki_len) != 0 ||
	    spki_len > LONG_MAX) {
		cli_fail_line("cannot build the KEK's public key");
		goto out;
	}
	p = spki;
	if ((*out = d2i_PUBKEY(NULL, &p, (long)spki_len)) == NULL) {
		cli_fail_line("cannot build the KEK's public key");
		goto out;
	}
	rc = 0;
out:
	json_decref(resp);
	cli_session_close(s);
	free(spki);
	free(n);
	free(e);
	return rc;
}

struct byok_opts {
	struct cli_where where;
	const char *kid;
	const char *kek_file;
	const char *key_file;
	const char *out_file;
};

/* 0, 1 (help printed), or -1 (a usage error). */
static API_WUR int
byok_args(int argc, char **argv, struct byok_opts *o)
{
	const struct {
		const char *name;
		const char **slot;
	} opts[] = {
		{ "--kek-kid", &o->kid },
		{ "--kek-public", &o->kek_file },
		{ "--key", &o->key_file },
		{ "--out", &o->out_file },
		{ "--data", &o->where.data },
		{ "--vault-url", &o->where.vault_url },
		{ "--admin", &o->where.admin },
		{ "--ca", &o->where.ca },
	};
	const size_t nopts = sizeof(opts) / sizeof(opts[0]);
	size_t j;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			(void)byok_usage(stdout);
			return 1;
		}
		for (j = 0; j < nopts && strcmp(argv[i], opts[j].name) != 0;
		     j++)
			;
		if (i + 1 >= argc || j == nopts)
			return -1;
		*opts[j].slot = argv[++i];
	}
	return o->kid == NULL || o->key_file == NULL || o->out_file == NULL ?
	    -1 :
	    0;
}

/* A PEM file's public key (kek) or private key; NULL after the line. */
static API_WUR EVP_PKEY *
read_pem_key(const char *file, int private)
{
	FILE *f = fopen(file, "r");
	EVP_PKEY *k = NULL;

	if (f != NULL) {
		k = private ? PEM_read_PrivateKey(f, NULL, NULL, NULL) :
		              PEM_read_PUBKEY(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (!private && k != NULL && EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
		EVP_PKEY_free(k);
		k = NULL;
	}
	if (k == NULL && private)
		cli_fail_line(
		    "byok: cannot read the private key in %s (PEM, "
		    "unencrypted)",
		    file);
	else if (k == NULL)
		cli_fail_line("byok: %s is not an RSA public key (PEM)", file);
	return k;
}

/* The JSON transfer blob for kid around ct, into file. */
static API_WUR int
write_blob(const char *file, const char *kid, const uint8_t *ct, size_t ct_len)
{
	char *ct64 = NULL, *text = NULL;
	json_t *doc = NULL;
	FILE *f = NULL;
	int rc = VLT_ERR_IO;

	if (policy_b64url_encode(ct, ct_len, &ct64) != 0) {
		cli_fail_line("byok: cannot build the transfer blob");
		goto out;
	}
	doc = json_pack("{s:s, s:{s:s, s:s, s:s}, s:s, s:s}", "schema_version",
	    "1.0.0", "header", "kid", kid, "alg", "dir", "enc",
	    "CKM_RSA_AES_KEY_WRAP", "ciphertext", ct64, "generator",
	    "p11vault byok");
	if (doc == NULL || (text = json_dumps(doc, JSON_COMPACT)) == NULL ||
	    (f = fopen(file, "w")) == NULL || fputs(text, f) == EOF) {
		cli_fail_line("byok: cannot write %s", file);
		goto out;
	}
	rc = fclose(f) == 0 ? 0 : VLT_ERR_IO;
	f = NULL;
	if (rc != 0)
		cli_fail_line("byok: cannot write %s", file);
out:
	if (f != NULL)
		fclose(f);
	free(ct64);
	free(text);
	json_decref(doc);
	return rc;
}

int
cli_byok(int argc, char **argv)
{
	struct byok_opts o;
	EVP_PKEY *kek = NULL, *key = NULL;
	uint8_t *ct = NULL;
	size_t ct_len = 0;
	int rc;

	memset(&o, 0, sizeof(o));
	if ((rc = byok_args(argc, argv, &o)) != 0)
		return rc > 0 ? 0 : byok_usage(stderr);
	rc = VLT_ERR_IO;
	if (o.kek_file == NULL) {
		if ((rc = fetch_kek(&o.where, o.kid, &kek)) != 0)
			goto out;
	} else if ((kek = read_pem_key(o.kek_file, 0)) == NULL)
		goto out;
	if ((key = read_pem_key(o.key_file, 1)) == NULL)
		goto out;
	if (transfer(kek, key, &ct, &ct_len) != 0) {
		cli_fail_line("byok: cannot build the transfer blob");
		rc = VLT_ERR_IO;
		goto out;
	}
	if ((rc = write_blob(o.out_file, o.kid, ct, ct_len)) == 0)
		printf("wrote %s\n", o.out_file);
out:
	ERR_clear_error();
	free(ct);
	EVP_PKEY_free(kek);
	EVP_PKEY_free(key);
	return cli_exit_status(rc);
}
