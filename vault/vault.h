/*
 * vault — the domain: keys, versions, attributes, tags, soft delete,
 * recovery, purge, retention, purge protection; the data directory and its
 * config; persistence of principals and access policies (the decisions
 * themselves are policy/'s).
 *
 * Owns: the data directory layout, the metadata store (vault/store.c in
 * front of its backend; vault/store_sqlite.c is the only file with SQL),
 * the hsm_t it opened.
 *
 * Must never: know HTTP or JSON structure (tags are kept as an opaque
 * string the caller has validated); log key material; acknowledge a write
 * before it is durable (every mutating call returns only after commit with
 * synchronous=FULL).
 *
 * Thread safety: every function taking a vault_t may be called from many
 * threads at once.
 */
#ifndef P11VAULT_VAULT_H
#define P11VAULT_VAULT_H

#include <stddef.h>
#include <stdint.h>

#define VLT_WUR __attribute__((warn_unused_result))

/* One enum of errors; api/errors.c maps each to an HTTP status and Azure
 * code, in one place. */
enum vlt_err {
	VLT_OK = 0,
	VLT_ERR_BAD_PARAM = -1, /* 400 BadParameter */
	VLT_ERR_NOT_FOUND = -2, /* 404 KeyNotFound */
	VLT_ERR_CONFLICT = -3,  /* 409 Conflict */
	/* 409 Conflict,
	 * innererror ObjectIsDeletedButRecoverable */
	VLT_ERR_DELETED_RECOVERABLE = -4,
	VLT_ERR_KEY_DISABLED = -5,      /* 403 Forbidden */
	VLT_ERR_KEY_NOT_YET_VALID = -6, /* 403 Forbidden */
	VLT_ERR_KEY_EXPIRED = -7,       /* 403 Forbidden */
	VLT_ERR_OP_NOT_PERMITTED = -8,  /* 403 Forbidden: op not in key_ops */
	VLT_ERR_PURGE_PROTECTED = -9,   /* 403 Forbidden */
	VLT_ERR_DECRYPT = -10,      /* 400 BadParameter, indistinguishable */
	VLT_ERR_UNAVAILABLE = -11,  /* 503 ServiceUnavailable */
	VLT_ERR_NO_MEMORY = -12,    /* 500 */
	VLT_ERR_INTERNAL = -13,     /* 500 */
	VLT_ERR_EXISTS = -14,       /* init: DIR already holds a vault */
	VLT_ERR_IO = -15,           /* file system trouble (init/open) */
	VLT_ERR_SEALED = -16,       /* 503: the vault is sealed */
	VLT_ERR_UNAUTHORIZED = -17, /* 401: no valid bearer token */
	VLT_ERR_FORBIDDEN = -18,    /* 403: the caller may not */
	/* 503: the disk (full, failing, read-only) refused a write of the
	 * store or of the audit log */
	VLT_ERR_STORAGE = -19,
	/* 400 BadParameter: an imported (BYOK) key is not of the kty or
	 * crv the request declared */
	VLT_ERR_KEY_TYPE = -20,
};

enum vlt_kty { VLT_KTY_RSA = 1, VLT_KTY_EC = 2 };
enum vlt_curve {
	VLT_CRV_NONE = 0,
	VLT_CRV_P256,
	VLT_CRV_P384,
	VLT_CRV_P521,
	VLT_CRV_P256K, /* secp256k1; stored as 4 */
};

/* key_ops, one bit each */
enum vlt_op {
	VLT_OP_ENCRYPT = 1u << 0,
	VLT_OP_DECRYPT = 1u << 1,
	VLT_OP_SIGN = 1u << 2,
	VLT_OP_VERIFY = 1u << 3,
	VLT_OP_WRAP = 1u << 4,
	VLT_OP_UNWRAP = 1u << 5,
	VLT_OP_IMPORT = 1u << 6,
};

enum vlt_alg {
	VLT_ALG_RSA_OAEP = 1,
	VLT_ALG_RSA_OAEP_256,
	VLT_ALG_RSA1_5,
	VLT_ALG_RS256,
	VLT_ALG_RS384,
	VLT_ALG_RS512,
	VLT_ALG_PS256,
	VLT_ALG_PS384,
	VLT_ALG_PS512,
	VLT_ALG_ES256,
	VLT_ALG_ES384,
	VLT_ALG_ES512,
	VLT_ALG_ES256K,
};

#define VLT_NAME_MAX 127
#define VLT_VERSION_LEN 32
#define VLT_ID_LEN 36 /* UUID text */
#define VLT_MAX_RESULTS 25
#define VLT_VAULT_NAME_MAX 24 /* Azure's: 3..24 */

struct vlt_attrs {
	int enabled;
	int64_t nbf; /* 0: not set */
	int64_t exp; /* 0: not set */
	int64_t created;
	int64_t updated;
};

/* One key version as the api needs it. Strings and buffers owned; free
 * with vlt_key_info_clear. */
