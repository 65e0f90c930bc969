/*
 * vault/children.c — the appliance's other vaults: their registry (the
 * root's store, table vaults), each child's own store under
 * DIR/vaults/ID/, soft delete, recovery and purge, the sweeper's purge of
 * vaults whose date has come, and the counted references the API takes
 * for a request.
 *
 * Owns: the root's list of open children (kids, under kids_lock, which
 * also serialises every change of the registry); DIR/vaults/.
 *
 * Must never: hand out a deleted child; free a child a request still
 * holds (the last release frees it, and removes a purged child's files);
 * leave a purged vault's store on disk; remove a directory under
 * DIR/vaults/ that the registry names.
 */
#include "vault/vault_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "hsm/base.h"

#define DAY_SECS 86400

void
vlt_vault_clear(struct vlt_vault *x)
{
	if (x == NULL)
		return;
	free(x->meta);
	x->meta = NULL;
}

void
vlt_vault_free_array(struct vlt_vault *items, size_t n)
{
	size_t i;

	for (i = 0; items != NULL && i < n; i++)
		vlt_vault_clear(&items[i]);
	free(items);
}

static int
is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
is_alnum(char c)
{
	return is_alpha(c) || (c >= '0' && c <= '9');
}

int
vault_child_name_check(const char *name)
{
	size_t len, i;

	if (name == NULL)
		return VLT_ERR_BAD_PARAM;
	len = strnlen(name, VLT_VAULT_NAME_MAX + 1);
	if (len < 3 || len > VLT_VAULT_NAME_MAX || !is_alpha(name[0]) ||
	    !is_alnum(name[len - 1]))
		return VLT_ERR_BAD_PARAM;
	for (i = 0; i < len; i++)
		if (!is_alnum(name[i]) &&
		    (name[i] != '-' || name[i + 1] == '-'))
			return VLT_ERR_BAD_PARAM;
	return 0;
}

/* name, checked, lower-cased into dst. */
static int
name_lower(const char *name, char dst[VLT_VAULT_NAME_MAX + 1])
{
	size_t i;

	if (vault_child_name_check(name) != 0)
		return VLT_ERR_BAD_PARAM;
	for (i = 0; name[i] != '\0'; i++)
		dst[i] = (name[i] >= 'A' && name[i] <= 'Z') ?
		    (char)(name[i] - 'A' + 'a') :
		    name[i];
	dst[i] = '\0';
	return 0;
}

static int
kids_dir(const vault_t *root, char *out, size_t cap)
{
	return fs_join(out, cap, root->data_dir, "vaults");
}

/* DIR/vaults/ID */
static int
child_dir(const vault_t *root, const char *id, char *out, size_t cap)
{
	char kd[PATH_MAX];
	int r;

	if ((r = kids_dir(root, kd, sizeof(kd))) != 0)
		return r;
	return fs_join(out, cap, kd, id);
}

/* Removes dir and the files in it (a child's store and its -wal, -shm). */
static void
remove_dir(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d = opendir(dir);

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (fs_join(path, sizeof(path), dir, e->d_name) == 0)
			(void)unlink(path);
	}
	closedir(d);
	(void)rmdir(dir);
}

/* Frees a child (its store); a purged one's directory goes with it. */
static void
child_free(vault_t *c, int remove_files)
{
	char dir[PATH_MAX], addr[PATH_MAX], why[256];
	int pg = 0;

	if (c == NULL)
		return;
	store_close(c->store);
	if (remove_files &&
	    vault_store_addr(c->root, c->id, addr, sizeof(addr), &pg) == 0 &&
	    pg) {
		if (store_remove(addr, why, sizeof(why)) != 0)
			fprintf(stderr,
			    "{\"level\":\"warn\",\"event\":"
			    "\"vault_store_drop_failed\",\"vault\":\"%s\"}\n",
			    c->id);
	} else if (remove_files &&
	    child_dir(c->root, c->id, dir, sizeof(dir)) == 0) {
		remove_dir(dir);
	}
	free(c->data_dir);
	free(c->clock_file);
	pthread_mutex_destroy(&c->clock_lock);
	free(c);
}

