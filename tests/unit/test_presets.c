/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The shipped IdP presets: every one loads and compiles, maps a realistic
 * assertion / claim set of that IdP, merges with connection overrides, and a
 * broken preset file is a start-up error naming the file and the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "attrmap.h"
#include "presets.h"

#define PRESETS_DIR IDB_SOURCE_DIR "/attribute-maps/presets"
#define EMAILFMT "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
#define MS "http://schemas.microsoft.com/"
#define XS "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"

static idb_presets *presets;

static int setup(void **state)
{
	(void)state;
	idb_err err;
	idb_err_clear(&err);
	if (idb_presets_load(&presets, PRESETS_DIR, &err) != 0) {
		fprintf(stderr, "presets: %s: %s\n", err.field, err.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	idb_presets_free(presets);
	presets = NULL;
	return 0;
}

static void test_presets_all_shipped_presets_load(void **state)
{
	(void)state;
	static const char *const want[] = {"adfs",      "auth0",    "entra-id", "generic-oidc", "generic-saml",
					   "google-workspace", "jumpcloud", "keycloak", "okta", "onelogin", "ping"};
	assert_int_equal(idb_presets_count(presets), sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_string_equal(idb_presets_name(presets, i), want[i]);
	assert_null(idb_presets_name(presets, 99));
	assert_string_equal(idb_presets_default_dir(), PRESETS_DIR);

	json_error_t je;
	json_t *list = json_loads(idb_presets_json(presets), 0, &je);
	assert_non_null(list);
	assert_true(json_is_null(json_object_get(list, "next_cursor")));
	json_t *items = json_object_get(list, "items");
	assert_int_equal(json_array_size(items), sizeof(want) / sizeof(want[0]));
	size_t i;
	json_t *it;
	json_array_foreach(items, i, it)
	{
		assert_string_equal(json_string_value(json_object_get(it, "name")), want[i]);
		assert_non_null(json_string_value(json_object_get(it, "title")));
		assert_non_null(json_string_value(json_object_get(it, "notes")));
		assert_true(strncmp(json_string_value(json_object_get(it, "source")), "https://", 8) == 0);
		const char *proto = json_string_value(json_object_get(it, "protocol"));
		assert_true(!strcmp(proto, "saml") || !strcmp(proto, "oidc") || !strcmp(proto, "any"));
		assert_true(json_is_object(json_object_get(it, "jit")));
	}
	json_decref(list);
}

/* ---------------------------------------------- realistic identity per IdP */

#define MAXKV 48
typedef struct pcase {
	const char *what;
	const char *preset;
	const char *overrides;
	const char *subject, *format;
	const char *kv[MAXKV];
	const char *email, *name, *groups;
	int role;
	bool from_rule, overage;
} pcase;

static const pcase pcases[] = {
	{"Entra ID SAML: claim URIs, object-id groups mapped, role capped", "entra-id",
	 "{\"group_mapping_only\": true, \"max_role\": \"configure\","
	 " \"group_mapping\": [{\"idp\": \"6a1f4b52-8c0d-4e7a-9b3f-2c1d5e6f7a80\", \"group\": \"engineering\"},"
	 "                     {\"idp\": \"0b7c3e21-44aa-4f19-8d2e-9a8b7c6d5e4f\", \"group\": \"admins\"}],"
	 " \"role_rules\": [{\"group\": \"admins\", \"role\": \"admin\"}]}",
	 "alice.smith@contoso.onmicrosoft.com", "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
	 {MS "identity/claims/tenantid", "72f988bf-86f1-41af-91ab-2d7cd011db47", MS "identity/claims/objectidentifier",
	  "d5c1a9e2-3b4f-4c6d-8e7f-9a0b1c2d3e4f", XS "emailaddress", "Alice.Smith@Contoso.com", XS "name",
	  "alice.smith@contoso.onmicrosoft.com", MS "identity/claims/displayname", "Alice Smith", XS "givenname",
	  "Alice", XS "surname", "Smith", MS "ws/2008/06/identity/claims/groups", "6a1f4b52-8c0d-4e7a-9b3f-2c1d5e6f7a80",
	  MS "ws/2008/06/identity/claims/groups", "0b7c3e21-44aa-4f19-8d2e-9a8b7c6d5e4f",
	  MS "ws/2008/06/identity/claims/groups", "f3e2d1c0-b9a8-4765-8432-10fedcba9876", NULL},
	 "alice.smith@contoso.com", "Alice Smith", "engineering|admins", 2, true, false},
	{"Entra ID SAML group overage: groups.link instead of groups", "entra-id", NULL, NULL, NULL,
	 {XS "emailaddress", "bob@contoso.com", XS "givenname", "Bob", XS "surname", "Jones", MS "claims/groups.link",
	  "https://graph.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/users/d5c1a9e2/getMemberObjects", NULL},
	 "bob@contoso.com", "Bob Jones", "", 0, false, true},
	{"Entra ID OIDC: preferred_username, name, overage via _claim_names", "entra-id", NULL, NULL, NULL,
	 {"preferred_username", "carol@contoso.com", "name", "Carol White", "oid", "aa11bb22", "_claim_names.groups",
	  "src1", "_claim_sources.src1.endpoint", "https://graph.microsoft.com/v1.0/users/aa11bb22/getMemberObjects",
	  NULL},
	 "carol@contoso.com", "Carol White", "", 0, false, true},
	{"AD FS: Group claim with DNs and DOMAIN\\name, Domain Users excluded", "adfs",
	 "{\"group_exclude\": [\"Domain Users\"]}", "ACME\\dmiller", "", 
	 {XS "emailaddress", "dan.miller@acme.com", XS "upn", "dmiller@acme.local", XS "name", "Dan Miller",
	  "http://schemas.xmlsoap.org/claims/Group", "CN=Sales\\, EMEA,OU=Groups,DC=acme,DC=com",
	  "http://schemas.xmlsoap.org/claims/Group", "CN=Domain Users,CN=Users,DC=acme,DC=com",
	  "http://schemas.xmlsoap.org/claims/Group", "ACME\\VPN Users", NULL},
	 "dan.miller@acme.com", "Dan Miller", "Sales, EMEA|VPN Users", 0},
	{"Okta SAML: attribute statements and a groups statement", "okta",
	 "{\"group_exclude\": [\"Everyone\"], \"role_rules\": [{\"group\": \"app-admins\", \"role\": \"admin\"}]}",
	 "olivia.park@acme.com", EMAILFMT,
	 {"email", "olivia.park@acme.com", "firstName", "Olivia", "lastName", "Park", "groups", "Everyone", "groups",
	  "app-admins", "groups", "app-users", NULL},
	 "olivia.park@acme.com", "Olivia Park", "app-admins|app-users", 3, true},
	{"Okta SAML without an email statement: the emailAddress NameID", "okta", NULL, "Olivia.Park@acme.com",
	 EMAILFMT, {"firstName", "Olivia", "lastName", "Park", NULL}, "olivia.park@acme.com", "Olivia Park", "", 0},
	{"Google Workspace: NameID email, custom firstName/lastName, groups", "google-workspace", NULL, "gina@acme.com",
	 EMAILFMT, {"firstName", "Gina", "lastName", "Lopez", "groups", "Engineering", "groups", "All Staff", NULL},
	 "gina@acme.com", "Gina Lopez", "Engineering|All Staff", 0},
	{"Keycloak OIDC: full group paths lose the leading slash", "keycloak",
	 "{\"role_rules\": [{\"group\": \"admins\", \"role\": \"configure\"}]}", "f:3c2b1a:kim", "",
	 {"email", "kim@acme.com", "email_verified", "true", "name", "Kim Lee", "given_name", "Kim", "family_name", "Lee",
	  "preferred_username", "kim", "groups", "/engineering/backend", "groups", "/admins", NULL},
	 "kim@acme.com", "Kim Lee", "engineering/backend|admins", 2, true},
	{"OneLogin: one semicolon-delimited MemberOf value", "onelogin", NULL, "omar@acme.com", EMAILFMT,
	 {"firstName", "Omar", "lastName", "Haddad", "groups", "Sales;Support;CN=VPN,OU=Groups,DC=acme,DC=com", NULL},
	 "omar@acme.com", "Omar Haddad", "Sales|Support|VPN", 0},
	{"JumpCloud: email, firstname/lastname, memberOf group names", "jumpcloud", NULL, "jane@acme.com", EMAILFMT,
	 {"email", "jane@acme.com", "firstname", "Jane", "lastname", "Doe", "memberOf", "Engineering", "memberOf",
	  "Designers", NULL},
	 "jane@acme.com", "Jane Doe", "Engineering|Designers", 0},
	{"PingFederate: LDAP memberOf DNs", "ping",
	 "{\"role_rules\": [{\"group\": \"re:^Admins$\", \"role\": \"admin\"}], \"max_role\": \"admin\"}", "pat", "",
	 {"email", "pat@acme.com", "given_name", "Pat", "family_name", "Quinn", "memberOf",
	  "CN=Admins,OU=Groups,DC=acme,DC=com", "memberOf", "CN=Staff,OU=Groups,DC=acme,DC=com", NULL},
	 "pat@acme.com", "Pat Quinn", "Admins|Staff", 3, true},
	{"PingOne: Group Names attribute", "ping", NULL, "pia@acme.com", EMAILFMT,
	 {"email", "pia@acme.com", "name", "Pia Berg", "groups", "Support", NULL}, "pia@acme.com", "Pia Berg", "Support",
	 0},
	{"Auth0 OIDC: namespaced custom claims", "auth0", "{\"role_rules\": [{\"group\": \"ops\", \"role\": \"train\"}]}",
	 "auth0|64f1c2", "",
	 {"email", "ana@acme.com", "name", "Ana Silva", "nickname", "ana", "https://acme.example/roles", "admin",
	  "https://acme.example/groups", "eng", "https://acme.example/groups", "ops", NULL},
	 "ana@acme.com", "Ana Silva", "eng|ops", 1, true},
	{"Auth0 SAML addon: default mappings", "auth0", NULL, "auth0|64f1c2", "",
	 {XS "emailaddress", "ana@acme.com", XS "name", "Ana Silva", "http://schemas.xmlsoap.org/claims/Group", "eng",
	  NULL},
	 "ana@acme.com", "Ana Silva", "eng", 0},
	{"generic SAML: urn:oid names and isMemberOf DNs", "generic-saml", NULL, "_9f8e7d", "",
	 {"urn:oid:0.9.2342.19200300.100.1.3", "Uma@Uni.example", "givenName", "Uma", "sn", "Rao",
	  "urn:oid:1.3.6.1.4.1.5923.1.5.1.1", "CN=staff,OU=Groups,DC=uni,DC=example", NULL},
	 "uma@uni.example", "Uma Rao", "staff", 0},
	{"generic OIDC: standard claims and a groups array", "generic-oidc", NULL, "248289761001", "",
	 {"email", "jdoe@example.com", "given_name", "Jane", "family_name", "Doe", "groups", "readers", NULL},
	 "jdoe@example.com", "Jane Doe", "readers", 0},
};

static void test_presets_map_realistic_identities(void **state)
{
	(void)state;
	bool covered[16] = {0};
	for (size_t i = 0; i < sizeof(pcases) / sizeof(pcases[0]); i++) {
		const pcase *c = &pcases[i];
		idb_attrmap *m = NULL;
		idb_err err;
		idb_err_clear(&err);
		if (idb_presets_compile(&m, presets, c->preset, c->overrides, &err) != 0)
			fail_msg("%s: compile: %s: %s", c->what, err.field, err.msg);
		idb_identity id;
		memset(&id, 0, sizeof(id));
		id.subject = c->subject ? strdup(c->subject) : NULL;
		id.subject_format = strdup(c->format ? c->format : "");
		for (size_t k = 0; c->kv[k]; k += 2)
			assert_int_equal(idb_identity_add(&id, c->kv[k], c->kv[k + 1], &err), 0);
		idb_profile p;
		if (idb_attrmap_apply(m, &id, &p, &err) != 0)
			fail_msg("%s: apply: %s: %s", c->what, err.field, err.msg);
		char g[1024] = "";
		size_t o = 0;
		for (size_t k = 0; k < p.ngroups; k++)
			o += (size_t)snprintf(g + o, sizeof(g) - o, "%s%s", k ? "|" : "", p.groups[k]);
		if (strcmp(p.email, c->email) || strcmp(p.display_name, c->name) || strcmp(g, c->groups) ||
		    p.role != c->role || p.role_from_rule != c->from_rule || p.groups_overage != c->overage)
			fail_msg("%s: got email=%s name=%s groups=%s role=%d from_rule=%d overage=%d", c->what, p.email,
				 p.display_name, g, p.role, p.role_from_rule, p.groups_overage);
		for (size_t k = 0; k < idb_presets_count(presets); k++)
			if (!strcmp(idb_presets_name(presets, k), c->preset))
				covered[k] = true;
		idb_profile_clear(&p);
		idb_identity_clear(&id);
		idb_attrmap_free(m);
	}
	for (size_t k = 0; k < idb_presets_count(presets); k++)
		if (!covered[k])
			fail_msg("preset %s has no realistic identity test", idb_presets_name(presets, k));
}

/* ------------------------------------------------------------------ merge */

static void test_presets_merge_overrides_replace_and_null_removes(void **state)
{
	(void)state;
	char *out = NULL;
	idb_err err;
	assert_int_equal(idb_presets_merge(presets, "okta", "{\"group_attribute\": \"memberOf\", \"name_template\": null,"
							   " \"sync_groups\": true}", &out, &err), 0);
	json_error_t je;
	json_t *j = json_loads(out, 0, &je);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "group_attribute")), "memberOf");
	assert_null(json_object_get(j, "name_template"));
	assert_true(json_is_true(json_object_get(j, "sync_groups")));
	assert_true(json_is_true(json_object_get(j, "email_from_subject"))); /* kept from the preset */
	json_decref(j);
	free(out);

	assert_int_equal(idb_presets_merge(presets, NULL, "{\"max_role\": \"train\"}", &out, &err), 0);
	assert_string_equal(out, "{\"max_role\":\"train\"}");
	free(out);

	assert_int_equal(idb_presets_merge(presets, "no-such-idp", NULL, &out, &err), IDB_EINVAL);
	assert_string_equal(err.field, "preset");
	assert_null(out);
	assert_int_equal(idb_presets_merge(presets, "okta", "[1]", &out, &err), IDB_EINVAL);
	assert_string_equal(err.field, "jit");

	/* an override's compile error names the overridden key */
	idb_attrmap *m = NULL;
	assert_int_equal(idb_presets_compile(&m, presets, "entra-id", "{\"role_rules\": [{\"group\": \"re:(\", \"role\": "
								      "\"admin\"}]}", &err), IDB_EINVAL);
	assert_string_equal(err.field, "role_rules[0].group");
	assert_null(m);
	idb_presets_free(NULL);
}

