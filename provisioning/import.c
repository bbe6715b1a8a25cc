/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv_import.h"
#include "db.h"
#include "invitations.h"
#include "log.h"
#include "roles.h"
#include "users.h"
#include "util.h"

static int oom(idb_err *err)
{
	return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
}

static int finish(idb_db *db, int rc, idb_err *err)
{
	if (rc == 0)
		rc = idb_db_commit(db, err);
	if (rc != 0)
		idb_db_rollback(db);
	return rc;
}

/* A JSON array of strings as text for a $n::json parameter (malloc'd). */
static char *strings_json(const char *const *s, size_t n)
{
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, json_string(s[i])) != 0) {
			json_decref(arr);
			arr = NULL;
		}
	char *txt = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
	json_decref(arr);
	return txt;
}

/* --- checks against the organisation --- */

/* exists[i]: emails[i] is a user of org_id already (case-insensitively, as
 * the unique index compares). */
static int existing_emails(idb_db *db, const char *org_id, const char *const *emails, size_t n, bool *exists,
			   idb_err *err)
{
	for (size_t i = 0; i < n; i++)
		exists[i] = false;
	if (n == 0)
		return 0;
	static const char sql[] =
		"SELECT (t.ord - 1)::int FROM json_array_elements_text($2::json) WITH ORDINALITY t(e, ord)"
		" WHERE EXISTS (SELECT 1 FROM users u WHERE u.org_id = $1::uuid AND lower(u.email) = lower(t.e))";
	char *list = strings_json(emails, n);
	if (!list)
		return oom(err);
	const char *p[] = {org_id, list};
	PGresult *res = idb_db_query(db, sql, 2, p, err);
	free(list);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	for (int r = 0; r < PQntuples(res); r++) {
		long i = strtol(idb_db_str(res, r, 0), NULL, 10);
		if (i >= 0 && (size_t)i < n)
			exists[i] = true;
	}
	PQclear(res);
	return 0;
}

/* ids[i]: the id of group names[i] of org_id, "" when it has none. With
 * lock, the groups found cannot be deleted before the transaction ends. */
static int resolve_groups(idb_db *db, const char *org_id, const char *const *names, size_t n, bool lock,
			  char (*ids)[37], idb_err *err)
{
	for (size_t i = 0; i < n; i++)
		ids[i][0] = '\0';
	if (n == 0)
		return 0;
	static const char sql[] =
		"SELECT (t.ord - 1)::int, g.id FROM json_array_elements_text($2::json) WITH ORDINALITY t(n, ord)"
		" JOIN groups g ON g.org_id = $1::uuid AND lower(g.name) = lower(t.n)";
	static const char lock_sql[] =
		"SELECT (t.ord - 1)::int, g.id FROM json_array_elements_text($2::json) WITH ORDINALITY t(n, ord)"
		" JOIN groups g ON g.org_id = $1::uuid AND lower(g.name) = lower(t.n) FOR KEY SHARE OF g";
	char *list = strings_json(names, n);
	if (!list)
		return oom(err);
	const char *p[] = {org_id, list};
	PGresult *res = idb_db_query(db, lock ? lock_sql : sql, 2, p, err);
	free(list);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	for (int r = 0; r < PQntuples(res); r++) {
		long i = strtol(idb_db_str(res, r, 0), NULL, 10);
		if (i >= 0 && (size_t)i < n)
			idb_strlcpy(ids[i], idb_db_str(res, r, 1), 37);
	}
	PQclear(res);
	return 0;
}

static void group_missing_msg(char *out, size_t outsz, const char *name)
{
	snprintf(out, outsz, "Group not found: %s", name);
}

