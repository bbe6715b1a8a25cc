# SPDX-License-Identifier: AGPL-3.0-or-later
"""Invitations (issue 6): the admin invites, a real SMTP server on loopback
receives the mail, the test follows the link, sets a password and signs in."""

import re
import time
import urllib.parse

import requests

from users_fixtures import *  # noqa: F401,F403
from users_fixtures import (Daemon, Database, MailSink, Org, field_errors, free_port, invite_link, mail_html,
                            mail_text, uniq)

NEW_PASSWORD = "Fresh-Password-42"


def test_invite_mail_link_accept_and_login(acme, smtp):
    g = acme.admin.post("groups", {"name": "Invitees " + uniq("g")}).json()
    email = uniq("invitee")
    r = acme.admin.post("users/invite", {"email": email, "name": "Ivy Invitee", "role": "train",
                                         "groups": [g["name"]]})
    assert r.status_code == 201, r.text
    u = r.json()
    assert u["status"] == "pending" and u["created_via"] == "invite" and u["role"] == "train"
    assert u["groups"] == [{"id": g["id"], "name": g["name"], "source": "manual", "suspended": False}]
    db = acme.d.db
    exp = db.value("SELECT expires_at - created_at FROM invitations WHERE user_id = %s", u["id"])
    assert exp.days == 7
    m = smtp.wait_for(email)[0]
    assert "Acme Admin invited you" in m["msg"]["Subject"]
    text = mail_text(m)
    assert "Acme Admin" in text and re.search(r"expires on \d{4}-\d\d-\d\d \d\d:\d\d UTC", text)
    link = invite_link(m)
    assert link.startswith(acme.d.url + "/invite/")
    assert link in mail_html(m)
    # the token is stored as its SHA-256 only
    token = link.rsplit("/", 1)[1]
    assert db.value("SELECT count(*) FROM invitations WHERE token_hash = %s", token) == 0

    page = requests.get(link, timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert email in page.text
    assert "/sso/discover?email=" + urllib.parse.quote(email, safe="") in page.text.replace("&#39;", "'")

    s = requests.Session()
    r = s.post(link, data={"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}, allow_redirects=False,
               timeout=30)
    assert r.status_code == 303 and r.headers["Location"] == "/"
    assert s.cookies.get("idb_session")
    me = s.get(acme.d.url + "/api/v1/me", timeout=30).json()
    assert me["email"] == email and me["status"] == "active" and me["role"] == "train"
    row = db.one("SELECT status::text, accepted_at IS NOT NULL FROM users u JOIN invitations i ON i.user_id = u.id"
                 " WHERE u.id = %s", u["id"])
    assert row == ("active", True)

    # the new password works for a normal sign-in
    r = acme.d.post("/login", json={"email": email, "password": NEW_PASSWORD})
    assert r.status_code == 200

    # single use
    again = requests.get(link, timeout=30)
    assert again.status_code == 410 and "already been used" in again.text
    r = requests.post(link, json={"password": "Another-Password-9"}, timeout=30)
    assert r.status_code == 410


def test_accept_with_json(acme, smtp):
    email = uniq("jsonaccept")
    assert acme.admin.post("users/invite", {"email": email, "role": "readonly"}).status_code == 201
    link = invite_link(smtp.wait_for(email)[0])
    r = requests.post(link, json={"password": NEW_PASSWORD}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["status"] == "active" and r.json()["csrf_token"]


def test_password_rules(acme, smtp):
    email = uniq("weak")
    assert acme.admin.post("users/invite", {"email": email, "role": "readonly"}).status_code == 201
    link = invite_link(smtp.wait_for(email)[0])
    for pw, words in [("Short-1", "at least 12"), ("alllowercaseletters", "two kinds"), (email, "e-mail")]:
        r = requests.post(link, json={"password": pw}, timeout=30)
        assert r.status_code == 400, (pw, r.text)
        assert words in field_errors(r)["password"]
        r = requests.post(link, data={"password": pw, "password_confirm": pw}, timeout=30)
        assert r.status_code == 400 and "text/html" in r.headers["Content-Type"]
    r = requests.post(link, data={"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD + "x"}, timeout=30)
    assert r.status_code == 400 and "not the same" in r.text
    assert acme.d.db.value("SELECT status::text FROM users WHERE email = %s", email) == "pending"
    assert requests.get(link, timeout=30).status_code == 200  # still usable


def test_invite_input_errors_write_nothing(acme):
    db = acme.d.db
    before = db.value("SELECT count(*) FROM outbox")
    users = db.value("SELECT count(*) FROM users")
    r = acme.admin.post("users/invite", {"email": "not-an-email", "role": "readonly"})
    assert r.status_code == 400 and field_errors(r) == {"email": "Invalid email format"}
    r = acme.admin.post("users/invite", {"email": uniq("role"), "role": "owner"})
    assert r.status_code == 400 and field_errors(r) == {"role": "Invalid role"}
    r = acme.admin.post("users/invite", {"email": uniq("grp"), "role": "readonly", "groups": ["no such group"]})
    assert r.status_code == 400 and "groups" in field_errors(r)
    r = acme.admin.post("users/invite", {"email": uniq("grp"), "role": "readonly", "groups": "x"})
    assert r.status_code == 400 and "groups" in field_errors(r)
    assert db.value("SELECT count(*) FROM outbox") == before
    assert db.value("SELECT count(*) FROM users") == users


def test_existing_email_is_a_conflict(acme):
    email = uniq("dupe")
    assert acme.admin.post("users/invite", {"email": email, "role": "readonly"}).status_code == 201
    r = acme.admin.post("users/invite", {"email": email.upper(), "role": "admin"})
    assert r.status_code == 409


def test_expired_invitation_shows_410_naming_the_inviter(acme, smtp):
    email = uniq("late")
    uid = acme.admin.post("users/invite", {"email": email, "role": "readonly"}).json()["id"]
    link = invite_link(smtp.wait_for(email)[0])
    acme.d.db.query("UPDATE invitations SET expires_at = now() - interval '1 hour' WHERE user_id = %s", uid)
    r = requests.get(link, timeout=30)
    assert r.status_code == 410 and "expired" in r.text and acme.admin_email in r.text
    r = requests.post(link, data={"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}, timeout=30)
    assert r.status_code == 410
    assert acme.d.db.value("SELECT status::text FROM users WHERE id = %s", uid) == "pending"


def test_unknown_token_is_404(daemon):
    assert requests.get(daemon.url + "/invite/" + "A" * 43, timeout=30).status_code == 404
    assert requests.get(daemon.url + "/invite/short", timeout=30).status_code == 404


def test_resend_revokes_the_old_link(acme, smtp):
    email = uniq("resend")
    uid = acme.admin.post("users/invite", {"email": email, "role": "readonly"}).json()["id"]
    old = invite_link(smtp.wait_for(email)[0])
    r = acme.admin.post("users/%s/resend-invite" % uid)
    assert r.status_code == 200, r.text
    msgs = smtp.wait_for(email, count=2)
    new = invite_link(msgs[1])
    assert new != old
    assert requests.get(old, timeout=30).status_code == 410
    assert requests.post(new, json={"password": NEW_PASSWORD}, timeout=30).status_code == 200
    # only pending users can be re-invited
    assert acme.admin.post("users/%s/resend-invite" % uid).status_code == 409
    assert acme.d.db.value("SELECT count(*) FROM audit_log WHERE action = 'user.invite_resend'"
                           " AND target_id = %s", uid) == 1


def test_two_instances_deliver_each_mail_once(acme, smtp, make_daemon):
    make_daemon(smtp_port=smtp.port)  # a second sender on the same outbox
    emails = [uniq("many") for _ in range(8)]
    for e in emails:
        assert acme.admin.post("users/invite", {"email": e, "role": "readonly"}).status_code == 201
    for e in emails:
        smtp.wait_for(e)
    time.sleep(2)
    for e in emails:
        assert len([m for m in smtp.messages if e in m["rcpt"]]) == 1


def test_smtp_outage_delays_mail_but_loses_nothing():
    db = Database("idbt_outage")
    try:
        # no SMTP configured: mail stays queued
        quiet = Daemon(db).start()
        org = Org(quiet, "outage", "admin@outage.test")
        email = "waiting@outage.test"
        assert org.admin.post("users/invite", {"email": email, "role": "readonly"}).status_code == 201
        time.sleep(2)
        assert db.one("SELECT attempts, sent_at FROM outbox") == (0, None)
        assert quiet.stop() == 0

        # SMTP configured but down: attempts are recorded, with back-off
        port = free_port()
        sender = Daemon(db, smtp_port=port).start()
        try:
            deadline = time.time() + 15
            while time.time() < deadline and not db.value("SELECT attempts FROM outbox"):
                time.sleep(0.2)
            row = db.one("SELECT attempts, last_error, next_attempt_at > now(), sent_at FROM outbox")
            assert row[0] >= 1 and row[1] and row[2] and row[3] is None
            sink = MailSink(port).start()
            try:
                m = sink.wait_for(email, timeout=30)[0]
                assert invite_link(m).startswith(quiet.url + "/invite/")  # composed at invite time
                # the sender marks the row after the server's 250: poll
                deadline = time.time() + 10
                while time.time() < deadline and not db.value("SELECT sent_at IS NOT NULL FROM outbox"):
                    time.sleep(0.1)
                assert db.value("SELECT sent_at IS NOT NULL FROM outbox")
            finally:
                sink.stop()
        finally:
            assert sender.stop() == 0
    finally:
        db.drop()
