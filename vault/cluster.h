/*
 * vault/cluster.h — private to vault/: several nodes on one PostgreSQL
 * store (docs/cluster.md, "Coherence across nodes").
 *
 * The cluster's tables live in the root schema p11vault (made by
 * cluster_pg_tables, IF NOT EXISTS): cluster_state (one row: the
 * cluster generation, bumped by every write transaction of every vault
 * of the store, with a NOTIFY p11vault_gen), cluster_nodes (a row per
 * serving node: the generation it has applied and when it last
 * confirmed it, its lease) and cluster_registry (the approved and removed
 * nodes of the join ceremony).
 *
 * store_pg.c bumps the generation in each write transaction and, after
 * its COMMIT, waits until every other node with a fresh lease has applied
 * it (or its lease has run out), so that an acknowledged write holds on
 * every node's next request. cluster_pg.c runs each node's listener
 * (LISTEN, the lease, the reload) and the sweeper's leader lock.
 */
#ifndef P11VAULT_VAULT_CLUSTER_H
#define P11VAULT_VAULT_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "vault/vault.h"

#define CLUSTER_LEASE_MS_DEFAULT 1500
#define CLUSTER_ID_MAX 64

/* store_pg.c: this process's node id (its cluster_nodes row, "": none,
 * e.g. a command-line tool) and the lease, for the wait after a
 * write's commit. Set once, before any write. */
void store_pg_cluster_self(const char *id, int lease_ms);

/* cluster_pg.c: the cluster tables in the database conninfo (the store
 * address without "#schema"), if missing. */
int cluster_pg_tables(const char *conninfo, char *why, size_t cap) VLT_WUR;

/* The registry (vault/node.c's reg_read and reg_write, on a PostgreSQL
 * store): every row; and a whole new list in one transaction. */
int cluster_pg_registry_read(const char *conninfo, struct vlt_node **out,
    size_t *n, size_t max) VLT_WUR;
int cluster_pg_registry_write(const char *conninfo, const struct vlt_node *a,
    size_t n) VLT_WUR;

struct cluster;
/* The node's listener thread: its row in cluster_nodes, LISTEN, a round
 * every lease/5 ms or at once on a notification: the generation read,
 * on_change(arg) called when it moved (and once at the start), the row
 * updated, the lease renewed. The first round runs before this returns.
 * fingerprint: the node's transport-key fingerprint ("" for the first
 * node), refused (VLT_ERR_FORBIDDEN) when the registry says removed. */
int cluster_start(const char *conninfo, const char *id, const char *fingerprint,
    int lease_ms, void (*on_change)(void *), void *arg,
    struct cluster **out) VLT_WUR;
void cluster_stop(struct cluster *c);
/* 1 while the lease is fresh (an atomic load and a clock read). */
int cluster_fresh(struct cluster *c);
/* The sweeper's session-level advisory lock, on a connection of its own
 * (the caller's thread only): 1 while held. */
int cluster_leader(struct cluster *c);

#endif
