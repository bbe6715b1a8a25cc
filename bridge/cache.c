/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis.h>

#include "localcache.h"
#include "log.h"
#include "util.h"

static struct timeval ms_tv(long long ms);

struct idb_cache {
	const idb_config *cfg;
	atomic_bool up;
	idb_localcache *local;
	char channel[64];
	/* invalidation subscriber */
	pthread_t sub_thread;
	bool sub_started;
	pthread_mutex_t sub_mu;
	pthread_cond_t sub_cv;
	bool sub_stop;
	int sub_fd;
};

typedef struct conn_state {
	redisContext *ctx;
	int64_t retry_at_ms; /* no connect attempt before this (monotonic ms) */
	int64_t backoff_ms;
} conn_state;

static pthread_key_t conn_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void conn_state_free(void *p)
{
	conn_state *cs = p;
	if (cs) {
		if (cs->ctx)
			redisFree(cs->ctx);
		free(cs);
	}
}

static void make_key(void)
{
	(void)pthread_key_create(&conn_key, conn_state_free);
}

void idb_cache_thread_cleanup(void)
{
	pthread_once(&key_once, make_key);
	conn_state *cs = pthread_getspecific(conn_key);
	conn_state_free(cs);
	pthread_setspecific(conn_key, NULL);
}

int idb_cache_open(idb_cache **out, const idb_config *cfg, idb_err *err)
{
	pthread_once(&key_once, make_key);
	idb_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	c->cfg = cfg;
	atomic_store(&c->up, false);
	/* Pub/sub channels are not per database: name ours after it. */
	snprintf(c->channel, sizeof(c->channel), "idb:inval:%d", cfg->redis_db);
	c->local = idb_localcache_new(cfg->local_cache_entries, cfg->local_cache_ttl_s);
	c->sub_fd = -1;
	pthread_mutex_init(&c->sub_mu, NULL);
	pthread_cond_init(&c->sub_cv, NULL);
	*out = c;
	/* A Redis that is down at start-up is not fatal: we degrade and retry. */
	if (!idb_cache_ping(c))
		idb_log_warn("Redis at %s:%d is unreachable; continuing with PostgreSQL fallbacks", cfg->redis_host,
			     cfg->redis_port);
	return 0;
}

/* --- invalidation subscriber --- */

static void *subscriber(void *arg)
{
	idb_cache *c = arg;
	const idb_config *cfg = c->cfg;
	int64_t backoff_ms = 0;
	for (;;) {
		pthread_mutex_lock(&c->sub_mu);
		if (backoff_ms) {
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += backoff_ms / 1000;
			until.tv_nsec += (backoff_ms % 1000) * 1000000;
			if (until.tv_nsec >= 1000000000) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000;
			}
			while (!c->sub_stop && pthread_cond_timedwait(&c->sub_cv, &c->sub_mu, &until) == 0)
				;
		}
		bool stop = c->sub_stop;
		pthread_mutex_unlock(&c->sub_mu);
		if (stop)
			break;
		backoff_ms = backoff_ms ? (backoff_ms * 2 > 5000 ? 5000 : backoff_ms * 2) : 200;
		redisContext *ctx = redisConnectWithTimeout(cfg->redis_host, cfg->redis_port, ms_tv(cfg->redis_connect_timeout_ms));
		if (!ctx || ctx->err) {
			if (ctx)
				redisFree(ctx);
			continue;
		}
		bool ok = true;
		if (cfg->redis_password && cfg->redis_password[0]) {
			const char *argv[] = {"AUTH", cfg->redis_password};
			redisReply *r = redisCommandArgv(ctx, 2, argv, NULL);
			ok = r && r->type == REDIS_REPLY_STATUS;
			if (r)
				freeReplyObject(r);
		}
		if (ok) {
			const char *argv[] = {"SUBSCRIBE", c->channel};
			redisReply *r = redisCommandArgv(ctx, 2, argv, NULL);
			ok = r && r->type == REDIS_REPLY_ARRAY;
			if (r)
				freeReplyObject(r);
		}
		pthread_mutex_lock(&c->sub_mu);
		c->sub_fd = ok ? ctx->fd : -1;
		stop = c->sub_stop;
		pthread_mutex_unlock(&c->sub_mu);
		if (!ok || stop) {
			redisFree(ctx);
			continue;
		}
		/* From here on every invalidation reaches us: the copy may serve. */
		idb_localcache_set_enabled(c->local, true);
		backoff_ms = 0;
		idb_log_debug("invalidation subscriber listening on %s", c->channel);
		for (;;) {
			redisReply *r = NULL;
			if (redisGetReply(ctx, (void **)&r) != REDIS_OK || !r)
				break;
			if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[2]->type == REDIS_REPLY_STRING) {
				const char *key = r->element[2]->str;
				idb_localcache_drop(c->local, strcmp(key, "*") == 0 ? NULL : key);
			}
			freeReplyObject(r);
		}
		/* Invalidations may be missed from now on: stop serving the copy. */
		idb_localcache_set_enabled(c->local, false);
		pthread_mutex_lock(&c->sub_mu);
		c->sub_fd = -1;
		stop = c->sub_stop;
		pthread_mutex_unlock(&c->sub_mu);
		redisFree(ctx);
		if (!stop)
			idb_log_warn("invalidation subscriber lost Redis; serving without the in-process cache until it is back");
	}
	return NULL;
}

