/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* idb_return_to_allowed: redirect targets stay on the deployment's own origin
 * or a configured allowed origin (no open redirects). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "urls.h"

static int load_config(void **state)
{
	static const char *const env[] = {"IDBRIDGE_LISTEN", "IDBRIDGE_PUBLIC_URL", "IDBRIDGE_REDIS_URL",
					  "IDBRIDGE_SMTP_URL"};
	for (size_t i = 0; i < sizeof(env) / sizeof(env[0]); i++)
		unsetenv(env[i]);
	setenv("IDBRIDGE_DATABASE_URL", "postgresql://idb@127.0.0.1/idb", 1);
	char path[] = "/tmp/idb-test-urls-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	static const char yaml[] = "server:\n"
				   "  public_url: \"https://id.example.com\"\n"
				   "  allowed_origins: [\"https://app.example.com\"]\n";
	ssize_t w = write(fd, yaml, sizeof(yaml) - 1);
	close(fd);
	idb_config *cfg = NULL;
	idb_err err;
	idb_err_clear(&err);
	int rc = w == (ssize_t)(sizeof(yaml) - 1) ? idb_config_load(&cfg, path, &err) : -1;
	unlink(path);
	if (rc != 0) {
		fprintf(stderr, "config: %s: %s\n", err.field, err.msg);
		return -1;
	}
	*state = cfg;
	return 0;
}

static int free_config(void **state)
{
	idb_config_free(*state);
	return 0;
}

static void test_return_to_allows_local_paths(void **state)
{
	const idb_config *cfg = *state;
	assert_true(idb_return_to_allowed(cfg, "/"));
	assert_true(idb_return_to_allowed(cfg, "/x?y=1"));
	assert_true(idb_return_to_allowed(cfg, "/app/settings#section"));
}

static void test_return_to_allows_own_origin(void **state)
{
	const idb_config *cfg = *state;
	assert_true(idb_return_to_allowed(cfg, "https://id.example.com/p"));
	assert_true(idb_return_to_allowed(cfg, "https://id.example.com"));
	assert_true(idb_return_to_allowed(cfg, "https://id.example.com?x=1"));
}

static void test_return_to_allows_configured_origin(void **state)
{
	const idb_config *cfg = *state;
	assert_true(idb_return_to_allowed(cfg, "https://app.example.com"));
	assert_true(idb_return_to_allowed(cfg, "https://app.example.com/dashboard"));
}

static void test_return_to_origin_compare_ignores_case(void **state)
{
	const idb_config *cfg = *state;
	assert_true(idb_return_to_allowed(cfg, "HTTPS://APP.EXAMPLE.COM/x"));
	assert_true(idb_return_to_allowed(cfg, "https://ID.Example.Com/p"));
}

static void test_return_to_refuses_protocol_relative(void **state)
{
	const idb_config *cfg = *state;
	assert_false(idb_return_to_allowed(cfg, "//evil.com"));
	assert_false(idb_return_to_allowed(cfg, "//evil.com/path"));
}

static void test_return_to_refuses_backslash(void **state)
{
	const idb_config *cfg = *state;
	assert_false(idb_return_to_allowed(cfg, "/\\evil.com"));
	assert_false(idb_return_to_allowed(cfg, "/x\\y"));
	assert_false(idb_return_to_allowed(cfg, "https://app.example.com\\@evil.com/"));
}

static void test_return_to_refuses_foreign_origins(void **state)
{
	const idb_config *cfg = *state;
	assert_false(idb_return_to_allowed(cfg, "https://evil.com"));
	assert_false(idb_return_to_allowed(cfg, "https://evil.com/https://app.example.com"));
	assert_false(idb_return_to_allowed(cfg, "https://app.example.com.evil.com/"));
	assert_false(idb_return_to_allowed(cfg, "https://evilapp.example.com/"));
	assert_false(idb_return_to_allowed(cfg, "https://example.com/"));
}

static void test_return_to_refuses_userinfo(void **state)
{
	const idb_config *cfg = *state;
	assert_false(idb_return_to_allowed(cfg, "https://app.example.com@evil.com/"));
	assert_false(idb_return_to_allowed(cfg, "https://user:pw@app.example.com/"));
}

