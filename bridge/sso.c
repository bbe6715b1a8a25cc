/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "sso.h"

#include "admin.h"
#include "app.h"
#include "conncache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


int idb_sso_fail(idb_req *req, unsigned status, const char *type, const char *title, const char *detail)
{
	if (idb_req_wants_json(req) && !idb_req_is_form(req))
		return idb_resp_problem(req, status, type, title, detail, NULL);
	const char *accept = idb_req_header(req, "Accept");
	if (accept && strstr(accept, "application/json"))
		return idb_resp_problem(req, status, type, title, detail, NULL);
	char page[1600];
	char *et = idb_html_escape(title), *ed = idb_html_escape(detail);
	int n = snprintf(page, sizeof(page),
			 "<!doctype html><html lang=en><head><meta charset=utf-8><title>%s · idbridge</title>"
			 "<meta name=viewport content='width=device-width,initial-scale=1'>"
			 "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}"
			 "</style></head><body><h1>%s</h1><p>%s</p><p><a href=/login>Back to sign-in</a></p>"
			 "<!-- %s --></body></html>",
			 et ? et : "", et ? et : "", ed ? ed : "", type);
	free(et);
	free(ed);
	idb_resp_header(req, "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
	return idb_resp_body(req, status, "text/html; charset=utf-8", page, (size_t)(n < (int)sizeof(page) ? n : (int)sizeof(page) - 1));
}

int idb_sso_connection(idb_req *req, const char *protocol, idb_connection *c, idb_err *err)
{
	idb_app *app = idb_req_app(req);
	const char *slug = idb_req_param(req, "conn");
	int rc = idb_conncache_by_slug(app->conns, app->store, slug, c, err);
	if (rc == 0 && strcmp(c->protocol, protocol) != 0) {
		idb_connection_clear(c);
		rc = IDB_ENOTFOUND;
	}
	if (rc == IDB_ENOTFOUND)
		return idb_err_set(err, IDB_ENOTFOUND, "sso-unknown-connection", "There is no %s connection named %.63s.",
				   strcmp(protocol, "saml") == 0 ? "SAML" : "OpenID Connect", slug);
	return rc;
}
