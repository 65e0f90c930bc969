/*
 * test_store — the metadata store on its own (no token): a read-only
 * call leaves the version cache as it is (a version listing used to take
 * the write lock and bump the cache's generation, so every listing or
 * backup emptied the hot-path cache), a write still makes the cache
 * forget, and the rotation policy round-trips through the store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vault/store.h"
#include "t.h"
#include "store_fixture.h"

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

int
main(void)
{
	char tmpl[] = "/tmp/p11vault-store-XXXXXX", path[256];
	struct vlt_settings set = { 90, 0 };
	struct vlt_key_info k, *items = NULL;
	struct store_rotation rec, got;
	uint8_t blob[4] = { 9, 9, 9, 9 };
	store_t *s = NULL;
	int64_t last = 0;
	size_t n = 0;
	int more = 0, r;

	if (mkdtemp(tmpl) == NULL)
		return 1;
	snprintf(path, sizeof(path), "%s/vault.db", tmpl);
	r = store_open(path, 1, &s);
	T_CHECK(r == 0 && store_settings_init(s, &set) == 0,
	    "store: a new store with its settings");
	if (r != 0)
		return T_DONE();
	fill_version(&k, "k1", 'a');
	T_CHECK(store_version_insert(s, &k, blob, sizeof(blob)) == 0,
	    "store: insert a version");
	T_CHECK(!read_hits(s, "k1") && read_hits(s, "k1"),
	    "store: the second read of a version is a cache hit");

	T_CHECK(store_version_list(s, "k1", 0, 25, &items, &n, &last, &more) ==
	            0 &&
	        n == 1 && more == 0,
	    "store: list the versions");
	vlt_key_info_free_array(items, n);
	T_CHECK(read_hits(s, "k1"),
	    "store: a version listing leaves the cache warm (read-only)");
	T_CHECK(store_ping(s) == 0 && read_hits(s, "k1"),
	    "store: a health check leaves the cache warm");

	fill_version(&k, "k1", 'b');
	T_CHECK(store_version_insert(s, &k, blob, sizeof(blob)) == 0 &&
	        !read_hits(s, "k1"),
	    "store: a write makes the cache forget");

	memset(&rec, 0, sizeof(rec));
	rec.expiry_secs = 86400;
	snprintf(rec.expiry, sizeof(rec.expiry), "P1D");
	snprintf(rec.actions, sizeof(rec.actions), "1 1 3600 PT1H\n");
	T_CHECK(store_rotation_put(s, "K1", &rec, 2000) == 0 &&
	        store_rotation_get(s, "k1", &got) == 0 &&
	        strcmp(got.actions, rec.actions) == 0 &&
	        strcmp(got.name, "k1") == 0 && got.created == 2000 &&
	        got.expiry_secs == 86400,
	    "store: a rotation policy round-trips");
	T_CHECK(store_rotation_put(s, "nope", &rec, 2000) == VLT_ERR_NOT_FOUND,
	    "store: no rotation policy for a missing key");

	store_close(s);
	snprintf(path, sizeof(path), "rm -rf '%s'", tmpl);
	if (system(path) != 0)
		fprintf(stderr, "could not remove %s\n", tmpl);
	return T_DONE();
}
