/*
 * hsm/seal.h — the unseal secret, on the token side only (tokend.c).
 *
 * The token's PINs rest nowhere. Both derive from one 32-byte unseal
 * secret S (HKDF-SHA-256): the user PIN and the SO PIN are never stored,
 * S neither. What DIR/hsm holds:
 *
 *	seal.conf    threshold M and count N of the operator key shares,
 *	             SHA-256 of each share (so a wrong share is refused at
 *	             once), an HMAC of S (so a wrong S is refused before any
 *	             login), and the unattended method, if any;
 *	unseal.cred  S encrypted by systemd-creds (host key, TPM2 or both), or
 *	unseal.jwe   S encrypted by Clevis (tang, tpm2, sss).
 *
 * S comes back from M of the N shares (Shamir over GF(256), libgfshare),
 * or unattended from the credential. Share text: "<nr>-<64 hex>", nr
 * 1..255.
 *
 * Must never: write S, a share or a PIN to a file or a log; leave one
 * unwiped.
 */
#ifndef P11VAULT_HSM_SEAL_H
#define P11VAULT_HSM_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "hsm/hsm.h"

#define SEAL_SECRET_LEN 32
#define SEAL_PIN_LEN 64 /* hex of 32 derived bytes */
#define SEAL_SHARES_MAX 16
#define SEAL_SHARE_TEXT 72 /* "255-" + 64 hex + NUL, rounded */
#define SEAL_CONF "seal.conf"
#define SEAL_AUTO_MAX 1024 /* the method's argument */

struct seal_conf {
	unsigned threshold, shares; /* 0, 0: no operator shares */
	uint8_t check[32];
	uint8_t share_nr[SEAL_SHARES_MAX];
	uint8_t share_hash[SEAL_SHARES_MAX][32];
	char method[16];         /* "", "systemd-creds", "clevis" */
	char arg[SEAL_AUTO_MAX]; /* --with-key=…, or pin + config */
};

/* Shares collected by a running token process, in a locked page. */
struct seal_collect {
	unsigned count;
	uint8_t nr[SEAL_SHARES_MAX];
	uint8_t body[SEAL_SHARES_MAX][SEAL_SECRET_LEN];
};

/* 0, -1 (absent: errno ENOENT) or -2 (malformed). */
int seal_conf_read(const char *hsmdir, const char *name,
    struct seal_conf *c) HSM_WUR;
/* Writes DIR/hsm/name atomically (temporary file, fsync, rename). */
int seal_conf_write(const char *hsmdir, const char *name,
    const struct seal_conf *c) HSM_WUR;

/* The user PIN, the SO PIN (what: "user" or "so"), NUL-terminated hex. */
int seal_pin(const uint8_t s[SEAL_SECRET_LEN], const char *what,
    char pin[SEAL_PIN_LEN + 1]) HSM_WUR;
/* The check value of s (HKDF "check"), for seal.conf. */
int seal_check_value(const uint8_t s[SEAL_SECRET_LEN], uint8_t out[32]) HSM_WUR;
/* 0 if s is this vault's secret (its HMAC matches c->check). */
int seal_check(const struct seal_conf *c,
    const uint8_t s[SEAL_SECRET_LEN]) HSM_WUR;
/* dir/name into out[cap]: 0, or HSM_ERR_ARGS when it does not fit. */
int seal_path(char *out, size_t cap, const char *dir, const char *name) HSM_WUR;

/* A new random S. */
int seal_new_secret(uint8_t s[SEAL_SECRET_LEN]) HSM_WUR;

/*
 * Splits s into n shares, any m of which give it back (1 <= m <= n <= 16;
 * n == 0: no shares). c receives threshold, count, numbers and hashes
 * (check and method are the caller's). *text: the shares, one per line,
 * malloc'd; the caller wipes and frees it (freezero(*text, *text_len)).
 */
int seal_split(const uint8_t s[SEAL_SECRET_LEN], unsigned m, unsigned n,
    struct seal_conf *c, char **text, size_t *text_len) HSM_WUR;

/*
 * One share offered: 0 taken (col->count grew), SEAL_SHARE_UNKNOWN (not a
 * share of this vault, or malformed), SEAL_SHARE_REPEATED.
 */
enum {
	SEAL_SHARE_TAKEN = 0,
	SEAL_SHARE_UNKNOWN = 1,
	SEAL_SHARE_REPEATED = 2,
	SEAL_SHARE_MALFORMED = 3
};
int seal_offer(const struct seal_conf *c, struct seal_collect *col,
    const char *share);
