/*
 * vault/audit_ckpt.c — signed audit checkpoints. A checkpoint is a
 * chained line of the audit log,
 *
 *	{"prev":P,"event":"audit_checkpoint","time":T,"lines":L,"head":P,
 *	 "kid":K,"sig":S}
 *
 * where L counts the chain's lines before it (from the chain's first line,
 * across rotation), head is the hash of the line before it (= its prev)
 * and S is base64url(r||s), ES256 with the token's audit key over
 *
 *	"p11vault-audit-checkpoint-v1\n" T "\n" L "\n" head "\n"
 *
 * Rewriting the file with recomputed hashes changes some checkpoint's
 * head (or drops checkpoints), which nobody without the token key can
 * sign again. K is the first 8 bytes (hex) of SHA-256 of the key's SPKI.
 *
 * Owns: the signer the log calls (the token's audit key, the public key
 * written to DIR/audit/audit-key.pem, 0600 like every file of DIR, at first use), the record
 * and its check.
 * Must never: sign anything but the fixed message above; overwrite an
 * audit-key.pem that holds another key (that is evidence).
 */
#include "vault/vault_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "hsm/base.h"

#define CKPT_DOMAIN "p11vault-audit-checkpoint-v1"
#define CKPT_TAG ",\"event\":\"" VLT_AUDIT_CHECKPOINT "\","
#define CKPT_PEM_MAX 4096
#define CKPT_DEFAULT_LINES 1000
#define CKPT_DEFAULT_SECONDS 60

struct vlt_ckpt_key {
	uint8_t *spki;
	size_t spki_len;
	char kid[VLT_AUDIT_KID_LEN + 1];
};

