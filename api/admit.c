/*
 * admit.c — the admission gate in front of token work, with fair shares
 * per identity (api/admit.h).
 *
 * Owns: the slots (default: the token process's sessions), the queue, the
 * service-time estimates (an EWMA per class of the time a slot is held)
 * and the rule that bounds the queue: a request waits only if the work
 * queued ahead of it, divided by the slots, fits admission_target_ms, or
 * its own service time when that is longer (admission_queue= fixes the
 * bound instead). Shares: every identity
 * with requests in the gate has an entry; a freed slot goes to the next
 * identity that has a waiter, in turn (round robin), not to the oldest
 * waiter; when the queue is full, the newest waiter of the identity
 * using the most of the gate is refused to make room for a request of an
 * identity using at least two fewer, so a quiet identity is admitted
 * while a noisy one is throttled. A waiter is a thread blocked on its
 * own condition variable (api_admit_enter) or a parked request holding
 * no thread (api_admit_enter_park): granted or refused, its ready is
 * called once, outside the lock, by the thread that decided it (for a
 * grant, the one that freed the slot); a parked waiter past the token's
 * deadline is answered by the reaper thread when it is due.
 * Must never: hold its lock across token work or a ready; let a waiter
 * wait past the token's deadline (it is answered 503, as the session
 * pool does).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "api/admit.h"
#include "hsm/base.h"

#define ADMIT_IDS_MAX 256 /* identities in the gate at once */
/* a waiter waits no longer than the token's deadline, as a caller waiting
 * for a token session does (P11VAULT_HSM_DEADLINE_MS), then gets 503 */
#define ADMIT_WAIT_DEFAULT_MS 5000
#define ADMIT_TARGET_DEFAULT 25   /* ms */
#define ADMIT_SVC_INITIAL_US 2000 /* before the first measurement */
#define ADMIT_EWMA_SHIFT 3        /* weight of a new sample: 1/8 */

enum wait_state { W_QUEUED, W_GRANTED, W_REFUSED, W_TIMED_OUT };

/* A queued request: a thread waiting on cv (on its stack), or a parked
 * request (park set, malloc'd, no thread: its ready is called). */
struct admit_waiter {
	struct admit_waiter *next;
	pthread_cond_t cv;
	enum wait_state state;
	enum admit_reason why;
	uint64_t cost_us;
	struct api_park *park;
	struct timespec deadline; /* parked: when it is out of time */
};

/* An identity with requests in the gate (running or queued). */
struct admit_id {
	char key[ADMIT_KEY_MAX];
	unsigned running, queued;
	struct admit_waiter *head, *tail;
};

struct api_admit {
	int on;
	unsigned slots;
	int queue_fixed; /* admission_queue= is set */
	unsigned queue_max;
	uint64_t target_us;
	unsigned wait_ms;
	pthread_mutex_t mu;
	pthread_condattr_t cattr;
	unsigned running, queued;
	uint64_t queued_us;
	uint64_t svc_us[ADMIT_CLASSES];
	struct admit_id ids[ADMIT_IDS_MAX]; /* ids[0..nids) in use */
	size_t nids, rr;
	atomic_uint_fast64_t admitted;
	atomic_uint_fast64_t refused[ADMIT_REASONS];
	struct admit_limits *limits;
	/* the gate's Retry-After (retry_adjust's window, under mu) */
	atomic_uint retry_ms;
	/* parked waiters' deadlines: a thread of its own (started with the
	 * first park) wakes at the earliest */
	unsigned parked;
	pthread_cond_t reap_cv;
	pthread_t reaper;
	int reaper_on, stopping;
	struct timespec win_t0;
	uint64_t win_admitted, win_refused; /* the counters at win_t0 */
};

static const char *const reason_text[ADMIT_REASONS] = {
	"VaultCapacityReached",
	"IdentityShareExceeded",
	"VaultRequestTypeLimitReached",
	"IdentityRequestTypeLimitReached",
};

static const char *const reason_label[ADMIT_REASONS] = {
	"capacity",
	"fair_share",
	"vault_limit",
	"identity_limit",
};

static uint64_t
elapsed_us(const struct timespec *t0)
{
	struct timespec t1;
	int64_t us;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	us = (int64_t)(t1.tv_sec - t0->tv_sec) * 1000000 +
	    (t1.tv_nsec - t0->tv_nsec) / 1000;
	return us > 0 ? (uint64_t)us : 0;
}

