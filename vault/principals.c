/*
 * vault/principals.c — persistence of principals and access policies:
 * the checks of their fields, then the store. The decisions are
 * policy/'s; this file never makes one.
 */
#include "vault/vault_int.h"

#include <stdlib.h>
#include <string.h>

static int
field_ok(const char *s, size_t cap)
{
	size_t len = strnlen(s, cap);

	return len > 0 && len < cap;
}

/* An object id as the delete calls take it: 1 to VLT_ID_LEN chars. */
static int
object_id_ok(const char *object_id)
{
	return object_id != NULL && object_id[0] != '\0' &&
	    strlen(object_id) <= VLT_ID_LEN;
}

int
vault_principal_put(vault_t *v, const struct vlt_principal *p)
{
	if (v == NULL || p == NULL ||
	    !field_ok(p->object_id, sizeof(p->object_id)) ||
	    !field_ok(p->client_id, sizeof(p->client_id)) ||
	    strnlen(p->display_name, sizeof(p->display_name)) ==
	        sizeof(p->display_name))
		return VLT_ERR_BAD_PARAM;
	return store_principal_put(ROOT(v)->store, p);
}

/* The principal and its access policy in the root's store, then its
 * policies in the other vaults (an object id is never reused, so one
 * left behind by a failure here grants nothing: the principal is gone). */
static int
principal_delete(vault_t *root, const char *object_id)
{
	vault_t **kids = NULL;
	size_t n = 0, i;
	int r;

	if ((r = store_principal_delete(root->store, object_id)) != 0)
		return r;
	if (children_live(root, &kids, &n) != 0)
		return 0;
	for (i = 0; i < n; i++) {
		r = store_access_delete(kids[i]->store, object_id);
		(void)r; /* NOT_FOUND is the usual answer */
		vault_child_release(kids[i]);
	}
	free(kids);
	return 0;
}

int
vault_principal_delete(vault_t *v, const char *object_id)
{
	if (v == NULL || !object_id_ok(object_id))
		return VLT_ERR_BAD_PARAM;
	return principal_delete(ROOT(v), object_id);
}

int
vault_principal_list(vault_t *v, struct vlt_principal **items, size_t *n)
{
	if (v == NULL || items == NULL || n == NULL)
		return VLT_ERR_BAD_PARAM;
	return store_principal_list(ROOT(v)->store, items, n);
}

int
vault_access_put(vault_t *v, const struct vlt_access_policy *a)
{
	if (v == NULL || a == NULL ||
	    !field_ok(a->object_id, sizeof(a->object_id)) ||
	    !field_ok(a->tenant_id, sizeof(a->tenant_id)))
		return VLT_ERR_BAD_PARAM;
	return store_access_put(v->store, a);
}

int
vault_access_delete(vault_t *v, const char *object_id)
{
	if (v == NULL || !object_id_ok(object_id))
		return VLT_ERR_BAD_PARAM;
	return store_access_delete(v->store, object_id);
}

int
vault_access_apply(vault_t *v, const struct vlt_access_policy *items, size_t n)
{
	size_t i;

	if (v == NULL || (items == NULL && n > 0))
		return VLT_ERR_BAD_PARAM;
	for (i = 0; i < n; i++)
		if (!object_id_ok(items[i].object_id) ||
		    (items[i].perms != 0 &&
		        !field_ok(items[i].tenant_id,
		            sizeof(items[i].tenant_id))))
			return VLT_ERR_BAD_PARAM;
	return store_access_apply(v->store, items, n);
}

int
vault_access_list(vault_t *v, struct vlt_access_policy **items, size_t *n)
{
	if (v == NULL || items == NULL || n == NULL)
		return VLT_ERR_BAD_PARAM;
	return store_access_list(v->store, items, n);
}
