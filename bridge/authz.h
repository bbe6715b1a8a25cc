/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Effective permission sets ("principals"), cached in Redis as perm:<user id>
 * for cache.permission_ttl_s and deleted the moment anything about the user
 * changes. */
#ifndef IDB_AUTHZ_H
#define IDB_AUTHZ_H

#include "app.h"
#include <stddef.h>

#include "principal.h"

/* Loads the principal of user_id from the cache or PostgreSQL; the caller
 * clears it with idb_principal_clear. */
int idb_authz_load(idb_app *app, const char *user_id, idb_principal *out, idb_err *err);
/* Drops the cached permission set of user_id. */
void idb_authz_invalidate(idb_app *app, const char *user_id);
/* Same for n users, in batched DELs (group changes touch every member). */
void idb_authz_invalidate_many(idb_app *app, const char (*user_ids)[37], size_t n);

#endif
