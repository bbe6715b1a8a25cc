/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "app.h"
#include "auth.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define PROBLEM_BASE "urn:idbridge:problem:"
#define MAX_PARAMS 4
#define MAX_HEADERS 16
#define HARD_BODY_CAP (64u << 20) /* beyond this we answer at once and close */

struct idb_http {
	struct MHD_Daemon *d;
	idb_app *app;
};

typedef struct form_field {
	char *name;
	char *value;
} form_field;

struct idb_req {
	idb_app *app;
	bool initialized;
	char *raw_uri; /* as received, with the query string (SAML redirect signatures need it) */
	struct MHD_Connection *conn;
	const char *method;
	char *path;    /* owned copy, as received */
	char *pathbuf; /* owned, split by the router */
	int route;     /* index, -1 none */
	const char *pnames[MAX_PARAMS];
	const char *pvalues[MAX_PARAMS];
	int nparams;
	char request_id[40];
	char ip[64];
	int64_t start_us;
	/* body */
	char *body;
	size_t body_len, body_cap, body_limit;
	unsigned early_status; /* 404/405/413: decided before the body was read */
	char allow[64];
	/* parsed */
	json_t *json;
	form_field *form;
	size_t nform;
	bool form_parsed;
	idb_auth_ctx auth;
	bool auth_set;
	/* response */
	bool responded;
	unsigned status;
	char *resp_body;
	size_t resp_len;
	char resp_type[64];
	char *hname[MAX_HEADERS], *hvalue[MAX_HEADERS];
	int nheaders;
};

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --- routing --- */

int idb_route_match(const idb_route *routes, size_t n, const char *method, char *pathbuf, const char **pnames,
		    const char **pvalues, int *nparams, char *allow, size_t allowsz)
{
	/* Split the path into segments once. */
	char *segs[32];
	int nsegs = 0;
	if (pathbuf[0] != '/')
		return -1;
	char *p = pathbuf + 1;
	for (;;) {
		if (nsegs == 32)
			return -1;
		segs[nsegs++] = p;
		char *slash = strchr(p, '/');
		if (!slash)
			break;
		*slash = '\0';
		p = slash + 1;
	}
	bool path_matched = false;
	if (allow && allowsz)
		allow[0] = '\0';
	for (size_t r = 0; r < n; r++) {
		const char *pat = routes[r].pattern + 1;
		int np = 0, si = 0;
		bool ok = true;
		while (ok) {
			size_t plen = strcspn(pat, "/");
			if (plen == 1 && pat[0] == '*' && pat[1] == '\0') {
				si = nsegs; /* rest matches */
				break;
			}
			if (si >= nsegs) {
				ok = false;
				break;
			}
			if (pat[0] == '{' && plen > 2 && pat[plen - 1] == '}') {
				if (!segs[si][0] || np >= MAX_PARAMS) {
					ok = false;
					break;
				}
				static _Thread_local char names[MAX_PARAMS][32];
				snprintf(names[np], sizeof(names[np]), "%.*s", (int)(plen - 2), pat + 1);
				pnames[np] = names[np];
				pvalues[np] = segs[si];
				np++;
			} else if (strlen(segs[si]) != plen || strncmp(segs[si], pat, plen) != 0) {
				ok = false;
				break;
			}
			si++;
			if (pat[plen] == '\0')
				break;
			pat += plen + 1;
		}
		if (!ok || si != nsegs)
			continue;
		path_matched = true;
		if (strcmp(routes[r].method, "*") == 0 || strcmp(routes[r].method, method) == 0 ||
		    (strcmp(method, "HEAD") == 0 && strcmp(routes[r].method, "GET") == 0)) {
			*nparams = np;
			return (int)r;
		}
		if (allow && allowsz && !strstr(allow, routes[r].method)) {
			size_t l = strlen(allow);
			snprintf(allow + l, allowsz - l, "%s%s", l ? ", " : "", routes[r].method);
		}
	}
	return path_matched ? -2 : -1;
}

