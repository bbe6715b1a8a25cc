/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Roles and permissions (roles.c) and the principal's cache JSON form
 * (idb_principal_to_json / idb_principal_from_json). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "principal.h"
#include "roles.h"

static void test_role_names_in_order(void **state)
{
	(void)state;
	assert_string_equal(idb_role_name(IDB_ROLE_READONLY), "readonly");
	assert_string_equal(idb_role_name(IDB_ROLE_TRAIN), "train");
	assert_string_equal(idb_role_name(IDB_ROLE_CONFIGURE), "configure");
	assert_string_equal(idb_role_name(IDB_ROLE_ADMIN), "admin");
	assert_int_equal(IDB_ROLE_COUNT, 4);
	assert_null(idb_role_name(-1));
	assert_null(idb_role_name(IDB_ROLE_COUNT));
}

static void test_role_parse_round_trips(void **state)
{
	(void)state;
	for (int r = 0; r < IDB_ROLE_COUNT; r++)
		assert_int_equal(idb_role_parse(idb_role_name(r)), r);
}

static void test_role_parse_is_exact_lowercase(void **state)
{
	(void)state;
	assert_int_equal(idb_role_parse("Admin"), -1);
	assert_int_equal(idb_role_parse("ADMIN"), -1);
	assert_int_equal(idb_role_parse("admin "), -1);
	assert_int_equal(idb_role_parse("adm"), -1);
	assert_int_equal(idb_role_parse("administrator"), -1);
	assert_int_equal(idb_role_parse(""), -1);
	assert_int_equal(idb_role_parse(NULL), -1);
}

static void test_role_perms_grow_with_role(void **state)
{
	(void)state;
	uint32_t ro = idb_role_perms(IDB_ROLE_READONLY), tr = idb_role_perms(IDB_ROLE_TRAIN),
		 co = idb_role_perms(IDB_ROLE_CONFIGURE), ad = idb_role_perms(IDB_ROLE_ADMIN);
	/* each role has everything the one below has, and more */
	assert_true((ro & tr) == ro && tr != ro);
	assert_true((tr & co) == tr && co != tr);
	assert_true((co & ad) == co && ad != co);
	assert_true(ro & IDB_PERM_AGENTS_USE);
	assert_true(ro & IDB_PERM_ANALYTICS_VIEW_SELF);
}

static void test_role_readonly_lacks_agents_train(void **state)
{
	(void)state;
	assert_false(idb_role_perms(IDB_ROLE_READONLY) & IDB_PERM_AGENTS_TRAIN);
	assert_true(idb_role_perms(IDB_ROLE_TRAIN) & IDB_PERM_AGENTS_TRAIN);
}

static void test_role_configure_lacks_users_manage(void **state)
{
	(void)state;
	uint32_t co = idb_role_perms(IDB_ROLE_CONFIGURE);
	assert_false(co & IDB_PERM_USERS_MANAGE);
	assert_false(co & IDB_PERM_GROUPS_MANAGE);
	assert_false(co & IDB_PERM_SSO_MANAGE);
	assert_false(co & IDB_PERM_AUDIT_VIEW);
	assert_true(co & IDB_PERM_AGENTS_CONFIGURE);
}

static void test_role_admin_has_users_manage(void **state)
{
	(void)state;
	uint32_t ad = idb_role_perms(IDB_ROLE_ADMIN);
	assert_true(ad & IDB_PERM_USERS_MANAGE);
	/* admin holds every permission */
	assert_int_equal(ad, (1u << IDB_PERM_COUNT) - 1);
}

