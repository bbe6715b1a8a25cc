#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
#
# tests/bench/auth_check.sh: throughput, latency, CPU and memory of
# GET /auth/check against nginx serving a static file on the same machine
# (GitHub issue 2). Self-contained: throw-away PostgreSQL + Redis on free
# ports, a bench organisation, admin and API key, idbridge and nginx on
# 127.0.0.1 only; everything it starts is stopped by PID on exit.
#
# usage: tests/bench/auth_check.sh          (as root, from anywhere in the repo)
# env:   DURATION=10   seconds per wrk run
#        REPS=3        repetitions of every scenario (nginx first in each rep)
#        THREADS=4     idbridge server.threads
#        WRK_THREADS=2 CONNS=32   wrk -t / -c
#        QUIET_MAX=60  longest wait (s) for an idle machine before each run
#        WARMUP=2      seconds of unmeasured load per target before rep 1
#        OUT=/tmp/idbridge-bench  results go to $OUT/auth_check-<UTC timestamp>/
#        PERF=1        after the reps, perf-record one extra session run
#                      (needs linux-perf) into perf.data + perf-report*.txt
#        PERF_CALLGRAPH=fp  perf call graphs: fp (perf record -g) or dwarf
#                      (attributes time inside libraries built without
#                      frame pointers, e.g. libc's memset; larger perf.data)
#        STRICT=1      exit 3 when a target of issue 2 is missed
#
# Scenarios (wrk -tWRK_THREADS -cCONNS -dDURATION --timeout 10s --latency):
#   nginx_file    nginx, 3-byte static file (the ceiling the ratios refer to)
#   nginx_return  nginx, `return 200 "ok"` (no file system access)
#   session       idbridge GET /auth/check, Cookie: idb_session=...   -> 200
#   apikey        idbridge GET /auth/check, Authorization: Bearer idb_... -> 200
#   noauth        idbridge GET /auth/check without credentials        -> 401
#
# Exit: 0 ok (targets met or not, see the verdict; STRICT=1 makes a miss 3),
#       1 a harness or status check failed, 2 wrk/nginx missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$(pwd -P)
export IDB_BENCH_ROOT=$ROOT

DURATION=${DURATION:-10}
REPS=${REPS:-3}
THREADS=${THREADS:-4}
WRK_THREADS=${WRK_THREADS:-2}
CONNS=${CONNS:-32}
QUIET_MAX=${QUIET_MAX:-60}
WARMUP=${WARMUP:-2}
PERF=${PERF:-0}
PERF_CALLGRAPH=${PERF_CALLGRAPH:-fp}
STRICT=${STRICT:-0}
PY=/usr/bin/python3
TS=$(date -u +%Y%m%dT%H%M%SZ)
RES=${OUT:-/tmp/idbridge-bench}/auth_check-$TS

# ---------------------------------------------------------------- tools
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
    cat >&2 <<EOF
error: missing: ${missing[*]}
install them with the project's package list:
    bash -c '. deploy/lib.sh && install_packages'
or directly:
    apt-get install -y --no-install-recommends ${missing[*]}
EOF
    exit 2
fi
[ -x "$PY" ] || { echo "error: $PY is required" >&2; exit 2; }

# shellcheck source=deploy/lib.sh
. deploy/lib.sh

if [ ! -x build/idbridge ] || [ ! -x build/idbridgectl ]; then
    log "build/idbridge missing: building (RelWithDebInfo)"
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build -j2
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
# stop_pid PID NAME: SIGTERM, wait up to 15 s, then SIGKILL. Only the PIDs
# this script started are ever signalled.
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
    cp "$T/nginx/error.log" "$RES/nginx-error.log" 2>/dev/null || true
    cp "$T/pg/server.log" "$RES/postgresql.log" 2>/dev/null || true
    cp "$T/redis/redis.log" "$RES/redis.log" 2>/dev/null || true
}
cleanup_push save_logs # runs after the servers stopped, before rm -rf $T

# Run copies of the binaries: other people may rebuild build/ while this
# runs, and perf needs the file the daemon was started from.
mkdir -p "$T/bin"
cp build/idbridge build/idbridgectl "$T/bin/"
IDB_BIN=$T/bin/idbridge
CTL_BIN=$T/bin/idbridgectl

# ---------------------------------------------------------------- helper
# One Python helper for what bash does badly: idle wait, CPU/RSS accounting
# around each wrk run, wrk output parsing and the summary.
cat >"$T/bench.py" <<'PYEOF'
import json, os, resource, socket, statistics, subprocess, sys, time

HZ = os.sysconf("SC_CLK_TCK")


