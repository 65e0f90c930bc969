/*
 * vault/store.h — private to vault/: the metadata store interface the
 * vault files use. vault/store.c is the front (one lock, so that every
 * function is atomic, and the version cache, vault/vcache.c); behind it a
 * backend (vault/store_backend.h) keeps the rows: vault/store_sqlite.c,
 * the only file with SQL. A second backend is one more file implementing
 * struct store_backend.
 *
 * Every function is atomic (one transaction under the store's lock) and
 * returns 0 or a negative VLT_ERR_*. Every write is durable on return;
 * a read takes no write lock and leaves the version cache as it is.
 * The store never calls the hsm, nor any vault file above it: callers do
 * slow token work outside it.
 */
#ifndef P11VAULT_VAULT_STORE_H
#define P11VAULT_VAULT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "vault/vault.h"

typedef struct store store_t;

/*
 * A store's address: a file path (SQLite), or a PostgreSQL database and
 * schema "CONNINFO#SCHEMA" (vault/store_pg.c): CONNINFO a libpq
 * connection string (postgresql:// or postgres:// URI, or key=value
 * pairs), SCHEMA of [a-z0-9_] (the root's "p11vault", a child's
 * "v_<id>"). An address may hold a password: it is never logged.
 */
int store_addr_is_pg(const char *addr);
/* db + "#" + schema into out (cap bytes). */
int store_addr_pg(const char *db, const char *schema, char *out,
    size_t cap) VLT_WUR;
/* create: 1 creates the store (a file 0600, or a schema) and its tables;
 * 0 requires both (VLT_ERR_NOT_FOUND: the schema is not there). why:
 * (cap bytes) the reason of a failure, never a password. */
int store_open(const char *path, int create, store_t **out) VLT_WUR;
int store_open_why(const char *path, int create, store_t **out, char *why,
    size_t cap) VLT_WUR;
/* Drops a PostgreSQL store (its schema); 0 at once for a file. */
int store_remove(const char *path, char *why, size_t cap) VLT_WUR;
void store_close(store_t *s);
/* Every cached version is stale from here on (another node wrote). */
void store_invalidate(store_t *s);
/* A trivial query, for health checks. */
int store_ping(store_t *s) VLT_WUR;
/* While the store is failing (a storage error, and no write committed
 * since): a write that changes nothing, to end the episode once the disk
 * takes writes again; 0 at once when not failing, else its result. */
int store_probe(store_t *s) VLT_WUR;
/* The store's storage-fault state: failing now, storage errors so far,
 * the episode's reason (at most cap bytes). */
void store_storage_state(store_t *s, int *failing, uint64_t *errors,
    char *reason, size_t cap);

int store_settings_get(store_t *s, struct vlt_settings *out) VLT_WUR;
/* Writes the initial settings row (init only). */
int store_settings_init(store_t *s, const struct vlt_settings *st) VLT_WUR;
/* retention < 0: unchanged; purge_protection -1: unchanged, 1: on, 0 while
 * on: VLT_ERR_BAD_PARAM. Checked and written in one transaction. */
int store_settings_update(store_t *s, int retention_days,
    int purge_protection) VLT_WUR;

/*
 * Inserts a new version (info->name, info->version and every attribute
 * as given) and makes it the key's latest. A deleted name:
 * VLT_ERR_DELETED_RECOVERABLE. A version id already in use:
 * VLT_ERR_CONFLICT.
 */
int store_version_insert(store_t *s, const struct vlt_key_info *info,
    const uint8_t *blob, size_t blob_len) VLT_WUR;

/*
 * One version of a key. version NULL: the latest. deleted 0: the key must
 * be live; 1: it must be soft-deleted (else VLT_ERR_NOT_FOUND). blob may
 * be NULL; else *blob is malloc'd.
 */
int store_version_get(store_t *s, const char *name, const char *version,
    int deleted, struct vlt_key_info *out, uint8_t **blob,
    size_t *blob_len) VLT_WUR;