struct vlt_key_info {
	char name[VLT_NAME_MAX + 1];
	char version[VLT_VERSION_LEN + 1];
	enum vlt_kty kty;
	int hsm;           /* created as RSA-HSM / EC-HSM */
	unsigned key_size; /* RSA bits; 0 for EC */
	enum vlt_curve crv;
	unsigned key_ops; /* enum vlt_op mask */
	struct vlt_attrs attrs;
	char *tags;    /* JSON object text as given, or NULL */
	uint8_t *spki; /* public key, DER SubjectPublicKeyInfo */
	size_t spki_len;
	int64_t deleted_date; /* 0 when live */
	int64_t scheduled_purge_date;
};
void vlt_key_info_clear(struct vlt_key_info *k);
void vlt_key_info_free_array(struct vlt_key_info *items, size_t n);

struct vlt_settings {
	int retention_days;   /* 7..90 */
	int purge_protection; /* once 1, never 0 again */
};

typedef struct vault vault_t;

/* ---- the vaults of an appliance (vault/children.c) ---------------------- */
/*
 * A data directory is an appliance: one token, one audit log, one set of
 * principals, and its default vault (the vault_t vault_open gives, at the
 * config's vault_url). Other vaults are its children, each with its own
 * keys, settings, access policies and rotation policies (its own store,
 * DIR/vaults/ID/vault.db) and Azure's soft delete: a deleted vault keeps
 * its name and its keys until purged; purge is refused under purge
 * protection until the scheduled purge date, when the sweeper
 * (vault_purge_due) purges it.
 *
 * Every vault_key_*, vault_access_*, vault_settings_* and
 * vault_rotation_* call takes a child acquired with vault_child_acquire
 * just as it takes the root; vault_principal_* on a child are the root's.
 */
struct vlt_vault {
	char name[VLT_VAULT_NAME_MAX + 1]; /* lower-case */
	char id[VLT_ID_LEN + 1];
	int64_t created, updated;
	int64_t deleted_date; /* 0 when live */
	int64_t scheduled_purge_date;
	struct vlt_settings settings; /* deleted: as they were */
	char *meta; /* the caller's JSON text (management properties); owned */
};
void vlt_vault_clear(struct vlt_vault *x);
void vlt_vault_free_array(struct vlt_vault *items, size_t n);

/* Azure's rule for a vault name: 3..24 of ASCII letters, digits and '-',
 * starting with a letter, ending with a letter or digit, no "--". */
int vault_child_name_check(const char *name) VLT_WUR;
/*
 * A new child vault. A name in use, live or deleted, or the default
 * vault's name (vault_config "vault_name"): VLT_ERR_CONFLICT (deleted:
 * VLT_ERR_DELETED_RECOVERABLE). set: NULL for 90 days, no purge
 * protection. out may be NULL.
 */
int vault_child_create(vault_t *root, const char *name,
    const struct vlt_settings *set, const char *meta,
    struct vlt_vault *out) VLT_WUR;
/* deleted 0: a live vault; 1: a soft-deleted one (else NOT_FOUND). */
int vault_child_get(vault_t *root, const char *name, int deleted,
    struct vlt_vault *out) VLT_WUR;
int vault_child_list(vault_t *root, int deleted, struct vlt_vault **items,
    size_t *n) VLT_WUR;
/* Replaces a live vault's meta text. */
int vault_child_set_meta(vault_t *root, const char *name,
    const char *meta) VLT_WUR;
/* Soft delete: its keys unreachable, its name reserved. */
int vault_child_delete(vault_t *root, const char *name) VLT_WUR;
int vault_child_recover(vault_t *root, const char *name) VLT_WUR;
/* A soft-deleted vault and everything in it, at once: refused with
 * VLT_ERR_PURGE_PROTECTED under purge protection. */
int vault_child_purge(vault_t *root, const char *name) VLT_WUR;
/* A counted reference to a live child vault (VLT_ERR_NOT_FOUND when
 * there is none by that name, or it is deleted). */
int vault_child_acquire(vault_t *root, const char *name, vault_t **out) VLT_WUR;
void vault_child_release(vault_t *child);
/* A child's name; NULL for the root. */
const char *vault_child_name(const vault_t *v);

/* ---- the management API's records (vault/records.c) -------------------- */
/*
 * What the management (ARM-shaped) API keeps of its own in the root's
 * store: records keyed by kind ("group": a resource group, scope "";
 * "identity": a user-assigned identity, scope its resource group), scope
 * and name, both compared case-insensitively and kept as given; ref is
 * an object id (an identity's principal) or ""; meta the caller's JSON
 * text, opaque here. Every call takes the root (a child: BAD_PARAM).
 */
