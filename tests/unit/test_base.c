/* hsm/buf.c and hsm/base.c: the one buffer, the one wipe, the checked
 * snprintf, strict number parsing, the one file reader. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hsm/affinity.h"
#include "hsm/base.h"
#include "tests/unit/t.h"

static void
test_buf(void)
{
	buf_t *b = buf_new(10);
	uint8_t *at;
	char *s;
	size_t len;
	int i;

	T_CHECK(b != NULL && buf_len(b) == 0 && strcmp(buf_str(b), "") == 0,
	    "buf: a new buffer is empty and reads as \"\"");
	T_CHECK(buf_put_str(b, "hello") == HSM_OK && buf_len(b) == 5 &&
	        strcmp(buf_str(b), "hello") == 0,
	    "buf: put_str appends text");
	T_CHECK(buf_putf(b, "%d%s", 12, "ab") == HSM_OK &&
	        strcmp(buf_str(b), "hello12ab") == 0,
	    "buf: putf formats");
	T_CHECK(buf_put(b, "xy", 2) == HSM_ERR_ARGS &&
	        strcmp(buf_str(b), "hello12ab") == 0,
	    "buf: an append past the cap fails and changes nothing");
	T_CHECK(buf_putf(b, "%s", "zz") == HSM_ERR_ARGS && buf_len(b) == 9,
	    "buf: a formatted append past the cap fails whole");
	T_CHECK(buf_put_u8(b, 'z') == HSM_OK && buf_len(b) == 10,
	    "buf: the cap itself is reachable");
	buf_trim(b, 4);
	T_CHECK(strcmp(buf_str(b), "hello1") == 0, "buf: trim drops the tail");
	buf_reset(b);
	T_CHECK(buf_len(b) == 0 && buf_str(b)[0] == '\0',
	    "buf: reset empties it");
	T_CHECK(buf_reserve(b, 3, &at) == HSM_OK, "buf: reserve gives room");
	memcpy(at, "abc", 3);
	buf_commit(b, 3);
	T_CHECK(strcmp(buf_str(b), "abc") == 0, "buf: commit counts it");
	s = buf_steal(b, &len);
	T_CHECK(s != NULL && len == 3 && strcmp(s, "abc") == 0,
	    "buf: steal hands over a NUL-terminated block");
	freezero(s, len + 1);

	/* a buffer never written to hands over "" (its first block was
	 * left unterminated: the shares' text of an init without shares
	 * was read past its end) */
	b = buf_new(64);
	s = buf_steal(b, &len);
	T_CHECK(s != NULL && len == 0 && s[0] == '\0',
	    "buf: steal of an empty buffer hands over \"\"");
	freezero(s, len + 1);

	b = buf_new(1 << 20);
	for (i = 0; i < 1000; i++)
		if (buf_put_lp(b, "0123456789", 10) != HSM_OK)
			break;
	T_CHECK(i == 1000 && buf_len(b) == 14000 &&
	        memcmp(buf_ptr(b) + 14 * 999, "\0\0\0\n0123456789", 14) == 0,
	    "buf: grows across many appends, length-prefixed big-endian");
	buf_free(b);
	buf_free(NULL);
	freezero(NULL, 5);
	freezero_str(NULL);
}

