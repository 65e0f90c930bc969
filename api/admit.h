/*
 * api/admit.h — admission control in front of the token, fair shares per
 * calling identity, and the operator's rate limits (admit.c, ratelimit.c).
 *
 * Token work (a private-key operation, a key generation or import, a
 * token's signature) takes one of a fixed number of slots; when all are
 * taken it waits in a bounded queue whose bound follows a latency target,
 * or is refused at once with 429 Throttled and Retry-After. Shares are
 * keyed by a string (today the caller's object id; a vault's name is one
 * more part of that key once there are several).
 * Must never: hold its lock across token work, queue without a bound,
 * refuse a request without a Retry-After.
 */
#ifndef P11VAULT_API_ADMIT_H
#define P11VAULT_API_ADMIT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "api/api.h"
#include "hsm/buf.h"

#define ADMIT_KEY_MAX 80 /* a share's key: "oid" (later "vault/oid") */

/* Classes of token work, each with its own service-time estimate. */
enum admit_class {
	ADMIT_FAST, /* decrypt, unwrapKey, sign, a token's signature */
	ADMIT_SLOW, /* create, rotate, import (key generation, checks) */
	ADMIT_CLASSES,
};

/* Why a request was refused (the metrics' reason label). */
enum admit_reason {
	ADMIT_R_CAPACITY,   /* the queue cannot serve it within the target */
	ADMIT_R_FAIR_SHARE, /* a quieter identity took its queue place */
	ADMIT_R_VAULT,      /* rate_limit_vault */
	ADMIT_R_IDENTITY,   /* rate_limit_identity / rate_limit_identities */
	ADMIT_REASONS,
};

/* A slot held by a request (api_admit_enter to api_admit_leave). */
struct admit_ticket {
	int held;
	enum admit_class cls;
	char key[ADMIT_KEY_MAX];
	struct timespec t0;
};

/*
 * A request that waits in the gate without holding a thread (http.c's
 * event-driven connections): route_run (keys_api.c), instead of running
 * a route that needs more than the I/O thread may do, records what is
 * left here and the gate calls ready once it has an outcome for it: at
 * once, or later from the thread that frees a slot. ready hands the
 * request to a work thread, which runs api_keys_continue.
 */
struct admit_waiter;
struct api_park {
	void (*ready)(void *arg); /* once; never under the gate's lock */
	void *arg;
	int parked; /* route_run parked the request: ready will be called */
	/* what is left to run (keys_api.c's) */
	const void *route;
	const void *op;
	char name[VLT_NAME_MAX + 1];
	char version[VLT_VERSION_LEN + 1]; /* "": the latest */
	int cls;                           /* -1: no token slot */
	struct admit_ticket tk;
	struct admit_waiter *w; /* the gate's, while the request waits */
};

/* Reads admission, admission_target_ms, admission_slots, admission_queue
 * and the rate_limit_* keys of the vault's config into c->admit: 0, or
 * VLT_ERR_BAD_PARAM with err saying which value is wrong. */
int api_admit_open(struct api_ctx *c, char *err, size_t err_len) API_WUR;
void api_admit_close(struct api_ctx *c);

/* The operator's rate limits for q's caller (and the vault): 0, or a
 * negative error after answering r with 429 Throttled. A request refused
 * here counts against no limit. */
int api_admit_limit(struct api_req *q, struct api_resp *r) API_WUR;

/* Takes a token slot for q's caller, waiting in the queue if the wait
 * fits the latency target: 0 (t holds the slot; api_admit_leave gives it
 * back), or a negative error after answering r with 429 Throttled. No
 * gate (c->admit NULL or admission=false): 0 at once. */
int api_admit_enter(struct api_req *q, struct api_resp *r, enum admit_class cls,
    struct admit_ticket *t) API_WUR;
void api_admit_leave(struct api_req *q, struct admit_ticket *t);

/* api_admit_enter for a parked request (p): 0 with p->tk holding the
 * slot (or no gate), a negative error after answering r with 429, or
 * ADMIT_PARKED: p waits in the queue and p->ready is called once it is
 * granted, refused or out of time; then api_admit_parked gives the
 * outcome: 0 with p->tk holding the slot, or a negative error after
 * answering r (429, or 503 past the token's deadline). */
#define ADMIT_PARKED 1
int api_admit_enter_park(struct api_req *q, struct api_resp *r,
    enum admit_class cls, struct api_park *p) API_WUR;
int api_admit_parked(struct api_req *q, struct api_resp *r,
    struct api_park *p) API_WUR;

/* The admission and rate-limit figures in Prometheus text, appended to
 * b: 0, or an error when b is full. */
int api_admit_render(struct api_ctx *c, buf_t *b) API_WUR;

/* ---- between admit.c and ratelimit.c ---- */
struct admit_limits;
int admit_limits_open(struct api_ctx *c, struct admit_limits **out, char *err,
    size_t err_len) API_WUR;
void admit_limits_close(struct admit_limits *l);
/* 0 when both buckets have a token (both taken), else 1 with the reason
 * and the wait in *retry_ms (nothing taken). */
int admit_limits_take(struct admit_limits *l, const char *key,
    enum admit_reason *why, unsigned *retry_ms);
/* A request of key reached admission (throttled: it was refused). */
void admit_limits_count(struct admit_limits *l, const char *key, int throttled,
    enum admit_reason why);
int admit_limits_render(struct admit_limits *l, buf_t *b) API_WUR;

#endif
