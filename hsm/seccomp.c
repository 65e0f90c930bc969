/*
 * seccomp.c — the system-call filters of both processes (libseccomp):
 * allowlists; any other call kills the whole process
 * (SCMP_ACT_KILL_PROCESS). A filter covers every thread of the process
 * (TSYNC) and sets no_new_privs; it is inherited across execve and
 * cannot be removed.
 *
 * The token process (hsm_seccomp_token, once the token is open and the
 * memory locked): threads, memory (no new executable mapping), time,
 * randomness, its channels (fds it already holds) and SoftHSMv2's file
 * object store. The network process (hsm_seccomp_network, once it
 * serves): the token process's list, plus what MHD, GnuTLS, SQLite and
 * Jansson use, plus starting a token process: posix_spawn (a
 * CLONE_VM|CLONE_VFORK clone, then execve) of /proc/self/exe. A token
 * process started then inherits the network filter and stacks its own
 * on it, so everything it does before its own filter (dynamic loading,
 * the module, the PIN file, its hardening) is in the network list too.
 *
 * The lists come from strace -f of the unit tests and of the API suite,
 * reviewed call by call, then checked by running both suites (release
 * and ASan builds) under the filters with no kill in the kernel's audit
 * log (dmesg: "audit: type=1326 ... syscall=N" names each kill).
 *
 * With a PostgreSQL store (hsm_seccomp_network_db) the network process
 * must connect again to the database after a failover or a restart of
 * the server: socket (AF_UNIX, AF_INET, AF_INET6) and connect are then
 * allowed there, and only there (a token process stacks its own filter,
 * which still refuses both).
 *
 * Owns: both lists and the reasons for them. Must never: allow socket
 * (a refused AF_UNIX socket aside; the database's, above), connect
 * (the database's aside), bind, listen, ptrace (the
 * ASan build's leak checker aside, see san_rules), process_vm_readv or
 * _writev, module loading, kexec, mount, or execve in the token process;
 * return 0 with no filter loaded.
 *
 * Development: compile with -DHSM_SECCOMP_TRAP to get SIGSYS and a line
 * naming the refused call on stderr instead of a silent kill (not for
 * threads that block SIGSYS: there, read the audit log).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <seccomp.h>

#include "hsm/harden.h"
#include "hsm/launcher.h"

#if defined(__SANITIZE_ADDRESS__)
#define HSM_SAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HSM_SAN 1
#endif
#endif

/*
 * Both processes, and the token process after its filter: what glibc,
 * pthreads, malloc, OpenSSL and SoftHSMv2 (file object store) call.
 * clone, mmap, mprotect, socket, ioctl, prctl, prlimit64, tgkill and
 * clone3 have rules of their own below.
 */
static const char *const base_calls[] = {
	/* memory: malloc, thread stacks, OpenSSL's secure heap, the PIN
	 * page (hsm_secret_alloc) */
	"brk",
	"munmap",
	"madvise",
	"mremap",
	"mlock",
	"munlock",
	/* threads: pthreads, OpenSSL and SoftHSMv2 locks */
	"futex",
	"set_robust_list",
	"rseq",
	"exit",
	"exit_group",
	"sched_yield",
	"sched_getaffinity",
	"gettid",
	"getpid",
	"getppid",
	/* signals: glibc's first pthread_create installs its handlers */
	"rt_sigprocmask",
	"rt_sigaction",
	"rt_sigreturn",
	"restart_syscall",
	/* time and randomness (OpenSSL, GnuTLS, deadlines) */
	"clock_gettime",
	"clock_getres",
	"gettimeofday",
	"time",
	"nanosleep",
	"clock_nanosleep",
	"getrandom",
	/* fds already held: the channels (tokp_send/tokp_recv), stderr */
	"read",
	"write",
	"readv",
	"writev",
	"pread64",
	"pwrite64",
	"close",
	"lseek",
	"poll",
	"ppoll",
	"recvmsg",
	"sendmsg",
	"recvfrom",
	"sendto",
	"fcntl",
	/* the SoftHSMv2 object store: token files, their .lock files,
	 * the generation file, new objects (the backup key on first
	 * use), rescans of the token directory */
	"open",
	"openat",
	"creat",
	"stat",
	"fstat",
	"lstat",
	"newfstatat",
	"statx",
	"access",
	"faccessat",
	"faccessat2",
	"readlink",
	"readlinkat",
	"getdents64",
	"flock",
	"fsync",
	"fdatasync",
	"ftruncate",
	"mkdir",
	"mkdirat",
	"unlink",
	"unlinkat",
	"rename",
	"renameat",
	"renameat2",
	"fchmod",
	"umask",
	"getcwd",
	"fadvise64",
	/* who am I, and harmless facts (glibc's sysconf, qsort) */
	"getuid",
	"geteuid",
	"getgid",
	"getegid",
	"getresuid",
	"getresgid",
	"uname",
	"sysinfo",
	"getrlimit",
	"getrusage",
	/* ASan/UBSan runtime (build/san): an alternate signal stack per
	 * thread; the leak checker lists /proc/self/task with the old
	 * getdents */
	"sigaltstack",
	"getdents",
};

