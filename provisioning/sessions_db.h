/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Session rows in PostgreSQL (the source of truth; the bridge caches them in
 * Redis). Sessions are keyed by the SHA-256 hex of the cookie value. */
#ifndef IDB_SESSIONS_DB_H
#define IDB_SESSIONS_DB_H

#include <stdint.h>

#include "err.h"
#include "store.h"

typedef struct idb_session_row {
	char id_hash[65];
	char user_id[37];
	char org_id[37];
	char csrf_token[64];
	char auth_method[12];
	char connection_id[37];   /* "" when none */
	int64_t created_at;       /* epoch seconds */
	int64_t last_seen_at;
	int64_t expires_at;       /* absolute end */
} idb_session_row;

typedef struct idb_session_idp {
	const char *connection_id; /* all NULL for password sessions */
	const char *subject;
	const char *session_index;
	const char *sid;
	const char *session_dump;
} idb_session_idp;

int idb_sessions_insert(idb_db *db, const idb_session_row *row, const idb_session_idp *idp, const char *ip,
			const char *user_agent, idb_err *err);
/* Reads a live session: IDB_ENOTFOUND when absent, past expires_at or idle
 * for longer than idle_timeout_s (such a row is deleted). */
int idb_sessions_get(idb_db *db, const char *id_hash, long long idle_timeout_s, idb_session_row *out, idb_err *err);
/* Sets last_seen_at = now(). */
int idb_sessions_touch(idb_db *db, const char *id_hash, idb_err *err);
int idb_sessions_delete(idb_db *db, const char *id_hash, idb_err *err);
/* Deletes every session of user_id; *hashes gets a malloc'd array of the
 * deleted id hashes (65 bytes each) so the caller can drop them from caches. */
int idb_sessions_delete_user(idb_db *db, const char *user_id, char (**hashes)[65], int *n, idb_err *err);
/* Deletes the sessions of an IdP subject on a connection (SAML NameID / OIDC
 * sub; session_index or sid narrows when not NULL), like
 * idb_sessions_delete_user. *user_ids gets the distinct users (37 bytes
 * each) so their caches can be dropped. */
int idb_sessions_delete_idp(idb_db *db, const char *connection_id, const char *subject, const char *session_index,
			    const char *sid, char (**hashes)[65], int *n, idb_err *err);
/* The IdP fields of a session: subject, session index and lasso session dump
 * (each malloc'd, NULL when absent). */
int idb_sessions_idp_info(idb_db *db, const char *id_hash, char **subject, char **session_index, char **dump,
			  idb_err *err);

/* The lasso session dump of one live session of an IdP subject on a
 * connection (malloc'd, NULL when none), for answering a LogoutRequest. */
int idb_sessions_idp_dump(idb_db *db, const char *connection_id, const char *subject, char **dump, idb_err *err);

/* Removes expired rows; *removed = count. */
int idb_sessions_purge(idb_db *db, long long idle_timeout_s, long *removed, idb_err *err);

#endif
