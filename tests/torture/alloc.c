/*
 * tests/torture/alloc.c — the --wrap'd allocators of the torture build:
 * count the calls made while armed and fail the chosen one (NULL, errno
 * ENOMEM), as a real out-of-memory would. See alloc.h.
 *
 * Test code only: never linked into the product.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/torture/alloc.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__real_reallocarray(void *p, size_t n, size_t m);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_reallocarray(void *p, size_t n, size_t m);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

/* One thread drives a target; the token process (a child) never arms.
 * __thread keeps a vault's worker threads, if any, out of the count. */
static __thread int armed;
static __thread int paused;
static uint64_t count, fail_at;
static int injected;

void
torture_arm(uint64_t n)
{
	count = 0;
	fail_at = n;
	injected = 0;
	paused = 0;
	armed = 1;
}

void
torture_disarm(void)
{
	armed = 0;
}

void
torture_pause(void)
{
	paused++;
}

void
torture_resume(void)
{
	paused--;
}

uint64_t
torture_count(void)
{
	return count;
}

int
torture_injected(void)
{
	return injected;
}

/* 1: this call fails */
static int
fail_now(void)
{
	if (!armed || paused)
		return 0;
	count++;
	if (count != fail_at)
		return 0;
	injected = 1;
	errno = ENOMEM;
	return 1;
}

void *
__wrap_malloc(size_t n)
{
	return fail_now() ? NULL : __real_malloc(n);
}

void *
__wrap_calloc(size_t n, size_t m)
{
	return fail_now() ? NULL : __real_calloc(n, m);
}

void *
__wrap_realloc(void *p, size_t n)
{
	return fail_now() ? NULL : __real_realloc(p, n);
}

void *
__wrap_reallocarray(void *p, size_t n, size_t m)
{
	return fail_now() ? NULL : __real_reallocarray(p, n, m);
}

char *
__wrap_strdup(const char *s)
{
	return fail_now() ? NULL : __real_strdup(s);
}

char *
__wrap_strndup(const char *s, size_t n)
{
	return fail_now() ? NULL : __real_strndup(s, n);
}
