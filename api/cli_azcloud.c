/*
 * cli_azcloud.c — `p11vault az-cloud --data DIR [--name CLOUD]`: the POSIX
 * shell lines that point Azure CLI at the appliance and sign in as its
 * administrator, for `eval "$(p11vault az-cloud --data DIR)"`.
 *
 * Owns: what az's cloud is made of here (its endpoints and resource ids,
 * the keyvault DNS suffix), and the quoting of every value for sh.
 *
 * Must never: print the admin secret (the login line reads it from
 * DIR/admin.json when the shell runs it), print an unquoted value.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/cli.h"
#include "api/cli_session.h"
#include "hsm/base.h"
#include "vault/config.h"

#define AZC_FILE_MAX (64 * 1024)
#define AZC_URL_MAX 1024

struct azc {
	char dir[PATH_MAX];     /* the data directory, absolute */
	char base[AZC_URL_MAX]; /* the default vault's URL, no trailing / */
	char host[256];
	char port[16];    /* ":8443", or "" */
	char suffix[300]; /* keyvault DNS suffix, or "" */
	const char *name;
	json_t *admin;
	struct vlt_conf *conf;
};

/* s as one sh word: '...' with each ' as '\''. */
static void
shq(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputs("'\\''", f);
		else
			fputc(*s, f);
	}
	fputc('\'', f);
}

static const char *
admin_field(const struct azc *a, const char *k)
{
	const char *s = json_string_value(json_object_get(a->admin, k));

	return s != NULL && s[0] != '\0' ? s : NULL;
}

/* host and ":port" of https://HOST[:PORT][/...]; 0 or -1. */
static int
split_url(struct azc *a)
{
	const char *p = a->base + 8, *colon;
	size_t n = strcspn(p, "/?#");

	if (strncmp(a->base, "https://", 8) != 0 || p[0] == '[' || n == 0)
		return -1;
	colon = memchr(p, ':', n);
	if (colon == NULL)
		colon = p + n;
	if ((size_t)(colon - p) >= sizeof(a->host) ||
	    str_fmt(a->port, sizeof(a->port), "%.*s", (int)(p + n - colon),
	        colon) != 0)
		return -1;
	memcpy(a->host, p, (size_t)(colon - p));
	a->host[colon - p] = '\0';
	return 0;
}

/* ".<vault_domain>:port" when the appliance has a vault domain; else the
 * default vault's host without its first label (its name), when it is a
 * DNS name; else "" (az's --vault-name then has nothing to go by). */
static void
keyvault_suffix(struct azc *a)
{
	const char *dom = conf_get(a->conf, "vault_domain");
	const char *dot = strchr(a->host, '.');
	size_t i;
	int numeric = 1;

	for (i = 0; a->host[i] != '\0'; i++)
		if (!(a->host[i] == '.' ||
		        (a->host[i] >= '0' && a->host[i] <= '9')))
			numeric = 0;
	if ((dom != NULL &&
	        str_fmt(a->suffix, sizeof(a->suffix), ".%s%s", dom, a->port) !=
	            0) ||
	    (dom == NULL && dot != NULL && !numeric && dot[1] != '\0' &&
	        str_fmt(a->suffix, sizeof(a->suffix), "%s%s", dot, a->port) !=
	            0))
		a->suffix[0] = '\0'; /* too long: no suffix */
}

static API_WUR int
azc_load(struct azc *a, const char *dir)
{
	char path[PATH_MAX + 32];
	const char *url;
	buf_t *file = NULL;
	size_t len;
	int rc = VLT_ERR_BAD_PARAM;

	if (realpath(dir, a->dir) == NULL) {
		cli_fail_line("cannot find %s: %s", dir, strerror(errno));
		return VLT_ERR_IO;
	}
	if (fs_join(path, sizeof(path), a->dir, "p11vault.conf") != 0 ||
	    conf_read(path, &a->conf) != 0) {
		cli_fail_line("%s holds no readable p11vault.conf", a->dir);
		return VLT_ERR_IO;
	}
	if (fs_join(path, sizeof(path), a->dir, "admin.json") != 0 ||
	    file_read(path, AZC_FILE_MAX, &file) != 0 ||
	    (a->admin = json_loadb(buf_str(file), buf_len(file), 0, NULL)) ==
	        NULL) {
		cli_fail_line("cannot read the admin credential %s", path);
		rc = VLT_ERR_IO;
		goto out;
	}
	url = conf_get(a->conf, "vault_url");
	if (url == NULL || admin_field(a, "clientId") == NULL ||
	    admin_field(a, "tenantId") == NULL ||
	    str_fmt(a->base, sizeof(a->base), "%s", url) != 0) {
		cli_fail_line(
		    "%s lacks vault_url, or admin.json its clientId "
		    "or tenantId",
		    a->dir);
		goto out;
	}
	len = strlen(a->base);
	while (len > 0 && a->base[len - 1] == '/')
		a->base[--len] = '\0';
	if (split_url(a) != 0) {
		cli_fail_line("the vault_url is not https://HOST[:PORT]");
		goto out;
	}
	keyvault_suffix(a);
	rc = 0;
out:
	buf_free(file);
	return rc;
}

/* az cloud register's --cloud-config (2.45 has no flag for Graph's
 * endpoint, and --cloud-config replaces every flag). */
