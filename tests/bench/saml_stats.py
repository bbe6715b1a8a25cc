#!/usr/bin/python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Measurement and summary helper for tests/bench/saml_acs.sh.

  saml_stats.py idle MAXWAIT
      waits until the machine is idle (< 0.1 core busy over 1 s), at most
      MAXWAIT s; prints "<waited_s> <busy_cores> idle|busy".
  saml_stats.py run --name S --rep K --out FILE --json FILE --duration D
                    --daemon PID --pg PID --redis PID [--idle-wait W --idle-state X] -- WRK...
      runs WRK (bounded: killed at D+40 s), samples the daemon's VmRSS, waits
      until the daemon's CPU stops moving (in-flight POSTs drained), then
      appends one JSON record: wrk/ACS_RESULT figures, CPU seconds of the
      daemon, the PostgreSQL tree and Redis, wrk's own CPU, the CPU used by
      anything else on the machine (foreign_cores), VmRSS max / VmHWM.
  saml_stats.py summary RUNS.jsonl RESULTS_DIR [MELLON_SUMMARY.json]
      the table (median rep per scenario, min-max over kept reps), ratios to
      mellon tuned (peers scenario g, "acs_noca"), the verdict against issue
      3's targets; writes summary.md / summary.json into RESULTS_DIR.
      Exit 0 targets met, 10 a target missed, 1 some logins failed.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
FOREIGN_MAX = 0.10
TARGETS = {"returning": 1.5, "first": 0.5}
TITLES = {
    "returning": "idbridge ACS, returning user (login updates user, identity, groups; new session)",
    "first": "idbridge ACS, first login (JIT: user + identity + 3 memberships; new session)",
}


def machine():
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def busy(v):
    return v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq


def pstat(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def own_ticks(pid):
    try:
        return pstat(pid)[1]
    except (OSError, ValueError):
        return 0


def tree_ticks(root):
    """ROOT and its descendants, reaped ones included (PostgreSQL backends)."""
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


def idle(maxwait):
    t0 = time.monotonic()
    while True:
        s0, m0 = time.monotonic(), machine()
        time.sleep(1.0)
        s1, m1 = time.monotonic(), machine()
        b = (busy(m1) - busy(m0)) / HZ / (s1 - s0)
        waited = time.monotonic() - t0
        if b < 0.1 or waited >= maxwait:
            print("%.0f %.2f %s" % (waited, b, "idle" if b < 0.1 else "busy"))
            return


def to_ms(s):
    s = s.strip()
    for suf, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3), ("m", 60e3)):
        if s.endswith(suf):
            return float(s[: -len(suf)]) * f
    return float(s)


def parse_wrk(text):
    r = {"acs": {}, "fail_samples": [], "sock_errors": {}}
    for line in text.splitlines():
        t = line.strip()
        if t.startswith("ACS_RESULT "):
            r["acs"] = dict(kv.split("=", 1) for kv in t.split()[1:])
        elif t.startswith("ACS_FAIL "):
            r["fail_samples"].append(t[len("ACS_FAIL "):])
        elif t.startswith("Socket errors:"):
            for part in t.split(":", 1)[1].split(","):
                k, v = part.split()
                r["sock_errors"][k] = int(v)
    a = r["acs"]
    for k in ("bodies_loaded", "posts_sent", "success", "failure", "failure_no_cookie",
              "exhausted_threads", "after_exhaustion", "healthz", "unanswered"):
        a[k] = int(a.get(k, 0))
    for k in ("duration_s", "window_s", "success_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms"):
        a[k] = float(a.get(k, 0))
    return r


