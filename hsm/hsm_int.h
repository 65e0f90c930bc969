/*
 * hsm/hsm_int.h — the token side's internals: the blob format, the token
 * context (tok_t) and the calls between the files of the token side, by
 * layer from the bottom: p11.c, blob.c, cache.c, module.c, keys.c (then
 * import.c, backup.c, crypto.c, tokinit.c and tokend.c on top). A file
 * calls only the layers listed before its own, never back up. Not a public header:
 * nothing outside hsm/ and its unit tests includes it.
 */
#ifndef P11VAULT_HSM_INT_H
#define P11VAULT_HSM_INT_H

#include <pthread.h>
#include <stdint.h>
#include <stddef.h>
#include <p11-kit/pkcs11.h>

#include "hsm/pkey.h"
#include "hsm/token.h"

#define HSM_DOMAIN_LABEL "p11vault-domain"
#define HSM_JWT_LABEL "p11vault-jwt"
#define HSM_BIND_LABEL "p11vault-bind"
#define HSM_SEAL_LABEL "p11vault-seal"

/*
 * Blob: header = "P11V" | version | kty | param (u16 BE: RSA bits or curve
 * code), then:
 *
 * version 3 (made now): a 12-byte IV, the AES-256-GCM ciphertext, under
 * the seal key, of the AES-KWP ciphertext of the PKCS#8 private key under
 * the domain key ("wrapped"), and the 16-byte GCM tag. The AAD is
 *
 *     lp(HSM_SEAL_DOMAIN) | lp(bind) | lp(header)
 *
 * where lp(x) = u32 BE length of x | x. The seal key is a private token
 * object (SoftHSMv2 keeps it encrypted under the user PIN), so the token
 * files and the store together, without the PIN, open no blob: the domain
 * key, which SoftHSMv2 can only keep as a public (unencrypted) object
 * because it is trusted, opens nothing on its own. The GCM tag also binds
 * the blob to its bind (as version 2's MAC did).
 *
 * version 2: "wrapped" then a 32-byte HMAC-SHA-256 tag with the bind key
 * over lp(HSM_BIND_DOMAIN) | lp(bind) | lp(header) | lp(wrapped).
 * version 1: "wrapped" alone, bound to nothing.
 * Versions 1 and 2 are only ever read by tok_blob_upgrade and
 * hsm_blob_is_legacy.
 */
#define HSM_BLOB_MAGIC "P11V"
#define HSM_BLOB_LEGACY 1
#define HSM_BLOB_BOUND 2
#define HSM_BLOB_VERSION 3
#if HSM_BLOB_VERSION != HSM_BLOB_FORMAT_CURRENT || \
    HSM_BLOB_LEGACY != HSM_BLOB_FORMAT_UNBOUND
#error "hsm.h and hsm_int.h disagree on blob formats"
#endif
#define HSM_BLOB_HDR 8
#define HSM_BLOB_TAG 32
#define HSM_BLOB_IV 12
#define HSM_BLOB_GCM_TAG 16
#define HSM_BLOB_MAX (16 * 1024)
#define HSM_WRAP_BUF (8 * 1024)
#define HSM_BIND_DOMAIN "p11vault-blob-v2"
#define HSM_SEAL_DOMAIN "p11vault-blob-v3"

enum hsm_curve {
	HSM_CURVE_P256 = 1,
	HSM_CURVE_P384 = 2,
	HSM_CURVE_P521 = 3,
	HSM_CURVE_P256K = 4, /* secp256k1 */
};

struct hsm_blob_info {
	unsigned version; /* HSM_BLOB_LEGACY, _BOUND or _VERSION */
	enum hsm_kty kty;
	unsigned param;         /* RSA bits, or enum hsm_curve */
	size_t size;            /* modulus bytes, or field bytes */
	const uint8_t *hdr;     /* HSM_BLOB_HDR bytes */
	const uint8_t *wrapped; /* version 3: NULL until hsm_blob_open */
	size_t wrapped_len;
	const uint8_t *tag; /* HSM_BLOB_TAG bytes; version 2 only */
	const uint8_t *iv;  /* version 3: IV, ciphertext, GCM tag */
	const uint8_t *ct;
	size_t ct_len;
};

