/* Minimal test harness: each check prints "ok - NAME" or "not ok - NAME";
 * tests/run.sh counts those lines across every suite. */
#ifndef P11VAULT_T_H
#define P11VAULT_T_H
#include <stdio.h>
#include <stdlib.h>

static int t_failed;

#define T_CHECK(cond, name) \
	do { \
		if (cond) { \
			printf("ok - %s\n", (name)); \
		} else { \
			printf("not ok - %s (%s:%d: %s)\n", (name), __FILE__, \
			    __LINE__, #cond); \
			t_failed++; \
		} \
		fflush(stdout); \
	} while (0)

#define T_DONE() (t_failed ? 1 : 0)

/* Every test binary links the whole tree, and the vault starts its token
 * process as /proc/self/exe HSM_TOKEN_ARGV: become it before main().
 * glibc hands argc/argv to constructors. */
#include <string.h>
#include "hsm/hsm.h"
__attribute__((constructor)) static void
t_token_process(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], HSM_TOKEN_ARGV) == 0)
		exit(hsm_token_main(argc, argv));
}
#endif
