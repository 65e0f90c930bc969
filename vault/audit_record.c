/*
 * vault/audit_record.c — the one builder of an audit record: the same
 * fields, in the same order, for a request (api/audit_request.c) and for
 * the rotation sweeper (vault/rotation.c), handed to the chained log
 * (vault/auditlog.c); and the record of a torn tail cut at open
 * (vault/dir.c), which holds only what the log itself measured.
 *
 * Must never: take text it does not cut to printable ASCII and escape
 * (client-chosen paths must not make a line invalid JSON); be handed a
 * body, a header, a token or key material.
 */
#include "vault/vault_int.h"

#include <string.h>
#include <time.h>

#include "hsm/base.h"

#define AUDIT_RECORD_MAX (16 * VLT_AUDIT_TEXT_MAX + 512)

/* "name":"text", with text cut to printable ASCII and escaped. */
static int
put_text(buf_t *b, const char *name, const char *text)
{
	size_t i;
	int r;

	if ((r = buf_putf(b, "%s\"%s\":\"", buf_len(b) > 1 ? "," : "", name)) !=
	    0)
		return r;
	for (i = 0; text != NULL && text[i] != '\0' && i < VLT_AUDIT_TEXT_MAX;
	     i++) {
		char c = (text[i] >= 0x20 && text[i] < 0x7f) ? text[i] : '?';

		if ((c == '"' || c == '\\') && (r = buf_put_u8(b, '\\')) != 0)
			return r;
		if ((r = buf_put_u8(b, (uint8_t)c)) != 0)
			return r;
	}
	return buf_put_u8(b, '"');
}

static const char *
result_of(int status)
{
	if (status == 0)
		return "Started"; /* a state change's line before it happens */
	if (status < 400)
		return "Success";
	if (status == 401)
		return "Unauthorized";
	return status == 403 ? "Forbidden" : "Failure";
}

/* ISO-8601 UTC with milliseconds: 2024-01-02T03:04:05.678Z. */
static int
time_text(int64_t ms, char *dst, size_t cap)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char base[32];

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		return VLT_ERR_INTERNAL;
	return str_fmt(dst, cap, "%s.%03dZ", base, (int)(ms % 1000)) == 0 ?
	    0 :
	    VLT_ERR_INTERNAL;
}

static int
record_build(const vault_t *v, const struct vlt_audit_event *ev, buf_t *b)
{
	char ts[64];
	int r;

	if ((r = time_text(ev->time_ms, ts, sizeof(ts))) != 0)
		return r;
	if (buf_put_u8(b, '{') != 0 || put_text(b, "time", ts) != 0 ||
	    (v->root != NULL && put_text(b, "vault", v->name) != 0) ||
	    put_text(b, "requestId", ev->request_id) != 0 ||
	    put_text(b, "callerOid", ev->caller_oid) != 0 ||
	    put_text(b, "callerAppId", ev->caller_app_id) != 0 ||
	    put_text(b, "clientAddress", ev->client_address) != 0 ||
	    put_text(b, "method", ev->method) != 0 ||
	    put_text(b, "path", ev->path) != 0 ||
	    put_text(b, "operation",
	        ev->operation != NULL ? ev->operation : "Unknown") != 0 ||
	    put_text(b, "trigger", ev->trigger) != 0 ||
	    put_text(b, "keyId", ev->key_id) != 0 ||
	    buf_putf(b, ",\"httpStatus\":%d", ev->http_status) != 0 ||
	    put_text(b, "result", result_of(ev->http_status)) != 0 ||
	    buf_putf(b, ",\"durationMs\":%.3f}", ev->duration_ms) != 0)
		return VLT_ERR_INTERNAL;
	return 0;
}

int
vault_audit_event(vault_t *v, const struct vlt_audit_event *ev, int sync)
{
	buf_t *b;
	int r;

	if (v == NULL || ev == NULL)
		return VLT_ERR_BAD_PARAM;
	if ((b = buf_new(AUDIT_RECORD_MAX)) == NULL)
		return VLT_ERR_NO_MEMORY;
	if ((r = record_build(v, ev, b)) == 0)
		r = vault_audit_append(v, buf_str(b), sync);
	buf_free(b);
	return r;
}

int
vault_audit_append(vault_t *v, const char *object_json, int sync)
{
	if (v == NULL || object_json == NULL)
		return VLT_ERR_BAD_PARAM;
	return vlt_audit_append(v->audit, object_json, sync);
}

/* Now, in milliseconds since the epoch (the real clock: the test clock is
 * not set yet when a vault opens). */
static int64_t
now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return (int64_t)time(NULL) * 1000;
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
vault_audit_repaired(vault_t *v, const struct vlt_audit_repair *rep)
{
	buf_t *b;
	char ts[64];
	int r;

	if (v == NULL || rep == NULL || rep->length == 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = time_text(now_ms(), ts, sizeof(ts))) != 0)
		return r;
	if ((b = buf_new(AUDIT_RECORD_MAX)) == NULL)
		return VLT_ERR_NO_MEMORY;
	/* "event" first: verification knows the record by it */
	if (buf_putf(b, "{\"event\":\"%s\"", VLT_AUDIT_TAIL_REPAIRED) != 0 ||
	    put_text(b, "time", ts) != 0 ||
	    put_text(b, "file", "audit.log") != 0 ||
	    buf_putf(b, ",\"offset\":%llu,\"length\":%llu",
	        (unsigned long long)rep->offset,
	        (unsigned long long)rep->length) != 0 ||
	    put_text(b, "sha256", rep->sha256) != 0 ||
	    put_text(b, "sideFile", rep->side_file) != 0 ||
	    buf_put_u8(b, '}') != 0)
		r = VLT_ERR_INTERNAL;
	else
		r = vault_audit_append(v, buf_str(b), 1);
	buf_free(b);
	return r;
}
