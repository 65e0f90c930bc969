/*
 * tokend.c — the token process: the only process that loads the PKCS#11
 * module, reads the user PIN and holds token sessions and key handles.
 *
 * Owns: hsm_token_main (argv[1] HSM_TOKEN_ARGV, started by client.c with
 * its boot socket on fd 3): close every other inherited fd, harden the
 * process (harden.c), take the boot message (HELLO: config and channel
 * fds; or TOKEN_INIT: a one-shot init), check the module against the
 * allowlist, read the PIN, open the token (tok_open) and answer; then a
 * thread per channel (pinned to the channel's CPU, hsm/affinity.h) reads
 * a request, runs its tok_* twin, answers, and wipes both. EOF on the
 * boot socket (the parent is gone) ends the process; EOF or a malformed
 * message on a channel ends that channel.
 * Must never: open a network socket; answer anyone but its parent; send a
 * PIN, a CK_* handle or private key material; leave a request or an
 * answer unwiped.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "hsm/affinity.h"
#include "hsm/base.h"
#include "hsm/buf.h"
#include "hsm/harden.h"
#include "hsm/launcher.h"
#include "hsm/hsm_int.h"
#include "hsm/proto.h"
#include "hsm/seal.h"

static void
tlog(const char *event, const char *msg)
{
	fprintf(stderr,
	    "{\"level\":\"error\",\"event\":\"%s\",\"msg\":\"%s\","
	    "\"process\":\"token\"}\n",
	    event, msg);
}

struct tokd {
	tok_t *tok; /* NULL while sealed; set once (atomically) */
	pthread_mutex_t mu;
	size_t live; /* channel threads still running */

	/* the seal: shares taken so far, under smu */
	pthread_mutex_t smu;
	int have_conf, legacy;
	uint32_t last; /* the last share's result */
	struct seal_conf conf;
	struct seal_collect *col; /* a locked, undumped page */
	struct tok_config cfg;    /* without a PIN */
	const char *hsmdir;
	struct hsm_cpus cpus; /* channel i's thread runs on its CPU */
};

static tok_t *
tok_of(struct tokd *d)
{
	return __atomic_load_n(&d->tok, __ATOMIC_ACQUIRE);
}

/* The token opened with the PIN derived from s (or the legacy PIN),
 * then the memory locked and the seccomp filter on: from now on the
 * process serves keys. */
static int
open_token(struct tokd *d, const uint8_t *s, const char *legacy_pin)
{
	char pin[TOKP_PIN_MAX + 1];
	struct tok_config cfg = d->cfg;
	tok_t *t = NULL;
	int rc;

	if (s != NULL) {
		if (seal_pin(s, "user", pin) != 0)
			return HSM_ERR_INTERNAL;
	} else if (str_fmt(pin, sizeof(pin), "%s", legacy_pin) != 0) {
		return HSM_ERR_ARGS;
	}
	cfg.user_pin = pin;
	rc = tok_open(&cfg, &t);
	if (rc == HSM_ERR_ARGS) {
		/* the token refuses the PIN: a rekey interrupted after the PIN
		 * change? (hsm/seal.pending under this PIN) Undo it. */
		char so[SEAL_PIN_LEN + 1];
		int have_so = s != NULL && seal_pin(s, "so", so) == 0;

		if (tseal_rollback(d->hsmdir, d->cfg.module_path,
		        d->cfg.token_label, pin, have_so ? so : NULL) == 0)
			rc = tok_open(&cfg, &t);
		OPENSSL_cleanse(so, sizeof(so));
	}
	OPENSSL_cleanse(pin, sizeof(pin));
	if (rc != HSM_OK)
		return rc;
	if (hsm_lock_memory() != 0)
		tlog("memory_not_locked",
		    "RLIMIT_MEMLOCK is too low to lock "
		    "the token process's memory; it may be swapped");
	if (hsm_seccomp_token() != 0) {
		tok_close(t);
		return HSM_ERR_INTERNAL;
	}
	__atomic_store_n(&d->tok, t, __ATOMIC_RELEASE);
	return HSM_OK;
}

static void
put_status(struct tokd *d, struct tokp_buf *b)
{
	tokp_put_u32(b, tok_of(d) == NULL);
	tokp_put_u32(b, d->conf.threshold);
	tokp_put_u32(b, d->conf.shares);
	tokp_put_u32(b, d->col != NULL ? d->col->count : 0);
	tokp_put_u32(b, (uint32_t)d->legacy);
	tokp_put_u32(b, d->last);
}

