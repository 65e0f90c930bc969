/*
 * auditlog.c — the tamper-evident audit log, chained and append-only. Each line is a JSON object whose
 * first member "prev" is the SHA-256 (hex) of the previous line's bytes
 * (without its newline); the first line ever has 64 zeros. Rotation by
 * size renames audit.log to audit.log.N (N increasing) and the chain
 * continues in the new file.
 *
 * Writes that change state are fsynced before the caller acknowledges
 * them; reads are written at once and synced with the next write.
 *
 * Group commit: a line is formatted and chained under the lock (no system
 * call there), then whichever caller finds no write in progress becomes
 * the writer and writes every pending line in one write(2), looping until
 * none is left. A caller that finds a writer at work waits for it: a
 * read-only line's caller until a write covering its line ended (the
 * writer tells them before it syncs), a caller that needs its line synced
 * until a write and fdatasync covering it ended. Fail closed: no caller
 * returns 0 before its line is in the file, so no request is answered
 * with success that left no line.
 * A failed write keeps the unwritten bytes pending, so the byte stream and
 * its chain stay exactly as formatted; every caller whose line did not
 * get where it must gets VLT_ERR_STORAGE, and the pending lines go out,
 * in order, with the next attempt (vlt_audit_ready, or the next line).
 * Torn tails: at open, bytes after the last newline of audit.log (a
 * crash mid-write) are copied into audit.log.torn-N (0600, synced), then
 * the file is cut back to its last complete line (synced); the caller
 * chains a record of the cut (vault/audit_record.c). Verification lists
 * those records and treats nothing else as a repair. When the disk
 * refuses the copy or the cut (full at start), nothing is cut: the log
 * opens failing, the record waits first in line, and the writer finishes
 * the copy and the cut before it writes any line, once it can (so no
 * torn byte is ever cut that was not kept, and no line is ever written
 * after a torn one).
 * Copy to syslog (audit_syslog=true): the writer hands the bytes that
 * reached the file, in file order, to vault/audit_syslog.c, which never
 * blocks it nor fails a line (the file is the record).
 *
 * Must never: accept content it did not get from the one record
 * builder, vault/audit_record.c (which builds records only from recorded
 * metadata).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "hsm/base.h"
#include "vault/auditlog.h"
#include "vault/storage.h"
#include "vault/vault.h"

#define AUDIT_DEFAULT_MAX (64u * 1024 * 1024)
#define AUDIT_LINE_MAX (64 * 1024)
/* pending lines while writes fail: beyond this an append fails */
#define AUDIT_PEND_MAX (256u * 1024 * 1024)
#define TORN_PREFIX "audit.log.torn-"

struct vlt_audit {
	pthread_mutex_t lock;
	pthread_cond_t done; /* a write ended */
	buf_t *pend;         /* formatted lines not yet written */
	buf_t *spare;        /* the empty one, swapped in to write */
	uint64_t queued;     /* lines formatted so far */
	uint64_t written;    /* lines written */
	uint64_t synced;     /* lines written and fdatasync'ed */
	uint64_t want_sync;  /* the highest line someone needs synced */
	int writing;         /* a caller is writing a batch */
	int last_failed;     /* the last write or sync failed */
	struct vlt_storage_state disk; /* the episode, for logs and health */
	char dir[4096];
	char path[4200];
	int fd;
	size_t size;
	size_t max_bytes;
	unsigned next_index; /* next rotation suffix */
	char prev[65];
	/* checkpoints (audit_ckpt.c) */
	struct vlt_audit_signer signer;
	int have_signer;
	int ckpt_failing;   /* the last signature failed (logged once) */
	uint64_t base;      /* the chain's lines before this open */
	uint64_t ckpt_at;   /* the chain's lines up to the last checkpoint */
	int64_t ckpt_time;  /* when it was made (monotonic seconds) */
	int64_t ckpt_retry; /* after a failure: not before then */
	struct vlt_syslog *syslog; /* audit_syslog=true: the copy's sender */
	/* a torn tail not cut yet (the disk refused it at open): bytes
	 * [tail_off, tail_end) of audit.log, to keep in tail_side */
	int tail_torn;
	uint64_t tail_off, tail_end;
	char tail_side[64];
};

static void
hex_hash(const char *data, size_t len, char out[65])
{
	static const char hx[] = "0123456789abcdef";
	unsigned char md[SHA256_DIGEST_LENGTH];
	size_t i;

	SHA256((const unsigned char *)data, len, md);
	for (i = 0; i < sizeof(md); i++) {
		out[2 * i] = hx[md[i] >> 4];
		out[2 * i + 1] = hx[md[i] & 0xf];
	}
	out[2 * sizeof(md)] = '\0';
}

/* The highest N of DIR's files named prefix + N (0: none): the rotated
 * files (audit.log.N) and the torn tails (audit.log.torn-N). */
static unsigned
highest_suffix(const char *dir, const char *prefix)
{
	size_t plen = strlen(prefix);
	DIR *d = opendir(dir);
	struct dirent *e;
	unsigned hi = 0;
	uint64_t n;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, prefix, plen) == 0 &&
		    parse_u64(e->d_name + plen, 999999, &n) == 0 && n > hi)
			hi = (unsigned)n;
	closedir(d);
	return hi;
}

