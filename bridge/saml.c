/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "saml.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <lasso/lasso.h>
#include <lasso/xml/misc_text_node.h>
#include <lasso/xml/tools.h>
#include <lasso/xml/saml-2.0/samlp2_authn_request.h>
#include <lasso/xml/saml-2.0/samlp2_logout_request.h>
#include <lasso/xml/saml-2.0/samlp2_name_id_policy.h>
#include <lasso/xml/saml-2.0/samlp2_response.h>
#include <lasso/xml/saml-2.0/saml2_assertion.h>
#include <lasso/xml/saml-2.0/saml2_attribute.h>
#include <lasso/xml/saml-2.0/saml2_attribute_statement.h>
#include <lasso/xml/saml-2.0/saml2_attribute_value.h>
#include <lasso/xml/saml-2.0/saml2_audience_restriction.h>
#include <lasso/xml/saml-2.0/saml2_authn_statement.h>
#include <lasso/xml/saml-2.0/saml2_conditions.h>
#include <lasso/xml/saml-2.0/saml2_name_id.h>
#include <lasso/xml/saml-2.0/saml2_subject.h>
#include <lasso/xml/saml-2.0/saml2_subject_confirmation.h>
#include <lasso/xml/saml-2.0/saml2_subject_confirmation_data.h>
#include <libxml/tree.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <xmlsec/io.h>

#include "attrmap.h"
#include "authz.h"
#include "jit.h"
#include "log.h"
#include "presets.h"
#include "saml_keys.h"
#include "saml_xml.h"
#include "verlist.h"
#include "session.h"
#include "sso.h"
#include "urls.h"
#include "util.h"

#define RELAY_TTL_S 600
#define MAX_REPLAY_TTL_S 86400
#define MAX_RESPONSE_B64 (3 * 1024 * 1024)

typedef struct saml_entry {
	idb_verobj base; /* first: conn_id, version, refs */
	LassoServer *server;
	idb_attrmap *map;
	char idp_entity[512];
	bool idp_has_slo;
	_Atomic int64_t last_login_stored_ms; /* the admin's "last login" view is refreshed at most every 10 s */
} saml_entry;

struct idb_saml {
	const idb_config *cfg;
	EVP_PKEY *sign_key; /* parsed once: lasso would re-read (and leak) it per message */
	const idb_presets *presets;
	char *key_pem, *cert_pem, *cert_body;
	idb_verlist entries; /* saml_entry by connection version */
};

/* --- process set-up --- */

static void lasso_glog(const char *domain, GLogLevelFlags level, const char *message, gpointer user_data)
{
	(void)domain;
	(void)user_data;
	if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
		idb_log_warn("lasso: %s", message);
	else
		idb_log_debug("lasso: %s", message);
}

/* Debian's lasso is built with its debug messages on: every XML node it
 * parses goes through its exported lasso_log(), which formats the text,
 * reads the clock and calls g_log() before any handler can say "not
 * wanted" — 5 % of an ACS request. liblasso calls lasso_log through its PLT,
 * so this definition in the executable takes its place: debug and info
 * messages cost nothing unless idbridge logs at debug. */
void lasso_log(GLogLevelFlags level, const char *filename, int line, const char *function, const char *format, ...)
	__attribute__((format(printf, 5, 6)));
void lasso_log(GLogLevelFlags level, const char *filename, int line, const char *function, const char *format, ...)
{
	bool severe = level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
	if (!severe && idb_log_threshold > IDB_LOG_DEBUG)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, format);
	vsnprintf(msg, sizeof(msg), format, ap);
	va_end(ap);
	if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
		idb_log_warn("lasso: %s (%s:%d %s)", msg, filename, line, function ? function : "");
	else
		idb_log_debug("lasso: %s (%s:%d %s)", msg, filename, line, function ? function : "");
}

int idb_saml_global_init(idb_err *err)
{
	/* LASSO_FLAG=no-verify-signature would switch verification off. */
	unsetenv("LASSO_FLAG");
	if (lasso_init() != 0)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "lasso initialisation failed");
	lasso_log_set_handler(G_LOG_LEVEL_MASK | G_LOG_FLAG_FATAL | G_LOG_FLAG_RECURSION, lasso_glog, NULL);
	/* No URI is ever dereferenced by xmlsec (RetrievalMethod, CipherReference…). */
	xmlSecIOCleanupCallbacks();
	return 0;
}

void idb_saml_global_shutdown(void)
{
	lasso_shutdown();
}

static void entry_release(idb_verobj *o);

