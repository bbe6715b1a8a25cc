/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "oidc.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <sodium.h>

#include "attrmap.h"
#include "authz.h"
#include "connections.h"
#include "fetch.h"
#include "jit.h"
#include "jwt.h"
#include "log.h"
#include "presets.h"
#include "session.h"
#include "sso.h"
#include "verlist.h"
#include "urls.h"
#include "util.h"

#define STATE_TTL_S 600
#define DISCOVERY_MAX (256 * 1024)
#define JWKS_MAX (512 * 1024)
#define TOKEN_RESPONSE_MAX (256 * 1024)
#define USERINFO_MAX (256 * 1024)
#define FAIL_BACKOFF_S 5          /* no cached copy and the last fetch failed: wait this long */
#define LOGOUT_TOKEN_MAX_AGE_S 600 /* logout tokens are acted on at once */
#define BEARER_MAX_CONNECTIONS 4
#define BACKCHANNEL_EVENT "http://schemas.openid.net/event/backchannel-logout"

/* --- a small string builder for URLs and forms --- */

typedef struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->cap ? b->cap * 2 : 256) + n;
		char *np = realloc(b->p, cap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* application/x-www-form-urlencoded / RFC 3986 query encoding: everything
 * but the unreserved characters is percent-encoded. */
static void sb_enc(sbuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~') {
			sb_add(b, s, 1);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			sb_add(b, e, 3);
		}
	}
}

/* Appends "k=v" preceded by sep ('?', '&' or 0 for none). */
static void sb_param(sbuf *b, char sep, const char *k, const char *v)
{
	if (sep)
		sb_add(b, &sep, 1);
	sb_str(b, k);
	sb_add(b, "=", 1);
	sb_enc(b, v);
}

static char *sb_take(sbuf *b)
{
	if (b->oom) {
		free(b->p);
		return NULL;
	}
	return b->p ? b->p : strdup("");
}

/* --- provider metadata, key sets and per-connection state --- */

typedef struct oidc_meta {
	atomic_int refs;
	char *issuer;
	char *authorization_endpoint;
	char *token_endpoint;
	char *userinfo_endpoint;    /* NULL when none */
	char *jwks_uri;
	char *end_session_endpoint; /* NULL when none */
	bool iss_parameter;         /* RFC 9207 authorization_response_iss_parameter_supported */
} oidc_meta;

static void meta_release(oidc_meta *m)
{
	if (!m || atomic_fetch_sub(&m->refs, 1) != 1)
		return;
	free(m->issuer);
	free(m->authorization_endpoint);
	free(m->token_endpoint);
	free(m->userinfo_endpoint);
	free(m->jwks_uri);
	free(m->end_session_endpoint);
	free(m);
}

static oidc_meta *meta_retain(oidc_meta *m)
{
	if (m)
		atomic_fetch_add(&m->refs, 1);
	return m;
}

typedef struct oidc_entry {
	idb_verobj base; /* first: conn_id, version, refs */
	pthread_mutex_t fetch_mu; /* one provider fetch at a time per connection */
	oidc_meta *meta;
	int64_t meta_at, meta_attempt_at; /* monotonic ms; 0 = never */
	idb_jwks *jwks;
	int64_t jwks_at, jwks_attempt_at; /* monotonic ms; 0 = never */
	idb_attrmap *map;
	unsigned algs;
	char *client_secret; /* opened; NULL when the connection has none */
} oidc_entry;

/* Validated bearer tokens: SHA-256 of the token -> user, until a deadline. A
 * hash table with chaining plus an LRU list, under one mutex. */
typedef struct tc_node {
	unsigned char key[32];
	char user_id[37];
	int64_t until;
	struct tc_node *hnext, *prev, *next;
} tc_node;

struct idb_oidc {
	const idb_config *cfg;
	const idb_presets *presets;
	unsigned char key[IDB_SECRET_KEY_BYTES];
	pthread_mutex_t mu;   /* the provider metadata and keys of the entries */
	idb_verlist entries;  /* oidc_entry by connection version */
	pthread_mutex_t tc_mu;
	tc_node **buckets;
	size_t nbuckets, count, cap;
	tc_node *head, *tail;
};

int idb_oidc_global_init(idb_err *err)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "libcurl initialisation failed");
	return 0;
}

static void entry_free(idb_verobj *o);

int idb_oidc_open(idb_oidc **out, const idb_config *cfg, const idb_presets *presets,
		  const unsigned char secret_key[IDB_SECRET_KEY_BYTES], idb_err *err)
{
	*out = NULL;
	idb_oidc *o = calloc(1, sizeof(*o));
	if (!o)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	o->cfg = cfg;
	o->presets = presets;
	memcpy(o->key, secret_key, IDB_SECRET_KEY_BYTES);
	pthread_mutex_init(&o->mu, NULL);
	idb_verlist_init(&o->entries, entry_free);
	pthread_mutex_init(&o->tc_mu, NULL);
	o->cap = (size_t)cfg->oidc_bearer_cache_entries;
	if (o->cap > 0 && cfg->oidc_bearer_cache_ttl_s > 0) {
		o->nbuckets = 64;
		while (o->nbuckets < o->cap && o->nbuckets < (1u << 24))
			o->nbuckets <<= 1;
		o->buckets = calloc(o->nbuckets, sizeof(*o->buckets));
		if (!o->buckets) {
			idb_oidc_free(o);
			return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		}
	}
	*out = o;
	return 0;
}

static void entry_free(idb_verobj *o)
{
	oidc_entry *e = (oidc_entry *)o;
	meta_release(e->meta);
	idb_jwks_release(e->jwks);
	idb_attrmap_free(e->map);
	if (e->client_secret) {
		sodium_memzero(e->client_secret, strlen(e->client_secret));
		free(e->client_secret);
	}
	pthread_mutex_destroy(&e->fetch_mu);
	free(e);
}

void idb_oidc_free(idb_oidc *o)
{
	if (!o)
		return;
	idb_verlist_destroy(&o->entries);
	for (tc_node *t = o->head, *n; t; t = n) {
		n = t->next;
		free(t);
	}
	free(o->buckets);
	pthread_mutex_destroy(&o->mu);
	pthread_mutex_destroy(&o->tc_mu);
	sodium_memzero(o->key, sizeof(o->key));
	free(o);
}

static void entry_put(idb_oidc *o, oidc_entry *e)
{
	idb_verlist_put(&o->entries, e ? &e->base : NULL);
}

/* The mapping settings: the connection's jit object with the OIDC claim names
 * (oidc.claims_*, else jit.*_attribute, else email / name / groups). */
static char *map_settings(const idb_connection *c)
{
	json_t *j = json_deep_copy(c->jit);
	if (!j)
		return NULL;
	static const char *const claim_keys[] = {"claims_email", "claims_name", "claims_groups"};
	static const char *const jit_keys[] = {"email_attribute", "name_attribute", "group_attribute"};
	static const char *const defaults[] = {"email", "name", "groups"};
	for (int i = 0; i < 3; i++) {
		const char *v = idb_connection_str(c, "oidc", claim_keys[i]);
		if (v)
			json_object_set_new(j, jit_keys[i], json_string(v));
		else if (!json_object_get(j, jit_keys[i]) && !c->preset) /* a preset brings its own names */
			json_object_set_new(j, jit_keys[i], json_string(defaults[i]));
	}
	char *txt = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return txt;
}

