/*
 * api/cli_node.c — `p11vault node …`: the join ceremony's files and
 * commands (docs/cluster.md, "Joining a node").
 *
 *   node init --data DIR2 --name NAME …   (main.c: init of a node's token)
 *       then DIR2/join-request.json: {node, transportKey, fingerprint}
 *   node approve --data DIR --request FILE --fingerprint HEX --out FILE
 *       the SO ceremony on a node of the cluster (shares on stdin)
 *   node join --data DIR2 --bundle FILE   (DIR2's shares on stdin)
 *   node list --data DIR
 *   node remove --data DIR --name NAME|FINGERPRINT   (shares on stdin)
 *
 * Every command but list runs with the server of its DIR stopped
 * (serve.lock): the token changes under it otherwise.
 * Must never: print a share other than node init's new ones; approve a
 * request whose key is not the one its fingerprint names.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "api/cli.h"
#include "api/cli_session.h"
#include "hsm/base.h"
#include "hsm/buf.h"
#include "vault/config.h"
#include "vault/vault.h"

#define SHARES_IN_MAX 2048
#define FILE_MAX (256 * 1024)

static int
usage(const char *why)
{
	cli_fail_line("%s (see p11vault node --help)", why);
	return 2;
}

static void
help(void)
{
	puts(
	    "usage: p11vault node init --data DIR2 --name NAME [--store "
	    "CONNINFO (the cluster's)] [init's options]\n"
	    "       p11vault node approve --data DIR --request FILE "
	    "--fingerprint HEX --out FILE\n"
	    "       p11vault node join --data DIR2 --bundle FILE\n"
	    "       p11vault node list --data DIR\n"
	    "       p11vault node remove --data DIR --name NAME|FINGERPRINT\n"
	    "approve, join and remove read the vault's key shares from "
	    "standard input\n"
	    "(a line each; none with an unattended method only), with the "
	    "server of DIR\n"
	    "stopped. See docs/cluster.md.");
}

/* --name VALUE of argv; NULL if absent or without a value. */
static const char *
arg(int argc, char **argv, const char *name)
{
	int i;

	for (i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return NULL;
}

static char *
b64(const uint8_t *p, size_t len)
{
	char *s = malloc(4 * ((len + 2) / 3) + 1);

	if (s != NULL)
		(void)EVP_EncodeBlock((unsigned char *)s, p, (int)len);
	return s;
}

/* Standard base64 into *out (malloc'd). */
static int
unb64(const char *s, uint8_t **out, size_t *len)
{
	size_t n = strlen(s), pad = 0;
	int r;

	*out = NULL;
	if (n == 0 || n % 4 != 0 || n > FILE_MAX ||
	    (*out = malloc(n / 4 * 3)) == NULL)
		return -1;
	if ((r = EVP_DecodeBlock(*out, (const unsigned char *)s, (int)n)) < 0) {
		free(*out);
		*out = NULL;
		return -1;
	}
	pad = (size_t)(s[n - 1] == '=') + (size_t)(s[n - 2] == '=');
	*len = (size_t)r - pad;
	return 0;
}

/* The key shares on stdin, a line each ("" when stdin is empty). */
static char *
read_shares(void)
{
	buf_t *b = buf_new(SHARES_IN_MAX + 1);
	char chunk[256];
	ssize_t n;

	if (b == NULL)
		return NULL;
	if (isatty(0))
		fputs(
		    "p11vault: the vault's key shares, a line each, then "
		    "end of input (Ctrl-D):\n",
		    stderr);
	while ((n = read(0, chunk, sizeof(chunk))) > 0)
		if (buf_put(b, chunk, (size_t)n) != 0)
			break;
	OPENSSL_cleanse(chunk, sizeof(chunk));
	return buf_steal(b, NULL);
}

static int
lock_dir(const char *dir, int *lock)
{
	int rc = cli_serve_lock(dir, lock);

	if (rc == VLT_ERR_CONFLICT)
		cli_fail_line(
		    "a server is running on %s: stop it first (the "
		    "ceremony changes its token)",
		    dir);
	else if (rc != 0)
		cli_fail_line("cannot open %s/serve.lock: %s", dir,
		    strerror(errno));
	return rc;
}

static int
write_json(const char *path, json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2));
	int r = s != NULL ? fs_write_private(path, s, strlen(s)) : -1;

	free(s);
	return r;
}

