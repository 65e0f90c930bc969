/*
 * shim.c — a fault-injecting PKCS#11 module for tests. It forwards to a
 * real module (env P11SHIM_MODULE, default SoftHSMv2) and, on command,
 * fails calls the way a broken device would, or slows them down.
 *
 * Control: the text file named by env P11SHIM_CONTROL, re-read whenever
 * its mtime/size/inode change (one stat() per call), lines of
 *   mode=none|device_error|session_invalid|token_not_present|not_logged_in
 *   latency_ms=N          (sleep before each call in the selected set)
 *   ops=all|crypto        (default all)
 * ops=crypto selects C_Decrypt, C_Sign, C_UnwrapKey, C_WrapKey and
 * C_GenerateKeyPair only; ops=all every slot and session call as well
 * (as an unplugged device: C_GetSlotList(present) lists no slot for
 * token_not_present). C_Initialize, C_Finalize, C_GetInfo,
 * C_GetFunctionList, C_CloseSession and C_CloseAllSessions always go
 * through: closing a session of a lost device succeeds locally.
 * Counters: env P11SHIM_STATS names a file rewritten on every injected
 * fault and at C_Finalize: "calls=N faults=N delayed=N".
 *
 * Owns nothing of the product; must never be linked into it.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

#define DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"

enum mode { M_NONE, M_DEVICE, M_SESSION, M_TOKEN, M_LOGIN };
/* call classes */
enum cls { C_SLOT, C_OPEN, C_SESS, C_LOGIN };

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static void *real_dl;
static CK_FUNCTION_LIST *real;
static CK_FUNCTION_LIST shim;
static int shim_ready;

static struct stat ctl_st;
static int ctl_seen;
static enum mode cur_mode;
static unsigned long cur_latency;
static int cur_crypto_only;
static unsigned long long n_calls, n_faults, n_delayed;

static void
write_stats_locked(void)
{
	const char *p = getenv("P11SHIM_STATS");
	char tmp[4096];
	FILE *f;
	int n;

	if (p == NULL || *p == '\0')
		return;
	n = snprintf(tmp, sizeof(tmp), "%s.tmp", p);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return;
	if ((f = fopen(tmp, "w")) == NULL)
		return;
	fprintf(f, "calls=%llu faults=%llu delayed=%llu\n", n_calls, n_faults,
	    n_delayed);
	if (fclose(f) == 0)
		(void)rename(tmp, p);
}

/* Re-reads the control file if it changed; with mu held. */
static void
reload_locked(void)
{
	const char *p = getenv("P11SHIM_CONTROL");
	char line[256];
	struct stat st;
	FILE *f;

	if (p == NULL || stat(p, &st) != 0) {
		cur_mode = M_NONE;
		cur_latency = 0;
		cur_crypto_only = 0;
		ctl_seen = 0;
		return;
	}
	if (ctl_seen && st.st_ino == ctl_st.st_ino &&
	    st.st_size == ctl_st.st_size &&
	    st.st_mtim.tv_sec == ctl_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == ctl_st.st_mtim.tv_nsec)
		return;
	if ((f = fopen(p, "r")) == NULL)
		return;
	ctl_st = st;
	ctl_seen = 1;
	cur_mode = M_NONE;
	cur_latency = 0;
	cur_crypto_only = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (strcmp(line, "mode=device_error") == 0)
			cur_mode = M_DEVICE;
		else if (strcmp(line, "mode=session_invalid") == 0)
			cur_mode = M_SESSION;
		else if (strcmp(line, "mode=token_not_present") == 0)
			cur_mode = M_TOKEN;
		else if (strcmp(line, "mode=not_logged_in") == 0)
			cur_mode = M_LOGIN;
		else if (strncmp(line, "latency_ms=", 11) == 0)
			cur_latency = strtoul(line + 11, NULL, 10);
		else if (strcmp(line, "ops=crypto") == 0)
			cur_crypto_only = 1;
		else if (strcmp(line, "ops=all") == 0)
			cur_crypto_only = 0;
	}
	fclose(f);
}

/*
 * Decides the fate of one call: 0 = forward, else the CK_RV to return.
 * Sleeps the configured latency (outside the lock) for selected calls.
 * *no_slots is set for C_GetSlotList under token_not_present.
 */
