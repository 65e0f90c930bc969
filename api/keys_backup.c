/*
 * keys_backup.c — POST /keys/{name}/backup and POST /keys/restore: the
 * backup blob as base64url in {"value"}. The blob itself (every version,
 * sealed under the token's backup key) is vault/'s; this file only
 * carries it.
 *
 * Must never: look inside a blob; keep one beyond the request (wiped).
 */
#include <string.h>

#include "api/keys.h"
#include "hsm/buf.h"

#define BACKUP_MAX (API_BODY_MAX)

void
keys_backup(struct api_req *q, struct api_resp *r, const struct key_target *t)
{
	uint8_t *blob = NULL;
	size_t len = 0;
	int rc;

	rc = vault_key_backup(q->vault, t->name, &blob, &len);
	if (rc != 0) {
		api_resp_vault_error(r, rc, t->name, NULL);
		return;
	}
	api_resp_set(r, 200,
	    json_pack("{s:o}", "value", api_json_b64(blob, len)));
	freezero(blob, len);
}

void
keys_restore(struct api_req *q, struct api_resp *r, const struct key_target *t)
{
	struct vlt_key_info k;
	json_t *body = NULL;
	uint8_t *blob = NULL;
	size_t len = 0;
	int rc;

	(void)t;
	memset(&k, 0, sizeof(k));
	if (api_body_object(q, r, &body) != 0)
		return;
	if (api_field_b64(body, "value", BACKUP_MAX, 1, &blob, &len, r) != 0)
		goto out;
	rc = vault_key_restore(q->vault, blob, len, &k);
	if (rc != 0)
		api_resp_vault_error_in(r, rc, API_SUBJ_BACKUP, NULL, NULL);
	else
		keys_send_key(q, r, rc, NULL, k.name, &k);
out:
	freezero(blob, len);
	json_decref(body);
}
