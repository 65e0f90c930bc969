/*
 * hsm/p11.c — the PKCS#11 module and the objects it holds by role, below
 * everything else of the token side.
 *
 * Owns: dlopen of the module and C_Initialize (OS locking), the one walk
 * over the slots (a token by label, or the first without a token), the
 * one search for an object by class and label, the mapping of CKR_* to
 * HSM_ERR_*, and the templates of the token-resident role keys made as
 * user (the bind key, the AES-GCM keys: seal and backup).
 * Must never: let a CKR_* escape hsm/; log or keep a PIN; call up into the
 * pool (module.c), the cache or the key operations.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/obj_mac.h>

#include "hsm/hsm_int.h"

#define HSM_LABEL_MAX 32

static CK_BBOOL ck_true = CK_TRUE;
static CK_BBOOL ck_false = CK_FALSE;

int
hsm_load(const char *path, void **dlp, CK_FUNCTION_LIST **fp, int *owns)
{
	CK_C_INITIALIZE_ARGS args;
	CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR);
	CK_FUNCTION_LIST *f = NULL;
	void *dl;
	CK_RV rv;

	*dlp = NULL;
	*fp = NULL;
	*owns = 0;
	if (path == NULL || *path == '\0')
		return HSM_ERR_ARGS;
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL)
		return HSM_ERR_UNAVAILABLE;
	*(void **)(&gfl) = dlsym(dl, "C_GetFunctionList");
	if (gfl == NULL || gfl(&f) != CKR_OK || f == NULL) {
		dlclose(dl);
		return HSM_ERR_UNAVAILABLE;
	}
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	rv = f->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		dlclose(dl);
		return rv == CKR_HOST_MEMORY ? HSM_ERR_NO_MEMORY :
		                               HSM_ERR_UNAVAILABLE;
	}
	*owns = rv == CKR_OK;
	*dlp = dl;
	*fp = f;
	return 0;
}

void
hsm_unload(void *dl, CK_FUNCTION_LIST *f, int owns)
{
	if (f != NULL && owns)
		(void)f->C_Finalize(NULL);
	if (dl != NULL)
		dlclose(dl);
}

void
hsm_pad_label(const char *label, unsigned char out[32])
{
	size_t n = strlen(label);

	memset(out, ' ', HSM_LABEL_MAX);
	memcpy(out, label, n > HSM_LABEL_MAX ? HSM_LABEL_MAX : n);
}

int
hsm_slot_find(CK_FUNCTION_LIST *f, const char *label, CK_SLOT_ID *slot)
{
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0, i;
	CK_TOKEN_INFO ti;
	unsigned char want[HSM_LABEL_MAX];
	int rc = HSM_ERR_UNAVAILABLE, inited;

	if (label != NULL)
		hsm_pad_label(label, want);
	if (f->C_GetSlotList(CK_TRUE, NULL, &n) != CKR_OK || n == 0)
		goto out;
	if ((slots = calloc(n, sizeof(*slots))) == NULL) {
		rc = HSM_ERR_NO_MEMORY;
		goto out;
	}
	if (f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
		goto out;
	for (i = 0; i < n; i++) {
		if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		inited = (ti.flags & CKF_TOKEN_INITIALIZED) != 0;
		if (label != NULL ?
		        inited && memcmp(ti.label, want, sizeof(want)) == 0 :
		        !inited) {
			*slot = slots[i];
			rc = 0;
			goto out;
		}
	}
out:
	free(slots);
	return rc;
}

CK_RV
hsm_find_label(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
    const char *label, CK_OBJECT_HANDLE *obj, CK_ULONG *n)
{
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};
	CK_OBJECT_HANDLE found[2];
	CK_RV rv;

	*n = 0;
	if ((rv = f->C_FindObjectsInit(s, t, 2)) != CKR_OK)
		return rv;
	rv = f->C_FindObjects(s, found, 2, n);
	(void)f->C_FindObjectsFinal(s);
	if (rv == CKR_OK && *n == 1)
		*obj = found[0];
	return rv;
}

int
hsm_find_object(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
    const char *label, CK_OBJECT_HANDLE *obj)
{
	CK_ULONG n = 0;
	CK_RV rv;

	rv = hsm_find_label(f, s, cls, label, obj, &n);
	if (rv == CKR_HOST_MEMORY)
		return HSM_ERR_NO_MEMORY;
	if (rv != CKR_OK || n == 0)
		return HSM_ERR_UNAVAILABLE;
	if (n != 1)
		return HSM_ERR_INTERNAL; /* two objects claim one role */
	return 0;
}

