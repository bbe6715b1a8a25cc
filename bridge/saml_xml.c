/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "saml_xml.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#define NS_SAML "urn:oasis:names:tc:SAML:2.0:assertion"
#define NS_SAMLP "urn:oasis:names:tc:SAML:2.0:protocol"
#define NS_DS "http://www.w3.org/2000/09/xmldsig#"
#define NS_XENC "http://www.w3.org/2001/04/xmlenc#"
#define MAX_ELEMENTS 50000
#define MAX_DEPTH 48

typedef struct scan_state {
	bool allow_sha1;
	int elements;
	int assertions;      /* Assertion + EncryptedAssertion anywhere */
	int direct;          /* of which directly under the Response */
	bool encrypted;
	bool response_signed, assertion_signed;
	bool status_failed;
	char attr_names[64][256];
	int nattr_names;
	idb_err *err;
	int rc;
} scan_state;

static bool is(const xmlNode *n, const char *ns, const char *name)
{
	return n->type == XML_ELEMENT_NODE && n->ns && n->ns->href && strcmp((const char *)n->ns->href, ns) == 0 &&
	       strcmp((const char *)n->name, name) == 0;
}

static int refuse(scan_state *st, const char *slug, const char *msg)
{
	if (st->rc == 0)
		st->rc = idb_err_set(st->err, IDB_EINVAL, slug, "%s", msg);
	return st->rc;
}

/* Values that decide identity must be exactly one text node: no comment
 * (user@evil.com<!---->.example.com), no CDATA, no child element. */
static void check_pure_text(scan_state *st, const xmlNode *n)
{
	int texts = 0;
	for (const xmlNode *c = n->children; c; c = c->next) {
		if (c->type == XML_TEXT_NODE)
			texts++;
		else
			refuse(st, "saml-value-markup",
			       "a NameID, Issuer, Audience or attribute value contains a comment, CDATA section or markup");
	}
	if (texts > 1)
		refuse(st, "saml-value-markup", "a value is split into several text nodes");
}

static bool weak_alg(const char *alg)
{
	return strstr(alg, "sha1") || strstr(alg, "md5") || strstr(alg, "SHA1");
}

static void check_alg(scan_state *st, const xmlNode *n)
{
	xmlChar *alg = xmlGetProp(n, (const xmlChar *)"Algorithm");
	if (!alg) {
		refuse(st, "saml-signature-invalid", "a signature names no algorithm");
		return;
	}
	if (strstr((const char *)alg, "md5"))
		refuse(st, "saml-weak-algorithm", "MD5 signatures are never accepted");
	else if (weak_alg((const char *)alg) && !st->allow_sha1)
		refuse(st, "saml-sha1", "the response is signed with SHA-1, which this connection does not allow");
	xmlFree(alg);
}