/* The network process, beyond base_calls (see also net_rules). */
static const char *const net_calls[] = {
	/* MHD: connections on the listening socket it already holds */
	"accept",
	"accept4",
	"shutdown",
	"setsockopt",
	"getsockopt",
	"getsockname",
	"getpeername",
	"epoll_create",
	"epoll_create1",
	"epoll_ctl",
	"epoll_wait",
	"epoll_pwait",
	"epoll_pwait2",
	/* the caller's CPU, to pick a token channel (affinity.c; glibc
	 * reads it from rseq or the vDSO, the call is the fallback) */
	"getcpu",
	"select",
	"pselect6",
	"eventfd2",
	"pipe",
	"pipe2",
	"sendfile",
	/* the appliance's other vaults (vault/children.c): a new vault's
	 * directory made private, a purged one's removed */
	"chmod",
	"fchmodat",
	"rmdir",
	/* SQLite: journal/WAL files, root-owned journals, mmap I/O */
	"fchown",
	"msync",
	"fstatfs",
	"statfs",
	/* starting and reaping token processes (client.c): posix_spawn's
	 * child (signal dispositions, dup2 of the boot socket, execve),
	 * wait */
	"dup",
	"dup2",
	"dup3",
	"execve",
	"wait4",
	"waitid",
	/* the token process before its own filter: the loader, its
	 * hardening (tokend.c, harden.c) and its filter (this file) */
	"arch_prctl",
	"set_tid_address",
	"close_range",
	"mlockall",
	"seccomp",
	/* sigwait in cmd_serve; raise and abort */
	"rt_sigtimedwait",
	"rt_sigsuspend",
	"tkill",
	"tgkill",
};

/* An argument comparison (the SCMP_A* macros leave fields unnamed). */
static struct scmp_arg_cmp
cmp(unsigned int arg, enum scmp_compare op, scmp_datum_t a, scmp_datum_t b)
{
	struct scmp_arg_cmp c;

	memset(&c, 0, sizeof(c));
	c.arg = arg;
	c.op = op;
	c.datum_a = a;
	c.datum_b = b;
	return c;
}

struct sc_filter {
	scmp_filter_ctx ctx;
	int err;
};

static void
allow_names(struct sc_filter *f, const char *const *names, size_t n)
{
	size_t i;
	int nr;

	for (i = 0; i < n && f->err == 0; i++) {
		/* a call this architecture does not have (open, stat on
		 * aarch64) needs no rule */
		if ((nr = seccomp_syscall_resolve_name(names[i])) ==
		    __NR_SCMP_ERROR)
			continue;
		f->err = seccomp_rule_add(f->ctx, SCMP_ACT_ALLOW, nr, 0);
	}
}

static void
rule(struct sc_filter *f, uint32_t action, const char *name, unsigned int argc,
    const struct scmp_arg_cmp *args)
{
	int nr;

	if (f->err != 0)
		return;
	if ((nr = seccomp_syscall_resolve_name(name)) == __NR_SCMP_ERROR)
		return;
	f->err = seccomp_rule_add_array(f->ctx, action, nr, argc, args);
}

/* One rule per listed value of argument arg. */
static void
allow_values(struct sc_filter *f, const char *name, unsigned int arg,
    const scmp_datum_t *v, size_t n)
{
	struct scmp_arg_cmp c;
	size_t i;

	for (i = 0; i < n; i++) {
		c = cmp(arg, SCMP_CMP_EQ, v[i], 0);
		rule(f, SCMP_ACT_ALLOW, name, 1, &c);
	}
}

