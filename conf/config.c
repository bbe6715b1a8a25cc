/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "config.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cyaml/cyaml.h>

#include "log.h"
#include "util.h"

enum ktype { KT_STR, KT_INT, KT_BOOL, KT_LIST };

typedef struct keydef {
	const char *section;
	const char *key;
	enum ktype type;
	size_t off;
	const char *def; /* default, as text (ints parsed, bools "true"/"false") */
	long long min, max;
	bool required; /* must be non-empty after file + environment */
	bool secret;   /* never printed */
	const char *env;
} keydef;

#define OFF(f) offsetof(idb_config, f)
#define S(sec, k, f, d, req, sec_, env) {sec, k, KT_STR, OFF(f), d, 0, 0, req, sec_, env}
#define I(sec, k, f, d, lo, hi) {sec, k, KT_INT, OFF(f), #d, lo, hi, false, false, NULL}
#define B(sec, k, f, d) {sec, k, KT_BOOL, OFF(f), #d, 0, 1, false, false, NULL}
#define L(sec, k, f) {sec, k, KT_LIST, OFF(f), NULL, 0, 0, false, false, NULL}

/* The one table of configuration keys. Keep conf/idbridge.example.yaml in
 * step: tests/unit/test_config.c fails when the two disagree. */
static const keydef keys[] = {
	S("server", "listen", listen, "127.0.0.1:8080", true, false, "IDBRIDGE_LISTEN"),
	S("server", "public_url", public_url, "http://127.0.0.1:8080", true, false, "IDBRIDGE_PUBLIC_URL"),
	I("server", "threads", threads, 8, 1, 256),
	I("server", "max_connections", max_connections, 4096, 16, 1000000),
	I("server", "connection_timeout_s", connection_timeout_s, 30, 1, 3600),
	I("server", "max_body_bytes", max_body_bytes, 1048576, 1024, 67108864),
	L("server", "allowed_origins", allowed_origins),
	B("server", "trust_forwarded_for", trust_forwarded_for, false),
	S("database", "url", database_url, "", true, true, "IDBRIDGE_DATABASE_URL"),
	I("database", "pool_size", db_pool_size, 0, 0, 1024),
	I("database", "connect_timeout_s", db_connect_timeout_s, 5, 1, 120),
	I("database", "statement_timeout_ms", db_statement_timeout_ms, 5000, 10, 3600000),
	S("redis", "url", redis_url, "redis://127.0.0.1:6379/0", true, false, "IDBRIDGE_REDIS_URL"),
	S("redis", "password", redis_password, "", false, true, NULL),
	I("redis", "connect_timeout_ms", redis_connect_timeout_ms, 300, 10, 60000),
	I("redis", "command_timeout_ms", redis_command_timeout_ms, 300, 10, 60000),
	I("cache", "session_ttl_s", session_cache_ttl_s, 300, 1, 86400),
	I("cache", "permission_ttl_s", permission_cache_ttl_s, 300, 1, 86400),
	I("cache", "local_entries", local_cache_entries, 100000, 0, 10000000),
	I("cache", "local_ttl_s", local_cache_ttl_s, 60, 1, 300),
	I("session", "idle_timeout_s", session_idle_timeout_s, 28800, 60, 31536000),
	I("session", "absolute_timeout_s", session_absolute_timeout_s, 86400, 60, 31536000),
	S("security", "secret_key_file", secret_key_file, "var/secret.key", true, false, NULL),
	I("security", "lockout_threshold", lockout_threshold, 5, 1, 1000),
	I("security", "lockout_duration_s", lockout_duration_s, 900, 0, 31536000),
	I("security", "password_min_length", password_min_length, 12, 8, 256),
	S("log", "level", log_level, "info", true, false, NULL),
	B("log", "access_log", access_log, true),
	S("smtp", "url", smtp_url, "", false, true, "IDBRIDGE_SMTP_URL"),
	S("smtp", "from", smtp_from, "idbridge <no-reply@localhost>", true, false, NULL),
	I("smtp", "timeout_s", smtp_timeout_s, 10, 1, 300),
	I("invitations", "ttl_s", invitation_ttl_s, 604800, 3600, 7776000),
	S("saml", "sp_key_file", saml_sp_key_file, "var/saml-sp.key", true, false, NULL),
	S("saml", "sp_cert_file", saml_sp_cert_file, "var/saml-sp.crt", true, false, NULL),
	I("saml", "clock_skew_s", saml_clock_skew_s, 120, 0, 3600),
	S("mapping", "presets_dir", mapping_presets_dir, "", false, false, NULL),
	I("saml", "metadata_refresh_s", saml_metadata_refresh_s, 3600, 300, 604800),
	I("oidc", "clock_skew_s", oidc_clock_skew_s, 120, 0, 3600),
	I("oidc", "http_timeout_ms", oidc_http_timeout_ms, 5000, 100, 60000),
	I("oidc", "discovery_refresh_s", oidc_discovery_refresh_s, 3600, 10, 604800),
	I("oidc", "jwks_refresh_s", oidc_jwks_refresh_s, 3600, 10, 604800),
	I("oidc", "jwks_min_refresh_interval_s", oidc_jwks_min_refresh_interval_s, 60, 1, 86400),
	I("oidc", "max_token_bytes", oidc_max_token_bytes, 16384, 1024, 1048576),
	I("oidc", "max_token_age_s", oidc_max_token_age_s, 86400, 60, 31536000),
	I("oidc", "bearer_cache_ttl_s", oidc_bearer_cache_ttl_s, 300, 0, 3600),
	I("oidc", "bearer_cache_entries", oidc_bearer_cache_entries, 10000, 0, 10000000),
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))
#define MAXSEC 16
#define MAXKEY 24

