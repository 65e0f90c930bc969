/* A key version row for the store's tests (test_store, test_storage and
 * the torture build): an EC P-256 sign/verify key whose version id is
 * VLT_VERSION_LEN times c, with an 8-byte stand-in for its SPKI. */
#ifndef P11VAULT_TESTS_STORE_FIXTURE_H
#define P11VAULT_TESTS_STORE_FIXTURE_H

#include <stdio.h>
#include <string.h>

#include "vault/vault.h"

static void
fill_version(struct vlt_key_info *k, const char *name, char c)
{
	static uint8_t spki[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

	memset(k, 0, sizeof(*k));
	snprintf(k->name, sizeof(k->name), "%s", name);
	memset(k->version, c, VLT_VERSION_LEN);
	k->version[VLT_VERSION_LEN] = '\0';
	k->kty = VLT_KTY_EC;
	k->crv = VLT_CRV_P256;
	k->key_ops = VLT_OP_SIGN | VLT_OP_VERIFY;
	k->attrs.enabled = 1;
	k->attrs.created = k->attrs.updated = 1000;
	k->spki = spki;
	k->spki_len = sizeof(spki);
}

#endif
