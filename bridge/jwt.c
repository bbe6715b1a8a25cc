/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "jwt.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjose/cjose.h>
#include <sodium.h>

#include "util.h"

#define MAX_KEYS 100
#define MAX_NO_KID_TRIES 10
#define MIN_RSA_BITS 2048
#define MAX_NUMERIC_DATE 253402300799LL /* 9999-12-31T23:59:59Z */

static const struct {
	const char *name;
	unsigned bit;
	cjose_jwk_kty_t kty;
	int ec_bits; /* 0 for RSA */
} algs[] = {
	{"RS256", IDB_JWT_RS256, CJOSE_JWK_KTY_RSA, 0}, {"RS384", IDB_JWT_RS384, CJOSE_JWK_KTY_RSA, 0},
	{"RS512", IDB_JWT_RS512, CJOSE_JWK_KTY_RSA, 0}, {"PS256", IDB_JWT_PS256, CJOSE_JWK_KTY_RSA, 0},
	{"PS384", IDB_JWT_PS384, CJOSE_JWK_KTY_RSA, 0}, {"PS512", IDB_JWT_PS512, CJOSE_JWK_KTY_RSA, 0},
	{"ES256", IDB_JWT_ES256, CJOSE_JWK_KTY_EC, 256}, {"ES384", IDB_JWT_ES384, CJOSE_JWK_KTY_EC, 384},
	{"ES512", IDB_JWT_ES512, CJOSE_JWK_KTY_EC, 521},
};
#define NALGS (sizeof(algs) / sizeof(algs[0]))

unsigned idb_jwt_alg_bit(const char *name)
{
	for (size_t i = 0; name && i < NALGS; i++)
		if (!strcmp(algs[i].name, name))
			return algs[i].bit;
	return 0;
}

static int alg_index(const char *name)
{
	for (size_t i = 0; name && i < NALGS; i++)
		if (!strcmp(algs[i].name, name))
			return (int)i;
	return -1;
}

/* --- key sets --- */

typedef struct jwk_entry {
	char *kid;     /* NULL when absent */
	char *alg;     /* NULL when absent */
	bool usable;   /* for signature verification */
	cjose_jwk_t *key;
	cjose_jwk_kty_t kty;
	int bits;      /* RSA modulus or EC field size */
} jwk_entry;

struct idb_jwks {
	atomic_int refs;
	jwk_entry *keys;
	size_t n;
};

static void jwks_free(idb_jwks *k)
{
	for (size_t i = 0; i < k->n; i++) {
		free(k->keys[i].kid);
		free(k->keys[i].alg);
		if (k->keys[i].key)
			cjose_jwk_release(k->keys[i].key);
	}
	free(k->keys);
	free(k);
}

idb_jwks *idb_jwks_retain(idb_jwks *k)
{
	if (k)
		atomic_fetch_add(&k->refs, 1);
	return k;
}

void idb_jwks_release(idb_jwks *k)
{
	if (k && atomic_fetch_sub(&k->refs, 1) == 1)
		jwks_free(k);
}

size_t idb_jwks_count(const idb_jwks *k)
{
	return k ? k->n : 0;
}

static bool key_ops_allow_verify(json_t *ops)
{
	if (!ops)
		return true;
	size_t i;
	json_t *v;
	json_array_foreach(ops, i, v) if (json_is_string(v) && !strcmp(json_string_value(v), "verify")) return true;
	return false;
}

