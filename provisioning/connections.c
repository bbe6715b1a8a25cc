/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "connections.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "attrmap.h"
#include "db.h"
#include "roles.h"
#include "util.h"

#define MAX_DOMAINS 100

void idb_connection_clear(idb_connection *c)
{
	if (!c)
		return;
	free(c->name);
	free(c->preset);
	json_decref(c->settings);
	json_decref(c->jit);
	json_decref(c->domains);
	free(c->metadata_xml);
	free(c->metadata_error);
	memset(c, 0, sizeof(*c));
}

static char *dup_or_null(const char *s, bool *ok)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*ok = false;
	return d;
}

int idb_connection_copy(idb_connection *dst, const idb_connection *src)
{
	bool ok = true;
	*dst = *src;
	dst->name = dup_or_null(src->name, &ok);
	dst->preset = dup_or_null(src->preset, &ok);
	dst->metadata_xml = dup_or_null(src->metadata_xml, &ok);
	dst->metadata_error = dup_or_null(src->metadata_error, &ok);
	dst->settings = src->settings ? json_deep_copy(src->settings) : NULL;
	dst->jit = src->jit ? json_deep_copy(src->jit) : NULL;
	dst->domains = src->domains ? json_deep_copy(src->domains) : NULL;
	if (!ok || (src->settings && !dst->settings) || (src->jit && !dst->jit) || (src->domains && !dst->domains)) {
		idb_connection_clear(dst);
		return IDB_EINTERNAL;
	}
	return 0;
}

#define CONN_COLS                                                                                                  \
	"id, org_id, slug, name, protocol, enabled, preset, settings::text, jit::text, array_to_json(allowed_domains)::text," \
	" metadata_xml, coalesce(extract(epoch FROM metadata_fetched_at)::bigint, 0),"                                  \
	" coalesce(extract(epoch FROM metadata_valid_until)::bigint, 0), metadata_error,"                               \
	" (extract(epoch FROM updated_at) * 1000000)::bigint"

static int load_row_at(PGresult *res, int r, idb_connection *out, idb_err *err);

static int load_row(PGresult *res, idb_connection *out, idb_err *err)
{
	memset(out, 0, sizeof(*out));
	if (PQntuples(res) != 1)
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "no such connection");
	return load_row_at(res, 0, out, err);
}

static int load_row_at(PGresult *res, int r, idb_connection *out, idb_err *err)
{
	memset(out, 0, sizeof(*out));
	idb_strlcpy(out->id, idb_db_str(res, r, 0), sizeof(out->id));
	idb_strlcpy(out->org_id, idb_db_str(res, r, 1), sizeof(out->org_id));
	idb_strlcpy(out->slug, idb_db_str(res, r, 2), sizeof(out->slug));
	out->name = strdup(idb_db_str(res, r, 3));
	idb_strlcpy(out->protocol, idb_db_str(res, r, 4), sizeof(out->protocol));
	out->enabled = idb_db_str(res, r, 5)[0] == 't';
	out->preset = idb_db_val(res, r, 6) ? strdup(idb_db_str(res, r, 6)) : NULL;
	out->settings = json_loads(idb_db_str(res, r, 7), 0, NULL);
	out->jit = json_loads(idb_db_str(res, r, 8), 0, NULL);
	out->domains = json_loads(idb_db_str(res, r, 9), 0, NULL);
	out->metadata_xml = idb_db_val(res, r, 10) ? strdup(idb_db_str(res, r, 10)) : NULL;
	out->metadata_fetched_at = strtoll(idb_db_str(res, r, 11), NULL, 10);
	out->metadata_valid_until = strtoll(idb_db_str(res, r, 12), NULL, 10);
	out->metadata_error = idb_db_val(res, r, 13) ? strdup(idb_db_str(res, r, 13)) : NULL;
	out->version = strtoll(idb_db_str(res, r, 14), NULL, 10);
	if (!out->name || !out->settings || !out->jit || !out->domains) {
		idb_connection_clear(out);
		return idb_err_set(err, IDB_EINTERNAL, NULL, "cannot load connection");
	}
	return 0;
}