#define VLT_RECORD_NAME_MAX 128
struct vlt_record {
	char kind[16];
	char scope[VLT_RECORD_NAME_MAX + 1];
	char name[VLT_RECORD_NAME_MAX + 1];
	char ref[VLT_ID_LEN + 1];
	int64_t created, updated;
	char *meta; /* owned */
};
void vlt_record_clear(struct vlt_record *x);
void vlt_record_free_array(struct vlt_record *items, size_t n);
/* create_only 1: VLT_ERR_CONFLICT when the key is in use; 0: inserts, or
 * replaces ref and meta (created kept). created/updated: now. */
int vault_record_put(vault_t *root, const struct vlt_record *x,
    int create_only) VLT_WUR;
int vault_record_get(vault_t *root, const char *kind, const char *scope,
    const char *name, struct vlt_record *out) VLT_WUR;
/* scope NULL: every scope. */
int vault_record_list(vault_t *root, const char *kind, const char *scope,
    struct vlt_record **items, size_t *n) VLT_WUR;
int vault_record_delete(vault_t *root, const char *kind, const char *scope,
    const char *name) VLT_WUR;

/* ---- data directory ---------------------------------------------------- */

struct vlt_init_params {
	const char *data_dir;
	const char *vault_url; /* e.g. https://127.0.0.1:8443 */
	/* NULL, or the domain of the appliance's other vaults (vault NAME
	 * at https://NAME.<vault_domain>); the token audience is then
	 * https://<vault_domain> */
	const char *vault_domain;
	const char *tenant_id;   /* UUID text */
	const char *module_path; /* NULL: SoftHSMv2 inside data_dir */
	const char *token_label; /* NULL: "p11vault" */
	/* ':'-separated directories a PKCS#11
	 * module may be loaded from; NULL: the
	 * default (HSM_MODULE_ALLOW) */
	const char *module_allow;
	unsigned key_shares;    /* operator key shares (0..16) */
	unsigned key_threshold; /* how many of them unseal */
	/* NULL: "systemd-creds:host" (the default
	 * of a library caller); "none";
	 * "systemd-creds[:KEY]"; "clevis:PIN CFG" */
	const char *auto_unseal;
	/* the new shares, a line each, malloc'd
	 * (caller wipes); NULL: dropped */
	char **shares_out;
	/* NULL: the store is DIR/vault.db (SQLite); else a PostgreSQL
	 * connection string (config store=; docs/cluster.md) */
	const char *store;
	/* a node yet to join a cluster: its token holds a transport key
	 * pair and no domain (vault_node_join brings it) */
	int node;
};
/*
 * A node of a cluster (a PostgreSQL store; docs/cluster.md): the
 * listener that keeps this node's caches in step with the other nodes'
 * writes (fn(arg) is called on its thread after every generation move,
 * the vault's own caches already dropped: the caller reloads its own),
 * before serving. 0 at once for SQLite. VLT_ERR_FORBIDDEN: this node was
 * removed. err: why (never the connection string).
 */
int vault_cluster_start(vault_t *v, void (*fn)(void *), void *arg, char *err,
    size_t err_len) VLT_WUR;
void vault_cluster_stop(vault_t *v);
/* 1 when this node may answer from its caches (not a cluster, or its
 * lease is fresh): an atomic load and a clock read. */
int vault_cluster_serving(vault_t *v);
/* The sweeper's thread only: 1 when this node runs the background work
 * (not a cluster, or it holds the cluster's leader lock). */
int vault_cluster_leader(vault_t *v);
/* Whether db (a PostgreSQL connection string) can take a new vault's
 * store: reachable, and no p11vault store in it yet. A failure says
 * why in err (never the password). */
int vault_store_check(const char *db, char *err, size_t err_len) VLT_WUR;
/* Whether db holds a p11vault store a new node can join (node init
 * --store): reachable, with the root schema of this version. */
int vault_store_check_joinable(const char *db, char *err,
    size_t err_len) VLT_WUR;
/* 1 when the vault's store is a PostgreSQL database (the network
 * process then connects to it: hsm_seccomp_network_db). */
int vault_store_networked(vault_t *v);
/*
 * Creates a vault in data_dir (made 0700 if absent): the PKCS#11 token
 * (for SoftHSMv2: DIR/softhsm2.conf and DIR/tokens/) with SO and user
 * PINs derived from a new unseal secret that rests nowhere (its shares go
 * to the caller; its unattended credential and DIR/hsm/seal.conf, which
 * holds no secret, to DIR/hsm), the domain, JWT, bind and seal
 * keys, the SQLite store DIR/vault.db, and DIR/p11vault.conf (written
 * last; its presence is what "holds a vault" means). VLT_ERR_EXISTS,
 * changing nothing, if DIR/p11vault.conf exists.
 */
int vault_init(const struct vlt_init_params *p) VLT_WUR;

/*
 * The unseal secret's state, and operator key shares one at a time
 * (share NULL: reset). A vault that turns unsealed upgrades its blobs of
 * older formats before answering.
 */
