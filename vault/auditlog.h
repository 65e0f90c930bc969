/* vault/auditlog.h — private to vault/: the chained audit log's state,
 * owned by struct vault. */
#ifndef P11VAULT_VAULT_AUDITLOG_H
#define P11VAULT_VAULT_AUDITLOG_H
#include <stddef.h>

#include "vault/vault.h"

struct vlt_audit;
/* Opens DIR/audit/audit.log (creating DIR/audit 0700), recovering the
 * chain's last hash from the newest file. max_bytes: rotate beyond it
 * (0 = 64 MiB). */
int vlt_audit_open(const char *data_dir, size_t max_bytes,
    struct vlt_audit **out) VLT_WUR;
int vlt_audit_append(struct vlt_audit *a, const char *object_json,
    int sync) VLT_WUR;
void vlt_audit_close(struct vlt_audit *a);
#endif