static const char b64u[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* 64 bytes into 86 characters of base64url (no padding). */
static void
sig_encode(const uint8_t sig[64], char out[87])
{
	size_t i, o = 0;

	for (i = 0; i + 3 <= 63; i += 3) {
		uint32_t v = (uint32_t)sig[i] << 16 |
		    (uint32_t)sig[i + 1] << 8 | sig[i + 2];
		out[o++] = b64u[v >> 18];
		out[o++] = b64u[(v >> 12) & 63];
		out[o++] = b64u[(v >> 6) & 63];
		out[o++] = b64u[v & 63];
	}
	out[o++] = b64u[sig[63] >> 2];
	out[o++] = b64u[(sig[63] & 3) << 4];
	out[o] = '\0';
}

static int
b64u_val(char c)
{
	const char *p = c != '\0' ? strchr(b64u, c) : NULL;

	return p != NULL ? (int)(p - b64u) : -1;
}

/* The 86 characters of a signature back into 64 bytes. */
static int
sig_decode(const char *in, uint8_t sig[64])
{
	size_t i, o = 0;
	int v[4], k;

	for (i = 0; i < 84; i += 4) {
		for (k = 0; k < 4; k++)
			if ((v[k] = b64u_val(in[i + (size_t)k])) < 0)
				return VLT_ERR_BAD_PARAM;
		sig[o++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
		sig[o++] = (uint8_t)((v[1] & 15) << 4 | v[2] >> 2);
		sig[o++] = (uint8_t)((v[2] & 3) << 6 | v[3]);
	}
	if ((v[0] = b64u_val(in[84])) < 0 || (v[1] = b64u_val(in[85])) < 0 ||
	    (v[1] & 15) != 0)
		return VLT_ERR_BAD_PARAM;
	sig[o] = (uint8_t)(v[0] << 2 | v[1] >> 4);
	return 0;
}

static void
kid_of(const uint8_t *spki, size_t len, char kid[VLT_AUDIT_KID_LEN + 1])
{
	static const char hx[] = "0123456789abcdef";
	unsigned char md[SHA256_DIGEST_LENGTH];
	size_t i;

	SHA256(spki, len, md);
	for (i = 0; i < VLT_AUDIT_KID_LEN / 2; i++) {
		kid[2 * i] = hx[md[i] >> 4];
		kid[2 * i + 1] = hx[md[i] & 0xf];
	}
	kid[VLT_AUDIT_KID_LEN] = '\0';
}

static int
ckpt_message(buf_t *msg, const char *time_text, uint64_t lines,
    const char head[65])
{
	return buf_putf(msg, CKPT_DOMAIN "\n%s\n%llu\n%.64s\n", time_text,
	           (unsigned long long)lines, head) == 0 ?
	    0 :
	    VLT_ERR_INTERNAL;
}

/* ISO-8601 UTC with milliseconds, now. */
static int
now_text(char *dst, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	char base[32];
	time_t t;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return VLT_ERR_INTERNAL;
	t = ts.tv_sec;
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		return VLT_ERR_INTERNAL;
	return str_fmt(dst, cap, "%s.%03dZ", base,
	           (int)(ts.tv_nsec / 1000000)) == 0 ?
	    0 :
	    VLT_ERR_INTERNAL;
}

int
vlt_ckpt_build(const struct vlt_audit_signer *s, const char head[65],
    uint64_t lines, buf_t *obj)
{
	char ts[64], kid[VLT_AUDIT_KID_LEN + 1], sigtext[87];
	uint8_t sig[64];
	buf_t *msg;
	int r;

	if ((r = now_text(ts, sizeof(ts))) != 0)
		return r;
	if ((msg = buf_new(1024)) == NULL)
		return VLT_ERR_NO_MEMORY;
	if ((r = ckpt_message(msg, ts, lines, head)) == 0)
		r = s->sign(s->ctx, buf_ptr(msg), buf_len(msg), sig, kid);
	buf_free(msg);
	if (r != 0)
		return r;
	sig_encode(sig, sigtext);
	if (buf_putf(obj,
	        "{\"event\":\"" VLT_AUDIT_CHECKPOINT "\",\"time\":\"%s\","
	        "\"lines\":%llu,\"head\":\"%.64s\",\"kid\":\"%s\","
	        "\"sig\":\"%s\"}",
	        ts, (unsigned long long)lines, head, kid, sigtext) != 0)
		return VLT_ERR_INTERNAL;
	return 0;
}

int
vlt_ckpt_is(const char *line, size_t n)
{
	return n > 74 + sizeof(CKPT_TAG) - 1 &&
	    strncmp(line + 74, CKPT_TAG, sizeof(CKPT_TAG) - 1) == 0;
}

int
vlt_ckpt_lines(const char *line, uint64_t *lines)
{
	char digits[24];
	const char *p = strstr(line, "\"lines\":");
	size_t n = 0;

	if (p == NULL)
		return VLT_ERR_BAD_PARAM;
	for (p += 8; *p >= '0' && *p <= '9'; p++) {
		if (n + 1 >= sizeof(digits))
			return VLT_ERR_BAD_PARAM;
		digits[n++] = *p;
	}
	digits[n] = '\0';
	if (*p != ',')
		return VLT_ERR_BAD_PARAM;
	return parse_u64(digits, UINT64_MAX, lines);
}

int
vlt_ckpt_check(const struct vlt_ckpt_key *k, const char *line, size_t n,
    const char prev[65], uint64_t *lines, const char **why)
{
	char ts[64], head[65], kid[VLT_AUDIT_KID_LEN + 1], sigtext[88];
	uint8_t sig[64], digest[32];
	buf_t *msg;
	int valid = 0, r;

	(void)n;
	*why = "malformed checkpoint";
	if (vlt_ckpt_lines(line, lines) != 0 ||
	    audit_field_text(line, "\"time\":\"", "._:-", ts, sizeof(ts)) !=
	        0 ||
	    audit_field_text(line, "\"head\":\"", "._:-", head, sizeof(head)) !=
	        0 ||
	    audit_field_text(line, "\"kid\":\"", "._:-", kid, sizeof(kid)) !=
	        0 ||
	    audit_field_text(line, "\"sig\":\"", "._:-", sigtext,
	        sizeof(sigtext)) != 0 ||
	    strlen(sigtext) != 86 || sig_decode(sigtext, sig) != 0)
		return VLT_ERR_BAD_PARAM;
	*why = "checkpoint head does not match the chain";
	if (strlen(head) != 64 || strcmp(head, prev) != 0)
		return VLT_ERR_BAD_PARAM;
	*why = "no public key to check checkpoints with";
	if (k == NULL)
		return VLT_ERR_BAD_PARAM;
	*why = "checkpoint signed by another key (kid)";
	if (strcmp(kid, k->kid) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((msg = buf_new(1024)) == NULL)
		return VLT_ERR_NO_MEMORY;
	r = ckpt_message(msg, ts, *lines, head);
	if (r == 0)
		SHA256(buf_ptr(msg), buf_len(msg), digest);
	buf_free(msg);
	*why = "checkpoint signature does not verify";
	if (r != 0 ||
	    hsm_pub_verify(k->spki, k->spki_len, HSM_ALG_ES256, digest,
	        sizeof(digest), sig, sizeof(sig), &valid) != HSM_OK ||
	    !valid)
		return VLT_ERR_BAD_PARAM;
	*why = "";
	return 0;
}

/* ---- the public key --------------------------------------------------- */

static int
pem_of(const uint8_t *spki, size_t len, buf_t *out)
{
	const unsigned char *p = spki;
	EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)len);
	BIO *bio = BIO_new(BIO_s_mem());
	char *data = NULL;
	long n;
	int r = VLT_ERR_INTERNAL;

	if (pk != NULL && bio != NULL && PEM_write_bio_PUBKEY(bio, pk) == 1 &&
	    (n = BIO_get_mem_data(bio, &data)) > 0 &&
	    buf_put(out, data, (size_t)n) == 0)
		r = 0;
	BIO_free(bio);
	EVP_PKEY_free(pk);
	return r;
}

int
vlt_ckpt_key_load(const char *pem_path, struct vlt_ckpt_key **out)
{
	struct vlt_ckpt_key *k;
	EVP_PKEY *pk;
	FILE *f;
	int len;

	*out = NULL;
	if ((f = fopen(pem_path, "r")) == NULL)
		return errno == ENOENT ? VLT_ERR_NOT_FOUND : VLT_ERR_IO;
	pk = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	if (pk == NULL)
		return VLT_ERR_BAD_PARAM;
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		EVP_PKEY_free(pk);
		return VLT_ERR_NO_MEMORY;
	}
	len = i2d_PUBKEY(pk, &k->spki);
	EVP_PKEY_free(pk);
	if (len <= 0) {
		free(k);
		return VLT_ERR_BAD_PARAM;
	}
	k->spki_len = (size_t)len;
	kid_of(k->spki, k->spki_len, k->kid);
	*out = k;
	return 0;
}

