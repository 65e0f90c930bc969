/*
 * hsm/tokseal.c — what the token process does with the unseal secret S at
 * boot, at init and at rekey (see seal.h). Runs only in the token process,
 * before its seccomp filter (it starts systemd-creds or clevis).
 * Must never: log or return S, a PIN or a share except the new shares of
 * init and rekey, which go to the operator once.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "hsm/base.h"
#include "hsm/buf.h"
#include "hsm/harden.h"
#include "hsm/proto.h"
#include "hsm/seal.h"
#include "hsm/token.h"

#define CONF_NEW SEAL_CONF ".new"

void
tseal_log(const char *level, const char *event, const char *msg)
{
	fprintf(stderr,
	    "{\"level\":\"%s\",\"event\":\"%s\",\"msg\":\"%s\","
	    "\"process\":\"token\"}\n",
	    level, event, msg);
}

/* A PIN file of the PIN-file era into out[cap], without its newline:
 * 0, or -1 (unreadable, empty or too long). */
static int
read_pin_file(const char *path, char *out, size_t cap)
{
	buf_t *b = NULL;
	size_t len;
	int r = -1;

	if (file_read(path, cap - 1, &b) != 0)
		return -1;
	len = buf_len(b);
	while (len > 0 &&
	    (buf_str(b)[len - 1] == '\n' || buf_str(b)[len - 1] == '\r'))
		len--;
	if (len > 0) {
		memcpy(out, buf_ptr(b), len);
		out[len] = '\0';
		r = 0;
	}
	buf_free(b);
	return r;
}


/* "" or "none": no method; "systemd-creds[:KEY]"; "clevis:PIN CFG" */
static int
parse_auto(const char *a, struct seal_conf *c)
{
	const char *colon = strchr(a, ':');
	size_t ml = colon ? (size_t)(colon - a) : strlen(a);

	c->method[0] = c->arg[0] = '\0';
	if (*a == '\0' || strcmp(a, "none") == 0)
		return 0;
	if (ml == 13 && strncmp(a, "systemd-creds", 13) == 0) {
		memcpy(c->method, "systemd-creds", sizeof("systemd-creds"));
		if (str_fmt(c->arg, sizeof(c->arg), "%s",
		        colon != NULL && colon[1] != '\0' ? colon + 1 :
		                                            "host") != 0)
			return -1;
		return strspn(c->arg, "abcdefghijklmnopqrstuvwxyz0234+") ==
		        strlen(c->arg) ?
		    0 :
		    -1;
	}
	if (ml == 6 && strncmp(a, "clevis", 6) == 0 && colon != NULL &&
	    strlen(colon + 1) < sizeof(c->arg) && strchr(colon + 1, ' ')) {
		memcpy(c->method, "clevis", sizeof("clevis"));
		memcpy(c->arg, colon + 1, strlen(colon + 1) + 1);
		return strchr(c->arg, '\n') == NULL ? 0 : -1;
	}
	return -1;
}

/* PINs of S */
static int
pins_of(const uint8_t s[SEAL_SECRET_LEN], char user[SEAL_PIN_LEN + 1],
    char so[SEAL_PIN_LEN + 1])
{
	return seal_pin(s, "user", user) == 0 && seal_pin(s, "so", so) == 0 ?
	    0 :
	    -1;
}

static void
shred_pin_files(const char *hsmdir)
{
	char p[PATH_MAX];

	if (seal_path(p, sizeof(p), hsmdir, "user.pin") == 0)
		hsm_shred(p);
	if (seal_path(p, sizeof(p), hsmdir, "so.pin") == 0)
		hsm_shred(p);
}

/* The PIN-file era into a sealed vault (S under systemd-creds, host
 * key, no shares yet). Idempotent: an interrupted move is resumed from
 * seal.conf.new. 0 with s set, or -1 (nothing changed that matters: the
 * PIN files still open the token). */
static int
migrate(const char *hsmdir, const char *module, const char *label,
    struct seal_conf *c, uint8_t s[SEAL_SECRET_LEN])
{
	char p[PATH_MAX], q[PATH_MAX], ou[TOKP_PIN_MAX + 1];
	char os[TOKP_PIN_MAX + 1], nu[SEAL_PIN_LEN + 1], ns[SEAL_PIN_LEN + 1];
	const char *why = NULL;
	int r = -1, rc;

