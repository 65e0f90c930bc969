/*
 * overload.c — the bench's load generator for the overload rows: many
 * keep-alive HTTPS connections, opened at a bounded rate, each in a closed
 * loop, honouring the server's Retry-After / x-ms-retry-after-ms on a
 * refusal as the Azure SDKs do, with the latencies of admitted (200) and
 * refused (429) answers kept apart.
 *
 * Owns: N client connections (epoll, non-blocking OpenSSL, 1 or 2 load
 * threads), optionally one more connection on a thread of its own with a
 * second bearer token (the "second identity", closed loop), and one JSON
 * line on stdout. Must never: be linked into the product.
 *
 * Usage: overload [options] URL        (URL: https://HOST:PORT/PATH?QUERY)
 *   -c N        connections [8]
 *   -d SECONDS  measured time, after the ramp and the warm-up [8]
 *   -w SECONDS  warm-up after the ramp, not measured [1]
 *   -r N/MS     ramp: at most N new connections per MS ms [200/100]
 *   -t THREADS  load threads, 1 or 2 [1]
 *   -m METHOD   [POST]          -b BODY   request body [none]
 *   -a CAFILE   the CA to trust (the peer is verified, with its IP/name)
 *   -p PID[,PID...]  server processes: VmRSS and Threads summed, sampled at
 *               the end of the measured time, all connections still open
 *   -T SECONDS  a request unanswered this long counts as a timeout [10]
 *   -2          the second identity: one more connection, same request,
 *               its own token (BENCH_TOKEN2), its own figures
 *   -i          ignore Retry-After (ask again at once, as wrk does)
 * Environment: BENCH_TOKEN (bearer token of the load), BENCH_TOKEN2.
 *
 * A request's latency is from its first write to the last byte of its
 * answer; the wait a Retry-After imposes before it is not in it. Answers
 * completed inside the measured window are counted; the rates divide by
 * the window. The ramp ends when every connection is up (at most 30 s
 * past its nominal time: "established_at_start" says how many were);
 * a connect or handshake unfinished after -T counts in
 * "connect_failures" and is tried again. Prints one line (the counts of
 * "established" and "open_at_end" include the second identity's):
 *   {"conns":..,"ok":..,"ok_rps":..,"ok_p50_ms":..,"ok_p99_ms":..,
 *    "refused":..,"refused_p99_ms":..,"refused_max_ms":..,"other":..,
 *    "statuses":{..},"errors":..,"rss_kib":..,"probe":{..},...}
 * Exit 0 when the run completed (whatever the server answered), 1 when
 * it could not run, 2 on bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define OV_THREADS_MAX 2
#define OV_BUF0 4096
#define OV_RESP_MAX (1024 * 1024)
#define OV_EVENTS 256
#define OV_TICK_MS 100
#define OV_DEFAULT_RETRY_MS 1000
#define OV_STATUS_MAX 600

enum cstate {
	C_DOWN,    /* not open: the ramp (re)opens it */
	C_CONNECT, /* TCP connect in progress */
	C_HANDSHAKE,
	C_WRITE, /* the request is being written */
	C_READ,  /* waiting for / reading the answer */
	C_WAIT,  /* Retry-After: in the timer heap until t_wake */
};

/* latencies in microseconds */
struct lat {
	uint32_t *v;
	size_t n, cap;
};

struct stats {
	uint64_t ok, refused, other, errors, timeouts, reconnects, connfail;
	uint64_t closed_by_server, refused_no_retry;
	uint64_t status[OV_STATUS_MAX];
	struct lat ok_lat, ref_lat, retry_ms;
	struct lat hs_lat; /* first connect to handshake done, every run */
};

struct worker;

struct conn {
	struct worker *w;
	int fd;
	SSL *ssl;
	enum cstate st;
	uint32_t events; /* registered with epoll */
	int ever;        /* was established once */
	uint64_t t_send, t_wake;
	size_t heap_i;
	char *buf;
	size_t len, cap;
};

struct worker {
	pthread_t th;
	int ep;
	int probe;
	struct conn *c;
	size_t n;
	size_t ramp_n; /* new connections per tick */
	uint64_t ramp_ns;
	const char *req;
	size_t req_len;
	struct conn **heap;
	size_t hn;
	struct stats st;
};

