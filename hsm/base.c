/*
 * hsm/base.c — see base.h. Owns nothing; must never leave a partial read
 * of a secret file in freed memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include "hsm/base.h"

int
str_fmt(char *dst, size_t cap, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (cap == 0)
		return HSM_ERR_ARGS;
	va_start(ap, fmt);
	n = vsnprintf(dst, cap, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap) {
		dst[0] = '\0';
		return HSM_ERR_ARGS;
	}
	return HSM_OK;
}

int
parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	unsigned d;

	if (s == NULL || *s == '\0')
		return HSM_ERR_ARGS;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return HSM_ERR_ARGS;
		d = (unsigned)(*s - '0');
		if (d > max || v > (max - d) / 10)
			return HSM_ERR_ARGS;
		v = v * 10 + d;
	}
	*out = v;
	return HSM_OK;
}

int
parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	uint64_t mag;

	if (s == NULL)
		return HSM_ERR_ARGS;
	if (*s == '-') {
		if (parse_u64(s + 1, (uint64_t)INT64_MAX + 1, &mag) != HSM_OK)
			return HSM_ERR_ARGS;
		if (mag == (uint64_t)INT64_MAX + 1) {
			if (min != INT64_MIN)
				return HSM_ERR_ARGS;
			*out = INT64_MIN;
			return HSM_OK;
		}
		if (-(int64_t)mag < min)
			return HSM_ERR_ARGS;
		*out = -(int64_t)mag;
		return HSM_OK;
	}
	if (max < 0 || parse_u64(s, (uint64_t)max, &mag) != HSM_OK ||
	    (int64_t)mag < min)
		return HSM_ERR_ARGS;
	*out = (int64_t)mag;
	return HSM_OK;
}

int
file_read(const char *path, size_t max, buf_t **out)
{
	buf_t *b = NULL;
	uint8_t *at;
	ssize_t n;
	int fd, rc, saved;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return HSM_ERR_IO;
	if ((b = buf_new(max + 1)) == NULL) {
		rc = HSM_ERR_NO_MEMORY;
		goto out;
	}
	for (;;) {
		if ((rc = buf_reserve(b,
		         4096 < max + 1 - buf_len(b) ? 4096 :
		                                       max + 1 - buf_len(b),
		         &at)) != HSM_OK)
			goto out;
		n = read(fd, at,
		    4096 < max + 1 - buf_len(b) ? 4096 : max + 1 - buf_len(b));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = HSM_ERR_IO;
			goto out;
		}
		if (n == 0)
			break;
		buf_commit(b, (size_t)n);
		if (buf_len(b) > max) {
			rc = HSM_ERR_ARGS;
			goto out;
		}
	}
	*out = b;
	b = NULL;
	rc = HSM_OK;
out:
	saved = errno;
	buf_free(b);
	close(fd);
	errno = saved;
	return rc;
}

uint64_t
hash_fnv1a(const void *p, size_t n)
{
	const uint8_t *s = p;
	uint64_t h = 14695981039346656037ULL; /* offset basis */

	while (n-- > 0) {
		h ^= *s++;
		h *= 1099511628211ULL;
	}
	return h;
}

void
err_set(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (err == NULL || err_len == 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
	if (n < 0)
		err[0] = '\0';
	else if ((size_t)n >= err_len && err_len > 4)
		memcpy(err + err_len - 4, "...", 4);
}

void
err_set_ossl(char *err, size_t err_len, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char ossl[160];

	if (e != 0) {
		ERR_error_string_n(e, ossl, sizeof(ossl));
		err_set(err, err_len, "%s (%s)", what, ossl);
	} else
		err_set(err, err_len, "%s", what);
	ERR_clear_error();
}
