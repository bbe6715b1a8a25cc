/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Prometheus metrics: lock-free counters (C11 atomics) rendered as text. */
#ifndef IDB_METRICS_H
#define IDB_METRICS_H

#include <stddef.h>

#include "app.h"

typedef enum { IDB_CACHE_SESSION = 0, IDB_CACHE_PERMISSION, IDB_CACHE_APIKEY, IDB_CACHE_KINDS } idb_cache_kind;
typedef enum { IDB_CACHE_HIT = 0, IDB_CACHE_MISS, IDB_CACHE_ERROR } idb_cache_result;

/* route: index into idb_routes, or -1 for requests that matched no route. */
void idb_metrics_request(int route, const char *method, unsigned status, double seconds);
void idb_metrics_cache(idb_cache_kind kind, idb_cache_result result);
/* A lookup served from PostgreSQL because Redis was away. */
void idb_metrics_fallback(void);
/* Renders everything (plus gauges read from app) into a malloc'd string. */
char *idb_metrics_render(idb_app *app, size_t *len);

#endif