/* The session, the login, the device or a handle we hold is gone. */
static int
rv_lost(CK_RV rv)
{
	switch (rv) {
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_SESSION_CLOSED:
	case CKR_USER_NOT_LOGGED_IN:
	case CKR_DEVICE_ERROR:
	case CKR_DEVICE_REMOVED:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_TOKEN_NOT_RECOGNIZED:
	case CKR_CRYPTOKI_NOT_INITIALIZED:
	/* a cached or domain handle vanished (e.g. a logout elsewhere): the
	 * handles we hold are stale, so recover like a lost session */
	case CKR_KEY_HANDLE_INVALID:
	case CKR_OBJECT_HANDLE_INVALID:
		return 1;
	default:
		return 0;
	}
}

int
hsm_ck(struct hsm_sess *s, CK_RV rv)
{
	if (rv == CKR_OK)
		return 0;
	if (rv_lost(rv)) {
		s->lost = 1;
		return HSM_ERR_UNAVAILABLE;
	}
	switch (rv) {
	case CKR_HOST_MEMORY:
		return HSM_ERR_NO_MEMORY;
	case CKR_DEVICE_MEMORY:
	case CKR_FUNCTION_FAILED:
		return HSM_ERR_UNAVAILABLE;
	default:
		return HSM_ERR_INTERNAL;
	}
}

int
hsm_ck_blame(struct hsm_sess *s, CK_RV rv, int blame)
{
	if (rv == CKR_OK)
		return 0;
	if (rv_lost(rv) || rv == CKR_HOST_MEMORY || rv == CKR_DEVICE_MEMORY)
		return hsm_ck(s, rv);
	return blame;
}

int
hsm_init_rv(CK_RV rv)
{
	if (rv == CKR_OK)
		return 0;
	if (rv == CKR_HOST_MEMORY)
		return HSM_ERR_NO_MEMORY;
	if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE ||
	    rv == CKR_PIN_INVALID || rv == CKR_ARGUMENTS_BAD)
		return HSM_ERR_ARGS;
	return HSM_ERR_UNAVAILABLE;
}

void
hsm_destroy(CK_FUNCTION_LIST *f, struct hsm_sess *s, CK_OBJECT_HANDLE *o)
{
	if (*o != CK_INVALID_HANDLE &&
	    hsm_ck(s, f->C_DestroyObject(s->h, *o)) != 0) {
		/* a lost session is marked lost; its objects die with it */
	}
	*o = CK_INVALID_HANDLE;
}

/*
 * The bind key: the HMAC key of version-2 blob tags. Sign and verify
 * only; it leaves the token only wrapped by a trusted key (for a later
 * clustering ceremony), never in plaintext.
 */
static CK_RV
gen_bind_key(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *k)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
	CK_ULONG vlen = 32;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
		{ CKA_LABEL, HSM_BIND_LABEL, sizeof(HSM_BIND_LABEL) - 1 },
		{ CKA_TOKEN, &ck_true, sizeof(ck_true) },
		{ CKA_PRIVATE, &ck_true, sizeof(ck_true) },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		{ CKA_EXTRACTABLE, &ck_true, sizeof(ck_true) },
		{ CKA_WRAP_WITH_TRUSTED, &ck_true, sizeof(ck_true) },
		{ CKA_MODIFIABLE, &ck_false, sizeof(ck_false) },
		{ CKA_SIGN, &ck_true, sizeof(ck_true) },
		{ CKA_VERIFY, &ck_true, sizeof(ck_true) },
		{ CKA_ENCRYPT, &ck_false, sizeof(ck_false) },
		{ CKA_DECRYPT, &ck_false, sizeof(ck_false) },
		{ CKA_WRAP, &ck_false, sizeof(ck_false) },
		{ CKA_UNWRAP, &ck_false, sizeof(ck_false) },
		{ CKA_DERIVE, &ck_false, sizeof(ck_false) },
	};
	CK_MECHANISM m = { CKM_GENERIC_SECRET_KEY_GEN, NULL, 0 };

	return f->C_GenerateKey(s, &m, t, sizeof(t) / sizeof(t[0]), k);
}

