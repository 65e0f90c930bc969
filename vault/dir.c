/*
 * vault/dir.c — the data directory: creating a vault in it (vault_init),
 * opening and closing one, its config, the vault settings (retention,
 * purge protection).
 *
 * Owns: the vault_t's life (vault_open/vault_close), the layout of DIR
 * (p11vault.conf, vault.db, hsm/, softhsm2.conf, tokens/, audit/). The
 * vault's softhsm2.conf reaches the token processes through hsm_config's
 * softhsm_conf (their environment), never through this process's.
 *
 * Must never: change the process umask or environment (files and directories get
 * explicit modes: 0700 and 0600); overwrite DIR/p11vault.conf; keep or
 * log a PIN or a share.
 */
#include "vault/vault_int.h"
#include "vault/cluster.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "hsm/affinity.h"
#include "hsm/base.h"

#define SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define DEFAULT_LABEL "p11vault"
#define DEFAULT_URL "https://127.0.0.1:8443"
#define DEFAULT_LISTEN "127.0.0.1:8443"
#define LISTEN_MAX 300

/* 1 when host (hlen bytes) is a name to listen on all addresses for:
 * neither an IP literal nor localhost. */
static int
listen_host_is_name(const char *host, size_t hlen)
{
	char h[256];
	unsigned char addr[16];

	if (hlen == 0 || hlen >= sizeof(h) || host[0] == '[')
		return 0;
	memcpy(h, host, hlen);
	h[hlen] = '\0';
	return strcasecmp(h, "localhost") != 0 &&
	    inet_pton(AF_INET, h, addr) != 1;
}

/* host:port of a URL (0.0.0.0:port when the host is a name: it need not
 * resolve on this machine); DEFAULT_LISTEN when none can be found. */
static int
listen_from_url(const char *url, char *dst, size_t cap)
{
	const char *p, *end, *at, *colon, *port;
	size_t len, hlen, plen;
	int https = 1;

	p = strstr(url, "://");
	if (p != NULL) {
		https = (size_t)(p - url) == 5 &&
		    strncasecmp(url, "https", 5) == 0;
		p += 3;
	} else {
		p = url;
	}
	end = p + strcspn(p, "/?#");
	for (at = p; at < end; at++)
		if (*at == '@')
			p = at + 1;
	len = (size_t)(end - p);
	if (len == 0 || len > 255)
		goto dflt;
	if (p[0] == '[') {
		const char *rb = memchr(p, ']', len);

		if (rb == NULL)
			goto dflt;
		colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(p, ':', len);
	}
	hlen = colon != NULL ? (size_t)(colon - p) : len;
	if (colon != NULL && colon + 1 < end) {
		port = colon + 1;
		plen = (size_t)(end - port);
	} else {
		port = https ? "443" : "80";
		plen = strlen(port);
	}
	if (listen_host_is_name(p, hlen)) {
		p = "0.0.0.0";
		hlen = strlen(p);
	}
	if (str_fmt(dst, cap, "%.*s:%.*s", (int)hlen, p, (int)plen, port) == 0)
		return 0;
dflt:
	return str_fmt(dst, cap, "%s", DEFAULT_LISTEN) == 0 ? 0 :
	                                                      VLT_ERR_INTERNAL;
}

int
vault_find(const char *data_dir)
{
	char path[PATH_MAX];

	if (data_dir == NULL ||
	    fs_join(path, sizeof(path), data_dir, "p11vault.conf") != 0)
		return VLT_ERR_NOT_FOUND;
	return fs_lookup(path);
}

/* VLT_ERR_EXISTS if DIR holds a vault, or the remains of one (a store
 * without a config). */
static int
init_refuse_existing(const char *data_dir)
{
	static const char *const marks[] = { "p11vault.conf", "vault.db" };
	char path[PATH_MAX];
	size_t i;
	int r;

	for (i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
		if ((r = fs_join(path, sizeof(path), data_dir, marks[i])) != 0)
			return r;
		if (fs_lookup(path) == 0)
			return VLT_ERR_EXISTS;
	}
	return 0;
}

