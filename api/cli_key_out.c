/*
 * cli_key_out.c — what `az keyvault key …` prints, made from the REST
 * bodies: az's transform_key_output (attributes, key, managed,
 * releasePolicy, tags), its list items (the REST item plus "name"), the
 * deleted bundle, the rotation policy; az's camelCase member names,
 * ISO-8601 times ("2024-01-02T03:04:05+00:00") for the REST API's Unix
 * seconds, and standard base64 for its base64url.
 *
 * Must never: copy a private key part into the output (there is none in
 * a REST response; d, p, q, … are printed as null as az does).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/cli_key.h"
#include "hsm/base.h"

static const char b64std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

json_t *
key_b64_std(const char *in)
{
	size_t n = in != NULL ? strlen(in) : 0, i, pad;
	char *out;
	json_t *j;

	while (n > 0 && in[n - 1] == '=')
		n--;
	pad = (4 - n % 4) % 4;
	if (in == NULL || pad == 3 || (out = malloc(n + pad + 1)) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		char c = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];

		if (strchr(b64std, c) == NULL || c == '\0') {
			free(out);
			return NULL;
		}
		out[i] = c;
	}
	memset(out + n, '=', pad);
	out[n + pad] = '\0';
	j = json_string(out);
	freezero(out, n + pad + 1);
	return j;
}

char *
key_b64_url(const char *in)
{
	size_t n = strlen(in), i;
	char *out;

	while (n > 0 && in[n - 1] == '=')
		n--;
	if (n % 4 == 1 || (out = malloc(n + 1)) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		if (in[i] == '\0' || strchr(b64std, in[i]) == NULL) {
			freezero(out, n + 1);
			return NULL;
		}
		out[i] = in[i] == '+' ? '-' : in[i] == '/' ? '_' : in[i];
	}
	out[n] = '\0';
	return out;
}

int
key_time_parse(const char *s, int64_t *out)
{
	static const char *const fmts[] = { "%Y-%m-%dT%H:%M:%SZ",
		"%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%HZ", "%Y-%m-%d" };
	struct tm tm;
	const char *end;
	size_t i;

	for (i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		memset(&tm, 0, sizeof(tm));
		end = strptime(s, fmts[i], &tm);
		if (end != NULL && *end == '\0') {
			*out = (int64_t)timegm(&tm);
			return 0;
		}
	}
	return VLT_ERR_BAD_PARAM;
}

/* Unix seconds as az prints a datetime; null when absent. */
static json_t *
iso_time(const json_t *v)
{
	char buf[64];
	struct tm tm;
	time_t t;

	if (!json_is_integer(v))
		return json_null();
	t = (time_t)json_integer_value(v);
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S+00:00", &tm) == 0)
		return json_null();
	return json_string(buf);
}

/* rest[from] as is (a copy), or null. */
static json_t *
copy_or_null(const json_t *rest, const char *from)
{
	json_t *v = json_object_get(rest, from);

	return v != NULL ? json_deep_copy(v) : json_null();
}

static json_t *
attributes_out(const json_t *ra)
{
	return json_pack("{s:o, s:O, s:o, s:o, s:o, s:o, s:o, s:o}", "created",
	    iso_time(json_object_get(ra, "created")), "enabled",
	    json_object_get(ra, "enabled") ? json_object_get(ra, "enabled") :
	                                     json_null(),
	    "expires", iso_time(json_object_get(ra, "exp")), "exportable",
	    copy_or_null(ra, "exportable"), "notBefore",
	    iso_time(json_object_get(ra, "nbf")), "recoverableDays",
	    copy_or_null(ra, "recoverableDays"), "recoveryLevel",
	    copy_or_null(ra, "recoveryLevel"), "updated",
	    iso_time(json_object_get(ra, "updated")));
}

/* The JsonWebKey as az prints it: every field, binary ones in standard
 * base64, absent ones null. */
