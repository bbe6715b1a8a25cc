# SPDX-License-Identifier: AGPL-3.0-or-later
"""POST /api/v1/import and /confirm with a 1,000-row CSV file.

Needs IDBRIDGE_TEST_PG_URL, IDBRIDGE_TEST_REDIS_URL and IDBRIDGE_TEST_BUILD_DIR
(tests/bench/import_1000.sh sets them up). Each run uploads a fresh file of
1,000 new users (every third in two groups, some names with quotes and
commas) into an organisation that already has 10,000 users, then confirms it
(users, memberships, invitations, outbox mails, audit rows in one
transaction). Prints the median and the spread of each over RUNS runs (default
5). Not a pass/fail test: the target is < 1 s each.
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from users_fixtures import Daemon, Database, Org  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def csv_file(run):
    lines = ["email,name,role,groups"]
    roles = ["readonly", "train", "configure", "admin"]
    for i in range(1000):
        groups = "Sales;Engineering" if i % 3 == 0 else ""
        name = '"Person %d, ""the %dth"""' % (i, i) if i % 10 == 0 else "Person %d" % i
        lines.append("bench%d-%04d@corp.example,%s,%s,%s" % (run, i, name, roles[i % 4], groups))
    return ("\r\n".join(lines) + "\r\n").encode()


def main():
    db = Database("idbbench")
    d = Daemon(db).start()  # no SMTP: mails stay in the outbox
    try:
        org = Org(d, "bench", "admin@bench.example")
        for g in ("Sales", "Engineering"):
            assert org.admin.post("groups", {"name": g}).status_code == 201
        db.query("INSERT INTO users (org_id, email, name, role, status, created_via)"
                 " SELECT %s, 'existing' || i || '@corp.example', 'Existing ' || i, 'readonly', 'active', 'admin'"
                 "   FROM generate_series(1, 10000) i", org.id)
        db.query("ANALYZE")
        pre, conf = [], []
        for run in range(RUNS):
            body = csv_file(run)
            t0 = time.perf_counter()
            r = org.admin.call("POST", "import", data=body, headers={"Content-Type": "text/csv"})
            t1 = time.perf_counter()
            assert r.status_code == 201, r.text
            p = r.json()
            assert p["add"] == 1000, (p["add"], p["skip"], p["error"])
            t2 = time.perf_counter()
            r = org.admin.post("import/%s/confirm" % p["id"])
            t3 = time.perf_counter()
            assert r.status_code == 200 and r.json()["add"] == 1000, r.text
            pre.append(t1 - t0)
            conf.append(t3 - t2)
            print("run %d: preview %.3f s, confirm %.3f s" % (run + 1, t1 - t0, t3 - t2))
        outbox = db.value("SELECT count(*) FROM outbox")
        print()
        print("1,000-row import, %d runs, %s" % (RUNS, os.environ.get("IDBRIDGE_TEST_BUILD_DIR", "build")))
        print("  preview  median %.3f s  (min %.3f, max %.3f)" % (statistics.median(pre), min(pre), max(pre)))
        print("  confirm  median %.3f s  (min %.3f, max %.3f)  -- users, memberships, invitations, audit,"
              % (statistics.median(conf), min(conf), max(conf)))
        print("                                              %d outbox mails queued in total" % outbox)
    finally:
        d.stop()
        db.drop()


if __name__ == "__main__":
    main()
