/*
 * cli_seal.c — `p11vault unseal` (operator key shares, one at a time, to
 * a running server) and `p11vault rekey` (offline: new shares, the old
 * ones stop working), and the unseal part of `init`: the default
 * unattended method and how the new shares are shown.
 * Must never: echo a share to a log; leave one unwiped.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "api/cli.h"
#include "api/cli_session.h"
#include "api/client.h"
#include "hsm/base.h"
#include "vault/config.h"
#include "vault/vault.h"

#define LINE_MAX_SHARE 256
#define SHARES_MAX 16
#define OLD_SHARES_MAX 4096

/* Prints the usage line; the exit status of a usage error. */
static int
usage_err(const char *msg)
{
	cli_fail_line("%s (see --help)", msg);
	return 2;
}

const char *
cli_seal_default_auto(void)
{
	const char *path = getenv("PATH");
	char one[4096];
	const char *p, *e;
	size_t n;

	if (geteuid() != 0 || path == NULL)
		return "none";
	for (p = path; *p != '\0'; p = e ? e + 1 : p + n) {
		e = strchr(p, ':');
		n = e ? (size_t)(e - p) : strlen(p);
		if (n > 0 &&
		    str_fmt(one, sizeof(one), "%.*s/systemd-creds", (int)n,
		        p) == 0 &&
		    access(one, X_OK) == 0)
			return "systemd-creds:host";
		if (e == NULL)
			break;
	}
	return "none";
}

/* shares (a line each) into a JSON array; wiped when freed (freezero_block
 * is Jansson's free in this program) */
json_t *
cli_seal_shares_json(const char *shares)
{
	json_t *a = json_array();
	const char *p = shares, *e;
	char line[LINE_MAX_SHARE];
	size_t n;

	while (a != NULL && p != NULL && *p != '\0') {
		e = strchr(p, '\n');
		n = e ? (size_t)(e - p) : strlen(p);
		if (n > 0 && n < sizeof(line)) {
			memcpy(line, p, n);
			line[n] = '\0';
			if (json_array_append_new(a, json_string(line)) != 0) {
				json_decref(a);
				a = NULL;
			}
			OPENSSL_cleanse(line, sizeof(line));
		}
		p = e ? e + 1 : NULL;
	}
	return a;
}

void
cli_seal_advice(FILE *f, unsigned m, unsigned n, const char *method)
{
	if (n > 0)
		fprintf(f,
		    "p11vault: the vault's unseal secret is split into %u "
		    "operator key shares, any %u of which unseal it\n"
		    "  (unsealKeyShares above). They are shown this once and "
		    "kept nowhere: give each to a\n"
		    "  different custodian, store them apart from the machine "
		    "and its backups.\n",
		    n, m);
	if (strcmp(method, "none") == 0)
		fprintf(f,
		    "p11vault: no unattended unseal: after every start "
		    "give %u shares with `p11vault unseal`.\n",
		    m);
	else
		fprintf(f,
		    "p11vault: unattended unseal: %s (hsm/unseal.%s "
		    "opens only with it). A copy of the data\n"
		    "  directory alone opens no key. Harden it: "
		    "--auto-unseal systemd-creds:tpm2 (a TPM), or\n"
		    "  clevis:tang (a Tang server elsewhere); see "
		    "docs/operations.md.\n",
		    method, strncmp(method, "clevis", 6) == 0 ? "jwe" : "cred");
	fprintf(f,
	    "p11vault: admin.json is a bootstrap credential: move it "
	    "off this machine, or replace it\n"
	    "  (p11vault identity credential) and delete it.\n");
}

/* a line of stdin, without its newline; -1 at EOF */
static API_WUR int
read_line(char *out, size_t cap)
{
	size_t n;

	if (fgets(out, (int)cap, stdin) == NULL)
		return -1;
	n = strcspn(out, "\r\n");
	out[n] = '\0';
	return 0;
}