int
cli_node_request(const char *dir, const char *name, const char *shares)
{
	char fp[VLT_FINGERPRINT_LEN + 1], path[4200], *k = NULL, *out;
	uint8_t *spki = NULL;
	size_t len = 0;
	json_t *j, *sh;
	int r;

	if (name == NULL || *name == '\0')
		cli_die("node init needs --name NAME");
	if ((r = vault_node_request(dir, getenv("P11VAULT_MODULE_ALLOW"), &spki,
	         &len)) != 0)
		cli_die("cannot read the node's transport key (error %d)", r);
	vault_fingerprint(spki, len, fp);
	k = b64(spki, len);
	free(spki);
	j = json_pack("{s:s, s:s?, s:s}", "node", name, "transportKey", k,
	    "fingerprint", fp);
	free(k);
	if (j == NULL ||
	    fs_join(path, sizeof(path), dir, "join-request.json") != 0 ||
	    write_json(path, j) != 0)
		cli_die("cannot write %s/join-request.json", dir);
	json_decref(j);
	sh = cli_seal_shares_json(shares);
	j = json_pack("{s:s, s:s, s:s, s:o}", "node", name, "fingerprint", fp,
	    "request", path, "unsealKeyShares", sh ? sh : json_array());
	out = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	json_decref(j);
	if (out == NULL)
		return 1;
	printf("%s\n", out);
	freezero_str(out);
	fprintf(stderr,
	    "p11vault: node %s is made; it joins once approved on a node of "
	    "the cluster:\n  read this fingerprint out to that node's "
	    "operator: %s\n",
	    name, fp);
	return 0;
}

