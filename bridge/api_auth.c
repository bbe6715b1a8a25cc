/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Password login, logout, the caller's own profile and forward auth. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "api.h"
#include "auth.h"
#include "authz.h"
#include "log.h"
#include "oidc.h"
#include "roles.h"
#include "saml.h"
#include "session.h"
#include "sso.h"
#include "urls.h"
#include "users.h"
#include "util.h"

json_t *idb_api_perms_json(uint32_t perms)
{
	json_t *a = json_array();
	for (int i = 0; i < IDB_PERM_COUNT; i++)
		if (perms & (1u << i))
			json_array_append_new(a, json_string(idb_perm_name(i)));
	return a;
}

json_t *idb_api_groups_json(const char *groups)
{
	json_t *a = json_array();
	if (!groups || !*groups)
		return a;
	const char *p = groups;
	for (;;) {
		const char *sep = strstr(p, ", ");
		size_t n = sep ? (size_t)(sep - p) : strlen(p);
		json_array_append_new(a, json_stringn(p, n));
		if (!sep)
			break;
		p = sep + 2;
	}
	return a;
}

static const char login_page[] =
	"<!doctype html><html lang=en><head><meta charset=utf-8><title>Sign in · idbridge</title>"
	"<meta name=viewport content='width=device-width,initial-scale=1'>"
	"<style>body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}"
	"label{display:block;margin:.8rem 0 .2rem}input{width:100%%;padding:.5rem;box-sizing:border-box}"
	"button{margin-top:1rem;padding:.6rem 1.2rem}.err{color:#a00}</style></head><body>"
	"<h1>Sign in</h1>%s<form method=post action=/login>"
	"<label for=email>E-mail</label><input id=email name=email type=email autocomplete=username required>"
	"<label for=password>Password</label><input id=password name=password type=password "
	"autocomplete=current-password required><input type=hidden name=return_to value='%s'>"
	"<button type=submit>Sign in</button></form></body></html>";

static int login_page_resp(idb_req *req, unsigned status, const char *error, const char *return_to)
{
	char err_html[700] = "";
	if (error) {
		char *esc_err = idb_html_escape(error);
		snprintf(err_html, sizeof(err_html), "<p class=err role=alert>%.600s</p>", esc_err ? esc_err : "");
		free(esc_err);
	}
	char *esc_rt = idb_html_escape(
		return_to && idb_return_to_allowed(idb_req_app(req)->cfg, return_to) ? return_to : "/");
	if (!esc_rt)
		return IDB_EINTERNAL;
	size_t cap = sizeof(login_page) + strlen(err_html) + strlen(esc_rt);
	char *page = malloc(cap);
	if (!page) {
		free(esc_rt);
		return IDB_EINTERNAL;
	}
	int n = snprintf(page, cap, login_page, err_html, esc_rt);
	free(esc_rt);
	idb_resp_header(req, "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'");
	idb_resp_body(req, status, "text/html; charset=utf-8", page, (size_t)n);
	free(page);
	return 0;
}

int idb_api_login_page(idb_req *req)
{
	return login_page_resp(req, 200, NULL, idb_req_query(req, "return_to"));
}