/* One operator key share (action 1) or a reset (2). */
static int
take_share(struct tokd *d, const struct tokp_msg *q, struct tokp_buf *b)
{
	char share[TOKP_SHARE_MAX + 1];
	uint8_t s[SEAL_SECRET_LEN];
	uint32_t action;
	int rc = HSM_OK;

	if (tokp_u32(&q->f[0], &action) != 0 || (action != 1 && action != 2))
		return HSM_ERR_ARGS;
	pthread_mutex_lock(&d->smu);
	if (action == 2) {
		if (d->col != NULL)
			OPENSSL_cleanse(d->col, sizeof(*d->col));
		d->last = 0;
	} else if (tok_of(d) != NULL) {
		d->last = SEAL_SHARE_TAKEN; /* already unsealed */
	} else if (!d->have_conf || d->conf.shares == 0 || d->col == NULL) {
		rc = HSM_ERR_ARGS; /* nothing to take shares for */
	} else if (tokp_str(&q->f[1], share, sizeof(share)) != 0) {
		d->last = SEAL_SHARE_MALFORMED;
	} else {
		d->last = (uint32_t)seal_offer(&d->conf, d->col, share);
		OPENSSL_cleanse(share, sizeof(share));
		if (d->last == SEAL_SHARE_TAKEN &&
		    d->col->count >= d->conf.threshold) {
			if (seal_combine(&d->conf, d->col, s) != 0) {
				d->last = SEAL_SHARE_UNKNOWN;
			} else if ((rc = open_token(d, s, NULL)) != HSM_OK) {
				tlog("unseal_failed",
				    "the shares are right but "
				    "the token did not open");
			} else {
				tseal_log("info", "unsealed",
				    "the vault is "
				    "unsealed (operator key shares)");
			}
			OPENSSL_cleanse(s, sizeof(s));
			OPENSSL_cleanse(d->col, sizeof(*d->col));
		}
	}
	if (rc == HSM_OK)
		put_status(d, b);
	pthread_mutex_unlock(&d->smu);
	return rc;
}


/* 0 if the module's real path lies inside one of the ':'-separated
 * directories of allow (each resolved too), as ssh-pkcs11-helper -P;
 * else HSM_ERR_ARGS, logged. */
static int
module_allowed(const char *module, const char *allow)
{
	char mod[PATH_MAX], dir[PATH_MAX], one[PATH_MAX];
	const char *p = allow, *e;
	size_t n, dl;

	if (module == NULL || allow == NULL || realpath(module, mod) == NULL)
		goto refused;
	while (*p != '\0') {
		e = strchr(p, ':');
		n = e ? (size_t)(e - p) : strlen(p);
		if (n > 0 && n < sizeof(one)) {
			memcpy(one, p, n);
			one[n] = '\0';
			if (realpath(one, dir) != NULL) {
				dl = strlen(dir);
				while (dl > 1 && dir[dl - 1] == '/')
					dir[--dl] = '\0';
				if (strncmp(mod, dir, dl) == 0 &&
				    (mod[dl] == '/' || dl == 1))
					return 0;
			}
		}
		if (e == NULL)
			break;
		p = e + 1;
	}
refused:
	tlog("module_not_allowed",
	    "the PKCS#11 module is not in an allowed "
	    "directory (P11VAULT_MODULE_ALLOW)");
	return HSM_ERR_ARGS;
}

/* -1 when the answer could not be written (the channel is gone). An
 * error answer needs no allocation: it goes out even when the answer
 * could not be built for want of memory. */
static int
answer(int fd, const struct tokp_msg *q, int status, struct tokp_buf *b)
{
	int r;

	/* an error carries no field: the header alone */
	if (status == HSM_OK && b->err)
		status = tokp_buf_status(b) == HSM_ERR_NO_MEMORY ?
		    HSM_ERR_NO_MEMORY :
		    HSM_ERR_INTERNAL;
	if (status != HSM_OK)
		r = tokp_send_status(fd, (enum tokp_op)q->op, q->id, status);
	else
		r = tokp_send(fd, b, NULL, 0);
	tokp_buf_clear(b);
	return r == 0 ? 0 : -1;
}

/* ---- the requests of a channel: one handler per op ---- */

/* Puts a new key's answer (desc when an import, then blob and spki) and
 * frees both. */
