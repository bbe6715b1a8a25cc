/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Invitations: an admin invites an e-mail address with a role and groups; the
 * user is created 'pending' and mailed a single-use link carrying a random
 * 256-bit token (stored as its SHA-256) that expires after
 * invitations.ttl_s. Accepting sets a password (or the user signs in with
 * SSO) and activates the account. User, memberships, invitation, outbox mail
 * and audit row are written in one transaction. */
#ifndef IDB_INVITATIONS_H
#define IDB_INVITATIONS_H

#include <stddef.h>
#include <stdint.h>

#include "admin.h"
#include "config.h"

typedef struct idb_invite_input {
	const char *email;
	const char *name; /* may be NULL */
	const char *role;
	const char *const *groups; /* ids or names */
	size_t ngroups;
} idb_invite_input;

/* IDB_EINVAL with field email ("Invalid email format"), role ("Invalid
 * role"), name or groups; IDB_EEXISTS when the e-mail is already a user of
 * the organisation. *out: the new user object. */
int idb_invite_create(idb_db *db, const idb_config *cfg, const idb_actor *a, const idb_invite_input *in,
		      json_t **out, idb_err *err);
/* New token and mail for a pending user; earlier open invitations are
 * revoked. IDB_ECONFLICT when the user is not pending. */
int idb_invite_resend(idb_db *db, const idb_config *cfg, const idb_actor *a, const char *user_id, json_t **out,
		      idb_err *err);

/* In the caller's transaction: a new invitation for the pending user user_id
 * (email, name may be NULL) and its mail in the outbox -- the link, text and
 * expiry of every invitation (idb_invite_create and resend use it too).
 * org_name is the organisation's display name, or NULL to look it up (bulk
 * callers such as the CSV import pass it once). No audit row. */
int idb_invite_issue_tx(idb_db *db, const idb_config *cfg, const idb_actor *a, const char *user_id, const char *email,
			const char *name, const char *org_name, idb_err *err);

typedef enum {
	IDB_INVITE_VALID = 0,
	IDB_INVITE_EXPIRED,
	IDB_INVITE_REVOKED, /* replaced by a newer one, or the user was deactivated/deleted */
	IDB_INVITE_USED,
} idb_invite_state;

typedef struct idb_invite_view {
	idb_invite_state state;
	char user_id[37];
	char org_id[37];
	char email[255];
	char org_name[201];
	char inviter_email[255]; /* "" when unknown (inviter deleted, CLI) */
	int64_t expires_at;
} idb_invite_view;

/* Looks a token up. IDB_ENOTFOUND for a token that never existed. */
int idb_invite_lookup(idb_db *db, const char *token, idb_invite_view *out, idb_err *err);
/* Accepts: checks the password rule (IDB_EINVAL, field "password"), sets the
 * password, activates the user, marks the invitation used and records
 * last_login_at (the bridge starts a session next). IDB_ENOTFOUND for an
 * unknown token, IDB_ECONFLICT with out->state for one that is expired,
 * revoked or used. */
int idb_invite_accept(idb_db *db, const idb_config *cfg, const char *token, const char *password, const char *ip,
		      idb_invite_view *out, idb_err *err);

#endif
