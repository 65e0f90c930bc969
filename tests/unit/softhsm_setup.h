/*
 * softhsm_setup.h — the private SoftHSMv2 token directory the hsm-level
 * unit tests run against: mkdtemp(dir), dir/tokens, dir/softhsm2.conf,
 * and SOFTHSM2_CONF pointing at it. dir is a mkdtemp template the caller
 * owns (and removes at the end).
 */
#ifndef P11VAULT_TESTS_SOFTHSM_SETUP_H
#define P11VAULT_TESTS_SOFTHSM_SETUP_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* 0, or -1 if the directory or the configuration could not be made. */
static inline int
softhsm_setup(char *dir)
{
	char path[512], conf[1024];
	FILE *fp;
	int n;

	if (mkdtemp(dir) == NULL)
		return -1;
	n = snprintf(path, sizeof(path), "%s/tokens", dir);
	if (n < 0 || (size_t)n >= sizeof(path) || mkdir(path, 0700) != 0)
		return -1;
	n = snprintf(conf, sizeof(conf),
	    "directories.tokendir = %s\n"
	    "objectstore.backend = file\nlog.level = ERROR\n"
	    "slots.removable = false\n",
	    path);
	if (n < 0 || (size_t)n >= sizeof(conf))
		return -1;
	n = snprintf(path, sizeof(path), "%s/softhsm2.conf", dir);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -1;
	if ((fp = fopen(path, "w")) == NULL)
		return -1;
	fputs(conf, fp);
	fclose(fp);
	return setenv("SOFTHSM2_CONF", path, 1);
}

#endif
