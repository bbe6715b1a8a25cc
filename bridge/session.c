/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

#define TOUCH_INTERVAL_S 60 /* last_seen_at is written at most this often */

static void cache_key(char out[80], const char *hash)
{
	snprintf(out, 80, "idb:sess:%s", hash);
}

static char *row_to_json(const idb_session_row *r)
{
	json_t *o = json_pack("{ss ss ss ss ss sI sI sI}", "u", r->user_id, "o", r->org_id, "c", r->csrf_token, "m",
			      r->auth_method, "ci", r->connection_id, "cr", (json_int_t)r->created_at, "ls",
			      (json_int_t)r->last_seen_at, "x", (json_int_t)r->expires_at);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return s;
}

static bool row_from_json(const char *s, const char *hash, idb_session_row *r)
{
	json_t *o = json_loads(s, 0, NULL);
	if (!o)
		return false;
	const char *u, *org, *c, *m, *ci;
	json_int_t cr, ls, x;
	bool ok = json_unpack(o, "{ss ss ss ss ss sI sI sI}", "u", &u, "o", &org, "c", &c, "m", &m, "ci", &ci, "cr", &cr,
			      "ls", &ls, "x", &x) == 0;
	if (ok) {
		memset(r, 0, sizeof(*r));
		idb_strlcpy(r->id_hash, hash, sizeof(r->id_hash));
		idb_strlcpy(r->user_id, u, sizeof(r->user_id));
		idb_strlcpy(r->org_id, org, sizeof(r->org_id));
		idb_strlcpy(r->csrf_token, c, sizeof(r->csrf_token));
		idb_strlcpy(r->auth_method, m, sizeof(r->auth_method));
		idb_strlcpy(r->connection_id, ci, sizeof(r->connection_id));
		r->created_at = cr;
		r->last_seen_at = ls;
		r->expires_at = x;
	}
	json_decref(o);
	return ok;
}

static void cache_put(idb_app *app, const idb_session_row *r)
{
	long long ttl = app->cfg->session_cache_ttl_s;
	long long left = r->expires_at - idb_now_s();
	if (left < ttl)
		ttl = left;
	if (ttl <= 0)
		return;
	char key[80];
	cache_key(key, r->id_hash);
	char *js = row_to_json(r);
	if (js)
		(void)idb_cache_set(app->cache, key, js, ttl, NULL);
	free(js);
}

void idb_session_prepare(idb_req *req, const char *user_id, const char *org_id, const char *method,
			 const idb_session_idp *idp, idb_session_new *s)
{
	idb_app *app = idb_req_app(req);
	idb_session_row *row = &s->row;
	memset(s, 0, sizeof(*s));
	idb_random_token(s->token, sizeof(s->token), 32);
	idb_sha256_hex(row->id_hash, s->token, strlen(s->token));
	idb_random_token(row->csrf_token, sizeof(row->csrf_token), 24);
	idb_strlcpy(row->user_id, user_id, sizeof(row->user_id));
	idb_strlcpy(row->org_id, org_id, sizeof(row->org_id));
	idb_strlcpy(row->auth_method, method, sizeof(row->auth_method));
	if (idp && idp->connection_id)
		idb_strlcpy(row->connection_id, idp->connection_id, sizeof(row->connection_id));
	row->created_at = row->last_seen_at = idb_now_s();
	row->expires_at = row->created_at + app->cfg->session_absolute_timeout_s;
}

int idb_session_insert(idb_req *req, idb_db *db, const idb_session_new *s, const idb_session_idp *idp, idb_err *err)
{
	return idb_sessions_insert(db, &s->row, idp, idb_req_ip(req), idb_req_header(req, "User-Agent"), err);
}

void idb_session_issue(idb_req *req, const idb_session_new *s, char *csrf_out)
{
	idb_app *app = idb_req_app(req);
	cache_put(app, &s->row);
	idb_resp_cookie(req, IDB_SESSION_COOKIE, s->token, app->cfg->session_absolute_timeout_s);
	if (csrf_out)
		idb_strlcpy(csrf_out, s->row.csrf_token, 64);
}

int idb_session_sso_in_tx(idb_db *db, const idb_jit_result *r, void *arg, idb_err *err)
{
	idb_session_sso *x = arg;
	idb_session_prepare(x->req, r->user_id, r->org_id, x->method, x->idp, &x->s);
	return idb_session_insert(x->req, db, &x->s, x->idp, err);
}

int idb_session_start(idb_req *req, const char *user_id, const char *org_id, const char *method,
		      const idb_session_idp *idp, char *csrf_out, idb_err *err)
{
	idb_app *app = idb_req_app(req);
	idb_session_new s;
	idb_session_prepare(req, user_id, org_id, method, idp, &s);
	idb_db *db;
	int rc = idb_store_acquire(app->store, &db, err);
	if (rc != 0)
		return rc;
	rc = idb_session_insert(req, db, &s, idp, err);
	idb_store_release(db);
	if (rc == 0)
		idb_session_issue(req, &s, csrf_out);
	return rc;
}

/* A cookie value we issued is 43 base64url characters; anything else is not
 * worth a round trip. */
