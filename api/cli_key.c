/*
 * cli_key.c — `p11vault key SUB …`: az keyvault key's sub-commands and
 * flags, parsed here; which vault and key they name (--vault-name NAME
 * through cli_vault_url, --name/-n, --version/-v, or --id URL); dispatch
 * to cli_key_cmds.c.
 *
 * Owns: the table of sub-commands with the flags each accepts and needs,
 * az's usage errors (exit status 2) and help. Must never: send a request
 * before the whole command line has been checked.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/cli.h"
#include "api/cli_key.h"
#include "hsm/base.h"

#define BIT(f) (1UL << (f))
#define ID_OPTS (BIT(F_NAME) | BIT(F_VAULT) | BIT(F_ID))
#define ATTR_OPTS \
	(BIT(F_OPS) | BIT(F_NOT_BEFORE) | BIT(F_EXPIRES) | BIT(F_TAGS))

enum opt_kind { K_VAL, K_MULTI, K_TRI };
enum id_kind { ID_KEY, ID_DELETED, ID_VAULT };

struct key_opt {
	const char *name;
	const char *alias;
	enum key_field field;
	enum opt_kind kind;
	const char *choices; /* space-separated; NULL: any value */
};

static const struct key_opt key_opts[] = {
	{ "--name", "-n", F_NAME, K_VAL, NULL },
	{ "--vault-name", NULL, F_VAULT, K_VAL, NULL },
	{ "--id", NULL, F_ID, K_VAL, NULL },
	{ "--version", "-v", F_VERSION, K_VAL, NULL },
	{ "--kty", NULL, F_KTY, K_VAL, "EC EC-HSM RSA RSA-HSM oct oct-HSM" },
	{ "--size", NULL, F_SIZE, K_VAL, NULL },
	{ "--curve", NULL, F_CURVE, K_VAL, "P-256 P-256K P-384 P-521" },
	{ "--protection", "-p", F_PROTECTION, K_VAL, "hsm software" },
	{ "--pem-file", NULL, F_PEM_FILE, K_VAL, NULL },
	{ "--pem-string", NULL, F_PEM_STRING, K_VAL, NULL },
	{ "--pem-password", NULL, F_PEM_PASSWORD, K_VAL, NULL },
	{ "--byok-file", NULL, F_BYOK_FILE, K_VAL, NULL },
	{ "--byok-string", NULL, F_BYOK_STRING, K_VAL, NULL },
	{ "--file", "-f", F_FILE, K_VAL, NULL },
	{ "--encoding", "-e", F_ENCODING, K_VAL, "DER PEM" },
	{ "--enabled", NULL, F_ENABLED, K_TRI, NULL },
	{ "--disabled", NULL, F_DISABLED, K_TRI, NULL },
	{ "--not-before", NULL, F_NOT_BEFORE, K_VAL, NULL },
	{ "--expires", NULL, F_EXPIRES, K_VAL, NULL },
	{ "--algorithm", "-a", F_ALGORITHM, K_VAL, NULL },
	{ "--value", NULL, F_VALUE, K_VAL, NULL },
	{ "--data-type", NULL, F_DATA_TYPE, K_VAL, "base64 plaintext" },
	{ "--digest", NULL, F_DIGEST, K_VAL, NULL },
	{ "--signature", NULL, F_SIGNATURE, K_VAL, NULL },
	{ "--maxresults", NULL, F_MAXRESULTS, K_VAL, NULL },
	{ "--include-managed", NULL, F_INCLUDE_MANAGED, K_TRI, NULL },
	{ "--ops", NULL, F_OPS, K_MULTI,
	    "decrypt encrypt import sign unwrapKey verify wrapKey" },
	{ "--tags", NULL, F_TAGS, K_MULTI, NULL },
};
#define NKEY_OPTS (sizeof(key_opts) / sizeof(key_opts[0]))

struct key_cmd {
	const char *sub;
	unsigned long opts;     /* accepted, besides where the vault is */
	unsigned long required; /* of those */
	enum id_kind id;
	const char *does;
	key_fn fn;
};