static void
put_key(struct tokp_buf *b, const struct hsm_key_desc *desc, uint8_t *blob,
    size_t blob_len, uint8_t *spki, size_t spki_len)
{
	if (desc != NULL) {
		tokp_put_u32(b, (uint32_t)desc->kty);
		tokp_put_u32(b, desc->rsa_bits);
		tokp_put_u32(b, (uint32_t)desc->ec_nid);
	}
	tokp_put(b, blob, blob_len);
	tokp_put(b, spki, spki_len);
	freezero(blob, blob_len);
	free(spki);
}

static int
op_seal_status(struct tokd *d, tok_t *t, const struct tokp_msg *q,
    struct tokp_buf *b)
{
	(void)t;
	(void)q;
	pthread_mutex_lock(&d->smu);
	put_status(d, b);
	pthread_mutex_unlock(&d->smu);
	return HSM_OK;
}

static int
op_share(struct tokd *d, tok_t *t, const struct tokp_msg *q, struct tokp_buf *b)
{
	(void)t;
	return take_share(d, q, b);
}

static int
op_health(struct tokd *d, tok_t *t, const struct tokp_msg *q,
    struct tokp_buf *b)
{
	(void)d;
	(void)q;
	(void)b;
	return tok_health(t);
}

static int
op_generate(struct tokd *d, tok_t *t, const struct tokp_msg *q,
    struct tokp_buf *b)
{
	char id[HSM_BIND_MAX + 1];
	uint8_t *blob = NULL, *spki = NULL;
	size_t blob_len = 0, spki_len = 0;
	uint32_t kty, bits, nid;
	int rc;

	(void)d;
	if (tokp_str(&q->f[0], id, sizeof(id)) != 0 ||
	    tokp_u32(&q->f[1], &kty) != 0 || tokp_u32(&q->f[2], &bits) != 0 ||
	    tokp_u32(&q->f[3], &nid) != 0)
		return HSM_ERR_ARGS;
	rc = tok_key_generate(t, id, (enum hsm_kty)kty, bits, (int)nid, &blob,
	    &blob_len, &spki, &spki_len);
	if (rc == HSM_OK)
		put_key(b, NULL, blob, blob_len, spki, spki_len);
	return rc;
}

/* decrypt and sign: cache id, blob, alg, input, output capacity */
static int
op_key(struct tokd *d, tok_t *t, const struct tokp_msg *q, struct tokp_buf *b)
{
	char id[HSM_BIND_MAX + 1];
	uint8_t out[TOKP_RSA_MAX];
	size_t out_len;
	uint32_t alg, cap;
	int rc;

	(void)d;
	if (tokp_str(&q->f[0], id, sizeof(id)) != 0 ||
	    tokp_u32(&q->f[2], &alg) != 0 || tokp_u32(&q->f[4], &cap) != 0)
		return HSM_ERR_ARGS;
	out_len = cap < sizeof(out) ? cap : sizeof(out);
	if (q->op == TOKP_DECRYPT)
		rc = tok_key_decrypt(t, id, q->f[1].p, q->f[1].len,
		    (enum hsm_alg)alg, q->f[3].p, q->f[3].len, out, &out_len);
	else
		rc = tok_key_sign(t, id, q->f[1].p, q->f[1].len,
		    (enum hsm_alg)alg, q->f[3].p, q->f[3].len, out, &out_len);
	if (rc == HSM_OK)
		tokp_put(b, out, out_len);
	OPENSSL_cleanse(out, sizeof(out));
	return rc;
}

static int
op_forget(struct tokd *d, tok_t *t, const struct tokp_msg *q,
    struct tokp_buf *b)
{
	char id[HSM_BIND_MAX + 1];

	(void)d;
	(void)b;
	if (tokp_str(&q->f[0], id, sizeof(id)) != 0)
		return HSM_ERR_ARGS;
	tok_key_forget(t, id);
	return HSM_OK;
}

/* A signature (64 bytes, r||s) or a public key (SPKI) made by the token,
 * as the answer: the JWT key and the audit key answer the same way. */
static int
answer_sig(int (*sign)(tok_t *, const uint8_t *, size_t, uint8_t[64]), tok_t *t,
    const struct tokp_msg *q, struct tokp_buf *b)
{
	uint8_t sig[64];
	int rc;

	if ((rc = sign(t, q->f[0].p, q->f[0].len, sig)) == HSM_OK)
		tokp_put(b, sig, sizeof(sig));
	return rc;
}

