/*
 * seal.c — the unseal secret on the token side: derivation of the PINs,
 * the seal configuration file, operator key shares (libgfshare) and the
 * unattended methods (systemd-creds, Clevis). See seal.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libgfshare.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "hsm/base.h"
#include "hsm/buf.h"
#include "hsm/harden.h"
#include "hsm/seal.h"

#define SEAL_SALT "p11vault-seal-v1"
#define CRED_NAME "p11vault-unseal"
#define OUT_MAX 256
#define SEAL_CONF_MAX (64 * 1024)
#define JWE_MAX (256 * 1024)

static const char hexd[] = "0123456789abcdef";

static void
to_hex(const uint8_t *p, size_t n, char *out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hexd[p[i] >> 4];
		out[2 * i + 1] = hexd[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* exactly 2n hex digits into out[n] */
static int
from_hex(const char *s, size_t slen, uint8_t *out, size_t n)
{
	size_t i;
	int a, b;

	if (slen != 2 * n)
		return -1;
	for (i = 0; i < n; i++) {
		if ((a = hexval((unsigned char)s[2 * i])) < 0 ||
		    (b = hexval((unsigned char)s[2 * i + 1])) < 0)
			return -1;
		out[i] = (uint8_t)(a << 4 | b);
	}
	return 0;
}

/* HKDF-SHA256 of key under SEAL_SALT and info: 32 bytes into out. */
static int
hkdf_key(const uint8_t *key, size_t key_len, const char *info, uint8_t out[32])
{
	EVP_PKEY_CTX *k;
	size_t len = 32;
	int ok;

	if ((k = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL)) == NULL)
		return -1;
	ok = EVP_PKEY_derive_init(k) > 0 &&
	    EVP_PKEY_CTX_set_hkdf_md(k, EVP_sha256()) > 0 &&
	    EVP_PKEY_CTX_set1_hkdf_salt(k, (const unsigned char *)SEAL_SALT,
	        sizeof(SEAL_SALT) - 1) > 0 &&
	    EVP_PKEY_CTX_set1_hkdf_key(k, key, (int)key_len) > 0 &&
	    EVP_PKEY_CTX_add1_hkdf_info(k, (const unsigned char *)info,
	        (int)strlen(info)) > 0 &&
	    EVP_PKEY_derive(k, out, &len) > 0 && len == 32;
	EVP_PKEY_CTX_free(k);
	return ok ? 0 : -1;
}

static int
hkdf(const uint8_t s[SEAL_SECRET_LEN], const char *info, uint8_t out[32])
{
	return hkdf_key(s, SEAL_SECRET_LEN, info, out);
}

int
seal_pin(const uint8_t s[SEAL_SECRET_LEN], const char *what,
    char pin[SEAL_PIN_LEN + 1])
{
	uint8_t d[32];
	char info[32];
	int r;

	if (str_fmt(info, sizeof(info), "%s-pin", what) != 0)
		return -1;
	r = hkdf(s, info, d);
	if (r == 0)
		to_hex(d, sizeof(d), pin);
	OPENSSL_cleanse(d, sizeof(d));
	return r;
}

int
seal_check_value(const uint8_t s[SEAL_SECRET_LEN], uint8_t out[32])
{
	return hkdf(s, "check", out);
}

int
seal_check(const struct seal_conf *c, const uint8_t s[SEAL_SECRET_LEN])
{
	uint8_t d[32];
	int r;

	if (seal_check_value(s, d) != 0)
		return -1;
	r = CRYPTO_memcmp(d, c->check, sizeof(d)) == 0 ? 0 : -1;
	OPENSSL_cleanse(d, sizeof(d));
	return r;
}

int
seal_new_secret(uint8_t s[SEAL_SECRET_LEN])
{
	return RAND_priv_bytes(s, SEAL_SECRET_LEN) == 1 ? 0 : -1;
}

/* ---- the configuration file ---- */

