/*
 * vault/config.c — the data directory on disk: DIR/p11vault.conf
 * (key=value lines) and small private files (PINs, SoftHSMv2 config).
 *
 * Owns: file modes (directories 0700, files 0600, whatever the umask) and
 * durable writes (fsync of the file and of its directory).
 *
 * Must never: log file contents (PIN files pass through here), or
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

#include <openssl/crypto.h>

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

int
conf_read(const char *path, struct vlt_conf **out)
{
	struct vlt_conf *c = NULL;
	char line[CONF_LINE_MAX];
	FILE *f = NULL;
	char *eq;
	size_t len;
	int r;

	*out = NULL;
	if ((f = fopen(path, "re")) == NULL) {
		r = errno == ENOENT ? VLT_ERR_NOT_FOUND : VLT_ERR_IO;
		goto out;
	}
	if ((c = conf_new()) == NULL) {
		r = VLT_ERR_NO_MEMORY;
		goto out;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		len = strlen(line);
		if (len > 0 && line[len - 1] != '\n' && !feof(f)) {
			r = VLT_ERR_IO;         /* line too long */
			goto out;
		}
		while (len > 0 && (line[len - 1] == '\n' ||
		    line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		if ((eq = strchr(line, '=')) == NULL) {
			r = VLT_ERR_IO;
			goto out;
		}
		*eq = '\0';
		if ((r = conf_set(c, line, eq + 1)) != 0) {
			r = r == VLT_ERR_NO_MEMORY ? r : VLT_ERR_IO;
			goto out;
		}
	}
	if (ferror(f)) {
		r = VLT_ERR_IO;
		goto out;
	}
	*out = c;
	c = NULL;
	r = 0;
out:
	if (f != NULL)
		fclose(f);
	conf_free(c);
	return r;
}

int
fs_join(char *dst, size_t cap, const char *dir, const char *name)
{
	int n = snprintf(dst, cap, "%s/%s", dir, name);

	return n < 0 || (size_t)n >= cap ? VLT_ERR_BAD_PARAM : 0;
}

int
fs_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
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

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
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

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
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
	char tmp[PATH_MAX], *buf = NULL;
	size_t cap = 0, len = 0, i;
	int n, r;

	for (i = 0; i < c->n; i++)
		cap += strlen(c->e[i].key) + strlen(c->e[i].value) + 2;
	if ((buf = malloc(cap + 1)) == NULL)
		return VLT_ERR_NO_MEMORY;
	for (i = 0; i < c->n; i++) {
		n = snprintf(buf + len, cap + 1 - len, "%s=%s\n", c->e[i].key,
		    c->e[i].value);
		if (n < 0 || (size_t)n >= cap + 1 - len) {
			r = VLT_ERR_INTERNAL;
			goto out;
		}
		len += (size_t)n;
	}
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		r = VLT_ERR_IO;
		goto out;
	}
	(void)unlink(tmp);
	if ((r = write_excl(tmp, buf, len)) != 0)
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
	free(buf);
	return r;
}

int
fs_read_small(const char *path, char *buf, size_t cap, size_t *len)
{
	size_t got = 0;
	ssize_t n;
	int fd, r = VLT_ERR_IO;

	*len = 0;
	if (cap == 0)
		return VLT_ERR_IO;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return errno == ENOENT ? VLT_ERR_NOT_FOUND : VLT_ERR_IO;
	for (;;) {
		if (got == cap - 1) {
			char extra;

			/* Larger than the caller's cap: refuse. */
			n = read(fd, &extra, 1);
			if (n != 0)
				goto out;
			break;
		}
		n = read(fd, buf + got, cap - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r'))
		got--;
	buf[got] = '\0';
	*len = got;
	r = 0;
out:
	if (r != 0)
		OPENSSL_cleanse(buf, cap);
	close(fd);
	return r;
}
