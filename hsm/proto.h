/*
 * hsm/proto.h — the messages between the network process (client.c) and
 * the token process (tokend.c). Private to hsm/ (and its fuzz target).
 *
 * A message is a 16-byte header and a payload of fields:
 *
 *	u8 version (TOKP_VERSION) | u8 op | u16 nfields | u32 id |
 *	i32 status | u32 payload length            (all big-endian)
 *	payload: nfields times (u32 length | bytes)
 *
 * A request carries status 0; its answer repeats op and id and carries an
 * HSM_OK / HSM_ERR_* status, with the answer's fields only when HSM_OK.
 * Every op has a fixed shape for its request and for its answer (field
 * count, each field's kind and cap), checked by tokp_recv before anyone
 * looks at a field: a message of the wrong shape is refused whole.
 *
 * Must never: read a length before checking it against its cap; leave a
 * message that may hold a PIN, a plaintext or a DEK unwiped.
 */
#ifndef P11VAULT_HSM_PROTO_H
#define P11VAULT_HSM_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "hsm/hsm.h"

#define TOKP_VERSION 1
#define TOKP_HDR_LEN 16
#define TOKP_FIELDS_MAX 8
#define TOKP_DATA_MAX (1024 * 1024) /* seal/unseal input (backups) */
#define TOKP_PAYLOAD_MAX (TOKP_DATA_MAX + 4096)
#define TOKP_BLOB_MAX (16 * 1024) /* a key blob (hsm_int.h HSM_BLOB_MAX) */
#define TOKP_SPKI_MAX 4096
#define TOKP_RSA_MAX 512 /* 4096-bit modulus */
#define TOKP_DIGEST_MAX 64
#define TOKP_JWT_DATA_MAX (64 * 1024)
#define TOKP_AUDIT_DATA_MAX 1024 /* a checkpoint's signed bytes */
#define TOKP_PKCS8_MAX (8 * 1024)
#define TOKP_TRANSFER_MAX (16 * 1024)
#define TOKP_PATH_MAX 4096
#define TOKP_LABEL_MAX 32
#define TOKP_USER_MAX 64
#define TOKP_PIN_MAX 256
#define TOKP_AUTO_MAX 1024          /* an unattended method and its arg */
#define TOKP_SHARE_MAX 128          /* one share's text */
#define TOKP_SHARES_MAX 2048        /* every share, a line each */
#define TOKP_BUNDLE_MAX (64 * 1024) /* a join bundle, a request */
#define TOKP_CHAN_MAX 250           /* channels per token process */
#define TOKP_BOOT_FD 3              /* the token process's boot socket */

enum tokp_op {
	TOKP_HELLO = 1,  /* boot: config + channel fds; answer: open's rc */
	TOKP_TOKEN_INIT, /* boot: a one-shot token process inits a token */
	TOKP_HEALTH,
	TOKP_GENERATE,
	TOKP_DECRYPT,
	TOKP_SIGN,
	TOKP_FORGET,
	TOKP_JWT_SIGN,
	TOKP_JWT_PUBLIC,
	TOKP_STATS,
	TOKP_IMPORT,
	TOKP_IMPORT_BYOK,
	TOKP_SEAL,
	TOKP_UNSEAL,
	TOKP_UPGRADE,
	TOKP_SEAL_STATUS, /* is the token unsealed; shares taken so far */
	TOKP_SHARE,       /* an operator key share, or a reset */
	TOKP_REKEY,       /* boot: a one-shot token process rekeys */
	TOKP_AUDIT_SIGN,  /* an audit checkpoint, with the audit key */
	TOKP_AUDIT_PUBLIC,
	TOKP_NODE,   /* boot: a one-shot clustering ceremony (node.c) */
	TOKP_REWRAP, /* a blob from the old domain key to the new */
	TOKP_OP_COUNT
};

struct tokp_field {
	const uint8_t *p;
	uint32_t len;
};

/* A received message; fields point into raw (owned, wiped by
 * tokp_msg_clear). */
struct tokp_msg {
	uint8_t op;
	uint32_t id;
	int32_t status;
	uint16_t n;
	struct tokp_field f[TOKP_FIELDS_MAX];
	uint8_t *raw;
	size_t raw_len; /* raw's size (wiped whole) */
	size_t len;     /* the message's length in raw */
};

