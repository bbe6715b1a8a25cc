/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "roles.h"

#include <string.h>

static const char *const role_names[IDB_ROLE_COUNT] = {"readonly", "train", "configure", "admin"};
static const char *const perm_names[IDB_PERM_COUNT] = {
	"agents.use",	   "agents.train", "agents.configure", "agents.create", "analytics.view_self",
	"analytics.view_all", "users.manage", "groups.manage",    "sso.manage",    "audit.view"};

const char *idb_role_name(int role)
{
	return role >= 0 && role < IDB_ROLE_COUNT ? role_names[role] : NULL;
}

int idb_role_parse(const char *name)
{
	for (int i = 0; name && i < IDB_ROLE_COUNT; i++)
		if (strcmp(name, role_names[i]) == 0)
			return i;
	return -1;
}

uint32_t idb_role_perms(int role)
{
	uint32_t p = IDB_PERM_AGENTS_USE | IDB_PERM_ANALYTICS_VIEW_SELF;
	if (role >= IDB_ROLE_TRAIN)
		p |= IDB_PERM_AGENTS_TRAIN;
	if (role >= IDB_ROLE_CONFIGURE)
		p |= IDB_PERM_AGENTS_CONFIGURE | IDB_PERM_AGENTS_CREATE | IDB_PERM_ANALYTICS_VIEW_ALL;
	if (role >= IDB_ROLE_ADMIN)
		p |= IDB_PERM_USERS_MANAGE | IDB_PERM_GROUPS_MANAGE | IDB_PERM_SSO_MANAGE | IDB_PERM_AUDIT_VIEW;
	return p;
}

const char *idb_perm_name(int i)
{
	return i >= 0 && i < IDB_PERM_COUNT ? perm_names[i] : NULL;
}

uint32_t idb_perm_parse(const char *name)
{
	for (int i = 0; name && i < IDB_PERM_COUNT; i++)
		if (strcmp(name, perm_names[i]) == 0)
			return 1u << i;
	return 0;
}
