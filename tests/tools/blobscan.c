/*
 * blobscan — the key-trying half of the offline attack (blobScan() in
 * tests/api/lib/offline.mjs, which collects the candidate keys and the
 * blobs, runs this, and checks every hit itself with Node's crypto):
 * every candidate 32-byte window as an AES-256 key against every blob.
 * In C because OpenSSL's id-aes256-wrap-pad unwraps through a slow block
 * function (~180 us for an RSA-2048 blob, from Node or C alike); AES-KWP
 * over an ECB context here takes ~27 us.
 *
 *   blobscan [--all] < INPUT
 *
 * INPUT (all integers u32 big-endian):
 *   nwin, nwin x 32 bytes          candidate keys (distinct)
 *   ndom, ndom x window index      candidate domain keys (v3 attacks)
 *   nblob, nblob x (len, len bytes) blobs, "P11V" | version | kty | param
 * Per blob version:
 *   1, 2: each window as the AES-KWP (RFC 5649) key of the KWP part
 *         (v1: bytes [8, len); v2: [8, len - 32));
 *   3:    iv = [8, 20), ct = [20, len - 16), tag = [len - 16, len); each
 *         window (a) as the AES-256-GCM key with AAD = the 8-byte header,
 *         then each domain key as the KWP key of what it opens; (b) as the
 *         KWP key of ct itself; (c) as the GCM key with the tag ignored
 *         (AES-CTR from IV | 00000002), then each domain key as KWP key.
 *         The windows that opened a v1/v2 blob join the domain keys.
 * A blob is tried until it opens (a plaintext that passes the KWP check and
 * starts like DER, 0x30), or with --all to the end. Output: one JSON line
 * per hit, {"blob":B,"win":W,"dom":D,"how":"..."} (dom -1: one key), then
 * {"attempts":N,"threads":T}. Exit status 0, or 2 on bad input.
 *
 * Built on the fly by offline.mjs: cc -O2 blobscan.c -lcrypto -lpthread.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#define HDR 8
#define HMAC_TAG 32
#define GCM_IV 12
#define GCM_TAG 16
#define MAX_THREADS 16
#define MAX_HITS 4096

struct blob {
	const uint8_t *b;
	size_t len;
	unsigned version;
	const uint8_t *kwp; /* v1, v2 */
	size_t kwp_len;
	const uint8_t *iv, *ct, *tag; /* v3 */
	size_t ct_len;
	atomic_int opened;
};

struct hit {
	unsigned blob, win;
	long dom;
	const char *how;
};

static const uint8_t *wins;
static size_t nwin;
static uint32_t *doms;
static size_t ndom;
static struct blob *blobs;
static size_t nblob;
static int all;
static unsigned nthreads;

static pthread_mutex_t hmu = PTHREAD_MUTEX_INITIALIZER;
static struct hit hits[MAX_HITS];
static size_t nhits;
static atomic_ullong attempts;

static void
add_hit(unsigned b, unsigned w, long d, const char *how)
{
	pthread_mutex_lock(&hmu);
	if (nhits < MAX_HITS) {
		hits[nhits].blob = b;
		hits[nhits].win = w;
		hits[nhits].dom = d;
		hits[nhits].how = how;
		nhits++;
	}
	pthread_mutex_unlock(&hmu);
	atomic_store(&blobs[b].opened, 1);
}

/* An ECB decryption context for key k. */
static int
ecb_key(EVP_CIPHER_CTX *c, const uint8_t *k)
{
	if (EVP_DecryptInit_ex(c, EVP_aes_256_ecb(), NULL, k, NULL) != 1)
		return -1;
	EVP_CIPHER_CTX_set_padding(c, 0);
	return 0;
}

/*
 * RFC 5649 unwrap of ct (a multiple of 8, >= 16 bytes) with the ECB
 * context c: 1 if the integrity check passes and the plaintext starts
 * with 0x30, else 0. R is scratch of ct_len bytes.
 */
static int
kwp_ok(EVP_CIPHER_CTX *c, const uint8_t *ct, size_t ct_len, uint8_t *R)
{
	uint8_t A[8], B[16], O[16];
	size_t n, i, mli, pad;
	int j, ol;
	uint64_t t;

	if (ct_len < 16 || ct_len % 8 != 0)
		return 0;
	atomic_fetch_add_explicit(&attempts, 1, memory_order_relaxed);
	n = ct_len / 8 - 1;
	if (n == 1) {
		if (EVP_DecryptUpdate(c, O, &ol, ct, 16) != 1)
			return 0;
		memcpy(A, O, 8);
		memcpy(R, O + 8, 8);
	} else {
		memcpy(A, ct, 8);
		memcpy(R, ct + 8, n * 8);
		for (j = 5; j >= 0; j--) {
			for (i = n; i >= 1; i--) {
				t = (uint64_t)n * (uint64_t)j + i;
				memcpy(B, A, 8);
				for (int b = 0; b < 8; b++)
					B[7 - b] ^= (uint8_t)(t >> (8 * b));
				memcpy(B + 8, R + (i - 1) * 8, 8);
				if (EVP_DecryptUpdate(c, O, &ol, B, 16) != 1)
					return 0;
				memcpy(A, O, 8);
				memcpy(R + (i - 1) * 8, O + 8, 8);
			}
		}
	}
	if (A[0] != 0xA6 || A[1] != 0x59 || A[2] != 0x59 || A[3] != 0xA6)
		return 0;
	mli = (size_t)A[4] << 24 | (size_t)A[5] << 16 | (size_t)A[6] << 8 |
	    A[7];
	if (mli <= 8 * (n - 1) || mli > 8 * n)
		return 0;
	for (pad = mli; pad < 8 * n; pad++)
		if (R[pad] != 0)
			return 0;
	return R[0] == 0x30;
}