static const struct key_cmd key_cmds[] = {
	{ "create",
	    ID_OPTS | ATTR_OPTS | BIT(F_KTY) | BIT(F_SIZE) | BIT(F_CURVE) |
	        BIT(F_PROTECTION) | BIT(F_DISABLED),
	    BIT(F_NAME), ID_KEY, "creates a key, or a new version of it",
	    key_create },
	{ "show", ID_OPTS | BIT(F_VERSION), BIT(F_NAME), ID_KEY,
	    "prints a key's public part and attributes", key_show },
	{ "list",
	    BIT(F_VAULT) | BIT(F_ID) | BIT(F_MAXRESULTS) |
	        BIT(F_INCLUDE_MANAGED),
	    0, ID_VAULT, "lists the vault's keys", key_list },
	{ "list-versions", ID_OPTS | BIT(F_MAXRESULTS), BIT(F_NAME), ID_KEY,
	    "lists a key's versions", key_list_versions },
	{ "list-deleted", BIT(F_VAULT) | BIT(F_ID) | BIT(F_MAXRESULTS), 0,
	    ID_VAULT, "lists the deleted keys", key_list_deleted },
	{ "set-attributes",
	    ID_OPTS | ATTR_OPTS | BIT(F_VERSION) | BIT(F_ENABLED), BIT(F_NAME),
	    ID_KEY, "changes a key version's attributes, operations or tags",
	    key_set_attributes },
	{ "delete", ID_OPTS, BIT(F_NAME), ID_KEY,
	    "deletes a key, all its versions (soft delete)", key_delete },
	{ "recover", ID_OPTS, BIT(F_NAME), ID_DELETED, "recovers a deleted key",
	    key_recover },
	{ "purge", ID_OPTS, BIT(F_NAME), ID_DELETED,
	    "purges a deleted key for good", key_purge },
	{ "rotate", ID_OPTS, BIT(F_NAME), ID_KEY,
	    "makes a new version of a key", key_rotate },
	{ "backup", ID_OPTS | BIT(F_FILE), BIT(F_NAME) | BIT(F_FILE), ID_KEY,
	    "writes a key's protected backup to a file", key_backup },
	{ "restore", BIT(F_VAULT) | BIT(F_ID) | BIT(F_FILE), BIT(F_FILE),
	    ID_VAULT, "restores a key from a backup file", key_restore },
	{ "import",
	    ID_OPTS | ATTR_OPTS | BIT(F_KTY) | BIT(F_CURVE) |
	        BIT(F_PROTECTION) | BIT(F_DISABLED) | BIT(F_PEM_FILE) |
	        BIT(F_PEM_STRING) | BIT(F_PEM_PASSWORD) | BIT(F_BYOK_FILE) |
	        BIT(F_BYOK_STRING),
	    BIT(F_NAME), ID_KEY,
	    "imports a private key (PEM) or a BYOK transfer blob", key_import },
	{ "download", ID_OPTS | BIT(F_VERSION) | BIT(F_FILE) | BIT(F_ENCODING),
	    BIT(F_NAME) | BIT(F_FILE), ID_KEY,
	    "writes a key's public key to a new file (PEM or DER)",
	    key_download },
	{ "encrypt",
	    ID_OPTS | BIT(F_VERSION) | BIT(F_ALGORITHM) | BIT(F_VALUE) |
	        BIT(F_DATA_TYPE),
	    BIT(F_NAME) | BIT(F_ALGORITHM) | BIT(F_VALUE), ID_KEY,
	    "encrypts a value (base64, or --data-type plaintext)",
	    key_encrypt },
	{ "decrypt",
	    ID_OPTS | BIT(F_VERSION) | BIT(F_ALGORITHM) | BIT(F_VALUE) |
	        BIT(F_DATA_TYPE),
	    BIT(F_NAME) | BIT(F_ALGORITHM) | BIT(F_VALUE), ID_KEY,
	    "decrypts a value (base64)", key_decrypt },
	{ "sign", ID_OPTS | BIT(F_VERSION) | BIT(F_ALGORITHM) | BIT(F_DIGEST),
	    BIT(F_NAME) | BIT(F_ALGORITHM) | BIT(F_DIGEST), ID_KEY,
	    "signs a digest (base64)", key_sign },
	{ "verify",
	    ID_OPTS | BIT(F_VERSION) | BIT(F_ALGORITHM) | BIT(F_DIGEST) |
	        BIT(F_SIGNATURE),
	    BIT(F_NAME) | BIT(F_ALGORITHM) | BIT(F_DIGEST) | BIT(F_SIGNATURE),
	    ID_KEY, "verifies a signature (base64) over a digest (base64)",
	    key_verify },
	{ "rotation-policy show", ID_OPTS, BIT(F_NAME), ID_KEY,
	    "prints a key's rotation policy", key_policy_show },
	{ "rotation-policy update", ID_OPTS | BIT(F_VALUE),
	    BIT(F_NAME) | BIT(F_VALUE), ID_KEY,
	    "sets a key's rotation policy (--value: JSON, or a file of it)",
	    key_policy_update },
};
#define NKEY_CMDS (sizeof(key_cmds) / sizeof(key_cmds[0]))

