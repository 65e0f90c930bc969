/*
 * hsm/node.c — the token side of clustering: a node's transport key
 * pair, the approval of a node (an SO ceremony on a token that holds the
 * domain), its join (the domain's keys unwrapped into the new node's
 * token), the removal of an approved node's key, and the reading of a
 * node's join request. Each runs in a one-shot token process (tokend.c's
 * ceremony), with its own load of the module.
 *
 * The join bundle (made by tok_node_approve, opened by tok_node_join):
 *
 *     "P11VJOIN" | u32 version (1) | lp items, in this order:
 *     fingerprint (SHA-256 of the transport SPKI), domain generation
 *     (8 bytes), K (an AES-256 session key, RSA-OAEP SHA-1 under the
 *     transport key), then under K (CKM_AES_KEY_WRAP_PAD): the domain
 *     key, the seal key, the bind key, the backup key, the JWT private
 *     key, the audit private key; then the public halves of the JWT and
 *     audit pairs (CKA_EC_PARAMS, CKA_EC_POINT each).
 *
 * Why K: SoftHSMv2 2.6.1 wraps private keys only under AES key wrap, and
 * a key that is wrap-with-trusted only under a trusted key; the SO makes
 * K trusted (a public session object, which outlives the SO's logout).
 * On the new node the user unwraps K with the transport private key (a
 * private object, encrypted under that node's user PIN at rest), and the
 * SO unwraps the domain key under K: only the SO can make a trusted key.
 *
 * Must never: let a key out of the token other than wrapped by a trusted
 * key; approve a transport key the caller did not name by fingerprint;
 * keep K past the ceremony (it dies with its session).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "hsm/buf.h"
#include "hsm/hsm_int.h"

static CK_BBOOL ck_true = CK_TRUE;
static CK_BBOOL ck_false = CK_FALSE;

#define BUNDLE_MAGIC "P11VJOIN"
#define BUNDLE_VERSION 1
#define BUNDLE_ITEMS 14
#define TRANSPORT_BITS 3072
#define FP_LEN 32
#define ITEM_MAX HSM_WRAP_BUF

/* The bundle's items, by position. */
enum {
	I_FP,
	I_GEN,
	I_K,
	I_DOMAIN,
	I_SEAL,
	I_BIND,
	I_BACKUP,
	I_JWT,
	I_AUDIT,
	I_JWT_PARAMS,
	I_JWT_POINT,
	I_AUDIT_PARAMS,
	I_AUDIT_POINT,
	I_END, /* an empty item: nothing follows */
};

struct item {
	uint8_t *p;
	CK_ULONG len;
};

/* One open R/W session on the token labelled label. */
struct cer {
	void *dl;
	CK_FUNCTION_LIST *f;
	int owns;
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE s;
};

static int
cer_open(struct cer *c, const char *module, const char *label)
{
	int rc;

	memset(c, 0, sizeof(*c));
	c->s = CK_INVALID_HANDLE;
	if ((rc = hsm_load(module, &c->dl, &c->f, &c->owns)) != 0)
		return rc;
	if ((rc = hsm_slot_find(c->f, label, &c->slot)) != 0)
		return rc;
	return hsm_init_rv(c->f->C_OpenSession(c->slot,
	    CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &c->s));
}

static void
cer_close(struct cer *c)
{
	if (c->s != CK_INVALID_HANDLE)
		(void)c->f->C_CloseSession(c->s);
	hsm_unload(c->dl, c->f, c->owns);
}

static int
login(struct cer *c, CK_USER_TYPE who, const char *pin)
{
	return hsm_init_rv(c->f->C_Login(c->s, who, (CK_UTF8CHAR *)pin,
	    strlen(pin)));
}

/* The one object of class cls labelled label (with id, if not NULL). */
static int
find_one(struct cer *c, CK_OBJECT_CLASS cls, const char *label,
    const uint8_t *id, size_t id_len, CK_OBJECT_HANDLE *o, CK_ULONG *n)
{
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, (void *)id, id_len },
	};
	CK_OBJECT_HANDLE found[2];
	CK_RV rv;

	*n = 0;
	if ((rv = c->f->C_FindObjectsInit(c->s, t, id != NULL ? 3 : 2)) !=
	    CKR_OK)
		return hsm_init_rv(rv);
	rv = c->f->C_FindObjects(c->s, found, 2, n);
	(void)c->f->C_FindObjectsFinal(c->s);
	if (rv == CKR_OK && *n >= 1)
		*o = found[0];
	return hsm_init_rv(rv);
}

