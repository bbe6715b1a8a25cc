# SPDX-License-Identifier: AGPL-3.0-or-later
"""Bulk import of users from CSV (issue 7), black-box over HTTP and
idbridgectl: preview, error report, confirm in one transaction, the invitation
mails on a real SMTP server, idempotent and concurrent confirms, changes
between preview and confirm, authorisation, whole-file refusals, and a daemon
killed (SIGKILL) in the middle of a 1,000-row confirm."""

import csv
import io
import os
import secrets
import tempfile
import threading
import time

import pytest
import requests

from users_fixtures import *  # noqa: F401,F403
from users_fixtures import Api, Daemon, invite_link, login, mail_text, uniq

CSV = {"Content-Type": "text/csv"}


def upload(api, text, headers=None, raw=False):
    body = text if isinstance(text, bytes) else text.encode("utf-8")
    return api.call("POST", "import", data=body, headers=headers or CSV)


def preview(api, text):
    r = upload(api, text)
    assert r.status_code == 201, r.text
    return r.json()


def tag():
    return secrets.token_hex(4)


def parse_csv(text):
    return list(csv.reader(io.StringIO(text, newline="")))


def counts(db, pattern):
    return (db.value("SELECT count(*) FROM users WHERE email LIKE %s", pattern),
            db.value("SELECT count(*) FROM invitations i JOIN users u ON u.id = i.user_id WHERE u.email LIKE %s",
                     pattern),
            db.value("SELECT count(*) FROM outbox WHERE payload->>'to' LIKE %s", pattern))


# --- template ------------------------------------------------------------------

def test_template_is_csv_with_header_and_two_examples(acme):
    r = acme.admin.get("import/template")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in r.headers["Content-Disposition"]
    rows = parse_csv(r.text)
    assert rows[0] == ["email", "name", "role", "groups"]
    assert len(rows) == 3 and all(len(x) == 4 for x in rows)
    # the template itself is a valid upload (its example groups do not exist here)
    p = preview(acme.admin, r.text)
    assert [x["line"] for x in p["rows"]] == [2, 3]
    assert p["rows"][1]["action"] == "add"
    assert p["rows"][0]["message"].startswith("Group not found: ")


# --- preview, errors.csv, confirm, mail ----------------------------------------

