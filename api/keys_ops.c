/*
 * keys_ops.c — the cryptographic operations on a key version: encrypt,
 * decrypt, wrapKey, unwrapKey, sign, verify. Parses {"alg","value"[,
 * "digest"]}, calls vault/ (which asks the token), answers {"kid","value"}.
 *
 * Must never: echo a plaintext, ciphertext or digest in an error; let a
 * decryption failure say why (one indistinguishable answer); keep a
 * plaintext beyond the request (wiped before return).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "api/keys.h"
#include "hsm/buf.h"

#define CRYPTO_IN_MAX 1024 /* ciphertext of RSA-4096 is 512 */
#define DIGEST_MAX 64
#define SIG_MAX 1024

static const struct keys_crypto_op crypto_ops[] = {
	{ "encrypt", "encrypt", KEYS_ENCRYPT, PERM_ENCRYPT, VLT_OP_ENCRYPT },
	{ "decrypt", "decrypt", KEYS_DECRYPT, PERM_DECRYPT, VLT_OP_DECRYPT },
	{ "wrapkey", "wrapKey", KEYS_ENCRYPT, PERM_WRAPKEY, VLT_OP_WRAP },
	{ "unwrapkey", "unwrapKey", KEYS_DECRYPT, PERM_UNWRAPKEY,
	    VLT_OP_UNWRAP },
	{ "sign", "sign", KEYS_SIGN, PERM_SIGN, VLT_OP_SIGN },
	{ "verify", "verify", KEYS_VERIFY, PERM_VERIFY, VLT_OP_VERIFY },
};

static const struct {
	const char *name;
	enum vlt_alg alg;
} alg_tab[] = {
	{ "RSA-OAEP", VLT_ALG_RSA_OAEP },
	{ "RSA-OAEP-256", VLT_ALG_RSA_OAEP_256 },
	{ "RSA1_5", VLT_ALG_RSA1_5 },
	{ "RS256", VLT_ALG_RS256 },
	{ "RS384", VLT_ALG_RS384 },
	{ "RS512", VLT_ALG_RS512 },
	{ "PS256", VLT_ALG_PS256 },
	{ "PS384", VLT_ALG_PS384 },
	{ "PS512", VLT_ALG_PS512 },
	{ "ES256", VLT_ALG_ES256 },
	{ "ES384", VLT_ALG_ES384 },
	{ "ES512", VLT_ALG_ES512 },
	{ "ES256K", VLT_ALG_ES256K },
};

const struct keys_crypto_op *
keys_crypto_op_find(const char *seg)
{
	size_t i;

	for (i = 0; i < sizeof(crypto_ops) / sizeof(crypto_ops[0]); i++)
		if (strcasecmp(seg, crypto_ops[i].path) == 0)
			return &crypto_ops[i];
	return NULL;
}

static int
parse_alg(json_t *body, enum keys_crypto_kind kind, enum vlt_alg *alg,
    struct api_resp *r)
{
	const char *s;
	size_t i;
	int rc, is_enc;

	if ((rc = api_field_string(body, "alg", 1, &s, r)) != 0)
		return rc;
	for (i = 0; i < sizeof(alg_tab) / sizeof(alg_tab[0]); i++) {
		if (strcmp(s, alg_tab[i].name) != 0)
			continue;
		is_enc = alg_tab[i].alg <= VLT_ALG_RSA1_5;
		if (is_enc != (kind == KEYS_ENCRYPT || kind == KEYS_DECRYPT))
			break;
		*alg = alg_tab[i].alg;
		return 0;
	}
	api_resp_error(r, 400, "BadParameter",
	    "The field 'alg' holds an algorithm that is unknown or not "
	    "valid for this operation.");
	return VLT_ERR_BAD_PARAM;
}

/* One operation's inputs and outputs. */
struct crypto_call {
	enum vlt_alg alg;
	uint8_t *in, *sig;
	size_t in_len, sig_len;
	uint8_t out[SIG_MAX];
	size_t out_len;
	int valid;
	char kv[VLT_VERSION_LEN + 1];
};

static int
crypto_inputs(json_t *body, const struct keys_crypto_op *co,
    struct crypto_call *c, struct api_resp *r)
{
	switch (co->kind) {
	case KEYS_ENCRYPT:
	case KEYS_DECRYPT:
		return api_field_b64(body, "value", CRYPTO_IN_MAX, 1, &c->in,
		    &c->in_len, r);
	case KEYS_SIGN:
		return api_field_b64(body, "value", DIGEST_MAX, 1, &c->in,
		    &c->in_len, r);
	case KEYS_VERIFY:
	default:
		if (api_field_b64(body, "digest", DIGEST_MAX, 1, &c->in,
		        &c->in_len, r) != 0)
			return VLT_ERR_BAD_PARAM;
		return api_field_b64(body, "value", SIG_MAX, 1, &c->sig,
		    &c->sig_len, r);
	}
}

/* The token's work; the vault error as is. */
static int
crypto_run(vault_t *v, const struct key_target *t, struct crypto_call *c)
{
	const struct keys_crypto_op *co = t->op;

	c->out_len = sizeof(c->out);
	switch (co->kind) {
	case KEYS_ENCRYPT:
		return vault_key_encrypt(v, t->name, t->version, co->op, c->alg,
		    c->in, c->in_len, c->out, &c->out_len, c->kv);
	case KEYS_DECRYPT:
		return vault_key_decrypt(v, t->name, t->version, co->op, c->alg,
		    c->in, c->in_len, c->out, &c->out_len, c->kv);
	case KEYS_SIGN:
		return vault_key_sign(v, t->name, t->version, c->alg, c->in,
		    c->in_len, c->out, &c->out_len, c->kv);
	case KEYS_VERIFY:
	default:
		return vault_key_verify(v, t->name, t->version, c->alg, c->in,
		    c->in_len, c->sig, c->sig_len, &c->valid, c->kv);
	}
}

static double
ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 +
	    (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

void
keys_crypto(struct api_req *q, struct api_resp *r, const struct key_target *t)
{
	const struct keys_crypto_op *co = t->op;
	struct crypto_call c;
	struct timespec t0;
	char kid[512];
	json_t *body = NULL;
	int rc;

	memset(&c, 0, sizeof(c));
	if (api_body_object(q, r, &body) != 0)
		return;
	if (parse_alg(body, co->kind, &c.alg, r) != 0 ||
	    crypto_inputs(body, co, &c, r) != 0)
		goto out;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = crypto_run(q->vault, t, &c);
	api_metrics_observe_token(q->ctx, co->azure, rc == 0, ms_since(&t0));
	if (rc != 0) {
		/* a decryption that fails says nothing about why */
		api_resp_vault_error_in(r, rc,
		    co->kind == KEYS_DECRYPT ? API_SUBJ_CIPHERTEXT :
		                               API_SUBJ_VALUE,
		    t->name, co->azure);
		goto out;
	}
	if (keys_kid(q, t->name, c.kv, kid, sizeof(kid)) != 0 ||
	    keys_set_key_id(q, r, t->name, c.kv, 0) != 0) {
		api_resp_vault_error(r, VLT_ERR_INTERNAL, t->name, NULL);
		goto out;
	}
	if (co->kind == KEYS_VERIFY)
		api_resp_set(r, 200, json_pack("{s:b}", "value", c.valid));
	else
		api_resp_set(r, 200,
		    json_pack("{s:s, s:o}", "kid", kid, "value",
		        api_json_b64(c.out, c.out_len)));
out:
	OPENSSL_cleanse(c.out, sizeof(c.out));
	freezero(c.in, c.in_len);
	free(c.sig);
	json_decref(body);
}