static int
need_one(struct cer *c, CK_OBJECT_CLASS cls, const char *label,
    CK_OBJECT_HANDLE *o)
{
	CK_ULONG n;
	int rc;

	if ((rc = find_one(c, cls, label, NULL, 0, o, &n)) != 0)
		return rc;
	return n == 1 ? 0 : n == 0 ? HSM_ERR_UNAVAILABLE : HSM_ERR_INTERNAL;
}

/* ---- the transport pair (node init) ---- */

static int
transport_pair_make(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s)
{
	static CK_OBJECT_CLASS sec = CKO_SECRET_KEY;
	CK_ULONG bits = TRANSPORT_BITS;
	CK_BYTE e[] = { 0x01, 0x00, 0x01 };
	/* what the transport key unwraps is K: a session secret, never
	 * extractable */
	CK_ATTRIBUTE ut[] = {
		{ CKA_CLASS, &sec, sizeof(sec) },
		{ CKA_TOKEN, &ck_false, sizeof(ck_false) },
		{ CKA_EXTRACTABLE, &ck_false, sizeof(ck_false) },
	};
	CK_ATTRIBUTE pub[] = {
		{ CKA_TOKEN, &ck_true, sizeof(ck_true) },
		{ CKA_PRIVATE, &ck_false, sizeof(ck_false) },
		{ CKA_LABEL, HSM_TRANSPORT_LABEL,
		    sizeof(HSM_TRANSPORT_LABEL) - 1 },
		{ CKA_MODULUS_BITS, &bits, sizeof(bits) },
		{ CKA_PUBLIC_EXPONENT, e, sizeof(e) },
		{ CKA_WRAP, &ck_false, sizeof(ck_false) },
		{ CKA_ENCRYPT, &ck_false, sizeof(ck_false) },
		{ CKA_VERIFY, &ck_false, sizeof(ck_false) },
	};
	CK_ATTRIBUTE priv[] = {
		{ CKA_TOKEN, &ck_true, sizeof(ck_true) },
		{ CKA_PRIVATE, &ck_true, sizeof(ck_true) },
		{ CKA_LABEL, HSM_TRANSPORT_LABEL,
		    sizeof(HSM_TRANSPORT_LABEL) - 1 },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		{ CKA_EXTRACTABLE, &ck_false, sizeof(ck_false) },
		{ CKA_UNWRAP, &ck_true, sizeof(ck_true) },
		{ CKA_DECRYPT, &ck_false, sizeof(ck_false) },
		{ CKA_SIGN, &ck_false, sizeof(ck_false) },
		{ CKA_DERIVE, &ck_false, sizeof(ck_false) },
		{ CKA_UNWRAP_TEMPLATE, ut, sizeof(ut) },
	};
	CK_MECHANISM m = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
	CK_OBJECT_HANDLE hp, hq;

	return hsm_init_rv(f->C_GenerateKeyPair(s, &m, pub,
	    sizeof(pub) / sizeof(pub[0]), priv, sizeof(priv) / sizeof(priv[0]),
	    &hp, &hq));
}

int
tok_node_objects(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, const char *so_pin,
    const char *user_pin)
{
	int rc;

	if ((rc = hsm_init_rv(f->C_Login(s, CKU_SO, (CK_UTF8CHAR *)so_pin,
	         strlen(so_pin)))) != 0)
		return rc;
	rc = hsm_init_rv(f->C_InitPIN(s, (CK_UTF8CHAR *)user_pin,
	    strlen(user_pin)));
	(void)f->C_Logout(s);
	if (rc != 0)
		return rc;
	if ((rc = hsm_init_rv(f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)user_pin,
	         strlen(user_pin)))) != 0)
		return rc;
	rc = transport_pair_make(f, s);
	(void)f->C_Logout(s);
	return rc;
}

/* The RSA public key object o as SPKI. */
static int
rsa_obj_spki(struct cer *c, CK_OBJECT_HANDLE o, uint8_t **spki, size_t *len)
{
	CK_BYTE n[1024], e[16];
	CK_ATTRIBUTE t[] = {
		{ CKA_MODULUS, n, sizeof(n) },
		{ CKA_PUBLIC_EXPONENT, e, sizeof(e) },
	};
	int rc;

	if ((rc = hsm_init_rv(c->f->C_GetAttributeValue(c->s, o, t, 2))) != 0)
		return rc;
	return hsm_rsa_spki(n, t[0].ulValueLen, e, t[1].ulValueLen, spki, len);
}

int
tok_node_request(const char *module, const char *label, uint8_t **spki,
    size_t *spki_len)
{
	struct cer c;
	CK_OBJECT_HANDLE pub;
	int rc;

	*spki = NULL;
	/* a public object: no login */
	if ((rc = cer_open(&c, module, label)) == 0 &&
	    (rc = need_one(&c, CKO_PUBLIC_KEY, HSM_TRANSPORT_LABEL, &pub)) == 0)
		rc = rsa_obj_spki(&c, pub, spki, spki_len);
	cer_close(&c);
	return rc;
}

