# SPDX-License-Identifier: AGPL-3.0-or-later
"""OpenID Connect (issue 4): code flow + PKCE against a real OpenID provider
(the oidc-provider npm package), ID token attacks through a fake provider we
control, mix-up between two providers, key rotation, bearer JWTs on
/auth/check and /api/v1, RP-initiated and back-channel logout across two
instances."""

import hashlib
import json
import re
import time
import urllib.parse

import pytest
import requests
from jwcrypto import jwk

import idbtest
import oidcop
from oidcop import b64u, callback, public_jwk, rsa_key, sign, start_flow, unsigned

OIDC_CFG = {"oidc": {"jwks_min_refresh_interval_s": 2, "clock_skew_s": 30}}
OP_SECRET = "op-secret-" + "x" * 32
FAKE_SECRET = "fake-secret-" + "y" * 32
BEARER_AUD = "api://idbridge"


@pytest.fixture(scope="module")
def daemon(_module_daemons):
    return _module_daemons(config=OIDC_CFG)


@pytest.fixture(scope="module")
def daemon2(_module_daemons, daemon):
    """A second instance on the same PostgreSQL and Redis."""
    return _module_daemons(config=OIDC_CFG)


@pytest.fixture(scope="module")
def op(tmp_path_factory, daemon, daemon2):
    def uris(slug):
        return {"redirect_uris": [f"{d.url}/sso/oidc/{slug}/callback" for d in (daemon, daemon2)],
                "post_logout_redirect_uris": [f"{d.url}/login" for d in (daemon, daemon2)]}

    clients = [
        dict(client_id="idbridge", client_secret=OP_SECRET, grant_types=["authorization_code"],
             response_types=["code"], token_endpoint_auth_method="client_secret_basic",
             backchannel_logout_uri=f"{daemon2.url}/sso/oidc/op/backchannel-logout",
             backchannel_logout_session_required=True, **uris("op")),
        dict(client_id="idbridge-ui", client_secret=OP_SECRET, grant_types=["authorization_code"],
             response_types=["code"], token_endpoint_auth_method="client_secret_post", **uris("op-ui")),
    ]
    accounts = {
        "alice": {"email": "alice@op.test", "email_verified": True, "name": "Alice Op", "groups": ["Engineering"]},
        "bob": {"email": "bob@op2.test", "email_verified": True, "name": "Bob Op", "groups": []},
        "carol": {"email": "carol@op.test", "email_verified": False, "name": "Carol Unverified"},
    }
    p = oidcop.RealOP(tmp_path_factory.mktemp("op"), clients, accounts).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def fake():
    f = oidcop.FakeOP("fake-client").start()
    # Keys that must never verify: one for encryption, one bound to PS256.
    f.enc_key = rsa_key("fake-enc")  # published below as use: enc
    f.ps_key = rsa_key("fake-ps", alg="PS256")
    f.ec_key = jwk.JWK.generate(kty="EC", crv="P-256", kid="fake-ec")
    f.jwks_keys += [public_jwk(f.enc_key, use="enc", alg="RSA-OAEP"), public_jwk(f.ps_key), public_jwk(f.ec_key)]
    yield f
    f.stop()


@pytest.fixture(scope="module")
def fake2():
    f = oidcop.FakeOP("fake2-client").start()
    yield f
    f.stop()


def api(daemon, acme, method, path, body=None):
    return daemon.request(method, "/api/v1" + path, api_key=acme.api_key, json=body)


