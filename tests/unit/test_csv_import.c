/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The CSV import file format and its row rules (provisioning/csv_import.c):
 * RFC 4180 details, line numbers, file-level refusals, per-row messages and
 * the error report's formula neutralisation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "csv_import.h"
#include "roles.h"

/* Appends s to buf (cap bytes), truncating. */
static void app(char *buf, size_t cap, const char *s)
{
	size_t n = strlen(buf);
	snprintf(buf + n, cap - n, "%s", s);
}

static idb_import_file *parse_ok(const char *text)
{
	idb_import_file *f = NULL;
	idb_err err;
	idb_err_clear(&err);
	int rc = idb_csv_import_parse(&f, text, strlen(text), &err);
	if (rc != 0)
		fail_msg("parse failed: %s", err.msg);
	assert_non_null(f);
	return f;
}

/* Parses a file that must be refused; returns the message (static). */
static const char *refused(const char *text, size_t len)
{
	static idb_err err;
	idb_err_clear(&err);
	idb_import_file *f = NULL;
	int rc = idb_csv_import_parse(&f, text, len, &err);
	assert_int_equal(rc, IDB_EINVAL);
	assert_null(f);
	assert_string_equal(err.field, "file");
	assert_true(strlen(err.msg) > 10);
	return err.msg;
}

#define REFUSED(s) refused((s), strlen(s))

static void test_csv_import_reads_the_template(void **state)
{
	(void)state;
	idb_import_file *f = parse_ok(idb_csv_import_template());
	assert_int_equal(f->nrows, 2);
	assert_int_equal(f->nadd, 2);
	assert_string_equal(f->rows[0].email, "ada.lovelace@example.com");
	assert_string_equal(f->rows[0].name, "Ada Lovelace");
	assert_int_equal(f->rows[0].role, IDB_ROLE_CONFIGURE);
	assert_int_equal(f->rows[0].ngroups, 2);
	assert_string_equal(f->rows[0].groups[0], "Engineering");
	assert_string_equal(f->rows[0].groups[1], "Research");
	assert_int_equal(f->rows[0].line, 2);
	assert_int_equal(f->rows[1].line, 3);
	assert_int_equal(f->rows[1].ngroups, 0);
	assert_string_equal(f->rows[1].message, "");
	idb_import_file_free(f);
}

static void test_csv_import_handles_bom_crlf_and_trailing_empty_lines(void **state)
{
	(void)state;
	idb_import_file *f = parse_ok("\xEF\xBB\xBF"
				      "email,name,role,groups\r\n"
				      "a@example.com,A,readonly,\r\n"
				      "b@example.com,B,admin,\r\n"
				      "\r\n\r\n   \r\n,,,\r\n");
	assert_int_equal(f->nrows, 2);
	assert_int_equal(f->nadd, 2);
	assert_string_equal(f->rows[0].email, "a@example.com");
	assert_int_equal(f->rows[1].line, 3);
	assert_int_equal(f->rows[1].role, IDB_ROLE_ADMIN);
	idb_import_file_free(f);

	/* no newline at the end, blank lines between rows, lone CR line ends */
	f = parse_ok("email,role\n\na@example.com,train\r\rb@example.com,train");
	assert_int_equal(f->nrows, 2);
	assert_int_equal(f->rows[0].line, 3);
	assert_int_equal(f->rows[1].line, 5);
	idb_import_file_free(f);
}

static void test_csv_import_quoted_separators_quotes_and_newlines(void **state)
{
	(void)state;
	idb_import_file *f = parse_ok("email,name,role,groups\n"
				      "a@example.com,\"Lovelace, Ada\",readonly,\"Sales;Marketing\"\n"
				      "b@example.com,\"Bob \"\"The Builder\"\"\",train,\"Ops | Dev\"\n"
				      "c@example.com,\"Multi\nLine\r\nName\",readonly,\n"
				      "d@example.com,D,readonly,\n");
	assert_int_equal(f->nrows, 4);
	assert_string_equal(f->rows[0].name, "Lovelace, Ada");
	assert_int_equal(f->rows[0].ngroups, 2);
	assert_string_equal(f->rows[0].groups[1], "Marketing");
	assert_string_equal(f->rows[1].name, "Bob \"The Builder\"");
	assert_int_equal(f->rows[1].ngroups, 2);
	assert_string_equal(f->rows[1].groups[0], "Ops");
	assert_string_equal(f->rows[1].groups[1], "Dev");
	/* a quoted newline spans physical lines: the next record starts later */
	assert_int_equal(f->rows[2].line, 4);
	assert_int_equal(f->rows[2].action, IDB_IMPORT_ERROR);
	assert_string_equal(f->rows[2].message, "Invalid name (control characters are not allowed)");
	assert_string_equal(f->rows[2].cell[IDB_IMPORT_COL_NAME], "Multi\nLine\r\nName");
	assert_int_equal(f->rows[3].line, 7);
	assert_int_equal(f->rows[3].action, IDB_IMPORT_ADD);
	idb_import_file_free(f);
}

