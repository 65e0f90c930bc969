/*
 * vault/backup.c — backup and restore of a key: every version with its
 * attributes and blob, serialized and sealed as a whole in the token
 * (AES-256-GCM under the token's backup key), and brought back with the
 * same names and versions.
 *
 * Payload (before sealing): "P11K" | u8 1 | u32 count | per version,
 * oldest first: str name, str version, u32 kty, hsm, key_size, crv,
 * key_ops, enabled, u64 nbf, exp, created, updated, u32 has_tags, str
 * tags, bytes spki, bytes blob. str/bytes: u32 length + data. Integers
 * big-endian.
 *
 * Must never: put an unbound blob in a backup (restore would bind it to
 * whatever the backup names); trust a payload the token did not open.
 */
#include "vault/vault_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hsm/base.h"
#include "vault/info.h"

#define BK_MAGIC "P11K"
#define BK_VERSION 1
#define BK_VERSIONS_MAX 10000
#define BK_BYTES_MAX (128u * 1024 * 1024)

static int
put_u64(buf_t *b, uint64_t x)
{
	int r;

	if ((r = buf_put_u32(b, (uint32_t)(x >> 32))) != 0)
		return r;
	return buf_put_u32(b, (uint32_t)x);
}

static int
put_version(buf_t *b, const struct vlt_key_info *k, const uint8_t *blob,
    size_t blob_len)
{
	const char *tags = k->tags != NULL ? k->tags : "";

	if (buf_put_lp(b, k->name, strlen(k->name)) != 0 ||
	    buf_put_lp(b, k->version, strlen(k->version)) != 0 ||
	    buf_put_u32(b, (uint32_t)k->kty) != 0 ||
	    buf_put_u32(b, (uint32_t)k->hsm) != 0 ||
	    buf_put_u32(b, k->key_size) != 0 ||
	    buf_put_u32(b, (uint32_t)k->crv) != 0 ||
	    buf_put_u32(b, k->key_ops) != 0 ||
	    buf_put_u32(b, (uint32_t)k->attrs.enabled) != 0 ||
	    put_u64(b, (uint64_t)k->attrs.nbf) != 0 ||
	    put_u64(b, (uint64_t)k->attrs.exp) != 0 ||
	    put_u64(b, (uint64_t)k->attrs.created) != 0 ||
	    put_u64(b, (uint64_t)k->attrs.updated) != 0 ||
	    buf_put_u32(b, k->tags != NULL) != 0 ||
	    buf_put_lp(b, tags, strlen(tags)) != 0 ||
	    buf_put_lp(b, k->spki, k->spki_len) != 0 ||
	    buf_put_lp(b, blob, blob_len) != 0)
		return VLT_ERR_NO_MEMORY;
	return 0;
}

/* Serializes one page of versions (with their blobs) into body. */
static int
put_page(vault_t *v, const char *name, const struct vlt_key_info *items,
    size_t n, buf_t *body, size_t *count)
{
	struct vlt_key_info k;
	uint8_t *blob = NULL;
	size_t i, blob_len = 0;
	int r = 0;

	for (i = 0; r == 0 && i < n; i++) {
		r = store_version_get(v->store, name, items[i].version, 0, &k,
		    &blob, &blob_len);
		if (r != 0)
			break;
		/* the store's blobs were bound at its upgrade (upgrade.c): an
		 * unbound one is planted, and a backup would have restore
		 * bind it */
		if (blob_format_of(blob, blob_len) != HSM_BLOB_FORMAT_CURRENT)
			r = VLT_ERR_INTERNAL;
		else
			r = put_version(body, &k, blob, blob_len);
		(*count)++;
		vlt_key_info_clear(&k);
		free(blob);
		blob = NULL;
	}
	return r;
}

/* Every version of a live key, oldest first, into body. */
static int
put_versions(vault_t *v, const char *name, buf_t *body, size_t *count)
{
	struct vlt_key_info *items = NULL;
	int64_t after = 0, last = 0;
	size_t n = 0;
	int more = 1, r = 0;

	*count = 0;
	while (more && r == 0) {
		r = store_version_list(v->store, name, after, VLT_MAX_RESULTS,
		    &items, &n, &last, &more);
		if (r != 0)
			break;
		r = put_page(v, name, items, n, body, count);
		vlt_key_info_free_array(items, n);
		items = NULL;
		after = last;
		if (n == 0)
			break;
	}
	return r;
}

