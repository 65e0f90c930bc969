/*
 * affinity.c — the channel-to-CPU map of hsm/affinity.h, and the count of
 * CPUs the process may use.
 *
 * Why: on a virtual machine a wake-up of a thread on another CPU costs an
 * interrupt between virtual CPUs (tens of µs); every token call wakes a
 * token-process thread and then its caller. With the caller, the
 * channel's token thread and the answer on one CPU, both wake-ups are
 * local (docs/performance.md, "Channels by CPU").
 * Owns: reading the mask, pinning a channel thread. Must never: fail a
 * call for want of a pin.
 */
#include <sched.h>
#include <unistd.h>

#include "hsm/affinity.h"

void
hsm_cpus_get(struct hsm_cpus *c)
{
	cpu_set_t set;
	int i;

	c->n = 0;
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return;
	for (i = 0; i < CPU_SETSIZE && c->n < HSM_CPUS_MAX; i++)
		if (CPU_ISSET((size_t)i, &set))
			c->cpu[c->n++] = i;
}

unsigned
hsm_cpus_count(void)
{
	cpu_set_t set;
	long n;
	int k;

	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) == 0 &&
	    (k = CPU_COUNT(&set)) > 0)
		return (unsigned)k;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

size_t
hsm_cpus_slot(const struct hsm_cpus *c, size_t idx)
{
	return idx % c->n;
}

int
hsm_cpus_here(const struct hsm_cpus *c)
{
	int cpu = c->n > 1 ? sched_getcpu() : -1;
	size_t j;

	for (j = 0; cpu >= 0 && j < c->n; j++)
		if (c->cpu[j] == cpu)
			return (int)j;
	return -1;
}

void
hsm_cpus_pin(const struct hsm_cpus *c, size_t idx)
{
	cpu_set_t set;

	if (c->n < 2)
		return;
	CPU_ZERO(&set);
	CPU_SET((size_t)c->cpu[hsm_cpus_slot(c, idx)], &set);
	/* 0: this thread (the token filter allows no other) */
	(void)sched_setaffinity(0, sizeof(set), &set);
}
