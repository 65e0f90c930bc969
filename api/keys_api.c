/*
 * keys_api.c — the Azure Key Vault keys data plane: /keys and
 * /deletedkeys. Two route tables say which method and path shape goes to
 * which handler under which permission; the handlers of the key life
 * cycle (create, get, update, delete, list, rotate, recover, purge) are
 * here, the others in the keys_*.c files below (api/keys.h).
 *
 * Deny by default: a request reaches a handler only through a route, and
 * every route names its one permission (the crypto routes take theirs
 * from the operation). Must never: return private key parts; echo request
 * values in errors.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/admit.h"
#include "api/keys.h"
#include "hsm/base.h"

/* ---- key life cycle ------------------------------------------------------- */

/* kty, key_size, public_exponent and crv of a create body */
static int
parse_key_type(json_t *body, struct vlt_create_req *req, struct api_resp *r)
{
	const struct hsm_curve_info *c;
	json_t *v;
	int rc;

	if ((rc = keys_parse_kty(body, "kty", &req->kty, &req->hsm, r)) != 0)
		return rc;
	v = json_object_get(body, "key_size");
	if (v && !json_is_null(v)) {
		json_int_t n = json_integer_value(v);
		if (!json_is_integer(v) || req->kty != VLT_KTY_RSA ||
		    (n != 2048 && n != 3072 && n != 4096)) {
			api_resp_error(r, 400, "BadParameter",
			    "The field 'key_size' must be 2048, 3072 or 4096 "
			    "for an RSA key.");
			return VLT_ERR_BAD_PARAM;
		}
		req->key_size = (unsigned)n;
	}
	v = json_object_get(body, "public_exponent");
	if (v && !json_is_null(v) &&
	    (!json_is_integer(v) || json_integer_value(v) != 65537 ||
	        req->kty != VLT_KTY_RSA)) {
		api_resp_error(r, 400, "BadParameter",
		    "The field 'public_exponent' must be 65537.");
		return VLT_ERR_BAD_PARAM;
	}
	if ((rc = keys_parse_crv(body, "crv", 0, &c, r)) != 0)
		return rc;
	if (c != NULL && req->kty != VLT_KTY_EC) {
		api_resp_error(r, 400, "BadParameter",
		    "The field 'crv' applies to EC keys only.");
		return VLT_ERR_BAD_PARAM;
	}
	if (req->kty == VLT_KTY_EC)
		req->crv = c ? (enum vlt_curve)c->code : VLT_CRV_P256;
	return 0;
}

static void
key_create(struct api_req *q, struct api_resp *r, const struct key_target *t)
{
	struct vlt_create_req req;
	struct vlt_key_info k;
	struct keys_attrs a;
	json_t *body = NULL;
	char *tags = NULL;
	int has_ops, rc;

	memset(&req, 0, sizeof(req));
	memset(&k, 0, sizeof(k));
	if (api_body_object(q, r, &body) != 0)
		return;
	if (parse_key_type(body, &req, r) != 0 ||
	    keys_parse_ops(json_object_get(body, "key_ops"), &req.key_ops,
	        &has_ops, r) != 0 ||
	    keys_check_ops(req.kty, req.key_ops, r) != 0)
		goto out;
	if (has_ops && req.key_ops == 0) {
		api_resp_error(r, 400, "BadParameter",
		    "The field 'key_ops' must not be empty.");
		goto out;
	}
	if (keys_parse_attrs(body, &a, r) != 0 ||
	    keys_parse_tags(body, &tags, r) != 0)
		goto out;
	req.enabled = a.has_enabled ? a.enabled : 1;
	req.nbf = a.nbf;
	req.exp = a.exp;
	req.tags = tags;
	rc = vault_key_create(q->vault, t->name, &req, &k);
	keys_send_key(q, r, rc, t->name, t->name, &k);
out:
	free(tags);
	json_decref(body);
}

static void
key_rotate(struct api_req *q, struct api_resp *r, const struct key_target *t)
{
	struct vlt_key_info k;

	memset(&k, 0, sizeof(k));
	keys_send_key(q, r, vault_key_rotate(q->vault, t->name, &k), t->name,
	    t->name, &k);
}

static void
key_get(struct api_req *q, struct api_resp *r, const struct key_target *t)
{
	struct vlt_key_info k;

	memset(&k, 0, sizeof(k));
	keys_send_key(q, r, vault_key_get(q->vault, t->name, t->version, &k),
	    t->name, NULL, &k);
}

