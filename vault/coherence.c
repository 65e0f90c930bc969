/*
 * vault/coherence.c — a serving node of a cluster (docs/cluster.md,
 * "Coherence across nodes"): its listener started and stopped, what a
 * generation move does to this node's caches (the children's list, every
 * store's version cache, then the caller's own: the API's policies), the
 * lease test of the request path and the sweeper's leadership.
 *
 * Must never: serve from a cache while the lease is out (the request
 * path asks vault_cluster_serving); run the sweeps on two nodes at once.
 */
#include "vault/vault_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsm/base.h"
#include "vault/cluster.h"

/* On the listener thread: another node (or this one) wrote. */
static void
on_change(void *arg)
{
	vault_t *v = arg, **kids = NULL;
	size_t n = 0, i;

	if (children_sync(v) != 0)
		fprintf(stderr,
		    "{\"level\":\"warn\",\"event\":"
		    "\"cluster_vaults_sync_failed\"}\n");
	store_invalidate(v->store);
	if (children_all(v, &kids, &n) == 0) {
		for (i = 0; i < n; i++) {
			store_invalidate(kids[i]->store);
			vault_child_release(kids[i]);
		}
		free(kids);
	}
	if (v->on_change != NULL)
		v->on_change(v->on_change_arg);
}

int
vault_cluster_start(vault_t *v, void (*fn)(void *), void *arg, char *err,
    size_t err_len)
{
	const char *db, *fp, *lease;
	char id[VLT_ID_LEN + 1];
	uint64_t ms = CLUSTER_LEASE_MS_DEFAULT;
	int r;

	err_set(err, err_len, "%s", "");
	if (v == NULL || v->root != NULL)
		return VLT_ERR_BAD_PARAM;
	if ((db = conf_get(v->conf, "store")) == NULL)
		return 0; /* SQLite: one node */
	fp = conf_get(v->conf, "node_fingerprint");
	lease = conf_get(v->conf, "cluster_lease_ms");
	if (lease != NULL && parse_u64(lease, 60000, &ms) != 0) {
		err_set(err, err_len, "%s",
		    "cluster_lease_ms= is not a number of milliseconds");
		return VLT_ERR_BAD_PARAM;
	}
	if (ms < 100)
		ms = 100;
	if ((r = random_uuid(id)) != 0)
		return r;
	v->on_change = fn;
	v->on_change_arg = arg;
	store_pg_cluster_self(id, (int)ms);
	r = cluster_start(db, id, fp != NULL ? fp : "", (int)ms, on_change, v,
	    &v->cluster);
	if (r == VLT_ERR_FORBIDDEN)
		err_set(err, err_len, "%s",
		    "this node was removed from the cluster (p11vault node "
		    "remove): it serves no more");
	else if (r != 0)
		err_set(err, err_len, "%s",
		    "the cluster's generation cannot be read from the "
		    "PostgreSQL store");
	return r;
}

void
vault_cluster_stop(vault_t *v)
{
	if (v == NULL || v->root != NULL)
		return;
	cluster_stop(v->cluster);
	v->cluster = NULL;
}

int
vault_cluster_serving(vault_t *v)
{
	if (v != NULL && v->root != NULL)
		v = v->root;
	return v == NULL || v->cluster == NULL || cluster_fresh(v->cluster);
}

int
vault_cluster_leader(vault_t *v)
{
	if (v != NULL && v->root != NULL)
		v = v->root;
	return v == NULL || v->cluster == NULL || cluster_leader(v->cluster);
}