int idb_saml_open(idb_saml **out, const idb_config *cfg, const idb_presets *presets, idb_err *err)
{
	*out = NULL;
	idb_saml *s = calloc(1, sizeof(*s));
	if (!s)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	s->cfg = cfg;
	s->presets = presets;
	idb_verlist_init(&s->entries, entry_release);
	char cn[256];
	const char *host = strstr(cfg->public_origin, "://");
	snprintf(cn, sizeof(cn), "%s", host ? host + 3 : "idbridge");
	int rc = idb_saml_keys_load(cfg->saml_sp_key_file, cfg->saml_sp_cert_file, cn, &s->key_pem, &s->cert_pem, err);
	if (rc == 0 && !(s->cert_body = idb_pem_cert_body(s->cert_pem)))
		rc = idb_err_set(err, IDB_EINVAL, "saml.sp_cert_file", "the SP certificate is not PEM");
	if (rc == 0) {
		BIO *b = BIO_new_mem_buf(s->key_pem, -1);
		s->sign_key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
		BIO_free(b);
		if (!s->sign_key)
			rc = idb_err_set(err, IDB_EINVAL, "saml.sp_key_file", "the SP key is not a PEM private key");
	}
	if (rc != 0) {
		idb_saml_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

static void entry_release(idb_verobj *o)
{
	saml_entry *e = (saml_entry *)o;
	if (e->server)
		lasso_server_destroy(e->server);
	idb_attrmap_free(e->map);
	free(e);
}

void idb_saml_free(idb_saml *s)
{
	if (!s)
		return;
	idb_verlist_destroy(&s->entries);
	EVP_PKEY_free(s->sign_key);
	if (s->key_pem)
		sodium_memzero(s->key_pem, strlen(s->key_pem));
	free(s->key_pem);
	free(s->cert_pem);
	free(s->cert_body);
	free(s);
}

/* --- SP metadata and URLs --- */

static void sp_url(const idb_config *cfg, const char *slug, const char *leaf, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s/sso/saml/%s/%s", cfg->public_url, slug, leaf);
}

json_t *idb_saml_sp_info(const idb_config *cfg, const char *slug)
{
	char e[1024], a[1024], s[1024];
	sp_url(cfg, slug, "metadata", e, sizeof(e));
	sp_url(cfg, slug, "acs", a, sizeof(a));
	sp_url(cfg, slug, "slo", s, sizeof(s));
	return json_pack("{ss ss ss ss}", "entity_id", e, "acs_url", a, "metadata_url", e, "slo_url", s);
}

static char *sp_metadata(const idb_saml *s, const char *slug)
{
	char entity[1024], acs[1024], slo[1024];
	sp_url(s->cfg, slug, "metadata", entity, sizeof(entity));
	sp_url(s->cfg, slug, "acs", acs, sizeof(acs));
	sp_url(s->cfg, slug, "slo", slo, sizeof(slo));
	static const char tmpl[] =
		"<?xml version=\"1.0\"?>\n"
		"<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\""
		" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"%s\">\n"
		" <md:SPSSODescriptor AuthnRequestsSigned=\"true\" WantAssertionsSigned=\"true\""
		" protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\n"
		"  <md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>%s"
		"</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\n"
		"  <md:KeyDescriptor use=\"encryption\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>%s"
		"</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\n"
		"  <md:SingleLogoutService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" Location=\"%s\"/>\n"
		"  <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>\n"
		"  <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>\n"
		"  <md:AssertionConsumerService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\""
		" Location=\"%s\" index=\"0\" isDefault=\"true\"/>\n"
		" </md:SPSSODescriptor>\n"
		"</md:EntityDescriptor>\n";
	size_t n = sizeof(tmpl) + strlen(entity) + 2 * strlen(s->cert_body) + strlen(slo) + strlen(acs);
	char *xml = malloc(n);
	if (xml)
		snprintf(xml, n, tmpl, entity, s->cert_body, s->cert_body, slo, acs);
	return xml;
}

/* --- per-connection lasso servers --- */

static bool provider_has(LassoProvider *p, const char *key)
{
	gchar *v = lasso_provider_get_metadata_one(p, key);
	bool have = v != NULL;
	g_free(v);
	return have;
}

/* ISO 8601 duration PnDTnHnMnS (cacheDuration) in seconds; 0 when absent or odd. */
static int64_t parse_duration(const char *d)
{
	if (!d || d[0] != 'P')
		return 0;
	int64_t total = 0, n = 0;
	bool in_time = false;
	for (const char *p = d + 1; *p; p++) {
		if (*p >= '0' && *p <= '9') {
			n = n * 10 + (*p - '0');
			if (n > 100000000)
				return 0;
		} else if (*p == 'T') {
			in_time = true;
		} else if (*p == '.') {
			while (p[1] >= '0' && p[1] <= '9')
				p++;
		} else {
			int64_t mul = *p == 'D' ? 86400 : *p == 'H' ? 3600 : (*p == 'M' && in_time) ? 60 : *p == 'S' ? 1 :
				      *p == 'W' ? 604800 : (*p == 'M') ? 2592000 : *p == 'Y' ? 31536000 : 0;
			total += n * mul;
			n = 0;
		}
	}
	return total;
}

int idb_saml_check_metadata(idb_saml *s, const char *xml, int64_t *valid_until, int64_t *cache_s, char *entity_out,
			    idb_err *err)
{
	(void)s;
	*valid_until = 0;
	*cache_s = 0;
	if (!xml || !*xml)
		return idb_err_set(err, IDB_EINVAL, "saml.idp_metadata_xml", "the IdP metadata is empty");
	if (strstr(xml, "<!DOCTYPE") || strstr(xml, "<!ENTITY"))
		return idb_err_set(err, IDB_EINVAL, "saml.idp_metadata_xml", "DOCTYPE declarations are not accepted");
	LassoProvider *p = lasso_provider_new_from_buffer(LASSO_PROVIDER_ROLE_IDP, xml, NULL, NULL);
	if (!p)
		return idb_err_set(err, IDB_EINVAL, "saml.idp_metadata_xml",
				   "this is not SAML 2.0 IdP metadata (an EntityDescriptor with an IDPSSODescriptor)");
	int rc = 0;
	if (!p->ProviderID || !*p->ProviderID)
		rc = idb_err_set(err, IDB_EINVAL, "saml.idp_metadata_xml", "the metadata has no entityID");
	else if (!provider_has(p, "SingleSignOnService HTTP-Redirect") && !provider_has(p, "SingleSignOnService HTTP-POST"))
		rc = idb_err_set(err, IDB_EINVAL, "saml.idp_metadata_xml",
				 "the IdP metadata has no SingleSignOnService for HTTP-Redirect");
	else if (!strstr(xml, "X509Certificate"))
		rc = idb_err_set(err, IDB_EINVAL, "saml.idp_metadata_xml",
				 "the IdP metadata has no signing certificate (KeyDescriptor)");
	if (rc == 0) {
		/* lasso does not report the EntityDescriptor's validUntil: read it. */
		char cd[64];
		rc = idb_saml_metadata_times(xml, strlen(xml), valid_until, cd, sizeof(cd), err);
		if (rc == 0 && *valid_until > 0 && *valid_until < idb_now_s())
			rc = idb_err_set(err, IDB_EINVAL, "saml.idp_metadata_xml", "the IdP metadata has expired (validUntil)");
		*cache_s = parse_duration(cd[0] ? cd : NULL);
		if (entity_out)
			idb_strlcpy(entity_out, p->ProviderID, 256);
	}
	g_object_unref(p);
	return rc;
}

static void entry_put(idb_saml *s, saml_entry *e)
{
	idb_verlist_put(&s->entries, e ? &e->base : NULL);
}

/* lasso keeps each metadata signing key with its certificate, and xmlsec
 * duplicates a key for every signature it checks: with OpenSSL 3 copying
 * the certificate re-decodes it, a third of the CPU of an ACS request. The
 * same public keys without their certificates go first in the provider's
 * list (lasso tries them in order), so the copy is a reference count. The
 * keys come from the same metadata certificates, nothing else: a response
 * verifies against exactly the keys it did before. */
static void add_bare_key(const char *b64, void *arg)
{
	LassoProvider *idp = arg;
	char *pem = idb_cert_b64_pubkey_pem(b64);
	if (!pem)
		return;
	LassoKey *k = lasso_key_new_for_signature_from_memory(pem, strlen(pem), NULL, LASSO_SIGNATURE_METHOD_RSA_SHA256,
							      NULL);
	if (k) {
		if (lasso_provider_add_key(idp, k, FALSE) != 0)
			idb_log_warn("lasso refused an IdP signing key; signature checks will be slower");
		g_object_unref(k);
	}
	free(pem);
}

static void add_bare_keys(LassoProvider *idp, const char *metadata_xml)
{
	(void)idb_saml_metadata_signing_certs(metadata_xml, strlen(metadata_xml), add_bare_key, idp);
}

/* The lasso server for connection c (built or rebuilt when c changed); the
 * caller returns it with entry_put. */
static int entry_get(idb_saml *s, const idb_connection *c, saml_entry **out, idb_err *err)
{
	*out = (saml_entry *)idb_verlist_get(&s->entries, c->id, c->version);
	if (*out)
		return 0;
	if (!c->metadata_xml)
		return idb_err_set(err, IDB_EUNAVAIL, "saml-no-metadata", "this connection has no IdP metadata yet");
	saml_entry *e = calloc(1, sizeof(*e));
	char *md = sp_metadata(s, c->slug);
	char *jit = json_dumps(c->jit, JSON_COMPACT);
	int rc = 0;
	if (!e || !md || !jit) {
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		goto done;
	}
	if ((rc = idb_presets_compile(&e->map, s->presets, c->preset, jit, err)) != 0)
		goto done;
	e->server = lasso_server_new_from_buffers(md, s->key_pem, NULL, s->cert_pem);
	if (!e->server) {
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "lasso cannot load the SP configuration");
		goto done;
	}
	e->server->signature_method = LASSO_SIGNATURE_METHOD_RSA_SHA256;
	if (lasso_server_set_encryption_private_key(e->server, s->key_pem) != 0)
		idb_log_warn("lasso refused the SP key for decryption; encrypted assertions will fail");
	if (lasso_server_add_provider_from_buffer(e->server, LASSO_PROVIDER_ROLE_IDP, c->metadata_xml, NULL, NULL) != 0) {
		rc = idb_err_set(err, IDB_EUNAVAIL, "saml-bad-metadata", "the IdP metadata of this connection cannot be loaded");
		goto done;
	}
	GList *ids = g_hash_table_get_keys(e->server->providers);
	if (ids && ids->data)
		idb_strlcpy(e->idp_entity, ids->data, sizeof(e->idp_entity));
	g_list_free(ids);
	LassoProvider *idp = lasso_server_get_provider(e->server, e->idp_entity);
	if (idp)
		add_bare_keys(idp, c->metadata_xml);
	e->idp_has_slo = idp && provider_has(idp, "SingleLogoutService HTTP-Redirect");
	idb_verlist_add(&s->entries, &e->base, c->id, c->version);
	*out = e;
	e = NULL;
done:
	if (e)
		entry_release(&e->base);
	free(md);
	free(jit);
	return rc;
}

/* HTTP-Redirect binding signature (SAML bindings §3.4.4.1) over
 * "SAMLRequest=…[&RelayState=…]&SigAlg=…" exactly as they appear in the URL
 * lasso built unsigned. Returns the signed URL (malloc'd) or NULL. */
static char *sign_redirect(const idb_saml *s, const char *url)
{
	static const char sigalg[] = "SigAlg=http%3A%2F%2Fwww.w3.org%2F2001%2F04%2Fxmldsig-more%23rsa-sha256";
	const char *q = url ? strchr(url, '?') : NULL;
	if (!q || strstr(q, "SigAlg=") || strstr(q, "Signature=")) {
		idb_log_error("lasso produced an already signed redirect; refusing to sign it twice");
		return NULL;
	}
	size_t qlen = strlen(q + 1);
	char *signed_part = malloc(qlen + sizeof(sigalg) + 2);
	if (!signed_part)
		return NULL;
	snprintf(signed_part, qlen + sizeof(sigalg) + 2, "%s&%s", q + 1, sigalg);
	unsigned char sig[1024];
	size_t siglen = sizeof(sig);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, s->sign_key) == 1 &&
		  EVP_DigestSign(md, sig, &siglen, (const unsigned char *)signed_part, strlen(signed_part)) == 1;
	EVP_MD_CTX_free(md);
	char *out = NULL;
	if (ok) {
		char b64[1400];
		sodium_bin2base64(b64, sizeof(b64), sig, siglen, sodium_base64_VARIANT_ORIGINAL);
		char *esc = curl_easy_escape(NULL, b64, 0);
		size_t n = (size_t)(q - url) + 1 + strlen(signed_part) + 11 + (esc ? strlen(esc) : 0) + 1;
		out = esc ? malloc(n) : NULL;
		if (out)
			snprintf(out, n, "%.*s?%s&Signature=%s", (int)(q - url), url, signed_part, esc);
		curl_free(esc);
	}
	free(signed_part);
	return out;
}

