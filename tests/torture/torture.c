/*
 * tests/torture/torture.c — allocation-failure torture targets (curl's
 * "torture" habit). Each target is a fixed sequence of operations on one
 * unit whose result can be checked. The program first runs it with no
 * failure and counts its allocations K (everything must succeed), then
 * runs it again failing allocation N, for every N in 1..K (full) or a
 * sample (sampled), in the same process, and checks every run:
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
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "api/api.h"
#include "api/keys.h"
#include "hsm/base.h"
#include "hsm/buf.h"
#include "hsm/proto.h"
#include "policy/policy.h"
#include "tests/torture/alloc.h"
#include "tests/unit/es256.h"
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

/* ---- hsm/proto: the token protocol, built, sent and parsed ---------------- */

static int __attribute__((unused)) t_tokp(void)
{
	struct tokp_buf b;
	struct tokp_msg m;
	uint8_t blob[3000];
	char str[64];
	uint32_t u = 0;
	uint64_t u64 = 0;
	size_t nfd = 0;
	int sv[2], r;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		BAD("socketpair");
	memset(blob, 0x5a, sizeof(blob));
	memset(&m, 0, sizeof(m));
	tokp_begin(&b, TOKP_SIGN, 7, 0);
	tokp_put_u32(&b, 42);
	tokp_put_u64(&b, 1ULL << 40);
	tokp_put_str(&b, "label-1");
	tokp_put(&b, blob, sizeof(blob));
	r = tokp_send(sv[0], &b, NULL, 0);
	tokp_buf_clear(&b);
	if (r != 0) {
		close(sv[0]);
		close(sv[1]);
		FAILED("tokp_send");
	}
	r = tokp_recv(sv[1], 1000, 0, &m, NULL, &nfd);
	close(sv[0]);
	close(sv[1]);
	if (r != 0) {
		tokp_msg_clear(&m);
		FAILED("tokp_recv");
	}
	int ok = m.op == TOKP_SIGN && m.id == 7 && m.n == 4 &&
	    tokp_u32(&m.f[0], &u) == 0 && u == 42 &&
	    tokp_u64(&m.f[1], &u64) == 0 && u64 == (1ULL << 40) &&
	    tokp_str(&m.f[2], str, sizeof(str)) == 0 &&
	    strcmp(str, "label-1") == 0 && m.f[3].len == sizeof(blob) &&
	    memcmp(m.f[3].p, blob, sizeof(blob)) == 0;
	tokp_msg_clear(&m);
	if (!ok)
		BAD("tokp round trip");
	return 0;
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

static int
t_requests(void)
{
	static const char sign[] =
	    "{\"alg\":\"ES256\",\"value\":"
	    "\"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU\"}";
	char path[64];
	int r;

	torture_pause();
	snprintf(path, sizeof(path), "/keys/t%llu/create",
	    (unsigned long long)cur_n);
	if ((r = req("GET", "/keys/e1", NULL, NULL, 200, "\"kid\"")) ||
	    (r = req("POST", "/keys/e1/sign", NULL, sign, 200, "\"value\"")) ||
	    (r = req("GET", "/keys", "5", NULL, 200, "\"value\"")) ||
	    (r = req("POST", path, NULL,
	         "{\"kty\":\"EC\",\"crv\":\"P-256\",\"tags\":{\"a\":\"b\"}}",
	         200, "\"kid\"")) ||
	    (r = req("PATCH", "/keys/e1", NULL, "{\"tags\":{\"n\":\"1\"}}", 200,
	         "\"n\"")))
		;
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
	/* { "tokp", t_tokp }: needs a message of a real op shape */
	{ "requests", t_requests },
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
		if (l <= 0 || policy_secret_hash("the-secret", &policy_hash))
			return -1;
		jwt_spki_len = (size_t)l;
	}
	if (strcmp(name, "requests") == 0)
		fz_env_init();
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
		step = 1;
		if (strcmp(argv[2], "sampled") == 0 && k > SAMPLE_FIRST)
			step = (k - SAMPLE_FIRST) / SAMPLE_RUNS + 1;
		for (n = 1; n <= k; n++) {
			if (n > SAMPLE_FIRST &&
			    (n - SAMPLE_FIRST) % step != 0 && n != k)
				continue;
			bad |= run_one(t, n);
			runs++;
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