def create_conn(daemon, acme, body):
    r = api(daemon, acme, "POST", "/connections", body)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def conns(daemon, acme, op, fake, fake2):
    jit = {"enabled": True, "sync_groups": True, "create_missing_groups": True}
    out = {}
    out["op"] = create_conn(daemon, acme, {
        "slug": "op", "name": "Real OP", "protocol": "oidc", "allowed_domains": ["op.test"], "jit": jit,
        "oidc": {"issuer": op.issuer, "client_id": "idbridge", "client_secret": OP_SECRET,
                 "scopes": ["openid", "email", "profile", "groups"]}})
    out["op-ui"] = create_conn(daemon, acme, {
        "slug": "op-ui", "name": "Real OP (userinfo, client_secret_post)", "protocol": "oidc",
        "allowed_domains": ["op2.test"], "jit": jit,
        "oidc": {"issuer": op.issuer, "client_id": "idbridge-ui", "client_secret": OP_SECRET,
                 "token_endpoint_auth": "client_secret_post", "userinfo": True,
                 "scopes": ["openid", "email", "profile", "groups"]}})
    out["fake"] = create_conn(daemon, acme, {
        "slug": "fake", "name": "Fake OP", "protocol": "oidc", "allowed_domains": ["fake.test"], "jit": jit,
        "oidc": {"issuer": fake.issuer, "client_id": "fake-client", "client_secret": FAKE_SECRET,
                 "token_endpoint_auth": "client_secret_post",
                 "allowed_algs": ["RS256", "ES256", "PS256"],
                 "accept_bearer": True, "bearer_audience": BEARER_AUD}})
    out["fake-ui"] = create_conn(daemon, acme, {
        "slug": "fake-ui", "name": "Fake OP with userinfo", "protocol": "oidc", "allowed_domains": ["fakeui.test"],
        "jit": jit, "oidc": {"issuer": fake.issuer, "client_id": "fake-client", "client_secret": FAKE_SECRET,
                             "userinfo": True}})
    out["fake2"] = create_conn(daemon, acme, {
        "slug": "fake2", "name": "Second fake OP", "protocol": "oidc", "allowed_domains": ["fake2.test"],
        "jit": jit, "oidc": {"issuer": fake2.issuer, "client_id": "fake2-client", "client_secret": FAKE_SECRET}})
    return out


def counts(db_url):
    return idbtest.psql(db_url, "SELECT (SELECT count(*) FROM users) AS users,"
                                " (SELECT count(*) FROM identities) AS identities,"
                                " (SELECT count(*) FROM sessions) AS sessions")[0]


def op_login(daemon, slug, account="alice", session=None, return_to="/welcome"):
    """The browser-less flow: idbridge login -> provider (interaction
    completed by op.mjs) -> callback URL. Returns (callback_url, session)."""
    s = session or requests.Session()
    r = daemon.get(f"/sso/oidc/{slug}/login", params={"return_to": return_to, "login_hint": account})
    assert r.status_code == 303, r.text
    return oidcop.follow_to(s, r.headers["Location"], f"{daemon.public_url}/sso/oidc/{slug}/callback"), s


def finish(daemon, cb_url):
    return requests.get(cb_url, allow_redirects=False, timeout=10, headers={"Accept": "application/json"})


def check(daemon, token=None, bearer=None):
    h = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return daemon.get("/auth/check", session_token=token, headers=h)


# --------------------------------------------------------------------------
# Connections


def test_connection_api_seals_client_secret_and_keeps_it_on_patch(daemon, acme, conns, db_url, op):
    c = conns["op"]
    assert "client_secret" not in c["oidc"] and "client_secret_sealed" not in c["oidc"]
    assert c["oidc"]["has_client_secret"] is True
    assert c["oidc"]["redirect_uri"] == f"{daemon.public_url}/sso/oidc/op/callback"
    assert c["oidc"]["backchannel_logout_uri"] == f"{daemon.public_url}/sso/oidc/op/backchannel-logout"
    raw = idbtest.psql_value(db_url, "SELECT settings::text FROM idp_connections WHERE slug = 'op'")
    assert OP_SECRET not in raw
    assert json.loads(raw)["oidc"]["client_secret_sealed"].startswith("v1:")
    r = api(daemon, acme, "PATCH", f"/connections/{c['id']}", {"name": "Real OP (renamed)",
                                                                "oidc": {"claims_name": "name"}})
    assert r.status_code == 200, r.text
    assert r.json()["oidc"]["has_client_secret"] is True
    raw2 = idbtest.psql_value(db_url, "SELECT settings::text FROM idp_connections WHERE slug = 'op'")
    assert json.loads(raw2)["oidc"]["client_secret_sealed"] == json.loads(raw)["oidc"]["client_secret_sealed"]
    assert OP_SECRET not in daemon.log_text()