/* The rules with arguments both processes share. */
static void
base_rules(struct sc_filter *f, int exec_ok, int db)
{
	static const scmp_datum_t tty[] = { TCGETS, FIONREAD };
	static const scmp_datum_t pr[] = {
		PR_GET_DUMPABLE,
		PR_SET_NAME,
		PR_GET_NAME,
		PR_GET_SECCOMP,
		PR_GET_NO_NEW_PRIVS,
	};
	struct scmp_arg_cmp c[2];

	memset(c, 0, sizeof(c));
	/*
	 * Threads only: CLONE_THREAD set (pthread_create). clone3 takes
	 * its flags in memory, out of a filter's reach: it answers ENOSYS
	 * and glibc falls back to clone.
	 */
	c[0] = cmp(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD);
	rule(f, SCMP_ACT_ALLOW, "clone", 1, c);
	rule(f, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL);
	/* mapping memory; in the token process never executable: the
	 * module and its libraries are loaded before the filter */
	if (exec_ok) {
		rule(f, SCMP_ACT_ALLOW, "mmap", 0, NULL);
		rule(f, SCMP_ACT_ALLOW, "mprotect", 0, NULL);
	} else {
		c[0] = cmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0);
		rule(f, SCMP_ACT_ALLOW, "mmap", 1, c);
		rule(f, SCMP_ACT_ALLOW, "mprotect", 1, c);
	}
	/* isatty (stdio), pending bytes */
	allow_values(f, "ioctl", 1, tty, sizeof(tty) / sizeof(tty[0]));
	/* questions about itself, thread names */
	allow_values(f, "prctl", 0, pr, sizeof(pr) / sizeof(pr[0]));
	/* reading limits (pthread_getattr_np, the sanitizers), not
	 * setting them */
	c[0] = cmp(0, SCMP_CMP_EQ, 0, 0);
	c[1] = cmp(2, SCMP_CMP_EQ, 0, 0);
	rule(f, SCMP_ACT_ALLOW, "prlimit64", 2, c);
	/* a channel thread pins itself to its CPU (affinity.c): its own
	 * affinity only (pid 0), never another thread's or process's */
	c[0] = cmp(0, SCMP_CMP_EQ, 0, 0);
	rule(f, SCMP_ACT_ALLOW, "sched_setaffinity", 1, c);
	/*
	 * syslog (SoftHSMv2 logs with it) and nscd open an AF_UNIX socket:
	 * refused, they carry on without it. Any other socket kills.
	 */
	c[0] = cmp(0, SCMP_CMP_EQ, AF_UNIX, 0);
	if (!db)
		rule(f, SCMP_ACT_ERRNO(EACCES), "socket", 1, c);
}

/* A PostgreSQL store: libpq's connections (a unix socket, TCP, the DNS
 * lookup of a host name) from the network process. */
static void
db_rules(struct sc_filter *f)
{
	static const scmp_datum_t fam[] = { AF_UNIX, AF_INET, AF_INET6 };

	allow_values(f, "socket", 0, fam, sizeof(fam) / sizeof(fam[0]));
	rule(f, SCMP_ACT_ALLOW, "connect", 0, NULL);
}

/* The network process's rules with arguments. */
static void
net_rules(struct sc_filter *f)
{
	static const scmp_datum_t pr[] = {
		PR_SET_PDEATHSIG,
		PR_SET_DUMPABLE,
		PR_SET_NO_NEW_PRIVS,
		PR_SET_SECCOMP,
	};
	struct scmp_arg_cmp c[2], n[3];

	memset(c, 0, sizeof(c));
	memset(n, 0, sizeof(n));
	/* posix_spawn of the token process (launcher.c hsm_spawn_token) */
	c[0] = cmp(0, SCMP_CMP_EQ, CLONE_VM | CLONE_VFORK | SIGCHLD, 0);
	rule(f, SCMP_ACT_ALLOW, "clone", 1, c);
	/* the channels are AF_UNIX socketpairs; nothing else */
	c[0] = cmp(0, SCMP_CMP_EQ, AF_UNIX, 0);
	rule(f, SCMP_ACT_ALLOW, "socketpair", 1, c);
	/* the only signal it sends: SIGKILL to a token process */
	c[0] = cmp(1, SCMP_CMP_EQ, SIGKILL, 0);
	rule(f, SCMP_ACT_ALLOW, "kill", 1, c);
	/* the token process's hardening before its own filter */
	allow_values(f, "prctl", 0, pr, sizeof(pr) / sizeof(pr[0]));
	c[0] = cmp(0, SCMP_CMP_EQ, 0, 0);
	c[1] = cmp(2, SCMP_CMP_NE, 0, 0);
	rule(f, SCMP_ACT_ALLOW, "prlimit64", 2, c);
	/* ... and its nice value (tokend.c boot_isolate): its own, to that */
	n[0] = cmp(0, SCMP_CMP_EQ, PRIO_PROCESS, 0);
	n[1] = cmp(1, SCMP_CMP_EQ, 0, 0);
	n[2] = cmp(2, SCMP_CMP_EQ, HSM_TOKEN_NICE, 0);
	rule(f, SCMP_ACT_ALLOW, "setpriority", 3, n);
}

