/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Just-In-Time provisioning: the one code path SAML and OIDC logins share.
 * From a verified identity and its mapped profile to a user, in one
 * transaction: find by identity link, link by e-mail (allowed domains only),
 * or create; activate invited users; refuse deactivated, deleted and locked
 * ones; update name and role; reconcile IdP-sourced group memberships. */
#ifndef IDB_JIT_H
#define IDB_JIT_H

#include <stdbool.h>

#include <jansson.h>

#include "attrmap.h"
#include "connections.h"
#include "err.h"
#include "store.h"

typedef struct idb_jit_result {
	char user_id[37];
	char org_id[37];
	bool created;   /* a new user */
	bool linked;    /* an existing user got this identity */
	bool activated; /* pending -> active */
	bool changed;   /* anything a cached principal holds changed (status, name, role, groups) */
	int groups_added, groups_removed;
	/* Refusals: the precise reason for the activity log ("domain_not_allowed",
	 * "account_not_found", "deactivated", "deleted", "locked",
	 * "email_not_verified", "connection_disabled") and the message for the
	 * user, in words they can act on. */
	char reason[40];
	char message[200];
	/* With idb_jit_opts.report: {"groups_added": [...], "groups_removed": [...],
	 * "unknown_groups": [...], "role": "...", "name": "..."}; the caller
	 * json_decref()s it. NULL otherwise. */
	json_t *report;
} idb_jit_result;

typedef struct idb_jit_opts {
	bool dry_run; /* run everything, then roll back: what a login would do */
	bool report;  /* fill idb_jit_result.report */
	/* Called inside the login's transaction once the user is accepted (not
	 * on a dry run), so that what the caller writes for this login (its
	 * session row) commits with it; non-zero rolls everything back. */
	int (*in_tx)(idb_db *db, const idb_jit_result *r, void *arg, idb_err *err);
	void *in_tx_arg;
} idb_jit_opts;

/* Provisions (or refuses) the login of id (already verified by the protocol
 * layer) with profile p over connection c. Returns 0 with out->user_id set;
 * IDB_EFORBIDDEN with out->reason/message for a refusal (nothing written but
 * the login_failure activity row); other codes for failures. details_json
 * (may be NULL) is stored in the activity row of a success. */
int idb_jit_provision(idb_db *db, const idb_connection *c, const idb_identity *id, const idb_profile *p,
		      const char *ip, const idb_jit_opts *opts, idb_jit_result *out, idb_err *err);

/* The user an identity link (connection, subject) points to, without
 * provisioning anything: IDB_ENOTFOUND when there is no link. */
int idb_jit_identity_user(idb_db *db, const char *connection_id, const char *subject, char out_user[37],
			  idb_err *err);

/* Records a login refused before JIT ran (bad signature, replay, …) against
 * the connection's organisation. */
int idb_jit_record_failure(idb_db *db, const idb_connection *c, const char *reason, const char *detail,
			   const char *ip, idb_err *err);

#endif
