/*
 * vault/store_pg.c — the PostgreSQL store backend (libpq): the statement
 * catalogue, the schema, and every store function's transaction, with
 * the semantics of vault/store_sqlite.c. One vault's store is one schema
 * of the database (the root's "p11vault", a child's "v_<id>"): the
 * address is "CONNINFO#SCHEMA" (store.h, store_addr_pg).
 *
 * Writes: one transaction each, serialised per schema by a transaction
 * advisory lock (SQLite's BEGIN IMMEDIATE, across every node sharing the
 * database), read committed after the lock, so every statement sees the
 * writes committed before it; synchronous_commit at least "on", so that
 * COMMIT returned means durable. Reads: single statements, or one
 * read-only repeatable-read transaction; they take no lock.
 *
 * A lost connection answers VLT_ERR_UNAVAILABLE; the next statement
 * outside a transaction (a BEGIN or a read) connects again, once, so a
 * restarted or promoted server is picked up without a restart.
 *
 * Must never: build SQL from data (prepared statements with bound
 * parameters only; the one identifier, the schema, is checked to
 * [a-z0-9_] and quoted by libpq for CREATE and DROP SCHEMA), show the
 * address (it may hold a password) or libpq's connection error
 * unredacted, retry a COMMIT, log anything it stores.
 */
#include "vault/store_backend.h"

#include <endian.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "hsm/base.h"
#include "vault/cluster.h"
#include "vault/info.h"

#define PG_SCHEMA_VERSION "1"
#define PG_SCHEMA_MAX 63
#define PG_LOCK_CLASS 0x7031 /* "p1": the advisory lock's first key */
#define PG_NPARAM 16
/* How long a COMMIT may wait (for the synchronous standby) before it is
 * cancelled, and then how long for the answer to the cancel: with the
 * standby gone a COMMIT would wait for ever, holding the store. */
#define PG_COMMIT_WAIT_MS 5000

enum st_id {
	ST_BEGIN,
	ST_LOCK,
	ST_BEGIN_READ,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_PING,
	ST_PROBE,
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

/* Names compare case-insensitively (lower(), every text column in the C
 * collation, as SQLite's NOCASE and its byte order). */
static const char *const st_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE",
	[ST_LOCK] = "SELECT pg_advisory_xact_lock($1::integer, $2::integer)",
	[ST_BEGIN_READ] = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_PING] =
	    "SELECT count(*), "
	    "current_setting('transaction_read_only') = 'off' "
	    "FROM settings",
	[ST_PROBE] = "UPDATE schema_version SET version = version",
	[ST_SETTINGS_GET] =
	    "SELECT retention_days, purge_protection FROM settings WHERE id = 1",
	[ST_SETTINGS_PUT] =
	    "INSERT INTO settings(id, retention_days, purge_protection) "
	    "VALUES (1, $1, $2) ON CONFLICT(id) DO UPDATE SET "
	    "retention_days = excluded.retention_days, "
	    "purge_protection = excluded.purge_protection",
	[ST_KEY_STATE] =
	    "SELECT name, deleted_date, scheduled_purge_date FROM keys "
	    "WHERE lower(name) = lower($1)",
	[ST_KEY_INSERT] =
	    "INSERT INTO keys(name, deleted_date, scheduled_purge_date, "
	    "latest_seq) VALUES ($1, 0, 0, 0)",
	[ST_KEY_LATEST] = "UPDATE keys SET latest_seq = $1 WHERE name = $2",
	[ST_VERSION_INSERT] =
	    "INSERT INTO key_versions(name, version, kty, hsm, key_size, crv, "
	    "key_ops, enabled, nbf, exp, created, updated, tags, spki, blob) "
	    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
	    "$14, $15) RETURNING seq",
	[ST_VERSION_LATEST] =
	    "SELECT " V_COLS
	    " FROM keys k JOIN key_versions v "
	    "ON v.seq = k.latest_seq WHERE lower(k.name) = lower($1) "
	    "AND (k.deleted_date <> 0) = ($2::bigint <> 0)",
	[ST_VERSION_BY_ID] =
	    "SELECT " V_COLS
	    " FROM keys k JOIN key_versions v "
	    "ON v.name = k.name WHERE lower(k.name) = lower($1) "
	    "AND v.version = $2 AND (k.deleted_date <> 0) = ($3::bigint <> 0)",
	[ST_VERSION_UPDATE] =
	    "UPDATE key_versions SET key_ops = $1, enabled = $2, nbf = $3, "
	    "exp = $4, tags = $5, updated = $6 WHERE seq = $7",
	[ST_KEY_LIST] = "SELECT " V_COLS
	                " FROM keys k JOIN key_versions v "
	                "ON v.seq = k.latest_seq WHERE (k.deleted_date <> 0) = "
	                "($1::bigint <> 0) AND lower(k.name) > lower($2) "
	                "ORDER BY lower(k.name) LIMIT $3",
	[ST_VERSION_LIST] =
	    "SELECT " V_COLS
	    " FROM keys k JOIN key_versions v "
	    "ON v.name = k.name WHERE lower(k.name) = lower($1) "
	    "AND k.deleted_date = 0 AND v.seq > $2 ORDER BY v.seq LIMIT $3",
	[ST_KEY_DELETE] =
	    "UPDATE keys SET deleted_date = $1, scheduled_purge_date = $2 "
	    "WHERE lower(name) = lower($3) AND deleted_date = 0",
	[ST_KEY_RECOVER] =
	    "UPDATE keys SET deleted_date = 0, scheduled_purge_date = 0 "
	    "WHERE lower(name) = lower($1) AND deleted_date <> 0",
	[ST_VERSION_IDS] =
	    "SELECT version FROM key_versions "
	    "WHERE lower(name) = lower($1) ORDER BY seq",
	[ST_VERSIONS_DELETE] =
	    "DELETE FROM key_versions WHERE lower(name) = lower($1)",
	[ST_KEY_REMOVE] = "DELETE FROM keys WHERE lower(name) = lower($1)",
	[ST_DUE_LIST] =
	    "SELECT name FROM keys WHERE deleted_date <> 0 "
	    "AND scheduled_purge_date <= $1 ORDER BY lower(name)",
	[ST_PRINCIPAL_PUT] =
	    "INSERT INTO principals(object_id, client_id, display_name, "
	    "secret_hash, is_admin, created) VALUES ($1, $2, $3, $4, $5, $6) "
	    "ON CONFLICT(object_id) DO UPDATE SET "
	    "client_id = excluded.client_id, "
	    "display_name = excluded.display_name, "
	    "secret_hash = excluded.secret_hash, "
	    "is_admin = excluded.is_admin, created = excluded.created",
	[ST_PRINCIPAL_DELETE] = "DELETE FROM principals WHERE object_id = $1",
	[ST_PRINCIPAL_LIST] =
	    "SELECT object_id, client_id, display_name, secret_hash, is_admin, "
	    "created FROM principals ORDER BY created, object_id",
	[ST_ACCESS_PUT] =
	    "INSERT INTO access_policies(object_id, tenant_id, perms) "
	    "VALUES ($1, $2, $3) ON CONFLICT(object_id) DO UPDATE SET "
	    "tenant_id = excluded.tenant_id, perms = excluded.perms",
	[ST_ACCESS_DELETE] = "DELETE FROM access_policies WHERE object_id = $1",
	[ST_ACCESS_LIST] =
	    "SELECT object_id, tenant_id, perms "
	    "FROM access_policies ORDER BY object_id",
	[ST_BLOB_SCAN] =
	    "SELECT seq, name, version, blob FROM key_versions "
	    "WHERE seq > $1 ORDER BY seq LIMIT $2",
	[ST_BLOB_REPLACE] =
	    "UPDATE key_versions SET blob = $1 WHERE seq = $2 AND blob = $3",
	[ST_ROT_GET] =
	    "SELECT name, expiry_secs, expiry, actions, created, updated "
	    "FROM rotation_policies WHERE lower(name) = lower($1)",
	[ST_ROT_PUT] =
	    "INSERT INTO rotation_policies(name, expiry_secs, expiry, actions, "
	    "created, updated) VALUES ($1, $2, $3, $4, $5, $5) "
	    "ON CONFLICT(name) DO UPDATE SET "
	    "expiry_secs = excluded.expiry_secs, expiry = excluded.expiry, "
	    "actions = excluded.actions, updated = excluded.updated",
	[ST_ROT_LIST] =
	    "SELECT r.name, r.expiry_secs, r.expiry, r.actions, r.created, "
	    "r.updated FROM rotation_policies r JOIN keys k ON k.name = r.name "
	    "WHERE k.deleted_date = 0 ORDER BY lower(r.name)",
	[ST_ROT_DELETE] =
	    "DELETE FROM rotation_policies WHERE lower(name) = lower($1)",
	[ST_VAULT_INSERT] =
	    "INSERT INTO vaults(name, id, created, updated, deleted_date, "
	    "scheduled_purge_date, retention_days, purge_protection, meta) "
	    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
	[ST_VAULT_GET] = "SELECT " VAULT_COLS
	                 " FROM vaults WHERE lower(name) = lower($1)",
	[ST_VAULT_LIST] = "SELECT " VAULT_COLS
	                  " FROM vaults "
	                  "WHERE $1::bigint < 0 OR "
	                  "(deleted_date <> 0) = ($1::bigint <> 0) "
	                  "ORDER BY lower(name)",
	[ST_VAULT_UPDATE] =
	    "UPDATE vaults SET updated = $4, deleted_date = $5, "
	    "scheduled_purge_date = $6, retention_days = $7, "
	    "purge_protection = $8, meta = $9 WHERE lower(name) = lower($1) "
	    "AND id = $2 AND created = $3",
	[ST_VAULT_REMOVE] = "DELETE FROM vaults WHERE lower(name) = lower($1)",
	[ST_RECORD_INSERT] =
	    "INSERT INTO records(kind, scope, name, ref, created, updated, "
	    "meta) VALUES ($1, $2, $3, $4, $5, $6, $7)",
	[ST_RECORD_UPSERT] =
	    "INSERT INTO records(kind, scope, name, ref, created, updated, "
	    "meta) VALUES ($1, $2, $3, $4, $5, $6, $7) "
	    "ON CONFLICT (kind, lower(scope), lower(name)) DO UPDATE SET "
	    "ref = excluded.ref, updated = excluded.updated, "
	    "meta = excluded.meta",
	[ST_RECORD_GET] =
	    "SELECT " RECORD_COLS
	    " FROM records WHERE kind = $1 AND "
	    "lower(scope) = lower($2) AND lower(name) = lower($3)",
	[ST_RECORD_LIST] =
	    "SELECT " RECORD_COLS
	    " FROM records WHERE kind = $1 AND ($2::text IS NULL "
	    "OR lower(scope) = lower($2::text)) "
	    "ORDER BY lower(scope), lower(name)",
	[ST_RECORD_REMOVE] =
	    "DELETE FROM records WHERE kind = $1 AND "
	    "lower(scope) = lower($2) AND lower(name) = lower($3)",
};

