/*
 * test_store — the metadata store's contract (store.h), on each backend:
 * SQLite (a file) and PostgreSQL (a throwaway server this test starts in
 * a temporary directory, tests/tools/pgtmp.sh; skipped with a message
 * when PostgreSQL is not installed). A read-only call leaves the version
 * cache as it is, a write makes it forget; conflicts, not-found and
 * soft-delete codes; case-insensitive names; paging; purge and purge
 * protection; principals, access policies, rotation policies, the
 * registry of vaults, restore and the blob upgrade. PostgreSQL only:
 * schemas keep vaults apart, a stopped server answers
 * VLT_ERR_UNAVAILABLE and a restarted one is used again without reopening,
 * a bad or unreachable address fails without showing its password.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgtmp.h"
#include "vault/store.h"
#include "t.h"
#include "store_fixture.h"

#define DAY 86400

static char label[32];

static void
check(int cond, const char *what)
{
	char name[200];

	snprintf(name, sizeof(name), "store(%s): %s", label, what);
	T_CHECK(cond, name);
}

/* One cached read of name's latest version: 1 if it was a cache hit. */
static int
read_hits(store_t *s, const char *name)
{
	struct vlt_key_info k;
	uint64_t h0, m0, h1, m1;
	int r;

	store_vcache_stats(s, &h0, &m0);
	r = store_version_get(s, name, NULL, 0, &k, NULL, NULL);
	vlt_key_info_clear(&k);
	store_vcache_stats(s, &h1, &m1);
	return r == 0 && h1 == h0 + 1 && m1 == m0;
}

static int
ops_ok(enum vlt_kty kty, unsigned ops)
{
	(void)kty;
	return ops & VLT_OP_ENCRYPT ? VLT_ERR_BAD_PARAM : 0;
}

static int
insert(store_t *s, const char *name, char c)
{
	static const uint8_t blob[4] = { 9, 9, 9, 9 };
	struct vlt_key_info k;

	fill_version(&k, name, c);
	return store_version_insert(s, &k, blob, sizeof(blob));
}

/* The version cache, reads and writes of versions. */
static void
versions(store_t *s)
{
	struct vlt_key_info k, *items = NULL;
	struct store_update u;
	uint8_t *blob = NULL;
	size_t n = 0, bl = 0;
	int64_t last = 0;
	int more = 0;

	check(insert(s, "k1", 'a') == 0, "insert a version");
	check(!read_hits(s, "k1") && read_hits(s, "k1"),
	    "the second read of a version is a cache hit");
	check(store_version_list(s, "k1", 0, 25, &items, &n, &last, &more) ==
	            0 &&
	        n == 1 && more == 0,
	    "list the versions");
	vlt_key_info_free_array(items, n);
	check(read_hits(s, "k1"),
	    "a version listing leaves the cache warm (read-only)");
	check(store_ping(s) == 0 && read_hits(s, "k1"),
	    "a health check leaves the cache warm");
	check(insert(s, "K1", 'b') == 0 && !read_hits(s, "k1"),
	    "a write makes the cache forget");
	check(store_version_get(s, "K1", NULL, 0, &k, &blob, &bl) == 0 &&
	        strcmp(k.name, "k1") == 0 && k.version[0] == 'b' && bl == 4 &&
	        blob[0] == 9 && k.spki_len == 8,
	    "names are case-insensitive, kept as first stored; the blob "
	    "round-trips");
	vlt_key_info_clear(&k);
	free(blob);
	check(insert(s, "k2", 'a') == VLT_ERR_CONFLICT,
	    "a version id in use: VLT_ERR_CONFLICT");
	check(store_version_get(s, "nope", NULL, 0, &k, NULL, NULL) ==
	        VLT_ERR_NOT_FOUND,
	    "a missing key: VLT_ERR_NOT_FOUND");
	memset(&u, 0, sizeof(u));
	u.has_enabled = 1;
	u.tags = "{\"a\":\"b\"}";
	u.updated = 1234;
	check(store_version_update(s, "k1", NULL, &u, ops_ok, &k) == 0 &&
	        k.attrs.enabled == 0 && k.attrs.updated == 1234 &&
	        k.tags != NULL && strcmp(k.tags, u.tags) == 0,
	    "update a version's attributes and tags");
	vlt_key_info_clear(&k);
	u.has_key_ops = 1;
	u.key_ops = VLT_OP_ENCRYPT;
	check(store_version_update(s, "k1", NULL, &u, ops_ok, &k) ==
	        VLT_ERR_BAD_PARAM,
	    "key_ops refused by check_ops: VLT_ERR_BAD_PARAM");
	vlt_key_info_clear(&k);
}