@pytest.mark.parametrize("patch,field", [
    ({"oidc": {"allowed_algs": ["HS256"]}}, "oidc.allowed_algs"),
    ({"oidc": {"allowed_algs": ["none"]}}, "oidc.allowed_algs"),
    ({"oidc": {"accept_bearer": True, "bearer_audience": None}}, "oidc.bearer_audience"),
    ({"oidc": {"issuer": "https://other.example"}}, "oidc.issuer"),
    ({"oidc": {"scopes": ["email"]}}, "oidc.scopes"),
    ({"oidc": {"token_endpoint_auth": "private_key_jwt"}}, "oidc.token_endpoint_auth"),
    ({"jit": {"bearer_provisioning": "yes"}}, "jit.bearer_provisioning"),
])
def test_connection_api_refuses_bad_oidc_settings(daemon, acme, conns, patch, field):
    r = api(daemon, acme, "PATCH", f"/connections/{conns['op']['id']}", patch)
    body = idbtest.assert_problem(r, 400)
    assert field in [e["field"] for e in body["errors"]], body


# --------------------------------------------------------------------------
# The real provider


def test_real_op_login_provisions_user_session_and_auth_check(daemon, conns, db_url, op):
    cb, _ = op_login(daemon, "op", "alice")
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(cb).query))
    assert q.get("iss") == op.issuer  # RFC 9207 parameter sent by oidc-provider
    r = finish(daemon, cb)
    assert r.status_code == 303, r.text
    assert r.headers["Location"] == "/welcome"
    token = idbtest.session_cookie(r)["value"]
    c = check(daemon, token)
    assert c.status_code == 200, c.text
    assert c.headers["X-Auth-Email"] == "alice@op.test"
    assert c.headers["X-Auth-Name"] == "Alice Op"
    assert c.headers["X-Auth-Groups"] == "Engineering"
    ident = idbtest.psql(db_url, "SELECT i.issuer, i.subject FROM identities i JOIN users u ON u.id = i.user_id"
                                 " WHERE u.email = 'alice@op.test'")
    assert ident == [{"issuer": op.issuer, "subject": "alice"}]
    row = idbtest.psql(db_url, "SELECT auth_method, idp_subject, idp_sid FROM sessions WHERE user_id ="
                               " (SELECT id FROM users WHERE email = 'alice@op.test')")
    assert row and row[0]["auth_method"] == "oidc" and row[0]["idp_subject"] == "alice" and row[0]["idp_sid"]


def test_real_op_userinfo_and_client_secret_post(daemon, conns, op):
    cb, _ = op_login(daemon, "op-ui", "bob")
    r = finish(daemon, cb)
    assert r.status_code == 303, r.text
    c = check(daemon, idbtest.session_cookie(r)["value"])
    assert c.headers["X-Auth-Email"] == "bob@op2.test"


def test_unverified_email_never_links_to_existing_account(daemon, acme, conns, db_url):
    idbtest.create_admin(daemon, "acme", "carol@op.test", "carol-password-123")
    before = counts(db_url)
    cb, _ = op_login(daemon, "op", "carol")
    r = finish(daemon, cb)
    assert r.status_code == 403, r.text
    assert "verified" in r.json()["detail"]
    assert counts(db_url) == before


def test_reused_state_is_refused(daemon, conns, db_url):
    cb, _ = op_login(daemon, "op", "alice")
    assert finish(daemon, cb).status_code == 303
    before = counts(db_url)
    r = finish(daemon, cb)
    assert r.status_code == 400 and r.json()["type"].endswith("oidc-state-unknown"), r.text
    assert counts(db_url) == before


def test_reused_code_is_refused(daemon, conns, db_url, op):
    cb, _ = op_login(daemon, "op", "alice")
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(cb).query))["code"]
    assert finish(daemon, cb).status_code == 303
    before = counts(db_url)
    state2, _, _ = start_flow(daemon, "op")
    r = callback(daemon, "op", state2, code=code, iss=op.issuer)
    assert r.status_code == 400 and "invalid_grant" in r.json()["detail"], r.text
    assert counts(db_url) == before


