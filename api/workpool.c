/*
 * workpool.c — a fixed set of threads and one FIFO of intrusive items
 * (api/workpool.h).
 *
 * Owns: the threads, the queue and its lock. A submit wakes one idle
 * thread (pthread_cond_signal: no thundering herd); a thread takes the
 * oldest item, drops the lock and runs it.
 * Must never: run an item under the lock; lose an item at shutdown (the
 * threads drain the queue before they exit).
 */
#include <pthread.h>
#include <stdlib.h>

#include "api/workpool.h"

/* the pool whose thread this is (workpool_submit_next) */
static _Thread_local struct workpool *tl_pool;

struct workpool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct work_item *head, *tail;
	unsigned queued;
	int stopping;
	unsigned n;
	pthread_t *threads;
};

static void *
work_main(void *arg)
{
	struct workpool *p = arg;

	tl_pool = p;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct work_item *it;

		while (p->head == NULL && !p->stopping)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->head == NULL)
			break; /* stopping, and nothing left */
		it = p->head;
		p->head = it->next;
		if (p->head == NULL)
			p->tail = NULL;
		p->queued--;
		pthread_mutex_unlock(&p->mu);
		it->next = NULL;
		it->run(it);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int
workpool_new(unsigned n, size_t stack, struct workpool **out)
{
	struct workpool *p;
	pthread_attr_t attr;
	unsigned i;

	*out = NULL;
	if (n == 0 || (p = calloc(1, sizeof(*p))) == NULL)
		return -1;
	p->threads = calloc(n, sizeof(*p->threads));
	if (p->threads == NULL || pthread_mutex_init(&p->mu, NULL) != 0) {
		free(p->threads);
		free(p);
		return -1;
	}
	if (pthread_cond_init(&p->cv, NULL) != 0 ||
	    pthread_attr_init(&attr) != 0) {
		pthread_mutex_destroy(&p->mu);
		free(p->threads);
		free(p);
		return -1;
	}
	if (stack != 0)
		(void)pthread_attr_setstacksize(&attr, stack);
	for (i = 0; i < n; i++)
		if (pthread_create(&p->threads[i], &attr, work_main, p) != 0)
			break;
	pthread_attr_destroy(&attr);
	p->n = i;
	if (i < n) {
		workpool_free(p);
		return -1;
	}
	*out = p;
	return 0;
}

/* Queues it; next: a thread of p with nothing queued takes it itself
 * when its item is done, so no other thread is woken. */
static void
submit(struct workpool *p, struct work_item *it, int next)
{
	int mine;

	it->next = NULL;
	pthread_mutex_lock(&p->mu);
	mine = next && tl_pool == p && p->head == NULL;
	if (p->tail != NULL)
		p->tail->next = it;
	else
		p->head = it;
	p->tail = it;
	p->queued++;
	if (!mine)
		pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

void
workpool_submit(struct workpool *p, struct work_item *it)
{
	submit(p, it, 0);
}

void
workpool_submit_next(struct workpool *p, struct work_item *it)
{
	submit(p, it, 1);
}

unsigned
workpool_queued(struct workpool *p)
{
	unsigned n;

	pthread_mutex_lock(&p->mu);
	n = p->queued;
	pthread_mutex_unlock(&p->mu);
	return n;
}

void
workpool_free(struct workpool *p)
{
	unsigned i;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (i = 0; i < p->n; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->threads);
	free(p);
}