static CK_RV
gate(enum cls c, int crypto, int *no_slots)
{
	unsigned long lat;
	enum mode m;
	CK_RV rv = CKR_OK;
	struct timespec ts;

	if (no_slots != NULL)
		*no_slots = 0;
	pthread_mutex_lock(&mu);
	n_calls++;
	reload_locked();
	if (cur_crypto_only && !crypto) {
		pthread_mutex_unlock(&mu);
		return CKR_OK;
	}
	m = cur_mode;
	lat = cur_latency;
	switch (m) {
	case M_DEVICE:
		rv = CKR_DEVICE_ERROR;
		break;
	case M_TOKEN:
		if (c == C_SLOT && no_slots != NULL)
			*no_slots = 1;
		else
			rv = CKR_TOKEN_NOT_PRESENT;
		break;
	case M_SESSION:
		if (c == C_SESS || c == C_LOGIN)
			rv = CKR_SESSION_HANDLE_INVALID;
		break;
	case M_LOGIN:
		if (c == C_SESS)
			rv = CKR_USER_NOT_LOGGED_IN;
		break;
	case M_NONE:
		break;
	}
	if (rv != CKR_OK || (no_slots != NULL && *no_slots))
		n_faults++;
	if (lat > 0)
		n_delayed++;
	if (rv != CKR_OK)
		write_stats_locked();
	pthread_mutex_unlock(&mu);
	if (lat > 0) {
		ts.tv_sec = (time_t)(lat / 1000);
		ts.tv_nsec = (long)(lat % 1000) * 1000000L;
		while (nanosleep(&ts, &ts) != 0)
			;
	}
	return rv;
}

#define GATE(cls, crypto) \
	do { \
		CK_RV grv_ = gate((cls), (crypto), NULL); \
		if (grv_ != CKR_OK) \
			return grv_; \
	} while (0)

static CK_RV
w_Finalize(void *reserved)
{
	pthread_mutex_lock(&mu);
	write_stats_locked();
	pthread_mutex_unlock(&mu);
	return real->C_Finalize(reserved);
}

static CK_RV
w_GetSlotList(CK_BBOOL present, CK_SLOT_ID *list, CK_ULONG *count)
{
	int none;
	CK_RV rv = gate(C_SLOT, 0, &none);

	if (rv != CKR_OK)
		return rv;
	if (none && present) {
		if (count == NULL)
			return CKR_ARGUMENTS_BAD;
		*count = 0;
		return CKR_OK;
	}
	return real->C_GetSlotList(present, list, count);
}

static CK_RV
w_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO *info)
{
	int none;
	CK_RV rv = gate(C_SLOT, 0, &none);

	if (rv != CKR_OK)
		return rv;
	rv = real->C_GetSlotInfo(slot, info);
	if (rv == CKR_OK && none)
		info->flags &= ~(CK_FLAGS)CKF_TOKEN_PRESENT;
	return rv;
}

static CK_RV
w_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO *info)
{
	int none;
	CK_RV rv = gate(C_SLOT, 0, &none);

	if (rv != CKR_OK)
		return rv;
	if (none)
		return CKR_TOKEN_NOT_PRESENT;
	return real->C_GetTokenInfo(slot, info);
}

static CK_RV
w_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, void *app, CK_NOTIFY notify,
    CK_SESSION_HANDLE *s)
{
	GATE(C_OPEN, 0);
	return real->C_OpenSession(slot, flags, app, notify, s);
}

static CK_RV
w_GetSessionInfo(CK_SESSION_HANDLE s, CK_SESSION_INFO *info)
{
	GATE(C_LOGIN, 0);
	return real->C_GetSessionInfo(s, info);
}

static CK_RV
w_Login(CK_SESSION_HANDLE s, CK_USER_TYPE u, CK_UTF8CHAR *pin, CK_ULONG n)
{
	GATE(C_LOGIN, 0);
	return real->C_Login(s, u, pin, n);
}

static CK_RV
w_Logout(CK_SESSION_HANDLE s)
{
	GATE(C_LOGIN, 0);
	return real->C_Logout(s);
}

static CK_RV
w_CreateObject(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n,
    CK_OBJECT_HANDLE *o)
{
	GATE(C_SESS, 0);
	return real->C_CreateObject(s, t, n, o);
}

static CK_RV
w_DestroyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o)
{
	GATE(C_SESS, 0);
	return real->C_DestroyObject(s, o);
}

static CK_RV
w_GetAttributeValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE *t,
    CK_ULONG n)
{
	GATE(C_SESS, 0);
	return real->C_GetAttributeValue(s, o, t, n);
}

static CK_RV
w_FindObjectsInit(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n)
{
	GATE(C_SESS, 0);
	return real->C_FindObjectsInit(s, t, n);
}

static CK_RV
w_FindObjects(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *o, CK_ULONG max,
    CK_ULONG *n)
{
	GATE(C_SESS, 0);
	return real->C_FindObjects(s, o, max, n);
}

static CK_RV
w_FindObjectsFinal(CK_SESSION_HANDLE s)
{
	GATE(C_SESS, 0);
	return real->C_FindObjectsFinal(s);
}

static CK_RV
w_EncryptInit(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE k)
{
	GATE(C_SESS, 0);
	return real->C_EncryptInit(s, m, k);
}

static CK_RV
w_Encrypt(CK_SESSION_HANDLE s, CK_BYTE *in, CK_ULONG n, CK_BYTE *out,
    CK_ULONG *outn)
{
	GATE(C_SESS, 0);
	return real->C_Encrypt(s, in, n, out, outn);
}

static CK_RV
w_DecryptInit(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE k)
{
	GATE(C_SESS, 0);
	return real->C_DecryptInit(s, m, k);
}

