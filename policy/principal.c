/*
 * policy/principal.c — the policy table's life cycle, principals, client
 * secret hashing (scrypt) and client-credential checks.
 *
 * Owns: the principals table, random identifiers and secrets, the stored
 * hash format "scrypt$N$r$p$salt$hash". Must never: keep or log a clear
 * secret, compare a secret or hash other than with CRYPTO_memcmp, or
 * answer faster for an unknown client than for a known one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "policy/internal.h"

#define SCRYPT_N 16384
#define SCRYPT_R 8
#define SCRYPT_P 1
#define SCRYPT_MAXMEM (64u * 1024 * 1024)
#define SALT_LEN 16
#define DK_LEN 32
/* Bounds on parameters read back from a stored hash. */
#define SCRYPT_N_MAX (1u << 20)
#define SCRYPT_R_MAX 32
#define SCRYPT_P_MAX 16
#define SALT_MIN 8
#define SALT_MAX 64
#define DK_MIN 16
#define DK_MAX 64

struct scrypt_hash {
	uint64_t n, r, p;
	uint8_t *salt;
	size_t salt_len;
	uint8_t *dk;
	size_t dk_len;
};

static void
random_or_abort(uint8_t *buf, size_t len)
{
	/* Callers have no error path (void in policy.h); an identifier or
	 * secret that is not random is worse than stopping. */
	if (len > INT32_MAX || RAND_bytes(buf, (int)len) != 1)
		abort();
}

void
policy_uuid(char out[POLICY_ID_LEN + 1])
{
	/* Identifiers, not secrets: each thread draws them from OpenSSL in
	 * blocks of 16, which spares a RAND_bytes call (and its fork
	 * check, a system call) on every request. */
	static __thread uint8_t pool[256];
	static __thread size_t used = sizeof(pool);
	static const char hex[] = "0123456789abcdef";
	uint8_t b[16];
	size_t i, o = 0;

	if (used + sizeof(b) > sizeof(pool)) {
		random_or_abort(pool, sizeof(pool));
		used = 0;
	}
	memcpy(b, pool + used, sizeof(b));
	OPENSSL_cleanse(pool + used, sizeof(b));
	used += sizeof(b);
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	for (i = 0; i < sizeof(b); i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 0x0f];
	}
	out[o] = '\0';
	if (o != POLICY_ID_LEN)
		abort();
}

void
policy_secret_new(char out[64])
{
	uint8_t b[32];
	char *s = NULL;

	random_or_abort(b, sizeof(b));
	if (policy_b64url_encode(b, sizeof(b), &s) != POLICY_OK ||
	    strlen(s) >= 64)
		abort();
	memcpy(out, s, strlen(s) + 1);
	OPENSSL_cleanse(b, sizeof(b));
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

static int
parse_u64(const char *s, uint64_t max, uint64_t *v)
{
	char *end;
	unsigned long long x;

	if (*s < '1' || *s > '9')   /* no sign, space or leading zero */
		return -1;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || x > max)
		return -1;
	*v = x;
	return 0;
}

static void
scrypt_hash_clear(struct scrypt_hash *h)
{
	free(h->salt);
	if (h->dk != NULL)
		OPENSSL_cleanse(h->dk, h->dk_len);
	free(h->dk);
	memset(h, 0, sizeof(*h));
}

/* Splits "scrypt$N$r$p$salt$hash" and bounds every part. */
static int
scrypt_hash_parse(const char *hash, struct scrypt_hash *h)
{
	char buf[POLICY_HASH_MAX + 1];
	char *field[6];
	size_t len, nf = 0;
	int r = POLICY_ERR_ARGS;

	memset(h, 0, sizeof(*h));
	if (hash == NULL || (len = strnlen(hash, POLICY_HASH_MAX + 1)) >
	    POLICY_HASH_MAX)
		return POLICY_ERR_ARGS;
	memcpy(buf, hash, len + 1);
	field[nf++] = buf;
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '$')
			continue;
		if (nf == 6)
			goto out;
		buf[i] = '\0';
		field[nf++] = &buf[i + 1];
	}
	if (nf != 6 || strcmp(field[0], "scrypt") != 0)
		goto out;
	if (parse_u64(field[1], SCRYPT_N_MAX, &h->n) != 0 || h->n < 2 ||
	    (h->n & (h->n - 1)) != 0 ||
	    parse_u64(field[2], SCRYPT_R_MAX, &h->r) != 0 ||
	    parse_u64(field[3], SCRYPT_P_MAX, &h->p) != 0)
		goto out;
	if ((r = policy_b64url_decode(field[4], strlen(field[4]), &h->salt,
	    &h->salt_len)) != POLICY_OK)
		goto out;
	if ((r = policy_b64url_decode(field[5], strlen(field[5]), &h->dk,
	    &h->dk_len)) != POLICY_OK)
		goto out;
	r = POLICY_ERR_ARGS;
	if (h->salt_len < SALT_MIN || h->salt_len > SALT_MAX ||
	    h->dk_len < DK_MIN || h->dk_len > DK_MAX)
		goto out;
	r = POLICY_OK;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	if (r != POLICY_OK)
		scrypt_hash_clear(h);
	return r;
}

