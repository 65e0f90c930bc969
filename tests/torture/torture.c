/*
 * tests/torture/torture.c — allocation-failure torture targets (curl's
 * "torture" habit). Each target is a fixed sequence of operations on one
 * unit whose result can be checked. The program first runs it with no
 * failure and counts its allocations K (everything must succeed), then
 * runs it again failing allocation N, for every N in 1..K (full) or a
 * sample (sampled), in the same process, and on past K until a run in
 * which allocation N is not reached (a later run may allocate more than
 * the count run), and checks every run:
 *   - no crash and no sanitizer report (ASan+UBSan build; a report aborts);
 *   - no leak: LeakSanitizer's recoverable check after each run;
 *   - no wrong success: an operation either fails with an error, or
 *     succeeds with a result that is checked in full; a failure without
 *     an injected allocation failure is wrong too.
 * Usage: torture TARGET full|sampled|count   (P11VAULT_TORTURE_FAIL=N runs
 * only N). Prints "torture-result TARGET K RUNS" or "torture-bad ..."
 * lines; tests/torture/run.sh turns them into ok/not ok lines.
 *
 * Test code only: never linked into the product.
 */
#include <sanitizer/lsan_interface.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "api/api.h"
#include "api/keys.h"
#include "hsm/base.h"
#include "hsm/buf.h"
#include "hsm/hsm_int.h"
#include "hsm/proto.h"
#include "hsm/token.h"
#include "policy/policy.h"
#include "tests/torture/alloc.h"
#include "tests/unit/es256.h"
#include "tests/unit/softhsm_setup.h"
#include "vault/store.h"

#define SAMPLE_FIRST 50 /* sampled: N = 1..50, then every k-th */
#define SAMPLE_RUNS 60  /* ... about this many more */

static char tdir[64];
static const char *cur_target;
static uint64_t cur_n;

/* A wrong result: reported with the N that caused it. */
#define BAD(what) \
	do { \
		printf("torture-bad %s N=%llu: %s (line %d)\n", cur_target, \
		    (unsigned long long)cur_n, (what), __LINE__); \
		fflush(stdout); \
		return 1; \
	} while (0)
/* An operation that failed: fine only if an allocation failed. */
#define FAILED(what) \
	do { \
		if (!torture_injected()) \
			BAD("failed with no allocation failure: " what); \
		return 0; \
	} while (0)

/* ---- hsm/base + hsm/buf -------------------------------------------------- */

static int
t_base(void)
{
	char path[128], out[64];
	buf_t *b = NULL, *f = NULL;
	uint64_t v = 0;
	char *s;
	size_t len = 0;
	int r;

	if (str_fmt(path, sizeof(path), "%s/base.txt", tdir) != 0 ||
	    parse_u64("12345", 99999, &v) != 0 || v != 12345)
		BAD("str_fmt/parse_u64");
	if ((b = buf_new(1 << 20)) == NULL)
		FAILED("buf_new");
	for (int i = 0; i < 200; i++) {
		if ((r = buf_putf(b, "line %d\n", i)) != 0) {
			buf_free(b);
			if (r != HSM_ERR_NO_MEMORY)
				BAD("buf_putf: not HSM_ERR_NO_MEMORY");
			FAILED("buf_putf");
		}
	}
	if (buf_put_u32(b, 0x41424344) != 0 || buf_put_lp(b, "xy", 2) != 0) {
		buf_free(b);
		FAILED("buf_put");
	}
	size_t want = 0;
	for (int i = 0; i < 200; i++)
		want += (size_t)snprintf(out, sizeof(out), "line %d\n", i);
	len = buf_len(b);
	if (len != want + 4 + 6 || memcmp(buf_ptr(b) + want, "ABCD", 4) != 0)
		BAD("buf contents");
	s = buf_steal(b, &len);
	if (s == NULL || len != want + 10)
		BAD("buf_steal");
	FILE *fp = fopen(path, "w");
	if (fp == NULL || fwrite(s, 1, len, fp) != len || fclose(fp) != 0)
		BAD("write the test file");
	r = file_read(path, 1 << 20, &f);
	if (r != 0) {
		freezero(s, len + 1);
		if (f != NULL)
			BAD("file_read failed but set *out");
		FAILED("file_read");
	}
	if (buf_len(f) != len || memcmp(buf_ptr(f), s, len) != 0)
		BAD("file_read contents");
	freezero(s, len + 1);
	buf_free(f);
	if (str_fmt(out, sizeof(out), "%s", "ok") != 0)
		BAD("str_fmt");
	return 0;
}

/* ---- policy: secrets, principals, access, tokens ------------------------- */

static EVP_PKEY *jwt_key;
static uint8_t *jwt_spki;
static size_t jwt_spki_len;

#define TENANT "72f988bf-86f1-41af-91ab-2d7cd011db47"
#define ISSUER "https://vault.local/" TENANT "/v2.0"
#define AUD "https://vault.azure.net"
#define OID "11111111-2222-4333-8444-555555555555"
#define APPID "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
#define OID2 "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff"
#define T0 ((int64_t)1700000000)

