/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "conncache.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "log.h"
#include "util.h"

#define CHANNEL "idb_connections"
/* The listener proves its connection alive with a round trip this often; a
 * copy is served only while the last proof is younger than ALIVE_MS (a TCP
 * path can die silently: failover, partition, an idle-dropping firewall). */
#define PING_MS 2000
#define ALIVE_MS 6000

typedef struct entry {
	char slug[64];
	idb_connection c;
	uint64_t epoch;
	int64_t loaded_ms;
	bool used;
} entry;

struct idb_conncache {
	char *conninfo;
	int max_age_ms;
	pthread_t thread;
	bool started;
	atomic_bool stop;
	/* Moves on with every notification and every change of the listener's
	 * connection; a copy is current while it equals the copy's epoch. */
	atomic_uint_fast64_t epoch;
	atomic_bool listening;
	_Atomic int64_t alive_ms; /* monotonic time of the last answered round trip */
	atomic_ullong hits, misses;
	pthread_mutex_t mu;
	int n, next;
	entry *entries;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_listening(idb_conncache *cc, bool on)
{
	/* Lost: stop serving first. Regained: invalidate first, then serve. */
	if (!on)
		atomic_store(&cc->listening, false);
	atomic_fetch_add(&cc->epoch, 1);
	if (on)
		atomic_store(&cc->listening, true);
}

static PGconn *listen_connect(idb_conncache *cc)
{
	const char *keys[] = {"dbname",		 "connect_timeout", "application_name", "keepalives", "keepalives_idle",
			      "keepalives_interval", "keepalives_count", "tcp_user_timeout", NULL};
	const char *vals[] = {cc->conninfo, "5", "idbridge-listen", "1", "5", "2", "3", "6000", NULL};
	PGconn *conn = PQconnectdbParams(keys, vals, 1);
	if (!conn || PQstatus(conn) != CONNECTION_OK) {
		PQfinish(conn);
		return NULL;
	}
	PGresult *r = PQexec(conn, "LISTEN " CHANNEL);
	bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok) {
		idb_log_warn("connection cache: LISTEN %s failed: %s", CHANNEL, PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

static void *listen_main(void *arg)
{
	idb_conncache *cc = arg;
	PGconn *conn = NULL;
	int backoff_ms = 200;
	bool warned = false, ping_pending = false;
	int64_t ping_sent = 0;
	while (!atomic_load(&cc->stop)) {
		if (!conn) {
			conn = listen_connect(cc);
			if (!conn) {
				if (!warned)
					idb_log_warn("connection cache: cannot listen for changes; reading every connection "
						     "from PostgreSQL until it can");
				warned = true;
				for (int waited = 0; waited < backoff_ms && !atomic_load(&cc->stop); waited += 100)
					nanosleep(&(struct timespec){0, 100 * 1000000L}, NULL);
				backoff_ms = backoff_ms < 5000 ? backoff_ms * 2 : 5000;
				continue;
			}
			if (warned)
				idb_log_info("connection cache: listening for changes again");
			warned = false;
			backoff_ms = 200;
			ping_pending = false;
			atomic_store(&cc->alive_ms, now_ms());
			set_listening(cc, true);
		}
		bool lost = false;
		int64_t now = now_ms();
		if (!ping_pending && now - atomic_load(&cc->alive_ms) >= PING_MS) {
			if (PQsendQuery(conn, "SELECT 1") == 1) {
				ping_pending = true;
				ping_sent = now;
			} else {
				lost = true;
			}
		}
		struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
		int pr = lost ? 0 : poll(&pfd, 1, 250);
		if (pr < 0 && errno != EINTR)
			lost = true;
		if (!lost && pr > 0 && PQconsumeInput(conn) == 0)
			lost = true;
		if (!lost && PQstatus(conn) != CONNECTION_OK)
			lost = true;
		PGnotify *n;
		while (!lost && (n = PQnotifies(conn)) != NULL) {
			atomic_fetch_add(&cc->epoch, 1);
			PQfreemem(n);
		}
		while (!lost && ping_pending && !PQisBusy(conn)) {
			PGresult *r = PQgetResult(conn);
			if (!r) { /* the round trip is complete */
				ping_pending = false;
				atomic_store(&cc->alive_ms, now_ms());
				break;
			}
			if (PQresultStatus(r) != PGRES_TUPLES_OK)
				lost = true;
			PQclear(r);
		}
		if (!lost && ping_pending && now_ms() - ping_sent > ALIVE_MS)
			lost = true; /* no answer: the path is dead even if the socket says nothing */
		if (lost) {
			set_listening(cc, false);
			idb_log_warn("connection cache: lost the PostgreSQL listener connection; reconnecting");
			PQfinish(conn);
			conn = NULL;
		}
	}
	set_listening(cc, false);
	PQfinish(conn);
	return NULL;
}

int idb_conncache_open(idb_conncache **out, const char *conninfo, int max_entries, int max_age_s, idb_err *err)
{
	*out = NULL;
	idb_conncache *cc = calloc(1, sizeof(*cc));
	if (!cc)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	pthread_mutex_init(&cc->mu, NULL);
	cc->n = max_entries;
	cc->max_age_ms = max_age_s * 1000;
	cc->conninfo = strdup(conninfo);
	cc->entries = max_entries > 0 ? calloc((size_t)max_entries, sizeof(entry)) : NULL;
	if (!cc->conninfo || (max_entries > 0 && !cc->entries)) {
		idb_conncache_free(cc);
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	}
	if (max_entries > 0) {
		if (pthread_create(&cc->thread, NULL, listen_main, cc) != 0) {
			idb_conncache_free(cc);
			return idb_err_set(err, IDB_EINTERNAL, NULL, "cannot start the connection cache listener");
		}
		cc->started = true;
	}
	*out = cc;
	return 0;
}

void idb_conncache_free(idb_conncache *cc)
{
	if (!cc)
		return;
	if (cc->started) {
		atomic_store(&cc->stop, true);
		pthread_join(cc->thread, NULL);
	}
	for (int i = 0; cc->entries && i < cc->n; i++)
		idb_connection_clear(&cc->entries[i].c);
	free(cc->entries);
	free(cc->conninfo);
	pthread_mutex_destroy(&cc->mu);
	free(cc);
}

void idb_conncache_stats(idb_conncache *cc, unsigned long long *hits, unsigned long long *misses)
{
	*hits = cc ? atomic_load_explicit(&cc->hits, memory_order_relaxed) : 0;
	*misses = cc ? atomic_load_explicit(&cc->misses, memory_order_relaxed) : 0;
}

void idb_conncache_changed(idb_conncache *cc)
{
	if (cc)
		atomic_fetch_add(&cc->epoch, 1);
}

bool idb_conncache_listening(idb_conncache *cc)
{
	return cc && atomic_load(&cc->listening) && now_ms() - atomic_load(&cc->alive_ms) < ALIVE_MS;
}

static bool lookup(idb_conncache *cc, const char *slug, idb_connection *out)
{
	bool hit = false;
	int64_t now = now_ms();
	pthread_mutex_lock(&cc->mu);
	uint64_t epoch = atomic_load(&cc->epoch);
	for (int i = 0; i < cc->n && !hit; i++) {
		entry *e = &cc->entries[i];
		if (!e->used || strcmp(e->slug, slug) != 0)
			continue;
		if (e->epoch == epoch && now - e->loaded_ms < cc->max_age_ms)
			hit = idb_connection_copy(out, &e->c) == 0;
		else {
			idb_connection_clear(&e->c);
			e->used = false;
		}
		break;
	}
	pthread_mutex_unlock(&cc->mu);
	return hit;
}

static void store(idb_conncache *cc, const char *slug, const idb_connection *c, uint64_t epoch)
{
	pthread_mutex_lock(&cc->mu);
	/* A change notified while the row was being read: the copy is already old. */
	if (epoch == atomic_load(&cc->epoch)) {
		entry *slot = NULL;
		for (int i = 0; i < cc->n && !slot; i++)
			if (cc->entries[i].used && !strcmp(cc->entries[i].slug, slug))
				slot = &cc->entries[i];
		for (int i = 0; i < cc->n && !slot; i++)
			if (!cc->entries[i].used)
				slot = &cc->entries[i];
		if (!slot) {
			slot = &cc->entries[cc->next];
			cc->next = (cc->next + 1) % cc->n;
		}
		idb_connection_clear(&slot->c);
		slot->used = idb_connection_copy(&slot->c, c) == 0;
		idb_strlcpy(slot->slug, slug, sizeof(slot->slug));
		slot->epoch = epoch;
		slot->loaded_ms = now_ms();
	}
	pthread_mutex_unlock(&cc->mu);
}

int idb_conncache_by_slug(idb_conncache *cc, idb_store *st, const char *slug, idb_connection *out, idb_err *err)
{
	bool usable = cc && cc->n > 0 && strlen(slug) < sizeof(((entry *)0)->slug) && idb_conncache_listening(cc);
	if (usable && lookup(cc, slug, out)) {
		atomic_fetch_add_explicit(&cc->hits, 1, memory_order_relaxed);
		return 0;
	}
	if (cc)
		atomic_fetch_add_explicit(&cc->misses, 1, memory_order_relaxed);
	/* Taken before the read: a change committed after it moves the epoch on. */
	uint64_t epoch = usable ? atomic_load(&cc->epoch) : 0;
	idb_db *db;
	int rc = idb_store_acquire(st, &db, err);
	if (rc != 0)
		return rc;
	rc = idb_connection_by_slug(db, slug, out, err);
	idb_store_release(db);
	if (rc == 0 && usable && idb_conncache_listening(cc))
		store(cc, slug, out, epoch);
	return rc;
}
