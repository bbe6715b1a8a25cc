/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "principal.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "db.h"
#include "roles.h"
#include "util.h"

int idb_principal_load(idb_db *db, const char *user_id, idb_principal *out, idb_err *err)
{
	/* Group permissions only count for memberships that are not suspended. */
	static const char sql[] =
		"SELECT u.id, u.org_id, o.slug, o.name, u.email, u.name, u.role::text, u.status::text,"
		"       u.locked_at IS NOT NULL, u.password_hash IS NOT NULL,"
		"       coalesce((SELECT string_agg(g.name, ', ' ORDER BY lower(g.name)) FROM groups g"
		"                 WHERE g.id IN (SELECT m.group_id FROM memberships m"
		"                                WHERE m.user_id = u.id AND NOT m.suspended)), ''),"
		"       coalesce((SELECT array_to_string(array_agg(DISTINCT p), ',') FROM groups g,"
		"                 unnest(g.permissions) p WHERE g.id IN (SELECT m.group_id FROM memberships m"
		"                                WHERE m.user_id = u.id AND NOT m.suspended)), '')"
		"  FROM users u JOIN organizations o ON o.id = u.org_id WHERE u.id = $1::uuid";
	memset(out, 0, sizeof(*out));
	const char *p[] = {user_id};
	PGresult *res = idb_db_query(db, sql, 1, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "user not found");
	}
	idb_strlcpy(out->user_id, idb_db_str(res, 0, 0), sizeof(out->user_id));
	idb_strlcpy(out->org_id, idb_db_str(res, 0, 1), sizeof(out->org_id));
	idb_strlcpy(out->org_slug, idb_db_str(res, 0, 2), sizeof(out->org_slug));
	idb_strlcpy(out->org_name, idb_db_str(res, 0, 3), sizeof(out->org_name));
	idb_strlcpy(out->email, idb_db_str(res, 0, 4), sizeof(out->email));
	idb_strlcpy(out->name, idb_db_str(res, 0, 5), sizeof(out->name));
	out->role = idb_role_parse(idb_db_str(res, 0, 6));
	idb_strlcpy(out->status, idb_db_str(res, 0, 7), sizeof(out->status));
	out->locked = idb_db_str(res, 0, 8)[0] == 't';
	out->has_password = idb_db_str(res, 0, 9)[0] == 't';
	out->groups = strdup(idb_db_str(res, 0, 10));
	out->perms = idb_role_perms(out->role);
	char *perms = strdup(idb_db_str(res, 0, 11));
	PQclear(res);
	if (!out->groups || !perms) {
		free(perms);
		idb_principal_clear(out);
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	}
	for (char *save = NULL, *tok = strtok_r(perms, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		out->perms |= idb_perm_parse(tok);
	free(perms);
	return 0;
}

void idb_principal_clear(idb_principal *p)
{
	if (p) {
		free(p->groups);
		p->groups = NULL;
	}
}

#define PRINCIPAL_JSON_VERSION 1

char *idb_principal_to_json(const idb_principal *p)
{
	json_t *o = json_pack("{si ss ss ss ss ss ss si ss sb sI ss sb}", "v", PRINCIPAL_JSON_VERSION, "uid", p->user_id,
			      "oid", p->org_id, "os", p->org_slug, "on", p->org_name, "e", p->email, "n", p->name,
			      "r", p->role, "s", p->status, "l", p->locked, "p", (json_int_t)p->perms, "g",
			      p->groups ? p->groups : "", "pw", p->has_password);
	if (!o)
		return NULL;
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

bool idb_principal_from_json(const char *json, idb_principal *out)
{
	memset(out, 0, sizeof(*out));
	json_t *o = json_loads(json, 0, NULL);
	if (!o)
		return false;
	int v = 0, role = -1, locked = 0, pw = 0;
	json_int_t perms = 0;
	const char *uid, *oid, *os, *on, *e, *n, *s, *g;
	bool ok = json_unpack(o, "{si ss ss ss ss ss ss si ss sb sI ss sb}", "v", &v, "uid", &uid, "oid", &oid, "os", &os,
			      "on", &on, "e", &e, "n", &n, "r", &role, "s", &s, "l", &locked, "p", &perms, "g", &g, "pw",
			      &pw) == 0 &&
		  v == PRINCIPAL_JSON_VERSION && role >= 0 && role < IDB_ROLE_COUNT;
	if (ok) {
		idb_strlcpy(out->user_id, uid, sizeof(out->user_id));
		idb_strlcpy(out->org_id, oid, sizeof(out->org_id));
		idb_strlcpy(out->org_slug, os, sizeof(out->org_slug));
		idb_strlcpy(out->org_name, on, sizeof(out->org_name));
		idb_strlcpy(out->email, e, sizeof(out->email));
		idb_strlcpy(out->name, n, sizeof(out->name));
		idb_strlcpy(out->status, s, sizeof(out->status));
		out->role = role;
		out->locked = locked;
		out->has_password = pw;
		out->perms = (uint32_t)perms;
		out->groups = strdup(g);
		ok = out->groups != NULL;
	}
	json_decref(o);
	return ok;
}
