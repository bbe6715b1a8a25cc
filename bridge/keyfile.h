/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The deployment's secret key (32 bytes) that seals secrets at rest. */
#ifndef IDB_KEYFILE_H
#define IDB_KEYFILE_H

#include "err.h"

#define IDB_SECRET_KEY_BYTES 32

/* Reads the key at path; when the file does not exist, creates it (and its
 * directory) with mode 0600 and fresh random bytes. IDB_EINVAL when the file
 * exists but is not exactly 32 bytes, or is readable by others. */
int idb_keyfile_load(const char *path, unsigned char out[IDB_SECRET_KEY_BYTES], idb_err *err);

/* Seals a secret at rest (libsodium crypto_secretbox, random nonce) with the
 * deployment key: *out (malloc'd, caller frees) is "v1:" + base64 of
 * nonce || ciphertext. */
int idb_secret_seal(char **out, const unsigned char key[IDB_SECRET_KEY_BYTES], const char *plaintext, idb_err *err);
/* Opens what idb_secret_seal made: *out is malloc'd (the caller wipes and
 * frees it). IDB_EINVAL when it is malformed or was sealed with another key. */
int idb_secret_open(char **out, const unsigned char key[IDB_SECRET_KEY_BYTES], const char *sealed, idb_err *err);

/* mkdir -p of the directory part of path (mode 0700 for new ones). */
int idb_mkdir_parent(const char *path, idb_err *err);

#endif
