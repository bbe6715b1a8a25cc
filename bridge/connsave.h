/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Creating and updating IdP connections, shared by the REST API and
 * `idbridgectl connection apply`: validation (provisioning), protocol checks
 * (SAML metadata fetched and loaded into lasso), storage and audit in one
 * transaction. */
#ifndef IDB_CONNSAVE_H
#define IDB_CONNSAVE_H

#include <jansson.h>

#include "config.h"
#include "err.h"
#include "store.h"

typedef struct idb_actor {
	const char *user_id; /* NULL for the CLI */
	const char *email;
	const char *ip;
	const char *request_id;
} idb_actor;

/* Creates (existing_id NULL) or updates a connection of org_id from the API
 * object in. Field errors go to errors ([{field, message}]) with IDB_EINVAL.
 * IDB_EEXISTS for a taken slug or domain. out_id[37] gets the id. */
struct idb_presets;
int idb_connsave(idb_db *db, const idb_config *cfg, const struct idb_presets *presets, const char *org_id,
		 const char *existing_id, const json_t *in, const idb_actor *actor, json_t *errors, char out_id[37],
		 idb_err *err);

/* The API view of a stored connection (with SP URLs and metadata status). */
json_t *idb_connsave_view(const idb_config *cfg, const void *conn /* idb_connection */);

#endif
