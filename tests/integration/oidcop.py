# SPDX-License-Identifier: AGPL-3.0-or-later
"""OpenID providers for idbridge's OIDC integration tests.

RealOP runs the `oidc-provider` npm package (tests/oidc_op/op.mjs, installed
by `npm_deps` in deploy/lib.sh from tests/package.json) on a loopback port:
the happy path, key rotation and logout run against it.

FakeOP is a test double for attack injection only: a small Python server
with discovery, a JWKS, a token endpoint that answers with whatever ID token
the test crafted, a userinfo endpoint and a /jku trap that counts any fetch.
Tokens are signed with python3-jwcrypto (/usr/bin/python3).
"""

import base64
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from jwcrypto import jwk, jws
from jwcrypto.common import json_encode

import idbtest

REPO = Path(__file__).resolve().parents[2]
OP_SCRIPT = REPO / "tests" / "oidc_op" / "op.mjs"
NODE_MODULES = REPO / "tests" / "node_modules"


def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rsa_key(kid, alg="RS256", use="sig"):
    return jwk.JWK.generate(kty="RSA", size=2048, kid=kid, use=use, alg=alg)


def public_jwk(key, **override):
    d = json.loads(key.export_public())
    for k, v in override.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    return d


def sign(payload, key, alg="RS256", header=None, kid=True):
    """Compact JWS of payload (dict, or raw bytes/str used as is)."""
    if isinstance(payload, dict):
        payload = json.dumps(payload).encode()
    elif isinstance(payload, str):
        payload = payload.encode()
    h = {"alg": alg}
    if kid and key.get("kid"):
        h["kid"] = key["kid"] if isinstance(kid, bool) else kid
    elif isinstance(kid, str):
        h["kid"] = kid
    h.update(header or {})
    # Unknown critical headers are the point of some tests: jwcrypto would
    # refuse to sign them, so they are registered as known here.
    registry = {name: jws.JWSEHeaderParameter("test", False, True, None) for name in h.get("crit", [])}
    t = jws.JWS(payload, header_registry=registry) if registry else jws.JWS(payload)
    t.add_signature(key, alg=None, protected=json_encode(h))
    return t.serialize(compact=True)


def unsigned(payload, header=None, signature=""):
    h = {"alg": "none"}
    h.update(header or {})
    return f"{b64u(json.dumps(h))}.{b64u(json.dumps(payload))}.{signature}"


# --------------------------------------------------------------------------
# The real provider (oidc-provider on Node.js)


