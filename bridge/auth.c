/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "apikeys.h"
#include "app.h"
#include "authz.h"
#include "log.h"
#include "metrics.h"
#include "oidc.h"
#include "session.h"
#include "util.h"

#define APIKEY_CACHE_TTL_S 300

static int principal_for(idb_app *app, const char *user_id, idb_auth_ctx *ctx, idb_err *err)
{
	int rc = idb_authz_load(app, user_id, &ctx->principal, err);
	if (rc == IDB_ENOTFOUND)
		return idb_err_set(err, IDB_EAUTH, NULL, "Your session is no longer valid. Sign in again.");
	if (rc != 0)
		return rc;
	if (strcmp(ctx->principal.status, "active") != 0) {
		idb_principal_clear(&ctx->principal);
		return idb_err_set(err, IDB_EAUTH, NULL, "Your account is not active. Contact your administrator.");
	}
	return 0;
}

void idb_auth_apikey_uncache(idb_app *app, const char (*key_hashes)[65], size_t n)
{
	for (size_t off = 0; off < n; off += 256) {
		size_t m = n - off < 256 ? n - off : 256;
		char(*keys)[80] = calloc(m, 80);
		const char **kp = calloc(m, sizeof(char *));
		if (keys && kp) {
			for (size_t i = 0; i < m; i++) {
				snprintf(keys[i], 80, "idb:akey:%s", key_hashes[off + i]);
				kp[i] = keys[i];
			}
			if (idb_cache_del(app->cache, kp, (int)m, NULL) != 0)
				idb_log_warn("could not drop %zu cached API keys; they expire within %ds", m,
					     APIKEY_CACHE_TTL_S);
		}
		free(kp);
		free(keys);
	}
}

/* API keys: cached as idb:akey:<sha256> -> {k,u,o,s,x}. */
static int resolve_apikey(idb_app *app, const char *key, idb_auth_ctx *ctx, idb_err *err)
{
	size_t n = strlen(key);
	if (n < 20 || n >= IDB_APIKEY_MAX)
		return idb_err_set(err, IDB_EAUTH, NULL, "Invalid API key.");
	char hash[65], ckey[80];
	idb_sha256_hex(hash, key, n);
	snprintf(ckey, sizeof(ckey), "idb:akey:%s", hash);
	idb_apikey_info info;
	memset(&info, 0, sizeof(info));
	char *js = NULL;
	int crc = idb_cache_get(app->cache, ckey, &js, NULL);
	bool have = false;
	if (crc == 0) {
		json_t *o = json_loads(js, 0, NULL);
		const char *k, *u, *org, *s;
		json_int_t x;
		if (o && json_unpack(o, "{ss ss ss ss sI}", "k", &k, "u", &u, "o", &org, "s", &s, "x", &x) == 0) {
			idb_strlcpy(info.key_id, k, sizeof(info.key_id));
			idb_strlcpy(info.user_id, u, sizeof(info.user_id));
			idb_strlcpy(info.org_id, org, sizeof(info.org_id));
			idb_strlcpy(info.scopes, s, sizeof(info.scopes));
			info.expires_at = x;
			have = true;
		}
		json_decref(o);
		free(js);
	}
	idb_metrics_cache(IDB_CACHE_APIKEY, have ? IDB_CACHE_HIT : crc == IDB_EUNAVAIL ? IDB_CACHE_ERROR : IDB_CACHE_MISS);
	if (!have) {
		idb_db *db;
		int rc = idb_store_acquire(app->store, &db, err);
		if (rc != 0)
			return rc;
		rc = idb_apikey_resolve(db, hash, &info, err);
		if (rc == 0)
			(void)idb_apikey_touch(db, info.key_id, NULL);
		idb_store_release(db);
		if (rc == IDB_ENOTFOUND)
			return idb_err_set(err, IDB_EAUTH, NULL, "Invalid API key.");
		if (rc != 0)
			return rc;
		if (crc != IDB_EUNAVAIL) {
			long long ttl = APIKEY_CACHE_TTL_S;
			if (info.expires_at && info.expires_at - idb_now_s() < ttl)
				ttl = info.expires_at - idb_now_s();
			json_t *o = json_pack("{ss ss ss ss sI}", "k", info.key_id, "u", info.user_id, "o", info.org_id, "s",
					      info.scopes, "x", (json_int_t)info.expires_at);
			char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
			if (s && ttl > 0)
				(void)idb_cache_set(app->cache, ckey, s, ttl, NULL);
			free(s);
			json_decref(o);
		}
	}
	if (info.expires_at && info.expires_at <= idb_now_s())
		return idb_err_set(err, IDB_EAUTH, NULL, "This API key has expired.");
	int rc = principal_for(app, info.user_id, ctx, err);
	if (rc != 0)
		return rc;
	idb_strlcpy(ctx->method, "apikey", sizeof(ctx->method));
	idb_strlcpy(ctx->apikey_scopes, info.scopes, sizeof(ctx->apikey_scopes));
	return 0;
}

