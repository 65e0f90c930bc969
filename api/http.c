/*
 * http.c — libmicrohttpd glue: TLS, limits, the body cap, turning an MHD
 * connection into an api_req and an api_resp into an MHD response.
 *
 * Limits (named here, one place): body API_BODY_MAX, per-connection memory
 * HTTP_CONN_MEMORY, connections HTTP_CONN_LIMIT, idle timeout
 * HTTP_CONN_TIMEOUT, a thread's stack HTTP_THREAD_STACK. TLS
 * 1.2 and 1.3 only, AEAD ciphers only.
 *
 * Threads: an accept thread of ours takes every new connection and gives
 * it to one of two MHD daemons. The first HTTP_DIRECT_CONNS connections
 * (as many as are open at once) each get a thread of their own (MHD's
 * thread per connection) that runs its requests start to end, token
 * calls included, as a blocking client: no hand-off, the shortest path
 * for the few busy clients of a vault. Every connection beyond them goes
 * to the event-driven daemon: a few I/O threads (HTTP_IO_THREADS, MHD's
 * thread pool, each an epoll loop over its share) do TLS and HTTP; a
 * request, once its body is in, is handed to a fixed pool of work threads
 * (HTTP_WORKERS, api/workpool.c): its connection is suspended, a work
 * thread routes it (token calls, synced writes and the admission gate's
 * waits included) and resumes the connection, and the I/O thread sends
 * the answer. A key request that needs token work (parks) is checked on
 * its I/O thread first (token, access, limits, the gate): refused, it is
 * answered there; admitted, it is parked in the gate without a thread,
 * and the work thread that frees a slot takes it next (no sleeping
 * thread woken, no thread per waiter). So a connection costs memory, not a thread; a slow token
 * call or scrypt holds up no I/O (no head-of-line blocking); a request
 * the gate refuses is answered at once however many connections are
 * open. Waits for a token session are bounded by the session pool's
 * deadline. HTTP_WORKERS is more than the gate's slots and its queue can
 * hold at its default latency target, so that the gate, not this pool,
 * decides who waits and who is refused (fair shares need the caller).
 * Must never: log a header or a body (they carry tokens and plaintexts);
 * keep a request body after the request (wiped on completion); leave a
 * copy of one in libmicrohttpd's connection buffer (wiped as soon as it is
 * copied out) or free a response body unwiped (it carries DEKs and
 * plaintexts: MHD frees it through freezero_block).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#include "hsm/affinity.h"
#include "hsm/base.h"
#include "api/admit.h"
#include "api/http.h"
#include "api/workpool.h"

#define HTTP_CONN_MEMORY \
	(16 * 1024) /* MHD pool: headers, URL, the answer's headers */
#define HTTP_CONN_LIMIT 4000
#define HTTP_CONN_TIMEOUT 30
/* After HTTP_TRIM_CONNS new connections, once no connection has come for
 * HTTP_TRIM_QUIET_MS (or HTTP_TRIM_MAX_S after the last trim while they
 * keep coming), the accept thread hands malloc's free pages back to the
 * kernel (malloc_trim): a burst of TLS handshakes leaves megabytes of
 * freed handshake state between the buffers of the connections that stay,
 * which malloc keeps resident until trimmed (docs/performance.md: 2,000
 * connections opened at once held the network process at 76 or 92 MiB,
 * depending on the interleaving; 76 MiB after a trim). */
#define HTTP_TRIM_CONNS 256
#define HTTP_TRIM_QUIET_MS 250
#define HTTP_TRIM_MAX_S 10
#define HTTP_PEM_MAX (1024 * 1024) /* the certificate chain or key file */
#define HTTP_THREAD_STACK (512u * 1024)
/* I/O threads: one per CPU, within MIN..MAX. They run no token work (it
 * is parked or handed off), so more than the CPUs only adds wake-ups:
 * at 2,000 connections 8 of them served 2-4 % fewer unwraps than 2 on 2
 * CPUs (docs/performance.md) */
#define HTTP_IO_THREADS_MIN 2
#define HTTP_IO_THREADS_MAX 16
/* connections with a thread of their own (4 per CPU, within MIN..MAX):
 * more than the token's sessions, so that a few clients keep the token
 * busy with no hand-off; each costs a thread and its stack */
