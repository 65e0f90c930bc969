/*
 * hsm — everything PKCS#11, and nothing else.
 *
 * Owns: the token process and the way to it. hsm_open starts the token
 * process (tokend.c), which alone loads the module, reads the user PIN,
 * owns the token's sessions (a pool), login, the domain key, generation
 * of customer keys inside the token, wrapping them under the domain key
 * into opaque blobs bound to what they are (see `bind` below), unwrapping
 * blobs into session objects (bounded LRU handle cache keyed by a
 * caller-chosen id), the private-key operations, and the token-resident
 * JWT signing key. The caller's process (client.c) holds no PIN, no
 * CK_* handle and no private key material: it sends small messages
 * (proto.h) and restarts the token process when it dies.
 *
 * Must never: return or log private key material, PINs or plaintexts;
 * know anything of HTTP, JSON or SQL. CKR_* codes are translated here into
 * HSM_ERR_* and never leave this module.
 *
 * Thread safety: every function taking an hsm_t may be called from many
 * threads at once.
 */
#ifndef P11VAULT_HSM_H
#define P11VAULT_HSM_H

#include <stddef.h>
#include <stdint.h>

#define HSM_WUR __attribute__((warn_unused_result))

enum hsm_err {
	HSM_OK = 0,
	HSM_ERR_ARGS = -1,    /* caller's input is invalid (length, alg) */
	HSM_ERR_DECRYPT = -2, /* any padding/decoding failure: one error */
	HSM_ERR_UNAVAILABLE =
	    -3, /* token/device/session trouble: retry later */
	HSM_ERR_NO_MEMORY = -4,
	HSM_ERR_INTERNAL = -5, /* a bug or an inconsistent blob */
	HSM_ERR_EXISTS = -6,   /* hsm_token_init: the token is initialised */
	HSM_ERR_SEALED = -7,   /* the vault is sealed: no key operation */
	HSM_ERR_IO = -8,       /* a file could not be read or written */
	/* a token key made before clustering cannot leave its token */
	HSM_ERR_NOT_SHAREABLE = -9,
};
#define HSM_ERR_LAST HSM_ERR_NOT_SHAREABLE

enum hsm_kty { HSM_KTY_RSA = 1, HSM_KTY_EC = 2 };

/* EC curves by OpenSSL NID are accepted: NID_X9_62_prime256v1,
 * NID_secp384r1, NID_secp521r1, NID_secp256k1. */

enum hsm_alg {
	/* decrypt / public encrypt */
	HSM_ALG_RSA_OAEP = 1, /* OAEP, SHA-1, MGF1-SHA-1 */
	HSM_ALG_RSA_OAEP_256, /* OAEP, SHA-256, MGF1-SHA-256 */
	HSM_ALG_RSA1_5,       /* PKCS#1 v1.5 type 2 */
	/* sign / verify: the input is the digest */
	HSM_ALG_RS256,
	HSM_ALG_RS384,
	HSM_ALG_RS512,
	HSM_ALG_PS256,
	HSM_ALG_PS384,
	HSM_ALG_PS512, /* salt = digest length */
	HSM_ALG_ES256,
	HSM_ALG_ES384,
	HSM_ALG_ES512,  /* raw r||s output */
	HSM_ALG_ES256K, /* ECDSA on secp256k1, SHA-256 digest, r||s */
};

struct hsm_config {
	const char *module_path; /* e.g. /usr/lib/softhsm/libsofthsm2.so */
	const char *token_label; /* slot is found by this label */
	/* DIR/hsm: the seal configuration and the
	 * unattended credential, read by the token
	 * process only */
	const char *hsm_dir;
	/* ':'-separated directories the module
	 * must lie in; NULL = HSM_MODULE_ALLOW */
	const char *module_allow;
	/* user the token process runs as; NULL =
	 * this process's user */
	const char *run_as;
	size_t pool_size;  /* sessions; 0 = 8 */
	size_t cache_size; /* cached key handles; 0 = 4096 */
	/* SOFTHSM2_CONF of the token processes (this process's own
	 * environment is left alone); NULL: inherited */
	const char *softhsm_conf;
};

