/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* What a browser sees when single sign-on fails: a page in words the user
 * can act on, or problem JSON when the client asked for JSON. */
#ifndef IDB_SSO_H
#define IDB_SSO_H

#include "http.h"

int idb_sso_fail(idb_req *req, unsigned status, const char *type, const char *title, const char *detail);

#endif
