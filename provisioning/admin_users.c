/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "admin_users.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "groups.h"
#include "log.h"
#include "outbox_db.h"
#include "roles.h"
#include "util.h"

/* --- list --- */

typedef struct sqlbuf {
	char s[3072];
	size_t n;
	bool overflow;
} sqlbuf;

/* Appends a static fragment; fmt may contain a %d for a parameter number. */
__attribute__((format(printf, 2, 3))) static void sql_add(sqlbuf *b, const char *fmt, ...)
{
	if (b->overflow)
		return;
	va_list ap;
	va_start(ap, fmt);
	int w = vsnprintf(b->s + b->n, sizeof(b->s) - b->n, fmt, ap);
	va_end(ap);
	if (w < 0 || (size_t)w >= sizeof(b->s) - b->n)
		b->overflow = true;
	else
		b->n += (size_t)w;
}

/* '%' + q with LIKE's metacharacters escaped + '%'; malloc'd. */
static char *like_pattern(const char *q)
{
	size_t n = strlen(q);
	char *out = malloc(2 * n + 3);
	if (!out)
		return NULL;
	size_t o = 0;
	out[o++] = '%';
	for (; *q; q++) {
		if (*q == '%' || *q == '_' || *q == '\\')
			out[o++] = '\\';
		out[o++] = *q;
	}
	out[o++] = '%';
	out[o] = '\0';
	return out;
}

/* Largest candidate set that is sorted rather than walked in order. */
#define CANDIDATE_MAX 7000
/* Rows of the list order a text search reads before it asks the trigram
 * index instead (an index-only walk of this many takes a few ms). */
#define TEXT_WALK_ROWS 10000

