# SPDX-License-Identifier: AGPL-3.0-or-later
"""Groups, memberships and bulk actions (issue 6)."""

import uuid

import pytest

from users_fixtures import *  # noqa: F401,F403
from users_fixtures import field_errors, login, uniq


def test_group_crud(acme):
    name = "Engineering " + uniq("g")
    r = acme.admin.post("groups", {"name": name, "description": "Builders",
                                   "permissions": ["agents.create", "analytics.view_all"]})
    assert r.status_code == 201, r.text
    g = r.json()
    assert g["name"] == name and g["description"] == "Builders" and g["member_count"] == 0
    assert g["permissions"] == ["agents.create", "analytics.view_all"]
    assert acme.admin.post("groups", {"name": name.upper()}).status_code == 409
    assert acme.admin.get("groups/%s" % g["id"]).json()["name"] == name
    r = acme.admin.patch("groups/%s" % g["id"], {"description": "Makers", "permissions": []})
    assert r.status_code == 200 and r.json()["description"] == "Makers" and r.json()["permissions"] == []
    assert acme.admin.delete("groups/%s" % g["id"]).status_code == 204
    assert acme.admin.get("groups/%s" % g["id"]).status_code == 404
    actions = [a for (a,) in acme.d.db.query("SELECT action FROM audit_log WHERE target_id = %s ORDER BY id",
                                              g["id"])]
    assert actions == ["group.create", "group.update", "group.delete"]


@pytest.mark.parametrize("body,field", [({"name": ""}, "name"), ({}, "name"),
                                        ({"name": "x", "permissions": ["admin"]}, "permissions"),
                                        ({"name": "x", "permissions": "users.manage"}, "permissions"),
                                        ({"name": "x", "description": "d" * 2001}, "description")])
def test_group_input_is_checked(acme, body, field):
    n = acme.d.db.value("SELECT count(*) FROM groups")
    r = acme.admin.post("groups", body)
    assert r.status_code == 400 and field in field_errors(r), r.text
    assert acme.d.db.value("SELECT count(*) FROM groups") == n


