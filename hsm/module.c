/*
 * hsm/module.c — the token context (tok_t): the session pool and login.
 *
 * Owns: tok_open/tok_close (the module loaded by p11.c, the handle cache
 * of cache.c made and freed here), a fixed pool of sessions on the
 * token's slot lent one caller at a time, login, the token-resident key
 * handles every session sees, health, statistics, and
 * recovery: a call that sees a lost session/login/device answers
 * HSM_ERR_UNAVAILABLE and marks the pool broken; a recovery thread waits
 * for the pool to drain, then (without the pool lock) rescans the slots,
 * reopens the sessions, logs in again and clears the handle cache, and
 * retries every HSM_RETRY_MS while that fails. Callers never run recovery:
 * while the pool is broken they wait for the first attempt's outcome, at
 * most the deadline; once an attempt has failed ("down") they fail at
 * once. No caller waits longer than the deadline for a session
 * (P11VAULT_HSM_DEADLINE_MS, default 5000): then HSM_ERR_UNAVAILABLE.
 * Must never: log or return the PIN; let a CKR_* escape this module; hold
 * the pool lock across a token call.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "hsm/harden.h"
#include "hsm/hsm_int.h"
#include "hsm/proto.h"

#define HSM_POOL_DEFAULT 8
#define HSM_POOL_MAX 256
#define HSM_PIN_MAX 256
#define HSM_LABEL_MAX 32
#define HSM_RETRY_MS 250u

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
pool_close_sessions(tok_t *h)
{
	size_t i;

	for (i = 0; i < h->pool_size; i++) {
		if (h->sess[i] != CK_INVALID_HANDLE)
			(void)h->f->C_CloseSession(h->sess[i]);
		h->sess[i] = CK_INVALID_HANDLE;
	}
	h->nfree = 0;
	h->domain_key = CK_INVALID_HANDLE;
	h->domain_old = CK_INVALID_HANDLE;
	h->jwt_priv = CK_INVALID_HANDLE;
	h->bind_key = CK_INVALID_HANDLE;
	h->seal_key = CK_INVALID_HANDLE;
}

/* Why the token has no usable domain key, for the operator. */
static void
domain_log(int rc)
{
	fprintf(stderr,
	    "{\"level\":\"error\",\"event\":\"%s\",\"msg\":\"%s\","
	    "\"process\":\"token\"}\n",
	    rc == HSM_ERR_INTERNAL ? "domain_key_ambiguous" :
	                             "domain_key_missing",
	    rc == HSM_ERR_INTERNAL ?
	        "the token holds two domain keys: a domain-key rotation "
	        "is unfinished; run p11vault rekey-domain again" :
	        "this node's token holds no domain key: it has not joined "
	        "a cluster yet (p11vault node approve on a node of the "
	        "cluster, then p11vault node join here)");
}

/* Opens every pool session, logs in, finds the token-resident keys;
 * with create_bind (tok_open, not recovery), makes the bind key if the
 * token predates it. Called with h->mu held (or before any other thread
 * can see h). */
static int
pool_open_sessions(tok_t *h, int create_bind)
{
	CK_SESSION_HANDLE s;
	CK_RV rv;
	size_t i;
	int rc;

	if ((rc = hsm_slot_find(h->f, h->label, &h->slot)) != 0)
		return rc;
	for (i = 0; i < h->pool_size; i++) {
		rv = h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION, NULL,
		    NULL, &s);
		if (rv != CKR_OK) {
			rc = rv == CKR_HOST_MEMORY ? HSM_ERR_NO_MEMORY :
			                             HSM_ERR_UNAVAILABLE;
			goto out;
		}
		h->sess[i] = s;
	}
	rv = h->f->C_Login(h->sess[0], CKU_USER, (CK_UTF8CHAR *)h->pin,
	    h->pin_len);
	if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE) {
		rc = HSM_ERR_ARGS;
		goto out;
	}
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		rc = HSM_ERR_UNAVAILABLE;
		goto out;
	}
	if ((rc = hsm_domain_keys(h->f, h->sess[0], &h->domain_key,
	         &h->domain_old)) != 0) {
		domain_log(rc);
		goto out;
	}
	if ((rc = hsm_find_object(h->f, h->sess[0], CKO_PRIVATE_KEY,
	         HSM_JWT_LABEL, &h->jwt_priv)) != 0)
		goto out;
	if ((rc = hsm_role_key_find(h->f, h->slot, h->sess[0], HSM_BIND_LABEL,
	         create_bind, &h->bind_key)) != 0 ||
	    (rc = hsm_role_key_find(h->f, h->slot, h->sess[0], HSM_SEAL_LABEL,
	         create_bind, &h->seal_key)) != 0)
		goto out;
	for (i = 0; i < h->pool_size; i++)
		h->free_idx[i] = i;
	h->nfree = h->pool_size;
	rc = 0;