/*
 * A token-resident AES-256 key for AES-GCM, labelled label: a private
 * token object (SoftHSMv2 stores it encrypted under a key derived from
 * the user PIN), sensitive, extractable only wrapped by a trusted key
 * (the join of a node, node.c), encrypt and decrypt only.
 * The seal key of version-3 blobs and the backup key (backup.c).
 */
static CK_RV
gen_aes_key(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, const char *label,
    CK_OBJECT_HANDLE *k)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ULONG vlen = 32;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_TOKEN, &ck_true, sizeof(ck_true) },
		{ CKA_PRIVATE, &ck_true, sizeof(ck_true) },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		/* leaves the token only wrapped by a trusted key: to a
		 * joining node's token (node.c), never in plaintext */
		{ CKA_EXTRACTABLE, &ck_true, sizeof(ck_true) },
		{ CKA_WRAP_WITH_TRUSTED, &ck_true, sizeof(ck_true) },
		{ CKA_MODIFIABLE, &ck_false, sizeof(ck_false) },
		{ CKA_ENCRYPT, &ck_true, sizeof(ck_true) },
		{ CKA_DECRYPT, &ck_true, sizeof(ck_true) },
		{ CKA_SIGN, &ck_false, sizeof(ck_false) },
		{ CKA_VERIFY, &ck_false, sizeof(ck_false) },
		{ CKA_WRAP, &ck_false, sizeof(ck_false) },
		{ CKA_UNWRAP, &ck_false, sizeof(ck_false) },
		{ CKA_DERIVE, &ck_false, sizeof(ck_false) },
	};
	CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };

	return f->C_GenerateKey(s, &m, t, sizeof(t) / sizeof(t[0]), k);
}