/* ---- config ---- */

/* A number key of the config, or def when unset (config.c checked it). */
static unsigned
conf_num(struct api_ctx *c, const char *key, unsigned def, int *set)
{
	const char *s = vault_config(c->vault, key);
	uint64_t n;

	if (set != NULL)
		*set = 0;
	if (s == NULL || parse_u64(s, UINT32_MAX, &n) != 0)
		return def;
	if (set != NULL)
		*set = 1;
	return (unsigned)n;
}

static unsigned retry_floor(const struct api_admit *a);

static void
gate_config(struct api_ctx *c, struct api_admit *a)
{
	const char *on = vault_config(c->vault, "admission");
	size_t sessions = vault_token_sessions(c->vault);
	unsigned def_slots = sessions > 0 && sessions < 4096 ?
	    (unsigned)sessions :
	    4;
	const char *dl;
	uint64_t n;
	size_t i;

	a->on = on == NULL || strcmp(on, "false") != 0;
	a->slots = conf_num(c, "admission_slots", def_slots, NULL);
	if (a->slots == 0)
		a->slots = 1;
	a->queue_max = conf_num(c, "admission_queue", 0, &a->queue_fixed);
	a->target_us = (uint64_t)conf_num(c, "admission_target_ms",
	                   ADMIT_TARGET_DEFAULT, NULL) *
	    1000;
	for (i = 0; i < ADMIT_CLASSES; i++)
		a->svc_us[i] = ADMIT_SVC_INITIAL_US;
	a->wait_ms = ADMIT_WAIT_DEFAULT_MS;
	atomic_store(&a->retry_ms, retry_floor(a));
	clock_gettime(CLOCK_MONOTONIC, &a->win_t0);
	/* serve checked it at start (hsm_env_check) */
	if ((dl = getenv("P11VAULT_HSM_DEADLINE_MS")) != NULL &&
	    parse_u64(dl, 600000, &n) == 0 && n > 0)
		a->wait_ms = (unsigned)n;
}

int
api_admit_open(struct api_ctx *c, char *err, size_t err_len)
{
	struct api_admit *a;
	int rc;

	c->admit = NULL;
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		err_set(err, err_len, "out of memory");
		return VLT_ERR_NO_MEMORY;
	}
	gate_config(c, a);
	if ((rc = admit_limits_open(c, &a->limits, err, err_len)) != 0) {
		free(a);
		return rc;
	}
	if (pthread_mutex_init(&a->mu, NULL) != 0 ||
	    pthread_condattr_init(&a->cattr) != 0 ||
	    pthread_condattr_setclock(&a->cattr, CLOCK_MONOTONIC) != 0) {
		admit_limits_close(a->limits);
		free(a);
		err_set(err, err_len, "cannot set up admission control");
		return VLT_ERR_NO_MEMORY;
	}
	if (pthread_cond_init(&a->reap_cv, &a->cattr) != 0) {
		pthread_condattr_destroy(&a->cattr);
		pthread_mutex_destroy(&a->mu);
		admit_limits_close(a->limits);
		free(a);
		err_set(err, err_len, "cannot set up admission control");
		return VLT_ERR_NO_MEMORY;
	}
	c->admit = a;
	return 0;
}