/* Raw load target: per section, one pointer slot per key (NULL = absent). */
typedef struct raw_section {
	void *slot[MAXKEY];
	uint32_t count[MAXKEY];
} raw_section;
typedef struct raw_top {
	raw_section *sec[MAXSEC];
} raw_top;

static const char *sections[MAXSEC];
static size_t nsections;
static int key_section[NKEYS], key_slot[NKEYS];
static cyaml_schema_field_t sec_fields[MAXSEC][MAXKEY + 1];
static cyaml_schema_field_t top_fields[MAXSEC + 1];
static cyaml_schema_value_t top_schema;
static const cyaml_schema_value_t str_entry = {
	.type = CYAML_STRING, .flags = CYAML_FLAG_POINTER, .data_size = sizeof(char),
	.string = {.min = 0, .max = CYAML_UNLIMITED}};
static const char *key_names[NKEYS];
static char key_name_buf[NKEYS][64];

static void build_schema(void)
{
	if (nsections)
		return; /* built once, before any thread exists */
	int slots[MAXSEC] = {0};
	for (size_t i = 0; i < NKEYS; i++) {
		size_t s;
		for (s = 0; s < nsections; s++)
			if (strcmp(sections[s], keys[i].section) == 0)
				break;
		if (s == nsections)
			sections[nsections++] = keys[i].section;
		key_section[i] = (int)s;
		key_slot[i] = slots[s]++;
		snprintf(key_name_buf[i], sizeof(key_name_buf[i]), "%s.%s", keys[i].section, keys[i].key);
		key_names[i] = key_name_buf[i];
		cyaml_schema_field_t *f = &sec_fields[s][key_slot[i]];
		f->key = keys[i].key;
		f->data_offset = (uint32_t)(offsetof(raw_section, slot) + (size_t)key_slot[i] * sizeof(void *));
		switch (keys[i].type) {
		case KT_STR:
			f->value = (cyaml_schema_value_t){.type = CYAML_STRING,
							  .flags = CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL,
							  .data_size = sizeof(char),
							  .string = {.min = 0, .max = 4096}};
			break;
		case KT_INT:
		case KT_BOOL:
			/* Read as text and parsed here: libcyaml takes "12abc" as 12,
			 * "0900" as 0 and any unknown word as true. */
			f->value = (cyaml_schema_value_t){.type = CYAML_STRING,
							  .flags = CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL,
							  .data_size = sizeof(char),
							  .string = {.min = 0, .max = 64}};
			break;
		case KT_LIST:
			f->count_offset = (uint32_t)(offsetof(raw_section, count) + (size_t)key_slot[i] * sizeof(uint32_t));
			f->count_size = sizeof(uint32_t);
			f->value = (cyaml_schema_value_t){.type = CYAML_SEQUENCE,
							  .flags = CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL,
							  .data_size = sizeof(char *),
							  .sequence = {.entry = &str_entry, .min = 0, .max = 256}};
			break;
		}
	}
	for (size_t s = 0; s < nsections; s++) {
		top_fields[s].key = sections[s];
		top_fields[s].data_offset = (uint32_t)(offsetof(raw_top, sec) + s * sizeof(void *));
		top_fields[s].value = (cyaml_schema_value_t){.type = CYAML_MAPPING,
							     .flags = CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL,
							     .data_size = sizeof(raw_section),
							     .mapping = {.fields = sec_fields[s]}};
	}
	top_schema = (cyaml_schema_value_t){.type = CYAML_MAPPING,
					    .flags = CYAML_FLAG_POINTER,
					    .data_size = sizeof(raw_top),
					    .mapping = {.fields = top_fields}};
}

