/*
 * api/client.h — the command line's HTTPS/1.1 client (client.c): one
 * request per connection, the peer always verified.
 *
 * Must never: skip certificate verification, send a credential over plain
 * HTTP, or print a header or body (they hold tokens and secrets).
 */
#ifndef P11VAULT_API_CLIENT_H
#define P11VAULT_API_CLIENT_H

#include <stddef.h>

#include "api/api.h"
#include "hsm/buf.h"

struct cli_request {
	const char *base_url; /* https://HOST[:PORT][/BASE] */
	const char *ca_file;  /* NULL: the system trust store */
	const char *method;
	const char *path;         /* starts with '/', may carry a query */
	const char *bearer;       /* NULL: no Authorization header */
	const char *content_type; /* NULL: no Content-Type header */
	const char *body;         /* NULL: no body */
	size_t body_len;
	/* Where to connect instead of the URL's host and port (a numeric
	 * IP, a port): TLS still sends the URL's host as SNI and Host and
	 * verifies the certificate against it. NULL: the URL's. */
	const char *connect_ip;
	const char *connect_port;
	/* Not NULL: receives the response's WWW-Authenticate value ("" when
	 * there is none; cut to www_auth_cap - 1 bytes). */
	char *www_auth;
	size_t www_auth_cap;
};

/*
 * One request: TLS 1.2+, the peer verified against rq->ca_file and the
 * URL's host. On 0, *status and *resp (the body, NUL-terminated; free it
 * with buf_free, which wipes). Else -1 with a one-line reason in err.
 */
int cli_https(const struct cli_request *rq, int *status, buf_t **resp,
    char *err, size_t err_len) API_WUR;

/* s percent-encoded for a URL path or a form value (RFC 3986 unreserved
 * characters kept). It may hold a secret: free it with freezero_str.
 * NULL: out of memory. */
char *cli_pct_encode(const char *s) API_WUR;

#endif
