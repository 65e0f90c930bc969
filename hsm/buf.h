/*
 * hsm/buf.h — the one growable byte buffer of the tree (OpenSSH's sshbuf
 * is the model), and the one wipe.
 *
 * It lives in hsm/, the bottom room, so that every room can call down to
 * it. A buffer has a hard cap fixed at creation: an append that would pass
 * it fails with HSM_ERR_ARGS and leaves the buffer as it was. Contents are
 * kept NUL-terminated (the NUL is not counted), so a buffer of text can be
 * read with buf_str. Growing never leaves a copy behind: the old block is
 * wiped before it is freed, and buf_free wipes too, so a buffer may hold a
 * secret.
 *
 * Must never: let an append write past the cap; free a block unwiped.
 */
#ifndef P11VAULT_HSM_BUF_H
#define P11VAULT_HSM_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "hsm/hsm.h"

typedef struct buf buf_t;

/* A new empty buffer that may grow to max bytes; NULL when out of memory
 * (or max is 0). */
buf_t *buf_new(size_t max) HSM_WUR;
/* Wipes and frees; NULL is fine. */
void buf_free(buf_t *b);
/* Appends; 0, HSM_ERR_ARGS past the cap, HSM_ERR_NO_MEMORY. */
int buf_put(buf_t *b, const void *p, size_t n) HSM_WUR;
int buf_put_str(buf_t *b, const char *s) HSM_WUR;
int buf_put_u8(buf_t *b, uint8_t v) HSM_WUR;
int buf_put_u32(buf_t *b, uint32_t v) HSM_WUR; /* big-endian */
/* A u32 big-endian length, then the bytes. */
int buf_put_lp(buf_t *b, const void *p, size_t n) HSM_WUR;
int buf_putf(buf_t *b, const char *fmt, ...) HSM_WUR
    __attribute__((format(printf, 2, 3)));
int buf_vputf(buf_t *b, const char *fmt, va_list ap) HSM_WUR
    __attribute__((format(printf, 2, 0)));
/* Room for n more bytes at the end, written by the caller, then counted
 * by buf_commit(n): for reads that fill a buffer in place. */
int buf_reserve(buf_t *b, size_t n, uint8_t **at) HSM_WUR;
void buf_commit(buf_t *b, size_t n);
const uint8_t *buf_ptr(const buf_t *b);
const char *buf_str(const buf_t *b);
size_t buf_len(const buf_t *b);
/* Wipes the contents; the buffer stays usable. */
void buf_reset(buf_t *b);
/* Drops the last n bytes (wiped). */
void buf_trim(buf_t *b, size_t n);
/* The contents as a malloc'd NUL-terminated block the caller owns (free it
 * with freezero(p, len + 1) when it may hold a secret); the buffer is
 * freed. NULL with the buffer freed when b was NULL. */
char *buf_steal(buf_t *b, size_t *len);

/* Wipes n bytes at p, then frees p; NULL is fine. The one wipe-and-free
 * of the tree. */
void freezero(void *p, size_t n);
/* The same for a NUL-terminated string. */
void freezero_str(char *s);
/* The same for a block whose length the caller does not know: the whole
 * allocation (malloc_usable_size) is wiped. Can stand in for free() as a
 * callback (Jansson's free, a response body's free). */
void freezero_block(void *p);

#endif
