/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The mapping engine: identity bounds (idb_identity_add) and identity ->
 * profile (idb_attrmap_apply). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "attrmap.h"
#include "err.h"

static void add(idb_identity *id, const char *name, const char *value)
{
	idb_err err;
	idb_err_clear(&err);
	int rc = idb_identity_add(id, name, value, &err);
	if (rc != 0)
		fail_msg("idb_identity_add(%s, %s): %d %s", name, value, rc, err.msg);
}

/* Compiles settings JSON into a map, failing the test when it is refused. */
static idb_attrmap *compile(const char *json)
{
	idb_attrmap *m = NULL;
	idb_err err;
	idb_err_clear(&err);
	int rc = idb_attrmap_compile(&m, json, &err);
	if (rc != 0)
		fail_msg("idb_attrmap_compile(%s): %d %s: %s", json ? json : "NULL", rc, err.field, err.msg);
	assert_non_null(m);
	return m;
}

static void test_identity_multi_valued_attribute_keeps_order(void **state)
{
	(void)state;
	idb_identity id = {0};
	add(&id, "memberOf", "b");
	add(&id, "mail", "x@example.com");
	add(&id, "memberOf", "a");
	add(&id, "memberOf", "c");
	assert_int_equal(id.nattrs, 2);
	const idb_attr *a = idb_identity_get(&id, "memberOf");
	assert_non_null(a);
	assert_int_equal(a->nvalues, 3);
	assert_string_equal(a->values[0], "b");
	assert_string_equal(a->values[1], "a");
	assert_string_equal(a->values[2], "c");
	assert_null(idb_identity_get(&id, "missing"));
	assert_null(idb_identity_get(&id, NULL));
	/* names are case-sensitive */
	assert_null(idb_identity_get(&id, "memberof"));
	idb_identity_clear(&id);
	assert_int_equal(id.nattrs, 0);
	assert_null(id.attrs);
}

static void test_identity_refuses_value_2001(void **state)
{
	(void)state;
	idb_identity id = {0};
	idb_err err;
	char v[16];
	for (int i = 0; i < IDB_ATTR_MAX_VALUES; i++) {
		snprintf(v, sizeof(v), "g%d", i);
		assert_int_equal(idb_identity_add(&id, "memberOf", v, &err), 0);
	}
	idb_err_clear(&err);
	assert_int_equal(idb_identity_add(&id, "memberOf", "one-too-many", &err), IDB_ETOOBIG);
	assert_int_equal(err.code, IDB_ETOOBIG);
	assert_string_equal(err.field, "memberOf");
	const idb_attr *a = idb_identity_get(&id, "memberOf");
	assert_int_equal(a->nvalues, IDB_ATTR_MAX_VALUES);
	assert_string_equal(a->values[IDB_ATTR_MAX_VALUES - 1], "g1999");
	/* another attribute still has room */
	assert_int_equal(idb_identity_add(&id, "mail", "x@example.com", &err), 0);
	idb_identity_clear(&id);
}

static void test_identity_refuses_attribute_257(void **state)
{
	(void)state;
	idb_identity id = {0};
	idb_err err;
	char n[16];
	for (int i = 0; i < IDB_ATTR_MAX_ATTRS; i++) {
		snprintf(n, sizeof(n), "attr%d", i);
		assert_int_equal(idb_identity_add(&id, n, "v", &err), 0);
	}
	idb_err_clear(&err);
	assert_int_equal(idb_identity_add(&id, "attr256", "v", &err), IDB_ETOOBIG);
	assert_int_equal(err.code, IDB_ETOOBIG);
	assert_int_equal(id.nattrs, IDB_ATTR_MAX_ATTRS);
	/* an existing attribute can still take values */
	assert_int_equal(idb_identity_add(&id, "attr0", "w", &err), 0);
	idb_identity_clear(&id);
}

