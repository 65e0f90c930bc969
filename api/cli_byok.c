/*
 * cli_byok.c — `p11vault byok`: builds a BYOK transfer blob on the
 * administrator's workstation, with OpenSSL only (no vault, no token).
 *
 * Owns: reading a PEM private key (decrypted with --passin's pass phrase,
 * never by a prompt when stdin is not a terminal) and a KEK public key
 * (from a file, or fetched from the vault through cli_session.h), the
 * check that the key is one the vault imports, the transfer ciphertext
 * (RSA-OAEP-SHA-1 of a fresh AES-256 key, then RFC 5649 AES key wrap with
 * padding of the PKCS#8 key) and the JSON transfer blob file.
 * Must never: write or print the private key, the AES key or the pass
 * phrase; keep any of them beyond the call (wiped).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "api/cli.h"
#include "api/cli_session.h"
#include "hsm/base.h"
#include "hsm/buf.h"
#include "hsm/pkey.h"

static int
byok_usage(FILE *f)
{
	fputs(
	    "usage: p11vault byok --kek-kid URL [--kek-public FILE] "
	    "--key FILE.pem --out FILE\n"
	    "       [--passin SRC]\n"
	    "       [--data DIR | --vault-url URL --admin FILE [--ca FILE]]\n"
	    "  Builds a BYOK transfer blob for importing FILE.pem (an RSA\n"
	    "  2048/3072/4096 or EC P-256/P-256K/P-384/P-521 private key,\n"
	    "  PEM) into p11vault under the key exchange key URL (a kid;\n"
	    "  create it with key_ops [\"import\"]). --kek-public FILE is the\n"
	    "  KEK's public key (PEM); without it, the KEK's public key is\n"
	    "  fetched from the vault with the administrator's credential\n"
	    "  (--data DIR, or --vault-url with --admin). --out receives the\n"
	    "  JSON transfer blob (what Azure's tooling writes as a .byok\n"
	    "  file); the import request's key.key_hsm is base64url of that\n"
	    "  file's bytes.\n"
	    "  --passin SRC: the pass phrase of an encrypted PEM, as OpenSSL\n"
	    "  takes it: pass:PHRASE, env:VAR, file:PATH, fd:N or stdin (the\n"
	    "  first line). Without it, an encrypted PEM is asked for on the\n"
	    "  terminal, and refused when stdin is not a terminal.\n",
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
	const char *passin;
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
		{ "--passin", &o->passin },
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

#define PASS_MAX 1024

/* The pass phrase of an encrypted PEM: from --passin, read before the
 * PEM is; asked marks that the PEM wanted one. */
struct passin {
	char phrase[PASS_MAX + 1];
	size_t len;
	int have;  /* --passin given and read */
	int tty;   /* stdin is a terminal: OpenSSL may prompt there */
	int asked; /* the PEM is encrypted */
};

/* The first line of fd (without its end of line) into p; 0 or -1. */
static API_WUR int
passin_line(int fd, struct passin *p)
{
	ssize_t n;
	char c;

	p->len = 0;
	for (;;) {
		n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0 || c == '\n')
			break;
		if (p->len == PASS_MAX)
			return -1;
		p->phrase[p->len++] = c;
	}
	if (p->len > 0 && p->phrase[p->len - 1] == '\r')
		p->len--;
	p->phrase[p->len] = '\0';
	return 0;
}

/* pass:PHRASE or env:VAR into p; 0, or -1 after the line (which never
 * shows the phrase). */
static API_WUR int
passin_text(const char *spec, struct passin *p)
{
	const char *s = spec[0] == 'p' ? spec + 5 : getenv(spec + 4);

	if (s == NULL) {
		cli_fail_line("byok: --passin %s: the variable is not set",
		    spec);
		return -1;
	}
	if ((p->len = strlen(s)) > PASS_MAX) {
		p->len = 0;
		cli_fail_line("byok: the pass phrase is longer than %d bytes",
		    PASS_MAX);
		return -1;
	}
	memcpy(p->phrase, s, p->len + 1);
	p->have = 1;
	return 0;
}

/* The pass phrase spec (pass:, env:, file:, fd:, stdin, as OpenSSL's
 * -passin) into p; 0, or -1 after the line. */
static API_WUR int
passin_read(const char *spec, struct passin *p)
{
	uint64_t fdn;
	int fd, rc = -1;

	if (strncmp(spec, "pass:", 5) == 0 || strncmp(spec, "env:", 4) == 0)
		return passin_text(spec, p);
	if (strncmp(spec, "file:", 5) == 0) {
		if ((fd = open(spec + 5, O_RDONLY | O_CLOEXEC)) >= 0) {
			rc = passin_line(fd, p);
			close(fd);
		}
	} else if (strncmp(spec, "fd:", 3) == 0) {
		if (parse_u64(spec + 3, INT_MAX, &fdn) == 0)
			rc = passin_line((int)fdn, p);
	} else if (strcmp(spec, "stdin") == 0)
		rc = passin_line(STDIN_FILENO, p);
	else {
		cli_fail_line(
		    "byok: --passin wants pass:PHRASE, env:VAR, file:PATH, "
		    "fd:N or stdin");
		return -1;
	}
	if (rc != 0)
		cli_fail_line("byok: cannot read the pass phrase from %s",
		    spec);
	p->have = rc == 0;
	return rc;
}

