/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "invitations.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "admin_users.h"
#include "db.h"
#include "outbox_db.h"
#include "roles.h"
#include "users.h"
#include "util.h"

static int finish(idb_db *db, int rc, idb_err *err)
{
	if (rc == 0)
		rc = idb_db_commit(db, err);
	if (rc != 0)
		idb_db_rollback(db);
	return rc;
}

int idb_invite_issue_tx(idb_db *db, const idb_config *cfg, const idb_actor *a, const char *user_id, const char *email,
			const char *name, const char *org_name, idb_err *err)
{
	char token[64], hash[65], ttl[24];
	idb_random_token(token, sizeof(token), 32);
	idb_sha256_hex(hash, token, strlen(token));
	snprintf(ttl, sizeof(ttl), "%lld", cfg->invitation_ttl_s);
	static const char sql[] =
		"INSERT INTO invitations (org_id, user_id, token_hash, invited_by, expires_at)"
		" VALUES ($1::uuid, $2::uuid, $3, $4::uuid, now() + make_interval(secs => $5::bigint))"
		" RETURNING extract(epoch FROM expires_at)::bigint";
	const char *p[] = {a->org_id, user_id, hash, a->user_id, ttl};
	PGresult *res = idb_db_query(db, sql, 5, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int64_t expires = strtoll(idb_db_str(res, 0, 0), NULL, 10);
	PQclear(res);

	char org[201], when[32];
	int rc = 0;
	if (org_name)
		idb_strlcpy(org, org_name, sizeof(org));
	else if ((rc = idb_org_name(db, a->org_id, org, err)) != 0)
		return rc;
	idb_time_human(expires, when);
	const char *inviter = a->name && a->name[0] ? a->name : (a->email && a->email[0] ? a->email : "Your administrator");
	char *e_inv = idb_html_escape(inviter), *e_org = idb_html_escape(org), *e_name = idb_html_escape(name ? name : "");
	size_t cap = 2048 + 3 * (strlen(cfg->public_url) + strlen(org) + strlen(inviter) + (name ? strlen(name) : 0)) * 6;
	char *text = malloc(cap), *html = malloc(cap);
	if (!e_inv || !e_org || !e_name || !text || !html) {
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		goto done;
	}
	snprintf(text, cap,
		 "Hello%s%s,\n\n"
		 "%s invited you to join %s.\n\n"
		 "Open this link to accept the invitation, then choose a password or continue with your "
		 "organisation's single sign-on:\n\n"
		 "%s/invite/%s\n\n"
		 "The link can be used once and expires on %s.\n"
		 "If you did not expect this invitation, you can ignore this e-mail.\n",
		 name && *name ? " " : "", name ? name : "", inviter, org, cfg->public_url, token, when);
	snprintf(html, cap,
		 "<p>Hello%s%s,</p><p>%s invited you to join %s.</p>"
		 "<p><a href=\"%s/invite/%s\">Accept the invitation</a> and choose a password, or continue with "
		 "your organisation's single sign-on.</p>"
		 "<p>The link can be used once and expires on %s.</p>"
		 "<p>If you did not expect this invitation, you can ignore this e-mail.</p>",
		 name && *name ? " " : "", e_name, e_inv, e_org, cfg->public_url, token, when);
	char subject[300];
	snprintf(subject, sizeof(subject), "%s invited you to %s", inviter, org);
	rc = idb_outbox_enqueue_email(db, a->org_id, email, subject, text, html, err);
done:
	sodium_memzero(token, sizeof(token));
	free(e_inv);
	free(e_org);
	free(e_name);
	free(text);
	free(html);
	return rc;
}

int idb_invite_create(idb_db *db, const idb_config *cfg, const idb_actor *a, const idb_invite_input *in,
		      json_t **out, idb_err *err)
{
	*out = NULL;
	if (!in->email || !idb_email_valid(in->email))
		return idb_err_set(err, IDB_EINVAL, "email", "Invalid email format");
	int role = in->role ? idb_role_parse(in->role) : -1;
	if (role < 0)
		return idb_err_set(err, IDB_EINVAL, "role", "Invalid role");
	if (in->name && idb_utf8_len(in->name) > 256)
		return idb_err_set(err, IDB_EINVAL, "name", "name must be at most 256 characters");
	char *groups = NULL;
	char user_id[37];
	int rc = idb_db_begin(db, err);
	if (rc != 0)
		return rc;
	if (in->ngroups)
		rc = idb_user_groups_literal(db, a->org_id, in->groups, in->ngroups, &groups, err);
	idb_user_new nu = {.org_id = a->org_id,
			   .email = in->email,
			   .name = in->name,
			   .role = role,
			   .status = "pending",
			   .created_via = "invite"};
	if (rc == 0 && (rc = idb_user_create(db, &nu, user_id, err)) == IDB_EEXISTS)
		idb_err_set(err, IDB_EEXISTS, "email", "A user with this e-mail address already exists in the organisation.");
	if (rc == 0 && groups)
		rc = idb_user_set_manual_groups_tx(db, a->org_id, user_id, groups, err);
	if (rc == 0)
		rc = idb_invite_issue_tx(db, cfg, a, user_id, in->email, in->name, NULL, err);
	static const char sql[] =
		"SELECT idb_user_json(u)::text FROM users u WHERE u.id = $1::uuid AND u.org_id = $2::uuid";
	const char *p[] = {user_id, a->org_id};
	PGresult *res = NULL;
	if (rc == 0 && !(res = idb_db_query(db, sql, 2, p, err)))
		rc = err ? err->code : IDB_EINTERNAL;
	if (rc == 0)
		rc = idb_audit_write(db, a, "user.invite", "user", user_id, NULL, idb_db_str(res, 0, 0), err);
	if (rc == 0 && !(*out = idb_json_from_db(idb_db_str(res, 0, 0))))
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "bad JSON from the database");
	PQclear(res);
	free(groups);
	rc = finish(db, rc, err);
	if (rc != 0) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

int idb_invite_resend(idb_db *db, const idb_config *cfg, const idb_actor *a, const char *user_id, json_t **out,
		      idb_err *err)
{
	*out = NULL;
	if (!idb_uuid_valid(user_id))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "user not found");
	static const char lock_sql[] = "SELECT u.email, u.name, u.status::text, idb_user_json(u)::text FROM users u"
				       " WHERE u.id = $1::uuid AND u.org_id = $2::uuid FOR UPDATE";
	static const char revoke_sql[] = "UPDATE invitations SET revoked_at = now() WHERE user_id = $1::uuid"
					 " AND accepted_at IS NULL AND revoked_at IS NULL";
	const char *p[] = {user_id, a->org_id};
	int rc = idb_db_begin(db, err);
	if (rc != 0)
		return rc;
	PGresult *res = idb_db_query(db, lock_sql, 2, p, err);
	if (!res)
		rc = err ? err->code : IDB_EINTERNAL;
	else if (PQntuples(res) != 1)
		rc = idb_err_set(err, IDB_ENOTFOUND, NULL, "user not found");
	else if (strcmp(idb_db_str(res, 0, 2), "pending") != 0)
		rc = idb_err_set(err, IDB_ECONFLICT, NULL,
				 "Only pending users can be invited again; this user is %s.", idb_db_str(res, 0, 2));
	if (rc == 0)
		rc = idb_db_exec(db, revoke_sql, 1, p, NULL, err);
	if (rc == 0)
		rc = idb_invite_issue_tx(db, cfg, a, user_id, idb_db_str(res, 0, 0), idb_db_str(res, 0, 1), NULL, err);
	if (rc == 0)
		rc = idb_audit_write(db, a, "user.invite_resend", "user", user_id, NULL, NULL, err);
	if (rc == 0 && !(*out = idb_json_from_db(idb_db_str(res, 0, 3))))
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "bad JSON from the database");
	PQclear(res);
	rc = finish(db, rc, err);
	if (rc != 0) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