int
policy_secret_hash_wellformed(const char *hash)
{
	struct scrypt_hash h;
	int r;

	r = scrypt_hash_parse(hash, &h);
	scrypt_hash_clear(&h);
	return r;
}

int
policy_secret_hash(const char *secret, char **hash)
{
	uint8_t salt[SALT_LEN], dk[DK_LEN];
	char *salt_s = NULL, *dk_s = NULL, buf[POLICY_HASH_MAX + 1];
	size_t slen;
	int n, r = POLICY_ERR_ARGS;

	if (hash == NULL)
		return POLICY_ERR_ARGS;
	*hash = NULL;
	if (secret == NULL || (slen = strnlen(secret, POLICY_SECRET_MAX + 1))
	    > POLICY_SECRET_MAX)
		return POLICY_ERR_ARGS;
	if (RAND_bytes(salt, sizeof(salt)) != 1) {
		r = POLICY_ERR_INTERNAL;
		goto out;
	}
	if (EVP_PBE_scrypt(secret, slen, salt, sizeof(salt), SCRYPT_N,
	    SCRYPT_R, SCRYPT_P, SCRYPT_MAXMEM, dk, sizeof(dk)) != 1) {
		r = POLICY_ERR_INTERNAL;
		goto out;
	}
	if ((r = policy_b64url_encode(salt, sizeof(salt), &salt_s)) != 0 ||
	    (r = policy_b64url_encode(dk, sizeof(dk), &dk_s)) != 0)
		goto out;
	n = snprintf(buf, sizeof(buf), "scrypt$%d$%d$%d$%s$%s", SCRYPT_N,
	    SCRYPT_R, SCRYPT_P, salt_s, dk_s);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		r = POLICY_ERR_INTERNAL;
		goto out;
	}
	if ((*hash = strdup(buf)) == NULL) {
		r = POLICY_ERR_NO_MEMORY;
		goto out;
	}
	r = POLICY_OK;
out:
	OPENSSL_cleanse(dk, sizeof(dk));
	OPENSSL_cleanse(buf, sizeof(buf));
	if (dk_s != NULL)
		OPENSSL_cleanse(dk_s, strlen(dk_s));
	free(dk_s);
	free(salt_s);
	return r;
}

int
policy_secret_verify(const char *hash, const char *secret)
{
	struct scrypt_hash h;
	uint8_t dk[DK_MAX];
	size_t slen;
	int rc = POLICY_ERR_DENIED;

	memset(dk, 0, sizeof(dk));
	if (secret == NULL || (slen = strnlen(secret, POLICY_SECRET_MAX + 1))
	    > POLICY_SECRET_MAX)
		return POLICY_ERR_DENIED;
	if (scrypt_hash_parse(hash, &h) != POLICY_OK)
		return POLICY_ERR_DENIED;
	if (EVP_PBE_scrypt(secret, slen, h.salt, h.salt_len, h.n, h.r, h.p,
	    SCRYPT_MAXMEM, dk, h.dk_len) != 1)
		goto out;
	if (CRYPTO_memcmp(dk, h.dk, h.dk_len) == 0)
		rc = POLICY_OK;
out:
	OPENSSL_cleanse(dk, sizeof(dk));
	scrypt_hash_clear(&h);
	return rc;
}