enum {
	VLT_SHARE_TAKEN = 0,
	VLT_SHARE_UNKNOWN = 1,
	VLT_SHARE_REPEATED = 2,
	VLT_SHARE_MALFORMED = 3
};
struct vlt_seal_status {
	int sealed;
	unsigned threshold, shares, progress;
	int plaintext_pins;
	int result; /* VLT_SHARE_*, of the last share given */
};
int vault_seal_status(vault_t *v, struct vlt_seal_status *st) VLT_WUR;
int vault_unseal(vault_t *v, const char *share,
    struct vlt_seal_status *st) VLT_WUR;

/*
 * Offline (the server stopped): a new unseal secret, new shares and new
 * PINs from the current shares (a line each; none needed when the vault
 * has only an unattended method, or still has PIN files). auto_unseal
 * NULL keeps the current method. *shares_out as for vault_init.
 */
int vault_rekey(const char *data_dir, unsigned key_shares,
    unsigned key_threshold, const char *auto_unseal, const char *old_shares,
    const char *module_allow, char **shares_out) VLT_WUR;

/*
 * Clustering (vault/node.c; docs/cluster.md). Each is an offline
 * ceremony on the token of data_dir, in a token process of its own;
 * shares: the vault's key shares, a line each ("" with an unattended
 * method only), from which the token process derives the PINs.
 *
 * vault_node_request: the transport public key (SPKI, malloc'd) of a
 * node made with vlt_init_params.node; its fingerprint is the hex
 * SHA-256 (vault_fingerprint).
 * vault_node_approve: as SO, the node's key is trusted and the domain's
 * keys are wrapped to it into *bundle; the node is listed as name.
 * VLT_ERR_FORBIDDEN: that node was removed; VLT_ERR_CONFLICT: name is
 * another node's, or the vault was made before clustering (its keys
 * cannot leave the token); VLT_ERR_BAD_PARAM: too few valid shares.
 * vault_node_join: the bundle into the token. VLT_ERR_DECRYPT: made for
 * another node, or altered; VLT_ERR_EXISTS: the token has a domain.
 * vault_node_list: the registry (malloc'd array; caller frees).
 * vault_node_remove: the node (by name or fingerprint) can never get a
 * bundle again: its trusted key is deleted from the token, and it is
 * listed as removed. VLT_ERR_NOT_FOUND: no such approved node.
 */
#define VLT_FINGERPRINT_LEN 64
#define VLT_NODE_NAME_MAX 64
struct vlt_node {
	char fingerprint[VLT_FINGERPRINT_LEN + 1];
	char name[VLT_NODE_NAME_MAX + 1];
	int removed;
};
void vault_fingerprint(const uint8_t *spki, size_t len,
    char hex[VLT_FINGERPRINT_LEN + 1]);
int vault_node_request(const char *data_dir, const char *module_allow,
    uint8_t **spki, size_t *spki_len) VLT_WUR;
int vault_node_approve(const char *data_dir, const char *module_allow,
    const char *shares, const char *name, const uint8_t *spki, size_t spki_len,
    uint8_t **bundle, size_t *bundle_len) VLT_WUR;
int vault_node_join(const char *data_dir, const char *module_allow,
    const char *shares, const uint8_t *bundle, size_t bundle_len) VLT_WUR;
int vault_node_list(const char *data_dir, struct vlt_node **nodes,
    size_t *n) VLT_WUR;
int vault_node_remove(const char *data_dir, const char *module_allow,
    const char *shares, const char *who) VLT_WUR;

/*
 * Rotation of the domain key (server stopped): a new domain key beside
 * the old (as SO, from shares), every blob of the store re-wrapped under
 * it inside the token a page at a time (each page committed), then the
 * old key destroyed. DIR/domain-rotation marks a rotation under way:
 * run again after an interruption to resume; vault_rotation_pending is
 * nonzero then (serve refuses). VLT_ERR_CONFLICT: the vault was made
 * before clustering (its domain key can never hand its blobs on).
 * *moved: how many blobs moved in this run.
 */
int vault_rekey_domain(const char *data_dir, const char *module_allow,
    const char *shares, size_t *moved) VLT_WUR;
int vault_rotation_pending(const char *data_dir);

/* 0 if data_dir holds a vault, else VLT_ERR_NOT_FOUND. */
int vault_find(const char *data_dir) VLT_WUR;

/* Opens an existing vault: config, store, hsm (pool of pool_size
 * sessions, 0 = default). */
struct vlt_open_opts {
	size_t pool_size; /* token sessions; 0: 2 per CPU, >= 4 */
	/* ':'-separated directories a PKCS#11
	 * module may be loaded from; NULL: the
	 * default (HSM_MODULE_ALLOW) */
	const char *module_allow;
	/* the token process runs as this user;
	 * NULL: as the caller */
	const char *token_user;
	/* when vault_open fails: why, for people (a bad line of
	 * p11vault.conf, a token directory of another data directory), or
	 * "" when there is nothing more to say; NULL: not wanted */
	char *err;
	size_t err_len;
};
int vault_open(const char *data_dir, const struct vlt_open_opts *o,
    vault_t **out) VLT_WUR;