/* Listing pages, soft delete, recovery, purge, purge protection. */
static void
lifecycle(store_t *s)
{
	struct vlt_key_info k, *items = NULL;
	char(*ids)[VLT_VERSION_LEN + 1] = NULL;
	char(*due)[VLT_NAME_MAX + 1] = NULL;
	size_t n = 0;
	int more = 0, r;

	check(insert(s, "k2", 'c') == 0 && insert(s, "k3", 'd') == 0,
	    "two more keys");
	check(store_key_list(s, 0, NULL, 2, &items, &n, &more) == 0 && n == 2 &&
	        more == 1 && strcmp(items[1].name, "k2") == 0,
	    "a first page of keys, by name, with more");
	vlt_key_info_free_array(items, n);
	check(store_key_list(s, 0, "K2", 2, &items, &n, &more) == 0 && n == 1 &&
	        more == 0 && strcmp(items[0].name, "k3") == 0,
	    "the next page after a name");
	vlt_key_info_free_array(items, n);
	check(store_key_delete(s, "K3", 5000, &k) == 0 &&
	        k.deleted_date == 5000 &&
	        k.scheduled_purge_date == 5000 + 90 * DAY,
	    "soft delete: the dates from the retention");
	vlt_key_info_clear(&k);
	check(store_key_delete(s, "k3", 5000, &k) == VLT_ERR_NOT_FOUND,
	    "deleting a deleted key: VLT_ERR_NOT_FOUND");
	check(insert(s, "k3", 'e') == VLT_ERR_DELETED_RECOVERABLE,
	    "a new version of a deleted key: VLT_ERR_DELETED_RECOVERABLE");
	r = store_version_get(s, "k3", NULL, 1, &k, NULL, NULL);
	vlt_key_info_clear(&k);
	check(r == 0 &&
	        store_version_get(s, "k3", NULL, 0, &k, NULL, NULL) ==
	            VLT_ERR_NOT_FOUND,
	    "a deleted key is read as deleted only");
	vlt_key_info_clear(&k);
	check(store_key_recover(s, "k3", &k) == 0 && k.deleted_date == 0,
	    "recover");
	vlt_key_info_clear(&k);
	check(store_key_delete(s, "k3", 5000, &k) == 0 &&
	        store_key_purge(s, "k3", 0, &ids, &n) == 0 && n == 1 &&
	        ids[0][0] == 'd',
	    "purge: the purged version ids");
	free(ids);
	vlt_key_info_clear(&k);
	check(store_version_get(s, "k3", NULL, 1, &k, NULL, NULL) ==
	        VLT_ERR_NOT_FOUND,
	    "a purged key is gone");
	check(store_settings_update(s, -1, 1) == 0 &&
	        store_settings_update(s, -1, 0) == VLT_ERR_BAD_PARAM &&
	        store_settings_update(s, 3, -1) == VLT_ERR_BAD_PARAM,
	    "purge protection cannot be turned off; retention checked");
	check(store_key_delete(s, "k2", 6000, &k) == 0 &&
	        store_key_purge(s, "k2", 0, &ids, &n) ==
	            VLT_ERR_PURGE_PROTECTED,
	    "purge under purge protection: VLT_ERR_PURGE_PROTECTED");
	vlt_key_info_clear(&k);
	check(store_purge_due_list(s, 6000 + 91 * DAY, &due, &n) == 0 &&
	        n == 1 && strcmp(due[0], "k2") == 0,
	    "the keys due for purge");
	free(due);
	check(store_key_purge(s, "k2", 6000 + 10 * DAY, &ids, &n) ==
	            VLT_ERR_NOT_FOUND &&
	        store_key_purge(s, "k2", 6000 + 91 * DAY, &ids, &n) == 0,
	    "a due purge, purge protection notwithstanding");
	free(ids);
}

