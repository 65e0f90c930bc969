/*
 * raw_token.c — the ceiling: RSA-2048 straight on PKCS#11, no vault.
 *
 * Owns: one throwaway token (initialised in the first free slot of the
 * module named by SOFTHSM2_CONF), one RSA-2048 key pair, and timed loops
 * of C_Decrypt (CKM_RSA_PKCS_OAEP, SHA-1) and C_GenerateKeyPair with
 * 1..N threads, each thread with its own session.
 * Must never: be linked into the product; touch a vault's token.
 *
 * Usage: raw_token MODULE SECONDS THREADS_MAX
 * Prints JSON: {"decrypt":{"1":ops_per_s,"2":...},"keygen":{"1":..,...}}
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

#define RAW_THREADS_MAX 16
#define SO_PIN "bench-so-pin"
#define USER_PIN "bench-user-pin"

static CK_FUNCTION_LIST *f;
static CK_SLOT_ID slot;
static CK_OBJECT_HANDLE priv, pub;
static unsigned char ct[256];
static CK_ULONG ct_len;
static double seconds;
static double last_cpu_us_per_op; /* of the last measure() */

struct worker {
	pthread_t t;
	int keygen;
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

static void
die(const char *what, CK_RV rv)
{
	fprintf(stderr, "raw_token: %s failed: 0x%lx\n", what,
	    (unsigned long)rv);
	exit(1);
}

static CK_RV
gen_pair(CK_SESSION_HANDLE s, CK_BBOOL token, CK_OBJECT_HANDLE *pu,
    CK_OBJECT_HANDLE *pr)
{
	CK_MECHANISM m = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
	CK_ULONG bits = 2048;
	CK_BYTE e[] = { 1, 0, 1 };
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE pt[] = {
		{ CKA_TOKEN, &token, sizeof(token) },
		{ CKA_ENCRYPT, &yes, sizeof(yes) },
		{ CKA_MODULUS_BITS, &bits, sizeof(bits) },
		{ CKA_PUBLIC_EXPONENT, e, sizeof(e) },
	};
	CK_ATTRIBUTE vt[] = {
		{ CKA_TOKEN, &token, sizeof(token) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_DECRYPT, &yes, sizeof(yes) },
	};

	return f->C_GenerateKeyPair(s, &m, pt, 4, vt, 4, pu, pr);
}

static void *
run(void *arg)
{
	struct worker *w = arg;
	CK_RSA_PKCS_OAEP_PARAMS p = { CKM_SHA_1, CKG_MGF1_SHA1,
		CKZ_DATA_SPECIFIED, NULL, 0 };
	CK_MECHANISM m = { CKM_RSA_PKCS_OAEP, &p, sizeof(p) };
	CK_SESSION_HANDLE s;
	unsigned char out[256];
	CK_ULONG out_len;
	CK_OBJECT_HANDLE a, b;
	double end;

	if (f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
	        NULL, &s) != CKR_OK) {
		w->failed = 1;
		return NULL;
	}
	end = now() + seconds;
	while (now() < end) {
		if (w->keygen) {
			if (gen_pair(s, CK_FALSE, &a, &b) != CKR_OK) {
				w->failed = 1;
				break;
			}
			(void)f->C_DestroyObject(s, a);
			(void)f->C_DestroyObject(s, b);
		} else {
			out_len = sizeof(out);
			if (f->C_DecryptInit(s, &m, priv) != CKR_OK ||
			    f->C_Decrypt(s, ct, ct_len, out, &out_len) !=
			        CKR_OK ||
			    out_len != 32) {
				w->failed = 1;
				break;
			}
		}
		w->ops++;
	}
	(void)f->C_CloseSession(s);
	return NULL;
}

static double
measure(int keygen, int n)
{
	struct worker w[RAW_THREADS_MAX];
	unsigned long ops = 0;
	double t0, dt;
	int i;

	struct rusage ru0, ru1;

	memset(w, 0, sizeof(w));
	getrusage(RUSAGE_SELF, &ru0);
	t0 = now();
	for (i = 0; i < n; i++) {
		w[i].keygen = keygen;
		if (pthread_create(&w[i].t, NULL, run, &w[i]) != 0)
			die("pthread_create", 0);
	}
	for (i = 0; i < n; i++) {
		pthread_join(w[i].t, NULL);
		if (w[i].failed)
			die(keygen ? "C_GenerateKeyPair" : "C_Decrypt", 0);
		ops += w[i].ops;
	}
	dt = now() - t0;
	getrusage(RUSAGE_SELF, &ru1);
	last_cpu_us_per_op = ops == 0 ?
	    0 :
	    ((double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec +
	         ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) *
	            1e6 +
	        (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec +
	            ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec)) /
	        (double)ops;
	return (double)ops / dt;
}

