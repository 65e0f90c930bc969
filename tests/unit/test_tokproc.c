/*
 * test_tokproc — hsm/hsm.h as the network process uses it: through the
 * token process (client.c, proto.c, tokend.c) to a real SoftHSMv2 token.
 * Start, the module allowlist, the PIN file, round trips of every kind,
 * several calls at once, and the token process killed (alone and during
 * a storm): only correct answers or HSM_ERR_UNAVAILABLE, then service
 * again without reopening.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/obj_mac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "hsm/hsm.h"
#include "tests/unit/softhsm_setup.h"
#include "tests/unit/t.h"

#define MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define LABEL "p11vault-tp"
#define BIND "rsa-key/0123456789abcdef0123456789abcdef"

static char tmpdir[] = "/tmp/p11vault-tokproc-XXXXXX";
static hsm_t *H;
static uint8_t *blob, *spki;
static size_t blob_len, spki_len;

static int
init_with(const char *mod, const char *allow, const char *dir, char **share)
{
	struct hsm_init p;

	memset(&p, 0, sizeof(p));
	p.module_path = mod;
	p.module_allow = allow;
	p.token_label = LABEL;
	p.hsm_dir = dir;
	p.shares = p.threshold = 1;
	p.auto_method = "systemd-creds:host";
	return hsm_token_init(&p, share);
}

static int
open_with(const char *dir, const char *allow, hsm_t **out)
{
	struct hsm_config c;

	memset(&c, 0, sizeof(c));
	c.module_path = MODULE;
	c.token_label = LABEL;
	c.hsm_dir = dir;
	c.module_allow = allow;
	c.pool_size = 4;
	return hsm_open(&c, out);
}

/* One OAEP round trip with a fresh DEK: 0 correct, 1 unavailable, -1 a
 * wrong answer or another error. */
static int
round_trip(void)
{
	uint8_t dek[32], ct[512], pt[512];
	size_t ct_len = sizeof(ct), pt_len = sizeof(pt);
	int rc;

	if (RAND_bytes(dek, sizeof(dek)) != 1 ||
	    hsm_pub_encrypt(spki, spki_len, HSM_ALG_RSA_OAEP, dek, sizeof(dek),
	        ct, &ct_len) != 0)
		return -1;
	rc = hsm_key_decrypt(H, BIND, blob, blob_len, HSM_ALG_RSA_OAEP, ct,
	    ct_len, pt, &pt_len);
	if (rc == HSM_ERR_UNAVAILABLE)
		return 1;
	if (rc != 0 || pt_len != sizeof(dek) || memcmp(pt, dek, 32) != 0)
		return -1;
	return 0;
}

struct storm {
	int stop;
	unsigned ok, unavailable, wrong;
};

