/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Bulk import of users from CSV (issue 7): a preview that writes no user,
 * kept in import_previews for IDB_IMPORT_PREVIEW_TTL_S so that any instance
 * can confirm it; the error report; the confirm that applies it. The file
 * format and the row rules that need no database are csv_import.h's; here
 * the rows are checked against the organisation: an e-mail that is already a
 * user is a skip ("Duplicate email"), a group the organisation does not have
 * is an error ("Group not found: NAME").
 *
 * Confirm applies the preview's "add" rows in ONE transaction: each user is
 * created pending (created_via 'import') with the row's role, memberships
 * with source 'import', an invitation and its mail in the outbox (the
 * invitation module's own, so the mail is that of every invitation), one
 * "user.import" audit row per user and one "import.confirm" row for the
 * import. The preview row is locked first (FOR UPDATE) and its result stored
 * in the same transaction, so a second or concurrent confirm answers with
 * the first result and creates nothing. Rows whose data changed since the
 * preview are reported per row with "conflict": true and never applied: an
 * e-mail that became a user meanwhile is a skip "Duplicate email" (even when
 * it is committed while the import runs), a group deleted meanwhile an error
 * "Group not found: NAME" (groups used are locked against deletion until the
 * commit). A crash leaves the import whole or absent.
 *
 * Previews and results are JSON (admin.h); ids of another organisation, and
 * ids that are not UUIDs, are IDB_ENOTFOUND. */
#ifndef IDB_IMPORT_H
#define IDB_IMPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "admin.h"
#include "config.h"

#define IDB_IMPORT_PREVIEW_TTL_S 3600
/* A preview (and a confirmed import's result) is deleted this long after it
 * expired; until then a confirm of it answers 410 (or the stored result). */
#define IDB_IMPORT_KEEP_S (7 * 86400)

/* Parses data (the CSV file, len bytes), checks its rows against the actor's
 * organisation and, with store, keeps the preview under a new id together
 * with an "import.preview" audit row (one transaction; nothing else is
 * written, and without store nothing at all). *out:
 *   {id (null without store), status "pending", expires_at (null without
 *    store), add, skip, error,
 *    rows: [{line, email, name, role (null when invalid), groups[], action
 *            "add"|"skip"|"error", message ("" for add)}]}
 * IDB_EINVAL with field "file" and a message when the file is refused. */
int idb_import_preview(idb_db *db, const idb_actor *a, const char *data, size_t len, bool store, json_t **out,
		       idb_err *err);

/* The stored preview: as idb_import_preview's answer while pending, the
 * confirm's result once confirmed. IDB_EEXPIRED for a pending preview past
 * its expiry. */
int idb_import_get(idb_db *db, const char *org_id, const char *preview_id, json_t **out, idb_err *err);

/* Applies the preview (see above). *out: {id, status "confirmed",
 * confirmed_at, add (users created), skip, error, rows: [{line, email, name,
 * role, groups, action, message, user_id (created rows), conflict (rows that
 * changed since the preview)}]}. IDB_ENOTFOUND for an unknown id,
 * IDB_EEXPIRED for a pending preview past its expiry. */
int idb_import_confirm(idb_db *db, const idb_config *cfg, const idb_actor *a, const char *preview_id, json_t **out,
		       idb_err *err);

/* The error report of a preview (after a confirm, of its result): CSV with
 * the header email,name,role,groups,error and one record per rejected row
 * (its cells as uploaded and the message), cells neutralised against
 * spreadsheet formulas. *out is malloc'd (NUL-terminated, *len bytes).
 * Errors as idb_import_get. */
int idb_import_errors_csv(idb_db *db, const char *org_id, const char *preview_id, char **out, size_t *len,
			  idb_err *err);

/* Deletes previews that expired more than IDB_IMPORT_KEEP_S ago. */
int idb_import_purge(idb_db *db, long *removed, idb_err *err);

#endif
