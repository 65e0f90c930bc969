/*
 * client.c — a tiny HTTPS/1.1 client (OpenSSL libssl) for the
 * administrator commands: one request per connection, Connection: close.
 *
 * Owns: URL parsing, TLS with peer verification (TLS 1.2 minimum, the
 * vault's CA file or the system trust store, host name / IP checked),
 * request framing, response parsing (Content-Length, chunked, or to EOF)
 * under a size cap.
 *
 * Must never: skip certificate verification, send a credential over plain
 * HTTP, or print a header or body (they hold tokens and secrets); every
 * buffer that held one is wiped before it is freed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "api/client.h"
#include "hsm/base.h"

#define CLI_RESP_MAX (16u * 1024 * 1024) /* body cap */
#define CLI_HEAD_MAX (64u * 1024)        /* status line + headers cap */
#define CLI_HOST_MAX 255
/* raw bytes read: headers + a chunked body's framing + the body */
#define CLI_READ_MAX (CLI_RESP_MAX + CLI_RESP_MAX / 8 + CLI_HEAD_MAX)
#define CLI_READ_CHUNK 16384
#define CLI_PATH_MAX 4096
#define CLI_IO_TIMEOUT_SECS 30


struct url {
	char host[CLI_HOST_MAX + 1]; /* without brackets */
	char port[8];
	char base[CLI_PATH_MAX]; /* path prefix, no trailing slash */
	int is_ip;
	int is_ip6;
};

static const char *
ossl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		return "TLS error";
	ERR_error_string_n(e, buf, len);
	return buf;
}

/* The port after "host:" (p .. end): 1..65535. */
static API_WUR int
url_port(const char *p, const char *end, struct url *u)
{
	char num[8];
	uint64_t port;
	size_t n = (size_t)(end - p);

	if (n == 0 || n >= sizeof(num))
		return -1;
	memcpy(num, p, n);
	num[n] = '\0';
	if (parse_u64(num, 65535, &port) != 0 || port == 0)
		return -1;
	return str_fmt(u->port, sizeof(u->port), "%u", (unsigned)port) == 0 ?
	    0 :
	    -1;
}

