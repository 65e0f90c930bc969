/*
 * vault/info.c — the value types of vault.h: clearing, copying and
 * handing over key infos, and freeing principal and store blob arrays.
 *
 * Owns: who frees what inside struct vlt_key_info and vlt_principal.
 * Must never: call the store, the hsm or another vault file (everything
 * in vault/ calls down to it).
 */
#include "vault/info.h"

#include <stdlib.h>
#include <string.h>

#include "hsm/buf.h"
#include "vault/store.h"

void
vlt_key_info_clear(struct vlt_key_info *k)
{
	if (k == NULL)
		return;
	free(k->tags);
	free(k->spki);
	memset(k, 0, sizeof(*k));
}

void
vlt_key_info_free_array(struct vlt_key_info *items, size_t n)
{
	size_t i;

	if (items == NULL)
		return;
	for (i = 0; i < n; i++)
		vlt_key_info_clear(&items[i]);
	free(items);
}

void
vlt_principal_free_array(struct vlt_principal *items, size_t n)
{
	size_t i;

	if (items == NULL)
		return;
	for (i = 0; i < n; i++)
		freezero_str(items[i].secret_hash);
	free(items);
}

void
key_info_give(struct vlt_key_info *src, struct vlt_key_info *out)
{
	if (out != NULL)
		*out = *src; /* ownership moves */
	else
		vlt_key_info_clear(src);
	memset(src, 0, sizeof(*src));
}

int
bytes_dup(const uint8_t *src, size_t n, uint8_t **dst)
{
	*dst = NULL;
	if (src == NULL)
		return 0;
	if ((*dst = malloc(n ? n : 1)) == NULL)
		return VLT_ERR_NO_MEMORY;
	memcpy(*dst, src, n);
	return 0;
}

int
key_info_copy(const struct vlt_key_info *src, struct vlt_key_info *dst)
{
	*dst = *src;
	dst->tags = NULL;
	dst->spki = NULL;
	if ((src->tags != NULL && (dst->tags = strdup(src->tags)) == NULL) ||
	    bytes_dup(src->spki, src->spki_len, &dst->spki) != 0) {
		vlt_key_info_clear(dst);
		return VLT_ERR_NO_MEMORY;
	}
	return 0;
}

void
store_blob_free_array(struct store_blob *items, size_t n)
{
	size_t i;

	if (items == NULL)
		return;
	for (i = 0; i < n; i++) {
		free(items[i].blob);
		free(items[i].bound);
	}
	free(items);
}
