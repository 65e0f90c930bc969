/*
 * ratelimit.c — the operator's rate limits (api/admit.h): token buckets
 * per vault (rate_limit_vault=) and per identity (rate_limit_identity=
 * for each, rate_limit_identities=OID:N,... for named ones), in
 * operations per 10 seconds as Azure Key Vault publishes its limits; and
 * the per-identity request and throttle counts of /metrics.
 *
 * A bucket holds up to N tokens and gains N per 10 s; a request takes one
 * from its identity's bucket and one from the vault's, or from neither
 * (a refused request counts against no limit, as in Azure). Buckets of
 * identities live in a fixed open-addressed table (RL_TABLE); a bucket
 * that has refilled to full is the same as none and is reused when the
 * table is full; with no bucket to be had a request is let through.
 * Metrics by identity: only the identities named in
 * rate_limit_identities (at most RL_NAMED_MAX, chosen by the operator),
 * every other identity summed as identity="other".
 * Must never: hold its lock for more than a table probe.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/admit.h"
#include "hsm/base.h"

#define RL_NAMED_MAX 32
#define RL_TABLE 1024 /* a power of 2 */
#define RL_PERIOD_US 10000000.0

struct rl_bucket {
	char key[ADMIT_KEY_MAX]; /* "": free */
	uint32_t limit;
	double tokens;
	uint64_t last_us;
};

struct rl_named {
	char key[ADMIT_KEY_MAX];
	uint32_t limit;
	atomic_uint_fast64_t requests;
	atomic_uint_fast64_t throttled[ADMIT_REASONS];
};

struct admit_limits {
	pthread_mutex_t mu;
	uint32_t vault_limit, identity_limit;
	struct rl_bucket vault;
	struct rl_bucket *tab; /* RL_TABLE; NULL: no identity limits */
	struct rl_named named[RL_NAMED_MAX];
	size_t nnamed;
	struct rl_named other;
};

static const char *const rl_reason[ADMIT_REASONS] = {
	"capacity",
	"fair_share",
	"vault_limit",
	"identity_limit",
};

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- config ---- */

static int
oid_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n >= ADMIT_KEY_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		        (s[i] >= 'a' && s[i] <= 'z') ||
		        (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '-'))
			return 0;
	return 1;
}

/* One "OID:N" item of rate_limit_identities into l->named. */
static int
named_add(struct admit_limits *l, char *item, char *err, size_t err_len)
{
	char *colon;
	uint64_t n;
	size_t i, klen;

	while (*item == ' ')
		item++;
	klen = strlen(item);
	while (klen > 0 && item[klen - 1] == ' ')
		item[--klen] = '\0';
	if ((colon = strchr(item, ':')) == NULL ||
	    !oid_ok(item, (size_t)(colon - item)) ||
	    parse_u64(colon + 1, UINT32_MAX, &n) != 0 || n == 0) {
		err_set(err, err_len,
		    "rate_limit_identities: '%.48s' is not OBJECT-ID:N (N "
		    "operations per 10 s, 1 or more)",
		    item);
		return VLT_ERR_BAD_PARAM;
	}
	*colon = '\0';
	for (i = 0; i < l->nnamed; i++)
		if (strcmp(l->named[i].key, item) == 0) {
			err_set(err, err_len,
			    "rate_limit_identities: %.40s is named twice",
			    item);
			return VLT_ERR_BAD_PARAM;
		}
	if (l->nnamed == RL_NAMED_MAX) {
		err_set(err, err_len,
		    "rate_limit_identities: more than %d identities",
		    RL_NAMED_MAX);
		return VLT_ERR_BAD_PARAM;
	}
	memcpy(l->named[l->nnamed].key, item, strlen(item) + 1);
	l->named[l->nnamed].limit = (uint32_t)n;
	l->nnamed++;
	return 0;
}

static int
named_parse(struct admit_limits *l, const char *list, char *err, size_t err_len)
{
	char *copy, *item, *save = NULL;
	int rc = 0;

	if (list == NULL)
		return 0;
	if ((copy = strdup(list)) == NULL)
		return VLT_ERR_NO_MEMORY;
	for (item = strtok_r(copy, ",", &save); item != NULL && rc == 0;
	     item = strtok_r(NULL, ",", &save))
		rc = named_add(l, item, err, err_len);
	free(copy);
	return rc;
}

