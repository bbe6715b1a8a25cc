#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
#
# tests/bench/saml_acs.sh: SAML ACS throughput, latency, CPU and memory of
# idbridge (issue 3, Benchmark) beside mod_auth_mellon measured in the same
# run by the peers harness (../shared/peers/run.sh, PARTS=saml).
#
# Self-contained: throw-away PostgreSQL + Redis on free ports, org `bench`,
# admin, API key, a SAML connection (IdP-initiated allowed, JIT on, group
# sync) to a test IdP played by python3-lasso (tests/bench/saml_gen.py),
# idbridge on 127.0.0.1 only. Everything it starts is stopped by PID on exit.
#
# usage: tests/bench/saml_acs.sh           (as root, Debian 12, from anywhere in the repo)
# env:   N=4000         signed Responses per measured run (each POSTed at most once)
#        USERS=200      returning users (each logs in once during the warm-up)
#        REPS=3         repetitions of each scenario
#        DURATION=10    seconds per wrk run;  WRK_THREADS=2 CONNS=32 (wrk -t / -c)
#        THREADS=8      idbridge server.threads
#        QUIET_MAX=120  longest wait (s) for an idle machine before each run
#        MELLON=1       run ../shared/peers/run.sh PARTS=saml (mellon f/g/h) first;
#                       MELLON=0 with MELLON_JSON=<peers summary.json> reuses a result
#        MELLON_REPS=$REPS  MELLON_N=6000   (the peers' REPS / SAML_N)
#        PERF=1         after the reps, perf record -p <daemon> over one extra
#                       returning-user run (PERF=0: skip); needs linux-perf.
#                       PERF_CALLGRAPH=dwarf (default: paths through libc, libcrypto
#                       and lasso, which have no frame pointers) or fp (`-g`)
#        GEN_JOBS=nproc processes generating the signed Responses
#        OUT=/tmp/idbridge-bench   results go to $OUT/saml_acs-<UTC timestamp>/
#        STRICT=1       exit 3 when a target of issue 3 is missed
#        LOG_LEVEL=warn daemon log.level (diagnostics: debug shows lasso's messages)
#        IDB_ENV="VAR=value ..."  extra environment for the daemon (diagnostics,
#                       e.g. SSL_CERT_FILE=/dev/null; recorded in env.txt)
#
# Helpers: saml_gen.py (IdP metadata, signed Responses), saml_acs.lua (wrk:
# each body POSTed at most once, success = 303 + idb_session cookie),
# saml_stats.py (idle wait, CPU/RSS accounting per run, summary + verdict).
# When a run uses up its N bodies before -d ends, its rate is taken over the
# time the bodies were being posted (marked in the table); raise N for
# full-length runs.
#
# Scenarios (wrk -tWRK_THREADS -cCONNS -dDURATION --timeout 10s --latency -s saml_acs.lua):
#   returning  new Responses (new IDs) for the USERS users created in the warm-up
#   first      N new users per rep (new e-mail + NameID): every login JIT-creates
#              the user, its identity and 3 group memberships
# Targets (issue 3): returning >= 1.5 x mellon tuned (peers g), first >= 0.5 x.
#
# Exit: 0 done (see the verdict; STRICT=1 makes a miss 3), 1 a harness step or
#       a login failed, 2 a tool is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$(pwd -P)
HERE=$ROOT/tests/bench

N=${N:-4000}
USERS=${USERS:-200}
REPS=${REPS:-3}
DURATION=${DURATION:-10}
WRK_THREADS=${WRK_THREADS:-2}
CONNS=${CONNS:-32}
THREADS=${THREADS:-8}
QUIET_MAX=${QUIET_MAX:-120}
MELLON=${MELLON:-1}
MELLON_JSON=${MELLON_JSON:-}
MELLON_REPS=${MELLON_REPS:-$REPS}
MELLON_N=${MELLON_N:-6000}
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/peers}
PERF=${PERF:-1}
GEN_JOBS=${GEN_JOBS:-$(nproc)}
STRICT=${STRICT:-0}
PY=/usr/bin/python3
TS=$(date -u +%Y%m%dT%H%M%SZ)
RES=${OUT:-/tmp/idbridge-bench}/saml_acs-$TS

