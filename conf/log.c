/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

idb_log_level idb_log_threshold = IDB_LOG_INFO;

static _Thread_local char tl_rid[40];

void idb_log_set_level(idb_log_level level)
{
	idb_log_threshold = level;
}

int idb_log_level_parse(const char *s)
{
	static const char *names[] = {"debug", "info", "warn", "error", "off"};
	for (int i = 0; i < 5; i++)
		if (s && strcasecmp(s, names[i]) == 0)
			return i;
	return -1;
}

void idb_log_set_request_id(const char *rid)
{
	snprintf(tl_rid, sizeof(tl_rid), "%s", rid ? rid : "");
}

const char *idb_log_request_id(void)
{
	return tl_rid;
}

void idb_log_write(idb_log_level level, const char *file, int line, const char *fmt, ...)
{
	static const char *lv[] = {"debug", "info", "warn", "error", "off"};
	char ts[40], msg[2048];
	struct timespec now;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Keep log lines single-line whatever the message holds. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	const char *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	/* One fprintf per line: stdio locks the stream, so lines never interleave. */
	fprintf(stderr, "%s.%03ldZ %-5s [%s] %s:%d %s\n", ts, now.tv_nsec / 1000000, lv[level],
		tl_rid[0] ? tl_rid : "-", base, line, msg);
}