static void test_perm_name_parse_round_trip_all_10(void **state)
{
	(void)state;
	static const char *const names[IDB_PERM_COUNT] = {
		"agents.use",	      "agents.train",  "agents.configure", "agents.create", "analytics.view_self",
		"analytics.view_all", "users.manage", "groups.manage",    "sso.manage",    "audit.view"};
	assert_int_equal(IDB_PERM_COUNT, 10);
	for (int i = 0; i < IDB_PERM_COUNT; i++) {
		assert_string_equal(idb_perm_name(i), names[i]);
		assert_int_equal(idb_perm_parse(names[i]), 1u << i);
		assert_int_equal(idb_perm_parse(idb_perm_name(i)), 1u << i);
	}
	assert_int_equal(idb_perm_parse("users.manage"), IDB_PERM_USERS_MANAGE);
	assert_int_equal(idb_perm_parse("audit.view"), IDB_PERM_AUDIT_VIEW);
	assert_null(idb_perm_name(-1));
	assert_null(idb_perm_name(IDB_PERM_COUNT));
	assert_int_equal(idb_perm_parse("Users.Manage"), 0);
	assert_int_equal(idb_perm_parse("users"), 0);
	assert_int_equal(idb_perm_parse(""), 0);
	assert_int_equal(idb_perm_parse(NULL), 0);
}

/* --- principal cache JSON --- */

static void fill(idb_principal *p)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->user_id, sizeof(p->user_id), "6f1c1b9e-3a44-4d6f-9a0e-2f5d8c7b1a01");
	snprintf(p->org_id, sizeof(p->org_id), "0b7e2c1d-9f3a-4e5b-8c6d-7a1e2f3b4c5d");
	snprintf(p->org_slug, sizeof(p->org_slug), "acme");
	snprintf(p->org_name, sizeof(p->org_name), "Acme \"Rockets\" & Co. \xc3\xa9");
	snprintf(p->email, sizeof(p->email), "wile.e@acme.example");
	snprintf(p->name, sizeof(p->name), "Wile E. Coyote\\");
	p->role = IDB_ROLE_CONFIGURE;
	snprintf(p->status, sizeof(p->status), "active");
	p->locked = true;
	p->perms = idb_role_perms(IDB_ROLE_CONFIGURE) | IDB_PERM_AUDIT_VIEW;
	p->groups = strdup("Engineering, Sales");
	p->has_password = true;
}

static void test_principal_json_round_trip(void **state)
{
	(void)state;
	idb_principal a, b;
	fill(&a);
	assert_non_null(a.groups);
	char *json = idb_principal_to_json(&a);
	assert_non_null(json);
	bool ok = idb_principal_from_json(json, &b);
	free(json);
	assert_true(ok);
	assert_string_equal(b.user_id, a.user_id);
	assert_string_equal(b.org_id, a.org_id);
	assert_string_equal(b.org_slug, a.org_slug);
	assert_string_equal(b.org_name, a.org_name);
	assert_string_equal(b.email, a.email);
	assert_string_equal(b.name, a.name);
	assert_int_equal(b.role, a.role);
	assert_string_equal(b.status, a.status);
	assert_int_equal(b.locked, a.locked);
	assert_int_equal(b.perms, a.perms);
	assert_non_null(b.groups);
	assert_string_equal(b.groups, a.groups);
	assert_int_equal(b.has_password, a.has_password);
	idb_principal_clear(&a);
	idb_principal_clear(&b);
	assert_null(b.groups);
}

static void test_principal_json_round_trip_false_flags_and_no_groups(void **state)
{
	(void)state;
	idb_principal a, b;
	fill(&a);
	free(a.groups);
	a.groups = NULL; /* serialised as "" */
	a.locked = false;
	a.has_password = false;
	a.role = IDB_ROLE_READONLY;
	a.perms = 0;
	char *json = idb_principal_to_json(&a);
	assert_non_null(json);
	bool ok = idb_principal_from_json(json, &b);
	free(json);
	assert_true(ok);
	assert_false(b.locked);
	assert_false(b.has_password);
	assert_int_equal(b.role, IDB_ROLE_READONLY);
	assert_int_equal(b.perms, 0);
	assert_string_equal(b.groups, "");
	idb_principal_clear(&b);
}