static void test_identity_refuses_value_over_2048_bytes(void **state)
{
	(void)state;
	idb_identity id = {0};
	idb_err err;
	char *v = malloc(IDB_ATTR_MAX_VALUE_LEN + 2);
	assert_non_null(v);
	memset(v, 'x', IDB_ATTR_MAX_VALUE_LEN);
	v[IDB_ATTR_MAX_VALUE_LEN] = '\0';
	int at_limit = idb_identity_add(&id, "displayName", v, &err);
	v[IDB_ATTR_MAX_VALUE_LEN] = 'x';
	v[IDB_ATTR_MAX_VALUE_LEN + 1] = '\0';
	idb_err_clear(&err);
	int over = idb_identity_add(&id, "displayName", v, &err);
	free(v);
	assert_int_equal(at_limit, 0);
	assert_int_equal(over, IDB_ETOOBIG);
	assert_string_equal(err.field, "displayName");
	assert_int_equal(idb_identity_get(&id, "displayName")->nvalues, 1);
	idb_identity_clear(&id);
}

static void test_identity_clear_tolerates_null_and_empty(void **state)
{
	(void)state;
	idb_identity id = {0};
	idb_identity_clear(&id);
	idb_identity_clear(NULL);
	idb_profile p = {0};
	idb_profile_clear(&p);
	idb_profile_clear(NULL);
	idb_attrmap_free(NULL);
}

static void test_attrmap_default_names(void **state)
{
	(void)state;
	idb_identity id = {0};
	add(&id, "email", "  Alice.Smith@Example.COM \n");
	add(&id, "displayName", " Alice Smith ");
	add(&id, "memberOf", "Engineering");
	add(&id, "memberOf", "");
	add(&id, "memberOf", "Sales");
	add(&id, "memberOf", " Engineering ");
	add(&id, "memberOf", "   ");
	idb_attrmap *map = compile("{}");
	idb_profile p;
	idb_err err;
	idb_err_clear(&err);
	int rc = idb_attrmap_apply(map, &id, &p, &err);
	idb_attrmap_free(map);
	if (rc != 0)
		fail_msg("apply: %s", err.msg);
	assert_string_equal(p.email, "alice.smith@example.com");
	assert_string_equal(p.display_name, "Alice Smith");
	/* duplicates (after trimming) and empty values dropped, order kept */
	assert_int_equal(p.ngroups, 2);
	assert_string_equal(p.groups[0], "Engineering");
	assert_string_equal(p.groups[1], "Sales");
	idb_profile_clear(&p);
	assert_null(p.email);
	idb_identity_clear(&id);
}

static void test_attrmap_missing_name_and_groups_give_empty(void **state)
{
	(void)state;
	idb_identity id = {0};
	add(&id, "email", "bob@example.com");
	idb_attrmap *map = compile(NULL);
	idb_profile p;
	idb_err err;
	assert_int_equal(idb_attrmap_apply(map, &id, &p, &err), 0);
	idb_attrmap_free(map);
	assert_string_equal(p.email, "bob@example.com");
	assert_string_equal(p.display_name, "");
	assert_int_equal(p.ngroups, 0);
	idb_profile_clear(&p);
	idb_identity_clear(&id);
}

static void test_attrmap_custom_attribute_names(void **state)
{
	(void)state;
	idb_identity id = {0};
	add(&id, "email", "wrong@example.com");
	add(&id, "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress", "Carol@Example.org");
	add(&id, "cn", "Carol");
	add(&id, "groups", "admins");
	add(&id, "memberOf", "ignored");
	idb_attrmap *map = compile("{\"email_attribute\": "
				   "\"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress\","
				   " \"name_attribute\": \"cn\", \"group_attribute\": \"groups\","
				   " \"some_other_layer_key\": 1}");
	idb_profile p;
	idb_err err;
	assert_int_equal(idb_attrmap_apply(map, &id, &p, &err), 0);
	idb_attrmap_free(map);
	assert_string_equal(p.email, "carol@example.org");
	assert_string_equal(p.display_name, "Carol");
	assert_int_equal(p.ngroups, 1);
	assert_string_equal(p.groups[0], "admins");
	idb_profile_clear(&p);
	idb_identity_clear(&id);
}