/* --- request accessors --- */

idb_app *idb_req_app(idb_req *req) { return req->app; }
const char *idb_req_method(const idb_req *req) { return req->method; }
const char *idb_req_path(const idb_req *req) { return req->path; }
const char *idb_req_id(const idb_req *req) { return req->request_id; }
const char *idb_req_ip(const idb_req *req) { return req->ip; }

const char *idb_req_param(const idb_req *req, const char *name)
{
	for (int i = 0; i < req->nparams; i++)
		if (strcmp(req->pnames[i], name) == 0)
			return req->pvalues[i];
	return NULL;
}

const char *idb_req_query(idb_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *idb_req_header(idb_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *idb_req_cookie(idb_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_COOKIE_KIND, name);
}

const char *idb_req_body(const idb_req *req, size_t *len)
{
	if (len)
		*len = req->body_len;
	return req->body ? req->body : "";
}

idb_auth_ctx *idb_req_auth(idb_req *req)
{
	return req->auth_set ? &req->auth : NULL;
}

static bool content_type_is(idb_req *req, const char *type)
{
	const char *ct = idb_req_header(req, "Content-Type");
	if (!ct)
		return false;
	size_t n = strlen(type);
	return strncasecmp(ct, type, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

bool idb_req_wants_json(idb_req *req)
{
	const char *accept = idb_req_header(req, "Accept");
	if (accept && (strstr(accept, "application/json") || strstr(accept, "application/problem+json")))
		return true;
	if (accept && strstr(accept, "text/html"))
		return false;
	return content_type_is(req, "application/json") || !idb_req_is_form(req);
}

json_t *idb_req_json(idb_req *req)
{
	if (req->json)
		return req->json;
	if (!content_type_is(req, "application/json")) {
		idb_resp_problem(req, 415, "unsupported-media-type", "Unsupported media type",
				 "Send the request body as application/json.", NULL);
		return NULL;
	}
	json_error_t jerr;
	json_t *j = json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j || !json_is_object(j)) {
		char detail[300];
		if (j)
			snprintf(detail, sizeof(detail), "The request body must be a JSON object.");
		else
			snprintf(detail, sizeof(detail), "Malformed JSON at line %d, column %d: %s", jerr.line,
				 jerr.column, jerr.text);
		json_decref(j);
		idb_resp_problem(req, 400, "malformed-json", "Malformed JSON", detail, NULL);
		return NULL;
	}
	req->json = j;
	return j;
}

bool idb_req_is_form(idb_req *req)
{
	return content_type_is(req, "application/x-www-form-urlencoded");
}

static void parse_form(idb_req *req)
{
	req->form_parsed = true;
	if (!idb_req_is_form(req) || !req->body_len)
		return;
	char *copy = strndup(req->body, req->body_len);
	if (!copy)
		return;
	size_t cap = 1;
	for (const char *p = copy; *p; p++)
		cap += *p == '&';
	req->form = calloc(cap, sizeof(form_field));
	char *save = NULL;
	for (char *pair = req->form ? strtok_r(copy, "&", &save) : NULL; pair; pair = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(pair, '=');
		char *val = eq ? eq + 1 : pair + strlen(pair);
		if (eq)
			*eq = '\0';
		if (!idb_url_decode(pair, true) || !idb_url_decode(val, true))
			continue;
		req->form[req->nform].name = strdup(pair);
		req->form[req->nform].value = strdup(val);
		req->nform++;
	}
	free(copy);
}

const char *idb_req_form(idb_req *req, const char *name)
{
	if (!req->form_parsed)
		parse_form(req);
	for (size_t i = 0; i < req->nform; i++)
		if (req->form[i].name && strcmp(req->form[i].name, name) == 0)
			return req->form[i].value;
	return NULL;
}

/* --- responses --- */

void idb_resp_header(idb_req *req, const char *name, const char *value)
{
	if (req->nheaders >= MAX_HEADERS) {
		idb_log_error("too many response headers; dropped %s", name);
		return;
	}
	req->hname[req->nheaders] = strdup(name);
	req->hvalue[req->nheaders] = strdup(value);
	req->nheaders++;
}

void idb_resp_cookie(idb_req *req, const char *name, const char *value, long long max_age)
{
	char buf[512];
	snprintf(buf, sizeof(buf), "%s=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Lax%s", name, value,
		 max_age, req->app->cfg->public_https ? "; Secure" : "");
	idb_resp_header(req, "Set-Cookie", buf);
}

int idb_resp_body(idb_req *req, unsigned status, const char *content_type, const char *body, size_t len)
{
	if (req->responded) {
		idb_log_error("handler responded twice (%u after %u)", status, req->status);
		return 0;
	}
	req->responded = true;
	req->status = status;
	snprintf(req->resp_type, sizeof(req->resp_type), "%s", content_type ? content_type : "");
	req->resp_body = malloc(len + 1);
	if (req->resp_body) {
		memcpy(req->resp_body, body, len);
		req->resp_body[len] = '\0';
		req->resp_len = len;
	} else {
		req->status = 500;
		req->resp_len = 0;
	}
	return 0;
}

int idb_resp_json(idb_req *req, unsigned status, json_t *body)
{
	char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!s)
		return idb_resp_body(req, 500, "application/problem+json",
				     "{\"type\":\"" PROBLEM_BASE "internal\",\"title\":\"Internal error\",\"status\":500}", 68);
	idb_resp_body(req, status, "application/json", s, strlen(s));
	free(s);
	return 0;
}

int idb_resp_problem(idb_req *req, unsigned status, const char *type, const char *title, const char *detail,
		     json_t *errors)
{
	char typeuri[128];
	snprintf(typeuri, sizeof(typeuri), PROBLEM_BASE "%s", type);
	json_t *o = json_pack("{ss ss si ss}", "type", typeuri, "title", title, "status", (int)status, "request_id",
			      req->request_id);
	if (o && detail)
		json_object_set_new(o, "detail", json_string(detail));
	if (o && errors)
		json_object_set_new(o, "errors", errors);
	else
		json_decref(errors);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	idb_resp_body(req, status, "application/problem+json", s ? s : "{}", s ? strlen(s) : 2);
	free(s);
	return 0;
}

unsigned idb_http_status_for(int code)
{
	switch (code) {
	case IDB_ENOTFOUND: return 404;
	case IDB_EEXISTS: return 409;
	case IDB_EINVAL: return 400;
	case IDB_EAUTH: return 401;
	case IDB_EFORBIDDEN: return 403;
	case IDB_EUNAVAIL: return 503;
	case IDB_ETIMEOUT: return 503;
	case IDB_ETOOBIG: return 413;
	case IDB_ECONFLICT: return 409;
	case IDB_ELOCKED: return 403;
	case IDB_EEXPIRED: return 410;
	default: return 500;
	}
}

int idb_resp_error(idb_req *req, const idb_err *err)
{
	static const struct {
		int code;
		const char *type, *title;
	} map[] = {
		{IDB_ENOTFOUND, "not-found", "Not found"},
		{IDB_EEXISTS, "already-exists", "Already exists"},
		{IDB_EINVAL, "invalid-input", "Invalid input"},
		{IDB_EAUTH, "unauthenticated", "Authentication required"},
		{IDB_EFORBIDDEN, "forbidden", "Forbidden"},
		{IDB_EUNAVAIL, "unavailable", "Service unavailable"},
		{IDB_ETIMEOUT, "unavailable", "Service unavailable"},
		{IDB_ETOOBIG, "too-large", "Too large"},
		{IDB_ECONFLICT, "conflict", "Conflict"},
		{IDB_ELOCKED, "account-locked", "Account locked"},
		{IDB_EEXPIRED, "expired", "Expired"},
	};
	const char *type = "internal", *title = "Internal error";
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (map[i].code == err->code) {
			type = map[i].type;
			title = map[i].title;
		}
	unsigned status = idb_http_status_for(err->code);
	/* Internal details stay in the log; the client gets the request id. */
	const char *detail = status == 500 ? "An internal error occurred; quote the request id to your administrator."
					   : err->msg;
	if (status == 500)
		idb_log_error("internal error: %s", err->msg);
	json_t *errors = NULL;
	if (err->field[0] && status == 400)
		errors = json_pack("[{ss ss}]", "field", err->field, "message", err->msg);
	if (status == 503)
		idb_resp_header(req, "Retry-After", "5");
	return idb_resp_problem(req, status, type, title, detail, errors);
}

int idb_resp_redirect(idb_req *req, unsigned status, const char *location)
{
	idb_resp_header(req, "Location", location);
	return idb_resp_body(req, status, "text/plain; charset=utf-8", "", 0);
}

/* --- MHD glue --- */

static void client_ip(idb_req *req)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	req->ip[0] = '\0';
	if (ci && ci->client_addr) {
		const struct sockaddr *sa = ci->client_addr;
		if (sa->sa_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, req->ip, sizeof(req->ip));
		else if (sa->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, req->ip,
				  sizeof(req->ip));
	}
	if (req->app->cfg->trust_forwarded_for) {
		const char *xff = idb_req_header(req, "X-Forwarded-For");
		if (xff && *xff) {
			const char *last = strrchr(xff, ',');
			last = last ? last + 1 : xff;
			while (*last == ' ')
				last++;
			if (strlen(last) < sizeof(req->ip) && strspn(last, "0123456789abcdefABCDEF:.") == strlen(last))
				snprintf(req->ip, sizeof(req->ip), "%s", last);
		}
	}
}