/* With col->count >= threshold: S back, checked (0), else -1. */
int seal_combine(const struct seal_conf *c, const struct seal_collect *col,
    uint8_t s[SEAL_SECRET_LEN]) HSM_WUR;

/*
 * Unattended: S from $CREDENTIALS_DIRECTORY/p11vault-unseal (systemd's
 * LoadCredentialEncrypted=), else by running `systemd-creds decrypt` or
 * `clevis decrypt` on the file of c->method, with a time limit
 * (P11VAULT_UNSEAL_TIMEOUT_MS, default 30000). Checked against c. 0, or
 * -1 with *why set to a fixed phrase (no secret in it).
 */
int seal_auto_unseal(const char *hsmdir, const struct seal_conf *c,
    uint8_t s[SEAL_SECRET_LEN], const char **why) HSM_WUR;
/* Encrypts s with c->method / c->arg into the method's file (suffix
 * appended to its name, "" or ".new"). */
int seal_auto_seal(const char *hsmdir, const struct seal_conf *c,
    const uint8_t s[SEAL_SECRET_LEN], const char *suffix,
    const char **why) HSM_WUR;
/* The file name of c's method ("unseal.cred", "unseal.jwe", NULL). */
const char *seal_auto_file(const struct seal_conf *c);


/*
 * An interrupted rekey: before the token's PINs change, the new S is
 * kept in hsm/seal.pending, AES-256-GCM under a key derived from the old
 * user PIN (so only what opened the vault before opens it); a token that
 * then refuses the old PIN is set back to it (tseal_rollback). Cleared
 * when the rekey is committed.
 */
int seal_pending_write(const char *hsmdir, const char *old_pin,
    const uint8_t s[SEAL_SECRET_LEN]) HSM_WUR;
int seal_pending_read(const char *hsmdir, const char *old_pin,
    uint8_t s[SEAL_SECRET_LEN]) HSM_WUR;
void seal_pending_clear(const char *hsmdir);

/* ---- the flows of the token process (tokseal.c) ---- */

/*
 * At boot, before privileges are dropped: seal.conf and its unattended
 * method give S (*have_s); without seal.conf, a data directory of the
 * PIN-file era is moved to a sealed one (S under systemd-creds with the
 * host key; operator shares come with `p11vault rekey`), or, when that
 * cannot be done, opened with its PIN file (*legacy_pin, *legacy). 0,
 * or an HSM_ERR_* when nothing can open the token.
 */
int tseal_boot(const char *hsmdir, const char *module, const char *label,
    struct seal_conf *c, int *have_conf, uint8_t s[SEAL_SECRET_LEN],
    int *have_s, char *legacy_pin, size_t pin_cap, int *legacy) HSM_WUR;

/* init: a new S, its shares (*text, freezero(*text, *text_len)), the token
 * initialised with PINs derived from S (node: the token of a node yet to
 * join, tok_token_init_kind), the unattended credential, then
 * seal.conf. auto: "", "none", "systemd-creds[:KEY]", "clevis:PIN CFG". */
int tseal_init(const char *module, const char *label, const char *hsmdir,
    unsigned m, unsigned n, const char *auto_method, int node, char **text,
    size_t *text_len) HSM_WUR;

/* The current user and SO PINs (cap bytes each) of the vault whose hsm
 * directory is hsmdir: from shares (a line each), else its unattended
 * method, else its PIN files. HSM_ERR_ARGS: too few valid shares. */
int tseal_pins(const char *hsmdir, const char *shares, char *user, char *so,
    size_t cap) HSM_WUR;

/* rekey: the current S from old_shares (or the unattended method when
 * the vault has no shares, or the PIN files of an old one), then a new
 * S with new shares and PINs; auto "" keeps the current method. */
int tseal_rekey(const char *module, const char *label, const char *hsmdir,
    unsigned m, unsigned n, const char *auto_method, const char *old_shares,
    char **text, size_t *text_len) HSM_WUR;

void tseal_log(const char *level, const char *event, const char *msg);

/*
 * The token refused old_pin: if hsm/seal.pending holds a new S under it
 * (a rekey interrupted after the PIN change, before its shares were
 * shown), undo that rekey: both PINs back to the old ones (old_so, or
 * hsm/so.pin when NULL), the new seal.conf and credential removed. 0,
 * or -1 (nothing pending: a wrong PIN).
 */
int tseal_rollback(const char *hsmdir, const char *module, const char *label,
    const char *old_pin, const char *old_so) HSM_WUR;

#endif