#define HTTP_DIRECT_MIN 16
#define HTTP_DIRECT_MAX 64
#define HTTP_LISTEN_BACKLOG 1024
/* the admission gate's slots (the token sessions) plus the waiters its
 * queue holds at the default 25 ms target (~70 at 4 slots), with room
 * for a longer admission_target_ms */
#define HTTP_WORKERS 192
/* descriptors kept free for the vault (SQLite, audit log, token files) */
#define HTTP_FD_RESERVE 128
/* all request bodies being received, together (each is <= API_BODY_MAX):
 * without it HTTP_CONN_LIMIT unfinished bodies would pin ~1.3 GiB */
#define HTTP_BODY_BUDGET (64 * 1024 * 1024)
#define HTTP_TLS_PRIORITIES \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:" \
	"+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD:" \
	"-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA"
#define SERVICE_VERSION "1.9.1046.1"

struct api_server {
	struct MHD_Daemon *daemon; /* event-driven: epoll, suspend/resume */
	struct MHD_Daemon *direct; /* a thread per connection */
	int lfd;                   /* the listening socket (ours) */
	int stop_fd;               /* an eventfd: the accept thread stops */
	int acceptor_on;
	pthread_t acceptor;
	unsigned direct_max;
	atomic_uint direct_conns; /* given to direct and not yet closed */
	struct api_ctx *ctx;
	buf_t *cert;
	char *key; /* freezero_str */
	struct workpool *pool;
	atomic_int in_flight;
	atomic_size_t body_bytes; /* capacity of all body buffers */
};

enum req_phase { PH_RECEIVING, PH_HANDED, PH_ANSWERED };

/* One request (MHD's *con_cls), from its headers to its completion. */
struct conn_state {
	struct work_item item; /* first: a work item is its conn_state */
	struct api_server *s;
	struct MHD_Connection *conn;
	atomic_int phase; /* enum req_phase */
	struct api_req q;
	struct api_resp r;
	uint8_t *body;
	size_t len;
	size_t cap;
	int too_large;
	int over_budget;
	struct timespec start;
	/* a parked request (parks): its continuation is handed to a work
	 * thread by whichever of the gate's ready and the I/O thread's
	 * suspend comes last (pending counts them down from 2) */
	struct api_park park;
	atomic_int pending;
	int counted; /* in s->in_flight */
};

/* A request in or out of the server's count of those in flight (the
 * count stop waits for; a request whose client went away is taken out
 * by on_completed). */
static void
flight_begin(struct api_server *s, struct conn_state *st)
{
	atomic_fetch_add(&s->in_flight, 1);
	st->counted = 1;
}

static void
flight_end(struct api_server *s, struct conn_state *st)
{
	if (st->counted) {
		st->counted = 0;
		atomic_fetch_sub(&s->in_flight, 1);
	}
}

static API_WUR int
body_append(struct api_server *s, struct conn_state *st, const char *data,
    size_t n)
{
	if (st->over_budget)
		return 0;
	if (st->too_large || n > API_BODY_MAX - st->len) {
		st->too_large = 1;
		return 0;
	}
	if (st->len + n > st->cap) {
		size_t ncap = st->cap ? st->cap : 4096;
		uint8_t *nb;
		while (ncap < st->len + n)
			ncap *= 2;
		if (ncap > API_BODY_MAX)
			ncap = API_BODY_MAX;
		if (atomic_fetch_add(&s->body_bytes, ncap - st->cap) +
		        (ncap - st->cap) >
		    HTTP_BODY_BUDGET) {
			atomic_fetch_sub(&s->body_bytes, ncap - st->cap);
			st->over_budget = 1;
			return 0;
		}
		nb = malloc(ncap);
		if (nb == NULL) {
			atomic_fetch_sub(&s->body_bytes, ncap - st->cap);
			return -1;
		}
		if (st->len)
			memcpy(nb, st->body, st->len);
		freezero(st->body, st->cap);
		st->body = nb;
		st->cap = ncap;
	}
	memcpy(st->body + st->len, data, n);
	st->len += n;
	return 0;
}

