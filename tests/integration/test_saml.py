# SPDX-License-Identifier: AGPL-3.0-or-later
"""SAML 2.0 SSO with JIT provisioning (issue 3), functional side: SP
metadata, SP- and IdP-initiated login against two real IdPs (python3-lasso
and pysaml2), every JIT rule, RelayState/return_to, two instances sharing
PostgreSQL and Redis, IdP key rollover, single logout both ways.

The attacks are in test_saml_attacks.py."""

import base64
import calendar
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.parse
import zlib

import pytest

import idbtest
from idbtest import assert_problem
from pysaml2_idp import JIT_ATTRIBUTES, Pysaml2IdP
from saml_fixtures import JSON, Conn, SamlHarness, assert_logged_in, auth_groups
from saml_idp import (NS, SIG_RSA_SHA256, LassoIdP, MetadataServer, idp_metadata, keypair,
                      parse_xml)

ACCOUNT_NOT_FOUND = "Account not found"


@pytest.fixture(scope="module")
def saml(daemon, acme, db_url):
    return SamlHarness(daemon, acme, db_url)


def uniq(prefix):
    return f"{prefix}-{secrets.token_hex(3)}"


def attrs(email, name=None, groups=None):
    a = {"email": [email]}
    if name is not None:
        a["displayName"] = [name]
    if groups is not None:
        a["memberOf"] = list(groups)
    return a


# --------------------------------------------------------------------------
# connections and SP metadata


def test_connection_create_returns_sp_urls(saml, daemon):
    conn = saml.create_connection()
    sp = conn.obj["sp"]
    base = f"{daemon.public_url}/sso/saml/{conn.slug}"
    assert sp["entity_id"] == base + "/metadata", sp
    assert sp["acs_url"] == base + "/acs", sp
    assert sp["metadata_url"] == base + "/metadata", sp
    assert sp["slo_url"] == base + "/slo", sp
    assert conn.obj["protocol"] == "saml" and conn.obj["enabled"] is True, conn.obj
    r = daemon.get(f"/api/v1/connections/{conn.id}", api_key=saml.org.api_key)
    assert r.status_code == 200, r.text
    assert r.json()["slug"] == conn.slug


