/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* GET/POST /invite/{token}: the invitation page. Accepting sets a password,
 * activates the account and signs the user in; the page also offers the
 * organisation's SSO (home-realm discovery by e-mail). The token in the path
 * is the only credential, so it is single-use and never logged. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "api.h"
#include "authz.h"
#include "invitations.h"
#include "log.h"
#include "session.h"

static const char page_head[] =
	"<!doctype html><html lang=en><head><meta charset=utf-8><title>%s · idbridge</title>"
	"<meta name=viewport content='width=device-width,initial-scale=1'>"
	"<style>body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}"
	"label{display:block;margin:.8rem 0 .2rem}input{width:100%%;padding:.5rem;box-sizing:border-box}"
	"button{margin-top:1rem;padding:.6rem 1.2rem}.err{color:#a00}.hint{color:#555;font-size:.9rem}"
	".or{margin:1.5rem 0 .5rem}</style></head><body>";

/* Renders head + body (printf-style) and queues it. */
__attribute__((format(printf, 4, 5))) static int page(idb_req *req, unsigned status, const char *title,
						     const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *body = NULL;
	int n = vasprintf(&body, fmt, ap);
	va_end(ap);
	char *head = NULL;
	int h = n >= 0 ? asprintf(&head, page_head, title) : -1;
	if (n < 0 || h < 0) {
		free(body);
		free(head);
		return idb_resp_problem(req, 500, "internal", "Internal error", "out of memory", NULL);
	}
	size_t len = (size_t)h + (size_t)n + 16;
	char *html = malloc(len);
	if (html) {
		int w = snprintf(html, len, "%s%s</body></html>", head, body);
		idb_resp_header(req, "Content-Security-Policy",
				"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'");
		idb_resp_body(req, status, "text/html; charset=utf-8", html, (size_t)w);
	} else {
		idb_resp_problem(req, 500, "internal", "Internal error", "out of memory", NULL);
	}
	free(html);
	free(head);
	free(body);
	return 0;
}

/* application/x-www-form-urlencoded / query component encoding. */
static char *url_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(s) * 3 + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-_.~", *p)) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
	return out;
}

static int form_page(idb_req *req, unsigned status, const idb_invite_view *v, const char *token, const char *error)
{
	idb_app *app = idb_req_app(req);
	char *e_org = idb_html_escape(v->org_name), *e_email = idb_html_escape(v->email);
	char *e_err = idb_html_escape(error ? error : "");
	char *q = url_encode(v->email);
	char *e_q = q ? idb_html_escape(q) : NULL;
	char when[32];
	idb_time_human(v->expires_at, when);
	int rc;
	if (!e_org || !e_email || !e_err || !e_q)
		rc = idb_resp_problem(req, 500, "internal", "Internal error", "out of memory", NULL);
	else
		rc = page(req, status, "Accept invitation",
			  "<h1>Join %s</h1><p>You were invited as <strong>%s</strong>.</p>%s%s%s"
			  "<form method=post action='/invite/%s'>"
			  "<label for=password>Choose a password</label>"
			  "<input id=password name=password type=password autocomplete=new-password minlength=%lld required>"
			  "<p class=hint>At least %lld characters, mixing at least two kinds (lower case, upper case, "
			  "digits, symbols), and not your e-mail address.</p>"
			  "<label for=password_confirm>Repeat the password</label>"
			  "<input id=password_confirm name=password_confirm type=password autocomplete=new-password required>"
			  "<button type=submit>Set password and sign in</button></form>"
			  "<p class=or>or</p><p><a href='/sso/discover?email=%s'>Continue with your organisation's SSO</a></p>"
			  "<p class=hint>This invitation expires on %s.</p>",
			  e_org, e_email, error ? "<p class=err role=alert>" : "", error ? e_err : "", error ? "</p>" : "",
			  token, app->cfg->password_min_length, app->cfg->password_min_length, e_q, when);
	free(e_org);
	free(e_email);
	free(e_err);
	free(q);
	free(e_q);
	return rc;
}