/* ---- the bundle ---- */

static void
items_free(struct item *it)
{
	size_t i;

	for (i = 0; i < BUNDLE_ITEMS; i++)
		freezero(it[i].p, it[i].len);
	memset(it, 0, sizeof(*it) * BUNDLE_ITEMS);
}

static int
item_alloc(struct item *it)
{
	it->len = ITEM_MAX;
	return (it->p = malloc(ITEM_MAX)) != NULL ? 0 : HSM_ERR_NO_MEMORY;
}

static int
item_copy(struct item *it, const void *p, size_t len)
{
	if ((it->p = malloc(len > 0 ? len : 1)) == NULL)
		return HSM_ERR_NO_MEMORY;
	memcpy(it->p, p, len);
	it->len = len;
	return 0;
}

static int
bundle_build(const struct item *it, uint8_t **out, size_t *out_len)
{
	buf_t *b = buf_new(4096);
	size_t i;
	int rc = 0;

	if (b == NULL)
		return HSM_ERR_NO_MEMORY;
	if (buf_put(b, BUNDLE_MAGIC, 8) != 0 ||
	    buf_put_u32(b, BUNDLE_VERSION) != 0)
		rc = HSM_ERR_NO_MEMORY;
	for (i = 0; rc == 0 && i < BUNDLE_ITEMS; i++)
		if (buf_put_u32(b, (uint32_t)it[i].len) != 0 ||
		    buf_put(b, it[i].p, it[i].len) != 0)
			rc = HSM_ERR_NO_MEMORY;
	if (rc == 0 && (*out = malloc(buf_len(b))) == NULL)
		rc = HSM_ERR_NO_MEMORY;
	if (rc == 0) {
		memcpy(*out, buf_ptr(b), buf_len(b));
		*out_len = buf_len(b);
	}
	buf_free(b);
	return rc;
}

static uint32_t
rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

/* Parses a bundle into items pointing into it (not owned). */
static int
bundle_parse(const uint8_t *in, size_t len, struct item *it)
{
	size_t off = 12, i;
	uint32_t l;

	memset(it, 0, sizeof(*it) * BUNDLE_ITEMS);
	if (in == NULL || len < 12 || memcmp(in, BUNDLE_MAGIC, 8) != 0 ||
	    rd32(in + 8) != BUNDLE_VERSION)
		return HSM_ERR_ARGS;
	for (i = 0; i < BUNDLE_ITEMS; i++) {
		if (len - off < 4)
			return HSM_ERR_ARGS;
		l = rd32(in + off);
		off += 4;
		if (l > ITEM_MAX || l > len - off)
			return HSM_ERR_ARGS;
		it[i].p = (uint8_t *)in + off;
		it[i].len = l;
		off += l;
	}
	if (off != len || it[I_FP].len != FP_LEN ||
	    it[I_GEN].len != HSM_DOMAIN_ID_LEN || it[I_END].len != 0)
		return HSM_ERR_ARGS;
	for (i = I_K; i < I_END; i++)
		if (it[i].len == 0)
			return HSM_ERR_ARGS;
	return 0;
}

/* ---- approve (on a node that holds the domain) ---- */

/* n and e of a DER SPKI of an RSA key of TRANSPORT_BITS bits. */
static int
spki_rsa(const uint8_t *spki, size_t len, uint8_t *n, size_t *n_len, uint8_t *e,
    size_t *e_len)
{
	const unsigned char *p = spki;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);
	BIGNUM *bn = NULL, *be = NULL;
	int rc = HSM_ERR_ARGS;

	if (k == NULL || p != spki + len ||
	    EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA ||
	    EVP_PKEY_get_bits(k) != TRANSPORT_BITS ||
	    EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &bn) != 1 ||
	    EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &be) != 1 ||
	    (size_t)BN_num_bytes(be) > *e_len)
		goto out;
	*n_len = (size_t)BN_bn2bin(bn, n);
	*e_len = (size_t)BN_bn2bin(be, e);
	rc = 0;
out:
	BN_free(bn);
	BN_free(be);
	EVP_PKEY_free(k);
	return rc;
}

