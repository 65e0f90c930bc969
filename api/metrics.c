/*
 * metrics.c — GET /metrics: the Prometheus text exposition (format 0.0.4).
 *
 * Owns: request counters and latency histograms by operation and status,
 * key-operation (token) counts and latency by operation, and the rendering
 * of those plus the session-pool and handle-cache figures vault/ reports.
 * Lock-free: a fixed table of series (in the server's context, api/metrics.h)
 * claimed with C11 atomics; operation names are the handlers' string
 * literals (q->operation), compared by content. When the table is full,
 * further series fold into operation="other".
 * Must never: put a key name, a caller's identity, a token or any request
 * content into a label (the label values are fixed operation names and
 * numeric statuses only) — but for admission (admit.c, ratelimit.c): the
 * object ids of the identities the operator named in
 * rate_limit_identities, a set the config bounds.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/admit.h"
#include "api/api.h"
#include "hsm/base.h"

#define MET_BUCKETS API_MET_BUCKETS
#define MET_TEXT_MAX (256 * 1024)

/* upper bounds in milliseconds; the last is +Inf */
static const double met_bounds[MET_BUCKETS - 1] = {
	0.5,
	1,
	2,
	5,
	10,
	25,
	50,
	100,
	250,
	500,
	1000,
	2500,
};


static void
hist_add(struct api_met_hist *h, double ms)
{
	size_t i;

	if (ms < 0)
		ms = 0;
	for (i = 0; i < MET_BUCKETS - 1 && ms > met_bounds[i]; i++)
		;
	atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, (uint_fast64_t)(ms * 1000.0),
	    memory_order_relaxed);
}

/* The series for (op, status), claimed on first use; NULL if full. */
static struct api_met_series *
series_get(struct api_met_series *tab, size_t n, const char *op,
    unsigned status)
{
	size_t i;

	for (i = 0; i < n; i++) {
		struct api_met_series *s = &tab[i];
		int st = atomic_load_explicit(&s->state, memory_order_acquire);
		if (st == 0) {
			int expect = 0;
			if (atomic_compare_exchange_strong(&s->state, &expect,
			        1)) {
				s->op = op;
				s->status = status;
				atomic_store_explicit(&s->state, 2,
				    memory_order_release);
				return s;
			}
			st = expect;
		}
		while (st == 1) /* another thread is filling it in */
			st = atomic_load_explicit(&s->state,
			    memory_order_acquire);
		if (s->status == status && strcmp(s->op, op) == 0)
			return s;
	}
	return NULL;
}

static void
observe(struct api_met_series *tab, size_t n, const char *op, unsigned status,
    double ms)
{
	struct api_met_series *s;

	if (op == NULL || op[0] == '\0')
		op = "other";
	s = series_get(tab, n, op, status);
	if (s == NULL)
		s = series_get(tab, n, "other", status);
	if (s != NULL)
		hist_add(&s->h, ms);
}

void
api_metrics_observe_request(struct api_ctx *c, const char *operation,
    unsigned status, double ms)
{
	observe(c->metrics.req, API_MET_SERIES, operation, status, ms);
}

void
api_metrics_observe_token(struct api_ctx *c, const char *operation, int ok,
    double ms)
{
	observe(c->metrics.tok, API_MET_TOKEN_SERIES, operation, ok ? 1 : 0,
	    ms);
}

void
api_metrics_memory_trimmed(struct api_ctx *c)
{
	atomic_fetch_add_explicit(&c->metrics.memory_trims, 1,
	    memory_order_relaxed);
}

/* The text being rendered; the first failed append sticks, so that the
 * renderers can write line after line and check once at the end. */
struct met_buf {
	buf_t *b;
	int failed;
};

