/*
 * api/cli_key.h — `p11vault key …`, shaped like `az keyvault key …`
 * (the sub-commands, flags and JSON output of Azure CLI), as a client of
 * the vault's keys REST API with the admin credential.
 *
 *   cli_key.c       argument parsing, help, which vault and key, dispatch
 *   cli_key_cmds.c  one function per sub-command (one REST call each)
 *   cli_key_out.c   az's output shapes; base64 and time conversions
 *   cli_key_pem.c   PEM private key -> JWK (import), JWK -> PEM/DER
 *                   public key (download), files
 *
 * Must never: print or keep a private key part or a plaintext longer
 * than needed (wiped: ours with freezero, Jansson's by the process-wide
 * wiping allocator); send the token to a host that is not a vault of this
 * appliance (cli_session_call_at checks).
 */
#ifndef P11VAULT_API_CLI_KEY_H
#define P11VAULT_API_CLI_KEY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "api/api.h"
#include "api/cli_session.h"

#define KEY_MULTI_MAX 32

/* The values a command line gave, by field. */
enum key_field {
	F_NAME,
	F_VAULT,
	F_ID,
	F_VERSION,
	F_KTY,
	F_SIZE,
	F_CURVE,
	F_PROTECTION,
	F_PEM_FILE,
	F_PEM_STRING,
	F_PEM_PASSWORD,
	F_BYOK_FILE,
	F_BYOK_STRING,
	F_FILE,
	F_ENCODING,
	F_ENABLED,
	F_DISABLED,
	F_NOT_BEFORE,
	F_EXPIRES,
	F_ALGORITHM,
	F_VALUE,
	F_DATA_TYPE,
	F_DIGEST,
	F_SIGNATURE,
	F_MAXRESULTS,
	F_INCLUDE_MANAGED,
	F_OPS,  /* nargs '*': multi[] */
	F_TAGS, /* nargs '*': multi[] */
	F_COUNT
};

struct key_args {
	struct cli_where where;
	const char *val[F_COUNT];
	int given[F_COUNT];
	const char *multi[2][KEY_MULTI_MAX]; /* [0] --ops, [1] --tags */
	size_t nmulti[2];
	/* resolved by cli_key.c before the command runs */
	char base[2048]; /* the vault URL */
	char name[128];  /* the key name ("" when the command has none) */
	char version[64];
};

/* One sub-command: 0, or a negative VLT_ERR_* with its line printed
 * (VLT_ERR_BAD_PARAM: a usage error, exit status 2). */
typedef int (*key_fn)(cli_session_t *, const struct key_args *);

int key_create(cli_session_t *s, const struct key_args *a) API_WUR;
int key_show(cli_session_t *s, const struct key_args *a) API_WUR;
int key_list(cli_session_t *s, const struct key_args *a) API_WUR;
int key_list_versions(cli_session_t *s, const struct key_args *a) API_WUR;
int key_list_deleted(cli_session_t *s, const struct key_args *a) API_WUR;
int key_set_attributes(cli_session_t *s, const struct key_args *a) API_WUR;
int key_delete(cli_session_t *s, const struct key_args *a) API_WUR;
int key_recover(cli_session_t *s, const struct key_args *a) API_WUR;
int key_purge(cli_session_t *s, const struct key_args *a) API_WUR;
int key_rotate(cli_session_t *s, const struct key_args *a) API_WUR;
int key_backup(cli_session_t *s, const struct key_args *a) API_WUR;
int key_restore(cli_session_t *s, const struct key_args *a) API_WUR;
int key_import(cli_session_t *s, const struct key_args *a) API_WUR;
int key_download(cli_session_t *s, const struct key_args *a) API_WUR;
int key_encrypt(cli_session_t *s, const struct key_args *a) API_WUR;
int key_decrypt(cli_session_t *s, const struct key_args *a) API_WUR;
int key_sign(cli_session_t *s, const struct key_args *a) API_WUR;
int key_verify(cli_session_t *s, const struct key_args *a) API_WUR;
int key_policy_show(cli_session_t *s, const struct key_args *a) API_WUR;
int key_policy_update(cli_session_t *s, const struct key_args *a) API_WUR;

/* "p11vault key: error: …" (an az usage error): VLT_ERR_BAD_PARAM. */
int key_bad_arg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* body[member] = --ops, body.tags = --tags, body.attributes from
 * --enabled/--disabled, --not-before, --expires (those given). */
int key_put_common(json_t *body, const struct key_args *a) API_WUR;
/* "/keys/NAME[/VERSION]SUFFIX" into out. */
int key_path(const struct key_args *a, const char *suffix, char *out,
    size_t cap) API_WUR;
/* One call at a->base, the answer printed as shape(answer) (shape NULL:
 * as it came). */
int key_call_print(cli_session_t *s, const struct key_args *a,
    const char *method, const char *path, const json_t *body,
    json_t *(*shape)(const json_t *)) API_WUR;

/* ---- cli_key_out.c ---------------------------------------------------- */

/* az's shapes, from the REST bodies (NULL: out of memory or not the
 * expected body). */
json_t *key_out_bundle(const json_t *rest) API_WUR;  /* KeyVaultKey */
json_t *key_out_deleted(const json_t *rest) API_WUR; /* DeletedKeyBundle */
/* One list item (KeyItem / DeletedKeyItem, name added). */
json_t *key_out_item(const json_t *rest, int deleted) API_WUR;
json_t *key_out_policy(const json_t *rest) API_WUR; /* KeyRotationPolicy */
/* base64url (as the REST API speaks it) <-> standard base64 (as az
 * prints and reads it); NULL when s is not such text. */
json_t *key_b64_std(const char *in) API_WUR;
char *key_b64_url(const char *in) API_WUR;
/* An az datetime (Y-m-dTH:M:SZ, Y-m-dTH:MZ, Y-m-dTHZ, Y-m-d) as Unix
 * seconds. */
int key_time_parse(const char *s, int64_t *out) API_WUR;

/* ---- cli_key_pem.c ---------------------------------------------------- */

/* A PEM private key (RSA or EC; pass phrase optional, never asked for)
 * as a JWK with its private parts: *jwk, or VLT_ERR_IO after its line
 * (az: "Import failed: …", exit status 1). */
int key_pem_to_jwk(const char *pem, size_t len, const char *pass,
    json_t **jwk) API_WUR;
/* The public key of a REST JsonWebKey into file, PEM or DER. */
int key_jwk_write_public(const json_t *jwk, const char *file, int der) API_WUR;
/* A whole file (at most max bytes): *out (freezero(*out, *len)). */
int key_file_read(const char *file, size_t max, uint8_t **out,
    size_t *len) API_WUR;
/* data into file, created 0600 or truncated. */
int key_file_write(const char *file, const uint8_t *data, size_t len) API_WUR;

#endif