/* ---- settings and the run's shared clock ---- */

static struct sockaddr_storage peer;
static socklen_t peer_len;
static char host[256], hostport[300], path[4096];
static SSL_CTX *ctx;
static uint64_t req_timeout_ns = 10ull * 1000000000ull;
static int ignore_retry;
static char last_tls_error[256]; /* for the message when nothing connects */
static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;

static atomic_uint_fast64_t t_start, t_end; /* 0: not yet known */
static atomic_int stop;
static atomic_long established, open_now;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
die(const char *what)
{
	fprintf(stderr, "overload: %s\n", what);
	exit(1);
}

static void
lat_add(struct lat *l, uint64_t us)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4096;
		uint32_t *v = realloc(l->v, cap * sizeof(*v));

		if (v == NULL)
			die("out of memory");
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void
lat_merge(struct lat *to, const struct lat *from)
{
	for (size_t i = 0; i < from->n; i++)
		lat_add(to, from->v[i]);
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* ---- the timer heap (connections waiting out a Retry-After) ---- */

static void
heap_swap(struct worker *w, size_t i, size_t j)
{
	struct conn *t = w->heap[i];

	w->heap[i] = w->heap[j];
	w->heap[j] = t;
	w->heap[i]->heap_i = i;
	w->heap[j]->heap_i = j;
}

static void
heap_push(struct worker *w, struct conn *c)
{
	size_t i = w->hn++;

	w->heap[i] = c;
	c->heap_i = i;
	while (i > 0 && w->heap[(i - 1) / 2]->t_wake > w->heap[i]->t_wake) {
		heap_swap(w, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void
heap_remove(struct worker *w, size_t i)
{
	w->hn--;
	if (i == w->hn)
		return;
	heap_swap(w, i, w->hn);
	for (;;) { /* down, then up */
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < w->hn && w->heap[l]->t_wake < w->heap[m]->t_wake)
			m = l;
		if (r < w->hn && w->heap[r]->t_wake < w->heap[m]->t_wake)
			m = r;
		if (m == i)
			break;
		heap_swap(w, i, m);
		i = m;
	}
	while (i > 0 && w->heap[(i - 1) / 2]->t_wake > w->heap[i]->t_wake) {
		heap_swap(w, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

/* ---- one connection ---- */

static void
set_events(struct conn *c, uint32_t ev)
{
	struct epoll_event e;

	if (c->events == ev)
		return;
	memset(&e, 0, sizeof(e));
	e.events = ev;
	e.data.ptr = c;
	if (epoll_ctl(c->w->ep, EPOLL_CTL_MOD, c->fd, &e) == 0)
		c->events = ev;
}

static void
conn_close(struct conn *c)
{
	if (c->st == C_WAIT)
		heap_remove(c->w, c->heap_i);
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	if (c->st >= C_WRITE)
		atomic_fetch_sub(&open_now, 1);
	c->st = C_DOWN;
	c->len = 0;
	c->events = 0;
}

static int
in_window(uint64_t t)
{
	uint64_t s = atomic_load(&t_start), e = atomic_load(&t_end);

	return s != 0 && t >= s && t < e;
}

/* an error that ends the connection (the ramp opens it again) */
static void
conn_fail(struct conn *c, int counted)
{
	if (counted && in_window(now_ns()))
		c->w->st.errors++;
	conn_close(c);
}

static void conn_step(struct conn *c);

static void
conn_open(struct conn *c)
{
	struct epoll_event e;
	int one = 1;

	c->fd = socket(peer.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		c->w->st.connfail++;
		return;
	}
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(&e, 0, sizeof(e));
	e.events = EPOLLOUT;
	e.data.ptr = c;
	if (epoll_ctl(c->w->ep, EPOLL_CTL_ADD, c->fd, &e) != 0) {
		close(c->fd);
		c->fd = -1;
		c->w->st.connfail++;
		return;
	}
	c->events = EPOLLOUT;
	if (c->ever)
		c->w->st.reconnects++;
	c->st = C_CONNECT;
	c->t_send = now_ns(); /* the handshake's deadline counts from here */
	if (connect(c->fd, (struct sockaddr *)&peer, peer_len) == 0) {
		conn_step(c);
	} else if (errno != EINPROGRESS) {
		c->w->st.connfail++;
		conn_close(c);
	} /* else: EPOLLOUT when it is connected */
}

/* SSL_ERROR_WANT_*: wait for the socket; anything else: the end */
static int
ssl_wait(struct conn *c, int r)
{
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		set_events(c, EPOLLIN);
		return 1;
	case SSL_ERROR_WANT_WRITE:
		set_events(c, EPOLLIN | EPOLLOUT);
		return 1;
	default:
		if (ERR_peek_error() != 0) {
			pthread_mutex_lock(&err_mu);
			ERR_error_string_n(ERR_peek_error(), last_tls_error,
			    sizeof(last_tls_error));
			pthread_mutex_unlock(&err_mu);
		}
		ERR_clear_error();
		return 0;
	}
}

static void
start_request(struct conn *c)
{
	c->st = C_WRITE;
	c->len = 0;
	c->t_send = now_ns();
	conn_step(c);
}

static int
hdr_is(const char *line, size_t n, const char *name, const char **val)
{
	size_t k = strlen(name);

	if (n <= k || line[k] != ':' || strncasecmp(line, name, k) != 0)
		return 0;
	line += k + 1;
	while (*line == ' ' || *line == '\t')
		line++;
	*val = line;
	return 1;
}

static long
num(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || v < 0)
		return -1;
	return v;
}

/*
 * One complete answer in c->buf? 1 and the status, its length, the
 * retry delay (ms, -1: none) and whether the server closes; 0: not yet;
 * -1: not an HTTP/1.1 answer this program understands.
 */
static int
parse(struct conn *c, int *status, size_t *total, long *retry_ms, int *close_)
{
	char *end, *p, *eol;
	long clen = -1, ra_s = -1, ra_ms = -1;
	const char *v;

	if (c->len < 12)
		return 0;
	c->buf[c->len] = '\0';
	end = strstr(c->buf, "\r\n\r\n");
	if (end == NULL)
		return c->len > 65536 ? -1 : 0;
	if (strncmp(c->buf, "HTTP/1.", 7) != 0 || c->buf[8] != ' ')
		return -1;
	*status = (int)num(c->buf + 9);
	if (*status < 100 || *status >= OV_STATUS_MAX)
		return -1;
	*close_ = c->buf[7] == '0';
	p = strstr(c->buf, "\r\n") + 2;
	for (; p < end + 2; p = eol + 2) {
		eol = strstr(p, "\r\n");
		*eol = '\0';
		if (hdr_is(p, (size_t)(eol - p), "Content-Length", &v))
			clen = num(v);
		else if (hdr_is(p, (size_t)(eol - p), "Retry-After", &v))
			ra_s = num(v);
		else if (hdr_is(p, (size_t)(eol - p), "x-ms-retry-after-ms",
		             &v))
			ra_ms = num(v);
		else if (hdr_is(p, (size_t)(eol - p), "Connection", &v))
			*close_ = strcasecmp(v, "close") == 0;
		else if (hdr_is(p, (size_t)(eol - p), "Transfer-Encoding", &v))
			return -1; /* the vault sends Content-Length */
		*eol = '\r';
	}
	if (clen < 0 || clen > OV_RESP_MAX)
		return -1;
	*total = (size_t)(end + 4 - c->buf) + (size_t)clen;
	/* the Azure SDKs prefer the milliseconds */
	*retry_ms = ra_ms >= 0 ? ra_ms : ra_s >= 0 ? ra_s * 1000 : -1;
	return c->len >= *total;
}

static void
answered(struct conn *c, int status, long retry_ms, int close_)
{
	struct stats *s = &c->w->st;
	uint64_t t = now_ns(), us = (t - c->t_send) / 1000;

	if (in_window(t)) {
		s->status[status]++;
		if (status == 200) {
			s->ok++;
			lat_add(&s->ok_lat, us);
		} else if (status == 429) {
			s->refused++;
			lat_add(&s->ref_lat, us);
			if (retry_ms < 0)
				s->refused_no_retry++;
			else
				lat_add(&s->retry_ms, (uint64_t)retry_ms);
		} else {
			s->other++;
		}
	}
	if (close_) {
		conn_close(c);
		return;
	}
	if (status == 429 && retry_ms < 0)
		retry_ms = OV_DEFAULT_RETRY_MS;
	if (retry_ms > 0 && !ignore_retry) {
		c->st = C_WAIT;
		c->len = 0;
		c->t_wake = t + (uint64_t)retry_ms * 1000000ull;
		heap_push(c->w, c);
		set_events(c, EPOLLIN); /* to see the server close it */
		return;
	}
	start_request(c);
}

static void
do_read(struct conn *c)
{
	for (;;) {
		int r, status = 0, close_ = 0, p;
		size_t total = 0;
		long retry_ms = -1;

		if (c->cap - c->len < 2048) {
			size_t cap = c->cap * 2;
			char *b;

			if (cap > OV_RESP_MAX + 65536) {
				conn_fail(c, 1);
				return;
			}
			b = realloc(c->buf, cap);
			if (b == NULL)
				die("out of memory");
			c->buf = b;
			c->cap = cap;
		}
		r = SSL_read(c->ssl, c->buf + c->len,
		    (int)(c->cap - c->len - 1));
		if (r <= 0) {
			if (ssl_wait(c, r))
				return;
			/* the server closed: an error only mid-answer */
			if (c->st == C_READ && c->len > 0) {
				conn_fail(c, 1);
			} else {
				if (in_window(now_ns()))
					c->w->st.closed_by_server++;
				conn_fail(c, c->st == C_READ);
			}
			return;
		}
		if (c->st == C_WAIT) { /* nothing was asked */
			conn_fail(c, 1);
			return;
		}
		c->len += (size_t)r;
		p = parse(c, &status, &total, &retry_ms, &close_);
		if (p < 0 || (p > 0 && c->len > total)) {
			conn_fail(c, 1); /* not understood, or unasked bytes */
			return;
		}
		if (p > 0) {
			answered(c, status, retry_ms, close_);
			return;
		}
	}
}

/* advances c as far as the socket lets it */
static void
conn_step(struct conn *c)
{
	int r, err = 0;
	socklen_t el = sizeof(err);

	switch (c->st) {
	case C_DOWN:
		return;
	case C_CONNECT:
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 ||
		    err != 0) {
			c->w->st.connfail++;
			conn_close(c);
			return;
		}
		c->ssl = SSL_new(ctx);
		if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
			die("SSL_new");
		if (inet_pton(AF_INET, host, &(struct in_addr){ 0 }) != 1 &&
		    inet_pton(AF_INET6, host, &(struct in6_addr){ 0 }) != 1) {
			SSL_set_tlsext_host_name(c->ssl, host);
			SSL_set1_host(c->ssl, host);
		} else {
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl),
			    host);
		}
		SSL_set_connect_state(c->ssl);
		c->st = C_HANDSHAKE;
		/* fall through */
	case C_HANDSHAKE:
		r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			if (!ssl_wait(c, r)) {
				c->w->st.connfail++;
				conn_close(c);
			}
			return;
		}
		if (!c->ever) {
			atomic_fetch_add(&established, 1);
			lat_add(&c->w->st.hs_lat,
			    (now_ns() - c->t_send) / 1000);
		}
		c->ever = 1;
		atomic_fetch_add(&open_now, 1);
		start_request(c);
		return;
	case C_WRITE:
		r = SSL_write(c->ssl, c->w->req, (int)c->w->req_len);
		if (r <= 0) {
			if (!ssl_wait(c, r))
				conn_fail(c, 1);
			return;
		}
		c->st = C_READ;
		set_events(c, EPOLLIN);
		/* the answer may be there already */
		/* FALLTHROUGH */
	case C_READ:
	case C_WAIT:
		do_read(c);
		return;
	}
}

