/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Reading the append-only audit log (writes go through idb_audit_record /
 * idb_audit_write). Newest first, scoped to one organisation. */
#ifndef IDB_AUDIT_QUERY_H
#define IDB_AUDIT_QUERY_H

#include "admin.h"

/* Raw query-string values; NULL when absent. */
typedef struct idb_audit_filter {
	const char *action; /* exact, or a prefix followed by ".*" ("user.*") */
	const char *actor;  /* user id or e-mail */
	const char *target; /* target id */
	const char *since;  /* RFC 3339, inclusive */
	const char *until;  /* RFC 3339, exclusive */
	const char *limit;  /* 1..500, default 100 */
	const char *cursor;
} idb_audit_filter;

/* {items: [{id, at, actor_id, actor_email, action, target_type, target_id,
 * before, after, ip, request_id}], next_cursor}. IDB_EINVAL with the field
 * for a bad filter value. */
int idb_audit_list(idb_db *db, const char *org_id, const idb_audit_filter *f, json_t **out, idb_err *err);

#endif