int
seal_path(char *out, size_t cap, const char *dir, const char *name)
{
	return str_fmt(out, cap, "%s/%s", dir, name);
}

/* One "key=value" line of seal.conf into c (got: which of format and
 * check were seen); -1 when it is malformed. */
static int
conf_line(char *line, struct seal_conf *c, unsigned *got, unsigned *nshares)
{
	char *v;
	uint64_t x;

	if (line[0] == '\0' || line[0] == '#')
		return 0;
	if ((v = strchr(line, '=')) == NULL)
		return -1;
	*v++ = '\0';
	if (strcmp(line, "format") == 0) {
		*got |= 1;
		return strcmp(v, "1") == 0 ? 0 : -1;
	}
	if (strcmp(line, "threshold") == 0 || strcmp(line, "shares") == 0) {
		if (parse_u64(v, SEAL_SHARES_MAX, &x) != 0)
			return -1;
		*(line[0] == 't' ? &c->threshold : &c->shares) = (unsigned)x;
		return 0;
	}
	if (strcmp(line, "check") == 0) {
		*got |= 2;
		return from_hex(v, strlen(v), c->check, 32);
	}
	if (strncmp(line, "share.", 6) == 0) {
		if (*nshares >= SEAL_SHARES_MAX ||
		    parse_u64(line + 6, 255, &x) != 0 || x < 1 ||
		    from_hex(v, strlen(v), c->share_hash[*nshares], 32) != 0)
			return -1;
		c->share_nr[(*nshares)++] = (uint8_t)x;
		return 0;
	}
	if (strcmp(line, "method") == 0)
		return str_fmt(c->method, sizeof(c->method), "%s", v);
	if (strcmp(line, "method_arg") == 0)
		return str_fmt(c->arg, sizeof(c->arg), "%s", v);
	return 0;
}

int
seal_conf_read(const char *hsmdir, const char *name, struct seal_conf *c)
{
	char path[PATH_MAX], *line, *nl;
	unsigned got = 0, nshares = 0;
	buf_t *b = NULL;
	int bad = 0, rc;

	memset(c, 0, sizeof(*c));
	if (seal_path(path, sizeof(path), hsmdir, name) != 0)
		return -1;
	/* absent (errno ENOENT) or unreadable: -1; too long: malformed */
	if ((rc = file_read(path, SEAL_CONF_MAX, &b)) != 0)
		return rc == HSM_ERR_ARGS ? -2 : -1;
	/* the buffer is NUL-terminated: split it in place, a line at a time
	 * (the last one may lack its newline) */
	for (line = (char *)buf_ptr(b); !bad && line != NULL; line = nl) {
		if ((nl = strchr(line, '\n')) != NULL)
			*nl++ = '\0';
		bad = conf_line(line, c, &got, &nshares) != 0;
	}
	buf_free(b);
	if (bad || got != 3 || nshares != c->shares ||
	    c->shares > SEAL_SHARES_MAX || c->threshold > c->shares ||
	    (c->shares > 0 && c->threshold == 0) ||
	    (c->method[0] != '\0' && strcmp(c->method, "systemd-creds") != 0 &&
	        strcmp(c->method, "clevis") != 0) ||
	    (c->shares == 0 && c->method[0] == '\0'))
		return -2;
	return 0;
}

/* data into DIR/name, atomically, mode 0600 */
static int
write_file_atomic(const char *hsmdir, const char *name, const void *data,
    size_t len)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	int fd, r;

	if (seal_path(path, sizeof(path), hsmdir, name) != 0 ||
	    str_fmt(tmp, sizeof(tmp), "%s.tmp", path) != 0)
		return -1;
	(void)unlink(tmp);
	if ((fd = open(tmp,
	         O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)) <
	    0)
		return -1;
	r = hsm_write_all(fd, data, len);
	if (r == 0)
		r = fsync(fd);
	if (close(fd) != 0)
		r = -1;
	if (r == 0)
		r = rename(tmp, path);
	if (r != 0) {
		(void)unlink(tmp);
		return -1;
	}
	return hsm_sync_dir(hsmdir);
}