	if (seal_path(p, sizeof(p), hsmdir, "user.pin") != 0 ||
	    seal_path(q, sizeof(q), hsmdir, "so.pin") != 0 ||
	    read_pin_file(p, ou, sizeof(ou)) != 0 ||
	    read_pin_file(q, os, sizeof(os)) != 0)
		goto out;
	if (seal_conf_read(hsmdir, CONF_NEW, c) == 0) {
		if (seal_auto_unseal(hsmdir, c, s, &why) != 0)
			goto out;
	} else {
		memset(c, 0, sizeof(*c));
		(void)parse_auto("systemd-creds:host", c);
		if (seal_new_secret(s) != 0 ||
		    seal_check_value(s, c->check) != 0)
			goto out;
		if (seal_auto_seal(hsmdir, c, s, "", &why) != 0 ||
		    seal_conf_write(hsmdir, CONF_NEW, c) != 0)
			goto out;
	}
	if (pins_of(s, nu, ns) != 0)
		goto out;
	if ((rc = tok_change_pins(module, label, ou, nu, os, ns)) != 0) {
		why = "the token refused the PIN change";
		goto out;
	}
	if (seal_path(p, sizeof(p), hsmdir, CONF_NEW) != 0 ||
	    seal_path(q, sizeof(q), hsmdir, SEAL_CONF) != 0 ||
	    rename(p, q) != 0)
		goto out;
	shred_pin_files(hsmdir);
	tseal_log("warning", "seal_migrated",
	    "the PIN files are gone: the "
	    "token's PINs now derive from an unseal secret kept with "
	    "systemd-creds (host key); run p11vault rekey to make operator "
	    "key shares");
	r = 0;
out:
	if (r != 0) {
		OPENSSL_cleanse(s, SEAL_SECRET_LEN);
		if (why != NULL)
			tseal_log("warning", "seal_migration_failed", why);
	}
	OPENSSL_cleanse(ou, sizeof(ou));
	OPENSSL_cleanse(os, sizeof(os));
	OPENSSL_cleanse(nu, sizeof(nu));
	OPENSSL_cleanse(ns, sizeof(ns));
	return r;
}

int
tseal_boot(const char *hsmdir, const char *module, const char *label,
    struct seal_conf *c, int *have_conf, uint8_t s[SEAL_SECRET_LEN],
    int *have_s, char *legacy_pin, size_t pin_cap, int *legacy)
{
	char p[PATH_MAX];
	const char *why;
	int r;

	*have_conf = *have_s = *legacy = 0;
	r = seal_conf_read(hsmdir, SEAL_CONF, c);
	if (r == -2) {
		tseal_log("error", "seal_conf_malformed",
		    "hsm/seal.conf is "
		    "malformed: the vault stays sealed");
		return HSM_ERR_UNAVAILABLE;
	}
	if (r == 0) {
		*have_conf = 1;
		if (c->method[0] == '\0')
			return 0;
		if (seal_auto_unseal(hsmdir, c, s, &why) == 0) {
			*have_s = 1;
			return 0;
		}
		tseal_log("error", "auto_unseal_failed", why);
		return 0;
	}
	if (seal_path(p, sizeof(p), hsmdir, "user.pin") != 0 ||
	    access(p, F_OK) != 0) {
		tseal_log("error", "pin_unreadable",
		    "hsm/seal.conf is "
		    "missing and no PIN file either: nothing can unseal this "
		    "vault");
		return HSM_ERR_UNAVAILABLE;
	}
	if (getenv("P11VAULT_NO_SEAL_MIGRATION") == NULL &&
	    migrate(hsmdir, module, label, c, s) == 0) {
		*have_conf = *have_s = 1;
		return 0;
	}
	memset(c, 0, sizeof(*c));
	if (read_pin_file(p, legacy_pin, pin_cap) != 0) {
		tseal_log("error", "pin_unreadable",
		    "the token process cannot "
		    "read the user PIN file");
		return HSM_ERR_UNAVAILABLE;
	}
	tseal_log("warning", "pin_files_in_use",
	    "the token's PINs rest in "
	    "plaintext in hsm/user.pin and hsm/so.pin: run p11vault rekey "
	    "(server stopped) to seal the vault");
	*legacy = 1;
	return 0;
}

