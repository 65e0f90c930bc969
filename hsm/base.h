/*
 * hsm/base.h — the few helpers every room needs, each written once: a
 * checked snprintf, strict number parsing, one file reader, one hash for
 * hash tables. In hsm/, the bottom room, so that every room can call down.
 * 0 or a negative HSM_ERR_*.
 */
#ifndef P11VAULT_HSM_BASE_H
#define P11VAULT_HSM_BASE_H

#include <stddef.h>
#include <stdint.h>

#include "hsm/buf.h"
#include "hsm/hsm.h"

/* snprintf that fails instead of truncating: 0, or HSM_ERR_ARGS when the
 * text does not fit in cap (dst then holds "" ). */
int str_fmt(char *dst, size_t cap, const char *fmt, ...) HSM_WUR
    __attribute__((format(printf, 3, 4)));
/* A whole decimal number in [0, max], nothing before or after it (no sign,
 * no space): 0, or HSM_ERR_ARGS. */
int parse_u64(const char *s, uint64_t max, uint64_t *out) HSM_WUR;
/* The same for a signed number in [min, max]. */
int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) HSM_WUR;
/* The whole file at path, at most max bytes, into a new buffer (wiped when
 * freed, so it may hold a secret): 0; HSM_ERR_ARGS when it is longer than
 * max; HSM_ERR_IO (errno kept) when it cannot be read. */
int file_read(const char *path, size_t max, buf_t **out) HSM_WUR;
/* A one-line reason for a person into a caller's buffer (char *err,
 * size_t err_len), never parsed: cut to fit, the cut marked "...";
 * "" if it cannot be formatted; err may be NULL or err_len 0. The one
 * such formatter of the tree. Must never be given a secret. */
void err_set(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with what, then " (" OpenSSL's last error ")" when there is
 * one; clears OpenSSL's error queue. */
void err_set_ossl(char *err, size_t err_len, const char *what);
/* FNV-1a, 64 bits: for hash tables, never for anything secret. */
uint64_t hash_fnv1a(const void *p, size_t n);

#endif
