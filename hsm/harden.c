/*
 * hsm/harden.c — what both processes do to themselves: `serve --user NAME`
 * (the data directory must belong to NAME; root is dropped for NAME after
 * the listening socket is bound, and by the token process after it has
 * opened the token), not dumpable, no core files, and for the token
 * process locked memory, pages of their own for secrets, and a seccomp
 * filter (seccomp.c).
 *
 * Owns: the switch of uid/gid/groups and no_new_privs; secret pages;
 * running a helper (systemd-creds, clevis) under a time limit; whole
 * writes, directory syncs and the shredding of small files.
 * Must never: return success while the process can still regain root;
 * drop privileges partially and carry on (any failure is reported and the
 * caller exits); unmap a secret page without wiping it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <grp.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "hsm/base.h"
#include "hsm/harden.h"
#include "hsm/proto.h"

static int
lookup_user(const char *user, uid_t *uid, gid_t *gid, char *err, size_t err_len)
{
	struct passwd *pw;

	errno = 0;
	pw = getpwnam(user);
	if (pw == NULL) {
		err_set(err, err_len, "--user %s: no such user%s%s", user,
		    errno ? ": " : "", errno ? strerror(errno) : "");
		return -1;
	}
	if (pw->pw_uid == 0 || pw->pw_gid == 0) {
		err_set(err, err_len,
		    "--user %s: refusing a user with uid "
		    "or gid 0",
		    user);
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return 0;
}

int
hsm_check_data_owner(const char *dir, const char *user, char *err,
    size_t err_len)
{
	struct stat st;
	uid_t uid;
	gid_t gid;

	if (lookup_user(user, &uid, &gid, err, err_len) != 0)
		return -1;
	if (stat(dir, &st) != 0) {
		err_set(err, err_len, "cannot stat %s: %s", dir,
		    strerror(errno));
		return -1;
	}
	if (st.st_uid != uid) {
		err_set(err, err_len,
		    "--user %s: the data directory %s is "
		    "owned by uid %u, not by %s (uid %u); run "
		    "chown -R %s %s first",
		    user, dir, (unsigned)st.st_uid, user, (unsigned)uid, user,
		    dir);
		return -1;
	}
	return 0;
}

int
hsm_drop_privileges(const char *user, char *err, size_t err_len)
{
	uid_t uid;
	gid_t gid;

	if (lookup_user(user, &uid, &gid, err, err_len) != 0)
		return -1;
	if (geteuid() != 0) {
		if (geteuid() == uid && getuid() == uid)
			goto harden; /* already that user */
		err_set(err, err_len, "--user %s needs to start as root", user);
		return -1;
	}
	/* order matters: groups and gid while still root, uid last */
	if (setgroups(0, NULL) != 0) {
		err_set(err, err_len, "setgroups: %s", strerror(errno));
		return -1;
	}
	if (setresgid(gid, gid, gid) != 0) {
		err_set(err, err_len, "setresgid(%u): %s", (unsigned)gid,
		    strerror(errno));
		return -1;
	}
	if (setresuid(uid, uid, uid) != 0) {
		err_set(err, err_len, "setresuid(%u): %s", (unsigned)uid,
		    strerror(errno));
		return -1;
	}
	/* the way back must be closed */
	if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0) {
		err_set(err, err_len,
		    "--user %s: root could be regained "
		    "after dropping privileges",
		    user);
		return -1;
	}
	if (getuid() != uid || geteuid() != uid || getgid() != gid ||
	    getegid() != gid) {
		err_set(err, err_len, "--user %s: the uid/gid did not change",
		    user);
		return -1;
	}
harden:
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		err_set(err, err_len, "prctl(PR_SET_NO_NEW_PRIVS): %s",
		    strerror(errno));
		return -1;
	}
	/* a uid change resets "dumpable" to fs.suid_dumpable: set it again,
	 * a core dump would hold session keys and plaintexts */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		err_set(err, err_len, "prctl(PR_SET_DUMPABLE): %s",
		    strerror(errno));
		return -1;
	}
	return 0;
}

void
hsm_harden_early(void)
{
	struct rlimit nocore = { 0, 0 }, ml;

	/* no core dumps, no ptrace by the same uid: they would hold
	 * session keys, plaintexts and (here) the PIN */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	(void)setrlimit(RLIMIT_CORE, &nocore);
	/* root can lock anything, the --user it becomes only up to this
	 * limit: raise it now, while that is still possible */
	if (geteuid() == 0 && getrlimit(RLIMIT_MEMLOCK, &ml) == 0 &&
	    ml.rlim_cur != RLIM_INFINITY && ml.rlim_cur < HSM_MEMLOCK_NEED) {
		ml.rlim_cur = HSM_MEMLOCK_NEED;
		if (ml.rlim_max != RLIM_INFINITY &&
		    ml.rlim_max < HSM_MEMLOCK_NEED)
			ml.rlim_max = HSM_MEMLOCK_NEED;
		(void)setrlimit(RLIMIT_MEMLOCK, &ml);
	}
}

