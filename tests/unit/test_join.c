/*
 * test_join — the token side of clustering against two (three) real
 * SoftHSMv2 tokens in temporary directories, through the token process
 * (hsm/hsm.h): vault A, node B made by `node init`, A approves B (an SO
 * ceremony: the shares are needed), B joins, and a blob made on A opens
 * on B; a bundle altered, or made for another node, is refused and
 * leaves nothing behind; a node's trusted key is removed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "hsm/hsm.h"
#include "tests/unit/t.h"

#define MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define LABEL "p11vault-join"
#define BIND "k1/0123456789abcdef0123456789abcdef"

static char tmp[] = "/tmp/p11vault-join-XXXXXX";

struct node {
	char dir[600], hsm[700], conf[700];
	char *shares;
	struct hsm_init init;
};

static struct node A, B, C;

/* DIR/tokens, DIR/softhsm2.conf, DIR/hsm for one token of its own. */
static int
node_dirs(struct node *n, const char *name)
{
	char tok[700];
	FILE *fp;

	if (snprintf(n->dir, sizeof(n->dir), "%s/%s", tmp, name) >=
	        (int)sizeof(n->dir) ||
	    snprintf(tok, sizeof(tok), "%s/tokens", n->dir) >=
	        (int)sizeof(tok) ||
	    snprintf(n->hsm, sizeof(n->hsm), "%s/hsm", n->dir) >=
	        (int)sizeof(n->hsm) ||
	    snprintf(n->conf, sizeof(n->conf), "%s/softhsm2.conf", n->dir) >=
	        (int)sizeof(n->conf))
		return -1;
	if (mkdir(n->dir, 0700) != 0 || mkdir(tok, 0700) != 0 ||
	    mkdir(n->hsm, 0700) != 0 || (fp = fopen(n->conf, "w")) == NULL)
		return -1;
	fprintf(fp,
	    "directories.tokendir = %s\nobjectstore.backend = file\n"
	    "log.level = ERROR\nslots.removable = false\n",
	    tok);
	fclose(fp);
	memset(&n->init, 0, sizeof(n->init));
	n->init.module_path = MODULE;
	n->init.token_label = LABEL;
	n->init.hsm_dir = n->hsm;
	n->init.softhsm_conf = n->conf;
	n->init.shares = 3;
	n->init.threshold = 2;
	n->init.auto_method = "none";
	return 0;
}

static int
node_init(struct node *n, const char *name, int is_node)
{
	if (node_dirs(n, name) != 0)
		return -1;
	n->init.node = is_node;
	return hsm_token_init(&n->init, &n->shares);
}

/* The node's token opened and unsealed with two of its shares. */
static hsm_t *
node_open(struct node *n)
{
	struct hsm_config c;
	struct hsm_seal_status st;
	char line[256];
	const char *p = n->shares, *e;
	hsm_t *h = NULL;
	int i;

	memset(&c, 0, sizeof(c));
	c.module_path = MODULE;
	c.token_label = LABEL;
	c.hsm_dir = n->hsm;
	c.softhsm_conf = n->conf;
	c.pool_size = 2;
	if (hsm_open(&c, &h) != 0)
		return NULL;
	for (i = 0; i < 2 && (e = strchr(p, '\n')) != NULL; i++, p = e + 1) {
		memcpy(line, p, (size_t)(e - p));
		line[e - p] = '\0';
		if (hsm_unseal_share(h, line, &st) != 0)
			break;
	}
	if (hsm_seal_status(h, &st) != 0 || st.sealed) {
		hsm_close(h);
		return NULL;
	}
	return h;
}

/* The first k lines of s (malloc'd). */
static char *
first_lines(const char *s, int k)
{
	const char *p = s;
	char *out;

	while (k-- > 0 && (p = strchr(p, '\n')) != NULL)
		p++;
	if (p == NULL)
		p = s + strlen(s);
	out = strndup(s, (size_t)(p - s));
	return out;
}

static uint8_t *blob, *spki;
static size_t blob_len, spki_len;
static uint8_t *jwt_a, *audit_a;
static size_t jwt_a_len, audit_a_len;

/* A: a key, a round trip, the JWT and audit public keys. */
static void
on_a(void)
{
	uint8_t dek[32], ct[512], pt[512];
	size_t ct_len = sizeof(ct), pt_len = sizeof(pt);
	hsm_t *h = node_open(&A);

	T_CHECK(h != NULL, "vault A opens with two of its shares");
	if (h == NULL)
		return;
	T_CHECK(hsm_key_generate(h, BIND, HSM_KTY_RSA, 2048, 0, &blob,
	            &blob_len, &spki, &spki_len) == 0,
	    "A generates an RSA key");
	T_CHECK(RAND_bytes(dek, 32) == 1 &&
	        hsm_pub_encrypt(spki, spki_len, HSM_ALG_RSA_OAEP, dek, 32, ct,
	            &ct_len) == 0 &&
	        hsm_key_decrypt(h, BIND, blob, blob_len, HSM_ALG_RSA_OAEP, ct,
	            ct_len, pt, &pt_len) == 0 &&
	        pt_len == 32 && memcmp(pt, dek, 32) == 0,
	    "A unwraps its own blob");
	T_CHECK(hsm_jwt_public(h, &jwt_a, &jwt_a_len) == 0 &&
	        hsm_audit_public(h, &audit_a, &audit_a_len) == 0,
	    "A's JWT and audit public keys");
	hsm_close(h);
}

