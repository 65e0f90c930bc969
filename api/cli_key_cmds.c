/*
 * cli_key_cmds.c — one function per `p11vault key` sub-command: the REST
 * request az's SDK would send for it (keys API, api-version 7.6), and the
 * answer printed in az's shape (cli_key_out.c). cli_key.c has already
 * checked the command line and found the vault (a->base) and the key
 * (a->name, a->version).
 *
 * Must never: print a plaintext except as decrypt's result; keep one
 * (bodies pass through Jansson, whose frees wipe, and freezero).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "api/cli_key.h"
#include "hsm/base.h"
#include "policy/policy.h"

#define KEY_FILE_MAX (256 * 1024)
#define KEY_PAGES_MAX 4096
#define KEY_PAGE_SIZE 25

typedef json_t *(*key_shape)(const json_t *rest);

/* ---- small helpers --------------------------------------------------------- */

int
key_bad_arg(const char *fmt, ...)
{
	va_list ap;

	fputs("p11vault key: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return VLT_ERR_BAD_PARAM;
}

/* "/keys/NAME[/VERSION][SUFFIX]" */
int
key_path(const struct key_args *a, const char *suffix, char *out, size_t cap)
{
	if (str_fmt(out, cap, "/keys/%s%s%s%s", a->name,
	        a->version[0] != '\0' ? "/" : "", a->version, suffix) != 0) {
		cli_fail_line("request path too long");
		return VLT_ERR_IO;
	}
	return 0;
}

/* Prints shape(resp), or resp itself when shape is NULL. */
static API_WUR int
print_shaped(json_t *resp, key_shape shape)
{
	json_t *o = shape != NULL ? shape(resp) : json_incref(resp);
	int rc;

	if (o == NULL) {
		cli_fail_line("unexpected response from the vault");
		return VLT_ERR_IO;
	}
	rc = cli_print_json(o);
	json_decref(o);
	return rc;
}

/* One call at the vault, its answer printed in az's shape. */
int
key_call_print(cli_session_t *s, const struct key_args *a, const char *method,
    const char *path, const json_t *body, key_shape shape)
{
	json_t *resp = NULL;
	int rc = cli_session_call_at(s, a->base, method, path, body, &resp);

	if (rc == 0 && resp != NULL)
		rc = print_shaped(resp, shape);
	json_decref(resp);
	return rc;
}

static API_WUR int
is_true(const char *v)
{
	return v != NULL && strcmp(v, "true") == 0;
}

/* --enabled/--disabled, --not-before, --expires into body.attributes. */
static API_WUR int
put_attributes(json_t *body, const struct key_args *a)
{
	json_t *attrs = json_object();
	int64_t t;
	int rc = VLT_ERR_NO_MEMORY;

	if (attrs == NULL)
		return rc;
	if ((a->val[F_ENABLED] != NULL &&
	        json_object_set_new(attrs, "enabled",
	            json_boolean(is_true(a->val[F_ENABLED]))) != 0) ||
	    (a->val[F_DISABLED] != NULL &&
	        json_object_set_new(attrs, "enabled",
	            json_boolean(!is_true(a->val[F_DISABLED]))) != 0))
		goto out;
	for (int i = 0; i < 2; i++) {
		const char *v = a->val[i == 0 ? F_NOT_BEFORE : F_EXPIRES];

		if (v == NULL)
			continue;
		if (key_time_parse(v, &t) != 0) {
			rc = key_bad_arg(
			    "argument --%s: invalid datetime value: "
			    "'%.64s' (Y-m-d'T'H:M:S'Z')",
			    i == 0 ? "not-before" : "expires", v);
			goto out;
		}
		if (json_object_set_new(attrs, i == 0 ? "nbf" : "exp",
		        json_integer((json_int_t)t)) != 0)
			goto out;
	}
	rc = json_object_size(attrs) == 0 ? 0 :
	    json_object_set(body, "attributes", attrs) != 0 ?
	                                    VLT_ERR_NO_MEMORY :
	                                    0;
out:
	json_decref(attrs);
	return rc;
}

/* --ops into body.key_ops (member), --tags k[=v]… into body.tags ('' or
 * nothing after --tags: {}, which clears them, as az does). */
static API_WUR int
put_ops_tags(json_t *body, const struct key_args *a, const char *member)
{
	json_t *ops = json_array(), *tags = json_object();
	size_t i;
	int rc = VLT_ERR_NO_MEMORY;

	if (ops == NULL || tags == NULL)
		goto out;
	for (i = 0; i < a->nmulti[0]; i++)
		if (json_array_append_new(ops, json_string(a->multi[0][i])) !=
		    0)
			goto out;
	for (i = 0; i < a->nmulti[1]; i++) {
		const char *t = a->multi[1][i], *eq = strchr(t, '=');
		size_t klen = eq != NULL ? (size_t)(eq - t) : strlen(t);

		if (klen == 0 || (t[0] == '\'' && t[1] == '\'' && !t[2]))
			continue;
		if (json_object_setn_new(tags, t, klen,
		        json_string(eq != NULL ? eq + 1 : "")) != 0)
			goto out;
	}
	rc = 0;
	if (a->given[F_OPS] && json_object_set(body, member, ops) != 0)
		rc = VLT_ERR_NO_MEMORY;
	if (a->given[F_TAGS] && json_object_set(body, "tags", tags) != 0)
		rc = VLT_ERR_NO_MEMORY;
out:
	if (rc == VLT_ERR_NO_MEMORY)
		cli_fail_line(
		    "cannot build the request (is every value "
		    "UTF-8?)");
	json_decref(ops);
	json_decref(tags);
	return rc;
}

int
key_put_common(json_t *body, const struct key_args *a)
{
	int rc = put_attributes(body, a);

	return rc != 0 ? rc : put_ops_tags(body, a, "key_ops");
}

/* ---- management ------------------------------------------------------------ */

/* az's validate_key_type: the kty from --kty, --curve and --protection. */
static API_WUR int
create_kty(const struct key_args *a, char *kty, size_t cap)
{
	const char *k = a->val[F_KTY] ? a->val[F_KTY] :
	    a->val[F_CURVE]           ? "EC" :
	                                "RSA";
	const char *prot = a->val[F_PROTECTION];
	int hsm = strstr(k, "-HSM") != NULL;

	if (prot != NULL && strcmp(prot, "software") == 0 && hsm)
		return key_bad_arg(
		    "usage error: the key type %s is invalid for "
		    "software protected keys; omit --protection",
		    k);
	if (str_fmt(kty, cap, "%s%s", k,
	        prot != NULL && strcmp(prot, "hsm") == 0 && !hsm ? "-HSM" :
	                                                           "") != 0)
		return VLT_ERR_BAD_PARAM;
	return 0;
}

int
key_create(cli_session_t *s, const struct key_args *a)
{
	json_t *body = json_object();
	char kty[32], path[512];
	uint64_t size = 0;
	int rc;

	if (body == NULL)
		return VLT_ERR_NO_MEMORY;
	if ((rc = create_kty(a, kty, sizeof(kty))) != 0)
		goto out;
	if (a->val[F_SIZE] != NULL &&
	    parse_u64(a->val[F_SIZE], 65536, &size) != 0) {
		rc = key_bad_arg("argument --size: invalid int value: '%.32s'",
		    a->val[F_SIZE]);
		goto out;
	}
	rc = VLT_ERR_NO_MEMORY;
	if (json_object_set_new(body, "kty", json_string(kty)) != 0 ||
	    (size != 0 &&
	        json_object_set_new(body, "key_size",
	            json_integer((json_int_t)size)) != 0) ||
	    (a->val[F_CURVE] != NULL &&
	        json_object_set_new(body, "crv",
	            json_string(a->val[F_CURVE])) != 0))
		goto out;
	if ((rc = key_put_common(body, a)) != 0 ||
	    (rc = key_path(a, "/create", path, sizeof(path))) != 0)
		goto out;
	rc = key_call_print(s, a, "POST", path, body, key_out_bundle);
out:
	json_decref(body);
	return rc;
}

int
key_show(cli_session_t *s, const struct key_args *a)
{
	char path[512];
	int rc = key_path(a, "", path, sizeof(path));

	return rc != 0 ?
	    rc :
	    key_call_print(s, a, "GET", path, NULL, key_out_bundle);
}

int
key_set_attributes(cli_session_t *s, const struct key_args *a)
{
	json_t *body = json_object();
	char path[512];
	int rc = VLT_ERR_NO_MEMORY;

	if (body != NULL && (rc = key_put_common(body, a)) == 0 &&
	    (rc = key_path(a, "", path, sizeof(path))) == 0)
		rc = key_call_print(s, a, "PATCH", path, body, key_out_bundle);
	json_decref(body);
	return rc;
}

int
key_delete(cli_session_t *s, const struct key_args *a)
{
	char path[512];
	struct key_args b = *a;
	int rc;

	b.version[0] = '\0';
	rc = key_path(&b, "", path, sizeof(path));
	return rc != 0 ?
	    rc :
	    key_call_print(s, a, "DELETE", path, NULL, key_out_deleted);
}

/* /deletedkeys/NAME[SUFFIX] */
static API_WUR int
deleted_call(cli_session_t *s, const struct key_args *a, const char *method,
    const char *suffix, key_shape shape)
{
	char path[512];

	if (str_fmt(path, sizeof(path), "/deletedkeys/%s%s", a->name, suffix) !=
	    0) {
		cli_fail_line("request path too long");
		return VLT_ERR_IO;
	}
	return key_call_print(s, a, method, path, NULL, shape);
}

int
key_recover(cli_session_t *s, const struct key_args *a)
{
	return deleted_call(s, a, "POST", "/recover", key_out_bundle);
}

int
key_purge(cli_session_t *s, const struct key_args *a)
{
	return deleted_call(s, a, "DELETE", "", NULL); /* 204: prints nothing */
}

int
key_rotate(cli_session_t *s, const struct key_args *a)
{
	struct key_args b = *a;
	char path[512];
	int rc;

	b.version[0] = '\0';
	rc = key_path(&b, "/rotate", path, sizeof(path));
	return rc != 0 ?
	    rc :
	    key_call_print(s, a, "POST", path, NULL, key_out_bundle);
}

/* ---- lists --------------------------------------------------------------- */

/* nextLink's path and query, its api-version dropped (the session adds
 * its own), if it is on this vault. */
static API_WUR int
next_path(const struct key_args *a, const char *link, char *out, size_t cap)
{
	size_t blen = strlen(a->base), o, n;
	const char *p = link + blen, *q;
	int first = 1;

	if (strncasecmp(link, a->base, blen) != 0 || *p != '/')
		return VLT_ERR_IO;
	o = strcspn(p, "?");
	if (o >= cap)
		return VLT_ERR_IO;
	memcpy(out, p, o);
	for (q = p + o; *q != '\0'; q += n) {
		q++; /* the '?' or '&' */
		n = strcspn(q, "&");
		if (n == 0 || strncasecmp(q, "api-version=", 12) == 0 ||
		    strncasecmp(q, "api%2Dversion=", 14) == 0)
			continue;
		if (o + n + 2 > cap)
			return VLT_ERR_IO;
		out[o++] = first ? '?' : '&';
		memcpy(out + o, q, n);
		o += n;
		first = 0;
	}
	out[o] = '\0';
	return 0;
}

/* Every page of GET path (at most max items; 0: all), az's list items. */
static API_WUR int
list_all(cli_session_t *s, const struct key_args *a, const char *first,
    int deleted)
{
	char path[4096];
	json_t *all = json_array(), *resp = NULL, *e;
	uint64_t max = 0;
	size_t i, pages;
	int rc = VLT_ERR_NO_MEMORY;

	if (a->val[F_MAXRESULTS] != NULL &&
	    parse_u64(a->val[F_MAXRESULTS], 1000000, &max) != 0) {
		json_decref(all);
		return key_bad_arg(
		    "argument --maxresults: invalid int value: "
		    "'%.32s'",
		    a->val[F_MAXRESULTS]);
	}
	if (all == NULL ||
	    str_fmt(path, sizeof(path), "%s?maxresults=%d", first,
	        max > 0 && max < KEY_PAGE_SIZE ? (int)max : KEY_PAGE_SIZE) != 0)
		goto out;
	for (pages = 0; pages < KEY_PAGES_MAX; pages++) {
		const char *link;

		if ((rc = cli_session_call_at(s, a->base, "GET", path, NULL,
		         &resp)) != 0)
			goto out;
		json_array_foreach(json_object_get(resp, "value"), i, e) {
			if ((max == 0 || json_array_size(all) < max) &&
			    json_array_append_new(all,
			        key_out_item(e, deleted)) != 0) {
				rc = VLT_ERR_NO_MEMORY;
				goto out;
			}
		}
		link = json_string_value(json_object_get(resp, "nextLink"));
		if (link == NULL || (max != 0 && json_array_size(all) >= max))
			break;
		if ((rc = next_path(a, link, path, sizeof(path))) != 0) {
			cli_fail_line("the vault's nextLink is not on it");
			goto out;
		}
		json_decref(resp);
		resp = NULL;
	}
	rc = cli_print_json(all);
out:
	json_decref(resp);
	json_decref(all);
	return rc;
}

int
key_list(cli_session_t *s, const struct key_args *a)
{
	return list_all(s, a, "/keys", 0);
}

int
key_list_versions(cli_session_t *s, const struct key_args *a)
{
	char path[512];

	if (str_fmt(path, sizeof(path), "/keys/%s/versions", a->name) != 0)
		return VLT_ERR_IO;
	return list_all(s, a, path, 0);
}

int
key_list_deleted(cli_session_t *s, const struct key_args *a)
{
	return list_all(s, a, "/deletedkeys", 1);
}

/* ---- backup, restore, download --------------------------------------------- */

int
key_backup(cli_session_t *s, const struct key_args *a)
{
	char path[512];
	json_t *resp = NULL;
	const char *v;
	uint8_t *blob = NULL;
	size_t len = 0;
	int rc;

	if ((rc = key_path(a, "/backup", path, sizeof(path))) != 0 ||
	    (rc = cli_session_call_at(s, a->base, "POST", path, NULL, &resp)) !=
	        0)
		goto out;
	v = json_string_value(json_object_get(resp, "value"));
	if (v == NULL || policy_b64url_decode(v, strlen(v), &blob, &len) != 0) {
		cli_fail_line("unexpected response from the vault");
		rc = VLT_ERR_IO;
		goto out;
	}
	rc = key_file_write(a->val[F_FILE], blob, len);
out:
	free(blob);
	json_decref(resp);
	return rc;
}

int
key_restore(cli_session_t *s, const struct key_args *a)
{
	uint8_t *data = NULL;
	char *b64 = NULL;
	json_t *body = NULL;
	size_t len = 0;
	int rc;

	if ((rc = key_file_read(a->val[F_FILE], KEY_FILE_MAX, &data, &len)) !=
	    0)
		return rc;
	rc = VLT_ERR_NO_MEMORY;
	if (policy_b64url_encode(data, len, &b64) == 0 &&
	    (body = json_pack("{s:s}", "value", b64)) != NULL)
		rc = key_call_print(s, a, "POST", "/keys/restore", body,
		    key_out_bundle);
	json_decref(body);
	free(b64);
	free(data);
	return rc;
}

int
key_download(cli_session_t *s, const struct key_args *a)
{
	struct stat st;
	char path[512];
	json_t *resp = NULL;
	int rc;

	if (stat(a->val[F_FILE], &st) == 0) {
		cli_fail_line(
		    "File or directory named '%.200s' already exists.",
		    a->val[F_FILE]);
		return VLT_ERR_IO;
	}
	if ((rc = key_path(a, "", path, sizeof(path))) == 0 &&
	    (rc = cli_session_call_at(s, a->base, "GET", path, NULL, &resp)) ==
	        0)
		rc = key_jwk_write_public(json_object_get(resp, "key"),
		    a->val[F_FILE],
		    a->val[F_ENCODING] != NULL &&
		        strcmp(a->val[F_ENCODING], "DER") == 0);
	json_decref(resp);
	return rc;
}
