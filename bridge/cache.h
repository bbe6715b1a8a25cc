/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Redis (hiredis): one blocking connection per thread, created lazily, with
 * connect and command timeouts, and reconnects with exponential back-off
 * (100 ms .. 5 s) so that a Redis outage costs callers nothing but a fast
 * IDB_EUNAVAIL. Redis only holds caches and single-use protocol state. */
#ifndef IDB_CACHE_H
#define IDB_CACHE_H

#include <stdbool.h>

#include "config.h"
#include "err.h"

typedef struct idb_cache idb_cache;

int idb_cache_open(idb_cache **out, const idb_config *cfg, idb_err *err);
void idb_cache_free(idb_cache *c);
/* Frees the calling thread's connection (worker threads do this on exit by
 * themselves; the main thread calls it before idb_cache_free). */
void idb_cache_thread_cleanup(void);

/* GET: 0 and *out (malloc'd, caller frees) on a hit, IDB_ENOTFOUND on a miss,
 * IDB_EUNAVAIL when Redis is away. */
int idb_cache_get(idb_cache *c, const char *key, char **out, idb_err *err);
/* Two GETs in one round trip; each result as for idb_cache_get (rc1/rc2). */
int idb_cache_get2(idb_cache *c, const char *k1, char **v1, int *rc1, const char *k2, char **v2, int *rc2,
		   idb_err *err);
/* GETDEL (single-use state): as idb_cache_get, and the key is gone. */
int idb_cache_take(idb_cache *c, const char *key, char **out, idb_err *err);
/* SET key val EX ttl_s. */
int idb_cache_set(idb_cache *c, const char *key, const char *val, long long ttl_s, idb_err *err);
/* SET key val NX EX ttl_s: 0 when set, IDB_EEXISTS when the key existed. */
int idb_cache_set_nx(idb_cache *c, const char *key, const char *val, long long ttl_s, idb_err *err);
/* DEL of n keys. */
int idb_cache_del(idb_cache *c, const char *const *keys, int n, idb_err *err);
/* INCR key with EXPIRE ttl_s on first increment; *out the new value. */
int idb_cache_incr(idb_cache *c, const char *key, long long ttl_s, long long *out, idb_err *err);

/* Starts the thread that hears other instances' invalidations (only when
 * cache.local_entries > 0); stopped by idb_cache_free. */
int idb_cache_start_subscriber(idb_cache *c, idb_err *err);

/* PING round trip (ignores the back-off so /readyz notices recovery). */
bool idb_cache_ping(idb_cache *c);
/* Last known reachability. */
bool idb_cache_up(const idb_cache *c);

#endif