/* As SO: the node's key, trusted (made once per fingerprint). */
static int
trust_node(struct cer *c, const uint8_t *spki, size_t spki_len,
    const uint8_t fp[FP_LEN], CK_OBJECT_HANDLE *tr)
{
	static CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
	static CK_KEY_TYPE kt = CKK_RSA;
	uint8_t n[TRANSPORT_BITS / 8], e[8];
	size_t n_len = sizeof(n), e_len = sizeof(e);
	CK_ULONG cnt;
	int rc;

	if ((rc = spki_rsa(spki, spki_len, n, &n_len, e, &e_len)) != 0)
		return rc;
	if ((rc = find_one(c, CKO_PUBLIC_KEY, HSM_NODE_LABEL, fp, FP_LEN, tr,
	         &cnt)) != 0 ||
	    cnt == 1)
		return rc;
	{
		CK_ATTRIBUTE t[] = {
			{ CKA_CLASS, &cls, sizeof(cls) },
			{ CKA_KEY_TYPE, &kt, sizeof(kt) },
			{ CKA_LABEL, HSM_NODE_LABEL,
			    sizeof(HSM_NODE_LABEL) - 1 },
			{ CKA_ID, (void *)fp, FP_LEN },
			{ CKA_TOKEN, &ck_true, sizeof(ck_true) },
			{ CKA_PRIVATE, &ck_false, sizeof(ck_false) },
			{ CKA_TRUSTED, &ck_true, sizeof(ck_true) },
			{ CKA_WRAP, &ck_true, sizeof(ck_true) },
			{ CKA_ENCRYPT, &ck_false, sizeof(ck_false) },
			{ CKA_VERIFY, &ck_false, sizeof(ck_false) },
			{ CKA_MODULUS, n, n_len },
			{ CKA_PUBLIC_EXPONENT, e, e_len },
			{ CKA_MODIFIABLE, &ck_false, sizeof(ck_false) },
		};

		return hsm_init_rv(c->f->C_CreateObject(c->s, t,
		    sizeof(t) / sizeof(t[0]), tr));
	}
}

/* As SO: K, trusted, a public session object. */
static int
make_k(struct cer *c, CK_OBJECT_HANDLE *k)
{
	static CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	static CK_KEY_TYPE kt = CKK_AES;
	CK_ULONG vlen = 32;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
		{ CKA_TOKEN, &ck_false, sizeof(ck_false) },
		{ CKA_PRIVATE, &ck_false, sizeof(ck_false) },
		{ CKA_TRUSTED, &ck_true, sizeof(ck_true) },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		{ CKA_EXTRACTABLE, &ck_true, sizeof(ck_true) },
		{ CKA_WRAP, &ck_true, sizeof(ck_true) },
		{ CKA_UNWRAP, &ck_false, sizeof(ck_false) },
		{ CKA_ENCRYPT, &ck_false, sizeof(ck_false) },
		{ CKA_DECRYPT, &ck_false, sizeof(ck_false) },
	};
	CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };

	return hsm_init_rv(c->f->C_GenerateKey(c->s, &m, t,
	    sizeof(t) / sizeof(t[0]), k));
}

static int
wrap_into(struct cer *c, CK_MECHANISM *m, CK_OBJECT_HANDLE with,
    CK_OBJECT_HANDLE what, struct item *it)
{
	CK_RV rv;
	int rc;

	if ((rc = item_alloc(it)) != 0)
		return rc;
	rv = c->f->C_WrapKey(c->s, m, with, what, it->p, &it->len);
	/* a key of a vault made before clustering: not extractable */
	if (rv == CKR_KEY_UNEXTRACTABLE || rv == CKR_KEY_NOT_WRAPPABLE)
		return HSM_ERR_NOT_SHAREABLE;
	return hsm_init_rv(rv);
}

/* The generation of the one domain key (CKA_ID; none: 0); two domain
 * keys (a rotation under way) are refused. */
static int
domain_find(struct cer *c, CK_OBJECT_HANDLE *d, uint8_t gen[8])
{
	CK_ATTRIBUTE a = { CKA_ID, gen, HSM_DOMAIN_ID_LEN };
	int rc;

	memset(gen, 0, HSM_DOMAIN_ID_LEN);
	if ((rc = need_one(c, CKO_SECRET_KEY, HSM_DOMAIN_LABEL, d)) != 0)
		return rc;
	if (c->f->C_GetAttributeValue(c->s, *d, &a, 1) != CKR_OK ||
	    (a.ulValueLen != 0 && a.ulValueLen != HSM_DOMAIN_ID_LEN))
		memset(gen, 0, HSM_DOMAIN_ID_LEN);
	return 0;
}

/* As SO: trust the node, make K, wrap K to the node and the domain key
 * under K. */
