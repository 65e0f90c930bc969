/*
 * policy/b64url.c — base64url (RFC 4648 §5) encoding and strict decoding.
 *
 * Owns: the alphabet and its checks. Must never: accept characters of the
 * standard alphabet ('+', '/'), whitespace, misplaced padding, impossible
 * lengths or non-zero trailing bits — a token or key field has exactly one
 * spelling.
 */
#include <stdint.h>
#include <stdlib.h>

#include <openssl/crypto.h>

#include "policy/internal.h"
#include "policy/policy.h"

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int
b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

static size_t
b64url_len(size_t len)
{
	return len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0);
}

int
policy_b64url_encode(const uint8_t *in, size_t len, char **out)
{
	size_t olen;
	char *s;
	int r;

	if (out == NULL)
		return POLICY_ERR_ARGS;
	*out = NULL;
	if (in == NULL && len != 0)
		return POLICY_ERR_ARGS;
	if (len > (SIZE_MAX / 4 - 1) * 3)
		return POLICY_ERR_ARGS;
	olen = b64url_len(len);
	if ((s = malloc(olen + 1)) == NULL)
		return POLICY_ERR_NO_MEMORY;
	if ((r = b64url_encode_to(in, len, s, olen + 1)) != POLICY_OK) {
		free(s);
		return r;
	}
	*out = s;
	return POLICY_OK;
}

int
b64url_encode_to(const uint8_t *in, size_t len, char *s, size_t cap)
{
	size_t i, o = 0;

	if (len > (SIZE_MAX / 4 - 1) * 3 || b64url_len(len) >= cap)
		return POLICY_ERR_ARGS;
	for (i = 0; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
		    in[i + 2];
		s[o++] = b64url_alphabet[v >> 18 & 63];
		s[o++] = b64url_alphabet[v >> 12 & 63];
		s[o++] = b64url_alphabet[v >> 6 & 63];
		s[o++] = b64url_alphabet[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		s[o++] = b64url_alphabet[v >> 18 & 63];
		s[o++] = b64url_alphabet[v >> 12 & 63];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		s[o++] = b64url_alphabet[v >> 18 & 63];
		s[o++] = b64url_alphabet[v >> 12 & 63];
		s[o++] = b64url_alphabet[v >> 6 & 63];
	}
	s[o] = '\0';
	return POLICY_OK;
}

int
policy_b64url_decode(const char *in, size_t len, uint8_t **out, size_t *out_len)
{
	uint8_t *buf = NULL;
	size_t n = len, olen, i, o = 0;
	uint32_t acc = 0;
	int bits = 0, v, r = POLICY_ERR_ARGS;

	if (out == NULL || out_len == NULL)
		return POLICY_ERR_ARGS;
	*out = NULL;
	*out_len = 0;
	if (in == NULL && len != 0)
		return POLICY_ERR_ARGS;
	/* Padding only as the full "=" or "==" of a multiple-of-4 input. */
	if (n > 0 && n % 4 == 0 && in[n - 1] == '=') {
		n--;
		if (in[n - 1] == '=')
			n--;
	}
	if (n % 4 == 1)
		goto out;
	olen = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
	if ((buf = malloc(olen ? olen : 1)) == NULL) {
		r = POLICY_ERR_NO_MEMORY;
		goto out;
	}
	for (i = 0; i < n; i++) {
		if ((v = b64url_value((unsigned char)in[i])) < 0)
			goto out;
		acc = (acc << 6 | (uint32_t)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* The leftover bits of the last character must be zero. */
	if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
		goto out;
	*out = buf;
	*out_len = o;
	buf = NULL;
	r = POLICY_OK;
out:
	/* a failed decode may have produced part of a secret already */
	if (buf != NULL)
		OPENSSL_clear_free(buf, olen ? olen : 1);
	return r;
}