int idb_cache_start_subscriber(idb_cache *c, idb_err *err)
{
	if (!c->local)
		return 0;
	if (pthread_create(&c->sub_thread, NULL, subscriber, c) != 0)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "cannot start the cache invalidation thread");
	c->sub_started = true;
	return 0;
}

void idb_cache_free(idb_cache *c)
{
	if (!c)
		return;
	if (c->sub_started) {
		pthread_mutex_lock(&c->sub_mu);
		c->sub_stop = true;
		if (c->sub_fd >= 0)
			shutdown(c->sub_fd, SHUT_RDWR); /* unblocks the subscriber's read */
		pthread_cond_signal(&c->sub_cv);
		pthread_mutex_unlock(&c->sub_mu);
		pthread_join(c->sub_thread, NULL);
	}
	pthread_mutex_destroy(&c->sub_mu);
	pthread_cond_destroy(&c->sub_cv);
	idb_localcache_free(c->local);
	free(c);
}

static struct timeval ms_tv(long long ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000)};
	return tv;
}

static void conn_fail(idb_cache *c, conn_state *cs, const char *why)
{
	if (atomic_exchange(&c->up, false))
		idb_log_warn("Redis unavailable: %s", why);
	if (cs->ctx) {
		redisFree(cs->ctx);
		cs->ctx = NULL;
	}
	cs->backoff_ms = cs->backoff_ms ? cs->backoff_ms * 2 : 100;
	if (cs->backoff_ms > 5000)
		cs->backoff_ms = 5000;
	cs->retry_at_ms = idb_now_ms_mono() + cs->backoff_ms;
}

static redisReply *simple_cmd(redisContext *ctx, int argc, const char **argv)
{
	return redisCommandArgv(ctx, argc, argv, NULL);
}

/* The calling thread's connection, connecting when needed; NULL while Redis is
 * away (inside the back-off window, or the connect failed). */
static redisContext *get_conn(idb_cache *c, bool ignore_backoff)
{
	conn_state *cs = pthread_getspecific(conn_key);
	if (!cs) {
		cs = calloc(1, sizeof(*cs));
		if (!cs)
			return NULL;
		pthread_setspecific(conn_key, cs);
	}
	if (cs->ctx)
		return cs->ctx;
	if (!ignore_backoff && idb_now_ms_mono() < cs->retry_at_ms)
		return NULL;
	const idb_config *cfg = c->cfg;
	redisContext *ctx = redisConnectWithTimeout(cfg->redis_host, cfg->redis_port, ms_tv(cfg->redis_connect_timeout_ms));
	if (!ctx || ctx->err) {
		char why[512];
		snprintf(why, sizeof(why), "connect %s:%d: %s", cfg->redis_host, cfg->redis_port,
			 ctx ? ctx->errstr : "out of memory");
		if (ctx)
			redisFree(ctx);
		conn_fail(c, cs, why);
		return NULL;
	}
	redisSetTimeout(ctx, ms_tv(cfg->redis_command_timeout_ms));
	redisEnableKeepAlive(ctx);
	cs->ctx = ctx;
	if (cfg->redis_password && cfg->redis_password[0]) {
		const char *argv[] = {"AUTH", cfg->redis_password};
		redisReply *r = simple_cmd(ctx, 2, argv);
		bool ok = r && r->type == REDIS_REPLY_STATUS;
		if (r)
			freeReplyObject(r);
		if (!ok) {
			conn_fail(c, cs, "AUTH refused");
			return NULL;
		}
	}
	if (cfg->redis_db) {
		char db[16];
		snprintf(db, sizeof(db), "%d", cfg->redis_db);
		const char *argv[] = {"SELECT", db};
		redisReply *r = simple_cmd(ctx, 2, argv);
		bool ok = r && r->type == REDIS_REPLY_STATUS;
		if (r)
			freeReplyObject(r);
		if (!ok) {
			conn_fail(c, cs, "SELECT failed");
			return NULL;
		}
	}
	cs->backoff_ms = 0;
	if (!atomic_exchange(&c->up, true))
		idb_log_info("Redis connected at %s:%d", cfg->redis_host, cfg->redis_port);
	return ctx;
}

