/*
 * api/authz.h — who is calling, and may they: the bearer token check
 * (401 with the challenge), the key-permission and administrator checks
 * (403), and giving policy/ the token verify key once the vault has it.
 *
 * Included by api/api.h (after the request structures); every function
 * here answers the request itself when it refuses, so a handler only
 * returns on a negative result.
 */
#ifndef P11VAULT_API_AUTHZ_H
#define P11VAULT_API_AUTHZ_H

struct api_ctx;
struct api_req;
struct api_resp;

#define AUTHZ_WUR __attribute__((warn_unused_result))

/* Gives policy the token's JWT public key if it lacks it (the vault was
 * sealed when serve started). 0 once it has it, else the vault's error. */
int api_verify_key_refresh(struct api_ctx *c) API_WUR;

/* The bearer token of q, checked for audience (the data plane's, the
 * management API's, Graph's), without answering: 0 (q->caller filled),
 * VLT_ERR_NOT_FOUND (no bearer token), VLT_ERR_UNAUTHORIZED (invalid, or
 * for another audience), VLT_ERR_SEALED. */
int api_bearer_check(struct api_req *q, const char *audience) AUTHZ_WUR;
/* 0 if the caller's token is valid (fills q->caller); else r holds the
 * answer (401 and the challenge, or 503 sealed) and the result is
 * VLT_ERR_UNAUTHORIZED or VLT_ERR_SEALED. */
int api_authn(struct api_req *q, struct api_resp *r) AUTHZ_WUR;
/* 0 if the authenticated caller holds one key permission; else r holds
 * the answer (403, or api_authn's) and the result is negative. */
int api_authz(struct api_req *q, struct api_resp *r, unsigned perm,
    const char *perm_name) AUTHZ_WUR;
/* The same for "is an administrator". */
int api_authz_admin(struct api_req *q, struct api_resp *r) AUTHZ_WUR;

#endif
