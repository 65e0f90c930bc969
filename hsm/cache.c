/*
 * hsm/cache.c — the handle cache: session objects of opened blobs, by the
 * bind they opened under (the key version id), bounded LRU, refcounted
 * (an evicted handle is destroyed by its last user).
 *
 * Owns: h->buckets, the LRU and their lock h->cmu; the one unwrap of a
 * blob for use (hsm_key_get: opened against its bind, then under the
 * domain key).
 * Must never: reuse a handle for another bind or another blob's bytes;
 * destroy a handle a caller still holds; take h->mu (the pool's lock is
 * taken before cmu, never after).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "hsm/base.h"
#include "hsm/hsm_int.h"

#define HSM_CACHE_DEFAULT 4096
#define HSM_CACHE_MAX (1024 * 1024)


int
hsm_cache_init(tok_t *h, size_t cache_size)
{
	size_t nb = 16;

	if (cache_size == 0)
		cache_size = HSM_CACHE_DEFAULT;
	if (cache_size > HSM_CACHE_MAX)
		return HSM_ERR_ARGS;
	while (nb < cache_size * 2)
		nb *= 2;
	if ((h->buckets = calloc(nb, sizeof(*h->buckets))) == NULL)
		return HSM_ERR_NO_MEMORY;
	if (pthread_mutex_init(&h->cmu, NULL) != 0) {
		free(h->buckets);
		h->buckets = NULL;
		return HSM_ERR_NO_MEMORY;
	}
	h->nbuckets = nb;
	h->cache_size = cache_size;
	h->cache_ok = 1;
	return 0;
}

static void
ent_free(struct hsm_cache_ent *e)
{
	if (e == NULL)
		return;
	free(e->id);
	free(e);
}

static struct hsm_cache_ent *
cache_lookup(tok_t *h, const char *id)
{
	struct hsm_cache_ent *e;

	e = h->buckets[hash_fnv1a(id, strlen(id)) & (h->nbuckets - 1)];
	for (; e != NULL; e = e->hnext)
		if (strcmp(e->id, id) == 0)
			return e;
	return NULL;
}

static void
lru_unlink(tok_t *h, struct hsm_cache_ent *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		h->lru_head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		h->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void
lru_push(tok_t *h, struct hsm_cache_ent *e)
{
	e->prev = NULL;
	e->next = h->lru_head;
	if (h->lru_head != NULL)
		h->lru_head->prev = e;
	h->lru_head = e;
	if (h->lru_tail == NULL)
		h->lru_tail = e;
}

/* Takes e out of the map and the LRU; with cmu held. */
static void
cache_remove(tok_t *h, struct hsm_cache_ent *e)
{
	struct hsm_cache_ent **pp;

	pp = &h->buckets[hash_fnv1a(e->id, strlen(e->id)) & (h->nbuckets - 1)];
	for (; *pp != NULL; pp = &(*pp)->hnext) {
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	}
	e->hnext = NULL;
	lru_unlink(h, e);
	h->ncached--;
	e->evicted = 1;
}

static void
cache_insert(tok_t *h, struct hsm_cache_ent *e)
{
	size_t b = hash_fnv1a(e->id, strlen(e->id)) & (h->nbuckets - 1);

	e->hnext = h->buckets[b];
	h->buckets[b] = e;
	lru_push(h, e);
	h->ncached++;
}

static void
destroy_ent(tok_t *h, struct hsm_sess *s, struct hsm_cache_ent *e)
{
	if (s != NULL)
		hsm_destroy(h->f, s, &e->obj);
	ent_free(e);
}

void
hsm_cache_clear(tok_t *h)
{
	struct hsm_cache_ent *e, *next;

	pthread_mutex_lock(&h->cmu);
	for (e = h->lru_head; e != NULL; e = next) {
		next = e->next;
		ent_free(e);
	}
	memset(h->buckets, 0, h->nbuckets * sizeof(*h->buckets));
	h->lru_head = h->lru_tail = NULL;
	h->ncached = 0;
	pthread_mutex_unlock(&h->cmu);
}

void
hsm_cache_free(tok_t *h)
{
	if (!h->cache_ok)
		return;
	hsm_cache_clear(h);
	pthread_mutex_destroy(&h->cmu);
	free(h->buckets);
	h->buckets = NULL;
	h->cache_ok = 0;
}

/* Puts e (one reference, its caller's) into the cache, or, when another
 * thread cached the same blob meanwhile, drops e for theirs; evicts past
 * the size. The entry the caller holds. */
