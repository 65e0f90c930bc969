/*
 * agent.c — `p11vault identity-agent`: runs on a workload's host, holds
 * that host's identity credential, and answers the Azure Instance Metadata
 * Service token protocol on loopback, so that an unmodified
 * ManagedIdentityCredential (AZURE_POD_IDENTITY_AUTHORITY_HOST pointing
 * here) gets vault tokens without the workload ever seeing the secret.
 *
 * Tokens are fetched from the vault's token endpoint over verified HTTPS
 * and cached per resource until five minutes before they expire.
 * Must never: listen on anything but a loopback address; log a token or
 * the secret; answer without the "Metadata: true" header (IMDS's SSRF
 * guard).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <time.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#include "api/cli.h"
#include "api/cli_session.h"
#include "api/client.h"
#include "hsm/base.h"

#define AGENT_CACHE 16
#define AGENT_RESOURCE_MAX 256
#define AGENT_REFRESH_MARGIN 300
#define AGENT_FORM_MAX 8192
#define AGENT_CRED_MAX (64 * 1024)

struct agent_tok {
	char resource[AGENT_RESOURCE_MAX + 1];
	char *token;
	int64_t expires_on;
	int64_t not_before; /* when the vault issued it */
};

struct agent {
	char vault_url[512];
	char ca_file[4096];
	char tenant[64];
	char client_id[64];
	char object_id[64]; /* "" when the credential file has none */
	char *secret;
	pthread_mutex_t lock;
	struct agent_tok cache[AGENT_CACHE];
};

/* grant_type=client_credentials&client_id=…&client_secret=…&scope=… for
 * resource (a trailing slash dropped). */
static API_WUR int
token_form(const struct agent *a, const char *resource, buf_t *form)
{
	size_t rl = strlen(resource);
	char scope[AGENT_RESOURCE_MAX + 16];
	char *e_id = NULL, *e_sec = NULL, *e_scope = NULL;
	int rc = -1;

	if (rl > 0 && resource[rl - 1] == '/')
		rl--;
	if (str_fmt(scope, sizeof(scope), "%.*s/.default", (int)rl, resource) !=
	    0)
		return -1;
	e_id = cli_pct_encode(a->client_id);
	e_sec = cli_pct_encode(a->secret);
	e_scope = cli_pct_encode(scope);
	if (e_id != NULL && e_sec != NULL && e_scope != NULL &&
	    buf_putf(form,
	        "grant_type=client_credentials&client_id=%s&"
	        "client_secret=%s&scope=%s",
	        e_id, e_sec, e_scope) == 0)
		rc = 0;
	freezero_str(e_sec);
	free(e_id);
	free(e_scope);
	return rc;
}

/* Fetches a token for resource from the vault; *token malloc'd. */
static API_WUR int
fetch_token(struct agent *a, const char *resource, char **token,
    int64_t *expires_in, int *status_out)
{
	struct cli_request rq;
	char path[128], err[256];
	buf_t *form = buf_new(AGENT_FORM_MAX), *resp = NULL;
	int status = 0, rc = -1;
	json_t *j = NULL;

	*token = NULL;
	*status_out = 502;
	if (form == NULL || token_form(a, resource, form) != 0 ||
	    str_fmt(path, sizeof(path), "/%s/oauth2/v2.0/token", a->tenant) !=
	        0)
		goto out;
	memset(&rq, 0, sizeof(rq));
	rq.base_url = a->vault_url;
	rq.ca_file = a->ca_file[0] ? a->ca_file : NULL;
	rq.method = "POST";
	rq.path = path;
	rq.content_type = "application/x-www-form-urlencoded";
	rq.body = buf_str(form);
	rq.body_len = buf_len(form);
	if (cli_https(&rq, &status, &resp, err, sizeof(err)) != 0) {
		fprintf(stderr,
		    "{\"level\":\"warn\",\"event\":"
		    "\"token_fetch_failed\",\"reason\":\"%s\"}\n",
		    err);
		goto out;
	}
	if (status != 200) {
		*status_out = status == 401 || status == 400 ? 400 : 502;
		goto out;
	}
	j = json_loadb(buf_str(resp), buf_len(resp), 0, NULL);
	if (!json_is_string(json_object_get(j, "access_token")) ||
	    !json_is_integer(json_object_get(j, "expires_in")))
		goto out;
	*token = strdup(json_string_value(json_object_get(j, "access_token")));
	*expires_in = json_integer_value(json_object_get(j, "expires_in"));
	rc = *token ? 0 : -1;
out:
	json_decref(j); /* Jansson frees through freezero_block */
	buf_free(resp);
	buf_free(form);
	return rc;
}

