/*
 * vault/vault_int.h — private to vault/: the struct vault every vault file
 * shares, and the domain rules they all apply (vault/rules.c): names,
 * version ids, key_ops per key type, what a blob is bound to, and the
 * mapping of HSM_ERR_* to VLT_ERR_*.
 *
 * Callers outside vault/ see only vault.h; the struct stays opaque there.
 */
#ifndef P11VAULT_VAULT_INT_H
#define P11VAULT_VAULT_INT_H

#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "hsm/hsm.h"
#include "vault/auditlog.h"
#include "vault/config.h"
#include "vault/store.h"
#include "vault/vault.h"

#define OPS_ALL \
	(VLT_OP_ENCRYPT | VLT_OP_DECRYPT | VLT_OP_SIGN | VLT_OP_VERIFY | \
	    VLT_OP_WRAP | VLT_OP_UNWRAP | VLT_OP_IMPORT)
#define OPS_RSA_DEFAULT \
	(VLT_OP_ENCRYPT | VLT_OP_DECRYPT | VLT_OP_SIGN | VLT_OP_VERIFY | \
	    VLT_OP_WRAP | VLT_OP_UNWRAP)
#define OPS_EC (VLT_OP_SIGN | VLT_OP_VERIFY)

/* What a blob is bound to: "name/version", the name lower-cased; in a
 * child vault "ID:name/version" (its id), so that a blob cannot move
 * from one vault to another. */
#define BIND_MAX (VLT_ID_LEN + 1 + VLT_NAME_MAX + 1 + VLT_VERSION_LEN + 1)

/* The appliance of v (v itself for the root). */
#define ROOT(v) ((v)->root != NULL ? (v)->root : (v))

struct vault {
	/* NULL: this is the appliance (and its default vault); else the
	 * appliance a child vault belongs to (children.c). A child shares
	 * the root's conf, hsm and audit (not owned) and has its own store. */
	vault_t *root;
	char name[VLT_VAULT_NAME_MAX + 1]; /* a child's; root: "" */
	char id[VLT_ID_LEN + 1];           /* a child's; root: "" */
	unsigned refs;             /* a child's, under root->kids_lock */
	int deleted;               /* a child soft-deleted */
	pthread_mutex_t kids_lock; /* root: the children */
	struct vault **kids;
	size_t n_kids, cap_kids;
	char *data_dir;
	struct vlt_conf *conf;
	hsm_t *hsm;
	store_t *store;
	struct vlt_audit *audit;
	int audit_key_ready; /* audit-key.pem checked, audit_kid known */
	char audit_kid[VLT_AUDIT_KID_LEN + 1];
	pthread_mutex_t clock_lock;
	char *clock_file;
	char softhsm_conf[PATH_MAX]; /* resolved (datadir.c); "": none */
	size_t token_sessions;       /* the token process's session pool */
	/* root, PostgreSQL, serving: the node's listener (coherence.c) */
	struct cluster *cluster;
	void (*on_change)(void *);
	void *on_change_arg;
};

/* ---- children.c: the list of open children made the registry's again
 * (another node created, deleted, recovered or purged a vault) ---- */
int children_sync(vault_t *root) VLT_WUR;

/* ---- rules.c ------------------------------------------------------------ */

/* HSM_ERR_* to VLT_ERR_* (HSM_OK to VLT_OK). */
int map_hsm(int r) VLT_WUR;
/* NULL or "": the latest, *out NULL. Malformed: VLT_ERR_NOT_FOUND (no
 * such version can exist). */
int version_arg(const char *version, const char **out) VLT_WUR;
/* key_ops fit the key type: 0, else VLT_ERR_BAD_PARAM. */
int check_ops(enum vlt_kty kty, unsigned ops) VLT_WUR;
/* A random UUID (version 4) as text. */
int random_uuid(char dst[VLT_ID_LEN + 1]) VLT_WUR;
/* What the token binds a blob of name/version to (hsm.h). */
/* A blob's format (1..HSM_BLOB_FORMAT_CURRENT), or 0 for anything that is
 * not a well-formed blob. */
unsigned blob_format_of(const uint8_t *blob, size_t blob_len);
int blob_bind(const vault_t *v, char bind[BIND_MAX], const char *name,
    const char *version) VLT_WUR;
/* A new random version id, and the bind of name/that version. */
int new_version(const vault_t *v, const char *name,
    char version[VLT_VERSION_LEN + 1], char bind[BIND_MAX]) VLT_WUR;