/* B opens A's blob, signs with A's JWT key, and binding still holds. */
static void
on_b(void)
{
	uint8_t dek[32], ct[512], pt[512], sig[64], dg[32], *pk = NULL;
	size_t ct_len = sizeof(ct), pt_len = sizeof(pt), pk_len = 0;
	int valid = 0;
	hsm_t *h = node_open(&B);

	T_CHECK(h != NULL, "node B opens with two of its own shares");
	if (h == NULL)
		return;
	T_CHECK(RAND_bytes(dek, 32) == 1 &&
	        hsm_pub_encrypt(spki, spki_len, HSM_ALG_RSA_OAEP, dek, 32, ct,
	            &ct_len) == 0 &&
	        hsm_key_decrypt(h, BIND, blob, blob_len, HSM_ALG_RSA_OAEP, ct,
	            ct_len, pt, &pt_len) == 0 &&
	        pt_len == 32 && memcmp(pt, dek, 32) == 0,
	    "B unwraps a blob made on A (inside B's token)");
	pt_len = sizeof(pt);
	T_CHECK(hsm_key_decrypt(h, "k2/0123456789abcdef0123456789abcdef", blob,
	            blob_len, HSM_ALG_RSA_OAEP, ct, ct_len, pt, &pt_len) != 0,
	    "on B too, A's blob opens only as what it was made for");
	T_CHECK(hsm_jwt_public(h, &pk, &pk_len) == 0 && pk_len == jwt_a_len &&
	        memcmp(pk, jwt_a, pk_len) == 0,
	    "B holds A's JWT key (tokens of either node verify on both)");
	SHA256((const uint8_t *)"tok", 3, dg);
	T_CHECK(hsm_jwt_sign(h, (const uint8_t *)"tok", 3, sig) == 0 &&
	        hsm_pub_verify(jwt_a, jwt_a_len, HSM_ALG_ES256, dg, 32, sig, 64,
	            &valid) == 0 &&
	        valid,
	    "B signs with the JWT key and A's public key verifies it");
	free(pk);
	pk = NULL;
	T_CHECK(hsm_audit_public(h, &pk, &pk_len) == 0 &&
	        pk_len == audit_a_len && memcmp(pk, audit_a, pk_len) == 0,
	    "B holds A's audit key");
	free(pk);
	hsm_close(h);
}

static void
approve_and_join(void)
{
	uint8_t *req = NULL, *bundle = NULL, *out = NULL, *creq = NULL;
	size_t req_len = 0, bundle_len = 0, out_len = 0, creq_len = 0;
	uint8_t fp[32];
	char *two = first_lines(A.shares, 2), *one = first_lines(A.shares, 1);
	char *btwo = first_lines(B.shares, 2);
	hsm_t *h;

	T_CHECK(hsm_node(&B.init, HSM_NODE_REQUEST, NULL, NULL, 0, &req,
	            &req_len) == 0 &&
	        req_len > 300,
	    "node B's transport public key (its join request)");
	h = node_open(&B);
	T_CHECK(h == NULL, "node B does not open before it joins (no domain)");
	hsm_close(h);
	T_CHECK(hsm_node(&A.init, HSM_NODE_APPROVE, one, req, req_len, &bundle,
	            &bundle_len) == HSM_ERR_ARGS &&
	        bundle == NULL,
	    "approve with one share (of two needed) is refused");
	T_CHECK(hsm_node(&A.init, HSM_NODE_APPROVE, "", req, req_len, &bundle,
	            &bundle_len) == HSM_ERR_ARGS,
	    "approve without the SO secret is refused");
	T_CHECK(hsm_node(&A.init, HSM_NODE_APPROVE, two, req, req_len, &bundle,
	            &bundle_len) == 0 &&
	        bundle_len > 900,
	    "A approves B with two shares: a join bundle");
	T_CHECK(hsm_node(&B.init, HSM_NODE_JOIN, "", bundle, bundle_len, &out,
	            &out_len) == HSM_ERR_ARGS,
	    "join without B's own shares is refused");
	bundle[120] ^= 1; /* inside K, wrapped to B's transport key */
	T_CHECK(hsm_node(&B.init, HSM_NODE_JOIN, btwo, bundle, bundle_len, &out,
	            &out_len) != 0,
	    "an altered bundle is refused");
	bundle[120] ^= 1;
	/* C: another node; B's bundle is not C's */
	T_CHECK(node_init(&C, "c", 1) == 0 &&
	        hsm_node(&C.init, HSM_NODE_REQUEST, NULL, NULL, 0, &creq,
	            &creq_len) == 0,
	    "node C made");
	{
		char *ctwo = first_lines(C.shares, 2);

		T_CHECK(hsm_node(&C.init, HSM_NODE_JOIN, ctwo, bundle,
		            bundle_len, &out, &out_len) == HSM_ERR_DECRYPT,
		    "a bundle made for B does not join C");
		free(ctwo);
	}
	T_CHECK(hsm_node(&B.init, HSM_NODE_JOIN, btwo, bundle, bundle_len, &out,
	            &out_len) == 0,
	    "B joins (after the refused attempts left nothing behind)");
	T_CHECK(hsm_node(&B.init, HSM_NODE_JOIN, btwo, bundle, bundle_len, &out,
	            &out_len) == HSM_ERR_EXISTS,
	    "a second join is refused: B holds the domain");
	SHA256(req, req_len, fp);
	T_CHECK(hsm_node(&A.init, HSM_NODE_FORGET, two, fp, 32, &out,
	            &out_len) == 0 &&
	        out_len == 1 && out[0] == 1,
	    "A deletes B's trusted transport key");
	free(out);
	out = NULL;
	T_CHECK(hsm_node(&A.init, HSM_NODE_FORGET, two, fp, 32, &out,
	            &out_len) == 0 &&
	        out_len == 1 && out[0] == 0,
	    "and it is gone");
	free(out);
	free(req);
	free(creq);
	free(bundle);
	free(two);
	free(one);
	free(btwo);
}