/* a new S under c's method, split m-of-n; c's check, hashes set */
static int
new_secret(const char *hsmdir, struct seal_conf *c, unsigned m, unsigned n,
    const char *suffix, uint8_t s[SEAL_SECRET_LEN], char **text,
    size_t *text_len)
{
	const char *why;

	if ((n == 0 && c->method[0] == '\0') || n > SEAL_SHARES_MAX || m > n ||
	    (n > 0 && m == 0))
		return HSM_ERR_ARGS;
	if (seal_new_secret(s) != 0 || seal_check_value(s, c->check) != 0 ||
	    seal_split(s, m, n, c, text, text_len) != 0)
		return HSM_ERR_INTERNAL;
	if (c->method[0] != '\0' &&
	    seal_auto_seal(hsmdir, c, s, suffix, &why) != 0) {
		tseal_log("error", "auto_seal_failed", why);
		freezero(*text, *text_len);
		*text = NULL;
		return HSM_ERR_UNAVAILABLE;
	}
	return 0;
}

int
tseal_init(const char *module, const char *label, const char *hsmdir,
    unsigned m, unsigned n, const char *auto_method, int node, char **text,
    size_t *text_len)
{
	struct seal_conf c;
	uint8_t s[SEAL_SECRET_LEN];
	char user[SEAL_PIN_LEN + 1], so[SEAL_PIN_LEN + 1];
	int rc;

	*text = NULL;
	memset(&c, 0, sizeof(c));
	if (parse_auto(auto_method, &c) != 0)
		return HSM_ERR_ARGS;
	if ((rc = new_secret(hsmdir, &c, m, n, "", s, text, text_len)) != 0)
		goto out;
	if (pins_of(s, user, so) != 0) {
		rc = HSM_ERR_INTERNAL;
		goto out;
	}
	if ((rc = tok_token_init_kind(module, label, so, user, node)) != 0)
		goto out;
	if (seal_conf_write(hsmdir, SEAL_CONF, &c) != 0)
		rc = HSM_ERR_UNAVAILABLE;
out:
	if (rc != 0 && *text != NULL) {
		freezero(*text, *text_len);
		*text = NULL;
	}
	OPENSSL_cleanse(s, sizeof(s));
	OPENSSL_cleanse(user, sizeof(user));
	OPENSSL_cleanse(so, sizeof(so));
	return rc;
}

/* The current PINs: from shares, the unattended method, or PIN files. */
static int
current_pins(const char *hsmdir, const struct seal_conf *c, int have_conf,
    const char *old_shares, char *user, char *so, size_t cap)
{
	struct seal_collect *col;
	uint8_t s[SEAL_SECRET_LEN];
	char p[PATH_MAX], line[TOKP_SHARE_MAX + 1];
	const char *q = old_shares, *e, *why;
	size_t l;
	int rc = HSM_ERR_ARGS;

	if (!have_conf) {
		if (seal_path(p, sizeof(p), hsmdir, "user.pin") != 0 ||
		    read_pin_file(p, user, cap) != 0 ||
		    seal_path(p, sizeof(p), hsmdir, "so.pin") != 0)
			return HSM_ERR_UNAVAILABLE;
		return read_pin_file(p, so, cap) == 0 ? 0 : HSM_ERR_UNAVAILABLE;
	}
	if (c->shares == 0) {
		if (seal_auto_unseal(hsmdir, c, s, &why) != 0) {
			tseal_log("error", "auto_unseal_failed", why);
			return HSM_ERR_UNAVAILABLE;
		}
	} else {
		if ((col = calloc(1, sizeof(*col))) == NULL)
			return HSM_ERR_NO_MEMORY;
		while (*q != '\0') {
			e = strchr(q, '\n');
			l = e ? (size_t)(e - q) : strlen(q);
			if (l > 0 && l < sizeof(line)) {
				memcpy(line, q, l);
				line[l] = '\0';
				if (seal_offer(c, col, line) ==
				    SEAL_SHARE_UNKNOWN) {
					tseal_log("error",
					    "unseal_share_refused",
					    "a share given is not one of this "
					    "vault's");
				}
				OPENSSL_cleanse(line, sizeof(line));
			}
			q = e ? e + 1 : q + l;
		}
		rc = seal_combine(c, col, s);
		OPENSSL_cleanse(col, sizeof(*col));
		free(col);
		if (rc != 0) {
			tseal_log("error", "rekey_refused",
			    "too few valid "
			    "shares of this vault were given");
			return HSM_ERR_ARGS;
		}
	}
	rc = cap > SEAL_PIN_LEN && pins_of(s, user, so) == 0 ? 0 :
	                                                       HSM_ERR_INTERNAL;
	OPENSSL_cleanse(s, sizeof(s));
	return rc;
}

