/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* /api/v1/users…, /api/v1/api-keys/{id}: user administration (issue 6).
 * Handlers check the shape of the input and call provisioning/; the domain
 * rules, SQL and transactions live there. */
#include <stdlib.h>
#include <string.h>

#include "admin_users.h"
#include "api.h"
#include "api_admin.h"
#include "apikeys_admin.h"
#include "auth.h"
#include "authz.h"
#include "invitations.h"
#include "log.h"
#include "session.h"

/* --- shared admin helpers (api_admin.h) --- */

void idb_api_actor(idb_req *req, idb_actor *out)
{
	const idb_principal *p = &idb_req_auth(req)->principal;
	*out = (idb_actor){.org_id = p->org_id,
			   .user_id = p->user_id,
			   .email = p->email,
			   .name = p->name,
			   .ip = idb_req_ip(req),
			   .request_id = idb_req_id(req)};
}

void idb_api_apply_effects(idb_app *app, idb_effects *fx)
{
	if (fx->nusers)
		idb_authz_invalidate_many(app, (const char(*)[37])fx->users, fx->nusers);
	if (fx->nsessions)
		idb_session_uncache(app, (const char(*)[65])fx->sessions, fx->nsessions);
	if (fx->nkeys)
		idb_auth_apikey_uncache(app, (const char(*)[65])fx->keys, fx->nkeys);
	idb_effects_clear(fx);
}

static int field_error(idb_req *req, const char *field, const char *msg)
{
	return idb_resp_problem(req, 400, "invalid-input", "Invalid input", msg,
				json_pack("[{ss ss}]", "field", field, "message", msg));
}

