/*
 * vault/store_sqlite.c — the SQLite store backend, and the only file in
 * the product with SQL: the statement catalogue, the schema, and every
 * store function's transaction over DIR/vault.db (WAL, synchronous=FULL,
 * foreign keys, secure_delete; PRAGMA user_version is the schema).
 *
 * store.c holds the store's lock around every call here, so one
 * connection serves one call at a time.
 *
 * Must never: build SQL from data (prepared statements with bound
 * parameters only), write outside a transaction, take a write lock for a
 * read, acknowledge a write before COMMIT returned, call the hsm or a
 * vault file above the store, or log anything it stores.
 */
#include "vault/store_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "hsm/base.h"
#include "vault/info.h"

#define STORE_SCHEMA_VERSION 1

#define ROT_TABLE_SQL \
	"CREATE TABLE IF NOT EXISTS rotation_policies (" \
	" name TEXT PRIMARY KEY COLLATE NOCASE," \
	" expiry_secs INTEGER NOT NULL, expiry TEXT NOT NULL," \
	" actions TEXT NOT NULL," \
	" created INTEGER NOT NULL, updated INTEGER NOT NULL)"

/* The appliance's other vaults (vault/children.c); in every store, used
 * in the root's. */
#define VAULTS_TABLE_SQL \
	"CREATE TABLE IF NOT EXISTS vaults (" \
	" name TEXT PRIMARY KEY COLLATE NOCASE," \
	" id TEXT NOT NULL UNIQUE," \
	" created INTEGER NOT NULL, updated INTEGER NOT NULL," \
	" deleted_date INTEGER NOT NULL DEFAULT 0," \
	" scheduled_purge_date INTEGER NOT NULL DEFAULT 0," \
	" retention_days INTEGER NOT NULL," \
	" purge_protection INTEGER NOT NULL," \
	" meta TEXT)"

/* The management API's own records (vault/records.c): resource groups,
 * user-assigned identities' names; in every store, used in the root's. */
#define RECORDS_TABLE_SQL \
	"CREATE TABLE IF NOT EXISTS records (" \
	" kind TEXT NOT NULL," \
	" scope TEXT NOT NULL COLLATE NOCASE," \
	" name TEXT NOT NULL COLLATE NOCASE," \
	" ref TEXT NOT NULL," \
	" created INTEGER NOT NULL, updated INTEGER NOT NULL," \
	" meta TEXT," \
	" PRIMARY KEY (kind, scope, name))"

enum st_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_PING,
	ST_SETTINGS_GET,
	ST_SETTINGS_PUT,
	ST_KEY_STATE,
	ST_KEY_INSERT,
	ST_KEY_LATEST,
	ST_VERSION_INSERT,
	ST_VERSION_LATEST,
	ST_VERSION_BY_ID,
	ST_VERSION_UPDATE,
	ST_KEY_LIST,
	ST_VERSION_LIST,
	ST_KEY_DELETE,
	ST_KEY_RECOVER,
	ST_VERSION_IDS,
	ST_VERSIONS_DELETE,
	ST_KEY_REMOVE,
	ST_DUE_LIST,
	ST_PRINCIPAL_PUT,
	ST_PRINCIPAL_DELETE,
	ST_PRINCIPAL_LIST,
	ST_ACCESS_PUT,
	ST_ACCESS_DELETE,
	ST_ACCESS_LIST,
	ST_BLOB_SCAN,
	ST_BLOB_REPLACE,
	ST_ROT_GET,
	ST_ROT_PUT,
	ST_ROT_LIST,
	ST_ROT_DELETE,
	ST_BEGIN_READ,
	ST_PROBE,
	ST_VAULT_INSERT,
	ST_VAULT_GET,
	ST_VAULT_LIST,
	ST_VAULT_UPDATE,
	ST_VAULT_REMOVE,
	ST_RECORD_INSERT,
	ST_RECORD_UPSERT,
	ST_RECORD_GET,
	ST_RECORD_LIST,
	ST_RECORD_REMOVE,
	ST_COUNT
};

#define V_COLS \
	"v.name, v.version, v.kty, v.hsm, v.key_size, v.crv, " \
	"v.key_ops, v.enabled, v.nbf, v.exp, v.created, v.updated, v.tags, " \
	"v.spki, k.deleted_date, k.scheduled_purge_date, v.seq, v.blob"

#define VAULT_COLS \
	"name, id, created, updated, deleted_date, scheduled_purge_date, " \
	"retention_days, purge_protection, meta"

#define RECORD_COLS "kind, scope, name, ref, created, updated, meta"

