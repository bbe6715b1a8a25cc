/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Organisations, users and password authentication. */
#ifndef IDB_USERS_H
#define IDB_USERS_H

#include <stdbool.h>

#include "err.h"
#include "store.h"

/* Creates an organisation. IDB_EEXISTS when the slug is taken, IDB_EINVAL for
 * a slug outside [a-z0-9-] (1..63 chars) or an empty name. out_id[37]. */
int idb_org_create(idb_db *db, const char *slug, const char *name, char out_id[37], idb_err *err);
/* Looks an organisation up by slug. IDB_ENOTFOUND when absent. */
int idb_org_find(idb_db *db, const char *slug, char out_id[37], idb_err *err);

typedef struct idb_user_new {
	const char *org_id;
	const char *email;
	const char *name;     /* may be NULL */
	int role;             /* idb_role */
	const char *status;   /* "pending" | "active" */
	const char *password; /* plain text, hashed here; NULL = none */
	const char *created_via;
} idb_user_new;

/* Inserts a user. IDB_EEXISTS when the e-mail exists in the organisation
 * (case-insensitively), IDB_EINVAL with field "email" for a malformed one. */
int idb_user_create(idb_db *db, const idb_user_new *u, char out_id[37], idb_err *err);

/* As idb_user_create, but an e-mail that already exists in the organisation
 * (case-insensitively, including one committed by a concurrent transaction)
 * is not an error and does not abort the caller's transaction: *created is
 * false and out_id is left "". */
int idb_user_create_if_absent(idb_db *db, const idb_user_new *u, char out_id[37], bool *created, idb_err *err);

/* Finds a user of org by e-mail (case-insensitive). */
int idb_user_find_by_email(idb_db *db, const char *org_id, const char *email, char out_id[37], idb_err *err);

typedef struct idb_login_policy {
	int lockout_threshold;
	long long lockout_duration_s; /* 0: until an admin unlocks */
} idb_login_policy;

typedef struct idb_login_result {
	char user_id[37];
	char org_id[37];
	/* Precise reason, for the activity log only (never shown to the user):
	 * "unknown_user", "bad_password", "no_password", "locked", "deactivated",
	 * "pending", "deleted". */
	char reason[32];
	int failed_logins;
	bool locked_now; /* this failure locked the account */
} idb_login_result;

/* Password login by e-mail, optionally within org_slug (NULL: any
 * organisation). 0 on success (counter reset, last login set). IDB_EAUTH for
 * an unknown user or a wrong password (counter incremented; the account locks
 * at the threshold), IDB_ELOCKED for a locked account with the right password,
 * IDB_EFORBIDDEN for a deactivated or not yet activated account with the right
 * password. A login_success/login_failure activity row is written either way.
 * The password hash is always computed so timing does not reveal whether the
 * e-mail exists. */
int idb_user_password_login(idb_db *db, const char *org_slug, const char *email, const char *password,
			    const idb_login_policy *policy, const char *ip, idb_login_result *out, idb_err *err);

/* Appends an activity row (org_id required; user_id, reason, details_json may
 * be NULL). */
int idb_activity_record(idb_db *db, const char *org_id, const char *user_id, const char *kind, const char *reason,
			const char *ip, const char *details_json, idb_err *err);

typedef struct idb_audit_entry {
	const char *org_id;
	const char *actor_id;    /* NULL for the CLI / system */
	const char *actor_email; /* "idbridgectl" for the CLI */
	const char *action;
	const char *target_type;
	const char *target_id;
	const char *before_json; /* may be NULL */
	const char *after_json;  /* may be NULL */
	const char *ip;
	const char *request_id;
} idb_audit_entry;

/* Appends to the audit log (append-only table). */
int idb_audit_record(idb_db *db, const idb_audit_entry *e, idb_err *err);

#endif
