/*
 * hsm/client.c — hsm/hsm.h for the network process: every token operation is
 * a message to the token process (tokend.c).
 *
 * Owns: starting the token process (posix_spawn of this executable with
 * argv[1] HSM_TOKEN_ARGV, a boot socket on fd 3 carrying the config and
 * the channels), a fixed set of channels to it (one request in flight per
 * channel, so several operations run at once and an answer always finds
 * its caller: it repeats the request's op and id), and supervision: when
 * the token process dies or stops answering, calls in flight answer
 * HSM_ERR_UNAVAILABLE, new calls too, and a supervisor thread reaps it
 * and starts a new one with backoff (HSM_RESTART_MIN_MS doubling to
 * HSM_RESTART_MAX_MS). No caller waits longer than the deadline
 * (P11VAULT_HSM_DEADLINE_MS, as in the token process) for a channel.
 * Must never: load a PKCS#11 module, read the PIN, hold a lock across a
 * call to the token process.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "hsm/affinity.h"
#include "hsm/base.h"
#include "hsm/buf.h"
#include "hsm/launcher.h"
#include "hsm/proto.h"

#define HSM_BOOT_TIMEOUT_MS 60000 /* load, C_Initialize, login */
/* an answer later than this (or 4
 * deadlines): the process is hung */
#define HSM_CALL_MIN_MS 30000
#define HSM_RESTART_MIN_MS 100u
#define HSM_RESTART_MAX_MS 5000u
#define HSM_POLL_MS 200  /* the supervisor's look at the pid */
#define HSM_CHAN_SPARE 2 /* channels beyond the pool size */
#define HSM_POOL_DEFAULT 8

/* One token process and its channels. */
struct gen {
	pid_t pid;
	int boot_fd; /* EOF here ends the token process */
	size_t nchan;
	int *fd; /* the channels */
	uint32_t *next_id;
	size_t *free_idx;
	size_t nfree;
	size_t refs; /* channels lent out */
	int dead;    /* a call saw it die or hang */
	int reaped;
	/* started by the launcher: not our child; its
	 * end shows as EOF on boot_fd */
	int foreign;
};

struct hsm {
	char *module, *label, *hsm_dir, *allow, *run_as;
	int launcher; /* control socket of the token launcher */
	pid_t launcher_pid;
	size_t pool_size, cache_size;
	unsigned deadline_ms, call_ms;

	pthread_mutex_t mu;
	pthread_cond_t cv;  /* a channel came back, or the process changed */
	pthread_cond_t scv; /* the supervisor: a death, or stopping */
	struct gen *cur;    /* NULL while there is no live token process */
	struct gen **old;   /* dead ones whose channels are still lent */
	size_t nold;
	int stopping;
	pthread_t sup;
	int sup_ok;
	uint64_t restarts;

	struct hsm_cpus cpus; /* the channels' CPUs (hsm/affinity.h) */

	uint8_t *jwt_spki; /* the JWT public key, fetched once */
	size_t jwt_spki_len;
};

static void
gen_free(struct gen *g)
{
	size_t i;

	if (g == NULL)
		return;
	for (i = 0; g->fd && i < g->nchan; i++)
		if (g->fd[i] >= 0)
			close(g->fd[i]);
	if (g->boot_fd >= 0)
		close(g->boot_fd);
	if (g->pid > 0 && !g->reaped) {
		kill(g->pid, SIGKILL);
		while (!g->foreign && waitpid(g->pid, NULL, 0) < 0 &&
		    errno == EINTR)
			;
	}
	free(g->fd);
	free(g->next_id);
	free(g->free_idx);
	free(g);
}

static void
log_event(const char *event, const char *msg)
{
	fprintf(stderr, "{\"level\":\"%s\",\"event\":\"%s\",\"msg\":\"%s\"}\n",
	    strcmp(event, "token_process_started") == 0 ? "info" : "error",
	    event, msg);
}

/* ---- starting a token process ---- */

/*
 * Starts a token process; sends it msg (a HELLO or a TOKEN_INIT) and the
 * child ends of nchan fresh channels on the boot socket, and waits for
 * the answer. Out: the generation (channels ready), and the answer's
 * status in *status. -1 if the process could not be started or talked to.
 */
static int
gen_start(int launcher, char *const *env, const struct tokp_buf *msg,
    size_t nchan, unsigned call_ms, struct gen **out, int *status,
    struct tokp_msg *keep)
{
	struct timeval tv = { (time_t)(call_ms / 1000),
		(suseconds_t)(call_ms % 1000) * 1000 };
	struct gen *g;
	struct tokp_msg ans;
	int boot[2] = { -1, -1 }, sp[2], *child = NULL;
	size_t i;
	int rc = -1, r;