int
main(int argc, char **argv)
{
	CK_C_INITIALIZE_ARGS ia;
	CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR);
	CK_SLOT_ID slots[64];
	CK_ULONG ns = 64, i;
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE s;
	CK_RSA_PKCS_OAEP_PARAMS p = { CKM_SHA_1, CKG_MGF1_SHA1,
		CKZ_DATA_SPECIFIED, NULL, 0 };
	CK_MECHANISM m = { CKM_RSA_PKCS_OAEP, &p, sizeof(p) };
	unsigned char label[32], msg[32];
	int tmax, t, found = 0;
	void *dl;
	CK_RV rv;

	if (argc != 4 && !(argc == 5 && strcmp(argv[4], "decrypt") == 0)) {
		fprintf(stderr,
		    "usage: raw_token MODULE SECONDS THREADS "
		    "[decrypt]\n"
		    "  (decrypt: only C_Decrypt with exactly THREADS threads)\n");
		return 2;
	}
	seconds = atof(argv[2]);
	tmax = atoi(argv[3]);
	if (seconds <= 0 || tmax < 1 || tmax > RAW_THREADS_MAX)
		return 2;
	dl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL)
		die("dlopen", 0);
	*(void **)(&gfl) = dlsym(dl, "C_GetFunctionList");
	if (gfl == NULL || gfl(&f) != CKR_OK)
		die("C_GetFunctionList", 0);
	memset(&ia, 0, sizeof(ia));
	ia.flags = CKF_OS_LOCKING_OK;
	if ((rv = f->C_Initialize(&ia)) != CKR_OK)
		die("C_Initialize", rv);
	if ((rv = f->C_GetSlotList(CK_TRUE, slots, &ns)) != CKR_OK)
		die("C_GetSlotList", rv);
	for (i = 0; i < ns && !found; i++)
		if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    !(ti.flags & CKF_TOKEN_INITIALIZED)) {
			slot = slots[i];
			found = 1;
		}
	if (!found)
		die("finding a free slot", 0);
	memset(label, ' ', sizeof(label));
	memcpy(label, "bench-raw", 9);
	if ((rv = f->C_InitToken(slot, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN),
	         label)) != CKR_OK)
		die("C_InitToken", rv);
	if ((rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
	         NULL, NULL, &s)) != CKR_OK)
		die("C_OpenSession", rv);
	if ((rv = f->C_Login(s, CKU_SO, (CK_UTF8CHAR *)SO_PIN,
	         strlen(SO_PIN))) != CKR_OK ||
	    (rv = f->C_InitPIN(s, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN))) !=
	        CKR_OK ||
	    (rv = f->C_Logout(s)) != CKR_OK ||
	    (rv = f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)USER_PIN,
	         strlen(USER_PIN))) != CKR_OK)
		die("login", rv);
	/* a session object, as the vault's unwrapped keys are */
	if ((rv = gen_pair(s, CK_FALSE, &pub, &priv)) != CKR_OK)
		die("C_GenerateKeyPair", rv);
	memset(msg, 0x5a, sizeof(msg));
	ct_len = sizeof(ct);
	if ((rv = f->C_EncryptInit(s, &m, pub)) != CKR_OK ||
	    (rv = f->C_Encrypt(s, msg, sizeof(msg), ct, &ct_len)) != CKR_OK)
		die("C_Encrypt", rv);

	if (argc == 5) {
		double r = measure(0, tmax);
		printf("{\"decrypt\":{\"%d\":%.1f},\"cpu_us_per_op\":%.1f}\n",
		    tmax, r, last_cpu_us_per_op);
		(void)f->C_CloseSession(s);
		(void)f->C_Finalize(NULL);
		return 0;
	}
	printf("{\"decrypt\":{");
	for (t = 1; t <= tmax; t++)
		printf("%s\"%d\":%.1f", t > 1 ? "," : "", t, measure(0, t));
	printf("},\"cpu_us_per_op\":%.1f,\"keygen\":{", last_cpu_us_per_op);
	for (t = 1; t <= tmax; t++)
		printf("%s\"%d\":%.2f", t > 1 ? "," : "", t, measure(1, t));
	printf("}}\n");
	(void)f->C_CloseSession(s);
	(void)f->C_Finalize(NULL);
	return 0;
}