static void expect_email_invalid(const idb_attrmap *map, const idb_identity *id)
{
	idb_profile p;
	idb_err err;
	idb_err_clear(&err);
	int rc = idb_attrmap_apply(map, id, &p, &err);
	/* out is released with idb_profile_clear, also on failure */
	bool had_email = p.email != NULL;
	idb_profile_clear(&p);
	assert_int_equal(rc, IDB_EINVAL);
	assert_int_equal(err.code, IDB_EINVAL);
	assert_string_equal(err.field, "email");
	assert_false(had_email);
}

static void test_attrmap_missing_email_is_invalid(void **state)
{
	(void)state;
	idb_identity id = {0};
	add(&id, "displayName", "No Mail");
	idb_attrmap *map = compile("{}");
	expect_email_invalid(map, &id);
	idb_attrmap_free(map);
	idb_identity_clear(&id);
}

static void test_attrmap_two_email_values_is_invalid(void **state)
{
	(void)state;
	idb_identity id = {0};
	add(&id, "email", "a@example.com");
	add(&id, "email", "b@example.com");
	idb_attrmap *map = compile("{}");
	expect_email_invalid(map, &id);
	idb_attrmap_free(map);
	idb_identity_clear(&id);
}

static void test_attrmap_malformed_email_is_invalid(void **state)
{
	(void)state;
	static const char *const bad[] = {"not-an-email", "a@b", "   ", "", "a b@example.com", "<a>@example.com"};
	idb_attrmap *map = compile("{}");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		idb_identity id = {0};
		add(&id, "email", bad[i]);
		expect_email_invalid(map, &id);
		idb_identity_clear(&id);
	}
	idb_attrmap_free(map);
}

static void test_attrmap_email_from_subject_with_email_format(void **state)
{
	(void)state;
	idb_identity id = {0};
	id.subject = strdup(" Dave@Example.com");
	id.subject_format = strdup("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress");
	assert_non_null(id.subject);
	assert_non_null(id.subject_format);
	add(&id, "displayName", "Dave");
	idb_attrmap *map = compile("{\"email_from_subject\": true}");
	idb_profile p;
	idb_err err;
	assert_int_equal(idb_attrmap_apply(map, &id, &p, &err), 0);
	idb_attrmap_free(map);
	assert_string_equal(p.email, "dave@example.com");
	assert_string_equal(p.display_name, "Dave");
	idb_profile_clear(&p);
	idb_identity_clear(&id);
}

static void test_attrmap_email_attribute_wins_over_subject(void **state)
{
	(void)state;
	idb_identity id = {0};
	id.subject = strdup("subject@example.com");
	id.subject_format = strdup("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress");
	add(&id, "email", "attr@example.com");
	idb_attrmap *map = compile("{\"email_from_subject\": true}");
	idb_profile p;
	idb_err err;
	assert_int_equal(idb_attrmap_apply(map, &id, &p, &err), 0);
	idb_attrmap_free(map);
	assert_string_equal(p.email, "attr@example.com");
	idb_profile_clear(&p);
	idb_identity_clear(&id);
}

static void test_attrmap_subject_not_used_without_flag_or_format(void **state)
{
	(void)state;
	idb_identity id = {0};
	id.subject = strdup("eve@example.com");
	id.subject_format = strdup("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent");
	idb_attrmap *with_flag = compile("{\"email_from_subject\": true}");
	expect_email_invalid(with_flag, &id);
	idb_attrmap_free(with_flag);
	free(id.subject_format);
	id.subject_format = strdup("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress");
	idb_attrmap *without_flag = compile("{\"email_from_subject\": false}");
	expect_email_invalid(without_flag, &id);
	idb_attrmap_free(without_flag);
	idb_identity_clear(&id);
}

static void test_attrmap_default_role_is_readonly(void **state)
{
	(void)state;
	idb_identity id = {0};
	add(&id, "email", "role@example.com");
	idb_attrmap *map = compile("{}");
	idb_profile p;
	idb_err err;
	assert_int_equal(idb_attrmap_apply(map, &id, &p, &err), 0);
	idb_attrmap_free(map);
	assert_int_equal(p.role, 0); /* IDB_ROLE_READONLY */
	assert_false(p.role_from_rule);
	idb_profile_clear(&p);
	idb_identity_clear(&id);
}