static const char *
argval(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc)
		return NULL;
	return argv[++*i];
}

/* The vault URL (vault_url= in DIR/p11vault.conf) and CA of DIR. */
static API_WUR int
from_dir(const char *dir, char *url, size_t ucap, char *ca, size_t ccap)
{
	struct vlt_conf *conf = NULL;
	const char *v;
	char path[4200];
	int rc = -1;

	if (fs_join(path, sizeof(path), dir, "p11vault.conf") == 0 &&
	    conf_read(path, &conf) == 0 &&
	    (v = conf_get(conf, "vault_url")) != NULL &&
	    str_fmt(url, ucap, "%s", v) == 0 &&
	    str_fmt(ca, ccap, "%s/tls/ca.pem", dir) == 0)
		rc = 0;
	conf_free(conf);
	return rc;
}

/* The answer of /sys/seal-status or /sys/unseal, for people. */
static API_WUR int
show_seal_status(int st, const buf_t *resp)
{
	json_t *j = buf_len(resp) > 0 ?
	    json_loadb(buf_str(resp), buf_len(resp), 0, NULL) :
	    NULL,
	       *a;
	int rc = 1;

	if (st == 200 && json_is_object(j)) {
		int sealed = json_is_true(json_object_get(j, "sealed"));
		long long t = json_integer_value(json_object_get(j, "t"));
		long long p = json_integer_value(json_object_get(j,
		    "progress"));

		if (sealed)
			printf("sealed: %lld of %lld key shares given\n", p, t);
		else
			printf("unsealed\n");
		rc = 0;
	} else {
		a = json_object_get(json_object_get(j, "error"), "message");
		cli_fail_line("refused (HTTP %d): %s", st,
		    json_is_string(a) ? json_string_value(a) : "no message");
	}
	json_decref(j);
	return rc;
}

/* The PUT /sys/unseal body: {"reset":true}, or the share read from
 * stdin. NULL after the line. */
static API_WUR char *
unseal_body(int reset)
{
	char share[LINE_MAX_SHARE], *body;
	json_t *j;

	if (reset)
		j = json_pack("{s:b}", "reset", 1);
	else {
		if (isatty(0))
			fprintf(stderr, "Key share (N-HEX): ");
		if (read_line(share, sizeof(share)) != 0) {
			(void)usage_err("no key share on standard input");
			return NULL;
		}
		j = json_pack("{s:s}", "key", share);
		OPENSSL_cleanse(share, sizeof(share));
	}
	body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return body;
}

struct unseal_opts {
	const char *url, *ca, *dir;
	int reset, status_only;
};

/* 0, 1 (help printed), or 2 (usage error printed). */
static API_WUR int
unseal_args(int argc, char **argv, struct unseal_opts *o)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			puts(
			    "usage: p11vault unseal (--data DIR | --vault-url "
			    "URL [--ca FILE]) [--reset | --status]\n"
			    "Gives one operator key share, read from standard "
			    "input, to the running server,\n"
			    "and shows how many are still needed. --reset "
			    "forgets the shares given so far;\n"
			    "--status only shows where the unsealing stands.");
			return 1;
		} else if (strcmp(argv[i], "--data") == 0) {
			o->dir = argval(argc, argv, &i);
		} else if (strcmp(argv[i], "--vault-url") == 0) {
			o->url = argval(argc, argv, &i);
		} else if (strcmp(argv[i], "--ca") == 0) {
			o->ca = argval(argc, argv, &i);
		} else if (strcmp(argv[i], "--reset") == 0) {
			o->reset = 1;
		} else if (strcmp(argv[i], "--status") == 0) {
			o->status_only = 1;
		} else {
			return usage_err("unknown argument");
		}
	}
	return 0;
}

