# SPDX-License-Identifier: AGPL-3.0-or-later
"""Foundation: health, readiness, metrics, password login and lockout,
sessions (PostgreSQL + Redis cache), forward auth, bad input, config
checking, signals and migrations."""

import time

import pytest

import idbtest
from idbtest import assert_problem, assert_request_id, metric_samples, metric_value

INVALID_LOGIN = "Invalid email or password"


# --------------------------------------------------------------------------
# health, readiness, metrics


def test_healthz_ok(daemon):
    r = daemon.get("/healthz")
    assert r.status_code == 200, r.text
    assert_request_id(r)
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"status": "ok"}


def test_every_response_has_a_distinct_request_id(daemon):
    ids = set()
    for method, path in [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
                         ("GET", "/no/such/route"), ("GET", "/api/v1/me"),
                         ("PUT", "/healthz"), ("GET", "/auth/check")]:
        r = daemon.request(method, path)
        ids.add(assert_request_id(r))
    assert len(ids) == 7, f"request ids are not unique: {ids}"


def test_readyz_reports_postgres_and_redis_up(daemon):
    r = daemon.get("/readyz")
    assert r.status_code == 200, r.text
    assert_request_id(r)
    assert r.json() == {"status": "ready", "postgres": "up", "redis": "up"}


def test_metrics_exposes_required_families(daemon, acme, admin_login):
    daemon.get("/healthz")
    daemon.get("/auth/check", session_token=admin_login.token)
    r = daemon.get("/metrics")
    assert r.status_code == 200
    assert_request_id(r)
    assert r.headers["Content-Type"].replace(" ", "").startswith("text/plain;version=0.0.4"), \
        r.headers["Content-Type"]
    text = r.text
    assert metric_value(text, "idbridge_redis_up") == 1
    assert metric_value(text, "idbridge_postgres_up") == 1

    reqs = metric_samples(text, "idbridge_http_requests_total")
    assert reqs, "no idbridge_http_requests_total samples"
    assert all({"route", "method", "status"} <= set(lab) for lab, _ in reqs), reqs
    health = [v for lab, v in reqs
              if lab["method"] == "GET" and lab["status"] == "200" and "healthz" in lab["route"]]
    assert health and sum(health) >= 1, f"GET /healthz 200 not counted: {reqs}"

    buckets = metric_samples(text, "idbridge_http_request_duration_seconds_bucket")
    assert buckets, "no idbridge_http_request_duration_seconds_bucket samples"
    assert all("route" in lab and "le" in lab for lab, _ in buckets), buckets[:5]
    assert any(lab["le"] == "+Inf" for lab, _ in buckets), "histogram without le=\"+Inf\""

    cache = metric_samples(text, "idbridge_cache_requests_total", cache="session")
    assert cache, "no idbridge_cache_requests_total{cache=\"session\"} after a session check"
    assert {lab.get("result") for lab, _ in cache} <= {"hit", "miss", "error"}, cache

    assert metric_samples(text, "idbridge_db_pool_connections", state="in_use"), \
        "no idbridge_db_pool_connections{state=\"in_use\"}"
    assert metric_samples(text, "idbridge_db_pool_connections", state="idle"), \
        "no idbridge_db_pool_connections{state=\"idle\"}"
    assert metric_samples(text, "idbridge_cache_fallbacks_total"), \
        "no idbridge_cache_fallbacks_total"


# --------------------------------------------------------------------------
# password login, logout, lockout


def test_login_json_sets_session_cookie(daemon, acme):
    r = daemon.post("/login", json={"email": acme.admin_email, "password": acme.admin_password})
    assert r.status_code == 200, r.text
    assert_request_id(r)
    body = r.json()
    user = body["user"]
    for key in ("id", "email", "name", "role"):
        assert key in user, body
    assert user["email"] == acme.admin_email
    assert user["role"] == "admin"
    assert isinstance(body["csrf_token"], str) and len(body["csrf_token"]) >= 16, body
    c = idbtest.session_cookie(r)
    assert len(c["value"]) >= 32, "session token too short to be random"
    assert c["attrs"].get("path") == "/", c
    assert c["attrs"].get("httponly") is True, c
    assert str(c["attrs"].get("samesite", "")).lower() == "lax", c
    assert "secure" not in c["attrs"], f"Secure cookie on an http public URL: {c}"
    assert int(c["attrs"].get("max-age", 0)) > 0, c
    me = daemon.get("/api/v1/me", session_token=c["value"])
    assert me.status_code == 200, me.text
    assert me.json()["email"] == acme.admin_email