static const char *const where_opts[] = { "--data", "--vault-url", "--admin",
	"--ca", "--resource" };

/* ---- help ---------------------------------------------------------------- */

static void
key_usage(FILE *f)
{
	size_t i;

	fputs(
	    "usage: p11vault key SUBCOMMAND [--data DIR | --vault-url URL "
	    "--admin FILE] ARGS\n"
	    "Like 'az keyvault key SUBCOMMAND' (same flags, same JSON "
	    "output). Subcommands:\n",
	    f);
	for (i = 0; i < NKEY_CMDS; i++)
		fprintf(f, "  %-24s %s\n", key_cmds[i].sub, key_cmds[i].does);
	fputs("Run 'p11vault key SUBCOMMAND --help' for its flags.\n", f);
}

static void
cmd_help(const struct key_cmd *c)
{
	size_t i;

	printf(
	    "usage: p11vault key %s [--data DIR | --vault-url URL --admin "
	    "FILE [--ca FILE]] [--resource URL]\n\n%s (like 'az keyvault "
	    "key %s').\n\nFlags (* required):\n",
	    c->sub, c->does, c->sub);
	for (i = 0; i < NKEY_OPTS; i++) {
		const struct key_opt *o = &key_opts[i];

		if (!(c->opts & BIT(o->field)))
			continue;
		printf("  %s%s%s%s%s%s%s\n",
		    (c->required & BIT(o->field)) ? "*" : " ", o->name,
		    o->alias ? " " : "", o->alias ? o->alias : "",
		    o->choices ? "  {" : "", o->choices ? o->choices : "",
		    o->choices ? "}" : "");
	}
	printf(
	    "\n--vault-name NAME: '%s' (or the first label of the vault "
	    "URL's host); omitted: the\nvault of --data/--vault-url. --id: "
	    "a key id https://HOST/keys/NAME[/VERSION]\n(recover, purge: "
	    "https://HOST/deletedkeys/NAME; list, restore: the vault "
	    "URL).\nExit status: 0 ok, 1 failed, 2 bad arguments.\n",
	    CLI_DEFAULT_VAULT);
}

/* ---- parsing ------------------------------------------------------------- */

