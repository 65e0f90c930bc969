/*
 * vault/node.c — clustering from the vault's side: the token ceremonies
 * of hsm_node on a data directory's token, and the node registry.
 *
 * The registry (which nodes were approved, which removed) lives for now
 * in DIR/nodes, a line per node: "FINGERPRINT STATE NAME" (STATE is
 * approved or removed; FINGERPRINT the hex SHA-256 of the node's
 * transport public key). Only reg_read and reg_write touch it, so that
 * the shared store can hold it later behind the same two functions.
 *
 * Must never: see a PIN (the token process derives them from the
 * shares); approve a node that was removed.
 */
#include "vault/vault_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "hsm/base.h"
#include "hsm/buf.h"
#include "vault/cluster.h"

#define NODES_FILE "nodes"
#define NODES_MAX 256
#define NODES_FILE_MAX (NODES_MAX * 160)

/* The hsm_init of the token of data_dir (paths in the caller's arrays). */
static int
node_token(const char *data_dir, const char *allow, struct vlt_conf **conf,
    char *dir, char *hsm_dir, char *shconf, struct hsm_init *hi)
{
	char path[PATH_MAX];
	int r;

	*conf = NULL;
	if (data_dir == NULL || realpath(data_dir, dir) == NULL)
		return VLT_ERR_NOT_FOUND;
	if ((r = fs_join(path, PATH_MAX, dir, "p11vault.conf")) != 0 ||
	    (r = conf_read(path, conf)) != 0 ||
	    (r = fs_join(hsm_dir, PATH_MAX, dir, "hsm")) != 0 ||
	    (r = vlt_softhsm_resolve(dir, conf_get(*conf, "softhsm_conf"),
	         shconf, PATH_MAX, NULL, 0)) != 0)
		return r;
	memset(hi, 0, sizeof(*hi));
	hi->module_path = conf_get(*conf, "module");
	hi->token_label = conf_get(*conf, "token_label");
	hi->module_allow = allow;
	hi->hsm_dir = hsm_dir;
	hi->softhsm_conf = shconf[0] != '\0' ? shconf : NULL;
	return hi->module_path != NULL && hi->token_label != NULL ? 0 :
	                                                            VLT_ERR_IO;
}

/* One ceremony on data_dir's token. */
static int
node_call(const char *data_dir, const char *allow, enum hsm_node_op op,
    const char *shares, const uint8_t *in, size_t in_len, uint8_t **out,
    size_t *out_len)
{
	char dir[PATH_MAX], hsm_dir[PATH_MAX], shconf[PATH_MAX];
	struct vlt_conf *conf = NULL;
	struct hsm_init hi;
	int r;

	*out = NULL;
	*out_len = 0;
	if ((r = node_token(data_dir, allow, &conf, dir, hsm_dir, shconf,
	         &hi)) == 0)
		r = map_hsm(hsm_node(&hi, op, shares, in, in_len, out,
		    out_len));
	conf_free(conf);
	return r;
}

