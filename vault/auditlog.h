/* vault/auditlog.h — private to vault/: the chained audit log's state,
 * owned by struct vault. */
#ifndef P11VAULT_VAULT_AUDITLOG_H
#define P11VAULT_VAULT_AUDITLOG_H
#include <stddef.h>
#include <stdint.h>

#include "vault/vault.h"

struct vlt_audit;
/* The event of the record that says a torn tail was cut (the first
 * member after "prev", which is how verification knows it). */
#define VLT_AUDIT_TAIL_REPAIRED "audit_tail_repaired"
/* Opens DIR/audit/audit.log (creating DIR/audit 0700), recovering the
 * chain's last hash from the newest file. max_bytes: rotate beyond it
 * (0 = 64 MiB). An incomplete last line is first moved aside into
 * DIR/audit/audit.log.torn-N and cut off, both durably; *repair says
 * what was cut (length 0: nothing), for the caller to chain a record of
 * it (vault_audit_repaired) before any other line. */
int vlt_audit_open(const char *data_dir, size_t max_bytes,
    struct vlt_audit **out, struct vlt_audit_repair *repair) VLT_WUR;
/* 0 once the line is in the file (synced too with sync); the line stays
 * queued, in chain order, when it cannot be written (VLT_ERR_STORAGE),
 * and is written by the next attempt. */
int vlt_audit_append(struct vlt_audit *a, const char *object_json,
    int sync) VLT_WUR;
/* 0 when the log takes lines: after a failed write, the pending lines
 * are written first (the next request retries them); else
 * VLT_ERR_STORAGE. */
int vlt_audit_ready(struct vlt_audit *a) VLT_WUR;
/* The log's storage-fault state: failing now, storage errors so far, the
 * episode's reason (at most cap bytes). */
void vlt_audit_state(struct vlt_audit *a, int *failing, uint64_t *errors,
    char *reason, size_t cap);
void vlt_audit_close(struct vlt_audit *a);
#endif