static uint32_t
conf_limit(struct api_ctx *c, const char *key)
{
	const char *s = vault_config(c->vault, key);
	uint64_t n;

	return s != NULL && parse_u64(s, UINT32_MAX, &n) == 0 ? (uint32_t)n : 0;
}

int
admit_limits_open(struct api_ctx *c, struct admit_limits **out, char *err,
    size_t err_len)
{
	struct admit_limits *l;
	int rc;

	*out = NULL;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return VLT_ERR_NO_MEMORY;
	l->vault_limit = conf_limit(c, "rate_limit_vault");
	l->identity_limit = conf_limit(c, "rate_limit_identity");
	l->vault.limit = l->vault_limit;
	l->vault.tokens = l->vault_limit;
	l->vault.last_us = now_us();
	rc = named_parse(l, vault_config(c->vault, "rate_limit_identities"),
	    err, err_len);
	if (rc == 0 && (l->identity_limit != 0 || l->nnamed != 0) &&
	    (l->tab = calloc(RL_TABLE, sizeof(*l->tab))) == NULL)
		rc = VLT_ERR_NO_MEMORY;
	if (rc == 0 && pthread_mutex_init(&l->mu, NULL) != 0)
		rc = VLT_ERR_NO_MEMORY;
	if (rc != 0) {
		free(l->tab);
		free(l);
		return rc;
	}
	*out = l;
	return 0;
}

void
admit_limits_close(struct admit_limits *l)
{
	if (l == NULL)
		return;
	pthread_mutex_destroy(&l->mu);
	free(l->tab);
	free(l);
}

/* ---- buckets (under mu) ---- */

static double
refilled(const struct rl_bucket *b, uint64_t now)
{
	double t = b->tokens +
	    (double)(now - b->last_us) * (double)b->limit / RL_PERIOD_US;

	return t > (double)b->limit ? (double)b->limit : t;
}

static void
refill(struct rl_bucket *b, uint64_t now)
{
	b->tokens = refilled(b, now);
	b->last_us = now;
}

/* Milliseconds until b holds a whole token again. */
static unsigned
wait_ms(const struct rl_bucket *b)
{
	double ms = (1.0 - b->tokens) * RL_PERIOD_US / 1000.0 / b->limit;

	return ms < 1 ? 1u : (unsigned)ms + 1u;
}

static struct rl_named *
named_find(struct admit_limits *l, const char *key)
{
	size_t i;

	for (i = 0; i < l->nnamed; i++)
		if (strcmp(l->named[i].key, key) == 0)
			return &l->named[i];
	return NULL;
}

static size_t
key_hash(const char *key)
{
	uint64_t h = 1469598103934665603u;

	for (; *key != '\0'; key++)
		h = (h ^ (unsigned char)*key) * 1099511628211u;
	return (size_t)(h & (RL_TABLE - 1));
}

/* key's bucket (made full when new); NULL when the table has no room. */
static struct rl_bucket *
bucket_get(struct admit_limits *l, const char *key, uint32_t limit,
    uint64_t now)
{
	struct rl_bucket *b, *spare = NULL;
	size_t i, h = key_hash(key);

	for (i = 0; i < RL_TABLE; i++) {
		b = &l->tab[(h + i) & (RL_TABLE - 1)];
		if (b->key[0] == '\0') {
			spare = b; /* the end of key's probe chain */
			break;
		}
		if (strcmp(b->key, key) == 0)
			return b;
		if (spare == NULL && refilled(b, now) >= (double)b->limit)
			spare = b; /* full: the same as no bucket */
	}
	if (spare == NULL)
		return NULL;
	memcpy(spare->key, key, strlen(key) + 1);
	spare->limit = limit;
	spare->tokens = limit;
	spare->last_us = now;
	return spare;
}

int
admit_limits_take(struct admit_limits *l, const char *key,
    enum admit_reason *why, unsigned *retry_ms)
{
	struct rl_bucket *ib = NULL, *vb = NULL;
	struct rl_named *nm;
	uint32_t lim;
	uint64_t now;
	int refused = 0;

