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

#include "api/api.h"
#include "vault/vault.h"

#define LINE_MAX_SHARE 256

static int
usage_err(const char *msg)
{
	fprintf(stderr, "p11vault: %s (see --help)\n", msg);
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
		if (n > 0 && n + 16 < sizeof(one)) {
			snprintf(one, sizeof(one), "%.*s/systemd-creds", (int)n,
			    p);
			if (access(one, X_OK) == 0)
				return "systemd-creds:host";
		}
		if (e == NULL)
			break;
	}
	return "none";
}

/* shares (a line each) into a JSON array; wiped when freed (api_wipe_free
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
			json_array_append_new(a, json_string(line));
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
		fprintf(f, "p11vault: the vault's unseal secret is split into %u "
		    "operator key shares, any %u of which unseal it\n"
		    "  (unsealKeyShares above). They are shown this once and "
		    "kept nowhere: give each to a\n"
		    "  different custodian, store them apart from the machine "
		    "and its backups.\n", n, m);
	if (strcmp(method, "none") == 0)
		fprintf(f, "p11vault: no unattended unseal: after every start "
		    "give %u shares with `p11vault unseal`.\n", m);
	else
		fprintf(f, "p11vault: unattended unseal: %s (hsm/unseal.%s "
		    "opens only with it). A copy of the data\n"
		    "  directory alone opens no key. Harden it: "
		    "--auto-unseal systemd-creds:tpm2 (a TPM), or\n"
		    "  clevis:tang (a Tang server elsewhere); see "
		    "docs/operations.md.\n", method,
		    strncmp(method, "clevis", 6) == 0 ? "jwe" : "cred");
	fprintf(f, "p11vault: admin.json is a bootstrap credential: move it "
	    "off this machine, or replace it\n"
	    "  (p11vault identity credential) and delete it.\n");
}

/* a line of stdin, without its newline; -1 at EOF */
static int
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

/* vault URL and CA from DIR */
static int
from_dir(const char *dir, char *url, size_t ucap, char *ca, size_t ccap)
{
	char path[4200], line[1024];
	FILE *f;
	int ok = 0;

	snprintf(path, sizeof(path), "%s/p11vault.conf", dir);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "vault_url=", 10) == 0) {
			line[strcspn(line, "\r\n")] = '\0';
			snprintf(url, ucap, "%s", line + 10);
			ok = 1;
		}
	fclose(f);
	snprintf(ca, ccap, "%s/tls/ca.pem", dir);
	return ok ? 0 : -1;
}

