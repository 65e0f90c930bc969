/*
 * cli_session.c — the administrator commands' session: where the vault
 * is, the admin credential (admin.json), the client-credentials token,
 * one authenticated HTTPS call to the management API, and the command
 * line's failure lines.
 *
 * Owns: reading admin.json, the token request and the token, the
 * api-version of management calls, turning an error response into one
 * line ("p11vault: <status> <code>: <message>").
 *
 * Must never: print the admin secret or a token; keep either after
 * cli_session_close (the buffers that held them are wiped: ours with
 * freezero, Jansson's because main() makes Jansson free through
 * freezero_block for the whole process); talk without TLS verification.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/cli_session.h"
#include "api/client.h"
#include "hsm/base.h"
#include "vault/config.h"

#define CLI_ADMIN_FILE_MAX (64 * 1024)
#define CLI_ERRLEN 512
#define CLI_API_VERSION "?api-version=7.6"
#define CLI_MSG_MAX 400
#define CLI_TOKEN_MAX 16384

struct cli_session {
	char vault_url[2048]; /* no trailing slash */
	char ca_file[4096];   /* "" : the system trust store */
	char resource[1024];  /* no trailing slash */
	/* several vaults: vault NAME at https://NAME.<vault_domain>[:port]
	 * ("": only the default vault), the default vault's name ("": the
	 * first label of its URL's host) */
	char vault_domain[256];
	char vault_name[VLT_VAULT_NAME_MAX + 1];
	/* "": connect to the URL's host (port) */
	char connect_ip[64];
	char connect_port[8];
	json_t *admin; /* the parsed admin.json */
	char *token;   /* bearer token (freezero_str) */
};

/* ---- output ---------------------------------------------------------------*/