/* Principals, access policies, rotation policies. */
static void
identities(store_t *s)
{
	struct vlt_principal p, *ps = NULL;
	struct vlt_access_policy a[2], *as = NULL;
	struct store_rotation rec, got, *rs = NULL;
	size_t n = 0;

	memset(&p, 0, sizeof(p));
	snprintf(p.object_id, sizeof(p.object_id), "obj-1");
	snprintf(p.client_id, sizeof(p.client_id), "cli-1");
	snprintf(p.display_name, sizeof(p.display_name), "one");
	p.secret_hash = "hash";
	p.created = 7;
	check(store_principal_put(s, &p) == 0, "a principal");
	snprintf(p.object_id, sizeof(p.object_id), "obj-2");
	check(store_principal_put(s, &p) == VLT_ERR_CONFLICT,
	    "a client id in use: VLT_ERR_CONFLICT");
	check(store_principal_list(s, &ps, &n) == 0 && n == 1 &&
	        strcmp(ps[0].secret_hash, "hash") == 0,
	    "list the principals");
	vlt_principal_free_array(ps, n);
	memset(a, 0, sizeof(a));
	snprintf(a[0].object_id, sizeof(a[0].object_id), "obj-1");
	snprintf(a[0].tenant_id, sizeof(a[0].tenant_id), "t");
	a[0].perms = 5;
	a[1] = a[0];
	snprintf(a[1].object_id, sizeof(a[1].object_id), "obj-9");
	check(store_access_put(s, &a[0]) == 0 &&
	        store_access_put(s, &a[1]) == 0,
	    "access policies");
	a[1].perms = 0;
	a[0].perms = 6;
	check(store_access_apply(s, a, 2) == 0 &&
	        store_access_list(s, &as, &n) == 0 && n == 1 &&
	        as[0].perms == 6,
	    "apply: one changed, one removed");
	free(as);
	check(store_principal_delete(s, "obj-1") == 0 &&
	        store_access_list(s, &as, &n) == 0 && n == 0 &&
	        store_principal_delete(s, "obj-1") == VLT_ERR_NOT_FOUND,
	    "deleting a principal takes its policy");
	free(as);
	memset(&rec, 0, sizeof(rec));
	rec.expiry_secs = 86400;
	snprintf(rec.expiry, sizeof(rec.expiry), "P1D");
	snprintf(rec.actions, sizeof(rec.actions), "1 1 3600 PT1H\n");
	check(store_rotation_put(s, "K1", &rec, 2000) == 0 &&
	        store_rotation_get(s, "k1", &got) == 0 &&
	        strcmp(got.actions, rec.actions) == 0 &&
	        strcmp(got.name, "k1") == 0 && got.created == 2000 &&
	        got.expiry_secs == 86400,
	    "a rotation policy round-trips");
	check(store_rotation_put(s, "k1", &rec, 3000) == 0 &&
	        store_rotation_list(s, &rs, &n) == 0 && n == 1 &&
	        rs[0].created == 2000 && rs[0].updated == 3000,
	    "a rotation policy replaced keeps its creation");
	free(rs);
	check(store_rotation_put(s, "nope", &rec, 2000) == VLT_ERR_NOT_FOUND,
	    "no rotation policy for a missing key");
}

