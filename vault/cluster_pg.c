/*
 * vault/cluster_pg.c — the cluster's own SQL (vault/cluster.h): its
 * tables, the node registry in the shared store, each node's listener
 * (LISTEN p11vault_gen, the generation it has applied, its lease) and
 * the sweeper's leader lock.
 *
 * The lease: a round of the listener reads the cluster generation,
 * applies it (on_change) when it moved, then records it with the
 * database's clock in the node's cluster_nodes row; when the row is
 * written, the node's lease runs until the monotonic time taken at the
 * round's start plus lease_ms. A writer waits after its COMMIT until
 * every node whose row is fresher than lease_ms (+ a margin) has applied
 * its generation (store_pg.c gen_wait), so a node either has applied a
 * write before the write's answer, or its lease has run out by then
 * and it answers 503 until a round succeeds again.
 *
 * Must never: renew the lease of a node that has not applied every
 * generation up to the one it records; log the connection string.
 */
#include "vault/cluster.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "hsm/base.h"

/* store_pg.c's advisory lock class (0x7031), keys of our own */
#define LOCK_CLASS "28721"
#define TABLES_KEY "1"
#define LEADER_KEY "2"

struct cluster {
	char *conninfo;
	char id[CLUSTER_ID_MAX + 1];
	char fp[VLT_FINGERPRINT_LEN + 1];
	int lease_ms;
	void (*on_change)(void *);
	void *arg;
	PGconn *c;      /* the listener's, its thread's only */
	PGconn *leader; /* the sweeper's, its thread's only */
	int leading;    /* the leader lock is held on leader */
	int64_t applied;
	int started;
	_Atomic int64_t fresh_until; /* monotonic ns; 0: none */
	_Atomic int stop;
	_Atomic int removed;
	pthread_t t;
};

static int64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The server's notices (IF NOT EXISTS skipping) are not ours to print. */
static void
notice_quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

static PGconn *
db_connect(const char *conninfo, const char *app)
{
	/* a server that takes writes, whatever the address says (as the
	 * store's conn_make) */
	const char *const kw[] = { "connect_timeout", "application_name",
		"dbname", "target_session_attrs", NULL };
	const char *const val[] = { "3", app, conninfo, "read-write", NULL };
	PGconn *c = PQconnectdbParams(kw, val, 1);

	if (c != NULL && PQstatus(c) != CONNECTION_OK) {
		PQfinish(c);
		c = NULL;
	}
	if (c != NULL)
		(void)PQsetNoticeProcessor(c, notice_quiet, NULL);
	return c;
}

/* A statement with text parameters; 0 when it ran (rows into *out when
 * out is not NULL). */
static int
db_exec(PGconn *c, const char *sql, int n, const char *const *v, PGresult **out)
{
	PGresult *res = PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

	if (ok && out != NULL) {
		*out = res;
		return 0;
	}
	PQclear(res);
	return ok ? 0 : VLT_ERR_UNAVAILABLE;
}

static const char *const tables[] = {
	"CREATE TABLE IF NOT EXISTS p11vault.cluster_state ("
	" id bigint PRIMARY KEY CHECK (id = 1), gen bigint NOT NULL)",
	"INSERT INTO p11vault.cluster_state VALUES (1, 0) "
	"ON CONFLICT DO NOTHING",
	"CREATE TABLE IF NOT EXISTS p11vault.cluster_nodes ("
	" id text COLLATE \"C\" PRIMARY KEY,"
	" fingerprint text COLLATE \"C\" NOT NULL,"
	" seen_gen bigint NOT NULL, seen_at timestamptz NOT NULL)",
	"CREATE TABLE IF NOT EXISTS p11vault.cluster_registry ("
	" fingerprint text COLLATE \"C\" PRIMARY KEY,"
	" name text COLLATE \"C\" NOT NULL, removed boolean NOT NULL,"
	" seq bigserial)",
};