int
cli_unseal(int argc, char **argv)
{
	struct unseal_opts o;
	struct cli_request rq;
	char ubuf[1024], cbuf[4200], err[256], *body = NULL;
	buf_t *resp = NULL;
	int st = 0, rc;

	memset(&o, 0, sizeof(o));
	memset(&rq, 0, sizeof(rq));
	if ((rc = unseal_args(argc, argv, &o)) != 0)
		return rc == 1 ? 0 : rc;
	if (o.dir != NULL && o.url == NULL) {
		if (from_dir(o.dir, ubuf, sizeof(ubuf), cbuf, sizeof(cbuf)) !=
		    0)
			return usage_err("cannot read DIR/p11vault.conf");
		o.url = ubuf;
		if (o.ca == NULL)
			o.ca = cbuf;
	}
	if (o.url == NULL)
		return usage_err("unseal needs --data DIR or --vault-url URL");
	rq.base_url = o.url;
	rq.ca_file = o.ca;
	rq.method = o.status_only ? "GET" : "PUT";
	rq.path = o.status_only ? "/sys/seal-status" : "/sys/unseal";
	if (!o.status_only) {
		if ((body = unseal_body(o.reset)) == NULL)
			return o.reset ? 1 : 2;
		rq.content_type = "application/json";
		rq.body = body;
		rq.body_len = strlen(body);
	}
	rc = cli_https(&rq, &st, &resp, err, sizeof(err));
	freezero_str(body);
	if (rc != 0) {
		cli_fail_line("%s", err);
		return 1;
	}
	rc = show_seal_status(st, resp);
	buf_free(resp);
	return rc;
}

int
cli_serve_lock(const char *dir, int *lock)
{
	struct stat st;
	char path[4200];
	int fd, saved;

	*lock = -1;
	if (fs_join(path, sizeof(path), dir, "serve.lock") != 0) {
		errno = ENAMETOOLONG;
		return VLT_ERR_IO;
	}
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) <
	    0)
		return VLT_ERR_IO;
	/* the data directory's owner's, like every file in it (serve
	 * --user, or a unit that runs as that user, opens it later) */
	if (geteuid() == 0 && stat(dir, &st) == 0)
		(void)!fchown(fd, st.st_uid, st.st_gid);
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return errno == EWOULDBLOCK ? VLT_ERR_CONFLICT : VLT_ERR_IO;
	}
	*lock = fd;
	return 0;
}

struct rekey_opts {
	const char *dir, *au, *sk;
	unsigned n, m;
};

/* A number of key shares (0..SHARES_MAX) for option name; 0, or 2 after
 * the usage line. */
static API_WUR int
share_count(const char *name, const char *v, unsigned *out)
{
	uint64_t n;

	if (v == NULL || parse_u64(v, SHARES_MAX, &n) != 0) {
		cli_fail_line("%s needs a whole number 0..%d (see --help)",
		    name, SHARES_MAX);
		return 2;
	}
	*out = (unsigned)n;
	return 0;
}

/* 0, 1 (help printed), or 2 (usage error printed). */
static API_WUR int
rekey_args(int argc, char **argv, struct rekey_opts *o)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			puts(
			    "usage: p11vault rekey --data DIR [--key-shares N] "
			    "[--key-threshold M]\n"
			    "       [--auto-unseal none|systemd-creds[:KEY]|"
			    "clevis:PIN CONFIG] [--share-keys A.pem,...]\n"
			    "With the server stopped: reads the current key "
			    "shares from standard input (a line\n"
			    "each), makes a new unseal secret, new shares and "
			    "new token PINs; the old shares\n"
			    "open nothing any more. A vault with only an "
			    "unattended method, or with the PIN\n"
			    "files of an old version, needs no share.");
			return 1;
		} else if (strcmp(argv[i], "--data") == 0) {
			o->dir = argval(argc, argv, &i);
		} else if (strcmp(argv[i], "--auto-unseal") == 0) {
			o->au = argval(argc, argv, &i);
		} else if (strcmp(argv[i], "--share-keys") == 0 &&
		    (o->sk = argval(argc, argv, &i)) != NULL) {
			o->n = (unsigned)cli_seal_count_keys(o->sk);
		} else if (strcmp(argv[i], "--key-shares") == 0) {
			if (share_count("--key-shares", argval(argc, argv, &i),
			        &o->n) != 0)
				return 2;
		} else if (strcmp(argv[i], "--key-threshold") == 0) {
			if (share_count("--key-threshold",
			        argval(argc, argv, &i), &o->m) != 0)
				return 2;
		} else {
			return usage_err("unknown argument");
		}
	}
	return 0;
}