/* ---- a load thread ---- */

static void
tick(struct worker *w, uint64_t t)
{
	size_t opened = 0;

	for (size_t i = 0; i < w->n; i++) {
		struct conn *c = &w->c[i];

		if (c->st == C_DOWN && opened < w->ramp_n) {
			conn_open(c);
			opened++;
		} else if (c->st != C_DOWN && c->st != C_WAIT &&
		    t - c->t_send > req_timeout_ns) {
			if (c->st < C_WRITE) /* connect or handshake */
				w->st.connfail++;
			else if (in_window(t))
				w->st.timeouts++;
			conn_close(c);
		}
	}
}

static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	struct epoll_event ev[OV_EVENTS];
	uint64_t next_tick = 0;

	while (!atomic_load(&stop)) {
		uint64_t t = now_ns(), wake;
		int n, ms;

		if (t >= next_tick) {
			tick(w, t);
			next_tick = t + w->ramp_ns;
		}
		while (w->hn > 0 && w->heap[0]->t_wake <= t) {
			struct conn *c = w->heap[0];

			heap_remove(w, 0);
			start_request(c);
		}
		wake = next_tick;
		if (w->hn > 0 && w->heap[0]->t_wake < wake)
			wake = w->heap[0]->t_wake;
		t = now_ns();
		ms = wake > t ? (int)((wake - t + 999999) / 1000000) : 0;
		n = epoll_wait(w->ep, ev, OV_EVENTS, ms);
		for (int i = 0; i < n; i++) {
			struct conn *c = ev[i].data.ptr;

			/* C_WAIT: only EPOLLIN is asked: the server closed */
			if (c->st != C_DOWN)
				conn_step(c);
		}
	}
	for (size_t i = 0; i < w->n; i++)
		conn_close(&w->c[i]);
	return NULL;
}