/*
 * Overwrites the upload data MHD handed us once it is copied (or refused)
 * and marks it processed. Casting away const is sound: upload_data points
 * into the connection's read buffer, writable memory MHD allocated from
 * the connection's pool (no object defined const), and once
 * *upload_data_size is 0 MHD never reads those bytes again, it moves its
 * read position past them. MHD offers no way to have it wipe them itself.
 */
static void
upload_consume(const char *upload_data, size_t *upload_data_size)
{
	if (*upload_data_size != 0)
		OPENSSL_cleanse((void *)(uintptr_t)upload_data,
		    *upload_data_size);
	*upload_data_size = 0;
}

static void
client_address(struct MHD_Connection *conn, char *out, size_t len)
{
	const union MHD_ConnectionInfo *ci;
	const struct sockaddr *sa;

	if (str_fmt(out, len, "unknown") != 0)
		return;
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci == NULL || ci->client_addr == NULL)
		return;
	sa = ci->client_addr;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
		    out, (socklen_t)len);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
		    &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
		    (socklen_t)len);
}

static enum MHD_Result
send_resp(struct MHD_Connection *conn, struct api_req *q, struct api_resp *r)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char buf[32];

	/* MHD calls freezero_block(r->body) when it is done with it */
	resp = MHD_create_response_from_buffer_with_free_callback(r->body_len,
	    r->body, freezero_block);
	if (resp == NULL) {
		freezero_block(r->body);
		r->body = NULL;
		return MHD_NO;
	}
	r->body = NULL;
	MHD_add_response_header(resp, "Content-Type",
	    r->content_type ? r->content_type :
	                      "application/json; charset=utf-8");
	MHD_add_response_header(resp, "x-ms-request-id", q->request_id);
	MHD_add_response_header(resp, "x-ms-keyvault-service-version",
	    SERVICE_VERSION);
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	MHD_add_response_header(resp, "Strict-Transport-Security",
	    "max-age=31536000;includeSubDomains");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (r->challenge && q->ctx)
		MHD_add_response_header(resp, "WWW-Authenticate",
		    q->ctx->challenge);
	if (r->retry_after > 0 &&
	    str_fmt(buf, sizeof(buf), "%d", r->retry_after) == 0)
		MHD_add_response_header(resp, "Retry-After", buf);
	if (r->retry_after_ms > 0 &&
	    str_fmt(buf, sizeof(buf), "%u", r->retry_after_ms) == 0)
		MHD_add_response_header(resp, "x-ms-retry-after-ms", buf);
	ret = MHD_queue_response(conn, r->status ? r->status : 500, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* The audit event and the metrics of a request that has its answer. */
static void
finish_request(struct api_req *q, struct api_resp *r,
    const struct timespec *start)
{
	struct timespec end;

	api_audit_request(q, r, start);
	clock_gettime(CLOCK_MONOTONIC, &end);
	api_metrics_observe_request(q->ctx, q->operation,
	    r->status ? r->status : 500,
	    (double)(end.tv_sec - start->tv_sec) * 1e3 +
	        (double)(end.tv_nsec - start->tv_nsec) / 1e6);
}

/* q from the connection (its strings live in MHD's pool as long as the
 * request: the connection is suspended meanwhile, never freed). */
static void
request_fill(struct api_server *s, struct conn_state *st,
    struct MHD_Connection *conn, const char *method, const char *url)
{
	struct api_req *q = &st->q;

	memset(q, 0, sizeof(*q));
	memset(&st->r, 0, sizeof(st->r));
	q->ctx = s->ctx;
	api_route_begin(q);
	q->host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
	q->method = method;
	q->path = url;
	q->api_version = MHD_lookup_connection_value(conn,
	    MHD_GET_ARGUMENT_KIND, "api-version");
	q->maxresults = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND,
	    "maxresults");
	q->skiptoken = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND,
	    "$skiptoken");
	q->odata_filter = MHD_lookup_connection_value(conn,
	    MHD_GET_ARGUMENT_KIND, "$filter");
	q->authorization = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    "Authorization");
	q->body = st->body;
	q->body_len = st->len;
	q->body_too_large = st->too_large;
	policy_uuid(q->request_id);
	client_address(conn, q->client_addr, sizeof(q->client_addr));
}