static int count_limited(idb_db *db, const char *sql, int n, const char *const *p, long *out, idb_err *err)
{
	PGresult *res = idb_db_query(db, sql, n, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	*out = strtol(idb_db_str(res, 0, 0), NULL, 10);
	PQclear(res);
	return 0;
}

static int count_group(idb_db *db, const char *group_id, long *out, idb_err *err)
{
	static const char sql[] = "SELECT count(*) FROM (SELECT 1 FROM memberships WHERE group_id = $1::uuid"
				  " LIMIT 7001) s";
	const char *p[] = {group_id};
	return count_limited(db, sql, 1, p, out, err);
}

static int count_login(idb_db *db, const char *org_id, const char *after, const char *before, long *out,
		       idb_err *err)
{
	static const char sql[] =
		"SELECT count(*) FROM (SELECT 1 FROM user_logins WHERE org_id = $1::uuid"
		" AND last_login_at >= coalesce(to_timestamp($2::double precision), '-infinity')"
		" AND last_login_at < coalesce(to_timestamp($3::double precision), 'infinity') LIMIT 7001) s";
	const char *p[] = {org_id, after, before};
	return count_limited(db, sql, 3, p, out, err);
}

int idb_users_list(idb_db *db, const char *org_id, const idb_user_filter *f, json_t **out, idb_err *err)
{
	*out = NULL;
	int lim;
	int rc = idb_limit_parse(f->limit, 50, 200, &lim, err);
	if (rc != 0)
		return rc;
	if (f->role && idb_role_parse(f->role) < 0)
		return idb_err_set(err, IDB_EINVAL, "role", "Invalid role (use readonly, train, configure or admin)");
	static const char *const statuses[] = {"pending", "active", "inactive", "deleted"};
	bool status_ok = !f->status;
	for (size_t i = 0; f->status && i < 4; i++)
		status_ok = status_ok || strcmp(f->status, statuses[i]) == 0;
	if (!status_ok)
		return idb_err_set(err, IDB_EINVAL, "status", "Invalid status (use pending, active, inactive or deleted)");
	int64_t after = 0, before = 0;
	if (f->last_login_after && !idb_rfc3339_parse(f->last_login_after, &after))
		return idb_err_set(err, IDB_EINVAL, "last_login_after", "Use an RFC 3339 time such as 2024-05-01T00:00:00Z");
	if (f->last_login_before && !idb_rfc3339_parse(f->last_login_before, &before))
		return idb_err_set(err, IDB_EINVAL, "last_login_before", "Use an RFC 3339 time such as 2024-05-01T00:00:00Z");
	if (f->q && (strlen(f->q) > 200 || !f->q[0]))
		return idb_err_set(err, IDB_EINVAL, "q", "q must be 1-200 characters");
	char parts[2][256];
	if (f->cursor && (!idb_cursor_decode(f->cursor, parts, 2) || !idb_uuid_valid(parts[1])))
		return idb_err_set(err, IDB_EINVAL, "cursor", "cursor is not one this server issued");
	char group_id[37];
	if (f->group) {
		if ((rc = idb_group_resolve(db, org_id, f->group, group_id, err)) != 0)
			return rc == IDB_ENOTFOUND ? idb_err_set(err, IDB_EINVAL, "group", "Group not found") : rc;
	}

	/* A page is normally read in (lower(email), id) order from
	 * user_search's covering index, filtering as it goes without heap
	 * visits: quick while matches are dense. For a sparse
	 * group or last-login range that walk would visit many rows, so when
	 * the filter's own index says it has at most CANDIDATE_MAX rows, those
	 * candidates are materialised first and sorted instead. */
	enum { DRIVE_ORDER, DRIVE_GROUP, DRIVE_LOGIN } drive = DRIVE_ORDER;
	char after_s[24], before_s[24], lim_s[16];
	if (f->last_login_after)
		snprintf(after_s, sizeof(after_s), "%lld", (long long)after);
	if (f->last_login_before)
		snprintf(before_s, sizeof(before_s), "%lld", (long long)before);
	long best = CANDIDATE_MAX + 1;
	if (f->group) {
		long n;
		if ((rc = count_group(db, group_id, &n, err)) != 0)
			return rc;
		if (n < best) {
			best = n;
			drive = DRIVE_GROUP;
		}
	}
	if (f->last_login_after || f->last_login_before) {
		long n;
		if ((rc = count_login(db, org_id, f->last_login_after ? after_s : NULL,
				      f->last_login_before ? before_s : NULL, &n, err)) != 0)
			return rc;
		if (n < best) {
			best = n;
			drive = DRIVE_LOGIN;
		}
	}

	char *pattern = f->q ? like_pattern(f->q) : NULL;
	if (f->q && !pattern)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	/* Text matches may cluster anywhere in e-mail order (a first name is a
	 * prefix), so a walk in order may pass most of the table before the
	 * first one, while an index of the text costs a heap visit per match.
	 * The page is read by walking at most TEXT_WALK_ROWS rows; only when
	 * that leaves the page short although more rows follow does the same
	 * statement fall back to the indexed candidates, sorted: trigrams for
	 * q of three characters or more, the one- and two-character grams of
	 * migration 009 below that. */
	size_t q_chars = 0;
	for (const char *c = f->q; c && *c; c++)
		q_chars += ((unsigned char)*c & 0xC0) != 0x80;
	bool text_walk = drive == DRIVE_ORDER && pattern;
	bool short_q = q_chars < 3;
	/* The joined text matches exactly when one part does, unless q itself
	 * contains the line break that joins them. */
	bool text_parts = pattern && strchr(f->q, '\n') != NULL;

	/* Assembled from static fragments only; every value is a parameter.
	 * The inner query picks the page from user_search (index-only where it
	 * walks); the JSON is built for those rows. */
	const char *p[16];
	int np = 0, pat_n = 0, cur_n = 0;
	sqlbuf b = {.n = 0};
	char filters[1024];
	sqlbuf fb = {.n = 0};
	p[np++] = org_id; /* $1 */
	snprintf(lim_s, sizeof(lim_s), "%d", lim + 1);
	p[np++] = lim_s; /* $2 */
	if (f->cursor) {
		cur_n = np + 1;
		p[np++] = parts[0];
		p[np++] = parts[1];
	}
	int q_n = 0;
	if (pattern) {
		pat_n = ++np;
		p[np - 1] = pattern;
		if (short_q) {
			q_n = ++np;
			p[np - 1] = f->q;
		}
	}
	/* The conditions on a user_search row s besides org and cursor. */
	if (f->status) {
		sql_add(&fb, " AND s.status = $%d::user_status", ++np);
		p[np - 1] = f->status;
	} else {
		sql_add(&fb, " AND s.status <> 'deleted'");
	}
	if (f->role) {
		sql_add(&fb, " AND s.role = $%d::user_role", ++np);
		p[np - 1] = f->role;
	}
	if (f->group && drive != DRIVE_GROUP) {
		sql_add(&fb, " AND EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = s.user_id AND m.group_id = $%d::uuid)",
			++np);
		p[np - 1] = group_id;
	}
	/* Login times live in user_logins (they change with every sign-in);
	 * the range on a row l of it either drives (DRIVE_LOGIN) or filters. */
	char login_sql[160] = "";
	if (f->last_login_after) {
		p[np++] = after_s;
		snprintf(login_sql, sizeof(login_sql), " AND l.last_login_at >= to_timestamp($%d::double precision)", np);
	}
	if (f->last_login_before) {
		p[np++] = before_s;
		size_t used = strlen(login_sql);
		snprintf(login_sql + used, sizeof(login_sql) - used,
			 " AND l.last_login_at < to_timestamp($%d::double precision)", np);
	}
	if (login_sql[0] && drive != DRIVE_LOGIN)
		sql_add(&fb, " AND EXISTS (SELECT 1 FROM user_logins l WHERE l.user_id = s.user_id%s)", login_sql);
	if (fb.overflow || fb.n >= sizeof(filters)) {
		free(pattern);
		return idb_err_set(err, IDB_EINTERNAL, NULL, "list query too long");
	}
	memcpy(filters, fb.s, fb.n + 1);
	char cursor_sql[96] = "";
	if (f->cursor)
		snprintf(cursor_sql, sizeof(cursor_sql), " AND (s.email_lc, s.user_id) > ($%d, $%d::uuid)", cur_n,
			 cur_n + 1);
	char text_sql[160] = "";
	if (pattern)
		snprintf(text_sql, sizeof(text_sql), " AND (s.email_lc LIKE lower($%d) OR s.name_lc LIKE lower($%d))",
			 pat_n, pat_n);

	if (drive == DRIVE_GROUP) {
		sql_add(&b, "WITH c AS MATERIALIZED (SELECT DISTINCT user_id AS id FROM memberships"
			    " WHERE group_id = $%d::uuid) ", ++np);
		p[np - 1] = group_id;
	} else if (drive == DRIVE_LOGIN) {
		sql_add(&b, "WITH c AS MATERIALIZED (SELECT l.user_id AS id FROM user_logins l WHERE l.org_id = $1::uuid%s) ",
			login_sql);
	}
	if (!text_walk) {
		sql_add(&b,
			"SELECT idb_user_json(u)::text, k.e, k.id FROM (SELECT s.user_id AS id, s.email_lc AS e FROM %s"
			" WHERE s.org_id = $1::uuid%s%s%s ORDER BY s.email_lc, s.user_id LIMIT $2::int) k"
			" JOIN users u ON u.id = k.id ORDER BY k.e, k.id",
			drive == DRIVE_ORDER ? "user_search s" : "c JOIN user_search s ON s.user_id = c.id", filters,
			text_sql, cursor_sql);
	} else {
		/* The indexed candidates: the joined text contains q. For a short
		 * q the gram set says so exactly; text_sql is still applied. */
		char cand_sql[200];
		if (short_q)
			snprintf(cand_sql, sizeof(cand_sql),
				 "idb_short_grams(s.email_lc || E'\\n' || s.name_lc) @> ARRAY[lower($%d)]", q_n);
		else
			snprintf(cand_sql, sizeof(cand_sql), "(s.email_lc || E'\\n' || s.name_lc) LIKE lower($%d)", pat_n);
		/* w: the matches among the next TEXT_WALK_ROWS rows; z: whether
		 * more rows follow them. The indexed branch sorts on
		 * email_lc || '' (same order) so that the planner cannot turn it
		 * back into a walk in index order. */
		sql_add(&b,
			"WITH w AS MATERIALIZED (SELECT s.user_id AS id, s.email_lc AS e FROM (SELECT s.* FROM user_search s"
			" WHERE s.org_id = $1::uuid%s ORDER BY s.email_lc, s.user_id LIMIT %d) s WHERE true%s%s"
			" ORDER BY s.email_lc, s.user_id LIMIT $2::int),"
			" z AS MATERIALIZED (SELECT 1 FROM (SELECT 1 FROM user_search s WHERE s.org_id = $1::uuid%s"
			" ORDER BY s.email_lc, s.user_id OFFSET %d LIMIT 1) z)"
			" SELECT idb_user_json(u)::text, k.e, k.id FROM ("
			"SELECT id, e FROM w WHERE (SELECT count(*) FROM w) = $2::int OR NOT EXISTS (SELECT 1 FROM z)"
			" UNION ALL (SELECT s.user_id, s.email_lc FROM user_search s WHERE s.org_id = $1::uuid"
			" AND %s%s%s%s"
			" AND (SELECT count(*) FROM w) < $2::int AND EXISTS (SELECT 1 FROM z)"
			" ORDER BY s.email_lc || '', s.user_id LIMIT $2::int)) k"
			" JOIN users u ON u.id = k.id ORDER BY k.e, k.id",
			cursor_sql, TEXT_WALK_ROWS, filters, text_sql, cursor_sql, TEXT_WALK_ROWS, cand_sql, filters,
			text_parts || short_q ? text_sql : "", cursor_sql);
	}
	if (b.overflow)
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "list query too long");
	else
		rc = idb_db_json_page(db, true, b.s, np, p, lim, out, err);
	free(pattern);
	return rc;
}

