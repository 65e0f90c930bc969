/*
 * json.c — strict request-body parsing and typed field access, ISO 8601
 * durations, and the wiping free that Jansson and the response bodies use.
 *
 * Duplicate keys are refused (JSON_REJECT_DUPLICATES); every field's type
 * is checked before use; base64url fields are capped before decoding.
 * Must never: echo request content in an error (positions only); free a
 * buffer that held a body, a field or a dump without wiping it (Jansson
 * copies every string it parses, and its lexer and dumper grow scratch
 * buffers by copying: the server's Jansson frees through freezero_block).
 */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "hsm/buf.h"

#define DAY 86400LL
#define DURATION_NUM_MAX 100000 /* per designator: P100000D at most */

void
api_json_wipe_on_free(void)
{
	json_set_alloc_funcs(malloc, freezero_block);
}

int
api_body_object(struct api_req *q, struct api_resp *r, json_t **out)
{
	json_error_t je;
	json_t *j;

	*out = NULL;
	if (q->body_len == 0) {
		api_resp_error(r, 400, "BadParameter",
		    "The request body is required.");
		return VLT_ERR_BAD_PARAM;
	}
	j = json_loadb((const char *)q->body, q->body_len,
	    JSON_REJECT_DUPLICATES, &je);
	/* Jansson does not always say that it ran out of memory (it may
	 * report a syntax error where an allocation failed): a failed parse
	 * is tried once more, so that a body is called invalid only when it
	 * is, and a parser without memory is a 500 */
	if (j == NULL && json_error_code(&je) != json_error_duplicate_key)
		j = json_loadb((const char *)q->body, q->body_len,
		    JSON_REJECT_DUPLICATES, &je);
	if (j == NULL && json_error_code(&je) == json_error_out_of_memory) {
		api_resp_vault_error(r, VLT_ERR_NO_MEMORY, NULL, NULL);
		return VLT_ERR_NO_MEMORY;
	}
	if (j == NULL) {
		if (json_error_code(&je) == json_error_duplicate_key)
			api_resp_error(r, 400, "BadParameter",
			    "The request body has a duplicate JSON key "
			    "(line %d, column %d).",
			    je.line, je.column);
		else
			api_resp_error(r, 400, "BadParameter",
			    "The request body is not valid JSON (line %d, "
			    "column %d).",
			    je.line, je.column);
		return VLT_ERR_BAD_PARAM;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		api_resp_error(r, 400, "BadParameter",
		    "The request body must be a JSON object.");
		return VLT_ERR_BAD_PARAM;
	}
	*out = j;
	return 0;
}

int
api_field_string(json_t *obj, const char *field, int required, const char **out,
    struct api_resp *r)
{
	json_t *v = json_object_get(obj, field);

	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (!required)
			return 0;
		api_resp_error(r, 400, "BadParameter",
		    "The field '%s' is required.", field);
		return VLT_ERR_BAD_PARAM;
	}
	if (!json_is_string(v)) {
		api_resp_error(r, 400, "BadParameter",
		    "The field '%s' must be a string.", field);
		return VLT_ERR_BAD_PARAM;
	}
	*out = json_string_value(v);
	return 0;
}

int
api_field_b64(json_t *obj, const char *field, size_t max, int required,
    uint8_t **out, size_t *out_len, struct api_resp *r)
{
	const char *s;
	size_t len;

	*out = NULL;
	*out_len = 0;
	if (api_field_string(obj, field, required, &s, r) != 0)
		return VLT_ERR_BAD_PARAM;
	if (s == NULL)
		return 0;
	len = strlen(s);
	/* 4 characters carry 3 bytes; allow padding */
	if (len > (max / 3 + 1) * 4 + 4) {
		api_resp_error(r, 400, "BadParameter",
		    "The field '%s' is too long.", field);
		return VLT_ERR_BAD_PARAM;
	}
	if (policy_b64url_decode(s, len, out, out_len) != 0) {
		api_resp_error(r, 400, "BadParameter",
		    "The field '%s' is not valid base64url.", field);
		return VLT_ERR_BAD_PARAM;
	}
	if (*out_len > max) {
		freezero(*out, *out_len);
		*out = NULL;
		*out_len = 0;
		api_resp_error(r, 400, "BadParameter",
		    "The field '%s' is too long.", field);
		return VLT_ERR_BAD_PARAM;
	}
	return 0;
}

json_t *
api_json_b64(const uint8_t *in, size_t len)
{
	char *s = NULL;
	json_t *j;

	if (policy_b64url_encode(in, len, &s) != 0)
		return NULL;
	j = json_string(s); /* a copy; Jansson wipes it when freed */
	freezero_str(s);    /* the text of a DEK or a plaintext */
	return j;
}

/* One designator's seconds: Y M W D before T, H M S after it. */
static int
designator_secs(char d, int in_time, int64_t n, int64_t *secs)
{
	switch (d) {
	case 'Y':
		*secs = n * 365 * DAY;
		return in_time;
	case 'W':
		*secs = n * 7 * DAY;
		return in_time;
	case 'D':
		*secs = n * DAY;
		return in_time;
	case 'M':
		*secs = in_time ? n * 60 : n * 30 * DAY;
		return 0;
	case 'H':
		*secs = n * 3600;
		return !in_time;
	case 'S':
		*secs = n;
		return !in_time;
	default:
		return 1;
	}
}

int
api_duration_secs(const char *s, int64_t *secs)
{
	int64_t total = 0, n, part;
	int in_time = 0, any = 0;
	const char *p = s;

	*secs = 0;
	if (s == NULL || strlen(s) >= VLT_DURATION_MAX || *p++ != 'P')
		return VLT_ERR_BAD_PARAM;
	while (*p != '\0') {
		if (*p == 'T') {
			if (in_time)
				return VLT_ERR_BAD_PARAM;
			in_time = 1;
			p++;
			continue;
		}
		if (*p < '0' || *p > '9')
			return VLT_ERR_BAD_PARAM;
		for (n = 0; *p >= '0' && *p <= '9'; p++)
			if ((n = n * 10 + (*p - '0')) > DURATION_NUM_MAX)
				return VLT_ERR_BAD_PARAM;
		if (designator_secs(*p++, in_time, n, &part) != 0)
			return VLT_ERR_BAD_PARAM;
		total += part;
		any = 1;
	}
	if (!any)
		return VLT_ERR_BAD_PARAM;
	*secs = total;
	return 0;
}

void
api_json_put(json_t *o, const char *key, json_t *v, int *bad)
{
	/* Jansson frees v when the set fails, and refuses a NULL v or o */
	if (o == NULL || v == NULL || json_object_set_new(o, key, v) != 0) {
		if (o == NULL)
			json_decref(v);
		*bad = 1;
	}
}