static int
gcm_open(EVP_CIPHER_CTX *g, const uint8_t *k, const struct blob *bl,
    uint8_t *out)
{
	int l, l2;

	atomic_fetch_add_explicit(&attempts, 1, memory_order_relaxed);
	if (EVP_DecryptInit_ex(g, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(g, EVP_CTRL_GCM_SET_IVLEN, GCM_IV, NULL) != 1 ||
	    EVP_DecryptInit_ex(g, NULL, NULL, k, bl->iv) != 1 ||
	    EVP_DecryptUpdate(g, NULL, &l, bl->b, HDR) != 1 ||
	    EVP_DecryptUpdate(g, out, &l, bl->ct, (int)bl->ct_len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(g, EVP_CTRL_GCM_SET_TAG, GCM_TAG,
	        (void *)bl->tag) != 1)
		return 0;
	return EVP_DecryptFinal_ex(g, out + l, &l2) == 1;
}

static int
ctr_open(EVP_CIPHER_CTX *g, const uint8_t *k, const struct blob *bl,
    uint8_t *out)
{
	uint8_t iv[16];
	int l;

	memcpy(iv, bl->iv, GCM_IV);
	iv[12] = 0;
	iv[13] = 0;
	iv[14] = 0;
	iv[15] = 2;
	return EVP_DecryptInit_ex(g, EVP_aes_256_ctr(), NULL, k, iv) == 1 &&
	    EVP_DecryptUpdate(g, out, &l, bl->ct, (int)bl->ct_len) == 1;
}

struct worker {
	unsigned id;
	int phase;
	EVP_CIPHER_CTX **dctx; /* per domain key */
	size_t ndctx;
};

static void *
work(void *arg)
{
	struct worker *w = arg;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new(), *g = EVP_CIPHER_CTX_new();
	uint8_t *R = NULL, *inner = NULL;
	size_t maxlen = 0, wi, bi, d;

	for (bi = 0; bi < nblob; bi++)
		if (blobs[bi].len > maxlen)
			maxlen = blobs[bi].len;
	R = malloc(maxlen + 16);
	inner = malloc(maxlen + 16);
	if (c == NULL || g == NULL || R == NULL || inner == NULL)
		abort();
	for (wi = w->id; wi < nwin; wi += nthreads) {
		const uint8_t *k = wins + wi * 32;
		int keyed = 0;

		for (bi = 0; bi < nblob; bi++) {
			struct blob *bl = &blobs[bi];

			if (!all && atomic_load(&bl->opened))
				continue;
			if (w->phase == 1 && bl->kwp != NULL) {
				if (!keyed && ecb_key(c, k) != 0)
					abort();
				keyed = 1;
				if (kwp_ok(c, bl->kwp, bl->kwp_len, R))
					add_hit(bi, wi, -1, "kwp");
			} else if (w->phase == 2 && bl->ct != NULL) {
				if (gcm_open(g, k, bl, inner))
					for (d = 0; d < w->ndctx; d++)
						if (kwp_ok(w->dctx[d], inner,
						        bl->ct_len, R)) {
							add_hit(bi, wi, doms[d],
							    "gcm-aad-header+kwp");
							break;
						}
				if (!keyed && ecb_key(c, k) != 0)
					abort();
				keyed = 1;
				if (kwp_ok(c, bl->ct, bl->ct_len, R))
					add_hit(bi, wi, -1,
					    "kwp-on-gcm-ciphertext");
				if (w->ndctx > 0 && ctr_open(g, k, bl, inner))
					for (d = 0; d < w->ndctx; d++)
						if (kwp_ok(w->dctx[d], inner,
						        bl->ct_len, R)) {
							add_hit(bi, wi, doms[d],
							    "gcm-untagged+kwp");
							break;
						}
			}
		}
	}
	EVP_CIPHER_CTX_free(c);
	EVP_CIPHER_CTX_free(g);
	free(R);
	free(inner);
	return NULL;
}

static uint8_t *
read_all(size_t *len)
{
	size_t cap = 1 << 20, n = 0, r;
	uint8_t *b = malloc(cap);

	while (b != NULL && (r = fread(b + n, 1, cap - n, stdin)) > 0) {
		n += r;
		if (n == cap && (b = realloc(b, cap *= 2)) == NULL)
			break;
	}
	*len = n;
	return b;
}

static int
u32(const uint8_t *in, size_t len, size_t *pos, size_t *out)
{
	if (*pos + 4 > len)
		return -1;
	*out = (size_t)in[*pos] << 24 | (size_t)in[*pos + 1] << 16 |
	    (size_t)in[*pos + 2] << 8 | in[*pos + 3];
	*pos += 4;
	return 0;
}

static void
run_phase(int phase)
{
	pthread_t th[MAX_THREADS];
	struct worker wk[MAX_THREADS];
	unsigned t;
	size_t d;

	for (t = 0; t < nthreads; t++) {
		wk[t].id = t;
		wk[t].phase = phase;
		wk[t].ndctx = phase == 2 ? ndom : 0;
		wk[t].dctx = calloc(ndom + 1, sizeof(*wk[t].dctx));
		for (d = 0; d < wk[t].ndctx; d++) {
			wk[t].dctx[d] = EVP_CIPHER_CTX_new();
			if (wk[t].dctx[d] == NULL ||
			    ecb_key(wk[t].dctx[d], wins + doms[d] * 32) != 0)
				abort();
		}
		if (pthread_create(&th[t], NULL, work, &wk[t]) != 0)
			abort();
	}
	for (t = 0; t < nthreads; t++) {
		pthread_join(th[t], NULL);
		for (d = 0; d < wk[t].ndctx; d++)
			EVP_CIPHER_CTX_free(wk[t].dctx[d]);
		free(wk[t].dctx);
	}
}

int
main(int argc, char **argv)
{
	size_t len, pos = 0, i, l, d;
	uint8_t *in;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	all = argc > 1 && strcmp(argv[1], "--all") == 0;
	nthreads = ncpu < 1    ? 1 :
	    ncpu > MAX_THREADS ? MAX_THREADS :
	                         (unsigned)ncpu;
	if ((in = read_all(&len)) == NULL || u32(in, len, &pos, &nwin) ||
	    pos + nwin * 32 > len)
		goto bad;
	wins = in + pos;
	pos += nwin * 32;
	if (u32(in, len, &pos, &ndom))
		goto bad;
	if ((doms = calloc(ndom + 1, sizeof(*doms))) == NULL)
		goto bad;
	for (i = 0; i < ndom; i++)
		if (u32(in, len, &pos, &l) || l >= nwin)
			goto bad;
		else
			doms[i] = (uint32_t)l;
	if (u32(in, len, &pos, &nblob))
		goto bad;
	if ((blobs = calloc(nblob + 1, sizeof(*blobs))) == NULL)
		goto bad;
	for (i = 0; i < nblob; i++) {
		struct blob *bl = &blobs[i];

		if (u32(in, len, &pos, &l) || pos + l > len)
			goto bad;
		bl->b = in + pos;
		bl->len = l;
		pos += l;
		if (l < HDR || memcmp(bl->b, "P11V", 4) != 0)
			continue;
		bl->version = bl->b[4];
		if (bl->version == 1) {
			bl->kwp = bl->b + HDR;
			bl->kwp_len = l - HDR;
		} else if (bl->version == 2 && l > HDR + HMAC_TAG) {
			bl->kwp = bl->b + HDR;
			bl->kwp_len = l - HDR - HMAC_TAG;
		} else if (bl->version >= 3 && l > HDR + GCM_IV + GCM_TAG) {
			bl->iv = bl->b + HDR;
			bl->ct = bl->iv + GCM_IV;
			bl->ct_len = l - HDR - GCM_IV - GCM_TAG;
			bl->tag = bl->ct + bl->ct_len;
		}
	}

	run_phase(1);
	/* the keys that opened a v1/v2 blob are domain keys too */
	if ((doms = realloc(doms, (ndom + nhits + 1) * sizeof(*doms))) == NULL)
		goto bad;
	for (i = 0; i < nhits; i++) {
		for (d = 0; d < ndom && doms[d] != hits[i].win; d++)
			;
		if (d == ndom)
			doms[ndom++] = hits[i].win;
	}
	run_phase(2);

	for (i = 0; i < nhits; i++)
		printf("{\"blob\":%u,\"win\":%u,\"dom\":%ld,\"how\":\"%s\"}\n",
		    hits[i].blob, hits[i].win, hits[i].dom, hits[i].how);
	printf("{\"attempts\":%llu,\"threads\":%u}\n",
	    (unsigned long long)atomic_load(&attempts), nthreads);
	return 0;
bad:
	fprintf(stderr, "blobscan: bad input\n");
	return 2;
}
