/*
 * cli_admin.c — `p11vault vault|identity|policy ...`: the administrator
 * commands, as clients of the management REST API (so they work from
 * another machine as well as next to the vault).
 *
 * Owns: argument parsing and help for those commands, the mapping of each
 * command to one management call. The session (credential, token, the
 * call itself, failure lines) is cli_session.c's.
 *
 * Must never: print a secret other than a new identity's credential (the
 * server returns it for that purpose, once).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/cli.h"
#include "api/cli_session.h"
#include "api/client.h"
#include "hsm/base.h"

#define CLI_PERMS_MAX 64
#define CLI_RETENTION_MAX 100000 /* the range (7-90) is the server's */

/* Option bits: which options a command accepts. */
enum {
	O_NAME = 1 << 0,
	O_OID = 1 << 1,
	O_PERMS = 1 << 2,
	O_RETENTION = 1 << 3,
	O_PURGE_PROT = 1 << 4,
	O_IS_ADMIN = 1 << 5,
};

struct cli_opts {
	struct cli_where where;
	const char *name;
	const char *oid;
	const char *perms[CLI_PERMS_MAX];
	size_t nperms;
	const char *retention;
	uint64_t retention_days;
	int purge_protection;
	int is_admin;    /* identity create --admin */
	char *perm_copy; /* backing store of split --key-permissions */
};

struct cli_cmd;
typedef int (*cli_fn)(cli_session_t *, const struct cli_opts *);

struct cli_cmd {
	const char *group;
	const char *action;
	unsigned opts;
	const char *args; /* usage line after the common options */
	const char *does;
	cli_fn fn;
};

/* ---- the commands ---------------------------------------------------------- */

static API_WUR int
cmd_vault_show(cli_session_t *s, const struct cli_opts *o)
{
	(void)o;
	return cli_session_call(s, "GET", "/admin/vault", NULL, NULL);
}

static API_WUR int
cmd_vault_update(cli_session_t *s, const struct cli_opts *o)
{
	json_t *body = NULL, *props = json_object();
	int rc = VLT_ERR_NO_MEMORY;

	if (props == NULL)
		goto out;
	if (o->retention != NULL &&
	    json_object_set_new(props, "softDeleteRetentionInDays",
	        json_integer((json_int_t)o->retention_days)) != 0)
		goto out;
	if (o->purge_protection &&
	    json_object_set_new(props, "enablePurgeProtection", json_true()) !=
	        0)
		goto out;
	if ((body = json_pack("{s:O}", "properties", props)) == NULL)
		goto out;
	rc = cli_session_call(s, "PATCH", "/admin/vault", body, NULL);
out:
	json_decref(props);
	json_decref(body);
	return rc;
}

static API_WUR int
cmd_identity_create(cli_session_t *s, const struct cli_opts *o)
{
	json_t *body = json_pack("{s:s, s:b}", "displayName", o->name,
	    "isAdmin", o->is_admin);
	int rc;

	if (body == NULL) {
		cli_fail_line("--name must be UTF-8 text");
		return VLT_ERR_BAD_PARAM;
	}
	rc = cli_session_call(s, "POST", "/admin/identities", body, NULL);
	json_decref(body);
	return rc;
}

static API_WUR int
cmd_identity_list(cli_session_t *s, const struct cli_opts *o)
{
	(void)o;
	return cli_session_call(s, "GET", "/admin/identities", NULL, NULL);
}

static API_WUR int
cmd_identity_delete(cli_session_t *s, const struct cli_opts *o)
{
	char path[1024], *enc = cli_pct_encode(o->oid);
	int rc = VLT_ERR_IO;

	if (enc == NULL) {
		cli_fail_line("out of memory");
		return VLT_ERR_NO_MEMORY;
	}
	if (str_fmt(path, sizeof(path), "/admin/identities/%s", enc) != 0)
		cli_fail_line("--object-id is too long");
	else
		rc = cli_session_call(s, "DELETE", path, NULL, NULL);
	freezero_str(enc);
	return rc;
}

