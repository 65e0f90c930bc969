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
#include <stdarg.h>
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

#include "api/api.h"

#define CLI_RESP_MAX (16u * 1024 * 1024)   /* body cap */
#define CLI_HEAD_MAX (64u * 1024)          /* status line + headers cap */
#define CLI_HOST_MAX 255
/* raw bytes read: headers + a chunked body's framing + the body */
#define CLI_READ_MAX (CLI_RESP_MAX + CLI_RESP_MAX / 8 + CLI_HEAD_MAX)
#define CLI_PATH_MAX 4096
#define CLI_IO_TIMEOUT_SECS 30


struct url {
	char host[CLI_HOST_MAX + 1];   /* without brackets */
	char port[8];
	char base[CLI_PATH_MAX];       /* path prefix, no trailing slash */
	int is_ip;
	int is_ip6;
};

static void __attribute__((format(printf, 3, 4)))
set_err(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (err == NULL || err_len == 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
	if (n < 0)
		err[0] = '\0';
}

static const char *
ossl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		return "TLS error";
	ERR_error_string_n(e, buf, len);
	return buf;
}

/* https://host[:port][/base]; IPv6 as [addr]. No userinfo, query, fragment. */
static int
url_parse(const char *s, struct url *u, char *err, size_t err_len)
{
	const char *p, *host_end, *path;
	size_t hlen, plen;
	unsigned char addr[16];
	long port = 443;

	memset(u, 0, sizeof(*u));
	if (strncasecmp(s, "https://", 8) != 0) {
		set_err(err, err_len, "the vault URL must start with https:// "
		    "(got '%.64s')", s);
		return -1;
	}
	p = s + 8;
	path = p + strcspn(p, "/?#");
	if (*path == '?' || *path == '#' || memchr(p, '@',
	    (size_t)(path - p)) != NULL) {
		set_err(err, err_len, "unsupported vault URL '%.64s'", s);
		return -1;
	}
	if (*p == '[') {
		host_end = memchr(p, ']', (size_t)(path - p));
		if (host_end == NULL)
			goto bad;
		hlen = (size_t)(host_end - p - 1);
		if (hlen == 0 || hlen > CLI_HOST_MAX)
			goto bad;
		memcpy(u->host, p + 1, hlen);
		u->host[hlen] = '\0';
		if (inet_pton(AF_INET6, u->host, addr) != 1)
			goto bad;
		u->is_ip = u->is_ip6 = 1;
		p = host_end + 1;
	} else {
		host_end = p + strcspn(p, ":/");
		if (host_end > path)
			host_end = path;
		hlen = (size_t)(host_end - p);
		if (hlen == 0 || hlen > CLI_HOST_MAX)
			goto bad;
		memcpy(u->host, p, hlen);
		u->host[hlen] = '\0';
		if (strspn(u->host, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != hlen)
			goto bad;
		u->is_ip = inet_pton(AF_INET, u->host, addr) == 1;
		p = host_end;
	}
	if (*p == ':') {
		char *end;

		errno = 0;
		port = strtol(p + 1, &end, 10);
		if (errno != 0 || end == p + 1 || end != path || port < 1 ||
		    port > 65535)
			goto bad;
	} else if (p != path)
		goto bad;
	if (snprintf(u->port, sizeof(u->port), "%ld", port) < 0)
		goto bad;
	plen = strlen(path);
	while (plen > 0 && path[plen - 1] == '/')
		plen--;
	if (plen >= sizeof(u->base))
		goto bad;
	memcpy(u->base, path, plen);
	u->base[plen] = '\0';
	return 0;
bad:
	set_err(err, err_len, "malformed vault URL '%.64s'", s);
	return -1;
}

static int
tcp_connect(const struct url *u, char *err, size_t err_len)
{
	struct addrinfo hints, *res = NULL, *ai;
	struct timeval tv = { CLI_IO_TIMEOUT_SECS, 0 };
	int fd = -1, rc, saved = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = u->is_ip ? AI_NUMERICHOST : 0;
	rc = getaddrinfo(u->host, u->port, &hints, &res);
	if (rc != 0) {
		set_err(err, err_len, "cannot resolve %s: %s", u->host,
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
		set_err(err, err_len, "cannot connect to %s port %s: %s",
		    u->host, u->port,
		    strerror(saved != 0 ? saved : ECONNREFUSED));
	return fd;
}

static SSL_CTX *
tls_ctx_new(const char *ca_file, char *err, size_t err_len)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char r[160];

	if (ctx == NULL) {
		set_err(err, err_len, "TLS setup failed: %s",
		    ossl_reason(r, sizeof(r)));
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
		goto fail;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			set_err(err, err_len, "cannot load the CA file %s: %s",
			    ca_file, ossl_reason(r, sizeof(r)));
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1)
		goto fail;
	return ctx;
fail:
	set_err(err, err_len, "TLS setup failed: %s",
	    ossl_reason(r, sizeof(r)));
	SSL_CTX_free(ctx);
	return NULL;
}

static int
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

/* Reads until EOF into *buf (wiped on every reallocation). */
static int
tls_read_all(SSL *ssl, char **buf, size_t *len, char *err, size_t err_len)
{
	size_t cap = 16384, n = 0, got;
	char *b = malloc(cap + 1), *nb;
	int e;

	if (b == NULL)
		goto nomem;
	for (;;) {
		if (n == cap) {
			size_t ncap = cap * 2;

			if (cap >= CLI_READ_MAX) {
				set_err(err, err_len, "the response is larger "
				    "than 16 MiB");
				goto fail;
			}
			if (ncap > CLI_READ_MAX)
				ncap = CLI_READ_MAX;
			nb = OPENSSL_clear_realloc(b, cap + 1, ncap + 1);
			if (nb == NULL)
				goto nomem;
			b = nb;
			cap = ncap;
		}
		if (SSL_read_ex(ssl, b + n, cap - n, &got) == 1) {
			n += got;
			continue;
		}
		e = SSL_get_error(ssl, 0);
		/* SSL_OP_IGNORE_UNEXPECTED_EOF: a bare EOF is ZERO_RETURN;
		 * Content-Length still catches a truncated body. */
		if (e == SSL_ERROR_ZERO_RETURN)
			break;
		if (e == SSL_ERROR_SYSCALL && errno == 0)
			break;          /* EOF without close_notify */
		set_err(err, err_len, "reading the response failed: %s",
		    e == SSL_ERROR_SYSCALL && errno != 0 ? strerror(errno) :
		    "TLS error");
		goto fail;
	}
	b[n] = '\0';
	*buf = b;
	*len = n;
	return 0;
nomem:
	set_err(err, err_len, "out of memory");
fail:
	if (b != NULL)
		OPENSSL_clear_free(b, cap + 1);
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
header_value(const char *head, const char *end, const char *name,
    size_t *vlen)
{
	size_t nlen = strlen(name);
	const char *line = strstr(head, "\r\n");

	while (line != NULL && line < end) {
		const char *l = line + 2, *eol, *v;

		eol = strstr(l, "\r\n");
		if (eol == NULL || eol > end)
			eol = end;
		if ((size_t)(eol - l) > nlen && strncasecmp(l, name, nlen) == 0 &&
		    l[nlen] == ':') {
			v = l + nlen + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*vlen = (size_t)(eol - v);
			while (*vlen > 0 && (v[*vlen - 1] == ' ' ||
			    v[*vlen - 1] == '\t'))
				(*vlen)--;
			return v;
		}
		line = eol < end ? eol : NULL;
	}
	return NULL;
}

/* Decodes a chunked body in place; 0, -1 if malformed or truncated, -2 if
 * larger than CLI_RESP_MAX. */
static int
dechunk(char *body, size_t len, size_t *out_len)
{
	size_t in = 0, out = 0;

	for (;;) {
		unsigned long long sz = 0;
		size_t digits = 0;

		while (in < len && strchr("0123456789abcdefABCDEF",
		    body[in]) != NULL && body[in] != '\0') {
			int c = body[in];
			unsigned d = (unsigned)(c <= '9' ? c - '0' :
			    (c | 0x20) - 'a' + 10);

			if (++digits > 8)
				return -1;
			sz = sz * 16 + d;
			in++;
		}
		if (digits == 0)
			return -1;
		while (in < len && body[in] != '\n')   /* chunk extensions */
			in++;
		if (in >= len)
			return -1;
		in++;
		if (sz == 0)
			break;
		if (sz > CLI_RESP_MAX - out)
			return -2;
		if (sz > len - in)
			return -1;
		memmove(body + out, body + in, (size_t)sz);
		out += (size_t)sz;
		in += (size_t)sz;
		if (in + 2 > len || body[in] != '\r' || body[in + 1] != '\n')
			return -1;
		in += 2;
	}
	*out_len = out;
	return 0;
}

/* Splits a raw response into status and a freshly allocated body. */
static int
parse_response(char *raw, size_t raw_len, int *status, char **body_out,
    size_t *body_len_out, char *err, size_t err_len)
{
	const char *head_end, *v;
	char *body = NULL;
	size_t vlen, blen, avail;
	int st, dc;

	head_end = find_head_end(raw, raw_len);
	if (head_end == NULL || (size_t)(head_end - raw) > CLI_HEAD_MAX)
		goto bad;
	if (raw_len < 12 || strncmp(raw, "HTTP/1.", 7) != 0 || raw[8] != ' ' ||
	    raw[9] < '1' || raw[9] > '5' || raw[10] < '0' || raw[10] > '9' ||
	    raw[11] < '0' || raw[11] > '9')
		goto bad;
	st = (raw[9] - '0') * 100 + (raw[10] - '0') * 10 + (raw[11] - '0');
	avail = raw_len - (size_t)(head_end + 4 - raw);
	blen = avail;

	v = header_value(raw, head_end, "Transfer-Encoding", &vlen);
	if (v != NULL && vlen == 7 && strncasecmp(v, "chunked", 7) == 0) {
		if ((body = malloc(avail + 1)) == NULL)
			goto nomem;
		memcpy(body, head_end + 4, avail);
		if ((dc = dechunk(body, avail, &blen)) != 0) {
			OPENSSL_clear_free(body, avail + 1);
			if (dc == -2)
				goto too_large;
			goto bad;
		}
		memset(body + blen, 0, avail + 1 - blen);
	} else {
		v = header_value(raw, head_end, "Content-Length", &vlen);
		if (v != NULL) {
			char num[24], *end;
			unsigned long long cl;

			if (vlen == 0 || vlen >= sizeof(num))
				goto bad;
			memcpy(num, v, vlen);
			num[vlen] = '\0';
			errno = 0;
			cl = strtoull(num, &end, 10);
			if (errno != 0 || *end != '\0' || num[0] == '-' ||
			    cl > avail) {
				set_err(err, err_len, "the response was "
				    "truncated");
				return -1;
			}
			blen = (size_t)cl;
		}
		if ((body = malloc(blen + 1)) == NULL)
			goto nomem;
		memcpy(body, head_end + 4, blen);
		body[blen] = '\0';
	}
	if (blen > CLI_RESP_MAX) {
		OPENSSL_clear_free(body, blen + 1);
		goto too_large;
	}
	*status = st;
	*body_out = body;
	*body_len_out = blen;
	return 0;
too_large:
	set_err(err, err_len, "the response is larger than 16 MiB");
	return -1;
nomem:
	set_err(err, err_len, "out of memory");
	return -1;
bad:
	set_err(err, err_len, "malformed HTTP response");
	return -1;
}

/*
 * One request: method base_url+path (path starts with '/', may carry a
 * query). bearer and content_type may be NULL. On 0, *status and a
 * malloc'd NUL-terminated *resp_body (the caller wipes and frees it).
 */
int
cli_https(const char *base_url, const char *ca_file, const char *method,
    const char *path, const char *bearer, const char *content_type,
    const char *body, size_t body_len, int *status, char **resp_body,
    size_t *resp_len, char *err, size_t err_len)
{
	struct url u;
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	char *head = NULL, *raw = NULL, hostport[CLI_HOST_MAX + 16];
	char reason[160];
	size_t head_cap = 0, raw_len = 0;
	int fd = -1, n, connected = 0, rc = -1;
	long vr;

	*resp_body = NULL;
	*resp_len = 0;
	*status = 0;
	ERR_clear_error();
	if (url_parse(base_url, &u, err, err_len) != 0)
		goto out;
	if (path[0] != '/' || strpbrk(path, "\r\n ") != NULL ||
	    strpbrk(method, "\r\n ") != NULL ||
	    (bearer != NULL && strpbrk(bearer, "\r\n") != NULL) ||
	    (content_type != NULL && strpbrk(content_type, "\r\n") != NULL)) {
		set_err(err, err_len, "refusing a malformed request");
		goto out;
	}
	n = snprintf(hostport, sizeof(hostport), "%s%s%s%s%s",
	    u.is_ip6 ? "[" : "", u.host, u.is_ip6 ? "]" : "",
	    strcmp(u.port, "443") != 0 ? ":" : "",
	    strcmp(u.port, "443") != 0 ? u.port : "");
	if (n < 0 || (size_t)n >= sizeof(hostport))
		goto out;

	if ((ctx = tls_ctx_new(ca_file, err, err_len)) == NULL)
		goto out;
	if ((ssl = SSL_new(ctx)) == NULL) {
		set_err(err, err_len, "TLS setup failed: %s",
		    ossl_reason(reason, sizeof(reason)));
		goto out;
	}
	if (u.is_ip) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
		    u.host) != 1)
			goto tls_fail;
	} else {
		if (SSL_set1_host(ssl, u.host) != 1 ||
		    SSL_set_tlsext_host_name(ssl, u.host) != 1)
			goto tls_fail;
	}
	if ((fd = tcp_connect(&u, err, err_len)) < 0)
		goto out;
	if (SSL_set_fd(ssl, fd) != 1)
		goto tls_fail;
	if (SSL_connect(ssl) != 1) {
		vr = SSL_get_verify_result(ssl);
		if (vr != X509_V_OK)
			set_err(err, err_len, "TLS: the vault's certificate "
			    "is not trusted: %s (host %s)",
			    X509_verify_cert_error_string(vr), u.host);
		else
			set_err(err, err_len, "TLS handshake with %s failed: "
			    "%s", u.host, ossl_reason(reason, sizeof(reason)));
		goto out;
	}
	connected = 1;

	head_cap = strlen(method) + strlen(u.base) + strlen(path) +
	    strlen(hostport) + (bearer != NULL ? strlen(bearer) : 0) +
	    (content_type != NULL ? strlen(content_type) : 0) + 256;
	if ((head = malloc(head_cap)) == NULL) {
		set_err(err, err_len, "out of memory");
		goto out;
	}
	n = snprintf(head, head_cap,
	    "%s %s%s HTTP/1.1\r\n"
	    "Host: %s\r\n"
	    "User-Agent: p11vault-cli\r\n"
	    "Accept: application/json\r\n"
	    "%s%s%s"
	    "%s%s%s"
	    "Content-Length: %zu\r\n"
	    "Connection: close\r\n\r\n",
	    method, u.base, path, hostport,
	    bearer != NULL ? "Authorization: Bearer " : "",
	    bearer != NULL ? bearer : "", bearer != NULL ? "\r\n" : "",
	    content_type != NULL ? "Content-Type: " : "",
	    content_type != NULL ? content_type : "",
	    content_type != NULL ? "\r\n" : "", body != NULL ? body_len : 0);
	if (n < 0 || (size_t)n >= head_cap)
		goto out;
	if (tls_write_all(ssl, head, (size_t)n) != 0 ||
	    (body != NULL && body_len > 0 &&
	    tls_write_all(ssl, body, body_len) != 0)) {
		set_err(err, err_len, "sending the request to %s failed",
		    u.host);
		goto out;
	}
	if (tls_read_all(ssl, &raw, &raw_len, err, err_len) != 0)
		goto out;
	if (parse_response(raw, raw_len, status, resp_body, resp_len, err,
	    err_len) != 0)
		goto out;
	rc = 0;
	goto out;
tls_fail:
	set_err(err, err_len, "TLS setup failed: %s",
	    ossl_reason(reason, sizeof(reason)));
out:
	if (ssl != NULL) {
		if (connected)
			(void)SSL_shutdown(ssl);
		SSL_free(ssl);
	}
	SSL_CTX_free(ctx);
	if (fd >= 0)
		close(fd);
	if (head != NULL)
		OPENSSL_clear_free(head, head_cap);
	if (raw != NULL)
		OPENSSL_clear_free(raw, raw_len + 1);
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
