/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* API keys through the admin API: list a user's keys (metadata only, never
 * the hash), create one (the key is returned once), revoke one. Scopes are
 * "events.write" and the ten permission names. */
#ifndef IDB_APIKEYS_ADMIN_H
#define IDB_APIKEYS_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "admin.h"
#include "apikeys.h"

/* {items: [key…]} newest first. IDB_ENOTFOUND for a user not in org_id. */
int idb_apikeys_list(idb_db *db, const char *org_id, const char *user_id, json_t **out, idb_err *err);

typedef struct idb_apikey_input {
	const char *name;
	const char *const *scopes;
	size_t nscopes;
	const char *expires_at; /* RFC 3339 in the future, or NULL */
} idb_apikey_input;

/* Creates a key for user_id (in its own transaction, audited). out_key gets
 * the key text; *out its metadata. IDB_EINVAL with field name, scopes or
 * expires_at; IDB_ECONFLICT for a deleted user. */
int idb_apikeys_create(idb_db *db, const idb_actor *a, const char *user_id, const idb_apikey_input *in,
		       char out_key[IDB_APIKEY_MAX], json_t **out, idb_err *err);
/* Sets revoked_at (idempotent) and adds the key's hash to fx. */
int idb_apikeys_revoke(idb_db *db, const idb_actor *a, const char *key_id, idb_effects *fx, json_t **out,
		       idb_err *err);

#endif