static struct hsm_cache_ent *
cache_adopt(tok_t *h, struct hsm_sess *s, struct hsm_cache_ent *e)
{
	struct hsm_cache_ent *old, *victims = NULL, *v;

	pthread_mutex_lock(&h->cmu);
	old = cache_lookup(h, e->id);
	if (old != NULL &&
	    memcmp(old->blob_hash, e->blob_hash, sizeof(e->blob_hash)) == 0) {
		/* another thread unwrapped it meanwhile: use theirs */
		old->refs++;
		lru_unlink(h, old);
		lru_push(h, old);
		pthread_mutex_unlock(&h->cmu);
		destroy_ent(h, s, e);
		return old;
	}
	if (old != NULL) {
		/* same id, another blob: the old handle is stale */
		cache_remove(h, old);
		if (old->refs == 0) {
			old->hnext = victims;
			victims = old;
		}
	}
	cache_insert(h, e);
	while (h->ncached > h->cache_size && h->lru_tail != e) {
		v = h->lru_tail;
		cache_remove(h, v);
		if (v->refs == 0) {
			v->hnext = victims;
			victims = v;
		}
	}
	pthread_mutex_unlock(&h->cmu);
	while (victims != NULL) {
		v = victims;
		victims = v->hnext;
		destroy_ent(h, s, v);
	}
	return e;
}

int
hsm_key_get(tok_t *h, struct hsm_sess *s, const char *cache_id,
    const uint8_t *blob, size_t blob_len, struct hsm_cache_ent **out)
{
	struct hsm_cache_ent *e;
	struct hsm_blob_info bi;
	uint8_t hash[32], wbuf[HSM_WRAP_BUF];
	CK_OBJECT_HANDLE obj;
	int rc;

	*out = NULL;
	if (hsm_bind_check(cache_id) != 0)
		return HSM_ERR_ARGS;
	if ((rc = hsm_blob_parse(blob, blob_len, &bi)) != 0)
		return rc;
	if (bi.version != HSM_BLOB_VERSION)
		return HSM_ERR_INTERNAL; /* an old format: upgrade it first */
	/* An entry is (cache_id, hash of every byte of the blob, tag
	 * included): it was made after the tag verified against exactly
	 * that bind and blob, so a hit needs no second check, and another
	 * bind or another blob is a miss that verifies. */
	SHA256(blob, blob_len, hash);

	pthread_mutex_lock(&h->cmu);
	e = cache_lookup(h, cache_id);
	if (e != NULL && memcmp(e->blob_hash, hash, sizeof(hash)) == 0) {
		e->refs++;
		lru_unlink(h, e);
		lru_push(h, e);
		h->hits++;
		pthread_mutex_unlock(&h->cmu);
		*out = e;
		return 0;
	}
	h->misses++;
	pthread_mutex_unlock(&h->cmu);

	/* before anything is unwrapped, and without touching the entry
	 * another blob may hold under this id */
	if ((rc = hsm_blob_open(h, s, cache_id, &bi, wbuf)) != 0)
		return rc;
	rc = hsm_domain_unwrap(h, s, &bi, 0, &obj);
	OPENSSL_cleanse(wbuf, sizeof(wbuf));
	if (rc != 0)
		return rc;
	if ((e = calloc(1, sizeof(*e))) == NULL ||
	    (e->id = strdup(cache_id)) == NULL) {
		free(e);
		hsm_destroy(h->f, s, &obj);
		return HSM_ERR_NO_MEMORY;
	}
	memcpy(e->blob_hash, hash, sizeof(hash));
	e->obj = obj;
	e->info = bi;
	e->info.hdr = NULL;
	e->info.wrapped = NULL;
	e->info.wrapped_len = 0;
	e->info.tag = NULL;
	e->info.iv = e->info.ct = NULL;
	e->info.ct_len = 0;
	e->refs = 1;
	*out = cache_adopt(h, s, e);
	return 0;
}

void
hsm_key_put(tok_t *h, struct hsm_sess *s, struct hsm_cache_ent *e)
{
	int destroy;

	if (e == NULL)
		return;
	pthread_mutex_lock(&h->cmu);
	destroy = --e->refs == 0 && e->evicted;
	pthread_mutex_unlock(&h->cmu);
	if (destroy)
		destroy_ent(h, s, e);
}

void
hsm_cache_forget(tok_t *h, struct hsm_sess *s, const char *cache_id)
{
	struct hsm_cache_ent *e;
	int destroy = 0;

	pthread_mutex_lock(&h->cmu);
	e = cache_lookup(h, cache_id);
	if (e != NULL) {
		cache_remove(h, e);
		destroy = e->refs == 0;
	}
	pthread_mutex_unlock(&h->cmu);
	if (destroy)
		destroy_ent(h, s, e);
}