static int
approve_so(struct cer *c, const uint8_t *spki, size_t spki_len,
    const uint8_t fp[FP_LEN], CK_OBJECT_HANDLE *k, struct item *it)
{
	CK_RSA_PKCS_OAEP_PARAMS op = { CKM_SHA_1, CKG_MGF1_SHA1,
		CKZ_DATA_SPECIFIED, NULL, 0 };
	CK_MECHANISM oaep = { CKM_RSA_PKCS_OAEP, &op, sizeof(op) };
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_OBJECT_HANDLE tr, dom;
	uint8_t gen[HSM_DOMAIN_ID_LEN];
	int rc;

	if ((rc = domain_find(c, &dom, gen)) != 0 ||
	    (rc = item_copy(&it[I_GEN], gen, sizeof(gen))) != 0 ||
	    (rc = trust_node(c, spki, spki_len, fp, &tr)) != 0 ||
	    (rc = make_k(c, k)) != 0 ||
	    (rc = wrap_into(c, &oaep, tr, *k, &it[I_K])) != 0)
		return rc;
	return wrap_into(c, &kwp, *k, dom, &it[I_DOMAIN]);
}

/* The EC public key object's params and point. */
static int
ec_pub_items(struct cer *c, const char *label, struct item *params,
    struct item *point)
{
	CK_OBJECT_HANDLE pub;
	int rc;

	if ((rc = need_one(c, CKO_PUBLIC_KEY, label, &pub)) != 0 ||
	    (rc = item_alloc(params)) != 0 || (rc = item_alloc(point)) != 0)
		return rc;
	{
		CK_ATTRIBUTE t[] = {
			{ CKA_EC_PARAMS, params->p, params->len },
			{ CKA_EC_POINT, point->p, point->len },
		};

		rc = hsm_init_rv(c->f->C_GetAttributeValue(c->s, pub, t, 2));
		params->len = t[0].ulValueLen;
		point->len = t[1].ulValueLen;
	}
	return rc;
}

/* As user: the token keys under K; the backup and audit keys are made
 * first where the vault has none yet, so every node holds the same. */
static int
approve_user(struct cer *c, CK_OBJECT_HANDLE k, struct item *it)
{
	static const struct {
		CK_OBJECT_CLASS cls;
		const char *label;
		int item;
	} keys[] = {
		{ CKO_SECRET_KEY, HSM_SEAL_LABEL, I_SEAL },
		{ CKO_SECRET_KEY, HSM_BIND_LABEL, I_BIND },
		{ CKO_SECRET_KEY, HSM_BACKUP_LABEL, I_BACKUP },
		{ CKO_PRIVATE_KEY, HSM_JWT_LABEL, I_JWT },
		{ CKO_PRIVATE_KEY, HSM_AUDIT_LABEL, I_AUDIT },
	};
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_OBJECT_HANDLE o;
	CK_ULONG n;
	size_t i;
	int rc;

	if ((rc = hsm_role_key_find(c->f, c->slot, c->s, HSM_BACKUP_LABEL, 1,
	         &o)) != 0 ||
	    (rc = find_one(c, CKO_PRIVATE_KEY, HSM_AUDIT_LABEL, NULL, 0, &o,
	         &n)) != 0)
		return rc;
	if (n == 0 &&
	    (rc = hsm_sign_pair_make(c->f, c->s, HSM_AUDIT_LABEL)) != 0)
		return rc;
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if ((rc = need_one(c, keys[i].cls, keys[i].label, &o)) != 0 ||
		    (rc = wrap_into(c, &kwp, k, o, &it[keys[i].item])) != 0)
			return rc;
	if ((rc = ec_pub_items(c, HSM_JWT_LABEL, &it[I_JWT_PARAMS],
	         &it[I_JWT_POINT])) != 0)
		return rc;
	return ec_pub_items(c, HSM_AUDIT_LABEL, &it[I_AUDIT_PARAMS],
	    &it[I_AUDIT_POINT]);
}

int
tok_node_approve(const char *module, const char *label, const char *so_pin,
    const char *user_pin, const uint8_t *spki, size_t spki_len,
    uint8_t **bundle, size_t *bundle_len)
{
	struct item it[BUNDLE_ITEMS];
	uint8_t fp[FP_LEN];
	CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
	struct cer c;
	int rc;

	*bundle = NULL;
	memset(it, 0, sizeof(it));
	if (spki == NULL || spki_len == 0)
		return HSM_ERR_ARGS;
	SHA256(spki, spki_len, fp);
	if ((rc = item_copy(&it[I_FP], fp, sizeof(fp))) != 0 ||
	    (rc = item_copy(&it[I_END], "", 0)) != 0)
		goto out;
	if ((rc = cer_open(&c, module, label)) != 0)
		goto close;
	if ((rc = login(&c, CKU_SO, so_pin)) != 0)
		goto close;
	rc = approve_so(&c, spki, spki_len, fp, &k, it);
	(void)c.f->C_Logout(c.s);
	if (rc == 0 && (rc = login(&c, CKU_USER, user_pin)) == 0) {
		rc = approve_user(&c, k, it);
		(void)c.f->C_Logout(c.s);
	}
	if (rc == 0)
		rc = bundle_build(it, bundle, bundle_len);
close:
	cer_close(&c); /* K goes with the session */
out:
	items_free(it);
	return rc;
}