/* The host of an https URL into u (brackets dropped); *rest after it. */
static API_WUR int
url_host(const char *p, const char *path, struct url *u, const char **rest)
{
	const char *host_end;
	unsigned char addr[16];
	size_t hlen;

	if (*p == '[') {
		host_end = memchr(p, ']', (size_t)(path - p));
		if (host_end == NULL)
			return -1;
		hlen = (size_t)(host_end - p - 1);
		if (hlen == 0 || hlen > CLI_HOST_MAX)
			return -1;
		memcpy(u->host, p + 1, hlen);
		u->host[hlen] = '\0';
		if (inet_pton(AF_INET6, u->host, addr) != 1)
			return -1;
		u->is_ip = u->is_ip6 = 1;
		*rest = host_end + 1;
		return 0;
	}
	host_end = p + strcspn(p, ":/");
	if (host_end > path)
		host_end = path;
	hlen = (size_t)(host_end - p);
	if (hlen == 0 || hlen > CLI_HOST_MAX)
		return -1;
	memcpy(u->host, p, hlen);
	u->host[hlen] = '\0';
	if (strspn(u->host,
	        "abcdefghijklmnopqrstuvwxyz"
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != hlen)
		return -1;
	u->is_ip = inet_pton(AF_INET, u->host, addr) == 1;
	*rest = host_end;
	return 0;
}

/* https://host[:port][/base]; IPv6 as [addr]. No userinfo, query, fragment. */
static API_WUR int
url_parse(const char *s, struct url *u, char *err, size_t err_len)
{
	const char *p, *path;
	size_t plen;

	memset(u, 0, sizeof(*u));
	if (strncasecmp(s, "https://", 8) != 0) {
		err_set(err, err_len,
		    "the vault URL must start with https:// "
		    "(got '%.64s')",
		    s);
		return -1;
	}
	p = s + 8;
	path = p + strcspn(p, "/?#");
	if (*path == '?' || *path == '#' ||
	    memchr(p, '@', (size_t)(path - p)) != NULL) {
		err_set(err, err_len, "unsupported vault URL '%.64s'", s);
		return -1;
	}
	if (url_host(p, path, u, &p) != 0)
		goto bad;
	if (*p == ':') {
		if (url_port(p + 1, path, u) != 0)
			goto bad;
	} else if (p != path)
		goto bad;
	else
		memcpy(u->port, "443", 4);
	plen = strlen(path);
	while (plen > 0 && path[plen - 1] == '/')
		plen--;
	if (plen >= sizeof(u->base))
		goto bad;
	memcpy(u->base, path, plen);
	u->base[plen] = '\0';
	return 0;
bad:
	err_set(err, err_len, "malformed vault URL '%.64s'", s);
	return -1;
}

/* A TCP connection to u's host and port, or to rq's connect_ip and
 * connect_port when set (numeric: nothing is resolved). */
static API_WUR int
tcp_connect(const struct url *u, const struct cli_request *rq, char *err,
    size_t err_len)
{
	struct addrinfo hints, *res = NULL, *ai;
	struct timeval tv = { CLI_IO_TIMEOUT_SECS, 0 };
	const char *host = rq->connect_ip != NULL ? rq->connect_ip : u->host;
	const char *port = rq->connect_port != NULL ? rq->connect_port :
	                                              u->port;
	int fd = -1, rc, saved = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = u->is_ip || rq->connect_ip != NULL ?
	    AI_NUMERICHOST | AI_NUMERICSERV :
	    0;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		err_set(err, err_len, "cannot resolve %s: %s", host,
		    gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd < 0)
			continue;
		/* On Linux SO_SNDTIMEO also bounds connect(). */
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		err_set(err, err_len, "cannot connect to %s port %s: %s", host,
		    port, strerror(saved != 0 ? saved : ECONNREFUSED));
	return fd;
}

static API_WUR SSL_CTX *
tls_ctx_new(const char *ca_file, char *err, size_t err_len)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char r[160];

	if (ctx == NULL) {
		err_set(err, err_len, "TLS setup failed: %s",
		    ossl_reason(r, sizeof(r)));
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
		goto fail;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			err_set(err, err_len, "cannot load the CA file %s: %s",
			    ca_file, ossl_reason(r, sizeof(r)));
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1)
		goto fail;
	return ctx;
fail:
	err_set(err, err_len, "TLS setup failed: %s",
	    ossl_reason(r, sizeof(r)));
	SSL_CTX_free(ctx);
	return NULL;
}

static API_WUR int
tls_write_all(SSL *ssl, const char *buf, size_t len)
{
	size_t done = 0, w;

	while (done < len) {
		if (SSL_write_ex(ssl, buf + done, len - done, &w) != 1)
			return -1;
		done += w;
	}
	return 0;
}

/* Reads until EOF into a new buffer *out (wiped when freed). */
static API_WUR int
tls_read_all(SSL *ssl, buf_t **out, char *err, size_t err_len)
{
	buf_t *b = buf_new(CLI_READ_MAX);
	uint8_t *at;
	size_t got, room;
	int e;

	*out = NULL;
	if (b == NULL) {
		err_set(err, err_len, "out of memory");
		return -1;
	}
	for (;;) {
		if ((room = CLI_READ_MAX - buf_len(b)) == 0) {
			err_set(err, err_len,
			    "the response is larger than "
			    "16 MiB");
			goto fail;
		}
		if (room > CLI_READ_CHUNK)
			room = CLI_READ_CHUNK;
		if (buf_reserve(b, room, &at) != 0) {
			err_set(err, err_len, "out of memory");
			goto fail;
		}
		if (SSL_read_ex(ssl, at, room, &got) == 1) {
			buf_commit(b, got);
			continue;
		}
		e = SSL_get_error(ssl, 0);
		/* SSL_OP_IGNORE_UNEXPECTED_EOF: a bare EOF is ZERO_RETURN;
		 * Content-Length still catches a truncated body. */
		if (e == SSL_ERROR_ZERO_RETURN)
			break;
		if (e == SSL_ERROR_SYSCALL && errno == 0)
			break; /* EOF without close_notify */
		err_set(err, err_len, "reading the response failed: %s",
		    e == SSL_ERROR_SYSCALL && errno != 0 ? strerror(errno) :
		                                           "TLS error");
		goto fail;
	}
	*out = b;
	return 0;
fail:
	buf_free(b);
	return -1;
}