static const char *const st_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_PING] = "SELECT count(*) FROM settings",
	[ST_SETTINGS_GET] =
	    "SELECT retention_days, purge_protection FROM settings WHERE id = 1",
	[ST_SETTINGS_PUT] =
	    "INSERT INTO settings(id, retention_days, purge_protection) "
	    "VALUES (1, ?1, ?2) ON CONFLICT(id) DO UPDATE SET "
	    "retention_days = excluded.retention_days, "
	    "purge_protection = excluded.purge_protection",
	[ST_KEY_STATE] =
	    "SELECT name, deleted_date, scheduled_purge_date FROM keys "
	    "WHERE name = ?1",
	[ST_KEY_INSERT] =
	    "INSERT INTO keys(name, deleted_date, scheduled_purge_date, "
	    "latest_seq) VALUES (?1, 0, 0, 0)",
	[ST_KEY_LATEST] = "UPDATE keys SET latest_seq = ?1 WHERE name = ?2",
	[ST_VERSION_INSERT] =
	    "INSERT INTO key_versions(name, version, kty, hsm, key_size, crv, "
	    "key_ops, enabled, nbf, exp, created, updated, tags, spki, blob) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
	    "?14, ?15)",
	[ST_VERSION_LATEST] = "SELECT " V_COLS
	                      " FROM keys k JOIN key_versions v "
	                      "ON v.seq = k.latest_seq WHERE k.name = ?1 "
	                      "AND (k.deleted_date != 0) = ?2",
	[ST_VERSION_BY_ID] =
	    "SELECT " V_COLS
	    " FROM keys k JOIN key_versions v "
	    "ON v.name = k.name WHERE k.name = ?1 AND v.version = ?2 "
	    "AND (k.deleted_date != 0) = ?3",
	[ST_VERSION_UPDATE] =
	    "UPDATE key_versions SET key_ops = ?1, enabled = ?2, nbf = ?3, "
	    "exp = ?4, tags = ?5, updated = ?6 WHERE seq = ?7",
	[ST_KEY_LIST] =
	    "SELECT " V_COLS
	    " FROM keys k JOIN key_versions v "
	    "ON v.seq = k.latest_seq WHERE (k.deleted_date != 0) = ?1 "
	    "AND k.name > ?2 ORDER BY k.name LIMIT ?3",
	[ST_VERSION_LIST] =
	    "SELECT " V_COLS
	    " FROM keys k JOIN key_versions v "
	    "ON v.name = k.name WHERE k.name = ?1 AND k.deleted_date = 0 "
	    "AND v.seq > ?2 ORDER BY v.seq LIMIT ?3",
	[ST_KEY_DELETE] =
	    "UPDATE keys SET deleted_date = ?1, scheduled_purge_date = ?2 "
	    "WHERE name = ?3 AND deleted_date = 0",
	[ST_KEY_RECOVER] =
	    "UPDATE keys SET deleted_date = 0, scheduled_purge_date = 0 "
	    "WHERE name = ?1 AND deleted_date != 0",
	[ST_VERSION_IDS] =
	    "SELECT version FROM key_versions WHERE name = ?1 ORDER BY seq",
	[ST_VERSIONS_DELETE] = "DELETE FROM key_versions WHERE name = ?1",
	[ST_KEY_REMOVE] = "DELETE FROM keys WHERE name = ?1",
	[ST_DUE_LIST] =
	    "SELECT name FROM keys WHERE deleted_date != 0 "
	    "AND scheduled_purge_date <= ?1 ORDER BY name",
	[ST_PRINCIPAL_PUT] =
	    "INSERT INTO principals(object_id, client_id, display_name, "
	    "secret_hash, is_admin, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
	    "ON CONFLICT(object_id) DO UPDATE SET "
	    "client_id = excluded.client_id, "
	    "display_name = excluded.display_name, "
	    "secret_hash = excluded.secret_hash, "
	    "is_admin = excluded.is_admin, created = excluded.created",
	[ST_PRINCIPAL_DELETE] = "DELETE FROM principals WHERE object_id = ?1",
	[ST_PRINCIPAL_LIST] =
	    "SELECT object_id, client_id, display_name, secret_hash, is_admin, "
	    "created FROM principals ORDER BY created, object_id",
	[ST_ACCESS_PUT] =
	    "INSERT INTO access_policies(object_id, tenant_id, perms) "
	    "VALUES (?1, ?2, ?3) ON CONFLICT(object_id) DO UPDATE SET "
	    "tenant_id = excluded.tenant_id, perms = excluded.perms",
	[ST_ACCESS_DELETE] = "DELETE FROM access_policies WHERE object_id = ?1",
	[ST_ACCESS_LIST] =
	    "SELECT object_id, tenant_id, perms FROM access_policies "
	    "ORDER BY object_id",
	[ST_BLOB_SCAN] =
	    "SELECT seq, name, version, blob FROM key_versions "
	    "WHERE seq > ?1 ORDER BY seq LIMIT ?2",
	[ST_BLOB_REPLACE] =
	    "UPDATE key_versions SET blob = ?1 WHERE seq = ?2 AND blob = ?3",
	[ST_ROT_GET] =
	    "SELECT name, expiry_secs, expiry, actions, created, updated "
	    "FROM rotation_policies WHERE name = ?1",
	[ST_ROT_PUT] =
	    "INSERT INTO rotation_policies(name, expiry_secs, expiry, actions, "
	    "created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?5) "
	    "ON CONFLICT(name) DO UPDATE SET "
	    "expiry_secs = excluded.expiry_secs, expiry = excluded.expiry, "
	    "actions = excluded.actions, updated = excluded.updated",
	[ST_ROT_LIST] =
	    "SELECT r.name, r.expiry_secs, r.expiry, r.actions, r.created, "
	    "r.updated FROM rotation_policies r JOIN keys k ON k.name = r.name "
	    "WHERE k.deleted_date = 0 ORDER BY r.name",
	[ST_ROT_DELETE] = "DELETE FROM rotation_policies WHERE name = ?1",
	/* a read transaction: takes no write lock */
	[ST_BEGIN_READ] = "BEGIN DEFERRED",
	/* a write that changes nothing but reaches the disk (WAL, fsync):
	 * the header page is rewritten even with the same value (a row
	 * updated to its own value is not; STORE_SCHEMA_VERSION) */
	[ST_PROBE] = "PRAGMA user_version = 1",
	[ST_VAULT_INSERT] =
	    "INSERT INTO vaults(name, id, created, updated, deleted_date, "
	    "scheduled_purge_date, retention_days, purge_protection, meta) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[ST_VAULT_GET] = "SELECT " VAULT_COLS " FROM vaults WHERE name = ?1",
	[ST_VAULT_LIST] = "SELECT " VAULT_COLS
	                  " FROM vaults "
	                  "WHERE ?1 < 0 OR (deleted_date != 0) = ?1 "
	                  "ORDER BY name",
	[ST_VAULT_UPDATE] =
	    "UPDATE vaults SET updated = ?4, deleted_date = ?5, "
	    "scheduled_purge_date = ?6, retention_days = ?7, "
	    "purge_protection = ?8, meta = ?9 WHERE name = ?1 AND id = ?2 "
	    "AND created = ?3",
	[ST_VAULT_REMOVE] = "DELETE FROM vaults WHERE name = ?1",
	[ST_RECORD_INSERT] =
	    "INSERT INTO records(kind, scope, name, ref, created, updated, "
	    "meta) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[ST_RECORD_UPSERT] =
	    "INSERT INTO records(kind, scope, name, ref, created, updated, "
	    "meta) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
	    "ON CONFLICT(kind, scope, name) DO UPDATE SET ref = excluded.ref, "
	    "updated = excluded.updated, meta = excluded.meta",
	[ST_RECORD_GET] = "SELECT " RECORD_COLS
	                  " FROM records WHERE kind = ?1 AND scope = ?2 "
	                  "AND name = ?3",
	[ST_RECORD_LIST] = "SELECT " RECORD_COLS
	                   " FROM records WHERE kind = ?1 AND "
	                   "(?2 IS NULL OR scope = ?2) ORDER BY scope, name",
	[ST_RECORD_REMOVE] =
	    "DELETE FROM records WHERE kind = ?1 AND "
	    "scope = ?2 AND name = ?3",
};

/* Schema version 1. Names compare case-insensitively, as Azure's do. */
static const char *const schema_v1[] = {
	"CREATE TABLE settings ("
	" id INTEGER PRIMARY KEY CHECK (id = 1),"
	" retention_days INTEGER NOT NULL CHECK (retention_days BETWEEN 7 AND 90),"
	" purge_protection INTEGER NOT NULL CHECK (purge_protection IN (0, 1)))",
	"CREATE TABLE keys ("
	" name TEXT PRIMARY KEY COLLATE NOCASE,"
	" deleted_date INTEGER NOT NULL DEFAULT 0,"
	" scheduled_purge_date INTEGER NOT NULL DEFAULT 0,"
	" latest_seq INTEGER NOT NULL DEFAULT 0)",
	"CREATE TABLE key_versions ("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT NOT NULL COLLATE NOCASE"
	"  REFERENCES keys(name) ON DELETE CASCADE,"
	" version TEXT NOT NULL UNIQUE,"
	" kty INTEGER NOT NULL, hsm INTEGER NOT NULL,"
	" key_size INTEGER NOT NULL, crv INTEGER NOT NULL,"
	" key_ops INTEGER NOT NULL, enabled INTEGER NOT NULL,"
	" nbf INTEGER NOT NULL, exp INTEGER NOT NULL,"
	" created INTEGER NOT NULL, updated INTEGER NOT NULL,"
	" tags TEXT, spki BLOB NOT NULL, blob BLOB NOT NULL)",
	"CREATE INDEX key_versions_by_name ON key_versions(name, seq)",
	"CREATE INDEX keys_by_purge_date ON keys(scheduled_purge_date)"
	" WHERE deleted_date != 0",
	"CREATE TABLE principals ("
	" object_id TEXT PRIMARY KEY,"
	" client_id TEXT NOT NULL UNIQUE,"
	" display_name TEXT NOT NULL,"
	" secret_hash TEXT,"
	" is_admin INTEGER NOT NULL,"
	" created INTEGER NOT NULL)",
	"CREATE TABLE access_policies ("
	" object_id TEXT PRIMARY KEY,"
	" tenant_id TEXT NOT NULL,"
	" perms INTEGER NOT NULL)",
	"PRAGMA user_version = 1",
};

struct store_be {
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	char why[160]; /* a failed write's error, kept across its ROLLBACK */
};
typedef struct store_be db_t;

static void sq_close(db_t *s);

static int
map_rc(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_CONSTRAINT:
		return VLT_ERR_CONFLICT;
	case SQLITE_NOMEM:
		return VLT_ERR_NO_MEMORY;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return VLT_ERR_UNAVAILABLE;
	/* the disk: full, failing, read-only, or a journal or WAL file
	 * that cannot be made */
	case SQLITE_FULL:
	case SQLITE_IOERR:
	case SQLITE_READONLY:
	case SQLITE_CANTOPEN:
		return VLT_ERR_STORAGE;
	default:
		return VLT_ERR_INTERNAL;
	}
}

/* A one-off statement (DDL, pragmas); stepped to completion. */
static int
exec_once(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
out:
	sqlite3_finalize(st);
	return map_rc(rc);
}

