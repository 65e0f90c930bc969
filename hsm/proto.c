/*
 * hsm/proto.c — building, checking, sending and receiving the messages of
 * proto.h.
 *
 * Owns: the shape of every op (request and answer), the only parser of
 * messages, and the socket I/O of whole messages (with fd passing for the
 * boot message).
 * Must never: look at a field of a message whose shape was not checked;
 * free a message buffer without wiping it.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "hsm/base.h"
#include "hsm/proto.h"

enum kind { K_U32 = 1, K_U64, K_STR, K_BYTES, K_BYTES1 };

struct fspec {
	uint8_t kind;
	uint32_t max; /* K_STR, K_BYTES, K_BYTES1: longest */
};

struct shape {
	uint8_t n;
	struct fspec f[TOKP_FIELDS_MAX];
};

/* one field's kind and cap, a line each */
/* clang-format off */
#define U32 { K_U32, 4 }
#define U64 { K_U64, 8 }
#define STR(m) { K_STR, (m) }
#define BYTES(m) { K_BYTES, (m) }
#define BYTES1(m) { K_BYTES1, (m) }
/* clang-format on */

/* request shapes, by op */
static const struct shape req_shape[TOKP_OP_COUNT] = {
	/* module, label, the vault's hsm directory, module allowlist,
	 * run-as user (may be empty), pool size, cache size */
	[TOKP_HELLO] = { 7,
	    { STR(TOKP_PATH_MAX), STR(TOKP_LABEL_MAX), STR(TOKP_PATH_MAX),
	        STR(TOKP_PATH_MAX), BYTES(TOKP_USER_MAX), U32, U32 } },
	/* module, allowlist, label, hsm directory, threshold, shares,
	 * unattended method, kind (0 a vault, 1 a node yet to join) */
	[TOKP_TOKEN_INIT] = { 8,
	    { STR(TOKP_PATH_MAX), STR(TOKP_PATH_MAX), STR(TOKP_LABEL_MAX),
	        STR(TOKP_PATH_MAX), U32, U32, BYTES(TOKP_AUTO_MAX), U32 } },
	/* module, allowlist, label, hsm directory, action (enum
	 * hsm_node_op), the shares (a line each, may be empty), input */
	[TOKP_NODE] = { 7,
	    { STR(TOKP_PATH_MAX), STR(TOKP_PATH_MAX), STR(TOKP_LABEL_MAX),
	        STR(TOKP_PATH_MAX), U32, BYTES(TOKP_SHARES_MAX),
	        BYTES(TOKP_BUNDLE_MAX) } },
	/* the same, and the current shares (a line each) */
	[TOKP_REKEY] = { 8,
	    { STR(TOKP_PATH_MAX), STR(TOKP_PATH_MAX), STR(TOKP_LABEL_MAX),
	        STR(TOKP_PATH_MAX), U32, U32, BYTES(TOKP_AUTO_MAX),
	        BYTES(TOKP_SHARES_MAX) } },
	[TOKP_SEAL_STATUS] = { 0, { { 0, 0 } } },
	/* action (1 a share, 2 reset), the share (empty on reset) */
	[TOKP_SHARE] = { 2, { U32, BYTES(TOKP_SHARE_MAX) } },
	[TOKP_HEALTH] = { 0, { { 0, 0 } } },
	/* bind, kty, rsa bits, ec nid */
	[TOKP_GENERATE] = { 4, { STR(HSM_BIND_MAX), U32, U32, U32 } },
	/* cache id, blob, alg, input, output capacity */
	[TOKP_DECRYPT] = { 5,
	    { STR(HSM_BIND_MAX), BYTES1(TOKP_BLOB_MAX), U32,
	        BYTES(TOKP_RSA_MAX), U32 } },
	/* cache id, blob, alg, digest, signature capacity */
	[TOKP_SIGN] = { 5,
	    { STR(HSM_BIND_MAX), BYTES1(TOKP_BLOB_MAX), U32,
	        BYTES(TOKP_DIGEST_MAX), U32 } },
	[TOKP_FORGET] = { 1, { STR(HSM_BIND_MAX) } },
	[TOKP_JWT_SIGN] = { 1, { BYTES(TOKP_JWT_DATA_MAX) } },
	[TOKP_JWT_PUBLIC] = { 0, { { 0, 0 } } },
	[TOKP_AUDIT_SIGN] = { 1, { BYTES1(TOKP_AUDIT_DATA_MAX) } },
	[TOKP_AUDIT_PUBLIC] = { 0, { { 0, 0 } } },
	[TOKP_STATS] = { 0, { { 0, 0 } } },
	/* bind, PKCS#8 */
	[TOKP_IMPORT] = { 2, { STR(HSM_BIND_MAX), BYTES1(TOKP_PKCS8_MAX) } },
	/* bind, KEK bind, KEK blob, transfer */
	[TOKP_IMPORT_BYOK] = { 4,
	    { STR(HSM_BIND_MAX), STR(HSM_BIND_MAX), BYTES1(TOKP_BLOB_MAX),
	        BYTES1(TOKP_TRANSFER_MAX) } },
	[TOKP_SEAL] = { 1, { BYTES(TOKP_DATA_MAX) } },
	[TOKP_UNSEAL] = { 1, { BYTES(TOKP_DATA_MAX + 1024) } },
	/* bind, format-1 blob */
	[TOKP_UPGRADE] = { 2, { STR(HSM_BIND_MAX), BYTES1(TOKP_BLOB_MAX) } },
	/* bind, a blob under either domain key of a rotation */
	[TOKP_REWRAP] = { 2, { STR(HSM_BIND_MAX), BYTES1(TOKP_BLOB_MAX) } },
};