static int gone_page(idb_req *req, const idb_invite_view *v)
{
	const char *why = v->state == IDB_INVITE_USED	   ? "This invitation has already been used."
			  : v->state == IDB_INVITE_EXPIRED ? "This invitation has expired."
							   : "This invitation is no longer valid (a newer one was sent, "
							     "or the account was changed).";
	char *e_inv = idb_html_escape(v->inviter_email);
	char *e_org = idb_html_escape(v->org_name);
	if (!e_inv || !e_org) {
		free(e_inv);
		free(e_org);
		return idb_resp_problem(req, 500, "internal", "Internal error", "out of memory", NULL);
	}
	char ask[700];
	if (v->state == IDB_INVITE_USED)
		snprintf(ask, sizeof(ask), "If you set a password, <a href=/login>sign in</a>. Otherwise ask %s%s%s for a new "
					   "invitation.", v->inviter_email[0] ? "<a href='mailto:" : "your administrator",
			 v->inviter_email[0] ? e_inv : "", v->inviter_email[0] ? "'>the person who invited you</a>" : "");
	else if (v->inviter_email[0])
		snprintf(ask, sizeof(ask), "Ask %s, who invited you to %s, to send a new invitation.", e_inv, e_org);
	else
		snprintf(ask, sizeof(ask), "Ask an administrator of %s to send a new invitation.", e_org);
	int rc = page(req, 410, "Invitation unavailable", "<h1>Invitation unavailable</h1><p>%s</p><p>%s</p>", why, ask);
	free(e_inv);
	free(e_org);
	return rc;
}

static int not_found_page(idb_req *req)
{
	return page(req, 404, "Invitation not found",
		    "<h1>Invitation not found</h1><p>This invitation link is not valid. Check that you opened the whole "
		    "link from the e-mail, or ask your administrator for a new invitation.</p>");
}

int idb_api_invite_page(idb_req *req)
{
	idb_app *app = idb_req_app(req);
	const char *token = idb_req_param(req, "token");
	idb_invite_view v;
	idb_err err;
	idb_err_clear(&err);
	idb_db *db;
	int rc = idb_store_acquire(app->store, &db, &err);
	if (rc == 0) {
		rc = idb_invite_lookup(db, token, &v, &err);
		idb_store_release(db);
	}
	if (rc == IDB_ENOTFOUND)
		return not_found_page(req);
	if (rc != 0)
		return idb_resp_error(req, &err);
	if (v.state != IDB_INVITE_VALID)
		return gone_page(req, &v);
	return form_page(req, 200, &v, token, NULL);
}

int idb_api_invite_accept(idb_req *req)
{
	idb_app *app = idb_req_app(req);
	const char *token = idb_req_param(req, "token");
	bool form = idb_req_is_form(req);
	const char *password = NULL, *confirm = NULL;
	if (form) {
		password = idb_req_form(req, "password");
		confirm = idb_req_form(req, "password_confirm");
	} else {
		json_t *body = idb_req_json(req);
		if (!body)
			return 0;
		password = json_string_value(json_object_get(body, "password"));
	}
	idb_invite_view v;
	idb_err err;
	idb_err_clear(&err);
	idb_db *db;
	int rc = idb_store_acquire(app->store, &db, &err);
	if (rc != 0)
		return idb_resp_error(req, &err);
	if (form && password && confirm && strcmp(password, confirm) != 0) {
		/* Checked after the look-up so the page can be shown again. */
		rc = idb_invite_lookup(db, token, &v, &err);
		idb_store_release(db);
		if (rc == IDB_ENOTFOUND)
			return not_found_page(req);
		if (rc != 0)
			return idb_resp_error(req, &err);
		if (v.state != IDB_INVITE_VALID)
			return gone_page(req, &v);
		return form_page(req, 400, &v, token, "The two passwords are not the same.");
	}
	rc = idb_invite_accept(db, app->cfg, token, password, idb_req_ip(req), &v, &err);
	idb_store_release(db);
	if (rc == IDB_ENOTFOUND) {
		if (form)
			return not_found_page(req);
		return idb_resp_problem(req, 404, "not-found", "Not found", "This invitation link is not valid.", NULL);
	}
	if (rc == IDB_ECONFLICT) {
		if (form)
			return gone_page(req, &v);
		char detail[400];
		snprintf(detail, sizeof(detail), "%s Ask %s for a new invitation.",
			 v.state == IDB_INVITE_USED ? "This invitation has already been used."
			 : v.state == IDB_INVITE_EXPIRED ? "This invitation has expired."
							 : "This invitation is no longer valid.",
			 v.inviter_email[0] ? v.inviter_email : "your administrator");
		return idb_resp_problem(req, 410, "invitation-unavailable", "Invitation unavailable", detail, NULL);
	}
	if (rc == IDB_EINVAL && form)
		return form_page(req, 400, &v, token, err.msg);
	if (rc != 0)
		return idb_resp_error(req, &err);
	idb_log_info("invitation accepted by user %s", v.user_id);
	idb_authz_invalidate(app, v.user_id);
	char csrf[64];
	rc = idb_session_start(req, v.user_id, v.org_id, "password", NULL, csrf, &err);
	if (rc != 0)
		return idb_resp_error(req, &err);
	if (form)
		return idb_resp_redirect(req, 303, "/");
	return idb_resp_json(req, 200,
			     json_pack("{s{ss ss ss} ss}", "user", "id", v.user_id, "email", v.email, "status", "active",
				       "csrf_token", csrf));
}
