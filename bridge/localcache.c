/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "localcache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define SHARDS 64
#define BUCKETS 1024 /* per shard */

typedef struct entry {
	struct entry *next;
	char *key, *val;
	int64_t expires_ms;
} entry;

typedef struct shard {
	pthread_mutex_t mu;
	entry *b[BUCKETS];
	long long n;
} shard;

struct idb_localcache {
	long long max_per_shard;
	int64_t ttl_ms;
	atomic_bool enabled;
	atomic_ullong epoch;
	shard s[SHARDS];
};

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

idb_localcache *idb_localcache_new(long long max_entries, long long ttl_s)
{
	if (max_entries <= 0)
		return NULL;
	idb_localcache *lc = calloc(1, sizeof(*lc));
	if (!lc)
		return NULL;
	lc->max_per_shard = max_entries / SHARDS > 0 ? max_entries / SHARDS : 1;
	lc->ttl_ms = ttl_s * 1000;
	for (int i = 0; i < SHARDS; i++)
		pthread_mutex_init(&lc->s[i].mu, NULL);
	return lc;
}

static void shard_clear(shard *sh)
{
	for (int i = 0; i < BUCKETS; i++) {
		for (entry *e = sh->b[i], *n; e; e = n) {
			n = e->next;
			free(e->key);
			free(e->val);
			free(e);
		}
		sh->b[i] = NULL;
	}
	sh->n = 0;
}

void idb_localcache_free(idb_localcache *lc)
{
	if (!lc)
		return;
	for (int i = 0; i < SHARDS; i++) {
		shard_clear(&lc->s[i]);
		pthread_mutex_destroy(&lc->s[i].mu);
	}
	free(lc);
}

bool idb_localcache_covers(const char *key)
{
	return !strncmp(key, "idb:sess:", 9) || !strncmp(key, "idb:perm:", 9) || !strncmp(key, "idb:akey:", 9);
}

uint64_t idb_localcache_epoch(idb_localcache *lc)
{
	return lc ? atomic_load(&lc->epoch) : 0;
}

bool idb_localcache_enabled(idb_localcache *lc)
{
	return lc && atomic_load(&lc->enabled);
}

char *idb_localcache_get(idb_localcache *lc, const char *key)
{
	if (!idb_localcache_enabled(lc))
		return NULL;
	uint64_t h = hash(key);
	shard *sh = &lc->s[h % SHARDS];
	char *out = NULL;
	int64_t now = idb_now_ms_mono();
	pthread_mutex_lock(&sh->mu);
	for (entry *e = sh->b[(h / SHARDS) % BUCKETS]; e; e = e->next)
		if (strcmp(e->key, key) == 0) {
			if (e->expires_ms > now)
				out = strdup(e->val);
			break;
		}
	pthread_mutex_unlock(&sh->mu);
	return out;
}

void idb_localcache_put(idb_localcache *lc, const char *key, const char *val, uint64_t epoch)
{
	if (!idb_localcache_enabled(lc))
		return;
	uint64_t h = hash(key);
	shard *sh = &lc->s[h % SHARDS];
	entry **head = &sh->b[(h / SHARDS) % BUCKETS];
	char *v = strdup(val);
	if (!v)
		return;
	pthread_mutex_lock(&sh->mu);
	/* An invalidation since the caller read val: val may be stale. */
	if (atomic_load(&lc->epoch) != epoch) {
		pthread_mutex_unlock(&sh->mu);
		free(v);
		return;
	}
	entry *e;
	for (e = *head; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			break;
	if (!e) {
		if (sh->n >= lc->max_per_shard)
			shard_clear(sh); /* bounded; a refill costs one Redis read per key */
		e = calloc(1, sizeof(*e));
		if (!e || !(e->key = strdup(key))) {
			free(e);
			pthread_mutex_unlock(&sh->mu);
			free(v);
			return;
		}
		e->next = *head;
		*head = e;
		sh->n++;
	} else {
		free(e->val);
	}
	e->val = v;
	e->expires_ms = idb_now_ms_mono() + lc->ttl_ms;
	pthread_mutex_unlock(&sh->mu);
}

void idb_localcache_drop(idb_localcache *lc, const char *key)
{
	if (!lc)
		return;
	if (!key) {
		for (int i = 0; i < SHARDS; i++) {
			pthread_mutex_lock(&lc->s[i].mu);
			atomic_fetch_add(&lc->epoch, 1);
			shard_clear(&lc->s[i]);
			pthread_mutex_unlock(&lc->s[i].mu);
		}
		return;
	}
	uint64_t h = hash(key);
	shard *sh = &lc->s[h % SHARDS];
	pthread_mutex_lock(&sh->mu);
	/* The epoch moves under the shard lock so that a put racing with this
	 * drop either lands before (and is dropped) or sees the new epoch. */
	atomic_fetch_add(&lc->epoch, 1);
	for (entry **pp = &sh->b[(h / SHARDS) % BUCKETS]; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->key, key) == 0) {
			entry *e = *pp;
			*pp = e->next;
			free(e->key);
			free(e->val);
			free(e);
			sh->n--;
			break;
		}
	pthread_mutex_unlock(&sh->mu);
}

void idb_localcache_set_enabled(idb_localcache *lc, bool on)
{
	if (!lc)
		return;
	atomic_store(&lc->enabled, false);
	idb_localcache_drop(lc, NULL);
	atomic_store(&lc->enabled, on);
}
