/*
 * vault/ops.c — cryptography on a key version: encrypt and wrap (with
 * the public key, no token call), decrypt and unwrap, sign, verify.
 *
 * Owns: which algorithm suits which key (RSA for encryption, the curve's
 * ES* for EC signatures) and the mapping of VLT_ALG_* to HSM_ALG_*.
 *
 * Must never: hand the token a blob under anything but the bind of the
 * row it was read from; keep or log a plaintext.
 */
#include "vault/vault_int.h"

#include <stdlib.h>
#include <string.h>

#include "hsm/base.h"


static int
map_alg(enum vlt_alg a, enum hsm_alg *out)
{
	switch (a) {
	case VLT_ALG_RSA_OAEP:
		*out = HSM_ALG_RSA_OAEP;
		return 0;
	case VLT_ALG_RSA_OAEP_256:
		*out = HSM_ALG_RSA_OAEP_256;
		return 0;
	case VLT_ALG_RSA1_5:
		*out = HSM_ALG_RSA1_5;
		return 0;
	case VLT_ALG_RS256:
		*out = HSM_ALG_RS256;
		return 0;
	case VLT_ALG_RS384:
		*out = HSM_ALG_RS384;
		return 0;
	case VLT_ALG_RS512:
		*out = HSM_ALG_RS512;
		return 0;
	case VLT_ALG_PS256:
		*out = HSM_ALG_PS256;
		return 0;
	case VLT_ALG_PS384:
		*out = HSM_ALG_PS384;
		return 0;
	case VLT_ALG_PS512:
		*out = HSM_ALG_PS512;
		return 0;
	case VLT_ALG_ES256:
		*out = HSM_ALG_ES256;
		return 0;
	case VLT_ALG_ES384:
		*out = HSM_ALG_ES384;
		return 0;
	case VLT_ALG_ES512:
		*out = HSM_ALG_ES512;
		return 0;
	case VLT_ALG_ES256K:
		*out = HSM_ALG_ES256K;
		return 0;
	default:
		return VLT_ERR_BAD_PARAM;
	}
}

static int
alg_is_enc(enum vlt_alg a)
{
	return a == VLT_ALG_RSA_OAEP || a == VLT_ALG_RSA_OAEP_256 ||
	    a == VLT_ALG_RSA1_5;
}

static int
alg_is_sig(enum vlt_alg a)
{
	return a >= VLT_ALG_RS256 && a <= VLT_ALG_ES256K;
}

/* kty (and curve) compatibility of a signature algorithm. */
static int
sig_alg_fits(enum vlt_alg a, const struct vlt_key_info *k)
{
	switch (a) {
	case VLT_ALG_ES256:
		return k->kty == VLT_KTY_EC && k->crv == VLT_CRV_P256;
	case VLT_ALG_ES384:
		return k->kty == VLT_KTY_EC && k->crv == VLT_CRV_P384;
	case VLT_ALG_ES512:
		return k->kty == VLT_KTY_EC && k->crv == VLT_CRV_P521;
	case VLT_ALG_ES256K:
		return k->kty == VLT_KTY_EC && k->crv == VLT_CRV_P256K;
	default:
		return k->kty == VLT_KTY_RSA;
	}
}

static int
kid_out(char *kid_version, const struct vlt_key_info *k)
{
	if (kid_version == NULL)
		return 0;
	return str_fmt(kid_version, VLT_VERSION_LEN + 1, "%s", k->version) ==
	        0 ?
	    0 :
	    VLT_ERR_INTERNAL;
}

/* key_for_op for a crypto operation whose key must also suit alg: RSA for
 * an encryption algorithm, sig_alg_fits for a signature one. */
static int
key_for_alg(vault_t *v, const char *name, const char *version, unsigned op,
    enum vlt_alg alg, struct vlt_key_info *k, uint8_t **blob, size_t *blob_len)
{
	int r;

	r = key_for_op(v, name, version, op, blob != NULL, k, blob, blob_len);
	if (r != 0)
		return r;
	if (alg_is_sig(alg) ? sig_alg_fits(alg, k) : k->kty == VLT_KTY_RSA)
		return 0;
	vlt_key_info_clear(k);
	if (blob != NULL) {
		free(*blob);
		*blob = NULL;
	}
	return VLT_ERR_BAD_PARAM;
}

/* The version, blob and bind of a private-key operation (decrypt,
 * unwrap, sign): key_for_alg with the blob, then its bind. */
struct priv {
	struct vlt_key_info k;
	uint8_t *blob;
	size_t blob_len;
	char bind[BIND_MAX];
};

static int
priv_take(vault_t *v, const char *name, const char *version, unsigned op,
    enum vlt_alg alg, struct priv *p)
{
	int r;

