/*
 * api/cli_session.h — what every administrator command shares
 * (cli_session.c): finding the vault, the admin credential, the bearer
 * token, one authenticated management call, and the one way the command
 * line reports a failure.
 *
 * Results are 0 or a negative VLT_ERR_*, the reason already printed (one
 * line on stderr); cli_exit_status turns one into the process exit status.
 * Must never: print the admin secret or a token, keep either after
 * cli_session_close, or talk to the vault without TLS verification.
 */
#ifndef P11VAULT_API_CLI_SESSION_H
#define P11VAULT_API_CLI_SESSION_H

#include <jansson.h>

#include "api/api.h"

#define CLI_DEFAULT_RESOURCE "https://vault.azure.net"
#define CLI_DEFAULT_VAULT "default"

/* Where the vault is: --data DIR (DIR/admin.json, DIR/tls/ca.pem,
 * resource= in DIR/p11vault.conf), or vault_url + admin [+ ca]. */
struct cli_where {
	const char *data;
	const char *vault_url;
	const char *admin; /* an admin.json file */
	/* NULL: DIR/tls/ca.pem, or the system
	 * trust store */
	const char *ca;
	/* NULL: $P11VAULT_RESOURCE, the conf,
	 * CLI_DEFAULT_RESOURCE */
	const char *resource;
};

typedef struct cli_session cli_session_t;

/* "p11vault: <text>" on stderr. */
void cli_fail_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same, then exit(1). */
void cli_die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
/* 0 -> 0; VLT_ERR_BAD_PARAM (a usage error) -> 2; any other error -> 1. */
int cli_exit_status(int rc);
/* v as indented JSON on stdout: 0, or VLT_ERR_IO after the line. */
int cli_print_json(const json_t *v) API_WUR;

/* Loads the admin credential and gets a token from the vault's token
 * endpoint. VLT_ERR_BAD_PARAM when w names no usable vault. */
int cli_session_open(const struct cli_where *w, cli_session_t **out) API_WUR;
void cli_session_close(cli_session_t *s);
/* The admin credential's tenant. */
const char *cli_session_tenant(const cli_session_t *s);
/* One management call (path without the api-version query) with the
 * bearer token. On 2xx: *out gets the parsed body (NULL when empty), or,
 * out being NULL, the body is printed. Else the error line, VLT_ERR_IO. */
int cli_session_call(cli_session_t *s, const char *method, const char *path,
    const json_t *body, json_t **out) API_WUR;

/* The same at base, a vault URL of this appliance (refused otherwise: the
 * token goes nowhere else); path may carry a query. */
int cli_session_call_at(cli_session_t *s, const char *base, const char *method,
    const char *path, const json_t *body, json_t **out) API_WUR;

/* The default vault's URL (no trailing slash). */
const char *cli_session_vault_url(const cli_session_t *s);
/* The URL of the vault called name (NULL: the default vault) into out:
 * the default vault is CLI_DEFAULT_VAULT, its config vault_name or the
 * first label of its URL's host; any other valid name, on an appliance
 * with a vault domain (config vault_domain, or the host of its token
 * audience), is https://NAME.<vault_domain>[:port of the default URL]
 * (whether it exists, the appliance answers). Else VLT_ERR_NOT_FOUND
 * after its line. */
int cli_vault_url(const cli_session_t *s, const char *name, char *out,
    size_t cap) API_WUR;
/* 0 when url (trailing slashes aside) is a vault URL of this appliance:
 * the default vault's, or https://NAME.<vault_domain>[:port]. */
int cli_vault_url_check(const cli_session_t *s, const char *url) API_WUR;

#endif