/* SoftHSMv2 inside dir: DIR/tokens and DIR/softhsm2.conf (its path into
 * shconf). */
static int
init_softhsm(const char *dir, char *shconf, size_t cap)
{
	char tokdir[PATH_MAX];
	buf_t *b = NULL;
	int r;

	if ((r = fs_join(tokdir, sizeof(tokdir), dir, "tokens")) != 0 ||
	    (r = fs_join(shconf, cap, dir, "softhsm2.conf")) != 0 ||
	    (r = fs_mkdir_private(tokdir)) != 0)
		return r;
	if ((b = buf_new(PATH_MAX + 256)) == NULL)
		return VLT_ERR_NO_MEMORY;
	if (buf_putf(b,
	        "directories.tokendir = %s\n"
	        "objectstore.backend = file\nlog.level = ERROR\n"
	        "slots.removable = false\n",
	        tokdir) != 0) {
		r = VLT_ERR_INTERNAL;
		goto out;
	}
	r = fs_write_private(shconf, buf_ptr(b), buf_len(b));
out:
	buf_free(b);
	return r;
}

/* The token (DIR/hsm and what the hsm keeps there); *shares: the new
 * operator shares. */
static int
init_token(const struct vlt_init_params *p, const char *dir, const char *module,
    const char *label, const char *shconf, char **shares)
{
	char hsmdir[PATH_MAX];
	struct hsm_init hi;
	int r;

	if ((r = fs_join(hsmdir, sizeof(hsmdir), dir, "hsm")) != 0 ||
	    (r = fs_mkdir_private(hsmdir)) != 0)
		return r;
	memset(&hi, 0, sizeof(hi));
	hi.module_path = module;
	hi.module_allow = p->module_allow;
	hi.token_label = label;
	hi.hsm_dir = hsmdir;
	hi.softhsm_conf = shconf[0] != '\0' ? shconf : NULL;
	hi.shares = p->key_shares;
	hi.threshold = p->key_threshold;
	hi.auto_method = p->auto_unseal != NULL ? p->auto_unseal :
	                                          "systemd-creds:host";
	hi.node = p->node;
	r = hsm_token_init(&hi, shares);
	if (r != 0)
		return r == HSM_ERR_EXISTS ? VLT_ERR_EXISTS : map_hsm(r);
	return 0;
}

#define ROOT_SCHEMA "p11vault"

/* The schema of a child's store: v_ and its id, lower-case, '-' as '_'. */
static int
child_schema(const char *id, char *out, size_t cap)
{
	size_t i;

	if (str_fmt(out, cap, "v_%s", id) != 0)
		return VLT_ERR_BAD_PARAM;
	for (i = 2; out[i] != '\0'; i++)
		out[i] = out[i] == '-' ? '_' :
		                         (char)tolower((unsigned char)out[i]);
	return 0;
}

int
vault_store_addr(const vault_t *root, const char *id, char *out, size_t cap,
    int *pg)
{
	const char *db = conf_get(root->conf, "store");
	char schema[VLT_ID_LEN + 8], rel[VLT_ID_LEN + 32];
	int r;

	*pg = db != NULL;
	if (db != NULL) {
		if (id == NULL)
			return store_addr_pg(db, ROOT_SCHEMA, out, cap);
		if ((r = child_schema(id, schema, sizeof(schema))) != 0)
			return r;
		return store_addr_pg(db, schema, out, cap);
	}
	if (id == NULL)
		return fs_join(out, cap, root->data_dir, "vault.db");
	if (str_fmt(rel, sizeof(rel), "vaults/%s/vault.db", id) != 0)
		return VLT_ERR_BAD_PARAM;
	return fs_join(out, cap, root->data_dir, rel);
}

/* Opens the store db names and closes it again: 0 with the open's
 * outcome in *opened (why: libpq's reason, password-free), or an error
 * in err when db is not a PostgreSQL address that fits. */
