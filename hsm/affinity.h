/*
 * hsm/affinity.h — which CPU each channel to the token process belongs
 * to (affinity.c). Both processes compute the same map from the CPUs the
 * process may run on (sched_getaffinity; the token process inherits the
 * mask from the process that starts it): channel i belongs to slot
 * i mod n, the (i mod n)-th of those n CPUs. The token process pins the
 * thread of channel i to that CPU; the client prefers a free channel of
 * the slot its caller runs on, so a request and its answer wake a thread
 * on the caller's own CPU (no cross-CPU wake-up). The map is only a
 * preference: a mask that differs between the two processes, or a pin
 * the kernel refuses, costs speed, never an answer.
 */
#ifndef P11VAULT_HSM_AFFINITY_H
#define P11VAULT_HSM_AFFINITY_H

#include <stddef.h>

#define HSM_CPUS_MAX 64 /* CPUs of the map; beyond, channels share them */

struct hsm_cpus {
	size_t n; /* 0 or 1: no map (nothing to pin, nothing to prefer) */
	int cpu[HSM_CPUS_MAX];
};

/* The CPUs this process may run on, ascending (at most HSM_CPUS_MAX of
 * them); c->n = 0 when they cannot be read. */
void hsm_cpus_get(struct hsm_cpus *c);
/* How many CPUs this process may run on (its affinity mask: what
 * CPUAffinity= or taskset left it), at least 1; the online count when
 * the mask cannot be read. Every "per CPU" size of the server (I/O
 * threads, connection threads, sessions, malloc arenas) counts these. */
unsigned hsm_cpus_count(void);
/* The slot of channel idx (idx mod n); only with a map (n > 1). */
size_t hsm_cpus_slot(const struct hsm_cpus *c, size_t idx);
/* The slot of the CPU the calling thread runs on now; -1 when there is
 * no map or that CPU is not in it. */
int hsm_cpus_here(const struct hsm_cpus *c);
/* The calling thread pinned to the CPU of channel idx (sched_setaffinity
 * of pid 0; token process); nothing when there is no map or the kernel
 * refuses. */
void hsm_cpus_pin(const struct hsm_cpus *c, size_t idx);

#endif
