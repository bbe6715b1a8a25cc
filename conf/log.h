/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Logging: one macro family; the level is checked before formatting and every
 * line carries the request id of the calling thread (set by the HTTP layer). */
#ifndef IDB_LOG_H
#define IDB_LOG_H

#include <stdbool.h>

typedef enum { IDB_LOG_DEBUG = 0, IDB_LOG_INFO, IDB_LOG_WARN, IDB_LOG_ERROR, IDB_LOG_OFF } idb_log_level;

extern idb_log_level idb_log_threshold;

void idb_log_set_level(idb_log_level level);
/* Parses "debug|info|warn|error|off"; returns -1 when unknown. */
int idb_log_level_parse(const char *s);
/* The request id printed on this thread's lines; NULL or "" clears it. */
void idb_log_set_request_id(const char *rid);
const char *idb_log_request_id(void);
void idb_log_write(idb_log_level level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define idb_log_at(lvl, ...)                                                   \
	do {                                                                   \
		if ((lvl) >= idb_log_threshold)                                \
			idb_log_write((lvl), __FILE__, __LINE__, __VA_ARGS__); \
	} while (0)
#define idb_log_debug(...) idb_log_at(IDB_LOG_DEBUG, __VA_ARGS__)
#define idb_log_info(...) idb_log_at(IDB_LOG_INFO, __VA_ARGS__)
#define idb_log_warn(...) idb_log_at(IDB_LOG_WARN, __VA_ARGS__)
#define idb_log_error(...) idb_log_at(IDB_LOG_ERROR, __VA_ARGS__)

#endif
