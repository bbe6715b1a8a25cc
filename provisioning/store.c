/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "log.h"
#include "migrations.h"

#define PREP_SLOTS 512 /* per connection; open addressing on the SQL address */

struct idb_db {
	idb_store *st;
	PGconn *conn;
	bool leased;
	bool in_tx;
	unsigned nprepared;
	const char *prepared[PREP_SLOTS];
};

struct idb_store {
	char *conninfo;
	int size;
	int statement_timeout_ms;
	int connect_timeout_s;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int in_use;
	atomic_bool up;
	idb_db *conns;
};

static void db_disconnect(idb_db *db)
{
	if (db->conn)
		PQfinish(db->conn);
	db->conn = NULL;
	db->nprepared = 0;
	memset(db->prepared, 0, sizeof(db->prepared));
	db->in_tx = false;
}

static void notice_sink(void *arg, const char *msg)
{
	(void)arg;
	(void)msg; /* NOTICEs (e.g. "relation already exists") are not errors */
}

static int db_connect(idb_db *db, idb_err *err)
{
	idb_store *st = db->st;
	char ct[16], opts[64];
	snprintf(ct, sizeof(ct), "%d", st->connect_timeout_s);
	snprintf(opts, sizeof(opts), "-c statement_timeout=%d", st->statement_timeout_ms);
	const char *keys[] = {"dbname", "connect_timeout", "options", "application_name", "client_encoding", NULL};
	const char *vals[] = {st->conninfo, ct, opts, "idbridge", "UTF8", NULL};
	db_disconnect(db);
	/* expand_dbname=1: the URI/conninfo in dbname supplies everything else. */
	db->conn = PQconnectdbParams(keys, vals, 1);
	if (!db->conn || PQstatus(db->conn) != CONNECTION_OK) {
		char msg[200];
		snprintf(msg, sizeof(msg), "%s", db->conn ? PQerrorMessage(db->conn) : "out of memory");
		msg[strcspn(msg, "\n")] = '\0';
		db_disconnect(db);
		atomic_store(&st->up, false);
		return idb_err_set(err, IDB_EUNAVAIL, NULL, "PostgreSQL unreachable: %s", msg);
	}
	PQsetNoticeProcessor(db->conn, notice_sink, NULL);
	atomic_store(&st->up, true);
	return 0;
}

int idb_store_open(idb_store **out, const char *conninfo, int pool_size, int connect_timeout_s,
		   int statement_timeout_ms, idb_err *err)
{
	*out = NULL;
	idb_store *st = calloc(1, sizeof(*st));
	if (!st)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	st->conninfo = strdup(conninfo);
	st->size = pool_size > 0 ? pool_size : 1;
	st->connect_timeout_s = connect_timeout_s;
	st->statement_timeout_ms = statement_timeout_ms;
	st->conns = calloc((size_t)st->size, sizeof(idb_db));
	if (!st->conninfo || !st->conns) {
		idb_store_free(st);
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	}
	pthread_mutex_init(&st->mu, NULL);
	pthread_cond_init(&st->cv, NULL);
	for (int i = 0; i < st->size; i++)
		st->conns[i].st = st;
	int rc = db_connect(&st->conns[0], err);
	if (rc != 0) {
		idb_store_free(st);
		return rc;
	}
	*out = st;
	return 0;
}

void idb_store_free(idb_store *st)
{
	if (!st)
		return;
	if (st->conns) {
		for (int i = 0; i < st->size; i++)
			db_disconnect(&st->conns[i]);
		pthread_mutex_destroy(&st->mu);
		pthread_cond_destroy(&st->cv);
	}
	free(st->conns);
	free(st->conninfo);
	free(st);
}

int idb_store_acquire(idb_store *st, idb_db **out, idb_err *err)
{
	*out = NULL;
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 5;
	pthread_mutex_lock(&st->mu);
	idb_db *db = NULL;
	for (;;) {
		/* Prefer a connected free slot, then any free slot. */
		for (int i = 0; i < st->size && !db; i++)
			if (!st->conns[i].leased && st->conns[i].conn)
				db = &st->conns[i];
		for (int i = 0; i < st->size && !db; i++)
			if (!st->conns[i].leased)
				db = &st->conns[i];
		if (db)
			break;
		if (pthread_cond_timedwait(&st->cv, &st->mu, &deadline) != 0) {
			pthread_mutex_unlock(&st->mu);
			idb_log_warn("database pool exhausted (%d connections busy for 5 s)", st->size);
			return idb_err_set(err, IDB_ETIMEOUT, NULL, "database pool exhausted");
		}
	}
	db->leased = true;
	st->in_use++;
	pthread_mutex_unlock(&st->mu);

	if (!db->conn || PQstatus(db->conn) != CONNECTION_OK) {
		int rc = db_connect(db, err);
		if (rc != 0) {
			idb_store_release(db);
			return rc;
		}
	}
	*out = db;
	return 0;
}

