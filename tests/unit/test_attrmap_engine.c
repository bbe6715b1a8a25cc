/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The mapping engine: transforms, filters, the mapping table, role rules and
 * their cap, overage, bounds, compile errors with field names, the explain
 * dry run, and that the engine reads nothing but its inputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "attrmap.h"

/* --------------------------------------------------------------------
 * The engine must do no I/O and read no clock or environment. This test
 * executable is linked with --wrap for those calls (tests/CMakeLists.txt);
 * while "armed", any call from our statically linked code is counted. */
static int armed;
static int io_calls;
#define WRAP(ret, name, params, args)                                                                                  \
	ret __real_##name params;                                                                                      \
	ret __wrap_##name params;                                                                                      \
	ret __wrap_##name params                                                                                       \
	{                                                                                                              \
		if (armed)                                                                                             \
			io_calls++;                                                                                    \
		return __real_##name args;                                                                             \
	}
WRAP(FILE *, fopen, (const char *p, const char *m), (p, m))
WRAP(char *, getenv, (const char *n), (n))
WRAP(time_t, time, (time_t * t), (t))
WRAP(int, clock_gettime, (clockid_t c, struct timespec *ts), (c, ts))
WRAP(int, socket, (int d, int t, int p), (d, t, p))
WRAP(int, rand, (void), ())
int __real_open(const char *p, int f, ...);
int __wrap_open(const char *p, int f, ...);
int __wrap_open(const char *p, int f, ...)
{
	va_list ap;
	va_start(ap, f);
	int mode = va_arg(ap, int);
	va_end(ap);
	if (armed)
		io_calls++;
	return __real_open(p, f, mode);
}

/* ---------------------------------------------------------------- helpers */

static void build_identity(idb_identity *id, const char *subject, const char *format, const char *const *kv)
{
	memset(id, 0, sizeof(*id));
	idb_err err;
	id->subject = subject ? strdup(subject) : NULL;
	id->subject_format = strdup(format ? format : "");
	for (size_t i = 0; kv && kv[i]; i += 2)
		assert_int_equal(idb_identity_add(id, kv[i], kv[i + 1], &err), 0);
}

static idb_attrmap *compile_ok(const char *settings)
{
	idb_attrmap *m = NULL;
	idb_err err;
	idb_err_clear(&err);
	int rc = idb_attrmap_compile(&m, settings, &err);
	if (rc != 0)
		fail_msg("compile failed: %s: %s (%s)", err.field, err.msg, settings);
	return m;
}

/* Groups joined with "|" for compact expectations. */
static void groups_text(const idb_profile *p, char *buf, size_t n)
{
	buf[0] = '\0';
	size_t o = 0;
	for (size_t i = 0; i < p->ngroups; i++) {
		int w = snprintf(buf + o, n - o, "%s%s", i ? "|" : "", p->groups[i]);
		assert_true(w >= 0 && (size_t)w < n - o);
		o += (size_t)w;
	}
}

/* ------------------------------------------------------- mapping table */

#define MAXKV 40
typedef struct mcase {
	const char *what;
	const char *settings;
	const char *subject, *format;
	const char *kv[MAXKV];
	int rc;
	const char *field; /* on error */
	const char *email, *name;
	const char *groups; /* "a|b" */
	int role;
	bool from_rule, overage;
} mcase;

#define EMAILFMT "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
#define X_EMAIL "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"

