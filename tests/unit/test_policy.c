/* Unit tests for policy/: base64url, permissions, secrets, principals,
 * access decisions and ES256 JWTs (real OpenSSL keys, no mocks). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "policy/policy.h"
#include "tests/unit/es256.h"
#include "tests/unit/t.h"

/* a call that must succeed; its failure is a failed check of its own */
#define T_REQUIRE_OK(call) \
	do { \
		if ((call) != POLICY_OK) { \
			printf("not ok - %s\n", #call); \
			t_failed++; \
		} \
	} while (0)

#define TENANT "72f988bf-86f1-41af-91ab-2d7cd011db47"
#define ISSUER "https://vault.local/" TENANT "/v2.0"
#define AUD "https://vault.azure.net"
#define OID "11111111-2222-4333-8444-555555555555"
#define APPID "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
#define T0 ((int64_t)1700000000)

static double
thread_cpu_s(void)
{
	struct timespec ts;

	/* This thread's CPU time: preemption by other processes on a busy
	 * machine does not count, only the work the call itself did. */
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- base64url --------------------------------------------------------- */

static int
dec_eq(const char *in, const char *want, size_t want_len)
{
	uint8_t *out = NULL;
	size_t n = 0;
	int ok;

	if (policy_b64url_decode(in, strlen(in), &out, &n) != POLICY_OK)
		return 0;
	ok = n == want_len && memcmp(out, want, n) == 0;
	free(out);
	return ok;
}

static int
dec_rejects(const char *in, size_t len)
{
	uint8_t *out = (uint8_t *)1;
	size_t n = 99;
	int r = policy_b64url_decode(in, len, &out, &n);

	return r == POLICY_ERR_ARGS && out == NULL && n == 0;
}

static int
enc_eq(const char *in, size_t len, const char *want)
{
	char *out = NULL;
	int ok;

	if (policy_b64url_encode((const uint8_t *)in, len, &out) != POLICY_OK)
		return 0;
	ok = strcmp(out, want) == 0;
	free(out);
	return ok;
}

static void
test_b64url(void)
{
	static const char *plain[] = { "", "f", "fo", "foo", "foob", "fooba",
		"foobar" };
	static const char *bare[] = { "", "Zg", "Zm8", "Zm9v", "Zm9vYg",
		"Zm9vYmE", "Zm9vYmFy" };
	static const char *padded[] = { "", "Zg==", "Zm8=", "Zm9v",
		"Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
	int enc_ok = 1, dec_ok = 1, pad_ok = 1;

	for (size_t i = 0; i < 7; i++) {
		enc_ok &= enc_eq(plain[i], strlen(plain[i]), bare[i]);
		dec_ok &= dec_eq(bare[i], plain[i], strlen(plain[i]));
		pad_ok &= dec_eq(padded[i], plain[i], strlen(plain[i]));
	}
	T_CHECK(enc_ok, "b64url encodes the RFC 4648 vectors without padding");
	T_CHECK(dec_ok, "b64url decodes the RFC 4648 vectors without padding");
	T_CHECK(pad_ok, "b64url decodes the RFC 4648 vectors with padding");
	T_CHECK(enc_eq("\xfb\xff\xbf", 3, "-_-_") &&
	        enc_eq("\xfb\xff", 2, "-_8"),
	    "b64url encodes with '-' and '_'");
	T_CHECK(dec_eq("-_-_", "\xfb\xff\xbf", 3) &&
	        dec_eq("-_8=", "\xfb\xff", 2),
	    "b64url decodes '-' and '_'");
	T_CHECK(dec_rejects("+/+/", 4) && dec_rejects("-_+_", 4) &&
	        dec_rejects("-/8", 3),
	    "b64url rejects '+' and '/'");
	T_CHECK(dec_rejects("Zm9v\n", 5) && dec_rejects("Zm 9", 4) &&
	        dec_rejects("Zm=v", 4) && dec_rejects("Zm9\0", 4) &&
	        dec_rejects("Zm9v*", 5),
	    "b64url rejects other characters");
	T_CHECK(dec_rejects("Z", 1) && dec_rejects("Zm9vY", 5) &&
	        dec_rejects("Zg=", 3) && dec_rejects("Zg===", 5) &&
	        dec_rejects("====", 4) && dec_rejects("Z===", 4) &&
	        dec_rejects("=", 1),
	    "b64url rejects impossible lengths and "
	    "misplaced padding");
	T_CHECK(dec_rejects("Zh", 2) && dec_rejects("Zm9=", 4),
	    "b64url rejects non-zero trailing bits");
	{
		uint8_t all[256], *back = NULL;
		char *s = NULL;
		size_t n = 0;
		int ok;

		for (size_t i = 0; i < sizeof(all); i++)
			all[i] = (uint8_t)i;
		ok = policy_b64url_encode(all, sizeof(all), &s) == 0 &&
		    strspn(s,
		        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
		        "wxyz0123456789-_") == strlen(s) &&
		    policy_b64url_decode(s, strlen(s), &back, &n) == 0 &&
		    n == sizeof(all) && memcmp(all, back, n) == 0;
		T_CHECK(ok, "b64url round-trips all byte values");
		free(s);
		free(back);
	}
}

/* ---- permissions, ids, secrets ---------------------------------------- */

static void
test_perms(void)
{
	unsigned b = 0;
	int round = 1;

	T_CHECK(policy_perm_parse("wrapKey", &b) == 0 && b == PERM_WRAPKEY,
	    "perm parse wrapKey");
	T_CHECK(policy_perm_parse("WRAPKEY", &b) == 0 && b == PERM_WRAPKEY &&
	        policy_perm_parse("unwrapkey", &b) == 0 &&
	        b == PERM_UNWRAPKEY &&
	        policy_perm_parse("GetRotationPolicy", &b) == 0 &&
	        b == PERM_GETROTATIONPOLICY,
	    "perm parse is case-insensitive");
	T_CHECK(policy_perm_parse("all", &b) == 0 && b == PERM_ALL &&
	        policy_perm_parse("ALL", &b) == 0 && b == PERM_ALL,
	    "perm parse all is PERM_ALL");
	T_CHECK(policy_perm_parse("bogus", &b) == -1 &&
	        policy_perm_parse("", &b) == -1 &&
	        policy_perm_parse("get ", &b) == -1 &&
	        policy_perm_parse("wrap", &b) == -1,
	    "perm parse rejects unknown names");
	for (unsigned i = 0; i < 19; i++) {
		const char *n = policy_perm_name(1u << i);
		round &= n != NULL && policy_perm_parse(n, &b) == 0 &&
		    b == 1u << i;
	}
	T_CHECK(round, "perm names round-trip for all 19 bits");
	T_CHECK(strcmp(policy_perm_name(PERM_UNWRAPKEY), "unwrapKey") == 0 &&
	        strcmp(policy_perm_name(PERM_SETROTATIONPOLICY),
	            "setrotationpolicy") == 0,
	    "perm names are Azure's spelling");
	T_CHECK(policy_perm_name(0) == NULL &&
	        policy_perm_name(PERM_ALL) == NULL &&
	        policy_perm_name(1u << 19) == NULL &&
	        policy_perm_name(PERM_GET | PERM_LIST) == NULL,
	    "perm name is NULL for anything but one known bit");
}

static void
test_ids(void)
{
	char a[POLICY_ID_LEN + 1], b[POLICY_ID_LEN + 1], s[64];
	uint8_t *raw = NULL;
	size_t n = 0;
	int fmt = 1;

	policy_uuid(a);
	policy_uuid(b);
	for (size_t i = 0; i < POLICY_ID_LEN; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23)
			fmt &= a[i] == '-';
		else
			fmt &= strchr("0123456789abcdef", a[i]) != NULL &&
			    a[i] != '\0';
	}
	T_CHECK(strlen(a) == 36 && fmt && a[14] == '4' &&
	        strchr("89ab", a[19]) != NULL,
	    "uuid is a lowercase v4 UUID");
	T_CHECK(strcmp(a, b) != 0, "two uuids differ");
	{
		/* across many blocks of the per-thread pool: all valid v4,
		 * all different */
		static char many[200][POLICY_ID_LEN + 1];
		int all = 1;

		for (size_t k = 0; k < 200; k++) {
			policy_uuid(many[k]);
			all &= strlen(many[k]) == 36 && many[k][14] == '4' &&
			    strchr("89ab", many[k][19]) != NULL &&
			    many[k][8] == '-' && many[k][13] == '-' &&
			    many[k][18] == '-' && many[k][23] == '-';
			for (size_t m = 0; m < k; m++)
				all &= strcmp(many[k], many[m]) != 0;
		}
		T_CHECK(all,
		    "200 uuids in a row: every one a v4 UUID, no two "
		    "alike");
	}
	policy_secret_new(s);
	T_CHECK(strlen(s) == 43 &&
	        policy_b64url_decode(s, strlen(s), &raw, &n) == 0 && n == 32,
	    "secret is base64url of 32 bytes");
	free(raw);
}

static void
test_secrets(void)
{
	char *h1 = NULL, *h2 = NULL, *t = NULL;
	size_t n;

	T_CHECK(policy_secret_hash("correct horse", &h1) == POLICY_OK &&
	        strncmp(h1, "scrypt$16384$8$1$", 17) == 0,
	    "secret hash is scrypt$16384$8$1$...");
	T_CHECK(policy_secret_hash("correct horse", &h2) == POLICY_OK &&
	        strcmp(h1, h2) != 0,
	    "secret hashes are salted");
	T_CHECK(policy_secret_verify(h1, "correct horse") == POLICY_OK &&
	        policy_secret_verify(h2, "correct horse") == POLICY_OK,
	    "secret check accepts the right secret");
	T_CHECK(policy_secret_verify(h1, "correct horsE") ==
	            POLICY_ERR_DENIED &&
	        policy_secret_verify(h1, "") == POLICY_ERR_DENIED &&
	        policy_secret_verify(h1, "correct horse ") == POLICY_ERR_DENIED,
	    "secret check rejects a wrong secret");
	t = strdup(h1);
	n = strlen(t);
	t[n - 2] = t[n - 2] == 'A' ? 'B' : 'A';
	T_CHECK(policy_secret_verify(t, "correct horse") == POLICY_ERR_DENIED,
	    "secret check rejects a tampered hash value");
	free(t);
	t = strdup(h1);
	t[18] = t[18] == 'A' ? 'B' : 'A'; /* in the salt */
	T_CHECK(policy_secret_verify(t, "correct horse") == POLICY_ERR_DENIED,
	    "secret check rejects a tampered salt");
	free(t);
	t = strdup(h1);
	t[7] = '8'; /* N = 86384: not a power of 2 */
	T_CHECK(policy_secret_verify(t, "correct horse") == POLICY_ERR_DENIED &&
	        policy_secret_verify("x", "correct horse") ==
	            POLICY_ERR_DENIED &&
	        policy_secret_verify("", "") == POLICY_ERR_DENIED &&
	        policy_secret_verify(NULL, "a") == POLICY_ERR_DENIED &&
	        policy_secret_verify(h1, NULL) == POLICY_ERR_DENIED,
	    "secret check rejects malformed hashes");
	free(t);
	{
		/* one spelling of N, r and p: no leading zero, sign or space */
		static const char *const spell[] = { "016384$8$1", "16384$08$1",
			"16384$8$+1", "16384$ 8$1", "16384$8$0", "16384$8$1x" };
		char alt[512];
		int all = 1;

		for (size_t i = 0; i < sizeof(spell) / sizeof(spell[0]); i++) {
			snprintf(alt, sizeof(alt), "scrypt$%s%s", spell[i],
			    h1 + strlen("scrypt$16384$8$1"));
			all &= policy_secret_verify(alt, "correct horse") ==
			    POLICY_ERR_DENIED;
		}
		snprintf(alt, sizeof(alt), "scrypt$16384$8$1%s",
		    h1 + strlen("scrypt$16384$8$1"));
		T_CHECK(all &&
		        policy_secret_verify(alt, "correct horse") == POLICY_OK,
		    "secret check takes N, r, p in one spelling");
	}
	free(h1);
	free(h2);
}

/* ---- principals and access --------------------------------------------- */

static policy_t *
new_policy(void)
{
	struct policy_config cfg = { TENANT, ISSUER, 0 };
	policy_t *p = NULL;

	if (policy_new(&cfg, &p) != POLICY_OK) {
		fprintf(stderr, "policy_new failed\n");
		exit(1);
	}
	return p;
}

static void
test_principals(policy_t *p)
{
	char oid[POLICY_ID_LEN + 1], *h = NULL;
	int admin = -1, r;
	double t1, t2, t3, t_known, t_unknown;

	T_CHECK(policy_secret_hash("s3cret", &h) == 0, "hash for principal");
	T_CHECK(policy_principal_set(p, OID, APPID, "not-a-hash", 0) ==
	        POLICY_ERR_ARGS,
	    "principal set rejects a malformed hash");
	T_CHECK(policy_principal_set(p, OID "0", APPID, h, 0) ==
	            POLICY_ERR_ARGS &&
	        policy_principal_set(p, "", APPID, h, 0) == POLICY_ERR_ARGS,
	    "principal set rejects bad object ids");
	T_CHECK(policy_principal_set(p, OID, APPID, h, 1) == POLICY_OK,
	    "principal set");
	T_CHECK(policy_principal_set(p, "99999999-2222-4333-8444-555555555555",
	            APPID, h, 0) == POLICY_ERR_ARGS,
	    "principal set refuses a client_id owned by another principal");
	T_CHECK((policy_principal_find(p, OID) == POLICY_OK) &&
	        (policy_principal_find(p, APPID) != POLICY_OK),
	    "principal exists");
	T_CHECK(policy_check_admin(p, OID) == POLICY_OK &&
	        policy_check_admin(p, APPID) == POLICY_ERR_DENIED,
	    "principal is_admin");

	r = policy_authenticate(p, APPID, "s3cret", oid, &admin);
	T_CHECK(r == POLICY_OK && strcmp(oid, OID) == 0 && admin == 1,
	    "authenticate with the right secret");
	T_CHECK(policy_authenticate(p, APPID, "s3creT", oid, &admin) ==
	            POLICY_ERR_DENIED &&
	        oid[0] == '\0' && admin == 0,
	    "authenticate rejects a wrong secret");
	T_CHECK(policy_authenticate(p, "no-such-client", "s3cret", oid,
	            &admin) == POLICY_ERR_DENIED,
	    "authenticate rejects an unknown "
	    "client");
	/* scrypt takes tens of ms of CPU, a shortcut for unknown clients µs.
	 * CPU time, not wall time (see thread_cpu_s), so that a loaded machine
	 * cannot make the two look unequal; the minimum of a few runs evens
	 * out cache effects. */
	t_known = t_unknown = 1e9;
	for (int i = 0; i < 3; i++) {
		t1 = thread_cpu_s();
		r = policy_authenticate(p, APPID, "wrong", oid, &admin);
		t2 = thread_cpu_s();
		r |= policy_authenticate(p, "no-such-client", "wrong", oid,
		    &admin);
		t3 = thread_cpu_s();
		if (t2 - t1 < t_known)
			t_known = t2 - t1;
		if (t3 - t2 < t_unknown)
			t_unknown = t3 - t2;
	}
	T_CHECK(t_unknown > t_known * 0.5,
	    "authenticate of an unknown "
	    "client costs a scrypt too");
	T_CHECK(policy_authenticate(p, APPID, NULL, oid, &admin) ==
	            POLICY_ERR_DENIED &&
	        policy_authenticate(p, NULL, "s3cret", oid, &admin) ==
	            POLICY_ERR_DENIED,
	    "authenticate rejects NULLs");

	T_CHECK(policy_principal_set(p, OID, APPID, h, 0) == POLICY_OK &&
	        policy_check_admin(p, OID) == POLICY_ERR_DENIED,
	    "principal set replaces by oid");
	T_REQUIRE_OK(policy_principal_remove(p, OID));
	T_CHECK((policy_principal_find(p, OID) != POLICY_OK) &&
	        policy_authenticate(p, APPID, "s3cret", oid, &admin) ==
	            POLICY_ERR_DENIED,
	    "removed principal cannot authenticate");
	T_CHECK(policy_principal_set(p, OID, APPID, h, 0) == POLICY_OK,
	    "principal re-added");
	free(h);
}

static void
test_access(policy_t *p)
{
	char oid[POLICY_ID_LEN + 1];
	int r = POLICY_OK, filled = 1;
	const char *other = "22222222-2222-4333-8444-555555555555";

	T_CHECK((policy_check_perm(p, other, PERM_GET) != POLICY_OK) &&
	        policy_access_get(p, other) == 0,
	    "deny by default");
	T_CHECK(policy_access_set(p, other, PERM_GET | PERM_WRAPKEY) == 0,
	    "access set");
	T_CHECK((policy_check_perm(p, other, PERM_GET) == POLICY_OK) &&
	        (policy_check_perm(p, other, PERM_WRAPKEY) == POLICY_OK) &&
	        (policy_check_perm(p, other, PERM_SIGN) != POLICY_OK) &&
	        (policy_check_perm(p, other, PERM_UNWRAPKEY) != POLICY_OK),
	    "allows only the granted permissions");
	T_CHECK((policy_check_perm(p, OID, PERM_GET) != POLICY_OK),
	    "no policy for another oid");
	T_CHECK((policy_check_perm(p, other, 0) != POLICY_OK) &&
	        (policy_check_perm(p, other, PERM_GET | PERM_WRAPKEY) !=
	            POLICY_OK),
	    "allows denies 0 and multi-bit requests");
	T_CHECK(policy_access_get(p, other) == (PERM_GET | PERM_WRAPKEY),
	    "access get");
	T_CHECK(policy_access_set(p, other, PERM_SIGN) == 0 &&
	        (policy_check_perm(p, other, PERM_GET) != POLICY_OK) &&
	        (policy_check_perm(p, other, PERM_SIGN) == POLICY_OK),
	    "access set replaces");
	T_CHECK(policy_access_set(p, other, 1u << 19) == POLICY_ERR_ARGS &&
	        policy_access_set(p, "", PERM_GET) == POLICY_ERR_ARGS,
	    "access set rejects unknown bits and bad ids");
	T_REQUIRE_OK(policy_access_remove(p, other));
	T_CHECK((policy_check_perm(p, other, PERM_SIGN) != POLICY_OK) &&
	        policy_access_get(p, other) == 0,
	    "access remove denies at once");

	for (int i = 0; i < POLICY_MAX_POLICIES && r == POLICY_OK; i++) {
		snprintf(oid, sizeof(oid), "00000000-0000-4000-8000-%012d", i);
		r = policy_access_set(p, oid, PERM_ALL);
	}
	T_CHECK(r == POLICY_OK, "1024 access policies fit");
	T_CHECK(policy_access_set(p, other, PERM_GET) == POLICY_ERR_LIMIT &&
	        (policy_check_perm(p, other, PERM_GET) != POLICY_OK),
	    "policy 1025 is refused");
	snprintf(oid, sizeof(oid), "00000000-0000-4000-8000-%012d", 7);
	T_CHECK(policy_access_set(p, oid, PERM_LIST) == POLICY_OK &&
	        policy_access_get(p, oid) == PERM_LIST,
	    "replacing a policy at the limit works");
	T_REQUIRE_OK(policy_access_remove(p, oid));
	T_CHECK(policy_access_set(p, other, PERM_GET) == POLICY_OK,
	    "after a removal there is room again");
	for (int i = 0; i < POLICY_MAX_POLICIES; i++) {
		snprintf(oid, sizeof(oid), "00000000-0000-4000-8000-%012d", i);
		filled &= i == 7 ?
		    (policy_check_perm(p, oid, PERM_GET) != POLICY_OK) :
		    (policy_check_perm(p, oid, PERM_PURGE) == POLICY_OK);
		T_REQUIRE_OK(policy_access_remove(p, oid));
	}
	T_REQUIRE_OK(policy_access_remove(p, other));
	T_CHECK(filled, "every stored policy decides correctly");
}

/* ---- tokens ----------------------------------------------------------- */

static char *
b64s(const void *data, size_t len)
{
	char *s = NULL;

	if (policy_b64url_encode(data, len, &s) != 0)
		exit(1);
	return s;
}

/* header.payload.signature with any JSON; ES256 by key, or HS256 with
 * hmac_key, or an empty signature when both are NULL. */
static char *
craft(const char *hdr, const char *payload, EVP_PKEY *key,
    const uint8_t *hmac_key, size_t hmac_len)
{
	char *h = b64s(hdr, strlen(hdr)), *c = b64s(payload, strlen(payload));
	char *sig = NULL, *tok;
	size_t n = strlen(h) + strlen(c) + 200;
	uint8_t raw[64];
	unsigned char mac[32];
	unsigned int mac_len = 0;

	tok = malloc(n);
	snprintf(tok, n, "%s.%s", h, c);
	if (key != NULL) {
		if (es256_sign(key, (uint8_t *)tok, strlen(tok), raw) != 0)
			exit(1);
		sig = b64s(raw, 64);
	} else if (hmac_key != NULL) {
		HMAC(EVP_sha256(), hmac_key, (int)hmac_len, (uint8_t *)tok,
		    strlen(tok), mac, &mac_len);
		sig = b64s(mac, mac_len);
	} else {
		sig = strdup("");
	}
	snprintf(tok + strlen(tok), n - strlen(tok), ".%s", sig);
	free(h);
	free(c);
	free(sig);
	return tok;
}

static char *
claims_json(const char *iss, const char *aud, const char *tid, const char *oid,
    int64_t nbf, int64_t exp)
{
	char buf[1024];

	snprintf(buf, sizeof(buf),
	    "{\"iss\":\"%s\",\"aud\":\"%s\","
	    "\"tid\":\"%s\",\"oid\":\"%s\",\"appid\":\"%s\",\"iat\":%lld,"
	    "\"nbf\":%lld,\"exp\":%lld,\"jti\":\"x\"}",
	    iss, aud, tid, oid, APPID, (long long)nbf, (long long)nbf,
	    (long long)exp);
	return strdup(buf);
}

static int
verify(policy_t *p, const char *tok, const char *aud, int64_t now)
{
	struct policy_caller c;

	return policy_token_verify(p, tok, aud, now, &c);
}

static int
denied(policy_t *p, const char *tok)
{
	return verify(p, tok, AUD, T0) == POLICY_ERR_DENIED;
}

struct verify_thread {
	policy_t *p;
	const char *tok;
	int id;
	int fails;
};

static void *
verify_worker(void *arg)
{
	struct verify_thread *v = arg;
	char oid[POLICY_ID_LEN + 1];

	for (int i = 0; i < 300; i++) {
		if (verify(v->p, v->tok, AUD, T0 + i) != POLICY_OK)
			v->fails++;
		/* Each thread its own oids: a policy is one thread's. */
		snprintf(oid, sizeof(oid), "33333333-0000-4000-8%03d-%012d",
		    v->id, i);
		if (policy_access_set(v->p, oid, PERM_GET) != POLICY_OK)
			v->fails++;
		if ((policy_check_perm(v->p, oid, PERM_GET) != POLICY_OK))
			v->fails++;
		T_REQUIRE_OK(policy_access_remove(v->p, oid));
	}
	return NULL;
}

/* What the steps of test_tokens share: the policy, three keys (the
 * verify key, another P-256 key, a P-384 key) with their SPKIs, the JWK
 * of the verify key and the token issued with it. */
struct tok_ctx {
	policy_t *p;
	EVP_PKEY *key, *other, *p384;
	unsigned char *spki, *spki2, *spki384;
	int spki_len, spki2_len, spki384_len;
	char *kid, *x, *y, *tok;
};

/* The verify key: only a whole P-256 SPKI; the JWK made of it. */
static void
tok_verify_key(struct tok_ctx *tk)
{
	policy_t *p = tk->p;
	uint8_t dig[32], coord[32];
	char *want = NULL;
	int64_t expires_in = 0;
	BIGNUM *bx = NULL;

	T_CHECK(tk->key && tk->other && tk->p384 && tk->spki_len > 0 &&
	        tk->spki2_len > 0 && tk->spki384_len > 0,
	    "test keys generated");
	T_CHECK(policy_token_issue(p, OID, APPID, AUD, T0, es256_sign, tk->key,
	            &tk->tok, &expires_in) != POLICY_OK &&
	        tk->tok == NULL,
	    "issue fails without a verify key");
	T_CHECK(policy_set_verify_key(p, (uint8_t *)"garbage", 7) ==
	            POLICY_ERR_ARGS &&
	        policy_set_verify_key(p, tk->spki384,
	            (size_t)tk->spki384_len) == POLICY_ERR_ARGS &&
	        policy_set_verify_key(p, tk->spki, (size_t)tk->spki_len - 1) ==
	            POLICY_ERR_ARGS,
	    "verify key must be a whole P-256 SPKI");
	T_CHECK(policy_set_verify_key(p, tk->spki, (size_t)tk->spki_len) ==
	        POLICY_OK,
	    "set verify key");

	T_CHECK(policy_jwk(p, &tk->kid, &tk->x, &tk->y) == POLICY_OK, "jwk");
	SHA256(tk->spki, (size_t)tk->spki_len, dig);
	want = b64s(dig, 16);
	T_CHECK(strcmp(tk->kid, want) == 0,
	    "kid is b64url(SHA-256(SPKI)[0:16])");
	free(want);
	EVP_PKEY_get_bn_param(tk->key, OSSL_PKEY_PARAM_EC_PUB_X, &bx);
	BN_bn2binpad(bx, coord, 32);
	want = b64s(coord, 32);
	T_CHECK(strcmp(tk->x, want) == 0 && strlen(tk->y) == 43,
	    "jwk x is the key's x coordinate");
	free(want);
	BN_free(bx);
}

/* Issue a token; verify it, its header, audience and time window. */
static void
tok_issue(struct tok_ctx *tk)
{
	policy_t *p = tk->p;
	struct policy_caller caller;
	char hdr[256], kid_claim[64];
	uint8_t *raw = NULL;
	size_t raw_len = 0;
	int64_t expires_in = 0;
	const char *dot;

	T_CHECK(policy_token_issue(p, OID, APPID, AUD, T0, es256_sign, tk->key,
	            &tk->tok, &expires_in) == POLICY_OK &&
	        expires_in == 3600,
	    "issue a token");
	memset(&caller, 0, sizeof(caller));
	T_CHECK(policy_token_verify(p, tk->tok, AUD, T0, &caller) ==
	            POLICY_OK &&
	        strcmp(caller.oid, OID) == 0 &&
	        strcmp(caller.appid, APPID) == 0 &&
	        strcmp(caller.tid, TENANT) == 0 && caller.exp == T0 + 3600,
	    "verify an issued token and return its claims");
	T_CHECK(verify(p, tk->tok, AUD, T0) == POLICY_OK,
	    "verify it again (cached signature)");
	T_CHECK(verify(p, tk->tok, AUD "/", T0) == POLICY_OK,
	    "audience with a trailing slash is accepted");
	dot = strchr(tk->tok, '.');
	T_CHECK(policy_b64url_decode(tk->tok, (size_t)(dot - tk->tok), &raw,
	            &raw_len) == 0 &&
	        raw_len < sizeof(hdr),
	    "header decodes");
	snprintf(hdr, sizeof(hdr), "%.*s", (int)raw_len, (char *)raw);
	free(raw);
	snprintf(kid_claim, sizeof(kid_claim), "\"kid\":\"%s\"", tk->kid);
	T_CHECK(strstr(hdr, "\"alg\":\"ES256\"") != NULL &&
	        strstr(hdr, "\"typ\":\"JWT\"") != NULL &&
	        strstr(hdr, kid_claim) != NULL,
	    "header has alg, typ and kid");

	T_CHECK(verify(p, tk->tok, "https://other.example", T0) ==
	            POLICY_ERR_DENIED &&
	        verify(p, tk->tok, "", T0) == POLICY_ERR_DENIED,
	    "wrong audience is denied");
	T_CHECK(verify(p, tk->tok, AUD, T0 + 3600 + 59) == POLICY_OK,
	    "expired within the 60 s skew is accepted");
	T_CHECK(verify(p, tk->tok, AUD, T0 + 3600 + 60) == POLICY_ERR_DENIED &&
	        verify(p, tk->tok, AUD, T0 + 100000) == POLICY_ERR_DENIED,
	    "expired token is denied");
	T_CHECK(verify(p, tk->tok, AUD, T0 - 60) == POLICY_OK,
	    "nbf within the 60 s skew is accepted");
	T_CHECK(verify(p, tk->tok, AUD, T0 - 61) == POLICY_ERR_DENIED,
	    "nbf in the future is denied");
}

static void
tok_crafted_claims(struct tok_ctx *tk)
{
	policy_t *p = tk->p;
	char *c = NULL, *t = NULL, hdr[256];

	/* Crafted tokens, signed by the right key unless said otherwise. */
	snprintf(hdr, sizeof(hdr),
	    "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", tk->kid);
	c = claims_json(ISSUER, AUD, TENANT, OID, T0, T0 + 600);
	t = craft(hdr, c, tk->key, NULL, 0);
	T_CHECK(verify(p, t, AUD, T0) == POLICY_OK,
	    "a crafted token with the right claims and key verifies");
	free(t);
	t = craft(hdr, c, tk->other, NULL, 0);
	T_CHECK(denied(p, t), "a token signed by another key is denied");
	free(t);
	free(c);
	c = claims_json(ISSUER, AUD, "33333333-2222-4333-8444-555555555555",
	    OID, T0, T0 + 600);
	t = craft(hdr, c, tk->key, NULL, 0);
	T_CHECK(denied(p, t), "a token for another tenant is denied");
	free(t);
	free(c);
	c = claims_json("https://evil/" TENANT "/v2.0", AUD, TENANT, OID, T0,
	    T0 + 600);
	t = craft(hdr, c, tk->key, NULL, 0);
	T_CHECK(denied(p, t), "a token from another issuer is denied");
	free(t);
	free(c);
	c = claims_json(ISSUER, AUD, TENANT,
	    "44444444-2222-4333-8444-555555555555", T0, T0 + 600);
	t = craft(hdr, c, tk->key, NULL, 0);
	T_CHECK(denied(p, t), "a token for an unknown principal is denied");
	free(t);
	free(c);
	t = craft(hdr,
	    "{\"iss\":\"" ISSUER "\",\"aud\":\"" AUD "\",\"tid\":\"" TENANT
	    "\",\"oid\":\"" OID "\",\"appid\":\"" APPID
	    "\",\"nbf\":1,"
	    "\"exp\":9999999999,\"oid\":\"" OID "\"}",
	    tk->key, NULL, 0);
	T_CHECK(denied(p, t), "duplicate claims are denied");
	free(t);
	t = craft(hdr,
	    "{\"iss\":\"" ISSUER "\",\"aud\":\"" AUD "\",\"tid\":\"" TENANT
	    "\",\"oid\":\"" OID "\",\"appid\":\"" APPID
	    "\",\"nbf\":\"1\","
	    "\"exp\":9999999999}",
	    tk->key, NULL, 0);
	T_CHECK(denied(p, t), "a string nbf is denied");
	free(t);
	t = craft(hdr, "[1,2]", tk->key, NULL, 0);
	T_CHECK(denied(p, t), "a non-object payload is denied");
	free(t);
}

/* Crafted headers: another kid, another alg, duplicate keys, crit. */
static void
tok_crafted_headers(struct tok_ctx *tk)
{
	policy_t *p = tk->p;
	char *c = NULL, *t = NULL, hdr[256];

	c = claims_json(ISSUER, AUD, TENANT, OID, T0, T0 + 600);
	t = craft("{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"nope\"}", c,
	    tk->key, NULL, 0);
	T_CHECK(denied(p, t), "a token with another kid is denied");
	free(t);
	snprintf(hdr, sizeof(hdr),
	    "{\"alg\":\"none\",\"typ\":\"JWT\",\"kid\":\"%s\"}", tk->kid);
	t = craft(hdr, c, NULL, NULL, 0);
	T_CHECK(denied(p, t), "alg none with an empty signature is denied");
	free(t);
	snprintf(hdr, sizeof(hdr),
	    "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", tk->kid);
	t = craft(hdr, c, NULL, tk->spki, (size_t)tk->spki_len);
	T_CHECK(denied(p, t), "alg HS256 keyed with the public key is denied");
	free(t);
	{
		static const char *algs[] = { "ES384", "HS256", "RS256", "none",
			"es256", "PS256" };
		int all_denied = 1;

		for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
			snprintf(hdr, sizeof(hdr),
			    "{\"alg\":\"%s\","
			    "\"typ\":\"JWT\",\"kid\":\"%s\"}",
			    algs[i], tk->kid);
			t = craft(hdr, c, tk->key, NULL, 0);
			all_denied &= denied(p, t);
			free(t);
		}
		snprintf(hdr, sizeof(hdr), "{\"typ\":\"JWT\",\"kid\":\"%s\"}",
		    tk->kid);
		t = craft(hdr, c, tk->key, NULL, 0);
		all_denied &= denied(p, t);
		free(t);
		T_CHECK(all_denied,
		    "any alg but ES256 is denied even with a "
		    "valid ES256 signature");
	}
	snprintf(hdr, sizeof(hdr),
	    "{\"alg\":\"ES256\",\"alg\":\"ES256\",\"kid\":\"%s\"}", tk->kid);
	t = craft(hdr, c, tk->key, NULL, 0);
	T_CHECK(denied(p, t), "a header with duplicate keys is denied");
	free(t);
	snprintf(hdr, sizeof(hdr),
	    "{\"alg\":\"ES256\",\"kid\":\"%s\",\"crit\":[\"b64\"]}", tk->kid);
	t = craft(hdr, c, tk->key, NULL, 0);
	T_CHECK(denied(p, t), "a header with crit is denied");
	free(t);
	free(c);
}

static void
tok_bad_signatures(struct tok_ctx *tk)
{
	policy_t *p = tk->p;
	char *c = NULL, *t = NULL, *want = NULL;
	uint8_t *raw = NULL;
	size_t raw_len = 0;
	const char *dot;

	/* Bad signatures on the issued token. */
	t = strdup(tk->tok);
	dot = strrchr(t, '.');
	T_CHECK(policy_b64url_decode(dot + 1, strlen(dot + 1), &raw,
	            &raw_len) == 0 &&
	        raw_len == 64,
	    "signature is 64 bytes");
	raw[10] ^= 0x01;
	want = b64s(raw, raw_len);
	memcpy(t + (dot + 1 - t), want, strlen(want));
	T_CHECK(strcmp(t, tk->tok) != 0 && denied(p, t),
	    "a flipped signature byte is denied");
	free(want);
	free(raw);
	free(t);
	t = strdup(tk->tok);
	t[strlen(t) - 1] = '\0';
	T_CHECK(denied(p, t), "a truncated signature is denied");
	free(t);
	t = strdup(tk->tok);
	*strrchr(t, '.') = '\0';
	T_CHECK(denied(p, t), "a token without its signature is denied");
	free(t);
	c = malloc(strlen(tk->tok) + 2);
	snprintf(c, strlen(tk->tok) + 2, "%s.", tk->tok);
	T_CHECK(denied(p, c), "a token with four segments is denied");
	free(c);
	{
		char *big = malloc(20001);

		memset(big, 'A', 20000);
		big[20000] = '\0';
		big[100] = big[200] = '.';
		T_CHECK(denied(p, "") && denied(p, "garbage") &&
		        denied(p, "a.b") && denied(p, "a.b.c") &&
		        denied(p, "..") && denied(p, "...") &&
		        denied(p, "a..c") && denied(p, big) &&
		        verify(p, NULL, AUD, T0) == POLICY_ERR_DENIED,
		    "garbage tokens are denied");
		free(big);
	}
}

static void
tok_revocation(struct tok_ctx *tk)
{
	policy_t *p = tk->p;

	/* Revocation wins over the signature cache. */
	T_CHECK(verify(p, tk->tok, AUD, T0) == POLICY_OK,
	    "token valid before "
	    "removal");
	T_REQUIRE_OK(policy_principal_remove(p, OID));
	T_CHECK(verify(p, tk->tok, AUD, T0) == POLICY_ERR_DENIED,
	    "a removed principal's cached token is denied at once");
	{
		char *h = NULL;
		T_CHECK(policy_secret_hash("s3cret", &h) == 0 &&
		        policy_principal_set(p, OID, APPID, h, 0) == 0 &&
		        verify(p, tk->tok, AUD, T0) == POLICY_OK,
		    "re-added principal's token verifies again");
		free(h);
	}

	{
		struct verify_thread v[4];
		pthread_t th[4];
		int fails = 0;

		for (int i = 0; i < 4; i++) {
			v[i] = (struct verify_thread){ p, tk->tok, i, 0 };
			pthread_create(&th[i], NULL, verify_worker, &v[i]);
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			fails += v[i].fails;
		}
		T_CHECK(fails == 0, "concurrent verify and policy updates");
	}
}

static void
tok_new_key(struct tok_ctx *tk)
{
	policy_t *p = tk->p;
	int64_t expires_in = 0;

	/* A new verify key: tokens signed with the old one stop working,
	 * cache or not. */
	T_CHECK(policy_set_verify_key(p, tk->spki2, (size_t)tk->spki2_len) ==
	            POLICY_OK &&
	        denied(p, tk->tok),
	    "old-key token denied after the "
	    "verify key changes");
	free(tk->tok);
	tk->tok = NULL;
	T_CHECK(policy_token_issue(p, OID, APPID, AUD, T0, es256_sign, tk->key,
	            &tk->tok, &expires_in) == POLICY_ERR_INTERNAL &&
	        tk->tok == NULL,
	    "issue refuses a signer that does not match the verify key");
	T_CHECK(policy_token_issue(p, OID, APPID, AUD, T0, es256_sign,
	            tk->other, &tk->tok, &expires_in) == POLICY_OK &&
	        verify(p, tk->tok, AUD, T0) == POLICY_OK,
	    "issue and verify with the new key");
}

static void
test_tokens(policy_t *p)
{
	struct tok_ctx tk;

	memset(&tk, 0, sizeof(tk));
	tk.p = p;
	tk.key = EVP_EC_gen("P-256");
	tk.other = EVP_EC_gen("P-256");
	tk.p384 = EVP_EC_gen("P-384");
	tk.spki_len = i2d_PUBKEY(tk.key, &tk.spki);
	tk.spki2_len = i2d_PUBKEY(tk.other, &tk.spki2);
	tk.spki384_len = i2d_PUBKEY(tk.p384, &tk.spki384);
	tok_verify_key(&tk);
	tok_issue(&tk);
	tok_crafted_claims(&tk);
	tok_crafted_headers(&tk);
	tok_bad_signatures(&tk);
	tok_revocation(&tk);
	tok_new_key(&tk);

	free(tk.tok);
	free(tk.kid);
	free(tk.x);
	free(tk.y);
	OPENSSL_free(tk.spki);
	OPENSSL_free(tk.spki2);
	OPENSSL_free(tk.spki384);
	EVP_PKEY_free(tk.key);
	EVP_PKEY_free(tk.other);
	EVP_PKEY_free(tk.p384);
}

/* A whole reload (another node's write): the spare tables replace the
 * live ones at once; the spare then holds the old, cleared next time. */
static void
test_tables_swap(void)
{
	const char *a = "33333333-2222-4333-8444-555555555555";
	const char *b = "44444444-2222-4333-8444-555555555555";
	policy_t *live = new_policy(), *spare = new_policy();
	char *h = NULL;
	uint64_t m;

	T_CHECK(policy_secret_hash("s3cret", &h) == 0 &&
	        policy_principal_set(live, a, APPID, h, 0) == POLICY_OK &&
	        policy_access_set(live, a, PERM_GET) == POLICY_OK,
	    "swap: the live tables");
	T_CHECK(policy_principal_set(spare, b,
	            "55555555-2222-4333-8444-555555555555", h,
	            0) == POLICY_OK &&
	        policy_access_set(spare, b, PERM_SIGN) == POLICY_OK,
	    "swap: the spare tables");
	m = policy_mutations(live);
	T_CHECK(policy_access_set(live, a, PERM_GET | PERM_SIGN) == POLICY_OK &&
	        policy_tables_swap(live, spare, m) == POLICY_ERR_CONFLICT &&
	        policy_check_perm(live, a, PERM_SIGN) == POLICY_OK,
	    "swap: refused after a change since the read");
	T_CHECK(policy_tables_swap(live, spare, policy_mutations(live)) ==
	        POLICY_OK,
	    "swap: done");
	T_CHECK(policy_principal_find(live, a) != POLICY_OK &&
	        policy_check_perm(live, a, PERM_GET) != POLICY_OK,
	    "swap: what was removed elsewhere is gone");
	T_CHECK(policy_principal_find(live, b) == POLICY_OK &&
	        policy_check_perm(live, b, PERM_SIGN) == POLICY_OK,
	    "swap: what was read is live");
	policy_tables_clear(spare);
	T_CHECK(policy_principal_find(spare, a) != POLICY_OK &&
	        policy_access_get(spare, a) == 0,
	    "clear: the spare is empty");
	T_CHECK(policy_principal_find(live, b) == POLICY_OK,
	    "clear: the live tables stay");
	free(h);
	policy_free(live);
	policy_free(spare);
}

int
main(void)
{
	policy_t *p;

	test_b64url();
	test_perms();
	test_ids();
	test_secrets();
	p = new_policy();
	test_principals(p);
	test_access(p);
	test_tokens(p);
	policy_free(p);
	test_tables_swap();
	{
		struct policy_config bad = { "", ISSUER, 0 };
		policy_t *q = (policy_t *)1;
		T_CHECK(policy_new(&bad, &q) == POLICY_ERR_ARGS && q == NULL,
		    "policy_new rejects an empty tenant");
	}
	return T_DONE();
}
