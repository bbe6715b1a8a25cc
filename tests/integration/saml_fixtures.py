# SPDX-License-Identifier: AGPL-3.0-or-later
"""SAML test plumbing on top of conftest.py / idbtest.py: connections bound to
test IdPs, the browser's side of SP-initiated and IdP-initiated logins, and
the "refused with nothing written" assertion the attack tests share.

Each test module defines its `saml` fixture (module scope):
    SamlHarness(daemon, acme, db_url)

IDB_TEST_TRACE=1 (with pytest -s) prints the status, problem type and
activity reasons of every refusal, to see why each attack was refused.
"""

import os
import secrets
import time
import urllib.parse

import idbtest
from saml_idp import LassoIdP, SPInfo

JSON = {"Accept": "application/json"}

# Tables a failed login must leave exactly as they were.
# last_seen_at / last_active_at are left out: earlier successful requests may
# touch them in the background; nothing in a login decides them.
GUARDED_TABLES = {
    "users": "SELECT u.*, NULL AS last_active_at FROM users u ORDER BY id",
    "identities": "SELECT * FROM identities ORDER BY id",
    "memberships": "SELECT * FROM memberships ORDER BY user_id, group_id, source",
    "sessions": "SELECT s.*, NULL AS last_seen_at FROM sessions s ORDER BY id_hash",
    "groups": "SELECT * FROM groups ORDER BY id",
}

DEFAULT_JIT = {
    "enabled": True, "default_role": "readonly",
    "email_attribute": "email", "name_attribute": "displayName", "group_attribute": "memberOf",
    "sync_groups": True, "create_missing_groups": False,
}


def snapshot(db_url):
    return {t: idbtest.psql(db_url, sql) for t, sql in GUARDED_TABLES.items()}


def diff_snapshots(before, after):
    """Readable differences between two snapshots ('' when equal)."""
    out = []
    for t in GUARDED_TABLES:
        b, a = before[t], after[t]
        if b == a:
            continue
        bs = {repr(sorted(r.items())) for r in b}
        as_ = {repr(sorted(r.items())) for r in a}
        out.append(f"{t}: {len(b)} -> {len(a)} rows; added {sorted(as_ - bs)[:3]}; "
                   f"removed {sorted(bs - as_)[:3]}")
    return "\n".join(out)


def activity_mark(db_url):
    return idbtest.psql_value(db_url, "SELECT coalesce(max(id), 0) FROM activity")


def activity_since(db_url, mark):
    return idbtest.psql(db_url, "SELECT id, user_id, kind, reason, details::text AS details "
                                "FROM activity WHERE id > %s ORDER BY id", (mark,))


def problem_slug(body):
    t = str(body.get("type", ""))
    return t.rstrip("/").rsplit("/", 1)[-1].lower() if t else ""


class Conn:
    """A SAML connection of org acme bound to one test IdP."""

    def __init__(self, harness, obj, idp, domain):
        self.h = harness
        self.obj = obj
        self.idp = idp
        self.domain = domain
        self.id = obj["id"]
        self.slug = obj["slug"]
        self.sp = obj.get("sp") or {}
        self.sp_md = None

    @property
    def base(self):
        return f"/sso/saml/{self.slug}"

    @property
    def entity_id(self):
        return self.sp_info.entity_id

    @property
    def acs_url(self):
        return self.sp_info.acs_url

    def email(self, local):
        return f"{local}@{self.domain}"

    def refresh_sp(self, daemon=None):
        r = (daemon or self.h.daemon).get(self.base + "/metadata")
        assert r.status_code == 200, f"GET {self.base}/metadata: {r.status_code} {r.text[:300]}"
        self.sp_md = r.text
        self.sp_info = SPInfo(r.text)
        return self.sp_info


