/*
 * api/http.h — the HTTPS server (http.c): libmicrohttpd with TLS and the
 * named limits, turning connections into api_req/api_resp for the router.
 *
 * Must never: log a header or a body; keep a request body after its
 * request.
 */
#ifndef P11VAULT_API_HTTP_H
#define P11VAULT_API_HTTP_H

#include <stddef.h>

#include "api/api.h"

struct api_server;
struct api_server_opts {
	const char *listen; /* HOST:PORT, numeric IP */
	const char *cert_pem_file;
	const char *key_pem_file;
	/* the key itself (decrypted from its
	 * at-rest form), instead of the file */
	const char *key_pem;
};

struct sockaddr_storage;

/* HOST:PORT (an IPv4 address, [IPv6] or localhost) into *ss; 0 or -1. */
int api_listen_parse(const char *listen, struct sockaddr_storage *ss) API_WUR;

/* Starts serving c; 0, or -1 with a one-line reason in err. */
int api_server_start(struct api_ctx *c, const struct api_server_opts *o,
    struct api_server **out, char *err, size_t err_len) API_WUR;
/* Stops accepting, lets in-flight requests finish (up to 10 s), frees. */
void api_server_stop(struct api_server *s);

/* metrics_http.c — the plain-HTTP listener for Prometheus (metrics_listen=
 * in p11vault.conf): GET /metrics without a token, nothing else. */
struct api_metrics_server;
/* 0, or -1 with a one-line reason in err. */
int api_metrics_server_start(struct api_ctx *c, const char *listen,
    struct api_metrics_server **out, char *err, size_t err_len) API_WUR;
void api_metrics_server_stop(struct api_metrics_server *s);

#endif