/* Where a PKCS#11 module may be loaded from, unless configured. */
#define HSM_MODULE_ALLOW "/usr/lib:/usr/local/lib:/usr/lib64"

/* argv[1] of the token process. main() (and the unit tests) hand such an
 * invocation to hsm_token_main before anything else. */
#define HSM_TOKEN_ARGV "token-process"
int hsm_token_main(int argc, char **argv);

typedef struct hsm hsm_t;

/*
 * The unseal ceremonies, each in a token process of its own (which checks
 * module_path against module_allow as hsm_open does).
 *
 * hsm_token_init initialises a fresh token in the first slot without an
 * initialised token, with PINs derived from a new unseal secret S that
 * is split into `shares` operator key shares, any `threshold` of which
 * unseal (Shamir, libgfshare; 0 shares only with an unattended method),
 * and encrypted by the unattended method, if any. It makes, as SO, the
 * domain key (AES-256, CKA_TRUSTED, public, sensitive, not extractable,
 * wrap/unwrap only, "p11vault-domain") and, as user, the JWT signing key
 * pair ("p11vault-jwt"), the bind key and the seal key ("p11vault-seal",
 * private, not extractable: it seals every blob), and writes
 * hsm_dir/seal.conf. *shares: the shares, a line each, shown once.
 * HSM_ERR_EXISTS if a token with that label already exists.
 *
 * hsm_rekey takes the current S from old_shares (a line each; or from
 * the unattended method when there are no shares; or from the PIN files
 * of a vault made before sealing), then makes a new S, new shares and
 * new PINs: the old shares open nothing any more. auto_method "" keeps
 * the current method.
 *
 * auto_method: "" or "none"; "systemd-creds[:host|tpm2|host+tpm2|auto]";
 * "clevis:PIN CONFIG" (e.g. clevis:tang {"url":"http://tang"}).
 */
struct hsm_init {
	const char *module_path;
	const char *module_allow; /* NULL = HSM_MODULE_ALLOW */
	const char *token_label;
	const char *hsm_dir;
	unsigned threshold, shares;
	const char *auto_method;
	const char *softhsm_conf; /* as in struct hsm_config */
	/* hsm_token_init: the token of a node yet to join a cluster (the
	 * PINs and its transport key pair only; no domain) */
	int node;
};
int hsm_token_init(const struct hsm_init *p, char **shares) HSM_WUR;

/*
 * Clustering: one-shot ceremonies on the token of p (threshold, shares,
 * auto_method and node unused), each in a token process of its own.
 * shares: the vault's current key shares, a line each ("" when the vault
 * has an unattended method only), from which the token process derives
 * the SO and user PINs; unused by HSM_NODE_REQUEST.
 *
 * HSM_NODE_REQUEST: *out = this node's transport public key (SPKI; the
 *   token of `node init`). The join request's fingerprint is its
 *   SHA-256.
 * HSM_NODE_APPROVE: in = a node's transport SPKI (RSA-3072). As SO, the
 *   token trusts it (a public token object "p11vault-node", CKA_ID the
 *   fingerprint, CKA_TRUSTED) and wraps the domain key (under a fresh
 *   AES key K, itself RSA-OAEP SHA-1 under the transport key) and the
 *   seal, bind, backup, JWT and audit keys (CKM_AES_KEY_WRAP_PAD under
 *   K) into *out, the join bundle. HSM_ERR_NOT_SHAREABLE: the vault was
 *   made before clustering (its keys cannot leave its token).
 * HSM_NODE_JOIN: in = a bundle made for this token: unwrapped into it
 *   (the domain key as SO). HSM_ERR_DECRYPT: made for another node, or
 *   altered; HSM_ERR_EXISTS: the token holds a domain already.
 * HSM_NODE_FORGET: in = a fingerprint (32 bytes): the trusted key of
 *   that node is deleted from the token; *out = one byte, how many.
 * HSM_ERR_ARGS: too few valid shares (or a malformed input).
 */