static const mcase cases[] = {
	{"defaults trim, lowercase and deduplicate", "{}", NULL, NULL,
	 {"email", "  Alice@Example.COM ", "displayName", " Alice Example ", "memberOf", " Sales ", "memberOf", "Sales",
	  "memberOf", "", "memberOf", "Ops", NULL},
	 0, NULL, "alice@example.com", "Alice Example", "Sales|Ops", 0, false, false},
	{"first present email candidate wins", "{\"email_attribute\": [\"email\", \"mail\", \"" X_EMAIL "\"]}", NULL,
	 NULL, {"mail", "bob@example.com", X_EMAIL, "other@example.com", NULL}, 0, NULL, "bob@example.com", "", "", 0},
	{"email candidate by regular expression on the attribute name",
	 "{\"email_attribute\": [\"re:^https://[^/]+/email$\"]}", NULL, NULL,
	 {"https://acme.example/email", "carol@example.com", NULL}, 0, NULL, "carol@example.com", "", "", 0},
	{"email from an emailAddress subject", "{\"email_from_subject\": true}", "Dan@Example.com", EMAILFMT, {NULL}, 0,
	 NULL, "dan@example.com", "", "", 0},
	{"subject of another format is not an email", "{\"email_from_subject\": true}", "dan@example.com",
	 "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent", {NULL}, IDB_EINVAL, "email"},
	{"missing email is refused", "{}", NULL, NULL, {"mail", "x@example.com", NULL}, IDB_EINVAL, "email"},
	{"multi-valued email is refused", "{}", NULL, NULL, {"email", "a@example.com", "email", "b@example.com", NULL},
	 IDB_EINVAL, "email"},
	{"malformed email is refused", "{}", NULL, NULL, {"email", "not an address", NULL}, IDB_EINVAL, "email"},
	{"email transform rewrites the domain",
	 "{\"email_transforms\": [{\"regex_replace\": {\"pattern\": \"@corp\\\\.example$\", \"replacement\": "
	 "\"@example.com\"}}]}",
	 NULL, NULL, {"email", "eve@corp.example", NULL}, 0, NULL, "eve@example.com", "", "", 0},
	{"name template when no name attribute is present", "{\"name_template\": \"{givenName} {middle} {surname}\"}",
	 NULL, NULL, {"email", "f@example.com", "givenName", "Frank", "surname", "Smith", NULL}, 0, NULL,
	 "f@example.com", "Frank Smith", "", 0},
	{"name attribute wins over the template",
	 "{\"name_attribute\": [\"displayName\"], \"name_template\": \"{givenName} {surname}\"}", NULL, NULL,
	 {"email", "f@example.com", "givenName", "Frank", "displayName", "Dr Frank Smith", NULL}, 0, NULL,
	 "f@example.com", "Dr Frank Smith", "", 0},
	{"dn_to_cn honours escaped commas and hex escapes", "{\"group_transforms\": [\"dn_to_cn\"]}", NULL, NULL,
	 {"email", "g@example.com", "memberOf", "CN=Support Team,OU=Groups,DC=acme,DC=com", "memberOf",
	  "cn=Sales\\, EMEA,OU=Groups,DC=acme,DC=com", "memberOf", "CN=R\\2CD,DC=acme", "memberOf", "Plain Name",
	  NULL},
	 0, NULL, "g@example.com", "", "Support Team|Sales, EMEA|R,D|Plain Name", 0},
	{"split then trim", "{\"group_transforms\": [{\"split\": {\"delimiter\": \";\"}}]}", NULL, NULL,
	 {"email", "h@example.com", "memberOf", "a; b ;;c", NULL}, 0, NULL, "h@example.com", "", "a|b|c", 0},
	{"regex_extract keeps the group and drops non-matching values",
	 "{\"group_transforms\": [{\"regex_extract\": {\"pattern\": \"^sg-(.+)$\"}}, \"lowercase\"]}", NULL, NULL,
	 {"email", "i@example.com", "memberOf", "sg-Eng", "memberOf", "other", "memberOf", "sg-OPS", NULL}, 0, NULL,
	 "i@example.com", "", "eng|ops", 0},
	{"include and exclude filters", "{\"group_include\": [\"re:^app-\", \"Everyone\"], \"group_exclude\": [\"app-test\"]}",
	 NULL, NULL,
	 {"email", "j@example.com", "memberOf", "app-a", "memberOf", "app-test", "memberOf", "Everyone", "memberOf",
	  "Domain Users", NULL},
	 0, NULL, "j@example.com", "", "app-a|Everyone", 0},
	{"mapping table: exact, regex with $1, many-to-many, pass-through",
	 "{\"group_mapping\": [{\"idp\": \"Acme Admins\", \"group\": \"admins\"}, {\"idp\": \"Acme Admins\", \"group\": "
	 "\"staff\"}, {\"idp\": \"re:^team-(\\\\w+)$\", \"group\": \"Team ${1}\"}]}",
	 NULL, NULL,
	 {"email", "k@example.com", "memberOf", "Acme Admins", "memberOf", "team-red", "memberOf", "Unmapped", NULL}, 0,
	 NULL, "k@example.com", "", "admins|staff|Team red|Unmapped", 0},
	{"group_mapping_only drops unmapped groups",
	 "{\"group_mapping_only\": true, \"group_mapping\": [{\"idp\": \"re:^team-(.*)$\", \"group\": \"$1\"}]}", NULL,
	 NULL, {"email", "l@example.com", "memberOf", "team-blue", "memberOf", "Unmapped", NULL}, 0, NULL,
	 "l@example.com", "", "blue", 0},
	{"the first matching role rule wins, in rule order",
	 "{\"role_rules\": [{\"group\": \"Engineers\", \"role\": \"train\"}, {\"group\": \"Admins\", \"role\": "
	 "\"admin\"}]}",
	 NULL, NULL, {"email", "m@example.com", "memberOf", "Admins", "memberOf", "Engineers", NULL}, 0, NULL,
	 "m@example.com", "", "Admins|Engineers", 1, true},
	{"a role rule matches a mapped name",
	 "{\"group_mapping\": [{\"idp\": \"0b7c-guid\", \"group\": \"admins\"}], \"role_rules\": [{\"group\": "
	 "\"re:^adm\", \"role\": \"configure\"}]}",
	 NULL, NULL, {"email", "n@example.com", "memberOf", "0b7c-guid", NULL}, 0, NULL, "n@example.com", "", "admins",
	 2, true},
	{"a role rule matches a raw value that mapping-only drops",
	 "{\"group_mapping_only\": true, \"role_rules\": [{\"group\": \"IdP Admins\", \"role\": \"admin\"}]}", NULL,
	 NULL, {"email", "o@example.com", "memberOf", "IdP Admins", NULL}, 0, NULL, "o@example.com", "", "", 3, true},
	{"a rule never grants more than max_role",
	 "{\"max_role\": \"configure\", \"role_rules\": [{\"group\": \"Admins\", \"role\": \"admin\"}]}", NULL, NULL,
	 {"email", "p@example.com", "memberOf", "Admins", NULL}, 0, NULL, "p@example.com", "", "Admins", 2, true},
	{"no rule matches: default_role",
	 "{\"default_role\": \"train\", \"role_rules\": [{\"group\": \"Admins\", \"role\": \"admin\"}]}", NULL, NULL,
	 {"email", "q@example.com", "memberOf", "Staff", NULL}, 0, NULL, "q@example.com", "", "Staff", 1, false},
	{"excluded groups grant no role",
	 "{\"group_exclude\": [\"Admins\"], \"role_rules\": [{\"group\": \"Admins\", \"role\": \"admin\"}]}", NULL,
	 NULL, {"email", "r@example.com", "memberOf", "Admins", NULL}, 0, NULL, "r@example.com", "", "", 0, false},
	{"Entra SAML overage (groups.link) is not 'no groups'", "{}", NULL, NULL,
	 {"email", "s@example.com", "http://schemas.microsoft.com/claims/groups.link",
	  "https://graph.windows.net/tenant/users/user/getMemberObjects", NULL},
	 0, NULL, "s@example.com", "", "", 0, false, true},
	{"OIDC overage via _claim_names.groups", "{}", NULL, NULL,
	 {"email", "t@example.com", "_claim_names.groups", "src1", NULL}, 0, NULL, "t@example.com", "", "", 0, false,
	 true},
	{"hasgroups false is not an overage", "{}", NULL, NULL, {"email", "u@example.com", "hasgroups", "false", NULL},
	 0, NULL, "u@example.com", "", "", 0, false, false},
	{"invalid UTF-8 in a group value is refused", "{}", NULL, NULL,
	 {"email", "v@example.com", "memberOf", "bad\xff\xfe", NULL}, IDB_EINVAL, "groups"},
	{"a runaway regular expression refuses instead of skipping",
	 "{\"group_exclude\": [\"re:^(a+)+$\"]}", NULL, NULL,
	 {"email", "w@example.com", "memberOf", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", NULL}, IDB_EINVAL,
	 "group_exclude[0]"},
	{"several regex rules (combined prefilter) with inline options",
	 "{\"group_mapping\": [{\"idp\": \"re:(?i)^admins$\", \"group\": \"admins\"},"
	 " {\"idp\": \"re:^team-(\\\\w+)$\", \"group\": \"t-$1\"}, {\"idp\": \"re:(?x) ^ ops $\", \"group\": \"operations\"}],"
	 " \"role_rules\": [{\"group\": \"re:^t-b\", \"role\": \"configure\"}, {\"group\": \"re:(?i)^ADMINS$\", \"role\": \"admin\"}]}",
	 NULL, NULL,
	 {"email", "y@example.com", "memberOf", "ADMINS", "memberOf", "team-blue", "memberOf", "ops", "memberOf", "other",
	  NULL},
	 0, NULL, "y@example.com", "", "admins|t-blue|operations|other", 2, true},
	{"regex rules that cannot be combined (back reference, # comment) still match",
	 "{\"group_mapping\": [{\"idp\": \"re:^(x)\\\\1$\", \"group\": \"double\"},"
	 " {\"idp\": \"re:(?x)^y # a comment\", \"group\": \"why\"}],"
	 " \"role_rules\": [{\"group\": \"re:^(d)oubl\\\\1?e$\", \"role\": \"train\"}, {\"group\": \"re:(*COMMIT)zz\", \"role\": \"admin\"}]}",
	 NULL, NULL, {"email", "z@example.com", "memberOf", "xx", "memberOf", "y", NULL}, 0, NULL, "z@example.com", "",
	 "double|why", 1, true},
	{"a DN with a NUL escape is refused", "{\"group_transforms\": [\"dn_to_cn\"]}", NULL, NULL,
	 {"email", "x@example.com", "memberOf", "CN=a\\00b,DC=x", NULL}, IDB_EINVAL, "group_transforms[0]"},
};

static void test_attrmap_engine_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const mcase *c = &cases[i];
		idb_attrmap *m = compile_ok(c->settings);
		idb_identity id;
		build_identity(&id, c->subject, c->format, c->kv);
		idb_profile p;
		idb_err err;
		idb_err_clear(&err);
		int rc = idb_attrmap_apply(m, &id, &p, &err);
		if (rc != c->rc)
			fail_msg("%s: rc %d (want %d): %s: %s", c->what, rc, c->rc, err.field, err.msg);
		if (rc != 0) {
			if (strcmp(err.field, c->field) != 0)
				fail_msg("%s: field %s (want %s): %s", c->what, err.field, c->field, err.msg);
			assert_null(p.email);
			assert_int_equal(p.ngroups, 0);
		} else {
			char g[4096];
			groups_text(&p, g, sizeof(g));
			if (strcmp(p.email, c->email) || strcmp(p.display_name, c->name) || strcmp(g, c->groups) ||
			    p.role != c->role || p.role_from_rule != c->from_rule || p.groups_overage != c->overage)
				fail_msg("%s: got email=%s name=%s groups=%s role=%d from_rule=%d overage=%d", c->what,
					 p.email, p.display_name, g, p.role, p.role_from_rule, p.groups_overage);
		}
		idb_profile_clear(&p);
		idb_identity_clear(&id);
		idb_attrmap_free(m);
	}
}

