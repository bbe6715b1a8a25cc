/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* bridge/jwt.c: strict compact-JWS decoding, key choice from a JWKS, and
 * every claim check (liboauth2/cjose check none of iss, aud, azp, nbf, nonce).
 * Also the sealing of secrets at rest (bridge/keyfile.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjose/cjose.h>
#include <sodium.h>

#include "jwt.h"
#include "keyfile.h"
#include "util.h"

static cjose_jwk_t *key;
static char *jwks_json;

static int setup(void **state)
{
	(void)state;
	if (idb_crypto_init() != 0)
		return -1;
	cjose_err cerr;
	key = cjose_jwk_create_RSA_random(2048, NULL, 0, &cerr);
	if (!key)
		return -1;
	char *pub = cjose_jwk_to_json(key, false, &cerr);
	json_t *k = json_loads(pub, 0, NULL);
	free(pub);
	json_object_set_new(k, "kid", json_string("k1"));
	json_object_set_new(k, "use", json_string("sig"));
	json_t *enc = json_deep_copy(k);
	json_object_set_new(enc, "kid", json_string("k-enc"));
	json_object_set_new(enc, "use", json_string("enc"));
	json_t *ps = json_deep_copy(k);
	json_object_set_new(ps, "kid", json_string("k-ps"));
	json_object_set_new(ps, "alg", json_string("PS256"));
	json_t *doc = json_pack("{s[ooo]}", "keys", k, enc, ps);
	jwks_json = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	return jwks_json ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	cjose_jwk_release(key);
	free(jwks_json);
	return 0;
}

static char *make_token(const char *alg, const char *kid, const char *payload)
{
	cjose_err cerr;
	cjose_header_t *h = cjose_header_new(&cerr);
	cjose_header_set(h, CJOSE_HDR_ALG, alg, &cerr);
	if (kid)
		cjose_header_set(h, CJOSE_HDR_KID, kid, &cerr);
	cjose_jws_t *jws = cjose_jws_sign(key, h, (const uint8_t *)payload, strlen(payload), &cerr);
	const char *compact = NULL;
	char *out = NULL;
	if (jws && cjose_jws_export(jws, &compact, &cerr))
		out = strdup(compact);
	cjose_jws_release(jws);
	cjose_header_release(h);
	return out;
}

static char *claims_text(int64_t now, const char *extra)
{
	char *buf = malloc(1024);
	snprintf(buf, 1024,
		 "{\"iss\":\"https://op.example\",\"aud\":\"client\",\"sub\":\"u1\",\"exp\":%lld,\"iat\":%lld,"
		 "\"nonce\":\"n1\"%s%s}",
		 (long long)now + 300, (long long)now, extra ? "," : "", extra ? extra : "");
	return buf;
}

static idb_jwt_expect expect_at(int64_t now)
{
	idb_jwt_expect x = {.issuer = "https://op.example", .audience = "client", .check_azp = true, .nonce = "n1",
			    .require_exp = true, .require_sub = true, .now = now, .skew_s = 60, .max_age_s = 3600};
	return x;
}

static int verify_text(const char *alg, const char *kid, const char *payload)
{
	idb_jwks *k = NULL;
	idb_jwt jwt;
	idb_err err;
	assert_int_equal(idb_jwks_parse(&k, jwks_json, strlen(jwks_json), &err), 0);
	char *tok = make_token(alg, kid, payload);
	assert_non_null(tok);
	int rc = idb_jwt_decode(&jwt, tok, 16384, &err);
	if (rc == 0)
		rc = idb_jwt_verify(&jwt, k, IDB_JWT_ALGS_DEFAULT, &err);
	idb_jwt_clear(&jwt);
	idb_jwks_release(k);
	free(tok);
	return rc;
}

static void test_jwt_valid_rs256_token_verifies_and_passes_claims(void **state)
{
	(void)state;
	int64_t now = idb_now_s();
	char *c = claims_text(now, NULL);
	assert_int_equal(verify_text("RS256", "k1", c), 0);
	idb_jwt jwt;
	idb_err err;
	char *tok = make_token("RS256", "k1", c);
	assert_int_equal(idb_jwt_decode(&jwt, tok, 16384, &err), 0);
	idb_jwt_expect x = expect_at(now);
	assert_int_equal(idb_jwt_check_claims(jwt.payload, &x, &err), 0);
	idb_jwt_clear(&jwt);
	free(tok);
	free(c);
}

static void test_jwt_alg_allow_list_never_has_none_or_hmac(void **state)
{
	(void)state;
	assert_int_equal(idb_jwt_alg_bit("none"), 0);
	assert_int_equal(idb_jwt_alg_bit("HS256"), 0);
	assert_int_equal(idb_jwt_alg_bit(NULL), 0);
	assert_int_not_equal(idb_jwt_alg_bit("RS256"), 0);
	char *c = claims_text(idb_now_s(), NULL);
	/* RS512 is a valid signature but not in the default allow-list. */
	assert_int_equal(verify_text("RS512", "k1", c), IDB_EAUTH);
	free(c);
}

static void test_jwt_unknown_kid_asks_for_a_refresh(void **state)
{
	(void)state;
	char *c = claims_text(idb_now_s(), NULL);
	assert_int_equal(verify_text("RS256", "other", c), IDB_ENOTFOUND);
	free(c);
}

static void test_jwt_enc_key_and_key_bound_to_other_alg_are_refused(void **state)
{
	(void)state;
	char *c = claims_text(idb_now_s(), NULL);
	assert_int_equal(verify_text("RS256", "k-enc", c), IDB_EAUTH);
	assert_int_equal(verify_text("RS256", "k-ps", c), IDB_EAUTH);
	assert_int_equal(verify_text("PS256", "k-ps", c), 0);
	free(c);
}

static void test_jwt_decode_refuses_malformed_tokens(void **state)
{
	(void)state;
	idb_jwt jwt;
	idb_err err;
	static const char *const bad[] = {
		"", "a.b", "a.b.c.d", "eyJhbGciOiJSUzI1NiJ9..c", "eyJhbGciOiJSUzI1NiJ9.e30.", "eyJhbGciOiJSUzI1NiJ9.e30=.c2ln",
		/* {"alg":"RS256","alg":"none"} */
		"eyJhbGciOiJSUzI1NiIsImFsZyI6Im5vbmUifQ.e30.c2ln",
		/* {"alg":"RS256","crit":["x"],"x":1} */
		"eyJhbGciOiJSUzI1NiIsImNyaXQiOlsieCJdLCJ4IjoxfQ.e30.c2ln",
		/* {"alg":"RS256","jku":"http://x"} */
		"eyJhbGciOiJSUzI1NiIsImprdSI6Imh0dHA6Ly94In0.e30.c2ln",
		/* payload {"sub":"a","sub":"b"} */
		"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIiwic3ViIjoiYiJ9.c2ln",
		/* payload [1] */
		"eyJhbGciOiJSUzI1NiJ9.WzFd.c2ln",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = idb_jwt_decode(&jwt, bad[i], 16384, &err);
		if (rc == 0)
			fail_msg("accepted %s", bad[i]);
		assert_null(jwt.payload);
	}
	/* A signature spelled with non-zero trailing bits is refused even when it
	 * decodes to the right bytes. */
	char *good = make_token("RS256", "k1", "{}");
	size_t gl = strlen(good);
	static const char *const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	int last = (int)(strchr(b64, good[gl - 1]) - b64);
	good[gl - 1] = b64[last | 1]; /* 2048-bit signature: the last character holds 2 data bits */
	assert_int_equal(idb_jwt_decode(&jwt, good, 16384, &err), IDB_EINVAL);
	free(good);
	char big[2000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(idb_jwt_decode(&jwt, big, 1024, &err), IDB_ETOOBIG);
}

static void test_jwt_claim_checks(void **state)
{
	(void)state;
	int64_t now = idb_now_s();
	char buf[128];
	struct {
		const char *claims; /* replaces members of the base set */
		int ok;
	} cases[] = {
		{"{}", 1},
		{"{\"iss\":\"https://evil.example\"}", 0},
		{"{\"aud\":\"other\"}", 0},
		{"{\"aud\":[\"client\",\"other\"]}", 0},
		{"{\"aud\":[\"client\",\"other\"],\"azp\":\"client\"}", 1},
		{"{\"aud\":[\"client\",\"other\"],\"azp\":\"other\"}", 0},
		{"{\"azp\":\"other\"}", 0},
		{"{\"exp\":\"9999999999\"}", 0},
		{"{\"exp\":1.5e9}", 0},
		{"{\"exp\":-1}", 0},
		{"{\"exp\":1000}", 0},
		{"{\"iat\":\"1\"}", 0},
		{"{\"nbf\":99999999999}", 0},
		{"{\"nonce\":\"n2\"}", 0},
		{"{\"sub\":\"\"}", 0},
		{"{\"sub\":7}", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *base = claims_text(now, NULL);
		json_t *c = json_loads(base, 0, NULL);
		json_t *patch = json_loads(cases[i].claims, 0, NULL);
		assert_non_null(patch);
		json_object_update(c, patch);
		idb_jwt_expect x = expect_at(now);
		idb_err err;
		int rc = idb_jwt_check_claims(c, &x, &err);
		snprintf(buf, sizeof(buf), "%s", cases[i].claims);
		if (cases[i].ok && rc != 0)
			fail_msg("refused %s: %s", buf, err.msg);
		if (!cases[i].ok && rc == 0)
			fail_msg("accepted %s", buf);
		json_decref(c);
		json_decref(patch);
		free(base);
	}
	/* Missing exp / iat. */
	json_t *c = json_pack("{ss ss ss sI}", "iss", "https://op.example", "aud", "client", "sub", "u", "iat",
			      (json_int_t)now);
	idb_jwt_expect x = expect_at(now);
	x.nonce = NULL;
	idb_err err;
	assert_int_equal(idb_jwt_check_claims(c, &x, &err), IDB_EAUTH);
	x.require_exp = false;
	assert_int_equal(idb_jwt_check_claims(c, &x, &err), 0);
	x.nonce_forbidden = true;
	json_object_set_new(c, "nonce", json_string("n"));
	assert_int_equal(idb_jwt_check_claims(c, &x, &err), IDB_EAUTH);
	json_decref(c);
}

static void test_secret_seal_round_trip_and_wrong_key(void **state)
{
	(void)state;
	unsigned char k1[IDB_SECRET_KEY_BYTES], k2[IDB_SECRET_KEY_BYTES];
	randombytes_buf(k1, sizeof(k1));
	randombytes_buf(k2, sizeof(k2));
	char *sealed = NULL, *open = NULL;
	idb_err err;
	assert_int_equal(idb_secret_seal(&sealed, k1, "client-secret", &err), 0);
	assert_null(strstr(sealed, "client-secret"));
	assert_int_equal(idb_secret_open(&open, k1, sealed, &err), 0);
	assert_string_equal(open, "client-secret");
	free(open);
	assert_int_equal(idb_secret_open(&open, k2, sealed, &err), IDB_EINVAL);
	assert_int_equal(idb_secret_open(&open, k1, "v1:AAAA", &err), IDB_EINVAL);
	free(sealed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jwt_valid_rs256_token_verifies_and_passes_claims),
		cmocka_unit_test(test_jwt_alg_allow_list_never_has_none_or_hmac),
		cmocka_unit_test(test_jwt_unknown_kid_asks_for_a_refresh),
		cmocka_unit_test(test_jwt_enc_key_and_key_bound_to_other_alg_are_refused),
		cmocka_unit_test(test_jwt_decode_refuses_malformed_tokens),
		cmocka_unit_test(test_jwt_claim_checks),
		cmocka_unit_test(test_secret_seal_round_trip_and_wrong_key),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