enum hsm_node_op {
	HSM_NODE_REQUEST = 1,
	HSM_NODE_APPROVE = 2,
	HSM_NODE_JOIN = 3,
	HSM_NODE_FORGET = 4,
	/* rotation of the domain key (rekey-domain), as SO: DOMAIN_NEW makes
	 * the next domain key beside the current one (none if two exist
	 * already; HSM_ERR_NOT_SHAREABLE for a domain key made before
	 * clustering, which can never re-wrap a blob); DOMAIN_DROP destroys
	 * the older of two. While a token holds two, it opens with the
	 * newer for new blobs and hsm_blob_rewrap moves the others. */
	HSM_DOMAIN_NEW = 5,
	HSM_DOMAIN_DROP = 6,
};
int hsm_node(const struct hsm_init *p, enum hsm_node_op op, const char *shares,
    const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len) HSM_WUR;
int hsm_rekey(const struct hsm_init *p, const char *old_shares,
    char **shares) HSM_WUR;

/*
 * Other files of the data directory kept under systemd-creds (the TLS
 * private key), with the vault's own key choice when its unattended
 * method is systemd-creds, else the host key: hsm_at_rest_seal encrypts
 * data (credential name, e.g. "p11vault-tls-key") into dir/file;
 * hsm_at_rest_open decrypts path into out[cap] (first from
 * $CREDENTIALS_DIRECTORY/name under systemd). -1 with *why on failure
 * (not root, no systemd-creds, another machine's file). Run by the
 * network process at init and at the start of serve, before its filter
 * and privilege drop.
 */
int hsm_at_rest_seal(const char *hsm_dir, const char *name, const uint8_t *data,
    size_t len, const char *dir, const char *file, const char **why) HSM_WUR;
int hsm_at_rest_open(const char *hsm_dir, const char *name, const char *path,
    uint8_t *out, size_t cap, size_t *len, const char **why) HSM_WUR;

/* Where the unsealing stands. result: of the last share given. */
enum {
	HSM_SHARE_TAKEN = 0,
	HSM_SHARE_UNKNOWN = 1,
	HSM_SHARE_REPEATED = 2,
	HSM_SHARE_MALFORMED = 3
};
struct hsm_seal_status {
	int sealed;
	unsigned threshold, shares, progress;
	int plaintext_pins; /* a vault of the PIN-file era, not yet moved */
	int result;
};
int hsm_seal_status(hsm_t *h, struct hsm_seal_status *st) HSM_WUR;
/* One operator key share (NULL: reset, forgetting the shares taken). */
int hsm_unseal_share(hsm_t *h, const char *share,
    struct hsm_seal_status *st) HSM_WUR;

/* Starts the token process, which unseals (unattended, if it can),
 * loads the module, finds the token by label, opens the session pool and
 * logs in; answers once it has, or once it knows it is sealed (calls then
 * answer HSM_ERR_SEALED until hsm_unseal_share has taken enough). If the
 * token process dies later, calls answer HSM_ERR_UNAVAILABLE while a new
 * one is started (with backoff). */
int hsm_open(const struct hsm_config *cfg, hsm_t **out) HSM_WUR;
void hsm_close(hsm_t *h);

/* 0 when the token answers and the pool is logged in, else
 * HSM_ERR_UNAVAILABLE. Cheap. */
int hsm_health(hsm_t *h) HSM_WUR;

/*
 * Generates a key pair inside the token (private key: session object,
 * CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_WRAP_WITH_TRUSTED), wraps the private
 * key with the domain key (CKM_AES_KEY_WRAP_PAD) and destroys the objects.
 * Out: *blob (opaque, self-describing: key type is inside) and *spki (the
 * public key as DER SubjectPublicKeyInfo). Both malloc'd; caller frees.
 * rsa_bits: 2048, 3072 or 4096 (RSA); ec_nid: a curve NID (EC).
 *
 * bind names what the blob is (the vault passes "name/version"; at most
 * HSM_BIND_MAX bytes): the token MACs it with the blob, and every later
 * use of the blob must name the same bind as its cache_id, or it fails
 * (HSM_ERR_INTERNAL): a blob moved to another row of the store opens
 * nowhere else.
 */
