/*
 * vault/datadir.c — a data directory is relocatable: the paths its files
 * name (softhsm_conf= in p11vault.conf, directories.tokendir= in its
 * softhsm2.conf) are resolved at every open against the directory being
 * opened, so that a copy (a backup restored elsewhere, a restore drill
 * on the same host) runs on its own token.
 *
 * Owns: the rule for a path that names a place inside another data
 * directory (one holding a p11vault.conf): the same file of the opened
 * directory is used when it exists, else the open is refused; and the
 * refresh of the directory's own softhsm2.conf (SoftHSMv2 wants an
 * absolute token directory) when it names another token directory.
 *
 * Must never: let the token process of one data directory open another
 * directory's token; rewrite p11vault.conf; touch a file outside the
 * opened directory.
 */
#include "vault/vault_int.h"

#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hsm/base.h"

#define SOFTHSM_CONF_MAX 65536
#define TOKENDIR_KEY "directories.tokendir"

/* 1 when path exists (a symlink: its target). */
static int
exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* 1 when path is dir/something (as text). */
static int
lexically_inside(const char *dir, const char *path)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && path[n] == '/' &&
	    path[n + 1] != '\0';
}

/* The data directory other than dir that path (its real path, when it
 * exists) lies at the top of, into other; 0 when there is none. */
static int
foreign_dir(const char *dir, const char *path, char *other, size_t cap)
{
	char real[PATH_MAX], parent[PATH_MAX], conf[PATH_MAX];

	if (realpath(path, real) == NULL &&
	    str_fmt(real, sizeof(real), "%s", path) != 0)
		return 0;
	if (realpath(dirname(real), parent) == NULL)
		return 0;
	if (strcmp(parent, dir) == 0 ||
	    fs_join(conf, sizeof(conf), parent, "p11vault.conf") != 0 ||
	    !exists(conf))
		return 0;
	return str_fmt(other, cap, "%s", parent) == 0;
}

/* A path (name names it for the message) inside dir: it must be there,
 * and not lead into another data directory. */
static int
resolve_inside(const char *dir, const char *name, const char *path, char *out,
    size_t cap, char *err, size_t err_len)
{
	char other[PATH_MAX];

	if (!exists(path)) {
		err_set(err, err_len, "%s: %s is missing", name, path);
		return VLT_ERR_IO;
	}
	if (foreign_dir(dir, path, other, sizeof(other))) {
		err_set(err, err_len,
		    "%s: %s leads into the data directory %s, not %s: a "
		    "data directory never uses another's token",
		    name, path, other, dir);
		return VLT_ERR_IO;
	}
	return str_fmt(out, cap, "%s", path) == 0 ? 0 : VLT_ERR_BAD_PARAM;
}

/* A path outside dir: dir's file of the same name when dir has one of
 * its own (a copy of a directory whose files named themselves
 * absolutely); refused when it lies in another data directory and dir
 * has no such file; else (a file of the system's) as it is. */
static int
resolve_outside(const char *dir, const char *name, const char *path, char *out,
    size_t cap, char *err, size_t err_len)
{
	char tmp[PATH_MAX], own[PATH_MAX], other[PATH_MAX];

	if (str_fmt(tmp, sizeof(tmp), "%s", path) != 0 ||
	    fs_join(own, sizeof(own), dir, basename(tmp)) != 0)
		return VLT_ERR_BAD_PARAM;
	if (exists(own) && !foreign_dir(dir, own, other, sizeof(other)))
		return str_fmt(out, cap, "%s", own) == 0 ? 0 :
		                                           VLT_ERR_BAD_PARAM;
	if (foreign_dir(dir, exists(own) ? own : path, other, sizeof(other))) {
		err_set(err, err_len,
		    "%s: %s is in the data directory %s, not in %s, and %s "
		    "is missing: a copied data directory never uses "
		    "another's token",
		    name, path, other, dir, own);
		return VLT_ERR_IO;
	}
	if (!exists(path)) {
		err_set(err, err_len, "%s: %s is missing", name, path);
		return VLT_ERR_IO;
	}
	return str_fmt(out, cap, "%s", path) == 0 ? 0 : VLT_ERR_BAD_PARAM;
}

