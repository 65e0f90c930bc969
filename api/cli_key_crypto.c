/*
 * cli_key_crypto.c — `p11vault key encrypt|decrypt|sign|verify|import|
 * rotation-policy`: the sub-commands that carry a value (a plaintext, a
 * digest, a private key, a policy) from the command line to the vault,
 * in az's input forms (standard base64, PEM, JSON in az's snake_case or
 * the REST API's camelCase) and with az's output.
 *
 * Must never: print a plaintext other than decrypt's result; keep a
 * private key or plaintext in a buffer of ours unwiped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/cli_key.h"
#include "hsm/base.h"
#include "policy/policy.h"

#define KEY_IMPORT_MAX (64 * 1024)

static const char enc_algs[] = "RSA-OAEP RSA-OAEP-256 RSA1_5";
static const char sign_algs[] =
    "ES256 ES256K ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512";

/* resp.kid (borrowed), or null */
static json_t *
kid_of(const json_t *resp)
{
	json_t *k = json_object_get(resp, "kid");

	return k != NULL ? k : json_null();
}

static int
word_in(const char *list, const char *v)
{
	size_t n = strlen(v);
	const char *p = list;

	while (*p != '\0') {
		size_t w = strcspn(p, " ");

		if (w == n && strncmp(p, v, n) == 0)
			return 1;
		p += w + (p[w] == ' ');
	}
	return 0;
}

static API_WUR int
check_alg(const struct key_args *a, const char *algs)
{
	if (word_in(algs, a->val[F_ALGORITHM]))
		return 0;
	return key_bad_arg(
	    "argument --algorithm/-a: invalid choice: '%.32s' "
	    "(choose from %s)",
	    a->val[F_ALGORITHM], algs);
}

/* A standard base64 argument as base64url (free it). */
static API_WUR int
arg_b64(const char *flag, const char *v, char **out)
{
	if ((*out = key_b64_url(v)) == NULL)
		return key_bad_arg("argument %s: not base64: '%.32s…'", flag,
		    v);
	return 0;
}

/* POST /keys/NAME[/VERSION]/op {alg, value[, digest]}: *resp. */
static API_WUR int
crypto_call(cli_session_t *s, const struct key_args *a, const char *op,
    const char *value, const char *digest, json_t **resp)
{
	char path[512];
	json_t *body = json_pack("{s:s, s:s}", "alg", a->val[F_ALGORITHM],
	    "value", value);
	int rc = VLT_ERR_NO_MEMORY;

	*resp = NULL;
	if (body != NULL &&
	    (digest == NULL ||
	        json_object_set_new(body, "digest", json_string(digest)) ==
	            0) &&
	    (rc = key_path(a, op, path, sizeof(path))) == 0)
		rc = cli_session_call_at(s, a->base, "POST", path, body, resp);
	json_decref(body);
	return rc;
}

/* {"algorithm", "kid", member: std base64 of resp.value} + extra nulls */
static API_WUR int
print_result(const struct key_args *a, const json_t *resp, const char *member,
    int encrypt)
{
	json_t *v = key_b64_std(json_string_value(json_object_get(resp,
	    "value")));
	json_t *o = json_pack("{s:s, s:O, s:o}", "algorithm",
	    a->val[F_ALGORITHM], "kid", kid_of(resp), member,
	    v != NULL ? v : json_null());
	int rc = VLT_ERR_NO_MEMORY;

	if (o != NULL && encrypt &&
	    (json_object_set_new(o, "aad", json_null()) != 0 ||
	        json_object_set_new(o, "iv", json_null()) != 0 ||
	        json_object_set_new(o, "tag", json_null()) != 0))
		goto out;
	if (o != NULL && v != NULL)
		rc = cli_print_json(o);
	else
		cli_fail_line("unexpected response from the vault");
out:
	json_decref(o);
	return rc;
}

