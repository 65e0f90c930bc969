/* tests/tools/pgtmp.sh from a unit test (test_store, test_cluster): runs
 * "pgtmp.sh CMD DIR", the first line it prints in out (when out is not
 * NULL); its exit status, or -1. */
#ifndef P11VAULT_TESTS_PGTMP_H
#define P11VAULT_TESTS_PGTMP_H

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#define PGTMP "tests/tools/pgtmp.sh"

static int
pgtmp(const char *cmd, const char *dir, char *out, size_t cap)
{
	char line[600];
	FILE *f;
	int st;

	snprintf(line, sizeof(line), "%s %s '%s'", PGTMP, cmd, dir);
	if ((f = popen(line, "r")) == NULL)
		return -1;
	if (out != NULL && (fgets(out, (int)cap, f) == NULL))
		out[0] = '\0';
	if (out != NULL)
		out[strcspn(out, "\n")] = '\0';
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