static int
answer_spki(int (*pub)(tok_t *, uint8_t **, size_t *), tok_t *t,
    struct tokp_buf *b)
{
	uint8_t *spki = NULL;
	size_t spki_len = 0;
	int rc;

	if ((rc = pub(t, &spki, &spki_len)) == HSM_OK)
		tokp_put(b, spki, spki_len);
	free(spki);
	return rc;
}

static int
op_jwt_sign(struct tokd *d, tok_t *t, const struct tokp_msg *q,
    struct tokp_buf *b)
{
	(void)d;
	return answer_sig(tok_jwt_sign, t, q, b);
}

static int
op_jwt_public(struct tokd *d, tok_t *t, const struct tokp_msg *q,
    struct tokp_buf *b)
{
	(void)d;
	(void)q;
	return answer_spki(tok_jwt_public, t, b);
}

static int
op_audit_sign(struct tokd *d, tok_t *t, const struct tokp_msg *q,
    struct tokp_buf *b)
{
	(void)d;
	return answer_sig(tok_audit_sign, t, q, b);
}

static int
op_audit_public(struct tokd *d, tok_t *t, const struct tokp_msg *q,
    struct tokp_buf *b)
{
	(void)d;
	(void)q;
	return answer_spki(tok_audit_public, t, b);
}

/* Answers zeros while sealed: metrics work before the unseal. */
static int
op_stats(struct tokd *d, tok_t *t, const struct tokp_msg *q, struct tokp_buf *b)
{
	uint64_t hits = 0, misses = 0;
	size_t busy = 0, total = 0;

	(void)d;
	(void)q;
	if (t != NULL)
		tok_stats(t, &hits, &misses, &busy, &total);
	tokp_put_u64(b, hits);
	tokp_put_u64(b, misses);
	tokp_put_u64(b, busy);
	tokp_put_u64(b, total);
	return HSM_OK;
}

static int
op_import(struct tokd *d, tok_t *t, const struct tokp_msg *q,
    struct tokp_buf *b)
{
	char id[HSM_BIND_MAX + 1], kid[HSM_BIND_MAX + 1];
	uint8_t *blob = NULL, *spki = NULL;
	size_t blob_len = 0, spki_len = 0;
	struct hsm_key_desc desc;
	int rc;

	(void)d;
	if (tokp_str(&q->f[0], id, sizeof(id)) != 0)
		return HSM_ERR_ARGS;
	memset(&desc, 0, sizeof(desc));
	if (q->op == TOKP_IMPORT)
		rc = tok_key_import(t, id, q->f[1].p, q->f[1].len, &desc, &blob,
		    &blob_len, &spki, &spki_len);
	else if (tokp_str(&q->f[1], kid, sizeof(kid)) != 0)
		return HSM_ERR_ARGS;
	else
		rc = tok_key_import_byok(t, id, kid, q->f[2].p, q->f[2].len,
		    q->f[3].p, q->f[3].len, &desc, &blob, &blob_len, &spki,
		    &spki_len);
	if (rc == HSM_OK)
		put_key(b, &desc, blob, blob_len, spki, spki_len);
	return rc;
}

/* seal, unseal and upgrade: one buffer out */
static int
op_data(struct tokd *d, tok_t *t, const struct tokp_msg *q, struct tokp_buf *b)
{
	char id[HSM_BIND_MAX + 1];
	uint8_t *out = NULL;
	size_t out_len = 0;
	int rc;

	(void)d;
	if (q->op == TOKP_SEAL)
		rc = tok_seal(t, q->f[0].p, q->f[0].len, &out, &out_len);
	else if (q->op == TOKP_UNSEAL)
		rc = tok_unseal(t, q->f[0].p, q->f[0].len, &out, &out_len);
	else if (tokp_str(&q->f[0], id, sizeof(id)) != 0)
		return HSM_ERR_ARGS;
	else if (q->op == TOKP_REWRAP)
		rc = tok_blob_rewrap(t, id, q->f[1].p, q->f[1].len, &out,
		    &out_len);
	else
		rc = tok_blob_upgrade(t, id, q->f[1].p, q->f[1].len, &out,
		    &out_len);
	if (rc == HSM_OK)
		tokp_put(b, out, out_len);
	freezero(out, out_len);
	return rc;
}

