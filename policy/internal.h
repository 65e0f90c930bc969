/*
 * policy/internal.h — the policy module's private state, shared by its .c
 * files. Nothing outside policy/ may include this; callers see only the
 * opaque policy_t of policy/policy.h.
 */
#ifndef P11VAULT_POLICY_INTERNAL_H
#define P11VAULT_POLICY_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "policy/policy.h"

#define POLICY_CLIENT_ID_MAX POLICY_ID_LEN
#define POLICY_SECRET_MAX 1024        /* longest client secret accepted */
#define POLICY_HASH_MAX 256           /* longest stored secret hash */
#define POLICY_TOKEN_CACHE_SLOTS 4096 /* verified-signature cache */
#define POLICY_KID_LEN 22             /* base64url of 16 bytes */
#define POLICY_COORD_LEN 43           /* base64url of 32 bytes */
#define POLICY_ES256_SIG_LEN 64       /* JOSE's r||s for P-256 */

struct policy_principal {
	char oid[POLICY_ID_LEN + 1];
	char client_id[POLICY_CLIENT_ID_MAX + 1];
	char *secret_hash;
	int is_admin;
};

struct policy_access {
	char vault[POLICY_VAULT_MAX + 1]; /* "": the default vault */
	char oid[POLICY_ID_LEN + 1];
	unsigned perms;
};

/* One verified token signature: SHA-256 of the whole token, valid only
 * for the verify key generation it was checked against (0 = empty). */
struct policy_token_slot {
	uint8_t digest[32];
	uint64_t key_gen;
};

struct policy {
	pthread_rwlock_t lock;  /* everything below but the cache */
	char *tenant_id;        /* immutable after policy_new */
	char *issuer;           /* immutable after policy_new */
	int64_t token_lifetime; /* immutable after policy_new */
	char *dummy_hash;       /* hashed against for unknown clients */

	struct policy_principal *principals;
	size_t n_principals, cap_principals;

	struct policy_access *access;
	size_t n_access, cap_access;
	uint64_t mutations; /* every change of the two tables above */

	EVP_PKEY *verify_key; /* NULL until policy_set_verify_key */
	uint64_t key_gen;     /* bumped on every key change */
	char kid[POLICY_KID_LEN + 1];
	char jwk_x[POLICY_COORD_LEN + 1];
	char jwk_y[POLICY_COORD_LEN + 1];

	/* the token cache only; never taken
	 * while holding lock */
	pthread_mutex_t cache_lock;
	struct policy_token_slot *cache;
};

/* An object id as stored: 1..max printable non-space chars. POLICY_OK, or
 * POLICY_ERR_ARGS. */
static inline POLICY_WUR int
policy_id_check(const char *id, size_t max)
{
	size_t n;

	if (id == NULL)
		return POLICY_ERR_ARGS;
	n = strnlen(id, max + 1);
	if (n == 0 || n > max)
		return POLICY_ERR_ARGS;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)id[i];
		if (c <= 0x20 || c >= 0x7f)
			return POLICY_ERR_ARGS;
	}
	return POLICY_OK;
}

/*
 * Appends one zeroed element to a table of *cap elements of size elem, *n
 * of them used, growing by doubling up to max elements; *slot is the new
 * element. POLICY_OK, POLICY_ERR_LIMIT when *n has reached max, or
 * POLICY_ERR_NO_MEMORY. The caller holds the lock of the table.
 */
static inline POLICY_WUR int
policy_table_add(void **table, size_t *n, size_t *cap, size_t elem, size_t max,
    void **slot)
{
	size_t want;
	void *t;

	if (*n >= max)
		return POLICY_ERR_LIMIT;
	if (*n == *cap) {
		want = *cap ? *cap * 2 : 16;
		if (want > max)
			want = max;
		if (want > SIZE_MAX / elem ||
		    (t = realloc(*table, want * elem)) == NULL)
			return POLICY_ERR_NO_MEMORY;
		*table = t;
		*cap = want;
	}
	*slot = (char *)*table + *n * elem;
	memset(*slot, 0, elem);
	(*n)++;
	return POLICY_OK;
}

/*
 * Who calls whom inside policy/ (always down this list, never back):
 * policy.c (life cycle) -> token.c (JWT) -> tokenkey.c (verify key,
 * signature cache) and principal.c (the principals table) -> secret.c
 * (identifiers, secrets, scrypt) -> b64url.c; access.c stands alone.
 */

/* b64url.c: base64url of in (no padding) into s[cap], NUL-terminated,
 * without allocating: POLICY_OK, or POLICY_ERR_ARGS when it does not fit. */
int b64url_encode_to(const uint8_t *in, size_t len, char *s,
    size_t cap) POLICY_WUR;

/* secret.c: POLICY_OK if hash is a well-formed "scrypt$..." string, else
 * POLICY_ERR_ARGS. */
int policy_secret_hash_wellformed(const char *hash) POLICY_WUR;

/* principal.c: wipes and frees the principals table. */
void policy_principals_free(policy_t *p);

/* tokenkey.c: frees the verify key (the cache's memory is policy.c's). */
void policy_verify_key_free(policy_t *p);
/* A counted reference to the current verify key (EVP_PKEY_free it), its
 * kid and generation: POLICY_OK, or POLICY_ERR_DENIED when there is none
 * yet. */
int policy_verify_key_take(policy_t *p, EVP_PKEY **key,
    char kid[POLICY_KID_LEN + 1], uint64_t *gen) POLICY_WUR;
/* POLICY_OK if raw (r||s, POLICY_ES256_SIG_LEN bytes) is a valid ES256
 * signature by key over data, else POLICY_ERR_DENIED. */
int policy_es256_verify(EVP_PKEY *key, const uint8_t *data, size_t len,
    const uint8_t *raw, size_t raw_len) POLICY_WUR;
/* The cache of verified signatures, by SHA-256 of the whole token and key
 * generation: lookup is POLICY_OK on a hit, else POLICY_ERR_NOT_FOUND. */
int policy_sig_cache_lookup(policy_t *p, const uint8_t digest[32],
    uint64_t gen) POLICY_WUR;
void policy_sig_cache_put(policy_t *p, const uint8_t digest[32], uint64_t gen);

#endif