/* Hash of the last complete line of a file into out; 0 if found. */
static int
last_line_hash(const char *path, char out[65])
{
	FILE *f = fopen(path, "r");
	char *line = NULL, *last = NULL;
	size_t cap = 0, lastlen = 0;
	ssize_t n;
	int rc = -1;

	if (f == NULL)
		return -1;
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] != '\n')
			break; /* a torn last line is ignored */
		free(last);
		last = strndup(line, (size_t)n - 1);
		lastlen = (size_t)n - 1;
	}
	if (last) {
		hex_hash(last, lastlen, out);
		rc = 0;
	}
	free(line);
	free(last);
	fclose(f);
	return rc;
}

/* Writes up to n bytes; returns how many were written (n unless an
 * error stopped it, whose errno goes to *err). */
static size_t
write_some(int fd, const char *p, size_t n, int *err)
{
	size_t done = 0;

	while (done < n) {
		ssize_t w = write(fd, p + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			*err = w < 0 ? errno : ENOSPC;
			break;
		}
		done += (size_t)w;
	}
	return done;
}


/* Where the bytes after the last newline of fd (size bytes) begin: size
 * when the file ends with one (or is empty), 0 when it has none. */
static int
tail_start(int fd, uint64_t size, uint64_t *start)
{
	char chunk[4096];
	uint64_t end = size;

	while (end > 0) {
		size_t n = end < sizeof(chunk) ? (size_t)end : sizeof(chunk);
		uint64_t base = end - n;

		if (pread(fd, chunk, n, (off_t)base) != (ssize_t)n)
			return VLT_ERR_IO;
		while (n > 0 && chunk[n - 1] != '\n')
			n--;
		if (n > 0) {
			*start = base + n;
			return 0;
		}
		end = base;
	}
	*start = 0;
	return 0;
}

static int
fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r;

	if (fd < 0)
		return VLT_ERR_IO;
	r = fsync(fd) == 0 ? 0 : VLT_ERR_IO;
	close(fd);
	return r;
}

/* Copies bytes [off, end) of fd to out (out < 0: only hashes them) and
 * puts their SHA-256 in hex. */
static int
copy_hash(int fd, uint64_t off, uint64_t end, int out, char hex[65])
{
	static const char hx[] = "0123456789abcdef";
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char md[EVP_MAX_MD_SIZE], chunk[4096];
	unsigned mdlen = 0, i;
	int r = VLT_ERR_IO, werr = 0;

	if (ctx == NULL)
		return VLT_ERR_NO_MEMORY;
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	while (off < end) {
		size_t n = end - off < sizeof(chunk) ? (size_t)(end - off) :
		                                       sizeof(chunk);
		if (pread(fd, chunk, n, (off_t)off) != (ssize_t)n ||
		    EVP_DigestUpdate(ctx, chunk, n) != 1 ||
		    (out >= 0 &&
		        write_some(out, (const char *)chunk, n, &werr) != n))
			goto out;
		off += n;
	}
	if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32)
		goto out;
	for (i = 0; i < mdlen; i++) {
		hex[2 * i] = hx[md[i] >> 4];
		hex[2 * i + 1] = hx[md[i] & 0xf];
	}
	hex[64] = '\0';
	r = 0;
out:
	EVP_MD_CTX_free(ctx);
	if (werr != 0)
		errno = werr; /* keep_aside tells a full disk from the rest */
	return r;
}

/* The result of a write or a sync: a failure starts or continues a
 * storage episode, a success ends it. Caller holds the lock. */
static void
note_result(struct vlt_audit *a, int err, const char *what)
{
	char why[VLT_STORAGE_REASON_MAX];

	a->last_failed = err != 0;
	if (err == 0) {
		vlt_storage_ok(&a->disk);
		return;
	}
	if (str_fmt(why, sizeof(why), "audit.log: %s: %s", what,
	        strerror(err)) != 0)
		why[0] = '\0';
	vlt_storage_fail(&a->disk, why);
}

/* Copies bytes [off, end) of fd into DIR/side (a new file, 0600),
 * synced with its directory. 0, or the errno of what failed (nothing is
 * left behind then). */
static int
keep_aside(const struct vlt_audit *a, int fd, uint64_t off, uint64_t end,
    const char *side_file)
{
	char side[4300], hex[65];
	int out, r, err = 0;

	if (str_fmt(side, sizeof(side), "%s/%s", a->dir, side_file) != 0)
		return ENAMETOOLONG;
	out = open(side, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0)
		return errno;
	r = copy_hash(fd, off, end, out, hex);
	if (r == 0 && fsync(out) != 0)
		r = VLT_ERR_IO;
	if (r != 0)
		err = r == VLT_ERR_NO_MEMORY ? ENOMEM : (errno ? errno : EIO);
	close(out);
	if (err == 0 && fsync_dir(a->dir) != 0)
		err = errno ? errno : EIO;
	if (err != 0)
		(void)unlink(side);
	return err;
}

/* The torn tail's bytes kept aside, then cut off audit.log, both
 * durably. 0 (a->size is then the cut file's), or the errno of the step
 * the disk refused (nothing cut then). Without the lock: at open, or by
 * the writer. */
