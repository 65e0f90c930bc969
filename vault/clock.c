/*
 * vault/clock.c — the vault's clock: the real time, moved by a test
 * clock file when the server was started with one (tests of retention
 * and rotation). One clock per appliance: a child vault reads its
 * root's.
 */
#include "vault/vault_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hsm/base.h"

#define CLOCK_FILE_MAX 64

void
vault_set_test_clock(vault_t *v, const char *offset_file)
{
	char *dup = offset_file != NULL ? strdup(offset_file) : NULL;

	v = ROOT(v);

	pthread_mutex_lock(&v->clock_lock);
	free(v->clock_file);
	v->clock_file = dup;
	pthread_mutex_unlock(&v->clock_lock);
}

/* The offset in seconds the test clock file holds (an integer, then
 * optional white space), or 0. */
static int64_t
clock_offset(const char *path)
{
	buf_t *b = NULL;
	char text[CLOCK_FILE_MAX];
	int64_t off = 0;
	size_t len;

	if (file_read(path, CLOCK_FILE_MAX - 1, &b) != 0)
		return 0;
	len = buf_len(b);
	memcpy(text, buf_ptr(b), len);
	buf_free(b);
	while (len > 0 &&
	    (text[len - 1] == ' ' || text[len - 1] == '\t' ||
	        text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	text[len] = '\0';
	if (parse_i64(text, -(1LL << 40) + 1, (1LL << 40) - 1, &off) != 0)
		return 0;
	return off;
}

int64_t
vault_now(vault_t *v)
{
	int64_t now = (int64_t)time(NULL);

	if (v == NULL)
		return now;
	v = ROOT(v); /* one clock per appliance */
	pthread_mutex_lock(&v->clock_lock);
	if (v->clock_file != NULL)
		now += clock_offset(v->clock_file);
	pthread_mutex_unlock(&v->clock_lock);
	return now;
}