int
tseal_pins(const char *hsmdir, const char *shares, char *user, char *so,
    size_t cap)
{
	struct seal_conf c;
	int rc;

	rc = seal_conf_read(hsmdir, SEAL_CONF, &c);
	if (rc == -2)
		return HSM_ERR_UNAVAILABLE;
	return current_pins(hsmdir, &c, rc == 0, shares, user, so, cap);
}

/* The rekey's files, once the token takes the new PINs: the new
 * credential, the new seal.conf, and nothing of the old (its credential
 * of another method, PIN files); seal.pending goes last. */
static int
commit_rekey(const char *hsmdir, const struct seal_conf *old, int have_old,
    const struct seal_conf *nc)
{
	char p[PATH_MAX], q[PATH_MAX + 8];
	const char *oldf, *newf;

	oldf = have_old ? seal_auto_file(old) : NULL;
	newf = seal_auto_file(nc);
	if (newf != NULL) {
		if (seal_path(p, sizeof(p), hsmdir, newf) != 0 ||
		    str_fmt(q, sizeof(q), "%s.new", p) != 0)
			return HSM_ERR_UNAVAILABLE;
		if (access(q, F_OK) == 0 && rename(q, p) != 0)
			return HSM_ERR_UNAVAILABLE;
	}
	if (oldf != NULL && (newf == NULL || strcmp(oldf, newf) != 0)) {
		if (seal_path(p, sizeof(p), hsmdir, oldf) == 0)
			hsm_shred(p);
	}
	if (seal_path(p, sizeof(p), hsmdir, CONF_NEW) != 0 ||
	    seal_path(q, sizeof(q), hsmdir, SEAL_CONF) != 0 ||
	    rename(p, q) != 0)
		return HSM_ERR_UNAVAILABLE;
	if (hsm_sync_dir(hsmdir) != 0)
		tseal_log("warning", "rekey_not_synced",
		    "the data directory "
		    "could not be synced after the rekey's renames");
	shred_pin_files(hsmdir);
	seal_pending_clear(hsmdir);
	return 0;
}