int
cluster_pg_tables(const char *conninfo, char *why, size_t cap)
{
	PGresult *res = NULL;
	PGconn *c;
	size_t i;
	int r, there;

	if (cap > 0)
		why[0] = '\0';
	if ((c = db_connect(conninfo, "p11vault")) == NULL) {
		err_set(why, cap, "%s", "the database cannot be reached");
		return VLT_ERR_UNAVAILABLE;
	}
	r = db_exec(c, "SELECT to_regnamespace('p11vault') IS NOT NULL", 0,
	    NULL, &res);
	there = r == 0 && PQntuples(res) == 1 &&
	    strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (r != 0 || !there)
		goto out; /* no root schema: nothing to add to */
	if ((r = db_exec(c, "BEGIN", 0, NULL, NULL)) != 0 ||
	    (r = db_exec(c,
	         "SELECT pg_advisory_xact_lock(" LOCK_CLASS ", " TABLES_KEY ")",
	         0, NULL, NULL)) != 0)
		goto out;
	for (i = 0; r == 0 && i < sizeof(tables) / sizeof(tables[0]); i++)
		r = db_exec(c, tables[i], 0, NULL, NULL);
	r = db_exec(c, r == 0 ? "COMMIT" : "ROLLBACK", 0, NULL, NULL) != 0 ?
	    VLT_ERR_UNAVAILABLE :
	    r;
	if (r != 0)
		err_set(why, cap, "%s", "the cluster tables cannot be made");
out:
	PQfinish(c);
	return r;
}

/* ---- the registry ---- */

int
cluster_pg_registry_read(const char *conninfo, struct vlt_node **out, size_t *n,
    size_t max)
{
	PGresult *res = NULL;
	struct vlt_node *a;
	PGconn *c;
	int i, rows, r;

	*out = NULL;
	*n = 0;
	if ((a = calloc(max, sizeof(*a))) == NULL)
		return VLT_ERR_NO_MEMORY;
	if ((c = db_connect(conninfo, "p11vault")) == NULL) {
		free(a);
		return VLT_ERR_UNAVAILABLE;
	}
	r = db_exec(c,
	    "SELECT fingerprint, name, removed FROM "
	    "p11vault.cluster_registry ORDER BY seq",
	    0, NULL, &res);
	PQfinish(c);
	if (r != 0) {
		free(a);
		return r;
	}
	rows = PQntuples(res);
	for (i = 0; i < rows && (size_t)i < max; i++) {
		if (str_fmt(a[*n].fingerprint, sizeof(a[*n].fingerprint), "%s",
		        PQgetvalue(res, i, 0)) != 0 ||
		    str_fmt(a[*n].name, sizeof(a[*n].name), "%s",
		        PQgetvalue(res, i, 1)) != 0)
			continue;
		a[*n].removed = strcmp(PQgetvalue(res, i, 2), "t") == 0;
		(*n)++;
	}
	PQclear(res);
	*out = a;
	return 0;
}

int
cluster_pg_registry_write(const char *conninfo, const struct vlt_node *a,
    size_t n)
{
	const char *v[3];
	PGconn *c;
	size_t i;
	int r;

	if ((c = db_connect(conninfo, "p11vault")) == NULL)
		return VLT_ERR_UNAVAILABLE;
	r = db_exec(c, "BEGIN", 0, NULL, NULL);
	for (i = 0; r == 0 && i < n; i++) {
		v[0] = a[i].fingerprint;
		v[1] = a[i].name;
		v[2] = a[i].removed ? "true" : "false";
		r = db_exec(c,
		    "INSERT INTO p11vault.cluster_registry "
		    "(fingerprint, name, removed) VALUES ($1, $2, $3::bool) "
		    "ON CONFLICT (fingerprint) DO UPDATE SET name = $2, "
		    /* removed is for ever */
		    "removed = cluster_registry.removed OR $3::bool",
		    3, v, NULL);
	}
	/* a removal holds at once on every running node: the generation
	 * moves (their next round reads the registry) */
	if (r == 0)
		r = db_exec(c,
		    "UPDATE p11vault.cluster_state SET gen = gen + 1", 0, NULL,
		    NULL);
	r = db_exec(c, r == 0 ? "COMMIT" : "ROLLBACK", 0, NULL, NULL) != 0 ?
	    VLT_ERR_UNAVAILABLE :
	    r;
	PQfinish(c);
	return r;
}

