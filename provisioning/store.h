/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The PostgreSQL store: a fixed pool of libpq connections (sized to the worker
 * threads), statements prepared once per connection on first use, and the
 * numbered SQL migrations. libpq types stay inside provisioning/ (see db.h). */
#ifndef IDB_STORE_H
#define IDB_STORE_H

#include <stdbool.h>

#include "err.h"

typedef struct idb_store idb_store;
typedef struct idb_db idb_db; /* one leased connection */

/* Creates the pool. Connects one connection at once so that a wrong URL fails
 * at start-up; the others connect on first use. */
int idb_store_open(idb_store **out, const char *conninfo, int pool_size, int connect_timeout_s,
		   int statement_timeout_ms, idb_err *err);
void idb_store_free(idb_store *st);

/* Leases a connection, waiting up to 5 s for a free one; reconnects a broken
 * one. IDB_EUNAVAIL when PostgreSQL cannot be reached, IDB_ETIMEOUT when the
 * pool stays exhausted. Release with idb_store_release. */
int idb_store_acquire(idb_store *st, idb_db **out, idb_err *err);
/* Returns the connection to the pool; rolls back an open transaction. NULL ok. */
void idb_store_release(idb_db *db);

/* Applies every migration newer than the recorded version, each in its own
 * transaction, recording it in schema_migrations. *applied = how many ran. */
int idb_store_migrate(idb_store *st, int *applied, idb_err *err);

/* SELECT 1 round trip; updates the "up" state. */
bool idb_store_ping(idb_store *st);
/* Last known reachability (from pings and query failures). */
bool idb_store_up(const idb_store *st);
void idb_store_stats(idb_store *st, int *in_use, int *idle, int *size);

/* Transactions on a leased connection. */
int idb_db_begin(idb_db *db, idb_err *err);
int idb_db_commit(idb_db *db, idb_err *err);
void idb_db_rollback(idb_db *db);
/* True between idb_db_begin and commit/rollback. */
bool idb_db_in_tx(const idb_db *db);

#endif