static bool cookie_plausible(const char *c)
{
	size_t n = strlen(c);
	return n == 43 && strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

int idb_session_lookup(idb_app *app, const char *cookie, idb_session_row *out, idb_err *err)
{
	if (!cookie || !cookie_plausible(cookie))
		return idb_err_set(err, IDB_EAUTH, NULL, "no valid session");
	char hash[65], key[80];
	idb_sha256_hex(hash, cookie, strlen(cookie));
	cache_key(key, hash);
	int64_t now = idb_now_s();
	char *js = NULL;
	int crc = idb_cache_get(app->cache, key, &js, NULL);
	if (crc == 0) {
		bool ok = row_from_json(js, hash, out);
		free(js);
		if (ok) {
			idb_metrics_cache(IDB_CACHE_SESSION, IDB_CACHE_HIT);
			if (now >= out->expires_at || now - out->last_seen_at > app->cfg->session_idle_timeout_s) {
				(void)idb_session_end(app, hash, NULL);
				return idb_err_set(err, IDB_EAUTH, NULL, "session expired");
			}
			if (now - out->last_seen_at >= TOUCH_INTERVAL_S) {
				idb_db *db;
				if (idb_store_acquire(app->store, &db, NULL) == 0) {
					(void)idb_sessions_touch(db, hash, NULL);
					idb_store_release(db);
				}
				out->last_seen_at = now;
				cache_put(app, out);
			}
			return 0;
		}
		crc = IDB_ENOTFOUND; /* unreadable entry: treat as a miss */
	}
	if (crc == IDB_EUNAVAIL) {
		idb_metrics_cache(IDB_CACHE_SESSION, IDB_CACHE_ERROR);
		idb_metrics_fallback();
	} else {
		idb_metrics_cache(IDB_CACHE_SESSION, IDB_CACHE_MISS);
	}
	idb_db *db;
	int rc = idb_store_acquire(app->store, &db, err);
	if (rc != 0)
		return rc;
	rc = idb_sessions_get(db, hash, app->cfg->session_idle_timeout_s, out, err);
	if (rc == 0 && now - out->last_seen_at >= TOUCH_INTERVAL_S) {
		(void)idb_sessions_touch(db, hash, NULL);
		out->last_seen_at = now;
	}
	idb_store_release(db);
	if (rc == IDB_ENOTFOUND)
		return idb_err_set(err, IDB_EAUTH, NULL, "no valid session");
	if (rc != 0)
		return rc;
	if (crc != IDB_EUNAVAIL)
		cache_put(app, out);
	return 0;
}

int idb_session_end(idb_app *app, const char *id_hash, idb_err *err)
{
	char key[80];
	cache_key(key, id_hash);
	const char *keys[] = {key};
	/* Cache first: if PostgreSQL fails, the entry must not outlive the row. */
	(void)idb_cache_del(app->cache, keys, 1, NULL);
	idb_db *db;
	int rc = idb_store_acquire(app->store, &db, err);
	if (rc != 0)
		return rc;
	rc = idb_sessions_delete(db, id_hash, err);
	idb_store_release(db);
	return rc;
}


int idb_session_end_user(idb_app *app, const char *user_id, idb_err *err)
{
	idb_db *db;
	int rc = idb_store_acquire(app->store, &db, err);
	if (rc != 0)
		return rc;
	char(*hashes)[65] = NULL;
	int n = 0;
	rc = idb_sessions_delete_user(db, user_id, &hashes, &n, err);
	idb_store_release(db);
	if (rc != 0)
		return rc;
	idb_session_uncache(app, (const char(*)[65])hashes, (size_t)n);
	free(hashes);
	return 0;
}

void idb_session_uncache(idb_app *app, const char (*hashes)[65], size_t n)
{
	/* DEL in batches so one command stays small. */
	for (size_t off = 0; off < n; off += 256) {
		size_t m = n - off < 256 ? n - off : 256;
		char(*keys)[80] = calloc(m, 80);
		const char **kp = calloc(m, sizeof(char *));
		if (keys && kp) {
			for (size_t i = 0; i < m; i++) {
				cache_key(keys[i], hashes[off + i]);
				kp[i] = keys[i];
			}
			if (idb_cache_del(app->cache, kp, (int)m, NULL) != 0)
				idb_log_warn("could not drop %zu cached sessions; they expire within %llds", m,
					     app->cfg->session_cache_ttl_s);
		}
		free(kp);
		free(keys);
	}
}

bool idb_session_idp_context(idb_app *app, const char *id_hash, const char *protocol, idb_connection *conn,
			     char **subject, char **state)
{
	memset(conn, 0, sizeof(*conn));
	*subject = *state = NULL;
	idb_db *db;
	if (idb_store_acquire(app->store, &db, NULL) != 0)
		return false;
	char *sidx = NULL;
	idb_session_row row;
	bool have = idb_sessions_get(db, id_hash, app->cfg->session_idle_timeout_s, &row, NULL) == 0 &&
		    row.connection_id[0] && idb_sessions_idp_info(db, id_hash, subject, &sidx, state, NULL) == 0 &&
		    idb_connection_get(db, row.org_id, row.connection_id, conn, NULL) == 0 &&
		    !strcmp(conn->protocol, protocol);
	idb_store_release(db);
	free(sidx);
	if (!have) {
		idb_connection_clear(conn);
		free(*subject);
		free(*state);
		*subject = *state = NULL;
	}
	return have;
}