size_t idb_config_keys(const char *const **names)
{
	build_schema();
	*names = key_names;
	return NKEYS;
}

/* libcyaml reports problems through its log callback: keep the reason and the
 * mapping fields of its backtrace so the message can name the key. */
typedef struct loadlog {
	char reason[200];
	char path[4][64];
	int npath;
	bool in_backtrace;
} loadlog;

static void cyaml_logger(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
	loadlog *ll = ctx;
	char line[200];
	if (level < CYAML_LOG_ERROR)
		return;
	vsnprintf(line, sizeof(line), fmt, args);
	size_t n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == ' '))
		line[--n] = '\0';
	const char *p = line;
	if (strncmp(p, "Load: ", 6) == 0)
		p += 6;
	if (strncmp(p, "Backtrace:", 10) == 0) {
		ll->in_backtrace = true;
		return;
	}
	if (ll->in_backtrace) {
		const char *q = strstr(p, "in mapping field '");
		if (q && ll->npath < 4) {
			q += strlen("in mapping field '");
			const char *e = strchr(q, '\'');
			if (e)
				snprintf(ll->path[ll->npath++], 64, "%.*s", (int)(e - q), q);
		}
		return;
	}
	if (!ll->reason[0])
		snprintf(ll->reason, sizeof(ll->reason), "%.199s", p);
}

static int dup_str(char **dst, const char *src)
{
	char *d = strdup(src ? src : "");
	if (!d)
		return -1;
	free(*dst);
	*dst = d;
	return 0;
}

static bool parse_bool_text(const char *s, bool *out)
{
	if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "yes") || !strcmp(s, "on"))
		*out = true;
	else if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "no") || !strcmp(s, "off"))
		*out = false;
	else
		return false;
	return true;
}

static int apply_defaults(idb_config *c)
{
	for (size_t i = 0; i < NKEYS; i++) {
		char *base = (char *)c + keys[i].off;
		long long v;
		switch (keys[i].type) {
		case KT_STR:
			if (dup_str((char **)base, keys[i].def) != 0)
				return -1;
			break;
		case KT_INT:
			if (!idb_parse_long(keys[i].def, INT64_MIN, INT64_MAX, &v))
				return -1;
			*(long long *)base = v;
			break;
		case KT_BOOL:
			if (!parse_bool_text(keys[i].def, (bool *)base))
				return -1;
			break;
		case KT_LIST:
			break;
		}
	}
	return 0;
}

