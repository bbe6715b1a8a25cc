#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
#
# tests/bench/oidc_bearer.sh: GET /auth/check with one valid RS256 bearer JWT
# (wrk, loopback) against idbridge, and in the same run Apache +
# mod_auth_openidc validating the same token against the same JWKS (the
# configuration of ../shared/peers, scenarios a/b/e), plus Apache's static
# file as the ceiling. Prints req/s, p50/p99 and the ratios.
#
# Run from the repository root, as root on Debian 12 (installs apache2,
# libapache2-mod-auth-openidc and wrk when missing). Everything listens on
# 127.0.0.1 and every load run is bounded (wrk -d).
# Environment: DURATION (10), THREADS (2), CONNS (32), IDB_THREADS (8),
# PERF=FILE (perf record of idbridge during its run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$(pwd -P)
# shellcheck source=deploy/lib.sh
. deploy/lib.sh

DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
IDB_THREADS=${IDB_THREADS:-8}
PY=/usr/bin/python3
A_FILE=18080 A_JWKS=18082 A_TLS=18443

for p in apache2 libapache2-mod-auth-openidc wrk python3-jwcrypto openssl curl; do
    pkg_present "$p" || { log "installing $p"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
systemctl stop apache2 >/dev/null 2>&1 || true
for p in $A_FILE $A_JWKS $A_TLS; do
    port_in_use "$p" && die "port $p is in use (another Apache?)"
done

install_traps
make_tmpdir
W=$IDB_TMP
mkdir -p "$W/jwt/run" "$W/www"
build build >/dev/null

# --- keys, JWKS, token (test-only) and a discovery server for idbridge ---
DISC_PORT=$(free_port)
ISS="http://127.0.0.1:$DISC_PORT"
openssl genrsa -out "$W/jwt/as-key.pem" 2048 2>/dev/null
openssl req -x509 -new -key "$W/jwt/as-key.pem" -subj /CN=as.bench.test -days 2 -out "$W/jwt/as-cert.pem"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/jwt/tls-key.pem" -subj /CN=127.0.0.1 -days 2 \
    -out "$W/jwt/tls-cert.pem" 2>/dev/null
$PY - "$W" "$ISS" <<'EOF'
import json, sys, time, uuid
from jwcrypto import jwk, jwt
w, iss = sys.argv[1], sys.argv[2]
key = jwk.JWK.from_pem(open(w + "/jwt/as-key.pem", "rb").read())
pub = json.loads(key.export_public()); pub.update({"kid": "bench-key-1", "use": "sig", "alg": "RS256"})
json.dump({"keys": [pub]}, open(w + "/www/jwks.json", "w"))
now = int(time.time())
t = jwt.JWT(header={"alg": "RS256", "kid": "bench-key-1", "typ": "JWT"},
            claims={"iss": iss, "aud": "bridge-api", "sub": "user-0001", "iat": now, "exp": now + 86400,
                    "jti": str(uuid.uuid4()), "scope": "api", "email": "bench@bench.test",
                    "email_verified": True, "name": "Bench User"})
t.make_signed_token(key)
open(w + "/token.txt", "w").write(t.serialize())
json.dump({"issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/token",
           "jwks_uri": iss + "/jwks.json", "response_types_supported": ["code"],
           "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"]},
          open(w + "/www/openid-configuration", "w"))
EOF
TOKEN=$(cat "$W/token.txt")
$PY - "$W/www" "$DISC_PORT" >"$W/disc.log" 2>&1 <<'EOF' &
import http.server, os, sys
root, port = sys.argv[1], int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        name = {"/.well-known/openid-configuration": "openid-configuration", "/jwks.json": "jwks.json"}.get(self.path)
        if not name:
            self.send_response(404); self.end_headers(); return
        body = open(os.path.join(root, name), "rb").read()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
EOF
cleanup_push kill $!

# --- idbridge ---
test_services "$W/svc" >/dev/null
export IDBRIDGE_DATABASE_URL=$IDBRIDGE_TEST_PG_URL IDBRIDGE_REDIS_URL=$IDBRIDGE_TEST_REDIS_URL
IDB_PORT=$(free_port "$DISC_PORT")
export IDBRIDGE_LISTEN="127.0.0.1:$IDB_PORT" IDBRIDGE_PUBLIC_URL="http://127.0.0.1:$IDB_PORT"
cat >"$W/idbridge.yaml" <<EOF
server:
  threads: $IDB_THREADS
security:
  secret_key_file: "$W/secret.key"
saml:
  sp_key_file: "$W/saml-sp.key"
  sp_cert_file: "$W/saml-sp.crt"
log:
  level: "warn"
  access_log: false
EOF
cat >"$W/conn.yaml" <<EOF
slug: bench
name: Bench AS
protocol: oidc
allowed_domains: [bench.test]
jit: {enabled: true, bearer_provisioning: true}
oidc:
  issuer: "$ISS"
  client_id: bench-client
  accept_bearer: true
  bearer_audience: bridge-api