static int
policy_checks(policy_t *p, const char *hash)
{
	struct policy_caller c;
	char oid[POLICY_ID_LEN + 1], *jwt = NULL, *kid = NULL, *x = NULL,
	                             *y = NULL;
	int64_t exp_in = 0;
	int adm = 0, r;

	if (policy_principal_set(p, OID, APPID, hash, 1) != 0 ||
	    policy_principal_set(p, OID2, OID2, hash, 0) != 0)
		FAILED("principal_set");
	if (policy_access_set(p, OID, PERM_GET | PERM_SIGN) != 0 ||
	    policy_access_set(p, OID2, PERM_ALL) != 0)
		FAILED("access_set");
	if (policy_check_perm(p, OID, PERM_SIGN) != 0 ||
	    policy_check_perm(p, OID, PERM_DELETE) != POLICY_ERR_DENIED ||
	    policy_access_get(p, OID2) != PERM_ALL ||
	    policy_check_admin(p, OID) != 0 || policy_check_admin(p, OID2) == 0)
		BAD("access decisions");
	r = policy_authenticate(p, APPID, "the-secret", oid, &adm);
	if (r == POLICY_ERR_NO_MEMORY)
		FAILED("authenticate");
	if (r != 0 || strcmp(oid, OID) != 0 || adm != 1)
		BAD("authenticate");
	if (policy_authenticate(p, APPID, "wrong", oid, &adm) == 0)
		BAD("authenticate with a wrong secret");
	if (policy_set_verify_key(p, jwt_spki, jwt_spki_len) != 0)
		FAILED("set_verify_key");
	r = policy_jwk(p, &kid, &x, &y);
	if (r != 0) {
		if (kid || x || y)
			BAD("policy_jwk failed but left outputs");
		FAILED("jwk");
	}
	int jwk_ok = strlen(x) == 43 && strlen(y) == 43 && kid[0] != '\0';
	free(kid);
	free(x);
	free(y);
	if (!jwk_ok)
		BAD("policy_jwk");
	r = policy_token_issue(p, OID, APPID, AUD, T0, es256_sign, jwt_key,
	    &jwt, &exp_in);
	if (r != 0) {
		if (jwt != NULL)
			BAD("token_issue failed but set *jwt");
		FAILED("token_issue");
	}
	memset(&c, 0, sizeof(c));
	r = policy_token_verify(p, jwt, AUD, T0 + 10, &c);
	free(jwt);
	/* a good token refused for want of memory is refused, not accepted:
	 * verify fails closed (POLICY_ERR_DENIED, a 401), which is allowed
	 * under an injected failure; a wrong success never is */
	if (r != 0)
		FAILED("token_verify");
	if (strcmp(c.oid, OID) != 0 || strcmp(c.appid, APPID) != 0 ||
	    strcmp(c.tid, TENANT) != 0 || exp_in <= 0)
		BAD("token_verify of a good token");
	if (policy_principal_remove(p, OID2) != 0 ||
	    policy_access_remove(p, OID2) != 0)
		FAILED("remove");
	if (policy_principal_find(p, OID2) != POLICY_ERR_NOT_FOUND ||
	    policy_access_get(p, OID2) != 0)
		BAD("remove left the principal");
	return 0;
}

static char *policy_hash; /* hashed once (scrypt is slow) */

/* The stored form of a secret as policy_secret_hash makes it, but with
 * scrypt's N = 16 instead of 16384: verification reads N from the hash,
 * so each of the target's ~100 runs checks a secret in microseconds
 * rather than ~150 ms under ASan (the secret target keeps the real cost). */
static int
cheap_hash(const char *secret, char **out)
{
	uint8_t salt[16], dk[32];
	char *salt_s = NULL, *dk_s = NULL, buf[256];
	int r = -1;

	if (RAND_bytes(salt, sizeof(salt)) != 1 ||
	    EVP_PBE_scrypt(secret, strlen(secret), salt, sizeof(salt), 16, 8, 1,
	        0, dk, sizeof(dk)) != 1 ||
	    policy_b64url_encode(salt, sizeof(salt), &salt_s) != 0 ||
	    policy_b64url_encode(dk, sizeof(dk), &dk_s) != 0)
		goto out;
	if (snprintf(buf, sizeof(buf), "scrypt$16$8$1$%s$%s", salt_s, dk_s) <
	        (int)sizeof(buf) &&
	    (*out = strdup(buf)) != NULL)
		r = 0;
out:
	free(salt_s);
	free(dk_s);
	return r;
}

static int
t_policy(void)
{
	struct policy_config pc = { TENANT, ISSUER, 0 };
	policy_t *p = NULL;
	uint8_t *raw = NULL;
	char *enc = NULL;
	size_t n = 0;
	int r;

	if (policy_b64url_encode((const uint8_t *)"foobar", 6, &enc) != 0)
		FAILED("b64url_encode");
	r = strcmp(enc, "Zm9vYmFy");
	free(enc);
	if (r != 0)
		BAD("b64url_encode");
	if (policy_b64url_decode("Zm9vYmFy", 8, &raw, &n) != 0)
		FAILED("b64url_decode");
	r = n != 6 || memcmp(raw, "foobar", 6) != 0;
	free(raw);
	if (r)
		BAD("b64url_decode");
	if (policy_new(&pc, &p) != 0) {
		if (p != NULL)
			BAD("policy_new failed but set *out");
		FAILED("policy_new");
	}
	r = policy_checks(p, policy_hash);
	policy_free(p);
	return r;
}

/* The secret hash on its own: scrypt costs ~50 ms a run, so the target
 * is small (its allocations are few). */
static int
t_secret(void)
{
	char *h = NULL;
	int r;

	if ((r = policy_secret_hash("s3cret", &h)) != 0) {
		if (h != NULL)
			BAD("secret_hash failed but set *hash");
		FAILED("secret_hash");
	}
	r = policy_secret_verify(h, "s3cret");
	int wrong = policy_secret_verify(h, "other");
	free(h);
	if (r == POLICY_ERR_NO_MEMORY || wrong == POLICY_ERR_NO_MEMORY)
		FAILED("secret_verify");
	if (r != 0 || wrong == 0)
		BAD("secret_verify");
	return 0;
}

