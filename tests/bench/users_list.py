# SPDX-License-Identifier: AGPL-3.0-or-later
"""GET /api/v1/users under 1,000,000 users in one organisation.

Needs IDBRIDGE_TEST_PG_URL, IDBRIDGE_TEST_REDIS_URL and IDBRIDGE_TEST_BUILD_DIR
(tests/bench/users_list.sh sets them up). Prints a table of p50/p95 per filter
and which indexes each plan uses (EXPLAIN ANALYZE of the same SQL the daemon
builds). Not a pass/fail test: the target is p95 < 50 ms.
"""

import os
import sys
import time

import requests

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from users_fixtures import Daemon, Database, Org  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "200"))

SEED = """
WITH first(n) AS (SELECT ARRAY['Ada','Alan','Grace','Linus','Ken','Dennis','Barbara','Edsger','Donald','Margaret',
        'John','Mary','James','Patricia','Robert','Jennifer','Michael','Linda','William','Elizabeth',
        'David','Susan','Richard','Jessica','Joseph','Sarah','Thomas','Karen','Charles','Nancy',
        'Chris','Lisa','Daniel','Betty','Matthew','Helen','Anthony','Sandra','Mark','Donna',
        'Paul','Carol','Steven','Ruth','Andrew','Sharon','Kenneth','Michelle','Joshua','Laura']),
     last(n) AS (SELECT ARRAY['Smith','Johnson','Williams','Brown','Jones','Garcia','Miller','Davis','Rodriguez',
        'Martinez','Hernandez','Lopez','Gonzalez','Wilson','Anderson','Thomas','Taylor','Moore','Jackson','Martin',
        'Lee','Perez','Thompson','White','Harris','Sanchez','Clark','Ramirez','Lewis','Robinson','Walker','Young',
        'Allen','King','Wright','Scott','Torres','Nguyen','Hill','Flores','Green','Adams','Nelson','Baker','Hall',
        'Rivera','Campbell','Mitchell','Carter','Roberts','Lovelace','Hopper','Torvalds','Thompson','Ritchie',
        'Liskov','Dijkstra','Knuth','Hamilton','Berners-Lee','Cerf','Kahn','Postel','Stallman','Wall','Rossum',
        'Gosling','Stroustrup','Kernighan','Pike','Thompson','Hejlsberg','Matsumoto','Lerdorf','Eich','Wozniak',
        'Jobs','Gates','Allen','Page','Brin','Bezos','Musk','Zuckerberg','Dorsey','Hastings','Nadella','Pichai',
        'Cook','Su','Huang','Kim','Park','Choi','Tanaka','Suzuki','Sato','Watanabe','Ito','Yamamoto'])
INSERT INTO users (org_id, email, name, role, status, created_via, last_login_at, created_at)
SELECT %(org)s::uuid,
       lower(f.n[1 + h.f]) || '.' || lower(l.n[1 + h.l]) || '.' || i || '@corp' || (i %% 40) || '.example',
       f.n[1 + h.f] || ' ' || l.n[1 + h.l],
       (CASE WHEN h.r < 2 THEN 'admin' WHEN h.r < 12 THEN 'configure' WHEN h.r < 35 THEN 'train'
             ELSE 'readonly' END)::user_role,
       (CASE WHEN h.s < 25 THEN 'pending' WHEN h.s < 65 THEN 'inactive' WHEN h.s < 70 THEN 'deleted'
             ELSE 'active' END)::user_status,
       'import',
       CASE WHEN h.s < 25 THEN NULL ELSE now() - h.ll * interval '1 second' END,
       now() - interval '400 days' + (i * interval '30 seconds')
  FROM generate_series(1, %(n)s) i, first f, last l,
       -- independent pseudo-random attributes (no correlation with the e-mail order)
       LATERAL (SELECT abs(hashint4(i)) %% 50 AS f, abs(hashint4(i * 3 + 1)) %% 100 AS l,
                       abs(hashint4(i * 5 + 2)) %% 100 AS r, abs(hashint4(i * 7 + 3)) %% 1000 AS s,
                       abs(hashint4(i * 11 + 4)) %% 31536000 AS ll) h
"""


