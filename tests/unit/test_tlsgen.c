/*
 * test_tlsgen.c — tlsgen_create(): the generated server certificate chains
 * to ca.pem, names localhost, 127.0.0.1 and the host, has the promised
 * extensions; keys are 0600; an external CA is used and copied verbatim;
 * nothing is ever overwritten.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "api/tlsgen.h"
#include "tests/unit/t.h"

static char tmp_root[] = "/tmp/p11vault-tlsgen-XXXXXX";

static void
path_join(char *out, size_t len, const char *a, const char *b)
{
	int n = snprintf(out, len, "%s/%s", a, b);

	if (n < 0 || (size_t)n >= len) {
		fprintf(stderr, "path too long\n");
		exit(2);
	}
}

static X509 *
load_cert(const char *dir, const char *name)
{
	char path[1024];
	FILE *fp;
	X509 *c;

	path_join(path, sizeof(path), dir, name);
	if ((fp = fopen(path, "r")) == NULL)
		return NULL;
	c = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	return c;
}

static EVP_PKEY *
load_key(const char *dir, const char *name)
{
	char path[1024];
	FILE *fp;
	EVP_PKEY *k;

	path_join(path, sizeof(path), dir, name);
	if ((fp = fopen(path, "r")) == NULL)
		return NULL;
	k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	return k;
}

static int
file_mode(const char *dir, const char *name)
{
	char path[1024];
	struct stat st;

	path_join(path, sizeof(path), dir, name);
	if (stat(path, &st) != 0)
		return -1;
	return (int)(st.st_mode & 07777);
}

static int
file_exists(const char *dir, const char *name)
{
	return file_mode(dir, name) >= 0;
}

static int
chains_to(X509 *leaf, X509 *root)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int ok = 0;

	if (store == NULL || ctx == NULL || !X509_STORE_add_cert(store, root))
		goto out;
	if (!X509_STORE_CTX_init(ctx, store, leaf, NULL))
		goto out;
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
	ok = X509_verify_cert(ctx) == 1;
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return ok;
}

/* 1 if the cert's SANs include DNS:name (ip == 0) or IP:name (ip == 1). */
static int
has_san(X509 *cert, const char *name, int ip)
{
	if (ip)
		return X509_check_ip_asc(cert, name, 0) == 1;
	return X509_check_host(cert, name, 0,
	           X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL) == 1;
}

static int
is_p256(X509 *cert)
{
	EVP_PKEY *k = X509_get0_pubkey(cert);
	char group[64];
	size_t len = 0;

	if (k == NULL || EVP_PKEY_get_base_id(k) != EVP_PKEY_EC)
		return 0;
	if (!EVP_PKEY_get_group_name(k, group, sizeof(group), &len))
		return 0;
	return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

/* Days between notBefore and notAfter (rounded down). */
static int
validity_days(X509 *cert)
{
	int days = 0, secs = 0;

	if (!ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert),
	        X509_get0_notAfter(cert)))
		return -1;
	return days;
}

static int
serial_bits(X509 *cert)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	int bits = bn != NULL ? BN_num_bits(bn) : -1;

	BN_free(bn);
	return bits;
}

static int
file_equals(const char *a, const char *b)
{
	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	int ca, cb, same = fa != NULL && fb != NULL;

	while (same) {
		ca = fgetc(fa);
		cb = fgetc(fb);
		if (ca != cb)
			same = 0;
		if (ca == EOF)
			break;
	}
	if (fa != NULL)
		fclose(fa);
	if (fb != NULL)
		fclose(fb);
	return same;
}

/* An "external" CA as an operator would bring: RSA is fine there. */
static int
make_external_ca(const char *dir, char *cert_path, char *key_path, size_t len)
{
	EVP_PKEY *key = EVP_RSA_gen(2048);
	X509 *c = X509_new();
	X509_NAME *name;
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	FILE *fp;
	int rc = -1;

	path_join(cert_path, len, dir, "ext-ca.pem");
	path_join(key_path, len, dir, "ext-ca-key.pem");
	if (key == NULL || c == NULL)
		goto out;
	X509_set_version(c, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(c), 4242);
	X509_gmtime_adj(X509_getm_notBefore(c), -60);
	X509_gmtime_adj(X509_getm_notAfter(c), 86400L * 365);
	name = X509_get_subject_name(c);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)"Example Corp Root", -1, -1, 0);
	X509_set_issuer_name(c, name);
	X509_set_pubkey(c, key);
	X509V3_set_ctx(&ctx, c, c, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
	    "critical,CA:TRUE");
	X509_add_ext(c, ext, -1);
	X509_EXTENSION_free(ext);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage,
	    "critical,keyCertSign,cRLSign");
	X509_add_ext(c, ext, -1);
	X509_EXTENSION_free(ext);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_key_identifier,
	    "hash");
	X509_add_ext(c, ext, -1);
	X509_EXTENSION_free(ext);
	if (X509_sign(c, key, EVP_sha256()) <= 0)
		goto out;
	if ((fp = fopen(cert_path, "w")) == NULL)
		goto out;
	PEM_write_X509(fp, c);
	fclose(fp);
	if ((fp = fopen(key_path, "w")) == NULL)
		goto out;
	PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL);
	fclose(fp);
	rc = 0;
