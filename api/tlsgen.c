/*
 * tlsgen.c — the vault's TLS material: a CA (or an operator-supplied one)
 * and the server certificate the HTTPS listener presents.
 *
 * Owns: DIR/tls/{ca.pem,server.pem,server-key.pem,ca-key.pem}. Private
 * keys are created with mode 0600 at open time (O_CREAT|O_EXCL), so they
 * are never readable by anyone else, not even for an instant.
 *
 * Must never: overwrite an existing file, write a private key with a looser
 * mode, or print key material.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "hsm/base.h"
#include "api/tlsgen.h"

#define TLSGEN_SERVER_DAYS 825L
#define TLSGEN_CA_DAYS 3650L
#define TLSGEN_BACKDATE_SECS 300L /* tolerate small clock skew */
#define TLSGEN_HOST_MAX 253
#define TLSGEN_CA_FILE_MAX (1024 * 1024)
#define TLSGEN_SAN_MAX 512

enum tls_file { TF_CA, TF_SERVER, TF_SERVER_KEY, TF_CA_KEY, TF_COUNT };
static const char *const tls_file_names[TF_COUNT] = {
	"ca.pem",
	"server.pem",
	"server-key.pem",
	"ca-key.pem",
};

/* 1 if host is a plain IPv4/IPv6 literal, 0 if a valid DNS name, -1 else. */
static API_WUR int
host_kind(const char *host)
{
	unsigned char addr[16];
	size_t len, label = 0, i;

	if (host == NULL)
		return -1;
	if (inet_pton(AF_INET, host, addr) == 1 ||
	    inet_pton(AF_INET6, host, addr) == 1)
		return 1;
	len = strlen(host);
	if (len == 0 || len > TLSGEN_HOST_MAX)
		return -1;
	for (i = 0; i < len; i++) {
		char c = host[i];

		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '-'))
			return -1;
		if ((c == '-' && label == 0) || ++label > 63)
			return -1;
	}
	if (label == 0 || host[len - 1] == '-')
		return -1;
	return 0;
}

static API_WUR EVP_PKEY *
gen_p256(void)
{
	return EVP_EC_gen("P-256");
}

static API_WUR int
set_random_serial(X509 *cert)
{
	BIGNUM *bn = BN_new();
	ASN1_INTEGER *serial = NULL;
	int rc = -1;

	/* 128 random bits, top bit set: always exactly 128 bits long. */
	if (bn == NULL ||
	    !BN_rand(bn, 128, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY))
		goto out;
	if ((serial = BN_to_ASN1_INTEGER(bn, NULL)) == NULL)
		goto out;
	if (!X509_set_serialNumber(cert, serial))
		goto out;
	rc = 0;
out:
	ASN1_INTEGER_free(serial);
	BN_free(bn);
	return rc;
}

static API_WUR int
add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int ok;

	if (ext == NULL)
		return -1;
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

static API_WUR int
set_name(X509_NAME *name, const char *cn)
{
	if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
	        (const unsigned char *)"p11vault", -1, -1, 0))
		return -1;
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
	        (const unsigned char *)cn, -1, -1, 0))
		return -1;
	return 0;
}

/* Common skeleton: v3, random serial, validity, subject, public key. */
static API_WUR X509 *
new_cert(EVP_PKEY *key, const char *cn, long days)
{
	X509 *cert = X509_new();

	if (cert == NULL)
		return NULL;
	if (!X509_set_version(cert, 2) || set_random_serial(cert) != 0 ||
	    X509_gmtime_adj(X509_getm_notBefore(cert), -TLSGEN_BACKDATE_SECS) ==
	        NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(cert), (int)days, 0, NULL) ==
	        NULL ||
	    set_name(X509_get_subject_name(cert), cn) != 0 ||
	    !X509_set_pubkey(cert, key)) {
		X509_free(cert);
		return NULL;
	}
	return cert;
}

/* cert signed by key (SHA-256); NULL, with cert freed, if that fails. */
static API_WUR X509 *
cert_signed(X509 *cert, EVP_PKEY *key)
{
	if (X509_sign(cert, key, EVP_sha256()) <= 0) {
		X509_free(cert);
		return NULL;
	}
	return cert;
}

