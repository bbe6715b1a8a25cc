/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "connsave.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "connections.h"
#include "fetch.h"
#include "keyfile.h"
#include "log.h"
#include "presets.h"
#include "saml.h"
#include "users.h"
#include "util.h"

#define METADATA_MAX (1024 * 1024)

static int saml_metadata(json_t *obj, const idb_connection *base, json_t *errors, char **xml_out, int64_t *valid_until,
			 idb_err *err)
{
	*xml_out = NULL;
	*valid_until = 0;
	json_t *s = json_object_get(obj, "saml");
	const char *xml = json_string_value(json_object_get(s, "idp_metadata_xml"));
	const char *url = json_string_value(json_object_get(s, "idp_metadata_url"));
	bool xml_changed = xml && *xml && (!base || !base->metadata_xml || strcmp(xml, base->metadata_xml) != 0);
	const char *base_url = base ? idb_connection_str(base, "saml", "idp_metadata_url") : NULL;
	bool url_changed = url && *url && (!base_url || strcmp(url, base_url) != 0);
	if (!xml_changed && !url_changed)
		return 0;
	idb_fetch_result fr = {0};
	const char *field = "saml.idp_metadata_xml";
	if (url_changed && !xml_changed) {
		field = "saml.idp_metadata_url";
		int rc = idb_fetch_get(url, METADATA_MAX, 10000, &fr, err);
		if (rc == 0 && (fr.status < 200 || fr.status > 299))
			rc = idb_err_set(err, IDB_EUNAVAIL, NULL, "%s answered HTTP %ld", url, fr.status);
		if (rc != 0) {
			json_array_append_new(errors, json_pack("{ss ss}", "field", field, "message", err->msg));
			idb_fetch_result_clear(&fr);
			return idb_err_set(err, IDB_EINVAL, field, "cannot fetch the IdP metadata");
		}
		xml = fr.body;
	}
	int64_t cache_s = 0;
	idb_err merr;
	idb_err_clear(&merr);
	if (idb_saml_check_metadata(NULL, xml, valid_until, &cache_s, NULL, &merr) != 0) {
		json_array_append_new(errors, json_pack("{ss ss}", "field", field, "message", merr.msg));
		idb_fetch_result_clear(&fr);
		return idb_err_set(err, IDB_EINVAL, field, "%s", merr.msg);
	}
	*xml_out = strdup(xml);
	idb_fetch_result_clear(&fr);
	return *xml_out ? 0 : idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
}

/* OIDC: derived fields never stored; a new client_secret is sealed with the
 * deployment key; an update that does not name the secret keeps the sealed
 * one (client_secret: null removes it). */
static int oidc_secret(json_t *obj, const json_t *in, const idb_connection *base, const idb_config *cfg,
		       json_t *errors, idb_err *err)
{
	json_t *o = json_object_get(obj, "oidc");
	if (!json_is_object(o))
		return 0;
	static const char *const derived[] = {"has_client_secret", "redirect_uri", "backchannel_logout_uri",
					      "post_logout_redirect_uri", "client_secret_sealed"};
	for (size_t i = 0; i < sizeof(derived) / sizeof(derived[0]); i++)
		json_object_del(o, derived[i]);
	const char *secret = json_string_value(json_object_get(o, "client_secret"));
	if (secret) {
		unsigned char key[IDB_SECRET_KEY_BYTES];
		char *sealed = NULL;
		int rc = idb_keyfile_load(cfg->secret_key_file, key, err);
		if (rc == 0)
			rc = idb_secret_seal(&sealed, key, secret, err);
		sodium_memzero(key, sizeof(key));
		if (rc != 0) {
			json_array_append_new(errors, json_pack("{ss ss}", "field", "oidc.client_secret", "message",
								"cannot be sealed: the deployment's secret key is unavailable"));
			return rc;
		}
		json_object_set_new(o, "client_secret_sealed", json_string(sealed));
		json_object_del(o, "client_secret");
		free(sealed);
		return 0;
	}
	json_t *in_o = json_object_get(in, "oidc");
	bool removed = json_is_object(in_o) && json_is_null(json_object_get(in_o, "client_secret"));
	json_t *old = base ? json_object_get(json_object_get(base->settings, "oidc"), "client_secret_sealed") : NULL;
	if (!removed && json_is_string(old))
		json_object_set(o, "client_secret_sealed", old);
	return 0;
}

/* The preset (if any) with the connection's jit laid over it must compile. */
static int check_mapping(const idb_presets *presets, const json_t *obj, json_t *errors, idb_err *err)
{
	const char *preset = json_string_value(json_object_get(obj, "preset"));
	char *jit = json_dumps(json_object_get(obj, "jit"), JSON_COMPACT);
	idb_attrmap *m = NULL;
	idb_err e;
	idb_err_clear(&e);
	int rc = jit ? idb_presets_compile(&m, presets, preset, jit, &e) : IDB_EINTERNAL;
	idb_attrmap_free(m);
	free(jit);
	if (rc != 0) {
		char field[96];
		snprintf(field, sizeof(field), "%s%.80s", strcmp(e.field, "preset") == 0 ? "" : "jit.", e.field);
		json_array_append_new(errors, json_pack("{ss ss}", "field", field, "message", e.msg));
		return idb_err_set(err, IDB_EINVAL, field, "%s", e.msg);
	}
	return 0;
}