/* A JSON file holding an object; NULL with a line said. */
static json_t *
load(const char *file)
{
	json_error_t e;
	json_t *j = json_load_file(file, 0, &e);

	if (j == NULL) {
		cli_fail_line("%s: %s", file, e.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		cli_fail_line("%s is not a JSON object", file);
		json_decref(j);
		return NULL;
	}
	return j;
}

/* The request's transport key, checked against its fingerprint and the
 * one the operator gave. */
static int
request_key(const char *file, const char *want, const char **name,
    uint8_t **spki, size_t *len, json_t **j)
{
	char fp[VLT_FINGERPRINT_LEN + 1];
	const char *k, *f;

	if ((*j = load(file)) == NULL)
		return 1;
	*name = json_string_value(json_object_get(*j, "node"));
	k = json_string_value(json_object_get(*j, "transportKey"));
	f = json_string_value(json_object_get(*j, "fingerprint"));
	if (*name == NULL || k == NULL || f == NULL ||
	    unb64(k, spki, len) != 0) {
		cli_fail_line("%s is not a join request", file);
		return 1;
	}
	vault_fingerprint(*spki, *len, fp);
	if (strcmp(fp, f) != 0 || strcmp(fp, want) != 0) {
		cli_fail_line(
		    "refused: the request's transport key has fingerprint %s, "
		    "not %s: the request was altered, or is another node's",
		    fp, strcmp(fp, f) != 0 ? f : want);
		return 1;
	}
	return 0;
}

static const char *
approve_why(int rc)
{
	switch (rc) {
	case VLT_ERR_BAD_PARAM:
		return "too few valid key shares of this vault (the SO "
		       "ceremony needs them), or a bad --name";
	case VLT_ERR_FORBIDDEN:
		return "this node was removed: it can never join again (make "
		       "it anew with node init)";
	case VLT_ERR_CONFLICT:
		return "the name is another node's, or this vault was made "
		       "before clustering (its keys cannot leave its token: "
		       "see docs/cluster.md)";
	default:
		return "see the token process's message above";
	}
}

static int
cmd_approve(int argc, char **argv)
{
	const char *dir = arg(argc, argv, "--data"), *name = NULL;
	const char *req = arg(argc, argv, "--request");
	const char *want = arg(argc, argv, "--fingerprint");
	const char *outf = arg(argc, argv, "--out");
	char fp[VLT_FINGERPRINT_LEN + 1], *shares, *b = NULL;
	uint8_t *spki = NULL, *bundle = NULL;
	size_t len = 0, blen = 0;
	json_t *j = NULL, *o;
	int rc, lock;

	if (dir == NULL || req == NULL || want == NULL || outf == NULL)
		return usage(
		    "approve needs --data, --request, --fingerprint "
		    "and --out");
	if (lock_dir(dir, &lock) != 0)
		return 1;
	if (request_key(req, want, &name, &spki, &len, &j) != 0) {
		free(spki);
		json_decref(j);
		return 1;
	}
	if ((shares = read_shares()) == NULL) {
		free(spki);
		json_decref(j);
		return 1;
	}
	rc = vault_node_approve(dir, getenv("P11VAULT_MODULE_ALLOW"), shares,
	    name, spki, len, &bundle, &blen);
	freezero_str(shares);
	vault_fingerprint(spki, len, fp);
	free(spki);
	if (rc != 0) {
		cli_fail_line("approve refused (error %d): %s", rc,
		    approve_why(rc));
		json_decref(j);
		return 1;
	}
	b = b64(bundle, blen);
	free(bundle);
	o = json_pack("{s:s, s:s, s:s?}", "node", name, "fingerprint", fp,
	    "bundle", b);
	free(b);
	rc = o != NULL && write_json(outf, o) == 0 ? 0 : 1;
	json_decref(o);
	if (rc == 0)
		fprintf(stderr,
		    "p11vault: node %s approved; give %s to it "
		    "(p11vault node join)\n",
		    name, outf);
	else
		cli_fail_line("cannot write %s", outf);
	json_decref(j);
	return rc;
}

static int
cmd_join(int argc, char **argv)
{
	const char *dir = arg(argc, argv, "--data");
	const char *file = arg(argc, argv, "--bundle"), *bs;
	uint8_t *bundle = NULL;
	size_t blen = 0;
	char *shares;
	json_t *j;
	int rc, lock;

	if (dir == NULL || file == NULL)
		return usage("join needs --data and --bundle");
	if (lock_dir(dir, &lock) != 0 || (j = load(file)) == NULL)
		return 1;
	bs = json_string_value(json_object_get(j, "bundle"));
	if (bs == NULL || unb64(bs, &bundle, &blen) != 0) {
		json_decref(j);
		cli_fail_line("%s is not a join bundle", file);
		return 1;
	}
	json_decref(j);
	if ((shares = read_shares()) == NULL)
		return 1;
	rc = vault_node_join(dir, getenv("P11VAULT_MODULE_ALLOW"), shares,
	    bundle, blen);
	freezero_str(shares);
	free(bundle);
	if (rc != 0) {
		cli_fail_line("join refused (error %d): %s", rc,
		    rc == VLT_ERR_DECRYPT ?
		        "the bundle was made for another node, or altered" :
		        rc == VLT_ERR_EXISTS ?
		        "this node's token holds a domain already" :
		        rc == VLT_ERR_BAD_PARAM ? "too few valid key shares of "
		                                  "this node" :
		                                  "see the token process's "
		                                  "message above");
		return 1;
	}
	fprintf(stderr,
	    "p11vault: joined: this node's token holds the "
	    "domain's keys; it serves once it shares the store\n");
	return 0;
}

static int
cmd_list(int argc, char **argv)
{
	const char *dir = arg(argc, argv, "--data");
	struct vlt_node *a = NULL;
	json_t *arr, *o;
	size_t n = 0, i;
	char *s;
	int rc;

	if (dir == NULL)
		return usage("list needs --data");
	if ((rc = vault_node_list(dir, &a, &n)) != 0) {
		cli_fail_line("cannot read the node registry (error %d)", rc);
		return 1;
	}
	arr = json_array();
	for (i = 0; arr != NULL && i < n; i++)
		if ((o = json_pack("{s:s, s:s, s:s}", "name", a[i].name,
		         "fingerprint", a[i].fingerprint, "state",
		         a[i].removed ? "removed" : "approved")) == NULL ||
		    json_array_append_new(arr, o) != 0)
			break;
	free(a);
	o = arr != NULL ? json_pack("{s:o}", "nodes", arr) : NULL;
	s = o != NULL ? json_dumps(o, JSON_INDENT(2)) : NULL;
	json_decref(o);
	if (s == NULL)
		return 1;
	printf("%s\n", s);
	free(s);
	return 0;
}

static int
cmd_remove(int argc, char **argv)
{
	const char *dir = arg(argc, argv, "--data");
	const char *who = arg(argc, argv, "--name");
	char *shares;
	int rc, lock;

	if (dir == NULL || who == NULL)
		return usage("remove needs --data and --name");
	if (lock_dir(dir, &lock) != 0 || (shares = read_shares()) == NULL)
		return 1;
	rc = vault_node_remove(dir, getenv("P11VAULT_MODULE_ALLOW"), shares,
	    who);
	freezero_str(shares);
	if (rc != 0) {
		cli_fail_line("remove refused (error %d): %s", rc,
		    rc == VLT_ERR_NOT_FOUND     ? "no such approved node" :
		        rc == VLT_ERR_BAD_PARAM ? "too few valid key shares" :
		                                  "see above");
		return 1;
	}
	fprintf(stderr,
	    "p11vault: node %s removed: its transport key is gone from this "
	    "token, and it is never approved again. Its own token still "
	    "holds the domain: wipe it, or rotate the domain key "
	    "(p11vault rekey-domain)\n",
	    who);
	return 0;
}

int
cli_rekey_domain(int argc, char **argv)
{
	const char *dir = arg(argc, argv, "--data");
	size_t moved = 0;
	char *shares;
	int rc, lock;

	if (argc >= 2 && strcmp(argv[1], "--help") == 0) {
		puts(
		    "usage: p11vault rekey-domain --data DIR   (the vault's key "
		    "shares on stdin)\n"
		    "With the server stopped: a new domain key, every blob of "
		    "the store re-wrapped\n"
		    "under it inside the token, then the old key destroyed. "
		    "Interrupted, run it\n"
		    "again: it resumes. Other nodes must join again after it "
		    "(docs/cluster.md).");
		return 0;
	}
	if (dir == NULL)
		return usage("rekey-domain needs --data DIR");
	if (lock_dir(dir, &lock) != 0 || (shares = read_shares()) == NULL)
		return 1;
	rc = vault_rekey_domain(dir, getenv("P11VAULT_MODULE_ALLOW"), shares,
	    &moved);
	freezero_str(shares);
	if (rc != 0) {
		cli_fail_line("rekey-domain failed (error %d): %s", rc,
		    rc == VLT_ERR_CONFLICT ?
		        "this vault was made before clustering: its domain "
		        "key can never hand its blobs on (docs/cluster.md)" :
		        rc == VLT_ERR_BAD_PARAM ?
		        "too few valid key shares of this vault" :
		        "see above; run it again to resume");
		return 1;
	}
	printf("{\"rewrapped\": %zu}\n", moved);
	fprintf(stderr,
	    "p11vault: the domain key is new; the old one is "
	    "destroyed\n");
	return 0;
}

int
cli_node(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0) {
		help();
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "approve") == 0)
		return cmd_approve(argc - 1, argv + 1);
	if (strcmp(argv[1], "join") == 0)
		return cmd_join(argc - 1, argv + 1);
	if (strcmp(argv[1], "list") == 0)
		return cmd_list(argc - 1, argv + 1);
	if (strcmp(argv[1], "remove") == 0)
		return cmd_remove(argc - 1, argv + 1);
	return usage("unknown node command");
}
