/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "sessions_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "util.h"

int idb_sessions_insert(idb_db *db, const idb_session_row *row, const idb_session_idp *idp, const char *ip,
			const char *user_agent, idb_err *err)
{
	static const char sql[] =
		"INSERT INTO sessions (id_hash, org_id, user_id, csrf_token, auth_method, connection_id, idp_subject,"
		" idp_session_index, idp_sid, idp_session_dump, ip, user_agent, expires_at)"
		" VALUES ($1, $2::uuid, $3::uuid, $4, $5, $6::uuid, $7, $8, $9, $10, $11, left($12, 512),"
		"         to_timestamp($13::bigint))";
	char exp[24];
	snprintf(exp, sizeof(exp), "%lld", (long long)row->expires_at);
	const char *p[] = {row->id_hash,
			   row->org_id,
			   row->user_id,
			   row->csrf_token,
			   row->auth_method,
			   idp ? idp->connection_id : NULL,
			   idp ? idp->subject : NULL,
			   idp ? idp->session_index : NULL,
			   idp ? idp->sid : NULL,
			   idp ? idp->session_dump : NULL,
			   ip,
			   user_agent,
			   exp};
	return idb_db_exec(db, sql, 13, p, NULL, err);
}

int idb_sessions_get(idb_db *db, const char *id_hash, long long idle_timeout_s, idb_session_row *out, idb_err *err)
{
	static const char sql[] =
		"SELECT id_hash, user_id, org_id, csrf_token, auth_method, coalesce(connection_id::text, ''),"
		"       extract(epoch FROM created_at)::bigint, extract(epoch FROM last_seen_at)::bigint,"
		"       extract(epoch FROM expires_at)::bigint,"
		"       expires_at > now() AND last_seen_at > now() - make_interval(secs => $2::bigint)"
		"  FROM sessions WHERE id_hash = $1";
	static const char del_sql[] = "DELETE FROM sessions WHERE id_hash = $1";
	char idle[24];
	snprintf(idle, sizeof(idle), "%lld", idle_timeout_s);
	const char *p[] = {id_hash, idle};
	PGresult *res = idb_db_query(db, sql, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "no session");
	}
	if (idb_db_str(res, 0, 9)[0] != 't') {
		PQclear(res);
		(void)idb_db_exec(db, del_sql, 1, p, NULL, NULL);
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "session expired");
	}
	memset(out, 0, sizeof(*out));
	idb_strlcpy(out->id_hash, idb_db_str(res, 0, 0), sizeof(out->id_hash));
	idb_strlcpy(out->user_id, idb_db_str(res, 0, 1), sizeof(out->user_id));
	idb_strlcpy(out->org_id, idb_db_str(res, 0, 2), sizeof(out->org_id));
	idb_strlcpy(out->csrf_token, idb_db_str(res, 0, 3), sizeof(out->csrf_token));
	idb_strlcpy(out->auth_method, idb_db_str(res, 0, 4), sizeof(out->auth_method));
	idb_strlcpy(out->connection_id, idb_db_str(res, 0, 5), sizeof(out->connection_id));
	out->created_at = strtoll(idb_db_str(res, 0, 6), NULL, 10);
	out->last_seen_at = strtoll(idb_db_str(res, 0, 7), NULL, 10);
	out->expires_at = strtoll(idb_db_str(res, 0, 8), NULL, 10);
	PQclear(res);
	return 0;
}

int idb_sessions_touch(idb_db *db, const char *id_hash, idb_err *err)
{
	static const char sql[] = "UPDATE sessions SET last_seen_at = now() WHERE id_hash = $1";
	const char *p[] = {id_hash};
	return idb_db_exec(db, sql, 1, p, NULL, err);
}

int idb_sessions_delete(idb_db *db, const char *id_hash, idb_err *err)
{
	static const char sql[] = "DELETE FROM sessions WHERE id_hash = $1";
	const char *p[] = {id_hash};
	return idb_db_exec(db, sql, 1, p, NULL, err);
}