static char *
build_request(const char *method, const char *token, const char *body,
    size_t *len)
{
	size_t blen = body ? strlen(body) : 0;
	size_t cap = strlen(method) + strlen(path) + strlen(hostport) +
	    strlen(token) + blen + 256;
	char *r = malloc(cap);
	int n;

	if (r == NULL)
		die("out of memory");
	n = snprintf(r, cap,
	    "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n"
	    "\r\n%s",
	    method, path, hostport, token, blen, body ? body : "");
	if (n < 0 || (size_t)n >= cap)
		die("request too long");
	*len = (size_t)n;
	return r;
}

static void
worker_init(struct worker *w, size_t n, size_t ramp_n, uint64_t ramp_ns,
    const char *req, size_t req_len)
{
	memset(w, 0, sizeof(*w));
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	w->c = calloc(n, sizeof(*w->c));
	w->heap = calloc(n, sizeof(*w->heap));
	if (w->ep < 0 || w->c == NULL || w->heap == NULL)
		die("cannot set up a load thread");
	w->n = n;
	w->ramp_n = ramp_n ? ramp_n : 1;
	w->ramp_ns = ramp_ns;
	w->req = req;
	w->req_len = req_len;
	for (size_t i = 0; i < n; i++) {
		w->c[i].w = w;
		w->c[i].fd = -1;
		w->c[i].cap = OV_BUF0;
		w->c[i].buf = malloc(OV_BUF0);
		if (w->c[i].buf == NULL)
			die("out of memory");
	}
}