def test_sp_metadata_document(saml, daemon):
    conn = saml.create_connection()
    r = daemon.get(conn.base + "/metadata")
    assert r.status_code == 200, r.text
    ctype = r.headers["Content-Type"].split(";")[0].strip()
    assert ctype in ("application/samlmetadata+xml", "application/xml", "text/xml"), ctype
    root = parse_xml(r.content)
    base = f"{daemon.public_url}/sso/saml/{conn.slug}"
    assert root.tag == "{%s}EntityDescriptor" % NS["md"], root.tag
    assert root.get("entityID") == base + "/metadata"
    sp = root.find("md:SPSSODescriptor", NS)
    assert sp is not None
    assert sp.get("AuthnRequestsSigned") == "true", "SP metadata must announce signed requests"
    acs = sp.findall("md:AssertionConsumerService", NS)
    assert [(a.get("Binding"), a.get("Location")) for a in acs] == [
        ("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST", base + "/acs")], acs
    slo = [(s.get("Binding"), s.get("Location")) for s in sp.findall("md:SingleLogoutService", NS)]
    assert ("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect", base + "/slo") in slo, slo
    uses = {kd.get("use") for kd in sp.findall("md:KeyDescriptor", NS)}
    assert uses >= {"signing", "encryption"} or uses == {None}, uses
    assert sp.find("md:KeyDescriptor/ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS) is not None


def test_sp_metadata_unknown_connection_is_404(daemon):
    assert_problem(daemon.get("/sso/saml/no-such-connection/metadata"), 404)
    r = daemon.get("/sso/saml/no-such-connection/login", headers=JSON)
    assert r.status_code == 404, r.text
    r = daemon.post("/sso/saml/no-such-connection/acs", data={"SAMLResponse": "x"}, headers=JSON)
    assert r.status_code == 404, r.text


def test_create_connection_rejects_bad_metadata(saml, daemon):
    idp = LassoIdP()
    no_signing_key = idp_metadata(idp.entity_id, [], idp.sso_url, idp.slo_url)
    for bad in (None, "not xml", "<EntityDescriptor xmlns='urn:oasis:names:tc:SAML:2.0:metadata' "
                "entityID='x'/>", no_signing_key):
        body = saml.connection_body(idp)
        if bad is None:
            body["saml"].pop("idp_metadata_xml")
        else:
            body["saml"]["idp_metadata_xml"] = bad
        r = daemon.post("/api/v1/connections", api_key=saml.org.api_key, json=body)
        assert r.status_code in (400, 422), (bad and bad[:60], r.status_code, r.text[:300])
        assert r.headers["Content-Type"].startswith("application/problem+json"), r.headers
        assert not idbtest.psql(saml.db_url, "SELECT 1 FROM idp_connections WHERE slug = %s",
                                (body["slug"],))


def _ctl_bytes(daemon, *args):
    """idbridgectl with bytes output (its text must still be checked)."""
    p = subprocess.run([str(daemon.ctl_binary), "--config", str(daemon.config_path), *args],
                       capture_output=True, env=daemon.env(), cwd=str(daemon.workdir), timeout=60)
    idbtest.assert_no_sanitizer_report(p.stdout.decode("utf-8", "replace") +
                                       p.stderr.decode("utf-8", "replace"), "idbridgectl")
    assert p.returncode == 0, f"idbridgectl {args} -> {p.returncode}: {p.stdout!r} {p.stderr!r}"
    try:
        p.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise AssertionError(f"idbridgectl {' '.join(args[:2])} printed bytes that are not "
                             f"UTF-8 (garbage memory?): {p.stdout!r}") from None
    return p.stdout


def test_connection_apply_with_idbridgectl(saml, daemon, tmp_path):
    idp = LassoIdP()
    body = saml.connection_body(idp)
    f = tmp_path / "conn.yaml"
    f.write_text(idbtest.to_yaml(body))
    out = _ctl_bytes(daemon, "connection", "apply", "--org", "acme", "--file", str(f))
    assert body["slug"].encode() in out, f"connection apply printed {out!r}"
    r = daemon.get(f"/sso/saml/{body['slug']}/metadata")
    assert r.status_code == 200, r.text
    # apply again with a change: updated by slug, not duplicated
    body["name"] = "Renamed by apply"
    f.write_text(idbtest.to_yaml(body))
    out = _ctl_bytes(daemon, "connection", "apply", "--org", "acme", "--file", str(f))
    assert body["slug"].encode() in out, f"connection apply printed {out!r}"
    rows = idbtest.psql(saml.db_url, "SELECT name FROM idp_connections WHERE slug = %s",
                        (body["slug"],))
    assert rows == [{"name": "Renamed by apply"}], rows
    # and it logs people in
    conn_id = idbtest.psql_value(saml.db_url, "SELECT id::text FROM idp_connections WHERE slug = %s",
                                 (body["slug"],))
    conn = Conn(saml, {"id": conn_id, "slug": body["slug"]}, idp, body["allowed_domains"][0])
    conn.refresh_sp()
    idp.add_sp(conn.sp_md)
    saml.login_ok(conn, "applied-1", attrs(conn.email("applied")))


# --------------------------------------------------------------------------
# SP-initiated login and JIT


def test_login_redirect_carries_a_signed_authn_request(saml, daemon):
    conn = saml.create_connection()
    loc = saml.start_login(conn, "/somewhere")
    req, qs = conn.idp.parse_authn_request(loc)
    assert set(qs) >= {"SAMLRequest", "RelayState", "SigAlg", "Signature"}, qs.keys()
    assert qs["SigAlg"] == [SIG_RSA_SHA256], qs["SigAlg"]
    assert "/somewhere" not in qs["RelayState"][0], "RelayState should be an opaque reference"
    assert len(qs["RelayState"][0]) <= 80, qs["RelayState"]
    assert req.get("ID"), "AuthnRequest without ID"
    assert req.find("saml:Issuer", NS).text == conn.entity_id
    acs = req.get("AssertionConsumerServiceURL")
    assert acs in (None, conn.acs_url), acs
    # lasso (the IdP) checks the signature against the SP metadata; a
    # tampered query must fail there.
    conn.idp.sp_initiated(loc, "sig-check", attrs(conn.email("sig")))
    bad = loc.replace("RelayState=", "RelayState=x", 1)
    with pytest.raises(Exception):
        conn.idp.sp_initiated(bad, "sig-check", attrs(conn.email("sig")))


def test_first_login_creates_user_with_name_and_groups(saml, daemon, db_url):
    conn = saml.create_connection()
    eng, sales, unknown = uniq("Engineering"), uniq("Sales"), uniq("NoSuchGroup")
    saml.create_group(eng)
    saml.create_group(sales)
    email = conn.email("alice")
    mark = saml.activity_mark()
    r, post = saml.sp_login(conn, "alice-nameid", attrs(email, "Alice Example", [eng, sales, unknown]),
                            return_to="/app/home?x=1")
    token = assert_logged_in(r, daemon, "/app/home?x=1")
    c = idbtest.session_cookie(r)
    assert c["attrs"].get("httponly") is True and c["attrs"].get("path") == "/", c

    chk = saml.check(token)
    assert chk.headers["X-Auth-Email"] == email
    assert chk.headers["X-Auth-Name"] == "Alice Example"
    assert chk.headers["X-Auth-Role"] == "readonly"
    assert chk.headers["X-Auth-Org"] == "acme"
    assert auth_groups(chk) == sorted([eng, sales]), chk.headers

    u = saml.user(email)
    assert u is not None, "no user row after the first SSO login"
    assert (u["status"], u["role"], u["created_via"], u["name"]) == \
        ("active", "readonly", "sso", "Alice Example"), u
    assert u["last_login_at"] is not None, u
    assert str(u["id"]) == chk.headers["X-Auth-User-Id"]
    ident = idbtest.psql(db_url, "SELECT * FROM identities WHERE user_id = %s", (u["id"],))
    assert len(ident) == 1, ident
    assert str(ident[0]["connection_id"]) == conn.id and ident[0]["subject"] == "alice-nameid", ident
    assert saml.groups_of(u["id"]) == sorted([(eng, "idp"), (sales, "idp")])
    conn_ids = {str(m["connection_id"]) for m in idbtest.psql(
        db_url, "SELECT connection_id FROM memberships WHERE user_id = %s", (u["id"],))}
    assert conn_ids == {conn.id}, conn_ids
    assert not idbtest.psql(db_url, "SELECT 1 FROM groups WHERE name = %s", (unknown,)), \
        "an unknown IdP group was created although create_missing_groups is off"

    sess = idbtest.psql(db_url, "SELECT auth_method, connection_id::text AS cid, idp_subject, "
                                "idp_session_index FROM sessions WHERE user_id = %s", (u["id"],))
    assert sess == [{"auth_method": "saml", "cid": conn.id, "idp_subject": "alice-nameid",
                     "idp_session_index": post.session_index}], sess

    acts = saml.activity_since(mark)
    ok = [a for a in acts if a["kind"] == "login_success"]
    assert len(ok) == 1 and str(ok[0]["user_id"]) == str(u["id"]), acts
    assert unknown in "".join(a["details"] for a in acts), \
        f"the ignored group {unknown} is not recorded in the activity details: {acts}"
    # lasso's own logger is replaced (bridge/saml.c lasso_log): its debug lines
    # reach the daemon's debug log through idbridge's formatter, which names
    # lasso's source file after the message, not before it.
    lasso_lines = [ln for ln in daemon.log_text().splitlines() if " lasso: " in ln]
    assert any(re.search(r" lasso: .* \(xml\.c:\d+ ", ln) for ln in lasso_lines), lasso_lines[-3:]


def test_second_login_updates_name_and_reconciles_idp_groups(saml, daemon, db_url):
    conn = saml.create_connection()
    eng, sales, ops, support = (uniq(n) for n in ("Eng", "Sales", "Ops", "Support"))
    for g in (eng, sales, ops, support):
        saml.create_group(g)
    email = conn.email("bob")
    t1 = saml.login_ok(conn, "bob-nameid", attrs(email, "Bob One", [eng, sales]))
    uid = saml.user(email)["id"]
    first_login = saml.user(email)["last_login_at"]
    # An admin adds bob by hand to Support, and to Sales as well (both
    # manual): reconciliation must never touch these.
    saml.add_manual_membership(uid, support)
    saml.add_manual_membership(uid, sales)

    t2 = saml.login_ok(conn, "bob-nameid", attrs(email, "Bob Two", [eng, ops]))
    u = saml.user(email)
    assert str(u["id"]) == str(uid), "second login created another user"
    assert u["name"] == "Bob Two", u
    assert u["last_login_at"] > first_login, (first_login, u["last_login_at"])
    assert saml.groups_of(uid) == sorted([(eng, "idp"), (ops, "idp"), (sales, "manual"),
                                          (support, "manual")])
    assert idbtest.psql_value(db_url, "SELECT count(*) FROM identities WHERE user_id = %s",
                              (uid,)) == 1
    assert idbtest.psql_value(db_url, "SELECT count(*) FROM users WHERE lower(email) = %s",
                              (email,)) == 1
    # both sessions see the new name and groups at once (permission cache)
    for tok in (t1, t2):
        chk = saml.check(tok)
        assert chk.status_code == 200, chk.text
        assert chk.headers["X-Auth-Name"] == "Bob Two"
        assert auth_groups(chk) == sorted([eng, ops, sales, support]), chk.headers


def test_group_sync_off_keeps_memberships(saml, daemon):
    conn = saml.create_connection(jit={"sync_groups": False})
    g = uniq("Unsynced")
    saml.create_group(g)
    email = conn.email("nosync")
    saml.login_ok(conn, "nosync", attrs(email, "No Sync", [g]))
    assert saml.groups_of(saml.user(email)["id"]) == []


def test_create_missing_groups_creates_them(saml, daemon, db_url):
    conn = saml.create_connection(jit={"create_missing_groups": True})
    g = uniq("Brand New")
    email = conn.email("creator")
    tok = saml.login_ok(conn, "creator", attrs(email, "Creator", [g]))
    rows = idbtest.psql(db_url, "SELECT created_via FROM groups WHERE name = %s", (g,))
    assert rows == [{"created_via": "idp"}], rows
    assert auth_groups(saml.check(tok)) == [g]
    # the same name twice in other cases: one group, spelled as first asserted
    h = uniq("Mixed Case")
    tok = saml.login_ok(conn, "creator", attrs(email, "Creator", [h, h.upper(), h.lower()]))
    rows = idbtest.psql(db_url, "SELECT name FROM groups WHERE lower(name) = lower(%s)", (h,))
    assert rows == [{"name": h}], rows
    assert auth_groups(saml.check(tok)) == [h]


def test_multi_valued_member_of(saml, daemon):
    conn = saml.create_connection()
    groups = [uniq(f"Multi{i}") for i in range(6)]
    for g in groups:
        saml.create_group(g)
    email = conn.email("multi")
    tok = saml.login_ok(conn, "multi", attrs(email, "Multi Valued", groups))
    assert auth_groups(saml.check(tok)) == sorted(groups)
    assert len(saml.groups_of(saml.user(email)["id"], "idp")) == 6


def test_login_without_groups_has_no_groups_header(saml, daemon):
    conn = saml.create_connection()
    tok = saml.login_ok(conn, "nogroups", attrs(conn.email("nogroups"), "No Groups"))
    chk = saml.check(tok)
    assert "X-Auth-Groups" not in chk.headers or chk.headers["X-Auth-Groups"] == ""


def test_invited_user_becomes_active_on_first_sso_login(saml, daemon, db_url):
    conn = saml.create_connection()
    email = conn.email("invited")
    uid = saml.create_user(email, status="pending", name="Invited Person", created_via="invite")
    saml.login_ok(conn, "invited-nameid", attrs(email, "Invited Person"))
    u = saml.user(email)
    assert str(u["id"]) == str(uid)
    assert u["status"] == "active", u
    assert u["created_via"] == "invite", "created_via must keep how the user was created"
    assert idbtest.psql_value(db_url, "SELECT count(*) FROM identities WHERE user_id = %s "
                              "AND subject = 'invited-nameid'", (uid,)) == 1


@pytest.mark.parametrize("state", ["inactive", "deleted", "locked"])
def test_deactivated_deleted_or_locked_user_is_refused(saml, daemon, state):
    conn = saml.create_connection()
    email = conn.email(f"gone-{state}")
    if state == "locked":
        uid = saml.create_user(email, status="active")
        idbtest.psql(saml.db_url, "UPDATE users SET locked_at = now() WHERE id = %s", (uid,))
    else:
        saml.create_user(email, status=state)
    r, body, acts = saml.expect_refused(
        lambda: saml.sp_login(conn, f"gone-{state}", attrs(email, "Gone"))[0],
        hints=({"inactive": ("deactivated", "inactive"), "deleted": ("deleted",),
                "locked": ("locked",)}[state]),
        statuses=(401, 403))
    assert acts[0]["reason"], acts
    if state == "inactive":
        assert "deactivated" in body["detail"].lower(), body


def test_deactivated_user_with_known_identity_is_refused(saml, daemon):
    conn = saml.create_connection()
    email = conn.email("leaver")
    tok = saml.login_ok(conn, "leaver-nameid", attrs(email, "Leaver"))
    idbtest.psql(saml.db_url, "UPDATE users SET status = 'inactive', deactivated_at = now() "
                              "WHERE lower(email) = %s", (email,))
    saml.expect_refused(lambda: saml.sp_login(conn, "leaver-nameid", attrs(email, "Leaver"))[0],
                        hints=("deactivated", "inactive"),
                        statuses=(401, 403))
    del tok


def test_email_domain_outside_allow_list_is_refused(saml, daemon):
    conn = saml.create_connection()
    r, body, acts = saml.expect_refused(
        lambda: saml.sp_login(conn, "outsider", attrs("eve@not-allowed.example", "Eve"))[0],
        hints=("domain",), statuses=(403, 400, 401))
    assert saml.user("eve@not-allowed.example") is None


def test_email_domain_is_compared_case_insensitively(saml, daemon):
    """Domains are case-insensitive (RFC 5321 2.4): an IdP that sends
    Frank@C1234.TEST is in the allowed domain c1234.test."""
    conn = saml.create_connection()
    email = "Frank@" + conn.domain.upper()
    tok = saml.login_ok(conn, "frank-upper", attrs(email, "Frank"))
    assert saml.check(tok).headers["X-Auth-Email"].lower() == email.lower()


def test_existing_user_of_another_domain_is_never_linked(saml, daemon, acme):
    """The connection may not link (or log in) the org admin, whose domain
    acme.test is not among its allowed domains."""
    conn = saml.create_connection()
    saml.expect_refused(
        lambda: saml.sp_login(conn, "takeover", attrs(acme.admin_email, "Not The Admin"))[0],
        hints=("domain",), statuses=(403, 400, 401))


def test_existing_user_with_same_email_is_linked(saml, daemon, db_url):
    conn = saml.create_connection()
    email = conn.email("Dave.Link")
    uid = saml.create_user(email, status="active", name="Dave", role="train")
    tok = saml.login_ok(conn, "dave-nameid", attrs(email.lower(), "Dave Linked"))
    chk = saml.check(tok)
    assert chk.headers["X-Auth-User-Id"] == str(uid)
    assert chk.headers["X-Auth-Role"] == "train", "linking must keep the user's role"
    assert idbtest.psql_value(db_url, "SELECT count(*) FROM users WHERE lower(email) = lower(%s)",
                              (email,)) == 1
    ident = idbtest.psql(db_url, "SELECT user_id FROM identities WHERE connection_id = %s "
                                 "AND subject = 'dave-nameid'", (conn.id,))
    assert [str(i["user_id"]) for i in ident] == [str(uid)], ident


def test_jit_disabled_refuses_unknown_user_but_links_existing(saml, daemon):
    conn = saml.create_connection(jit={"enabled": False})
    r, body, acts = saml.expect_refused(
        lambda: saml.sp_login(conn, "nobody", attrs(conn.email("nobody"), "Nobody"))[0],
        hints=("not-found", "jit", "unknown-user"), statuses=(403, 401, 404, 400))
    assert ACCOUNT_NOT_FOUND.lower() in body["detail"].lower(), body
    existing = conn.email("known")
    uid = saml.create_user(existing, status="active", name="Known")
    tok = saml.login_ok(conn, "known-nameid", attrs(existing, "Known"))
    assert saml.check(tok).headers["X-Auth-User-Id"] == str(uid)


def test_patch_jit_disabled_takes_effect(saml, daemon):
    conn = saml.create_connection()
    saml.login_ok(conn, "before-patch", attrs(conn.email("before"), "Before"))
    saml.patch_connection(conn, {"jit": {"enabled": False}})
    saml.expect_refused(
        lambda: saml.sp_login(conn, "after-patch", attrs(conn.email("after"), "After"))[0],
        hints=("not-found", "jit", "unknown-user"), statuses=(403, 401, 404, 400))
    # the user created before still gets in (known identity)
    saml.login_ok(conn, "before-patch", attrs(conn.email("before"), "Before"))


def test_disabled_connection_refuses_login(saml, daemon):
    conn = saml.create_connection()
    loc = saml.start_login(conn)
    post = conn.idp.sp_initiated(loc, "disabled", attrs(conn.email("disabled"), "D"))
    saml.patch_connection(conn, {"enabled": False})
    r = saml.post_acs(post)
    assert r.status_code in (400, 403, 404), (r.status_code, r.text[:300])
    assert saml.user(conn.email("disabled")) is None


def _until(pred, timeout=3.0):
    """Polls pred() until it is true or timeout seconds pass; returns its last value."""
    end = time.time() + timeout
    while True:
        v = pred()
        if v or time.time() > end:
            return v
        time.sleep(0.05)


def _conn_cache_hits(daemon):
    text = daemon.get("/metrics").text
    m = re.search(r'^idbridge_connection_cache_requests_total\{result="hit"\} (\d+)$', text, re.M)
    assert m, "no connection cache metric"
    return int(m.group(1))


def _listener_pids(db_url):
    return [r["pid"] for r in idbtest.psql(
        db_url, "SELECT pid FROM pg_stat_activity WHERE application_name = 'idbridge-listen'")]


def test_connection_changed_outside_the_api_is_seen_at_once(saml, daemon, db_url):
    """Connections are served from memory; a change made with plain SQL (or
    idbridgectl, or on another instance) reaches the daemon through the
    trigger's NOTIFY: the disabled connection refuses the very next logins."""
    assert _until(lambda: _listener_pids(db_url)), "no LISTEN connection"
    conn = saml.create_connection()
    saml.login_ok(conn, "cached-1", attrs(conn.email("cached1"), "C1"))  # the row is now in memory
    hits = _conn_cache_hits(daemon)
    saml.login_ok(conn, "cached-1", attrs(conn.email("cached1"), "C1"))
    assert _conn_cache_hits(daemon) >= hits + 2  # login + ACS served from memory
    loc = saml.start_login(conn)
    post = conn.idp.sp_initiated(loc, "cached-2", attrs(conn.email("cached2"), "C2"))
    version = idbtest.psql_value(db_url, "SELECT updated_at FROM idp_connections WHERE id = %s", (conn.id,))
    # as a DBA would: updated_at untouched (a trigger moves it: instances key what they build on it)
    idbtest.psql(db_url, "UPDATE idp_connections SET enabled = false WHERE id = %s", (conn.id,))
    assert idbtest.psql_value(db_url, "SELECT updated_at FROM idp_connections WHERE id = %s",
                              (conn.id,)) > version
    time.sleep(0.2)  # a NOTIFY is asynchronous; PostgreSQL delivers it within milliseconds
    r = saml.post_acs(post)
    assert r.status_code in (400, 403, 404), (r.status_code, r.text[:300])
    assert saml.user(conn.email("cached2")) is None
    idbtest.psql(db_url, "UPDATE idp_connections SET enabled = true WHERE id = %s", (conn.id,))
    assert _until(lambda: saml.sp_login(conn, "cached-3", attrs(conn.email("cached3"), "C3"))[0]
                  .status_code == 303), "re-enabled connection still refused"


def test_connection_cache_survives_losing_its_listener(saml, daemon, db_url):
    """While the LISTEN connection is gone nothing is served from memory (a
    change made meanwhile is seen at once); the listener comes back."""
    conn = saml.create_connection()
    saml.login_ok(conn, "lost-1", attrs(conn.email("lost1"), "L1"))
    pids = _until(lambda: _listener_pids(db_url))
    assert pids
    idbtest.psql(db_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE application_name = 'idbridge-listen'")
    idbtest.psql(db_url, "UPDATE idp_connections SET jit = jsonb_set(jit, '{enabled}', 'false'),"
                         " updated_at = now() WHERE id = %s", (conn.id,))
    time.sleep(0.2)
    saml.expect_refused(
        lambda: saml.sp_login(conn, "lost-2", attrs(conn.email("lost2"), "L2"))[0],
        hints=("not-found", "jit", "account"), statuses=(403, 401, 404, 400))
    new = _until(lambda: [p for p in _listener_pids(db_url) if p not in pids], timeout=10)
    assert new, "the listener did not reconnect"
    assert "lost the PostgreSQL listener connection" in daemon.log_text()
    saml.login_ok(conn, "lost-1", attrs(conn.email("lost1"), "L1"))  # the known user still gets in


def test_connection_cache_stops_serving_when_its_listener_goes_silent(saml, daemon, db_url):
    """A TCP path can die without an error (failover, partition): the
    listener's backend is frozen (SIGSTOP), so NOTIFYs no longer arrive and
    nothing fails. Within seconds the unanswered round trip stops the cache
    from serving, and a change made meanwhile takes effect."""
    conn = saml.create_connection()
    saml.login_ok(conn, "silent-1", attrs(conn.email("silent1"), "S1"))
    pids = _until(lambda: _listener_pids(db_url))
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGSTOP)
    try:
        idbtest.psql(db_url, "UPDATE idp_connections SET jit = jsonb_set(jit, '{enabled}', 'false'),"
                             " updated_at = now() WHERE id = %s", (conn.id,))
        time.sleep(8)  # ALIVE_MS (6 s) + one ping interval
        saml.expect_refused(
            lambda: saml.sp_login(conn, "silent-2", attrs(conn.email("silent2"), "S2"))[0],
            hints=("not-found", "jit", "account"), statuses=(403, 401, 404, 400))
    finally:
        os.kill(pids[0], signal.SIGCONT)
    assert "lost the PostgreSQL listener connection" in daemon.log_text()
    assert _until(lambda: [p for p in _listener_pids(db_url) if p != pids[0]], timeout=15), \
        "the listener did not reconnect"


@pytest.mark.parametrize("signed", ["response", "assertion", "both"])
def test_signature_on_response_or_assertion_or_both_is_accepted(saml, daemon, signed):
    conn = saml.create_connection()
    opts = {"response": dict(sign_assertion=False), "assertion": dict(sign_response=False),
            "both": {}}[signed]
    saml.login_ok(conn, f"signed-{signed}", attrs(conn.email(f"s-{signed}"), "Signed"), **opts)


@pytest.mark.parametrize("sign_response", [True, False])
def test_encrypted_assertion_is_accepted(saml, daemon, sign_response):
    conn = saml.create_connection()
    email = conn.email(f"enc{int(sign_response)}")
    tok = saml.login_ok(conn, f"enc-{sign_response}", attrs(email, "Encrypted"), encrypt=True,
                        sign_response=sign_response)
    assert saml.check(tok).headers["X-Auth-Email"] == email


def test_email_nameid_format_and_uri_attribute_names(saml, daemon):
    conn = saml.create_connection(jit={
        "email_attribute": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        "name_attribute": "http://schemas.microsoft.com/identity/claims/displayname",
        "group_attribute": "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"})
    g = uniq("EntraGroup")
    saml.create_group(g)
    email = conn.email("entra")
    tok = saml.login_ok(conn, email, [
        ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress", [email],
         "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"),
        ("http://schemas.microsoft.com/identity/claims/displayname", ["Entra User"],
         "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"),
        ("http://schemas.microsoft.com/ws/2008/06/identity/claims/groups", [g],
         "urn:oasis:names:tc:SAML:2.0:attrname-format:uri")],
        nameid_format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        sign_response=False)
    chk = saml.check(tok)
    assert chk.headers["X-Auth-Name"] == "Entra User" and auth_groups(chk) == [g]