int idb_sessions_delete_user(idb_db *db, const char *user_id, char (**hashes)[65], int *n, idb_err *err)
{
	static const char sql[] = "DELETE FROM sessions WHERE user_id = $1::uuid RETURNING id_hash";
	const char *p[] = {user_id};
	*hashes = NULL;
	*n = 0;
	PGresult *res = idb_db_query(db, sql, 1, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rows = PQntuples(res);
	if (rows > 0) {
		*hashes = calloc((size_t)rows, 65);
		if (!*hashes) {
			PQclear(res);
			return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		}
		for (int i = 0; i < rows; i++)
			idb_strlcpy((*hashes)[i], idb_db_str(res, i, 0), 65);
	}
	*n = rows;
	PQclear(res);
	return 0;
}

int idb_sessions_purge(idb_db *db, long long idle_timeout_s, long *removed, idb_err *err)
{
	static const char sql[] = "DELETE FROM sessions WHERE expires_at <= now()"
				  " OR last_seen_at <= now() - make_interval(secs => $1::bigint)";
	char idle[24];
	snprintf(idle, sizeof(idle), "%lld", idle_timeout_s);
	const char *p[] = {idle};
	return idb_db_exec(db, sql, 1, p, removed, err);
}

int idb_sessions_delete_idp(idb_db *db, const char *connection_id, const char *subject, const char *session_index,
			    const char *sid, char (**hashes)[65], int *n, idb_err *err)
{
	static const char sql[] =
		"DELETE FROM sessions WHERE connection_id = $1::uuid"
		" AND ($2::text IS NULL OR idp_subject = $2) AND ($3::text IS NULL OR idp_session_index = $3)"
		" AND ($4::text IS NULL OR idp_sid = $4) AND ($2::text IS NOT NULL OR $4::text IS NOT NULL)"
		" RETURNING id_hash";
	const char *p[] = {connection_id, subject, session_index, sid};
	*hashes = NULL;
	*n = 0;
	PGresult *res = idb_db_query(db, sql, 4, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rows = PQntuples(res);
	if (rows > 0) {
		*hashes = calloc((size_t)rows, 65);
		if (!*hashes) {
			PQclear(res);
			return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		}
		for (int i = 0; i < rows; i++)
			idb_strlcpy((*hashes)[i], idb_db_str(res, i, 0), 65);
	}
	*n = rows;
	PQclear(res);
	return 0;
}

int idb_sessions_idp_info(idb_db *db, const char *id_hash, char **subject, char **session_index, char **dump,
			  idb_err *err)
{
	static const char sql[] =
		"SELECT idp_subject, idp_session_index, idp_session_dump FROM sessions WHERE id_hash = $1";
	const char *p[] = {id_hash};
	*subject = *session_index = *dump = NULL;
	PGresult *res = idb_db_query(db, sql, 1, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "no session");
	}
	if (idb_db_val(res, 0, 0))
		*subject = strdup(idb_db_str(res, 0, 0));
	if (idb_db_val(res, 0, 1))
		*session_index = strdup(idb_db_str(res, 0, 1));
	if (idb_db_val(res, 0, 2))
		*dump = strdup(idb_db_str(res, 0, 2));
	PQclear(res);
	return 0;
}

int idb_sessions_idp_dump(idb_db *db, const char *connection_id, const char *subject, char **dump, idb_err *err)
{
	static const char sql[] = "SELECT idp_session_dump FROM sessions WHERE connection_id = $1::uuid AND idp_subject = $2"
				  " AND idp_session_dump IS NOT NULL ORDER BY created_at DESC LIMIT 1";
	const char *p[] = {connection_id, subject};
	*dump = NULL;
	PGresult *res = idb_db_query(db, sql, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	if (PQntuples(res) == 1)
		*dump = strdup(idb_db_str(res, 0, 0));
	PQclear(res);
	return 0;
}
