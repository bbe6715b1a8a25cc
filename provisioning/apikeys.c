/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "apikeys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "util.h"

int idb_apikey_create(idb_db *db, const char *org_id, const char *user_id, const char *name, const char *scopes,
		      int64_t expires_at, char out_key[IDB_APIKEY_MAX], char out_id[37], idb_err *err)
{
	if (!name || !*name || strlen(name) > 200)
		return idb_err_set(err, IDB_EINVAL, "name", "name must be 1-200 characters");
	char tok[48], hash[65], prefix[16], exp[24];
	idb_random_token(tok, sizeof(tok), 32);
	snprintf(out_key, IDB_APIKEY_MAX, "idb_%s", tok);
	idb_sha256_hex(hash, out_key, strlen(out_key));
	snprintf(prefix, sizeof(prefix), "%.12s", out_key);
	snprintf(exp, sizeof(exp), "%lld", (long long)expires_at);
	static const char sql[] =
		"INSERT INTO api_keys (org_id, user_id, name, key_hash, prefix, scopes, expires_at)"
		" VALUES ($1::uuid, $2::uuid, $3, $4, $5, string_to_array(coalesce($6, ''), ',')::text[],"
		"         CASE WHEN $7::bigint = 0 THEN NULL ELSE to_timestamp($7::bigint) END) RETURNING id";
	const char *p[] = {org_id, user_id, name, hash, prefix, scopes && *scopes ? scopes : NULL, exp};
	PGresult *res = idb_db_query(db, sql, 7, p, err);
	if (!res) {
		memset(out_key, 0, IDB_APIKEY_MAX);
		return err ? err->code : IDB_EINTERNAL;
	}
	idb_strlcpy(out_id, idb_db_str(res, 0, 0), 37);
	PQclear(res);
	return 0;
}

int idb_apikey_resolve(idb_db *db, const char *key_hash, idb_apikey_info *out, idb_err *err)
{
	static const char sql[] =
		"SELECT id, user_id, org_id, array_to_string(scopes, ','),"
		"       coalesce(extract(epoch FROM expires_at)::bigint, 0)"
		"  FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL AND disabled_at IS NULL"
		"   AND (expires_at IS NULL OR expires_at > now())";
	const char *p[] = {key_hash};
	PGresult *res = idb_db_query(db, sql, 1, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "unknown API key");
	}
	memset(out, 0, sizeof(*out));
	idb_strlcpy(out->key_id, idb_db_str(res, 0, 0), sizeof(out->key_id));
	idb_strlcpy(out->user_id, idb_db_str(res, 0, 1), sizeof(out->user_id));
	idb_strlcpy(out->org_id, idb_db_str(res, 0, 2), sizeof(out->org_id));
	idb_strlcpy(out->scopes, idb_db_str(res, 0, 3), sizeof(out->scopes));
	out->expires_at = strtoll(idb_db_str(res, 0, 4), NULL, 10);
	PQclear(res);
	return 0;
}

int idb_apikey_touch(idb_db *db, const char *key_id, idb_err *err)
{
	static const char sql[] = "UPDATE api_keys SET last_used_at = now() WHERE id = $1::uuid"
				  " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')";
	const char *p[] = {key_id};
	return idb_db_exec(db, sql, 1, p, NULL, err);
}