/* The current shares from stdin, a line each (at most OLD_SHARES_MAX
 * bytes in all; more are dropped). NULL: out of memory. */
static API_WUR buf_t *
read_old_shares(void)
{
	char line[LINE_MAX_SHARE];
	buf_t *old = buf_new(OLD_SHARES_MAX);

	while (old != NULL && read_line(line, sizeof(line)) == 0) {
		size_t l = strlen(line);

		if (l > 0 &&
		    (buf_len(old) + l + 1 > OLD_SHARES_MAX ||
		        buf_put(old, line, l) != 0 ||
		        buf_put_u8(old, '\n') != 0))
			break;
		OPENSSL_cleanse(line, sizeof(line));
	}
	OPENSSL_cleanse(line, sizeof(line));
	return old;
}

/* The new shares (encrypted to --share-keys when given) as JSON on
 * stdout. */
static API_WUR int
print_new_shares(const struct rekey_opts *o, const char *shares)
{
	const char *sk = o->sk;
	char err[256], *out;
	json_t *sh, *j;

	sh = sk != NULL ? cli_seal_shares_for(shares, sk, err, sizeof(err)) :
	                  cli_seal_shares_json(shares);
	if (sh == NULL && sk != NULL) {
		/* the rekey is done: these shares must not be lost */
		cli_fail_line(
		    "cannot encrypt the new shares (%s); they follow "
		    "in plaintext",
		    err);
		sh = cli_seal_shares_json(shares);
		sk = NULL;
	}
	j = sh != NULL ?
	    json_pack("{s:o, s:i, s:s}",
	        sk != NULL ? "unsealKeySharesEncrypted" : "unsealKeyShares", sh,
	        "unsealThreshold", (int)o->m, "autoUnseal",
	        o->au ? o->au : "unchanged") :
	    NULL;
	out = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	json_decref(j);
	if (out == NULL)
		return 1;
	printf("%s\n", out);
	freezero_str(out);
	return 0;
}

int
cli_rekey(int argc, char **argv)
{
	struct rekey_opts o = { .n = 5, .m = 3 };
	char *shares = NULL;
	buf_t *old;
	int rc, lock; /* held until exit */

	if ((rc = rekey_args(argc, argv, &o)) != 0)
		return rc == 1 ? 0 : rc;
	if (o.dir == NULL)
		return usage_err("rekey needs --data DIR");
	/* held until exit: no serve starts while the PINs change */
	if ((rc = cli_serve_lock(o.dir, &lock)) == VLT_ERR_CONFLICT) {
		cli_fail_line(
		    "a server is running on %s: stop it first (rekey "
		    "changes the token's PINs)",
		    o.dir);
		return 1;
	} else if (rc != 0) {
		cli_fail_line("cannot open %s/serve.lock: %s", o.dir,
		    strerror(errno));
		return 1;
	}
	if (o.n > SHARES_MAX || o.m > o.n || (o.n > 0 && o.m == 0))
		return usage_err(
		    "--key-threshold must be 1..--key-shares, "
		    "--key-shares 0..16");
	if ((old = read_old_shares()) == NULL)
		return 1;
	rc = vault_rekey(o.dir, o.n, o.m, o.au, buf_str(old),
	    getenv("P11VAULT_MODULE_ALLOW"), &shares);
	buf_free(old);
	if (rc != 0) {
		cli_fail_line("rekey refused (error %d): %s", rc,
		    rc == VLT_ERR_BAD_PARAM ?
		        "too few valid key shares of "
		        "this vault, or a bad --auto-unseal" :
		        "see the token "
		        "process's message above");
		return 1;
	}
	rc = print_new_shares(&o, shares);
	freezero_str(shares);
	if (rc != 0)
		return rc;
	fprintf(stderr,
	    "p11vault: rekeyed: the old key shares open nothing "
	    "any more.\n");
	return 0;
}