/* answer shapes (status HSM_OK), by op */
static const struct shape ans_shape[TOKP_OP_COUNT] = {
	[TOKP_HELLO] = { 0, { { 0, 0 } } },
	/* the new shares, a line each (empty without shares) */
	[TOKP_TOKEN_INIT] = { 1, { BYTES(TOKP_SHARES_MAX) } },
	[TOKP_REKEY] = { 1, { BYTES(TOKP_SHARES_MAX) } },
	/* the output (a request's SPKI, a bundle; may be empty) */
	[TOKP_NODE] = { 1, { BYTES(TOKP_BUNDLE_MAX) } },
	/* sealed, threshold, shares, taken, plaintext PINs, last result */
	[TOKP_SEAL_STATUS] = { 6, { U32, U32, U32, U32, U32, U32 } },
	[TOKP_SHARE] = { 6, { U32, U32, U32, U32, U32, U32 } },
	[TOKP_HEALTH] = { 0, { { 0, 0 } } },
	/* blob, spki */
	[TOKP_GENERATE] = { 2,
	    { BYTES1(TOKP_BLOB_MAX), BYTES1(TOKP_SPKI_MAX) } },
	[TOKP_DECRYPT] = { 1, { BYTES(TOKP_RSA_MAX) } },
	[TOKP_SIGN] = { 1, { BYTES1(TOKP_RSA_MAX) } },
	[TOKP_FORGET] = { 0, { { 0, 0 } } },
	[TOKP_JWT_SIGN] = { 1, { BYTES1(64) } },
	[TOKP_JWT_PUBLIC] = { 1, { BYTES1(TOKP_SPKI_MAX) } },
	[TOKP_AUDIT_SIGN] = { 1, { BYTES1(64) } },
	[TOKP_AUDIT_PUBLIC] = { 1, { BYTES1(TOKP_SPKI_MAX) } },
	/* hits, misses, busy, total */
	[TOKP_STATS] = { 4, { U64, U64, U64, U64 } },
	/* kty, rsa bits, ec nid, blob, spki */
	[TOKP_IMPORT] = { 5,
	    { U32, U32, U32, BYTES1(TOKP_BLOB_MAX), BYTES1(TOKP_SPKI_MAX) } },
	[TOKP_IMPORT_BYOK] = { 5,
	    { U32, U32, U32, BYTES1(TOKP_BLOB_MAX), BYTES1(TOKP_SPKI_MAX) } },
	[TOKP_SEAL] = { 1, { BYTES(TOKP_DATA_MAX + 1024) } },
	[TOKP_UNSEAL] = { 1, { BYTES(TOKP_DATA_MAX) } },
	[TOKP_UPGRADE] = { 1, { BYTES1(TOKP_BLOB_MAX) } },
	[TOKP_REWRAP] = { 1, { BYTES1(TOKP_BLOB_MAX) } },
};