int
vault_key_backup(vault_t *v, const char *name, uint8_t **out, size_t *out_len)
{
	struct vlt_key_info k;
	buf_t *body = NULL, *all = NULL;
	size_t count = 0;
	int r;

	if (out != NULL)
		*out = NULL;
	if (v == NULL || out == NULL || out_len == NULL ||
	    vault_name_check(name) != 0)
		return VLT_ERR_BAD_PARAM;
	/* the key must be live: NOT_FOUND otherwise */
	if ((r = store_version_get(v->store, name, NULL, 0, &k, NULL, NULL)) !=
	    0)
		return r;
	vlt_key_info_clear(&k);
	if ((body = buf_new(BK_BYTES_MAX)) == NULL ||
	    (all = buf_new(BK_BYTES_MAX)) == NULL) {
		r = VLT_ERR_NO_MEMORY;
		goto out;
	}
	if ((r = put_versions(v, name, body, &count)) != 0)
		goto out;
	if (count == 0 || count > BK_VERSIONS_MAX) {
		r = VLT_ERR_INTERNAL;
		goto out;
	}
	if (buf_put(all, BK_MAGIC, 4) != 0 ||
	    buf_put_u8(all, BK_VERSION) != 0 ||
	    buf_put_u32(all, (uint32_t)count) != 0 ||
	    buf_put(all, buf_ptr(body), buf_len(body)) != 0) {
		r = VLT_ERR_NO_MEMORY;
		goto out;
	}
	r = map_hsm(hsm_seal(v->hsm, buf_ptr(all), buf_len(all), out, out_len));
out:
	buf_free(body);
	buf_free(all);
	return r;
}

/* ---- restore ------------------------------------------------------------ */

struct rd {
	const uint8_t *p;
	size_t left;
	int err;
};

static uint64_t
rd_uint(struct rd *r, size_t n)
{
	uint64_t x = 0;
	size_t i;

	if (r->err || r->left < n) {
		r->err = 1;
		return 0;
	}
	for (i = 0; i < n; i++)
		x = x << 8 | r->p[i];
	r->p += n;
	r->left -= n;
	return x;
}

static const uint8_t *
rd_bytes(struct rd *r, size_t *n)
{
	const uint8_t *d;

	*n = (size_t)rd_uint(r, 4);
	if (r->err || r->left < *n) {
		r->err = 1;
		return NULL;
	}
	d = r->p;
	r->p += *n;
	r->left -= *n;
	return d;
}

static void
rd_str(struct rd *r, char *dst, size_t cap)
{
	size_t n;
	const uint8_t *d = rd_bytes(r, &n);

	if (d == NULL || n >= cap || memchr(d, 0, n) != NULL) {
		r->err = 1;
		dst[0] = '\0';
		return;
	}
	memcpy(dst, d, n);
	dst[n] = '\0';
}

/* A non-empty byte string, malloc'd into *out. */
static void
rd_dup(struct rd *r, uint8_t **out, size_t *len)
{
	const uint8_t *d = rd_bytes(r, len);

	if (d == NULL || *len == 0 || bytes_dup(d, *len, out) != 0)
		r->err = 1;
}

/* One version of the payload into k and its blob. */
static int
rd_version(struct rd *rd, struct vlt_key_info *k, uint8_t **blob,
    size_t *blob_len)
{
	const uint8_t *d;
	size_t n;
	int has_tags;

	rd_str(rd, k->name, sizeof(k->name));
	rd_str(rd, k->version, sizeof(k->version));
	k->kty = (enum vlt_kty)rd_uint(rd, 4);
	k->hsm = (int)rd_uint(rd, 4);
	k->key_size = (unsigned)rd_uint(rd, 4);
	k->crv = (enum vlt_curve)rd_uint(rd, 4);
	k->key_ops = (unsigned)rd_uint(rd, 4);
	k->attrs.enabled = (int)rd_uint(rd, 4);
	k->attrs.nbf = (int64_t)rd_uint(rd, 8);
	k->attrs.exp = (int64_t)rd_uint(rd, 8);
	k->attrs.created = (int64_t)rd_uint(rd, 8);
	k->attrs.updated = (int64_t)rd_uint(rd, 8);
	has_tags = rd_uint(rd, 4) != 0;
	d = rd_bytes(rd, &n);
	if (has_tags && d != NULL &&
	    (k->tags = strndup((const char *)d, n)) == NULL)
		return VLT_ERR_NO_MEMORY;
	rd_dup(rd, &k->spki, &k->spki_len);
	rd_dup(rd, blob, blob_len);
	return 0;
}

/* The versions of a restore, with their blobs; free with restore_free. */
struct restore {
	struct vlt_key_info *ks;
	uint8_t **blobs;
	size_t *lens;
	size_t count;
};