static json_t *
cloud_config(const struct azc *a)
{
	char arm[AZC_URL_MAX + 8], ad[AZC_URL_MAX + 8], graph[AZC_URL_MAX + 8];
	json_t *c;

	if (str_fmt(arm, sizeof(arm), "%s/", a->base) != 0 ||
	    str_fmt(ad, sizeof(ad), "%s/adfs", a->base) != 0 ||
	    str_fmt(graph, sizeof(graph), "%s/graph/", a->base) != 0)
		return NULL;
	c = json_pack("{s:{s:s, s:s, s:s, s:s, s:s, s:s}, s:{}}", "endpoints",
	    "resourceManager", arm, "activeDirectory", ad,
	    "activeDirectoryResourceId", API_ARM_AUDIENCE, "management",
	    API_ARM_AUDIENCE, "activeDirectoryGraphResourceId", graph,
	    "microsoftGraphResourceId", graph, "suffixes");
	if (c != NULL && a->suffix[0] != '\0' &&
	    json_object_set_new(json_object_get(c, "suffixes"), "keyvaultDns",
	        json_string(a->suffix)) != 0) {
		json_decref(c);
		c = NULL;
	}
	return c;
}

static API_WUR int
azc_print(const struct azc *a)
{
	json_t *cfg = cloud_config(a);
	char *text = cfg ? json_dumps(cfg, JSON_COMPACT) : NULL;
	char ca[PATH_MAX + 16], adm[PATH_MAX + 16];
	const char *res = conf_get(a->conf, "resource");
	const char *dom = conf_get(a->conf, "vault_domain");
	char dres[300];
	int i;

	json_decref(cfg);
	/* the data plane's audience (vaults-design.md: with a vault domain,
	 * https://<vault_domain>) */
	if (res == NULL && dom != NULL &&
	    str_fmt(dres, sizeof(dres), "https://%s", dom) == 0)
		res = dres;
	if (text == NULL ||
	    fs_join(ca, sizeof(ca), a->dir, "tls/ca.pem") != 0 ||
	    fs_join(adm, sizeof(adm), a->dir, "admin.json") != 0) {
		freezero_block(text);
		cli_fail_line("out of memory");
		return VLT_ERR_NO_MEMORY;
	}
	printf("# Azure CLI -> the p11vault appliance at %s (cloud %s)\n",
	    a->base, a->name);
	printf("# vault token resource: %s; keyvault DNS suffix: %s\n",
	    res != NULL ? res : CLI_DEFAULT_RESOURCE,
	    a->suffix[0] != '\0' ? a->suffix : "(none: an IP address)");
	fputs("export REQUESTS_CA_BUNDLE=", stdout);
	shq(stdout, ca);
	fputs("\n", stdout);
	for (i = 0; i < 2; i++) {
		fputs(i == 0 ? "az cloud register -n " :
		               " || az cloud update -n ",
		    stdout);
		shq(stdout, a->name);
		fputs(" --cloud-config ", stdout);
		shq(stdout, text);
		fputs(i == 0 ? " >/dev/null 2>&1" : " >/dev/null\n", stdout);
	}
	fputs("az cloud set -n ", stdout);
	shq(stdout, a->name);
	fputs("\naz login --service-principal -u ", stdout);
	shq(stdout, admin_field(a, "clientId"));
	fputs(" --tenant ", stdout);
	shq(stdout, admin_field(a, "tenantId"));
	/* --password=: a secret may begin with '-', which az's argparse
	 * would take for an option after a separate -p (1 in 64 secrets) */
	fputs(
	    " --password=\"$(python3 -c 'import json,sys; "
	    "print(json.load(open(sys.argv[1]))[\"clientSecret\"])' ",
	    stdout);
	shq(stdout, adm);
	fputs(")\" --output none\n", stdout);
	freezero_block(text);
	if (fflush(stdout) != 0) {
		cli_fail_line("cannot write to stdout: %s", strerror(errno));
		return VLT_ERR_IO;
	}
	return 0;
}

static void
azc_help(void)
{
	puts(
	    "usage: p11vault az-cloud --data DIR [--name CLOUD (p11vault)]\n"
	    "Prints POSIX shell lines that register the appliance as an "
	    "Azure CLI cloud,\n"
	    "select it and sign in as the administrator (admin.json's "
	    "credential, read\n"
	    "from the file when the lines run; the secret is not printed):\n"
	    "  eval \"$(p11vault az-cloud --data DIR)\"\n"
	    "The appliance's host names must resolve where az runs (see "
	    "docs/azure-cli.md).");
}

int
cli_az_cloud(int argc, char **argv)
{
	struct azc a;
	const char *dir = NULL;
	int i, rc;

	memset(&a, 0, sizeof(a));
	a.name = "p11vault";
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			azc_help();
			return 0;
		}
		if (i + 1 < argc && strcmp(argv[i], "--data") == 0)
			dir = argv[++i];
		else if (i + 1 < argc && strcmp(argv[i], "--name") == 0)
			a.name = argv[++i];
		else {
			cli_fail_line("unknown argument '%s' (see --help)",
			    argv[i]);
			return 2;
		}
	}
	if (dir == NULL || a.name[0] == '\0') {
		cli_fail_line(
		    "az-cloud needs --data DIR (and a non-empty "
		    "--name)");
		return 2;
	}
	rc = azc_load(&a, dir);
	if (rc == 0)
		rc = azc_print(&a);
	json_decref(a.admin); /* freezero_block clears the secret */
	conf_free(a.conf);
	return cli_exit_status(rc);
}
