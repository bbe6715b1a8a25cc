/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* IdP connections by slug, kept in process memory. Every SSO request starts
 * by reading its connection; that row changes a few times a year. A thread
 * LISTENs on PostgreSQL's idb_connections channel (a trigger NOTIFYs on any
 * change of idp_connections, whoever makes it: the API, idbridgectl, a DBA
 * with psql) on a connection of its own. A copy is served only while that
 * listener is connected and nothing was notified since the copy was read;
 * any notification, a lost listener connection, or an age above max_age_s
 * sends the next read to PostgreSQL. */
#ifndef IDB_CONNCACHE_H
#define IDB_CONNCACHE_H

#include <stdbool.h>

#include "connections.h"
#include "err.h"
#include "store.h"

typedef struct idb_conncache idb_conncache;

/* Starts the listener thread (it connects in the background and retries).
 * max_entries 0: no copies, every lookup reads PostgreSQL. */
int idb_conncache_open(idb_conncache **out, const char *conninfo, int max_entries, int max_age_s, idb_err *err);
void idb_conncache_free(idb_conncache *cc);

/* idb_connection_by_slug, from the copy when it is current. cc may be NULL. */
int idb_conncache_by_slug(idb_conncache *cc, idb_store *st, const char *slug, idb_connection *out, idb_err *err);

/* This instance changed a connection: drop the copies now rather than when
 * its own notification comes back (the caller's next request must see the
 * change). Other instances hear the NOTIFY. cc may be NULL. */
void idb_conncache_changed(idb_conncache *cc);

/* Whether the listener is connected (copies may be served). */
bool idb_conncache_listening(idb_conncache *cc);
/* Look-ups served from memory / read from PostgreSQL since start. */
void idb_conncache_stats(idb_conncache *cc, unsigned long long *hits, unsigned long long *misses);

#endif