static int
cut_tail(struct vlt_audit *a)
{
	int fd, err;

	fd = open(a->path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno;
	err = keep_aside(a, fd, a->tail_off, a->tail_end, a->tail_side);
	if (err == 0 &&
	    (ftruncate(fd, (off_t)a->tail_off) != 0 || fsync(fd) != 0))
		err = errno ? errno : EIO;
	close(fd);
	if (err == 0) {
		a->tail_torn = 0;
		a->size = (size_t)a->tail_off;
	}
	return err;
}

/* A torn last line of audit.log: what it is (hash, the side file it
 * goes to) into rep, then kept aside and cut off. When the disk refuses
 * that, it stays (a->tail_torn) for the writer to finish before any
 * line, and the log starts failing. */
static int
repair_tail(struct vlt_audit *a, struct vlt_audit_repair *rep)
{
	struct stat st;
	uint64_t start;
	int fd, r, err;

	fd = open(a->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : VLT_ERR_IO;
	if (fstat(fd, &st) != 0 || st.st_size < 0) {
		r = VLT_ERR_IO;
		goto out;
	}
	if ((r = tail_start(fd, (uint64_t)st.st_size, &start)) != 0 ||
	    start == (uint64_t)st.st_size)
		goto out;
	if ((r = copy_hash(fd, start, (uint64_t)st.st_size, -1, rep->sha256)) !=
	        0 ||
	    (r = str_fmt(rep->side_file, sizeof(rep->side_file),
	         TORN_PREFIX "%u", highest_suffix(a->dir, TORN_PREFIX) + 1)) !=
	        0)
		goto out;
	rep->offset = a->tail_off = start;
	rep->length = (uint64_t)st.st_size - start;
	a->tail_end = (uint64_t)st.st_size;
	memcpy(a->tail_side, rep->side_file, sizeof(a->tail_side));
	a->tail_torn = 1;
	if ((err = cut_tail(a)) != 0)
		note_result(a, err, "keeping the torn tail aside");
out:
	close(fd);
	if (r != 0)
		rep->length = 0;
	return r;
}

/* What one file holds: complete lines, and after its last checkpoint
 * (found) how many lines follow it and the checkpoint's count. */
struct file_count {
	uint64_t lines, after, ckpt_lines;
	int found;
};

static void
count_file(const char *path, struct file_count *c)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	uint64_t v;

	memset(c, 0, sizeof(*c));
	if (f == NULL)
		return;
	while ((n = getline(&line, &cap, f)) > 0 && line[n - 1] == '\n') {
		c->lines++;
		c->after++;
		if (vlt_ckpt_is(line, (size_t)n - 1) &&
		    vlt_ckpt_lines(line, &v) == 0) {
			c->found = 1;
			c->ckpt_lines = v;
			c->after = 0;
		}
	}
	free(line);
	fclose(f);
}

/* The chain's lines so far: from the newest checkpoint (in audit.log or
 * the newest rotated files), else every file counted. */
static uint64_t
chain_lines(const struct vlt_audit *a)
{
	struct file_count c;
	char path[4300];
	uint64_t sum = 0;
	unsigned i = a->next_index;

	count_file(a->path, &c);
	while (!c.found) {
		sum += c.lines;
		if (--i == 0 ||
		    str_fmt(path, sizeof(path), "%s/audit.log.%u", a->dir, i) !=
		        0)
			return sum;
		count_file(path, &c);
	}
	return sum + c.ckpt_lines + 1 + c.after;
}

static int64_t
mono_s(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

static int
open_current(struct vlt_audit *a)
{
	struct stat st;

	a->fd = open(a->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (a->fd < 0)
		return -1;
	if (fstat(a->fd, &st) != 0)
		return -1;
	a->size = (size_t)st.st_size;
	return 0;
}

static void
audit_free(struct vlt_audit *a)
{
	if (a->fd >= 0)
		close(a->fd);
	pthread_cond_destroy(&a->done);
	pthread_mutex_destroy(&a->lock);
	buf_free(a->pend);
	buf_free(a->spare);
	vlt_syslog_close(a->syslog);
	free(a);
}

int
vlt_audit_open(const char *data_dir, size_t max_bytes, struct vlt_audit **out,
    struct vlt_audit_repair *repair)
{
	struct vlt_audit *a;
	char rotated[4300];
	int r = VLT_ERR_IO;

	*out = NULL;
	memset(repair, 0, sizeof(*repair));
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return VLT_ERR_NO_MEMORY;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->done, NULL);
	a->fd = -1;
	a->disk.source = "audit";
	a->max_bytes = max_bytes ? max_bytes : AUDIT_DEFAULT_MAX;
	if ((a->pend = buf_new(AUDIT_PEND_MAX)) == NULL ||
	    (a->spare = buf_new(AUDIT_PEND_MAX)) == NULL ||
	    str_fmt(a->dir, sizeof(a->dir), "%s/audit", data_dir) != 0 ||
	    str_fmt(a->path, sizeof(a->path), "%s/audit.log", a->dir) != 0)
		goto fail;
	if (mkdir(a->dir, 0700) != 0 && errno != EEXIST)
		goto fail;
	if ((r = repair_tail(a, repair)) != 0)
		goto fail;
	r = VLT_ERR_IO;
	a->next_index = highest_suffix(a->dir, "audit.log.") + 1;
	memset(a->prev, '0', 64);
	a->prev[64] = '\0';
	if (last_line_hash(a->path, a->prev) != 0 && a->next_index > 1 &&
	    str_fmt(rotated, sizeof(rotated), "%s/audit.log.%u", a->dir,
	        a->next_index - 1) == 0)
		(void)last_line_hash(rotated, a->prev);
	if (open_current(a) != 0)
		goto fail;
	a->base = a->ckpt_at = chain_lines(a);
	a->ckpt_time = mono_s();
	*out = a;
	return 0;
fail:
	audit_free(a);
	return r;
}

static int
rotate(struct vlt_audit *a)
{
	char rotated[4300];

	if (fsync(a->fd) != 0)
		return -1;
	close(a->fd);
	a->fd = -1;
	if (str_fmt(rotated, sizeof(rotated), "%s/audit.log.%u", a->dir,
	        a->next_index) != 0 ||
	    rename(a->path, rotated) != 0)
		return -1;
	a->next_index++;
	return open_current(a);
}

/* After a short write of buf (n bytes of it written): its unwritten
 * bytes go back first in line, before the lines added meanwhile, so that
 * the byte stream and its chain stay exactly as formatted (out of memory:
 * they are dropped, and the chain shows the gap). Caller holds the lock. */
static void
keep_unwritten(struct vlt_audit *a, buf_t *buf, size_t n)
{
	buf_t *nb = buf_new(AUDIT_PEND_MAX);

	if (nb != NULL &&
	    buf_put(nb, buf_ptr(buf) + n, buf_len(buf) - n) == 0 &&
	    buf_put(nb, buf_ptr(a->pend), buf_len(a->pend)) == 0) {
		buf_free(a->pend);
		a->pend = nb;
	} else {
		buf_free(nb);
	}
}

/* Opens (or rotates to) the current file and writes buf's len bytes,
 * without the lock; *n: how many reached the file. 0 or an errno. */
static int
write_batch(struct vlt_audit *a, const buf_t *buf, size_t len, size_t *n)
{
	int err = 0;

	*n = 0;
	if (a->tail_torn && (err = cut_tail(a)) != 0)
		return err; /* no line after a torn one */
	if ((a->fd < 0 && open_current(a) != 0) ||
	    (a->size >= a->max_bytes && rotate(a) != 0))
		return errno != 0 ? errno : EIO;
	*n = write_some(a->fd, (const char *)buf_ptr(buf), len, &err);
	a->size += *n;
	return err;
}

/* fdatasync without the lock, then the result under it. */
static int
sync_batch(struct vlt_audit *a, uint64_t upto)
{
	int err;

	pthread_mutex_unlock(&a->lock);
	err = fdatasync(a->fd) == 0 ? 0 : errno;
	pthread_mutex_lock(&a->lock);
	if (err == 0 && a->synced < upto)
		a->synced = upto;
	return err;
}

/*
 * The writer's loop; caller holds the lock and has set a->writing. Takes
 * the pending lines, writes them (rotating first when the file is full)
 * without the lock, tells the waiting callers that their lines are in the
 * file, then syncs them when someone asked; repeats until nothing is
 * pending or a write fails.
 */
static void
write_batches(struct vlt_audit *a)
{
	while (buf_len(a->pend) > 0) {
		buf_t *buf = a->pend;
		size_t len = buf_len(buf), n = 0;
		uint64_t upto = a->queued;
		int need_sync = a->want_sync > a->synced, err;

		a->pend = a->spare;
		a->spare = NULL;
		pthread_mutex_unlock(&a->lock);
		err = write_batch(a, buf, len, &n);
		/* the one writer: the copy gets the file's bytes in order */
		if (a->syslog != NULL && n > 0)
			vlt_syslog_forward(a->syslog,
			    (const char *)buf_ptr(buf), n);
		pthread_mutex_lock(&a->lock);
		if (n < len) {
			keep_unwritten(a, buf, n);
		} else {
			a->written = upto;
			pthread_cond_broadcast(&a->done);
		}
		buf_reset(buf);
		a->spare = buf;
		if (err == 0 && need_sync) {
			note_result(a, err = sync_batch(a, upto), "fdatasync");
			if (err != 0)
				break;
			continue;
		}
		note_result(a, err, "write");
		if (err != 0)
			break;
	}
}

/* A sync that failed after its lines were written is retried alone
 * (nothing pending). Caller holds the lock and has set a->writing. */
static void
sync_retry(struct vlt_audit *a)
{
	if (a->fd >= 0)
		note_result(a, sync_batch(a, a->written), "fdatasync");
}

/* Whether this caller's line is where it must be: in the file, and synced
 * when it asked. */
static int
line_done(const struct vlt_audit *a, uint64_t me, int sync)
{
	return sync ? a->synced >= me : a->written >= me;
}

/* Queues line (formatted, chained); 0, or VLT_ERR_NO_MEMORY (nothing
 * queued, the chain as it was). Caller holds the lock. */
static int
queue_line(struct vlt_audit *a, buf_t *line, const char *object_json,
    size_t olen, uint64_t *me)
{
	if (buf_putf(line, "{\"prev\":\"%s\"%s%s\n", a->prev,
	        olen > 2 ? "," : "", object_json + 1) != 0 ||
	    buf_put(a->pend, buf_ptr(line), buf_len(line)) != 0)
		return VLT_ERR_NO_MEMORY;
	hex_hash(buf_str(line), buf_len(line) - 1, a->prev);
	*me = ++a->queued;
	return 0;
}

/* A checkpoint of the chain as queued so far, signed in the token (under
 * the lock: the next line chains to it). A failed signature is logged
 * once, and tried again after a while; it fails no caller. Caller holds
 * the lock. */
static void
queue_checkpoint(struct vlt_audit *a, uint64_t *me)
{
	uint64_t lines = a->base + a->queued;
	buf_t *obj = buf_new(2048), *line = buf_new(2200);
	int r = VLT_ERR_NO_MEMORY;

	if (obj != NULL && line != NULL &&
	    (r = vlt_ckpt_build(&a->signer, a->prev, lines, obj)) == 0)
		r = queue_line(a, line, buf_str(obj), buf_len(obj), me);
	buf_free(obj);
	buf_free(line);
	if (r == 0) {
		a->ckpt_at = lines + 1;
		a->ckpt_time = mono_s();
		if (a->ckpt_failing)
			fprintf(stderr,
			    "{\"level\":\"info\",\"event\":"
			    "\"audit_checkpoint_recovered\"}\n");
		a->ckpt_failing = 0;
		return;
	}
	a->ckpt_retry = mono_s() + 5;
	if (!a->ckpt_failing)
		fprintf(stderr,
		    "{\"level\":\"error\",\"event\":"
		    "\"audit_checkpoint_failed\",\"error\":%d}\n",
		    r);
	a->ckpt_failing = 1;
}

/* Whether a checkpoint is due after the lines queued so far. */
static int
checkpoint_due(const struct vlt_audit *a)
{
	uint64_t since = a->base + a->queued - a->ckpt_at;
	int64_t now;

	if (!a->have_signer || since == 0)
		return 0;
	if (a->signer.every_lines > 0 && since >= a->signer.every_lines)
		return mono_s() >= a->ckpt_retry;
	if (a->signer.every_seconds == 0)
		return 0;
	now = mono_s();
	return now >= a->ckpt_retry &&
	    now - a->ckpt_time >= (int64_t)a->signer.every_seconds;
}

/* Waits until line me is where it must be, writing when no one else is;
 * VLT_ERR_STORAGE when this caller's own attempt failed. Caller holds
 * the lock. */
static int
await_line(struct vlt_audit *a, uint64_t me, int sync)
{
	if (sync && a->want_sync < me)
		a->want_sync = me;
	while (!line_done(a, me, sync)) {
		if (a->writing) {
			/* that write may cover this line; if not, the loop
			 * makes this caller the next writer */
			pthread_cond_wait(&a->done, &a->lock);
			continue;
		}
		a->writing = 1;
		if (buf_len(a->pend) > 0)
			write_batches(a);
		else
			sync_retry(a); /* written, but its sync failed */
		a->writing = 0;
		pthread_cond_broadcast(&a->done);
		if (!line_done(a, me, sync))
			return VLT_ERR_STORAGE; /* this caller's own attempt */
	}
	return 0;
}

/*
 * Returns once this caller's line is in the file (and synced when sync is
 * set), or with VLT_ERR_STORAGE when its own attempt to write it failed:
 * a request is answered with success only when its line was handed to
 * the file. Lines of many callers still go out in one write(2): a caller
 * that finds a writer at work waits for that write instead of making its
 * own. A checkpoint that falls due is queued right after the line.
 */
int
vlt_audit_append(struct vlt_audit *a, const char *object_json, int sync)
{
	buf_t *line;
	size_t olen = strlen(object_json);
	uint64_t me = 0, ck = 0;
	int rc;

	if (olen < 2 || object_json[0] != '{' || olen > AUDIT_LINE_MAX)
		return VLT_ERR_BAD_PARAM;
	if ((line = buf_new(olen + 96)) == NULL)
		return VLT_ERR_NO_MEMORY;
	pthread_mutex_lock(&a->lock);
	if ((rc = queue_line(a, line, object_json, olen, &me)) == 0) {
		if (checkpoint_due(a))
			queue_checkpoint(a, &ck);
		rc = await_line(a, me, sync);
	}
	pthread_mutex_unlock(&a->lock);
	buf_free(line);
	return rc;
}

void
vlt_audit_set_signer(struct vlt_audit *a, const struct vlt_audit_signer *s)
{
	pthread_mutex_lock(&a->lock);
	a->signer = *s;
	a->have_signer = 1;
	pthread_mutex_unlock(&a->lock);
}

void
vlt_audit_set_syslog(struct vlt_audit *a, struct vlt_syslog *s)
{
	pthread_mutex_lock(&a->lock);
	vlt_syslog_close(a->syslog);
	a->syslog = s;
	pthread_mutex_unlock(&a->lock);
}

struct vlt_syslog *
vlt_audit_syslog(struct vlt_audit *a)
{
	return a->syslog;
}

int
vlt_audit_checkpoint(struct vlt_audit *a)
{
	uint64_t me = 0;
	int rc = 0;

	pthread_mutex_lock(&a->lock);
	if (a->have_signer) {
		queue_checkpoint(a, &me);
		if (me > 0)
			rc = await_line(a, me, 1);
	}
	pthread_mutex_unlock(&a->lock);
	return rc;
}

int
vlt_audit_ready(struct vlt_audit *a)
{
	int rc;

	pthread_mutex_lock(&a->lock);
	/* the common case costs the lock alone: no wait for a writer */
	while (a->last_failed && a->writing)
		pthread_cond_wait(&a->done, &a->lock);
	if (a->last_failed) {
		a->writing = 1;
		if (buf_len(a->pend) > 0)
			write_batches(a); /* the pending lines, oldest first */
		else
			sync_retry(a);
		a->writing = 0;
		pthread_cond_broadcast(&a->done);
	}
	rc = a->last_failed ? VLT_ERR_STORAGE : 0;
	pthread_mutex_unlock(&a->lock);
	return rc;
}

void
vlt_audit_state(struct vlt_audit *a, int *failing, uint64_t *errors,
    char *reason, size_t cap)
{
	pthread_mutex_lock(&a->lock);
	*failing = a->disk.failing;
	*errors = a->disk.errors;
	if (cap > 0 && str_fmt(reason, cap, "%s", a->disk.reason) != 0)
		reason[0] = '\0';
	pthread_mutex_unlock(&a->lock);
}

void
vlt_audit_close(struct vlt_audit *a)
{
	if (a == NULL)
		return;
	pthread_mutex_lock(&a->lock);
	while (a->writing)
		pthread_cond_wait(&a->done, &a->lock);
	if (a->have_signer && a->base + a->queued > a->ckpt_at) {
		uint64_t me = 0;

		queue_checkpoint(a, &me); /* the clean close's */
	}
	if (buf_len(a->pend) > 0) {
		a->writing = 1;
		write_batches(a); /* whatever is still pending */
		a->writing = 0;
	}
	pthread_mutex_unlock(&a->lock);
	if (a->fd >= 0)
		(void)fsync(a->fd);
	audit_free(a);
}

/* The label alone when a longer place does not fit (cut to fit). */
static void
where_set(char *where, size_t where_len, const char *label)
{
	size_t n;

	if (where_len == 0)
		return;
	n = strnlen(label, where_len - 1);
	memcpy(where, label, n);
	where[n] = '\0';
}

static void
broken_at(struct vlt_audit_verdict *out, const char *label, size_t lineno)
{
	out->intact = 0;
	if (str_fmt(out->broken, sizeof(out->broken), "%s:%zu", label,
	        lineno) != 0)
		where_set(out->broken, sizeof(out->broken), label);
}

int
audit_field_text(const char *line, const char *key, const char *punct,
    char *dst, size_t cap)
{
	const char *p = strstr(line, key);
	size_t n = 0;

	if (p == NULL)
		return VLT_ERR_BAD_PARAM;
	for (p += strlen(key); *p != '"'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		        (*p >= '0' && *p <= '9') ||
		        (*p != '\0' && strchr(punct, *p) != NULL)) ||
		    n + 1 >= cap)
			return VLT_ERR_BAD_PARAM;
		dst[n++] = *p;
	}
	dst[n] = '\0';
	return 0;
}

