/*
 * fuzz_jwt.c — policy_token_verify. The verify key is a fixed P-256 key
 * (below; test-only, so that the kid is stable and seeds can carry it).
 *
 * Input: byte 0 bit 0 clear: the rest is a token string, verified as is.
 * Bit 0 set: the rest is "HEADER_JSON\nCLAIMS_JSON"; the target encodes
 * and signs them with the fixed key (ES256, r||s), so fuzzed headers and
 * claims get past the signature to the claim checks. Bit 1 set (with bit
 * 0): the signature is corrupted in its last byte. A token accepted must
 * name the principal FZ_OID.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "policy/policy.h"
#include "tests/unit/es256.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_TENANT "72f988bf-86f1-41af-91ab-2d7cd011db47"
#define FZ_ISS "https://127.0.0.1:8443/" FZ_TENANT "/v2.0"
#define FZ_OID "11111111-2222-4333-8444-555555555555"
#define FZ_CID "66666666-7777-4888-9999-aaaaaaaaaaaa"
#define FZ_AUD "https://vault.azure.net"

/* test-only key; never used outside this fuzz target */
static const char key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFF17EomcI71VAkv1\n"
    "XKhK8eRPGWuPwl9QAB6sQBeltOehRANCAASelwHZk9lejoGUjxj9MQgk0OO3sxUu\n"
    "KN57SNawzZ3JM2vQdp6xZbJoiXHXSRJAtIpbW8Tf02k+Qs5mkWREVnN4\n"
    "-----END PRIVATE KEY-----\n";

static policy_t *pol;
static EVP_PKEY *pkey;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct policy_config pc;
	BIO *bio;
	uint8_t *spki = NULL;
	int n;

	(void)argc;
	(void)argv;
	bio = BIO_new_mem_buf(key_pem, -1);
	pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (pkey == NULL || (n = i2d_PUBKEY(pkey, &spki)) <= 0)
		abort();
	memset(&pc, 0, sizeof(pc));
	pc.tenant_id = FZ_TENANT;
	pc.issuer = FZ_ISS;
	pc.token_lifetime = 3600;
	if (policy_new(&pc, &pol) != 0 ||
	    policy_set_verify_key(pol, spki, (size_t)n) != 0 ||
	    policy_principal_set(pol, FZ_OID, FZ_CID,
	        "scrypt$2$1$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	        1) != 0)
		abort();
	OPENSSL_free(spki);
	return 0;
}

/* "b64(h).b64(c).b64(sig)" signed with the fixed key */
static char *
make_token(const uint8_t *h, size_t hl, const uint8_t *c, size_t cl,
    int corrupt)
{
	char *hs = NULL, *cs = NULL, *ss = NULL, *tok = NULL, *input = NULL;
	uint8_t sig[64];
	size_t n;

	if (policy_b64url_encode(h, hl, &hs) != 0 ||
	    policy_b64url_encode(c, cl, &cs) != 0)
		goto out;
	n = strlen(hs) + strlen(cs) + 2;
	if ((input = malloc(n)) == NULL)
		goto out;
	snprintf(input, n, "%s.%s", hs, cs);
	if (es256_sign(pkey, (const uint8_t *)input, strlen(input), sig) != 0)
		goto out;
	if (corrupt)
		sig[63] ^= 1;
	if (policy_b64url_encode(sig, sizeof(sig), &ss) != 0)
		goto out;
	n += strlen(ss) + 1;
	if ((tok = malloc(n)) == NULL)
		goto out;
	snprintf(tok, n, "%s.%s", input, ss);
out:
	free(hs);
	free(cs);
	free(ss);
	free(input);
	return tok;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct policy_caller caller;
	char *tok;
	int rc;

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		const uint8_t *nl = memchr(data + 1, '\n', size - 1);
		if (nl == NULL)
			return 0;
		tok = make_token(data + 1, (size_t)(nl - data - 1), nl + 1,
		    size - (size_t)(nl + 1 - data), data[0] & 2);
		if (tok == NULL)
			return 0;
	} else {
		if ((tok = malloc(size)) == NULL)
			return 0;
		memcpy(tok, data + 1, size - 1);
		tok[size - 1] = '\0';
	}
	memset(&caller, 0, sizeof(caller));
	rc = policy_token_verify(pol, tok, FZ_AUD, (int64_t)time(NULL),
	    &caller);
	if (getenv("FUZZ_JWT_DEBUG"))
		fprintf(stderr, "verify: %d\n", rc);
	if (rc == 0 && strcmp(caller.oid, FZ_OID) != 0)
		abort(); /* accepted a token for someone unknown */
	if (rc == 0 && (data[0] & 3) == 3)
		abort(); /* accepted a corrupted signature */
	free(tok);
	return 0;
}