/* ------------------------------------------------------ compile errors */

typedef struct ccase {
	const char *settings;
	const char *field;
	const char *msg_part;
} ccase;

static const ccase compile_cases[] = {
	{"[]", "jit", "object"},
	{"{bad json", "jit", "JSON"},
	{"{\"a\": 1, \"a\": 2}", "jit", NULL},
	{"{\"email_attribute\": 5}", "email_attribute", "string"},
	{"{\"email_attribute\": \"\"}", "email_attribute", "1-512"},
	{"{\"email_attribute\": [\"email\", \"\"]}", "email_attribute[1]", "1-512"},
	{"{\"email_attribute\": [\"re:(\"]}", "email_attribute[0]", "offset"},
	{"{\"role_rules\": [{\"group\": \"a\", \"role\": \"admin\"}, {\"group\": \"b\", \"role\": \"train\"}, "
	 "{\"group\": \"re:(unclosed\", \"role\": \"admin\"}]}",
	 "role_rules[2].group", "offset"},
	{"{\"role_rules\": [{\"group\": \"a\", \"role\": \"boss\"}]}", "role_rules[0].role", "readonly"},
	{"{\"role_rules\": [{\"group\": \"a\", \"role\": \"admin\", \"x\": 1}]}", "role_rules[0].x", "unknown"},
	{"{\"role_rules\": [{\"role\": \"admin\"}]}", "role_rules[0].group", NULL},
	{"{\"role_rules\": {}}", "role_rules", NULL},
	{"{\"default_role\": \"admin\", \"max_role\": \"train\"}", "default_role", "max_role"},
	{"{\"max_role\": \"root\"}", "max_role", NULL},
	{"{\"group_transforms\": [\"explode\"]}", "group_transforms[0]", "unknown transform"},
	{"{\"group_transforms\": [{\"trim\": {}}]}", "group_transforms[0].trim", "no arguments"},
	{"{\"group_transforms\": [{\"regex_extract\": {\"pattern\": \"a(b)\", \"group\": 2}}]}",
	 "group_transforms[0].regex_extract.group", NULL},
	{"{\"name_transforms\": [\"trim\", {\"regex_replace\": {\"pattern\": \"a\", \"replacement\": \"$1\"}}]}",
	 "name_transforms[1].regex_replace.replacement", "group"},
	{"{\"email_transforms\": [{\"regex_replace\": {\"pattern\": \"a(\", \"replacement\": \"\"}}]}",
	 "email_transforms[0].regex_replace.pattern", "offset"},
	{"{\"group_transforms\": [{\"split\": {}}]}", "group_transforms[0].split.delimiter", NULL},
	{"{\"group_transforms\": \"trim\"}", "group_transforms", NULL},
	{"{\"group_mapping\": [{\"idp\": \"re:^(x)$\", \"group\": \"$2\"}]}", "group_mapping[0].group", "$2"},
	{"{\"group_mapping\": [{\"idp\": \"x\"}]}", "group_mapping[0].group", NULL},
	{"{\"group_mapping\": [{\"idp\": \"\", \"group\": \"g\"}]}", "group_mapping[0].idp", NULL},
	{"{\"group_mapping\": {}}", "group_mapping", NULL},
	{"{\"name_template\": \"{givenName\"}", "name_template", NULL},
	{"{\"name_template\": \"no references\"}", "name_template", NULL},
	{"{\"email_from_subject\": \"yes\"}", "email_from_subject", "true or false"},
	{"{\"group_mapping_only\": 1}", "group_mapping_only", NULL},
	{"{\"group_include\": [\"re:[z-a]\"]}", "group_include[0]", "offset"},
	{"{\"group_exclude\": [7]}", "group_exclude[0]", NULL},
	{"{\"groups_overage_attributes\": [1]}", "groups_overage_attributes[0]", NULL},
};