/* A new client secret for an identity, printed once: az ad sp credential
 * reset's {appId, password, tenant}, and the credential members of
 * `identity create` plus vaultUrl (a file identity-agent reads). */
static API_WUR int
cmd_identity_credential(cli_session_t *s, const struct cli_opts *o)
{
	char path[1024], *enc = cli_pct_encode(o->oid);
	json_t *resp = NULL, *out = NULL;
	int rc = VLT_ERR_IO;

	if (enc == NULL) {
		cli_fail_line("out of memory");
		return VLT_ERR_NO_MEMORY;
	}
	if (str_fmt(path, sizeof(path), "/admin/identities/%s/credential",
	        enc) != 0) {
		cli_fail_line("--object-id is too long");
		goto out;
	}
	if ((rc = cli_session_call(s, "POST", path, NULL, &resp)) != 0)
		goto out;
	out = json_pack("{s:O, s:O, s:O, s:s}", "appId",
	    json_object_get(resp, "clientId"), "password",
	    json_object_get(resp, "clientSecret"), "tenant",
	    json_object_get(resp, "tenantId"), "vaultUrl",
	    cli_session_vault_url(s));
	if (out == NULL || json_object_update(out, resp) != 0) {
		cli_fail_line("unexpected response from the vault");
		rc = VLT_ERR_IO;
		goto out;
	}
	rc = cli_print_json(out);
out:
	json_decref(out);
	json_decref(resp);
	freezero_str(enc);
	return rc;
}

/* {"properties":{"accessPolicies":[{tenantId, objectId, permissions}]}} */
static API_WUR json_t *
policy_body(const char *tenant, const char *oid, json_t *permissions)
{
	return json_pack("{s:{s:[{s:s,s:s,s:o}]}}", "properties",
	    "accessPolicies", "tenantId", tenant, "objectId", oid,
	    "permissions", permissions);
}

static API_WUR int
cmd_policy_set(cli_session_t *s, const struct cli_opts *o)
{
	json_t *keys = json_array(), *body = NULL;
	size_t i;
	int rc = VLT_ERR_NO_MEMORY;

	if (keys == NULL)
		goto out;
	for (i = 0; i < o->nperms; i++)
		if (json_array_append_new(keys, json_string(o->perms[i])) != 0)
			goto out;
	body = policy_body(cli_session_tenant(s), o->oid,
	    json_pack("{s:O}", "keys", keys));
	if (body == NULL) {
		cli_fail_line(
		    "cannot build the request (is every value "
		    "UTF-8?)");
		rc = VLT_ERR_IO;
		goto out;
	}
	rc = cli_session_call(s, "PUT", "/admin/vault/accessPolicies/replace",
	    body, NULL);
out:
	json_decref(keys);
	json_decref(body);
	return rc;
}

static API_WUR int
cmd_policy_delete(cli_session_t *s, const struct cli_opts *o)
{
	json_t *body;
	int rc;

	/* "remove" with an empty key list drops the principal's whole entry
	 * (az keyvault delete-policy); no read-modify-write race. */
	body = policy_body(cli_session_tenant(s), o->oid,
	    json_pack("{s:[]}", "keys"));
	if (body == NULL) {
		cli_fail_line(
		    "cannot build the request (is every value "
		    "UTF-8?)");
		return VLT_ERR_IO;
	}
	rc = cli_session_call(s, "PUT", "/admin/vault/accessPolicies/remove",
	    body, NULL);
	json_decref(body);
	return rc;
}

/* The vault's access policies, from GET /admin/vault. */
static API_WUR int
cmd_policy_list(cli_session_t *s, const struct cli_opts *o)
{
	json_t *vault = NULL, *pol;
	int rc;

	(void)o;
	if ((rc = cli_session_call(s, "GET", "/admin/vault", NULL, &vault)) !=
	    0)
		return rc;
	pol = json_object_get(json_object_get(vault, "properties"),
	    "accessPolicies");
	if (json_is_array(pol))
		rc = cli_print_json(pol);
	else {
		cli_fail_line(
		    "unexpected response from GET /admin/vault: no "
		    "properties.accessPolicies");
		rc = VLT_ERR_IO;
	}
	json_decref(vault);
	return rc;
}

