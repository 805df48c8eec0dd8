#!/usr/bin/env bash
# zerobus_fdw benchmarks: one command, from a fresh clone, as root or as a user.
#
#   bench/run.sh [quick|full] [scenario ...]
#
#   quick (default)  smaller row counts, 20 s latency run, 60 s memory run: a few minutes
#   full             1M-row drains, 30 s latency run, 10-minute memory run: ~20 minutes
#   scenarios        verify fill drain concurrent latency polling acks150 rss cdc (default: all)
#
# It installs missing Debian packages (scripts/deps.sh), builds and installs the
# extension into a private copy of the PostgreSQL tree (scripts/common.sh) under
# $ZB_BUILD_DIR (default /tmp/zerobus_fdw-bench), creates a temporary cluster
# there (port $ZB_BENCH_PORT, default 55491; unix socket only), starts the
# emulator in sink mode, runs the scenarios, prints a Markdown report and writes
# it to bench/out/results-<date>-<time>.md.  The cluster and the emulators are
# stopped at the end; the build directory is kept (the next run reuses it).
# See bench/README.md for what each scenario measures and how to read it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export ZB_BUILD_DIR=${ZB_BUILD_DIR:-/tmp/zerobus_fdw-bench}
. "$here/../scripts/common.sh"

mode=quick
if [ $# -gt 0 ] && { [ "$1" = quick ] || [ "$1" = full ]; }; then mode=$1; shift; fi

echo "building into $BUILD_DIR ..." >&2
stage_and_build >"$BUILD_DIR.build.log" 2>&1 || { cat "$BUILD_DIR.build.log"; echo "build failed" >&2; exit 1; }

# The driver runs as the caller (root reads every worker's /proc entry);
# PostgreSQL's own programs run as $TEST_USER (see common.sh).
exec /usr/bin/python3 "$here/bench.py" --build-dir "$BUILD_DIR" --port "${ZB_BENCH_PORT:-55491}" \
  --mode "$mode" "$@"