/* The OpenSSL NID of a curve, 0 for none; and back (VLT_ERR_BAD_PARAM
 * for a curve the vault does not know). */
int curve_nid(enum vlt_curve crv);
int curve_from_nid(int nid, enum vlt_curve *crv) VLT_WUR;

/* ---- audit_ckpt.c ------------------------------------------------------- */
/* The log's checkpoint signer: the token's audit key, every
 * audit_checkpoint_lines (default 1000) lines or audit_checkpoint_seconds
 * (default 60) seconds. */
int vault_audit_signer(vault_t *v, struct vlt_audit_signer *s) VLT_WUR;

/* ---- audit_record.c ----------------------------------------------------- */

/* Chains the record of a torn tail cut at open (synced): {"event":
 * "audit_tail_repaired", time, file, offset, length, sha256, sideFile}. */
int vault_audit_repaired(vault_t *v,
    const struct vlt_audit_repair *rep) VLT_WUR;

/* ---- datadir.c ---------------------------------------------------------- */

/* The SoftHSMv2 config the token processes of the data directory dir (a
 * real path) get, from softhsm_conf= (value; NULL: none, out ""), into
 * out as an absolute path. Relative: to dir. Absolute into another data
 * directory (a copy's): dir's file of the same name, or VLT_ERR_IO when
 * dir has none. When it is dir's own, its directories.tokendir follows
 * the same rule and is written back when it named another place.
 * VLT_ERR_IO says why in err (may be NULL). */
int vlt_softhsm_resolve(const char *dir, const char *value, char *out,
    size_t cap, char *err, size_t err_len) VLT_WUR;

/* ---- dir.c -------------------------------------------------------------- */

/* The store address of root's vault (id NULL) or of its child id:
 * config store= set (a PostgreSQL database), that database's schema
 * "p11vault" or "v_<id>"; else DIR/vault.db or DIR/vaults/ID/vault.db.
 * *pg: 1 for PostgreSQL (no directory to make). */
int vault_store_addr(const vault_t *root, const char *id, char *out, size_t cap,
    int *pg) VLT_WUR;

/* ---- children.c --------------------------------------------------------- */

/* Opens the root's child vaults from its registry (vault_open, last). */
int children_open(vault_t *root, char *err, size_t err_len) VLT_WUR;
/* Closes them (vault_close). */
void children_close(vault_t *root);
/* Live children, each acquired (release each with vault_child_release);
 * *kids malloc'd. */
int children_live(vault_t *root, vault_t ***kids, size_t *n) VLT_WUR;
/* one(v) for the vault v and, when v is the root, each live child:
 * the sum of their counts, or the first negative error (the sweepers). */
int children_sweep(vault_t *v, int (*one)(vault_t *)) VLT_WUR;
/* Every child, deleted ones too, each acquired (domain-key rotation). */
int children_all(vault_t *root, vault_t ***kids, size_t *n) VLT_WUR;
/* Purges the deleted children whose scheduled purge date has come: the
 * count, or a negative error. */
int children_purge_due(vault_t *root) VLT_WUR;

/* ---- keys.c ------------------------------------------------------------- */

/* VLT_ERR_DELETED_RECOVERABLE when name is a soft-deleted key, else 0
 * (or a store error): the check before slow token work. */
int key_refuse_deleted(vault_t *v, const char *name) VLT_WUR;
/* Stores k (its blob) as a new version and reads it back into out (the
 * stored name: names compare case-insensitively). */
int key_store_new(vault_t *v, const struct vlt_key_info *k, const uint8_t *blob,
    size_t blob_len, struct vlt_key_info *out) VLT_WUR;
/*
 * The version a crypto operation runs on, after the checks in the order
 * the API reports them: enabled, nbf, exp, then op in key_ops. need_blob:
 * *blob (malloc'd) too.
 */
int key_for_op(vault_t *v, const char *name, const char *version, unsigned op,
    int need_blob, struct vlt_key_info *k, uint8_t **blob,
    size_t *blob_len) VLT_WUR;

/* ---- upgrade.c ---------------------------------------------------------- */

/* The one-time upgrades of a store's blobs (binding, then sealing), each
 * recorded by a file in dir; a store made by vault_init needs neither. */
int upgrade_blobs(vault_t *v, const char *dir) VLT_WUR;
/* Marks a new store as needing no upgrade. */
int upgrade_mark_done(const char *dir) VLT_WUR;

#endif