/* The preview's checks against the organisation, on parsed rows. */
static int check_rows(idb_db *db, const char *org_id, idb_import_file *f, idb_err *err)
{
	size_t n = f->nrows, ngroups = 0;
	for (size_t i = 0; i < n; i++)
		ngroups += f->rows[i].ngroups;
	const char **emails = calloc(n ? n : 1, sizeof(char *));
	size_t *owner = calloc(n ? n : 1, sizeof(size_t));
	bool *exists = calloc(n ? n : 1, sizeof(bool));
	const char **names = calloc(ngroups ? ngroups : 1, sizeof(char *));
	size_t *gowner = calloc(ngroups ? ngroups : 1, sizeof(size_t));
	char(*ids)[37] = calloc(ngroups ? ngroups : 1, sizeof(*ids));
	int rc = emails && owner && exists && names && gowner && ids ? 0 : oom(err);
	size_t k = 0;
	for (size_t i = 0; rc == 0 && i < n; i++)
		if (f->rows[i].action != IDB_IMPORT_SKIP && idb_email_valid(f->rows[i].email)) {
			emails[k] = f->rows[i].email;
			owner[k++] = i;
		}
	if (rc == 0)
		rc = existing_emails(db, org_id, emails, k, exists, err);
	for (size_t j = 0; rc == 0 && j < k; j++)
		if (exists[j])
			idb_import_row_skip(f, &f->rows[owner[j]], "Duplicate email");
	size_t g = 0;
	for (size_t i = 0; rc == 0 && i < n; i++)
		for (size_t j = 0; f->rows[i].action != IDB_IMPORT_SKIP && j < f->rows[i].ngroups; j++) {
			names[g] = f->rows[i].groups[j];
			gowner[g++] = i;
		}
	if (rc == 0)
		rc = resolve_groups(db, org_id, names, g, false, ids, err);
	for (size_t j = 0; rc == 0 && j < g; j++)
		if (!ids[j][0]) {
			char msg[320];
			group_missing_msg(msg, sizeof(msg), names[j]);
			idb_import_row_error(f, &f->rows[gowner[j]], msg);
		}
	free(emails);
	free(owner);
	free(exists);
	free(names);
	free(gowner);
	free(ids);
	return rc;
}

/* --- JSON shapes --- */

/* A row as stored (with_cells) or shown. */
static json_t *row_json(const idb_import_row *r, bool with_cells)
{
	json_t *groups = json_array();
	for (size_t i = 0; groups && i < r->ngroups; i++)
		if (json_array_append_new(groups, json_string(r->groups[i])) != 0) {
			json_decref(groups);
			groups = NULL;
		}
	if (!groups)
		return NULL;
	json_t *o = json_pack("{sI ss ss so so ss ss}", "line", (json_int_t)r->line, "email", r->email, "name", r->name,
			      "role", r->role >= 0 ? json_string(idb_role_name(r->role)) : json_null(), "groups", groups,
			      "action", idb_import_action_name(r->action), "message", r->message);
	if (o && with_cells) {
		json_t *cells = json_pack("[ssss]", r->cell[0], r->cell[1], r->cell[2], r->cell[3]);
		if (!cells || json_object_set_new(o, "cells", cells) != 0) {
			json_decref(o);
			o = NULL;
		}
	}
	return o;
}

/* The stored rows without their cells (new array). */
static json_t *public_rows(json_t *stored)
{
	json_t *rows = json_array();
	size_t i;
	json_t *r;
	json_array_foreach(stored, i, r)
	{
		json_t *c = rows ? json_copy(r) : NULL;
		if (c)
			json_object_del(c, "cells");
		if (!c || json_array_append_new(rows, c) != 0) {
			json_decref(rows);
			return NULL;
		}
	}
	return rows;
}

static json_t *preview_json(const char *id, const char *expires_at, size_t add, size_t skip, size_t error,
			    json_t *rows /* stolen */)
{
	return json_pack("{so ss so sI sI sI so}", "id", id ? json_string(id) : json_null(), "status", "pending",
			 "expires_at", expires_at ? json_string(expires_at) : json_null(), "add", (json_int_t)add, "skip",
			 (json_int_t)skip, "error", (json_int_t)error, "rows", rows);
}

/* --- preview --- */

