/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The configuration: parsed once from YAML (libcyaml) plus environment
 * overrides into one immutable idb_config that is passed down everywhere.
 * Every key lives in one declarative table in config.c (type, default, bounds,
 * secret flag); conf/idbridge.example.yaml documents exactly those keys. */
#ifndef IDB_CONFIG_H
#define IDB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

typedef struct idb_strlist {
	char **items;
	size_t count;
} idb_strlist;

typedef struct idb_config {
	/* server */
	char *listen;
	char *public_url;
	long long threads;
	long long max_connections;
	long long connection_timeout_s;
	long long max_body_bytes;
	idb_strlist allowed_origins;
	bool trust_forwarded_for;
	/* database */
	char *database_url;
	long long db_pool_size;
	long long db_connect_timeout_s;
	long long db_statement_timeout_ms;
	/* redis */
	char *redis_url;
	char *redis_password;
	long long redis_connect_timeout_ms;
	long long redis_command_timeout_ms;
	/* cache */
	long long session_cache_ttl_s;
	long long permission_cache_ttl_s;
	long long local_cache_entries;
	long long local_cache_ttl_s;
	/* session */
	long long session_idle_timeout_s;
	long long session_absolute_timeout_s;
	/* security */
	char *secret_key_file;
	long long lockout_threshold;
	long long lockout_duration_s;
	long long password_min_length;
	/* log */
	char *log_level;
	bool access_log;
	/* smtp */
	char *smtp_url;
	char *smtp_from;
	long long smtp_timeout_s;
	/* invitations */
	long long invitation_ttl_s;
	/* saml */
	char *saml_sp_key_file;
	char *saml_sp_cert_file;
	long long saml_clock_skew_s;
	long long saml_metadata_refresh_s;
	/* mapping */
	char *mapping_presets_dir;
	/* oidc */
	long long oidc_clock_skew_s;
	long long oidc_http_timeout_ms;
	long long oidc_discovery_refresh_s;
	long long oidc_jwks_refresh_s;
	long long oidc_jwks_min_refresh_interval_s;
	long long oidc_max_token_bytes;
	long long oidc_max_token_age_s;
	long long oidc_bearer_cache_ttl_s;
	long long oidc_bearer_cache_entries;

	/* Derived at load time (not keys). */
	char listen_host[64];
	int listen_port;
	char redis_host[256];
	int redis_port;
	int redis_db;
	bool public_https;
	char public_origin[256]; /* scheme://host[:port] of public_url */
} idb_config;

/* Loads path (NULL: defaults only), applies IDBRIDGE_* environment overrides,
 * validates. On failure returns IDB_EINVAL with err->field = the key
 * ("server.threads") and err->msg = the reason. *out is the caller's; free
 * with idb_config_free. */
int idb_config_load(idb_config **out, const char *path, idb_err *err);
void idb_config_free(idb_config *cfg);

/* Key table introspection (used by the test that keeps the example file and
 * the code in agreement). Returns the number of keys; *names gets "section.key"
 * strings (static storage). */
size_t idb_config_keys(const char *const **names);

/* Writes the effective configuration to stderr with secrets redacted. */
void idb_config_dump(const idb_config *cfg);

#endif