static void __attribute__((format(printf, 2, 3)))
usage_error(const struct key_cmd *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "p11vault key %s: error: ", c != NULL ? c->sub : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int
in_choices(const char *choices, const char *v)
{
	size_t n = strlen(v);
	const char *p = choices;

	while (p != NULL && *p != '\0') {
		size_t w = strcspn(p, " ");

		if (w == n && strncmp(p, v, n) == 0)
			return 1;
		p += w + (p[w] == ' ');
	}
	return 0;
}

static API_WUR int
check_choice(const struct key_cmd *c, const struct key_opt *o, const char *v)
{
	if (o->choices == NULL || in_choices(o->choices, v))
		return 0;
	usage_error(c, "argument %s: invalid choice: '%.64s' (choose from %s)",
	    o->name, v, o->choices);
	return -1;
}

/* A three-state flag: bare is true; else true/false (yes/no, 1/0). */
static API_WUR int
take_tri(const struct key_cmd *c, const struct key_opt *o, int argc,
    char **argv, int *i, struct key_args *a)
{
	const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;

	a->val[o->field] = "true";
	if (v == NULL || v[0] == '-')
		return 0;
	++*i;
	if (strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 ||
	    strcmp(v, "1") == 0)
		return 0;
	if (strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0 ||
	    strcmp(v, "0") == 0) {
		a->val[o->field] = "false";
		return 0;
	}
	usage_error(c, "argument %s: invalid value: '%.64s' (true or false)",
	    o->name, v);
	return -1;
}

static API_WUR int
take_multi(const struct key_cmd *c, const struct key_opt *o, int argc,
    char **argv, int *i, struct key_args *a)
{
	size_t m = o->field == F_OPS ? 0 : 1;

	while (*i + 1 < argc && argv[*i + 1][0] != '-') {
		if (a->nmulti[m] == KEY_MULTI_MAX) {
			usage_error(c, "argument %s: at most %d values",
			    o->name, KEY_MULTI_MAX);
			return -1;
		}
		if (check_choice(c, o, argv[*i + 1]) != 0)
			return -1;
		a->multi[m][a->nmulti[m]++] = argv[++*i];
	}
	return 0;
}

static const struct key_opt *
find_opt(const char *s)
{
	size_t i;

	for (i = 0; i < NKEY_OPTS; i++)
		if (strcmp(s, key_opts[i].name) == 0 ||
		    (key_opts[i].alias && strcmp(s, key_opts[i].alias) == 0))
			return &key_opts[i];
	return NULL;
}

static const char **
where_slot(struct key_args *a, const char *s)
{
	const char **slots[] = { &a->where.data, &a->where.vault_url,
		&a->where.admin, &a->where.ca, &a->where.resource };
	size_t i;

	for (i = 0; i < sizeof(where_opts) / sizeof(where_opts[0]); i++)
		if (strcmp(s, where_opts[i]) == 0)
			return slots[i];
	return NULL;
}

/* argv[*i]: 0 taken, 1 help printed, -1 usage error printed. */
static API_WUR int
parse_one(const struct key_cmd *c, int argc, char **argv, int *i,
    struct key_args *a)
{
	const char *s = argv[*i], **ws;
	const struct key_opt *o = find_opt(s);

	if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
		cmd_help(c);
		return 1;
	}
	if ((ws = where_slot(a, s)) == NULL &&
	    (o == NULL || !(c->opts & BIT(o->field)))) {
		usage_error(c, "unrecognized arguments: %.64s", s);
		return -1;
	}
	if (o != NULL && !ws) {
		a->given[o->field] = 1;
		if (o->kind == K_TRI)
			return take_tri(c, o, argc, argv, i, a);
		if (o->kind == K_MULTI)
			return take_multi(c, o, argc, argv, i, a);
	}
	/* a value may begin with '-' only for --value/--digest (base64) */
	if (*i + 1 >= argc ||
	    (argv[*i + 1][0] == '-' && argv[*i + 1][1] == '-')) {
		usage_error(c, "argument %s: expected one argument", s);
		return -1;
	}
	if (ws != NULL) {
		*ws = argv[++*i];
		return 0;
	}
	a->val[o->field] = argv[++*i];
	return check_choice(c, o, a->val[o->field]);
}

static API_WUR int
check_required(const struct key_cmd *c, const struct key_args *a)
{
	size_t i;

	for (i = 0; i < NKEY_OPTS; i++) {
		enum key_field f = key_opts[i].field;

		if (f == F_NAME && a->given[F_ID])
			continue; /* --id names the key */
		if ((c->required & BIT(f)) && !a->given[f]) {
			usage_error(c,
			    "the following arguments are required: %s%s%s",
			    key_opts[i].name, key_opts[i].alias ? "/" : "",
			    key_opts[i].alias ? key_opts[i].alias : "");
			return -1;
		}
	}
	if (a->given[F_ID] && (a->given[F_NAME] || a->given[F_VAULT])) {
		usage_error(c, "usage error: --id | --vault-name --name");
		return -1;
	}
	return 0;
}

/* 0 ok, 1 help printed, -1 usage error printed. */
static API_WUR int
parse_args(const struct key_cmd *c, int argc, char **argv, int first,
    struct key_args *a)
{
	int i, rc;

	for (i = first; i < argc; i++)
		if ((rc = parse_one(c, argc, argv, &i, a)) != 0)
			return rc;
	return check_required(c, a);
}

/* ---- which vault, key and version ---------------------------------------- */

static API_WUR int
word_ok(const char *s, size_t max, int dash)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > max)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		        (s[i] >= 'a' && s[i] <= 'z') ||
		        (s[i] >= 'A' && s[i] <= 'Z') || (dash && s[i] == '-')))
			return 0;
	return 1;
}

static API_WUR int
set_name(struct key_args *a, const char *name, size_t nlen, const char *ver,
    size_t vlen)
{
	if (str_fmt(a->name, sizeof(a->name), "%.*s", (int)nlen, name) != 0 ||
	    str_fmt(a->version, sizeof(a->version), "%.*s", (int)vlen, ver) !=
	        0 ||
	    (a->name[0] != '\0' && !word_ok(a->name, 127, 1)) ||
	    (a->version[0] != '\0' && !word_ok(a->version, 63, 0))) {
		cli_fail_line(
		    "a key name is 1-127 characters of 0-9, a-z, A-Z and -; a "
		    "version is letters and digits");
		return VLT_ERR_BAD_PARAM;
	}
	return 0;
}

