/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The SAML 2.0 service provider (lasso): SP metadata, SP-initiated
 * AuthnRequest, the ACS with every check lasso leaves to the caller, single
 * logout both ways. One LassoServer per connection, built once per version of
 * the connection and shared read-only between threads. */
#ifndef IDB_SAML_H
#define IDB_SAML_H

#include <stdint.h>

#include "app.h"
#include "connections.h"
#include "err.h"
#include "http.h"

typedef struct idb_saml idb_saml;

/* Process-wide lasso set-up (main thread, before any other thread). */
int idb_saml_global_init(idb_err *err);
void idb_saml_global_shutdown(void);

/* Loads or generates the SP key pair; the context is shared by all threads. */
struct idb_presets;
/* presets (borrowed, outlives s) supply each connection's named preset. */
int idb_saml_open(idb_saml **out, const idb_config *cfg, const struct idb_presets *presets, idb_err *err);
void idb_saml_free(idb_saml *s);

/* Validates IdP metadata for a connection being saved: it must load into
 * lasso as an IdP with a signing key and an SSO endpoint. *valid_until gets
 * validUntil (epoch s, 0 = none) and *cache_s cacheDuration (0 = none);
 * entity_out (256 bytes, may be NULL) the IdP entity id. */
int idb_saml_check_metadata(idb_saml *s, const char *xml, int64_t *valid_until, int64_t *cache_s, char *entity_out,
			    idb_err *err);

/* Derived URLs of a connection (malloc'd JSON object: entity_id, acs_url,
 * metadata_url, slo_url), for the API. */
json_t *idb_saml_sp_info(const idb_config *cfg, const char *slug);

/* Route handlers. */
int idb_saml_handle_metadata(idb_req *req);
int idb_saml_handle_login(idb_req *req);
int idb_saml_handle_acs(idb_req *req);
int idb_saml_handle_slo(idb_req *req);
/* SP-initiated logout for a SAML session (called by /logout): fills
 * redirect_out (malloc'd URL) when the IdP has an SLO endpoint; NULL
 * otherwise. Never fails the local logout. */
void idb_saml_logout_redirect(idb_req *req, const char *session_hash, char **redirect_out);

#endif
