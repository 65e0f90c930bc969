/*
 * policy — who may do what. Principals, client-secret checks, access
 * policies, the decision function, and the JWT bearer tokens.
 *
 * Owns: an in-memory table of principals and access policies (the caller,
 * api/, loads it from the store at start and keeps it in step with every
 * durable change), secret hashing (scrypt), JWT issue and verification.
 * Files: policy.c (life cycle), token.c (JWT), tokenkey.c (verify key and
 * signature cache), principal.c (principals, credential check), secret.c
 * (ids, secrets, scrypt), access.c (access policies, the decision),
 * b64url.c.
 *
 * Must never: touch PKCS#11 (signing goes through a callback), SQL, HTTP;
 * log or return a secret or a token; compare secrets other than in
 * constant time. Deny by default.
 *
 * Thread safety: all functions may be called concurrently (rwlock inside).
 */
#ifndef P11VAULT_POLICY_H
#define P11VAULT_POLICY_H

#include <stddef.h>
#include <stdint.h>

#define POLICY_WUR __attribute__((warn_unused_result))

enum policy_err {
	POLICY_OK = 0,
	POLICY_ERR_ARGS = -1,   /* malformed input */
	POLICY_ERR_DENIED = -2, /* bad credential / token */
	POLICY_ERR_NO_MEMORY = -3,
	POLICY_ERR_INTERNAL = -4,
	POLICY_ERR_LIMIT = -5,     /* more than POLICY_MAX_POLICIES */
	POLICY_ERR_NOT_FOUND = -6, /* no such principal */
	POLICY_ERR_CONFLICT = -7,  /* changed meanwhile (policy_tables_swap) */
};

/* Azure's key permissions, one bit each. */
enum policy_perm {
	PERM_GET = 1u << 0,
	PERM_LIST = 1u << 1,
	PERM_UPDATE = 1u << 2,
	PERM_CREATE = 1u << 3,
	PERM_IMPORT = 1u << 4,
	PERM_DELETE = 1u << 5,
	PERM_RECOVER = 1u << 6,
	PERM_BACKUP = 1u << 7,
	PERM_RESTORE = 1u << 8,
	PERM_DECRYPT = 1u << 9,
	PERM_ENCRYPT = 1u << 10,
	PERM_UNWRAPKEY = 1u << 11,
	PERM_WRAPKEY = 1u << 12,
	PERM_VERIFY = 1u << 13,
	PERM_SIGN = 1u << 14,
	PERM_PURGE = 1u << 15,
	PERM_ROTATE = 1u << 16,
	PERM_GETROTATIONPOLICY = 1u << 17,
	PERM_SETROTATIONPOLICY = 1u << 18,
};
#define PERM_ALL ((1u << 19) - 1)
#define POLICY_MAX_POLICIES 1024
#define POLICY_ID_LEN 36 /* a UUID's text, without NUL */

/* Case-insensitive Azure name ("wrapKey", "all", ...) to bit(s):
 * POLICY_OK, or POLICY_ERR_ARGS if unknown. */
int policy_perm_parse(const char *name, unsigned *bits) POLICY_WUR;
/* Azure's spelling of one bit ("wrapKey"); NULL for anything else. */
const char *policy_perm_name(unsigned bit);

/* Random UUID v4 text into out[37]. */
void policy_uuid(char out[POLICY_ID_LEN + 1]);
/* A fresh client secret (base64url of 32 random bytes) into out[64]. */
void policy_secret_new(char out[64]);
/* scrypt with a random salt; *hash is a malloc'd self-describing string
 * "scrypt$N$r$p$salt$hash" (base64url parts). */
int policy_secret_hash(const char *secret, char **hash) POLICY_WUR;
/* POLICY_OK if secret matches hash (constant-time compare), else
 * POLICY_ERR_DENIED. */
int policy_secret_verify(const char *hash, const char *secret) POLICY_WUR;

typedef struct policy policy_t;

struct policy_config {
	const char *tenant_id; /* the vault's tenant */
	/* iss of issued tokens, e.g.
	 * "{vaultUrl}/{tenantId}/v2.0" */
	const char *issuer;
	int64_t token_lifetime; /* seconds; 0 = 3600 */
};

int policy_new(const struct policy_config *cfg, policy_t **out) POLICY_WUR;
void policy_free(policy_t *p);

/* Principals (identities). secret_hash is copied. Replaces by object_id. */
/* Empties p's principals and access policies (the verify key stays). */
void policy_tables_clear(policy_t *p);
/* How many changes live's principals and access policies have seen. */
uint64_t policy_mutations(policy_t *p);
/* Exchanges the principals and access policies of live and spare at once
 * (each under its write lock): a whole reload (another node's write,
 * docs/cluster.md) replaces live's in one step, never half; only while
 * live has seen no change since policy_mutations gave mutations (else
 * POLICY_ERR_CONFLICT, nothing swapped: a change made meanwhile may be
 * missing from spare; read again). */