static int
pragma_int(sqlite3 *db, const char *sql, int64_t *val)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		goto out;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*val = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	}
out:
	sqlite3_finalize(st);
	return map_rc(rc);
}

/* A cached statement, reset and unbound; NULL on failure. */
static sqlite3_stmt *
st_get(db_t *s, enum st_id id)
{
	if (s->st[id] == NULL &&
	    sqlite3_prepare_v3(s->db, st_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
	        &s->st[id], NULL) != SQLITE_OK)
		return NULL;
	sqlite3_reset(s->st[id]);
	sqlite3_clear_bindings(s->st[id]);
	return s->st[id];
}

/* A cached statement into *st; VLT_ERR_INTERNAL if it cannot be had. */
static int
st_prep(db_t *s, enum st_id id, sqlite3_stmt **st)
{
	*st = st_get(s, id);
	return *st == NULL ? VLT_ERR_INTERNAL : 0;
}

/* Steps st once: 0 on a row, none when there is no row, else the error. */
static int
step_row(sqlite3_stmt *st, int none)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? none : map_rc(rc);
}

static void
st_done(sqlite3_stmt *st)
{
	if (st != NULL) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	}
}

/* Runs a statement without result rows. */
static int
st_run(db_t *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	st_done(st);
	(void)s;
	return rc == SQLITE_DONE ? 0 : map_rc(rc);
}

/* Runs a cached statement without parameters or result rows. */
static int
st_exec(db_t *s, enum st_id id)
{
	sqlite3_stmt *st;
	int r;

	if ((r = st_prep(s, id, &st)) != 0)
		return r;
	return st_run(s, st);
}

static void tx_rollback(db_t *s);

/* A write transaction (the database's write lock from here on). A
 * transaction left open by a ROLLBACK that failed (the disk) is rolled
 * back first: nothing of a failed write may become part of the next. */
static int
tx_begin(db_t *s)
{
	if (!sqlite3_get_autocommit(s->db)) {
		tx_rollback(s);
		if (!sqlite3_get_autocommit(s->db))
			return VLT_ERR_STORAGE;
	}
	return st_exec(s, ST_BEGIN);
}

static int
tx_commit(db_t *s)
{
	return st_exec(s, ST_COMMIT);
}

static void
tx_rollback(db_t *s)
{
	sqlite3_stmt *st;

	if (sqlite3_get_autocommit(s->db))
		return;
	st = st_get(s, ST_ROLLBACK);
	if (st != NULL)
		(void)st_run(s, st);
}

static void why_now(db_t *s, char *buf, size_t cap);

/* Ends a transaction: COMMIT when r is 0, else ROLLBACK (everything of
 * it, whichever statement failed). */
static int
tx_end(db_t *s, int r)
{
	if (r == 0) {
		r = tx_commit(s);
		if (r == 0)
			return 0;
	}
	if (r == VLT_ERR_STORAGE)
		why_now(s, s->why, sizeof(s->why));
	tx_rollback(s);
	return r;
}

static int
bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v == NULL)
		return sqlite3_bind_null(st, i);
	return sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
}

static void
copy_col_text(sqlite3_stmt *st, int i, char *dst, size_t cap)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	size_t len = t == NULL ? 0 : (size_t)sqlite3_column_bytes(st, i);

	if (len >= cap)
		len = cap - 1;
	if (len > 0)
		memcpy(dst, t, len);
	dst[len] = '\0';
}

/* Fills one zeroed array element from the current row. */
typedef int (*row_fn)(sqlite3_stmt *st, void *elem);

/* Steps a bound statement to its end, one elem-sized element a row
 * (capacity first, doubling). *arr and *n are set even on failure, so
 * that the caller can free what was read. */
static int
collect_rows(sqlite3_stmt *st, size_t elem, size_t first, row_fn fn, void **arr,
    size_t *n)
{
	unsigned char *a = NULL, *tmp;
	size_t cnt = 0, cap = 0;
	int rc, r = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? cap * 2 : first;
			if ((tmp = reallocarray(a, cap, elem)) == NULL) {
				r = VLT_ERR_NO_MEMORY;
				goto out;
			}
			a = tmp;
		}
		memset(a + cnt * elem, 0, elem);
		cnt++;
		if ((r = fn(st, a + (cnt - 1) * elem)) != 0)
			goto out;
	}
	if (rc != SQLITE_DONE)
		r = map_rc(rc);
out:
	*arr = a;
	*n = cnt;
	return r;
}

/* Frees an array of n elements and what they own. */
typedef void (*free_fn)(void *arr, size_t n);

static void
free_plain(void *arr, size_t n)
{
	(void)n;
	free(arr);
}

/* collect_rows over a cached statement, ?1 bound to *p1 if p1 is not
 * NULL. On failure what was read is freed with
 * release and *arr, *n are NULL, 0. */
static int
list_rows(db_t *s, enum st_id id, const int64_t *p1, size_t elem, size_t first,
    row_fn fn, free_fn release, void **arr, size_t *n)
{
	sqlite3_stmt *st;
	int r;

	*arr = NULL;
	*n = 0;
	if ((r = st_prep(s, id, &st)) == 0) {
		if (p1 != NULL)
			sqlite3_bind_int64(st, 1, *p1);
		r = collect_rows(st, elem, first, fn, arr, n);
	}
	st_done(st);
	if (r != 0) {
		release(*arr, *n);
		*arr = NULL;
		*n = 0;
	}
	return r;
}

/* Binds a write statement's parameters from arg. */
typedef void (*bind_fn)(sqlite3_stmt *st, const void *arg);

/* Runs one cached write statement; the caller holds a transaction. */
static int
write_locked(db_t *s, enum st_id id, bind_fn bind, const void *arg)
{
	sqlite3_stmt *st;
	int r;

	if ((r = st_prep(s, id, &st)) != 0)
		return r;
	bind(st, arg);
	return st_run(s, st);
}

/* write_locked in a transaction of its own. */
static int
write_one(db_t *s, enum st_id id, bind_fn bind, const void *arg)
{
	int r;

	if ((r = tx_begin(s)) == 0)
		r = tx_end(s, write_locked(s, id, bind, arg));
	return r;
}

/* row_fn for a one-column list of names. */
static int
row_name(sqlite3_stmt *st, void *elem)
{
	copy_col_text(st, 0, elem, VLT_NAME_MAX + 1);
	return 0;
}

/* row_fn for a one-column list of version ids. */
static int
row_version_id(sqlite3_stmt *st, void *elem)
{
	copy_col_text(st, 0, elem, VLT_VERSION_LEN + 1);
	return 0;
}

/* Fills *k (and optionally the blob) from a row of V_COLS. */
static int
read_version_row(sqlite3_stmt *st, struct vlt_key_info *k, int64_t *seq,
    uint8_t **blob, size_t *blob_len)
{
	const void *p;
	size_t len;

	memset(k, 0, sizeof(*k));
	copy_col_text(st, 0, k->name, sizeof(k->name));
	copy_col_text(st, 1, k->version, sizeof(k->version));
	k->kty = (enum vlt_kty)sqlite3_column_int(st, 2);
	k->hsm = sqlite3_column_int(st, 3);
	k->key_size = (unsigned)sqlite3_column_int(st, 4);
	k->crv = (enum vlt_curve)sqlite3_column_int(st, 5);
	k->key_ops = (unsigned)sqlite3_column_int64(st, 6);
	k->attrs.enabled = sqlite3_column_int(st, 7);
	k->attrs.nbf = sqlite3_column_int64(st, 8);
	k->attrs.exp = sqlite3_column_int64(st, 9);
	k->attrs.created = sqlite3_column_int64(st, 10);
	k->attrs.updated = sqlite3_column_int64(st, 11);
	if (sqlite3_column_type(st, 12) != SQLITE_NULL) {
		const unsigned char *t = sqlite3_column_text(st, 12);

		if (t == NULL || (k->tags = strdup((const char *)t)) == NULL)
			goto nomem;
	}
	p = sqlite3_column_blob(st, 13);
	len = (size_t)sqlite3_column_bytes(st, 13);
	if (len > 0) {
		if ((k->spki = malloc(len)) == NULL)
			goto nomem;
		memcpy(k->spki, p, len);
		k->spki_len = len;
	}
	k->deleted_date = sqlite3_column_int64(st, 14);
	k->scheduled_purge_date = sqlite3_column_int64(st, 15);
	if (seq != NULL)
		*seq = sqlite3_column_int64(st, 16);
	if (blob != NULL) {
		p = sqlite3_column_blob(st, 17);
		len = (size_t)sqlite3_column_bytes(st, 17);
		if (len == 0 || (*blob = malloc(len)) == NULL)
			goto nomem;
		memcpy(*blob, p, len);
		*blob_len = len;
	}
	return 0;
nomem:
	vlt_key_info_clear(k);
	return VLT_ERR_NO_MEMORY;
}