/* A message being built; on any failure err is set (TOKP_BUF_NOMEM when
 * an allocation failed, TOKP_BUF_BAD for anything else: too many or too
 * long fields) and tokp_send refuses it. */
#define TOKP_BUF_BAD 1
#define TOKP_BUF_NOMEM 2
struct tokp_buf {
	uint8_t *p;
	size_t len, cap;
	uint16_t n;
	int err;
};

void tokp_begin(struct tokp_buf *b, enum tokp_op op, uint32_t id,
    int32_t status);
void tokp_put(struct tokp_buf *b, const void *p, size_t len);
void tokp_put_u32(struct tokp_buf *b, uint32_t v);
void tokp_put_u64(struct tokp_buf *b, uint64_t v);
void tokp_put_str(struct tokp_buf *b, const char *s);
/* Wipes and frees the buffer. */
void tokp_buf_clear(struct tokp_buf *b);
/* HSM_ERR_NO_MEMORY or HSM_ERR_ARGS for a buffer with err set (which
 * kind of failure), 0 when none. */
int tokp_buf_status(const struct tokp_buf *b) HSM_WUR;

/*
 * Parses one whole message (header and payload) held in buf. response:
 * check it against the op's answer shape (a non-OK status has no
 * fields), else against its request shape. The fields point into buf;
 * m->raw is not set. 0, or -1 for anything malformed.
 */
int tokp_parse(const uint8_t *buf, size_t len, int response,
    struct tokp_msg *m) HSM_WUR;

/* Field accessors; -1 if the field is not of that kind. tokp_str copies
 * a string field (no NUL inside) into out[cap]. */
int tokp_u32(const struct tokp_field *f, uint32_t *v) HSM_WUR;
int tokp_u64(const struct tokp_field *f, uint64_t *v) HSM_WUR;
int tokp_str(const struct tokp_field *f, char *out, size_t cap) HSM_WUR;

/*
 * I/O on a connected SOCK_STREAM socket. tokp_send writes the whole
 * message (and, with nfds > 0, passes fds with it); tokp_recv reads one
 * whole message within timeout_ms (-1: no limit), taking fds passed with
 * it into fds[*nfds] (in: capacity; NULL: none accepted), and parses it
 * as tokp_parse does. timeout_ms -1 blocks, or waits as long as the
 * socket's SO_RCVTIMEO (then -3). Returns 0; -1 on a malformed message
 * or an I/O error; -2 on EOF (the peer is gone); -3 on timeout;
 * TOKP_RECV_NOMEM when there was no memory for the message: it was read
 * whole and dropped (the stream is still in step, fds passed with it are
 * closed) and m holds only its header's op, id and status (no field, no
 * raw). The other errors leave the stream where it was: hang up.
 */
#define TOKP_RECV_NOMEM (-4)
int tokp_send(int fd, const struct tokp_buf *b, const int *fds,
    size_t nfds) HSM_WUR;
/* Sends a message of no field, built on the stack (an error answer must
 * go out even when nothing can be allocated): as tokp_send. */
int tokp_send_status(int fd, enum tokp_op op, uint32_t id,
    int32_t status) HSM_WUR;
int tokp_recv(int fd, int timeout_ms, int response, struct tokp_msg *m,
    int *fds, size_t *nfds) HSM_WUR;
void tokp_msg_clear(struct tokp_msg *m);

/*
 * The deadline both sides keep: no caller waits longer than this for a
 * channel (client.c) or a token session (module.c).
 * P11VAULT_HSM_DEADLINE_MS from the environment (the token process
 * inherits it); absent: 5000. serve and init refuse a malformed one at
 * start (hsm_env_check, harden.c).
 */
#define HSM_DEADLINE_ENV "P11VAULT_HSM_DEADLINE_MS"
#define HSM_DEADLINE_DEFAULT_MS 5000u
#define HSM_DEADLINE_MAX_MS 600000ul
unsigned hsm_deadline_env(void);
struct timespec;
/* An absolute CLOCK_MONOTONIC time ms from now, for timed waits. */
void hsm_deadline_in(struct timespec *ts, unsigned ms);

#endif
