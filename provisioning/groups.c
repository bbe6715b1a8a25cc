/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "groups.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "roles.h"
#include "util.h"

int idb_group_resolve(idb_db *db, const char *org_id, const char *id_or_name, char out_id[37], idb_err *err)
{
	static const char by_id[] = "SELECT id FROM groups WHERE id = $1::uuid AND org_id = $2::uuid";
	static const char by_name[] = "SELECT id FROM groups WHERE lower(name) = lower($1) AND org_id = $2::uuid";
	if (!id_or_name || !*id_or_name)
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "Group not found");
	const char *p[] = {id_or_name, org_id};
	PGresult *res = idb_db_query(db, idb_uuid_valid(id_or_name) ? by_id : by_name, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = 0;
	if (PQntuples(res) == 1)
		idb_strlcpy(out_id, idb_db_str(res, 0, 0), 37);
	else
		rc = idb_err_set(err, IDB_ENOTFOUND, NULL, "Group not found: %.100s", id_or_name);
	PQclear(res);
	return rc;
}

int idb_groups_list(idb_db *db, const char *org_id, const char *limit, const char *cursor, json_t **out,
		    idb_err *err)
{
	static const char first_sql[] = "SELECT idb_group_json(g)::text, lower(g.name), g.id FROM groups g"
					" WHERE g.org_id = $1::uuid ORDER BY lower(g.name), g.id LIMIT $2::int";
	static const char next_sql[] = "SELECT idb_group_json(g)::text, lower(g.name), g.id FROM groups g"
				       " WHERE g.org_id = $1::uuid AND (lower(g.name), g.id) > ($3, $4::uuid)"
				       " ORDER BY lower(g.name), g.id LIMIT $2::int";
	int lim;
	int rc = idb_limit_parse(limit, 50, 200, &lim, err);
	if (rc != 0)
		return rc;
	char parts[2][256];
	if (cursor && (!idb_cursor_decode(cursor, parts, 2) || !idb_uuid_valid(parts[1])))
		return idb_err_set(err, IDB_EINVAL, "cursor", "cursor is not one this server issued");
	char ls[16];
	snprintf(ls, sizeof(ls), "%d", lim + 1);
	const char *p[] = {org_id, ls, cursor ? parts[0] : NULL, cursor ? parts[1] : NULL};
	return idb_db_json_page(db, false, cursor ? next_sql : first_sql, cursor ? 4 : 2, p, lim, out, err);
}

int idb_groups_get(idb_db *db, const char *org_id, const char *group_id, json_t **out, idb_err *err)
{
	*out = NULL;
	if (!idb_uuid_valid(group_id))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "group not found");
	static const char sql[] = "SELECT idb_group_json(g)::text FROM groups g WHERE g.id = $1::uuid AND g.org_id = $2::uuid";
	const char *p[] = {group_id, org_id};
	return idb_db_json_one(db, sql, 2, p, "group", out, err);
}

/* Validates the input; *perms gets a Postgres array literal (malloc'd). */
static int check_input(const idb_group_input *in, bool create, char **perms, idb_err *err)
{
	*perms = NULL;
	if (create || in->name) {
		if (!in->name)
			return idb_err_set(err, IDB_EINVAL, "name", "name is required");
		size_t n = strlen(in->name);
		if (n == 0 || n > 256 || strspn(in->name, " \t") == n)
			return idb_err_set(err, IDB_EINVAL, "name", "name must be 1-256 characters");
		for (const unsigned char *c = (const unsigned char *)in->name; *c; c++)
			if (*c < 0x20 || *c == 0x7f)
				return idb_err_set(err, IDB_EINVAL, "name", "name must not contain control characters");
	}
	if (in->description && strlen(in->description) > 2000)
		return idb_err_set(err, IDB_EINVAL, "description", "description must be at most 2000 characters");
	if (!in->set_permissions)
		return 0;
	if (in->npermissions > IDB_PERM_COUNT * 4)
		return idb_err_set(err, IDB_EINVAL, "permissions", "too many permissions");
	/* {a,b} — names are from a fixed table of [a-z._] so no quoting needed. */
	size_t cap = 3 + in->npermissions * 24;
	char *lit = malloc(cap);
	if (!lit)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	size_t o = 0;
	lit[o++] = '{';
	uint32_t seen = 0;
	for (size_t i = 0; i < in->npermissions; i++) {
		uint32_t bit = idb_perm_parse(in->permissions[i]);
		if (!bit) {
			free(lit);
			return idb_err_set(err, IDB_EINVAL, "permissions", "Unknown permission: %.64s",
					   in->permissions[i] ? in->permissions[i] : "(not a string)");
		}
		if (seen & bit)
			continue;
		seen |= bit;
		o += (size_t)snprintf(lit + o, cap - o, "%s%s", o > 1 ? "," : "", in->permissions[i]);
	}
	lit[o++] = '}';
	lit[o] = '\0';
	*perms = lit;
	return 0;
}