int idb_connsave(idb_db *db, const idb_config *cfg, const idb_presets *presets, const char *org_id,
		 const char *existing_id, const json_t *in, const idb_actor *actor, json_t *errors, char out_id[37],
		 idb_err *err)
{
	idb_connection base = {0};
	bool have_base = false;
	int rc = 0;
	if (existing_id) {
		if ((rc = idb_connection_get(db, org_id, existing_id, &base, err)) != 0)
			return rc;
		have_base = true;
	}
	json_t *obj = NULL;
	char *xml = NULL, *before = NULL, *after = NULL;
	int64_t valid_until = 0;
	rc = idb_connection_validate(in, have_base ? &base : NULL, errors, &obj, err);
	if (rc == 0)
		rc = check_mapping(presets, obj, errors, err);
	if (rc == 0 && !strcmp(json_string_value(json_object_get(obj, "protocol")), "saml"))
		rc = saml_metadata(obj, have_base ? &base : NULL, errors, &xml, &valid_until, err);
	if (rc == 0 && !strcmp(json_string_value(json_object_get(obj, "protocol")), "oidc"))
		rc = oidc_secret(obj, in, have_base ? &base : NULL, cfg, errors, err);
	if (rc != 0)
		goto done;
	if (have_base) {
		json_t *b = idb_connection_to_json(&base);
		json_object_del(json_object_get(b, "saml"), "idp_metadata_xml");
		before = json_dumps(b, JSON_COMPACT);
		json_decref(b);
	}
	{
		json_t *a = json_deep_copy(obj);
		json_object_del(json_object_get(a, "saml"), "idp_metadata_xml");
		json_object_del(json_object_get(a, "oidc"), "client_secret");
		json_object_del(json_object_get(a, "oidc"), "client_secret_sealed");
		after = json_dumps(a, JSON_COMPACT);
		json_decref(a);
	}
	if ((rc = idb_db_begin(db, err)) != 0)
		goto done;
	if (have_base) {
		idb_strlcpy(out_id, base.id, 37);
		rc = idb_connection_update(db, org_id, base.id, obj, xml, valid_until, err);
	} else {
		rc = idb_connection_insert(db, org_id, obj, xml, valid_until, out_id, err);
	}
	if (rc == 0) {
		idb_audit_entry ae = {.org_id = org_id,
				      .actor_id = actor->user_id,
				      .actor_email = actor->email,
				      .action = have_base ? "connection.update" : "connection.create",
				      .target_type = "connection",
				      .target_id = out_id,
				      .before_json = before,
				      .after_json = after,
				      .ip = actor->ip,
				      .request_id = actor->request_id};
		rc = idb_audit_record(db, &ae, err);
	}
	if (rc == 0)
		rc = idb_db_commit(db, err);
	else
		idb_db_rollback(db);
	if (rc == IDB_EEXISTS && err->field[0])
		json_array_append_new(errors, json_pack("{ss ss}", "field", err->field, "message", err->msg));
done:
	json_decref(obj);
	free(xml);
	free(before);
	free(after);
	idb_connection_clear(&base);
	return rc;
}

static void set_time(json_t *o, const char *key, int64_t t)
{
	if (!t) {
		json_object_set_new(o, key, json_null());
		return;
	}
	char buf[32];
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_set_new(o, key, json_string(buf));
}

json_t *idb_connsave_view(const idb_config *cfg, const void *conn)
{
	const idb_connection *c = conn;
	json_t *o = idb_connection_to_json(c);
	if (!o)
		return NULL;
	if (!strcmp(c->protocol, "saml")) {
		json_object_set_new(o, "sp", idb_saml_sp_info(cfg, c->slug));
		json_t *m = json_object();
		set_time(m, "fetched_at", c->metadata_fetched_at);
		set_time(m, "valid_until", c->metadata_valid_until);
		json_object_set_new(m, "error", c->metadata_error ? json_string(c->metadata_error) : json_null());
		json_object_set_new(o, "metadata", m);
	}
	if (!strcmp(c->protocol, "oidc")) {
		json_t *p = json_object_get(o, "oidc");
		char u[1024];
		snprintf(u, sizeof(u), "%s/sso/oidc/%s/callback", cfg->public_url, c->slug);
		json_object_set_new(p, "redirect_uri", json_string(u));
		snprintf(u, sizeof(u), "%s/sso/oidc/%s/backchannel-logout", cfg->public_url, c->slug);
		json_object_set_new(p, "backchannel_logout_uri", json_string(u));
		snprintf(u, sizeof(u), "%s/login", cfg->public_url);
		json_object_set_new(p, "post_logout_redirect_uri", json_string(u));
	}
	return o;
}