/* ----------------------------------------------------------- broken files */

typedef struct bcase {
	const char *file;
	const char *text;
	int rc;
	const char *field;   /* may be NULL */
	const char *in_msg;  /* substring of the message */
} bcase;


static const bcase bcases[] = {
	{"bad-regex.yaml",
	 "name: bad-regex\ntitle: T\nprotocol: saml\nsource: https://example.com/doc\nnotes: n\njit:\n  role_rules:\n"
	 "    - {group: admins, role: admin}\n    - {group: 're:(oops', role: admin}\n",
	 IDB_EINVAL, "jit.role_rules[1].group", "bad-regex.yaml"},
	{"bad-role.yaml",
	 "name: bad-role\ntitle: T\nprotocol: saml\nsource: https://example.com/doc\nnotes: n\njit:\n  max_role: root\n",
	 IDB_EINVAL, "jit.max_role", "bad-role.yaml"},
	{"unknown-key.yaml",
	 "name: unknown-key\ntitle: T\nprotocol: saml\nsource: https://example.com/doc\nnotes: n\ncolour: red\njit: {}\n",
	 IDB_EINVAL, "colour", "unknown-key.yaml"},
	{"jit-key.yaml",
	 "name: jit-key\ntitle: T\nprotocol: saml\nsource: https://example.com/doc\nnotes: n\njit: {sync_group: true}\n",
	 IDB_EINVAL, "jit.sync_group", "jit-key.yaml"},
	{"wrong-name.yaml",
	 "name: other\ntitle: T\nprotocol: saml\nsource: https://example.com/doc\nnotes: n\njit: {}\n", IDB_EINVAL,
	 "name", "wrong-name.yaml"},
	{"no-source.yaml", "name: no-source\ntitle: T\nprotocol: saml\nnotes: n\njit: {}\n", IDB_EINVAL, "source",
	 "no-source.yaml"},
	{"bad-protocol.yaml",
	 "name: bad-protocol\ntitle: T\nprotocol: ldap\nsource: https://example.com/doc\nnotes: n\njit: {}\n",
	 IDB_EINVAL, "protocol", "bad-protocol.yaml"},
	{"syntax.yaml", "name: syntax\ntitle: [unclosed\n", IDB_EINVAL, NULL, "syntax.yaml:"},
	{"alias.yaml",
	 "name: alias\ntitle: &t T\nprotocol: saml\nsource: https://example.com/doc\nnotes: *t\njit: {}\n", IDB_EINVAL,
	 NULL, "aliases"},
	{"dup.yaml", "name: dup\nname: dup\n", IDB_EINVAL, "name", "duplicate"},
	{"empty.yaml", "", IDB_EINVAL, NULL, "empty"},
};