def machine():
    """/proc/stat "cpu" line: user nice system idle iowait irq softirq steal (ticks)."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def busy_ticks(v):
    """Ticks the guest CPUs ran something: user+nice+system+irq+softirq.
    Steal (host contention) is reported separately, not counted as busy."""
    return v[0] + v[1] + v[2] + v[5] + v[6]


def pstat(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def cpu_ticks(pid):
    """user+system ticks of PID (all its threads)."""
    try:
        return pstat(pid)[1]
    except (OSError, ValueError):
        return 0


def tree_ticks(root):
    """user+system ticks of ROOT and its descendants, reaped ones included."""
    if not root:
        return 0
    info, children = {}, {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid, own, reaped = pstat(int(d))
            except (OSError, ValueError):
                continue
            info[int(d)] = own + reaped
            children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        if p in info:
            total += info[p]
            todo.extend(children.get(p, []))
    return total


def status_kb(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def redis_commands(port):
    if not port:
        return 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"INFO stats\r\n")
            buf = b""
            while b"total_commands_processed" not in buf or not buf.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > 1 << 20:
                    break
        for line in buf.decode(errors="replace").splitlines():
            if line.startswith("total_commands_processed:"):
                return int(line.split(":")[1])
    except OSError:
        pass
    return 0


def idle(maxwait):
    """Wait until less than 0.1 core was busy over 1 s (at most maxwait s)."""
    t0 = time.monotonic()
    busy = None
    while True:
        s0, m0 = time.monotonic(), machine()
        time.sleep(1.0)
        s1, m1 = time.monotonic(), machine()
        busy = (busy_ticks(m1) - busy_ticks(m0)) / HZ / (s1 - s0)
        waited = time.monotonic() - t0
        if busy < 0.1 or waited >= maxwait:
            print("%.1f %.3f %s" % (waited, busy, "idle" if busy < 0.1 else "busy"))
            return


def to_ms(s):
    s = s.strip()
    for suf, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3), ("m", 60e3)):
        if s.endswith(suf):
            return float(s[: -len(suf)]) * f
    return float(s)


def parse_wrk(text):
    r = {"requests": 0, "rate": 0.0, "non2xx": 0, "sock_errors": {}, "lat": {}}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        t = line.strip()
        if t.startswith("Requests/sec:"):
            r["rate"] = float(t.split()[1])
        elif " requests in " in t:
            r["requests"] = int(t.split()[0])
        elif t.startswith("Non-2xx or 3xx responses:"):
            r["non2xx"] = int(t.split(":")[1])
        elif t.startswith("Socket errors:"):
            for part in t.split(":", 1)[1].split(","):
                k, v = part.split()
                r["sock_errors"][k] = int(v)
        elif t == "Latency Distribution":
            for l2 in lines[i + 1 : i + 5]:
                p, v = l2.split()
                r["lat"][p] = to_ms(v)
    return r


def run(argv):
    a = dict(zip(argv[0:argv.index("--"):2], argv[1:argv.index("--"):2]))
    cmd = argv[argv.index("--") + 1 :]
    dpid, rpid, npid, pgpid = (int(a.get(k, "0") or 0) for k in ("--daemon", "--redis", "--nginx", "--pg"))
    dur = float(a["--duration"])
    rport = int(a.get("--redis-port", "0") or 0)
    rc0 = redis_commands(rport)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m0 = machine()
    d0, r0, n0, p0 = cpu_ticks(dpid), cpu_ticks(rpid), tree_ticks(npid), tree_ticks(pgpid)
    w0 = time.monotonic()
    rss_max = 0
    with open(a["--out"], "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = w0 + dur + 30
        timed_out = False
        while proc.poll() is None:
            if dpid:
                rss_max = max(rss_max, status_kb(dpid, "VmRSS"))
            if time.monotonic() > deadline:
                proc.kill()
                timed_out = True
            time.sleep(0.2)
        proc.wait()
    time.sleep(0.3)  # let in-flight requests drain before the CPU read
    if dpid:
        rss_max = max(rss_max, status_kb(dpid, "VmRSS"))
    w1 = time.monotonic()
    m1 = machine()
    d1, r1, n1, p1 = cpu_ticks(dpid), cpu_ticks(rpid), tree_ticks(npid), tree_ticks(pgpid)
    ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    rc1 = redis_commands(rport)
    wall = w1 - w0
    wrk_s = (ch1.ru_utime + ch1.ru_stime) - (ch0.ru_utime + ch0.ru_stime)
    self_s = (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)
    known = (d1 - d0 + r1 - r0 + n1 - n0 + p1 - p0) / HZ + wrk_s + self_s
    dm = [b - a for a, b in zip(m0, m1)]
    busy = busy_ticks(dm) / HZ
    # Loopback TCP is processed in softirq context. A softirq tick taken while
    # one of our processes runs is charged to its stime but shows up in the
    # machine's softirq column, not in system; one taken in the idle task or
    # ksoftirqd is charged to no process we watch. So other processes used
    # between (user+nice+system - known) and (busy - known): the lower bound
    # is what decides whether a rep was disturbed; both are recorded.
    foreign_lo = max(0.0, (dm[0] + dm[1] + dm[2]) / HZ - known)
    foreign_hi = max(0.0, busy - known)
    with open(a["--out"]) as f:
        w = parse_wrk(f.read())
    rec = {
        "scenario": a["--name"], "rep": int(a["--rep"]), "target": a["--target"],
        "file": os.path.basename(a["--out"]), "exit": proc.returncode, "timed_out": timed_out,
        "idle_wait_s": float(a.get("--idle-wait", "0")), "idle_before": a.get("--idle-state", ""),
        "wall_s": round(wall, 3),
        "daemon_cpu_s": (d1 - d0) / HZ, "redis_cpu_s": (r1 - r0) / HZ, "nginx_cpu_s": (n1 - n0) / HZ,
        "pg_cpu_s": (p1 - p0) / HZ, "wrk_cpu_s": round(wrk_s, 3),
        "machine_busy_cores": round(busy / wall, 3),
        "softirq_cores": round(dm[6] / HZ / wall, 3), "steal_cores": round(dm[7] / HZ / wall, 3),
        "foreign_cores": round(foreign_lo / wall, 3), "foreign_cores_hi": round(foreign_hi / wall, 3),
        "redis_cmds": rc1 - rc0, "daemon_rss_max_kb": rss_max,
        "daemon_hwm_kb": status_kb(dpid, "VmHWM") if dpid else 0,
        **w,
    }
    with open(a["--json"], "a") as f:
        f.write(json.dumps(rec) + "\n")
    e = sum(w["sock_errors"].values())
    print("%-12s rep %d: %9.0f req/s  p50 %.2f ms  p99 %.2f ms  non2xx %d  sock_err %d  "
          "foreign %.2f (≤%.2f) core  steal %.2f"
          % (rec["scenario"], rec["rep"], w["rate"], w["lat"].get("50%", -1), w["lat"].get("99%", -1),
             w["non2xx"], e, rec["foreign_cores"], rec["foreign_cores_hi"], rec["steal_cores"]))


NAMES = {
    "nginx_file": "a  nginx static file (3 bytes)",
    "nginx_return": "a' nginx `return 200` (no file)",
    "session": "b  idbridge /auth/check, session cookie",
    "apikey": "c  idbridge /auth/check, API key",
    "noauth": "d  idbridge /auth/check, no credentials",
}
EXPECT = {"nginx_file": "2xx", "nginx_return": "2xx", "session": "2xx", "apikey": "2xx", "noauth": "non2xx"}


def check(r):
    """Problems with one run's outcome (empty = as expected)."""
    p = []
    if r["exit"] != 0 or r["timed_out"]:
        p.append("wrk exit %s%s" % (r["exit"], " (killed: over time)" if r["timed_out"] else ""))
    if r["requests"] <= 0:
        p.append("no requests completed")
    e = sum(r["sock_errors"].values())
    if e:
        p.append("socket errors %s" % r["sock_errors"])
    if EXPECT[r["scenario"]] == "2xx" and r["non2xx"]:
        p.append("%d non-2xx responses (expected none)" % r["non2xx"])
    if EXPECT[r["scenario"]] == "non2xx" and r["non2xx"] != r["requests"]:
        p.append("%d of %d responses were non-2xx (expected all)" % (r["non2xx"], r["requests"]))
    return p


