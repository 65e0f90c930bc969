/*
 * vault/records.c — the management API's own records in the root's
 * store (resource groups, the names of user-assigned identities): keys
 * checked here, rows kept by the store; the meaning is the API's.
 *
 * Must never: read or shape the meta text (it is the caller's JSON).
 */
#include "vault/vault_int.h"

#include <stdlib.h>
#include <string.h>

void
vlt_record_clear(struct vlt_record *x)
{
	if (x == NULL)
		return;
	free(x->meta);
	x->meta = NULL;
}

void
vlt_record_free_array(struct vlt_record *items, size_t n)
{
	size_t i;

	for (i = 0; items != NULL && i < n; i++)
		vlt_record_clear(&items[i]);
	free(items);
}

/* A key part: present, short enough for its field. */
static int
part_ok(const char *s, size_t cap, int may_be_empty)
{
	size_t len;

	if (s == NULL)
		return 0;
	len = strnlen(s, cap);
	return len < cap && (may_be_empty || len > 0);
}

static int
key_ok(const vault_t *root, const char *kind, const char *scope,
    const char *name)
{
	return root != NULL && root->root == NULL &&
	    part_ok(kind, sizeof(((struct vlt_record *)0)->kind), 0) &&
	    part_ok(scope, VLT_RECORD_NAME_MAX + 1, 1) &&
	    part_ok(name, VLT_RECORD_NAME_MAX + 1, 0);
}

int
vault_record_put(vault_t *root, const struct vlt_record *x, int create_only)
{
	struct vlt_record y;

	if (x == NULL || !key_ok(root, x->kind, x->scope, x->name) ||
	    strnlen(x->ref, sizeof(x->ref)) == sizeof(x->ref))
		return VLT_ERR_BAD_PARAM;
	y = *x;
	y.created = y.updated = vault_now(root);
	return store_record_put(root->store, &y, create_only);
}

int
vault_record_get(vault_t *root, const char *kind, const char *scope,
    const char *name, struct vlt_record *out)
{
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (out == NULL || !key_ok(root, kind, scope, name))
		return VLT_ERR_BAD_PARAM;
	return store_record_get(root->store, kind, scope, name, out);
}

int
vault_record_list(vault_t *root, const char *kind, const char *scope,
    struct vlt_record **items, size_t *n)
{
	if (items == NULL || n == NULL ||
	    !key_ok(root, kind, scope != NULL ? scope : "", "-"))
		return VLT_ERR_BAD_PARAM;
	return store_record_list(root->store, kind, scope, items, n);
}

int
vault_record_delete(vault_t *root, const char *kind, const char *scope,
    const char *name)
{
	if (!key_ok(root, kind, scope, name))
		return VLT_ERR_BAD_PARAM;
	return store_record_remove(root->store, kind, scope, name);
}