def test_login_cookie_is_secure_behind_https_public_url(make_daemon, acme):
    d = make_daemon(public_url="https://idbridge.example.test")
    r = d.post("/login", json={"email": acme.admin_email, "password": acme.admin_password})
    assert r.status_code == 200, r.text
    c = idbtest.session_cookie(r)
    assert c["attrs"].get("secure") is True, f"no Secure on an https public URL: {c}"


def test_login_form_redirects_to_return_to_with_cookie(daemon, acme):
    r = daemon.post("/login", data={"email": acme.admin_email, "password": acme.admin_password,
                                    "return_to": "/dashboard?tab=1"})
    assert r.status_code == 303, r.text
    loc = r.headers["Location"]
    assert loc in ("/dashboard?tab=1", daemon.public_url + "/dashboard?tab=1"), loc
    token = idbtest.session_cookie(r)["value"]
    assert daemon.get("/auth/check", session_token=token).status_code == 200

    r = daemon.post("/login", data={"email": acme.admin_email, "password": acme.admin_password})
    assert r.status_code == 303, r.text
    assert r.headers["Location"] in ("/", daemon.public_url + "/"), r.headers["Location"]
    idbtest.session_cookie(r)


def test_login_form_refuses_open_redirect(daemon, acme):
    r = daemon.post("/login", data={"email": acme.admin_email, "password": acme.admin_password,
                                    "return_to": "https://evil.example.com/steal"})
    loc = r.headers.get("Location", "")
    assert "evil.example.com" not in loc, \
        f"POST /login return_to=https://evil.example.com redirected to {loc!r} ({r.status_code})"


def _without_request_id(resp):
    rid = resp.headers.get("X-Request-Id")
    body = resp.json()
    return {k: v for k, v in body.items()
            if k not in ("request_id", "requestId", "instance") and v != rid}


def test_login_wrong_password_and_unknown_email_answer_the_same(daemon, acme, db_url):
    email, password = acme.new_admin("wrongpw")
    bad_pw = daemon.post("/login", json={"email": email, "password": password + "x"})
    unknown = daemon.post("/login", json={"email": "nobody@acme.test", "password": password})
    b1 = assert_problem(bad_pw, 401, detail=INVALID_LOGIN)
    b2 = assert_problem(unknown, 401, detail=INVALID_LOGIN)
    assert _without_request_id(bad_pw) == _without_request_id(unknown), (b1, b2)
    assert bad_pw.headers["Content-Type"] == unknown.headers["Content-Type"]
    assert not idbtest.parse_set_cookies(bad_pw) or all(
        c["value"] == "" for c in idbtest.parse_set_cookies(bad_pw)), "cookie set on failed login"
    row = idbtest.psql(db_url, "SELECT failed_logins, locked_at FROM users WHERE email = %s", (email,))
    assert row == [{"failed_logins": 1, "locked_at": None}], row


def test_successful_login_resets_failed_login_count(daemon, acme, db_url):
    email, password = acme.new_admin("resetme")
    for i in range(3):
        assert_problem(daemon.post("/login", json={"email": email, "password": f"no{i}"}), 401,
                       detail=INVALID_LOGIN)
    assert idbtest.psql_value(db_url, "SELECT failed_logins FROM users WHERE email = %s",
                              (email,)) == 3
    daemon.login(email, password)
    row = idbtest.psql(db_url, "SELECT failed_logins, locked_at FROM users WHERE email = %s",
                       (email,))
    assert row == [{"failed_logins": 0, "locked_at": None}], row


def test_login_lockout_after_five_failures(daemon, acme, db_url):
    email, password = acme.new_admin("lockme")
    for i in range(5):
        r = daemon.post("/login", json={"email": email, "password": f"wrong-{i}"})
        assert_problem(r, 401, detail=INVALID_LOGIN)
    row = idbtest.psql(db_url, "SELECT failed_logins, locked_at FROM users WHERE email = %s",
                       (email,))[0]
    assert row["failed_logins"] >= 5, row
    assert row["locked_at"] is not None, f"account not locked after 5 failures: {row}"
    r = daemon.post("/login", json={"email": email, "password": password})
    assert_problem(r, 403, detail_contains="locked")
    assert not any(c["name"] == "idb_session" and c["value"]
                   for c in idbtest.parse_set_cookies(r)), "locked account got a session"


