/*
 * cli_admin.c — `p11vault vault|identity|policy ...`: the administrator
 * commands, as clients of the management REST API (so they work from
 * another machine as well as next to the vault).
 *
 * Owns: argument parsing and help for those commands, reading the admin
 * credential file, the client-credentials token request, the mapping of
 * each command to one management call, printing JSON results.
 *
 * Must never: print the admin secret or a token (the one secret it prints
 * is a new identity's credential, returned by the server for that
 * purpose), keep them in memory after use (every Jansson allocation made
 * here is wiped when freed), or talk to the vault without TLS verification.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "api/api.h"

#define CLI_USAGE_ERR 2
#define CLI_FAIL 1
#define CLI_ADMIN_FILE_MAX (64 * 1024)
#define CLI_PERMS_MAX 64
#define CLI_ERRLEN 512
#define CLI_DEFAULT_RESOURCE "https://vault.azure.net"
#define CLI_API_VERSION "?api-version=7.6"
#define CLI_MSG_MAX 400

/* From client.c (api.h is owned by the lead; see the report). */

/* Option bits: which options a command accepts. */
enum {
	O_NAME = 1 << 0,
	O_OID = 1 << 1,
	O_PERMS = 1 << 2,
	O_RETENTION = 1 << 3,
	O_PURGE_PROT = 1 << 4,
	O_IS_ADMIN = 1 << 5,
};

struct cli_opts {
	const char *data;
	const char *vault_url;
	const char *admin;
	const char *ca;
	const char *resource;
	const char *name;
	const char *oid;
	const char *perms[CLI_PERMS_MAX];
	size_t nperms;
	const char *retention;
	long retention_days;
	int purge_protection;
	int is_admin;                  /* identity create --admin */
	char *perm_copy;               /* backing store of split --key-permissions */
};

/* Everything resolved: where the vault is and who we are. */
struct cli_session {
	char vault_url[2048];
	char ca_file[4096];
	int have_ca;
	char resource[1024];
	json_t *admin;                 /* the parsed admin.json */
	const char *tenant_id;
	char *token;                   /* bearer token, wiped on free */
	size_t token_len;
};

struct cli_cmd;
typedef int (*cli_fn)(struct cli_session *, const struct cli_opts *);

struct cli_cmd {
	const char *group;
	const char *action;
	unsigned opts;
	const char *args;      /* usage line after the common options */
	const char *does;
	cli_fn fn;
};

/* Jansson copies strings (the admin secret, the token, a new identity's
 * secret) into its own buffers and lexer scratch space: for the duration
 * of cli_admin() it frees through api_wipe_free (json.c), which wipes
 * every one of them. */

/* ---- output ---------------------------------------------------------------*/