void
api_admit_close(struct api_ctx *c)
{
	struct api_admit *a = c->admit;

	if (a == NULL)
		return;
	c->admit = NULL;
	pthread_mutex_lock(&a->mu);
	a->stopping = 1;
	pthread_cond_signal(&a->reap_cv);
	pthread_mutex_unlock(&a->mu);
	if (a->reaper_on)
		pthread_join(a->reaper, NULL);
	pthread_cond_destroy(&a->reap_cv);
	admit_limits_close(a->limits);
	pthread_condattr_destroy(&a->cattr);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

/* ---- identities in the gate (under mu) ---- */

/* The share key of q's caller: the vault's name and its object id, so
 * that an identity's share in one vault is not another vault's. */
static int
share_key(const struct api_req *q, char key[ADMIT_KEY_MAX])
{
	return str_fmt(key, ADMIT_KEY_MAX, "%s/%s",
	    q->vault_scope != NULL ? q->vault_scope : "",
	    q->caller.oid[0] != '\0' ? q->caller.oid : "-");
}

/* The rate limits' key: the object id (rate_limit_identities names
 * identities by it; rate_limit_vault is the appliance's, for now). */
static int
limit_key(const struct api_req *q, char key[ADMIT_KEY_MAX])
{
	return str_fmt(key, ADMIT_KEY_MAX, "%s",
	    q->caller.oid[0] != '\0' ? q->caller.oid : "-");
}

static size_t
id_find(struct api_admit *a, const char *key)
{
	size_t i;

	for (i = 0; i < a->nids; i++)
		if (strcmp(a->ids[i].key, key) == 0)
			return i;
	return SIZE_MAX;
}

/* key's entry, made if need be; SIZE_MAX when the table is full. */
static size_t
id_get(struct api_admit *a, const char *key)
{
	size_t i = id_find(a, key);

	if (i != SIZE_MAX || a->nids == ADMIT_IDS_MAX)
		return i;
	i = a->nids++;
	memset(&a->ids[i], 0, sizeof(a->ids[i]));
	memcpy(a->ids[i].key, key, strlen(key) + 1);
	return i;
}

/* Drops entry i when it has nothing in the gate (the last one moves in:
 * indexes of other entries may change). */
static void
id_gc(struct api_admit *a, size_t i)
{
	if (i >= a->nids || a->ids[i].running != 0 || a->ids[i].queued != 0)
		return;
	a->ids[i] = a->ids[--a->nids];
	if (a->rr > a->nids)
		a->rr = 0;
}

/* Takes w out of entry i's queue (it is there). */
static void
id_unqueue(struct api_admit *a, size_t i, struct admit_waiter *w)
{
	struct admit_id *d = &a->ids[i];
	struct admit_waiter **pp, *prev = NULL;

	for (pp = &d->head; *pp != NULL; prev = *pp, pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			if (d->tail == w)
				d->tail = prev;
			break;
		}
	d->queued--;
	a->queued--;
	a->queued_us -= w->cost_us;
	if (w->park != NULL)
		a->parked--;
}

/* Whether one more waiter of class cls fits the queue's bound: the work
 * queued ahead of it, spread over the slots, is within the target, or
 * within its own service time when that is longer (a key generation may
 * wait as long as it takes, not 50 ms). */
static int
queue_room(const struct api_admit *a, enum admit_class cls)
{
	uint64_t bound = a->target_us > a->svc_us[cls] ? a->target_us :
	                                                 a->svc_us[cls];

	if (a->queue_fixed)
		return a->queued < a->queue_max;
	return a->queued_us / a->slots <= bound;
}

/* When the queue is full: the newest waiter of the identity using the
 * most of the gate is refused, if that identity uses at least two more
 * than entry me would once admitted; 1 when a place was made. */
static void
wake(struct admit_waiter *w, struct admit_waiter **notify)
{
	if (w->park == NULL) {
		pthread_cond_signal(&w->cv);
		return;
	}
	w->next = *notify; /* out of every queue: next is free */
	*notify = w;
}

static int
make_room(struct api_admit *a, size_t me, struct admit_waiter **notify)
{
	unsigned mine = a->ids[me].running + a->ids[me].queued, most = 0;
	size_t i, top = SIZE_MAX;
	struct admit_waiter *w;

	for (i = 0; i < a->nids; i++) {
		unsigned used = a->ids[i].running + a->ids[i].queued;
		if (a->ids[i].queued > 0 && used > most) {
			most = used;
			top = i;
		}
	}
	if (top == SIZE_MAX || top == me || mine + 1 >= most)
		return 0;
	w = a->ids[top].tail;
	id_unqueue(a, top, w);
	w->state = W_REFUSED;
	w->why = ADMIT_R_FAIR_SHARE;
	wake(w, notify);
	return 1;
}

/* Under mu: hands a freed slot to the next identity with a waiter, in
 * turn; 1 if one got it. */
static int
grant_next(struct api_admit *a, struct admit_waiter **notify)
{
	size_t k, i;
	struct admit_waiter *w;

	if (a->queued == 0)
		return 0;
	for (k = 0; k < a->nids; k++) {
		i = (a->rr + k) % a->nids;
		if (a->ids[i].queued == 0)
			continue;
		w = a->ids[i].head;
		id_unqueue(a, i, w);
		a->ids[i].running++;
		a->running++;
		w->state = W_GRANTED;
		wake(w, notify);
		a->rr = (i + 1) % a->nids;
		return 1;
	}
	return 0;
}

/* ---- the gate's Retry-After ---- */

/*
 * How long a refused client is told to wait. A fixed wait (twice the
 * target) is right for a few clients, but thousands of them, each told
 * 100 ms, come back at tens of thousands of requests a second, and
 * answering those refusals (TLS, HTTP, the token check, an audit line)
 * takes the CPU the admitted requests need. So the wait follows the
 * refusals: every ADMIT_RETRY_WINDOW_MS, if the gate refused more than a
 * fifth as many requests as it admitted, the wait grows by half (up to
 * ADMIT_RETRY_MAX_MS); if it refused fewer than a twentieth, it shrinks
 * by a third (down to twice the target). With N clients the wait settles
 * near N / (a fifth of the service rate): the refused come back spread
 * out, at a rate the gate can answer. Each answer is jittered by ±25 %
 * so that clients refused together do not return together.
 */
#define ADMIT_RETRY_WINDOW_MS 250
#define ADMIT_RETRY_MAX_MS 10000u

static unsigned
retry_floor(const struct api_admit *a)
{
	unsigned f = (unsigned)(a->target_us / 500);

	return f > 0 ? f : 1;
}

/* Under mu: the window's verdict, when it is over. */
static void
retry_adjust(struct api_admit *a)
{
	struct timespec now;
	uint64_t adm, ref, da, dr;
	unsigned cur, next;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if ((now.tv_sec - a->win_t0.tv_sec) * 1000 +
	        (now.tv_nsec - a->win_t0.tv_nsec) / 1000000 <
	    ADMIT_RETRY_WINDOW_MS)
		return;
	adm = atomic_load(&a->admitted);
	ref = atomic_load(&a->refused[ADMIT_R_CAPACITY]) +
	    atomic_load(&a->refused[ADMIT_R_FAIR_SHARE]);
	da = adm - a->win_admitted;
	dr = ref - a->win_refused;
	cur = atomic_load(&a->retry_ms);
	next = cur;
	if (dr * 5 > da)
		next = cur + cur / 2 + 1;
	else if (dr * 20 < da)
		next = cur - cur / 3;
	if (next > ADMIT_RETRY_MAX_MS)
		next = ADMIT_RETRY_MAX_MS;
	if (next < retry_floor(a))
		next = retry_floor(a);
	atomic_store(&a->retry_ms, next);
	a->win_t0 = now;
	a->win_admitted = adm;
	a->win_refused = ref;
}

/* The wait a gate refusal names now, jittered. */
static unsigned
retry_now(struct api_admit *a)
{
	unsigned base = atomic_load(&a->retry_ms), j = 0;
	uint8_t rnd[2];

	if (base < retry_floor(a))
		base = retry_floor(a);
	if (base >= 8 && RAND_bytes(rnd, sizeof(rnd)) == 1)
		j = ((unsigned)rnd[0] << 8 | rnd[1]) % (base / 2 + 1);
	return base - base / 4 + j;
}

/* ---- enter and leave ---- */

/* The 429 for a gate refusal: retry once about a queue's worth of work
 * has drained (twice the target), at least 1 s for Retry-After. */
static int
refuse(struct api_req *q, struct api_resp *r, struct api_admit *a,
    enum admit_reason why, unsigned retry_ms)
{
	char key[ADMIT_KEY_MAX];

	atomic_fetch_add(&a->refused[why], 1);
	if (limit_key(q, key) == 0) /* the metrics name identities */
		admit_limits_count(a->limits, key, 1, why);
	api_resp_throttled(r, reason_text[why], retry_ms);
	return VLT_ERR_UNAVAILABLE;
}

static int
past(const struct timespec *now, const struct timespec *t)
{
	return now->tv_sec > t->tv_sec ||
	    (now->tv_sec == t->tv_sec && now->tv_nsec >= t->tv_nsec);
}

static void
add_ms(struct timespec *t, unsigned ms)
{
	t->tv_sec += (time_t)(ms / 1000);
	t->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

/* Under mu: w queued at the tail of entry i, counted with the cost of
 * a request of class cls. */
static void
id_queue(struct api_admit *a, size_t i, enum admit_class cls,
    struct admit_waiter *w)
{
	w->state = W_QUEUED;
	w->cost_us = a->svc_us[cls];
	if (a->ids[i].tail != NULL)
		a->ids[i].tail->next = w;
	else
		a->ids[i].head = w;
	a->ids[i].tail = w;
	a->ids[i].queued++;
	a->queued++;
	a->queued_us += w->cost_us;
}

/* Under mu: waits in entry i's queue until granted, refused or too
 * long; the outcome. */
static enum wait_state
wait_turn(struct api_admit *a, size_t i, const char *key, enum admit_class cls,
    enum admit_reason *why)
{
	struct admit_waiter w;
	struct timespec ts;
	int timed_out = 0;

	memset(&w, 0, sizeof(w));
	if (pthread_cond_init(&w.cv, &a->cattr) != 0)
		return W_REFUSED;
	id_queue(a, i, cls, &w);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	add_ms(&ts, a->wait_ms);
	while (w.state == W_QUEUED && !timed_out)
		timed_out = pthread_cond_timedwait(&w.cv, &a->mu, &ts) ==
		    ETIMEDOUT;
	if (w.state == W_QUEUED) {
		/* entries may have moved while it slept */
		i = id_find(a, key);
		id_unqueue(a, i, &w);
		id_gc(a, i);
		w.state = W_TIMED_OUT;
	} else if (w.state == W_REFUSED) {
		id_gc(a, id_find(a, key));
	}
	*why = w.why;
	pthread_cond_destroy(&w.cv);
	return w.state;
}

/* Calls the ready of every parked waiter on notify (outside mu: a ready
 * may hand its request to another thread, which frees the waiter). */
static void
notify_all(struct admit_waiter *notify)
{
	while (notify != NULL) {
		struct admit_waiter *w = notify;
		notify = w->next;
		w->park->ready(w->park->arg);
	}
}

/* Under mu: parked waiters past the token's deadline are taken out (to
 * be answered 503, as a waiting thread is); the earliest deadline left
 * in *next (unchanged when none is earlier). */
static void
reap(struct api_admit *a, struct admit_waiter **notify, struct timespec *next)
{
	struct timespec now;
	size_t i;

	clock_gettime(CLOCK_MONOTONIC, &now);
	for (i = 0; i < a->nids; i++) {
		struct admit_waiter *w = a->ids[i].head, *nx;
		for (; w != NULL; w = nx) {
			nx = w->next;
			if (w->park == NULL)
				continue;
			if (!past(&now, &w->deadline)) {
				if (past(next, &w->deadline))
					*next = w->deadline;
				continue;
			}
			id_unqueue(a, i, w);
			w->state = W_TIMED_OUT;
			wake(w, notify);
		}
	}
}

/* The reaper: sleeps until the earliest parked deadline (or a new
 * park), answers those past theirs. */
static void *
reaper_main(void *arg)
{
	struct api_admit *a = arg;

	pthread_mutex_lock(&a->mu);
	while (!a->stopping) {
		struct admit_waiter *notify = NULL;
		struct timespec next;

		clock_gettime(CLOCK_MONOTONIC, &next);
		add_ms(&next, a->wait_ms);
		reap(a, &notify, &next);
		if (notify != NULL) {
			pthread_mutex_unlock(&a->mu);
			notify_all(notify);
			pthread_mutex_lock(&a->mu);
			continue;
		}
		if (a->parked == 0)
			pthread_cond_wait(&a->reap_cv, &a->mu);
		else
			(void)pthread_cond_timedwait(&a->reap_cv, &a->mu,
			    &next);
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

/* Under mu: queues a parked waiter for p in entry i. */
static int
park_turn(struct api_admit *a, size_t i, enum admit_class cls,
    struct api_park *p)
{
	struct admit_waiter *w;

	if (!a->reaper_on) {
		if (pthread_create(&a->reaper, NULL, reaper_main, a) != 0)
			return -1;
		a->reaper_on = 1;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return -1;
	w->park = p;
	clock_gettime(CLOCK_MONOTONIC, &w->deadline);
	add_ms(&w->deadline, a->wait_ms);
	id_queue(a, i, cls, w);
	if (a->parked++ == 0)
		pthread_cond_signal(&a->reap_cv);
	p->w = w;
	return 0;
}

/* The outcome of a wait, for the caller: 0 with t holding the slot, or
 * a negative error after answering r. */
static int
outcome(struct api_req *q, struct api_resp *r, struct api_admit *a,
    enum wait_state st, enum admit_reason why, struct admit_ticket *t)
{
	if (st == W_TIMED_OUT) {
		/* the token is slower than its deadline: unavailable, as
		 * for a caller that waited that long for a session */
		api_resp_vault_error(r, VLT_ERR_UNAVAILABLE, NULL, NULL);
		return VLT_ERR_UNAVAILABLE;
	}
	if (st != W_GRANTED)
		return refuse(q, r, a, why, retry_now(a));
	atomic_fetch_add(&a->admitted, 1);
	t->held = 1;
	clock_gettime(CLOCK_MONOTONIC, &t->t0);
	return 0;
}

/* api_admit_enter, and with p its parked form (ADMIT_PARKED: p waits). */
static int
enter(struct api_req *q, struct api_resp *r, enum admit_class cls,
    struct admit_ticket *t, struct api_park *p)
{
	struct api_admit *a = q->ctx->admit;
	enum admit_reason why = ADMIT_R_CAPACITY;
	enum wait_state st = W_REFUSED;
	struct admit_waiter *notify = NULL;
	size_t i;

	memset(t, 0, sizeof(*t));
	t->cls = cls;
	if (a == NULL || !a->on)
		return 0;
	if (share_key(q, t->key) != 0)
		return refuse(q, r, a, ADMIT_R_CAPACITY, 1000);
	pthread_mutex_lock(&a->mu);
	retry_adjust(a);
	if ((i = id_get(a, t->key)) == SIZE_MAX) {
		st = W_REFUSED;
	} else if (a->running < a->slots) {
		a->running++;
		a->ids[i].running++;
		st = W_GRANTED;
	} else if (queue_room(a, cls) || make_room(a, i, &notify)) {
		if (p == NULL)
			st = wait_turn(a, i, t->key, cls, &why);
		else if (park_turn(a, i, cls, p) == 0)
			st = W_QUEUED;
		else
			id_gc(a, i);
	} else {
		id_gc(a, i);
	}
	pthread_mutex_unlock(&a->mu);
	notify_all(notify);
	if (st == W_QUEUED)
		return ADMIT_PARKED;
	return outcome(q, r, a, st, why, t);
}

int
api_admit_enter(struct api_req *q, struct api_resp *r, enum admit_class cls,
    struct admit_ticket *t)
{
	return enter(q, r, cls, t, NULL);
}

int
api_admit_enter_park(struct api_req *q, struct api_resp *r,
    enum admit_class cls, struct api_park *p)
{
	p->w = NULL;
	return enter(q, r, cls, &p->tk, p);
}

int
api_admit_parked(struct api_req *q, struct api_resp *r, struct api_park *p)
{
	struct api_admit *a = q->ctx->admit;
	struct admit_waiter *w = p->w;
	enum wait_state st;
	enum admit_reason why;

	if (w == NULL) /* granted at once */
		return 0;
	p->w = NULL;
	pthread_mutex_lock(&a->mu);
	st = w->state;
	why = w->why;
	/* a refused or timed-out waiter's entry may be empty now */
	if (st != W_GRANTED)
		id_gc(a, id_find(a, p->tk.key));
	pthread_mutex_unlock(&a->mu);
	free(w);
	return outcome(q, r, a, st, why, &p->tk);
}

void
api_admit_leave(struct api_req *q, struct admit_ticket *t)
{
	struct api_admit *a = q->ctx->admit;
	struct admit_waiter *notify = NULL;
	uint64_t us, *s;
	size_t i;

	if (a == NULL || !t->held)
		return;
	t->held = 0;
	us = elapsed_us(&t->t0);
	pthread_mutex_lock(&a->mu);
	s = &a->svc_us[t->cls];
	*s = *s - (*s >> ADMIT_EWMA_SHIFT) + (us >> ADMIT_EWMA_SHIFT);
	if (*s == 0)
		*s = 1;
	if ((i = id_find(a, t->key)) != SIZE_MAX) {
		a->ids[i].running--;
		a->running--;
		(void)grant_next(a, &notify);
		id_gc(a, i);
	}
	pthread_mutex_unlock(&a->mu);
	notify_all(notify);
}

/* ---- metrics ---- */

int
api_admit_render(struct api_ctx *c, buf_t *b)
{
	struct api_admit *a = c->admit;
	unsigned running, queued, bound, slots;
	uint64_t svc[ADMIT_CLASSES];
	int rc = 0;
	size_t i;

	if (a == NULL)
		return 0;
	pthread_mutex_lock(&a->mu);
	running = a->running;
	queued = a->queued;
	slots = a->slots;
	memcpy(svc, a->svc_us, sizeof(svc));
	bound = a->queue_fixed ? a->queue_max :
	                         (unsigned)(a->target_us * a->slots /
	                             (svc[ADMIT_FAST] ? svc[ADMIT_FAST] : 1));
	pthread_mutex_unlock(&a->mu);
	rc |= buf_putf(b,
	    "# HELP p11vault_admission_enabled 1 while token work passes "
	    "the admission gate (admission=false: 0).\n"
	    "# TYPE p11vault_admission_enabled gauge\n"
	    "p11vault_admission_enabled %d\n"
	    "# HELP p11vault_admission_slots Token requests served at once.\n"
	    "# TYPE p11vault_admission_slots gauge\n"
	    "p11vault_admission_slots %u\n"
	    "# HELP p11vault_admission_in_flight Token requests holding a "
	    "slot.\n# TYPE p11vault_admission_in_flight gauge\n"
	    "p11vault_admission_in_flight %u\n"
	    "# HELP p11vault_admission_queue_depth Token requests waiting "
	    "for a slot.\n# TYPE p11vault_admission_queue_depth gauge\n"
	    "p11vault_admission_queue_depth %u\n"
	    "# HELP p11vault_admission_queue_limit The queue's bound now "
	    "(admission_queue=, or the target over the fast service time "
	    "times the slots).\n"
	    "# TYPE p11vault_admission_queue_limit gauge\n"
	    "p11vault_admission_queue_limit %u\n"
	    "# HELP p11vault_admission_retry_after_seconds The wait a "
	    "refusal of the gate names now (before its jitter of 25 %%).\n"
	    "# TYPE p11vault_admission_retry_after_seconds gauge\n"
	    "p11vault_admission_retry_after_seconds %.3f\n",
	    a->on, slots, running, queued, bound,
	    (double)atomic_load(&a->retry_ms) / 1e3);
	rc |= buf_putf(b,
	    "# HELP p11vault_admission_service_seconds Estimated time a "
	    "slot is held (EWMA), by class of token work.\n"
	    "# TYPE p11vault_admission_service_seconds gauge\n"
	    "p11vault_admission_service_seconds{class=\"fast\"} %.6f\n"
	    "p11vault_admission_service_seconds{class=\"slow\"} %.6f\n"
	    "# HELP p11vault_admitted_total Token requests the gate "
	    "admitted.\n# TYPE p11vault_admitted_total counter\n"
	    "p11vault_admitted_total %llu\n"
	    "# HELP p11vault_throttled_total Requests answered 429 "
	    "Throttled, by reason.\n# TYPE p11vault_throttled_total counter\n",
	    (double)svc[ADMIT_FAST] / 1e6, (double)svc[ADMIT_SLOW] / 1e6,
	    (unsigned long long)atomic_load(&a->admitted));
	for (i = 0; i < ADMIT_REASONS; i++)
		rc |= buf_putf(b,
		    "p11vault_throttled_total{reason=\"%s\"} %llu\n",
		    reason_label[i],
		    (unsigned long long)atomic_load(&a->refused[i]));
	if (rc != 0)
		return VLT_ERR_NO_MEMORY;
	return admit_limits_render(a->limits, b);
}

/* The rate limiter's refusals count here too (one throttled counter). */
int
api_admit_limit(struct api_req *q, struct api_resp *r)
{
	struct api_admit *a = q->ctx->admit;
	char key[ADMIT_KEY_MAX];
	enum admit_reason why;
	unsigned retry_ms = 0;

	if (a == NULL || limit_key(q, key) != 0)
		return 0;
	admit_limits_count(a->limits, key, 0, ADMIT_R_CAPACITY);
	if (admit_limits_take(a->limits, key, &why, &retry_ms) == 0)
		return 0;
	atomic_fetch_add(&a->refused[why], 1);
	admit_limits_count(a->limits, key, 1, why);
	api_resp_throttled(r, reason_text[why], retry_ms);
	return VLT_ERR_UNAVAILABLE;
}