static int
pg_store_probe(const char *db, char *err, size_t err_len, int *opened,
    char *why, size_t why_len)
{
	char addr[PATH_MAX];
	store_t *s = NULL;
	int r;

	err_set(err, err_len, "%s", "");
	if (!store_addr_is_pg(db)) {
		err_set(err, err_len, "%s",
		    "--store takes a PostgreSQL connection string "
		    "(postgresql://... or host=... dbname=...)");
		return VLT_ERR_BAD_PARAM;
	}
	if ((r = store_addr_pg(db, ROOT_SCHEMA, addr, sizeof(addr))) != 0) {
		err_set(err, err_len, "%s", "the store address is too long");
		return r;
	}
	why[0] = '\0';
	*opened = store_open_why(addr, 0, &s, why, why_len);
	store_close(s);
	return 0;
}

int
vault_store_check(const char *db, char *err, size_t err_len)
{
	char why[256];
	int r, rc;

	if ((rc = pg_store_probe(db, err, err_len, &r, why, sizeof(why))) != 0)
		return rc;
	if (r == VLT_ERR_NOT_FOUND)
		return 0;
	if (r == 0) {
		err_set(err, err_len, "%s",
		    "the database already holds a p11vault store (schema " ROOT_SCHEMA
		    ")");
		return VLT_ERR_EXISTS;
	}
	err_set(err, err_len, "the PostgreSQL store cannot be reached: %s",
	    why);
	return r;
}

int
vault_store_check_joinable(const char *db, char *err, size_t err_len)
{
	char why[256];
	int r, rc;

	if ((rc = pg_store_probe(db, err, err_len, &r, why, sizeof(why))) != 0)
		return rc;
	if (r == 0)
		return 0;
	if (r == VLT_ERR_NOT_FOUND)
		err_set(err, err_len, "%s",
		    "the database holds no p11vault store (schema " ROOT_SCHEMA
		    "): make the cluster's first vault with p11vault init "
		    "--store, then node init the others on it");
	else if (r == VLT_ERR_INTERNAL)
		err_set(err, err_len, "%s",
		    "schema " ROOT_SCHEMA
		    " of the database is not a p11vault "
		    "store of this version");
	else
		err_set(err, err_len,
		    "the PostgreSQL store cannot be reached: %s", why);
	return r;
}

/* The store with the default settings (DIR/vault.db, or schema p11vault
 * of the database db); a new store holds no unbound blob, so there is
 * never anything to upgrade. */
static int
init_store(const char *dir, const char *db)
{
	struct vlt_settings set = { 90, 0 };
	char path[PATH_MAX], why[256];
	store_t *store = NULL;
	int r;

	if (db != NULL)
		r = store_addr_pg(db, ROOT_SCHEMA, path, sizeof(path));
	else
		r = fs_join(path, sizeof(path), dir, "vault.db");
	if (r != 0 || (r = store_open(path, 1, &store)) != 0 ||
	    (r = store_settings_init(store, &set)) != 0 ||
	    (db != NULL && (r = cluster_pg_tables(db, why, sizeof(why))) != 0))
		goto out;
	r = upgrade_mark_done(dir);
out:
	store_close(store);
	return r;
}

/* Drops a PostgreSQL store made by an init that failed after it. */
static void
init_drop_store(const char *db)
{
	char addr[PATH_MAX], why[256];

	if (db != NULL &&
	    store_addr_pg(db, ROOT_SCHEMA, addr, sizeof(addr)) == 0 &&
	    store_remove(addr, why, sizeof(why)) != 0)
		fprintf(stderr, "init: could not drop the new schema %s: %s\n",
		    ROOT_SCHEMA, why);
}

/* The default vault's name: the first label of the URL's host when that
 * is a vault name (cmk of https://cmk.vault.example:8443), else
 * "default". */
static void
default_name(const char *url, char out[VLT_VAULT_NAME_MAX + 1])
{
	const char *h = strstr(url, "://");
	size_t n;

	h = h != NULL ? h + 3 : url;
	n = strcspn(h, ".:/[");
	if (h[n] == '.' && n <= VLT_VAULT_NAME_MAX) {
		memcpy(out, h, n);
		out[n] = '\0';
		if (vault_child_name_check(out) == 0)
			return;
	}
	memcpy(out, "default", sizeof("default"));
}

