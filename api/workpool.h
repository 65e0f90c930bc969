/*
 * api/workpool.h — a fixed set of work threads fed by one FIFO queue
 * (workpool.c): the HTTPS server hands them the requests its I/O threads
 * must not run themselves (token work, synced writes, scrypt).
 *
 * Items are the caller's (intrusive: no allocation per job); an item is
 * run once, by one thread, after workpool_submit and before
 * workpool_free returns.
 * Must never: hold its lock while an item runs; drop a submitted item.
 */
#ifndef P11VAULT_API_WORKPOOL_H
#define P11VAULT_API_WORKPOOL_H

#include <stddef.h>

#include "api/api.h"

struct work_item {
	struct work_item *next; /* the pool's */
	void (*run)(struct work_item *it);
};

struct workpool;

/* Starts n threads with stack bytes each: 0, or -1 (nothing started). */
int workpool_new(unsigned n, size_t stack, struct workpool **out) API_WUR;
/* Queues it (it->run set by the caller); one idle thread is woken. */
void workpool_submit(struct workpool *p, struct work_item *it);
/* The same, from a thread that may be one of p's, about to finish its
 * item: if it is and nothing else is queued, no thread is woken, it
 * takes it next itself (elsewhere: as workpool_submit). */
void workpool_submit_next(struct workpool *p, struct work_item *it);
/* Items queued and not yet taken by a thread. */
unsigned workpool_queued(struct workpool *p);
/* Runs what is queued, then stops and joins every thread; frees p. */
void workpool_free(struct workpool *p);

#endif
