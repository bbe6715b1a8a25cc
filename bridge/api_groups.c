/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* /api/v1/groups…: groups and their manual memberships (issue 6). */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "api_admin.h"
#include "groups.h"

typedef struct gcall {
	idb_actor a;
	const char *id;
	const char *user_id;
	idb_group_input in;
	const char *limit, *cursor;
} gcall;

static void gcall_init(idb_req *req, gcall *c)
{
	memset(c, 0, sizeof(*c));
	idb_api_actor(req, &c->a);
	c->id = idb_req_param(req, "id");
	c->user_id = idb_req_param(req, "user_id");
	c->limit = idb_req_query(req, "limit");
	c->cursor = idb_req_query(req, "cursor");
}

/* name, description, permissions[] from the body. -1: a 400 was queued. */
static int read_input(idb_req *req, json_t *body, gcall *c, const char ***perms)
{
	*perms = NULL;
	if (idb_api_opt_string(req, body, "name", &c->in.name) != 0 ||
	    idb_api_opt_string(req, body, "description", &c->in.description) != 0 ||
	    idb_api_opt_strings(req, body, "permissions", 64, perms, &c->in.npermissions, &c->in.set_permissions) != 0)
		return -1;
	c->in.permissions = *perms;
	return 0;
}

static int do_list(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	gcall *c = ctx;
	(void)fx;
	return idb_groups_list(db, c->a.org_id, c->limit, c->cursor, out, err);
}

int idb_api_groups_list(idb_req *req)
{
	gcall c;
	gcall_init(req, &c);
	return idb_api_run(req, 200, do_list, &c);
}

static int do_get(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	gcall *c = ctx;
	(void)fx;
	return idb_groups_get(db, c->a.org_id, c->id, out, err);
}

int idb_api_groups_get(idb_req *req)
{
	gcall c;
	gcall_init(req, &c);
	return idb_api_run(req, 200, do_get, &c);
}

static int do_create(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	gcall *c = ctx;
	(void)fx;
	return idb_groups_create(db, &c->a, &c->in, out, err);
}

int idb_api_groups_create(idb_req *req)
{
	json_t *body = idb_req_json(req);
	if (!body)
		return 0;
	gcall c;
	gcall_init(req, &c);
	const char **perms;
	if (read_input(req, body, &c, &perms) != 0)
		return 0;
	int rc = idb_api_run(req, 201, do_create, &c);
	free(perms);
	return rc;
}

static int do_update(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	gcall *c = ctx;
	return idb_groups_update(db, &c->a, c->id, &c->in, fx, out, err);
}

int idb_api_groups_patch(idb_req *req)
{
	json_t *body = idb_req_json(req);
	if (!body)
		return 0;
	gcall c;
	gcall_init(req, &c);
	const char **perms;
	if (read_input(req, body, &c, &perms) != 0)
		return 0;
	int rc = idb_api_run(req, 200, do_update, &c);
	free(perms);
	return rc;
}

static int do_delete(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	gcall *c = ctx;
	(void)out;
	return idb_groups_delete(db, &c->a, c->id, fx, err);
}

int idb_api_groups_delete(idb_req *req)
{
	gcall c;
	gcall_init(req, &c);
	return idb_api_run(req, 204, do_delete, &c);
}

static int do_members(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	gcall *c = ctx;
	(void)fx;
	return idb_groups_members(db, c->a.org_id, c->id, c->limit, c->cursor, out, err);
}

int idb_api_groups_members(idb_req *req)
{
	gcall c;
	gcall_init(req, &c);
	return idb_api_run(req, 200, do_members, &c);
}

static int do_member_add(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	gcall *c = ctx;
	return idb_groups_member_add(db, &c->a, c->id, c->user_id, fx, out, err);
}

int idb_api_groups_member_add(idb_req *req)
{
	json_t *body = idb_req_json(req);
	if (!body)
		return 0;
	gcall c;
	gcall_init(req, &c);
	if (idb_api_opt_string(req, body, "user_id", &c.user_id) != 0)
		return 0;
	if (!c.user_id)
		return idb_resp_problem(req, 400, "invalid-input", "Invalid input", "user_id is required",
					json_pack("[{ss ss}]", "field", "user_id", "message", "user_id is required"));
	return idb_api_run(req, 200, do_member_add, &c);
}

static int do_member_remove(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	gcall *c = ctx;
	(void)out;
	return idb_groups_member_remove(db, &c->a, c->id, c->user_id, fx, err);
}

int idb_api_groups_member_remove(idb_req *req)
{
	gcall c;
	gcall_init(req, &c);
	return idb_api_run(req, 204, do_member_remove, &c);
}
