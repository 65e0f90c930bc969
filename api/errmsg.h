/*
 * api/errmsg.h — the one-line reasons the command line and the server's
 * start-up hand back in a caller's buffer (char *err, size_t err_len).
 *
 * A reason is for a person and never parsed: it is cut to fit rather than
 * dropped. Must never: put a secret in a reason.
 */
#ifndef P11VAULT_API_ERRMSG_H
#define P11VAULT_API_ERRMSG_H

#include <stdarg.h>
#include <stddef.h>

/* The text into err (cut to err_len - 1 bytes; "" if it cannot be
 * formatted); err may be NULL or err_len 0. */
void errmsg_set(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same, then " (" OpenSSL's last error ")" when there is one; clears
 * OpenSSL's error queue. */
void errmsg_ossl(char *err, size_t err_len, const char *what);

#endif