static void test_csv_import_line_of_a_record_after_quoted_newlines_in_first_field(void **state)
{
	(void)state;
	idb_import_file *f = parse_ok("email,role,name\n\n\"x\n@example.com\",readonly,\n"
				      "ok@example.com,readonly,\"a\n\nb\"\nlast@example.com,admin,L\n");
	assert_int_equal(f->nrows, 3);
	assert_int_equal(f->rows[0].line, 3);
	assert_string_equal(f->rows[0].message, "Invalid email format");
	assert_int_equal(f->rows[1].line, 5);
	assert_int_equal(f->rows[2].line, 8);
	idb_import_file_free(f);
}

static void test_csv_import_unicode_names(void **state)
{
	(void)state;
	/* 200 characters of 3 bytes each: 600 bytes, within the 256-character bound */
	char name[700] = "";
	for (int i = 0; i < 200; i++)
		app(name, sizeof(name), "\xE5\xB1\xB1"); /* 山 */
	char text[1024];
	snprintf(text, sizeof(text),
		 "email,name,role\nz@example.com,Zoë Ångström-Øre 🚀,readonly\nj@example.com,%s,readonly\n", name);
	idb_import_file *f = parse_ok(text);
	assert_string_equal(f->rows[0].name, "Zoë Ångström-Øre 🚀");
	assert_int_equal(f->rows[0].action, IDB_IMPORT_ADD);
	assert_int_equal(f->rows[1].action, IDB_IMPORT_ADD);
	idb_import_file_free(f);
}

static void test_csv_import_row_error_messages(void **state)
{
	(void)state;
	char longname[300];
	memset(longname, 'n', 257);
	longname[257] = '\0';
	char text[2048];
	snprintf(text, sizeof(text),
		 "email,name,role,groups\n"
		 "not-an-email,X,readonly,\n"    /* 2 */
		 ",Nobody,readonly,\n"           /* 3 */
		 "a@example.com,A,Admin,\n"      /* 4: roles are lowercase */
		 "b@example.com,B,,\n"           /* 5: role is required */
		 "c@example.com,B,owner,\n"      /* 6 */
		 "d@example.com,%s,readonly,\n"  /* 7 */
		 "e@example.com,E,readonly,,x\n" /* 8 */
		 "bad,E,nope,\n"                 /* 9: two errors */
		 "f@example.com,F,readonly,,\n", /* 10: an empty extra cell is fine */
		 longname);
	idb_import_file *f = parse_ok(text);
	assert_int_equal(f->nrows, 9);
	const char *want[] = {"Invalid email format",
			      "Invalid email format",
			      "Invalid role",
			      "Invalid role",
			      "Invalid role",
			      "Invalid name (at most 256 characters)",
			      "Too many fields (the header has 4 columns)",
			      "Invalid email format; Invalid role",
			      ""};
	for (size_t i = 0; i < 9; i++) {
		assert_int_equal(f->rows[i].line, (long)i + 2);
		assert_string_equal(f->rows[i].message, want[i]);
		assert_int_equal(f->rows[i].action, i == 8 ? IDB_IMPORT_ADD : IDB_IMPORT_ERROR);
	}
	assert_int_equal(f->nerror, 8);
	assert_int_equal(f->nadd, 1);
	assert_int_equal(f->nskip, 0);
	idb_import_file_free(f);
}