# --------------------------------------------------------------------------
# pysaml2 as the IdP


def test_pysaml2_idp_first_and_second_login(saml, daemon, tmp_path, db_url):
    idp = Pysaml2IdP(tmp_path / "pysaml2")
    conn = saml.create_connection(idp=idp, jit=JIT_ATTRIBUTES)
    g1, g2, g3 = uniq("P2-A"), uniq("P2-B"), uniq("P2-C")
    for g in (g1, g2, g3):
        saml.create_group(g)
    email = conn.email("carol")

    loc = saml.start_login(conn, "/p2")
    post = idp.sp_initiated(loc, "carol-p2", {"mail": [email], "displayName": ["Carol P"],
                                              "memberOf": [g1, g2]})
    tok = assert_logged_in(saml.post_acs(post), daemon, "/p2")
    chk = saml.check(tok)
    assert chk.headers["X-Auth-Email"] == email and chk.headers["X-Auth-Name"] == "Carol P"
    assert auth_groups(chk) == sorted([g1, g2])
    u = saml.user(email)
    assert (u["status"], u["created_via"], u["role"]) == ("active", "sso", "readonly"), u

    loc = saml.start_login(conn, "/p2")
    post = idp.sp_initiated(loc, "carol-p2", {"mail": [email], "displayName": ["Carol Q"],
                                              "memberOf": [g2, g3]})
    tok2 = assert_logged_in(saml.post_acs(post), daemon, "/p2")
    chk = saml.check(tok2)
    assert chk.headers["X-Auth-Name"] == "Carol Q"
    assert auth_groups(chk) == sorted([g2, g3])
    assert saml.groups_of(u["id"]) == sorted([(g2, "idp"), (g3, "idp")])
    assert idbtest.psql_value(db_url, "SELECT count(*) FROM identities WHERE user_id = %s",
                              (u["id"],)) == 1


