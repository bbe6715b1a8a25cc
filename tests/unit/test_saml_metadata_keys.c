/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The IdP signing keys idbridge hands lasso without their certificates must
 * be exactly the metadata's signing certificates' keys: signing and
 * unspecified-use KeyDescriptors of the IDPSSODescriptor count; encryption
 * keys, SP descriptors and DTDs do not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "saml_keys.h"
#include "saml_xml.h"

typedef struct seen {
	char *b64[8];
	int n;
} seen;

static void collect(const char *b64, void *arg)
{
	seen *s = arg;
	if (s->n < 8)
		s->b64[s->n++] = strdup(b64);
}

static void seen_free(seen *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->b64[i]);
	s->n = 0;
}

/* A fresh self-signed certificate: its base64 DER body and its public key PEM. */
static void make_cert(char **b64_out, char **pub_out)
{
	EVP_PKEY *k = EVP_RSA_gen(2048);
	assert_non_null(k);
	X509 *x = X509_new();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, k);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"idp", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);
	assert_true(n > 0);
	char *b64 = malloc((size_t)n * 2 + 4);
	EVP_EncodeBlock((unsigned char *)b64, der, n);
	OPENSSL_free(der);
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_PUBKEY(b, k);
	char *data = NULL;
	long len = BIO_get_mem_data(b, &data);
	*pub_out = strndup(data, (size_t)len);
	BIO_free(b);
	*b64_out = b64;
	X509_free(x);
	EVP_PKEY_free(k);
}

/* Metadata where only sign1 (a signing KeyDescriptor whose certificate is
 * followed by the rest of its chain, `chain`, and by a second X509Data and
 * KeyInfo with `other`) and sign2 (a KeyDescriptor without use) count; enc
 * is an encryption key, an SP signing key and the key of a SAML 1.1-only
 * IdP descriptor (other) must not count either. */
static char *metadata(const char *sign1, const char *sign2, const char *enc, const char *chain, const char *other)
{
	static const char fmt[] =
		"<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\""
		" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"https://idp.example\">"
		"<md:SPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">"
		"<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>%s"
		"</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor></md:SPSSODescriptor>"
		"<md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:1.1:protocol\">"
		"<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>%s"
		"</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor></md:IDPSSODescriptor>"
		"<md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">"
		"<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>\n  %s\n"
		"</ds:X509Certificate><ds:X509Certificate>%s</ds:X509Certificate></ds:X509Data>"
		"<ds:X509Data><ds:X509Certificate>%s</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
		"<ds:KeyInfo><ds:X509Data><ds:X509Certificate>%s</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
		"</md:KeyDescriptor>"
		"<md:KeyDescriptor><ds:KeyInfo><ds:X509Data><ds:X509Certificate>%s"
		"</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
		"<md:KeyDescriptor use=\"encryption\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>%s"
		"</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
		"</md:IDPSSODescriptor></md:EntityDescriptor>";
	size_t n = sizeof(fmt) + strlen(sign1) + strlen(sign2) + 2 * strlen(enc) + strlen(chain) + 3 * strlen(other);
	char *out = malloc(n);
	snprintf(out, n, fmt, enc, other, sign1, chain, other, other, sign2, enc);
	return out;
}

static void signing_and_unspecified_keys_only(void **state)
{
	(void)state;
	char *c1, *p1, *c2, *p2, *ce, *pe, *cc, *pc, *co, *po;
	make_cert(&c1, &p1);
	make_cert(&c2, &p2);
	make_cert(&ce, &pe);
	make_cert(&cc, &pc);
	make_cert(&co, &po);
	char *md = metadata(c1, c2, ce, cc, co);
	seen s = {.n = 0};
	assert_int_equal(idb_saml_metadata_signing_certs(md, strlen(md), collect, &s), 2);
	assert_int_equal(s.n, 2);
	char *k1 = idb_cert_b64_pubkey_pem(s.b64[0]); /* with the surrounding whitespace */
	char *k2 = idb_cert_b64_pubkey_pem(s.b64[1]);
	assert_non_null(k1);
	assert_non_null(k2);
	assert_string_equal(k1, p1);
	assert_string_equal(k2, p2);
	free(k1);
	free(k2);
	seen_free(&s);
	free(md);
	free(c1), free(p1), free(c2), free(p2), free(ce), free(pe), free(cc), free(pc), free(co), free(po);
}

static void refusals(void **state)
{
	(void)state;
	seen s = {.n = 0};
	static const char dtd[] = "<!DOCTYPE x [<!ENTITY e \"y\">]><md:EntityDescriptor"
				  " xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\"/>";
	assert_int_equal(idb_saml_metadata_signing_certs(dtd, strlen(dtd), collect, &s), -1);
	static const char junk[] = "<md:EntityDescriptor";
	assert_int_equal(idb_saml_metadata_signing_certs(junk, strlen(junk), collect, &s), -1);
	static const char other[] = "<EntityDescriptor/>";
	assert_int_equal(idb_saml_metadata_signing_certs(other, strlen(other), collect, &s), -1);
	assert_int_equal(s.n, 0);
	assert_null(idb_cert_b64_pubkey_pem("bm90IGEgY2VydGlmaWNhdGU="));
	assert_null(idb_cert_b64_pubkey_pem("%%% not base64"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(signing_and_unspecified_keys_only),
		cmocka_unit_test(refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