static int entry_get(idb_oidc *o, const idb_connection *c, oidc_entry **out, idb_err *err)
{
	*out = (oidc_entry *)idb_verlist_get(&o->entries, c->id, c->version);
	if (*out)
		return 0;
	oidc_entry *e = calloc(1, sizeof(*e));
	char *settings = map_settings(c);
	int rc = 0;
	if (!e || !settings) {
		free(e);
		free(settings);
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	}
	pthread_mutex_init(&e->fetch_mu, NULL);
	if ((rc = idb_presets_compile(&e->map, o->presets, c->preset, settings, err)) != 0)
		goto fail;
	json_t *algs = json_object_get(json_object_get(c->settings, "oidc"), "allowed_algs");
	if (json_is_array(algs)) {
		size_t i;
		json_t *v;
		json_array_foreach(algs, i, v) e->algs |= idb_jwt_alg_bit(json_string_value(v));
	} else {
		e->algs = IDB_JWT_ALGS_DEFAULT;
	}
	const char *sealed = idb_connection_str(c, "oidc", "client_secret_sealed");
	if (sealed && (rc = idb_secret_open(&e->client_secret, o->key, sealed, err)) != 0)
		goto fail;
	free(settings);
	idb_verlist_add(&o->entries, &e->base, c->id, c->version);
	*out = e;
	return 0;
fail:
	free(settings);
	entry_free(&e->base);
	return rc;
}

static bool url_ok(const char *u)
{
	return u && (!strncmp(u, "https://", 8) || !strncmp(u, "http://", 7)) && strlen(u) < 2048 &&
	       !strpbrk(u, " \r\n\t\"<>\\#");
}

static int fetch_meta(idb_oidc *o, const char *issuer, oidc_meta **out, idb_err *err)
{
	*out = NULL;
	sbuf u = {0};
	size_t il = strlen(issuer);
	while (il > 0 && issuer[il - 1] == '/')
		il--;
	sb_add(&u, issuer, il);
	sb_str(&u, "/.well-known/openid-configuration");
	char *url = sb_take(&u);
	if (!url)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	idb_fetch_result fr;
	int rc = idb_fetch_get(url, DISCOVERY_MAX, (long)o->cfg->oidc_http_timeout_ms, &fr, err);
	if (rc == 0 && fr.status != 200)
		rc = idb_err_set(err, IDB_EUNAVAIL, NULL, "%s answered HTTP %ld", url, fr.status);
	json_t *d = NULL;
	if (rc == 0) {
		json_error_t jerr;
		d = json_loadb(fr.body, fr.len, JSON_REJECT_DUPLICATES, &jerr);
		if (!json_is_object(d))
			rc = idb_err_set(err, IDB_EUNAVAIL, NULL, "the discovery document at %s is not a JSON object", url);
	}
	idb_fetch_result_clear(&fr);
	const char *iss = json_string_value(json_object_get(d, "issuer"));
	const char *ae = json_string_value(json_object_get(d, "authorization_endpoint"));
	const char *te = json_string_value(json_object_get(d, "token_endpoint"));
	const char *ju = json_string_value(json_object_get(d, "jwks_uri"));
	const char *ui = json_string_value(json_object_get(d, "userinfo_endpoint"));
	const char *es = json_string_value(json_object_get(d, "end_session_endpoint"));
	if (rc == 0 && (!iss || strcmp(iss, issuer) != 0))
		rc = idb_err_set(err, IDB_EUNAVAIL, NULL,
				 "the provider's discovery document names another issuer (\"%.200s\", configured \"%.200s\")",
				 iss ? iss : "", issuer);
	if (rc == 0 && (!url_ok(ae) || !url_ok(te) || !url_ok(ju)))
		rc = idb_err_set(err, IDB_EUNAVAIL, NULL,
				 "the provider's discovery document lacks an http(s) authorization_endpoint, token_endpoint "
				 "or jwks_uri");
	oidc_meta *m = rc == 0 ? calloc(1, sizeof(*m)) : NULL;
	if (rc == 0 && !m)
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	if (rc == 0) {
		atomic_init(&m->refs, 1);
		m->issuer = strdup(iss);
		m->authorization_endpoint = strdup(ae);
		m->token_endpoint = strdup(te);
		m->jwks_uri = strdup(ju);
		m->userinfo_endpoint = url_ok(ui) ? strdup(ui) : NULL;
		m->end_session_endpoint = url_ok(es) ? strdup(es) : NULL;
		m->iss_parameter = json_is_true(json_object_get(d, "authorization_response_iss_parameter_supported"));
		if (!m->issuer || !m->authorization_endpoint || !m->token_endpoint || !m->jwks_uri) {
			meta_release(m);
			m = NULL;
			rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		}
	}
	json_decref(d);
	free(url);
	*out = m;
	return rc;
}

/* The provider metadata of e (fetched on first use, refreshed after
 * oidc.discovery_refresh_s; a stale copy is used while a refresh fails). A
 * new reference in *out. */
static int meta_current(idb_oidc *o, oidc_entry *e, const char *issuer, oidc_meta **out, idb_err *err)
{
	*out = NULL;
	int64_t now = idb_now_ms_mono();
	pthread_mutex_lock(&o->mu);
	oidc_meta *cur = meta_retain(e->meta);
	int64_t at = e->meta_at, attempt = e->meta_attempt_at;
	pthread_mutex_unlock(&o->mu);
	if (cur && (now - at < o->cfg->oidc_discovery_refresh_s * 1000 ||
		    now - attempt < o->cfg->oidc_jwks_min_refresh_interval_s * 1000)) {
		*out = cur;
		return 0;
	}
	if (!cur && attempt && now - attempt < FAIL_BACKOFF_S * 1000)
		return idb_err_set(err, IDB_EUNAVAIL, NULL, "the identity provider could not be reached a moment ago");
	if (cur) {
		if (pthread_mutex_trylock(&e->fetch_mu) != 0) {
			*out = cur; /* another thread is refreshing */
			return 0;
		}
	} else {
		pthread_mutex_lock(&e->fetch_mu);
	}
	pthread_mutex_lock(&o->mu);
	if (e->meta_at > at || (!cur && e->meta_attempt_at > attempt)) {
		/* Someone refreshed (or failed) while we waited. */
		meta_release(cur);
		cur = meta_retain(e->meta);
		pthread_mutex_unlock(&o->mu);
		pthread_mutex_unlock(&e->fetch_mu);
		if (!cur)
			return idb_err_set(err, IDB_EUNAVAIL, NULL, "the identity provider could not be reached a moment ago");
		*out = cur;
		return 0;
	}
	e->meta_attempt_at = now;
	pthread_mutex_unlock(&o->mu);
	oidc_meta *m = NULL;
	int rc = fetch_meta(o, issuer, &m, err);
	if (rc == 0) {
		pthread_mutex_lock(&o->mu);
		meta_release(e->meta);
		e->meta = meta_retain(m);
		e->meta_at = now;
		pthread_mutex_unlock(&o->mu);
	}
	pthread_mutex_unlock(&e->fetch_mu);
	if (rc == 0) {
		meta_release(cur);
		*out = m;
		return 0;
	}
	if (cur) {
		idb_log_warn("OIDC discovery refresh for connection %s failed (%s); using the cached document", e->base.conn_id,
			     err ? err->msg : "");
		*out = cur;
		return 0;
	}
	idb_log_warn("OIDC discovery for connection %s failed: %s", e->base.conn_id, err ? err->msg : "");
	return rc;
}