/* Schema version 1, in the vault's schema (search_path). */
static const char *const schema_v1[] = {
	"CREATE TABLE schema_version (version bigint NOT NULL)",
	"INSERT INTO schema_version VALUES (" PG_SCHEMA_VERSION ")",
	"CREATE TABLE settings ("
	" id bigint PRIMARY KEY CHECK (id = 1),"
	" retention_days bigint NOT NULL CHECK (retention_days BETWEEN 7 AND 90),"
	" purge_protection bigint NOT NULL CHECK (purge_protection IN (0, 1)))",
	"CREATE TABLE keys ("
	" name text COLLATE \"C\" PRIMARY KEY,"
	" deleted_date bigint NOT NULL DEFAULT 0,"
	" scheduled_purge_date bigint NOT NULL DEFAULT 0,"
	" latest_seq bigint NOT NULL DEFAULT 0)",
	"CREATE UNIQUE INDEX keys_lower_name ON keys (lower(name))",
	"CREATE INDEX keys_by_purge_date ON keys (scheduled_purge_date)"
	" WHERE deleted_date <> 0",
	"CREATE TABLE key_versions ("
	" seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
	" name text COLLATE \"C\" NOT NULL"
	"  REFERENCES keys(name) ON DELETE CASCADE,"
	" version text COLLATE \"C\" NOT NULL UNIQUE,"
	" kty bigint NOT NULL, hsm bigint NOT NULL,"
	" key_size bigint NOT NULL, crv bigint NOT NULL,"
	" key_ops bigint NOT NULL, enabled bigint NOT NULL,"
	" nbf bigint NOT NULL, exp bigint NOT NULL,"
	" created bigint NOT NULL, updated bigint NOT NULL,"
	" tags text COLLATE \"C\", spki bytea NOT NULL, blob bytea NOT NULL)",
	"CREATE INDEX key_versions_by_name ON key_versions (lower(name), seq)",
	"CREATE TABLE principals ("
	" object_id text COLLATE \"C\" PRIMARY KEY,"
	" client_id text COLLATE \"C\" NOT NULL UNIQUE,"
	" display_name text COLLATE \"C\" NOT NULL,"
	" secret_hash text COLLATE \"C\","
	" is_admin bigint NOT NULL,"
	" created bigint NOT NULL)",
	"CREATE TABLE access_policies ("
	" object_id text COLLATE \"C\" PRIMARY KEY,"
	" tenant_id text COLLATE \"C\" NOT NULL,"
	" perms bigint NOT NULL)",
	"CREATE TABLE rotation_policies ("
	" name text COLLATE \"C\" PRIMARY KEY,"
	" expiry_secs bigint NOT NULL, expiry text COLLATE \"C\" NOT NULL,"
	" actions text COLLATE \"C\" NOT NULL,"
	" created bigint NOT NULL, updated bigint NOT NULL)",
	"CREATE UNIQUE INDEX rotation_lower_name ON rotation_policies "
	"(lower(name))",
	"CREATE TABLE vaults ("
	" name text COLLATE \"C\" PRIMARY KEY,"
	" id text COLLATE \"C\" NOT NULL UNIQUE,"
	" created bigint NOT NULL, updated bigint NOT NULL,"
	" deleted_date bigint NOT NULL DEFAULT 0,"
	" scheduled_purge_date bigint NOT NULL DEFAULT 0,"
	" retention_days bigint NOT NULL,"
	" purge_protection bigint NOT NULL,"
	" meta text COLLATE \"C\")",
	"CREATE UNIQUE INDEX vaults_lower_name ON vaults (lower(name))",
	/* the management API's records (vault/records.c) */
	"CREATE TABLE records ("
	" kind text COLLATE \"C\" NOT NULL,"
	" scope text COLLATE \"C\" NOT NULL,"
	" name text COLLATE \"C\" NOT NULL,"
	" ref text COLLATE \"C\" NOT NULL,"
	" created bigint NOT NULL, updated bigint NOT NULL,"
	" meta text COLLATE \"C\")",
	"CREATE UNIQUE INDEX records_key ON records "
	"(kind, lower(scope), lower(name))",
};

struct store_be {
	PGconn *c;
	char *conninfo; /* the address without "#schema"; wiped at close */
	char schema[PG_SCHEMA_MAX + 1];
	char lock_key[16]; /* the schema's advisory lock, as text */
	uint64_t prepared; /* bit i: statement i is prepared on c */
	int in_tx;
	int sync_cut; /* the server cut a COMMIT's wait for the standby short */
	int writing;  /* the transaction is a write (tx_begin) */
	int cluster;  /* the store has the cluster tables: bump, wait */
	int64_t bumped; /* the generation the write made, 0: none */
	char why[200];  /* the last error: SQLSTATE and message, no data */
	char kept[200]; /* a failed write's error, kept across its ROLLBACK */
};
typedef struct store_be db_t;

_Static_assert(ST_COUNT <= 64, "the prepared-statement mask");

/* ---- parameters ------------------------------------------------------------ */

struct params {
	const char *v[PG_NPARAM];
	int len[PG_NPARAM];
	int fmt[PG_NPARAM];
	char num[PG_NPARAM][24];
	int n;
	int bad;
};

static void
p_init(struct params *p)
{
	memset(p, 0, sizeof(*p));
}

static void
p_int(struct params *p, int64_t x)
{
	if (p->n >= PG_NPARAM ||
	    str_fmt(p->num[p->n], sizeof(p->num[0]), "%lld", (long long)x) !=
	        0) {
		p->bad = 1;
		return;
	}
	p->v[p->n] = p->num[p->n];
	p->n++;
}

/* NULL: SQL NULL. */
static void
p_text(struct params *p, const char *s)
{
	if (p->n >= PG_NPARAM) {
		p->bad = 1;
		return;
	}
	p->v[p->n++] = s;
}

static void
p_blob(struct params *p, const uint8_t *b, size_t len)
{
	if (p->n >= PG_NPARAM || len > INT32_MAX) {
		p->bad = 1;
		return;
	}
	p->v[p->n] = (const char *)b;
	p->len[p->n] = (int)len;
	p->fmt[p->n++] = 1;
}

/* ---- results (binary: bigint is 8 bytes big-endian, text its bytes) ----- */

static int64_t
col_i64(const PGresult *res, int row, int col)
{
	const char *p = PQgetvalue(res, row, col);
	uint64_t be = 0;

	if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != 8)
		return 0;
	memcpy(&be, p, 8);
	return (int64_t)be64toh(be);
}

static int
col_int(const PGresult *res, int row, int col)
{
	int64_t x = col_i64(res, row, col);

	return x > INT32_MAX || x < INT32_MIN ? 0 : (int)x;
}

static int
col_bool(const PGresult *res, int row, int col)
{
	return PQgetlength(res, row, col) == 1 &&
	    PQgetvalue(res, row, col)[0] != 0;
}

static void
col_text(const PGresult *res, int row, int col, char *dst, size_t cap)
{
	size_t len = (size_t)PQgetlength(res, row, col);

	if (len >= cap)
		len = cap - 1;
	if (len > 0)
		memcpy(dst, PQgetvalue(res, row, col), len);
	dst[len] = '\0';
}

/* A malloc'd copy of a text column; *out NULL for SQL NULL. */
static int
col_dup(const PGresult *res, int row, int col, char **out)
{
	*out = NULL;
	if (PQgetisnull(res, row, col))
		return 0;
	*out = strndup(PQgetvalue(res, row, col),
	    (size_t)PQgetlength(res, row, col));
	return *out == NULL ? VLT_ERR_NO_MEMORY : 0;
}

/* A malloc'd copy of a bytea column (empty: *out NULL, *len 0). */
static int
col_blob(const PGresult *res, int row, int col, uint8_t **out, size_t *len)
{
	size_t n = (size_t)PQgetlength(res, row, col);

	*out = NULL;
	*len = 0;
	if (n == 0)
		return 0;
	if ((*out = malloc(n)) == NULL)
		return VLT_ERR_NO_MEMORY;
	memcpy(*out, PQgetvalue(res, row, col), n);
	*len = n;
	return 0;
}

/* ---- errors and the connection ------------------------------------------- */

static void
set_why(db_t *b, const char *state, const char *msg)
{
	char m[160];
	size_t n;

	if (str_fmt(m, sizeof(m), "%s", msg != NULL ? msg : "") != 0)
		m[sizeof(m) - 1] = '\0';
	n = strcspn(m, "\n");
	m[n] = '\0';
	if (str_fmt(b->why, sizeof(b->why), "PostgreSQL %s: %s",
	        state != NULL ? state : "connection", m) != 0)
		b->why[sizeof(b->why) - 1] = '\0';
}