size_t
hsm_domain_template(CK_ATTRIBUTE t[HSM_DOMAIN_TEMPLATE_N], uint64_t gen,
    uint8_t id[HSM_DOMAIN_ID_LEN])
{
	static CK_OBJECT_CLASS cls = CKO_SECRET_KEY, priv_cls = CKO_PRIVATE_KEY;
	static CK_KEY_TYPE kt = CKK_AES;
	/* Whatever is unwrapped with the domain key stays a sensitive
	 * private key that can leave the token only wrapped by a trusted
	 * key, whoever asks: no blob opens into a readable object
	 * (tests/unit/test_hsm.c shows the attack). */
	static CK_ATTRIBUTE unwrap_tmpl[] = {
		{ CKA_CLASS, &priv_cls, sizeof(priv_cls) },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		{ CKA_WRAP_WITH_TRUSTED, &ck_true, sizeof(ck_true) },
		{ CKA_DERIVE, &ck_false, sizeof(ck_false) },
	};
	/* and it wraps only session private keys (customer keys): never
	 * a token key (the seal, JWT, audit, backup keys) whose wrapped
	 * form the domain key's own value would open */
	static CK_ATTRIBUTE wrap_tmpl[] = {
		{ CKA_CLASS, &priv_cls, sizeof(priv_cls) },
		{ CKA_TOKEN, &ck_false, sizeof(ck_false) },
	};
	size_t n = 0, i;

	for (i = 0; i < HSM_DOMAIN_ID_LEN; i++)
		id[i] = (uint8_t)(gen >> (8 * (HSM_DOMAIN_ID_LEN - 1 - i)));
	t[n++] = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof(cls) };
	t[n++] = (CK_ATTRIBUTE){ CKA_KEY_TYPE, &kt, sizeof(kt) };
	t[n++] = (CK_ATTRIBUTE){ CKA_LABEL, HSM_DOMAIN_LABEL,
		sizeof(HSM_DOMAIN_LABEL) - 1 };
	t[n++] = (CK_ATTRIBUTE){ CKA_ID, id, HSM_DOMAIN_ID_LEN };
	t[n++] = (CK_ATTRIBUTE){ CKA_TOKEN, &ck_true, sizeof(ck_true) };
	t[n++] = (CK_ATTRIBUTE){ CKA_PRIVATE, &ck_false, sizeof(ck_false) };
	t[n++] = (CK_ATTRIBUTE){ CKA_TRUSTED, &ck_true, sizeof(ck_true) };
	t[n++] = (CK_ATTRIBUTE){ CKA_SENSITIVE, &ck_true, sizeof(ck_true) };
	/* it leaves the token only wrapped by a trusted key: to a joining
	 * node's token (node.c) */
	t[n++] = (CK_ATTRIBUTE){ CKA_EXTRACTABLE, &ck_true, sizeof(ck_true) };
	t[n++] = (CK_ATTRIBUTE){ CKA_WRAP_WITH_TRUSTED, &ck_true,
		sizeof(ck_true) };
	t[n++] = (CK_ATTRIBUTE){ CKA_WRAP, &ck_true, sizeof(ck_true) };
	t[n++] = (CK_ATTRIBUTE){ CKA_UNWRAP, &ck_true, sizeof(ck_true) };
	t[n++] = (CK_ATTRIBUTE){ CKA_ENCRYPT, &ck_false, sizeof(ck_false) };
	t[n++] = (CK_ATTRIBUTE){ CKA_DECRYPT, &ck_false, sizeof(ck_false) };
	t[n++] = (CK_ATTRIBUTE){ CKA_SIGN, &ck_false, sizeof(ck_false) };
	t[n++] = (CK_ATTRIBUTE){ CKA_VERIFY, &ck_false, sizeof(ck_false) };
	t[n++] = (CK_ATTRIBUTE){ CKA_DERIVE, &ck_false, sizeof(ck_false) };
	t[n++] = (CK_ATTRIBUTE){ CKA_UNWRAP_TEMPLATE, unwrap_tmpl,
		sizeof(unwrap_tmpl) };
	t[n++] = (CK_ATTRIBUTE){ CKA_WRAP_TEMPLATE, wrap_tmpl,
		sizeof(wrap_tmpl) };
	/* last: SoftHSMv2's unwrap applies the attributes in order, and
	 * refuses a modifiable one after CKA_MODIFIABLE=FALSE */
	t[n++] = (CK_ATTRIBUTE){ CKA_MODIFIABLE, &ck_false, sizeof(ck_false) };
	return n;
}

/* The generation of domain key o: its CKA_ID (none: 0). */
static uint64_t
domain_gen(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o)
{
	uint8_t id[HSM_DOMAIN_ID_LEN];
	CK_ATTRIBUTE a = { CKA_ID, id, sizeof(id) };
	uint64_t g = 0;
	size_t i;

	if (f->C_GetAttributeValue(s, o, &a, 1) != CKR_OK ||
	    a.ulValueLen != HSM_DOMAIN_ID_LEN)
		return 0;
	for (i = 0; i < HSM_DOMAIN_ID_LEN; i++)
		g = g << 8 | id[i];
	return g;
}

int
hsm_domain_keys(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *cur,
    CK_OBJECT_HANDLE *old)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, HSM_DOMAIN_LABEL, sizeof(HSM_DOMAIN_LABEL) - 1 },
	};
	CK_OBJECT_HANDLE found[3];
	CK_ULONG n = 0;
	CK_RV rv;

	*cur = *old = CK_INVALID_HANDLE;
	if ((rv = f->C_FindObjectsInit(s, t, 2)) != CKR_OK)
		return hsm_init_rv(rv);
	rv = f->C_FindObjects(s, found, 3, &n);
	(void)f->C_FindObjectsFinal(s);
	if (rv != CKR_OK)
		return hsm_init_rv(rv);
	if (n == 0)
		return HSM_ERR_UNAVAILABLE;
	if (n > 2)
		return HSM_ERR_INTERNAL;
	*cur = found[0];
	if (n == 2) {
		int second = domain_gen(f, s, found[1]) >
		    domain_gen(f, s, found[0]);

		*cur = found[second ? 1 : 0];
		*old = found[second ? 0 : 1];
	}
	return 0;
}