/* A child vault_t for registry row x: the root's conf, token and audit
 * log, its own store (create: made, with x's settings). One reference,
 * the list's. */
static int
child_new(vault_t *root, const struct vlt_vault *x, int create, vault_t **out)
{
	char dir[PATH_MAX], path[PATH_MAX];
	vault_t *c;
	int r, pg;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return VLT_ERR_NO_MEMORY;
	if (pthread_mutex_init(&c->clock_lock, NULL) != 0) {
		free(c);
		return VLT_ERR_INTERNAL;
	}
	c->root = root;
	c->refs = 1;
	c->deleted = x->deleted_date != 0;
	memcpy(c->name, x->name, sizeof(c->name));
	memcpy(c->id, x->id, sizeof(c->id));
	c->conf = root->conf;
	c->hsm = root->hsm;
	c->audit = root->audit;
	memcpy(c->softhsm_conf, root->softhsm_conf, sizeof(c->softhsm_conf));
	if ((c->data_dir = strdup(root->data_dir)) == NULL) {
		r = VLT_ERR_NO_MEMORY;
		goto fail;
	}
	if ((r = child_dir(root, x->id, dir, sizeof(dir))) != 0)
		goto fail;
	/* a file store lives in DIR/vaults/ID (made here); a PostgreSQL
	 * one in the schema v_<id> of the root's database */
	if (create && !vault_store_networked(root) &&
	    ((r = kids_dir(root, path, sizeof(path))) != 0 ||
	        (r = fs_mkdir_private(path)) != 0 ||
	        (r = fs_mkdir_private(dir)) != 0))
		goto fail;
	if ((r = vault_store_addr(root, x->id, path, sizeof(path), &pg)) != 0)
		goto fail;
	if ((r = store_open(path, create, &c->store)) != 0)
		goto fail;
	if (create && (r = store_settings_init(c->store, &x->settings)) != 0)
		goto fail;
	*out = c;
	return 0;
fail:
	child_free(c, create);
	return r;
}

/* ---- the list of open children (kids_lock held) --------------------------- */

static vault_t *
kid_find(vault_t *root, const char *name)
{
	size_t i;

	for (i = 0; i < root->n_kids; i++)
		if (strcasecmp(root->kids[i]->name, name) == 0)
			return root->kids[i];
	return NULL;
}

static int
kid_add(vault_t *root, vault_t *c)
{
	vault_t **tmp;
	size_t cap;

	if (root->n_kids == root->cap_kids) {
		cap = root->cap_kids ? root->cap_kids * 2 : 8;
		if ((tmp = reallocarray(root->kids, cap, sizeof(*tmp))) == NULL)
			return VLT_ERR_NO_MEMORY;
		root->kids = tmp;
		root->cap_kids = cap;
	}
	root->kids[root->n_kids++] = c;
	return 0;
}

/* Drops the list's reference to c; *free_now: the caller frees it (after
 * the lock) with its files. */
static void
kid_remove(vault_t *root, vault_t *c, int *free_now)
{
	size_t i;

	for (i = 0; i < root->n_kids; i++)
		if (root->kids[i] == c) {
			root->kids[i] = root->kids[--root->n_kids];
			break;
		}
	c->deleted = 1;
	*free_now = --c->refs == 0;
}

/* ---- open and close -------------------------------------------------------- */

/* Directories under DIR/vaults/ that no row names: a create or purge cut
 * short by a crash. */