static void test_attrmap_compile_errors_name_the_field(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(compile_cases) / sizeof(compile_cases[0]); i++) {
		const ccase *c = &compile_cases[i];
		idb_attrmap *m = (idb_attrmap *)0x1;
		idb_err err;
		idb_err_clear(&err);
		int rc = idb_attrmap_compile(&m, c->settings, &err);
		if (rc != IDB_EINVAL || strcmp(err.field, c->field) != 0 || (c->msg_part && !strstr(err.msg, c->msg_part)))
			fail_msg("%s: rc %d field '%s' msg '%s' (want field %s, message with '%s')", c->settings, rc,
				 err.field, err.msg, c->field, c->msg_part ? c->msg_part : "");
		assert_null(m);
	}
}

static void test_attrmap_defaults_and_unknown_keys(void **state)
{
	(void)state;
	/* Other layers' keys are not the engine's business. */
	idb_attrmap *m = compile_ok("{\"enabled\": true, \"sync_groups\": true, \"create_missing_groups\": false}");
	idb_attrmap_free(m);
	m = compile_ok(NULL);
	idb_attrmap_free(m);
	m = compile_ok("");
	idb_attrmap_free(m);
	idb_attrmap_free(NULL);
	idb_profile_clear(NULL);
	idb_identity_clear(NULL);
	assert_true(idb_attrmap_is_setting("role_rules"));
	assert_false(idb_attrmap_is_setting("sync_groups"));
}