/* ---- vault/store on a temp SQLite file ----------------------------------- */

#include "tests/unit/store_fixture.h"

static int
store_checks(store_t *s)
{
	static const uint8_t blob[4] = { 9, 8, 7, 6 };
	struct vlt_key_info k, got, *items = NULL;
	uint8_t *b = NULL;
	size_t n = 0, bl = 0;
	int64_t last = 0;
	int more = 0, r, ok;

	fill_version(&k, "k1", 'a');
	if (store_version_insert(s, &k, blob, sizeof(blob)) != 0)
		FAILED("version_insert");
	fill_version(&k, "k2", 'b');
	if (store_version_insert(s, &k, blob, sizeof(blob)) != 0)
		FAILED("version_insert 2");
	memset(&got, 0, sizeof(got));
	r = store_version_get(s, "k1", NULL, 0, &got, &b, &bl);
	if (r != 0) {
		vlt_key_info_clear(&got);
		FAILED("version_get");
	}
	ok = bl == sizeof(blob) && memcmp(b, blob, bl) == 0 &&
	    strcmp(got.name, "k1") == 0 && got.spki_len == 8 &&
	    got.key_ops == (VLT_OP_SIGN | VLT_OP_VERIFY);
	vlt_key_info_clear(&got);
	free(b);
	if (!ok)
		BAD("version_get result");
	if (store_key_list(s, 0, NULL, 25, &items, &n, &more) != 0)
		FAILED("key_list");
	ok = n == 2 && more == 0 && strcmp(items[0].name, "k1") == 0 &&
	    strcmp(items[1].name, "k2") == 0;
	vlt_key_info_free_array(items, n);
	if (!ok)
		BAD("key_list result");
	items = NULL;
	n = 0;
	if (store_version_list(s, "k2", 0, 25, &items, &n, &last, &more) != 0)
		FAILED("version_list");
	ok = n == 1 && more == 0 && items[0].version[0] == 'b';
	vlt_key_info_free_array(items, n);
	if (!ok)
		BAD("version_list result");
	return 0;
}

static int
t_store(void)
{
	struct vlt_settings set = { 90, 0 };
	char path[128];
	store_t *s = NULL;
	int r;

	if (str_fmt(path, sizeof(path), "%s/vault.db", tdir) != 0)
		BAD("str_fmt");
	unlink(path);
	char wal[140];
	if (str_fmt(wal, sizeof(wal), "%s-wal", path) != 0)
		BAD("str_fmt");
	unlink(wal);
	if ((r = store_open(path, 1, &s)) != 0) {
		if (s != NULL)
			BAD("store_open failed but set *out");
		FAILED("store_open");
	}
	if (store_settings_init(s, &set) != 0) {
		store_close(s);
		FAILED("settings_init");
	}
	r = store_checks(s);
	store_close(s);
	return r;
}

/* ---- api: JSON bodies through the product's parsers ---------------------- */

static int
json_checks(json_t *j, struct api_resp *rs)
{
	struct keys_attrs a;
	unsigned ops = 0;
	int has = 0;
	char *tags = NULL;
	uint8_t *val = NULL;
	size_t vl = 0;
	const char *alg = NULL;
	int64_t secs = 0;

	if (keys_parse_attrs(j, &a, rs) != 0)
		FAILED("parse_attrs");
	if (!a.has_enabled || a.enabled != 0 || !a.has_exp ||
	    a.exp != 2000000000)
		BAD("parse_attrs result");
	if (keys_parse_ops(json_object_get(j, "key_ops"), &ops, &has, rs) != 0)
		FAILED("parse_ops");
	if (!has || ops != (VLT_OP_SIGN | VLT_OP_VERIFY))
		BAD("parse_ops result");
	if (keys_parse_tags(j, &tags, rs) != 0) {
		if (tags != NULL)
			BAD("parse_tags failed but set *tags");
		FAILED("parse_tags");
	}
	int ok = tags != NULL && strcmp(tags, "{\"a\":\"1\",\"b\":\"2\"}") == 0;
	free(tags);
	if (!ok)
		BAD("parse_tags result");
	if (api_field_string(j, "alg", 1, &alg, rs) != 0 ||
	    strcmp(alg, "ES256") != 0)
		BAD("field_string");
	if (api_field_b64(j, "value", 1024, 1, &val, &vl, rs) != 0) {
		if (val != NULL)
			BAD("field_b64 failed but set *out");
		FAILED("field_b64");
	}
	ok = vl == 6 && memcmp(val, "foobar", 6) == 0;
	free(val);
	if (!ok)
		BAD("field_b64 result");
	if (api_duration_secs("P1Y2M3DT4H5M6S", &secs) != 0 ||
	    secs !=
	        365 * 86400LL + 60 * 86400LL + 3 * 86400LL + 4 * 3600 + 5 * 60 +
	            6)
		BAD("duration");
	return 0;
}