static void
test_fmt_parse(void)
{
	char s[8];
	uint64_t u;
	int64_t i;

	T_CHECK(str_fmt(s, sizeof(s), "%s", "1234567") == HSM_OK &&
	        strcmp(s, "1234567") == 0,
	    "str_fmt: text that fits");
	T_CHECK(str_fmt(s, sizeof(s), "%s", "12345678") == HSM_ERR_ARGS &&
	        s[0] == '\0',
	    "str_fmt: truncation is an error, not a cut");
	T_CHECK(parse_u64("18446744073709551615", UINT64_MAX, &u) == HSM_OK &&
	        u == UINT64_MAX,
	    "parse_u64: the largest value");
	T_CHECK(parse_u64("18446744073709551616", UINT64_MAX, &u) ==
	        HSM_ERR_ARGS,
	    "parse_u64: overflow refused");
	T_CHECK(parse_u64("91", 90, &u) == HSM_ERR_ARGS &&
	        parse_u64("90", 90, &u) == HSM_OK && u == 90,
	    "parse_u64: the bound is inclusive");
	T_CHECK(parse_u64("", 9, &u) != HSM_OK &&
	        parse_u64(" 1", 9, &u) != HSM_OK &&
	        parse_u64("1x", 9, &u) != HSM_OK &&
	        parse_u64("-1", 9, &u) != HSM_OK &&
	        parse_u64("+1", 9, &u) != HSM_OK,
	    "parse_u64: empty, space, junk and signs refused");
	T_CHECK(parse_i64("-9223372036854775808", INT64_MIN, INT64_MAX, &i) ==
	            HSM_OK &&
	        i == INT64_MIN && parse_i64("-5", -4, 4, &i) == HSM_ERR_ARGS &&
	        parse_i64("-4", -4, 4, &i) == HSM_OK && i == -4 &&
	        parse_i64("5", -4, 4, &i) == HSM_ERR_ARGS,
	    "parse_i64: signed bounds");
	T_CHECK(hash_fnv1a("a", 1) == 0xaf63dc4c8601ec8cULL,
	    "hash_fnv1a: the published FNV-1a 64 value of \"a\"");
}

static void
test_file_read(void)
{
	char path[] = "/tmp/p11v-base-XXXXXX";
	int fd = mkstemp(path);
	buf_t *b = NULL;
	int i, ok = 1;

	for (i = 0; i < 3000 && ok; i++)
		ok = write(fd, "abc", 3) == 3;
	close(fd);
	T_CHECK(ok && file_read(path, 9000, &b) == HSM_OK &&
	        buf_len(b) == 9000 && memcmp(buf_ptr(b) + 8997, "abc", 3) == 0,
	    "file_read: a file of exactly the cap");
	buf_free(b);
	b = NULL;
	T_CHECK(file_read(path, 8999, &b) == HSM_ERR_ARGS && b == NULL,
	    "file_read: one byte over the cap is refused");
	unlink(path);
	T_CHECK(file_read(path, 10, &b) == HSM_ERR_IO && errno == ENOENT &&
	        b == NULL,
	    "file_read: a missing file is HSM_ERR_IO with errno");
}

/* The per-CPU sizes count the CPUs of the affinity mask (CPUAffinity=,
 * taskset), not the machine's: a thread pinned to one CPU counts 1. */
static void
test_cpus_count(void)
{
	cpu_set_t all, one;
	struct hsm_cpus map;
	int first = -1, i;

	CPU_ZERO(&all);
	T_CHECK(sched_getaffinity(0, sizeof(all), &all) == 0,
	    "cpus: the mask can be read");
	T_CHECK(hsm_cpus_count() == (unsigned)CPU_COUNT(&all),
	    "cpus: the count is the mask's");
	hsm_cpus_get(&map);
	T_CHECK(map.n ==
	        (CPU_COUNT(&all) < HSM_CPUS_MAX ? (size_t)CPU_COUNT(&all) :
	                                          HSM_CPUS_MAX),
	    "cpus: the channel map holds the same CPUs");
	for (i = 0; i < CPU_SETSIZE && first < 0; i++)
		if (CPU_ISSET((size_t)i, &all))
			first = i;
	CPU_ZERO(&one);
	CPU_SET((size_t)first, &one);
	T_CHECK(sched_setaffinity(0, sizeof(one), &one) == 0 &&
	        hsm_cpus_count() == 1,
	    "cpus: pinned to one CPU, the count is 1 (not the online count)");
	T_CHECK(sched_setaffinity(0, sizeof(all), &all) == 0,
	    "cpus: the mask restored");
}

int
main(void)
{
	test_buf();
	test_cpus_count();
	test_fmt_parse();
	test_file_read();
	return T_DONE();
}