int idb_connection_by_slug(idb_db *db, const char *slug, idb_connection *out, idb_err *err)
{
	static const char sql[] = "SELECT " CONN_COLS " FROM idp_connections WHERE slug = $1";
	const char *p[] = {slug};
	PGresult *res = idb_db_query(db, sql, 1, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = load_row(res, out, err);
	PQclear(res);
	return rc;
}


int idb_connection_bearer_candidates(idb_db *db, const char *issuer, idb_connection *out, int max, int *n,
				     idb_err *err)
{
	static const char sql[] = "SELECT " CONN_COLS " FROM idp_connections WHERE protocol = 'oidc' AND enabled"
				  " AND settings->'oidc'->>'issuer' = $1 AND settings->'oidc'->'accept_bearer' = 'true'::jsonb"
				  " ORDER BY created_at, id LIMIT $2::int";
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", max);
	const char *p[] = {issuer, lim};
	*n = 0;
	PGresult *res = idb_db_query(db, sql, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = 0;
	for (int i = 0; i < PQntuples(res) && i < max && rc == 0; i++) {
		rc = load_row_at(res, i, &out[i], err);
		if (rc == 0)
			(*n)++;
	}
	PQclear(res);
	if (rc != 0) {
		for (int i = 0; i < *n; i++)
			idb_connection_clear(&out[i]);
		*n = 0;
	}
	return rc;
}

int idb_connection_get(idb_db *db, const char *org_id, const char *id, idb_connection *out, idb_err *err)
{
	memset(out, 0, sizeof(*out));
	if (!idb_uuid_valid(id))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "no such connection");
	static const char sql[] = "SELECT " CONN_COLS " FROM idp_connections WHERE id = $1::uuid AND org_id = $2::uuid";
	const char *p[] = {id, org_id};
	PGresult *res = idb_db_query(db, sql, 2, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = load_row(res, out, err);
	PQclear(res);
	return rc;
}

int idb_connection_version(idb_db *db, const char *id, int64_t *out, idb_err *err)
{
	static const char sql[] =
		"SELECT (extract(epoch FROM updated_at) * 1000000)::bigint FROM idp_connections WHERE id = $1::uuid";
	const char *p[] = {id};
	PGresult *res = idb_db_query(db, sql, 1, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = 0;
	if (PQntuples(res) == 1)
		*out = strtoll(idb_db_str(res, 0, 0), NULL, 10);
	else
		rc = idb_err_set(err, IDB_ENOTFOUND, NULL, "no such connection");
	PQclear(res);
	return rc;
}

int idb_connection_list_ids(idb_db *db, const char *org_id, json_t **out, idb_err *err)
{
	static const char sql[] = "SELECT id FROM idp_connections WHERE org_id = $1::uuid ORDER BY slug";
	const char *p[] = {org_id};
	PGresult *res = idb_db_query(db, sql, 1, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	*out = json_array();
	for (int i = 0; i < PQntuples(res); i++)
		json_array_append_new(*out, json_string(idb_db_str(res, i, 0)));
	PQclear(res);
	return 0;
}

/* --- validation --- */

static void field_error(json_t *errors, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void field_error(json_t *errors, const char *field, const char *fmt, ...)
{
	char msg[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_array_append_new(errors, json_pack("{ss ss}", "field", field, "message", msg));
}

static bool slug_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n < 1 || n > 63 || s[0] == '-')
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

static bool domain_ok(const char *d)
{
	size_t n = strlen(d);
	if (n < 3 || n > 253 || !strchr(d, '.') || d[0] == '.' || d[0] == '-' || d[n - 1] == '.' || strstr(d, ".."))
		return false;
	return strspn(d, "abcdefghijklmnopqrstuvwxyz0123456789-.") == n;
}

static bool http_url_ok(const char *u)
{
	return u && (strncmp(u, "https://", 8) == 0 || strncmp(u, "http://", 7) == 0) && strlen(u) < 2048 &&
	       !strpbrk(u, " \r\n\t\"<>\\");
}

static void check_bool(json_t *o, const char *key, const char *prefix, json_t *errors)
{
	json_t *v = json_object_get(o, key);
	if (v && !json_is_boolean(v)) {
		char f[96];
		snprintf(f, sizeof(f), "%s%s", prefix, key);
		field_error(errors, f, "must be true or false");
	}
}

static void check_keys(json_t *o, const char *const *allowed, const char *prefix, json_t *errors)
{
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
	{
		bool ok = false;
		for (int i = 0; allowed[i] && !ok; i++)
			ok = strcmp(allowed[i], k) == 0;
		if (!ok) {
			char f[160];
			snprintf(f, sizeof(f), "%s%.100s", prefix, k);
			field_error(errors, f, "unknown field");
		}
	}
}

static void validate_saml(json_t *s, bool create, json_t *errors)
{
	static const char *const keys[] = {"idp_metadata_xml", "idp_metadata_url", "allow_idp_initiated", "allow_sha1",
					   "force_authn", "name_id_format", "sp_entity_id", "acs_url", "metadata_url",
					   "slo_url", "idp_entity_id", "metadata_status", NULL};
	if (!json_is_object(s)) {
		field_error(errors, "saml", "must be an object");
		return;
	}
	check_keys(s, keys, "saml.", errors);
	json_t *xml = json_object_get(s, "idp_metadata_xml"), *url = json_object_get(s, "idp_metadata_url");
	if (xml && !json_is_null(xml) && (!json_is_string(xml) || json_string_length(xml) > 1024 * 1024))
		field_error(errors, "saml.idp_metadata_xml", "must be the IdP's metadata XML (at most 1 MiB)");
	if (url && !json_is_null(url) && (!json_is_string(url) || !http_url_ok(json_string_value(url))))
		field_error(errors, "saml.idp_metadata_url", "must be an http:// or https:// URL");
	bool has_xml = json_is_string(xml) && json_string_length(xml) > 0;
	bool has_url = json_is_string(url) && json_string_length(url) > 0;
	if (create && !has_xml && !has_url)
		field_error(errors, "saml.idp_metadata_xml", "give the IdP metadata as idp_metadata_xml or idp_metadata_url");
	check_bool(s, "allow_idp_initiated", "saml.", errors);
	check_bool(s, "allow_sha1", "saml.", errors);
	check_bool(s, "force_authn", "saml.", errors);
	json_t *nf = json_object_get(s, "name_id_format");
	if (nf && !json_is_null(nf) && !json_is_string(nf))
		field_error(errors, "saml.name_id_format", "must be a NameID format URI");
}

static bool oidc_alg_ok(const char *a)
{
	/* Asymmetric JWS algorithms only: never none, never HS*. */
	static const char *const ok[] = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"};
	for (size_t i = 0; a && i < sizeof(ok) / sizeof(ok[0]); i++)
		if (!strcmp(a, ok[i]))
			return true;
	return false;
}

static void validate_oidc(json_t *o, bool create, json_t *errors)
{
	static const char *const keys[] = {"issuer", "client_id", "client_secret", "scopes", "token_endpoint_auth",
					   "claims_email", "claims_name", "claims_groups", "userinfo", "allowed_algs",
					   "accept_bearer", "bearer_audience", "redirect_uri", "has_client_secret",
					   "backchannel_logout_uri", "post_logout_redirect_uri", NULL};
	if (!json_is_object(o)) {
		field_error(errors, "oidc", "must be an object");
		return;
	}
	check_keys(o, keys, "oidc.", errors);
	json_t *iss = json_object_get(o, "issuer");
	if ((create || iss) && (!json_is_string(iss) || !http_url_ok(json_string_value(iss))))
		field_error(errors, "oidc.issuer", "must be the provider's issuer URL");
	json_t *cid = json_object_get(o, "client_id");
	if ((create || cid) && (!json_is_string(cid) || json_string_length(cid) == 0 || json_string_length(cid) > 512))
		field_error(errors, "oidc.client_id", "is required (1-512 characters)");
	json_t *sec = json_object_get(o, "client_secret");
	if (sec && (!json_is_string(sec) || json_string_length(sec) == 0 || json_string_length(sec) > 1024 ||
		    strlen(json_string_value(sec)) != json_string_length(sec)))
		field_error(errors, "oidc.client_secret", "must be the client secret (1-1024 characters)");
	json_t *auth = json_object_get(o, "token_endpoint_auth");
	if (auth && (!json_is_string(auth) || (strcmp(json_string_value(auth), "client_secret_basic") != 0 &&
					       strcmp(json_string_value(auth), "client_secret_post") != 0)))
		field_error(errors, "oidc.token_endpoint_auth", "must be client_secret_basic or client_secret_post");
	json_t *scopes = json_object_get(o, "scopes");
	if (scopes) {
		bool ok = json_is_array(scopes) && json_array_size(scopes) <= 32;
		bool has_openid = false;
		size_t i;
		json_t *v;
		json_array_foreach(scopes, i, v)
		{
			ok = ok && json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 128 &&
			     strspn(json_string_value(v), "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
							  "-_.:/") == json_string_length(v);
			has_openid |= json_is_string(v) && !strcmp(json_string_value(v), "openid");
		}
		if (!ok)
			field_error(errors, "oidc.scopes", "must be a list of scope names");
		else if (!has_openid)
			field_error(errors, "oidc.scopes", "must include openid");
	}
	static const char *const claim_keys[] = {"claims_email", "claims_name", "claims_groups"};
	for (size_t i = 0; i < 3; i++) {
		json_t *v = json_object_get(o, claim_keys[i]);
		if (v && !json_is_null(v) && (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 256)) {
			char f[48];
			snprintf(f, sizeof(f), "oidc.%s", claim_keys[i]);
			field_error(errors, f, "must be a claim name (1-256 characters)");
		}
	}
	json_t *algs = json_object_get(o, "allowed_algs");
	if (algs) {
		bool ok = json_is_array(algs) && json_array_size(algs) > 0 && json_array_size(algs) <= 9;
		size_t i;
		json_t *v;
		json_array_foreach(algs, i, v) ok = ok && oidc_alg_ok(json_string_value(v));
		if (!ok)
			field_error(errors, "oidc.allowed_algs",
				    "must be a non-empty list of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 "
				    "(never none or HS*)");
	}
	check_bool(o, "userinfo", "oidc.", errors);
	check_bool(o, "accept_bearer", "oidc.", errors);
	json_t *baud = json_object_get(o, "bearer_audience");
	if (baud && !json_is_null(baud) &&
	    (!json_is_string(baud) || json_string_length(baud) == 0 || json_string_length(baud) > 512))
		field_error(errors, "oidc.bearer_audience", "must be the audience bearer tokens are issued for (1-512 characters)");
	else if (json_is_true(json_object_get(o, "accept_bearer")) && !json_is_string(baud))
		field_error(errors, "oidc.bearer_audience", "is required when accept_bearer is on");
}

static void validate_domains(json_t *d, json_t *errors)
{
	if (!json_is_array(d) || json_array_size(d) > MAX_DOMAINS) {
		field_error(errors, "allowed_domains", "must be a list of at most %d e-mail domains", MAX_DOMAINS);
		return;
	}
	size_t i;
	json_t *v;
	json_array_foreach(d, i, v)
	{
		char f[48];
		snprintf(f, sizeof(f), "allowed_domains[%zu]", i);
		if (!json_is_string(v) || !domain_ok(json_string_value(v))) {
			field_error(errors, f, "must be a lowercase domain such as example.com");
			continue;
		}
		for (size_t k = 0; k < i; k++)
			if (json_equal(json_array_get(d, k), v))
				field_error(errors, f, "duplicate domain %s", json_string_value(v));
	}
}

static void validate_jit(json_t *j, json_t *errors)
{
	if (!json_is_object(j)) {
		field_error(errors, "jit", "must be an object");
		return;
	}
	check_bool(j, "enabled", "jit.", errors);
	check_bool(j, "sync_groups", "jit.", errors);
	check_bool(j, "create_missing_groups", "jit.", errors);
	check_bool(j, "bearer_provisioning", "jit.", errors);
	json_t *rules = json_object_get(j, "role_rules");
	if (rules) {
		if (!json_is_array(rules) || json_array_size(rules) > 200) {
			field_error(errors, "jit.role_rules", "must be a list of {group, role} (at most 200)");
		} else {
			size_t i;
			json_t *r;
			json_array_foreach(rules, i, r)
			{
				char f[64];
				snprintf(f, sizeof(f), "jit.role_rules[%zu]", i);
				const char *g = json_string_value(json_object_get(r, "group"));
				const char *role = json_string_value(json_object_get(r, "role"));
				if (!json_is_object(r) || !g || !*g)
					field_error(errors, f, "needs a group");
				else if (idb_role_parse(role) < 0)
					field_error(errors, f, "role must be one of readonly, train, configure, admin");
			}
		}
	}
	char *txt = json_dumps(j, JSON_COMPACT);
	idb_attrmap *m = NULL;
	idb_err e;
	idb_err_clear(&e);
	if (txt && idb_attrmap_compile(&m, txt, &e) != 0) {
		char f[96];
		snprintf(f, sizeof(f), "jit.%.80s", e.field[0] ? e.field : "map");
		field_error(errors, f, "%s", e.msg);
	}
	idb_attrmap_free(m);
	free(txt);
}

/* Shallow-merges patch's sub-objects into base's: {"saml":{"a":1}} over
 * {"saml":{"b":2}} gives {"saml":{"a":1,"b":2}}; null deletes a key. */
static void merge_obj(json_t *base, const json_t *patch)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)patch, k, v)
	{
		json_t *bv = json_object_get(base, k);
		if (json_is_object(v) && json_is_object(bv)) {
			const char *k2;
			json_t *v2;
			json_object_foreach(v, k2, v2)
			{
				if (json_is_null(v2))
					json_object_del(bv, k2);
				else
					json_object_set(bv, k2, v2);
			}
		} else {
			json_object_set(base, k, v);
		}
	}
}

int idb_connection_validate(const json_t *in, const idb_connection *base, json_t *errors, json_t **out, idb_err *err)
{
	*out = NULL;
	static const char *const keys[] = {"slug",	"name", "protocol", "enabled",	  "preset", "saml",
					   "oidc",	"allowed_domains", "jit", "id", "sp", "metadata", "created_at",
					   "updated_at", "last_login", NULL};
	if (!json_is_object(in)) {
		field_error(errors, "", "the connection must be a JSON object");
		return idb_err_set(err, IDB_EINVAL, NULL, "invalid connection");
	}
	json_t *o;
	if (base) {
		o = idb_connection_to_json(base);
		/* Derived fields never come back in. */
		json_object_del(o, "id");
		json_object_del(o, "sp");
		json_object_del(o, "metadata");
		json_object_del(o, "created_at");
		json_object_del(o, "updated_at");
		json_object_del(o, "last_login");
		json_t *proto = json_object_get(o, base->protocol);
		if (proto) {
			static const char *const derived[] = {"sp_entity_id", "acs_url", "metadata_url", "slo_url",
							      "idp_entity_id", "metadata_status", "has_client_secret",
							      "redirect_uri", "backchannel_logout_uri",
							      "post_logout_redirect_uri"};
			for (size_t i = 0; i < sizeof(derived) / sizeof(derived[0]); i++)
				json_object_del(proto, derived[i]);
		}
		check_keys((json_t *)in, keys, "", errors);
		const char *ns = json_string_value(json_object_get(in, "slug"));
		if (ns && strcmp(ns, base->slug) != 0)
			field_error(errors, "slug", "cannot be changed (IdPs know the connection by it)");
		const char *np = json_string_value(json_object_get(in, "protocol"));
		if (np && strcmp(np, base->protocol) != 0)
			field_error(errors, "protocol", "cannot be changed; create a new connection");
		/* Users are keyed on (connection, sub): another issuer's subjects
		 * must never land on this connection's accounts. */
		const char *niss = json_string_value(json_object_get(json_object_get(in, "oidc"), "issuer"));
		const char *biss = idb_connection_str(base, "oidc", "issuer");
		if (niss && biss && strcmp(niss, biss) != 0)
			field_error(errors, "oidc.issuer", "cannot be changed (accounts are linked to this issuer's subjects); "
							  "create a new connection");
		merge_obj(o, in);
	} else {
		o = json_deep_copy(in);
		check_keys(o, keys, "", errors);
	}
	if (!o)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	const char *slug = json_string_value(json_object_get(o, "slug"));
	if (!slug_ok(slug))
		field_error(errors, "slug", "must be 1-63 characters of a-z, 0-9 and '-'");
	const char *name = json_string_value(json_object_get(o, "name"));
	if (!name || !*name || strlen(name) > 200)
		field_error(errors, "name", "is required (1-200 characters)");
	const char *proto = json_string_value(json_object_get(o, "protocol"));
	if (!proto || (strcmp(proto, "saml") != 0 && strcmp(proto, "oidc") != 0)) {
		field_error(errors, "protocol", "must be saml or oidc");
		proto = NULL;
	}
	if (!json_object_get(o, "enabled"))
		json_object_set_new(o, "enabled", json_true());
	check_bool(o, "enabled", "", errors);
	json_t *preset = json_object_get(o, "preset");
	if (preset && !json_is_null(preset) && (!json_is_string(preset) || !slug_ok(json_string_value(preset))))
		field_error(errors, "preset", "must be the name of a preset");
	if (proto) {
		const char *other = strcmp(proto, "saml") == 0 ? "oidc" : "saml";
		if (json_object_get(o, other))
			field_error(errors, other, "does not apply to a %s connection", proto);
		json_t *p = json_object_get(o, proto);
		if (!p) {
			field_error(errors, proto, "is required for a %s connection", proto);
		} else if (!strcmp(proto, "saml")) {
			validate_saml(p, base == NULL, errors);
		} else {
			validate_oidc(p, base == NULL, errors);
		}
	}
	if (!json_object_get(o, "allowed_domains"))
		json_object_set_new(o, "allowed_domains", json_array());
	json_t *doms = json_object_get(o, "allowed_domains");
	/* Domains compare lowercase. */
	if (json_is_array(doms)) {
		size_t i;
		json_t *v;
		json_array_foreach(doms, i, v) if (json_is_string(v))
		{
			char *d = strdup(json_string_value(v));
			if (d) {
				idb_str_lower(d);
				json_string_set(v, d);
				free(d);
			}
		}
	}
	validate_domains(doms, errors);
	if (!json_object_get(o, "jit"))
		json_object_set_new(o, "jit", json_object());
	validate_jit(json_object_get(o, "jit"), errors);
	if (json_array_size(errors) > 0) {
		json_decref(o);
		return idb_err_set(err, IDB_EINVAL, NULL, "invalid connection");
	}
	*out = o;
	return 0;
}

static int claim_domains(idb_db *db, const char *org_id, const char *id, const json_t *obj, idb_err *err)
{
	static const char del_sql[] = "DELETE FROM connection_domains WHERE connection_id = $1::uuid";
	static const char ins_sql[] = "INSERT INTO connection_domains (domain, connection_id, org_id)"
				      " VALUES ($1, $2::uuid, $3::uuid)";
	const char *p1[] = {id};
	int rc = idb_db_exec(db, del_sql, 1, p1, NULL, err);
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(obj, "allowed_domains"), i, v)
	{
		if (rc != 0)
			break;
		const char *p[] = {json_string_value(v), id, org_id};
		rc = idb_db_exec(db, ins_sql, 3, p, NULL, err);
		if (rc == IDB_EEXISTS)
			rc = idb_err_set(err, IDB_EEXISTS, "allowed_domains",
					 "domain %s is already claimed by another connection", json_string_value(v));
	}
	return rc;
}

static char *section_text(const json_t *obj)
{
	const char *proto = json_string_value(json_object_get(obj, "protocol"));
	json_t *s = json_deep_copy(json_object_get(obj, proto));
	json_object_del(s, "idp_metadata_xml"); /* kept in its own column */
	json_t *wrap = json_pack("{so}", proto, s ? s : json_object());
	char *txt = json_dumps(wrap, JSON_COMPACT);
	json_decref(wrap);
	return txt;
}

static int write_conn(idb_db *db, const char *sql, int nparams, const char *const *p, char *out_id, idb_err *err)
{
	PGresult *res = idb_db_query(db, sql, nparams, p, err);
	if (!res) {
		if (err && err->code == IDB_EEXISTS)
			idb_err_set(err, IDB_EEXISTS, "slug", "a connection with this slug already exists");
		return err ? err->code : IDB_EINTERNAL;
	}
	int n = PQntuples(res);
	if (n == 1 && out_id)
		idb_strlcpy(out_id, idb_db_str(res, 0, 0), 37);
	PQclear(res);
	return n == 1 ? 0 : idb_err_set(err, IDB_ENOTFOUND, NULL, "no such connection");
}

/* The JSON texts an insert or update stores, made once for either. */
typedef struct conn_texts {
	char *settings, *jit, *doms;
	char valid_until[24];
} conn_texts;

static void conn_texts_clear(conn_texts *t)
{
	free(t->settings);
	free(t->jit);
	free(t->doms);
}

static int conn_texts_make(conn_texts *t, const json_t *obj, int64_t valid_until, idb_err *err)
{
	t->settings = section_text(obj);
	t->jit = json_dumps(json_object_get(obj, "jit"), JSON_COMPACT);
	t->doms = json_dumps(json_object_get(obj, "allowed_domains"), JSON_COMPACT);
	snprintf(t->valid_until, sizeof(t->valid_until), "%lld", (long long)valid_until);
	if (t->settings && t->jit && t->doms)
		return 0;
	conn_texts_clear(t);
	return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
}

int idb_connection_insert(idb_db *db, const char *org_id, const json_t *obj, const char *metadata_xml,
			  int64_t valid_until, char out_id[37], idb_err *err)
{
	static const char sql[] =
		"INSERT INTO idp_connections (org_id, slug, name, protocol, enabled, preset, settings, jit,"
		" allowed_domains, metadata_xml, metadata_fetched_at, metadata_valid_until)"
		" VALUES ($1::uuid, $2, $3, $4, $5::boolean, $6, $7::jsonb, $8::jsonb,"
		"  ARRAY(SELECT json_array_elements_text($9::json)), $10,"
		"  CASE WHEN $10::text IS NULL THEN NULL ELSE now() END,"
		"  CASE WHEN $11::bigint = 0 THEN NULL ELSE to_timestamp($11::bigint) END) RETURNING id";
	conn_texts t;
	int rc = conn_texts_make(&t, obj, valid_until, err);
	if (rc != 0)
		return rc;
	const char *p[] = {org_id,
			   json_string_value(json_object_get(obj, "slug")),
			   json_string_value(json_object_get(obj, "name")),
			   json_string_value(json_object_get(obj, "protocol")),
			   json_is_true(json_object_get(obj, "enabled")) ? "true" : "false",
			   json_string_value(json_object_get(obj, "preset")),
			   t.settings,
			   t.jit,
			   t.doms,
			   metadata_xml,
			   t.valid_until};
	rc = write_conn(db, sql, 11, p, out_id, err);
	conn_texts_clear(&t);
	if (rc == 0)
		rc = claim_domains(db, org_id, out_id, obj, err);
	return rc;
}

int idb_connection_update(idb_db *db, const char *org_id, const char *id, const json_t *obj,
			  const char *metadata_xml, int64_t valid_until, idb_err *err)
{
	static const char sql[] =
		"UPDATE idp_connections SET name = $3, enabled = $4::boolean, preset = $5, settings = $6::jsonb,"
		" jit = $7::jsonb, allowed_domains = ARRAY(SELECT json_array_elements_text($8::json)),"
		" metadata_xml = coalesce($9, metadata_xml),"
		" metadata_fetched_at = CASE WHEN $9::text IS NULL THEN metadata_fetched_at ELSE now() END,"
		" metadata_valid_until = CASE WHEN $9::text IS NULL THEN metadata_valid_until"
		"   WHEN $10::bigint = 0 THEN NULL ELSE to_timestamp($10::bigint) END,"
		" metadata_error = CASE WHEN $9::text IS NULL THEN metadata_error ELSE NULL END,"
		" updated_at = clock_timestamp()"
		" WHERE id = $1::uuid AND org_id = $2::uuid RETURNING id";
	conn_texts t;
	int rc = conn_texts_make(&t, obj, valid_until, err);
	if (rc != 0)
		return rc;
	const char *p[] = {id,
			   org_id,
			   json_string_value(json_object_get(obj, "name")),
			   json_is_true(json_object_get(obj, "enabled")) ? "true" : "false",
			   json_string_value(json_object_get(obj, "preset")),
			   t.settings,
			   t.jit,
			   t.doms,
			   metadata_xml,
			   t.valid_until};
	rc = write_conn(db, sql, 10, p, NULL, err);
	conn_texts_clear(&t);
	if (rc == 0)
		rc = claim_domains(db, org_id, id, obj, err);
	return rc;
}

int idb_connection_delete(idb_db *db, const char *org_id, const char *id, idb_err *err)
{
	if (!idb_uuid_valid(id))
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "no such connection");
	static const char sql[] = "DELETE FROM idp_connections WHERE id = $1::uuid AND org_id = $2::uuid";
	const char *p[] = {id, org_id};
	long n = 0;
	int rc = idb_db_exec(db, sql, 2, p, &n, err);
	if (rc == 0 && n == 0)
		rc = idb_err_set(err, IDB_ENOTFOUND, NULL, "no such connection");
	return rc;
}

