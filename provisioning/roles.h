/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Roles and permissions: role names in order, permission names as bits, and
 * what each role grants. Groups add permissions on top of the role. */
#ifndef IDB_ROLES_H
#define IDB_ROLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { IDB_ROLE_READONLY = 0, IDB_ROLE_TRAIN, IDB_ROLE_CONFIGURE, IDB_ROLE_ADMIN, IDB_ROLE_COUNT } idb_role;

enum {
	IDB_PERM_AGENTS_USE = 1u << 0,
	IDB_PERM_AGENTS_TRAIN = 1u << 1,
	IDB_PERM_AGENTS_CONFIGURE = 1u << 2,
	IDB_PERM_AGENTS_CREATE = 1u << 3,
	IDB_PERM_ANALYTICS_VIEW_SELF = 1u << 4,
	IDB_PERM_ANALYTICS_VIEW_ALL = 1u << 5,
	IDB_PERM_USERS_MANAGE = 1u << 6,
	IDB_PERM_GROUPS_MANAGE = 1u << 7,
	IDB_PERM_SSO_MANAGE = 1u << 8,
	IDB_PERM_AUDIT_VIEW = 1u << 9,
	IDB_PERM_COUNT = 10,
};

/* "readonly" … "admin"; NULL for an out-of-range value. */
const char *idb_role_name(int role);
/* Exact, lowercase match; -1 when unknown. */
int idb_role_parse(const char *name);
/* Permissions the role grants (bit set). */
uint32_t idb_role_perms(int role);
/* Name of permission bit index i (0..IDB_PERM_COUNT-1). */
const char *idb_perm_name(int i);
/* Bit for a permission name; 0 when unknown. */
uint32_t idb_perm_parse(const char *name);

#endif
