/*
 * vault/storage.h — private to vault/: the state of one writer of the
 * disk (the store, the audit log) as a storage-fault episode: failing or
 * not, why, and how many storage errors were seen. Each owner keeps one
 * under its own lock and reports every result; the state logs the first
 * failure of an episode (storage_error, with the reason) and the first
 * success after it (storage_recovered), never once per request.
 */
#ifndef P11VAULT_VAULT_STORAGE_H
#define P11VAULT_VAULT_STORAGE_H

#include <stdint.h>

#define VLT_STORAGE_REASON_MAX 160

struct vlt_storage_state {
	const char *source; /* "store", "audit": the log's source= */
	int failing;
	uint64_t errors;
	char reason[VLT_STORAGE_REASON_MAX];
};

/* A storage error of the owner: counted; logged when it starts an
 * episode. reason: what failed, never data. */
void vlt_storage_fail(struct vlt_storage_state *st, const char *reason);
/* A write that reached the disk: ends an episode (logged). */
void vlt_storage_ok(struct vlt_storage_state *st);
#endif
