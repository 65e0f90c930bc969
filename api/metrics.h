/*
 * api/metrics.h — the counters behind GET /metrics, kept in the server's
 * context (struct api_ctx.metrics) rather than in globals. All zero is an
 * empty, ready table (a context made with memset starts counting), so the
 * type is complete here; only metrics.c reads or writes its fields.
 */
#ifndef P11VAULT_API_METRICS_H
#define P11VAULT_API_METRICS_H

#include <stdatomic.h>

#define API_MET_SERIES 192      /* (operation, status) pairs */
#define API_MET_TOKEN_SERIES 32 /* (operation, result) pairs */
#define API_MET_BUCKETS 13      /* the last is +Inf */

struct api_met_hist {
	atomic_uint_fast64_t bucket[API_MET_BUCKETS]; /* not cumulative */
	atomic_uint_fast64_t count;
	atomic_uint_fast64_t sum_us;
};

struct api_met_series {
	atomic_int state; /* 0 free, 1 being claimed, 2 ready */
	const char *op;   /* a handler's string literal */
	unsigned status;
	struct api_met_hist h;
};

struct api_metrics {
	struct api_met_series req[API_MET_SERIES];
	struct api_met_series tok[API_MET_TOKEN_SERIES];
	atomic_uint_fast64_t memory_trims; /* malloc_trim after a burst */
};

#endif
