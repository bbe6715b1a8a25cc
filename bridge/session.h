/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Browser sessions: a random 256-bit cookie value (idb_session) whose SHA-256
 * keys the row in PostgreSQL, cached in Redis for cache.session_ttl_s. Idle and
 * absolute timeouts; Redis being flushed or away logs nobody out. */
#ifndef IDB_SESSION_H
#define IDB_SESSION_H

#include "app.h"
#include "http.h"
#include "connections.h"
#include "jit.h"
#include "sessions_db.h"

#define IDB_SESSION_COOKIE "idb_session"

/* Creates a session for user_id (org_id) and sets the cookie on req's
 * response. method: "password", "saml", "oidc"; idp may be NULL. csrf_out
 * (64 bytes) receives the CSRF token when not NULL. */
int idb_session_start(idb_req *req, const char *user_id, const char *org_id, const char *method,
		      const idb_session_idp *idp, char *csrf_out, idb_err *err);
/* The same in three steps, for logins whose session row belongs in the
 * login's own transaction (SSO: JIT and session are one commit):
 * prepare (token, row), insert (with the caller's db, inside its
 * transaction), issue (after the commit: cache entry and Set-Cookie). */
typedef struct idb_session_new {
	char token[64];
	idb_session_row row;
} idb_session_new;
void idb_session_prepare(idb_req *req, const char *user_id, const char *org_id, const char *method,
			 const idb_session_idp *idp, idb_session_new *s);
int idb_session_insert(idb_req *req, idb_db *db, const idb_session_new *s, const idb_session_idp *idp, idb_err *err);
void idb_session_issue(idb_req *req, const idb_session_new *s, char *csrf_out);

/* For idb_jit_opts.in_tx: prepares and inserts the session of the accepted
 * user; after the commit, idb_session_issue(req, &sso.s, NULL). */
typedef struct idb_session_sso {
	idb_req *req;
	const char *method;
	const idb_session_idp *idp;
	idb_session_new s;
} idb_session_sso;
int idb_session_sso_in_tx(idb_db *db, const idb_jit_result *r, void *arg, idb_err *err);

/* Resolves a cookie value to a live session (Redis, then PostgreSQL). */
int idb_session_lookup(idb_app *app, const char *cookie, idb_session_row *out, idb_err *err);
/* Ends the session with this id hash everywhere. */
int idb_session_end(idb_app *app, const char *id_hash, idb_err *err);
/* Ends every session of user_id (deactivation, deletion, password change). */
int idb_session_end_user(idb_app *app, const char *user_id, idb_err *err);
/* Drops the cache entries of sessions whose rows were already deleted (in a
 * caller's transaction); failures are logged, the entries expire by TTL. */
void idb_session_uncache(idb_app *app, const char (*hashes)[65], size_t n);


/* The IdP side of a live session, for protocol logouts: its connection (org
 * scoped; cleared with idb_connection_clear) and, malloc'd, the IdP's subject
 * and the stored protocol state (lasso session dump or ID token). Returns
 * false when the session is not an IdP session or anything is missing. */
bool idb_session_idp_context(idb_app *app, const char *id_hash, const char *protocol, idb_connection *conn,
			     char **subject, char **state);

#endif
