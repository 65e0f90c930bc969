/*
 * policy/principal.c — the principals table (object id, client id, stored
 * secret hash, administrator flag) and the client-credential check.
 *
 * Owns: principals, and which client id names which principal. Must
 * never: keep or log a clear secret, free a hash unwiped, or answer
 * faster for an unknown client than for a known one.
 */
#include <stdlib.h>
#include <string.h>

#include "hsm/buf.h"
#include "policy/internal.h"

static void
principal_clear(struct policy_principal *pr)
{
	freezero_str(pr->secret_hash);
	memset(pr, 0, sizeof(*pr));
}

void
policy_principals_free(policy_t *p)
{
	for (size_t i = 0; i < p->n_principals; i++)
		principal_clear(&p->principals[i]);
	free(p->principals);
	p->principals = NULL;
	p->n_principals = p->cap_principals = 0;
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

/* Adds or replaces object_id's entry, taking *hash on success. Caller
 * holds the write lock. */
static POLICY_WUR int
principal_store(policy_t *p, const char *object_id, const char *client_id,
    char **hash, int is_admin)
{
	struct policy_principal *pr, *other;
	void *table, *slot;
	int r;

	other = principal_by_client(p, client_id);
	pr = principal_by_oid(p, object_id);
	if (other != NULL && other != pr)
		return POLICY_ERR_ARGS; /* a client_id names one principal */
	if (pr == NULL) {
		table = p->principals;
		r = policy_table_add(&table, &p->n_principals,
		    &p->cap_principals, sizeof(*pr), SIZE_MAX / sizeof(*pr),
		    &slot);
		p->principals = table;
		if (r != POLICY_OK)
			return r;
		pr = slot;
		memcpy(pr->oid, object_id, strlen(object_id) + 1);
	}
	freezero_str(pr->secret_hash);
	memcpy(pr->client_id, client_id, strlen(client_id) + 1);
	pr->secret_hash = *hash;
	pr->is_admin = is_admin ? 1 : 0;
	*hash = NULL;
	return POLICY_OK;
}

int
policy_principal_set(policy_t *p, const char *object_id, const char *client_id,
    const char *secret_hash, int is_admin)
{
	char *h = NULL;
	int r;

	if (p == NULL || policy_id_check(object_id, POLICY_ID_LEN) != 0 ||
	    policy_id_check(client_id, POLICY_CLIENT_ID_MAX) != 0 ||
	    policy_secret_hash_wellformed(secret_hash) != POLICY_OK)
		return POLICY_ERR_ARGS;
	if ((h = strdup(secret_hash)) == NULL)
		return POLICY_ERR_NO_MEMORY;
	if (pthread_rwlock_wrlock(&p->lock) != 0) {
		r = POLICY_ERR_INTERNAL;
		goto out;
	}
	p->mutations++;
	r = principal_store(p, object_id, client_id, &h, is_admin);
	pthread_rwlock_unlock(&p->lock);
out:
	freezero_str(h);
	return r;
}

int
policy_principal_remove(policy_t *p, const char *object_id)
{
	struct policy_principal *pr;

	if (p == NULL || policy_id_check(object_id, POLICY_ID_LEN) != 0)
		return POLICY_ERR_ARGS;
	if (pthread_rwlock_wrlock(&p->lock) != 0)
		return POLICY_ERR_INTERNAL;
	p->mutations++;
	if ((pr = principal_by_oid(p, object_id)) != NULL) {
		principal_clear(pr);
		*pr = p->principals[--p->n_principals];
		memset(&p->principals[p->n_principals], 0, sizeof(*pr));
	}
	pthread_rwlock_unlock(&p->lock);
	return POLICY_OK;
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
	if (secret == NULL ||
	    strnlen(secret, POLICY_SECRET_MAX + 1) > POLICY_SECRET_MAX)
		return POLICY_ERR_DENIED;
	if (policy_id_check(client_id, POLICY_CLIENT_ID_MAX) == 0) {
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
	/* out of memory is not a wrong secret: the caller answers 500 */
	r = policy_secret_verify(found ? hash : p->dummy_hash, secret);
	if (r != POLICY_OK || !found) {
		if (r != POLICY_ERR_NO_MEMORY)
			r = POLICY_ERR_DENIED;
		goto out;
	}
	memcpy(oid, found_oid, sizeof(found_oid));
	*is_admin = admin;
	r = POLICY_OK;
out:
	freezero_str(hash);
	return r;
}

int
policy_check_admin(policy_t *p, const char *object_id)
{
	struct policy_principal *pr;
	int rc = POLICY_ERR_DENIED;

	if (p == NULL || policy_id_check(object_id, POLICY_ID_LEN) != 0)
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

	if (p == NULL || policy_id_check(object_id, POLICY_ID_LEN) != 0)
		return POLICY_ERR_NOT_FOUND;
	if (pthread_rwlock_rdlock(&p->lock) != 0)
		return POLICY_ERR_INTERNAL;
	rc = principal_by_oid(p, object_id) != NULL ? POLICY_OK :
	                                              POLICY_ERR_NOT_FOUND;
	pthread_rwlock_unlock(&p->lock);
	return rc;
}
