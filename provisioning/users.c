/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "roles.h"
#include "util.h"

static bool slug_valid(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > 63 || s[0] == '-')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
			return false;
	return true;
}

int idb_org_create(idb_db *db, const char *slug, const char *name, char out_id[37], idb_err *err)
{
	if (!slug_valid(slug))
		return idb_err_set(err, IDB_EINVAL, "slug",
				   "slug must be 1-63 characters of a-z, 0-9 and '-', not starting with '-'");
	if (!name || !*name || strlen(name) > 200)
		return idb_err_set(err, IDB_EINVAL, "name", "name must be 1-200 characters");
	static const char sql[] = "INSERT INTO organizations (slug, name) VALUES ($1, $2) RETURNING id";
	const char *p[] = {slug, name};
	PGresult *res = idb_db_query(db, sql, 2, p, err);
	if (!res) {
		if (err && err->code == IDB_EEXISTS)
			idb_err_set(err, IDB_EEXISTS, "slug", "organisation '%s' already exists", slug);
		return err ? err->code : IDB_EINTERNAL;
	}
	idb_strlcpy(out_id, idb_db_str(res, 0, 0), 37);
	PQclear(res);
	return 0;
}

int idb_org_find(idb_db *db, const char *slug, char out_id[37], idb_err *err)
{
	static const char sql[] = "SELECT id FROM organizations WHERE slug = $1";
	const char *p[] = {slug};
	PGresult *res = idb_db_query(db, sql, 1, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = 0;
	if (PQntuples(res) == 1)
		idb_strlcpy(out_id, idb_db_str(res, 0, 0), 37);
	else
		rc = idb_err_set(err, IDB_ENOTFOUND, "org", "no organisation '%s'", slug);
	PQclear(res);
	return rc;
}

static int user_insert(idb_db *db, const idb_user_new *u, bool if_absent, char out_id[37], bool *created,
		       idb_err *err)
{
	*created = false;
	out_id[0] = '\0';
	if (!u->email || !idb_email_valid(u->email))
		return idb_err_set(err, IDB_EINVAL, "email", "Invalid email format");
	if (u->name && idb_utf8_len(u->name) > 256)
		return idb_err_set(err, IDB_EINVAL, "name", "name must be at most 256 characters");
	const char *role = idb_role_name(u->role);
	if (!role)
		return idb_err_set(err, IDB_EINVAL, "role", "Invalid role");
	char hash[256];
	if (u->password && idb_password_hash(hash, sizeof(hash), u->password) != 0)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "password hashing failed");
	static const char sql[] =
		"INSERT INTO users (org_id, email, name, role, status, password_hash, created_via)"
		" VALUES ($1::uuid, $2, coalesce($3, ''), $4::user_role, $5::user_status, $6, $7) RETURNING id";
	/* The conflict target is the unique index users_org_email_key. */
	static const char sql_if_absent[] =
		"INSERT INTO users (org_id, email, name, role, status, password_hash, created_via)"
		" VALUES ($1::uuid, $2, coalesce($3, ''), $4::user_role, $5::user_status, $6, $7)"
		" ON CONFLICT (org_id, lower(email)) DO NOTHING RETURNING id";
	const char *p[] = {u->org_id, u->email,			      u->name, role, u->status ? u->status : "pending",
			   u->password ? hash : NULL, u->created_via ? u->created_via : "admin"};
	PGresult *res = idb_db_query(db, if_absent ? sql_if_absent : sql, 7, p, err);
	if (!res) {
		if (err && err->code == IDB_EEXISTS)
			idb_err_set(err, IDB_EEXISTS, "email", "a user with e-mail %s already exists", u->email);
		return err ? err->code : IDB_EINTERNAL;
	}
	if (PQntuples(res) == 1) {
		idb_strlcpy(out_id, idb_db_str(res, 0, 0), 37);
		*created = true;
	}
	PQclear(res);
	return 0;
}

int idb_user_create(idb_db *db, const idb_user_new *u, char out_id[37], idb_err *err)
{
	bool created;
	return user_insert(db, u, false, out_id, &created, err);
}