/* The audit event and metrics of st, which has its answer; its vault
 * released. */
static void
request_finish(struct conn_state *st)
{
	finish_request(&st->q, &st->r, &st->start);
	api_route_done(&st->q);
}

/* On a work thread, st answered: its I/O thread sends the answer. */
static void
request_resume(struct conn_state *st)
{
	atomic_store_explicit(&st->phase, PH_ANSWERED, memory_order_release);
	MHD_resume_connection(st->conn);
}

/* st's answer into st->r, its audit event and metrics. */
static void
request_answer(struct conn_state *st)
{
	struct api_req *q = &st->q;
	struct api_resp *r = &st->r;

	if (st->over_budget && !q->body_too_large) {
		api_resp_error(r, 503, "ServiceUnavailable",
		    "The server is busy; retry the request.");
		r->retry_after = 1;
	} else if (!vault_cluster_serving(q->ctx->vault)) {
		/* a node of a cluster whose lease is out: its caches may
		 * miss another node's write (docs/cluster.md) */
		api_resp_error(r, 503, "ServiceUnavailable",
		    "This node is not in step with the cluster; retry the "
		    "request.");
		r->retry_after = 1;
	} else if (q->body_too_large) {
		api_resp_error(r, 413, "RequestEntityTooLarge",
		    "The request body is larger than %d bytes.", API_BODY_MAX);
	} else {
		api_route(q, r);
		if (q->park != NULL && q->park->parked)
			return; /* the rest: request_continue */
	}
	request_finish(st);
}

/* On a work thread: the answer, then the connection is resumed for its
 * I/O thread to send it. */
static void
request_run(struct work_item *it)
{
	struct conn_state *st = (struct conn_state *)it;

	request_answer(st);
	request_resume(st);
}

/* On a work thread: the rest of a parked request, then as request_run. */
static void
request_continue(struct work_item *it)
{
	struct conn_state *st = (struct conn_state *)it;

	api_keys_continue(&st->q, &st->r);
	request_finish(st);
	request_resume(st);
}

/* One of the two events a parked request waits for; next: called on a
 * work thread that is about to take the next item (the gate's ready
 * from a slot's release), so no other thread need be woken. */
static void
park_release(struct conn_state *st, int next)
{
	if (atomic_fetch_sub(&st->pending, 1) != 1)
		return;
	st->item.run = request_continue;
	if (next)
		workpool_submit_next(st->s->pool, &st->item);
	else
		workpool_submit(st->s->pool, &st->item);
}

static void
park_ready(void *arg)
{
	park_release(arg, 1);
}

/*
 * Whether a request runs on its I/O thread, with no hand-off: a read
 * (GET, HEAD: the store and the caller's token, no token work, no synced
 * write) or a public-key operation (below: a hand-off costs more than the
 * RSA public operation itself; wrapKey at 8 connections went from 11-14k/s
 * to 7-9k/s when it was handed off). Not /healthz (it asks the token process), and no read when the
 * store is a database server (a read may wait for the network). Token
 * work never runs here: an I/O thread waiting for the token would hold
 * up every connection it serves, and the 429 of a refused request would
 * wait behind it.
 */
/* POST /keys/NAME[/VERSION]/{encrypt,wrapkey,verify}: a public-key
 * operation, done with OpenSSL in this process, no token and no write
 * (api/keys_api.c route_token_class gives them no token class). */
static int
public_key_op(const char *url)
{
	const char *last = strrchr(url, '/');

	return last != NULL && strncmp(url, "/keys/", 6) == 0 &&
	    (strcasecmp(last + 1, "encrypt") == 0 ||
	        strcasecmp(last + 1, "wrapkey") == 0 ||
	        strcasecmp(last + 1, "verify") == 0);
}

/*
 * Whether a request's checks run on its I/O thread and the rest is
 * parked (route_park in keys_api.c): POST /keys/... (token work: unwrap,
 * decrypt, sign, create, import). The checks (the caller's token, its
 * access, the rate limits, the gate) need no token and no synced write,
 * as a read does; a request the gate refuses is answered at once, and
 * one it queues holds no thread while it waits: the thread that frees a
 * slot runs it next (no wake-up of a sleeping thread, no hand-off).
 */
