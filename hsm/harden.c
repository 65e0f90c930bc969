/*
 * harden.c — what both processes do to themselves: `serve --user NAME`
 * (the data directory must belong to NAME; root is dropped for NAME after
 * the listening socket is bound, and by the token process after it has
 * opened the token), not dumpable, no core files, and for the token
 * process locked memory, pages of their own for secrets, and a seccomp
 * filter (seccomp.c).
 *
 * Owns: the switch of uid/gid/groups and no_new_privs; secret pages.
 * Must never: return success while the process can still regain root;
 * drop privileges partially and carry on (any failure is reported and the
 * caller exits); unmap a secret page without wiping it.
 */
#include <errno.h>
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

#include "hsm/harden.h"

static int
lookup_user(const char *user, uid_t *uid, gid_t *gid, char *err,
    size_t err_len)
{
	struct passwd *pw;

	errno = 0;
	pw = getpwnam(user);
	if (pw == NULL) {
		snprintf(err, err_len, "--user %s: no such user%s%s", user,
		    errno ? ": " : "", errno ? strerror(errno) : "");
		return -1;
	}
	if (pw->pw_uid == 0 || pw->pw_gid == 0) {
		snprintf(err, err_len, "--user %s: refusing a user with uid "
		    "or gid 0", user);
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
		snprintf(err, err_len, "cannot stat %s: %s", dir,
		    strerror(errno));
		return -1;
	}
	if (st.st_uid != uid) {
		snprintf(err, err_len, "--user %s: the data directory %s is "
		    "owned by uid %u, not by %s (uid %u); run "
		    "chown -R %s %s first", user, dir, (unsigned)st.st_uid,
		    user, (unsigned)uid, user, dir);
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
			goto harden;   /* already that user */
		snprintf(err, err_len, "--user %s needs to start as root",
		    user);
		return -1;
	}
	/* order matters: groups and gid while still root, uid last */
	if (setgroups(0, NULL) != 0) {
		snprintf(err, err_len, "setgroups: %s", strerror(errno));
		return -1;
	}
	if (setresgid(gid, gid, gid) != 0) {
		snprintf(err, err_len, "setresgid(%u): %s", (unsigned)gid,
		    strerror(errno));
		return -1;
	}
	if (setresuid(uid, uid, uid) != 0) {
		snprintf(err, err_len, "setresuid(%u): %s", (unsigned)uid,
		    strerror(errno));
		return -1;
	}
	/* the way back must be closed */
	if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0) {
		snprintf(err, err_len, "--user %s: root could be regained "
		    "after dropping privileges", user);
		return -1;
	}
	if (getuid() != uid || geteuid() != uid || getgid() != gid ||
	    getegid() != gid) {
		snprintf(err, err_len, "--user %s: the uid/gid did not change",
		    user);
		return -1;
	}
harden:
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		snprintf(err, err_len, "prctl(PR_SET_NO_NEW_PRIVS): %s",
		    strerror(errno));
		return -1;
	}
	/* a uid change resets "dumpable" to fs.suid_dumpable: set it again,
	 * a core dump would hold session keys and plaintexts */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		snprintf(err, err_len, "prctl(PR_SET_DUMPABLE): %s",
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
