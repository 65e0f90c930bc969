/*
 * vault/store.c — the store's front: one lock around every call to the
 * backend (so that each store_* function is atomic), the version cache in
 * front of store_version_get, and its invalidation before every write.
 *
 * Owns: the choice of backend from the address (SQLite,
 * vault/store_sqlite.c; PostgreSQL, vault/store_pg.c), the lock, the
 * cache.
 *
 * Must never: contain SQL or know a backend's types; call the hsm or any
 * vault file above it; bump the cache's generation for a read.
 */
#include "vault/store.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hsm/base.h"
#include "vault/storage.h"
#include "vault/store_backend.h"
#include "vault/vcache.h"

struct store {
	const struct store_backend *be;
	struct store_be *b;
	pthread_mutex_t lock;
	struct vcache *vc;
	int in_write;                  /* the call under the lock writes */
	struct vlt_storage_state disk; /* under the lock */
};

static void
lock_read(store_t *s)
{
	pthread_mutex_lock(&s->lock);
}

/* A write: every cached version is stale from here on, under the lock
 * and before the backend changes anything. */
static void
lock_write(store_t *s)
{
	pthread_mutex_lock(&s->lock);
	vcache_invalidate(s->vc);
	s->in_write = 1;
}

/* Every call's result passes here, still under the lock: a storage error
 * starts or continues an episode, a committed write ends it. */
static int
unlock(store_t *s, int r)
{
	char why[VLT_STORAGE_REASON_MAX];
	int64_t settle;

	if (r == VLT_ERR_STORAGE) {
		s->be->why(s->b, why, sizeof(why));
		vlt_storage_fail(&s->disk, why);
	} else if (r == 0 && s->in_write) {
		vlt_storage_ok(&s->disk);
	}
	settle = s->in_write && s->be->settle_take != NULL ?
	    s->be->settle_take(s->b) :
	    0;
	s->in_write = 0;
	pthread_mutex_unlock(&s->lock);
	if (settle > 0)
		s->be->settle(s->b, settle);
	return r;
}

void
store_invalidate(store_t *s)
{
	if (s != NULL)
		vcache_invalidate(s->vc);
}

int
store_addr_is_pg(const char *addr)
{
	return strncmp(addr, "postgresql://", 13) == 0 ||
	    strncmp(addr, "postgres://", 11) == 0 ||
	    (addr[0] != '/' && addr[0] != '.' && strchr(addr, '=') != NULL);
}

int
store_addr_pg(const char *db, const char *schema, char *out, size_t cap)
{
	return str_fmt(out, cap, "%s#%s", db, schema) != 0 ? VLT_ERR_BAD_PARAM :
	                                                     0;
}

static const struct store_backend *
backend_of(const char *addr)
{
	return store_addr_is_pg(addr) ? &store_pg_backend :
	                                &store_sqlite_backend;
}

int
store_remove(const char *path, char *why, size_t cap)
{
	const struct store_backend *be = backend_of(path);

	if (cap > 0)
		why[0] = '\0';
	return be->remove != NULL ? be->remove(path, why, cap) : 0;
}

int
store_open(const char *path, int create, store_t **out)
{
	char why[VLT_STORAGE_REASON_MAX];

	return store_open_why(path, create, out, why, sizeof(why));
}

int
store_open_why(const char *path, int create, store_t **out, char *why,
    size_t cap)
{
	store_t *s;
	int r;

	*out = NULL;
	if (cap > 0)
		why[0] = '\0';
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return VLT_ERR_NO_MEMORY;
	s->be = backend_of(path);
	s->disk.source = "store";
	if (pthread_mutex_init(&s->lock, NULL) != 0) {
		free(s);
		return VLT_ERR_INTERNAL;
	}
	if ((r = vcache_new(&s->vc)) != 0 ||
	    (r = s->be->open(path, create, &s->b, why, cap)) != 0) {
		store_close(s);
		return r;
	}
	*out = s;
	return 0;
}

