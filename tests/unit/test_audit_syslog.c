/*
 * test_audit_syslog — the audit log's copy to syslog (vault/audit_syslog.c)
 * on a real AF_UNIX datagram socket bound here: each line the file gets
 * is one datagram "<86>... p11vault-audit[PID]: LINE", LINE exactly the
 * file's line; a line the disk takes only in part (a short write, made
 * real with RLIMIT_FSIZE) is sent once, whole, when its rest is written;
 * with nobody listening the line is dropped from the copy only (the
 * append succeeds, the counter grows); a new listener at the same path
 * gets the next lines without any reconnect.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vault/auditlog.h"
#include "t.h"

static int
listen_at(const char *path)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	(void)unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		abort();
	return fd;
}

/* The next datagram's line (its header checked and cut off) into line;
 * 0 when there is none. */
static int
next_line(int fd, char *line, size_t cap)
{
	char msg[4096], want[64];
	ssize_t n = recv(fd, msg, sizeof(msg) - 1, 0);
	const char *p;

	if (n <= 0)
		return 0;
	msg[n] = '\0';
	snprintf(want, sizeof(want), " p11vault-audit[%ld]: ", (long)getpid());
	if (strncmp(msg, "<86>", 4) != 0 || (p = strstr(msg, want)) == NULL ||
	    p - msg != 19)
		return -1;
	snprintf(line, cap, "%s", p + strlen(want));
	return 1;
}

/* Line n (from 1) of the file, without its newline. */
static int
file_line(const char *path, int n, char *line, size_t cap)
{
	FILE *f = fopen(path, "r");
	int i, ok = 0;

	if (f == NULL)
		return 0;
	for (i = 1; fgets(line, (int)cap, f) != NULL; i++)
		if (i == n) {
			line[strcspn(line, "\n")] = '\0';
			ok = 1;
			break;
		}
	fclose(f);
	return ok;
}

static long
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* One datagram that is line n of the file, and nothing after it. */
static int
got_line(int fd, const char *log, int n)
{
	char got[4096], want[4096];

	return next_line(fd, got, sizeof(got)) == 1 &&
	    file_line(log, n, want, sizeof(want)) && strcmp(got, want) == 0 &&
	    next_line(fd, got, sizeof(got)) == 0;
}

static void
test_copy(const char *dir)
{
	struct vlt_audit *a = NULL;
	struct vlt_syslog *s = NULL;
	struct vlt_audit_repair rep;
	struct rlimit saved, lim;
	char sock[256], log[256], got[4096];
	uint64_t sent = 0, dropped = 0;
	int fd, r;

	snprintf(sock, sizeof(sock), "%s/log.sock", dir);
	snprintf(log, sizeof(log), "%s/audit/audit.log", dir);
	fd = listen_at(sock);
	T_CHECK(vlt_audit_open(dir, 0, &a, &rep) == 0 &&
	        vlt_syslog_open(sock, &s) == 0,
	    "syslog: an audit log and a sender");
	if (a == NULL || s == NULL)
		return;
	vlt_audit_set_syslog(a, s);
	T_CHECK(vlt_audit_append(a, "{\"n\":1}", 1) == 0 &&
	        got_line(fd, log, 1),
	    "syslog: a line in the file is one datagram holding exactly it");
	T_CHECK(vlt_audit_append(a, "{\"n\":2,\"pad\":\"0123456789\"}", 0) ==
	            0 &&
	        got_line(fd, log, 2),
	    "syslog: the next line too, its prev hash included");

	/* the disk takes 10 bytes of the next line, then no more */
	if (getrlimit(RLIMIT_FSIZE, &saved) != 0)
		abort();
	lim = saved;
	lim.rlim_cur = (rlim_t)file_size(log) + 10;
	if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
		abort();
	r = vlt_audit_append(a, "{\"n\":3,\"pad\":\"abcdefghijklmnop\"}", 0);
	if (setrlimit(RLIMIT_FSIZE, &saved) != 0)
		abort();
	T_CHECK(r == VLT_ERR_STORAGE && file_size(log) == (long)lim.rlim_cur &&
	        next_line(fd, got, sizeof(got)) == 0,
	    "syslog: a line the file got only part of is not sent (yet)");
	T_CHECK(vlt_audit_ready(a) == 0 && got_line(fd, log, 3),
	    "syslog: once its rest is written it is sent once, whole");

	close(fd);
	vlt_syslog_counts(s, &sent, &dropped);
	T_CHECK(sent == 3 && dropped == 0, "syslog: three sent, none dropped");
	T_CHECK(vlt_audit_append(a, "{\"n\":4}", 1) == 0 &&
	        vlt_audit_append(a, "{\"n\":5}", 0) == 0,
	    "syslog: nobody listening: the lines still go into the file");
	vlt_syslog_counts(s, &sent, &dropped);
	T_CHECK(sent == 3 && dropped == 2,
	    "syslog: ... and are counted as dropped from the copy");

	fd = listen_at(sock);
	T_CHECK(vlt_audit_append(a, "{\"n\":6}", 0) == 0 &&
	        got_line(fd, log, 6),
	    "syslog: a new listener at the path gets the next line");
	vlt_audit_close(a);
	close(fd);
}

int
main(void)
{
	char tmpl[] = "/tmp/p11vault-syslog-XXXXXX", cmd[256];
	struct vlt_syslog *s = NULL;
	char longpath[200];

	signal(SIGXFSZ, SIG_IGN); /* EFBIG instead */
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	T_CHECK(vlt_syslog_open(longpath, &s) == VLT_ERR_BAD_PARAM && s == NULL,
	    "syslog: a path longer than a socket address is refused");
	if (mkdtemp(tmpl) == NULL)
		return 1;
	test_copy(tmpl);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpl);
	return T_DONE();
}
