/*
 * Unit tests for vault/: against a real SoftHSMv2 token in a fresh data
 * directory (no mocks). Proves the init/open contract, key lifecycle,
 * paging, the enabled/nbf/exp/key_ops checks, soft delete, recovery,
 * purge, purge protection, retention, the test clock, persistence across
 * reopen, and principal/access-policy persistence.
 */
#include <ftw.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "hsm/base.h"
#include "vault/config.h"
#include "vault/vault.h"
#include "t.h"

static char dir[256];
static char top[256];

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(path);
}

static int
file_mode(const char *name)
{
	char p[512];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	if (stat(p, &st) != 0)
		return -1;
	return (int)(st.st_mode & 0777);
}

/* The whole of DIR/name, or NULL. */
static buf_t *
slurp(const char *name)
{
	char p[512];
	buf_t *b;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	if (file_read(p, 65536, &b) != 0)
		return NULL;
	return b;
}

static void
write_clock(const char *path, long long off)
{
	FILE *f = fopen(path, "w");

	if (f != NULL) {
		fprintf(f, "%lld\n", off);
		fclose(f);
	}
}

static int
is_version(const char *s)
{
	size_t i;

	if (strlen(s) != VLT_VERSION_LEN)
		return 0;
	for (i = 0; i < VLT_VERSION_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		        (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

static int
create_ec(vault_t *v, const char *name, struct vlt_key_info *out)
{
	struct vlt_create_req rq;
	struct vlt_key_info tmp;
	int r;

	memset(&rq, 0, sizeof(rq));
	rq.kty = VLT_KTY_EC;
	rq.crv = VLT_CRV_P256;
	rq.enabled = 1;
	r = vault_key_create(v, name, &rq, out != NULL ? out : &tmp);
	if (out == NULL)
		vlt_key_info_clear(&tmp);
	return r;
}

static int
in_deleted_list(vault_t *v, const char *name)
{
	struct vlt_key_info *items = NULL;
	char *cont = NULL, *next = NULL;
	size_t n, i;
	int found = 0;

	do {
		if (vault_deleted_list(v, cont, 25, &items, &n, &next) != 0)
			break;
		for (i = 0; i < n; i++)
			if (strcmp(items[i].name, name) == 0)
				found = 1;
		vlt_key_info_free_array(items, n);
		free(cont);
		cont = next;
	} while (cont != NULL);
	free(cont);
	return found;
}

static size_t
count_deleted(vault_t *v)
{
	struct vlt_key_info *items = NULL;
	char *cont = NULL, *next = NULL;
	size_t n, total = 0;

	do {
		if (vault_deleted_list(v, cont, 25, &items, &n, &next) != 0)
			break;
		total += n;
		vlt_key_info_free_array(items, n);
		free(cont);
		cont = next;
	} while (cont != NULL);
	free(cont);
	return total;
}

struct thr_arg {
	vault_t *v;
	int failures;
};

static void *
worker(void *p)
{
	struct thr_arg *a = p;
	uint8_t pt[32], ct[512], back[512];
	size_t ctl, bl;
	int i;

	memset(pt, 0x5a, sizeof(pt));
	for (i = 0; i < 20; i++) {
		ctl = sizeof(ct);
		bl = sizeof(back);
		if (vault_key_encrypt(a->v, "rsa1", NULL, VLT_OP_ENCRYPT,
		        VLT_ALG_RSA_OAEP, pt, sizeof(pt), ct, &ctl,
		        NULL) != 0 ||
		    vault_key_decrypt(a->v, "rsa1", NULL, VLT_OP_DECRYPT,
		        VLT_ALG_RSA_OAEP, ct, ctl, back, &bl, NULL) != 0 ||
		    bl != sizeof(pt) || memcmp(back, pt, bl) != 0)
			a->failures++;
	}
	return NULL;
}

/* Audit group commit: threads appending at once, every 7th line synced. */
#define AUD_THREADS 8
#define AUD_LINES 250

static void *
audit_worker(void *p)
{
	struct thr_arg *a = p;
	char line[128];
	int i;

	for (i = 0; i < AUD_LINES; i++) {
		snprintf(line, sizeof(line), "{\"t\":\"gc\",\"w\":%p,\"i\":%d}",
		    p, i);
		if (vault_audit_append(a->v, line, i % 7 == 0) != 0)
			a->failures++;
	}
	return NULL;
}

/* Lines holding marker in DIR/audit/audit.log and its rotated files. */
static long
audit_count(const char *ddir, const char *marker)
{
	char path[4200], buf[65536];
	long n = 0;
	unsigned i;
	FILE *f;

	for (i = 0; i < 64; i++) {
		if (i == 0)
			snprintf(path, sizeof(path), "%s/audit/audit.log",
			    ddir);
		else
			snprintf(path, sizeof(path), "%s/audit/audit.log.%u",
			    ddir, i);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		while (fgets(buf, sizeof(buf), f) != NULL)
			if (strstr(buf, marker) != NULL)
				n++;
		fclose(f);
	}
	return n;
}

/* What the steps of main share: the vault, two versions of "rsa1", and
 * ciphertexts made early that must still decrypt later on. */
struct vt {
	struct vlt_init_params ip;
	vault_t *v;
	const char *env_before;
	struct vlt_key_info rsa_v1, rsa_v2;
	uint8_t pt[100], dig[64], ct[512], ct_oaep256[512];
	size_t ct256l;
};

/* init / exists: the files and their modes; a second init changes nothing */
static int
test_init(struct vt *c)
{
	int r;
	buf_t *conf_before, *pin_before, *conf_after, *pin_after;

	memset(&c->ip, 0, sizeof(c->ip));
	c->ip.data_dir = dir;
	c->ip.vault_url = "https://127.0.0.1:18443";
	c->ip.tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47";
	T_CHECK(vault_find(dir) == VLT_ERR_NOT_FOUND,
	    "vault_find: no vault before init");
	c->env_before = getenv("SOFTHSM2_CONF");
	r = vault_init(&c->ip);
	T_CHECK(r == 0, "vault_init creates a vault in a new directory");
	if (r != 0) {
		fprintf(stderr, "vault_init: %d\n", r);
		return -1;
	}
	T_CHECK(vault_find(dir) == 0, "vault_find: a vault after init");
	T_CHECK(file_mode("") == 0700, "data dir is 0700");
	T_CHECK(file_mode("p11vault.conf") == 0600, "p11vault.conf is 0600");
	T_CHECK(file_mode("hsm") == 0700, "hsm dir is 0700");
	T_CHECK(file_mode("hsm/user.pin") == -1 &&
	        file_mode("hsm/so.pin") == -1,
	    "no PIN file rests in hsm/");
	T_CHECK(file_mode("hsm/seal.conf") == 0600 &&
	        file_mode("hsm/unseal.cred") == 0600,
	    "hsm/seal.conf and the unattended credential are 0600");
	T_CHECK(file_mode("vault.db") == 0600, "vault.db is 0600");
	T_CHECK(file_mode("softhsm2.conf") == 0600 &&
	        file_mode("tokens") == 0700,
	    "softhsm2.conf 0600, tokens/ 0700");
	conf_before = slurp("p11vault.conf");
	pin_before = slurp("hsm/seal.conf");
	T_CHECK(pin_before != NULL &&
	        strstr(buf_str(pin_before), "check=") != NULL,
	    "seal.conf holds the check value of the unseal secret");
	r = vault_init(&c->ip);
	conf_after = slurp("p11vault.conf");
	pin_after = slurp("hsm/seal.conf");
	T_CHECK(r == VLT_ERR_EXISTS, "second init -> VLT_ERR_EXISTS");
	T_CHECK(conf_after != NULL && conf_before != NULL &&
	        strcmp(buf_str(conf_before), buf_str(conf_after)) == 0 &&
	        pin_after != NULL &&
	        strcmp(buf_str(pin_before), buf_str(pin_after)) == 0,
	    "second init changes neither config nor seal");
	buf_free(conf_before);
	buf_free(pin_before);
	buf_free(conf_after);
	buf_free(pin_after);
	return 0;
}

/* open: health, config, default settings, the JWT key */
static int
test_open(struct vt *c)
{
	struct vlt_settings st;
	vault_t *v;
	int r;

	r = vault_open(dir, NULL, &c->v);
	v = c->v;
	T_CHECK(r == 0 && v != NULL, "vault_open opens the new vault");
	if (r != 0) {
		fprintf(stderr, "vault_open: %d\n", r);
		return -1;
	}
	T_CHECK(vault_health(v) == 0, "vault_health answers 0");
	T_CHECK(getenv("SOFTHSM2_CONF") == c->env_before,
	    "init and open leave this process's environment alone (the token "
	    "processes get the vault's softhsm2.conf in theirs)");
	T_CHECK(vault_config(v, "vault_url") != NULL &&
	        strcmp(vault_config(v, "vault_url"),
	            "https://127.0.0.1:18443") == 0,
	    "config vault_url");
	T_CHECK(vault_config(v, "listen") != NULL &&
	        strcmp(vault_config(v, "listen"), "127.0.0.1:18443") == 0,
	    "config listen derived from vault_url");
	T_CHECK(vault_config(v, "resource") != NULL &&
	        strcmp(vault_config(v, "resource"),
	            "https://vault.azure.net") == 0,
	    "config resource");
	T_CHECK(vault_config(v, "tenant_id") != NULL &&
	        strcmp(vault_config(v, "tenant_id"), c->ip.tenant_id) == 0,
	    "config tenant_id");
	T_CHECK(vault_config(v, "token_lifetime") != NULL &&
	        strcmp(vault_config(v, "token_lifetime"), "3600") == 0,
	    "config token_lifetime");
	T_CHECK(vault_config(v, "module") != NULL &&
	        vault_config(v, "module")[0] == '/',
	    "config module is absolute");
	T_CHECK(vault_config(v, "no_such_key") == NULL,
	    "config unknown key is NULL");
	T_CHECK(vault_data_dir(v) != NULL && vault_data_dir(v)[0] == '/',
	    "data dir is absolute");

	T_CHECK(vault_settings_get(v, &st) == 0 && st.retention_days == 90 &&
	        st.purge_protection == 0,
	    "default settings: 90 days, no purge "
	    "protection");
	T_CHECK(strcmp(vault_recovery_level(&st), "Recoverable+Purgeable") == 0,
	    "recovery level Recoverable+Purgeable");

	{
		uint8_t jsig[64], *jpub = NULL;
		size_t jl = 0;

		T_CHECK(vault_jwt_sign(v, (const uint8_t *)"abc", 3, jsig) == 0,
		    "vault_jwt_sign signs");
		T_CHECK(vault_jwt_public(v, &jpub, &jl) == 0 && jl > 0,
		    "vault_jwt_public returns an SPKI");
		free(jpub);
	}
	return 0;
}

/* create */
static void
test_create(struct vt *c)
{
	vault_t *v = c->v;
	struct vlt_create_req rq;
	struct vlt_key_info k;
	char long_ok[VLT_NAME_MAX + 1];
	int64_t now;
	int r;

	memset(&k, 0, sizeof(k));
	memset(long_ok, 'L', VLT_NAME_MAX);
	long_ok[VLT_NAME_MAX] = '\0';
	memset(&rq, 0, sizeof(rq));
	rq.kty = VLT_KTY_RSA;
	rq.enabled = 1;
	now = vault_now(v);
	r = vault_key_create(v, "rsa1", &rq, &c->rsa_v1);
	T_CHECK(r == 0, "create RSA key (defaults)");
	T_CHECK(r == 0 && c->rsa_v1.key_size == 2048 &&
	        c->rsa_v1.kty == VLT_KTY_RSA,
	    "RSA default size is 2048");
	T_CHECK(r == 0 &&
	        c->rsa_v1.key_ops ==
	            (VLT_OP_ENCRYPT | VLT_OP_DECRYPT | VLT_OP_SIGN |
	                VLT_OP_VERIFY | VLT_OP_WRAP | VLT_OP_UNWRAP),
	    "RSA default key_ops");
	T_CHECK(r == 0 && is_version(c->rsa_v1.version),
	    "version is 32 lowercase hex");
	T_CHECK(r == 0 && c->rsa_v1.spki != NULL && c->rsa_v1.spki_len > 200,
	    "RSA key has an SPKI");
	T_CHECK(r == 0 && c->rsa_v1.attrs.created >= now &&
	        c->rsa_v1.attrs.created <= now + 5 &&
	        c->rsa_v1.attrs.updated == c->rsa_v1.attrs.created &&
	        c->rsa_v1.attrs.enabled,
	    "created/updated timestamps and enabled");

	rq.kty = VLT_KTY_EC;
	rq.crv = VLT_CRV_P256;
	r = vault_key_create(v, "ec1", &rq, &k);
	T_CHECK(r == 0 && k.crv == VLT_CRV_P256 && k.key_size == 0 &&
	        k.key_ops == (VLT_OP_SIGN | VLT_OP_VERIFY),
	    "create EC P-256 key, default key_ops sign verify");
	vlt_key_info_clear(&k);
	rq.crv = VLT_CRV_NONE;
	T_CHECK(vault_key_create(v, "ec-bad", &rq, &k) == VLT_ERR_BAD_PARAM,
	    "EC without curve -> BAD_PARAM");
	rq.crv = VLT_CRV_P384;
	rq.key_ops = VLT_OP_SIGN | VLT_OP_ENCRYPT;
	T_CHECK(vault_key_create(v, "ec-bad", &rq, &k) == VLT_ERR_BAD_PARAM,
	    "EC with encrypt -> BAD_PARAM");
	rq.key_ops = VLT_OP_WRAP;
	T_CHECK(vault_key_create(v, "ec-bad", &rq, &k) == VLT_ERR_BAD_PARAM,
	    "EC with wrapKey -> BAD_PARAM");
	rq.key_ops = 0;
	rq.kty = VLT_KTY_RSA;
	rq.crv = VLT_CRV_NONE;
	rq.key_size = 1024;
	T_CHECK(vault_key_create(v, "rsa-bad", &rq, &k) == VLT_ERR_BAD_PARAM,
	    "RSA 1024 -> BAD_PARAM");
	rq.key_size = 0;
	rq.kty = (enum vlt_kty)7;
	T_CHECK(vault_key_create(v, "bad-kty", &rq, &k) == VLT_ERR_BAD_PARAM,
	    "unknown kty -> BAD_PARAM");
	T_CHECK(create_ec(v, "bad_name", NULL) == VLT_ERR_BAD_PARAM &&
	        create_ec(v, "", NULL) == VLT_ERR_BAD_PARAM &&
	        create_ec(v, "a.b", NULL) == VLT_ERR_BAD_PARAM,
	    "invalid names -> BAD_PARAM");
	{
		char longname[200];

		memset(longname, 'a', 128);
		longname[128] = '\0';
		T_CHECK(create_ec(v, longname, NULL) == VLT_ERR_BAD_PARAM,
		    "128-character name -> BAD_PARAM");
	}
	T_CHECK(strlen(long_ok) == 127 && create_ec(v, long_ok, NULL) == 0,
	    "127-character name is accepted");
	T_CHECK(vault_key_get(v, "bad_name", NULL, &k) == VLT_ERR_BAD_PARAM,
	    "get with invalid name -> BAD_PARAM");
}

/* new version, get */
static void
test_get(struct vt *c)
{
	vault_t *v = c->v;
	struct vlt_create_req rq;
	struct vlt_key_info k;
	int r;

	memset(&k, 0, sizeof(k));
	memset(&rq, 0, sizeof(rq));
	rq.kty = VLT_KTY_RSA;
	rq.enabled = 1;
	rq.tags = "{\"purpose\":\"test\"}";
	r = vault_key_create(v, "rsa1", &rq, &c->rsa_v2);
	T_CHECK(r == 0 && strcmp(c->rsa_v2.version, c->rsa_v1.version) != 0,
	    "create on an existing name makes a new version");
	r = vault_key_get(v, "rsa1", NULL, &k);
	T_CHECK(r == 0 && strcmp(k.version, c->rsa_v2.version) == 0 &&
	        k.tags != NULL && strcmp(k.tags, rq.tags) == 0,
	    "get latest returns the new version with its tags");
	vlt_key_info_clear(&k);
	r = vault_key_get(v, "rsa1", "", &k);
	T_CHECK(r == 0 && strcmp(k.version, c->rsa_v2.version) == 0,
	    "get with empty version returns the latest");
	vlt_key_info_clear(&k);
	r = vault_key_get(v, "RSA1", NULL, &k);
	T_CHECK(r == 0 && strcmp(k.name, "rsa1") == 0,
	    "names are case-insensitive, stored name returned");
	vlt_key_info_clear(&k);
	r = vault_key_get(v, "rsa1", c->rsa_v1.version, &k);
	T_CHECK(r == 0 && strcmp(k.version, c->rsa_v1.version) == 0 &&
	        k.tags == NULL && k.spki_len == c->rsa_v1.spki_len &&
	        memcmp(k.spki, c->rsa_v1.spki, k.spki_len) == 0,
	    "get a specific older version");
	vlt_key_info_clear(&k);
	T_CHECK(vault_key_get(v, "rsa1", "ABCDEF", &k) == VLT_ERR_NOT_FOUND,
	    "malformed version -> NOT_FOUND");
	T_CHECK(vault_key_get(v, "rsa1", "0123456789abcdef0123456789abcdef",
	            &k) == VLT_ERR_NOT_FOUND,
	    "unknown version -> NOT_FOUND");
	T_CHECK(vault_key_get(v, "nope", NULL, &k) == VLT_ERR_NOT_FOUND,
	    "unknown key -> NOT_FOUND");
	r = vault_key_get(v, "ec1", c->rsa_v1.version, &k);
	T_CHECK(r == VLT_ERR_NOT_FOUND,
	    "another key's version under this name -> NOT_FOUND");
}

/* update */
static void
test_update(struct vt *c)
{
	vault_t *v = c->v;
	struct vlt_update_req up;
	struct vlt_key_info k;
	int r;

	memset(&k, 0, sizeof(k));
	memset(&up, 0, sizeof(up));
	up.has_enabled = 1;
	up.enabled = 0;
	up.tags = "{\"a\":\"b\"}";
	r = vault_key_update(v, "rsa1", c->rsa_v1.version, &up, &k);
	T_CHECK(r == 0 && k.attrs.enabled == 0 && k.tags != NULL &&
	        strcmp(k.tags, "{\"a\":\"b\"}") == 0 &&
	        strcmp(k.version, c->rsa_v1.version) == 0,
	    "update a version: enabled false and tags");
	vlt_key_info_clear(&k);
	r = vault_key_get(v, "rsa1", c->rsa_v1.version, &k);
	T_CHECK(r == 0 && k.attrs.enabled == 0 && k.tags != NULL,
	    "update is persisted");
	vlt_key_info_clear(&k);
	r = vault_key_get(v, "rsa1", NULL, &k);
	T_CHECK(r == 0 && k.attrs.enabled == 1,
	    "update of one version leaves the latest alone");
	vlt_key_info_clear(&k);
	memset(&up, 0, sizeof(up));
	up.has_key_ops = 1;
	up.key_ops = VLT_OP_ENCRYPT;
	T_CHECK(vault_key_update(v, "ec1", NULL, &up, &k) == VLT_ERR_BAD_PARAM,
	    "update EC key_ops with encrypt -> BAD_PARAM");
	T_CHECK(vault_key_update(v, "nope", NULL, &up, &k) == VLT_ERR_NOT_FOUND,
	    "update unknown key -> NOT_FOUND");
}

/* encrypt / decrypt */
static void
test_encrypt(struct vt *c)
{
	vault_t *v = c->v;
	uint8_t back[512];
	char kid[VLT_VERSION_LEN + 1];
	size_t ctl, bl;
	int r;

	ctl = sizeof(c->ct);
	r = vault_key_encrypt(v, "rsa1", NULL, VLT_OP_ENCRYPT, VLT_ALG_RSA_OAEP,
	    c->pt, 32, c->ct, &ctl, kid);
	T_CHECK(r == 0 && ctl == 256 && strcmp(kid, c->rsa_v2.version) == 0,
	    "RSA-OAEP encrypt with the latest version");
	bl = sizeof(back);
	r = vault_key_decrypt(v, "rsa1", NULL, VLT_OP_DECRYPT, VLT_ALG_RSA_OAEP,
	    c->ct, ctl, back, &bl, kid);
	T_CHECK(r == 0 && bl == 32 && memcmp(back, c->pt, 32) == 0 &&
	        strcmp(kid, c->rsa_v2.version) == 0,
	    "RSA-OAEP decrypt round trip");
	c->ct256l = sizeof(c->ct_oaep256);
	r = vault_key_encrypt(v, "rsa1", c->rsa_v2.version, VLT_OP_WRAP,
	    VLT_ALG_RSA_OAEP_256, c->pt, 32, c->ct_oaep256, &c->ct256l, kid);
	bl = sizeof(back);
	T_CHECK(r == 0 &&
	        vault_key_decrypt(v, "rsa1", c->rsa_v2.version, VLT_OP_UNWRAP,
	            VLT_ALG_RSA_OAEP_256, c->ct_oaep256, c->ct256l, back, &bl,
	            kid) == 0 &&
	        bl == 32 && memcmp(back, c->pt, 32) == 0,
	    "RSA-OAEP-256 wrap/unwrap round trip");
	{
		uint8_t c15[512];
		size_t c15l = sizeof(c15);

		r = vault_key_encrypt(v, "rsa1", NULL, VLT_OP_ENCRYPT,
		    VLT_ALG_RSA1_5, c->pt, sizeof(c->pt), c15, &c15l, kid);
		bl = sizeof(back);
		T_CHECK(r == 0 &&
		        vault_key_decrypt(v, "rsa1", NULL, VLT_OP_DECRYPT,
		            VLT_ALG_RSA1_5, c15, c15l, back, &bl, kid) == 0 &&
		        bl == sizeof(c->pt) && memcmp(back, c->pt, bl) == 0,
		    "RSA1_5 round trip");
		c15[10] ^= 0x01;
		bl = sizeof(back);
		r = vault_key_decrypt(v, "rsa1", NULL, VLT_OP_DECRYPT,
		    VLT_ALG_RSA_OAEP, c15, c15l, back, &bl, kid);
		T_CHECK(r == VLT_ERR_DECRYPT,
		    "corrupt ciphertext -> VLT_ERR_DECRYPT");
		bl = sizeof(back);
		r = vault_key_decrypt(v, "rsa1", NULL, VLT_OP_DECRYPT,
		    VLT_ALG_RSA_OAEP, c15, 100, back, &bl, kid);
		T_CHECK(r == VLT_ERR_BAD_PARAM,
		    "ciphertext of the wrong length -> BAD_PARAM");
	}
	ctl = sizeof(c->ct);
	T_CHECK(vault_key_encrypt(v, "rsa1", NULL, VLT_OP_ENCRYPT,
	            VLT_ALG_RS256, c->pt, 32, c->ct, &ctl,
	            kid) == VLT_ERR_BAD_PARAM,
	    "encrypt with a signature alg -> BAD_PARAM");
	ctl = sizeof(c->ct);
	T_CHECK(vault_key_encrypt(v, "ec1", NULL, VLT_OP_ENCRYPT,
	            VLT_ALG_RSA_OAEP, c->pt, 32, c->ct, &ctl,
	            kid) == VLT_ERR_OP_NOT_PERMITTED,
	    "encrypt with an EC key -> OP_NOT_PERMITTED (not in key_ops)");
	ctl = sizeof(c->ct);
	T_CHECK(vault_key_encrypt(v, "rsa1", c->rsa_v1.version, VLT_OP_ENCRYPT,
	            VLT_ALG_RSA_OAEP, c->pt, 32, c->ct, &ctl,
	            kid) == VLT_ERR_KEY_DISABLED,
	    "disabled version -> KEY_DISABLED");
	bl = sizeof(back);
	T_CHECK(vault_key_decrypt(v, "rsa1", c->rsa_v1.version, VLT_OP_DECRYPT,
	            VLT_ALG_RSA_OAEP, c->ct, 256, back, &bl,
	            kid) == VLT_ERR_KEY_DISABLED,
	    "decrypt with a disabled version -> KEY_DISABLED");
}

/* encrypt / decrypt: op not permitted */
static void
test_key_ops(struct vt *c)
{
	vault_t *v = c->v;
	struct vlt_update_req up;
	struct vlt_key_info k;
	uint8_t sig[600];
	char kid[VLT_VERSION_LEN + 1];
	size_t ctl, sl;
	int r;

	memset(&k, 0, sizeof(k));
	memset(&up, 0, sizeof(up));
	up.has_key_ops = 1;
	up.key_ops = VLT_OP_ENCRYPT | VLT_OP_DECRYPT;
	r = vault_key_update(v, "rsa1", NULL, &up, &k);
	T_CHECK(r == 0 && k.key_ops == (VLT_OP_ENCRYPT | VLT_OP_DECRYPT),
	    "update key_ops");
	vlt_key_info_clear(&k);
	ctl = sizeof(c->ct);
	T_CHECK(vault_key_encrypt(v, "rsa1", NULL, VLT_OP_WRAP,
	            VLT_ALG_RSA_OAEP, c->pt, 32, c->ct, &ctl,
	            kid) == VLT_ERR_OP_NOT_PERMITTED,
	    "wrapKey not in key_ops -> "
	    "OP_NOT_PERMITTED");
	sl = sizeof(sig);
	T_CHECK(vault_key_sign(v, "rsa1", NULL, VLT_ALG_RS256, c->dig, 32, sig,
	            &sl, kid) == VLT_ERR_OP_NOT_PERMITTED,
	    "sign not in key_ops -> OP_NOT_PERMITTED");
	up.key_ops = VLT_OP_ENCRYPT | VLT_OP_DECRYPT | VLT_OP_SIGN |
	    VLT_OP_VERIFY | VLT_OP_WRAP | VLT_OP_UNWRAP;
	r = vault_key_update(v, "rsa1", NULL, &up, &k);
	vlt_key_info_clear(&k);
	T_CHECK(r == 0, "restore key_ops");
}

/* sign / verify */
static void
test_sign(struct vt *c)
{
	vault_t *v = c->v;
	uint8_t sig[600];
	char kid[VLT_VERSION_LEN + 1];
	size_t sl;
	int r, valid;

	sl = sizeof(sig);
	r = vault_key_sign(v, "ec1", NULL, VLT_ALG_ES256, c->dig, 32, sig, &sl,
	    kid);
	T_CHECK(r == 0 && sl == 64, "ES256 sign, raw r||s");
	valid = 0;
	T_CHECK(vault_key_verify(v, "ec1", NULL, VLT_ALG_ES256, c->dig, 32, sig,
	            sl, &valid, kid) == 0 &&
	        valid == 1,
	    "ES256 verify: valid");
	c->dig[0] ^= 1;
	T_CHECK(vault_key_verify(v, "ec1", NULL, VLT_ALG_ES256, c->dig, 32, sig,
	            sl, &valid, kid) == 0 &&
	        valid == 0,
	    "ES256 verify of another digest: invalid");
	c->dig[0] ^= 1;
	sl = sizeof(sig);
	T_CHECK(vault_key_sign(v, "ec1", NULL, VLT_ALG_ES384, c->dig, 48, sig,
	            &sl, kid) == VLT_ERR_BAD_PARAM,
	    "ES384 on a P-256 key -> BAD_PARAM");
	sl = sizeof(sig);
	T_CHECK(vault_key_sign(v, "ec1", NULL, VLT_ALG_RS256, c->dig, 32, sig,
	            &sl, kid) == VLT_ERR_BAD_PARAM,
	    "RS256 on an EC key -> BAD_PARAM");
	sl = sizeof(sig);
	T_CHECK(vault_key_sign(v, "rsa1", NULL, VLT_ALG_ES256, c->dig, 32, sig,
	            &sl, kid) == VLT_ERR_BAD_PARAM,
	    "ES256 on an RSA key -> BAD_PARAM");
	sl = sizeof(sig);
	r = vault_key_sign(v, "rsa1", NULL, VLT_ALG_PS256, c->dig, 32, sig, &sl,
	    kid);
	T_CHECK(r == 0 && sl == 256 &&
	        vault_key_verify(v, "rsa1", NULL, VLT_ALG_PS256, c->dig, 32,
	            sig, sl, &valid, kid) == 0 &&
	        valid == 1,
	    "PS256 sign/verify");
	sl = sizeof(sig);
	T_CHECK(vault_key_sign(v, "rsa1", NULL, VLT_ALG_RS256, c->dig, 31, sig,
	            &sl, kid) == VLT_ERR_BAD_PARAM,
	    "wrong digest length -> BAD_PARAM");
}

/* validity window */
static void
test_validity(struct vt *c)
{
	vault_t *v = c->v;
	struct vlt_create_req rq;
	struct vlt_update_req up;
	struct vlt_key_info k;
	uint8_t sig[600];
	char kid[VLT_VERSION_LEN + 1];
	size_t sl;
	int valid;

	memset(&k, 0, sizeof(k));
	memset(&rq, 0, sizeof(rq));
	rq.kty = VLT_KTY_EC;
	rq.crv = VLT_CRV_P384;
	rq.enabled = 1;
	rq.exp = vault_now(v) - 10;
	T_CHECK(vault_key_create(v, "expired", &rq, &k) == 0,
	    "create a key with exp in the past");
	vlt_key_info_clear(&k);
	sl = sizeof(sig);
	T_CHECK(vault_key_sign(v, "expired", NULL, VLT_ALG_ES384, c->dig, 48,
	            sig, &sl, kid) == VLT_ERR_KEY_EXPIRED,
	    "exp in the past -> KEY_EXPIRED");
	rq.exp = 0;
	rq.nbf = vault_now(v) + 3600;
	rq.crv = VLT_CRV_P521;
	T_CHECK(vault_key_create(v, "future", &rq, &k) == 0,
	    "create a key with nbf in the future");
	vlt_key_info_clear(&k);
	sl = sizeof(sig);
	T_CHECK(vault_key_sign(v, "future", NULL, VLT_ALG_ES512, c->dig, 64,
	            sig, &sl, kid) == VLT_ERR_KEY_NOT_YET_VALID,
	    "nbf in the future -> KEY_NOT_YET_VALID");
	memset(&up, 0, sizeof(up));
	up.has_nbf = 1;
	up.nbf = 0;
	T_CHECK(vault_key_update(v, "future", NULL, &up, &k) == 0 &&
	        k.attrs.nbf == 0,
	    "update clears nbf");
	vlt_key_info_clear(&k);
	sl = sizeof(sig);
	T_CHECK(vault_key_sign(v, "future", NULL, VLT_ALG_ES512, c->dig, 64,
	            sig, &sl, kid) == 0 &&
	        sl == 132,
	    "ES512 sign after clearing nbf");
	memset(&up, 0, sizeof(up));
	up.has_enabled = 1;
	up.enabled = 0;
	T_CHECK(vault_key_update(v, "expired", NULL, &up, &k) == 0,
	    "disable the expired key");
	vlt_key_info_clear(&k);
	sl = sizeof(sig);
	T_CHECK(vault_key_sign(v, "expired", NULL, VLT_ALG_ES384, c->dig, 48,
	            sig, &sl, kid) == VLT_ERR_KEY_DISABLED,
	    "disabled and expired -> KEY_DISABLED first");
	memset(&rq, 0, sizeof(rq));
	rq.kty = VLT_KTY_EC;
	rq.crv = VLT_CRV_P256;
	rq.enabled = 1;
	rq.key_ops = VLT_OP_SIGN;
	T_CHECK(vault_key_create(v, "signonly", &rq, &k) == 0,
	    "create a sign-only key");
	vlt_key_info_clear(&k);
	T_CHECK(vault_key_verify(v, "signonly", NULL, VLT_ALG_ES256, c->dig, 32,
	            sig, 64, &valid, kid) == VLT_ERR_OP_NOT_PERMITTED,
	    "verify without VERIFY in key_ops -> OP_NOT_PERMITTED");
}

/* list paging */
static void
test_list(struct vt *c)
{
	vault_t *v = c->v;
	struct vlt_key_info *items = NULL;
	char *cont, *next, prev[VLT_NAME_MAX + 1];
	size_t n, i, total, pages;
	int r, ok;

	ok = 1;
	for (i = 0; i < 30; i++) {
		char nm[32];

		snprintf(nm, sizeof(nm), "page-%02zu", i);
		if (create_ec(v, nm, NULL) != 0)
			ok = 0;
	}
	T_CHECK(ok, "create 30 keys");
	/* live: rsa1 ec1 long_ok expired future signonly page-00..29 = 36 */
	T_CHECK(vault_key_list(v, NULL, 0, &items, &n, &next) ==
	        VLT_ERR_BAD_PARAM,
	    "list max 0 -> BAD_PARAM");
	T_CHECK(vault_key_list(v, NULL, 26, &items, &n, &next) ==
	        VLT_ERR_BAD_PARAM,
	    "list max 26 -> BAD_PARAM");
	T_CHECK(vault_key_list(v, "garbage!", 5, &items, &n, &next) ==
	        VLT_ERR_BAD_PARAM,
	    "list with a forged continuation -> BAD_PARAM");
	cont = NULL;
	total = 0;
	pages = 0;
	ok = 1;
	prev[0] = '\0';
	do {
		r = vault_key_list(v, cont, 7, &items, &n, &next);
		if (r != 0) {
			ok = 0;
			break;
		}
		pages++;
		if (n > 7 || (next != NULL && n != 7))
			ok = 0;
		for (i = 0; i < n; i++) {
			if (strcasecmp(items[i].name, prev) <= 0)
				ok = 0; /* ordered, no duplicates */
			snprintf(prev, sizeof(prev), "%s", items[i].name);
			if (strcmp(items[i].name, "page-20") == 0)
				ok = 0;
			if (strcmp(items[i].name, "rsa1") == 0 &&
			    strcmp(items[i].version, c->rsa_v2.version) != 0)
				ok = 0; /* latest version per name */
		}
		total += n;
		vlt_key_info_free_array(items, n);
		free(cont);
		cont = next;
		if (pages == 1) {
			/* Keys added and deleted mid-listing. */
			if (vault_key_delete(v, "page-20", NULL) != 0 ||
			    create_ec(v, "zzz-late", NULL) != 0)
				ok = 0;
		}
	} while (cont != NULL && pages < 20);
	free(cont);
	T_CHECK(ok,
	    "list pages: ordered, max 7, latest versions, no "
	    "duplicates, continuation valid across add/delete");
	T_CHECK(total == 36 && pages == 6,
	    "list across 6 pages sees every live key exactly once");
}

/* versions paging */
static void
test_versions(struct vt *c)
{
	vault_t *v = c->v;
	struct vlt_key_info k;
	struct vlt_key_info *items = NULL;
	char *cont, *next;
	char seen_versions[8][VLT_VERSION_LEN + 1];
	size_t n, i, total, pages;
	int r, ok;

	memset(&k, 0, sizeof(k));
	ok = 1;
	memset(seen_versions, 0, sizeof(seen_versions));
	for (i = 0; i < 5; i++) {
		if (create_ec(v, "multi", &k) != 0)
			ok = 0;
		snprintf(seen_versions[i], sizeof(seen_versions[i]), "%s",
		    k.version);
		vlt_key_info_clear(&k);
	}
	T_CHECK(ok, "create 5 versions of one key");
	T_CHECK(vault_key_versions(v, "multi", NULL, 30, &items, &n, &next) ==
	        VLT_ERR_BAD_PARAM,
	    "versions max 30 -> BAD_PARAM");
	cont = NULL;
	total = 0;
	pages = 0;
	ok = 1;
	do {
		r = vault_key_versions(v, "multi", cont, 2, &items, &n, &next);
		if (r != 0) {
			ok = 0;
			break;
		}
		pages++;
		for (i = 0; i < n; i++)
			if (total + i >= 5 ||
			    strcmp(items[i].version,
			        seen_versions[total + i]) != 0)
				ok = 0;
		total += n;
		vlt_key_info_free_array(items, n);
		free(cont);
		cont = next;
	} while (cont != NULL && pages < 10);
	free(cont);
	T_CHECK(ok && total == 5 && pages == 3,
	    "versions: 3 pages of 2, oldest first");
	T_CHECK(vault_key_versions(v, "nope", NULL, 5, &items, &n, &next) ==
	            0 &&
	        n == 0 && items == NULL && next == NULL,
	    "versions of an unknown key -> an empty list (as Azure)");
}

/* delete / recover */
static void
test_delete(struct vt *c)
{
	vault_t *v = c->v;
	struct vlt_create_req rq;
	struct vlt_key_info k;
	struct vlt_key_info *items = NULL;
	uint8_t back[512];
	char kid[VLT_VERSION_LEN + 1], *next;
	size_t bl, n;
	int64_t now;
	int r;

	memset(&k, 0, sizeof(k));
	now = vault_now(v);
	r = vault_key_delete(v, "rsa1", &k);
	T_CHECK(r == 0 && k.deleted_date >= now && k.deleted_date <= now + 5 &&
	        k.scheduled_purge_date == k.deleted_date + 90 * 86400 &&
	        strcmp(k.version, c->rsa_v2.version) == 0,
	    "delete: latest version with deletedDate and purge date +90d");
	vlt_key_info_clear(&k);
	T_CHECK(vault_key_get(v, "rsa1", NULL, &k) == VLT_ERR_NOT_FOUND,
	    "get of a deleted key -> NOT_FOUND");
	T_CHECK(vault_key_get(v, "rsa1", c->rsa_v1.version, &k) ==
	        VLT_ERR_NOT_FOUND,
	    "get of a deleted key's version -> NOT_FOUND");
	bl = sizeof(back);
	T_CHECK(vault_key_decrypt(v, "rsa1", NULL, VLT_OP_DECRYPT,
	            VLT_ALG_RSA_OAEP, c->ct, 256, back, &bl,
	            kid) == VLT_ERR_NOT_FOUND,
	    "decrypt with a deleted key -> NOT_FOUND");
	T_CHECK(vault_key_versions(v, "rsa1", NULL, 5, &items, &n, &next) ==
	            0 &&
	        n == 0 && items == NULL && next == NULL,
	    "versions of a deleted key -> an empty list (as Azure)");
	memset(&rq, 0, sizeof(rq));
	rq.kty = VLT_KTY_RSA;
	rq.enabled = 1;
	T_CHECK(vault_key_create(v, "rsa1", &rq, &k) ==
	        VLT_ERR_DELETED_RECOVERABLE,
	    "create on a deleted name -> DELETED_RECOVERABLE");
	T_CHECK(vault_key_delete(v, "rsa1", &k) == VLT_ERR_NOT_FOUND,
	    "delete of a deleted key -> NOT_FOUND");
	r = vault_deleted_get(v, "rsa1", &k);
	T_CHECK(r == 0 && k.deleted_date != 0 &&
	        strcmp(k.version, c->rsa_v2.version) == 0,
	    "deleted_get");
	vlt_key_info_clear(&k);
	T_CHECK(vault_deleted_get(v, "ec1", &k) == VLT_ERR_NOT_FOUND,
	    "deleted_get of a live key -> NOT_FOUND");
	T_CHECK(vault_deleted_get(v, "nope", &k) == VLT_ERR_NOT_FOUND,
	    "deleted_get of an unknown key -> NOT_FOUND");
	T_CHECK(in_deleted_list(v, "rsa1") && in_deleted_list(v, "page-20"),
	    "deleted list holds the deleted keys");
	T_CHECK(vault_deleted_list(v, NULL, 1, &items, &n, &next) == 0 &&
	        n == 1 && next != NULL,
	    "deleted list pages (max 1)");
	vlt_key_info_free_array(items, n);
	free(next);
	r = vault_key_recover(v, "rsa1", &k);
	T_CHECK(r == 0 && k.deleted_date == 0 &&
	        strcmp(k.version, c->rsa_v2.version) == 0,
	    "recover");
	vlt_key_info_clear(&k);
	bl = sizeof(back);
	r = vault_key_decrypt(v, "rsa1", NULL, VLT_OP_DECRYPT, VLT_ALG_RSA_OAEP,
	    c->ct, 256, back, &bl, kid);
	T_CHECK(r == 0 && bl == 32 && memcmp(back, c->pt, 32) == 0,
	    "recovered key decrypts its old ciphertext");
	r = vault_key_get(v, "rsa1", c->rsa_v1.version, &k);
	T_CHECK(r == 0 && k.attrs.enabled == 0,
	    "recover keeps every version's attributes");
	vlt_key_info_clear(&k);
	T_CHECK(vault_key_recover(v, "rsa1", &k) == VLT_ERR_NOT_FOUND,
	    "recover of a live key -> NOT_FOUND");
}

/* purge */
static void
test_purge(struct vt *c)
{
	vault_t *v = c->v;
	struct vlt_key_info k;
	struct vlt_key_info *items = NULL;
	char *next;
	size_t n;

	memset(&k, 0, sizeof(k));
	T_CHECK(vault_key_purge(v, "ec1") == VLT_ERR_NOT_FOUND,
	    "purge of a live key -> NOT_FOUND");
	T_CHECK(vault_key_delete(v, "ec1", NULL) == 0 &&
	        vault_key_purge(v, "ec1") == 0,
	    "delete then purge");
	T_CHECK(vault_deleted_get(v, "ec1", &k) == VLT_ERR_NOT_FOUND &&
	        vault_key_get(v, "ec1", NULL, &k) == VLT_ERR_NOT_FOUND &&
	        !in_deleted_list(v, "ec1"),
	    "purged key is gone");
	T_CHECK(create_ec(v, "ec1", &k) == 0, "purged name is reusable");
	vlt_key_info_clear(&k);
	T_CHECK(vault_key_versions(v, "ec1", NULL, 25, &items, &n, &next) ==
	            0 &&
	        n == 1,
	    "reused name starts with one version");
	vlt_key_info_free_array(items, n);
	free(next);
}

/* settings */
static void
test_retention(struct vt *c)
{
	vault_t *v = c->v;
	struct vlt_settings st;
	struct vlt_key_info k;
	int r;

	memset(&k, 0, sizeof(k));
	T_CHECK(vault_settings_update(v, 6, -1) == VLT_ERR_BAD_PARAM,
	    "retention 6 -> BAD_PARAM");
	T_CHECK(vault_settings_update(v, 91, -1) == VLT_ERR_BAD_PARAM,
	    "retention 91 -> BAD_PARAM");
	T_CHECK(vault_settings_update(v, 30, -1) == 0 &&
	        vault_settings_get(v, &st) == 0 && st.retention_days == 30,
	    "retention 30");
	T_CHECK(strcmp(vault_recovery_level(&st),
	            "CustomizedRecoverable+Purgeable") == 0,
	    "recovery level CustomizedRecoverable+Purgeable");
	(void)vault_now(v);
	r = vault_key_delete(v, "page-01", &k);
	T_CHECK(r == 0 && k.scheduled_purge_date == k.deleted_date + 30 * 86400,
	    "delete under retention 30: purge date +30d");
	vlt_key_info_clear(&k);
}

/* the version cache stays coherent with every write */
static void
test_version_cache(struct vt *c)
{
	vault_t *v = c->v;

	struct vlt_create_req cq;
	struct vlt_update_req uq;
	struct vlt_key_info kvc, kn;
	uint8_t vct[512];
	size_t vctl;
	char kv[VLT_VERSION_LEN + 1];
	uint64_t h0, m0, h1, m1;
	int e;

#define VC_ENC(nm, ver) \
	(vctl = sizeof(vct), \
	    vault_key_encrypt(v, nm, ver, VLT_OP_ENCRYPT, VLT_ALG_RSA_OAEP, \
	        (const uint8_t *)"dek", 3, vct, &vctl, kv))
	memset(&cq, 0, sizeof(cq));
	cq.kty = VLT_KTY_RSA;
	cq.enabled = 1;
	memset(&kvc, 0, sizeof(kvc));
	memset(&kn, 0, sizeof(kn));
	T_CHECK(vault_key_create(v, "vc-key", &cq, &kvc) == 0,
	    "version cache: create a key");
	T_CHECK(VC_ENC("vc-key", NULL) == 0 && strcmp(kv, kvc.version) == 0,
	    "version cache: first use");
	T_CHECK(vault_version_cache_stats(v, &h0, &m0) == 0,
	    "version cache: stats readable");
	e = VC_ENC("VC-KEY", NULL);
	T_CHECK(e == 0 && VC_ENC("vc-key", kvc.version) == 0 &&
	        VC_ENC("vc-key", kvc.version) == 0,
	    "version cache: repeated uses (any name case)");
	T_CHECK(vault_version_cache_stats(v, &h1, &m1) == 0 && h1 >= h0 + 1,
	    "version cache: repeated uses are hits");
	memset(&uq, 0, sizeof(uq));
	uq.has_enabled = 1;
	uq.enabled = 0;
	T_CHECK(vault_key_update(v, "vc-key", kvc.version, &uq, &kn) == 0,
	    "version cache: disable");
	vlt_key_info_clear(&kn);
	T_CHECK(VC_ENC("vc-key", NULL) == VLT_ERR_KEY_DISABLED &&
	        VC_ENC("vc-key", kvc.version) == VLT_ERR_KEY_DISABLED,
	    "version cache: a disabled key is refused at once");
	uq.enabled = 1;
	T_CHECK(vault_key_update(v, "vc-key", kvc.version, &uq, &kn) == 0 &&
	        VC_ENC("vc-key", NULL) == 0,
	    "version cache: enabled again, usable at once");
	vlt_key_info_clear(&kn);
	T_CHECK(vault_key_rotate(v, "vc-key", &kn) == 0 &&
	        VC_ENC("vc-key", NULL) == 0 && strcmp(kv, kn.version) == 0,
	    "version cache: after a rotation the latest is the new "
	    "version");
	T_CHECK(VC_ENC("vc-key", kvc.version) == 0 &&
	        strcmp(kv, kvc.version) == 0,
	    "version cache: the old version still answers by id");
	vlt_key_info_clear(&kn);
	T_CHECK(vault_key_delete(v, "vc-key", &kn) == 0 &&
	        VC_ENC("vc-key", NULL) == VLT_ERR_NOT_FOUND &&
	        VC_ENC("vc-key", kvc.version) == VLT_ERR_NOT_FOUND,
	    "version cache: a deleted key is gone at once");
	vlt_key_info_clear(&kn);
	T_CHECK(vault_key_recover(v, "vc-key", &kn) == 0 &&
	        VC_ENC("vc-key", kvc.version) == 0,
	    "version cache: a recovered key answers at once");
	vlt_key_info_clear(&kn);
	T_CHECK(vault_key_delete(v, "vc-key", &kn) == 0 &&
	        vault_key_purge(v, "vc-key") == 0 &&
	        VC_ENC("vc-key", kvc.version) == VLT_ERR_NOT_FOUND,
	    "version cache: a purged key is gone");
	vlt_key_info_clear(&kn);
	T_CHECK(vault_key_create(v, "vc-key", &cq, &kn) == 0 &&
	        VC_ENC("vc-key", NULL) == 0 && strcmp(kv, kn.version) == 0 &&
	        VC_ENC("vc-key", kvc.version) == VLT_ERR_NOT_FOUND,
	    "version cache: a key made again under the name is the "
	    "new one");
	vlt_key_info_clear(&kn);
	vlt_key_info_clear(&kvc);
#undef VC_ENC
}

/* settings: purge protection */
static void
test_purge_protection(struct vt *c)
{
	vault_t *v = c->v;
	struct vlt_settings st;
	struct vlt_key_info k;

	memset(&k, 0, sizeof(k));
	T_CHECK(vault_settings_update(v, -1, 1) == 0 &&
	        vault_settings_get(v, &st) == 0 && st.purge_protection == 1 &&
	        st.retention_days == 30,
	    "turn purge protection on");
	T_CHECK(strcmp(vault_recovery_level(&st), "CustomizedRecoverable") == 0,
	    "recovery level CustomizedRecoverable");
	T_CHECK(vault_settings_update(v, -1, 0) == VLT_ERR_BAD_PARAM,
	    "turning purge protection off -> BAD_PARAM");
	T_CHECK(vault_settings_update(v, 90, 0) == VLT_ERR_BAD_PARAM &&
	        vault_settings_get(v, &st) == 0 && st.retention_days == 30,
	    "a rejected update changes nothing");
	T_CHECK(vault_settings_update(v, 90, -1) == 0 &&
	        vault_settings_get(v, &st) == 0 &&
	        strcmp(vault_recovery_level(&st), "Recoverable") == 0,
	    "recovery level Recoverable");
	T_CHECK(vault_key_delete(v, "multi", NULL) == 0 &&
	        vault_key_purge(v, "multi") == VLT_ERR_PURGE_PROTECTED,
	    "purge under purge protection -> PURGE_PROTECTED");
	T_CHECK(vault_key_recover(v, "multi", &k) == 0,
	    "purge-protected key is still recoverable");
	vlt_key_info_clear(&k);
}

/* purge_due with the test clock */
static void
test_purge_due(struct vt *c)
{
	vault_t *v = c->v;
	struct vlt_key_info k;
	char clock_path[512];
	size_t total;
	int64_t now;

	memset(&k, 0, sizeof(k));
	snprintf(clock_path, sizeof(clock_path), "%s/clock", dir);
	write_clock(clock_path, 0);
	vault_set_test_clock(v, clock_path);
	T_CHECK(vault_purge_due(v) == 0,
	    "purge_due before any purge date purges nothing");
	total = count_deleted(v); /* page-20, page-01 */
	T_CHECK(total == 2, "two keys are soft-deleted");
	write_clock(clock_path, 31LL * 86400);
	now = (int64_t)time(NULL);
	T_CHECK(vault_now(v) >= now + 31LL * 86400 &&
	        vault_now(v) <= now + 31LL * 86400 + 5,
	    "test clock offset is applied");
	T_CHECK(vault_purge_due(v) == 1 && !in_deleted_list(v, "page-01") &&
	        in_deleted_list(v, "page-20"),
	    "purge_due at +31d purges only the 30-day key (under purge "
	    "protection)");
	write_clock(clock_path, 91LL * 86400);
	T_CHECK(vault_purge_due(v) == 1 &&
	        vault_deleted_get(v, "page-20", &k) == VLT_ERR_NOT_FOUND,
	    "purge_due at +91d purges the 90-day key");
	T_CHECK(count_deleted(v) == 0, "nothing left soft-deleted");
	vault_set_test_clock(v, NULL);
	now = (int64_t)time(NULL);
	T_CHECK(vault_now(v) <= now + 1, "test clock unset");
}

/* principals and access policies */
static void
test_principals(struct vt *c)
{
	vault_t *v = c->v;
	struct vlt_principal pr, *prs = NULL;
	struct vlt_access_policy ap, *aps = NULL;
	size_t n;
	int r;

	memset(&pr, 0, sizeof(pr));
	snprintf(pr.object_id, sizeof(pr.object_id),
	    "11111111-1111-4111-8111-111111111111");
	snprintf(pr.client_id, sizeof(pr.client_id),
	    "22222222-2222-4222-8222-222222222222");
	snprintf(pr.display_name, sizeof(pr.display_name), "admin");
	pr.secret_hash = (char *)"$hash$one";
	pr.is_admin = 1;
	pr.created = 1000;
	T_CHECK(vault_principal_put(v, &pr) == 0, "principal put (admin)");
	snprintf(pr.object_id, sizeof(pr.object_id),
	    "33333333-3333-4333-8333-333333333333");
	T_CHECK(vault_principal_put(v, &pr) == VLT_ERR_CONFLICT,
	    "principal with a client_id in use -> CONFLICT");
	snprintf(pr.client_id, sizeof(pr.client_id),
	    "44444444-4444-4444-8444-444444444444");
	snprintf(pr.display_name, sizeof(pr.display_name), "app");
	pr.secret_hash = (char *)"$hash$two";
	pr.is_admin = 0;
	pr.created = 2000;
	T_CHECK(vault_principal_put(v, &pr) == 0, "principal put (app)");
	snprintf(pr.display_name, sizeof(pr.display_name), "app renamed");
	T_CHECK(vault_principal_put(v, &pr) == 0, "principal put replaces");
	r = vault_principal_list(v, &prs, &n);
	T_CHECK(r == 0 && n == 2 && prs[0].is_admin == 1 &&
	        strcmp(prs[1].display_name, "app renamed") == 0 &&
	        prs[1].secret_hash != NULL &&
	        strcmp(prs[1].secret_hash, "$hash$two") == 0 &&
	        prs[1].created == 2000,
	    "principal list");
	vlt_principal_free_array(prs, n);
	memset(&ap, 0, sizeof(ap));
	snprintf(ap.object_id, sizeof(ap.object_id),
	    "11111111-1111-4111-8111-111111111111");
	snprintf(ap.tenant_id, sizeof(ap.tenant_id), "%s", c->ip.tenant_id);
	ap.perms = 0xffff;
	T_CHECK(vault_access_put(v, &ap) == 0, "access policy put (admin)");
	snprintf(ap.object_id, sizeof(ap.object_id),
	    "33333333-3333-4333-8333-333333333333");
	ap.perms = 0x3;
	T_CHECK(vault_access_put(v, &ap) == 0, "access policy put (app)");
	ap.perms = 0x7;
	T_CHECK(vault_access_put(v, &ap) == 0, "access policy put replaces");
	r = vault_access_list(v, &aps, &n);
	T_CHECK(r == 0 && n == 2 && aps[0].perms == 0xffff &&
	        aps[1].perms == 0x7,
	    "access policy list");
	free(aps);
	T_CHECK(vault_principal_delete(v,
	            "33333333-3333-4333-8333-333333333333") == 0,
	    "principal delete");
	r = vault_access_list(v, &aps, &n);
	T_CHECK(r == 0 && n == 1 && aps[0].perms == 0xffff,
	    "principal delete removes its access policy too");
	free(aps);
	T_CHECK(vault_principal_delete(v, "nope") == VLT_ERR_NOT_FOUND,
	    "delete an unknown principal -> NOT_FOUND");
	T_CHECK(vault_access_delete(v, "nope") == VLT_ERR_NOT_FOUND,
	    "delete an unknown access policy -> NOT_FOUND");
}

/* threads */
static void
test_threads(struct vt *c)
{
	vault_t *v = c->v;
	size_t i;
	int ok;

	pthread_t th[4];
	struct thr_arg ta[4];

	for (i = 0; i < 4; i++) {
		ta[i].v = v;
		ta[i].failures = 0;
		pthread_create(&th[i], NULL, worker, &ta[i]);
	}
	ok = 1;
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		if (ta[i].failures != 0)
			ok = 0;
	}
	T_CHECK(ok, "4 threads x 20 encrypt/decrypt round trips");
}

/* audit: concurrent appends, group commit */
static void
test_audit(struct vt *c)
{
	vault_t *v = c->v;
	size_t i;
	int ok;

	pthread_t th[AUD_THREADS];
	struct thr_arg ta[AUD_THREADS];
	struct vlt_audit_verdict vd;
	char where[128];

	for (i = 0; i < AUD_THREADS; i++) {
		ta[i].v = v;
		ta[i].failures = 0;
		pthread_create(&th[i], NULL, audit_worker, &ta[i]);
	}
	ok = 1;
	for (i = 0; i < AUD_THREADS; i++) {
		pthread_join(th[i], NULL);
		if (ta[i].failures != 0)
			ok = 0;
	}
	T_CHECK(ok,
	    "8 threads x 250 audit appends at once (every "
	    "7th synced) all succeed");
	vault_close(v);
	c->v = NULL;
	T_CHECK(audit_count(dir, "\"t\":\"gc\"") == AUD_THREADS * AUD_LINES,
	    "every one of them is in the log "
	    "once the vault is closed");
	T_CHECK(vault_audit_verify(dir, &vd, where, sizeof(where)) == 0 &&
	        vd.intact && vd.nrepairs == 0 && vd.tail_len == 0,
	    "the chain over them verifies");
}

/* close and reopen */
static void
test_reopen(struct vt *c)
{
	vault_t *v;
	struct vlt_key_info k;
	struct vlt_settings st;
	struct vlt_principal *prs = NULL;
	struct vlt_access_policy *aps = NULL;
	uint8_t back[512];
	char kid[VLT_VERSION_LEN + 1];
	size_t bl, n;
	int r;

	memset(&k, 0, sizeof(k));
	r = vault_open(dir, &(struct vlt_open_opts){ .pool_size = 2 }, &c->v);
	v = c->v;
	T_CHECK(r == 0, "reopen");
	if (r != 0)
		return;
	r = vault_key_get(v, "rsa1", NULL, &k);
	T_CHECK(r == 0 && strcmp(k.version, c->rsa_v2.version) == 0,
	    "keys persist across reopen");
	vlt_key_info_clear(&k);
	bl = sizeof(back);
	r = vault_key_decrypt(v, "rsa1", NULL, VLT_OP_DECRYPT, VLT_ALG_RSA_OAEP,
	    c->ct, 256, back, &bl, kid);
	T_CHECK(r == 0 && bl == 32 && memcmp(back, c->pt, 32) == 0,
	    "old RSA-OAEP ciphertext decrypts after reopen");
	bl = sizeof(back);
	r = vault_key_decrypt(v, "rsa1", c->rsa_v2.version, VLT_OP_UNWRAP,
	    VLT_ALG_RSA_OAEP_256, c->ct_oaep256, c->ct256l, back, &bl, kid);
	T_CHECK(r == 0 && bl == 32 && memcmp(back, c->pt, 32) == 0,
	    "old RSA-OAEP-256 ciphertext unwraps after reopen");
	T_CHECK(vault_settings_get(v, &st) == 0 && st.retention_days == 90 &&
	        st.purge_protection == 1,
	    "settings persist");
	r = vault_principal_list(v, &prs, &n);
	T_CHECK(r == 0 && n == 1 &&
	        strcmp(prs[0].client_id,
	            "22222222-2222-4222-8222-222222222222") == 0,
	    "principals persist");
	vlt_principal_free_array(prs, n);
	r = vault_access_list(v, &aps, &n);
	T_CHECK(r == 0 && n == 1, "access policies persist");
	free(aps);
	T_CHECK(vault_health(v) == 0, "health after reopen");
	T_CHECK(file_mode("vault.db-wal") == -1 ||
	        file_mode("vault.db-wal") == 0600,
	    "WAL file is 0600");
	vault_close(v);
	{
		vault_t *v2 = NULL;

		T_CHECK(vault_open("/nonexistent-p11vault", NULL, &v2) ==
		            VLT_ERR_NOT_FOUND &&
		        v2 == NULL,
		    "open of a missing directory -> NOT_FOUND");
	}
}

/* p11vault.conf's table (vault/config.c): text read as a conf gives
 * want (a substring of the error; NULL: read fine). */
static void
conf_case(const char *text, const char *want, const char *name)
{
	char path[PATH_MAX], err[512];
	struct vlt_conf *c = NULL;
	FILE *f;
	int r;

	snprintf(path, sizeof(path), "%s/conf-case", top);
	f = fopen(path, "w");
	if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
		T_CHECK(0, name);
		return;
	}
	r = conf_read_err(path, &c, err, sizeof(err));
	if (want == NULL)
		T_CHECK(r == 0 && c != NULL && err[0] == '\0', name);
	else
		T_CHECK(r == VLT_ERR_IO && c == NULL &&
		        strstr(err, path) != NULL && strstr(err, want) != NULL,
		    name);
	if (want != NULL && strstr(err, want) == NULL)
		fprintf(stderr, "  got: %s\n", err);
	conf_free(c);
	unlink(path);
}

static void
test_conf(void)
{
	conf_case(
	    "# c\n\nvault_url=https://x\r\ntoken_lifetime=60\n"
	    "audit_max_bytes=0\nsofthsm_conf=softhsm2.conf\n",
	    NULL, "conf: known keys, comments, blank lines, CRLF");
	conf_case("vault_url=https://x\ntoken_lifetme=60\n",
	    ":2: unknown key 'token_lifetme'",
	    "conf: an unknown key names line 2");
	conf_case("token_lifetime=abc\n",
	    ":1: token_lifetime='abc' is not a number from 1 to 2147483647",
	    "conf: a bad number");
	conf_case("token_lifetime=0\n", "is not a number",
	    "conf: a number below its range");
	conf_case("audit_max_bytes=-5\n", "audit_max_bytes='-5'",
	    "conf: a negative size");
	conf_case("tenant_id=\n", ":1: tenant_id is empty",
	    "conf: an empty string");
	conf_case("listen=a\nlisten=b\n", ":2: listen is set twice",
	    "conf: a key twice");
	conf_case("\n\nnonsense\n", ":3: not a key=value line",
	    "conf: a line without =");
	conf_case("token_lifetime = 60\n", ":1: 'token_lifetime ' is not a key",
	    "conf: blanks around =");
	conf_case("Vault_url=x\n", "is not a key", "conf: upper case");
}

/* The one name rule (vault_name_check): ASCII letters, digits and '-' by
 * value, 1..VLT_NAME_MAX of them; no byte above 0x7f whatever the locale,
 * and vault_retention_check's 7..90 days. */
static void
test_rules(void)
{
	char name[VLT_NAME_MAX + 2];
	int c, high_ok = 0;

	memset(name, 'a', sizeof(name));
	name[VLT_NAME_MAX] = '\0';
	T_CHECK(vault_name_check(name) == 0 && vault_name_check("Key-1") == 0,
	    "vault_name_check: letters, digits and '-' up to VLT_NAME_MAX");
	name[VLT_NAME_MAX] = 'a';
	name[VLT_NAME_MAX + 1] = '\0';
	T_CHECK(vault_name_check(name) == VLT_ERR_BAD_PARAM &&
	        vault_name_check("") == VLT_ERR_BAD_PARAM &&
	        vault_name_check(NULL) == VLT_ERR_BAD_PARAM &&
	        vault_name_check("a_b") == VLT_ERR_BAD_PARAM &&
	        vault_name_check("a.b") == VLT_ERR_BAD_PARAM,
	    "vault_name_check: too long, empty, '_' and '.' refused");
	for (c = 0x80; c <= 0xff; c++) {
		char one[3] = { 'a', (char)c, '\0' };

		high_ok |= vault_name_check(one) == 0;
	}
	T_CHECK(!high_ok, "vault_name_check: no byte above 0x7f is a letter");
	T_CHECK(vault_retention_check(7) == 0 &&
	        vault_retention_check(90) == 0 &&
	        vault_retention_check(6) == VLT_ERR_BAD_PARAM &&
	        vault_retention_check(91) == VLT_ERR_BAD_PARAM,
	    "vault_retention_check: 7..90 days");
}

int
main(void)
{
	struct vt c;

	memset(&c, 0, sizeof(c));
	RAND_bytes(c.pt, sizeof(c.pt));
	RAND_bytes(c.dig, sizeof(c.dig));

	{
		char tmpl[] = "/tmp/p11vault-test-XXXXXX";

		if (mkdtemp(tmpl) == NULL) {
			perror("mkdtemp");
			return 1;
		}
		snprintf(top, sizeof(top), "%s", tmpl);
		snprintf(dir, sizeof(dir), "%s/data", tmpl);
	}
	test_rules();
	test_conf();
	if (test_init(&c) != 0 || test_open(&c) != 0)
		return T_DONE();
	test_create(&c);
	test_get(&c);
	test_update(&c);
	test_encrypt(&c);
	test_key_ops(&c);
	test_sign(&c);
	test_validity(&c);
	test_list(&c);
	test_versions(&c);
	test_delete(&c);
	test_purge(&c);
	test_retention(&c);
	test_version_cache(&c);
	test_purge_protection(&c);
	test_purge_due(&c);
	test_principals(&c);
	test_threads(&c);
	test_audit(&c);
	test_reopen(&c);
	vlt_key_info_clear(&c.rsa_v1);
	vlt_key_info_clear(&c.rsa_v2);
	if (getenv("KEEP_TEST_DIR") == NULL)
		(void)nftw(top, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return T_DONE();
}