/* The number of "key":N in a repair record. */
static int
repair_number(const char *line, const char *key, uint64_t *v)
{
	const char *p = strstr(line, key);
	char digits[21];
	size_t n = 0;

	if (p == NULL)
		return VLT_ERR_BAD_PARAM;
	for (p += strlen(key); *p >= '0' && *p <= '9'; p++) {
		if (n + 1 >= sizeof(digits))
			return VLT_ERR_BAD_PARAM;
		digits[n++] = *p;
	}
	digits[n] = '\0';
	if (*p != ',' && *p != '}')
		return VLT_ERR_BAD_PARAM;
	return parse_u64(digits, UINT64_MAX, v);
}

/* A repair record (its chain already checked) into out's list. */
static int
note_repair(struct vlt_audit_verdict *out, const char *line, const char *label,
    size_t lineno)
{
	struct vlt_audit_repair rep;

	memset(&rep, 0, sizeof(rep));
	if (repair_number(line, "\"offset\":", &rep.offset) != 0 ||
	    repair_number(line, "\"length\":", &rep.length) != 0 ||
	    rep.length == 0 ||
	    audit_field_text(line, "\"sha256\":\"", "._-", rep.sha256,
	        sizeof(rep.sha256)) != 0 ||
	    strlen(rep.sha256) != 64 ||
	    audit_field_text(line, "\"sideFile\":\"", "._-", rep.side_file,
	        sizeof(rep.side_file)) != 0 ||
	    str_fmt(rep.at, sizeof(rep.at), "%s:%zu", label, lineno) != 0)
		return VLT_ERR_BAD_PARAM;
	if (out->nrepairs < VLT_AUDIT_REPAIRS_MAX)
		out->repairs[out->nrepairs] = rep;
	out->nrepairs++;
	return 0;
}