def run(argv):
    sep = argv.index("--")
    a = dict(zip(argv[0:sep:2], argv[1:sep:2]))
    cmd = argv[sep + 1:]
    dpid, pgpid, rpid = int(a["--daemon"]), int(a["--pg"]), int(a["--redis"])
    dur = float(a["--duration"])
    ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    m0, w0 = machine(), time.monotonic()
    d0, p0, r0 = own_ticks(dpid), tree_ticks(pgpid), own_ticks(rpid)
    rss_max, timed_out = 0, False
    with open(a["--out"], "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = w0 + dur + 40
        while proc.poll() is None:
            rss_max = max(rss_max, status_kb(dpid, "VmRSS"))
            if time.monotonic() > deadline:
                proc.kill()
                timed_out = True
            time.sleep(0.2)
        proc.wait()
    # POSTs still in flight when wrk stopped are finished by the daemon: wait
    # until its CPU stops moving (at most 10 s) so CPU and POSTs sent match.
    last = own_ticks(dpid)
    for _ in range(20):
        time.sleep(0.5)
        cur = own_ticks(dpid)
        if cur == last:
            break
        last = cur
    rss_max = max(rss_max, status_kb(dpid, "VmRSS"))
    w1, m1 = time.monotonic(), machine()
    d1, p1, r1 = own_ticks(dpid), tree_ticks(pgpid), own_ticks(rpid)
    ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    wall = w1 - w0
    wrk_s = (ch1.ru_utime + ch1.ru_stime) - (ch0.ru_utime + ch0.ru_stime)
    self_s = (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)
    dm = [y - x for x, y in zip(m0, m1)]
    known = (d1 - d0 + p1 - p0 + r1 - r0) / HZ + wrk_s + self_s
    # softirq time of loopback TCP is charged to whatever runs: left out of
    # the "foreign" lower bound (user+nice+system - what we watch)
    foreign = max(0.0, (dm[0] + dm[1] + dm[2]) / HZ - known)
    with open(a["--out"]) as f:
        w = parse_wrk(f.read())
    rec = {
        "scenario": a["--name"], "rep": int(a["--rep"]), "file": os.path.basename(a["--out"]),
        "exit": proc.returncode, "timed_out": timed_out,
        "idle_wait_s": float(a.get("--idle-wait", 0)), "idle_state": a.get("--idle-state", ""),
        "wall_s": round(wall, 2),
        "daemon_cpu_s": (d1 - d0) / HZ, "pg_cpu_s": (p1 - p0) / HZ, "redis_cpu_s": (r1 - r0) / HZ,
        "wrk_cpu_s": round(wrk_s, 2), "machine_busy_cores": round(busy(dm) / HZ / wall, 3),
        "steal_cores": round(dm[7] / HZ / wall, 3), "foreign_cores": round(foreign / wall, 3),
        "daemon_rss_max_kb": rss_max, "daemon_hwm_kb": status_kb(dpid, "VmHWM"),
        **w,
    }
    with open(a["--json"], "a") as f:
        f.write(json.dumps(rec) + "\n")
    ac = w["acs"]
    print("%-10s rep %d: %7.1f logins/s  p50 %7.2f ms  p99 %7.2f ms  ok %d  failed %d  unanswered %d  sent %d/%d%s  "
          "daemon %.2f s  pg %.2f s  redis %.2f s  foreign %.2f core"
          % (rec["scenario"], rec["rep"], ac.get("success_per_s", 0), ac.get("p50_ms", 0),
             ac.get("p99_ms", 0), ac.get("success", 0), ac.get("failure", 0), ac.get("unanswered", 0),
             ac.get("posts_sent", 0),
             ac.get("bodies_loaded", 0), "  EXHAUSTED" if ac.get("exhausted_threads") else "",
             rec["daemon_cpu_s"], rec["pg_cpu_s"], rec["redis_cpu_s"], rec["foreign_cores"]))
    for s in w["fail_samples"][:3]:
        print("    failure sample: " + s[:300])
    problems = check(rec)
    for p in problems:
        print("    PROBLEM: " + p)
    return 1 if problems else 0


def check(r):
    p = []
    a = r["acs"]
    if r["exit"] != 0 or r["timed_out"]:
        p.append("wrk exit %s%s" % (r["exit"], " (killed: over time)" if r["timed_out"] else ""))
    if not a:
        p.append("no ACS_RESULT line (see %s)" % r["file"])
        return p
    if a["success"] <= 0:
        p.append("no successful login")
    if a["failure"]:
        p.append("%d failed logins (codes %s)" % (a["failure"], a.get("codes")))
    if a.get("after_exhaustion") or a.get("healthz"):
        p.append("wrk resent on %d broken connection(s) (%d /healthz answers): POSTs may be lost"
                 % (a.get("after_exhaustion", 0), a.get("healthz", 0)))
    if r["sock_errors"]:
        p.append("socket errors %s" % r["sock_errors"])
    return p


def fmt(x, nd=1):
    return "-" if x is None else "%.*f" % (nd, x)


def pick(recs):
    """Reps kept (foreign load <= FOREIGN_MAX when >= 2 remain) and the median one."""
    kept = [r for r in recs if r["foreign_cores"] <= FOREIGN_MAX]
    busy_note = ""
    if len(kept) < 2:
        kept, busy_note = recs, " !busy"
    srt = sorted(kept, key=lambda r: r["acs"]["success_per_s"])
    return kept, srt[(len(srt) - 1) // 2], busy_note


def summary(argv):
    jpath, outdir = argv[0], argv[1]
    mellon_path = argv[2] if len(argv) > 2 else ""
    extra = {}
    if os.path.exists(os.path.join(outdir, "extra.json")):
        extra = json.load(open(os.path.join(outdir, "extra.json")))
    recs = [json.loads(line) for line in open(jpath) if line.strip()]
    problems = ["%s rep %d (%s): %s" % (r["scenario"], r["rep"], r["file"], p)
                for r in recs for p in check(r)]
    mellon = {}
    if mellon_path and os.path.exists(mellon_path):
        for s in json.load(open(mellon_path)).get("scenarios", []):
            mellon[s["id"]] = s
    g = mellon.get("acs_noca")
    g_rate = g["rate_median"] if g else None

    hdr = ("| | scenario | logins/s median (min–max) | p50 ms | p99 ms | server CPU ms/login | "
           "PostgreSQL CPU ms/login | Redis CPU ms/login | RSS max / VmHWM MB | × mellon tuned | target | reps | outcome (median rep) |")
    rows = [hdr, "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    out, verdict = {"scenarios": {}}, []
    for sid, label in (("acs_pkg", "f"), ("acs_noca", "g")):
        s = mellon.get(sid)
        if not s:
            continue
        m = s["median_rep"]
        a = m.get("acs", {})
        fc = [f for f in s.get("foreign_cores", []) if f is not None]
        mbusy = " !busy" if fc and sum(1 for f in fc if f <= FOREIGN_MAX) < 2 else ""
        rows.append("| mellon %s | %s | %s (%s–%s) | %s | %s | %s | – | – | – | %s | – | %d/%d%s | %s × 303+cookie, %s failed |" % (
            label, s["title"].split(") ", 1)[-1], fmt(s["rate_median"]), fmt(min(s["rates"])),
            fmt(max(s["rates"])), fmt(m.get("p50_ms"), 2), fmt(m.get("p99_ms"), 2),
            fmt(s.get("server_cpu_ms_per_req"), 2), fmt(s["rate_median"] / g_rate, 2) if g_rate else "-",
            s["reps_used"], s["reps_total"], mbusy, a.get("success", "?"), a.get("failure", "?")))
    ok_all = True
    for sc in ("returning", "first"):
        rs = [r for r in recs if r["scenario"] == sc]
        if not rs:
            continue
        kept, med, note = pick(rs)
        rates = [r["acs"]["success_per_s"] for r in kept]
        rate = statistics.median(rates)

        def per_login(key):
            v = [r[key] * 1000.0 / r["acs"]["posts_sent"] for r in kept if r["acs"]["posts_sent"]]
            return statistics.median(v) if v else None

        dcpu, pcpu, rcpu = per_login("daemon_cpu_s"), per_login("pg_cpu_s"), per_login("redis_cpu_s")
        rss = max(r["daemon_rss_max_kb"] for r in rs) / 1024.0
        hwm_sc = max(r["daemon_hwm_kb"] for r in rs) / 1024.0
        ratio = rate / g_rate if g_rate else None
        tgt = TARGETS[sc]
        met = ratio is not None and ratio >= tgt
        ok_all &= met
        exh = sum(1 for r in kept if r["acs"]["exhausted_threads"])
        a = med["acs"]
        outcome = "%d × 303+idb_session, %d failed%s" % (a["success"], a["failure"],
                                                         ", bodies ran out in %d rep(s): rate over the posting window" % exh if exh else "")
        rows.append("| idb | %s | **%s** (%s–%s) | %s | %s | %s | %s | %s | %.0f / %.0f | **%s** | ≥ %.1f × | %d/%d%s | %s |" % (
            TITLES[sc], fmt(rate), fmt(min(rates)), fmt(max(rates)), fmt(a["p50_ms"], 2),
            fmt(a["p99_ms"], 2), fmt(dcpu, 2), fmt(pcpu, 2), fmt(rcpu, 3), rss, hwm_sc, fmt(ratio, 2), tgt,
            len(kept), len(rs), note, outcome))
        share = [r["pg_cpu_s"] / (r["daemon_cpu_s"] + r["pg_cpu_s"] + r["redis_cpu_s"])
                 for r in kept if r["daemon_cpu_s"] + r["pg_cpu_s"] + r["redis_cpu_s"] > 0]
        out["scenarios"][sc] = {"rate_median": rate, "rates": rates, "ratio_to_mellon_tuned": ratio,
                                "target_ratio": tgt, "met": met, "daemon_cpu_ms_per_login": dcpu,
                                "pg_cpu_ms_per_login": pcpu, "redis_cpu_ms_per_login": rcpu,
                                "pg_cpu_share": statistics.median(share) if share else None,
                                "rss_max_mb": rss, "p50_ms": a["p50_ms"], "p99_ms": a["p99_ms"],
                                "median_rep": med["rep"], "reps_used": len(kept), "reps_total": len(rs)}
        verdict.append("- %s: %s logins/s = %s × mellon tuned (%s/s) — target ≥ %.1f × → **%s**" % (
            sc, fmt(rate), fmt(ratio, 2), fmt(g_rate), tgt,
            "MET" if met else ("NOT MET" if ratio is not None else "no mellon figure")))
    for sc, v in out["scenarios"].items():
        tot = sum(x or 0 for x in (v["daemon_cpu_ms_per_login"], v["pg_cpu_ms_per_login"], v["redis_cpu_ms_per_login"]))
        v["total_cpu_ms_per_login"] = tot
        verdict.append("- %s: CPU per login, idbridge + PostgreSQL + Redis = %.2f ms%s" % (
            sc, tot, " (mellon tuned, Apache tree: %.2f ms)" % g["server_cpu_ms_per_req"]
            if g and g.get("server_cpu_ms_per_req") else ""))
    hwm = max((r["daemon_hwm_kb"] for r in recs), default=0) / 1024.0
    notes = [
        "- load: `wrk -t%s -c%s -d%ss --timeout 10s --latency`, each body POSTed at most once; "
        "success = 303 with an `idb_session` cookie, anything else is a failure." % (
            extra.get("wrk_threads", "?"), extra.get("conns", "?"), extra.get("duration", "?")),
        "- median rep by rate; p50/p99 from that rep; CPU per login = Δ(utime+stime) / POSTs sent "
        "(read after in-flight POSTs drained), median over kept reps; PostgreSQL = postmaster + backends; "
        "PostgreSQL CPU share of (daemon + PostgreSQL + Redis): %s." % ", ".join(
            "%s %s%%" % (k, fmt(v["pg_cpu_share"] * 100 if v["pg_cpu_share"] is not None else None, 0))
            for k, v in out["scenarios"].items()),
        "- RSS max = highest VmRSS sampled (every 0.2 s) during the scenario's runs; VmHWM = the daemon's "
        "peak RSS since start, read after the scenario's last rep (after all runs: %.0f MB; checkpoints below)." % hwm,
        "- reps with foreign_cores > %.2f (CPU used by other processes) are set aside when ≥ 2 remain; "
        "max foreign load over all runs: %.2f core." % (FOREIGN_MAX, max((r["foreign_cores"] for r in recs), default=0)),
    ]
    if g:
        notes.append("- mellon figures: `%s` (peers harness, same session; server CPU = Apache tree)."
                     % os.path.dirname(mellon_path))
    for k in ("memory", "env", "log_summary", "activity", "users"):
        if extra.get(k):
            notes.append("- %s:\n```\n%s\n```" % (k.replace("_", " "), extra[k]))
    md = ["# SAML ACS benchmark (issue 3)", "", "\n".join(rows), "", "Verdict:", *verdict, "",
          "Notes:", *notes]
    if problems:
        md += ["", "FAILED LOGINS / RUN PROBLEMS:", *("- " + p for p in problems)]
        for r in recs:
            for s in r["fail_samples"][:3]:
                md.append("  - %s rep %d sample: `%s`" % (r["scenario"], r["rep"], s[:300]))
    text = "\n".join(md) + "\n"
    open(os.path.join(outdir, "summary.md"), "w").write(text)
    out.update(problems=problems, targets_met=ok_all, daemon_hwm_mb=hwm, mellon_tuned_rate=g_rate)
    json.dump(out, open(os.path.join(outdir, "summary.json"), "w"), indent=1)
    print(text)
    if problems:
        return 1
    return 0 if ok_all else 10


if __name__ == "__main__":
    c = sys.argv[1]
    if c == "idle":
        idle(float(sys.argv[2]))
    elif c == "run":
        sys.exit(run(sys.argv[2:]))
    elif c == "summary":
        sys.exit(summary(sys.argv[2:]))
    else:
        sys.exit("usage: see the docstring")
