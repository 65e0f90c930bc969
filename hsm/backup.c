/*
 * hsm/backup.c — sealing backups: AES-256-GCM in the token under its
 * backup key "p11vault-backup", made on first use.
 *
 * Owns: the sealed format ("P11S" | version | IV | ciphertext | tag, the
 * first 5 bytes authenticated) and the creation of the backup key, one
 * creator at a time (h->bmu).
 * Must never: return a plaintext whose tag did not verify; tell one
 * failure to open from another (every one is HSM_ERR_DECRYPT).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "hsm/buf.h"
#include "hsm/hsm_int.h"

#define SEAL_MAGIC "P11S"
#define SEAL_VERSION 1
#define SEAL_IV 12
#define SEAL_TAG 16
#define SEAL_HDR (5 + SEAL_IV)
#define SEAL_MAX (64 * 1024 * 1024)

static int
backup_key(tok_t *h, struct hsm_sess *s, CK_OBJECT_HANDLE *key)
{
	CK_ULONG n = 0;
	int rc;

	pthread_mutex_lock(&h->bmu);
	rc = hsm_ck(s,
	    hsm_find_label(h->f, s->h, CKO_SECRET_KEY, HSM_BACKUP_LABEL, key,
	        &n));
	if (rc == 0 && n == 0)
		rc = hsm_ck(s,
		    hsm_role_key_new(h->f, h->slot, HSM_BACKUP_LABEL, key));
	else if (rc == 0 && n != 1)
		rc = HSM_ERR_INTERNAL; /* two keys claim one role */
	pthread_mutex_unlock(&h->bmu);
	return rc;
}

/* AES-GCM parameters of a sealed blob whose header (magic, version, IV)
 * starts at hdr: the IV from the header, the 5 bytes before it as AAD. */
static void
seal_gcm_params(CK_GCM_PARAMS *gp, const uint8_t *hdr)
{
	memset(gp, 0, sizeof(*gp));
	gp->pIv = (CK_BYTE *)hdr + 5;
	gp->ulIvLen = SEAL_IV;
	gp->ulIvBits = SEAL_IV * 8;
	gp->pAAD = (CK_BYTE *)hdr; /* the header is authenticated too */
	gp->ulAADLen = 5;
	gp->ulTagBits = SEAL_TAG * 8;
}

int
tok_seal(tok_t *h, const uint8_t *in, size_t in_len, uint8_t **out,
    size_t *out_len)
{
	CK_GCM_PARAMS gp;
	CK_MECHANISM m = { CKM_AES_GCM, &gp, sizeof(gp) };
	CK_OBJECT_HANDLE key;
	CK_ULONG clen;
	uint8_t *b = NULL;
	struct hsm_sess s;
	int rc;

	if (h == NULL || in == NULL || out == NULL || out_len == NULL ||
	    in_len == 0 || in_len > SEAL_MAX)
		return HSM_ERR_ARGS;
	*out = NULL;
	if ((b = malloc(SEAL_HDR + in_len + SEAL_TAG)) == NULL)
		return HSM_ERR_NO_MEMORY;
	memcpy(b, SEAL_MAGIC, 4);
	b[4] = SEAL_VERSION;
	if (RAND_bytes(b + 5, SEAL_IV) != 1) {
		free(b);
		return HSM_ERR_INTERNAL;
	}
	seal_gcm_params(&gp, b);
	if ((rc = hsm_sess_take(h, &s)) != 0) {
		free(b);
		return rc;
	}
	clen = in_len + SEAL_TAG;
	if ((rc = backup_key(h, &s, &key)) == 0 &&
	    (rc = hsm_ck(&s, h->f->C_EncryptInit(s.h, &m, key))) == 0)
		rc = hsm_ck(&s,
		    h->f->C_Encrypt(s.h, (CK_BYTE *)in, in_len, b + SEAL_HDR,
		        &clen));
	hsm_sess_give(h, &s);
	if (rc == 0 && clen != in_len + SEAL_TAG)
		rc = HSM_ERR_INTERNAL;
	if (rc != 0) {
		free(b);
		return rc;
	}
	*out = b;
	*out_len = SEAL_HDR + clen;
	return 0;
}

int
tok_unseal(tok_t *h, const uint8_t *in, size_t in_len, uint8_t **out,
    size_t *out_len)
{
	CK_GCM_PARAMS gp;
	CK_MECHANISM m = { CKM_AES_GCM, &gp, sizeof(gp) };
	CK_OBJECT_HANDLE key;
	CK_ULONG plen;
	CK_RV rv;
	uint8_t *b = NULL;
	struct hsm_sess s;
	int rc;

	if (h == NULL || in == NULL || out == NULL || out_len == NULL)
		return HSM_ERR_ARGS;
	*out = NULL;
	if (in_len < SEAL_HDR + SEAL_TAG + 1 ||
	    in_len > SEAL_HDR + SEAL_MAX + SEAL_TAG ||
	    memcmp(in, SEAL_MAGIC, 4) != 0 || in[4] != SEAL_VERSION)
		return HSM_ERR_DECRYPT;
	if ((b = malloc(in_len)) == NULL)
		return HSM_ERR_NO_MEMORY;
	seal_gcm_params(&gp, in);
	if ((rc = hsm_sess_take(h, &s)) != 0) {
		free(b);
		return rc;
	}
	plen = in_len;
	if ((rc = backup_key(h, &s, &key)) == 0 &&
	    (rc = hsm_ck(&s, h->f->C_DecryptInit(s.h, &m, key))) == 0) {
		rv = h->f->C_Decrypt(s.h, (CK_BYTE *)in + SEAL_HDR,
		    in_len - SEAL_HDR, b, &plen);
		rc = hsm_ck_blame(&s, rv, HSM_ERR_DECRYPT);
	}
	hsm_sess_give(h, &s);
	if (rc == 0 && plen != in_len - SEAL_HDR - SEAL_TAG)
		rc = HSM_ERR_DECRYPT;
	if (rc != 0) {
		freezero(b, in_len);
		return rc;
	}
	*out = b;
	*out_len = plen;
	return 0;
}