/* Runs one command; on a transport error drops the connection. Returns the
 * reply (caller frees) or NULL with err = IDB_EUNAVAIL. */
static redisReply *run(idb_cache *c, int argc, const char **argv, idb_err *err)
{
	redisContext *ctx = get_conn(c, false);
	if (!ctx) {
		idb_err_set(err, IDB_EUNAVAIL, NULL, "Redis unavailable");
		return NULL;
	}
	redisReply *r = simple_cmd(ctx, argc, argv);
	if (!r) {
		conn_fail(c, pthread_getspecific(conn_key), ctx->errstr);
		idb_err_set(err, IDB_EUNAVAIL, NULL, "Redis unavailable");
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		idb_log_error("Redis %s: %s", argv[0], r->str);
		freeReplyObject(r);
		idb_err_set(err, IDB_EUNAVAIL, NULL, "Redis error");
		return NULL;
	}
	return r;
}

static int reply_string(redisReply *r, char **out, idb_err *err)
{
	int rc;
	if (r->type == REDIS_REPLY_NIL) {
		rc = IDB_ENOTFOUND;
	} else if (r->type == REDIS_REPLY_STRING) {
		*out = malloc(r->len + 1);
		if (*out) {
			memcpy(*out, r->str, r->len);
			(*out)[r->len] = '\0';
			rc = 0;
		} else {
			rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		}
	} else {
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "unexpected Redis reply type %d", r->type);
	}
	return rc;
}

int idb_cache_get(idb_cache *c, const char *key, char **out, idb_err *err)
{
	*out = NULL;
	bool local = c->local && idb_localcache_covers(key);
	if (local && (*out = idb_localcache_get(c->local, key)) != NULL)
		return 0;
	uint64_t epoch = local ? idb_localcache_epoch(c->local) : 0;
	const char *argv[] = {"GET", key};
	redisReply *r = run(c, 2, argv, err);
	if (!r)
		return IDB_EUNAVAIL;
	int rc = reply_string(r, out, err);
	freeReplyObject(r);
	if (rc == 0 && local)
		idb_localcache_put(c->local, key, *out, epoch);
	return rc;
}

int idb_cache_get2(idb_cache *c, const char *k1, char **v1, int *rc1, const char *k2, char **v2, int *rc2,
		   idb_err *err)
{
	*v1 = *v2 = NULL;
	*rc1 = *rc2 = IDB_EUNAVAIL;
	redisContext *ctx = get_conn(c, false);
	if (!ctx)
		return idb_err_set(err, IDB_EUNAVAIL, NULL, "Redis unavailable");
	const char *a1[] = {"GET", k1};
	const char *a2[] = {"GET", k2};
	redisAppendCommandArgv(ctx, 2, a1, NULL);
	redisAppendCommandArgv(ctx, 2, a2, NULL);
	redisReply *r1 = NULL, *r2 = NULL;
	if (redisGetReply(ctx, (void **)&r1) != REDIS_OK || redisGetReply(ctx, (void **)&r2) != REDIS_OK) {
		if (r1)
			freeReplyObject(r1);
		conn_fail(c, pthread_getspecific(conn_key), ctx->errstr);
		return idb_err_set(err, IDB_EUNAVAIL, NULL, "Redis unavailable");
	}
	*rc1 = reply_string(r1, v1, err);
	*rc2 = reply_string(r2, v2, err);
	freeReplyObject(r1);
	freeReplyObject(r2);
	return 0;
}