/* Hits and misses of the version cache behind store_version_get. */
void store_vcache_stats(store_t *s, uint64_t *hits, uint64_t *misses);

struct store_update {
	int has_key_ops;
	unsigned key_ops;
	int has_enabled;
	int enabled;
	int has_nbf;
	int64_t nbf;
	int has_exp;
	int64_t exp;
	const char *tags;
	int64_t updated;
};
/* Updates a version of a live key; key_ops are checked against the
 * version's kty with check_ops (VLT_ERR_BAD_PARAM). out: the result. */
int store_version_update(store_t *s, const char *name, const char *version,
    const struct store_update *u, int (*check_ops)(enum vlt_kty, unsigned),
    struct vlt_key_info *out) VLT_WUR;

/* Keys (latest version each) ordered by name, names strictly after
 * after_name (NULL: from the start); at most limit items; *more: 1 when
 * further rows exist. deleted selects live or soft-deleted keys. */
int store_key_list(store_t *s, int deleted, const char *after_name,
    size_t limit, struct vlt_key_info **items, size_t *n, int *more) VLT_WUR;
/* Versions of a live key with seq > after_seq, oldest first; *last_seq:
 * seq of the last item returned; *more as above. */
int store_version_list(store_t *s, const char *name, int64_t after_seq,
    size_t limit, struct vlt_key_info **items, size_t *n, int64_t *last_seq,
    int *more) VLT_WUR;

/* Soft delete: deleted_date = now, scheduled purge = now + the retention
 * in force. out: latest version with the dates. */
int store_key_delete(store_t *s, const char *name, int64_t now,
    struct vlt_key_info *out) VLT_WUR;
int store_key_recover(store_t *s, const char *name,
    struct vlt_key_info *out) VLT_WUR;
/*
 * Deletes a soft-deleted key and all its versions (blobs included).
 * due_before 0: any time, but VLT_ERR_PURGE_PROTECTED under purge
 * protection; else only when scheduled_purge_date <= due_before, purge
 * protection notwithstanding (VLT_ERR_NOT_FOUND otherwise). *versions:
 * malloc'd array of the purged version ids (each VLT_VERSION_LEN + 1).
 */
int store_key_purge(store_t *s, const char *name, int64_t due_before,
    char (**versions)[VLT_VERSION_LEN + 1], size_t *n) VLT_WUR;
/* Names of soft-deleted keys due for purge at now; malloc'd array of
 * VLT_NAME_MAX + 1 strings. */
int store_purge_due_list(store_t *s, int64_t now,
    char (**names)[VLT_NAME_MAX + 1], size_t *n) VLT_WUR;

/* Inserts every version of a restored key in one transaction (oldest
 * first; all of ks share one name). The name exists, live or deleted, or
 * a version id is in use: VLT_ERR_CONFLICT. */
int store_key_restore(store_t *s, const struct vlt_key_info *ks,
    uint8_t *const *blobs, const size_t *blob_lens, size_t n) VLT_WUR;

/*
 * The blobs of every version, live or deleted, for the one-time upgrade
 * of unbound blobs (vault/upgrade.c): scan gives at most limit rows with seq >
 * after_seq in seq order (*n < limit: the last page); replace writes
 * each item's bound blob in one transaction, over the row it was read
 * from only if that row still holds the blob read (a row changed or
 * purged meanwhile is left as it is; *replaced counts the others).
 */
struct store_blob {
	int64_t seq;
	char name[VLT_NAME_MAX + 1];
	char version[VLT_VERSION_LEN + 1];
	uint8_t *blob; /* as read; malloc'd */
	size_t blob_len;
	uint8_t *bound; /* the caller's replacement; malloc'd */
	size_t bound_len;
};
int store_blob_scan(store_t *s, int64_t after_seq, size_t limit,
    struct store_blob **items, size_t *n) VLT_WUR;
