/*
 * Unit tests for vault/children.c: an appliance's other vaults, against a
 * real SoftHSMv2 token in a fresh data directory (no mocks). Proves the
 * name rule, create (its own store, a name taken, the default vault's
 * name), that the same key name in two vaults is two keys and that a blob
 * cannot move between them, principals shared and access policies not,
 * soft delete (acquire refused, name reserved), recover, purge (refused
 * under purge protection until the date, then the store's files gone),
 * the sweeper, a reference held across a purge, and reopen.
 */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
child_store_exists(const char *id)
{
	char p[512];
	struct stat st;

	snprintf(p, sizeof(p), "%s/vaults/%s/vault.db", dir, id);
	return stat(p, &st) == 0;
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
make_key(vault_t *v, const char *name, struct vlt_key_info *out)
{
	struct vlt_create_req req;

	memset(&req, 0, sizeof(req));
	req.kty = VLT_KTY_RSA;
	req.key_size = 2048;
	req.enabled = 1;
	return vault_key_create(v, name, &req, out);
}

static void
test_names(void)
{
	T_CHECK(vault_child_name_check("abc") == 0 &&
	        vault_child_name_check("cmk-disks-01") == 0 &&
	        vault_child_name_check("A23456789012345678901234") == 0,
	    "vault names: 3..24 letters, digits, hyphens");
	T_CHECK(vault_child_name_check("ab") != 0 &&
	        vault_child_name_check("A234567890123456789012345") != 0 &&
	        vault_child_name_check("1abc") != 0 &&
	        vault_child_name_check("abc-") != 0 &&
	        vault_child_name_check("ab--c") != 0 &&
	        vault_child_name_check("ab_c") != 0 &&
	        vault_child_name_check("ab.c") != 0 &&
	        vault_child_name_check(NULL) != 0,
	    "vault names: too short, too long, a digit first, a hyphen "
	    "last, two hyphens, other characters: refused");
}

/* two vaults: their own keys, blobs bound to each, shared principals */
static void
test_two(vault_t *root, struct vlt_vault *va)
{
	struct vlt_settings set = { 30, 0 };
	struct vlt_vault vb, got;
	struct vlt_key_info ka, kb, kr;
	struct vlt_principal pr;
	struct vlt_access_policy ap, *aps = NULL;
	vault_t *a = NULL, *b = NULL, *none = NULL;
	uint8_t ct[512], pt[64];
	size_t ct_len = sizeof(ct), pt_len = sizeof(pt);
	char ver[VLT_VERSION_LEN + 1];
	size_t n = 9;

	memset(&ka, 0, sizeof(ka));
	memset(&kb, 0, sizeof(kb));
	memset(&kr, 0, sizeof(kr));
	T_CHECK(vault_child_create(root, "Alpha", &set, "{\"location\":\"x\"}",
	            va) == 0 &&
	        strcmp(va->name, "alpha") == 0 &&
	        strlen(va->id) == VLT_ID_LEN && child_store_exists(va->id),
	    "create: a vault with its own store, the name lower-cased");
	T_CHECK(vault_child_create(root, "ALPHA", NULL, NULL, NULL) ==
	        VLT_ERR_CONFLICT,
	    "create: a name in use (any case) -> CONFLICT");
	T_CHECK(vault_child_create(root, "default", NULL, NULL, NULL) ==
	        VLT_ERR_CONFLICT,
	    "create: the default vault's name -> CONFLICT");
	T_CHECK(vault_child_create(root, "bravo", NULL, NULL, &vb) == 0,
	    "create: a second vault");
	T_CHECK(vault_child_get(root, "alpha", 0, &got) == 0 &&
	        got.settings.retention_days == 30 && got.meta != NULL &&
	        strstr(got.meta, "location") != NULL,
	    "get: settings and meta as created");
	vlt_vault_clear(&got);
	T_CHECK(vault_child_acquire(root, "alpha", &a) == 0 &&
	        vault_child_acquire(root, "BRAVO", &b) == 0 &&
	        vault_child_acquire(root, "charlie", &none) ==
	            VLT_ERR_NOT_FOUND &&
	        none == NULL,
	    "acquire: live vaults by name, none for an unknown name");
	T_CHECK(strcmp(vault_child_name(a), "alpha") == 0 &&
	        vault_child_name(root) == NULL,
	    "vault_child_name: a child's, none for the root");
	T_CHECK(make_key(a, "cmk", &ka) == 0 && make_key(b, "cmk", &kb) == 0 &&
	        strcmp(ka.version, kb.version) != 0 &&
	        vault_key_get(root, "cmk", NULL, &kr) == VLT_ERR_NOT_FOUND,
	    "the same key name in two vaults is two keys, and none in the "
	    "default vault");
	memset(pt, 7, 32);
	T_CHECK(vault_key_encrypt(a, "cmk", NULL, VLT_OP_WRAP, VLT_ALG_RSA_OAEP,
	            pt, 32, ct, &ct_len, ver) == 0 &&
	        vault_key_decrypt(a, "cmk", NULL, VLT_OP_UNWRAP,
	            VLT_ALG_RSA_OAEP, ct, ct_len, pt, &pt_len, ver) == 0 &&
	        pt_len == 32,
	    "a child's key wraps and unwraps");
	pt_len = sizeof(pt);
	T_CHECK(vault_key_decrypt(b, "cmk", NULL, VLT_OP_UNWRAP,
	            VLT_ALG_RSA_OAEP, ct, ct_len, pt, &pt_len, ver) != 0,
	    "the other vault's key of the same name does not unwrap it");
	memset(&pr, 0, sizeof(pr));
	snprintf(pr.object_id, sizeof(pr.object_id),
	    "55555555-5555-4555-8555-555555555555");
	snprintf(pr.client_id, sizeof(pr.client_id),
	    "66666666-6666-4666-8666-666666666666");
	snprintf(pr.display_name, sizeof(pr.display_name), "app");
	memset(&ap, 0, sizeof(ap));
	memcpy(ap.object_id, pr.object_id, sizeof(ap.object_id));
	snprintf(ap.tenant_id, sizeof(ap.tenant_id),
	    "72f988bf-86f1-41af-91ab-2d7cd011db47");
	ap.perms = 3;
	T_CHECK(vault_principal_put(a, &pr) == 0 &&
	        vault_access_put(a, &ap) == 0,
	    "a principal put through a child, and an access policy in it");
	T_CHECK(vault_access_list(b, &aps, &n) == 0 && n == 0,
	    "the access policy is that vault's only");
	free(aps);
	T_CHECK(vault_principal_delete(root, pr.object_id) == 0 &&
	        vault_access_list(a, &aps, &n) == 0 && n == 0,
	    "principals are the appliance's: deleted at the root, its "
	    "policies in the vaults go too");
	free(aps);
	vlt_key_info_clear(&ka);
	vlt_key_info_clear(&kb);
	vault_child_release(a);
	vault_child_release(b);
	vlt_vault_clear(&vb);
}

static void
test_delete(vault_t *root, const struct vlt_vault *va)
{
	struct vlt_vault *items = NULL, got;
	struct vlt_key_info k;
	vault_t *a = NULL, *held = NULL;
	size_t n = 0;

	memset(&k, 0, sizeof(k));
	T_CHECK(vault_child_acquire(root, "alpha", &held) == 0,
	    "a reference held across the delete");
	T_CHECK(vault_child_delete(root, "alpha") == 0 &&
	        vault_child_acquire(root, "alpha", &a) == VLT_ERR_NOT_FOUND,
	    "delete: a deleted vault is not handed out");
	T_CHECK(vault_child_create(root, "alpha", NULL, NULL, NULL) ==
	        VLT_ERR_DELETED_RECOVERABLE,
	    "delete: its name stays reserved");
	T_CHECK(vault_child_get(root, "alpha", 1, &got) == 0 &&
	        got.deleted_date != 0 &&
	        got.scheduled_purge_date == got.deleted_date + 30LL * 86400,
	    "deleted get: dates from its retention (30 days)");
	vlt_vault_clear(&got);
	T_CHECK(vault_child_list(root, 1, &items, &n) == 0 && n == 1 &&
	        strcmp(items[0].name, "alpha") == 0,
	    "deleted list: the deleted vault");
	vlt_vault_free_array(items, n);
	T_CHECK(vault_child_list(root, 0, &items, &n) == 0 && n == 1 &&
	        strcmp(items[0].name, "bravo") == 0,
	    "live list: the other vault");
	vlt_vault_free_array(items, n);
	T_CHECK(vault_child_recover(root, "alpha") == 0 &&
	        vault_child_acquire(root, "alpha", &a) == 0 &&
	        vault_key_get(a, "cmk", NULL, &k) == 0,
	    "recover: the vault and its keys are back");
	vlt_key_info_clear(&k);
	vault_child_release(a);
	T_CHECK(vault_settings_update(held, -1, 1) == 0,
	    "purge protection turned on through a held reference");
	T_CHECK(vault_child_delete(root, "alpha") == 0 &&
	        vault_child_purge(root, "alpha") == VLT_ERR_PURGE_PROTECTED &&
	        child_store_exists(va->id),
	    "purge: refused under purge protection, the store kept");
	vault_child_release(held);
}

static void
test_sweep(vault_t *root, const struct vlt_vault *va)
{
	struct vlt_vault got, vb;
	char clock_path[512];
	vault_t *b = NULL;

	snprintf(clock_path, sizeof(clock_path), "%s/clock", top);
	write_clock(clock_path, 29LL * 86400);
	vault_set_test_clock(root, clock_path);
	T_CHECK(vault_purge_due(root) >= 0 && child_store_exists(va->id),
	    "sweeper at +29 days: the vault is kept");
	write_clock(clock_path, 31LL * 86400);
	T_CHECK(vault_purge_due(root) >= 1 && !child_store_exists(va->id) &&
	        vault_child_get(root, "alpha", 1, &got) == VLT_ERR_NOT_FOUND,
	    "sweeper at +31 days: purged, under purge protection too, its "
	    "store's files gone");
	vault_set_test_clock(root, NULL);
	T_CHECK(vault_child_create(root, "alpha", NULL, NULL, NULL) == 0,
	    "a purged vault's name is free again");
	T_CHECK(vault_child_get(root, "bravo", 0, &vb) == 0 &&
	        vault_child_acquire(root, "bravo", &b) == 0,
	    "bravo is live");
	T_CHECK(vault_child_delete(root, "bravo") == 0 &&
	        vault_child_purge(root, "bravo") == 0 &&
	        child_store_exists(vb.id),
	    "purge while a request holds the vault: its store stays until "
	    "the reference goes");
	vault_child_release(b);
	T_CHECK(!child_store_exists(vb.id),
	    "the last reference removes the purged vault's files");
	vlt_vault_clear(&vb);
}

static void
test_reopen(vault_t **root)
{
	struct vlt_vault *items = NULL;
	size_t n = 0;
	char orphan[512];
	struct stat st;

	snprintf(orphan, sizeof(orphan), "%s/vaults/%s", dir,
	    "99999999-9999-4999-8999-999999999999");
	T_CHECK(mkdir(orphan, 0700) == 0, "an orphan directory (a crash)");
	vault_close(*root);
	*root = NULL;
	T_CHECK(vault_open(dir, NULL, root) == 0 &&
	        vault_child_list(*root, 0, &items, &n) == 0 && n == 1 &&
	        strcmp(items[0].name, "alpha") == 0,
	    "reopen: the registry and the vaults are back");
	vlt_vault_free_array(items, n);
	T_CHECK(stat(orphan, &st) != 0,
	    "reopen: a directory no vault names is removed");
}

int
main(void)
{
	struct vlt_init_params ip;
	struct vlt_vault va;
	vault_t *root = NULL;
	char tmpl[] = "/tmp/p11vault-children-XXXXXX";

	if (mkdtemp(tmpl) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(top, sizeof(top), "%s", tmpl);
	snprintf(dir, sizeof(dir), "%s/data", tmpl);
	test_names();
	memset(&ip, 0, sizeof(ip));
	ip.data_dir = dir;
	ip.vault_url = "https://127.0.0.1:18443";
	ip.vault_domain = "vault.p11vault.test";
	ip.tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47";
	T_CHECK(vault_init(&ip) == 0 && vault_open(dir, NULL, &root) == 0,
	    "an appliance with a vault domain");
	if (root == NULL)
		return T_DONE();
	T_CHECK(strcmp(vault_config(root, "vault_name"), "default") == 0 &&
	        strcmp(vault_config(root, "resource"),
	            "https://vault.p11vault.test:18443") == 0,
	    "init: the default vault's name, and the resource of the domain");
	memset(&va, 0, sizeof(va));
	test_two(root, &va);
	test_delete(root, &va);
	test_sweep(root, &va);
	test_reopen(&root);
	vlt_vault_clear(&va);
	vault_close(root);
	if (getenv("KEEP_TEST_DIR") == NULL)
		(void)nftw(top, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return T_DONE();
}
