/*
 * affinity.c — the channel-to-CPU map of hsm/affinity.h.
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

int
hsm_cpus_chan(const struct hsm_cpus *c, size_t idx)
{
	if (c->n < 2)
		return -1;
	return c->cpu[idx % c->n];
}

void
hsm_cpus_pin(const struct hsm_cpus *c, size_t idx)
{
	int cpu = hsm_cpus_chan(c, idx);
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET((size_t)cpu, &set);
	/* 0: this thread (the token filter allows no other) */
	(void)sched_setaffinity(0, sizeof(set), &set);
}

int
hsm_cpus_current(void)
{
	return sched_getcpu();
}
