/*
 * vault/config.c — the data directory on disk: DIR/p11vault.conf
 * (key=value lines) and small private files (the SoftHSMv2 config, the
 * test clock).
 *
 * Owns: file modes (directories 0700, files 0600, whatever the umask) and
 * durable writes (fsync of the file and of its directory).
 *
 * Must never: log file contents (an error names the file, the line and
 * the key, and quotes at most 32 characters of a bad number or boolean),
 * accept a key its table does not know, or
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

/* The keys p11vault.conf may hold, each with the kind of its value,
 * checked once when the file is read: a key not in this table, a value
 * not of its kind or a key given twice is an error naming the line. A
 * new key is added here first. */
enum conf_kind {
	CONF_STRING, /* any text but "" */
	CONF_PATH,   /* a file name; relative: to the data directory */
	CONF_NUMBER, /* a decimal number in [min, max] */
	CONF_BOOL,   /* true or false */
};

struct conf_key {
	const char *key;
	enum conf_kind kind;
	uint64_t min, max;
};

static const struct conf_key conf_keys[] = {
	{ "vault_url", CONF_STRING, 0, 0 },
	{ "tenant_id", CONF_STRING, 0, 0 },
	{ "resource", CONF_STRING, 0, 0 },
	{ "vault_domain", CONF_STRING, 0, 0 },
	/* a PostgreSQL connection string (docs/cluster.md); absent: vault.db */
	{ "store", CONF_STRING, 0, 0 },
	/* a node of a cluster (docs/cluster.md) */
	{ "node_fingerprint", CONF_STRING, 0, 0 },
	{ "cluster_lease_ms", CONF_NUMBER, 100, 60000 },
	{ "vault_name", CONF_STRING, 0, 0 },
	/* the management API's: the default vault's resource group and
	 * location, the subscription's id (default: the tenant id) */
	{ "resource_group", CONF_STRING, 0, 0 },
	{ "location", CONF_STRING, 0, 0 },
	{ "subscription_id", CONF_STRING, 0, 0 },
	{ "listen", CONF_STRING, 0, 0 },
	{ "metrics_listen", CONF_STRING, 0, 0 },
	{ "module", CONF_PATH, 0, 0 },
	{ "token_label", CONF_STRING, 0, 0 },
	{ "softhsm_conf", CONF_PATH, 0, 0 },
	{ "token_lifetime", CONF_NUMBER, 1, INT32_MAX },
	{ "audit_max_bytes", CONF_NUMBER, 0, SIZE_MAX },
	{ "audit_checkpoint_lines", CONF_NUMBER, 0, UINT32_MAX },
	{ "audit_checkpoint_seconds", CONF_NUMBER, 0, UINT32_MAX },
	{ "audit_syslog", CONF_BOOL, 0, 0 },
	{ "audit_syslog_socket", CONF_PATH, 0, 0 },
	/* admission control and rate limits (api/admit.c) */
	{ "admission", CONF_BOOL, 0, 0 },
	{ "admission_target_ms", CONF_NUMBER, 1, 60000 },
	{ "admission_slots", CONF_NUMBER, 1, 4096 },
	{ "admission_queue", CONF_NUMBER, 0, 65536 },
	{ "rate_limit_vault", CONF_NUMBER, 1, UINT32_MAX },
	{ "rate_limit_identity", CONF_NUMBER, 1, UINT32_MAX },
	{ "rate_limit_identities", CONF_STRING, 0, 0 },
};

/* Where a read is: the file, the line, and the caller's buffer for why
 * it failed. */
struct conf_parse {
	struct vlt_conf *c;
	const char *path;
	unsigned line;
	char *err;
	size_t err_len;
};

static const struct conf_key *
conf_key_find(const char *key)
{
	size_t i;

	for (i = 0; i < sizeof(conf_keys) / sizeof(conf_keys[0]); i++)
		if (strcmp(conf_keys[i].key, key) == 0)
			return &conf_keys[i];
	return NULL;
}

/* 0 when value is of k's kind; else VLT_ERR_IO, the reason in p->err. */
static int
conf_value_check(struct conf_parse *p, const struct conf_key *k,
    const char *value)
{
	uint64_t n;

	switch (k->kind) {
	case CONF_STRING:
	case CONF_PATH:
		if (value[0] != '\0')
			return 0;
		err_set(p->err, p->err_len, "%s:%u: %s is empty", p->path,
		    p->line, k->key);
		return VLT_ERR_IO;
	case CONF_NUMBER:
		if (parse_u64(value, k->max, &n) == 0 && n >= k->min)
			return 0;
		err_set(p->err, p->err_len,
		    "%s:%u: %s='%.32s' is not a number from %llu to %llu",
		    p->path, p->line, k->key, value, (unsigned long long)k->min,
		    (unsigned long long)k->max);
		return VLT_ERR_IO;
	case CONF_BOOL:
		if (strcmp(value, "true") == 0 || strcmp(value, "false") == 0)
			return 0;
		err_set(p->err, p->err_len,
		    "%s:%u: %s='%.32s' is neither true nor false", p->path,
		    p->line, k->key, value);
		return VLT_ERR_IO;
	}
	return VLT_ERR_INTERNAL;
}

