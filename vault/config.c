/*
 * vault/config.c — the data directory on disk: DIR/p11vault.conf
 * (key=value lines) and small private files (the SoftHSMv2 config, the
 * test clock).
 *
 * Owns: file modes (directories 0700, files 0600, whatever the umask) and
 * durable writes (fsync of the file and of its directory).
 *
 * Must never: log file contents, or
 * overwrite DIR/p11vault.conf: its presence is what "holds a vault" means.
 */
#include "vault/config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hsm/base.h"

struct conf_entry {
	char *key;
	char *value;
};

struct vlt_conf {
	struct conf_entry e[CONF_ENTRIES_MAX];
	size_t n;
};

struct vlt_conf *
conf_new(void)
{
	return calloc(1, sizeof(struct vlt_conf));
}

void
conf_free(struct vlt_conf *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->n; i++) {
		free(c->e[i].key);
		free(c->e[i].value);
	}
	free(c);
}

static int
key_ok(const char *k)
{
	size_t i;

	if (k[0] == '\0' || strlen(k) > 64)
		return 0;
	for (i = 0; k[i] != '\0'; i++)
		if (!((k[i] >= 'a' && k[i] <= 'z') ||
		        (k[i] >= '0' && k[i] <= '9') || k[i] == '_'))
			return 0;
	return 1;
}

