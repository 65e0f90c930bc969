/*
 * test_harden — hsm/harden.c and hsm/seccomp.c: what each seccomp filter
 * kills and what it lets through (in forked children), a token process
 * started under the network filter (two filters, still serving, still
 * restarted), and the token process as it runs: filtered, no new
 * privileges, not dumpable, its memory and its PIN page locked.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "hsm/harden.h"
#include "hsm/hsm.h"
#include "tests/unit/softhsm_setup.h"
#include "tests/unit/t.h"

#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1 /* mlock is a no-op, ptrace allowed for LSan */
#else
#define T_ASAN 0
#endif

#define MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define LABEL "p11vault-hd"
#define SO_PIN "so-secret-9012"
#define USER_PIN "user-secret-9012"
#define BIND "rsa-key/harden"
#define RUN_AS "nobody"

static char tmpdir[] = "/tmp/p11vault-harden-XXXXXX";
static char hsm_dir[600];

/* ---- children ---- */

typedef void (*child_fn)(void);

/* Runs fn in a child; its wait status. */
static int
in_child(child_fn fn)
{
	pid_t pid;
	int st;

	fflush(stdout);
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		fn();
		_exit(0);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return st;
}

static int
sigsys(int st)
{
	return st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS;
}

static int
exited(int st, int code)
{
	return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == code;
}

static void
token_filter(void)
{
	if (hsm_seccomp_token() != 0)
		_exit(100);
}

static void
net_filter(void)
{
	if (hsm_seccomp_network() != 0)
		_exit(100);
}

static void
c_socket_inet(void)
{
	token_filter();
	(void)socket(AF_INET, SOCK_STREAM, 0);
	_exit(1);
}

static void
c_socket_unix(void)
{
	int r;

	token_filter();
	r = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	_exit(r < 0 && errno == EACCES ? 0 : 1);
}

static void
c_connect(void)
{
	struct sockaddr_in a;
	int s = socket(AF_INET, SOCK_STREAM, 0);

	token_filter();
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(9);
	a.sin_addr.s_addr = htonl(0x7f000001);
	(void)connect(s, (struct sockaddr *)&a, sizeof(a));
	_exit(1);
}

static void
c_execve(void)
{
	char *argv[] = { "true", NULL }, *envp[] = { NULL };

	token_filter();
	(void)execve("/bin/true", argv, envp);
	_exit(1);
}

static void
c_fork(void)
{
	pid_t p;

	token_filter();
	p = fork();
	if (p == 0)
		_exit(0);
	/* refused (the sanitizer build) or killed (release): never a
	 * process */
	_exit(p < 0 ? 0 : 1);
}

static void
c_ptrace(void)
{
	token_filter();
	(void)ptrace(PTRACE_TRACEME, 0, NULL, NULL);
	_exit(1);
}

static void
c_vm_readv(void)
{
	char a[8], b[8];
	struct iovec l = { a, sizeof(a) }, r = { b, sizeof(b) };
	pid_t pp = getppid();

	token_filter();
	(void)process_vm_readv(pp, &l, 1, &r, 1, 0);
	_exit(1);
}

static void
c_mmap_exec(void)
{
	token_filter();
	(void)mmap(NULL, 4096, PROT_READ | PROT_EXEC,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	_exit(1);
}

static void
c_kill_other(void)
{
	pid_t pp = getppid();

	token_filter();
	(void)kill(pp, 0);
	_exit(1);
}

/* a channel thread's own pin (pid 0) is allowed; exits 0 */
static void
c_pin_self(void)
{
	cpu_set_t set;

	token_filter();
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		_exit(2);
	_exit(sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : 3);
}

/* another process's affinity: kills */
static void
c_pin_other(void)
{
	cpu_set_t set;
	pid_t pp = getppid();

	token_filter();
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	(void)sched_setaffinity(pp, sizeof(set), &set);
	_exit(1);
}

static void *
thread_main(void *arg)
{
	char *p = malloc(100000);

	if (p == NULL)
		return NULL;
	memset(p, 7, 100000);
	free(p);
	return arg;
}

/* What the token process does after its filter. */
static void
c_normal(void)
{
	char path[700], buf[16];
	struct timespec ts = { 0, 1000000 };
	pthread_t th;
	void *ret = NULL;
	char *big, *nb;
	int fd, sp[2], ok = 1;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0)
		_exit(2);
	snprintf(path, sizeof(path), "%s/normal.object", tmpdir);
	token_filter();
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ok &= fd >= 0 && write(fd, "token", 5) == 5 && fsync(fd) == 0 &&
	    lseek(fd, 0, SEEK_SET) == 0 && read(fd, buf, 5) == 5 &&
	    memcmp(buf, "token", 5) == 0 && ftruncate(fd, 0) == 0;
	if (fd >= 0)
		close(fd);
	ok &= unlink(path) == 0;
	/* malloc, small and mmap'd, and a realloc (mremap) */
	big = malloc(4 << 20);
	ok &= big != NULL;
	if (big != NULL) {
		memset(big, 1, 4 << 20);
		nb = realloc(big, 16 << 20);
		ok &= nb != NULL;
		free(nb != NULL ? nb : big);
	}
	ok &= pthread_create(&th, NULL, thread_main, &ok) == 0 &&
	    pthread_join(th, &ret) == 0 && ret == &ok;
	ok &= write(sp[0], "x", 1) == 1 && read(sp[1], buf, 1) == 1;
	ok &= nanosleep(&ts, NULL) == 0 &&
	    clock_gettime(CLOCK_MONOTONIC, &ts) == 0;
	ok &= getrandom(buf, sizeof(buf), 0) == (ssize_t)sizeof(buf);
	_exit(ok ? 0 : 3);
}