static const struct cli_cmd cli_cmds[] = {
	{ "vault", "show", 0, "",
	    "prints the vault's properties (GET /admin/vault)",
	    cmd_vault_show },
	{ "vault", "update", O_RETENTION | O_PURGE_PROT,
	    "[--retention-days N] [--enable-purge-protection]",
	    "changes the soft-delete retention (7-90 days) and/or turns purge "
	    "protection on (it can never be turned off)",
	    cmd_vault_update },
	{ "identity", "create", O_NAME | O_IS_ADMIN, "--name NAME [--admin]",
	    "registers a workload identity and prints its credential "
	    "{objectId, clientId, clientSecret, tenantId, displayName, "
	    "isAdmin}; the secret is shown only this once. --admin (with no "
	    "value after it) gives the identity the vault's administrator "
	    "role: it may then call every /admin endpoint and these commands. "
	    "--admin FILE still names the credential to act with",
	    cmd_identity_create },
	{ "identity", "list", 0, "", "lists the registered identities",
	    cmd_identity_list },
	{ "identity", "delete", O_OID, "--object-id OID", "deletes an identity",
	    cmd_identity_delete },
	{ "identity", "credential", O_OID, "--object-id OID",
	    "issues a new client secret for an identity (like az ad sp "
	    "credential reset) and prints it once as {appId, password, "
	    "tenant, objectId, clientId, clientSecret, tenantId, displayName, "
	    "isAdmin, vaultUrl}: a credential file for identity-agent. The "
	    "old secret stops working at once; tokens already issued stay "
	    "valid until they expire",
	    cmd_identity_credential },
	{ "policy", "set", O_OID | O_PERMS,
	    "--object-id OID --key-permissions P [P...]",
	    "adds or replaces that principal's access policy (like az "
	    "keyvault set-policy). Permissions: get list update create import "
	    "delete recover backup restore decrypt encrypt unwrapKey wrapKey "
	    "verify sign purge rotate getrotationpolicy setrotationpolicy all",
	    cmd_policy_set },
	{ "policy", "delete", O_OID, "--object-id OID",
	    "removes that principal's access policy (like az keyvault "
	    "delete-policy); effective on the next request",
	    cmd_policy_delete },
	{ "policy", "list", 0, "", "prints the vault's access policies",
	    cmd_policy_list },
};
#define CLI_NCMDS (sizeof(cli_cmds) / sizeof(cli_cmds[0]))

static const char cli_common_help[] =
    "Where the vault is (one of):\n"
    "  --data DIR            the vault's data directory: DIR/admin.json,\n"
    "                        DIR/tls/ca.pem, DIR/p11vault.conf (a vault\n"
    "                        URL naming a host: its listen= on this\n"
    "                        machine, the name not resolved)\n"
    "  --vault-url URL --admin FILE [--ca FILE]\n"
    "                        a vault elsewhere; FILE is an admin.json\n"
    "                        {tenantId, objectId, clientId, clientSecret,\n"
    "                        vaultUrl}; --ca: the vault's CA certificate\n"
    "                        (default: the system trust store)\n"
    "  --resource URL        token audience, rarely needed (default:\n"
    "                        $P11VAULT_RESOURCE, resource= in\n"
    "                        DIR/p11vault.conf, the vault's challenge,\n"
    "                        or " CLI_DEFAULT_RESOURCE
    ")\n"
    "Prints JSON on stdout. Exit status: 0 ok, 1 failed (one line on\n"
    "stderr: \"p11vault: <status> <code>: <message>\" for a refused\n"
    "request), 2 usage error.\n";

static void
cmd_help(const struct cli_cmd *c)
{
	printf(
	    "usage: p11vault %s %s [--data DIR | --vault-url URL --admin "
	    "FILE [--ca FILE]]%s%s\n\n",
	    c->group, c->action, c->args[0] != '\0' ? " " : "", c->args);
	printf("%s.\n\n%s", c->does, cli_common_help);
}