/* -------------------------------------------------------------- bounds */

static void test_attrmap_refuses_identities_over_bounds(void **state)
{
	(void)state;
	idb_err err;
	idb_identity id;
	build_identity(&id, NULL, NULL, (const char *const[]){"email", "b@example.com", NULL});
	/* idb_identity_add refuses past the bounds... */
	char big[IDB_ATTR_MAX_VALUE_LEN + 2];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(idb_identity_add(&id, "memberOf", big, &err), IDB_ETOOBIG);
	for (int i = 0; i < IDB_ATTR_MAX_VALUES; i++)
		assert_int_equal(idb_identity_add(&id, "memberOf", "g", &err), 0);
	assert_int_equal(idb_identity_add(&id, "memberOf", "g", &err), IDB_ETOOBIG);
	for (int i = (int)id.nattrs; i < IDB_ATTR_MAX_ATTRS; i++) {
		char n[32];
		snprintf(n, sizeof(n), "a%d", i);
		assert_int_equal(idb_identity_add(&id, n, "v", &err), 0);
	}
	assert_int_equal(idb_identity_add(&id, "one-too-many", "v", &err), IDB_ETOOBIG);

	/* ...and apply refuses identities built by hand past them. */
	idb_attrmap *m = compile_ok("{}");
	idb_profile p;
	idb_attr extra[IDB_ATTR_MAX_ATTRS + 1];
	memcpy(extra, id.attrs, sizeof(idb_attr) * id.nattrs);
	extra[id.nattrs] = (idb_attr){"extra", NULL, 0};
	idb_identity hand = id;
	hand.attrs = extra;
	hand.nattrs = id.nattrs + 1;
	assert_int_equal(idb_attrmap_apply(m, &hand, &p, &err), IDB_ETOOBIG);
	assert_string_equal(err.field, "attributes");
	/* too many values in one attribute */
	char *vals[IDB_ATTR_MAX_VALUES + 1];
	for (int i = 0; i <= IDB_ATTR_MAX_VALUES; i++)
		vals[i] = "v";
	idb_attr two[2] = {{"email", (char *[]){"c@example.com"}, 1}, {"memberOf", vals, IDB_ATTR_MAX_VALUES + 1}};
	hand.attrs = two;
	hand.nattrs = 2;
	assert_int_equal(idb_attrmap_apply(m, &hand, &p, &err), IDB_ETOOBIG);
	assert_string_equal(err.field, "attributes");
	/* a value longer than the bound */
	two[1] = (idb_attr){"memberOf", (char *[]){big}, 1};
	assert_int_equal(idb_attrmap_apply(m, &hand, &p, &err), IDB_ETOOBIG);
	idb_attrmap_free(m);
	idb_identity_clear(&id);
}

