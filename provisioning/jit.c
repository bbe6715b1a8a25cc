/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "jit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "db.h"
#include "log.h"
#include "roles.h"
#include "users.h"
#include "util.h"

static int refuse(idb_jit_result *out, const char *reason, const char *message, idb_err *err)
{
	idb_strlcpy(out->reason, reason, sizeof(out->reason));
	idb_strlcpy(out->message, message, sizeof(out->message));
	return idb_err_set(err, IDB_EFORBIDDEN, NULL, "%s", message);
}

static bool domain_allowed(const idb_connection *c, const char *email)
{
	const char *at = strrchr(email, '@');
	if (!at)
		return false;
	size_t i;
	json_t *d;
	json_array_foreach(c->domains, i, d) if (strcmp(json_string_value(d), at + 1) == 0) return true;
	return false;
}

int idb_jit_record_failure(idb_db *db, const idb_connection *c, const char *reason, const char *detail,
			   const char *ip, idb_err *err)
{
	json_t *d = json_pack("{ss ss ss}", "method", c->protocol, "connection", c->slug, "detail", detail ? detail : "");
	char *txt = d ? json_dumps(d, JSON_COMPACT) : NULL;
	json_decref(d);
	int rc = idb_activity_record(db, c->org_id, NULL, "login_failure", reason, ip, txt, err);
	free(txt);
	return rc;
}

/* The account state provision_tx decides on. */
typedef struct user_state {
	char status[16], role[16];
	bool locked;
} user_state;

static void state_from(const PGresult *res, int col, user_state *st)
{
	idb_strlcpy(st->status, idb_db_str(res, 0, col), sizeof(st->status));
	st->locked = idb_db_str(res, 0, col + 1)[0] == 't';
	idb_strlcpy(st->role, idb_db_str(res, 0, col + 2), sizeof(st->role));
}

/* The user of an identity link and its state, locked for the rest of the
 * transaction. */