static int members_to_effects(idb_db *db, const char *group_id, idb_effects *fx, idb_err *err)
{
	static const char sql[] = "SELECT DISTINCT user_id FROM memberships WHERE group_id = $1::uuid";
	const char *p[] = {group_id};
	PGresult *res = idb_db_query(db, sql, 1, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = 0;
	for (int i = 0; i < PQntuples(res) && rc == 0; i++)
		rc = idb_effects_user(fx, idb_db_str(res, i, 0), err);
	PQclear(res);
	return rc;
}

static int finish(idb_db *db, int rc, idb_err *err)
{
	if (rc == 0)
		rc = idb_db_commit(db, err);
	if (rc != 0)
		idb_db_rollback(db);
	return rc;
}

static void name_conflict(idb_err *err, const char *name)
{
	if (err && err->code == IDB_EEXISTS)
		idb_err_set(err, IDB_EEXISTS, "name", "A group named \"%.100s\" already exists.", name);
}

int idb_groups_create(idb_db *db, const idb_actor *a, const idb_group_input *in, json_t **out, idb_err *err)
{
	*out = NULL;
	char *perms = NULL;
	int rc = check_input(in, true, &perms, err);
	if (rc != 0)
		return rc;
	static const char sql[] =
		"INSERT INTO groups (org_id, name, description, permissions) VALUES ($1::uuid, $2, coalesce($3, ''),"
		" coalesce($4::text[], '{}')) RETURNING idb_group_json(groups)::text, id";
	const char *p[] = {a->org_id, in->name, in->description, perms};
	if ((rc = idb_db_begin(db, err)) != 0) {
		free(perms);
		return rc;
	}
	PGresult *res = idb_db_query(db, sql, 4, p, err);
	free(perms);
	if (!res) {
		name_conflict(err, in->name);
		return finish(db, err ? err->code : IDB_EINTERNAL, err);
	}
	char id[37];
	idb_strlcpy(id, idb_db_str(res, 0, 1), sizeof(id));
	rc = idb_audit_write(db, a, "group.create", "group", id, NULL, idb_db_str(res, 0, 0), err);
	if (rc == 0 && !(*out = idb_json_from_db(idb_db_str(res, 0, 0))))
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "bad JSON from the database");
	PQclear(res);
	rc = finish(db, rc, err);
	if (rc != 0) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

/* Locks the group row (FOR UPDATE) and returns its JSON text (malloc'd). */
static int lock_group(idb_db *db, const char *org_id, const char *group_id, char **json, idb_err *err)
{
	*json = NULL;
	if (!idb_uuid_valid(group_id))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "group not found");
	static const char sql[] = "SELECT idb_group_json(g)::text FROM groups g"
				  " WHERE g.id = $1::uuid AND g.org_id = $2::uuid FOR UPDATE";
	const char *p[] = {group_id, org_id};
	PGresult *res = idb_db_query(db, sql, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = 0;
	if (PQntuples(res) != 1)
		rc = idb_err_set(err, IDB_ENOTFOUND, NULL, "group not found");
	else if (!(*json = strdup(idb_db_str(res, 0, 0))))
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	PQclear(res);
	return rc;
}

int idb_groups_update(idb_db *db, const idb_actor *a, const char *group_id, const idb_group_input *in,
		      idb_effects *fx, json_t **out, idb_err *err)
{
	*out = NULL;
	char *perms = NULL, *before = NULL;
	int rc = check_input(in, false, &perms, err);
	if (rc != 0)
		return rc;
	static const char sql[] =
		"UPDATE groups g SET name = coalesce($3, name), description = coalesce($4, description),"
		"       permissions = coalesce($5::text[], permissions), updated_at = now()"
		" WHERE g.id = $1::uuid AND g.org_id = $2::uuid RETURNING idb_group_json(g)::text";
	const char *p[] = {group_id, a->org_id, in->name, in->description, perms};
	PGresult *res = NULL;
	if ((rc = idb_db_begin(db, err)) != 0)
		goto done;
	if ((rc = lock_group(db, a->org_id, group_id, &before, err)) != 0)
		goto done;
	if (!(res = idb_db_query(db, sql, 5, p, err))) {
		name_conflict(err, in->name);
		rc = err ? err->code : IDB_EINTERNAL;
		goto done;
	}
	/* Name and permissions are part of every member's principal. */
	if (in->name || in->set_permissions)
		rc = members_to_effects(db, group_id, fx, err);
	if (rc == 0)
		rc = idb_audit_write(db, a, "group.update", "group", group_id, before, idb_db_str(res, 0, 0), err);
	if (rc == 0 && !(*out = idb_json_from_db(idb_db_str(res, 0, 0))))
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "bad JSON from the database");
done:
	PQclear(res);
	free(perms);
	free(before);
	if (!idb_db_in_tx(db))
		return rc;
	rc = finish(db, rc, err);
	if (rc != 0) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

int idb_groups_delete(idb_db *db, const idb_actor *a, const char *group_id, idb_effects *fx, idb_err *err)
{
	char *before = NULL;
	int rc = idb_db_begin(db, err);
	if (rc != 0)
		return rc;
	rc = lock_group(db, a->org_id, group_id, &before, err);
	if (rc == 0)
		rc = members_to_effects(db, group_id, fx, err);
	static const char sql[] = "DELETE FROM groups WHERE id = $1::uuid AND org_id = $2::uuid";
	const char *p[] = {group_id, a->org_id};
	if (rc == 0)
		rc = idb_db_exec(db, sql, 2, p, NULL, err);
	if (rc == 0)
		rc = idb_audit_write(db, a, "group.delete", "group", group_id, before, NULL, err);
	free(before);
	return finish(db, rc, err);
}

int idb_groups_members(idb_db *db, const char *org_id, const char *group_id, const char *limit, const char *cursor,
		       json_t **out, idb_err *err)
{
	*out = NULL;
	static const char first_sql[] =
		"SELECT idb_user_json(u)::text, lower(u.email), u.id FROM users u"
		" WHERE u.org_id = $1::uuid AND u.status <> 'deleted'"
		"   AND EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = u.id AND m.group_id = $2::uuid)"
		" ORDER BY lower(u.email), u.id LIMIT $3::int";
	static const char next_sql[] =
		"SELECT idb_user_json(u)::text, lower(u.email), u.id FROM users u"
		" WHERE u.org_id = $1::uuid AND u.status <> 'deleted'"
		"   AND EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = u.id AND m.group_id = $2::uuid)"
		"   AND (lower(u.email), u.id) > ($4, $5::uuid)"
		" ORDER BY lower(u.email), u.id LIMIT $3::int";
	char gid[37];
	int lim;
	int rc = idb_limit_parse(limit, 50, 200, &lim, err);
	if (rc != 0)
		return rc;
	char parts[2][256];
	if (cursor && (!idb_cursor_decode(cursor, parts, 2) || !idb_uuid_valid(parts[1])))
		return idb_err_set(err, IDB_EINVAL, "cursor", "cursor is not one this server issued");
	if (!idb_uuid_valid(group_id))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "group not found");
	if ((rc = idb_group_resolve(db, org_id, group_id, gid, err)) != 0)
		return rc;
	char ls[16];
	snprintf(ls, sizeof(ls), "%d", lim + 1);
	const char *p[] = {org_id, gid, ls, cursor ? parts[0] : NULL, cursor ? parts[1] : NULL};
	return idb_db_json_page(db, false, cursor ? next_sql : first_sql, cursor ? 5 : 3, p, lim, out, err);
}

