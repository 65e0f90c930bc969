/*
 * tokend.c — the token process: the only process that loads the PKCS#11
 * module, reads the user PIN and holds token sessions and key handles.
 *
 * Owns: hsm_token_main (argv[1] HSM_TOKEN_ARGV, started by client.c with
 * its boot socket on fd 3): close every other inherited fd, harden the
 * process (harden.c), take the boot message (HELLO: config and channel
 * fds; or TOKEN_INIT: a one-shot init), check the module against the
 * allowlist, read the PIN, open the token (tok_open) and answer; then a
 * thread per channel reads a request, runs its tok_* twin, answers, and
 * wipes both. EOF on the boot socket (the parent is gone) ends the
 * process; EOF or a malformed message on a channel ends that channel.
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

#include "hsm/harden.h"
#include "hsm/hsm_int.h"
#include "hsm/proto.h"

struct tokd {
	tok_t *tok;
	pthread_mutex_t mu;
	size_t live;          /* channel threads still running */
};

static void
tlog(const char *event, const char *msg)
{
	fprintf(stderr, "{\"level\":\"error\",\"event\":\"%s\",\"msg\":\"%s\","
	    "\"process\":\"token\"}\n", event, msg);
}

/* 1 if the module's real path lies inside one of the ':'-separated
 * directories of allow (each resolved too), as ssh-pkcs11-helper -P. */
int
hsm_module_allowed(const char *module, const char *allow)
{
	char mod[PATH_MAX], dir[PATH_MAX], one[PATH_MAX];
	const char *p = allow, *e;
	size_t n, dl;

	if (module == NULL || allow == NULL || realpath(module, mod) == NULL)
		return 0;
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
					return 1;
			}
		}
		if (e == NULL)
			break;
		p = e + 1;
	}
	return 0;
}