static int
parks(struct api_server *s, const char *method, const char *url)
{
	if (s->ctx->vault == NULL || vault_store_networked(s->ctx->vault))
		return 0;
	return strcmp(method, "POST") == 0 && strncmp(url, "/keys/", 6) == 0;
}

static int
runs_inline(struct api_server *s, const char *method, const char *url)
{
	if (s->ctx->vault == NULL || vault_store_networked(s->ctx->vault))
		return 0;
	if (strcmp(method, "POST") == 0)
		return public_key_op(url);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return 0;
	return strncmp(url, "/healthz", 8) != 0;
}

/* A request on either daemon; direct: on a connection's own thread,
 * which runs it to the end (no suspend, no hand-off). */
static enum MHD_Result
handle(struct api_server *s, int direct, struct MHD_Connection *conn,
    const char *url, const char *method, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct conn_state *st = *con_cls;
	enum MHD_Result ret;
	int at_once, park;

	if (st == NULL) {
		const char *cl;
		uint64_t clen;

		st = calloc(1, sizeof(*st));
		if (st == NULL)
			return MHD_NO;
		clock_gettime(CLOCK_MONOTONIC, &st->start);
		*con_cls = st;
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
		    "Content-Length");
		/* MHD has refused a malformed Content-Length already */
		if (cl != NULL &&
		    (parse_u64(cl, UINT64_MAX, &clen) != 0 ||
		        clen > API_BODY_MAX))
			st->too_large = 1;
		else
			return MHD_YES;
	}
	if (*upload_data_size != 0 && !st->too_large) {
		int rc = body_append(s, st, upload_data, *upload_data_size);
		upload_consume(upload_data, upload_data_size);
		return rc == 0 ? MHD_YES : MHD_NO;
	}
	upload_consume(upload_data, upload_data_size);

	switch (atomic_load_explicit(&st->phase, memory_order_acquire)) {
	case PH_ANSWERED: /* resumed: the work thread has the answer */
		ret = send_resp(conn, &st->q, &st->r);
		flight_end(s, st);
		return ret;
	case PH_HANDED: /* cannot happen while suspended */
		return MHD_YES;
	default:
		break;
	}
	flight_begin(s, st);
	request_fill(s, st, conn, method, url);
	st->s = s;
	st->conn = conn;
	at_once = direct || runs_inline(s, method, url);
	park = !at_once && parks(s, method, url);
	if (park) {
		st->park.ready = park_ready;
		st->park.arg = st;
		st->park.parked = 0;
		atomic_store(&st->pending, 2);
		st->q.park = &st->park;
	}
	if (at_once || park) {
		request_answer(st);
		if (park && st->park.parked) {
			atomic_store(&st->phase, PH_HANDED);
			MHD_suspend_connection(conn);
			park_release(st, 0);
			return MHD_YES;
		}
		ret = send_resp(conn, &st->q, &st->r);
		flight_end(s, st);
		return ret;
	}
	st->item.run = request_run;
	atomic_store(&st->phase, PH_HANDED);
	MHD_suspend_connection(conn);
	workpool_submit(s->pool, &st->item);
	return MHD_YES;
}

/* Either daemon's request callback: direct when conn is the direct
 * daemon's. */
static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct api_server *s = cls;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn,
	    MHD_CONNECTION_INFO_DAEMON);

	(void)version;
	return handle(s, ci != NULL && ci->daemon == s->direct, conn, url,
	    method, upload_data, upload_data_size, con_cls);
}

/* The end of a connection of the direct daemon (the accept thread
 * counted it when it gave it to the daemon). */
static void
on_direct_conn(void *cls, struct MHD_Connection *conn, void **socket_ctx,
    enum MHD_ConnectionNotificationCode toe)
{
	struct api_server *s = cls;