/* A failed statement's code; a lost connection drops it (the next call
 * connects again). Only the SQLSTATE and the primary message are kept:
 * a DETAIL may quote the row. */
static int
map_res(db_t *b, const PGresult *res)
{
	ExecStatusType st = res != NULL ? PQresultStatus(res) :
	                                  PGRES_FATAL_ERROR;
	const char *code;

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return 0;
	code = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	set_why(b, code,
	    res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) :
	                  "no result");
	if (PQstatus(b->c) != CONNECTION_OK || code == NULL ||
	    strncmp(code, "08", 2) == 0 || strncmp(code, "57P", 3) == 0 ||
	    strcmp(code, "25006") == 0) {
		/* gone, shut down, or a standby now: connect again */
		PQfinish(b->c);
		b->c = NULL;
		b->prepared = 0;
		return VLT_ERR_UNAVAILABLE;
	}
	if (strncmp(code, "23", 2) == 0)
		return VLT_ERR_CONFLICT;
	if (strcmp(code, "53100") == 0 || strncmp(code, "58", 2) == 0)
		return VLT_ERR_STORAGE;
	if (strncmp(code, "53", 2) == 0 || strncmp(code, "40", 2) == 0 ||
	    strcmp(code, "55P03") == 0 || strcmp(code, "57014") == 0)
		return VLT_ERR_UNAVAILABLE;
	return VLT_ERR_INTERNAL;
}

/* libpq's connection error with the password (if the address has one)
 * blotted out; an address that cannot be parsed is not quoted at all. */
static void
why_connect(db_t *b, const char *msg)
{
	PQconninfoOption *o, *opts;
	char *pw = NULL, m[400], *at;
	size_t n;

	opts = PQconninfoParse(b->conninfo, NULL);
	if (opts == NULL) {
		set_why(b, NULL,
		    "the store address is not a valid connection "
		    "string");
		return;
	}
	for (o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL &&
		    o->val[0] != '\0')
			pw = o->val;
	if (str_fmt(m, sizeof(m), "%s", msg != NULL ? msg : "") != 0)
		m[sizeof(m) - 1] = '\0';
	if (pw != NULL && (n = strlen(pw)) > 0)
		while ((at = strstr(m, pw)) != NULL)
			memset(at, '*', n);
	PQconninfoFree(opts);
	set_why(b, NULL, m);
}

static int run_res(db_t *b, enum st_id id, const struct params *p,
    PGresult **out);

/* A statement outside the catalogue (schema set-up), no parameters. */
static int
exec_plain(db_t *b, const char *sql)
{
	PGresult *res = PQexec(b->c, sql);
	int r = map_res(b, res);

	PQclear(res);
	return r;
}

/* The server's notices (a DROP's cascade) are not ours to print. One
 * kind matters: a COMMIT whose wait for the synchronous standby was cut
 * short (a cancel, statement_timeout, a shutdown) is committed on the
 * primary only, and COMMIT still answers success, after a WARNING ("The
 * transaction has already committed locally, but might not have been
 * replicated to the standby."; SQLSTATE 01000, or 57P01 at a shutdown).
 * A COMMIT raises no other warning, so any WARNING seen while it runs
 * (its text may be translated: only the severity is looked at) makes it
 * unacknowledged. */
static void
notice_seen(void *arg, const PGresult *res)
{
	db_t *b = arg;
	const char *sev = PQresultErrorField(res,
	    PG_DIAG_SEVERITY_NONLOCALIZED);

	if (sev != NULL && strcmp(sev, "WARNING") == 0)
		b->sync_cut = 1;
}

/* Connects with the address (5 s to connect unless it says otherwise),
 * in the vault's schema, synchronous commit at least "on". Always to a
 * server that takes writes: target_session_attrs=read-write after the
 * address overrides whatever it says, so that libpq goes on past a
 * standby to the next host; a server that still turns out to be a hot
 * standby is left (UNAVAILABLE). */