/* The registry of vaults, restore, the blob upgrade. */
static void
registry(store_t *s)
{
	static uint8_t b1[3] = { 1, 2, 3 }, b2[3] = { 4, 5, 6 };
	uint8_t *blobs[2] = { b1, b2 }, nb[2] = { 7, 7 };
	size_t lens[2] = { 3, 3 }, n = 0, done = 0;
	struct vlt_key_info ks[2];
	struct vlt_vault x, got, *xs = NULL;
	struct store_blob *bs = NULL;

	memset(&x, 0, sizeof(x));
	snprintf(x.name, sizeof(x.name), "alpha");
	snprintf(x.id, sizeof(x.id), "11111111-2222-3333-4444-555555555555");
	x.created = x.updated = 10;
	x.settings.retention_days = 30;
	x.meta = "{}";
	check(store_vault_insert(s, &x) == 0, "a vault in the registry");
	snprintf(x.id, sizeof(x.id), "21111111-2222-3333-4444-555555555555");
	snprintf(x.name, sizeof(x.name), "ALPHA");
	check(store_vault_insert(s, &x) == VLT_ERR_CONFLICT,
	    "a vault name in use (any case): VLT_ERR_CONFLICT");
	snprintf(x.id, sizeof(x.id), "11111111-2222-3333-4444-555555555555");
	x.deleted_date = 20;
	check(store_vault_update(s, &x) == 0 &&
	        store_vault_get(s, "Alpha", &got) == 0 &&
	        got.deleted_date == 20 && strcmp(got.meta, "{}") == 0,
	    "update and read a vault");
	vlt_vault_clear(&got);
	check(store_vault_list(s, 1, &xs, &n) == 0 && n == 1, "deleted vaults");
	vlt_vault_free_array(xs, n);
	check(store_vault_list(s, 0, &xs, &n) == 0 && n == 0, "live vaults");
	vlt_vault_free_array(xs, n);
	check(store_vault_remove(s, "alpha") == 0 &&
	        store_vault_get(s, "alpha", &got) == VLT_ERR_NOT_FOUND,
	    "remove a vault");

	fill_version(&ks[0], "rest", 'r');
	fill_version(&ks[1], "rest", 's');
	check(store_key_restore(s, ks, blobs, lens, 2) == 0 &&
	        store_key_restore(s, ks, blobs, lens, 2) == VLT_ERR_CONFLICT,
	    "restore, and restore over it: VLT_ERR_CONFLICT");
	check(store_blob_scan(s, 0, 100, &bs, &n) == 0 && n == 4,
	    "scan every version's blob");
	if (n == 4) {
		bs[3].bound = malloc(2);
		memcpy(bs[3].bound, nb, 2);
		bs[3].bound_len = 2;
		check(store_blob_replace(s, &bs[3], 1, &done) == 0 &&
		        done == 1 &&
		        store_blob_replace(s, &bs[3], 1, &done) == 0 &&
		        done == 0,
		    "replace a blob once (not over a changed row)");
	}
	store_blob_free_array(bs, n);
}

/* The management API's records: put (create-only and upsert), get by a
 * key in any case, list by scope or all, remove. */
