/*
 * hsm/token.h — the token side: the PKCS#11 implementation that runs only
 * in the token process (tokend.c). Same operations as hsm/hsm.h, which the
 * network process reaches through client.c; this header is for hsm/ and
 * the hsm unit tests, nothing else includes it.
 *
 * Must never: be linked into a code path of the network process.
 */
#ifndef P11VAULT_HSM_TOKEN_H
#define P11VAULT_HSM_TOKEN_H

#include "hsm/hsm.h"

struct tok_config {
	const char *module_path; /* e.g. /usr/lib/softhsm/libsofthsm2.so */
	const char *token_label; /* slot is found by this label */
	/* copied (wiped at tok_close): the pool logs
	 * in again after a token fault */
	const char *user_pin;
	size_t pool_size;  /* sessions; 0 = 8 */
	size_t cache_size; /* cached key handles; 0 = 4096 */
};

typedef struct tok tok_t;

/*
 * Initialises a fresh token in the first slot without an initialised token:
 * C_InitToken(so_pin, label), C_InitPIN(user_pin), then as SO the domain
 * key (AES-256, CKA_TOKEN, CKA_TRUSTED, CKA_PRIVATE=FALSE, sensitive,
 * not extractable, wrap/unwrap only, label "p11vault-domain") and as user
 * the JWT signing key pair (EC P-256, token objects, label "p11vault-jwt",
 * private key sensitive and not extractable, sign only).
 * HSM_ERR_EXISTS if a token with that label already exists.
 */
int tok_token_init(const char *module_path, const char *token_label,
    const char *so_pin, const char *user_pin) HSM_WUR;
/* The same with node: the token of a node that is yet to join a
 * cluster: the PINs and the node's transport key pair only (node.c). */
int tok_token_init_kind(const char *module_path, const char *token_label,
    const char *so_pin, const char *user_pin, int node) HSM_WUR;

/*
 * Clustering (node.c), each a ceremony with its own load of the module:
 * tok_node_request: this node's transport public key as SPKI (no PIN).
 * tok_node_approve: on a token that holds the domain, as SO, trusts the
 * transport key spki (RSA-3072) and wraps the domain's keys to it into
 * *bundle (malloc'd). HSM_ERR_NOT_SHAREABLE: a key of the vault was made
 * before clustering and cannot leave its token.
 * tok_node_join: unwraps a bundle made for this token's transport key
 * into the token (HSM_ERR_DECRYPT: made for another node, or altered;
 * HSM_ERR_EXISTS: the token already holds a domain key).
 * tok_node_forget: as SO, deletes the trusted key of the node whose
 * transport SPKI has SHA-256 fp (*removed: how many).
 */
int tok_node_request(const char *module, const char *label, uint8_t **spki,
    size_t *spki_len) HSM_WUR;
int tok_node_approve(const char *module, const char *label, const char *so_pin,
    const char *user_pin, const uint8_t *spki, size_t spki_len,
    uint8_t **bundle, size_t *bundle_len) HSM_WUR;
int tok_node_join(const char *module, const char *label, const char *so_pin,
    const char *user_pin, const uint8_t *bundle, size_t bundle_len) HSM_WUR;
int tok_node_forget(const char *module, const char *label, const char *so_pin,
    const uint8_t fp[32], unsigned *removed) HSM_WUR;

/* The SO PIN, then the user PIN, from old to new (rekey, and the move
 * from PIN files to a sealed vault). Run again after an interruption,
 * a PIN already changed counts as done. A PIN neither old nor new:
 * HSM_ERR_ARGS. */
int tok_change_pins(const char *module_path, const char *token_label,
    const char *old_user, const char *new_user, const char *old_so,
    const char *new_so) HSM_WUR;

/* Loads the module, finds the token by label, opens the session pool and
 * logs in. */
int tok_open(const struct tok_config *cfg, tok_t **out) HSM_WUR;
void tok_close(tok_t *h);

/* 0 when the token answers and the pool is logged in, else
 * HSM_ERR_UNAVAILABLE. Cheap. */
int tok_health(tok_t *h) HSM_WUR;

/*
 * The operations below behave as their hsm_* twins in hsm/hsm.h, whose
 * comments are the contract (binding included).
 *
 * Generates a key pair inside the token (private key: session object,
 * CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_WRAP_WITH_TRUSTED), wraps the private
 * key with the domain key (CKM_AES_KEY_WRAP_PAD) and destroys the objects.
 * Out: *blob (opaque, self-describing: key type is inside) and *spki (the
 * public key as DER SubjectPublicKeyInfo). Both malloc'd; caller frees.
 * rsa_bits: 2048, 3072 or 4096 (RSA); ec_nid: a curve NID (EC).
 */
int tok_key_generate(tok_t *h, const char *bind, enum hsm_kty kty,
    unsigned rsa_bits, int ec_nid, uint8_t **blob, size_t *blob_len,
    uint8_t **spki, size_t *spki_len) HSM_WUR;