int store_blob_replace(store_t *s, const struct store_blob *items, size_t n,
    size_t *replaced) VLT_WUR;
/* Frees an array from store_blob_scan (both blobs of each item). */
void store_blob_free_array(struct store_blob *items, size_t n);

/* Rotation policies, one per key name; purging the key removes it. The
 * actions are rotation.c's text, opaque here. get: VLT_ERR_NOT_FOUND
 * when there is none. put: the key must be live (else VLT_ERR_NOT_FOUND);
 * created is kept, updated = now. list: the policies of live keys, by
 * name, a malloc'd array. */
#define STORE_ROT_TEXT_MAX (VLT_ROT_ACTIONS_MAX * (VLT_DURATION_MAX + 48))
struct store_rotation {
	char name[VLT_NAME_MAX + 1]; /* the key's, as stored */
	int64_t expiry_secs;
	char expiry[VLT_DURATION_MAX];
	char actions[STORE_ROT_TEXT_MAX];
	int64_t created, updated;
};
int store_rotation_get(store_t *s, const char *name,
    struct store_rotation *out) VLT_WUR;
int store_rotation_put(store_t *s, const char *name,
    const struct store_rotation *rec, int64_t now) VLT_WUR;
int store_rotation_list(store_t *s, struct store_rotation **recs,
    size_t *n) VLT_WUR;

/* Principals and access policies. principal_put inserts or replaces by
 * object_id (client_id in use by another principal: VLT_ERR_CONFLICT). */
int store_principal_put(store_t *s, const struct vlt_principal *p) VLT_WUR;
int store_principal_delete(store_t *s, const char *object_id) VLT_WUR;
int store_principal_list(store_t *s, struct vlt_principal **items,
    size_t *n) VLT_WUR;
int store_access_put(store_t *s, const struct vlt_access_policy *a) VLT_WUR;
int store_access_delete(store_t *s, const char *object_id) VLT_WUR;
/* Every item in one transaction: perms 0 removes that object's policy. */
int store_access_apply(store_t *s, const struct vlt_access_policy *items,
    size_t n) VLT_WUR;
int store_access_list(store_t *s, struct vlt_access_policy **items,
    size_t *n) VLT_WUR;

/* The registry of an appliance's other vaults (in the root's store).
 * insert: a name in use, VLT_ERR_CONFLICT. get: any state (NOT_FOUND).
 * list: deleted 0 live, 1 soft-deleted, -1 all, by name. update: the row
 * of x's name, id and created takes x's dates, settings and meta
 * (VLT_ERR_NOT_FOUND when there is none). remove: the row. */
int store_vault_insert(store_t *s, const struct vlt_vault *x) VLT_WUR;
int store_vault_get(store_t *s, const char *name,
    struct vlt_vault *out) VLT_WUR;
int store_vault_list(store_t *s, int deleted, struct vlt_vault **items,
    size_t *n) VLT_WUR;
int store_vault_update(store_t *s, const struct vlt_vault *x) VLT_WUR;
int store_vault_remove(store_t *s, const char *name) VLT_WUR;

/* The management API's records (vault/records.c), keyed by kind, scope
 * and name (scope and name case-insensitive). put: create_only 1, a key
 * in use is VLT_ERR_CONFLICT; 0 inserts or replaces ref, updated and
 * meta (created kept). get/remove: VLT_ERR_NOT_FOUND when none. list:
 * scope NULL, every scope; by scope, then name. */
int store_record_put(store_t *s, const struct vlt_record *x,
    int create_only) VLT_WUR;
int store_record_get(store_t *s, const char *kind, const char *scope,
    const char *name, struct vlt_record *out) VLT_WUR;
int store_record_list(store_t *s, const char *kind, const char *scope,
    struct vlt_record **items, size_t *n) VLT_WUR;
int store_record_remove(store_t *s, const char *kind, const char *scope,
    const char *name) VLT_WUR;

#endif