def test_pysaml2_idp_jit_rules(saml, daemon, tmp_path):
    """Invited user activates, deactivated refused, foreign domain refused,
    JIT off refused — with responses pysaml2 built."""
    idp = Pysaml2IdP(tmp_path / "pysaml2")
    conn = saml.create_connection(idp=idp, jit=JIT_ATTRIBUTES)

    def login(nameid, email):
        loc = saml.start_login(conn)
        return saml.post_acs(idp.sp_initiated(loc, nameid, {"mail": [email],
                                                            "displayName": ["P2 User"]}))

    invited = conn.email("p2-invited")
    uid = saml.create_user(invited, status="pending", created_via="invite")
    assert_logged_in(login("p2-invited", invited), daemon)
    assert saml.user(invited)["status"] == "active" and str(saml.user(invited)["id"]) == str(uid)

    gone = conn.email("p2-gone")
    saml.create_user(gone, status="inactive")
    saml.expect_refused(lambda: login("p2-gone", gone),
                        hints=("deactivated", "inactive"),
                        statuses=(401, 403))
    saml.expect_refused(lambda: login("p2-foreign", "x@elsewhere.example"), hints=("domain",),
                        statuses=(400, 401, 403))
    saml.patch_connection(conn, {"jit": {"enabled": False}})
    r, body, _ = saml.expect_refused(lambda: login("p2-new", conn.email("p2-new")),
                                     hints=("not-found", "jit", "unknown-user"),
                                     statuses=(400, 401, 403, 404))
    assert ACCOUNT_NOT_FOUND.lower() in body["detail"].lower(), body


