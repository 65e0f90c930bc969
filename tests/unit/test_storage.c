/*
 * test_storage — storage faults, real ones: the process's file size limit
 * (RLIMIT_FSIZE, with SIGXFSZ ignored) makes every write past it fail, as
 * a full disk does (EFBIG, a short write). The store answers
 * VLT_ERR_STORAGE (SQLite's FULL/IOERR mapped, not "unavailable"), the
 * failed write leaves nothing behind and the next one works on the same
 * connection; the probe ends the episode once the disk takes writes. The
 * audit log refuses a read's line and a write's line alike (fail closed:
 * 0 only when the line is in the file), keeps them pending in order, and
 * writes them when space returns, the chain intact.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vault/auditlog.h"
#include "vault/store.h"
#include "t.h"
#include "store_fixture.h"

static struct rlimit saved;

/* Writes to any file beyond cap bytes fail from here on. */
static void
cap_files(rlim_t cap)
{
	struct rlimit lim;

	if (getrlimit(RLIMIT_FSIZE, &saved) != 0)
		abort();
	lim = saved;
	lim.rlim_cur = cap;
	if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
		abort();
}

static void
uncap_files(void)
{
	if (setrlimit(RLIMIT_FSIZE, &saved) != 0)
		abort();
}

static int
store_failing(store_t *s, uint64_t *errors)
{
	char reason[160];
	int failing;

	store_storage_state(s, &failing, errors, reason, sizeof(reason));
	return failing && reason[0] != '\0';
}

static int
version_exists(store_t *s, const char *name)
{
	struct vlt_key_info k;
	int r = store_version_get(s, name, NULL, 0, &k, NULL, NULL);

	vlt_key_info_clear(&k);
	return r == 0;
}

static void
test_store(const char *dir)
{
	struct vlt_settings set = { 90, 0 };
	uint8_t blob[512];
	struct vlt_key_info k;
	char path[256];
	store_t *s = NULL;
	uint64_t errs = 0;
	int r, i;

	memset(blob, 7, sizeof(blob));
	snprintf(path, sizeof(path), "%s/vault.db", dir);
	r = store_open(path, 1, &s);
	T_CHECK(r == 0 && store_settings_init(s, &set) == 0,
	    "storage: a new store");
	if (r != 0)
		return;
	for (i = 0; i < 8; i++) {
		char name[16];

		snprintf(name, sizeof(name), "k%d", i);
		fill_version(&k, name, (char)('a' + i));
		if (store_version_insert(s, &k, blob, sizeof(blob)) != 0)
			break;
	}
	T_CHECK(i == 8 && !store_failing(s, &errs) && errs == 0,
	    "storage: writes before the disk fills");

	fill_version(&k, "full", 'z');
	cap_files(4096);
	r = store_version_insert(s, &k, blob, sizeof(blob));
	uncap_files();
	T_CHECK(r == VLT_ERR_STORAGE,
	    "storage: a write the disk refuses is VLT_ERR_STORAGE (not "
	    "unavailable)");
	T_CHECK(store_failing(s, &errs) && errs == 1,
	    "storage: the store is failing, with a reason, one error");
	T_CHECK(!version_exists(s, "full") && version_exists(s, "k7"),
	    "storage: the failed write left nothing behind (rolled back)");

	cap_files(4096);
	r = store_probe(s);
	uncap_files();
	T_CHECK(r == VLT_ERR_STORAGE && store_failing(s, &errs) && errs == 2,
	    "storage: the probe fails while the disk is full");
	T_CHECK(store_probe(s) == 0 && !store_failing(s, &errs),
	    "storage: the probe ends the episode once the disk takes writes");
	T_CHECK(store_version_insert(s, &k, blob, sizeof(blob)) == 0 &&
	        version_exists(s, "full"),
	    "storage: the same write works afterwards, on the same "
	    "connection");
	store_close(s);
}

static long
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void
test_audit(const char *dir)
{
	struct vlt_audit *a = NULL;
	struct vlt_audit_repair rep;
	struct vlt_audit_verdict vd;
	char path[256], why[128], reason[160];
	uint64_t errs = 0;
	int failing = 0, r1, r2, r3;
	long before;

	T_CHECK(vlt_audit_open(dir, 0, &a, &rep) == 0 && rep.length == 0,
	    "storage: an audit log");
	if (a == NULL)
		return;
	T_CHECK(vlt_audit_append(a, "{\"n\":1}", 1) == 0 &&
	        vlt_audit_append(a, "{\"n\":2}", 0) == 0 &&
	        vlt_audit_ready(a) == 0,
	    "storage: lines are written while there is space");
	snprintf(path, sizeof(path), "%s/audit/audit.log", dir);
	before = file_size(path);

	cap_files((rlim_t)before);
	r1 = vlt_audit_append(a, "{\"n\":3}", 0);
	r2 = vlt_audit_append(a, "{\"n\":4}", 1);
	r3 = vlt_audit_ready(a);
	uncap_files();
	T_CHECK(r1 == VLT_ERR_STORAGE,
	    "storage: a read's line that cannot be written is refused (fail "
	    "closed)");
	T_CHECK(r2 == VLT_ERR_STORAGE && r3 == VLT_ERR_STORAGE,
	    "storage: a write's line too, and the log is not ready");
	vlt_audit_state(a, &failing, &errs, reason, sizeof(reason));
	T_CHECK(failing && errs >= 3 && strstr(reason, "audit.log") != NULL &&
	        file_size(path) == before,
	    "storage: the log is failing, with its reason; nothing written");

	T_CHECK(vlt_audit_ready(a) == 0,
	    "storage: space back: the pending lines are written");
	vlt_audit_state(a, &failing, &errs, reason, sizeof(reason));
	T_CHECK(!failing && vlt_audit_append(a, "{\"n\":5}", 1) == 0,
	    "storage: the episode ended; new lines are written");
	vlt_audit_close(a);
	T_CHECK(vault_audit_verify(dir, &vd, why, sizeof(why)) == 0 &&
	        vd.intact && vd.lines == 5,
	    "storage: the chain is intact, the refused lines in it");
}

int
main(void)
{
	char tmpl[] = "/tmp/p11vault-storage-XXXXXX", cmd[256];

	signal(SIGXFSZ, SIG_IGN); /* EFBIG instead */
	if (mkdtemp(tmpl) == NULL)
		return 1;
	test_store(tmpl);
	test_audit(tmpl);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpl);
	return T_DONE();
}
