/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Small helpers every layer shares: randomness, hashing, encodings, strings. */
#ifndef IDB_UTIL_H
#define IDB_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Initialises libsodium; must succeed before any other call here. */
int idb_crypto_init(void);

/* n random bytes rendered as base64url without padding into out (size >=
 * 4*n/3+2). Used for session ids, CSRF tokens, invitation tokens, API keys. */
void idb_random_token(char *out, size_t outsz, size_t nbytes);
/* n random bytes as lowercase hex into out (size >= 2n+1). */
void idb_random_hex(char *out, size_t outsz, size_t nbytes);

/* SHA-256 of data as 64 lowercase hex chars + NUL into out[65]. */
void idb_sha256_hex(char out[65], const void *data, size_t len);

/* Constant-time comparison of two NUL-terminated strings. */
bool idb_str_ct_equal(const char *a, const char *b);

/* Password hashing: argon2id (libsodium's interactive limits), encoded string. */
int idb_password_hash(char *out, size_t outsz, const char *password);
/* Returns true when password matches the encoded hash. Always runs a full hash
 * (against a dummy hash when encoded is NULL) so timing does not reveal whether
 * the account exists. */
bool idb_password_verify(const char *encoded, const char *password);

/* Copies src into dst (size dstsz), always NUL-terminating; returns false when
 * src was truncated. */
bool idb_strlcpy(char *dst, const char *src, size_t dstsz);

/* strtol with full checks: the whole string must be a base-10 integer within
 * [min, max]. */
bool idb_parse_long(const char *s, long long min, long long max, long long *out);

/* Number of characters (code points) of UTF-8 text: the unit of the
 * database's length checks. */
size_t idb_utf8_len(const char *s);

/* Lowercases ASCII in place. */
void idb_str_lower(char *s);

/* A plausible e-mail address (RFC 5321 sizes, one @, dot in the domain, no
 * spaces or control characters). Not a full RFC 5322 parser, on purpose. */
bool idb_email_valid(const char *email);

/* Monotonic milliseconds. */
int64_t idb_now_ms_mono(void);
/* Wall-clock seconds since the epoch. */
int64_t idb_now_s(void);

/* Percent-decodes s in place (also '+' -> ' ' when plus_is_space); returns
 * false on a malformed escape or an embedded NUL. */
bool idb_url_decode(char *s, bool plus_is_space);

#endif