int idb_auth_resolve(idb_req *req, idb_auth_ctx *ctx, idb_err *err)
{
	idb_app *app = idb_req_app(req);
	memset(ctx, 0, sizeof(*ctx));
	const char *authz = idb_req_header(req, "Authorization");
	if (authz) {
		if (strncasecmp(authz, "Bearer ", 7) != 0)
			return idb_err_set(err, IDB_EAUTH, NULL, "Unsupported Authorization scheme; use Bearer.");
		const char *tok = authz + 7;
		while (*tok == ' ')
			tok++;
		if (strncmp(tok, "idb_", 4) == 0)
			return resolve_apikey(app, tok, ctx, err);
		if (strncmp(tok, "eyJ", 3) == 0) {
			char user_id[37];
			int rc = idb_oidc_bearer_resolve(app, tok, user_id, err);
			if (rc == 0)
				rc = principal_for(app, user_id, ctx, err);
			if (rc == 0)
				idb_strlcpy(ctx->method, "bearer", sizeof(ctx->method));
			return rc;
		}
		return idb_err_set(err, IDB_EAUTH, NULL, "Invalid bearer token.");
	}
	const char *cookie = idb_req_cookie(req, IDB_SESSION_COOKIE);
	if (!cookie)
		return idb_err_set(err, IDB_EAUTH, NULL, "Sign in first.");
	idb_session_row row;
	int rc = idb_session_lookup(app, cookie, &row, err);
	if (rc != 0)
		return rc == IDB_EAUTH ? idb_err_set(err, IDB_EAUTH, NULL, "Your session has ended. Sign in again.") : rc;
	rc = principal_for(app, row.user_id, ctx, err);
	if (rc != 0)
		return rc;
	idb_strlcpy(ctx->method, "session", sizeof(ctx->method));
	idb_strlcpy(ctx->session_hash, row.id_hash, sizeof(ctx->session_hash));
	idb_strlcpy(ctx->csrf_token, row.csrf_token, sizeof(ctx->csrf_token));
	ctx->session_created_at = row.created_at;
	return 0;
}

int idb_auth_request(idb_req *req, idb_auth_ctx *ctx, idb_err *err)
{
	int rc = idb_auth_resolve(req, ctx, err);
	if (rc != 0)
		return rc;
	const char *m = idb_req_method(req);
	bool safe = !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "OPTIONS");
	if (!strcmp(ctx->method, "session") && !safe) {
		const char *tok = idb_req_header(req, "X-CSRF-Token");
		if (!tok || !idb_str_ct_equal(tok, ctx->csrf_token)) {
			idb_principal_clear(&ctx->principal);
			return idb_err_set(err, IDB_EFORBIDDEN, NULL,
					   "Missing or wrong X-CSRF-Token header (get it from GET /api/v1/me).");
		}
	}
	return 0;
}