out:
	X509_free(c);
	EVP_PKEY_free(key);
	return rc;
}

static void
test_self_made_ca(void)
{
	char dir[512], err[256];
	X509 *ca = NULL, *srv = NULL;
	EVP_PKEY *srv_key = NULL, *ca_key = NULL;
	int rc;

	path_join(dir, sizeof(dir), tmp_root, "tls");
	rc = tlsgen_create(dir, "vault.example.internal", NULL, NULL, err,
	    sizeof(err));
	T_CHECK(rc == 0, "tlsgen creates CA and server certificate");
	if (rc != 0) {
		fprintf(stderr, "tlsgen: %s\n", err);
		return;
	}
	T_CHECK(file_mode(tmp_root, "tls") == 0700, "tls dir is 0700");
	T_CHECK(file_mode(dir, "server-key.pem") == 0600,
	    "server-key.pem is 0600");
	T_CHECK(file_mode(dir, "ca-key.pem") == 0600, "ca-key.pem is 0600");
	T_CHECK(file_mode(dir, "ca.pem") == 0644, "ca.pem is 0644");

	ca = load_cert(dir, "ca.pem");
	srv = load_cert(dir, "server.pem");
	srv_key = load_key(dir, "server-key.pem");
	ca_key = load_key(dir, "ca-key.pem");
	T_CHECK(ca != NULL && srv != NULL, "ca.pem and server.pem load");
	T_CHECK(srv_key != NULL && ca_key != NULL, "keys load unencrypted");
	if (ca == NULL || srv == NULL || srv_key == NULL || ca_key == NULL)
		goto out;

	T_CHECK(chains_to(srv, ca), "server cert verifies against ca.pem");
	T_CHECK(X509_check_private_key(srv, srv_key) == 1,
	    "server-key.pem matches server.pem");
	T_CHECK(X509_check_private_key(ca, ca_key) == 1,
	    "ca-key.pem matches ca.pem");
	T_CHECK(has_san(srv, "localhost", 0), "SAN has DNS:localhost");
	T_CHECK(has_san(srv, "127.0.0.1", 1), "SAN has IP:127.0.0.1");
	T_CHECK(has_san(srv, "vault.example.internal", 0),
	    "SAN has the host as DNS name");
	T_CHECK(!has_san(srv, "other.example.internal", 0),
	    "SAN does not match another host");
	T_CHECK(is_p256(srv) && is_p256(ca), "both keys are EC P-256");
	T_CHECK(X509_get_signature_nid(srv) == NID_ecdsa_with_SHA256 &&
	        X509_get_signature_nid(ca) == NID_ecdsa_with_SHA256,
	    "signatures are ECDSA with SHA-256");
	T_CHECK(validity_days(srv) == 825, "server cert valid 825 days");
	T_CHECK(validity_days(ca) == 3650, "CA cert valid 10 years");
	T_CHECK(serial_bits(srv) == 128 && serial_bits(ca) == 128,
	    "serials are 128-bit");
	T_CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(srv),
	            X509_get0_serialNumber(ca)) != 0,
	    "serials differ");
	T_CHECK(X509_check_ca(ca) >= 1, "CA cert is a CA");
	T_CHECK(X509_check_ca(srv) == 0, "server cert is not a CA");
	T_CHECK((X509_get_extension_flags(srv) & EXFLAG_CRITICAL) == 0,
	    "server cert has no unknown critical extension");
	T_CHECK((X509_get_key_usage(ca) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) ==
	        (KU_KEY_CERT_SIGN | KU_CRL_SIGN),
	    "CA keyUsage keyCertSign,cRLSign");
	T_CHECK((X509_get_key_usage(srv) & KU_DIGITAL_SIGNATURE) &&
	        !(X509_get_key_usage(srv) & KU_KEY_CERT_SIGN),
	    "server keyUsage digitalSignature, not keyCertSign");
	T_CHECK(X509_get_extended_key_usage(srv) & XKU_SSL_SERVER,
	    "server EKU serverAuth");
	T_CHECK(X509_get0_subject_key_id(srv) != NULL &&
	        X509_get0_authority_key_id(srv) != NULL &&
	        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(srv),
	            X509_get0_subject_key_id(ca)) == 0,
	    "server AKID equals CA SKID");

	/* A second run must refuse and leave the first run's files alone. */
	rc = tlsgen_create(dir, "vault.example.internal", NULL, NULL, err,
	    sizeof(err));
	T_CHECK(rc != 0 && err[0] != '\0', "second run refuses with a reason");
	{
		X509 *again = load_cert(dir, "server.pem");

		T_CHECK(again != NULL && X509_cmp(again, srv) == 0,
		    "second run leaves server.pem untouched");
		X509_free(again);
	}