/* A token for resource, from the cache or the vault. *token malloc'd. */
static API_WUR int
agent_token(struct agent *a, const char *resource, char **token,
    int64_t *expires_on, int64_t *not_before, int *status)
{
	int64_t now = (int64_t)time(NULL), ein = 0;
	size_t i, slot = 0;
	char *fresh = NULL;

	pthread_mutex_lock(&a->lock);
	for (i = 0; i < AGENT_CACHE; i++) {
		struct agent_tok *t = &a->cache[i];
		if (t->token && strcmp(t->resource, resource) == 0 &&
		    t->expires_on - AGENT_REFRESH_MARGIN > now) {
			*token = strdup(t->token);
			*expires_on = t->expires_on;
			*not_before = t->not_before;
			pthread_mutex_unlock(&a->lock);
			return *token ? 0 : -1;
		}
	}
	pthread_mutex_unlock(&a->lock);

	if (fetch_token(a, resource, &fresh, &ein, status) != 0)
		return -1;
	*expires_on = now + ein;
	*not_before = now;
	pthread_mutex_lock(&a->lock);
	for (i = 0; i < AGENT_CACHE; i++) {
		if (a->cache[i].token == NULL ||
		    strcmp(a->cache[i].resource, resource) == 0) {
			slot = i;
			break;
		}
		if (a->cache[i].expires_on < a->cache[slot].expires_on)
			slot = i;
	}
	freezero_str(a->cache[slot].token);
	/* resource is at most AGENT_RESOURCE_MAX (on_request checks) */
	memcpy(a->cache[slot].resource, resource, strlen(resource) + 1);
	a->cache[slot].token = strdup(fresh);
	a->cache[slot].expires_on = *expires_on;
	a->cache[slot].not_before = now;
	pthread_mutex_unlock(&a->lock);
	*token = fresh;
	return 0;
}

static enum MHD_Result
reply(struct MHD_Connection *c, unsigned status, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);
	struct MHD_Response *r;
	enum MHD_Result ret;

	json_decref(body);
	if (text == NULL)
		return MHD_NO;
	r = MHD_create_response_from_buffer(strlen(text), text,
	    MHD_RESPMEM_MUST_COPY);
	freezero_str(text);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type",
	    "application/json; charset=utf-8");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Whether the request names a user-assigned identity that is not this
 * agent's (client_id, object_id, msi_res_id/mi_res_id): IMDS answers 400
 * "Identity not found" then, and so does the agent, rather than hand out
 * another identity's token. Resource IDs are not known here: refused. */