/* resource= (the token audience): https://<vault_domain>[:port] when
 * there are several vaults (the port of listen, the vault URL's, unless
 * 443), else Azure's. The Python SDK's strict challenge check compares
 * host:port ("NAME.<domain>:8443" must end with "." + the resource's
 * host:port), the JS and .NET SDKs the host alone: with the port in the
 * resource both pass. */
static int
conf_audience(struct vlt_conf *conf, const char *domain, const char *listen)
{
	const char *port = strrchr(listen, ':');
	char res[300];

	if (domain == NULL)
		return conf_set(conf, "resource", "https://vault.azure.net");
	port = port != NULL && strcmp(port, ":443") != 0 ? port : "";
	if (str_fmt(res, sizeof(res), "https://%s%s", domain, port) != 0)
		return VLT_ERR_BAD_PARAM;
	if (conf_set(conf, "vault_domain", domain) != 0)
		return VLT_ERR_NO_MEMORY;
	return conf_set(conf, "resource", res);
}

/* DIR/p11vault.conf, written last: from then on DIR holds a vault. */
static int
init_conf(const struct vlt_init_params *p, const char *dir, const char *module,
    const char *label, const char *shconf)
{
	const char *url = p->vault_url != NULL ? p->vault_url : DEFAULT_URL;
	char tenant[VLT_ID_LEN + 1], listen[LISTEN_MAX], path[PATH_MAX];
	char name[VLT_VAULT_NAME_MAX + 1];
	struct vlt_conf *conf = NULL;
	int r;

	if (p->tenant_id != NULL) {
		if (str_fmt(tenant, sizeof(tenant), "%s", p->tenant_id) != 0)
			return VLT_ERR_BAD_PARAM;
	} else if ((r = random_uuid(tenant)) != 0) {
		return r;
	}
	if ((r = listen_from_url(url, listen, sizeof(listen))) != 0)
		return r;
	if ((conf = conf_new()) == NULL)
		return VLT_ERR_NO_MEMORY;
	default_name(url, name);
	if ((r = conf_set(conf, "vault_url", url)) != 0 ||
	    (r = conf_set(conf, "vault_name", name)) != 0 ||
	    (r = conf_set(conf, "resource_group", "p11vault")) != 0 ||
	    (r = conf_set(conf, "location", "local")) != 0 ||
	    (r = conf_set(conf, "tenant_id", tenant)) != 0 ||
	    (r = conf_audience(conf, p->vault_domain, listen)) != 0 ||
	    (r = conf_set(conf, "listen", listen)) != 0 ||
	    (r = conf_set(conf, "module", module)) != 0 ||
	    (r = conf_set(conf, "token_label", label)) != 0 ||
	    /* relative to DIR: a copy of DIR runs on its own token */
	    (shconf[0] != '\0' &&
	        (r = conf_set(conf, "softhsm_conf", "softhsm2.conf")) != 0) ||
	    (r = conf_set(conf, "token_lifetime", "3600")) != 0 ||
	    (p->store != NULL &&
	        (r = conf_set(conf, "store", p->store)) != 0) ||
	    (r = fs_join(path, sizeof(path), dir, "p11vault.conf")) != 0)
		goto out;
	r = conf_write_new(conf, path);
out:
	conf_free(conf);
	return r;
}