static void test_return_to_refuses_other_schemes(void **state)
{
	const idb_config *cfg = *state;
	assert_false(idb_return_to_allowed(cfg, "javascript:alert(1)"));
	assert_false(idb_return_to_allowed(cfg, "data:text/html,<script>alert(1)</script>"));
	assert_false(idb_return_to_allowed(cfg, "ftp://app.example.com/"));
	assert_false(idb_return_to_allowed(cfg, "app.example.com/x"));
	/* same host, but http is another origin than https */
	assert_false(idb_return_to_allowed(cfg, "http://app.example.com/"));
	assert_false(idb_return_to_allowed(cfg, "http://id.example.com/"));
}

static void test_return_to_refuses_other_port(void **state)
{
	const idb_config *cfg = *state;
	assert_false(idb_return_to_allowed(cfg, "https://id.example.com:444/"));
	assert_false(idb_return_to_allowed(cfg, "https://app.example.com:8443/x"));
}

static void test_return_to_refuses_control_characters(void **state)
{
	const idb_config *cfg = *state;
	assert_false(idb_return_to_allowed(cfg, "/x\r\nSet-Cookie: a"));
	assert_false(idb_return_to_allowed(cfg, "/x\ty"));
	assert_false(idb_return_to_allowed(cfg, "https://app.example.com/\x7f"));
	/* a tab inside the scheme separator is dropped by browsers: "/\t/evil.com" */
	assert_false(idb_return_to_allowed(cfg, "/\t/evil.com"));
}

static void test_return_to_refuses_empty_and_null(void **state)
{
	const idb_config *cfg = *state;
	assert_false(idb_return_to_allowed(cfg, ""));
	assert_false(idb_return_to_allowed(cfg, NULL));
}

static void test_return_to_refuses_overlong_path(void **state)
{
	const idb_config *cfg = *state;
	char *p = malloc(3001);
	assert_non_null(p);
	p[0] = '/';
	memset(p + 1, 'a', 2999);
	p[3000] = '\0';
	bool ok = idb_return_to_allowed(cfg, p);
	free(p);
	assert_false(ok);
}

static void test_return_to_without_allowed_origins_only_allows_own(void **state)
{
	(void)state;
	unsetenv("IDBRIDGE_PUBLIC_URL");
	setenv("IDBRIDGE_DATABASE_URL", "postgresql://idb@127.0.0.1/idb", 1);
	idb_config *cfg = NULL;
	idb_err err;
	assert_int_equal(idb_config_load(&cfg, NULL, &err), 0);
	/* default public_url http://127.0.0.1:8080 */
	bool own = idb_return_to_allowed(cfg, "http://127.0.0.1:8080/x");
	bool app = idb_return_to_allowed(cfg, "https://app.example.com/");
	bool local = idb_return_to_allowed(cfg, "/x");
	idb_config_free(cfg);
	assert_true(own);
	assert_false(app);
	assert_true(local);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_return_to_allows_local_paths),
		cmocka_unit_test(test_return_to_allows_own_origin),
		cmocka_unit_test(test_return_to_allows_configured_origin),
		cmocka_unit_test(test_return_to_origin_compare_ignores_case),
		cmocka_unit_test(test_return_to_refuses_protocol_relative),
		cmocka_unit_test(test_return_to_refuses_backslash),
		cmocka_unit_test(test_return_to_refuses_foreign_origins),
		cmocka_unit_test(test_return_to_refuses_userinfo),
		cmocka_unit_test(test_return_to_refuses_other_schemes),
		cmocka_unit_test(test_return_to_refuses_other_port),
		cmocka_unit_test(test_return_to_refuses_control_characters),
		cmocka_unit_test(test_return_to_refuses_empty_and_null),
		cmocka_unit_test(test_return_to_refuses_overlong_path),
		cmocka_unit_test(test_return_to_without_allowed_origins_only_allows_own),
	};
	return cmocka_run_group_tests(tests, load_config, free_config);
}
