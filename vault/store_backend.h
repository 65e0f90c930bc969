/*
 * vault/store_backend.h — private to vault/: what a store backend
 * implements, behind vault/store.c. Each function does the whole of the
 * store_* function of the same name (store.h says what), in one
 * transaction of its own; store.c holds the store's lock around every
 * call, so a backend serves one call at a time and needs no lock of its
 * own, and store.c invalidates the version cache before every write.
 * A read must take no write lock.
 *
 * A backend is one file defining struct store_be (its connection) and a
 * const struct store_backend; vault/store_sqlite.c is the SQLite one,
 * vault/store_pg.c the PostgreSQL one, chosen by store_open from the
 * store's address (store.h).
 */
#ifndef P11VAULT_VAULT_STORE_BACKEND_H
#define P11VAULT_VAULT_STORE_BACKEND_H

#include "vault/store.h"

struct store_be;

struct store_backend {
	const char *name;
	/* create: 1 makes the store (0600) and its schema; 0 needs both.
	 * why (cap bytes): a failure's reason, never a password. */
	int (*open)(const char *path, int create, struct store_be **out,
	    char *why, size_t cap);
	/* NULL, or removes the store of that address (a purged vault) */
	int (*remove)(const char *path, char *why, size_t cap);
	void (*close)(struct store_be *b);
	int (*ping)(struct store_be *b);
	/* a write that changes nothing, to see that the disk takes writes */
	int (*probe)(struct store_be *b);
	/* the last error's text (for the storage_error log line) */
	void (*why)(struct store_be *b, char *buf, size_t cap);
	int (*settings_get)(struct store_be *b, struct vlt_settings *out);
	int (*settings_init)(struct store_be *b, const struct vlt_settings *st);
	int (*settings_update)(struct store_be *b, int retention_days,
	    int purge_protection);
	int (*version_insert)(struct store_be *b,
	    const struct vlt_key_info *info, const uint8_t *blob,
	    size_t blob_len);
	int (*version_get)(struct store_be *b, const char *name,
	    const char *version, int deleted, struct vlt_key_info *out,
	    uint8_t **blob, size_t *blob_len);
	int (*version_update)(struct store_be *b, const char *name,
	    const char *version, const struct store_update *u,
	    int (*check_ops)(enum vlt_kty, unsigned), struct vlt_key_info *out);
	int (*key_list)(struct store_be *b, int deleted, const char *after_name,
	    size_t limit, struct vlt_key_info **items, size_t *n, int *more);
	int (*version_list)(struct store_be *b, const char *name,
	    int64_t after_seq, size_t limit, struct vlt_key_info **items,
	    size_t *n, int64_t *last_seq, int *more);
	int (*key_delete)(struct store_be *b, const char *name, int64_t now,
	    struct vlt_key_info *out);
	int (*key_recover)(struct store_be *b, const char *name,
	    struct vlt_key_info *out);
	int (*key_purge)(struct store_be *b, const char *name,
	    int64_t due_before, char (**versions)[VLT_VERSION_LEN + 1],
	    size_t *n);
	int (*purge_due_list)(struct store_be *b, int64_t now,
	    char (**names)[VLT_NAME_MAX + 1], size_t *n);
	int (*key_restore)(struct store_be *b, const struct vlt_key_info *ks,
	    uint8_t *const *blobs, const size_t *blob_lens, size_t n);
	int (*blob_scan)(struct store_be *b, int64_t after_seq, size_t limit,
	    struct store_blob **items, size_t *n);
	int (*blob_replace)(struct store_be *b, const struct store_blob *items,
	    size_t n, size_t *replaced);
	int (*rotation_get)(struct store_be *b, const char *name,
	    struct store_rotation *out);
	int (*rotation_put)(struct store_be *b, const char *name,
	    const struct store_rotation *rec, int64_t now);
	int (*rotation_list)(struct store_be *b, struct store_rotation **recs,
	    size_t *n);
	int (*principal_put)(struct store_be *b, const struct vlt_principal *p);
	int (*principal_delete)(struct store_be *b, const char *object_id);
	int (*principal_list)(struct store_be *b, struct vlt_principal **items,
	    size_t *n);
	int (*access_put)(struct store_be *b,
	    const struct vlt_access_policy *a);
	int (*access_delete)(struct store_be *b, const char *object_id);
	int (*access_apply)(struct store_be *b,
	    const struct vlt_access_policy *items, size_t n);
	int (*access_list)(struct store_be *b, struct vlt_access_policy **items,
	    size_t *n);
	int (*vault_insert)(struct store_be *b, const struct vlt_vault *x);
	int (*vault_get)(struct store_be *b, const char *name,
	    struct vlt_vault *out);
	int (*vault_list)(struct store_be *b, int deleted,
	    struct vlt_vault **items, size_t *n);
	int (*vault_update)(struct store_be *b, const struct vlt_vault *x);
	int (*vault_remove)(struct store_be *b, const char *name);
	int (*record_put)(struct store_be *b, const struct vlt_record *x,
	    int create_only);
	int (*record_get)(struct store_be *b, const char *kind,
	    const char *scope, const char *name, struct vlt_record *out);
	int (*record_list)(struct store_be *b, const char *kind,
	    const char *scope, struct vlt_record **items, size_t *n);
	int (*record_remove)(struct store_be *b, const char *kind,
	    const char *scope, const char *name);
	/* NULL, or after a committed write (under the lock): what settle
	 * needs, taken (0: nothing); then settle runs after the lock, e.g.
	 * the wait for the other nodes (vault/cluster.h) */
	int64_t (*settle_take)(struct store_be *b);
	void (*settle)(struct store_be *b, int64_t what);
};

extern const struct store_backend store_sqlite_backend;
extern const struct store_backend store_pg_backend;

#endif