static const char user_json_sql[] =
	"SELECT idb_user_json(u)::text FROM users u WHERE u.id = $1::uuid AND u.org_id = $2::uuid";

int idb_users_get(idb_db *db, const char *org_id, const char *user_id, json_t **out, idb_err *err)
{
	*out = NULL;
	if (!idb_uuid_valid(user_id))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "user not found");
	const char *p[] = {user_id, org_id};
	return idb_db_json_one(db, user_json_sql, 2, p, "user", out, err);
}

/* --- locked rows and guards --- */

typedef struct urow {
	char id[37];
	char email[255];
	char name[257];
	int role;
	char status[12];
	char *json; /* owned: idb_user_json before the change */
} urow;

static void urow_clear(urow *u)
{
	free(u->json);
	u->json = NULL;
}

static int lock_user(idb_db *db, const char *org_id, const char *user_id, urow *out, idb_err *err)
{
	memset(out, 0, sizeof(*out));
	if (!idb_uuid_valid(user_id))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "user not found");
	static const char sql[] = "SELECT u.id, u.email, u.name, u.role::text, u.status::text, idb_user_json(u)::text"
				  "  FROM users u WHERE u.id = $1::uuid AND u.org_id = $2::uuid FOR UPDATE";
	const char *p[] = {user_id, org_id};
	PGresult *res = idb_db_query(db, sql, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "user not found");
	}
	idb_strlcpy(out->id, idb_db_str(res, 0, 0), sizeof(out->id));
	idb_strlcpy(out->email, idb_db_str(res, 0, 1), sizeof(out->email));
	idb_strlcpy(out->name, idb_db_str(res, 0, 2), sizeof(out->name));
	out->role = idb_role_parse(idb_db_str(res, 0, 3));
	idb_strlcpy(out->status, idb_db_str(res, 0, 4), sizeof(out->status));
	out->json = strdup(idb_db_str(res, 0, 5));
	PQclear(res);
	return out->json ? 0 : idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
}

/* Serialises changes that may remove an admin, per organisation. */
static int lock_org(idb_db *db, const char *org_id, idb_err *err)
{
	static const char sql[] = "SELECT 1 FROM organizations WHERE id = $1::uuid FOR NO KEY UPDATE";
	const char *p[] = {org_id};
	return idb_db_exec(db, sql, 1, p, NULL, err);
}

/* Refuses when u is the organisation's last active admin. The caller holds
 * the organisation lock. */
