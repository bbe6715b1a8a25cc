# SPDX-License-Identifier: AGPL-3.0-or-later
"""Integration harness for the user-management tests (issue 6).

Runs the real daemon (IDBRIDGE_TEST_BUILD_DIR/idbridge) against the PostgreSQL
and Redis that `deploy/dev test` / `deploy/dev services` start
(IDBRIDGE_TEST_PG_URL, IDBRIDGE_TEST_REDIS_URL), with the shipped
conf/idbridge.example.yaml plus IDBRIDGE_* environment overrides, exactly as an
operator would. Every test module gets its own throw-away database; Redis is
shared (keys are random ids, nothing here flushes it).

Also: a real SMTP server on loopback (aiosmtpd) that stores what it receives,
helpers to create users, sign in and call the admin API.

Import the fixtures into a test module with `from users_fixtures import *`.
"""

import email
import email.policy
import os
import re
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

import psycopg2
import pytest
import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("IDBRIDGE_TEST_BUILD_DIR", os.path.join(ROOT, "build"))
PG_URL = os.environ.get("IDBRIDGE_TEST_PG_URL")
REDIS_URL = os.environ.get("IDBRIDGE_TEST_REDIS_URL")
CONFIG = os.path.join(ROOT, "conf", "idbridge.example.yaml")

ADMIN_EMAIL = "admin@acme.test"
ADMIN_PASSWORD = "Admin-password-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _db_url(base, name):
    u = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


class Database:
    """A throw-away database in the test cluster."""

    def __init__(self, prefix="idbt", name=None):
        if not PG_URL:
            pytest.skip("IDBRIDGE_TEST_PG_URL is not set (run through deploy/dev test or deploy/dev services)")
        self.name = name or "%s_%s" % (prefix, secrets.token_hex(6))
        admin = psycopg2.connect(PG_URL)
        admin.autocommit = True
        with admin.cursor() as c:
            c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.name,))
            if not c.fetchone():
                c.execute('CREATE DATABASE "%s"' % self.name)
        admin.close()
        self.url = _db_url(PG_URL, self.name)
        self._conn = None

    def conn(self):
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(self.url)
            self._conn.autocommit = True
        return self._conn

    def query(self, sql, *args):
        with self.conn().cursor() as c:
            c.execute(sql, args)
            return c.fetchall() if c.description else []

    def one(self, sql, *args):
        rows = self.query(sql, *args)
        return rows[0] if rows else None

    def value(self, sql, *args):
        row = self.one(sql, *args)
        return row[0] if row else None

    def drop(self):
        if self._conn is not None:
            self._conn.close()
        admin = psycopg2.connect(PG_URL)
        admin.autocommit = True
        with admin.cursor() as c:
            c.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % self.name)
        admin.close()


