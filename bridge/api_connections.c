/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* /api/v1/connections: IdP connections of the caller's organisation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "api.h"
#include "conncache.h"
#include "app.h"
#include "connections.h"
#include "connsave.h"
#include "jit.h"
#include "presets.h"
#include "roles.h"
#include "urls.h"
#include "users.h"
#include "util.h"

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
	json_t *last = NULL;
	if (o && idb_connection_last_login(db, c.id, &last, NULL) == 0)
		json_object_set_new(o, "last_login", last);
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
	int rc = idb_connsave(db, app->cfg, app->presets, org, existing_id, body, &act, errors, id, &err);
	if (rc == 0) {
		idb_conncache_changed(app->conns);
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
	idb_conncache_changed(idb_req_app(req)->conns);
	return idb_resp_body(req, 204, NULL, "", 0);
}

int idb_api_attribute_presets(idb_req *req)
{
	const char *txt = idb_presets_json(idb_req_app(req)->presets);
	return idb_resp_body(req, 200, "application/json", txt, strlen(txt));
}

/* Dry run of a login on a connection with pasted attributes: the profile the
 * map makes, how it was made, and what JIT would do — the same code a login
 * runs, inside a transaction that is rolled back. */
int idb_api_connections_test_mapping(idb_req *req)
{
	idb_app *app = idb_req_app(req);
	json_t *body = idb_req_json(req);
	if (!body)
		return 0;
	const char *org = idb_req_auth(req)->principal.org_id;
	json_t *attrs = json_object_get(body, "attributes");
	if (!json_is_object(attrs))
		return idb_resp_problem(req, 400, "invalid-input", "Invalid input", "attributes must be an object of name: [values]",
					json_pack("[{ss ss}]", "field", "attributes", "message", "is required (an object)"));
	idb_identity id = {0};
	idb_err err;
	idb_err_clear(&err);
	const char *k;
	json_t *v;
	int rc = 0;
	json_object_foreach(attrs, k, v)
	{
		if (json_is_string(v)) {
			rc = idb_identity_add(&id, k, json_string_value(v), &err);
		} else if (json_is_array(v)) {
			size_t i;
			json_t *x;
			json_array_foreach(v, i, x)
			{
				if (rc == 0 && !json_is_string(x))
					rc = idb_err_set(&err, IDB_EINVAL, k, "values must be strings");
				if (rc == 0)
					rc = idb_identity_add(&id, k, json_string_value(x), &err);
			}
		} else {
			rc = idb_err_set(&err, IDB_EINVAL, k, "must be a string or a list of strings");
		}
		if (rc != 0)
			break;
	}
	if (rc != 0) {
		idb_identity_clear(&id);
		char field[128];
		snprintf(field, sizeof(field), "attributes.%.100s", err.field);
		return idb_resp_problem(req, rc == IDB_ETOOBIG ? 413 : 400, "invalid-input", "Invalid input", err.msg,
					json_pack("[{ss ss}]", "field", field, "message", err.msg));
	}
	const char *subject = json_string_value(json_object_get(body, "subject"));
	const char *fmt = json_string_value(json_object_get(body, "subject_format"));
	json_t *ev = json_object_get(body, "email_verified");
	id.subject = strdup(subject && *subject ? subject : "(test-mapping: no subject)");
	id.subject_format = strdup(fmt ? fmt : "");
	id.issuer = strdup("(test-mapping)");
	id.email_verified = ev ? json_is_true(ev) : true;

	idb_db *db;
	if (idb_store_acquire(app->store, &db, &err) != 0) {
		idb_identity_clear(&id);
		return idb_resp_error(req, &err);
	}
	idb_connection c;
	if ((rc = idb_connection_get(db, org, idb_req_param(req, "id"), &c, &err)) != 0) {
		idb_store_release(db);
		idb_identity_clear(&id);
		return idb_resp_error(req, &err);
	}
	id.connection_id = strdup(c.id);
	char *jit = json_dumps(c.jit, JSON_COMPACT);
	idb_attrmap *m = NULL;
	char *explain = NULL;
	idb_profile prof = {0};
	json_t *out = json_object();
	rc = idb_presets_compile(&m, app->presets, c.preset, jit, &err);
	if (rc == 0 && idb_attrmap_explain(m, &id, &explain, &err) == 0 && explain)
		json_object_set_new(out, "explain", json_loads(explain, 0, NULL));
	if (rc == 0)
		rc = idb_attrmap_apply(m, &id, &prof, &err);
	if (rc != 0) {
		json_object_set_new(out, "profile", json_null());
		json_object_set_new(out, "error", json_pack("{ss ss}", "field", err.field, "message", err.msg));
	} else {
		json_t *groups = json_array();
		for (size_t i = 0; i < prof.ngroups; i++)
			json_array_append_new(groups, json_string(prof.groups[i]));
		json_object_set_new(out, "profile",
				    json_pack("{ss ss so ss sb sb}", "email", prof.email, "name", prof.display_name, "groups",
					      groups, "role", idb_role_name(prof.role), "role_from_rule", prof.role_from_rule,
					      "groups_overage", prof.groups_overage));
		idb_jit_opts opts = {.dry_run = true, .report = true};
		idb_jit_result jr;
		idb_err jerr;
		idb_err_clear(&jerr);
		int jrc = idb_jit_provision(db, &c, &id, &prof, idb_req_ip(req), &opts, &jr, &jerr);
		const char *decision = jrc != 0 ? "refuse" : jr.created ? "create" : jr.linked ? "link" : "existing";
		json_t *j = json_pack("{ss ss ss}", "decision", decision, "reason", jrc == 0 ? "ok" : jr.reason[0] ? jr.reason : "error",
				      "message", jrc == 0 ? "" : jr.reason[0] ? jr.message : jerr.msg);
		if (jrc == 0) {
			json_object_set_new(j, "user_id", jr.created ? json_null() : json_string(jr.user_id));
			json_object_set_new(j, "activates", json_boolean(jr.activated));
		}
		if (jr.report)
			json_object_update(j, jr.report);
		json_decref(jr.report);
		json_object_set_new(out, "jit", j);
	}
	idb_store_release(db);
	idb_profile_clear(&prof);
	idb_attrmap_free(m);
	free(explain);
	free(jit);
	idb_identity_clear(&id);
	idb_connection_clear(&c);
	return idb_resp_json(req, 200, out);
}

