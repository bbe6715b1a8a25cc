# SPDX-License-Identifier: AGPL-3.0-or-later
"""Issue 5 over HTTP: a connection built from a preset maps what a real IdP
(python3-lasso) sends, a map change shows on the next login, and the dry run
(test-mapping) predicts exactly what the real login then does."""

import pytest

import idbtest
from saml_fixtures import JSON, SamlHarness, auth_groups

ENTRA = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"
ENTRA_GROUPS = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"
ENTRA_DISPLAY = "http://schemas.microsoft.com/identity/claims/displayname"
ADMINS_OID = "9f1c6c2e-0000-4000-8000-00000000a001"
SUPPORT_OID = "9f1c6c2e-0000-4000-8000-00000000a002"


@pytest.fixture(scope="module")
def saml(daemon, acme, db_url):
    return SamlHarness(daemon, acme, db_url)


def entra_attrs(email, given, surname, groups, display=None):
    a = {ENTRA + "emailaddress": [email], ENTRA + "givenname": [given], ENTRA + "surname": [surname],
         ENTRA_GROUPS: list(groups),
         # an attribute nothing maps: its value must never be shown
         "http://schemas.microsoft.com/identity/claims/tenantid": ["secret-tenant-id"]}
    if display:
        a[ENTRA_DISPLAY] = [display]
    return a


def entra_connection(saml, **jit):
    """A connection from the entra-id preset; jit carries only overrides."""
    body_jit = {"enabled": True, "sync_groups": True,
                "group_mapping": [{"idp": ADMINS_OID, "group": "Acme Admins"},
                                  {"idp": SUPPORT_OID, "group": "Support Team"}],
                "role_rules": [{"group": "Acme Admins", "role": "admin"}],
                "max_role": "configure"}
    body_jit.update(jit)
    conn = saml.create_connection(jit=None, preset="entra-id")
    # create_connection sends the generic attribute names; replace the whole
    # jit with the preset-based one.
    r = saml.daemon.request("PATCH", f"/api/v1/connections/{conn.obj['id']}", api_key=saml.org.api_key,
                          json={"jit": body_jit})
    assert r.status_code == 200, r.text
    jit_now = r.json()["jit"]
    for k in ("email_attribute", "name_attribute", "group_attribute"):
        if k in jit_now:
            r = saml.daemon.request("PATCH", f"/api/v1/connections/{conn.obj['id']}", api_key=saml.org.api_key,
                                  json={"jit": {k: None}})
            assert r.status_code == 200, r.text
    conn.refresh_sp()
    return conn


def test_presets_are_listed(saml, daemon):
    r = daemon.get("/api/v1/attribute-presets", api_key=saml.org.api_key)
    assert r.status_code == 200, r.text
    names = {p["name"] for p in r.json()["items"]}
    for want in ("entra-id", "okta", "adfs", "google-workspace", "keycloak", "onelogin", "jumpcloud", "ping",
                 "auth0", "generic-saml", "generic-oidc"):
        assert want in names, names
    entra = next(p for p in r.json()["items"] if p["name"] == "entra-id")
    assert entra["source"].startswith("https://"), entra


def test_unknown_preset_is_a_field_error(saml, daemon):
    conn = saml.create_connection()
    r = daemon.request("PATCH", f"/api/v1/connections/{conn.obj['id']}", api_key=saml.org.api_key, json={"preset": "nope"})
    assert r.status_code == 400, r.text
    assert any(e["field"] == "preset" for e in r.json()["errors"]), r.json()


def test_invalid_regex_is_a_field_error(saml, daemon):
    conn = saml.create_connection()
    r = daemon.request("PATCH", f"/api/v1/connections/{conn.obj['id']}", api_key=saml.org.api_key,
                     json={"jit": {"group_mapping": [{"idp": "re:([a-z", "group": "x"}]}})
    assert r.status_code == 400, r.text
    fields = [e["field"] for e in r.json()["errors"]]
    assert any(f.startswith("jit.group_mapping") for f in fields), fields


def test_entra_preset_maps_claim_uris_to_user_groups_and_role(saml, daemon, db_url):
    conn = entra_connection(saml)
    saml.create_group("Acme Admins")
    saml.create_group("Support Team")
    email = conn.email("grace")
    token = saml.login_ok(conn, "entra-oid-grace", entra_attrs(email, "Grace", "Hopper", [ADMINS_OID, SUPPORT_OID]))
    r = saml.check(token)
    assert r.status_code == 200, r.text
    assert r.headers["X-Auth-Email"] == email
    # name from the given + family name template (no displayname claim)
    assert r.headers["X-Auth-Name"] == "Grace Hopper"
    assert sorted(auth_groups(r)) == ["Acme Admins", "Support Team"]
    # the role rule says admin, the connection caps at configure
    assert r.headers["X-Auth-Role"] == "configure"
    # the admin sees what was sent: mapped values, the rest by name only
    got = daemon.get(f"/api/v1/connections/{conn.obj['id']}", api_key=saml.org.api_key).json()
    seen = got["last_login"]["attributes"]
    assert seen[ENTRA + "emailaddress"] == [email]
    tenant = seen["http://schemas.microsoft.com/identity/claims/tenantid"]
    assert "secret-tenant-id" not in str(tenant), tenant
    # membership rows say which connection manages them
    rows = idbtest.psql(db_url, "SELECT m.source::text AS source, m.connection_id::text AS cid FROM memberships m"
                        " JOIN users u ON u.id = m.user_id WHERE lower(u.email) = lower(%s)", (email,))
    assert rows and all(r["source"] == "idp" and r["cid"] == conn.obj["id"] for r in rows), rows