static int
sq_open(const char *path, int create, db_t **out, char *why, size_t cap)
{
	db_t *s = NULL;
	int64_t uv = 0;
	int r, fd, flags;
	size_t i;

	*out = NULL;
	if (cap > 0)
		why[0] = '\0';
	if (create) {
		/* Created here so that the db, and the -wal and -shm files
		 * SQLite derives from its mode, are 0600 whatever the umask. */
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return errno == EEXIST ? VLT_ERR_EXISTS : VLT_ERR_IO;
		close(fd);
	}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return VLT_ERR_NO_MEMORY;
	flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX;
	if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
		r = VLT_ERR_IO;
		goto out;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, 5000);
	if ((r = exec_once(s->db, "PRAGMA journal_mode = WAL")) != 0 ||
	    (r = exec_once(s->db, "PRAGMA synchronous = FULL")) != 0 ||
	    (r = exec_once(s->db, "PRAGMA foreign_keys = ON")) != 0 ||
	    (r = exec_once(s->db, "PRAGMA secure_delete = ON")) != 0)
		goto out;
	if ((r = pragma_int(s->db, "PRAGMA user_version", &uv)) != 0)
		goto out;
	if (uv == 0 && create) {
		if ((r = tx_begin(s)) != 0)
			goto out;
		for (i = 0; i < sizeof(schema_v1) / sizeof(schema_v1[0]); i++)
			if ((r = exec_once(s->db, schema_v1[i])) != 0)
				break;
		if ((r = tx_end(s, r)) != 0)
			goto out;
	} else if (uv != STORE_SCHEMA_VERSION) {
		/* Not our database, or one from a newer release. */
		r = VLT_ERR_INTERNAL;
		goto out;
	}
	/* Added with rotation policies; vaults made before get it here. */
	if ((r = exec_once(s->db, ROT_TABLE_SQL)) != 0 ||
	    (r = exec_once(s->db, VAULTS_TABLE_SQL)) != 0 ||
	    (r = exec_once(s->db, RECORDS_TABLE_SQL)) != 0)
		goto out;
	*out = s;
	s = NULL;
	r = 0;
out:
	sq_close(s);
	return r;
}

static void
sq_close(db_t *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->db);
	free(s);
}

static int
sq_ping(db_t *s)
{
	sqlite3_stmt *st;
	int r;

	if ((r = st_prep(s, ST_PING, &st)) != 0)
		goto out;
	r = sqlite3_step(st) == SQLITE_ROW ? 0 : VLT_ERR_UNAVAILABLE;
	st_done(st);
	/* writable: take the write lock and let it go (no fsync) */
	if (r == 0 && st_exec(s, ST_BEGIN) != 0)
		r = VLT_ERR_UNAVAILABLE;
	else if (r == 0)
		tx_rollback(s);
out:
	st_done(st);
	return r;
}

/* A real write (the schema version rewritten as it is, committed with
 * fsync): whether the disk takes writes again after a storage error. */
static int
sq_probe(db_t *s)
{
	int r;

	if ((r = tx_begin(s)) == 0)
		r = tx_end(s, st_exec(s, ST_PROBE));
	return r;
}

/* The last error: SQLite's message and the errno behind it. */
static void
why_now(db_t *s, char *buf, size_t cap)
{
	int e = sqlite3_system_errno(s->db);

	if (str_fmt(buf, cap, "vault.db: %s (SQLite %d)%s%s",
	        sqlite3_errmsg(s->db), sqlite3_extended_errcode(s->db),
	        e != 0 ? ": " : "", e != 0 ? strerror(e) : "") != 0 &&
	    cap > 0)
		buf[0] = '\0';
}

/* The failed write's error if one was kept, else the last one's. */
static void
sq_why(db_t *s, char *buf, size_t cap)
{
	if (s->why[0] == '\0') {
		why_now(s, buf, cap);
		return;
	}
	if (str_fmt(buf, cap, "%s", s->why) != 0 && cap > 0)
		buf[0] = '\0';
	s->why[0] = '\0';
}

static int
settings_read(db_t *s, struct vlt_settings *out)
{
	sqlite3_stmt *st;
	int r;

	if ((r = st_prep(s, ST_SETTINGS_GET, &st)) != 0)
		return r;
	if ((r = step_row(st, VLT_ERR_INTERNAL)) == 0) {
		out->retention_days = sqlite3_column_int(st, 0);
		out->purge_protection = sqlite3_column_int(st, 1);
	}
	st_done(st);
	return r;
}

static void
bind_settings(sqlite3_stmt *st, const void *arg)
{
	const struct vlt_settings *in = arg;

	sqlite3_bind_int(st, 1, in->retention_days);
	sqlite3_bind_int(st, 2, in->purge_protection);
}

static int
sq_settings_get(db_t *s, struct vlt_settings *out)
{
	int r;

	r = settings_read(s, out);
	return r;
}

static int
sq_settings_init(db_t *s, const struct vlt_settings *st)
{
	return write_one(s, ST_SETTINGS_PUT, bind_settings, st);
}

static int
sq_settings_update(db_t *s, int retention_days, int purge_protection)
{
	struct vlt_settings cur;
	int r;

	if ((r = tx_begin(s)) != 0)
		goto out;
	if ((r = settings_read(s, &cur)) != 0)
		goto end;
	if (retention_days >= 0) {
		if ((r = vault_retention_check(retention_days)) != 0)
			goto end;
		cur.retention_days = retention_days;
	}
	if (purge_protection == 1) {
		cur.purge_protection = 1;
	} else if (purge_protection == 0) {
		if (cur.purge_protection) {
			r = VLT_ERR_BAD_PARAM;
			goto end;
		}
	} else if (purge_protection != -1) {
		r = VLT_ERR_BAD_PARAM;
		goto end;
	}
	r = write_locked(s, ST_SETTINGS_PUT, bind_settings, &cur);
end:
	r = tx_end(s, r);
out:
	return r;
}

/* Deletion state of a key; VLT_ERR_NOT_FOUND if there is no such name.
 * canon (optional, VLT_NAME_MAX + 1): the name as stored. */
static int
key_state(db_t *s, const char *name, char *canon, int64_t *deleted,
    int64_t *purge_date)
{
	sqlite3_stmt *st;
	int r;

	if ((r = st_prep(s, ST_KEY_STATE, &st)) != 0)
		return r;
	bind_text(st, 1, name);
	if ((r = step_row(st, VLT_ERR_NOT_FOUND)) == 0) {
		if (canon != NULL)
			copy_col_text(st, 0, canon, VLT_NAME_MAX + 1);
		*deleted = sqlite3_column_int64(st, 1);
		*purge_date = sqlite3_column_int64(st, 2);
	}
	st_done(st);
	return r;
}