class Daemon:
    """One idbridge process. Several may share a database and Redis."""

    def __init__(self, db, smtp_port=None, extra_env=None):
        self.db = db
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.dir = tempfile.mkdtemp(prefix="idbd-")
        os.chmod(self.dir, 0o755)
        self.log_path = os.path.join(self.dir, "idbridge.log")
        self.env = dict(os.environ)
        self.env.update({
            "IDBRIDGE_DATABASE_URL": db.url,
            "IDBRIDGE_REDIS_URL": REDIS_URL or "redis://127.0.0.1:6379/0",
            "IDBRIDGE_LISTEN": "127.0.0.1:%d" % self.port,
            "IDBRIDGE_PUBLIC_URL": self.url,
            "IDBRIDGE_SMTP_URL": "smtp://127.0.0.1:%d" % smtp_port if smtp_port else "",
            "LSAN_OPTIONS": "suppressions=%s" % os.path.join(ROOT, "tests", "lsan.supp"),
        })
        if extra_env:
            self.env.update(extra_env)
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(BUILD, "idbridge"), "--config", CONFIG], cwd=self.dir,
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("idbridge exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("idbridge did not come up:\n" + self.log_tail())

    def stop(self):
        """SIGTERM and wait; returns the exit status (0 = clean, no leaks)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def log_tail(self, n=60):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def ctl(self, *args, stdin=None, check=True):
        r = subprocess.run([os.path.join(BUILD, "idbridgectl"), "--config", CONFIG] + list(args), cwd=self.dir,
                           env=self.env, input=stdin, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError("idbridgectl %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
        return r

    # --- HTTP helpers ---
    def get(self, path, **kw):
        return requests.get(self.url + path, timeout=30, allow_redirects=False, **kw)

    def post(self, path, **kw):
        return requests.post(self.url + path, timeout=30, allow_redirects=False, **kw)

    def check(self, token=None, cookie=None, permission=None):
        """GET /auth/check with an API key or a session cookie value."""
        headers = {"Authorization": "Bearer " + token} if token else {}
        cookies = {"idb_session": cookie} if cookie else {}
        path = "/auth/check" + ("?permission=" + permission if permission else "")
        return requests.get(self.url + path, headers=headers, cookies=cookies, timeout=30)


class Api:
    """A signed-in caller of /api/v1: session cookie + CSRF, or an API key."""

    def __init__(self, daemon, session=None, csrf=None, key=None):
        self.d = daemon
        self.s = session or requests.Session()
        self.csrf = csrf
        self.key = key

    def _headers(self, method, headers):
        h = dict(headers or {})
        if self.key:
            h["Authorization"] = "Bearer " + self.key
        elif self.csrf and method not in ("GET", "HEAD"):
            h.setdefault("X-CSRF-Token", self.csrf)
        return h

    def call(self, method, path, json=None, headers=None, **kw):
        if not path.startswith("/"):
            path = "/api/v1/" + path
        return self.s.request(method, self.d.url + path, json=json, headers=self._headers(method, headers),
                              timeout=60, allow_redirects=False, **kw)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.call("POST", path, json=json if json is not None else {}, **kw)

    def patch(self, path, json=None, **kw):
        return self.call("PATCH", path, json=json, **kw)

    def delete(self, path, json=None, **kw):
        return self.call("DELETE", path, json=json, **kw)

    @property
    def cookie(self):
        return self.s.cookies.get("idb_session")


def login(daemon, email, password):
    """Password login; returns an Api with the session cookie and CSRF token."""
    s = requests.Session()
    r = s.post(daemon.url + "/login", json={"email": email, "password": password}, timeout=30)
    assert r.status_code == 200, r.text
    return Api(daemon, session=s, csrf=r.json()["csrf_token"])


class Org:
    """An organisation with an active admin (password login), set up through
    idbridgectl as an operator would."""

    def __init__(self, daemon, slug, admin_email, admin_password=ADMIN_PASSWORD):
        self.d = daemon
        self.slug = slug
        r = daemon.ctl("org", "create", slug, "--name", slug.capitalize() + " Inc")
        self.id = daemon.db.value("SELECT id::text FROM organizations WHERE slug = %s", slug)
        daemon.ctl("admin", "create", "--org", slug, "--email", admin_email, "--name", slug.capitalize() + " Admin",
                   "--password-stdin", stdin=admin_password + "\n")
        self.admin_email = admin_email
        self.admin_password = admin_password
        self.admin_id = daemon.db.value("SELECT id::text FROM users WHERE lower(email) = lower(%s) AND org_id = %s",
                                        admin_email, self.id)
        self.admin = login(daemon, admin_email, admin_password)
        del r

    def create_user(self, email, role="readonly", password="User-password-1", name=None, status="active",
                    groups=()):
        """An active password user, created directly (fast path for tests that
        are not about invitations): invited through the API, then activated
        by setting the password in SQL."""
        r = self.admin.post("users/invite", {"email": email, "role": role, "name": name or email.split("@")[0],
                                             "groups": list(groups)})
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
        if status != "pending":
            h = argon2_hash(self.d, password)
            self.d.db.query("UPDATE users SET status = %s, password_hash = %s WHERE id = %s", status, h, uid)
            self.d.db.query("UPDATE invitations SET revoked_at = now() WHERE user_id = %s", uid)
        return uid

    def api_key(self, email, name="test key", scopes=None):
        args = ["apikey", "create", "--org", self.slug, "--email", email, "--name", name]
        if scopes:
            args += ["--scopes", scopes]
        return self.d.ctl(*args).stdout.strip()


_hash_cache = {}


def argon2_hash(daemon, password):
    """An argon2id hash made by the daemon's own code path (idbridgectl admin
    create into a scratch org), cached per password."""
    if password in _hash_cache:
        return _hash_cache[password]
    slug = "h" + secrets.token_hex(5)
    daemon.ctl("org", "create", slug)
    daemon.ctl("admin", "create", "--org", slug, "--email", "hash@%s.test" % slug, "--password-stdin",
               stdin=password + "\n")
    h = daemon.db.value("SELECT u.password_hash FROM users u JOIN organizations o ON o.id = u.org_id"
                        " WHERE o.slug = %s", slug)
    daemon.db.query("DELETE FROM organizations WHERE slug = %s", slug)
    _hash_cache[password] = h
    return h


# --- SMTP ---------------------------------------------------------------------

class MailSink:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.messages = []
        self.controller = None

    def start(self):
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                msg = email.message_from_bytes(envelope.original_content or envelope.content,
                                               policy=email.policy.default)
                sink.messages.append({"rcpt": list(envelope.rcpt_tos), "from": envelope.mail_from, "msg": msg})
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self):
        if self.controller:
            self.controller.stop()
            self.controller = None

    def wait_for(self, rcpt, timeout=20, count=1):
        """The messages to rcpt once at least count have arrived."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = [m for m in self.messages if rcpt.lower() in [r.lower() for r in m["rcpt"]]]
            if len(got) >= count:
                return got
            time.sleep(0.1)
        raise AssertionError("no mail to %s within %ss (have %d messages)" % (rcpt, timeout, len(self.messages)))