void
vlt_ckpt_key_free(struct vlt_ckpt_key *k)
{
	if (k == NULL)
		return;
	OPENSSL_free(k->spki);
	free(k);
}

/* pem into path (0600, as every file of DIR) by a synced temporary file and a rename. */
static int
pem_write(const char *path, const buf_t *pem)
{
	char tmp[PATH_MAX];
	int fd, err = 0, r = VLT_ERR_IO;
	size_t done = 0;

	if (str_fmt(tmp, sizeof(tmp), "%s.tmp", path) != 0)
		return VLT_ERR_IO;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return VLT_ERR_IO;
	while (done < buf_len(pem)) {
		ssize_t w = write(fd, buf_ptr(pem) + done, buf_len(pem) - done);
		if (w <= 0) {
			err = 1;
			break;
		}
		done += (size_t)w;
	}
	if (!err && fchmod(fd, 0600) == 0 && fsync(fd) == 0)
		r = 0;
	close(fd);
	if (r == 0 && rename(tmp, path) != 0)
		r = VLT_ERR_IO;
	if (r != 0)
		(void)unlink(tmp);
	return r;
}

/* The token's audit public key: its kid, and DIR/audit/audit-key.pem
 * written when missing (one that holds another key is left as it is,
 * and said so). */
static int
key_ready(vault_t *v)
{
	char path[PATH_MAX];
	uint8_t *spki = NULL;
	size_t len = 0;
	buf_t *pem = NULL, *have = NULL;
	int r;

	if ((r = map_hsm(hsm_audit_public(v->hsm, &spki, &len))) != 0)
		return r;
	kid_of(spki, len, v->audit_kid);
	if ((pem = buf_new(CKPT_PEM_MAX)) == NULL) {
		r = VLT_ERR_NO_MEMORY;
		goto out;
	}
	if ((r = pem_of(spki, len, pem)) != 0 ||
	    (r = str_fmt(path, sizeof(path), "%s/audit/audit-key.pem",
	         v->data_dir)) != 0)
		goto out;
	if (file_read(path, CKPT_PEM_MAX, &have) == 0) {
		if (buf_len(have) != buf_len(pem) ||
		    memcmp(buf_ptr(have), buf_ptr(pem), buf_len(pem)) != 0)
			fprintf(stderr,
			    "{\"level\":\"error\",\"event\":"
			    "\"audit_key_mismatch\",\"file\":\"%s\","
			    "\"kid\":\"%s\"}\n",
			    path, v->audit_kid);
	} else {
		r = pem_write(path, pem);
	}
	if (r == 0)
		v->audit_key_ready = 1;
out:
	buf_free(have);
	buf_free(pem);
	free(spki);
	return r;
}

/* The log's signer (called under the log's lock, so one at a time). */
static int
ckpt_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[64],
    char kid[VLT_AUDIT_KID_LEN + 1])
{
	vault_t *v = ctx;
	int r;

	if (!v->audit_key_ready && (r = key_ready(v)) != 0)
		return r;
	memcpy(kid, v->audit_kid, VLT_AUDIT_KID_LEN + 1);
	return map_hsm(hsm_audit_sign(v->hsm, msg, len, sig));
}

static int
conf_u64(const vault_t *v, const char *key, uint64_t dflt, uint64_t *out)
{
	const char *s = conf_get(v->conf, key);

	*out = dflt;
	return s == NULL ? 0 : parse_u64(s, UINT32_MAX, out);
}

int
vault_audit_signer(vault_t *v, struct vlt_audit_signer *s)
{
	memset(s, 0, sizeof(*s));
	s->sign = ckpt_sign;
	s->ctx = v;
	if (conf_u64(v, "audit_checkpoint_lines", CKPT_DEFAULT_LINES,
	        &s->every_lines) != 0 ||
	    conf_u64(v, "audit_checkpoint_seconds", CKPT_DEFAULT_SECONDS,
	        &s->every_seconds) != 0)
		return VLT_ERR_IO;
	return 0;
}