/* The body of store_version_insert; the caller holds a transaction. */
static int
version_insert_locked(db_t *s, const struct vlt_key_info *k,
    const uint8_t *blob, size_t blob_len)
{
	char canon[VLT_NAME_MAX + 1];
	sqlite3_stmt *st = NULL;
	int64_t deleted, purge_date, seq;
	int r;

	if (blob_len == 0 || blob_len > INT32_MAX || k->spki_len == 0 ||
	    k->spki_len > INT32_MAX)
		return VLT_ERR_INTERNAL;
	r = key_state(s, k->name, canon, &deleted, &purge_date);
	if (r == VLT_ERR_NOT_FOUND) {
		if ((r = st_prep(s, ST_KEY_INSERT, &st)) != 0)
			goto end;
		bind_text(st, 1, k->name);
		if ((r = st_run(s, st)) != 0)
			goto end;
		if (str_fmt(canon, sizeof(canon), "%s", k->name) != 0) {
			r = VLT_ERR_BAD_PARAM;
			goto end;
		}
	} else if (r != 0) {
		goto end;
	} else if (deleted != 0) {
		r = VLT_ERR_DELETED_RECOVERABLE;
		goto end;
	}
	if ((r = st_prep(s, ST_VERSION_INSERT, &st)) != 0)
		goto end;
	bind_text(st, 1, canon);
	bind_text(st, 2, k->version);
	sqlite3_bind_int(st, 3, (int)k->kty);
	sqlite3_bind_int(st, 4, k->hsm ? 1 : 0);
	sqlite3_bind_int64(st, 5, k->key_size);
	sqlite3_bind_int(st, 6, (int)k->crv);
	sqlite3_bind_int64(st, 7, k->key_ops);
	sqlite3_bind_int(st, 8, k->attrs.enabled ? 1 : 0);
	sqlite3_bind_int64(st, 9, k->attrs.nbf);
	sqlite3_bind_int64(st, 10, k->attrs.exp);
	sqlite3_bind_int64(st, 11, k->attrs.created);
	sqlite3_bind_int64(st, 12, k->attrs.updated);
	bind_text(st, 13, k->tags);
	sqlite3_bind_blob(st, 14, k->spki, (int)k->spki_len, SQLITE_STATIC);
	sqlite3_bind_blob(st, 15, blob, (int)blob_len, SQLITE_STATIC);
	if ((r = st_run(s, st)) != 0)
		goto end;
	seq = sqlite3_last_insert_rowid(s->db);
	if ((r = st_prep(s, ST_KEY_LATEST, &st)) != 0)
		goto end;
	sqlite3_bind_int64(st, 1, seq);
	bind_text(st, 2, canon);
	r = st_run(s, st);
end:
	return r;
}

static int
sq_version_insert(db_t *s, const struct vlt_key_info *k, const uint8_t *blob,
    size_t blob_len)
{
	int r;

	if ((r = tx_begin(s)) == 0)
		r = tx_end(s, version_insert_locked(s, k, blob, blob_len));
	return r;
}

static int
sq_key_restore(db_t *s, const struct vlt_key_info *ks, uint8_t *const *blobs,
    const size_t *blob_lens, size_t n)
{
	int64_t deleted, purge_date;
	size_t i;
	int r;

	if (n == 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = tx_begin(s)) != 0)
		goto out;
	r = key_state(s, ks[0].name, NULL, &deleted, &purge_date);
	if (r == 0)
		r = VLT_ERR_CONFLICT; /* live or deleted: Azure's 409 */
	else if (r == VLT_ERR_NOT_FOUND)
		r = 0;
	for (i = 0; r == 0 && i < n; i++)
		r = version_insert_locked(s, &ks[i], blobs[i], blob_lens[i]);
	r = tx_end(s, r);
out:
	return r;
}

/* ---- the blob upgrade ------------------------------------------------ */

static int
row_blob(sqlite3_stmt *st, void *elem)
{
	struct store_blob *b = elem;
	const void *p = sqlite3_column_blob(st, 3);
	size_t len = (size_t)sqlite3_column_bytes(st, 3);

	b->seq = sqlite3_column_int64(st, 0);
	copy_col_text(st, 1, b->name, sizeof(b->name));
	copy_col_text(st, 2, b->version, sizeof(b->version));
	if (len == 0 || p == NULL)
		return 0; /* NOT NULL, but never trust a row */
	if ((b->blob = malloc(len)) == NULL)
		return VLT_ERR_NO_MEMORY;
	memcpy(b->blob, p, len);
	b->blob_len = len;
	return 0;
}

static int
sq_blob_scan(db_t *s, int64_t after_seq, size_t limit,
    struct store_blob **items, size_t *n)
{
	sqlite3_stmt *st;
	void *arr = NULL;
	int r;

	*items = NULL;
	*n = 0;
	if (limit == 0 || limit > INT32_MAX)
		return VLT_ERR_BAD_PARAM;
	if ((r = st_prep(s, ST_BLOB_SCAN, &st)) == 0) {
		sqlite3_bind_int64(st, 1, after_seq);
		sqlite3_bind_int64(st, 2, (int64_t)limit);
		r = collect_rows(st, sizeof(**items), limit < 64 ? limit : 64,
		    row_blob, &arr, n);
	}
	st_done(st);
	*items = arr;
	if (r != 0) {
		store_blob_free_array(*items, *n);
		*items = NULL;
		*n = 0;
	}
	return r;
}

static int
sq_blob_replace(db_t *s, const struct store_blob *items, size_t n,
    size_t *replaced)
{
	sqlite3_stmt *st;
	size_t i, done = 0;
	int r;

	*replaced = 0;
	if ((r = tx_begin(s)) != 0)
		goto out;
	for (i = 0; r == 0 && i < n; i++) {
		const struct store_blob *b = &items[i];

		if (b->bound == NULL || b->bound_len == 0 ||
		    b->bound_len > INT32_MAX || b->blob_len > INT32_MAX) {
			r = VLT_ERR_INTERNAL;
			break;
		}
		if ((r = st_prep(s, ST_BLOB_REPLACE, &st)) != 0)
			break;
		sqlite3_bind_blob(st, 1, b->bound, (int)b->bound_len,
		    SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, b->seq);
		sqlite3_bind_blob(st, 3, b->blob, (int)b->blob_len,
		    SQLITE_STATIC);
		if ((r = st_run(s, st)) == 0 && sqlite3_changes(s->db) == 1)
			done++;
	}
	r = tx_end(s, r);
	if (r == 0)
		*replaced = done;
out:
	return r;
}

/* ---- rotation policies ---------------------------------------------------- */

/* row_fn for ST_ROT_GET and ST_ROT_LIST: name, expiry_secs, expiry,
 * actions, created, updated. */
static int
row_rotation(sqlite3_stmt *st, void *elem)
{
	struct store_rotation *rec = elem;

	copy_col_text(st, 0, rec->name, sizeof(rec->name));
	rec->expiry_secs = sqlite3_column_int64(st, 1);
	copy_col_text(st, 2, rec->expiry, sizeof(rec->expiry));
	copy_col_text(st, 3, rec->actions, sizeof(rec->actions));
	rec->created = sqlite3_column_int64(st, 4);
	rec->updated = sqlite3_column_int64(st, 5);
	return 0;
}

static int
sq_rotation_get(db_t *s, const char *name, struct store_rotation *out)
{
	sqlite3_stmt *st;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = st_prep(s, ST_ROT_GET, &st)) != 0)
		return r;
	bind_text(st, 1, name);
	if ((r = step_row(st, VLT_ERR_NOT_FOUND)) == 0)
		r = row_rotation(st, out);
	st_done(st);
	return r;
}

static int
sq_rotation_put(db_t *s, const char *name, const struct store_rotation *rec,
    int64_t now)
{
	char canon[VLT_NAME_MAX + 1];
	sqlite3_stmt *st;
	int64_t deleted, purge_date;
	int r;

	if ((r = tx_begin(s)) != 0)
		return r;
	if ((r = key_state(s, name, canon, &deleted, &purge_date)) != 0)
		goto end;
	if (deleted != 0) {
		r = VLT_ERR_NOT_FOUND;
		goto end;
	}
	if ((r = st_prep(s, ST_ROT_PUT, &st)) != 0)
		goto end;
	bind_text(st, 1, canon);
	sqlite3_bind_int64(st, 2, rec->expiry_secs);
	bind_text(st, 3, rec->expiry);
	bind_text(st, 4, rec->actions);
	sqlite3_bind_int64(st, 5, now);
	r = st_run(s, st);
end:
	return tx_end(s, r);
}