def test_preview_error_report_confirm_and_invitation_mail(acme, smtp):
    db = acme.d.db
    t = tag()
    sales = acme.admin.post("groups", {"name": "Sales " + t}).json()
    ops = acme.admin.post("groups", {"name": "Ops " + t}).json()
    existing = "existing%s@acme.test" % t
    acme.create_user(existing)
    e = lambda n: "%s-%s@acme.test" % (n, t)  # noqa: E731
    text = ("\ufeffemail,name,role,groups\r\n"
            f"{e('ada')},\"Lovelace, Ada\",admin,\"Sales {t}; ops {t}\"\r\n"        # 2 add, two groups
            f"{e('zoe')},Zoë Ångström 🚀,train,\r\n"                               # 3 add, unicode
            "not-an-email,X,readonly,\r\n"                                          # 4 error
            f"{e('ADA').upper()},Again,readonly,\r\n"                              # 5 skip (file duplicate)
            f"{existing.upper()},Existing,readonly,\r\n"                            # 6 skip (already a user)
            f"{e('role')},R,owner,\r\n"                                             # 7 error
            f"{e('grp')},G,readonly,Sales {t}|Nope {t}\r\n"                        # 8 error
            f"{e('evil')},\"=HYPERLINK(\"\"http://x\"\")\",superuser,\"@SUM(1)\"\r\n"  # 9 error, formulas
            f"{e('multi')},\"Two\r\nLines\",readonly,\r\n"                         # 10-11 error (control chars)
            f"{e('last')},,configure,\r\n"                                          # 12 add, no name
            "\r\n,,,\r\n")
    users_before = db.value("SELECT count(*) FROM users")
    outbox_before = db.value("SELECT count(*) FROM outbox")
    r = upload(acme.admin, text)
    assert r.status_code == 201, r.text
    p = r.json()
    assert r.headers["Location"] == "/api/v1/import/" + p["id"]
    assert (p["add"], p["skip"], p["error"], p["status"]) == (3, 2, 5, "pending")
    assert p["expires_at"]
    got = [(x["line"], x["email"], x["action"], x["message"]) for x in p["rows"]]
    assert got == [
        (2, e("ada"), "add", ""),
        (3, e("zoe"), "add", ""),
        (4, "not-an-email", "error", "Invalid email format"),
        (5, e("ADA").upper(), "skip", "Duplicate email"),
        (6, existing.upper(), "skip", "Duplicate email"),
        (7, e("role"), "error", "Invalid role"),
        (8, e("grp"), "error", "Group not found: Nope " + t),
        (9, e("evil"), "error", "Invalid role; Group not found: @SUM(1)"),
        (10, e("multi"), "error", "Invalid name (control characters are not allowed)"),
        (12, e("last"), "add", ""),
    ]
    assert p["rows"][0]["groups"] == ["Sales " + t, "ops " + t] and p["rows"][0]["role"] == "admin"
    assert p["rows"][1]["name"] == "Zoë Ångström 🚀"
    # a preview writes no user and no mail
    assert db.value("SELECT count(*) FROM users") == users_before
    assert db.value("SELECT count(*) FROM outbox") == outbox_before
    assert db.value("SELECT count(*) FROM audit_log WHERE action = 'import.preview' AND target_id = %s",
                    p["id"]) == 1
    # the stored preview reads back the same
    again = acme.admin.get("import/" + p["id"]).json()
    assert again["rows"] == p["rows"] and again["add"] == 3

    # error report: the rejected rows as uploaded + error, formulas neutralised
    r = acme.admin.get("import/%s/errors.csv" % p["id"])
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    rep = parse_csv(r.content.decode("utf-8"))
    assert rep[0] == ["email", "name", "role", "groups", "error"]
    assert [x[0] for x in rep[1:]] == ["not-an-email", e("role"), e("grp"), e("evil"), e("multi")]
    evil = rep[4]
    assert evil == [e("evil"), "'=HYPERLINK(\"http://x\")", "superuser", "'@SUM(1)",
                    "Invalid role; Group not found: @SUM(1)"]
    assert rep[5][1] == "Two\r\nLines"
    for row in rep[1:]:
        for cell in row:
            assert not cell or cell[0] not in "=+-@\t\r", row
    # ... and it can be uploaded again as it is, after fixing
    fixed = r.content.decode("utf-8").replace("superuser", "readonly").replace("owner", "train")
    p2 = preview(acme.admin, fixed)
    assert [x["message"] for x in p2["rows"]][1:4] == ["", "Group not found: Nope " + t,
                                                      "Group not found: @SUM(1)"]

    # confirm
    r = acme.admin.post("import/%s/confirm" % p["id"])
    assert r.status_code == 200, r.text
    res = r.json()
    assert (res["add"], res["skip"], res["error"], res["status"]) == (3, 2, 5, "confirmed")
    assert res["confirmed_at"]
    created = {x["email"]: x["user_id"] for x in res["rows"] if x["action"] == "add"}
    assert set(created) == {e("ada"), e("zoe"), e("last")}
    ada = acme.admin.get("users/" + created[e("ada")]).json()
    assert ada["status"] == "pending" and ada["created_via"] == "import" and ada["role"] == "admin"
    assert ada["name"] == "Lovelace, Ada"
    assert sorted((g["name"], g["source"]) for g in ada["groups"]) == [("Ops " + t, "import"),
                                                                        ("Sales " + t, "import")]
    assert acme.admin.get("users/" + created[e("last")]).json()["role"] == "configure"
    assert db.value("SELECT count(*) FROM users") == users_before + 3
    assert counts(db, "%-" + t + "@acme.test") == (3, 3, 3)
    assert db.value("SELECT count(*) FROM users WHERE lower(email) = lower(%s)", existing) == 1
    audit = db.one("SELECT actor_email, after FROM audit_log WHERE action = 'import.confirm' AND target_id = %s",
                   p["id"])
    assert audit[0] == acme.admin_email and audit[1] == {"id": p["id"], "add": 3, "skip": 2, "error": 5}
    assert db.value("SELECT count(*) FROM audit_log WHERE action = 'user.import' AND after->>'import_id' = %s",
                    p["id"]) == 3
    # after the confirm, errors.csv still answers (from the result)
    assert len(parse_csv(acme.admin.get("import/%s/errors.csv" % p["id"]).text)) == 6

    # the invitation arrives like any other, and its link works
    m = smtp.wait_for(e("zoe"))[0]
    assert m["msg"]["Subject"] == "Acme Admin invited you to Acme Inc"
    assert "Hello Zoë Ångström 🚀," in mail_text(m)
    link = invite_link(m)
    s = requests.Session()
    r = s.post(link, json={"password": "Imported-Password-7"}, timeout=30)
    assert r.status_code == 200, r.text
    me = s.get(acme.d.url + "/api/v1/me", timeout=30).json()
    assert me["email"] == e("zoe") and me["status"] == "active" and me["role"] == "train"


