/* vault/auditlog.h — private to vault/: the chained audit log's state,
 * owned by struct vault. */
#ifndef P11VAULT_VAULT_AUDITLOG_H
#define P11VAULT_VAULT_AUDITLOG_H
#include <stddef.h>
#include <stdint.h>

#include "hsm/buf.h"
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
 * it (vault_audit_repaired) before any other line. When the disk refuses
 * the copy or the cut (full, failing), the log still opens, failing
 * (VLT_ERR_STORAGE to every line) with nothing cut, and the first write
 * that can keeps the bytes aside and cuts them, then writes the record:
 * a full disk at start is not an error of the open. */
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
/* The text of "key":"..." in a record this vault wrote (key includes the
 * opening quote of the value): letters, digits and the characters of
 * punct only, at most cap - 1 bytes; else VLT_ERR_BAD_PARAM. */
int audit_field_text(const char *line, const char *key, const char *punct,
    char *dst, size_t cap) VLT_WUR;
/* The log's storage-fault state: failing now, storage errors so far, the
 * episode's reason (at most cap bytes). */
void vlt_audit_state(struct vlt_audit *a, int *failing, uint64_t *errors,
    char *reason, size_t cap);
/* Writes a checkpoint (signed, vault/audit_ckpt.c) first when lines are
 * left after the last one. */
void vlt_audit_close(struct vlt_audit *a);

/* ---- the copy to syslog (vault/audit_syslog.c) ---- */
#define VLT_SYSLOG_SOCKET_DEFAULT "/dev/log"
struct vlt_syslog;
/* A sender to the AF_UNIX datagram socket at socket_path (the socket is
 * made now, before any filter; never connected): VLT_ERR_BAD_PARAM when
 * the path does not fit a socket address. */
int vlt_syslog_open(const char *socket_path, struct vlt_syslog **out) VLT_WUR;
void vlt_syslog_close(struct vlt_syslog *s);
/* Bytes (n at p) that reached the file, in file order: each whole line
 * sent as a datagram; the start of a line cut by a short write is kept
 * for the rest. Never blocks; a line not taken is counted as dropped. */
void vlt_syslog_forward(struct vlt_syslog *s, const char *p, size_t n);
void vlt_syslog_counts(struct vlt_syslog *s, uint64_t *sent, uint64_t *dropped);
/* From now on the log hands s (owned from now) every byte it writes,
 * checkpoints and repair records included. Before the first line. */
void vlt_audit_set_syslog(struct vlt_audit *a, struct vlt_syslog *s);
/* The log's sender, or NULL (audit_syslog is off). */
struct vlt_syslog *vlt_audit_syslog(struct vlt_audit *a);

/* ---- signed checkpoints (vault/audit_ckpt.c) ---- */
#define VLT_AUDIT_CHECKPOINT "audit_checkpoint"
/* What signs the checkpoints: sign(ctx, msg) is ES256 over msg with the
 * token's audit key (kid: its id); every_lines / every_seconds: a
 * checkpoint after that many lines or seconds since the last (0: never
 * for that reason). */
struct vlt_audit_signer {
	int (*sign)(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[64],
	    char kid[VLT_AUDIT_KID_LEN + 1]);
	void *ctx;
	uint64_t every_lines;
	uint64_t every_seconds;
};
/* From now on the log writes checkpoints signed by s (copied). */
void vlt_audit_set_signer(struct vlt_audit *a,
    const struct vlt_audit_signer *s);
/* A checkpoint now (at open, after the repair record if any), synced. A
 * failed signature is logged and is not an error of the log (the next
 * line tries again): 0, or VLT_ERR_STORAGE when the line could not be
 * written. */
int vlt_audit_checkpoint(struct vlt_audit *a) VLT_WUR;
/* The checkpoint record of the chain at head (lines before it), signed
 * by s, as a JSON object's text (without "prev") into obj. */
int vlt_ckpt_build(const struct vlt_audit_signer *s, const char head[65],
    uint64_t lines, buf_t *obj) VLT_WUR;
/* Whether line (n bytes, its chain checked) is a checkpoint; its
 * "lines". */
int vlt_ckpt_is(const char *line, size_t n);
int vlt_ckpt_lines(const char *line, uint64_t *lines) VLT_WUR;
/* A public key to check checkpoints with (PEM file). */
struct vlt_ckpt_key;
int vlt_ckpt_key_load(const char *pem_path, struct vlt_ckpt_key **out) VLT_WUR;
void vlt_ckpt_key_free(struct vlt_ckpt_key *k);
/* Checks checkpoint line against the chain hash before it (prev) and k
 * (NULL: no key, a failure): 0, with its "lines"; else why. */
int vlt_ckpt_check(const struct vlt_ckpt_key *k, const char *line, size_t n,
    const char prev[65], uint64_t *lines, const char **why) VLT_WUR;
#endif