/* Home-realm discovery: the connection that owns the e-mail's domain. */
int idb_api_discover(idb_req *req)
{
	idb_app *app = idb_req_app(req);
	const char *email = idb_req_query(req, "email");
	const char *at = email ? strrchr(email, '@') : NULL;
	if (!email || !idb_email_valid(email) || !at)
		return idb_resp_problem(req, 400, "invalid-input", "Invalid input", "Give a valid e-mail address.",
					json_pack("[{ss ss}]", "field", "email", "message", "Invalid email format"));
	idb_db *db;
	idb_err err;
	idb_err_clear(&err);
	if (idb_store_acquire(app->store, &db, &err) != 0)
		return idb_resp_error(req, &err);
	char slug[64], proto[8];
	int rc = idb_connection_for_domain(db, at + 1, slug, proto, &err);
	idb_store_release(db);
	if (rc == IDB_ENOTFOUND)
		return idb_resp_problem(req, 404, "sso-no-connection", "No single sign-on for this domain",
					"No identity provider is set up for this e-mail domain. Sign in with your password, or "
					"ask your administrator.",
					NULL);
	if (rc != 0)
		return idb_resp_error(req, &err);
	const char *rt = idb_req_query(req, "return_to");
	char *esc = NULL;
	char loc[7000];
	if (rt && idb_return_to_allowed(app->cfg, rt)) {
		esc = curl_easy_escape(NULL, rt, 0);
		snprintf(loc, sizeof(loc), "/sso/%s/%s/login?return_to=%s", proto, slug, esc ? esc : "%2F");
	} else {
		snprintf(loc, sizeof(loc), "/sso/%s/%s/login", proto, slug);
	}
	curl_free(esc);
	return idb_resp_redirect(req, 303, loc);
}