static const char *
find_head_end(const char *buf, size_t len)
{
	size_t i;

	for (i = 0; i + 3 < len; i++)
		if (memcmp(buf + i, "\r\n\r\n", 4) == 0)
			return buf + i;
	return NULL;
}

/* Header value of name in [head, end) (lines separated by CRLF), or NULL. */
static const char *
header_value(const char *head, const char *end, const char *name, size_t *vlen)
{
	size_t nlen = strlen(name);
	const char *line = strstr(head, "\r\n");

	while (line != NULL && line < end) {
		const char *l = line + 2, *eol, *v;

		eol = strstr(l, "\r\n");
		if (eol == NULL || eol > end)
			eol = end;
		if ((size_t)(eol - l) > nlen &&
		    strncasecmp(l, name, nlen) == 0 && l[nlen] == ':') {
			v = l + nlen + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*vlen = (size_t)(eol - v);
			while (*vlen > 0 &&
			    (v[*vlen - 1] == ' ' || v[*vlen - 1] == '\t'))
				(*vlen)--;
			return v;
		}
		line = eol < end ? eol : NULL;
	}
	return NULL;
}

/* Decodes a chunked body into out; 0, -1 if malformed or truncated (or
 * out of memory), -2 if larger than CLI_RESP_MAX. */
static API_WUR int
dechunk(const char *in, size_t len, buf_t *out)
{
	size_t i = 0;

	for (;;) {
		unsigned long long sz = 0;
		size_t digits = 0;

		while (i < len && in[i] != '\0' &&
		    strchr("0123456789abcdefABCDEF", in[i]) != NULL) {
			int c = (unsigned char)in[i];
			unsigned d = (unsigned)(c <= '9' ?
			        c - '0' :
			        (c | 0x20) - 'a' + 10);

			if (++digits > 8)
				return -1;
			sz = sz * 16 + d;
			i++;
		}
		if (digits == 0)
			return -1;
		while (i < len && in[i] != '\n') /* chunk extensions */
			i++;
		if (i >= len)
			return -1;
		i++;
		if (sz == 0)
			return 0;
		if (sz > CLI_RESP_MAX - buf_len(out))
			return -2;
		if (sz > len - i || buf_put(out, in + i, (size_t)sz) != 0)
			return -1;
		i += (size_t)sz;
		if (i + 2 > len || in[i] != '\r' || in[i + 1] != '\n')
			return -1;
		i += 2;
	}
}

/* The body after the head: de-chunked or cut to Content-Length. */
static API_WUR int
response_body(const char *raw, size_t raw_len, const char *head_end,
    buf_t **out, char *err, size_t err_len)
{
	const char *v, *start = head_end + 4;
	size_t vlen, blen, avail = raw_len - (size_t)(start - raw);
	buf_t *body = NULL;
	char num[24];
	uint64_t cl;
	int dc;

	blen = avail;
	v = header_value(raw, head_end, "Transfer-Encoding", &vlen);
	if (v != NULL && vlen == 7 && strncasecmp(v, "chunked", 7) == 0) {
		if ((body = buf_new(CLI_RESP_MAX)) == NULL)
			goto nomem;
		if ((dc = dechunk(start, avail, body)) != 0) {
			buf_free(body);
			err_set(err, err_len,
			    dc == -2 ? "the response is "
			               "larger than 16 MiB" :
			               "malformed HTTP response");
			return -1;
		}
		*out = body;
		return 0;
	}
	v = header_value(raw, head_end, "Content-Length", &vlen);
	if (v != NULL) {
		if (vlen == 0 || vlen >= sizeof(num)) {
			err_set(err, err_len, "malformed HTTP response");
			return -1;
		}
		memcpy(num, v, vlen);
		num[vlen] = '\0';
		if (parse_u64(num, avail, &cl) != 0) {
			err_set(err, err_len, "the response was truncated");
			return -1;
		}
		blen = (size_t)cl;
	}
	if (blen > CLI_RESP_MAX) {
		err_set(err, err_len, "the response is larger than 16 MiB");
		return -1;
	}
	if ((body = buf_new(blen + 1)) == NULL ||
	    buf_put(body, start, blen) != 0)
		goto nomem;
	*out = body;
	return 0;
nomem:
	buf_free(body);
	err_set(err, err_len, "out of memory");
	return -1;
}