static void
group_help(FILE *fp, const char *group)
{
	size_t i;

	fprintf(fp, "usage:\n");
	for (i = 0; i < CLI_NCMDS; i++)
		if (group == NULL || strcmp(group, cli_cmds[i].group) == 0)
			fprintf(fp, "  p11vault %s %s%s%s\n", cli_cmds[i].group,
			    cli_cmds[i].action, cli_cmds[i].args[0] ? " " : "",
			    cli_cmds[i].args);
	fprintf(fp, "Run 'p11vault GROUP COMMAND --help' for details.\n");
}

/* ---- argument parsing -------------------------------------------------------- */

static API_WUR int
is_help(const char *a)
{
	return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* Splits "get,list" and collects "get list" into o->perms. */
static API_WUR int
add_perms(struct cli_opts *o, char **argv, int argc, int *i)
{
	size_t total = 0, off = 0;
	int j;
	char *p, *save = NULL, *tok;

	for (j = *i + 1; j < argc && strncmp(argv[j], "--", 2) != 0; j++)
		total += strlen(argv[j]) + 1;
	if (total == 0 || o->perm_copy != NULL)
		return -1;
	if ((o->perm_copy = malloc(total)) == NULL)
		return -1;
	for (j = *i + 1; j < argc && strncmp(argv[j], "--", 2) != 0; j++) {
		size_t l = strlen(argv[j]);

		memcpy(o->perm_copy + off, argv[j], l);
		o->perm_copy[off + l] = ',';
		off += l + 1;
	}
	o->perm_copy[total - 1] = '\0';
	*i = j - 1;
	for (p = o->perm_copy; (tok = strtok_r(p, ", ", &save)) != NULL;
	     p = NULL) {
		if (o->nperms == CLI_PERMS_MAX)
			return -1;
		o->perms[o->nperms++] = tok;
	}
	return o->nperms > 0 ? 0 : -1;
}

/* Where an option taking a value goes; NULL if c takes no such option. */
static const char **
opt_slot(const struct cli_cmd *c, struct cli_opts *o, const char *a)
{
	if (strcmp(a, "--data") == 0)
		return &o->where.data;
	if (strcmp(a, "--vault-url") == 0)
		return &o->where.vault_url;
	if (strcmp(a, "--admin") == 0)
		return &o->where.admin;
	if (strcmp(a, "--ca") == 0)
		return &o->where.ca;
	if (strcmp(a, "--resource") == 0)
		return &o->where.resource;
	if (strcmp(a, "--name") == 0 && (c->opts & O_NAME))
		return &o->name;
	if (strcmp(a, "--object-id") == 0 && (c->opts & O_OID))
		return &o->oid;
	if (strcmp(a, "--retention-days") == 0 && (c->opts & O_RETENTION))
		return &o->retention;
	return NULL;
}

/* One option at argv[*i]: 0 taken, 1 help printed, -1 usage error
 * printed, -2 unknown. */
static API_WUR int
parse_one(const struct cli_cmd *c, int argc, char **argv, int *i,
    struct cli_opts *o)
{
	const char *a = argv[*i], **slot;

	if (is_help(a)) {
		cmd_help(c);
		return 1;
	}
	if (strcmp(a, "--key-permissions") == 0) {
		if (!(c->opts & O_PERMS))
			return -2;
		if (add_perms(o, argv, argc, i) != 0) {
			cli_fail_line(
			    "--key-permissions needs 1 to %d "
			    "permission names",
			    CLI_PERMS_MAX);
			return -1;
		}
		return 0;
	}
	/* identity create: a bare --admin (last, or followed by another
	 * option) is the administrator-role flag; --admin FILE keeps meaning
	 * the credential file. */
	if (strcmp(a, "--admin") == 0 && (c->opts & O_IS_ADMIN) &&
	    (*i + 1 >= argc || strncmp(argv[*i + 1], "--", 2) == 0)) {
		o->is_admin = 1;
		return 0;
	}
	if (strcmp(a, "--enable-purge-protection") == 0) {
		if (!(c->opts & O_PURGE_PROT))
			return -2;
		o->purge_protection = 1;
		return 0;
	}
	if ((slot = opt_slot(c, o, a)) == NULL)
		return -2;
	if (*i + 1 >= argc || strncmp(argv[*i + 1], "--", 2) == 0) {
		cli_fail_line("%s needs a value", a);
		return -1;
	}
	if (argv[++*i][0] == '\0') {
		cli_fail_line("%s needs a non-empty value", a);
		return -1;
	}
	*slot = argv[*i];
	return 0;
}

/* What c requires, and the retention as a number. 0, or -1 printed. */
static API_WUR int
check_opts(const struct cli_cmd *c, struct cli_opts *o)
{
	const char *missing = NULL;

	if ((c->opts & O_NAME) && o->name == NULL)
		missing = "--name NAME";
	else if ((c->opts & O_OID) && o->oid == NULL)
		missing = "--object-id OID";
	else if ((c->opts & O_PERMS) && o->nperms == 0)
		missing = "--key-permissions P [P...]";
	else if ((c->opts & (O_RETENTION | O_PURGE_PROT)) &&
	    o->retention == NULL && !o->purge_protection)
		missing = "--retention-days N and/or --enable-purge-protection";
	if (missing != NULL) {
		cli_fail_line("%s %s needs %s", c->group, c->action, missing);
		return -1;
	}
	if (o->retention != NULL &&
	    parse_u64(o->retention, CLI_RETENTION_MAX, &o->retention_days) !=
	        0) {
		cli_fail_line(
		    "--retention-days needs a whole number of days "
		    "(7-90)");
		return -1;
	}
	return 0;
}

/* 0 ok, 1 help printed, -1 usage error printed. */
static API_WUR int
parse_opts(const struct cli_cmd *c, int argc, char **argv, struct cli_opts *o)
{
	int i, rc;

	for (i = 2; i < argc; i++) {
		if ((rc = parse_one(c, argc, argv, &i, o)) == -2) {
			cli_fail_line("%s %s: unknown %s '%.64s' (see --help)",
			    c->group, c->action,
			    argv[i][0] == '-' ? "option" : "argument", argv[i]);
			return -1;
		}
		if (rc != 0)
			return rc;
	}
	return check_opts(c, o);
}

/* The command argv names; NULL after the usage line (*rc its status). */
static API_WUR const struct cli_cmd *
find_cmd(int argc, char **argv, int *rc)
{
	const struct cli_cmd *c = NULL;
	size_t i;
	int known_group = 0;

	*rc = 2;
	for (i = 0; i < CLI_NCMDS; i++) {
		if (strcmp(argv[0], cli_cmds[i].group) != 0)
			continue;
		known_group = 1;
		if (argc >= 2 && strcmp(argv[1], cli_cmds[i].action) == 0)
			c = &cli_cmds[i];
	}
	if (c != NULL)
		return c;
	if (!known_group)
		cli_fail_line("unknown command '%.64s'", argv[0]);
	else if (argc >= 2 && is_help(argv[1])) {
		group_help(stdout, argv[0]);
		*rc = 0;
	} else if (argc >= 2)
		cli_fail_line(
		    "%s: unknown command '%.64s' (see 'p11vault %s "
		    "--help')",
		    argv[0], argv[1], argv[0]);
	else
		cli_fail_line("%s: which command? (see 'p11vault %s --help')",
		    argv[0], argv[0]);
	return NULL;
}

int
cli_admin(int argc, char **argv)
{
	const struct cli_cmd *c;
	struct cli_opts o;
	cli_session_t *s = NULL;
	int rc;

	memset(&o, 0, sizeof(o));
	if (argc < 1 || argv[0] == NULL) {
		group_help(stderr, NULL);
		return 2;
	}
	if ((c = find_cmd(argc, argv, &rc)) == NULL)
		return rc;
	if ((rc = parse_opts(c, argc, argv, &o)) != 0) {
		free(o.perm_copy);
		return rc > 0 ? 0 : 2;
	}
	if ((rc = cli_session_open(&o.where, &s)) == 0)
		rc = c->fn(s, &o);
	cli_session_close(s);
	free(o.perm_copy);
	return cli_exit_status(rc);
}