static int
sq_rotation_list(db_t *s, struct store_rotation **recs, size_t *n)
{
	void *arr;
	int r;

	r = list_rows(s, ST_ROT_LIST, NULL, sizeof(**recs), 8, row_rotation,
	    free_plain, &arr, n);
	*recs = arr;
	return r;
}

static int
version_fetch(db_t *s, const char *name, const char *version, int deleted,
    struct vlt_key_info *out, int64_t *seq, uint8_t **blob, size_t *blob_len)
{
	sqlite3_stmt *st;
	int r, i = 1;

	if ((r = st_prep(s,
	         version == NULL ? ST_VERSION_LATEST : ST_VERSION_BY_ID,
	         &st)) != 0)
		return r;
	bind_text(st, i++, name);
	if (version != NULL)
		bind_text(st, i++, version);
	sqlite3_bind_int(st, i, deleted ? 1 : 0);
	if ((r = step_row(st, VLT_ERR_NOT_FOUND)) == 0)
		r = read_version_row(st, out, seq, blob, blob_len);
	st_done(st);
	return r;
}

static int
sq_version_get(db_t *s, const char *name, const char *version, int deleted,
    struct vlt_key_info *out, uint8_t **blob, size_t *blob_len)
{
	memset(out, 0, sizeof(*out));
	return version_fetch(s, name, version, deleted, out, NULL, blob,
	    blob_len);
}

static int
sq_version_update(db_t *s, const char *name, const char *version,
    const struct store_update *u, int (*check_ops)(enum vlt_kty, unsigned),
    struct vlt_key_info *out)
{
	struct vlt_key_info cur;
	sqlite3_stmt *st;
	int64_t seq = 0;
	int r;

	memset(&cur, 0, sizeof(cur));
	memset(out, 0, sizeof(*out));
	if ((r = tx_begin(s)) != 0)
		goto out;
	if ((r = version_fetch(s, name, version, 0, &cur, &seq, NULL, NULL)) !=
	    0)
		goto end;
	if (u->has_key_ops) {
		if ((r = check_ops(cur.kty, u->key_ops)) != 0)
			goto end;
		cur.key_ops = u->key_ops;
	}
	if (u->has_enabled)
		cur.attrs.enabled = u->enabled ? 1 : 0;
	if (u->has_nbf)
		cur.attrs.nbf = u->nbf;
	if (u->has_exp)
		cur.attrs.exp = u->exp;
	if ((r = st_prep(s, ST_VERSION_UPDATE, &st)) != 0)
		goto end;
	sqlite3_bind_int64(st, 1, cur.key_ops);
	sqlite3_bind_int(st, 2, cur.attrs.enabled);
	sqlite3_bind_int64(st, 3, cur.attrs.nbf);
	sqlite3_bind_int64(st, 4, cur.attrs.exp);
	bind_text(st, 5, u->tags != NULL ? u->tags : cur.tags);
	sqlite3_bind_int64(st, 6, u->updated);
	sqlite3_bind_int64(st, 7, seq);
	if ((r = st_run(s, st)) != 0)
		goto end;
	vlt_key_info_clear(&cur);
	r = version_fetch(s, name, version, 0, out, NULL, NULL, NULL);
end:
	r = tx_end(s, r);
	if (r != 0)
		vlt_key_info_clear(out);
out:
	vlt_key_info_clear(&cur);
	return r;
}

/* Collects up to limit V_COLS rows of a bound statement. */
static int
collect_versions(sqlite3_stmt *st, size_t limit, struct vlt_key_info **items,
    size_t *n, int64_t *last_seq, int *more)
{
	struct vlt_key_info *arr;
	size_t cnt = 0;
	int rc = SQLITE_DONE, r = 0;

	if ((arr = calloc(limit, sizeof(*arr))) == NULL)
		return VLT_ERR_NO_MEMORY;
	while (cnt < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if ((r = read_version_row(st, &arr[cnt], last_seq, NULL,
		         NULL)) != 0)
			goto out;
		cnt++;
	}
	if (cnt == limit)
		rc = sqlite3_step(st); /* the limit + 1st row, if any */
	*more = rc == SQLITE_ROW;
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		r = map_rc(rc);
out:
	if (r != 0) {
		vlt_key_info_free_array(arr, cnt);
		return r;
	}
	*items = arr;
	*n = cnt;
	return 0;
}

static int
sq_key_list(db_t *s, int deleted, const char *after_name, size_t limit,
    struct vlt_key_info **items, size_t *n, int *more)
{
	sqlite3_stmt *st = NULL;
	int r;

	*items = NULL;
	*n = 0;
	*more = 0;
	if (limit == 0 || limit > 1000)
		return VLT_ERR_BAD_PARAM;
	if ((r = st_prep(s, ST_KEY_LIST, &st)) != 0)
		goto out;
	sqlite3_bind_int(st, 1, deleted ? 1 : 0);
	bind_text(st, 2, after_name != NULL ? after_name : "");
	sqlite3_bind_int64(st, 3, (int64_t)limit + 1);
	r = collect_versions(st, limit, items, n, NULL, more);
out:
	st_done(st);
	return r;
}

static int
sq_version_list(db_t *s, const char *name, int64_t after_seq, size_t limit,
    struct vlt_key_info **items, size_t *n, int64_t *last_seq, int *more)
{
	sqlite3_stmt *st = NULL;
	int64_t deleted, purge_date;
	int r;

	*items = NULL;
	*n = 0;
	*last_seq = after_seq;
	if (limit == 0 || limit > 1000)
		return VLT_ERR_BAD_PARAM;
	/* One read transaction: the existence check and the page agree. */
	if ((r = st_exec(s, ST_BEGIN_READ)) != 0)
		goto out;
	if ((r = key_state(s, name, NULL, &deleted, &purge_date)) != 0)
		goto end;
	if (deleted != 0) {
		r = VLT_ERR_NOT_FOUND;
		goto end;
	}
	if ((r = st_prep(s, ST_VERSION_LIST, &st)) != 0)
		goto end;
	bind_text(st, 1, name);
	sqlite3_bind_int64(st, 2, after_seq);
	sqlite3_bind_int64(st, 3, (int64_t)limit + 1);
	r = collect_versions(st, limit, items, n, last_seq, more);
	st_done(st);
end:
	r = tx_end(s, r);
	if (r != 0 && *items != NULL) {
		vlt_key_info_free_array(*items, *n);
		*items = NULL;
		*n = 0;
	}
out:
	return r;
}

/* Deletes (deleting) or recovers a key and reads it back as it now is. */
static int
key_delete_or_recover(db_t *s, const char *name, int deleting, int64_t now,
    struct vlt_key_info *out)
{
	struct vlt_settings set;
	sqlite3_stmt *st;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = tx_begin(s)) != 0)
		goto out;
	if (deleting) {
		if ((r = settings_read(s, &set)) != 0 ||
		    (r = st_prep(s, ST_KEY_DELETE, &st)) != 0)
			goto end;
		sqlite3_bind_int64(st, 1, now);
		sqlite3_bind_int64(st, 2,
		    now + (int64_t)set.retention_days * 86400);
		bind_text(st, 3, name);
	} else {
		if ((r = st_prep(s, ST_KEY_RECOVER, &st)) != 0)
			goto end;
		bind_text(st, 1, name);
	}
	if ((r = st_run(s, st)) != 0)
		goto end;
	if (sqlite3_changes(s->db) != 1) {
		r = VLT_ERR_NOT_FOUND;
		goto end;
	}
	r = version_fetch(s, name, NULL, deleting, out, NULL, NULL, NULL);