int
policy_new(const struct policy_config *cfg, policy_t **out)
{
	policy_t *p = NULL;
	char secret[64];
	int r = POLICY_ERR_ARGS, rw_init = 0, mx_init = 0;

	if (out == NULL)
		return POLICY_ERR_ARGS;
	*out = NULL;
	if (cfg == NULL || !policy_id_valid(cfg->tenant_id, POLICY_ID_LEN) ||
	    cfg->issuer == NULL || cfg->issuer[0] == '\0' ||
	    cfg->token_lifetime < 0)
		return POLICY_ERR_ARGS;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return POLICY_ERR_NO_MEMORY;
	r = POLICY_ERR_INTERNAL;
	if (pthread_rwlock_init(&p->lock, NULL) != 0)
		goto out;
	rw_init = 1;
	if (pthread_mutex_init(&p->cache_lock, NULL) != 0)
		goto out;
	mx_init = 1;
	r = POLICY_ERR_NO_MEMORY;
	if ((p->tenant_id = strdup(cfg->tenant_id)) == NULL ||
	    (p->issuer = strdup(cfg->issuer)) == NULL ||
	    (p->cache = calloc(POLICY_TOKEN_CACHE_SLOTS,
	    sizeof(*p->cache))) == NULL)
		goto out;
	p->token_lifetime = cfg->token_lifetime ? cfg->token_lifetime : 3600;
	/* A hash nobody knows the secret of, so that an unknown client_id
	 * costs the same scrypt as a known one. */
	policy_secret_new(secret);
	if ((r = policy_secret_hash(secret, &p->dummy_hash)) != POLICY_OK)
		goto out;
	*out = p;
	p = NULL;
	r = POLICY_OK;
out:
	OPENSSL_cleanse(secret, sizeof(secret));
	if (p != NULL) {
		free(p->tenant_id);
		free(p->issuer);
		free(p->cache);
		free(p->dummy_hash);
		if (mx_init)
			pthread_mutex_destroy(&p->cache_lock);
		if (rw_init)
			pthread_rwlock_destroy(&p->lock);
		free(p);
	}
	return r;
}

static void
principal_clear(struct policy_principal *pr)
{
	if (pr->secret_hash != NULL) {
		OPENSSL_cleanse(pr->secret_hash, strlen(pr->secret_hash));
		free(pr->secret_hash);
	}
	memset(pr, 0, sizeof(*pr));
}

void
policy_free(policy_t *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n_principals; i++)
		principal_clear(&p->principals[i]);
	free(p->principals);
	free(p->access);
	policy_token_state_free(p);
	free(p->cache);
	free(p->tenant_id);
	free(p->issuer);
	free(p->dummy_hash);
	pthread_mutex_destroy(&p->cache_lock);
	pthread_rwlock_destroy(&p->lock);
	free(p);
}

/* Caller holds the lock. */
static struct policy_principal *
principal_by_oid(policy_t *p, const char *oid)
{
	for (size_t i = 0; i < p->n_principals; i++)
		if (strcmp(p->principals[i].oid, oid) == 0)
			return &p->principals[i];
	return NULL;
}

static struct policy_principal *
principal_by_client(policy_t *p, const char *client_id)
{
	for (size_t i = 0; i < p->n_principals; i++)
		if (strcmp(p->principals[i].client_id, client_id) == 0)
			return &p->principals[i];
	return NULL;
}

int
policy_principal_set(policy_t *p, const char *object_id,
    const char *client_id, const char *secret_hash, int is_admin)
{
	struct policy_principal *pr, *other;
	char *h = NULL;
	int r = POLICY_ERR_ARGS;

	if (p == NULL || !policy_id_valid(object_id, POLICY_ID_LEN) ||
	    !policy_id_valid(client_id, POLICY_CLIENT_ID_MAX) ||
	    policy_secret_hash_wellformed(secret_hash) != POLICY_OK)
		return POLICY_ERR_ARGS;
	if ((h = strdup(secret_hash)) == NULL)
		return POLICY_ERR_NO_MEMORY;
	if (pthread_rwlock_wrlock(&p->lock) != 0) {
		r = POLICY_ERR_INTERNAL;
		goto out;
	}
	other = principal_by_client(p, client_id);
	pr = principal_by_oid(p, object_id);
	if (other != NULL && other != pr) {
		/* A client_id names exactly one principal. */
		r = POLICY_ERR_ARGS;
		goto unlock;
	}
	if (pr == NULL) {
		if (p->n_principals == p->cap_principals) {
			size_t cap = p->cap_principals ? p->cap_principals * 2
			    : 16;
			struct policy_principal *n;

			if (cap > SIZE_MAX / sizeof(*n) ||
			    (n = realloc(p->principals, cap * sizeof(*n))) ==
			    NULL) {
				r = POLICY_ERR_NO_MEMORY;
				goto unlock;
			}
			p->principals = n;
			p->cap_principals = cap;
		}
		pr = &p->principals[p->n_principals++];
		memset(pr, 0, sizeof(*pr));
		memcpy(pr->oid, object_id, strlen(object_id) + 1);
	}
	if (pr->secret_hash != NULL) {
		OPENSSL_cleanse(pr->secret_hash, strlen(pr->secret_hash));
		free(pr->secret_hash);
	}
	memcpy(pr->client_id, client_id, strlen(client_id) + 1);
	pr->secret_hash = h;
	pr->is_admin = is_admin ? 1 : 0;
	h = NULL;
	r = POLICY_OK;
unlock:
	pthread_rwlock_unlock(&p->lock);
out:
	if (h != NULL) {
		OPENSSL_cleanse(h, strlen(h));
		free(h);
	}
	return r;
}