static void
worker_free(struct worker *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->c[i].buf);
	free(w->c);
	free(w->heap);
	free(w->st.ok_lat.v);
	free(w->st.ref_lat.v);
	free(w->st.retry_ms.v);
	free(w->st.hs_lat.v);
	close(w->ep);
}

/* ---- the URL, the server's memory, the output ---- */

static void
parse_url(const char *url)
{
	const char *p, *slash, *colon;
	char port[16];
	struct addrinfo hints, *ai = NULL;

	if (strncmp(url, "https://", 8) != 0)
		die("the URL must be https://HOST:PORT/PATH");
	p = url + 8;
	slash = strchr(p, '/');
	if (slash == NULL)
		slash = p + strlen(p);
	if (*p == '[') { /* [v6]:port */
		colon = strchr(p, ']');
		if (colon == NULL || colon > slash)
			die("bad URL");
		snprintf(host, sizeof(host), "%.*s", (int)(colon - p - 1),
		    p + 1);
		colon = colon[1] == ':' ? colon + 1 : NULL;
	} else {
		colon = memchr(p, ':', (size_t)(slash - p));
		snprintf(host, sizeof(host), "%.*s",
		    (int)((colon ? colon : slash) - p), p);
	}
	if (colon != NULL)
		snprintf(port, sizeof(port), "%.*s", (int)(slash - colon - 1),
		    colon + 1);
	else
		snprintf(port, sizeof(port), "443");
	snprintf(hostport, sizeof(hostport), "%.*s", (int)(slash - p), p);
	snprintf(path, sizeof(path), "%s", *slash ? slash : "/");
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL)
		die("cannot resolve the URL's host");
	memcpy(&peer, ai->ai_addr, ai->ai_addrlen);
	peer_len = ai->ai_addrlen;
	freeaddrinfo(ai);
}