int
seal_conf_write(const char *hsmdir, const char *name, const struct seal_conf *c)
{
	char hex[65];
	buf_t *b;
	unsigned i;
	int r;

	if ((b = buf_new(SEAL_CONF_MAX)) == NULL)
		return -1;
	to_hex(c->check, 32, hex);
	r = buf_putf(b,
	    "# p11vault seal configuration: no secret here (see "
	    "docs/operations.md)\nformat=1\nthreshold=%u\nshares=%u\n"
	    "check=%s\n",
	    c->threshold, c->shares, hex);
	for (i = 0; r == 0 && i < c->shares; i++) {
		to_hex(c->share_hash[i], 32, hex);
		r = buf_putf(b, "share.%u=%s\n", c->share_nr[i], hex);
	}
	if (r == 0 && c->method[0] != '\0')
		r = buf_putf(b, "method=%s\nmethod_arg=%s\n", c->method,
		    c->arg);
	if (r == 0)
		r = write_file_atomic(hsmdir, name, buf_ptr(b), buf_len(b));
	buf_free(b);
	return r == 0 ? 0 : -1;
}

/* ---- shares ---- */

static void
fill_rand(unsigned char *p, unsigned int n)
{
	if (RAND_priv_bytes(p, (int)n) != 1)
		abort(); /* never split with a broken generator */
}

static void
share_hash(uint8_t nr, const uint8_t body[SEAL_SECRET_LEN], uint8_t out[32])
{
	uint8_t m[14 + 1 + SEAL_SECRET_LEN];

	memcpy(m, "p11vault-share", 14);
	m[14] = nr;
	memcpy(m + 15, body, SEAL_SECRET_LEN);
	SHA256(m, sizeof(m), out);
	OPENSSL_cleanse(m, sizeof(m));
}


/* The shares' text out of t; *len counts the NUL too (all of the block
 * freezero must wipe). */
static int
text_out(buf_t *t, char **text, size_t *len)
{
	size_t n;

	if ((*text = buf_steal(t, &n)) == NULL)
		return -1;
	*len = n + 1;
	return 0;
}

int
seal_split(const uint8_t s[SEAL_SECRET_LEN], unsigned m, unsigned n,
    struct seal_conf *c, char **text, size_t *text_len)
{
	uint8_t nrs[SEAL_SHARES_MAX], body[SEAL_SECRET_LEN],
	    sec[SEAL_SECRET_LEN];
	gfshare_ctx *g;
	buf_t *t;
	char hex[65];
	unsigned i;
	int r = 0;

	*text = NULL;
	*text_len = 0;
	if (n > SEAL_SHARES_MAX || m > n || (n > 0 && m == 0))
		return -1;
	c->threshold = m;
	c->shares = n;
	if ((t = buf_new(SEAL_SHARES_MAX * SEAL_SHARE_TEXT + 1)) == NULL)
		return -1;
	if (n == 0)
		return text_out(t, text, text_len);
	gfshare_fill_rand = fill_rand;
	for (i = 0; i < n; i++)
		nrs[i] = (uint8_t)(i + 1);
	if ((g = gfshare_ctx_init_enc(nrs, n, (unsigned char)m,
	         SEAL_SECRET_LEN)) == NULL) {
		buf_free(t);
		return -1;
	}
	memcpy(sec, s, sizeof(sec));
	gfshare_ctx_enc_setsecret(g, sec);
	OPENSSL_cleanse(sec, sizeof(sec));
	for (i = 0; r == 0 && i < n; i++) {
		gfshare_ctx_enc_getshare(g, (unsigned char)i, body);
		c->share_nr[i] = nrs[i];
		share_hash(nrs[i], body, c->share_hash[i]);
		to_hex(body, sizeof(body), hex);
		r = buf_putf(t, "%u-%s\n", nrs[i], hex);
		OPENSSL_cleanse(hex, sizeof(hex));
	}
	OPENSSL_cleanse(body, sizeof(body));
	gfshare_ctx_free(g); /* scrubs its buffers */
	if (r != 0) {
		buf_free(t);
		return -1;
	}
	return text_out(t, text, text_len);
}