/* ---- the listener ---- */

static int
listen_connect(struct cluster *c)
{
	if (c->c != NULL && PQstatus(c->c) == CONNECTION_OK)
		return 0;
	if (c->c != NULL)
		PQfinish(c->c);
	if ((c->c = db_connect(c->conninfo, "p11vault-listen")) == NULL)
		return VLT_ERR_UNAVAILABLE;
	if (db_exec(c->c, "LISTEN p11vault_gen", 0, NULL, NULL) != 0) {
		PQfinish(c->c);
		c->c = NULL;
		return VLT_ERR_UNAVAILABLE;
	}
	c->started = 0; /* notifications may have been missed: reload */
	return 0;
}

/* One round: generation, apply, record, renew. */
static int
round_once(struct cluster *c)
{
	const char *v[3];
	char gen[24];
	int64_t t0 = mono_ns(), g = 0;
	PGresult *res = NULL, *n;
	int removed;

	if (listen_connect(c) != 0)
		return VLT_ERR_UNAVAILABLE;
	while ((n = (PGresult *)PQnotifies(c->c)) != NULL)
		PQfreemem(n); /* the round reads the generation itself */
	v[0] = c->fp;
	if (db_exec(c->c,
	        "SELECT (SELECT gen FROM p11vault.cluster_state), "
	        "EXISTS (SELECT 1 FROM p11vault.cluster_registry "
	        "WHERE fingerprint = $1 AND removed)",
	        1, v, &res) != 0)
		goto lost;
	removed = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	if (parse_i64(PQgetvalue(res, 0, 0), 0, INT64_MAX, &g) != 0) {
		PQclear(res);
		goto lost;
	}
	PQclear(res);
	if (removed) {
		atomic_store(&c->removed, 1);
		atomic_store(&c->fresh_until, 0);
		return VLT_ERR_FORBIDDEN;
	}
	if (!c->started || g != c->applied) {
		c->on_change(c->arg);
		c->applied = g;
		c->started = 1;
	}
	if (str_fmt(gen, sizeof(gen), "%lld", (long long)c->applied) != 0)
		return VLT_ERR_INTERNAL;
	v[0] = c->id;
	v[1] = c->fp;
	v[2] = gen;
	if (db_exec(c->c,
	        "INSERT INTO p11vault.cluster_nodes VALUES ($1, $2, "
	        "$3::bigint, clock_timestamp()) ON CONFLICT (id) DO UPDATE "
	        "SET seen_gen = $3::bigint, seen_at = clock_timestamp()",
	        3, v, NULL) != 0)
		goto lost;
	atomic_store(&c->fresh_until, t0 + (int64_t)c->lease_ms * 1000000);
	return 0;
lost:
	PQfinish(c->c);
	c->c = NULL;
	return VLT_ERR_UNAVAILABLE;
}

/* Until the next round is due (lease/5) or a notification came. */
static void
wait_round(struct cluster *c)
{
	int ms = c->lease_ms / 5;
	struct pollfd p;
	PGnotify *n;

	if (c->c == NULL) {
		struct timespec ts = { 0, 50000000 };

		nanosleep(&ts, NULL);
		return;
	}
	p.fd = PQsocket(c->c);
	p.events = POLLIN;
	p.revents = 0;
	if (poll(&p, 1, ms) > 0 && PQconsumeInput(c->c) == 1 &&
	    (n = PQnotifies(c->c)) != NULL)
		PQfreemem(n);
}

