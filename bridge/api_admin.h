/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Helpers shared by the admin REST handlers (api_users.c, api_groups.c,
 * api_audit.c): the acting principal, JSON input checks, running one domain
 * call on a leased connection and applying its cache effects. */
#ifndef IDB_API_ADMIN_H
#define IDB_API_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "admin.h"
#include "app.h"
#include "http.h"

/* The authenticated caller as an actor (pointers borrowed from req). */
void idb_api_actor(idb_req *req, idb_actor *out);

/* Drops the cache entries fx lists (permission sets, sessions, API keys) and
 * clears fx. Safe to call after a failed call too: dropping is harmless. */
void idb_api_apply_effects(idb_app *app, idb_effects *fx);

/* Optional string member: 0 with *out NULL when absent or null; -1 after
 * queueing a 400 naming the field when it is not a string. */
int idb_api_opt_string(idb_req *req, json_t *body, const char *field, const char **out);
/* Optional array of strings (at most max): *out is a malloc'd array of
 * borrowed pointers (free it; NULL when absent), *present tells whether the
 * member was there. -1 after queueing a 400 naming the field. */
int idb_api_opt_strings(idb_req *req, json_t *body, const char *field, size_t max, const char ***out, size_t *n,
			bool *present);

/* One domain call: ctx is the handler's, fx collects cache work. */
typedef int (*idb_api_call)(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err);
/* Leases a connection, runs fn, releases, applies effects, answers: status
 * with *out as JSON on success (204: no body), the problem for err
 * otherwise. */
int idb_api_run(idb_req *req, unsigned status, idb_api_call fn, void *ctx);

#endif