class RealOP:
    def __init__(self, workdir, clients, accounts, port=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or idbtest.free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.clients = clients
        self.accounts = accounts
        self.keys = [rsa_key("op-key-1")]
        self.proc = None
        self.log_path = self.workdir / "op.log"

    def start(self):
        node = shutil.which("node")
        assert node, "node is not installed (deploy/lib.sh installs nodejs)"
        assert (NODE_MODULES / "oidc-provider").is_dir(), \
            "tests/node_modules/oidc-provider is missing: run `npm ci --prefix tests` (deploy/dev test does)"
        cfg = {"port": self.port, "issuer": self.issuer,
               "keys": [json.loads(k.export_private()) for k in self.keys],
               "clients": self.clients, "accounts": self.accounts}
        cfg_path = self.workdir / "op.json"
        cfg_path.write_text(json.dumps(cfg))
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([node, str(OP_SCRIPT), str(cfg_path)], stdout=subprocess.PIPE,
                                         stderr=log, stdin=subprocess.DEVNULL, cwd=str(REPO / "tests"))
        finally:
            log.close()
        line = self.proc.stdout.readline()
        assert line.strip() == b"ready", f"oidc-provider did not start: {line!r}\n{self.log_text()[-2000:]}"
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def restart(self):
        self.stop()
        idbtest.wait_port_closed(self.port)
        return self.start()

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def follow_to(session, url, prefix, max_hops=12):
    """Follows redirects with session (a browser at the provider) until a
    Location starts with prefix; returns that URL."""
    for _ in range(max_hops):
        r = session.get(url, allow_redirects=False, timeout=10)
        assert r.status_code in (302, 303), f"GET {url} -> {r.status_code}: {r.text[:500]}"
        url = urllib.parse.urljoin(url, r.headers["Location"])
        if url.startswith(prefix):
            return url
    raise AssertionError(f"no redirect to {prefix} after {max_hops} hops (last {url})")


# --------------------------------------------------------------------------
# The fake provider (attack injection)


class FakeOP:
    """Discovery, JWKS, token, userinfo. Tests set .id_token (the next token
    endpoint answer), .userinfo, .jwks_keys; read .token_requests,
    .jwks_fetches, .trap_fetches."""

    def __init__(self, client_id):
        self.client_id = client_id
        self.key = rsa_key("fake-k1")
        self.jwks_keys = [public_jwk(self.key)]
        self.id_token = None
        self.token_status = 200
        self.access_token = "at-" + os.urandom(8).hex()
        self.userinfo = None
        self.token_requests = []
        self.jwks_fetches = 0
        self.trap_fetches = 0
        self.iss_parameter = False
        op = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _json(self, status, obj, ctype="application/json"):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = urllib.parse.urlparse(self.path).path
                if path == "/.well-known/openid-configuration":
                    self._json(200, op.discovery())
                elif path == "/jwks":
                    op.jwks_fetches += 1
                    self._json(200, {"keys": op.jwks_keys})
                elif path == "/userinfo":
                    if op.userinfo is None:
                        self._json(404, {"error": "none"})
                    else:
                        self._json(200, op.userinfo)
                elif path.startswith("/trap"):
                    op.trap_fetches += 1
                    self._json(200, {"keys": []})
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode()
                path = urllib.parse.urlparse(self.path).path
                if path != "/token":
                    self._json(404, {"error": "not_found"})
                    return
                op.token_requests.append({"form": dict(urllib.parse.parse_qsl(body)),
                                          "authorization": self.headers.get("Authorization")})
                if op.token_status != 200 or op.id_token is None:
                    self._json(op.token_status if op.token_status != 200 else 400, {"error": "invalid_grant"})
                    return
                self._json(200, {"access_token": op.access_token, "token_type": "Bearer",
                                 "expires_in": 300, "id_token": op.id_token})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def discovery(self):
        d = {"issuer": self.issuer,
             "authorization_endpoint": self.issuer + "/authorize",
             "token_endpoint": self.issuer + "/token",
             "userinfo_endpoint": self.issuer + "/userinfo",
             "jwks_uri": self.issuer + "/jwks",
             "end_session_endpoint": self.issuer + "/logout",
             "response_types_supported": ["code"],
             "subject_types_supported": ["public"],
             "id_token_signing_alg_values_supported": ["RS256"]}
        if self.iss_parameter:
            d["authorization_response_iss_parameter_supported"] = True
        return d

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def claims(self, nonce, sub="eve", **extra):
        now = int(time.time())
        c = {"iss": self.issuer, "aud": self.client_id, "sub": sub, "exp": now + 300, "iat": now,
             "email": f"{sub}@fake.test", "email_verified": True, "name": str(sub).title()}
        if nonce is not None:
            c["nonce"] = nonce
        for k, v in extra.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def sign(self, payload, **kw):
        return sign(payload, self.key, **kw)


def start_flow(daemon, slug, **params):
    """GET /sso/oidc/{slug}/login; returns (state, nonce, query dict)."""
    r = daemon.get(f"/sso/oidc/{slug}/login", params=params or None)
    assert r.status_code == 303, f"login -> {r.status_code}: {r.text[:300]}"
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(r.headers["Location"]).query))
    return q["state"], q["nonce"], q


def callback(daemon, slug, state, code="code-1", **extra):
    params = {"code": code, "state": state}
    params.update(extra)
    return daemon.get(f"/sso/oidc/{slug}/callback", params=params, headers={"Accept": "application/json"})