def summary(argv):
    jpath, outdir = argv[0], argv[1]
    ratio_min, p99_max_ms, rss_max_mb = 0.5, 5.0, 64.0
    recs = [json.loads(l) for l in open(jpath)]
    extra = json.load(open(os.path.join(outdir, "extra.json")))
    base = {r["rep"]: r["rate"] for r in recs if r["scenario"] == "nginx_file"}
    rows, out_json, problems = [], {}, []
    for r in recs:
        for p in check(r):
            problems.append("%s rep %d (%s): %s" % (r["scenario"], r["rep"], r["file"], p))
    for sc in NAMES:
        rs = [r for r in recs if r["scenario"] == sc]
        if not rs:
            continue
        kept = [r for r in rs if r["foreign_cores"] <= 0.1]
        busy = len(kept) < 2 and len(rs) >= 2
        if busy or not kept:
            kept = rs
        srt = sorted(kept, key=lambda r: r["rate"])
        med = srt[(len(srt) - 1) // 2]
        rates = [r["rate"] for r in kept]
        ratios = [r["rate"] / base[r["rep"]] for r in kept if base.get(r["rep"])]
        is_idb = sc in ("session", "apikey", "noauth")
        cpu_key = "daemon_cpu_s" if is_idb else "nginx_cpu_s"
        cpu_us = [r[cpu_key] / r["requests"] * 1e6 for r in kept if r["requests"]]
        redis_us = [r["redis_cpu_s"] / r["requests"] * 1e6 for r in kept if r["requests"]]
        redis_cmds = [r["redis_cmds"] / r["requests"] for r in kept if r["requests"]]
        p99s = [r["lat"].get("99%", float("nan")) for r in kept]
        d = {
            "name": NAMES[sc], "reps": len(rs), "kept": len(kept), "busy": busy,
            "rate_median": statistics.median(rates), "rate_median_rep": med["rep"],
            "rate_min": min(rates), "rate_max": max(rates),
            "ratio_median": statistics.median(ratios) if ratios else None,
            "p50_ms": med["lat"].get("50%"), "p99_ms": med["lat"].get("99%"),
            "p99_ms_median": statistics.median(p99s), "p99_ms_max": max(p99s),
            "server_cpu_us_per_req": statistics.median(cpu_us) if cpu_us else None,
            "redis_cpu_us_per_req": statistics.median(redis_us) if (is_idb and redis_us) else None,
            "redis_cmds_per_req": statistics.median(redis_cmds) if (is_idb and redis_cmds) else None,
            "pg_cpu_s_total": sum(r["pg_cpu_s"] for r in rs),
            "rss_mb": max(r["daemon_rss_max_kb"] for r in rs) / 1024 if is_idb else None,
            "requests": sum(r["requests"] for r in rs),
            "non2xx": sum(r["non2xx"] for r in rs),
            "sock_errors": sum(sum(r["sock_errors"].values()) for r in rs),
            "foreign_cores_max": max(r["foreign_cores"] for r in rs),
            "wrk_cpu_cores": statistics.median(r["wrk_cpu_s"] / r["wall_s"] for r in rs),
        }
        out_json[sc] = d
        rows.append((sc, d))

    def f(x, fmt):
        return "–" if x is None else fmt % x

    hdr = ("| | scenario | req/s median (min–max) | ratio to (a), same rep | p50 ms | p99 ms "
           "| server CPU µs/req | Redis CPU µs/req | Redis cmds/req | daemon RSS MB (peak) | outcome |")
    lines = [hdr, "|" + "---|" * 11]
    for sc, d in rows:
        label, desc = d["name"].split(None, 1)
        outcome = "%d req, %d non-2xx, %d sock err" % (d["requests"], d["non2xx"], d["sock_errors"])
        lines.append("| %s | %s%s | %s (%s–%s) | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, desc, " !busy" if d["busy"] else "",
            "{:,.0f}".format(d["rate_median"]), "{:,.0f}".format(d["rate_min"]), "{:,.0f}".format(d["rate_max"]),
            f(d["ratio_median"], "%.2f"), f(d["p50_ms"], "%.2f"), f(d["p99_ms"], "%.2f"),
            f(d["server_cpu_us_per_req"], "%.1f"), f(d["redis_cpu_us_per_req"], "%.1f"),
            f(d["redis_cmds_per_req"], "%.2f"), f(d["rss_mb"], "%.1f"), outcome))
    table = "\n".join(lines)

    hwm_mb = extra.get("daemon_hwm_kb", 0) / 1024
    # Peak VmRSS sampled every 0.2 s during the measured /auth/check runs.
    # VmHWM is the lifetime peak: it includes start-up and the one password
    # login (argon2id) the harness makes, so it is reported beside it.
    rss_peak = max([d["rss_mb"] for _, d in rows if d["rss_mb"] is not None] + [0])
    verdict, ok_all = [], True
    for sc in ("session", "apikey"):
        d = out_json.get(sc)
        if not d:
            continue
        r_ok = d["ratio_median"] is not None and d["ratio_median"] >= ratio_min
        p_ok = d["p99_ms_max"] < p99_max_ms
        ok_all &= r_ok and p_ok
        verdict.append("- %s: throughput %.2f × nginx static file (target ≥ %.2f): **%s**; "
                       "p99 %.2f ms (median rep), %.2f ms (worst rep) (target < %.0f ms): **%s**"
                       % (d["name"], d["ratio_median"] or 0, ratio_min, "PASS" if r_ok else "FAIL",
                          d["p99_ms"], d["p99_ms_max"], p99_max_ms, "PASS" if p_ok else "FAIL"))
    m_ok = rss_peak < rss_max_mb
    ok_all &= m_ok
    verdict.append("- daemon RSS peak during the /auth/check runs %.1f MB (target < %.0f MB): **%s**; "
                   "lifetime VmHWM %.1f MB (start-up + 1 password login + runs, see memory.txt)%s"
                   % (rss_peak, rss_max_mb, "PASS" if m_ok else "FAIL", hwm_mb,
                      " — over the target" if hwm_mb >= rss_max_mb else ""))
    verdict.append("- overall: **%s**" % ("all targets of issue 2 met" if ok_all else "target(s) missed"))

    notes = [
        "- server CPU = idbridge process (all threads) for b–d, nginx master+workers for a/a'; "
        "per request = Δ(utime+stime) / requests, median over kept reps.",
        "- p50/p99 come from the rep with the median rate; ratio = median of per-rep ratios to (a) of the same rep.",
        "- reps with foreign_cores > 0.1 (CPU used by anything else during the run) are set aside when ≥ 2 remain "
        "(`!busy`: fewer remained, all kept). Max foreign load seen: %.2f core "
        "(lower bound: user+nice+system minus the watched processes; loopback softirq time is left out)."
        % max(d["foreign_cores_max"] for _, d in rows),
        "- wrk used ~%.2f core (median) of the 2 it shares with the servers."
        % statistics.median(d["wrk_cpu_cores"] for _, d in rows),
        "- PostgreSQL CPU during all idbridge runs: %.2f s (cache hits should leave it near 0)."
        % sum(d["pg_cpu_s_total"] for sc, d in rows if sc in ("session", "apikey", "noauth")),
    ]
    for k in ("log_lines", "log_warn_error", "log_sample", "metrics_delta"):
        if extra.get(k):
            if k == "log_sample":
                notes.append("- daemon log sample:\n```\n%s\n```" % extra[k])
            elif k == "metrics_delta":
                notes.append("- /metrics change over the measured runs:\n```\n%s\n```" % extra[k])
            else:
                notes.append("- daemon log %s: %s" % (k.replace("log_", ""), extra[k]))

    mem = extra.get("memory", "")
    md = ["# /auth/check benchmark (issue 2)", "", extra.get("env", ""), "", table, "",
          "Daemon memory checkpoints:", "```", mem, "```", "",
          "Verdict (issue 2):", *verdict, "", "Notes:", *notes]
    if problems:
        md += ["", "STATUS CHECK FAILURES:", *("- " + p for p in problems)]
    text = "\n".join(md) + "\n"
    with open(os.path.join(outdir, "summary.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(outdir, "summary.json"), "w") as fh:
        json.dump({"scenarios": out_json, "problems": problems, "targets_met": ok_all,
                   "rss_peak_mb": rss_peak, "daemon_hwm_mb": hwm_mb}, fh, indent=1)
    print(text)
    if problems:
        print("FAILED: %d run(s) did not get the expected statuses (see above)" % len(problems), file=sys.stderr)
        sys.exit(1)
    sys.exit(0 if ok_all else 10)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "idle":
        idle(float(sys.argv[2]))
    elif cmd == "run":
        run(sys.argv[2:])
    elif cmd == "summary":
        summary(sys.argv[2:])
    elif cmd == "check1":
        r = json.loads(open(sys.argv[2]).readlines()[-1])
        p = check(r)
        for x in p:
            print("%s rep %d: %s" % (r["scenario"], r["rep"], x))
        sys.exit(1 if p else 0)
PYEOF

# ---------------------------------------------------------------- services
pg_port=$(free_port)
redis_port=$(free_port "$pg_port")
idb_port=$(free_port "$pg_port" "$redis_port")
nginx_port=$(free_port "$pg_port" "$redis_port" "$idb_port")

pg_start "$T/pg" "$pg_port" ephemeral
pg_pid=$(head -n 1 "$T/pg/postmaster.pid")
redis_start "$T/redis" "$redis_port"
redis_pid=$(cat "$T/redis/redis.pid")
pg_create_db "$pg_port" idbridge

export IDBRIDGE_DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/idbridge"
export IDBRIDGE_REDIS_URL="redis://127.0.0.1:$redis_port/0"
export IDBRIDGE_LISTEN="127.0.0.1:$idb_port"
export IDBRIDGE_PUBLIC_URL="http://127.0.0.1:$idb_port"
CFG=$T/idbridge.yaml
cat >"$CFG" <<EOF
server:
  threads: $THREADS
log:
  level: warn
  access_log: false
security:
  secret_key_file: "$T/secret.key"
saml:
  sp_key_file: "$T/saml-sp.key"
  sp_cert_file: "$T/saml-sp.crt"
EOF
cp "$CFG" "$RES/idbridge.yaml"
"$IDB_BIN" --check-config "$CFG" >/dev/null || die "idbridge rejects $CFG"

ctl=(timeout 60 "$CTL_BIN" --config "$CFG")
log "migrating, creating org 'bench', admin and API key"
"${ctl[@]}" migrate >/dev/null
"${ctl[@]}" org create bench --name "Bench" >/dev/null
email=bench@bench.test
out=$("${ctl[@]}" admin create --org bench --email "$email")
password=$(printf '%s\n' "$out" | sed -n 's/^password: *//p' | head -n 1)
[ -n "$password" ] || die "no 'password:' line in idbridgectl admin create output"
apikey=$("${ctl[@]}" apikey create --org bench --email "$email" --name bench 2>/dev/null | grep -m1 '^idb_' || true)
[ -n "$apikey" ] || die "idbridgectl apikey create printed no idb_… key"

log "starting idbridge on 127.0.0.1:$idb_port (threads $THREADS)"
"$IDB_BIN" --config "$CFG" >"$RES/idbridge.log" 2>&1 &
idb_pid=$!
cleanup_push stop_pid "$idb_pid" idbridge
if ! wait_for 30 curl -fsS --max-time 2 "http://127.0.0.1:$idb_port/healthz"; then
    tail -n 30 "$RES/idbridge.log" >&2 || true
    die "idbridge did not answer /healthz within 30 s"
fi
kill -0 "$idb_pid" 2>/dev/null || die "idbridge exited (see $RES/idbridge.log)"
# mem_point LABEL: the daemon's VmRSS / VmHWM now, into memory.txt.
mem_point() {
    awk -v l="$1" '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 }
        END { printf "%-28s VmRSS %7.1f MB  VmHWM %7.1f MB\n", l, r / 1024, h / 1024 }' \
        "/proc/$idb_pid/status" >>"$RES/memory.txt"
}
: >"$RES/memory.txt"
mem_point "started"

# Log in; the session cookie comes from the cookie jar.
login_body=$("$PY" -c 'import json,sys; print(json.dumps({"email": sys.argv[1], "password": sys.argv[2]}))' \
    "$email" "$password")
code=$(curl -sS --max-time 10 -o "$T/login.json" -w '%{http_code}' -c "$T/cookies.txt" \
    -H 'Content-Type: application/json' --data-binary "$login_body" "http://127.0.0.1:$idb_port/login")
[ "$code" = 200 ] || die "POST /login answered $code: $(cat "$T/login.json")"
cookie=$(awk '$6 == "idb_session" { print $7 }' "$T/cookies.txt" | tail -n 1)
[ -n "$cookie" ] || die "no idb_session cookie after login"
mem_point "after 1 POST /login"

# ---------------------------------------------------------------- nginx
mkdir -p "$T/nginx/www" "$T/nginx/tmp"
printf 'ok\n' >"$T/nginx/www/file.txt" # the 3-byte static file
cat >"$T/nginx/nginx.conf" <<EOF
user root;
worker_processes 2;
master_process on;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 100000;
    default_type text/plain;
    client_body_temp_path $T/nginx/tmp/body;
    proxy_temp_path $T/nginx/tmp/proxy;
    fastcgi_temp_path $T/nginx/tmp/fastcgi;
    uwsgi_temp_path $T/nginx/tmp/uwsgi;
    scgi_temp_path $T/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$nginx_port;
        root $T/nginx/www;
        location = /static { return 200 "ok"; }
        location / { }
    }
}
EOF
cp "$T/nginx/nginx.conf" "$RES/nginx.conf"
nginx -t -q -p "$T/nginx" -e "$T/nginx/error.log" -c "$T/nginx/nginx.conf" || die "nginx -t failed"
log "starting nginx on 127.0.0.1:$nginx_port"
nginx -p "$T/nginx" -e "$T/nginx/error.log" -c "$T/nginx/nginx.conf" -g 'daemon off;' \
    >"$T/nginx/stdout.log" 2>&1 &
