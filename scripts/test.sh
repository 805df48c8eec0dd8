#!/usr/bin/env bash
# zerobus_fdw: install what is missing, build, install, and run every test on
# every tested PostgreSQL major: the emulator's own tests, pg_regress (SQL
# behaviour), TAP (workers, faults), a compile-only build for majors that are
# not run here, and every test/NAME/check.sh.  Prints each runner's summary,
# then one line per suite, and exits non-zero on any failure.
#
#   ./scripts/test.sh                    everything, on PostgreSQL 15 then 18
#   PG_MAJORS=15 ./scripts/test.sh       one major (any of 15 18)
#   ./scripts/test.sh regress            one suite: emulator | regress | tap | compile | NAME
#   PROVE_TESTS='t/001_grpc_client.pl' ./scripts/test.sh tap
#   PG_COMPILE_MAJORS= ./scripts/test.sh skip the compile-only check (default: 17)
#
# The build is warning-free under -Wall -Wextra: -Werror is added here (the
# shipped Makefile leaves it out so that a user's newer compiler cannot break
# the build).  emulator and test/*/check.sh do not depend on the major and run once.
set -uo pipefail
. "$(dirname "$0")/common.sh"

read -r -a majors <<<"${PG_MAJORS:-15 18}"
read -r -a compile_majors <<<"${PG_COMPILE_MAJORS-17}"
export ZB_COPT=-Werror

# test/NAME/check.sh: a check that does not depend on the PostgreSQL major
# (the dashboards' schema check) is suite NAME, run once from the staged tree
# with a work directory of its own in $ZB_<NAME>_WORK.
checks=()
for f in "$REPO"/test/*/check.sh; do
  [ -f "$f" ] && { n=${f%/check.sh}; checks+=("${n##*/}"); }
done

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(emulator regress tap compile "${checks[@]}")
want() { local s; for s in "${suites[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
for s in "${suites[@]}"; do
  case " emulator regress tap compile ${checks[*]} " in
    *" $s "*) ;;
    *) echo "unknown suite $s (emulator regress tap compile${checks[*]:+ ${checks[*]}})"; exit 2 ;;
  esac
done

results=()   # "name<TAB>status<TAB>seconds"
record() { results+=("$1"$'\t'"$2"$'\t'"$3"); }

run_suite() {
  local name=$1 start; shift
  echo
  echo "=== $name ==="
  start=$(date +%s)
  if "$@"; then record "$name" ok $(( $(date +%s) - start ));
  else record "$name" FAILED $(( $(date +%s) - start )); fi
}

if want emulator; then
  use_major "${majors[0]}"
  "$REPO/scripts/deps.sh" || exit 1
  stage_source "$BUILD_DIR/src"
  run_suite emulator as_user bash -c "cd '$BUILD_DIR/src' && /usr/bin/python3 -m unittest discover -s emulator/tests 2>&1 | tail -n 25; exit \${PIPESTATUS[0]}"
fi

for major in "${majors[@]}"; do
  want regress || want tap || break
  use_major "$major"
  echo
  echo "=== PostgreSQL $major: build ($BUILD_DIR) ==="
  start=$(date +%s)
  if ! stage_and_build; then
    record "pg$major build" FAILED $(( $(date +%s) - start ))
    continue
  fi
  record "pg$major build" ok $(( $(date +%s) - start ))
  as_user "$PG_BIN/postgres" --version
  if want regress; then
    # then the temporary instance's log: a crash there fails the suite too
    # (the TAP tests check their own logs: test/perl/ZerobusCrashCheck.pm)
    run_suite "pg$major regress" as_user bash -c "cd '$BUILD_DIR/src' && rm -f log/postmaster.log && { make -s regress PG_CONFIG='$PG_CONFIG' || { cat regression.diffs 2>/dev/null | head -n 300; exit 1; }; } && perl -Itest/perl -mZerobusCrashCheck -e 'exit ZerobusCrashCheck::scan_files_main(@ARGV)' log/postmaster.log && echo 'no crash in the pg_regress server log'"
  fi
  if want tap; then
    run_suite "pg$major tap" as_user bash -c "cd '$BUILD_DIR/src' && make -s tap PG_CONFIG='$PG_CONFIG' PROVE_TESTS='${PROVE_TESTS:-t/*.pl}' || { for f in tmp_check/log/regress_log_*; do echo \"--- \$f\"; tail -n 60 \"\$f\"; done; exit 1; }"
  fi
done

if want compile; then
  for major in "${compile_majors[@]}"; do
    run_suite "pg$major compile" compile_only "$major"
  done
fi

for c in "${checks[@]}"; do
  want "$c" || continue
  use_major "${majors[0]}"
  stage_source "$BUILD_DIR/src"
  work_var=ZB_$(printf '%s' "$c" | tr '[:lower:]-' '[:upper:]_')_WORK
  run_suite "$c" env "$work_var=$BUILD_BASE-check-$c" "$BUILD_DIR/src/test/$c/check.sh"
done

echo
echo "=== summary ==="
passed=0 failed=0
for r in "${results[@]}"; do
  IFS=$'\t' read -r name st secs <<<"$r"
  printf '%-16s %-7s %5s s\n' "$name" "$st" "$secs"
  if [ "$st" = ok ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
{ want regress || want tap; } && echo "PostgreSQL majors tested: ${majors[*]}"
want compile && echo "PostgreSQL majors compiled only: ${compile_majors[*]:-none}"
echo "$passed passed, $failed failed"
if [ $failed -eq 0 ] && [ $passed -gt 0 ]; then
  echo "all test suites passed"
  exit 0
fi
echo "some test suites FAILED (build trees: $BUILD_BASE-pg*/src)"
exit 1