EOF
CTL=(build/idbridgectl --config "$W/idbridge.yaml")
"${CTL[@]}" migrate >/dev/null
"${CTL[@]}" org create bench --name Bench >/dev/null
"${CTL[@]}" connection apply --org bench --file "$W/conn.yaml" >/dev/null
build/idbridge --config "$W/idbridge.yaml" >"$W/idbridge.log" 2>&1 &
IDB_PID=$!
cleanup_push kill "$IDB_PID"
wait_for 20 curl -sf "http://127.0.0.1:$IDB_PORT/healthz" || die "idbridge did not start: $(tail -5 "$W/idbridge.log")"

# --- Apache + mod_auth_openidc (the peers configuration, our issuer) ---
printf 'ok\n' >"$W/www/static"
printf 'ok\n' >"$W/www/protected"
PEERS=${PEERS:-$ROOT/../shared/peers}
[ -f "$PEERS/conf/jwt-httpd.conf.in" ] || PEERS=/work/shared/peers
[ -f "$PEERS/conf/jwt-httpd.conf.in" ] || die "the peers harness (shared/peers) is missing; set PEERS"
sed -e "s#@W@#$W#g" -e "s#iss:https://as.bench.test#iss:$ISS#g" \
    "$PEERS/conf/jwt-httpd.conf.in" >"$W/jwt/httpd.conf"
chmod -R a+rX "$W"
chown -R www-data:www-data "$W/jwt/run"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C /usr/sbin/apache2 -f "$W/jwt/httpd.conf" -DFOREGROUND \
    >"$W/jwt/stdout.log" 2>&1 &
APACHE_PID=$!
cleanup_push kill "$APACHE_PID"
wait_for 20 curl -sf "http://127.0.0.1:$A_FILE/static" || die "apache did not start: $(tail -5 "$W/jwt/error.log")"

# --- functional checks ---
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
AUTH="Authorization: Bearer $TOKEN"
[ "$(code -H "$AUTH" "http://127.0.0.1:$IDB_PORT/auth/check")" = 200 ] || die "idbridge refused the token: $(tail -5 "$W/idbridge.log")"
[ "$(code "http://127.0.0.1:$IDB_PORT/auth/check")" = 401 ] || die "idbridge accepted no token"
BAD=$($PY -c 'import sys; t = sys.argv[1]; i = len(t) - 40; print(t[:i] + ("A" if t[i] != "A" else "B") + t[i + 1:])' "$TOKEN")
[ "$(code -H "Authorization: Bearer $BAD" "http://127.0.0.1:$IDB_PORT/auth/check")" = 401 ] || die "idbridge accepted a bad signature"
[ "$(code -H "$AUTH" "http://127.0.0.1:$A_JWKS/protected")" = 200 ] || die "mod_auth_openidc (JWKS) refused the token"
[ "$(code -H "$AUTH" "http://127.0.0.1:$A_FILE/protected")" = 200 ] || die "mod_auth_openidc (file) refused the token"
[ "$(code "http://127.0.0.1:$A_FILE/protected")" = 401 ] || die "mod_auth_openidc accepted no token"
log "functional checks ok"

# --- load ---
run() {  # run NAME URL [wrk args]
    local name=$1 url=$2; shift 2
    wrk -t"$THREADS" -c"$CONNS" -d2s "$@" "$url" >/dev/null   # warm-up
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s --latency "$@" "$url" >"$W/$name.txt"
    local rps p50 p99 non2xx
    rps=$(awk '/^Requests\/sec/{print $2}' "$W/$name.txt")
    p50=$(awk '$1=="50%"{print $2}' "$W/$name.txt")
    p99=$(awk '$1=="99%"{print $2}' "$W/$name.txt")
    non2xx=$(awk '/Non-2xx/{print $NF}' "$W/$name.txt")
    printf '%-46s %10s req/s   p50 %-9s p99 %-9s %s\n' "$name" "$rps" "$p50" "$p99" \
        "${non2xx:+non-2xx: $non2xx}"
    eval "RPS_${name//[^a-zA-Z0-9]/_}=$rps"
}
echo
echo "wrk -t$THREADS -c$CONNS -d${DURATION}s --latency, loopback, $(nproc) cores shared by client and servers"
run apache_static "http://127.0.0.1:$A_FILE/static"
run mod_auth_openidc_jwks "http://127.0.0.1:$A_JWKS/protected" -H "$AUTH"
run mod_auth_openidc_file "http://127.0.0.1:$A_FILE/protected" -H "$AUTH"
if [ -n "${PERF:-}" ]; then
    perf record -F 999 -g -p "$IDB_PID" -o "$PERF" -- sleep 8 >/dev/null 2>&1 &
fi
run idbridge_bearer "http://127.0.0.1:$IDB_PORT/auth/check" -H "$AUTH"
run apache_static_again "http://127.0.0.1:$A_FILE/static"
echo
$PY - "$RPS_idbridge_bearer" "$RPS_mod_auth_openidc_jwks" "$RPS_apache_static" "$RPS_apache_static_again" <<'EOF'
import sys
idb, jwks, st1, st2 = map(float, sys.argv[1:])
st = (st1 + st2) / 2
print(f"idbridge / mod_auth_openidc (JWKS): {idb / jwks:.2f}x   (target >= 2x)")
print(f"idbridge / Apache static (mean of the two runs): {idb / st:.2f}x   (target >= 1x)")
EOF