nginx_pid=$!
cleanup_push stop_pid "$nginx_pid" nginx
wait_for 15 curl -fsS --max-time 2 "http://127.0.0.1:$nginx_port/static" ||
    die "nginx did not answer within 15 s: $(cat "$T/nginx/error.log")"

# ---------------------------------------------------------------- targets
NGX=http://127.0.0.1:$nginx_port
IDB=http://127.0.0.1:$idb_port
declare -A URL HDR
URL[nginx_file]=$NGX/file.txt
URL[nginx_return]=$NGX/static
URL[session]=$IDB/auth/check
URL[apikey]=$IDB/auth/check
URL[noauth]=$IDB/auth/check
HDR[nginx_file]=
HDR[nginx_return]=
HDR[session]="Cookie: idb_session=$cookie"
HDR[apikey]="Authorization: Bearer $apikey"
HDR[noauth]=
SCENARIOS=(nginx_file nginx_return session apikey noauth)
declare -A WANT=([nginx_file]=200 [nginx_return]=200 [session]=200 [apikey]=200 [noauth]=401)

# Functional checks: one request each, status and (for the 200s) X-Auth-*.
: >"$RES/checks.txt"
for sc in "${SCENARIOS[@]}"; do
    args=(-sS --max-time 10 -o "$T/body" -D "$T/headers" -w '%{http_code}')
    [ -z "${HDR[$sc]}" ] || args+=(-H "${HDR[$sc]}")
    code=$(curl "${args[@]}" "${URL[$sc]}")
    printf '%-13s %s -> %s\n' "$sc" "${URL[$sc]}" "$code" >>"$RES/checks.txt"
    [ "$code" = "${WANT[$sc]}" ] || die "check $sc: ${URL[$sc]} answered $code, expected ${WANT[$sc]}"
    case $sc in
        session | apikey)
            grep -qi "^X-Auth-Email: $email" "$T/headers" || die "check $sc: no X-Auth-Email: $email"
            grep -i '^X-Auth-' "$T/headers" | sed 's/^/    /' >>"$RES/checks.txt"
            ;;
        nginx_file) [ "$(cat "$T/body")" = ok ] || die "check nginx_file: body is not 'ok'" ;;
    esac