static void __attribute__((format(printf, 1, 0)))
fail_vline(const char *fmt, va_list ap)
{
	fputs("p11vault: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void
cli_fail_line(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fail_vline(fmt, ap);
	va_end(ap);
}

void
cli_die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fail_vline(fmt, ap);
	va_end(ap);
	exit(1);
}

int
cli_exit_status(int rc)
{
	return rc == 0 ? 0 : rc == VLT_ERR_BAD_PARAM ? 2 : 1;
}

/* Copies s into dst for one line of stderr: control characters become
 * spaces, long text is cut. */
static void
one_line(char *dst, size_t cap, const char *s)
{
	size_t i;

	for (i = 0; s != NULL && s[i] != '\0' && i + 1 < cap; i++)
		dst[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? ' ' :
		                                                        s[i];
	dst[i] = '\0';
}

int
cli_print_json(const json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);

	if (s == NULL) {
		cli_fail_line("cannot format the response");
		return VLT_ERR_NO_MEMORY;
	}
	puts(s);
	freezero_block(s); /* json_dumps: Jansson's allocator */
	if (fflush(stdout) != 0) {
		cli_fail_line("cannot write to stdout: %s", strerror(errno));
		return VLT_ERR_IO;
	}
	return 0;
}

/* "p11vault: <status> <error.code>: <error.message>" for an error
 * response; understands the Azure envelope and the OAuth error shape. */
static void
print_http_error(int status, const buf_t *body)
{
	json_t *root = json_loadb(buf_str(body), buf_len(body), 0, NULL), *e;
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
	one_line(m1, sizeof(m1),
	    msg != NULL       ? msg :
	        status == 401 ? "authentication failed" :
	        status == 403 ? "forbidden" :
	        status == 404 ? "not found" :
	                        "request failed");
	cli_fail_line("%d %s: %s", status, c1, m1);
	json_decref(root);
}

/* ---- locating the vault ------------------------------------------------- */

static const char *
admin_str(const json_t *admin, const char *field)
{
	const char *s = json_string_value(json_object_get(admin, field));

	return s != NULL && s[0] != '\0' ? s : NULL;
}

static API_WUR int
load_admin(const char *path, json_t **out)
{
	buf_t *file = NULL;
	json_t *root = NULL;
	json_error_t jerr;
	int rc = VLT_ERR_IO, frc;

	if ((frc = file_read(path, CLI_ADMIN_FILE_MAX, &file)) != 0) {
		cli_fail_line("cannot read the admin credential %s: %s", path,
		    frc == HSM_ERR_IO ? strerror(errno) : strerror(EFBIG));
		goto out;
	}
	root = json_loadb(buf_str(file), buf_len(file), JSON_REJECT_DUPLICATES,
	    &jerr);
	if (root == NULL || !json_is_object(root)) {
		cli_fail_line("%s is not a JSON object", path);
		goto out;
	}
	if (admin_str(root, "tenantId") == NULL ||
	    admin_str(root, "clientId") == NULL ||
	    admin_str(root, "clientSecret") == NULL) {
		cli_fail_line("%s lacks tenantId, clientId or clientSecret",
		    path);
		goto out;
	}
	*out = root;
	root = NULL;
	rc = 0;
out:
	json_decref(root);
	buf_free(file);
	return rc;
}

/* A request to the session's vault: its URL, CA and connect target. */
static void
request_init(const struct cli_session *s, struct cli_request *rq,
    const char *method, const char *path)
{
	memset(rq, 0, sizeof(*rq));
	rq->base_url = s->vault_url;
	rq->method = method;
	rq->path = path;
	rq->ca_file = s->ca_file[0] != '\0' ? s->ca_file : NULL;
	rq->connect_ip = s->connect_ip[0] != '\0' ? s->connect_ip : NULL;
	rq->connect_port = s->connect_port[0] != '\0' ? s->connect_port : NULL;
}

/* src into dst without its trailing slashes. */
static API_WUR int
copy_url(char *dst, size_t cap, const char *src, const char *what)
{
	size_t len = strlen(src);

	while (len > 0 && src[len - 1] == '/')
		len--;
	if (len >= cap) {
		cli_fail_line("%s is too long", what);
		return VLT_ERR_BAD_PARAM;
	}
	memcpy(dst, src, len);
	dst[len] = '\0';
	return 0;
}

/* The data directory's p11vault.conf into *conf (NULL when DIR has none).
 * A config that exists but cannot be read is an error, not the defaults:
 * the CLI would ask for a token the vault then refuses. */
static API_WUR int
read_conf(const char *dir, struct vlt_conf **conf)
{
	char path[4096], err[CLI_ERRLEN];
	int rc;

	*conf = NULL;
	if (fs_join(path, sizeof(path), dir, "p11vault.conf") != 0) {
		cli_fail_line("--data path is too long");
		return VLT_ERR_BAD_PARAM;
	}
	err[0] = '\0';
	rc = conf_read_err(path, conf, err, sizeof(err));
	if (rc == VLT_ERR_NOT_FOUND)
		return 0;
	if (rc != 0) {
		cli_fail_line("cannot read %s: %s", path,
		    err[0] != '\0' ? err : strerror(errno));
		return VLT_ERR_IO;
	}
	return 0;
}

/* resource="..." of a Bearer challenge into dst; 0, or -1 without one. */
static API_WUR int
challenge_resource(const char *www_auth, char *dst, size_t cap)
{
	const char *p = strstr(www_auth, "resource=\""), *end;

	if (p == NULL)
		return -1;
	p += strlen("resource=\"");
	end = strchr(p, '"');
	if (end == NULL || end == p || (size_t)(end - p) >= cap)
		return -1;
	memcpy(dst, p, (size_t)(end - p));
	dst[end - p] = '\0';
	return 0;
}

/* The vault's own answer: the resource its data plane's 401 challenge
 * names (what the Azure SDKs read too), over the verified connection. */
static API_WUR int
ask_resource(struct cli_session *s, char *dst, size_t cap)
{
	struct cli_request rq;
	char err[CLI_ERRLEN], www[2048];
	buf_t *raw = NULL;
	int status = 0, rc = -1;

	request_init(s, &rq, "GET", "/keys" CLI_API_VERSION);
	rq.www_auth = www;
	rq.www_auth_cap = sizeof(www);
	if (cli_https(&rq, &status, &raw, err, sizeof(err)) == 0 &&
	    status == 401)
		rc = challenge_resource(www, dst, cap);
	buf_free(raw);
	return rc;
}

/* The token audience: --resource, $P11VAULT_RESOURCE, resource= in
 * DIR/p11vault.conf, the vault's challenge, or the default. */
static API_WUR int
find_resource(struct cli_session *s, const struct cli_where *w,
    const struct vlt_conf *conf)
{
	const char *res = w->resource != NULL ? w->resource :
	                                        getenv("P11VAULT_RESOURCE");
	char asked[1024];

	if ((res == NULL || res[0] == '\0') && conf != NULL)
		res = conf_get(conf, "resource");
	if ((res == NULL || res[0] == '\0') && w->data == NULL &&
	    ask_resource(s, asked, sizeof(asked)) == 0)
		res = asked;
	if (res == NULL || res[0] == '\0')
		res = CLI_DEFAULT_RESOURCE;
	return copy_url(s->resource, sizeof(s->resource), res, "the resource");
}

/* 1 when the URL's host is an IP literal (reached without DNS). */
static int
url_host_is_ip(const char *url)
{
	const char *p = strstr(url, "://");
	char host[256];
	unsigned char addr[16];
	size_t n;

	p = p != NULL ? p + 3 : url;
	if (*p == '[')
		return 1;
	n = strcspn(p, ":/");
	if (n == 0 || n >= sizeof(host))
		return 0;
	memcpy(host, p, n);
	host[n] = '\0';
	return inet_pton(AF_INET, host, addr) == 1;
}

/* With --data and a vault URL naming a host, the CLI talks to the server
 * on this machine: listen= of the config, a wildcard or a name becoming
 * the loopback address, without resolving the vault's name (SNI, Host
 * and the certificate check still use it). */
static API_WUR int
local_target(struct cli_session *s, const struct vlt_conf *conf)
{
	const char *listen = conf != NULL ? conf_get(conf, "listen") : NULL;
	const char *colon = listen != NULL ? strrchr(listen, ':') : NULL;
	unsigned char addr[16];
	char host[64];
	uint64_t port;
	size_t hl;

	memcpy(s->connect_ip, "127.0.0.1", sizeof("127.0.0.1"));
	s->connect_port[0] = '\0';
	if (colon == NULL)
		return 0; /* the URL's port */
	if (parse_u64(colon + 1, 65535, &port) != 0 || port == 0 ||
	    str_fmt(s->connect_port, sizeof(s->connect_port), "%u",
	        (unsigned)port) != 0) {
		cli_fail_line("p11vault.conf has a bad listen '%.64s'", listen);
		return VLT_ERR_BAD_PARAM;
	}
	hl = (size_t)(colon - listen);
	if (hl >= 2 && listen[0] == '[' && listen[hl - 1] == ']') {
		listen++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host))
		return 0;
	memcpy(host, listen, hl);
	host[hl] = '\0';
	if (strcmp(host, "::") == 0)
		memcpy(s->connect_ip, "::1", sizeof("::1"));
	else if (strcmp(host, "0.0.0.0") != 0 &&
	    (inet_pton(AF_INET, host, addr) == 1 ||
	        inet_pton(AF_INET6, host, addr) == 1))
		memcpy(s->connect_ip, host, hl + 1);
	return 0;
}