# --------------------------------------------------------------------------
# IdP-initiated, RelayState and return_to


def test_idp_initiated_refused_unless_allowed(saml, daemon):
    conn = saml.create_connection()
    saml.expect_refused(lambda: saml.idp_login(conn, "unsolicited", attrs(conn.email("u"), "U"))[0],
                        hints=("unsolicited", "idp-initiated", "in-response-to", "inresponseto",
                               "initiated", "request"))


def test_idp_initiated_accepted_when_allowed(saml, daemon):
    conn = saml.create_connection(saml={"allow_idp_initiated": True})
    r, _ = saml.idp_login(conn, "unsol-ok", attrs(conn.email("unsol"), "Unsol"),
                          relay_state="/dashboard?a=b")
    assert_logged_in(r, daemon, "/dashboard?a=b")
    r, _ = saml.idp_login(conn, "unsol-ok", attrs(conn.email("unsol"), "Unsol"), relay_state=None)
    assert_logged_in(r, daemon, None)
    assert r.headers["Location"] in ("/", daemon.public_url + "/"), r.headers["Location"]


@pytest.mark.parametrize("relay", ["https://evil.example/steal", "//evil.example/x",
                                   "/\\evil.example", "javascript:alert(1)"])
def test_idp_initiated_relay_state_to_another_origin_is_not_followed(saml, daemon, relay):
    conn = saml.create_connection(saml={"allow_idp_initiated": True})
    r, _ = saml.idp_login(conn, "relay-" + secrets.token_hex(2), attrs(conn.email("relay"), "R"),
                          relay_state=relay)
    loc = r.headers.get("Location", "")
    assert "evil.example" not in loc and "javascript" not in loc, (r.status_code, loc)
    assert r.status_code < 500, r.text


