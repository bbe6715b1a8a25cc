/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The HTTP server (libmicrohttpd, epoll thread pool) and the request /
 * response API handlers use. MHD types stay inside http.c. A handler runs once
 * per request, after the whole body has arrived (bounded by the route's
 * limit), and sets exactly one response through the idb_resp_* functions. */
#ifndef IDB_HTTP_H
#define IDB_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "principal.h"

typedef struct idb_app idb_app;
typedef struct idb_req idb_req;
typedef struct idb_http idb_http;

typedef int (*idb_handler)(idb_req *req);

enum {
	IDB_AUTH_NONE = 0,  /* public */
	IDB_AUTH_ANY = 1,   /* any authenticated principal (cookie + CSRF on unsafe methods, API key, bearer) */
	IDB_AUTH_PERM = 2,  /* as ANY, plus the route's permission bit */
};

typedef struct idb_route {
	const char *method;  /* "GET", … or "*" for any */
	const char *pattern; /* "/api/v1/users/{id}"; a last segment "*" matches any rest */
	idb_handler handler;
	int auth;
	uint32_t perm;     /* IDB_PERM_* when auth == IDB_AUTH_PERM */
	size_t body_limit; /* 0: server.max_body_bytes */
} idb_route;

/* The route table (routes.c). */
extern const idb_route idb_routes[];
extern const size_t idb_routes_count;

/* Server lifecycle. */
int idb_http_start(idb_http **out, idb_app *app, idb_err *err);
/* Stops accepting, waits up to drain_ms for in-flight requests, stops. */
void idb_http_stop(idb_http *h, int drain_ms);

/* Route matching, exposed for unit tests: returns the index of the route for
 * method+path (params filled: up to 4 names/values, values point into
 * pathbuf which is modified), -1 when no route has that path (404) and -2
 * when the path exists with another method (405; allow gets the methods). */
int idb_route_match(const idb_route *routes, size_t n, const char *method, char *pathbuf, const char **pnames,
		    const char **pvalues, int *nparams, char *allow, size_t allowsz);

/* --- request --- */
idb_app *idb_req_app(idb_req *req);
const char *idb_req_method(const idb_req *req);
const char *idb_req_path(const idb_req *req);
const char *idb_req_id(const idb_req *req);
const char *idb_req_ip(const idb_req *req);
/* Path parameter by name ("id" for {id}); NULL when absent. */
const char *idb_req_param(const idb_req *req, const char *name);
const char *idb_req_query(idb_req *req, const char *name);
const char *idb_req_header(idb_req *req, const char *name);
const char *idb_req_cookie(idb_req *req, const char *name);
const char *idb_req_body(const idb_req *req, size_t *len);
/* The query string exactly as received (without '?'), "" when none. */
const char *idb_req_raw_query(const idb_req *req);
/* True when the client prefers JSON (Accept or Content-Type says so). */
bool idb_req_wants_json(idb_req *req);
/* Body as a JSON object. On failure queues the problem response (415 for a
 * non-JSON content type, 400 for malformed JSON or a non-object) and returns
 * NULL; the handler then just returns 0. The returned object is borrowed
 * (freed with the request). */
json_t *idb_req_json(idb_req *req);

/* application/x-www-form-urlencoded body: value of field name (decoded) or
 * NULL. Parsed once, on first use; a malformed body yields no fields. */
const char *idb_req_form(idb_req *req, const char *name);
bool idb_req_is_form(idb_req *req);

/* Authentication result set by the auth layer for routes with auth != NONE. */
typedef struct idb_auth_ctx {
	idb_principal principal;
	char method[12];       /* "session", "apikey", "bearer" */
	char session_hash[65]; /* for "session" */
	char csrf_token[64];   /* for "session" */
	char apikey_scopes[256];
	int64_t session_created_at;
} idb_auth_ctx;
idb_auth_ctx *idb_req_auth(idb_req *req);

/* --- response --- */
int idb_resp_json(idb_req *req, unsigned status, json_t *body /* reference stolen */);
/* RFC 9457 problem: type is a short slug appended to the problem base URI
 * ("invalid-input"); errors (stolen, may be NULL) is [{field, message}]. */
int idb_resp_problem(idb_req *req, unsigned status, const char *type, const char *title, const char *detail,
		     json_t *errors);
/* Problem from an idb_err: the code picks status and type; a field becomes
 * an errors[] entry. */
int idb_resp_error(idb_req *req, const idb_err *err);
int idb_resp_body(idb_req *req, unsigned status, const char *content_type, const char *body, size_t len);
int idb_resp_redirect(idb_req *req, unsigned status, const char *location);
/* Adds a header to the response being built (before or after setting it). */
void idb_resp_header(idb_req *req, const char *name, const char *value);
/* Set-Cookie with Path=/, HttpOnly, SameSite=Lax, Secure on https. */
void idb_resp_cookie(idb_req *req, const char *name, const char *value, long long max_age);

/* HTTP status for an IDB_E* code. */
unsigned idb_http_status_for(int code);

#endif
