/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* API keys: "idb_" + 43 base64url characters (256 bits), shown once, stored
 * as SHA-256 hex; optional expiry and scopes. */
#ifndef IDB_APIKEYS_H
#define IDB_APIKEYS_H

#include <stdint.h>

#include "err.h"
#include "store.h"

#define IDB_APIKEY_MAX 64

typedef struct idb_apikey_info {
	char key_id[37];
	char user_id[37];
	char org_id[37];
	char scopes[256]; /* comma-separated */
	int64_t expires_at; /* 0: never */
} idb_apikey_info;

/* Creates a key for user_id. out_key (IDB_APIKEY_MAX bytes) receives the key,
 * the only time it exists in clear; out_id[37] its id. scopes: NULL or a
 * comma-separated list; expires_at 0 = never. */
int idb_apikey_create(idb_db *db, const char *org_id, const char *user_id, const char *name, const char *scopes,
		      int64_t expires_at, char out_key[IDB_APIKEY_MAX], char out_id[37], idb_err *err);
/* Resolves an active key by the SHA-256 hex of its text. IDB_ENOTFOUND for an
 * unknown, revoked, disabled or expired key. */
int idb_apikey_resolve(idb_db *db, const char *key_hash, idb_apikey_info *out, idb_err *err);
/* Records use (last_used_at), at most once a minute per key. */
int idb_apikey_touch(idb_db *db, const char *key_id, idb_err *err);

#endif