int idb_api_opt_string(idb_req *req, json_t *body, const char *field, const char **out)
{
	json_t *v = json_object_get(body, field);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		char msg[128];
		snprintf(msg, sizeof(msg), "%s must be a string", field);
		field_error(req, field, msg);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

int idb_api_opt_strings(idb_req *req, json_t *body, const char *field, size_t max, const char ***out, size_t *n,
			bool *present)
{
	json_t *v = json_object_get(body, field);
	*out = NULL;
	*n = 0;
	if (present)
		*present = v && !json_is_null(v);
	if (!v || json_is_null(v))
		return 0;
	char msg[128];
	if (!json_is_array(v)) {
		snprintf(msg, sizeof(msg), "%s must be an array of strings", field);
		field_error(req, field, msg);
		return -1;
	}
	size_t cnt = json_array_size(v);
	if (cnt > max) {
		snprintf(msg, sizeof(msg), "%s may list at most %zu entries", field, max);
		field_error(req, field, msg);
		return -1;
	}
	const char **arr = calloc(cnt ? cnt : 1, sizeof(char *));
	if (!arr) {
		idb_resp_problem(req, 500, "internal", "Internal error", "out of memory", NULL);
		return -1;
	}
	for (size_t i = 0; i < cnt; i++) {
		arr[i] = json_string_value(json_array_get(v, i));
		if (!arr[i]) {
			free(arr);
			snprintf(msg, sizeof(msg), "%s must be an array of strings", field);
			field_error(req, field, msg);
			return -1;
		}
	}
	*out = arr;
	*n = cnt;
	return 0;
}

int idb_api_run(idb_req *req, unsigned status, idb_api_call fn, void *ctx)
{
	idb_app *app = idb_req_app(req);
	idb_err err;
	idb_err_clear(&err);
	idb_effects fx = {0};
	json_t *out = NULL;
	idb_db *db;
	int rc = idb_store_acquire(app->store, &db, &err);
	if (rc == 0) {
		rc = fn(db, ctx, &fx, &out, &err);
		idb_store_release(db);
	}
	idb_api_apply_effects(app, &fx);
	if (rc != 0) {
		json_decref(out);
		if (!err.code)
			idb_err_set(&err, rc, NULL, "%s", idb_strerror(rc));
		return idb_resp_error(req, &err);
	}
	if (status == 204) {
		json_decref(out);
		return idb_resp_body(req, 204, NULL, "", 0);
	}
	return idb_resp_json(req, status, out ? out : json_object());
}

/* --- users --- */

typedef struct ucall {
	idb_actor a;
	const idb_config *cfg;
	const char *id;
	idb_user_filter filter;
	idb_user_patch patch;
	idb_invite_input invite;
	idb_user_op op;
	const char *bulk_action, *bulk_group, *bulk_role;
	const char **bulk_ids;
	size_t nbulk;
	idb_apikey_input key;
	const char *password;
	bool hard;
} ucall;

static void ucall_init(idb_req *req, ucall *c)
{
	memset(c, 0, sizeof(*c));
	idb_api_actor(req, &c->a);
	c->cfg = idb_req_app(req)->cfg;
	c->id = idb_req_param(req, "id");
}

static int do_list(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	ucall *c = ctx;
	(void)fx;
	return idb_users_list(db, c->a.org_id, &c->filter, out, err);
}

int idb_api_users_list(idb_req *req)
{
	ucall c;
	ucall_init(req, &c);
	c.filter = (idb_user_filter){.role = idb_req_query(req, "role"),
				     .group = idb_req_query(req, "group"),
				     .status = idb_req_query(req, "status"),
				     .last_login_after = idb_req_query(req, "last_login_after"),
				     .last_login_before = idb_req_query(req, "last_login_before"),
				     .q = idb_req_query(req, "q"),
				     .limit = idb_req_query(req, "limit"),
				     .cursor = idb_req_query(req, "cursor")};
	return idb_api_run(req, 200, do_list, &c);
}

static int do_get(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	ucall *c = ctx;
	(void)fx;
	return idb_users_get(db, c->a.org_id, c->id, out, err);
}

int idb_api_users_get(idb_req *req)
{
	ucall c;
	ucall_init(req, &c);
	return idb_api_run(req, 200, do_get, &c);
}

static int do_invite(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	ucall *c = ctx;
	(void)fx;
	return idb_invite_create(db, c->cfg, &c->a, &c->invite, out, err);
}

int idb_api_users_invite(idb_req *req)
{
	json_t *body = idb_req_json(req);
	if (!body)
		return 0;
	ucall c;
	ucall_init(req, &c);
	const char **groups = NULL;
	/* A non-string e-mail or role is just as invalid as a malformed one. */
	c.invite.email = json_string_value(json_object_get(body, "email"));
	c.invite.role = json_string_value(json_object_get(body, "role"));
	if (idb_api_opt_string(req, body, "name", &c.invite.name) != 0 ||
	    idb_api_opt_strings(req, body, "groups", 500, &groups, &c.invite.ngroups, NULL) != 0)
		return 0;
	c.invite.groups = groups;
	int rc = idb_api_run(req, 201, do_invite, &c);
	free(groups);
	return rc;
}

static int do_resend(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	ucall *c = ctx;
	(void)fx;
	return idb_invite_resend(db, c->cfg, &c->a, c->id, out, err);
}

int idb_api_users_resend_invite(idb_req *req)
{
	ucall c;
	ucall_init(req, &c);
	return idb_api_run(req, 200, do_resend, &c);
}

static int do_patch(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	ucall *c = ctx;
	return idb_users_update(db, c->cfg, &c->a, c->id, &c->patch, fx, out, err);
}

int idb_api_users_patch(idb_req *req)
{
	json_t *body = idb_req_json(req);
	if (!body)
		return 0;
	ucall c;
	ucall_init(req, &c);
	const char **groups = NULL;
	json_t *notify = json_object_get(body, "notify");
	if (notify && !json_is_boolean(notify))
		return field_error(req, "notify", "notify must be true or false");
	c.patch.notify = json_is_true(notify);
	if (idb_api_opt_string(req, body, "name", &c.patch.name) != 0 ||
	    idb_api_opt_string(req, body, "role", &c.patch.role) != 0 ||
	    idb_api_opt_strings(req, body, "groups", 500, &groups, &c.patch.ngroups, &c.patch.set_groups) != 0)
		return 0;
	c.patch.groups = groups;
	int rc = idb_api_run(req, 200, do_patch, &c);
	free(groups);
	return rc;
}

static int do_apply(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	ucall *c = ctx;
	return idb_users_apply(db, &c->a, c->id, c->op, fx, out, err);
}

static int apply(idb_req *req, idb_user_op op)
{
	ucall c;
	ucall_init(req, &c);
	c.op = op;
	return idb_api_run(req, 200, do_apply, &c);
}

int idb_api_users_deactivate(idb_req *req)
{
	return apply(req, IDB_USER_DEACTIVATE);
}

int idb_api_users_activate(idb_req *req)
{
	return apply(req, IDB_USER_ACTIVATE);
}

int idb_api_users_unlock(idb_req *req)
{
	return apply(req, IDB_USER_UNLOCK);
}

int idb_api_users_restore(idb_req *req)
{
	return apply(req, IDB_USER_RESTORE);
}

static int do_delete(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	ucall *c = ctx;
	int rc = idb_users_confirm_actor(db, &c->a, c->password, err);
	if (rc != 0)
		return rc;
	if (c->hard)
		return idb_users_hard_delete(db, &c->a, c->id, fx, err);
	return idb_users_apply(db, &c->a, c->id, IDB_USER_SOFT_DELETE, fx, out, err);
}

int idb_api_users_delete(idb_req *req)
{
	ucall c;
	ucall_init(req, &c);
	const char *mode = idb_req_query(req, "mode");
	if (mode && strcmp(mode, "soft") != 0 && strcmp(mode, "hard") != 0)
		return field_error(req, "mode", "mode must be soft or hard");
	c.hard = mode && strcmp(mode, "hard") == 0;
	size_t len = 0;
	idb_req_body(req, &len);
	if (len > 0) {
		json_t *body = idb_req_json(req);
		if (!body)
			return 0;
		if (idb_api_opt_string(req, body, "password", &c.password) != 0)
			return 0;
	}
	return idb_api_run(req, c.hard ? 204 : 200, do_delete, &c);
}

static int do_bulk(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	ucall *c = ctx;
	json_t *results = NULL;
	int rc = idb_users_bulk(db, &c->a, c->bulk_action, c->bulk_ids, c->nbulk, c->bulk_group, c->bulk_role, fx,
				&results, err);
	if (rc == 0)
		*out = json_pack("{so}", "results", results);
	return rc;
}

int idb_api_users_bulk(idb_req *req)
{
	json_t *body = idb_req_json(req);
	if (!body)
		return 0;
	ucall c;
	ucall_init(req, &c);
	bool present = false;
	if (idb_api_opt_string(req, body, "action", &c.bulk_action) != 0 ||
	    idb_api_opt_string(req, body, "group", &c.bulk_group) != 0 ||
	    idb_api_opt_string(req, body, "role", &c.bulk_role) != 0 ||
	    idb_api_opt_strings(req, body, "user_ids", IDB_BULK_MAX, &c.bulk_ids, &c.nbulk, &present) != 0)
		return 0;
	int rc = idb_api_run(req, 200, do_bulk, &c);
	free(c.bulk_ids);
	return rc;
}

/* --- API keys --- */

static int do_keys_list(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	ucall *c = ctx;
	(void)fx;
	return idb_apikeys_list(db, c->a.org_id, c->id, out, err);
}

int idb_api_user_apikeys_list(idb_req *req)
{
	ucall c;
	ucall_init(req, &c);
	return idb_api_run(req, 200, do_keys_list, &c);
}

static int do_keys_create(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	ucall *c = ctx;
	(void)fx;
	char key[IDB_APIKEY_MAX];
	int rc = idb_apikeys_create(db, &c->a, c->id, &c->key, key, out, err);
	if (rc == 0)
		json_object_set_new(*out, "key", json_string(key));
	memset(key, 0, sizeof(key));
	return rc;
}

int idb_api_user_apikeys_create(idb_req *req)
{
	json_t *body = idb_req_json(req);
	if (!body)
		return 0;
	ucall c;
	ucall_init(req, &c);
	const char **scopes = NULL;
	if (idb_api_opt_string(req, body, "name", &c.key.name) != 0 ||
	    idb_api_opt_string(req, body, "expires_at", &c.key.expires_at) != 0 ||
	    idb_api_opt_strings(req, body, "scopes", 16, &scopes, &c.key.nscopes, NULL) != 0)
		return 0;
	c.key.scopes = scopes;
	int rc = idb_api_run(req, 201, do_keys_create, &c);
	free(scopes);
	return rc;
}

static int do_key_revoke(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	ucall *c = ctx;
	return idb_apikeys_revoke(db, &c->a, c->id, fx, out, err);
}

int idb_api_apikey_revoke(idb_req *req)
{
	ucall c;
	ucall_init(req, &c);
	return idb_api_run(req, 200, do_key_revoke, &c);
}
