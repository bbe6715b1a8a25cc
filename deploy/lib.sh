# shellcheck shell=bash
# SPDX-License-Identifier: AGPL-3.0-or-later
#
# Helpers sourced by deploy/dev: packages, build, and a project-local
# PostgreSQL cluster and Redis server for development and tests.
# Nothing here touches the system PostgreSQL cluster or system Redis.

# ---------------------------------------------------------------------------
# Packages: the one list. Build deps, runtime services, test-only tools.
# ---------------------------------------------------------------------------
IDB_APT_PACKAGES=(
    # build
    build-essential cmake pkg-config clang libclang-rt-14-dev
    liblasso3-dev liboauth2-dev libhiredis-dev libpq-dev libmicrohttpd-dev
    libjansson-dev libcjose-dev libcurl4-openssl-dev libxmlsec1-dev libxml2-dev
    libcyaml-dev libsodium-dev libcsv-dev libpcre2-dev libmaxminddb-dev libcmocka-dev
    # services (run as project-local instances, see pg_start / redis_start)
    postgresql redis-server
    # tests
    python3-pytest python3-requests python3-lasso python3-pysaml2 python3-jwcrypto
    python3-psycopg2 python3-aiosmtpd xmlsec1 openssl wrk nginx-light chromium
    python3-lxml python3-xmlsec
    nodejs npm
    # tools used by these scripts
    curl procps iproute2 util-linux
)

IDB_PG_BIN=${IDB_PG_BIN:-/usr/lib/postgresql/15/bin}
# PostgreSQL refuses to run as root; clusters are owned by this OS user
# (created by the Debian postgresql package).
IDB_PG_USER=${IDB_PG_USER:-postgres}

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Cleanup stack: everything started registers how to stop it; the traps
# installed by install_traps run the stack in reverse order exactly once.
# ---------------------------------------------------------------------------
IDB_CLEANUP=()

cleanup_push() {
    IDB_CLEANUP+=("$(printf '%q ' "$@")")
}