def test_changing_the_map_changes_the_next_login(saml, daemon):
    conn = entra_connection(saml)
    saml.create_group("Acme Admins")
    saml.create_group("Support Team")
    email = conn.email("linus")
    attrs = entra_attrs(email, "Linus", "T", [ADMINS_OID, SUPPORT_OID])
    token = saml.login_ok(conn, "entra-oid-linus", attrs)
    assert sorted(auth_groups(saml.check(token))) == ["Acme Admins", "Support Team"]
    # Support's object id no longer maps, and mapping-only drops the rest.
    r = daemon.request("PATCH", f"/api/v1/connections/{conn.obj['id']}", api_key=saml.org.api_key,
                     json={"jit": {"group_mapping": [{"idp": ADMINS_OID, "group": "Acme Admins"}],
                                   "group_mapping_only": True}})
    assert r.status_code == 200, r.text
    token = saml.login_ok(conn, "entra-oid-linus", attrs)
    assert auth_groups(saml.check(token)) == ["Acme Admins"]


def test_dry_run_matches_the_real_login(saml, daemon, db_url):
    conn = entra_connection(saml)
    saml.create_group("Acme Admins")
    saml.create_group("Support Team")
    email = conn.email("ada")
    attrs = entra_attrs(email, "Ada", "Lovelace", [ADMINS_OID, "unmapped-object-id"], display="Ada L.")
    before = saml.snapshot()
    r = daemon.post(f"/api/v1/connections/{conn.obj['id']}/test-mapping", api_key=saml.org.api_key,
                    json={"attributes": attrs, "subject": "entra-oid-ada"})
    assert r.status_code == 200, r.text
    dry = r.json()
    assert saml.snapshot() == before, "the dry run wrote something"
    assert dry["profile"]["email"] == email
    assert dry["jit"]["decision"] == "create", dry["jit"]
    # the engine explains which attribute fed the e-mail
    assert dry["explain"]["email"]["source"] == ENTRA + "emailaddress", dry["explain"]["email"]

    token = saml.login_ok(conn, "entra-oid-ada", attrs)
    real = saml.check(token)
    assert real.headers["X-Auth-Name"] == dry["profile"]["name"]
    assert real.headers["X-Auth-Role"] == dry["profile"]["role"] == dry["jit"]["role"]
    assert sorted(auth_groups(real)) == sorted(dry["jit"]["groups_after"])
    assert dry["jit"]["groups_added"] == ["Acme Admins"]

    # For the now existing user, the dry run of a login without Admins says
    # what would be removed — and nothing is.
    attrs2 = entra_attrs(email, "Ada", "Lovelace", [SUPPORT_OID], display="Ada L.")
    r = daemon.post(f"/api/v1/connections/{conn.obj['id']}/test-mapping", api_key=saml.org.api_key,
                    json={"attributes": attrs2, "subject": "entra-oid-ada"})
    j = r.json()["jit"]
    assert j["decision"] == "existing" and j["groups_removed"] == ["Acme Admins"] and j["groups_added"] == ["Support Team"], j
    assert sorted(auth_groups(saml.check(token))) == ["Acme Admins"]


def test_dry_run_refusal_reason(saml, daemon):
    conn = entra_connection(saml)
    r = daemon.post(f"/api/v1/connections/{conn.obj['id']}/test-mapping", api_key=saml.org.api_key,
                    json={"attributes": entra_attrs("mallory@elsewhere.test", "M", "X", [])})
    assert r.status_code == 200, r.text
    j = r.json()["jit"]
    assert j["decision"] == "refuse" and j["reason"] == "domain_not_allowed", j


def test_dry_run_bad_input(saml, daemon):
    conn = saml.create_connection()
    r = daemon.post(f"/api/v1/connections/{conn.obj['id']}/test-mapping", api_key=saml.org.api_key,
                    json={"attributes": {"email": [5]}})
    assert r.status_code == 400, r.text
    r = daemon.post(f"/api/v1/connections/{conn.obj['id']}/test-mapping", api_key=saml.org.api_key,
                    json={"attributes": "x"})
    assert r.status_code == 400, r.text
    r = daemon.post("/api/v1/connections/00000000-0000-4000-8000-000000000000/test-mapping",
                    api_key=saml.org.api_key, json={"attributes": {}})
    assert r.status_code == 404, r.text


def test_home_realm_discovery(saml, daemon):
    conn = saml.create_connection()
    r = daemon.get(f"/sso/discover?email=someone@{conn.domain}&return_to=/app")
    assert r.status_code == 303, r.text
    assert r.headers["Location"] == f"/sso/saml/{conn.obj['slug']}/login?return_to=%2Fapp"
    r = daemon.get("/sso/discover?email=someone@nobody-owns-this.test", headers=JSON)
    assert r.status_code == 404 and r.json()["type"].endswith("sso-no-connection"), r.text
    r = daemon.get("/sso/discover?email=not-an-email", headers=JSON)
    assert r.status_code == 400, r.text
    # another origin is never carried along
    r = daemon.get(f"/sso/discover?email=a@{conn.domain}&return_to=https://evil.example/")
    assert r.status_code == 303 and "evil" not in r.headers["Location"], r.headers