int
hsm_lock_memory(void)
{
	struct rlimit ml;

	/* MCL_FUTURE past RLIMIT_MEMLOCK makes later allocations fail:
	 * lock only where the limit allows it (root, or a raised limit) */
	if (getrlimit(RLIMIT_MEMLOCK, &ml) != 0)
		return -1;
	if (geteuid() != 0 && ml.rlim_cur != RLIM_INFINITY &&
	    ml.rlim_cur < HSM_MEMLOCK_NEED)
		return -1;
	return mlockall(MCL_CURRENT | MCL_FUTURE) == 0 ? 0 : -1;
}

static size_t
page_round(size_t len)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t p = pg > 0 ? (size_t)pg : 4096;

	if (len == 0 || len > SIZE_MAX - p)
		return 0;
	return (len + p - 1) / p * p;
}

void *
hsm_secret_alloc(size_t len)
{
	size_t n = page_round(len);
	void *p;

	if (n == 0)
		return NULL;
	p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
	    -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	/* best effort both: not in a core file, not in swap */
	(void)madvise(p, n, MADV_DONTDUMP);
	(void)mlock(p, n);
	return p;
}

void
hsm_secret_free(void *p, size_t len)
{
	size_t n = page_round(len);

	if (p == NULL || n == 0)
		return;
	OPENSSL_cleanse(p, n);
	(void)munlock(p, n);
	(void)munmap(p, n);
}

/* ---- the environment's numbers ---- */

/* Every P11VAULT_* variable read as a number, with its range. */
static const struct env_knob {
	const char *name;
	uint64_t min, max;
	const char *unit;
} env_knobs[] = {
	{ HSM_DEADLINE_ENV, 1, HSM_DEADLINE_MAX_MS, "milliseconds" },
	{ HSM_UNSEAL_TIMEOUT_ENV, 1, HSM_UNSEAL_TIMEOUT_MAX_MS,
	    "milliseconds" },
};

int
hsm_env_check(char *err, size_t err_len)
{
	const char *e;
	uint64_t v;
	size_t i;

	for (i = 0; i < sizeof(env_knobs) / sizeof(env_knobs[0]); i++) {
		e = getenv(env_knobs[i].name);
		if (e == NULL ||
		    (parse_u64(e, env_knobs[i].max, &v) == 0 &&
		        v >= env_knobs[i].min))
			continue;
		err_set(err, err_len,
		    "the environment's %s='%.32s' is not a whole number of %s "
		    "from %llu to %llu (unset it for the default)",
		    env_knobs[i].name, e, env_knobs[i].unit,
		    (unsigned long long)env_knobs[i].min,
		    (unsigned long long)env_knobs[i].max);
		return -1;
	}
	return 0;
}

/* ---- running a helper (systemd-creds, clevis) ---- */

/* P11VAULT_UNSEAL_TIMEOUT_MS, 1..600000 (serve refuses anything else at
 * start: hsm_env_check); absent: 30000. */
static unsigned
unseal_timeout_ms(void)
{
	const char *e = getenv(HSM_UNSEAL_TIMEOUT_ENV);
	uint64_t v;

	if (e == NULL || parse_u64(e, HSM_UNSEAL_TIMEOUT_MAX_MS, &v) != 0 ||
	    v == 0)
		return 30000;
	return (unsigned)v;
}

static long
ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* A helper's pipes and process: its stdin written from in (ip[1]), its
 * stdout read into out (op[0]). */
struct run {
	int ip[2], op[2];
	pid_t pid;
	int st, exited;
	const uint8_t *in;
	size_t in_len, sent;
	uint8_t *out;
	size_t cap, got;
};

