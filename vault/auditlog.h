/* vault/auditlog.h — private to vault/: the chained audit log's state,
 * owned by struct vault. */
#ifndef P11VAULT_VAULT_AUDITLOG_H
#define P11VAULT_VAULT_AUDITLOG_H
#include <stddef.h>

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
int vlt_audit_append(struct vlt_audit *a, const char *object_json,
    int sync) VLT_WUR;
void vlt_audit_close(struct vlt_audit *a);
#endif
