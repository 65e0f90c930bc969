/*
 * metrics_http.c — the metrics listener: plain HTTP on its own address
 * (metrics_listen= in p11vault.conf, or serve --metrics-listen), answering
 * GET /metrics with the same text as the HTTPS /metrics, without a token,
 * so that Prometheus scrapes it like any exporter without holding an
 * administrator credential.
 *
 * Owns: that listener and its one route.
 * Must never: answer anything but /metrics (no key, identity or admin call
 * is reachable through it), keep a request body, or serve metrics whose
 * labels carry names or identities (metrics.c's rule keeps them out).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "api/api.h"
#include "api/http.h"
#include "hsm/base.h"

#define MET_CONN_LIMIT 16
#define MET_CONN_TIMEOUT 10

struct api_metrics_server {
	struct api_ctx *ctx;
	struct MHD_Daemon *daemon;
};

static enum MHD_Result
met_reply(struct MHD_Connection *conn, unsigned status, const char *ctype,
    char *body, size_t len)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, body,
	    MHD_RESPMEM_MUST_FREE);
	enum MHD_Result ret;

	if (resp == NULL) {
		free(body);
		return MHD_NO;
	}
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	        ctype) != MHD_YES) {
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
met_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
	char *body = strdup(text);

	if (body == NULL)
		return MHD_NO;
	return met_reply(conn, status, "text/plain; charset=utf-8", body,
	    strlen(body));
}

static enum MHD_Result
met_request(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct api_metrics_server *s = cls;
	char *text = NULL;
	size_t len = 0;
	int rc;

	(void)version;
	(void)upload_data;
	if (*con_cls == NULL) { /* headers only so far */
		*con_cls = s;
		return MHD_YES;
	}
	if (*upload_data_size != 0) { /* a body is dropped unread */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/metrics") != 0)
		return met_text(conn, 404, "not found: only /metrics\n");
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return met_text(conn, 405, "method not allowed\n");
	rc = vault_health(s->ctx->vault) == VLT_ERR_SEALED ?
	    api_metrics_render_sealed(s->ctx, &text, &len) :
	    api_metrics_render(s->ctx, &text, &len);
	if (rc != 0)
		return met_text(conn, 500, "cannot render the metrics\n");
	return met_reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8",
	    text, len);
}

int
api_metrics_server_start(struct api_ctx *c, const char *listen,
    struct api_metrics_server **out, char *err, size_t err_len)
{
	struct api_metrics_server *s;
	struct sockaddr_storage ss;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
	    MHD_USE_ITC;

	*out = NULL;
	if (api_listen_parse(listen, &ss) != 0) {
		err_set(err, err_len,
		    "invalid metrics_listen address '%s' "
		    "(want HOST:PORT with a numeric IP, e.g. 127.0.0.1:9464)",
		    listen);
		return -1;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		err_set(err, err_len, "out of memory");
		return -1;
	}
	s->ctx = c;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, met_request, s,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)MET_CONN_LIMIT,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)MET_CONN_TIMEOUT,
	    MHD_OPTION_END);
	if (s->daemon == NULL) {
		err_set(err, err_len, "cannot listen on %s (metrics): %s",
		    listen,
		    errno ? strerror(errno) : "MHD_start_daemon failed");
		free(s);
		return -1;
	}
	*out = s;
	return 0;
}

void
api_metrics_server_stop(struct api_metrics_server *s)
{
	if (s == NULL)
		return;
	MHD_stop_daemon(s->daemon);
	free(s);
}