/* value (relative: to dir) resolved for dir into out. */
static int
resolve_path(const char *dir, const char *name, const char *value, char *out,
    size_t cap, char *err, size_t err_len)
{
	char path[PATH_MAX];

	if (value[0] == '/') {
		if (str_fmt(path, sizeof(path), "%s", value) != 0)
			return VLT_ERR_BAD_PARAM;
	} else if (fs_join(path, sizeof(path), dir, value) != 0) {
		return VLT_ERR_BAD_PARAM;
	}
	if (lexically_inside(dir, path))
		return resolve_inside(dir, name, path, out, cap, err, err_len);
	return resolve_outside(dir, name, path, out, cap, err, err_len);
}

/* 1 when the line at p (len bytes, no newline) is "directories.tokendir
 * = VALUE" (blanks around both), VALUE into val. */
static int
tokendir_of(const char *p, size_t len, char *val, size_t cap)
{
	size_t n = sizeof(TOKENDIR_KEY) - 1, i = 0;

	while (i < len && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (len - i < n || memcmp(p + i, TOKENDIR_KEY, n) != 0)
		return 0;
	for (i += n; i < len && (p[i] == ' ' || p[i] == '\t'); i++)
		;
	if (i == len || p[i] != '=')
		return 0;
	for (i++; i < len && (p[i] == ' ' || p[i] == '\t'); i++)
		;
	while (len > i &&
	    (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\r'))
		len--;
	return len > i && str_fmt(val, cap, "%.*s", (int)(len - i), p + i) == 0;
}

/* text (a softhsm2.conf) with each tokendir line saying tokdir, into
 * shconf. */
static int
rewrite_tokendir(const char *shconf, const char *text, const char *tokdir)
{
	char val[PATH_MAX];
	const char *line, *nl;
	buf_t *b;
	size_t len;
	int r = 0;

	if ((b = buf_new(SOFTHSM_CONF_MAX + PATH_MAX)) == NULL)
		return VLT_ERR_NO_MEMORY;
	for (line = text; r == 0 && *line != '\0'; line += len + 1) {
		nl = strchr(line, '\n');
		len = nl != NULL ? (size_t)(nl - line) : strlen(line);
		if (tokendir_of(line, len, val, sizeof(val)))
			r = buf_putf(b, "%s = %s\n", TOKENDIR_KEY, tokdir);
		else
			r = buf_putf(b, "%.*s\n", (int)len, line);
		if (nl == NULL)
			break;
	}
	r = r == 0 ? fs_write_private(shconf, buf_ptr(b), buf_len(b)) :
	             VLT_ERR_INTERNAL;
	buf_free(b);
	return r;
}

/* The token directory that shconf (dir's own softhsm2.conf) names, made
 * dir's: resolved as any path of the directory, and written back when
 * that changes it. A conf without one is left alone. */
static int
own_tokendir(const char *dir, const char *shconf, char *err, size_t err_len)
{
	char val[PATH_MAX], cand[PATH_MAX], tokdir[PATH_MAX];
	const char *text, *line, *nl;
	buf_t *b = NULL;
	size_t len;
	int r, found = 0;

	if (file_read(shconf, SOFTHSM_CONF_MAX, &b) != 0) {
		err_set(err, err_len, "%s cannot be read", shconf);
		return VLT_ERR_IO;
	}
	text = buf_str(b);
	/* the last tokendir line is the one SoftHSMv2 goes by */
	for (line = text; *line != '\0'; line += len + 1) {
		nl = strchr(line, '\n');
		len = nl != NULL ? (size_t)(nl - line) : strlen(line);
		if (tokendir_of(line, len, cand, sizeof(cand))) {
			memcpy(val, cand, sizeof(val));
			found = 1;
		}
		if (nl == NULL)
			break;
	}
	r = 0;
	if (found &&
	    (r = resolve_path(dir, TOKENDIR_KEY, val, tokdir, sizeof(tokdir),
	         err, err_len)) == 0 &&
	    strcmp(val, tokdir) != 0)
		r = rewrite_tokendir(shconf, text, tokdir);
	buf_free(b);
	return r;
}

int
vlt_softhsm_resolve(const char *dir, const char *value, char *out, size_t cap,
    char *err, size_t err_len)
{
	int r;

	out[0] = '\0';
	if (value == NULL)
		return 0;
	if ((r = resolve_path(dir, "softhsm_conf", value, out, cap, err,
	         err_len)) != 0)
		return r;
	if (!lexically_inside(dir, out))
		return 0;
	return own_tokendir(dir, out, err, err_len);
}