struct hsm_cache_ent {
	char *id;
	uint8_t blob_hash[32];
	CK_OBJECT_HANDLE obj;
	struct hsm_blob_info info; /* wrapped/wrapped_len are not kept */
	size_t refs;
	int evicted;                 /* out of the map; destroy at refs==0 */
	struct hsm_cache_ent *hnext; /* hash chain */
	struct hsm_cache_ent *prev, *next; /* LRU, head = most recent */
};

struct tok {
	void *dl;
	CK_FUNCTION_LIST *f;
	int owns_init; /* we called C_Initialize successfully */
	CK_SLOT_ID slot;
	char *label; /* the slot is found again by it on recovery */

	/* a private copy of the user PIN, only for re-login on recovery */
	char *pin;
	size_t pin_len;

	pthread_mutex_t mu; /* pool */
	pthread_cond_t cv;  /* callers waiting for a session; CLOCK_MONOTONIC */
	/* the recovery thread and tok_close: the pool
	 * broke, drained or stops; CLOCK_MONOTONIC */
	pthread_cond_t rcv;
	size_t waiting; /* callers asleep on cv */
	CK_SESSION_HANDLE *sess;
	size_t *free_idx; /* stack of idle session indexes */
	size_t nfree;
	size_t pool_size;
	size_t busy;
	int broken;     /* a call saw the token/session lost */
	int recovering; /* the recovery thread is at work (no mu) */
	int down;       /* the last recovery attempt failed */
	int stopping;   /* tok_close: the recovery thread ends */
	int rthread_ok;
	pthread_t rthread;    /* recovers a broken pool, never a caller */
	unsigned deadline_ms; /* longest wait for a session */
	uint64_t recoveries, recovery_failures;
	CK_OBJECT_HANDLE domain_key;
	/* a rotation under way (two domain keys): the older; else invalid */
	CK_OBJECT_HANDLE domain_old;
	CK_OBJECT_HANDLE jwt_priv;
	CK_OBJECT_HANDLE bind_key; /* HMAC key of version-2 blob tags */
	CK_OBJECT_HANDLE seal_key; /* AES-GCM key of version-3 blobs */
	uint8_t *jwt_spki;
	size_t jwt_spki_len;
	pthread_mutex_t bmu; /* one creator of the backup (or audit) key */
	int sync_ok;         /* mu, bmu, cv and rcv exist */

	pthread_mutex_t cmu; /* cache; taken after mu, never before */
	int cache_ok;        /* cmu and buckets exist */
	struct hsm_cache_ent **buckets;
	size_t nbuckets;
	size_t ncached;
	size_t cache_size;
	struct hsm_cache_ent *lru_head, *lru_tail;
	uint64_t hits, misses;
};

/* A pool session lent to one caller. */
struct hsm_sess {
	size_t idx;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE domain_key;
	CK_OBJECT_HANDLE domain_old;
	CK_OBJECT_HANDLE jwt_priv;
	CK_OBJECT_HANDLE bind_key;
	CK_OBJECT_HANDLE seal_key;
	int lost; /* set by hsm_ck() when the session is lost */
};

/* ---- p11.c: the module, slots, objects by label, CKR_* mapping ---- */
int hsm_load(const char *path, void **dl, CK_FUNCTION_LIST **f,
    int *owns_init) HSM_WUR;
void hsm_unload(void *dl, CK_FUNCTION_LIST *f, int owns_init);
void hsm_pad_label(const char *label, unsigned char out[32]);
/* The slot of the initialised token labelled label; with label NULL, the
 * first slot whose token is not initialised. HSM_ERR_UNAVAILABLE when
 * there is none. */