def test_group_list_is_paginated(acme):
    tag = uniq("page").split("@")[0]
    for i in range(5):
        acme.admin.post("groups", {"name": "%s %d" % (tag, i)})
    names, cursor = [], None
    while True:
        page = acme.admin.get("groups", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        names += [g["name"] for g in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    mine = [n for n in names if n.startswith(tag)]
    assert mine == ["%s %d" % (tag, i) for i in range(5)]
    assert len(names) == len(set(names))


def test_members_add_list_remove(acme):
    g = acme.admin.post("groups", {"name": "Members " + uniq("g")}).json()
    uids = [acme.create_user(uniq("mem")) for _ in range(3)]
    for uid in uids:
        r = acme.admin.post("groups/%s/members" % g["id"], {"user_id": uid})
        assert r.status_code == 200 and g["id"] in [x["id"] for x in r.json()["groups"]]
    page = acme.admin.get("groups/%s/members" % g["id"], params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = acme.admin.get("groups/%s/members" % g["id"], params={"cursor": page["next_cursor"]}).json()
    assert {u["id"] for u in page["items"] + rest["items"]} == set(uids)
    assert acme.admin.get("groups/%s" % g["id"]).json()["member_count"] == 3
    assert acme.admin.delete("groups/%s/members/%s" % (g["id"], uids[0])).status_code == 204
    assert acme.admin.delete("groups/%s/members/%s" % (g["id"], uids[0])).status_code == 404
    assert acme.admin.post("groups/%s/members" % g["id"], {"user_id": str(uuid.uuid4())}).status_code == 404
    assert acme.admin.post("groups/%s/members" % g["id"], {}).status_code == 400


def test_group_permission_change_reaches_members_at_once(acme, make_daemon):
    other = make_daemon()
    g = acme.admin.post("groups", {"name": "Analysts " + uniq("g")}).json()
    email = uniq("analyst")
    acme.create_user(email, role="readonly", groups=[g["id"]])
    key = acme.api_key(email)
    for d in (acme.d, other):
        r = d.check(token=key, permission="analytics.view_all")
        assert r.status_code == 403  # cached without the permission
    r = acme.admin.patch("groups/%s" % g["id"], {"permissions": ["analytics.view_all"]})
    assert r.status_code == 200
    for d in (acme.d, other):
        assert d.check(token=key, permission="analytics.view_all").status_code == 200
    r = acme.admin.patch("groups/%s" % g["id"], {"name": g["name"] + " renamed"})
    assert (g["name"] + " renamed") in acme.d.check(token=key).headers["X-Auth-Groups"]
    assert acme.admin.delete("groups/%s" % g["id"]).status_code == 204
    r = acme.d.check(token=key)
    assert "X-Auth-Groups" not in r.headers
    assert acme.d.check(token=key, permission="analytics.view_all").status_code == 403


def test_groups_of_another_organisation_are_not_found(acme, globex):
    g = globex.admin.post("groups", {"name": "Secret"}).json()
    mine = acme.create_user(uniq("x"))
    assert acme.admin.get("groups/%s" % g["id"]).status_code == 404
    assert acme.admin.patch("groups/%s" % g["id"], {"name": "Mine"}).status_code == 404
    assert acme.admin.delete("groups/%s" % g["id"]).status_code == 404
    assert acme.admin.get("groups/%s/members" % g["id"]).status_code == 404
    assert acme.admin.post("groups/%s/members" % g["id"], {"user_id": mine}).status_code == 404
    assert globex.admin.get("groups/%s" % g["id"]).json()["name"] == "Secret"


def test_non_admin_cannot_manage_groups(acme):
    email = uniq("nogroups")
    acme.create_user(email, role="configure")
    api = login(acme.d, email, "User-password-1")
    assert api.get("groups").status_code == 403
    assert api.post("groups", {"name": "Mine"}).status_code == 403


# --- bulk ------------------------------------------------------------------------

def test_bulk_add_to_group_reports_per_user(acme, globex):
    g = acme.admin.post("groups", {"name": "Bulk " + uniq("g")}).json()
    uids = [acme.create_user(uniq("bulk")) for _ in range(3)]
    foreign = globex.create_user(uniq("foreign").replace("acme", "globex"))
    unknown = str(uuid.uuid4())
    r = acme.admin.post("users/bulk", {"action": "add_to_group", "group": g["name"],
                                       "user_ids": uids + [unknown, foreign, "nonsense", uids[0]]})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["status"] for x in res] == ["ok", "ok", "ok", "error", "error", "error", "error"]
    assert res[3]["message"] == "User not found" and res[4]["message"] == "User not found"
    assert res[6]["message"] == "Duplicate user id"
    assert acme.admin.get("groups/%s" % g["id"]).json()["member_count"] == 3
    r = acme.admin.post("users/bulk", {"action": "remove_from_group", "group": g["id"], "user_ids": uids[:2]})
    assert [x["status"] for x in r.json()["results"]] == ["ok", "ok"]
    assert acme.admin.get("groups/%s" % g["id"]).json()["member_count"] == 1


def test_bulk_set_role_deactivate_activate(acme):
    emails = [uniq("bulkrole") for _ in range(3)]
    uids = [acme.create_user(e) for e in emails]
    keys = [acme.api_key(e) for e in emails]
    assert all(acme.d.check(token=k).headers["X-Auth-Role"] == "readonly" for k in keys)
    r = acme.admin.post("users/bulk", {"action": "set_role", "role": "configure", "user_ids": uids + [acme.admin_id]})
    res = r.json()["results"]
    assert [x["status"] for x in res] == ["ok", "ok", "ok", "error"]
    assert "own role" in res[3]["message"]
    assert all(acme.d.check(token=k).headers["X-Auth-Role"] == "configure" for k in keys)
    r = acme.admin.post("users/bulk", {"action": "deactivate", "user_ids": uids})
    assert all(x["status"] == "ok" for x in r.json()["results"])
    assert all(acme.d.check(token=k).status_code == 401 for k in keys)
    r = acme.admin.post("users/bulk", {"action": "activate", "user_ids": uids})
    assert all(x["status"] == "ok" for x in r.json()["results"])
    assert all(acme.d.check(token=k).status_code == 200 for k in keys)


@pytest.mark.parametrize("body,field", [({"action": "explode", "user_ids": ["x"]}, "action"),
                                        ({"action": "set_role", "role": "god", "user_ids": ["x"]}, "role"),
                                        ({"action": "add_to_group", "group": "nope nope", "user_ids": ["x"]}, "group"),
                                        ({"action": "deactivate", "user_ids": []}, "user_ids"),
                                        ({"action": "deactivate", "user_ids": ["00000000-0000-0000-0000-000000000000"] * 1001},
                                         "user_ids")])
def test_bulk_request_errors(acme, body, field):
    r = acme.admin.post("users/bulk", body)
    assert r.status_code == 400 and field in field_errors(r), r.text


def test_bulk_accepts_1000_ids_in_one_transaction(acme):
    ids = [str(uuid.uuid4()) for _ in range(999)]
    uid = acme.create_user(uniq("thousand"))
    r = acme.admin.post("users/bulk", {"action": "deactivate", "user_ids": ids + [uid]})
    assert r.status_code == 200
    res = r.json()["results"]
    assert len(res) == 1000 and res[-1]["status"] == "ok"
    assert sum(1 for x in res if x["status"] == "error") == 999