void idb_store_release(idb_db *db)
{
	if (!db)
		return;
	if (db->in_tx)
		idb_db_rollback(db);
	idb_store *st = db->st;
	pthread_mutex_lock(&st->mu);
	db->leased = false;
	st->in_use--;
	pthread_cond_signal(&st->cv);
	pthread_mutex_unlock(&st->mu);
}

bool idb_store_up(const idb_store *st)
{
	return atomic_load(&((idb_store *)st)->up);
}

void idb_store_stats(idb_store *st, int *in_use, int *idle, int *size)
{
	pthread_mutex_lock(&st->mu);
	int open = 0;
	for (int i = 0; i < st->size; i++)
		if (st->conns[i].conn)
			open++;
	*in_use = st->in_use;
	*idle = open - st->in_use > 0 ? open - st->in_use : 0;
	*size = st->size;
	pthread_mutex_unlock(&st->mu);
}

bool idb_store_ping(idb_store *st)
{
	idb_db *db;
	if (idb_store_acquire(st, &db, NULL) != 0)
		return false;
	static const char sql[] = "SELECT 1";
	int rc = idb_db_exec(db, sql, 0, NULL, NULL, NULL);
	idb_store_release(db);
	return rc == 0;
}

/* --- queries --- */

static int map_result_error(idb_db *db, const PGresult *res, idb_err *err)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *constraint = res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
	if (!msg)
		msg = PQerrorMessage(db->conn);
	if (PQstatus(db->conn) != CONNECTION_OK) {
		atomic_store(&db->st->up, false);
		idb_log_error("PostgreSQL connection lost: %s", msg);
		db_disconnect(db);
		return idb_err_set(err, IDB_EUNAVAIL, NULL, "database unavailable");
	}
	if (!state)
		state = "";
	int code = IDB_EINTERNAL;
	if (!strcmp(state, "23505"))
		code = IDB_EEXISTS;
	else if (!strncmp(state, "23", 2) || !strncmp(state, "22", 2))
		code = IDB_EINVAL;
	else if (!strcmp(state, "57014"))
		code = IDB_ETIMEOUT;
	else if (!strcmp(state, "40001") || !strcmp(state, "40P01"))
		code = IDB_ECONFLICT;
	if (code == IDB_EINTERNAL || code == IDB_ETIMEOUT)
		idb_log_error("SQL error %s: %s", state, msg);
	else
		idb_log_debug("SQL %s: %s (%s)", state, msg, constraint ? constraint : "-");
	return idb_err_set(err, code, constraint ? constraint : "", "%s", msg);
}

static bool prepared_lookup(idb_db *db, const char *sql, bool insert)
{
	uintptr_t h = ((uintptr_t)sql >> 3) * 2654435761u;
	for (unsigned i = 0; i < PREP_SLOTS; i++) {
		unsigned slot = (unsigned)((h + i) % PREP_SLOTS);
		if (db->prepared[slot] == sql)
			return true;
		if (!db->prepared[slot]) {
			if (insert && db->nprepared < PREP_SLOTS - 1) {
				db->prepared[slot] = sql;
				db->nprepared++;
			}
			return false;
		}
	}
	return false;
}

PGresult *idb_db_query(idb_db *db, const char *sql, int nparams, const char *const *params, idb_err *err)
{
	char name[32];
	if (!db->conn) {
		idb_err_set(err, IDB_EUNAVAIL, NULL, "database unavailable");
		return NULL;
	}
	snprintf(name, sizeof(name), "s%lx", (unsigned long)(uintptr_t)sql);
	if (!prepared_lookup(db, sql, false)) {
		PGresult *pr = PQprepare(db->conn, name, sql, nparams, NULL);
		if (!pr || PQresultStatus(pr) != PGRES_COMMAND_OK) {
			map_result_error(db, pr, err);
			PQclear(pr);
			return NULL;
		}
		PQclear(pr);
		prepared_lookup(db, sql, true);
	}
	PGresult *res = PQexecPrepared(db->conn, name, nparams, params, NULL, NULL, 0);
	ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
		map_result_error(db, res, err);
		PQclear(res);
		return NULL;
	}
	return res;
}