static int
t_json(void)
{
	static const char body[] =
	    "{\"alg\":\"ES256\",\"value\":\"Zm9vYmFy\","
	    "\"key_ops\":[\"sign\",\"Verify\"],"
	    "\"attributes\":{\"enabled\":false,\"exp\":2000000000},"
	    "\"tags\":{\"b\":\"2\",\"a\":\"1\"}}";
	struct api_req q;
	struct api_resp rs;
	json_t *j = NULL, *out = NULL;
	char *dump;
	int r;

	memset(&q, 0, sizeof(q));
	memset(&rs, 0, sizeof(rs));
	q.body = (const uint8_t *)body;
	q.body_len = sizeof(body) - 1;
	r = api_body_object(&q, &rs, &j);
	if (r != 0) {
		/* Jansson says "not valid JSON" when it runs out of memory */
		free(rs.body);
		if (j != NULL)
			BAD("body_object failed but set *out");
		FAILED("body_object");
	}
	r = json_checks(j, &rs);
	json_decref(j);
	free(rs.body);
	if (r != 0 || rs.status != 0)
		return r;
	/* and a response body as the handlers build one */
	if ((out = keys_ops_json(VLT_OP_SIGN | VLT_OP_ENCRYPT)) == NULL)
		FAILED("ops_json");
	dump = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	if (dump == NULL)
		FAILED("json_dumps");
	r = strcmp(dump, "[\"encrypt\",\"sign\"]") != 0 &&
	    strcmp(dump, "[\"sign\",\"encrypt\"]") != 0;
	free(dump);
	if (r)
		BAD("ops_json result");
	return 0;
}

/* ---- the token process's op table (hsm/tokend.c) ---------------------- */

/*
 * The token process's request handlers, in this process: a real token
 * (SoftHSMv2, opened with tok_open) served on a socketpair by
 * tokd_serve_one, the body of the token process's channel threads (read
 * the request, run its handler from the op table, answer). The driver's
 * own half (building, sending, reading the answer, checking it) is not
 * counted, so allocation N lands in the token process's code. Every run:
 * the channel must never hang up (in the token process a hang-up costs
 * a restart, 503s meanwhile), every answer must be this request's, a
 * failed op must be a clean error (HSM_ERR_NO_MEMORY, else a note), a
 * succeeded one is checked in full, and after a failed op the same op
 * again and every later one succeed: the process keeps serving.
 */
#define TP_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define TP_LABEL "p11vault-torture"
#define TP_SO_PIN "torture-so-1234"
#define TP_USER_PIN "torture-user-1234"

struct tp_key {
	uint8_t *blob, *spki;
	size_t blob_len, spki_len;
};

static tok_t *tp_tok;
static int tp_sv[2] = { -1, -1 };
static uint32_t tp_id;
static struct tp_key tp_ec, tp_rsa;
static EVP_PKEY *tp_imp; /* imported as plaintext PKCS#8 and by BYOK */
static uint8_t *tp_pkcs8, *tp_transfer, *tp_audit_spki, *tp_sealed;
static size_t tp_pkcs8_len, tp_transfer_len, tp_audit_spki_len, tp_sealed_len;
static const uint8_t tp_data[48] =
    "the torture's plaintext, 48 bytes long......";

/* Request b (built, paused) through the op table: the answer in *a. 0
 * when answered (a->status says how), 1 (reported) when not. */
static int
tp_call(struct tokp_buf *b, struct tokp_msg *a)
{
	uint32_t id = ++tp_id;
	uint8_t op;
	int r;

	memset(a, 0, sizeof(*a));
	if (b->err) {
		tokp_buf_clear(b);
		BAD("building a request (not armed)");
	}
	op = b->p[1];
	b->p[4] = (uint8_t)(id >> 24);
	b->p[5] = (uint8_t)(id >> 16);
	b->p[6] = (uint8_t)(id >> 8);
	b->p[7] = (uint8_t)id;
	r = tokp_send(tp_sv[0], b, NULL, 0);
	tokp_buf_clear(b);
	if (r != 0)
		BAD("sending a request");
	torture_resume();
	r = tokd_serve_one(tp_tok, tp_sv[1]);
	torture_pause();
	if (r != 0)
		BAD("the token process hung up the channel");
	r = tokp_recv(tp_sv[0], 10000, 1, a, NULL, NULL);
	if (r != 0 || a->op != op || a->id != id) {
		tokp_msg_clear(a);
		BAD("no answer to this request (the channel is out of step)");
	}
	if (a->status == HSM_OK)
		return 0;
	if (!torture_injected()) {
		tokp_msg_clear(a);
		BAD("an op failed with no allocation failure");
	}
	if (a->status != HSM_ERR_NO_MEMORY) {
		printf(
		    "torture-note %s N=%llu: op %u answered %d on an "
		    "allocation failure\n",
		    cur_target, (unsigned long long)cur_n, op, a->status);
		fflush(stdout);
	}
	return 0;
}

/* 1 when sig (r||s) is an ES256 signature of the digest by spki. */
static int
tp_es256_ok(const uint8_t *spki, size_t spki_len, const uint8_t dg[32],
    const uint8_t *sig, size_t sig_len)
{
	const unsigned char *p = spki;
	EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)spki_len);
	EVP_PKEY_CTX *c = pk ? EVP_PKEY_CTX_new(pk, NULL) : NULL;
	ECDSA_SIG *es = ECDSA_SIG_new();
	unsigned char *der = NULL;
	int n = -1, ok = 0;

	if (c != NULL && es != NULL && sig_len == 64 &&
	    ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL),
	        BN_bin2bn(sig + 32, 32, NULL)) == 1)
		n = i2d_ECDSA_SIG(es, &der);
	ok = n > 0 && EVP_PKEY_verify_init(c) == 1 &&
	    EVP_PKEY_verify(c, der, (size_t)n, dg, 32) == 1;
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(pk);
	return ok;
}