	if (l == NULL || (l->vault_limit == 0 && l->tab == NULL))
		return 0;
	nm = named_find(l, key);
	lim = nm != NULL ? nm->limit : l->identity_limit;
	pthread_mutex_lock(&l->mu);
	now = now_us();
	if (l->vault_limit != 0) {
		vb = &l->vault;
		refill(vb, now);
	}
	if (lim != 0 && l->tab != NULL &&
	    (ib = bucket_get(l, key, lim, now)) != NULL)
		refill(ib, now);
	if (ib != NULL && ib->tokens < 1.0) {
		*why = ADMIT_R_IDENTITY;
		*retry_ms = wait_ms(ib);
		refused = 1;
	} else if (vb != NULL && vb->tokens < 1.0) {
		*why = ADMIT_R_VAULT;
		*retry_ms = wait_ms(vb);
		refused = 1;
	} else {
		if (ib != NULL)
			ib->tokens -= 1.0;
		if (vb != NULL)
			vb->tokens -= 1.0;
	}
	pthread_mutex_unlock(&l->mu);
	return refused;
}

void
admit_limits_count(struct admit_limits *l, const char *key, int throttled,
    enum admit_reason why)
{
	struct rl_named *n;

	if (l == NULL)
		return;
	if ((n = named_find(l, key)) == NULL)
		n = &l->other;
	if (throttled)
		atomic_fetch_add(&n->throttled[why], 1);
	else
		atomic_fetch_add(&n->requests, 1);
}

/* ---- metrics ---- */

/* The identity rows of one family: requests (reason NULL) or
 * throttled by reason. */
static int
render_named(const struct rl_named *n, const char *id, int throttled, buf_t *b)
{
	int rc = 0;
	size_t i;

	if (!throttled)
		return buf_putf(b,
		    "p11vault_identity_requests_total{identity=\"%s\"} %llu\n",
		    id, (unsigned long long)atomic_load(&n->requests));
	for (i = 0; i < ADMIT_REASONS; i++)
		rc |= buf_putf(b,
		    "p11vault_identity_throttled_total{identity=\"%s\","
		    "reason=\"%s\"} %llu\n",
		    id, rl_reason[i],
		    (unsigned long long)atomic_load(&n->throttled[i]));
	return rc;
}

int
admit_limits_render(struct admit_limits *l, buf_t *b)
{
	int rc = 0;
	size_t i;

	if (l == NULL)
		return 0;
	rc |= buf_putf(b,
	    "# HELP p11vault_rate_limit_ops_per_10s The operator's rate "
	    "limits (rate_limit_vault, rate_limit_identity: every identity "
	    "(\"*\"), rate_limit_identities: named ones).\n"
	    "# TYPE p11vault_rate_limit_ops_per_10s gauge\n");
	if (l->vault_limit != 0)
		rc |= buf_putf(b,
		    "p11vault_rate_limit_ops_per_10s{vault=\"default\"} %u\n",
		    l->vault_limit);
	if (l->identity_limit != 0)
		rc |= buf_putf(b,
		    "p11vault_rate_limit_ops_per_10s{identity=\"*\"} %u\n",
		    l->identity_limit);
	for (i = 0; i < l->nnamed; i++)
		rc |= buf_putf(b,
		    "p11vault_rate_limit_ops_per_10s{identity=\"%s\"} %u\n",
		    l->named[i].key, l->named[i].limit);
	rc |= buf_putf(b,
	    "# HELP p11vault_identity_requests_total Key requests by "
	    "identity (those named in rate_limit_identities; the rest as "
	    "\"other\").\n"
	    "# TYPE p11vault_identity_requests_total counter\n");
	for (i = 0; i < l->nnamed; i++)
		rc |= render_named(&l->named[i], l->named[i].key, 0, b);
	rc |= render_named(&l->other, "other", 0, b);
	rc |= buf_putf(b,
	    "# HELP p11vault_identity_throttled_total Requests answered 429, "
	    "by identity (as above) and reason.\n"
	    "# TYPE p11vault_identity_throttled_total counter\n");
	for (i = 0; i < l->nnamed; i++)
		rc |= render_named(&l->named[i], l->named[i].key, 1, b);
	rc |= render_named(&l->other, "other", 1, b);
	return rc != 0 ? VLT_ERR_NO_MEMORY : 0;
}