/* The tokens we issue are 43 base64url characters. */
static bool token_plausible(const char *t)
{
	size_t n = t ? strlen(t) : 0;
	return n == 43 && strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

static const char view_cols[] =
	"SELECT i.id, i.user_id, i.org_id, u.email, o.name, coalesce(inv.email, ''),"
	"       extract(epoch FROM i.expires_at)::bigint, i.accepted_at IS NOT NULL,"
	"       i.revoked_at IS NOT NULL OR u.status <> 'pending', i.expires_at <= now()"
	"  FROM invitations i JOIN users u ON u.id = i.user_id JOIN organizations o ON o.id = i.org_id"
	"  LEFT JOIN users inv ON inv.id = i.invited_by WHERE i.token_hash = $1";

static int fetch_view(idb_db *db, const char *sql, const char *token, idb_invite_view *out, char inv_id[37],
		      idb_err *err)
{
	memset(out, 0, sizeof(*out));
	if (!token_plausible(token))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "This invitation link is not valid.");
	char hash[65];
	idb_sha256_hex(hash, token, strlen(token));
	const char *p[] = {hash};
	PGresult *res = idb_db_query(db, sql, 1, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "This invitation link is not valid.");
	}
	idb_strlcpy(inv_id, idb_db_str(res, 0, 0), 37);
	idb_strlcpy(out->user_id, idb_db_str(res, 0, 1), sizeof(out->user_id));
	idb_strlcpy(out->org_id, idb_db_str(res, 0, 2), sizeof(out->org_id));
	idb_strlcpy(out->email, idb_db_str(res, 0, 3), sizeof(out->email));
	idb_strlcpy(out->org_name, idb_db_str(res, 0, 4), sizeof(out->org_name));
	idb_strlcpy(out->inviter_email, idb_db_str(res, 0, 5), sizeof(out->inviter_email));
	out->expires_at = strtoll(idb_db_str(res, 0, 6), NULL, 10);
	if (idb_db_str(res, 0, 7)[0] == 't')
		out->state = IDB_INVITE_USED;
	else if (idb_db_str(res, 0, 8)[0] == 't')
		out->state = IDB_INVITE_REVOKED;
	else if (idb_db_str(res, 0, 9)[0] == 't')
		out->state = IDB_INVITE_EXPIRED;
	else
		out->state = IDB_INVITE_VALID;
	PQclear(res);
	return 0;
}

