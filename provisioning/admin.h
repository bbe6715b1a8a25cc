/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* What the admin modules (admin_users, groups, invitations, API keys, audit
 * queries) share: who is acting, the cache work left for the bridge after a
 * commit, audit records, list cursors, timestamps, ids and the password rule.
 *
 * API objects (users, groups, keys, audit entries) cross into the bridge as
 * jansson values: jansson is the project's JSON type (http.h takes and gives
 * json_t too), so no parallel C structs are kept for shapes that only exist
 * to be serialised. Each json_t returned through `json_t **out` is the
 * caller's (json_decref). */
#ifndef IDB_ADMIN_H
#define IDB_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "store.h"

/* The caller of an admin operation. All pointers are borrowed for the call.
 * org_id is required: every query is scoped to it, and an id from another
 * organisation is reported as IDB_ENOTFOUND. */
typedef struct idb_actor {
	const char *org_id;
	const char *user_id; /* NULL: the system / CLI */
	const char *email;
	const char *name;
	const char *ip;
	const char *request_id;
} idb_actor;

/* Cache entries the bridge must drop once the transaction has committed:
 * permission sets of users, sessions (rows already deleted) and API keys
 * (rows already revoked or disabled). Zero-initialise; release the arrays
 * with idb_effects_clear. */
typedef struct idb_effects {
	char (*users)[37];
	size_t nusers, capusers;
	char (*sessions)[65];
	size_t nsessions, capsessions;
	char (*keys)[65];
	size_t nkeys, capkeys;
} idb_effects;

/* Append one entry (duplicates of users are skipped). IDB_EINTERNAL on OOM. */
int idb_effects_user(idb_effects *fx, const char *user_id, idb_err *err);
int idb_effects_session(idb_effects *fx, const char *id_hash, idb_err *err);
int idb_effects_key(idb_effects *fx, const char *key_hash, idb_err *err);
/* Frees the arrays and zeroes fx; NULL is a no-op. */
void idb_effects_clear(idb_effects *fx);

/* Deletes every session row of user_id inside the caller's transaction,
 * adding the id hashes to fx so their cache entries can be dropped. */
int idb_admin_end_sessions(idb_db *db, const char *user_id, idb_effects *fx, idb_err *err);

/* Appends an audit_log row for the actor (in the caller's transaction). */
int idb_audit_write(idb_db *db, const idb_actor *a, const char *action, const char *target_type,
		    const char *target_id, const char *before_json, const char *after_json, idb_err *err);

/* 8-4-4-4-12 hex UUID text. */
bool idb_uuid_valid(const char *s);

/* RFC 3339 date-time ("2024-05-01T12:00:00Z", fraction and ±hh:mm offset
 * allowed, 't'/' ' accepted for 'T') or a plain date (midnight UTC) into
 * epoch seconds. false when malformed. */
bool idb_rfc3339_parse(const char *s, int64_t *out);
/* "YYYY-MM-DD HH:MM UTC" for people (mail texts). */
void idb_time_human(int64_t t, char out[32]);

/* Opaque list cursors: base64url (no padding) of a JSON array of n strings.
 * encode returns a malloc'd string (NULL on OOM); decode fills parts[i] (each
 * partsz bytes) and returns false for anything malformed. */
char *idb_cursor_encode(const char *const *parts, size_t n);
bool idb_cursor_decode(const char *cursor, char (*parts)[256], size_t n);

/* Page size from a query string value: NULL -> def; otherwise 1..max, else
 * IDB_EINVAL with field "limit". */
int idb_limit_parse(const char *s, int def, int max, int *out, idb_err *err);

/* The password rule for passwords users choose: at least min_len characters
 * (at most 1024), not all from one character class (lower, upper, digits,
 * other) and not the e-mail address. IDB_EINVAL with field "password" and a
 * message that says what to do. */
int idb_password_check(const char *password, const char *email, long long min_len, idb_err *err);

/* Parses JSON text returned by PostgreSQL (json/jsonb columns). NULL on
 * failure (logged). New reference. */
json_t *idb_json_from_db(const char *text);

/* Runs sql (one row expected; first column JSON text) into *out.
 * IDB_ENOTFOUND "<what> not found" when there is no row. */
int idb_db_json_one(idb_db *db, const char *sql, int nparams, const char *const *params, const char *what,
		    json_t **out, idb_err *err);
/* Runs a page query whose rows are (json, cursor key 1, cursor key 2), with
 * LIMIT limit + 1, into {items: [...], next_cursor: "…" | null}. adhoc: the
 * SQL was assembled at run time (idb_db_query_adhoc). */
int idb_db_json_page(idb_db *db, bool adhoc, const char *sql, int nparams, const char *const *params, int limit,
		     json_t **out, idb_err *err);

/* Escapes text for HTML element content and attribute values into a new
 * malloc'd string (NULL on OOM). */
char *idb_html_escape(const char *s);

/* Display name of an organisation (borrowed out buffer). */
int idb_org_name(idb_db *db, const char *org_id, char out[201], idb_err *err);

#endif
