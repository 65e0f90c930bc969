/*
 * api/cli.h — the sub-commands main() dispatches to, besides its own init,
 * serve and audit: each returns the process exit status (0 ok, 1 failed,
 * 2 usage error; the failure already told on stderr in one line).
 *
 *   cli_admin.c   vault | identity | policy (the management REST API)
 *   cli_key*.c    key (az keyvault key's sub-commands, over the keys API)
 *   cli_byok.c    byok (a BYOK transfer blob, built locally)
 *   cli_seal.c    unseal, rekey, and init's unseal defaults
 *   cli_node.c    node (join requests, approve, join, list, remove)
 *   agent.c       identity-agent (the IMDS token protocol on loopback)
 *   cli_azcloud.c az-cloud (shell lines pointing Azure CLI here)
 */
#ifndef P11VAULT_API_CLI_H
#define P11VAULT_API_CLI_H

#include <stdio.h>

#include <jansson.h>

#include "api/api.h"

/* `p11vault vault|identity|policy ...` (argv[0] is the group). */
int cli_admin(int argc, char **argv);
/* `p11vault key SUB ...` (argv[0] is "key"), like `az keyvault key SUB`. */
int cli_key(int argc, char **argv);
/* `p11vault byok --kek-kid URL [--kek-public FILE] --key PEM --out FILE`. */
int cli_byok(int argc, char **argv);
/* `p11vault identity-agent --credential FILE [--listen 127.0.0.1:PORT]`. */
int cli_identity_agent(int argc, char **argv);
/* `p11vault az-cloud --data DIR [--name CLOUD]`. */
int cli_az_cloud(int argc, char **argv);
/* `p11vault unseal`: one operator key share to a running server. */
int cli_unseal(int argc, char **argv);
/* `p11vault rekey`: new key shares and PINs, the server stopped. */
int cli_rekey(int argc, char **argv);

/* `p11vault node approve|join|list|remove` (argv[0] is "node"). */
int cli_node(int argc, char **argv);
/* `p11vault rekey-domain --data DIR` (shares on stdin). */
int cli_rekey_domain(int argc, char **argv);
/* After `p11vault node init`: DIR/join-request.json (the transport public
 * key, its fingerprint, the node's name), printed with the new shares. */
int cli_node_request(const char *dir, const char *name, const char *shares);

/* DIR/serve.lock, exclusively (flock): held by serve for its life and by
 * rekey. 0 with the fd (close-on-exec) in *lock; VLT_ERR_CONFLICT when
 * another holds it; VLT_ERR_IO (errno kept) when it cannot be opened. */
int cli_serve_lock(const char *dir, int *lock) API_WUR;
/* init's default unattended unseal method: "systemd-creds:host" as root
 * with systemd-creds on PATH, else "none". */
const char *cli_seal_default_auto(void);
/* shares (a line each) as a JSON array of strings; NULL: out of memory. */
json_t *cli_seal_shares_json(const char *shares) API_WUR;
/* What to do with the shares and the admin credential, for people. */
void cli_seal_advice(FILE *f, unsigned m, unsigned n, const char *method);
/* --share-keys A.pem,B.pem,…: how many files it names. */
int cli_seal_count_keys(const char *list);
/* Each share (a line each, in order) RSA-OAEP-SHA-256 encrypted to its
 * custodian's public key (PEM public key or certificate), base64:
 * [{recipient, share}]; NULL with a reason in err. */
json_t *cli_seal_shares_for(const char *shares, const char *list, char *err,
    size_t err_len) API_WUR;

#endif
