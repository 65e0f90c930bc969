/*
 * errors.c — the Azure error envelope, and the one place where an error
 * becomes an HTTP status and an Azure error code.
 *
 * Must never: put a secret, a token or a request's plaintext into a
 * message. Messages name keys and operations only.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "hsm/base.h"

void
api_resp_set(struct api_resp *r, unsigned status, json_t *body)
{
	freezero_block(r->body); /* it may carry a plaintext */
	r->body = NULL;
	r->body_len = 0;
	r->status = status;
	r->content_type = "application/json; charset=utf-8";
	if (body == NULL) {
		/* a document that could not be made (out of memory) is not
		 * answered as a success without it */
		if (status != 204)
			r->status = 500;
		return;
	}
	r->body = json_dumps(body, JSON_COMPACT);
	r->body_len = r->body ? strlen(r->body) : 0;
	json_decref(body);
	if (r->body == NULL)
		r->status = 500; /* the same for a dump that failed */
}

static void
resp_error_inner(struct api_resp *r, unsigned status, const char *code,
    const char *inner, const char *msg)
{
	json_t *err = json_pack("{s:s, s:s}", "code", code, "message", msg);
	if (err && inner)
		json_object_set_new(err, "innererror",
		    json_pack("{s:s}", "code", inner));
	api_resp_set(r, status, json_pack("{s:o}", "error", err));
}

void
api_resp_error(struct api_resp *r, unsigned status, const char *code,
    const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	/* our own messages: one that would not fit is cut, not dropped */
	va_start(ap, fmt);
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		msg[0] = '\0';
	va_end(ap);
	resp_error_inner(r, status, code, NULL, msg);
}

/* What each error is answered with: the one map from errors to HTTP. A
 * row with a subject other than API_SUBJ_ANY is for that subject only and
 * is looked up first; a message is pre, the key name or the operation
 * (arg), then post. */
#define API_SUBJ_ANY (-1)
enum arg { ARG_NONE, ARG_NAME, ARG_OP };

struct answer {
	int err;
	int subj;
	unsigned status;
	const char *code, *inner;
	int retry_after; /* seconds; 0: no Retry-After */
	int challenge;   /* WWW-Authenticate */
	enum arg arg;
	const char *pre, *post;
};

static const struct answer answers[] = {
	{ VLT_ERR_BAD_PARAM, API_SUBJ_VALUE, 400, "BadParameter", NULL, 0, 0,
	    ARG_NONE, "The value's length does not fit the key and algorithm.",
	    "" },
	{ VLT_ERR_BAD_PARAM, API_SUBJ_TRANSFER, 400, "BadParameter", NULL, 0, 0,
	    ARG_NONE,
	    "The transfer blob cannot be imported: it is not for this key "
	    "exchange key, the key exchange key does not allow import, or the "
	    "blob is damaged.",
	    "" },
	{ VLT_ERR_KEY_TYPE, API_SUBJ_ANY, 400, "BadParameter", NULL, 0, 0,
	    ARG_NONE,
	    "The key in the transfer blob is not of the declared key type "
	    "('key.kty') or curve ('key.crv').",
	    "" },
	{ VLT_ERR_BAD_PARAM, API_SUBJ_BACKUP, 400, "BadParameter", NULL, 0, 0,
	    ARG_NONE,
	    "The backup blob is invalid, damaged, or was made by a vault with "
	    "another security domain.",
	    "" },
	{ VLT_ERR_CONFLICT, API_SUBJ_BACKUP, 409, "Conflict", NULL, 0, 0,
	    ARG_NONE,
	    "A key with the backup's name already exists in this vault (live "
	    "or deleted).",
	    "" },
	/* not "A key ... was not found": this is an identity */
	{ VLT_ERR_NOT_FOUND, API_SUBJ_IDENTITY, 404, "NotFound", NULL, 0, 0,
	    ARG_NONE, "No identity with that objectId.", "" },

	{ VLT_ERR_BAD_PARAM, API_SUBJ_ANY, 400, "BadParameter", NULL, 0, 0,
	    ARG_NAME, "The request is invalid for key '", "'." },
	{ VLT_ERR_NOT_FOUND, API_SUBJ_ANY, 404, "KeyNotFound", NULL, 0, 0,
	    ARG_NAME, "A key with (name/id) ",
	    " was not found in this key vault. If you recently deleted this "
	    "key you may be able to recover it using the correct recovery "
	    "command." },
	{ VLT_ERR_CONFLICT, API_SUBJ_ANY, 409, "Conflict", NULL, 0, 0, ARG_NAME,
	    "A key with name '", "' already exists in this vault." },
	{ VLT_ERR_DELETED_RECOVERABLE, API_SUBJ_ANY, 409, "Conflict",
	    "ObjectIsDeletedButRecoverable", 0, 0, ARG_NAME, "Key ",
	    " is currently in a deleted but recoverable state, and its name "
	    "cannot be reused; in this state, the key can only be recovered or "
	    "purged." },
	{ VLT_ERR_KEY_DISABLED, API_SUBJ_ANY, 403, "Forbidden", NULL, 0, 0,
	    ARG_OP, "Operation ", " is not allowed on a disabled key." },
	{ VLT_ERR_KEY_NOT_YET_VALID, API_SUBJ_ANY, 403, "Forbidden", NULL, 0, 0,
	    ARG_OP, "Operation ",
	    " is not allowed on a key that is not yet valid (nbf is in the "
	    "future)." },
	{ VLT_ERR_KEY_EXPIRED, API_SUBJ_ANY, 403, "Forbidden", NULL, 0, 0,
	    ARG_OP, "Operation ", " is not allowed on an expired key." },
	{ VLT_ERR_OP_NOT_PERMITTED, API_SUBJ_ANY, 403, "Forbidden", NULL, 0, 0,
	    ARG_OP, "Operation ", " is not permitted for this key." },
	{ VLT_ERR_PURGE_PROTECTED, API_SUBJ_ANY, 403, "Forbidden", NULL, 0, 0,
	    ARG_NAME,
	    "Operation \"purge\" is not allowed because purge protection is "
	    "enabled for this vault. Key '",
	    "' will be purged automatically when its retention period ends." },
	/* a failed decryption says nothing about why: no oracle */
	{ VLT_ERR_DECRYPT, API_SUBJ_ANY, 400, "BadParameter", NULL, 0, 0,
	    ARG_NONE,
	    "The ciphertext could not be decrypted with this key and "
	    "algorithm.",
	    "" },
	{ VLT_ERR_UNAUTHORIZED, API_SUBJ_ANY, 401, "Unauthorized", NULL, 0, 1,
	    ARG_NONE, "AKV10000: Request is missing a Bearer or PoP token.",
	    "" },
	{ VLT_ERR_FORBIDDEN, API_SUBJ_ANY, 403, "Forbidden", NULL, 0, 0,
	    ARG_NONE, "The caller may not do this on this vault.", "" },
	{ VLT_ERR_UNAVAILABLE, API_SUBJ_ANY, 503, "ServiceUnavailable", NULL, 1,
	    0, ARG_NONE,
	    "The vault's HSM is temporarily unavailable. Retry later.", "" },
	/* the disk, not the HSM: the operator's fix is another one */
	{ VLT_ERR_STORAGE, API_SUBJ_ANY, 503, "ServiceUnavailable", NULL, 5, 0,
	    ARG_NONE,
	    "The vault's storage cannot be written (disk full or failing). "
	    "Retry later.",
	    "" },
	{ VLT_ERR_SEALED, API_SUBJ_ANY, 503, "ServiceUnavailable", NULL, 5, 0,
	    ARG_NONE,
	    "The vault is sealed: no key operation is served until it is "
	    "unsealed (p11vault unseal, or its unattended method).",
	    "" },
};

