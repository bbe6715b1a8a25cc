/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* /api/v1/connections: IdP connections of the caller's organisation. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "app.h"
#include "connections.h"
#include "connsave.h"
#include "users.h"

static idb_actor actor_of(idb_req *req)
{
	idb_auth_ctx *a = idb_req_auth(req);
	idb_actor act = {.user_id = a->principal.user_id,
			 .email = a->principal.email,
			 .ip = idb_req_ip(req),
			 .request_id = idb_req_id(req)};
	return act;
}

static int respond_conn(idb_req *req, idb_db *db, const char *org_id, const char *id, unsigned status)
{
	idb_connection c;
	idb_err err;
	idb_err_clear(&err);
	int rc = idb_connection_get(db, org_id, id, &c, &err);
	if (rc != 0)
		return idb_resp_error(req, &err);
	json_t *o = idb_connsave_view(idb_req_app(req)->cfg, &c);
	idb_connection_clear(&c);
	return idb_resp_json(req, status, o);
}

int idb_api_connections_list(idb_req *req)
{
	idb_app *app = idb_req_app(req);
	const char *org = idb_req_auth(req)->principal.org_id;
	idb_db *db;
	idb_err err;
	idb_err_clear(&err);
	if (idb_store_acquire(app->store, &db, &err) != 0)
		return idb_resp_error(req, &err);
	json_t *ids = NULL, *items = json_array();
	int rc = idb_connection_list_ids(db, org, &ids, &err);
	size_t i;
	json_t *v;
	json_array_foreach(ids, i, v)
	{
		idb_connection c;
		if (rc == 0 && idb_connection_get(db, org, json_string_value(v), &c, &err) == 0) {
			json_array_append_new(items, idb_connsave_view(app->cfg, &c));
			idb_connection_clear(&c);
		}
	}
	idb_store_release(db);
	json_decref(ids);
	if (rc != 0) {
		json_decref(items);
		return idb_resp_error(req, &err);
	}
	return idb_resp_json(req, 200, json_pack("{so sn}", "items", items, "next_cursor"));
}

static int save(idb_req *req, const char *existing_id)
{
	idb_app *app = idb_req_app(req);
	json_t *body = idb_req_json(req);
	if (!body)
		return 0;
	const char *org = idb_req_auth(req)->principal.org_id;
	idb_db *db;
	idb_err err;
	idb_err_clear(&err);
	if (idb_store_acquire(app->store, &db, &err) != 0)
		return idb_resp_error(req, &err);
	json_t *errors = json_array();
	char id[37] = "";
	idb_actor act = actor_of(req);
	int rc = idb_connsave(db, app->cfg, org, existing_id, body, &act, errors, id, &err);
	if (rc == 0) {
		rc = respond_conn(req, db, org, id, existing_id ? 200 : 201);
		json_decref(errors);
	} else if (json_array_size(errors) > 0) {
		idb_resp_problem(req, rc == IDB_EEXISTS ? 409 : 400, rc == IDB_EEXISTS ? "already-exists" : "invalid-input",
				 rc == IDB_EEXISTS ? "Already exists" : "Invalid input",
				 rc == IDB_EEXISTS ? err.msg : "The connection has invalid fields.", errors);
	} else {
		json_decref(errors);
		idb_resp_error(req, &err);
	}
	idb_store_release(db);
	return 0;
}

int idb_api_connections_create(idb_req *req)
{
	return save(req, NULL);
}

int idb_api_connections_update(idb_req *req)
{
	return save(req, idb_req_param(req, "id"));
}

int idb_api_connections_get(idb_req *req)
{
	idb_db *db;
	idb_err err;
	idb_err_clear(&err);
	if (idb_store_acquire(idb_req_app(req)->store, &db, &err) != 0)
		return idb_resp_error(req, &err);
	int rc = respond_conn(req, db, idb_req_auth(req)->principal.org_id, idb_req_param(req, "id"), 200);
	idb_store_release(db);
	return rc;
}

int idb_api_connections_delete(idb_req *req)
{
	idb_db *db;
	idb_err err;
	idb_err_clear(&err);
	idb_auth_ctx *a = idb_req_auth(req);
	const char *id = idb_req_param(req, "id");
	if (idb_store_acquire(idb_req_app(req)->store, &db, &err) != 0)
		return idb_resp_error(req, &err);
	int rc = idb_db_begin(db, &err);
	if (rc == 0)
		rc = idb_connection_delete(db, a->principal.org_id, id, &err);
	if (rc == 0) {
		idb_audit_entry ae = {.org_id = a->principal.org_id,
				      .actor_id = a->principal.user_id,
				      .actor_email = a->principal.email,
				      .action = "connection.delete",
				      .target_type = "connection",
				      .target_id = id,
				      .ip = idb_req_ip(req),
				      .request_id = idb_req_id(req)};
		rc = idb_audit_record(db, &ae, &err);
	}
	if (rc == 0)
		rc = idb_db_commit(db, &err);
	idb_store_release(db);
	if (rc != 0)
		return idb_resp_error(req, &err);
	return idb_resp_body(req, 204, NULL, "", 0);
}
