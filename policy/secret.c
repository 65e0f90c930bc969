/*
 * policy/secret.c — random identifiers, client secrets, and the stored
 * form of a secret: a salted scrypt hash "scrypt$N$r$p$salt$hash".
 *
 * Owns: the hash format and its bounds, the scrypt parameters of new
 * hashes. Must never: keep or log a clear secret, compare a secret or a
 * hash other than with CRYPTO_memcmp, or leave a secret or a derived key
 * in memory it frees.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "hsm/base.h"
#include "policy/internal.h"

#define SCRYPT_N 16384
#define SCRYPT_R 8
#define SCRYPT_P 1
#define SCRYPT_MAXMEM (64u * 1024 * 1024)
#define SALT_LEN 16
#define DK_LEN 32
/* Bounds on parameters read back from a stored hash. */
#define SCRYPT_N_MAX (1u << 20)
#define SCRYPT_R_MAX 32
#define SCRYPT_P_MAX 16
#define SALT_MIN 8
#define SALT_MAX 64
#define DK_MIN 16
#define DK_MAX 64

struct scrypt_hash {
	uint64_t n, r, p;
	uint8_t *salt;
	size_t salt_len;
	uint8_t *dk;
	size_t dk_len;
};

static void
random_or_abort(uint8_t *buf, size_t len)
{
	/* Callers have no error path (void in policy.h); an identifier or
	 * secret that is not random is worse than stopping. */
	if (len > INT32_MAX || RAND_bytes(buf, (int)len) != 1)
		abort();
}

void
policy_uuid(char out[POLICY_ID_LEN + 1])
{
	/* Identifiers, not secrets: each thread draws them from OpenSSL in
	 * blocks of 16, which spares a RAND_bytes call (and its fork
	 * check, a system call) on every request. The block is the
	 * thread's own (never shared, so nothing to lock), and each id's
	 * bytes are wiped from it once taken. */
	static __thread uint8_t pool[256];
	static __thread size_t used = sizeof(pool);
	static const char hex[] = "0123456789abcdef";
	uint8_t b[16];
	size_t i, o = 0;

	if (used + sizeof(b) > sizeof(pool)) {
		random_or_abort(pool, sizeof(pool));
		used = 0;
	}
	memcpy(b, pool + used, sizeof(b));
	OPENSSL_cleanse(pool + used, sizeof(b));
	used += sizeof(b);
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	for (i = 0; i < sizeof(b); i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 0x0f];
	}
	out[o] = '\0';
	if (o != POLICY_ID_LEN)
		abort();
}

void
policy_secret_new(char out[64])
{
	uint8_t b[32];

	/* encoded in place: no allocation that could fail (43 + 1 bytes) */
	random_or_abort(b, sizeof(b));
	if (b64url_encode_to(b, sizeof(b), out, 64) != POLICY_OK)
		abort();
	OPENSSL_cleanse(b, sizeof(b));
}

/* One of N, r, p: a decimal number in [1, max] without a leading zero, so
 * that a stored hash has one spelling. */
static POLICY_WUR int
scrypt_param(const char *s, uint64_t max, uint64_t *v)
{
	if (*s < '1' || *s > '9')
		return POLICY_ERR_ARGS;
	return parse_u64(s, max, v) == 0 ? POLICY_OK : POLICY_ERR_ARGS;
}

static void
scrypt_hash_clear(struct scrypt_hash *h)
{
	free(h->salt);
	freezero(h->dk, h->dk_len);
	memset(h, 0, sizeof(*h));
}

