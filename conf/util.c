/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

static char dummy_hash[crypto_pwhash_STRBYTES];

int idb_crypto_init(void)
{
	if (sodium_init() < 0)
		return -1;
	if (!dummy_hash[0] && idb_password_hash(dummy_hash, sizeof(dummy_hash), "idbridge-dummy-password") != 0)
		return -1;
	return 0;
}

void idb_random_token(char *out, size_t outsz, size_t nbytes)
{
	unsigned char buf[64];
	if (nbytes > sizeof(buf))
		nbytes = sizeof(buf);
	randombytes_buf(buf, nbytes);
	sodium_bin2base64(out, outsz, buf, nbytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(buf, sizeof(buf));
}

void idb_random_hex(char *out, size_t outsz, size_t nbytes)
{
	unsigned char buf[64];
	if (nbytes > sizeof(buf))
		nbytes = sizeof(buf);
	randombytes_buf(buf, nbytes);
	sodium_bin2hex(out, outsz, buf, nbytes);
}

void idb_sha256_hex(char out[65], const void *data, size_t len)
{
	unsigned char h[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(h, data, len);
	sodium_bin2hex(out, 65, h, sizeof(h));
}

bool idb_str_ct_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la != lb)
		return false;
	return sodium_memcmp(a, b, la) == 0;
}

int idb_password_hash(char *out, size_t outsz, const char *password)
{
	if (outsz < crypto_pwhash_STRBYTES)
		return -1;
	return crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
				 crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0
		       ? 0
		       : -1;
}

bool idb_password_verify(const char *encoded, const char *password)
{
	if (!encoded || !encoded[0]) {
		int same_work = crypto_pwhash_str_verify(dummy_hash, password, strlen(password));
		(void)same_work;
		return false;
	}
	return crypto_pwhash_str_verify(encoded, password, strlen(password)) == 0;
}

bool idb_strlcpy(char *dst, const char *src, size_t dstsz)
{
	if (dstsz == 0)
		return false;
	size_t n = strlen(src);
	if (n >= dstsz) {
		memcpy(dst, src, dstsz - 1);
		dst[dstsz - 1] = '\0';
		return false;
	}
	memcpy(dst, src, n + 1);
	return true;
}

bool idb_parse_long(const char *s, long long min, long long max, long long *out)
{
	if (!s || !*s || !(*s == '-' || *s == '+' || (*s >= '0' && *s <= '9')))
		return false;
	char *end = NULL;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || !end || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

void idb_str_lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

size_t idb_utf8_len(const char *s)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		n += (*p & 0xC0) != 0x80;
	return n;
}

bool idb_email_valid(const char *email)
{
	size_t len = strlen(email);
	if (len < 3 || len > 254)
		return false;
	const char *at = strchr(email, '@');
	if (!at || at == email || strchr(at + 1, '@'))
		return false;
	if ((size_t)(at - email) > 64)
		return false;
	const char *dom = at + 1;
	size_t dl = strlen(dom);
	if (dl < 3 || !strchr(dom, '.') || dom[0] == '.' || dom[dl - 1] == '.' || strstr(dom, ".."))
		return false;
	if (email[0] == '.' || at[-1] == '.' || strstr(email, "..") != NULL)
		return false;
	for (const unsigned char *p = (const unsigned char *)email; *p; p++) {
		if (*p <= 0x20 || *p == 0x7f || *p == '<' || *p == '>' || *p == '(' || *p == ')' || *p == ',' ||
		    *p == ';' || *p == ':' || *p == '\\' || *p == '"' || *p == '[' || *p == ']')
			return false;
	}
	for (const unsigned char *p = (const unsigned char *)dom; *p; p++)
		if (!(isalnum(*p) || *p == '-' || *p == '.' || *p >= 0x80))
			return false;
	return true;
}

int64_t idb_now_ms_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t idb_now_s(void)
{
	return (int64_t)time(NULL);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool idb_url_decode(char *s, bool plus_is_space)
{
	char *w = s;
	for (const char *r = s; *r; r++) {
		if (*r == '%') {
			int h = hexval((unsigned char)r[1]), l = h >= 0 ? hexval((unsigned char)r[2]) : -1;
			if (h < 0 || l < 0)
				return false;
			int c = h * 16 + l;
			if (c == 0)
				return false;
			*w++ = (char)c;
			r += 2;
		} else if (*r == '+' && plus_is_space) {
			*w++ = ' ';
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
	return true;
}