struct op_handler {
	int (*run)(struct tokd *d, tok_t *t, const struct tokp_msg *q,
	    struct tokp_buf *b);
	int sealed_ok; /* answered while the token is not open */
};

/* HELLO, TOKEN_INIT, REKEY and NODE belong to the boot socket: none
 * here. */
static const struct op_handler ops[TOKP_OP_COUNT] = {
	[TOKP_SEAL_STATUS] = { op_seal_status, 1 },
	[TOKP_SHARE] = { op_share, 1 },
	[TOKP_STATS] = { op_stats, 1 },
	[TOKP_HEALTH] = { op_health, 0 },
	[TOKP_GENERATE] = { op_generate, 0 },
	[TOKP_DECRYPT] = { op_key, 0 },
	[TOKP_SIGN] = { op_key, 0 },
	[TOKP_FORGET] = { op_forget, 0 },
	[TOKP_JWT_SIGN] = { op_jwt_sign, 0 },
	[TOKP_JWT_PUBLIC] = { op_jwt_public, 0 },
	[TOKP_AUDIT_SIGN] = { op_audit_sign, 0 },
	[TOKP_AUDIT_PUBLIC] = { op_audit_public, 0 },
	[TOKP_IMPORT] = { op_import, 0 },
	[TOKP_IMPORT_BYOK] = { op_import, 0 },
	[TOKP_SEAL] = { op_data, 0 },
	[TOKP_UNSEAL] = { op_data, 0 },
	[TOKP_UPGRADE] = { op_data, 0 },
	[TOKP_REWRAP] = { op_data, 0 },
};

/* Runs request q (its op checked by tokp_recv) on the token; the answer
 * goes into b (begun here). */
static int
dispatch(struct tokd *d, const struct tokp_msg *q, struct tokp_buf *b)
{
	const struct op_handler *o = &ops[q->op];
	tok_t *t = tok_of(d);

	tokp_begin(b, (enum tokp_op)q->op, q->id, HSM_OK);
	if (t == NULL && !o->sealed_ok)
		return HSM_ERR_SEALED;
	if (o->run == NULL)
		return HSM_ERR_ARGS;
	return o->run(d, t, q, b);
}

struct chan_arg {
	struct tokd *d;
	int fd;
	size_t idx;
};

/* One request of channel fd: read, run, answered, wiped. 0, or -1 when
 * the channel is done (EOF, a malformed request, an answer that could
 * not be written). A request there was no memory to read was read whole
 * and dropped: it is answered HSM_ERR_NO_MEMORY and the channel goes on,
 * in step. */
static int
serve_one(struct tokd *d, int fd)
{
	struct tokp_msg q;
	struct tokp_buf b;
	int r, rc;

	r = tokp_recv(fd, -1, 0, &q, NULL, NULL);
	if (r == TOKP_RECV_NOMEM) {
		rc = tokp_send_status(fd, (enum tokp_op)q.op, q.id,
		    HSM_ERR_NO_MEMORY);
		tokp_msg_clear(&q);
		return rc == 0 ? 0 : -1;
	}
	if (r != 0)
		return -1;
	rc = dispatch(d, &q, &b);
	rc = answer(fd, &q, rc, &b);
	tokp_msg_clear(&q);
	return rc;
}

int
tokd_serve_one(tok_t *t, int fd)
{
	static struct tokd d = { .smu = PTHREAD_MUTEX_INITIALIZER,
		.mu = PTHREAD_MUTEX_INITIALIZER };

	__atomic_store_n(&d.tok, t, __ATOMIC_RELEASE);
	return serve_one(&d, fd);
}

static void *
chan_main(void *arg)
{
	struct chan_arg *ca = arg;

	hsm_cpus_pin(&ca->d->cpus, ca->idx);
	while (serve_one(ca->d, ca->fd) == 0)
		;
	close(ca->fd);
	pthread_mutex_lock(&ca->d->mu);
	ca->d->live--;
	pthread_mutex_unlock(&ca->d->mu);
	free(ca);
	return NULL;
}

static int
boot_answer(int status, uint8_t op)
{
	return tokp_send_status(TOKP_BOOT_FD, (enum tokp_op)op, 0, status);
}