@pytest.mark.parametrize("target", ["https://evil.example/steal", "//evil.example/x",
                                    "/\\evil.example/x", "https://evil.example@127.0.0.1/"])
def test_return_to_another_origin_is_never_followed(saml, daemon, target):
    conn = saml.create_connection()
    path = conn.base + "/login?" + urllib.parse.urlencode({"return_to": target})
    r = daemon.get(path, headers=JSON)
    assert r.status_code < 500, r.text
    if r.status_code in (302, 303):
        loc = r.headers["Location"]
        assert loc.startswith(conn.idp.sso_url), loc
        post = conn.idp.sp_initiated(loc, "rt-" + secrets.token_hex(2),
                                     attrs(conn.email("rt"), "RT"))
        r2 = saml.post_acs(post)
        final = r2.headers.get("Location", "")
        assert "evil.example" not in final, f"open redirect: return_to={target} -> {final}"
    else:
        assert r.status_code == 400, (r.status_code, r.text[:300])


def test_allowed_origin_return_to_is_followed(make_daemon, acme, db_url):
    d = make_daemon(config={"server": {"allowed_origins": ["https://app.example.test"]}})
    h = SamlHarness(d, acme, db_url)
    conn = h.create_connection()
    tok_resp, _ = h.sp_login(conn, "origin-ok", attrs(conn.email("origin"), "O"),
                             return_to="https://app.example.test/after")
    assert tok_resp.status_code == 303, tok_resp.text
    assert tok_resp.headers["Location"] == "https://app.example.test/after"


# --------------------------------------------------------------------------
# two instances sharing PostgreSQL and Redis


@pytest.fixture
def two_instances(make_daemon, acme, db_url, tmp_path):
    """Two idbridge instances behind one public URL (as behind a load
    balancer): same database, Redis, SP key pair."""
    keys = {"saml": {"sp_key_file": str(tmp_path / "sp.key"),
                     "sp_cert_file": str(tmp_path / "sp.crt")}}
    public = "http://idbridge.lb.example.test"
    a = make_daemon(config=keys, public_url=public)
    b = make_daemon(config=keys, public_url=public)
    return a, b, SamlHarness(a, acme, db_url)


def test_login_started_on_one_instance_finishes_on_the_other(two_instances):
    a, b, h = two_instances
    conn = h.create_connection()
    # both instances serve the same SP metadata
    assert b.get(conn.base + "/metadata").text == conn.sp_md
    email = conn.email("hop")
    r, post = h.sp_login(conn, "hop-nameid", attrs(email, "Hop"), daemon=a, acs_daemon=b)
    tok = assert_logged_in(r, b)
    for d in (a, b):
        chk = d.get("/auth/check", session_token=tok)
        assert chk.status_code == 200 and chk.headers["X-Auth-Email"] == email, chk.text
    # the other way round
    r, _ = h.sp_login(conn, "hop-nameid", attrs(email, "Hop"), daemon=b, acs_daemon=a)
    assert_logged_in(r, a)


