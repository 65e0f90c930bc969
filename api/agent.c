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

#include "api/api.h"

#define AGENT_CACHE 16
#define AGENT_RESOURCE_MAX 256
#define AGENT_REFRESH_MARGIN 300

struct agent_tok {
	char resource[AGENT_RESOURCE_MAX + 1];
	char *token;
	int64_t expires_on;
	int64_t not_before;        /* when the vault issued it */
};

struct agent {
	char vault_url[512];
	char ca_file[4096];
	char tenant[64];
	char client_id[64];
	char *secret;
	pthread_mutex_t lock;
	struct agent_tok cache[AGENT_CACHE];
};

static void
wipe_str(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/* Fetches a token for resource from the vault; *token malloc'd. */
static int
fetch_token(struct agent *a, const char *resource, char **token,
    int64_t *expires_in, int *status_out)
{
	char scope[AGENT_RESOURCE_MAX + 16], path[128], err[256];
	char *e_id = NULL, *e_sec = NULL, *e_scope = NULL, *form = NULL;
	char *resp = NULL;
	size_t resp_len = 0, flen;
	int status = 0, rc = -1;
	json_t *j = NULL;
	size_t rl = strlen(resource);

	*token = NULL;
	*status_out = 502;
	snprintf(scope, sizeof(scope), "%.*s/.default",
	    (int)(rl && resource[rl - 1] == '/' ? rl - 1 : rl), resource);
	e_id = cli_pct_encode(a->client_id);
	e_sec = cli_pct_encode(a->secret);
	e_scope = cli_pct_encode(scope);
	if (!e_id || !e_sec || !e_scope)
		goto out;
	flen = strlen(e_id) + strlen(e_sec) + strlen(e_scope) + 96;
	form = malloc(flen);
	if (form == NULL)
		goto out;
	snprintf(form, flen, "grant_type=client_credentials&client_id=%s&"
	    "client_secret=%s&scope=%s", e_id, e_sec, e_scope);
	snprintf(path, sizeof(path), "/%s/oauth2/v2.0/token", a->tenant);
	if (cli_https(a->vault_url, a->ca_file[0] ? a->ca_file : NULL, "POST",
	    path, NULL, "application/x-www-form-urlencoded", form,
	    strlen(form), &status, &resp, &resp_len, err, sizeof(err)) != 0) {
		fprintf(stderr, "{\"level\":\"warn\",\"event\":"
		    "\"token_fetch_failed\",\"reason\":\"%s\"}\n", err);
		goto out;
	}
	if (status != 200) {
		*status_out = status == 401 || status == 400 ? 400 : 502;
		goto out;
	}
	j = json_loadb(resp, resp_len, 0, NULL);
	if (!json_is_string(json_object_get(j, "access_token")) ||
	    !json_is_integer(json_object_get(j, "expires_in")))
		goto out;
	*token = strdup(json_string_value(json_object_get(j, "access_token")));
	*expires_in = json_integer_value(json_object_get(j, "expires_in"));
	rc = *token ? 0 : -1;
out:
	if (j) {
		json_t *t = json_object_get(j, "access_token");
		if (json_is_string(t))
			OPENSSL_cleanse((void *)json_string_value(t),
			    json_string_length(t));
		json_decref(j);
	}
	if (resp)
		OPENSSL_clear_free(resp, resp_len);
	wipe_str(form);
	wipe_str(e_sec);
	free(e_id);
	free(e_scope);
	return rc;
}

/* A token for resource, from the cache or the vault. *token malloc'd. */
static int
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
	wipe_str(a->cache[slot].token);
	snprintf(a->cache[slot].resource, sizeof(a->cache[slot].resource),
	    "%s", resource);
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
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type",
	    "application/json; charset=utf-8");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
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
		return reply(c, 404, json_pack("{s:s, s:s}", "error",
		    "not_found", "error_description", "No such endpoint."));
	if (strcmp(method, "GET") != 0)
		return reply(c, 405, json_pack("{s:s, s:s}", "error",
		    "invalid_request", "error_description",
		    "Only GET is supported."));
	md = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Metadata");
	if (md == NULL || strcasecmp(md, "true") != 0)
		return reply(c, 400, json_pack("{s:s, s:s}", "error",
		    "invalid_request", "error_description",
		    "Required metadata header not specified"));
	resource = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
	    "resource");
	if (resource == NULL || resource[0] == '\0' ||
	    strlen(resource) > AGENT_RESOURCE_MAX)
		return reply(c, 400, json_pack("{s:s, s:s}", "error",
		    "invalid_request", "error_description",
		    "The resource parameter is required."));
	if (agent_token(a, resource, &token, &expires_on, &not_before,
	    &status) != 0)
		return reply(c, (unsigned)status, json_pack("{s:s, s:s}",
		    "error", status == 400 ? "invalid_client" :
		    "service_unavailable", "error_description",
		    "The vault did not issue a token for this identity."));
	now = (int64_t)time(NULL);
	snprintf(ein, sizeof(ein), "%lld", (long long)(expires_on - now));
	snprintf(eon, sizeof(eon), "%lld", (long long)expires_on);
	snprintf(nbf, sizeof(nbf), "%lld", (long long)not_before);
	ret = reply(c, 200, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, "
	    "s:s}", "access_token", token, "client_id", a->client_id,
	    "token_type", "Bearer",
	    "expires_in", ein, "expires_on", eon, "ext_expires_in", ein,
	    "not_before", nbf, "resource", resource));
	wipe_str(token);
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