/* The outcome of one op: 0 succeeded and checked, 1 wrong (reported),
 * 2 failed cleanly. */
#define TP_DONE(a) \
	do { \
		int st_ = (a)->status; \
		tokp_msg_clear(a); \
		return st_ == HSM_OK ? 0 : 2; \
	} while (0)
#define TP_WRONG(a, what) \
	do { \
		tokp_msg_clear(a); \
		BAD(what); \
	} while (0)

static int
tp_sign_with(const char *id, const struct tp_key *k)
{
	struct tokp_buf b;
	struct tokp_msg a;
	uint8_t dg[32];

	memset(dg, 0x17, sizeof(dg));
	tokp_begin(&b, TOKP_SIGN, 0, 0);
	tokp_put_str(&b, id);
	tokp_put(&b, k->blob, k->blob_len);
	tokp_put_u32(&b, HSM_ALG_ES256);
	tokp_put(&b, dg, sizeof(dg));
	tokp_put_u32(&b, 132);
	if (tp_call(&b, &a) != 0)
		return 1;
	if (a.status == HSM_OK &&
	    !tp_es256_ok(k->spki, k->spki_len, dg, a.f[0].p, a.f[0].len))
		TP_WRONG(&a, "sign: not a good signature");
	TP_DONE(&a);
}

static int
tp_sign(void)
{
	return tp_sign_with("tp-ec", &tp_ec);
}

/* A fresh EC key; its blob must sign (checked outside the op table). */
static int
tp_generate(void)
{
	struct tokp_buf b;
	struct tokp_msg a;
	struct tp_key k;
	uint8_t dg[32], sig[132];
	size_t sl = sizeof(sig);
	int ok;

	tokp_begin(&b, TOKP_GENERATE, 0, 0);
	tokp_put_str(&b, "tp-gen");
	tokp_put_u32(&b, HSM_KTY_EC);
	tokp_put_u32(&b, 0);
	tokp_put_u32(&b, NID_X9_62_prime256v1);
	if (tp_call(&b, &a) != 0)
		return 1;
	if (a.status != HSM_OK)
		TP_DONE(&a);
	k.blob = (uint8_t *)a.f[0].p;
	k.blob_len = a.f[0].len;
	k.spki = (uint8_t *)a.f[1].p;
	k.spki_len = a.f[1].len;
	memset(dg, 0x42, sizeof(dg));
	ok = tok_key_sign(tp_tok, "tp-gen", k.blob, k.blob_len, HSM_ALG_ES256,
	         dg, sizeof(dg), sig, &sl) == HSM_OK &&
	    tp_es256_ok(k.spki, k.spki_len, dg, sig, sl);
	tok_key_forget(tp_tok, "tp-gen");
	if (!ok)
		TP_WRONG(&a, "generate: the new key does not sign");
	TP_DONE(&a);
}

/* unwrapKey's half in the token: RSA-OAEP decrypt of a 32-byte key */
static int
tp_decrypt(void)
{
	const unsigned char *p = tp_rsa.spki;
	EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)tp_rsa.spki_len);
	EVP_PKEY_CTX *c = pk ? EVP_PKEY_CTX_new(pk, NULL) : NULL;
	uint8_t key[32], ct[512];
	size_t cl = sizeof(ct);
	struct tokp_buf b;
	struct tokp_msg a;
	int ok;

	memset(key, 0x5c, sizeof(key));
	ok = c != NULL && EVP_PKEY_encrypt_init(c) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) == 1 &&
	    EVP_PKEY_encrypt(c, ct, &cl, key, sizeof(key)) == 1;
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(pk);
	if (!ok)
		BAD("RSA-OAEP encrypt in OpenSSL");
	tokp_begin(&b, TOKP_DECRYPT, 0, 0);
	tokp_put_str(&b, "tp-rsa");
	tokp_put(&b, tp_rsa.blob, tp_rsa.blob_len);
	tokp_put_u32(&b, HSM_ALG_RSA_OAEP);
	tokp_put(&b, ct, cl);
	tokp_put_u32(&b, 512);
	if (tp_call(&b, &a) != 0)
		return 1;
	if (a.status == HSM_OK &&
	    (a.f[0].len != sizeof(key) || memcmp(a.f[0].p, key, 32) != 0))
		TP_WRONG(&a, "decrypt: not the plaintext");
	TP_DONE(&a);
}

/* An import's answer: kty, bits, nid, blob, spki of tp_imp. */
static int
tp_import_check(struct tokp_msg *a, const char *what)
{
	unsigned char *d = NULL;
	uint32_t kty = 0, nid = 0;
	int n, ok;

	if (a->status != HSM_OK)
		TP_DONE(a);
	n = i2d_PUBKEY(tp_imp, &d);
	ok = n > 0 && tokp_u32(&a->f[0], &kty) == 0 &&
	    tokp_u32(&a->f[2], &nid) == 0 && kty == HSM_KTY_EC &&
	    nid == NID_X9_62_prime256v1 && a->f[3].len > 0 &&
	    a->f[4].len == (uint32_t)n && memcmp(a->f[4].p, d, (size_t)n) == 0;
	OPENSSL_free(d);
	if (!ok)
		TP_WRONG(a, what);
	TP_DONE(a);
}

static int
tp_import(void)
{
	struct tokp_buf b;
	struct tokp_msg a;

	tokp_begin(&b, TOKP_IMPORT, 0, 0);
	tokp_put_str(&b, "tp-imp");
	tokp_put(&b, tp_pkcs8, tp_pkcs8_len);
	if (tp_call(&b, &a) != 0)
		return 1;
	return tp_import_check(&a, "import: not the key given");
}

