/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* A structural check of a decoded SAML Response before lasso sees it. It
 * refuses what a Web SSO response never needs and what signature-wrapping,
 * entity-expansion and fetch-forcing attacks rely on: DTDs, more than one
 * assertion or an assertion anywhere but directly under the Response,
 * RetrievalMethod / CipherReference, comments, CDATA or markup inside values
 * that decide identity (NameID, AttributeValue, Issuer, Audience), one
 * attribute name given twice, weak signature or digest algorithms. Pure:
 * parses the buffer with libxml2 (no network, no entities), keeps nothing. */
#ifndef IDB_SAML_XML_H
#define IDB_SAML_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct idb_saml_scan {
	bool encrypted;          /* the one assertion is an EncryptedAssertion */
	bool response_signed;    /* a ds:Signature directly under the Response */
	bool assertion_signed;   /* a ds:Signature directly under the Assertion */
} idb_saml_scan;

/* Checks xml (len bytes). On refusal returns IDB_EINVAL with err->field set to
 * a short problem slug ("xml-dtd", "saml-assertion-count", "saml-sha1", …)
 * and err->msg saying why. allow_sha1 permits rsa-sha1 / sha1. */
int idb_saml_xml_scan(const char *xml, size_t len, bool allow_sha1, idb_saml_scan *out, idb_err *err);

/* validUntil (earliest of EntityDescriptor / IDPSSODescriptor, epoch s, 0 when
 * absent) and cacheDuration text (copied into cache_out, "" when absent) of
 * IdP metadata. IDB_EINVAL for malformed XML, a DTD, or an unreadable time. */
int idb_saml_metadata_times(const char *xml, size_t len, int64_t *valid_until, char *cache_out, size_t cache_sz,
			    idb_err *err);

/* The IdP's signing certificates in metadata, exactly those lasso verifies
 * with: of every signing (or unspecified-use) KeyDescriptor of a SAML 2.0
 * IDPSSODescriptor, the first certificate of the first KeyInfo (never the
 * rest of a chain). Calls fn with its base64 text (whitespace included);
 * returns how many, or -1 when the XML is unreadable or has a DTD. */
int idb_saml_metadata_signing_certs(const char *xml, size_t len, void (*fn)(const char *b64, void *arg), void *arg);

/* ISO 8601 UTC time ("2026-01-01T00:00:00Z", optional fraction) to epoch
 * seconds; -1 when unreadable. */
int64_t idb_saml_parse_time(const char *t);

#endif
