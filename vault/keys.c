/*
 * vault/keys.c — the key life cycle: create, get, update, list, versions,
 * soft delete, recover, purge (one key, and every key that is due), and
 * the checks a crypto operation's version passes (key_for_op).
 *
 * Owns: the rules of a new key (sizes, curves, default key_ops), the
 * continuation tokens of the listings, dropping the token's handles of a
 * purged key.
 *
 * Must never: contain SQL (the store does), call the token while holding
 * the store (the store never calls up), log key material.
 */
#include "vault/vault_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsm/base.h"
#include "vault/info.h"

int
key_refuse_deleted(vault_t *v, const char *name)
{
	struct vlt_key_info probe;
	int r;

	r = store_version_get(v->store, name, NULL, 1, &probe, NULL, NULL);
	vlt_key_info_clear(&probe);
	if (r == 0)
		return VLT_ERR_DELETED_RECOVERABLE;
	return r == VLT_ERR_NOT_FOUND ? 0 : r;
}

int
key_store_new(vault_t *v, const struct vlt_key_info *k, const uint8_t *blob,
    size_t blob_len, struct vlt_key_info *out)
{
	struct vlt_key_info probe;
	int r;

	r = store_version_insert(v->store, k, blob, blob_len);
	if (r == VLT_ERR_CONFLICT) /* a version id collision: new_version */
		r = VLT_ERR_INTERNAL;
	if (r != 0)
		return r;
	r = store_version_get(v->store, k->name, k->version, 0, &probe, NULL,
	    NULL);
	if (r == 0)
		key_info_give(&probe, out);
	return r;
}

/* The size (RSA bits), curve NID and key_ops of a create request. */
static int
create_shape(const struct vlt_create_req *req, unsigned *bits, int *nid,
    unsigned *ops)
{
	*bits = 0;
	*nid = 0;
	switch (req->kty) {
	case VLT_KTY_RSA:
		*bits = req->key_size == 0 ? 2048 : req->key_size;
		if ((*bits != 2048 && *bits != 3072 && *bits != 4096) ||
		    req->crv != VLT_CRV_NONE)
			return VLT_ERR_BAD_PARAM;
		*ops = req->key_ops == 0 ? OPS_RSA_DEFAULT : req->key_ops;
		break;
	case VLT_KTY_EC:
		if ((*nid = curve_nid(req->crv)) == 0)
			return VLT_ERR_BAD_PARAM;
		*ops = req->key_ops == 0 ? OPS_EC : req->key_ops;
		break;
	default:
		return VLT_ERR_BAD_PARAM;
	}
	return check_ops(req->kty, *ops);
}

int
vault_key_create(vault_t *v, const char *name, const struct vlt_create_req *req,
    struct vlt_key_info *out)
{
	struct vlt_key_info k;
	char bind[BIND_MAX];
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	unsigned bits, ops;
	int r, nid;

	memset(&k, 0, sizeof(k));
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || req == NULL || vault_name_check(name) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = create_shape(req, &bits, &nid, &ops)) != 0)
		return r;
	/* A deleted name fails before the slow generation; the insert
	 * checks again inside its transaction. */
	if ((r = key_refuse_deleted(v, name)) != 0)
		return r;
	if ((r = new_version(v, name, k.version, bind)) != 0)
		goto out;
	r = hsm_key_generate(v->hsm, bind,
	    req->kty == VLT_KTY_RSA ? HSM_KTY_RSA : HSM_KTY_EC, bits, nid,
	    &blob, &blob_len, &k.spki, &k.spki_len);
	if (r != 0) {
		r = map_hsm(r);
		goto out;
	}
	if ((r = str_fmt(k.name, sizeof(k.name), "%s", name)) != 0) {
		r = VLT_ERR_BAD_PARAM;
		goto out;
	}
	k.kty = req->kty;
	k.hsm = req->hsm ? 1 : 0;
	k.key_size = bits;
	k.crv = req->kty == VLT_KTY_EC ? req->crv : VLT_CRV_NONE;
	k.key_ops = ops;
	k.attrs.enabled = req->enabled ? 1 : 0;
	k.attrs.nbf = req->nbf;
	k.attrs.exp = req->exp;
	k.attrs.created = k.attrs.updated = vault_now(v);
	if (req->exp_after > 0) /* the same clock reading as created */
		k.attrs.exp = k.attrs.created + req->exp_after;
	if (req->tags != NULL && (k.tags = strdup(req->tags)) == NULL) {
		r = VLT_ERR_NO_MEMORY;
		goto out;
	}
	r = key_store_new(v, &k, blob, blob_len, out);
out:
	vlt_key_info_clear(&k);
	freezero(blob, blob_len);
	return r;
}

int
vault_key_get(vault_t *v, const char *name, const char *version,
    struct vlt_key_info *out)
{
	const char *ver;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || out == NULL || vault_name_check(name) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = version_arg(version, &ver)) != 0)
		return r;
	return store_version_get(v->store, name, ver, 0, out, NULL, NULL);
}