/* --- shared request helpers --- */

static int load_connection(idb_req *req, idb_connection *c, idb_err *err)
{
	return idb_sso_connection(req, "saml", c, err);
}

int idb_saml_handle_metadata(idb_req *req)
{
	idb_app *app = idb_req_app(req);
	idb_connection c;
	idb_err err;
	idb_err_clear(&err);
	if (load_connection(req, &c, &err) != 0)
		return idb_resp_error(req, &err);
	char *md = sp_metadata(app->saml, c.slug);
	idb_connection_clear(&c);
	if (!md)
		return IDB_EINTERNAL;
	idb_resp_body(req, 200, "application/samlmetadata+xml", md, strlen(md));
	free(md);
	return 0;
}

int idb_saml_handle_login(idb_req *req)
{
	idb_app *app = idb_req_app(req);
	idb_connection c;
	idb_err err;
	idb_err_clear(&err);
	if (load_connection(req, &c, &err) != 0)
		return idb_sso_fail(req, idb_http_status_for(err.code), err.field, "Sign-in unavailable", err.msg);
	const char *return_to = idb_req_query(req, "return_to");
	if (!return_to || !*return_to)
		return_to = "/";
	if (!idb_return_to_allowed(app->cfg, return_to)) {
		idb_connection_clear(&c);
		return idb_sso_fail(req, 400, "sso-return-to-not-allowed", "Sign-in refused",
				    "The address to return to after sign-in is not allowed.");
	}
	if (!c.enabled) {
		idb_connection_clear(&c);
		return idb_sso_fail(req, 403, "sso-connection-disabled", "Sign-in unavailable",
				    "Sign-in through this identity provider is disabled.");
	}
	saml_entry *e = NULL;
	int rc = entry_get(app->saml, &c, &e, &err);
	if (rc != 0) {
		idb_connection_clear(&c);
		return idb_sso_fail(req, 503, err.field[0] ? err.field : "saml-unavailable", "Sign-in unavailable", err.msg);
	}
	LassoLogin *login = lasso_login_new(e->server);
	LassoProfile *profile = LASSO_PROFILE(login);
	char relay[32], acs[1024];
	idb_random_token(relay, sizeof(relay), 18);
	sp_url(app->cfg, c.slug, "acs", acs, sizeof(acs));
	lasso_profile_set_signature_hint(profile, LASSO_PROFILE_SIGNATURE_HINT_FORBID);
	rc = lasso_login_init_authn_request(login, e->idp_entity, LASSO_HTTP_METHOD_REDIRECT);
	char *redirect = NULL;
	if (rc == 0) {
		LassoSamlp2AuthnRequest *ar = LASSO_SAMLP2_AUTHN_REQUEST(profile->request);
		g_free(ar->ProtocolBinding);
		ar->ProtocolBinding = g_strdup(LASSO_SAML2_METADATA_BINDING_POST);
		g_free(ar->AssertionConsumerServiceURL);
		ar->AssertionConsumerServiceURL = g_strdup(acs);
		if (ar->NameIDPolicy) {
			const char *fmt = idb_connection_str(&c, "saml", "name_id_format");
			g_free(ar->NameIDPolicy->Format);
			ar->NameIDPolicy->Format = g_strdup(fmt ? fmt : LASSO_SAML2_NAME_IDENTIFIER_FORMAT_UNSPECIFIED);
			ar->NameIDPolicy->AllowCreate = TRUE;
		}
		ar->ForceAuthn = idb_connection_flag(&c, "saml", "force_authn", false);
		profile->msg_relayState = g_strdup(relay);
		/* lasso builds the message; idbridge signs the redirect itself. */
		lasso_profile_set_signature_hint(profile, LASSO_PROFILE_SIGNATURE_HINT_FORBID);
		rc = lasso_login_build_authn_request_msg(login);
	}
	if (rc == 0) {
		const char *rid = LASSO_SAMLP2_REQUEST_ABSTRACT(profile->request)->ID;
		json_t *st = json_pack("{ss ss ss}", "rid", rid, "rt", return_to, "c", c.id);
		char *txt = st ? json_dumps(st, JSON_COMPACT) : NULL;
		json_decref(st);
		char key[80];
		snprintf(key, sizeof(key), "idb:saml:relay:%s", relay);
		/* The request id must be kept for the InResponseTo check: no Redis,
		 * no login (fail closed). */
		if (!txt || idb_cache_set(app->cache, key, txt, RELAY_TTL_S, &err) != 0)
			rc = -1;
		else if (!(redirect = sign_redirect(app->saml, profile->msg_url)))
			idb_log_error("cannot sign the AuthnRequest for %s", c.slug);
		free(txt);
		if (rc != 0) {
			lasso_login_destroy(login);
			entry_put(app->saml, e);
			idb_connection_clear(&c);
			return idb_sso_fail(req, 503, "sso-unavailable", "Sign-in unavailable",
					    "Sign-in is temporarily unavailable. Try again in a moment.");
		}
	} else {
		idb_log_error("cannot build the AuthnRequest for %s: %s", c.slug, lasso_strerror(rc));
	}
	lasso_login_destroy(login);
	entry_put(app->saml, e);
	idb_connection_clear(&c);
	if (!redirect)
		return idb_sso_fail(req, 500, "internal", "Sign-in unavailable", "The sign-in request could not be built.");
	idb_resp_redirect(req, 303, redirect);
	free(redirect);
	return 0;
}