void
vault_fingerprint(const uint8_t *spki, size_t len,
    char hex[VLT_FINGERPRINT_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	uint8_t d[32];
	size_t i;

	SHA256(spki, len, d);
	for (i = 0; i < 32; i++) {
		hex[2 * i] = digits[d[i] >> 4];
		hex[2 * i + 1] = digits[d[i] & 15];
	}
	hex[VLT_FINGERPRINT_LEN] = '\0';
}

/* ---- the registry: reg_read and reg_write only ---- */

static int
reg_path(const char *data_dir, char *path)
{
	char dir[PATH_MAX];

	if (data_dir == NULL || realpath(data_dir, dir) == NULL)
		return VLT_ERR_NOT_FOUND;
	return fs_join(path, PATH_MAX, dir, NODES_FILE);
}

static int
reg_line(const char *l, size_t len, struct vlt_node *n)
{
	char line[200], state[16];

	if (len >= sizeof(line))
		return -1;
	memcpy(line, l, len);
	line[len] = '\0';
	memset(n, 0, sizeof(*n));
	/* NAME is the rest of the line */
	if (sscanf(line, "%64s %15s %64[^\n]", n->fingerprint, state,
	        n->name) != 3 ||
	    strlen(n->fingerprint) != VLT_FINGERPRINT_LEN)
		return -1;
	if (strcmp(state, "removed") == 0)
		n->removed = 1;
	else if (strcmp(state, "approved") != 0)
		return -1;
	return 0;
}

/* The PostgreSQL store of data_dir's config (malloc'd), or NULL: the
 * registry is DIR/nodes. */
static char *
reg_store(const char *data_dir)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct vlt_conf *conf = NULL;
	const char *db;
	char *out = NULL;

	if (data_dir == NULL || realpath(data_dir, dir) == NULL ||
	    fs_join(path, sizeof(path), dir, "p11vault.conf") != 0 ||
	    conf_read(path, &conf) != 0)
		return NULL;
	if ((db = conf_get(conf, "store")) != NULL)
		out = strdup(db);
	conf_free(conf);
	return out;
}

/* Every node of the registry (none: an empty list). */
static int
reg_read(const char *data_dir, struct vlt_node **out, size_t *n)
{
	char path[PATH_MAX], *db;
	struct vlt_node *a;
	const char *p, *e;
	buf_t *b = NULL;
	int r;

	*out = NULL;
	*n = 0;
	if ((db = reg_store(data_dir)) != NULL) {
		r = cluster_pg_registry_read(db, out, n, NODES_MAX);
		freezero(db, strlen(db));
		return r;
	}
	if ((r = reg_path(data_dir, path)) != 0)
		return r;
	if ((a = calloc(NODES_MAX, sizeof(*a))) == NULL)
		return VLT_ERR_NO_MEMORY;
	if (fs_lookup(path) != 0) {
		*out = a;
		return 0;
	}
	if (file_read(path, NODES_FILE_MAX, &b) != 0) {
		free(a);
		return VLT_ERR_IO;
	}
	for (p = buf_str(b); *p != '\0' && *n < NODES_MAX; p = e + 1) {
		if ((e = strchr(p, '\n')) == NULL)
			break;
		if (reg_line(p, (size_t)(e - p), &a[*n]) == 0)
			(*n)++;
	}
	buf_free(b);
	*out = a;
	return 0;
}

static int
reg_write(const char *data_dir, const struct vlt_node *a, size_t n)
{
	char path[PATH_MAX], *db;
	buf_t *b;
	size_t i;
	int r;

	if ((db = reg_store(data_dir)) != NULL) {
		r = cluster_pg_registry_write(db, a, n);
		freezero(db, strlen(db));
		return r;
	}
	if ((r = reg_path(data_dir, path)) != 0)
		return r;
	if ((b = buf_new(NODES_FILE_MAX)) == NULL)
		return VLT_ERR_NO_MEMORY;
	for (i = 0; i < n; i++)
		if (buf_putf(b, "%s %s %s\n", a[i].fingerprint,
		        a[i].removed ? "removed" : "approved",
		        a[i].name) != 0) {
			buf_free(b);
			return VLT_ERR_INTERNAL;
		}
	r = fs_write_private(path, buf_len(b) ? buf_ptr(b) : (const void *)"",
	    buf_len(b));
	buf_free(b);
	return r;
}

/* ---- the ceremonies ---- */

/* node_fingerprint = FP into data_dir's config (the cluster's registry
 * names the node by it: a removed node's serve refuses to start). */
