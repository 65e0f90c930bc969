/*
 * api — HTTP(S) with libmicrohttpd, routing, JSON with Jansson, the Azure
 * error envelope, the keys, admin and token endpoints, the command line.
 *
 * Owns: everything a client sees. Must never: call PKCS#11 (that is
 * hsm/'s, reached only through vault/), run SQL, log a secret or a token.
 * This is the api module's one header; it is internal to api/.
 */
#ifndef P11VAULT_API_H
#define P11VAULT_API_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "policy/policy.h"
#include "vault/vault.h"

#define API_WUR __attribute__((warn_unused_result))
#define API_BODY_MAX (256 * 1024)

/* ---- the request path (http.c, router.c, *_api.c) --------------------- */

struct api_ctx {
	vault_t *vault;
	policy_t *policy;
	const char *vault_url;     /* no trailing slash */
	const char *tenant_id;
	const char *resource;      /* token audience, e.g. https://vault.azure.net */
	char issuer[512];
	char challenge[1024];      /* WWW-Authenticate value */
	int verify_key_set;        /* the JWT public key is in policy (a
	                              vault started sealed gets it at unseal) */
};

/* router.c: gives policy the token's JWT public key if it lacks it (the
 * vault was sealed when serve started). 0 once it has it. */
int api_verify_key_refresh(struct api_ctx *c);

struct api_req {
	struct api_ctx *ctx;
	const char *method;
	const char *path;
	const char *api_version;   /* NULL when absent */
	const char *maxresults;
	const char *skiptoken;
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
	int mutating;              /* the operation changes state: the audit
	                              line is fsynced before the response */
};

struct api_resp {
	unsigned status;
	char *body;                /* malloc'd */
	size_t body_len;
	const char *content_type;
	int challenge;             /* send WWW-Authenticate */
	int retry_after;           /* seconds; 0 = none */
};

/* errors.c — the one place that maps errors to statuses. */
void api_resp_set(struct api_resp *r, unsigned status, json_t *body);
void api_resp_error(struct api_resp *r, unsigned status, const char *code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Maps a vault error. name: the key's name (for messages); op: the
 * operation's Azure name ("unwrapKey") for 403s about keys. */
void api_resp_vault_error(struct api_resp *r, int err, const char *name,
    const char *op);
void api_resp_unauthorized(struct api_req *q, struct api_resp *r,
    const char *why);

/* json.c — strict body parsing and field helpers. Each returns 0, or -1
 * after filling r with a 400 BadParameter naming the field. */
int api_body_object(struct api_req *q, struct api_resp *r, json_t **out)
    API_WUR;
int api_field_b64(json_t *obj, const char *field, size_t max, int required,
    uint8_t **out, size_t *out_len, struct api_resp *r) API_WUR;
int api_field_string(json_t *obj, const char *field, int required,
    const char **out, struct api_resp *r) API_WUR;
/* base64url of bytes as a new Jansson string (the text wiped when freed,
 * as every Jansson buffer is once api_json_wipe_on_free has run) */
json_t *api_json_b64(const uint8_t *in, size_t len);
/* free() that first overwrites the whole allocation (malloc_usable_size
 * bytes): for any malloc'd buffer, whatever its length or content, so it
 * can stand in for free() anywhere, as Jansson's free and as the response
 * body's free callback. NULL is a no-op. */
void api_wipe_free(void *p);
/* Makes Jansson wipe every buffer it frees (parsed bodies, strings, dumps)
 * from now on, process-wide; idempotent, and safe while JSON values made
 * with plain malloc exist (they are freed the same way). */
void api_json_wipe_on_free(void);

/* router.c */
void api_route(struct api_req *q, struct api_resp *r);
/* 0 if the caller's token is valid (fills q->caller); else r holds the
 * answer (401 and the challenge, or 503 sealed) and the result is
 * VLT_ERR_UNAUTHORIZED or VLT_ERR_SEALED. */
int api_authn(struct api_req *q, struct api_resp *r) API_WUR;
/* 0 if the authenticated caller holds one key permission; else r holds
 * the answer (403, or api_authn's) and the result is negative. */
int api_authz(struct api_req *q, struct api_resp *r, unsigned perm,
    const char *perm_name) API_WUR;
/* The same for "is an administrator". */
int api_authz_admin(struct api_req *q, struct api_resp *r) API_WUR;

/* keys_api.c — /keys and /deletedkeys; segs are the path segments after
 * the first ("keys"/"deletedkeys"), n of them (a trailing empty segment
 * removed). */
void api_keys(struct api_req *q, struct api_resp *r, char **segs, size_t n);
void api_deletedkeys(struct api_req *q, struct api_resp *r, char **segs,
    size_t n);
/* keys_byok.c — import (JWK and BYOK key_hsm), backup, restore, rotation
 * policies. The caller has checked the permission and the key name. */
void api_key_import(struct api_req *q, struct api_resp *r, const char *name);
void api_key_backup(struct api_req *q, struct api_resp *r, const char *name);
void api_key_restore(struct api_req *q, struct api_resp *r);
void api_rotation_policy_get(struct api_req *q, struct api_resp *r,
    const char *name);
void api_rotation_policy_set(struct api_req *q, struct api_resp *r,
    const char *name);

/* KeyBundle / KeyItem / Deleted* JSON for a key version. item: 0 a full
 * bundle with the JWK; 1 an item whose kid names the version; 2 an item
 * whose kid names the key only (lists of keys and of deleted keys). */
json_t *api_key_bundle(struct api_ctx *c, const struct vlt_key_info *k,
    int item);
/* The answer to a call on one key version that returned rc: the vault
 * error (naming err_name) if rc is not 0, else *k's bundle, with q->key_id
 * set first to id_name's version k->version when id_name is not NULL.
 * Clears *k when it answers with it. */
void api_send_key(struct api_req *q, struct api_resp *r, int rc,
    const char *err_name, const char *id_name, struct vlt_key_info *k);
/* A key_ops name (any case) to its VLT_OP_* bit: 0, or -1 if unknown. */
int api_key_op_bit(const char *s, unsigned *bit);
/* attributes.<field> (nbf, exp) of attrs as a Unix time: *has is 1 when
 * the field is there, *out its value (0 when absent or null); -1 with a
 * 400 in r if it is not a time. */
int api_parse_time(json_t *attrs, const char *field, int *has, int64_t *out,
    struct api_resp *r);

/* token_api.c — /{tenant}/... identity provider endpoints */
void api_token(struct api_req *q, struct api_resp *r, char **segs, size_t n);

/* admin_api.c — /admin/... */
void api_admin(struct api_req *q, struct api_resp *r, char **segs, size_t n);
/* seal_api.c: /sys/seal-status, /sys/unseal (no authentication) */
void api_sys(struct api_req *q, struct api_resp *r, char **segs, size_t n);

/* audit.c */
struct timespec;
void api_audit_request(struct api_req *q, struct api_resp *r,
    const struct timespec *start);

/* metrics.c — Prometheus text exposition of request, token-operation,
 * session-pool and handle-cache figures (GET /metrics, administrators). */
void api_metrics_observe(const char *operation, unsigned status, double ms);
void api_metrics_observe_token(const char *operation, int ok, double ms);
int api_metrics_render(struct api_ctx *c, char **text, size_t *len) API_WUR;
/* Only the seal gauges, for a sealed vault. */
int api_metrics_render_sealed(struct api_ctx *c, char **text, size_t *len)
    API_WUR;

#endif
