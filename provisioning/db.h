/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Query helpers for provisioning/ modules only: PGresult never leaves this
 * layer. Statements are identified by their (static) SQL text and prepared
 * once per connection. */
#ifndef IDB_DB_H
#define IDB_DB_H

#include <libpq-fe.h>

#include "err.h"
#include "store.h"

/* Runs sql with text params (NULL entries are SQL NULL). On success returns a
 * result the caller PQclear()s (status TUPLES_OK or COMMAND_OK). On failure
 * returns NULL with err set: IDB_EEXISTS (unique violation), IDB_EINVAL
 * (check/foreign-key/format violation), IDB_ETIMEOUT (statement timeout),
 * IDB_ECONFLICT (serialization), IDB_EUNAVAIL (connection lost). sql must be
 * a string with static storage duration: its address keys the prepared
 * statement cache. */
PGresult *idb_db_query(idb_db *db, const char *sql, int nparams, const char *const *params, idb_err *err);
/* As idb_db_query for statements whose rows are not needed; *affected gets
 * the row count when not NULL. */
int idb_db_exec(idb_db *db, const char *sql, int nparams, const char *const *params, long *affected, idb_err *err);
/* As idb_db_query, but the statement is planned for these parameter values
 * and not prepared: for queries assembled at run time from static fragments
 * (list filters), where a prepared generic plan would ignore selectivity.
 * Never put input into sql itself; pass it as a parameter. */
PGresult *idb_db_query_adhoc(idb_db *db, const char *sql, int nparams, const char *const *params, idb_err *err);
/* Runs a script of several statements (no parameters, not prepared). */
int idb_db_exec_script(idb_db *db, const char *sql, idb_err *err);

/* Value of row r, column c, or NULL when SQL NULL. */
static inline const char *idb_db_val(const PGresult *res, int r, int c)
{
	return PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c);
}
/* Same, "" for NULL. */
static inline const char *idb_db_str(const PGresult *res, int r, int c)
{
	return PQgetvalue(res, r, c);
}

#endif