	*out = NULL;
	*status = HSM_ERR_UNAVAILABLE;
	if ((g = calloc(1, sizeof(*g))) == NULL)
		return -1;
	g->boot_fd = -1;
	g->nchan = nchan;
	g->fd = calloc(nchan ? nchan : 1, sizeof(*g->fd));
	g->next_id = calloc(nchan ? nchan : 1, sizeof(*g->next_id));
	g->free_idx = calloc(nchan ? nchan : 1, sizeof(*g->free_idx));
	child = calloc(nchan ? nchan : 1, sizeof(*child));
	if (g->fd == NULL || g->next_id == NULL || g->free_idx == NULL ||
	    child == NULL)
		goto out;
	for (i = 0; i < nchan; i++)
		g->fd[i] = child[i] = -1;
	for (i = 0; i < nchan; i++) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp))
			goto out;
		g->fd[i] = sp[0];
		child[i] = sp[1];
		/* an answer later than call_ms: the process is hung (a
		 * socket timeout costs no poll per call) */
		if (setsockopt(sp[0], SOL_SOCKET, SO_RCVTIMEO, &tv,
		        sizeof(tv)) != 0)
			goto out;
		g->free_idx[i] = i;
		g->next_id[i] = 1;
	}
	g->nfree = nchan;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, boot) != 0)
		goto out;
	if ((launcher >= 0 ? hsm_launcher_spawn(launcher, boot[1], &g->pid) :
	                     hsm_spawn_token(boot[1], env, &g->pid)) != 0)
		goto out;
	g->foreign = launcher >= 0;
	close(boot[1]);
	boot[1] = -1;
	g->boot_fd = boot[0];
	boot[0] = -1;
	r = tokp_send(g->boot_fd, msg, child, nchan);
	for (i = 0; i < nchan; i++) {
		close(child[i]);
		child[i] = -1;
	}
	if (r != 0)
		goto out;
	r = tokp_recv(g->boot_fd, HSM_BOOT_TIMEOUT_MS, 1, &ans, NULL, NULL);
	if (r != 0)
		goto out;
	if (ans.op != msg->p[1] || ans.id != 0) {
		tokp_msg_clear(&ans);
		goto out;
	}
	*status = ans.status;
	if (keep != NULL)
		*keep = ans;
	else
		tokp_msg_clear(&ans);
	*out = g;
	g = NULL;
	rc = 0;
out:
	for (i = 0; child && i < nchan; i++)
		if (child[i] >= 0)
			close(child[i]);
	free(child);
	if (boot[0] >= 0)
		close(boot[0]);
	if (boot[1] >= 0)
		close(boot[1]);
	gen_free(g);
	return rc;
}

static int
hello(const struct hsm *h, struct tokp_buf *b)
{
	tokp_begin(b, TOKP_HELLO, 0, 0);
	tokp_put_str(b, h->module);
	tokp_put_str(b, h->label);
	tokp_put_str(b, h->hsm_dir);
	tokp_put_str(b, h->allow);
	tokp_put(b, h->run_as ? h->run_as : "",
	    h->run_as ? strlen(h->run_as) : 0);
	tokp_put_u32(b, (uint32_t)h->pool_size);
	tokp_put_u32(b, (uint32_t)h->cache_size);
	return tokp_buf_status(b);
}

/* Starts a token process with the token open; HSM_OK or its error. */
static int
start(struct hsm *h, struct gen **out)
{
	struct tokp_buf b;
	int status, rc;

	*out = NULL;
	if ((rc = hello(h, &b)) != 0) {
		tokp_buf_clear(&b);
		return rc;
	}
	rc = gen_start(h->launcher, NULL, &b, h->pool_size + HSM_CHAN_SPARE,
	    h->call_ms, out, &status, NULL);
	tokp_buf_clear(&b);
	if (rc != 0)
		return HSM_ERR_UNAVAILABLE;
	if (status != HSM_OK) {
		gen_free(*out);
		*out = NULL;
		return status;
	}
	return HSM_OK;
}

/* ---- supervision ---- */

/* 1 once g's process has ended: reaped here, or (started by the
 * launcher, which reaps it) its boot socket at EOF. wait_ms: how long to
 * wait for that. */
static int
gen_ended(struct gen *g, int wait_ms, int *signaled)
{
	struct pollfd pf;
	char c;
	int st = 0;

	*signaled = 0;
	if (!g->foreign) {
		if (waitpid(g->pid, &st, wait_ms ? 0 : WNOHANG) != g->pid)
			return 0;
		*signaled = WIFSIGNALED(st);
		return 1;
	}
	pf.fd = g->boot_fd;
	pf.events = POLLIN;
	if (g->boot_fd < 0 || poll(&pf, 1, wait_ms) != 1)
		return 0;
	if ((pf.revents & POLLIN) && recv(g->boot_fd, &c, 1, MSG_DONTWAIT) > 0)
		return 0; /* a stray byte: not an end */
	*signaled = 1;
	return 1;
}

/* Under mu: g is dead; it stops being current, its process is killed
 * (the supervisor reaps it) and waiters learn at once. */
static void
gen_kill_locked(struct hsm *h, struct gen *g)
{
	if (!g->dead) {
		g->dead = 1;
		if (g->pid > 0 && !g->reaped) {
			kill(g->pid, SIGKILL);
			log_event("token_process_lost",
			    "a call found the token "
			    "process gone or hung; it is replaced");
		}
	}
	pthread_cond_broadcast(&h->cv);
	pthread_cond_signal(&h->scv);
}

/* Under mu: moves the current generation, dead, to the old list (freed
 * when its last channel comes back). */
static void
retire_locked(struct hsm *h)
{
	struct gen *g = h->cur, **no;

	h->cur = NULL;
	if (g == NULL)
		return;
	if (g->refs == 0) {
		gen_free(g);
		return;
	}
	no = realloc(h->old, (h->nold + 1) * sizeof(*no));
	if (no == NULL) {
		/* cannot keep it: leak it rather than free it under a caller */
		return;
	}
	h->old = no;
	h->old[h->nold++] = g;
}