static void
be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t
rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static void
grow(struct tokp_buf *b, size_t add)
{
	size_t cap;
	uint8_t *np;

	if (b->err)
		return;
	if (add > TOKP_HDR_LEN + TOKP_PAYLOAD_MAX - b->len) {
		b->err = TOKP_BUF_BAD;
		return;
	}
	if (b->len + add <= b->cap)
		return;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + add)
		cap *= 2;
	/* never realloc: the old buffer may hold secrets and is wiped */
	if ((np = malloc(cap)) == NULL) {
		b->err = TOKP_BUF_NOMEM;
		return;
	}
	if (b->p != NULL) {
		memcpy(np, b->p, b->len);
		OPENSSL_cleanse(b->p, b->cap);
		free(b->p);
	}
	b->p = np;
	b->cap = cap;
}

void
tokp_begin(struct tokp_buf *b, enum tokp_op op, uint32_t id, int32_t status)
{
	memset(b, 0, sizeof(*b));
	grow(b, TOKP_HDR_LEN);
	if (b->err)
		return;
	memset(b->p, 0, TOKP_HDR_LEN);
	b->p[0] = TOKP_VERSION;
	b->p[1] = (uint8_t)op;
	be32(b->p + 4, id);
	be32(b->p + 8, (uint32_t)status);
	b->len = TOKP_HDR_LEN;
}

void
tokp_put(struct tokp_buf *b, const void *p, size_t len)
{
	if (!b->err && (b->n >= TOKP_FIELDS_MAX || len > TOKP_PAYLOAD_MAX))
		b->err = TOKP_BUF_BAD;
	grow(b, 4 + len);
	if (b->err)
		return;
	be32(b->p + b->len, (uint32_t)len);
	if (len)
		memcpy(b->p + b->len + 4, p, len);
	b->len += 4 + len;
	b->n++;
	b->p[2] = (uint8_t)(b->n >> 8);
	b->p[3] = (uint8_t)b->n;
	be32(b->p + 12, (uint32_t)(b->len - TOKP_HDR_LEN));
}

void
tokp_put_u32(struct tokp_buf *b, uint32_t v)
{
	uint8_t x[4];

	be32(x, v);
	tokp_put(b, x, 4);
}

void
tokp_put_u64(struct tokp_buf *b, uint64_t v)
{
	uint8_t x[8];

	be32(x, (uint32_t)(v >> 32));
	be32(x + 4, (uint32_t)v);
	tokp_put(b, x, 8);
}

void
tokp_put_str(struct tokp_buf *b, const char *s)
{
	if (s == NULL) {
		if (!b->err)
			b->err = TOKP_BUF_BAD;
		return;
	}
	tokp_put(b, s, strlen(s));
}

void
tokp_buf_clear(struct tokp_buf *b)
{
	if (b->p != NULL) {
		OPENSSL_cleanse(b->p, b->cap);
		free(b->p);
	}
	memset(b, 0, sizeof(*b));
}

