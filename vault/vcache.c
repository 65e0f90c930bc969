/*
 * vault/vcache.c — the version cache (vcache.h says how it stays
 * coherent): direct-mapped slots, a lock per stripe of slots, hit and
 * miss counters for metrics.
 *
 * Must never: hold a store lock or call the store (the store calls it);
 * hand out an entry of another generation.
 */
#include "vault/vcache.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "hsm/base.h"
#include "vault/info.h"

#define VCACHE_SLOTS 8192
#define VCACHE_STRIPES 64
#define VCACHE_KEY_MAX (VLT_NAME_MAX + 1 + VLT_VERSION_LEN + 1)

struct vcache_ent {
	uint64_t gen;             /* 0: empty */
	char key[VCACHE_KEY_MAX]; /* lower-case name, NUL, version or "" */
	size_t key_len;
	struct vlt_key_info k; /* owns tags and spki */
	uint8_t *blob;
	size_t blob_len;
};

struct vcache {
	struct vcache_ent *ent; /* VCACHE_SLOTS */
	pthread_mutex_t lock[VCACHE_STRIPES];
	_Atomic uint64_t gen;
	_Atomic uint64_t hits, misses;
};

int
vcache_new(struct vcache **out)
{
	struct vcache *c;
	size_t i;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return VLT_ERR_NO_MEMORY;
	if ((c->ent = calloc(VCACHE_SLOTS, sizeof(*c->ent))) == NULL) {
		free(c);
		return VLT_ERR_NO_MEMORY;
	}
	for (i = 0; i < VCACHE_STRIPES; i++) {
		if (pthread_mutex_init(&c->lock[i], NULL) != 0) {
			while (i-- > 0)
				pthread_mutex_destroy(&c->lock[i]);
			free(c->ent);
			free(c);
			return VLT_ERR_INTERNAL;
		}
	}
	atomic_init(&c->gen, 1);
	atomic_init(&c->hits, 0);
	atomic_init(&c->misses, 0);
	*out = c;
	return 0;
}

static void
ent_clear(struct vcache_ent *e)
{
	vlt_key_info_clear(&e->k);
	free(e->blob);
	e->blob = NULL;
	e->blob_len = 0;
	e->gen = 0;
}

void
vcache_free(struct vcache *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < VCACHE_SLOTS; i++)
		ent_clear(&c->ent[i]);
	for (i = 0; i < VCACHE_STRIPES; i++)
		pthread_mutex_destroy(&c->lock[i]);
	free(c->ent);
	free(c);
}

void
vcache_invalidate(struct vcache *c)
{
	atomic_fetch_add(&c->gen, 1);
}

uint64_t
vcache_gen(struct vcache *c)
{
	return atomic_load(&c->gen);
}

/* The cache key of (name, version): names compare case-insensitively
 * (ASCII, as the store's names do), versions exactly; NULL is the latest.
 * Returns its length, 0 if it does not fit. */
static size_t
ent_key(const char *name, const char *version, char *key)
{
	size_t nl = strlen(name), vl = version ? strlen(version) : 0, i;

	if (nl == 0 || nl > VLT_NAME_MAX || vl > VLT_VERSION_LEN ||
	    (version != NULL && vl == 0))
		return 0;
	for (i = 0; i < nl; i++)
		key[i] = (char)tolower((unsigned char)name[i]);
	key[nl] = '\0';
	if (vl)
		memcpy(key + nl + 1, version, vl);
	return nl + 1 + vl;
}

/* The copy of a hit into out (and the blob): 1, or 0 when out of memory. */
static int
ent_copy(const struct vcache_ent *e, struct vlt_key_info *out, uint8_t **blob,
    size_t *blob_len)
{
	if (key_info_copy(&e->k, out) != 0)
		return 0;
	if (blob == NULL)
		return 1;
	if (bytes_dup(e->blob, e->blob_len, blob) != 0) {
		vlt_key_info_clear(out);
		return 0;
	}
	*blob_len = e->blob_len;
	return 1;
}

int
vcache_get(struct vcache *c, const char *name, const char *version,
    struct vlt_key_info *out, uint8_t **blob, size_t *blob_len)
{
	char key[VCACHE_KEY_MAX];
	struct vcache_ent *e;
	size_t klen, slot;
	int hit = 0;

	if (c == NULL || (klen = ent_key(name, version, key)) == 0)
		return VCACHE_UNCACHED;
	slot = (size_t)(hash_fnv1a(key, klen) % VCACHE_SLOTS);
	e = &c->ent[slot];
	pthread_mutex_lock(&c->lock[slot % VCACHE_STRIPES]);
	if (e->gen != 0 && e->gen == atomic_load(&c->gen) &&
	    e->key_len == klen && memcmp(e->key, key, klen) == 0)
		hit = ent_copy(e, out, blob, blob_len);
	pthread_mutex_unlock(&c->lock[slot % VCACHE_STRIPES]);
	atomic_fetch_add(hit ? &c->hits : &c->misses, 1);
	return hit;
}

void
vcache_put(struct vcache *c, const char *name, const char *version,
    uint64_t gen, const struct vlt_key_info *k, const uint8_t *blob,
    size_t blob_len)
{
	char key[VCACHE_KEY_MAX];
	struct vcache_ent *e;
	struct vlt_key_info kc;
	uint8_t *bc;
	size_t klen, slot;

	if (c == NULL || (klen = ent_key(name, version, key)) == 0)
		return;
	if (key_info_copy(k, &kc) != 0)
		return;
	if (bytes_dup(blob, blob_len, &bc) != 0) {
		vlt_key_info_clear(&kc);
		return;
	}
	slot = (size_t)(hash_fnv1a(key, klen) % VCACHE_SLOTS);
	e = &c->ent[slot];
	pthread_mutex_lock(&c->lock[slot % VCACHE_STRIPES]);
	ent_clear(e);
	memcpy(e->key, key, klen);
	e->key_len = klen;
	e->k = kc;
	e->blob = bc;
	e->blob_len = blob_len;
	e->gen = gen;
	pthread_mutex_unlock(&c->lock[slot % VCACHE_STRIPES]);
}

void
vcache_stats(struct vcache *c, uint64_t *hits, uint64_t *misses)
{
	*hits = atomic_load(&c->hits);
	*misses = atomic_load(&c->misses);
}