static void set_request_id(idb_req *req)
{
	const char *in = idb_req_header(req, "X-Request-Id");
	if (in && strlen(in) >= 8 && strlen(in) < sizeof(req->request_id) &&
	    strspn(in, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == strlen(in))
		snprintf(req->request_id, sizeof(req->request_id), "%s", in);
	else
		idb_random_hex(req->request_id, sizeof(req->request_id), 8);
}

static void dispatch(idb_req *req)
{
	if (req->early_status == 404) {
		idb_resp_problem(req, 404, "not-found", "Not found", "No such endpoint.", NULL);
		return;
	}
	if (req->early_status == 405) {
		idb_resp_header(req, "Allow", req->allow);
		idb_resp_problem(req, 405, "method-not-allowed", "Method not allowed", "This endpoint does not accept this method.",
				 NULL);
		return;
	}
	if (req->early_status == 413) {
		char d[128];
		snprintf(d, sizeof(d), "The request body is larger than the %zu bytes this endpoint accepts.", req->body_limit);
		idb_resp_problem(req, 413, "body-too-large", "Request body too large", d, NULL);
		return;
	}
	const idb_route *r = &idb_routes[req->route];
	if (r->auth != IDB_AUTH_NONE) {
		idb_err err;
		idb_err_clear(&err);
		int rc = idb_auth_request(req, &req->auth, &err);
		if (rc != 0) {
			if (rc == IDB_EAUTH)
				idb_resp_header(req, "WWW-Authenticate", "Bearer realm=\"idbridge\"");
			idb_resp_error(req, &err);
			return;
		}
		req->auth_set = true;
		if (r->auth == IDB_AUTH_PERM && !(req->auth.principal.perms & r->perm)) {
			idb_resp_problem(req, 403, "forbidden", "Forbidden",
					 "Your role and groups do not grant the permission this endpoint needs.", NULL);
			return;
		}
	}
	int rc = r->handler(req);
	if (!req->responded) {
		if (rc != 0)
			idb_log_error("handler for %s %s failed with %d (%s) without a response", req->method, r->pattern, rc,
				      idb_strerror(rc));
		else
			idb_log_error("handler for %s %s returned no response", req->method, r->pattern);
		idb_resp_problem(req, 500, "internal", "Internal error",
				 "An internal error occurred; quote the request id to your administrator.", NULL);
	}
}

static enum MHD_Result queue(idb_req *req)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(req->resp_len, req->resp_body ? req->resp_body : (void *)"", MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	if (req->resp_type[0])
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, req->resp_type);
	MHD_add_response_header(resp, "X-Request-Id", req->request_id);
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	for (int i = 0; i < req->nheaders; i++)
		if (req->hname[i] && req->hvalue[i])
			MHD_add_response_header(resp, req->hname[i], req->hvalue[i]);
	enum MHD_Result ret = MHD_queue_response(req->conn, req->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	idb_app *app = cls;
	idb_req *req = *con_cls;
	if (!req)
		return MHD_NO; /* on_uri always runs first */
	if (!req->initialized) {
		req->initialized = true;
		req->app = app;
		req->conn = conn;
		req->method = method;
		req->start_us = now_us();
		req->route = -1;
		req->path = strdup(url);
		req->pathbuf = strdup(url);
		if (!req->path || !req->pathbuf)
			return MHD_NO;
		set_request_id(req);
		client_ip(req);
		req->route = idb_route_match(idb_routes, idb_routes_count, method, req->pathbuf, req->pnames, req->pvalues,
					     &req->nparams, req->allow, sizeof(req->allow));
		if (req->route == -1)
			req->early_status = 404;
		else if (req->route == -2)
			req->early_status = 405;
		if (req->route < 0)
			req->route = -1;
		req->body_limit = req->route >= 0 && idb_routes[req->route].body_limit
					  ? idb_routes[req->route].body_limit
					  : (size_t)app->cfg->max_body_bytes;
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		long long clen = 0;
		if (cl && idb_parse_long(cl, 0, INT64_MAX, &clen) && (unsigned long long)clen > req->body_limit &&
		    !req->early_status) {
			req->early_status = 413;
			if ((unsigned long long)clen > HARD_BODY_CAP) {
				/* Not worth reading: answer now; MHD closes the connection. */
				idb_log_set_request_id(req->request_id);
				dispatch(req);
				return queue(req);
			}
		}
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (req->early_status)
			return MHD_YES; /* discard */
		if (req->body_len + n > req->body_limit) {
			req->early_status = 413;
			free(req->body);
			req->body = NULL;
			req->body_len = req->body_cap = 0;
			return MHD_YES;
		}
		if (req->body_len + n + 1 > req->body_cap) {
			size_t ncap = req->body_cap ? req->body_cap : 4096;
			while (ncap < req->body_len + n + 1)
				ncap *= 2;
			char *nb = realloc(req->body, ncap);
			if (!nb)
				return MHD_NO;
			req->body = nb;
			req->body_cap = ncap;
		}
		memcpy(req->body + req->body_len, upload_data, n);
		req->body_len += n;
		req->body[req->body_len] = '\0';
		return MHD_YES;
	}
	if (req->responded)
		return queue(req);
	idb_log_set_request_id(req->request_id);
	dispatch(req);
	enum MHD_Result ret = queue(req);
	idb_log_set_request_id(NULL);
	return ret;
}

/* Called by MHD with the raw request URI before anything else: the request
 * object is born here so that the raw query string is kept. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	idb_app *app = cls;
	(void)conn;
	idb_req *req = calloc(1, sizeof(*req));
	if (!req)
		return NULL;
	req->raw_uri = strndup(uri, 8192);
	atomic_fetch_add(&app->inflight, 1);
	return req;
}

const char *idb_req_raw_query(const idb_req *req)
{
	const char *q = req->raw_uri ? strchr(req->raw_uri, '?') : NULL;
	return q ? q + 1 : "";
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	idb_app *app = cls;
	idb_req *req = *con_cls;
	if (!req)
		return;
	if (!req->initialized) { /* the connection ended before the request did */
		free(req->raw_uri);
		free(req);
		*con_cls = NULL;
		atomic_fetch_sub(&app->inflight, 1);
		return;
	}
	double secs = (double)(now_us() - req->start_us) / 1e6;
	unsigned status = req->responded ? req->status : 0;
	idb_metrics_request(req->route, req->method, status, secs);
	if (app->cfg->access_log && idb_log_threshold <= IDB_LOG_INFO) {
		idb_log_set_request_id(req->request_id);
		idb_log_info("access %s %s %u %.2fms ip=%s%s", req->method, req->path ? req->path : "-", status, secs * 1000,
			     req->ip, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)");
		idb_log_set_request_id(NULL);
	}
	if (req->auth_set)
		idb_principal_clear(&req->auth.principal);
	json_decref(req->json);
	for (size_t i = 0; i < req->nform; i++) {
		free(req->form[i].name);
		free(req->form[i].value);
	}
	free(req->form);
	for (int i = 0; i < req->nheaders; i++) {
		free(req->hname[i]);
		free(req->hvalue[i]);
	}
	free(req->resp_body);
	free(req->body);
	free(req->path);
	free(req->pathbuf);
	free(req->raw_uri);
	free(req);
	*con_cls = NULL;
	atomic_fetch_sub(&app->inflight, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	idb_log_warn("libmicrohttpd: %s", buf);
}