static void *
listener_main(void *arg)
{
	struct cluster *c = arg;

	while (!atomic_load(&c->stop)) {
		wait_round(c);
		if (atomic_load(&c->stop))
			break;
		if (round_once(c) == VLT_ERR_FORBIDDEN) {
			fprintf(stderr,
			    "{\"level\":\"error\",\"event\":"
			    "\"node_removed\",\"msg\":\"this node was removed "
			    "from the cluster: it answers nothing\"}\n");
			break;
		}
	}
	return NULL;
}

int
cluster_start(const char *conninfo, const char *id, const char *fingerprint,
    int lease_ms, void (*on_change)(void *), void *arg, struct cluster **out)
{
	struct cluster *c;
	int r, i;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return VLT_ERR_NO_MEMORY;
	if ((c->conninfo = strdup(conninfo)) == NULL ||
	    str_fmt(c->id, sizeof(c->id), "%s", id) != 0 ||
	    str_fmt(c->fp, sizeof(c->fp), "%s", fingerprint) != 0) {
		r = VLT_ERR_BAD_PARAM;
		goto fail;
	}
	c->lease_ms = lease_ms > 0 ? lease_ms : CLUSTER_LEASE_MS_DEFAULT;
	c->on_change = on_change;
	c->arg = arg;
	/* rows of nodes gone for a day (killed: no row removal) */
	if (listen_connect(c) == 0)
		(void)db_exec(c->c,
		    "DELETE FROM p11vault.cluster_nodes WHERE seen_at < "
		    "clock_timestamp() - interval '1 day'",
		    0, NULL, NULL);
	/* the first round before serving: a few tries */
	for (i = 0; (r = round_once(c)) == VLT_ERR_UNAVAILABLE && i < 3; i++)
		;
	if (r != 0)
		goto fail;
	if (pthread_create(&c->t, NULL, listener_main, c) != 0) {
		r = VLT_ERR_INTERNAL;
		goto fail;
	}
	*out = c;
	return 0;
fail:
	if (c->c != NULL)
		PQfinish(c->c);
	if (c->conninfo != NULL)
		freezero(c->conninfo, strlen(c->conninfo));
	free(c);
	return r;
}

void
cluster_stop(struct cluster *c)
{
	const char *v[1];

	if (c == NULL)
		return;
	atomic_store(&c->stop, 1);
	pthread_join(c->t, NULL);
	if (c->c != NULL) {
		/* leaving: writers no longer wait for this node */
		v[0] = c->id;
		(void)db_exec(c->c,
		    "DELETE FROM p11vault.cluster_nodes WHERE id = $1", 1, v,
		    NULL);
		PQfinish(c->c);
	}
	if (c->leader != NULL)
		PQfinish(c->leader);
	freezero(c->conninfo, strlen(c->conninfo));
	free(c);
}

int
cluster_fresh(struct cluster *c)
{
	struct timespec ts;

	if (c == NULL)
		return 1;
	/* the coarse clock (a few ns; behind the fine one by a tick, a few
	 * ms: the writers' margin, 200 ms, covers it) */
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec <
	    atomic_load_explicit(&c->fresh_until, memory_order_acquire);
}

int
cluster_leader(struct cluster *c)
{
	PGresult *res = NULL;
	int ok;

	if (c == NULL)
		return 1;
	if (atomic_load(&c->removed))
		return 0;
	if (c->leader == NULL &&
	    (c->leader = db_connect(c->conninfo, "p11vault-sweeper")) == NULL)
		return 0;
	if (c->leading) {
		/* held while the session lives */
		if (db_exec(c->leader, "SELECT 1", 0, NULL, NULL) == 0)
			return 1;
		goto lost;
	}
	if (db_exec(c->leader,
	        "SELECT pg_try_advisory_lock(" LOCK_CLASS ", " LEADER_KEY ")",
	        0, NULL, &res) != 0)
		goto lost;
	ok = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	c->leading = ok;
	return ok;
lost:
	PQfinish(c->leader);
	c->leader = NULL;
	c->leading = 0;
	return 0;
}