/* ---- join (on the new node) ---- */

/* The template of a token key of the domain, unwrapped under K. */
struct tkey {
	int item;
	CK_OBJECT_CLASS cls;
	CK_KEY_TYPE kt;
	const char *label;
	int sign; /* sign/verify (bind, JWT, audit) or encrypt/decrypt */
};

static const struct tkey tkeys[] = {
	{ I_SEAL, CKO_SECRET_KEY, CKK_AES, HSM_SEAL_LABEL, 0 },
	{ I_BIND, CKO_SECRET_KEY, CKK_GENERIC_SECRET, HSM_BIND_LABEL, 1 },
	{ I_BACKUP, CKO_SECRET_KEY, CKK_AES, HSM_BACKUP_LABEL, 0 },
	{ I_JWT, CKO_PRIVATE_KEY, CKK_EC, HSM_JWT_LABEL, 1 },
	{ I_AUDIT, CKO_PRIVATE_KEY, CKK_EC, HSM_AUDIT_LABEL, 1 },
};

static int
unwrap_tkey(struct cer *c, CK_OBJECT_HANDLE k, const struct tkey *tk,
    const struct item *w, CK_OBJECT_HANDLE *o)
{
	CK_BBOOL sign = tk->sign ? CK_TRUE : CK_FALSE;
	CK_BBOOL enc = tk->sign ? CK_FALSE : CK_TRUE;
	CK_BBOOL verify = tk->cls == CKO_SECRET_KEY ? sign : CK_FALSE;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, (void *)&tk->cls, sizeof(tk->cls) },
		{ CKA_KEY_TYPE, (void *)&tk->kt, sizeof(tk->kt) },
		{ CKA_LABEL, (void *)tk->label, strlen(tk->label) },
		{ CKA_TOKEN, &ck_true, sizeof(ck_true) },
		{ CKA_PRIVATE, &ck_true, sizeof(ck_true) },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		{ CKA_EXTRACTABLE, &ck_true, sizeof(ck_true) },
		{ CKA_WRAP_WITH_TRUSTED, &ck_true, sizeof(ck_true) },
		{ CKA_SIGN, &sign, sizeof(sign) },
		{ CKA_DECRYPT, &enc, sizeof(enc) },
		{ CKA_DERIVE, &ck_false, sizeof(ck_false) },
		{ CKA_UNWRAP, &ck_false, sizeof(ck_false) },
		/* secret keys only */
		{ CKA_VERIFY, &verify, sizeof(verify) },
		{ CKA_ENCRYPT, &enc, sizeof(enc) },
		{ CKA_WRAP, &ck_false, sizeof(ck_false) },
	};
	CK_ULONG nt = sizeof(t) / sizeof(t[0]);
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };

	if (tk->cls != CKO_SECRET_KEY)
		nt -= 3;
	return hsm_init_rv(c->f->C_UnwrapKey(c->s, &kwp, k, w->p, w->len, t, nt,
	    o));
}

static int
create_ec_pub(struct cer *c, const char *label, const struct item *params,
    const struct item *point, CK_OBJECT_HANDLE *o)
{
	static CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
	static CK_KEY_TYPE kt = CKK_EC;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_TOKEN, &ck_true, sizeof(ck_true) },
		{ CKA_PRIVATE, &ck_false, sizeof(ck_false) },
		{ CKA_VERIFY, &ck_true, sizeof(ck_true) },
		{ CKA_EC_PARAMS, params->p, params->len },
		{ CKA_EC_POINT, point->p, point->len },
	};

	return hsm_init_rv(c->f->C_CreateObject(c->s, t,
	    sizeof(t) / sizeof(t[0]), o));
}

/* As user: K under the transport key (a public session object, for the
 * SO next), then the token keys and the public halves. made[] collects
 * what was made, for the undo of a failure. */