static void test_csv_import_duplicate_email_skips_the_second_occurrence(void **state)
{
	(void)state;
	idb_import_file *f = parse_ok("email,role\n"
				      "Ann@Example.com,readonly\n"
				      "bob@example.com,readonly\n"
				      "ann@example.COM,admin\n"
				      " ann@example.com ,nope\n"
				      "bad@,readonly\n"
				      "bad@,readonly\n");
	assert_int_equal(f->nrows, 6);
	assert_int_equal(f->rows[0].action, IDB_IMPORT_ADD);
	assert_int_equal(f->rows[2].action, IDB_IMPORT_SKIP);
	assert_string_equal(f->rows[2].message, "Duplicate email");
	/* a skip replaces the row's errors */
	assert_int_equal(f->rows[3].action, IDB_IMPORT_SKIP);
	assert_string_equal(f->rows[3].message, "Duplicate email");
	/* invalid addresses are errors, never duplicates */
	assert_int_equal(f->rows[4].action, IDB_IMPORT_ERROR);
	assert_int_equal(f->rows[5].action, IDB_IMPORT_ERROR);
	assert_int_equal(f->nadd, 2);
	assert_int_equal(f->nskip, 2);
	assert_int_equal(f->nerror, 2);
	idb_import_file_free(f);
}

static void test_csv_import_groups_split_trim_dedupe_and_limits(void **state)
{
	(void)state;
	char text[8192] = "email,role,groups\na@example.com,readonly, Sales ;|;support|SALES ; \n";
	app(text, sizeof(text), "b@example.com,readonly,\"");
	for (int i = 0; i < 51; i++) {
		char g[16];
		snprintf(g, sizeof(g), "%sG%d", i ? ";" : "", i);
		app(text, sizeof(text), g);
	}
	app(text, sizeof(text), "\"\nc@example.com,readonly,");
	for (int i = 0; i < 257; i++)
		app(text, sizeof(text), "g");
	app(text, sizeof(text), "\n");
	idb_import_file *f = parse_ok(text);
	assert_int_equal(f->rows[0].ngroups, 2);
	assert_string_equal(f->rows[0].groups[0], "Sales");
	assert_string_equal(f->rows[0].groups[1], "support");
	assert_int_equal(f->rows[0].action, IDB_IMPORT_ADD);
	assert_string_equal(f->rows[1].message, "Too many groups (at most 50)");
	assert_string_equal(f->rows[2].message, "Invalid group name (at most 256 characters)");
	idb_import_file_free(f);
}

static void test_csv_import_header_any_order_case_and_optional_columns(void **state)
{
	(void)state;
	idb_import_file *f = parse_ok(" Role ,GROUPS,EMAIL , Name,error\nadmin,Ops,x@example.com,X,Old problem\n");
	assert_int_equal(f->nrows, 1);
	assert_string_equal(f->rows[0].email, "x@example.com");
	assert_int_equal(f->rows[0].role, IDB_ROLE_ADMIN);
	assert_string_equal(f->rows[0].name, "X");
	assert_string_equal(f->rows[0].groups[0], "Ops");
	assert_int_equal(f->rows[0].action, IDB_IMPORT_ADD);
	idb_import_file_free(f);

	f = parse_ok("email,role,,\ny@example.com,train\n");
	assert_string_equal(f->rows[0].name, "");
	assert_string_equal(f->rows[0].cell[IDB_IMPORT_COL_GROUPS], "");
	idb_import_file_free(f);
}

static void test_csv_import_refuses_bad_headers(void **state)
{
	(void)state;
	assert_non_null(strstr(REFUSED("email,name,role,phone\na@example.com,A,admin,1\n"), "Unknown column \"phone\""));
	assert_non_null(strstr(REFUSED("email,name,groups\na@example.com,A,\n"), "no \"role\" column"));
	assert_non_null(strstr(REFUSED("name,role\nA,admin\n"), "no \"email\" column"));
	assert_non_null(strstr(REFUSED("email,role,Email\na@example.com,admin,b@example.com\n"),
			       "Column \"email\" appears twice"));
	assert_non_null(strstr(REFUSED("email,,role\na@example.com,,admin\n"), "Column 2 of the header"));
	/* no header at all: the first row is taken for one */
	assert_non_null(strstr(REFUSED("a@example.com,A,admin,\n"), "Unknown column \"a@example.com\""));
	assert_non_null(strstr(REFUSED("\n\nemail,name,role,fax\n"), "line 3"));
}

static void test_csv_import_refuses_empty_files(void **state)
{
	(void)state;
	assert_non_null(strstr(refused("", 0), "empty"));
	assert_non_null(strstr(REFUSED("\xEF\xBB\xBF"), "empty"));
	assert_non_null(strstr(REFUSED("\r\n\r\n  \n"), "empty"));
	assert_non_null(strstr(REFUSED(",,,\n,,\n"), "empty"));
	assert_non_null(strstr(REFUSED("email,name,role,groups\r\n\r\n"), "no users"));
}