static int guard_last_admin(idb_db *db, const char *org_id, const urow *u, const char *what, idb_err *err)
{
	if (u->role != IDB_ROLE_ADMIN || strcmp(u->status, "active") != 0)
		return 0;
	static const char sql[] = "SELECT count(*) FROM users WHERE org_id = $1::uuid AND role = 'admin'"
				  " AND status = 'active' AND id <> $2::uuid";
	const char *p[] = {org_id, u->id};
	PGresult *res = idb_db_query(db, sql, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	long others = strtol(idb_db_str(res, 0, 0), NULL, 10);
	PQclear(res);
	if (others == 0)
		return idb_err_set(err, IDB_ECONFLICT, NULL,
				   "%s is the last active admin of the organisation and cannot be %s. Make another "
				   "user admin first.",
				   u->email, what);
	return 0;
}

static bool is_self(const idb_actor *a, const urow *u)
{
	return a->user_id && strcmp(a->user_id, u->id) == 0;
}

static int after_json(idb_db *db, const idb_actor *a, const char *user_id, char **out, idb_err *err)
{
	*out = NULL;
	const char *p[] = {user_id, a->org_id};
	PGresult *res = idb_db_query(db, user_json_sql, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = 0;
	if (PQntuples(res) != 1)
		rc = idb_err_set(err, IDB_ENOTFOUND, NULL, "user not found");
	else if (!(*out = strdup(idb_db_str(res, 0, 0))))
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	PQclear(res);
	return rc;
}

/* Disables the user's usable API keys (remembering which, in disabled_at). */
static int disable_keys(idb_db *db, const char *user_id, idb_effects *fx, idb_err *err)
{
	static const char sql[] = "UPDATE api_keys SET disabled_at = now() WHERE user_id = $1::uuid"
				  " AND disabled_at IS NULL AND revoked_at IS NULL RETURNING key_hash";
	const char *p[] = {user_id};
	PGresult *res = idb_db_query(db, sql, 1, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = 0;
	for (int i = 0; i < PQntuples(res) && rc == 0; i++)
		rc = idb_effects_key(fx, idb_db_str(res, i, 0), err);
	PQclear(res);
	return rc;
}

static int suspend(idb_db *db, const char *user_id, bool on, idb_err *err)
{
	static const char sql[] = "UPDATE memberships SET suspended = $2::bool WHERE user_id = $1::uuid";
	const char *p[] = {user_id, on ? "true" : "false"};
	return idb_db_exec(db, sql, 2, p, NULL, err);
}

/* The state change on a locked user. *changed = false when u already was in
 * the target state (nothing written). */
static int apply_locked(idb_db *db, const idb_actor *a, const urow *u, idb_user_op op, idb_effects *fx,
			bool *changed, idb_err *err)
{
	static const char deactivate_sql[] =
		"UPDATE users SET status = 'inactive', deactivated_at = now(), updated_at = now() WHERE id = $1::uuid";
	static const char activate_sql[] =
		"UPDATE users SET status = 'active', deactivated_at = NULL, updated_at = now() WHERE id = $1::uuid";
	static const char restore_keys_sql[] = "UPDATE api_keys SET disabled_at = NULL WHERE user_id = $1::uuid"
					       " AND disabled_at IS NOT NULL AND revoked_at IS NULL";
	static const char delete_sql[] =
		"UPDATE users SET status = 'deleted', deleted_at = now(), updated_at = now() WHERE id = $1::uuid";
	static const char revoke_inv_sql[] = "UPDATE invitations SET revoked_at = now() WHERE user_id = $1::uuid"
					     " AND accepted_at IS NULL AND revoked_at IS NULL";
	static const char restore_sql[] =
		"UPDATE users SET status = 'inactive', deleted_at = NULL,"
		"       deactivated_at = coalesce(deactivated_at, now()), updated_at = now() WHERE id = $1::uuid";
	static const char unlock_sql[] = "UPDATE users SET failed_logins = 0, locked_at = NULL, updated_at = now()"
					 " WHERE id = $1::uuid AND (failed_logins <> 0 OR locked_at IS NOT NULL)";
	const char *p[] = {u->id};
	const char *action = NULL;
	int rc = 0;
	*changed = false;
	switch (op) {
	case IDB_USER_DEACTIVATE:
		if (is_self(a, u))
			return idb_err_set(err, IDB_EFORBIDDEN, NULL, "You cannot deactivate your own account.");
		if (!strcmp(u->status, "deleted"))
			return idb_err_set(err, IDB_ECONFLICT, NULL, "The user is deleted; restore them first.");
		if (!strcmp(u->status, "inactive"))
			return 0;
		if ((rc = guard_last_admin(db, a->org_id, u, "deactivated", err)) != 0)
			return rc;
		if ((rc = idb_db_exec(db, deactivate_sql, 1, p, NULL, err)) != 0 ||
		    (rc = idb_admin_end_sessions(db, u->id, fx, err)) != 0 || (rc = disable_keys(db, u->id, fx, err)) != 0 ||
		    (rc = suspend(db, u->id, true, err)) != 0)
			return rc;
		action = "user.deactivate";
		break;
	case IDB_USER_ACTIVATE:
		if (!strcmp(u->status, "active"))
			return 0;
		if (!strcmp(u->status, "pending"))
			return idb_err_set(err, IDB_ECONFLICT, NULL,
					   "The user has not accepted the invitation yet; resend it instead.");
		if (!strcmp(u->status, "deleted"))
			return idb_err_set(err, IDB_ECONFLICT, NULL, "The user is deleted; restore them first.");
		if ((rc = idb_db_exec(db, activate_sql, 1, p, NULL, err)) != 0 ||
		    (rc = idb_db_exec(db, restore_keys_sql, 1, p, NULL, err)) != 0 ||
		    (rc = suspend(db, u->id, false, err)) != 0)
			return rc;
		action = "user.activate";
		break;
	case IDB_USER_SOFT_DELETE:
		if (is_self(a, u))
			return idb_err_set(err, IDB_EFORBIDDEN, NULL, "You cannot delete your own account.");
		if (!strcmp(u->status, "deleted"))
			return 0;
		if ((rc = guard_last_admin(db, a->org_id, u, "deleted", err)) != 0)
			return rc;
		if ((rc = idb_db_exec(db, delete_sql, 1, p, NULL, err)) != 0 ||
		    (rc = idb_admin_end_sessions(db, u->id, fx, err)) != 0 || (rc = disable_keys(db, u->id, fx, err)) != 0 ||
		    (rc = suspend(db, u->id, true, err)) != 0 || (rc = idb_db_exec(db, revoke_inv_sql, 1, p, NULL, err)) != 0)
			return rc;
		action = "user.delete";
		break;
	case IDB_USER_RESTORE:
		if (strcmp(u->status, "deleted") != 0)
			return idb_err_set(err, IDB_ECONFLICT, NULL, "The user is not deleted.");
		if ((rc = idb_db_exec(db, restore_sql, 1, p, NULL, err)) != 0)
			return rc;
		action = "user.restore";
		break;
	case IDB_USER_UNLOCK: {
		long n = 0;
		if ((rc = idb_db_exec(db, unlock_sql, 1, p, &n, err)) != 0)
			return rc;
		if (n == 0)
			return 0;
		action = "user.unlock";
		break;
	}
	}
	char *after = NULL;
	if ((rc = after_json(db, a, u->id, &after, err)) == 0)
		rc = idb_audit_write(db, a, action, "user", u->id, u->json, after, err);
	free(after);
	if (rc == 0)
		rc = idb_effects_user(fx, u->id, err);
	*changed = rc == 0;
	return rc;
}

static bool op_needs_org_lock(idb_user_op op)
{
	return op == IDB_USER_DEACTIVATE || op == IDB_USER_SOFT_DELETE;
}

static int finish(idb_db *db, int rc, idb_err *err)
{
	if (rc == 0)
		rc = idb_db_commit(db, err);
	if (rc != 0)
		idb_db_rollback(db);
	return rc;
}

int idb_users_apply(idb_db *db, const idb_actor *a, const char *user_id, idb_user_op op, idb_effects *fx,
		    json_t **out, idb_err *err)
{
	*out = NULL;
	if (!idb_uuid_valid(user_id))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "user not found");
	urow u = {.json = NULL};
	bool changed = false;
	int rc = idb_db_begin(db, err);
	if (rc != 0)
		return rc;
	if (op_needs_org_lock(op))
		rc = lock_org(db, a->org_id, err);
	if (rc == 0)
		rc = lock_user(db, a->org_id, user_id, &u, err);
	if (rc == 0)
		rc = apply_locked(db, a, &u, op, fx, &changed, err);
	if (rc == 0) {
		const char *p[] = {user_id, a->org_id};
		rc = idb_db_json_one(db, user_json_sql, 2, p, "user", out, err);
	}
	urow_clear(&u);
	rc = finish(db, rc, err);
	if (rc != 0) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

/* --- edit --- */

/* Resolves group ids/names to a Postgres uuid[] literal (malloc'd). */
int idb_user_groups_literal(idb_db *db, const char *org_id, const char *const *groups, size_t n, char **out,
			  idb_err *err)
{
	*out = NULL;
	if (n > 500)
		return idb_err_set(err, IDB_EINVAL, "groups", "too many groups");
	char *lit = malloc(3 + n * 37);
	if (!lit)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	size_t o = 0;
	lit[o++] = '{';
	for (size_t i = 0; i < n; i++) {
		char id[37];
		int rc = groups[i] ? idb_group_resolve(db, org_id, groups[i], id, err) : IDB_ENOTFOUND;
		if (rc != 0) {
			free(lit);
			if (rc == IDB_ENOTFOUND)
				return idb_err_set(err, IDB_EINVAL, "groups", "Group not found: %.100s",
						   groups[i] ? groups[i] : "(not a string)");
			return rc;
		}
		if (o > 1)
			lit[o++] = ',';
		memcpy(lit + o, id, 36);
		o += 36;
	}
	lit[o++] = '}';
	lit[o] = '\0';
	*out = lit;
	return 0;
}

int idb_user_set_manual_groups_tx(idb_db *db, const char *org_id, const char *user_id, const char *uuid_array,
				  idb_err *err)
{
	static const char del_sql[] = "DELETE FROM memberships WHERE user_id = $1::uuid AND source = 'manual'"
				      " AND NOT (group_id = ANY ($2::uuid[]))";
	static const char ins_sql[] =
		"INSERT INTO memberships (org_id, user_id, group_id, source, suspended)"
		" SELECT u.org_id, u.id, g, 'manual', u.status IN ('inactive', 'deleted')"
		"   FROM users u, unnest($2::uuid[]) g WHERE u.id = $1::uuid AND u.org_id = $3::uuid"
		" ON CONFLICT (user_id, group_id, source) DO NOTHING";
	const char *p[] = {user_id, uuid_array, org_id};
	int rc = idb_db_exec(db, del_sql, 2, p, NULL, err);
	if (rc == 0)
		rc = idb_db_exec(db, ins_sql, 3, p, NULL, err);
	return rc;
}

static int notify_change(idb_db *db, const idb_config *cfg, const idb_actor *a, const urow *u, const char *after,
			 idb_err *err)
{
	json_t *j = idb_json_from_db(after);
	if (!j)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "bad JSON from the database");
	char org[201] = "";
	int rc = idb_org_name(db, a->org_id, org, err);
	const char *role = json_string_value(json_object_get(j, "role"));
	size_t gcap = 64;
	json_t *g;
	size_t i;
	json_array_foreach(json_object_get(j, "groups"), i, g) gcap += strlen(json_string_value(json_object_get(g, "name"))) + 2;
	char *groups = malloc(gcap);
	char *text = NULL, *html = NULL, *esc_groups = NULL, *esc_org = NULL, *esc_actor = NULL;
	if (rc == 0 && !groups)
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	if (rc == 0) {
		size_t o = 0;
		const char *prev = NULL;
		groups[0] = '\0';
		/* Sorted by name: a group held through two sources is adjacent. */
		json_array_foreach(json_object_get(j, "groups"), i, g)
		{
			const char *name = json_string_value(json_object_get(g, "name"));
			if (!prev || strcmp(prev, name) != 0)
				o += (size_t)snprintf(groups + o, gcap - o, "%s%s", o ? ", " : "", name);
			prev = name;
		}
		if (o == 0)
			snprintf(groups, gcap, "(none)");
		const char *who = a->name && a->name[0] ? a->name : (a->email ? a->email : "An administrator");
		size_t cap = 1024 + strlen(groups) * 2 + strlen(org) * 2 + strlen(who) * 2 + strlen(cfg->public_url) * 2;
		text = malloc(cap);
		html = malloc(cap * 2);
		esc_groups = idb_html_escape(groups);
		esc_org = idb_html_escape(org);
		esc_actor = idb_html_escape(who);
		if (!text || !html || !esc_groups || !esc_org || !esc_actor) {
			rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		} else {
			snprintf(text, cap,
				 "Hello,\n\n%s changed your access to %s.\n\nYour role: %s\nYour groups: %s\n\n"
				 "Sign in at %s/\n\nIf you did not expect this change, contact your administrator.\n",
				 who, org, role, groups, cfg->public_url);
			snprintf(html, cap * 2,
				 "<p>Hello,</p><p>%s changed your access to %s.</p><ul><li>Your role: %s</li>"
				 "<li>Your groups: %s</li></ul><p><a href=\"%s/\">Sign in</a></p>"
				 "<p>If you did not expect this change, contact your administrator.</p>",
				 esc_actor, esc_org, role, esc_groups, cfg->public_url);
			char subject[300];
			snprintf(subject, sizeof(subject), "Your access to %s changed", org);
			rc = idb_outbox_enqueue_email(db, a->org_id, u->email, subject, text, html, err);
		}
	}
	free(groups);
	free(text);
	free(html);
	free(esc_groups);
	free(esc_org);
	free(esc_actor);
	json_decref(j);
	return rc;
}

int idb_users_update(idb_db *db, const idb_config *cfg, const idb_actor *a, const char *user_id,
		     const idb_user_patch *pt, idb_effects *fx, json_t **out, idb_err *err)
{
	*out = NULL;
	if (!idb_uuid_valid(user_id))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "user not found");
	if (pt->name) {
		if (idb_utf8_len(pt->name) > 256)
			return idb_err_set(err, IDB_EINVAL, "name", "name must be at most 256 characters");
		for (const unsigned char *c = (const unsigned char *)pt->name; *c; c++)
			if (*c < 0x20 || *c == 0x7f)
				return idb_err_set(err, IDB_EINVAL, "name", "name must not contain control characters");
	}
	int role = pt->role ? idb_role_parse(pt->role) : -1;
	if (pt->role && role < 0)
		return idb_err_set(err, IDB_EINVAL, "role", "Invalid role");
	urow u = {.json = NULL};
	char *groups = NULL, *after = NULL;
	int rc = idb_db_begin(db, err);
	if (rc != 0)
		return rc;
	if (pt->role)
		rc = lock_org(db, a->org_id, err);
	if (rc == 0)
		rc = lock_user(db, a->org_id, user_id, &u, err);
	if (rc == 0 && pt->set_groups)
		rc = idb_user_groups_literal(db, a->org_id, pt->groups, pt->ngroups, &groups, err);
	bool role_change = rc == 0 && pt->role && role != u.role;
	if (role_change && is_self(a, &u))
		rc = idb_err_set(err, IDB_EFORBIDDEN, NULL, "You cannot change your own role.");
	if (rc == 0 && role_change && u.role == IDB_ROLE_ADMIN)
		rc = guard_last_admin(db, a->org_id, &u, "demoted", err);
	if (rc == 0 && (pt->name || role_change)) {
		static const char sql[] = "UPDATE users SET name = coalesce($2, name), role = coalesce($3::user_role, role),"
					  " updated_at = now() WHERE id = $1::uuid";
		const char *p[] = {u.id, pt->name, role_change ? pt->role : NULL};
		rc = idb_db_exec(db, sql, 3, p, NULL, err);
	}
	if (rc == 0 && groups)
		rc = idb_user_set_manual_groups_tx(db, a->org_id, u.id, groups, err);
	if (rc == 0)
		rc = after_json(db, a, u.id, &after, err);
	bool changed = rc == 0 && strcmp(after, u.json) != 0;
	if (changed) {
		rc = idb_audit_write(db, a, "user.update", "user", u.id, u.json, after, err);
		if (rc == 0)
			rc = idb_effects_user(fx, u.id, err);
		if (rc == 0 && pt->notify)
			rc = notify_change(db, cfg, a, &u, after, err);
	}
	if (rc == 0 && !(*out = idb_json_from_db(after)))
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "bad JSON from the database");
	urow_clear(&u);
	free(groups);
	free(after);
	rc = finish(db, rc, err);
	if (rc != 0) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

/* --- deletion --- */

int idb_users_confirm_actor(idb_db *db, const idb_actor *a, const char *password, idb_err *err)
{
	if (!a->user_id)
		return idb_err_set(err, IDB_EFORBIDDEN, NULL, "Only a signed-in admin can delete users.");
	static const char sql[] = "SELECT password_hash, coalesce(sso_authenticated_at > now() - interval '5 minutes',"
				  " false) FROM users WHERE id = $1::uuid AND org_id = $2::uuid";
	const char *p[] = {a->user_id, a->org_id};
	PGresult *res = idb_db_query(db, sql, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return idb_err_set(err, IDB_EFORBIDDEN, NULL, "Your account could not be verified.");
	}
	const char *hash = idb_db_val(res, 0, 0);
	bool recent_sso = idb_db_str(res, 0, 1)[0] == 't';
	int rc = 0;
	if (hash) {
		if (!password || !*password || strlen(password) > 1024 || !idb_password_verify(hash, password))
			rc = idb_err_set(err, IDB_EFORBIDDEN, "password",
					 "Your password is not correct. Confirm the deletion with your own password.");
	} else if (!recent_sso) {
		rc = idb_err_set(err, IDB_EFORBIDDEN, NULL,
				 "Sign in again with SSO (within the last 5 minutes) to confirm this deletion.");
	}
	PQclear(res);
	return rc;
}

int idb_users_hard_delete(idb_db *db, const idb_actor *a, const char *user_id, idb_effects *fx, idb_err *err)
{
	if (!idb_uuid_valid(user_id))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "user not found");
	static const char keys_sql[] = "SELECT key_hash FROM api_keys WHERE user_id = $1::uuid";
	static const char anon_sql[] =
		"UPDATE activity SET actor_ref = 'deleted:' || left(encode(sha256(convert_to($1, 'UTF8')), 'hex'), 16),"
		"       user_id = NULL WHERE user_id = $2::uuid";
	static const char ref_sql[] = "SELECT 'deleted:' || left(encode(sha256(convert_to($1, 'UTF8')), 'hex'), 16)";
	static const char del_sql[] = "DELETE FROM users WHERE id = $1::uuid AND org_id = $2::uuid";
	urow u = {.json = NULL};
	int rc = idb_db_begin(db, err);
	if (rc != 0)
		return rc;
	if ((rc = lock_org(db, a->org_id, err)) == 0)
		rc = lock_user(db, a->org_id, user_id, &u, err);
	if (rc == 0 && is_self(a, &u))
		rc = idb_err_set(err, IDB_EFORBIDDEN, NULL, "You cannot delete your own account.");
	if (rc == 0)
		rc = guard_last_admin(db, a->org_id, &u, "deleted", err);
	if (rc == 0)
		rc = idb_admin_end_sessions(db, u.id, fx, err);
	const char *p[] = {u.id, a->org_id};
	PGresult *res = NULL;
	if (rc == 0 && !(res = idb_db_query(db, keys_sql, 1, p, err)))
		rc = err ? err->code : IDB_EINTERNAL;
	for (int i = 0; rc == 0 && i < PQntuples(res); i++)
		rc = idb_effects_key(fx, idb_db_str(res, i, 0), err);
	PQclear(res);
	res = NULL;
	char before[256] = "";
	if (rc == 0 && !(res = idb_db_query(db, ref_sql, 1, p, err)))
		rc = err ? err->code : IDB_EINTERNAL;
	if (rc == 0) {
		/* No e-mail or name in the log of an erasure. */
		snprintf(before, sizeof(before), "{\"id\":\"%s\",\"actor_ref\":\"%s\",\"role\":\"%s\",\"status\":\"%s\"}", u.id,
			 idb_db_str(res, 0, 0), idb_role_name(u.role) ? idb_role_name(u.role) : "", u.status);
	}
	PQclear(res);
	const char *pa[] = {u.id, u.id};
	if (rc == 0)
		rc = idb_db_exec(db, anon_sql, 2, pa, NULL, err);
	if (rc == 0)
		rc = idb_db_exec(db, del_sql, 2, p, NULL, err);
	if (rc == 0)
		rc = idb_audit_write(db, a, "user.hard_delete", "user", u.id, before, NULL, err);
	if (rc == 0)
		rc = idb_effects_user(fx, u.id, err);
	urow_clear(&u);
	return finish(db, rc, err);
}