	(void)conn;
	(void)socket_ctx;
	if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
		atomic_fetch_sub(&s->direct_conns, 1);
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The accept thread's side job: malloc's free pages back to the kernel
 * after a burst of new connections (HTTP_TRIM_CONNS), once it is over
 * or HTTP_TRIM_MAX_S after the last trim. *fresh counts the connections
 * accepted since; the time to wait before the next look, in ms (-1: no
 * connection since, nothing to wait for). */
static int
trim_after_burst(struct api_server *s, unsigned *fresh, int64_t last_accept,
    int64_t *last_trim)
{
	int64_t now = mono_ms(), quiet = now - last_accept;

	if (*fresh < HTTP_TRIM_CONNS)
		return -1;
	if (quiet < HTTP_TRIM_QUIET_MS &&
	    now - *last_trim < HTTP_TRIM_MAX_S * 1000)
		return (int)(HTTP_TRIM_QUIET_MS - quiet);
	(void)malloc_trim(0);
	api_metrics_memory_trimmed(s->ctx);
	*fresh = 0;
	*last_trim = mono_ms();
	return -1;
}

/* The accept thread: each new connection to the direct daemon while it
 * has fewer than direct_max, else to the event-driven one (either closes
 * it when at its limit). */
static void *
acceptor_main(void *arg)
{
	struct api_server *s = arg;
	struct pollfd pf[2];
	unsigned fresh = 0;
	int64_t last_accept = 0, last_trim = mono_ms();
	int wait_ms = -1;

	pf[0].fd = s->lfd;
	pf[0].events = POLLIN;
	pf[1].fd = s->stop_fd;
	pf[1].events = POLLIN;
	for (;;) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		struct MHD_Daemon *d;
		int fd, n;

		if ((n = poll(pf, 2, wait_ms)) == 0) {
			wait_ms = trim_after_burst(s, &fresh, last_accept,
			    &last_trim);
			continue;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			usleep(10000);
			continue;
		}
		if (pf[1].revents != 0)
			break;
		if ((pf[0].revents & POLLIN) == 0)
			continue;
		fd = accept4(s->lfd, (struct sockaddr *)&peer, &plen,
		    SOCK_CLOEXEC);
		if (fd < 0) {
			/* EMFILE and the like: the daemons' limits keep
			 * descriptors free; wait a little rather than spin */
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				usleep(10000);
			continue;
		}
		last_accept = mono_ms();
		if (++fresh >= HTTP_TRIM_CONNS)
			wait_ms = trim_after_burst(s, &fresh, last_accept,
			    &last_trim);
		/* counted here, when given, not when the daemon's thread
		 * takes it (NOTIFY_STARTED comes later: a fast ramp got 33
		 * connections past a limit of 32 that way, and
		 * libmicrohttpd 0.9.75's thread-per-connection daemon,
		 * given a connection past its limit, deadlocked in
		 * MHD_stop_daemon). direct's own limit is twice direct_max:
		 * a connection whose end was notified may still be there
		 * for a moment. */
		d = s->daemon;
		if (atomic_fetch_add(&s->direct_conns, 1) < s->direct_max)
			d = s->direct;
		else
			atomic_fetch_sub(&s->direct_conns, 1);
		/* MHD closes fd itself when it cannot take it */
		if (MHD_add_connection(d, fd, (struct sockaddr *)&peer, plen) !=
		        MHD_YES &&
		    d == s->direct)
			atomic_fetch_sub(&s->direct_conns, 1);
	}
	return NULL;
}

/* The listening socket for ss (SO_REUSEADDR, IPv6 only for [::]). */
static int
listen_socket(const struct sockaddr_storage *ss)
{
	int one = 1;
	socklen_t len = ss->ss_family == AF_INET6 ?
	    (socklen_t)sizeof(struct sockaddr_in6) :
	    (socklen_t)sizeof(struct sockaddr_in);
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (ss->ss_family == AF_INET6 &&
	        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) !=
	            0) ||
	    bind(fd, (const struct sockaddr *)ss, len) != 0 ||
	    listen(fd, HTTP_LISTEN_BACKLOG) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct api_server *s = cls;
	struct conn_state *st = *con_cls;

	(void)conn;
	(void)toe;
	if (st == NULL)
		return;
	flight_end(s, st);
	/* an answer never sent (its client went away while a work thread
	 * had the request): it may carry a DEK or a plaintext */
	if (st->r.body != NULL)
		freezero_block(st->r.body);
	if (st->body) {
		freezero(st->body, st->cap);
		atomic_fetch_sub(&s->body_bytes, st->cap);
	}
	free(st);
	*con_cls = NULL;
}