int idb_cache_take(idb_cache *c, const char *key, char **out, idb_err *err)
{
	*out = NULL;
	const char *argv[] = {"GETDEL", key};
	redisReply *r = run(c, 2, argv, err);
	if (!r)
		return IDB_EUNAVAIL;
	int rc = reply_string(r, out, err);
	freeReplyObject(r);
	return rc;
}

int idb_cache_set(idb_cache *c, const char *key, const char *val, long long ttl_s, idb_err *err)
{
	char ttl[24];
	snprintf(ttl, sizeof(ttl), "%lld", ttl_s > 0 ? ttl_s : 1);
	uint64_t epoch = idb_localcache_epoch(c->local);
	const char *argv[] = {"SET", key, val, "EX", ttl};
	redisReply *r = run(c, 5, argv, err);
	if (!r)
		return IDB_EUNAVAIL;
	freeReplyObject(r);
	if (c->local && idb_localcache_covers(key))
		idb_localcache_put(c->local, key, val, epoch);
	return 0;
}

int idb_cache_set_nx(idb_cache *c, const char *key, const char *val, long long ttl_s, idb_err *err)
{
	char ttl[24];
	snprintf(ttl, sizeof(ttl), "%lld", ttl_s > 0 ? ttl_s : 1);
	const char *argv[] = {"SET", key, val, "NX", "EX", ttl};
	redisReply *r = run(c, 6, argv, err);
	if (!r)
		return IDB_EUNAVAIL;
	int rc = r->type == REDIS_REPLY_NIL ? IDB_EEXISTS : 0;
	freeReplyObject(r);
	return rc;
}

int idb_cache_del(idb_cache *c, const char *const *keys, int n, idb_err *err)
{
	if (n <= 0)
		return 0;
	const char **argv = calloc((size_t)n + 1, sizeof(char *));
	if (!argv)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	argv[0] = "DEL";
	bool publish = false;
	for (int i = 0; i < n; i++) {
		argv[i + 1] = keys[i];
		if (c->local && idb_localcache_covers(keys[i])) {
			idb_localcache_drop(c->local, keys[i]);
			publish = true;
		}
	}
	redisReply *r = run(c, n + 1, argv, err);
	free(argv);
	if (!r)
		return IDB_EUNAVAIL;
	freeReplyObject(r);
	/* Every other instance drops its copy too. */
	for (int i = 0; publish && i < n; i++) {
		if (!idb_localcache_covers(keys[i]))
			continue;
		const char *pv[] = {"PUBLISH", c->channel, keys[i]};
		r = run(c, 3, pv, err);
		if (!r)
			return IDB_EUNAVAIL;
		freeReplyObject(r);
	}
	return 0;
}

int idb_cache_incr(idb_cache *c, const char *key, long long ttl_s, long long *out, idb_err *err)
{
	const char *argv[] = {"INCR", key};
	redisReply *r = run(c, 2, argv, err);
	if (!r)
		return IDB_EUNAVAIL;
	*out = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
	freeReplyObject(r);
	if (*out == 1) {
		char ttl[24];
		snprintf(ttl, sizeof(ttl), "%lld", ttl_s);
		const char *ev[] = {"EXPIRE", key, ttl};
		r = run(c, 3, ev, err);
		if (!r)
			return IDB_EUNAVAIL;
		freeReplyObject(r);
	}
	return 0;
}

bool idb_cache_ping(idb_cache *c)
{
	redisContext *ctx = get_conn(c, true);
	if (!ctx)
		return false;
	const char *argv[] = {"PING"};
	redisReply *r = simple_cmd(ctx, 1, argv);
	bool ok = r && r->type == REDIS_REPLY_STATUS;
	if (r)
		freeReplyObject(r);
	if (!ok)
		conn_fail(c, pthread_getspecific(conn_key), ctx->errstr[0] ? ctx->errstr : "PING failed");
	return ok;
}

bool idb_cache_up(const idb_cache *c)
{
	return atomic_load(&((idb_cache *)c)->up);
}