static const struct answer internal = { VLT_ERR_INTERNAL, API_SUBJ_ANY, 500,
	"InternalServerError", NULL, 0, 0, ARG_NONE,
	"The server encountered an internal error.", "" };

static const struct answer *
answer_for(int err, enum api_subject subj)
{
	size_t i;

	for (i = 0; i < sizeof(answers) / sizeof(answers[0]); i++)
		if (answers[i].err == err && answers[i].subj == (int)subj)
			return &answers[i];
	for (i = 0; i < sizeof(answers) / sizeof(answers[0]); i++)
		if (answers[i].err == err && answers[i].subj == API_SUBJ_ANY)
			return &answers[i];
	return &internal; /* VLT_ERR_NO_MEMORY, VLT_ERR_INTERNAL, others */
}

void
api_resp_vault_error_in(struct api_resp *r, int err, enum api_subject subj,
    const char *name, const char *op)
{
	const struct answer *a;
	const char *arg;
	char msg[1024];

	if (subj == API_SUBJ_CIPHERTEXT && err == VLT_ERR_BAD_PARAM)
		err = VLT_ERR_DECRYPT;
	a = answer_for(err, subj);
	arg = a->arg == ARG_NAME ? (name ? name : "") :
	    a->arg == ARG_OP     ? (op ? op : "this operation") :
	                           "";
	if (str_fmt(msg, sizeof(msg), "%s%s%s", a->pre, arg, a->post) != 0) {
		a = &internal;
		if (str_fmt(msg, sizeof(msg), "%s", a->pre) != 0)
			msg[0] = '\0';
	}
	resp_error_inner(r, a->status, a->code, a->inner, msg);
	r->retry_after = a->retry_after;
	r->challenge = a->challenge;
}

int
api_resp_bad(struct api_resp *r, const char *msg)
{
	api_resp_error(r, 400, "BadParameter", "%s", msg);
	return VLT_ERR_BAD_PARAM;
}

void
api_resp_vault_error(struct api_resp *r, int err, const char *name,
    const char *op)
{
	api_resp_vault_error_in(r, err, API_SUBJ_KEY, name, op);
}

void
api_resp_unauthorized(struct api_req *q, struct api_resp *r, const char *why)
{
	(void)q;
	api_resp_error(r, 401, "Unauthorized", "%s", why);
	r->challenge = 1;
}

void
api_resp_throttled(struct api_resp *r, const char *reason, unsigned retry_ms)
{
	api_resp_error(r, 429, "Throttled",
	    "Request was not processed because too many requests were "
	    "received. Reason: %s",
	    reason);
	if (retry_ms == 0)
		retry_ms = 1;
	r->retry_after_ms = retry_ms;
	r->retry_after = (int)((retry_ms + 999) / 1000);
}