# ---------------------------------------------------------------- tools
missing=()
for t in wrk openssl psql curl; do command -v $t >/dev/null 2>&1 || missing+=("$t"); done
"$PY" -c 'import lasso' 2>/dev/null || missing+=(python3-lasso)
if [ "$PERF" != 0 ] && ! command -v perf >/dev/null 2>&1; then
    missing+=(linux-perf)
fi
if [ ${#missing[@]} -gt 0 ]; then
    cat >&2 <<EOF
error: missing: ${missing[*]}
install them with the project's package list (bash -c '. deploy/lib.sh && install_packages')
or directly: apt-get install -y --no-install-recommends wrk openssl postgresql-client curl python3-lasso linux-perf
(PERF=0 runs without perf)
EOF
    exit 2
fi
if [ "$MELLON" = 1 ] && [ ! -x "$PEERS_DIR/run.sh" ]; then
    echo "error: $PEERS_DIR/run.sh not found (set PEERS_DIR, or MELLON=0 MELLON_JSON=...)" >&2
    exit 2
fi

# shellcheck source=deploy/lib.sh
. deploy/lib.sh

if [ ! -x build/idbridge ] || [ ! -x build/idbridgectl ]; then
    log "build/idbridge missing: building (RelWithDebInfo)"
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build -j"$(nproc)"
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' build/CMakeCache.txt 2>/dev/null || true)
case $build_type in
    Release | RelWithDebInfo) ;;
    *) warn "build/ is a '${build_type:-unknown}' build, not Release/RelWithDebInfo: numbers are not representative" ;;
esac
grep -q 'fsanitize' build/CMakeCache.txt 2>/dev/null &&
    warn "build/ seems to be a sanitizer build: numbers are not representative"

mkdir -p "$RES"
exec > >(tee -a "$RES/run.log") 2>&1
log "results: $RES"