static API_WUR X509 *
make_ca(EVP_PKEY *ca_key)
{
	X509 *cert = new_cert(ca_key, "p11vault CA", TLSGEN_CA_DAYS);
	X509V3_CTX ctx;

	if (cert == NULL)
		return NULL;
	if (!X509_set_issuer_name(cert, X509_get_subject_name(cert)))
		goto fail;
	X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
	if (add_ext(cert, &ctx, NID_basic_constraints, "critical,CA:TRUE") ||
	    add_ext(cert, &ctx, NID_key_usage,
	        "critical,keyCertSign,cRLSign") ||
	    add_ext(cert, &ctx, NID_subject_key_identifier, "hash") ||
	    add_ext(cert, &ctx, NID_authority_key_identifier, "keyid:always"))
		goto fail;
	return cert_signed(cert, ca_key);
fail:
	X509_free(cert);
	return NULL;
}

static API_WUR X509 *
make_server(EVP_PKEY *key, const char *host, int host_is_ip, const char *domain,
    X509 *ca, EVP_PKEY *ca_key)
{
	const char *cn = strlen(host) <= 64 ? host : "p11vault server";
	X509 *cert = new_cert(key, cn, TLSGEN_SERVER_DAYS);
	X509V3_CTX ctx;
	char san[TLSGEN_SAN_MAX];
	int rc;

	if (cert == NULL)
		return NULL;
	if (!X509_set_issuer_name(cert, X509_get_subject_name(ca)))
		goto fail;
	/* host was validated by host_kind(): no ',' or ':' config syntax. */
	if (strcmp(host, "localhost") == 0 || strcmp(host, "127.0.0.1") == 0)
		rc = str_fmt(san, sizeof(san), "DNS:localhost,IP:127.0.0.1");
	else
		rc = str_fmt(san, sizeof(san),
		    "DNS:localhost,IP:127.0.0.1,%s:%s",
		    host_is_ip ? "IP" : "DNS", host);
	/* several vaults: NAME.domain for every NAME (domain checked as a
	 * DNS name by tlsgen_create_domain) */
	if (rc == 0 && domain != NULL) {
		size_t used = strlen(san);

		rc = str_fmt(san + used, sizeof(san) - used, ",DNS:%s,DNS:*.%s",
		    domain, domain);
	}
	if (rc != 0)
		goto fail;
	X509V3_set_ctx(&ctx, ca, cert, NULL, NULL, 0);
	if (add_ext(cert, &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
	    add_ext(cert, &ctx, NID_key_usage,
	        "critical,digitalSignature,keyEncipherment") ||
	    add_ext(cert, &ctx, NID_ext_key_usage, "serverAuth") ||
	    add_ext(cert, &ctx, NID_subject_alt_name, san) ||
	    add_ext(cert, &ctx, NID_subject_key_identifier, "hash"))
		goto fail;
	/* An external CA without a subjectKeyIdentifier: name + serial. */
	if (add_ext(cert, &ctx, NID_authority_key_identifier, "keyid:always")) {
		ERR_clear_error();
		if (add_ext(cert, &ctx, NID_authority_key_identifier,
		        "issuer:always"))
			goto fail;
	}
	return cert_signed(cert, ca_key);
fail:
	X509_free(cert);
	return NULL;
}

static API_WUR int
load_external_ca(const char *ca_cert, const char *ca_key, X509 **cert_out,
    EVP_PKEY **key_out, buf_t **pem_out, char *err, size_t err_len)
{
	FILE *fp = NULL;
	BIO *bio = NULL;
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	buf_t *pem = NULL;
	int rc = -1;

	if (file_read(ca_cert, TLSGEN_CA_FILE_MAX, &pem) != 0 ||
	    buf_len(pem) == 0) {
		err_set_ossl(err, err_len,
		    "cannot read the CA certificate file");
		goto out;
	}
	if ((bio = BIO_new_mem_buf(buf_ptr(pem), (int)buf_len(pem))) == NULL ||
	    (cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL) {
		err_set_ossl(err, err_len,
		    "the CA certificate file holds no PEM "
		    "certificate");
		goto out;
	}
	if (X509_check_ca(cert) == 0) {
		err_set_ossl(err, err_len,
		    "the CA certificate is not a CA "
		    "certificate");
		goto out;
	}
	if ((fp = fopen(ca_key, "r")) == NULL) {
		err_set_ossl(err, err_len, "cannot open the CA key file");
		goto out;
	}
	/* No passphrase callback: an encrypted key fails instead of prompting. */
	if ((key = PEM_read_PrivateKey(fp, NULL, NULL, (void *)"")) == NULL) {
		err_set_ossl(err, err_len,
		    "cannot read an unencrypted PEM private "
		    "key from the CA key file");
		goto out;
	}
	if (X509_check_private_key(cert, key) != 1) {
		err_set_ossl(err, err_len,
		    "the CA key does not match the CA "
		    "certificate");
		goto out;
	}
	*cert_out = cert;
	*key_out = key;
	*pem_out = pem;
	cert = NULL;
	key = NULL;
	pem = NULL;
	rc = 0;
out:
	if (fp != NULL)
		fclose(fp);
	BIO_free(bio);
	X509_free(cert);
	EVP_PKEY_free(key);
	buf_free(pem);
	return rc;
}

/* Creates DIR/name with exactly `mode`; never follows or reuses a file. */
static FILE *
create_file(const char *dir, const char *name, mode_t mode, char *path,
    size_t path_len)
{
	FILE *fp;
	int fd;

	if (str_fmt(path, path_len, "%s/%s", dir, name) != 0)
		return NULL;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    mode);
	if (fd < 0)
		return NULL;
	if ((fp = fdopen(fd, "w")) == NULL) {
		close(fd);
		unlink(path);
		return NULL;
	}
	return fp;
}

static API_WUR int
finish_file(FILE *fp)
{
	int rc = 0;

	if (fflush(fp) != 0 || fsync(fileno(fp)) != 0)
		rc = -1;
	if (fclose(fp) != 0)
		rc = -1;
	return rc;
}

/* One TLS file, DIR/<which> with mode, holding cert, else key, else the
 * len bytes at bytes; marks it created (for the clean-up of a failure). */
static API_WUR int
write_tls_file(const char *dir, enum tls_file which, mode_t mode, X509 *cert,
    EVP_PKEY *key, const buf_t *bytes, int *created)
{
	char path[4096];
	FILE *fp = create_file(dir, tls_file_names[which], mode, path,
	    sizeof(path));
	int ok;

	if (fp == NULL)
		return -1;
	created[which] = 1;
	if (cert != NULL)
		ok = PEM_write_X509(fp, cert);
	else if (key != NULL)
		ok = PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL);
	else
		ok = fwrite(buf_ptr(bytes), 1, buf_len(bytes), fp) ==
		    buf_len(bytes);
	if (finish_file(fp) != 0 || !ok)
		return -1;
	return 0;
}

