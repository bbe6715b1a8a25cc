/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* libFuzzer target for the mapping engine. Input: settings JSON, a NUL byte,
 * then the identity as lines "name=value" ("@subject=" and "@format=" set the
 * subject). Without a NUL byte the whole input is the identity and a fixed,
 * feature-rich map is used, so both the settings parser and the mapping
 * paths get exercised. Every compiled map is applied and explained. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attrmap.h"

static const char fixed_settings[] =
	"{\"email_attribute\": [\"email\", \"re:mail$\"], \"email_from_subject\": true,"
	" \"name_template\": \"{givenName} {sn}\", \"name_transforms\": [\"trim\"],"
	" \"email_transforms\": [{\"regex_replace\": {\"pattern\": \"@old\\\\.example$\", \"replacement\": \"@new.example\"}}],"
	" \"group_transforms\": [{\"split\": {\"delimiter\": \";\"}}, \"dn_to_cn\", \"lowercase\","
	"   {\"regex_extract\": {\"pattern\": \"^(?:grp-)?(.+)$\", \"group\": 1}},"
	"   {\"regex_replace\": {\"pattern\": \"\\\\s+\", \"replacement\": \"-\"}}],"
	" \"group_include\": [\"re:.\"], \"group_exclude\": [\"re:^(a+)+$\", \"domain-users\"],"
	" \"group_mapping\": [{\"idp\": \"admins\", \"group\": \"Admins\"}, {\"idp\": \"re:^team-(\\\\w+)$\", \"group\": \"Team ${1}\"},"
	"   {\"idp\": \"re:^(.*)-(.*)$\", \"group\": \"$2/$1\"}],"
	" \"role_rules\": [{\"group\": \"Admins\", \"role\": \"admin\"}, {\"group\": \"re:^Team \", \"role\": \"train\"}],"
	" \"max_role\": \"configure\", \"default_role\": \"readonly\"}";

static void run(const idb_attrmap *m, const char *ident, size_t len)
{
	idb_identity id;
	memset(&id, 0, sizeof(id));
	idb_err err;
	char *copy = malloc(len + 1);
	if (!copy)
		return;
	memcpy(copy, ident, len);
	copy[len] = '\0';
	for (char *line = copy; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		char *eq = strchr(line, '=');
		if (eq && eq != line) {
			*eq = '\0';
			if (strcmp(line, "@subject") == 0) {
				free(id.subject);
				id.subject = strdup(eq + 1);
			} else if (strcmp(line, "@format") == 0) {
				free(id.subject_format);
				id.subject_format = strdup(eq + 1);
			} else {
				(void)idb_identity_add(&id, line, eq + 1, &err);
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	free(copy);
	idb_profile p;
	if (idb_attrmap_apply(m, &id, &p, &err) == 0) {
		/* invariants of a successful mapping */
		if (!p.email || !p.display_name || p.role < 0 || p.role > 3 || p.ngroups > IDB_ATTR_MAX_GROUPS)
			__builtin_trap();
		for (size_t i = 0; i < p.ngroups; i++)
			if (!p.groups[i][0])
				__builtin_trap();
	}
	idb_profile_clear(&p);
	char *json = NULL;
	if (idb_attrmap_explain(m, &id, &json, &err) == 0 && !json)
		__builtin_trap();
	free(json);
	idb_identity_clear(&id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 64 * 1024)
		return 0;
	const char *in = (const char *)data;
	const char *nul = memchr(in, '\0', size);
	idb_attrmap *m = NULL;
	idb_err err;
	if (nul) {
		if (idb_attrmap_compile(&m, in, &err) == 0) /* NUL-terminated by nul */
			run(m, nul + 1, size - (size_t)(nul + 1 - in));
	} else if (idb_attrmap_compile(&m, fixed_settings, &err) == 0) {
		run(m, in, size);
	}
	idb_attrmap_free(m);
	return 0;
}