static int
conf_fingerprint(const char *data_dir, const char *fp)
{
	char dir[PATH_MAX], path[PATH_MAX], tmp[PATH_MAX];
	struct vlt_conf *conf = NULL;
	const char *have;
	int r;

	if (realpath(data_dir, dir) == NULL)
		return VLT_ERR_NOT_FOUND;
	if ((r = fs_join(path, sizeof(path), dir, "p11vault.conf")) != 0 ||
	    (r = fs_join(tmp, sizeof(tmp), dir, "p11vault.conf.new")) != 0 ||
	    (r = conf_read(path, &conf)) != 0)
		goto out;
	have = conf_get(conf, "node_fingerprint");
	if (have != NULL && strcmp(have, fp) == 0)
		goto out;
	(void)unlink(tmp);
	if ((r = conf_set(conf, "node_fingerprint", fp)) != 0 ||
	    (r = conf_write_new(conf, tmp)) != 0)
		goto out;
	r = rename(tmp, path) == 0 ? 0 : VLT_ERR_IO;
out:
	conf_free(conf);
	return r;
}

int
vault_node_request(const char *data_dir, const char *allow, uint8_t **spki,
    size_t *spki_len)
{
	char fp[VLT_FINGERPRINT_LEN + 1];
	int r = node_call(data_dir, allow, HSM_NODE_REQUEST, NULL, NULL, 0,
	    spki, spki_len);

	if (r != 0)
		return r;
	vault_fingerprint(*spki, *spki_len, fp);
	return conf_fingerprint(data_dir, fp);
}

static int
name_check(const char *name)
{
	size_t i, n = name != NULL ? strlen(name) : 0;

	if (n == 0 || n > VLT_NODE_NAME_MAX)
		return VLT_ERR_BAD_PARAM;
	for (i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') ||
		        (name[i] >= 'A' && name[i] <= 'Z') ||
		        (name[i] >= '0' && name[i] <= '9') || name[i] == '-' ||
		        name[i] == '.' || name[i] == '_'))
			return VLT_ERR_BAD_PARAM;
	return 0;
}

int
vault_node_approve(const char *data_dir, const char *allow, const char *shares,
    const char *name, const uint8_t *spki, size_t spki_len, uint8_t **bundle,
    size_t *bundle_len)
{
	char fp[VLT_FINGERPRINT_LEN + 1];
	struct vlt_node *a = NULL;
	size_t n, i;
	int r;

	*bundle = NULL;
	*bundle_len = 0;
	if (name_check(name) != 0 || spki == NULL || spki_len == 0)
		return VLT_ERR_BAD_PARAM;
	vault_fingerprint(spki, spki_len, fp);
	if ((r = reg_read(data_dir, &a, &n)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		if (strcmp(a[i].fingerprint, fp) == 0 && a[i].removed) {
			r = VLT_ERR_FORBIDDEN; /* removed: never again */
			goto out;
		}
		if (strcmp(a[i].name, name) == 0 && !a[i].removed &&
		    strcmp(a[i].fingerprint, fp) != 0) {
			r = VLT_ERR_CONFLICT; /* the name is another node's */
			goto out;
		}
	}
	if ((r = node_call(data_dir, allow, HSM_NODE_APPROVE, shares, spki,
	         spki_len, bundle, bundle_len)) != 0)
		goto out;
	for (i = 0; i < n && strcmp(a[i].fingerprint, fp) != 0; i++)
		;
	if (i == n && n == NODES_MAX) {
		r = VLT_ERR_CONFLICT;
		goto out;
	}
	memcpy(a[i].fingerprint, fp, sizeof(fp));
	memcpy(a[i].name, name, strlen(name) + 1);
	a[i].removed = 0;
	r = reg_write(data_dir, a, i == n ? n + 1 : n);
out:
	if (r != 0) {
		free(*bundle);
		*bundle = NULL;
	}
	free(a);
	return r;
}

int
vault_node_join(const char *data_dir, const char *allow, const char *shares,
    const uint8_t *bundle, size_t bundle_len)
{
	uint8_t *out = NULL;
	size_t out_len = 0;
	int r;

	r = node_call(data_dir, allow, HSM_NODE_JOIN, shares, bundle,
	    bundle_len, &out, &out_len);
	free(out);
	return r;
}

int
vault_node_list(const char *data_dir, struct vlt_node **nodes, size_t *n)
{
	return reg_read(data_dir, nodes, n);
}

static unsigned
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return (unsigned)(c - '0');
	if (c >= 'a' && c <= 'f')
		return (unsigned)(c - 'a' + 10);
	return 16;
}

