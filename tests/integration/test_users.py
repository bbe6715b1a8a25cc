# SPDX-License-Identifier: AGPL-3.0-or-later
"""User administration over the admin REST API (issue 6): listing, editing,
deactivation, deletion, unlock, API keys, audit log and authorisation."""

import time

import psycopg2
import pytest

from users_fixtures import *  # noqa: F401,F403
from users_fixtures import Api, Org, field_errors, login, mail_text, uniq


# --- authorisation -------------------------------------------------------------

def test_users_endpoints_refuse_non_admin(acme):
    email = uniq("plain")
    acme.create_user(email, role="configure")
    api = login(acme.d, email, "User-password-1")
    assert api.get("users").status_code == 403
    assert api.post("users/invite", {"email": uniq(), "role": "readonly"}).status_code == 403
    assert api.get("groups").status_code == 403
    assert api.get("audit").status_code == 403


def test_unauthenticated_caller_gets_401(daemon):
    r = daemon.get("/api/v1/users")
    assert r.status_code == 401
    assert r.headers["Content-Type"].startswith("application/problem+json")


def test_cookie_caller_without_csrf_header_is_refused(acme):
    uid = acme.create_user(uniq("csrf"))
    r = acme.admin.s.post(acme.d.url + "/api/v1/users/%s/deactivate" % uid, json={}, timeout=30)
    assert r.status_code == 403
    assert "CSRF" in r.json()["detail"]
    assert acme.d.db.value("SELECT status::text FROM users WHERE id = %s", uid) == "active"


def test_group_manager_without_users_manage_may_manage_groups_only(acme):
    g = acme.admin.post("groups", {"name": "Group admins " + uniq("g"), "permissions": ["groups.manage"]}).json()
    email = uniq("gm")
    acme.create_user(email, role="readonly", groups=[g["id"]])
    api = login(acme.d, email, "User-password-1")
    assert api.get("groups").status_code == 200
    assert api.get("users").status_code == 403


def test_ids_of_another_organisation_are_not_found(acme, globex):
    other = globex.create_user("someone@globex.test")
    for method, path in [("GET", "users/%s" % other), ("PATCH", "users/%s" % other),
                         ("POST", "users/%s/deactivate" % other), ("POST", "users/%s/unlock" % other),
                         ("GET", "users/%s/api-keys" % other), ("DELETE", "users/%s" % other)]:
        body = {"name": "x"} if method == "PATCH" else ({"password": acme.admin_password} if method == "DELETE"
                                                        else ({} if method == "POST" else None))
        r = acme.admin.call(method, path, json=body)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    assert globex.d.db.value("SELECT status::text FROM users WHERE id = %s", other) == "active"
    # and a list never shows them
    items = acme.admin.get("users", params={"q": "globex.test"}).json()["items"]
    assert items == []


def test_malformed_id_is_not_found(acme):
    assert acme.admin.get("users/not-a-uuid").status_code == 404


# --- listing ---------------------------------------------------------------------

