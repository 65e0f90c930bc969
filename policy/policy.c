/*
 * policy/policy.c — the policy table's life cycle: policy_new and
 * policy_free, the locks, the immutable configuration (tenant, issuer,
 * token lifetime), the token cache's memory and the dummy hash.
 *
 * Owns: creating and destroying a policy_t, calling down to each file of
 * the room for its part. Must never: decide anything (that is access.c,
 * principal.c and token.c), or free a principal's hash unwiped.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "hsm/buf.h"
#include "policy/internal.h"

/* Everything policy_new may have made; each part may be missing. */
static void
policy_destroy(policy_t *p, int rw_init, int mx_init)
{
	policy_principals_free(p);
	free(p->access);
	policy_verify_key_free(p);
	free(p->cache);
	free(p->tenant_id);
	free(p->issuer);
	freezero_str(p->dummy_hash);
	if (mx_init)
		pthread_mutex_destroy(&p->cache_lock);
	if (rw_init)
		pthread_rwlock_destroy(&p->lock);
	free(p);
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
	if (cfg == NULL ||
	    policy_id_check(cfg->tenant_id, POLICY_ID_LEN) != 0 ||
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
	    (p->cache = calloc(POLICY_TOKEN_CACHE_SLOTS, sizeof(*p->cache))) ==
	        NULL)
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
	if (p != NULL)
		policy_destroy(p, rw_init, mx_init);
	return r;
}

void
policy_free(policy_t *p)
{
	if (p != NULL)
		policy_destroy(p, 1, 1);
}

void
policy_tables_clear(policy_t *p)
{
	if (p == NULL || pthread_rwlock_wrlock(&p->lock) != 0)
		return;
	policy_principals_free(p);
	free(p->access);
	p->access = NULL;
	p->n_access = p->cap_access = 0;
	pthread_rwlock_unlock(&p->lock);
}

#define SWAP(T, x, y) \
	do { \
		T t_ = (x); \
		(x) = (y); \
		(y) = t_; \
	} while (0)

uint64_t
policy_mutations(policy_t *p)
{
	uint64_t m = 0;

	if (p != NULL && pthread_rwlock_rdlock(&p->lock) == 0) {
		m = p->mutations;
		pthread_rwlock_unlock(&p->lock);
	}
	return m;
}

int
policy_tables_swap(policy_t *live, policy_t *spare, uint64_t mutations)
{
	int r = POLICY_ERR_CONFLICT;

	if (live == NULL || spare == NULL || live == spare)
		return POLICY_ERR_ARGS;
	if (pthread_rwlock_wrlock(&spare->lock) != 0)
		return POLICY_ERR_INTERNAL;
	if (pthread_rwlock_wrlock(&live->lock) != 0) {
		pthread_rwlock_unlock(&spare->lock);
		return POLICY_ERR_INTERNAL;
	}
	if (live->mutations == mutations) {
		SWAP(struct policy_principal *, live->principals,
		    spare->principals);
		SWAP(size_t, live->n_principals, spare->n_principals);
		SWAP(size_t, live->cap_principals, spare->cap_principals);
		SWAP(struct policy_access *, live->access, spare->access);
		SWAP(size_t, live->n_access, spare->n_access);
		SWAP(size_t, live->cap_access, spare->cap_access);
		live->mutations++;
		r = POLICY_OK;
	}
	pthread_rwlock_unlock(&live->lock);
	pthread_rwlock_unlock(&spare->lock);
	return r;
}
