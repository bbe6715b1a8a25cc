# SPDX-License-Identifier: AGPL-3.0-or-later
"""Helpers for idbridge's black-box integration tests.

Everything here talks to real processes over loopback: the idbridge daemon and
idbridgectl from the build directory, PostgreSQL through psycopg2 and Redis
through the small RESP client below (no redis package is installed on purpose).
The pytest fixtures that wrap these helpers live in conftest.py.
"""

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import psycopg2
import psycopg2.extensions
import requests

REPO = Path(__file__).resolve().parents[2]
LSAN_SUPPRESSIONS = REPO / "tests" / "lsan.supp"

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
)

HTTP_TIMEOUT = 10


# --------------------------------------------------------------------------
# Ports


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port_closed(port, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except OSError:
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------
# Sanitizer reports


def sanitizer_excerpt(text, before=5, after=60):
    """The lines around the first sanitizer report in text, or None."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if any(m in line for m in SANITIZER_MARKERS):
            return "\n".join(lines[max(0, i - before):i + after])
    return None


def assert_no_sanitizer_report(text, what):
    excerpt = sanitizer_excerpt(text)
    if excerpt is not None:
        raise AssertionError(f"sanitizer report in {what}:\n{excerpt}")


def tail(text, n=60):
    return "\n".join(text.splitlines()[-n:])


# --------------------------------------------------------------------------
# Redis: a minimal RESP2 client


class RespError(Exception):
    """An error reply (-ERR ...) from Redis."""


class Redis:
    """One connection to a Redis server; command(*args) -> decoded reply.

    Replies: simple string -> str, bulk string -> bytes (None for nil),
    integer -> int, array -> list (None for nil), error -> raises RespError.
    """

    def __init__(self, host="127.0.0.1", port=6379, db=0, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.rfile = self.sock.makefile("rb")
        if db:
            self.command("SELECT", db)

    @classmethod
    def from_url(cls, url, timeout=5.0):
        u = urllib.parse.urlparse(url)
        db = int(u.path.strip("/") or 0)
        return cls(u.hostname or "127.0.0.1", u.port or 6379, db, timeout)

    def close(self):
        try:
            self.rfile.close()
        finally:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def command(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif not isinstance(a, bytes):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _line(self):
        line = self.rfile.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("redis closed the connection")
        return line[:-2]

    def _read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rfile.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        raise ConnectionError(f"unexpected RESP reply {line!r}")


def redis_command(url, *args):
    """One-shot: open a connection to url, run one command, close."""
    with Redis.from_url(url) as r:
        return r.command(*args)


class PrivateRedis:
    """A redis-server of the test's own on a free loopback port.

    stop() and start() keep the port, so a daemon pointed at .url sees the
    same Redis come back (the "Redis down" tests).
    """

    def __init__(self, workdir, port=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = self.workdir / f"redis-{self.port}.log"
        self.proc = None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=10.0):
        assert not self.running, "private redis already running"
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                 "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n"
                                   + tail(self.log_path.read_text(errors="replace")))
            try:
                if self.command("PING") == "PONG":
                    return self
            except (OSError, ConnectionError, RespError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING")

    def stop(self, timeout=10.0):
        if not self.running:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        wait_port_closed(self.port)

    def restart(self):
        self.stop()
        return self.start()

    def command(self, *args):
        return redis_command(self.url, *args)

    def client(self):
        return Redis.from_url(self.url)


# --------------------------------------------------------------------------
# PostgreSQL


def db_url_with_name(server_url, dbname):
    u = urllib.parse.urlparse(server_url)
    return urllib.parse.urlunparse(u._replace(path="/" + dbname))


def db_name(db_url):
    return urllib.parse.urlparse(db_url).path.lstrip("/")


def pg_connect(url):
    return psycopg2.connect(url, connect_timeout=5)


def create_database(server_url, prefix="idb_t_"):
    """CREATE DATABASE idb_t_<random> on the test server; returns its URL."""
    name = prefix + secrets.token_hex(6)
    conn = pg_connect(server_url)
    try:
        conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return db_url_with_name(server_url, name)


def drop_database(server_url, db_url):
    """DROP DATABASE ... WITH (FORCE): also ends the daemon's connections."""
    name = db_name(db_url)
    assert re.fullmatch(r"[a-z0-9_]+", name), name
    conn = pg_connect(server_url)
    try:
        conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


def psql(db_url, sql, params=None):
    """Run one statement (committed); returns the rows as a list of dicts
    (an empty list for statements that return nothing)."""
    conn = pg_connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            rows = []
            if cur.description is not None:
                cols = [d.name for d in cur.description]
                rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        conn.commit()
        return rows
    finally:
        conn.close()


def psql_value(db_url, sql, params=None):
    """The first column of the single row sql returns."""
    rows = psql(db_url, sql, params)
    assert len(rows) == 1, f"expected one row from {sql!r}, got {rows!r}"
    return next(iter(rows[0].values()))


def tables_containing(db_url, needle):
    """Names of tables in the public schema with a row whose text form
    contains needle (secrets-at-rest checks)."""
    found = []
    for row in psql(db_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"):
        t = row["tablename"]
        n = psql_value(db_url,
                       f'SELECT count(*) FROM public."{t}" x WHERE x::text LIKE %s',
                       ("%" + needle + "%",))
        if n:
            found.append(t)
    return found


# --------------------------------------------------------------------------
# Config files: a tiny YAML emitter (block style, every string double-quoted)


def _yaml_scalar(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(value, indent=0):
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        for k, v in value.items():
            key = _yaml_scalar(str(k)) if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", str(k)) else str(k)
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{key}:\n{to_yaml(v, indent + 2)}")
            else:
                empty = "{}" if isinstance(v, dict) else "[]" if isinstance(v, list) else None
                lines.append(f"{pad}{key}: {empty or _yaml_scalar(v)}\n")
        return "".join(lines)
    if isinstance(value, list):
        if not value:
            return pad + "[]\n"
        for v in value:
            if isinstance(v, (dict, list)) and v:
                inner = to_yaml(v, indent + 2)
                lines.append(f"{pad}- {inner.lstrip()}")
            else:
                empty = "{}" if isinstance(v, dict) else "[]" if isinstance(v, list) else None
                lines.append(f"{pad}- {empty or _yaml_scalar(v)}\n")
        return "".join(lines)
    return pad + _yaml_scalar(value) + "\n"


def deep_merge(base, extra):
    """A new dict: base with extra merged in recursively (extra wins)."""
    out = dict(base)
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------
# HTTP helpers


def parse_set_cookies(resp):
    """Every Set-Cookie header of a requests response, parsed:
    [{"name", "value", "attrs": {lowercase attr: value or True}}]."""
    raw = resp.raw.headers.getlist("Set-Cookie") if resp.raw is not None else []
    cookies = []
    for header in raw:
        parts = [p.strip() for p in header.split(";")]
        name, _, value = parts[0].partition("=")
        attrs = {}
        for p in parts[1:]:
            if not p:
                continue
            k, eq, v = p.partition("=")
            attrs[k.strip().lower()] = v.strip() if eq else True
        cookies.append({"name": name.strip(), "value": value.strip(), "attrs": attrs})
    return cookies


def session_cookie(resp, name="idb_session"):
    """The parsed Set-Cookie for name (asserts there is exactly one)."""
    found = [c for c in parse_set_cookies(resp) if c["name"] == name]
    assert len(found) == 1, f"expected one Set-Cookie {name}, got {resp.raw.headers.getlist('Set-Cookie')!r}"
    return found[0]


def assert_request_id(resp):
    rid = resp.headers.get("X-Request-Id")
    assert rid, f"{resp.request.method} {resp.request.path_url} -> {resp.status_code} without X-Request-Id"
    return rid


def assert_problem(resp, status, detail=None, detail_contains=None):
    """resp is an RFC 9457 problem with this status; returns the parsed body."""
    where = f"{resp.request.method} {resp.request.path_url}"
    assert resp.status_code == status, \
        f"{where}: expected {status}, got {resp.status_code}: {resp.text[:500]}"
    assert_request_id(resp)
    ctype = resp.headers.get("Content-Type", "")
    assert ctype.split(";")[0].strip() == "application/problem+json", \
        f"{where}: content type {ctype!r}, body {resp.text[:300]!r}"
    body = resp.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, f"{where}: problem without {key!r}: {body!r}"
    assert body["status"] == status, f"{where}: problem status {body['status']!r} != {status}"
    if detail is not None:
        assert body["detail"] == detail, f"{where}: detail {body['detail']!r} != {detail!r}"
    if detail_contains is not None:
        assert detail_contains.lower() in str(body["detail"]).lower(), \
            f"{where}: detail {body['detail']!r} does not mention {detail_contains!r}"
    if "errors" in body:
        assert isinstance(body["errors"], list), body
        for e in body["errors"]:
            assert "field" in e and "message" in e, body
    return body


def raw_http(port, request, timeout=10.0):
    """Send raw bytes to 127.0.0.1:port and read the answer until the server
    closes. A server that answers early (413) and stops reading is fine: send
    errors are ignored and whatever answer arrived is returned.

    Returns (status, headers {lowercase: value}, body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/"):
        raise AssertionError(f"no HTTP answer, got {data[:200]!r}")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


# --------------------------------------------------------------------------
# Prometheus text format


_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, float)] for every sample line."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = {k: v.encode().decode("unicode_escape") for k, v in _LABEL_RE.findall(m.group(3) or "")}
        samples.append((m.group(1), labels, float(m.group(4))))
    return samples


def metric_samples(text, name, **labels):
    return [(lab, v) for (n, lab, v) in parse_metrics(text)
            if n == name and all(lab.get(k) == want for k, want in labels.items())]


def metric_value(text, name, **labels):
    """Sum of the samples of name whose labels include labels (None if none)."""
    found = metric_samples(text, name, **labels)
    if not found:
        return None
    return sum(v for _, v in found)


# --------------------------------------------------------------------------
# The daemon and the CLI


class Daemon:
    """One idbridge process with its own config file, port and log.

    Construct, then start(). stop() sends SIGTERM and asserts a clean exit
    and a sanitizer-clean log. ctl() runs idbridgectl with the same config
    and environment, so it works with or without the daemon running.
    """

    BASE_CONFIG = {
        "server": {"threads": 4},
        "security": {},
        "log": {"level": "debug"},
    }

    def __init__(self, build_dir, workdir, db_url, redis_url, config=None,
                 env=None, public_url=None, port=None, secret_key_file=None,
                 secret_key=None):
        self.build_dir = Path(build_dir)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url
        self.redis_url = redis_url
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.public_url = public_url or self.url
        # The daemon creates the key file (0600) on first start when it is
        # absent; daemons sharing a database should share the file.
        self.secret_key_path = Path(secret_key_file or self.workdir / "secret.key")
        self.config_path = self.workdir / "idbridge.yaml"
        self.log_path = self.workdir / "idbridge.log"
        self.extra_env = dict(env or {})
        self.proc = None
        self.stopped_ok = False
        self.ctl_log = []
        if secret_key is not None:
            self.secret_key_path.write_bytes(secret_key)
            os.chmod(self.secret_key_path, 0o600)
        base = deep_merge(self.BASE_CONFIG,
                          {"security": {"secret_key_file": str(self.secret_key_path)}})
        self.config = deep_merge(base, config or {})
        self.write_config()

    # --- files and environment

    @property
    def binary(self):
        return self.build_dir / "idbridge"

    @property
    def ctl_binary(self):
        return self.build_dir / "idbridgectl"

    def write_config(self, config=None, path=None):
        """Write config (default: self.config) as YAML; returns the path."""
        path = Path(path or self.config_path)
        path.write_text(to_yaml(self.config if config is None else config))
        return path

    def env(self, **overrides):
        """The environment for idbridge and idbridgectl. overrides with the
        value None remove a variable."""
        e = {k: v for k, v in os.environ.items() if not k.startswith("IDBRIDGE_")}
        e.update({
            "IDBRIDGE_DATABASE_URL": self.db_url,
            "IDBRIDGE_REDIS_URL": self.redis_url,
            "IDBRIDGE_LISTEN": f"127.0.0.1:{self.port}",
            "IDBRIDGE_PUBLIC_URL": self.public_url,
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        })
        if LSAN_SUPPRESSIONS.exists():
            e["LSAN_OPTIONS"] = f"suppressions={LSAN_SUPPRESSIONS}"
        e.update(self.extra_env)
        for k, v in overrides.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        return e

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # --- lifecycle

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=20.0):
        assert not self.running, "daemon already running"
        assert self.binary.exists(), f"{self.binary} does not exist (build first)"
        self.stopped_ok = False
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [str(self.binary), "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env(), cwd=str(self.workdir))
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"idbridge exited with {self.proc.returncode} during start-up; log tail:\n"
                    + tail(self.log_text()))
            try:
                r = requests.get(self.url + "/healthz", timeout=1)
                if r.status_code == 200:
                    return self
                last = f"{r.status_code} {r.text[:200]}"
            except requests.RequestException as exc:
                last = repr(exc)
            time.sleep(0.1)
        self.proc.kill()
        self.proc.wait()
        raise AssertionError(
            f"idbridge did not answer GET /healthz 200 within {timeout:.0f} s "
            f"(last: {last}); log tail:\n" + tail(self.log_text()))

    def stop(self, timeout=15.0, expect_code=0):
        """SIGTERM, wait, then assert the exit code and a sanitizer-clean log.
        Idempotent: a second call only re-checks."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"idbridge did not exit within {timeout:.0f} s of SIGTERM; log tail:\n"
                    + tail(self.log_text()))
        code = self.proc.returncode
        text = self.log_text()
        assert_no_sanitizer_report(text, f"idbridge log {self.log_path}")
        assert code == expect_code, \
            f"idbridge exited with {code} (expected {expect_code}); log tail:\n{tail(text)}"
        self.stopped_ok = True
        return code

    def kill(self):
        if self.running:
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        self.stop()
        return self.start()

    # --- running the binaries

    def _run(self, argv, stdin=None, env=None, timeout=60, check_sanitizers=True):
        p = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout,
            env=env if env is not None else self.env(), cwd=str(self.workdir))
        self.ctl_log.append(p)
        if check_sanitizers:
            assert_no_sanitizer_report(p.stdout + "\n" + p.stderr, " ".join(argv))
        return p

    def ctl(self, *args, stdin=None, env=None, timeout=60, config=True):
        """Run idbridgectl --config <file> args...; returns CompletedProcess
        (text mode). Asserts no sanitizer report in its output."""
        argv = [str(self.ctl_binary)]
        if config:
            argv += ["--config", str(self.config_path)]
        argv += [str(a) for a in args]
        return self._run(argv, stdin=stdin, env=env, timeout=timeout)

    def ctl_ok(self, *args, stdin=None):
        p = self.ctl(*args, stdin=stdin)
        assert p.returncode == 0, \
            f"idbridgectl {' '.join(map(str, args))} -> {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
        return p

    def run(self, *args, stdin=None, env=None, timeout=60):
        """Run the idbridge binary with args (--version, --check-config F)."""
        return self._run([str(self.binary)] + [str(a) for a in args],
                         stdin=stdin, env=env, timeout=timeout)

    # --- HTTP

    def request(self, method, path, session_token=None, api_key=None, csrf=None,
                headers=None, **kw):
        """requests.request against the daemon: no redirects followed,
        10 s timeout. session_token sets the idb_session cookie, api_key the
        bearer header, csrf the X-CSRF-Token header."""
        h = dict(headers or {})
        if session_token is not None:
            h["Cookie"] = f"idb_session={session_token}"
        if api_key is not None:
            h["Authorization"] = f"Bearer {api_key}"
        if csrf is not None:
            h["X-CSRF-Token"] = csrf
        kw.setdefault("timeout", HTTP_TIMEOUT)
        kw.setdefault("allow_redirects", False)
        return requests.request(method, self.url + path, headers=h, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def metrics(self):
        r = self.get("/metrics")
        assert r.status_code == 200, r.text[:300]
        return r.text

    # --- common flows

    def login(self, email, password, expect=200):
        """JSON password login; returns a Login (token, csrf, user, response)."""
        r = self.post("/login", json={"email": email, "password": password})
        assert r.status_code == expect, f"POST /login {email}: {r.status_code} {r.text[:300]}"
        if expect != 200:
            return Login(None, None, None, r)
        body = r.json()
        cookie = session_cookie(r)
        return Login(cookie["value"], body.get("csrf_token"), body.get("user"), r)


class Login:
    def __init__(self, token, csrf, user, response):
        self.token = token
        self.csrf = csrf
        self.user = user
        self.response = response

    def __repr__(self):
        return f"Login(user={self.user and self.user.get('email')!r})"


# --------------------------------------------------------------------------
# idbridgectl flows


def parse_kv_lines(text):
    """'key: value' lines -> dict."""
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def create_org(daemon, slug, name=None):
    args = ["org", "create", slug]
    if name is not None:
        args += ["--name", name]
    return daemon.ctl_ok(*args)


def create_admin(daemon, org, email, password=None):
    """idbridgectl admin create; returns the password (generated one if
    password is None)."""
    if password is None:
        p = daemon.ctl_ok("admin", "create", "--org", org, "--email", email)
        kv = parse_kv_lines(p.stdout)
        assert kv.get("email") == email, p.stdout
        assert kv.get("password"), f"no generated password in {p.stdout!r}"
        return kv["password"]
    p = daemon.ctl_ok("admin", "create", "--org", org, "--email", email,
                      "--password-stdin", stdin=password + "\n")
    assert parse_kv_lines(p.stdout).get("email") == email, p.stdout
    return password


def create_api_key(daemon, org, email, name):
    p = daemon.ctl_ok("apikey", "create", "--org", org, "--email", email, "--name", name)
    key = p.stdout.splitlines()[0].strip() if p.stdout else ""
    assert key.startswith("idb_"), f"apikey create printed {p.stdout!r}"
    return key


class Org:
    """An organisation created through idbridgectl, with one admin."""

    def __init__(self, daemon, slug, name, admin_email, admin_password):
        self.daemon = daemon
        self.slug = slug
        self.name = name
        self.admin_email = admin_email
        self.admin_password = admin_password
        self._api_key = None

    @property
    def api_key(self):
        """The admin's API key (created on first use)."""
        if self._api_key is None:
            self._api_key = create_api_key(self.daemon, self.slug, self.admin_email, "tests")
        return self._api_key

    def login_admin(self):
        return self.daemon.login(self.admin_email, self.admin_password)

    def new_admin(self, local_part=None, password=None):
        """Another admin user in this org: (email, password)."""
        email = f"{local_part or 'u' + secrets.token_hex(4)}@{self.slug}.test"
        password = password or ("pw-" + secrets.token_urlsafe(12))
        create_admin(self.daemon, self.slug, email, password)
        return email, password