int
tseal_rollback(const char *hsmdir, const char *module, const char *label,
    const char *old_pin, const char *old_so)
{
	struct seal_conf nc;
	uint8_t s[SEAL_SECRET_LEN];
	char nu[SEAL_PIN_LEN + 1], ns[SEAL_PIN_LEN + 1], p[PATH_MAX];
	char so[TOKP_PIN_MAX + 1], q[PATH_MAX + 8];
	const char *newf;
	int rc = -1;

	memset(so, 0, sizeof(so));
	if (seal_pending_read(hsmdir, old_pin, s) != 0)
		return -1;
	if (seal_conf_read(hsmdir, CONF_NEW, &nc) != 0 ||
	    seal_check(&nc, s) != 0 || pins_of(s, nu, ns) != 0)
		goto out;
	if (old_so != NULL) {
		if (str_fmt(so, sizeof(so), "%s", old_so) != 0)
			goto out;
	} else {
		if (seal_path(p, sizeof(p), hsmdir, "so.pin") != 0 ||
		    read_pin_file(p, so, sizeof(so)) != 0)
			goto out;
	}
	/* the new shares were never shown: back to the old PINs (whichever
	 * of the two the interruption left new) */
	if (tok_change_pins(module, label, nu, old_pin, ns, so) != 0)
		goto out;
	if ((newf = seal_auto_file(&nc)) != NULL) {
		if (seal_path(p, sizeof(p), hsmdir, newf) == 0 &&
		    str_fmt(q, sizeof(q), "%s.new", p) == 0)
			(void)unlink(q);
	}
	if (seal_path(p, sizeof(p), hsmdir, CONF_NEW) == 0)
		(void)unlink(p);
	seal_pending_clear(hsmdir);
	tseal_log("warning", "rekey_rolled_back",
	    "an interrupted rekey was "
	    "undone: the vault opens with its previous key shares and "
	    "method; run p11vault rekey again");
	rc = 0;
out:
	OPENSSL_cleanse(s, sizeof(s));
	OPENSSL_cleanse(nu, sizeof(nu));
	OPENSSL_cleanse(ns, sizeof(ns));
	OPENSSL_cleanse(so, sizeof(so));
	return rc;
}

int
tseal_rekey(const char *module, const char *label, const char *hsmdir,
    unsigned m, unsigned n, const char *auto_method, const char *old_shares,
    char **text, size_t *text_len)
{
	struct seal_conf c, nc;
	uint8_t s[SEAL_SECRET_LEN];
	char ou[TOKP_PIN_MAX + 1], os[TOKP_PIN_MAX + 1];
	char nu[SEAL_PIN_LEN + 1], ns[SEAL_PIN_LEN + 1];
	int have_conf, rc;

	*text = NULL;
	memset(&nc, 0, sizeof(nc));
	rc = seal_conf_read(hsmdir, SEAL_CONF, &c);
	if (rc == -2)
		return HSM_ERR_UNAVAILABLE;
	have_conf = rc == 0;
	if (*auto_method == '\0') {
		if (have_conf) {
			memcpy(nc.method, c.method, sizeof(nc.method));
			memcpy(nc.arg, c.arg, sizeof(nc.arg));
		}
	} else if (parse_auto(auto_method, &nc) != 0) {
		return HSM_ERR_ARGS;
	}
	if ((rc = current_pins(hsmdir, &c, have_conf, old_shares, ou, os,
	         sizeof(ou))) != 0)
		goto out;
	/* a rekey interrupted before: undo it first (nothing if none) */
	if (tseal_rollback(hsmdir, module, label, ou, os) == 0)
		tseal_log("info", "rekey",
		    "the interrupted rekey before this "
		    "one was undone first");
	if ((rc = new_secret(hsmdir, &nc, m, n, ".new", s, text, text_len)) !=
	    0)
		goto out;
	if (seal_conf_write(hsmdir, CONF_NEW, &nc) != 0 ||
	    pins_of(s, nu, ns) != 0) {
		rc = HSM_ERR_UNAVAILABLE;
		goto out;
	}
	/* an interruption from here on is undone at the next unseal with
	 * the old shares or method (tseal_rollback): the new shares are
	 * shown only once the rekey is committed */
	if (seal_pending_write(hsmdir, ou, s) != 0) {
		rc = HSM_ERR_UNAVAILABLE;
		goto out;
	}
	if ((rc = tok_change_pins(module, label, ou, nu, os, ns)) != 0)
		goto out;
	if (getenv("P11VAULT_INSECURE_TEST_REKEY_CRASH") != NULL)
		_exit(9); /* tests: a crash between the PINs and the commit */
	/* from here the new S opens the token: commit the new files */
	rc = commit_rekey(hsmdir, &c, have_conf, &nc);
out:
	if (rc != 0 && *text != NULL) {
		freezero(*text, *text_len);
		*text = NULL;
	}
	OPENSSL_cleanse(s, sizeof(s));
	OPENSSL_cleanse(ou, sizeof(ou));
	OPENSSL_cleanse(os, sizeof(os));
	OPENSSL_cleanse(nu, sizeof(nu));
	OPENSSL_cleanse(ns, sizeof(ns));
	return rc;
}
