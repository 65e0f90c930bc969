/*
 * split.c — the cost of the token process: RSA-2048 OAEP decrypt of the
 * vault's own code run in this process (tok_key_decrypt, as the server
 * did before the split) against the same call through the token process
 * (hsm_key_decrypt: a message each way), on one token, one key.
 *
 * Owns: one throwaway token (first free slot of SOFTHSM2_CONF's module),
 * ROUNDS rounds of timed loops, each in the order in-process, split,
 * split, in-process (a linear drift of the machine within a round
 * favours neither side; the machine's speed moves by 10-20 % within
 * minutes, so each round is judged on its own and the median decides),
 * and the CPU of both processes per operation (the CPU-time clocks of
 * this process and of the token process, nanoseconds).
 * Must never: be linked into the product; touch a vault's token.
 *
 * Usage: split MODULE SECONDS THREADS [ROUNDS]  (SECONDS in all, default
 * 3 rounds)
 * Prints JSON: {"threads":..,"inproc":{"rps":..,"cpu_us":..},"split":{...},
 * "rounds":[{"inproc":{..},"split":{..}},..],"median_ratio":..,
 * "median_cpu_delta_us":..}
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "hsm/hsm.h"
#include "hsm/token.h"

#define SPLIT_THREADS_MAX 32
#define SPLIT_ROUNDS_MAX 20
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
clock_us(clockid_t id)
{
	struct timespec ts;

	if (clock_gettime(id, &ts) != 0)
		return 0;
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double
self_cpu_us(void)
{
	return clock_us(CLOCK_PROCESS_CPUTIME_ID);
}

/* the CPU time of the token process (all its threads), in microseconds */
static double
token_cpu_us(void)
{
	uint64_t restarts;
	clockid_t id;
	long pid;

	hsm_process(H, &pid, &restarts);
	/* a figure without the token process's CPU would flatter the split */
	if (clock_getcpuclockid((pid_t)pid, &id) != 0) {
		fprintf(stderr, "split: no CPU clock for the token process\n");
		exit(1);
	}
	return clock_us(id);
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
add(struct figure *to, const struct figure *f)
{
	to->ops += f->ops;
	to->secs += f->secs;
	to->cpu_us += f->cpu_us;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* the median of v[0..n) (sorts v) */
static double
median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

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
	struct figure rin[SPLIT_ROUNDS_MAX], rsp[SPLIT_ROUNDS_MAX];
	double ratio[SPLIT_ROUNDS_MAX], delta[SPLIT_ROUNDS_MAX];
	unsigned threads, rounds = 3, i;
	FILE *fp;

	if (argc >= 2 && strcmp(argv[1], HSM_TOKEN_ARGV) == 0)
		return hsm_token_main(argc, argv);
	if (argc != 4 && argc != 5) {
		fprintf(stderr,
		    "usage: split MODULE SECONDS THREADS [ROUNDS]\n");
		return 2;
	}
	if (argc == 5)
		rounds = (unsigned)atoi(argv[4]);
	threads = (unsigned)atoi(argv[3]);
	if (threads == 0 || threads > SPLIT_THREADS_MAX || rounds == 0 ||
	    rounds > SPLIT_ROUNDS_MAX || atof(argv[2]) <= 0)
		return 2;
	seconds = atof(argv[2]) / (4.0 * rounds);
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
	measure(1, threads, &sp); /* warm-up: the token process's first calls */
	memset(&sp, 0, sizeof(sp));
	for (i = 0; i < rounds; i++) {
		memset(&rin[i], 0, sizeof(rin[i]));
		memset(&rsp[i], 0, sizeof(rsp[i]));
		measure(0, threads, &rin[i]);
		measure(1, threads, &rsp[i]);
		measure(1, threads, &rsp[i]);
		measure(0, threads, &rin[i]);
		ratio[i] = (rsp[i].ops / rsp[i].secs) /
		    (rin[i].ops / rin[i].secs);
		delta[i] = rsp[i].cpu_us / rsp[i].ops -
		    rin[i].cpu_us / rin[i].ops;
		add(&in, &rin[i]);
		add(&sp, &rsp[i]);
	}
	printf(
	    "{\"threads\":%u,\"inproc\":{\"rps\":%.1f,\"cpu_us\":%.1f},"
	    "\"split\":{\"rps\":%.1f,\"cpu_us\":%.1f},\"rounds\":[",
	    threads, in.ops / in.secs, in.cpu_us / in.ops, sp.ops / sp.secs,
	    sp.cpu_us / sp.ops);
	for (i = 0; i < rounds; i++)
		printf(
		    "%s{\"inproc\":{\"rps\":%.1f,\"cpu_us\":%.1f},"
		    "\"split\":{\"rps\":%.1f,\"cpu_us\":%.1f}}",
		    i ? "," : "", rin[i].ops / rin[i].secs,
		    rin[i].cpu_us / rin[i].ops, rsp[i].ops / rsp[i].secs,
		    rsp[i].cpu_us / rsp[i].ops);
	printf("],\"median_ratio\":%.4f,\"median_cpu_delta_us\":%.1f}\n",
	    median(ratio, rounds), median(delta, rounds));
	hsm_close(H);
	tok_close(T);
	free(blob);
	free(spki);
	snprintf(pin, sizeof(pin), "rm -rf '%s'", dir);
	return system(pin) == 0 ? 0 : 1;
}