int idb_api_login(idb_req *req)
{
	idb_app *app = idb_req_app(req);
	const char *email = NULL, *password = NULL, *org = NULL, *return_to = NULL;
	bool form = idb_req_is_form(req);
	if (form) {
		email = idb_req_form(req, "email");
		password = idb_req_form(req, "password");
		org = idb_req_form(req, "org");
		return_to = idb_req_form(req, "return_to");
	} else {
		json_t *body = idb_req_json(req);
		if (!body)
			return 0;
		email = json_string_value(json_object_get(body, "email"));
		password = json_string_value(json_object_get(body, "password"));
		org = json_string_value(json_object_get(body, "org"));
	}
	if (!email || !*email || !password || !*password) {
		if (form)
			return login_page_resp(req, 400, "Enter your e-mail and password.", return_to);
		json_t *errors = json_array();
		if (!email || !*email)
			json_array_append_new(errors, json_pack("{ss ss}", "field", "email", "message", "is required"));
		if (!password || !*password)
			json_array_append_new(errors, json_pack("{ss ss}", "field", "password", "message", "is required"));
		return idb_resp_problem(req, 400, "invalid-input", "Invalid input", "E-mail and password are required.",
					errors);
	}
	if (strlen(email) > 254 || strlen(password) > 1024) {
		if (form)
			return login_page_resp(req, 401, "Invalid email or password", return_to);
		return idb_resp_problem(req, 401, "invalid-credentials", "Sign-in failed", "Invalid email or password", NULL);
	}
	idb_db *db;
	idb_err err;
	idb_err_clear(&err);
	int rc = idb_store_acquire(app->store, &db, &err);
	if (rc != 0)
		return idb_resp_error(req, &err);
	idb_login_policy pol = {.lockout_threshold = (int)app->cfg->lockout_threshold,
				.lockout_duration_s = app->cfg->lockout_duration_s};
	idb_login_result res;
	rc = idb_user_password_login(db, org, email, password, &pol, idb_req_ip(req), &res, &err);
	idb_store_release(db);
	if (rc != 0) {
		if (res.user_id[0])
			idb_authz_invalidate(app, res.user_id); /* lock state is part of the principal */
		idb_log_info("password login refused: %s (user %s)", res.reason[0] ? res.reason : idb_strerror(rc),
			     res.user_id[0] ? res.user_id : "-");
		if (rc == IDB_EAUTH) {
			if (form)
				return login_page_resp(req, 401, "Invalid email or password", return_to);
			return idb_resp_problem(req, 401, "invalid-credentials", "Sign-in failed", "Invalid email or password",
						NULL);
		}
		if (rc == IDB_ELOCKED || rc == IDB_EFORBIDDEN) {
			if (form)
				return login_page_resp(req, 403, err.msg, return_to);
			return idb_resp_problem(req, 403, rc == IDB_ELOCKED ? "account-locked" : "account-unavailable",
						"Sign-in refused", err.msg, NULL);
		}
		return idb_resp_error(req, &err);
	}
	idb_authz_invalidate(app, res.user_id);
	char csrf[64];
	rc = idb_session_start(req, res.user_id, res.org_id, "password", NULL, csrf, &err);
	if (rc != 0)
		return idb_resp_error(req, &err);
	if (form) {
		const char *target = return_to && idb_return_to_allowed(app->cfg, return_to) ? return_to : "/";
		return idb_resp_redirect(req, 303, target);
	}
	idb_principal p;
	rc = idb_authz_load(app, res.user_id, &p, &err);
	if (rc != 0)
		return idb_resp_error(req, &err);
	json_t *user = json_pack("{ss ss ss ss ss}", "id", p.user_id, "email", p.email, "name", p.name, "role",
				 idb_role_name(p.role), "status", p.status);
	idb_principal_clear(&p);
	return idb_resp_json(req, 200, json_pack("{so ss}", "user", user, "csrf_token", csrf));
}

int idb_api_logout(idb_req *req)
{
	idb_app *app = idb_req_app(req);
	const char *cookie = idb_req_cookie(req, IDB_SESSION_COOKIE);
	idb_session_row row;
	char *idp_logout = NULL;
	if (cookie && idb_session_lookup(app, cookie, &row, NULL) == 0) {
		/* A SAML session also ends at the IdP when it has an SLO endpoint. */
		if (!strcmp(row.auth_method, "saml"))
			idb_saml_logout_redirect(req, row.id_hash, &idp_logout);
		/* An OIDC session continues to the provider's end_session_endpoint. */
		else if (!strcmp(row.auth_method, "oidc"))
			idb_oidc_logout_redirect(req, row.id_hash, &idp_logout);
		idb_err err;
		if (idb_session_end(app, row.id_hash, &err) != 0) {
			free(idp_logout);
			return idb_resp_error(req, &err);
		}
	}
	idb_resp_cookie(req, IDB_SESSION_COOKIE, "", 0);
	int rc;
	if (idb_req_is_form(req) && !idb_req_wants_json(req))
		rc = idb_resp_redirect(req, 303, idp_logout ? idp_logout : "/login");
	else
	{
		json_t *o = json_pack("{ss}", "status", "logged_out");
		if (o && idp_logout) /* SAML: the browser continues to the IdP's logout */
			json_object_set_new(o, "redirect", json_string(idp_logout));
		rc = idb_resp_json(req, 200, o);
	}
	free(idp_logout);
	return rc;
}