static void test_attrmap_refuses_too_many_groups(void **state)
{
	(void)state;
	idb_attrmap *m = compile_ok("{}");
	idb_identity id;
	build_identity(&id, NULL, NULL, (const char *const[]){"email", "b@example.com", NULL});
	idb_err err;
	for (int i = 0; i <= IDB_ATTR_MAX_GROUPS; i++) {
		char g[32];
		snprintf(g, sizeof(g), "group-%d", i);
		assert_int_equal(idb_identity_add(&id, "memberOf", g, &err), 0);
	}
	idb_profile p;
	assert_int_equal(idb_attrmap_apply(m, &id, &p, &err), IDB_ETOOBIG);
	assert_string_equal(err.field, "groups");
	assert_int_equal(p.ngroups, 0);
	idb_attrmap_free(m);

	/* a split that explodes past the value bound is refused, not truncated */
	m = compile_ok("{\"group_transforms\": [{\"split\": {\"delimiter\": \",\"}}]}");
	idb_identity_clear(&id);
	build_identity(&id, NULL, NULL, (const char *const[]){"email", "b@example.com", NULL});
	char v[IDB_ATTR_MAX_VALUE_LEN + 1];
	for (size_t i = 0; i < sizeof(v) - 1; i++)
		v[i] = (i % 2) ? ',' : 'x';
	v[sizeof(v) - 1] = '\0';
	for (int i = 0; i < 3; i++)
		assert_int_equal(idb_identity_add(&id, "memberOf", v, &err), 0);
	assert_int_equal(idb_attrmap_apply(m, &id, &p, &err), IDB_ETOOBIG);
	assert_string_equal(err.field, "group_transforms[0]");
	idb_attrmap_free(m);
	idb_identity_clear(&id);
}