int idb_import_preview(idb_db *db, const idb_actor *a, const char *data, size_t len, bool store, json_t **out,
		       idb_err *err)
{
	*out = NULL;
	idb_import_file *f = NULL;
	int rc = idb_csv_import_parse(&f, data, len, err);
	if (rc != 0)
		return rc;
	if ((rc = check_rows(db, a->org_id, f, err)) != 0) {
		idb_import_file_free(f);
		return rc;
	}
	json_t *rows = json_array(), *stored = store ? json_array() : NULL;
	if (!rows || (store && !stored))
		rc = oom(err);
	for (size_t i = 0; rc == 0 && i < f->nrows; i++) {
		if (json_array_append_new(rows, row_json(&f->rows[i], false)) != 0 ||
		    (store && json_array_append_new(stored, row_json(&f->rows[i], true)) != 0))
			rc = oom(err);
	}
	char id[37] = "", expires[40] = "";
	if (rc == 0 && store) {
		static const char sql[] =
			"INSERT INTO import_previews (org_id, created_by, expires_at, rows, add_count, skip_count, error_count)"
			" VALUES ($1::uuid, $2::uuid, now() + make_interval(secs => $3::int), $4::jsonb, $5::int, $6::int,"
			" $7::int) RETURNING id, idb_ts(expires_at)";
		char *txt = json_dumps(stored, JSON_COMPACT);
		char ttl[16], nadd[16], nskip[16], nerr[16];
		snprintf(ttl, sizeof(ttl), "%d", IDB_IMPORT_PREVIEW_TTL_S);
		snprintf(nadd, sizeof(nadd), "%zu", f->nadd);
		snprintf(nskip, sizeof(nskip), "%zu", f->nskip);
		snprintf(nerr, sizeof(nerr), "%zu", f->nerror);
		const char *p[] = {a->org_id, a->user_id, ttl, txt, nadd, nskip, nerr};
		PGresult *res = NULL;
		if (!txt)
			rc = oom(err);
		else if ((rc = idb_db_begin(db, err)) == 0) {
			if (!(res = idb_db_query(db, sql, 7, p, err)))
				rc = err ? err->code : IDB_EINTERNAL;
			if (rc == 0) {
				idb_strlcpy(id, idb_db_str(res, 0, 0), sizeof(id));
				idb_strlcpy(expires, idb_db_str(res, 0, 1), sizeof(expires));
			}
			PQclear(res);
			char after[256];
			snprintf(after, sizeof(after), "{\"id\":\"%s\",\"rows\":%zu,\"add\":%zu,\"skip\":%zu,\"error\":%zu}", id,
				 f->nrows, f->nadd, f->nskip, f->nerror);
			if (rc == 0)
				rc = idb_audit_write(db, a, "import.preview", "import", id, NULL, after, err);
			rc = finish(db, rc, err);
		}
		free(txt);
	}
	if (rc == 0 && !(*out = preview_json(store ? id : NULL, store ? expires : NULL, f->nadd, f->nskip, f->nerror,
					     rows)))
		rc = oom(err);
	else if (rc != 0)
		json_decref(rows);
	json_decref(stored);
	idb_import_file_free(f);
	return rc;
}

/* --- stored previews --- */

typedef struct stored {
	bool confirmed, expired;
	char expires_at[40];
	long add, skip, error;
	json_t *rows;   /* stored rows (with cells) */
	json_t *result; /* NULL while pending */
} stored;

static void stored_clear(stored *s)
{
	json_decref(s->rows);
	json_decref(s->result);
	memset(s, 0, sizeof(*s));
}