static void walk(scan_state *st, const xmlNode *n, int depth, const xmlNode *response, const xmlNode *assertion)
{
	for (; n && st->rc == 0; n = n->next) {
		if (n->type == XML_COMMENT_NODE || n->type == XML_PI_NODE || n->type == XML_TEXT_NODE)
			continue;
		if (n->type == XML_CDATA_SECTION_NODE) {
			refuse(st, "saml-value-markup", "CDATA sections are not accepted in a SAML response");
			return;
		}
		if (n->type == XML_ENTITY_REF_NODE || n->type == XML_ENTITY_NODE || n->type == XML_DTD_NODE) {
			refuse(st, "xml-dtd", "entities and DTDs are not accepted");
			return;
		}
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (++st->elements > MAX_ELEMENTS || depth > MAX_DEPTH) {
			refuse(st, "too-large", "the response is too large or too deeply nested");
			return;
		}
		const xmlNode *in_assertion = assertion;
		if (is(n, NS_SAML, "Assertion") || is(n, NS_SAML, "EncryptedAssertion")) {
			st->assertions++;
			if (n->parent == response)
				st->direct++;
			st->encrypted = is(n, NS_SAML, "EncryptedAssertion");
			in_assertion = n;
			if (n->parent == response)
				st->nattr_names = 0; /* attribute names are unique per assertion */
		} else if (is(n, NS_DS, "RetrievalMethod") || is(n, NS_XENC, "CipherReference")) {
			refuse(st, "saml-external-reference", "references to outside resources are not accepted");
			return;
		} else if (is(n, NS_SAMLP, "StatusCode") && n->parent && is(n->parent, NS_SAMLP, "Status") &&
			   n->parent->parent == response) {
			xmlChar *v = xmlGetProp(n, (const xmlChar *)"Value");
			if (!v || strcmp((const char *)v, "urn:oasis:names:tc:SAML:2.0:status:Success") != 0)
				st->status_failed = true;
			xmlFree(v);
		} else if (is(n, NS_DS, "SignatureMethod") || is(n, NS_DS, "DigestMethod")) {
			check_alg(st, n);
		} else if (is(n, NS_DS, "Signature")) {
			if (n->parent == response)
				st->response_signed = true;
			else if (assertion && n->parent == assertion)
				st->assertion_signed = true;
		} else if (is(n, NS_SAML, "NameID") || is(n, NS_SAML, "Issuer") || is(n, NS_SAML, "Audience") ||
			   is(n, NS_SAML, "AttributeValue")) {
			check_pure_text(st, n);
		} else if (is(n, NS_SAML, "Attribute") && assertion && assertion->parent == response && n->parent &&
			   n->parent->parent == assertion) {
			xmlChar *name = xmlGetProp(n, (const xmlChar *)"Name");
			if (!name) {
				refuse(st, "saml-attribute-invalid", "an attribute has no Name");
				return;
			}
			for (int i = 0; i < st->nattr_names; i++)
				if (strcmp(st->attr_names[i], (const char *)name) == 0)
					refuse(st, "saml-attribute-ambiguous",
					       "an attribute name appears more than once (for example under two NameFormats)");
			if (st->nattr_names < 64 && strlen((const char *)name) < 256)
				memcpy(st->attr_names[st->nattr_names++], name, strlen((const char *)name) + 1);
			xmlFree(name);
		}
		walk(st, n->children, depth + 1, response, in_assertion);
	}
}

int idb_saml_xml_scan(const char *xml, size_t len, bool allow_sha1, idb_saml_scan *out, idb_err *err)
{
	memset(out, 0, sizeof(*out));
	if (len == 0 || len > 4 * 1024 * 1024)
		return idb_err_set(err, IDB_EINVAL, "too-large", "the SAML response is empty or too large");
	/* No NOENT (no entity substitution), no DTD loading, no network. */
	xmlDoc *doc = xmlReadMemory(xml, (int)len, "saml-response.xml", NULL,
				    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc)
		return idb_err_set(err, IDB_EINVAL, "xml-malformed", "the SAML response is not well-formed XML");
	scan_state st = {.allow_sha1 = allow_sha1, .err = err};
	const xmlNode *root = xmlDocGetRootElement(doc);
	if (doc->intSubset || doc->extSubset) {
		refuse(&st, "xml-dtd", "DOCTYPE declarations are not accepted in SAML messages");
	} else if (!root || !is(root, NS_SAMLP, "Response")) {
		refuse(&st, "saml-not-a-response", "the message is not a SAML 2.0 Response");
	} else {
		walk(&st, root, 0, root, NULL);
		/* An IdP that did not sign the user in says so in the Status: report
		 * that rather than the missing assertion. */
		if (st.status_failed) {
			st.rc = 0;
			refuse(&st, "saml-idp-refused", "the identity provider did not sign the user in (non-Success status)");
		}
		if (st.rc == 0 && (st.assertions != 1 || st.direct != 1))
			refuse(&st, "saml-assertion-count",
			       "the response must carry exactly one assertion, directly under the Response");
	}
	xmlFreeDoc(doc);
	if (st.rc == 0) {
		out->encrypted = st.encrypted;
		out->response_signed = st.response_signed;
		out->assertion_signed = st.assertion_signed;
	}
	return st.rc;
}

int64_t idb_saml_parse_time(const char *t)
{
	int y, mo, d, h, mi, sec;
	if (!t || sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) != 6 || strlen(t) < 19)
		return -1;
	const char *z = t + 19;
	if (*z == '.')
		for (z++; *z >= '0' && *z <= '9'; z++)
			;
	if (strcmp(z, "Z") != 0 && strcmp(z, "+00:00") != 0 && *z != '\0')
		return -1;
	struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = sec};
	return (int64_t)timegm(&tm);
}

#define NS_MD "urn:oasis:names:tc:SAML:2.0:metadata"