static int find_identity(idb_db *db, const idb_connection *c, const char *subject, char out_user[37], user_state *st,
			 idb_err *err)
{
	static const char sql[] = "SELECT u.id, u.status::text, u.locked_at IS NOT NULL, u.role::text"
				  " FROM identities i JOIN users u ON u.id = i.user_id"
				  " WHERE i.connection_id = $1::uuid AND i.subject = $2 FOR UPDATE OF u";
	const char *p[] = {c->id, subject};
	PGresult *res = idb_db_query(db, sql, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = PQntuples(res) == 1 ? 0 : IDB_ENOTFOUND;
	if (rc == 0) {
		idb_strlcpy(out_user, idb_db_str(res, 0, 0), 37);
		state_from(res, 1, st);
	}
	PQclear(res);
	return rc;
}

int idb_jit_identity_user(idb_db *db, const char *connection_id, const char *subject, char out_user[37],
			  idb_err *err)
{
	static const char sql[] = "SELECT user_id FROM identities WHERE connection_id = $1::uuid AND subject = $2";
	const char *p[] = {connection_id, subject};
	PGresult *res = idb_db_query(db, sql, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = PQntuples(res) == 1 ? 0 : idb_err_set(err, IDB_ENOTFOUND, NULL, "no identity link");
	if (rc == 0)
		idb_strlcpy(out_user, idb_db_str(res, 0, 0), 37);
	PQclear(res);
	return rc;
}

static int find_user_by_email(idb_db *db, const char *org_id, const char *email, char out_user[37], idb_err *err)
{
	static const char sql[] =
		"SELECT id FROM users WHERE org_id = $1::uuid AND lower(email) = lower($2) FOR UPDATE";
	const char *p[] = {org_id, email};
	PGresult *res = idb_db_query(db, sql, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = PQntuples(res) == 1 ? 0 : IDB_ENOTFOUND;
	if (rc == 0)
		idb_strlcpy(out_user, idb_db_str(res, 0, 0), 37);
	PQclear(res);
	return rc;
}

static int link_identity(idb_db *db, const idb_connection *c, const idb_identity *id, const char *user_id,
			 idb_err *err)
{
	static const char sql[] = "INSERT INTO identities (org_id, user_id, connection_id, issuer, subject)"
				  " VALUES ($1::uuid, $2::uuid, $3::uuid, $4, $5)";
	const char *p[] = {c->org_id, user_id, c->id, id->issuer ? id->issuer : "", id->subject};
	return idb_db_exec(db, sql, 5, p, NULL, err);
}

/* Reconciles source-'idp' memberships of this connection with the asserted
 * groups; manual and import memberships are never touched. Unknown group
 * names are created (create_missing) or collected in unknown. One statement
 * adds, removes and names the unknown (two with create_missing). */
static int sync_groups(idb_db *db, const idb_connection *c, const char *user_id, const idb_profile *p,
		       bool create_missing, json_t *unknown, idb_jit_result *out, idb_err *err)
{
	static const char create_sql[] =
		"INSERT INTO groups (org_id, name, created_via)"
		" SELECT DISTINCT ON (lower(x)) $1::uuid, x, 'idp'"
		"   FROM json_array_elements_text($2::json) WITH ORDINALITY AS a(x, i) ORDER BY lower(x), i"
		" ON CONFLICT (org_id, lower(name)) DO NOTHING";
	static const char sync_sql[] =
		"WITH n AS (SELECT DISTINCT lower(x) AS ln FROM json_array_elements_text($4::json) x),"
		" g AS (SELECT g.id, lower(g.name) AS ln FROM groups g"
		"        WHERE g.org_id = $1::uuid AND lower(g.name) IN (SELECT ln FROM n)),"
		" ins AS (INSERT INTO memberships (org_id, user_id, group_id, source, connection_id)"
		"         SELECT $1::uuid, $2::uuid, g.id, 'idp', $3::uuid FROM g"
		"         ON CONFLICT (user_id, group_id, source) DO UPDATE SET connection_id = EXCLUDED.connection_id"
		"         WHERE memberships.connection_id IS DISTINCT FROM EXCLUDED.connection_id"
		"         RETURNING (xmax = 0) AS added),"
		" del AS (DELETE FROM memberships m USING groups dg WHERE m.group_id = dg.id AND m.user_id = $2::uuid"
		"         AND m.source = 'idp' AND m.connection_id = $3::uuid AND lower(dg.name) NOT IN (SELECT ln FROM n)"
		"         RETURNING 1)"
		" SELECT (SELECT count(*) FROM ins WHERE added), (SELECT count(*) FROM del),"
		"        (SELECT coalesce(json_agg(x), '[]') FROM json_array_elements_text($4::json) x"
		"          WHERE lower(x) NOT IN (SELECT ln FROM g))::text";
	json_t *names = json_array();
	for (size_t i = 0; i < p->ngroups; i++)
		json_array_append_new(names, json_string(p->groups[i]));
	char *names_txt = json_dumps(names, JSON_COMPACT);
	json_decref(names);
	if (!names_txt)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	int rc = 0;
	if (create_missing && p->ngroups > 0) {
		const char *cp[] = {c->org_id, names_txt};
		rc = idb_db_exec(db, create_sql, 2, cp, NULL, err);
	}
	if (rc == 0) {
		const char *sp[] = {c->org_id, user_id, c->id, names_txt};
		PGresult *res = idb_db_query(db, sync_sql, 4, sp, err);
		if (!res) {
			rc = err ? err->code : IDB_EINTERNAL;
		} else {
			out->groups_added = (int)strtol(idb_db_str(res, 0, 0), NULL, 10);
			out->groups_removed = (int)strtol(idb_db_str(res, 0, 1), NULL, 10);
			json_t *u = json_loads(idb_db_str(res, 0, 2), 0, NULL);
			if (u)
				json_array_extend(unknown, u);
			json_decref(u);
			PQclear(res);
		}
	}
	free(names_txt);
	return rc;
}

static json_t *idp_group_names(idb_db *db, const idb_connection *c, const char *user_id)
{
	static const char sql[] =
		"SELECT g.name FROM memberships m JOIN groups g ON g.id = m.group_id WHERE m.user_id = $1::uuid"
		" AND m.source = 'idp' AND m.connection_id = $2::uuid ORDER BY lower(g.name)";
	const char *p[] = {user_id, c->id};
	PGresult *res = idb_db_query(db, sql, 2, p, NULL);
	json_t *a = json_array();
	for (int i = 0; res && i < PQntuples(res); i++)
		json_array_append_new(a, json_string(idb_db_str(res, i, 0)));
	PQclear(res);
	return a;
}

static json_t *names_minus(json_t *a, json_t *b)
{
	json_t *out = json_array();
	size_t i, k;
	json_t *v, *w;
	json_array_foreach(a, i, v)
	{
		bool found = false;
		json_array_foreach(b, k, w) found |= json_equal(v, w);
		if (!found)
			json_array_append(out, v);
	}
	return out;
}

static int provision_tx(idb_db *db, const idb_connection *c, const idb_identity *id, const idb_profile *p,
			json_t *unknown, json_t *report, idb_jit_result *out, idb_err *err)
{
	bool jit_enabled = idb_connection_flag(c, NULL, "enabled", true);
	char user_id[37] = "";
	user_state st = {.status = ""};
	int rc = find_identity(db, c, id->subject, user_id, &st, err);
	if (rc != 0 && rc != IDB_ENOTFOUND)
		return rc;
	if (rc == IDB_ENOTFOUND) {
		/* No link yet: the e-mail decides, within the allowed domains only. */
		if (!domain_allowed(c, p->email))
			return refuse(out, "domain_not_allowed",
				      "Your e-mail domain is not allowed to sign in through this identity provider. "
				      "Contact your administrator.",
				      err);
		rc = find_user_by_email(db, c->org_id, p->email, user_id, err);
		if (rc != 0 && rc != IDB_ENOTFOUND)
			return rc;
		if (rc == 0) {
			if (!id->email_verified)
				return refuse(out, "email_not_verified",
					      "Your identity provider has not verified your e-mail address, so it cannot be "
					      "linked to your existing account. Contact your administrator.",
					      err);
			if ((rc = link_identity(db, c, id, user_id, err)) != 0)
				return rc;
			out->linked = true;
		} else {
			if (!jit_enabled)
				return refuse(out, "account_not_found",
					      "Account not found. Ask your administrator to invite you.", err);
			static const char ins_sql[] =
				"INSERT INTO users (org_id, email, name, role, status, created_via, last_login_at,"
				" last_active_at, sso_authenticated_at)"
				" VALUES ($1::uuid, $2, $3, $4::user_role, 'active', 'sso', now(), now(), now()) RETURNING id";
			const char *ip[] = {c->org_id, p->email, p->display_name ? p->display_name : "",
					    idb_role_name(p->role)};
			PGresult *res = idb_db_query(db, ins_sql, 4, ip, err);
			if (!res)
				return err ? err->code : IDB_EINTERNAL;
			idb_strlcpy(user_id, idb_db_str(res, 0, 0), sizeof(user_id));
			PQclear(res);
			if ((rc = link_identity(db, c, id, user_id, err)) != 0)
				return rc;
			out->created = true;
		}
	}
	idb_strlcpy(out->user_id, user_id, sizeof(out->user_id));
	idb_strlcpy(out->org_id, c->org_id, sizeof(out->org_id));

	if (!st.status[0]) { /* linked or created above */
		static const char state_sql[] =
			"SELECT status::text, locked_at IS NOT NULL, role::text FROM users WHERE id = $1::uuid";
		const char *up[] = {user_id};
		PGresult *res = idb_db_query(db, state_sql, 1, up, err);
		if (!res)
			return err ? err->code : IDB_EINTERNAL;
		state_from(res, 0, &st);
		PQclear(res);
	}
	const char *status = st.status, *role = st.role;
	bool locked = st.locked;
	if (!strcmp(status, "deleted"))
		return refuse(out, "deleted", "Account not found. Ask your administrator to invite you.", err);
	if (!strcmp(status, "inactive"))
		return refuse(out, "deactivated", "Your account is deactivated. Contact your administrator.", err);
	if (locked)
		return refuse(out, "locked", "Your account is locked. Contact your administrator.", err);
	out->activated = !strcmp(status, "pending");

	/* A role rule's result is re-applied on each login; otherwise the role an
	 * admin set stays. */
	const char *new_role = p->role_from_rule ? idb_role_name(p->role) : role;
	/* The identity's last login rides along (a data-modifying CTE always runs). */
	static const char upd_sql[] =
		"WITH i AS (UPDATE identities SET last_login_at = now() WHERE connection_id = $4::uuid AND subject = $5)"
		" UPDATE users SET status = 'active', name = CASE WHEN $2 = '' THEN name ELSE $2 END,"
		" role = $3::user_role, last_login_at = now(), last_active_at = now(), sso_authenticated_at = now(),"
		" updated_at = CASE WHEN status <> 'active' OR name IS DISTINCT FROM $2 OR role <> $3::user_role"
		"   THEN now() ELSE updated_at END WHERE id = $1::uuid RETURNING updated_at = now()";
	const char *pp[] = {user_id, p->display_name ? p->display_name : "", new_role, c->id, id->subject};
	PGresult *ur = idb_db_query(db, upd_sql, 5, pp, err);
	if (!ur)
		return err ? err->code : IDB_EINTERNAL;
	bool profile_changed = PQntuples(ur) == 1 && idb_db_str(ur, 0, 0)[0] == 't';
	PQclear(ur);
	json_t *before = report ? idp_group_names(db, c, user_id) : NULL;
	if (idb_connection_flag(c, NULL, "sync_groups", true) && !p->groups_overage)
		rc = sync_groups(db, c, user_id, p, idb_connection_flag(c, NULL, "create_missing_groups", false), unknown,
				 out, err);
	out->changed = out->created || out->linked || out->activated || profile_changed || out->groups_added > 0 ||
		       out->groups_removed > 0;
	if (report && rc == 0) {
		json_t *after = idp_group_names(db, c, user_id);
		json_object_set_new(report, "groups_added", names_minus(after, before));
		json_object_set_new(report, "groups_removed", names_minus(before, after));
		json_object_set_new(report, "groups_after", after);
		json_object_set_new(report, "role", json_string(new_role));
		json_object_set_new(report, "name", json_string(p->display_name && *p->display_name ? p->display_name : ""));
	}
	json_decref(before);
	return rc;
}

int idb_jit_provision(idb_db *db, const idb_connection *c, const idb_identity *id, const idb_profile *p,
		      const char *ip, const idb_jit_opts *opts, idb_jit_result *out, idb_err *err)
{
	static const idb_jit_opts defaults = {0};
	if (!opts)
		opts = &defaults;
	memset(out, 0, sizeof(*out));
	if (!c->enabled) {
		refuse(out, "connection_disabled", "Sign-in through this identity provider is disabled.", err);
		if (!opts->dry_run)
			(void)idb_jit_record_failure(db, c, out->reason, NULL, ip, NULL);
		return IDB_EFORBIDDEN;
	}
	int rc = 0;
	/* Two first logins of one person may race on the e-mail or the identity:
	 * the loser retries once and finds the winner's rows. */
	for (int attempt = 0; attempt < 2; attempt++) {
		json_t *unknown = json_array();
		json_t *report = opts->report ? json_object() : NULL;
		memset(out, 0, sizeof(*out));
		rc = idb_db_begin(db, err);
		if (rc == 0)
			rc = provision_tx(db, c, id, p, unknown, report, out, err);
		if (report) {
			json_object_set(report, "unknown_groups", unknown);
			out->report = report;
		}
		if (rc == 0) {
			json_t *d = json_pack("{ss ss sb sb sb si si sO sb}", "method", c->protocol, "connection", c->slug,
					      "created", out->created, "linked", out->linked, "activated", out->activated,
					      "groups_added", out->groups_added, "groups_removed", out->groups_removed,
					      "unknown_groups", unknown, "groups_overage", p->groups_overage);
			char *txt = d ? json_dumps(d, JSON_COMPACT) : NULL;
			json_decref(d);
			rc = idb_activity_record(db, c->org_id, out->user_id, "login_success", NULL, ip, txt, err);
			free(txt);
		}
		if (rc == 0 && opts->in_tx && !opts->dry_run)
			rc = opts->in_tx(db, out, opts->in_tx_arg, err);
		if (rc == 0 && opts->dry_run) {
			idb_db_rollback(db); /* the dry run shows what would happen, and keeps nothing */
			json_decref(unknown);
			return 0;
		}
		if (rc == 0)
			rc = idb_db_commit(db, err);
		json_decref(unknown);
		if (rc == 0)
			return 0;
		idb_db_rollback(db);
		if (rc != IDB_EEXISTS || attempt == 1)
			break;
		json_decref(out->report);
		out->report = NULL;
	}
	if (rc == IDB_EFORBIDDEN && !opts->dry_run) {
		json_t *d = json_pack("{ss ss ss}", "method", c->protocol, "connection", c->slug, "email", p->email);
		char *txt = d ? json_dumps(d, JSON_COMPACT) : NULL;
		json_decref(d);
		(void)idb_activity_record(db, c->org_id, out->user_id[0] ? out->user_id : NULL, "login_failure", out->reason,
					  ip, txt, NULL);
		free(txt);
	}
	return rc;
}
