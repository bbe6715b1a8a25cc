/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Who is calling: resolves the session cookie, an API key (Bearer idb_…) or an
 * IdP-issued bearer JWT to a principal, and enforces the CSRF header for
 * cookie-authenticated unsafe methods. */
#ifndef IDB_AUTH_H
#define IDB_AUTH_H

#include "app.h"
#include "http.h"

/* Fills ctx for the request's credentials. IDB_EAUTH when there are none or
 * they are invalid / the user is not active; IDB_EFORBIDDEN for a missing or
 * wrong X-CSRF-Token on a cookie request with an unsafe method. */
int idb_auth_request(idb_req *req, idb_auth_ctx *ctx, idb_err *err);
/* Same without the CSRF check (used by /auth/check, which only reads). */
int idb_auth_resolve(idb_req *req, idb_auth_ctx *ctx, idb_err *err);

/* Drops cached API key look-ups (idb:akey:<sha256>) for keys that were
 * revoked or disabled; failures are logged, the entries expire by TTL. */
void idb_auth_apikey_uncache(idb_app *app, const char (*key_hashes)[65], size_t n);

#endif
