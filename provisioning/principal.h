/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The effective identity of a caller: user, organisation, role, groups and
 * permissions. Plain data that crosses layers; cached (as JSON) in Redis by the
 * bridge for cache.permission_ttl_s and deleted on any change. */
#ifndef IDB_PRINCIPAL_H
#define IDB_PRINCIPAL_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

typedef struct idb_principal {
	char user_id[37];
	char org_id[37];
	char org_slug[64];
	char org_name[201];
	char email[255];
	char name[257];
	int role;    /* idb_role */
	char status[12];
	bool locked;
	uint32_t perms;      /* role permissions | active group permissions */
	char *groups;        /* owned: group names joined with ", " ("" when none) */
	bool has_password;
} idb_principal;

/* Loads the principal of user_id. IDB_ENOTFOUND when no such user. The
 * caller releases p->groups with idb_principal_clear. */
int idb_principal_load(idb_db *db, const char *user_id, idb_principal *out, idb_err *err);
void idb_principal_clear(idb_principal *p);

/* Serialises to / parses from the cache's JSON form. to_json returns a
 * malloc'd string (NULL on OOM); from_json returns false on a malformed or
 * outdated entry (the caller treats it as a miss). */
char *idb_principal_to_json(const idb_principal *p);
bool idb_principal_from_json(const char *json, idb_principal *out);

#endif