out:
	X509_free(ca);
	X509_free(srv);
	EVP_PKEY_free(srv_key);
	EVP_PKEY_free(ca_key);
}

static void
test_ip_host(void)
{
	char dir[512], err[256];
	X509 *srv = NULL;
	int rc;

	path_join(dir, sizeof(dir), tmp_root, "tls-ip");
	rc = tlsgen_create(dir, "10.1.2.3", NULL, NULL, err, sizeof(err));
	T_CHECK(rc == 0, "tlsgen accepts an IP host");
	srv = load_cert(dir, "server.pem");
	T_CHECK(srv != NULL && has_san(srv, "10.1.2.3", 1),
	    "IP host is an IP SAN");
	T_CHECK(srv != NULL && has_san(srv, "localhost", 0) &&
	        has_san(srv, "127.0.0.1", 1),
	    "IP host cert still has localhost");
	X509_free(srv);

	path_join(dir, sizeof(dir), tmp_root, "tls-ip6");
	rc = tlsgen_create(dir, "::1", NULL, NULL, err, sizeof(err));
	srv = load_cert(dir, "server.pem");
	T_CHECK(rc == 0 && srv != NULL && has_san(srv, "::1", 1),
	    "IPv6 host is an IP SAN");
	X509_free(srv);

	path_join(dir, sizeof(dir), tmp_root, "tls-bad");
	rc = tlsgen_create(dir, "evil,DNS:x.com", NULL, NULL, err, sizeof(err));
	T_CHECK(rc != 0 && !file_exists(tmp_root, "tls-bad"),
	    "a host with config syntax is refused before anything is written");
}

static void
test_external_ca(void)
{
	char dir[512], err[256], ca_path[512], key_path[512], copy[600];
	X509 *ext = NULL, *srv = NULL, *ca = NULL;
	int rc;

	if (make_external_ca(tmp_root, ca_path, key_path, sizeof(ca_path))) {
		T_CHECK(0, "test can make an external CA");
		return;
	}
	path_join(dir, sizeof(dir), tmp_root, "tls-ext");
	rc = tlsgen_create(dir, "kv.corp.example", ca_path, key_path, err,
	    sizeof(err));
	T_CHECK(rc == 0, "tlsgen signs with an external CA");
	if (rc != 0) {
		fprintf(stderr, "tlsgen: %s\n", err);
		return;
	}
	path_join(copy, sizeof(copy), dir, "ca.pem");
	T_CHECK(file_equals(copy, ca_path), "ca.pem is a copy of the given CA");
	T_CHECK(!file_exists(dir, "ca-key.pem"),
	    "no ca-key.pem with an external CA");
	T_CHECK(file_mode(dir, "server-key.pem") == 0600,
	    "server-key.pem is 0600 with an external CA");
	ext = load_cert(tmp_root, "ext-ca.pem");
	srv = load_cert(dir, "server.pem");
	ca = load_cert(dir, "ca.pem");
	T_CHECK(ext != NULL && srv != NULL && chains_to(srv, ext),
	    "server cert chains to the external CA");
	T_CHECK(ca != NULL && ext != NULL && X509_cmp(ca, ext) == 0,
	    "ca.pem is the external CA certificate");
	T_CHECK(srv != NULL && has_san(srv, "kv.corp.example", 0) &&
	        has_san(srv, "localhost", 0) && has_san(srv, "127.0.0.1", 1),
	    "external-CA server cert has all SANs");
	X509_free(ext);
	X509_free(srv);
	X509_free(ca);

	/* The server cert of one CA must not verify against another. */
	{
		X509 *own_ca = load_cert(tmp_root, "tls/ca.pem");
		X509 *s = load_cert(dir, "server.pem");

		T_CHECK(own_ca != NULL && s != NULL && !chains_to(s, own_ca),
		    "server cert does not verify against an unrelated CA");
		X509_free(own_ca);
		X509_free(s);
	}

	/* Mismatched key and certificate: refused, nothing written. */
	path_join(dir, sizeof(dir), tmp_root, "tls-mismatch");
	path_join(copy, sizeof(copy), tmp_root, "tls/ca-key.pem");
	rc = tlsgen_create(dir, "kv.corp.example", ca_path, copy, err,
	    sizeof(err));
	T_CHECK(rc != 0 && !file_exists(tmp_root, "tls-mismatch"),
	    "a CA key that does not match the CA cert is refused");
}

static void
cleanup(void)
{
	char cmd[600];
	int n = snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_root);

	if (n > 0 && (size_t)n < sizeof(cmd) && system(cmd) != 0)
		fprintf(stderr, "cleanup failed\n");
}

int
main(void)
{
	if (mkdtemp(tmp_root) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	/* A permissive umask must not loosen the key files. */
	umask(0);
	test_self_made_ca();
	test_ip_host();
	test_external_ca();
	cleanup();
	return T_DONE();
}