/* The key=value of one line: a known key, given once, with a value of
 * its kind. */
static int
conf_entry_check(struct conf_parse *p, const char *key, const char *value)
{
	const struct conf_key *k;

	if (!key_ok(key)) {
		err_set(p->err, p->err_len,
		    "%s:%u: '%.64s' is not a key (a-z, 0-9 and _; no spaces "
		    "around =)",
		    p->path, p->line, key);
		return VLT_ERR_IO;
	}
	if ((k = conf_key_find(key)) == NULL) {
		err_set(p->err, p->err_len, "%s:%u: unknown key '%s'", p->path,
		    p->line, key);
		return VLT_ERR_IO;
	}
	if (conf_get(p->c, key) != NULL) {
		err_set(p->err, p->err_len, "%s:%u: %s is set twice", p->path,
		    p->line, key);
		return VLT_ERR_IO;
	}
	if (!value_ok(value)) {
		err_set(p->err, p->err_len,
		    "%s:%u: the value of %s is too long or holds a control "
		    "character",
		    p->path, p->line, key);
		return VLT_ERR_IO;
	}
	return conf_value_check(p, k, value);
}

/* One "key=value" line (CR stripped; blank lines and # comments
 * skipped) into p->c. */
static int
conf_line(struct conf_parse *p, char *line)
{
	size_t len = strlen(line);
	char *eq;
	int r;

	while (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	if (len == 0 || line[0] == '#')
		return 0;
	if (len >= CONF_LINE_MAX - 1 || (eq = strchr(line, '=')) == NULL) {
		err_set(p->err, p->err_len,
		    "%s:%u: not a key=value line (or longer than %d bytes)",
		    p->path, p->line, CONF_LINE_MAX - 2);
		return VLT_ERR_IO;
	}
	*eq = '\0';
	if ((r = conf_entry_check(p, line, eq + 1)) != 0)
		return r;
	if ((r = conf_set(p->c, line, eq + 1)) != 0) {
		err_set(p->err, p->err_len, "%s:%u: cannot keep %s", p->path,
		    p->line, line);
		return r == VLT_ERR_NO_MEMORY ? r : VLT_ERR_IO;
	}
	return 0;
}

/* Every line of text (len bytes, NUL-terminated) into p->c. */
static int
conf_lines(struct conf_parse *p, char *text, size_t len)
{
	char *line, *nl;
	int r;

	if (memchr(text, '\0', len) != NULL) {
		err_set(p->err, p->err_len, "%s: holds a NUL byte", p->path);
		return VLT_ERR_IO;
	}
	p->line = 0;
	for (line = text; line < text + len; line = nl + 1) {
		p->line++;
		if ((nl = strchr(line, '\n')) == NULL)
			nl = text + len;
		*nl = '\0';
		if ((r = conf_line(p, line)) != 0)
			return r;
	}
	return 0;
}

int
conf_read_err(const char *path, struct vlt_conf **out, char *err,
    size_t err_len)
{
	struct conf_parse p;
	buf_t *b = NULL;
	char *text = NULL;
	size_t len = 0;
	int r;

	*out = NULL;
	err_set(err, err_len, "%s", "");
	memset(&p, 0, sizeof(p));
	p.path = path;
	p.err = err;
	p.err_len = err_len;
	if ((r = file_read(path, CONF_LINE_MAX * CONF_ENTRIES_MAX, &b)) != 0) {
		r = r == HSM_ERR_IO && errno == ENOENT ? VLT_ERR_NOT_FOUND :
		                                         VLT_ERR_IO;
		err_set(err, err_len, "%s: %s", path,
		    r == VLT_ERR_NOT_FOUND ? "no such file" :
		                             "cannot be read (or is too long)");
		return r;
	}
	if ((text = buf_steal(b, &len)) == NULL || (p.c = conf_new()) == NULL) {
		r = VLT_ERR_NO_MEMORY;
		goto out;
	}
	if ((r = conf_lines(&p, text, len)) != 0)
		goto out;
	*out = p.c;
	p.c = NULL;
out:
	conf_free(p.c);
	freezero(text, len + 1);
	return r;
}

int
conf_read(const char *path, struct vlt_conf **out)
{
	return conf_read_err(path, out, NULL, 0);
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