void
policy_principal_remove(policy_t *p, const char *object_id)
{
	struct policy_principal *pr;

	if (p == NULL || !policy_id_valid(object_id, POLICY_ID_LEN))
		return;
	if (pthread_rwlock_wrlock(&p->lock) != 0)
		return;
	if ((pr = principal_by_oid(p, object_id)) != NULL) {
		principal_clear(pr);
		*pr = p->principals[--p->n_principals];
		memset(&p->principals[p->n_principals], 0, sizeof(*pr));
	}
	pthread_rwlock_unlock(&p->lock);
}

int
policy_authenticate(policy_t *p, const char *client_id, const char *secret,
    char oid[POLICY_ID_LEN + 1], int *is_admin)
{
	struct policy_principal *pr;
	char found_oid[POLICY_ID_LEN + 1];
	char *hash = NULL;
	int found = 0, oom = 0, admin = 0, r = POLICY_ERR_DENIED;

	if (p == NULL || oid == NULL || is_admin == NULL)
		return POLICY_ERR_ARGS;
	oid[0] = '\0';
	*is_admin = 0;
	found_oid[0] = '\0';
	if (secret == NULL || strnlen(secret, POLICY_SECRET_MAX + 1) >
	    POLICY_SECRET_MAX)
		return POLICY_ERR_DENIED;
	if (policy_id_valid(client_id, POLICY_CLIENT_ID_MAX)) {
		if (pthread_rwlock_rdlock(&p->lock) != 0)
			return POLICY_ERR_INTERNAL;
		if ((pr = principal_by_client(p, client_id)) != NULL) {
			/* Copied out: scrypt runs without the lock. */
			if ((hash = strdup(pr->secret_hash)) == NULL) {
				oom = 1;
			} else {
				found = 1;
				admin = pr->is_admin;
				memcpy(found_oid, pr->oid, sizeof(found_oid));
			}
		}
		pthread_rwlock_unlock(&p->lock);
		if (oom)
			return POLICY_ERR_NO_MEMORY;
	}
	if (policy_secret_verify(found ? hash : p->dummy_hash, secret) != POLICY_OK ||
	    !found)
		goto out;
	memcpy(oid, found_oid, sizeof(found_oid));
	*is_admin = admin;
	r = POLICY_OK;
out:
	if (hash != NULL) {
		OPENSSL_cleanse(hash, strlen(hash));
		free(hash);
	}
	return r;
}

int
policy_check_admin(policy_t *p, const char *object_id)
{
	struct policy_principal *pr;
	int rc = POLICY_ERR_DENIED;

	if (p == NULL || !policy_id_valid(object_id, POLICY_ID_LEN))
		return POLICY_ERR_DENIED;
	if (pthread_rwlock_rdlock(&p->lock) != 0)
		return POLICY_ERR_DENIED;
	if ((pr = principal_by_oid(p, object_id)) != NULL && pr->is_admin)
		rc = POLICY_OK;
	pthread_rwlock_unlock(&p->lock);
	return rc;
}

int
policy_principal_find(policy_t *p, const char *object_id)
{
	int rc;

	if (p == NULL || !policy_id_valid(object_id, POLICY_ID_LEN))
		return POLICY_ERR_NOT_FOUND;
	if (pthread_rwlock_rdlock(&p->lock) != 0)
		return POLICY_ERR_INTERNAL;
	rc = principal_by_oid(p, object_id) != NULL ? POLICY_OK :
	    POLICY_ERR_NOT_FOUND;
	pthread_rwlock_unlock(&p->lock);
	return rc;
}