def test_login_lockout_threshold_is_configurable(make_daemon, acme, db_url):
    d = make_daemon(config={"security": {"lockout_threshold": 2}})
    email, password = acme.new_admin("lock2")
    for i in range(2):
        assert_problem(d.post("/login", json={"email": email, "password": f"bad{i}"}), 401,
                       detail=INVALID_LOGIN)
    assert idbtest.psql_value(db_url, "SELECT locked_at IS NOT NULL FROM users WHERE email = %s",
                              (email,)) is True
    assert_problem(d.post("/login", json={"email": email, "password": password}), 403,
                   detail_contains="locked")


def test_logout_clears_cookie_and_revokes_session(daemon, acme):
    login = acme.login_admin()
    assert daemon.get("/auth/check", session_token=login.token).status_code == 200
    r = daemon.post("/logout", session_token=login.token, csrf=login.csrf)
    assert r.status_code == 200, r.text
    assert_request_id(r)
    assert r.json() == {"status": "logged_out"}
    c = idbtest.session_cookie(r)
    assert c["value"] == "" or c["attrs"].get("max-age") == "0", c
    assert c["attrs"].get("max-age") == "0", f"logout cookie without Max-Age=0: {c}"
    assert_problem(daemon.get("/auth/check", session_token=login.token), 401)
    assert_problem(daemon.get("/api/v1/me", session_token=login.token), 401)


# --------------------------------------------------------------------------
# /api/v1/me and /auth/check


def test_me_returns_admin_profile_and_permissions(daemon, acme, admin_login):
    r = daemon.get("/api/v1/me", session_token=admin_login.token)
    assert r.status_code == 200, r.text
    assert_request_id(r)
    me = r.json()
    for key in ("id", "email", "name", "role", "status", "org", "groups", "permissions",
                "csrf_token"):
        assert key in me, f"/api/v1/me without {key!r}: {me}"
    assert me["email"] == acme.admin_email
    assert me["role"] == "admin"
    assert me["status"] == "active"
    assert me["org"]["slug"] == "acme" and me["org"]["name"] == "Acme" and me["org"]["id"], me
    assert me["groups"] == []
    assert "users.manage" in me["permissions"], me["permissions"]
    assert me["id"] == admin_login.user["id"]
    assert me["csrf_token"], me


def test_me_requires_credentials(daemon):
    assert_problem(daemon.get("/api/v1/me"), 401)
    assert_problem(daemon.get("/api/v1/me", session_token="not-a-session"), 401)


def test_me_with_api_key(daemon, acme):
    r = daemon.get("/api/v1/me", api_key=acme.api_key)
    assert r.status_code == 200, r.text
    assert r.json()["email"] == acme.admin_email


def _assert_auth_headers(r, acme, user_id=None):
    assert r.status_code == 200, f"/auth/check: {r.status_code} {r.text[:300]}"
    assert_request_id(r)
    h = r.headers
    # X-Auth-Groups is absent for a user without groups: libmicrohttpd
    # cannot send an empty header value (a proxy reads absent as empty).
    for name in ("X-Auth-User-Id", "X-Auth-Email", "X-Auth-Name", "X-Auth-Role",
                 "X-Auth-Org"):
        assert name in h, f"/auth/check without {name}: {dict(h)}"
    assert h["X-Auth-Email"] == acme.admin_email
    assert h["X-Auth-Role"] == "admin"
    assert h["X-Auth-Org"] == "acme"
    assert h.get("X-Auth-Groups", "") == ""
    if user_id is not None:
        assert h["X-Auth-User-Id"] == str(user_id)


def test_auth_check_with_session_cookie(daemon, acme, admin_login):
    r = daemon.get("/auth/check", session_token=admin_login.token)
    _assert_auth_headers(r, acme, admin_login.user["id"])


def test_auth_check_with_api_key(daemon, acme, admin_login):
    r = daemon.get("/auth/check", api_key=acme.api_key)
    _assert_auth_headers(r, acme, admin_login.user["id"])


