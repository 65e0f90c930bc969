/*
 * Unit tests of api/'s request helpers: strict JSON bodies, typed fields,
 * base64url fields with caps, the Azure error envelope and the one
 * mapping from vault errors to statuses. No server, no token.
 */
#include <string.h>

#include "api/api.h"
#include "tests/unit/t.h"

static json_t *
resp_json(struct api_resp *r)
{
	return json_loadb(r->body, r->body_len, 0, NULL);
}

static int
is_envelope(struct api_resp *r, unsigned status, const char *code)
{
	json_t *j = resp_json(r), *e;
	int ok;

	e = json_object_get(j, "error");
	ok = r->status == status && json_is_object(e) &&
	    json_is_string(json_object_get(e, "code")) &&
	    strcmp(json_string_value(json_object_get(e, "code")), code) == 0 &&
	    json_is_string(json_object_get(e, "message")) &&
	    strstr(r->content_type, "application/json") != NULL;
	json_decref(j);
	return ok;
}

static void
reset(struct api_resp *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

static int
body(const char *text, json_t **out, struct api_resp *r)
{
	struct api_req q;

	memset(&q, 0, sizeof(q));
	q.body = (const uint8_t *)text;
	q.body_len = strlen(text);
	return api_body_object(&q, r, out);
}

/* Request bodies: one JSON object, strictly parsed. */
static void
test_bodies(void)
{
	struct api_resp r;
	json_t *j = NULL;

	memset(&r, 0, sizeof(r));
	T_CHECK(body("{\"a\":1}", &j, &r) == 0 && json_is_object(j),
	    "a JSON object body parses");
	json_decref(j);
	T_CHECK(body("{\"a\":1,\"a\":2}", &j, &r) != 0 &&
	        is_envelope(&r, 400, "BadParameter") &&
	        strstr(r.body, "duplicate") != NULL,
	    "duplicate keys are 400 BadParameter naming the problem");
	reset(&r);
	T_CHECK(body("[1,2]", &j, &r) != 0 &&
	        is_envelope(&r, 400, "BadParameter"),
	    "a non-object body is 400");
	reset(&r);
	T_CHECK(body("", &j, &r) != 0 && is_envelope(&r, 400, "BadParameter"),
	    "an empty body is 400");
	reset(&r);
	T_CHECK(body("{\"value\":\"SECRET-PLAINTEXT\"", &j, &r) != 0 &&
	        is_envelope(&r, 400, "BadParameter") &&
	        strstr(r.body, "SECRET") == NULL,
	    "invalid JSON is 400 and the message does not echo the body");
	reset(&r);
}

/* Typed fields: strings, base64url with caps; bytes out as base64url. */
static void
test_fields(void)
{
	struct api_resp r;
	json_t *j;
	const char *s;
	uint8_t *b;
	size_t n;

	memset(&r, 0, sizeof(r));
	j = json_loads(
	    "{\"s\":\"x\",\"n\":5,\"z\":null,"
	    "\"b\":\"AAECAw\",\"p\":\"AAECAw==\",\"bad\":\"AA+/\","
	    "\"long\":\"AAAAAAAAAAAA\"}",
	    0, NULL);
	T_CHECK(api_field_string(j, "s", 1, &s, &r) == 0 && strcmp(s, "x") == 0,
	    "a string field is returned");
	T_CHECK(api_field_string(j, "absent", 0, &s, &r) == 0 && s == NULL,
	    "an optional absent field is NULL");
	T_CHECK(api_field_string(j, "z", 0, &s, &r) == 0 && s == NULL,
	    "an optional null field is NULL");
	T_CHECK(api_field_string(j, "absent", 1, &s, &r) != 0 &&
	        is_envelope(&r, 400, "BadParameter") &&
	        strstr(r.body, "absent") != NULL,
	    "a required absent field is 400 naming the field");
	reset(&r);
	T_CHECK(api_field_string(j, "n", 1, &s, &r) != 0 &&
	        is_envelope(&r, 400, "BadParameter") && strstr(r.body, "'n'"),
	    "a number where a string is wanted is 400 naming the field");
	reset(&r);
	T_CHECK(api_field_b64(j, "b", 16, 1, &b, &n, &r) == 0 && n == 4 &&
	        b[0] == 0 && b[3] == 3,
	    "base64url without padding decodes");
	free(b);
	T_CHECK(api_field_b64(j, "p", 16, 1, &b, &n, &r) == 0 && n == 4,
	    "base64url with padding decodes");
	free(b);
	T_CHECK(api_field_b64(j, "bad", 16, 1, &b, &n, &r) != 0 && b == NULL &&
	        is_envelope(&r, 400, "BadParameter"),
	    "standard base64 characters (+ /) are refused");
	reset(&r);
	T_CHECK(api_field_b64(j, "long", 4, 1, &b, &n, &r) != 0 && b == NULL &&
	        is_envelope(&r, 400, "BadParameter"),
	    "a value over its cap is refused");
	reset(&r);
	json_decref(j);
	{
		uint8_t raw[3] = { 0xfb, 0xff, 0xbf };
		json_t *e = api_json_b64(raw, sizeof(raw));
		T_CHECK(e && strcmp(json_string_value(e), "-_-_") == 0,
		    "bytes encode as unpadded base64url");
		json_decref(e);
	}
}

/* The one mapping from vault errors to statuses and codes. */
static void
test_error_map(void)
{
	static const struct {
		int err;
		unsigned status;
		const char *code;
	} m[] = {
		{ VLT_ERR_BAD_PARAM, 400, "BadParameter" },
		{ VLT_ERR_NOT_FOUND, 404, "KeyNotFound" },
		{ VLT_ERR_CONFLICT, 409, "Conflict" },
		{ VLT_ERR_DELETED_RECOVERABLE, 409, "Conflict" },
		{ VLT_ERR_KEY_DISABLED, 403, "Forbidden" },
		{ VLT_ERR_KEY_NOT_YET_VALID, 403, "Forbidden" },
		{ VLT_ERR_KEY_EXPIRED, 403, "Forbidden" },
		{ VLT_ERR_OP_NOT_PERMITTED, 403, "Forbidden" },
		{ VLT_ERR_PURGE_PROTECTED, 403, "Forbidden" },
		{ VLT_ERR_DECRYPT, 400, "BadParameter" },
		{ VLT_ERR_UNAVAILABLE, 503, "ServiceUnavailable" },
		{ VLT_ERR_INTERNAL, 500, "InternalServerError" },
	};
	struct api_resp r;
	size_t i;
	int all = 1;

	memset(&r, 0, sizeof(r));
	for (i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		api_resp_vault_error(&r, m[i].err, "k1", "unwrapKey");
		all &= is_envelope(&r, m[i].status, m[i].code);
		reset(&r);
	}
	T_CHECK(all, "every vault error maps to its status and code");
	api_resp_vault_error(&r, VLT_ERR_DELETED_RECOVERABLE, "k1", NULL);
	T_CHECK(strstr(r.body,
	            "\"innererror\":{\"code\":"
	            "\"ObjectIsDeletedButRecoverable\"}") != NULL,
	    "a deleted name's conflict carries innererror "
	    "ObjectIsDeletedButRecoverable");
	reset(&r);
	api_resp_vault_error(&r, VLT_ERR_UNAVAILABLE, NULL, NULL);
	T_CHECK(r.retry_after == 1, "503 carries Retry-After");
	reset(&r);
	api_resp_vault_error(&r, VLT_ERR_KEY_DISABLED, "k1", "unwrapKey");
	T_CHECK(strstr(r.body, "unwrapKey") && strstr(r.body, "disabled"),
	    "a disabled key's 403 names the operation and the reason");
	reset(&r);
}

/* What the error bodies say, and what they must not tell apart. */
static void
test_error_bodies(void)
{
	struct api_resp r;

	memset(&r, 0, sizeof(r));
	{
		struct api_resp d1, d2;
		memset(&d1, 0, sizeof(d1));
		memset(&d2, 0, sizeof(d2));
		api_resp_vault_error(&d1, VLT_ERR_DECRYPT, "k1", "unwrapKey");
		api_resp_vault_error(&d2, VLT_ERR_DECRYPT, "k2", "decrypt");
		T_CHECK(d1.body_len == d2.body_len &&
		        memcmp(d1.body, d2.body, d1.body_len) == 0,
		    "every decryption failure has one identical body");
		reset(&d1);
		reset(&d2);
	}
	{
		struct api_resp d1, d2;
		memset(&d1, 0, sizeof(d1));
		memset(&d2, 0, sizeof(d2));
		api_resp_vault_error_in(&d1, VLT_ERR_BAD_PARAM,
		    API_SUBJ_CIPHERTEXT, "k1", "unwrapKey");
		api_resp_vault_error(&d2, VLT_ERR_DECRYPT, "k2", "decrypt");
		T_CHECK(d1.status == 400 && d1.body_len == d2.body_len &&
		        memcmp(d1.body, d2.body, d1.body_len) == 0,
		    "a refused ciphertext answers as every decryption failure");
		reset(&d1);
		reset(&d2);
	}
	api_resp_vault_error_in(&r, VLT_ERR_CONFLICT, API_SUBJ_BACKUP, NULL,
	    NULL);
	T_CHECK(is_envelope(&r, 409, "Conflict") && strstr(r.body, "backup"),
	    "a restore's conflict says the backup's name exists");
	reset(&r);
	api_resp_vault_error_in(&r, VLT_ERR_NOT_FOUND, API_SUBJ_IDENTITY, NULL,
	    NULL);
	T_CHECK(is_envelope(&r, 404, "NotFound") && !strstr(r.body, "key"),
	    "a missing identity is not called a key");
	reset(&r);
	api_resp_vault_error_in(&r, VLT_ERR_NOT_FOUND, API_SUBJ_TRANSFER, "k1",
	    NULL);
	T_CHECK(is_envelope(&r, 404, "KeyNotFound"),
	    "a subject falls back to the key answers for other errors");
	reset(&r);
	api_resp_vault_error(&r, VLT_ERR_UNAUTHORIZED, NULL, NULL);
	T_CHECK(is_envelope(&r, 401, "Unauthorized") && r.challenge,
	    "VLT_ERR_UNAUTHORIZED is 401 with the challenge");
	reset(&r);
	api_resp_vault_error(&r, VLT_ERR_FORBIDDEN, NULL, NULL);
	T_CHECK(is_envelope(&r, 403, "Forbidden"), "VLT_ERR_FORBIDDEN is 403");
	reset(&r);
}

/* ISO 8601 durations. */
static void
test_durations(void)
{
	static const struct {
		const char *s;
		int64_t secs;
	} ok[] = {
		{ "P7D", 7 * 86400 },
		{ "P1Y", 365 * 86400 },
		{ "P2M", 60 * 86400 },
		{ "PT2M", 120 },
		{ "P1W", 7 * 86400 },
		{ "P1DT1H1M1S", 86400 + 3661 },
		{ "P100000D", 100000LL * 86400 },
	};
	static const char *const no[] = { "", "P", "PT", "7D", "P7", "P7X",
		"PT1D", "P1H", "P1DTT1H", "P100001D", "P-1D", "P1D ",
		"P1234567890123456789012345678901D" };
	size_t i;
	int64_t v;
	int all = 1;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		all &= api_duration_secs(ok[i].s, &v) == 0 && v == ok[i].secs;
	T_CHECK(all, "ISO 8601 durations in seconds");
	all = 1;
	for (i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		all &= api_duration_secs(no[i], &v) == VLT_ERR_BAD_PARAM;
	all &= api_duration_secs(NULL, &v) == VLT_ERR_BAD_PARAM;
	T_CHECK(all, "malformed ISO 8601 durations are refused");
}

/* Metrics are counted in the context they are given. */
static void
test_metrics(void)
{
	static struct api_ctx c; /* zero: an empty metrics table */
	char *text = NULL;
	size_t len = 0;
	api_metrics_observe_request(&c, "get", 200, 3.0);
	api_metrics_observe_request(&c, "get", 200, 30.0);
	api_metrics_observe_token(&c, "sign", 1, 1.0);
	T_CHECK(api_metrics_render(&c, &text, &len) == 0 && text &&
	        strstr(text,
	            "p11vault_http_requests_total{operation="
	            "\"get\",status=\"200\"} 2\n") &&
	        strstr(text,
	            "p11vault_key_operations_total{operation="
	            "\"sign\",result=\"ok\"} 1\n"),
	    "metrics count in the context they are given");
	free(text);
}

int
main(void)
{
	test_bodies();
	test_fields();
	test_error_map();
	test_error_bodies();
	test_durations();
	test_metrics();
	return T_DONE();
}
