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

#include "hsm/harden.h"
#include "hsm/seal.h"

extern char **environ;

#define SEAL_SALT "p11vault-seal-v1"
#define CRED_NAME "p11vault-unseal"
#define OUT_MAX 256

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

static int
hkdf(const uint8_t s[SEAL_SECRET_LEN], const char *info, uint8_t out[32])
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
	    EVP_PKEY_CTX_set1_hkdf_key(k, s, SEAL_SECRET_LEN) > 0 &&
	    EVP_PKEY_CTX_add1_hkdf_info(k, (const unsigned char *)info,
	    (int)strlen(info)) > 0 &&
	    EVP_PKEY_derive(k, out, &len) > 0 && len == 32;
	EVP_PKEY_CTX_free(k);
	return ok ? 0 : -1;
}

int
seal_pin(const uint8_t s[SEAL_SECRET_LEN], const char *what,
    char pin[SEAL_PIN_LEN + 1])
{
	uint8_t d[32];
	char info[32];
	int r;

	snprintf(info, sizeof(info), "%s-pin", what);
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

static void
conf_path(char *out, size_t cap, const char *hsmdir, const char *name)
{
	snprintf(out, cap, "%s/%s", hsmdir, name);
}

int
seal_conf_read(const char *hsmdir, const char *name, struct seal_conf *c)
{
	char path[PATH_MAX], line[SEAL_AUTO_MAX + 64], *v, *nl;
	unsigned long nr;
	unsigned got = 0, nshares = 0;
	FILE *f;
	int bad = 0;

	memset(c, 0, sizeof(*c));
	conf_path(path, sizeof(path), hsmdir, name);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if ((nl = strchr(line, '\n')) != NULL)
			*nl = '\0';
		else if (!feof(f)) {
			bad = 1;
			break;
		}
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if ((v = strchr(line, '=')) == NULL) {
			bad = 1;
			break;
		}
		*v++ = '\0';
		if (strcmp(line, "format") == 0) {
			bad |= strcmp(v, "1") != 0;
			got |= 1;
		} else if (strcmp(line, "threshold") == 0) {
			c->threshold = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(line, "shares") == 0) {
			c->shares = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(line, "check") == 0) {
			bad |= from_hex(v, strlen(v), c->check, 32) != 0;
			got |= 2;
		} else if (strncmp(line, "share.", 6) == 0) {
			nr = strtoul(line + 6, NULL, 10);
			if (nshares >= SEAL_SHARES_MAX || nr < 1 || nr > 255 ||
			    from_hex(v, strlen(v), c->share_hash[nshares],
			    32) != 0) {
				bad = 1;
				break;
			}
			c->share_nr[nshares++] = (uint8_t)nr;
		} else if (strcmp(line, "method") == 0) {
			if (strlen(v) >= sizeof(c->method)) {
				bad = 1;
				break;
			}
			strcpy(c->method, v);
		} else if (strcmp(line, "method_arg") == 0) {
			if (strlen(v) >= sizeof(c->arg)) {
				bad = 1;
				break;
			}
			strcpy(c->arg, v);
		}
	}
	fclose(f);
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

	conf_path(path, sizeof(path), hsmdir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	(void)unlink(tmp);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
	    O_NOFOLLOW, 0600)) < 0)
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
seal_conf_write(const char *hsmdir, const char *name,
    const struct seal_conf *c)
{
	char *buf = NULL, hex[65];
	size_t cap = 4096 + SEAL_AUTO_MAX, len = 0;
	unsigned i;
	int n, r;

	if ((buf = malloc(cap)) == NULL)
		return -1;
	to_hex(c->check, 32, hex);
	n = snprintf(buf, cap, "# p11vault seal configuration: no secret "
	    "here (see docs/operations.md)\nformat=1\nthreshold=%u\n"
	    "shares=%u\ncheck=%s\n", c->threshold, c->shares, hex);
	len = (size_t)n;
	for (i = 0; i < c->shares && len < cap; i++) {
		to_hex(c->share_hash[i], 32, hex);
		n = snprintf(buf + len, cap - len, "share.%u=%s\n",
		    c->share_nr[i], hex);
		len += (size_t)n;
	}
	if (c->method[0] != '\0' && len < cap) {
		n = snprintf(buf + len, cap - len, "method=%s\nmethod_arg=%s\n",
		    c->method, c->arg);
		len += (size_t)n;
	}
	r = len < cap ? write_file_atomic(hsmdir, name, buf, len) : -1;
	free(buf);
	return r;
}

/* ---- shares ---- */