static CK_RV
w_Decrypt(CK_SESSION_HANDLE s, CK_BYTE *in, CK_ULONG n, CK_BYTE *out,
    CK_ULONG *outn)
{
	GATE(C_SESS, 1);
	return real->C_Decrypt(s, in, n, out, outn);
}

static CK_RV
w_SignInit(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE k)
{
	GATE(C_SESS, 0);
	return real->C_SignInit(s, m, k);
}

static CK_RV
w_Sign(CK_SESSION_HANDLE s, CK_BYTE *in, CK_ULONG n, CK_BYTE *sig,
    CK_ULONG *sign)
{
	GATE(C_SESS, 1);
	return real->C_Sign(s, in, n, sig, sign);
}

static CK_RV
w_GenerateKey(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_ATTRIBUTE *t, CK_ULONG n,
    CK_OBJECT_HANDLE *k)
{
	GATE(C_SESS, 0);
	return real->C_GenerateKey(s, m, t, n, k);
}

static CK_RV
w_GenerateKeyPair(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_ATTRIBUTE *pt,
    CK_ULONG pn, CK_ATTRIBUTE *vt, CK_ULONG vn, CK_OBJECT_HANDLE *pub,
    CK_OBJECT_HANDLE *priv)
{
	GATE(C_SESS, 1);
	return real->C_GenerateKeyPair(s, m, pt, pn, vt, vn, pub, priv);
}

static CK_RV
w_WrapKey(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE wk,
    CK_OBJECT_HANDLE k, CK_BYTE *out, CK_ULONG *outn)
{
	GATE(C_SESS, 1);
	return real->C_WrapKey(s, m, wk, k, out, outn);
}

static CK_RV
w_UnwrapKey(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE uk,
    CK_BYTE *in, CK_ULONG n, CK_ATTRIBUTE *t, CK_ULONG tn, CK_OBJECT_HANDLE *k)
{
	GATE(C_SESS, 1);
	return real->C_UnwrapKey(s, m, uk, in, n, t, tn, k);
}

static CK_RV
w_GenerateRandom(CK_SESSION_HANDLE s, CK_BYTE *out, CK_ULONG n)
{
	GATE(C_SESS, 0);
	return real->C_GenerateRandom(s, out, n);
}

static CK_RV w_GetFunctionList(CK_FUNCTION_LIST **list);

static int
load_real(void)
{
	CK_RV (*gfl)(CK_FUNCTION_LIST **);
	const char *p = getenv("P11SHIM_MODULE");

	if (shim_ready)
		return 0;
	if (p == NULL || *p == '\0')
		p = DEFAULT_MODULE;
	if ((real_dl = dlopen(p, RTLD_NOW | RTLD_LOCAL)) == NULL)
		return -1;
	*(void **)(&gfl) = dlsym(real_dl, "C_GetFunctionList");
	if (gfl == NULL || gfl(&real) != CKR_OK || real == NULL)
		return -1;
	/* everything we do not wrap goes straight to the real module */
	shim = *real;
	shim.C_GetFunctionList = w_GetFunctionList;
	shim.C_Finalize = w_Finalize;
	shim.C_GetSlotList = w_GetSlotList;
	shim.C_GetSlotInfo = w_GetSlotInfo;
	shim.C_GetTokenInfo = w_GetTokenInfo;
	shim.C_OpenSession = w_OpenSession;
	shim.C_GetSessionInfo = w_GetSessionInfo;
	shim.C_Login = w_Login;
	shim.C_Logout = w_Logout;
	shim.C_CreateObject = w_CreateObject;
	shim.C_DestroyObject = w_DestroyObject;
	shim.C_GetAttributeValue = w_GetAttributeValue;
	shim.C_FindObjectsInit = w_FindObjectsInit;
	shim.C_FindObjects = w_FindObjects;
	shim.C_FindObjectsFinal = w_FindObjectsFinal;
	shim.C_EncryptInit = w_EncryptInit;
	shim.C_Encrypt = w_Encrypt;
	shim.C_DecryptInit = w_DecryptInit;
	shim.C_Decrypt = w_Decrypt;
	shim.C_SignInit = w_SignInit;
	shim.C_Sign = w_Sign;
	shim.C_GenerateKey = w_GenerateKey;
	shim.C_GenerateKeyPair = w_GenerateKeyPair;
	shim.C_WrapKey = w_WrapKey;
	shim.C_UnwrapKey = w_UnwrapKey;
	shim.C_GenerateRandom = w_GenerateRandom;
	shim_ready = 1;
	return 0;
}

static CK_RV
w_GetFunctionList(CK_FUNCTION_LIST **list)
{
	CK_RV rv = CKR_OK;

	if (list == NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&mu);
	if (load_real() != 0)
		rv = CKR_GENERAL_ERROR;
	else
		*list = &shim;
	pthread_mutex_unlock(&mu);
	return rv;
}

CK_RV
C_GetFunctionList(CK_FUNCTION_LIST **list)
{
	return w_GetFunctionList(list);
}