int idb_http_start(idb_http **out, idb_app *app, idb_err *err)
{
	const idb_config *cfg = app->cfg;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct sockaddr *sa;
	memset(&sin, 0, sizeof(sin));
	memset(&sin6, 0, sizeof(sin6));
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC; /* ITC: quiesce on SIGTERM */
	if (inet_pton(AF_INET, cfg->listen_host, &sin.sin_addr) == 1) {
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)cfg->listen_port);
		sa = (struct sockaddr *)&sin;
	} else if (inet_pton(AF_INET6, cfg->listen_host, &sin6.sin6_addr) == 1) {
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons((uint16_t)cfg->listen_port);
		sa = (struct sockaddr *)&sin6;
		flags |= MHD_USE_IPv6;
	} else if (strcmp(cfg->listen_host, "localhost") == 0) {
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)cfg->listen_port);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sa = (struct sockaddr *)&sin;
	} else {
		return idb_err_set(err, IDB_EINVAL, "server.listen", "listen host must be an IP address (got %s)",
				   cfg->listen_host);
	}
	idb_http *h = calloc(1, sizeof(*h));
	if (!h)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	h->app = app;
	h->d = MHD_start_daemon(flags, (uint16_t)cfg->listen_port, NULL, NULL, on_request, app,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				MHD_OPTION_SOCK_ADDR, sa,
				MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->threads,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->connection_timeout_s,
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
				MHD_OPTION_NOTIFY_COMPLETED, on_completed, app,
				MHD_OPTION_URI_LOG_CALLBACK, on_uri, app,
				MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
				MHD_OPTION_END);
	if (!h->d) {
		free(h);
		return idb_err_set(err, IDB_EUNAVAIL, "server.listen", "cannot listen on %s (in use or not permitted)",
				   cfg->listen);
	}
	*out = h;
	return 0;
}

void idb_http_stop(idb_http *h, int drain_ms)
{
	if (!h)
		return;
	/* Stop accepting, let in-flight requests finish, then close. */
	MHD_socket s = MHD_quiesce_daemon(h->d);
	int64_t deadline = idb_now_ms_mono() + drain_ms;
	while (atomic_load(&h->app->inflight) > 0 && idb_now_ms_mono() < deadline)
		usleep(10000);
	if (atomic_load(&h->app->inflight) > 0)
		idb_log_warn("shutting down with %d requests still in flight", atomic_load(&h->app->inflight));
	MHD_stop_daemon(h->d);
	if (s != MHD_INVALID_SOCKET)
		close(s);
	free(h);
}