static void
remove_orphans(vault_t *root, const struct vlt_vault *rows, size_t n)
{
	char kd[PATH_MAX], dir[PATH_MAX];
	struct dirent *e;
	size_t i;
	DIR *d;

	if (kids_dir(root, kd, sizeof(kd)) != 0 || (d = opendir(kd)) == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strlen(e->d_name) != VLT_ID_LEN)
			continue; /* "." and "..", or not ours */
		for (i = 0; i < n; i++)
			if (strcmp(rows[i].id, e->d_name) == 0)
				break;
		if (i == n && fs_join(dir, sizeof(dir), kd, e->d_name) == 0)
			remove_dir(dir);
	}
	closedir(d);
}

int
children_open(vault_t *root, char *err, size_t err_len)
{
	struct vlt_vault *rows = NULL;
	vault_t *c;
	size_t n = 0, i;
	int r;

	if ((r = store_vault_list(root->store, -1, &rows, &n)) != 0) {
		err_set(err, err_len, "%s", "cannot read the list of vaults");
		return r;
	}
	remove_orphans(root, rows, n);
	for (i = 0; i < n; i++) {
		if ((r = child_new(root, &rows[i], 0, &c)) != 0) {
			err_set(err, err_len,
			    "vault %s: its store (%s %s) cannot be opened",
			    rows[i].name,
			    vault_store_networked(root) ?
			        "PostgreSQL schema v_ of" :
			        "vaults/ID/vault.db, ID",
			    rows[i].id);
			break;
		}
		if ((r = kid_add(root, c)) != 0) {
			child_free(c, 0);
			break;
		}
	}
	vlt_vault_free_array(rows, n);
	return r;
}

void
children_close(vault_t *root)
{
	size_t i;

	for (i = 0; i < root->n_kids; i++)
		child_free(root->kids[i], 0);
	free(root->kids);
	root->kids = NULL;
	root->n_kids = root->cap_kids = 0;
}

/* ---- references -------------------------------------------------------------- */

int
vault_child_acquire(vault_t *root, const char *name, vault_t **out)
{
	vault_t *c;

	if (out != NULL)
		*out = NULL;
	if (root == NULL || root->root != NULL || name == NULL || out == NULL)
		return VLT_ERR_BAD_PARAM;
	pthread_mutex_lock(&root->kids_lock);
	c = kid_find(root, name);
	if (c != NULL && !c->deleted)
		c->refs++;
	else
		c = NULL;
	pthread_mutex_unlock(&root->kids_lock);
	*out = c;
	return c != NULL ? 0 : VLT_ERR_NOT_FOUND;
}

void
vault_child_release(vault_t *c)
{
	vault_t *root;
	int last;

	if (c == NULL || c->root == NULL)
		return;
	root = c->root;
	pthread_mutex_lock(&root->kids_lock);
	last = --c->refs == 0;
	pthread_mutex_unlock(&root->kids_lock);
	if (last)
		child_free(c, 1); /* only a purged child loses its last ref */
}

const char *
vault_child_name(const vault_t *v)
{
	return v == NULL || v->root == NULL ? NULL : v->name;
}

/* The children, each acquired; all: the deleted ones too. */
static int
children_pick(vault_t *root, int all, vault_t ***kids, size_t *n)
{
	vault_t **a;
	size_t i, k = 0;

	*kids = NULL;
	*n = 0;
	pthread_mutex_lock(&root->kids_lock);
	a = calloc(root->n_kids + 1, sizeof(*a));
	if (a == NULL) {
		pthread_mutex_unlock(&root->kids_lock);
		return VLT_ERR_NO_MEMORY;
	}
	for (i = 0; i < root->n_kids; i++)
		if (all || !root->kids[i]->deleted) {
			root->kids[i]->refs++;
			a[k++] = root->kids[i];
		}
	pthread_mutex_unlock(&root->kids_lock);
	*kids = a;
	*n = k;
	return 0;
}

int
children_live(vault_t *root, vault_t ***kids, size_t *n)
{
	return children_pick(root, 0, kids, n);
}

int
children_all(vault_t *root, vault_t ***kids, size_t *n)
{
	return children_pick(root, 1, kids, n);
}

