/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Groups of an organisation (name, description, permissions) and their
 * manual memberships. Functions that change something run in their own
 * transaction (audit row included) unless they say otherwise, and add the
 * permission caches to drop to fx. Objects are returned as JSON (admin.h);
 * ids from another organisation are IDB_ENOTFOUND. */
#ifndef IDB_GROUPS_H
#define IDB_GROUPS_H

#include <stdbool.h>
#include <stddef.h>

#include "admin.h"

/* Finds a group of org_id by id or by name (case-insensitive). IDB_ENOTFOUND
 * when there is none. */
int idb_group_resolve(idb_db *db, const char *org_id, const char *id_or_name, char out_id[37], idb_err *err);

/* Group list ordered by lower(name), id: {items, next_cursor}. limit and
 * cursor are raw query values (IDB_EINVAL with the field when invalid). */
int idb_groups_list(idb_db *db, const char *org_id, const char *limit, const char *cursor, json_t **out,
		    idb_err *err);
int idb_groups_get(idb_db *db, const char *org_id, const char *group_id, json_t **out, idb_err *err);

typedef struct idb_group_input {
	const char *name;        /* required to create; NULL: unchanged */
	const char *description; /* NULL: "" / unchanged */
	bool set_permissions;
	const char *const *permissions; /* each one of the 10 permission names */
	size_t npermissions;
} idb_group_input;

/* IDB_EINVAL with field name/description/permissions, IDB_EEXISTS (field
 * name) when the organisation has a group of that name. */
int idb_groups_create(idb_db *db, const idb_actor *a, const idb_group_input *in, json_t **out, idb_err *err);
int idb_groups_update(idb_db *db, const idb_actor *a, const char *group_id, const idb_group_input *in,
		      idb_effects *fx, json_t **out, idb_err *err);
int idb_groups_delete(idb_db *db, const idb_actor *a, const char *group_id, idb_effects *fx, idb_err *err);

/* Members (users of any membership source, soft-deleted users hidden) as
 * user objects ordered by lower(email), id: {items, next_cursor}. */
int idb_groups_members(idb_db *db, const char *org_id, const char *group_id, const char *limit, const char *cursor,
		       json_t **out, idb_err *err);

/* Manual membership. add is idempotent; remove gives IDB_ENOTFOUND when the
 * user has no manual membership of the group. *out (add) is the user object. */
int idb_groups_member_add(idb_db *db, const idb_actor *a, const char *group_id, const char *user_id,
			  idb_effects *fx, json_t **out, idb_err *err);
int idb_groups_member_remove(idb_db *db, const idb_actor *a, const char *group_id, const char *user_id,
			     idb_effects *fx, idb_err *err);

/* The same two without a transaction or audit of their own (for callers that
 * hold one: bulk actions). *changed tells whether a row was written. */
int idb_membership_add_tx(idb_db *db, const char *org_id, const char *group_id, const char *user_id,
			  bool *changed, idb_err *err);
int idb_membership_remove_tx(idb_db *db, const char *org_id, const char *group_id, const char *user_id,
			     bool *changed, idb_err *err);

#endif
