/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* conf/util.c: password hashing, tokens, SHA-256, e-mail plausibility,
 * integer parsing, percent-decoding, constant-time comparison. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "util.h"

static int crypto_setup(void **state)
{
	(void)state;
	return idb_crypto_init() == 0 ? 0 : -1;
}

/* argon2id is deliberately slow (~50-100 ms): one hash, three verifies. */
static void test_password_hash_verifies_right_and_rejects_wrong(void **state)
{
	(void)state;
	char h[256];
	assert_int_equal(idb_password_hash(h, sizeof(h), "correct horse battery staple"), 0);
	assert_memory_equal(h, "$argon2id$", strlen("$argon2id$"));
	assert_true(idb_password_verify(h, "correct horse battery staple"));
	assert_false(idb_password_verify(h, "correct horse battery stapl"));
}

static void test_password_verify_null_hash_is_false(void **state)
{
	(void)state;
	assert_false(idb_password_verify(NULL, "anything"));
	assert_false(idb_password_verify("", "anything"));
}

static void test_password_hash_refuses_small_buffer(void **state)
{
	(void)state;
	char h[16];
	assert_int_not_equal(idb_password_hash(h, sizeof(h), "pw"), 0);
}

static void test_password_verify_rejects_garbage_hash(void **state)
{
	(void)state;
	assert_false(idb_password_verify("$argon2id$not-a-hash", "pw"));
	assert_false(idb_password_verify("plaintext", "plaintext"));
}

