/*
 * policy/access.c — access policies and the decision function.
 *
 * Owns: the table object id -> key permissions (at most
 * POLICY_MAX_POLICIES) and Azure's permission names. Must never: allow
 * anything that no policy grants (deny by default), or cache a decision —
 * a removed policy is gone for the very next call.
 */
#include <string.h>
#include <strings.h>

#include "policy/internal.h"

static const struct {
	const char *name;
	unsigned bit;
} perm_names[] = {
	{ "get", PERM_GET },
	{ "list", PERM_LIST },
	{ "update", PERM_UPDATE },
	{ "create", PERM_CREATE },
	{ "import", PERM_IMPORT },
	{ "delete", PERM_DELETE },
	{ "recover", PERM_RECOVER },
	{ "backup", PERM_BACKUP },
	{ "restore", PERM_RESTORE },
	{ "decrypt", PERM_DECRYPT },
	{ "encrypt", PERM_ENCRYPT },
	{ "unwrapKey", PERM_UNWRAPKEY },
	{ "wrapKey", PERM_WRAPKEY },
	{ "verify", PERM_VERIFY },
	{ "sign", PERM_SIGN },
	{ "purge", PERM_PURGE },
	{ "rotate", PERM_ROTATE },
	{ "getrotationpolicy", PERM_GETROTATIONPOLICY },
	{ "setrotationpolicy", PERM_SETROTATIONPOLICY },
};

#define N_PERM_NAMES (sizeof(perm_names) / sizeof(perm_names[0]))

int
policy_perm_parse(const char *name, unsigned *bits)
{
	if (name == NULL || bits == NULL)
		return POLICY_ERR_ARGS;
	if (strcasecmp(name, "all") == 0) {
		*bits = PERM_ALL;
		return POLICY_OK;
	}
	for (size_t i = 0; i < N_PERM_NAMES; i++) {
		if (strcasecmp(name, perm_names[i].name) == 0) {
			*bits = perm_names[i].bit;
			return POLICY_OK;
		}
	}
	return POLICY_ERR_ARGS;
}

const char *
policy_perm_name(unsigned bit)
{
	for (size_t i = 0; i < N_PERM_NAMES; i++)
		if (perm_names[i].bit == bit)
			return perm_names[i].name;
	return NULL;
}

/* The vault argument as stored: NULL is "", too long is an error. */
static int
vault_arg(const char *vault, const char **out)
{
	*out = vault != NULL ? vault : "";
	return strnlen(*out, POLICY_VAULT_MAX + 1) <= POLICY_VAULT_MAX ? 0 : -1;
}

/* Caller holds the lock. */
static struct policy_access *
access_find(policy_t *p, const char *vault, const char *oid)
{
	for (size_t i = 0; i < p->n_access; i++)
		if (strcmp(p->access[i].oid, oid) == 0 &&
		    strcasecmp(p->access[i].vault, vault) == 0)
			return &p->access[i];
	return NULL;
}

int
policy_access_set_in(policy_t *p, const char *vault, const char *object_id,
    unsigned perms)
{
	struct policy_access *a;
	void *table, *slot;
	int r = POLICY_OK;

	if (p == NULL || policy_id_check(object_id, POLICY_ID_LEN) != 0 ||
	    vault_arg(vault, &vault) != 0 || (perms & ~(unsigned)PERM_ALL) != 0)
		return POLICY_ERR_ARGS;
	if (pthread_rwlock_wrlock(&p->lock) != 0)
		return POLICY_ERR_INTERNAL;
	p->mutations++;
	if ((a = access_find(p, vault, object_id)) != NULL) {
		a->perms = perms;
		goto out;
	}
	table = p->access;
	r = policy_table_add(&table, &p->n_access, &p->cap_access, sizeof(*a),
	    POLICY_MAX_POLICIES, &slot);
	p->access = table;
	if (r != POLICY_OK)
		goto out;
	a = slot;
	memcpy(a->oid, object_id, strlen(object_id) + 1);
	memcpy(a->vault, vault, strlen(vault) + 1);
	a->perms = perms;
out:
	pthread_rwlock_unlock(&p->lock);
	return r;
}

int
policy_access_set(policy_t *p, const char *object_id, unsigned perms)
{
	return policy_access_set_in(p, "", object_id, perms);
}

int
policy_access_remove_in(policy_t *p, const char *vault, const char *object_id)
{
	struct policy_access *a;

	if (p == NULL || policy_id_check(object_id, POLICY_ID_LEN) != 0 ||
	    vault_arg(vault, &vault) != 0)
		return POLICY_ERR_ARGS;
	if (pthread_rwlock_wrlock(&p->lock) != 0)
		return POLICY_ERR_INTERNAL;
	p->mutations++;
	if ((a = access_find(p, vault, object_id)) != NULL) {
		*a = p->access[--p->n_access];
		memset(&p->access[p->n_access], 0, sizeof(*a));
	}
	pthread_rwlock_unlock(&p->lock);
	return POLICY_OK;
}

int
policy_access_remove(policy_t *p, const char *object_id)
{
	return policy_access_remove_in(p, "", object_id);
}

void
policy_access_drop_vault(policy_t *p, const char *vault)
{
	size_t i = 0;

	if (p == NULL || vault_arg(vault, &vault) != 0 || vault[0] == '\0' ||
	    pthread_rwlock_wrlock(&p->lock) != 0)
		return;
	p->mutations++;
	while (i < p->n_access) {
		if (strcasecmp(p->access[i].vault, vault) == 0) {
			p->access[i] = p->access[--p->n_access];
			memset(&p->access[p->n_access], 0,
			    sizeof(p->access[0]));
		} else {
			i++;
		}
	}
	pthread_rwlock_unlock(&p->lock);
}

unsigned
policy_access_get_in(policy_t *p, const char *vault, const char *object_id)
{
	struct policy_access *a;
	unsigned perms = 0;

	if (p == NULL || policy_id_check(object_id, POLICY_ID_LEN) != 0 ||
	    vault_arg(vault, &vault) != 0)
		return 0;
	if (pthread_rwlock_rdlock(&p->lock) != 0)
		return 0;
	if ((a = access_find(p, vault, object_id)) != NULL)
		perms = a->perms;
	pthread_rwlock_unlock(&p->lock);
	return perms;
}

unsigned
policy_access_get(policy_t *p, const char *object_id)
{
	return policy_access_get_in(p, "", object_id);
}

int
policy_check_perm_in(policy_t *p, const char *vault, const char *object_id,
    unsigned perm)
{
	/* A request asks for exactly one permission; anything else (0,
	 * several bits, unknown bits) is a caller bug and is denied. */
	if (perm == 0 || (perm & (perm - 1)) != 0 ||
	    (perm & ~(unsigned)PERM_ALL) != 0)
		return POLICY_ERR_DENIED;
	return (policy_access_get_in(p, vault, object_id) & perm) != 0 ?
	    POLICY_OK :
	    POLICY_ERR_DENIED;
}

int
policy_check_perm(policy_t *p, const char *object_id, unsigned perm)
{
	return policy_check_perm_in(p, "", object_id, perm);
}