static void
key_update(struct api_req *q, struct api_resp *r, const struct key_target *t)
{
	struct vlt_update_req req;
	struct vlt_key_info k;
	struct keys_attrs a;
	json_t *body = NULL;
	char *tags = NULL;
	int rc;

	memset(&req, 0, sizeof(req));
	memset(&k, 0, sizeof(k));
	if (api_body_object(q, r, &body) != 0)
		return;
	if (keys_parse_ops(json_object_get(body, "key_ops"), &req.key_ops,
	        &req.has_key_ops, r) != 0 ||
	    keys_parse_attrs(body, &a, r) != 0 ||
	    keys_parse_tags(body, &tags, r) != 0)
		goto out;
	req.has_enabled = a.has_enabled;
	req.enabled = a.enabled;
	req.has_nbf = a.has_nbf;
	req.nbf = a.nbf;
	req.has_exp = a.has_exp;
	req.exp = a.exp;
	req.tags = tags;
	rc = vault_key_update(q->vault, t->name, t->version, &req, &k);
	keys_send_key(q, r, rc, t->name, NULL, &k);
out:
	free(tags);
	json_decref(body);
}

static void
key_delete(struct api_req *q, struct api_resp *r, const struct key_target *t)
{
	struct vlt_key_info k;

	memset(&k, 0, sizeof(k));
	keys_send_key(q, r, vault_key_delete(q->vault, t->name, &k), t->name,
	    NULL, &k);
}

enum page_of { PAGE_KEYS, PAGE_VERSIONS, PAGE_DELETED };

/* One page of a list: keys (one item per name), a key's versions, or
 * deleted keys. */
static void
send_page(struct api_req *q, struct api_resp *r, const struct key_target *t,
    enum page_of what)
{
	struct vlt_key_info *items = NULL;
	size_t n = 0, max;
	char *cont, *next = NULL, path[256] = "/keys";
	int rc;

	if (keys_parse_paging(q, r, &max, &cont) != 0)
		return;
	if (what == PAGE_KEYS)
		rc = vault_key_list(q->vault, cont, max, &items, &n, &next);
	else if (what == PAGE_DELETED)
		rc = vault_deleted_list(q->vault, cont, max, &items, &n, &next);
	else if ((rc = vault_key_versions(q->vault, t->name, cont, max, &items,
	              &n, &next)) == 0 &&
	    str_fmt(path, sizeof(path), "/keys/%s/versions", t->name) != 0)
		rc = VLT_ERR_INTERNAL;
	free(cont);
	if (rc != 0) {
		/* a name with no key lists empty (vault_key_versions) */
		api_resp_vault_error(r, rc, NULL, NULL);
		vlt_key_info_free_array(items, n);
		free(next);
		return;
	}
	keys_send_list(q, r, rc, items, n, next,
	    what == PAGE_DELETED ? "/deletedkeys" : path, max,
	    what == PAGE_VERSIONS ? KEYS_ITEM_VERSION : KEYS_ITEM_KEY);
}

static void
key_list(struct api_req *q, struct api_resp *r, const struct key_target *t)
{
	send_page(q, r, t, PAGE_KEYS);
}

static void
key_versions(struct api_req *q, struct api_resp *r, const struct key_target *t)
{
	send_page(q, r, t, PAGE_VERSIONS);
}

/* ---- deleted keys ----------------------------------------------------------- */

static void
deleted_list(struct api_req *q, struct api_resp *r, const struct key_target *t)
{
	send_page(q, r, t, PAGE_DELETED);
}

static void
deleted_get(struct api_req *q, struct api_resp *r, const struct key_target *t)
{
	struct vlt_key_info k;

	memset(&k, 0, sizeof(k));
	keys_send_key(q, r, vault_deleted_get(q->vault, t->name, &k), t->name,
	    NULL, &k);
}

static void
deleted_recover(struct api_req *q, struct api_resp *r,
    const struct key_target *t)
{
	struct vlt_key_info k;

	memset(&k, 0, sizeof(k));
	keys_send_key(q, r, vault_key_recover(q->vault, t->name, &k), t->name,
	    NULL, &k);
}

static void
deleted_purge(struct api_req *q, struct api_resp *r, const struct key_target *t)
{
	int rc = vault_key_purge(q->vault, t->name);

	if (rc != 0)
		api_resp_vault_error(r, rc, t->name, "purge");
	else
		api_resp_set(r, 204, NULL);
}

/* ---- routing ---------------------------------------------------------------- */

/* What the last path segment must be for a route to match. */
enum seg_shape {
	SEG_ANY,     /* no segment after the collection, or any key name */
	SEG_LITERAL, /* lit, in any case */
	SEG_VERSION, /* a key version: 32 hex characters */
	SEG_OP,      /* a cryptographic operation (keys_ops.c) */
};

struct route {
	size_t nsegs; /* segments after /keys or /deletedkeys */
	enum seg_shape shape;
	const char *lit;
	const char *method;
	unsigned perm; /* 0: the operation's (SEG_OP) */
	const char *perm_name;
	keys_handler *fn;
};