static void test_random_token_is_43_chars_for_32_bytes(void **state)
{
	(void)state;
	char a[64], b[64];
	memset(a, 'x', sizeof(a));
	idb_random_token(a, sizeof(a), 32);
	idb_random_token(b, sizeof(b), 32);
	assert_int_equal(strlen(a), 43);
	assert_int_equal(strlen(b), 43);
	assert_string_not_equal(a, b);
	/* base64url without padding: no '+', '/', '='. */
	assert_int_equal(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
}

static void test_random_hex_is_lowercase_hex(void **state)
{
	(void)state;
	char a[33], b[33];
	idb_random_hex(a, sizeof(a), 16);
	idb_random_hex(b, sizeof(b), 16);
	assert_int_equal(strlen(a), 32);
	assert_int_equal(strspn(a, "0123456789abcdef"), 32);
	assert_string_not_equal(a, b);
}

static void test_sha256_hex_matches_known_vectors(void **state)
{
	(void)state;
	char out[65];
	idb_sha256_hex(out, "abc", 3);
	assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	idb_sha256_hex(out, "", 0);
	assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_str_ct_equal(void **state)
{
	(void)state;
	assert_true(idb_str_ct_equal("abc", "abc"));
	assert_true(idb_str_ct_equal("", ""));
	assert_false(idb_str_ct_equal("abc", "abd"));
	assert_false(idb_str_ct_equal("abc", "ab"));
	assert_false(idb_str_ct_equal("ab", "abc"));
	assert_false(idb_str_ct_equal("", "a"));
}

static void test_email_valid_accepts_plausible_addresses(void **state)
{
	(void)state;
	static const char *const ok[] = {
		"a@b.co",
		"first.last+tag@sub.example.com",
		"user_name-1@example-domain.org",
		"UPPER@EXAMPLE.COM",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (!idb_email_valid(ok[i]))
			fail_msg("refused valid address \"%s\"", ok[i]);
}

static void test_email_valid_rejects_malformed_addresses(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"ab",
		"no-at-sign.example.com",
		"two@at@example.com",
		"@example.com",
		".leading@example.com",
		"trailing.@example.com",
		"dou..ble@example.com",
		"a b@c.com",
		"a@b.com.",
		"a@.b.com",
		"a@b..com",
		"a@b",
		"a@bc",
		"<a>@b.com",
		"a@b.com>",
		"\"quoted\"@b.com",
		"a,b@c.com",
		"a@b_c.com",
		"tab\t@b.com",
		"a@b.com\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (idb_email_valid(bad[i]))
			fail_msg("accepted invalid address \"%s\"", bad[i]);
}

static void test_email_valid_enforces_rfc5321_lengths(void **state)
{
	(void)state;
	char buf[400];
	/* local part: 64 ok, 65 refused */
	memset(buf, 'a', 64);
	snprintf(buf + 64, sizeof(buf) - 64, "@example.com");
	assert_true(idb_email_valid(buf));
	memset(buf, 'a', 65);
	snprintf(buf + 65, sizeof(buf) - 65, "@example.com");
	assert_false(idb_email_valid(buf));
	/* total: 254 ok, 255 refused (local 10 + '@' + domain) */
	memset(buf, 'a', 10);
	buf[10] = '@';
	memset(buf + 11, 'b', 254 - 11 - 4);
	snprintf(buf + 254 - 4, sizeof(buf) - 250, ".com");
	assert_int_equal(strlen(buf), 254);
	assert_true(idb_email_valid(buf));
	memset(buf + 11, 'b', 255 - 11 - 4);
	snprintf(buf + 255 - 4, sizeof(buf) - 251, ".com");
	assert_int_equal(strlen(buf), 255);
	assert_false(idb_email_valid(buf));
}

static void test_parse_long_accepts_in_range(void **state)
{
	(void)state;
	long long v = 0;
	assert_true(idb_parse_long("42", 0, 100, &v));
	assert_int_equal(v, 42);
	assert_true(idb_parse_long("-5", -10, 10, &v));
	assert_int_equal(v, -5);
	assert_true(idb_parse_long("0", 0, 0, &v));
	assert_int_equal(v, 0);
	assert_true(idb_parse_long("100", 0, 100, &v));
	assert_int_equal(v, 100);
	assert_true(idb_parse_long("9223372036854775807", INT64_MIN, INT64_MAX, &v));
	assert_true(v == INT64_MAX);
}

static void test_parse_long_rejects_out_of_range_and_garbage(void **state)
{
	(void)state;
	long long v = 7;
	static const char *const bad[] = {"", "abc", "12abc", "1.5", "0x10", "101", "-1", "1 ",
					  "99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (idb_parse_long(bad[i], 0, 100, &v))
			fail_msg("accepted \"%s\" for [0, 100]", bad[i]);
	assert_false(idb_parse_long(NULL, 0, 100, &v));
	/* *out is left alone on failure */
	assert_int_equal(v, 7);
}

/* util.h: "the whole string must be a base-10 integer": strtoll skips leading
 * white space, which the contract does not allow. */
static void test_parse_long_rejects_leading_space(void **state)
{
	(void)state;
	long long v = 7;
	assert_false(idb_parse_long(" 12", 0, 100, &v));
	assert_false(idb_parse_long("\t12", 0, 100, &v));
	assert_false(idb_parse_long("\n12", 0, 100, &v));
}

static void test_url_decode_decodes_escapes(void **state)
{
	(void)state;
	char s[64];
	snprintf(s, sizeof(s), "%%41%%62c%%2Fd%%2f");
	assert_true(idb_url_decode(s, false));
	assert_string_equal(s, "Abc/d/");
	snprintf(s, sizeof(s), "a+b%%20c");
	assert_true(idb_url_decode(s, true));
	assert_string_equal(s, "a b c");
	snprintf(s, sizeof(s), "a+b");
	assert_true(idb_url_decode(s, false));
	assert_string_equal(s, "a+b");
	snprintf(s, sizeof(s), "%%2B");
	assert_true(idb_url_decode(s, true));
	assert_string_equal(s, "+");
	snprintf(s, sizeof(s), "%s", "");
	assert_true(idb_url_decode(s, true));
	assert_string_equal(s, "");
}

static void test_url_decode_rejects_malformed(void **state)
{
	(void)state;
	static const char *const bad[] = {"%zz", "%4", "%", "ab%", "%g1", "%00", "x%00y"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char s[16];
		snprintf(s, sizeof(s), "%s", bad[i]);
		if (idb_url_decode(s, true))
			fail_msg("accepted \"%s\"", bad[i]);
	}
}

static void test_strlcpy_truncates_and_reports(void **state)
{
	(void)state;
	char d[4];
	assert_true(idb_strlcpy(d, "abc", sizeof(d)));
	assert_string_equal(d, "abc");
	assert_false(idb_strlcpy(d, "abcd", sizeof(d)));
	assert_string_equal(d, "abc");
	assert_false(idb_strlcpy(d, "x", 0));
}

static void test_str_lower_only_ascii(void **state)
{
	(void)state;
	char s[] = "MiXeD-123@EXAMPLE.Com";
	idb_str_lower(s);
	assert_string_equal(s, "mixed-123@example.com");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_password_hash_verifies_right_and_rejects_wrong),
		cmocka_unit_test(test_password_verify_null_hash_is_false),
		cmocka_unit_test(test_password_hash_refuses_small_buffer),
		cmocka_unit_test(test_password_verify_rejects_garbage_hash),
		cmocka_unit_test(test_random_token_is_43_chars_for_32_bytes),
		cmocka_unit_test(test_random_hex_is_lowercase_hex),
		cmocka_unit_test(test_sha256_hex_matches_known_vectors),
		cmocka_unit_test(test_str_ct_equal),
		cmocka_unit_test(test_email_valid_accepts_plausible_addresses),
		cmocka_unit_test(test_email_valid_rejects_malformed_addresses),
		cmocka_unit_test(test_email_valid_enforces_rfc5321_lengths),
		cmocka_unit_test(test_parse_long_accepts_in_range),
		cmocka_unit_test(test_parse_long_rejects_out_of_range_and_garbage),
		cmocka_unit_test(test_parse_long_rejects_leading_space),
		cmocka_unit_test(test_url_decode_decodes_escapes),
		cmocka_unit_test(test_url_decode_rejects_malformed),
		cmocka_unit_test(test_strlcpy_truncates_and_reports),
		cmocka_unit_test(test_str_lower_only_ascii),
	};
	return cmocka_run_group_tests(tests, crypto_setup, NULL);
}