int
seal_offer(const struct seal_conf *c, struct seal_collect *col,
    const char *share)
{
	uint8_t body[SEAL_SECRET_LEN], h[32];
	const char *dash, *end;
	char num[4];
	uint64_t nr;
	unsigned i;
	int found = 0;

	while (*share == ' ' || *share == '\t')
		share++;
	end = share + strlen(share);
	while (end > share &&
	    (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' ||
	        end[-1] == '\t'))
		end--;
	if ((dash = memchr(share, '-', (size_t)(end - share))) == NULL ||
	    dash == share || dash - share > 3)
		return SEAL_SHARE_MALFORMED;
	memcpy(num, share, (size_t)(dash - share));
	num[dash - share] = '\0';
	if (parse_u64(num, 255, &nr) != 0 || nr < 1 ||
	    from_hex(dash + 1, (size_t)(end - dash - 1), body, sizeof(body)) !=
	        0)
		return SEAL_SHARE_MALFORMED;
	share_hash((uint8_t)nr, body, h);
	for (i = 0; i < c->shares; i++)
		found |= c->share_nr[i] == nr &&
		    CRYPTO_memcmp(h, c->share_hash[i], 32) == 0;
	if (!found) {
		OPENSSL_cleanse(body, sizeof(body));
		return SEAL_SHARE_UNKNOWN;
	}
	for (i = 0; i < col->count; i++)
		if (col->nr[i] == nr) {
			OPENSSL_cleanse(body, sizeof(body));
			return SEAL_SHARE_REPEATED;
		}
	if (col->count >= SEAL_SHARES_MAX)
		return SEAL_SHARE_REPEATED;
	col->nr[col->count] = (uint8_t)nr;
	memcpy(col->body[col->count], body, sizeof(body));
	col->count++;
	OPENSSL_cleanse(body, sizeof(body));
	return SEAL_SHARE_TAKEN;
}

int
seal_combine(const struct seal_conf *c, const struct seal_collect *col,
    uint8_t s[SEAL_SECRET_LEN])
{
	uint8_t nrs[SEAL_SHARES_MAX], body[SEAL_SECRET_LEN];
	gfshare_ctx *g;
	unsigned i, k;
	int r;

	if (c->threshold == 0 || col->count < c->threshold)
		return -1;
	gfshare_fill_rand = fill_rand; /* gfshare_ctx_free scrubs with it */
	k = c->threshold;
	memcpy(nrs, col->nr, k);
	if ((g = gfshare_ctx_init_dec(nrs, k, SEAL_SECRET_LEN)) == NULL)
		return -1;
	for (i = 0; i < k; i++) {
		memcpy(body, col->body[i], sizeof(body));
		gfshare_ctx_dec_giveshare(g, (unsigned char)i, body);
	}
	OPENSSL_cleanse(body, sizeof(body));
	gfshare_ctx_dec_extract(g, s);
	gfshare_ctx_free(g);
	r = seal_check(c, s);
	if (r != 0)
		OPENSSL_cleanse(s, SEAL_SECRET_LEN);
	return r;
}

/* ---- unattended methods ---- */

const char *
seal_auto_file(const struct seal_conf *c)
{
	if (strcmp(c->method, "systemd-creds") == 0)
		return "unseal.cred";
	if (strcmp(c->method, "clevis") == 0)
		return "unseal.jwe";
	return NULL;
}

/* S from text: 64 hex digits, optional newline */
static int
secret_of(const uint8_t *p, size_t n, uint8_t s[SEAL_SECRET_LEN])
{
	while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
		n--;
	return from_hex((const char *)p, n, s, SEAL_SECRET_LEN);
}