static int
join_user(struct cer *c, const struct item *it, CK_OBJECT_HANDLE *k,
    CK_OBJECT_HANDLE *made, size_t *nmade)
{
	static CK_OBJECT_CLASS sec = CKO_SECRET_KEY;
	static CK_KEY_TYPE aes = CKK_AES;
	CK_RSA_PKCS_OAEP_PARAMS op = { CKM_SHA_1, CKG_MGF1_SHA1,
		CKZ_DATA_SPECIFIED, NULL, 0 };
	CK_MECHANISM oaep = { CKM_RSA_PKCS_OAEP, &op, sizeof(op) };
	CK_ATTRIBUTE kt[] = {
		{ CKA_CLASS, &sec, sizeof(sec) },
		{ CKA_KEY_TYPE, &aes, sizeof(aes) },
		{ CKA_TOKEN, &ck_false, sizeof(ck_false) },
		{ CKA_PRIVATE, &ck_false, sizeof(ck_false) },
		{ CKA_SENSITIVE, &ck_true, sizeof(ck_true) },
		{ CKA_EXTRACTABLE, &ck_false, sizeof(ck_false) },
		{ CKA_UNWRAP, &ck_true, sizeof(ck_true) },
		{ CKA_WRAP, &ck_false, sizeof(ck_false) },
	};
	CK_OBJECT_HANDLE tp;
	size_t i;
	int rc;

	if ((rc = need_one(c, CKO_PRIVATE_KEY, HSM_TRANSPORT_LABEL, &tp)) != 0)
		return rc;
	/* a bundle for another node, or altered: K does not open */
	if (c->f->C_UnwrapKey(c->s, &oaep, tp, it[I_K].p, it[I_K].len, kt,
	        sizeof(kt) / sizeof(kt[0]), k) != CKR_OK)
		return HSM_ERR_DECRYPT;
	for (i = 0; i < sizeof(tkeys) / sizeof(tkeys[0]); i++) {
		if ((rc = unwrap_tkey(c, *k, &tkeys[i], &it[tkeys[i].item],
		         &made[*nmade])) != 0)
			return rc;
		(*nmade)++;
	}
	if ((rc = create_ec_pub(c, HSM_JWT_LABEL, &it[I_JWT_PARAMS],
	         &it[I_JWT_POINT], &made[*nmade])) != 0)
		return rc;
	(*nmade)++;
	if ((rc = create_ec_pub(c, HSM_AUDIT_LABEL, &it[I_AUDIT_PARAMS],
	         &it[I_AUDIT_POINT], &made[*nmade])) != 0)
		return rc;
	(*nmade)++;
	return 0;
}

/* As SO: the domain key under K, trusted. */
static int
join_so(struct cer *c, const struct item *it, CK_OBJECT_HANDLE k)
{
	CK_ATTRIBUTE t[HSM_DOMAIN_TEMPLATE_N];
	uint8_t id[HSM_DOMAIN_ID_LEN];
	uint64_t gen = 0;
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_OBJECT_HANDLE d;
	size_t i, n;

	for (i = 0; i < HSM_DOMAIN_ID_LEN; i++)
		gen = gen << 8 | it[I_GEN].p[i];
	n = hsm_domain_template(t, gen, id);
	return hsm_init_rv(c->f->C_UnwrapKey(c->s, &kwp, k, it[I_DOMAIN].p,
	    it[I_DOMAIN].len, t, (CK_ULONG)n, &d));
}

/* The keys of the domain this token has, any one of them: a token that
 * holds one has joined (or is a domain of its own). */
static int
has_domain(struct cer *c, int *has)
{
	CK_OBJECT_HANDLE o;
	CK_ULONG n;
	int rc;

	*has = 0;
	if ((rc = find_one(c, CKO_SECRET_KEY, HSM_DOMAIN_LABEL, NULL, 0, &o,
	         &n)) != 0)
		return rc;
	*has = n != 0;
	return 0;
}

static void
undo_made(struct cer *c, const CK_OBJECT_HANDLE *made, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		(void)c->f->C_DestroyObject(c->s, made[i]);
}

