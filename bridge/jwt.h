/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Signed JWTs (compact JWS) from OpenID providers: ID tokens, logout tokens
 * and bearer access tokens. Parsing is strict (exactly three base64url parts,
 * header and payload JSON objects with duplicate members refused), the
 * signature is checked with cjose against a key chosen by idbridge from a
 * provider JWKS that idbridge fetched itself (never a key or URL named by the
 * token: jku, x5u and jwk headers are refused), and every claim is checked
 * here: liboauth2 and cjose check none of iss, aud, azp, nbf or nonce.
 * No I/O: the caller supplies the JWKS and the expectations. */
#ifndef IDB_JWT_H
#define IDB_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"

/* Signature algorithms that may be allowed (a bit set). none and HS* do not
 * exist here on purpose: they can never be allowed. */
enum {
	IDB_JWT_RS256 = 1u << 0,
	IDB_JWT_RS384 = 1u << 1,
	IDB_JWT_RS512 = 1u << 2,
	IDB_JWT_PS256 = 1u << 3,
	IDB_JWT_PS384 = 1u << 4,
	IDB_JWT_PS512 = 1u << 5,
	IDB_JWT_ES256 = 1u << 6,
	IDB_JWT_ES384 = 1u << 7,
	IDB_JWT_ES512 = 1u << 8,
};
#define IDB_JWT_ALGS_DEFAULT (IDB_JWT_RS256 | IDB_JWT_ES256 | IDB_JWT_PS256)

/* The bit of an algorithm name ("RS256"), 0 when unknown or never allowed
 * ("none", "HS256", …). */
unsigned idb_jwt_alg_bit(const char *name);

/* A provider's key set: parsed once, immutable, shared between threads by
 * reference counting. Keys that cannot verify signatures (use "enc",
 * key_ops without "verify", symmetric keys, RSA under 2048 bits) are kept
 * but marked unusable, so that their kid counts as known (no refresh) and
 * is refused. */
typedef struct idb_jwks idb_jwks;

/* Parses JWKS JSON text (duplicate members refused). IDB_EINVAL when it is
 * not {"keys": [...]} or holds more than 100 keys; keys cjose cannot import
 * are skipped. *out is released with idb_jwks_release. */
int idb_jwks_parse(idb_jwks **out, const char *json, size_t len, idb_err *err);
/* A new reference to k (k may be NULL). */
idb_jwks *idb_jwks_retain(idb_jwks *k);
/* Drops a reference; frees at zero. NULL is a no-op. */
void idb_jwks_release(idb_jwks *k);
/* Number of keys (usable or not). */
size_t idb_jwks_count(const idb_jwks *k);

/* A decoded, not yet verified token. Fields are owned by the struct and
 * released by idb_jwt_clear. */
typedef struct idb_jwt {
	char *compact;   /* the token as received */
	json_t *header;  /* protected header object */
	json_t *payload; /* claims object */
	const char *alg; /* borrowed from header */
	const char *kid; /* borrowed from header, NULL when absent */
} idb_jwt;

/* Decodes token (at most max_bytes): three base64url parts without padding,
 * header and payload JSON objects without duplicate members, an "alg" string,
 * no "crit" (no extension is understood), no "jku", "x5u" or "jwk". IDB_ETOOBIG
 * past max_bytes, IDB_EINVAL otherwise (err->msg says what). out is cleared
 * with idb_jwt_clear also on failure. */
int idb_jwt_decode(idb_jwt *out, const char *token, size_t max_bytes, idb_err *err);
void idb_jwt_clear(idb_jwt *jwt);

/* Verifies the signature of jwt with a key of jwks: alg must be in
 * allowed_algs (IDB_JWT_* bits); the key is the one named by kid (or, without
 * kid, each usable key of the right type in turn); it must be usable for
 * signatures, its "alg" (when set) must equal the header's, its type and
 * curve must fit the algorithm. IDB_ENOTFOUND when no key of the set has that
 * kid (or no key fits a token without kid): the caller may refresh the JWKS
 * once and retry. IDB_EAUTH for every other refusal. */
int idb_jwt_verify(const idb_jwt *jwt, const idb_jwks *jwks, unsigned allowed_algs, idb_err *err);

/* What the claims must say. */
typedef struct idb_jwt_expect {
	const char *issuer;   /* iss must equal it exactly (required) */
	const char *audience; /* aud (string or array) must contain it (required) */
	bool check_azp;       /* ID tokens: azp, when present, must equal audience;
				 several audiences require azp */
	const char *nonce;    /* non-NULL: nonce must equal it */
	bool nonce_forbidden; /* logout tokens: a nonce member is refused */
	bool require_exp;     /* exp required (else checked when present) */
	bool require_sub;     /* sub: a non-empty string of at most 255 bytes */
	int64_t now;          /* epoch seconds */
	int64_t skew_s;       /* allowed clock difference */
	int64_t max_age_s;    /* iat (always required) may be at most this old */
} idb_jwt_expect;

/* Checks the claims of a verified token. exp, nbf and iat must be integers
 * (not strings, not fractions) within 0 .. year 9999; exp in the future,
 * nbf and iat not in the future (beyond the skew), iat not older than
 * max_age_s. sub, when present, must be a string. IDB_EAUTH with a message
 * naming the claim. */
int idb_jwt_check_claims(const json_t *claims, const idb_jwt_expect *x, idb_err *err);

/* Base64url (no padding) of len bytes into out (size >= 4*len/3 + 2). */
void idb_b64url_encode(char *out, size_t outsz, const unsigned char *in, size_t len);

#endif
