/*
 * fuzz_restore.c — the backup blob parser: POST /keys/restore with
 * {"value": <the input as base64url>} through api_route() against a real
 * vault, so every input reaches the blob parser itself (not only the JSON
 * around it). Byte 0 bit 0 set: the input is the whole JSON body instead.
 */
#include "tests/fuzz/fuzz_env.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc; (void)argv;
	fz_env_init();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *b64 = NULL, *body;
	size_t n;

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		(void)fz_request("POST", "/keys/restore", "7.4", NULL, NULL, 1,
		    data + 1, size - 1);
		return 0;
	}
	if (policy_b64url_encode(data + 1, size - 1, &b64) != 0)
		return 0;
	n = strlen(b64) + 16;
	if ((body = malloc(n)) == NULL)
		abort();
	snprintf(body, n, "{\"value\":\"%s\"}", b64);
	(void)fz_request("POST", "/keys/restore", "7.4", NULL, NULL, 1,
	    (const uint8_t *)body, strlen(body));
	free(body);
	free(b64);
	return 0;
}