#define HSM_BIND_MAX 512
int hsm_key_generate(hsm_t *h, const char *bind, enum hsm_kty kty,
    unsigned rsa_bits, int ec_nid, uint8_t **blob, size_t *blob_len,
    uint8_t **spki, size_t *spki_len) HSM_WUR;

/*
 * Private-key operations on a blob. cache_id names the blob: it is the
 * bind the blob was made with (a blob bound to anything else fails with
 * HSM_ERR_INTERNAL); the unwrapped session object's handle is cached
 * under it.
 * Decrypt: RSA_OAEP in the token with CKM_RSA_PKCS_OAEP; OAEP_256 and
 * RSA1_5 as raw RSA (CKM_RSA_X_509) in the token plus constant-time
 * decoding outside. in_len must equal the modulus length (HSM_ERR_ARGS).
 * Every padding failure is HSM_ERR_DECRYPT, indistinguishable.
 * *out_len holds the buffer size on input, the result length on output.
 */
int hsm_key_decrypt(hsm_t *h, const char *cache_id, const uint8_t *blob,
    size_t blob_len, enum hsm_alg alg, const uint8_t *in, size_t in_len,
    uint8_t *out, size_t *out_len) HSM_WUR;

/* Signs a digest. dlen must match the algorithm's hash (HSM_ERR_ARGS).
 * *sig_len: buffer size in, signature length out. */
int hsm_key_sign(hsm_t *h, const char *cache_id, const uint8_t *blob,
    size_t blob_len, enum hsm_alg alg, const uint8_t *digest, size_t dlen,
    uint8_t *sig, size_t *sig_len) HSM_WUR;

/* Drops the cached handle for cache_id (purge: crypto-shred). */
void hsm_key_forget(hsm_t *h, const char *cache_id);

/* Public-key operations, in OpenSSL, on a DER SubjectPublicKeyInfo. No
 * token needed. Input too long for the algorithm: HSM_ERR_ARGS. */
int hsm_pub_encrypt(const uint8_t *spki, size_t spki_len, enum hsm_alg alg,
    const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len) HSM_WUR;
int hsm_pub_verify(const uint8_t *spki, size_t spki_len, enum hsm_alg alg,
    const uint8_t *digest, size_t dlen, const uint8_t *sig, size_t sig_len,
    int *valid) HSM_WUR;

/* Modulus size in bytes (RSA) or the field size in bytes (EC) of a public
 * key; 0 on a malformed key. */
size_t hsm_pub_size(const uint8_t *spki, size_t spki_len);

/* ES256 with the token's JWT key over data (SHA-256 computed here);
 * sig receives 64 bytes r||s. */
int hsm_jwt_sign(hsm_t *h, const uint8_t *data, size_t len,
    uint8_t sig[64]) HSM_WUR;
/* The JWT key's public half as DER SubjectPublicKeyInfo, malloc'd. */
int hsm_jwt_public(hsm_t *h, uint8_t **spki, size_t *spki_len) HSM_WUR;

/* ES256 with the token's audit key ("p11vault-audit", EC P-256, made on
 * first use; it signs audit checkpoints only) over data (SHA-256
 * computed here); sig receives 64 bytes r||s. */
int hsm_audit_sign(hsm_t *h, const uint8_t *data, size_t len,
    uint8_t sig[64]) HSM_WUR;
/* The audit key's public half as DER SubjectPublicKeyInfo, malloc'd. */
int hsm_audit_public(hsm_t *h, uint8_t **spki, size_t *spki_len) HSM_WUR;

/* The live token process's pid (0 while there is none) and how many
 * token processes were started after the first, for metrics and tests. */
void hsm_process(hsm_t *h, long *pid, uint64_t *restarts);

/* Cache statistics, for metrics. */
void hsm_stats(hsm_t *h, uint64_t *cache_hits, uint64_t *cache_misses,
    size_t *sessions_busy, size_t *sessions_total);