static int
tp_byok(void)
{
	struct tokp_buf b;
	struct tokp_msg a;

	tokp_begin(&b, TOKP_IMPORT_BYOK, 0, 0);
	tokp_put_str(&b, "tp-byok");
	tokp_put_str(&b, "tp-rsa");
	tokp_put(&b, tp_rsa.blob, tp_rsa.blob_len);
	tokp_put(&b, tp_transfer, tp_transfer_len);
	if (tp_call(&b, &a) != 0)
		return 1;
	return tp_import_check(&a, "BYOK import: not the key transferred");
}

/* seal then unseal (a backup's envelope) */
static int
tp_seal(void)
{
	struct tokp_buf b;
	struct tokp_msg a;

	tokp_begin(&b, TOKP_SEAL, 0, 0);
	tokp_put(&b, tp_data, sizeof(tp_data));
	if (tp_call(&b, &a) != 0)
		return 1;
	if (a.status == HSM_OK) {
		free(tp_sealed);
		tp_sealed_len = a.f[0].len;
		if ((tp_sealed = malloc(tp_sealed_len)) == NULL)
			TP_WRONG(&a, "malloc (not armed)");
		memcpy(tp_sealed, a.f[0].p, tp_sealed_len);
	}
	TP_DONE(&a);
}

static int
tp_unseal(void)
{
	struct tokp_buf b;
	struct tokp_msg a;

	tokp_begin(&b, TOKP_UNSEAL, 0, 0);
	tokp_put(&b, tp_sealed, tp_sealed_len);
	if (tp_call(&b, &a) != 0)
		return 1;
	if (a.status == HSM_OK &&
	    (a.f[0].len != sizeof(tp_data) ||
	        memcmp(a.f[0].p, tp_data, 48) != 0))
		TP_WRONG(&a, "unseal: not the plaintext sealed");
	TP_DONE(&a);
}

static int
tp_audit(void)
{
	struct tokp_buf b;
	struct tokp_msg a;
	uint8_t dg[32];

	tokp_begin(&b, TOKP_AUDIT_SIGN, 0, 0);
	tokp_put(&b, tp_data, sizeof(tp_data));
	if (tp_call(&b, &a) != 0)
		return 1;
	SHA256(tp_data, sizeof(tp_data), dg);
	if (a.status == HSM_OK &&
	    !tp_es256_ok(tp_audit_spki, tp_audit_spki_len, dg, a.f[0].p,
	        a.f[0].len))
		TP_WRONG(&a, "audit sign: not a good signature");
	TP_DONE(&a);
}

static int
tp_forget(void)
{
	struct tokp_buf b;
	struct tokp_msg a;

	tokp_begin(&b, TOKP_FORGET, 0, 0);
	tokp_put_str(&b, "tp-ec");
	if (tp_call(&b, &a) != 0)
		return 1;
	TP_DONE(&a);
}

static int
t_tokp(void)
{
	static int (*const seq[])(void) = { tp_generate, tp_sign, tp_decrypt,
		tp_import, tp_byok, tp_seal, tp_unseal, tp_audit, tp_sign,
		tp_forget };
	int r = 0, failed = 0;

	torture_pause();
	/* every run starts cold: the handles are unwrapped again */
	tok_key_forget(tp_tok, "tp-ec");
	tok_key_forget(tp_tok, "tp-rsa");
	for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]) && r != 1; i++) {
		r = seq[i]();
		if (r == 2 && failed)
			BAD("a second op failed after the injected failure");
		if (r == 2) {
			failed = 1;
			if ((r = seq[i]()) == 2) {
				printf(
				    "torture-bad %s N=%llu: op %zu failed "
				    "again after the failed one (the "
				    "token process stopped serving)\n",
				    cur_target, (unsigned long long)cur_n, i);
				fflush(stdout);
				r = 1;
			}
		}
	}
	torture_resume();
	return r == 1;
}

/* The BYOK transfer of tp_imp under the KEK tp_rsa, as Azure's tooling
 * makes it: RSA-OAEP(SHA-1) of an AES-256 key, then the PKCS#8 wrapped
 * with that key (RFC 5649). */
static int
tp_transfer_make(void)
{
	const unsigned char *p = tp_rsa.spki;
	EVP_PKEY *kek = d2i_PUBKEY(NULL, &p, (long)tp_rsa.spki_len);
	EVP_PKEY_CTX *c = kek ? EVP_PKEY_CTX_new(kek, NULL) : NULL;
	EVP_CIPHER_CTX *cc = EVP_CIPHER_CTX_new();
	uint8_t aes[32];
	size_t rl = 0;
	int l1 = 0, l2 = 0, ok;

	ok = c != NULL && cc != NULL && RAND_bytes(aes, 32) == 1 &&
	    EVP_PKEY_encrypt_init(c) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha1()) == 1 &&
	    EVP_PKEY_encrypt(c, NULL, &rl, aes, 32) == 1 &&
	    (tp_transfer = malloc(rl + tp_pkcs8_len + 16)) != NULL &&
	    EVP_PKEY_encrypt(c, tp_transfer, &rl, aes, 32) == 1;
	if (ok) {
		EVP_CIPHER_CTX_set_flags(cc, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
		ok = EVP_EncryptInit_ex(cc, EVP_aes_256_wrap_pad(), NULL, aes,
		         NULL) == 1 &&
		    EVP_EncryptUpdate(cc, tp_transfer + rl, &l1, tp_pkcs8,
		        (int)tp_pkcs8_len) == 1 &&
		    EVP_EncryptFinal_ex(cc, tp_transfer + rl + l1, &l2) == 1;
	}
	tp_transfer_len = rl + (size_t)l1 + (size_t)l2;
	EVP_CIPHER_CTX_free(cc);
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(kek);
	return ok ? 0 : -1;
}