static void test_attrmap_configured_default_role(void **state)
{
	(void)state;
	idb_identity id = {0};
	add(&id, "email", "role@example.com");
	idb_attrmap *map = compile("{\"default_role\": \"configure\", \"max_role\": \"configure\"}");
	idb_profile p;
	idb_err err;
	assert_int_equal(idb_attrmap_apply(map, &id, &p, &err), 0);
	idb_attrmap_free(map);
	assert_int_equal(p.role, 2); /* IDB_ROLE_CONFIGURE */
	assert_false(p.role_from_rule);
	idb_profile_clear(&p);
	idb_identity_clear(&id);
}

static void expect_compile_invalid(const char *json, const char *field)
{
	idb_attrmap *m = (idb_attrmap *)0x1;
	idb_err err;
	idb_err_clear(&err);
	int rc = idb_attrmap_compile(&m, json, &err);
	if (rc == 0) {
		idb_attrmap_free(m);
		fail_msg("accepted settings %s", json);
	}
	assert_int_equal(rc, IDB_EINVAL);
	assert_null(m);
	assert_string_equal(err.field, field);
	assert_true(err.msg[0] != '\0');
}

static void test_attrmap_compile_refuses_bad_settings(void **state)
{
	(void)state;
	expect_compile_invalid("[1, 2]", "jit");
	expect_compile_invalid("{not json", "jit");
	expect_compile_invalid("\"email\"", "jit");
	expect_compile_invalid("{\"email_attribute\": 5}", "email_attribute");
	expect_compile_invalid("{\"email_attribute\": \"\"}", "email_attribute");
	expect_compile_invalid("{\"name_attribute\": null}", "name_attribute");
	/* A list of source attributes is valid (first present wins); a list
	 * holding a non-string is not. */
	expect_compile_invalid("{\"group_attribute\": [5]}", "group_attribute[0]");
	expect_compile_invalid("{\"default_role\": \"Admin\"}", "default_role");
	expect_compile_invalid("{\"default_role\": 3}", "default_role");
	expect_compile_invalid("{\"max_role\": \"root\"}", "max_role");
	expect_compile_invalid("{\"default_role\": \"admin\", \"max_role\": \"train\"}", "default_role");
}

static void test_attrmap_compile_refuses_overlong_attribute_name(void **state)
{
	(void)state;
	char json[700];
	int n = snprintf(json, sizeof(json), "{\"email_attribute\": \"");
	memset(json + n, 'a', 513);
	snprintf(json + n + 513, sizeof(json) - (size_t)n - 513, "\"}");
	expect_compile_invalid(json, "email_attribute");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity_multi_valued_attribute_keeps_order),
		cmocka_unit_test(test_identity_refuses_value_2001),
		cmocka_unit_test(test_identity_refuses_attribute_257),
		cmocka_unit_test(test_identity_refuses_value_over_2048_bytes),
		cmocka_unit_test(test_identity_clear_tolerates_null_and_empty),
		cmocka_unit_test(test_attrmap_default_names),
		cmocka_unit_test(test_attrmap_missing_name_and_groups_give_empty),
		cmocka_unit_test(test_attrmap_custom_attribute_names),
		cmocka_unit_test(test_attrmap_missing_email_is_invalid),
		cmocka_unit_test(test_attrmap_two_email_values_is_invalid),
		cmocka_unit_test(test_attrmap_malformed_email_is_invalid),
		cmocka_unit_test(test_attrmap_email_from_subject_with_email_format),
		cmocka_unit_test(test_attrmap_email_attribute_wins_over_subject),
		cmocka_unit_test(test_attrmap_subject_not_used_without_flag_or_format),
		cmocka_unit_test(test_attrmap_default_role_is_readonly),
		cmocka_unit_test(test_attrmap_configured_default_role),
		cmocka_unit_test(test_attrmap_compile_refuses_bad_settings),
		cmocka_unit_test(test_attrmap_compile_refuses_overlong_attribute_name),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