int hsm_slot_find(CK_FUNCTION_LIST *f, const char *label,
    CK_SLOT_ID *slot) HSM_WUR;
/* How many objects of class cls labelled label s sees, in *n (0, 1 or 2:
 * two is already too many); *obj is set when there is exactly one. */
CK_RV hsm_find_label(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s,
    CK_OBJECT_CLASS cls, const char *label, CK_OBJECT_HANDLE *obj,
    CK_ULONG *n) HSM_WUR;
/* The one object of a role: HSM_ERR_UNAVAILABLE when there is none,
 * HSM_ERR_INTERNAL when two claim it. */
int hsm_find_object(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s,
    CK_OBJECT_CLASS cls, const char *label, CK_OBJECT_HANDLE *obj) HSM_WUR;
/* Maps rv to an HSM_ERR_*, marking the session lost when it should be. */
int hsm_ck(struct hsm_sess *s, CK_RV rv) HSM_WUR;
/* As hsm_ck for token trouble (a lost session, no memory); any other
 * failure is blame: the caller's input (HSM_ERR_ARGS), a decoding
 * failure (HSM_ERR_DECRYPT), a blob that does not open
 * (HSM_ERR_INTERNAL). */
int hsm_ck_blame(struct hsm_sess *s, CK_RV rv, int blame) HSM_WUR;
/* The mapping of a call outside the pool (init, PIN change, role keys):
 * a refused PIN is HSM_ERR_ARGS. */
int hsm_init_rv(CK_RV rv) HSM_WUR;
/* Destroys *o (if any) and forgets it; a failure only marks s lost. */
void hsm_destroy(CK_FUNCTION_LIST *f, struct hsm_sess *s, CK_OBJECT_HANDLE *o);
/* A token key of one role, made in R/W session s logged in as user:
 * HSM_BIND_LABEL the HMAC bind key, any other label an AES-256-GCM key
 * (HSM_SEAL_LABEL, HSM_BACKUP_LABEL): private, sensitive, extractable
 * only wrapped by a trusted key (CKA_WRAP_WITH_TRUSTED). */
CK_RV hsm_role_key_make(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s,
    const char *label, CK_OBJECT_HANDLE *k) HSM_WUR;
/* The template of a domain key of generation gen (CKA_ID: gen, 8 bytes
 * big-endian, in id): AES-256 (the caller adds CKA_VALUE_LEN when it
 * generates), token, public (SoftHSMv2 lets only the SO make a trusted
 * key, and the SO makes only public objects), trusted, sensitive,
 * extractable only wrapped by a trusted key, wrap/unwrap only; what it
 * unwraps stays sensitive and wrap-with-trusted; it wraps only session
 * private keys. A domain key of before clustering has no CKA_ID (it is
 * generation 0), is not extractable, and its unwrap template pins what
 * it opens as not extractable. */
#define HSM_DOMAIN_TEMPLATE_N 20
#define HSM_DOMAIN_ID_LEN 8
size_t hsm_domain_template(CK_ATTRIBUTE t[HSM_DOMAIN_TEMPLATE_N], uint64_t gen,
    uint8_t id[HSM_DOMAIN_ID_LEN]);
/* DER of a curve's OID, as CKA_EC_PARAMS holds it: at most this long */
#define HSM_EC_PARAMS_MAX 16
/* An EC P-256 token key pair labelled label whose private half is
 * sensitive, extractable only wrapped by a trusted key (to a joining
 * node) and sign-only (the JWT key, the audit key), in R/W session s. */
int hsm_sign_pair_make(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s,
    const char *label) HSM_WUR;
/* The same in a R/W session of its own on slot (the login is shared). */
CK_RV hsm_role_key_new(CK_FUNCTION_LIST *f, CK_SLOT_ID slot, const char *label,
    CK_OBJECT_HANDLE *k) HSM_WUR;