int idb_connection_set_metadata(idb_db *db, const char *id, const char *xml, int64_t valid_until,
				int64_t cache_s, const char *error, idb_err *err)
{
	static const char ok_sql[] =
		"UPDATE idp_connections SET metadata_xml = $2, metadata_fetched_at = now(), metadata_error = NULL,"
		" metadata_valid_until = CASE WHEN $3::bigint = 0 THEN NULL ELSE to_timestamp($3::bigint) END,"
		" metadata_cache_s = CASE WHEN $4::bigint = 0 THEN NULL ELSE least($4::bigint, 2147483647)::int END,"
		" updated_at = CASE WHEN metadata_xml IS DISTINCT FROM $2 THEN clock_timestamp() ELSE updated_at END"
		" WHERE id = $1::uuid";
	/* A failed refresh keeps the last good metadata and says why. */
	static const char fail_sql[] =
		"UPDATE idp_connections SET metadata_error = $2, metadata_fetched_at = now() WHERE id = $1::uuid";
	char vu[24], cs[24];
	snprintf(vu, sizeof(vu), "%lld", (long long)valid_until);
	snprintf(cs, sizeof(cs), "%lld", (long long)cache_s);
	if (xml) {
		const char *p[] = {id, xml, vu, cs};
		return idb_db_exec(db, ok_sql, 4, p, NULL, err);
	}
	const char *p[] = {id, error ? error : "metadata refresh failed"};
	return idb_db_exec(db, fail_sql, 2, p, NULL, err);
}

