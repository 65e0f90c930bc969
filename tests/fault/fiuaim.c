/*
 * fiuaim.c — a test tool, not part of the product: aims libfiu's POSIX
 * failure points at the server's files and counts what it injects. It is
 * loaded after libfiu's own preload libraries (the LD_PRELOAD of `fiu-run
 * -x`), and in `p11vault serve` only (the token launcher and the token
 * process inherit LD_PRELOAD but see no fault: nothing is enabled there).
 *
 * libfiu's failure points fail whoever calls: posix/io/rw/write also
 * fails libmicrohttpd's write() to its inter-thread eventfd. So the points
 * are enabled with an external callback (fiu_enable_external) that fails
 * a write() only when its caller is the p11vault executable itself (the
 * audit log's writer; responses go out through GnuTLS's sendmsg, another
 * point), and fdatasync/fsync/pwrite whoever calls (files only: SQLite's
 * database and WAL, the audit log). The control and the counters are one
 * shared page in the file named by P11FIU_CTL (struct fiuaim_ctl, native
 * 32-bit words), written by the test and read back by it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <fiu-control.h>
#include <fiu.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

/* what fails: write() by the executable (the audit log), fdatasync/fsync
 * by the executable (the audit log, its directory), by anyone else
 * (SQLite), pwrite (SQLite) */
enum { K_WRITE, K_SYNC_EXE, K_SYNC_DB, K_PWRITE, K_N };

struct fiuaim_ctl {
	uint32_t pid;         /* the process the points are enabled in */
	uint32_t on;          /* 1 << K_* bits, set by the test */
	uint32_t permille;    /* a call's chance to fail, in 1/1000 */
	uint32_t err;         /* the errno a failed call sets (EIO, ENOSPC) */
	uint32_t calls[K_N];  /* eligible calls seen while on */
	uint32_t faults[K_N]; /* failures injected */
	uint32_t seed;
	uint32_t hooks; /* every call of the callback, on or off */
};

static struct fiuaim_ctl *ctl;
static const void *exe_base;
static uint32_t rng;

/* Whether a frame's object is libfiu, one of its preloads, this file, or
 * ASan's runtime (by file name: the executable's path may say "fiu"). */
static int
is_tool(const char *path)
{
	const char *b = strrchr(path, '/');

	b = b != NULL ? b + 1 : path;
	return strncmp(b, "libfiu", 6) == 0 || strncmp(b, "fiu_", 4) == 0 ||
	    strncmp(b, "libasan", 7) == 0;
}

/* Whether the first caller outside the tools is the executable. */
static int
caller_is_exe(void)
{
	void *frames[12];
	int n = backtrace(frames, 12), i;
	Dl_info di;

	for (i = 1; i < n; i++) {
		if (dladdr(frames[i], &di) == 0 || di.dli_fname == NULL)
			return 0;
		if (!is_tool(di.dli_fname))
			return di.dli_fbase == exe_base;
	}
	return 0;
}

static int
aim(const char *name, int *failnum, void **failinfo, unsigned int *flags)
{
	uint32_t on = __atomic_load_n(&ctl->on, __ATOMIC_RELAXED), x;
	int kind;

	(void)flags;
	__atomic_add_fetch(&ctl->hooks, 1, __ATOMIC_RELAXED);
	if (on == 0)
		return 0;
	if (strstr(name, "/pwrite") != NULL)
		kind = K_PWRITE;
	else if (strstr(name, "/sync/") != NULL)
		kind = caller_is_exe() ? K_SYNC_EXE : K_SYNC_DB;
	else if (caller_is_exe())
		kind = K_WRITE;
	else
		return 0; /* libmicrohttpd's eventfd, and anything not ours */
	if ((on & (1u << kind)) == 0)
		return 0;
	__atomic_add_fetch(&ctl->calls[kind], 1, __ATOMIC_RELAXED);
	/* xorshift32: shared, racy on purpose (any value is random enough) */
	x = __atomic_load_n(&rng, __ATOMIC_RELAXED);
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	__atomic_store_n(&rng, x, __ATOMIC_RELAXED);
	if (x % 1000 >= __atomic_load_n(&ctl->permille, __ATOMIC_RELAXED))
		return 0;
	*failnum = 1;
	*failinfo = (void *)(intptr_t)__atomic_load_n(&ctl->err,
	    __ATOMIC_RELAXED);
	__atomic_add_fetch(&ctl->faults[kind], 1, __ATOMIC_RELAXED);
	return 1;
}

/* argv[1] of this process is "serve" */
static int
is_serve(void)
{
	char cmd[256];
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t n;
	size_t first;

	if (fd < 0)
		return 0;
	n = read(fd, cmd, sizeof(cmd) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	cmd[n] = '\0';
	first = strlen(cmd) + 1;
	return first < (size_t)n && strcmp(cmd + first, "serve") == 0;
}

__attribute__((constructor)) static void
fiuaim_init(void)
{
	static const char *const points[] = { "posix/io/rw/write",
		"posix/io/sync/fdatasync", "posix/io/sync/fsync",
		"posix/io/rw/pwrite" };
	const char *path = getenv("P11FIU_CTL");
	void *frames[4];
	Dl_info di;
	size_t i;
	int fd;

	if (path == NULL || !is_serve())
		return;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return;
	ctl = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (ctl == MAP_FAILED) {
		ctl = NULL;
		return;
	}
	if (dladdr((void *)getauxval(AT_PHDR), &di) == 0)
		return;
	exe_base = di.dli_fbase;
	(void)backtrace(frames, 4); /* loads the unwinder now, not in a hook */
	rng = ctl->seed != 0 ? ctl->seed : 2463534242u;
	if (fiu_init(0) != 0)
		return;
	for (i = 0; i < sizeof(points) / sizeof(points[0]); i++)
		if (fiu_enable_external(points[i], 1, NULL, 0, aim) != 0)
			return;
	ctl->pid = (uint32_t)getpid();
}
