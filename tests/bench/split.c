/*
 * split.c — the cost of the token process: RSA-2048 OAEP decrypt of the
 * vault's own code run in this process (tok_key_decrypt, as the server
 * did before the split) against the same call through the token process
 * (hsm_key_decrypt: a message each way), on one token, one key.
 *
 * Owns: one throwaway token (first free slot of SOFTHSM2_CONF's module),
 * timed loops in the order in-process, split, split, in-process (each
 * SECONDS/2: a linear drift of the machine favours neither side), and the
 * CPU of both processes per operation (getrusage of this one, /proc stat
 * of the token process).
 * Must never: be linked into the product; touch a vault's token.
 *
 * Usage: split MODULE SECONDS THREADS
 * Prints JSON: {"inproc":{"rps":..,"cpu_us":..},"split":{...}}
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "hsm/hsm.h"
#include "hsm/token.h"

#define SPLIT_THREADS_MAX 32
#define BIND "bench/0123456789abcdef0123456789abcdef"
#define SO_PIN "bench-so-pin-split"
#define USER_PIN "bench-user-pin-split"

static tok_t *T;
static hsm_t *H;
static uint8_t *blob, *spki, ct[256], dek[32];
static size_t blob_len, spki_len, ct_len = sizeof(ct);
static double seconds;
static int split_mode;

struct worker {
	pthread_t t;
	unsigned long ops;
	int failed;
};

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
self_cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
	    (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
}

/* utime + stime of the token process, in microseconds */
static double
token_cpu_us(void)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	uint64_t restarts;
	long pid;
	FILE *fp;
	int i;

	if (H == NULL)
		return 0;
	hsm_process(H, &pid, &restarts);
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if ((fp = fopen(path, "r")) == NULL)
		return 0;
	if (fgets(buf, sizeof(buf), fp) == NULL) {
		fclose(fp);
		return 0;
	}
	fclose(fp);
	/* after "(comm)": field 3 on; utime and stime are 14 and 15 */
	if ((p = strrchr(buf, ')')) == NULL)
		return 0;
	p += 2;
	for (i = 3; i < 14 && p != NULL; i++) {
		p = strchr(p, ' ');
		if (p != NULL)
			p++;
	}
	if (p == NULL || sscanf(p, "%lu %lu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

static void *
work(void *arg)
{
	struct worker *w = arg;
	uint8_t pt[512];
	size_t pt_len;
	double end = now() + seconds;
	int rc;

	while (now() < end) {
		pt_len = sizeof(pt);
		if (split_mode)
			rc = hsm_key_decrypt(H, BIND, blob, blob_len,
			    HSM_ALG_RSA_OAEP, ct, ct_len, pt, &pt_len);
		else
			rc = tok_key_decrypt(T, BIND, blob, blob_len,
			    HSM_ALG_RSA_OAEP, ct, ct_len, pt, &pt_len);
		if (rc != 0 || pt_len != 32 || memcmp(pt, dek, 32) != 0) {
			w->failed = 1;
			return NULL;
		}
		w->ops++;
	}
	return NULL;
}

struct figure {
	double ops, secs, cpu_us;
};

static void
measure(int mode, unsigned threads, struct figure *fg)
{
	struct worker w[SPLIT_THREADS_MAX];
	double t0, c0, k0;
	unsigned i;

	memset(w, 0, sizeof(w));
	split_mode = mode;
	t0 = now();
	c0 = self_cpu_us();
	k0 = mode ? token_cpu_us() : 0;
	for (i = 0; i < threads; i++)
		pthread_create(&w[i].t, NULL, work, &w[i]);
	for (i = 0; i < threads; i++) {
		pthread_join(w[i].t, NULL);
		if (w[i].failed) {
			fprintf(stderr, "split: a decrypt failed\n");
			exit(1);
		}
		fg->ops += (double)w[i].ops;
	}
	fg->secs += now() - t0;
	fg->cpu_us += self_cpu_us() - c0 + (mode ? token_cpu_us() - k0 : 0);
}

int
main(int argc, char **argv)
{
	char dir[] = "/tmp/p11vault-split-XXXXXX", pin[600], label[32];
	struct tok_config tc;
	struct hsm_config hc;
	struct figure in = { 0, 0, 0 }, sp = { 0, 0, 0 };
	unsigned threads;
	FILE *fp;

	if (argc >= 2 && strcmp(argv[1], HSM_TOKEN_ARGV) == 0)
		return hsm_token_main(argc, argv);
	if (argc != 4) {
		fprintf(stderr, "usage: split MODULE SECONDS THREADS\n");
		return 2;
	}
	seconds = atof(argv[2]) / 2;
	threads = (unsigned)atoi(argv[3]);
	if (threads == 0 || threads > SPLIT_THREADS_MAX || seconds <= 0)
		return 2;
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(pin, sizeof(pin), "%s/user.pin", dir);
	if ((fp = fopen(pin, "w")) == NULL)
		return 1;
	fputs(USER_PIN, fp);
	fclose(fp);
	/* a label of its own: the token directory may hold earlier runs' */
	snprintf(label, sizeof(label), "p11vault-split-%ld", (long)getpid());
	if (tok_token_init(argv[1], label, SO_PIN, USER_PIN) != 0) {
		fprintf(stderr, "split: token init failed\n");
		return 1;
	}
	memset(&tc, 0, sizeof(tc));
	tc.module_path = argv[1];
	tc.token_label = label;
	tc.user_pin = USER_PIN;
	tc.pool_size = threads;
	memset(&hc, 0, sizeof(hc));
	hc.module_path = argv[1];
	hc.token_label = label;
	hc.hsm_dir = dir;
	hc.pool_size = threads;
	if (tok_open(&tc, &T) != 0 || hsm_open(&hc, &H) != 0) {
		fprintf(stderr, "split: open failed\n");
		return 1;
	}
	if (tok_key_generate(T, BIND, HSM_KTY_RSA, 2048, 0, &blob, &blob_len,
	        &spki, &spki_len) != 0 ||
	    RAND_bytes(dek, sizeof(dek)) != 1 ||
	    hsm_pub_encrypt(spki, spki_len, HSM_ALG_RSA_OAEP, dek, 32, ct,
	        &ct_len) != 0) {
		fprintf(stderr, "split: key setup failed\n");
		return 1;
	}
	measure(0, threads, &in);
	measure(1, threads, &sp);
	measure(1, threads, &sp);
	measure(0, threads, &in);
	printf(
	    "{\"threads\":%u,\"inproc\":{\"rps\":%.1f,\"cpu_us\":%.1f},"
	    "\"split\":{\"rps\":%.1f,\"cpu_us\":%.1f}}\n",
	    threads, in.ops / in.secs, in.cpu_us / in.ops, sp.ops / sp.secs,
	    sp.cpu_us / sp.ops);
	hsm_close(H);
	tok_close(T);
	free(blob);
	free(spki);
	snprintf(pin, sizeof(pin), "rm -rf '%s'", dir);
	return system(pin) == 0 ? 0 : 1;
}