static int load(idb_db *db, const char *org_id, const char *id, bool lock, stored *out, idb_err *err)
{
	memset(out, 0, sizeof(*out));
	if (!idb_uuid_valid(id))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "Import preview not found.");
	static const char sql[] =
		"SELECT status, expires_at <= now(), idb_ts(expires_at), add_count, skip_count, error_count,"
		"       rows::text, result::text FROM import_previews WHERE id = $1::uuid AND org_id = $2::uuid";
	static const char lock_sql[] =
		"SELECT status, expires_at <= now(), idb_ts(expires_at), add_count, skip_count, error_count,"
		"       rows::text, result::text FROM import_previews WHERE id = $1::uuid AND org_id = $2::uuid FOR UPDATE";
	const char *p[] = {id, org_id};
	PGresult *res = idb_db_query(db, lock ? lock_sql : sql, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = 0;
	if (PQntuples(res) != 1) {
		rc = idb_err_set(err, IDB_ENOTFOUND, NULL, "Import preview not found.");
	} else {
		out->confirmed = strcmp(idb_db_str(res, 0, 0), "confirmed") == 0;
		out->expired = idb_db_str(res, 0, 1)[0] == 't';
		idb_strlcpy(out->expires_at, idb_db_str(res, 0, 2), sizeof(out->expires_at));
		out->add = strtol(idb_db_str(res, 0, 3), NULL, 10);
		out->skip = strtol(idb_db_str(res, 0, 4), NULL, 10);
		out->error = strtol(idb_db_str(res, 0, 5), NULL, 10);
		out->rows = idb_json_from_db(idb_db_str(res, 0, 6));
		if (out->confirmed)
			out->result = idb_json_from_db(idb_db_str(res, 0, 7));
		if (!json_is_array(out->rows) || (out->confirmed && !json_is_object(out->result)))
			rc = idb_err_set(err, IDB_EINTERNAL, NULL, "bad JSON from the database");
		else if (!out->confirmed && out->expired)
			rc = idb_err_set(err, IDB_EEXPIRED, NULL,
					 "This import preview expired at %s (previews are kept for %d minutes). Upload the "
					 "file again.",
					 out->expires_at, IDB_IMPORT_PREVIEW_TTL_S / 60);
	}
	PQclear(res);
	if (rc != 0)
		stored_clear(out);
	return rc;
}

int idb_import_get(idb_db *db, const char *org_id, const char *preview_id, json_t **out, idb_err *err)
{
	*out = NULL;
	stored s;
	int rc = load(db, org_id, preview_id, false, &s, err);
	if (rc != 0)
		return rc;
	if (s.confirmed) {
		*out = json_incref(s.result);
	} else {
		json_t *rows = public_rows(s.rows);
		if (!rows || !(*out = preview_json(preview_id, s.expires_at, (size_t)s.add, (size_t)s.skip,
						   (size_t)s.error, rows)))
			rc = oom(err);
	}
	stored_clear(&s);
	return rc;
}

/* --- confirm --- */

static const char *jstr(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "";
}

static int add_memberships(idb_db *db, const char *org_id, const char *user_id, char (*ids)[37], size_t n,
			   idb_err *err)
{
	if (n == 0)
		return 0;
	char *lit = malloc(3 + n * 37);
	if (!lit)
		return oom(err);
	size_t o = 0;
	lit[o++] = '{';
	for (size_t i = 0; i < n; i++) {
		if (i)
			lit[o++] = ',';
		memcpy(lit + o, ids[i], 36);
		o += 36;
	}
	lit[o++] = '}';
	lit[o] = '\0';
	static const char sql[] = "INSERT INTO memberships (org_id, user_id, group_id, source)"
				  " SELECT DISTINCT $1::uuid, $2::uuid, g, 'import'::membership_source"
				  "   FROM unnest($3::uuid[]) g ON CONFLICT DO NOTHING";
	const char *p[] = {org_id, user_id, lit};
	int rc = idb_db_exec(db, sql, 3, p, NULL, err);
	free(lit);
	return rc;
}

/* One "add" row of the preview: the user, memberships, invitation, audit.
 * *created false (and nothing written) when the e-mail became a user since
 * the preview. */
static int apply_row(idb_db *db, const idb_config *cfg, const idb_actor *a, const char *org_name,
		     const char *preview_id, json_t *row, char (*gids)[37], size_t ngids, bool *created,
		     char user_id[37], idb_err *err)
{
	const char *email = jstr(row, "email"), *name = jstr(row, "name");
	int role = idb_role_parse(jstr(row, "role"));
	if (role < 0)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "import preview row without a valid role");
	idb_user_new nu = {.org_id = a->org_id,
			   .email = email,
			   .name = name,
			   .role = role,
			   .status = "pending",
			   .created_via = "import"};
	int rc = idb_user_create_if_absent(db, &nu, user_id, created, err);
	if (rc != 0 || !*created)
		return rc;
	if ((rc = add_memberships(db, a->org_id, user_id, gids, ngids, err)) != 0)
		return rc;
	if ((rc = idb_invite_issue_tx(db, cfg, a, user_id, email, name[0] ? name : NULL, org_name, err)) != 0)
		return rc;
	json_t *after = json_pack("{ss ss ss sO ss ss}", "email", email, "name", name, "role", idb_role_name(role),
				  "groups", json_object_get(row, "groups"), "status", "pending", "import_id", preview_id);
	char *txt = after ? json_dumps(after, JSON_COMPACT) : NULL;
	json_decref(after);
	if (!txt)
		return oom(err);
	rc = idb_audit_write(db, a, "user.import", "user", user_id, NULL, txt, err);
	free(txt);
	return rc;
}