def test_auth_check_permission_granted_and_denied(daemon, acme, admin_login):
    for creds in ({"session_token": admin_login.token}, {"api_key": acme.api_key}):
        r = daemon.get("/auth/check?permission=users.manage", **creds)
        assert r.status_code == 200, (creds.keys(), r.status_code, r.text)
        r = daemon.get("/auth/check?permission=nonexistent.perm", **creds)
        assert_problem(r, 403)


def test_auth_check_rejects_missing_and_invalid_credentials(daemon):
    assert_problem(daemon.get("/auth/check"), 401)
    assert_problem(daemon.get("/auth/check", session_token="garbage%%%"), 401)
    assert_problem(daemon.get("/auth/check", session_token="A" * 43), 401)
    assert_problem(daemon.get("/auth/check", api_key="idb_" + "0" * 40), 401)
    assert_problem(daemon.get("/auth/check", api_key="idb_"), 401)
    assert_problem(daemon.get("/auth/check", api_key="garbage"), 401)
    assert_problem(daemon.get("/auth/check", headers={"Authorization": "Basic YTpi"}), 401)
    assert_problem(daemon.get("/auth/check?permission=users.manage"), 401)


def test_concurrent_checks_and_logins(daemon, acme, admin_login):
    """Many requests at once on the worker threads (races show up under
    ASan/UBSan or as wrong answers)."""
    from concurrent.futures import ThreadPoolExecutor

    def check(i):
        if i % 10 == 0:
            return daemon.post("/login", json={"email": acme.admin_email,
                                               "password": acme.admin_password}).status_code
        if i % 3 == 0:
            return daemon.get("/auth/check", api_key=acme.api_key).status_code
        if i % 3 == 1:
            return daemon.get("/api/v1/me", session_token=admin_login.token).status_code
        return daemon.get("/auth/check?permission=users.manage",
                          session_token=admin_login.token).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(check, range(200)))
    assert statuses == [200] * 200, sorted(set(statuses))
    deadline = time.monotonic() + 3  # background jobs may hold one briefly
    while metric_value(daemon.metrics(), "idbridge_db_pool_connections", state="in_use") != 0:
        assert time.monotonic() < deadline, \
            "pool connections still in use 3 s after all requests finished"
        time.sleep(0.1)


def test_secrets_are_not_stored_or_logged_in_clear(daemon, acme, admin_login, db_url, redis):
    secrets_ = {"session token": admin_login.token, "api key": acme.api_key,
                "admin password": acme.admin_password}
    daemon.get("/auth/check", api_key=acme.api_key)
    daemon.get("/auth/check", session_token=admin_login.token)
    log = daemon.log_text()
    for what, value in secrets_.items():
        assert idbtest.tables_containing(db_url, value) == [], f"{what} stored in clear"
        assert value not in log, f"{what} appears in the daemon log"
    keys = redis.command("KEYS", "*") or []
    for k in keys:
        assert admin_login.token.encode() not in k, f"session token in Redis key {k!r}"
        assert acme.api_key.encode() not in k, f"API key in Redis key {k!r}"


# --------------------------------------------------------------------------
# Redis as a cache only


def test_sessions_survive_redis_flushall(make_daemon, acme, redis):
    # Without the in-process copy, so that the check after FLUSHALL really
    # goes to PostgreSQL (with it, the session is simply still held locally).
    daemon = make_daemon(config={"cache": {"local_entries": 0}})
    login = daemon.login(acme.admin_email, acme.admin_password)
    r = daemon.get("/auth/check", session_token=login.token)
    _assert_auth_headers(r, acme, login.user["id"])
    before = daemon.metrics()
    redis.command("FLUSHALL")
    r = daemon.get("/auth/check", session_token=login.token)
    _assert_auth_headers(r, acme, login.user["id"])  # served from PostgreSQL
    r = daemon.get("/auth/check", session_token=login.token)
    _assert_auth_headers(r, acme, login.user["id"])  # cached again
    after = daemon.metrics()

    def delta(result):
        return ((metric_value(after, "idbridge_cache_requests_total", cache="session",
                              result=result) or 0)
                - (metric_value(before, "idbridge_cache_requests_total", cache="session",
                                result=result) or 0))

    assert delta("miss") >= 1, "a check after FLUSHALL was not counted as a session cache miss"
    assert delta("hit") >= 1, "the check after the refill was not counted as a session cache hit"
    assert daemon.get("/api/v1/me", session_token=login.token).status_code == 200