/* TOKEN_INIT and REKEY: one-shot ceremonies; the new shares go back. */
static int
ceremony(const struct tokp_msg *m, struct tokp_buf *b)
{
	char mod[TOKP_PATH_MAX + 1], allow[TOKP_PATH_MAX + 1];
	char label[TOKP_LABEL_MAX + 1], dir[TOKP_PATH_MAX + 1];
	char *au = NULL, *old = NULL, *text = NULL;
	size_t text_len = 0;
	uint32_t th, n, kind = 0;
	int rc = HSM_ERR_ARGS;

	if (tokp_str(&m->f[0], mod, sizeof(mod)) != 0 ||
	    tokp_str(&m->f[1], allow, sizeof(allow)) != 0 ||
	    tokp_str(&m->f[2], label, sizeof(label)) != 0 ||
	    tokp_str(&m->f[3], dir, sizeof(dir)) != 0 ||
	    tokp_u32(&m->f[4], &th) != 0 || tokp_u32(&m->f[5], &n) != 0 ||
	    (au = calloc(1, TOKP_AUTO_MAX + 1)) == NULL ||
	    (old = calloc(1, TOKP_SHARES_MAX + 1)) == NULL ||
	    tokp_str(&m->f[6], au, TOKP_AUTO_MAX + 1) != 0 ||
	    (m->op == TOKP_REKEY &&
	        tokp_str(&m->f[7], old, TOKP_SHARES_MAX + 1) != 0) ||
	    (m->op == TOKP_TOKEN_INIT &&
	        (tokp_u32(&m->f[7], &kind) != 0 || kind > 1)))
		goto out;
	if (module_allowed(mod, allow) != 0)
		goto out;
	if (m->op == TOKP_TOKEN_INIT)
		rc = tseal_init(mod, label, dir, th, n, au, (int)kind, &text,
		    &text_len);
	else
		rc = tseal_rekey(mod, label, dir, th, n, au, old, &text,
		    &text_len);
	if (rc == HSM_OK) {
		tokp_begin(b, (enum tokp_op)m->op, 0, HSM_OK);
		tokp_put(b, text, strlen(text));
	}
out:
	freezero(old, TOKP_SHARES_MAX + 1);
	free(au);
	freezero(text, text_len);
	return rc;
}

/* A clustering ceremony (node.c) on the token; the PINs from the
 * shares, or the unattended method. */
static int
node_run(const char *mod, const char *label, const char *dir, uint32_t act,
    const char *shares, const struct tokp_field *in, uint8_t **out,
    size_t *out_len)
{
	char user[TOKP_PIN_MAX + 1], so[TOKP_PIN_MAX + 1];
	unsigned removed = 0;
	int rc;

	*out = NULL;
	*out_len = 0;
	if (act == HSM_NODE_REQUEST)
		return tok_node_request(mod, label, out, out_len);
	if (act < HSM_NODE_APPROVE || act > HSM_DOMAIN_DROP)
		return HSM_ERR_ARGS;
	if ((rc = tseal_pins(dir, shares, user, so, sizeof(user))) != 0)
		return rc;
	if (act == HSM_NODE_APPROVE)
		rc = tok_node_approve(mod, label, so, user, in->p, in->len, out,
		    out_len);
	else if (act == HSM_NODE_JOIN)
		rc = tok_node_join(mod, label, so, user, in->p, in->len);
	else if (act == HSM_DOMAIN_NEW || act == HSM_DOMAIN_DROP)
		rc = tok_domain_rotate(mod, label, so, act == HSM_DOMAIN_DROP);
	else if (in->len != 32)
		rc = HSM_ERR_ARGS;
	else if ((rc = tok_node_forget(mod, label, so, in->p, &removed)) == 0 &&
	    (*out = malloc(1)) != NULL) {
		**out = (uint8_t)(removed > 255 ? 255 : removed);
		*out_len = 1;
	}
	OPENSSL_cleanse(user, sizeof(user));
	OPENSSL_cleanse(so, sizeof(so));
	return rc;
}

