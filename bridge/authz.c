/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "authz.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "metrics.h"

static void perm_key(char out[64], const char *user_id)
{
	snprintf(out, 64, "idb:perm:%s", user_id);
}

int idb_authz_load(idb_app *app, const char *user_id, idb_principal *out, idb_err *err)
{
	char key[64];
	perm_key(key, user_id);
	char *js = NULL;
	int crc = idb_cache_get(app->cache, key, &js, NULL);
	if (crc == 0) {
		bool ok = idb_principal_from_json(js, out);
		free(js);
		if (ok) {
			idb_metrics_cache(IDB_CACHE_PERMISSION, IDB_CACHE_HIT);
			return 0;
		}
		crc = IDB_ENOTFOUND;
	}
	if (crc == IDB_EUNAVAIL) {
		idb_metrics_cache(IDB_CACHE_PERMISSION, IDB_CACHE_ERROR);
		idb_metrics_fallback();
	} else {
		idb_metrics_cache(IDB_CACHE_PERMISSION, IDB_CACHE_MISS);
	}
	idb_db *db;
	int rc = idb_store_acquire(app->store, &db, err);
	if (rc != 0)
		return rc;
	rc = idb_principal_load(db, user_id, out, err);
	idb_store_release(db);
	if (rc != 0)
		return rc;
	if (crc != IDB_EUNAVAIL) {
		char *s = idb_principal_to_json(out);
		if (s)
			(void)idb_cache_set(app->cache, key, s, app->cfg->permission_cache_ttl_s, NULL);
		free(s);
	}
	return 0;
}

void idb_authz_invalidate(idb_app *app, const char *user_id)
{
	char key[64];
	perm_key(key, user_id);
	const char *keys[] = {key};
	if (idb_cache_del(app->cache, keys, 1, NULL) != 0)
		idb_log_warn("could not drop cached permissions of user %s; the entry expires within %llds", user_id,
			     app->cfg->permission_cache_ttl_s);
}

void idb_authz_invalidate_many(idb_app *app, const char (*user_ids)[37], size_t n)
{
	for (size_t off = 0; off < n; off += 256) {
		size_t m = n - off < 256 ? n - off : 256;
		char(*keys)[64] = calloc(m, 64);
		const char **kp = calloc(m, sizeof(char *));
		if (keys && kp) {
			for (size_t i = 0; i < m; i++) {
				perm_key(keys[i], user_ids[off + i]);
				kp[i] = keys[i];
			}
			if (idb_cache_del(app->cache, kp, (int)m, NULL) != 0)
				idb_log_warn("could not drop %zu cached permission sets; they expire within %llds", m,
					     app->cfg->permission_cache_ttl_s);
		}
		free(kp);
		free(keys);
	}
}