static API_WUR int
ensure_dir(const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0700) == 0)
		return 0;
	if (errno != EEXIST)
		return -1;
	if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return -1;
	return 0;
}

/* The TLS material, in memory: the CA (made, or the operator's) and the
 * server key and certificate. */
struct tls_set {
	EVP_PKEY *ca_key, *srv_key;
	X509 *ca, *srv;
	buf_t *ca_pem; /* the operator's ca.pem, verbatim */
};

static void
tls_set_free(struct tls_set *t)
{
	X509_free(t->srv);
	X509_free(t->ca);
	EVP_PKEY_free(t->srv_key);
	EVP_PKEY_free(t->ca_key);
	buf_free(t->ca_pem);
}

static API_WUR int
make_material(struct tls_set *t, const char *host, int is_ip,
    const char *domain, const char *ca_cert, const char *ca_key, char *err,
    size_t err_len)
{
	if (ca_cert != NULL) {
		if (load_external_ca(ca_cert, ca_key, &t->ca, &t->ca_key,
		        &t->ca_pem, err, err_len) != 0)
			return -1;
	} else {
		if ((t->ca_key = gen_p256()) == NULL) {
			err_set_ossl(err, err_len,
			    "cannot generate the CA key");
			return -1;
		}
		if ((t->ca = make_ca(t->ca_key)) == NULL) {
			err_set_ossl(err, err_len,
			    "cannot create the CA "
			    "certificate");
			return -1;
		}
	}
	if ((t->srv_key = gen_p256()) == NULL) {
		err_set_ossl(err, err_len, "cannot generate the server key");
		return -1;
	}
	if ((t->srv = make_server(t->srv_key, host, is_ip, domain, t->ca,
	         t->ca_key)) == NULL) {
		err_set_ossl(err, err_len,
		    "cannot create the server certificate");
		return -1;
	}
	return 0;
}