/* Applies s (locked, pending) and builds the result. */
static int apply(idb_db *db, const idb_config *cfg, const idb_actor *a, const char *preview_id, stored *s,
		 json_t **out, idb_err *err)
{
	*out = NULL;
	json_t *rows = s->rows;
	size_t n = json_array_size(rows), nadd = 0, ngroups = 0;
	for (size_t i = 0; i < n; i++) {
		json_t *r = json_array_get(rows, i);
		if (strcmp(jstr(r, "action"), "add") == 0) {
			nadd++;
			ngroups += json_array_size(json_object_get(r, "groups"));
		}
	}
	const char **emails = calloc(nadd ? nadd : 1, sizeof(char *));
	bool *exists = calloc(nadd ? nadd : 1, sizeof(bool));
	const char **names = calloc(ngroups ? ngroups : 1, sizeof(char *));
	char(*ids)[37] = calloc(ngroups ? ngroups : 1, sizeof(*ids));
	json_t *results = json_array();
	int rc = emails && exists && names && ids && results ? 0 : oom(err);
	size_t k = 0, g = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		json_t *r = json_array_get(rows, i);
		if (strcmp(jstr(r, "action"), "add") != 0)
			continue;
		emails[k++] = jstr(r, "email");
		size_t j;
		json_t *gn;
		json_array_foreach(json_object_get(r, "groups"), j, gn) names[g++] = json_string_value(gn) ? json_string_value(gn) : "";
	}
	if (rc == 0)
		rc = existing_emails(db, a->org_id, emails, k, exists, err);
	if (rc == 0)
		rc = resolve_groups(db, a->org_id, names, g, true, ids, err);
	char org_name[201] = "";
	if (rc == 0)
		rc = idb_org_name(db, a->org_id, org_name, err);

	long created = 0, skipped = 0, rejected = 0;
	k = 0;
	g = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		json_t *r = json_copy(json_array_get(rows, i));
		if (r)
			json_object_del(r, "cells");
		if (!r || json_array_append_new(results, r) != 0) {
			rc = oom(err);
			break;
		}
		const char *action = jstr(r, "action");
		if (strcmp(action, "add") != 0) {
			if (strcmp(action, "skip") == 0)
				skipped++;
			else
				rejected++;
			continue;
		}
		bool exist = exists[k++];
		size_t ng = json_array_size(json_object_get(r, "groups")), first = g;
		g += ng;
		char msg[IDB_IMPORT_MSG_MAX] = "";
		for (size_t j = first; j < first + ng; j++)
			if (!ids[j][0]) {
				size_t have = strlen(msg);
				char one[320];
				group_missing_msg(one, sizeof(one), names[j]);
				snprintf(msg + have, sizeof(msg) - have, "%s%s", have ? "; " : "", one);
			}
		bool made = false;
		char user_id[37] = "";
		if (!exist && !msg[0]) {
			rc = apply_row(db, cfg, a, org_name, preview_id, r, ids + first, ng, &made, user_id, err);
			if (rc != 0)
				break;
		}
		int set = 0;
		if (made) {
			created++;
			set = json_object_set_new(r, "user_id", json_string(user_id));
		} else if (msg[0] && !exist) {
			rejected++;
			set = json_object_set_new(r, "action", json_string("error")) |
			      json_object_set_new(r, "message", json_string(msg)) |
			      json_object_set_new(r, "conflict", json_true());
		} else {
			skipped++;
			set = json_object_set_new(r, "action", json_string("skip")) |
			      json_object_set_new(r, "message", json_string("Duplicate email")) |
			      json_object_set_new(r, "conflict", json_true());
		}
		if (set != 0)
			rc = oom(err);
	}
	free(emails);
	free(exists);
	free(names);
	free(ids);
	if (rc != 0) {
		json_decref(results);
		return rc;
	}
	json_t *res = json_pack("{ss ss sI sI sI so}", "id", preview_id, "status", "confirmed", "add", (json_int_t)created,
				"skip", (json_int_t)skipped, "error", (json_int_t)rejected, "rows", results);
	char *txt = res ? json_dumps(res, JSON_COMPACT) : NULL;
	if (!txt) {
		json_decref(res);
		return oom(err);
	}
	static const char sql[] =
		"UPDATE import_previews SET status = 'confirmed', confirmed_at = now(), confirmed_by = $3::uuid,"
		"       result = $2::jsonb || jsonb_build_object('confirmed_at', idb_ts(now()))"
		" WHERE id = $1::uuid RETURNING idb_ts(now())";
	const char *p[] = {preview_id, txt, a->user_id};
	PGresult *pr = idb_db_query(db, sql, 3, p, err);
	free(txt);
	if (!pr)
		rc = err ? err->code : IDB_EINTERNAL;
	else if (json_object_set_new(res, "confirmed_at", json_string(idb_db_str(pr, 0, 0))) != 0)
		rc = oom(err);
	PQclear(pr);
	char after[256];
	snprintf(after, sizeof(after), "{\"id\":\"%s\",\"add\":%ld,\"skip\":%ld,\"error\":%ld}", preview_id, created,
		 skipped, rejected);
	if (rc == 0)
		rc = idb_audit_write(db, a, "import.confirm", "import", preview_id, NULL, after, err);
	if (rc != 0) {
		json_decref(res);
		return rc;
	}
	*out = res;
	return 0;
}