def pct(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


def main():
    keep = os.environ.get("BENCH_DB")  # reuse (and keep) a seeded database
    db = Database("idb_bench", name=keep)
    d = Daemon(db).start()
    try:
        seeded = db.value("SELECT count(*) FROM organizations WHERE slug = 'bench'") if keep else 0
        org = Org(d, "bench", "admin@bench.example") if not seeded else None
        if seeded:
            org = Org.__new__(Org)
            org.d, org.slug = d, "bench"
            org.id = db.value("SELECT id::text FROM organizations WHERE slug = 'bench'")
        key = org.api_key("admin@bench.example", "bench")
        t0 = time.time()
        print("seeding %d users ..." % N if not seeded else "reusing %s" % keep, flush=True)
        with db.conn().cursor() as c:
            if seeded:
                c.execute("SELECT 1")
            else:
                seed(c, org.id)
        counts = db.one("SELECT count(*), (SELECT count(*) FROM memberships) FROM users WHERE org_id = %s", org.id)
        print("%d users, %d memberships (%.0f s)" % (counts[0], counts[1], time.time() - t0), flush=True)
        run(d, db, org, key, counts)
    finally:
        rc = d.stop()
        if rc != 0:
            print("daemon exit status %s" % rc)
        if not keep:
            db.drop()


def seed(c, org_id):
    c.execute(SEED, {"org": org_id, "n": N})
    c.execute("INSERT INTO groups (org_id, name, permissions) SELECT %s, 'Team ' || g, '{agents.use}'"
              " FROM generate_series(1, 19) g", (org_id,))
    c.execute("INSERT INTO groups (org_id, name) VALUES (%s, 'Tiny')", (org_id,))
    # a third of the users in one of 19 teams, ~50 users in Tiny
    c.execute("""INSERT INTO memberships (org_id, user_id, group_id, source)
                 SELECT u.org_id, u.id, g.id, 'manual' FROM users u
                   JOIN groups g ON g.org_id = u.org_id
                                AND g.name = 'Team ' || (1 + abs(hashtext(u.email)) %% 19)
                  WHERE u.org_id = %s AND abs(hashtext(u.email || 'm')) %% 3 = 0""", (org_id,))
    c.execute("""INSERT INTO memberships (org_id, user_id, group_id, source)
                 SELECT u.org_id, u.id, g.id, 'manual' FROM users u JOIN groups g ON g.name = 'Tiny'
                  WHERE u.org_id = %s AND abs(hashtext(u.email || 't')) %% 20000 = 0""", (org_id,))
    # The steady state autovacuum reaches: every page all-visible, so that the
    # list's walks are index-only. A VACUUM that runs while another snapshot
    # older than the seed is open (autovacuum's own ANALYZE of these fresh
    # tables) cannot mark the pages, so vacuum until relallvisible says so.
    for table in ("users", "user_search", "user_logins", "memberships", "groups"):
        for attempt in range(10):
            c.execute("VACUUM ANALYZE " + table)
            c.execute("SELECT relallvisible, relpages FROM pg_class WHERE relname = %s", (table,))
            visible, pages = c.fetchone()
            if visible >= pages:
                break
            time.sleep(1)
        print("  %s: %d of %d pages all-visible" % (table, visible, pages), flush=True)


def run(d, db, org, key, counts):
    team = db.value("SELECT id::text FROM groups WHERE name = 'Team 7' AND org_id = %s", org.id)

    def iso(days):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - days * 86400))

    s = requests.Session()
    s.headers["Authorization"] = "Bearer " + key
    base = d.url + "/api/v1/users"
    # a cursor in the middle of the alphabet for deep pages
    mid = s.get(base, params={"q": "margaret.lovelace", "limit": 1}).json()["items"]
    scenarios = [
        ("no filter (first page)", {}),
        ("role=configure", {"role": "configure"}),
        ("role=admin", {"role": "admin"}),
        ("status=pending", {"status": "pending"}),
        ("status=deleted", {"status": "deleted"}),
        ("group=Team 7 (by id)", {"group": team}),
        ("group=Tiny (by name, ~50 members)", {"group": "Tiny"}),
        ("last_login_after=30 days ago", {"last_login_after": iso(30)}),
        ("last_login 2-3 days ago", {"last_login_after": iso(3), "last_login_before": iso(2)}),
        ("q=smith (common)", {"q": "smith"}),
        ("q=hopper (name part)", {"q": "hopper"}),
        ("q=.123456@ (one user)", {"q": ".123456@"}),
        ("q=margaret.lovelace (~200, clustered)", {"q": "margaret.lovelace"}),
        ("q=margaret (first name, 2%)", {"q": "margaret"}),
        ("q=corp7.example (domain)", {"q": "corp7.example"}),
        ("q=qz (2 characters, no match)", {"q": "qz"}),
        ("role+group+last_login", {"role": "train", "group": team, "last_login_after": iso(90)}),
        ("limit=200", {"limit": "200"}),
    ]
    rows = []
    for title, params in scenarios:
        lat = []
        n_items = None
        for _ in range(REQUESTS):
            t = time.perf_counter()
            r = s.get(base, params=params)
            lat.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
            n_items = len(r.json()["items"])
        rows.append((title, pct(lat, 50), pct(lat, 95), n_items))
        print("  %-36s p50 %6.1f ms  p95 %6.1f ms  (%d items)" % rows[-1], flush=True)

    # pagination: walk forward with next_cursor, and from a deep cursor
    lat = []
    cursor = None
    for _ in range(REQUESTS):
        params = {"cursor": cursor} if cursor else {}
        t = time.perf_counter()
        r = s.get(base, params=params)
        lat.append((time.perf_counter() - t) * 1000)
        cursor = r.json()["next_cursor"]
    rows.append(("cursor walk (200 consecutive pages)", pct(lat, 50), pct(lat, 95), 50))
    print("  %-36s p50 %6.1f ms  p95 %6.1f ms  (%d items)" % rows[-1], flush=True)
    if mid:
        deep = s.get(base, params={"q": "margaret.lovelace", "limit": 1}).json()
        lat = []
        c0 = deep["next_cursor"]
        for _ in range(REQUESTS):
            t = time.perf_counter()
            r = s.get(base, params={"cursor": c0})
            lat.append((time.perf_counter() - t) * 1000)
        rows.append(("deep cursor (mid-alphabet)", pct(lat, 50), pct(lat, 95), len(r.json()["items"])))
        print("  %-36s p50 %6.1f ms  p95 %6.1f ms  (%d items)" % rows[-1], flush=True)

    print()
    print("GET /api/v1/users, %d users in one org, %d requests per row, API key, keep-alive" % (counts[0],
                                                                                          REQUESTS))
    print("| %-38s | %8s | %8s |" % ("filter", "p50 ms", "p95 ms"))
    print("|%s|%s|%s|" % ("-" * 40, "-" * 10, "-" * 10))
    for title, p50, p95, _ in rows:
        print("| %-38s | %8.1f | %8.1f |%s" % (title, p50, p95, "" if p95 < 50 else "  <-- over 50 ms"))

    explain(db, org.id, team, iso)


