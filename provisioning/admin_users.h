/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* User administration: list with filters, read, edit (name, role, manual
 * groups), deactivation, activation, soft and hard deletion, restore, unlock,
 * bulk actions. Every change runs in one transaction together with its audit
 * rows (and outbox mail), and adds the cache entries the bridge must drop
 * afterwards to fx. Users are returned as JSON objects (admin.h). Ids that do
 * not exist in the actor's organisation are IDB_ENOTFOUND.
 *
 * Guards: nobody changes their own role or deactivates / deletes themselves
 * (IDB_EFORBIDDEN); the last active admin of an organisation cannot be
 * demoted, deactivated or deleted (IDB_ECONFLICT). Changes that could remove
 * an admin lock the organisation row first, so two admins demoting each
 * other concurrently cannot both succeed. */
#ifndef IDB_ADMIN_USERS_H
#define IDB_ADMIN_USERS_H

#include <stdbool.h>
#include <stddef.h>

#include "admin.h"
#include "config.h"

/* Raw query-string values (NULL when absent); validated here. */
typedef struct idb_user_filter {
	const char *role;
	const char *group; /* id or name */
	const char *status;
	const char *last_login_after;  /* RFC 3339, inclusive */
	const char *last_login_before; /* RFC 3339, exclusive */
	const char *q;                 /* substring of e-mail or name, case-insensitive */
	const char *limit;             /* 1..200, default 50 */
	const char *cursor;
} idb_user_filter;

/* {items: [user…], next_cursor}, ordered by lower(email), id. Soft-deleted
 * users only with status=deleted. IDB_EINVAL with the field for bad values. */
int idb_users_list(idb_db *db, const char *org_id, const idb_user_filter *f, json_t **out, idb_err *err);
int idb_users_get(idb_db *db, const char *org_id, const char *user_id, json_t **out, idb_err *err);

typedef struct idb_user_patch {
	const char *name; /* NULL: unchanged */
	const char *role; /* NULL: unchanged */
	bool set_groups;  /* groups[] is the full list of manual memberships */
	const char *const *groups; /* ids or names */
	size_t ngroups;
	bool notify; /* queue an e-mail to the user describing the change */
} idb_user_patch;

int idb_users_update(idb_db *db, const idb_config *cfg, const idb_actor *a, const char *user_id,
		     const idb_user_patch *p, idb_effects *fx, json_t **out, idb_err *err);

typedef enum {
	IDB_USER_DEACTIVATE, /* -> inactive; sessions ended, keys disabled, memberships suspended */
	IDB_USER_ACTIVATE,   /* inactive -> active; restores what deactivation suspended */
	IDB_USER_SOFT_DELETE, /* -> deleted; as deactivation, hidden from lists */
	IDB_USER_RESTORE,    /* deleted -> inactive */
	IDB_USER_UNLOCK,     /* failed_logins = 0, locked_at = NULL */
} idb_user_op;

/* *out: the user after the change (unchanged when the user already was in
 * the target state; nothing is audited then). */
int idb_users_apply(idb_db *db, const idb_actor *a, const char *user_id, idb_user_op op, idb_effects *fx,
		    json_t **out, idb_err *err);

/* Deletes the user row (identities, memberships, sessions, keys and
 * invitations go by cascade); activity rows keep an anonymous actor_ref
 * "deleted:<sha256(id) prefix>" and lose user_id. */
int idb_users_hard_delete(idb_db *db, const idb_actor *a, const char *user_id, idb_effects *fx, idb_err *err);

/* Re-authentication of the acting admin for deletions: the password when the
 * admin has one, otherwise an SSO sign-in within the last 5 minutes.
 * IDB_EFORBIDDEN with a message saying what to do. */
int idb_users_confirm_actor(idb_db *db, const idb_actor *a, const char *password, idb_err *err);

/* Bulk action on up to 1000 users in one transaction. action:
 * add_to_group | remove_from_group (group: id or name), set_role (role),
 * deactivate, activate. Request-level problems (unknown action, group or
 * role, too many ids) are IDB_EINVAL with the field; per-user problems
 * (unknown id, guards) land in *out = [{user_id, status, message?}]. */
int idb_users_bulk(idb_db *db, const idb_actor *a, const char *action, const char *const *user_ids, size_t n,
		   const char *group, const char *role, idb_effects *fx, json_t **out, idb_err *err);

#define IDB_BULK_MAX 1000

/* In the caller's transaction: makes the user's manual memberships exactly
 * the groups of uuid_array (a Postgres uuid[] literal, ids already checked
 * to belong to org_id). New memberships of an inactive or deleted user are
 * suspended. */
int idb_user_set_manual_groups_tx(idb_db *db, const char *org_id, const char *user_id, const char *uuid_array,
				  idb_err *err);
/* Resolves group ids or names of org_id to such a literal (malloc'd).
 * IDB_EINVAL with field "groups" for an unknown group. */
int idb_user_groups_literal(idb_db *db, const char *org_id, const char *const *groups, size_t n, char **out,
			    idb_err *err);

#endif