static void put(struct met_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
put(struct met_buf *b, const char *fmt, ...)
{
	va_list ap;

	if (b->failed)
		return;
	va_start(ap, fmt);
	if (buf_vputf(b->b, fmt, ap) != 0)
		b->failed = 1;
	va_end(ap);
}

static void
put_hist(struct met_buf *b, const char *name, const char *labels,
    const struct api_met_hist *h)
{
	uint64_t cum = 0;
	size_t i;

	for (i = 0; i < MET_BUCKETS; i++) {
		cum += atomic_load_explicit(&h->bucket[i],
		    memory_order_relaxed);
		if (i < MET_BUCKETS - 1)
			put(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels,
			    met_bounds[i] / 1000.0, (unsigned long long)cum);
		else
			put(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels,
			    (unsigned long long)cum);
	}
	put(b, "%s_sum{%s} %.6f\n", name, labels,
	    (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) /
	        1e6);
	put(b, "%s_count{%s} %llu\n", name, labels,
	    (unsigned long long)atomic_load_explicit(&h->count,
	        memory_order_relaxed));
}

/* A published series' (state 2) label set into labels; 0 for a series
 * not published yet, or whose labels do not fit (the caller skips it). */
static int
series_labels(const struct api_met_series *s, int token, char *labels,
    size_t cap)
{
	if (atomic_load_explicit(&s->state, memory_order_acquire) != 2)
		return 0;
	if (token)
		return str_fmt(labels, cap, "operation=\"%.64s\",result=\"%s\"",
		           s->op, s->status ? "ok" : "error") == 0;
	return str_fmt(labels, cap, "operation=\"%.64s\",status=\"%u\"", s->op,
	           s->status) == 0;
}

static void
render_series(struct met_buf *b, const struct api_met_series *tab, size_t n,
    int token)
{
	const char *name = token ? "p11vault_key_operation_duration_seconds" :
	                           "p11vault_http_request_duration_seconds";
	char labels[160];
	size_t i;

	if (token) {
		put(b,
		    "# HELP p11vault_key_operations_total Private-key "
		    "operations through the vault, by operation and result.\n"
		    "# TYPE p11vault_key_operations_total counter\n");
	} else {
		put(b,
		    "# HELP p11vault_http_requests_total HTTP requests by "
		    "operation and status.\n"
		    "# TYPE p11vault_http_requests_total counter\n");
	}
	for (i = 0; i < n; i++) {
		const struct api_met_series *s = &tab[i];
		if (!series_labels(s, token, labels, sizeof(labels)))
			continue;
		put(b, "%s{%s} %llu\n",
		    token ? "p11vault_key_operations_total" :
		            "p11vault_http_requests_total",
		    labels,
		    (unsigned long long)atomic_load_explicit(&s->h.count,
		        memory_order_relaxed));
	}
	put(b, "# HELP %s Latency, by the same labels.\n# TYPE %s histogram\n",
	    name, name);
	for (i = 0; i < n; i++) {
		const struct api_met_series *s = &tab[i];
		if (!series_labels(s, token, labels, sizeof(labels)))
			continue;
		put_hist(b, name, labels, &s->h);
	}
}

static void
put_seal(struct met_buf *b, struct api_ctx *c)
{
	struct vlt_seal_status st;

	if (c == NULL || c->vault == NULL ||
	    vault_seal_status(c->vault, &st) != 0)
		return;
	put(b,
	    "# HELP p11vault_sealed 1 while the vault is sealed (no key "
	    "operation is served).\n"
	    "# TYPE p11vault_sealed gauge\n"
	    "p11vault_sealed %d\n"
	    "# HELP p11vault_unseal_shares Operator key shares: needed "
	    "(threshold), made (total), given so far (progress).\n"
	    "# TYPE p11vault_unseal_shares gauge\n"
	    "p11vault_unseal_shares{kind=\"threshold\"} %u\n"
	    "p11vault_unseal_shares{kind=\"total\"} %u\n"
	    "p11vault_unseal_shares{kind=\"progress\"} %u\n"
	    "# HELP p11vault_plaintext_pins 1 while the token's PINs rest in "
	    "PIN files (a vault not yet moved to sealing).\n"
	    "# TYPE p11vault_plaintext_pins gauge\n"
	    "p11vault_plaintext_pins %d\n",
	    st.sealed, st.threshold, st.shares, st.progress, st.plaintext_pins);
}

/* Hands the rendered text over: 0, or VLT_ERR_NO_MEMORY (the text is
 * dropped) when an append failed. */
static int
met_finish(struct met_buf *b, char **text, size_t *len)
{
	if (b->failed) {
		buf_free(b->b);
		return VLT_ERR_NO_MEMORY;
	}
	*text = buf_steal(b->b, len);
	return *text != NULL ? 0 : VLT_ERR_NO_MEMORY;
}

int
api_metrics_render_sealed(struct api_ctx *c, char **text, size_t *len)
{
	struct met_buf b = { NULL, 0 };

	*text = NULL;
	*len = 0;
	if ((b.b = buf_new(MET_TEXT_MAX)) == NULL)
		return VLT_ERR_NO_MEMORY;
	put_seal(&b, c);
	return met_finish(&b, text, len);
}

/* The token's session pool, handle cache and process. */
static void
put_token(struct met_buf *b, struct api_ctx *c)
{
	uint64_t hits = 0, misses = 0, restarts = 0;
	size_t busy = 0, total = 0;
	int up = 0;

	if (vault_hsm_stats(c->vault, &hits, &misses, &busy, &total) == 0) {
		put(b,
		    "# HELP p11vault_hsm_sessions PKCS#11 session pool.\n"
		    "# TYPE p11vault_hsm_sessions gauge\n"
		    "p11vault_hsm_sessions{state=\"busy\"} %zu\n"
		    "p11vault_hsm_sessions{state=\"total\"} %zu\n",
		    busy, total);
		put(b,
		    "# HELP p11vault_hsm_handle_cache_total Key handle "
		    "cache lookups.\n"
		    "# TYPE p11vault_hsm_handle_cache_total counter\n"
		    "p11vault_hsm_handle_cache_total{result=\"hit\"} %llu\n"
		    "p11vault_hsm_handle_cache_total{result=\"miss\"} %llu\n",
		    (unsigned long long)hits, (unsigned long long)misses);
	}
	if (vault_token_process(c->vault, &up, &restarts) == 0)
		put(b,
		    "# HELP p11vault_token_process_up 1 while a token "
		    "process serves the token.\n"
		    "# TYPE p11vault_token_process_up gauge\n"
		    "p11vault_token_process_up %d\n"
		    "# HELP p11vault_token_process_restarts_total Token "
		    "processes started after the first (one died).\n"
		    "# TYPE p11vault_token_process_restarts_total counter\n"
		    "p11vault_token_process_restarts_total %llu\n",
		    up, (unsigned long long)restarts);
}

/* The disk: 1 while the store and the audit log take writes, and the
 * storage errors seen (each failed write or sync, each store call the
 * disk refused). */
static void
put_storage(struct met_buf *b, struct api_ctx *c)
{
	struct vlt_storage_status st;

	if (vault_storage_status(c->vault, &st) != 0)
		return;
	put(b,
	    "# HELP p11vault_storage_ok 1 while the store and the audit log "
	    "take writes; 0 while the disk refuses them (key operations are "
	    "refused while the audit log cannot be written).\n"
	    "# TYPE p11vault_storage_ok gauge\n"
	    "p11vault_storage_ok %d\n"
	    "p11vault_storage_ok{part=\"store\"} %d\n"
	    "p11vault_storage_ok{part=\"audit\"} %d\n"
	    "# HELP p11vault_storage_errors_total Writes of the store or the "
	    "audit log the disk refused (full, failing, read-only).\n"
	    "# TYPE p11vault_storage_errors_total counter\n"
	    "p11vault_storage_errors_total %llu\n",
	    !st.store_failing && !st.audit_failing, !st.store_failing,
	    !st.audit_failing, (unsigned long long)st.errors);
}

/* The audit log's copy to syslog (audit_syslog=true), when it is on. */
static void
put_syslog(struct met_buf *b, struct api_ctx *c)
{
	uint64_t sent = 0, dropped = 0;

	if (vault_audit_syslog_stats(c->vault, &sent, &dropped) != 0)
		return;
	put(b,
	    "# HELP p11vault_audit_syslog_sent_total Audit lines copied to "
	    "audit_syslog_socket.\n"
	    "# TYPE p11vault_audit_syslog_sent_total counter\n"
	    "p11vault_audit_syslog_sent_total %llu\n"
	    "# HELP p11vault_audit_syslog_dropped_total Audit lines the "
	    "syslog socket did not take (audit.log has them).\n"
	    "# TYPE p11vault_audit_syslog_dropped_total counter\n"
	    "p11vault_audit_syslog_dropped_total %llu\n",
	    (unsigned long long)sent, (unsigned long long)dropped);
}

int
api_metrics_render(struct api_ctx *c, char **text, size_t *len)
{
	struct met_buf b = { NULL, 0 };
	uint64_t hits = 0, misses = 0;

	*text = NULL;
	*len = 0;
	if ((b.b = buf_new(MET_TEXT_MAX)) == NULL)
		return VLT_ERR_NO_MEMORY;
	render_series(&b, c->metrics.req, API_MET_SERIES, 0);
	render_series(&b, c->metrics.tok, API_MET_TOKEN_SERIES, 1);
	if (!b.failed && api_admit_render(c, b.b) != 0)
		b.failed = 1;
	if (c->vault != NULL) {
		put_token(&b, c);
		put_storage(&b, c);
		put_syslog(&b, c);
	}
	put_seal(&b, c);
	put(&b,
	    "# HELP p11vault_memory_trims_total Free heap pages handed back "
	    "to the kernel after a burst of new connections.\n"
	    "# TYPE p11vault_memory_trims_total counter\n"
	    "p11vault_memory_trims_total %llu\n",
	    (unsigned long long)atomic_load_explicit(&c->metrics.memory_trims,
	        memory_order_relaxed));
	if (c->vault != NULL &&
	    vault_version_cache_stats(c->vault, &hits, &misses) == 0)
		put(&b,
		    "# HELP p11vault_version_cache_total Key version "
		    "lookups answered from memory (hit) or the store (miss).\n"
		    "# TYPE p11vault_version_cache_total counter\n"
		    "p11vault_version_cache_total{result=\"hit\"} %llu\n"
		    "p11vault_version_cache_total{result=\"miss\"} %llu\n",
		    (unsigned long long)hits, (unsigned long long)misses);
	return met_finish(&b, text, len);
}
