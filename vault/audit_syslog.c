/*
 * vault/audit_syslog.c — a copy of every audit line for syslog/journald
 * (audit_syslog=true in p11vault.conf), so that a truncated or rewritten
 * audit.log shows against a copy the vault cannot rewrite. Each line goes
 * exactly as it went into the file (its "prev" hash included), one line a
 * datagram, in RFC 3164 form as syslog(3) writes it to /dev/log:
 *
 *	<86>Mmm dd hh:mm:ss p11vault-audit[PID]: LINE
 *
 * 86 is facility authpriv (10), severity info (6); the time is UTC (the
 * daemons stamp the receipt time anyway). The socket (audit_syslog_socket,
 * default /dev/log) is AF_UNIX SOCK_DGRAM, made at open: before the
 * privileges are dropped and the system-call filter (hsm/seccomp.c) is
 * installed, which refuses socket and connect. It is never connected:
 * every datagram is addressed (sendmsg), so a restarted daemon (a new
 * socket at the same path) is reached again without a reconnect.
 *
 * The audit writer (auditlog.c) hands over the bytes that reached the
 * file, in file order, while it is the one writer: no lock here but for
 * the counters, which /metrics reads (atomics).
 *
 * Owns: the socket, the counts of lines sent and dropped, the episode
 * log lines (audit_syslog_failing, audit_syslog_recovered).
 * Must never: block or fail the writer (MSG_DONTWAIT; a datagram the
 * socket does not take is dropped and counted: the file is the record);
 * send anything but whole lines of the file; log per line.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "hsm/base.h"
#include "vault/auditlog.h"
#include "vault/vault_int.h"

/* authpriv.info: (10 << 3) | 6 */
#define SYSLOG_PRI 86
#define SYSLOG_TAG "p11vault-audit"
/* the start of a line the file got only part of (a short write) */
#define CARRY_MAX (96u * 1024)

struct vlt_syslog {
	int fd;
	struct sockaddr_un addr;
	socklen_t addr_len;
	buf_t *carry;
	int failing;            /* the last datagram was dropped */
	uint64_t episode_drops; /* dropped since the episode began */
	_Atomic uint64_t sent, dropped;
};

static int
sock_new(void)
{
	return socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
}

int
vlt_syslog_open(const char *socket_path, struct vlt_syslog **out)
{
	struct vlt_syslog *s;
	size_t n = strlen(socket_path);

	*out = NULL;
	if (n == 0 || n >= sizeof(s->addr.sun_path))
		return VLT_ERR_BAD_PARAM;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return VLT_ERR_NO_MEMORY;
	if ((s->carry = buf_new(CARRY_MAX)) == NULL) {
		free(s);
		return VLT_ERR_NO_MEMORY;
	}
	s->addr.sun_family = AF_UNIX;
	memcpy(s->addr.sun_path, socket_path, n + 1);
	s->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
	    1);
	/* a failure here is tried again at the next line (refused, not
	 * fatal, under the filter) */
	s->fd = sock_new();
	*out = s;
	return 0;
}

void
vlt_syslog_close(struct vlt_syslog *s)
{
	if (s == NULL)
		return;
	if (s->fd >= 0)
		close(s->fd);
	buf_free(s->carry);
	free(s);
}

void
vlt_syslog_counts(struct vlt_syslog *s, uint64_t *sent, uint64_t *dropped)
{
	*sent = atomic_load(&s->sent);
	*dropped = atomic_load(&s->dropped);
}

/* One datagram's result: counted; the first drop of an episode and the
 * first line sent after it are logged. */
static void
note(struct vlt_syslog *s, int err)
{
	if (err == 0) {
		atomic_fetch_add(&s->sent, 1);
		if (s->failing)
			fprintf(stderr,
			    "{\"level\":\"info\",\"event\":"
			    "\"audit_syslog_recovered\",\"dropped\":%llu}\n",
			    (unsigned long long)s->episode_drops);
		s->failing = 0;
		return;
	}
	atomic_fetch_add(&s->dropped, 1);
	if (!s->failing) {
		s->episode_drops = 0;
		fprintf(stderr,
		    "{\"level\":\"warn\",\"event\":\"audit_syslog_failing\","
		    "\"msg\":\"audit lines are not reaching "
		    "audit_syslog_socket (audit.log still has them)\","
		    "\"error\":\"%s\"}\n",
		    strerror(err));
	}
	s->failing = 1;
	s->episode_drops++;
}

/* The datagram's header into hdr. */
static int
header(char *hdr, size_t cap)
{
	static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May",
		"Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct timespec ts;
	struct tm tm;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0 ||
	    gmtime_r(&ts.tv_sec, &tm) == NULL || tm.tm_mon < 0 ||
	    tm.tm_mon > 11)
		return VLT_ERR_INTERNAL;
	return str_fmt(hdr, cap,
	           "<%d>%s %2d %02d:%02d:%02d " SYSLOG_TAG "[%ld]: ",
	           SYSLOG_PRI, mon[tm.tm_mon], tm.tm_mday, tm.tm_hour,
	           tm.tm_min, tm.tm_sec, (long)getpid()) == 0 ?
	    0 :
	    VLT_ERR_INTERNAL;
}

/* One line: the carried start of it, then n bytes at p (no newline). */
static void
send_line(struct vlt_syslog *s, const char *p, size_t n)
{
	char hdr[96];
	struct iovec iov[3];
	struct msghdr m;
	ssize_t w;

	if (s->fd < 0 && (s->fd = sock_new()) < 0) {
		note(s, errno);
		return;
	}
	if (header(hdr, sizeof(hdr)) != 0) {
		note(s, EINVAL);
		return;
	}
	iov[0].iov_base = hdr;
	iov[0].iov_len = strlen(hdr);
	iov[1].iov_base = (void *)(uintptr_t)buf_ptr(s->carry);
	iov[1].iov_len = buf_len(s->carry);
	iov[2].iov_base = (void *)(uintptr_t)p;
	iov[2].iov_len = n;
	memset(&m, 0, sizeof(m));
	m.msg_name = &s->addr;
	m.msg_namelen = s->addr_len;
	m.msg_iov = iov;
	m.msg_iovlen = 3;
	do
		w = sendmsg(s->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	note(s, w < 0 ? errno : 0);
}

void
vlt_syslog_forward(struct vlt_syslog *s, const char *p, size_t n)
{
	const char *end = p + n, *nl;

	while (p < end) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL) {
			if (buf_put(s->carry, p, (size_t)(end - p)) != 0) {
				buf_reset(s->carry); /* not a line of ours */
				note(s, EMSGSIZE);
			}
			return;
		}
		send_line(s, p, (size_t)(nl - p));
		buf_reset(s->carry);
		p = nl + 1;
	}
}

int
vault_audit_syslog_stats(vault_t *v, uint64_t *sent, uint64_t *dropped)
{
	struct vlt_syslog *s;

	if (v == NULL || v->audit == NULL || sent == NULL || dropped == NULL)
		return VLT_ERR_BAD_PARAM;
	if ((s = vlt_audit_syslog(v->audit)) == NULL)
		return VLT_ERR_NOT_FOUND;
	vlt_syslog_counts(s, sent, dropped);
	return 0;
}
