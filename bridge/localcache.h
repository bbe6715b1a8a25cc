/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* An in-process copy of the Redis entries every request reads (sessions,
 * permission sets, API keys), kept coherent across instances by Redis pub/sub:
 * every delete is published, every instance drops its copy when it hears it.
 * The copy is only used while this instance's subscriber is connected; when
 * it is not (Redis away, connection lost), the copy is emptied and every read
 * goes to Redis (or PostgreSQL) again, so a missed invalidation can never
 * serve stale data. Bounded in entries and in age (cache.local_ttl_s). */
#ifndef IDB_LOCALCACHE_H
#define IDB_LOCALCACHE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct idb_localcache idb_localcache;

/* max_entries 0 disables the copy (every call is then a cheap no-op). */
idb_localcache *idb_localcache_new(long long max_entries, long long ttl_s);
void idb_localcache_free(idb_localcache *lc);

/* Whether key belongs to the invalidated families ("idb:sess:", "idb:perm:",
 * "idb:akey:"). */
bool idb_localcache_covers(const char *key);

/* Copy of the value (malloc'd) or NULL on a miss / while disabled. */
char *idb_localcache_get(idb_localcache *lc, const char *key);
/* Stores val unless disabled or an invalidation happened since epoch (taken
 * with idb_localcache_epoch before reading the value from Redis). */
void idb_localcache_put(idb_localcache *lc, const char *key, const char *val, uint64_t epoch);
uint64_t idb_localcache_epoch(idb_localcache *lc);
/* Drops key (or everything when key is NULL) and moves the epoch on. */
void idb_localcache_drop(idb_localcache *lc, const char *key);
/* The subscriber says whether invalidations are being received. Turning on
 * or off also empties the copy. */
void idb_localcache_set_enabled(idb_localcache *lc, bool on);
bool idb_localcache_enabled(idb_localcache *lc);

#endif