static void
records(store_t *s)
{
	struct vlt_record x, got, *xs = NULL;
	size_t n = 0;

	memset(&x, 0, sizeof(x));
	snprintf(x.kind, sizeof(x.kind), "identity");
	snprintf(x.scope, sizeof(x.scope), "rg-one");
	snprintf(x.name, sizeof(x.name), "disks");
	snprintf(x.ref, sizeof(x.ref), "obj-1");
	x.created = x.updated = 10;
	x.meta = "{\"location\":\"local\"}";
	check(store_record_put(s, &x, 1) == 0 &&
	        store_record_put(s, &x, 1) == VLT_ERR_CONFLICT,
	    "a record, and the same key again (create only): CONFLICT");
	snprintf(x.ref, sizeof(x.ref), "obj-2");
	x.updated = 20;
	check(store_record_put(s, &x, 0) == 0 &&
	        store_record_get(s, "identity", "RG-ONE", "Disks", &got) == 0 &&
	        strcmp(got.ref, "obj-2") == 0 && got.created == 10 &&
	        got.updated == 20 && got.meta != NULL &&
	        strstr(got.meta, "local") != NULL,
	    "an upsert keeps created; get in any case");
	vlt_record_clear(&got);
	snprintf(x.scope, sizeof(x.scope), "rg-two");
	check(store_record_put(s, &x, 1) == 0 &&
	        store_record_list(s, "identity", "rg-one", &xs, &n) == 0 &&
	        n == 1,
	    "list one scope");
	vlt_record_free_array(xs, n);
	check(store_record_list(s, "identity", NULL, &xs, &n) == 0 && n == 2 &&
	        strcmp(xs[0].scope, "rg-one") == 0,
	    "list every scope, in order");
	vlt_record_free_array(xs, n);
	check(store_record_remove(s, "identity", "rg-one", "disks") == 0 &&
	        store_record_remove(s, "identity", "rg-one", "disks") ==
	            VLT_ERR_NOT_FOUND &&
	        store_record_get(s, "identity", "rg-one", "disks", &got) ==
	            VLT_ERR_NOT_FOUND,
	    "remove a record, then it is gone");
}

/* The whole contract on a new store at addr, and reopening it. */
static void
contract(const char *addr)
{
	struct vlt_settings set = { 90, 0 }, got;
	store_t *s = NULL, *s2 = NULL;
	int r;

	r = store_open(addr, 1, &s);
	check(r == 0 && store_settings_init(s, &set) == 0,
	    "a new store with its settings");
	if (r != 0)
		return;
	check(store_open(addr, 1, &s2) == VLT_ERR_EXISTS,
	    "creating it again: VLT_ERR_EXISTS");
	versions(s);
	lifecycle(s);
	identities(s);
	registry(s);
	records(s);
	store_close(s);
	check(store_open(addr, 0, &s) == 0 &&
	        store_settings_get(s, &got) == 0 && got.purge_protection == 1 &&
	        read_hits(s, "k1") == 0,
	    "reopened: everything is there");
	store_close(s);
}

/* ---- PostgreSQL --------------------------------------------------------- */

/* Two schemas of one database are two stores. */
static void
pg_schemas(const char *db)
{
	struct vlt_settings set = { 90, 0 };
	struct vlt_key_info k;
	char a1[700], a2[700], why[256];
	store_t *s1 = NULL, *s2 = NULL;

	snprintf(a1, sizeof(a1), "%s#v_one", db);
	snprintf(a2, sizeof(a2), "%s#v_two", db);
	check(store_open(a1, 1, &s1) == 0 && store_open(a2, 1, &s2) == 0 &&
	        store_settings_init(s1, &set) == 0 &&
	        store_settings_init(s2, &set) == 0 &&
	        insert(s1, "k", 'z') == 0 &&
	        store_version_get(s2, "k", NULL, 0, &k, NULL, NULL) ==
	            VLT_ERR_NOT_FOUND &&
	        insert(s2, "k", 'z') == 0,
	    "two schemas keep two vaults apart");
	vlt_key_info_clear(&k);
	store_close(s1);
	store_close(s2);
	check(store_remove(a1, why, sizeof(why)) == 0 &&
	        store_open(a1, 0, &s1) == VLT_ERR_NOT_FOUND,
	    "a removed store's schema is gone");
	check(store_open("host=/tmp port=1#Bad-Name", 0, &s1) ==
	        VLT_ERR_BAD_PARAM,
	    "a schema name out of [a-z0-9_] is refused");
}

