#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
#
# tests/bench/users_list.sh [USERS]
#
# Seeds USERS (default 1,000,000) users in one organisation of a throw-away
# PostgreSQL cluster, starts idbridge (release build in build/) with a
# throw-away Redis, and prints p50/p95 latency of GET /api/v1/users for each
# filter, plus the query plans. Run from anywhere as root on the dev machine
# (uses deploy/lib.sh like deploy/dev).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$(pwd -P)
# shellcheck source=deploy/lib.sh
. deploy/lib.sh

install_packages
build build
install_traps
make_tmpdir
test_services "$IDB_TMP"
IDBRIDGE_TEST_BUILD_DIR="$ROOT/build" /usr/bin/python3 tests/bench/users_list.py "${1:-1000000}"
