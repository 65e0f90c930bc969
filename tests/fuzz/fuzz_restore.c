/*
 * fuzz_restore.c — the backup blob parser: POST /keys/restore with
 * {"value": <the input as base64url>} through api_route() against a real
 * vault, so every input reaches the blob parser itself (not only the JSON
 * around it). Byte 0 bit 0 set: the input is the whole JSON body instead.
 * Byte 0 bit 1 set (bit 0 clear): the rest is a backup's plaintext; the
 * target seals it with the vault's domain key (hsm_seal, as
 * vault_key_backup does) so that the input reaches the parser behind the
 * authentication in vault_key_restore.
 *
 * FUZZ_WRITE_SEED=FILE: at start, writes a real backup plaintext of key e1
 * in that mode to FILE (how the seed-sealed-* files were made).
 */
#define FZ_OWN_INITIALIZE /* also writes a seed: see above */
#include "tests/fuzz/fuzz_env.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *seed = getenv("FUZZ_WRITE_SEED");
	struct api_req q;
	struct api_resp r;
	uint8_t *blob = NULL, *plain = NULL;
	size_t blob_len = 0, plain_len = 0;
	json_t *j;

	(void)argc;
	(void)argv;
	fz_env_init();
	if (seed == NULL || fz_hsm == NULL)
		return 0;
	/* back up e1 through the API, unseal, write "\x02" + plaintext */
	memset(&q, 0, sizeof(q));
	memset(&r, 0, sizeof(r));
	q.ctx = &fz_ctx;
	q.method = "POST";
	q.path = "/keys/e1/backup";
	q.api_version = "7.4";
	q.authorization = fz_token;
	api_route(&q, &r);
	j = r.body ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
	if (j && json_is_string(json_object_get(j, "value"))) {
		const char *v = json_string_value(json_object_get(j, "value"));
		if (policy_b64url_decode(v, strlen(v), &blob, &blob_len) == 0 &&
		    hsm_unseal(fz_hsm, blob, blob_len, &plain, &plain_len) ==
		        0) {
			FILE *f = fopen(seed, "wb");
			if (f) {
				fputc(2, f);
				fwrite(plain, 1, plain_len, f);
				fclose(f);
			}
		}
	}
	json_decref(j);
	free(r.body);
	free(blob);
	free(plain);
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
	if (data[0] & 2) {
		uint8_t *sealed = NULL;
		size_t sealed_len = 0;
		if (fz_hsm == NULL ||
		    hsm_seal(fz_hsm, data + 1, size - 1, &sealed,
		        &sealed_len) != 0)
			return 0;
		if (policy_b64url_encode(sealed, sealed_len, &b64) != 0)
			b64 = NULL;
		free(sealed);
		if (b64 == NULL)
			return 0;
	} else if (policy_b64url_encode(data + 1, size - 1, &b64) != 0) {
		return 0;
	}
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