static int fetch_jwks(idb_oidc *o, const oidc_meta *m, idb_jwks **out, idb_err *err)
{
	idb_fetch_result fr;
	int rc = idb_fetch_get(m->jwks_uri, JWKS_MAX, (long)o->cfg->oidc_http_timeout_ms, &fr, err);
	if (rc == 0 && fr.status != 200)
		rc = idb_err_set(err, IDB_EUNAVAIL, NULL, "%s answered HTTP %ld", m->jwks_uri, fr.status);
	if (rc == 0)
		rc = idb_jwks_parse(out, fr.body, fr.len, err);
	idb_fetch_result_clear(&fr);
	return rc;
}

/* The JWKS of e. kid_miss: a token named a key the cached set lacks, so fetch
 * again — unless the last fetch is more recent than
 * oidc.jwks_min_refresh_interval_s (*refreshed says whether it happened). */
static int jwks_current(idb_oidc *o, oidc_entry *e, const oidc_meta *m, bool kid_miss, idb_jwks **out, bool *refreshed,
			idb_err *err)
{
	*out = NULL;
	if (refreshed)
		*refreshed = false;
	int64_t now = idb_now_ms_mono(), min_iv = o->cfg->oidc_jwks_min_refresh_interval_s * 1000;
	pthread_mutex_lock(&o->mu);
	idb_jwks *cur = idb_jwks_retain(e->jwks);
	int64_t at = e->jwks_at, attempt = e->jwks_attempt_at;
	pthread_mutex_unlock(&o->mu);
	bool stale = !cur || now - at >= o->cfg->oidc_jwks_refresh_s * 1000;
	if (!kid_miss && !stale) {
		*out = cur;
		return 0;
	}
	if (cur && now - attempt < min_iv) {
		*out = cur; /* rate limit: no fetch */
		return 0;
	}
	if (!cur && attempt && now - attempt < FAIL_BACKOFF_S * 1000)
		return idb_err_set(err, IDB_EUNAVAIL, NULL, "the identity provider's keys could not be fetched a moment ago");
	if (cur && !kid_miss) {
		if (pthread_mutex_trylock(&e->fetch_mu) != 0) {
			*out = cur;
			return 0;
		}
	} else {
		pthread_mutex_lock(&e->fetch_mu);
	}
	pthread_mutex_lock(&o->mu);
	if (e->jwks_attempt_at > attempt) {
		/* Another thread fetched (or tried) while we waited: use its result. */
		idb_jwks_release(cur);
		cur = idb_jwks_retain(e->jwks);
		bool fresh = e->jwks_at > at;
		pthread_mutex_unlock(&o->mu);
		pthread_mutex_unlock(&e->fetch_mu);
		if (refreshed)
			*refreshed = fresh;
		if (!cur)
			return idb_err_set(err, IDB_EUNAVAIL, NULL, "the identity provider's keys could not be fetched");
		*out = cur;
		return 0;
	}
	e->jwks_attempt_at = now;
	pthread_mutex_unlock(&o->mu);
	idb_jwks *k = NULL;
	int rc = fetch_jwks(o, m, &k, err);
	if (rc == 0) {
		pthread_mutex_lock(&o->mu);
		idb_jwks_release(e->jwks);
		e->jwks = idb_jwks_retain(k);
		e->jwks_at = now;
		pthread_mutex_unlock(&o->mu);
		idb_log_info("OIDC JWKS of connection %s fetched (%zu keys%s)", e->base.conn_id, idb_jwks_count(k),
			     kid_miss ? ", unknown kid" : "");
	}
	pthread_mutex_unlock(&e->fetch_mu);
	if (rc == 0) {
		idb_jwks_release(cur);
		if (refreshed)
			*refreshed = true;
		*out = k;
		return 0;
	}
	idb_log_warn("OIDC JWKS fetch for connection %s failed: %s", e->base.conn_id, err ? err->msg : "");
	if (cur) {
		*out = cur;
		return 0;
	}
	return rc;
}

/* Signature check of a decoded token with the connection's keys, with one
 * rate-limited JWKS refresh on an unknown kid. IDB_EAUTH / IDB_EUNAVAIL. */
static int verify_signature(idb_oidc *o, oidc_entry *e, const oidc_meta *m, const idb_jwt *jwt, idb_err *err)
{
	idb_jwks *k = NULL;
	int rc = jwks_current(o, e, m, false, &k, NULL, err);
	if (rc != 0)
		return rc;
	rc = idb_jwt_verify(jwt, k, e->algs, err);
	idb_jwks_release(k);
	if (rc != IDB_ENOTFOUND)
		return rc;
	bool refreshed = false;
	idb_err ferr;
	idb_err_clear(&ferr);
	if (jwks_current(o, e, m, true, &k, &refreshed, &ferr) == 0 && refreshed)
		rc = idb_jwt_verify(jwt, k, e->algs, err);
	idb_jwks_release(k);
	if (rc == IDB_ENOTFOUND)
		rc = idb_err_set(err, IDB_EAUTH, NULL, "the token was signed with a key (kid) the provider does not publish");
	return rc;
}

/* --- claims to identity --- */

static bool protocol_claim(const char *k)
{
	static const char *const skip[] = {"iss", "aud", "exp", "iat", "nbf", "nonce", "azp", "at_hash", "c_hash",
					   "auth_time", "jti", "sid", "acr", "amr", "s_hash", NULL};
	for (int i = 0; skip[i]; i++)
		if (!strcmp(skip[i], k))
			return true;
	return false;
}

static int add_claims(idb_identity *id, const json_t *claims, idb_err *err)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)claims, k, v)
	{
		if (protocol_claim(k))
			continue;
		int rc = 0;
		if (json_is_string(v)) {
			rc = idb_identity_add(id, k, json_string_value(v), err);
		} else if (json_is_boolean(v)) {
			rc = idb_identity_add(id, k, json_is_true(v) ? "true" : "false", err);
		} else if (json_is_array(v)) {
			size_t i;
			json_t *a;
			json_array_foreach(v, i, a) if (json_is_string(a) && rc == 0) rc =
				idb_identity_add(id, k, json_string_value(a), err);
		}
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* What the provider sent, for the admin: values of the mapped claims, names
 * only for the rest. */
static char *last_login_json(const idb_connection *c, const json_t *claims)
{
	const char *names[3];
	static const char *const claim_keys[] = {"claims_email", "claims_name", "claims_groups"};
	static const char *const defaults[] = {"email", "name", "groups"};
	for (int i = 0; i < 3; i++) {
		names[i] = idb_connection_str(c, "oidc", claim_keys[i]);
		if (!names[i])
			names[i] = defaults[i];
	}
	json_t *out = json_object();
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)claims, k, v)
	{
		if (protocol_claim(k))
			continue;
		bool mapped = !strcmp(k, names[0]) || !strcmp(k, names[1]) || !strcmp(k, names[2]) ||
			      !strcmp(k, "sub") || !strcmp(k, "email_verified");
		json_object_set(out, k, mapped ? v : json_string("(not mapped: value not shown)"));
	}
	char *txt = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	return txt;
}

/* --- shared request helpers --- */

typedef struct oidc_fail {
	unsigned status;
	const char *type;
	const char *reason; /* activity log; NULL: nothing to record */
	char detail[300];
} oidc_fail;

static int fail_set(oidc_fail *f, unsigned status, const char *type, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static int fail_set(oidc_fail *f, unsigned status, const char *type, const char *reason, const char *fmt, ...)
{
	f->status = status;
	f->type = type;
	f->reason = reason;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->detail, sizeof(f->detail), fmt, ap);
	va_end(ap);
	return -1;
}

static int load_connection(idb_req *req, idb_connection *c, idb_err *err)
{
	return idb_sso_connection(req, "oidc", c, err);
}

