/*
 * vault/storage.c — storage-fault episodes (vault/storage.h): the one
 * place that logs storage_error and storage_recovered, as the server's
 * other structured lines on stderr; and the vault's view of them: the
 * audit gate in front of key operations, the state for health and
 * metrics.
 *
 * Must never: log more than the source and the reason (a SQLite message
 * or an errno text: no key name, no data).
 */
#include "vault/storage.h"

#include <stdio.h>
#include <string.h>

#include "vault/vault_int.h"


/* The reason as a JSON string's content: printable ASCII, no quote or
 * backslash (they become '?'). */
static void
reason_set(struct vlt_storage_state *st, const char *reason)
{
	size_t i;

	for (i = 0;
	     reason != NULL && reason[i] != '\0' && i + 1 < sizeof(st->reason);
	     i++) {
		char c = reason[i];

		st->reason[i] = (c >= 0x20 && c < 0x7f && c != '"' &&
		                    c != '\\') ?
		    c :
		    '?';
	}
	st->reason[i] = '\0';
}

void
vlt_storage_fail(struct vlt_storage_state *st, const char *reason)
{
	st->errors++;
	if (st->failing)
		return;
	st->failing = 1;
	reason_set(st, reason);
	fprintf(stderr,
	    "{\"level\":\"error\",\"event\":\"storage_error\","
	    "\"source\":\"%s\",\"reason\":\"%s\"}\n",
	    st->source, st->reason);
}

void
vlt_storage_ok(struct vlt_storage_state *st)
{
	if (!st->failing)
		return;
	st->failing = 0;
	fprintf(stderr,
	    "{\"level\":\"info\",\"event\":\"storage_recovered\","
	    "\"source\":\"%s\",\"reason\":\"%s\"}\n",
	    st->source, st->reason);
	st->reason[0] = '\0';
}

int
vault_storage_ready(vault_t *v)
{
	if (v == NULL || v->audit == NULL)
		return VLT_ERR_BAD_PARAM;
	return vlt_audit_ready(v->audit);
}

int
vault_storage_status(vault_t *v, struct vlt_storage_status *out)
{
	char reason[sizeof(out->reason)];
	uint64_t errs = 0;

	if (v == NULL || out == NULL || v->audit == NULL || v->store == NULL)
		return VLT_ERR_BAD_PARAM;
	memset(out, 0, sizeof(*out));
	store_storage_state(v->store, &out->store_failing, &out->errors, reason,
	    sizeof(reason));
	if (out->store_failing)
		memcpy(out->reason, reason, sizeof(reason));
	vlt_audit_state(v->audit, &out->audit_failing, &errs, reason,
	    sizeof(reason));
	if (out->audit_failing)
		memcpy(out->reason, reason, sizeof(reason));
	out->errors += errs;
	return 0;
}
