/*
 * api — HTTP(S) with libmicrohttpd, routing, JSON with Jansson, the Azure
 * error envelope, the keys, admin and token endpoints, the command line.
 *
 * Owns: everything a client sees. Must never: call PKCS#11 (that is
 * hsm/'s, reached only through vault/), run SQL, log a secret or a token.
 * This is the room's shared header (the request, the response, the
 * context); the parts with a job of their own have theirs (authz.h,
 * http.h, tlsgen.h, client.h, cli.h, cli_session.h, metrics.h, keys.h).
 * Nothing outside api/ includes any of them.
 */
#ifndef P11VAULT_API_H
#define P11VAULT_API_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "api/metrics.h"
#include "policy/policy.h"
#include "vault/vault.h"

#define API_WUR __attribute__((warn_unused_result))
#define API_BODY_MAX (256 * 1024)

/* ---- the request path (http.c, router.c, *_api.c) --------------------- */

struct api_ctx {
	vault_t *vault;
	policy_t *policy;
	const char *vault_url; /* no trailing slash */
	const char *tenant_id;
	const char *resource; /* token audience, e.g. https://vault.azure.net */
	/* several vaults: NAME.<vault_domain> is vault NAME's host (NULL:
	 * only the default vault); the port of vault_url (":8443" or "") */
	const char *vault_domain;
	const char *vault_name; /* the default vault's (config vault_name) */
	/* the one subscription's id (api_arm_subscription_id, at start) */
	char subscription_id[POLICY_ID_LEN + 1];
	char vault_port[8];
	char issuer[512];
	char challenge[1024]; /* WWW-Authenticate value */
	/* the JWT public key is in policy (a
	 * vault started sealed gets it at unseal) */
	int verify_key_set;
	struct api_metrics metrics; /* metrics.c's; all zero is empty */
	/* admission control and rate limits (admit.c); NULL: none */
	struct api_admit *admit;
};

struct api_req {
	struct api_ctx *ctx;
	/* the vault the request is for (router.c, from the Host header): the
	 * default vault (ctx->vault) or a child acquired for the request;
	 * its URL; its name for access decisions ("": the default vault) */
	vault_t *vault;
	const char *vault_url;
	const char *vault_scope;
	char vault_url_buf[VLT_VAULT_NAME_MAX + 300];
	const char *host; /* the Host header, or NULL */
	const char *method;
	const char *path;
	const char *api_version; /* NULL when absent */
	const char *maxresults;
	const char *skiptoken;
	const char
	    *odata_filter; /* $filter (Graph, the management API's lists) */
	const char *authorization;
	const uint8_t *body;
	size_t body_len;
	int body_too_large;
	char request_id[POLICY_ID_LEN + 1];
	char client_addr[64];
	int authenticated;
	struct policy_caller caller;
	/* for the audit event, set by the handler */
	const char *operation;
	char key_id[256];
	/* the operation changes state: the audit
	 * line is fsynced before the response */
	int mutating;
	/* monitoring (health, metrics): answered even when its audit line
	 * cannot be written, so that the operator sees the fault */
	int audit_optional;
	/* a state change's "started" line is in the file (synced) before
	 * anything changes (api_audit_intent) */
	int intent_logged;
	/* set by http.c: a route needing token work may park the request
	 * rather than wait on this thread (api/admit.h); NULL: it waits */
	struct api_park *park;
};

struct api_resp {
	unsigned status;
	char *body; /* malloc'd */
	size_t body_len;
	const char *content_type;
	int challenge;   /* send WWW-Authenticate */
	int retry_after; /* seconds; 0 = none */
	/* the same in ms (x-ms-retry-after-ms); 0 = none */
	unsigned retry_after_ms;
};