int
vault_node_remove(const char *data_dir, const char *allow, const char *shares,
    const char *who)
{
	struct vlt_node *a = NULL;
	uint8_t fp[32], *out = NULL;
	size_t n, i, j, out_len = 0;
	unsigned hi, lo;
	int r;

	if ((r = reg_read(data_dir, &a, &n)) != 0)
		return r;
	for (i = 0; i < n; i++)
		if (!a[i].removed &&
		    (strcmp(a[i].name, who) == 0 ||
		        strcmp(a[i].fingerprint, who) == 0))
			break;
	if (i == n) {
		free(a);
		return VLT_ERR_NOT_FOUND;
	}
	for (j = 0; j < 32; j++) {
		hi = hex_digit(a[i].fingerprint[2 * j]);
		lo = hex_digit(a[i].fingerprint[2 * j + 1]);
		if (hi > 15 || lo > 15) {
			free(a);
			return VLT_ERR_INTERNAL;
		}
		fp[j] = (uint8_t)(hi << 4 | lo);
	}
	r = node_call(data_dir, allow, HSM_NODE_FORGET, shares, fp, sizeof(fp),
	    &out, &out_len);
	free(out);
	if (r == 0) {
		a[i].removed = 1;
		r = reg_write(data_dir, a, n);
	}
	free(a);
	return r;
}

/* ---- rotation of the domain key ---- */

#define ROTATION_FILE "domain-rotation"
#define ROTATION_PAGE 16
#define ROTATION_CRASH_ENV "P11VAULT_INSECURE_TEST_REKEY_DOMAIN_CRASH"

int
vault_rotation_pending(const char *data_dir)
{
	char path[PATH_MAX];

	return fs_join(path, sizeof(path), data_dir, ROTATION_FILE) == 0 &&
	    fs_lookup(path) == 0;
}

/* The vault opened and unsealed with shares (a line each). */
static int
open_unsealed(const char *dir, const char *allow, const char *shares,
    vault_t **v)
{
	struct vlt_open_opts oo;
	struct vlt_seal_status st;
	char line[256];
	const char *p = shares, *e;
	size_t l;
	int r;

	memset(&oo, 0, sizeof(oo));
	oo.pool_size = 2;
	oo.module_allow = allow;
	if ((r = vault_open(dir, &oo, v)) != 0)
		return r;
	if ((r = vault_seal_status(*v, &st)) != 0)
		return r;
	while (st.sealed && *p != '\0') {
		e = strchr(p, '\n');
		l = e != NULL ? (size_t)(e - p) : strlen(p);
		if (l > 0 && l < sizeof(line)) {
			memcpy(line, p, l);
			line[l] = '\0';
			r = vault_unseal(*v, line, &st);
			OPENSSL_cleanse(line, sizeof(line));
			if (r != 0)
				return r;
		}
		p = e != NULL ? e + 1 : p + l;
	}
	return st.sealed ? VLT_ERR_BAD_PARAM : 0;
}

/* One page of blobs from after *after, re-wrapped and replaced: *n how
 * many were read (< ROTATION_PAGE: the last), *moved how many moved. */