int
api_listen_parse(const char *listen, struct sockaddr_storage *ss)
{
	char host[256];
	const char *colon = strrchr(listen, ':');
	size_t hl;
	uint64_t port;

	memset(ss, 0, sizeof(*ss));
	if (colon == NULL)
		return -1;
	hl = (size_t)(colon - listen);
	if (hl == 0 || hl >= sizeof(host))
		return -1;
	memcpy(host, listen, hl);
	host[hl] = '\0';
	if (parse_u64(colon + 1, 65535, &port) != 0 || port == 0)
		return -1;
	if (host[0] == '[' && host[hl - 1] == ']') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		host[hl - 1] = '\0';
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		return inet_pton(AF_INET6, host + 1, &s6->sin6_addr) == 1 ? 0 :
		                                                            -1;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		if (strcmp(host, "localhost") == 0)
			memcpy(host, "127.0.0.1", sizeof("127.0.0.1"));
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		return inet_pton(AF_INET, host, &s4->sin_addr) == 1 ? 0 : -1;
	}
}

/* The certificate and key PEM texts MHD serves with (it copies neither:
 * they live as long as the server). */
static API_WUR int
load_tls(struct api_server *s, const struct api_server_opts *o)
{
	buf_t *key = NULL;

	if (file_read(o->cert_pem_file, HTTP_PEM_MAX, &s->cert) != 0)
		return -1;
	if (o->key_pem != NULL)
		s->key = strdup(o->key_pem);
	else if (file_read(o->key_pem_file, HTTP_PEM_MAX, &key) == 0)
		s->key = buf_steal(key, NULL);
	return s->key != NULL ? 0 : -1;
}

/* Connections with a thread of their own: four per usable CPU, within
 * HTTP_DIRECT_MIN..MAX. */
static unsigned
direct_conns(void)
{
	unsigned n = 4 * hsm_cpus_count();

	if (n < HTTP_DIRECT_MIN)
		return HTTP_DIRECT_MIN;
	return n > HTTP_DIRECT_MAX ? HTTP_DIRECT_MAX : n;
}

/* MHD's I/O threads: one per usable CPU, within
 * HTTP_IO_THREADS_MIN..MAX. */
static unsigned
io_threads(void)
{
	unsigned n = hsm_cpus_count();

	if (n < HTTP_IO_THREADS_MIN)
		return HTTP_IO_THREADS_MIN;
	return n > HTTP_IO_THREADS_MAX ? HTTP_IO_THREADS_MAX : n;
}

int
api_server_start(struct api_ctx *c, const struct api_server_opts *o,
    struct api_server **out, char *err, size_t err_len)
{
	struct api_server *s;
	struct sockaddr_storage ss;
	unsigned flags;
	unsigned conn_limit = HTTP_CONN_LIMIT;
	struct rlimit nofile;

