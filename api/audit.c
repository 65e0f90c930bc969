/*
 * audit.c — one audit event per request, built from what the request path
 * recorded (operation, key id, caller, status), never from bodies or
 * headers: no token, secret, plaintext or key part can reach it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"

#define AUDIT_PATH_MAX 256

/* The request path as printable ASCII (anything else becomes '?'), cut to
 * AUDIT_PATH_MAX: it is client-chosen and must not make the line invalid
 * JSON/UTF-8 (a line that cannot be built is a request without a line).
 * The same goes for the key id, which holds path segments. */
static void
safe_text(const char *in, char *out, size_t cap)
{
	size_t i;

	for (i = 0; in != NULL && in[i] != '\0' && i + 1 < cap; i++)
		out[i] = (in[i] >= 0x20 && in[i] < 0x7f) ? in[i] : '?';
	out[i] = '\0';
}

void
api_audit_request(struct api_req *q, struct api_resp *r,
    const struct timespec *start)
{
	struct timespec now, wall;
	double ms;
	json_t *ev;
	char *line;
	char ts[64], path[AUDIT_PATH_MAX + 1], key_id[sizeof(q->key_id)];
	struct tm tm;
	int write_op;

	if (q->ctx == NULL || q->ctx->vault == NULL)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	clock_gettime(CLOCK_REALTIME, &wall);
	gmtime_r(&wall.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + strlen(ts), sizeof(ts) - strlen(ts), ".%03ldZ",
	    wall.tv_nsec / 1000000);
	safe_text(q->path, path, sizeof(path));
	safe_text(q->key_id, key_id, sizeof(key_id));
	ms = (double)(now.tv_sec - start->tv_sec) * 1e3 +
	    (double)(now.tv_nsec - start->tv_nsec) / 1e6;
	ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, "
	    "s:s, s:f}",
	    "time", ts, "requestId", q->request_id,
	    "callerOid", q->caller.oid, "callerAppId", q->caller.appid,
	    "clientAddress", q->client_addr,
	    "method", q->method ? q->method : "", "path", path,
	    "operation", q->operation ? q->operation : "Unknown",
	    "keyId", key_id, "httpStatus", (int)r->status,
	    "result", r->status < 400 ? "Success" :
	    r->status == 401 ? "Unauthorized" :
	    r->status == 403 ? "Forbidden" : "Failure",
	    "durationMs", ms);
	line = ev != NULL ? json_dumps(ev, JSON_COMPACT) : NULL;
	json_decref(ev);
	/* a refused or failed request changed nothing: no fsync needed */
	write_op = q->mutating && r->status < 400;
	if ((line == NULL ||
	    vault_audit_append(q->ctx->vault, line, write_op) != 0) &&
	    r->status < 400) {
		/* an unaudited write must not be acknowledged as a success */
		if (write_op)
			api_resp_vault_error(r, VLT_ERR_UNAVAILABLE, NULL, NULL);
	}
	free(line);
}