static json_t *
jwk_out(const json_t *rk)
{
	static const char *const bin[] = { "d", "dp", "dq", "e", "k", "n", "p",
		"q", "qi", "x", "y" };
	json_t *o = json_pack("{s:o, s:o, s:o, s:o, s:o}", "crv",
	    copy_or_null(rk, "crv"), "keyOps", copy_or_null(rk, "key_ops"),
	    "kid", copy_or_null(rk, "kid"), "kty", copy_or_null(rk, "kty"), "t",
	    json_null());
	const char *s;
	json_t *v;
	size_t i;

	for (i = 0; o != NULL && i < sizeof(bin) / sizeof(bin[0]); i++) {
		s = json_string_value(json_object_get(rk, bin[i]));
		v = s != NULL ? key_b64_std(s) : json_null();
		if (v == NULL || json_object_set_new(o, bin[i], v) != 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

json_t *
key_out_bundle(const json_t *rest)
{
	json_t *key = json_object_get(rest, "key");

	if (!json_is_object(key))
		return NULL;
	return json_pack("{s:o, s:o, s:o, s:o, s:o}", "attributes",
	    attributes_out(json_object_get(rest, "attributes")), "key",
	    jwk_out(key), "managed", copy_or_null(rest, "managed"),
	    "releasePolicy", copy_or_null(rest, "release_policy"), "tags",
	    copy_or_null(rest, "tags"));
}

/* The members a deleted bundle or item adds. */
static int
deleted_members(json_t *o, const json_t *rest)
{
	return o == NULL ||
	        json_object_set_new(o, "deletedDate",
	            iso_time(json_object_get(rest, "deletedDate"))) != 0 ||
	        json_object_set_new(o, "recoveryId",
	            copy_or_null(rest, "recoveryId")) != 0 ||
	        json_object_set_new(o, "scheduledPurgeDate",
	            iso_time(json_object_get(rest, "scheduledPurgeDate"))) !=
	            0 ?
	    -1 :
	    0;
}

json_t *
key_out_deleted(const json_t *rest)
{
	json_t *o = key_out_bundle(rest);

	/* az's track-1 DeletedKeyBundle has no releasePolicy */
	if (o != NULL)
		(void)json_object_del(o, "releasePolicy");
	if (deleted_members(o, rest) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *
key_out_item(const json_t *rest, int deleted)
{
	const char *kid = json_string_value(json_object_get(rest, "kid"));
	const char *p = kid;
	json_t *o, *name = json_null();
	int slash = 0;

	/* az: kid.split('/')[4] */
	for (; p != NULL && *p != '\0' && slash < 4; p++)
		slash += *p == '/';
	if (p != NULL && slash == 4)
		name = json_stringn(p, strcspn(p, "/"));
	o = json_pack("{s:o, s:o, s:o, s:o, s:o}", "attributes",
	    attributes_out(json_object_get(rest, "attributes")), "kid",
	    copy_or_null(rest, "kid"), "managed", copy_or_null(rest, "managed"),
	    "name", name, "tags", copy_or_null(rest, "tags"));
	if (deleted && deleted_members(o, rest) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *
key_out_policy(const json_t *rest)
{
	json_t *acts = json_array(), *e,
	       *attrs = json_object_get(rest, "attributes");
	size_t i;

	if (acts == NULL)
		return NULL;
	json_array_foreach(json_object_get(rest, "lifetimeActions"), i, e) {
		json_t *trig = json_object_get(e, "trigger");

		if (json_array_append_new(acts,
		        json_pack("{s:o, s:o, s:o}", "action",
		            copy_or_null(json_object_get(e, "action"), "type"),
		            "timeAfterCreate",
		            copy_or_null(trig, "timeAfterCreate"),
		            "timeBeforeExpiry",
		            copy_or_null(trig, "timeBeforeExpiry"))) != 0) {
			json_decref(acts);
			return NULL;
		}
	}
	return json_pack("{s:o, s:o, s:o, s:o, s:o}", "createdOn",
	    iso_time(json_object_get(attrs, "created")), "expiresIn",
	    copy_or_null(attrs, "expiryTime"), "id", copy_or_null(rest, "id"),
	    "lifetimeActions", acts, "updatedOn",
	    iso_time(json_object_get(attrs, "updated")));
}
