/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "maintenance.h"
#include "conncache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "connections.h"
#include "fetch.h"
#include "import.h"
#include "log.h"
#include "saml.h"
#include "sessions_db.h"
#include "util.h"

#define TICK_S 30
#define PURGE_EVERY_S 300

struct idb_maintenance {
	idb_app *app;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
};

void idb_maintenance_refresh_metadata(idb_app *app)
{
	idb_db *db;
	if (idb_store_acquire(app->store, &db, NULL) != 0)
		return;
	json_t *due = NULL;
	if (idb_connection_metadata_due(db, app->cfg->saml_metadata_refresh_s, &due, NULL) != 0) {
		idb_store_release(db);
		return;
	}
	/* Fetching can take seconds: do not hold the connection meanwhile. */
	idb_store_release(db);
	size_t i;
	json_t *c;
	json_array_foreach(due, i, c)
	{
		const char *id = json_string_value(json_object_get(c, "id"));
		const char *url = json_string_value(json_object_get(c, "url"));
		idb_fetch_result fr = {0};
		idb_err err;
		idb_err_clear(&err);
		int64_t valid_until = 0, cache_s = 0;
		int rc = idb_fetch_get(url, 1024 * 1024, 10000, &fr, &err);
		if (rc == 0 && (fr.status < 200 || fr.status > 299))
			rc = idb_err_set(&err, IDB_EUNAVAIL, NULL, "%s answered HTTP %ld", url, fr.status);
		if (rc == 0)
			rc = idb_saml_check_metadata(app->saml, fr.body, &valid_until, &cache_s, NULL, &err);
		if (idb_store_acquire(app->store, &db, NULL) == 0) {
			(void)idb_connection_set_metadata(db, id, rc == 0 ? fr.body : NULL, valid_until, cache_s,
							  rc == 0 ? NULL : err.msg, NULL);
			idb_store_release(db);
			idb_conncache_changed(app->conns);
		}
		if (rc == 0)
			idb_log_info("refreshed IdP metadata of connection %s from %s", id, url);
		else
			idb_log_warn("IdP metadata refresh of connection %s failed (keeping the last good copy): %s", id,
				     err.msg);
		idb_fetch_result_clear(&fr);
	}
	json_decref(due);
}

static void purge_sessions(idb_app *app)
{
	idb_db *db;
	if (idb_store_acquire(app->store, &db, NULL) != 0)
		return;
	long removed = 0;
	if (idb_sessions_purge(db, app->cfg->session_idle_timeout_s, &removed, NULL) == 0 && removed > 0)
		idb_log_info("purged %ld expired sessions", removed);
	removed = 0;
	if (idb_import_purge(db, &removed, NULL) == 0 && removed > 0)
		idb_log_info("purged %ld expired import previews", removed);
	idb_store_release(db);
}

static void *run(void *arg)
{
	idb_maintenance *m = arg;
	int64_t last_purge = 0;
	pthread_mutex_lock(&m->mu);
	while (!m->stop) {
		pthread_mutex_unlock(&m->mu);
		int64_t now = idb_now_s();
		if (now - last_purge >= PURGE_EVERY_S) {
			purge_sessions(m->app);
			last_purge = now;
		}
		idb_maintenance_refresh_metadata(m->app);
		pthread_mutex_lock(&m->mu);
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += TICK_S;
		while (!m->stop && pthread_cond_timedwait(&m->cv, &m->mu, &until) == 0)
			;
	}
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

int idb_maintenance_start(idb_maintenance **out, idb_app *app, idb_err *err)
{
	*out = NULL;
	idb_maintenance *m = calloc(1, sizeof(*m));
	if (!m)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	m->app = app;
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cv, NULL);
	if (pthread_create(&m->thread, NULL, run, m) != 0) {
		pthread_mutex_destroy(&m->mu);
		pthread_cond_destroy(&m->cv);
		free(m);
		return idb_err_set(err, IDB_EINTERNAL, NULL, "cannot start the maintenance thread");
	}
	*out = m;
	return 0;
}

void idb_maintenance_stop(idb_maintenance *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	m->stop = true;
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mu);
	pthread_join(m->thread, NULL);
	pthread_mutex_destroy(&m->mu);
	pthread_cond_destroy(&m->cv);
	free(m);
}
