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

void
api_resp_set(struct api_resp *r, unsigned status, json_t *body)
{
	api_wipe_free(r->body);     /* it may carry a plaintext */
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

	va_start(ap, fmt);
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		msg[0] = '\0';
	va_end(ap);
	resp_error_inner(r, status, code, NULL, msg);
}

void
api_resp_vault_error(struct api_resp *r, int err, const char *name,
    const char *op)
{
	char msg[1024];
	const char *n = name ? name : "";
	const char *o = op ? op : "this operation";

	switch (err) {
	case VLT_ERR_BAD_PARAM:
		api_resp_error(r, 400, "BadParameter",
		    "The request is invalid for key '%s'.", n);
		return;
	case VLT_ERR_NOT_FOUND:
		api_resp_error(r, 404, "KeyNotFound",
		    "A key with (name/id) %s was not found in this key vault. "
		    "If you recently deleted this key you may be able to "
		    "recover it using the correct recovery command.", n);
		return;
	case VLT_ERR_CONFLICT:
		api_resp_error(r, 409, "Conflict",
		    "A key with name '%s' already exists in this vault.", n);
		return;
	case VLT_ERR_DELETED_RECOVERABLE:
		snprintf(msg, sizeof(msg), "Key %s is currently in a deleted "
		    "but recoverable state, and its name cannot be reused; in "
		    "this state, the key can only be recovered or purged.", n);
		resp_error_inner(r, 409, "Conflict",
		    "ObjectIsDeletedButRecoverable", msg);
		return;
	case VLT_ERR_KEY_DISABLED:
		api_resp_error(r, 403, "Forbidden",
		    "Operation %s is not allowed on a disabled key.", o);
		return;
	case VLT_ERR_KEY_NOT_YET_VALID:
		api_resp_error(r, 403, "Forbidden",
		    "Operation %s is not allowed on a key that is not yet "
		    "valid (nbf is in the future).", o);
		return;
	case VLT_ERR_KEY_EXPIRED:
		api_resp_error(r, 403, "Forbidden",
		    "Operation %s is not allowed on an expired key.", o);
		return;
	case VLT_ERR_OP_NOT_PERMITTED:
		api_resp_error(r, 403, "Forbidden",
		    "Operation %s is not permitted for this key.", o);
		return;
	case VLT_ERR_PURGE_PROTECTED:
		api_resp_error(r, 403, "Forbidden",
		    "Operation \"purge\" is not allowed because purge "
		    "protection is enabled for this vault. Key '%s' will be "
		    "purged automatically when its retention period ends.", n);
		return;
	case VLT_ERR_DECRYPT:
		api_resp_error(r, 400, "BadParameter",
		    "The ciphertext could not be decrypted with this key and "
		    "algorithm.");
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

void
api_resp_unauthorized(struct api_req *q, struct api_resp *r, const char *why)
{
	(void)q;
	api_resp_error(r, 401, "Unauthorized", "%s", why);
	r->challenge = 1;
}
