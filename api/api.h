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

/* ---- tlsgen.c: the vault's TLS material -------------------------------- */
/*
 * Creates tls_dir (0700) with ca.pem, server.pem, server-key.pem (0600)
 * and, when it generates the CA itself, ca-key.pem (0600). The server
 * certificate (EC P-256, 825 days) covers localhost, 127.0.0.1 and host
 * (a DNS name or an IP address) as subjectAltNames. When ca_cert and
 * ca_key are given (PEM files), the server certificate is signed by that
 * CA and ca.pem is a copy of ca_cert; else a new CA (EC P-256, 10 years)
 * is made. 0 on success, -1 with a one-line reason in err.
 */
int tlsgen_create(const char *tls_dir, const char *host, const char *ca_cert,
    const char *ca_key, char *err, size_t err_len) API_WUR;

/* ---- client.c / cli_admin.c: administrator commands --------------------- */
/*
 * Runs `p11vault vault|identity|policy ...` (argv[0] is the sub-command
 * group). Finds the vault through --data DIR (DIR/admin.json, DIR/tls/ca.pem)
 * or --vault-url URL --admin FILE [--ca FILE]; gets a token from the
 * vault's token endpoint with the admin credential and calls the
 * management REST API. Prints JSON on stdout; returns the process exit
 * status (0 ok; non-zero with one line on stderr).
 */
int cli_admin(int argc, char **argv);

/* The public key of the RSA key kid (a KEK), fetched with the admin
 * credential (--data DIR, or vault_url + admin file [+ ca]). Returns 0, or
 * an exit status after printing one line. */
struct evp_pkey_st;
int cli_admin_fetch_kek(const char *data, const char *vault_url,
    const char *admin, const char *ca, const char *kid,
    struct evp_pkey_st **out);

/* cli_byok.c: `p11vault byok --kek-kid URL --kek-public FILE --key PEM
 * --out FILE` builds a BYOK transfer blob (JSON) with OpenSSL only.
 * Returns the process exit status. */
int cli_byok(int argc, char **argv);

/* One HTTPS/1.1 request (client.c): TLS 1.2+, the peer verified against
 * ca_file (NULL: the system store) and the URL's host. *resp_body
 * malloc'd (free with OPENSSL_clear_free). 0, or -1 with a reason in err. */
int cli_https(const char *base_url, const char *ca_file, const char *method,
    const char *path, const char *bearer, const char *content_type,
    const char *body, size_t body_len, int *status, char **resp_body,
    size_t *resp_len, char *err, size_t err_len) API_WUR;

/* client.c: s percent-encoded for a URL path or a form value (RFC 3986
 * unreserved characters kept). malloc'd; it may hold a secret: wipe it
 * (OPENSSL_clear_free with strlen + 1) before free. NULL: out of memory. */
char *cli_pct_encode(const char *s);

/* agent.c: `p11vault identity-agent` — the IMDS token protocol for one
 * workload host's identity. Returns the process exit status. */
int cli_identity_agent(int argc, char **argv);


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
#include "api/authz.h"

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
/* cli_seal.c: `p11vault unseal`, `p11vault rekey`, and init's unseal
 * defaults (systemd-creds with the host key as root, else none) */
int cli_unseal(int argc, char **argv);
/* DIR/serve.lock, exclusively (flock): held by serve for its life and by
 * rekey; the fd (close-on-exec), -1 when another holds it, -2 on error */
int cli_serve_lock(const char *dir);
int cli_rekey(int argc, char **argv);
const char *cli_seal_default_auto(void);
json_t *cli_seal_shares_json(const char *shares);
void cli_seal_advice(FILE *f, unsigned m, unsigned n, const char *method);
/* --share-keys A.pem,B.pem,…: how many, and each share (a line each, in
 * order) RSA-OAEP-SHA-256 encrypted to its custodian's public key (PEM
 * public key or certificate), base64: [{recipient, share}] */
int cli_seal_count_keys(const char *list);
json_t *cli_seal_shares_for(const char *shares, const char *list, char *err,
    size_t err_len);
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

/* http.c */
struct api_server;
struct api_server_opts {
	const char *listen;        /* HOST:PORT */
	const char *cert_pem_file;
	const char *key_pem_file;
	const char *key_pem;       /* the key itself (decrypted from its
	                              at-rest form), instead of the file */
};
int api_server_start(struct api_ctx *c, const struct api_server_opts *o,
    struct api_server **out, char *err, size_t err_len) API_WUR;
void api_server_stop(struct api_server *s);

#endif