void vault_close(vault_t *v);

/* Config values from DIR/p11vault.conf (key=value lines): "vault_url",
 * "tenant_id", "resource", "listen", "module", "token_label",
 * "token_lifetime". NULL if unset. The pointer lives as long as v. */
const char *vault_config(vault_t *v, const char *key);
const char *vault_data_dir(vault_t *v);
/* How many token operations the token process runs at once (its session
 * pool), for admission control; 0 for no vault. */
size_t vault_token_sessions(vault_t *v);

/* Test-only clock: when set (serve --insecure-test-clock FILE), vault_now
 * adds the integer seconds held in FILE (re-read on each call) to the wall
 * clock. Never set in production; serve logs a warning when it is. */
void vault_set_test_clock(vault_t *v, const char *offset_file);
int64_t vault_now(vault_t *v);

/* ---- vault settings ---------------------------------------------------- */

int vault_settings_get(vault_t *v, struct vlt_settings *out) VLT_WUR;
/* The one check of a soft-delete retention: 0 for 7..90 days, else
 * VLT_ERR_BAD_PARAM. */
int vault_retention_check(long long days) VLT_WUR;
/* The one check of a key name: 1..VLT_NAME_MAX of ASCII 0-9, a-z, A-Z and
 * '-' (no locale): 0, else VLT_ERR_BAD_PARAM. */
int vault_name_check(const char *name) VLT_WUR;
/* retention_days < 0: unchanged. purge_protection: 1 turns it on; 0 when
 * it is on is VLT_ERR_BAD_PARAM; -1 unchanged. retention outside 7..90:
 * VLT_ERR_BAD_PARAM. */
int vault_settings_update(vault_t *v, int retention_days,
    int purge_protection) VLT_WUR;
/* "Recoverable+Purgeable", "Recoverable",
 * "CustomizedRecoverable+Purgeable", "CustomizedRecoverable". */
const char *vault_recovery_level(const struct vlt_settings *s);

/* ---- keys -------------------------------------------------------------- */

struct vlt_create_req {
	enum vlt_kty kty;
	int hsm;
	unsigned key_size;  /* RSA: 2048/3072/4096; 0 = 2048 */
	enum vlt_curve crv; /* EC: required (api defaults P-256) */
	unsigned key_ops;   /* 0 = default for the kty */
	int enabled;        /* 1 unless the caller said false */
	int64_t nbf, exp;   /* 0 = unset */
	/* > 0: exp is this many seconds after the version's creation time
	 * (a rotation policy's expiryTime), instead of exp */
	int64_t exp_after;
	const char *tags; /* validated JSON object text or NULL */
};
/* New name: first version; existing live name: a new version; deleted
 * name: VLT_ERR_DELETED_RECOVERABLE. Validates sizes/curves/ops
 * (VLT_ERR_BAD_PARAM: EC with encrypt/decrypt/wrap/unwrap, etc). */
int vault_key_create(vault_t *v, const char *name,
    const struct vlt_create_req *req, struct vlt_key_info *out) VLT_WUR;

/* version NULL or "": the latest version. */
int vault_key_get(vault_t *v, const char *name, const char *version,
    struct vlt_key_info *out) VLT_WUR;

struct vlt_update_req {
	int has_key_ops;
	unsigned key_ops;
	int has_enabled;
	int enabled;
	int has_nbf;
	int64_t nbf; /* nbf 0 with has_nbf: clear */
	int has_exp;
	int64_t exp;
	const char *tags; /* NULL: unchanged */
};
int vault_key_update(vault_t *v, const char *name, const char *version,
    const struct vlt_update_req *req, struct vlt_key_info *out) VLT_WUR;

/*
 * Listing with keyset paging. cont: NULL for the first page, else the
 * opaque *next_cont of the previous page. max: 1..25. *next_cont is
 * malloc'd, or NULL on the last page. *items malloc'd array of *n.
 * vault_key_list: one item per live key name (its latest version), by name.
 * vault_key_versions: all versions of a live key, oldest first; a name
 * with no live key (never used, or soft-deleted) is an empty list, as
 * Azure Key Vault answers it (200, no 404).
 * vault_deleted_list: one item per deleted key (latest version, with
 * deleted_date/scheduled_purge_date).
 */
int vault_key_list(vault_t *v, const char *cont, size_t max,
    struct vlt_key_info **items, size_t *n, char **next_cont) VLT_WUR;
int vault_key_versions(vault_t *v, const char *name, const char *cont,
    size_t max, struct vlt_key_info **items, size_t *n,
    char **next_cont) VLT_WUR;
int vault_deleted_list(vault_t *v, const char *cont, size_t max,
    struct vlt_key_info **items, size_t *n, char **next_cont) VLT_WUR;

/* Soft delete of all versions; out: the latest version with deletion
 * dates. */
int vault_key_delete(vault_t *v, const char *name,
    struct vlt_key_info *out) VLT_WUR;