def test_provider_error_is_shown_in_words_and_escaped(daemon, conns):
    state, _, _ = start_flow(daemon, "op")
    r = daemon.get("/sso/oidc/op/callback", params={"state": state, "error": "access_denied",
                                                    "error_description": "<script>alert(1)</script> no licence"},
                   headers={"Accept": "text/html"})
    assert r.status_code == 403
    assert "access denied" in r.text and "no licence" in r.text
    assert "<script>" not in r.text and "&lt;script&gt;" in r.text
    # The state went with the error answer.
    assert callback(daemon, "op", state).status_code == 400


def test_login_refuses_open_redirect(daemon, conns):
    r = daemon.get("/sso/oidc/op/login", params={"return_to": "https://evil.example/"})
    assert r.status_code == 400


def test_login_redirect_has_pkce_state_nonce(daemon, conns, op):
    state, nonce, q = start_flow(daemon, "op")
    assert q["response_type"] == "code" and q["code_challenge_method"] == "S256"
    assert q["client_id"] == "idbridge" and q["redirect_uri"] == f"{daemon.public_url}/sso/oidc/op/callback"
    assert q["scope"] == "openid email profile groups"
    assert len(state) >= 43 and len(nonce) >= 43 and len(q["code_challenge"]) == 43


def test_login_fails_closed_without_redis(make_daemon, make_private_redis, conns):
    r = make_private_redis()
    d = make_daemon(config=OIDC_CFG, redis_url=r.url)
    r.stop()
    resp = d.get("/sso/oidc/op/login")
    assert resp.status_code == 503, resp.text


def test_rp_initiated_and_backchannel_logout_end_sessions_on_other_instance(daemon, daemon2, conns, db_url, op):
    cb1, browser = op_login(daemon, "op", "alice")
    s1 = idbtest.session_cookie(finish(daemon, cb1))["value"]
    cb2, _ = op_login(daemon, "op", "alice", session=browser)  # the provider remembers the browser
    s2 = idbtest.session_cookie(finish(daemon, cb2))["value"]
    assert check(daemon, s1).status_code == 200 and check(daemon2, s2).status_code == 200
    r = daemon.post("/logout", session_token=s1, json={})
    assert r.status_code == 200, r.text
    redirect = r.json()["redirect"]
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(redirect).query))
    assert redirect.startswith(op.issuer + "/session/end")
    assert q["client_id"] == "idbridge" and q["id_token_hint"].startswith("eyJ")
    assert q["post_logout_redirect_uri"] == f"{daemon.public_url}/login"
    assert check(daemon, s1).status_code == 401
    # The browser confirms at the provider, which tells instance 2 over the
    # back channel; instance 1 then refuses the other session too.
    page = browser.get(redirect, timeout=10)
    assert page.status_code == 200, page.text[:300]
    xsrf = re.search(r'name="xsrf" value="([^"]+)"', page.text).group(1)
    done = browser.post(op.issuer + "/session/end/confirm", data={"xsrf": xsrf, "logout": "yes"},
                        allow_redirects=False, timeout=10)
    assert done.status_code in (302, 303), done.text[:300]
    deadline = time.monotonic() + 10
    while check(daemon, s2).status_code != 401 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert check(daemon, s2).status_code == 401
    assert "back-channel logout on op ended" in daemon2.log_text()


def test_key_rotation_new_kid_accepted_after_one_refresh(daemon, conns, op):
    cb, _ = op_login(daemon, "op", "alice")
    assert finish(daemon, cb).status_code == 303
    op.keys = [rsa_key("op-key-2")]
    op.restart()
    time.sleep(2.2)  # past oidc.jwks_min_refresh_interval_s
    cb, _ = op_login(daemon, "op", "alice")
    r = finish(daemon, cb)
    assert r.status_code == 303, r.text
    assert daemon.log_text().count("unknown kid") >= 1


# --------------------------------------------------------------------------
# Attacks through the fake provider


def test_fake_op_valid_token_is_accepted_with_client_secret_post(daemon, conns, fake, db_url):
    state, nonce, q = start_flow(daemon, "fake")
    fake.id_token = fake.sign(fake.claims(nonce, sub="eve"))
    r = callback(daemon, "fake", state)
    assert r.status_code == 303, r.text
    req = fake.token_requests[-1]
    assert req["authorization"] is None
    assert req["form"]["client_id"] == "fake-client" and req["form"]["client_secret"] == FAKE_SECRET
    digest = b64u(hashlib.sha256(req["form"]["code_verifier"].encode()).digest())
    assert digest == q["code_challenge"]
    assert req["form"]["redirect_uri"] == f"{daemon.public_url}/sso/oidc/fake/callback"


