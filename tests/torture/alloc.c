/*
 * tests/torture/alloc.c — the --wrap'd allocators of the torture build:
 * count the calls made while armed and fail the chosen one (NULL, errno
 * ENOMEM), as a real out-of-memory would. See alloc.h.
 *
 * Test code only: never linked into the product.
 */
#include <errno.h>
#include <sanitizer/common_interface_defs.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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

/* P11VAULT_TORTURE_TRACE=all: every counted call's stack (to find
 * which N lands where) */
static int
trace_all(void)
{
	static int v = -1;
	const char *e;

	if (v < 0) {
		e = getenv("P11VAULT_TORTURE_TRACE");
		v = e != NULL && strcmp(e, "all") == 0;
	}
	return v;
}

/* 1: this call fails */
static int
fail_now(void)
{
	if (!armed || paused)
		return 0;
	count++;
	if (trace_all()) {
		fprintf(stderr, "torture-call %llu\n",
		    (unsigned long long)count);
		__sanitizer_print_stack_trace();
	}
	if (count != fail_at)
		return 0;
	injected = 1;
	/* where the failure lands: P11VAULT_TORTURE_TRACE=1 with
	 * P11VAULT_TORTURE_FAIL=N */
	if (getenv("P11VAULT_TORTURE_TRACE") != NULL && !trace_all())
		__sanitizer_print_stack_trace();
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