@pytest.mark.timeout(90)
def test_redis_down_falls_back_to_postgres(make_daemon, make_private_redis, acme):
    red = make_private_redis()
    d = make_daemon(redis_url=red.url)
    login = d.login(acme.admin_email, acme.admin_password)
    assert d.get("/auth/check", session_token=login.token).status_code == 200
    fallbacks_before = metric_value(d.metrics(), "idbridge_cache_fallbacks_total") or 0

    red.stop()
    r = d.get("/readyz")
    assert r.status_code == 503, f"/readyz with Redis stopped: {r.status_code} {r.text}"
    assert_request_id(r)
    body = r.json()
    assert body.get("redis") == "down" and body.get("postgres") == "up", body

    r = d.get("/auth/check", session_token=login.token)
    _assert_auth_headers(r, acme, login.user["id"])
    r = d.get("/auth/check?permission=users.manage", session_token=login.token)
    assert r.status_code == 200, f"permission check with Redis down: {r.status_code} {r.text}"
    login2 = d.login(acme.admin_email, acme.admin_password)
    assert d.get("/api/v1/me", session_token=login2.token).status_code == 200

    m = d.metrics()
    assert metric_value(m, "idbridge_redis_up") == 0
    assert metric_value(m, "idbridge_postgres_up") == 1
    assert (metric_value(m, "idbridge_cache_fallbacks_total") or 0) > fallbacks_before, \
        "session look-ups with Redis down were not counted in idbridge_cache_fallbacks_total"

    red.start()
    deadline = time.monotonic() + 15
    status = None
    while time.monotonic() < deadline:
        status = d.get("/readyz").status_code
        if status == 200:
            break
        time.sleep(0.25)
    assert status == 200, "/readyz did not come back within 15 s of Redis restarting"
    assert metric_value(d.metrics(), "idbridge_redis_up") == 1
    assert d.get("/auth/check", session_token=login.token).status_code == 200
    d.stop()


@pytest.mark.timeout(60)
def test_readyz_reports_postgres_down(make_daemon, new_database, redis_url, idb_env):
    db = new_database()
    d = make_daemon(db_url=db)
    assert d.get("/readyz").status_code == 200
    idbtest.drop_database(idb_env.pg_url, db)  # ends the daemon's connections too
    deadline = time.monotonic() + 10
    r = None
    while time.monotonic() < deadline:
        r = d.get("/readyz")
        if r.status_code == 503:
            break
        time.sleep(0.25)
    assert r.status_code == 503, f"/readyz with the database gone: {r.status_code} {r.text}"
    body = r.json()
    assert body.get("postgres") == "down" and body.get("redis") == "up", body
    assert metric_value(d.metrics(), "idbridge_postgres_up") == 0
    assert d.get("/healthz").status_code == 200, "liveness must not depend on PostgreSQL"
    d.stop()


# --------------------------------------------------------------------------
# bad input


def test_login_malformed_json_is_400(daemon):
    r = daemon.post("/login", data=b'{"email": "a@b", "password": ',
                    headers={"Content-Type": "application/json"})
    assert_problem(r, 400)
    r = daemon.post("/login", data=b"[1, 2, 3]", headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422), f"JSON array to /login: {r.status_code} {r.text}"
    assert_problem(r, r.status_code)