static int
node_ceremony(const struct tokp_msg *m, struct tokp_buf *b)
{
	char mod[TOKP_PATH_MAX + 1], allow[TOKP_PATH_MAX + 1];
	char label[TOKP_LABEL_MAX + 1], dir[TOKP_PATH_MAX + 1];
	char *shares = NULL;
	uint8_t *out = NULL;
	size_t out_len = 0;
	uint32_t act;
	int rc = HSM_ERR_ARGS;

	if (tokp_str(&m->f[0], mod, sizeof(mod)) != 0 ||
	    tokp_str(&m->f[1], allow, sizeof(allow)) != 0 ||
	    tokp_str(&m->f[2], label, sizeof(label)) != 0 ||
	    tokp_str(&m->f[3], dir, sizeof(dir)) != 0 ||
	    tokp_u32(&m->f[4], &act) != 0 ||
	    (shares = calloc(1, TOKP_SHARES_MAX + 1)) == NULL ||
	    tokp_str(&m->f[5], shares, TOKP_SHARES_MAX + 1) != 0)
		goto out;
	if (module_allowed(mod, allow) != 0)
		goto out;
	rc = node_run(mod, label, dir, act, shares, &m->f[6], &out, &out_len);
	if (rc == HSM_OK) {
		tokp_begin(b, (enum tokp_op)m->op, 0, HSM_OK);
		tokp_put(b, out, out_len);
	}
out:
	freezero(shares, TOKP_SHARES_MAX + 1);
	freezero(out, out_len);
	return rc;
}

/* ---- boot ---- */

/* What the HELLO of the boot socket says. */
struct hello {
	char mod[TOKP_PATH_MAX + 1], label[TOKP_LABEL_MAX + 1];
	char hsmdir[TOKP_PATH_MAX + 1], allow[TOKP_PATH_MAX + 1];
	char user[TOKP_USER_MAX + 1];
	uint32_t pool, cache;
};

static int
hello_parse(const struct tokp_msg *m, size_t nfds, struct hello *hl)
{
	if (m->op != TOKP_HELLO || nfds == 0 ||
	    tokp_str(&m->f[0], hl->mod, sizeof(hl->mod)) != 0 ||
	    tokp_str(&m->f[1], hl->label, sizeof(hl->label)) != 0 ||
	    tokp_str(&m->f[2], hl->hsmdir, sizeof(hl->hsmdir)) != 0 ||
	    tokp_str(&m->f[3], hl->allow, sizeof(hl->allow)) != 0 ||
	    m->f[4].len >= sizeof(hl->user) ||
	    tokp_u32(&m->f[5], &hl->pool) != 0 ||
	    tokp_u32(&m->f[6], &hl->cache) != 0)
		return HSM_ERR_ARGS;
	memcpy(hl->user, m->f[4].p, m->f[4].len);
	hl->user[m->f[4].len] = '\0';
	return 0;
}

/* The process alone: ends with its parent, inherits nothing else of it,
 * no core, no ptrace (harden.c). */