def mail_text(m):
    return m["msg"].get_body(preferencelist=("plain",)).get_content()


def mail_html(m):
    body = m["msg"].get_body(preferencelist=("html",))
    return body.get_content() if body else None


def invite_link(m):
    found = re.search(r"(https?://\S+/invite/[A-Za-z0-9_-]{43})", mail_text(m))
    assert found, mail_text(m)
    return found.group(1)


# --- fixtures -----------------------------------------------------------------

@pytest.fixture(scope="module")
def db():
    d = Database()
    yield d
    d.drop()


@pytest.fixture(scope="module")
def smtp():
    s = MailSink().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def daemon(db, smtp):
    d = Daemon(db, smtp_port=smtp.port).start()
    yield d
    rc = d.stop()
    assert rc == 0, "idbridge did not stop cleanly (%s):\n%s" % (rc, d.log_tail())


@pytest.fixture(scope="module")
def make_daemon(db):
    """Extra daemons sharing the module's database and Redis."""
    started = []

    def make(**kw):
        d = Daemon(db, **kw).start()
        started.append(d)
        return d

    yield make
    for d in started:
        rc = d.stop()
        assert rc == 0, "idbridge did not stop cleanly (%s):\n%s" % (rc, d.log_tail())


@pytest.fixture(scope="module")
def acme(daemon):
    return Org(daemon, "acme", ADMIN_EMAIL)


@pytest.fixture(scope="module")
def globex(daemon):
    return Org(daemon, "globex", "admin@globex.test")


def uniq(prefix="user"):
    return "%s-%s@acme.test" % (prefix, secrets.token_hex(4))


def field_errors(r):
    return {e["field"]: e["message"] for e in r.json().get("errors", [])}