int idb_import_confirm(idb_db *db, const idb_config *cfg, const idb_actor *a, const char *preview_id, json_t **out,
		       idb_err *err)
{
	*out = NULL;
	if (!idb_uuid_valid(preview_id))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "Import preview not found.");
	int rc = idb_db_begin(db, err);
	if (rc != 0)
		return rc;
	stored s;
	/* The row lock serialises confirms of one preview: the second waits,
	 * then finds it confirmed and answers with the stored result. */
	rc = load(db, a->org_id, preview_id, true, &s, err);
	if (rc == 0 && s.confirmed)
		*out = json_incref(s.result);
	else if (rc == 0)
		rc = apply(db, cfg, a, preview_id, &s, out, err);
	stored_clear(&s);
	rc = finish(db, rc, err);
	if (rc != 0) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

/* --- error report --- */

int idb_import_errors_csv(idb_db *db, const char *org_id, const char *preview_id, char **out, size_t *len,
			  idb_err *err)
{
	*out = NULL;
	*len = 0;
	stored s;
	int rc = load(db, org_id, preview_id, false, &s, err);
	if (rc != 0)
		return rc;
	json_t *verdicts = s.confirmed ? json_object_get(s.result, "rows") : s.rows;
	idb_csv_out o = {0};
	static const char *const header[] = {"email", "name", "role", "groups", "error"};
	rc = idb_csv_out_record(&o, header, 5, false, err);
	size_t i;
	json_t *row;
	json_array_foreach(s.rows, i, row)
	{
		json_t *v = json_array_get(verdicts, i);
		if (rc != 0)
			break;
		if (strcmp(jstr(v, "action"), "error") != 0)
			continue;
		json_t *cells = json_object_get(row, "cells");
		const char *rec[5];
		for (size_t c = 0; c < 4; c++) {
			const char *cv = json_string_value(json_array_get(cells, c));
			rec[c] = cv ? cv : "";
		}
		rec[4] = jstr(v, "message");
		rc = idb_csv_out_record(&o, rec, 5, true, err);
	}
	stored_clear(&s);
	if (rc != 0) {
		idb_csv_out_clear(&o);
		return rc;
	}
	*out = o.data;
	*len = o.len;
	return 0;
}

int idb_import_purge(idb_db *db, long *removed, idb_err *err)
{
	static const char sql[] = "DELETE FROM import_previews WHERE expires_at < now() - make_interval(secs => $1::int)";
	char keep[16];
	snprintf(keep, sizeof(keep), "%d", IDB_IMPORT_KEEP_S);
	const char *p[] = {keep};
	return idb_db_exec(db, sql, 1, p, removed, err);
}