# ---------------------------------------------------------------- cleanup
# stop_pid PID NAME: SIGTERM, up to 15 s, then SIGKILL; only PIDs started here.
# shellcheck disable=SC2317  # called from the cleanup stack (eval)
stop_pid() {
    local pid=$1 name=$2 i
    kill -0 "$pid" 2>/dev/null || return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 75; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        warn "$name (pid $pid) did not stop within 15 s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

install_traps
make_tmpdir
T=$IDB_TMP
# shellcheck disable=SC2317
save_logs() {
    cp "$T/pg/server.log" "$RES/postgresql.log" 2>/dev/null || true
    cp "$T/redis/redis.log" "$RES/redis.log" 2>/dev/null || true
}
cleanup_push save_logs # runs after the servers stopped, before rm -rf $T
STATS=("$PY" "$HERE/saml_stats.py")

# ---------------------------------------------------------------- services
pg_port=$(free_port)
redis_port=$(free_port "$pg_port")
idb_port=$(free_port "$pg_port" "$redis_port")

pg_start "$T/pg" "$pg_port" ephemeral
pg_pid=$(head -n 1 "$T/pg/postmaster.pid")
redis_start "$T/redis" "$redis_port"
redis_pid=$(cat "$T/redis/redis.pid")
pg_create_db "$pg_port" idbridge
PSQL=(psql -h 127.0.0.1 -p "$pg_port" -U postgres -d idbridge -XqAt -v ON_ERROR_STOP=1)

export IDBRIDGE_DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/idbridge"
export IDBRIDGE_REDIS_URL="redis://127.0.0.1:$redis_port/0"
export IDBRIDGE_LISTEN="127.0.0.1:$idb_port"
export IDBRIDGE_PUBLIC_URL="http://127.0.0.1:$idb_port"
IDB=http://127.0.0.1:$idb_port
CFG=$T/idbridge.yaml
cat >"$CFG" <<EOF
server:
  threads: $THREADS
log:
  level: ${LOG_LEVEL:-warn}
  access_log: false
security:
  secret_key_file: "$T/secret.key"
saml:
  sp_key_file: "$T/saml-sp.key"
  sp_cert_file: "$T/saml-sp.crt"
EOF
cp "$CFG" "$RES/idbridge.yaml"
# Run copies: other work may rebuild build/ during the run (and perf needs
# the binary that is running to resolve its symbols).
mkdir -p "$T/bin"
cp build/idbridge build/idbridgectl "$T/bin/"
IDB_BIN=$T/bin/idbridge
"$IDB_BIN" --check-config "$CFG" >/dev/null || die "idbridge rejects $CFG"

ctl=(timeout 60 "$T/bin/idbridgectl" --config "$CFG")
log "migrating, creating org 'bench', admin and API key"
"${ctl[@]}" migrate >/dev/null
"${ctl[@]}" org create bench --name "Bench" >/dev/null
"${ctl[@]}" admin create --org bench --email admin@bench.test >/dev/null
apikey=$("${ctl[@]}" apikey create --org bench --email admin@bench.test --name bench 2>/dev/null | grep -m1 '^idb_' || true)
[ -n "$apikey" ] || die "idbridgectl apikey create printed no idb_… key"
for g in g1 g2 g3; do
    "${PSQL[@]}" -c "INSERT INTO groups (org_id, name) SELECT id, '$g' FROM organizations WHERE slug = 'bench'"
done

log "starting idbridge on $IDB (server.threads $THREADS)"
# shellcheck disable=SC2086  # IDB_ENV: VAR=value words (diagnostics only)
env ${IDB_ENV:-} "$IDB_BIN" --config "$CFG" >"$RES/idbridge.log" 2>&1 &
idb_pid=$!
cleanup_push stop_pid "$idb_pid" idbridge
if ! wait_for 30 curl -fsS --max-time 2 "$IDB/healthz"; then
    tail -n 30 "$RES/idbridge.log" >&2 || true
    die "idbridge did not answer /healthz within 30 s"
fi
# mem_point LABEL: the daemon's VmRSS / VmHWM now, into memory.txt.
mem_point() {
    awk -v l="$1" '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 }
        END { printf "%-34s VmRSS %6.1f MB  VmHWM %6.1f MB\n", l, r / 1024, h / 1024 }' \
        "/proc/$idb_pid/status" >>"$RES/memory.txt"
}
: >"$RES/memory.txt"
mem_point "started"

# ---------------------------------------------------------------- IdP + connection
F=$T/saml
mkdir -p "$F"
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -keyout "$F/idp-key.pem" -out "$F/idp-cert.pem" \
    -days 30 -subj /CN=idp.bench.test 2>/dev/null
"$PY" "$HERE/saml_gen.py" idp-metadata "$F"
"$PY" - "$F/idp-metadata.xml" >"$T/conn.json" <<'PYEOF'
import json, sys
print(json.dumps({"slug": "bench", "name": "Bench", "protocol": "saml",
                  "saml": {"idp_metadata_xml": open(sys.argv[1]).read(), "allow_idp_initiated": True},
                  "allowed_domains": ["bench.test"], "jit": {"enabled": True, "sync_groups": True}}))
PYEOF
code=$(curl -sS --max-time 20 -o "$T/conn-resp.json" -w '%{http_code}' -H "Authorization: Bearer $apikey" \
    -H 'Content-Type: application/json' --data-binary "@$T/conn.json" "$IDB/api/v1/connections")
[ "$code" = 201 ] || die "POST /api/v1/connections answered $code: $(head -c 600 "$T/conn-resp.json")"
code=$(curl -sS --max-time 10 -o "$F/sp-metadata.xml" -w '%{http_code}' "$IDB/sso/saml/bench/metadata")
[ "$code" = 200 ] || die "GET /sso/saml/bench/metadata answered $code"
cp "$F/sp-metadata.xml" "$RES/sp-metadata.xml"
mem_point "connection created"
ACS_PATH=/sso/saml/bench/acs

# ---------------------------------------------------------------- fixtures
# ret: USERS returning users; warm.txt logs each in once; then N new
# Responses per rep (+1 set for perf) for those users. new: N users per rep,
# never seen before.
nret=$((N * (REPS + 1)))
log "generating $USERS + $nret returning-user and $((N * REPS)) first-login Responses (python3-lasso, $GEN_JOBS procs)"
gen() { "$PY" "$HERE/saml_gen.py" bodies --dir "$F" --sp-metadata "$F/sp-metadata.xml" --jobs "$GEN_JOBS" "$@"; }
gen --out "$F/warm.txt" --prefix ret --users "$USERS" --count "$USERS"
gen --out "$F/ret-all.txt" --prefix ret --users "$USERS" --count "$nret"
gen --out "$F/new-all.txt" --prefix new --users $((N * REPS)) --count $((N * REPS))
for ((rep = 1; rep <= REPS + 1; rep++)); do
    sed -n "$(((rep - 1) * N + 1)),$((rep * N))p" "$F/ret-all.txt" >"$F/returning-rep$rep.txt"
    [ $rep -gt "$REPS" ] || sed -n "$(((rep - 1) * N + 1)),$((rep * N))p" "$F/new-all.txt" >"$F/first-rep$rep.txt"
done
rm -f "$F/ret-all.txt" "$F/new-all.txt"
"$PY" "$HERE/saml_gen.py" check "$F/warm.txt" >"$RES/fixture-check.txt"
cat "$RES/fixture-check.txt"

# ---------------------------------------------------------------- functional checks
: >"$RES/checks.txt"
check() { # check NAME WANT GOT
    printf '%-44s want %-4s got %s\n' "$1" "$2" "$3" >>"$RES/checks.txt"
    [ "$2" = "$3" ] || { cat "$RES/checks.txt"; die "check failed: $1 (want $2, got $3)"; }
}
post() { # post BODYFILE [curl args]: prints the HTTP status
    curl -sS --max-time 20 -o "$T/post.out" -D "$T/post.hdr" -w '%{http_code}' \
        -H 'Content-Type: application/x-www-form-urlencoded' --data-binary "@$1" "${@:2}" "$IDB$ACS_PATH"
}
head -n 1 "$F/warm.txt" | tr -d '\n' >"$T/one.txt"
check "ACS, first body -> 303" 303 "$(post "$T/one.txt" -c "$T/cj.txt")"
check "ACS sets idb_session" yes "$(awk '$6 == "idb_session" { f = 1 } END { print f ? "yes" : "no" }' "$T/cj.txt")"
check "303 Location" "/" "$(sed -n 's/^[Ll]ocation: *//p' "$T/post.hdr" | tr -d '\r')"
check "session opens /auth/check" 200 "$(curl -sS --max-time 10 -o /dev/null -D "$T/ac.hdr" -w '%{http_code}' -b "$T/cj.txt" "$IDB/auth/check")"
check "X-Auth-Email" ret000000@bench.test "$(sed -n 's/^[Xx]-[Aa]uth-[Ee]mail: *//p' "$T/ac.hdr" | tr -d '\r')"
check "replayed Response refused" 400 "$(post "$T/one.txt")"
check "JIT: user's idp memberships" 3 "$("${PSQL[@]}" -c "SELECT count(*) FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.email = 'ret000000@bench.test' AND m.source = 'idp'")"
cat "$RES/checks.txt"
mem_point "after 2 ACS POSTs"

# ---------------------------------------------------------------- warm-up
log "warm-up: $USERS returning users log in once (their first login: JIT creates them)"
tail -n +2 "$F/warm.txt" >"$F/warm-rest.txt"
timeout 90 wrk -t"$WRK_THREADS" -c"$CONNS" -d5s --timeout 10s --latency -s "$HERE/saml_acs.lua" "$IDB" -- \
    "$F/warm-rest.txt" "$WRK_THREADS" "$ACS_PATH" idb_session >"$RES/warmup.txt" 2>&1 || true
grep '^ACS_' "$RES/warmup.txt" || die "warm-up: no ACS_RESULT (see $RES/warmup.txt)"
grep -q "success=$((USERS - 1)) failure=0 " "$RES/warmup.txt" ||
    die "warm-up: not all $((USERS - 1)) logins succeeded (see $RES/warmup.txt)"
n_users=$("${PSQL[@]}" -c "SELECT count(*) FROM users u JOIN organizations o ON o.id = u.org_id WHERE o.slug = 'bench' AND u.email LIKE 'ret%'")
[ "$n_users" = "$USERS" ] || die "warm-up: $n_users returning users in PostgreSQL, expected $USERS"
mem_point "after warm-up ($USERS logins)"

# ---------------------------------------------------------------- environment
{
    echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p') | nproc=$(nproc) | mem=$(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "os: $(. /etc/os-release && echo "$PRETTY_NAME") kernel $(uname -r)"
    echo "idbridge: $("$IDB_BIN" --version 2>&1 | head -n 1) git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$([ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || echo ' (+ uncommitted changes)'), build type ${build_type:-?}, binary sha256 $(sha256sum "$IDB_BIN" | cut -c1-12), server.threads=$THREADS${IDB_ENV:+, daemon env: $IDB_ENV}"
    echo "pkgs: $(dpkg-query -W -f='${Package}=${Version} ' liblasso3 libxmlsec1-openssl libssl3 libmicrohttpd12 libpq5 postgresql-15 redis-server wrk 2>/dev/null)"
    echo "fixtures: $N Responses per run (~$(head -n 1 "$F/returning-rep1.txt" | wc -c) B form body), Response + Assertion signed RSA-SHA256, $USERS returning users, groups g1 g2 g3"
    echo "load: wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s --timeout 10s --latency, $REPS reps, order per rep: returning first; client and servers share the same cores"
} >"$RES/env.txt"
cat "$RES/env.txt"

# ---------------------------------------------------------------- mellon (peers harness)
if [ "$MELLON" = 1 ]; then
    log "mod_auth_mellon: $PEERS_DIR/run.sh PARTS=saml REPS=$MELLON_REPS SAML_N=$MELLON_N (a few minutes)"
    mrc=0
    PEERS_OUT=$T/peers PARTS=saml REPS=$MELLON_REPS SAML_N=$MELLON_N QUIET_MAX=$QUIET_MAX \
        timeout 2400 "$PEERS_DIR/run.sh" >"$RES/mellon-run.log" 2>&1 || mrc=$?
    if [ -f "$T/peers/results/latest/summary.json" ]; then
        mkdir -p "$RES/mellon"
        cp -rL "$T/peers/results/latest/." "$RES/mellon/"
        MELLON_JSON=$RES/mellon/summary.json
    fi
    [ $mrc = 0 ] || warn "peers run.sh exited $mrc (see $RES/mellon-run.log)"
    [ -n "$MELLON_JSON" ] && sed -n '/^| id/,/^$/p' "$RES/mellon/summary.md"
fi
[ -z "$MELLON_JSON" ] || [ -f "$MELLON_JSON" ] || die "MELLON_JSON=$MELLON_JSON not found"
[ -n "$MELLON_JSON" ] || warn "no mellon figure: ratios and verdict will be missing"

# ---------------------------------------------------------------- measured runs
JSON=$RES/runs.jsonl
: >"$JSON"
failed=0
log_lines_before=$(wc -l <"$RES/idbridge.log")
measure() { # measure SCENARIO REP BODYFILE
    local sc=$1 rep=$2 bodies=$3 waited bsy state
    read -r waited bsy state < <("${STATS[@]}" idle "$QUIET_MAX")
    [ "$state" = idle ] || warn "machine still busy ($bsy core) after ${waited}s; running $sc anyway"
    "${STATS[@]}" run --name "$sc" --rep "$rep" --out "$RES/wrk-$sc-rep$rep.txt" --json "$JSON" \
        --duration "$DURATION" --daemon "$idb_pid" --pg "$pg_pid" --redis "$redis_pid" \
        --idle-wait "$waited" --idle-state "$state" -- \
        wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s --latency -s "$HERE/saml_acs.lua" \
        "$IDB" -- "$bodies" "$WRK_THREADS" "$ACS_PATH" idb_session || failed=1
    kill -0 "$idb_pid" 2>/dev/null || die "idbridge died during $sc rep $rep (see $RES/idbridge.log)"
}
for ((rep = 1; rep <= REPS; rep++)); do
    measure returning "$rep" "$F/returning-rep$rep.txt"
    measure first "$rep" "$F/first-rep$rep.txt"
    mem_point "after rep $rep"
done
cat "$RES/memory.txt"
grep -h 'EXHAUSTED' "$RES/run.log" >/dev/null 2>&1 &&
    warn "some runs used up all $N bodies before -d ended: their rate is taken over the posting window; raise N for full-length runs"

# ---------------------------------------------------------------- profile
# One extra returning-user run under perf (call graphs: dwarf by default, so
# the paths go through libc/libcrypto/lasso, which have no frame pointers;
# PERF_CALLGRAPH=fp gives plain `perf record -g`). Beside it: PostgreSQL
# wait events sampled every 0.2 s, and PostgreSQL / Redis counters per login.
if [ "$PERF" != 0 ]; then
    case ${PERF_CALLGRAPH:-dwarf} in
        fp) cg=(-g) ;;
        *) cg=(--call-graph "dwarf,16384" -F 250) ;;
    esac
    log "perf: one extra returning-user run, perf record ${cg[*]} -p $idb_pid"
    "${STATS[@]}" idle "$QUIET_MAX" >/dev/null
    pg_counters() {
        "${PSQL[@]}" -F ' ' -c "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = 'idbridge'"
    }
    redis_calls() {
        redis-cli -h 127.0.0.1 -p "$redis_port" INFO commandstats | tr -d '\r' |
            sed -n 's/^cmdstat_\([a-z]*\):calls=\([0-9]*\),.*/\1 \2/p' | sort
    }
    pg0=$(pg_counters)
    redis_calls >"$T/redis0.txt"
    timeout $((DURATION + 30)) perf record -q "${cg[@]}" -p "$idb_pid" -o "$RES/perf.data" -- sleep "$DURATION" \
        >"$RES/perf-record.log" 2>&1 &
    perf_pid=$!
    cleanup_push stop_pid "$perf_pid" perf
    (
        end=$((SECONDS + DURATION))
        while [ $SECONDS -lt $end ]; do
            "${PSQL[@]}" -F ' ' -c "SELECT coalesce(wait_event_type, 'CPU'), coalesce(wait_event, '-'), state FROM pg_stat_activity WHERE datname = 'idbridge' AND pid <> pg_backend_pid() AND state <> 'idle'" 2>/dev/null || true
            sleep 0.2
        done
    ) >"$T/pg-waits.raw" &
    sampler_pid=$!
    cleanup_push stop_pid "$sampler_pid" pg-wait-sampler
    sleep 0.5
    "${STATS[@]}" run --name perf --rep 1 --out "$RES/wrk-perf.txt" --json "$RES/perf-run.jsonl" \
        --duration "$((DURATION - 1))" --daemon "$idb_pid" --pg "$pg_pid" --redis "$redis_pid" -- \
        wrk -t"$WRK_THREADS" -c"$CONNS" -d"$((DURATION - 1))s" --timeout 10s --latency -s "$HERE/saml_acs.lua" \
        "$IDB" -- "$F/returning-rep$((REPS + 1)).txt" "$WRK_THREADS" "$ACS_PATH" idb_session || true
    wait "$perf_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    pg1=$(pg_counters)
    redis_calls >"$T/redis1.txt"
    logins=$("$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["acs"]["posts_sent"])' "$RES/perf-run.jsonl" 2>/dev/null || echo 0)
    {
        echo "PostgreSQL wait events of active backends, sampled every 0.2 s during the profiled run (count):"
        sort "$T/pg-waits.raw" | uniq -c | sort -rn | head -n 12
        echo
        echo "per login ($logins POSTs) during the profiled run:"
        paste -d' ' <(echo "$pg0" | tr ' ' '\n') <(echo "$pg1" | tr ' ' '\n') |
            awk -v n="$logins" 'BEGIN { split("xact_commit xact_rollback tup_returned tup_fetched tup_inserted tup_updated tup_deleted", k, " ") }
                { if (n > 0) printf "  PostgreSQL %-14s %6.2f\n", k[NR], ($2 - $1) / n }'
        join -a2 -e 0 -o 0,1.2,2.2 "$T/redis0.txt" "$T/redis1.txt" |
            awk -v n="$logins" '{ d = $3 - $2; if (n > 0 && d > 0) printf "  Redis %-19s %6.2f\n", $1, d / n }'
    } >"$RES/perf-side.txt"
    perf report -i "$RES/perf.data" --stdio --no-children --sort dso --percent-limit 1 -g none \
        >"$RES/perf-dso.txt" 2>/dev/null || true
    perf report -i "$RES/perf.data" --stdio --no-children --sort dso,symbol --percent-limit 0.4 -g none \
        >"$RES/perf-symbols.txt" 2>/dev/null || true
    perf report -i "$RES/perf.data" --stdio --children --sort dso,symbol --percent-limit 0.8 -g none \
        >"$RES/perf-children.txt" 2>/dev/null || true
    perf report -i "$RES/perf.data" --stdio --no-children --sort symbol --percent-limit 1.5 \
        -g caller,0.5,callee,function,percent --max-stack 40 >"$RES/perf-callers.txt" 2>/dev/null || true
    log "perf reports: $RES/perf-{dso,symbols,children,callers,side}.txt"
fi

# ---------------------------------------------------------------- summary
log_new=$(tail -n +"$((log_lines_before + 1))" "$RES/idbridge.log")
log_summary=
[ -z "$log_new" ] || log_summary=$(printf '%s\n' "$log_new" | sed -E 's/^[^ ]+ //; s/[0-9a-f-]{36}/<uuid>/g; s/[0-9]+/N/g' |
    cut -c1-200 | sort | uniq -c | sort -rn | head -n 15)
activity=$("${PSQL[@]}" -F ' | ' -c "SELECT kind, coalesce(reason, '-'), count(*) FROM activity GROUP BY 1, 2 ORDER BY 3 DESC")
users=$("${PSQL[@]}" -F ' | ' -c "SELECT 'users', count(*) FROM users UNION ALL SELECT 'identities', count(*) FROM identities UNION ALL SELECT 'idp memberships', count(*) FROM memberships WHERE source = 'idp' UNION ALL SELECT 'sessions', count(*) FROM sessions")
"$PY" - "$RES" "$WRK_THREADS" "$CONNS" "$DURATION" "$log_summary" "$activity" "$users" <<'PYEOF'
import json, os, sys
res = sys.argv[1]
json.dump({"wrk_threads": sys.argv[2], "conns": sys.argv[3], "duration": sys.argv[4],
           "env": open(os.path.join(res, "env.txt")).read().strip(),
           "log_summary": sys.argv[5] or "(no daemon log lines during the measured runs)",
           "activity": "kind | reason | count\n" + sys.argv[6], "users": sys.argv[7],
           "memory": open(os.path.join(res, "memory.txt")).read().strip()},
          open(os.path.join(res, "extra.json"), "w"))
PYEOF
rc=0
"${STATS[@]}" summary "$JSON" "$RES" "$MELLON_JSON" || rc=$?
if [ "$PERF" != 0 ] && [ -s "$RES/perf-run.jsonl" ]; then
    echo "## Profile (extra returning-user run, perf record ${cg[*]} -p idbridge)"
    "$PY" - "$RES/perf-run.jsonl" <<'PYEOF'
import json, sys
r = json.loads(open(sys.argv[1]).readline())
a = r["acs"]
tot = r["daemon_cpu_s"] + r["pg_cpu_s"] + r["redis_cpu_s"]
print("run: %.1f logins/s, %d ok, %d failed; CPU s: idbridge %.2f, PostgreSQL %.2f, Redis %.2f, wrk %.2f"
      " -> PostgreSQL %.0f%% of (idbridge + PostgreSQL + Redis)"
      % (a["success_per_s"], a["success"], a["failure"], r["daemon_cpu_s"], r["pg_cpu_s"],
         r["redis_cpu_s"], r["wrk_cpu_s"], 100 * r["pg_cpu_s"] / tot if tot else 0))
PYEOF
    echo '```'
    cat "$RES/perf-side.txt"
    echo '```'
    echo "Self time by library:"
    echo '```'
    grep -v '^#' "$RES/perf-dso.txt" | grep . | head -n 12
    echo '```'
    echo "Inclusive time (children) of the main call paths, % of the daemon's samples:"
    echo '```'
    "$PY" - "$RES/perf-children.txt" <<'PYEOF'
import re, sys
KEY = [
    ("idb_saml_handle_acs", "ACS handler, total"),
    ("lasso_login_process_authn_response_msg", "lasso: process the Response (parse + verify)"),
    ("xmlSecDSigCtxVerify", "xmlsec: verify the signatures (c14n, digest, RSA)"),
    ("xmlSecKeyDuplicate", "xmlsec: duplicate the IdP key per signature (lasso)"),
    ("ASN1_item_dup", "OpenSSL: X509/key copy (ASN1 re-decode)"),
    ("OSSL_DECODER_CTX_new_for_pkey", "OpenSSL 3: decoder set-up for that copy"),
    ("RSA_verify", "OpenSSL: RSA verify"),
    ("xmlC14NExecute", "libxml2: canonicalisation"),
    ("xmlReadMemory", "libxml2: parse (xmlReadMemory)"),
    ("lasso_log", "lasso: debug logging (format + localtime per message)"),
    ("__tz_convert", "libc: localtime (tz convert)"),
    ("tzset_internal", "libc: tzset (stat /etc/localtime)"),
    ("idb_saml_xml_scan", "idbridge: XML pre-scan"),
    ("sodium_base642bin", "libsodium: base64 decode"),
    ("idb_jit_provision", "idbridge: JIT transaction"),
    ("idb_db_query", "idbridge: PostgreSQL queries (idb_db_query)"),
    ("idb_db_exec", "idbridge: PostgreSQL statements (idb_db_exec)"),
    ("PQgetResult", "libpq: PQgetResult (wait + read)"),
    ("idb_session_start", "idbridge: session start"),
    ("redisCommandArgv", "hiredis: commands"),
    ("idb_connection_set_last_login", "idbridge: UPDATE idp_connections last login"),
    ("g_object_unref", "glib: object release"),
    ("malloc", "libc: malloc (self)"),
    ("_int_malloc", "libc: _int_malloc"),
    ("_int_free", "libc: _int_free (self)"),
    ("finish_task_switch.isra.0", "kernel: context switches"),
]
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"\s+([\d.]+)%\s+([\d.]+)%\s+(\S+)\s+\[.\]\s+(\S+)", line)
    if m:
        rows.setdefault(m.group(4), (float(m.group(1)), float(m.group(2)), m.group(3)))
for sym, what in KEY:
    if sym in rows:
        c, s_, dso = rows[sym]
        print("  %6.1f%% incl  %5.1f%% self  %-40s %s (%s)" % (c, s_, sym, what, dso))
PYEOF
    echo '```'
    echo "Top self symbols:"
    echo '```'
    grep -v '^#' "$RES/perf-symbols.txt" | grep . | head -n 25 | cut -c1-120
    echo '```'
fi
log "raw wrk outputs, logs, profile and summary: $RES"
if [ $rc = 1 ] || [ $failed = 1 ]; then
    echo "FAILED: some logins failed (see the summary above and $RES/wrk-*.txt)" >&2
    exit 1
fi
if [ $rc = 10 ] && [ "$STRICT" = 1 ]; then
    exit 3
fi
exit 0