/*
 * Decrypts path with c's method into out[cap] (*len): first
 * $CREDENTIALS_DIRECTORY/name (systemd's LoadCredentialEncrypted=, for
 * systemd-creds), else systemd-creds decrypt --name=name, or clevis
 * decrypt. 0, or -1 with *why a fixed phrase.
 */
static int
auto_decrypt(const struct seal_conf *c, const char *name, const char *path,
    uint8_t *out, size_t cap, size_t *len, const char **why)
{
	char cp[PATH_MAX], nm[128], dash[] = "-", sc[] = "systemd-creds";
	char dec[] = "decrypt", cl[] = "clevis", pth[PATH_MAX];
	const char *credir = getenv("CREDENTIALS_DIRECTORY");
	buf_t *b = NULL;
	int r = -1;

	*len = 0;
	if (strcmp(c->method, "systemd-creds") == 0 && credir != NULL &&
	    *credir != '\0') {
		if (seal_path(cp, sizeof(cp), credir, name) == 0 &&
		    file_read(cp, cap - 1, &b) == 0 && buf_len(b) > 0) {
			*len = buf_len(b);
			memcpy(out, buf_ptr(b), *len);
			buf_free(b);
			return 0;
		}
		buf_free(b);
		b = NULL;
	}
	if (access(path, R_OK) != 0) {
		*why = "the unattended unseal credential file is missing";
		return -1;
	}
	if (str_fmt(nm, sizeof(nm), "--name=%s", name) != 0 ||
	    str_fmt(pth, sizeof(pth), "%s", path) != 0) {
		*why = "the unattended unseal credential's name is too long";
		return -1;
	}
	if (strcmp(c->method, "systemd-creds") == 0) {
		char *argv[] = { sc, dec, nm, pth, dash, NULL };
		r = hsm_run(argv, -1, "", 0, out, cap, len);
		*why =
		    "systemd-creds decrypt failed (another machine's key, an "
		    "altered file, or not root)";
	} else if (strcmp(c->method, "clevis") == 0) {
		char *argv[] = { cl, dec, NULL };
		const char *jwe;
		size_t jl = 0;

		/* the JWE without trailing white space (clevis decrypt of
		 * "JWE\n" prints the secret and exits 1) */
		if (file_read(path, JWE_MAX, &b) == 0) {
			jwe = buf_str(b);
			jl = buf_len(b);
			while (jl > 0 &&
			    (jwe[jl - 1] == '\n' || jwe[jl - 1] == '\r' ||
			        jwe[jl - 1] == ' '))
				jl--;
		}
		r = jl > 0 ? hsm_run(argv, -1, buf_str(b), jl, out, cap, len) :
		             -1;
		buf_free(b);
		*why =
		    "clevis decrypt failed (Tang server unreachable, wrong "
		    "machine, or an altered file)";
	} else {
		*why = "no unattended method is configured";
	}
	return r;
}