int idb_connection_metadata_due(idb_db *db, long long refresh_s, json_t **out, idb_err *err)
{
	static const char sql[] =
		"SELECT id, settings->'saml'->>'idp_metadata_url' FROM idp_connections"
		" WHERE protocol = 'saml' AND coalesce(settings->'saml'->>'idp_metadata_url', '') <> ''"
		"   AND (metadata_fetched_at IS NULL"
		"        OR metadata_fetched_at < now() - make_interval(secs => least($1::bigint, coalesce(metadata_cache_s, $1::bigint)))"
		"        OR metadata_valid_until < now() + make_interval(secs => $1::bigint))"
		"   AND (metadata_fetched_at IS NULL OR metadata_fetched_at < now() - interval '60 seconds')"
		" ORDER BY metadata_fetched_at NULLS FIRST LIMIT 50";
	char r[24];
	snprintf(r, sizeof(r), "%lld", refresh_s);
	const char *p[] = {r};
	PGresult *res = idb_db_query(db, sql, 1, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	*out = json_array();
	for (int i = 0; i < PQntuples(res); i++)
		json_array_append_new(*out, json_pack("{ss ss}", "id", idb_db_str(res, i, 0), "url", idb_db_str(res, i, 1)));
	PQclear(res);
	return 0;
}

int idb_connection_set_last_login(idb_db *db, const char *id, const char *attrs_json, idb_err *err)
{
	static const char sql[] = "UPDATE idp_connections SET last_login_attributes = $2::jsonb, last_login_at = now()"
				  " WHERE id = $1::uuid";
	const char *p[] = {id, attrs_json};
	return idb_db_exec(db, sql, 2, p, NULL, err);
}

json_t *idb_connection_to_json(const idb_connection *c)
{
	json_t *proto = json_deep_copy(json_object_get(c->settings, c->protocol));
	if (!proto)
		proto = json_object();
	if (!strcmp(c->protocol, "saml") && c->metadata_xml)
		json_object_set_new(proto, "idp_metadata_xml", json_string(c->metadata_xml));
	json_object_del(proto, "client_secret"); /* sealed; never returned */
	if (!strcmp(c->protocol, "oidc")) {
		json_object_set_new(proto, "has_client_secret",
				    json_boolean(json_is_string(json_object_get(proto, "client_secret_sealed"))));
		json_object_del(proto, "client_secret_sealed");
	}
	json_t *o = json_pack("{ss ss ss ss sb ss? so sO sO}", "id", c->id, "slug", c->slug, "name", c->name,
			      "protocol", c->protocol, "enabled", c->enabled, "preset",
			      c->preset, c->protocol, proto, "allowed_domains",
			      c->domains, "jit", c->jit);
	return o;
}

bool idb_connection_flag(const idb_connection *c, const char *section, const char *key, bool def)
{
	json_t *s = section ? json_object_get(c->settings, section) : NULL;
	json_t *v = json_object_get(section ? s : c->jit, key);
	return json_is_boolean(v) ? json_is_true(v) : def;
}

const char *idb_connection_str(const idb_connection *c, const char *section, const char *key)
{
	json_t *s = section ? json_object_get(c->settings, section) : c->jit;
	return json_string_value(json_object_get(s, key));
}

int idb_connection_for_domain(idb_db *db, const char *domain, char slug[64], char protocol[8], idb_err *err)
{
	static const char sql[] = "SELECT c.slug, c.protocol FROM connection_domains d JOIN idp_connections c"
				  " ON c.id = d.connection_id WHERE d.domain = lower($1) AND c.enabled";
	const char *p[] = {domain};
	PGresult *res = idb_db_query(db, sql, 1, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = 0;
	if (PQntuples(res) == 1) {
		idb_strlcpy(slug, idb_db_str(res, 0, 0), 64);
		idb_strlcpy(protocol, idb_db_str(res, 0, 1), 8);
	} else {
		rc = idb_err_set(err, IDB_ENOTFOUND, "email", "no identity provider is set up for %s", domain);
	}
	PQclear(res);
	return rc;
}

int idb_connection_last_login(idb_db *db, const char *id, json_t **out, idb_err *err)
{
	static const char sql[] = "SELECT extract(epoch FROM last_login_at)::bigint, last_login_attributes::text"
				  " FROM idp_connections WHERE id = $1::uuid AND last_login_at IS NOT NULL";
	const char *p[] = {id};
	*out = json_null();
	PGresult *res = idb_db_query(db, sql, 1, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	if (PQntuples(res) == 1) {
		json_t *attrs = idb_db_val(res, 0, 1) ? json_loads(idb_db_str(res, 0, 1), 0, NULL) : NULL;
		json_decref(*out);
		*out = json_pack("{sI so}", "at", (json_int_t)strtoll(idb_db_str(res, 0, 0), NULL, 10), "attributes",
				 attrs ? attrs : json_object());
	}
	PQclear(res);
	return 0;
}
