/*
 * seal_api.c — GET /sys/seal-status and PUT /sys/unseal: where the
 * unsealing stands, and operator key shares one at a time. Both answer
 * without authentication, as HashiCorp Vault's sys/seal-status and
 * sys/unseal do: while the vault is sealed no token can be issued, and a
 * share is its own credential (a wrong one is refused at once; shares
 * are 256-bit random). The share never reaches a log or the audit line.
 */
#include <string.h>

#include <jansson.h>

#include "api/api.h"
#include "vault/vault.h"

static json_t *
status_json(const struct vlt_seal_status *st)
{
	return json_pack("{s:b, s:s, s:i, s:i, s:i, s:b}", "sealed", st->sealed,
	    "type", st->shares > 0 ? "shamir" : "unattended", "t",
	    (int)st->threshold, "n", (int)st->shares, "progress",
	    (int)st->progress, "plaintextPins", st->plaintext_pins);
}

static void
unseal(struct api_req *q, struct api_resp *r)
{
	struct vlt_seal_status st;
	json_t *body = NULL, *reset;
	const char *key = NULL;
	int rc;

	if (api_body_object(q, r, &body) != 0)
		return;
	reset = json_object_get(body, "reset");
	if (reset != NULL && !json_is_boolean(reset)) {
		api_resp_error(r, 400, "BadParameter",
		    "The field 'reset' must be a boolean.");
		goto out;
	}
	if (!json_is_true(reset) &&
	    api_field_string(body, "key", 1, &key, r) != 0)
		goto out;
	rc = vault_unseal(q->ctx->vault, json_is_true(reset) ? NULL : key, &st);
	if (rc == VLT_ERR_CONFLICT) {
		api_resp_error(r, 409, "Conflict",
		    "This vault has no operator "
		    "key shares: it unseals only by its unattended method.");
		goto out;
	}
	if (rc != 0) {
		api_resp_vault_error(r, rc, NULL, NULL);
		goto out;
	}
	switch (json_is_true(reset) || !st.sealed ? VLT_SHARE_TAKEN :
	                                            st.result) {
	case VLT_SHARE_UNKNOWN:
		api_resp_error(r, 400, "BadParameter",
		    "The key share is not "
		    "one of this vault's (%u of %u taken).",
		    st.progress, st.threshold);
		break;
	case VLT_SHARE_REPEATED:
		api_resp_error(r, 400, "BadParameter",
		    "This key share was "
		    "already given (%u of %u taken).",
		    st.progress, st.threshold);
		break;
	case VLT_SHARE_MALFORMED:
		api_resp_error(r, 400, "BadParameter",
		    "A key share looks "
		    "like N-HEX (64 hex digits).");
		break;
	default:
		/* at once, so that the first request after the unseal does
		 * not pay for it */
		if (!st.sealed && api_verify_key_refresh(q->ctx) != 0) {
			/* api_authn tries again at the next request */
		}
		api_resp_set(r, 200, status_json(&st));
		break;
	}
out:
	json_decref(body);
}

void
api_sys(struct api_req *q, struct api_resp *r, char **segs, size_t n)
{
	struct vlt_seal_status st;
	int rc;

	if (n == 1 && strcmp(segs[0], "seal-status") == 0) {
		q->operation = "SealStatus";
		if (strcmp(q->method, "GET") != 0) {
			api_resp_error(r, 405, "MethodNotAllowed",
			    "The HTTP method is not allowed on this resource.");
			return;
		}
		if ((rc = vault_seal_status(q->ctx->vault, &st)) != 0)
			api_resp_vault_error(r, rc, NULL, NULL);
		else
			api_resp_set(r, 200, status_json(&st));
		return;
	}
	if (n == 1 && strcmp(segs[0], "unseal") == 0) {
		q->operation = "Unseal";
		if (strcmp(q->method, "PUT") != 0 &&
		    strcmp(q->method, "POST") != 0) {
			api_resp_error(r, 405, "MethodNotAllowed",
			    "The HTTP method is not allowed on this resource.");
			return;
		}
		unseal(q, r);
		return;
	}
	api_resp_error(r, 404, "NotFound", "No such resource.");
}