/* Text of an AttributeValue: Debian's lasso stores a text value as a
 * LassoMiscTextNode whose text is kept as XML content. */
static char *attr_value_text(LassoSaml2AttributeValue *v)
{
	GList *any = v->any;
	if (!any)
		return strdup("");
	if (any->next)
		return NULL; /* several nodes: not a simple value */
	LassoNode *n = any->data;
	if (!LASSO_IS_MISC_TEXT_NODE(n))
		return NULL;
	LassoMiscTextNode *t = LASSO_MISC_TEXT_NODE(n);
	if (t->text_child)
		return strdup(t->content ? t->content : "");
	xmlNode *x = lasso_misc_text_node_get_xml_content(t);
	if (!x)
		return strdup(t->content ? t->content : "");
	xmlChar *c = xmlNodeGetContent(x);
	char *out = strdup(c ? (const char *)c : "");
	xmlFree(c);
	xmlFreeNode(x);
	return out;
}

typedef struct acs_fail {
	unsigned status;
	const char *type;
	char detail[256];
	const char *reason; /* for the activity log */
	char reason_buf[48];
} acs_fail;

static int fail_set(acs_fail *f, unsigned status, const char *type, const char *reason, const char *detail)
{
	f->status = status;
	f->type = type;
	f->reason = reason;
	idb_strlcpy(f->detail, detail, sizeof(f->detail));
	return -1;
}

/* Everything lasso leaves to the SP (mellon's list plus a real InResponseTo
 * comparison and a shared replay cache). */