int
tokp_buf_status(const struct tokp_buf *b)
{
	if (!b->err)
		return 0;
	return b->err == TOKP_BUF_NOMEM ? HSM_ERR_NO_MEMORY : HSM_ERR_ARGS;
}

static int
field_ok(const struct fspec *s, const struct tokp_field *f)
{
	switch (s->kind) {
	case K_U32:
		return f->len == 4;
	case K_U64:
		return f->len == 8;
	case K_STR:
		return f->len >= 1 && f->len <= s->max &&
		    memchr(f->p, '\0', f->len) == NULL;
	case K_BYTES:
		return f->len <= s->max;
	case K_BYTES1:
		return f->len >= 1 && f->len <= s->max;
	default:
		return 0;
	}
}

int
tokp_parse(const uint8_t *buf, size_t len, int response, struct tokp_msg *m)
{
	const struct shape *sh;
	uint32_t plen, flen;
	size_t off;
	uint16_t i, n;

	memset(m, 0, sizeof(*m));
	if (buf == NULL || len < TOKP_HDR_LEN || buf[0] != TOKP_VERSION)
		return -1;
	m->op = buf[1];
	n = (uint16_t)(buf[2] << 8 | buf[3]);
	m->id = rd32(buf + 4);
	m->status = (int32_t)rd32(buf + 8);
	plen = rd32(buf + 12);
	if (m->op == 0 || m->op >= TOKP_OP_COUNT || n > TOKP_FIELDS_MAX ||
	    plen > TOKP_PAYLOAD_MAX || plen != len - TOKP_HDR_LEN)
		return -1;
	if (!response && m->status != 0)
		return -1;
	sh = response ? &ans_shape[m->op] : &req_shape[m->op];
	if (response && m->status != HSM_OK) {
		/* an error carries no field, and only a known error */
		if (n != 0 || plen != 0 || m->status < HSM_ERR_LAST ||
		    m->status > HSM_ERR_ARGS)
			return -1;
		return 0;
	}
	if (n != sh->n)
		return -1;
	off = TOKP_HDR_LEN;
	for (i = 0; i < n; i++) {
		if (len - off < 4)
			return -1;
		flen = rd32(buf + off);
		off += 4;
		if (flen > len - off)
			return -1;
		m->f[i].p = buf + off;
		m->f[i].len = flen;
		if (!field_ok(&sh->f[i], &m->f[i]))
			return -1;
		off += flen;
	}
	if (off != len)
		return -1;
	m->n = n;
	return 0;
}

int
tokp_u32(const struct tokp_field *f, uint32_t *v)
{
	if (f->len != 4)
		return -1;
	*v = rd32(f->p);
	return 0;
}

int
tokp_u64(const struct tokp_field *f, uint64_t *v)
{
	if (f->len != 8)
		return -1;
	*v = (uint64_t)rd32(f->p) << 32 | rd32(f->p + 4);
	return 0;
}

int
tokp_str(const struct tokp_field *f, char *out, size_t cap)
{
	if (f->len >= cap || memchr(f->p, '\0', f->len) != NULL)
		return -1;
	memcpy(out, f->p, f->len);
	out[f->len] = '\0';
	return 0;
}

int
tokp_send(int fd, const struct tokp_buf *b, const int *fds, size_t nfds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * TOKP_CHAN_MAX)];
	struct msghdr mh;
	struct iovec iov;
	struct cmsghdr *c;
	size_t off = 0;
	ssize_t w;

	if (b->err || b->p == NULL || nfds > TOKP_CHAN_MAX)
		return -1;
	while (off < b->len) {
		memset(&mh, 0, sizeof(mh));
		iov.iov_base = b->p + off;
		iov.iov_len = b->len - off;
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		if (off == 0 && nfds > 0) {
			memset(cbuf, 0, sizeof(cbuf));
			mh.msg_control = cbuf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
		}
		w = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return errno == EPIPE || errno == ECONNRESET ? -2 : -1;
		off += (size_t)w;
	}
	return 0;
}