/* The token process's rules with arguments. */
static void
token_rules(struct sc_filter *f)
{
	struct scmp_arg_cmp c;

	/* abort() signals its own process; nothing else may be signalled */
	c = cmp(0, SCMP_CMP_EQ, (scmp_datum_t)getpid(), 0);
	rule(f, SCMP_ACT_ALLOW, "tgkill", 1, &c);
}

/*
 * ASan/UBSan build (build/san, the unit tests) only. A sanitizer report
 * starts its symbolizer with a clone without CLONE_THREAD: refused (the
 * report comes out unsymbolized) instead of killing before it is out.
 * The leak checker run at exit (network process: serve returns from
 * main) stops the world with a CLONE_UNTRACED tracer thread that
 * ptraces the others (after PR_SET_PTRACER); allowed there, or every
 * clean exit of the sanitizer build would end in SIGSYS. Release builds
 * have neither.
 */
static void
san_rules(struct sc_filter *f, int network)
{
#ifdef HSM_SAN
	struct scmp_arg_cmp c;

	c = cmp(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD | CLONE_VM, 0);
	rule(f, SCMP_ACT_ERRNO(EPERM), "clone", 1, &c);
	rule(f, SCMP_ACT_ERRNO(EPERM), "fork", 0, NULL);
	rule(f, SCMP_ACT_ERRNO(EPERM), "vfork", 0, NULL);
	if (network) {
		c = cmp(0, SCMP_CMP_EQ,
		    CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_UNTRACED, 0);
		rule(f, SCMP_ACT_ALLOW, "clone", 1, &c);
		rule(f, SCMP_ACT_ALLOW, "ptrace", 0, NULL);
		c = cmp(0, SCMP_CMP_EQ, PR_SET_PTRACER, 0);
		rule(f, SCMP_ACT_ALLOW, "prctl", 1, &c);
	}
#else
	(void)f;
	(void)network;
#endif
}

#ifdef HSM_SECCOMP_TRAP
static void
sigsys(int sig, siginfo_t *si, void *uc)
{
	char line[96], *name;
	ssize_t w = 0;
	int n;

	(void)sig;
	(void)uc;
	name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE,
	    si->si_syscall);
	n = snprintf(line, sizeof(line), "seccomp: refused %s (%d) in %d\n",
	    name ? name : "?", si->si_syscall, (int)getpid());
	if (n > 0 && (size_t)n < sizeof(line))
		w = write(2, line, (size_t)n);
	(void)w;
	_exit(159);
}
#endif

static int
load(int network, int db)
{
	struct sc_filter f;
	uint32_t dflt = SCMP_ACT_KILL_PROCESS;

#ifdef HSM_SECCOMP_TRAP
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sigsys;
	sa.sa_flags = SA_SIGINFO;
	(void)sigaction(SIGSYS, &sa, NULL);
	dflt = SCMP_ACT_TRAP;
#endif
	memset(&f, 0, sizeof(f));
	if ((f.ctx = seccomp_init(dflt)) == NULL)
		return -1;
	/* every thread, now: the recovery thread, MHD's, the sweeper */
	f.err = seccomp_attr_set(f.ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (f.err == 0)
		f.err = seccomp_attr_set(f.ctx, SCMP_FLTATR_CTL_NNP, 1);
	/* a binary tree of syscall numbers, not a chain of ~120 compares:
	 * the token process makes some 30 calls per operation (futex,
	 * getpid from OpenSSL, recvmsg/sendmsg) */
	if (f.err == 0)
		f.err = seccomp_attr_set(f.ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	allow_names(&f, base_calls, sizeof(base_calls) / sizeof(base_calls[0]));
	base_rules(&f, network, network && db);
	if (network) {
		allow_names(&f, net_calls,
		    sizeof(net_calls) / sizeof(net_calls[0]));
		net_rules(&f);
		if (db)
			db_rules(&f);
	} else
		token_rules(&f);
	san_rules(&f, network);
	if (f.err == 0)
		f.err = seccomp_load(f.ctx);
	seccomp_release(f.ctx);
	return f.err == 0 ? 0 : -1;
}

int
hsm_seccomp_token(void)
{
	return load(0, 0);
}

int
hsm_seccomp_network(void)
{
	return load(1, 0);
}

int
hsm_seccomp_network_db(void)
{
	return load(1, 1);
}