int
vault_init(const struct vlt_init_params *p)
{
	char dir[PATH_MAX], shconf[PATH_MAX], modabs[PATH_MAX];
	const char *module, *label;
	char *shares = NULL;
	int r;

	if (p != NULL && p->shares_out != NULL)
		*p->shares_out = NULL;
	if (p == NULL || p->data_dir == NULL || p->data_dir[0] == '\0')
		return VLT_ERR_BAD_PARAM;
	label = p->token_label != NULL ? p->token_label : DEFAULT_LABEL;
	if ((r = init_refuse_existing(p->data_dir)) != 0 ||
	    (r = fs_mkdir_private(p->data_dir)) != 0)
		return r;
	if (realpath(p->data_dir, dir) == NULL)
		return VLT_ERR_IO;
	shconf[0] = '\0';
	if (p->module_path == NULL) {
		module = SOFTHSM_MODULE;
		if ((r = init_softhsm(dir, shconf, sizeof(shconf))) != 0)
			goto out;
	} else {
		module = p->module_path;
		if (realpath(module, modabs) != NULL)
			module = modabs;
	}
	/* a PostgreSQL store first (the likeliest to fail: nothing made
	 * yet), dropped again if anything after it fails. A node joining a cluster's store (p->node) makes none: the
	 * store is the cluster's, checked by vault_store_check_joinable */
	if (p->store != NULL && !p->node &&
	    (r = init_store(dir, p->store)) != 0)
		goto out;
	if ((r = init_token(p, dir, module, label, shconf, &shares)) != 0 ||
	    (p->store == NULL && (r = init_store(dir, NULL)) != 0) ||
	    (p->store != NULL && p->node &&
	        (r = upgrade_mark_done(dir)) != 0) ||
	    (r = init_conf(p, dir, module, label, shconf)) != 0) {
		if (!p->node)
			init_drop_store(p->store);
		goto out;
	}
	if (p->shares_out != NULL) {
		*p->shares_out = shares;
		shares = NULL;
	}
out:
	freezero_str(shares);
	return r;
}

/* The token process's configuration from the vault's config: the pool
 * is 2 sessions per usable CPU, at least 4, unless the caller chose. */
static void
open_hsm_config(const vault_t *v, const struct vlt_open_opts *o,
    const char *hsm_dir, struct hsm_config *hc)
{
	size_t pool_size = o != NULL ? o->pool_size : 0;

	if (pool_size == 0) {
		pool_size = (size_t)hsm_cpus_count() * 2;
		if (pool_size < 4)
			pool_size = 4;
	}
	memset(hc, 0, sizeof(*hc));
	hc->module_path = conf_get(v->conf, "module");
	hc->token_label = conf_get(v->conf, "token_label");
	hc->hsm_dir = hsm_dir;
	hc->softhsm_conf = v->softhsm_conf[0] != '\0' ? v->softhsm_conf : NULL;
	hc->module_allow = o != NULL ? o->module_allow : NULL;
	hc->run_as = o != NULL ? o->token_user : NULL;
	hc->pool_size = pool_size;
}

/* audit_syslog=true: every line the audit log writes is copied to
 * audit_syslog_socket (default /dev/log; relative: to DIR), from its
 * first line on (a repair record, the start's checkpoint). */
static int
open_syslog(vault_t *v, char *err, size_t err_len)
{
	const char *on = conf_get(v->conf, "audit_syslog");
	const char *sock = conf_get(v->conf, "audit_syslog_socket");
	char path[PATH_MAX];
	struct vlt_syslog *s = NULL;
	int r;

	if (on == NULL || strcmp(on, "true") != 0)
		return 0;
	if (sock == NULL)
		sock = VLT_SYSLOG_SOCKET_DEFAULT;
	if (sock[0] == '/')
		r = str_fmt(path, sizeof(path), "%s", sock);
	else
		r = fs_join(path, sizeof(path), v->data_dir, sock);
	if (r == 0)
		r = vlt_syslog_open(path, &s);
	if (r == VLT_ERR_NO_MEMORY)
		return r;
	if (r != 0) {
		err_set(err, err_len,
		    "audit_syslog_socket: '%.200s' is longer than a socket "
		    "address can be (107 bytes)",
		    sock);
		return VLT_ERR_IO;
	}
	vlt_audit_set_syslog(v->audit, s);
	return 0;
}

/* The audit log; audit_max_bytes=N in p11vault.conf rotates it beyond N
 * bytes (default 64 MiB). A torn tail cut at open gets its record first;
 * when the disk refuses the cut or that record, it stays first in line
 * (the log cuts the tail and writes the record before any other line
 * once it can), and the vault opens failing closed. Then a signed
 * checkpoint (audit_ckpt.c). Both go to syslog too with audit_syslog. */
