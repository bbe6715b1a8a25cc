/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The deployment's SAML SP signing/encryption key and certificate. */
#ifndef IDB_SAML_KEYS_H
#define IDB_SAML_KEYS_H

#include "err.h"

/* Reads key_file and cert_file (PEM); when both are absent, generates an RSA
 * 3072 key and a self-signed certificate (10 years, CN = cn) and writes them
 * (key 0600). *key_pem and *cert_pem are malloc'd (caller frees). Exactly one
 * of the two files missing is an error (a half-configured key pair). */
int idb_saml_keys_load(const char *key_file, const char *cert_file, const char *cn, char **key_pem, char **cert_pem,
		       idb_err *err);

/* Base64 body of a PEM certificate (no header lines, no newlines) for
 * metadata <ds:X509Certificate>; malloc'd. */
char *idb_pem_cert_body(const char *cert_pem);

/* The public key of a base64 DER certificate (whitespace allowed) as PEM
 * "PUBLIC KEY"; malloc'd, NULL when the text is not a certificate. */
char *idb_cert_b64_pubkey_pem(const char *b64);

#endif