#define REPAIR_TAG ",\"event\":\"" VLT_AUDIT_TAIL_REPAIRED "\","

/* What a verification carries from line to line. key: to check
 * checkpoints with (NULL: none). unanchored: older files are archived,
 * so the first line's prev is taken as it is and the count of lines is
 * known only from the first checkpoint on (skew: its count minus the
 * lines seen before it). */
struct vstate {
	const struct vlt_ckpt_key *key;
	int unanchored, take_prev;
	uint64_t skew;
};

/* A checkpoint (its chain checked): its signature, head and count. */
static int
verify_checkpoint(const char *line, size_t n, const char *label, size_t lineno,
    const char prev[65], struct vstate *vs, struct vlt_audit_verdict *out)
{
	uint64_t lines = 0;

	if (vlt_ckpt_check(vs->key, line, n, prev, &lines, &out->broken_why) !=
	    0)
		return VLT_ERR_BAD_PARAM;
	if (vs->unanchored) {
		if (lines < out->lines) {
			out->broken_why = "checkpoint line count is wrong";
			return VLT_ERR_BAD_PARAM;
		}
		vs->skew = lines - out->lines;
		vs->unanchored = 0;
	}
	if (lines != out->lines + vs->skew) {
		out->broken_why = "checkpoint line count is wrong";
		return VLT_ERR_BAD_PARAM;
	}
	out->checkpoints++;
	out->unsigned_tail = 0;
	if (str_fmt(out->last_checkpoint, sizeof(out->last_checkpoint),
	        "%s:%zu", label, lineno) != 0)
		where_set(out->last_checkpoint, sizeof(out->last_checkpoint),
		    label);
	return 0;
}