int
vault_key_update(vault_t *v, const char *name, const char *version,
    const struct vlt_update_req *req, struct vlt_key_info *out)
{
	struct vlt_key_info tmp;
	struct store_update u;
	const char *ver;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || req == NULL || vault_name_check(name) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = version_arg(version, &ver)) != 0)
		return r;
	if (req->has_key_ops && (req->key_ops & ~(unsigned)OPS_ALL) != 0)
		return VLT_ERR_BAD_PARAM;
	memset(&u, 0, sizeof(u));
	u.has_key_ops = req->has_key_ops;
	u.key_ops = req->key_ops;
	u.has_enabled = req->has_enabled;
	u.enabled = req->enabled;
	u.has_nbf = req->has_nbf;
	u.nbf = req->nbf;
	u.has_exp = req->has_exp;
	u.exp = req->exp;
	u.tags = req->tags;
	u.updated = vault_now(v);
	r = store_version_update(v->store, name, ver, &u, check_ops, &tmp);
	if (r == 0)
		key_info_give(&tmp, out);
	return r;
}

/* Continuation tokens: a type letter and the keyset position (a key name,
 * or a version's seq in decimal). Opaque to callers; URL-safe. */
static int
cont_parse_name(const char *cont, char type, const char **after)
{
	*after = NULL;
	if (cont == NULL || cont[0] == '\0')
		return 0;
	if (cont[0] != type || vault_name_check(cont + 1) != 0)
		return VLT_ERR_BAD_PARAM;
	*after = cont + 1;
	return 0;
}

static int
cont_parse_seq(const char *cont, int64_t *after)
{
	*after = 0;
	if (cont == NULL || cont[0] == '\0')
		return 0;
	if (cont[0] != 'V' || strlen(cont) > 19 ||
	    parse_i64(cont + 1, 0, INT64_MAX, after) != 0)
		return VLT_ERR_BAD_PARAM;
	return 0;
}

static int
cont_make(char type, const char *pos, char **next)
{
	if (asprintf(next, "%c%s", type, pos) < 0) {
		*next = NULL;
		return VLT_ERR_NO_MEMORY;
	}
	return 0;
}

/* Clears the out-parameters of a listing; VLT_ERR_BAD_PARAM when one is
 * missing or max is out of range. */
static int
list_start(vault_t *v, size_t max, struct vlt_key_info **items, size_t *n,
    char **next_cont)
{
	if (items != NULL)
		*items = NULL;
	if (n != NULL)
		*n = 0;
	if (next_cont != NULL)
		*next_cont = NULL;
	if (v == NULL || items == NULL || n == NULL || next_cont == NULL ||
	    max < 1 || max > VLT_MAX_RESULTS)
		return VLT_ERR_BAD_PARAM;
	return 0;
}

/* Ends a listing: the continuation token when there are more rows. */
static int
list_end(char type, const char *pos, int more, struct vlt_key_info **items,
    size_t *n, char **next_cont)
{
	int r = 0;

	if (more && *n > 0 && (r = cont_make(type, pos, next_cont)) != 0) {
		vlt_key_info_free_array(*items, *n);
		*items = NULL;
		*n = 0;
	}
	return r;
}

static int
list_keys(vault_t *v, int deleted, const char *cont, size_t max,
    struct vlt_key_info **items, size_t *n, char **next_cont)
{
	char type = deleted ? 'D' : 'K';
	const char *after;
	int r, more = 0;

	if ((r = list_start(v, max, items, n, next_cont)) != 0 ||
	    (r = cont_parse_name(cont, type, &after)) != 0)
		return r;
	r = store_key_list(v->store, deleted, after, max, items, n, &more);
	if (r != 0)
		return r;
	return list_end(type, *n > 0 ? (*items)[*n - 1].name : "", more, items,
	    n, next_cont);
}

int
vault_key_list(vault_t *v, const char *cont, size_t max,
    struct vlt_key_info **items, size_t *n, char **next_cont)
{
	return list_keys(v, 0, cont, max, items, n, next_cont);
}

int
vault_deleted_list(vault_t *v, const char *cont, size_t max,
    struct vlt_key_info **items, size_t *n, char **next_cont)
{
	return list_keys(v, 1, cont, max, items, n, next_cont);
}

int
vault_key_versions(vault_t *v, const char *name, const char *cont, size_t max,
    struct vlt_key_info **items, size_t *n, char **next_cont)
{
	char pos[32];
	int64_t after = 0, last = 0;
	int r, more = 0;