static int
load_credential(struct agent *a, const char *path, const char *url_opt,
    const char *ca_opt)
{
	json_error_t je;
	json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	const char *tid, *cid, *sec, *url;
	int rc = -1;

	if (j == NULL)
		return -1;
	tid = json_string_value(json_object_get(j, "tenantId"));
	cid = json_string_value(json_object_get(j, "clientId"));
	sec = json_string_value(json_object_get(j, "clientSecret"));
	url = url_opt ? url_opt :
	    json_string_value(json_object_get(j, "vaultUrl"));
	if (!tid || !cid || !sec || !url || strlen(tid) >= sizeof(a->tenant) ||
	    strlen(cid) >= sizeof(a->client_id) ||
	    strlen(url) >= sizeof(a->vault_url))
		goto out;
	snprintf(a->tenant, sizeof(a->tenant), "%s", tid);
	snprintf(a->client_id, sizeof(a->client_id), "%s", cid);
	snprintf(a->vault_url, sizeof(a->vault_url), "%s", url);
	if (ca_opt)
		snprintf(a->ca_file, sizeof(a->ca_file), "%s", ca_opt);
	a->secret = strdup(sec);
	rc = a->secret ? 0 : -1;
out:
	sec = json_string_value(json_object_get(j, "clientSecret"));
	if (sec)
		OPENSSL_cleanse((void *)sec, strlen(sec));
	json_decref(j);
	return rc;
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
	char host[64];
	const char *colon;
	sigset_t sigs;
	int sig, i;
	long port;

	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0) {
			puts("usage: p11vault identity-agent --credential FILE "
			    "[--listen 127.0.0.1:40342]\n"
			    "       [--vault-url URL] [--ca FILE]\n"
			    "Serves the IMDS token protocol on loopback for the "
			    "identity in FILE\n(the JSON printed by `p11vault "
			    "identity create`, plus vaultUrl, or --vault-url).");
			return 0;
		}
	if (cred == NULL) {
		fprintf(stderr, "p11vault: identity-agent needs --credential "
		    "FILE\n");
		return 2;
	}
	if (listen == NULL)
		listen = "127.0.0.1:40342";
	colon = strrchr(listen, ':');
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	if (colon == NULL || (size_t)(colon - listen) >= sizeof(host)) {
		fprintf(stderr, "p11vault: --listen must be HOST:PORT\n");
		return 2;
	}
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	port = strtol(colon + 1, NULL, 10);
	if (inet_pton(AF_INET, host, &sin.sin_addr) != 1 || port < 1 ||
	    port > 65535 || (ntohl(sin.sin_addr.s_addr) >> 24) != 127) {
		fprintf(stderr, "p11vault: --listen must be a loopback "
		    "address (127.x.x.x:PORT)\n");
		return 2;
	}
	sin.sin_port = htons((uint16_t)port);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	memset(&a, 0, sizeof(a));
	pthread_mutex_init(&a.lock, NULL);
	if (load_credential(&a, cred, arg(argc, argv, "--vault-url"),
	    arg(argc, argv, "--ca")) != 0) {
		fprintf(stderr, "p11vault: cannot read the credential in %s "
		    "(tenantId, clientId, clientSecret, vaultUrl)\n", cred);
		return 1;
	}
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL,
	    0, NULL, NULL, on_request, &a,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
	    MHD_OPTION_THREAD_POOL_SIZE, 2u,
	    MHD_OPTION_CONNECTION_LIMIT, 256u,
	    MHD_OPTION_CONNECTION_TIMEOUT, 30u,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
	    MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL,
	    MHD_OPTION_END);
	if (d == NULL) {
		fprintf(stderr, "p11vault: cannot listen on %s\n", listen);
		wipe_str(a.secret);
		return 1;
	}
	printf("listening on http://%s\n", listen);
	fflush(stdout);
	while (sigwait(&sigs, &sig) != 0)
		;
	MHD_stop_daemon(d);
	for (i = 0; i < AGENT_CACHE; i++)
		wipe_str(a.cache[i].token);
	wipe_str(a.secret);
	pthread_mutex_destroy(&a.lock);
	return 0;
}
