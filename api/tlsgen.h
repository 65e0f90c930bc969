/*
 * api/tlsgen.h — the vault's TLS material (tlsgen.c), made once by init.
 *
 * Must never: overwrite an existing file, write a private key with a
 * looser mode than 0600, or print key material.
 */
#ifndef P11VAULT_API_TLSGEN_H
#define P11VAULT_API_TLSGEN_H

#include <stddef.h>

#include "api/api.h"

/*
 * Creates tls_dir (0700) with ca.pem, server.pem, server-key.pem (0600)
 * and, when it generates the CA itself, ca-key.pem (0600). The server
 * certificate (EC P-256, 825 days) covers localhost, 127.0.0.1 and host
 * (a DNS name or an IP address) as subjectAltNames. When ca_cert and
 * ca_key are given (PEM files), the server certificate is signed by that
 * CA and ca.pem is a copy of ca_cert; else a new CA (EC P-256, 10 years)
 * is made. 0 on success, -1 with a one-line reason in err.
 */
int tlsgen_create(const char *tls_dir, const char *host, const char *ca_cert,
    const char *ca_key, char *err, size_t err_len) API_WUR;
/* The same, the certificate also covering domain and *.domain (the
 * appliance's vaults, NAME.domain); domain NULL: none. */
int tlsgen_create_domain(const char *tls_dir, const char *host,
    const char *domain, const char *ca_cert, const char *ca_key, char *err,
    size_t err_len) API_WUR;

#endif