class SamlHarness:
    def __init__(self, daemon, org, db_url):
        self.daemon = daemon
        self.org = org
        self.db_url = db_url

    # --- connections

    def connection_body(self, idp, slug=None, domains=None, saml=None, jit=None,
                        metadata_xml=None, metadata_url=None, **extra):
        slug = slug or ("c-" + secrets.token_hex(4))
        domains = domains if domains is not None else [slug.replace("-", "") + ".test"]
        saml_obj = {"allow_idp_initiated": False, "allow_sha1": False}
        if metadata_url:
            saml_obj["idp_metadata_url"] = metadata_url
        else:
            saml_obj["idp_metadata_xml"] = metadata_xml or idp.metadata()
        saml_obj.update(saml or {})
        body = {"slug": slug, "name": f"Test IdP {slug}", "protocol": "saml", "enabled": True,
                "saml": saml_obj, "allowed_domains": domains,
                "jit": dict(DEFAULT_JIT, **(jit or {}))}
        body.update(extra)
        return body

    def create_connection(self, idp=None, daemon=None, **kw):
        """POST /api/v1/connections for idp (a new LassoIdP when None); the
        IdP learns the SP metadata. Returns a Conn."""
        idp = idp or LassoIdP()
        body = self.connection_body(idp, **kw)
        d = daemon or self.daemon
        r = d.post("/api/v1/connections", api_key=self.org.api_key, json=body)
        assert r.status_code == 201, f"POST /api/v1/connections: {r.status_code} {r.text[:800]}"
        obj = r.json()
        assert obj.get("id"), obj
        conn = Conn(self, obj, idp, body["allowed_domains"][0] if body["allowed_domains"] else None)
        conn.refresh_sp(d)
        idp.add_sp(conn.sp_md)
        return conn

    def patch_connection(self, conn, patch, daemon=None):
        r = (daemon or self.daemon).request("PATCH", f"/api/v1/connections/{conn.id}",
                                             api_key=self.org.api_key, json=patch)
        assert r.status_code == 200, f"PATCH connection: {r.status_code} {r.text[:800]}"
        conn.obj = r.json()
        return conn.obj

    # --- the browser

    def start_login(self, conn, return_to="/app", daemon=None, expect_idp=True):
        """GET /sso/saml/{slug}/login; returns the Location (the IdP's SSO URL
        with the signed AuthnRequest)."""
        d = daemon or self.daemon
        path = conn.base + "/login"
        if return_to is not None:
            path += "?" + urllib.parse.urlencode({"return_to": return_to})
        r = d.get(path)
        assert r.status_code in (302, 303), f"GET {path}: {r.status_code} {r.text[:500]}"
        loc = r.headers["Location"]
        if expect_idp:
            assert loc.startswith(conn.idp.sso_url + "?"), \
                f"login redirected to {loc[:200]}, not to the IdP SSO URL {conn.idp.sso_url}"
        return loc

    def post_acs(self, post, daemon=None, json_errors=True, slug_path=None):
        """POSTs a SamlPost's form to the ACS of daemon (the path of the ACS URL
        the IdP addressed, or slug_path)."""
        d = daemon or self.daemon
        path = slug_path or post.acs_path
        return d.post(path, data=post.form, headers=JSON if json_errors else None)

    def sp_login(self, conn, nameid, attrs, return_to="/app", daemon=None, acs_daemon=None,
                 **opts):
        """SP-initiated login through conn's IdP: (ACS response, SamlPost)."""
        loc = self.start_login(conn, return_to, daemon=daemon)
        post = conn.idp.sp_initiated(loc, nameid, attrs, **opts)
        return self.post_acs(post, daemon=acs_daemon or daemon), post

    def login_ok(self, conn, nameid, attrs, return_to="/app", daemon=None, acs_daemon=None,
                 **opts):
        """A login that must succeed: returns the session token."""
        r, post = self.sp_login(conn, nameid, attrs, return_to, daemon, acs_daemon, **opts)
        return assert_logged_in(r, (acs_daemon or daemon or self.daemon), return_to)

    def idp_login(self, conn, nameid, attrs, relay_state="/app", daemon=None, **opts):
        post = conn.idp.idp_initiated(conn.entity_id, nameid, attrs, relay_state=relay_state,
                                      **opts)
        return self.post_acs(post, daemon=daemon), post

    def check(self, token, daemon=None):
        return (daemon or self.daemon).get("/auth/check", session_token=token)

    # --- database

    def user(self, email):
        rows = idbtest.psql(self.db_url, "SELECT * FROM users WHERE lower(email) = lower(%s)",
                            (email,))
        return rows[0] if rows else None

    def groups_of(self, user_id, source=None):
        sql = ("SELECT g.name, m.source::text AS source FROM memberships m "
               "JOIN groups g ON g.id = m.group_id WHERE m.user_id = %s")
        args = [user_id]
        if source:
            sql += " AND m.source = %s"
            args.append(source)
        return sorted((r["name"], r["source"]) for r in idbtest.psql(self.db_url, sql, args))

    def org_id(self):
        return idbtest.psql_value(self.db_url, "SELECT id FROM organizations WHERE slug = %s",
                                  (self.org.slug,))

    def create_group(self, name):
        """A group of org acme (SQL: the groups API is another issue's)."""
        rows = idbtest.psql(self.db_url,
                            "INSERT INTO groups (org_id, name) VALUES (%s, %s) "
                            "ON CONFLICT DO NOTHING RETURNING id", (self.org_id(), name))
        if rows:
            return rows[0]["id"]
        return idbtest.psql_value(self.db_url, "SELECT id FROM groups WHERE org_id = %s AND "
                                  "lower(name) = lower(%s)", (self.org_id(), name))

    def create_user(self, email, status="active", name="", role="readonly", created_via="admin"):
        return idbtest.psql_value(
            self.db_url,
            "INSERT INTO users (org_id, email, name, role, status, created_via) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (self.org_id(), email, name, role, status, created_via))

    def add_manual_membership(self, user_id, group_name):
        gid = self.create_group(group_name)
        idbtest.psql(self.db_url,
                     "INSERT INTO memberships (org_id, user_id, group_id, source) "
                     "VALUES (%s, %s, %s, 'manual')", (self.org_id(), user_id, gid))

    def snapshot(self):
        return snapshot(self.db_url)

    def activity_mark(self):
        return activity_mark(self.db_url)

    def activity_since(self, mark):
        return activity_since(self.db_url, mark)

    # --- the refusal every attack must produce

    def expect_refused(self, send, hints, statuses=(400, 401, 403), allow_413=False,
                       must_not_contain=()):
        """Runs send() (-> requests.Response) and asserts that it was refused
        cleanly with nothing written: a 4xx problem whose type names one of
        hints, no session cookie, no redirect, users/identities/memberships/
        sessions/groups unchanged, and one login_failure activity row with a
        reason. Returns (response, problem body, activity rows)."""
        before = self.snapshot()
        mark = self.activity_mark()
        r = send()
        return self.assert_refused(r, hints, before, mark, statuses, allow_413, must_not_contain)

    def assert_refused(self, r, hints, before, mark, statuses=(400, 401, 403), allow_413=False,
                       must_not_contain=()):
        where = f"{r.request.method} {r.request.path_url}"
        assert r.status_code < 500 or r.status_code in statuses, \
            f"{where}: server error {r.status_code}: {r.text[:500]}"
        ok_status = set(statuses) | ({413} if allow_413 else set())
        assert r.status_code in ok_status, \
            f"{where}: expected a refusal {sorted(ok_status)}, got {r.status_code} " \
            f"(Location {r.headers.get('Location')!r}): {r.text[:500]}"
        cookies = [c for c in idbtest.parse_set_cookies(r)
                   if c["name"] == "idb_session" and c["value"]]
        assert not cookies, f"{where}: session cookie set on a refused login: {cookies}"
        assert "Location" not in r.headers, f"{where}: refusal redirects to {r.headers['Location']}"
        for needle in must_not_contain:
            assert needle not in r.text, f"{where}: response contains {needle!r}"
        body = {}
        ctype = r.headers.get("Content-Type", "").split(";")[0].strip()
        if r.status_code != 413 or ctype == "application/problem+json":
            assert ctype == "application/problem+json", \
                f"{where}: Accept: application/json but content type {ctype!r}: {r.text[:300]}"
            body = r.json()
            for key in ("type", "title", "status", "detail"):
                assert key in body, f"{where}: problem without {key!r}: {body}"
            assert body["status"] == r.status_code, body
            assert isinstance(body["detail"], str) and len(body["detail"]) > 5, body
        after = self.snapshot()
        d = diff_snapshots(before, after)
        assert not d, f"{where}: a refused login wrote to the database:\n{d}"
        rows = self.activity_since(mark)
        assert not [a for a in rows if a["kind"] != "login_failure"], \
            f"{where}: unexpected activity on a refused login: {rows}"
        if os.environ.get("IDB_TEST_TRACE"):
            print(f"\n[refused] {r.status_code} type={body.get('type')} "
                  f"reasons={[a['reason'] for a in rows]} detail={body.get('detail')!r}")
        if r.status_code != 413:
            assert rows, f"{where}: no login_failure activity row for the refusal {body}"
            assert all(a["reason"] for a in rows), f"{where}: login_failure without reason: {rows}"
            # The problem type, or the precise reason in the activity log
            # (account refusals share one type and differ by reason), must
            # name the cause.
            named = [problem_slug(body)] + [str(a["reason"]).lower().replace("_", "-")
                                            for a in rows]
            assert any(h in n for h in hints for n in named), \
                f"{where}: neither the problem type {body['type']!r} nor the activity reasons " \
                f"{[a['reason'] for a in rows]} name any of {hints}; detail {body['detail']!r}"
        return r, body, rows


def assert_logged_in(r, daemon, return_to="/app"):
    """r is a successful ACS answer: 303 to return_to with a session cookie
    that /auth/check accepts. Returns the session token."""
    where = f"{r.request.method} {r.request.path_url}"
    assert r.status_code == 303, f"{where}: expected 303 after a valid response, got " \
                                 f"{r.status_code}: {r.text[:800]}"
    loc = r.headers.get("Location", "")
    if return_to is not None:
        assert loc in (return_to, daemon.public_url + return_to), \
            f"{where}: redirected to {loc!r}, expected {return_to!r}"
    c = idbtest.session_cookie(r)
    assert c["value"], f"{where}: empty session cookie"
    check = daemon.get("/auth/check", session_token=c["value"])
    assert check.status_code == 200, \
        f"/auth/check after SSO: {check.status_code} {check.text[:300]}"
    return c["value"]


def auth_groups(resp):
    v = resp.headers.get("X-Auth-Groups")
    return sorted(g.strip() for g in v.split(",")) if v else []


def wait_until(pred, timeout=5.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()