int idb_saml_metadata_times(const char *xml, size_t len, int64_t *valid_until, char *cache_out, size_t cache_sz,
			    idb_err *err)
{
	*valid_until = 0;
	if (cache_sz)
		cache_out[0] = '\0';
	xmlDoc *doc = xmlReadMemory(xml, (int)len, "metadata.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc)
		return idb_err_set(err, IDB_EINVAL, "saml.idp_metadata_xml", "the IdP metadata is not well-formed XML");
	int rc = 0;
	const xmlNode *root = xmlDocGetRootElement(doc);
	if (doc->intSubset || doc->extSubset) {
		rc = idb_err_set(err, IDB_EINVAL, "saml.idp_metadata_xml", "DOCTYPE declarations are not accepted");
	} else if (root && is(root, NS_MD, "EntityDescriptor")) {
		const xmlNode *nodes[2] = {root, NULL};
		for (const xmlNode *c = root->children; c; c = c->next)
			if (is(c, NS_MD, "IDPSSODescriptor"))
				nodes[1] = c;
		for (int i = 0; i < 2 && rc == 0; i++) {
			if (!nodes[i])
				continue;
			xmlChar *vu = xmlGetProp(nodes[i], (const xmlChar *)"validUntil");
			xmlChar *cd = xmlGetProp(nodes[i], (const xmlChar *)"cacheDuration");
			if (vu) {
				int64_t t = idb_saml_parse_time((const char *)vu);
				if (t < 0)
					rc = idb_err_set(err, IDB_EINVAL, "saml.idp_metadata_xml", "validUntil \"%.40s\" is unreadable",
							 (const char *)vu);
				else if (*valid_until == 0 || t < *valid_until)
					*valid_until = t;
			}
			if (cd && cache_sz && !cache_out[0])
				snprintf(cache_out, cache_sz, "%s", (const char *)cd);
			xmlFree(vu);
			xmlFree(cd);
		}
	}
	xmlFreeDoc(doc);
	return rc;
}

/* n or its first following sibling that is the element ns:name; NULL when none. */
static const xmlNode *element_from(const xmlNode *n, const char *ns, const char *name)
{
	while (n && !is(n, ns, name))
		n = n->next;
	return n;
}

#define EACH_CHILD(var, parent, ns, name) \
	for (const xmlNode *var = element_from((parent)->children, ns, name); var; var = element_from(var->next, ns, name))

int idb_saml_metadata_signing_certs(const char *xml, size_t len, void (*fn)(const char *b64, void *arg), void *arg)
{
	xmlDoc *doc = xmlReadMemory(xml, (int)len, "metadata.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc)
		return -1;
	int n = 0;
	const xmlNode *root = xmlDocGetRootElement(doc);
	if (doc->intSubset || doc->extSubset || !root || !is(root, NS_MD, "EntityDescriptor")) {
		xmlFreeDoc(doc);
		return -1;
	}
	/* Exactly the keys lasso itself takes (lasso_xmlsec_load_key_info): of
	 * each signing (or unspecified-use) KeyDescriptor of a SAML 2.0
	 * IDPSSODescriptor, the first KeyInfo's first certificate. The other
	 * certificates of a chain (an issuing CA) never verify anything. */
	EACH_CHILD(d, root, NS_MD, "IDPSSODescriptor")
	{
		xmlChar *proto = xmlGetProp(d, (const xmlChar *)"protocolSupportEnumeration");
		bool saml2 = proto && strstr((const char *)proto, "urn:oasis:names:tc:SAML:2.0:protocol") != NULL;
		xmlFree(proto);
		if (!saml2)
			continue;
		EACH_CHILD(kd, d, NS_MD, "KeyDescriptor")
		{
			xmlChar *use = xmlGetProp(kd, (const xmlChar *)"use");
			bool signing = !use || strcmp((const char *)use, "signing") == 0;
			xmlFree(use);
			const xmlNode *ki = signing ? element_from(kd->children, NS_DS, "KeyInfo") : NULL;
			const xmlNode *xd = ki ? element_from(ki->children, NS_DS, "X509Data") : NULL;
			const xmlNode *xc = xd ? element_from(xd->children, NS_DS, "X509Certificate") : NULL;
			xmlChar *t = xc ? xmlNodeGetContent(xc) : NULL;
			if (t) {
				fn((const char *)t, arg);
				n++;
			}
			xmlFree(t);
		}
	}
	xmlFreeDoc(doc);
	return n;
}