/* DIR/tls/ca.pem, --ca, or the system trust store. */
static API_WUR int
find_ca(struct cli_session *s, const struct cli_where *w)
{
	if (w->ca != NULL) {
		if (str_fmt(s->ca_file, sizeof(s->ca_file), "%s", w->ca) != 0) {
			cli_fail_line("--ca is too long");
			return VLT_ERR_BAD_PARAM;
		}
	} else if (w->data != NULL &&
	    str_fmt(s->ca_file, sizeof(s->ca_file), "%s/tls/ca.pem", w->data) !=
	        0) {
		cli_fail_line("--data path is too long");
		return VLT_ERR_BAD_PARAM;
	} /* else: the system trust store */
	return 0;
}

/* Without the config (a remote administrator): the token audience of an
 * appliance with several vaults is https://<vault_domain>[:port]; Azure's
 * own (vault.azure.net) names no domain of the appliance. */
static void
domain_from_resource(struct cli_session *s)
{
	const char *h = s->resource;
	size_t n;

	if (strncmp(h, "https://", 8) != 0)
		return;
	h += 8;
	n = strcspn(h, ":/");
	if ((h[n] == ':' &&
	        strspn(h + n + 1, "0123456789") != strlen(h + n + 1)) ||
	    h[n] == '/' || memchr(h, '.', n) == NULL ||
	    n >= sizeof(s->vault_domain) ||
	    (n == 15 && strncasecmp(h, "vault.azure.net", n) == 0) ||
	    url_host_is_ip(s->resource))
		return;
	memcpy(s->vault_domain, h, n);
	s->vault_domain[n] = '\0';
}

