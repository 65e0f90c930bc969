/*
 * hsm/buf.c — see buf.h. Owns: the buffer's block. Must never: leave a
 * copy of the contents in freed memory.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "hsm/buf.h"

#define BUF_MIN 64

struct buf {
	uint8_t *p;
	size_t len; /* bytes held, not counting the NUL after them */
	size_t cap; /* bytes allocated, NUL included */
	size_t max; /* hard cap on len */
};

buf_t *
buf_new(size_t max)
{
	buf_t *b;

	if (max == 0 || max > SIZE_MAX / 2 ||
	    (b = calloc(1, sizeof(*b))) == NULL)
		return NULL;
	b->max = max;
	return b;
}

void
buf_free(buf_t *b)
{
	if (b == NULL)
		return;
	freezero(b->p, b->cap);
	free(b);
}

/* Room for n more bytes and the NUL after them. */
static int
grow(buf_t *b, size_t n)
{
	size_t need, ncap;
	uint8_t *np;

	if (n > b->max - b->len)
		return HSM_ERR_ARGS;
	need = b->len + n + 1;
	if (need <= b->cap)
		return HSM_OK;
	ncap = b->cap < BUF_MIN ? BUF_MIN : b->cap;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	if (ncap > b->max + 1)
		ncap = b->max + 1;
	/* never realloc: the old block is wiped before it goes */
	if ((np = malloc(ncap)) == NULL)
		return HSM_ERR_NO_MEMORY;
	if (b->p != NULL)
		memcpy(np, b->p, b->len + 1);
	else
		np[0] = '\0'; /* an empty buffer is "" too */
	freezero(b->p, b->cap);
	b->p = np;
	b->cap = ncap;
	return HSM_OK;
}

int
buf_put(buf_t *b, const void *p, size_t n)
{
	int rc;

	if ((rc = grow(b, n)) != HSM_OK)
		return rc;
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return HSM_OK;
}

int
buf_put_str(buf_t *b, const char *s)
{
	return buf_put(b, s, strlen(s));
}

int
buf_put_u8(buf_t *b, uint8_t v)
{
	return buf_put(b, &v, 1);
}

int
buf_put_u32(buf_t *b, uint32_t v)
{
	uint8_t be[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
		(uint8_t)(v >> 8), (uint8_t)v };

	return buf_put(b, be, sizeof(be));
}

int
buf_put_lp(buf_t *b, const void *p, size_t n)
{
	int rc;

	if (n > UINT32_MAX)
		return HSM_ERR_ARGS;
	if ((rc = buf_put_u32(b, (uint32_t)n)) != HSM_OK)
		return rc;
	return buf_put(b, p, n);
}

int
buf_vputf(buf_t *b, const char *fmt, va_list ap)
{
	va_list cp;
	int n, rc;

	va_copy(cp, ap);
	n = vsnprintf(NULL, 0, fmt, cp);
	va_end(cp);
	if (n < 0)
		return HSM_ERR_ARGS;
	if ((rc = grow(b, (size_t)n)) != HSM_OK)
		return rc;
	if (vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap) != n)
		return HSM_ERR_INTERNAL;
	b->len += (size_t)n;
	return HSM_OK;
}

int
buf_putf(buf_t *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = buf_vputf(b, fmt, ap);
	va_end(ap);
	return rc;
}

int
buf_reserve(buf_t *b, size_t n, uint8_t **at)
{
	int rc;

	if ((rc = grow(b, n)) != HSM_OK)
		return rc;
	*at = b->p + b->len;
	return HSM_OK;
}

void
buf_commit(buf_t *b, size_t n)
{
	/* only after buf_reserve(b, m) with m >= n */
	if (b->p == NULL || n > b->cap - 1 - b->len)
		abort();
	b->len += n;
	b->p[b->len] = '\0';
}

const uint8_t *
buf_ptr(const buf_t *b)
{
	return b->p != NULL ? b->p : (const uint8_t *)"";
}

const char *
buf_str(const buf_t *b)
{
	return (const char *)buf_ptr(b);
}

size_t
buf_len(const buf_t *b)
{
	return b->len;
}

void
buf_reset(buf_t *b)
{
	if (b->p != NULL)
		OPENSSL_cleanse(b->p, b->cap);
	b->len = 0;
}

void
buf_trim(buf_t *b, size_t n)
{
	if (n > b->len)
		n = b->len;
	if (n == 0)
		return;
	OPENSSL_cleanse(b->p + b->len - n, n);
	b->len -= n;
}

char *
buf_steal(buf_t *b, size_t *len)
{
	char *s;

	if (b == NULL)
		return NULL;
	if (b->p == NULL && grow(b, 0) != HSM_OK) {
		buf_free(b);
		return NULL;
	}
	s = (char *)b->p;
	if (len != NULL)
		*len = b->len;
	free(b);
	return s;
}

void
freezero(void *p, size_t n)
{
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, n);
	free(p);
}

void
freezero_str(char *s)
{
	if (s != NULL)
		freezero(s, strlen(s));
}

void
freezero_block(void *p)
{
	/* the usable size, not the requested one: a buffer that shrank (or
	 * a realloc'd one) is wiped to its end, and no size is stored */
	if (p != NULL)
		freezero(p, malloc_usable_size(p));
}