/* Splits "scrypt$N$r$p$salt$hash" and bounds every part. */
static POLICY_WUR int
scrypt_hash_parse(const char *hash, struct scrypt_hash *h)
{
	char buf[POLICY_HASH_MAX + 1];
	char *field[6];
	size_t len, nf = 0;
	int r = POLICY_ERR_ARGS;

	memset(h, 0, sizeof(*h));
	if (hash == NULL ||
	    (len = strnlen(hash, POLICY_HASH_MAX + 1)) > POLICY_HASH_MAX)
		return POLICY_ERR_ARGS;
	memcpy(buf, hash, len + 1);
	field[nf++] = buf;
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '$')
			continue;
		if (nf == 6)
			goto out;
		buf[i] = '\0';
		field[nf++] = &buf[i + 1];
	}
	if (nf != 6 || strcmp(field[0], "scrypt") != 0)
		goto out;
	if (scrypt_param(field[1], SCRYPT_N_MAX, &h->n) != 0 || h->n < 2 ||
	    (h->n & (h->n - 1)) != 0 ||
	    scrypt_param(field[2], SCRYPT_R_MAX, &h->r) != 0 ||
	    scrypt_param(field[3], SCRYPT_P_MAX, &h->p) != 0)
		goto out;
	if ((r = policy_b64url_decode(field[4], strlen(field[4]), &h->salt,
	         &h->salt_len)) != POLICY_OK)
		goto out;
	if ((r = policy_b64url_decode(field[5], strlen(field[5]), &h->dk,
	         &h->dk_len)) != POLICY_OK)
		goto out;
	r = POLICY_ERR_ARGS;
	if (h->salt_len < SALT_MIN || h->salt_len > SALT_MAX ||
	    h->dk_len < DK_MIN || h->dk_len > DK_MAX)
		goto out;
	r = POLICY_OK;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	if (r != POLICY_OK)
		scrypt_hash_clear(h);
	return r;
}

int
policy_secret_hash_wellformed(const char *hash)
{
	struct scrypt_hash h;
	int r;

	r = scrypt_hash_parse(hash, &h);
	scrypt_hash_clear(&h);
	return r;
}

int
policy_secret_hash(const char *secret, char **hash)
{
	uint8_t salt[SALT_LEN], dk[DK_LEN];
	char *salt_s = NULL, *dk_s = NULL, buf[POLICY_HASH_MAX + 1];
	size_t slen;
	int r = POLICY_ERR_ARGS;

	if (hash == NULL)
		return POLICY_ERR_ARGS;
	*hash = NULL;
	if (secret == NULL ||
	    (slen = strnlen(secret, POLICY_SECRET_MAX + 1)) > POLICY_SECRET_MAX)
		return POLICY_ERR_ARGS;
	if (RAND_bytes(salt, sizeof(salt)) != 1) {
		r = POLICY_ERR_INTERNAL;
		goto out;
	}
	if (EVP_PBE_scrypt(secret, slen, salt, sizeof(salt), SCRYPT_N, SCRYPT_R,
	        SCRYPT_P, SCRYPT_MAXMEM, dk, sizeof(dk)) != 1) {
		r = POLICY_ERR_INTERNAL;
		goto out;
	}
	if ((r = policy_b64url_encode(salt, sizeof(salt), &salt_s)) != 0 ||
	    (r = policy_b64url_encode(dk, sizeof(dk), &dk_s)) != 0)
		goto out;
	if (str_fmt(buf, sizeof(buf), "scrypt$%d$%d$%d$%s$%s", SCRYPT_N,
	        SCRYPT_R, SCRYPT_P, salt_s, dk_s) != 0) {
		r = POLICY_ERR_INTERNAL;
		goto out;
	}
	if ((*hash = strdup(buf)) == NULL) {
		r = POLICY_ERR_NO_MEMORY;
		goto out;
	}
	r = POLICY_OK;
out:
	OPENSSL_cleanse(dk, sizeof(dk));
	OPENSSL_cleanse(buf, sizeof(buf));
	freezero_str(dk_s);
	free(salt_s);
	return r;
}

int
policy_secret_verify(const char *hash, const char *secret)
{
	struct scrypt_hash h;
	uint8_t dk[DK_MAX];
	size_t slen;
	int rc = POLICY_ERR_DENIED;

	memset(dk, 0, sizeof(dk));
	if (secret == NULL ||
	    (slen = strnlen(secret, POLICY_SECRET_MAX + 1)) > POLICY_SECRET_MAX)
		return POLICY_ERR_DENIED;
	/* out of memory is not a wrong secret */
	if ((rc = scrypt_hash_parse(hash, &h)) != POLICY_OK)
		return rc == POLICY_ERR_NO_MEMORY ? rc : POLICY_ERR_DENIED;
	rc = POLICY_ERR_DENIED;
	if (EVP_PBE_scrypt(secret, slen, h.salt, h.salt_len, h.n, h.r, h.p,
	        SCRYPT_MAXMEM, dk, h.dk_len) != 1)
		goto out;
	if (CRYPTO_memcmp(dk, h.dk, h.dk_len) == 0)
		rc = POLICY_OK;
out:
	OPENSSL_cleanse(dk, sizeof(dk));
	scrypt_hash_clear(&h);
	return rc;
}