static void *
supervise(void *arg)
{
	struct hsm *h = arg;
	struct timespec ts;
	struct gen *g;
	unsigned backoff = HSM_RESTART_MIN_MS;
	char msg[128];
	int rc, st;

	pthread_mutex_lock(&h->mu);
	while (!h->stopping) {
		g = h->cur;
		if (g != NULL && !g->dead && !g->reaped &&
		    gen_ended(g, 0, &st)) {
			g->reaped = 1;
			log_event("token_process_died",
			    st ? "the token process was killed by a signal" :
			         "the token process exited");
			gen_kill_locked(h, g);
		}
		if (g != NULL && g->dead) {
			if (!g->reaped) {
				pthread_mutex_unlock(&h->mu);
				while (!gen_ended(g, 2000, &st) && g->foreign &&
				    kill(g->pid, 0) == 0)
					(void)kill(g->pid, SIGKILL);
				pthread_mutex_lock(&h->mu);
				g->reaped = 1;
			}
			retire_locked(h);
		}
		if (h->cur == NULL && !h->stopping) {
			/* start a new one, without the lock */
			pthread_mutex_unlock(&h->mu);
			rc = start(h, &g);
			pthread_mutex_lock(&h->mu);
			if (rc == HSM_OK && !h->stopping) {
				h->cur = g;
				h->restarts++;
				backoff = HSM_RESTART_MIN_MS;
				log_event("token_process_started",
				    "a new token process serves the token");
				pthread_cond_broadcast(&h->cv);
				continue;
			}
			if (rc == HSM_OK)
				gen_free(g);
			if (str_fmt(msg, sizeof(msg),
			        "the token process could "
			        "not be started (error %d); retrying in %u ms",
			        rc, backoff) != 0)
				msg[0] = '\0'; /* cannot happen: msg fits */
			log_event("token_process_start_failed", msg);
			hsm_deadline_in(&ts, backoff);
			backoff = backoff * 2 > HSM_RESTART_MAX_MS ?
			    HSM_RESTART_MAX_MS :
			    backoff * 2;
			while (!h->stopping &&
			    pthread_cond_timedwait(&h->scv, &h->mu, &ts) == 0)
				;
			continue;
		}
		hsm_deadline_in(&ts, HSM_POLL_MS);
		(void)pthread_cond_timedwait(&h->scv, &h->mu, &ts);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

/* ---- channels ---- */

struct chan {
	struct gen *g;
	size_t idx;
};

/*
 * A free channel of g, out of its free list (under h->mu). With a CPU map
 * (hsm/affinity.h): one of the caller's CPU unless that CPU has 2 calls
 * in flight more than the least busy CPU with a free channel, else one of
 * the least busy; of the chosen CPU, the channel given back last. (The
 * caller's CPU alone would pile the calls of a busy CPU onto its token
 * threads while another CPU idles; the least busy, own among equals,
 * measured 0.93 of in-process in the split bench against 0.94 for this
 * rule: docs/performance.md.) Without a map, the channel given back last.
 */
static size_t
chan_pick(const struct hsm *h, struct gen *g)
{
	size_t n = h->cpus.n, nfree[HSM_CPUS_MAX], used[HSM_CPUS_MAX];
	size_t k = g->nfree - 1, best = SIZE_MAX, j, idx;
	int mine;

	if (n > 1) {
		memset(nfree, 0, sizeof(nfree));
		for (j = 0; j < g->nfree; j++)
			nfree[hsm_cpus_slot(&h->cpus, g->free_idx[j])]++;
		for (j = 0; j < n; j++) {
			/* slot j holds channels j, j + n, …: nchan / n of
			 * them, one more for the first nchan % n slots */
			used[j] = g->nchan / n + (j < g->nchan % n) - nfree[j];
			if (nfree[j] > 0 &&
			    (best == SIZE_MAX || used[j] < used[best]))
				best = j;
		}
		mine = hsm_cpus_here(&h->cpus);
		if (mine >= 0 && nfree[mine] > 0 &&
		    used[mine] <= used[best] + 1)
			best = (size_t)mine;
		for (j = g->nfree; j-- > 0;)
			if (hsm_cpus_slot(&h->cpus, g->free_idx[j]) == best) {
				k = j;
				break;
			}
	}
	idx = g->free_idx[k];
	g->free_idx[k] = g->free_idx[--g->nfree];
	return idx;
}

static int
chan_take(struct hsm *h, struct chan *c)
{
	struct timespec ts;
	int timed_out = 0;

	hsm_deadline_in(&ts, h->deadline_ms);
	pthread_mutex_lock(&h->mu);
	for (;;) {
		struct gen *g = h->cur;
		if (h->stopping || g == NULL || g->dead) {
			pthread_mutex_unlock(&h->mu);
			return HSM_ERR_UNAVAILABLE;
		}
		if (g->nfree > 0) {
			c->g = g;
			c->idx = chan_pick(h, g);
			g->refs++;
			pthread_mutex_unlock(&h->mu);
			return HSM_OK;
		}
		if (timed_out) {
			pthread_mutex_unlock(&h->mu);
			return HSM_ERR_UNAVAILABLE;
		}
		if (pthread_cond_timedwait(&h->cv, &h->mu, &ts) == ETIMEDOUT)
			timed_out = 1;
	}
}

/* broken: the channel saw the process die or hang. */
static void
chan_give(struct hsm *h, struct chan *c, int broken)
{
	struct gen *g = c->g;
	size_t i;

	pthread_mutex_lock(&h->mu);
	g->refs--;
	if (broken)
		gen_kill_locked(h, g);
	if (g == h->cur) {
		g->free_idx[g->nfree++] = c->idx;
		pthread_cond_signal(&h->cv);
	} else if (g->refs == 0) {
		for (i = 0; i < h->nold; i++)
			if (h->old[i] == g) {
				h->old[i] = h->old[--h->nold];
				break;
			}
		gen_free(g);
	}
	pthread_mutex_unlock(&h->mu);
	c->g = NULL;
}

/*
 * One round trip: b (built with tokp_begin(b, op, 0, 0) and its fields)
 * is sent on a channel with the channel's next id; *ans receives the
 * answer (checked: same op, same id, the op's answer shape). Returns the
 * answer's status; HSM_ERR_UNAVAILABLE if the token process is not there
 * or does not answer. b is wiped and freed here.
 */
static int
call(struct hsm *h, struct tokp_buf *b, struct tokp_msg *ans)
{
	struct chan c;
	uint32_t id;
	uint8_t op;
	int rc, r;

	memset(ans, 0, sizeof(*ans));
	/* the token process hangs up on a malformed request: never send
	 * one (an oversized blob from the store is the caller's error; no
	 * memory to build it is no memory) */
	if (b->err || tokp_parse(b->p, b->len, 0, ans) != 0) {
		rc = b->err ? tokp_buf_status(b) : HSM_ERR_ARGS;
		memset(ans, 0, sizeof(*ans));
		tokp_buf_clear(b);
		return rc;
	}
	memset(ans, 0, sizeof(*ans));
	op = b->p[1];
	if ((rc = chan_take(h, &c)) != 0) {
		tokp_buf_clear(b);
		return rc;
	}
	id = c.g->next_id[c.idx]++;
	b->p[4] = (uint8_t)(id >> 24);
	b->p[5] = (uint8_t)(id >> 16);
	b->p[6] = (uint8_t)(id >> 8);
	b->p[7] = (uint8_t)id;
	r = tokp_send(c.g->fd[c.idx], b, NULL, 0);
	tokp_buf_clear(b);
	if (r == 0)
		r = tokp_recv(c.g->fd[c.idx], -1, 1, ans, NULL, NULL);
	if ((r == 0 || r == TOKP_RECV_NOMEM) &&
	    (ans->op != op || ans->id != id)) {
		tokp_msg_clear(ans);
		r = -1;
	}
	/* anything but a well-formed answer to this request: the channel
	 * cannot be trusted to be in step, nor the process to be sane. No
	 * memory for the answer is neither: it was read whole and dropped,
	 * so this call fails and the channel serves the next one (killing
	 * the token process for it would turn one failed allocation into
	 * 503s for everyone until a restart) */
	chan_give(h, &c, r != 0 && r != TOKP_RECV_NOMEM);
	if (r == TOKP_RECV_NOMEM) {
		tokp_msg_clear(ans);
		return HSM_ERR_NO_MEMORY;
	}
	if (r != 0)
		return HSM_ERR_UNAVAILABLE;
	return ans->status;
}

/* ---- hsm.h ---- */

static char *
dup_or_null(const char *s, int *err)
{
	char *d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		*err = 1;
	return d;
}

/* EOF on its control socket ends the launcher; then reap it. */
static void
launcher_stop(struct hsm *h)
{
	if (h->launcher >= 0)
		close(h->launcher);
	h->launcher = -1;
	if (h->launcher_pid > 0)
		while (waitpid(h->launcher_pid, NULL, 0) < 0 && errno == EINTR)
			;
	h->launcher_pid = 0;
}

/* Frees h and what it owns outright: its strings and the JWT key. */
static void
handle_free(struct hsm *h)
{
	free(h->module);
	free(h->label);
	free(h->hsm_dir);
	free(h->allow);
	free(h->run_as);
	free(h->jwt_spki);
	free(h);
}

int
hsm_open(const struct hsm_config *cfg, hsm_t **out)
{
	pthread_condattr_t ca;
	struct hsm *h;
	char **env;
	int rc, err = 0, mu_ok = 0, cv_ok = 0;

	*out = NULL;
	if (cfg == NULL || cfg->module_path == NULL ||
	    cfg->token_label == NULL || cfg->hsm_dir == NULL ||
	    cfg->pool_size > TOKP_CHAN_MAX - HSM_CHAN_SPARE)
		return HSM_ERR_ARGS;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return HSM_ERR_NO_MEMORY;
	h->launcher = -1;
	h->module = dup_or_null(cfg->module_path, &err);
	h->label = dup_or_null(cfg->token_label, &err);
	h->hsm_dir = dup_or_null(cfg->hsm_dir, &err);
	h->allow = dup_or_null(cfg->module_allow ? cfg->module_allow :
	                                           HSM_MODULE_ALLOW,
	    &err);
	h->run_as = dup_or_null(cfg->run_as, &err);
	h->pool_size = cfg->pool_size ? cfg->pool_size : HSM_POOL_DEFAULT;
	hsm_cpus_get(&h->cpus);
	h->cache_size = cfg->cache_size;
	h->deadline_ms = hsm_deadline_env();
	h->call_ms = h->deadline_ms * 4 > HSM_CALL_MIN_MS ? h->deadline_ms * 4 :
	                                                    HSM_CALL_MIN_MS;
	rc = HSM_ERR_NO_MEMORY;
	if (err)
		goto fail;
	if (pthread_mutex_init(&h->mu, NULL) != 0)
		goto fail;
	mu_ok = 1;
	if (pthread_condattr_init(&ca) != 0)
		goto fail;
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&h->cv, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		goto fail;
	}
	if (pthread_cond_init(&h->scv, &ca) != 0) {
		pthread_cond_destroy(&h->cv);
		pthread_condattr_destroy(&ca);
		goto fail;
	}
	pthread_condattr_destroy(&ca);
	cv_ok = 1;
	rc = HSM_ERR_UNAVAILABLE;
	if ((env = hsm_spawn_env(cfg->softhsm_conf)) == NULL ||
	    hsm_launcher_start(env, &h->launcher, &h->launcher_pid) != 0) {
		hsm_spawn_env_free(env);
		goto fail;
	}
	hsm_spawn_env_free(env);
	/* the first start is the caller's: its error is hsm_open's */
	if ((rc = start(h, &h->cur)) != HSM_OK)
		goto fail;
	if (pthread_create(&h->sup, NULL, supervise, h) != 0) {
		rc = HSM_ERR_NO_MEMORY;
		goto fail;
	}
	h->sup_ok = 1;
	*out = h;
	return HSM_OK;
fail:
	gen_free(h->cur);
	launcher_stop(h);
	if (cv_ok) {
		pthread_cond_destroy(&h->cv);
		pthread_cond_destroy(&h->scv);
	}
	if (mu_ok)
		pthread_mutex_destroy(&h->mu);
	handle_free(h);
	return rc;
}

void
hsm_close(hsm_t *h)
{
	size_t i;

	if (h == NULL)
		return;
	pthread_mutex_lock(&h->mu);
	h->stopping = 1;
	pthread_cond_broadcast(&h->cv);
	pthread_cond_signal(&h->scv);
	pthread_mutex_unlock(&h->mu);
	if (h->sup_ok)
		pthread_join(h->sup, NULL);
	/* callers are gone by contract: the process and its channels end */
	gen_free(h->cur);
	for (i = 0; i < h->nold; i++)
		gen_free(h->old[i]);
	free(h->old);
	launcher_stop(h);
	pthread_cond_destroy(&h->cv);
	pthread_cond_destroy(&h->scv);
	pthread_mutex_destroy(&h->mu);
	handle_free(h);
}

/* A one-shot token process for a ceremony (init, rekey): the new shares
 * come back in *shares (malloc'd; the caller wipes and frees). */
static int
ceremony(const struct hsm_init *p, enum tokp_op op, const char *old,
    char **shares)
{
	struct tokp_buf b;
	struct tokp_msg a;
	struct gen *g = NULL;
	char **env;
	int status;

	*shares = NULL;
	if (p == NULL || p->module_path == NULL || p->token_label == NULL ||
	    p->hsm_dir == NULL)
		return HSM_ERR_ARGS;
	memset(&a, 0, sizeof(a));
	tokp_begin(&b, op, 0, 0);
	tokp_put_str(&b, p->module_path);
	tokp_put_str(&b, p->module_allow ? p->module_allow : HSM_MODULE_ALLOW);
	tokp_put_str(&b, p->token_label);
	tokp_put_str(&b, p->hsm_dir);
	tokp_put_u32(&b, p->threshold);
	tokp_put_u32(&b, p->shares);
	tokp_put(&b, p->auto_method ? p->auto_method : "",
	    p->auto_method ? strlen(p->auto_method) : 0);
	if (op == TOKP_REKEY)
		tokp_put(&b, old ? old : "", old ? strlen(old) : 0);
	else
		tokp_put_u32(&b, p->node ? 1u : 0u);
	if (b.err) {
		status = tokp_buf_status(&b);
		tokp_buf_clear(&b);
		return status;
	}
	if ((env = hsm_spawn_env(p->softhsm_conf)) == NULL ||
	    gen_start(-1, env, &b, 0, 0, &g, &status, &a) != 0)
		status = HSM_ERR_UNAVAILABLE;
	hsm_spawn_env_free(env);
	tokp_buf_clear(&b);
	if (status == HSM_OK) {
		if ((*shares = calloc(1, a.f[0].len + 1)) == NULL)
			status = HSM_ERR_NO_MEMORY;
		else
			memcpy(*shares, a.f[0].p, a.f[0].len);
	}
	tokp_msg_clear(&a);
	if (g != NULL) {
		/* EOF on the boot socket ends it; then reap */
		close(g->boot_fd);
		g->boot_fd = -1;
		while (waitpid(g->pid, NULL, 0) < 0 && errno == EINTR)
			;
		g->reaped = 1;
		gen_free(g);
	}
	return status;
}

/* Starts a one-shot token process with request b, takes its answer
 * into a, and ends the process: the status. */
static int
oneshot(const struct hsm_init *p, struct tokp_buf *b, struct tokp_msg *a)
{
	struct gen *g = NULL;
	char **env;
	int status;

	if ((env = hsm_spawn_env(p->softhsm_conf)) == NULL ||
	    gen_start(-1, env, b, 0, 0, &g, &status, a) != 0)
		status = HSM_ERR_UNAVAILABLE;
	hsm_spawn_env_free(env);
	if (g != NULL) {
		close(g->boot_fd);
		g->boot_fd = -1;
		while (waitpid(g->pid, NULL, 0) < 0 && errno == EINTR)
			;
		g->reaped = 1;
		gen_free(g);
	}
	return status;
}

int
hsm_node(const struct hsm_init *p, enum hsm_node_op op, const char *shares,
    const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len)
{
	struct tokp_buf b;
	struct tokp_msg a;
	int status;

	if (out == NULL || out_len == NULL)
		return HSM_ERR_ARGS;
	*out = NULL;
	*out_len = 0;
	if (p == NULL || p->module_path == NULL || p->token_label == NULL ||
	    p->hsm_dir == NULL)
		return HSM_ERR_ARGS;
	memset(&a, 0, sizeof(a));
	tokp_begin(&b, TOKP_NODE, 0, 0);
	tokp_put_str(&b, p->module_path);
	tokp_put_str(&b, p->module_allow ? p->module_allow : HSM_MODULE_ALLOW);
	tokp_put_str(&b, p->token_label);
	tokp_put_str(&b, p->hsm_dir);
	tokp_put_u32(&b, (uint32_t)op);
	tokp_put(&b, shares ? shares : "", shares ? strlen(shares) : 0);
	tokp_put(&b, in, in != NULL ? in_len : 0);
	if (b.err) {
		tokp_buf_clear(&b);
		return HSM_ERR_ARGS;
	}
	status = oneshot(p, &b, &a);
	tokp_buf_clear(&b);
	if (status == HSM_OK && a.f[0].len > 0) {
		if ((*out = malloc(a.f[0].len)) == NULL) {
			status = HSM_ERR_NO_MEMORY;
		} else {
			memcpy(*out, a.f[0].p, a.f[0].len);
			*out_len = a.f[0].len;
		}
	}
	tokp_msg_clear(&a);
	return status;
}

int
hsm_token_init(const struct hsm_init *p, char **shares)
{
	return ceremony(p, TOKP_TOKEN_INIT, NULL, shares);
}

int
hsm_rekey(const struct hsm_init *p, const char *old_shares, char **shares)
{
	return ceremony(p, TOKP_REKEY, old_shares, shares);
}

static int
seal_answer(int rc, const struct tokp_msg *a, struct hsm_seal_status *st)
{
	uint32_t v[6];
	int i;

	memset(st, 0, sizeof(*st));
	if (rc != HSM_OK)
		return rc;
	for (i = 0; i < 6; i++)
		if (tokp_u32(&a->f[i], &v[i]) != 0)
			return HSM_ERR_INTERNAL;
	st->sealed = v[0] != 0;
	st->threshold = v[1];
	st->shares = v[2];
	st->progress = v[3];
	st->plaintext_pins = v[4] != 0;
	st->result = (int)v[5];
	return HSM_OK;
}

int
hsm_seal_status(hsm_t *h, struct hsm_seal_status *st)
{
	struct tokp_buf b;
	struct tokp_msg a;
	int rc;

	tokp_begin(&b, TOKP_SEAL_STATUS, 0, 0);
	rc = call(h, &b, &a);
	rc = seal_answer(rc, &a, st);
	tokp_msg_clear(&a);
	return rc;
}

int
hsm_unseal_share(hsm_t *h, const char *share, struct hsm_seal_status *st)
{
	struct tokp_buf b;
	struct tokp_msg a;
	int rc;

	if (share != NULL && strlen(share) > TOKP_SHARE_MAX) {
		memset(st, 0, sizeof(*st));
		st->result = HSM_SHARE_MALFORMED;
		st->sealed = 1;
		return HSM_OK;
	}
	tokp_begin(&b, TOKP_SHARE, 0, 0);
	tokp_put_u32(&b, share != NULL ? 1 : 2);
	tokp_put(&b, share ? share : "", share ? strlen(share) : 0);
	rc = call(h, &b, &a);
	rc = seal_answer(rc, &a, st);
	tokp_msg_clear(&a);
	return rc;
}

int
hsm_health(hsm_t *h)
{
	struct tokp_buf b;
	struct tokp_msg a;
	int rc;

	tokp_begin(&b, TOKP_HEALTH, 0, 0);
	rc = call(h, &b, &a);
	tokp_msg_clear(&a);
	return rc == HSM_OK || rc == HSM_ERR_SEALED ? rc : HSM_ERR_UNAVAILABLE;
}

/* Copies a field into a fresh buffer. */
static int
field_dup(const struct tokp_field *f, uint8_t **out, size_t *len)
{
	if ((*out = malloc(f->len ? f->len : 1)) == NULL)
		return HSM_ERR_NO_MEMORY;
	memcpy(*out, f->p, f->len);
	*len = f->len;
	return HSM_OK;
}

/* blob and spki out of fields bi and bi + 1 of an answer. */
static int
blob_spki(const struct tokp_msg *a, size_t bi, uint8_t **blob, size_t *blob_len,
    uint8_t **spki, size_t *spki_len)
{
	int rc;

	if ((rc = field_dup(&a->f[bi], blob, blob_len)) != 0)
		return rc;
	if ((rc = field_dup(&a->f[bi + 1], spki, spki_len)) != 0) {
		freezero(*blob, *blob_len);
		*blob = NULL;
		return rc;
	}
	return HSM_OK;
}

int
hsm_key_generate(hsm_t *h, const char *bind, enum hsm_kty kty,
    unsigned rsa_bits, int ec_nid, uint8_t **blob, size_t *blob_len,
    uint8_t **spki, size_t *spki_len)
{
	struct tokp_buf b;
	struct tokp_msg a;
	int rc;

	*blob = *spki = NULL;
	tokp_begin(&b, TOKP_GENERATE, 0, 0);
	tokp_put_str(&b, bind);
	tokp_put_u32(&b, (uint32_t)kty);
	tokp_put_u32(&b, rsa_bits);
	tokp_put_u32(&b, (uint32_t)ec_nid);
	if ((rc = call(h, &b, &a)) == HSM_OK)
		rc = blob_spki(&a, 0, blob, blob_len, spki, spki_len);
	tokp_msg_clear(&a);
	return rc;
}

/* decrypt and sign: the same message shape. */
static int
key_op(hsm_t *h, enum tokp_op op, const char *cache_id, const uint8_t *blob,
    size_t blob_len, enum hsm_alg alg, const uint8_t *in, size_t in_len,
    uint8_t *out, size_t *out_len)
{
	struct tokp_buf b;
	struct tokp_msg a;
	int rc;

	if (out == NULL || out_len == NULL || in == NULL)
		return HSM_ERR_ARGS;
	tokp_begin(&b, op, 0, 0);
	tokp_put_str(&b, cache_id);
	tokp_put(&b, blob, blob_len);
	tokp_put_u32(&b, (uint32_t)alg);
	tokp_put(&b, in, in_len);
	tokp_put_u32(&b,
	    *out_len > UINT32_MAX ? UINT32_MAX : (uint32_t)*out_len);
	if ((rc = call(h, &b, &a)) == HSM_OK) {
		if (a.f[0].len > *out_len) {
			rc = HSM_ERR_INTERNAL;
		} else {
			memcpy(out, a.f[0].p, a.f[0].len);
			*out_len = a.f[0].len;
		}
	}
	tokp_msg_clear(&a);
	return rc;
}

int
hsm_key_decrypt(hsm_t *h, const char *cache_id, const uint8_t *blob,
    size_t blob_len, enum hsm_alg alg, const uint8_t *in, size_t in_len,
    uint8_t *out, size_t *out_len)
{
	return key_op(h, TOKP_DECRYPT, cache_id, blob, blob_len, alg, in,
	    in_len, out, out_len);
}

int
hsm_key_sign(hsm_t *h, const char *cache_id, const uint8_t *blob,
    size_t blob_len, enum hsm_alg alg, const uint8_t *digest, size_t dlen,
    uint8_t *sig, size_t *sig_len)
{
	return key_op(h, TOKP_SIGN, cache_id, blob, blob_len, alg, digest, dlen,
	    sig, sig_len);
}

void
hsm_key_forget(hsm_t *h, const char *cache_id)
{
	struct tokp_buf b;
	struct tokp_msg a;

	tokp_begin(&b, TOKP_FORGET, 0, 0);
	tokp_put_str(&b, cache_id);
	/* if the token process is gone, so is its cache */
	(void)call(h, &b, &a);
	tokp_msg_clear(&a);
}

/* A 64-byte signature (r||s) by a token key, op TOKP_JWT_SIGN or
 * TOKP_AUDIT_SIGN. */
static int
sign_call(hsm_t *h, enum tokp_op op, const uint8_t *data, size_t len,
    uint8_t sig[64])
{
	struct tokp_buf b;
	struct tokp_msg a;
	int rc;

	tokp_begin(&b, op, 0, 0);
	tokp_put(&b, data, len);
	if ((rc = call(h, &b, &a)) == HSM_OK) {
		if (a.f[0].len != 64)
			rc = HSM_ERR_INTERNAL;
		else
			memcpy(sig, a.f[0].p, 64);
	}
	tokp_msg_clear(&a);
	return rc;
}

int
hsm_jwt_sign(hsm_t *h, const uint8_t *data, size_t len, uint8_t sig[64])
{
	return sign_call(h, TOKP_JWT_SIGN, data, len, sig);
}

int
hsm_jwt_public(hsm_t *h, uint8_t **spki, size_t *spki_len)
{
	struct tokp_buf b;
	struct tokp_msg a;
	uint8_t *copy = NULL;
	size_t len = 0;
	int rc;

	*spki = NULL;
	pthread_mutex_lock(&h->mu);
	if (h->jwt_spki != NULL) {
		rc = HSM_ERR_NO_MEMORY;
		if ((*spki = malloc(h->jwt_spki_len)) != NULL) {
			memcpy(*spki, h->jwt_spki, h->jwt_spki_len);
			*spki_len = h->jwt_spki_len;
			rc = HSM_OK;
		}
		pthread_mutex_unlock(&h->mu);
		return rc;
	}
	pthread_mutex_unlock(&h->mu);
	tokp_begin(&b, TOKP_JWT_PUBLIC, 0, 0);
	if ((rc = call(h, &b, &a)) == HSM_OK &&
	    (rc = field_dup(&a.f[0], spki, spki_len)) == HSM_OK &&
	    field_dup(&a.f[0], &copy, &len) == HSM_OK) {
		pthread_mutex_lock(&h->mu);
		if (h->jwt_spki == NULL) {
			h->jwt_spki = copy;
			h->jwt_spki_len = len;
			copy = NULL;
		}
		pthread_mutex_unlock(&h->mu);
	}
	free(copy);
	tokp_msg_clear(&a);
	return rc;
}

int
hsm_audit_sign(hsm_t *h, const uint8_t *data, size_t len, uint8_t sig[64])
{
	if (h == NULL || data == NULL || len == 0 ||
	    len > TOKP_AUDIT_DATA_MAX || sig == NULL)
		return HSM_ERR_ARGS;
	return sign_call(h, TOKP_AUDIT_SIGN, data, len, sig);
}

int
hsm_audit_public(hsm_t *h, uint8_t **spki, size_t *spki_len)
{
	struct tokp_buf b;
	struct tokp_msg a;
	int rc;

	if (h == NULL || spki == NULL || spki_len == NULL)
		return HSM_ERR_ARGS;
	*spki = NULL;
	tokp_begin(&b, TOKP_AUDIT_PUBLIC, 0, 0);
	if ((rc = call(h, &b, &a)) == HSM_OK)
		rc = field_dup(&a.f[0], spki, spki_len);
	tokp_msg_clear(&a);
	return rc;
}

void
hsm_stats(hsm_t *h, uint64_t *cache_hits, uint64_t *cache_misses,
    size_t *sessions_busy, size_t *sessions_total)
{
	struct tokp_buf b;
	struct tokp_msg a;
	uint64_t v[4] = { 0, 0, 0, 0 };
	size_t i;

	tokp_begin(&b, TOKP_STATS, 0, 0);
	if (call(h, &b, &a) == HSM_OK)
		for (i = 0; i < 4; i++)
			if (tokp_u64(&a.f[i], &v[i]) != 0)
				v[i] = 0;
	tokp_msg_clear(&a);
	*cache_hits = v[0];
	*cache_misses = v[1];
	*sessions_busy = (size_t)v[2];
	*sessions_total = (size_t)v[3];
}

/* The answer of an import: desc, blob, spki. */
static int
import_answer(const struct tokp_msg *a, struct hsm_key_desc *desc,
    uint8_t **blob, size_t *blob_len, uint8_t **spki, size_t *spki_len)
{
	uint32_t kty, bits, nid;

	if (tokp_u32(&a->f[0], &kty) != 0 || tokp_u32(&a->f[1], &bits) != 0 ||
	    tokp_u32(&a->f[2], &nid) != 0 ||
	    (kty != HSM_KTY_RSA && kty != HSM_KTY_EC))
		return HSM_ERR_INTERNAL;
	desc->kty = (enum hsm_kty)kty;
	desc->rsa_bits = bits;
	desc->ec_nid = (int)nid;
	return blob_spki(a, 3, blob, blob_len, spki, spki_len);
}

/* Sends an import request b: the answer's desc, blob and spki. */
static int
call_import(hsm_t *h, struct tokp_buf *b, struct hsm_key_desc *desc,
    uint8_t **blob, size_t *blob_len, uint8_t **spki, size_t *spki_len)
{
	struct tokp_msg a;
	int rc;

	if ((rc = call(h, b, &a)) == HSM_OK)
		rc = import_answer(&a, desc, blob, blob_len, spki, spki_len);
	tokp_msg_clear(&a);
	return rc;
}

int
hsm_key_import(hsm_t *h, const char *bind, const uint8_t *pkcs8,
    size_t pkcs8_len, struct hsm_key_desc *desc, uint8_t **blob,
    size_t *blob_len, uint8_t **spki, size_t *spki_len)
{
	struct tokp_buf b;

	*blob = *spki = NULL;
	if (pkcs8_len > TOKP_PKCS8_MAX)
		return HSM_ERR_ARGS;
	tokp_begin(&b, TOKP_IMPORT, 0, 0);
	tokp_put_str(&b, bind);
	tokp_put(&b, pkcs8, pkcs8_len);
	return call_import(h, &b, desc, blob, blob_len, spki, spki_len);
}

int
hsm_key_import_byok(hsm_t *h, const char *bind, const char *kek_bind,
    const uint8_t *kek_blob, size_t kek_blob_len, const uint8_t *transfer,
    size_t transfer_len, struct hsm_key_desc *desc, uint8_t **blob,
    size_t *blob_len, uint8_t **spki, size_t *spki_len)
{
	struct tokp_buf b;

	*blob = *spki = NULL;
	if (transfer_len > TOKP_TRANSFER_MAX || transfer_len == 0)
		return HSM_ERR_ARGS;
	tokp_begin(&b, TOKP_IMPORT_BYOK, 0, 0);
	tokp_put_str(&b, bind);
	tokp_put_str(&b, kek_bind);
	tokp_put(&b, kek_blob, kek_blob_len);
	tokp_put(&b, transfer, transfer_len);
	return call_import(h, &b, desc, blob, blob_len, spki, spki_len);
}

/* Sends request b: a copy of the answer's first field in out. */
static int
call_dup(hsm_t *h, struct tokp_buf *b, uint8_t **out, size_t *out_len)
{
	struct tokp_msg a;
	int rc;

	if ((rc = call(h, b, &a)) == HSM_OK)
		rc = field_dup(&a.f[0], out, out_len);
	tokp_msg_clear(&a);
	return rc;
}

static int
data_op(hsm_t *h, enum tokp_op op, const uint8_t *in, size_t in_len,
    uint8_t **out, size_t *out_len)
{
	struct tokp_buf b;

	*out = NULL;
	if (in_len > (op == TOKP_SEAL ? TOKP_DATA_MAX : TOKP_DATA_MAX + 1024))
		return HSM_ERR_ARGS;
	tokp_begin(&b, op, 0, 0);
	tokp_put(&b, in, in_len);
	return call_dup(h, &b, out, out_len);
}

int
hsm_seal(hsm_t *h, const uint8_t *in, size_t in_len, uint8_t **out,
    size_t *out_len)
{
	return data_op(h, TOKP_SEAL, in, in_len, out, out_len);
}

int
hsm_unseal(hsm_t *h, const uint8_t *in, size_t in_len, uint8_t **out,
    size_t *out_len)
{
	return data_op(h, TOKP_UNSEAL, in, in_len, out, out_len);
}

int
hsm_blob_upgrade(hsm_t *h, const char *bind, const uint8_t *blob,
    size_t blob_len, uint8_t **out, size_t *out_len)
{
	struct tokp_buf b;

	*out = NULL;
	tokp_begin(&b, TOKP_UPGRADE, 0, 0);
	tokp_put_str(&b, bind);
	tokp_put(&b, blob, blob_len);
	return call_dup(h, &b, out, out_len);
}

int
hsm_blob_rewrap(hsm_t *h, const char *bind, const uint8_t *blob,
    size_t blob_len, uint8_t **out, size_t *out_len)
{
	struct tokp_buf b;

	*out = NULL;
	tokp_begin(&b, TOKP_REWRAP, 0, 0);
	tokp_put_str(&b, bind);
	tokp_put(&b, blob, blob_len);
	return call_dup(h, &b, out, out_len);
}

void
hsm_process(hsm_t *h, long *pid, uint64_t *restarts)
{
	pthread_mutex_lock(&h->mu);
	*pid = h->cur != NULL && !h->cur->dead ? (long)h->cur->pid : 0;
	*restarts = h->restarts;
	pthread_mutex_unlock(&h->mu);
}