static void callback_url(const idb_config *cfg, const char *slug, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s/sso/oidc/%s/callback", cfg->public_url, slug);
}

static bool token_chars(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;
	return n > 0 && n <= max &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

/* --- login --- */

int idb_oidc_handle_login(idb_req *req)
{
	idb_app *app = idb_req_app(req);
	idb_err err;
	idb_err_clear(&err);
	idb_connection c;
	if (load_connection(req, &c, &err) != 0)
		return idb_sso_fail(req, idb_http_status_for(err.code), err.field[0] ? err.field : "sso-unavailable",
				    "Sign-in failed", err.code == IDB_ENOTFOUND ? err.msg : "Sign-in is temporarily unavailable.");
	oidc_entry *e = NULL;
	oidc_meta *m = NULL;
	char *url = NULL, *st = NULL;
	if (!c.enabled) {
		idb_sso_fail(req, 403, "sso-connection-disabled", "Sign-in failed",
			     "Sign-in through this identity provider is disabled.");
		goto done;
	}
	const char *return_to = idb_req_query(req, "return_to");
	if (!return_to || !*return_to)
		return_to = "/";
	if (strlen(return_to) > 2048 || !idb_return_to_allowed(app->cfg, return_to)) {
		idb_sso_fail(req, 400, "sso-return-to-not-allowed", "Sign-in failed",
			     "The address to return to after sign-in is not allowed.");
		goto done;
	}
	const char *issuer = idb_connection_str(&c, "oidc", "issuer");
	const char *client_id = idb_connection_str(&c, "oidc", "client_id");
	if (!issuer || !client_id || entry_get(app->oidc, &c, &e, &err) != 0 ||
	    meta_current(app->oidc, e, issuer, &m, &err) != 0) {
		idb_log_warn("OIDC login on %s unavailable: %s", c.slug, err.msg);
		idb_sso_fail(req, 503, "oidc-provider-unavailable", "Sign-in unavailable",
			     "The identity provider cannot be reached right now. Try again in a moment.");
		goto done;
	}
	char state[64], nonce[64], verifier[64], challenge[64], redirect_uri[1024];
	unsigned char digest[crypto_hash_sha256_BYTES];
	idb_random_token(state, sizeof(state), 32);
	idb_random_token(nonce, sizeof(nonce), 32);
	idb_random_token(verifier, sizeof(verifier), 32);
	crypto_hash_sha256(digest, (const unsigned char *)verifier, strlen(verifier));
	idb_b64url_encode(challenge, sizeof(challenge), digest, sizeof(digest));
	callback_url(app->cfg, c.slug, redirect_uri, sizeof(redirect_uri));

	json_t *sj = json_pack("{ss ss ss ss}", "c", c.id, "n", nonce, "v", verifier, "rt", return_to);
	st = sj ? json_dumps(sj, JSON_COMPACT) : NULL;
	json_decref(sj);
	char key[96];
	snprintf(key, sizeof(key), "idb:oidc:state:%s", state);
	/* The state, nonce and verifier must survive until the callback on any
	 * instance: no Redis, no login (fail closed). */
	if (!st || idb_cache_set(app->cache, key, st, STATE_TTL_S, &err) != 0) {
		idb_sso_fail(req, 503, "sso-unavailable", "Sign-in unavailable",
			     "Sign-in is temporarily unavailable. Try again in a moment.");
		goto done;
	}
	sbuf u = {0};
	sb_str(&u, m->authorization_endpoint);
	char sep = strchr(m->authorization_endpoint, '?') ? '&' : '?';
	sb_param(&u, sep, "response_type", "code");
	sb_param(&u, '&', "client_id", client_id);
	sb_param(&u, '&', "redirect_uri", redirect_uri);
	json_t *scopes = json_object_get(json_object_get(c.settings, "oidc"), "scopes");
	sb_str(&u, "&scope=");
	if (json_is_array(scopes) && json_array_size(scopes) > 0) {
		size_t i;
		json_t *v;
		json_array_foreach(scopes, i, v)
		{
			if (i)
				sb_str(&u, "%20");
			sb_enc(&u, json_string_value(v));
		}
	} else {
		sb_str(&u, "openid%20email%20profile");
	}
	sb_param(&u, '&', "state", state);
	sb_param(&u, '&', "nonce", nonce);
	sb_param(&u, '&', "code_challenge", challenge);
	sb_param(&u, '&', "code_challenge_method", "S256");
	const char *hint = idb_req_query(req, "login_hint");
	if (hint && *hint && strlen(hint) <= 254)
		sb_param(&u, '&', "login_hint", hint);
	url = sb_take(&u);
	if (!url) {
		idb_sso_fail(req, 500, "internal", "Sign-in unavailable", "The sign-in request could not be built.");
		goto done;
	}
	idb_resp_header(req, "Cache-Control", "no-store");
	idb_resp_redirect(req, 303, url);
done:
	free(url);
	free(st);
	meta_release(m);
	entry_put(app->oidc, e);
	idb_connection_clear(&c);
	return 0;
}

/* --- callback --- */

/* POSTs the code to the token endpoint; *tokens gets the parsed answer. */
static int exchange_code(idb_oidc *o, const idb_connection *c, oidc_entry *e, const oidc_meta *m, const char *code,
			 const char *verifier, json_t **tokens, oidc_fail *f)
{
	*tokens = NULL;
	const char *client_id = idb_connection_str(c, "oidc", "client_id");
	const char *auth = idb_connection_str(c, "oidc", "token_endpoint_auth");
	bool post = auth && !strcmp(auth, "client_secret_post");
	char redirect_uri[1024];
	callback_url(o->cfg, c->slug, redirect_uri, sizeof(redirect_uri));
	sbuf form = {0}, basic = {0};
	sb_param(&form, 0, "grant_type", "authorization_code");
	sb_param(&form, '&', "code", code);
	sb_param(&form, '&', "redirect_uri", redirect_uri);
	sb_param(&form, '&', "code_verifier", verifier);
	if (!e->client_secret || post)
		sb_param(&form, '&', "client_id", client_id);
	if (e->client_secret && post)
		sb_param(&form, '&', "client_secret", e->client_secret);
	if (e->client_secret && !post) {
		/* RFC 6749 2.3.1: both parts form-encoded before Basic. */
		sb_enc(&basic, client_id);
		sb_str(&basic, ":");
		sb_enc(&basic, e->client_secret);
	}
	char *body = sb_take(&form);
	char *userpwd = basic.p ? sb_take(&basic) : NULL;
	idb_fetch_result fr;
	idb_err err;
	idb_err_clear(&err);
	int rc = body ? idb_fetch_post_form(m->token_endpoint, body, userpwd, TOKEN_RESPONSE_MAX,
					    (long)o->cfg->oidc_http_timeout_ms, &fr, &err)
		      : idb_err_set(&err, IDB_EINTERNAL, NULL, "out of memory");
	if (body) {
		sodium_memzero(body, strlen(body));
		free(body);
	}
	if (userpwd) {
		sodium_memzero(userpwd, strlen(userpwd));
		free(userpwd);
	}
	if (rc != 0) {
		idb_log_warn("OIDC token endpoint of %s failed: %s", c->slug, err.msg);
		return fail_set(f, 503, "oidc-provider-unavailable", "token_endpoint_unavailable",
				"The identity provider cannot be reached right now. Try again in a moment.");
	}
	json_error_t jerr;
	json_t *j = json_loadb(fr.body, fr.len, JSON_REJECT_DUPLICATES, &jerr);
	long status = fr.status;
	idb_fetch_result_clear(&fr);
	if (status != 200 || !json_is_object(j)) {
		const char *e1 = json_string_value(json_object_get(j, "error"));
		char why[80];
		idb_strlcpy(why, e1 && token_chars(e1, 60) ? e1 : "no usable answer", sizeof(why));
		json_decref(j);
		idb_log_info("OIDC token endpoint of %s answered HTTP %ld (%s)", c->slug, status, why);
		return fail_set(f, 400, "oidc-code-refused", "code_refused",
				"The identity provider refused to complete the sign-in (%s). Start again.", why);
	}
	if (!json_is_string(json_object_get(j, "id_token"))) {
		json_decref(j);
		return fail_set(f, 400, "oidc-id-token-missing", "id_token_missing",
				"The identity provider sent no ID token. Check that the openid scope is allowed.");
	}
	*tokens = j;
	return 0;
}

/* Fetches userinfo and checks that it describes the same subject. */
static int fetch_userinfo(idb_oidc *o, const idb_connection *c, const oidc_meta *m, const char *access_token,
			  const char *sub, json_t **out, oidc_fail *f)
{
	*out = NULL;
	idb_fetch_result fr;
	idb_err err;
	idb_err_clear(&err);
	if (idb_fetch_get_bearer(m->userinfo_endpoint, access_token, USERINFO_MAX, (long)o->cfg->oidc_http_timeout_ms,
				 &fr, &err) != 0) {
		idb_log_warn("OIDC userinfo of %s failed: %s", c->slug, err.msg);
		return fail_set(f, 503, "oidc-provider-unavailable", "userinfo_unavailable",
				"The identity provider cannot be reached right now. Try again in a moment.");
	}
	json_error_t jerr;
	json_t *j = fr.status == 200 && strncasecmp(fr.content_type, "application/json", 16) == 0
			    ? json_loadb(fr.body, fr.len, JSON_REJECT_DUPLICATES, &jerr)
			    : NULL;
	long status = fr.status;
	idb_fetch_result_clear(&fr);
	if (!json_is_object(j)) {
		json_decref(j);
		return fail_set(f, 400, "oidc-userinfo-invalid", "userinfo_invalid",
				"The identity provider's userinfo answer is not usable (HTTP %ld; a JSON object is needed).",
				status);
	}
	const char *usub = json_string_value(json_object_get(j, "sub"));
	if (!usub || strcmp(usub, sub) != 0) {
		json_decref(j);
		return fail_set(f, 400, "oidc-userinfo-subject-mismatch", "userinfo_sub_mismatch",
				"The identity provider's userinfo describes another user than the ID token (sub).");
	}
	*out = j;
	return 0;
}

int idb_oidc_handle_callback(idb_req *req)
{
	idb_app *app = idb_req_app(req);
	idb_oidc *o = app->oidc;
	idb_err err;
	idb_err_clear(&err);
	idb_connection c;
	if (load_connection(req, &c, &err) != 0)
		return idb_sso_fail(req, idb_http_status_for(err.code), err.field[0] ? err.field : "sso-unavailable",
				    "Sign-in failed", err.code == IDB_ENOTFOUND ? err.msg : "Sign-in is temporarily unavailable.");
	oidc_fail f = {0};
	oidc_entry *e = NULL;
	oidc_meta *m = NULL;
	json_t *state = NULL, *tokens = NULL, *userinfo = NULL, *merged = NULL;
	char *state_txt = NULL, *target = NULL;
	idb_jwt jwt = {0};
	idb_identity id = {0};
	idb_profile prof = {0};

	/* The state is single-use: taken first, whatever the answer says. */
	const char *state_param = idb_req_query(req, "state");
	int crc = IDB_ENOTFOUND;
	if (token_chars(state_param, 64)) {
		char key[96];
		snprintf(key, sizeof(key), "idb:oidc:state:%s", state_param);
		crc = idb_cache_take(app->cache, key, &state_txt, &err);
	}
	const char *perr = idb_req_query(req, "error");
	if (perr) {
		const char *desc = idb_req_query(req, "error_description");
		char e1[64], d1[200];
		idb_strlcpy(e1, perr, sizeof(e1));
		idb_strlcpy(d1, desc ? desc : "", sizeof(d1));
		for (char *p = e1; *p; p++)
			if ((unsigned char)*p < 0x20)
				*p = ' ';
		for (char *p = d1; *p; p++)
			if ((unsigned char)*p < 0x20)
				*p = ' ';
		if (!strcmp(e1, "access_denied"))
			fail_set(&f, 403, "oidc-provider-error", "provider_error",
				 "Your identity provider did not sign you in (access denied)%s%s. Contact your administrator if "
				 "you should have access.",
				 d1[0] ? ": " : "", d1);
		else
			fail_set(&f, 400, "oidc-provider-error", "provider_error",
				 "Your identity provider could not sign you in (%s)%s%s. Try again, or contact your "
				 "administrator.",
				 e1, d1[0] ? ": " : "", d1);
		goto fail;
	}
	if (crc == IDB_EUNAVAIL) {
		fail_set(&f, 503, "sso-unavailable", "cache_unavailable",
			 "Sign-in is temporarily unavailable. Try again in a moment.");
		goto fail;
	}
	if (crc != 0 || !(state = json_loads(state_txt, 0, NULL))) {
		fail_set(&f, 400, "oidc-state-unknown", "state_unknown",
			 "This sign-in answer is unknown, was already used or has expired. Start the sign-in again.");
		goto fail;
	}
	const char *st_conn = json_string_value(json_object_get(state, "c"));
	const char *nonce = json_string_value(json_object_get(state, "n"));
	const char *verifier = json_string_value(json_object_get(state, "v"));
	const char *rt = json_string_value(json_object_get(state, "rt"));
	if (!st_conn || !nonce || !verifier || !rt) {
		fail_set(&f, 400, "oidc-state-unknown", "state_unknown", "This sign-in answer is unknown. Start again.");
		goto fail;
	}
	/* Mix-up: a sign-in started with another connection never reaches this
	 * connection's token endpoint. */
	if (strcmp(st_conn, c.id) != 0) {
		fail_set(&f, 400, "oidc-connection-mismatch", "state_connection_mismatch",
			 "The answer belongs to a sign-in started with another identity provider. Start again.");
		goto fail;
	}
	target = strdup(rt);
	if (!c.enabled) {
		fail_set(&f, 403, "sso-connection-disabled", "connection_disabled",
			 "Sign-in through this identity provider is disabled.");
		goto fail;
	}
	const char *code = idb_req_query(req, "code");
	if (!code || !*code || strlen(code) > 2048) {
		fail_set(&f, 400, "oidc-code-missing", "code_missing", "The identity provider's answer has no code.");
		goto fail;
	}
	const char *issuer = idb_connection_str(&c, "oidc", "issuer");
	const char *client_id = idb_connection_str(&c, "oidc", "client_id");
	if (!issuer || !client_id || entry_get(o, &c, &e, &err) != 0 || meta_current(o, e, issuer, &m, &err) != 0) {
		idb_log_warn("OIDC callback on %s unavailable: %s", c.slug, err.msg);
		fail_set(&f, 503, "oidc-provider-unavailable", "provider_unavailable",
			 "The identity provider cannot be reached right now. Try again in a moment.");
		goto fail;
	}
	/* RFC 9207: the answer names its issuer; it must be ours. */
	const char *iss_param = idb_req_query(req, "iss");
	if (iss_param ? strcmp(iss_param, m->issuer) != 0 : m->iss_parameter) {
		fail_set(&f, 400, "oidc-issuer-mismatch", "iss_parameter_mismatch",
			 "The answer comes from another identity provider than the one this sign-in was started with.");
		goto fail;
	}
	if (exchange_code(o, &c, e, m, code, verifier, &tokens, &f) != 0)
		goto fail;
	const char *id_token = json_string_value(json_object_get(tokens, "id_token"));
	int rc = idb_jwt_decode(&jwt, id_token, (size_t)app->cfg->oidc_max_token_bytes, &err);
	if (rc == 0)
		rc = verify_signature(o, e, m, &jwt, &err);
	if (rc == IDB_EUNAVAIL) {
		fail_set(&f, 503, "oidc-provider-unavailable", "jwks_unavailable",
			 "The identity provider's keys cannot be fetched right now. Try again in a moment.");
		goto fail;
	}
	if (rc == 0) {
		idb_jwt_expect x = {.issuer = m->issuer,
				    .audience = client_id,
				    .check_azp = true,
				    .nonce = nonce,
				    .require_exp = true,
				    .require_sub = true,
				    .now = idb_now_s(),
				    .skew_s = app->cfg->oidc_clock_skew_s,
				    .max_age_s = app->cfg->oidc_max_token_age_s};
		rc = idb_jwt_check_claims(jwt.payload, &x, &err);
	}
	if (rc != 0) {
		fail_set(&f, 400, "oidc-id-token-invalid", "id_token_invalid", "The ID token was refused: %s.", err.msg);
		goto fail;
	}
	const char *sub = json_string_value(json_object_get(jwt.payload, "sub"));
	merged = json_deep_copy(jwt.payload);
	const char *access_token = json_string_value(json_object_get(tokens, "access_token"));
	if (idb_connection_flag(&c, "oidc", "userinfo", false) && m->userinfo_endpoint) {
		if (!access_token) {
			fail_set(&f, 400, "oidc-userinfo-invalid", "userinfo_no_access_token",
				 "The identity provider sent no access token for the userinfo call.");
			goto fail;
		}
		if (fetch_userinfo(o, &c, m, access_token, sub, &userinfo, &f) != 0)
			goto fail;
		/* The ID token's signed claims win; userinfo adds the rest. */
		const char *k;
		json_t *v;
		json_object_foreach(userinfo, k, v) if (!json_object_get(merged, k)) json_object_set(merged, k, v);
	}
	id.connection_id = strdup(c.id);
	id.issuer = strdup(m->issuer);
	id.subject = strdup(sub);
	id.subject_format = strdup("");
	/* Only a boolean true verifies the e-mail: false, absent or "true" never
	 * link to an existing account. */
	id.email_verified = json_is_true(json_object_get(merged, "email_verified"));
	if (!merged || !id.connection_id || !id.issuer || !id.subject || !id.subject_format) {
		fail_set(&f, 500, "internal", "internal", "Out of memory.");
		goto fail;
	}
	if ((rc = add_claims(&id, merged, &err)) != 0) {
		fail_set(&f, rc == IDB_ETOOBIG ? 413 : 400, "oidc-claims-too-large", "claims_over_bounds", "%s", err.msg);
		goto fail;
	}
	if (idb_attrmap_apply(e->map, &id, &prof, &err) != 0) {
		fail_set(&f, 400, "sso-attribute-mapping", "mapping_failed", "%s", err.msg);
		goto fail;
	}
	{
		idb_db *db;
		if (idb_store_acquire(app->store, &db, &err) != 0) {
			fail_set(&f, 503, "sso-unavailable", "database_unavailable", "Sign-in is temporarily unavailable.");
			goto fail;
		}
		const char *sid = json_string_value(json_object_get(jwt.payload, "sid"));
		idb_session_idp idp = {.connection_id = c.id,
				       .subject = sub,
				       .sid = sid && strlen(sid) <= 255 ? sid : NULL,
				       .session_dump = id_token};
		idb_session_sso sso = {.req = req, .method = "oidc", .idp = &idp};
		idb_jit_opts jo = {.in_tx = idb_session_sso_in_tx, .in_tx_arg = &sso};
		idb_jit_result jr;
		rc = idb_jit_provision(db, &c, &id, &prof, idb_req_ip(req), &jo, &jr, &err);
		if (rc == 0) {
			char *ll = last_login_json(&c, merged);
			if (ll)
				(void)idb_connection_set_last_login(db, c.id, ll, NULL);
			free(ll);
		}
		idb_store_release(db);
		if (rc == IDB_EFORBIDDEN) {
			fail_set(&f, 403, "sso-account-refused", NULL, "%s", jr.message);
			goto fail;
		}
		if (rc != 0) {
			fail_set(&f, 503, "sso-unavailable", "provisioning_failed", "Sign-in is temporarily unavailable.");
			goto fail;
		}
		if (jr.changed) /* a returning user with nothing new keeps the cached principal */
			idb_authz_invalidate(app, jr.user_id);
		idb_session_issue(req, &sso.s, NULL);
	}
	idb_resp_redirect(req, 303, target);
	goto done;
fail:
	if (f.reason) {
		idb_db *db;
		if (idb_store_acquire(app->store, &db, NULL) == 0) {
			(void)idb_jit_record_failure(db, &c, f.reason, f.detail, idb_req_ip(req), NULL);
			idb_store_release(db);
		}
	}
	idb_log_info("OIDC login on %s refused: %s (%s)", c.slug, f.reason ? f.reason : "jit", f.detail);
	idb_sso_fail(req, f.status ? f.status : 400, f.type ? f.type : "oidc-refused", "Sign-in failed", f.detail);
done:
	idb_profile_clear(&prof);
	idb_identity_clear(&id);
	idb_jwt_clear(&jwt);
	json_decref(state);
	json_decref(tokens);
	json_decref(userinfo);
	json_decref(merged);
	free(state_txt);
	free(target);
	meta_release(m);
	entry_put(o, e);
	idb_connection_clear(&c);
	return 0;
}

/* --- logout --- */

static int backchannel_error(idb_req *req, unsigned status, const char *error, const char *desc)
{
	idb_resp_header(req, "Cache-Control", "no-store");
	return idb_resp_json(req, status, json_pack("{ss ss}", "error", error, "error_description", desc));
}

int idb_oidc_handle_backchannel_logout(idb_req *req)
{
	idb_app *app = idb_req_app(req);
	idb_oidc *o = app->oidc;
	idb_err err;
	idb_err_clear(&err);
	idb_connection c;
	if (load_connection(req, &c, &err) != 0)
		return backchannel_error(req, err.code == IDB_ENOTFOUND ? 404 : 503, "invalid_request", err.msg);
	oidc_entry *e = NULL;
	oidc_meta *m = NULL;
	idb_jwt jwt = {0};
	const char *token = idb_req_form(req, "logout_token");
	const char *issuer = idb_connection_str(&c, "oidc", "issuer");
	const char *client_id = idb_connection_str(&c, "oidc", "client_id");
	int rc;
	if (!token || !*token) {
		backchannel_error(req, 400, "invalid_request", "logout_token is required");
		goto done;
	}
	if (!issuer || !client_id || entry_get(o, &c, &e, &err) != 0 || meta_current(o, e, issuer, &m, &err) != 0) {
		backchannel_error(req, 503, "temporarily_unavailable", "the provider's metadata cannot be fetched");
		goto done;
	}
	rc = idb_jwt_decode(&jwt, token, (size_t)app->cfg->oidc_max_token_bytes, &err);
	if (rc == 0) {
		const char *typ = json_string_value(json_object_get(jwt.header, "typ"));
		if (typ && strcasecmp(typ, "logout+jwt") != 0 && strcasecmp(typ, "application/logout+jwt") != 0 &&
		    strcasecmp(typ, "JWT") != 0)
			rc = idb_err_set(&err, IDB_EAUTH, NULL, "the token's typ is not logout+jwt");
	}
	if (rc == 0)
		rc = verify_signature(o, e, m, &jwt, &err);
	if (rc == IDB_EUNAVAIL) {
		backchannel_error(req, 503, "temporarily_unavailable", "the provider's keys cannot be fetched");
		goto done;
	}
	int64_t now = idb_now_s();
	if (rc == 0) {
		idb_jwt_expect x = {.issuer = m->issuer,
				    .audience = client_id,
				    .nonce_forbidden = true,
				    .now = now,
				    .skew_s = app->cfg->oidc_clock_skew_s,
				    .max_age_s = LOGOUT_TOKEN_MAX_AGE_S};
		rc = idb_jwt_check_claims(jwt.payload, &x, &err);
	}
	const json_t *p = jwt.payload;
	const char *jti = json_string_value(json_object_get(p, "jti"));
	const char *sub = json_string_value(json_object_get(p, "sub"));
	const char *sid = json_string_value(json_object_get(p, "sid"));
	json_t *events = json_object_get(p, "events");
	if (rc == 0 && (!jti || !*jti || strlen(jti) > 255))
		rc = idb_err_set(&err, IDB_EAUTH, NULL, "the logout token has no jti");
	if (rc == 0 && (!json_is_object(events) || !json_is_object(json_object_get(events, BACKCHANNEL_EVENT))))
		rc = idb_err_set(&err, IDB_EAUTH, NULL, "the logout token has no back-channel logout event");
	if (rc == 0 && ((!sub && !sid) || (json_object_get(p, "sid") && !sid) ||
			(sub && (!*sub || strlen(sub) > 255)) || (sid && (!*sid || strlen(sid) > 255))))
		rc = idb_err_set(&err, IDB_EAUTH, NULL, "the logout token names neither a sid nor a sub");
	if (rc != 0) {
		idb_log_info("OIDC logout token refused on %s: %s", c.slug, err.msg);
		backchannel_error(req, 400, "invalid_request", err.msg);
		goto done;
	}
	/* Each logout token once, on all instances, for as long as it could be
	 * accepted. */
	{
		char src[600], hash[65], key[96];
		snprintf(src, sizeof(src), "%s\n%s", m->issuer, jti);
		idb_sha256_hex(hash, src, strlen(src));
		snprintf(key, sizeof(key), "idb:oidc:jti:%s", hash);
		int nrc = idb_cache_set_nx(app->cache, key, "1", LOGOUT_TOKEN_MAX_AGE_S + 2 * app->cfg->oidc_clock_skew_s + 60,
					   &err);
		if (nrc == IDB_EEXISTS) {
			backchannel_error(req, 400, "invalid_request", "this logout token was already used");
			goto done;
		}
		if (nrc != 0) {
			backchannel_error(req, 503, "temporarily_unavailable", "try again later");
			goto done;
		}
	}
	idb_db *db;
	if (idb_store_acquire(app->store, &db, &err) != 0) {
		backchannel_error(req, 503, "temporarily_unavailable", "try again later");
		goto done;
	}
	char(*hashes)[65] = NULL;
	int n = 0;
	rc = idb_sessions_delete_idp(db, c.id, sub, NULL, sid, &hashes, &n, &err);
	idb_store_release(db);
	if (rc != 0) {
		free(hashes);
		backchannel_error(req, 503, "temporarily_unavailable", "try again later");
		goto done;
	}
	idb_session_uncache(app, (const char(*)[65])hashes, (size_t)n);
	free(hashes);
	idb_log_info("OIDC back-channel logout on %s ended %d session(s)", c.slug, n);
	idb_resp_header(req, "Cache-Control", "no-store");
	idb_resp_body(req, 200, "text/plain; charset=utf-8", "", 0);
done:
	idb_jwt_clear(&jwt);
	meta_release(m);
	entry_put(o, e);
	idb_connection_clear(&c);
	return 0;
}

void idb_oidc_logout_redirect(idb_req *req, const char *session_hash, char **redirect_out)
{
	idb_app *app = idb_req_app(req);
	*redirect_out = NULL;
	char *subject = NULL, *id_token = NULL;
	idb_connection c;
	bool have = idb_session_idp_context(app, session_hash, "oidc", &c, &subject, &id_token);
	oidc_entry *e = NULL;
	oidc_meta *m = NULL;
	const char *issuer = have ? idb_connection_str(&c, "oidc", "issuer") : NULL;
	const char *client_id = have ? idb_connection_str(&c, "oidc", "client_id") : NULL;
	if (issuer && client_id && entry_get(app->oidc, &c, &e, NULL) == 0 &&
	    meta_current(app->oidc, e, issuer, &m, NULL) == 0 && m->end_session_endpoint) {
		char post_logout[1024];
		snprintf(post_logout, sizeof(post_logout), "%s/login", app->cfg->public_url);
		sbuf u = {0};
		sb_str(&u, m->end_session_endpoint);
		char sep = strchr(m->end_session_endpoint, '?') ? '&' : '?';
		sb_param(&u, sep, "client_id", client_id);
		if (id_token)
			sb_param(&u, '&', "id_token_hint", id_token);
		sb_param(&u, '&', "post_logout_redirect_uri", post_logout);
		*redirect_out = sb_take(&u);
	}
	meta_release(m);
	entry_put(app->oidc, e);
	idb_connection_clear(&c);
	free(subject);
	free(id_token);
}

/* --- bearer tokens --- */

static size_t tc_bucket(const idb_oidc *o, const unsigned char key[32])
{
	uint64_t h;
	memcpy(&h, key, sizeof(h));
	return (size_t)(h & (o->nbuckets - 1));
}

static void tc_unlink(idb_oidc *o, tc_node *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		o->head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	else
		o->tail = t->prev;
	t->prev = t->next = NULL;
}

static void tc_push_front(idb_oidc *o, tc_node *t)
{
	t->prev = NULL;
	t->next = o->head;
	if (o->head)
		o->head->prev = t;
	o->head = t;
	if (!o->tail)
		o->tail = t;
}

static void tc_remove(idb_oidc *o, tc_node *t)
{
	tc_node **pp = &o->buckets[tc_bucket(o, t->key)];
	while (*pp && *pp != t)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = t->hnext;
	tc_unlink(o, t);
	o->count--;
	free(t);
}

static bool tc_get(idb_oidc *o, const unsigned char key[32], int64_t now, char user_out[37])
{
	if (!o->buckets)
		return false;
	bool hit = false;
	pthread_mutex_lock(&o->tc_mu);
	tc_node *t = o->buckets[tc_bucket(o, key)];
	while (t && memcmp(t->key, key, 32) != 0)
		t = t->hnext;
	if (t && t->until <= now) {
		tc_remove(o, t);
	} else if (t) {
		memcpy(user_out, t->user_id, 37);
		if (o->head != t) {
			tc_unlink(o, t);
			tc_push_front(o, t);
		}
		hit = true;
	}
	pthread_mutex_unlock(&o->tc_mu);
	return hit;
}

static void tc_put(idb_oidc *o, const unsigned char key[32], const char *user_id, int64_t until)
{
	if (!o->buckets)
		return;
	tc_node *n = calloc(1, sizeof(*n));
	if (!n)
		return;
	memcpy(n->key, key, 32);
	idb_strlcpy(n->user_id, user_id, sizeof(n->user_id));
	n->until = until;
	pthread_mutex_lock(&o->tc_mu);
	size_t b = tc_bucket(o, key);
	for (tc_node *t = o->buckets[b]; t; t = t->hnext)
		if (!memcmp(t->key, key, 32)) {
			tc_remove(o, t);
			break;
		}
	while (o->count >= o->cap && o->tail)
		tc_remove(o, o->tail);
	n->hnext = o->buckets[b];
	o->buckets[b] = n;
	tc_push_front(o, n);
	o->count++;
	pthread_mutex_unlock(&o->tc_mu);
}

/* Validates jwt for connection c; *until gets the token's exp. */
static int bearer_validate(idb_app *app, const idb_connection *c, const idb_jwt *jwt, oidc_entry **e_out,
			   int64_t *exp_out, idb_err *err)
{
	idb_oidc *o = app->oidc;
	*e_out = NULL;
	const char *issuer = idb_connection_str(c, "oidc", "issuer");
	const char *aud = idb_connection_str(c, "oidc", "bearer_audience");
	if (!issuer || !aud)
		return idb_err_set(err, IDB_EAUTH, NULL, "Invalid bearer token.");
	oidc_entry *e = NULL;
	oidc_meta *m = NULL;
	int rc = entry_get(o, c, &e, err);
	if (rc == 0)
		rc = meta_current(o, e, issuer, &m, err);
	if (rc == 0)
		rc = verify_signature(o, e, m, jwt, err);
	if (rc == 0) {
		idb_jwt_expect x = {.issuer = m->issuer,
				    .audience = aud,
				    .require_exp = true,
				    .require_sub = true,
				    .now = idb_now_s(),
				    .skew_s = app->cfg->oidc_clock_skew_s,
				    .max_age_s = app->cfg->oidc_max_token_age_s};
		rc = idb_jwt_check_claims(jwt->payload, &x, err);
	}
	meta_release(m);
	if (rc != 0) {
		entry_put(o, e);
		return rc == IDB_EUNAVAIL || rc == IDB_EINTERNAL ? rc : IDB_EAUTH;
	}
	*exp_out = (int64_t)json_integer_value(json_object_get(jwt->payload, "exp"));
	*e_out = e;
	return 0;
}

/* The user of a validated token: the identity link, or JIT when the
 * connection's jit.bearer_provisioning is on. */
static int bearer_user(idb_app *app, const idb_connection *c, oidc_entry *e, const json_t *claims, char user_out[37],
		       idb_err *err)
{
	const char *sub = json_string_value(json_object_get(claims, "sub"));
	idb_db *db;
	int rc = idb_store_acquire(app->store, &db, err);
	if (rc != 0)
		return rc;
	rc = idb_jit_identity_user(db, c->id, sub, user_out, err);
	if (rc == IDB_ENOTFOUND && idb_connection_flag(c, NULL, "bearer_provisioning", false)) {
		idb_identity id = {0};
		idb_profile prof = {0};
		idb_jit_result jr;
		id.connection_id = strdup(c->id);
		id.issuer = strdup(idb_connection_str(c, "oidc", "issuer"));
		id.subject = strdup(sub);
		id.subject_format = strdup("");
		id.email_verified = json_is_true(json_object_get(claims, "email_verified"));
		rc = id.connection_id && id.issuer && id.subject && id.subject_format
			     ? add_claims(&id, claims, err)
			     : idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		if (rc == 0)
			rc = idb_attrmap_apply(e->map, &id, &prof, err);
		if (rc == 0)
			rc = idb_jit_provision(db, c, &id, &prof, NULL, NULL, &jr, err);
		if (rc == 0) {
			idb_strlcpy(user_out, jr.user_id, 37);
			if (jr.changed) /* a returning user with nothing new keeps the cached principal */
				idb_authz_invalidate(app, jr.user_id);
		} else if (rc != IDB_EUNAVAIL) {
			idb_log_info("bearer JIT on %s refused: %s", c->slug, rc == IDB_EFORBIDDEN ? jr.reason : err->msg);
			rc = idb_err_set(err, IDB_EAUTH, NULL, "No account may be provisioned for this bearer token.");
		}
		idb_profile_clear(&prof);
		idb_identity_clear(&id);
	} else if (rc == IDB_ENOTFOUND) {
		rc = idb_err_set(err, IDB_EAUTH, NULL, "No account is linked to this bearer token's subject.");
	}
	idb_store_release(db);
	return rc;
}

int idb_oidc_bearer_resolve(idb_app *app, const char *token, char user_out[37], idb_err *err)
{
	idb_oidc *o = app->oidc;
	size_t n = strnlen(token, (size_t)app->cfg->oidc_max_token_bytes + 1);
	if (n > (size_t)app->cfg->oidc_max_token_bytes)
		return idb_err_set(err, IDB_EAUTH, NULL, "Invalid bearer token (too large).");
	unsigned char key[32];
	crypto_hash_sha256(key, (const unsigned char *)token, n);
	int64_t now = idb_now_s();
	if (tc_get(o, key, now, user_out))
		return 0;
	idb_jwt jwt;
	idb_err derr;
	idb_err_clear(&derr);
	if (idb_jwt_decode(&jwt, token, (size_t)app->cfg->oidc_max_token_bytes, &derr) != 0)
		return idb_err_set(err, IDB_EAUTH, NULL, "Invalid bearer token.");
	const char *iss = json_string_value(json_object_get(jwt.payload, "iss"));
	idb_connection conns[BEARER_MAX_CONNECTIONS];
	int nc = 0, rc = IDB_EAUTH;
	idb_db *db;
	if (iss && *iss && strlen(iss) < 2048) {
		if ((rc = idb_store_acquire(app->store, &db, err)) != 0) {
			idb_jwt_clear(&jwt);
			return rc;
		}
		rc = idb_connection_bearer_candidates(db, iss, conns, BEARER_MAX_CONNECTIONS, &nc, err);
		idb_store_release(db);
		if (rc != 0) {
			idb_jwt_clear(&jwt);
			return rc;
		}
	}
	rc = idb_err_set(err, IDB_EAUTH, NULL, "Invalid bearer token.");
	for (int i = 0; i < nc; i++) {
		oidc_entry *e = NULL;
		int64_t exp = 0;
		idb_err verr;
		idb_err_clear(&verr);
		int vrc = bearer_validate(app, &conns[i], &jwt, &e, &exp, &verr);
		if (vrc == IDB_EUNAVAIL && rc == IDB_EAUTH) {
			rc = idb_err_set(err, IDB_EUNAVAIL, NULL, "The token's issuer cannot be reached to check it.");
			continue;
		}
		if (vrc != 0) {
			idb_log_debug("bearer token refused by connection %s: %s", conns[i].slug, verr.msg);
			if (rc == IDB_EAUTH)
				idb_err_set(err, IDB_EAUTH, NULL, "Invalid bearer token: %s.", verr.msg);
			continue;
		}
		rc = bearer_user(app, &conns[i], e, jwt.payload, user_out, err);
		entry_put(o, e);
		if (rc == 0) {
			int64_t until = now + app->cfg->oidc_bearer_cache_ttl_s;
			if (exp < until)
				until = exp;
			if (until > now)
				tc_put(o, key, user_out, until);
		}
		break;
	}
	for (int i = 0; i < nc; i++)
		idb_connection_clear(&conns[i]);
	idb_jwt_clear(&jwt);
	return rc;
}