int vault_deleted_get(vault_t *v, const char *name,
    struct vlt_key_info *out) VLT_WUR;
int vault_key_recover(vault_t *v, const char *name,
    struct vlt_key_info *out) VLT_WUR;
/* Destroys the blobs of all versions and the cached handles.
 * VLT_ERR_PURGE_PROTECTED when purge protection is on. */
int vault_key_purge(vault_t *v, const char *name) VLT_WUR;
/* Purges every deleted key whose scheduled purge date is <= now (also
 * under purge protection: that is the point of the date). Returns the
 * count purged, or a negative error. */
int vault_purge_due(vault_t *v) VLT_WUR;

/*
 * Cryptography on a key version (version NULL/"": latest). op is the one
 * VLT_OP_* bit the caller is exercising (VLT_OP_WRAP for wrapkey,
 * VLT_OP_ENCRYPT for encrypt, ...); checked against key_ops, enabled, nbf,
 * exp. *out_len: buffer size in, result length out. kid_version receives
 * the version that did the work.
 */
int vault_key_encrypt(vault_t *v, const char *name, const char *version,
    unsigned op, enum vlt_alg alg, const uint8_t *in, size_t in_len,
    uint8_t *out, size_t *out_len,
    char kid_version[VLT_VERSION_LEN + 1]) VLT_WUR;
int vault_key_decrypt(vault_t *v, const char *name, const char *version,
    unsigned op, enum vlt_alg alg, const uint8_t *in, size_t in_len,
    uint8_t *out, size_t *out_len,
    char kid_version[VLT_VERSION_LEN + 1]) VLT_WUR;
int vault_key_sign(vault_t *v, const char *name, const char *version,
    enum vlt_alg alg, const uint8_t *digest, size_t dlen, uint8_t *sig,
    size_t *sig_len, char kid_version[VLT_VERSION_LEN + 1]) VLT_WUR;
int vault_key_verify(vault_t *v, const char *name, const char *version,
    enum vlt_alg alg, const uint8_t *digest, size_t dlen, const uint8_t *sig,
    size_t sig_len, int *valid, char kid_version[VLT_VERSION_LEN + 1]) VLT_WUR;

/* ---- principals and access policies (persistence only) ----------------- */

struct vlt_principal {
	char object_id[VLT_ID_LEN + 1];
	char client_id[VLT_ID_LEN + 1];
	char display_name[257];
	char *secret_hash; /* owned */
	int is_admin;
	int64_t created;
};
struct vlt_access_policy {
	char object_id[VLT_ID_LEN + 1];
	char tenant_id[VLT_ID_LEN + 1];
	unsigned perms; /* policy_perm mask, opaque here */
};

int vault_principal_put(vault_t *v, const struct vlt_principal *p) VLT_WUR;
/* Also removes the principal's access policy, in one transaction. */
int vault_principal_delete(vault_t *v, const char *object_id) VLT_WUR;
int vault_principal_list(vault_t *v, struct vlt_principal **items,
    size_t *n) VLT_WUR;
void vlt_principal_free_array(struct vlt_principal *items, size_t n);

int vault_access_put(vault_t *v, const struct vlt_access_policy *a) VLT_WUR;
int vault_access_delete(vault_t *v, const char *object_id) VLT_WUR;
/* A batch of changes, all or nothing (one transaction): an item with perms
 * 0 removes that object's policy (absent is fine), any other is put. */
int vault_access_apply(vault_t *v, const struct vlt_access_policy *items,
    size_t n) VLT_WUR;
int vault_access_list(vault_t *v, struct vlt_access_policy **items,
    size_t *n) VLT_WUR;

/* ---- token signing (the JWT key in the token) --------------------------- */

int vault_jwt_sign(vault_t *v, const uint8_t *data, size_t len,
    uint8_t sig[64]) VLT_WUR;
int vault_jwt_public(vault_t *v, uint8_t **spki, size_t *len) VLT_WUR;

/* Handle-cache and session-pool figures of the token, for metrics. */
int vault_hsm_stats(vault_t *v, uint64_t *cache_hits, uint64_t *cache_misses,
    size_t *sessions_busy, size_t *sessions_total) VLT_WUR;
/* Whether a token process is serving (*up) and how many were started
 * after the first (it is restarted when it dies), for metrics. */
int vault_token_process(vault_t *v, int *up, uint64_t *restarts) VLT_WUR;
/* Lookups of the in-memory version cache in front of the store. */
int vault_version_cache_stats(vault_t *v, uint64_t *hits,
    uint64_t *misses) VLT_WUR;

/* 0 when the token and the store answer and the disk takes writes;
 * VLT_ERR_STORAGE while the store or the audit log is failing (each is
 * tried again here, so that health returns by itself with the disk). */
int vault_health(vault_t *v) VLT_WUR;

/*
 * The audit gate in front of every key operation: 0 when the audit log
 * takes lines (after a failed write its pending lines are written first),
 * else VLT_ERR_STORAGE: no request is served that could not be recorded.
 */