/* --- bulk --- */

static int savepoint(idb_db *db, int what, idb_err *err)
{
	static const char sp[] = "SAVEPOINT bulk_item";
	static const char rb[] = "ROLLBACK TO SAVEPOINT bulk_item";
	static const char rel[] = "RELEASE SAVEPOINT bulk_item";
	return idb_db_exec(db, what == 0 ? sp : what == 1 ? rb : rel, 0, NULL, NULL, err);
}

static int bulk_one(idb_db *db, const idb_actor *a, int action, const char *user_id, const char *group_id,
		    const char *role_name, idb_effects *fx, idb_err *err)
{
	urow u = {.json = NULL};
	int rc = lock_user(db, a->org_id, user_id, &u, err);
	if (rc != 0)
		return rc;
	bool changed = false;
	switch (action) {
	case 0: /* add_to_group */
	case 1: /* remove_from_group */
		rc = action == 0 ? idb_membership_add_tx(db, a->org_id, group_id, u.id, &changed, err)
				 : idb_membership_remove_tx(db, a->org_id, group_id, u.id, &changed, err);
		if (rc == 0 && action == 1 && !changed)
			rc = idb_err_set(err, IDB_ENOTFOUND, NULL, "The user is not a manual member of the group.");
		if (rc == 0 && changed) {
			char after[200];
			snprintf(after, sizeof(after), "{\"user_id\":\"%s\",\"group_id\":\"%s\",\"source\":\"manual\"}", u.id,
				 group_id);
			rc = idb_audit_write(db, a, action == 0 ? "group.member_add" : "group.member_remove", "group",
					     group_id, action == 0 ? NULL : after, action == 0 ? after : NULL, err);
			if (rc == 0)
				rc = idb_effects_user(fx, u.id, err);
		}
		break;
	case 2: { /* set_role */
		int role = idb_role_parse(role_name);
		if (role == u.role)
			break;
		if (is_self(a, &u)) {
			rc = idb_err_set(err, IDB_EFORBIDDEN, NULL, "You cannot change your own role.");
			break;
		}
		if (u.role == IDB_ROLE_ADMIN && (rc = guard_last_admin(db, a->org_id, &u, "demoted", err)) != 0)
			break;
		static const char sql[] = "UPDATE users SET role = $2::user_role, updated_at = now() WHERE id = $1::uuid";
		const char *p[] = {u.id, role_name};
		char *after = NULL;
		if ((rc = idb_db_exec(db, sql, 2, p, NULL, err)) == 0 && (rc = after_json(db, a, u.id, &after, err)) == 0)
			rc = idb_audit_write(db, a, "user.update", "user", u.id, u.json, after, err);
		free(after);
		if (rc == 0)
			rc = idb_effects_user(fx, u.id, err);
		break;
	}
	case 3:
		rc = apply_locked(db, a, &u, IDB_USER_DEACTIVATE, fx, &changed, err);
		break;
	case 4:
		rc = apply_locked(db, a, &u, IDB_USER_ACTIVATE, fx, &changed, err);
		break;
	}
	urow_clear(&u);
	return rc;
}