static void __attribute__((format(printf, 1, 2)))
fail_line(const char *fmt, ...)
{
	va_list ap;

	fputs("p11vault: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Copies s into dst for one line of stderr: control characters become
 * spaces, long text is cut. */
static void
one_line(char *dst, size_t cap, const char *s)
{
	size_t i;

	for (i = 0; s != NULL && s[i] != '\0' && i + 1 < cap; i++)
		dst[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ?
		    ' ' : s[i];
	dst[i] = '\0';
}

static int
print_json(const json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);

	if (s == NULL) {
		fail_line("cannot format the response");
		return CLI_FAIL;
	}
	puts(s);
	api_wipe_free(s);       /* json_dumps: Jansson's allocator */
	if (fflush(stdout) != 0) {
		fail_line("cannot write to stdout: %s", strerror(errno));
		return CLI_FAIL;
	}
	return 0;
}

/* "p11vault: <status> <error.code>: <error.message>" for an error
 * response; understands the Azure envelope and the OAuth error shape. */
static void
print_http_error(int status, const char *body, size_t len)
{
	json_t *root = json_loadb(body, len, 0, NULL), *e;
	const char *code = NULL, *msg = NULL;
	char c1[128], m1[CLI_MSG_MAX];

	if (root != NULL && json_is_object(root)) {
		e = json_object_get(root, "error");
		if (json_is_object(e)) {
			code = json_string_value(json_object_get(e, "code"));
			msg = json_string_value(json_object_get(e, "message"));
		} else if (json_is_string(e)) {
			code = json_string_value(e);
			msg = json_string_value(json_object_get(root,
			    "error_description"));
		}
	}
	one_line(c1, sizeof(c1), code != NULL ? code : "HttpError");
	one_line(m1, sizeof(m1), msg != NULL ? msg :
	    status == 401 ? "authentication failed" :
	    status == 403 ? "forbidden" :
	    status == 404 ? "not found" : "request failed");
	fail_line("%d %s: %s", status, c1, m1);
	json_decref(root);
}

/* ---- admin.json ---------------------------------------------------------- */

static int
read_file_capped(const char *path, char **out, size_t *out_len)
{
	FILE *fp = fopen(path, "rb");
	char *buf = NULL;
	size_t n;
	int rc = -1;

	if (fp == NULL)
		return -1;
	if ((buf = malloc(CLI_ADMIN_FILE_MAX + 1)) == NULL)
		goto out;
	n = fread(buf, 1, CLI_ADMIN_FILE_MAX + 1, fp);
	if (ferror(fp) || n > CLI_ADMIN_FILE_MAX) {
		errno = EFBIG;
		goto out;
	}
	buf[n] = '\0';
	*out = buf;
	*out_len = n;
	buf = NULL;
	rc = 0;
out:
	if (buf != NULL)
		OPENSSL_clear_free(buf, CLI_ADMIN_FILE_MAX + 1);
	fclose(fp);
	return rc;
}

static const char *
admin_str(const json_t *admin, const char *field)
{
	const char *s = json_string_value(json_object_get(admin, field));

	return s != NULL && s[0] != '\0' ? s : NULL;
}

static int
load_admin(const char *path, json_t **out)
{
	char *buf = NULL;
	size_t len = 0;
	json_t *root = NULL;
	json_error_t jerr;
	int rc = CLI_FAIL;

	if (read_file_capped(path, &buf, &len) != 0) {
		fail_line("cannot read the admin credential %s: %s", path,
		    strerror(errno));
		goto out;
	}
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL || !json_is_object(root)) {
		fail_line("%s is not a JSON object", path);
		goto out;
	}
	if (admin_str(root, "tenantId") == NULL ||
	    admin_str(root, "clientId") == NULL ||
	    admin_str(root, "clientSecret") == NULL) {
		fail_line("%s lacks tenantId, clientId or clientSecret", path);
		goto out;
	}
	*out = root;
	root = NULL;
	rc = 0;
out:
	json_decref(root);
	if (buf != NULL)
		OPENSSL_clear_free(buf, len + 1);
	return rc;
}

/* ---- URL pieces ------------------------------------------------------------ */

/* Frees a cli_pct_encode() result, wiped first (it may hold the secret). */
static void
pct_free(char *s)
{
	if (s != NULL)
		OPENSSL_clear_free(s, strlen(s) + 1);
}

/* Optional key=value lookup in DIR/p11vault.conf (for the resource). */
static int
conf_lookup(const char *dir, const char *key, char *dst, size_t cap)
{
	char path[4096], line[4096];
	size_t klen = strlen(key), vlen;
	FILE *fp;
	int n, found = 0;

	n = snprintf(path, sizeof(path), "%s/p11vault.conf", dir);
	if (n < 0 || (size_t)n >= sizeof(path))
		return 0;
	if ((fp = fopen(path, "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (strncmp(line, key, klen) != 0 || line[klen] != '=')
			continue;
		vlen = strcspn(line + klen + 1, "\r\n");
		if (vlen > 0 && vlen < cap) {
			memcpy(dst, line + klen + 1, vlen);
			dst[vlen] = '\0';
			found = 1;
		}
		break;
	}
	fclose(fp);
	return found;
}

static int
copy_str(char *dst, size_t cap, const char *src, const char *what)
{
	size_t len = strlen(src);

	if (len >= cap) {
		fail_line("%s is too long", what);
		return -1;
	}
	memcpy(dst, src, len + 1);
	return 0;
}

/* ---- session: locate the vault, get a token ---------------------------- */

static int
session_open(struct cli_session *s, const struct cli_opts *o)
{
	char path[4096];
	const char *admin_path = o->admin, *url, *res;
	size_t len;
	int n;

	if (o->data == NULL && o->admin == NULL) {
		fail_line("no vault given: use --data DIR, or --vault-url URL "
		    "--admin FILE");
		return CLI_USAGE_ERR;
	}
	if (admin_path == NULL) {
		n = snprintf(path, sizeof(path), "%s/admin.json", o->data);
		if (n < 0 || (size_t)n >= sizeof(path)) {
			fail_line("--data path is too long");
			return CLI_USAGE_ERR;
		}
		admin_path = path;
	}
	if (load_admin(admin_path, &s->admin) != 0)
		return CLI_FAIL;
	s->tenant_id = admin_str(s->admin, "tenantId");

	url = o->vault_url != NULL ? o->vault_url :
	    admin_str(s->admin, "vaultUrl");
	if (url == NULL) {
		fail_line("no vault URL: %s has no vaultUrl; use --vault-url",
		    admin_path);
		return CLI_USAGE_ERR;
	}
	if (copy_str(s->vault_url, sizeof(s->vault_url), url,
	    "the vault URL") != 0)
		return CLI_USAGE_ERR;
	len = strlen(s->vault_url);
	while (len > 0 && s->vault_url[len - 1] == '/')
		s->vault_url[--len] = '\0';

	if (o->ca != NULL) {
		if (copy_str(s->ca_file, sizeof(s->ca_file), o->ca,
		    "--ca") != 0)
			return CLI_USAGE_ERR;
		s->have_ca = 1;
	} else if (o->data != NULL) {
		n = snprintf(s->ca_file, sizeof(s->ca_file), "%s/tls/ca.pem",
		    o->data);
		if (n < 0 || (size_t)n >= sizeof(s->ca_file)) {
			fail_line("--data path is too long");
			return CLI_USAGE_ERR;
		}
		s->have_ca = 1;
	}       /* else: the system trust store */

	res = o->resource != NULL ? o->resource : getenv("P11VAULT_RESOURCE");
	if (res != NULL && res[0] != '\0') {
		if (copy_str(s->resource, sizeof(s->resource), res,
		    "the resource") != 0)
			return CLI_USAGE_ERR;
	} else if (o->data == NULL ||
	    !conf_lookup(o->data, "resource", s->resource,
	    sizeof(s->resource))) {
		memcpy(s->resource, CLI_DEFAULT_RESOURCE,
		    sizeof(CLI_DEFAULT_RESOURCE));
	}
	len = strlen(s->resource);
	while (len > 0 && s->resource[len - 1] == '/')
		s->resource[--len] = '\0';
	return 0;
}

static void
session_close(struct cli_session *s)
{
	json_decref(s->admin);         /* api_wipe_free clears the secret */
	s->admin = NULL;
	if (s->token != NULL)
		OPENSSL_clear_free(s->token, s->token_len + 1);
	s->token = NULL;
}

/* One call; on 0 *resp is a parsed body (or NULL when empty) and
 * *status the HTTP status. Connection problems print their line. */
static int
call(struct cli_session *s, const char *method, const char *path,
    const char *bearer, const char *ctype, const char *body,
    int *status, json_t **resp, char **raw_out, size_t *raw_len_out)
{
	char err[CLI_ERRLEN], *raw = NULL;
	size_t raw_len = 0;
	json_error_t jerr;

	*resp = NULL;
	if (cli_https(s->vault_url, s->have_ca ? s->ca_file : NULL, method,
	    path, bearer, ctype, body, body != NULL ? strlen(body) : 0,
	    status, &raw, &raw_len, err, sizeof(err)) != 0) {
		fail_line("%s", err);
		return CLI_FAIL;
	}
	if (raw_len > 0)
		*resp = json_loadb(raw, raw_len, JSON_REJECT_DUPLICATES, &jerr);
	*raw_out = raw;
	*raw_len_out = raw_len;
	return 0;
}

static void
raw_free(char *raw, size_t len)
{
	if (raw != NULL)
		OPENSSL_clear_free(raw, len + 1);
}

static int
get_token(struct cli_session *s)
{
	char *tenant = NULL, *cid = NULL, *secret = NULL, *scope = NULL;
	char *form = NULL, *raw = NULL, path[1024], scope_raw[1100];
	size_t form_cap = 0, raw_len = 0, tlen;
	json_t *resp = NULL;
	const char *tok;
	int status = 0, n, rc = CLI_FAIL;

	n = snprintf(scope_raw, sizeof(scope_raw), "%s/.default",
	    s->resource);
	if (n < 0 || (size_t)n >= sizeof(scope_raw))
		goto out;
	tenant = cli_pct_encode(s->tenant_id);
	cid = cli_pct_encode(admin_str(s->admin, "clientId"));
	secret = cli_pct_encode(admin_str(s->admin, "clientSecret"));
	scope = cli_pct_encode(scope_raw);
	if (tenant == NULL || cid == NULL || secret == NULL || scope == NULL)
		goto nomem;
	n = snprintf(path, sizeof(path), "/%s/oauth2/v2.0/token", tenant);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		fail_line("the tenant id is too long");
		goto out;
	}
	form_cap = strlen(cid) + strlen(secret) + strlen(scope) + 128;
	if ((form = malloc(form_cap)) == NULL)
		goto nomem;
	n = snprintf(form, form_cap, "grant_type=client_credentials"
	    "&client_id=%s&client_secret=%s&scope=%s", cid, secret, scope);
	if (n < 0 || (size_t)n >= form_cap)
		goto out;
	if (call(s, "POST", path, NULL, "application/x-www-form-urlencoded",
	    form, &status, &resp, &raw, &raw_len) != 0)
		goto out;
	if (status != 200) {
		print_http_error(status, raw, raw_len);
		goto out;
	}
	tok = json_string_value(json_object_get(resp, "access_token"));
	if (tok == NULL || (tlen = strlen(tok)) == 0 || tlen > 16384 ||
	    strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789-._~+/=") != tlen) {
		fail_line("the token endpoint returned no usable access_token");
		goto out;
	}
	if ((s->token = malloc(tlen + 1)) == NULL)
		goto nomem;
	memcpy(s->token, tok, tlen + 1);
	s->token_len = tlen;
	rc = 0;
	goto out;
nomem:
	fail_line("out of memory");
out:
	json_decref(resp);
	raw_free(raw, raw_len);
	if (form != NULL)
		OPENSSL_clear_free(form, form_cap);
	pct_free(tenant);
	pct_free(cid);
	pct_free(secret);
	pct_free(scope);
	return rc;
}

/*
 * A management call with the bearer token. On 2xx: *out gets the parsed
 * body (NULL for an empty body) when out != NULL, else the body is
 * printed. Else prints the error line.
 */
static int
admin_call(struct cli_session *s, const char *method, const char *path,
    json_t *body, json_t **out)
{
	char *req = NULL, *raw = NULL, full[2048];
	size_t raw_len = 0;
	json_t *resp = NULL;
	int status = 0, n, rc = CLI_FAIL;

	if (out != NULL)
		*out = NULL;
	n = snprintf(full, sizeof(full), "%s%s", path, CLI_API_VERSION);
	if (n < 0 || (size_t)n >= sizeof(full)) {
		fail_line("request path too long");
		goto out;
	}
	if (body != NULL && (req = json_dumps(body, JSON_COMPACT)) == NULL) {
		fail_line("out of memory");
		goto out;
	}
	if (call(s, method, full, s->token, body != NULL ?
	    "application/json" : NULL, req, &status, &resp, &raw,
	    &raw_len) != 0)
		goto out;
	if (status < 200 || status > 299) {
		print_http_error(status, raw, raw_len);
		goto out;
	}
	if (raw_len > 0 && resp == NULL) {
		fail_line("%d from %s %s but the body is not JSON", status,
		    method, path);
		goto out;
	}
	if (out != NULL) {
		*out = resp;
		resp = NULL;
		rc = 0;
	} else
		rc = resp != NULL ? print_json(resp) : 0;
out:
	json_decref(resp);
	raw_free(raw, raw_len);
	api_wipe_free(req);
	return rc;
}

/* ---- the commands ---------------------------------------------------------- */

static int
cmd_vault_show(struct cli_session *s, const struct cli_opts *o)
{
	(void)o;
	return admin_call(s, "GET", "/admin/vault", NULL, NULL);
}

static int
cmd_vault_update(struct cli_session *s, const struct cli_opts *o)
{
	json_t *body = NULL, *props = json_object();
	int rc = CLI_FAIL;

	if (props == NULL)
		goto out;
	if (o->retention != NULL &&
	    json_object_set_new(props, "softDeleteRetentionInDays",
	    json_integer(o->retention_days)) != 0)
		goto out;
	if (o->purge_protection &&
	    json_object_set_new(props, "enablePurgeProtection",
	    json_true()) != 0)
		goto out;
	if ((body = json_pack("{s:O}", "properties", props)) == NULL)
		goto out;
	rc = admin_call(s, "PATCH", "/admin/vault", body, NULL);
out:
	json_decref(props);
	json_decref(body);
	return rc;
}

static int
cmd_identity_create(struct cli_session *s, const struct cli_opts *o)
{
	json_t *body = json_pack("{s:s, s:b}", "displayName", o->name,
	    "isAdmin", o->is_admin);
	int rc;

	if (body == NULL) {
		fail_line("--name must be UTF-8 text");
		return CLI_USAGE_ERR;
	}
	rc = admin_call(s, "POST", "/admin/identities", body, NULL);
	json_decref(body);
	return rc;
}

static int
cmd_identity_list(struct cli_session *s, const struct cli_opts *o)
{
	(void)o;
	return admin_call(s, "GET", "/admin/identities", NULL, NULL);
}

static int
cmd_identity_delete(struct cli_session *s, const struct cli_opts *o)
{
	char path[1024], *enc = cli_pct_encode(o->oid);
	int n, rc = CLI_FAIL;

	if (enc == NULL) {
		fail_line("out of memory");
		return CLI_FAIL;
	}
	n = snprintf(path, sizeof(path), "/admin/identities/%s", enc);
	if (n < 0 || (size_t)n >= sizeof(path))
		fail_line("--object-id is too long");
	else
		rc = admin_call(s, "DELETE", path, NULL, NULL);
	pct_free(enc);
	return rc;
}

/* {"properties":{"accessPolicies":[{tenantId, objectId, permissions}]}} */
static json_t *
policy_body(const char *tenant, const char *oid, json_t *permissions)
{
	return json_pack("{s:{s:[{s:s,s:s,s:o}]}}", "properties",
	    "accessPolicies", "tenantId", tenant, "objectId", oid,
	    "permissions", permissions);
}

static int
cmd_policy_set(struct cli_session *s, const struct cli_opts *o)
{
	json_t *keys = json_array(), *body = NULL;
	size_t i;
	int rc = CLI_FAIL;

	if (keys == NULL)
		goto out;
	for (i = 0; i < o->nperms; i++)
		if (json_array_append_new(keys, json_string(o->perms[i])) != 0)
			goto out;
	body = policy_body(s->tenant_id, o->oid,
	    json_pack("{s:O}", "keys", keys));
	if (body == NULL) {
		fail_line("cannot build the request (is every value UTF-8?)");
		goto out;
	}
	rc = admin_call(s, "PUT", "/admin/vault/accessPolicies/replace", body,
	    NULL);
out:
	json_decref(keys);
	json_decref(body);
	return rc;
}

/* The vault's access policies, from GET /admin/vault (new reference). */
static int
fetch_policies(struct cli_session *s, json_t **out)
{
	json_t *vault = NULL, *pol;
	int rc;

	*out = NULL;
	if ((rc = admin_call(s, "GET", "/admin/vault", NULL, &vault)) != 0)
		return rc;
	pol = json_object_get(json_object_get(vault, "properties"),
	    "accessPolicies");
	if (!json_is_array(pol)) {
		fail_line("unexpected response from GET /admin/vault: no "
		    "properties.accessPolicies");
		json_decref(vault);
		return CLI_FAIL;
	}
	*out = json_incref(pol);
	json_decref(vault);
	return 0;
}

static int
cmd_policy_delete(struct cli_session *s, const struct cli_opts *o)
{
	json_t *body;
	int rc;

	/* "remove" with an empty key list drops the principal's whole entry
	 * (az keyvault delete-policy); no read-modify-write race. */
	body = policy_body(s->tenant_id, o->oid, json_pack("{s:[]}", "keys"));
	if (body == NULL) {
		fail_line("cannot build the request (is every value UTF-8?)");
		return CLI_FAIL;
	}
	rc = admin_call(s, "PUT", "/admin/vault/accessPolicies/remove", body,
	    NULL);
	json_decref(body);
	return rc;
}

static int
cmd_policy_list(struct cli_session *s, const struct cli_opts *o)
{
	json_t *pols = NULL;
	int rc;

	(void)o;
	if ((rc = fetch_policies(s, &pols)) != 0)
		return rc;
	rc = print_json(pols);
	json_decref(pols);
	return rc;
}

static const struct cli_cmd cli_cmds[] = {
	{ "vault", "show", 0, "",
	    "prints the vault's properties (GET /admin/vault)",
	    cmd_vault_show },
	{ "vault", "update", O_RETENTION | O_PURGE_PROT,
	    "[--retention-days N] [--enable-purge-protection]",
	    "changes the soft-delete retention (7-90 days) and/or turns purge "
	    "protection on (it can never be turned off)", cmd_vault_update },
	{ "identity", "create", O_NAME | O_IS_ADMIN, "--name NAME [--admin]",
	    "registers a workload identity and prints its credential "
	    "{objectId, clientId, clientSecret, tenantId, displayName, "
	    "isAdmin}; the secret is shown only this once. --admin (with no "
	    "value after it) gives the identity the vault's administrator "
	    "role: it may then call every /admin endpoint and these commands. "
	    "--admin FILE still names the credential to act with",
	    cmd_identity_create },
	{ "identity", "list", 0, "", "lists the registered identities",
	    cmd_identity_list },
	{ "identity", "delete", O_OID, "--object-id OID",
	    "deletes an identity", cmd_identity_delete },
	{ "policy", "set", O_OID | O_PERMS,
	    "--object-id OID --key-permissions P [P...]",
	    "adds or replaces that principal's access policy (like az "
	    "keyvault set-policy). Permissions: get list update create import "
	    "delete recover backup restore decrypt encrypt unwrapKey wrapKey "
	    "verify sign purge rotate getrotationpolicy setrotationpolicy all",
	    cmd_policy_set },
	{ "policy", "delete", O_OID, "--object-id OID",
	    "removes that principal's access policy (like az keyvault "
	    "delete-policy); effective on the next request",
	    cmd_policy_delete },
	{ "policy", "list", 0, "", "prints the vault's access policies",
	    cmd_policy_list },
};
#define CLI_NCMDS (sizeof(cli_cmds) / sizeof(cli_cmds[0]))

static const char cli_common_help[] =
    "Where the vault is (one of):\n"
    "  --data DIR            the vault's data directory: DIR/admin.json,\n"
    "                        DIR/tls/ca.pem\n"
    "  --vault-url URL --admin FILE [--ca FILE]\n"
    "                        a vault elsewhere; FILE is an admin.json\n"
    "                        {tenantId, objectId, clientId, clientSecret,\n"
    "                        vaultUrl}; --ca: the vault's CA certificate\n"
    "                        (default: the system trust store)\n"
    "  --resource URL        token audience (default: $P11VAULT_RESOURCE,\n"
    "                        resource= in DIR/p11vault.conf, or\n"
    "                        " CLI_DEFAULT_RESOURCE ")\n"
    "Prints JSON on stdout. Exit status: 0 ok, 1 failed (one line on\n"
    "stderr: \"p11vault: <status> <code>: <message>\" for a refused\n"
    "request), 2 usage error.\n";

static void
cmd_help(const struct cli_cmd *c)
{
	printf("usage: p11vault %s %s [--data DIR | --vault-url URL --admin "
	    "FILE [--ca FILE]]%s%s\n\n", c->group, c->action,
	    c->args[0] != '\0' ? " " : "", c->args);
	printf("%s.\n\n%s", c->does, cli_common_help);
}

static void
group_help(FILE *fp, const char *group)
{
	size_t i;

	fprintf(fp, "usage:\n");
	for (i = 0; i < CLI_NCMDS; i++)
		if (group == NULL || strcmp(group, cli_cmds[i].group) == 0)
			fprintf(fp, "  p11vault %s %s%s%s\n", cli_cmds[i].group,
			    cli_cmds[i].action, cli_cmds[i].args[0] ? " " : "",
			    cli_cmds[i].args);
	fprintf(fp, "Run 'p11vault GROUP COMMAND --help' for details.\n");
}

/* ---- argument parsing -------------------------------------------------------- */

static int
is_help(const char *a)
{
	return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* Splits "get,list" and collects "get list" into o->perms. */
static int
add_perms(struct cli_opts *o, char **argv, int argc, int *i)
{
	size_t total = 0, off = 0;
	int j;
	char *p, *save = NULL, *tok;

	for (j = *i + 1; j < argc && strncmp(argv[j], "--", 2) != 0; j++)
		total += strlen(argv[j]) + 1;
	if (total == 0 || o->perm_copy != NULL)
		return -1;
	if ((o->perm_copy = malloc(total)) == NULL)
		return -1;
	for (j = *i + 1; j < argc && strncmp(argv[j], "--", 2) != 0; j++) {
		size_t l = strlen(argv[j]);

		memcpy(o->perm_copy + off, argv[j], l);
		o->perm_copy[off + l] = ',';
		off += l + 1;
	}
	o->perm_copy[total - 1] = '\0';
	*i = j - 1;
	for (p = o->perm_copy; (tok = strtok_r(p, ", ", &save)) != NULL;
	    p = NULL) {
		if (o->nperms == CLI_PERMS_MAX)
			return -1;
		o->perms[o->nperms++] = tok;
	}
	return o->nperms > 0 ? 0 : -1;
}

/* 0 ok, 1 help printed, -1 usage error printed. */
static int
parse_opts(const struct cli_cmd *c, int argc, char **argv, struct cli_opts *o)
{
	int i;

	for (i = 2; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		const char **slot = NULL;
		unsigned need = 0;

		if (is_help(a)) {
			cmd_help(c);
			return 1;
		}
		if (strcmp(a, "--key-permissions") == 0) {
			if (!(c->opts & O_PERMS))
				goto unknown;
			if (add_perms(o, argv, argc, &i) != 0) {
				fail_line("--key-permissions needs 1 to %d "
				    "permission names", CLI_PERMS_MAX);
				return -1;
			}
			continue;
		}
		/* identity create: a bare --admin (last, or followed by
		 * another option) is the administrator-role flag; --admin
		 * FILE keeps meaning the credential file. */
		if (strcmp(a, "--admin") == 0 && (c->opts & O_IS_ADMIN) &&
		    (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)) {
			o->is_admin = 1;
			continue;
		}
		if (strcmp(a, "--enable-purge-protection") == 0) {
			if (!(c->opts & O_PURGE_PROT))
				goto unknown;
			o->purge_protection = 1;
			continue;
		}
		if (strcmp(a, "--data") == 0)
			slot = &o->data;
		else if (strcmp(a, "--vault-url") == 0)
			slot = &o->vault_url;
		else if (strcmp(a, "--admin") == 0)
			slot = &o->admin;
		else if (strcmp(a, "--ca") == 0)
			slot = &o->ca;
		else if (strcmp(a, "--resource") == 0)
			slot = &o->resource;
		else if (strcmp(a, "--name") == 0)
			slot = &o->name, need = O_NAME;
		else if (strcmp(a, "--object-id") == 0)
			slot = &o->oid, need = O_OID;
		else if (strcmp(a, "--retention-days") == 0)
			slot = &o->retention, need = O_RETENTION;
		if (slot == NULL || (need != 0 && !(c->opts & need)))
			goto unknown;
		if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0) {
			fail_line("%s needs a value", a);
			return -1;
		}
		v = argv[++i];
		if (v[0] == '\0') {
			fail_line("%s needs a non-empty value", a);
			return -1;
		}
		*slot = v;
	}
	if ((c->opts & O_NAME) && o->name == NULL) {
		fail_line("%s %s needs --name NAME", c->group, c->action);
		return -1;
	}
	if ((c->opts & O_OID) && o->oid == NULL) {
		fail_line("%s %s needs --object-id OID", c->group, c->action);
		return -1;
	}
	if ((c->opts & O_PERMS) && o->nperms == 0) {
		fail_line("%s %s needs --key-permissions P [P...]", c->group,
		    c->action);
		return -1;
	}
	if ((c->opts & (O_RETENTION | O_PURGE_PROT)) && o->retention == NULL &&
	    !o->purge_protection) {
		fail_line("%s %s needs --retention-days N and/or "
		    "--enable-purge-protection", c->group, c->action);
		return -1;
	}
	if (o->retention != NULL) {
		char *end;

		/* The range (7-90) is the server's to enforce and explain. */
		errno = 0;
		o->retention_days = strtol(o->retention, &end, 10);
		if (errno != 0 || end == o->retention || *end != '\0' ||
		    o->retention_days < 0 || o->retention_days > 100000) {
			fail_line("--retention-days needs a whole number of "
			    "days (7-90)");
			return -1;
		}
	}
	return 0;
unknown:
	fail_line("%s %s: unknown %s '%.64s' (see --help)", c->group,
	    c->action, argv[i][0] == '-' ? "option" : "argument", argv[i]);
	return -1;
}

int
cli_admin(int argc, char **argv)
{
	const struct cli_cmd *c = NULL;
	struct cli_opts o;
	struct cli_session s;
	size_t i;
	int known_group = 0, rc;

	memset(&o, 0, sizeof(o));
	memset(&s, 0, sizeof(s));
	if (argc < 1 || argv[0] == NULL) {
		group_help(stderr, NULL);
		return CLI_USAGE_ERR;
	}
	for (i = 0; i < CLI_NCMDS; i++) {
		if (strcmp(argv[0], cli_cmds[i].group) != 0)
			continue;
		known_group = 1;
		if (argc >= 2 && strcmp(argv[1], cli_cmds[i].action) == 0)
			c = &cli_cmds[i];
	}
	if (!known_group) {
		fail_line("unknown command '%.64s'", argv[0]);
		return CLI_USAGE_ERR;
	}
	if (c == NULL) {
		if (argc >= 2 && is_help(argv[1])) {
			group_help(stdout, argv[0]);
			return 0;
		}
		if (argc >= 2)
			fail_line("%s: unknown command '%.64s' (see "
			    "'p11vault %s --help')", argv[0], argv[1], argv[0]);
		else
			fail_line("%s: which command? (see 'p11vault %s --help')",
			    argv[0], argv[0]);
		return CLI_USAGE_ERR;
	}

	rc = parse_opts(c, argc, argv, &o);
	if (rc != 0) {
		free(o.perm_copy);
		return rc > 0 ? 0 : CLI_USAGE_ERR;
	}

	api_json_wipe_on_free();
	rc = session_open(&s, &o);
	if (rc == 0)
		rc = get_token(&s);
	if (rc == 0)
		rc = c->fn(&s, &o);
	session_close(&s);
	json_set_alloc_funcs(malloc, free);
	free(o.perm_copy);
	return rc;
}

/* ---- for `p11vault byok --kek-kid`: the KEK's public key from the vault -- */

static int
jwk_bn(json_t *jwk, const char *field, BIGNUM **out)
{
	const char *s = json_string_value(json_object_get(jwk, field));
	uint8_t *raw = NULL;
	size_t len = 0;

	*out = NULL;
	if (s == NULL || policy_b64url_decode(s, strlen(s), &raw, &len) != 0)
		return -1;
	*out = BN_bin2bn(raw, (int)len, NULL);
	free(raw);
	return *out ? 0 : -1;
}

int
cli_admin_fetch_kek(const char *data, const char *vault_url,
    const char *admin, const char *ca, const char *kid, EVP_PKEY **out)
{
	struct cli_session s;
	struct cli_opts o;
	json_t *resp = NULL, *jwk;
	BIGNUM *n = NULL, *e = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	const char *p = strstr(kid, "/keys/");
	int rc = CLI_FAIL;

	*out = NULL;
	memset(&s, 0, sizeof(s));
	memset(&o, 0, sizeof(o));
	if (p == NULL || strncmp(kid, "https://", 8) != 0) {
		fail_line("--kek-kid must be a key identifier "
		    "https://HOST/keys/NAME/VERSION");
		return CLI_USAGE_ERR;
	}
	o.data = data;
	o.vault_url = vault_url;
	o.admin = admin;
	o.ca = ca;
	api_json_wipe_on_free();
	rc = session_open(&s, &o);
	if (rc == 0)
		rc = get_token(&s);
	if (rc == 0)
		rc = admin_call(&s, "GET", p, NULL, &resp);
	if (rc != 0)
		goto out;
	rc = CLI_FAIL;
	jwk = json_object_get(resp, "key");
	if (!json_is_object(jwk) || jwk_bn(jwk, "n", &n) != 0 ||
	    jwk_bn(jwk, "e", &e) != 0) {
		fail_line("the key %s is not an RSA key", kid);
		goto out;
	}
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(pctx) != 1 ||
	    EVP_PKEY_fromdata(pctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		fail_line("cannot build the KEK's public key");
		goto out;
	}
	rc = 0;
out:
	json_decref(resp);
	session_close(&s);
	json_set_alloc_funcs(malloc, free);
	EVP_PKEY_CTX_free(pctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return rc;
}