int policy_tables_swap(policy_t *live, policy_t *spare,
    uint64_t mutations) POLICY_WUR;
int policy_principal_set(policy_t *p, const char *object_id,
    const char *client_id, const char *secret_hash, int is_admin) POLICY_WUR;
/* POLICY_OK (also when there was none), POLICY_ERR_ARGS for a malformed
 * id, POLICY_ERR_INTERNAL when the table cannot be locked. */
int policy_principal_remove(policy_t *p, const char *object_id) POLICY_WUR;
/* Checks a client credential; on success fills oid (37 bytes) and
 * *is_admin. POLICY_ERR_DENIED otherwise (also for an unknown client). */
int policy_authenticate(policy_t *p, const char *client_id, const char *secret,
    char oid[POLICY_ID_LEN + 1], int *is_admin) POLICY_WUR;
/* POLICY_OK if the principal exists and is an administrator, else
 * POLICY_ERR_DENIED. */
int policy_check_admin(policy_t *p, const char *object_id) POLICY_WUR;
/* POLICY_OK if the principal exists, else POLICY_ERR_NOT_FOUND. */
int policy_principal_find(policy_t *p, const char *object_id) POLICY_WUR;

/* Access policies: perms is a mask of enum policy_perm. */
int policy_access_set(policy_t *p, const char *object_id,
    unsigned perms) POLICY_WUR;
/* As policy_principal_remove. */
int policy_access_remove(policy_t *p, const char *object_id) POLICY_WUR;
/* Deny by default: POLICY_OK only if object_id has a policy holding perm
 * (exactly one bit), else POLICY_ERR_DENIED. */
int policy_check_perm(policy_t *p, const char *object_id,
    unsigned perm) POLICY_WUR;
/* Current permissions of object_id (0 if none). */
unsigned policy_access_get(policy_t *p, const char *object_id);
/* The same in one vault of several: vault is its name ("" or NULL: the
 * default vault, the one the calls above mean). A policy in one vault
 * grants nothing in another. */
#define POLICY_VAULT_MAX 24
int policy_access_set_in(policy_t *p, const char *vault, const char *object_id,
    unsigned perms) POLICY_WUR;
int policy_access_remove_in(policy_t *p, const char *vault,
    const char *object_id) POLICY_WUR;
int policy_check_perm_in(policy_t *p, const char *vault, const char *object_id,
    unsigned perm) POLICY_WUR;
unsigned policy_access_get_in(policy_t *p, const char *vault,
    const char *object_id);
/* Drops every policy of a vault (purged). */
void policy_access_drop_vault(policy_t *p, const char *vault);

/* JWT. The signer computes ES256 over data and writes 64 bytes r||s. */
typedef int (*policy_sign_fn)(void *ctx, const uint8_t *data, size_t len,
    uint8_t sig[64]);

/* Public key that verifies tokens (DER SubjectPublicKeyInfo, EC P-256);
 * the key id ("kid") published in the JWKS is derived from it. */
int policy_set_verify_key(policy_t *p, const uint8_t *spki,
    size_t len) POLICY_WUR;
/* The JWKS document's "keys" entry parts for that key: kid, x, y
 * (base64url), each malloc'd into the out pointers. */
int policy_jwk(policy_t *p, char **kid, char **x, char **y) POLICY_WUR;

struct policy_caller {
	char oid[POLICY_ID_LEN + 1];
	char appid[POLICY_ID_LEN + 1];
	char tid[POLICY_ID_LEN + 1];
	int64_t exp;
};

/* Issues an ES256 JWT with iss, aud, tid, oid, appid, iat, nbf, exp, and
 * a random jti. *jwt malloc'd. */
int policy_token_issue(policy_t *p, const char *oid, const char *appid,
    const char *audience, int64_t now, policy_sign_fn sign, void *sign_ctx,
    char **jwt, int64_t *expires_in) POLICY_WUR;

/*
 * Verifies a bearer token: structure, alg ES256 only (none, HS*, RS*
 * refused), signature with the verify key, iss, tid == the vault's tenant,
 * aud == audience (also accepted: audience + "/" and without one), nbf/exp
 * against now (60 s skew), and that oid is still a known principal.
 * Signatures already verified are cached (by token hash); the claims and
 * the principal's existence are rechecked every call.
 * POLICY_ERR_DENIED for anything wrong.
 */
int policy_token_verify(policy_t *p, const char *jwt, const char *audience,
    int64_t now, struct policy_caller *out) POLICY_WUR;

/* base64url without padding; decoding accepts padding and rejects any
 * other character. Encode: *out malloc'd, NUL-terminated. Decode: *out
 * malloc'd, *out_len set. */
int policy_b64url_encode(const uint8_t *in, size_t len, char **out) POLICY_WUR;
int policy_b64url_decode(const char *in, size_t len, uint8_t **out,
    size_t *out_len) POLICY_WUR;

#endif
