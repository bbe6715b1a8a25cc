/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "audit_query.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "util.h"

typedef struct sqlbuf {
	char s[2048];
	size_t n;
	bool overflow;
} sqlbuf;

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

int idb_audit_list(idb_db *db, const char *org_id, const idb_audit_filter *f, json_t **out, idb_err *err)
{
	*out = NULL;
	int lim;
	int rc = idb_limit_parse(f->limit, 100, 500, &lim, err);
	if (rc != 0)
		return rc;
	size_t alen = f->action ? strlen(f->action) : 0;
	bool prefix = alen > 2 && strcmp(f->action + alen - 2, ".*") == 0;
	if (f->action && (alen == 0 || alen > 64 ||
			  strspn(f->action, "abcdefghijklmnopqrstuvwxyz0123456789._") != alen - (prefix ? 1 : 0)))
		return idb_err_set(err, IDB_EINVAL, "action", "action must be an action name such as user.deactivate or user.*");
	int64_t since = 0, until = 0;
	if (f->since && !idb_rfc3339_parse(f->since, &since))
		return idb_err_set(err, IDB_EINVAL, "since", "Use an RFC 3339 time such as 2024-05-01T00:00:00Z");
	if (f->until && !idb_rfc3339_parse(f->until, &until))
		return idb_err_set(err, IDB_EINVAL, "until", "Use an RFC 3339 time such as 2024-05-01T00:00:00Z");
	if (f->actor && (!f->actor[0] || strlen(f->actor) > 254))
		return idb_err_set(err, IDB_EINVAL, "actor", "actor must be a user id or an e-mail address");
	if (f->target && (!f->target[0] || strlen(f->target) > 200))
		return idb_err_set(err, IDB_EINVAL, "target", "target must be 1-200 characters");
	char parts[2][256];
	long long cid = 0;
	int64_t cat = 0;
	if (f->cursor && (!idb_cursor_decode(f->cursor, parts, 2) || !idb_parse_long(parts[1], 1, INT64_MAX, &cid) ||
			  !idb_rfc3339_parse(parts[0], &cat)))
		return idb_err_set(err, IDB_EINVAL, "cursor", "cursor is not one this server issued");

	char since_s[24], until_s[24], lim_s[16], action_pat[80];
	const char *p[10];
	int np = 0;
	sqlbuf b = {.n = 0};
	sql_add(&b, "SELECT json_build_object('id', a.id, 'at', idb_ts(a.at), 'actor_id', a.actor_id,"
		    " 'actor_email', a.actor_email, 'action', a.action, 'target_type', a.target_type,"
		    " 'target_id', a.target_id, 'before', a.before, 'after', a.after, 'ip', a.ip,"
		    " 'request_id', a.request_id)::text,"
		    " to_char(a.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), a.id::text"
		    " FROM audit_log a WHERE a.org_id = $%d::uuid", ++np);
	p[np - 1] = org_id;
	if (f->action && prefix) {
		snprintf(action_pat, sizeof(action_pat), "%.*s.%%", (int)(alen - 2), f->action);
		sql_add(&b, " AND a.action LIKE $%d", ++np);
		p[np - 1] = action_pat;
	} else if (f->action) {
		sql_add(&b, " AND a.action = $%d", ++np);
		p[np - 1] = f->action;
	}
	if (f->actor && idb_uuid_valid(f->actor)) {
		sql_add(&b, " AND a.actor_id = $%d::uuid", ++np);
		p[np - 1] = f->actor;
	} else if (f->actor) {
		sql_add(&b, " AND lower(a.actor_email) = lower($%d)", ++np);
		p[np - 1] = f->actor;
	}
	if (f->target) {
		sql_add(&b, " AND a.target_id = $%d", ++np);
		p[np - 1] = f->target;
	}
	if (f->since) {
		snprintf(since_s, sizeof(since_s), "%lld", (long long)since);
		sql_add(&b, " AND a.at >= to_timestamp($%d::double precision)", ++np);
		p[np - 1] = since_s;
	}
	if (f->until) {
		snprintf(until_s, sizeof(until_s), "%lld", (long long)until);
		sql_add(&b, " AND a.at < to_timestamp($%d::double precision)", ++np);
		p[np - 1] = until_s;
	}
	if (f->cursor) {
		sql_add(&b, " AND (a.at, a.id) < ($%d::timestamptz", ++np);
		p[np - 1] = parts[0];
		sql_add(&b, ", $%d::bigint)", ++np);
		p[np - 1] = parts[1];
	}
	snprintf(lim_s, sizeof(lim_s), "%d", lim + 1);
	sql_add(&b, " ORDER BY a.at DESC, a.id DESC LIMIT $%d::int", ++np);
	p[np - 1] = lim_s;
	if (b.overflow)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "audit query too long");
	return idb_db_json_page(db, true, b.s, np, p, lim, out, err);
}