CK_RV
hsm_role_key_make(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, const char *label,
    CK_OBJECT_HANDLE *k)
{
	if (strcmp(label, HSM_BIND_LABEL) == 0)
		return gen_bind_key(f, s, k);
	return gen_aes_key(f, s, label, k);
}

int
hsm_sign_pair_make(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, const char *label)
{
	uint8_t params[HSM_EC_PARAMS_MAX];
	size_t plen = sizeof(params);
	CK_ATTRIBUTE pub[] = {
		{ CKA_TOKEN, &ck_true, sizeof(ck_true) },
		{ CKA_PRIVATE, &ck_false, sizeof(ck_false) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_EC_PARAMS, params, 0 },
		{ CKA_VERIFY, &ck_true, sizeof(ck_true) },
	};
	CK_ATTRIBUTE priv[] = {
		{ CKA_TOKEN, &ck_true, sizeof(ck_true) },
		{ CKA_PRIVATE, &ck_true, sizeof(ck_true) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		/* every node signs with the same pair (node.c) */
		{ CKA_EXTRACTABLE, &ck_true, sizeof(ck_true) },
		{ CKA_WRAP_WITH_TRUSTED, &ck_true, sizeof(ck_true) },
		{ CKA_SIGN, &ck_true, sizeof(ck_true) },
		{ CKA_DECRYPT, &ck_false, sizeof(ck_false) },
		{ CKA_DERIVE, &ck_false, sizeof(ck_false) },
		{ CKA_UNWRAP, &ck_false, sizeof(ck_false) },
	};
	CK_MECHANISM m = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_OBJECT_HANDLE hpub, hpriv;
	int rc;

	if ((rc = hsm_curve_der(NID_X9_62_prime256v1, params, &plen)) != 0)
		return rc;
	pub[3].ulValueLen = plen;
	return hsm_init_rv(f->C_GenerateKeyPair(s, &m, pub,
	    sizeof(pub) / sizeof(pub[0]), priv, sizeof(priv) / sizeof(priv[0]),
	    &hpub, &hpriv));
}

CK_RV
hsm_role_key_new(CK_FUNCTION_LIST *f, CK_SLOT_ID slot, const char *label,
    CK_OBJECT_HANDLE *k)
{
	CK_SESSION_HANDLE rw = CK_INVALID_HANDLE;
	CK_RV rv;

	/* pool sessions are read-only: a token object needs a R/W session
	 * (the login is the application's, shared) */
	rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
	    NULL, &rw);
	if (rv != CKR_OK)
		return rv;
	rv = hsm_role_key_make(f, rw, label, k);
	(void)f->C_CloseSession(rw);
	return rv;
}

int
hsm_role_key_find(CK_FUNCTION_LIST *f, CK_SLOT_ID slot, CK_SESSION_HANDLE s,
    const char *label, int create, CK_OBJECT_HANDLE *key)
{
	CK_OBJECT_HANDLE k;
	CK_ULONG n;
	int rc;

	if ((rc = hsm_init_rv(hsm_find_label(f, s, CKO_SECRET_KEY, label, key,
	         &n))) != 0)
		return rc;
	if (n == 1)
		return 0;
	if (n > 1)
		return HSM_ERR_INTERNAL; /* two keys claim one role */
	if (!create)
		return HSM_ERR_UNAVAILABLE;
	/* a token from before the role: it gets its key now */
	if ((rc = hsm_init_rv(hsm_role_key_new(f, slot, label, &k))) != 0)
		return rc;
	if ((rc = hsm_init_rv(hsm_find_label(f, s, CKO_SECRET_KEY, label, key,
	         &n))) != 0)
		return rc;
	return n == 1 ? 0 : HSM_ERR_INTERNAL;
}