def test_double_and_concurrent_confirms_apply_once(acme):
    db = acme.d.db
    t = tag()
    text = "email,role\n" + "".join("twice%d-%s@acme.test,readonly\n" % (i, t) for i in range(20))
    p = preview(acme.admin, text)
    results = []

    def confirm():
        s = requests.Session()
        s.cookies.update(acme.admin.s.cookies)
        results.append(Api(acme.d, session=s, csrf=acme.admin.csrf).post("import/%s/confirm" % p["id"]))

    threads = [threading.Thread(target=confirm) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert [r.status_code for r in results] == [200, 200, 200]
    bodies = [r.json() for r in results]
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["add"] == 20
    assert counts(db, "twice%-" + t + "@acme.test") == (20, 20, 20)
    # and later once more: the stored result, nothing new
    r = acme.admin.post("import/%s/confirm" % p["id"])
    assert r.status_code == 200 and r.json() == bodies[0]
    assert counts(db, "twice%-" + t + "@acme.test") == (20, 20, 20)
    assert db.value("SELECT count(*) FROM audit_log WHERE action = 'import.confirm' AND target_id = %s",
                    p["id"]) == 1


def test_changes_between_preview_and_confirm_are_reported_per_row(acme):
    db = acme.d.db
    t = tag()
    g = acme.admin.post("groups", {"name": "Doomed " + t}).json()
    keep = acme.admin.post("groups", {"name": "Kept " + t}).json()
    a, b, c = ("race-%s-%s@acme.test" % (n, t) for n in "abc")
    text = f"email,name,role,groups\n{a},A,readonly,\n{b},B,readonly,Doomed {t}\n{c},C,readonly,Kept {t}\n"
    p = preview(acme.admin, text)
    assert p["add"] == 3
    # meanwhile: someone invites a, and the group of b is deleted
    assert acme.admin.post("users/invite", {"email": a.upper(), "role": "admin"}).status_code == 201
    assert acme.admin.delete("groups/" + g["id"]).status_code in (200, 204)
    res = acme.admin.post("import/%s/confirm" % p["id"]).json()
    rows = {x["email"]: x for x in res["rows"]}
    assert (rows[a]["action"], rows[a]["message"], rows[a]["conflict"]) == ("skip", "Duplicate email", True)
    assert (rows[b]["action"], rows[b]["message"], rows[b]["conflict"]) == ("error", "Group not found: Doomed " + t,
                                                                           True)
    assert rows[c]["action"] == "add" and "conflict" not in rows[c]
    assert (res["add"], res["skip"], res["error"]) == (1, 1, 1)
    assert db.value("SELECT count(*) FROM users WHERE lower(email) = lower(%s)", a) == 1
    assert db.value("SELECT role::text FROM users WHERE lower(email) = lower(%s)", a) == "admin"  # untouched
    assert db.value("SELECT count(*) FROM users WHERE email = %s", b) == 0
    assert db.value("SELECT count(*) FROM memberships WHERE group_id = %s AND source = 'import'", keep["id"]) == 1
    # b's row is in the error report now
    rep = parse_csv(acme.admin.get("import/%s/errors.csv" % p["id"]).text)
    assert rep[1] == [b, "B", "readonly", "Doomed " + t, "Group not found: Doomed " + t]


# --- refusals ----------------------------------------------------------------

def _detail(r):
    assert r.headers["Content-Type"].startswith("application/problem+json"), r.text
    return r.json()["detail"]


def test_whole_file_refusals_store_nothing(acme):
    db = acme.d.db
    before = db.value("SELECT count(*) FROM import_previews")
    rows1001 = "email,role\n" + "".join("u%d@acme.test,readonly\n" % i for i in range(1001))
    cases = [
        (b"", 400, "empty"),
        (b"\xef\xbb\xbf\r\n\r\n", 400, "empty"),
        (b"email,name,role,groups\r\n", 400, "no users"),
        (rows1001.encode(), 400, "more than 1000"),
        (b"email,name,role,phone\na@acme.test,A,admin,1\n", 400, "Unknown column \"phone\""),
        (b"email,name,groups\na@acme.test,A,\n", 400, "no \"role\" column"),
        (b"email,role,EMAIL\na@acme.test,admin,b@acme.test\n", 400, "appears twice"),
        (b"email,role\na@acme.test,admin\n\x00\x01\x02", 400, "NUL byte on line 3"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 400, "UTF-8"),
        (b"email,name,role\na@acme.test,Ren\xe9,admin\n", 400, "not valid UTF-8 text (line 2)"),
        (b"email,name,role\na@acme.test,\"open\n", 400, "never closed"),
        (b"email,name,role\na@acme.test,Bad \"quote\",admin\n", 400, "Line 2 is not valid CSV"),
    ]
    for body, status, words in cases:
        r = upload(acme.admin, body)
        assert r.status_code == status, (body[:40], r.status_code, r.text)
        assert words in _detail(r), (body[:40], r.text)
        assert r.json()["errors"][0]["field"] == "file"
    # over the body limit
    big = b"email,role\n" + b"x" * (2 * 1024 * 1024)
    r = upload(acme.admin, big)
    assert r.status_code == 413
    # not a CSV upload
    r = upload(acme.admin, b"email,role\n", headers={"Content-Type": "application/json"})
    assert r.status_code == 415 and "text/csv" in _detail(r)
    r = upload(acme.admin, b"email,role\n", headers={"Content-Type": "text/csv; charset=iso-8859-1"})
    assert r.status_code == 415
    assert db.value("SELECT count(*) FROM import_previews") == before


def test_unknown_expired_and_malformed_ids(acme):
    for path in ("import/%s", "import/%s/errors.csv"):
        assert acme.admin.get(path % "8f1c0c5e-6d0a-4c58-9a63-0e1f5b7d2a11").status_code == 404
        assert acme.admin.get(path % "nope").status_code == 404
    assert acme.admin.post("import/8f1c0c5e-6d0a-4c58-9a63-0e1f5b7d2a11/confirm").status_code == 404
    email = "late-%s@acme.test" % tag()
    p = preview(acme.admin, "email,role\n%s,readonly\n" % email)
    acme.d.db.query("UPDATE import_previews SET expires_at = now() - interval '1 second' WHERE id = %s", p["id"])
    r = acme.admin.post("import/%s/confirm" % p["id"])
    assert r.status_code == 410 and "expired" in _detail(r) and "Upload the file again" in _detail(r)
    assert acme.admin.get("import/%s/errors.csv" % p["id"]).status_code == 410
    assert acme.d.db.value("SELECT count(*) FROM users WHERE email = %s", email) == 0


# --- authorisation -------------------------------------------------------------

def test_authorisation(acme, globex):
    t = tag()
    p = preview(acme.admin, "email,role\nauthz-%s@acme.test,readonly\n" % t)
    # another organisation's admin does not see it
    for method, path in [("GET", "import/%s"), ("GET", "import/%s/errors.csv"), ("POST", "import/%s/confirm")]:
        r = globex.admin.call(method, path % p["id"], json={} if method == "POST" else None)
        assert r.status_code == 404, (method, path, r.text)
    # non-admins are refused
    email = "plain-%s@acme.test" % t
    acme.create_user(email, role="configure")
    plain = login(acme.d, email, "User-password-1")
    assert plain.get("import/template").status_code == 403
    assert upload(plain, "email,role\nx-%s@acme.test,readonly\n" % t).status_code == 403
    assert plain.get("import/%s/errors.csv" % p["id"]).status_code == 403
    assert plain.post("import/%s/confirm" % p["id"]).status_code == 403
    # no credentials
    assert acme.d.get("/api/v1/import/template").status_code == 401
    # a cookie caller needs the CSRF header on POST
    r = acme.admin.s.post(acme.d.url + "/api/v1/import", data=b"email,role\nc@acme.test,readonly\n", headers=CSV,
                          timeout=30)
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    r = acme.admin.s.post(acme.d.url + "/api/v1/import/%s/confirm" % p["id"], timeout=30)
    assert r.status_code == 403
    assert acme.d.db.value("SELECT status FROM import_previews WHERE id = %s", p["id"]) == "pending"
    # an API key of the admin needs no CSRF header
    key = acme.api_key(acme.admin_email, name="import " + t)
    api = Api(acme.d, key=key)
    assert api.post("import/%s/confirm" % p["id"]).json()["add"] == 1


# --- idbridgectl -----------------------------------------------------------------

def test_idbridgectl_users_import_dry_run_and_real_run(acme, tmp_path):
    db = acme.d.db
    t = tag()
    path = tmp_path / "users.csv"
    path.write_text("email,name,role,groups\n"
                    f"cli-a-{t}@acme.test,Cli A,train,\n"
                    "broken,Broken,readonly,\n"
                    f"cli-b-{t}@acme.test,Cli B,owner,\n"
                    f"{acme.admin_email},Me,admin,\n", encoding="utf-8")
    r = acme.d.ctl("users", "import", "--org", "acme", "--file", str(path), "--dry-run", check=False)
    assert r.returncode == 2, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"line 2  cli-a-{t}@acme.test  add"
    assert lines[1] == "line 3  broken  error  Invalid email format"
    assert lines[2] == f"line 4  cli-b-{t}@acme.test  error  Invalid role"
    assert lines[3] == f"line 5  {acme.admin_email}  skip  Duplicate email"
    assert lines[4] == "add 1  skip 1  error 2"
    assert "dry run" in lines[5]
    assert db.value("SELECT count(*) FROM users WHERE email LIKE %s", "cli-%-" + t + "@acme.test") == 0

    r = acme.d.ctl("users", "import", "--org", "acme", "--file", str(path), check=False)
    assert r.returncode == 2, r.stderr
    assert r.stdout.splitlines()[4] == "add 1  skip 1  error 2"
    row = db.one("SELECT status::text, created_via, role::text FROM users WHERE email = %s", f"cli-a-{t}@acme.test")
    assert row == ("pending", "import", "train")
    assert db.value("SELECT count(*) FROM outbox WHERE payload->>'to' = %s", f"cli-a-{t}@acme.test") == 1
    assert db.value("SELECT count(*) FROM audit_log WHERE action = 'import.confirm' AND actor_email = 'idbridgectl'"
                    " AND after->>'add' = '1'") >= 1
    # the same file again: the user exists now
    r = acme.d.ctl("users", "import", "--org", "acme", "--file", str(path), "--dry-run", check=False)
    assert r.stdout.splitlines()[0] == f"line 2  cli-a-{t}@acme.test  skip  Duplicate email"

    # no rejected rows: exit 0
    path.write_text(f"email,role\ncli-c-{t}@acme.test,readonly\n", encoding="utf-8")
    r = acme.d.ctl("users", "import", "--org", "acme", "--file", str(path), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    # a refused file: exit 2, one message, nothing written
    path.write_text("email,name\nx@acme.test,X\n", encoding="utf-8")
    r = acme.d.ctl("users", "import", "--org", "acme", "--file", str(path), check=False)
    assert r.returncode == 2 and "no \"role\" column" in r.stderr
    r = acme.d.ctl("users", "import", "--org", "nosuchorg", "--file", str(path), check=False)
    assert r.returncode == 2
    r = acme.d.ctl("users", "import", "--org", "acme", check=False)
    assert r.returncode == 2


# --- crash in the middle of a confirm ----------------------------------------------

def _wait_backends_settled(db, timeout=20):
    """Until no other session of this database is inside a transaction."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        busy = db.value("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction',"
                        " 'idle in transaction (aborted)')")
        if busy == 0:
            return
        time.sleep(0.05)
    raise AssertionError("a transaction is still open after the daemon was killed")


def _confirm_in_progress(db):
    """A confirm holds the preview row FOR UPDATE (RowShareLock on the table)
    from its first statement to its commit."""
    return db.value("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                    " WHERE c.relname = 'import_previews' AND l.mode = 'RowShareLock' AND l.granted") > 0


@pytest.mark.timeout(600)
def test_sigkill_during_confirm_leaves_all_or_nothing(acme, db):
    outcomes = []
    # seconds after the confirm's transaction began; the last one is after
    # it committed on any machine this runs on
    for delay in (0.0, 0.05, 0.15, 0.3, None):
        t = tag()
        pattern = "kill%-" + t + "@acme.test"
        text = "email,name,role\n" + "".join("kill%04d-%s@acme.test,Kill %d,readonly\n" % (i, t, i)
                                              for i in range(1000))
        victim = Daemon(db).start()  # no SMTP: mail stays queued
        api = Api(victim, session=acme.admin.s, csrf=acme.admin.csrf)
        r = upload(api, text)
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        done = threading.Event()
        th = threading.Thread(target=lambda: (_swallow(lambda: api.post("import/%s/confirm" % pid)), done.set()))
        th.start()
        if delay is None:
            done.wait(120)
        else:
            deadline = time.time() + 20
            while not _confirm_in_progress(db) and not done.is_set() and time.time() < deadline:
                time.sleep(0.002)
            time.sleep(delay)
        in_tx = _confirm_in_progress(db)
        victim.proc.kill()
        victim.proc.wait()
        victim.log.close()
        th.join()
        _wait_backends_settled(db)
        n = counts(db, pattern)
        status = db.value("SELECT status FROM import_previews WHERE id = %s", pid)
        assert n in ((0, 0, 0), (1000, 1000, 1000)), (delay, n)
        assert (status == "confirmed") == (n[0] == 1000), (delay, n, status)
        assert db.value("SELECT count(*) FROM audit_log WHERE action = 'import.confirm' AND target_id = %s",
                        pid) == (1 if n[0] else 0)
        outcomes.append((delay, in_tx, n[0]))
        # after a restart the confirm works (or answers with what was done)
        again = Daemon(db).start()
        try:
            api = Api(again, session=acme.admin.s, csrf=acme.admin.csrf)
            r = api.post("import/%s/confirm" % pid)
            assert r.status_code == 200, r.text
            assert r.json()["add"] == 1000
            assert counts(db, pattern) == (1000, 1000, 1000)
        finally:
            assert again.stop() == 0, again.log_tail()
        # keep the module's SMTP sink from receiving thousands of mails
        db.query("UPDATE outbox SET sent_at = now() WHERE payload->>'to' LIKE %s", pattern)
    print("SIGKILL (delay after BEGIN, transaction open at kill, users after):", outcomes)
    # at least one kill hit an open transaction, and it left nothing behind
    assert any(in_tx and n == 0 for _, in_tx, n in outcomes), outcomes
    assert outcomes[-1][2] == 1000


def _swallow(fn):
    try:
        fn()
    except requests.RequestException:
        pass