int idb_membership_add_tx(idb_db *db, const char *org_id, const char *group_id, const char *user_id,
			  bool *changed, idb_err *err)
{
	/* A deactivated or deleted user's memberships are suspended; a new one
	 * is too, so that activation restores it with the others. */
	static const char sql[] =
		"INSERT INTO memberships (org_id, user_id, group_id, source, suspended)"
		" SELECT u.org_id, u.id, $2::uuid, 'manual', u.status IN ('inactive', 'deleted') FROM users u"
		"  WHERE u.id = $1::uuid AND u.org_id = $3::uuid"
		" ON CONFLICT (user_id, group_id, source) DO NOTHING";
	const char *p[] = {user_id, group_id, org_id};
	long n = 0;
	int rc = idb_db_exec(db, sql, 3, p, &n, err);
	if (changed)
		*changed = n > 0;
	return rc;
}

int idb_membership_remove_tx(idb_db *db, const char *org_id, const char *group_id, const char *user_id,
			     bool *changed, idb_err *err)
{
	static const char sql[] = "DELETE FROM memberships WHERE user_id = $1::uuid AND group_id = $2::uuid"
				  " AND org_id = $3::uuid AND source = 'manual'";
	const char *p[] = {user_id, group_id, org_id};
	long n = 0;
	int rc = idb_db_exec(db, sql, 3, p, &n, err);
	if (changed)
		*changed = n > 0;
	return rc;
}