static API_WUR int
locate(struct cli_session *s, const struct cli_where *w)
{
	char path[4096];
	const char *admin_path = w->admin, *url;
	struct vlt_conf *conf = NULL;
	int rc;

	if (w->data == NULL && w->admin == NULL) {
		cli_fail_line(
		    "no vault given: use --data DIR, or --vault-url "
		    "URL --admin FILE");
		return VLT_ERR_BAD_PARAM;
	}
	if (admin_path == NULL) {
		if (fs_join(path, sizeof(path), w->data, "admin.json") != 0) {
			cli_fail_line("--data path is too long");
			return VLT_ERR_BAD_PARAM;
		}
		admin_path = path;
	}
	if ((rc = load_admin(admin_path, &s->admin)) != 0)
		return rc;
	url = w->vault_url != NULL ? w->vault_url :
	                             admin_str(s->admin, "vaultUrl");
	if (url == NULL) {
		cli_fail_line(
		    "no vault URL: %s has no vaultUrl; use "
		    "--vault-url",
		    admin_path);
		return VLT_ERR_BAD_PARAM;
	}
	if ((rc = copy_url(s->vault_url, sizeof(s->vault_url), url,
	         "the vault URL")) != 0 ||
	    (rc = find_ca(s, w)) != 0 ||
	    (w->data != NULL && (rc = read_conf(w->data, &conf)) != 0))
		goto out;
	if (conf != NULL && conf_get(conf, "vault_domain") != NULL &&
	    (str_fmt(s->vault_domain, sizeof(s->vault_domain), "%s",
	         conf_get(conf, "vault_domain")) != 0 ||
	        (conf_get(conf, "vault_name") != NULL &&
	            str_fmt(s->vault_name, sizeof(s->vault_name), "%s",
	                conf_get(conf, "vault_name")) != 0))) {
		cli_fail_line(
		    "p11vault.conf has a bad vault_domain or "
		    "vault_name");
		rc = VLT_ERR_BAD_PARAM;
		goto out;
	}
	/* a child vault's name need not resolve either: --data connects
	 * to the local listener */
	if (w->data != NULL && w->vault_url == NULL &&
	    (!url_host_is_ip(s->vault_url) || s->vault_domain[0] != '\0') &&
	    (rc = local_target(s, conf)) != 0)
		goto out;
	if ((rc = find_resource(s, w, conf)) == 0 && s->vault_domain[0] == '\0')
		domain_from_resource(s);
out:
	conf_free(conf);
	return rc;
}

/* ---- calls ---------------------------------------------------------------- */

/* One call; on 0 *status, *raw (the body) and *resp (the body parsed, or
 * NULL when empty or not JSON). */
static API_WUR int
call(struct cli_session *s, const char *base, const char *method,
    const char *path, const char *bearer, const char *ctype, const char *body,
    int *status, json_t **resp, buf_t **raw)
{
	struct cli_request rq;
	char err[CLI_ERRLEN];
	json_error_t jerr;

	request_init(s, &rq, method, path);
	rq.base_url = base;
	rq.bearer = bearer;
	rq.content_type = ctype;
	rq.body = body;
	rq.body_len = body != NULL ? strlen(body) : 0;
	*resp = NULL;
	if (cli_https(&rq, status, raw, err, sizeof(err)) != 0) {
		cli_fail_line("%s", err);
		return VLT_ERR_IO;
	}
	if (buf_len(*raw) > 0)
		*resp = json_loadb(buf_str(*raw), buf_len(*raw),
		    JSON_REJECT_DUPLICATES, &jerr);
	return 0;
}

/* grant_type=client_credentials&client_id=…&client_secret=…&scope=… */
static API_WUR int
token_form(const struct cli_session *s, buf_t *form)
{
	char *cid = cli_pct_encode(admin_str(s->admin, "clientId"));
	char *secret = cli_pct_encode(admin_str(s->admin, "clientSecret"));
	char *res = cli_pct_encode(s->resource);
	int rc = VLT_ERR_NO_MEMORY;

	if (cid != NULL && secret != NULL && res != NULL)
		rc = buf_putf(form,
		         "grant_type=client_credentials"
		         "&client_id=%s&client_secret=%s&scope=%s%%2F.default",
		         cid, secret, res) == 0 ?
		    0 :
		    VLT_ERR_NO_MEMORY;
	freezero_str(cid);
	freezero_str(secret);
	freezero_str(res);
	return rc;
}

static API_WUR int
token_ok(const char *tok)
{
	size_t n = tok != NULL ? strlen(tok) : 0;

	return n > 0 && n <= CLI_TOKEN_MAX &&
	    strspn(tok,
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	        "0123456789-._~+/=") == n;
}

