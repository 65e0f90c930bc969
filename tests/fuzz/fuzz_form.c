/*
 * fuzz_form.c — the token endpoint's x-www-form-urlencoded parser and
 * checks: POST /{tenant}/oauth2/v2.0/token with the input as the body,
 * through api_route() against a real vault. Inputs that would reach scrypt
 * with an unknown client_id (the product's full-cost dummy hash, ~50 ms)
 * are skipped; the two fixed principals have cheap hashes, so success and
 * wrong-secret paths (and token issue) are fuzzed.
 */
#include "tests/fuzz/fuzz_env.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char path[] = "/" FZ_TENANT "/oauth2/v2.0/token";

	if (fz_form_reaches_dummy_scrypt(data, size))
		return 0;
	(void)fz_request("POST", path, NULL, NULL, NULL, 0, data, size);
	return 0;
}
