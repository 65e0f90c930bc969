/*
 * keys.h — the private header of the keys data plane (api/keys_*.c); the
 * rest of api/ sees only api_keys and api_deletedkeys (api.h).
 *
 * The files call down, never sideways and back:
 *
 *   keys_api.c       route tables; create, get, update, delete, lists,
 *                    rotate, deleted keys
 *   keys_ops.c       encrypt, decrypt, wrap, unwrap, sign, verify
 *   keys_import.c    PUT /keys/{name}: JWK with private parts, BYOK
 *   keys_backup.c    backup, restore
 *   keys_rotation.c  rotation policies
 *     -> keys_bundle.c  KeyBundle/KeyItem JSON, lists and paging, key ids
 *     -> keys_jwk.c     public JWK from an SPKI; private JWK to PKCS#8
 *     -> keys_parse.c   the one parser of kty, crv, key_ops, attributes
 *                       and tags of every key request body
 *
 * Must never (all of them): return private key parts; echo request values
 * in errors; keep a plaintext or a private part beyond the request.
 */
#ifndef P11VAULT_API_KEYS_H
#define P11VAULT_API_KEYS_H

#include "api/api.h"
#include "hsm/pkey.h"

/* ---- keys_parse.c ------------------------------------------------------- */

#define KEYS_TAGS_MAX 15
#define KEYS_TAG_NAME_MAX 512
#define KEYS_TAG_VALUE_MAX 256

/* attributes of a create, update or import body; has_* say which fields
 * were there (null counts as there for nbf and exp: it clears them) */
struct keys_attrs {
	int has_enabled, enabled;
	int has_nbf, has_exp;
	int64_t nbf, exp;
};

/*
 * Each returns 0, or VLT_ERR_BAD_PARAM (VLT_ERR_NO_MEMORY) with r holding
 * the 400 (500) that names the field.
 */
/* body.attributes; absent or null: nothing there. exportable must be a
 * boolean, and true is refused (keys never leave the HSM). */
int keys_parse_attrs(json_t *body, struct keys_attrs *a,
    struct api_resp *r) API_WUR;
/* body.tags as compact sorted JSON text (malloc'd) in *tags; NULL when
 * absent or null (Azure: null is "not given"; {} clears). */
int keys_parse_tags(json_t *body, char **tags, struct api_resp *r) API_WUR;
/* A key_ops array (names in any case); *has 0 when v is absent or null. */
int keys_parse_ops(json_t *v, unsigned *ops, int *has,
    struct api_resp *r) API_WUR;
/* obj.kty: RSA, RSA-HSM, EC, EC-HSM. label names the field in messages
 * ("kty", "key.kty"). */
int keys_parse_kty(json_t *obj, const char *label, enum vlt_kty *kty, int *hsm,
    struct api_resp *r) API_WUR;
/* obj.crv: P-256, P-256K, P-384, P-521; *c NULL when absent and not required. */
int keys_parse_crv(json_t *obj, const char *label, int required,
    const struct hsm_curve_info **c, struct api_resp *r) API_WUR;
/* key_ops possible for kty (EC: sign and verify only). */
int keys_check_ops(enum vlt_kty kty, unsigned ops, struct api_resp *r) API_WUR;
/* The key_ops of a mask as a JSON array of Azure's names. */
json_t *keys_ops_json(unsigned ops);

/* ---- keys_jwk.c --------------------------------------------------------- */

/* The public JsonWebKey of k (kid, kty, key_ops, n/e or crv/x/y); NULL
 * when its SPKI cannot be read. */
json_t *keys_jwk_public(const struct vlt_key_info *k, const char *kid);
/* A JWK with private parts (key), checked for consistency, as a PKCS#8
 * DER in *pkcs8 (free with freezero(*pkcs8, *len)). */
int keys_jwk_pkcs8(json_t *key, enum vlt_kty kty, uint8_t **pkcs8, size_t *len,
    struct api_resp *r) API_WUR;
/* Overwrites the private parts' text in the parsed JWK, in place. */
void keys_jwk_wipe(json_t *key);

/* ---- keys_bundle.c ------------------------------------------------------ */

enum keys_shape {
	KEYS_BUNDLE,       /* KeyBundle, with the JWK */
	KEYS_ITEM_VERSION, /* KeyItem whose kid names the version */
	KEYS_ITEM_KEY,     /* KeyItem whose kid names the key only */
};
/* {vault}/keys/{name}[/{version}] into out (version NULL or "": none). */
int keys_kid(struct api_req *q, const char *name, const char *version,
    char *out, size_t cap) API_WUR;
/* The audit event's key id (q->key_id): a kid, or with deleted 1 the
 * recovery id {vault}/deletedkeys/{name}; r gets a 400 when it does not
 * fit. */
int keys_set_key_id(struct api_req *q, struct api_resp *r, const char *name,
    const char *version, int deleted) API_WUR;
/* The answer to a call on one key that returned rc: the vault error
 * (naming err_name), else k's bundle, with the key id set first to
 * id_name's version when id_name is not NULL. Clears *k. */
void keys_send_key(struct api_req *q, struct api_resp *r, int rc,
    const char *err_name, const char *id_name, struct vlt_key_info *k);
/* maxresults and $skiptoken of q: *cont malloc'd or NULL. */
int keys_parse_paging(struct api_req *q, struct api_resp *r, size_t *max,
    char **cont) API_WUR;
/* A list page (items and next are freed). path: the list's path for
 * nextLink; shape KEYS_ITEM_VERSION or KEYS_ITEM_KEY. */
void keys_send_list(struct api_req *q, struct api_resp *r, int rc,
    struct vlt_key_info *items, size_t n, char *next, const char *path,
    size_t max, enum keys_shape shape);

/* ---- the handlers ------------------------------------------------------- */

/* keys_ops.c: a cryptographic operation as routes see it */
enum keys_crypto_kind { KEYS_ENCRYPT, KEYS_DECRYPT, KEYS_SIGN, KEYS_VERIFY };
struct keys_crypto_op {
	const char *path;  /* path segment, lower case */
	const char *azure; /* Azure's name, in messages and audit */
	enum keys_crypto_kind kind;
	unsigned perm; /* PERM_* it needs */
	unsigned op;   /* VLT_OP_* it exercises */
};
/* The operation of a path segment (any case); NULL if none. */
const struct keys_crypto_op *keys_crypto_op_find(const char *seg);

/* What a route addresses: a key, perhaps a version, perhaps an
 * operation. */
struct key_target {
	const char *name;                /* NULL for /keys, /deletedkeys */
	const char *version;             /* NULL: the latest */
	const struct keys_crypto_op *op; /* the crypto routes only */
};
typedef void keys_handler(struct api_req *q, struct api_resp *r,
    const struct key_target *t);

/* keys_ops.c */
keys_handler keys_crypto;
/* keys_import.c */
keys_handler keys_import;
/* keys_backup.c */
keys_handler keys_backup;
keys_handler keys_restore;
/* keys_rotation.c */
keys_handler keys_rotation_get;
keys_handler keys_rotation_set;

#endif