int
tokp_send_status(int fd, enum tokp_op op, uint32_t id, int32_t status)
{
	uint8_t h[TOKP_HDR_LEN];
	struct tokp_buf b;

	memset(h, 0, sizeof(h));
	h[0] = TOKP_VERSION;
	h[1] = (uint8_t)op;
	be32(h + 4, id);
	be32(h + 8, (uint32_t)status);
	memset(&b, 0, sizeof(b));
	b.p = h;
	b.len = b.cap = sizeof(h);
	return tokp_send(fd, &b, NULL, 0);
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One recvmsg of at most len bytes (waiting by the deadline end_ms; -1:
 * block, or the socket's own SO_RCVTIMEO); fds passed with them land in
 * fds. Returns the count (> 0), or -1 error, -2 EOF, -3 timeout. */
static ssize_t
recv_some(int fd, uint8_t *p, size_t len, int64_t end_ms, int *fds,
    size_t *nfds, size_t cap)
{
	char cbuf[CMSG_SPACE(sizeof(int) * TOKP_CHAN_MAX)];
	struct pollfd pf;
	struct msghdr mh;
	struct iovec iov;
	struct cmsghdr *c;
	size_t k, nf;
	ssize_t r;
	int wait;

	for (;;) {
		if (end_ms >= 0) {
			int64_t left = end_ms - mono_ms();
			if (left <= 0)
				return -3;
			wait = left > 60000 ? 60000 : (int)left;
			pf.fd = fd;
			pf.events = POLLIN;
			pf.revents = 0;
			r = poll(&pf, 1, wait);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return -1;
			if (r == 0)
				continue;
		}
		memset(&mh, 0, sizeof(mh));
		iov.iov_base = p;
		iov.iov_len = len;
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return -3;
		if (r < 0)
			return errno == ECONNRESET ? -2 : -1;
		if (r == 0)
			return -2;
		break;
	}
	for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		nf = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (k = 0; k < nf; k++) {
			int x;
			memcpy(&x, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
			if (nfds != NULL && *nfds < cap)
				fds[(*nfds)++] = x;
			else
				close(x); /* not asked for */
		}
	}
	return r;
}

/* A header's payload length, or -1 when it is not a header of ours. */
static int64_t
hdr_plen(const uint8_t *h)
{
	uint32_t plen = rd32(h + 12);

	if (h[0] != TOKP_VERSION || plen > TOKP_PAYLOAD_MAX || h[1] == 0 ||
	    h[1] >= TOKP_OP_COUNT)
		return -1;
	return (int64_t)plen;
}

/* Where tokp_recv reads from: fd, the deadline, where fds go. */
struct rsrc {
	int fd;
	int64_t end;
	int *fds;
	size_t *nfds, cap_fds;
};

/*
 * No memory for a message: the rest of it is read into the scratch
 * buffer s[cap] (which holds its first off bytes) and dropped, never a
 * byte past its end, so the stream stays in step; m gets the header's
 * op, id and status. TOKP_RECV_NOMEM, or -1/-2/-3 as recv_some.
 */
static int
recv_drop(const struct rsrc *src, uint8_t *s, size_t cap, size_t off,
    struct tokp_msg *m)
{
	uint8_t h[TOKP_HDR_LEN];
	size_t need = TOKP_HDR_LEN, k;
	int64_t plen = -1;
	ssize_t r;

	memcpy(h, s, off < TOKP_HDR_LEN ? off : TOKP_HDR_LEN);
	for (;;) {
		if (off >= TOKP_HDR_LEN && plen < 0) {
			if ((plen = hdr_plen(h)) < 0)
				return -1;
			need = TOKP_HDR_LEN + (size_t)plen;
		}
		if (off >= need)
			break;
		if (off < TOKP_HDR_LEN)
			r = recv_some(src->fd, h + off, TOKP_HDR_LEN - off,
			    src->end, src->fds, src->nfds, src->cap_fds);
		else {
			k = need - off < cap ? need - off : cap;
			r = recv_some(src->fd, s, k, src->end, src->fds,
			    src->nfds, src->cap_fds);
		}
		if (r < 0)
			return (int)r;
		off += (size_t)r;
	}
	if (off != need)
		return -1; /* read past it: not a sane peer */
	m->op = h[1];
	m->id = rd32(h + 4);
	m->status = (int32_t)rd32(h + 8);
	return TOKP_RECV_NOMEM;
}

/* What one message usually fits in: read it with one recvmsg. */
#define TOKP_FIRST_READ 4096

int
tokp_recv(int fd, int timeout_ms, int response, struct tokp_msg *m, int *fds,
    size_t *nfds)
{
	size_t cap_fds = nfds != NULL ? *nfds : 0;
	struct rsrc src;
	uint8_t scratch[256];
	size_t off = 0, need, cap, k;
	uint8_t *buf, *nb;
	int64_t plen;
	ssize_t r;
	int rc = -1;

	memset(m, 0, sizeof(*m));
	if (fds == NULL)
		nfds = NULL;
	if (nfds != NULL)
		*nfds = 0;
	src.fd = fd;
	src.end = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
	src.fds = fds;
	src.nfds = nfds;
	src.cap_fds = cap_fds;
	cap = TOKP_FIRST_READ;
	if ((buf = malloc(cap)) == NULL) {
		buf = scratch;
		cap = sizeof(scratch);
		rc = recv_drop(&src, buf, cap, 0, m);
		goto out;
	}
	need = TOKP_HDR_LEN;
	/* the peer sends one message and waits for the answer: reading up
	 * to cap never takes a byte of the next one from a sane peer, and
	 * from another one it is an error (off > need) */
	while (off < need) {
		r = recv_some(fd, buf + off, cap - off, src.end, src.fds,
		    src.nfds, src.cap_fds);
		if (r < 0) {
			rc = (int)r;
			goto out;
		}
		off += (size_t)r;
		if (off >= TOKP_HDR_LEN && need == TOKP_HDR_LEN) {
			if ((plen = hdr_plen(buf)) < 0)
				goto out;
			need = TOKP_HDR_LEN + (size_t)plen;
			if (need > cap) {
				if ((nb = malloc(need)) == NULL) {
					rc = recv_drop(&src, buf, cap, off, m);
					goto out;
				}
				memcpy(nb, buf, off);
				OPENSSL_cleanse(buf, cap);
				free(buf);
				buf = nb;
				cap = need;
			}
		}
	}
	if (off != need || tokp_parse(buf, need, response, m) != 0)
		goto out;
	m->raw = buf;
	m->raw_len = cap;
	m->len = need;
	return 0;
out:
	OPENSSL_cleanse(buf, cap);
	if (buf != scratch)
		free(buf);
	if (rc != TOKP_RECV_NOMEM)
		memset(m, 0, sizeof(*m));
	if (nfds != NULL) {
		for (k = 0; k < *nfds; k++)
			close(fds[k]);
		*nfds = 0;
	}
	return rc;
}

void
tokp_msg_clear(struct tokp_msg *m)
{
	if (m->raw != NULL) {
		OPENSSL_cleanse(m->raw, m->raw_len);
		free(m->raw);
	}
	memset(m, 0, sizeof(*m));
}

unsigned
hsm_deadline_env(void)
{
	const char *e = getenv(HSM_DEADLINE_ENV);
	uint64_t v;

	if (e == NULL || parse_u64(e, HSM_DEADLINE_MAX_MS, &v) != 0 || v == 0)
		return HSM_DEADLINE_DEFAULT_MS;
	return (unsigned)v;
}

void
hsm_deadline_in(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms / 1000u);
	ts->tv_nsec += (long)(ms % 1000u) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}