static void
run_close(struct run *r)
{
	int *fds[] = { &r->ip[0], &r->ip[1], &r->op[0], &r->op[1] };
	size_t i;

	for (i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

/* posix_spawnp of argv with stdin from in_fd (>= 0) or the pipe, stdout
 * into the pipe; 0 or -1. */
static int
run_spawn(struct run *r, char *const argv[], int in_fd)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	int rc;

	if (pipe2(r->op, O_CLOEXEC) != 0)
		return -1;
	if (in_fd < 0 && pipe2(r->ip, O_CLOEXEC) != 0)
		return -1;
	if (posix_spawn_file_actions_init(&fa) != 0)
		return -1;
	if (posix_spawnattr_init(&at) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return -1;
	}
	(void)posix_spawn_file_actions_adddup2(&fa,
	    in_fd >= 0 ? in_fd : r->ip[0], 0);
	(void)posix_spawn_file_actions_adddup2(&fa, r->op[1], 1);
	/* a group of its own: clevis is a chain of scripts, and a pin that
	 * hangs (a Tang server that accepts and never answers) must die
	 * with it */
	(void)posix_spawnattr_setpgroup(&at, 0);
	(void)posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
	rc = posix_spawnp(&r->pid, argv[0], &fa, &at, argv, environ);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return -1;
	close(r->op[1]);
	r->op[1] = -1;
	if (r->ip[0] >= 0) {
		close(r->ip[0]);
		r->ip[0] = -1;
	}
	return 0;
}

/* Feeds stdin and reads stdout until the helper has exited and its
 * output is read, or the time is up; a descendant that keeps the pipe
 * open does not hold us. */
static void
run_pump(struct run *r, long deadline)
{
	struct pollfd pf[2];
	int eof = 0;
	long left;
	ssize_t n;
	nfds_t np;

	while (!(r->exited && eof)) {
		if (!r->exited && waitpid(r->pid, &r->st, WNOHANG) == r->pid)
			r->exited = 1;
		np = 0;
		pf[np].fd = r->op[0];
		pf[np++].events = POLLIN;
		if (r->ip[1] >= 0) {
			pf[np].fd = r->ip[1];
			pf[np++].events = POLLOUT;
		}
		if ((left = deadline - ms_now()) <= 0)
			break;
		if (poll(pf, np, r->exited ? 0 : (int)(left < 50 ? left : 50)) <
		    0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (np > 1 && (pf[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
			n = write(r->ip[1], r->in + r->sent,
			    r->in_len - r->sent);
			if (n > 0)
				r->sent += (size_t)n;
			if (n <= 0 || r->sent == r->in_len) {
				close(r->ip[1]);
				r->ip[1] = -1;
			}
		}
		if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			if (r->got == r->cap) {
				r->got = r->cap + 1; /* too much: refuse */
				break;
			}
			n = read(r->op[0], r->out + r->got, r->cap - r->got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				eof = 1;
			else
				r->got += (size_t)n;
		} else if (r->exited) {
			eof = 1; /* exited, nothing more to read now */
		}
	}
}

int
hsm_run(char *const argv[], int in_fd, const void *in, size_t in_len,
    uint8_t *out, size_t cap, size_t *out_len)
{
	struct run r;
	long deadline = ms_now() + unseal_timeout_ms();
	int rc = -1;

	memset(&r, 0, sizeof(r));
	r.ip[0] = r.ip[1] = r.op[0] = r.op[1] = -1;
	r.in = in;
	r.in_len = in_len;
	r.out = out;
	r.cap = cap;
	*out_len = 0;
	if (run_spawn(&r, argv, in_fd) != 0)
		goto out;
	run_pump(&r, deadline);
	/* whatever of the group is left (a hung pin, its curl) */
	(void)kill(-r.pid, SIGKILL);
	if (!r.exited)
		while (waitpid(r.pid, &r.st, 0) < 0 && errno == EINTR)
			;
	rc = WIFEXITED(r.st) && WEXITSTATUS(r.st) == 0 && r.got <= cap ? 0 : -1;
	*out_len = r.got <= cap ? r.got : 0;
out:
	run_close(&r);
	return rc;
}

int
hsm_write_all(int fd, const void *p, size_t n)
{
	const char *b = p;
	ssize_t w;

	while (n > 0) {
		w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

int
hsm_sync_dir(const char *dir)
{
	int fd, r;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

void
hsm_shred(const char *path)
{
	char zero[512];
	struct stat st;
	off_t left;
	int fd;

	if ((fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)) >= 0) {
		memset(zero, 0, sizeof(zero));
		if (fstat(fd, &st) == 0)
			for (left = st.st_size; left > 0;
			     left -= (off_t)sizeof(zero))
				if (hsm_write_all(fd, zero,
				        left < (off_t)sizeof(zero) ?
				            (size_t)left :
				            sizeof(zero)) != 0)
					break;
		(void)fsync(fd);
		close(fd);
	}
	(void)unlink(path);
}