	p->blob = NULL;
	p->blob_len = 0;
	if ((r = key_for_alg(v, name, version, op, alg, &p->k, &p->blob,
	         &p->blob_len)) != 0)
		return r;
	if ((r = blob_bind(v, p->bind, p->k.name, p->k.version)) != 0) {
		vlt_key_info_clear(&p->k);
		free(p->blob);
		p->blob = NULL;
	}
	return r;
}

/* Ends a crypto operation: r, with the key's version in kid_version if
 * it succeeded; frees the key and blob. */
static int
op_end(int r, char *kid_version, struct vlt_key_info *k, uint8_t *blob)
{
	if (r == 0)
		r = kid_out(kid_version, k);
	vlt_key_info_clear(k);
	free(blob);
	return r;
}

/* The arguments of an encrypt or a decrypt: op one of op_a and op_b, alg
 * an encryption alg (its hsm name into ha); VLT_ERR_BAD_PARAM if not. */
static int
enc_check(const vault_t *v, const uint8_t *in, const uint8_t *out,
    const size_t *out_len, unsigned op, unsigned op_a, unsigned op_b,
    enum vlt_alg alg, enum hsm_alg *ha)
{
	if (v == NULL || in == NULL || out == NULL || out_len == NULL ||
	    (op != op_a && op != op_b) || !alg_is_enc(alg) ||
	    map_alg(alg, ha) != 0)
		return VLT_ERR_BAD_PARAM;
	return 0;
}

int
vault_key_encrypt(vault_t *v, const char *name, const char *version,
    unsigned op, enum vlt_alg alg, const uint8_t *in, size_t in_len,
    uint8_t *out, size_t *out_len, char kid_version[VLT_VERSION_LEN + 1])
{
	struct vlt_key_info k;
	enum hsm_alg ha;
	int r;

	if ((r = enc_check(v, in, out, out_len, op, VLT_OP_ENCRYPT, VLT_OP_WRAP,
	         alg, &ha)) != 0)
		return r;
	if ((r = key_for_alg(v, name, version, op, alg, &k, NULL, NULL)) != 0)
		return r;
	r = map_hsm(hsm_pub_encrypt(k.spki, k.spki_len, ha, in, in_len, out,
	    out_len));
	return op_end(r, kid_version, &k, NULL);
}

int
vault_key_decrypt(vault_t *v, const char *name, const char *version,
    unsigned op, enum vlt_alg alg, const uint8_t *in, size_t in_len,
    uint8_t *out, size_t *out_len, char kid_version[VLT_VERSION_LEN + 1])
{
	struct priv p;
	enum hsm_alg ha;
	int r;

	if ((r = enc_check(v, in, out, out_len, op, VLT_OP_DECRYPT,
	         VLT_OP_UNWRAP, alg, &ha)) != 0)
		return r;
	if ((r = priv_take(v, name, version, op, alg, &p)) != 0)
		return r;
	r = map_hsm(hsm_key_decrypt(v->hsm, p.bind, p.blob, p.blob_len, ha, in,
	    in_len, out, out_len));
	return op_end(r, kid_version, &p.k, p.blob);
}

int
vault_key_sign(vault_t *v, const char *name, const char *version,
    enum vlt_alg alg, const uint8_t *digest, size_t dlen, uint8_t *sig,
    size_t *sig_len, char kid_version[VLT_VERSION_LEN + 1])
{
	struct priv p;
	enum hsm_alg ha;
	int r;

	if (v == NULL || digest == NULL || sig == NULL || sig_len == NULL ||
	    !alg_is_sig(alg) || map_alg(alg, &ha) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = priv_take(v, name, version, VLT_OP_SIGN, alg, &p)) != 0)
		return r;
	r = map_hsm(hsm_key_sign(v->hsm, p.bind, p.blob, p.blob_len, ha, digest,
	    dlen, sig, sig_len));
	return op_end(r, kid_version, &p.k, p.blob);
}

int
vault_key_verify(vault_t *v, const char *name, const char *version,
    enum vlt_alg alg, const uint8_t *digest, size_t dlen, const uint8_t *sig,
    size_t sig_len, int *valid, char kid_version[VLT_VERSION_LEN + 1])
{
	struct vlt_key_info k;
	enum hsm_alg ha;
	int r;

	if (valid != NULL)
		*valid = 0;
	if (v == NULL || digest == NULL || sig == NULL || valid == NULL ||
	    !alg_is_sig(alg) || map_alg(alg, &ha) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = key_for_alg(v, name, version, VLT_OP_VERIFY, alg, &k, NULL,
	         NULL)) != 0)
		return r;
	r = map_hsm(hsm_pub_verify(k.spki, k.spki_len, ha, digest, dlen, sig,
	    sig_len, valid));
	return op_end(r, kid_version, &k, NULL);
}
