#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
#
# tests/bench/import_1000.sh [RUNS]
#
# Times a 1,000-row CSV import (preview, then confirm with its outbox mails)
# against the release build in build/, with a throw-away PostgreSQL and
# Redis; prints the median of RUNS runs (default 5). Run from anywhere as
# root on the dev machine (uses deploy/lib.sh like deploy/dev).
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
IDBRIDGE_TEST_BUILD_DIR="$ROOT/build" /usr/bin/python3 tests/bench/import_1000.py "${1:-5}"
