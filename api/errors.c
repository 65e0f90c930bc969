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
	api_wipe_free(r->body); /* it may carry a plaintext */
	r->body = NULL;
	r->body_len = 0;
	r->status = status;
	r->content_type = "application/json; charset=utf-8";
	if (body == NULL)
		return;
	r->body = json_dumps(body, JSON_COMPACT);
	r->body_len = r->body ? strlen(r->body) : 0;
	json_decref(body);
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

/* The answers that depend on what the request was about; 0 when the
 * subject has nothing of its own to say about err. */
static int
subject_error(struct api_resp *r, int err, enum api_subject subj)
{
	if (subj == API_SUBJ_VALUE && err == VLT_ERR_BAD_PARAM) {
		api_resp_error(r, 400, "BadParameter",
		    "The value's length does not fit the key and algorithm.");
		return 1;
	}
	if (subj == API_SUBJ_TRANSFER && err == VLT_ERR_BAD_PARAM) {
		api_resp_error(r, 400, "BadParameter",
		    "The transfer blob "
		    "cannot be imported: it is not for this key exchange key, "
		    "the key exchange key does not allow import, or the blob is "
		    "damaged.");
		return 1;
	}
	if (subj == API_SUBJ_BACKUP && err == VLT_ERR_BAD_PARAM) {
		api_resp_error(r, 400, "BadParameter",
		    "The backup blob is "
		    "invalid, damaged, or was made by a vault with another "
		    "security domain.");
		return 1;
	}
	if (subj == API_SUBJ_BACKUP && err == VLT_ERR_CONFLICT) {
		api_resp_error(r, 409, "Conflict",
		    "A key with the backup's "
		    "name already exists in this vault (live or deleted).");
		return 1;
	}
	if (subj == API_SUBJ_IDENTITY && err == VLT_ERR_NOT_FOUND) {
		/* not "A key ... was not found": this is an identity */
		api_resp_error(r, 404, "NotFound",
		    "No identity with that objectId.");
		return 1;
	}
	return 0;
}

/* The errors that are about a key, or about the caller. */
static int
key_error(struct api_resp *r, int err, const char *n, const char *o)
{
	char msg[1024];

	switch (err) {
	case VLT_ERR_BAD_PARAM:
		api_resp_error(r, 400, "BadParameter",
		    "The request is invalid for key '%s'.", n);
		return 1;
	case VLT_ERR_NOT_FOUND:
		api_resp_error(r, 404, "KeyNotFound",
		    "A key with (name/id) %s was not found in this key vault. "
		    "If you recently deleted this key you may be able to "
		    "recover it using the correct recovery command.",
		    n);
		return 1;
	case VLT_ERR_CONFLICT:
		api_resp_error(r, 409, "Conflict",
		    "A key with name '%s' already exists in this vault.", n);
		return 1;
	case VLT_ERR_DELETED_RECOVERABLE:
		if (str_fmt(msg, sizeof(msg),
		        "Key %s is currently in a deleted "
		        "but recoverable state, and its name cannot be reused; in "
		        "this state, the key can only be recovered or purged.",
		        n) != 0)
			return 0;
		resp_error_inner(r, 409, "Conflict",
		    "ObjectIsDeletedButRecoverable", msg);
		return 1;
	case VLT_ERR_KEY_DISABLED:
		api_resp_error(r, 403, "Forbidden",
		    "Operation %s is not allowed on a disabled key.", o);
		return 1;
	case VLT_ERR_KEY_NOT_YET_VALID:
		api_resp_error(r, 403, "Forbidden",
		    "Operation %s is not allowed on a key that is not yet "
		    "valid (nbf is in the future).",
		    o);
		return 1;
	case VLT_ERR_KEY_EXPIRED:
		api_resp_error(r, 403, "Forbidden",
		    "Operation %s is not allowed on an expired key.", o);
		return 1;
	case VLT_ERR_OP_NOT_PERMITTED:
		api_resp_error(r, 403, "Forbidden",
		    "Operation %s is not permitted for this key.", o);
		return 1;
	case VLT_ERR_PURGE_PROTECTED:
		api_resp_error(r, 403, "Forbidden",
		    "Operation \"purge\" is not allowed because purge "
		    "protection is enabled for this vault. Key '%s' will be "
		    "purged automatically when its retention period ends.",
		    n);
		return 1;
	default:
		return 0;
	}
}

void
api_resp_vault_error_in(struct api_resp *r, int err, enum api_subject subj,
    const char *name, const char *op)
{
	const char *n = name ? name : "";
	const char *o = op ? op : "this operation";

	/* a failed decryption says nothing about why: no oracle */
	if (subj == API_SUBJ_CIPHERTEXT && err == VLT_ERR_BAD_PARAM)
		err = VLT_ERR_DECRYPT;
	if (subject_error(r, err, subj) || key_error(r, err, n, o))
		return;
	switch (err) {
	case VLT_ERR_DECRYPT:
		api_resp_error(r, 400, "BadParameter",
		    "The ciphertext could not be decrypted with this key and "
		    "algorithm.");
		return;
	case VLT_ERR_UNAUTHORIZED:
		api_resp_error(r, 401, "Unauthorized",
		    "AKV10000: Request is "
		    "missing a Bearer or PoP token.");
		r->challenge = 1;
		return;
	case VLT_ERR_FORBIDDEN:
		api_resp_error(r, 403, "Forbidden",
		    "The caller may not do "
		    "this on this vault.");
		return;
	case VLT_ERR_UNAVAILABLE:
		api_resp_error(r, 503, "ServiceUnavailable",
		    "The vault's HSM is temporarily unavailable. Retry later.");
		r->retry_after = 1;
		return;
	case VLT_ERR_SEALED:
		api_resp_error(r, 503, "ServiceUnavailable",
		    "The vault is sealed: no key operation is served until it "
		    "is unsealed (p11vault unseal, or its unattended method).");
		r->retry_after = 5;
		return;
	case VLT_ERR_NO_MEMORY:
	case VLT_ERR_INTERNAL:
	default:
		api_resp_error(r, 500, "InternalServerError",
		    "The server encountered an internal error.");
		return;
	}
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
