/*
 * vault/rules.c — the domain rules every vault file applies, each written
 * once: key names, version ids, key_ops per key type, the retention
 * window, what a blob is bound to, new ids, curves, and the mapping of
 * HSM_ERR_* to VLT_ERR_*.
 *
 * Must never: call the store or the token (everything in vault/ calls
 * down to it).
 */
#include "vault/vault_int.h"

#include <ctype.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "hsm/base.h"
#include "hsm/pkey.h"

int
map_hsm(int r)
{
	switch (r) {
	case HSM_OK:
		return VLT_OK;
	case HSM_ERR_ARGS:
		return VLT_ERR_BAD_PARAM;
	case HSM_ERR_DECRYPT:
		return VLT_ERR_DECRYPT;
	case HSM_ERR_UNAVAILABLE:
		return VLT_ERR_UNAVAILABLE;
	case HSM_ERR_NO_MEMORY:
		return VLT_ERR_NO_MEMORY;
	case HSM_ERR_SEALED:
		return VLT_ERR_SEALED;
	case HSM_ERR_IO:
		return VLT_ERR_IO;
	case HSM_ERR_NOT_SHAREABLE:
		return VLT_ERR_CONFLICT;
	case HSM_ERR_EXISTS:
		return VLT_ERR_EXISTS;
	default:
		return VLT_ERR_INTERNAL;
	}
}

int
vault_name_check(const char *name)
{
	size_t i;

	if (name == NULL || name[0] == '\0')
		return VLT_ERR_BAD_PARAM;
	for (i = 0; name[i] != '\0'; i++) {
		char c = name[i];

		/* ASCII by value: no locale decides what a letter is */
		if (i >= VLT_NAME_MAX ||
		    !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		        (c >= 'A' && c <= 'Z') || c == '-'))
			return VLT_ERR_BAD_PARAM;
	}
	return VLT_OK;
}

int
vault_retention_check(long long days)
{
	return days >= 7 && days <= 90 ? VLT_OK : VLT_ERR_BAD_PARAM;
}

int
version_arg(const char *version, const char **out)
{
	size_t i;

	*out = NULL;
	if (version == NULL || version[0] == '\0')
		return 0;
	for (i = 0; i < VLT_VERSION_LEN; i++) {
		char c = version[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return VLT_ERR_NOT_FOUND;
	}
	if (version[VLT_VERSION_LEN] != '\0')
		return VLT_ERR_NOT_FOUND;
	*out = version;
	return 0;
}

int
check_ops(enum vlt_kty kty, unsigned ops)
{
	if ((ops & ~(unsigned)OPS_ALL) != 0)
		return VLT_ERR_BAD_PARAM;
	if (kty == VLT_KTY_EC && (ops & ~(unsigned)OPS_EC) != 0)
		return VLT_ERR_BAD_PARAM;
	return 0;
}

static int
random_hex(char *dst, size_t hex_len)
{
	static const char hx[] = "0123456789abcdef";
	unsigned char raw[64];
	size_t i, nbytes = hex_len / 2;

	if (hex_len % 2 != 0 || nbytes > sizeof(raw))
		return VLT_ERR_INTERNAL;
	if (RAND_bytes(raw, (int)nbytes) != 1)
		return VLT_ERR_INTERNAL;
	for (i = 0; i < nbytes; i++) {
		dst[2 * i] = hx[raw[i] >> 4];
		dst[2 * i + 1] = hx[raw[i] & 0xf];
	}
	dst[hex_len] = '\0';
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

int
random_uuid(char dst[VLT_ID_LEN + 1])
{
	unsigned char b[16];

	if (RAND_bytes(b, sizeof(b)) != 1)
		return VLT_ERR_INTERNAL;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	if (str_fmt(dst, VLT_ID_LEN + 1,
	        "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	        "%02x%02x%02x%02x%02x%02x",
	        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
	        b[10], b[11], b[12], b[13], b[14], b[15]) != 0 ||
	    strlen(dst) != VLT_ID_LEN)
		return VLT_ERR_INTERNAL;
	return 0;
}

/*
 * What a blob is bound to (hsm.h): the key's name lower-cased (names
 * compare case-insensitively), "/", the version id. Every token call on
 * a blob names it, so that a blob moved to another row of the store opens
 * nowhere.
 */
unsigned
blob_format_of(const uint8_t *blob, size_t blob_len)
{
	unsigned f;

	return hsm_blob_format(blob, blob_len, &f) == HSM_OK ? f : 0;
}

int
blob_bind(const vault_t *v, char bind[BIND_MAX], const char *name,
    const char *version)
{
	size_t i;

	if (name == NULL || version == NULL || name[0] == '\0' ||
	    strlen(version) != VLT_VERSION_LEN)
		return VLT_ERR_INTERNAL;
	if (str_fmt(bind, BIND_MAX, "%s%s%s/%s", v->id, v->id[0] ? ":" : "",
	        name, version) != 0)
		return VLT_ERR_INTERNAL;
	for (i = 0; bind[i] != '/'; i++)
		bind[i] = (char)tolower((unsigned char)bind[i]);
	return 0;
}

/*
 * A new version's id, drawn before the token makes its blob (the blob is
 * bound to it). If the insert then finds the id in use (a 128-bit random
 * collision) the call fails with VLT_ERR_INTERNAL rather than making the
 * key again under a new id: that never happens in practice, and a retry
 * would need a second, slow token call.
 */
int
new_version(const vault_t *v, const char *name,
    char version[VLT_VERSION_LEN + 1], char bind[BIND_MAX])
{
	int r;

	if ((r = random_hex(version, VLT_VERSION_LEN)) != 0)
		return r;
	return blob_bind(v, bind, name, version);
}

/* The vault's curves by their JWK names, the key of hsm/pkey.h's table. */
static const char *const curve_jwk[] = {
	[VLT_CRV_P256] = "P-256",
	[VLT_CRV_P384] = "P-384",
	[VLT_CRV_P521] = "P-521",
	[VLT_CRV_P256K] = "P-256K",
};
#define NCURVE_JWK (sizeof(curve_jwk) / sizeof(curve_jwk[0]))

int
curve_nid(enum vlt_curve crv)
{
	const struct hsm_curve_info *c;

	if ((size_t)crv >= NCURVE_JWK || curve_jwk[crv] == NULL ||
	    (c = hsm_curve_by_name(curve_jwk[crv])) == NULL)
		return 0;
	return c->nid;
}

int
curve_from_nid(int nid, enum vlt_curve *crv)
{
	const struct hsm_curve_info *c = hsm_curve_by_nid(nid);
	size_t i;

	for (i = 0; c != NULL && i < NCURVE_JWK; i++) {
		if (curve_jwk[i] != NULL && strcmp(curve_jwk[i], c->jwk) == 0) {
			*crv = (enum vlt_curve)i;
			return 0;
		}
	}
	return VLT_ERR_BAD_PARAM;
}