int
key_encrypt(cli_session_t *s, const struct key_args *a)
{
	const char *v = a->val[F_VALUE];
	json_t *resp = NULL;
	char *b64 = NULL;
	int rc;

	if ((rc = check_alg(a, enc_algs)) != 0)
		return rc;
	if (a->val[F_DATA_TYPE] != NULL &&
	    strcmp(a->val[F_DATA_TYPE], "plaintext") == 0)
		rc = policy_b64url_encode((const uint8_t *)v, strlen(v),
		         &b64) == 0 ?
		    0 :
		    VLT_ERR_NO_MEMORY;
	else
		rc = arg_b64("--value", v, &b64);
	if (rc == 0 &&
	    (rc = crypto_call(s, a, "/encrypt", b64, NULL, &resp)) == 0)
		rc = print_result(a, resp, "result", 1);
	json_decref(resp);
	freezero_str(b64);
	return rc;
}

/* decrypt --data-type plaintext: the plaintext as text. */
static API_WUR int
print_plaintext(const struct key_args *a, const json_t *resp)
{
	const char *v = json_string_value(json_object_get(resp, "value"));
	uint8_t *pt = NULL;
	size_t len = 0;
	json_t *o = NULL;
	int rc = VLT_ERR_IO;

	if (v == NULL || policy_b64url_decode(v, strlen(v), &pt, &len) != 0) {
		cli_fail_line("unexpected response from the vault");
		goto out;
	}
	o = json_pack("{s:s, s:O, s:s%}", "algorithm", a->val[F_ALGORITHM],
	    "kid", kid_of(resp), "result", (const char *)pt, len);
	if (o == NULL) {
		cli_fail_line(
		    "the plaintext is not UTF-8 text; use --data-type "
		    "base64");
		goto out;
	}
	rc = cli_print_json(o);
out:
	json_decref(o);
	if (pt != NULL)
		freezero(pt, len);
	return rc;
}

int
key_decrypt(cli_session_t *s, const struct key_args *a)
{
	json_t *resp = NULL;
	char *b64 = NULL;
	int rc;

	if ((rc = check_alg(a, enc_algs)) != 0 ||
	    (rc = arg_b64("--value", a->val[F_VALUE], &b64)) != 0)
		return rc;
	if ((rc = crypto_call(s, a, "/decrypt", b64, NULL, &resp)) == 0)
		rc = a->val[F_DATA_TYPE] != NULL &&
		        strcmp(a->val[F_DATA_TYPE], "plaintext") == 0 ?
		    print_plaintext(a, resp) :
		    print_result(a, resp, "result", 0);
	json_decref(resp);
	freezero_str(b64);
	return rc;
}

int
key_sign(cli_session_t *s, const struct key_args *a)
{
	json_t *resp = NULL;
	char *dig = NULL;
	int rc;

	if ((rc = check_alg(a, sign_algs)) != 0 ||
	    (rc = arg_b64("--digest", a->val[F_DIGEST], &dig)) != 0)
		return rc;
	if ((rc = crypto_call(s, a, "/sign", dig, NULL, &resp)) == 0)
		rc = print_result(a, resp, "signature", 0);
	json_decref(resp);
	free(dig);
	return rc;
}

int
key_verify(cli_session_t *s, const struct key_args *a)
{
	json_t *resp = NULL, *o = NULL, *valid;
	char *dig = NULL, *sig = NULL, kid[2400];
	int rc;

	if ((rc = check_alg(a, sign_algs)) != 0 ||
	    (rc = arg_b64("--digest", a->val[F_DIGEST], &dig)) != 0 ||
	    (rc = arg_b64("--signature", a->val[F_SIGNATURE], &sig)) != 0)
		goto out;
	if ((rc = crypto_call(s, a, "/verify", sig, dig, &resp)) != 0 ||
	    (rc = key_path(a, "", kid + strlen(a->base),
	         sizeof(kid) - strlen(a->base))) != 0)
		goto out;
	memcpy(kid, a->base, strlen(a->base));
	valid = json_object_get(resp, "value");
	o = json_pack("{s:s, s:b, s:s}", "algorithm", a->val[F_ALGORITHM],
	    "isValid", json_is_true(valid), "kid", kid);
	if (!json_is_boolean(valid) || o == NULL) {
		cli_fail_line("unexpected response from the vault");
		rc = VLT_ERR_IO;
		goto out;
	}
	rc = cli_print_json(o);
out:
	json_decref(o);
	json_decref(resp);
	free(dig);
	free(sig);
	return rc;
}