def explain(db, org_id, team, iso):
    tiny = db.value("SELECT id::text FROM groups WHERE name = 'Tiny' AND org_id = %s", org_id)
    """EXPLAIN ANALYZE of the page query's main forms (provisioning/admin_users.c)
    to show which indexes serve each filter. Filters walk user_search's
    covering index in list order. A small group or last-login set is
    materialised from its own index instead (not shown). A text search walks
    at most 10,000 rows and, if the page is still short, takes the trigram
    candidates sorted: both halves are shown for q=margaret."""
    inner = ("SELECT s.user_id, s.email_lc FROM user_search s WHERE s.org_id = %(org)s::uuid {where}"
             " ORDER BY s.email_lc, s.user_id LIMIT 51")
    walk = ("SELECT s.user_id FROM (SELECT s.* FROM user_search s WHERE s.org_id = %(org)s::uuid"
            " ORDER BY s.email_lc, s.user_id LIMIT 10000) s WHERE {where} ORDER BY s.email_lc, s.user_id LIMIT 51")
    trgm = ("SELECT s.user_id, s.email_lc FROM user_search s WHERE s.org_id = %(org)s::uuid"
            " AND (s.email_lc || E'\\n' || s.name_lc) LIKE {pat} AND {where} ORDER BY s.email_lc || '', s.user_id"
            " LIMIT 51")
    nd = "s.status <> 'deleted'"
    cases = [
        ("no filter", inner, "AND " + nd, {}),
        ("role=admin", inner, "AND %s AND s.role = 'admin'" % nd, {}),
        ("status=deleted", inner, "AND s.status = 'deleted'", {}),
        ("group=Team 7", inner, "AND %s AND EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = s.user_id"
         " AND m.group_id = %%(team)s::uuid)" % nd, {"team": team}),
        ("role+group+last_login", inner, "AND %s AND s.role = 'train' AND EXISTS (SELECT 1 FROM user_logins l"
         " WHERE l.user_id = s.user_id AND l.last_login_at >= %%(a)s::timestamptz)"
         " AND EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = s.user_id AND m.group_id = %%(team)s::uuid)"
         % nd, {"team": team, "a": iso(90)}),
        ("q=hopper (walk)", walk, nd + " AND (s.email_lc LIKE '%%hopper%%' OR s.name_lc LIKE '%%hopper%%')", {}),
        ("q=margaret (walk, short)", walk,
         nd + " AND (s.email_lc LIKE '%%margaret%%' OR s.name_lc LIKE '%%margaret%%')", {}),
        ("q=margaret (trigram)", trgm.replace("{pat}", "'%%margaret%%'"), nd, {}),
    ]
    print("\nPlans (EXPLAIN ANALYZE of the page query's forms; small group/last-login sets are driven"
          " from their own index instead):")
    for title, sql, where, params in cases:
        params = dict(params, org=org_id)
        with db.conn().cursor() as c:
            c.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + sql.format(where=where), params)
            plan = [r[0] for r in c.fetchall()]
        nodes = [ln.strip() for ln in plan if "Scan" in ln or "Heap Fetches" in ln or "Execution Time" in ln]
        print("  %s:" % title)
        for ln in nodes:
            print("      " + ln)


if __name__ == "__main__":
    main()