int vault_storage_ready(vault_t *v) VLT_WUR;

/* The storage-fault state, for /healthz and /metrics. */
struct vlt_storage_status {
	int store_failing;
	int audit_failing;
	uint64_t errors;  /* storage errors seen, store and audit */
	char reason[160]; /* the failing one's (the audit log's first) */
};
int vault_storage_status(vault_t *v, struct vlt_storage_status *out) VLT_WUR;

/* The audit log's copy to syslog (audit_syslog=true): the lines sent and
 * the lines dropped (the socket did not take them; audit.log has them).
 * VLT_ERR_NOT_FOUND when the copy is off. */
int vault_audit_syslog_stats(vault_t *v, uint64_t *sent,
    uint64_t *dropped) VLT_WUR;

/* ---- audit log (vault/auditlog.c, vault/audit_record.c) ----------------- */
/*
 * DIR/audit/audit.log: one JSON line per request. Each line begins with
 * "prev", the SHA-256 (hex) of the previous line, so that the log is a
 * tamper-evident chain, carried across size-based rotation (audit.log.1,
 * audit.log.2, ... oldest first). object_json is a JSON object's text
 * (without "prev"); sync: fsync before returning (writes).
 */
int vault_audit_append(vault_t *v, const char *object_json, int sync) VLT_WUR;

/*
 * One audit record, the same fields for every source (a request, the
 * rotation sweeper): time, requestId, callerOid, callerAppId,
 * clientAddress, method, path, operation, trigger, keyId, httpStatus,
 * result (from httpStatus: Success, Unauthorized, Forbidden, Failure),
 * durationMs. Text is cut to printable ASCII (anything else becomes '?')
 * and at most VLT_AUDIT_TEXT_MAX bytes: callers pass what was recorded,
 * never a body, a header or a secret. NULL text is ""; operation NULL is
 * "Unknown". Appended with vault_audit_append.
 */
#define VLT_AUDIT_TEXT_MAX 256
struct vlt_audit_event {
	int64_t time_ms; /* milliseconds since the epoch, UTC */
	const char *request_id;
	const char *caller_oid;
	const char *caller_app_id;
	const char *client_address;
	const char *method;
	const char *path;
	const char *operation;
	const char *trigger; /* what started it, "" for a request */
	const char *key_id;
	int http_status;
	double duration_ms;
};
int vault_audit_event(vault_t *v, const struct vlt_audit_event *ev,
    int sync) VLT_WUR;
/*
 * A torn last line cut from audit.log at open (a crash mid-write): where
 * it began (offset) and how long it was, the SHA-256 (hex) of the cut
 * bytes and the file in DIR/audit that keeps them (a record of an older
 * release may say "": it cut what a full disk would not let it keep;
 * this one cuts nothing it has not kept). at: where its record sits
 * ("audit.log:57"),
 * filled by vault_audit_verify.
 */
struct vlt_audit_repair {
	uint64_t offset;
	uint64_t length; /* 0: nothing was cut */
	char sha256[65];
	char side_file[64];
	char at[64];
};
#define VLT_AUDIT_REPAIRS_MAX 16
/*
 * What vault_audit_verify found. intact: every line of every file is
 * chained to the one before; else broken names the first line that is
 * not ("audit.log.2:17", "audit.log.1 (missing)"). The repair records
 * found (nrepairs counts all; the first VLT_AUDIT_REPAIRS_MAX are in
 * repairs); tail_len: an incomplete last line of audit.log not repaired
 * yet (at tail_off; the next open moves it aside), which is not counted
 * as a line.
 */
#define VLT_AUDIT_KID_LEN 16
struct vlt_audit_verdict {
	int intact;
	char broken[128];
	const char *broken_why;   /* what is wrong there (static text) */
	uint64_t checkpoints;     /* signed checkpoints checked */
	char last_checkpoint[64]; /* "audit.log:57"; "" for none */
	uint64_t unsigned_tail;   /* lines after the last checkpoint */
	char starts_at[64];       /* older files archived: first file held */
	unsigned files;
	uint64_t lines;
	size_t nrepairs;
	struct vlt_audit_repair repairs[VLT_AUDIT_REPAIRS_MAX];
	uint64_t tail_off;
	uint64_t tail_len;
};
/*
 * Checks the chain of DIR's audit files into out: 0 when the check ran
 * (out->intact says how it went). Nothing to check is no verdict:
 * VLT_ERR_NOT_FOUND with the reason in why (DIR or DIR/audit missing,
 * audit.log missing, no line in any file); VLT_ERR_IO: a file could not
 * be read.
 */
int vault_audit_verify(const char *data_dir, struct vlt_audit_verdict *out,
    char *why, size_t why_len) VLT_WUR;