/* errors.c — the one place that maps errors to statuses. */
void api_resp_set(struct api_resp *r, unsigned status, json_t *body);
void api_resp_error(struct api_resp *r, unsigned status, const char *code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* A 400 BadParameter with msg (a fixed text naming the field, never a
 * request value); returns VLT_ERR_BAD_PARAM, for "return api_resp_bad()". */
int api_resp_bad(struct api_resp *r, const char *msg);
/* Maps a vault error. name: the key's name (for messages); op: the
 * operation's Azure name ("unwrapKey") for 403s about keys. */
void api_resp_vault_error(struct api_resp *r, int err, const char *name,
    const char *op);
/* What a request was about, where that changes the answer to an error. */
enum api_subject {
	API_SUBJ_KEY,        /* a key (api_resp_vault_error) */
	API_SUBJ_VALUE,      /* a crypto input: BAD_PARAM is its length */
	API_SUBJ_CIPHERTEXT, /* a decryption: BAD_PARAM is DECRYPT */
	API_SUBJ_TRANSFER,   /* a BYOK transfer blob */
	API_SUBJ_BACKUP,     /* a backup blob (restore) */
	API_SUBJ_IDENTITY,   /* an identity (admin API) */
};
void api_resp_vault_error_in(struct api_resp *r, int err, enum api_subject subj,
    const char *name, const char *op);
void api_resp_unauthorized(struct api_req *q, struct api_resp *r,
    const char *why);
/* 429 Throttled in Azure's words ("Request was not processed because too
 * many requests were received. Reason: <reason>"), Retry-After (whole
 * seconds, at least 1) and x-ms-retry-after-ms from retry_ms. */
void api_resp_throttled(struct api_resp *r, const char *reason,
    unsigned retry_ms);

/* json.c — strict body parsing and field helpers. Each returns 0, or
 * VLT_ERR_BAD_PARAM after filling r with a 400 BadParameter naming the
 * field. */
int api_body_object(struct api_req *q, struct api_resp *r,
    json_t **out) API_WUR;
int api_field_b64(json_t *obj, const char *field, size_t max, int required,
    uint8_t **out, size_t *out_len, struct api_resp *r) API_WUR;
int api_field_string(json_t *obj, const char *field, int required,
    const char **out, struct api_resp *r) API_WUR;
/* base64url of bytes as a new Jansson string (the text wiped when freed,
 * as every Jansson buffer is once api_json_wipe_on_free has run) */
json_t *api_json_b64(const uint8_t *in, size_t len);
/* json_object_set_new that remembers a failure (out of memory, or v NULL
 * because making it failed) in *bad, so that a document built with many
 * of them is refused whole instead of answered with a member missing. */
void api_json_put(json_t *o, const char *key, json_t *v, int *bad);
/* An ISO 8601 duration (PnYnMnWnD and TnHnMnS; a year is 365 days, a month
 * 30) in seconds: 0, or VLT_ERR_BAD_PARAM when malformed. */
int api_duration_secs(const char *s, int64_t *secs) API_WUR;
/* Makes Jansson wipe every buffer it frees (parsed bodies, strings, dumps)
 * from now on, process-wide; idempotent, and safe while JSON values made
 * with plain malloc exist (they are freed the same way). */
void api_json_wipe_on_free(void);

/* router.c */
void api_route(struct api_req *q, struct api_resp *r);
/* vaults.c — the other vaults: the context's vault_domain and port
 * (api_vaults_context), every live vault's access policies into the
 * policy (api_vaults_load, at start), one vault's (after a create or a
 * recovery). Each 0 or a negative VLT_ERR_*. */
int api_vaults_context(struct api_ctx *c) API_WUR;
int api_vaults_load(struct api_ctx *c) API_WUR;
int api_vault_policies_load(struct api_ctx *c, vault_t *v) API_WUR;
/* A principal deleted: from the store and the table, with its access
 * policies in every live vault (a missing one is fine). */
int api_principal_forget(struct api_ctx *c, const char *oid) API_WUR;

/* Sets q's vault to the default vault (before anything else). */
void api_route_begin(struct api_req *q);
/* Releases the vault the request held (after its audit line). */
void api_route_done(struct api_req *q);
#include "api/authz.h"

/* keys_api.c — /keys and /deletedkeys (the other keys_*.c files are
 * private to it, api/keys.h); segs are the path segments after the first
 * ("keys"/"deletedkeys"), n of them (a trailing empty segment removed).
 * Each checks the one permission its operation needs. */
void api_keys(struct api_req *q, struct api_resp *r, char **segs, size_t n);
void api_deletedkeys(struct api_req *q, struct api_resp *r, char **segs,
    size_t n);
/* The rest of a key request parked by its route (q->park->parked; on a
 * work thread, once the gate has called q->park->ready). */
void api_keys_continue(struct api_req *q, struct api_resp *r);
/* token_api.c — /{tenant}/... identity provider endpoints */
void api_token(struct api_req *q, struct api_resp *r, char **segs, size_t n);
/* token_api.c — /adfs/... (the same issuer at ADFS's paths, for az) */
void api_adfs(struct api_req *q, struct api_resp *r, char **segs, size_t n);

/* arm_api.c — the management (ARM-shaped) audience and subscription,
 * /subscriptions, /tenants, and the one Graph read az makes (/graph/...).
 * The management audience: what az's cloud names as
 * --endpoint-active-directory-resource-id; a token for it is refused by
 * the data plane, and the data plane's by the management API. */
#define API_ARM_AUDIENCE "https://management.p11vault/"
/* Graph's audience and base URL: "{vault_url}/graph/". 0 or
 * VLT_ERR_BAD_PARAM (too long). */
int api_graph_audience(const struct api_ctx *c, char *out, size_t cap) API_WUR;
/* The appliance's one subscription id (a UUID derived from tenant_id, so
 * stable for a data directory and the same in every process). */
int api_arm_subscription_id(const struct api_ctx *c,
    char out[POLICY_ID_LEN + 1]) API_WUR;
/* The management API's gate: a token for API_ARM_AUDIENCE (else 401
 * with ARM's envelope), an administrator (else 403 AuthorizationFailed
 * naming action and scope), a store that can record it (else 503). 0, or
 * negative after the answer. */
int api_arm_authz(struct api_req *q, struct api_resp *r, const char *action,
    const char *scope) API_WUR;
void api_arm_subscriptions(struct api_req *q, struct api_resp *r, char **segs,
    size_t n);
void api_arm_tenants(struct api_req *q, struct api_resp *r, char **segs,
    size_t n);
void api_graph(struct api_req *q, struct api_resp *r, char **segs, size_t n);

/* admin_api.c — /admin/... */
void api_admin(struct api_req *q, struct api_resp *r, char **segs, size_t n);
/* arm.c — the ARM-shaped management API: /subscriptions/{id}/... (segs
 * after "subscriptions"; administrators only, checked there) */
void api_arm(struct api_req *q, struct api_resp *r, char **segs, size_t n);
/* seal_api.c: /sys/seal-status, /sys/unseal (no authentication) */
void api_sys(struct api_req *q, struct api_resp *r, char **segs, size_t n);

/* audit_request.c */
struct timespec;
void api_audit_request(struct api_req *q, struct api_resp *r,
    const struct timespec *start);
/* Before a state change: its "started" line (httpStatus 0), synced. A
 * log that cannot take it refuses the request (503 storage) before
 * anything changed: 0, else the negative error with r filled. Once it is
 * in, the request's success is answered even if its final line has to
 * wait for the disk (the log writes it, chained, once it can). */
int api_audit_intent(struct api_req *q, struct api_resp *r) API_WUR;

/* metrics.c — Prometheus text exposition of request, token-operation,
 * session-pool and handle-cache figures (GET /metrics, administrators),
 * counted in c->metrics. */
void api_metrics_observe_request(struct api_ctx *c, const char *operation,
    unsigned status, double ms);
void api_metrics_observe_token(struct api_ctx *c, const char *operation, int ok,
    double ms);
/* One more hand-back of free heap pages to the kernel (api/http.c). */
void api_metrics_memory_trimmed(struct api_ctx *c);
int api_metrics_render(struct api_ctx *c, char **text, size_t *len) API_WUR;
/* Only the seal gauges, for a sealed vault. */
int api_metrics_render_sealed(struct api_ctx *c, char **text,
    size_t *len) API_WUR;

#endif