int
tok_node_join(const char *module, const char *label, const char *so_pin,
    const char *user_pin, const uint8_t *bundle, size_t bundle_len)
{
	struct item it[BUNDLE_ITEMS];
	CK_OBJECT_HANDLE k = CK_INVALID_HANDLE, made[8];
	uint8_t *spki = NULL, fp[FP_LEN];
	size_t spki_len = 0, nmade = 0;
	struct cer c;
	int rc, has;

	if ((rc = bundle_parse(bundle, bundle_len, it)) != 0)
		return rc;
	if ((rc = tok_node_request(module, label, &spki, &spki_len)) != 0)
		return rc;
	SHA256(spki, spki_len, fp);
	free(spki);
	if (CRYPTO_memcmp(fp, it[I_FP].p, FP_LEN) != 0)
		return HSM_ERR_DECRYPT; /* made for another node */
	if ((rc = cer_open(&c, module, label)) != 0 ||
	    (rc = has_domain(&c, &has)) != 0)
		goto out;
	if (has) {
		rc = HSM_ERR_EXISTS;
		goto out;
	}
	if ((rc = login(&c, CKU_USER, user_pin)) != 0)
		goto out;
	rc = join_user(&c, it, &k, made, &nmade);
	if (rc != 0)
		undo_made(&c, made, nmade);
	(void)c.f->C_Logout(c.s);
	if (rc == 0 && (rc = login(&c, CKU_SO, so_pin)) == 0) {
		rc = join_so(&c, it, k);
		(void)c.f->C_Logout(c.s);
		if (rc != 0 && login(&c, CKU_USER, user_pin) == 0) {
			/* the handles went with the logout: find them again */
			size_t i;
			CK_OBJECT_HANDLE o;

			for (i = 0; i < sizeof(tkeys) / sizeof(tkeys[0]); i++)
				if (need_one(&c, tkeys[i].cls, tkeys[i].label,
				        &o) == 0)
					(void)c.f->C_DestroyObject(c.s, o);
			if (need_one(&c, CKO_PUBLIC_KEY, HSM_JWT_LABEL, &o) ==
			    0)
				(void)c.f->C_DestroyObject(c.s, o);
			if (need_one(&c, CKO_PUBLIC_KEY, HSM_AUDIT_LABEL, &o) ==
			    0)
				(void)c.f->C_DestroyObject(c.s, o);
			(void)c.f->C_Logout(c.s);
		}
	}
out:
	cer_close(&c);
	return rc;
}

/* ---- remove ---- */

int
tok_node_forget(const char *module, const char *label, const char *so_pin,
    const uint8_t fp[32], unsigned *removed)
{
	struct cer c;
	CK_OBJECT_HANDLE o;
	CK_ULONG n;
	int rc;

	*removed = 0;
	if ((rc = cer_open(&c, module, label)) != 0 ||
	    (rc = login(&c, CKU_SO, so_pin)) != 0)
		goto out;
	for (;;) {
		if ((rc = find_one(&c, CKO_PUBLIC_KEY, HSM_NODE_LABEL, fp,
		         FP_LEN, &o, &n)) != 0 ||
		    n == 0)
			break;
		if ((rc = hsm_init_rv(c.f->C_DestroyObject(c.s, o))) != 0)
			break;
		(*removed)++;
	}
	(void)c.f->C_Logout(c.s);
out:
	cer_close(&c);
	return rc;
}

/* ---- rotation of the domain key ---- */

static int
domain_new(struct cer *c, CK_OBJECT_HANDLE cur)
{
	CK_ATTRIBUTE t[HSM_DOMAIN_TEMPLATE_N + 1];
	uint8_t gen[HSM_DOMAIN_ID_LEN], id[HSM_DOMAIN_ID_LEN];
	CK_BBOOL ext = CK_FALSE;
	CK_ATTRIBUTE ea = { CKA_EXTRACTABLE, &ext, sizeof(ext) };
	CK_ATTRIBUTE ga = { CKA_ID, gen, sizeof(gen) };
	CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_ULONG vlen = 32;
	CK_OBJECT_HANDLE k;
	uint64_t g = 0;
	size_t i, n;

	/* a domain key of before clustering can never hand its blobs on */
	if (c->f->C_GetAttributeValue(c->s, cur, &ea, 1) != CKR_OK ||
	    ext != CK_TRUE)
		return HSM_ERR_NOT_SHAREABLE;
	if (c->f->C_GetAttributeValue(c->s, cur, &ga, 1) == CKR_OK &&
	    ga.ulValueLen == HSM_DOMAIN_ID_LEN)
		for (i = 0; i < HSM_DOMAIN_ID_LEN; i++)
			g = g << 8 | gen[i];
	n = hsm_domain_template(t, g + 1, id);
	t[n++] = (CK_ATTRIBUTE){ CKA_VALUE_LEN, &vlen, sizeof(vlen) };
	return hsm_init_rv(c->f->C_GenerateKey(c->s, &m, t, (CK_ULONG)n, &k));
}

int
tok_domain_rotate(const char *module, const char *label, const char *so_pin,
    int drop)
{
	CK_OBJECT_HANDLE cur, old;
	struct cer c;
	int rc;

	if ((rc = cer_open(&c, module, label)) != 0 ||
	    (rc = login(&c, CKU_SO, so_pin)) != 0)
		goto out;
	if ((rc = hsm_domain_keys(c.f, c.s, &cur, &old)) == 0) {
		if (drop && old != CK_INVALID_HANDLE)
			rc = hsm_init_rv(c.f->C_DestroyObject(c.s, old));
		else if (!drop && old == CK_INVALID_HANDLE)
			rc = domain_new(&c, cur);
	}
	(void)c.f->C_Logout(c.s);
out:
	cer_close(&c);
	return rc;
}
