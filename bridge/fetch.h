/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Outbound HTTP GET/POST (libcurl) with bounded size and time, for IdP
 * metadata, OIDC discovery, JWKS and token calls. http and https only, no
 * redirects to other schemes, no proxy from the environment. */
#ifndef IDB_FETCH_H
#define IDB_FETCH_H

#include <stddef.h>

#include "err.h"

typedef struct idb_fetch_result {
	long status;
	char *body; /* malloc'd, NUL-terminated */
	size_t len;
	char content_type[128];
} idb_fetch_result;

/* GET url. IDB_EUNAVAIL on a network error or timeout, IDB_ETOOBIG past
 * max_bytes. A non-2xx status is returned in out (rc 0). */
int idb_fetch_get(const char *url, size_t max_bytes, long timeout_ms, idb_fetch_result *out, idb_err *err);
/* POST form (already url-encoded) with optional Basic credentials
 * ("user:pass", may be NULL). */
int idb_fetch_post_form(const char *url, const char *form, const char *basic_auth, size_t max_bytes, long timeout_ms,
			idb_fetch_result *out, idb_err *err);
/* GET url with "Authorization: Bearer <token>" (OIDC userinfo). */
int idb_fetch_get_bearer(const char *url, const char *token, size_t max_bytes, long timeout_ms, idb_fetch_result *out,
			 idb_err *err);
void idb_fetch_result_clear(idb_fetch_result *r);

#endif