static int
read_pin(const char *path, char *pin, size_t cap)
{
	ssize_t n;
	size_t len = 0;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return -1;
	while (len < cap - 1) {
		n = read(fd, pin + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	while (len > 0 && (pin[len - 1] == '\n' || pin[len - 1] == '\r'))
		len--;
	pin[len] = '\0';
	return len > 0 ? 0 : -1;
}

/* -1 when the answer could not be written (the channel is gone). */
static int
answer(int fd, const struct tokp_msg *q, int status, struct tokp_buf *b)
{
	int r;

	/* an error carries no field: start again without them */
	if (status != HSM_OK || b->err) {
		tokp_buf_clear(b);
		tokp_begin(b, (enum tokp_op)q->op, q->id, status != HSM_OK ?
		    status : HSM_ERR_INTERNAL);
	}
	r = tokp_send(fd, b, NULL, 0);
	tokp_buf_clear(b);
	return r == 0 ? 0 : -1;
}

/* Runs request q on the token; the answer goes into b (begun here). */
static int
dispatch(tok_t *t, const struct tokp_msg *q, struct tokp_buf *b)
{
	char id[HSM_BIND_MAX + 1], kid[HSM_BIND_MAX + 1];
	uint8_t out[TOKP_RSA_MAX], *blob = NULL, *spki = NULL;
	size_t out_len, blob_len = 0, spki_len = 0;
	uint32_t a, c, d;
	uint64_t hits, misses;
	size_t busy, total;
	struct hsm_key_desc desc;
	int rc = HSM_ERR_ARGS;

	tokp_begin(b, (enum tokp_op)q->op, q->id, HSM_OK);
	switch (q->op) {
	case TOKP_HEALTH:
		rc = tok_health(t);
		break;
	case TOKP_GENERATE:
		if (tokp_str(&q->f[0], id, sizeof(id)) != 0 ||
		    tokp_u32(&q->f[1], &a) != 0 ||
		    tokp_u32(&q->f[2], &c) != 0 ||
		    tokp_u32(&q->f[3], &d) != 0)
			break;
		rc = tok_key_generate(t, id, (enum hsm_kty)a, c, (int)d, &blob,
		    &blob_len, &spki, &spki_len);
		if (rc == HSM_OK) {
			tokp_put(b, blob, blob_len);
			tokp_put(b, spki, spki_len);
		}
		break;
	case TOKP_DECRYPT:
	case TOKP_SIGN:
		if (tokp_str(&q->f[0], id, sizeof(id)) != 0 ||
		    tokp_u32(&q->f[2], &a) != 0 ||
		    tokp_u32(&q->f[4], &c) != 0)
			break;
		out_len = c < sizeof(out) ? c : sizeof(out);
		if (q->op == TOKP_DECRYPT)
			rc = tok_key_decrypt(t, id, q->f[1].p, q->f[1].len,
			    (enum hsm_alg)a, q->f[3].p, q->f[3].len, out,
			    &out_len);
		else
			rc = tok_key_sign(t, id, q->f[1].p, q->f[1].len,
			    (enum hsm_alg)a, q->f[3].p, q->f[3].len, out,
			    &out_len);
		if (rc == HSM_OK)
			tokp_put(b, out, out_len);
		OPENSSL_cleanse(out, sizeof(out));
		break;
	case TOKP_FORGET:
		if (tokp_str(&q->f[0], id, sizeof(id)) != 0)
			break;
		tok_key_forget(t, id);
		rc = HSM_OK;
		break;
	case TOKP_JWT_SIGN:
		rc = tok_jwt_sign(t, q->f[0].p, q->f[0].len, out);
		if (rc == HSM_OK)
			tokp_put(b, out, 64);
		break;
	case TOKP_JWT_PUBLIC:
		rc = tok_jwt_public(t, &spki, &spki_len);
		if (rc == HSM_OK)
			tokp_put(b, spki, spki_len);
		break;
	case TOKP_STATS:
		tok_stats(t, &hits, &misses, &busy, &total);
		tokp_put_u64(b, hits);
		tokp_put_u64(b, misses);
		tokp_put_u64(b, busy);
		tokp_put_u64(b, total);
		rc = HSM_OK;
		break;
	case TOKP_IMPORT:
	case TOKP_IMPORT_BYOK:
		if (tokp_str(&q->f[0], id, sizeof(id)) != 0)
			break;
		memset(&desc, 0, sizeof(desc));
		if (q->op == TOKP_IMPORT) {
			rc = tok_key_import(t, id, q->f[1].p, q->f[1].len,
			    &desc, &blob, &blob_len, &spki, &spki_len);
		} else {
			if (tokp_str(&q->f[1], kid, sizeof(kid)) != 0)
				break;
			rc = tok_key_import_byok(t, id, kid, q->f[2].p,
			    q->f[2].len, q->f[3].p, q->f[3].len, &desc, &blob,
			    &blob_len, &spki, &spki_len);
		}
		if (rc == HSM_OK) {
			tokp_put_u32(b, (uint32_t)desc.kty);
			tokp_put_u32(b, desc.rsa_bits);
			tokp_put_u32(b, (uint32_t)desc.ec_nid);
			tokp_put(b, blob, blob_len);
			tokp_put(b, spki, spki_len);
		}
		break;
	case TOKP_SEAL:
	case TOKP_UNSEAL:
		rc = (q->op == TOKP_SEAL ? tok_seal : tok_unseal)(t,
		    q->f[0].p, q->f[0].len, &blob, &blob_len);
		if (rc == HSM_OK)
			tokp_put(b, blob, blob_len);
		break;
	case TOKP_UPGRADE:
		if (tokp_str(&q->f[0], id, sizeof(id)) != 0)
			break;
		rc = tok_blob_upgrade(t, id, q->f[1].p, q->f[1].len, &blob,
		    &blob_len);
		if (rc == HSM_OK)
			tokp_put(b, blob, blob_len);
		break;
	default:   /* HELLO and TOKEN_INIT belong to the boot socket */
		break;
	}
	if (blob != NULL) {
		OPENSSL_cleanse(blob, blob_len);
		free(blob);
	}
	free(spki);
	return rc;
}

struct chan_arg {
	struct tokd *d;
	int fd;
};

static void *
chan_main(void *arg)
{
	struct chan_arg *ca = arg;
	struct tokp_msg q;
	struct tokp_buf b;
	int rc;

	for (;;) {
		if (tokp_recv(ca->fd, -1, 0, &q, NULL, NULL) != 0)
			break;   /* EOF, or a malformed request: hang up */
		rc = dispatch(ca->d->tok, &q, &b);
		rc = answer(ca->fd, &q, rc, &b);
		tokp_msg_clear(&q);
		if (rc != 0)
			break;
	}
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
	struct tokp_buf b;
	int r;

	tokp_begin(&b, (enum tokp_op)op, 0, status);
	r = tokp_send(TOKP_BOOT_FD, &b, NULL, 0);
	tokp_buf_clear(&b);
	return r;
}

static int
token_init(const struct tokp_msg *m)
{
	char mod[TOKP_PATH_MAX + 1], allow[TOKP_PATH_MAX + 1];
	char label[TOKP_LABEL_MAX + 1], so[TOKP_PIN_MAX + 1];
	char user[TOKP_PIN_MAX + 1];
	int rc = HSM_ERR_ARGS;

	if (tokp_str(&m->f[0], mod, sizeof(mod)) == 0 &&
	    tokp_str(&m->f[1], allow, sizeof(allow)) == 0 &&
	    tokp_str(&m->f[2], label, sizeof(label)) == 0 &&
	    tokp_str(&m->f[3], so, sizeof(so)) == 0 &&
	    tokp_str(&m->f[4], user, sizeof(user)) == 0) {
		if (!hsm_module_allowed(mod, allow)) {
			tlog("module_not_allowed", "the PKCS#11 module is not "
			    "in an allowed directory (P11VAULT_MODULE_ALLOW)");
			rc = HSM_ERR_ARGS;
		} else {
			rc = tok_token_init(mod, label, so, user);
		}
	}
	OPENSSL_cleanse(so, sizeof(so));
	OPENSSL_cleanse(user, sizeof(user));
	return rc;
}

int
hsm_token_main(int argc, char **argv)
{
	char mod[TOKP_PATH_MAX + 1], label[TOKP_LABEL_MAX + 1];
	char pinf[TOKP_PATH_MAX + 1], allow[TOKP_PATH_MAX + 1];
	char user[TOKP_USER_MAX + 1], pin[TOKP_PIN_MAX + 1], err[256];
	int fds[TOKP_CHAN_MAX];
	size_t nfds = TOKP_CHAN_MAX, i;
	struct tokp_msg m;
	struct tok_config cfg;
	struct tokd d;
	struct chan_arg *ca;
	pthread_attr_t pa;
	pthread_t th;
	uint32_t pool, cache;
	uint8_t c;
	int rc, devnull;

	(void)argc;
	(void)argv;
	/* end with the parent; nothing else of its inherits */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
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

	memset(&m, 0, sizeof(m));
	if (tokp_recv(TOKP_BOOT_FD, 60000, 0, &m, fds, &nfds) != 0)
		_exit(2);
	if (m.op == TOKP_TOKEN_INIT) {
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		rc = token_init(&m);
		tokp_msg_clear(&m);
		(void)boot_answer(rc, TOKP_TOKEN_INIT);
		/* wait for the parent to hang up, so it reads the answer */
		while (read(TOKP_BOOT_FD, &c, 1) > 0)
			;
		_exit(0);
	}
	if (m.op != TOKP_HELLO || nfds == 0 ||
	    tokp_str(&m.f[0], mod, sizeof(mod)) != 0 ||
	    tokp_str(&m.f[1], label, sizeof(label)) != 0 ||
	    tokp_str(&m.f[2], pinf, sizeof(pinf)) != 0 ||
	    tokp_str(&m.f[3], allow, sizeof(allow)) != 0 ||
	    m.f[4].len >= sizeof(user) ||
	    tokp_u32(&m.f[5], &pool) != 0 || tokp_u32(&m.f[6], &cache) != 0) {
		(void)boot_answer(HSM_ERR_ARGS, TOKP_HELLO);
		_exit(2);
	}
	memcpy(user, m.f[4].p, m.f[4].len);
	user[m.f[4].len] = '\0';
	tokp_msg_clear(&m);

	if (!hsm_module_allowed(mod, allow)) {
		tlog("module_not_allowed", "the PKCS#11 module is not in an "
		    "allowed directory (P11VAULT_MODULE_ALLOW)");
		(void)boot_answer(HSM_ERR_ARGS, TOKP_HELLO);
		_exit(2);
	}
	if (user[0] != '\0' &&
	    hsm_drop_privileges(user, err, sizeof(err)) != 0) {
		tlog("privilege_drop_failed", "the token process cannot "
		    "become the --user given");
		(void)boot_answer(HSM_ERR_ARGS, TOKP_HELLO);
		_exit(2);
	}
	if (read_pin(pinf, pin, sizeof(pin)) != 0) {
		OPENSSL_cleanse(pin, sizeof(pin));
		tlog("pin_unreadable", "the token process cannot read the "
		    "user PIN file");
		(void)boot_answer(HSM_ERR_UNAVAILABLE, TOKP_HELLO);
		_exit(2);
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.module_path = mod;
	cfg.token_label = label;
	cfg.user_pin = pin;
	cfg.pool_size = pool;
	cfg.cache_size = cache;
	memset(&d, 0, sizeof(d));
	rc = tok_open(&cfg, &d.tok);
	OPENSSL_cleanse(pin, sizeof(pin));
	if (rc == HSM_OK && hsm_lock_memory() != 0)
		tlog("memory_not_locked", "RLIMIT_MEMLOCK is too low to lock "
		    "the token process's memory; it may be swapped");
	if (rc == HSM_OK && hsm_seccomp_token() != 0)
		rc = HSM_ERR_INTERNAL;
	if (rc != HSM_OK) {
		(void)boot_answer(rc, TOKP_HELLO);
		_exit(2);
	}
	pthread_mutex_init(&d.mu, NULL);
	pthread_attr_init(&pa);
	pthread_attr_setdetachstate(&pa, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&pa, 256 * 1024);
	for (i = 0; i < nfds; i++) {
		if ((ca = calloc(1, sizeof(*ca))) == NULL)
			_exit(3);
		ca->d = &d;
		ca->fd = fds[i];
		pthread_mutex_lock(&d.mu);
		d.live++;
		pthread_mutex_unlock(&d.mu);
		if (pthread_create(&th, &pa, chan_main, ca) != 0)
			_exit(3);
	}
	pthread_attr_destroy(&pa);
	if (boot_answer(HSM_OK, TOKP_HELLO) != 0)
		_exit(0);
	/* the parent hangs up the boot socket when it goes */
	for (;;) {
		ssize_t n = read(TOKP_BOOT_FD, &c, 1);
		if (n == 0 || (n < 0 && errno != EINTR))
			break;
	}
	_exit(0);
}