/* ------------------------------------------------------------- explain */

static void test_attrmap_explain_describes_each_step(void **state)
{
	(void)state;
	idb_attrmap *m = compile_ok(
		"{\"email_attribute\": [\"email\", \"mail\"], \"group_transforms\": [\"dn_to_cn\"],"
		" \"group_exclude\": [\"re:^Domain \"], \"group_mapping\": [{\"idp\": \"Support Team\", \"group\": \"support\"}],"
		" \"role_rules\": [{\"group\": \"support\", \"role\": \"admin\"}], \"max_role\": \"configure\"}");
	idb_identity id;
	build_identity(&id, NULL, NULL,
		       (const char *const[]){"mail", "Z@Example.com", "memberOf", "CN=Support Team,OU=G,DC=acme",
					     "memberOf", "CN=Domain Users,DC=acme", "department", "R&D", NULL});
	char *text = NULL;
	idb_err err;
	assert_int_equal(idb_attrmap_explain(m, &id, &text, &err), 0);
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "email"), "source")), "mail");
	json_t *g = json_object_get(j, "groups");
	assert_string_equal(json_string_value(json_object_get(g, "source")), "memberOf");
	json_t *steps = json_object_get(g, "steps");
	assert_int_equal(json_array_size(steps), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(steps, 0), "transform")), "dn_to_cn");
	json_t *fo = json_array_get(json_object_get(g, "filtered_out"), 0);
	assert_string_equal(json_string_value(json_object_get(fo, "value")), "Domain Users");
	assert_string_equal(json_string_value(json_object_get(fo, "reason")), "group_exclude[0]");
	json_t *role = json_object_get(j, "role");
	assert_string_equal(json_string_value(json_object_get(role, "rule")), "role_rules[0]");
	assert_string_equal(json_string_value(json_object_get(role, "matched_group")), "support");
	assert_true(json_is_true(json_object_get(role, "capped")));
	assert_string_equal(json_string_value(json_object_get(role, "role")), "configure");
	json_t *unused = json_object_get(j, "unused_attributes");
	assert_int_equal(json_array_size(unused), 1);
	assert_string_equal(json_string_value(json_array_get(unused, 0)), "department");
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "profile"), "email")), "z@example.com");
	json_decref(j);
	free(text);

	/* a mapping error is reported inside the JSON */
	idb_identity_clear(&id);
	build_identity(&id, NULL, NULL, (const char *const[]){"memberOf", "x", NULL});
	assert_int_equal(idb_attrmap_explain(m, &id, &text, &err), 0);
	j = json_loads(text, 0, &je);
	assert_non_null(j);
	assert_null(json_object_get(j, "profile"));
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "field")), "email");
	json_decref(j);
	free(text);
	idb_identity_clear(&id);
	idb_attrmap_free(m);
}