/* rq->www_auth gets the head's WWW-Authenticate value, if rq wants it. */
static void
copy_www_auth(const struct cli_request *rq, const char *raw,
    const char *head_end)
{
	const char *v;
	size_t vlen = 0;

	if (rq->www_auth == NULL || rq->www_auth_cap == 0)
		return;
	v = header_value(raw, head_end, "WWW-Authenticate", &vlen);
	if (v == NULL)
		vlen = 0;
	if (vlen >= rq->www_auth_cap)
		vlen = rq->www_auth_cap - 1;
	if (vlen > 0)
		memcpy(rq->www_auth, v, vlen);
	rq->www_auth[vlen] = '\0';
}

/* Splits a raw response into its status and a new body buffer. */
static API_WUR int
parse_response(const struct cli_request *rq, const buf_t *rawb, int *status,
    buf_t **body, char *err, size_t err_len)
{
	const char *raw = buf_str(rawb), *head_end;
	size_t raw_len = buf_len(rawb);

	head_end = find_head_end(raw, raw_len);
	if (head_end == NULL || (size_t)(head_end - raw) > CLI_HEAD_MAX ||
	    raw_len < 12 || strncmp(raw, "HTTP/1.", 7) != 0 || raw[8] != ' ' ||
	    raw[9] < '1' || raw[9] > '5' || raw[10] < '0' || raw[10] > '9' ||
	    raw[11] < '0' || raw[11] > '9') {
		err_set(err, err_len, "malformed HTTP response");
		return -1;
	}
	if (response_body(raw, raw_len, head_end, body, err, err_len) != 0)
		return -1;
	copy_www_auth(rq, raw, head_end);
	*status = (raw[9] - '0') * 100 + (raw[10] - '0') * 10 + (raw[11] - '0');
	return 0;
}

static API_WUR int
request_ok(const struct cli_request *rq)
{
	return rq->path[0] == '/' && strpbrk(rq->path, "\r\n ") == NULL &&
	    strpbrk(rq->method, "\r\n ") == NULL &&
	    (rq->bearer == NULL || strpbrk(rq->bearer, "\r\n") == NULL) &&
	    (rq->content_type == NULL ||
	        strpbrk(rq->content_type, "\r\n") == NULL);
}

/* A TLS connection to u, verified; *ssl_out owns the socket from then on
 * (ctx too: freed with it). */
static API_WUR int
tls_open(const struct url *u, const struct cli_request *rq, SSL **ssl_out,
    int *fd_out, char *err, size_t err_len)
{
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	char reason[160];
	long vr;
	int rc = -1;

	*ssl_out = NULL;
	*fd_out = -1;
	if ((ctx = tls_ctx_new(rq->ca_file, err, err_len)) == NULL)
		return -1;
	if ((ssl = SSL_new(ctx)) == NULL)
		goto tls_fail;
	if (u->is_ip) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
		        u->host) != 1)
			goto tls_fail;
	} else if (SSL_set1_host(ssl, u->host) != 1 ||
	    SSL_set_tlsext_host_name(ssl, u->host) != 1)
		goto tls_fail;
	if ((*fd_out = tcp_connect(u, rq, err, err_len)) < 0)
		goto out;
	if (SSL_set_fd(ssl, *fd_out) != 1)
		goto tls_fail;
	if (SSL_connect(ssl) != 1) {
		vr = SSL_get_verify_result(ssl);
		if (vr != X509_V_OK)
			err_set(err, err_len,
			    "TLS: the vault's certificate "
			    "is not trusted: %s (host %s)",
			    X509_verify_cert_error_string(vr), u->host);
		else
			err_set(err, err_len,
			    "TLS handshake with %s failed: "
			    "%s",
			    u->host, ossl_reason(reason, sizeof(reason)));
		goto out;
	}
	*ssl_out = ssl;
	ssl = NULL;
	rc = 0;
	goto out;