static void
restore_free(struct restore *rs)
{
	size_t i;

	for (i = 0; rs->ks != NULL && i < rs->count; i++)
		vlt_key_info_clear(&rs->ks[i]);
	for (i = 0; rs->blobs != NULL && i < rs->count; i++)
		free(rs->blobs[i]);
	free(rs->ks);
	free(rs->blobs);
	free(rs->lens);
	memset(rs, 0, sizeof(*rs));
}

/* Parses an opened payload: VLT_ERR_BAD_PARAM when it is malformed, or
 * its versions are not all one well-formed key. */
static int
restore_parse(const uint8_t *plain, size_t plain_len, struct restore *rs)
{
	struct rd rd = { plain, plain_len, 0 };
	const char *ver;
	size_t i;
	int r;

	if (plain_len < 9 || memcmp(plain, BK_MAGIC, 4) != 0 ||
	    plain[4] != BK_VERSION)
		return VLT_ERR_BAD_PARAM;
	rd.p += 5;
	rd.left -= 5;
	rs->count = (size_t)rd_uint(&rd, 4);
	if (rd.err || rs->count == 0 || rs->count > BK_VERSIONS_MAX)
		return VLT_ERR_BAD_PARAM;
	if ((rs->ks = calloc(rs->count, sizeof(*rs->ks))) == NULL ||
	    (rs->blobs = calloc(rs->count, sizeof(*rs->blobs))) == NULL ||
	    (rs->lens = calloc(rs->count, sizeof(*rs->lens))) == NULL)
		return VLT_ERR_NO_MEMORY;
	for (i = 0; i < rs->count && !rd.err; i++) {
		struct vlt_key_info *k = &rs->ks[i];

		if ((r = rd_version(&rd, k, &rs->blobs[i], &rs->lens[i])) != 0)
			return r;
		if (!rd.err &&
		    (vault_name_check(k->name) != 0 ||
		        version_arg(k->version, &ver) != 0 || ver == NULL ||
		        strcasecmp(k->name, rs->ks[0].name) != 0 ||
		        check_ops(k->kty, k->key_ops) != 0))
			rd.err = 1;
	}
	return rd.err || rd.left != 0 ? VLT_ERR_BAD_PARAM : 0;
}

/* A backup keeps each blob's name and version, so its blobs stay bound;
 * one made before blobs were bound is bound now. The sealed payload is
 * authentic (the backup key), so its rows are trusted. */
static int
restore_bind_legacy(vault_t *v, struct restore *rs)
{
	char bind[BIND_MAX];
	uint8_t *up;
	size_t i, up_len;
	int r;

	for (i = 0; i < rs->count; i++) {
		unsigned f = blob_format_of(rs->blobs[i], rs->lens[i]);

		if (f == 0 || f == HSM_BLOB_FORMAT_CURRENT)
			continue;
		if ((r = blob_bind(v, bind, rs->ks[i].name,
		         rs->ks[i].version)) != 0)
			return r;
		up = NULL;
		up_len = 0;
		r = hsm_blob_upgrade(v->hsm, bind, rs->blobs[i], rs->lens[i],
		    &up, &up_len);
		if (r != 0)
			return r == HSM_ERR_UNAVAILABLE ||
			        r == HSM_ERR_NO_MEMORY ?
			    map_hsm(r) :
			    VLT_ERR_BAD_PARAM;
		free(rs->blobs[i]);
		rs->blobs[i] = up;
		rs->lens[i] = up_len;
	}
	return 0;
}

int
vault_key_restore(vault_t *v, const uint8_t *in, size_t len,
    struct vlt_key_info *out)
{
	struct restore rs;
	struct vlt_key_info probe;
	uint8_t *plain = NULL;
	size_t plain_len = 0;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	memset(&rs, 0, sizeof(rs));
	if (v == NULL || in == NULL || len == 0)
		return VLT_ERR_BAD_PARAM;
	r = hsm_unseal(v->hsm, in, len, &plain, &plain_len);
	if (r != 0)
		return r == HSM_ERR_DECRYPT || r == HSM_ERR_ARGS ?
		    VLT_ERR_BAD_PARAM :
		    map_hsm(r);
	if ((r = restore_parse(plain, plain_len, &rs)) != 0 ||
	    (r = restore_bind_legacy(v, &rs)) != 0 ||
	    (r = store_key_restore(v->store, rs.ks, rs.blobs, rs.lens,
	         rs.count)) != 0)
		goto out;
	r = store_version_get(v->store, rs.ks[0].name, NULL, 0, &probe, NULL,
	    NULL);
	if (r == 0)
		key_info_give(&probe, out);
out:
	restore_free(&rs);
	freezero(plain, plain_len);
	return r;
}