void
store_close(store_t *s)
{
	if (s == NULL)
		return;
	if (s->b != NULL)
		s->be->close(s->b);
	vcache_free(s->vc);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void
store_vcache_stats(store_t *s, uint64_t *hits, uint64_t *misses)
{
	vcache_stats(s->vc, hits, misses);
}

int
store_version_get(store_t *s, const char *name, const char *version,
    int deleted, struct vlt_key_info *out, uint8_t **blob, size_t *blob_len)
{
	uint8_t *b = NULL;
	size_t bl = 0;
	uint64_t gen;
	int r, c;

	memset(out, 0, sizeof(*out));
	c = deleted ? VCACHE_UNCACHED :
	              vcache_get(s->vc, name, version, out, blob, blob_len);
	if (c == 1)
		return 0;
	lock_read(s);
	gen = vcache_gen(s->vc);
	/* a miss reads the blob too, so that the entry serves both kinds */
	r = s->be->version_get(s->b, name, version, deleted, out,
	    c == 0 ? &b : blob, c == 0 ? &bl : blob_len);
	(void)unlock(s, r);
	if (r != 0 || c != 0)
		return r;
	vcache_put(s->vc, name, version, gen, out, b, bl);
	if (blob != NULL) {
		*blob = b;
		*blob_len = bl;
	} else {
		free(b);
	}
	return 0;
}

int
store_ping(store_t *s)
{
	int r;

	lock_read(s);
	r = s->be->ping(s->b);
	return unlock(s, r);
}

int
store_probe(store_t *s)
{
	int failing, r = 0;

	lock_read(s);
	failing = s->disk.failing;
	(void)unlock(s, 0);
	if (!failing)
		return 0;
	lock_write(s);
	r = s->be->probe(s->b);
	return unlock(s, r);
}

void
store_storage_state(store_t *s, int *failing, uint64_t *errors, char *reason,
    size_t cap)
{
	lock_read(s);
	*failing = s->disk.failing;
	*errors = s->disk.errors;
	if (cap > 0 && str_fmt(reason, cap, "%s", s->disk.reason) != 0)
		reason[0] = '\0';
	(void)unlock(s, 0);
}

int
store_settings_get(store_t *s, struct vlt_settings *out)
{
	int r;

	lock_read(s);
	r = s->be->settings_get(s->b, out);
	return unlock(s, r);
}

int
store_settings_init(store_t *s, const struct vlt_settings *st)
{
	int r;

	lock_write(s);
	r = s->be->settings_init(s->b, st);
	return unlock(s, r);
}

int
store_settings_update(store_t *s, int retention_days, int purge_protection)
{
	int r;

	lock_write(s);
	r = s->be->settings_update(s->b, retention_days, purge_protection);
	return unlock(s, r);
}

int
store_version_insert(store_t *s, const struct vlt_key_info *info,
    const uint8_t *blob, size_t blob_len)
{
	int r;

	lock_write(s);
	r = s->be->version_insert(s->b, info, blob, blob_len);
	return unlock(s, r);
}

int
store_version_update(store_t *s, const char *name, const char *version,
    const struct store_update *u, int (*check_ops)(enum vlt_kty, unsigned),
    struct vlt_key_info *out)
{
	int r;

	lock_write(s);
	r = s->be->version_update(s->b, name, version, u, check_ops, out);
	return unlock(s, r);
}

int
store_key_list(store_t *s, int deleted, const char *after_name, size_t limit,
    struct vlt_key_info **items, size_t *n, int *more)
{
	int r;

	lock_read(s);
	r = s->be->key_list(s->b, deleted, after_name, limit, items, n, more);
	return unlock(s, r);
}

int
store_version_list(store_t *s, const char *name, int64_t after_seq,
    size_t limit, struct vlt_key_info **items, size_t *n, int64_t *last_seq,
    int *more)
{
	int r;

	lock_read(s);
	r = s->be->version_list(s->b, name, after_seq, limit, items, n,
	    last_seq, more);
	return unlock(s, r);
}

int
store_key_delete(store_t *s, const char *name, int64_t now,
    struct vlt_key_info *out)
{
	int r;

	lock_write(s);
	r = s->be->key_delete(s->b, name, now, out);
	return unlock(s, r);
}

int
store_key_recover(store_t *s, const char *name, struct vlt_key_info *out)
{
	int r;

	lock_write(s);
	r = s->be->key_recover(s->b, name, out);
	return unlock(s, r);
}

int
store_key_purge(store_t *s, const char *name, int64_t due_before,
    char (**versions)[VLT_VERSION_LEN + 1], size_t *n)
{
	int r;

	lock_write(s);
	r = s->be->key_purge(s->b, name, due_before, versions, n);
	return unlock(s, r);
}

int
store_purge_due_list(store_t *s, int64_t now, char (**names)[VLT_NAME_MAX + 1],
    size_t *n)
{
	int r;

	lock_read(s);
	r = s->be->purge_due_list(s->b, now, names, n);
	return unlock(s, r);
}

int
store_key_restore(store_t *s, const struct vlt_key_info *ks,
    uint8_t *const *blobs, const size_t *blob_lens, size_t n)
{
	int r;

	lock_write(s);
	r = s->be->key_restore(s->b, ks, blobs, blob_lens, n);
	return unlock(s, r);
}

int
store_blob_scan(store_t *s, int64_t after_seq, size_t limit,
    struct store_blob **items, size_t *n)
{
	int r;

	lock_read(s);
	r = s->be->blob_scan(s->b, after_seq, limit, items, n);
	return unlock(s, r);
}

int
store_blob_replace(store_t *s, const struct store_blob *items, size_t n,
    size_t *replaced)
{
	int r;

	lock_write(s);
	r = s->be->blob_replace(s->b, items, n, replaced);
	return unlock(s, r);
}

int
store_rotation_get(store_t *s, const char *name, struct store_rotation *out)
{
	int r;

	lock_read(s);
	r = s->be->rotation_get(s->b, name, out);
	return unlock(s, r);
}

int
store_rotation_put(store_t *s, const char *name,
    const struct store_rotation *rec, int64_t now)
{
	int r;

	lock_write(s);
	r = s->be->rotation_put(s->b, name, rec, now);
	return unlock(s, r);
}

int
store_rotation_list(store_t *s, struct store_rotation **recs, size_t *n)
{
	int r;

	lock_read(s);
	r = s->be->rotation_list(s->b, recs, n);
	return unlock(s, r);
}

int
store_principal_put(store_t *s, const struct vlt_principal *p)
{
	int r;

	lock_write(s);
	r = s->be->principal_put(s->b, p);
	return unlock(s, r);
}

int
store_principal_delete(store_t *s, const char *object_id)
{
	int r;

	lock_write(s);
	r = s->be->principal_delete(s->b, object_id);
	return unlock(s, r);
}

int
store_principal_list(store_t *s, struct vlt_principal **items, size_t *n)
{
	int r;

	lock_read(s);
	r = s->be->principal_list(s->b, items, n);
	return unlock(s, r);
}

int
store_access_put(store_t *s, const struct vlt_access_policy *a)
{
	int r;

	lock_write(s);
	r = s->be->access_put(s->b, a);
	return unlock(s, r);
}

int
store_access_delete(store_t *s, const char *object_id)
{
	int r;

	lock_write(s);
	r = s->be->access_delete(s->b, object_id);
	return unlock(s, r);
}

int
store_access_apply(store_t *s, const struct vlt_access_policy *items, size_t n)
{
	int r;

	lock_write(s);
	r = s->be->access_apply(s->b, items, n);
	return unlock(s, r);
}

int
store_access_list(store_t *s, struct vlt_access_policy **items, size_t *n)
{
	int r;

	lock_read(s);
	r = s->be->access_list(s->b, items, n);
	return unlock(s, r);
}

int
store_vault_insert(store_t *s, const struct vlt_vault *x)
{
	int r;

	lock_write(s);
	r = s->be->vault_insert(s->b, x);
	return unlock(s, r);
}

int
store_vault_get(store_t *s, const char *name, struct vlt_vault *out)
{
	int r;

	lock_read(s);
	r = s->be->vault_get(s->b, name, out);
	return unlock(s, r);
}

int
store_vault_list(store_t *s, int deleted, struct vlt_vault **items, size_t *n)
{
	int r;

	lock_read(s);
	r = s->be->vault_list(s->b, deleted, items, n);
	return unlock(s, r);
}

int
store_vault_update(store_t *s, const struct vlt_vault *x)
{
	int r;

	lock_write(s);
	r = s->be->vault_update(s->b, x);
	return unlock(s, r);
}

int
store_vault_remove(store_t *s, const char *name)
{
	int r;

	lock_write(s);
	r = s->be->vault_remove(s->b, name);
	return unlock(s, r);
}

int
store_record_put(store_t *s, const struct vlt_record *x, int create_only)
{
	int r;

	lock_write(s);
	r = s->be->record_put(s->b, x, create_only);
	return unlock(s, r);
}

int
store_record_get(store_t *s, const char *kind, const char *scope,
    const char *name, struct vlt_record *out)
{
	int r;

	lock_read(s);
	r = s->be->record_get(s->b, kind, scope, name, out);
	return unlock(s, r);
}

int
store_record_list(store_t *s, const char *kind, const char *scope,
    struct vlt_record **items, size_t *n)
{
	int r;

	lock_read(s);
	r = s->be->record_list(s->b, kind, scope, items, n);
	return unlock(s, r);
}

int
store_record_remove(store_t *s, const char *kind, const char *scope,
    const char *name)
{
	int r;

	lock_write(s);
	r = s->be->record_remove(s->b, kind, scope, name);
	return unlock(s, r);
}