out:
	if (rc != 0)
		pool_close_sessions(h);
	return rc;
}

/* Reads the JWT public key once, at open: it never changes. */
static int
load_jwt_public(tok_t *h)
{
	CK_OBJECT_HANDLE pub;
	CK_BYTE params[32], point[160];
	CK_ATTRIBUTE t[] = {
		{ CKA_EC_PARAMS, params, sizeof(params) },
		{ CKA_EC_POINT, point, sizeof(point) },
	};
	int rc;

	if ((rc = hsm_find_object(h->f, h->sess[0], CKO_PUBLIC_KEY,
	         HSM_JWT_LABEL, &pub)) != 0)
		return rc;
	if (h->f->C_GetAttributeValue(h->sess[0], pub, t, 2) != CKR_OK)
		return HSM_ERR_UNAVAILABLE;
	return hsm_ec_spki(params, t[0].ulValueLen, point, t[1].ulValueLen,
	    &h->jwt_spki, &h->jwt_spki_len);
}

static void *recover_main(void *arg);

/* Frees what tok_init made; the sessions are closed and the module
 * unloaded by the caller. */
static void
tok_free(tok_t *h)
{
	if (h->sync_ok) {
		pthread_cond_destroy(&h->cv);
		pthread_cond_destroy(&h->rcv);
		pthread_mutex_destroy(&h->mu);
		pthread_mutex_destroy(&h->bmu);
	}
	hsm_secret_free(h->pin, h->pin_len + 1);
	free(h->label);
	free(h->sess);
	free(h->free_idx);
	free(h->jwt_spki);
	free(h);
}

/* The locks and condition variables of h (CLOCK_MONOTONIC waits). */
static int
tok_sync_init(tok_t *h)
{
	pthread_condattr_t ca;
	int n = 0;

	if (pthread_condattr_init(&ca) != 0)
		return HSM_ERR_NO_MEMORY;
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
	    pthread_mutex_init(&h->mu, NULL) == 0 && ++n &&
	    pthread_mutex_init(&h->bmu, NULL) == 0 && ++n &&
	    pthread_cond_init(&h->cv, &ca) == 0 && ++n &&
	    pthread_cond_init(&h->rcv, &ca) == 0)
		h->sync_ok = 1;
	pthread_condattr_destroy(&ca);
	if (h->sync_ok)
		return 0;
	/* undo what was made, in reverse */
	if (n >= 3)
		pthread_cond_destroy(&h->cv);
	if (n >= 2)
		pthread_mutex_destroy(&h->bmu);
	if (n >= 1)
		pthread_mutex_destroy(&h->mu);
	return HSM_ERR_NO_MEMORY;
}

/* A context for cfg, nothing of the token touched yet. */
static int
tok_new(const struct tok_config *cfg, tok_t **out)
{
	tok_t *h;
	size_t pin_len;
	int rc;

	*out = NULL;
	if (cfg == NULL || cfg->token_label == NULL || cfg->user_pin == NULL ||
	    cfg->module_path == NULL)
		return HSM_ERR_ARGS;
	pin_len = strnlen(cfg->user_pin, HSM_PIN_MAX + 1);
	if (pin_len == 0 || pin_len > HSM_PIN_MAX ||
	    strlen(cfg->token_label) > HSM_LABEL_MAX ||
	    cfg->pool_size > HSM_POOL_MAX)
		return HSM_ERR_ARGS;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return HSM_ERR_NO_MEMORY;
	h->pool_size = cfg->pool_size ? cfg->pool_size : HSM_POOL_DEFAULT;
	h->pin_len = pin_len;
	h->pin = hsm_secret_alloc(pin_len + 1); /* a page of its own */
	h->label = strdup(cfg->token_label);
	h->sess = calloc(h->pool_size, sizeof(*h->sess));
	h->free_idx = calloc(h->pool_size, sizeof(*h->free_idx));
	if (h->pin == NULL || h->label == NULL || h->sess == NULL ||
	    h->free_idx == NULL) {
		tok_free(h);
		return HSM_ERR_NO_MEMORY;
	}
	memcpy(h->pin, cfg->user_pin, pin_len + 1);
	if ((rc = tok_sync_init(h)) != 0) {
		tok_free(h);
		return rc;
	}
	h->deadline_ms = hsm_deadline_env();
	*out = h;
	return 0;
}

