/*
 * fuzz_jwk.c — key import: JWK validation and the BYOK transfer blob
 * (key_hsm), PUT /keys/{name} with the input as the body, through
 * api_route() against a real vault (the key "kek" is an RSA key with the
 * import operation for BYOK). Byte 0 picks the key name (a new name, the
 * existing RSA/EC keys); the rest is the body.
 */
#include "tests/fuzz/fuzz_env.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const paths[4] = {
		"/keys/imported",
		"/keys/k1",
		"/keys/e1",
		"/keys/imp-2",
	};

	if (size < 1)
		return 0;
	(void)fz_request("PUT", paths[data[0] & 3], "7.4", NULL, NULL, 1,
	    data + 1, size - 1);
	return 0;
}
