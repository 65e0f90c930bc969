/*
 * fill.c — a benchmark fixture: fills a vault's store with many keys fast.
 *
 * Copies the latest versions of a few base keys (made through the API, so
 * their blobs are real domain-key-wrapped RSA keys) into COUNT new key
 * names "bk<i>" with fresh random version ids, straight in SQLite, in one
 * transaction. Blobs are bound to their key name and version, so each
 * copy is written unbound (format 1); the bench then removes the vault's
 * blobs-bound marker and restarts the server, which binds them all once
 * (docs/security.md). Key generation time is not what the key-count row
 * measures; import through the API (PUT /keys/{name}) would do the same
 * job more slowly. Prints "name version base_index" per new key.
 * Must never: be linked into the product or used on a real vault.
 *
 * Usage: fill DB COUNT BASE_NAME...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <sqlite3.h>

static int
fail(sqlite3 *db, const char *what)
{
	fprintf(stderr, "fill: %s: %s\n", what, db ? sqlite3_errmsg(db) : "");
	return 1;
}

int
main(int argc, char **argv)
{
	static const char copy_sql[] =
	    "INSERT INTO key_versions (name, version, kty, hsm, key_size, crv,"
	    " key_ops, enabled, nbf, exp, created, updated, tags, spki, blob)"
	    " SELECT ?1, ?2, kty, hsm, key_size, crv, key_ops, enabled, nbf,"
	    " exp, created, updated, tags, spki,"
	    /* the base blob as an unbound one (format 1: version byte 1, no
	     * tag), which the server binds to the new row at its next start */
	    " CASE WHEN substr(blob, 5, 1) = X'02' THEN"
	    " CAST(X'5031315601' || substr(blob, 6, length(blob) - 37)"
	    " AS BLOB) ELSE blob END FROM key_versions"
	    " WHERE seq = (SELECT latest_seq FROM keys WHERE name = ?3)";
	static const char key_sql[] =
	    "INSERT INTO keys (name, latest_seq) VALUES (?1, 0)";
	static const char seq_sql[] =
	    "UPDATE keys SET latest_seq = ?2 WHERE name = ?1";
	sqlite3 *db = NULL;
	sqlite3_stmt *cp = NULL, *ky = NULL, *sq = NULL;
	long count, i;
	int nbase, b;

	if (argc < 4) {
		fprintf(stderr, "usage: fill DB COUNT BASE_NAME...\n");
		return 2;
	}
	count = strtol(argv[2], NULL, 10);
	nbase = argc - 3;
	if (count < 1 || count > 10000000)
		return 2;
	if (sqlite3_open(argv[1], &db) != SQLITE_OK)
		return fail(db, "open");
	sqlite3_busy_timeout(db, 10000);
	if (sqlite3_exec(db, "PRAGMA foreign_keys = ON; BEGIN IMMEDIATE",
	    NULL, NULL, NULL) != SQLITE_OK)
		return fail(db, "begin");
	if (sqlite3_prepare_v2(db, copy_sql, -1, &cp, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, key_sql, -1, &ky, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, seq_sql, -1, &sq, NULL) != SQLITE_OK)
		return fail(db, "prepare");
	for (i = 1; i <= count; i++) {
		unsigned char rnd[16];
		char name[32], ver[33];
		int j;

		b = (int)(i % nbase);
		snprintf(name, sizeof(name), "bk%ld", i);
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			return fail(NULL, "RAND_bytes");
		for (j = 0; j < 16; j++)
			snprintf(ver + 2 * j, 3, "%02x", rnd[j]);
		sqlite3_bind_text(ky, 1, name, -1, SQLITE_STATIC);
		if (sqlite3_step(ky) != SQLITE_DONE)
			return fail(db, "insert key");
		sqlite3_reset(ky);
		sqlite3_bind_text(cp, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(cp, 2, ver, -1, SQLITE_STATIC);
		sqlite3_bind_text(cp, 3, argv[3 + b], -1, SQLITE_STATIC);
		if (sqlite3_step(cp) != SQLITE_DONE ||
		    sqlite3_changes(db) != 1)
			return fail(db, "copy version");
		sqlite3_reset(cp);
		sqlite3_bind_text(sq, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(sq, 2, sqlite3_last_insert_rowid(db));
		if (sqlite3_step(sq) != SQLITE_DONE)
			return fail(db, "set latest");
		sqlite3_reset(sq);
		printf("%s %s %d\n", name, ver, b);
	}
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		return fail(db, "commit");
	sqlite3_finalize(cp);
	sqlite3_finalize(ky);
	sqlite3_finalize(sq);
	sqlite3_close(db);
	return 0;
}
