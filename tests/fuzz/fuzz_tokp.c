/*
 * fuzz_tokp.c — the token process's message parser (hsm/proto.c), the
 * first code of the token process that reads what the network process
 * sends. Input: one message as it would arrive on a channel. Properties
 * checked:
 *  - tokp_parse never reads outside the input (an exact-size copy), as a
 *    request and as an answer;
 *  - whatever it accepts has the op's shape: every field inside the
 *    input, fields back to back, and building the same message again with
 *    tokp_begin/tokp_put gives the input byte for byte;
 *  - tokp_recv on a socket holding the input accepts exactly what
 *    tokp_parse accepts (and never blocks past its timeout).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hsm/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const uint8_t *buf, size_t len, int response)
{
	struct tokp_msg m;
	struct tokp_buf b;
	uint16_t i;
	char s[HSM_BIND_MAX + 1];
	uint32_t u;
	uint64_t v;

	if (tokp_parse(buf, len, response, &m) != 0)
		return;
	tokp_begin(&b, (enum tokp_op)m.op, m.id, m.status);
	for (i = 0; i < m.n; i++) {
		if (m.f[i].p < buf + TOKP_HDR_LEN ||
		    m.f[i].p + m.f[i].len > buf + len)
			abort();
		tokp_put(&b, m.f[i].p, m.f[i].len);
		/* the accessors on every field: no crash, no over-read */
		(void)tokp_u32(&m.f[i], &u);
		(void)tokp_u64(&m.f[i], &v);
		(void)tokp_str(&m.f[i], s, sizeof(s));
	}
	if (b.err || b.len != len || memcmp(b.p, buf, len) != 0)
		abort();
	tokp_buf_clear(&b);
}

static void
check_recv(const uint8_t *buf, size_t len, int response)
{
	struct tokp_msg m, p;
	int sp[2], r, parsed;

	if (len > 60000 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
		return;
	if (write(sp[1], buf, len) != (ssize_t)len) {
		close(sp[0]);
		close(sp[1]);
		return;
	}
	close(sp[1]);
	parsed = tokp_parse(buf, len, response, &p) == 0;
	r = tokp_recv(sp[0], 1000, response, &m, NULL, NULL);
	close(sp[0]);
	/* a message that ends where the input does is taken as parsed;
	 * anything shorter is EOF (-2); trailing bytes are the next one */
	if (parsed && r != 0)
		abort();
	if (r == 0) {
		if (m.len > len || memcmp(m.raw, buf, m.len) != 0)
			abort();
		if (m.len == len && !parsed)
			abort();
	}
	tokp_msg_clear(&m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size ? size : 1);

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	check(copy, size, 0);
	check(copy, size, 1);
	check_recv(copy, size, 0);
	check_recv(copy, size, 1);
	free(copy);
	return 0;
}
