/*
 * vault/upgrade.c — the one-time upgrades of a store's blobs: binding
 * the blobs of a store made before blobs were bound (format 1 to 2), then
 * sealing them under the token's seal key (to 3). Each is recorded by a
 * file in the data directory so that it never runs twice.
 *
 * Must never: call the token under the store's lock (the token work comes
 * first, the store writes after); bind a format-1 blob once the first
 * upgrade is recorded.
 */
#include "vault/vault_int.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/*
 * The one-time upgrade of a store made before blobs were bound: every
 * format-1 blob, of live and deleted keys, is bound to the row it is in,
 * in one store transaction (the token work first: never under the store
 * lock), then DIR/blobs-bound records that it is done.
 *
 * This is trust on first use: whatever row a format-1 blob sits in at
 * that first open is what it is bound to from then on. It must happen
 * only once: a bound blob with its tag cut off and its version byte set
 * back to 1 is a well-formed format-1 blob (the wrapped bytes are the
 * same), so a store writer could plant key A's blob, so stripped, in key
 * B's row, and an upgrade at every open would bind it to B. Once the
 * file exists, format-1 blobs are never bound here again; they are
 * refused at use (and by backup). An operator who puts back a vault.db
 * from before the upgrade removes the file to run it again. A blob the
 * domain key does not open is left as it is (it never worked).
 */
#define BLOBS_BOUND_FILE "blobs-bound"
#define BLOBS_BOUND_TEXT "2\n"
/*
 * Then the upgrade to format 3 (sealed under the token's private seal
 * key): every format-2 blob, whose MAC verifies against its row, and the
 * format-1 blobs of the first upgrade above, are re-wrapped; DIR/
 * blobs-sealed records that it is done.
 */
#define BLOBS_SEALED_FILE "blobs-sealed"
#define BLOBS_SEALED_TEXT "3\n"
#define UPGRADE_PAGE 256

int
upgrade_blobs(vault_t *v, const char *dir)
{
	char path[PATH_MAX], bind[BIND_MAX];
	struct store_blob *page = NULL, *todo = NULL, *tmp;
	size_t n = 0, i, ntodo = 0, cap = 0, replaced = 0;
	int64_t after = 0;
	int r, bound;

	if ((r = fs_join(path, sizeof(path), dir, BLOBS_SEALED_FILE)) != 0)
		return r;
	if (fs_lookup(path) == 0)
		return 0;
	if ((r = fs_join(path, sizeof(path), dir, BLOBS_BOUND_FILE)) != 0)
		return r;
	bound = fs_lookup(path) == 0;
	do {
		if ((r = store_blob_scan(v->store, after, UPGRADE_PAGE, &page,
		         &n)) != 0)
			goto out;
		for (i = 0; i < n; i++) {
			struct store_blob *b = &page[i];
			unsigned f = blob_format_of(b->blob, b->blob_len);

			after = b->seq;
			if (f == 0 || f == HSM_BLOB_FORMAT_CURRENT ||
			    (bound && f == HSM_BLOB_FORMAT_UNBOUND) ||
			    blob_bind(v, bind, b->name, b->version) != 0)
				continue;
			r = hsm_blob_upgrade(v->hsm, bind, b->blob, b->blob_len,
			    &b->bound, &b->bound_len);
			if (r == HSM_ERR_UNAVAILABLE ||
			    r == HSM_ERR_NO_MEMORY) {
				r = map_hsm(r);
				goto out;
			}
			if (r != 0)
				continue;
			if (ntodo == cap) {
				cap = cap ? cap * 2 : 64;
				if ((tmp = reallocarray(todo, cap,
				         sizeof(*todo))) == NULL) {
					r = VLT_ERR_NO_MEMORY;
					goto out;
				}
				todo = tmp;
			}
			todo[ntodo++] = *b; /* ownership moves */
			b->blob = b->bound = NULL;
		}
		store_blob_free_array(page, n);
		page = NULL;
	} while (n == UPGRADE_PAGE);
	r = 0;
	if (ntodo > 0 &&
	    (r = store_blob_replace(v->store, todo, ntodo, &replaced)) != 0)
		goto out;
	if (!bound &&
	    (r = fs_write_private(path, BLOBS_BOUND_TEXT,
	         sizeof(BLOBS_BOUND_TEXT) - 1)) != 0)
		goto out;
	if ((r = fs_join(path, sizeof(path), dir, BLOBS_SEALED_FILE)) != 0)
		goto out;
	r = fs_write_private(path, BLOBS_SEALED_TEXT,
	    sizeof(BLOBS_SEALED_TEXT) - 1);
out:
	store_blob_free_array(page, n);
	store_blob_free_array(todo, ntodo);
	return r;
}

int
upgrade_mark_done(const char *dir)
{
	char path[PATH_MAX];
	int r;

	if ((r = fs_join(path, sizeof(path), dir, BLOBS_BOUND_FILE)) != 0 ||
	    (r = fs_write_private(path, BLOBS_BOUND_TEXT,
	         sizeof(BLOBS_BOUND_TEXT) - 1)) != 0 ||
	    (r = fs_join(path, sizeof(path), dir, BLOBS_SEALED_FILE)) != 0)
		return r;
	return fs_write_private(path, BLOBS_SEALED_TEXT,
	    sizeof(BLOBS_SEALED_TEXT) - 1);
}
