/*
 * fuzz_router.c — a whole request through api_route() against a real
 * vault: the router, the query parameters (api-version, maxresults,
 * $skiptoken), authentication, and every JSON request-body parser of the
 * keys and admin APIs (they are static in keys_api.c/admin_api.c and are
 * reached only through the router; that is what this target does).
 *
 * Input: byte 0 = flags (bits 0-2 method, bit 3 no bearer token), then
 * newline-separated fields: path, api-version, maxresults, $skiptoken,
 * and the rest is the body. An empty query field is "absent" (NULL).
 * Must never: be fed inputs the filter fz_slow() calls slow (keygen RSA,
 * scrypt); those return early, documented in tests/fuzz/README.md.
 */
#include "tests/fuzz/fuzz_env.h"

static const char *const methods[8] = {
	"GET",
	"PUT",
	"POST",
	"PATCH",
	"DELETE",
	"HEAD",
	"OPTIONS",
	"get",
};

/* Next newline-terminated field as a malloc'd exact-size string. */
static char *
field(const uint8_t **p, size_t *left)
{
	const uint8_t *nl = memchr(*p, '\n', *left);
	size_t n = nl ? (size_t)(nl - *p) : *left;
	char *s = malloc(n + 1);

	if (s == NULL)
		abort();
	memcpy(s, *p, n);
	s[n] = '\0';
	*p += nl ? n + 1 : n;
	*left -= nl ? n + 1 : n;
	return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data + 1;
	size_t left;
	char *path, *ver, *max, *skip;
	const char *method;

	if (size < 2)
		return 0;
	method = methods[data[0] & 7];
	left = size - 1;
	path = field(&p, &left);
	ver = field(&p, &left);
	max = field(&p, &left);
	skip = field(&p, &left);
	if (!fz_slow(method, path, p, left))
		(void)fz_request(method, path, ver[0] ? ver : NULL,
		    max[0] ? max : NULL, skip[0] ? skip : NULL, !(data[0] & 8),
		    p, left);
	free(path);
	free(ver);
	free(max);
	free(skip);
	return 0;
}