static int
open_audit(vault_t *v, char *err, size_t err_len)
{
	const char *amb = conf_get(v->conf, "audit_max_bytes");
	struct vlt_audit_repair rep;
	struct vlt_audit_signer signer;
	uint64_t max = 0;
	int r;

	if (amb != NULL && parse_u64(amb, SIZE_MAX, &max) != 0)
		return VLT_ERR_IO;
	if ((r = vault_audit_signer(v, &signer)) != 0 ||
	    (r = vlt_audit_open(v->data_dir, (size_t)max, &v->audit, &rep)) !=
	        0)
		return r;
	vlt_audit_set_signer(v->audit, &signer);
	if ((r = open_syslog(v, err, err_len)) != 0)
		return r;
	if (rep.length != 0) {
		r = vault_audit_repaired(v, &rep);
		if (r == VLT_ERR_NO_MEMORY || r == VLT_ERR_INTERNAL ||
		    r == VLT_ERR_BAD_PARAM)
			return r; /* not formatted, so not pending either */
	}
	/* a full disk is not a reason not to start: it stays pending */
	r = vlt_audit_checkpoint(v->audit);
	return r == VLT_ERR_STORAGE ? 0 : r;
}

/* The root's store: DIR/vault.db, or the PostgreSQL database of
 * store= (its schema p11vault). A failure says why in err. */
static int
open_store(vault_t *v, char *err, size_t err_len)
{
	char path[PATH_MAX], why[256];
	const char *db = conf_get(v->conf, "store");
	int r, pg;

	if (db != NULL && !store_addr_is_pg(db)) {
		err_set(err, err_len, "%s",
		    "store= in p11vault.conf is not a PostgreSQL connection "
		    "string");
		return VLT_ERR_BAD_PARAM;
	}
	if ((r = vault_store_addr(v, NULL, path, sizeof(path), &pg)) != 0)
		return r;
	/* the cluster's tables (vault/cluster.h), for a store made before
	 * them; an unreachable database is said by the open below */
	if (pg && cluster_pg_tables(db, why, sizeof(why)) != 0)
		why[0] = '\0'; /* said by the open below, if it fails */
	r = store_open_why(path, 0, &v->store, why, sizeof(why));
	if (r == 0 || !pg)
		return r;
	if (r == VLT_ERR_NOT_FOUND)
		err_set(err, err_len, "%s",
		    "the PostgreSQL database holds no p11vault store (schema " ROOT_SCHEMA
		    ")");
	else
		err_set(err, err_len,
		    "the PostgreSQL store cannot be opened: %s", why);
	return r;
}

int
vault_store_networked(vault_t *v)
{
	return conf_get(v->conf, "store") != NULL;
}

/* The parts of an open vault, in order: config, token, store, blob
 * upgrade (when unsealed: a sealed vault upgrades at unseal), audit, the
 * other vaults. */
static int
open_parts(vault_t *v, const struct vlt_open_opts *o)
{
	char path[PATH_MAX], hsm_dir[PATH_MAX];
	struct hsm_config hc;
	struct hsm_seal_status st;
	char *err = o != NULL ? o->err : NULL;
	size_t err_len = o != NULL ? o->err_len : 0;
	int r;

	err_set(err, err_len, "%s", "");
	if ((r = fs_join(path, sizeof(path), v->data_dir, "p11vault.conf")) !=
	        0 ||
	    (r = conf_read_err(path, &v->conf, err, err_len)) != 0)
		return r;
	if (conf_get(v->conf, "module") == NULL ||
	    conf_get(v->conf, "token_label") == NULL) {
		err_set(err, err_len, "%s lacks module= or token_label=", path);
		return VLT_ERR_IO;
	}
	if ((r = vlt_softhsm_resolve(v->data_dir,
	         conf_get(v->conf, "softhsm_conf"), v->softhsm_conf,
	         sizeof(v->softhsm_conf), err, err_len)) != 0)
		return r;
	/* the token process unseals; this process never sees a PIN */
	if ((r = fs_join(hsm_dir, sizeof(hsm_dir), v->data_dir, "hsm")) != 0)
		return r;
	open_hsm_config(v, o, hsm_dir, &hc);
	v->token_sessions = hc.pool_size;
	if ((r = hsm_open(&hc, &v->hsm)) != 0)
		return map_hsm(r);
	if ((r = open_store(v, err, err_len)) != 0)
		return r;
	if (hsm_seal_status(v->hsm, &st) == HSM_OK && !st.sealed &&
	    (r = upgrade_blobs(v, v->data_dir)) != 0)
		return r;
	/* the audit log first: each child shares the root's (and the
	 * token's), taken when it is opened */
	if ((r = open_audit(v, err, err_len)) != 0)
		return r;
	return children_open(v, err, err_len);
}