int idb_jwks_parse(idb_jwks **out, const char *json, size_t len, idb_err *err)
{
	*out = NULL;
	json_error_t jerr;
	json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *keys = json_object_get(doc, "keys");
	if (!json_is_object(doc) || !json_is_array(keys)) {
		json_decref(doc);
		return idb_err_set(err, IDB_EINVAL, "jwks", "the JWKS is not a JSON object with a \"keys\" array");
	}
	if (json_array_size(keys) > MAX_KEYS) {
		json_decref(doc);
		return idb_err_set(err, IDB_EINVAL, "jwks", "the JWKS holds more than %d keys", MAX_KEYS);
	}
	idb_jwks *k = calloc(1, sizeof(*k));
	if (k)
		k->keys = calloc(json_array_size(keys) + 1, sizeof(jwk_entry));
	if (!k || !k->keys) {
		free(k);
		json_decref(doc);
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	}
	atomic_init(&k->refs, 1);
	size_t i;
	json_t *jk;
	json_array_foreach(keys, i, jk)
	{
		if (!json_is_object(jk))
			continue;
		const char *kty = json_string_value(json_object_get(jk, "kty"));
		const char *use = json_string_value(json_object_get(jk, "use"));
		const char *kid = json_string_value(json_object_get(jk, "kid"));
		const char *alg = json_string_value(json_object_get(jk, "alg"));
		jwk_entry *e = &k->keys[k->n];
		memset(e, 0, sizeof(*e));
		e->kid = kid ? strdup(kid) : NULL;
		e->alg = alg ? strdup(alg) : NULL;
		/* Symmetric keys never verify provider signatures; nothing but the
		 * public parts of RSA/EC keys is imported. */
		if (kty && (!strcmp(kty, "RSA") || !strcmp(kty, "EC"))) {
			json_t *pub = json_object();
			static const char *const rsa_members[] = {"kty", "n", "e", NULL};
			static const char *const ec_members[] = {"kty", "crv", "x", "y", NULL};
			const char *const *m = !strcmp(kty, "RSA") ? rsa_members : ec_members;
			for (; *m; m++)
				if (json_object_get(jk, *m))
					json_object_set(pub, *m, json_object_get(jk, *m));
			char *txt = json_dumps(pub, JSON_COMPACT);
			json_decref(pub);
			cjose_err cerr;
			e->key = txt ? cjose_jwk_import(txt, strlen(txt), &cerr) : NULL;
			free(txt);
		}
		if (e->key) {
			cjose_err cerr;
			e->kty = cjose_jwk_get_kty(e->key, &cerr);
			e->bits = (int)cjose_jwk_get_keysize(e->key, &cerr);
			e->usable = (!use || !strcmp(use, "sig")) && key_ops_allow_verify(json_object_get(jk, "key_ops")) &&
				    (e->kty != CJOSE_JWK_KTY_RSA || e->bits >= MIN_RSA_BITS);
		}
		if (!e->key && !e->kid) {
			free(e->alg);
			continue; /* neither usable nor nameable */
		}
		k->n++;
	}
	json_decref(doc);
	*out = k;
	return 0;
}

/* --- decoding --- */