static API_WUR int
get_token(struct cli_session *s)
{
	char *tenant = cli_pct_encode(admin_str(s->admin, "tenantId"));
	char path[1024];
	buf_t *form = buf_new(CLI_ADMIN_FILE_MAX), *raw = NULL;
	json_t *resp = NULL;
	const char *tok;
	int status = 0, rc = VLT_ERR_NO_MEMORY;

	if (tenant == NULL || form == NULL || (rc = token_form(s, form)) != 0) {
		cli_fail_line("out of memory");
		goto out;
	}
	if (str_fmt(path, sizeof(path), "/%s/oauth2/v2.0/token", tenant) != 0) {
		cli_fail_line("the tenant id is too long");
		rc = VLT_ERR_IO;
		goto out;
	}
	if ((rc = call(s, s->vault_url, "POST", path, NULL,
	         "application/x-www-form-urlencoded", buf_str(form), &status,
	         &resp, &raw)) != 0)
		goto out;
	rc = VLT_ERR_IO;
	if (status != 200) {
		print_http_error(status, raw);
		goto out;
	}
	tok = json_string_value(json_object_get(resp, "access_token"));
	if (!token_ok(tok)) {
		cli_fail_line(
		    "the token endpoint returned no usable "
		    "access_token");
		goto out;
	}
	if ((s->token = strdup(tok)) == NULL) {
		cli_fail_line("out of memory");
		rc = VLT_ERR_NO_MEMORY;
		goto out;
	}
	rc = 0;
out:
	json_decref(resp);
	buf_free(raw);
	buf_free(form);
	freezero_str(tenant);
	return rc;
}

