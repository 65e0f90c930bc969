/*
 * privdrop.c — `serve --user NAME`: checks that the data directory belongs
 * to NAME, and drops root for NAME after the listening socket is bound and
 * the vault and token are open.
 *
 * Owns: the switch of uid/gid/groups and no_new_privs. Must never: return
 * success while the process can still regain root; drop privileges
 * partially and carry on (any failure is reported and the caller exits).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "api/api.h"

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
api_check_data_owner(const char *dir, const char *user, char *err,
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
api_drop_privileges(const char *user, char *err, size_t err_len)
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