int
cli_unseal(int argc, char **argv)
{
	const char *url = NULL, *ca = NULL, *dir = NULL;
	char ubuf[1024], cbuf[4200], share[LINE_MAX_SHARE], err[256];
	char *resp = NULL, *body = NULL;
	int i, reset = 0, status_only = 0, st = 0, rc = 1;
	size_t rlen = 0;
	json_t *j = NULL, *a;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			puts("usage: p11vault unseal (--data DIR | --vault-url "
			    "URL [--ca FILE]) [--reset | --status]\n"
			    "Gives one operator key share, read from standard "
			    "input, to the running server,\n"
			    "and shows how many are still needed. --reset "
			    "forgets the shares given so far;\n"
			    "--status only shows where the unsealing stands.");
			return 0;
		} else if (strcmp(argv[i], "--data") == 0) {
			dir = argval(argc, argv, &i);
		} else if (strcmp(argv[i], "--vault-url") == 0) {
			url = argval(argc, argv, &i);
		} else if (strcmp(argv[i], "--ca") == 0) {
			ca = argval(argc, argv, &i);
		} else if (strcmp(argv[i], "--reset") == 0) {
			reset = 1;
		} else if (strcmp(argv[i], "--status") == 0) {
			status_only = 1;
		} else {
			return usage_err("unknown argument");
		}
	}
	if (dir != NULL && url == NULL) {
		if (from_dir(dir, ubuf, sizeof(ubuf), cbuf, sizeof(cbuf)) != 0)
			return usage_err("cannot read DIR/p11vault.conf");
		url = ubuf;
		if (ca == NULL)
			ca = cbuf;
	}
	if (url == NULL)
		return usage_err("unseal needs --data DIR or --vault-url URL");
	if (status_only) {
		if (cli_https(url, ca, "GET", "/sys/seal-status", NULL, NULL,
		    NULL, 0, &st, &resp, &rlen, err, sizeof(err)) != 0) {
			fprintf(stderr, "p11vault: %s\n", err);
			return 1;
		}
	} else {
		if (reset) {
			j = json_pack("{s:b}", "reset", 1);
		} else {
			if (isatty(0))
				fprintf(stderr, "Key share (N-HEX): ");
			if (read_line(share, sizeof(share)) != 0)
				return usage_err("no key share on standard input");
			j = json_pack("{s:s}", "key", share);
			OPENSSL_cleanse(share, sizeof(share));
		}
		body = j ? json_dumps(j, JSON_COMPACT) : NULL;
		json_decref(j);
		j = NULL;
		if (body == NULL)
			return 1;
		i = cli_https(url, ca, "PUT", "/sys/unseal", NULL,
		    "application/json", body, strlen(body), &st, &resp, &rlen,
		    err, sizeof(err));
		OPENSSL_cleanse(body, strlen(body));
		free(body);
		if (i != 0) {
			fprintf(stderr, "p11vault: %s\n", err);
			return 1;
		}
	}
	j = resp ? json_loadb(resp, rlen, 0, NULL) : NULL;
	if (st == 200 && json_is_object(j)) {
		int sealed = json_is_true(json_object_get(j, "sealed"));
		long long t = json_integer_value(json_object_get(j, "t"));
		long long p = json_integer_value(json_object_get(j, "progress"));

		if (sealed)
			printf("sealed: %lld of %lld key shares given\n", p, t);
		else
			printf("unsealed\n");
		rc = 0;
	} else {
		a = json_object_get(json_object_get(j, "error"), "message");
		fprintf(stderr, "p11vault: refused (HTTP %d): %s\n", st,
		    json_is_string(a) ? json_string_value(a) : "no message");
	}
	json_decref(j);
	free(resp);
	return rc;
}