static void
boot_isolate(void)
{
	int devnull;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
		_exit(1);
	if (getppid() == 1)
		_exit(1);
	signal(SIGPIPE, SIG_IGN);
	(void)close_range(TOKP_BOOT_FD + 1, ~0u, 0);
	if ((devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0) {
		(void)dup2(devnull, 0);
		if (devnull != 0)
			close(devnull);
	}
	hsm_harden_early();
	/* below the network process (HSM_TOKEN_NICE): a thread of it that
	 * wakes (a request in, a 429 out) takes a busy core at once, the
	 * token's private-key work the rest; lowering one's own priority
	 * needs no privilege, the threads started later inherit it */
	(void)setpriority(PRIO_PROCESS, 0, HSM_TOKEN_NICE);
}

/* Until the parent hangs up the boot socket; then the process ends. */
static void __attribute__((noreturn)) boot_wait_end(void)
{
	ssize_t n;
	uint8_t c;

	for (;;) {
		n = read(TOKP_BOOT_FD, &c, 1);
		if (n == 0 || (n < 0 && errno != EINTR))
			break;
	}
	_exit(0);
}

/* TOKEN_INIT and REKEY: one ceremony, its answer, the end. */
static void __attribute__((noreturn))
boot_ceremony(struct tokp_msg *m, int *fds, size_t nfds)
{
	struct tokp_buf b;
	size_t i;
	int rc;

	for (i = 0; i < nfds; i++)
		close(fds[i]);
	memset(&b, 0, sizeof(b));
	rc = m->op == TOKP_NODE ? node_ceremony(m, &b) : ceremony(m, &b);
	if (rc != HSM_OK) {
		if (boot_answer(rc, m->op) != 0)
			tlog("answer_lost",
			    "the ceremony's error could not "
			    "be sent");
	} else if (tokp_send(TOKP_BOOT_FD, &b, NULL, 0) != 0) {
		tlog("answer_lost", "the new shares could not be sent");
	}
	tokp_buf_clear(&b);
	tokp_msg_clear(m);
	/* wait for the parent to hang up, so it reads the answer */
	boot_wait_end();
}

/* A boot that cannot go on: the parent learns why, the process ends. */
static void __attribute__((noreturn)) boot_fail(int rc)
{
	if (boot_answer(rc, TOKP_HELLO) != 0)
		tlog("answer_lost", "the boot error could not be sent");
	_exit(2);
}

/* The seal read (S unattended while still root: systemd-creds with the
 * host key needs it), privileges dropped, the token opened if it can
 * be. */
static int
boot_open(struct tokd *d, const struct hello *hl)
{
	uint8_t s[SEAL_SECRET_LEN];
	char pin[TOKP_PIN_MAX + 1], err[256];
	int have_s = 0, rc;

	if ((rc = module_allowed(hl->mod, hl->allow)) != 0)
		return rc;
	rc = tseal_boot(hl->hsmdir, hl->mod, hl->label, &d->conf, &d->have_conf,
	    s, &have_s, pin, sizeof(pin), &d->legacy);
	if (rc != HSM_OK)
		return rc;
	if (hl->user[0] != '\0' &&
	    hsm_drop_privileges(hl->user, err, sizeof(err)) != 0) {
		tlog("privilege_drop_failed",
		    "the token process cannot "
		    "become the --user given");
		rc = HSM_ERR_ARGS;
		goto out;
	}
	d->cfg.module_path = hl->mod;
	d->cfg.token_label = hl->label;
	d->hsmdir = hl->hsmdir;
	d->cfg.pool_size = hl->pool;
	d->cfg.cache_size = hl->cache;
	if (d->have_conf && d->conf.shares > 0 &&
	    (d->col = hsm_secret_alloc(sizeof(*d->col))) == NULL)
		_exit(3);
	if (have_s || d->legacy)
		rc = open_token(d, have_s ? s : NULL, pin);
	else
		tseal_log("warning", "sealed",
		    "the vault is sealed: it serves "
		    "no key until its key shares are given (p11vault unseal)");
out:
	OPENSSL_cleanse(s, sizeof(s));
	OPENSSL_cleanse(pin, sizeof(pin));
	return rc;
}

/* A thread per channel, then the boot answer. */
static void
boot_serve(struct tokd *d, const int *fds, size_t nfds)
{
	struct chan_arg *ca;
	pthread_attr_t pa;
	pthread_t th;
	size_t i;

	pthread_mutex_init(&d->mu, NULL);
	hsm_cpus_get(&d->cpus);
	pthread_attr_init(&pa);
	pthread_attr_setdetachstate(&pa, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&pa, 256 * 1024);
	for (i = 0; i < nfds; i++) {
		if ((ca = calloc(1, sizeof(*ca))) == NULL)
			_exit(3);
		ca->d = d;
		ca->fd = fds[i];
		ca->idx = i;
		pthread_mutex_lock(&d->mu);
		d->live++;
		pthread_mutex_unlock(&d->mu);
		if (pthread_create(&th, &pa, chan_main, ca) != 0)
			_exit(3);
	}
	pthread_attr_destroy(&pa);
}

int
hsm_token_main(int argc, char **argv)
{
	int fds[TOKP_CHAN_MAX];
	size_t nfds = TOKP_CHAN_MAX;
	struct tokp_msg m;
	struct hello hl;
	struct tokd d;
	int rc;

	boot_isolate();
	if (argc >= 3 && strcmp(argv[2], HSM_LAUNCHER_ARGV) == 0)
		return hsm_launcher_main();
	memset(&m, 0, sizeof(m));
	if (tokp_recv(TOKP_BOOT_FD, 60000, 0, &m, fds, &nfds) != 0)
		_exit(2);
	if (m.op == TOKP_TOKEN_INIT || m.op == TOKP_REKEY || m.op == TOKP_NODE)
		boot_ceremony(&m, fds, nfds);
	memset(&hl, 0, sizeof(hl));
	rc = hello_parse(&m, nfds, &hl);
	tokp_msg_clear(&m);
	if (rc != 0)
		boot_fail(rc);
	memset(&d, 0, sizeof(d));
	pthread_mutex_init(&d.smu, NULL);
	if ((rc = boot_open(&d, &hl)) != HSM_OK)
		boot_fail(rc);
	boot_serve(&d, fds, nfds);
	if (boot_answer(HSM_OK, TOKP_HELLO) != 0)
		_exit(0);
	/* the parent hangs up the boot socket when it goes */
	boot_wait_end();
}
