/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Background upkeep on one thread: purging expired sessions and refreshing
 * IdP metadata published at a URL. Each task runs on one instance at a time
 * (PostgreSQL advisory locks), so any number of instances can run it. */
#ifndef IDB_MAINTENANCE_H
#define IDB_MAINTENANCE_H

#include "app.h"
#include "err.h"

typedef struct idb_maintenance idb_maintenance;

int idb_maintenance_start(idb_maintenance **out, idb_app *app, idb_err *err);
/* Stops the thread and waits for it; NULL is a no-op. */
void idb_maintenance_stop(idb_maintenance *m);
/* Runs one metadata refresh pass now (used by the thread and by tests). */
void idb_maintenance_refresh_metadata(idb_app *app);

#endif
