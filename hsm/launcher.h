/*
 * hsm/launcher.h — the token launcher (launcher.c): the process that
 * starts token processes, so that a restarted one starts as the first
 * did (root for its unattended unseal, no network filter). Private to
 * hsm/.
 */
#ifndef P11VAULT_HSM_LAUNCHER_H
#define P11VAULT_HSM_LAUNCHER_H

#include <sys/types.h>

#include "hsm/hsm.h"

/* argv[2] of the launcher (argv[1] is HSM_TOKEN_ARGV) */
#define HSM_LAUNCHER_ARGV "launcher"
/* the nice value of the token process (and the launcher that starts it):
 * the network process's threads (TLS, the 429s, reads) get a CPU before
 * the token's RSA work when the cores are busy (docs/performance.md) */
#define HSM_TOKEN_NICE 10

/* The environment of a process this one starts: a copy of ours, with
 * SOFTHSM2_CONF set to softhsm_conf (NULL: ours unchanged). NULL when out
 * of memory. Ours is never changed (setenv is not thread-safe). */
char **hsm_spawn_env(const char *softhsm_conf) HSM_WUR;
void hsm_spawn_env_free(char **env);
/* posix_spawn of /proc/self/exe token-process, boot_child as its fd 3,
 * with env (NULL: ours). */
int hsm_spawn_token(int boot_child, char *const *env, pid_t *pid) HSM_WUR;
/* Starts the launcher with env (NULL: ours; the token processes it starts
 * inherit it); *ctl: its control socket. */
int hsm_launcher_start(char *const *env, int *ctl, pid_t *pid) HSM_WUR;
/* A token process started by the launcher, boot_child as its fd 3. */
int hsm_launcher_spawn(int ctl, int boot_child, pid_t *pid) HSM_WUR;
/* The launcher's loop (fd 3: its control socket). Does not return. */
int hsm_launcher_main(void);

#endif