static void test_presets_broken_file_names_file_and_key(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bcases) / sizeof(bcases[0]); i++) {
		const bcase *c = &bcases[i];
		char dir[] = "/tmp/idb-presets-XXXXXX";
		assert_non_null(mkdtemp(dir));
		char path[256];
		snprintf(path, sizeof(path), "%s/%s", dir, c->file);
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		fputs(c->text, f);
		fclose(f);
		idb_presets *p = (idb_presets *)0x1;
		idb_err err;
		idb_err_clear(&err);
		int rc = idb_presets_load(&p, dir, &err);
		unlink(path);
		rmdir(dir);
		if (rc != c->rc || (c->field && strcmp(err.field, c->field)) || !strstr(err.msg, c->in_msg))
			fail_msg("%s: rc %d field '%s' msg '%s'", c->file, rc, err.field, err.msg);
		assert_null(p);
	}
	idb_presets *p = NULL;
	idb_err err;
	assert_int_equal(idb_presets_load(&p, "/nonexistent/presets", &err), IDB_ENOTFOUND);
	assert_null(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_presets_all_shipped_presets_load),
		cmocka_unit_test(test_presets_map_realistic_identities),
		cmocka_unit_test(test_presets_merge_overrides_replace_and_null_removes),
		cmocka_unit_test(test_presets_broken_file_names_file_and_key),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
