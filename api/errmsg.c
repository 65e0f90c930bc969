/*
 * errmsg.c — one-line reasons into a caller's buffer (see errmsg.h).
 *
 * Owns: the cut-to-fit formatting of reasons. Must never: fail silently
 * (a reason that cannot be formatted leaves "", never stale text).
 */
#include "api/errmsg.h"

#include <stdio.h>

#include <openssl/err.h>

static void __attribute__((format(printf, 3, 0)))
errmsg_vset(char *err, size_t err_len, const char *fmt, va_list ap)
{
	if (err == NULL || err_len == 0)
		return;
	/* cut to fit on purpose: a reason for a person */
	if (vsnprintf(err, err_len, fmt, ap) < 0)
		err[0] = '\0';
}

void
errmsg_set(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errmsg_vset(err, err_len, fmt, ap);
	va_end(ap);
}

void
errmsg_ossl(char *err, size_t err_len, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char ossl[160];

	if (e != 0) {
		ERR_error_string_n(e, ossl, sizeof(ossl));
		errmsg_set(err, err_len, "%s (%s)", what, ossl);
	} else
		errmsg_set(err, err_len, "%s", what);
	ERR_clear_error();
}