/* OpenSSL's pem_password_cb: --passin's phrase; else OpenSSL's own prompt
 * on a terminal; else no pass phrase (never a prompt). */
static int
passin_cb(char *buf, int size, int rwflag, void *u)
{
	struct passin *p = u;

	p->asked = 1;
	if (p->have) {
		if (size < 0 || p->len > (size_t)size)
			return -1;
		memcpy(buf, p->phrase, p->len);
		return (int)p->len;
	}
	return p->tty ? PEM_def_callback(buf, size, rwflag, NULL) : -1;
}

/* A PEM file's RSA public key (the KEK); NULL after the line. */
static API_WUR EVP_PKEY *
read_kek_pem(const char *file)
{
	FILE *f = fopen(file, "r");
	EVP_PKEY *k = NULL;

	if (f != NULL) {
		k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (k != NULL && EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
		EVP_PKEY_free(k);
		k = NULL;
	}
	if (k == NULL)
		cli_fail_line("byok: %s is not an RSA public key (PEM)", file);
	return k;
}

/* 1 if k is a key the vault imports: RSA of 2048, 3072 or 4096 bits, or
 * EC on a curve of the table (hsm/pkey.h); else 0 after the line. */
static API_WUR int
key_importable(EVP_PKEY *k, const char *file)
{
	char group[64];
	size_t glen = 0;
	int bits = EVP_PKEY_get_bits(k);
	const char *type = EVP_PKEY_get0_type_name(k);

	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA &&
	    (bits == 2048 || bits == 3072 || bits == 4096))
		return 1;
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC &&
	    EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group,
	        sizeof(group), &glen) == 1 &&
	    hsm_curve_by_nid(OBJ_txt2nid(group)) != NULL)
		return 1;
	cli_fail_line(
	    "byok: %s holds %s key of %d bits%s%s; p11vault imports RSA keys "
	    "of 2048, 3072 or 4096 bits and EC keys on P-256, P-256K, P-384 "
	    "or P-521 only: no blob was written",
	    file, type != NULL ? type : "an unknown", bits,
	    glen > 0 ? " on " : "", glen > 0 ? group : "");
	return 0;
}

/* The private key of a PEM file (decrypted with pi's pass phrase), if the
 * vault can import it; NULL after the line. */
static API_WUR EVP_PKEY *
read_private_pem(const char *file, struct passin *pi)
{
	FILE *f = fopen(file, "r");
	EVP_PKEY *k = NULL;

	if (f == NULL) {
		cli_fail_line("byok: cannot open %s", file);
		return NULL;
	}
	k = PEM_read_PrivateKey(f, NULL, passin_cb, pi);
	fclose(f);
	if (k == NULL && pi->asked && pi->have)
		cli_fail_line(
		    "byok: cannot decrypt the private key in %s: wrong pass "
		    "phrase?",
		    file);
	else if (k == NULL && pi->asked)
		cli_fail_line(
		    "byok: the private key in %s is encrypted and stdin is not "
		    "a terminal: give its pass phrase with --passin (pass:, "
		    "env:, file:, fd: or stdin)",
		    file);
	else if (k == NULL)
		cli_fail_line("byok: cannot read the private key in %s (PEM)",
		    file);
	if (k != NULL && !key_importable(k, file)) {
		EVP_PKEY_free(k);
		k = NULL;
	}
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
	struct passin pi;
	EVP_PKEY *kek = NULL, *key = NULL;
	uint8_t *ct = NULL;
	size_t ct_len = 0;
	int rc;

	memset(&o, 0, sizeof(o));
	memset(&pi, 0, sizeof(pi));
	if ((rc = byok_args(argc, argv, &o)) != 0)
		return rc > 0 ? 0 : byok_usage(stderr);
	rc = VLT_ERR_IO;
	pi.tty = isatty(STDIN_FILENO);
	/* the key first: one the vault cannot import needs no KEK */
	if ((o.passin != NULL && passin_read(o.passin, &pi) != 0) ||
	    (key = read_private_pem(o.key_file, &pi)) == NULL)
		goto out;
	if (o.kek_file == NULL) {
		if ((rc = fetch_kek(&o.where, o.kid, &kek)) != 0)
			goto out;
	} else if ((kek = read_kek_pem(o.kek_file)) == NULL)
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
	OPENSSL_cleanse(&pi, sizeof(pi));
	free(ct);
	EVP_PKEY_free(kek);
	EVP_PKEY_free(key);
	return cli_exit_status(rc);
}
