/*
 * vault/info.h — private to vault/: copying and handing over the value
 * types of vault.h (struct vlt_key_info), for the store, the version
 * cache and the domain files alike. Calls nothing else in vault/.
 */
#ifndef P11VAULT_VAULT_INFO_H
#define P11VAULT_VAULT_INFO_H

#include <stddef.h>
#include <stdint.h>

#include "vault/vault.h"

/* A deep copy (tags and spki duplicated): 0 or VLT_ERR_NO_MEMORY (dst
 * then cleared). */
int key_info_copy(const struct vlt_key_info *src,
    struct vlt_key_info *dst) VLT_WUR;
/* Moves src into out (out NULL: clears it); src is left zeroed. */
void key_info_give(struct vlt_key_info *src, struct vlt_key_info *out);
/* A malloc'd copy of n bytes at src into *dst (src NULL: *dst NULL). */
int bytes_dup(const uint8_t *src, size_t n, uint8_t **dst) VLT_WUR;

#endif
