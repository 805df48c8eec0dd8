#!/usr/bin/env bash
# zerobus_fdw: install what is missing, build, install, and run every test:
# the emulator's own tests, pg_regress (SQL behaviour), and TAP (workers,
# faults).  Prints each runner's summary and exits non-zero on any failure.
#
#   ./scripts/test.sh            everything
#   ./scripts/test.sh regress    one suite: emulator | regress | tap | dashboards
#   PROVE_TESTS='t/001_grpc.pl' ./scripts/test.sh tap
set -uo pipefail
. "$(dirname "$0")/common.sh"

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(emulator regress tap dashboards)

stage_and_build || { echo "build failed"; exit 1; }

declare -A status
run_suite() {
  local name=$1; shift
  echo
  echo "=== $name ==="
  if as_user "$@"; then status[$name]=ok; else status[$name]=FAILED; fi
}

for s in "${suites[@]}"; do
  case $s in
    emulator)
      run_suite emulator bash -c "cd '$BUILD_DIR/src' && /usr/bin/python3 -m unittest discover -s emulator/tests 2>&1 | tail -n 25; exit \${PIPESTATUS[0]}" ;;
    regress)
      # then the temporary instance's log: a crash there fails the suite too
      # (the TAP tests check their own logs: test/perl/ZerobusCrashCheck.pm)
      run_suite regress bash -c "cd '$BUILD_DIR/src' && rm -f log/postmaster.log && { make -s regress PG_CONFIG='$PG_CONFIG' || { cat regression.diffs 2>/dev/null | head -n 300; exit 1; }; } && perl -Itest/perl -mZerobusCrashCheck -e 'exit ZerobusCrashCheck::scan_files_main(@ARGV)' log/postmaster.log && echo 'no crash in the pg_regress server log'" ;;
    tap)
      run_suite tap bash -c "cd '$BUILD_DIR/src' && make -s tap PG_CONFIG='$PG_CONFIG' PROVE_TESTS='${PROVE_TESTS:-t/*.pl}' || { for f in tmp_check/log/regress_log_*; do echo \"--- \$f\"; tail -n 60 \"\$f\"; done; exit 1; }" ;;
    dashboards)
      # Grafana's schema check of dashboards/*.json (test/dashboards/check.sh: npm packages into the build directory)
      command -v npm >/dev/null || { [ "$(id -u)" -eq 0 ] && apt-get install -y -qq nodejs npm >/dev/null; }
      run_suite dashboards env ZB_DASHBOARDS_WORK="$BUILD_DIR/dashboards-check" "$BUILD_DIR/src/test/dashboards/check.sh" ;;
    *) echo "unknown suite $s"; exit 2 ;;
  esac
done

echo
echo "=== summary ==="
rc=0
for s in "${suites[@]}"; do
  printf '%-10s %s\n' "$s" "${status[$s]}"
  [ "${status[$s]}" = ok ] || rc=1
done
[ $rc -eq 0 ] && echo "all test suites passed" || echo "some test suites FAILED (build tree: $BUILD_DIR/src)"
exit $rc
