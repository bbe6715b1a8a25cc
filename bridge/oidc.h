/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The OpenID Connect relying party: authorization code flow with PKCE S256,
 * ID token validation (bridge/jwt.h) against a JWKS idbridge fetches and
 * caches itself, JIT provisioning through the shared path, RP-initiated and
 * back-channel logout, and bearer JWT validation for /auth/check and
 * /api/v1 with an in-process cache of validated tokens.
 *
 * Per connection, the provider's discovery document and JWKS are kept in
 * memory (rebuilt when the connection changes), refreshed after
 * oidc.discovery_refresh_s / oidc.jwks_refresh_s, and the JWKS also when a
 * token names an unknown kid — at most once per
 * oidc.jwks_min_refresh_interval_s. Single-use protocol state (state, nonce,
 * PKCE verifier, logout-token jti) lives in Redis, so a flow can start on one
 * instance and finish on another; without Redis these fail closed (503). */
#ifndef IDB_OIDC_H
#define IDB_OIDC_H

#include "app.h"
#include "err.h"
#include "http.h"
#include "keyfile.h"

typedef struct idb_oidc idb_oidc;

/* Process-wide set-up (libcurl); main thread, before any other thread. */
int idb_oidc_global_init(idb_err *err);

/* The RP context shared by all threads. secret_key (copied) opens sealed
 * client secrets. *out is released with idb_oidc_free. */
struct idb_presets;
int idb_oidc_open(idb_oidc **out, const idb_config *cfg, const struct idb_presets *presets,
		  const unsigned char secret_key[IDB_SECRET_KEY_BYTES],
		  idb_err *err);
void idb_oidc_free(idb_oidc *o);

/* Route handlers. */
int idb_oidc_handle_login(idb_req *req);
int idb_oidc_handle_callback(idb_req *req);
int idb_oidc_handle_backchannel_logout(idb_req *req);

/* RP-initiated logout for an OIDC session (called by /logout before the
 * session ends): *redirect_out (malloc'd) is the provider's
 * end_session_endpoint URL with id_token_hint, client_id and
 * post_logout_redirect_uri, or NULL when the provider has none. Never fails
 * the local logout. */
void idb_oidc_logout_redirect(idb_req *req, const char *session_hash, char **redirect_out);

/* Resolves a bearer JWT ("eyJ…") to the user linked to its (connection, sub):
 * the token must be valid for an enabled OIDC connection with accept_bearer
 * whose issuer is the token's iss, with aud = that connection's
 * bearer_audience. Users are created only when the connection's
 * jit.bearer_provisioning is on. user_out[37]. IDB_EAUTH (message for the
 * caller) when the token is refused, IDB_EUNAVAIL when the provider's keys
 * cannot be had. The caller still loads and checks the principal. */
int idb_oidc_bearer_resolve(idb_app *app, const char *token, char user_out[37], idb_err *err);

#endif