/* Encrypts in with c's method into path (atomically, 0600). */
static int
auto_encrypt(const struct seal_conf *c, const char *name, const uint8_t *in,
    size_t in_len, const char *dir, const char *file, const char **why)
{
	char nm[128], wk[SEAL_AUTO_MAX + 16], dash[] = "-",
	                                      sc[] = "systemd-creds";
	char enc[] = "encrypt", cl[] = "clevis", y[] = "-y", pin[64], *cfg;
	uint8_t *out;
	size_t len = 0, pl, cap = 256 * 1024;
	int r = -1;

	if ((out = malloc(cap)) == NULL)
		return -1;
	*why = "the unattended method's arguments are too long";
	if (str_fmt(nm, sizeof(nm), "--name=%s", name) != 0) {
		free(out);
		return -1;
	}
	if (strcmp(c->method, "systemd-creds") == 0) {
		char *argv[] = { sc, enc, nm, wk, dash, dash, NULL };
		if (str_fmt(wk, sizeof(wk), "--with-key=%s",
		        c->arg[0] != '\0' ? c->arg : "host") != 0) {
			free(out);
			return -1;
		}
		r = hsm_run(argv, -1, in, in_len, out, cap, &len);
		*why =
		    "systemd-creds encrypt failed (run as root; for tpm2 "
		    "a TPM is needed)";
	} else if (strcmp(c->method, "clevis") == 0) {
		/* arg: "PIN CONFIG", e.g. tang {"url":"http://…"} */
		cfg = strchr(c->arg, ' ');
		pl = cfg != NULL ? (size_t)(cfg - c->arg) : 0;
		*why = "clevis needs a pin and its configuration";
		if (cfg != NULL && pl > 0 && pl < sizeof(pin)) {
			memcpy(pin, c->arg, pl);
			pin[pl] = '\0';
			char *argv[] = { cl, enc, pin, cfg + 1, y, NULL };
			r = hsm_run(argv, -1, in, in_len, out, cap, &len);
			*why =
			    "clevis encrypt failed (is the Tang server "
			    "reachable?)";
		}
	} else {
		*why = "unknown unattended method";
	}
	if (r == 0 && (len == 0 || len >= cap))
		r = -1;
	if (r == 0 && write_file_atomic(dir, file, out, len) != 0) {
		*why = "cannot write the unattended unseal credential";
		r = -1;
	}
	free(out);
	return r;
}

int
seal_auto_unseal(const char *hsmdir, const struct seal_conf *c,
    uint8_t s[SEAL_SECRET_LEN], const char **why)
{
	char path[PATH_MAX];
	const char *file;
	uint8_t out[OUT_MAX];
	size_t len = 0;
	int r;

	*why = "no unattended method is configured";
	if ((file = seal_auto_file(c)) == NULL)
		return -1;
	if (seal_path(path, sizeof(path), hsmdir, file) != 0)
		return -1;
	r = auto_decrypt(c, CRED_NAME, path, out, sizeof(out), &len, why);
	if (r == 0 && secret_of(out, len, s) != 0) {
		*why =
		    "the unattended method gave something that is not an "
		    "unseal secret";
		r = -1;
	}
	if (r == 0 && seal_check(c, s) != 0) {
		*why = "the unattended method gave another vault's secret";
		r = -1;
	}
	OPENSSL_cleanse(out, sizeof(out));
	if (r != 0)
		OPENSSL_cleanse(s, SEAL_SECRET_LEN);
	return r;
}

int
seal_auto_seal(const char *hsmdir, const struct seal_conf *c,
    const uint8_t s[SEAL_SECRET_LEN], const char *suffix, const char **why)
{
	char name[PATH_MAX], hex[SEAL_SECRET_LEN * 2 + 2];
	const char *file;
	int r;

	*why = "unknown unattended method";
	if ((file = seal_auto_file(c)) == NULL)
		return -1;
	to_hex(s, SEAL_SECRET_LEN, hex);
	hex[SEAL_SECRET_LEN * 2] = '\n';
	hex[SEAL_SECRET_LEN * 2 + 1] = '\0';
	if (str_fmt(name, sizeof(name), "%s%s", file, suffix) != 0) {
		OPENSSL_cleanse(hex, sizeof(hex));
		return -1;
	}
	r = auto_encrypt(c, CRED_NAME, (const uint8_t *)hex, strlen(hex),
	    hsmdir, name, why);
	OPENSSL_cleanse(hex, sizeof(hex));
	return r;
}

/* ---- other files of the data directory (the TLS key) ---- */

/* systemd-creds with the vault's key choice (host when the vault uses
 * another method or none): the TLS key must open at every start on this
 * machine, even while the vault waits for shares or for Tang. */
static void
at_rest_conf(const char *hsm_dir, struct seal_conf *c)
{
	struct seal_conf v;

	memset(c, 0, sizeof(*c));
	memcpy(c->method, "systemd-creds", sizeof("systemd-creds"));
	if (seal_conf_read(hsm_dir, SEAL_CONF, &v) == 0 &&
	    strcmp(v.method, "systemd-creds") == 0)
		memcpy(c->arg, v.arg, sizeof(c->arg));
	else
		memcpy(c->arg, "host", sizeof("host"));
}