def test_list_filters_and_pagination(acme):
    db = acme.d.db
    tag = uniq("list").split("@")[0]
    g = acme.admin.post("groups", {"name": "Listers " + tag}).json()
    ids = []
    for i in range(7):
        ids.append(acme.create_user("%s-%d@acme.test" % (tag, i), role="train" if i % 2 else "readonly",
                                    name="Lister %d" % i, groups=[g["name"]] if i < 3 else []))
    db.query("UPDATE users SET last_login_at = now() - interval '10 days' WHERE id = ANY(%s::uuid[])", ids[:4])
    db.query("UPDATE users SET last_login_at = now() - interval '100 days' WHERE id = ANY(%s::uuid[])", ids[4:])

    def emails(**params):
        r = acme.admin.get("users", params=params)
        assert r.status_code == 200, r.text
        return [u["email"] for u in r.json()["items"]]

    assert len(emails(q=tag)) == 7
    assert emails(q=tag.upper()) == emails(q=tag)  # case-insensitive
    assert emails(q="Lister 3") == ["%s-3@acme.test" % tag]  # matches the name
    assert set(emails(q=tag, role="train")) == {"%s-%d@acme.test" % (tag, i) for i in (1, 3, 5)}
    assert set(emails(q=tag, group=g["id"])) == {"%s-%d@acme.test" % (tag, i) for i in range(3)}
    assert set(emails(q=tag, group=g["name"].lower())) == {"%s-%d@acme.test" % (tag, i) for i in range(3)}
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 30 * 86400))
    assert set(emails(q=tag, last_login_after=since)) == {"%s-%d@acme.test" % (tag, i) for i in range(4)}
    assert set(emails(q=tag, last_login_before=since)) == {"%s-%d@acme.test" % (tag, i) for i in range(4, 7)}
    # group (3 members) drives, the login range filters each candidate (and the other way round)
    assert set(emails(group=g["id"], last_login_after=since)) == {"%s-%d@acme.test" % (tag, i) for i in range(3)}
    assert emails(group=g["id"], last_login_before=since) == []
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 200 * 86400))
    assert set(emails(q=tag, last_login_after=old, last_login_before=since)) == \
        {"%s-%d@acme.test" % (tag, i) for i in range(4, 7)}
    assert emails(q=tag, status="pending") == []

    # pages of 3 in a stable order, with an opaque cursor
    seen, cursor = [], None
    while True:
        params = {"q": tag, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = acme.admin.get("users", params=params).json()
        seen += [u["email"] for u in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(emails(q=tag)) and len(seen) == 7

    # the user object
    u = acme.admin.get("users", params={"q": "%s-0@" % tag}).json()["items"][0]
    for key in ("id", "email", "name", "role", "status", "groups", "created_at", "created_via", "last_login_at",
                "last_active_at", "failed_logins", "locked_at", "deactivated_at", "deleted_at"):
        assert key in u
    assert u["groups"] == [{"id": g["id"], "name": g["name"], "source": "manual", "suspended": False}]
    assert u["created_at"].endswith("Z")


@pytest.mark.parametrize("param,value", [("role", "owner"), ("status", "gone"), ("limit", "0"), ("limit", "201"),
                                         ("last_login_after", "yesterday"), ("group", "no such group"),
                                         ("cursor", "garbage"), ("last_login_before", "2024-13-01")])
def test_list_rejects_invalid_filter_with_field(acme, param, value):
    r = acme.admin.get("users", params={param: value})
    assert r.status_code == 400, r.text
    assert param in field_errors(r)


def test_soft_deleted_users_are_hidden_unless_asked(acme):
    email = uniq("hidden")
    uid = acme.create_user(email)
    r = acme.admin.delete("users/%s" % uid, json={"password": acme.admin_password})
    assert r.status_code == 200 and r.json()["status"] == "deleted"
    assert acme.admin.get("users", params={"q": email}).json()["items"] == []
    got = acme.admin.get("users", params={"q": email, "status": "deleted"}).json()["items"]
    assert [u["id"] for u in got] == [uid]


def _pages(api, **params):
    """Every item of a list, page by page through next_cursor."""
    seen, cursor = [], None
    while True:
        r = api.get("users", params=dict(params, cursor=cursor) if cursor else params)
        assert r.status_code == 200, r.text
        seen += [u["email"] for u in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return seen


def test_text_search_pages_match_the_database_order_when_matches_are_far_into_the_list(daemon):
    # More rows ahead of the matches than a text search walks in list order
    # (TEXT_WALK_ROWS, 10,000): those pages come from the trigram index.
    org = Org(daemon, "searchco", "admin@searchco.test")
    db = daemon.db
    db.query("""INSERT INTO users (org_id, email, name, role, status, created_via)
                SELECT %s, 'aa-filler-' || i || '@searchco.test', 'Filler ' || i, 'readonly', 'active', 'import'
                  FROM generate_series(1, 10100) i""", org.id)
    db.query("""INSERT INTO users (org_id, email, name, role, status, created_via)
                SELECT %s, 'zz-' || CASE WHEN i %% 3 = 0 THEN 'Needle' ELSE 'hay' END || '-' || i || '@searchco.test',
                       CASE WHEN i %% 3 = 1 THEN 'Big NEEDLE ' || i ELSE 'Other ' || i END,
                       (CASE WHEN i %% 2 = 0 THEN 'train' ELSE 'readonly' END)::user_role,
                       (CASE WHEN i %% 10 = 0 THEN 'deleted' ELSE 'active' END)::user_status, 'import'
                  FROM generate_series(1, 180) i""", org.id)

    def expected(extra="", *args):
        return [e for (e,) in db.query(
            "SELECT email FROM users WHERE org_id = %s AND (lower(email) LIKE '%%needle%%'"
            " OR lower(name) LIKE '%%needle%%') " + extra + " ORDER BY lower(email), id", org.id, *args)]

    want = expected("AND status <> 'deleted'")
    assert len(want) > 100
    for limit in (7, 50, 200):
        assert _pages(org.admin, q="neeDLE", limit=limit) == want
    assert _pages(org.admin, q="needle", role="train", limit=20) == expected(
        "AND status <> 'deleted' AND role = 'train'")
    assert _pages(org.admin, q="needle", status="deleted", limit=5) == expected("AND status = 'deleted'")
    # a match in the name only (the e-mail says hay)
    assert "zz-hay-1@searchco.test" in want
    # dense matches are read in list order: the same answer
    assert _pages(org.admin, q="filler-1", limit=100) == [e for (e,) in db.query(
        "SELECT email FROM users WHERE org_id = %s AND lower(email) LIKE '%%filler-1%%' ORDER BY lower(email), id",
        org.id)]
    # shorter than a trigram: one- and two-character grams (migration 009)
    def like(sub, extra=""):
        return [e for (e,) in db.query(
            "SELECT email FROM users WHERE org_id = %s AND status <> 'deleted' AND (strpos(lower(email), %s) > 0"
            " OR strpos(lower(name), %s) > 0) " + extra + " ORDER BY lower(email), id", org.id, sub, sub)]

    for q in ("zz", "ZZ", "z", "e-", "g "):
        assert _pages(org.admin, q=q, limit=200) == like(q.lower()), q
    assert _pages(org.admin, q="zz", limit=9) == like("zz")
    assert _pages(org.admin, q="zz", role="train", limit=11) == like("zz", "AND role = 'train'")
    assert like("zz") and len(like("zz")) < 200
    assert org.admin.get("users", params={"q": "q%"}).json() == {"items": [], "next_cursor": None}
    assert org.admin.get("users", params={"q": "ä"}).json() == {"items": [], "next_cursor": None}
    # characters, not bytes: "oë" is two characters (three bytes)
    db.query("UPDATE users SET name = 'Zoë Winter' WHERE email = 'zz-hay-2@searchco.test'")
    assert _pages(org.admin, q="oë") == ["zz-hay-2@searchco.test"]
    assert _pages(org.admin, q="ë") == ["zz-hay-2@searchco.test"]
    # the plan really uses the gram index for a rare pair (once the table's statistics are known)
    db.query("ANALYZE user_search")
    plan = "\n".join(r for (r,) in db.query(
        "EXPLAIN SELECT user_id FROM user_search s WHERE s.org_id = %s"
        " AND idb_short_grams(s.email_lc || E'\\n' || s.name_lc) @> ARRAY['zz']", org.id))
    assert "user_search_short_grams_idx" in plan, plan
    # no match anywhere
    assert org.admin.get("users", params={"q": "no-such-needle"}).json() == {"items": [], "next_cursor": None}
    # LIKE metacharacters are literals
    assert org.admin.get("users", params={"q": "needle%"}).json()["items"] == []


def test_search_table_follows_every_change_of_a_user(acme):
    db = acme.d.db

    def search_row(uid):
        row = db.one("SELECT org_id::text, email_lc, name_lc, status::text, role::text FROM user_search"
                     " WHERE user_id = %s", uid)
        login = db.one("SELECT org_id::text, last_login_at FROM user_logins WHERE user_id = %s", uid)
        return row and (tuple(row) + ((login[1] if login and login[0] == row[0] else None),))

    def user_row(uid):
        return db.one("SELECT org_id::text, lower(email), lower(name), status::text, role::text, last_login_at"
                      " FROM users WHERE id = %s", uid)

    def emails(**params):
        return [u["email"] for u in acme.admin.get("users", params=params).json()["items"]]

    email = uniq("Sync")
    uid = acme.create_user(email, name="Ada Searchable")
    assert search_row(uid) == user_row(uid)
    assert emails(q="ada searchable") == [email]

    assert acme.admin.patch("users/%s" % uid, {"name": "Grace Findable", "role": "train"}).status_code == 200
    assert search_row(uid) == user_row(uid)
    assert emails(q="ada searchable") == []
    assert emails(q="grace findable", role="train") == [email]

    db.query("UPDATE users SET email = %s, last_login_at = now() - interval '3 days' WHERE id = %s",
             "renamed-" + email, uid)
    assert search_row(uid) == user_row(uid)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 4 * 86400))
    assert emails(q="grace findable", last_login_after=since) == ["renamed-" + email]

    assert acme.admin.post("users/%s/deactivate" % uid).status_code == 200
    assert search_row(uid) == user_row(uid)
    assert emails(q="grace findable", status="inactive") == ["renamed-" + email]
    r = acme.admin.delete("users/%s" % uid, json={"password": acme.admin_password})
    assert r.status_code == 200
    assert search_row(uid) == user_row(uid)
    assert emails(q="grace findable") == []

    r = acme.admin.delete("users/%s?mode=hard" % uid, json={"password": acme.admin_password})
    assert r.status_code == 204, r.text
    assert search_row(uid) is None
    # and nothing anywhere is out of step
    assert db.value("""SELECT count(*) FROM users u FULL JOIN user_search s ON s.user_id = u.id
                        WHERE u.id IS NULL OR s.user_id IS NULL
                           OR (u.org_id, lower(u.email), lower(u.name), u.status, u.role)
                              IS DISTINCT FROM (s.org_id, s.email_lc, s.name_lc, s.status, s.role)""") == 0
    assert db.value("""SELECT count(*) FROM (SELECT id, org_id, last_login_at FROM users
                                              WHERE last_login_at IS NOT NULL) u
                        FULL JOIN user_logins l ON l.user_id = u.id
                        WHERE u.id IS NULL OR l.user_id IS NULL
                           OR (u.org_id, u.last_login_at) IS DISTINCT FROM (l.org_id, l.last_login_at)""") == 0


def test_a_login_rewrites_no_search_row(acme):
    """A sign-in moves the login time only: user_search (and its trigram
    index) is not written, user_logins is."""
    db = acme.d.db
    email = uniq("hot")
    uid = acme.create_user(email, name="Hot Path", password="correct horse battery 9")
    before = db.one("SELECT xmin::text FROM user_search WHERE user_id = %s", uid)
    r = acme.d.post("/login", json={"email": email, "password": "correct horse battery 9"})
    assert r.status_code == 200, r.text
    assert db.one("SELECT xmin::text FROM user_search WHERE user_id = %s", uid) == before
    at = db.value("SELECT last_login_at FROM users WHERE id = %s", uid)
    assert at is not None and db.value("SELECT last_login_at FROM user_logins WHERE user_id = %s", uid) == at
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    assert [u["email"] for u in acme.admin.get("users", params={"q": email, "last_login_after": since})
            .json()["items"]] == [email]
    db.query("UPDATE users SET last_login_at = NULL WHERE id = %s", uid)
    assert db.value("SELECT count(*) FROM user_logins WHERE user_id = %s", uid) == 0


# --- editing ---------------------------------------------------------------------

def test_role_change_shows_on_next_auth_check(acme):
    email = uniq("promote")
    uid = acme.create_user(email, role="readonly")
    key = acme.api_key(email)
    r = acme.d.check(token=key)
    assert r.status_code == 200 and r.headers["X-Auth-Role"] == "readonly"  # now cached
    assert acme.d.check(token=key, permission="agents.configure").status_code == 403
    r = acme.admin.patch("users/%s" % uid, {"role": "configure", "name": "Promoted"})
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "configure" and r.json()["name"] == "Promoted"
    r = acme.d.check(token=key)
    assert r.headers["X-Auth-Role"] == "configure"
    assert acme.d.check(token=key, permission="agents.configure").status_code == 200
    audit = acme.d.db.one("SELECT before->>'role', after->>'role', actor_id::text FROM audit_log"
                          " WHERE action = 'user.update' AND target_id = %s ORDER BY id DESC LIMIT 1", uid)
    assert audit == ("readonly", "configure", acme.admin_id)


def test_patch_groups_sets_exactly_the_manual_memberships(acme):
    a = acme.admin.post("groups", {"name": "Patch A " + uniq("g")}).json()
    b = acme.admin.post("groups", {"name": "Patch B " + uniq("g")}).json()
    uid = acme.create_user(uniq("grp"), groups=[a["id"]])
    r = acme.admin.patch("users/%s" % uid, {"groups": [b["name"]]})
    assert r.status_code == 200, r.text
    assert [g["id"] for g in r.json()["groups"]] == [b["id"]]
    r = acme.admin.patch("users/%s" % uid, {"groups": ["nope " + uniq("g")]})
    assert r.status_code == 400 and "groups" in field_errors(r)
    assert [g["id"] for g in acme.admin.get("users/%s" % uid).json()["groups"]] == [b["id"]]


def test_patch_rejects_invalid_role_and_writes_nothing(acme):
    uid = acme.create_user(uniq("badrole"))
    r = acme.admin.patch("users/%s" % uid, {"role": "superuser", "name": "Changed"})
    assert r.status_code == 400 and field_errors(r) == {"role": "Invalid role"}
    assert acme.admin.get("users/%s" % uid).json()["name"] != "Changed"


def test_nobody_changes_their_own_role(acme):
    r = acme.admin.patch("users/%s" % acme.admin_id, {"role": "readonly"})
    assert r.status_code == 403
    assert acme.admin.get("users/%s" % acme.admin_id).json()["role"] == "admin"


def test_last_active_admin_cannot_be_demoted_deactivated_or_deleted(daemon):
    org = Org(daemon, "solo", "admin@solo.test")
    second = org.create_user("second@solo.test", role="admin")
    # a user manager who is not an admin: users.manage through a group
    g = org.admin.post("groups", {"name": "User managers", "permissions": ["users.manage"]}).json()
    org.create_user("manager@solo.test", role="readonly", groups=[g["id"]])
    manager = login(daemon, "manager@solo.test", "User-password-1")
    # two active admins: one may go
    assert org.admin.post("users/%s/deactivate" % second).status_code == 200
    # org.admin is now the last active admin (an inactive admin does not count)
    last = org.admin_id
    r = manager.patch("users/%s" % last, {"role": "configure"})
    assert r.status_code == 409 and "last active admin" in r.json()["detail"]
    assert manager.post("users/%s/deactivate" % last).status_code == 409
    assert manager.delete("users/%s" % last, json={"password": "User-password-1"}).status_code == 409
    assert manager.delete("users/%s?mode=hard" % last, json={"password": "User-password-1"}).status_code == 409
    r = manager.post("users/bulk", {"action": "set_role", "role": "train", "user_ids": [last]})
    assert r.status_code == 200 and r.json()["results"][0]["status"] == "error"
    assert daemon.db.one("SELECT role::text, status::text FROM users WHERE id = %s", last) == ("admin", "active")
    # with a second active admin again, the demotion goes through
    assert org.admin.post("users/%s/activate" % second).status_code == 200
    assert manager.patch("users/%s" % last, {"role": "configure"}).status_code == 200


def test_notify_queues_a_mail_about_the_change(acme, smtp):
    email = uniq("notified")
    uid = acme.create_user(email)
    r = acme.admin.patch("users/%s" % uid, {"role": "train", "notify": True})
    assert r.status_code == 200
    m = smtp.wait_for(email)[-1]
    assert "Your role: train" in mail_text(m)


# --- deactivation ---------------------------------------------------------------

def _active_user_with_key_and_session(acme):
    email = uniq("deact")
    uid = acme.create_user(email, role="train")
    key = acme.api_key(email)
    api = login(acme.d, email, "User-password-1")
    assert acme.d.check(token=key).status_code == 200  # cached now
    assert acme.d.check(cookie=api.cookie).status_code == 200
    return uid, email, key, api


def test_deactivation_refuses_key_and_session_at_once_on_every_instance(acme, make_daemon):
    other = make_daemon()
    uid, email, key, api = _active_user_with_key_and_session(acme)
    assert other.check(token=key).status_code == 200
    assert other.check(cookie=api.cookie).status_code == 200
    g = acme.admin.post("groups", {"name": "Deact " + uniq("g")}).json()
    assert acme.admin.post("groups/%s/members" % g["id"], {"user_id": uid}).status_code == 200
    r = acme.admin.post("users/%s/deactivate" % uid)
    assert r.status_code == 200, r.text
    u = r.json()
    assert u["status"] == "inactive" and u["deactivated_at"]
    assert all(m["suspended"] for m in u["groups"])
    for d in (acme.d, other):
        assert d.check(token=key).status_code == 401
        assert d.check(cookie=api.cookie).status_code == 401
    db = acme.d.db
    assert db.value("SELECT count(*) FROM sessions WHERE user_id = %s", uid) == 0
    assert db.value("SELECT count(*) FROM api_keys WHERE user_id = %s AND disabled_at IS NOT NULL", uid) == 1
    r = acme.d.post("/login", json={"email": email, "password": "User-password-1"})
    assert r.status_code == 403 and "deactivated" in r.json()["detail"]
    # activation restores the key (and only the keys deactivation disabled)
    r = acme.admin.post("users/%s/activate" % uid)
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert not any(m["suspended"] for m in r.json()["groups"])
    assert acme.d.check(token=key).status_code == 200
    assert other.check(token=key).status_code == 200
    assert acme.d.check(cookie=api.cookie).status_code == 401  # sessions stay ended


def test_activation_does_not_restore_a_revoked_key(acme):
    uid, email, key, api = _active_user_with_key_and_session(acme)
    key_id = acme.d.db.value("SELECT id::text FROM api_keys WHERE user_id = %s", uid)
    assert acme.admin.post("users/%s/deactivate" % uid).status_code == 200
    assert acme.admin.delete("api-keys/%s" % key_id).status_code == 200
    assert acme.admin.post("users/%s/activate" % uid).status_code == 200
    assert acme.d.check(token=key).status_code == 401


def test_nobody_deactivates_themselves(acme):
    r = acme.admin.post("users/%s/deactivate" % acme.admin_id)
    assert r.status_code == 403


# --- deletion --------------------------------------------------------------------

def test_delete_needs_the_admins_password(acme):
    uid = acme.create_user(uniq("del"))
    r = acme.admin.delete("users/%s" % uid, json={"password": "wrong password 1"})
    assert r.status_code == 403
    r = acme.admin.delete("users/%s" % uid, json={})
    assert r.status_code == 403
    assert acme.d.db.value("SELECT status::text FROM users WHERE id = %s", uid) == "active"
    r = acme.admin.delete("users/%s?mode=purge" % uid, json={"password": acme.admin_password})
    assert r.status_code == 400 and "mode" in field_errors(r)


def test_sso_only_admin_must_have_signed_in_recently(acme):
    email = uniq("ssoadmin")
    aid = acme.create_user(email, role="admin")
    key = acme.api_key(email)
    acme.d.db.query("UPDATE users SET password_hash = NULL, sso_authenticated_at = now() - interval '1 hour'"
                    " WHERE id = %s", aid)
    api = Api(acme.d, key=key)
    uid = acme.create_user(uniq("victim"))
    r = api.delete("users/%s" % uid, json={})
    assert r.status_code == 403 and "SSO" in r.json()["detail"]
    acme.d.db.query("UPDATE users SET sso_authenticated_at = now() WHERE id = %s", aid)
    r = api.delete("users/%s" % uid, json={})
    assert r.status_code == 200 and r.json()["status"] == "deleted"


def test_soft_delete_and_restore(acme):
    uid, email, key, api = _active_user_with_key_and_session(acme)
    r = acme.admin.delete("users/%s?mode=soft" % uid, json={"password": acme.admin_password})
    assert r.status_code == 200
    assert r.json()["status"] == "deleted" and r.json()["deleted_at"]
    assert acme.d.check(token=key).status_code == 401
    assert acme.d.check(cookie=api.cookie).status_code == 401
    r = acme.admin.post("users/%s/activate" % uid)
    assert r.status_code == 409
    r = acme.admin.post("users/%s/restore" % uid)
    assert r.status_code == 200 and r.json()["status"] == "inactive" and r.json()["deleted_at"] is None
    assert acme.admin.post("users/%s/activate" % uid).json()["status"] == "active"
    assert acme.d.check(token=key).status_code == 200
    actions = [a for (a,) in acme.d.db.query("SELECT action FROM audit_log WHERE target_id = %s ORDER BY id", uid)]
    assert actions[-3:] == ["user.delete", "user.restore", "user.activate"]


def test_hard_delete_removes_everything_and_anonymises_activity(acme):
    uid, email, key, api = _active_user_with_key_and_session(acme)
    db = acme.d.db
    assert db.value("SELECT count(*) FROM activity WHERE user_id = %s", uid) > 0
    r = acme.admin.delete("users/%s?mode=hard" % uid, json={"password": acme.admin_password})
    assert r.status_code == 204, r.text
    assert db.value("SELECT count(*) FROM users WHERE id = %s", uid) == 0
    for table in ("memberships", "sessions", "api_keys", "invitations", "identities"):
        assert db.value("SELECT count(*) FROM %s WHERE user_id = %%s" % table, uid) == 0
    assert db.value("SELECT count(*) FROM activity WHERE user_id = %s", uid) == 0
    refs = db.query("SELECT DISTINCT actor_ref FROM activity WHERE actor_ref LIKE 'deleted:%%'")
    import hashlib
    expect = "deleted:" + hashlib.sha256(uid.encode()).hexdigest()[:16]
    assert (expect,) in refs
    assert acme.d.check(token=key).status_code == 401
    assert acme.d.check(cookie=api.cookie).status_code == 401
    row = db.one("SELECT before::text FROM audit_log WHERE action = 'user.hard_delete' AND target_id = %s", uid)
    assert row and email not in row[0]
    assert acme.admin.get("users/%s" % uid).status_code == 404


def test_nobody_deletes_themselves(acme):
    r = acme.admin.delete("users/%s" % acme.admin_id, json={"password": acme.admin_password})
    assert r.status_code == 403


# --- lockout ---------------------------------------------------------------------

def test_unlock_resets_the_counter(acme):
    email = uniq("locked")
    uid = acme.create_user(email)
    for _ in range(5):
        acme.d.post("/login", json={"email": email, "password": "not the password"})
    u = acme.admin.get("users/%s" % uid).json()
    assert u["failed_logins"] == 5 and u["locked_at"]
    assert acme.d.post("/login", json={"email": email, "password": "User-password-1"}).status_code == 403
    r = acme.admin.post("users/%s/unlock" % uid)
    assert r.status_code == 200 and r.json()["failed_logins"] == 0 and r.json()["locked_at"] is None
    assert acme.d.post("/login", json={"email": email, "password": "User-password-1"}).status_code == 200
    assert acme.d.db.value("SELECT count(*) FROM audit_log WHERE action = 'user.unlock' AND target_id = %s", uid) == 1


# --- API keys -------------------------------------------------------------------

def test_api_keys_create_list_revoke(acme):
    email = uniq("keys")
    uid = acme.create_user(email)
    r = acme.admin.post("users/%s/api-keys" % uid, {"name": "ci", "scopes": ["events.write", "agents.use"],
                                                    "expires_at": "2999-01-01T00:00:00Z"})
    assert r.status_code == 201, r.text
    k = r.json()
    assert k["key"].startswith("idb_") and k["prefix"] == k["key"][:12]
    assert k["scopes"] == ["events.write", "agents.use"] and k["expires_at"] == "2999-01-01T00:00:00Z"
    assert acme.d.check(token=k["key"]).status_code == 200
    listed = acme.admin.get("users/%s/api-keys" % uid).json()["items"]
    assert [x["id"] for x in listed] == [k["id"]]
    assert "key" not in listed[0] and "key_hash" not in listed[0]
    for field in ("prefix", "name", "scopes", "created_at", "last_used_at", "expires_at", "revoked_at",
                  "disabled_at"):
        assert field in listed[0]
    r = acme.admin.delete("api-keys/%s" % k["id"])
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert acme.d.check(token=k["key"]).status_code == 401  # cache entry dropped at once


@pytest.mark.parametrize("body,field", [({"name": ""}, "name"), ({"name": "x", "scopes": ["root"]}, "scopes"),
                                        ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
                                        ({"name": "x", "scopes": "agents.use"}, "scopes")])
def test_api_key_input_is_checked(acme, body, field):
    uid = acme.create_user(uniq("kbad"))
    r = acme.admin.post("users/%s/api-keys" % uid, body)
    assert r.status_code == 400 and field in field_errors(r)
    assert acme.d.db.value("SELECT count(*) FROM api_keys WHERE user_id = %s", uid) == 0


# --- audit ------------------------------------------------------------------------

def test_audit_log_lists_actions_with_filters(acme):
    uid = acme.create_user(uniq("aud"))
    acme.admin.post("users/%s/deactivate" % uid)
    r = acme.admin.get("audit", params={"target": uid})
    assert r.status_code == 200
    items = r.json()["items"]
    assert [i["action"] for i in items][:2] == ["user.deactivate", "user.invite"]
    e = items[0]
    assert e["actor_id"] == acme.admin_id and e["actor_email"] == acme.admin_email
    assert e["before"]["status"] == "active" and e["after"]["status"] == "inactive"
    assert e["request_id"] and e["ip"] == "127.0.0.1"
    assert all(i["action"].startswith("user.") for i in acme.admin.get("audit", params={"action": "user.*"}).json()["items"])
    assert acme.admin.get("audit", params={"actor": acme.admin_email, "limit": 2}).json()["next_cursor"]
    page1 = acme.admin.get("audit", params={"limit": 2}).json()
    page2 = acme.admin.get("audit", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    assert page1["items"][-1]["id"] > page2["items"][0]["id"]
    assert acme.admin.get("audit", params={"since": "soon"}).status_code == 400


def test_audit_log_is_append_only(acme):
    acme.create_user(uniq("append"))
    conn = psycopg2.connect(acme.d.db.url)
    conn.autocommit = True
    with conn.cursor() as c:
        for stmt in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(psycopg2.Error) as e:
                c.execute(stmt)
            assert "append-only" in str(e.value)
    conn.close()
