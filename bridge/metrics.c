/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "metrics.h"
#include "conncache.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define MAX_ROUTES 128
#define NSTATUS 20
#define NBUCKETS 14

static const unsigned statuses[NSTATUS] = {200, 201, 204, 301, 302, 303, 304, 400, 401, 403,
					   404, 405, 409, 410, 413, 415, 422, 429, 500, 503};
static const double buckets[NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
					 0.1,	 0.25,	0.5,	1,     2.5,   5,     10};
static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "OTHER"};
#define NMETHODS 8

typedef struct route_stats {
	atomic_ullong count[NMETHODS][NSTATUS + 1]; /* last column: other statuses */
	atomic_ullong bucket[NBUCKETS + 1];         /* last: +Inf */
	atomic_ullong sum_us;
	atomic_ullong total;
} route_stats;

static route_stats rstats[MAX_ROUTES + 1]; /* last: unmatched */
static atomic_ullong cache_stats[IDB_CACHE_KINDS][3];
static atomic_ullong fallbacks;

static int method_index(const char *m)
{
	for (int i = 0; i < NMETHODS - 1; i++)
		if (strcmp(m, methods[i]) == 0)
			return i;
	return NMETHODS - 1;
}

void idb_metrics_request(int route, const char *method, unsigned status, double seconds)
{
	route_stats *r = &rstats[route >= 0 && route < MAX_ROUTES ? route : MAX_ROUTES];
	int s = NSTATUS;
	for (int i = 0; i < NSTATUS; i++)
		if (statuses[i] == status) {
			s = i;
			break;
		}
	atomic_fetch_add_explicit(&r->count[method_index(method)][s], 1, memory_order_relaxed);
	int b = NBUCKETS;
	for (int i = 0; i < NBUCKETS; i++)
		if (seconds <= buckets[i]) {
			b = i;
			break;
		}
	atomic_fetch_add_explicit(&r->bucket[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->sum_us, (unsigned long long)(seconds * 1e6), memory_order_relaxed);
	atomic_fetch_add_explicit(&r->total, 1, memory_order_relaxed);
}

void idb_metrics_cache(idb_cache_kind kind, idb_cache_result result)
{
	atomic_fetch_add_explicit(&cache_stats[kind][result], 1, memory_order_relaxed);
}

void idb_metrics_fallback(void)
{
	atomic_fetch_add_explicit(&fallbacks, 1, memory_order_relaxed);
}

typedef struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t ncap = (b->cap + (size_t)n + 1) * 2;
		char *np = realloc(b->p, ncap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

static const char *route_label(int i)
{
	return i < (int)idb_routes_count ? idb_routes[i].pattern : "unmatched";
}

char *idb_metrics_render(idb_app *app, size_t *len)
{
	sbuf b = {.p = malloc(8192), .cap = 8192};
	if (!b.p)
		return NULL;
	b.p[0] = '\0';
	int nroutes = (int)(idb_routes_count < MAX_ROUTES ? idb_routes_count : MAX_ROUTES);
	sb_printf(&b, "# HELP idbridge_http_requests_total HTTP requests by route, method and status.\n"
		      "# TYPE idbridge_http_requests_total counter\n");
	for (int ri = 0; ri <= nroutes; ri++) {
		int idx = ri == nroutes ? MAX_ROUTES : ri;
		for (int m = 0; m < NMETHODS; m++)
			for (int s = 0; s <= NSTATUS; s++) {
				unsigned long long v = atomic_load_explicit(&rstats[idx].count[m][s], memory_order_relaxed);
				if (!v)
					continue;
				char st[8];
				if (s < NSTATUS)
					snprintf(st, sizeof(st), "%u", statuses[s]);
				else
					snprintf(st, sizeof(st), "other");
				sb_printf(&b, "idbridge_http_requests_total{route=\"%s\",method=\"%s\",status=\"%s\"} %llu\n",
					  route_label(ri == nroutes ? MAX_ROUTES : ri), methods[m], st, v);
			}
	}
	sb_printf(&b, "# HELP idbridge_http_request_duration_seconds Time from first byte to response queued.\n"
		      "# TYPE idbridge_http_request_duration_seconds histogram\n");
	for (int ri = 0; ri <= nroutes; ri++) {
		int idx = ri == nroutes ? MAX_ROUTES : ri;
		unsigned long long total = atomic_load_explicit(&rstats[idx].total, memory_order_relaxed);
		if (!total)
			continue;
		const char *label = route_label(ri == nroutes ? MAX_ROUTES : ri);
		unsigned long long cum = 0;
		for (int k = 0; k <= NBUCKETS; k++) {
			cum += atomic_load_explicit(&rstats[idx].bucket[k], memory_order_relaxed);
			if (k < NBUCKETS)
				sb_printf(&b, "idbridge_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
					  label, buckets[k], cum);
			else
				sb_printf(&b, "idbridge_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
					  label, cum);
		}
		sb_printf(&b, "idbridge_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", label,
			  (double)atomic_load_explicit(&rstats[idx].sum_us, memory_order_relaxed) / 1e6);
		sb_printf(&b, "idbridge_http_request_duration_seconds_count{route=\"%s\"} %llu\n", label, total);
	}
	static const char *const kinds[] = {"session", "permission", "apikey"};
	static const char *const results[] = {"hit", "miss", "error"};
	sb_printf(&b, "# HELP idbridge_cache_requests_total Redis cache look-ups by cache and result.\n"
		      "# TYPE idbridge_cache_requests_total counter\n");
	for (int k = 0; k < IDB_CACHE_KINDS; k++)
		for (int r = 0; r < 3; r++)
			sb_printf(&b, "idbridge_cache_requests_total{cache=\"%s\",result=\"%s\"} %llu\n", kinds[k],
				  results[r], atomic_load_explicit(&cache_stats[k][r], memory_order_relaxed));
	sb_printf(&b,
		  "# HELP idbridge_cache_fallbacks_total Look-ups served from PostgreSQL because Redis was unavailable.\n"
		  "# TYPE idbridge_cache_fallbacks_total counter\nidbridge_cache_fallbacks_total %llu\n",
		  atomic_load_explicit(&fallbacks, memory_order_relaxed));
	unsigned long long ch = 0, cm = 0;
	idb_conncache_stats(app->conns, &ch, &cm);
	sb_printf(&b,
		  "# HELP idbridge_connection_cache_requests_total IdP connection look-ups by result (hit = served from"
		  " memory).\n"
		  "# TYPE idbridge_connection_cache_requests_total counter\n"
		  "idbridge_connection_cache_requests_total{result=\"hit\"} %llu\n"
		  "idbridge_connection_cache_requests_total{result=\"miss\"} %llu\n"
		  "# HELP idbridge_connection_cache_listening Whether the PostgreSQL LISTEN connection that keeps the"
		  " connection cache current is up.\n"
		  "# TYPE idbridge_connection_cache_listening gauge\nidbridge_connection_cache_listening %d\n",
		  ch, cm, idb_conncache_listening(app->conns) ? 1 : 0);
	int in_use = 0, idle = 0, size = 0;
	idb_store_stats(app->store, &in_use, &idle, &size);
	sb_printf(&b,
		  "# HELP idbridge_db_pool_connections PostgreSQL pool connections by state.\n"
		  "# TYPE idbridge_db_pool_connections gauge\n"
		  "idbridge_db_pool_connections{state=\"in_use\"} %d\n"
		  "idbridge_db_pool_connections{state=\"idle\"} %d\n"
		  "# HELP idbridge_db_pool_size Configured PostgreSQL pool size.\n"
		  "# TYPE idbridge_db_pool_size gauge\nidbridge_db_pool_size %d\n",
		  in_use, idle, size);
	sb_printf(&b,
		  "# HELP idbridge_redis_up Whether Redis answered the last command.\n"
		  "# TYPE idbridge_redis_up gauge\nidbridge_redis_up %d\n"
		  "# HELP idbridge_postgres_up Whether PostgreSQL answered the last query.\n"
		  "# TYPE idbridge_postgres_up gauge\nidbridge_postgres_up %d\n"
		  "# HELP idbridge_http_inflight Requests being processed.\n"
		  "# TYPE idbridge_http_inflight gauge\nidbridge_http_inflight %d\n",
		  idb_cache_up(app->cache) ? 1 : 0, idb_store_up(app->store) ? 1 : 0, atomic_load(&app->inflight));
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}