run_cleanup() {
    local i
    for ((i = ${#IDB_CLEANUP[@]} - 1; i >= 0; i--)); do
        eval "${IDB_CLEANUP[i]}" || true
    done
    IDB_CLEANUP=()
}

install_traps() {
    trap 'run_cleanup' EXIT
    trap 'run_cleanup; trap - EXIT; exit 130' INT
    trap 'run_cleanup; trap - EXIT; exit 143' TERM
}

# ---------------------------------------------------------------------------
# install_packages: idempotent; silent when everything is already present.
# ---------------------------------------------------------------------------
pkg_present() {
    case $1 in
        # Node.js may come from another .deb (e.g. a nodejs build that bundles
        # npm and Conflicts: npm); any working node/npm command is enough.
        nodejs) command -v node >/dev/null 2>&1 && return 0 ;;
        npm) command -v npm >/dev/null 2>&1 && return 0 ;;
    esac
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

install_packages() {
    local p missing=()
    for p in "${IDB_APT_PACKAGES[@]}"; do
        pkg_present "$p" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "missing packages (${missing[*]}) and not root"
        sudo=(sudo)
    fi
    log "installing: ${missing[*]}"
    # Installing 'postgresql' may create and try to start the system cluster
    # 'main' on port 5432; nothing here uses it.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# npm_deps: install tests/node_modules from tests/package.json when missing
# or when package.json / package-lock.json changed since the last install.
npm_deps() {
    local dir=${1:-tests}
    [ -f "$dir/package.json" ] || return 0
    local stamp_file="$dir/node_modules/.idb-stamp" stamp
    stamp=$(cat "$dir/package.json" "$dir/package-lock.json" 2>/dev/null | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
        return 0
    fi
    log "npm dependencies in $dir"
    if [ -f "$dir/package-lock.json" ]; then
        npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    else
        npm install --prefix "$dir" --no-audit --no-fund --loglevel=error
    fi
    printf '%s\n' "$stamp" >"$stamp_file"
}

# ---------------------------------------------------------------------------
# build DIR [extra cmake args]
# ---------------------------------------------------------------------------
build() {
    local dir=$1
    shift
    [ -f CMakeLists.txt ] || die "no CMakeLists.txt in $(pwd)"
    log "building $dir"
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" &&
        cmake --build "$dir" -j"$(nproc)"
}

# ---------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------
# port_in_use PORT: something listens on TCP PORT (any address).
port_in_use() {
    ss -Htln "sport = :$1" 2>/dev/null | grep -q .
}

# free_port [EXCLUDE...]: a currently free loopback TCP port, not in EXCLUDE.
free_port() {
    local p tries=0
    while :; do
        p=$(/usr/bin/python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
        case " $* " in *" $p "*) ;; *) echo "$p"; return 0 ;; esac
        tries=$((tries + 1))
        [ $tries -lt 20 ] || die "free_port: no free port found"
    done
}

# wait_for SECONDS CMD...: poll CMD every 0.2 s until it succeeds.
wait_for() {
    local secs=$1 i
    shift
    for ((i = 0; i < secs * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}

# ---------------------------------------------------------------------------
# PostgreSQL 15, project-local cluster
# ---------------------------------------------------------------------------
# as_pg CMD...: run CMD as the cluster owner (from /, so an unreadable
# working directory such as /root/... does not matter).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u "$IDB_PG_USER" -- "$@")
    else
        (cd / && "$@")
    fi
}

# pg_user_can_reach DIR: the cluster owner can traverse to DIR's parent.
pg_user_can_reach() {
    [ "$(id -u)" -eq 0 ] || return 0
    as_pg test -x "$(dirname "$1")"
}

# pg_pick_datadir PREFERRED: PREFERRED if the cluster owner can reach it,
# else /var/tmp/idbridge-pg-<hash of PREFERRED> (kept across runs too).
pg_pick_datadir() {
    local want=$1
    mkdir -p "$(dirname "$want")"
    if pg_user_can_reach "$want"; then
        echo "$want"
    else
        local h
        h=$(printf '%s' "$want" | sha256sum | cut -c1-12)
        warn "user $IDB_PG_USER cannot reach $(dirname "$want"); using /var/tmp/idbridge-pg-$h"
        echo "/var/tmp/idbridge-pg-$h"
    fi
}

# pg_start DATADIR PORT [ephemeral]: initdb if needed, start on
# 127.0.0.1:PORT, wait for pg_isready. "ephemeral" turns durability off
# (fsync etc.) for throw-away test clusters.
pg_start() {
    local datadir=$1 port=$2 mode=${3:-}
    local owner=$IDB_PG_USER
    [ "$(id -u)" -eq 0 ] || owner=$(id -un)
    [ -x "$IDB_PG_BIN/initdb" ] || die "PostgreSQL 15 binaries not found in $IDB_PG_BIN"

    mkdir -p "$datadir"
    datadir=$(cd "$datadir" && pwd -P)
    pg_user_can_reach "$datadir" || die "user $owner cannot traverse to $datadir"
    chown "$owner:" "$datadir"
    chmod 700 "$datadir"

    if [ ! -s "$datadir/PG_VERSION" ]; then
        log "initdb $datadir"
        local out
        if ! out=$(as_pg "$IDB_PG_BIN/initdb" -D "$datadir" -U postgres --auth=trust \
            -E UTF8 --locale=C.UTF-8 2>&1); then
            printf '%s\n' "$out" >&2
            die "initdb failed in $datadir"
        fi
        printf "\ninclude_if_exists = 'idbridge-dev.conf'\n" >>"$datadir/postgresql.conf"
    fi

    # If a previous run left this cluster running (e.g. killed with -9), stop it.
    if as_pg "$IDB_PG_BIN/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
        warn "PostgreSQL in $datadir already running; restarting it"
        pg_stop "$datadir"
    fi

    # Unix sockets live in the data dir unless its path is too long for
    # sun_path (107 bytes); everything here connects over TCP anyway.
    local sockdir=$datadir
    [ ${#datadir} -le 80 ] || sockdir=
    {
        echo "# written by deploy/lib.sh pg_start on every start"
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$sockdir'"
        echo "max_connections = 200"
        echo "logging_collector = off"
        if [ "$mode" = ephemeral ]; then
            echo "fsync = off"
            echo "synchronous_commit = off"
            echo "full_page_writes = off"
        fi
    } >"$datadir/idbridge-dev.conf"
    chown "$owner:" "$datadir/idbridge-dev.conf"

    log "starting PostgreSQL on 127.0.0.1:$port ($datadir)"
    as_pg "$IDB_PG_BIN/pg_ctl" -D "$datadir" -l "$datadir/server.log" -W start >/dev/null
    cleanup_push pg_stop "$datadir"
    if ! wait_for 30 "$IDB_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port"; then
        tail -n 30 "$datadir/server.log" >&2 || true
        die "PostgreSQL did not become ready on port $port within 30 s"
    fi
}

# pg_stop DATADIR: fast shutdown if running.
pg_stop() {
    local datadir=$1
    [ -f "$datadir/postmaster.pid" ] || return 0
    log "stopping PostgreSQL ($datadir)"
    as_pg "$IDB_PG_BIN/pg_ctl" -D "$datadir" -m fast -w -t 30 stop >/dev/null 2>&1 ||
        warn "pg_ctl stop failed for $datadir"
}

# pg_create_db PORT NAME: create database NAME if it does not exist.
pg_create_db() {
    local port=$1 name=$2
    if [ "$(psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -XtAc \
        "SELECT 1 FROM pg_database WHERE datname = '$name'")" != 1 ]; then
        log "creating database $name"
        psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -Xq -v ON_ERROR_STOP=1 \
            -c "CREATE DATABASE \"$name\""
    fi
}

# ---------------------------------------------------------------------------
# Redis, project-local instance
# ---------------------------------------------------------------------------
IDB_REDIS_DIR=

# redis_start DIR PORT
redis_start() {
    local dir=$1 port=$2
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    redis_stop "$dir" # a leftover from a killed run
    log "starting Redis on 127.0.0.1:$port ($dir)"
    : >"$dir/redis.log"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir"
    IDB_REDIS_DIR=$dir
    cleanup_push redis_stop "$dir"
    if ! wait_for 15 sh -c "redis-cli -h 127.0.0.1 -p $port ping | grep -q PONG"; then
        tail -n 20 "$dir/redis.log" >&2 || true
        die "Redis did not answer on port $port within 15 s"
    fi
}

# redis_stop [DIR]: stop the Redis whose pidfile is in DIR (default: the last
# one started).
redis_stop() {
    local dir=${1:-$IDB_REDIS_DIR} pid i
    [ -n "$dir" ] && [ -s "$dir/redis.pid" ] || return 0
    pid=$(cat "$dir/redis.pid")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
        grep -q redis "/proc/$pid/comm" 2>/dev/null; then
        log "stopping Redis (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$dir/redis.pid"
}

# ---------------------------------------------------------------------------
# test_services TMPDIR: PG + Redis for tests on free ports; sets and exports
# IDBRIDGE_TEST_PG_URL, IDBRIDGE_TEST_REDIS_URL.
# ---------------------------------------------------------------------------
test_services() {
    local tmp=$1 pg_port redis_port
    pg_port=$(free_port)
    redis_port=$(free_port "$pg_port")
    pg_start "$tmp/pg" "$pg_port" ephemeral
    redis_start "$tmp/redis" "$redis_port"
    export IDBRIDGE_TEST_PG_URL="postgresql://postgres@127.0.0.1:$pg_port/postgres"
    export IDBRIDGE_TEST_REDIS_URL="redis://127.0.0.1:$redis_port/0"
}

# make_tmpdir: create a world-traversable temp dir under /tmp (removed on
# exit) and store its path in IDB_TMP. Not for use inside $(...): the
# cleanup registration must happen in the calling shell.
IDB_TMP=
make_tmpdir() {
    IDB_TMP=$(mktemp -d /tmp/idbridge.XXXXXXXX)
    chmod 755 "$IDB_TMP"
    cleanup_push rm -rf "$IDB_TMP"
}
