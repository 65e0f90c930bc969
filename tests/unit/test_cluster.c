/*
 * tests/unit/test_cluster.c — vault/cluster_pg.c and the generation of
 * vault/store_pg.c on a throwaway PostgreSQL (tests/tools/pgtmp.sh;
 * skipped with a message without it): the cluster tables, a write that
 * returns only once a node's listener has applied it, the lease, the
 * registry (a removed node's lease ends), the leader lock held by one
 * node at a time and taken over when its holder goes.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pgtmp.h"
#include "vault/cluster.h"
#include "vault/store.h"
#include "t.h"


static _Atomic int changes;

static void
on_change(void *arg)
{
	(void)arg;
	atomic_fetch_add(&changes, 1);
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static void
suite(const char *db)
{
	char addr[700], why[256];
	struct vlt_node reg[2], *got = NULL;
	struct cluster *c1 = NULL, *c2 = NULL, *c3 = NULL;
	store_t *s = NULL;
	size_t n = 0;
	int before, i, fresh;

	snprintf(addr, sizeof(addr), "%s#p11vault", db);
	T_CHECK(store_open(addr, 1, &s) == 0, "the root store made");
	store_close(s);
	s = NULL;
	T_CHECK(cluster_pg_tables(db, why, sizeof(why)) == 0 &&
	        cluster_pg_tables(db, why, sizeof(why)) == 0,
	    "the cluster tables (twice: IF NOT EXISTS)");
	T_CHECK(store_open(addr, 0, &s) == 0, "the store opened again");

	T_CHECK(cluster_start(db, "n1", "fp1", 600, on_change, NULL, &c1) ==
	            0 &&
	        atomic_load(&changes) == 1 && cluster_fresh(c1),
	    "a node starts: applied once, its lease fresh");
	before = atomic_load(&changes);
	T_CHECK(store_settings_init(s, &(struct vlt_settings){ 90, 0 }) == 0,
	    "a write");
	T_CHECK(atomic_load(&changes) > before,
	    "the write returned after the node applied it");
	before = atomic_load(&changes);
	T_CHECK(store_settings_update(s, 30, -1) == 0 &&
	        atomic_load(&changes) > before,
	    "every write waits for the node");

	memset(reg, 0, sizeof(reg));
	memcpy(reg[0].fingerprint, "fp1", 4);
	memcpy(reg[0].name, "n1", 3);
	memcpy(reg[1].fingerprint, "fp2", 4);
	memcpy(reg[1].name, "n2", 3);
	T_CHECK(cluster_pg_registry_write(db, reg, 2) == 0 &&
	        cluster_pg_registry_read(db, &got, &n, 16) == 0 && n == 2 &&
	        strcmp(got[0].name, "n1") == 0 && !got[0].removed,
	    "the registry in the store");
	free(got);
	got = NULL;
	reg[0].removed = 1;
	T_CHECK(cluster_pg_registry_write(db, reg, 1) == 0, "n1 removed");
	reg[0].removed = 0;
	T_CHECK(cluster_pg_registry_write(db, reg, 1) == 0 &&
	        cluster_pg_registry_read(db, &got, &n, 16) == 0 && n == 2 &&
	        got[0].removed,
	    "a removal is for ever");
	free(got);
	for (i = 0, fresh = 1; i < 50 && fresh; i++) {
		sleep_ms(100);
		fresh = cluster_fresh(c1);
	}
	T_CHECK(!fresh, "the removed node's lease ends");
	T_CHECK(cluster_start(db, "n1b", "fp1", 600, on_change, NULL, &c3) ==
	            VLT_ERR_FORBIDDEN &&
	        c3 == NULL,
	    "a removed node does not start");
	cluster_stop(c1);

	T_CHECK(cluster_start(db, "n2", "fp2", 600, on_change, NULL, &c2) ==
	            0 &&
	        cluster_start(db, "n3", "", 600, on_change, NULL, &c3) == 0,
	    "two nodes");
	T_CHECK(cluster_leader(c2) && !cluster_leader(c3) && cluster_leader(c2),
	    "the leader lock: one holder");
	cluster_stop(c2);
	for (i = 0; i < 50 && !cluster_leader(c3); i++)
		sleep_ms(100);
	T_CHECK(cluster_leader(c3), "its holder gone, another takes it");
	before = atomic_load(&changes);
	T_CHECK(store_settings_update(s, 45, -1) == 0 &&
	        atomic_load(&changes) > before,
	    "a stopped node is not waited for; the live one is");
	cluster_stop(c3);
	store_close(s);
}

int
main(void)
{
	char tmpl[] = "/tmp/p11vault-cl-XXXXXX", db[600];
	int r;

	if (access(PGTMP, X_OK) != 0 || mkdtemp(tmpl) == NULL) {
		printf("ok - # skip cluster: no %s\n", PGTMP);
		return 0;
	}
	r = pgtmp("start", tmpl, db, sizeof(db));
	if (r == 77) {
		printf("ok - # skip cluster: PostgreSQL is not installed\n");
		rmdir(tmpl);
		return 0;
	}
	T_CHECK(r == 0 && db[0] != '\0', "a throwaway server");
	if (r == 0)
		suite(db);
	(void)pgtmp("destroy", tmpl, NULL, 0);
	return T_DONE();
}