/* ---- import and backup sealing (in the token: import.c, backup.c) ---- */

/* What an imported key turned out to be. */
struct hsm_key_desc {
	enum hsm_kty kty;
	unsigned rsa_bits; /* 2048, 3072 or 4096 */
	int ec_nid;        /* a curve NID (EC) */
};

/*
 * Plaintext import: pkcs8 (DER PrivateKeyInfo, RSA 2048/3072/4096 or EC
 * P-256/384/521) is created in the token as a session object (sensitive,
 * extractable only under a trusted key), wrapped under the domain key like
 * a generated key, and destroyed. The caller wipes pkcs8. Out as for
 * hsm_key_generate (bound to bind). A malformed or unsupported key:
 * HSM_ERR_ARGS.
 */
int hsm_key_import(hsm_t *h, const char *bind, const uint8_t *pkcs8,
    size_t pkcs8_len, struct hsm_key_desc *desc, uint8_t **blob,
    size_t *blob_len, uint8_t **spki, size_t *spki_len) HSM_WUR;

/*
 * BYOK: transfer = RSA-OAEP(SHA-1) ciphertext under the key-exchange key
 * (kek_blob, an RSA blob) of an AES-256 key, followed by the target's
 * PKCS#8 wrapped with that key (RFC 5649). Both steps are C_UnwrapKey in
 * the token; the target key is then wrapped under the domain key (bound
 * to bind; the KEK's blob must be bound to kek_bind). Every
 * failure to open the transfer (wrong KEK, altered, truncated):
 * HSM_ERR_ARGS.
 */
int hsm_key_import_byok(hsm_t *h, const char *bind, const char *kek_bind,
    const uint8_t *kek_blob, size_t kek_blob_len, const uint8_t *transfer,
    size_t transfer_len, struct hsm_key_desc *desc, uint8_t **blob,
    size_t *blob_len, uint8_t **spki, size_t *spki_len) HSM_WUR;

/*
 * Authenticated encryption (AES-256-GCM in the token) under the token's
 * backup key "p11vault-backup", created on first use. Only a token holding
 * that key opens the result: any other token, or an altered input, gives
 * HSM_ERR_DECRYPT. *out malloc'd.
 */
int hsm_seal(hsm_t *h, const uint8_t *in, size_t in_len, uint8_t **out,
    size_t *out_len) HSM_WUR;
int hsm_unseal(hsm_t *h, const uint8_t *in, size_t in_len, uint8_t **out,
    size_t *out_len) HSM_WUR;

/*
 * A blob of an older format into the current one (format 3: sealed under
 * the token's private seal key, bound to bind), for the one-time upgrade
 * of a store or of a restored backup. Format 2 (bound by a MAC) must
 * verify against bind; format 1 (bound to nothing) is checked only to
 * open under the domain key. A current blob is refused (HSM_ERR_ARGS):
 * binding is never changed.
 */
int hsm_blob_upgrade(hsm_t *h, const char *bind, const uint8_t *blob,
    size_t blob_len, uint8_t **out, size_t *out_len) HSM_WUR;
/* A current blob under the old domain key of a rotation into one under
 * the new key (the key stays in the token: unwrapped as a session object
 * extractable only under a trusted key, wrapped under the new one),
 * bound to the same bind. HSM_ERR_EXISTS: it is under the new key
 * already; HSM_ERR_ARGS: the token is not rotating. */
int hsm_blob_rewrap(hsm_t *h, const char *bind, const uint8_t *blob,
    size_t blob_len, uint8_t **out, size_t *out_len) HSM_WUR;
#define HSM_BLOB_FORMAT_UNBOUND 1 /* format 1: bound to nothing */
#define HSM_BLOB_FORMAT_CURRENT 3 /* below it: needs hsm_blob_upgrade */
/* The format of a well-formed blob (1, 2 or 3) into *format: 0, or
 * HSM_ERR_ARGS when blob is not a well-formed blob. */
int hsm_blob_format(const uint8_t *blob, size_t blob_len,
    unsigned *format) HSM_WUR;

#endif