void idb_b64url_encode(char *out, size_t outsz, const unsigned char *in, size_t len)
{
	sodium_bin2base64(out, outsz, in, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static bool b64url_chars(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
	}
	return true;
}

static json_t *decode_part(const char *s, size_t n, const char *what, idb_err *err)
{
	if (n == 0 || !b64url_chars(s, n)) {
		idb_err_set(err, IDB_EINVAL, NULL, "the token's %s is not base64url", what);
		return NULL;
	}
	size_t cap = n * 3 / 4 + 3, len = 0;
	unsigned char *buf = malloc(cap);
	if (!buf) {
		idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		return NULL;
	}
	if (sodium_base642bin(buf, cap, s, n, NULL, &len, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
		free(buf);
		idb_err_set(err, IDB_EINVAL, NULL, "the token's %s is not base64url", what);
		return NULL;
	}
	json_error_t jerr;
	json_t *o = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
	free(buf);
	if (!json_is_object(o)) {
		json_decref(o);
		idb_err_set(err, IDB_EINVAL, NULL, "the token's %s is not a JSON object without duplicate members (%s)",
			    what, jerr.text);
		return NULL;
	}
	return o;
}

void idb_jwt_clear(idb_jwt *jwt)
{
	if (!jwt)
		return;
	free(jwt->compact);
	json_decref(jwt->header);
	json_decref(jwt->payload);
	memset(jwt, 0, sizeof(*jwt));
}

int idb_jwt_decode(idb_jwt *out, const char *token, size_t max_bytes, idb_err *err)
{
	memset(out, 0, sizeof(*out));
	size_t n = strnlen(token, max_bytes + 1);
	if (n > max_bytes)
		return idb_err_set(err, IDB_ETOOBIG, NULL, "the token is larger than %zu bytes", max_bytes);
	const char *d1 = memchr(token, '.', n);
	const char *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - token)) : NULL;
	if (!d1 || !d2 || memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - token)))
		return idb_err_set(err, IDB_EINVAL, NULL, "the token is not a compact JWS (three dot-separated parts)");
	size_t sig_len = n - (size_t)(d2 + 1 - token);
	if (sig_len == 0 || sig_len > 2048 || !b64url_chars(d2 + 1, sig_len))
		return idb_err_set(err, IDB_EINVAL, NULL, "the token has no signature");
	/* Canonical base64url only (libsodium refuses non-zero trailing bits,
	 * cjose would ignore them): one token, one spelling. */
	unsigned char sig[1536];
	size_t sig_bytes = 0;
	if (sodium_base642bin(sig, sizeof(sig), d2 + 1, sig_len, NULL, &sig_bytes, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		return idb_err_set(err, IDB_EINVAL, NULL, "the token's signature is not canonical base64url");
	out->header = decode_part(token, (size_t)(d1 - token), "header", err);
	if (!out->header)
		goto fail;
	out->payload = decode_part(d1 + 1, (size_t)(d2 - d1 - 1), "payload", err);
	if (!out->payload)
		goto fail;
	out->alg = json_string_value(json_object_get(out->header, "alg"));
	if (!out->alg) {
		idb_err_set(err, IDB_EINVAL, NULL, "the token's header has no alg");
		goto fail;
	}
	json_t *kid = json_object_get(out->header, "kid");
	if (kid && !json_is_string(kid)) {
		idb_err_set(err, IDB_EINVAL, NULL, "the token's kid is not a string");
		goto fail;
	}
	out->kid = json_string_value(kid);
	if (json_object_get(out->header, "crit")) {
		idb_err_set(err, IDB_EINVAL, NULL, "the token requires a JWS extension (crit) this service does not know");
		goto fail;
	}
	static const char *const key_refs[] = {"jku", "x5u", "jwk"};
	for (size_t i = 0; i < 3; i++)
		if (json_object_get(out->header, key_refs[i])) {
			idb_err_set(err, IDB_EINVAL, NULL,
				    "the token names its own key (%s header); keys come only from the provider's JWKS",
				    key_refs[i]);
			goto fail;
		}
	if (!(out->compact = strndup(token, n))) {
		idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		goto fail;
	}
	return 0;
fail:
	idb_jwt_clear(out);
	return err ? err->code : IDB_EINVAL;
}

/* --- signature --- */

static bool key_fits(const jwk_entry *e, int ai)
{
	if (!e->usable || e->kty != algs[ai].kty)
		return false;
	if (e->alg && strcmp(e->alg, algs[ai].name) != 0)
		return false;
	if (algs[ai].ec_bits && e->bits != algs[ai].ec_bits)
		return false;
	return true;
}

int idb_jwt_verify(const idb_jwt *jwt, const idb_jwks *jwks, unsigned allowed_algs, idb_err *err)
{
	int ai = alg_index(jwt->alg);
	if (ai < 0 || !(allowed_algs & algs[ai].bit))
		return idb_err_set(err, IDB_EAUTH, NULL, "the token's signature algorithm %.20s is not allowed", jwt->alg);
	const jwk_entry *cands[MAX_NO_KID_TRIES];
	size_t nc = 0;
	bool kid_known = false;
	for (size_t i = 0; jwks && i < jwks->n && nc < MAX_NO_KID_TRIES; i++) {
		const jwk_entry *e = &jwks->keys[i];
		if (jwt->kid) {
			if (!e->kid || strcmp(e->kid, jwt->kid) != 0)
				continue;
			kid_known = true;
		}
		if (key_fits(e, ai))
			cands[nc++] = e;
	}
	if (jwt->kid && !kid_known)
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "the token was signed with a key (kid) the provider does not publish");
	if (nc == 0) {
		if (jwt->kid)
			return idb_err_set(err, IDB_EAUTH, NULL,
					   "the provider's key %.64s may not verify %s signatures (use, alg or key type)",
					   jwt->kid, jwt->alg);
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "the provider publishes no key for %s signatures", jwt->alg);
	}
	cjose_err cerr;
	cjose_jws_t *jws = cjose_jws_import(jwt->compact, strlen(jwt->compact), &cerr);
	if (!jws)
		return idb_err_set(err, IDB_EAUTH, NULL, "the token cannot be read as a JWS");
	bool ok = false;
	for (size_t i = 0; i < nc && !ok; i++)
		ok = cjose_jws_verify(jws, cands[i]->key, &cerr);
	cjose_jws_release(jws);
	return ok ? 0 : idb_err_set(err, IDB_EAUTH, NULL, "the token's signature is not valid");
}

