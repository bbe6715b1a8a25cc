/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* idb_config_load: defaults, file parsing errors naming the key, bounds,
 * environment overrides, derived fields, and agreement between the key table
 * and conf/idbridge.example.yaml. */
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
#include "err.h"

#ifndef EXAMPLE_PATH
#define EXAMPLE_PATH IDB_SOURCE_DIR "/conf/idbridge.example.yaml"
#endif
#define TEST_DB_URL "postgresql://idb@127.0.0.1/idb"

static const char *const env_names[] = {"IDBRIDGE_LISTEN", "IDBRIDGE_PUBLIC_URL", "IDBRIDGE_DATABASE_URL",
					"IDBRIDGE_REDIS_URL", "IDBRIDGE_SMTP_URL"};

/* Every test starts from a known environment: only the database URL set. */
static int env_reset(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
		unsetenv(env_names[i]);
	setenv("IDBRIDGE_DATABASE_URL", TEST_DB_URL, 1);
	return 0;
}

/* Writes text to a fresh temp file; path receives its name (caller unlinks). */
static void write_temp(char path[64], const char *text)
{
	snprintf(path, 64, "/tmp/idb-test-config-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	size_t n = strlen(text);
	assert_int_equal(write(fd, text, n), (ssize_t)n);
	close(fd);
}

/* Loads text as a config file; returns the rc, *out set on success. */
static int load_text(const char *text, idb_config **out, idb_err *err)
{
	char path[64];
	write_temp(path, text);
	idb_err_clear(err);
	int rc = idb_config_load(out, path, err);
	unlink(path);
	return rc;
}

/* Expects text to be refused with IDB_EINVAL naming field. */
static void expect_invalid(const char *text, const char *field, idb_err *err)
{
	idb_config *cfg = NULL;
	int rc = load_text(text, &cfg, err);
	if (rc == 0) {
		idb_config_free(cfg);
		fail_msg("accepted, expected IDB_EINVAL on %s for:\n%s", field, text);
	}
	assert_int_equal(rc, IDB_EINVAL);
	assert_null(cfg);
	assert_int_equal(err->code, IDB_EINVAL);
	assert_string_equal(err->field, field);
	assert_true(err->msg[0] != '\0');
}

static void test_config_defaults_with_null_path(void **state)
{
	(void)state;
	idb_config *cfg = NULL;
	idb_err err;
	idb_err_clear(&err);
	assert_int_equal(idb_config_load(&cfg, NULL, &err), 0);
	assert_non_null(cfg);
	assert_string_equal(cfg->listen, "127.0.0.1:8080");
	assert_string_equal(cfg->listen_host, "127.0.0.1");
	assert_int_equal(cfg->listen_port, 8080);
	assert_string_equal(cfg->public_url, "http://127.0.0.1:8080");
	assert_false(cfg->public_https);
	assert_string_equal(cfg->public_origin, "http://127.0.0.1:8080");
	assert_int_equal(cfg->threads, 8);
	assert_int_equal(cfg->max_connections, 4096);
	assert_int_equal(cfg->max_body_bytes, 1048576);
	assert_int_equal(cfg->allowed_origins.count, 0);
	assert_false(cfg->trust_forwarded_for);
	assert_string_equal(cfg->database_url, TEST_DB_URL);
	/* pool_size 0 means threads + 2 */
	assert_int_equal(cfg->db_pool_size, 10);
	assert_string_equal(cfg->redis_url, "redis://127.0.0.1:6379/0");
	assert_string_equal(cfg->redis_host, "127.0.0.1");
	assert_int_equal(cfg->redis_port, 6379);
	assert_int_equal(cfg->redis_db, 0);
	assert_string_equal(cfg->redis_password, "");
	assert_int_equal(cfg->session_cache_ttl_s, 300);
	assert_int_equal(cfg->session_idle_timeout_s, 28800);
	assert_int_equal(cfg->session_absolute_timeout_s, 86400);
	assert_int_equal(cfg->lockout_threshold, 5);
	assert_string_equal(cfg->log_level, "info");
	assert_true(cfg->access_log);
	assert_string_equal(cfg->smtp_url, "");
	assert_int_equal(cfg->invitation_ttl_s, 604800);
	assert_int_equal(cfg->saml_clock_skew_s, 120);
	idb_config_free(cfg);
}

static void test_config_empty_file_means_defaults(void **state)
{
	(void)state;
	idb_config *cfg = NULL;
	idb_err err;
	assert_int_equal(load_text("# only a comment\n\n", &cfg, &err), 0);
	assert_non_null(cfg);
	assert_int_equal(cfg->threads, 8);
	idb_config_free(cfg);
}

static void test_config_missing_file_is_refused(void **state)
{
	(void)state;
	idb_config *cfg = NULL;
	idb_err err;
	idb_err_clear(&err);
	assert_int_equal(idb_config_load(&cfg, "/nonexistent/idbridge-test.yaml", &err), IDB_EINVAL);
	assert_null(cfg);
	assert_non_null(strstr(err.msg, "/nonexistent/idbridge-test.yaml"));
}

static void test_config_file_values_are_applied(void **state)
{
	(void)state;
	idb_config *cfg = NULL;
	idb_err err;
	assert_int_equal(load_text("server:\n"
				   "  threads: 4\n"
				   "  trust_forwarded_for: true\n"
				   "database:\n"
				   "  pool_size: 7\n"
				   "log:\n"
				   "  level: debug\n"
				   "  access_log: false\n",
				   &cfg, &err),
			 0);
	assert_int_equal(cfg->threads, 4);
	assert_true(cfg->trust_forwarded_for);
	assert_int_equal(cfg->db_pool_size, 7);
	assert_string_equal(cfg->log_level, "debug");
	assert_false(cfg->access_log);
	idb_config_free(cfg);
}

static void test_config_rejects_unknown_key(void **state)
{
	(void)state;
	idb_err err;
	expect_invalid("server:\n  lisen: x\n", "server.lisen", &err);
}

static void test_config_rejects_unknown_section(void **state)
{
	(void)state;
	idb_err err;
	expect_invalid("sever:\n  listen: x\n", "sever", &err);
}

static void test_config_rejects_wrong_type(void **state)
{
	(void)state;
	idb_err err;
	expect_invalid("server:\n  threads: many\n", "server.threads", &err);
}

static void test_config_rejects_threads_below_range(void **state)
{
	(void)state;
	idb_err err;
	expect_invalid("server:\n  threads: 0\n", "server.threads", &err);
	assert_non_null(strstr(err.msg, "1"));
	assert_non_null(strstr(err.msg, "256"));
}

static void test_config_rejects_threads_above_range(void **state)
{
	(void)state;
	idb_err err;
	expect_invalid("server:\n  threads: 257\n", "server.threads", &err);
	assert_non_null(strstr(err.msg, "256"));
}

static void test_config_rejects_negative_session_ttl(void **state)
{
	(void)state;
	idb_err err;
	expect_invalid("cache:\n  session_ttl_s: -5\n", "cache.session_ttl_s", &err);
	assert_non_null(strstr(err.msg, "1"));
	assert_non_null(strstr(err.msg, "86400"));
	assert_non_null(strstr(err.msg, "-5"));
}

static void test_config_rejects_absolute_timeout_below_idle(void **state)
{
	(void)state;
	idb_err err;
	expect_invalid("session:\n  idle_timeout_s: 3600\n  absolute_timeout_s: 600\n", "session.absolute_timeout_s",
		       &err);
}

static void test_config_requires_database_url(void **state)
{
	(void)state;
	idb_err err;
	unsetenv("IDBRIDGE_DATABASE_URL");
	expect_invalid("database:\n  url: \"\"\n", "database.url", &err);
	/* The message says where to set it. */
	assert_non_null(strstr(err.msg, "IDBRIDGE_DATABASE_URL"));
}

static void test_config_requires_database_url_with_null_path(void **state)
{
	(void)state;
	unsetenv("IDBRIDGE_DATABASE_URL");
	idb_config *cfg = NULL;
	idb_err err;
	idb_err_clear(&err);
	assert_int_equal(idb_config_load(&cfg, NULL, &err), IDB_EINVAL);
	assert_null(cfg);
	assert_string_equal(err.field, "database.url");
}

static void test_config_rejects_non_libpq_database_url(void **state)
{
	(void)state;
	idb_err err;
	setenv("IDBRIDGE_DATABASE_URL", "mysql://db/x", 1);
	expect_invalid("", "database.url", &err);
}

static void test_config_database_url_from_file(void **state)
{
	(void)state;
	unsetenv("IDBRIDGE_DATABASE_URL");
	idb_config *cfg = NULL;
	idb_err err;
	assert_int_equal(load_text("database:\n  url: \"host=db dbname=idb\"\n", &cfg, &err), 0);
	assert_string_equal(cfg->database_url, "host=db dbname=idb");
	idb_config_free(cfg);
}

static void test_config_env_overrides_file(void **state)
{
	(void)state;
	setenv("IDBRIDGE_LISTEN", "0.0.0.0:9090", 1);
	setenv("IDBRIDGE_PUBLIC_URL", "https://ID.Example.com/", 1);
	setenv("IDBRIDGE_REDIS_URL", "redis://:s3cr%40t@redis.internal:6380/3", 1);
	idb_config *cfg = NULL;
	idb_err err;
	assert_int_equal(load_text("server:\n"
				   "  listen: \"127.0.0.1:1\"\n"
				   "  public_url: \"http://other\"\n"
				   "redis:\n"
				   "  url: \"redis://file-host:1/1\"\n",
				   &cfg, &err),
			 0);
	assert_string_equal(cfg->listen, "0.0.0.0:9090");
	assert_string_equal(cfg->listen_host, "0.0.0.0");
	assert_int_equal(cfg->listen_port, 9090);
	assert_true(cfg->public_https);
	assert_string_equal(cfg->public_origin, "https://id.example.com");
	/* The trailing slash is dropped so paths can be appended. */
	assert_string_equal(cfg->public_url, "https://ID.Example.com");
	assert_string_equal(cfg->redis_host, "redis.internal");
	assert_int_equal(cfg->redis_port, 6380);
	assert_int_equal(cfg->redis_db, 3);
	assert_string_equal(cfg->redis_password, "s3cr@t");
	idb_config_free(cfg);
}

static void test_config_empty_env_does_not_override(void **state)
{
	(void)state;
	setenv("IDBRIDGE_LISTEN", "", 1);
	idb_config *cfg = NULL;
	idb_err err;
	assert_int_equal(load_text("server:\n  listen: \"127.0.0.1:7000\"\n", &cfg, &err), 0);
	assert_int_equal(cfg->listen_port, 7000);
	idb_config_free(cfg);
}

static void test_config_redis_url_without_port_or_db(void **state)
{
	(void)state;
	setenv("IDBRIDGE_REDIS_URL", "redis://cache", 1);
	idb_config *cfg = NULL;
	idb_err err;
	idb_err_clear(&err);
	assert_int_equal(idb_config_load(&cfg, NULL, &err), 0);
	assert_string_equal(cfg->redis_host, "cache");
	assert_int_equal(cfg->redis_port, 6379);
	assert_int_equal(cfg->redis_db, 0);
	assert_string_equal(cfg->redis_password, "");
	idb_config_free(cfg);
}

static void test_config_rejects_bad_redis_url(void **state)
{
	(void)state;
	idb_err err;
	setenv("IDBRIDGE_REDIS_URL", "http://cache:6379", 1);
	expect_invalid("", "redis.url", &err);
	setenv("IDBRIDGE_REDIS_URL", "redis://cache:6379/notanumber", 1);
	expect_invalid("", "redis.url", &err);
	setenv("IDBRIDGE_REDIS_URL", "redis://cache:70000", 1);
	expect_invalid("", "redis.url", &err);
}

static void test_config_public_url_https_sets_origin(void **state)
{
	(void)state;
	idb_config *cfg = NULL;
	idb_err err;
	assert_int_equal(load_text("server:\n  public_url: \"https://id.example.com:8443/idb/\"\n", &cfg, &err), 0);
	assert_true(cfg->public_https);
	assert_string_equal(cfg->public_origin, "https://id.example.com:8443");
	assert_string_equal(cfg->public_url, "https://id.example.com:8443/idb");
	idb_config_free(cfg);
}

static void test_config_public_url_http_is_not_https(void **state)
{
	(void)state;
	idb_config *cfg = NULL;
	idb_err err;
	assert_int_equal(load_text("server:\n  public_url: \"http://localhost:8080\"\n", &cfg, &err), 0);
	assert_false(cfg->public_https);
	assert_string_equal(cfg->public_origin, "http://localhost:8080");
	idb_config_free(cfg);
}

static void test_config_rejects_bad_public_url(void **state)
{
	(void)state;
	idb_err err;
	expect_invalid("server:\n  public_url: \"id.example.com\"\n", "server.public_url", &err);
	expect_invalid("server:\n  public_url: \"https://\"\n", "server.public_url", &err);
	expect_invalid("server:\n  public_url: \"https://user@id.example.com\"\n", "server.public_url", &err);
}

static void test_config_rejects_bad_listen(void **state)
{
	(void)state;
	idb_err err;
	expect_invalid("server:\n  listen: \"localhost\"\n", "server.listen", &err);
	expect_invalid("server:\n  listen: \":8080\"\n", "server.listen", &err);
	expect_invalid("server:\n  listen: \"127.0.0.1:0\"\n", "server.listen", &err);
	expect_invalid("server:\n  listen: \"127.0.0.1:65536\"\n", "server.listen", &err);
	expect_invalid("server:\n  listen: \"127.0.0.1:http\"\n", "server.listen", &err);
	setenv("IDBRIDGE_LISTEN", "nonsense", 1);
	expect_invalid("", "server.listen", &err);
}

static void test_config_listen_accepts_bracketed_ipv6(void **state)
{
	(void)state;
	idb_config *cfg = NULL;
	idb_err err;
	assert_int_equal(load_text("server:\n  listen: \"[::1]:8081\"\n", &cfg, &err), 0);
	assert_string_equal(cfg->listen_host, "::1");
	assert_int_equal(cfg->listen_port, 8081);
	idb_config_free(cfg);
}

static void test_config_parses_allowed_origins_list(void **state)
{
	(void)state;
	idb_config *cfg = NULL;
	idb_err err;
	assert_int_equal(load_text("server:\n"
				   "  allowed_origins:\n"
				   "    - \"https://App.Example.com\"\n"
				   "    - \"http://localhost:3000\"\n",
				   &cfg, &err),
			 0);
	assert_int_equal(cfg->allowed_origins.count, 2);
	/* Stored lowercased: origins compare case-insensitively. */
	assert_string_equal(cfg->allowed_origins.items[0], "https://app.example.com");
	assert_string_equal(cfg->allowed_origins.items[1], "http://localhost:3000");
	idb_config_free(cfg);
}

static void test_config_parses_allowed_origins_flow_list(void **state)
{
	(void)state;
	idb_config *cfg = NULL;
	idb_err err;
	assert_int_equal(load_text("server:\n  allowed_origins: [\"https://a.example.com\"]\n", &cfg, &err), 0);
	assert_int_equal(cfg->allowed_origins.count, 1);
	assert_string_equal(cfg->allowed_origins.items[0], "https://a.example.com");
	idb_config_free(cfg);
}

static void test_config_rejects_allowed_origin_with_path(void **state)
{
	(void)state;
	idb_err err;
	expect_invalid("server:\n  allowed_origins: [\"https://app.example.com/path\"]\n", "server.allowed_origins",
		       &err);
	expect_invalid("server:\n  allowed_origins: [\"app.example.com\"]\n", "server.allowed_origins", &err);
	expect_invalid("server:\n  allowed_origins: [\"https://app.example.com\", \"ftp://x\"]\n",
		       "server.allowed_origins", &err);
	/* the message says which entry */
	assert_non_null(strstr(err.msg, "2"));
}

static void test_config_rejects_allowed_origin_with_userinfo_or_query(void **state)
{
	(void)state;
	idb_err err;
	expect_invalid("server:\n  allowed_origins: [\"https://good@evil.com\"]\n", "server.allowed_origins", &err);
	expect_invalid("server:\n  allowed_origins: [\"https://app.example.com?x=1\"]\n", "server.allowed_origins",
		       &err);
	expect_invalid("server:\n  allowed_origins: [\"https://:443\"]\n", "server.allowed_origins", &err);
}

/* An origin must have a host: "https://" is accepted with an empty host. */
static void test_config_rejects_allowed_origin_without_host(void **state)
{
	(void)state;
	idb_err err;
	expect_invalid("server:\n  allowed_origins: [\"https://\"]\n", "server.allowed_origins", &err);
}

/* "http://" is 7 bytes: a check that starts at offset 8 reads past the
 * terminating NUL (ASan: heap-buffer-overflow). */
static void test_config_rejects_short_http_allowed_origin(void **state)
{
	(void)state;
	idb_err err;
	expect_invalid("server:\n  allowed_origins: [\"http://\"]\n", "server.allowed_origins", &err);
}

static void test_config_rejects_bad_log_level(void **state)
{
	(void)state;
	idb_err err;
	expect_invalid("log:\n  level: verbose\n", "log.level", &err);
}

static void test_config_rejects_bad_smtp_url(void **state)
{
	(void)state;
	idb_err err;
	setenv("IDBRIDGE_SMTP_URL", "mail.example.com:25", 1);
	expect_invalid("", "smtp.url", &err);
}

/* --- conf/idbridge.example.yaml and the key table agree --- */

static void test_config_example_file_loads(void **state)
{
	(void)state;
	idb_config *cfg = NULL;
	idb_err err;
	idb_err_clear(&err);
	int rc = idb_config_load(&cfg, EXAMPLE_PATH, &err);
	if (rc != 0)
		fail_msg("example file refused: field %s: %s", err.field, err.msg);
	assert_non_null(cfg);
	/* The file documents the defaults: loading it equals loading nothing. */
	idb_config *def = NULL;
	assert_int_equal(idb_config_load(&def, NULL, &err), 0);
	assert_string_equal(cfg->listen, def->listen);
	assert_string_equal(cfg->public_url, def->public_url);
	assert_int_equal(cfg->threads, def->threads);
	assert_int_equal(cfg->max_body_bytes, def->max_body_bytes);
	assert_int_equal(cfg->db_pool_size, def->db_pool_size);
	assert_string_equal(cfg->redis_url, def->redis_url);
	assert_int_equal(cfg->session_absolute_timeout_s, def->session_absolute_timeout_s);
	assert_int_equal(cfg->password_min_length, def->password_min_length);
	assert_string_equal(cfg->smtp_from, def->smtp_from);
	assert_string_equal(cfg->saml_sp_cert_file, def->saml_sp_cert_file);
	assert_int_equal(cfg->saml_clock_skew_s, def->saml_clock_skew_s);
	idb_config_free(def);
	idb_config_free(cfg);
}

#define MAX_FILE_KEYS 256

/* "section.key" names found in the example file: a top-level `section:` line
 * opens a section, a `  key:` line (two spaces) adds a key to it. */
static size_t example_keys(char names[MAX_FILE_KEYS][64])
{
	FILE *f = fopen(EXAMPLE_PATH, "r");
	assert_non_null(f);
	char line[1024], section[64] = "";
	size_t n = 0;
	while (fgets(line, sizeof(line), f)) {
		size_t id = strspn(line, "abcdefghijklmnopqrstuvwxyz_");
		if (id > 0 && line[id] == ':' && strspn(line + id + 1, " \t\r\n") == strlen(line + id + 1)) {
			snprintf(section, sizeof(section), "%.*s", (int)id, line);
			continue;
		}
		if (line[0] != ' ' && line[0] != '\n' && line[0] != '#' && line[0] != '\r')
			section[0] = '\0'; /* some other top-level construct */
		if (line[0] == ' ' && line[1] == ' ' && line[2] != ' ') {
			size_t kl = strspn(line + 2, "abcdefghijklmnopqrstuvwxyz_");
			if (kl > 0 && line[2 + kl] == ':') {
				if (!section[0])
					fail_msg("example file: key %.*s outside a section", (int)kl, line + 2);
				assert_true(n < MAX_FILE_KEYS);
				snprintf(names[n++], 64, "%s.%.*s", section, (int)kl, line + 2);
			}
		}
	}
	fclose(f);
	return n;
}

static void test_config_example_documents_every_key(void **state)
{
	(void)state;
	static char file_keys[MAX_FILE_KEYS][64];
	size_t nf = example_keys(file_keys);
	const char *const *names = NULL;
	size_t nk = idb_config_keys(&names);
	assert_true(nk > 0);
	int missing = 0;
	for (size_t i = 0; i < nk; i++) {
		bool found = false;
		for (size_t k = 0; k < nf && !found; k++)
			found = strcmp(names[i], file_keys[k]) == 0;
		if (!found) {
			print_error("key %s is not documented in conf/idbridge.example.yaml\n", names[i]);
			missing++;
		}
	}
	assert_int_equal(missing, 0);
}

static void test_config_example_has_no_unknown_key(void **state)
{
	(void)state;
	static char file_keys[MAX_FILE_KEYS][64];
	size_t nf = example_keys(file_keys);
	assert_true(nf > 0);
	const char *const *names = NULL;
	size_t nk = idb_config_keys(&names);
	int unknown = 0;
	for (size_t k = 0; k < nf; k++) {
		bool found = false;
		for (size_t i = 0; i < nk && !found; i++)
			found = strcmp(names[i], file_keys[k]) == 0;
		if (!found) {
			print_error("conf/idbridge.example.yaml has %s, which the code does not know\n", file_keys[k]);
			unknown++;
		}
		for (size_t j = k + 1; j < nf; j++)
			if (strcmp(file_keys[j], file_keys[k]) == 0) {
				print_error("conf/idbridge.example.yaml has %s twice\n", file_keys[k]);
				unknown++;
			}
	}
	assert_int_equal(unknown, 0);
}

static void test_config_keys_are_unique_section_dot_key(void **state)
{
	(void)state;
	const char *const *names = NULL;
	size_t nk = idb_config_keys(&names);
	for (size_t i = 0; i < nk; i++) {
		const char *dot = strchr(names[i], '.');
		assert_non_null(dot);
		assert_true(dot > names[i] && dot[1] != '\0');
		for (size_t j = i + 1; j < nk; j++)
			assert_string_not_equal(names[i], names[j]);
	}
}

static void test_config_free_null_is_noop(void **state)
{
	(void)state;
	idb_config_free(NULL);
}

/* --- Known product bugs (reported to the lead; these fail until fixed) --- */

/* libcyaml 1.3 reads integers with strtoll(value, &end, 0) and does not check
 * that the whole scalar was consumed: "12abc" loads as 12, "1.5" as 1, and
 * base 0 turns "0900" into 0 (for lockout_duration_s that means "locked until
 * an admin unlocks"). */
static void test_config_rejects_integer_with_trailing_garbage(void **state)
{
	(void)state;
	idb_err err;
	expect_invalid("server:\n  threads: 12abc\n", "server.threads", &err);
	expect_invalid("server:\n  threads: 1.5\n", "server.threads", &err);
	expect_invalid("security:\n  lockout_duration_s: 0900\n", "security.lockout_duration_s", &err);
}

/* libcyaml 1.3 reads any scalar that is not a "false" word as true: a typo
 * such as "trust_forwarded_for: flase" silently trusts X-Forwarded-For. */
static void test_config_rejects_non_boolean_word(void **state)
{
	(void)state;
	idb_err err;
	expect_invalid("server:\n  trust_forwarded_for: flase\n", "server.trust_forwarded_for", &err);
	expect_invalid("log:\n  access_log: maybe\n", "log.access_log", &err);
}

/* parse_redis_url copies the password through a 256-byte buffer: a longer
 * one is silently truncated (AUTH then fails with a confusing error). It must
 * be kept whole or refused. */
static void test_config_redis_url_long_password_kept_or_refused(void **state)
{
	(void)state;
	char pw[301], url[400];
	memset(pw, 'p', 300);
	pw[300] = '\0';
	snprintf(url, sizeof(url), "redis://:%s@cache:6379/0", pw);
	setenv("IDBRIDGE_REDIS_URL", url, 1);
	idb_config *cfg = NULL;
	idb_err err;
	idb_err_clear(&err);
	int rc = idb_config_load(&cfg, NULL, &err);
	if (rc == 0) {
		bool whole = strcmp(cfg->redis_password, pw) == 0;
		size_t got = strlen(cfg->redis_password);
		idb_config_free(cfg);
		if (!whole)
			fail_msg("redis password of 300 bytes became %zu bytes", got);
	} else {
		assert_int_equal(rc, IDB_EINVAL);
		assert_string_equal(err.field, "redis.url");
	}
}

#define T(f) cmocka_unit_test_setup(f, env_reset)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_config_defaults_with_null_path),
		T(test_config_empty_file_means_defaults),
		T(test_config_missing_file_is_refused),
		T(test_config_file_values_are_applied),
		T(test_config_rejects_unknown_key),
		T(test_config_rejects_unknown_section),
		T(test_config_rejects_wrong_type),
		T(test_config_rejects_threads_below_range),
		T(test_config_rejects_threads_above_range),
		T(test_config_rejects_negative_session_ttl),
		T(test_config_rejects_absolute_timeout_below_idle),
		T(test_config_requires_database_url),
		T(test_config_requires_database_url_with_null_path),
		T(test_config_rejects_non_libpq_database_url),
		T(test_config_database_url_from_file),
		T(test_config_env_overrides_file),
		T(test_config_empty_env_does_not_override),
		T(test_config_redis_url_without_port_or_db),
		T(test_config_rejects_bad_redis_url),
		T(test_config_public_url_https_sets_origin),
		T(test_config_public_url_http_is_not_https),
		T(test_config_rejects_bad_public_url),
		T(test_config_rejects_bad_listen),
		T(test_config_listen_accepts_bracketed_ipv6),
		T(test_config_parses_allowed_origins_list),
		T(test_config_parses_allowed_origins_flow_list),
		T(test_config_rejects_allowed_origin_with_path),
		T(test_config_rejects_allowed_origin_with_userinfo_or_query),
		T(test_config_rejects_allowed_origin_without_host),
		T(test_config_rejects_short_http_allowed_origin),
		T(test_config_rejects_bad_log_level),
		T(test_config_rejects_bad_smtp_url),
		T(test_config_example_file_loads),
		T(test_config_example_documents_every_key),
		T(test_config_example_has_no_unknown_key),
		T(test_config_keys_are_unique_section_dot_key),
		T(test_config_free_null_is_noop),
		/* known product bugs, reported */
		T(test_config_rejects_integer_with_trailing_garbage),
		T(test_config_rejects_non_boolean_word),
		T(test_config_redis_url_long_password_kept_or_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