/* One line of a file: chained to prev (which becomes its hash), and a
 * repair record or a checkpoint that says what it must. */
static int
verify_line(const char *line, size_t n, const char *label, size_t lineno,
    char prev[65], struct vstate *vs, struct vlt_audit_verdict *out)
{
	if (n >= 75 && vs->take_prev) {
		memcpy(prev, line + 9, 64); /* the first line held */
		vs->take_prev = 0;
	}
	out->broken_why = "hash chain broken";
	if (n < 75 || strncmp(line, "{\"prev\":\"", 9) != 0 ||
	    strncmp(line + 9, prev, 64) != 0 || line[73] != '"')
		return VLT_ERR_BAD_PARAM;
	if (strncmp(line + 74, REPAIR_TAG, sizeof(REPAIR_TAG) - 1) == 0 &&
	    note_repair(out, line, label, lineno) != 0)
		return VLT_ERR_BAD_PARAM;
	if (vlt_ckpt_is(line, n)) {
		if (verify_checkpoint(line, n, label, lineno, prev, vs, out) !=
		    0)
			return VLT_ERR_BAD_PARAM;
	} else {
		out->unsigned_tail++;
	}
	out->broken_why = NULL;
	hex_hash(line, n, prev);
	out->lines++;
	return 0;
}

