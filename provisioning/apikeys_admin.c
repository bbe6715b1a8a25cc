/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "apikeys_admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "db.h"
#include "roles.h"
#include "util.h"

int idb_apikeys_list(idb_db *db, const char *org_id, const char *user_id, json_t **out, idb_err *err)
{
	*out = NULL;
	if (!idb_uuid_valid(user_id))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "user not found");
	static const char user_sql[] = "SELECT 1 FROM users WHERE id = $1::uuid AND org_id = $2::uuid";
	static const char sql[] =
		"SELECT coalesce(json_agg(idb_apikey_json(k) ORDER BY k.created_at DESC, k.id), '[]')::text"
		"  FROM api_keys k WHERE k.user_id = $1::uuid AND k.org_id = $2::uuid";
	const char *p[] = {user_id, org_id};
	PGresult *res = idb_db_query(db, user_sql, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int n = PQntuples(res);
	PQclear(res);
	if (n != 1)
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "user not found");
	json_t *items = NULL;
	int rc = idb_db_json_one(db, sql, 2, p, "user", &items, err);
	if (rc == 0 && !(*out = json_pack("{so}", "items", items)))
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	return rc;
}

static bool scope_valid(const char *s)
{
	return s && (strcmp(s, "events.write") == 0 || idb_perm_parse(s) != 0);
}

static int finish(idb_db *db, int rc, idb_err *err)
{
	if (rc == 0)
		rc = idb_db_commit(db, err);
	if (rc != 0)
		idb_db_rollback(db);
	return rc;
}

int idb_apikeys_create(idb_db *db, const idb_actor *a, const char *user_id, const idb_apikey_input *in,
		       char out_key[IDB_APIKEY_MAX], json_t **out, idb_err *err)
{
	*out = NULL;
	out_key[0] = '\0';
	if (!idb_uuid_valid(user_id))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "user not found");
	if (!in->name || !in->name[0] || strlen(in->name) > 200)
		return idb_err_set(err, IDB_EINVAL, "name", "name must be 1-200 characters");
	if (in->nscopes > 16)
		return idb_err_set(err, IDB_EINVAL, "scopes", "too many scopes");
	char scopes[512] = "";
	size_t o = 0;
	for (size_t i = 0; i < in->nscopes; i++) {
		if (!scope_valid(in->scopes[i]))
			return idb_err_set(err, IDB_EINVAL, "scopes", "Unknown scope: %.64s (use events.write or a permission name)",
					   in->scopes[i] ? in->scopes[i] : "(not a string)");
		o += (size_t)snprintf(scopes + o, sizeof(scopes) - o, "%s%s", o ? "," : "", in->scopes[i]);
	}
	int64_t expires = 0;
	if (in->expires_at && (!idb_rfc3339_parse(in->expires_at, &expires) || expires <= idb_now_s()))
		return idb_err_set(err, IDB_EINVAL, "expires_at", "expires_at must be an RFC 3339 time in the future");
	static const char user_sql[] = "SELECT status::text FROM users WHERE id = $1::uuid AND org_id = $2::uuid FOR SHARE";
	static const char json_sql[] = "SELECT idb_apikey_json(k)::text FROM api_keys k WHERE k.id = $1::uuid";
	const char *p[] = {user_id, a->org_id};
	int rc = idb_db_begin(db, err);
	if (rc != 0)
		return rc;
	PGresult *res = idb_db_query(db, user_sql, 2, p, err);
	if (!res)
		rc = err ? err->code : IDB_EINTERNAL;
	else if (PQntuples(res) != 1)
		rc = idb_err_set(err, IDB_ENOTFOUND, NULL, "user not found");
	else if (strcmp(idb_db_str(res, 0, 0), "deleted") == 0)
		rc = idb_err_set(err, IDB_ECONFLICT, NULL, "The user is deleted; restore them first.");
	PQclear(res);
	char key_id[37];
	if (rc == 0)
		rc = idb_apikey_create(db, a->org_id, user_id, in->name, scopes, expires, out_key, key_id, err);
	const char *pk[] = {key_id};
	if (rc == 0)
		rc = idb_db_json_one(db, json_sql, 1, pk, "API key", out, err);
	char *after = rc == 0 ? json_dumps(*out, JSON_COMPACT) : NULL;
	if (rc == 0)
		rc = idb_audit_write(db, a, "apikey.create", "api_key", key_id, NULL, after, err);
	free(after);
	rc = finish(db, rc, err);
	if (rc != 0) {
		sodium_memzero(out_key, IDB_APIKEY_MAX);
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

int idb_apikeys_revoke(idb_db *db, const idb_actor *a, const char *key_id, idb_effects *fx, json_t **out,
		       idb_err *err)
{
	*out = NULL;
	if (!idb_uuid_valid(key_id))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "API key not found");
	static const char lock_sql[] = "SELECT idb_apikey_json(k)::text, k.key_hash, k.revoked_at IS NOT NULL"
				       "  FROM api_keys k WHERE k.id = $1::uuid AND k.org_id = $2::uuid FOR UPDATE";
	static const char sql[] = "UPDATE api_keys k SET revoked_at = now() WHERE k.id = $1::uuid"
				  " RETURNING idb_apikey_json(k)::text";
	const char *p[] = {key_id, a->org_id};
	int rc = idb_db_begin(db, err);
	if (rc != 0)
		return rc;
	PGresult *res = idb_db_query(db, lock_sql, 2, p, err), *up = NULL;
	if (!res)
		rc = err ? err->code : IDB_EINTERNAL;
	else if (PQntuples(res) != 1)
		rc = idb_err_set(err, IDB_ENOTFOUND, NULL, "API key not found");
	bool already = rc == 0 && idb_db_str(res, 0, 2)[0] == 't';
	if (rc == 0)
		rc = idb_effects_key(fx, idb_db_str(res, 0, 1), err);
	if (rc == 0 && !already) {
		if (!(up = idb_db_query(db, sql, 1, p, err)))
			rc = err ? err->code : IDB_EINTERNAL;
		if (rc == 0)
			rc = idb_audit_write(db, a, "apikey.revoke", "api_key", key_id, idb_db_str(res, 0, 0),
					     idb_db_str(up, 0, 0), err);
	}
	if (rc == 0 && !(*out = idb_json_from_db(already ? idb_db_str(res, 0, 0) : idb_db_str(up, 0, 0))))
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "bad JSON from the database");
	PQclear(res);
	PQclear(up);
	rc = finish(db, rc, err);
	if (rc != 0) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}