/* ---- import ---------------------------------------------------------------- */

/* The key to import as a JWK: from --pem-file/--pem-string, or a BYOK
 * blob (--byok-file/--byok-string) as key_hsm with kty X-HSM. */
static API_WUR int
import_jwk(const struct key_args *a, json_t **jwk)
{
	const char *file = a->val[F_PEM_FILE] ? a->val[F_PEM_FILE] :
	                                        a->val[F_BYOK_FILE];
	const char *str = a->val[F_PEM_STRING] ? a->val[F_PEM_STRING] :
	                                         a->val[F_BYOK_STRING];
	int pem = a->val[F_PEM_FILE] || a->val[F_PEM_STRING], rc;
	uint8_t *data = NULL;
	size_t len = 0;
	int nsrc = !!a->val[F_PEM_FILE] + !!a->val[F_PEM_STRING] +
	    !!a->val[F_BYOK_FILE] + !!a->val[F_BYOK_STRING];
	char *b64 = NULL, kty[16];

	*jwk = NULL;
	if (nsrc != 1)
		return key_bad_arg(
		    "usage error: give exactly one of --pem-file, "
		    "--pem-string, --byok-file, --byok-string");
	if (file != NULL &&
	    (rc = key_file_read(file, KEY_IMPORT_MAX, &data, &len)) != 0)
		return rc;
	if (pem)
		rc = key_pem_to_jwk(data != NULL ? (const char *)data : str,
		    data != NULL ? len : strlen(str), a->val[F_PEM_PASSWORD],
		    jwk);
	else if (str_fmt(kty, sizeof(kty), "%s-HSM",
	             a->val[F_KTY] ? a->val[F_KTY] : "RSA") != 0 ||
	    policy_b64url_encode(data != NULL ? data : (const uint8_t *)str,
	        data != NULL ? len : strlen(str), &b64) != 0 ||
	    (*jwk = json_pack("{s:s, s:s}", "kty", kty, "key_hsm", b64)) ==
	        NULL ||
	    (a->val[F_CURVE] &&
	        json_object_set_new(*jwk, "crv",
	            json_string(a->val[F_CURVE])) != 0))
		rc = VLT_ERR_NO_MEMORY;
	else
		rc = 0;
	if (data != NULL)
		freezero(data, len);
	free(b64);
	return rc;
}

int
key_import(cli_session_t *s, const struct key_args *a)
{
	json_t *jwk = NULL, *body = json_object();
	char path[512];
	int rc;

	if (body == NULL)
		return VLT_ERR_NO_MEMORY;
	if ((rc = import_jwk(a, &jwk)) != 0)
		goto out;
	rc = VLT_ERR_NO_MEMORY;
	if ((rc = key_put_common(body, a)) != 0)
		goto out;
	/* az puts --ops in the JWK */
	if (json_object_get(body, "key_ops") != NULL &&
	    json_object_set(jwk, "key_ops", json_object_get(body, "key_ops")) !=
	        0)
		goto out;
	(void)json_object_del(body, "key_ops");
	if (json_object_set(body, "key", jwk) != 0 ||
	    (a->val[F_PROTECTION] != NULL &&
	        json_object_set_new(body, "Hsm",
	            json_boolean(strcmp(a->val[F_PROTECTION], "hsm") == 0)) !=
	            0))
		goto out;
	if ((rc = key_path(a, "", path, sizeof(path))) == 0)
		rc = key_call_print(s, a, "PUT", path, body, key_out_bundle);
out:
	json_decref(jwk);
	json_decref(body);
	return rc;
}