/* The server stopped and started again under an open store. */
static void
pg_outage(const char *db, const char *dir)
{
	struct vlt_settings set = { 90, 0 };
	struct vlt_key_info k;
	char addr[700], cinfo[600];
	store_t *s = NULL;

	snprintf(addr, sizeof(addr), "%s#v_outage", db);
	if (store_open(addr, 1, &s) != 0 || store_settings_init(s, &set) != 0) {
		check(0, "a store for the outage");
		return;
	}
	check(insert(s, "k", 'o') == 0, "a key before the outage");
	check(pgtmp("stop", dir, NULL, 0) == 0, "the server stopped");
	check(store_ping(s) == VLT_ERR_UNAVAILABLE &&
	        store_version_get(s, "k", NULL, 1, &k, NULL, NULL) ==
	            VLT_ERR_UNAVAILABLE &&
	        insert(s, "k", 'p') == VLT_ERR_UNAVAILABLE,
	    "server down: reads and writes answer VLT_ERR_UNAVAILABLE");
	check(pgtmp("start", dir, cinfo, sizeof(cinfo)) == 0,
	    "the server started again");
	check(store_ping(s) == 0 && insert(s, "k", 'p') == 0 &&
	        store_version_get(s, "k", NULL, 0, &k, NULL, NULL) == 0 &&
	        k.version[0] == 'p',
	    "server back: the same store connects again by itself");
	vlt_key_info_clear(&k);
	store_close(s);
}

/* Bad and unreachable addresses fail clearly, never showing the
 * password. */
static void
pg_bad(void)
{
	char why[256];
	store_t *s = NULL;
	int r;

	r = store_open_why(
	    "host=/nonexistent port=1 user=u password=Sekr1tPw "
	    "dbname=d#p11vault",
	    0, &s, why, sizeof(why));
	check(r == VLT_ERR_UNAVAILABLE && why[0] != '\0' &&
	        strstr(why, "Sekr1tPw") == NULL,
	    "an unreachable server: VLT_ERR_UNAVAILABLE, why without the "
	    "password");
	r = store_open_why("postgresql://u:Sekr1tPw@[::1/db#p11vault", 0, &s,
	    why, sizeof(why));
	check(r == VLT_ERR_BAD_PARAM && strstr(why, "Sekr1tPw") == NULL,
	    "a malformed address: VLT_ERR_BAD_PARAM, not quoted");
	r = store_open_why("host=/tmp pasword=Sekr1tPw#p11vault", 0, &s, why,
	    sizeof(why));
	check(r == VLT_ERR_BAD_PARAM && strstr(why, "Sekr1tPw") == NULL,
	    "an unknown keyword: VLT_ERR_BAD_PARAM, not quoted");
}

static void
pg_suite(void)
{
	char tmpl[] = "/tmp/p11vault-pg-XXXXXX", db[600], addr[700];
	int r;

	snprintf(label, sizeof(label), "postgresql");
	if (access(PGTMP, X_OK) != 0 || mkdtemp(tmpl) == NULL) {
		printf("ok - # skip store(postgresql): no %s\n", PGTMP);
		return;
	}
	r = pgtmp("start", tmpl, db, sizeof(db));
	if (r == 77) {
		printf(
		    "ok - # skip store(postgresql): PostgreSQL is not "
		    "installed (/usr/lib/postgresql/15/bin)\n");
		rmdir(tmpl);
		return;
	}
	check(r == 0 && db[0] != '\0', "a throwaway server");
	if (r == 0) {
		snprintf(addr, sizeof(addr), "%s#p11vault", db);
		contract(addr);
		pg_schemas(db);
		pg_outage(db, tmpl);
		pg_bad();
	}
	(void)pgtmp("destroy", tmpl, NULL, 0);
}

int
main(void)
{
	char tmpl[] = "/tmp/p11vault-store-XXXXXX", path[256];
	store_t *s = NULL;

	if (mkdtemp(tmpl) == NULL)
		return 1;
	snprintf(label, sizeof(label), "sqlite");
	snprintf(path, sizeof(path), "%s/vault.db", tmpl);
	check(store_open(path, 0, &s) != 0, "opening a missing store fails");
	contract(path);
	snprintf(path, sizeof(path), "rm -rf '%s'", tmpl);
	if (system(path) != 0)
		fprintf(stderr, "could not remove %s\n", tmpl);
	pg_suite();
	return T_DONE();
}