def test_replay_to_the_second_instance_is_refused(two_instances):
    a, b, h = two_instances
    conn = h.create_connection()
    r, post = h.sp_login(conn, "replay2", attrs(conn.email("replay2"), "R2"), daemon=a,
                         acs_daemon=a)
    assert_logged_in(r, a)
    # the request it answered is consumed: refused as a replay, or as a
    # response nobody asked for
    h.expect_refused(lambda: h.post_acs(post, daemon=b),
                     hints=("replay", "used", "in-response-to", "inresponseto", "request",
                            "unsolicited"))


# --------------------------------------------------------------------------
# IdP signing key rollover and metadata sources


def test_idp_key_rollover_with_two_signing_certificates(saml, daemon):
    k1, k2 = keypair("rollover-old"), keypair("rollover-new")
    idp = LassoIdP(keys=[k1, k2])
    conn = saml.create_connection(idp=idp)
    email = conn.email("roll")
    saml.login_ok(conn, "roll", attrs(email, "Roll"), signing_key=k1)
    saml.login_ok(conn, "roll", attrs(email, "Roll"), signing_key=k2)
    saml.login_ok(conn, "roll", attrs(email, "Roll"), signing_key=k2, sign_response=False)
    # the rollover ends: metadata with only the new key; the old one is refused
    saml.patch_connection(conn, {"saml": {"idp_metadata_xml": idp.metadata(keys=[k2])}})
    saml.expect_refused(lambda: saml.sp_login(conn, "roll", attrs(email, "Roll"),
                                              signing_key=k1)[0], hints=("signature",))
    saml.login_ok(conn, "roll", attrs(email, "Roll"), signing_key=k2)


def test_only_the_first_certificate_of_a_signing_key_descriptor_verifies(saml, daemon):
    """Metadata that carries the signing certificate's chain (leaf, then the
    issuing CA) or further X509Data / KeyInfo elements: lasso verifies with
    the first certificate only, and so must every key idbridge hands it.
    A response signed with the CA's key (or any other listed key) is refused."""
    leaf, ca, extra = keypair("chain-leaf"), keypair("chain-ca"), keypair("chain-extra")
    idp = LassoIdP(keys=[leaf])
    md = idp.metadata().replace(
        f"{leaf.cert_b64}</ds:X509Certificate></ds:X509Data>",
        f"{leaf.cert_b64}</ds:X509Certificate><ds:X509Certificate>{ca.cert_b64}</ds:X509Certificate>"
        f"</ds:X509Data><ds:X509Data><ds:X509Certificate>{extra.cert_b64}</ds:X509Certificate>"
        f"</ds:X509Data>", 1)
    assert ca.cert_b64 in md and extra.cert_b64 in md
    conn = saml.create_connection(idp=idp, metadata_xml=md)
    email = conn.email("chain")
    saml.login_ok(conn, "chain", attrs(email, "Chain"), signing_key=leaf)
    for k in (ca, extra):
        saml.expect_refused(lambda: saml.sp_login(conn, "chain", attrs(email, "Chain"), signing_key=k)[0],
                            hints=("signature",))
        saml.expect_refused(lambda: saml.sp_login(conn, "chain", attrs(email, "Chain"), signing_key=k,
                                                  sign_response=False)[0], hints=("signature",))


def test_expired_idp_metadata_is_not_used(saml, daemon):
    """validUntil in the past: the connection cannot be saved with it, or
    no login goes through it."""
    idp = LassoIdP()
    body = saml.connection_body(idp, metadata_xml=idp.metadata(valid_until="2001-01-01T00:00:00Z"))
    r = daemon.post("/api/v1/connections", api_key=saml.org.api_key, json=body)
    assert r.status_code < 500, r.text
    if r.status_code in (400, 422):
        return
    assert r.status_code == 201, r.text
    conn = Conn(saml, r.json(), idp, body["allowed_domains"][0])
    mark, before = saml.activity_mark(), saml.snapshot()
    resp = daemon.get(conn.base + "/login", headers=JSON)
    if resp.status_code in (302, 303):
        conn.refresh_sp()
        idp.add_sp(conn.sp_md)
        post = idp.sp_initiated(resp.headers["Location"], "stale", attrs(conn.email("stale"), "S"))
        saml.assert_refused(saml.post_acs(post), ("metadata",), before, mark)
    else:
        assert 400 <= resp.status_code < 500 or resp.status_code == 503, resp.text


def test_idp_metadata_that_expires_after_saving_stops_logins(saml, daemon):
    """validUntil passes while the connection is in use: no login is
    accepted on metadata past its validUntil."""
    idp = LassoIdP()
    valid_until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))
    conn = saml.create_connection(idp=idp, metadata_xml=idp.metadata(valid_until=valid_until))
    loc = saml.start_login(conn)
    post = idp.sp_initiated(loc, "expiring", attrs(conn.email("expiring"), "Exp"))
    time.sleep(max(0.0, calendar.timegm(time.strptime(valid_until, "%Y-%m-%dT%H:%M:%SZ"))
                   - time.time() + 1.2))
    saml.expect_refused(lambda: saml.post_acs(post), ("metadata",), statuses=(400, 403, 503))


def test_idp_metadata_from_url(saml, daemon):
    idp = LassoIdP()
    with MetadataServer(idp.metadata()) as md:
        conn = saml.create_connection(idp=idp, metadata_url=md.url + "/metadata")
        assert md.requests, "the daemon did not fetch the IdP metadata URL"
        assert md.requests[0][1] == "/metadata", md.requests
    saml.login_ok(conn, "from-url", attrs(conn.email("url"), "From URL"))


# --------------------------------------------------------------------------
# single logout


def _logout(daemon, token):
    """The browser's logout form (no JSON): POST /logout with the cookie."""
    return daemon.post("/logout", session_token=token, data={"logout": "1"})