PGresult *idb_db_query_adhoc(idb_db *db, const char *sql, int nparams, const char *const *params, idb_err *err)
{
	if (!db->conn) {
		idb_err_set(err, IDB_EUNAVAIL, NULL, "database unavailable");
		return NULL;
	}
	PGresult *res = PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
		map_result_error(db, res, err);
		PQclear(res);
		return NULL;
	}
	return res;
}

int idb_db_exec(idb_db *db, const char *sql, int nparams, const char *const *params, long *affected, idb_err *err)
{
	PGresult *res = idb_db_query(db, sql, nparams, params, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	if (affected) {
		const char *t = PQcmdTuples(res);
		*affected = t && *t ? strtol(t, NULL, 10) : 0;
	}
	PQclear(res);
	return 0;
}

int idb_db_exec_script(idb_db *db, const char *sql, idb_err *err)
{
	PGresult *res = PQexec(db->conn, sql);
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
		int rc = map_result_error(db, res, err);
		PQclear(res);
		return rc;
	}
	PQclear(res);
	return 0;
}

int idb_db_begin(idb_db *db, idb_err *err)
{
	static const char sql[] = "BEGIN";
	int rc = idb_db_exec(db, sql, 0, NULL, NULL, err);
	if (rc == 0)
		db->in_tx = true;
	return rc;
}

int idb_db_commit(idb_db *db, idb_err *err)
{
	static const char sql[] = "COMMIT";
	int rc = idb_db_exec(db, sql, 0, NULL, NULL, err);
	db->in_tx = false;
	return rc;
}

void idb_db_rollback(idb_db *db)
{
	if (db->conn) {
		PGresult *r = PQexec(db->conn, "ROLLBACK");
		PQclear(r);
	}
	db->in_tx = false;
}

bool idb_db_in_tx(const idb_db *db)
{
	return db->in_tx;
}

/* --- migrations --- */

int idb_store_migrate(idb_store *st, int *applied, idb_err *err)
{
	idb_db *db;
	*applied = 0;
	int rc = idb_store_acquire(st, &db, err);
	if (rc != 0)
		return rc;
	static const char create_sql[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
					 " version integer PRIMARY KEY, name text NOT NULL,"
					 " applied_at timestamptz NOT NULL DEFAULT now())";
	/* One migrator at a time across instances starting together. */
	static const char lock_sql[] = "SELECT pg_advisory_lock(7261016)";
	static const char unlock_sql[] = "SELECT pg_advisory_unlock(7261016)";
	static const char have_sql[] = "SELECT 1 FROM schema_migrations WHERE version = $1";
	static const char rec_sql[] = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)";
	if ((rc = idb_db_exec(db, lock_sql, 0, NULL, NULL, err)) != 0)
		goto done;
	if ((rc = idb_db_exec(db, create_sql, 0, NULL, NULL, err)) != 0)
		goto unlock;
	for (unsigned i = 0; i < idb_migrations_count; i++) {
		const idb_migration *m = &idb_migrations[i];
		char ver[16];
		snprintf(ver, sizeof(ver), "%d", m->version);
		const char *p1[] = {ver};
		PGresult *res = idb_db_query(db, have_sql, 1, p1, err);
		if (!res) {
			rc = err ? err->code : IDB_EINTERNAL;
			goto unlock;
		}
		int have = PQntuples(res);
		PQclear(res);
		if (have)
			continue;
		if ((rc = idb_db_begin(db, err)) != 0)
			goto unlock;
		/* A migration may rewrite a million-row table: the pool's statement
		 * timeout is for requests, not for this. */
		static const char no_timeout_sql[] = "SET LOCAL statement_timeout = 0";
		const char *p2[] = {ver, m->name};
		if ((rc = idb_db_exec(db, no_timeout_sql, 0, NULL, NULL, err)) != 0 ||
		    (rc = idb_db_exec_script(db, m->sql, err)) != 0 ||
		    (rc = idb_db_exec(db, rec_sql, 2, p2, NULL, err)) != 0 || (rc = idb_db_commit(db, err)) != 0) {
			idb_db_rollback(db);
			idb_log_error("migration %03d_%s failed: %s", m->version, m->name, err ? err->msg : "");
			if (err) {
				char msg[sizeof(err->msg)];
				snprintf(msg, sizeof(msg), "%s", err->msg);
				idb_err_set(err, rc, NULL, "migration %03d_%s failed: %.180s", m->version, m->name, msg);
			}
			goto unlock;
		}
		idb_log_info("applied migration %03d_%s", m->version, m->name);
		(*applied)++;
	}
unlock:
	(void)idb_db_exec(db, unlock_sql, 0, NULL, NULL, NULL);
done:
	idb_store_release(db);
	return rc;
}