static int user_in_org(idb_db *db, const char *org_id, const char *user_id, idb_err *err)
{
	if (!idb_uuid_valid(user_id))
		return idb_err_set(err, IDB_ENOTFOUND, "user_id", "user not found");
	static const char sql[] = "SELECT 1 FROM users WHERE id = $1::uuid AND org_id = $2::uuid FOR UPDATE";
	const char *p[] = {user_id, org_id};
	PGresult *res = idb_db_query(db, sql, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = PQntuples(res) == 1 ? 0 : idb_err_set(err, IDB_ENOTFOUND, "user_id", "user not found");
	PQclear(res);
	return rc;
}

static int member_change(idb_db *db, const idb_actor *a, const char *group_id, const char *user_id, bool add,
			 idb_effects *fx, json_t **out, idb_err *err)
{
	char *group = NULL;
	int rc = idb_db_begin(db, err);
	if (rc != 0)
		return rc;
	bool changed = false;
	rc = lock_group(db, a->org_id, group_id, &group, err);
	if (rc == 0)
		rc = user_in_org(db, a->org_id, user_id, err);
	if (rc == 0)
		rc = add ? idb_membership_add_tx(db, a->org_id, group_id, user_id, &changed, err)
			 : idb_membership_remove_tx(db, a->org_id, group_id, user_id, &changed, err);
	if (rc == 0 && !add && !changed)
		rc = idb_err_set(err, IDB_ENOTFOUND, NULL, "The user is not a manual member of this group.");
	if (rc == 0 && changed) {
		json_t *after = json_pack("{ss ss ss}", "user_id", user_id, "group_id", group_id, "source", "manual");
		char *s = after ? json_dumps(after, JSON_COMPACT) : NULL;
		json_decref(after);
		rc = idb_audit_write(db, a, add ? "group.member_add" : "group.member_remove", "group", group_id,
				     add ? NULL : s, add ? s : NULL, err);
		free(s);
		if (rc == 0)
			rc = idb_effects_user(fx, user_id, err);
	}
	if (rc == 0 && out) {
		static const char sql[] =
			"SELECT idb_user_json(u)::text FROM users u WHERE u.id = $1::uuid AND u.org_id = $2::uuid";
		const char *p[] = {user_id, a->org_id};
		rc = idb_db_json_one(db, sql, 2, p, "user", out, err);
	}
	free(group);
	rc = finish(db, rc, err);
	if (rc != 0 && out) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

int idb_groups_member_add(idb_db *db, const idb_actor *a, const char *group_id, const char *user_id,
			  idb_effects *fx, json_t **out, idb_err *err)
{
	*out = NULL;
	return member_change(db, a, group_id, user_id, true, fx, out, err);
}

int idb_groups_member_remove(idb_db *db, const idb_actor *a, const char *group_id, const char *user_id,
			     idb_effects *fx, idb_err *err)
{
	return member_change(db, a, group_id, user_id, false, fx, NULL, err);
}
