/*
 * cli_key_pem.c — the key material `p11vault key` handles on the admin's
 * machine, as az does: a PEM private key read for import and turned into
 * a JWK with its private parts (az's _private_rsa_key_to_jwk /
 * _private_ec_key_to_jwk), a key's public JWK written as a PEM or DER
 * SubjectPublicKeyInfo (download), and whole files.
 *
 * Must never: ask for a pass phrase on the terminal (none given: the key
 * must be unencrypted); leave a private part in a buffer of ours
 * unwiped (BN_clear_free, freezero; the JSON strings are wiped by the
 * process-wide Jansson allocator).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "api/cli_key.h"
#include "hsm/base.h"
#include "hsm/pkey.h"
#include "policy/policy.h"

#define KEY_PART_MAX 1024 /* bytes of one RSA-8192 part, ample */

/* The pass phrase callback: the given one, or none (never a prompt). */
static int
pass_cb(char *buf, int size, int rwflag, void *u)
{
	size_t n = u != NULL ? strlen(u) : 0;

	(void)rwflag;
	if (u == NULL || size <= 0 || n >= (size_t)size)
		return 0;
	memcpy(buf, u, n);
	return (int)n;
}

/* One number (big-endian, at least min bytes) as a base64url member. */
static API_WUR int
put_bn(json_t *jwk, const char *field, const BIGNUM *bn, size_t min)
{
	uint8_t buf[KEY_PART_MAX];
	char *b64 = NULL;
	int n = BN_num_bytes(bn), rc = VLT_ERR_BAD_PARAM;
	size_t len = (size_t)n > min ? (size_t)n : min;

	if (n <= 0 || len > sizeof(buf) ||
	    BN_bn2binpad(bn, buf, (int)len) != (int)len)
		goto out;
	if (policy_b64url_encode(buf, len, &b64) != 0 ||
	    json_object_set_new(jwk, field, json_string(b64)) != 0) {
		rc = VLT_ERR_NO_MEMORY;
		goto out;
	}
	rc = 0;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	freezero_str(b64);
	return rc;
}

/* Parameters name[i] of k into jwk[field[i]]. */
static API_WUR int
put_params(json_t *jwk, const EVP_PKEY *k, const char *const *names,
    const char *const *fields, size_t n, size_t min)
{
	BIGNUM *bn = NULL;
	size_t i;
	int rc = 0;

	for (i = 0; i < n && rc == 0; i++) {
		if (EVP_PKEY_get_bn_param(k, names[i], &bn) != 1)
			rc = VLT_ERR_BAD_PARAM;
		else
			rc = put_bn(jwk, fields[i], bn, min);
		BN_clear_free(bn);
		bn = NULL;
	}
	return rc;
}

static API_WUR int
rsa_jwk(json_t *jwk, const EVP_PKEY *k)
{
	static const char *const names[] = { OSSL_PKEY_PARAM_RSA_N,
		OSSL_PKEY_PARAM_RSA_E, OSSL_PKEY_PARAM_RSA_D,
		OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2,
		OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_EXPONENT2,
		OSSL_PKEY_PARAM_RSA_COEFFICIENT1 };
	static const char *const fields[] = { "n", "e", "d", "p", "q", "dp",
		"dq", "qi" };

	if (json_object_set_new(jwk, "kty", json_string("RSA")) != 0)
		return VLT_ERR_NO_MEMORY;
	return put_params(jwk, k, names, fields, 8, 0);
}

static API_WUR int
ec_jwk(json_t *jwk, const EVP_PKEY *k)
{
	static const char *const names[] = { OSSL_PKEY_PARAM_EC_PUB_X,
		OSSL_PKEY_PARAM_EC_PUB_Y, OSSL_PKEY_PARAM_PRIV_KEY };
	static const char *const fields[] = { "x", "y", "d" };
	char group[64];
	const struct hsm_curve_info *ci;
	size_t glen = 0;

	if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group,
	        sizeof(group), &glen) != 1 ||
	    (ci = hsm_curve_by_nid(OBJ_sn2nid(group))) == NULL) {
		cli_fail_line(
		    "Import failed: Unsupported curve (P-256, P-384, P-521).");
		return VLT_ERR_IO;
	}
	if (json_object_set_new(jwk, "kty", json_string("EC")) != 0 ||
	    json_object_set_new(jwk, "crv", json_string(ci->jwk)) != 0)
		return VLT_ERR_NO_MEMORY;
	return put_params(jwk, k, names, fields, 3, ci->field);
}

