/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Liveness, readiness and metrics. */
#include <stdlib.h>

#include "api.h"
#include "app.h"
#include "metrics.h"
#include "admin.h"
#include "auth.h"
#include "roles.h"
#include <stdio.h>

int idb_api_healthz(idb_req *req)
{
	return idb_resp_json(req, 200, json_pack("{ss}", "status", "ok"));
}

int idb_api_readyz(idb_req *req)
{
	idb_app *app = idb_req_app(req);
	bool pg = idb_store_ping(app->store);
	bool redis = idb_cache_ping(app->cache);
	bool ready = pg && redis;
	return idb_resp_json(req, ready ? 200 : 503,
			     json_pack("{ss ss ss}", "status", ready ? "ready" : "degraded", "postgres", pg ? "up" : "down",
				       "redis", redis ? "up" : "down"));
}

int idb_api_metrics(idb_req *req)
{
	size_t len = 0;
	char *text = idb_metrics_render(idb_req_app(req), &len);
	if (!text)
		return IDB_EINTERNAL;
	idb_resp_body(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
	return 0;
}

/* The landing page after a browser sign-in: who you are, and a way out. */
int idb_api_root(idb_req *req)
{
	idb_auth_ctx ctx;
	if (idb_auth_resolve(req, &ctx, NULL) != 0)
		return idb_resp_redirect(req, 303, "/login");
	char *name = idb_html_escape(ctx.principal.name[0] ? ctx.principal.name : ctx.principal.email);
	char *email = idb_html_escape(ctx.principal.email);
	char *org = idb_html_escape(ctx.principal.org_name);
	char *groups = idb_html_escape(ctx.principal.groups[0] ? ctx.principal.groups : "none");
	char page[4096];
	int n = snprintf(page, sizeof(page),
			 "<!doctype html><html lang=en><head><meta charset=utf-8><title>Signed in · idbridge</title>"
			 "<meta name=viewport content='width=device-width,initial-scale=1'>"
			 "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}"
			 "dt{font-weight:600;margin-top:.6rem}</style></head><body><h1>Signed in</h1><dl>"
			 "<dt>Name</dt><dd>%.300s</dd><dt>E-mail</dt><dd>%.300s</dd><dt>Organisation</dt><dd>%.300s</dd>"
			 "<dt>Role</dt><dd>%s</dd><dt>Groups</dt><dd>%.1000s</dd></dl>"
			 "<form method=post action=/logout><button type=submit>Sign out</button></form></body></html>",
			 name ? name : "", email ? email : "", org ? org : "", idb_role_name(ctx.principal.role),
			 groups ? groups : "");
	free(name);
	free(email);
	free(org);
	free(groups);
	idb_principal_clear(&ctx.principal);
	idb_resp_header(req, "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'");
	return idb_resp_body(req, 200, "text/html; charset=utf-8", page,
			     (size_t)(n < (int)sizeof(page) ? n : (int)sizeof(page) - 1));
}