int idb_api_me(idb_req *req)
{
	idb_auth_ctx *a = idb_req_auth(req);
	const idb_principal *p = &a->principal;
	json_t *o = json_pack("{ss ss ss ss ss s{ss ss ss} so so ss}", "id", p->user_id, "email", p->email, "name", p->name,
			      "role", idb_role_name(p->role), "status", p->status, "org", "id", p->org_id, "slug",
			      p->org_slug, "name", p->org_name, "groups", idb_api_groups_json(p->groups), "permissions",
			      idb_api_perms_json(p->perms), "auth_method", a->method);
	if (o && a->csrf_token[0])
		json_object_set_new(o, "csrf_token", json_string(a->csrf_token));
	return idb_resp_json(req, 200, o);
}

/* Header values come from IdPs: never let one carry CR/LF or controls. */
static void header_safe(char *out, size_t outsz, const char *in)
{
	size_t o = 0;
	for (; in && *in && o + 1 < outsz; in++)
		out[o++] = ((unsigned char)*in < 0x20 || *in == 0x7f) ? ' ' : *in;
	out[o] = '\0';
}

int idb_api_auth_check(idb_req *req)
{
	idb_auth_ctx ctx;
	idb_err err;
	idb_err_clear(&err);
	int rc = idb_auth_resolve(req, &ctx, &err);
	if (rc != 0) {
		if (rc == IDB_EAUTH)
			idb_resp_header(req, "WWW-Authenticate", "Bearer realm=\"idbridge\"");
		return idb_resp_error(req, &err);
	}
	const char *perm = idb_req_query(req, "permission");
	if (perm && !(ctx.principal.perms & idb_perm_parse(perm))) {
		idb_principal_clear(&ctx.principal);
		return idb_resp_problem(req, 403, "forbidden", "Forbidden", "The permission is not granted.", NULL);
	}
	char buf[1024];
	const idb_principal *p = &ctx.principal;
	idb_resp_header(req, "X-Auth-User-Id", p->user_id);
	header_safe(buf, sizeof(buf), p->email);
	idb_resp_header(req, "X-Auth-Email", buf);
	/* libmicrohttpd cannot send an empty header value: a user without a
	 * display name is named by their e-mail, as IdPs do. */
	header_safe(buf, sizeof(buf), p->name[0] ? p->name : p->email);
	idb_resp_header(req, "X-Auth-Name", buf);
	idb_resp_header(req, "X-Auth-Role", idb_role_name(p->role));
	/* No groups: the header is absent (see above); proxies strip any
	 * client-sent X-Auth-* header (deploy/ examples). */
	char *groups = p->groups[0] ? malloc(strlen(p->groups) + 1) : NULL;
	if (groups) {
		/* Stored as "a, b"; the header is comma-separated without spaces. */
		size_t o = 0;
		for (const char *s = p->groups; *s; s++) {
			if (s[0] == ',' && s[1] == ' ') {
				groups[o++] = ',';
				s++;
			} else {
				groups[o++] = ((unsigned char)*s < 0x20) ? ' ' : *s;
			}
		}
		groups[o] = '\0';
		idb_resp_header(req, "X-Auth-Groups", groups);
		free(groups);
	}
	idb_resp_header(req, "X-Auth-Org", p->org_slug);
	idb_principal_clear(&ctx.principal);
	return idb_resp_body(req, 200, "text/plain; charset=utf-8", "", 0);
}