int
tok_open(const struct tok_config *cfg, tok_t **out)
{
	tok_t *h = NULL;
	int rc;

	*out = NULL;
	if ((rc = tok_new(cfg, &h)) != 0)
		return rc;
	if ((rc = hsm_cache_init(h, cfg->cache_size)) != 0)
		goto out;
	if ((rc = hsm_load(cfg->module_path, &h->dl, &h->f, &h->owns_init)) !=
	    0)
		goto out;
	if ((rc = pool_open_sessions(h, 1)) != 0)
		goto out;
	if ((rc = load_jwt_public(h)) != 0)
		goto out;
	if (pthread_create(&h->rthread, NULL, recover_main, h) != 0) {
		rc = HSM_ERR_NO_MEMORY;
		goto out;
	}
	h->rthread_ok = 1;
	*out = h;
	h = NULL;
	rc = 0;
out:
	if (h != NULL) {
		if (h->f != NULL)
			pool_close_sessions(h);
		hsm_unload(h->dl, h->f, h->owns_init);
		hsm_cache_free(h);
		tok_free(h);
	}
	return rc;
}

void
tok_close(tok_t *h)
{
	if (h == NULL)
		return;
	pthread_mutex_lock(&h->mu);
	h->stopping = 1; /* new callers fail, recovery ends */
	pthread_cond_broadcast(&h->cv);
	pthread_cond_broadcast(&h->rcv);
	while (h->busy > 0)
		pthread_cond_wait(&h->rcv, &h->mu);
	pthread_mutex_unlock(&h->mu);
	if (h->rthread_ok)
		pthread_join(h->rthread, NULL);
	/* closing the sessions destroys every cached session object */
	hsm_cache_free(h);
	pool_close_sessions(h);
	hsm_unload(h->dl, h->f, h->owns_init);
	tok_free(h);
}

/* Run by the recovery thread, without h->mu, while the pool is broken and
 * no session is lent out: callers take no session from a broken pool, so
 * nothing else touches the sessions, the key handles or the cache. */
static int
pool_recover(tok_t *h)
{
	pool_close_sessions(h);
	hsm_cache_clear(h);
	/* a bind key gone missing is a fault, never a reason for a new one:
	 * a new key would orphan every blob */
	return pool_open_sessions(h, 0);
}

/* The recovery thread: whenever the pool is broken and drained, recover
 * it; while that fails, retry every HSM_RETRY_MS. Slow token calls run
 * here without the pool lock, so callers only ever wait on the condition
 * variable, each at most its deadline. */
