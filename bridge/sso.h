/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* What a browser sees when single sign-on fails: a page in words the user
 * can act on, or problem JSON when the client asked for JSON. */
#ifndef IDB_SSO_H
#define IDB_SSO_H

#include "connections.h"
#include "http.h"

int idb_sso_fail(idb_req *req, unsigned status, const char *type, const char *title, const char *detail);

/* The connection named by the route's {conn} parameter, of this protocol
 * ("saml" | "oidc"), through the in-process connection cache. IDB_ENOTFOUND
 * (slug "sso-unknown-connection", a message naming it) when there is none. */
int idb_sso_connection(idb_req *req, const char *protocol, idb_connection *c, idb_err *err);

#endif