static void test_csv_import_refuses_binary_and_non_utf8(void **state)
{
	(void)state;
	static const char nul[] = "email,role\na@example.com,admin\nb\0@example.com,admin\n";
	assert_non_null(strstr(refused(nul, sizeof(nul) - 1), "NUL byte on line 3"));
	static const char png[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
	assert_non_null(strstr(refused(png, sizeof(png) - 1), "not valid UTF-8"));
	assert_non_null(strstr(REFUSED("email,role\nb@example.com,admin\x01\n"), "control character 0x01 on line 2"));
	/* Latin-1 "é", an overlong '/', a surrogate, beyond U+10FFFF, truncated */
	assert_non_null(strstr(REFUSED("email,name,role\na@example.com,Ren\xE9,admin\n"), "not valid UTF-8 text (line 2)"));
	REFUSED("email,role\n\xC0\xAF\n");
	REFUSED("email,role\n\xED\xA0\x80\n");
	REFUSED("email,role\n\xF4\x90\x80\x80\n");
	REFUSED("email,role\na,\xE2\x82");
	assert_non_null(strstr(refused("\xFF\xFE""e\0m\0", 6), "UTF-16"));
}

static void test_csv_import_refuses_malformed_quoting(void **state)
{
	(void)state;
	assert_non_null(strstr(REFUSED("email,name,role\na@example.com,Dwayne \"Rock\" J,admin\n"), "Line 2 is not valid CSV"));
	assert_non_null(strstr(REFUSED("email,name,role\n\na@example.com,\"Ann\"x,admin\n"), "Line 3 is not valid CSV"));
	assert_non_null(strstr(REFUSED("email,name,role\na@example.com,A,admin\nb@example.com,\"open\nrest,admin\n"),
			       "starts on line 3 has a quoted field that is never closed"));
}

static char *rows_file(int n)
{
	size_t cap = 64 + (size_t)n * 48;
	char *s = malloc(cap);
	assert_non_null(s);
	size_t o = (size_t)snprintf(s, cap, "email,name,role,groups\n");
	for (int i = 0; i < n; i++)
		o += (size_t)snprintf(s + o, cap - o, "user%04d@example.com,User %d,readonly,\n", i, i);
	return s;
}

static void test_csv_import_accepts_1000_rows_and_refuses_1001(void **state)
{
	(void)state;
	char *s = rows_file(1000);
	idb_import_file *f = parse_ok(s);
	assert_int_equal(f->nrows, 1000);
	assert_int_equal(f->nadd, 1000);
	assert_int_equal(f->rows[999].line, 1001);
	idb_import_file_free(f);
	free(s);
	s = rows_file(1001);
	assert_non_null(strstr(REFUSED(s), "more than 1000 users"));
	free(s);
	/* blank lines do not count as rows */
	s = rows_file(1000);
	size_t n = strlen(s);
	char *t = realloc(s, n + 40);
	assert_non_null(t);
	memcpy(t + n, "\n\n,,,\n\r\n", 9);
	f = parse_ok(t);
	assert_int_equal(f->nrows, 1000);
	idb_import_file_free(f);
	free(t);
}

static void test_csv_import_keeps_cells_and_undoes_neutralisation(void **state)
{
	(void)state;
	idb_import_file *f = parse_ok("email,name,role,groups\n"
				      "'=cmd@example.com,'-Minus,'+x,'@g\n"
				      "a@example.com, 'Quoted,readonly,\n");
	assert_string_equal(f->rows[0].cell[IDB_IMPORT_COL_EMAIL], "=cmd@example.com");
	assert_string_equal(f->rows[0].cell[IDB_IMPORT_COL_NAME], "-Minus");
	assert_string_equal(f->rows[0].cell[IDB_IMPORT_COL_ROLE], "+x");
	assert_string_equal(f->rows[0].cell[IDB_IMPORT_COL_GROUPS], "@g");
	/* an apostrophe before anything else is data */
	assert_string_equal(f->rows[1].name, "'Quoted");
	idb_import_file_free(f);
}

static void test_csv_import_row_verdicts_keep_counts(void **state)
{
	(void)state;
	idb_import_file *f = parse_ok("email,role\na@example.com,admin\nb@example.com,admin\n");
	idb_import_row_error(f, &f->rows[0], "Group not found: Sales");
	idb_import_row_error(f, &f->rows[0], "Group not found: Ops");
	assert_string_equal(f->rows[0].message, "Group not found: Sales; Group not found: Ops");
	idb_import_row_skip(f, &f->rows[1], "Duplicate email");
	idb_import_row_error(f, &f->rows[1], "Group not found: X"); /* ignored for a skip */
	assert_string_equal(f->rows[1].message, "Duplicate email");
	assert_int_equal(f->nadd, 0);
	assert_int_equal(f->nerror, 1);
	assert_int_equal(f->nskip, 1);
	/* messages are bounded and cut with "..." */
	char big[400];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	idb_import_row_error(f, &f->rows[0], big);
	idb_import_row_error(f, &f->rows[0], big);
	idb_import_row_error(f, &f->rows[0], "more");
	size_t n = strlen(f->rows[0].message);
	assert_true(n < IDB_IMPORT_MSG_MAX);
	assert_string_equal(f->rows[0].message + n - 3, "...");
	idb_import_file_free(f);
	idb_import_file_free(NULL);
}

static void test_csv_out_quotes_and_neutralises_formulas(void **state)
{
	(void)state;
	idb_csv_out o = {0};
	const char *hdr[] = {"email", "error"};
	assert_int_equal(idb_csv_out_record(&o, hdr, 2, false, NULL), 0);
	const char *cells[] = {"=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tTab", "\rCR", "plain, \"q\"",
			       "multi\nline", "", "a=b", NULL};
	assert_int_equal(idb_csv_out_record(&o, cells, 11, true, NULL), 0);
	assert_string_equal(o.data, "\"email\",\"error\"\r\n"
				    "\"'=HYPERLINK(\"\"http://x\"\")\",\"'+1\",\"'-2\",\"'@SUM(A1)\",\"'\tTab\",\"'\rCR\","
				    "\"plain, \"\"q\"\"\",\"multi\nline\",\"\",\"a=b\",\"\"\r\n");
	idb_csv_out_clear(&o);
	idb_csv_out_clear(&o);
	idb_csv_out_clear(NULL);
}

static void test_csv_out_round_trips_through_the_parser(void **state)
{
	(void)state;
	idb_csv_out o = {0};
	const char *hdr[] = {"email", "name", "role", "groups", "error"};
	const char *row[] = {"=evil@example.com", "-Dash, \"Q\"\nNext", "readonly", "@Ops;Sales", "Invalid email format"};
	assert_int_equal(idb_csv_out_record(&o, hdr, 5, false, NULL), 0);
	assert_int_equal(idb_csv_out_record(&o, row, 5, true, NULL), 0);
	idb_import_file *f = parse_ok(o.data);
	assert_int_equal(f->nrows, 1);
	for (int c = 0; c < IDB_IMPORT_NCOLS; c++)
		assert_string_equal(f->rows[0].cell[c], row[c]);
	idb_import_file_free(f);
	idb_csv_out_clear(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_csv_import_reads_the_template),
		cmocka_unit_test(test_csv_import_handles_bom_crlf_and_trailing_empty_lines),
		cmocka_unit_test(test_csv_import_quoted_separators_quotes_and_newlines),
		cmocka_unit_test(test_csv_import_line_of_a_record_after_quoted_newlines_in_first_field),
		cmocka_unit_test(test_csv_import_unicode_names),
		cmocka_unit_test(test_csv_import_row_error_messages),
		cmocka_unit_test(test_csv_import_duplicate_email_skips_the_second_occurrence),
		cmocka_unit_test(test_csv_import_groups_split_trim_dedupe_and_limits),
		cmocka_unit_test(test_csv_import_header_any_order_case_and_optional_columns),
		cmocka_unit_test(test_csv_import_refuses_bad_headers),
		cmocka_unit_test(test_csv_import_refuses_empty_files),
		cmocka_unit_test(test_csv_import_refuses_binary_and_non_utf8),
		cmocka_unit_test(test_csv_import_refuses_malformed_quoting),
		cmocka_unit_test(test_csv_import_accepts_1000_rows_and_refuses_1001),
		cmocka_unit_test(test_csv_import_keeps_cells_and_undoes_neutralisation),
		cmocka_unit_test(test_csv_import_row_verdicts_keep_counts),
		cmocka_unit_test(test_csv_out_quotes_and_neutralises_formulas),
		cmocka_unit_test(test_csv_out_round_trips_through_the_parser),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