int idb_users_bulk(idb_db *db, const idb_actor *a, const char *action, const char *const *user_ids, size_t n,
		   const char *group, const char *role, idb_effects *fx, json_t **out, idb_err *err)
{
	*out = NULL;
	static const char *const actions[] = {"add_to_group", "remove_from_group", "set_role", "deactivate", "activate"};
	int act = -1;
	for (int i = 0; action && i < 5; i++)
		if (strcmp(action, actions[i]) == 0)
			act = i;
	if (act < 0)
		return idb_err_set(err, IDB_EINVAL, "action",
				   "action must be add_to_group, remove_from_group, set_role, deactivate or activate");
	if (n == 0)
		return idb_err_set(err, IDB_EINVAL, "user_ids", "user_ids must list at least one user");
	if (n > IDB_BULK_MAX)
		return idb_err_set(err, IDB_EINVAL, "user_ids", "at most %d users per request", IDB_BULK_MAX);
	if (act == 2 && (!role || idb_role_parse(role) < 0))
		return idb_err_set(err, IDB_EINVAL, "role", "Invalid role");
	char group_id[37] = "";
	json_t *results = json_array();
	if (!results)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	int rc = idb_db_begin(db, err);
	if (rc != 0) {
		json_decref(results);
		return rc;
	}
	if (act <= 1) {
		if (!group)
			rc = idb_err_set(err, IDB_EINVAL, "group", "group is required for this action");
		else if ((rc = idb_group_resolve(db, a->org_id, group, group_id, err)) == IDB_ENOTFOUND)
			rc = idb_err_set(err, IDB_EINVAL, "group", "Group not found");
	}
	if (rc == 0 && (act == 2 || act == 3))
		rc = lock_org(db, a->org_id, err);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const char *uid = user_ids[i] ? user_ids[i] : "";
		bool dup = false;
		for (size_t j = 0; j < i && !dup; j++)
			dup = user_ids[j] && strcmp(user_ids[j], uid) == 0;
		idb_err e;
		idb_err_clear(&e);
		int urc;
		if (dup) {
			urc = idb_err_set(&e, IDB_EINVAL, NULL, "Duplicate user id");
		} else if (!idb_uuid_valid(uid)) {
			urc = idb_err_set(&e, IDB_ENOTFOUND, NULL, "User not found");
		} else {
			if ((rc = savepoint(db, 0, err)) != 0)
				break;
			urc = bulk_one(db, a, act, uid, group_id, role, fx, &e);
			if (urc == IDB_ENOTFOUND && !strcmp(e.msg, "user not found"))
				idb_err_set(&e, IDB_ENOTFOUND, NULL, "User not found");
			if (urc == IDB_EUNAVAIL || urc == IDB_ETIMEOUT || urc == IDB_EINTERNAL) {
				*err = e;
				rc = urc;
				break;
			}
			if ((rc = savepoint(db, urc == 0 ? 2 : 1, err)) != 0)
				break;
		}
		json_t *r = urc == 0 ? json_pack("{ss ss}", "user_id", uid, "status", "ok")
				     : json_pack("{ss ss ss}", "user_id", uid, "status", "error", "message", e.msg);
		if (!r || json_array_append_new(results, r) != 0)
			rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	}
	rc = finish(db, rc, err);
	if (rc != 0) {
		json_decref(results);
		/* Nothing was committed: no cache work either. */
		idb_effects_clear(fx);
		return rc;
	}
	*out = results;
	return 0;
}