done
cat "$RES/checks.txt"

# ---------------------------------------------------------------- environment
{
    echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p') | nproc=$(nproc) | mem=$(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "os: $(. /etc/os-release && echo "$PRETTY_NAME") kernel $(uname -r)"
    echo "idbridge: $("$IDB_BIN" --version) git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$( [ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || echo ' (+ uncommitted changes)'), build type ${build_type:-?}, binary sha256 $(sha256sum "$IDB_BIN" | cut -c1-12), server.threads=$THREADS"
    echo "pkgs: $(dpkg-query -W -f='${Package}=${Version} ' nginx-light wrk redis-server postgresql-15 libmicrohttpd12 libhiredis0.14 2>/dev/null)"
    echo "load: wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s --timeout 10s --latency, $REPS reps, order per rep: ${SCENARIOS[*]}; client and servers share the same cores"
} >"$RES/env.txt"
cat "$RES/env.txt"

# ---------------------------------------------------------------- runs
pid_for() { case $1 in nginx_*) echo "$nginx_pid" ;; *) echo "$idb_pid" ;; esac; }

wrk_cmd() { # wrk_cmd SCENARIO SECONDS
    local sc=$1 secs=$2
    local c=(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${secs}s" --timeout 10s --latency)
    [ -z "${HDR[$sc]}" ] || c+=(-H "${HDR[$sc]}")
    c+=("${URL[$sc]}")
    printf '%q ' "${c[@]}"
}

metrics() { curl -fsS --max-time 5 "$IDB/metrics" 2>/dev/null || true; }

if [ "$WARMUP" -gt 0 ]; then
    log "warm-up: ${WARMUP}s per scenario"
    for sc in "${SCENARIOS[@]}"; do
        eval "timeout $((WARMUP + 20)) $(wrk_cmd "$sc" "$WARMUP")" >"$RES/warmup-$sc.txt" 2>&1 ||
            die "warm-up $sc failed: $(cat "$RES/warmup-$sc.txt")"
    done
fi

mem_point "after warm-up"
metrics >"$RES/metrics-before.txt"
log_lines_before=$(wc -l <"$RES/idbridge.log")
JSON=$RES/runs.jsonl
: >"$JSON"
failed=0
for ((rep = 1; rep <= REPS; rep++)); do
    for sc in "${SCENARIOS[@]}"; do
        read -r waited busy state < <("$PY" "$T/bench.py" idle "$QUIET_MAX")
        [ "$state" = idle ] || warn "machine still busy ($busy core) after ${waited}s; running $sc anyway"
        f=$RES/wrk-$sc-rep$rep.txt
        # shellcheck disable=SC2046
        eval "set -- $(wrk_cmd "$sc" "$DURATION")"
        "$PY" "$T/bench.py" run --name "$sc" --rep "$rep" --target "$(pid_for "$sc")" \
            --out "$f" --json "$JSON" --duration "$DURATION" \
            --daemon "$([ "${sc%%_*}" = nginx ] || echo "$idb_pid")" \
            --nginx "$nginx_pid" --redis "$redis_pid" --pg "$pg_pid" --redis-port "$redis_port" \
            --idle-wait "$waited" --idle-state "$state" -- "$@"
        if ! "$PY" "$T/bench.py" check1 "$JSON" >&2; then
            printf '\n!!!!!!!! STATUS CHECK FAILED: %s rep %d (see %s) !!!!!!!!\n\n' "$sc" "$rep" "$f" >&2
            failed=1
        fi
        kill -0 "$idb_pid" 2>/dev/null || die "idbridge died during $sc rep $rep (see $RES/idbridge.log)"
        kill -0 "$nginx_pid" 2>/dev/null || die "nginx died during $sc rep $rep"
    done
done
metrics >"$RES/metrics-after.txt"
hwm_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$idb_pid/status")
mem_point "after the measured runs"
cat "$RES/memory.txt"

# ---------------------------------------------------------------- optional profile
if [ "$PERF" = 1 ]; then
    if command -v perf >/dev/null 2>&1; then
        log "perf: one extra session run, perf record ($PERF_CALLGRAPH call graphs) -p $idb_pid"
        "$PY" "$T/bench.py" idle "$QUIET_MAX" >/dev/null
        cg=(-g)
        [ "$PERF_CALLGRAPH" != dwarf ] || cg=(--call-graph "dwarf,16384" -F 499)
        timeout $((DURATION + 30)) perf record -q "${cg[@]}" -p "$idb_pid" -o "$RES/perf.data" -- sleep "$DURATION" \
            >"$RES/perf-record.log" 2>&1 &
        perf_pid=$!
        sleep 0.5
        eval "timeout $((DURATION + 30)) $(wrk_cmd session "$((DURATION - 1))")" >"$RES/wrk-session-perf.txt" 2>&1 || true
        wait "$perf_pid" || true
        perf report -i "$RES/perf.data" --stdio --no-children --sort dso,symbol --percent-limit 0.5 -g none \
            >"$RES/perf-report.txt" 2>/dev/null || true
        perf report -i "$RES/perf.data" --stdio --no-children --sort dso,symbol --percent-limit 2 \
            -g caller,0.5,callee,function,percent >"$RES/perf-report-callers.txt" 2>/dev/null || true
        perf report -i "$RES/perf.data" --stdio --children --sort symbol --percent-limit 2 -g none \
            >"$RES/perf-report-children.txt" 2>/dev/null || true
        perf report -i "$RES/perf.data" --stdio --no-children --sort dso --percent-limit 0.5 -g none \
            >"$RES/perf-report-dso.txt" 2>/dev/null || true
        log "perf report: $RES/perf-report.txt"
    else
        warn "PERF=1 but perf is not installed (apt-get install linux-perf)"
    fi
fi

# ---------------------------------------------------------------- summary
log_new=$(tail -n +"$((log_lines_before + 1))" "$RES/idbridge.log")
log_n=$(printf '%s' "$log_new" | grep -c . || true)
log_we=$(printf '%s\n' "$log_new" | grep -Ec '^[^ ]+ (warn|error) ' || true)
log_sample=
[ "${log_n:-0}" -eq 0 ] || log_sample=$(printf '%s\n' "$log_new" | awk '{ $1 = ""; $3 = ""; print }' | sort | uniq -c | sort -rn | head -n 10)
metrics_delta=$("$PY" - "$RES/metrics-before.txt" "$RES/metrics-after.txt" <<'PYEOF'
import sys
def load(p):
    d = {}
    for l in open(p):
        if l.startswith("#") or not l.strip():
            continue
        k, _, v = l.rpartition(" ")
        try:
            d[k] = float(v)
        except ValueError:
            pass
    return d
a, b = load(sys.argv[1]), load(sys.argv[2])
for k in sorted(b):
    if ("cache" in k or "fallback" in k or "redis" in k or "_total{" in k and "auth/check" in k) and b[k] != a.get(k, 0):
        if "bucket" in k or "_sum" in k:
            continue
        print("%s +%g" % (k, b[k] - a.get(k, 0)))
PYEOF
)
printf '%s\n' "$log_sample" >"$RES/idbridge-log-summary.txt"
printf '%s\n' "$metrics_delta" >"$RES/metrics-delta.txt"
"$PY" - "$RES" "${hwm_kb:-0}" "${log_n:-0}" "${log_we:-0}" <<'PYEOF'
import json, os, sys
res = sys.argv[1]
rd = lambda n: open(os.path.join(res, n)).read().strip()
json.dump({"daemon_hwm_kb": int(sys.argv[2] or 0), "env": rd("env.txt"),
           "log_lines": int(sys.argv[3] or 0), "log_warn_error": int(sys.argv[4] or 0),
           "log_sample": rd("idbridge-log-summary.txt"), "metrics_delta": rd("metrics-delta.txt"),
           "memory": rd("memory.txt")},
          open(os.path.join(res, "extra.json"), "w"))
PYEOF

rc=0
"$PY" "$T/bench.py" summary "$JSON" "$RES" || rc=$?
log "raw wrk outputs, logs and summary: $RES"
if [ $rc = 1 ] || [ $failed = 1 ]; then
    echo "FAILED: at least one scenario did not get the expected HTTP statuses" >&2
    exit 1
fi
if [ $rc = 10 ]; then
    [ "$STRICT" = 1 ] && exit 3
fi
exit 0
