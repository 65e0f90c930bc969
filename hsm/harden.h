/*
 * hsm/harden.h — process hardening shared by the network process
 * (api/main.c) and the token process (tokend.c), and the few file and
 * process helpers of the unseal (harden.c; the filters in seccomp.c).
 * 0, or -1 (with a reason in err where there is one).
 */
#ifndef P11VAULT_HSM_HARDEN_H
#define P11VAULT_HSM_HARDEN_H

#include <stddef.h>
#include <stdint.h>

#include "hsm/hsm.h"

/* Locking all memory (token process) needs at least this much
 * RLIMIT_MEMLOCK when not root. The limit counts address space, not
 * resident memory: a token process holds ~300 MiB of it (glibc reserves
 * 64 MiB per malloc arena) for ~30 MiB resident, and with MCL_FUTURE
 * every later mapping (a channel thread's stack) must still fit. */
#define HSM_MEMLOCK_NEED (1024ul * 1024 * 1024)

/* The environment knobs read as numbers (P11VAULT_HSM_DEADLINE_MS,
 * P11VAULT_UNSEAL_TIMEOUT_MS), checked once at start: 0 when each is
 * unset or a whole number in its range; else -1, err naming the
 * variable and its range. */
#define HSM_UNSEAL_TIMEOUT_ENV "P11VAULT_UNSEAL_TIMEOUT_MS"
#define HSM_UNSEAL_TIMEOUT_MAX_MS 600000u
int hsm_env_check(char *err, size_t err_len) HSM_WUR;
/* 0 if dir is owned by user. */
int hsm_check_data_owner(const char *dir, const char *user, char *err,
    size_t err_len) HSM_WUR;
/* setgroups(0), gid, uid (root cannot be regained), no_new_privs, not
 * dumpable; already being that user is fine. */
int hsm_drop_privileges(const char *user, char *err, size_t err_len) HSM_WUR;
/* Not dumpable, no core files; while root, RLIMIT_MEMLOCK raised to
 * HSM_MEMLOCK_NEED so that hsm_lock_memory still can after the drop to
 * --user (token process). */
void hsm_harden_early(void);
/* mlockall(MCL_CURRENT | MCL_FUTURE) where RLIMIT_MEMLOCK allows it;
 * -1 (nothing locked) where it does not. */
int hsm_lock_memory(void) HSM_WUR;
/*
 * Memory for a secret (the token process's PIN copy): pages of its own,
 * mapped anonymously, left out of core dumps (MADV_DONTDUMP) and locked
 * where the limit allows; zeroed. NULL if it cannot be mapped.
 * hsm_secret_free wipes, unlocks and unmaps it (len as allocated; NULL
 * is fine).
 */
void *hsm_secret_alloc(size_t len) HSM_WUR;
void hsm_secret_free(void *p, size_t len);

/* The seccomp filters (seccomp.c), for every thread of the calling
 * process; anything not listed kills the process. The token process's:
 * installed once the token is open, no socket, connect, execve. The
 * network process's: installed once it serves; its token processes
 * inherit it. */
int hsm_seccomp_token(void) HSM_WUR;

int hsm_seccomp_network(void) HSM_WUR;
/* The same, and the connections of a PostgreSQL store (socket of
 * AF_UNIX, AF_INET, AF_INET6; connect). */
int hsm_seccomp_network_db(void) HSM_WUR;

/*
 * Runs argv (PATH lookup), its stdin from in_fd (>= 0) or the bytes in,
 * its stdout into out[cap] (*out_len), stderr to ours; killed after
 * P11VAULT_UNSEAL_TIMEOUT_MS (default 30000). 0 if it exited 0. For the
 * unattended methods (systemd-creds, clevis), before any filter.
 */
int hsm_run(char *const argv[], int in_fd, const void *in, size_t in_len,
    uint8_t *out, size_t cap, size_t *out_len) HSM_WUR;

/* write(2) until all of p is written (EINTR retried): 0 or -1. */
int hsm_write_all(int fd, const void *p, size_t n) HSM_WUR;
/* fsync of a directory (after a rename in it): 0 or -1. */
int hsm_sync_dir(const char *dir) HSM_WUR;

/* Overwrites a small file with zeros, fsyncs it, and unlinks it. */
void hsm_shred(const char *path);

#endif