int idb_invite_lookup(idb_db *db, const char *token, idb_invite_view *out, idb_err *err)
{
	char inv_id[37];
	return fetch_view(db, view_cols, token, out, inv_id, err);
}

int idb_invite_accept(idb_db *db, const idb_config *cfg, const char *token, const char *password, const char *ip,
		      idb_invite_view *out, idb_err *err)
{
	static const char lock_sql[] =
		"SELECT i.id, i.user_id, i.org_id, u.email, o.name, coalesce(inv.email, ''),"
		"       extract(epoch FROM i.expires_at)::bigint, i.accepted_at IS NOT NULL,"
		"       i.revoked_at IS NOT NULL OR u.status <> 'pending', i.expires_at <= now()"
		"  FROM invitations i JOIN users u ON u.id = i.user_id JOIN organizations o ON o.id = i.org_id"
		"  LEFT JOIN users inv ON inv.id = i.invited_by WHERE i.token_hash = $1 FOR UPDATE OF i, u";
	static const char user_sql[] =
		"UPDATE users SET password_hash = $2, status = 'active', failed_logins = 0, locked_at = NULL,"
		"       last_login_at = now(), last_active_at = now(), updated_at = now()"
		" WHERE id = $1::uuid AND status = 'pending'";
	static const char used_sql[] = "UPDATE invitations SET accepted_at = now() WHERE id = $1::uuid";
	static const char others_sql[] = "UPDATE invitations SET revoked_at = now() WHERE user_id = $1::uuid"
					 " AND id <> $2::uuid AND accepted_at IS NULL AND revoked_at IS NULL";
	char inv_id[37];
	int rc = idb_db_begin(db, err);
	if (rc != 0)
		return rc;
	rc = fetch_view(db, lock_sql, token, out, inv_id, err);
	if (rc == 0 && out->state != IDB_INVITE_VALID)
		rc = idb_err_set(err, IDB_ECONFLICT, NULL, "This invitation can no longer be used.");
	if (rc == 0)
		rc = idb_password_check(password, out->email, cfg->password_min_length, err);
	char hash[256];
	if (rc == 0 && idb_password_hash(hash, sizeof(hash), password) != 0)
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "password hashing failed");
	const char *pu[] = {out->user_id, hash};
	const char *pi[] = {inv_id};
	const char *po[] = {out->user_id, inv_id};
	long n = 0;
	if (rc == 0 && (rc = idb_db_exec(db, user_sql, 2, pu, &n, err)) == 0 && n != 1)
		rc = idb_err_set(err, IDB_ECONFLICT, NULL, "This invitation can no longer be used.");
	if (rc == 0)
		rc = idb_db_exec(db, used_sql, 1, pi, NULL, err);
	if (rc == 0)
		rc = idb_db_exec(db, others_sql, 2, po, NULL, err);
	idb_actor self = {.org_id = out->org_id, .user_id = out->user_id, .email = out->email, .ip = ip};
	if (rc == 0)
		rc = idb_audit_write(db, &self, "user.invite_accept", "user", out->user_id, NULL,
				     "{\"status\":\"active\",\"method\":\"password\"}", err);
	if (rc == 0)
		rc = idb_activity_record(db, out->org_id, out->user_id, "login_success", NULL, ip,
					 "{\"method\":\"password\",\"via\":\"invitation\"}", err);
	return finish(db, rc, err);
}