static int apply_raw(idb_config *c, const raw_top *raw, idb_err *err)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const raw_section *sec = raw->sec[key_section[i]];
		if (!sec || !sec->slot[key_slot[i]])
			continue;
		void *v = sec->slot[key_slot[i]];
		char *base = (char *)c + keys[i].off;
		switch (keys[i].type) {
		case KT_STR:
			if (dup_str((char **)base, v) != 0)
				return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
			break;
		case KT_INT:
			/* No leading zeros: YAML 1.1 readers take 0900 as octal or 0. */
			if (!idb_parse_long(v, INT64_MIN, INT64_MAX, (long long *)base) ||
			    (((const char *)v)[0] == '0' && ((const char *)v)[1] != '\0'))
				return idb_err_set(err, IDB_EINVAL, key_names[i],
						   "must be a whole number between %lld and %lld (got \"%.40s\")", keys[i].min,
						   keys[i].max, (const char *)v);
			break;
		case KT_BOOL:
			if (!parse_bool_text(v, (bool *)base))
				return idb_err_set(err, IDB_EINVAL, key_names[i], "must be true or false (got \"%.40s\")",
						   (const char *)v);
			break;
		case KT_LIST: {
			idb_strlist *l = (idb_strlist *)base;
			uint32_t n = sec->count[key_slot[i]];
			char **src = v;
			l->items = calloc(n ? n : 1, sizeof(char *));
			if (!l->items)
				return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
			for (uint32_t k = 0; k < n; k++)
				if (!(l->items[l->count++] = strdup(src[k])))
					return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
			break;
		}
		}
	}
	return 0;
}

static int apply_env(idb_config *c)
{
	for (size_t i = 0; i < NKEYS; i++) {
		if (!keys[i].env)
			continue;
		const char *e = getenv(keys[i].env);
		if (e && *e && dup_str((char **)((char *)c + keys[i].off), e) != 0)
			return -1;
	}
	return 0;
}

/* scheme://host:port[/path] -> host, port, https flag, origin. */
static bool parse_public_url(idb_config *c)
{
	const char *u = c->public_url;
	bool https;
	if (strncmp(u, "https://", 8) == 0)
		https = true;
	else if (strncmp(u, "http://", 7) == 0)
		https = false;
	else
		return false;
	const char *host = u + (https ? 8 : 7);
	size_t hl = strcspn(host, "/?#");
	if (hl == 0 || hl + (size_t)(host - u) >= sizeof(c->public_origin))
		return false;
	if (memchr(host, '@', hl))
		return false;
	snprintf(c->public_origin, sizeof(c->public_origin), "%.*s", (int)(hl + (size_t)(host - u)), u);
	/* The origin compares case-insensitively on scheme and host. */
	idb_str_lower(c->public_origin);
	/* Trailing slash on the URL is dropped so paths can be appended. */
	size_t n = strlen(c->public_url);
	while (n > 0 && c->public_url[n - 1] == '/')
		c->public_url[--n] = '\0';
	c->public_https = https;
	return true;
}

static bool parse_hostport(const char *s, char *host, size_t hostsz, int *port)
{
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s || (size_t)(colon - s) >= hostsz)
		return false;
	long long p;
	if (!idb_parse_long(colon + 1, 1, 65535, &p))
		return false;
	snprintf(host, hostsz, "%.*s", (int)(colon - s), s);
	if (host[0] == '[') { /* [::1]:8080 */
		size_t hl = strlen(host);
		if (hl < 3 || host[hl - 1] != ']')
			return false;
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	*port = (int)p;
	return true;
}

/* redis://[:password@]host:port[/db] */
static bool parse_redis_url(idb_config *c)
{
	const char *u = c->redis_url;
	if (strncmp(u, "redis://", 8) != 0)
		return false;
	u += 8;
	const char *at = strrchr(u, '@');
	if (at) {
		const char *colon = memchr(u, ':', (size_t)(at - u));
		const char *pw = colon ? colon + 1 : u;
		char *buf = strndup(pw, (size_t)(at - pw));
		bool ok = buf && (!buf[0] || (idb_url_decode(buf, false) && dup_str(&c->redis_password, buf) == 0));
		free(buf);
		if (!ok)
			return false;
		u = at + 1;
	}
	char hp[256];
	size_t hl = strcspn(u, "/");
	if (hl == 0 || hl >= sizeof(hp))
		return false;
	snprintf(hp, sizeof(hp), "%.*s", (int)hl, u);
	if (!strchr(hp, ':')) {
		snprintf(c->redis_host, sizeof(c->redis_host), "%s", hp);
		c->redis_port = 6379;
	} else if (!parse_hostport(hp, c->redis_host, sizeof(c->redis_host), &c->redis_port)) {
		return false;
	}
	c->redis_db = 0;
	if (u[hl] == '/' && u[hl + 1]) {
		long long db;
		if (!idb_parse_long(u + hl + 1, 0, 1024, &db))
			return false;
		c->redis_db = (int)db;
	}
	return true;
}

