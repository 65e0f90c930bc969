/*
 * vault/config.h — DIR/p11vault.conf (key=value lines) and the few
 * file-system helpers for the data directory (0700 dirs, 0600 files,
 * written durably). Used by vault/ and by the command line (api/cli_*.c),
 * which reads a stopped vault's config with the same parser as the server.
 */
#ifndef P11VAULT_VAULT_CONFIG_H
#define P11VAULT_VAULT_CONFIG_H

#include <stddef.h>

#include "vault/vault.h"

#define CONF_LINE_MAX 4096
#define CONF_ENTRIES_MAX 64

struct vlt_conf;

struct vlt_conf *conf_new(void) VLT_WUR;
void conf_free(struct vlt_conf *c);
/* VLT_ERR_NOT_FOUND: no such file; VLT_ERR_IO: unreadable or malformed:
 * a line that is not key=value, a key config.c's table does not know, a
 * value not of its key's kind (a number, a boolean, a non-empty string),
 * a key given twice. */
int conf_read(const char *path, struct vlt_conf **out) VLT_WUR;
/* The same; on failure err (may be NULL) says why for people, naming
 * path, the line and the key ("p11vault.conf:3: unknown key 'x'"). */
int conf_read_err(const char *path, struct vlt_conf **out, char *err,
    size_t err_len) VLT_WUR;
/* Keys: [a-z0-9_]+; values: no control characters. Replaces. */
int conf_set(struct vlt_conf *c, const char *key, const char *value) VLT_WUR;
const char *conf_get(const struct vlt_conf *c, const char *key);
/* Writes path (0600) atomically and durably; VLT_ERR_EXISTS if it is
 * already there (never overwritten). */
int conf_write_new(const struct vlt_conf *c, const char *path) VLT_WUR;

/* dir/name into dst; VLT_ERR_BAD_PARAM if it does not fit. */
int fs_join(char *dst, size_t cap, const char *dir, const char *name) VLT_WUR;
/* 0 when path exists (not following a last symlink), else
 * VLT_ERR_NOT_FOUND. */
int fs_lookup(const char *path) VLT_WUR;
/* mkdir 0700; an existing directory is fine. */
int fs_mkdir_private(const char *path) VLT_WUR;
/* Creates or replaces path with mode 0600, fsync'd with its directory. */
int fs_write_private(const char *path, const void *data, size_t len) VLT_WUR;

#endif