int
key_pem_to_jwk(const char *pem, size_t len, const char *pass, json_t **jwk)
{
	BIO *bio = len <= INT32_MAX ? BIO_new_mem_buf(pem, (int)len) : NULL;
	EVP_PKEY *k = NULL;
	json_t *j = json_object();
	int rc = VLT_ERR_IO;

	*jwk = NULL;
	if (bio == NULL || j == NULL) {
		rc = VLT_ERR_NO_MEMORY;
		goto out;
	}
	if ((k = PEM_read_bio_PrivateKey(bio, NULL, pass_cb, (void *)pass)) ==
	    NULL) {
		cli_fail_line(
		    "Import failed: cannot read the private key (PEM%s).",
		    pass != NULL ? ", --pem-password wrong?" :
		                   "; encrypted? give --pem-password");
		goto out;
	}
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA)
		rc = rsa_jwk(j, k);
	/* ec_jwk names an unsupported curve itself */
	else if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC)
		rc = ec_jwk(j, k);
	else
		cli_fail_line("Import failed: Unsupported key type (RSA, EC).");
	if (rc == VLT_ERR_NO_MEMORY)
		cli_fail_line("out of memory");
	else if (rc == VLT_ERR_BAD_PARAM) {
		cli_fail_line(
		    "Import failed: cannot read the key's parameters.");
		rc = VLT_ERR_IO;
	}
	if (rc == 0) {
		*jwk = j;
		j = NULL;
	}
out:
	json_decref(j);
	EVP_PKEY_free(k);
	BIO_free(bio);
	return rc;
}

static const char *
str_or(const char *s, const char *dflt)
{
	return s != NULL ? s : dflt;
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

/* The SubjectPublicKeyInfo (DER) of a REST JsonWebKey. */
static API_WUR int
jwk_spki(const json_t *jwk, uint8_t **spki, size_t *spki_len)
{
	const char *kty = json_string_value(json_object_get(jwk, "kty"));
	const struct hsm_curve_info *ci = hsm_curve_by_name(
	    str_or(json_string_value(json_object_get(jwk, "crv")), ""));
	uint8_t *a = NULL, *b = NULL, *pt = NULL, der[64];
	size_t alen = 0, blen = 0, dlen = sizeof(der);
	int rc = -1;

	if (kty == NULL ||
	    jwk_bytes(jwk, kty[0] == 'R' ? "n" : "x", &a, &alen) != 0 ||
	    jwk_bytes(jwk, kty[0] == 'R' ? "e" : "y", &b, &blen) != 0)
		goto out;
	if (strncmp(kty, "RSA", 3) == 0)
		rc = hsm_rsa_spki(a, alen, b, blen, spki, spki_len);
	else if (strncmp(kty, "EC", 2) == 0 && ci != NULL &&
	    alen == ci->field && blen == ci->field &&
	    hsm_curve_der(ci->nid, der, &dlen) == 0 &&
	    (pt = malloc(1 + alen + blen)) != NULL) {
		pt[0] = 0x04;
		memcpy(pt + 1, a, alen);
		memcpy(pt + 1 + alen, b, blen);
		rc = hsm_ec_spki(der, dlen, pt, 1 + alen + blen, spki,
		    spki_len);
	}
out:
	free(pt);
	free(a);
	free(b);
	return rc;
}

int
key_jwk_write_public(const json_t *jwk, const char *file, int der)
{
	uint8_t *spki = NULL;
	const unsigned char *p;
	size_t len = 0;
	EVP_PKEY *k = NULL;
	BIO *mem = NULL;
	char *text;
	long tlen;
	int rc = VLT_ERR_IO;

	if (jwk_spki(jwk, &spki, &len) != 0 || len > INT32_MAX) {
		cli_fail_line(
		    "Unsupported key type: %.32s. (Supported key "
		    "types: RSA, RSA-HSM, EC, EC-HSM)",
		    str_or(json_string_value(json_object_get(jwk, "kty")),
		        "?"));
		goto out;
	}
	if (der) {
		rc = key_file_write(file, spki, len);
		goto out;
	}
	p = spki;
	if ((k = d2i_PUBKEY(NULL, &p, (long)len)) == NULL ||
	    (mem = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_PUBKEY(mem, k) != 1 ||
	    (tlen = BIO_get_mem_data(mem, &text)) <= 0) {
		cli_fail_line("cannot encode the public key");
		goto out;
	}
	rc = key_file_write(file, (const uint8_t *)text, (size_t)tlen);
out:
	BIO_free(mem);
	EVP_PKEY_free(k);
	free(spki);
	return rc;
}

int
key_file_read(const char *file, size_t max, uint8_t **out, size_t *len)
{
	buf_t *b = NULL;
	int rc = file_read(file, max, &b);

	*out = NULL;
	*len = 0;
	if (rc != 0) {
		cli_fail_line("cannot read %.200s: %s", file,
		    rc == HSM_ERR_IO ? strerror(errno) : strerror(EFBIG));
		return VLT_ERR_IO;
	}
	if ((*out = malloc(buf_len(b) + 1)) == NULL) {
		buf_free(b);
		cli_fail_line("out of memory");
		return VLT_ERR_NO_MEMORY;
	}
	memcpy(*out, buf_ptr(b), buf_len(b));
	(*out)[buf_len(b)] = '\0';
	*len = buf_len(b);
	buf_free(b);
	return 0;
}

int
key_file_write(const char *file, const uint8_t *data, size_t len)
{
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t off = 0;
	ssize_t w;

	if (fd < 0) {
		cli_fail_line("cannot write %.200s: %s", file, strerror(errno));
		return VLT_ERR_IO;
	}
	while (off < len) {
		w = write(fd, data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	if (off < len || close(fd) != 0) {
		cli_fail_line("cannot write %.200s: %s", file, strerror(errno));
		if (off < len)
			(void)close(fd);
		return VLT_ERR_IO;
	}
	return 0;
}