/* Finds a token key of one role (HSM_BIND_LABEL, HSM_SEAL_LABEL) in a
 * logged-in session; with create, makes it first if the token has none
 * (tokens initialised before the role). */
int hsm_role_key_find(CK_FUNCTION_LIST *f, CK_SLOT_ID slot, CK_SESSION_HANDLE s,
    const char *label, int create, CK_OBJECT_HANDLE *key) HSM_WUR;

/* ---- blob.c: the blob format, the bind, the domain key ---- */
/* Parses a blob of either version (bi->version says which); a malformed
 * one is HSM_ERR_INTERNAL. Pure parsing: nothing is verified. */
int hsm_blob_parse(const uint8_t *blob, size_t len,
    struct hsm_blob_info *bi) HSM_WUR;
/* 0 if bind is a usable bind (1..HSM_BIND_MAX bytes), else HSM_ERR_ARGS. */
int hsm_bind_check(const char *bind) HSM_WUR;
/* Verifies a version-2 blob's tag against bind, in the token (constant-
 * time comparison). Version 1, a wrong bind or any bad tag:
 * HSM_ERR_INTERNAL. */
int hsm_blob_verify(tok_t *h, struct hsm_sess *s, const char *bind,
    const struct hsm_blob_info *bi) HSM_WUR;
/* Opens a version-3 blob against bind: GCM in the token under the seal
 * key; on success bi->wrapped points at buf (HSM_WRAP_BUF bytes; the
 * caller wipes it). Any other version, a wrong bind or an altered blob:
 * HSM_ERR_INTERNAL (logged as blob_binding_failed). */
int hsm_blob_open(tok_t *h, struct hsm_sess *s, const char *bind,
    struct hsm_blob_info *bi, uint8_t *buf) HSM_WUR;
/* A version-3 blob of wrapped, sealed in the token and bound to bind. */
int hsm_blob_build(tok_t *h, struct hsm_sess *s, const char *bind,
    enum hsm_kty kty, unsigned param, const uint8_t *wrapped,
    size_t wrapped_len, uint8_t **blob, size_t *blob_len) HSM_WUR;
/* The template of a private key made or imported here: a session object,
 * sensitive, extractable only under the domain key (wrap-with-trusted),
 * for signing and, where *is_rsa, decryption. *kt and *is_rsa are read
 * when the template is used. Returns the count, HSM_PRIV_TEMPLATE_N. */
#define HSM_PRIV_TEMPLATE_N 10
size_t hsm_priv_template(CK_ATTRIBUTE t[HSM_PRIV_TEMPLATE_N], CK_KEY_TYPE *kt,
    CK_BBOOL *is_rsa);
/* Wraps priv under the domain key into a blob bound to bind
 * (hsm_blob_build). */
int hsm_domain_wrap(tok_t *h, struct hsm_sess *s, CK_OBJECT_HANDLE priv,
    const char *bind, enum hsm_kty kty, unsigned param, uint8_t **blob,
    size_t *blob_len) HSM_WUR;
/* A parsed blob into a non-extractable session object: a key's, for
 * signing (and RSA decryption), or with kek a BYOK KEK's (RSA), for
 * unwrapping only. A blob the domain key does not open is
 * HSM_ERR_INTERNAL. Checks no tag: callers open it first (hsm_key_get,
 * BYOK) or are the upgrade of an older blob. */
int hsm_domain_unwrap(tok_t *h, struct hsm_sess *s,
    const struct hsm_blob_info *bi, int kek, CK_OBJECT_HANDLE *obj) HSM_WUR;

/* A parsed, opened blob's key from the old domain key of a rotation to
 * the new: *out a blob bound to bind. HSM_ERR_EXISTS: under the new key
 * already. */
int hsm_domain_rewrap(tok_t *h, struct hsm_sess *s,
    const struct hsm_blob_info *bi, const char *bind, uint8_t **out,
    size_t *out_len) HSM_WUR;