/* The token, its keys and the inputs, made once and unarmed. */
static int
tp_setup(void)
{
	struct tok_config cfg = { TP_MODULE, TP_LABEL, TP_USER_PIN, 2, 16 };
	char dir[96];
	EVP_PKEY_CTX *kc;
	PKCS8_PRIV_KEY_INFO *p8;
	unsigned char *d = NULL;
	int n;

	if (str_fmt(dir, sizeof(dir), "%s/hsm-XXXXXX", tdir) != 0 ||
	    softhsm_setup(dir) != 0 ||
	    tok_token_init(TP_MODULE, TP_LABEL, TP_SO_PIN, TP_USER_PIN) != 0 ||
	    tok_open(&cfg, &tp_tok) != 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, tp_sv) != 0)
		return -1;
	if (tok_key_generate(tp_tok, "tp-ec", HSM_KTY_EC, 0,
	        NID_X9_62_prime256v1, &tp_ec.blob, &tp_ec.blob_len, &tp_ec.spki,
	        &tp_ec.spki_len) != 0 ||
	    tok_key_generate(tp_tok, "tp-rsa", HSM_KTY_RSA, 2048, 0,
	        &tp_rsa.blob, &tp_rsa.blob_len, &tp_rsa.spki,
	        &tp_rsa.spki_len) != 0 ||
	    tok_audit_public(tp_tok, &tp_audit_spki, &tp_audit_spki_len) != 0)
		return -1;
	/* the backup key exists before the first run */
	uint8_t *sealed = NULL;
	size_t sl = 0;
	if (tok_seal(tp_tok, tp_data, sizeof(tp_data), &sealed, &sl) != 0)
		return -1;
	free(sealed);
	kc = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
	if (kc == NULL || EVP_PKEY_keygen_init(kc) != 1 ||
	    EVP_PKEY_CTX_set_ec_paramgen_curve_nid(kc, NID_X9_62_prime256v1) !=
	        1 ||
	    EVP_PKEY_keygen(kc, &tp_imp) != 1)
		return -1;
	EVP_PKEY_CTX_free(kc);
	if ((p8 = EVP_PKEY2PKCS8(tp_imp)) == NULL ||
	    (n = i2d_PKCS8_PRIV_KEY_INFO(p8, &d)) <= 0)
		return -1;
	PKCS8_PRIV_KEY_INFO_free(p8);
	tp_pkcs8 = d;
	tp_pkcs8_len = (size_t)n;
	return tp_transfer_make();
}

/* ---- requests through api_route on a real vault (SoftHSM) ----------------- */

#include "tests/fuzz/fuzz_env.h"

/* One request as http.c makes it; 0 when the answer is right for an
 * allocation failure or none, 1 (reported) when not. want: a text the
 * 2xx body must hold. */
static int
req(const char *method, const char *path, const char *max, const char *body,
    unsigned ok_status, const char *want)
{
	struct api_req q;
	struct api_resp r;

	memset(&q, 0, sizeof(q));
	memset(&r, 0, sizeof(r));
	q.ctx = &fz_ctx;
	q.method = method;
	q.path = path;
	q.api_version = "7.4";
	q.maxresults = max;
	q.authorization = fz_token;
	q.body = (const uint8_t *)body;
	q.body_len = body ? strlen(body) : 0;
	policy_uuid(q.request_id);
	snprintf(q.client_addr, sizeof(q.client_addr), "127.0.0.1");
	torture_resume();
	api_route(&q, &r);
	torture_pause();
	int good = r.status == ok_status && r.body != NULL &&
	    strstr(r.body, want) != NULL;
	int st = (int)r.status;
	if (getenv("TORTURE_DEBUG"))
		fprintf(stderr, "N=%llu %s %s -> %u %.*s\n",
		    (unsigned long long)cur_n, method, path, r.status,
		    (int)(r.body_len > 200 ? 200 : r.body_len),
		    r.body ? r.body : "");
	if (r.body)
		OPENSSL_clear_free(r.body, r.body_len);
	if (good)
		return 0;
	if (!torture_injected())
		BAD("a request failed with no allocation failure");
	if (st >= 200 && st < 300)
		BAD("2xx with a wrong body");
	if (st < 500) {
		printf(
		    "torture-note %s N=%llu: %s %s answered %d on an "
		    "allocation failure\n",
		    cur_target, (unsigned long long)cur_n, method, path, st);
		fflush(stdout);
	}
	return 2; /* failed cleanly: stop the sequence */
}

struct rq {
	const char *method, *path, *max, *body;
	unsigned status;
	const char *want;
};

/* The request set, in order. After a request failed cleanly on the
 * injected failure (nothing more can fail in this run), the same request
 * again and every later one must succeed in full: one allocation failure
 * costs one request, never the vault's state or its token channel. */
