/*
 * hsm/auditkey.c — the audit signing key: an EC P-256 key pair in the
 * token, label "p11vault-audit" (token objects, the private half
 * sensitive, never extractable, sign only), made on first use. It signs
 * the audit log's checkpoints (vault/auditlog.c) and nothing else, so a
 * signature by it can only be a checkpoint.
 *
 * Owns: the audit key's template and its creation, one creator at a time
 * (h->bmu, shared with the backup key).
 * Must never: sign with another key; make a second audit key.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/obj_mac.h>
#include <openssl/sha.h>

#include "hsm/hsm_int.h"

/* The pair, in a R/W session of its own on slot (the login is shared). */
static int
audit_pair_make(tok_t *h)
{
	CK_SESSION_HANDLE rw = CK_INVALID_HANDLE;
	CK_RV rv;
	int rc;

	rv = h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
	    NULL, NULL, &rw);
	if (rv != CKR_OK)
		return hsm_init_rv(rv);
	rc = hsm_sign_pair_make(h->f, rw, HSM_AUDIT_LABEL);
	(void)h->f->C_CloseSession(rw);
	return rc;
}

/* The audit key's half of class cls, made first when the token has no
 * audit key yet. */
static int
audit_key(tok_t *h, struct hsm_sess *s, CK_OBJECT_CLASS cls,
    CK_OBJECT_HANDLE *key)
{
	CK_OBJECT_HANDLE other;
	CK_ULONG n = 0, np = 0;
	int rc;

	pthread_mutex_lock(&h->bmu);
	rc = hsm_ck(s,
	    hsm_find_label(h->f, s->h, cls, HSM_AUDIT_LABEL, key, &n));
	if (rc == 0 && n == 0)
		rc = hsm_ck(s,
		    hsm_find_label(h->f, s->h,
		        cls == CKO_PUBLIC_KEY ? CKO_PRIVATE_KEY :
		                                CKO_PUBLIC_KEY,
		        HSM_AUDIT_LABEL, &other, &np));
	if (rc == 0 && n == 0 && np != 0)
		rc = HSM_ERR_INTERNAL; /* half a pair: made by someone else */
	if (rc == 0 && n == 0 && (rc = audit_pair_make(h)) == 0)
		rc = hsm_ck(s,
		    hsm_find_label(h->f, s->h, cls, HSM_AUDIT_LABEL, key, &n));
	if (rc == 0 && n != 1)
		rc = HSM_ERR_INTERNAL; /* two keys claim one role */
	pthread_mutex_unlock(&h->bmu);
	return rc;
}

int
tok_audit_sign(tok_t *h, const uint8_t *data, size_t len, uint8_t sig[64])
{
	CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
	CK_OBJECT_HANDLE key;
	CK_ULONG slen = 64;
	uint8_t digest[32];
	struct hsm_sess s;
	int rc;

	if (h == NULL || data == NULL || len == 0 || sig == NULL)
		return HSM_ERR_ARGS;
	SHA256(data, len, digest);
	if ((rc = hsm_sess_take(h, &s)) != 0)
		return rc;
	if ((rc = audit_key(h, &s, CKO_PRIVATE_KEY, &key)) == 0 &&
	    (rc = hsm_ck(&s, h->f->C_SignInit(s.h, &m, key))) == 0)
		rc = hsm_ck(&s,
		    h->f->C_Sign(s.h, digest, sizeof(digest), sig, &slen));
	hsm_sess_give(h, &s);
	if (rc == 0 && slen != 64)
		rc = HSM_ERR_INTERNAL;
	return rc;
}

int
tok_audit_public(tok_t *h, uint8_t **spki, size_t *spki_len)
{
	CK_OBJECT_HANDLE pub;
	CK_BYTE params[32], point[160];
	CK_ATTRIBUTE t[] = {
		{ CKA_EC_PARAMS, params, sizeof(params) },
		{ CKA_EC_POINT, point, sizeof(point) },
	};
	struct hsm_sess s;
	int rc;

	if (h == NULL || spki == NULL || spki_len == NULL)
		return HSM_ERR_ARGS;
	*spki = NULL;
	if ((rc = hsm_sess_take(h, &s)) != 0)
		return rc;
	if ((rc = audit_key(h, &s, CKO_PUBLIC_KEY, &pub)) == 0)
		rc = hsm_ck(&s, h->f->C_GetAttributeValue(s.h, pub, t, 2));
	hsm_sess_give(h, &s);
	if (rc != 0)
		return rc;
	return hsm_ec_spki(params, t[0].ulValueLen, point, t[1].ulValueLen,
	    spki, spki_len);
}
