/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* `idbridgectl users import`: the API's import (provisioning/import.h) run
 * from a file, with the same rules and the same report on stdout. Kept out
 * of ctl_main.c, whose connsave.h declares another idb_actor. */
#ifndef IDB_CTL_IMPORT_H
#define IDB_CTL_IMPORT_H

#include <stdbool.h>

#include "config.h"
#include "err.h"
#include "store.h"

/* Reads path (at most 2 MiB), previews it for org_id and, unless dry_run,
 * confirms the preview (valid rows are created and invited even when others
 * are rejected). Prints a line per row ("line N  email  action  message")
 * and the counts. *rejected: rows with action error. IDB_EINVAL (field
 * "file" or "--file") when the file is refused or unreadable; nothing is
 * written then. The audit log names "idbridgectl" as the actor. */
int idb_ctl_users_import(idb_db *db, const idb_config *cfg, const char *org_id, const char *path, bool dry_run,
			 long *rejected, idb_err *err);

#endif
