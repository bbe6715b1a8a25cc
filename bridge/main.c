/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* idbridge: start-up in order (log -> config -> crypto -> store -> cache ->
 * outbox sender -> http), wait for SIGTERM/SIGINT, drain, shut down in
 * reverse. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <sodium.h>

#include "app.h"
#include "cache.h"
#include "config.h"
#include "conncache.h"
#include "http.h"
#include "keyfile.h"
#include "log.h"
#include "maintenance.h"
#include "presets.h"
#include "oidc.h"
#include "saml.h"
#include "outbox.h"
#include "store.h"
#include "util.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: idbridge --config FILE       run the daemon\n"
		   "       idbridge --check-config FILE validate FILE (plus environment) and exit: 0 valid, 2 invalid\n"
		   "       idbridge --version\n");
}

static int check_config(const char *path)
{
	idb_config *cfg;
	idb_err err;
	idb_err_clear(&err);
	if (idb_config_load(&cfg, path, &err) != 0) {
		fprintf(stderr, "config error: %s%s%s\n", err.field, err.field[0] ? ": " : "", err.msg);
		return 2;
	}
	printf("%s: configuration OK\n", path);
	idb_config_free(cfg);
	return 0;
}

int main(int argc, char **argv)
{
	const char *config_path = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--version")) {
			printf("idbridge %s\n", IDB_VERSION);
			return 0;
		} else if (!strcmp(argv[i], "--check-config") && i + 1 < argc) {
			return check_config(argv[i + 1]);
		} else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
			config_path = argv[++i];
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}

	/* Signals are taken synchronously by this thread; every thread created
	 * from here on inherits the mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* lasso formats a timestamp with localtime() for each of its (filtered)
	 * debug messages; without TZ glibc stats /etc/localtime every time. */
	setenv("TZ", "UTC", 0);
	tzset();

	int exit_code = 1;
	idb_err err;
	idb_err_clear(&err);
	idb_config *cfg = NULL;
	idb_app app = {0};
	idb_http *http = NULL;
	idb_maintenance *maint = NULL;
	idb_presets *presets = NULL;
	idb_outbox *outbox = NULL;
	bool curl_ready = false;
	unsigned char secret[IDB_SECRET_KEY_BYTES];

	if (idb_config_load(&cfg, config_path, &err) != 0) {
		fprintf(stderr, "config error: %s%s%s\n", err.field, err.field[0] ? ": " : "", err.msg);
		return 2;
	}
	idb_log_set_level((idb_log_level)idb_log_level_parse(cfg->log_level));
	app.cfg = cfg;
	if (idb_crypto_init() != 0) {
		idb_log_error("libsodium initialisation failed");
		goto out;
	}
	/* Before any thread exists: curl_global_init is not thread-safe. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		idb_log_error("libcurl initialisation failed");
		goto out;
	}
	curl_ready = true;
	if (idb_keyfile_load(cfg->secret_key_file, secret, &err) != 0) {
		idb_log_error("%s: %s", err.field, err.msg);
		goto out;
	}
	if (idb_presets_load(&presets, cfg->mapping_presets_dir[0] ? cfg->mapping_presets_dir : NULL, &err) != 0) {
		idb_log_error("IdP presets: %s%s%s", err.field, err.field[0] ? ": " : "", err.msg);
		goto out;
	}
	app.presets = presets;
	if (idb_oidc_global_init(&err) != 0 || idb_oidc_open(&app.oidc, cfg, presets, secret, &err) != 0) {
		idb_log_error("%s", err.msg);
		goto out;
	}
	if (idb_saml_global_init(&err) != 0 || idb_saml_open(&app.saml, cfg, presets, &err) != 0) {
		idb_log_error("%s%s%s", err.field, err.field[0] ? ": " : "", err.msg);
		goto out;
	}
	if (idb_store_open(&app.store, cfg->database_url, (int)cfg->db_pool_size, (int)cfg->db_connect_timeout_s,
			   (int)cfg->db_statement_timeout_ms, &err) != 0) {
		idb_log_error("%s", err.msg);
		goto out;
	}
	int applied = 0;
	if (idb_store_migrate(app.store, &applied, &err) != 0) {
		idb_log_error("%s", err.msg);
		goto out;
	}
	if (idb_conncache_open(&app.conns, cfg->database_url, cfg->local_cache_entries > 0 ? 64 : 0,
			       (int)cfg->local_cache_ttl_s, &err) != 0) {
		idb_log_error("%s", err.msg);
		goto out;
	}
	if (idb_cache_open(&app.cache, cfg, &err) != 0 || idb_cache_start_subscriber(app.cache, &err) != 0) {
		idb_log_error("%s", err.msg);
		goto out;
	}
	if (idb_outbox_start(&outbox, &app, &err) != 0) {
		idb_log_error("%s", err.msg);
		goto out;
	}
	if (idb_http_start(&http, &app, &err) != 0) {
		idb_log_error("%s: %s", err.field, err.msg);
		goto out;
	}
	if (idb_maintenance_start(&maint, &app, &err) != 0) {
		idb_log_error("%s", err.msg);
		goto out;
	}
	idb_log_info("idbridge %s listening on %s (public URL %s, %lld threads, pool %lld)", IDB_VERSION, cfg->listen,
		     cfg->public_url, cfg->threads, cfg->db_pool_size);

	int sig = 0;
	sigwait(&sigs, &sig);
	idb_log_info("received %s; draining in-flight requests", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	idb_http_stop(http, 10000);
	http = NULL;
	idb_maintenance_stop(maint);
	maint = NULL;
	exit_code = 0;
out:
	idb_http_stop(http, 0);
	idb_maintenance_stop(maint);
	idb_outbox_stop(outbox);
	idb_cache_thread_cleanup();
	idb_cache_free(app.cache);
	idb_conncache_free(app.conns);
	idb_store_free(app.store);
	idb_saml_free(app.saml);
	idb_saml_global_shutdown();
	idb_presets_free(presets);
	idb_oidc_free(app.oidc);
	sodium_memzero(secret, sizeof(secret));
	idb_config_free(cfg);
	if (curl_ready)
		curl_global_cleanup();
	if (exit_code == 0)
		idb_log_info("stopped");
	return exit_code;
}