int
vault_open(const char *data_dir, const struct vlt_open_opts *o, vault_t **out)
{
	char dir[PATH_MAX];
	vault_t *v = NULL;
	int r;

	if (out == NULL || data_dir == NULL)
		return VLT_ERR_BAD_PARAM;
	*out = NULL;
	if (realpath(data_dir, dir) == NULL)
		return errno == ENOENT ? VLT_ERR_NOT_FOUND : VLT_ERR_IO;
	if ((v = calloc(1, sizeof(*v))) == NULL)
		return VLT_ERR_NO_MEMORY;
	if (pthread_mutex_init(&v->clock_lock, NULL) != 0) {
		free(v);
		return VLT_ERR_INTERNAL;
	}
	if (pthread_mutex_init(&v->kids_lock, NULL) != 0) {
		pthread_mutex_destroy(&v->clock_lock);
		free(v);
		return VLT_ERR_INTERNAL;
	}
	if ((v->data_dir = strdup(dir)) == NULL) {
		r = VLT_ERR_NO_MEMORY;
		goto out;
	}
	if ((r = open_parts(v, o)) != 0)
		goto out;
	*out = v;
	v = NULL;
out:
	vault_close(v);
	return r;
}

void
vault_close(vault_t *v)
{
	if (v == NULL)
		return;
	if (v->root != NULL) { /* a child: the caller's reference */
		vault_child_release(v);
		return;
	}
	children_close(v);
	vlt_audit_close(v->audit);
	store_close(v->store);
	hsm_close(v->hsm);
	conf_free(v->conf);
	free(v->data_dir);
	free(v->clock_file);
	pthread_mutex_destroy(&v->clock_lock);
	pthread_mutex_destroy(&v->kids_lock);
	free(v);
}

const char *
vault_config(vault_t *v, const char *key)
{
	if (v == NULL || key == NULL)
		return NULL;
	return conf_get(v->conf, key);
}

size_t
vault_token_sessions(vault_t *v)
{
	return v == NULL ? 0 : v->token_sessions;
}

const char *
vault_data_dir(vault_t *v)
{
	return v == NULL ? NULL : v->data_dir;
}

int
vault_settings_get(vault_t *v, struct vlt_settings *out)
{
	if (v == NULL || out == NULL)
		return VLT_ERR_BAD_PARAM;
	return store_settings_get(v->store, out);
}

int
vault_settings_update(vault_t *v, int retention_days, int purge_protection)
{
	if (v == NULL)
		return VLT_ERR_BAD_PARAM;
	if (retention_days >= 0 && vault_retention_check(retention_days) != 0)
		return VLT_ERR_BAD_PARAM;
	if (purge_protection < -1 || purge_protection > 1)
		return VLT_ERR_BAD_PARAM;
	return store_settings_update(v->store, retention_days,
	    purge_protection);
}

const char *
vault_recovery_level(const struct vlt_settings *s)
{
	if (s->retention_days == 90)
		return s->purge_protection ? "Recoverable" :
		                             "Recoverable+Purgeable";
	return s->purge_protection ? "CustomizedRecoverable" :
	                             "CustomizedRecoverable+Purgeable";
}