	*out = NULL;
	if (api_listen_parse(o->listen, &ss) != 0) {
		err_set(err, err_len,
		    "invalid listen address '%s' "
		    "(want HOST:PORT with a numeric IP; 0.0.0.0:PORT "
		    "for all addresses)",
		    o->listen);
		return -1;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		err_set(err, err_len, "out of memory");
		return -1;
	}
	s->ctx = c;
	s->lfd = -1;
	s->stop_fd = -1;
	if (load_tls(s, o) != 0) {
		err_set(err, err_len,
		    "cannot read the TLS certificate or "
		    "key");
		goto fail;
	}
	/* never let connections take the descriptors the vault needs: at
	 * EMFILE SoftHSM and SQLite fail, not just accept() */
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 &&
	    nofile.rlim_cur != RLIM_INFINITY &&
	    nofile.rlim_cur < (rlim_t)HTTP_CONN_LIMIT + HTTP_FD_RESERVE)
		conn_limit = nofile.rlim_cur > 2 * HTTP_FD_RESERVE ?
		    (unsigned)(nofile.rlim_cur - HTTP_FD_RESERVE) :
		    (unsigned)(nofile.rlim_cur / 2);
	if (workpool_new(HTTP_WORKERS, HTTP_THREAD_STACK, &s->pool) != 0) {
		err_set(err, err_len, "cannot start the work threads");
		goto fail;
	}
	if ((s->lfd = listen_socket(&ss)) < 0) {
		err_set(err, err_len, "cannot listen on %s: %s", o->listen,
		    strerror(errno));
		goto fail;
	}
	s->direct_max = direct_conns();
	if (conn_limit <= 2 * s->direct_max + 1) {
		err_set(err, err_len,
		    "too few descriptors (ulimit -n) for connections");
		goto fail;
	}
	/* epoll: descriptors go past FD_SETSIZE and a wait costs nothing per
	 * idle connection; ITC so that a work thread can resume a
	 * connection; the accept thread adds connections (no listen socket) */
	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	    MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_TLS |
	    MHD_USE_NO_LISTEN_SOCKET;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s,
	    MHD_OPTION_HTTPS_MEM_CERT, buf_str(s->cert),
	    MHD_OPTION_HTTPS_MEM_KEY, s->key, MHD_OPTION_HTTPS_PRIORITIES,
	    HTTP_TLS_PRIORITIES, MHD_OPTION_THREAD_POOL_SIZE, io_threads(),
	    MHD_OPTION_THREAD_STACK_SIZE, (size_t)HTTP_THREAD_STACK,
	    MHD_OPTION_CONNECTION_LIMIT, conn_limit - 2 * s->direct_max,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_CONN_TIMEOUT,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
	/* poll, not select: a connection's descriptor may be past
	 * FD_SETSIZE when thousands are open */
	s->direct = s->daemon == NULL ?
	    NULL :
	    MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
	            MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ITC |
	            MHD_USE_TLS | MHD_USE_NO_LISTEN_SOCKET |
	            (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
	        0, NULL, NULL, on_request, s, MHD_OPTION_HTTPS_MEM_CERT,
	        buf_str(s->cert), MHD_OPTION_HTTPS_MEM_KEY, s->key,
	        MHD_OPTION_HTTPS_PRIORITIES, HTTP_TLS_PRIORITIES,
	        MHD_OPTION_THREAD_STACK_SIZE, (size_t)HTTP_THREAD_STACK,
	        MHD_OPTION_CONNECTION_LIMIT, 2 * s->direct_max,
	        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_CONN_TIMEOUT,
	        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
	        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
	        MHD_OPTION_NOTIFY_CONNECTION, on_direct_conn, s,
	        MHD_OPTION_END);
	if (s->daemon == NULL || s->direct == NULL) {
		err_set(err, err_len, "cannot serve on %s: %s", o->listen,
		    errno ? strerror(errno) : "MHD_start_daemon failed");
		goto fail;
	}
	if ((s->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0 ||
	    pthread_create(&s->acceptor, NULL, acceptor_main, s) != 0) {
		err_set(err, err_len, "cannot start the accept thread");
		goto fail;
	}
	s->acceptor_on = 1;
	*out = s;
	return 0;
fail:
	if (s->direct != NULL)
		MHD_stop_daemon(s->direct);
	if (s->daemon != NULL)
		MHD_stop_daemon(s->daemon);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	if (s->lfd >= 0)
		close(s->lfd);
	workpool_free(s->pool);
	freezero_str(s->key);
	buf_free(s->cert);
	free(s);
	return -1;
}

void
api_server_stop(struct api_server *s)
{
	int i;

	if (s == NULL)
		return;
	/* stop accepting, let in-flight requests finish (up to 10 s) */
	if (s->acceptor_on) {
		uint64_t one = 1;

		if (write(s->stop_fd, &one, sizeof(one)) ==
		    (ssize_t)sizeof(one))
			pthread_join(s->acceptor, NULL);
	}
	close(s->lfd);
	for (i = 0; i < 1000 && atomic_load(&s->in_flight) > 0; i++)
		usleep(10000);
	MHD_stop_daemon(s->direct);
	MHD_stop_daemon(s->daemon);
	close(s->stop_fd);
	workpool_free(s->pool);
	freezero_str(s->key);
	buf_free(s->cert);
	free(s);
}
