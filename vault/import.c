/*
 * vault/import.c — bringing a private key in: plaintext PKCS#8, and BYOK
 * (a transfer blob wrapped under one of the vault's RSA keys, the KEK).
 * The key goes into the token; the store keeps its blob as a new version.
 *
 * Must never: keep, log or hand anywhere but the token the key material
 * it is given; store anything when the token refused the import.
 */
#include "vault/vault_int.h"

#include <stdlib.h>
#include <string.h>

#include "hsm/base.h"
#include "vault/info.h"

/* Stores an imported key (blob + k->spki) as the new version k->version
 * (new_version, drawn before the import) of name. */
static int
import_store(vault_t *v, const char *name, const struct vlt_import_req *req,
    const struct hsm_key_desc *d, struct vlt_key_info *k, const uint8_t *blob,
    size_t blob_len, struct vlt_key_info *out)
{
	int r;

	if (str_fmt(k->name, sizeof(k->name), "%s", name) != 0)
		return VLT_ERR_BAD_PARAM;
	if (d->kty == HSM_KTY_RSA) {
		k->kty = VLT_KTY_RSA;
		k->key_size = d->rsa_bits;
		k->crv = VLT_CRV_NONE;
		k->key_ops = req->key_ops ? req->key_ops : OPS_RSA_DEFAULT;
	} else {
		k->kty = VLT_KTY_EC;
		if ((r = curve_from_nid(d->ec_nid, &k->crv)) != 0)
			return r;
		k->key_ops = req->key_ops ? req->key_ops : OPS_EC;
	}
	/* Azure's kty is the caller's word on what the blob holds */
	if ((req->kty != 0 && req->kty != k->kty) ||
	    (req->crv != VLT_CRV_NONE && req->crv != k->crv))
		return VLT_ERR_KEY_TYPE;
	if ((r = check_ops(k->kty, k->key_ops)) != 0)
		return r;
	k->hsm = req->hsm ? 1 : 0;
	k->attrs.enabled = req->enabled ? 1 : 0;
	k->attrs.nbf = req->nbf;
	k->attrs.exp = req->exp;
	k->attrs.created = k->attrs.updated = vault_now(v);
	if (req->tags != NULL && (k->tags = strdup(req->tags)) == NULL)
		return VLT_ERR_NO_MEMORY;
	return key_store_new(v, k, blob, blob_len, out);
}

/* Refuses a deleted name before the token work. */
static int
import_precheck(vault_t *v, const char *name, const struct vlt_import_req *r)
{
	if (v == NULL || r == NULL || vault_name_check(name) != 0)
		return VLT_ERR_BAD_PARAM;
	return key_refuse_deleted(v, name);
}

int
vault_key_import(vault_t *v, const char *name, const struct vlt_import_req *req,
    const uint8_t *pkcs8, size_t len, struct vlt_key_info *out)
{
	struct hsm_key_desc d;
	struct vlt_key_info k;
	char bind[BIND_MAX];
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	memset(&k, 0, sizeof(k));
	if (pkcs8 == NULL || len == 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = import_precheck(v, name, req)) != 0)
		return r;
	if ((r = new_version(v, name, k.version, bind)) != 0)
		return r;
	if ((r = hsm_key_import(v->hsm, bind, pkcs8, len, &d, &blob, &blob_len,
	         &k.spki, &k.spki_len)) != 0) {
		r = map_hsm(r);
		goto out;
	}
	r = import_store(v, name, req, &d, &k, blob, blob_len, out);
out:
	vlt_key_info_clear(&k);
	freezero(blob, blob_len);
	return r;
}

int
vault_key_import_byok(vault_t *v, const char *name,
    const struct vlt_import_req *req, const char *kek_name,
    const char *kek_version, const uint8_t *transfer, size_t len,
    struct vlt_key_info *out)
{
	struct hsm_key_desc d;
	struct vlt_key_info k, kek;
	char bind[BIND_MAX], kek_bind[BIND_MAX];
	uint8_t *blob = NULL, *kek_blob = NULL;
	size_t blob_len = 0, kek_len = 0;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	memset(&k, 0, sizeof(k));
	memset(&kek, 0, sizeof(kek));
	if (transfer == NULL || len == 0 || kek_name == NULL)
		return VLT_ERR_BAD_PARAM;
	if ((r = import_precheck(v, name, req)) != 0)
		return r;
	/* a KEK that is missing, disabled, expired or without import is
	 * the request's fault: 400, as Azure answers */
	r = key_for_op(v, kek_name, kek_version, VLT_OP_IMPORT, 1, &kek,
	    &kek_blob, &kek_len);
	if (r != 0) {
		r = r == VLT_ERR_UNAVAILABLE || r == VLT_ERR_NO_MEMORY ||
		        r == VLT_ERR_INTERNAL ?
		    r :
		    VLT_ERR_BAD_PARAM;
		goto out;
	}
	if (kek.kty != VLT_KTY_RSA) {
		r = VLT_ERR_BAD_PARAM;
		goto out;
	}
	if ((r = blob_bind(v, kek_bind, kek.name, kek.version)) != 0 ||
	    (r = new_version(v, name, k.version, bind)) != 0)
		goto out;
	if ((r = hsm_key_import_byok(v->hsm, bind, kek_bind, kek_blob, kek_len,
	         transfer, len, &d, &blob, &blob_len, &k.spki, &k.spki_len)) !=
	    0) {
		r = map_hsm(r);
		goto out;
	}
	r = import_store(v, name, req, &d, &k, blob, blob_len, out);
out:
	vlt_key_info_clear(&k);
	vlt_key_info_clear(&kek);
	free(kek_blob);
	freezero(blob, blob_len);
	return r;
}