/* VmRSS (KiB) and Threads of each pid in a comma list, summed */
static void
sample_server(const char *pids, long *rss_kib, long *threads)
{
	char list[1024], *save = NULL, *tok;

	*rss_kib = 0;
	*threads = 0;
	snprintf(list, sizeof(list), "%s", pids);
	for (tok = strtok_r(list, ", ", &save); tok != NULL;
	     tok = strtok_r(NULL, ", ", &save)) {
		char fn[64], line[256];
		FILE *f;
		long v;

		snprintf(fn, sizeof(fn), "/proc/%s/status", tok);
		f = fopen(fn, "r");
		if (f == NULL)
			continue;
		while (fgets(line, sizeof(line), f) != NULL) {
			if (sscanf(line, "VmRSS: %ld", &v) == 1)
				*rss_kib += v;
			else if (sscanf(line, "Threads: %ld", &v) == 1)
				*threads += v;
		}
		fclose(f);
	}
}

/* nearest rank, in ms; "null" when there is no sample */
static void
put_pct(FILE *o, const char *name, struct lat *l, double p)
{
	size_t k;

	if (l->n == 0) {
		fprintf(o, ",\"%s\":null", name);
		return;
	}
	k = (size_t)((p / 100.0) * (double)l->n + 0.999999);
	k = k == 0 ? 0 : k - 1;
	if (k >= l->n)
		k = l->n - 1;
	fprintf(o, ",\"%s\":%.3f", name, l->v[k] / 1000.0);
}

static void
put_stats(FILE *o, const char *pre, struct stats *s, double secs)
{
	qsort(s->ok_lat.v, s->ok_lat.n, sizeof(uint32_t), cmp_u32);
	qsort(s->ref_lat.v, s->ref_lat.n, sizeof(uint32_t), cmp_u32);
	qsort(s->retry_ms.v, s->retry_ms.n, sizeof(uint32_t), cmp_u32);
	qsort(s->hs_lat.v, s->hs_lat.n, sizeof(uint32_t), cmp_u32);
	fprintf(o, "%s\"ok\":%llu,\"ok_rps\":%.1f", pre,
	    (unsigned long long)s->ok, (double)s->ok / secs);
	put_pct(o, "ok_p50_ms", &s->ok_lat, 50);
	put_pct(o, "ok_p99_ms", &s->ok_lat, 99);
	put_pct(o, "ok_max_ms", &s->ok_lat, 100);
	fprintf(o, ",\"refused\":%llu,\"refused_rps\":%.1f",
	    (unsigned long long)s->refused, (double)s->refused / secs);
	put_pct(o, "refused_p50_ms", &s->ref_lat, 50);
	put_pct(o, "refused_p99_ms", &s->ref_lat, 99);
	put_pct(o, "refused_max_ms", &s->ref_lat, 100);
	if (s->retry_ms.n > 0)
		fprintf(o, ",\"retry_after_ms_p50\":%u",
		    s->retry_ms.v[s->retry_ms.n / 2]);
	else
		fprintf(o, ",\"retry_after_ms_p50\":null");
	fprintf(o,
	    ",\"refused_without_retry_after\":%llu,\"other\":%llu,"
	    "\"statuses\":{",
	    (unsigned long long)s->refused_no_retry,
	    (unsigned long long)s->other);
	for (int i = 0, first = 1; i < OV_STATUS_MAX; i++) {
		if (s->status[i] == 0)
			continue;
		fprintf(o, "%s\"%d\":%llu", first ? "" : ",", i,
		    (unsigned long long)s->status[i]);
		first = 0;
	}
	fprintf(o,
	    "},\"errors\":%llu,\"timeouts\":%llu,\"closed_by_server\":%llu,"
	    "\"reconnects\":%llu,\"connect_failures\":%llu",
	    (unsigned long long)s->errors, (unsigned long long)s->timeouts,
	    (unsigned long long)s->closed_by_server,
	    (unsigned long long)s->reconnects, (unsigned long long)s->connfail);
	put_pct(o, "connect_p50_ms", &s->hs_lat, 50);
	put_pct(o, "connect_p99_ms", &s->hs_lat, 99);
	put_pct(o, "connect_max_ms", &s->hs_lat, 100);
}