tls_fail:
	err_set(err, err_len, "TLS setup failed: %s",
	    ossl_reason(reason, sizeof(reason)));
out:
	SSL_free(ssl);
	SSL_CTX_free(ctx); /* the SSL holds its own reference */
	return rc;
}

/* The request line and headers. */
static API_WUR int
request_head(const struct cli_request *rq, const struct url *u, buf_t *h)
{
	int is443 = strcmp(u->port, "443") == 0;

	if (buf_putf(h,
	        "%s %s%s HTTP/1.1\r\nHost: %s%s%s%s%s\r\n"
	        "User-Agent: p11vault-cli\r\nAccept: application/json\r\n",
	        rq->method, u->base, rq->path, u->is_ip6 ? "[" : "", u->host,
	        u->is_ip6 ? "]" : "", is443 ? "" : ":",
	        is443 ? "" : u->port) != 0)
		return -1;
	if (rq->bearer != NULL &&
	    buf_putf(h, "Authorization: Bearer %s\r\n", rq->bearer) != 0)
		return -1;
	if (rq->content_type != NULL &&
	    buf_putf(h, "Content-Type: %s\r\n", rq->content_type) != 0)
		return -1;
	return buf_putf(h, "Content-Length: %zu\r\nConnection: close\r\n\r\n",
	           rq->body != NULL ? rq->body_len : 0) == 0 ?
	    0 :
	    -1;
}

int
cli_https(const struct cli_request *rq, int *status, buf_t **resp, char *err,
    size_t err_len)
{
	struct url u;
	SSL *ssl = NULL;
	buf_t *head = NULL, *raw = NULL;
	int fd = -1, rc = -1;

	*resp = NULL;
	*status = 0;
	ERR_clear_error();
	if (url_parse(rq->base_url, &u, err, err_len) != 0)
		goto out;
	if (!request_ok(rq)) {
		err_set(err, err_len, "refusing a malformed request");
		goto out;
	}
	if ((head = buf_new(CLI_HEAD_MAX + CLI_PATH_MAX)) == NULL ||
	    request_head(rq, &u, head) != 0) {
		err_set(err, err_len, "the request is too long");
		goto out;
	}
	if (tls_open(&u, rq, &ssl, &fd, err, err_len) != 0)
		goto out;
	if (tls_write_all(ssl, buf_str(head), buf_len(head)) != 0 ||
	    (rq->body != NULL && rq->body_len > 0 &&
	        tls_write_all(ssl, rq->body, rq->body_len) != 0)) {
		err_set(err, err_len, "sending the request to %s failed",
		    u.host);
		goto out;
	}
	if (tls_read_all(ssl, &raw, err, err_len) != 0 ||
	    parse_response(rq, raw, status, resp, err, err_len) != 0)
		goto out;
	rc = 0;
out:
	if (ssl != NULL) {
		(void)SSL_shutdown(ssl);
		SSL_free(ssl);
	}
	if (fd >= 0)
		close(fd);
	buf_free(head);
	buf_free(raw);
	ERR_clear_error();
	return rc;
}

char *
cli_pct_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len = strlen(s), i, o = 0;
	char *out;

	if (len > (SIZE_MAX - 1) / 3)
		return NULL;
	if ((out = malloc(len * 3 + 1)) == NULL)
		return NULL;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~')
			out[o++] = (char)c;
		else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}