/*
 * The same, and every signed checkpoint checked with the public key in
 * key_pem (NULL: DIR/audit/audit-key.pem): its signature, its head (the
 * chain at that line) and its line count. A checkpoint that fails, or a
 * key with no checkpoint in the log, is a break (broken_why says which).
 * When the oldest rotated files are missing (archived), the check starts
 * at the oldest file held (starts_at) and its first checkpoint anchors
 * the count; a file missing between held files is still a break.
 */
int vault_audit_verify_key(const char *data_dir, const char *key_pem,
    struct vlt_audit_verdict *out, char *why, size_t why_len) VLT_WUR;

/* ---- import (vault/import.c), backup and restore (vault/backup.c),
 * rotation (vault/rotation.c) ------------------------------------------- */

struct vlt_import_req {
	int hsm;            /* answer as RSA-HSM / EC-HSM */
	enum vlt_kty kty;   /* BYOK: the declared kty (0: any) */
	enum vlt_curve crv; /* BYOK: the declared crv (NONE: any) */
	unsigned key_ops;   /* 0 = default for the kty */
	int enabled;
	int64_t nbf, exp; /* 0 = unset */
	const char *tags; /* validated JSON object text or NULL */
};
/*
 * Plaintext import of a private key (PKCS#8 DER; the caller wipes it): the
 * key is created in the token and stored as a new version of name (as
 * vault_key_create does: new name, new version, deleted name refused).
 * Unsupported or malformed key, ops not fitting the kty: VLT_ERR_BAD_PARAM.
 */
int vault_key_import(vault_t *v, const char *name,
    const struct vlt_import_req *req, const uint8_t *pkcs8, size_t len,
    struct vlt_key_info *out) VLT_WUR;
/*
 * BYOK import of a transfer ciphertext (RSA-OAEP-SHA-1 wrapped AES key +
 * AES-KWP of the PKCS#8) under the key-exchange key kek_name/kek_version
 * (version NULL: latest), which must be an enabled, current RSA key with
 * the import operation. Any failure to use the KEK or open the transfer:
 * VLT_ERR_BAD_PARAM, nothing stored. A key in the blob that is not of
 * req->kty (or req->crv): VLT_ERR_KEY_TYPE, nothing stored.
 */
int vault_key_import_byok(vault_t *v, const char *name,
    const struct vlt_import_req *req, const char *kek_name,
    const char *kek_version, const uint8_t *transfer, size_t len,
    struct vlt_key_info *out) VLT_WUR;

/* Every version of a live key with its attributes, sealed in the token
 * (AES-256-GCM under the token's backup key). *out malloc'd. */
int vault_key_backup(vault_t *v, const char *name, uint8_t **out,
    size_t *out_len) VLT_WUR;
/* Brings a backup back with the same versions. A blob this vault's token
 * cannot open, or a malformed one: VLT_ERR_BAD_PARAM. The name exists
 * (live or deleted) or a version id is in use: VLT_ERR_CONFLICT. out: the
 * latest version. */
int vault_key_restore(vault_t *v, const uint8_t *in, size_t len,
    struct vlt_key_info *out) VLT_WUR;
/* A new version like the latest (kty, size/curve, key_ops, tags); with a
 * rotation policy that has an expiry, exp = created + expiry. */
int vault_key_rotate(vault_t *v, const char *name,
    struct vlt_key_info *out) VLT_WUR;

enum vlt_rot_trigger { VLT_ROT_AFTER_CREATE = 1, VLT_ROT_BEFORE_EXPIRY = 2 };
enum vlt_rot_action { VLT_ROT_ROTATE = 1, VLT_ROT_NOTIFY = 2 };
#define VLT_ROT_ACTIONS_MAX 4
#define VLT_DURATION_MAX 32
struct vlt_rotation_action {
	enum vlt_rot_action action;
	enum vlt_rot_trigger trigger;
	int64_t secs;                    /* the duration in seconds */
	char duration[VLT_DURATION_MAX]; /* as given, e.g. "P90D" */
};
struct vlt_rotation_policy {
	size_t n;
	struct vlt_rotation_action a[VLT_ROT_ACTIONS_MAX];
	int64_t expiry_secs;           /* 0: none */
	char expiry[VLT_DURATION_MAX]; /* "" : none */
	int64_t created, updated;      /* 0 when never set */
};
/* The key's policy; a live key without one: VLT_OK with n == 0 and
 * created == 0. A missing key: VLT_ERR_NOT_FOUND. */
int vault_rotation_policy_get(vault_t *v, const char *name,
    struct vlt_rotation_policy *out) VLT_WUR;
/* Replaces the policy (created kept, updated = now); the api has checked
 * Azure's rules. out: the stored policy. */
int vault_rotation_policy_set(vault_t *v, const char *name,
    const struct vlt_rotation_policy *p,
    struct vlt_rotation_policy *out) VLT_WUR;
/* Rotates every live key whose policy's Rotate action is due (after
 * create: from the latest version's created time; before expiry: from
 * its exp) and writes one audit line for each. Returns the count, or a
 * negative error. Called by the server's sweeper. */
int vault_rotation_due(vault_t *v) VLT_WUR;

#endif