/* --id https://HOST[:PORT]/keys/NAME[/VERSION] (or /deletedkeys/NAME, or
 * the vault URL alone) into a->base, a->name, a->version. */
static API_WUR int
from_id(const struct key_cmd *c, cli_session_t *s, struct key_args *a)
{
	const char *id = a->val[F_ID], *p, *seg;
	const char *want = c->id == ID_DELETED ? "/deletedkeys/" : "/keys/";
	size_t blen, nlen;

	if (strncasecmp(id, "https://", 8) != 0)
		goto bad;
	p = id + 8 + strcspn(id + 8, "/");
	blen = (size_t)(p - id);
	if (str_fmt(a->base, sizeof(a->base), "%.*s", (int)blen, id) != 0 ||
	    cli_vault_url_check(s, a->base) != 0) {
		cli_fail_line("--id: %.200s is not a vault of this appliance",
		    a->base);
		return VLT_ERR_NOT_FOUND;
	}
	if (c->id == ID_VAULT) {
		if (p[strspn(p, "/")] != '\0')
			goto bad;
		return 0;
	}
	if (strncasecmp(p, want, strlen(want)) != 0)
		goto bad;
	seg = p + strlen(want);
	nlen = strcspn(seg, "/");
	p = seg + nlen + (seg[nlen] == '/');
	if (c->id == ID_DELETED && *p != '\0')
		goto bad;
	return set_name(a, seg, nlen, p, strcspn(p, "/"));
bad:
	cli_fail_line("--id: want %s",
	    c->id == ID_VAULT       ? "the vault URL" :
	        c->id == ID_DELETED ? "https://HOST/deletedkeys/NAME" :
	                              "https://HOST/keys/NAME[/VERSION]");
	return VLT_ERR_BAD_PARAM;
}

static API_WUR int
resolve(const struct key_cmd *c, cli_session_t *s, struct key_args *a)
{
	const char *n = a->val[F_NAME], *v = a->val[F_VERSION];
	int rc;

	if (a->given[F_ID]) {
		if ((rc = from_id(c, s, a)) != 0)
			return rc;
		if (v != NULL && a->version[0] == '\0')
			return set_name(a, a->name, strlen(a->name), v,
			    strlen(v));
		return 0;
	}
	if ((rc = cli_vault_url(s, a->val[F_VAULT], a->base,
	         sizeof(a->base))) != 0)
		return rc;
	return set_name(a, n ? n : "", n ? strlen(n) : 0, v ? v : "",
	    v ? strlen(v) : 0);
}

/* The sub-command argv names ("rotation-policy show" is two words):
 * *first is where its flags start. */
static const struct key_cmd *
find_cmd(int argc, char **argv, int *first)
{
	char two[64];
	size_t i;

	if (argc >= 3 &&
	    str_fmt(two, sizeof(two), "%s %s", argv[1], argv[2]) == 0)
		for (i = 0; i < NKEY_CMDS; i++)
			if (strcmp(two, key_cmds[i].sub) == 0) {
				*first = 3;
				return &key_cmds[i];
			}
	for (i = 0; i < NKEY_CMDS; i++)
		if (strcmp(argv[1], key_cmds[i].sub) == 0) {
			*first = 2;
			return &key_cmds[i];
		}
	return NULL;
}

int
cli_key(int argc, char **argv)
{
	const struct key_cmd *c;
	struct key_args *a = calloc(1, sizeof(*a));
	cli_session_t *s = NULL;
	int first = 2, rc = 2;

	if (a == NULL) {
		cli_fail_line("out of memory");
		return 1;
	}
	if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		key_usage(argc < 2 ? stderr : stdout);
		rc = argc < 2 ? 2 : 0;
		goto out;
	}
	if ((c = find_cmd(argc, argv, &first)) == NULL) {
		usage_error(NULL,
		    "'%.64s' is not a key subcommand (see "
		    "'p11vault key --help')",
		    argv[1]);
		goto out;
	}
	if ((rc = parse_args(c, argc, argv, first, a)) != 0) {
		rc = rc > 0 ? 0 : 2;
		goto out;
	}
	if ((rc = cli_session_open(&a->where, &s)) == 0 &&
	    (rc = resolve(c, s, a)) == 0)
		rc = c->fn(s, a);
	rc = cli_exit_status(rc);
out:
	cli_session_close(s);
	free(a);
	return rc;
}