def test_fake_op_es256_token_is_accepted(daemon, conns, fake):
    state, nonce, _ = start_flow(daemon, "fake")
    fake.id_token = sign(fake.claims(nonce, sub="eve"), fake.ec_key, alg="ES256")
    assert callback(daemon, "fake", state).status_code == 303


def _now():
    return int(time.time())


def _tamper(fake, fake2, nonce):
    h, p, s = fake.sign(fake.claims(nonce)).split(".")
    return ".".join([h, b64u(json.dumps(fake.claims(nonce, email="admin@fake.test"))), s])


def _hs256_with_public_key(fake, fake2, nonce):
    secret = fake.key.export_to_pem()  # the public key PEM as HMAC secret
    k = jwk.JWK(kty="oct", k=b64u(secret))
    return sign(fake.claims(nonce), k, alg="HS256", kid="fake-k1")


def _raw_payload(fake, text):
    return fake.sign(text)


ATTACKS = {
    "alg_none": lambda f, f2, n: unsigned(f.claims(n), {"kid": "fake-k1"}),
    "alg_none_with_signature": lambda f, f2, n: unsigned(f.claims(n), {"kid": "fake-k1"}, "AAAA"),
    "hs256_with_public_key": _hs256_with_public_key,
    "tampered_payload": _tamper,
    "wrong_iss": lambda f, f2, n: f.sign(f.claims(n, iss="http://evil.example")),
    "wrong_aud": lambda f, f2, n: f.sign(f.claims(n, aud="other-client")),
    "expired": lambda f, f2, n: f.sign(f.claims(n, exp=_now() - 1000, iat=_now() - 1300)),
    "nonce_mismatch": lambda f, f2, n: f.sign(f.claims("not-the-nonce")),
    "nonce_missing": lambda f, f2, n: f.sign(f.claims(None)),
    "from_second_provider": lambda f, f2, n: f2.sign(f2.claims(n, aud="fake-client")),
    "second_provider_key_claiming_first_issuer": lambda f, f2, n: f2.sign(f.claims(n)),
    "too_large": lambda f, f2, n: f.sign(f.claims(n, pad="x" * 20000)),
    "exp_string": lambda f, f2, n: f.sign(f.claims(n, exp=str(_now() + 300))),
    "nbf_string": lambda f, f2, n: f.sign(f.claims(n, nbf=str(_now()))),
    "iat_string": lambda f, f2, n: f.sign(f.claims(n, iat=str(_now()))),
    "exp_fraction": lambda f, f2, n: f.sign(f.claims(n, exp=_now() + 300.5)),
    "exp_absurd": lambda f, f2, n: _raw_payload(f, json.dumps(f.claims(n, exp=0)).replace(
        '"exp": 0', '"exp": 100000000000000000000')),
    "exp_missing": lambda f, f2, n: f.sign(f.claims(n, exp=None)),
    "iat_missing": lambda f, f2, n: f.sign(f.claims(n, iat=None)),
    "iat_future": lambda f, f2, n: f.sign(f.claims(n, iat=_now() + 3600)),
    "iat_too_old": lambda f, f2, n: f.sign(f.claims(n, iat=_now() - 200000)),
    "nbf_future": lambda f, f2, n: f.sign(f.claims(n, nbf=_now() + 3600)),
    "several_audiences_without_azp": lambda f, f2, n: f.sign(f.claims(n, aud=["fake-client", "other"])),
    "several_audiences_wrong_azp": lambda f, f2, n: f.sign(f.claims(n, aud=["fake-client", "other"], azp="other")),
    "azp_other_client": lambda f, f2, n: f.sign(f.claims(n, azp="other")),
    "unknown_crit": lambda f, f2, n: f.sign(f.claims(n), header={"crit": ["urn:x-unknown"], "urn:x-unknown": 1}),
    "key_marked_use_enc": lambda f, f2, n: sign(f.claims(n), f.enc_key, alg="RS256"),
    "key_bound_to_other_alg": lambda f, f2, n: sign(f.claims(n), f.ps_key, alg="RS256"),
    "jku_header": lambda f, f2, n: sign(f.claims(n), rsa_key("rogue-jku"),
                                        header={"jku": f.issuer + "/trap/jku"}),
    "x5u_header": lambda f, f2, n: sign(f.claims(n), rsa_key("rogue-x5u"),
                                        header={"x5u": f.issuer + "/trap/x5u"}),
    "jwk_header": lambda f, f2, n: (lambda k: sign(f.claims(n), k, header={"jwk": public_jwk(k)}))(rsa_key("rogue-jwk")),
    "jwk_header_with_known_kid": lambda f, f2, n: (lambda k: sign(
        f.claims(n), k, kid="fake-k1", header={"jwk": public_jwk(k, kid="fake-k1")}))(rsa_key("x")),
    "duplicated_sub": lambda f, f2, n: _raw_payload(
        f, json.dumps(f.claims(n, sub="eve"))[:-1] + ', "sub": "admin"}'),
    "sub_missing": lambda f, f2, n: f.sign(f.claims(n, sub=None)),
    "sub_too_long": lambda f, f2, n: f.sign(f.claims(n, sub="s" * 300)),
    "sub_number": lambda f, f2, n: f.sign(f.claims(n, sub=12)),
    "four_parts": lambda f, f2, n: f.sign(f.claims(n)) + ".AAAA",
    "payload_not_object": lambda f, f2, n: _raw_payload(f, "[1,2,3]"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_forged_id_token_is_refused_and_nothing_written(daemon, conns, fake, fake2, db_url, attack):
    before = counts(db_url)
    traps = fake.trap_fetches
    state, nonce, _ = start_flow(daemon, "fake")
    fake.id_token = ATTACKS[attack](fake, fake2, nonce)
    r = callback(daemon, "fake", state)
    assert r.status_code == 400, f"{attack}: {r.status_code} {r.text[:300]}"
    assert r.json()["type"].endswith("oidc-id-token-invalid"), r.text
    assert counts(db_url) == before
    assert fake.trap_fetches == traps  # jku / x5u never fetched


def test_unknown_kid_refreshes_the_jwks_at_most_once_per_interval(daemon, conns, fake, db_url):
    rogue = rsa_key("rogue")
    time.sleep(2.2)  # the last fetch is older than the minimum interval
    before_fetches, before = fake.jwks_fetches, counts(db_url)
    for i in range(5):
        state, nonce, _ = start_flow(daemon, "fake")
        fake.id_token = sign(fake.claims(nonce), rogue, kid=f"rotated-away-{i}")
        assert callback(daemon, "fake", state).status_code == 400
    assert fake.jwks_fetches == before_fetches + 1
    # Bearer tokens with unknown kids do not get past the limit either.
    for i in range(5):
        t = sign(fake.claims(None, aud=BEARER_AUD), rogue, kid=f"bearer-unknown-{i}")
        assert check(daemon, bearer=t).status_code == 401
    assert fake.jwks_fetches == before_fetches + 1
    assert counts(db_url) == before


def test_userinfo_with_another_sub_is_refused(daemon, conns, fake, db_url):
    before = counts(db_url)
    state, nonce, _ = start_flow(daemon, "fake-ui")
    fake.id_token = fake.sign(fake.claims(nonce, sub="uma", email="uma@fakeui.test"))
    fake.userinfo = {"sub": "someone-else", "email": "admin@fakeui.test"}
    r = callback(daemon, "fake-ui", state)
    assert r.status_code == 400 and r.json()["type"].endswith("userinfo-subject-mismatch"), r.text
    assert counts(db_url) == before
    fake.userinfo = {"sub": "uma", "groups": ["From Userinfo"]}
    state, nonce, _ = start_flow(daemon, "fake-ui")
    fake.id_token = fake.sign(fake.claims(nonce, sub="uma", email="uma@fakeui.test"))
    r = callback(daemon, "fake-ui", state)
    assert r.status_code == 303, r.text
    assert check(daemon, idbtest.session_cookie(r)["value"]).headers["X-Auth-Groups"] == "From Userinfo"
    fake.userinfo = None


def test_mixup_state_of_one_provider_never_reaches_another(daemon, conns, fake, fake2, db_url):
    before = counts(db_url)
    state_a, nonce_a, _ = start_flow(daemon, "fake")
    fake.id_token = fake.sign(fake.claims(nonce_a))
    seen_a, seen_b = len(fake.token_requests), len(fake2.token_requests)
    r = callback(daemon, "fake2", state_a)
    assert r.status_code == 400 and r.json()["type"].endswith("oidc-connection-mismatch"), r.text
    assert len(fake2.token_requests) == seen_b and len(fake.token_requests) == seen_a
    # The state was consumed by the refused attempt.
    assert callback(daemon, "fake", state_a).status_code == 400
    # RFC 9207: an iss response parameter naming another provider is refused
    # before the code goes anywhere.
    state_a, nonce_a, _ = start_flow(daemon, "fake")
    r = callback(daemon, "fake", state_a, iss=fake2.issuer)
    assert r.status_code == 400 and r.json()["type"].endswith("oidc-issuer-mismatch"), r.text
    assert len(fake.token_requests) == seen_a
    assert counts(db_url) == before


def test_missing_iss_parameter_refused_when_provider_announces_it(daemon, acme, conns, fake, db_url):
    # Discovery is cached; a new connection version reloads it.
    fake.iss_parameter = True
    try:
        r = api(daemon, acme, "PATCH", f"/connections/{conns['fake']['id']}", {"name": "Fake OP (iss)"})
        assert r.status_code == 200
        state, nonce, _ = start_flow(daemon, "fake")
        fake.id_token = fake.sign(fake.claims(nonce))
        seen = len(fake.token_requests)
        r = callback(daemon, "fake", state)
        assert r.status_code == 400 and r.json()["type"].endswith("oidc-issuer-mismatch"), r.text
        assert len(fake.token_requests) == seen
        state, nonce, _ = start_flow(daemon, "fake")
        fake.id_token = fake.sign(fake.claims(nonce))
        assert callback(daemon, "fake", state, iss=fake.issuer).status_code == 303
    finally:
        fake.iss_parameter = False
        api(daemon, acme, "PATCH", f"/connections/{conns['fake']['id']}", {"name": "Fake OP"})


# --------------------------------------------------------------------------
# Bearer tokens


def bearer_claims(fake, sub="eve", **extra):
    c = fake.claims(None, sub=sub, aud=BEARER_AUD, azp="some-spa")
    c.update(extra)
    return c


def test_bearer_jwt_on_auth_check_and_api(daemon, conns, fake, db_url):
    state, nonce, _ = start_flow(daemon, "fake")  # links eve to the fake connection
    fake.id_token = fake.sign(fake.claims(nonce, sub="eve"))
    assert callback(daemon, "fake", state).status_code == 303
    t = fake.sign(bearer_claims(fake))
    r = check(daemon, bearer=t)
    assert r.status_code == 200, r.text
    assert r.headers["X-Auth-Email"] == "eve@fake.test" and r.headers["X-Auth-Org"] == "acme"
    for _ in range(20):  # cached: same answer
        assert check(daemon, bearer=t).status_code == 200
    me = daemon.get("/api/v1/me", headers={"Authorization": f"Bearer {t}"})
    assert me.status_code == 200 and me.json()["auth_method"] == "bearer"


@pytest.mark.parametrize("name,claims", [
    ("expired", {"exp": int(time.time()) - 1000, "iat": int(time.time()) - 1200}),
    ("wrong_aud", {"aud": "fake-client"}),
    ("wrong_iss", {"iss": "http://127.0.0.1:1"}),
    ("no_exp", {"exp": None}),
])
def test_bearer_jwt_refused(daemon, conns, fake, name, claims):
    c = bearer_claims(fake)
    for k, v in claims.items():
        if v is None:
            c.pop(k)
        else:
            c[k] = v
    r = check(daemon, bearer=fake.sign(c))
    assert r.status_code == 401, f"{name}: {r.status_code} {r.text}"


def test_bearer_jwt_forged_refused(daemon, conns, fake):
    assert check(daemon, bearer=unsigned(bearer_claims(fake), {"kid": "fake-k1"})).status_code == 401
    assert check(daemon, bearer=_hs256_with_public_key(fake, None, None)).status_code == 401
    assert check(daemon, bearer="eyJ" + "a" * 20000).status_code == 401


def test_bearer_jwt_for_unlinked_subject_is_refused_without_jit(daemon, conns, fake, db_url):
    before = counts(db_url)
    r = check(daemon, bearer=fake.sign(bearer_claims(fake, sub="nobody", email="nobody@fake.test")))
    assert r.status_code == 401
    assert counts(db_url) == before


def test_bearer_jwt_of_deactivated_user_is_refused_at_once(daemon, conns, fake, db_url, redis):
    t = fake.sign(bearer_claims(fake))
    assert check(daemon, bearer=t).status_code == 200  # cached from here on
    uid = idbtest.psql_value(db_url, "SELECT id::text FROM users WHERE email = 'eve@fake.test'")
    # What deactivation does: status change + permission cache entry dropped.
    # (DEL + PUBLISH on the invalidation channel, as idbridge does, so that the
    # in-process copies of every instance drop the entry too.)
    idbtest.psql(db_url, "UPDATE users SET status = 'inactive' WHERE id = %s", (uid,))
    redis.command("DEL", f"idb:perm:{uid}")
    redis.command("PUBLISH", "idb:inval:0", f"idb:perm:{uid}")
    try:
        # The message reaches the daemon's subscriber thread asynchronously
        # (as from another instance): give it a moment, then it must hold.
        deadline = time.time() + 2
        while check(daemon, bearer=t).status_code != 401 and time.time() < deadline:
            time.sleep(0.01)
        assert check(daemon, bearer=t).status_code == 401
    finally:
        idbtest.psql(db_url, "UPDATE users SET status = 'active' WHERE id = %s", (uid,))
        redis.command("DEL", f"idb:perm:{uid}")
        redis.command("PUBLISH", "idb:inval:0", f"idb:perm:{uid}")
    deadline = time.time() + 2
    while check(daemon, bearer=t).status_code != 200 and time.time() < deadline:
        time.sleep(0.01)
    assert check(daemon, bearer=t).status_code == 200


# --------------------------------------------------------------------------
# Back-channel logout tokens (fake provider)


def logout_claims(fake, **extra):
    now = int(time.time())
    c = {"iss": fake.issuer, "aud": "fake-client", "iat": now, "exp": now + 120, "jti": "jti-" + b64u(time.time_ns().to_bytes(8, "big")),
         "sub": "eve", "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}
    for k, v in extra.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def test_backchannel_logout_token_checks(daemon, daemon2, conns, fake):
    state, nonce, _ = start_flow(daemon, "fake")
    fake.id_token = fake.sign(fake.claims(nonce, sub="eve"))
    r = callback(daemon, "fake", state)
    token = idbtest.session_cookie(r)["value"]
    url = "/sso/oidc/fake/backchannel-logout"
    bad = {
        "nonce": logout_claims(fake, nonce="n"),
        "no_events": logout_claims(fake, events=None),
        "no_jti": logout_claims(fake, jti=None),
        "no_sub_or_sid": logout_claims(fake, sub=None),
        "wrong_aud": logout_claims(fake, aud="other"),
        "old": logout_claims(fake, iat=int(time.time()) - 3600, exp=None),
    }
    for name, c in bad.items():
        r = daemon2.post(url, data={"logout_token": fake.sign(c, header={"typ": "logout+jwt"})})
        assert r.status_code == 400, f"{name}: {r.status_code} {r.text}"
        assert r.json()["error"] == "invalid_request"
    assert check(daemon, token).status_code == 200
    good = fake.sign(logout_claims(fake), header={"typ": "logout+jwt"})
    assert daemon2.post(url, data={"logout_token": good}).status_code == 200
    assert check(daemon, token).status_code == 401
    r = daemon2.post(url, data={"logout_token": good})  # replayed jti
    assert r.status_code == 400 and "already used" in r.json()["error_description"]