static int
t_requests(void)
{
	static const char sign[] =
	    "{\"alg\":\"ES256\",\"value\":"
	    "\"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU\"}";
	char path[64];
	int r = 0, failed = 0;

	snprintf(path, sizeof(path), "/keys/t%llu/create",
	    (unsigned long long)cur_n);
	const struct rq set[] = {
		{ "GET", "/keys/e1", NULL, NULL, 200, "\"kid\"" },
		{ "POST", "/keys/e1/sign", NULL, sign, 200, "\"value\"" },
		{ "GET", "/keys", "5", NULL, 200, "\"value\"" },
		{ "POST", path, NULL,
		    "{\"kty\":\"EC\",\"crv\":\"P-256\",\"tags\":{\"a\":\"b\"}}",
		    200, "\"kid\"" },
		{ "PATCH", "/keys/e1", NULL, "{\"tags\":{\"n\":\"1\"}}", 200,
		    "\"n\"" },
		{ "POST", "/keys/e1/sign", NULL, sign, 200, "\"value\"" },
	};

	torture_pause();
	for (size_t i = 0; i < sizeof(set) / sizeof(set[0]) && r != 1; i++) {
		const struct rq *q = &set[i];
		r = req(q->method, q->path, q->max, q->body, q->status,
		    q->want);
		if (r == 2 && failed)
			BAD("a second request failed after the injected one");
		if (r == 2) {
			failed = 1;
			r = req(q->method, q->path, q->max, q->body, q->status,
			    q->want);
			if (r != 0) {
				printf(
				    "torture-bad %s N=%llu: %s %s failed "
				    "again after the failed one (lasting "
				    "damage)\n",
				    cur_target, (unsigned long long)cur_n,
				    q->method, q->path);
				fflush(stdout);
				r = 1;
			}
		}
	}
	torture_resume();
	return r == 1;
}

/* ---- the driver ---------------------------------------------------------- */

struct target {
	const char *name;
	int (*fn)(void);
};

static const struct target targets[] = {
	{ "base", t_base },
	{ "policy", t_policy },
	{ "secret", t_secret },
	{ "store", t_store },
	{ "json", t_json },
	{ "requests", t_requests },
	{ "tokp", t_tokp },
};

/* One run failing allocation n (0: none): 0 fine, 1 wrong. */
static int
run_one(const struct target *t, uint64_t n)
{
	int r;

	cur_n = n;
	torture_arm(n);
	r = t->fn();
	torture_disarm();
	if (__lsan_do_recoverable_leak_check() != 0) {
		printf("torture-bad %s N=%llu: leak\n", t->name,
		    (unsigned long long)n);
		r = 1;
	}
	return r;
}

static int
setup(const char *name)
{
	EC_KEY *ec;

	snprintf(tdir, sizeof(tdir), "/tmp/p11vault-torture-XXXXXX");
	if (mkdtemp(tdir) == NULL)
		return -1;
	if (strcmp(name, "policy") == 0) {
		EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
		if (kc == NULL || EVP_PKEY_keygen_init(kc) != 1 ||
		    EVP_PKEY_CTX_set_ec_paramgen_curve_nid(kc,
		        NID_X9_62_prime256v1) != 1 ||
		    EVP_PKEY_keygen(kc, &jwt_key) != 1)
			return -1;
		EVP_PKEY_CTX_free(kc);
		int l = i2d_PUBKEY(jwt_key, &jwt_spki);
		if (l <= 0 || cheap_hash("the-secret", &policy_hash) != 0)
			return -1;
		jwt_spki_len = (size_t)l;
	}
	if (strcmp(name, "requests") == 0)
		fz_env_init();
	if (strcmp(name, "tokp") == 0 && tp_setup() != 0)
		return -1;
	(void)ec;
	return 0;
}

int
main(int argc, char **argv)
{
	const struct target *t = NULL;
	const char *one = getenv("P11VAULT_TORTURE_FAIL");
	uint64_t k, n, step, runs = 0;
	int bad = 0;

	if (argc != 3)
		return 2;
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
		if (strcmp(argv[1], targets[i].name) == 0)
			t = &targets[i];
	if (t == NULL)
		return 2;
	cur_target = t->name;
	api_json_wipe_on_free(); /* Jansson allocates through our malloc */
	if (setup(t->name) != 0) {
		printf("torture-bad %s: setup\n", t->name);
		return 1;
	}
	/* the count run: nothing fails, everything must succeed */
	if (run_one(t, 0) != 0)
		return 1;
	k = torture_count();
	if (strcmp(argv[2], "count") == 0) {
		printf("torture-count %s %llu\n", t->name,
		    (unsigned long long)k);
		return 0;
	}
	if (one != NULL && parse_u64(one, UINT64_MAX, &n) == 0) {
		bad = run_one(t, n);
		runs = 1;
	} else {
		/* K is the count run's; a later run may allocate more (the
		 * state a target leaves grows: one more key a run, a warm
		 * cache goes the other way), so the runs go on past K until
		 * one in which the failure was not reached */
		step = 1;
		if (strcmp(argv[2], "sampled") == 0 && k > SAMPLE_FIRST)
			step = (k - SAMPLE_FIRST) / SAMPLE_RUNS + 1;
		for (n = 1;; n++) {
			if (n > SAMPLE_FIRST &&
			    (n - SAMPLE_FIRST) % step != 0 && n != k)
				continue;
			bad |= run_one(t, n);
			runs++;
			if (!torture_injected() && n >= k)
				break;
			if (torture_injected() && n > k)
				k = n;
		}
	}
	printf("torture-result %s %llu %llu %s\n", t->name,
	    (unsigned long long)k, (unsigned long long)runs,
	    bad ? "bad" : "good");
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tdir);
	return bad;
}