int
children_sweep(vault_t *v, int (*one)(vault_t *))
{
	vault_t **kids = NULL;
	size_t n = 0, i;
	int r, count, err = 0;

	if ((count = one(v)) < 0)
		err = count, count = 0;
	if (v->root != NULL)
		return err != 0 ? err : count;
	if ((r = children_live(v, &kids, &n)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		if ((r = one(kids[i])) >= 0)
			count += r;
		else if (err == 0)
			err = r;
		vault_child_release(kids[i]);
	}
	free(kids);
	return err != 0 ? err : count;
}

/* ---- the registry -------------------------------------------------------------- */

/* A live row's settings are its store's; a deleted row's, as recorded. */
static int
row_settings(vault_t *root, struct vlt_vault *x)
{
	vault_t *c;

	if (x->deleted_date != 0 || (c = kid_find(root, x->name)) == NULL)
		return 0;
	return store_settings_get(c->store, &x->settings);
}

int
vault_child_create(vault_t *root, const char *name,
    const struct vlt_settings *set, const char *meta, struct vlt_vault *out)
{
	struct vlt_vault x, old;
	const char *dflt;
	vault_t *c = NULL;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (root == NULL || root->root != NULL)
		return VLT_ERR_BAD_PARAM;
	memset(&x, 0, sizeof(x));
	if (name_lower(name, x.name) != 0)
		return VLT_ERR_BAD_PARAM;
	x.settings.retention_days = set != NULL ? set->retention_days : 90;
	x.settings.purge_protection = set != NULL ? set->purge_protection : 0;
	if (vault_retention_check(x.settings.retention_days) != 0 ||
	    (x.settings.purge_protection != 0 &&
	        x.settings.purge_protection != 1))
		return VLT_ERR_BAD_PARAM;
	dflt = conf_get(root->conf, "vault_name");
	if (dflt != NULL && strcasecmp(dflt, x.name) == 0)
		return VLT_ERR_CONFLICT;
	if ((r = random_uuid(x.id)) != 0)
		return r;
	x.created = x.updated = vault_now(root);
	x.meta = (char *)(uintptr_t)meta; /* bound, never freed: not ours */
	pthread_mutex_lock(&root->kids_lock);
	r = store_vault_get(root->store, x.name, &old);
	if (r == 0) {
		r = old.deleted_date != 0 ? VLT_ERR_DELETED_RECOVERABLE :
		                            VLT_ERR_CONFLICT;
		vlt_vault_clear(&old);
		goto out;
	}
	if (r != VLT_ERR_NOT_FOUND)
		goto out;
	/* the store first: a crash before the row leaves an orphan that the
	 * next open removes, never a row without a store */
	if ((r = child_new(root, &x, 1, &c)) != 0)
		goto out;
	if ((r = kid_add(root, c)) != 0) {
		child_free(c, 1);
		goto out;
	}
	if ((r = store_vault_insert(root->store, &x)) != 0) {
		int free_now;

		kid_remove(root, c, &free_now);
		child_free(c, 1); /* nobody acquired it: not in the registry */
	}
out:
	pthread_mutex_unlock(&root->kids_lock);
	if (r == 0 && out != NULL) {
		*out = x;
		out->meta = meta != NULL ? strdup(meta) : NULL;
		if (meta != NULL && out->meta == NULL)
			return VLT_ERR_NO_MEMORY;
	}
	return r;
}

/* The registry row of name in the state deleted asks for; kids_lock
 * held. */
static int
row_get(vault_t *root, const char *name, int deleted, struct vlt_vault *x)
{
	char lname[VLT_VAULT_NAME_MAX + 1];
	int r;

	memset(x, 0, sizeof(*x));
	if (name_lower(name, lname) != 0)
		return VLT_ERR_NOT_FOUND; /* no such vault can exist */
	if ((r = store_vault_get(root->store, lname, x)) != 0)
		return r;
	if ((x->deleted_date != 0) != (deleted != 0)) {
		vlt_vault_clear(x);
		return VLT_ERR_NOT_FOUND;
	}
	return 0;
}

int
vault_child_get(vault_t *root, const char *name, int deleted,
    struct vlt_vault *out)
{
	int r;

	if (root == NULL || root->root != NULL || out == NULL)
		return VLT_ERR_BAD_PARAM;
	pthread_mutex_lock(&root->kids_lock);
	r = row_get(root, name, deleted, out);
	if (r == 0 && (r = row_settings(root, out)) != 0)
		vlt_vault_clear(out);
	pthread_mutex_unlock(&root->kids_lock);
	return r;
}

int
vault_child_list(vault_t *root, int deleted, struct vlt_vault **items,
    size_t *n)
{
	size_t i;
	int r;

	if (root == NULL || root->root != NULL || items == NULL || n == NULL)
		return VLT_ERR_BAD_PARAM;
	pthread_mutex_lock(&root->kids_lock);
	r = store_vault_list(root->store, deleted != 0, items, n);
	for (i = 0; r == 0 && i < *n; i++)
		r = row_settings(root, &(*items)[i]);
	pthread_mutex_unlock(&root->kids_lock);
	if (r != 0) {
		vlt_vault_free_array(*items, *n);
		*items = NULL;
		*n = 0;
	}
	return r;
}

int
vault_child_set_meta(vault_t *root, const char *name, const char *meta)
{
	struct vlt_vault x;
	char *old;
	int r;

	if (root == NULL || root->root != NULL)
		return VLT_ERR_BAD_PARAM;
	pthread_mutex_lock(&root->kids_lock);
	if ((r = row_get(root, name, 0, &x)) == 0) {
		old = x.meta;
		x.meta = (char *)(uintptr_t)meta;
		x.updated = vault_now(root);
		r = store_vault_update(root->store, &x);
		x.meta = old;
		vlt_vault_clear(&x);
	}
	pthread_mutex_unlock(&root->kids_lock);
	return r;
}

/* Soft-deletes (deleted 1) or recovers (0) the vault of that name: its
 * row's dates, then the child's state. */
static int
child_set_deleted(vault_t *root, const char *name, int deleted)
{
	struct vlt_vault x;
	vault_t *c;
	int r;

	if (root == NULL || root->root != NULL)
		return VLT_ERR_BAD_PARAM;
	pthread_mutex_lock(&root->kids_lock);
	if ((r = row_get(root, name, !deleted, &x)) != 0)
		goto out;
	if ((c = kid_find(root, x.name)) == NULL) {
		r = VLT_ERR_INTERNAL;
		goto clear;
	}
	x.updated = vault_now(root);
	x.deleted_date = x.scheduled_purge_date = 0;
	/* a deleted vault keeps the settings it had (its purge protection
	 * and retention decide its purge) */
	if (deleted && (r = store_settings_get(c->store, &x.settings)) != 0)
		goto clear;
	if (deleted) {
		x.deleted_date = x.updated;
		x.scheduled_purge_date = x.deleted_date +
		    (int64_t)x.settings.retention_days * DAY_SECS;
	}
	if ((r = store_vault_update(root->store, &x)) == 0)
		c->deleted = deleted;
clear:
	vlt_vault_clear(&x);
out:
	pthread_mutex_unlock(&root->kids_lock);
	return r;
}

int
vault_child_delete(vault_t *root, const char *name)
{
	return child_set_deleted(root, name, 1);
}

int
vault_child_recover(vault_t *root, const char *name)
{
	return child_set_deleted(root, name, 0);
}

/* Purges deleted row x (kids_lock held): the row, then the child; its
 * store's files go when its last reference does (*gone: free it now). */
static int
purge_locked(vault_t *root, const struct vlt_vault *x, vault_t **gone)
{
	vault_t *c = kid_find(root, x->name);
	int free_now = 0, r;

	*gone = NULL;
	if ((r = store_vault_remove(root->store, x->name)) != 0)
		return r;
	if (c != NULL) {
		kid_remove(root, c, &free_now);
		if (free_now)
			*gone = c;
	}
	return 0;
}

int
vault_child_purge(vault_t *root, const char *name)
{
	struct vlt_vault x;
	vault_t *gone = NULL;
	int r;

	if (root == NULL || root->root != NULL)
		return VLT_ERR_BAD_PARAM;
	pthread_mutex_lock(&root->kids_lock);
	if ((r = row_get(root, name, 1, &x)) == 0) {
		if (x.settings.purge_protection &&
		    x.scheduled_purge_date > vault_now(root))
			r = VLT_ERR_PURGE_PROTECTED;
		else
			r = purge_locked(root, &x, &gone);
		vlt_vault_clear(&x);
	}
	pthread_mutex_unlock(&root->kids_lock);
	child_free(gone, 1);
	return r;
}

int
children_purge_due(vault_t *root)
{
	struct vlt_vault *rows = NULL;
	vault_t *gone;
	size_t n = 0, i;
	int64_t now = vault_now(root);
	int r, count = 0;

	pthread_mutex_lock(&root->kids_lock);
	r = store_vault_list(root->store, 1, &rows, &n);
	for (i = 0; r == 0 && i < n; i++) {
		if (rows[i].scheduled_purge_date > now)
			continue;
		gone = NULL;
		if ((r = purge_locked(root, &rows[i], &gone)) == 0)
			count++;
		if (gone != NULL) {
			pthread_mutex_unlock(&root->kids_lock);
			child_free(gone, 1);
			pthread_mutex_lock(&root->kids_lock);
		}
	}
	pthread_mutex_unlock(&root->kids_lock);
	vlt_vault_free_array(rows, n);
	return r != 0 ? r : count;
}

/* Drops the kids no row names (purged elsewhere), under kids_lock; the
 * caller frees *gone (n of them) after the lock. */
static void
sync_drop(vault_t *root, const struct vlt_vault *rows, size_t n, vault_t **gone,
    size_t *ngone)
{
	size_t i = 0, j;
	int free_now;

	*ngone = 0;
	while (i < root->n_kids) {
		vault_t *c = root->kids[i];

		for (j = 0; j < n && strcmp(rows[j].id, c->id) != 0; j++)
			;
		if (j < n) {
			c->deleted = rows[j].deleted_date != 0;
			i++;
			continue;
		}
		free_now = 0;
		kid_remove(root, c, &free_now); /* kids[i] is another now */
		if (free_now)
			gone[(*ngone)++] = c;
	}
}

int
children_sync(vault_t *root)
{
	struct vlt_vault *rows = NULL;
	vault_t **gone = NULL, *c;
	size_t n = 0, i, ngone = 0;
	int r;

	if (root == NULL || root->root != NULL)
		return VLT_ERR_BAD_PARAM;
	pthread_mutex_lock(&root->kids_lock);
	if ((r = store_vault_list(root->store, -1, &rows, &n)) != 0)
		goto out;
	if ((gone = calloc(root->n_kids + 1, sizeof(*gone))) == NULL) {
		r = VLT_ERR_NO_MEMORY;
		goto out;
	}
	sync_drop(root, rows, n, gone, &ngone);
	for (i = 0; r == 0 && i < n; i++) {
		size_t k;

		for (k = 0; k < root->n_kids &&
		     strcmp(root->kids[k]->id, rows[i].id) != 0;
		     k++)
			;
		if (k < root->n_kids)
			continue;
		/* made on another node: its store is there already */
		if ((r = child_new(root, &rows[i], 0, &c)) != 0)
			break;
		if ((r = kid_add(root, c)) != 0)
			child_free(c, 0);
	}
out:
	pthread_mutex_unlock(&root->kids_lock);
	for (i = 0; i < ngone; i++)
		child_free(gone[i], 0); /* its store went with its node */
	free(gone);
	vlt_vault_free_array(rows, n);
	return r;
}