static void
c_net_socket_inet(void)
{
	net_filter();
	(void)socket(AF_INET6, SOCK_STREAM, 0);
	_exit(1);
}

static void
c_net_ptrace(void)
{
	net_filter();
	(void)ptrace(PTRACE_TRACEME, 0, NULL, NULL);
	_exit(1);
}

static void
c_net_vm_writev(void)
{
	char a[8], b[8];
	struct iovec l = { a, sizeof(a) }, r = { b, sizeof(b) };
	pid_t pp = getppid();

	net_filter();
	(void)process_vm_writev(pp, &l, 1, &r, 1, 0);
	_exit(1);
}

static void
c_net_finit_module(void)
{
	net_filter();
	(void)syscall(SYS_finit_module, -1, "", 0);
	_exit(1);
}

static void
c_net_mount(void)
{
	net_filter();
	(void)syscall(SYS_mount, "none", "/mnt", "tmpfs", 0, NULL);
	_exit(1);
}

static void
c_net_execveat(void)
{
	char *argv[] = { "true", NULL }, *envp[] = { NULL };

	net_filter();
	(void)syscall(SYS_execveat, AT_FDCWD, "/bin/true", argv, envp, 0);
	_exit(1);
}

/* ---- the token process ---- */

static int
open_hsm(const char *run_as, hsm_t **out)
{
	struct hsm_config c;

	memset(&c, 0, sizeof(c));
	c.module_path = MODULE;
	c.token_label = LABEL;
	c.hsm_dir = hsm_dir;
	c.run_as = run_as;
	c.pool_size = 2;
	return hsm_open(&c, out);
}

/* One OAEP round trip with a key generated now: 0 when it comes back. */
static int
round_trip(hsm_t *h)
{
	uint8_t *blob = NULL, *spki = NULL, dek[32], ct[512], pt[512];
	size_t blob_len, spki_len, ct_len = sizeof(ct), pt_len = sizeof(pt);
	int rc = -1;

	if (hsm_key_generate(h, BIND, HSM_KTY_RSA, 2048, 0, &blob, &blob_len,
	        &spki, &spki_len) != 0)
		goto out;
	if (RAND_bytes(dek, sizeof(dek)) != 1 ||
	    hsm_pub_encrypt(spki, spki_len, HSM_ALG_RSA_OAEP_256, dek,
	        sizeof(dek), ct, &ct_len) != 0)
		goto out;
	if (hsm_key_decrypt(h, BIND, blob, blob_len, HSM_ALG_RSA_OAEP_256, ct,
	        ct_len, pt, &pt_len) == 0 &&
	    pt_len == sizeof(dek) && memcmp(pt, dek, sizeof(dek)) == 0)
		rc = 0;
out:
	free(blob);
	free(spki);
	return rc;
}

/* The value of "Field:" in /proc/pid/status, or -1. */
static long
status_field(long pid, const char *field)
{
	char path[64], line[256];
	size_t n = strlen(field);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, n) == 0 && line[n] == ':') {
			v = strtol(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* 1 if the process has an anonymous mapping of one page marked "dd"
 * (MADV_DONTDUMP): the PIN page. */
static int
has_dontdump_page(long pid)
{
	char path[64], line[512];
	unsigned long lo = 0, hi = 0;
	long pg = sysconf(_SC_PAGESIZE);
	int anon_page = 0, found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/smaps", pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			/* "lo-hi perms offset dev inode [path]" */
			char *p = line;
			int fields = 0;
			while (*p != '\0' && fields < 5) {
				while (*p != ' ' && *p != '\0')
					p++;
				while (*p == ' ')
					p++;
				fields++;
			}
			anon_page = hi - lo == (unsigned long)pg &&
			    (*p == '\n' || *p == '\0');
		} else if (strncmp(line, "VmFlags:", 8) == 0 && anon_page &&
		    strstr(line, " dd") != NULL)
			found = 1;
	}
	fclose(f);
	return found;
}