/* ---- shares for custodians' public keys ---- */

static API_WUR EVP_PKEY *
load_recipient(const char *file)
{
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	FILE *f;

	if ((f = fopen(file, "re")) == NULL)
		return NULL;
	k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	if (k == NULL) {
		rewind(f);
		if ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL)
			k = X509_get_pubkey(x);
		X509_free(x);
	}
	fclose(f);
	if (k != NULL && EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
		EVP_PKEY_free(k);
		k = NULL;
	}
	return k;
}

/* RSA-OAEP (SHA-256, MGF1-SHA-256) of one share line, base64 */
static API_WUR json_t *
encrypt_share(EVP_PKEY *k, const char *line)
{
	unsigned char out[1024], b64[1400];
	size_t olen = sizeof(out);
	EVP_PKEY_CTX *c;
	json_t *j = NULL;
	int ok;

	if ((c = EVP_PKEY_CTX_new(k, NULL)) == NULL)
		return NULL;
	ok = EVP_PKEY_encrypt_init(c) > 0 &&
	    EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) > 0 &&
	    EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha256()) > 0 &&
	    EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha256()) > 0 &&
	    EVP_PKEY_encrypt(c, out, &olen, (const unsigned char *)line,
	        strlen(line)) > 0 &&
	    olen <= sizeof(out);
	EVP_PKEY_CTX_free(c);
	if (ok && EVP_EncodeBlock(b64, out, (int)olen) > 0)
		j = json_string((const char *)b64);
	return j;
}

int
cli_seal_count_keys(const char *list)
{
	int n = 1;

	if (list == NULL || *list == '\0')
		return 0;
	for (; *list != '\0'; list++)
		n += *list == ',';
	return n;
}

json_t *
cli_seal_shares_for(const char *shares, const char *list, char *err,
    size_t err_len)
{
	char files[4096], *save = NULL, *file, line[LINE_MAX_SHARE];
	const char *p = shares, *e;
	json_t *a = json_array(), *one;
	EVP_PKEY *k;
	size_t n;

	if (str_fmt(files, sizeof(files), "%s", list) != 0) {
		err_set(err, err_len, "--share-keys is too long");
		goto fail;
	}
	for (file = strtok_r(files, ",", &save); a != NULL && file != NULL;
	     file = strtok_r(NULL, ",", &save)) {
		e = p ? strchr(p, '\n') : NULL;
		n = e ? (size_t)(e - p) : 0;
		if (n == 0 || n >= sizeof(line)) {
			err_set(err, err_len,
			    "fewer shares than "
			    "--share-keys");
			goto fail;
		}
		memcpy(line, p, n);
		line[n] = '\0';
		p = e + 1;
		if ((k = load_recipient(file)) == NULL) {
			err_set(err, err_len,
			    "%.128s: not an RSA public "
			    "key or certificate (PEM)",
			    file);
			OPENSSL_cleanse(line, sizeof(line));
			goto fail;
		}
		one = encrypt_share(k, line);
		EVP_PKEY_free(k);
		OPENSSL_cleanse(line, sizeof(line));
		if (one == NULL) {
			err_set(err, err_len,
			    "%.128s: cannot encrypt to "
			    "it",
			    file);
			goto fail;
		}
		if (json_array_append_new(a,
		        json_pack("{s:s, s:o}", "recipient", file, "share",
		            one)) != 0) {
			err_set(err, err_len, "out of memory");
			goto fail;
		}
	}
	return a;
fail:
	json_decref(a);
	return NULL;
}