struct route_table {
	const struct route *routes;
	size_t n;
	int deleted; /* the audit key id is the recovery id */
	/* a path no route has: 405 up to this many
	 * segments, beyond it 404 */
	size_t miss_405_max;
	/* ...except that /keys/{name}/{x} is 404
	 * KeyNotFound */
	int miss_key_404;
};

static const struct route keys_routes[] = {
	{ 0, SEG_ANY, NULL, "GET", PERM_LIST, "list", key_list },
	{ 1, SEG_LITERAL, "restore", "POST", PERM_RESTORE, "restore",
	    keys_restore },
	{ 1, SEG_ANY, NULL, "GET", PERM_GET, "get", key_get },
	{ 1, SEG_ANY, NULL, "PATCH", PERM_UPDATE, "update", key_update },
	{ 1, SEG_ANY, NULL, "DELETE", PERM_DELETE, "delete", key_delete },
	{ 1, SEG_ANY, NULL, "PUT", PERM_IMPORT, "import", keys_import },
	{ 2, SEG_LITERAL, "create", "POST", PERM_CREATE, "create", key_create },
	{ 2, SEG_LITERAL, "versions", "GET", PERM_LIST, "list", key_versions },
	{ 2, SEG_LITERAL, "rotate", "POST", PERM_ROTATE, "rotate", key_rotate },
	{ 2, SEG_LITERAL, "backup", "POST", PERM_BACKUP, "backup",
	    keys_backup },
	{ 2, SEG_LITERAL, "rotationpolicy", "GET", PERM_GETROTATIONPOLICY,
	    "getrotationpolicy", keys_rotation_get },
	{ 2, SEG_LITERAL, "rotationpolicy", "PUT", PERM_SETROTATIONPOLICY,
	    "setrotationpolicy", keys_rotation_set },
	{ 2, SEG_OP, NULL, "POST", 0, NULL, keys_crypto },
	{ 2, SEG_VERSION, NULL, "GET", PERM_GET, "get", key_get },
	{ 2, SEG_VERSION, NULL, "PATCH", PERM_UPDATE, "update", key_update },
	{ 3, SEG_OP, NULL, "POST", 0, NULL, keys_crypto },
};

static const struct route deleted_routes[] = {
	{ 0, SEG_ANY, NULL, "GET", PERM_LIST, "list", deleted_list },
	{ 1, SEG_ANY, NULL, "GET", PERM_GET, "get", deleted_get },
	{ 1, SEG_ANY, NULL, "DELETE", PERM_PURGE, "purge", deleted_purge },
	{ 2, SEG_LITERAL, "recover", "POST", PERM_RECOVER, "recover",
	    deleted_recover },
};

static const struct route_table keys_table = {
	keys_routes,
	sizeof(keys_routes) / sizeof(keys_routes[0]),
	0,
	1,
	1,
};
static const struct route_table deleted_table = {
	deleted_routes,
	sizeof(deleted_routes) / sizeof(deleted_routes[0]),
	1,
	2,
	0,
};

static int
is_version(const char *s)
{
	size_t i, n = strlen(s);

	if (n != VLT_VERSION_LEN)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		        (s[i] >= 'a' && s[i] <= 'f') ||
		        (s[i] >= 'A' && s[i] <= 'F')))
			return 0;
	return 1;
}

/* Whether route rt's path shape fits segs; fills t's version and op. */
static int
path_matches(const struct route *rt, char **segs, size_t n,
    struct key_target *t)
{
	const char *last = n > 0 ? segs[n - 1] : NULL;

	if (rt->nsegs != n)
		return 0;
	switch (rt->shape) {
	case SEG_LITERAL:
		return strcasecmp(last, rt->lit) == 0;
	case SEG_VERSION:
		if (!is_version(last))
			return 0;
		t->version = last;
		return 1;
	case SEG_OP:
		if ((t->op = keys_crypto_op_find(last)) == NULL)
			return 0;
		t->version = n == 3 ? segs[1] : NULL;
		return 1;
	case SEG_ANY:
	default:
		return 1;
	}
}

/* The token work a route does, for the admission gate: its class, or
 * -1 for none (reads, public-key operations, metadata changes). */
static int
route_token_class(const struct route *rt, const struct key_target *t)
{
	if (t->op != NULL)
		return t->op->kind == KEYS_DECRYPT || t->op->kind == KEYS_SIGN ?
		    ADMIT_FAST :
		    -1;
	switch (rt->perm) {
	case PERM_CREATE:
	case PERM_ROTATE:
	case PERM_IMPORT:
	case PERM_RESTORE:
	case PERM_BACKUP:
		return ADMIT_SLOW;
	default:
		return -1;
	}
}

/* The handler of rt, with the audit's started line first for a change. */
static void
route_handle(struct api_req *q, struct api_resp *r, const struct route *rt,
    const struct key_target *t)
{
	if (!q->mutating || api_audit_intent(q, r) == 0)
		rt->fn(q, r, t);
}

