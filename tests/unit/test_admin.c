/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Pure helpers of the admin modules: timestamps, cursors, ids, the password
 * rule and the outbox message renderer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admin.h"
#include "outbox.h"
#include "util.h"

static void test_rfc3339_accepts_utc_offsets_and_dates(void **state)
{
	(void)state;
	int64_t t;
	assert_true(idb_rfc3339_parse("2024-05-01T12:00:00Z", &t));
	assert_int_equal(t, 1714564800);
	assert_true(idb_rfc3339_parse("2024-05-01T14:00:00.123+02:00", &t));
	assert_int_equal(t, 1714564800);
	assert_true(idb_rfc3339_parse("2024-05-01T14:00:00 02:00", &t)); /* '+' decoded to ' ' */
	assert_int_equal(t, 1714564800);
	assert_true(idb_rfc3339_parse("2024-05-01", &t));
	assert_int_equal(t, 1714521600);
	assert_true(idb_rfc3339_parse("2024-02-29T00:00:00Z", &t));
}

static void test_rfc3339_refuses_malformed_times(void **state)
{
	(void)state;
	int64_t t;
	const char *bad[] = {"", "yesterday", "2024-13-01", "2023-02-29", "2024-05-01T25:00:00Z", "2024-05-01T12:00",
			     "2024-05-01T12:00:00", "2024-05-01T12:00:00Zjunk", "2024-5-1", "2024-05-01T12:00:00+2"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(idb_rfc3339_parse(bad[i], &t));
	assert_false(idb_rfc3339_parse(NULL, &t));
}

static void test_cursor_round_trip_and_tampering(void **state)
{
	(void)state;
	const char *parts[] = {"ada.lovelace@example.com", "0b7f3c52-6a0e-4d39-9d7c-2b1f4a8e9c01"};
	char *c = idb_cursor_encode(parts, 2);
	assert_non_null(c);
	assert_null(strchr(c, '=')); /* base64url without padding */
	char out[2][256];
	assert_true(idb_cursor_decode(c, out, 2));
	assert_string_equal(out[0], parts[0]);
	assert_string_equal(out[1], parts[1]);
	assert_false(idb_cursor_decode(c, out, 3));
	c[3] = c[3] == 'A' ? 'B' : 'A';
	(void)idb_cursor_decode(c, out, 2); /* may decode to other text, must not crash */
	assert_false(idb_cursor_decode("%%%", out, 2));
	assert_false(idb_cursor_decode("", out, 2));
	free(c);
}

static void test_uuid_validation(void **state)
{
	(void)state;
	assert_true(idb_uuid_valid("0b7f3c52-6a0e-4d39-9d7c-2b1f4a8e9c01"));
	assert_false(idb_uuid_valid("0b7f3c52-6a0e-4d39-9d7c-2b1f4a8e9c0"));
	assert_false(idb_uuid_valid("0b7f3c52x6a0e-4d39-9d7c-2b1f4a8e9c01"));
	assert_false(idb_uuid_valid("not-a-uuid"));
	assert_false(idb_uuid_valid(NULL));
}

static void test_password_rule(void **state)
{
	(void)state;
	idb_err err;
	assert_int_equal(idb_password_check("Correct-horse-9", "a@b.example", 12, &err), 0);
	assert_int_equal(idb_password_check("Short-1", "a@b.example", 12, &err), IDB_EINVAL);
	assert_string_equal(err.field, "password");
	assert_int_equal(idb_password_check("onlylowercaseletters", "a@b.example", 12, &err), IDB_EINVAL);
	assert_int_equal(idb_password_check("123456789012345", "a@b.example", 12, &err), IDB_EINVAL);
	assert_int_equal(idb_password_check("Someone@Example.com", "someone@example.com", 12, &err), IDB_EINVAL);
	/* length counts characters, not bytes */
	assert_int_equal(idb_password_check("ééééééééééé1", "a@b.example", 12, &err), 0);
	assert_int_equal(idb_password_check("éééééééééé1", "a@b.example", 12, &err), IDB_EINVAL);
	assert_int_equal(idb_password_check("", "a@b.example", 12, &err), IDB_EINVAL);
}

static void test_html_escape(void **state)
{
	(void)state;
	char *s = idb_html_escape("<a href='x'>\"&\"</a>");
	assert_string_equal(s, "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;");
	free(s);
}

static void test_outbox_render_is_a_safe_mime_message(void **state)
{
	(void)state;
	char *rcpt = NULL;
	char *m = idb_outbox_render("{\"to\":\"ivy@example.com\",\"subject\":\"Zoë invited you\\r\\nBcc: evil@x\","
				    "\"text\":\"Hello\\nline two\",\"html\":\"<p>Hello</p>\"}",
				    "idbridge <no-reply@idb.example>", 42, &rcpt);
	assert_non_null(m);
	assert_string_equal(rcpt, "ivy@example.com");
	assert_non_null(strstr(m, "From: idbridge <no-reply@idb.example>\r\n"));
	assert_non_null(strstr(m, "To: <ivy@example.com>\r\n"));
	assert_non_null(strstr(m, "Subject: =?UTF-8?B?"));
	assert_null(strstr(m, "\r\nBcc:")); /* no header injection */
	assert_non_null(strstr(m, "@idb.example>\r\n"));
	assert_non_null(strstr(m, "multipart/alternative"));
	/* every line within the SMTP limit */
	for (const char *p = m; *p;) {
		const char *e = strstr(p, "\r\n");
		size_t n = e ? (size_t)(e - p) : strlen(p);
		assert_true(n <= 998);
		p += n + (e ? 2 : 0);
	}
	free(m);
	free(rcpt);
	assert_null(idb_outbox_render("{\"to\":\"a@b.example\\r\\nRCPT TO:<x@y>\",\"subject\":\"s\",\"text\":\"t\"}",
				      "x <y@z.example>", 1, &rcpt));
	assert_null(idb_outbox_render("not json", "x <y@z.example>", 1, &rcpt));
	assert_null(rcpt);
}

int main(void)
{
	if (idb_crypto_init() != 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc3339_accepts_utc_offsets_and_dates),
		cmocka_unit_test(test_rfc3339_refuses_malformed_times),
		cmocka_unit_test(test_cursor_round_trip_and_tampering),
		cmocka_unit_test(test_uuid_validation),
		cmocka_unit_test(test_password_rule),
		cmocka_unit_test(test_html_escape),
		cmocka_unit_test(test_outbox_render_is_a_safe_mime_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