/* Rotation on A: the blob moves to the new domain key inside A's token;
 * B, which holds only the old one, no longer opens it. */
static void
rotate(void)
{
	char *two = first_lines(A.shares, 2);
	uint8_t *out = NULL, *nb = NULL, *nb2 = NULL, sig[512], dg[32] = { 7 };
	size_t out_len = 0, nb_len = 0, nb2_len = 0, sl = sizeof(sig);
	hsm_t *h;

	T_CHECK(hsm_node(&A.init, HSM_DOMAIN_NEW, two, NULL, 0, &out,
	            &out_len) == 0,
	    "A: a new domain key beside the old (SO)");
	h = node_open(&A);
	T_CHECK(h != NULL &&
	        hsm_blob_rewrap(h, BIND, blob, blob_len, &nb, &nb_len) == 0 &&
	        nb_len > 0 &&
	        (nb_len != blob_len || memcmp(nb, blob, nb_len) != 0),
	    "A re-wraps the blob under the new key, in the token");
	T_CHECK(h != NULL &&
	        hsm_blob_rewrap(h, BIND, nb, nb_len, &nb2, &nb2_len) ==
	            HSM_ERR_EXISTS,
	    "a blob under the new key is left as it is");
	T_CHECK(h != NULL &&
	        hsm_blob_rewrap(h, "k9/0123456789abcdef0123456789abcdef", blob,
	            blob_len, &nb2, &nb2_len) != 0,
	    "a re-wrap keeps the binding (another bind refused)");
	hsm_close(h);
	T_CHECK(hsm_node(&A.init, HSM_DOMAIN_DROP, two, NULL, 0, &out,
	            &out_len) == 0,
	    "A: the old domain key destroyed");
	h = node_open(&A);
	T_CHECK(h != NULL &&
	        hsm_key_sign(h, BIND, nb, nb_len, HSM_ALG_RS256, dg, 32, sig,
	            &sl) == 0,
	    "A signs with the re-wrapped blob");
	sl = sizeof(sig);
	T_CHECK(h != NULL &&
	        hsm_key_sign(h, "k1/other", blob, blob_len, HSM_ALG_RS256, dg,
	            32, sig, &sl) != 0,
	    "(control) a wrong bind fails");
	hsm_close(h);
	h = node_open(&B);
	sl = sizeof(sig);
	T_CHECK(h != NULL &&
	        hsm_key_sign(h, BIND, nb, nb_len, HSM_ALG_RS256, dg, 32, sig,
	            &sl) != 0,
	    "B, without the new domain key, cannot open the re-wrapped blob");
	hsm_close(h);
	free(nb);
	free(nb2);
	free(two);
}

int
main(void)
{
	char cmd[700];

	if (mkdtemp(tmp) == NULL) {
		T_CHECK(0, "a temporary directory");
		return T_DONE();
	}
	T_CHECK(node_init(&A, "a", 0) == 0, "vault A initialised (2 of 3)");
	T_CHECK(node_init(&B, "b", 1) == 0, "node B initialised (node init)");
	on_a();
	if (blob != NULL)
		approve_and_join();
	if (blob != NULL)
		on_b();
	if (blob != NULL)
		rotate();
	free(blob);
	free(spki);
	free(jwt_a);
	free(audit_a);
	free(A.shares);
	free(B.shares);
	free(C.shares);
	if (snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp) < (int)sizeof(cmd) &&
	    system(cmd) != 0)
		T_CHECK(0, "clean up");
	return T_DONE();
}