/*
 * A request whose connection has no thread of its own (q->park): what
 * is left after the checks (the handler, token work and synced writes:
 * not for an I/O thread) is recorded in q->park, and ready is called
 * once it may run: at once, or when the gate grants it a slot. Refused
 * by the gate, it is answered here.
 */
static void
route_park(struct api_req *q, struct api_resp *r, const struct route *rt,
    const struct key_target *t, int cls)
{
	struct api_park *p = q->park;
	int rc = 0;

	p->route = rt;
	p->op = t->op;
	p->cls = cls;
	p->w = NULL;
	memset(&p->tk, 0, sizeof(p->tk));
	/* the path checked both: a name of at most VLT_NAME_MAX, a version
	 * of VLT_VERSION_LEN */
	if (str_fmt(p->name, sizeof(p->name), "%s",
	        t->name != NULL ? t->name : "") != 0 ||
	    str_fmt(p->version, sizeof(p->version), "%s",
	        t->version != NULL ? t->version : "") != 0) {
		api_resp_error(r, 400, "BadParameter",
		    "The key name or version is too long.");
		return;
	}
	if (cls >= 0 &&
	    (rc = api_admit_enter_park(q, r, (enum admit_class)cls, p)) < 0)
		return;
	p->parked = 1;
	if (rc != ADMIT_PARKED)
		p->ready(p->arg);
}

void
api_keys_continue(struct api_req *q, struct api_resp *r)
{
	struct api_park *p = q->park;
	struct key_target t;

	t.name = p->name[0] != '\0' ? p->name : NULL;
	t.version = p->version[0] != '\0' ? p->version : NULL;
	t.op = p->op;
	if (p->cls >= 0 && api_admit_parked(q, r, p) != 0)
		return;
	route_handle(q, r, p->route, &t);
	if (p->cls >= 0)
		api_admit_leave(q, &p->tk);
}

/* Authorizes the route's permission, applies the rate limits, takes a
 * token slot when the route needs the token, then runs its handler. */
static void
route_run(struct api_req *q, struct api_resp *r, const struct route *rt,
    const struct key_target *t)
{
	unsigned perm = rt->perm;
	const char *pname = rt->perm_name;
	struct admit_ticket tk;
	int cls;

	if (t->op != NULL) {
		perm = t->op->perm;
		pname = t->op->azure;
		q->mutating = 0; /* a crypto operation changes nothing */
	}
	q->operation = pname;
	if (api_authz(q, r, perm, pname) != 0 || api_admit_limit(q, r) != 0)
		return;
	cls = route_token_class(rt, t);
	if (q->park != NULL) {
		route_park(q, r, rt, t, cls);
		return;
	}
	if (cls >= 0 && api_admit_enter(q, r, (enum admit_class)cls, &tk) != 0)
		return;
	route_handle(q, r, rt, t);
	if (cls >= 0)
		api_admit_leave(q, &tk);
}

static void
route(const struct route_table *tab, struct api_req *q, struct api_resp *r,
    char **segs, size_t n)
{
	struct key_target t = { NULL, NULL, NULL };
	int path_found = 0;
	size_t i;

	if (n > 0) {
		t.name = segs[0];
		if (vault_name_check(t.name) != 0) {
			api_resp_error(r, 400, "BadParameter",
			    "The key name is invalid: it must be 1 to 127 "
			    "characters of 0-9, a-z, A-Z and '-'.");
			return;
		}
		if (keys_set_key_id(q, r, t.name, NULL, tab->deleted) != 0)
			return;
	}
	for (i = 0; i < tab->n; i++) {
		const struct route *rt = &tab->routes[i];
		struct key_target m = t;
		if (!path_matches(rt, segs, n, &m))
			continue;
		if (!path_found && m.version != NULL && !tab->deleted &&
		    keys_set_key_id(q, r, m.name, m.version, 0) != 0)
			return;
		path_found = 1;
		if (strcmp(q->method, rt->method) == 0) {
			route_run(q, r, rt, &m);
			return;
		}
	}
	if (path_found || n <= tab->miss_405_max)
		api_resp_error(r, 405, "MethodNotAllowed",
		    "The HTTP method is not allowed on this resource.");
	else if (tab->miss_key_404 && n == 2)
		api_resp_vault_error(r, VLT_ERR_NOT_FOUND, segs[0], NULL);
	else
		api_resp_error(r, 404, "NotFound", "No such resource.");
}

void
api_keys(struct api_req *q, struct api_resp *r, char **segs, size_t n)
{
	route(&keys_table, q, r, segs, n);
}

void
api_deletedkeys(struct api_req *q, struct api_resp *r, char **segs, size_t n)
{
	route(&deleted_table, q, r, segs, n);
}