static void
merge(struct stats *to, const struct stats *from)
{
	to->ok += from->ok;
	to->refused += from->refused;
	to->other += from->other;
	to->errors += from->errors;
	to->timeouts += from->timeouts;
	to->reconnects += from->reconnects;
	to->connfail += from->connfail;
	to->closed_by_server += from->closed_by_server;
	to->refused_no_retry += from->refused_no_retry;
	for (int i = 0; i < OV_STATUS_MAX; i++)
		to->status[i] += from->status[i];
	lat_merge(&to->ok_lat, &from->ok_lat);
	lat_merge(&to->ref_lat, &from->ref_lat);
	lat_merge(&to->retry_ms, &from->retry_ms);
	lat_merge(&to->hs_lat, &from->hs_lat);
}

static void
sleep_until(uint64_t t)
{
	struct timespec ts = { (time_t)(t / 1000000000ull),
		(long)(t % 1000000000ull) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	    EINTR)
		;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: overload [-c CONNS] [-d SECONDS] [-w SECONDS] "
	    "[-r N/MS] [-t 1|2] [-m METHOD] [-b BODY] [-a CAFILE] "
	    "[-p PID,...] [-T SECONDS] [-2] [-i] https://HOST:PORT/PATH\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	long conns = 8, threads = 1, ramp_n = 200, ramp_ms = 100;
	double secs = 8, warm = 1, tmo = 10;
	const char *method = "POST", *body = NULL, *ca = NULL, *pids = NULL;
	const char *token, *token2 = NULL;
	int probe = 0, opt, nw;
	struct worker w[OV_THREADS_MAX + 1];
	struct stats all;
	struct rlimit rl;
	struct rusage ru;
	char *req, *req2 = NULL;
	size_t req_len, req2_len = 0;
	uint64_t t0, t_ramped, deadline, s, e;
	long rss = 0, sthreads = 0, open_end, est_start;
	double ramp_s, cpu_s;

	while ((opt = getopt(argc, argv, "c:d:w:r:t:m:b:a:p:T:2i")) != -1) {
		switch (opt) {
		case 'c':
			conns = strtol(optarg, NULL, 10);
			break;
		case 'd':
			secs = strtod(optarg, NULL);
			break;
		case 'w':
			warm = strtod(optarg, NULL);
			break;
		case 'r':
			if (sscanf(optarg, "%ld/%ld", &ramp_n, &ramp_ms) != 2)
				usage();
			break;
		case 't':
			threads = strtol(optarg, NULL, 10);
			break;
		case 'm':
			method = optarg;
			break;
		case 'b':
			body = optarg;
			break;
		case 'a':
			ca = optarg;
			break;
		case 'p':
			pids = optarg;
			break;
		case 'T':
			tmo = strtod(optarg, NULL);
			break;
		case '2':
			probe = 1;
			break;
		case 'i':
			ignore_retry = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1 || conns < 1 || conns > 1000000 || threads < 1 ||
	    threads > OV_THREADS_MAX || secs <= 0 || warm < 0 || ramp_n < 1 ||
	    ramp_ms < 1 || tmo <= 0)
		usage();
	token = getenv("BENCH_TOKEN");
	if (token == NULL || *token == '\0')
		die("BENCH_TOKEN is not set");
	if (probe) {
		token2 = getenv("BENCH_TOKEN2");
		if (token2 == NULL || *token2 == '\0')
			die("-2 needs BENCH_TOKEN2");
	}
	req_timeout_ns = (uint64_t)(tmo * 1e9);
	parse_url(argv[optind]);
	signal(SIGPIPE, SIG_IGN);

	/* descriptors: as many as the hard limit allows */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)conns + 64) {
		fprintf(stderr,
		    "overload: %ld connections need %ld descriptors, the "
		    "limit is %llu (ulimit -Hn)\n",
		    conns, conns + 64, (unsigned long long)rl.rlim_cur);
		return 1;
	}

	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		die("SSL_CTX_new");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (ca != NULL ? SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 :
	                 SSL_CTX_set_default_verify_paths(ctx) != 1)
		die("cannot load the CA");
	req = build_request(method, token, body, &req_len);
	if (probe)
		req2 = build_request(method, token2, body, &req2_len);

	/* the load threads share the connections and the ramp */
	nw = (int)threads;
	for (int i = 0; i < nw; i++) {
		size_t n = (size_t)conns / (size_t)nw +
		    ((size_t)i < (size_t)conns % (size_t)nw);

		worker_init(&w[i], n, (size_t)(ramp_n / nw),
		    (uint64_t)ramp_ms * 1000000ull, req, req_len);
	}
	if (probe) {
		worker_init(&w[nw], 1, 1, OV_TICK_MS * 1000000ull, req2,
		    req2_len);
		w[nw].probe = 1;
	}
	t0 = now_ns();
	for (int i = 0; i < nw + probe; i++)
		if (pthread_create(&w[i].th, NULL, worker_run, &w[i]) != 0)
			die("pthread_create");

	/* the ramp: until every connection is up, or far past its time */
	deadline = t0 +
	    (uint64_t)((conns / ramp_n + 1) * ramp_ms) * 1000000ull +
	    30ull * 1000000000ull;
	while (atomic_load(&established) < conns + probe && now_ns() < deadline)
		usleep(10000);
	t_ramped = now_ns();
	est_start = atomic_load(&established);
	if (est_start == 0) {
		pthread_mutex_lock(&err_mu);
		fprintf(stderr,
		    "overload: no connection could be established in %.0f s%s%s\n",
		    (double)(t_ramped - t0) / 1e9,
		    last_tls_error[0] ? "; TLS: " : "", last_tls_error);
		return 1;
	}
	ramp_s = (double)(t_ramped - t0) / 1e9;
	s = t_ramped + (uint64_t)(warm * 1e9);
	e = s + (uint64_t)(secs * 1e9);
	atomic_store(&t_end, e);
	atomic_store(&t_start, s);
	sleep_until(e);
	/* the server's memory with every connection still open (and busy) */
	open_end = atomic_load(&open_now);
	if (pids != NULL)
		sample_server(pids, &rss, &sthreads);
	atomic_store(&stop, 1);
	for (int i = 0; i < nw + probe; i++)
		pthread_join(w[i].th, NULL);
	getrusage(RUSAGE_SELF, &ru);
	cpu_s = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;

	memset(&all, 0, sizeof(all));
	for (int i = 0; i < nw; i++)
		merge(&all, &w[i].st);
	printf(
	    "{\"conns\":%ld,\"threads\":%ld,\"ramp\":\"%ld/%ldms\","
	    "\"ramp_s\":%.3f,\"established_at_start\":%ld,"
	    "\"established\":%ld,\"open_at_end\":%ld,\"seconds\":%.3f,"
	    "\"honours_retry_after\":%s,",
	    conns, threads, ramp_n, ramp_ms, ramp_s, est_start,
	    (long)atomic_load(&established), open_end, secs,
	    ignore_retry ? "false" : "true");
	put_stats(stdout, "", &all, secs);
	if (pids != NULL)
		printf(",\"rss_kib\":%ld,\"server_threads\":%ld", rss,
		    sthreads);
	printf(",\"generator_cpu_s\":%.3f", cpu_s);
	if (probe) {
		printf(",\"probe\":{");
		put_stats(stdout, "", &w[nw].st, secs);
		printf("}");
	}
	printf("}\n");
	fflush(stdout);
	for (int i = 0; i < nw + probe; i++)
		worker_free(&w[i]);
	free(all.ok_lat.v);
	free(all.ref_lat.v);
	free(all.retry_ms.v);
	free(all.hs_lat.v);
	free(req);
	free(req2);
	SSL_CTX_free(ctx);
	return 0;
}
