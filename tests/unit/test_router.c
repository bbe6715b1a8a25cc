/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* idb_route_match on a local route table, and idb_http_status_for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "http.h"

static int dummy(idb_req *req)
{
	(void)req;
	return 0;
}

static const idb_route routes[] = {
	/* 0 */ {"GET", "/", dummy, IDB_AUTH_NONE, 0, 0},
	/* 1 */ {"GET", "/api/v1/users", dummy, IDB_AUTH_ANY, 0, 0},
	/* 2 */ {"POST", "/api/v1/users", dummy, IDB_AUTH_ANY, 0, 0},
	/* 3 */ {"GET", "/api/v1/users/{id}", dummy, IDB_AUTH_ANY, 0, 0},
	/* 4 */ {"PATCH", "/api/v1/users/{id}", dummy, IDB_AUTH_ANY, 0, 0},
	/* 5 */ {"DELETE", "/api/v1/users/{id}", dummy, IDB_AUTH_ANY, 0, 0},
	/* 6 */ {"POST", "/api/v1/groups/{gid}/members/{uid}", dummy, IDB_AUTH_ANY, 0, 0},
	/* 7 */ {"GET", "/static/*", dummy, IDB_AUTH_NONE, 0, 0},
	/* 8 */ {"*", "/saml/acs", dummy, IDB_AUTH_NONE, 0, 0},
	/* 9 */ {"POST", "/users/{id}/x", dummy, IDB_AUTH_ANY, 0, 0},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

typedef struct match {
	int rc;
	const char *pnames[4];
	const char *pvalues[4];
	int nparams;
	char allow[128];
	char pathbuf[4096];
} match;

/* Matches method+path on a writable copy of path (the matcher splits it). */
static int route(match *m, const char *method, const char *path)
{
	memset(m, 0, sizeof(*m));
	m->nparams = -1;
	snprintf(m->pathbuf, sizeof(m->pathbuf), "%s", path);
	m->rc = idb_route_match(routes, NROUTES, method, m->pathbuf, m->pnames, m->pvalues, &m->nparams, m->allow,
				sizeof(m->allow));
	return m->rc;
}

static void test_router_matches_exact_path(void **state)
{
	(void)state;
	match m;
	assert_int_equal(route(&m, "GET", "/api/v1/users"), 1);
	assert_int_equal(m.nparams, 0);
	assert_int_equal(route(&m, "POST", "/api/v1/users"), 2);
	assert_int_equal(route(&m, "GET", "/"), 0);
}

static void test_router_extracts_param(void **state)
{
	(void)state;
	match m;
	assert_int_equal(route(&m, "PATCH", "/api/v1/users/42"), 4);
	assert_int_equal(m.nparams, 1);
	assert_string_equal(m.pnames[0], "id");
	assert_string_equal(m.pvalues[0], "42");
	assert_int_equal(route(&m, "DELETE", "/api/v1/users/0b6e-uuid"), 5);
	assert_string_equal(m.pvalues[0], "0b6e-uuid");
}

static void test_router_extracts_two_params_in_order(void **state)
{
	(void)state;
	match m;
	assert_int_equal(route(&m, "POST", "/api/v1/groups/g1/members/u2"), 6);
	assert_int_equal(m.nparams, 2);
	assert_string_equal(m.pnames[0], "gid");
	assert_string_equal(m.pvalues[0], "g1");
	assert_string_equal(m.pnames[1], "uid");
	assert_string_equal(m.pvalues[1], "u2");
}

static void test_router_star_segment_matches_any_rest(void **state)
{
	(void)state;
	match m;
	assert_int_equal(route(&m, "GET", "/static/app.js"), 7);
	assert_int_equal(route(&m, "GET", "/static/css/deep/site.css"), 7);
	assert_int_equal(route(&m, "GET", "/static/"), 7);
}

static void test_router_star_segment_matches_bare_prefix(void **state)
{
	(void)state;
	match m;
	assert_int_equal(route(&m, "GET", "/static"), 7);
	/* but not a longer first segment */
	assert_int_equal(route(&m, "GET", "/staticx/app.js"), -1);
}

static void test_router_unknown_path_is_404(void **state)
{
	(void)state;
	match m;
	assert_int_equal(route(&m, "GET", "/nope"), -1);
	assert_int_equal(route(&m, "GET", "/api/v1/users/42/extra"), -1);
	assert_int_equal(route(&m, "GET", "/api/v1"), -1);
	assert_int_equal(route(&m, "GET", "/api/v1/user"), -1);
	assert_string_equal(m.allow, "");
}

static void test_router_wrong_method_is_405_with_allow(void **state)
{
	(void)state;
	match m;
	assert_int_equal(route(&m, "PUT", "/api/v1/users/42"), -2);
	assert_non_null(strstr(m.allow, "GET"));
	assert_non_null(strstr(m.allow, "PATCH"));
	assert_non_null(strstr(m.allow, "DELETE"));
	assert_null(strstr(m.allow, "POST"));
	assert_int_equal(route(&m, "DELETE", "/api/v1/users"), -2);
	assert_string_equal(m.allow, "GET, POST");
}

static void test_router_star_method_matches_any_method(void **state)
{
	(void)state;
	match m;
	assert_int_equal(route(&m, "POST", "/saml/acs"), 8);
	assert_int_equal(route(&m, "GET", "/saml/acs"), 8);
	assert_int_equal(route(&m, "OPTIONS", "/saml/acs"), 8);
}

static void test_router_head_matches_get_route(void **state)
{
	(void)state;
	match m;
	assert_int_equal(route(&m, "HEAD", "/api/v1/users/7"), 3);
	assert_string_equal(m.pvalues[0], "7");
	/* HEAD does not reach a POST-only route */
	assert_int_equal(route(&m, "HEAD", "/users/1/x"), -2);
	assert_string_equal(m.allow, "POST");
}

static void test_router_empty_param_segment_does_not_match(void **state)
{
	(void)state;
	match m;
	assert_int_equal(route(&m, "POST", "/users//x"), -1);
	assert_int_equal(route(&m, "GET", "/api/v1/users/"), -1);
}

static void test_router_trailing_slash_is_a_different_path(void **state)
{
	(void)state;
	match m;
	assert_int_equal(route(&m, "GET", "/api/v1/users/42/"), -1);
}

static void test_router_path_without_leading_slash_is_404(void **state)
{
	(void)state;
	match m;
	assert_int_equal(route(&m, "GET", "api/v1/users"), -1);
	assert_int_equal(route(&m, "GET", ""), -1);
	assert_int_equal(route(&m, "GET", "*"), -1);
}

static void test_router_very_deep_path_is_404(void **state)
{
	(void)state;
	match m;
	char deep[256];
	size_t len = (size_t)snprintf(deep, sizeof(deep), "/static");
	for (int i = 0; i < 40; i++)
		len += (size_t)snprintf(deep + len, sizeof(deep) - len, "/a");
	/* more segments than the matcher splits: refused, never overflowing */
	assert_int_equal(route(&m, "GET", deep), -1);
}

/* Every route of the daemon's own table can be reached: no earlier route
 * with the same method shadows it. Params become "p1", a trailing "*"
 * becomes "rest/of/path". */
static void test_router_every_real_route_is_reachable(void **state)
{
	(void)state;
	assert_true(idb_routes_count > 0);
	for (size_t r = 0; r < idb_routes_count; r++) {
		const char *pat = idb_routes[r].pattern;
		assert_non_null(idb_routes[r].handler);
		assert_true(pat[0] == '/');
		char path[512] = "";
		size_t len = 0;
		for (const char *s = pat + 1;;) {
			size_t sl = strcspn(s, "/");
			const char *seg = s;
			int segl = (int)sl;
			if (sl > 2 && s[0] == '{' && s[sl - 1] == '}') {
				seg = "p1";
				segl = 2;
			} else if (sl == 1 && s[0] == '*' && s[1] == '\0') {
				seg = "rest/of/path";
				segl = (int)strlen(seg);
			}
			len += (size_t)snprintf(path + len, sizeof(path) - len, "/%.*s", segl, seg);
			assert_true(len < sizeof(path));
			if (s[sl] == '\0')
				break;
			s += sl + 1;
		}
		/* "*" routes are probed with a method no specific route uses. */
		const char *method = strcmp(idb_routes[r].method, "*") == 0 ? "IDBPROBE" : idb_routes[r].method;
		const char *pn[4], *pv[4];
		int np = -1;
		char allow[256];
		int rc = idb_route_match(idb_routes, idb_routes_count, method, path, pn, pv, &np, allow, sizeof(allow));
		if (rc != (int)r)
			fail_msg("route %zu (%s %s) is unreachable: matched %d", r, idb_routes[r].method, pat, rc);
	}
}

static void test_http_status_for_each_code(void **state)
{
	(void)state;
	assert_int_equal(idb_http_status_for(IDB_EINVAL), 400);
	assert_int_equal(idb_http_status_for(IDB_EAUTH), 401);
	assert_int_equal(idb_http_status_for(IDB_EFORBIDDEN), 403);
	assert_int_equal(idb_http_status_for(IDB_ENOTFOUND), 404);
	assert_int_equal(idb_http_status_for(IDB_EEXISTS), 409);
	assert_int_equal(idb_http_status_for(IDB_ECONFLICT), 409);
	assert_int_equal(idb_http_status_for(IDB_ETOOBIG), 413);
	assert_int_equal(idb_http_status_for(IDB_EUNAVAIL), 503);
	assert_int_equal(idb_http_status_for(IDB_ETIMEOUT), 503);
	assert_int_equal(idb_http_status_for(IDB_ELOCKED), 403);
	assert_int_equal(idb_http_status_for(IDB_EINTERNAL), 500);
	assert_int_equal(idb_http_status_for(-999), 500);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_router_matches_exact_path),
		cmocka_unit_test(test_router_extracts_param),
		cmocka_unit_test(test_router_extracts_two_params_in_order),
		cmocka_unit_test(test_router_star_segment_matches_any_rest),
		cmocka_unit_test(test_router_star_segment_matches_bare_prefix),
		cmocka_unit_test(test_router_unknown_path_is_404),
		cmocka_unit_test(test_router_wrong_method_is_405_with_allow),
		cmocka_unit_test(test_router_star_method_matches_any_method),
		cmocka_unit_test(test_router_head_matches_get_route),
		cmocka_unit_test(test_router_empty_param_segment_does_not_match),
		cmocka_unit_test(test_router_trailing_slash_is_a_different_path),
		cmocka_unit_test(test_router_path_without_leading_slash_is_404),
		cmocka_unit_test(test_router_very_deep_path_is_404),
		cmocka_unit_test(test_router_every_real_route_is_reachable),
		cmocka_unit_test(test_http_status_for_each_code),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