/* As serve does: the token launcher is started by hsm_open, then the
 * network filter goes on. Token processes, the first and every restarted
 * one, are the launcher's: outside the network filter, under their own. */
static void
c_net_token(void)
{
	hsm_t *h = NULL;
	long pid = 0, pid2 = 0;
	uint64_t restarts = 0;
	int i, ok;

	t_failed = 0; /* this child's own checks */
	T_CHECK(open_hsm(NULL, &h) == 0 && h != NULL,
	    "network filter: a "
	    "token process starts (before the filter, as in serve)");
	if (h == NULL)
		exit(1);
	net_filter();
	T_CHECK(round_trip(h) == 0,
	    "network filter: generate and decrypt "
	    "through the token process");
	hsm_process(h, &pid, &restarts);
	T_CHECK(status_field(pid, "Seccomp") == 2 &&
	        status_field(pid, "Seccomp_filters") == 1,
	    "network filter: the token process has its own filter only");
	kill((pid_t)pid, SIGKILL);
	for (i = 0, ok = 0; i < 300 && !ok; i++) {
		struct timespec ts = { 0, 50000000 };
		nanosleep(&ts, NULL);
		hsm_process(h, &pid2, &restarts);
		ok = pid2 > 0 && pid2 != pid && hsm_health(h) == 0;
	}
	T_CHECK(ok && round_trip(h) == 0 &&
	        status_field(pid2, "Seccomp_filters") == 1,
	    "network filter: a "
	    "killed token process is started again by the launcher, outside "
	    "it, unseals by itself and serves");
	hsm_close(h);
	/* exit, not _exit: atexit handlers and the leak checker run under
	 * the filter too */
	exit(T_DONE());
}

static int
chown_tree(const char *dir, uid_t uid, gid_t gid)
{
	char cmd[800];
	int n;

	n = snprintf(cmd, sizeof(cmd), "chown -R %u:%u '%s'", (unsigned)uid,
	    (unsigned)gid, dir);
	if (n < 0 || (size_t)n >= sizeof(cmd))
		return -1;
	return system(cmd) == 0 ? 0 : -1;
}

/* The token process as hsm_open starts it: filtered, no new privileges,
 * memory locked (as root), the PIN page. */
static void
token_process_checks(void)
{
	hsm_t *h = NULL;
	long pid = 0, lck;
	uint64_t restarts;

	T_CHECK(open_hsm(NULL, &h) == 0 && h != NULL,
	    "open through the token process");
	if (h == NULL)
		return;
	T_CHECK(round_trip(h) == 0, "the filtered token process serves");
	hsm_process(h, &pid, &restarts);
	T_CHECK(status_field(pid, "Seccomp") == 2 &&
	        status_field(pid, "Seccomp_filters") == 1,
	    "token process: Seccomp 2 (filter), one filter");
	T_CHECK(status_field(pid, "NoNewPrivs") == 1,
	    "token process: NoNewPrivs 1");
	lck = status_field(pid, "VmLck");
	if (T_ASAN) {
		printf("ok - # skip VmLck %ld kB: ASan makes mlock a no-op\n",
		    lck);
	} else if (geteuid() == 0) {
		/* more than the PIN page: mlockall */
		T_CHECK(lck > 1024,
		    "token process: memory locked "
		    "(VmLck > 1 MiB)");
	} else {
		printf("ok - # skip VmLck %ld kB: not root\n", lck);
	}
	if (!T_ASAN) /* ASan's shadow is MADV_DONTDUMP too */
		T_CHECK(has_dontdump_page(pid),
		    "token process: a page of "
		    "its own marked MADV_DONTDUMP (the PIN)");
	hsm_close(h);
}

/* As --user: the token process drops to RUN_AS and is not dumpable, so
 * its /proc files stay root's. */
