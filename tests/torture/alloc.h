/*
 * tests/torture/alloc.h — the allocation-failure switch of the torture
 * build (curl's "torture" habit). The torture binary is linked with
 * -Wl,--wrap=malloc,calloc,realloc,reallocarray,strdup,strndup: every call
 * our own object files make goes through alloc.c, libc's, OpenSSL's and
 * SQLite's internal allocations do not. Jansson's do too: the product
 * hands it malloc (api_json_wipe_on_free), which the link rewrites.
 *
 * Test code only: never linked into the product.
 */
#ifndef P11VAULT_TORTURE_ALLOC_H
#define P11VAULT_TORTURE_ALLOC_H

#include <stdint.h>

/* Counting starts at 0; while armed, calls are counted and call number
 * fail_at (1-based; 0 = none) fails. */
void torture_arm(uint64_t fail_at);
/* Stops counting (the count and the injected flag stay). */
void torture_disarm(void);
/* Pauses/resumes counting inside an armed stretch (test code's own
 * allocations). */
void torture_pause(void);
void torture_resume(void);
uint64_t torture_count(void);
/* 1 once the failure was injected since the last torture_arm. */
int torture_injected(void);

#endif
