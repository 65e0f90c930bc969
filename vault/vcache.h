/*
 * vault/vcache.h — private to vault/: the version cache, an in-memory
 * copy of recently read live key versions (with their blobs), so that
 * the hot path of a crypto operation reads no store.
 *
 * Coherence is a generation counter: the store bumps it (vcache_invalidate)
 * under its lock before every write, an entry is valid only for the
 * generation it was read in, and a miss reads the row and the generation
 * together under the store's lock. So once a write has begun no reader
 * sees an entry from before it, and the first reader after it reads the
 * committed row. Reads never bump it.
 */
#ifndef P11VAULT_VAULT_VCACHE_H
#define P11VAULT_VAULT_VCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "vault/vault.h"

struct vcache;

int vcache_new(struct vcache **out) VLT_WUR;
void vcache_free(struct vcache *c);
/* Every entry is stale from here on. */
void vcache_invalidate(struct vcache *c);
uint64_t vcache_gen(struct vcache *c);
/* (name, version NULL: the latest). 1 and a copy in *out (and *blob when
 * blob is not NULL) on a hit of the current generation; 0 on a miss;
 * VCACHE_UNCACHED when the pair cannot be cached. Counts hits and
 * misses. */
#define VCACHE_UNCACHED (-1)
int vcache_get(struct vcache *c, const char *name, const char *version,
    struct vlt_key_info *out, uint8_t **blob, size_t *blob_len) VLT_WUR;
/* Keeps a copy of a version read in generation gen (best effort). */
void vcache_put(struct vcache *c, const char *name, const char *version,
    uint64_t gen, const struct vlt_key_info *k, const uint8_t *blob,
    size_t blob_len);
void vcache_stats(struct vcache *c, uint64_t *hits, uint64_t *misses);

#endif