end:
	r = tx_end(s, r);
	if (r != 0)
		vlt_key_info_clear(out);
out:
	return r;
}

static int
sq_key_delete(db_t *s, const char *name, int64_t now, struct vlt_key_info *out)
{
	return key_delete_or_recover(s, name, 1, now, out);
}

static int
sq_key_recover(db_t *s, const char *name, struct vlt_key_info *out)
{
	return key_delete_or_recover(s, name, 0, 0, out);
}


static void
bind_name(sqlite3_stmt *st, const void *arg)
{
	bind_text(st, 1, arg);
}

static int
sq_key_purge(db_t *s, const char *name, int64_t due_before,
    char (**versions)[VLT_VERSION_LEN + 1], size_t *n)
{
	void *ids = NULL;
	struct vlt_settings set;
	sqlite3_stmt *st;
	int64_t deleted, purge_date;
	size_t cnt = 0;
	int r;

	*versions = NULL;
	*n = 0;
	if ((r = tx_begin(s)) != 0)
		goto out;
	if ((r = key_state(s, name, NULL, &deleted, &purge_date)) != 0)
		goto end;
	if (deleted == 0) {
		r = VLT_ERR_NOT_FOUND;
		goto end;
	}
	if (due_before == 0) {
		if ((r = settings_read(s, &set)) != 0)
			goto end;
		if (set.purge_protection) {
			r = VLT_ERR_PURGE_PROTECTED;
			goto end;
		}
	} else if (purge_date > due_before) {
		r = VLT_ERR_NOT_FOUND;
		goto end;
	}
	if ((r = st_prep(s, ST_VERSION_IDS, &st)) != 0)
		goto end;
	bind_text(st, 1, name);
	r = collect_rows(st, sizeof(**versions), 8, row_version_id, &ids, &cnt);
	st_done(st);
	if (r != 0)
		goto end;
	if ((r = write_locked(s, ST_VERSIONS_DELETE, bind_name, name)) != 0)
		goto end;
	if ((r = write_locked(s, ST_ROT_DELETE, bind_name, name)) != 0)
		goto end;
	r = write_locked(s, ST_KEY_REMOVE, bind_name, name);
end:
	r = tx_end(s, r);
out:
	if (r != 0) {
		free(ids);
		return r;
	}
	*versions = ids;
	*n = cnt;
	return 0;
}

static int
sq_purge_due_list(db_t *s, int64_t now, char (**names)[VLT_NAME_MAX + 1],
    size_t *n)
{
	void *arr;
	int r;

	r = list_rows(s, ST_DUE_LIST, &now, sizeof(**names), 16, row_name,
	    free_plain, &arr, n);
	*names = arr;
	return r;
}

static void
bind_principal(sqlite3_stmt *st, const void *arg)
{
	const struct vlt_principal *p = arg;

	bind_text(st, 1, p->object_id);
	bind_text(st, 2, p->client_id);
	bind_text(st, 3, p->display_name);
	bind_text(st, 4, p->secret_hash);
	sqlite3_bind_int(st, 5, p->is_admin ? 1 : 0);
	sqlite3_bind_int64(st, 6, p->created);
}

static int
sq_principal_put(db_t *s, const struct vlt_principal *p)
{
	return write_one(s, ST_PRINCIPAL_PUT, bind_principal, p);
}

/* Runs a one-parameter DELETE; VLT_ERR_NOT_FOUND if nothing matched.
 * The caller holds the transaction. */
static int
delete_by_id(db_t *s, enum st_id id, const char *object_id)
{
	int r;

	if ((r = write_locked(s, id, bind_name, object_id)) != 0)
		return r;
	return sqlite3_changes(s->db) > 0 ? 0 : VLT_ERR_NOT_FOUND;
}

static int
sq_principal_delete(db_t *s, const char *object_id)
{
	int r;

	if ((r = tx_begin(s)) != 0)
		goto out;
	r = delete_by_id(s, ST_PRINCIPAL_DELETE, object_id);
	if (r == 0) {
		r = delete_by_id(s, ST_ACCESS_DELETE, object_id);
		if (r == VLT_ERR_NOT_FOUND)
			r = 0;
	}
	r = tx_end(s, r);
out:
	return r;
}

static void
free_principals(void *arr, size_t n)
{
	vlt_principal_free_array(arr, n);
}

static int
row_principal(sqlite3_stmt *st, void *elem)
{
	struct vlt_principal *p = elem;

	copy_col_text(st, 0, p->object_id, sizeof(p->object_id));
	copy_col_text(st, 1, p->client_id, sizeof(p->client_id));
	copy_col_text(st, 2, p->display_name, sizeof(p->display_name));
	if (sqlite3_column_type(st, 3) != SQLITE_NULL &&
	    (p->secret_hash = strdup((const char *)sqlite3_column_text(st,
	         3))) == NULL)
		return VLT_ERR_NO_MEMORY;
	p->is_admin = sqlite3_column_int(st, 4);
	p->created = sqlite3_column_int64(st, 5);
	return 0;
}

static int
sq_principal_list(db_t *s, struct vlt_principal **items, size_t *n)
{
	void *arr;
	int r;

	r = list_rows(s, ST_PRINCIPAL_LIST, NULL, sizeof(**items), 8,
	    row_principal, free_principals, &arr, n);
	*items = arr;
	return r;
}

static void
bind_access(sqlite3_stmt *st, const void *arg)
{
	const struct vlt_access_policy *a = arg;

	bind_text(st, 1, a->object_id);
	bind_text(st, 2, a->tenant_id);
	sqlite3_bind_int64(st, 3, a->perms);
}

static int
sq_access_put(db_t *s, const struct vlt_access_policy *a)
{
	return write_one(s, ST_ACCESS_PUT, bind_access, a);
}

static int
sq_access_delete(db_t *s, const char *object_id)
{
	int r;

	if ((r = tx_begin(s)) != 0)
		goto out;
	r = tx_end(s, delete_by_id(s, ST_ACCESS_DELETE, object_id));
out:
	return r;
}

static int
sq_access_apply(db_t *s, const struct vlt_access_policy *items, size_t n)
{
	size_t i;
	int r;

	if ((r = tx_begin(s)) != 0)
		goto out;
	for (i = 0; i < n && r == 0; i++) {
		if (items[i].perms != 0)
			r = write_locked(s, ST_ACCESS_PUT, bind_access,
			    &items[i]);
		else if ((r = delete_by_id(s, ST_ACCESS_DELETE,
		              items[i].object_id)) == VLT_ERR_NOT_FOUND)
			r = 0;
	}
	r = tx_end(s, r);
out:
	return r;
}

static int
row_access(sqlite3_stmt *st, void *elem)
{
	struct vlt_access_policy *a = elem;

	copy_col_text(st, 0, a->object_id, sizeof(a->object_id));
	copy_col_text(st, 1, a->tenant_id, sizeof(a->tenant_id));
	a->perms = (unsigned)sqlite3_column_int64(st, 2);
	return 0;
}

static int
sq_access_list(db_t *s, struct vlt_access_policy **items, size_t *n)
{
	void *arr;
	int r;

	r = list_rows(s, ST_ACCESS_LIST, NULL, sizeof(**items), 8, row_access,
	    free_plain, &arr, n);
	*items = arr;
	return r;
}

/* ---- the appliance's vaults --------------------------------------------- */

static void
bind_vault(sqlite3_stmt *st, const void *arg)
{
	const struct vlt_vault *x = arg;

	bind_text(st, 1, x->name);
	bind_text(st, 2, x->id);
	sqlite3_bind_int64(st, 3, x->created);
	sqlite3_bind_int64(st, 4, x->updated);
	sqlite3_bind_int64(st, 5, x->deleted_date);
	sqlite3_bind_int64(st, 6, x->scheduled_purge_date);
	sqlite3_bind_int(st, 7, x->settings.retention_days);
	sqlite3_bind_int(st, 8, x->settings.purge_protection);
	bind_text(st, 9, x->meta);
}