static int
rotate_page(vault_t *v, int64_t *after, size_t *n, size_t *moved)
{
	char bind[BIND_MAX];
	struct store_blob *page = NULL, *todo;
	size_t i, ntodo = 0, replaced = 0;
	int r;

	*moved = 0;
	if ((r = store_blob_scan(v->store, *after, ROTATION_PAGE, &page, n)) !=
	    0)
		return r;
	if ((todo = calloc(ROTATION_PAGE, sizeof(*todo))) == NULL) {
		store_blob_free_array(page, *n);
		return VLT_ERR_NO_MEMORY;
	}
	for (i = 0; i < *n; i++) {
		struct store_blob *b = &page[i];

		*after = b->seq;
		if (blob_format_of(b->blob, b->blob_len) !=
		        HSM_BLOB_FORMAT_CURRENT ||
		    blob_bind(v, bind, b->name, b->version) != 0)
			continue;
		r = hsm_blob_rewrap(v->hsm, bind, b->blob, b->blob_len,
		    &b->bound, &b->bound_len);
		if (r == HSM_ERR_EXISTS)
			continue; /* moved before an interruption */
		if (r != 0) {
			r = map_hsm(r);
			goto out;
		}
		todo[ntodo++] = *b; /* ownership moves */
		b->blob = b->bound = NULL;
	}
	r = ntodo > 0 ? store_blob_replace(v->store, todo, ntodo, &replaced) :
	                0;
	*moved = replaced;
out:
	store_blob_free_array(page, *n);
	store_blob_free_array(todo, ntodo);
	return r;
}

/* Every blob of the store under the newer domain key, a page at a
 * time, each page committed (an interruption resumes where it was). */
static int
rotate_blobs(vault_t *v, size_t *total)
{
	const char *crash = getenv(ROTATION_CRASH_ENV);
	uint64_t crash_after = 0;
	int64_t after = 0;
	size_t n, moved;
	int r;

	*total = 0;
	if (crash != NULL && parse_u64(crash, 1000000, &crash_after) != 0)
		crash_after = 0;
	do {
		if ((r = rotate_page(v, &after, &n, &moved)) != 0)
			return r;
		*total += moved;
		if (crash_after > 0 && *total >= crash_after)
			_exit(9); /* tests: an interruption mid-way */
	} while (n == ROTATION_PAGE);
	return 0;
}

/* The blobs of the appliance's every vault: the default vault's, then
 * each other vault's store (live or deleted alike: a deleted vault's
 * keys come back at recovery). */
static int
rotate_all(vault_t *root, size_t *total)
{
	vault_t **kids = NULL;
	size_t n = 0, i, moved = 0;
	int r;

	if ((r = rotate_blobs(root, total)) != 0 ||
	    (r = children_all(root, &kids, &n)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		if (r == 0 && (r = rotate_blobs(kids[i], &moved)) == 0)
			*total += moved;
		vault_child_release(kids[i]);
	}
	free(kids);
	return r;
}

int
vault_rekey_domain(const char *data_dir, const char *allow, const char *shares,
    size_t *moved)
{
	char dir[PATH_MAX], path[PATH_MAX];
	uint8_t *out = NULL;
	size_t out_len = 0;
	vault_t *v = NULL;
	int r;

	*moved = 0;
	if (data_dir == NULL || realpath(data_dir, dir) == NULL)
		return VLT_ERR_NOT_FOUND;
	if ((r = fs_join(path, sizeof(path), dir, ROTATION_FILE)) != 0)
		return r;
	/* the mark first: from here serve refuses until the end */
	if (fs_lookup(path) != 0 && (r = fs_write_private(path, "1\n", 2)) != 0)
		return r;
	if ((r = node_call(dir, allow, HSM_DOMAIN_NEW, shares, NULL, 0, &out,
	         &out_len)) != 0)
		goto fail;
	if ((r = open_unsealed(dir, allow, shares, &v)) == 0)
		r = rotate_all(v, moved);
	vault_close(v);
	if (r != 0)
		return r; /* the mark stays: run again to resume */
	/* every blob is under the new key: the old one goes */
	if ((r = node_call(dir, allow, HSM_DOMAIN_DROP, shares, NULL, 0, &out,
	         &out_len)) != 0)
		return r;
	return unlink(path) == 0 ? 0 : VLT_ERR_IO;
fail:
	/* nothing moved yet; a domain key of before clustering refuses */
	if (r == VLT_ERR_CONFLICT)
		(void)unlink(path);
	return r;
}
