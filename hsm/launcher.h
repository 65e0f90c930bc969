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

/* posix_spawn of /proc/self/exe token-process, boot_child as its fd 3 */
int hsm_spawn_token(int boot_child, pid_t *pid) HSM_WUR;
/* Starts the launcher; *ctl: its control socket. */
int hsm_launcher_start(int *ctl, pid_t *pid) HSM_WUR;
/* A token process started by the launcher, boot_child as its fd 3. */
int hsm_launcher_spawn(int ctl, int boot_child, pid_t *pid) HSM_WUR;
/* The launcher's loop (fd 3: its control socket). Does not return. */
int hsm_launcher_main(void);

#endif