static int validate(idb_config *c, idb_err *err)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const char *base = (const char *)c + keys[i].off;
		if (keys[i].type == KT_INT) {
			long long v = *(const long long *)base;
			if (v < keys[i].min || v > keys[i].max)
				return idb_err_set(err, IDB_EINVAL, key_names[i], "must be between %lld and %lld (got %lld)",
						   keys[i].min, keys[i].max, v);
		} else if (keys[i].type == KT_STR && keys[i].required) {
			const char *s = *(char *const *)base;
			if (!s || !*s)
				return idb_err_set(err, IDB_EINVAL, key_names[i], "is required%s%s%s",
						   keys[i].env ? " (set it in the file or in " : "",
						   keys[i].env ? keys[i].env : "", keys[i].env ? ")" : "");
		}
	}
	if (!parse_hostport(c->listen, c->listen_host, sizeof(c->listen_host), &c->listen_port))
		return idb_err_set(err, IDB_EINVAL, "server.listen", "must be host:port, e.g. 127.0.0.1:8080 (got \"%s\")",
				   c->listen);
	if (!parse_public_url(c))
		return idb_err_set(err, IDB_EINVAL, "server.public_url",
				   "must be an absolute http:// or https:// URL (got \"%s\")", c->public_url);
	for (size_t i = 0; i < c->allowed_origins.count; i++) {
		const char *o = c->allowed_origins.items[i];
		const char *host = !strncmp(o, "https://", 8) ? o + 8 : !strncmp(o, "http://", 7) ? o + 7 : NULL;
		if (!host || !*host || host[0] == ':' || strpbrk(host, "/?#@ \\") != NULL)
			return idb_err_set(err, IDB_EINVAL, "server.allowed_origins",
					   "entry %zu must be an origin like https://app.example.com (got \"%s\")", i + 1, o);
		idb_str_lower(c->allowed_origins.items[i]);
	}
	if (strncmp(c->database_url, "postgres://", 11) != 0 && strncmp(c->database_url, "postgresql://", 13) != 0 &&
	    !strchr(c->database_url, '='))
		return idb_err_set(err, IDB_EINVAL, "database.url",
				   "must be a libpq URI (postgresql://…) or key=value connection string");
	if (!parse_redis_url(c))
		return idb_err_set(err, IDB_EINVAL, "redis.url", "must be redis://[:password@]host:port[/db] (got \"%s\")",
				   c->redis_url);
	if (idb_log_level_parse(c->log_level) < 0)
		return idb_err_set(err, IDB_EINVAL, "log.level", "must be one of debug, info, warn, error, off (got \"%s\")",
				   c->log_level);
	if (c->smtp_url[0] && strncmp(c->smtp_url, "smtp://", 7) != 0 && strncmp(c->smtp_url, "smtps://", 8) != 0)
		return idb_err_set(err, IDB_EINVAL, "smtp.url", "must be smtp://[user:pass@]host:port or smtps://…");
	if (c->session_absolute_timeout_s < c->session_idle_timeout_s)
		return idb_err_set(err, IDB_EINVAL, "session.absolute_timeout_s",
				   "must be at least session.idle_timeout_s (%lld)", c->session_idle_timeout_s);
	if (c->db_pool_size == 0)
		c->db_pool_size = c->threads + 2; /* workers + outbox sender + maintenance */
	return 0;
}