static int check_assertion(idb_req *req, const idb_connection *c, LassoProfile *profile, LassoSaml2Assertion *a,
			   const char *expected_rid, int64_t *latest_expiry, acs_fail *f)
{
	idb_app *app = idb_req_app(req);
	int64_t now = idb_now_s(), skew = app->cfg->saml_clock_skew_s;
	char acs[1024], entity[1024];
	sp_url(app->cfg, c->slug, "acs", acs, sizeof(acs));
	sp_url(app->cfg, c->slug, "metadata", entity, sizeof(entity));
	LassoSamlp2StatusResponse *resp = LASSO_SAMLP2_STATUS_RESPONSE(profile->response);
	if (!resp->Destination || strcmp(resp->Destination, acs) != 0)
		return fail_set(f, 400, "saml-destination-mismatch", "destination_mismatch",
				"The response was not addressed to this service (Destination).");
	const char *irt_resp = resp->InResponseTo;
	const char *irt_scd = NULL;
	/* Conditions: present, times, audience, nothing we do not understand. */
	LassoSaml2Conditions *cond = a->Conditions;
	if (!cond)
		return fail_set(f, 400, "saml-conditions-missing", "conditions_missing", "The assertion has no Conditions.");
	if (cond->Condition)
		return fail_set(f, 400, "saml-conditions-unknown", "conditions_unknown",
				"The assertion carries a condition this service does not understand.");
	int64_t nb = cond->NotBefore ? idb_saml_parse_time(cond->NotBefore) : 0;
	int64_t noa = cond->NotOnOrAfter ? idb_saml_parse_time(cond->NotOnOrAfter) : 0;
	if (nb < 0 || noa < 0)
		return fail_set(f, 400, "saml-time-invalid", "time_invalid", "The assertion has an unreadable time.");
	if (nb && now + skew < nb)
		return fail_set(f, 400, "saml-not-yet-valid", "not_yet_valid", "The assertion is not valid yet (NotBefore).");
	if (noa && now - skew >= noa)
		return fail_set(f, 400, "saml-expired", "expired", "The assertion has expired (NotOnOrAfter).");
	if (!cond->AudienceRestriction)
		return fail_set(f, 400, "saml-audience-missing", "audience_missing",
				"The assertion is not restricted to an audience.");
	for (GList *l = cond->AudienceRestriction; l; l = l->next) {
		LassoSaml2AudienceRestriction *ar = l->data;
		if (!ar->Audience || strcmp(ar->Audience, entity) != 0)
			return fail_set(f, 400, "saml-audience-mismatch", "audience_mismatch",
					"The assertion is meant for another service (Audience).");
	}
	/* Subject: bearer confirmation to our ACS, in time, for our request. */
	LassoSaml2Subject *subj = a->Subject;
	if (!subj || !subj->NameID || !subj->NameID->content || !*subj->NameID->content)
		return fail_set(f, 400, "saml-subject-missing", "subject_missing", "The assertion names no subject (NameID).");
	LassoSaml2SubjectConfirmation *sc = subj->SubjectConfirmation;
	if (!sc || !sc->Method || strcmp(sc->Method, LASSO_SAML2_CONFIRMATION_METHOD_BEARER) != 0)
		return fail_set(f, 400, "saml-subject-confirmation", "subject_confirmation_missing",
				"The assertion has no bearer SubjectConfirmation.");
	LassoSaml2SubjectConfirmationData *scd = sc->SubjectConfirmationData;
	if (!scd || !scd->Recipient || strcmp(scd->Recipient, acs) != 0)
		return fail_set(f, 400, "saml-recipient-mismatch", "recipient_mismatch",
				"The assertion was not issued to this service (Recipient).");
	int64_t scd_noa = scd->NotOnOrAfter ? idb_saml_parse_time(scd->NotOnOrAfter) : -1;
	if (scd_noa <= 0)
		return fail_set(f, 400, "saml-subject-confirmation", "confirmation_expiry_missing",
				"The assertion's SubjectConfirmationData has no NotOnOrAfter.");
	if (now - skew >= scd_noa)
		return fail_set(f, 400, "saml-expired", "expired", "The assertion has expired (SubjectConfirmationData).");
	if (scd->NotBefore && now + skew < idb_saml_parse_time(scd->NotBefore))
		return fail_set(f, 400, "saml-not-yet-valid", "not_yet_valid", "The assertion is not valid yet.");
	irt_scd = scd->InResponseTo;
	if (expected_rid) {
		if (!irt_resp || strcmp(irt_resp, expected_rid) != 0 || !irt_scd || strcmp(irt_scd, expected_rid) != 0)
			return fail_set(f, 400, "saml-in-response-to-mismatch", "in_response_to_mismatch",
					"The response does not answer the sign-in request this browser made.");
	} else if (irt_resp || irt_scd) {
		return fail_set(f, 400, "saml-unknown-request", "unknown_request",
				"The response answers a sign-in request that is unknown or has expired. Start again.");
	}
	if (!a->AuthnStatement)
		return fail_set(f, 400, "saml-authn-statement-missing", "authn_statement_missing",
				"The assertion has no AuthnStatement.");
	*latest_expiry = noa > scd_noa ? noa : scd_noa;
	return 0;
}

static int build_identity(const idb_connection *c, const char *issuer, LassoSaml2Assertion *a, idb_identity *id,
			  json_t *seen, acs_fail *f)
{
	memset(id, 0, sizeof(*id));
	LassoSaml2NameID *nid = a->Subject->NameID;
	if (strlen(nid->content) > 1024)
		return fail_set(f, 400, "saml-subject-too-long", "subject_too_long", "The NameID is too long.");
	id->connection_id = strdup(c->id);
	id->issuer = strdup(issuer);
	id->subject = strdup(nid->content);
	id->subject_format = strdup(nid->Format ? nid->Format : "");
	id->email_verified = true;
	if (!id->connection_id || !id->issuer || !id->subject || !id->subject_format)
		return fail_set(f, 500, "internal", "internal", "Out of memory.");
	for (GList *s = a->AttributeStatement; s; s = s->next) {
		LassoSaml2AttributeStatement *st = s->data;
		for (GList *l = st->Attribute; l; l = l->next) {
			LassoSaml2Attribute *at = l->data;
			if (!LASSO_IS_SAML2_ATTRIBUTE(at) || !at->Name)
				continue;
			json_t *vals = json_array();
			for (GList *v = at->AttributeValue; v; v = v->next) {
				char *text = attr_value_text(v->data);
				if (!text) {
					json_decref(vals);
					return fail_set(f, 400, "saml-attribute-invalid", "attribute_invalid",
							"An attribute value is not plain text.");
				}
				idb_err e;
				int rc = idb_identity_add(id, at->Name, text, &e);
				if (json_array_size(vals) < 20)
					json_array_append_new(vals, json_string(text));
				free(text);
				if (rc != 0) {
					json_decref(vals);
					return fail_set(f, rc == IDB_ETOOBIG ? 413 : 400, "saml-attributes-too-large",
							"attributes_over_bounds", e.msg);
				}
			}
			json_object_set_new(seen, at->Name, vals);
		}
	}
	return 0;
}

/* What the IdP sent, for the admin: values of the attributes the map reads,
 * names only for the rest. */
static char *last_login_json(const idb_attrmap *m, json_t *seen)
{
	json_t *out = json_object();
	const char *k;
	json_t *v;
	json_object_foreach(seen, k, v)
	{
		if (idb_attrmap_mentions(m, k))
			json_object_set(out, k, v);
		else
			json_object_set_new(out, k, json_string("(not mapped: value not shown)"));
	}
	char *txt = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	return txt;
}

