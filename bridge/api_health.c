/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Liveness, readiness and metrics. */
#include <stdlib.h>

#include "api.h"
#include "app.h"
#include "metrics.h"

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

int idb_api_root(idb_req *req)
{
	return idb_resp_redirect(req, 303, "/login");
}