/* Serialises a filled principal, replaces the value of key with repl. */
static char *json_with(const char *key, const char *repl)
{
	idb_principal a;
	fill(&a);
	char *json = idb_principal_to_json(&a);
	idb_principal_clear(&a);
	assert_non_null(json);
	char pat[32];
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	char *at = strstr(json, pat);
	assert_non_null(at);
	char *val = at + strlen(pat);
	/* the value ends at the next ',' or '}' outside a string */
	char *end = val;
	if (*end == '"') {
		for (end++; *end && *end != '"'; end++)
			if (*end == '\\')
				end++;
		end++;
	} else {
		end += strcspn(end, ",}");
	}
	size_t n = strlen(json) + strlen(repl) + 1;
	char *out = malloc(n);
	assert_non_null(out);
	snprintf(out, n, "%.*s%s%s", (int)(val - json), json, repl, end);
	free(json);
	return out;
}

static void expect_from_json_refused(const char *json)
{
	idb_principal b;
	memset(&b, 0xa5, sizeof(b));
	bool ok = idb_principal_from_json(json, &b);
	if (ok) {
		idb_principal_clear(&b);
		fail_msg("accepted %s", json);
	}
	/* a refused entry leaves nothing to free */
	assert_null(b.groups);
}

static void test_principal_from_json_rejects_garbage(void **state)
{
	(void)state;
	expect_from_json_refused("");
	expect_from_json_refused("not json");
	expect_from_json_refused("[]");
	expect_from_json_refused("{}");
	expect_from_json_refused("null");
	expect_from_json_refused("{\"v\":1}");
}

static void test_principal_from_json_rejects_wrong_version(void **state)
{
	(void)state;
	char *j = json_with("v", "2");
	expect_from_json_refused(j);
	free(j);
	j = json_with("v", "0");
	expect_from_json_refused(j);
	free(j);
	j = json_with("v", "\"1\"");
	expect_from_json_refused(j);
	free(j);
}

static void test_principal_from_json_rejects_role_out_of_range(void **state)
{
	(void)state;
	char *j = json_with("r", "4");
	expect_from_json_refused(j);
	free(j);
	j = json_with("r", "-1");
	expect_from_json_refused(j);
	free(j);
	j = json_with("r", "\"admin\"");
	expect_from_json_refused(j);
	free(j);
}

static void test_principal_from_json_rejects_wrong_field_types(void **state)
{
	(void)state;
	char *j = json_with("uid", "5");
	expect_from_json_refused(j);
	free(j);
	j = json_with("l", "\"yes\"");
	expect_from_json_refused(j);
	free(j);
	j = json_with("g", "null");
	expect_from_json_refused(j);
	free(j);
}

static void test_principal_json_with_helper_changes_only_one_field(void **state)
{
	(void)state;
	/* The helper above must keep the entry valid when the value is unchanged
	 * in kind, or the refusal tests would pass for the wrong reason. */
	char *j = json_with("r", "3");
	idb_principal b;
	bool ok = idb_principal_from_json(j, &b);
	free(j);
	assert_true(ok);
	assert_int_equal(b.role, IDB_ROLE_ADMIN);
	assert_string_equal(b.groups, "Engineering, Sales");
	idb_principal_clear(&b);
}

static void test_principal_clear_tolerates_null(void **state)
{
	(void)state;
	idb_principal p = {0};
	idb_principal_clear(&p);
	idb_principal_clear(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_role_names_in_order),
		cmocka_unit_test(test_role_parse_round_trips),
		cmocka_unit_test(test_role_parse_is_exact_lowercase),
		cmocka_unit_test(test_role_perms_grow_with_role),
		cmocka_unit_test(test_role_readonly_lacks_agents_train),
		cmocka_unit_test(test_role_configure_lacks_users_manage),
		cmocka_unit_test(test_role_admin_has_users_manage),
		cmocka_unit_test(test_perm_name_parse_round_trip_all_10),
		cmocka_unit_test(test_principal_json_round_trip),
		cmocka_unit_test(test_principal_json_round_trip_false_flags_and_no_groups),
		cmocka_unit_test(test_principal_from_json_rejects_garbage),
		cmocka_unit_test(test_principal_from_json_rejects_wrong_version),
		cmocka_unit_test(test_principal_from_json_rejects_role_out_of_range),
		cmocka_unit_test(test_principal_from_json_rejects_wrong_field_types),
		cmocka_unit_test(test_principal_json_with_helper_changes_only_one_field),
		cmocka_unit_test(test_principal_clear_tolerates_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