static void
run_as_checks(void)
{
	struct passwd *pw;
	struct stat st;
	char path[64];
	hsm_t *h = NULL;
	long pid = 0;
	uint64_t restarts;

	if (geteuid() != 0 || (pw = getpwnam(RUN_AS)) == NULL ||
	    pw->pw_uid == 0 || pw->pw_gid == 0 ||
	    chown_tree(tmpdir, pw->pw_uid, pw->pw_gid) != 0) {
		printf("ok - # skip not dumpable: needs root and a user " RUN_AS
		       "\n");
		return;
	}
	T_CHECK(open_hsm(RUN_AS, &h) == 0 && h != NULL,
	    "open through a token process running as " RUN_AS);
	if (h == NULL)
		return;
	T_CHECK(round_trip(h) == 0, "the token process as " RUN_AS " serves");
	hsm_process(h, &pid, &restarts);
	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	T_CHECK(status_field(pid, "Uid") == (long)pw->pw_uid &&
	        stat(path, &st) == 0 && st.st_uid == 0,
	    "token process: runs as " RUN_AS
	    " yet its /proc files are "
	    "root's (not dumpable)");
	T_CHECK(status_field(pid, "Seccomp") == 2 &&
	        status_field(pid, "NoNewPrivs") == 1,
	    "token process as " RUN_AS ": filtered, no new privileges");
	printf("# as %s: VmLck %ld kB (RLIMIT_MEMLOCK permitting)\n", RUN_AS,
	    status_field(pid, "VmLck"));
	hsm_close(h);
}

int
main(void)
{
	char cmd[700];
	void *p;
	int st;

	/* the secret pages */
	p = hsm_secret_alloc(100);
	T_CHECK(p != NULL &&
	        ((uintptr_t)p % (uintptr_t)sysconf(_SC_PAGESIZE)) == 0 &&
	        ((unsigned char *)p)[99] == 0,
	    "hsm_secret_alloc: a "
	    "zeroed page of its own");
	if (p != NULL)
		memset(p, 0x55, 100);
	hsm_secret_free(p, 100);
	hsm_secret_free(NULL, 100);

	if (softhsm_setup(tmpdir) != 0) {
		printf("not ok - softhsm setup\n");
		return 1;
	}
	/* world-readable so that the RUN_AS token process can get in */
	if (chmod(tmpdir, 0755) != 0) {
		printf("not ok - chmod %s\n", tmpdir);
		return 1;
	}

	/* the token process's filter */
	T_CHECK(sigsys(in_child(c_socket_inet)),
	    "token filter: socket(AF_INET) kills with SIGSYS");
	T_CHECK(exited(in_child(c_socket_unix), 0),
	    "token filter: socket(AF_UNIX) (syslog) is refused with EACCES");
	T_CHECK(sigsys(in_child(c_connect)), "token filter: connect kills");
	T_CHECK(sigsys(in_child(c_execve)), "token filter: execve kills");
	st = in_child(c_fork);
	T_CHECK(sigsys(st) || exited(st, 0),
	    "token filter: fork makes no process");
	T_CHECK(sigsys(in_child(c_ptrace)), "token filter: ptrace kills");
	T_CHECK(sigsys(in_child(c_vm_readv)),
	    "token filter: process_vm_readv kills");
	T_CHECK(sigsys(in_child(c_mmap_exec)),
	    "token filter: a new executable mapping kills");
	T_CHECK(sigsys(in_child(c_kill_other)),
	    "token filter: signalling another process kills");
	T_CHECK(exited(in_child(c_pin_self), 0),
	    "token filter: a thread pins itself to a CPU");
	T_CHECK(sigsys(in_child(c_pin_other)),
	    "token filter: setting another process's CPU affinity kills");
	T_CHECK(exited(in_child(c_normal), 0),
	    "token filter: files, "
	    "malloc, realloc, a thread, a socketpair, sleep, getrandom work");

	/* the network process's filter */
	T_CHECK(sigsys(in_child(c_net_socket_inet)),
	    "network filter: socket(AF_INET6) kills");
	if (!T_ASAN)
		T_CHECK(sigsys(in_child(c_net_ptrace)),
		    "network filter: ptrace kills");
	else
		printf(
		    "ok - # skip network ptrace: allowed in the ASan build "
		    "for the leak checker\n");
	T_CHECK(sigsys(in_child(c_net_vm_writev)),
	    "network filter: process_vm_writev kills");
	T_CHECK(sigsys(in_child(c_net_finit_module)),
	    "network filter: finit_module kills");
	T_CHECK(sigsys(in_child(c_net_mount)), "network filter: mount kills");
	T_CHECK(sigsys(in_child(c_net_execveat)),
	    "network filter: execveat kills");

	snprintf(hsm_dir, sizeof(hsm_dir), "%s", tmpdir);
	{
		struct hsm_init ti;
		char *share = NULL;

		memset(&ti, 0, sizeof(ti));
		ti.module_path = MODULE;
		ti.token_label = LABEL;
		ti.hsm_dir = hsm_dir;
		ti.shares = ti.threshold = 1;
		ti.auto_method = "systemd-creds:host";
		T_CHECK(hsm_token_init(&ti, &share) == 0,
		    "a token for the token process");
		free(share);
	}
	T_CHECK(exited(in_child(c_net_token), 0),
	    "network filter: the token process under it (child exit 0)");

	token_process_checks();
	run_as_checks();

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", tmpdir);
	return T_DONE();
}
