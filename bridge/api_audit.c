/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* GET /api/v1/audit: the append-only log of admin and security actions. */
#include <string.h>

#include "api.h"
#include "api_admin.h"
#include "audit_query.h"

typedef struct acall {
	const char *org_id;
	idb_audit_filter f;
} acall;

static int do_list(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	acall *c = ctx;
	(void)fx;
	return idb_audit_list(db, c->org_id, &c->f, out, err);
}

int idb_api_audit_list(idb_req *req)
{
	acall c = {.org_id = idb_req_auth(req)->principal.org_id,
		   .f = {.action = idb_req_query(req, "action"),
			 .actor = idb_req_query(req, "actor"),
			 .target = idb_req_query(req, "target"),
			 .since = idb_req_query(req, "since"),
			 .until = idb_req_query(req, "until"),
			 .limit = idb_req_query(req, "limit"),
			 .cursor = idb_req_query(req, "cursor")}};
	return idb_api_run(req, 200, do_list, &c);
}