/* The domain keys of the token in session s: *cur the newest (by
 * CKA_ID), *old the older when there are two (else CK_INVALID_HANDLE);
 * none: HSM_ERR_UNAVAILABLE; more than two: HSM_ERR_INTERNAL. */
int hsm_domain_keys(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s,
    CK_OBJECT_HANDLE *cur, CK_OBJECT_HANDLE *old) HSM_WUR;

/* ---- cache.c: the handle cache ---- */
int hsm_cache_init(tok_t *h, size_t cache_size) HSM_WUR;
void hsm_cache_clear(tok_t *h); /* on recovery: handles are gone */
void hsm_cache_free(tok_t *h);
/* The cached session object of a blob: the blob is opened against
 * cache_id (the bind) before it is unwrapped; a cached handle is only
 * reused for the same cache_id and the same blob bytes. */
int hsm_key_get(tok_t *h, struct hsm_sess *s, const char *cache_id,
    const uint8_t *blob, size_t blob_len, struct hsm_cache_ent **out) HSM_WUR;
void hsm_key_put(tok_t *h, struct hsm_sess *s, struct hsm_cache_ent *ent);
/* Drops cache_id's entry (destroyed now in s, or by its last user; s
 * NULL: the session is gone, and the handle with it). */
void hsm_cache_forget(tok_t *h, struct hsm_sess *s, const char *cache_id);

/* ---- module.c: the session pool ---- */
int hsm_sess_take(tok_t *h, struct hsm_sess *s) HSM_WUR;
void hsm_sess_give(tok_t *h, struct hsm_sess *s);

/* ---- keys.c: the skeleton of every new key ---- */
/* What a maker leaves in the token and knows of it. */
struct hsm_key_new {
	CK_OBJECT_HANDLE priv; /* the private key, a session object */
	CK_OBJECT_HANDLE pub;  /* its public twin, or CK_INVALID_HANDLE */
	struct hsm_key_desc desc;
	uint8_t *spki; /* NULL: read from pub by the skeleton */
	size_t spki_len;
};
/* Makes the template and creates or unwraps the private key in s; the
 * skeleton destroys whatever it left in k on every path and frees
 * k->spki on failure. */
typedef int (*hsm_key_maker)(tok_t *h, struct hsm_sess *s, const void *arg,
    struct hsm_key_new *k);
/* A new key: make (in a pool session), its public part, wrapped under
 * the domain key into a blob bound to bind. Out as tok_key_generate;
 * desc (may be NULL) what it turned out to be. */
int hsm_key_new(tok_t *h, const char *bind, hsm_key_maker make, const void *arg,
    struct hsm_key_desc *desc, uint8_t **blob, size_t *blob_len, uint8_t **spki,
    size_t *spki_len) HSM_WUR;

#define HSM_BACKUP_LABEL "p11vault-backup"
#define HSM_AUDIT_LABEL "p11vault-audit"

/* ---- tokend.c ---- */
/* One request read from channel fd, run on the open token t through the
 * token process's op table and answered, exactly as a channel thread of
 * the token process serves it: 0, or -1 when the channel would hang up.
 * For the allocation-failure torture (tests/torture/, target tokp),
 * which serves a socketpair in its own process. */
int tokd_serve_one(tok_t *t, int fd) HSM_WUR;
/* ---- node.c: the token side of clustering ---- */
#define HSM_TRANSPORT_LABEL "p11vault-transport" /* this node's pair */
#define HSM_NODE_LABEL "p11vault-node" /* an approved node's public key */
/* The objects of a node's new token, in R/W session s: the user PIN (as
 * SO) and, as user, the transport key pair (RSA-3072; the private half
 * private, sensitive, never extractable, unwrap only, and what it
 * unwraps is a session secret that is not extractable). */
int tok_node_objects(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s,
    const char *so_pin, const char *user_pin) HSM_WUR;

#endif