static int
names_other_identity(const struct agent *a, struct MHD_Connection *c)
{
	const char *cid = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
	    "client_id");
	const char *oid = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
	    "object_id");

	if (cid != NULL && strcasecmp(cid, a->client_id) != 0)
		return 1;
	if (oid != NULL &&
	    (a->object_id[0] == '\0' || strcasecmp(oid, a->object_id) != 0))
		return 1;
	return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
	           "msi_res_id") != NULL ||
	    MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
	        "mi_res_id") != NULL;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload,
    size_t *upload_size, void **con_cls)
{
	struct agent *a = cls;
	const char *md, *resource;
	char *token = NULL, ein[32], eon[32], nbf[32];
	int64_t expires_on = 0, not_before = 0, now;
	int status = 502;
	enum MHD_Result ret;

	(void)version;
	(void)upload;
	if (*con_cls == NULL) {
		*con_cls = (void *)1;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/metadata/identity/oauth2/token") != 0 &&
	    strcmp(url, "/metadata/identity/oauth2/token/") != 0)
		return reply(c, 404,
		    json_pack("{s:s, s:s}", "error", "not_found",
		        "error_description", "No such endpoint."));
	if (strcmp(method, "GET") != 0)
		return reply(c, 405,
		    json_pack("{s:s, s:s}", "error", "invalid_request",
		        "error_description", "Only GET is supported."));
	md = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Metadata");
	if (md == NULL || strcasecmp(md, "true") != 0)
		return reply(c, 400,
		    json_pack("{s:s, s:s}", "error", "invalid_request",
		        "error_description",
		        "Required metadata header not specified"));
	resource = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
	    "resource");
	if (resource == NULL || resource[0] == '\0' ||
	    strlen(resource) > AGENT_RESOURCE_MAX)
		return reply(c, 400,
		    json_pack("{s:s, s:s}", "error", "invalid_request",
		        "error_description",
		        "The resource parameter is required."));
	if (names_other_identity(a, c))
		return reply(c, 400,
		    json_pack("{s:s, s:s}", "error", "invalid_request",
		        "error_description", "Identity not found"));
	if (agent_token(a, resource, &token, &expires_on, &not_before,
	        &status) != 0)
		return reply(c, (unsigned)status,
		    json_pack("{s:s, s:s}", "error",
		        status == 400 ? "invalid_client" :
		                        "service_unavailable",
		        "error_description",
		        "The vault did not issue a token for this identity."));
	now = (int64_t)time(NULL);
	/* 32 bytes hold any int64 */
	if (str_fmt(ein, sizeof(ein), "%lld", (long long)(expires_on - now)) ||
	    str_fmt(eon, sizeof(eon), "%lld", (long long)expires_on) ||
	    str_fmt(nbf, sizeof(nbf), "%lld", (long long)not_before)) {
		freezero_str(token);
		return MHD_NO;
	}
	ret = reply(c, 200,
	    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, "
	              "s:s}",
	        "access_token", token, "client_id", a->client_id, "token_type",
	        "Bearer", "expires_in", ein, "expires_on", eon,
	        "ext_expires_in", ein, "not_before", nbf, "resource",
	        resource));
	freezero_str(token);
	return ret;
}

static void
on_done(void *cls, struct MHD_Connection *c, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	*con_cls = NULL;
}

static API_WUR int
load_credential(struct agent *a, const char *path, const char *url_opt,
    const char *ca_opt)
{
	json_error_t je;
	buf_t *file = NULL;
	json_t *j = NULL;
	const char *tid, *cid, *sec, *url, *oid;
	int rc = -1;

	if (file_read(path, AGENT_CRED_MAX, &file) != 0 ||
	    (j = json_loadb(buf_str(file), buf_len(file),
	         JSON_REJECT_DUPLICATES, &je)) == NULL)
		goto out;
	tid = json_string_value(json_object_get(j, "tenantId"));
	cid = json_string_value(json_object_get(j, "clientId"));
	sec = json_string_value(json_object_get(j, "clientSecret"));
	oid = json_string_value(json_object_get(j, "objectId"));
	url = url_opt ? url_opt :
	                json_string_value(json_object_get(j, "vaultUrl"));
	if (!tid || !cid || !sec || !url ||
	    str_fmt(a->tenant, sizeof(a->tenant), "%s", tid) != 0 ||
	    str_fmt(a->client_id, sizeof(a->client_id), "%s", cid) != 0 ||
	    str_fmt(a->vault_url, sizeof(a->vault_url), "%s", url) != 0 ||
	    (oid != NULL &&
	        str_fmt(a->object_id, sizeof(a->object_id), "%s", oid) != 0) ||
	    (ca_opt != NULL &&
	        str_fmt(a->ca_file, sizeof(a->ca_file), "%s", ca_opt) != 0))
		goto out;
	a->secret = strdup(sec);
	rc = a->secret ? 0 : -1;
out:
	json_decref(j); /* Jansson frees through freezero_block */
	buf_free(file);
	return rc;
}