static void
fill_rand(unsigned char *p, unsigned int n)
{
	if (RAND_priv_bytes(p, (int)n) != 1)
		abort();   /* never split with a broken generator */
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

void
seal_text_free(char *text, size_t len)
{
	if (text == NULL)
		return;
	OPENSSL_cleanse(text, len);
	free(text);
}

int
seal_split(const uint8_t s[SEAL_SECRET_LEN], unsigned m, unsigned n,
    struct seal_conf *c, char **text, size_t *text_len)
{
	uint8_t nrs[SEAL_SHARES_MAX], body[SEAL_SECRET_LEN], sec[SEAL_SECRET_LEN];
	gfshare_ctx *g;
	size_t cap = SEAL_SHARES_MAX * SEAL_SHARE_TEXT + 1, len = 0;
	char *t, hex[65];
	unsigned i;

	*text = NULL;
	*text_len = 0;
	if (n > SEAL_SHARES_MAX || m > n || (n > 0 && m == 0))
		return -1;
	c->threshold = m;
	c->shares = n;
	if ((t = calloc(1, cap)) == NULL)
		return -1;
	if (n == 0) {
		*text = t;
		*text_len = cap;
		return 0;
	}
	gfshare_fill_rand = fill_rand;
	for (i = 0; i < n; i++)
		nrs[i] = (uint8_t)(i + 1);
	if ((g = gfshare_ctx_init_enc(nrs, n, (unsigned char)m,
	    SEAL_SECRET_LEN)) == NULL) {
		free(t);
		return -1;
	}
	memcpy(sec, s, sizeof(sec));
	gfshare_ctx_enc_setsecret(g, sec);
	OPENSSL_cleanse(sec, sizeof(sec));
	for (i = 0; i < n; i++) {
		gfshare_ctx_enc_getshare(g, (unsigned char)i, body);
		c->share_nr[i] = nrs[i];
		share_hash(nrs[i], body, c->share_hash[i]);
		to_hex(body, sizeof(body), hex);
		len += (size_t)snprintf(t + len, cap - len, "%u-%s\n", nrs[i],
		    hex);
		OPENSSL_cleanse(hex, sizeof(hex));
	}
	OPENSSL_cleanse(body, sizeof(body));
	gfshare_ctx_free(g);   /* scrubs its buffers */
	*text = t;
	*text_len = cap;
	return 0;
}

int
seal_offer(const struct seal_conf *c, struct seal_collect *col,
    const char *share)
{
	uint8_t body[SEAL_SECRET_LEN], h[32];
	const char *dash, *end;
	unsigned long nr;
	unsigned i;
	int found = 0;
	char *ep;

	while (*share == ' ' || *share == '\t')
		share++;
	end = share + strlen(share);
	while (end > share && (end[-1] == '\n' || end[-1] == '\r' ||
	    end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if ((dash = memchr(share, '-', (size_t)(end - share))) == NULL ||
	    dash == share || dash - share > 3)
		return SEAL_SHARE_MALFORMED;
	nr = strtoul(share, &ep, 10);
	if (ep != dash || nr < 1 || nr > 255 ||
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
	gfshare_fill_rand = fill_rand;   /* gfshare_ctx_free scrubs with it */
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
	ssize_t n;
	int fd, r = -1;

	*len = 0;
	if (strcmp(c->method, "systemd-creds") == 0 && credir != NULL &&
	    *credir != '\0') {
		snprintf(cp, sizeof(cp), "%s/%s", credir, name);
		if ((fd = open(cp, O_RDONLY | O_CLOEXEC)) >= 0) {
			n = read(fd, out, cap);
			close(fd);
			if (n > 0 && (size_t)n < cap) {
				*len = (size_t)n;
				return 0;
			}
		}
	}
	if (access(path, R_OK) != 0) {
		*why = "the unattended unseal credential file is missing";
		return -1;
	}
	snprintf(nm, sizeof(nm), "--name=%s", name);
	snprintf(pth, sizeof(pth), "%s", path);
	if (strcmp(c->method, "systemd-creds") == 0) {
		char *argv[] = { sc, dec, nm, pth, dash, NULL };
		r = hsm_run(argv, -1, "", 0, out, cap, len);
		*why = "systemd-creds decrypt failed (another machine's key, an "
		    "altered file, or not root)";
	} else if (strcmp(c->method, "clevis") == 0) {
		char *argv[] = { cl, dec, NULL };
		char *jwe;
		size_t jl = 0;

		/* the JWE without trailing white space (clevis decrypt of
		 * "JWE\n" prints the secret and exits 1) */
		if ((jwe = malloc(256 * 1024)) == NULL)
			return -1;
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
			while (jl < 256 * 1024 &&
			    (n = read(fd, jwe + jl, 256 * 1024 - jl)) > 0)
				jl += (size_t)n;
			close(fd);
		}
		while (jl > 0 && (jwe[jl - 1] == '\n' || jwe[jl - 1] == '\r' ||
		    jwe[jl - 1] == ' '))
			jl--;
		r = jl > 0 ? hsm_run(argv, -1, jwe, jl, out, cap, len) : -1;
		free(jwe);
		*why = "clevis decrypt failed (Tang server unreachable, wrong "
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
	char nm[128], wk[SEAL_AUTO_MAX + 16], dash[] = "-", sc[] = "systemd-creds";
	char enc[] = "encrypt", cl[] = "clevis", y[] = "-y", pin[64], *cfg;
	uint8_t *out;
	size_t len = 0, pl, cap = 256 * 1024;
	int r = -1;

	if ((out = malloc(cap)) == NULL)
		return -1;
	snprintf(nm, sizeof(nm), "--name=%s", name);
	if (strcmp(c->method, "systemd-creds") == 0) {
		snprintf(wk, sizeof(wk), "--with-key=%s",
		    c->arg[0] != '\0' ? c->arg : "host");
		char *argv[] = { sc, enc, nm, wk, dash, dash, NULL };
		r = hsm_run(argv, -1, in, in_len, out, cap, &len);
		*why = "systemd-creds encrypt failed (run as root; for tpm2 "
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
			*why = "clevis encrypt failed (is the Tang server "
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
	conf_path(path, sizeof(path), hsmdir, file);
	r = auto_decrypt(c, CRED_NAME, path, out, sizeof(out), &len, why);
	if (r == 0 && secret_of(out, len, s) != 0) {
		*why = "the unattended method gave something that is not an "
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
	strcat(hex, "\n");
	snprintf(name, sizeof(name), "%s%s", file, suffix);
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
	strcpy(c->method, "systemd-creds");
	if (seal_conf_read(hsm_dir, SEAL_CONF, &v) == 0 &&
	    strcmp(v.method, "systemd-creds") == 0)
		strcpy(c->arg, v.arg);
	else
		strcpy(c->arg, "host");
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
	EVP_PKEY_CTX *c;
	size_t len = 32;
	int ok;

	if ((c = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL)) == NULL)
		return -1;
	ok = EVP_PKEY_derive_init(c) > 0 &&
	    EVP_PKEY_CTX_set_hkdf_md(c, EVP_sha256()) > 0 &&
	    EVP_PKEY_CTX_set1_hkdf_salt(c, (const unsigned char *)SEAL_SALT,
	    sizeof(SEAL_SALT) - 1) > 0 &&
	    EVP_PKEY_CTX_set1_hkdf_key(c, (const unsigned char *)old_pin,
	    (int)strlen(old_pin)) > 0 &&
	    EVP_PKEY_CTX_add1_hkdf_info(c, (const unsigned char *)"pending",
	    7) > 0 && EVP_PKEY_derive(c, k, &len) > 0 && len == 32;
	EVP_PKEY_CTX_free(c);
	return ok ? 0 : -1;
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
	    n == SEAL_SECRET_LEN && EVP_EncryptFinal_ex(c, b + 12 + n, &n) == 1 &&
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
	uint8_t k[32], b[PENDING_LEN + 1];
	EVP_CIPHER_CTX *c = NULL;
	ssize_t got = 0;
	int fd, n, ok = 0;

	conf_path(path, sizeof(path), hsmdir, PENDING);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return -1;
	got = read(fd, b, sizeof(b));
	close(fd);
	if (got != PENDING_LEN || pending_key(old_pin, k) != 0 ||
	    (c = EVP_CIPHER_CTX_new()) == NULL)
		goto out;
	ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, k, b) == 1 &&
	    EVP_DecryptUpdate(c, s, &n, b + 12, SEAL_SECRET_LEN) == 1 &&
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16,
	    b + 12 + SEAL_SECRET_LEN) == 1 &&
	    EVP_DecryptFinal_ex(c, s + n, &n) == 1;
out:
	EVP_CIPHER_CTX_free(c);
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(b, sizeof(b));
	if (!ok)
		OPENSSL_cleanse(s, SEAL_SECRET_LEN);
	return ok ? 0 : -1;
}

void
seal_pending_clear(const char *hsmdir)
{
	char path[PATH_MAX];

	conf_path(path, sizeof(path), hsmdir, PENDING);
	(void)unlink(path);
}