	if ((r = list_start(v, max, items, n, next_cont)) != 0)
		return r;
	if (vault_name_check(name) != 0 ||
	    (r = cont_parse_seq(cont, &after)) != 0)
		return VLT_ERR_BAD_PARAM;
	r = store_version_list(v->store, name, after, max, items, n, &last,
	    &more);
	if (r == VLT_ERR_NOT_FOUND)
		return 0; /* Azure: 200 with an empty list, not 404 */
	if (r != 0)
		return r;
	if (str_fmt(pos, sizeof(pos), "%lld", (long long)last) != 0)
		r = VLT_ERR_INTERNAL;
	if (r == 0)
		r = list_end('V', pos, more, items, n, next_cont);
	if (r != 0) {
		vlt_key_info_free_array(*items, *n);
		*items = NULL;
		*n = 0;
	}
	return r;
}

/* Deletes (deleting) or recovers a key; out (optional) gets it as it now
 * is. */
static int
delete_or_recover(vault_t *v, const char *name, int deleting,
    struct vlt_key_info *out)
{
	struct vlt_key_info tmp;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || vault_name_check(name) != 0)
		return VLT_ERR_BAD_PARAM;
	if (deleting)
		r = store_key_delete(v->store, name, vault_now(v), &tmp);
	else
		r = store_key_recover(v->store, name, &tmp);
	if (r == 0)
		key_info_give(&tmp, out);
	return r;
}

int
vault_key_delete(vault_t *v, const char *name, struct vlt_key_info *out)
{
	return delete_or_recover(v, name, 1, out);
}

int
vault_deleted_get(vault_t *v, const char *name, struct vlt_key_info *out)
{
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || out == NULL || vault_name_check(name) != 0)
		return VLT_ERR_BAD_PARAM;
	return store_version_get(v->store, name, NULL, 1, out, NULL, NULL);
}

int
vault_key_recover(vault_t *v, const char *name, struct vlt_key_info *out)
{
	return delete_or_recover(v, name, 0, out);
}

/* Purges one key; due_before as store_key_purge. */
static int
purge_one(vault_t *v, const char *name, int64_t due_before)
{
	char(*ids)[VLT_VERSION_LEN + 1] = NULL;
	char bind[BIND_MAX];
	size_t n = 0, i;
	int r;

	r = store_key_purge(v->store, name, due_before, &ids, &n);
	if (r != 0)
		return r;
	/* The blobs are gone from the store; drop the unwrapped handles. */
	for (i = 0; i < n; i++)
		if (blob_bind(v, bind, name, ids[i]) == 0)
			hsm_key_forget(v->hsm, bind);
	free(ids);
	return 0;
}

int
vault_key_purge(vault_t *v, const char *name)
{
	if (v == NULL || vault_name_check(name) != 0)
		return VLT_ERR_BAD_PARAM;
	return purge_one(v, name, 0);
}

static int purge_due_keys(vault_t *v);

int
vault_purge_due(vault_t *v)
{
	int count, r;

	if (v == NULL)
		return VLT_ERR_BAD_PARAM;
	count = children_sweep(v, purge_due_keys);
	if (v->root != NULL)
		return count;
	/* then the deleted vaults whose date has come */
	if ((r = children_purge_due(v)) < 0)
		return count < 0 ? count : r;
	return count < 0 ? count : count + r;
}

/* The keys of one vault whose purge date has come. */
static int
purge_due_keys(vault_t *v)
{
	char(*names)[VLT_NAME_MAX + 1] = NULL;
	size_t n = 0, i;
	int64_t now;
	int r, count = 0, err = 0;

	if (v == NULL)
		return VLT_ERR_BAD_PARAM;
	now = vault_now(v);
	if ((r = store_purge_due_list(v->store, now, &names, &n)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		r = purge_one(v, names[i], now);
		if (r == 0)
			count++;
		else if (r != VLT_ERR_NOT_FOUND && err == 0)
			err = r; /* recovered meanwhile: NOT_FOUND, fine */
	}
	free(names);
	return err != 0 ? err : count;
}

int
key_for_op(vault_t *v, const char *name, const char *version, unsigned op,
    int need_blob, struct vlt_key_info *k, uint8_t **blob, size_t *blob_len)
{
	const char *ver;
	int64_t now;
	int r;

	memset(k, 0, sizeof(*k));
	if (blob != NULL)
		*blob = NULL;
	if (vault_name_check(name) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = version_arg(version, &ver)) != 0)
		return r;
	r = store_version_get(v->store, name, ver, 0, k,
	    need_blob ? blob : NULL, need_blob ? blob_len : NULL);
	if (r != 0)
		return r;
	now = vault_now(v);
	if (!k->attrs.enabled)
		r = VLT_ERR_KEY_DISABLED;
	else if (k->attrs.nbf != 0 && k->attrs.nbf > now)
		r = VLT_ERR_KEY_NOT_YET_VALID;
	else if (k->attrs.exp != 0 && k->attrs.exp <= now)
		r = VLT_ERR_KEY_EXPIRED;
	else if ((k->key_ops & op) == 0)
		r = VLT_ERR_OP_NOT_PERMITTED;
	if (r != 0) {
		vlt_key_info_clear(k);
		if (blob != NULL && *blob != NULL) {
			free(*blob);
			*blob = NULL;
		}
	}
	return r;
}