def test_sp_initiated_single_logout(saml, daemon):
    conn = saml.create_connection()
    email = conn.email("slo-sp")
    r, post = saml.sp_login(conn, "slo-sp-nameid", attrs(email, "SLO SP"))
    tok = assert_logged_in(r, daemon)

    r = _logout(daemon, tok)
    assert r.status_code in (302, 303), (r.status_code, r.text[:300])
    loc = r.headers["Location"]
    assert loc.startswith(conn.idp.slo_url + "?"), f"logout did not go to the IdP SLO: {loc}"
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
    assert set(q) >= {"SAMLRequest", "SigAlg", "Signature"}, q.keys()
    assert q["SigAlg"] == [SIG_RSA_SHA256], q["SigAlg"]
    # the local session is over at once
    assert saml.check(tok).status_code == 401
    # lasso (the IdP) verifies the signed LogoutRequest and answers it
    back = conn.idp.answer_logout(loc)
    lo = conn.idp.last_logout_request
    assert lo.request.nameId.content == "slo-sp-nameid"
    assert list(lo.request.sessionIndexes or [lo.request.sessionIndex]) == [post.session_index]
    assert back.startswith(conn.sp_info.slo_url + "?SAMLResponse=") or \
        back.startswith(conn.sp_info.slo_url + "?"), back
    r = daemon.get(urllib.parse.urlsplit(back).path + "?" + urllib.parse.urlsplit(back).query,
                   headers={"Accept": "text/html"})
    assert r.status_code in (200, 302, 303), (r.status_code, r.text[:300])
    assert saml.check(tok).status_code == 401


def test_sp_initiated_single_logout_ends_the_session_on_every_instance(two_instances):
    a, b, h = two_instances
    conn = h.create_connection()
    tok = h.login_ok(conn, "slo-sp-2", attrs(conn.email("slo-sp-2"), "SLO SP 2"), daemon=a,
                     acs_daemon=a)
    assert b.get("/auth/check", session_token=tok).status_code == 200  # cached on b too
    r = _logout(a, tok)
    assert r.status_code in (302, 303), (r.status_code, r.text[:300])
    assert r.headers["Location"].startswith(conn.idp.slo_url + "?")
    for d in (a, b):
        assert d.get("/auth/check", session_token=tok).status_code == 401, \
            f"session still valid on {d.url} after logout"
    back = conn.idp.answer_logout(r.headers["Location"])
    parts = urllib.parse.urlsplit(back)
    r = b.get(parts.path + "?" + parts.query)  # the IdP's answer lands on the other instance
    assert r.status_code in (200, 302, 303), (r.status_code, r.text[:300])


def test_logout_without_idp_slo_endpoint_is_local(saml, daemon):
    idp = LassoIdP(slo=False)
    conn = saml.create_connection(idp=idp)
    tok = saml.login_ok(conn, "slo-none", attrs(conn.email("slo-none"), "No SLO"))
    r = _logout(daemon, tok)
    assert r.status_code in (200, 302, 303), r.text
    assert "SAMLRequest" not in r.headers.get("Location", "")
    assert saml.check(tok).status_code == 401


def test_idp_initiated_single_logout_on_all_instances(two_instances):
    a, b, h = two_instances
    conn = h.create_connection()
    email = conn.email("slo-idp")
    sidx = "_idp-session-" + secrets.token_hex(6)
    # one IdP session, two SP sessions (one per instance), plus a bystander
    t1 = h.login_ok(conn, "slo-idp-nameid", attrs(email, "SLO"), daemon=a, acs_daemon=a,
                    session_index=sidx)
    t2 = h.login_ok(conn, "slo-idp-nameid", attrs(email, "SLO"), daemon=b, acs_daemon=b,
                    session_index=sidx)
    other = h.login_ok(conn, "bystander", attrs(conn.email("bystander"), "Other"), daemon=a,
                       acs_daemon=a)
    for d in (a, b):
        for t in (t1, t2, other):
            assert d.get("/auth/check", session_token=t).status_code == 200

    url = conn.idp.logout_request(conn.entity_id, "slo-idp-nameid")
    parts = urllib.parse.urlsplit(url)
    assert parts.path == conn.base + "/slo", url
    r = b.get(parts.path + "?" + parts.query)
    assert r.status_code in (302, 303), (r.status_code, r.text[:300])
    loc = r.headers["Location"]
    assert loc.startswith(conn.idp.slo_url + "?"), loc
    assert "SAMLResponse=" in loc
    for d in (a, b):
        for t in (t1, t2):
            chk = d.get("/auth/check", session_token=t)
            assert chk.status_code == 401, f"session survived IdP-initiated SLO on {d.url}"
        assert d.get("/auth/check", session_token=other).status_code == 200, \
            "SLO ended another user's session"
    # The LogoutResponse is signed, answers our request and says Success
    # (the sessions did end): lasso, as the IdP, checks all three.
    try:
        conn.idp.process_logout_response(loc)
    except Exception as exc:  # noqa: BLE001
        status = _logout_response_status(loc)
        raise AssertionError(f"the IdP refuses the SP's LogoutResponse ({exc!r}); its status "
                             f"is {status}") from None


def _logout_response_status(url):
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    root = parse_xml(zlib.decompress(base64.b64decode(q["SAMLResponse"][0]), -15))
    return [c.get("Value") for c in root.iter("{%s}StatusCode" % NS["samlp"])]


def test_idp_initiated_logout_with_bad_signature_is_refused(saml, daemon):
    conn = saml.create_connection()
    tok = saml.login_ok(conn, "slo-bad", attrs(conn.email("slo-bad"), "Bad"))
    url = conn.idp.logout_request(conn.entity_id, "slo-bad")
    parts = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qs(parts.query)
    sig = q["Signature"][0]
    q["Signature"] = [("A" if sig[0] != "A" else "B") + sig[1:]]
    r = daemon.get(parts.path + "?" + urllib.parse.urlencode({k: v[0] for k, v in q.items()}),
                   headers=JSON)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert saml.check(tok).status_code == 200, "a forged LogoutRequest ended the session"