/* --- claims --- */

static int numeric_date(const json_t *claims, const char *name, bool required, int64_t *out, idb_err *err)
{
	json_t *v = json_object_get(claims, name);
	*out = 0;
	if (!v)
		return required ? idb_err_set(err, IDB_EAUTH, NULL, "the token has no %s", name) : 1;
	if (!json_is_integer(v))
		return idb_err_set(err, IDB_EAUTH, NULL, "the token's %s is not an integer", name);
	json_int_t t = json_integer_value(v);
	if (t < 0 || t > MAX_NUMERIC_DATE)
		return idb_err_set(err, IDB_EAUTH, NULL, "the token's %s is out of range", name);
	*out = (int64_t)t;
	return 0;
}

int idb_jwt_check_claims(const json_t *claims, const idb_jwt_expect *x, idb_err *err)
{
	const char *iss = json_string_value(json_object_get(claims, "iss"));
	if (!iss || strcmp(iss, x->issuer) != 0)
		return idb_err_set(err, IDB_EAUTH, NULL, "the token was issued by another issuer (iss)");
	json_t *aud = json_object_get(claims, "aud");
	bool aud_ok = false;
	size_t naud = 0;
	if (json_is_string(aud)) {
		naud = 1;
		aud_ok = !strcmp(json_string_value(aud), x->audience);
	} else if (json_is_array(aud)) {
		size_t i;
		json_t *a;
		json_array_foreach(aud, i, a)
		{
			if (!json_is_string(a))
				return idb_err_set(err, IDB_EAUTH, NULL, "the token's aud holds a non-string");
			aud_ok |= !strcmp(json_string_value(a), x->audience);
		}
		naud = json_array_size(aud);
	}
	if (!aud_ok)
		return idb_err_set(err, IDB_EAUTH, NULL, "the token is meant for another audience (aud)");
	json_t *azp = json_object_get(claims, "azp");
	if (x->check_azp) {
		if (azp && (!json_is_string(azp) || strcmp(json_string_value(azp), x->audience) != 0))
			return idb_err_set(err, IDB_EAUTH, NULL, "the token was issued to another client (azp)");
		if (naud > 1 && !azp)
			return idb_err_set(err, IDB_EAUTH, NULL, "the token has several audiences and no azp");
	}
	int64_t exp, nbf, iat;
	int rc = numeric_date(claims, "exp", x->require_exp, &exp, err);
	if (rc < 0)
		return rc;
	if (rc == 0 && x->now - x->skew_s >= exp)
		return idb_err_set(err, IDB_EAUTH, NULL, "the token has expired (exp)");
	if ((rc = numeric_date(claims, "nbf", false, &nbf, err)) < 0)
		return rc;
	if (rc == 0 && nbf > x->now + x->skew_s)
		return idb_err_set(err, IDB_EAUTH, NULL, "the token is not valid yet (nbf)");
	if ((rc = numeric_date(claims, "iat", true, &iat, err)) < 0)
		return rc;
	if (iat > x->now + x->skew_s)
		return idb_err_set(err, IDB_EAUTH, NULL, "the token was issued in the future (iat)");
	if (iat < x->now - x->max_age_s - x->skew_s)
		return idb_err_set(err, IDB_EAUTH, NULL, "the token was issued too long ago (iat)");
	json_t *nonce = json_object_get(claims, "nonce");
	if (x->nonce_forbidden && nonce)
		return idb_err_set(err, IDB_EAUTH, NULL, "the token carries a nonce, which this kind of token must not");
	if (x->nonce && (!json_is_string(nonce) || !idb_str_ct_equal(json_string_value(nonce), x->nonce)))
		return idb_err_set(err, IDB_EAUTH, NULL, "the token does not answer this sign-in (nonce)");
	json_t *sub = json_object_get(claims, "sub");
	if (sub && !json_is_string(sub))
		return idb_err_set(err, IDB_EAUTH, NULL, "the token's sub is not a string");
	if (x->require_sub && (!sub || json_string_length(sub) == 0 || json_string_length(sub) > 255 ||
			       strlen(json_string_value(sub)) != json_string_length(sub)))
		return idb_err_set(err, IDB_EAUTH, NULL, "the token's sub must be a string of 1 to 255 bytes");
	return 0;
}