def test_oversized_body_is_413(daemon):
    body = b'{"email": "' + b"a" * (2 * 1024 * 1024) + b'", "password": "x"}'
    req = (b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body
    status, headers, resp = idbtest.raw_http(daemon.port, req)
    assert status == 413, f"2 MiB body to /login: {status} {resp[:300]!r}"
    assert headers.get("content-type", "").startswith("application/problem+json"), headers
    assert "x-request-id" in headers, headers
    # the daemon is still fine afterwards
    assert daemon.get("/healthz").status_code == 200


def test_oversized_chunked_body_is_413(daemon):
    chunk = b"a" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(32))  # 2 MiB
    req = (b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n") + chunks + b"0\r\n\r\n"
    status, headers, resp = idbtest.raw_http(daemon.port, req)
    assert status == 413, f"2 MiB chunked body to /login: {status} {resp[:300]!r}"
    assert daemon.get("/healthz").status_code == 200


def test_unknown_route_is_404_problem(daemon):
    assert_problem(daemon.get("/no/such/route"), 404)
    assert_problem(daemon.get("/api/v1/no-such-resource"), 404)


def test_wrong_method_is_405_with_allow(daemon):
    r = daemon.request("PUT", "/healthz")
    assert_problem(r, 405)
    allow = [m.strip() for m in r.headers.get("Allow", "").split(",")]
    assert "GET" in allow, f"Allow header {r.headers.get('Allow')!r}"


def test_login_unsupported_content_type_is_415(daemon, acme):
    r = daemon.post("/login", data=f"{acme.admin_email} {acme.admin_password}",
                    headers={"Content-Type": "text/plain"})
    assert_problem(r, 415)


# --------------------------------------------------------------------------
# configuration, version, signals


def _check(d, config, **env):
    path = d.workdir / f"check-{time.monotonic_ns()}.yaml"
    d.write_config(config, path)
    return d.run("--check-config", path, env=d.env(**env))


def test_check_config_accepts_valid_file(make_daemon):
    d = make_daemon(start=False)
    p = d.run("--check-config", d.config_path)
    assert p.returncode == 0, p.stderr
    assert "OK" in p.stdout, p.stdout


@pytest.mark.parametrize("key,patch", [
    ("server.lisen", {"server": {"lisen": "127.0.0.1:1"}}),
    ("server.threads", {"server": {"threads": "many"}}),
    ("server.threads", {"server": {"threads": 0}}),
    ("cache.session_ttl_s", {"cache": {"session_ttl_s": -5}}),
], ids=["unknown-key", "wrong-type", "threads-zero", "negative-ttl"])
def test_check_config_rejects_bad_value_naming_the_key(make_daemon, key, patch):
    d = make_daemon(start=False)
    p = _check(d, idbtest.deep_merge(d.config, patch))
    assert p.returncode == 2, f"exit {p.returncode}, stdout {p.stdout!r}, stderr {p.stderr!r}"
    assert key in p.stderr, f"stderr does not name {key}: {p.stderr!r}"


def test_check_config_requires_database_url(make_daemon):
    d = make_daemon(start=False)
    p = _check(d, idbtest.deep_merge(d.config, {"database": {"url": ""}}),
               IDBRIDGE_DATABASE_URL=None)
    assert p.returncode == 2, f"exit {p.returncode}, stderr {p.stderr!r}"
    assert "database.url" in p.stderr, p.stderr


def test_daemon_refuses_to_start_with_invalid_config(make_daemon):
    d = make_daemon(config={"server": {"lisen": "x"}}, start=False)
    p = d.run("--config", d.config_path, timeout=20)
    assert p.returncode == 2, f"exit {p.returncode}, stderr {p.stderr!r}"
    assert "server.lisen" in p.stderr


def test_version(make_daemon):
    d = make_daemon(start=False)
    p = d.run("--version")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("idbridge "), p.stdout
    assert len(p.stdout.split()) >= 2 and p.stdout.split()[1][0].isdigit(), p.stdout


def test_sigterm_exits_cleanly(make_daemon, acme):
    d = make_daemon()
    login = d.login(acme.admin_email, acme.admin_password)
    assert d.get("/auth/check", session_token=login.token).status_code == 200
    assert d.stop() == 0
    assert not d.running
    assert idbtest.wait_port_closed(d.port), "port still open after exit"


# --------------------------------------------------------------------------
# idbridgectl


def test_migrate_twice_is_a_noop(make_daemon, new_database):
    d = make_daemon(db_url=new_database(), start=False)
    d.ctl_ok("migrate")
    rows = idbtest.psql(d.db_url, "SELECT version, name, applied_at FROM schema_migrations "
                                  "ORDER BY version")
    assert rows, "migrate applied nothing"
    assert all(r["applied_at"] is not None and r["name"] for r in rows), rows
    d.ctl_ok("migrate")
    again = idbtest.psql(d.db_url, "SELECT version, name, applied_at FROM schema_migrations "
                                   "ORDER BY version")
    assert again == rows, "second migrate changed schema_migrations"


def test_migrate_is_a_noop_after_daemon_start(daemon, db_url):
    n = idbtest.psql_value(db_url, "SELECT count(*) FROM schema_migrations")
    assert n > 0, "the daemon did not apply migrations at start-up"
    daemon.ctl_ok("migrate")
    assert idbtest.psql_value(db_url, "SELECT count(*) FROM schema_migrations") == n


def test_ctl_org_create_twice_exits_3(daemon, acme):
    p = daemon.ctl("org", "create", "acme", "--name", "Acme again")
    assert p.returncode == 3, f"exit {p.returncode}, stderr {p.stderr!r}"


def test_ctl_usage_errors_exit_2(daemon, acme):
    for args in (["org", "create"], ["no-such-command"],
                 ["admin", "create", "--org", "acme"],
                 ["admin", "create", "--org", "acme", "--email", "not-an-email"]):
        p = daemon.ctl(*args)
        assert p.returncode == 2, f"idbridgectl {args}: exit {p.returncode}, stderr {p.stderr!r}"
        assert p.stderr.strip(), f"idbridgectl {args}: no message on stderr"


def test_ctl_admin_create_prints_generated_password(daemon, acme, db_url):
    p = daemon.ctl_ok("admin", "create", "--org", "acme", "--email", "gen@acme.test")
    kv = idbtest.parse_kv_lines(p.stdout)
    assert kv.get("email") == "gen@acme.test", p.stdout
    assert len(kv.get("password", "")) >= 12, p.stdout
    login = daemon.login("gen@acme.test", kv["password"])
    assert login.user["role"] == "admin"
    p = daemon.ctl("admin", "create", "--org", "acme", "--email", "gen@acme.test")
    assert p.returncode == 3, f"duplicate admin: exit {p.returncode}, stderr {p.stderr!r}"


def test_ctl_admin_create_password_stdin(daemon, acme):
    p = daemon.ctl_ok("admin", "create", "--org", "acme", "--email", "stdin@acme.test",
                      "--password-stdin", stdin="correct horse battery staple\n")
    assert "password" not in p.stdout.lower(), p.stdout
    assert idbtest.parse_kv_lines(p.stdout) == {"email": "stdin@acme.test"}, p.stdout
    daemon.login("stdin@acme.test", "correct horse battery staple")


def test_ctl_apikey_create_prints_key_once(daemon, acme, db_url):
    p = daemon.ctl_ok("apikey", "create", "--org", "acme", "--email", acme.admin_email,
                      "--name", "ci")
    key = p.stdout.splitlines()[0].strip()
    assert key.startswith("idb_") and len(key) >= 36, p.stdout
    assert idbtest.tables_containing(db_url, key) == [], "API key stored in clear"
    r = daemon.get("/auth/check", api_key=key)
    assert r.status_code == 200 and r.headers["X-Auth-Email"] == acme.admin_email


def test_in_process_copy_is_not_used_while_invalidations_cannot_arrive(make_daemon, make_private_redis, acme,
                                                                       db_url):
    """The in-process copy of sessions is only served while the instance hears
    invalidations: once Redis is gone, a session ended behind its back (here:
    deleted in PostgreSQL, as another instance would) is refused at once."""
    red = make_private_redis()
    d = make_daemon(redis_url=red.url)
    login = d.login(acme.admin_email, acme.admin_password)
    for _ in range(3):
        assert d.get("/auth/check", session_token=login.token).status_code == 200
    red.stop()
    # the subscriber notices the lost connection at once (its socket closes)
    deadline = time.time() + 10
    while time.time() < deadline and metric_value(d.metrics(), "idbridge_redis_up") != 0:
        d.get("/readyz")
        time.sleep(0.1)
    import hashlib
    idbtest.psql(db_url, "DELETE FROM sessions WHERE id_hash = %s", (hashlib.sha256(login.token.encode()).hexdigest(),))
    r = d.get("/auth/check", session_token=login.token)
    assert r.status_code == 401, f"a session deleted while Redis was down was still served: {r.status_code}"


def test_invalidation_reaches_a_second_instance_at_once(make_daemon, acme, db_url):
    """Two instances, one Redis: a logout on A ends the session B holds in its
    in-process copy, on B's very next check."""
    a = make_daemon()
    b = make_daemon()
    login = a.login(acme.admin_email, acme.admin_password)
    for _ in range(3):
        assert b.get("/auth/check", session_token=login.token).status_code == 200
    r = a.post("/logout", session_token=login.token, json={})
    assert r.status_code == 200, r.text
    # PUBLISH is delivered before A answers the logout; allow the subscriber
    # thread of B a moment to run.
    deadline = time.time() + 2
    status = None
    while time.time() < deadline:
        status = b.get("/auth/check", session_token=login.token).status_code
        if status == 401:
            break
        time.sleep(0.01)
    assert status == 401, "B kept serving a session A ended"