static int
value_ok(const char *v)
{
	size_t i;

	if (strlen(v) >= CONF_LINE_MAX - 80)
		return 0;
	for (i = 0; v[i] != '\0'; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return 0;
	return 1;
}

int
conf_set(struct vlt_conf *c, const char *key, const char *value)
{
	char *k = NULL, *v = NULL;
	size_t i;

	if (!key_ok(key) || value == NULL || !value_ok(value))
		return VLT_ERR_BAD_PARAM;
	if ((v = strdup(value)) == NULL)
		return VLT_ERR_NO_MEMORY;
	for (i = 0; i < c->n; i++) {
		if (strcmp(c->e[i].key, key) == 0) {
			free(c->e[i].value);
			c->e[i].value = v;
			return 0;
		}
	}
	if (c->n == CONF_ENTRIES_MAX || (k = strdup(key)) == NULL) {
		free(v);
		return c->n == CONF_ENTRIES_MAX ? VLT_ERR_BAD_PARAM :
		                                  VLT_ERR_NO_MEMORY;
	}
	c->e[c->n].key = k;
	c->e[c->n].value = v;
	c->n++;
	return 0;
}

const char *
conf_get(const struct vlt_conf *c, const char *key)
{
	size_t i;

	for (i = 0; i < c->n; i++)
		if (strcmp(c->e[i].key, key) == 0)
			return c->e[i].value;
	return NULL;
}

/* One "key=value" line (CR stripped; blank lines and # comments
 * skipped) into c. */
static int
conf_line(struct vlt_conf *c, char *line)
{
	size_t len = strlen(line);
	char *eq;
	int r;

	while (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	if (len == 0 || line[0] == '#')
		return 0;
	if (len >= CONF_LINE_MAX - 1 || (eq = strchr(line, '=')) == NULL)
		return VLT_ERR_IO;
	*eq = '\0';
	if ((r = conf_set(c, line, eq + 1)) != 0)
		return r == VLT_ERR_NO_MEMORY ? r : VLT_ERR_IO;
	return 0;
}

int
conf_read(const char *path, struct vlt_conf **out)
{
	struct vlt_conf *c = NULL;
	buf_t *b = NULL;
	char *text = NULL, *line, *nl;
	size_t len = 0;
	int r;

	*out = NULL;
	if ((r = file_read(path, CONF_LINE_MAX * CONF_ENTRIES_MAX, &b)) != 0)
		return r == HSM_ERR_IO && errno == ENOENT ? VLT_ERR_NOT_FOUND :
		                                            VLT_ERR_IO;
	if ((text = buf_steal(b, &len)) == NULL || (c = conf_new()) == NULL) {
		r = VLT_ERR_NO_MEMORY;
		goto out;
	}
	if (memchr(text, '\0', len) != NULL) {
		r = VLT_ERR_IO;
		goto out;
	}
	for (line = text; line < text + len; line = nl + 1) {
		if ((nl = strchr(line, '\n')) == NULL)
			nl = text + len;
		*nl = '\0';
		if ((r = conf_line(c, line)) != 0)
			goto out;
	}
	*out = c;
	c = NULL;
	r = 0;
out:
	conf_free(c);
	freezero(text, len + 1);
	return r;
}

int
fs_join(char *dst, size_t cap, const char *dir, const char *name)
{
	return str_fmt(dst, cap, "%s/%s", dir, name) == 0 ? 0 :
	                                                    VLT_ERR_BAD_PARAM;
}

int
fs_lookup(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 ? 0 : VLT_ERR_NOT_FOUND;
}

int
fs_mkdir_private(const char *path)
{
	struct stat st;

	if (mkdir(path, 0700) == 0)
		return chmod(path, 0700) == 0 ? 0 : VLT_ERR_IO;
	if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	return VLT_ERR_IO;
}

static int
fsync_parent(const char *path)
{
	char tmp[PATH_MAX];
	int fd, r;

	if (str_fmt(tmp, sizeof(tmp), "%s", path) != 0)
		return VLT_ERR_IO;
	if ((fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return VLT_ERR_IO;
	r = fsync(fd) == 0 ? 0 : VLT_ERR_IO;
	close(fd);
	return r;
}

/* Writes and fsyncs a new file at path (O_EXCL). */
static int
write_excl(const char *path, const void *data, size_t len)
{
	const unsigned char *p = data;
	ssize_t w;
	int fd, r = VLT_ERR_IO;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0)
		return errno == EEXIST ? VLT_ERR_EXISTS : VLT_ERR_IO;
	if (fchmod(fd, 0600) != 0)
		goto out;
	while (len > 0) {
		w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto out;
		p += w;
		len -= (size_t)w;
	}
	if (fsync(fd) != 0)
		goto out;
	r = 0;
out:
	if (close(fd) != 0)
		r = VLT_ERR_IO;
	if (r != 0)
		unlink(path);
	return r;
}

int
fs_write_private(const char *path, const void *data, size_t len)
{
	char tmp[PATH_MAX];
	int r;

	if (str_fmt(tmp, sizeof(tmp), "%s.tmp", path) != 0)
		return VLT_ERR_IO;
	(void)unlink(tmp);
	if ((r = write_excl(tmp, data, len)) != 0)
		return r == VLT_ERR_EXISTS ? VLT_ERR_IO : r;
	if (rename(tmp, path) != 0) {
		unlink(tmp);
		return VLT_ERR_IO;
	}
	return fsync_parent(path);
}

int
conf_write_new(const struct vlt_conf *c, const char *path)
{
	char tmp[PATH_MAX];
	buf_t *b;
	size_t i;
	int r = 0;

	if ((b = buf_new(CONF_LINE_MAX * CONF_ENTRIES_MAX)) == NULL)
		return VLT_ERR_NO_MEMORY;
	for (i = 0; r == 0 && i < c->n; i++)
		r = buf_putf(b, "%s=%s\n", c->e[i].key, c->e[i].value);
	if (r != 0) {
		r = VLT_ERR_INTERNAL;
		goto out;
	}
	if (str_fmt(tmp, sizeof(tmp), "%s.tmp", path) != 0) {
		r = VLT_ERR_IO;
		goto out;
	}
	(void)unlink(tmp);
	if ((r = write_excl(tmp, buf_ptr(b), buf_len(b))) != 0)
		goto out;
	/* link(2) fails with EEXIST: never replaces an existing config. */
	if (link(tmp, path) != 0) {
		r = errno == EEXIST ? VLT_ERR_EXISTS : VLT_ERR_IO;
		unlink(tmp);
		goto out;
	}
	unlink(tmp);
	r = fsync_parent(path);
out:
	buf_free(b);
	return r;
}