int idb_config_load(idb_config **out, const char *path, idb_err *err)
{
	*out = NULL;
	build_schema();
	idb_config *c = calloc(1, sizeof(*c));
	if (!c)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	int rc = IDB_EINTERNAL;
	raw_top *raw = NULL;
	loadlog ll = {0};
	cyaml_config_t ccfg = {.log_fn = cyaml_logger, .log_ctx = &ll, .mem_fn = cyaml_mem, .log_level = CYAML_LOG_WARNING};
	if (apply_defaults(c) != 0)
		goto fail_oom;
	if (path) {
		FILE *f = fopen(path, "r");
		if (!f) {
			rc = idb_err_set(err, IDB_EINVAL, "", "cannot open %s", path);
			goto fail;
		}
		/* An empty (or comment-only) file means "all defaults". */
		bool has_content = false;
		char line[512];
		while (!has_content && fgets(line, sizeof(line), f)) {
			const char *p = line + strspn(line, " \t\r\n");
			if (*p && *p != '#' && strncmp(p, "---", 3) != 0)
				has_content = true;
		}
		fclose(f);
		if (has_content) {
			cyaml_err_t ce = cyaml_load_file(path, &ccfg, &top_schema, (cyaml_data_t **)&raw, NULL);
			if (ce != CYAML_OK) {
				char key[200] = "";
				for (int i = ll.npath - 1; i >= 0; i--) {
					size_t kl = strlen(key);
					snprintf(key + kl, sizeof(key) - kl, "%s%s", kl ? "." : "", ll.path[i]);
				}
				/* "Unexpected key: lisen" names the key itself. */
				const char *uk = strstr(ll.reason, "Unexpected key: ");
				if (uk) {
					size_t kl = strlen(key);
					snprintf(key + kl, sizeof(key) - kl, "%s%s", kl ? "." : "", uk + 16);
					rc = idb_err_set(err, IDB_EINVAL, key, "unknown key");
				} else {
					rc = idb_err_set(err, IDB_EINVAL, key, "%s",
							 ll.reason[0] ? ll.reason : cyaml_strerror(ce));
				}
				goto fail;
			}
			if (raw && (rc = apply_raw(c, raw, err)) != 0)
				goto fail;
		}
	}
	if (apply_env(c) != 0)
		goto fail_oom;
	if ((rc = validate(c, err)) != 0)
		goto fail;
	if (raw)
		cyaml_free(&ccfg, &top_schema, raw, 0);
	*out = c;
	return 0;
fail_oom:
	rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
fail:
	if (raw)
		cyaml_free(&ccfg, &top_schema, raw, 0);
	idb_config_free(c);
	return rc;
}

void idb_config_free(idb_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < NKEYS; i++) {
		char *base = (char *)c + keys[i].off;
		if (keys[i].type == KT_STR) {
			free(*(char **)base);
		} else if (keys[i].type == KT_LIST) {
			idb_strlist *l = (idb_strlist *)base;
			for (size_t k = 0; k < l->count; k++)
				free(l->items[k]);
			free(l->items);
		}
	}
	free(c);
}

void idb_config_dump(const idb_config *c)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const char *base = (const char *)c + keys[i].off;
		switch (keys[i].type) {
		case KT_STR: {
			const char *s = *(char *const *)base;
			fprintf(stderr, "  %s: %s\n", key_names[i], keys[i].secret && s && *s ? "(secret)" : s);
			break;
		}
		case KT_INT:
			fprintf(stderr, "  %s: %lld\n", key_names[i], *(const long long *)base);
			break;
		case KT_BOOL:
			fprintf(stderr, "  %s: %s\n", key_names[i], *(const bool *)base ? "true" : "false");
			break;
		case KT_LIST: {
			const idb_strlist *l = (const idb_strlist *)base;
			fprintf(stderr, "  %s: [", key_names[i]);
			for (size_t k = 0; k < l->count; k++)
				fprintf(stderr, "%s%s", k ? ", " : "", l->items[k]);
			fprintf(stderr, "]\n");
			break;
		}
		}
	}
}