/* Writes the files; on failure removes those this call created (never a
 * pre-existing one) and says why. */
static API_WUR int
write_material(const char *tls_dir, const struct tls_set *t, char *err,
    size_t err_len)
{
	int created[TF_COUNT] = { 0 };
	char path[4096];
	int i, saved_errno, rc;

	if (t->ca_pem != NULL)
		rc = write_tls_file(tls_dir, TF_CA, 0644, NULL, NULL, t->ca_pem,
		    created);
	else
		rc = write_tls_file(tls_dir, TF_CA, 0644, t->ca, NULL, NULL,
		         created) != 0 ||
		        write_tls_file(tls_dir, TF_CA_KEY, 0600, NULL,
		            t->ca_key, NULL, created) != 0 ?
		    -1 :
		    0;
	if (rc == 0 &&
	    write_tls_file(tls_dir, TF_SERVER, 0644, t->srv, NULL, NULL,
	        created) == 0 &&
	    write_tls_file(tls_dir, TF_SERVER_KEY, 0600, NULL, t->srv_key, NULL,
	        created) == 0)
		return 0;
	saved_errno = errno;
	if (saved_errno == EEXIST)
		err_set(err, err_len,
		    "a TLS file already exists; refusing "
		    "to overwrite it");
	else
		err_set(err, err_len, "cannot write the TLS files: %s",
		    strerror(saved_errno));
	for (i = 0; i < TF_COUNT; i++)
		if (created[i] &&
		    str_fmt(path, sizeof(path), "%s/%s", tls_dir,
		        tls_file_names[i]) == 0)
			(void)unlink(path);
	return -1;
}

int
tlsgen_create(const char *tls_dir, const char *host, const char *ca_cert,
    const char *ca_key, char *err, size_t err_len)
{
	return tlsgen_create_domain(tls_dir, host, NULL, ca_cert, ca_key, err,
	    err_len);
}

int
tlsgen_create_domain(const char *tls_dir, const char *host, const char *domain,
    const char *ca_cert, const char *ca_key, char *err, size_t err_len)
{
	struct tls_set t;
	int is_ip, rc = -1;

	memset(&t, 0, sizeof(t));
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	if (tls_dir == NULL || *tls_dir == '\0') {
		err_set_ossl(err, err_len, "no TLS directory given");
		goto out;
	}
	if ((is_ip = host_kind(host)) < 0) {
		err_set_ossl(err, err_len,
		    "the host is neither an IP address nor a "
		    "valid DNS name");
		goto out;
	}
	if (domain != NULL && host_kind(domain) != 0) {
		err_set_ossl(err, err_len,
		    "the vault domain is not a DNS name");
		goto out;
	}
	if ((ca_cert == NULL) != (ca_key == NULL)) {
		err_set_ossl(err, err_len,
		    "an external CA needs both its "
		    "certificate and its key");
		goto out;
	}
	/* Everything in memory first: a failure leaves no half-made files. */
	if (make_material(&t, host, is_ip, domain, ca_cert, ca_key, err,
	        err_len) != 0)
		goto out;
	if (ensure_dir(tls_dir) != 0) {
		err_set(err, err_len, "cannot create the TLS directory: %s",
		    errno == EEXIST ? "not a directory" : strerror(errno));
		goto out;
	}
	rc = write_material(tls_dir, &t, err, err_len);
out:
	tls_set_free(&t);
	return rc;
}