static void *
recover_main(void *arg)
{
	tok_t *h = arg;
	struct timespec ts;
	int rc;

	pthread_mutex_lock(&h->mu);
	while (!h->stopping) {
		if (!h->broken || h->busy > 0) {
			pthread_cond_wait(&h->rcv, &h->mu);
			continue;
		}
		h->recovering = 1;
		pthread_mutex_unlock(&h->mu);
		rc = pool_recover(h);
		pthread_mutex_lock(&h->mu);
		h->recovering = 0;
		if (rc == 0) {
			h->broken = 0;
			h->down = 0;
			h->recoveries++;
		} else {
			h->down = 1;
			h->recovery_failures++;
		}
		pthread_cond_broadcast(&h->cv);
		if (rc == 0)
			continue;
		hsm_deadline_in(&ts, HSM_RETRY_MS);
		while (!h->stopping &&
		    pthread_cond_timedwait(&h->rcv, &h->mu, &ts) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

int
hsm_sess_take(tok_t *h, struct hsm_sess *s)
{
	struct timespec ts;
	int rc;

	memset(s, 0, sizeof(*s));
	hsm_deadline_in(&ts, h->deadline_ms);
	pthread_mutex_lock(&h->mu);
	for (;;) {
		if (h->stopping || (h->broken && h->down)) {
			/* known down: answer now, the recovery thread
			 * keeps trying */
			rc = HSM_ERR_UNAVAILABLE;
			break;
		}
		if (!h->broken && h->nfree > 0) {
			s->idx = h->free_idx[--h->nfree];
			s->h = h->sess[s->idx];
			s->domain_key = h->domain_key;
			s->domain_old = h->domain_old;
			s->jwt_priv = h->jwt_priv;
			s->bind_key = h->bind_key;
			s->seal_key = h->seal_key;
			h->busy++;
			rc = 0;
			break;
		}
		/* every session busy, or the first recovery attempt is
		 * pending: wait, but never past the deadline */
		h->waiting++;
		rc = pthread_cond_timedwait(&h->cv, &h->mu, &ts);
		h->waiting--;
		if (rc == ETIMEDOUT && (h->broken || h->nfree == 0)) {
			rc = HSM_ERR_UNAVAILABLE;
			break;
		}
	}
	pthread_mutex_unlock(&h->mu);
	return rc;
}

void
hsm_sess_give(tok_t *h, struct hsm_sess *s)
{
	pthread_mutex_lock(&h->mu);
	if (s->lost && !h->broken) {
		h->broken = 1;
		h->down = 0; /* a fresh break: wait for an attempt */
	}
	h->free_idx[h->nfree++] = s->idx;
	h->busy--;
	/* one session freed wakes one waiter (a broken pool wakes them
	 * all when its recovery ends); the recovery thread and tok_close
	 * only care about a broken or stopping pool that has drained */
	if (h->waiting > 0 && !h->broken)
		pthread_cond_signal(&h->cv);
	if ((h->broken || h->stopping) && h->busy == 0)
		pthread_cond_broadcast(&h->rcv);
	pthread_mutex_unlock(&h->mu);
	s->h = CK_INVALID_HANDLE;
}

/*
 * Probes the token on a pool session: the session is logged in, and the
 * token signs with the JWT key (so a token that opens sessions but fails
 * private-key operations is reported too). A probe slower than the
 * deadline is a failure as well: the token is too slow to serve.
 */
int
tok_health(tok_t *h)
{
	static const CK_BYTE probe[32] = { 'p', '1', '1', 'v', 'a', 'u', 'l',
		't', '-', 'h', 'e', 'a', 'l', 't', 'h' };
	CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
	CK_BYTE sig[64];
	CK_ULONG slen = sizeof(sig);
	struct hsm_sess s;
	CK_SESSION_INFO si;
	uint64_t t0;
	int rc;

	if (h == NULL)
		return HSM_ERR_ARGS;
	if (hsm_sess_take(h, &s) != 0)
		return HSM_ERR_UNAVAILABLE;
	t0 = now_ms();
	rc = hsm_ck(&s, h->f->C_GetSessionInfo(s.h, &si));
	if (rc == 0 && si.state != CKS_RO_USER_FUNCTIONS &&
	    si.state != CKS_RW_USER_FUNCTIONS) {
		s.lost = 1;
		rc = HSM_ERR_UNAVAILABLE;
	}
	if (rc == 0)
		rc = hsm_ck(&s, h->f->C_SignInit(s.h, &m, s.jwt_priv));
	if (rc == 0)
		rc = hsm_ck(&s,
		    h->f->C_Sign(s.h, (CK_BYTE *)probe, sizeof(probe), sig,
		        &slen));
	if (rc == 0 && now_ms() - t0 > h->deadline_ms)
		rc = HSM_ERR_UNAVAILABLE;
	hsm_sess_give(h, &s);
	return rc == 0 ? 0 : HSM_ERR_UNAVAILABLE;
}

void
tok_stats(tok_t *h, uint64_t *hits, uint64_t *misses, size_t *busy,
    size_t *total)
{
	pthread_mutex_lock(&h->mu);
	if (busy != NULL)
		*busy = h->busy;
	if (total != NULL)
		*total = h->pool_size;
	pthread_mutex_unlock(&h->mu);
	pthread_mutex_lock(&h->cmu);
	if (hits != NULL)
		*hits = h->hits;
	if (misses != NULL)
		*misses = h->misses;
	pthread_mutex_unlock(&h->cmu);
}