int idb_user_create_if_absent(idb_db *db, const idb_user_new *u, char out_id[37], bool *created, idb_err *err)
{
	return user_insert(db, u, true, out_id, created, err);
}

int idb_user_find_by_email(idb_db *db, const char *org_id, const char *email, char out_id[37], idb_err *err)
{
	static const char sql[] = "SELECT id FROM users WHERE org_id = $1::uuid AND lower(email) = lower($2)";
	const char *p[] = {org_id, email};
	PGresult *res = idb_db_query(db, sql, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = 0;
	if (PQntuples(res) == 1)
		idb_strlcpy(out_id, idb_db_str(res, 0, 0), 37);
	else
		rc = idb_err_set(err, IDB_ENOTFOUND, "email", "no user %s", email);
	PQclear(res);
	return rc;
}

int idb_activity_record(idb_db *db, const char *org_id, const char *user_id, const char *kind, const char *reason,
			const char *ip, const char *details_json, idb_err *err)
{
	static const char sql[] = "INSERT INTO activity (org_id, user_id, kind, reason, ip, details)"
				  " VALUES ($1::uuid, $2::uuid, $3, $4, $5, coalesce($6::jsonb, '{}'))";
	const char *p[] = {org_id, user_id, kind, reason, ip, details_json};
	return idb_db_exec(db, sql, 6, p, NULL, err);
}

int idb_audit_record(idb_db *db, const idb_audit_entry *e, idb_err *err)
{
	static const char sql[] =
		"INSERT INTO audit_log (org_id, actor_id, actor_email, action, target_type, target_id, before, after,"
		" ip, request_id) VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10)";
	const char *p[] = {e->org_id,	 e->actor_id,	 e->actor_email, e->action, e->target_type,
			   e->target_id, e->before_json, e->after_json,	 e->ip,	    e->request_id};
	return idb_db_exec(db, sql, 10, p, NULL, err);
}

static void login_failure(idb_db *db, const char *org_id, const char *user_id, const char *reason, const char *ip)
{
	idb_err e;
	if (org_id && idb_activity_record(db, org_id, user_id, "login_failure", reason, ip,
					  "{\"method\":\"password\"}", &e) != 0)
		idb_log_warn("could not record login failure: %s", e.msg);
}

int idb_user_password_login(idb_db *db, const char *org_slug, const char *email, const char *password,
			    const idb_login_policy *policy, const char *ip, idb_login_result *out, idb_err *err)
{
	memset(out, 0, sizeof(*out));
	/* A lock has expired when it is older than the configured duration. */
	static const char find_sql[] =
		"SELECT u.id, u.org_id, u.password_hash, u.status::text, u.failed_logins,"
		"       u.locked_at IS NOT NULL AND ($3::bigint = 0 OR u.locked_at > now() - make_interval(secs => $3::bigint)),"
		"       u.locked_at IS NOT NULL"
		"  FROM users u JOIN organizations o ON o.id = u.org_id"
		" WHERE lower(u.email) = lower($1) AND ($2::text IS NULL OR o.slug = $2)"
		" ORDER BY (u.status = 'active') DESC, u.created_at LIMIT 8";
	static const char fail_sql[] =
		"UPDATE users SET failed_logins = failed_logins + 1, last_failed_login_at = now(),"
		"       locked_at = CASE WHEN locked_at IS NULL AND failed_logins + 1 >= $2::int THEN now() ELSE locked_at END"
		" WHERE id = $1::uuid RETURNING failed_logins, locked_at IS NOT NULL";
	static const char ok_sql[] =
		"UPDATE users SET failed_logins = 0, locked_at = NULL, last_login_at = now(), last_active_at = now()"
		" WHERE id = $1::uuid";
	static const char unlock_sql[] = "UPDATE users SET failed_logins = 0, locked_at = NULL WHERE id = $1::uuid";

	char dur[24];
	snprintf(dur, sizeof(dur), "%lld", policy->lockout_duration_s);
	const char *p[] = {email, org_slug, dur};
	PGresult *res = idb_db_query(db, find_sql, 3, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int n = PQntuples(res);
	if (n == 0) {
		PQclear(res);
		idb_password_verify(NULL, password); /* same work as a real check */
		idb_strlcpy(out->reason, "unknown_user", sizeof(out->reason));
		return idb_err_set(err, IDB_EAUTH, NULL, "Invalid email or password");
	}
	/* The same e-mail may exist in several organisations: the password picks. */
	int match = -1;
	for (int i = 0; i < n && match < 0; i++)
		if (idb_password_verify(idb_db_val(res, i, 2), password))
			match = i;
	int row = match >= 0 ? match : 0;
	idb_strlcpy(out->user_id, idb_db_str(res, row, 0), sizeof(out->user_id));
	idb_strlcpy(out->org_id, idb_db_str(res, row, 1), sizeof(out->org_id));
	bool has_password = idb_db_val(res, row, 2) != NULL;
	char status[16];
	idb_strlcpy(status, idb_db_str(res, row, 3), sizeof(status));
	bool locked = idb_db_str(res, row, 5)[0] == 't';
	bool lock_expired = !locked && idb_db_str(res, row, 6)[0] == 't';
	PQclear(res);

	const char *uid[] = {out->user_id};
	if (match < 0) {
		if (!strcmp(status, "deleted")) {
			idb_strlcpy(out->reason, "deleted", sizeof(out->reason));
		} else {
			char thr[16];
			snprintf(thr, sizeof(thr), "%d", policy->lockout_threshold);
			if (lock_expired && idb_db_exec(db, unlock_sql, 1, uid, NULL, err) != 0)
				return err->code;
			const char *pf[] = {out->user_id, thr};
			PGresult *fr = idb_db_query(db, fail_sql, 2, pf, err);
			if (!fr)
				return err ? err->code : IDB_EINTERNAL;
			out->failed_logins = (int)strtol(idb_db_str(fr, 0, 0), NULL, 10);
			bool now_locked = idb_db_str(fr, 0, 1)[0] == 't';
			PQclear(fr);
			out->locked_now = now_locked && !locked;
			idb_strlcpy(out->reason,
				    locked ? "locked" : (has_password ? (out->locked_now ? "bad_password_locked" : "bad_password")
								       : "no_password"),
				    sizeof(out->reason));
		}
		login_failure(db, out->org_id, out->user_id, out->reason, ip);
		return idb_err_set(err, IDB_EAUTH, NULL, "Invalid email or password");
	}
	if (!strcmp(status, "deleted")) {
		idb_strlcpy(out->reason, "deleted", sizeof(out->reason));
		login_failure(db, out->org_id, out->user_id, out->reason, ip);
		return idb_err_set(err, IDB_EAUTH, NULL, "Invalid email or password");
	}
	if (locked) {
		idb_strlcpy(out->reason, "locked", sizeof(out->reason));
		login_failure(db, out->org_id, out->user_id, out->reason, ip);
		return idb_err_set(err, IDB_ELOCKED, NULL,
				   "Your account is locked after too many failed sign-in attempts. Try again later or "
				   "contact your administrator.");
	}
	if (!strcmp(status, "inactive")) {
		idb_strlcpy(out->reason, "deactivated", sizeof(out->reason));
		login_failure(db, out->org_id, out->user_id, out->reason, ip);
		return idb_err_set(err, IDB_EFORBIDDEN, NULL,
				   "Your account is deactivated. Contact your administrator.");
	}
	if (!strcmp(status, "pending")) {
		idb_strlcpy(out->reason, "pending", sizeof(out->reason));
		login_failure(db, out->org_id, out->user_id, out->reason, ip);
		return idb_err_set(err, IDB_EFORBIDDEN, NULL,
				   "Your account is not activated yet. Use the link in your invitation e-mail.");
	}
	if (idb_db_exec(db, ok_sql, 1, uid, NULL, err) != 0)
		return err->code;
	idb_strlcpy(out->reason, "ok", sizeof(out->reason));
	if (idb_activity_record(db, out->org_id, out->user_id, "login_success", NULL, ip, "{\"method\":\"password\"}",
				err) != 0)
		return err->code;
	return 0;
}
