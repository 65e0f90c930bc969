/*
 * fuzz_b64url.c — policy_b64url_decode/encode. Properties checked:
 *  - decoding arbitrary text never over-reads (the input is an exact-size
 *    copy) and, when it succeeds, re-encoding gives only [A-Za-z0-9_-]
 *    (no padding) and decoding that gives the same bytes back;
 *  - encoding the input bytes and decoding them is the identity, and the
 *    encoding has the expected length ceil(4n/3).
 */
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_alphabet(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		        (c >= '0' && c <= '9') || c == '-' || c == '_'))
			abort();
	}
	if (s[n] != '\0')
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, *enc = NULL, *enc2 = NULL;
	uint8_t *dec = NULL, *dec2 = NULL, *dec3 = NULL;
	size_t dlen = 0, dlen2 = 0, dlen3 = 0, elen;

	/* 1: the input as text to decode (no NUL: the API takes a length) */
	if ((text = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	if (policy_b64url_decode(text, size, &dec, &dlen) == 0) {
		if (dlen > size)
			abort();
		if (policy_b64url_encode(dec, dlen, &enc) != 0)
			abort();
		elen = strlen(enc);
		check_alphabet(enc, elen);
		if (policy_b64url_decode(enc, elen, &dec2, &dlen2) != 0 ||
		    dlen2 != dlen || (dlen && memcmp(dec, dec2, dlen) != 0))
			abort();
	}
	/* 2: the input as bytes to encode */
	if (policy_b64url_encode(data, size, &enc2) != 0)
		abort();
	elen = strlen(enc2);
	if (elen != (size * 4 + 2) / 3)
		abort();
	check_alphabet(enc2, elen);
	if (policy_b64url_decode(enc2, elen, &dec3, &dlen3) != 0 ||
	    dlen3 != size || (size && memcmp(dec3, data, size) != 0))
		abort();
	free(text);
	free(enc);
	free(enc2);
	free(dec);
	free(dec2);
	free(dec3);
	return 0;
}