/* ------------------------------------------------------------- purity */

static void test_attrmap_reads_nothing_but_its_inputs(void **state)
{
	(void)state;
	static const char settings[] =
		"{\"email_attribute\": [\"re:mail$\"], \"name_template\": \"{givenName} {sn}\","
		" \"group_transforms\": [\"dn_to_cn\", {\"regex_replace\": {\"pattern\": \"\\\\s+\", \"replacement\": \"-\"}}],"
		" \"group_mapping\": [{\"idp\": \"re:^(.*)-Team$\", \"group\": \"$1\"}],"
		" \"role_rules\": [{\"group\": \"re:^Sup\", \"role\": \"train\"}]}";
	const char *const kv[] = {"mail", "a@example.com", "givenName", "A", "sn", "B",
				  "memberOf", "CN=Support Team,DC=x", NULL};
	armed = 1;
	io_calls = 0;
	idb_attrmap *m = compile_ok(settings);
	armed = 0;
	idb_identity id;
	build_identity(&id, "subj", "", kv);
	idb_profile p1, p2;
	idb_err err;
	char *text = NULL;
	armed = 1;
	assert_int_equal(idb_attrmap_apply(m, &id, &p1, &err), 0);
	assert_int_equal(idb_attrmap_apply(m, &id, &p2, &err), 0);
	assert_int_equal(idb_attrmap_explain(m, &id, &text, &err), 0);
	armed = 0;
	assert_int_equal(io_calls, 0);
	/* same input, same output; the identity is left as it was */
	assert_string_equal(p1.email, p2.email);
	assert_string_equal(p1.display_name, "A B");
	assert_int_equal(p1.ngroups, 1);
	assert_string_equal(p1.groups[0], "Support");
	assert_string_equal(p2.groups[0], "Support");
	assert_int_equal(p1.role, 1);
	assert_string_equal(idb_identity_get(&id, "memberOf")->values[0], "CN=Support Team,DC=x");
	/* the wrappers do count when armed */
	armed = 1;
	assert_null(getenv("IDB_NOT_SET_ANYWHERE"));
	armed = 0;
	assert_int_equal(io_calls, 1);
	free(text);
	idb_profile_clear(&p1);
	idb_profile_clear(&p2);
	idb_identity_clear(&id);
	idb_attrmap_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attrmap_engine_table),
		cmocka_unit_test(test_attrmap_compile_errors_name_the_field),
		cmocka_unit_test(test_attrmap_defaults_and_unknown_keys),
		cmocka_unit_test(test_attrmap_refuses_identities_over_bounds),
		cmocka_unit_test(test_attrmap_refuses_too_many_groups),
		cmocka_unit_test(test_attrmap_explain_describes_each_step),
		cmocka_unit_test(test_attrmap_reads_nothing_but_its_inputs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
