/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "outbox_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "db.h"

int idb_outbox_enqueue_email(idb_db *db, const char *org_id, const char *to, const char *subject, const char *text,
			     const char *html, idb_err *err)
{
	json_t *o = json_pack("{ss ss ss}", "to", to, "subject", subject, "text", text);
	if (o && html)
		json_object_set_new(o, "html", json_string(html));
	char *payload = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!payload)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory (or invalid UTF-8) composing mail");
	static const char sql[] = "INSERT INTO outbox (org_id, kind, payload) VALUES ($1::uuid, 'email', $2::jsonb)";
	const char *p[] = {org_id, payload};
	int rc = idb_db_exec(db, sql, 2, p, NULL, err);
	free(payload);
	return rc;
}

int idb_outbox_claim(idb_db *db, idb_outbox_msg *out, idb_err *err)
{
	memset(out, 0, sizeof(*out));
	static const char sql[] = "SELECT id, attempts, payload::text FROM outbox"
				  " WHERE sent_at IS NULL AND next_attempt_at <= now()"
				  " ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED";
	PGresult *res = idb_db_query(db, sql, 0, NULL, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "nothing to send");
	}
	out->id = strtoll(idb_db_str(res, 0, 0), NULL, 10);
	out->attempts = (int)strtol(idb_db_str(res, 0, 1), NULL, 10);
	out->payload = strdup(idb_db_str(res, 0, 2));
	PQclear(res);
	if (!out->payload)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	return 0;
}

int idb_outbox_mark_sent(idb_db *db, long long id, idb_err *err)
{
	char ids[24];
	snprintf(ids, sizeof(ids), "%lld", id);
	static const char sql[] = "UPDATE outbox SET sent_at = now(), last_error = NULL WHERE id = $1::bigint";
	const char *p[] = {ids};
	return idb_db_exec(db, sql, 1, p, NULL, err);
}

int idb_outbox_mark_failed(idb_db *db, long long id, const char *error, idb_err *err)
{
	char ids[24];
	snprintf(ids, sizeof(ids), "%lld", id);
	/* attempts is the count before this failure: 5 s, 10 s, 20 s, … 1 h. */
	static const char sql[] =
		"UPDATE outbox SET attempts = attempts + 1, last_error = left($2, 1000),"
		"       next_attempt_at = now() + make_interval(secs => least(3600, 5 * power(2, least(attempts, 20))))"
		" WHERE id = $1::bigint";
	const char *p[] = {ids, error};
	return idb_db_exec(db, sql, 2, p, NULL, err);
}

void idb_outbox_msg_clear(idb_outbox_msg *m)
{
	if (!m)
		return;
	free(m->payload);
	m->payload = NULL;
}