static int
row_vault(sqlite3_stmt *st, void *elem)
{
	struct vlt_vault *x = elem;

	copy_col_text(st, 0, x->name, sizeof(x->name));
	copy_col_text(st, 1, x->id, sizeof(x->id));
	x->created = sqlite3_column_int64(st, 2);
	x->updated = sqlite3_column_int64(st, 3);
	x->deleted_date = sqlite3_column_int64(st, 4);
	x->scheduled_purge_date = sqlite3_column_int64(st, 5);
	x->settings.retention_days = sqlite3_column_int(st, 6);
	x->settings.purge_protection = sqlite3_column_int(st, 7);
	if (sqlite3_column_type(st, 8) != SQLITE_NULL &&
	    (x->meta = strdup((const char *)sqlite3_column_text(st, 8))) ==
	        NULL)
		return VLT_ERR_NO_MEMORY;
	return 0;
}

static int
sq_vault_insert(db_t *s, const struct vlt_vault *x)
{
	return write_one(s, ST_VAULT_INSERT, bind_vault, x);
}

static int
sq_vault_get(db_t *s, const char *name, struct vlt_vault *out)
{
	sqlite3_stmt *st;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = st_prep(s, ST_VAULT_GET, &st)) != 0)
		return r;
	bind_text(st, 1, name);
	if ((r = step_row(st, VLT_ERR_NOT_FOUND)) == 0 &&
	    (r = row_vault(st, out)) != 0)
		vlt_vault_clear(out);
	st_done(st);
	return r;
}

static void
free_vaults(void *arr, size_t n)
{
	vlt_vault_free_array(arr, n);
}

static int
sq_vault_list(db_t *s, int deleted, struct vlt_vault **items, size_t *n)
{
	int64_t sel = deleted;
	void *arr;
	int r;

	r = list_rows(s, ST_VAULT_LIST, &sel, sizeof(**items), 8, row_vault,
	    free_vaults, &arr, n);
	*items = arr;
	return r;
}

/* The row of x's name, id and created (the same vault, not a new one of
 * that name) takes x's other fields; VLT_ERR_NOT_FOUND when none. */
static int
sq_vault_update(db_t *s, const struct vlt_vault *x)
{
	int r;

	if ((r = tx_begin(s)) != 0)
		return r;
	r = write_locked(s, ST_VAULT_UPDATE, bind_vault, x);
	if (r == 0 && sqlite3_changes(s->db) == 0)
		r = VLT_ERR_NOT_FOUND;
	return tx_end(s, r);
}

static int
sq_vault_remove(db_t *s, const char *name)
{
	int r;

	if ((r = tx_begin(s)) != 0)
		return r;
	return tx_end(s, delete_by_id(s, ST_VAULT_REMOVE, name));
}

/* ---- the management API's records ---------------------------------------- */

static void
bind_record(sqlite3_stmt *st, const void *arg)
{
	const struct vlt_record *x = arg;

	bind_text(st, 1, x->kind);
	bind_text(st, 2, x->scope);
	bind_text(st, 3, x->name);
	bind_text(st, 4, x->ref);
	sqlite3_bind_int64(st, 5, x->created);
	sqlite3_bind_int64(st, 6, x->updated);
	bind_text(st, 7, x->meta);
}

static int
row_record(sqlite3_stmt *st, void *elem)
{
	struct vlt_record *x = elem;

	copy_col_text(st, 0, x->kind, sizeof(x->kind));
	copy_col_text(st, 1, x->scope, sizeof(x->scope));
	copy_col_text(st, 2, x->name, sizeof(x->name));
	copy_col_text(st, 3, x->ref, sizeof(x->ref));
	x->created = sqlite3_column_int64(st, 4);
	x->updated = sqlite3_column_int64(st, 5);
	if (sqlite3_column_type(st, 6) != SQLITE_NULL &&
	    (x->meta = strdup((const char *)sqlite3_column_text(st, 6))) ==
	        NULL)
		return VLT_ERR_NO_MEMORY;
	return 0;
}

static int
sq_record_put(db_t *s, const struct vlt_record *x, int create_only)
{
	return write_one(s, create_only ? ST_RECORD_INSERT : ST_RECORD_UPSERT,
	    bind_record, x);
}

static int
sq_record_get(db_t *s, const char *kind, const char *scope, const char *name,
    struct vlt_record *out)
{
	sqlite3_stmt *st;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = st_prep(s, ST_RECORD_GET, &st)) != 0)
		return r;
	bind_text(st, 1, kind);
	bind_text(st, 2, scope);
	bind_text(st, 3, name);
	if ((r = step_row(st, VLT_ERR_NOT_FOUND)) == 0 &&
	    (r = row_record(st, out)) != 0)
		vlt_record_clear(out);
	st_done(st);
	return r;
}

static void
free_records(void *arr, size_t n)
{
	vlt_record_free_array(arr, n);
}

static int
sq_record_list(db_t *s, const char *kind, const char *scope,
    struct vlt_record **items, size_t *n)
{
	sqlite3_stmt *st;
	void *arr = NULL;
	int r;

	*items = NULL;
	*n = 0;
	if ((r = st_prep(s, ST_RECORD_LIST, &st)) != 0)
		return r;
	bind_text(st, 1, kind);
	bind_text(st, 2, scope);
	r = collect_rows(st, sizeof(**items), 8, row_record, &arr, n);
	st_done(st);
	if (r != 0) {
		free_records(arr, *n);
		*n = 0;
		return r;
	}
	*items = arr;
	return 0;
}

struct record_key {
	const char *kind, *scope, *name;
};

static void
bind_record_key(sqlite3_stmt *st, const void *arg)
{
	const struct record_key *k = arg;

	bind_text(st, 1, k->kind);
	bind_text(st, 2, k->scope);
	bind_text(st, 3, k->name);
}

static int
sq_record_remove(db_t *s, const char *kind, const char *scope, const char *name)
{
	struct record_key k = { kind, scope, name };
	int r;

	if ((r = tx_begin(s)) != 0)
		return r;
	r = write_locked(s, ST_RECORD_REMOVE, bind_record_key, &k);
	if (r == 0 && sqlite3_changes(s->db) == 0)
		r = VLT_ERR_NOT_FOUND;
	return tx_end(s, r);
}

const struct store_backend store_sqlite_backend = {
	.name = "sqlite",
	.open = sq_open,
	.remove = NULL,
	.close = sq_close,
	.ping = sq_ping,
	.probe = sq_probe,
	.why = sq_why,
	.settings_get = sq_settings_get,
	.settings_init = sq_settings_init,
	.settings_update = sq_settings_update,
	.version_insert = sq_version_insert,
	.version_get = sq_version_get,
	.version_update = sq_version_update,
	.key_list = sq_key_list,
	.version_list = sq_version_list,
	.key_delete = sq_key_delete,
	.key_recover = sq_key_recover,
	.key_purge = sq_key_purge,
	.purge_due_list = sq_purge_due_list,
	.key_restore = sq_key_restore,
	.blob_scan = sq_blob_scan,
	.blob_replace = sq_blob_replace,
	.rotation_get = sq_rotation_get,
	.rotation_put = sq_rotation_put,
	.rotation_list = sq_rotation_list,
	.principal_put = sq_principal_put,
	.principal_delete = sq_principal_delete,
	.principal_list = sq_principal_list,
	.access_put = sq_access_put,
	.access_delete = sq_access_delete,
	.access_apply = sq_access_apply,
	.access_list = sq_access_list,
	.vault_insert = sq_vault_insert,
	.vault_get = sq_vault_get,
	.vault_list = sq_vault_list,
	.vault_update = sq_vault_update,
	.vault_remove = sq_vault_remove,
	.record_put = sq_record_put,
	.record_get = sq_record_get,
	.record_list = sq_record_list,
	.record_remove = sq_record_remove,
};
