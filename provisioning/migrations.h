/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The SQL migrations compiled into the binary (generated from migrations/). */
#ifndef IDB_MIGRATIONS_H
#define IDB_MIGRATIONS_H

typedef struct idb_migration {
	int version;
	const char *name;
	const char *sql;
} idb_migration;

/* Sorted by version. */
extern const idb_migration idb_migrations[];
extern const unsigned idb_migrations_count;

#endif