/* --listen 127.x.x.x:PORT into sin: 0, or -1 (not a loopback address). */
static API_WUR int
parse_loopback(const char *listen, struct sockaddr_in *sin)
{
	const char *colon = strrchr(listen, ':');
	char host[64];
	uint64_t port;

	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	if (colon == NULL || (size_t)(colon - listen) >= sizeof(host))
		return -1;
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	if (parse_u64(colon + 1, 65535, &port) != 0 || port == 0 ||
	    inet_pton(AF_INET, host, &sin->sin_addr) != 1 ||
	    (ntohl(sin->sin_addr.s_addr) >> 24) != 127)
		return -1;
	sin->sin_port = htons((uint16_t)port);
	return 0;
}

static const char *
arg(int argc, char **argv, const char *name)
{
	int i;

	for (i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return NULL;
}

int
cli_identity_agent(int argc, char **argv)
{
	const char *cred = arg(argc, argv, "--credential");
	const char *listen = arg(argc, argv, "--listen");
	struct sockaddr_in sin;
	struct MHD_Daemon *d;
	struct agent a;
	sigset_t sigs;
	int sig, i;

	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0) {
			puts(
			    "usage: p11vault identity-agent --credential FILE "
			    "[--listen 127.0.0.1:40342]\n"
			    "       [--vault-url URL] [--ca FILE]\n"
			    "Serves the IMDS token protocol on loopback for the "
			    "identity in FILE\n(the JSON printed by `p11vault "
			    "identity create`, plus vaultUrl, or --vault-url).");
			return 0;
		}
	if (cred == NULL) {
		cli_fail_line("identity-agent needs --credential FILE");
		return 2;
	}
	if (listen == NULL)
		listen = "127.0.0.1:40342";
	if (strrchr(listen, ':') == NULL) {
		cli_fail_line("--listen must be HOST:PORT");
		return 2;
	}
	if (parse_loopback(listen, &sin) != 0) {
		cli_fail_line(
		    "--listen must be a loopback address "
		    "(127.x.x.x:PORT)");
		return 2;
	}
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		cli_fail_line("cannot make the process non-dumpable");
		return 1;
	}
	memset(&a, 0, sizeof(a));
	pthread_mutex_init(&a.lock, NULL);
	if (load_credential(&a, cred, arg(argc, argv, "--vault-url"),
	        arg(argc, argv, "--ca")) != 0) {
		cli_fail_line(
		    "cannot read the credential in %s (tenantId, "
		    "clientId, clientSecret, vaultUrl)",
		    cred);
		return 1;
	}
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0,
	    NULL, NULL, on_request, &a, MHD_OPTION_SOCK_ADDR,
	    (struct sockaddr *)&sin, MHD_OPTION_THREAD_POOL_SIZE, 2u,
	    MHD_OPTION_CONNECTION_LIMIT, 256u, MHD_OPTION_CONNECTION_TIMEOUT,
	    30u, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
	    MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_END);
	if (d == NULL) {
		cli_fail_line("cannot listen on %s", listen);
		freezero_str(a.secret);
		return 1;
	}
	printf("listening on http://%s\n", listen);
	fflush(stdout);
	while (sigwait(&sigs, &sig) != 0)
		;
	MHD_stop_daemon(d);
	for (i = 0; i < AGENT_CACHE; i++)
		freezero_str(a.cache[i].token);
	freezero_str(a.secret);
	pthread_mutex_destroy(&a.lock);
	return 0;
}