/* ---- rotation policy --------------------------------------------------------- */

int
key_policy_show(cli_session_t *s, const struct key_args *a)
{
	char path[512];
	int rc = key_path(a, "/rotationpolicy", path, sizeof(path));

	return rc != 0 ?
	    rc :
	    key_call_print(s, a, "GET", path, NULL, key_out_policy);
}

/* obj[snake] or obj[camel] */
static json_t *
either(const json_t *obj, const char *snake, const char *camel)
{
	json_t *v = json_object_get(obj, snake);

	return v != NULL ? v : json_object_get(obj, camel);
}

/* One lifetime action in az's input forms ({"action":{"type"}|"Rotate",
 * "trigger":{…}} or the trigger's members beside "action"). */
static json_t *
policy_action(const json_t *e)
{
	json_t *act = json_object_get(e, "action"), *trig, *t = json_object();
	json_t *type = json_is_object(act) ? json_object_get(act, "type") : act;
	json_t *tac, *tbe;

	trig = json_is_object(json_object_get(e, "trigger")) ?
	    json_object_get(e, "trigger") :
	    (json_t *)e;
	tac = either(trig, "time_after_create", "timeAfterCreate");
	tbe = either(trig, "time_before_expiry", "timeBeforeExpiry");
	if (t == NULL || !json_is_string(type) ||
	    (tac != NULL && json_object_set(t, "timeAfterCreate", tac) != 0) ||
	    (tbe != NULL && json_object_set(t, "timeBeforeExpiry", tbe) != 0)) {
		json_decref(t);
		return NULL;
	}
	return json_pack("{s:o, s:{s:O}}", "trigger", t, "action", "type",
	    type);
}

/* az's --value (JSON, or a file of it) as the REST body. */
static API_WUR int
policy_body(const char *value, json_t **out)
{
	json_t *in = NULL, *acts = json_array(), *e, *exp, *attrs;
	json_error_t jerr;
	struct stat st;
	size_t i;
	int rc = VLT_ERR_BAD_PARAM;

	*out = NULL;
	in = stat(value, &st) == 0 ? json_load_file(value, 0, &jerr) :
	                             json_loads(value, 0, &jerr);
	if (!json_is_object(in) || acts == NULL) {
		rc = key_bad_arg(
		    "argument --value: not a JSON object (nor a "
		    "file of one): %.120s",
		    jerr.text);
		goto out;
	}
	json_array_foreach(either(in, "lifetime_actions", "lifetimeActions"), i,
	    e) {
		if (json_array_append_new(acts, policy_action(e)) != 0) {
			rc = key_bad_arg(
			    "argument --value: lifetime action %zu "
			    "needs an action type and a trigger",
			    i);
			goto out;
		}
	}
	attrs = json_object_get(in, "attributes");
	exp = either(attrs != NULL ? attrs : in, "expiry_time", "expiryTime");
	if (exp == NULL)
		exp = either(attrs != NULL ? attrs : in, "expires_in",
		    "expiresIn");
	*out = json_pack("{s:O, s:{}}", "lifetimeActions", acts, "attributes");
	if (*out != NULL && exp != NULL &&
	    json_object_set(json_object_get(*out, "attributes"), "expiryTime",
	        exp) != 0)
		goto out;
	rc = *out != NULL ? 0 : VLT_ERR_NO_MEMORY;
out:
	json_decref(acts);
	json_decref(in);
	return rc;
}

int
key_policy_update(cli_session_t *s, const struct key_args *a)
{
	char path[512];
	json_t *body = NULL;
	int rc;

	if ((rc = policy_body(a->val[F_VALUE], &body)) == 0 &&
	    (rc = key_path(a, "/rotationpolicy", path, sizeof(path))) == 0)
		rc = key_call_print(s, a, "PUT", path, body, key_out_policy);
	json_decref(body);
	return rc;
}