/*
 * Private-key operations on a blob. cache_id names the blob (the key
 * version id); the unwrapped session object's handle is cached under it.
 * Decrypt: RSA_OAEP in the token with CKM_RSA_PKCS_OAEP; OAEP_256 and
 * RSA1_5 as raw RSA (CKM_RSA_X_509) in the token plus constant-time
 * decoding outside. in_len must equal the modulus length (HSM_ERR_ARGS).
 * Every padding failure is HSM_ERR_DECRYPT, indistinguishable.
 * *out_len holds the buffer size on input, the result length on output.
 */
int tok_key_decrypt(tok_t *h, const char *cache_id, const uint8_t *blob,
    size_t blob_len, enum hsm_alg alg, const uint8_t *in, size_t in_len,
    uint8_t *out, size_t *out_len) HSM_WUR;

/* Signs a digest. dlen must match the algorithm's hash (HSM_ERR_ARGS).
 * *sig_len: buffer size in, signature length out. */
int tok_key_sign(tok_t *h, const char *cache_id, const uint8_t *blob,
    size_t blob_len, enum hsm_alg alg, const uint8_t *digest, size_t dlen,
    uint8_t *sig, size_t *sig_len) HSM_WUR;

/* Drops the cached handle for cache_id (purge: crypto-shred). */
void tok_key_forget(tok_t *h, const char *cache_id);

/* ES256 with the token's JWT key over data (SHA-256 computed here);
 * sig receives 64 bytes r||s. */
int tok_jwt_sign(tok_t *h, const uint8_t *data, size_t len,
    uint8_t sig[64]) HSM_WUR;
/* The JWT key's public half as DER SubjectPublicKeyInfo, malloc'd. */
int tok_jwt_public(tok_t *h, uint8_t **spki, size_t *spki_len) HSM_WUR;

/* ES256 with the token's audit key "p11vault-audit" (EC P-256, made on
 * first use) over data (SHA-256 computed here); sig: 64 bytes r||s. */
int tok_audit_sign(tok_t *h, const uint8_t *data, size_t len,
    uint8_t sig[64]) HSM_WUR;
/* The audit key's public half as DER SubjectPublicKeyInfo, malloc'd
 * (the key is made first when the token has none). */
int tok_audit_public(tok_t *h, uint8_t **spki, size_t *spki_len) HSM_WUR;

/* Cache statistics, for metrics. */
void tok_stats(tok_t *h, uint64_t *cache_hits, uint64_t *cache_misses,
    size_t *sessions_busy, size_t *sessions_total);

/* ---- import (import.c) and backup sealing (backup.c) ---- */

/*
 * Plaintext import: pkcs8 (DER PrivateKeyInfo, RSA 2048/3072/4096 or EC
 * P-256/384/521) is created in the token as a session object (sensitive,
 * extractable only under a trusted key), wrapped under the domain key like
 * a generated key, and destroyed. The caller wipes pkcs8. Out as for
 * tok_key_generate. A malformed or unsupported key: HSM_ERR_ARGS.
 */
int tok_key_import(tok_t *h, const char *bind, const uint8_t *pkcs8,
    size_t pkcs8_len, struct hsm_key_desc *desc, uint8_t **blob,
    size_t *blob_len, uint8_t **spki, size_t *spki_len) HSM_WUR;

/*
 * BYOK: transfer = RSA-OAEP(SHA-1) ciphertext under the key-exchange key
 * (kek_blob, an RSA blob) of an AES-256 key, followed by the target's
 * PKCS#8 wrapped with that key (RFC 5649). Both steps are C_UnwrapKey in
 * the token; the target key is then wrapped under the domain key. Every
 * failure to open the transfer (wrong KEK, altered, truncated):
 * HSM_ERR_ARGS.
 */
int tok_key_import_byok(tok_t *h, const char *bind, const char *kek_bind,
    const uint8_t *kek_blob, size_t kek_blob_len, const uint8_t *transfer,
    size_t transfer_len, struct hsm_key_desc *desc, uint8_t **blob,
    size_t *blob_len, uint8_t **spki, size_t *spki_len) HSM_WUR;

/*
 * Authenticated encryption (AES-256-GCM in the token) under the token's
 * backup key "p11vault-backup", created on first use. Only a token holding
 * that key opens the result: any other token, or an altered input, gives
 * HSM_ERR_DECRYPT. *out malloc'd.
 */
int tok_seal(tok_t *h, const uint8_t *in, size_t in_len, uint8_t **out,
    size_t *out_len) HSM_WUR;
int tok_unseal(tok_t *h, const uint8_t *in, size_t in_len, uint8_t **out,
    size_t *out_len) HSM_WUR;

/* As hsm_blob_rewrap (hsm/hsm.h). */
int tok_blob_rewrap(tok_t *h, const char *bind, const uint8_t *blob,
    size_t blob_len, uint8_t **out, size_t *out_len) HSM_WUR;
/* HSM_DOMAIN_NEW (drop 0) and HSM_DOMAIN_DROP (drop 1) of hsm_node. */
int tok_domain_rotate(const char *module, const char *label, const char *so_pin,
    int drop) HSM_WUR;

/* As hsm_blob_upgrade (hsm/hsm.h). */
int tok_blob_upgrade(tok_t *h, const char *bind, const uint8_t *blob,
    size_t blob_len, uint8_t **out, size_t *out_len) HSM_WUR;

#endif