static void *
storm_main(void *arg)
{
	struct storm *s = arg;
	int r;

	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
		r = round_trip();
		if (r == 0)
			__atomic_add_fetch(&s->ok, 1, __ATOMIC_RELAXED);
		else if (r == 1)
			__atomic_add_fetch(&s->unavailable, 1,
			    __ATOMIC_RELAXED);
		else
			__atomic_add_fetch(&s->wrong, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Waits (at most 15 s) for a correct round trip; ms taken, or -1. */
static long
wait_service(void)
{
	long ms;

	for (ms = 0; ms < 15000; ms += 50) {
		if (round_trip() == 0)
			return ms;
		sleep_ms(50);
	}
	return -1;
}

static void
kill_token(void)
{
	long pid;
	uint64_t restarts;

	hsm_process(H, &pid, &restarts);
	if (pid > 0)
		kill((pid_t)pid, SIGKILL);
}

/* init through a one-shot token process (the allowlist of modules); open
 * without anything to unseal with, and sealed, then unsealed by the share. */
static void
test_seal(void)
{
	char path[1400], sealed[600], empty[600], *share = NULL, *other = NULL;
	uint8_t jsig[64];
	hsm_t *h2 = NULL;

	snprintf(sealed, sizeof(sealed), "%s/sealed", tmpdir);
	snprintf(empty, sizeof(empty), "%s/empty", tmpdir);
	T_CHECK(mkdir(sealed, 0700) == 0 && mkdir(empty, 0700) == 0,
	    "directories for a sealed and an empty hsm/");

	T_CHECK(init_with("/tmp/../tmp/libnot-allowed.so", NULL, empty,
	            &share) == HSM_ERR_ARGS,
	    "init: a module outside the allowlist is refused");
	T_CHECK(init_with(MODULE, "/opt:/srv", empty, &share) == HSM_ERR_ARGS,
	    "init: a module outside a configured allowlist is refused");
	T_CHECK(init_with(MODULE, NULL, tmpdir, &share) == 0 && share != NULL,
	    "init in a one-shot token process: one key share back");
	T_CHECK(init_with(MODULE, NULL, empty, &other) == HSM_ERR_EXISTS,
	    "init again: HSM_ERR_EXISTS");

	T_CHECK(open_with(tmpdir, "/opt", &h2) == HSM_ERR_ARGS && h2 == NULL,
	    "open: module outside the allowlist is refused");
	T_CHECK(open_with(empty, NULL, &h2) == HSM_ERR_UNAVAILABLE &&
	        h2 == NULL,
	    "open: nothing to unseal with fails to open");
	/* the same seal.conf without its credential: sealed, then shares */
	snprintf(path, sizeof(path), "cp '%s/seal.conf' '%s/'", tmpdir, sealed);
	T_CHECK(system(path) == 0 && open_with(sealed, NULL, &h2) == 0,
	    "open without the unattended credential: up, sealed");
	if (h2 != NULL) {
		struct hsm_seal_status ss;

		T_CHECK(hsm_seal_status(h2, &ss) == 0 && ss.sealed &&
		        ss.threshold == 1 && ss.shares == 1,
		    "seal status: sealed, 1 of 1");
		T_CHECK(hsm_jwt_sign(h2, (const uint8_t *)"x", 1, jsig) ==
		        HSM_ERR_SEALED,
		    "sealed: a key operation is refused");
		T_CHECK(hsm_unseal_share(h2,
		            "1-000000000000000000000000000000"
		            "0000000000000000000000000000000000",
		            &ss) == 0 &&
		        ss.sealed && ss.result == HSM_SHARE_UNKNOWN,
		    "a share of another vault is refused");
		share[strcspn(share, "\n")] = '\0';
		T_CHECK(hsm_unseal_share(h2, share, &ss) == 0 && !ss.sealed,
		    "this vault's share unseals");
		T_CHECK(hsm_jwt_sign(h2, (const uint8_t *)"x", 1, jsig) == 0,
		    "unsealed: the JWT key signs");
		hsm_close(h2);
		h2 = NULL;
	}
	free(share);
}

/* Key operations through the token process: 0, or -1 when no key could be
 * generated. */
static int
test_ops(void)
{
	uint8_t digest[32], sig[512], jsig[64], *jpub = NULL;
	size_t sig_len = sizeof(sig), jpub_len = 0;
	uint64_t hits, misses;
	size_t busy, total;
	int valid = 0, rc;

	rc = hsm_key_generate(H, BIND, HSM_KTY_RSA, 2048, 0, &blob, &blob_len,
	    &spki, &spki_len);
	T_CHECK(rc == 0 && blob_len > 0 && hsm_pub_size(spki, spki_len) == 256,
	    "generate RSA-2048 through the token process");
	if (rc != 0)
		return -1;
	T_CHECK(round_trip() == 0, "decrypt: the DEK comes back");
	SHA256((const uint8_t *)"abc", 3, digest);
	rc = hsm_key_sign(H, BIND, blob, blob_len, HSM_ALG_PS256, digest, 32,
	    sig, &sig_len);
	T_CHECK(rc == 0 && sig_len == 256 &&
	        hsm_pub_verify(spki, spki_len, HSM_ALG_PS256, digest, 32, sig,
	            sig_len, &valid) == 0 &&
	        valid,
	    "sign: the signature verifies");
	sig_len = 16;
	T_CHECK(hsm_key_sign(H, BIND, blob, blob_len, HSM_ALG_PS256, digest, 32,
	            sig, &sig_len) != 0,
	    "sign into a short buffer fails");
	T_CHECK(hsm_jwt_sign(H, (const uint8_t *)"a.b", 3, jsig) == 0 &&
	        hsm_jwt_public(H, &jpub, &jpub_len) == 0 && jpub_len > 0,
	    "JWT key: sign and public key");
	free(jpub);
	hsm_stats(H, &hits, &misses, &busy, &total);
	T_CHECK(total == 4 && hits + misses >= 2, "stats from the token");
	return 0;
}

/* An oversized request is refused in this process; pid is the token
 * process's. */
static void
test_oversized(long pid)
{
	uint8_t big[20000];
	uint64_t restarts;
	long pid2;

	memset(big, 0x41, sizeof(big));
	{
		uint8_t pt[512];
		size_t pt_len = sizeof(pt);
		T_CHECK(hsm_key_decrypt(H, BIND, big, sizeof(big),
		            HSM_ALG_RSA_OAEP, big, 256, pt,
		            &pt_len) == HSM_ERR_ARGS,
		    "an oversized blob is refused before it is sent");
	}
	hsm_process(H, &pid2, &restarts);
	T_CHECK(pid2 == pid && restarts == 0,
	    "a refused request does not cost the token process");
}

static void
test_storm(void)
{
	pthread_t th[4];
	struct storm st;
	size_t i;

	/* several at once */
	memset(&st, 0, sizeof(st));
	for (i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, storm_main, &st);
	sleep_ms(1500);
	__atomic_store_n(&st.stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	T_CHECK(st.ok > 20 && st.wrong == 0 && st.unavailable == 0,
	    "4 threads at once: every answer correct");
}

static void
test_kill_idle(long pid)
{
	uint64_t restarts;
	long pid2, ms;
	int rc;

	/* killed while idle */
	kill_token();
	sleep_ms(100);
	rc = round_trip();
	T_CHECK(rc == 0 || rc == 1,
	    "right after kill -9: correct or "
	    "unavailable, never wrong");
	ms = wait_service();
	hsm_process(H, &pid2, &restarts);
	T_CHECK(ms >= 0 && pid2 > 0 && pid2 != pid && restarts == 1,
	    "a new token process serves again by itself");
	printf("# service back %ld ms after the kill\n", ms);
	T_CHECK(hsm_health(H) == 0, "health again");
}

static void
test_kill_storm(void)
{
	pthread_t th[4];
	struct storm st;
	uint64_t restarts;
	size_t i;
	long pid2;

	/* killed during a storm */
	memset(&st, 0, sizeof(st));
	for (i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, storm_main, &st);
	sleep_ms(500);
	kill_token();
	sleep_ms(3000);
	__atomic_store_n(&st.stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	printf("# storm: %u ok, %u unavailable, %u wrong\n", st.ok,
	    st.unavailable, st.wrong);
	T_CHECK(st.wrong == 0, "kill -9 during a storm: no wrong answer");
	T_CHECK(st.unavailable > 0,
	    "kill -9 during a storm: some calls "
	    "were answered unavailable");
	T_CHECK(wait_service() >= 0, "kill -9 during a storm: service back");
	hsm_process(H, &pid2, &restarts);
	T_CHECK(restarts == 2, "two restarts in all");
}

int
main(void)
{
	char path[1400];
	uint64_t r0;
	long pid;
	int rc;

	if (softhsm_setup(tmpdir) != 0) {
		printf("not ok - softhsm setup\n");
		return 1;
	}
	test_seal();
	rc = open_with(tmpdir, NULL, &H);
	T_CHECK(rc == 0 && H != NULL, "open through the token process");
	if (H == NULL)
		return 1;
	hsm_process(H, &pid, &r0);
	T_CHECK(pid > 0 && pid != getpid() && r0 == 0,
	    "a token process of its own");
	T_CHECK(hsm_health(H) == 0, "health");
	if (test_ops() != 0)
		return 1;
	test_oversized(pid);
	test_storm();
	test_kill_idle(pid);
	test_kill_storm();

	hsm_close(H);
	free(blob);
	free(spki);
	snprintf(path, sizeof(path), "rm -rf '%s'", tmpdir);
	if (system(path) != 0)
		printf("# could not remove %s\n", tmpdir);
	return T_DONE();
}