/* The lines of one file. current: audit.log, whose incomplete last line
 * (not repaired yet) is reported as such, not as a break. */
static int
verify_file(const char *path, const char *label, int current, char prev[65],
    struct vstate *vs, struct vlt_audit_verdict *out)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	uint64_t pos = 0;
	ssize_t n;

	if (f == NULL)
		return VLT_ERR_IO;
	out->files++;
	while ((n = getline(&line, &cap, f)) > 0) {
		lineno++;
		if (line[n - 1] != '\n' && current) {
			out->tail_off = pos;
			out->tail_len = (uint64_t)n;
			break;
		}
		if (line[n - 1] != '\n' ||
		    verify_line(line, (size_t)n - 1, label, lineno, prev, vs,
		        out) != 0) {
			broken_at(out, label, lineno);
			break;
		}
		pos += (uint64_t)n;
	}
	free(line);
	fclose(f);
	return 0;
}

/* DIR and DIR/audit exist and are directories; else why not. */
static int
audit_dir_check(const char *data_dir, const char *dir, char *why,
    size_t why_len)
{
	struct stat st;

	if (stat(data_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		if (str_fmt(why, why_len, "%s: no such data directory",
		        data_dir) != 0)
			where_set(why, why_len, "no such data directory");
		return VLT_ERR_NOT_FOUND;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		if (str_fmt(why, why_len,
		        "%s: no audit directory (is this a vault's data "
		        "directory?)",
		        dir) != 0)
			where_set(why, why_len, "no audit directory");
		return VLT_ERR_NOT_FOUND;
	}
	return 0;
}

/* The oldest rotated file held (from 1 up to hi; hi + 1: none). */
static unsigned
lowest_held(const char *dir, unsigned hi)
{
	char path[4300];
	unsigned i;

	for (i = 1; i <= hi; i++)
		if (str_fmt(path, sizeof(path), "%s/audit.log.%u", dir, i) ==
		        0 &&
		    access(path, F_OK) == 0)
			return i;
	return i;
}

/* The rotated files, oldest first; a missing one breaks the chain, but
 * for the oldest ones (archived) when there is a key: then the check
 * starts at the oldest file held, anchored by its first checkpoint. */
static int
verify_rotated(const char *dir, char prev[65], struct vstate *vs,
    struct vlt_audit_verdict *out)
{
	char path[4300], label[64];
	unsigned i, hi = highest_suffix(dir, "audit.log."),
	            lo = lowest_held(dir, hi);
	int r;

	if (lo > 1 && vs->key != NULL) {
		vs->unanchored = vs->take_prev = 1;
		if (lo <= hi)
			r = str_fmt(out->starts_at, sizeof(out->starts_at),
			    "audit.log.%u:1", lo);
		else
			r = str_fmt(out->starts_at, sizeof(out->starts_at),
			    "audit.log:1");
		if (r != 0)
			return VLT_ERR_BAD_PARAM;
	} else {
		lo = 1;
	}
	for (i = lo; i <= hi && out->intact; i++) {
		if (str_fmt(path, sizeof(path), "%s/audit.log.%u", dir, i) !=
		        0 ||
		    str_fmt(label, sizeof(label), "audit.log.%u", i) != 0)
			return VLT_ERR_BAD_PARAM;
		if (access(path, F_OK) != 0) {
			out->intact = 0;
			if (str_fmt(out->broken, sizeof(out->broken),
			        "%s (missing)", label) != 0)
				where_set(out->broken, sizeof(out->broken),
				    label);
			return 0;
		}
		if ((r = verify_file(path, label, 0, prev, vs, out)) != 0)
			return r;
	}
	return 0;
}

/* The end of a check: a key but no checkpoint (or an archived prefix
 * never anchored) is a break. */
static void
verify_end(struct vstate *vs, struct vlt_audit_verdict *out)
{
	if (!out->intact || vs->key == NULL || out->lines == 0 ||
	    (out->checkpoints > 0 && !vs->unanchored))
		return;
	out->intact = 0;
	out->broken_why = "no signed checkpoint in the log";
	where_set(out->broken, sizeof(out->broken), "audit.log");
}

/* The key to check checkpoints with: key_pem, else DIR/audit's copy
 * (none there: NULL, checkpoints then fail). */
static int
verify_key(const char *dir, const char *key_pem, struct vlt_ckpt_key **k,
    char *why, size_t why_len)
{
	char path[4300];
	int r;

	*k = NULL;
	if (key_pem == NULL &&
	    str_fmt(path, sizeof(path), "%s/audit-key.pem", dir) != 0)
		return VLT_ERR_BAD_PARAM;
	r = vlt_ckpt_key_load(key_pem != NULL ? key_pem : path, k);
	if (r == VLT_ERR_NOT_FOUND && key_pem == NULL)
		return 0;
	if (r != 0 &&
	    str_fmt(why, why_len, "%s: %s", key_pem ? key_pem : path,
	        r == VLT_ERR_NOT_FOUND ? "no such file" :
	                                 "not a public key (PEM)") != 0)
		where_set(why, why_len, "bad public key");
	return r == 0 ? 0 : VLT_ERR_NOT_FOUND;
}

int
vault_audit_verify(const char *data_dir, struct vlt_audit_verdict *out,
    char *why, size_t why_len)
{
	return vault_audit_verify_key(data_dir, NULL, out, why, why_len);
}

/* The files of dir, oldest first, with vs. */
static int
verify_files(const char *dir, struct vstate *vs, struct vlt_audit_verdict *out,
    char *why, size_t why_len)
{
	char path[4300], prev[65];
	int r;

	if (str_fmt(path, sizeof(path), "%s/audit.log", dir) != 0)
		return VLT_ERR_BAD_PARAM;
	memset(prev, '0', 64);
	prev[64] = '\0';
	if ((r = verify_rotated(dir, prev, vs, out)) != 0 || !out->intact)
		return r;
	if (access(path, F_OK) != 0) {
		if (str_fmt(why, why_len, "%s is missing", path) != 0)
			where_set(why, why_len, "audit.log is missing");
		return VLT_ERR_NOT_FOUND;
	}
	if ((r = verify_file(path, "audit.log", 1, prev, vs, out)) != 0)
		return r;
	if (out->intact && out->lines == 0) {
		if (str_fmt(why, why_len, "%s holds no audit line", dir) != 0)
			where_set(why, why_len, "no audit line");
		return VLT_ERR_NOT_FOUND;
	}
	verify_end(vs, out);
	return 0;
}

int
vault_audit_verify_key(const char *data_dir, const char *key_pem,
    struct vlt_audit_verdict *out, char *why, size_t why_len)
{
	char dir[4096];
	struct vlt_ckpt_key *key = NULL;
	struct vstate vs;
	int r;

	if (data_dir == NULL || out == NULL)
		return VLT_ERR_BAD_PARAM;
	memset(out, 0, sizeof(*out));
	out->intact = 1;
	where_set(why, why_len, "-");
	if (str_fmt(dir, sizeof(dir), "%s/audit", data_dir) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = audit_dir_check(data_dir, dir, why, why_len)) != 0 ||
	    (r = verify_key(dir, key_pem, &key, why, why_len)) != 0)
		return r;
	memset(&vs, 0, sizeof(vs));
	vs.key = key;
	r = verify_files(dir, &vs, out, why, why_len);
	vlt_ckpt_key_free(key);
	return r;
}