int
cli_serve_lock(const char *dir)
{
	char path[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/serve.lock", dir);
	struct stat st;

	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	    0600)) < 0)
		return -2;
	/* the data directory's owner's, like every file in it (serve
	 * --user, or a unit that runs as that user, opens it later) */
	if (geteuid() == 0 && stat(dir, &st) == 0)
		(void)!fchown(fd, st.st_uid, st.st_gid);
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int
cli_rekey(int argc, char **argv)
{
	const char *dir = NULL, *au = NULL, *sk = NULL, *v;
	unsigned n = 5, m = 3;
	char line[LINE_MAX_SHARE], *old = NULL, *shares = NULL, *out;
	size_t olen = 0, cap = 4096;
	json_t *j;
	int i, rc;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			puts("usage: p11vault rekey --data DIR [--key-shares N] "
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
			return 0;
		} else if (strcmp(argv[i], "--data") == 0) {
			dir = argval(argc, argv, &i);
		} else if (strcmp(argv[i], "--auto-unseal") == 0) {
			au = argval(argc, argv, &i);
		} else if (strcmp(argv[i], "--share-keys") == 0 &&
		    (v = argval(argc, argv, &i)) != NULL) {
			sk = v;
			n = (unsigned)cli_seal_count_keys(v);
		} else if (strcmp(argv[i], "--key-shares") == 0 &&
		    (v = argval(argc, argv, &i)) != NULL) {
			n = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(argv[i], "--key-threshold") == 0 &&
		    (v = argval(argc, argv, &i)) != NULL) {
			m = (unsigned)strtoul(v, NULL, 10);
		} else {
			return usage_err("unknown argument");
		}
	}
	if (dir == NULL)
		return usage_err("rekey needs --data DIR");
	/* held until exit: no serve starts while the PINs change */
	if (cli_serve_lock(dir) == -1) {
		fprintf(stderr, "p11vault: a server is running on %s: stop it "
		    "first (rekey changes the token's PINs)\n", dir);
		return 1;
	}
	if (n > 16 || m > n || (n > 0 && m == 0))
		return usage_err("--key-threshold must be 1..--key-shares, "
		    "--key-shares 0..16");
	if ((old = calloc(1, cap)) == NULL)
		return 1;
	while (read_line(line, sizeof(line)) == 0) {
		size_t l = strlen(line);
		if (l == 0)
			continue;
		if (olen + l + 2 > cap)
			break;
		memcpy(old + olen, line, l);
		olen += l;
		old[olen++] = '\n';
		OPENSSL_cleanse(line, sizeof(line));
	}
	rc = vault_rekey(dir, n, m, au, old, getenv("P11VAULT_MODULE_ALLOW"),
	    &shares);
	OPENSSL_cleanse(old, cap);
	free(old);
	if (rc != 0) {
		fprintf(stderr, "p11vault: rekey refused (error %d): %s\n", rc,
		    rc == VLT_ERR_BAD_PARAM ? "too few valid key shares of "
		    "this vault, or a bad --auto-unseal" : "see the token "
		    "process's message above");
		return 1;
	}
	{
		char err[256];
		json_t *sh = sk != NULL ? cli_seal_shares_for(shares, sk, err,
		    sizeof(err)) : cli_seal_shares_json(shares);

		if (sh == NULL) {
			/* the rekey is done: these shares must not be lost */
			fprintf(stderr, "p11vault: cannot encrypt the new shares "
			    "(%s); they follow in plaintext\n", err);
			sh = cli_seal_shares_json(shares);
			sk = NULL;
		}
		j = json_pack("{s:o, s:i, s:s}", sk != NULL ?
		    "unsealKeySharesEncrypted" : "unsealKeyShares", sh,
		    "unsealThreshold", (int)m, "autoUnseal", au ? au :
		    "unchanged");
	}
	OPENSSL_cleanse(shares, strlen(shares));
	free(shares);
	out = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	json_decref(j);
	if (out == NULL)
		return 1;
	printf("%s\n", out);
	OPENSSL_cleanse(out, strlen(out));
	free(out);
	fprintf(stderr, "p11vault: rekeyed: the old key shares open nothing "
	    "any more.\n");
	return 0;
}

/* ---- shares for custodians' public keys ---- */

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

static EVP_PKEY *
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
static json_t *
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
	    strlen(line)) > 0 && olen <= sizeof(out);
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

	snprintf(files, sizeof(files), "%s", list);
	for (file = strtok_r(files, ",", &save); a != NULL && file != NULL;
	    file = strtok_r(NULL, ",", &save)) {
		e = p ? strchr(p, '\n') : NULL;
		n = e ? (size_t)(e - p) : 0;
		if (n == 0 || n >= sizeof(line)) {
			snprintf(err, err_len, "fewer shares than --share-keys");
			goto fail;
		}
		memcpy(line, p, n);
		line[n] = '\0';
		p = e + 1;
		if ((k = load_recipient(file)) == NULL) {
			snprintf(err, err_len, "%s: not an RSA public key or "
			    "certificate (PEM)", file);
			OPENSSL_cleanse(line, sizeof(line));
			goto fail;
		}
		one = encrypt_share(k, line);
		EVP_PKEY_free(k);
		OPENSSL_cleanse(line, sizeof(line));
		if (one == NULL) {
			snprintf(err, err_len, "%s: cannot encrypt to it", file);
			goto fail;
		}
		json_array_append_new(a, json_pack("{s:s, s:o}", "recipient",
		    file, "share", one));
	}
	return a;
fail:
	json_decref(a);
	return NULL;
}