int
hsm_at_rest_seal(const char *hsm_dir, const char *name, const uint8_t *data,
    size_t len, const char *dir, const char *file, const char **why)
{
	struct seal_conf c;

	at_rest_conf(hsm_dir, &c);
	return auto_encrypt(&c, name, data, len, dir, file, why);
}

int
hsm_at_rest_open(const char *hsm_dir, const char *name, const char *path,
    uint8_t *out, size_t cap, size_t *len, const char **why)
{
	struct seal_conf c;

	at_rest_conf(hsm_dir, &c);
	return auto_decrypt(&c, name, path, out, cap, len, why);
}

/* ---- an interrupted rekey ---- */

#define PENDING "seal.pending"
#define PENDING_LEN (12 + SEAL_SECRET_LEN + 16)

/* the key of seal.pending: HKDF of the old user PIN (what opened the token
 * before the rekey, and what the old shares or PIN file still give) */
static int
pending_key(const char *old_pin, uint8_t k[32])
{
	return hkdf_key((const uint8_t *)old_pin, strlen(old_pin), "pending",
	    k);
}

int
seal_pending_write(const char *hsmdir, const char *old_pin,
    const uint8_t s[SEAL_SECRET_LEN])
{
	uint8_t k[32], b[PENDING_LEN];
	EVP_CIPHER_CTX *c = NULL;
	int n, ok = 0;

	if (pending_key(old_pin, k) != 0 || RAND_bytes(b, 12) != 1)
		goto out;
	if ((c = EVP_CIPHER_CTX_new()) == NULL)
		goto out;
	ok = EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, k, b) == 1 &&
	    EVP_EncryptUpdate(c, b + 12, &n, s, SEAL_SECRET_LEN) == 1 &&
	    n == SEAL_SECRET_LEN &&
	    EVP_EncryptFinal_ex(c, b + 12 + n, &n) == 1 &&
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16,
	        b + 12 + SEAL_SECRET_LEN) == 1;
	if (ok)
		ok = write_file_atomic(hsmdir, PENDING, b, sizeof(b)) == 0;
out:
	EVP_CIPHER_CTX_free(c);
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(b, sizeof(b));
	return ok ? 0 : -1;
}

int
seal_pending_read(const char *hsmdir, const char *old_pin,
    uint8_t s[SEAL_SECRET_LEN])
{
	char path[PATH_MAX];
	uint8_t k[32];
	const uint8_t *p;
	EVP_CIPHER_CTX *c = NULL;
	buf_t *b = NULL;
	int n, ok = 0;

	if (seal_path(path, sizeof(path), hsmdir, PENDING) != 0 ||
	    file_read(path, PENDING_LEN, &b) != 0)
		return -1;
	p = buf_ptr(b);
	if (buf_len(b) != PENDING_LEN || pending_key(old_pin, k) != 0 ||
	    (c = EVP_CIPHER_CTX_new()) == NULL)
		goto out;
	ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, k, p) == 1 &&
	    EVP_DecryptUpdate(c, s, &n, p + 12, SEAL_SECRET_LEN) == 1 &&
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16,
	        (void *)(p + 12 + SEAL_SECRET_LEN)) == 1 &&
	    EVP_DecryptFinal_ex(c, s + n, &n) == 1;
out:
	EVP_CIPHER_CTX_free(c);
	OPENSSL_cleanse(k, sizeof(k));
	buf_free(b);
	if (!ok)
		OPENSSL_cleanse(s, SEAL_SECRET_LEN);
	return ok ? 0 : -1;
}

void
seal_pending_clear(const char *hsmdir)
{
	char path[PATH_MAX];

	if (seal_path(path, sizeof(path), hsmdir, PENDING) == 0)
		(void)unlink(path);
}