static int
conn_make(db_t *b)
{
	const char *const kw[] = { "connect_timeout", "application_name",
		"dbname", "target_session_attrs", NULL };
	const char *const val[] = { "5", "p11vault", b->conninfo, "read-write",
		NULL };
	const char *hs;
	const char *sp[1] = { b->schema };
	PGresult *res;
	int r;

	b->prepared = 0;
	b->in_tx = 0;
	b->c = PQconnectdbParams(kw, val, 1);
	if (b->c == NULL)
		return VLT_ERR_NO_MEMORY;
	if (PQstatus(b->c) != CONNECTION_OK) {
		why_connect(b, PQerrorMessage(b->c));
		PQfinish(b->c);
		b->c = NULL;
		return VLT_ERR_UNAVAILABLE;
	}
	hs = PQparameterStatus(b->c, "in_hot_standby");
	if (hs != NULL && strcmp(hs, "on") == 0) {
		set_why(b, NULL, "connected to a read-only standby");
		PQfinish(b->c);
		b->c = NULL;
		return VLT_ERR_UNAVAILABLE;
	}
	(void)PQsetNoticeReceiver(b->c, notice_seen, b);
	res = PQexecParams(b->c, "SELECT set_config('search_path', $1, false)",
	    1, NULL, sp, NULL, NULL, 0);
	r = map_res(b, res);
	PQclear(res);
	if (r == 0)
		r = exec_plain(b,
		    "SELECT set_config('synchronous_commit', 'on', false) "
		    "WHERE current_setting('synchronous_commit') IN "
		    "('off', 'local', 'remote_write')");
	if (r != 0 && b->c != NULL) {
		PQfinish(b->c);
		b->c = NULL;
	}
	return r;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * COMMIT (the prepared statement name), bounded: statement_timeout does
 * not cover a COMMIT's wait for the synchronous standby, so after
 * PG_COMMIT_WAIT_MS the wait is cancelled (PQcancel); the server then
 * commits locally and says so with a WARNING (notice_seen: answered 503).
 * No answer PG_COMMIT_WAIT_MS after the cancel: NULL (the connection is
 * then dropped, the outcome unknown).
 */
static PGresult *
commit_exec(db_t *b, const char *name)
{
	PGresult *res, *last = NULL;
	int64_t deadline = now_ms() + PG_COMMIT_WAIT_MS;
	int cancelled = 0;
	char err[256];

	if (!PQsendQueryPrepared(b->c, name, 0, NULL, NULL, NULL, 1))
		return NULL;
	for (;;) {
		if (!PQconsumeInput(b->c))
			return NULL;
		if (!PQisBusy(b->c))
			break;
		int64_t left = deadline - now_ms();
		if (left <= 0) {
			PGcancel *cn;

			if (cancelled)
				return NULL;
			cn = PQgetCancel(b->c);
			if (cn == NULL ||
			    !PQcancel(cn, err, (int)sizeof(err))) {
				PQfreeCancel(cn);
				return NULL;
			}
			PQfreeCancel(cn);
			cancelled = 1;
			deadline = now_ms() + PG_COMMIT_WAIT_MS;
			continue;
		}
		struct pollfd pfd = { .fd = PQsocket(b->c), .events = POLLIN };
		if (pfd.fd < 0 || poll(&pfd, 1, (int)left) < 0)
			return NULL;
	}
	while ((res = PQgetResult(b->c)) != NULL) {
		PQclear(last);
		last = res;
	}
	return last;
}

/*
 * Runs a catalogue statement (prepared on first use on this connection),
 * the result into *out (may be NULL). Outside a transaction the
 * statement is a BEGIN or a read: on a lost connection it may run once
 * more on a new one. Inside one, a lost connection fails it.
 */
static int
run_res(db_t *b, enum st_id id, const struct params *p, PGresult **out)
{
	char name[16];
	PGresult *res;
	int r, tries = b->in_tx ? 1 : 2;

	if (out != NULL)
		*out = NULL;
	if (p != NULL && p->bad)
		return VLT_ERR_INTERNAL;
	if (str_fmt(name, sizeof(name), "p11v_%d", (int)id) != 0)
		return VLT_ERR_INTERNAL;
	for (;;) {
		if (b->c == NULL && (b->in_tx || (r = conn_make(b)) != 0))
			return b->in_tx ? VLT_ERR_UNAVAILABLE : r;
		r = 0;
		if (!(b->prepared & (UINT64_C(1) << id))) {
			res = PQprepare(b->c, name, st_sql[id], 0, NULL);
			r = map_res(b, res);
			PQclear(res);
			if (r == 0)
				b->prepared |= UINT64_C(1) << id;
		}
		if (r == 0) {
			res = id == ST_COMMIT ?
			    commit_exec(b, name) :
			    PQexecPrepared(b->c, name, p != NULL ? p->n : 0,
			        p != NULL ? p->v : NULL,
			        p != NULL ? p->len : NULL,
			        p != NULL ? p->fmt : NULL, 1);
			r = map_res(b, res);
			if (r == 0 && out != NULL)
				*out = res;
			else
				PQclear(res);
		}
		if (r != VLT_ERR_UNAVAILABLE || b->c != NULL || --tries == 0 ||
		    id == ST_COMMIT)
			return r;
	}
}

static int
run(db_t *b, enum st_id id, const struct params *p)
{
	return run_res(b, id, p, NULL);
}

/* Runs a write and gives the rows it changed. */
static int
run_n(db_t *b, enum st_id id, const struct params *p, int64_t *changed)
{
	PGresult *res;
	int r;

	*changed = 0;
	if ((r = run_res(b, id, p, &res)) != 0)
		return r;
	if (parse_i64(PQcmdTuples(res), 0, INT64_MAX, changed) != 0)
		*changed = 0;
	PQclear(res);
	return 0;
}

/* A write transaction: BEGIN and the schema's advisory lock. */
static int
tx_begin(db_t *b)
{
	struct params p;
	int r;

	if (b->in_tx && b->c != NULL)
		(void)exec_plain(b, "ROLLBACK");
	b->in_tx = 0;
	if ((r = run(b, ST_BEGIN, NULL)) != 0)
		return r;
	b->in_tx = 1;
	b->writing = 1;
	b->bumped = 0;
	p_init(&p);
	p_int(&p, PG_LOCK_CLASS);
	p_text(&p, b->lock_key);
	if ((r = run(b, ST_LOCK, &p)) != 0) {
		if (b->c != NULL)
			(void)exec_plain(b, "ROLLBACK");
		b->in_tx = 0;
	}
	return r;
}

static int
tx_begin_read(db_t *b)
{
	int r;

	b->in_tx = 0;
	b->writing = 0;
	if ((r = run(b, ST_BEGIN_READ, NULL)) == 0)
		b->in_tx = 1;
	return r;
}

/* COMMIT when r is 0, else ROLLBACK. A COMMIT whose answer was lost is
 * unknown: VLT_ERR_UNAVAILABLE, never retried. */
/* ---- the cluster generation (vault/cluster.h) ---- */

static char cluster_self[CLUSTER_ID_MAX + 1];
static int cluster_lease_ms = CLUSTER_LEASE_MS_DEFAULT;

void
store_pg_cluster_self(const char *id, int lease_ms)
{
	if (str_fmt(cluster_self, sizeof(cluster_self), "%s",
	        id != NULL ? id : "") != 0)
		cluster_self[0] = '\0';
	if (lease_ms > 0)
		cluster_lease_ms = lease_ms;
}

/* In the write transaction: the cluster generation one up, and its
 * NOTIFY (delivered at COMMIT). */
static int
gen_bump(db_t *b)
{
	PGresult *res = PQexec(b->c,
	    "WITH g AS (UPDATE p11vault.cluster_state SET gen = gen + 1 "
	    "RETURNING gen) SELECT gen, pg_notify('p11vault_gen', "
	    "gen::text) FROM g");
	int r = map_res(b, res);

	if (r == 0 &&
	    (PQntuples(res) != 1 ||
	        parse_i64(PQgetvalue(res, 0, 0), 0, INT64_MAX, &b->bumped) !=
	            0))
		r = VLT_ERR_INTERNAL;
	PQclear(res);
	return r;
}

/* After the COMMIT of generation gen, outside the store's lock (on a
 * connection of its own, one per process): until every other node with a
 * fresh lease has applied it, or its lease has run out (a node whose
 * lease ran out serves nothing from its caches: cluster_fresh). The
 * bound is the lease and a margin; an error ends the wait (the other
 * nodes' leases run out by themselves). */
static pthread_mutex_t waiter_lock = PTHREAD_MUTEX_INITIALIZER;
static PGconn *waiter;

static PGconn *
waiter_conn(const char *conninfo)
{
	/* the primary, as conn_make's */
	const char *const kw[] = { "connect_timeout", "application_name",
		"dbname", "target_session_attrs", NULL };
	const char *const val[] = { "3", "p11vault", conninfo, "read-write",
		NULL };

	if (waiter != NULL && PQstatus(waiter) == CONNECTION_OK)
		return waiter;
	if (waiter != NULL)
		PQfinish(waiter);
	waiter = PQconnectdbParams(kw, val, 1);
	if (waiter != NULL && PQstatus(waiter) != CONNECTION_OK) {
		PQfinish(waiter);
		waiter = NULL;
	}
	return waiter;
}

static void
gen_wait(const char *conninfo, int64_t bumped)
{
	char gen[24], secs[32];
	const char *v[3] = { cluster_self, gen, secs };
	struct timespec ts = { 0, 500000 }, now, end;
	PGresult *res;
	int64_t left;
	PGconn *c;

	if (str_fmt(gen, sizeof(gen), "%lld", (long long)bumped) != 0 ||
	    str_fmt(secs, sizeof(secs), "%.3f",
	        (double)(cluster_lease_ms + 200) / 1000.0) != 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += (cluster_lease_ms + 500) / 1000 + 1;
	pthread_mutex_lock(&waiter_lock);
	for (;;) {
		if ((c = waiter_conn(conninfo)) == NULL)
			break;
		res = PQexecParams(c,
		    "SELECT count(*) FROM p11vault.cluster_nodes "
		    "WHERE id <> $1 AND seen_gen < $2::bigint AND seen_at > "
		    "clock_timestamp() - make_interval(secs => $3::float8)",
		    3, NULL, v, NULL, NULL, 0);
		left = 0;
		if (PQresultStatus(res) != PGRES_TUPLES_OK ||
		    PQntuples(res) != 1 ||
		    parse_i64(PQgetvalue(res, 0, 0), 0, INT64_MAX, &left) != 0)
			left = 0;
		PQclear(res);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (left == 0 || now.tv_sec > end.tv_sec)
			break;
		nanosleep(&ts, NULL);
		if (ts.tv_nsec < 4000000)
			ts.tv_nsec += 500000;
	}
	pthread_mutex_unlock(&waiter_lock);
}

static int64_t
pg_settle_take(db_t *b)
{
	int64_t g = b->bumped;

	b->bumped = 0;
	return g;
}

static void
pg_settle(db_t *b, int64_t gen)
{
	gen_wait(b->conninfo, gen);
}

static int
tx_end(db_t *b, int r)
{
	b->sync_cut = 0;
	if (r == 0 && b->writing && b->cluster)
		r = gen_bump(b);
	if (r == 0 && (r = run(b, ST_COMMIT, NULL)) == 0) {
		b->in_tx = 0;
		b->writing = 0;
		if (!b->sync_cut)
			return 0;
		/* committed here, maybe not on the standby: unknown, as a
		 * COMMIT whose answer was lost */
		set_why(b, "57014",
		    "the wait for the synchronous standby was cut short");
		PQfinish(b->c);
		b->c = NULL;
		b->prepared = 0;
		b->bumped = 0;
		return VLT_ERR_UNAVAILABLE;
	}
	b->writing = 0;
	b->bumped = 0;
	if (r == VLT_ERR_STORAGE)
		memcpy(b->kept, b->why, sizeof(b->kept));
	if (b->in_tx && b->c != NULL)
		(void)exec_plain(b, "ROLLBACK");
	b->in_tx = 0;
	return r;
}

/* The lock key: FNV-1a of the schema name, as a 32-bit integer. */
static void
lock_key(db_t *b)
{
	uint32_t h = 2166136261u;
	const char *s;

	for (s = b->schema; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	if (str_fmt(b->lock_key, sizeof(b->lock_key), "%d", (int32_t)h) != 0)
		b->lock_key[0] = '\0';
}

/* ---- open, close, health ------------------------------------------------ */

static void pg_close(db_t *b);

/* A reason into the caller's buffer (cut short if need be). */
static void
why_put(char *why, size_t cap, const char *msg)
{
	if (cap > 0 && str_fmt(why, cap, "%s", msg) != 0)
		why[cap - 1] = '\0';
}

static int
schema_ok(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > PG_SCHEMA_MAX || (s[0] >= '0' && s[0] <= '9'))
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		        (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

/* A backend for "CONNINFO#SCHEMA", not yet connected. */
static int
be_new(const char *addr, db_t **out, char *why, size_t cap)
{
	const char *hash = strrchr(addr, '#');
	PQconninfoOption *opts;
	db_t *b;

	*out = NULL;
	if (hash == NULL || !schema_ok(hash + 1)) {
		why_put(why, cap, "bad store schema");
		return VLT_ERR_BAD_PARAM;
	}
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return VLT_ERR_NO_MEMORY;
	if ((b->conninfo = strndup(addr, (size_t)(hash - addr))) == NULL) {
		free(b);
		return VLT_ERR_NO_MEMORY;
	}
	if (str_fmt(b->schema, sizeof(b->schema), "%s", hash + 1) != 0) {
		pg_close(b);
		return VLT_ERR_BAD_PARAM;
	}
	lock_key(b);
	if ((opts = PQconninfoParse(b->conninfo, NULL)) == NULL) {
		why_put(why, cap,
		    "the store address is not a valid PostgreSQL connection "
		    "string");
		pg_close(b);
		return VLT_ERR_BAD_PARAM;
	}
	PQconninfoFree(opts);
	*out = b;
	return 0;
}

/* 1 when the schema exists, 0 when not, else an error. */
static int
schema_exists(db_t *b)
{
	const char *v[1] = { b->schema };
	PGresult *res;
	int r;

	res = PQexecParams(b->c,
	    "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1, NULL, v, NULL,
	    NULL, 1);
	if ((r = map_res(b, res)) == 0)
		r = PQntuples(res) > 0;
	PQclear(res);
	return r;
}

/* The schema and its tables, in one transaction. */
static int
schema_create(db_t *b)
{
	char *id, sql[PG_SCHEMA_MAX * 2 + 40];
	size_t i;
	int r;

	if ((r = tx_begin(b)) != 0)
		return r;
	if ((id = PQescapeIdentifier(b->c, b->schema, strlen(b->schema))) ==
	    NULL) {
		r = VLT_ERR_NO_MEMORY;
		goto end;
	}
	r = str_fmt(sql, sizeof(sql), "CREATE SCHEMA %s", id) != 0 ?
	    VLT_ERR_INTERNAL :
	    exec_plain(b, sql);
	PQfreemem(id);
	for (i = 0; r == 0 && i < sizeof(schema_v1) / sizeof(schema_v1[0]); i++)
		r = exec_plain(b, schema_v1[i]);
end:
	return tx_end(b, r);
}

static int
schema_check(db_t *b)
{
	PGresult *res;
	int r;

	res = PQexec(b->c, "SELECT version::text FROM schema_version");
	if ((r = map_res(b, res)) == 0 &&
	    (PQntuples(res) != 1 ||
	        strcmp(PQgetvalue(res, 0, 0), PG_SCHEMA_VERSION) != 0))
		r = VLT_ERR_INTERNAL; /* not ours, or a newer release's */
	PQclear(res);
	return r;
}

/* 1 when the database has the cluster tables (vault/cluster.h). */
static int
cluster_tables_there(db_t *b)
{
	PGresult *res = PQexec(b->c,
	    "SELECT to_regclass('p11vault.cluster_state') IS NOT NULL");
	int r = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	    strcmp(PQgetvalue(res, 0, 0), "t") == 0;

	PQclear(res);
	return r;
}

static int
pg_open(const char *addr, int create, db_t **out, char *why, size_t cap)
{
	db_t *b = NULL;
	int r;

	*out = NULL;
	if ((r = be_new(addr, &b, why, cap)) != 0)
		return r;
	if ((r = conn_make(b)) != 0)
		goto out;
	if ((r = schema_exists(b)) < 0)
		goto out;
	if (create && r == 1)
		r = VLT_ERR_EXISTS;
	else if (!create && r == 0)
		r = VLT_ERR_NOT_FOUND;
	else
		r = create ? schema_create(b) : schema_check(b);
	if (r == 0)
		b->cluster = cluster_tables_there(b);
	if (r == 0) {
		*out = b;
		return 0;
	}
out:
	if (r != VLT_ERR_EXISTS && r != VLT_ERR_NOT_FOUND)
		why_put(why, cap, b->why);
	pg_close(b);
	return r;
}

static void
pg_close(db_t *b)
{
	if (b == NULL)
		return;
	if (b->c != NULL)
		PQfinish(b->c);
	if (b->conninfo != NULL)
		freezero(b->conninfo, strlen(b->conninfo));
	free(b);
}

/* Drops the schema of addr and everything in it (a purged vault). */
static int
pg_remove(const char *addr, char *why, size_t cap)
{
	char *id, sql[PG_SCHEMA_MAX * 2 + 40];
	db_t *b = NULL;
	int r;

	if ((r = be_new(addr, &b, why, cap)) != 0)
		return r;
	if ((r = conn_make(b)) == 0) {
		if ((id = PQescapeIdentifier(b->c, b->schema,
		         strlen(b->schema))) == NULL) {
			r = VLT_ERR_NO_MEMORY;
		} else {
			r = str_fmt(sql, sizeof(sql),
			        "DROP SCHEMA IF EXISTS %s CASCADE", id) != 0 ?
			    VLT_ERR_INTERNAL :
			    exec_plain(b, sql);
			PQfreemem(id);
		}
	}
	if (r != 0)
		why_put(why, cap, b->why);
	pg_close(b);
	return r;
}

/* The settings row can be read and the server takes writes (a standby
 * after a failover does not: connect again). */
static int
pg_ping(db_t *b)
{
	PGresult *res;
	int r;

	if ((r = run_res(b, ST_PING, NULL, &res)) != 0)
		return VLT_ERR_UNAVAILABLE;
	if (PQntuples(res) != 1 || !col_bool(res, 0, 1)) {
		PQfinish(b->c);
		b->c = NULL;
		b->prepared = 0;
		r = VLT_ERR_UNAVAILABLE;
	}
	PQclear(res);
	return r;
}

/* A write that changes nothing but is committed (WAL, flush). */
static int
pg_probe(db_t *b)
{
	int r;

	if ((r = tx_begin(b)) == 0)
		r = tx_end(b, run(b, ST_PROBE, NULL));
	return r;
}

static void
pg_why(db_t *b, char *buf, size_t cap)
{
	const char *w = b->kept[0] != '\0' ? b->kept : b->why;

	if (str_fmt(buf, cap, "%s", w) != 0 && cap > 0)
		buf[0] = '\0';
	b->kept[0] = '\0';
}

/* ---- settings ------------------------------------------------------------ */

static int
settings_read(db_t *b, struct vlt_settings *out)
{
	PGresult *res;
	int r;

	if ((r = run_res(b, ST_SETTINGS_GET, NULL, &res)) != 0)
		return r;
	if (PQntuples(res) != 1) {
		r = VLT_ERR_INTERNAL;
	} else {
		out->retention_days = col_int(res, 0, 0);
		out->purge_protection = col_int(res, 0, 1);
	}
	PQclear(res);
	return r;
}

static int
settings_write(db_t *b, const struct vlt_settings *st)
{
	struct params p;

	p_init(&p);
	p_int(&p, st->retention_days);
	p_int(&p, st->purge_protection);
	return run(b, ST_SETTINGS_PUT, &p);
}

static int
pg_settings_get(db_t *b, struct vlt_settings *out)
{
	return settings_read(b, out);
}

static int
pg_settings_init(db_t *b, const struct vlt_settings *st)
{
	int r;

	if ((r = tx_begin(b)) == 0)
		r = tx_end(b, settings_write(b, st));
	return r;
}

static int
pg_settings_update(db_t *b, int retention_days, int purge_protection)
{
	struct vlt_settings cur;
	int r;

	if ((r = tx_begin(b)) != 0)
		return r;
	if ((r = settings_read(b, &cur)) != 0)
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
	r = settings_write(b, &cur);
end:
	return tx_end(b, r);
}

/* ---- keys and versions ------------------------------------------------------ */

/* Deletion state of a key; VLT_ERR_NOT_FOUND if there is no such name.
 * canon (optional, VLT_NAME_MAX + 1): the name as stored. */
static int
key_state(db_t *b, const char *name, char *canon, int64_t *deleted,
    int64_t *purge_date)
{
	struct params p;
	PGresult *res;
	int r;

	p_init(&p);
	p_text(&p, name);
	if ((r = run_res(b, ST_KEY_STATE, &p, &res)) != 0)
		return r;
	if (PQntuples(res) == 0) {
		r = VLT_ERR_NOT_FOUND;
	} else {
		if (canon != NULL)
			col_text(res, 0, 0, canon, VLT_NAME_MAX + 1);
		*deleted = col_i64(res, 0, 1);
		*purge_date = col_i64(res, 0, 2);
	}
	PQclear(res);
	return r;
}

/* Fills *k (and optionally the blob) from row i of V_COLS. */
static int
read_version_row(const PGresult *res, int i, struct vlt_key_info *k,
    int64_t *seq, uint8_t **blob, size_t *blob_len)
{
	memset(k, 0, sizeof(*k));
	col_text(res, i, 0, k->name, sizeof(k->name));
	col_text(res, i, 1, k->version, sizeof(k->version));
	k->kty = (enum vlt_kty)col_int(res, i, 2);
	k->hsm = col_int(res, i, 3);
	k->key_size = (unsigned)col_int(res, i, 4);
	k->crv = (enum vlt_curve)col_int(res, i, 5);
	k->key_ops = (unsigned)col_i64(res, i, 6);
	k->attrs.enabled = col_int(res, i, 7);
	k->attrs.nbf = col_i64(res, i, 8);
	k->attrs.exp = col_i64(res, i, 9);
	k->attrs.created = col_i64(res, i, 10);
	k->attrs.updated = col_i64(res, i, 11);
	if (col_dup(res, i, 12, &k->tags) != 0 ||
	    col_blob(res, i, 13, &k->spki, &k->spki_len) != 0)
		goto nomem;
	k->deleted_date = col_i64(res, i, 14);
	k->scheduled_purge_date = col_i64(res, i, 15);
	if (seq != NULL)
		*seq = col_i64(res, i, 16);
	if (blob != NULL) {
		if (col_blob(res, i, 17, blob, blob_len) != 0 || *blob == NULL)
			goto nomem;
	}
	return 0;
nomem:
	vlt_key_info_clear(k);
	return VLT_ERR_NO_MEMORY;
}

/* The body of store_version_insert; the caller holds a transaction. */
static int
version_insert_locked(db_t *b, const struct vlt_key_info *k,
    const uint8_t *blob, size_t blob_len)
{
	char canon[VLT_NAME_MAX + 1];
	struct params p;
	PGresult *res;
	int64_t deleted, purge_date, seq;
	int r;

	if (blob_len == 0 || blob_len > INT32_MAX || k->spki_len == 0 ||
	    k->spki_len > INT32_MAX)
		return VLT_ERR_INTERNAL;
	r = key_state(b, k->name, canon, &deleted, &purge_date);
	if (r == VLT_ERR_NOT_FOUND) {
		p_init(&p);
		p_text(&p, k->name);
		if ((r = run(b, ST_KEY_INSERT, &p)) != 0)
			return r;
		if (str_fmt(canon, sizeof(canon), "%s", k->name) != 0)
			return VLT_ERR_BAD_PARAM;
	} else if (r != 0) {
		return r;
	} else if (deleted != 0) {
		return VLT_ERR_DELETED_RECOVERABLE;
	}
	p_init(&p);
	p_text(&p, canon);
	p_text(&p, k->version);
	p_int(&p, (int64_t)k->kty);
	p_int(&p, k->hsm ? 1 : 0);
	p_int(&p, k->key_size);
	p_int(&p, (int64_t)k->crv);
	p_int(&p, k->key_ops);
	p_int(&p, k->attrs.enabled ? 1 : 0);
	p_int(&p, k->attrs.nbf);
	p_int(&p, k->attrs.exp);
	p_int(&p, k->attrs.created);
	p_int(&p, k->attrs.updated);
	p_text(&p, k->tags);
	p_blob(&p, k->spki, k->spki_len);
	p_blob(&p, blob, blob_len);
	if ((r = run_res(b, ST_VERSION_INSERT, &p, &res)) != 0)
		return r;
	seq = PQntuples(res) == 1 ? col_i64(res, 0, 0) : 0;
	PQclear(res);
	if (seq == 0)
		return VLT_ERR_INTERNAL;
	p_init(&p);
	p_int(&p, seq);
	p_text(&p, canon);
	return run(b, ST_KEY_LATEST, &p);
}

static int
pg_version_insert(db_t *b, const struct vlt_key_info *k, const uint8_t *blob,
    size_t blob_len)
{
	int r;

	if ((r = tx_begin(b)) == 0)
		r = tx_end(b, version_insert_locked(b, k, blob, blob_len));
	return r;
}

static int
pg_key_restore(db_t *b, const struct vlt_key_info *ks, uint8_t *const *blobs,
    const size_t *blob_lens, size_t n)
{
	int64_t deleted, purge_date;
	size_t i;
	int r;

	if (n == 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = tx_begin(b)) != 0)
		return r;
	r = key_state(b, ks[0].name, NULL, &deleted, &purge_date);
	if (r == 0)
		r = VLT_ERR_CONFLICT; /* live or deleted: Azure's 409 */
	else if (r == VLT_ERR_NOT_FOUND)
		r = 0;
	for (i = 0; r == 0 && i < n; i++)
		r = version_insert_locked(b, &ks[i], blobs[i], blob_lens[i]);
	return tx_end(b, r);
}

static int
version_fetch(db_t *b, const char *name, const char *version, int deleted,
    struct vlt_key_info *out, int64_t *seq, uint8_t **blob, size_t *blob_len)
{
	struct params p;
	PGresult *res;
	int r;

	p_init(&p);
	p_text(&p, name);
	if (version != NULL)
		p_text(&p, version);
	p_int(&p, deleted ? 1 : 0);
	if ((r = run_res(b,
	         version == NULL ? ST_VERSION_LATEST : ST_VERSION_BY_ID, &p,
	         &res)) != 0)
		return r;
	r = PQntuples(res) == 0 ?
	    VLT_ERR_NOT_FOUND :
	    read_version_row(res, 0, out, seq, blob, blob_len);
	PQclear(res);
	return r;
}

static int
pg_version_get(db_t *b, const char *name, const char *version, int deleted,
    struct vlt_key_info *out, uint8_t **blob, size_t *blob_len)
{
	memset(out, 0, sizeof(*out));
	return version_fetch(b, name, version, deleted, out, NULL, blob,
	    blob_len);
}

static int
pg_version_update(db_t *b, const char *name, const char *version,
    const struct store_update *u, int (*check_ops)(enum vlt_kty, unsigned),
    struct vlt_key_info *out)
{
	struct vlt_key_info cur;
	struct params p;
	int64_t seq = 0;
	int r;

	memset(&cur, 0, sizeof(cur));
	memset(out, 0, sizeof(*out));
	if ((r = tx_begin(b)) != 0)
		return r;
	if ((r = version_fetch(b, name, version, 0, &cur, &seq, NULL, NULL)) !=
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
	p_init(&p);
	p_int(&p, cur.key_ops);
	p_int(&p, cur.attrs.enabled);
	p_int(&p, cur.attrs.nbf);
	p_int(&p, cur.attrs.exp);
	p_text(&p, u->tags != NULL ? u->tags : cur.tags);
	p_int(&p, u->updated);
	p_int(&p, seq);
	if ((r = run(b, ST_VERSION_UPDATE, &p)) != 0)
		goto end;
	r = version_fetch(b, name, version, 0, out, NULL, NULL, NULL);
end:
	r = tx_end(b, r);
	if (r != 0)
		vlt_key_info_clear(out);
	vlt_key_info_clear(&cur);
	return r;
}

/* Up to limit V_COLS rows of res; *more when there is one more. */
static int
collect_versions(const PGresult *res, size_t limit, struct vlt_key_info **items,
    size_t *n, int64_t *last_seq, int *more)
{
	struct vlt_key_info *arr;
	size_t cnt = 0, rows = (size_t)PQntuples(res);
	int r;

	if ((arr = calloc(limit, sizeof(*arr))) == NULL)
		return VLT_ERR_NO_MEMORY;
	for (; cnt < limit && cnt < rows; cnt++)
		if ((r = read_version_row(res, (int)cnt, &arr[cnt], last_seq,
		         NULL, NULL)) != 0) {
			vlt_key_info_free_array(arr, cnt);
			return r;
		}
	*more = rows > limit;
	*items = arr;
	*n = cnt;
	return 0;
}

static int
pg_key_list(db_t *b, int deleted, const char *after_name, size_t limit,
    struct vlt_key_info **items, size_t *n, int *more)
{
	struct params p;
	PGresult *res;
	int r;

	*items = NULL;
	*n = 0;
	*more = 0;
	if (limit == 0 || limit > 1000)
		return VLT_ERR_BAD_PARAM;
	p_init(&p);
	p_int(&p, deleted ? 1 : 0);
	p_text(&p, after_name != NULL ? after_name : "");
	p_int(&p, (int64_t)limit + 1);
	if ((r = run_res(b, ST_KEY_LIST, &p, &res)) != 0)
		return r;
	r = collect_versions(res, limit, items, n, NULL, more);
	PQclear(res);
	return r;
}

static int
pg_version_list(db_t *b, const char *name, int64_t after_seq, size_t limit,
    struct vlt_key_info **items, size_t *n, int64_t *last_seq, int *more)
{
	struct params p;
	PGresult *res;
	int64_t deleted, purge_date;
	int r;

	*items = NULL;
	*n = 0;
	*last_seq = after_seq;
	if (limit == 0 || limit > 1000)
		return VLT_ERR_BAD_PARAM;
	/* One read transaction: the existence check and the page agree. */
	if ((r = tx_begin_read(b)) != 0)
		return r;
	if ((r = key_state(b, name, NULL, &deleted, &purge_date)) != 0)
		goto end;
	if (deleted != 0) {
		r = VLT_ERR_NOT_FOUND;
		goto end;
	}
	p_init(&p);
	p_text(&p, name);
	p_int(&p, after_seq);
	p_int(&p, (int64_t)limit + 1);
	if ((r = run_res(b, ST_VERSION_LIST, &p, &res)) != 0)
		goto end;
	r = collect_versions(res, limit, items, n, last_seq, more);
	PQclear(res);
end:
	r = tx_end(b, r);
	if (r != 0 && *items != NULL) {
		vlt_key_info_free_array(*items, *n);
		*items = NULL;
		*n = 0;
	}
	return r;
}

/* Deletes (deleting) or recovers a key and reads it back as it now is. */
static int
key_delete_or_recover(db_t *b, const char *name, int deleting, int64_t now,
    struct vlt_key_info *out)
{
	struct vlt_settings set;
	struct params p;
	int64_t changed = 0;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = tx_begin(b)) != 0)
		return r;
	p_init(&p);
	if (deleting) {
		if ((r = settings_read(b, &set)) != 0)
			goto end;
		p_int(&p, now);
		p_int(&p, now + (int64_t)set.retention_days * 86400);
	}
	p_text(&p, name);
	if ((r = run_n(b, deleting ? ST_KEY_DELETE : ST_KEY_RECOVER, &p,
	         &changed)) != 0)
		goto end;
	if (changed != 1) {
		r = VLT_ERR_NOT_FOUND;
		goto end;
	}
	r = version_fetch(b, name, NULL, deleting, out, NULL, NULL, NULL);
end:
	r = tx_end(b, r);
	if (r != 0)
		vlt_key_info_clear(out);
	return r;
}

static int
pg_key_delete(db_t *b, const char *name, int64_t now, struct vlt_key_info *out)
{
	return key_delete_or_recover(b, name, 1, now, out);
}

static int
pg_key_recover(db_t *b, const char *name, struct vlt_key_info *out)
{
	return key_delete_or_recover(b, name, 0, 0, out);
}

/* A one-text-parameter statement without result rows. */
static int
run_name(db_t *b, enum st_id id, const char *name, int64_t *changed)
{
	struct params p;
	int64_t dummy;

	p_init(&p);
	p_text(&p, name);
	return run_n(b, id, &p, changed != NULL ? changed : &dummy);
}

/* One-column text rows of res into a malloc'd array of cap-byte
 * strings. */
static int
collect_texts(const PGresult *res, size_t cap, void **arr, size_t *n)
{
	size_t rows = (size_t)PQntuples(res), i;
	char *a;

	*arr = NULL;
	*n = 0;
	if (rows == 0)
		return 0;
	if ((a = calloc(rows, cap)) == NULL)
		return VLT_ERR_NO_MEMORY;
	for (i = 0; i < rows; i++)
		col_text(res, (int)i, 0, a + i * cap, cap);
	*arr = a;
	*n = rows;
	return 0;
}

/* Whether a soft-deleted key may be purged now (the transaction held). */
static int
purge_allowed(db_t *b, const char *name, int64_t due_before)
{
	struct vlt_settings set;
	int64_t deleted, purge_date;
	int r;

	if ((r = key_state(b, name, NULL, &deleted, &purge_date)) != 0)
		return r;
	if (deleted == 0)
		return VLT_ERR_NOT_FOUND;
	if (due_before == 0) {
		if ((r = settings_read(b, &set)) != 0)
			return r;
		return set.purge_protection ? VLT_ERR_PURGE_PROTECTED : 0;
	}
	return purge_date > due_before ? VLT_ERR_NOT_FOUND : 0;
}

static int
pg_key_purge(db_t *b, const char *name, int64_t due_before,
    char (**versions)[VLT_VERSION_LEN + 1], size_t *n)
{
	struct params p;
	PGresult *res;
	void *ids = NULL;
	size_t cnt = 0;
	int r;

	*versions = NULL;
	*n = 0;
	if ((r = tx_begin(b)) != 0)
		return r;
	if ((r = purge_allowed(b, name, due_before)) != 0)
		goto end;
	p_init(&p);
	p_text(&p, name);
	if ((r = run_res(b, ST_VERSION_IDS, &p, &res)) != 0)
		goto end;
	r = collect_texts(res, sizeof(**versions), &ids, &cnt);
	PQclear(res);
	if (r != 0 || (r = run_name(b, ST_VERSIONS_DELETE, name, NULL)) != 0 ||
	    (r = run_name(b, ST_ROT_DELETE, name, NULL)) != 0)
		goto end;
	r = run_name(b, ST_KEY_REMOVE, name, NULL);
end:
	r = tx_end(b, r);
	if (r != 0) {
		free(ids);
		return r;
	}
	*versions = ids;
	*n = cnt;
	return 0;
}

static int
pg_purge_due_list(db_t *b, int64_t now, char (**names)[VLT_NAME_MAX + 1],
    size_t *n)
{
	struct params p;
	PGresult *res;
	void *arr = NULL;
	int r;

	*names = NULL;
	*n = 0;
	p_init(&p);
	p_int(&p, now);
	if ((r = run_res(b, ST_DUE_LIST, &p, &res)) != 0)
		return r;
	r = collect_texts(res, sizeof(**names), &arr, n);
	PQclear(res);
	*names = arr;
	return r;
}

/* ---- the blob upgrade ------------------------------------------------ */

static int
pg_blob_scan(db_t *b, int64_t after_seq, size_t limit,
    struct store_blob **items, size_t *n)
{
	struct store_blob *arr;
	struct params p;
	PGresult *res;
	size_t rows, i;
	int r;

	*items = NULL;
	*n = 0;
	if (limit == 0 || limit > INT32_MAX)
		return VLT_ERR_BAD_PARAM;
	p_init(&p);
	p_int(&p, after_seq);
	p_int(&p, (int64_t)limit);
	if ((r = run_res(b, ST_BLOB_SCAN, &p, &res)) != 0)
		return r;
	rows = (size_t)PQntuples(res);
	if (rows > 0 && (arr = calloc(rows, sizeof(*arr))) == NULL) {
		PQclear(res);
		return VLT_ERR_NO_MEMORY;
	}
	for (i = 0; i < rows; i++) {
		arr[i].seq = col_i64(res, (int)i, 0);
		col_text(res, (int)i, 1, arr[i].name, sizeof(arr[i].name));
		col_text(res, (int)i, 2, arr[i].version,
		    sizeof(arr[i].version));
		if ((r = col_blob(res, (int)i, 3, &arr[i].blob,
		         &arr[i].blob_len)) != 0) {
			store_blob_free_array(arr, i);
			PQclear(res);
			return r;
		}
	}
	PQclear(res);
	if (rows > 0) {
		*items = arr;
		*n = rows;
	}
	return 0;
}

static int
pg_blob_replace(db_t *b, const struct store_blob *items, size_t n,
    size_t *replaced)
{
	struct params p;
	size_t i, done = 0;
	int64_t changed;
	int r;

	*replaced = 0;
	if ((r = tx_begin(b)) != 0)
		return r;
	for (i = 0; r == 0 && i < n; i++) {
		const struct store_blob *x = &items[i];

		if (x->bound == NULL || x->bound_len == 0) {
			r = VLT_ERR_INTERNAL;
			break;
		}
		p_init(&p);
		p_blob(&p, x->bound, x->bound_len);
		p_int(&p, x->seq);
		p_blob(&p, x->blob, x->blob_len);
		if ((r = run_n(b, ST_BLOB_REPLACE, &p, &changed)) == 0 &&
		    changed == 1)
			done++;
	}
	r = tx_end(b, r);
	if (r == 0)
		*replaced = done;
	return r;
}

/* ---- rotation policies ---------------------------------------------------- */

static void
row_rotation(const PGresult *res, int i, struct store_rotation *rec)
{
	col_text(res, i, 0, rec->name, sizeof(rec->name));
	rec->expiry_secs = col_i64(res, i, 1);
	col_text(res, i, 2, rec->expiry, sizeof(rec->expiry));
	col_text(res, i, 3, rec->actions, sizeof(rec->actions));
	rec->created = col_i64(res, i, 4);
	rec->updated = col_i64(res, i, 5);
}

static int
pg_rotation_get(db_t *b, const char *name, struct store_rotation *out)
{
	struct params p;
	PGresult *res;
	int r;

	memset(out, 0, sizeof(*out));
	p_init(&p);
	p_text(&p, name);
	if ((r = run_res(b, ST_ROT_GET, &p, &res)) != 0)
		return r;
	if (PQntuples(res) == 0)
		r = VLT_ERR_NOT_FOUND;
	else
		row_rotation(res, 0, out);
	PQclear(res);
	return r;
}

static int
pg_rotation_put(db_t *b, const char *name, const struct store_rotation *rec,
    int64_t now)
{
	char canon[VLT_NAME_MAX + 1];
	struct params p;
	int64_t deleted, purge_date;
	int r;

	if ((r = tx_begin(b)) != 0)
		return r;
	if ((r = key_state(b, name, canon, &deleted, &purge_date)) != 0)
		goto end;
	if (deleted != 0) {
		r = VLT_ERR_NOT_FOUND;
		goto end;
	}
	p_init(&p);
	p_text(&p, canon);
	p_int(&p, rec->expiry_secs);
	p_text(&p, rec->expiry);
	p_text(&p, rec->actions);
	p_int(&p, now);
	r = run(b, ST_ROT_PUT, &p);
end:
	return tx_end(b, r);
}

static int
pg_rotation_list(db_t *b, struct store_rotation **recs, size_t *n)
{
	struct store_rotation *arr = NULL;
	PGresult *res;
	size_t rows, i;
	int r;

	*recs = NULL;
	*n = 0;
	if ((r = run_res(b, ST_ROT_LIST, NULL, &res)) != 0)
		return r;
	rows = (size_t)PQntuples(res);
	if (rows > 0 && (arr = calloc(rows, sizeof(*arr))) == NULL) {
		PQclear(res);
		return VLT_ERR_NO_MEMORY;
	}
	for (i = 0; i < rows; i++)
		row_rotation(res, (int)i, &arr[i]);
	PQclear(res);
	*recs = arr;
	*n = rows;
	return 0;
}

/* ---- principals and access policies ------------------------------------------ */

static int
pg_principal_put(db_t *b, const struct vlt_principal *x)
{
	struct params p;
	int r;

	p_init(&p);
	p_text(&p, x->object_id);
	p_text(&p, x->client_id);
	p_text(&p, x->display_name);
	p_text(&p, x->secret_hash);
	p_int(&p, x->is_admin ? 1 : 0);
	p_int(&p, x->created);
	if ((r = tx_begin(b)) == 0)
		r = tx_end(b, run(b, ST_PRINCIPAL_PUT, &p));
	return r;
}

/* A one-parameter DELETE; VLT_ERR_NOT_FOUND if nothing matched. */
static int
delete_by_id(db_t *b, enum st_id id, const char *key)
{
	int64_t changed = 0;
	int r;

	if ((r = run_name(b, id, key, &changed)) != 0)
		return r;
	return changed > 0 ? 0 : VLT_ERR_NOT_FOUND;
}

static int
pg_principal_delete(db_t *b, const char *object_id)
{
	int r;

	if ((r = tx_begin(b)) != 0)
		return r;
	r = delete_by_id(b, ST_PRINCIPAL_DELETE, object_id);
	if (r == 0 &&
	    (r = delete_by_id(b, ST_ACCESS_DELETE, object_id)) ==
	        VLT_ERR_NOT_FOUND)
		r = 0;
	return tx_end(b, r);
}

static int
pg_principal_list(db_t *b, struct vlt_principal **items, size_t *n)
{
	struct vlt_principal *arr = NULL;
	PGresult *res;
	size_t rows, i;
	int r;

	*items = NULL;
	*n = 0;
	if ((r = run_res(b, ST_PRINCIPAL_LIST, NULL, &res)) != 0)
		return r;
	rows = (size_t)PQntuples(res);
	if (rows > 0 && (arr = calloc(rows, sizeof(*arr))) == NULL) {
		PQclear(res);
		return VLT_ERR_NO_MEMORY;
	}
	for (i = 0; i < rows; i++) {
		struct vlt_principal *x = &arr[i];

		col_text(res, (int)i, 0, x->object_id, sizeof(x->object_id));
		col_text(res, (int)i, 1, x->client_id, sizeof(x->client_id));
		col_text(res, (int)i, 2, x->display_name,
		    sizeof(x->display_name));
		x->is_admin = col_int(res, (int)i, 4);
		x->created = col_i64(res, (int)i, 5);
		if ((r = col_dup(res, (int)i, 3, &x->secret_hash)) != 0) {
			vlt_principal_free_array(arr, i);
			PQclear(res);
			return r;
		}
	}
	PQclear(res);
	*items = arr;
	*n = rows;
	return 0;
}

static int
access_write(db_t *b, const struct vlt_access_policy *a)
{
	struct params p;

	p_init(&p);
	p_text(&p, a->object_id);
	p_text(&p, a->tenant_id);
	p_int(&p, a->perms);
	return run(b, ST_ACCESS_PUT, &p);
}

static int
pg_access_put(db_t *b, const struct vlt_access_policy *a)
{
	int r;

	if ((r = tx_begin(b)) == 0)
		r = tx_end(b, access_write(b, a));
	return r;
}

static int
pg_access_delete(db_t *b, const char *object_id)
{
	int r;

	if ((r = tx_begin(b)) == 0)
		r = tx_end(b, delete_by_id(b, ST_ACCESS_DELETE, object_id));
	return r;
}

static int
pg_access_apply(db_t *b, const struct vlt_access_policy *items, size_t n)
{
	size_t i;
	int r;

	if ((r = tx_begin(b)) != 0)
		return r;
	for (i = 0; i < n && r == 0; i++) {
		if (items[i].perms != 0)
			r = access_write(b, &items[i]);
		else if ((r = delete_by_id(b, ST_ACCESS_DELETE,
		              items[i].object_id)) == VLT_ERR_NOT_FOUND)
			r = 0;
	}
	return tx_end(b, r);
}

static int
pg_access_list(db_t *b, struct vlt_access_policy **items, size_t *n)
{
	struct vlt_access_policy *arr = NULL;
	PGresult *res;
	size_t rows, i;
	int r;

	*items = NULL;
	*n = 0;
	if ((r = run_res(b, ST_ACCESS_LIST, NULL, &res)) != 0)
		return r;
	rows = (size_t)PQntuples(res);
	if (rows > 0 && (arr = calloc(rows, sizeof(*arr))) == NULL) {
		PQclear(res);
		return VLT_ERR_NO_MEMORY;
	}
	for (i = 0; i < rows; i++) {
		col_text(res, (int)i, 0, arr[i].object_id,
		    sizeof(arr[i].object_id));
		col_text(res, (int)i, 1, arr[i].tenant_id,
		    sizeof(arr[i].tenant_id));
		arr[i].perms = (unsigned)col_i64(res, (int)i, 2);
	}
	PQclear(res);
	*items = arr;
	*n = rows;
	return 0;
}

/* ---- the appliance's vaults --------------------------------------------- */

static void
p_vault(struct params *p, const struct vlt_vault *x)
{
	p_init(p);
	p_text(p, x->name);
	p_text(p, x->id);
	p_int(p, x->created);
	p_int(p, x->updated);
	p_int(p, x->deleted_date);
	p_int(p, x->scheduled_purge_date);
	p_int(p, x->settings.retention_days);
	p_int(p, x->settings.purge_protection);
	p_text(p, x->meta);
}

static int
row_vault(const PGresult *res, int i, struct vlt_vault *x)
{
	col_text(res, i, 0, x->name, sizeof(x->name));
	col_text(res, i, 1, x->id, sizeof(x->id));
	x->created = col_i64(res, i, 2);
	x->updated = col_i64(res, i, 3);
	x->deleted_date = col_i64(res, i, 4);
	x->scheduled_purge_date = col_i64(res, i, 5);
	x->settings.retention_days = col_int(res, i, 6);
	x->settings.purge_protection = col_int(res, i, 7);
	return col_dup(res, i, 8, &x->meta);
}

static int
pg_vault_insert(db_t *b, const struct vlt_vault *x)
{
	struct params p;
	int r;

	p_vault(&p, x);
	if ((r = tx_begin(b)) == 0)
		r = tx_end(b, run(b, ST_VAULT_INSERT, &p));
	return r;
}

static int
pg_vault_get(db_t *b, const char *name, struct vlt_vault *out)
{
	struct params p;
	PGresult *res;
	int r;

	memset(out, 0, sizeof(*out));
	p_init(&p);
	p_text(&p, name);
	if ((r = run_res(b, ST_VAULT_GET, &p, &res)) != 0)
		return r;
	if (PQntuples(res) == 0)
		r = VLT_ERR_NOT_FOUND;
	else if ((r = row_vault(res, 0, out)) != 0)
		vlt_vault_clear(out);
	PQclear(res);
	return r;
}

static int
pg_vault_list(db_t *b, int deleted, struct vlt_vault **items, size_t *n)
{
	struct vlt_vault *arr = NULL;
	struct params p;
	PGresult *res;
	size_t rows, i;
	int r;

	*items = NULL;
	*n = 0;
	p_init(&p);
	p_int(&p, deleted);
	if ((r = run_res(b, ST_VAULT_LIST, &p, &res)) != 0)
		return r;
	rows = (size_t)PQntuples(res);
	if (rows > 0 && (arr = calloc(rows, sizeof(*arr))) == NULL) {
		PQclear(res);
		return VLT_ERR_NO_MEMORY;
	}
	for (i = 0; i < rows; i++)
		if ((r = row_vault(res, (int)i, &arr[i])) != 0) {
			vlt_vault_free_array(arr, i + 1);
			PQclear(res);
			return r;
		}
	PQclear(res);
	*items = arr;
	*n = rows;
	return 0;
}

/* The row of x's name, id and created takes x's other fields. */
static int
pg_vault_update(db_t *b, const struct vlt_vault *x)
{
	struct params p;
	int64_t changed = 0;
	int r;

	p_vault(&p, x);
	if ((r = tx_begin(b)) != 0)
		return r;
	r = run_n(b, ST_VAULT_UPDATE, &p, &changed);
	if (r == 0 && changed == 0)
		r = VLT_ERR_NOT_FOUND;
	return tx_end(b, r);
}

static int
pg_vault_remove(db_t *b, const char *name)
{
	int r;

	if ((r = tx_begin(b)) == 0)
		r = tx_end(b, delete_by_id(b, ST_VAULT_REMOVE, name));
	return r;
}

/* ---- the management API's records ---------------------------------------- */

static void
p_record(struct params *p, const struct vlt_record *x)
{
	p_init(p);
	p_text(p, x->kind);
	p_text(p, x->scope);
	p_text(p, x->name);
	p_text(p, x->ref);
	p_int(p, x->created);
	p_int(p, x->updated);
	p_text(p, x->meta);
}

static int
row_record(const PGresult *res, int i, struct vlt_record *x)
{
	col_text(res, i, 0, x->kind, sizeof(x->kind));
	col_text(res, i, 1, x->scope, sizeof(x->scope));
	col_text(res, i, 2, x->name, sizeof(x->name));
	col_text(res, i, 3, x->ref, sizeof(x->ref));
	x->created = col_i64(res, i, 4);
	x->updated = col_i64(res, i, 5);
	return col_dup(res, i, 6, &x->meta);
}

static int
pg_record_put(db_t *b, const struct vlt_record *x, int create_only)
{
	struct params p;
	int r;

	p_record(&p, x);
	if ((r = tx_begin(b)) == 0)
		r = tx_end(b,
		    run(b, create_only ? ST_RECORD_INSERT : ST_RECORD_UPSERT,
		        &p));
	return r;
}

static int
pg_record_get(db_t *b, const char *kind, const char *scope, const char *name,
    struct vlt_record *out)
{
	struct params p;
	PGresult *res;
	int r;

	memset(out, 0, sizeof(*out));
	p_init(&p);
	p_text(&p, kind);
	p_text(&p, scope);
	p_text(&p, name);
	if ((r = run_res(b, ST_RECORD_GET, &p, &res)) != 0)
		return r;
	if (PQntuples(res) == 0)
		r = VLT_ERR_NOT_FOUND;
	else if ((r = row_record(res, 0, out)) != 0)
		vlt_record_clear(out);
	PQclear(res);
	return r;
}

static int
pg_record_list(db_t *b, const char *kind, const char *scope,
    struct vlt_record **items, size_t *n)
{
	struct vlt_record *arr = NULL;
	struct params p;
	PGresult *res;
	size_t rows, i;
	int r;

	*items = NULL;
	*n = 0;
	p_init(&p);
	p_text(&p, kind);
	p_text(&p, scope);
	if ((r = run_res(b, ST_RECORD_LIST, &p, &res)) != 0)
		return r;
	rows = (size_t)PQntuples(res);
	if (rows > 0 && (arr = calloc(rows, sizeof(*arr))) == NULL) {
		PQclear(res);
		return VLT_ERR_NO_MEMORY;
	}
	for (i = 0; i < rows; i++)
		if ((r = row_record(res, (int)i, &arr[i])) != 0) {
			vlt_record_free_array(arr, i + 1);
			PQclear(res);
			return r;
		}
	PQclear(res);
	*items = arr;
	*n = rows;
	return 0;
}

static int
pg_record_remove(db_t *b, const char *kind, const char *scope, const char *name)
{
	struct params p;
	int64_t changed = 0;
	int r;

	p_init(&p);
	p_text(&p, kind);
	p_text(&p, scope);
	p_text(&p, name);
	if ((r = tx_begin(b)) != 0)
		return r;
	r = run_n(b, ST_RECORD_REMOVE, &p, &changed);
	if (r == 0 && changed == 0)
		r = VLT_ERR_NOT_FOUND;
	return tx_end(b, r);
}

const struct store_backend store_pg_backend = {
	.name = "postgresql",
	.open = pg_open,
	.remove = pg_remove,
	.close = pg_close,
	.ping = pg_ping,
	.probe = pg_probe,
	.why = pg_why,
	.settings_get = pg_settings_get,
	.settings_init = pg_settings_init,
	.settings_update = pg_settings_update,
	.version_insert = pg_version_insert,
	.version_get = pg_version_get,
	.version_update = pg_version_update,
	.key_list = pg_key_list,
	.version_list = pg_version_list,
	.key_delete = pg_key_delete,
	.key_recover = pg_key_recover,
	.key_purge = pg_key_purge,
	.purge_due_list = pg_purge_due_list,
	.key_restore = pg_key_restore,
	.blob_scan = pg_blob_scan,
	.blob_replace = pg_blob_replace,
	.rotation_get = pg_rotation_get,
	.rotation_put = pg_rotation_put,
	.rotation_list = pg_rotation_list,
	.principal_put = pg_principal_put,
	.principal_delete = pg_principal_delete,
	.principal_list = pg_principal_list,
	.access_put = pg_access_put,
	.access_delete = pg_access_delete,
	.access_apply = pg_access_apply,
	.access_list = pg_access_list,
	.vault_insert = pg_vault_insert,
	.vault_get = pg_vault_get,
	.vault_list = pg_vault_list,
	.vault_update = pg_vault_update,
	.vault_remove = pg_vault_remove,
	.record_put = pg_record_put,
	.record_get = pg_record_get,
	.record_list = pg_record_list,
	.record_remove = pg_record_remove,
	.settle_take = pg_settle_take,
	.settle = pg_settle,
};