int idb_saml_handle_acs(idb_req *req)
{
	idb_app *app = idb_req_app(req);
	idb_err err;
	idb_err_clear(&err);
	idb_connection c;
	if (load_connection(req, &c, &err) != 0)
		return idb_sso_fail(req, idb_http_status_for(err.code), err.field, "Sign-in failed", err.msg);
	acs_fail f = {0};
	saml_entry *e = NULL;
	LassoLogin *login = NULL;
	LassoSaml2Assertion *a = NULL;
	idb_identity id = {0};
	idb_profile prof = {0};
	json_t *seen = json_object();
	char *relay_state = NULL, *target = NULL, *dump = NULL;
	unsigned char *xml = NULL;
	int rc = 0;

	const char *b64 = idb_req_form(req, "SAMLResponse");
	const char *rs = idb_req_form(req, "RelayState");
	if (!b64 || !*b64) {
		fail_set(&f, 400, "saml-response-missing", "response_missing", "No SAMLResponse was posted.");
		goto fail;
	}
	if (strlen(b64) > MAX_RESPONSE_B64) {
		fail_set(&f, 413, "too-large", "response_too_large", "The SAML response is too large.");
		goto fail;
	}
	if (!c.enabled) {
		fail_set(&f, 403, "sso-connection-disabled", "connection_disabled",
			 "Sign-in through this identity provider is disabled.");
		goto fail;
	}
	size_t b64len = strlen(b64), xml_len = 0;
	xml = malloc(b64len);
	if (!xml || sodium_base642bin(xml, b64len, b64, b64len, " \t\r\n", &xml_len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
		fail_set(&f, 400, "saml-response-malformed", "response_malformed", "The SAMLResponse is not base64.");
		goto fail;
	}
	bool allow_sha1 = idb_connection_flag(&c, "saml", "allow_sha1", false);
	idb_saml_scan scan;
	if (idb_saml_xml_scan((const char *)xml, xml_len, allow_sha1, &scan, &err) != 0) {
		bool idp_refused = strcmp(err.field, "saml-idp-refused") == 0;
		fail_set(&f, strcmp(err.field, "too-large") == 0 ? 413 : idp_refused ? 403 : 400, "saml-response-refused",
			 "response_refused", err.msg);
		/* The activity reason names the rule: "xml_dtd", "assertion_count", "value_markup", … */
		const char *slug = err.field[0] ? err.field : "xml-refused";
		if (!strncmp(slug, "saml-", 5))
			slug += 5;
		snprintf(f.reason_buf, sizeof(f.reason_buf), "%.47s", slug);
		for (char *q = f.reason_buf; *q; q++)
			if (*q == '-')
				*q = '_';
		f.reason = idp_refused ? "idp_refused" : f.reason_buf;
		/* The scanner's slug is the precise type. */
		f.type = NULL;
		snprintf(f.detail, sizeof(f.detail), "%s", err.msg);
		goto fail_scan;
	}

	/* lasso (hint MAYBE) verifies the Response signature or, when the
	 * Response is not signed, each Assertion's, but lets a wholly unsigned
	 * message through: a signature must cover the one assertion (directly,
	 * or through the Response; an encrypted assertion's is checked by lasso
	 * once decrypted). */
	if (!scan.response_signed && !scan.assertion_signed && !scan.encrypted) {
		fail_set(&f, 400, "saml-signature-missing", "signature_missing",
			 "The response is not signed. The identity provider must sign the response or the assertion.");
		goto fail;
	}

	/* RelayState: ours (an id of a request we made) or, for unsolicited
	 * responses, a target URL. */
	const char *expected_rid = NULL;
	json_t *relay = NULL;
	if (rs && *rs && strlen(rs) < 64 && strspn(rs, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == strlen(rs)) {
		char key[96];
		snprintf(key, sizeof(key), "idb:saml:relay:%s", rs);
		int crc = idb_cache_take(app->cache, key, &relay_state, &err);
		if (crc == IDB_EUNAVAIL) {
			fail_set(&f, 503, "sso-unavailable", "cache_unavailable",
				 "Sign-in is temporarily unavailable. Try again in a moment.");
			goto fail;
		}
		if (crc == 0)
			relay = json_loads(relay_state, 0, NULL);
	}
	if (relay) {
		const char *conn = json_string_value(json_object_get(relay, "c"));
		if (!conn || strcmp(conn, c.id) != 0) {
			json_decref(relay);
			fail_set(&f, 400, "saml-in-response-to-mismatch", "relay_state_connection_mismatch",
				 "The response belongs to a sign-in started with another identity provider.");
			goto fail;
		}
		expected_rid = json_string_value(json_object_get(relay, "rid"));
		target = strdup(json_string_value(json_object_get(relay, "rt")));
	} else {
		if (!idb_connection_flag(&c, "saml", "allow_idp_initiated", false)) {
			fail_set(&f, 400, "saml-unsolicited", "unsolicited_response",
				 "This identity provider must start sign-in from this service (IdP-initiated sign-in is off), or "
				 "the sign-in took too long. Start again.");
			goto fail;
		}
		const char *t = rs && *rs ? rs : "/";
		if (!idb_return_to_allowed(app->cfg, t)) {
			fail_set(&f, 400, "sso-return-to-not-allowed", "relay_state_not_allowed",
				 "The address to return to after sign-in is not allowed.");
			goto fail;
		}
		target = strdup(t);
	}

	if ((rc = entry_get(app->saml, &c, &e, &err)) != 0) {
		json_decref(relay);
		fail_set(&f, 503, "saml-unavailable", "metadata_unavailable", err.msg);
		goto fail;
	}
	if (c.metadata_valid_until && c.metadata_valid_until < idb_now_s()) {
		json_decref(relay);
		fail_set(&f, 503, "saml-metadata-expired", "metadata_expired",
			 "The identity provider's metadata has expired; an administrator must refresh it.");
		goto fail;
	}
	login = lasso_login_new(e->server);
	LassoProfile *profile = LASSO_PROFILE(login);
	lasso_profile_set_signature_verify_hint(profile, LASSO_PROFILE_SIGNATURE_VERIFY_HINT_MAYBE);
	rc = lasso_login_process_authn_response_msg(login, (gchar *)b64);
	if (rc != 0) {
		json_decref(relay);
		idb_log_info("SAML response refused by lasso on %s: %d %s", c.slug, rc, lasso_strerror(rc));
		if (rc == LASSO_LOGIN_ERROR_STATUS_NOT_SUCCESS || rc == LASSO_LOGIN_ERROR_REQUEST_DENIED ||
		    rc == LASSO_LOGIN_ERROR_FEDERATION_NOT_FOUND || rc == LASSO_LOGIN_ERROR_UNKNOWN_PRINCIPAL)
			fail_set(&f, 403, "saml-idp-refused", "idp_refused",
				 "Your identity provider did not sign you in. Contact your administrator.");
		else if (rc == LASSO_SERVER_ERROR_PROVIDER_NOT_FOUND || rc == LASSO_PROFILE_ERROR_MISSING_ISSUER)
			fail_set(&f, 400, "saml-unknown-issuer", "unknown_issuer",
				 "The response comes from an identity provider this connection does not trust.");
		else
			fail_set(&f, 400, "saml-signature-invalid", "signature_invalid",
				 "The response's signature could not be verified against the identity provider's metadata.");
		goto fail;
	}
	LassoSamlp2Response *sresp = LASSO_SAMLP2_RESPONSE(profile->response);
	/* (lasso keeps the EncryptedAssertion next to the one it decrypted; the
	 * pre-scan already counted one assertion in all.) */
	if (!sresp->Assertion || sresp->Assertion->next) {
		json_decref(relay);
		fail_set(&f, 400, "saml-assertion-count", "assertion_count", "The response must carry exactly one assertion.");
		goto fail;
	}
	a = LASSO_SAML2_ASSERTION(sresp->Assertion->data);
	int64_t expiry = 0;
	rc = check_assertion(req, &c, profile, a, expected_rid, &expiry, &f);
	json_decref(relay);
	if (rc != 0)
		goto fail;
	/* Each assertion once, across all instances, until it expires. */
	{
		char hash[65], key[96], *src = NULL;
		size_t n = strlen(e->idp_entity) + strlen(a->ID ? a->ID : "") + 2;
		src = malloc(n);
		if (!src || !a->ID) {
			free(src);
			fail_set(&f, 400, "saml-assertion-id-missing", "assertion_id_missing", "The assertion has no ID.");
			goto fail;
		}
		snprintf(src, n, "%s\n%s", e->idp_entity, a->ID);
		idb_sha256_hex(hash, src, strlen(src));
		free(src);
		snprintf(key, sizeof(key), "idb:saml:seen:%s", hash);
		long long ttl = expiry - idb_now_s() + app->cfg->saml_clock_skew_s;
		if (ttl < 60)
			ttl = 60;
		if (ttl > MAX_REPLAY_TTL_S)
			ttl = MAX_REPLAY_TTL_S;
		int nrc = idb_cache_set_nx(app->cache, key, "1", ttl, &err);
		if (nrc == IDB_EEXISTS) {
			fail_set(&f, 400, "saml-replay", "replay", "This sign-in response was already used. Start again.");
			goto fail;
		}
		if (nrc != 0) {
			fail_set(&f, 503, "sso-unavailable", "cache_unavailable",
				 "Sign-in is temporarily unavailable. Try again in a moment.");
			goto fail;
		}
	}
	if ((rc = build_identity(&c, e->idp_entity, a, &id, seen, &f)) != 0)
		goto fail;
	if (idb_attrmap_apply(e->map, &id, &prof, &err) != 0) {
		fail_set(&f, 400, "sso-attribute-mapping", "mapping_failed", err.msg);
		goto fail;
	}
	if (lasso_login_accept_sso(login) == 0) {
		LassoSession *ls = lasso_profile_get_session(profile);
		if (ls)
			dump = lasso_session_dump(ls);
	}
	/* JIT + session. */
	{
		idb_db *db;
		if ((rc = idb_store_acquire(app->store, &db, &err)) != 0) {
			fail_set(&f, 503, "sso-unavailable", "database_unavailable", "Sign-in is temporarily unavailable.");
			goto fail;
		}
		const char *session_index = NULL;
		if (a->AuthnStatement)
			session_index = LASSO_SAML2_AUTHN_STATEMENT(a->AuthnStatement->data)->SessionIndex;
		idb_session_idp idp = {.connection_id = c.id, .subject = id.subject, .session_index = session_index,
				       .session_dump = dump};
		idb_session_sso sso = {.req = req, .method = "saml", .idp = &idp};
		idb_jit_opts jo = {.in_tx = idb_session_sso_in_tx, .in_tx_arg = &sso};
		idb_jit_result jr;
		rc = idb_jit_provision(db, &c, &id, &prof, idb_req_ip(req), &jo, &jr, &err);
		int64_t now_ms = idb_now_ms_mono(), prev = atomic_load(&e->last_login_stored_ms);
		/* One row per connection: written by every login it would be a hot
		 * spot (and a commit) for nothing; every 10 s per instance is plenty. */
		if (rc == 0 && (prev == 0 || now_ms - prev >= 10000) &&
		    atomic_compare_exchange_strong(&e->last_login_stored_ms, &prev, now_ms)) {
			char *ll = last_login_json(e->map, seen);
			if (ll)
				(void)idb_connection_set_last_login(db, c.id, ll, NULL);
			free(ll);
		}
		idb_store_release(db);
		if (rc == IDB_EFORBIDDEN) {
			fail_set(&f, 403, "sso-account-refused", jr.reason, jr.message);
			f.reason = NULL; /* JIT recorded it */
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

fail_scan:
	f.type = err.field[0] ? err.field : "saml-response-refused";
fail:
	if (f.reason) {
		idb_db *db;
		if (idb_store_acquire(app->store, &db, NULL) == 0) {
			(void)idb_jit_record_failure(db, &c, f.reason, f.detail, idb_req_ip(req), NULL);
			idb_store_release(db);
		}
	}
	idb_log_info("SAML login on %s refused: %s (%s)", c.slug, f.reason ? f.reason : "jit", f.detail);
	idb_sso_fail(req, f.status ? f.status : 400, f.type ? f.type : "saml-refused", "Sign-in failed", f.detail);
done:
	if (dump)
		g_free(dump);
	if (login)
		lasso_login_destroy(login);
	entry_put(app->saml, e);
	idb_profile_clear(&prof);
	idb_identity_clear(&id);
	json_decref(seen);
	free(xml);
	free(relay_state);
	free(target);
	idb_connection_clear(&c);
	return 0;
}

/* --- single logout --- */

static void end_idp_sessions(idb_app *app, const char *conn_id, const char *subject, const char *session_index)
{
	idb_db *db;
	if (idb_store_acquire(app->store, &db, NULL) != 0)
		return;
	char(*hashes)[65] = NULL;
	int n = 0;
	if (idb_sessions_delete_idp(db, conn_id, subject, session_index, NULL, &hashes, &n, NULL) == 0)
		idb_session_uncache(app, (const char(*)[65])hashes, (size_t)n);
	idb_store_release(db);
	idb_log_info("SAML single logout ended %d session(s) on connection %s", n, conn_id);
	free(hashes);
}

int idb_saml_handle_slo(idb_req *req)
{
	idb_app *app = idb_req_app(req);
	idb_err err;
	idb_err_clear(&err);
	idb_connection c;
	if (load_connection(req, &c, &err) != 0)
		return idb_sso_fail(req, idb_http_status_for(err.code), err.field, "Sign-out failed", err.msg);
	saml_entry *e = NULL;
	if (entry_get(app->saml, &c, &e, &err) != 0) {
		idb_connection_clear(&c);
		return idb_sso_fail(req, 503, "saml-unavailable", "Sign-out failed", err.msg);
	}
	const char *query = idb_req_raw_query(req);
	bool is_request = idb_req_query(req, "SAMLRequest") != NULL;
	bool is_response = idb_req_query(req, "SAMLResponse") != NULL;
	LassoLogout *lo = lasso_logout_new(e->server);
	LassoProfile *profile = LASSO_PROFILE(lo);
	char *redirect = NULL;
	int rc;
	if (is_request) {
		/* IdP-initiated: verify, end every matching session, answer. */
		lasso_profile_set_signature_verify_hint(profile, LASSO_PROFILE_SIGNATURE_VERIFY_HINT_FORCE);
		rc = lasso_logout_process_request_msg(lo, (gchar *)query);
		if (rc != 0) {
			idb_log_info("SAML LogoutRequest refused on %s: %s", c.slug, lasso_strerror(rc));
			idb_sso_fail(req, 400, "saml-logout-invalid", "Sign-out failed",
				     "The logout request could not be verified.");
			goto done;
		}
		LassoSaml2NameID *nid = LASSO_IS_SAML2_NAME_ID(profile->nameIdentifier)
						? LASSO_SAML2_NAME_ID(profile->nameIdentifier)
						: NULL;
		LassoSamlp2LogoutRequest *lr = LASSO_SAMLP2_LOGOUT_REQUEST(profile->request);
		/* lasso answers Success only for a session it knows: give it the
		 * stored one, then end ours everywhere. */
		char *dump = NULL;
		idb_db *db;
		if (nid && nid->content && idb_store_acquire(app->store, &db, NULL) == 0) {
			(void)idb_sessions_idp_dump(db, c.id, nid->content, &dump, NULL);
			idb_store_release(db);
		}
		if (dump)
			(void)lasso_profile_set_session_from_dump(profile, dump);
		free(dump);
		if (nid && nid->content)
			end_idp_sessions(app, c.id, nid->content, lr && lr->SessionIndex ? lr->SessionIndex : NULL);
		/* lasso would sign (and leak a key per message): idbridge signs. */
		lasso_profile_set_signature_hint(profile, LASSO_PROFILE_SIGNATURE_HINT_FORBID);
		rc = lasso_logout_validate_request(lo);
		if (rc != 0)
			idb_log_info("SAML LogoutRequest on %s: %s (our sessions were ended anyway)", c.slug, lasso_strerror(rc));
		rc = lasso_logout_build_response_msg(lo);
		if (rc == 0 && profile->msg_url)
			redirect = sign_redirect(app->saml, profile->msg_url);
		else
			idb_log_warn("cannot build the LogoutResponse on %s: %s", c.slug, lasso_strerror(rc));
	} else if (is_response) {
		lasso_profile_set_signature_verify_hint(profile, LASSO_PROFILE_SIGNATURE_VERIFY_HINT_FORCE);
		rc = lasso_logout_process_response_msg(lo, (gchar *)query);
		char *target = NULL;
		const char *rs = idb_req_query(req, "RelayState");
		if (rs && strlen(rs) < 64) {
			char key[96];
			snprintf(key, sizeof(key), "idb:saml:slo:%s", rs);
			(void)idb_cache_take(app->cache, key, &target, NULL);
		}
		if (rc != 0 && rc != LASSO_LOGOUT_ERROR_UNKNOWN_PRINCIPAL && rc != LASSO_PROFILE_ERROR_SESSION_NOT_FOUND)
			idb_log_info("SAML LogoutResponse on %s: %s", c.slug, lasso_strerror(rc));
		redirect = strdup(target && idb_return_to_allowed(app->cfg, target) ? target : "/login");
		free(target);
	} else {
		idb_sso_fail(req, 400, "saml-logout-invalid", "Sign-out failed", "No SAMLRequest or SAMLResponse was given.");
		goto done;
	}
	if (redirect)
		idb_resp_redirect(req, 303, redirect);
	else
		idb_resp_redirect(req, 303, "/login");
	free(redirect);
done:
	lasso_logout_destroy(lo);
	entry_put(app->saml, e);
	idb_connection_clear(&c);
	return 0;
}

void idb_saml_logout_redirect(idb_req *req, const char *session_hash, char **redirect_out)
{
	idb_app *app = idb_req_app(req);
	*redirect_out = NULL;
	char *subject = NULL, *dump = NULL;
	idb_connection c;
	bool have = idb_session_idp_context(app, session_hash, "saml", &c, &subject, &dump) && dump;
	saml_entry *e = NULL;
	if (have && entry_get(app->saml, &c, &e, NULL) == 0 && e->idp_has_slo) {
		LassoLogout *lo = lasso_logout_new(e->server);
		LassoProfile *profile = LASSO_PROFILE(lo);
		char relay[32];
		idb_random_token(relay, sizeof(relay), 18);
		lasso_profile_set_signature_hint(profile, LASSO_PROFILE_SIGNATURE_HINT_FORBID);
		if (lasso_profile_set_session_from_dump(profile, dump) == 0 &&
		    lasso_logout_init_request(lo, e->idp_entity, LASSO_HTTP_METHOD_REDIRECT) == 0) {
			profile->msg_relayState = g_strdup(relay);
			if (lasso_logout_build_request_msg(lo) == 0 && profile->msg_url) {
				char key[96];
				snprintf(key, sizeof(key), "idb:saml:slo:%s", relay);
				(void)idb_cache_set(app->cache, key, "/login", RELAY_TTL_S, NULL);
				*redirect_out = sign_redirect(app->saml, profile->msg_url);
			}
		}
		lasso_logout_destroy(lo);
	}
	entry_put(app->saml, e);
	idb_connection_clear(&c);
	free(subject);
	free(dump);
}