int
cli_session_open(const struct cli_where *w, cli_session_t **out)
{
	struct cli_session *s = calloc(1, sizeof(*s));
	int rc;

	*out = NULL;
	if (s == NULL) {
		cli_fail_line("out of memory");
		return VLT_ERR_NO_MEMORY;
	}
	if ((rc = locate(s, w)) != 0 || (rc = get_token(s)) != 0) {
		cli_session_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

void
cli_session_close(cli_session_t *s)
{
	if (s == NULL)
		return;
	json_decref(s->admin); /* freezero_block clears the secret */
	freezero_str(s->token);
	free(s);
}

const char *
cli_session_tenant(const cli_session_t *s)
{
	return admin_str(s->admin, "tenantId");
}

int
cli_session_call(cli_session_t *s, const char *method, const char *path,
    const json_t *body, json_t **out)
{
	return cli_session_call_at(s, s->vault_url, method, path, body, out);
}

int
cli_session_call_at(cli_session_t *s, const char *base, const char *method,
    const char *path, const json_t *body, json_t **out)
{
	char *req = NULL, full[4096];
	buf_t *raw = NULL;
	json_t *resp = NULL;
	int status = 0, rc = VLT_ERR_IO;

	if (out != NULL)
		*out = NULL;
	if (cli_vault_url_check(s, base) != 0) {
		cli_fail_line("%.200s is not a vault of this appliance", base);
		return VLT_ERR_BAD_PARAM;
	}
	if (str_fmt(full, sizeof(full), "%s%s%s", path,
	        strchr(path, '?') != NULL ? "&" : "?",
	        &CLI_API_VERSION[1]) != 0) {
		cli_fail_line("request path too long");
		return VLT_ERR_IO;
	}
	if (body != NULL && (req = json_dumps(body, JSON_COMPACT)) == NULL) {
		cli_fail_line("out of memory");
		return VLT_ERR_NO_MEMORY;
	}
	if ((rc = call(s, base, method, full, s->token,
	         body != NULL ? "application/json" : NULL, req, &status, &resp,
	         &raw)) != 0)
		goto out;
	rc = VLT_ERR_IO;
	if (status < 200 || status > 299) {
		print_http_error(status, raw);
		goto out;
	}
	if (buf_len(raw) > 0 && resp == NULL) {
		cli_fail_line("%d from %s %s but the body is not JSON", status,
		    method, path);
		goto out;
	}
	if (out != NULL) {
		*out = resp;
		resp = NULL;
		rc = 0;
	} else
		rc = resp != NULL ? cli_print_json(resp) : 0;
out:
	json_decref(resp);
	buf_free(raw);
	freezero_block(req);
	return rc;
}

/* ---- vault names ---------------------------------------------------------- */

const char *
cli_session_vault_url(const cli_session_t *s)
{
	return s->vault_url;
}

/* The default vault's own name into out: the first label of its URL's
 * host when that is a DNS name; "" for an IP literal. */
static void
default_name(const cli_session_t *s, char *out, size_t cap)
{
	const char *h = s->vault_url + strlen("https://");
	size_t n = strcspn(h, ".:/[");

	out[0] = '\0';
	if (strncmp(s->vault_url, "https://", 8) != 0 || h[0] == '[' ||
	    strspn(h, "0123456789.") == strcspn(h, ":/") || n == 0 || n >= cap)
		return;
	memcpy(out, h, n);
	out[n] = '\0';
}

/* The port part of the default vault's URL (":8443" or "") into out. */
static void
url_port(const cli_session_t *s, char *out, size_t cap)
{
	const char *h = s->vault_url + strlen("https://");
	const char *end = h + strcspn(h, "/"), *c = end;

	out[0] = '\0';
	while (c > h && c[-1] >= '0' && c[-1] <= '9')
		c--;
	if (c > h && c < end && c[-1] == ':' && (size_t)(end - c) + 2 <= cap) {
		out[0] = ':';
		memcpy(out + 1, c, (size_t)(end - c));
		out[end - c + 1] = '\0';
	}
}

static int
is_default_name(const cli_session_t *s, const char *name)
{
	char own[256];

	default_name(s, own, sizeof(own));
	return strcasecmp(name, CLI_DEFAULT_VAULT) == 0 ||
	    (s->vault_name[0] != '\0' &&
	        strcasecmp(name, s->vault_name) == 0) ||
	    (own[0] != '\0' && strcasecmp(name, own) == 0);
}

int
cli_vault_url(const cli_session_t *s, const char *name, char *out, size_t cap)
{
	char port[8], lower[VLT_VAULT_NAME_MAX + 1];
	size_t i;

	if (name == NULL || is_default_name(s, name)) {
		if (str_fmt(out, cap, "%s", s->vault_url) != 0) {
			cli_fail_line("the vault URL is too long");
			return VLT_ERR_BAD_PARAM;
		}
		return 0;
	}
	if (s->vault_domain[0] == '\0' || vault_child_name_check(name) != 0) {
		cli_fail_line("no vault named '%.64s' on this appliance (%s)",
		    name,
		    s->vault_domain[0] == '\0' ?
		        "it has no vault domain: only its default vault" :
		        "not a valid vault name");
		return VLT_ERR_NOT_FOUND;
	}
	for (i = 0; name[i] != '\0'; i++)
		lower[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ?
		        name[i] - 'A' + 'a' :
		        name[i]);
	lower[i] = '\0';
	url_port(s, port, sizeof(port));
	if (str_fmt(out, cap, "https://%s.%s%s", lower, s->vault_domain,
	        port) != 0) {
		cli_fail_line("the vault URL is too long");
		return VLT_ERR_BAD_PARAM;
	}
	return 0;
}

/* url (without trailing slashes, n bytes) is https://NAME.<domain>[:port]
 * of this appliance. */
static int
child_url(const cli_session_t *s, const char *url, size_t n)
{
	char port[8], name[VLT_VAULT_NAME_MAX + 1];
	const char *h = url + strlen("https://"), *dot;
	size_t dl = strlen(s->vault_domain), pl;

	if (s->vault_domain[0] == '\0' || n < 8 ||
	    strncasecmp(url, "https://", 8) != 0)
		return 0;
	url_port(s, port, sizeof(port));
	pl = strlen(port);
	dot = memchr(h, '.', n - 8);
	if (dot == NULL || (size_t)(dot - h) > VLT_VAULT_NAME_MAX ||
	    (size_t)(url + n - dot) != 1 + dl + pl ||
	    strncasecmp(dot + 1, s->vault_domain, dl) != 0 ||
	    strncmp(dot + 1 + dl, port, pl) != 0)
		return 0;
	memcpy(name, h, (size_t)(dot - h));
	name[dot - h] = '\0';
	return vault_child_name_check(name) == 0;
}

int
cli_vault_url_check(const cli_session_t *s, const char *url)
{
	size_t n = strlen(url);

	while (n > 0 && url[n - 1] == '/')
		n--;
	if (n == strlen(s->vault_url) && strncasecmp(url, s->vault_url, n) == 0)
		return 0;
	return child_url(s, url, n) ? 0 : VLT_ERR_BAD_PARAM;
}
