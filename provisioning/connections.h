/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* IdP connections (SAML and OIDC) of an organisation: validation of the API's
 * connection object, storage, and the e-mail domains each one owns. Protocol
 * checks that need the network or lasso (metadata) are the bridge's; this
 * module stores what it is given. */
#ifndef IDB_CONNECTIONS_H
#define IDB_CONNECTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "store.h"

typedef struct idb_connection {
	char id[37];
	char org_id[37];
	char slug[64];
	char *name;
	char protocol[8]; /* "saml" | "oidc" */
	bool enabled;
	char *preset;        /* NULL when none */
	json_t *settings;    /* {"saml": {...}} or {"oidc": {...}}; owned */
	json_t *jit;         /* the "jit" object; owned */
	json_t *domains;     /* array of lowercase domains; owned */
	char *metadata_xml;  /* SAML: the IdP metadata in force; NULL when none */
	int64_t metadata_fetched_at, metadata_valid_until; /* epoch s, 0 = none */
	char *metadata_error;
	int64_t version;     /* updated_at in microseconds: changes on every write */
} idb_connection;

void idb_connection_clear(idb_connection *c);
/* Deep copy of src into dst (cleared first is not needed; dst is overwritten).
 * IDB_EINTERNAL when out of memory (dst is then cleared). */
int idb_connection_copy(idb_connection *dst, const idb_connection *src);

/* Looks a connection up by slug (deployment-wide) or by id within org_id.
 * IDB_ENOTFOUND when absent. out is cleared with idb_connection_clear. */
int idb_connection_by_slug(idb_db *db, const char *slug, idb_connection *out, idb_err *err);
int idb_connection_get(idb_db *db, const char *org_id, const char *id, idb_connection *out, idb_err *err);
/* Enabled OIDC connections with accept_bearer on whose issuer is exactly
 * issuer, oldest first, at most max; *n of out[] filled (each cleared with
 * idb_connection_clear). */
int idb_connection_bearer_candidates(idb_db *db, const char *issuer, idb_connection *out, int max, int *n,
				     idb_err *err);
/* Current version of a connection (to refresh caches cheaply). */
int idb_connection_version(idb_db *db, const char *id, int64_t *out, idb_err *err);
/* All connections of org_id as a JSON array of ids (new reference). */
int idb_connection_list_ids(idb_db *db, const char *org_id, json_t **out, idb_err *err);

/* Validates an API connection object. For a create (base == NULL) the result
 * is the complete normalised object; for an update, the object merged over
 * base. Field errors are appended to errors ([{field, message}]); returns
 * IDB_EINVAL when there is any. *out (new reference) is the normalised
 * object: slug, name, protocol, enabled, preset, saml|oidc, allowed_domains,
 * jit. */
int idb_connection_validate(const json_t *in, const idb_connection *base, json_t *errors, json_t **out,
			    idb_err *err);

/* Inserts / updates from a normalised object (see validate) plus protocol data
 * the bridge derived (metadata_xml may be NULL). Domains are claimed in the
 * same statement batch: IDB_EEXISTS with field "allowed_domains" when another
 * connection owns one. Run inside the caller's transaction. */
int idb_connection_insert(idb_db *db, const char *org_id, const json_t *obj, const char *metadata_xml,
			  int64_t valid_until, char out_id[37], idb_err *err);
int idb_connection_update(idb_db *db, const char *org_id, const char *id, const json_t *obj,
			  const char *metadata_xml, int64_t valid_until, idb_err *err);
int idb_connection_delete(idb_db *db, const char *org_id, const char *id, idb_err *err);
/* Records a metadata refresh result (xml NULL: failure with error text). */
int idb_connection_set_metadata(idb_db *db, const char *id, const char *xml, int64_t valid_until,
				int64_t cache_s, const char *error, idb_err *err);
/* SAML connections whose metadata comes from a URL and is due for a refresh
 * (fetched more than refresh_s ago — or cacheDuration when shorter — or
 * within refresh_s of validUntil), as a JSON array of {id, url}. */
int idb_connection_metadata_due(idb_db *db, long long refresh_s, json_t **out, idb_err *err);

/* The enabled connection that owns an e-mail domain (home-realm discovery):
 * slug[64] and protocol[8]. IDB_ENOTFOUND when no connection claims it. */
int idb_connection_for_domain(idb_db *db, const char *domain, char slug[64], char protocol[8], idb_err *err);
/* What the IdP sent in the most recent login: *out (new reference) is
 * {"at": epoch seconds, "attributes": {...}} or null. */
int idb_connection_last_login(idb_db *db, const char *id, json_t **out, idb_err *err);

/* Stores what the IdP sent in the most recent login (JSON text). */
int idb_connection_set_last_login(idb_db *db, const char *id, const char *attrs_json, idb_err *err);

/* The API representation (new reference). */
json_t *idb_connection_to_json(const idb_connection *c);

/* Settings accessors on a loaded connection (defaults applied). */
bool idb_connection_flag(const idb_connection *c, const char *section, const char *key, bool def);
const char *idb_connection_str(const idb_connection *c, const char *section, const char *key);

#endif
