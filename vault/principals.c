/*
 * vault/principals.c — persistence of principals and access policies:
 * the checks of their fields, then the store. The decisions are
 * policy/'s; this file never makes one.
 */
#include "vault/vault_int.h"

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
	return store_principal_put(v->store, p);
}

int
vault_principal_delete(vault_t *v, const char *object_id)
{
	if (v == NULL || !object_id_ok(object_id))
		return VLT_ERR_BAD_PARAM;
	return store_principal_delete(v->store, object_id);
}

int
vault_principal_list(vault_t *v, struct vlt_principal **items, size_t *n)
{
	if (v == NULL || items == NULL || n == NULL)
		return VLT_ERR_BAD_PARAM;
	return store_principal_list(v->store, items, n);
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
