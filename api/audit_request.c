/*
 * audit_request.c — one audit record per request, from what the request
 * path recorded (operation, key id, caller, status), never from bodies or
 * headers: no token, secret, plaintext or key part can reach it. The
 * record itself is built by vault_audit_event, the one builder.
 */
#include <time.h>

#include "api/api.h"

/* The event of q as it stands (status, duration: the caller's). */
static void
event_of(const struct api_req *q, struct vlt_audit_event *ev)
{
	struct timespec wall;

	clock_gettime(CLOCK_REALTIME, &wall);
	ev->time_ms = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
	ev->request_id = q->request_id;
	ev->caller_oid = q->caller.oid;
	ev->caller_app_id = q->caller.appid;
	ev->client_address = q->client_addr;
	ev->method = q->method;
	ev->path = q->path;
	ev->operation = q->operation;
	ev->trigger = "";
	ev->key_id = q->key_id;
	ev->http_status = 0;
	ev->duration_ms = 0;
}

int
api_audit_intent(struct api_req *q, struct api_resp *r)
{
	struct vlt_audit_event ev;
	int rc;

	event_of(q, &ev);
	rc = vault_audit_event(q->vault, &ev, 1);
	if (rc != 0) {
		api_resp_vault_error(r,
		    rc == VLT_ERR_NO_MEMORY ? rc : VLT_ERR_STORAGE, NULL, NULL);
		return rc;
	}
	q->intent_logged = 1;
	return 0;
}

void
api_audit_request(struct api_req *q, struct api_resp *r,
    const struct timespec *start)
{
	struct vlt_audit_event ev;
	struct timespec now;
	int write_op, rc;

	if (q->ctx == NULL || q->ctx->vault == NULL)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	event_of(q, &ev);
	ev.http_status = (int)r->status;
	ev.duration_ms = (double)(now.tv_sec - start->tv_sec) * 1e3 +
	    (double)(now.tv_nsec - start->tv_nsec) / 1e6;
	/* a refused or failed request changed nothing: no fsync needed */
	write_op = q->mutating && r->status < 400;
	/* fail closed: no success is answered whose line is not in the file
	 * (a write's not synced); a refusal changed nothing and says so. A
	 * state change whose started line is in the file is answered: it
	 * happened, and this line follows it once the disk takes it. */
	rc = vault_audit_event(q->vault, &ev, write_op);
	if (rc != 0 && r->status < 400 && !q->audit_optional &&
	    !q->intent_logged)
		api_resp_vault_error(r,
		    rc == VLT_ERR_NO_MEMORY ? rc : VLT_ERR_STORAGE, NULL, NULL);
}
