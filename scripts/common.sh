# Shared by scripts/test.sh and scripts/demo.sh (sourced, not run).
#
# PostgreSQL refuses to run as root, so as root we stage the source into a
# build directory owned by the unprivileged "postgres" user, build and test
# there as that user, and install as root.  As any other user, the same
# steps run as that user (with sudo for the install if needed).

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${ZB_BUILD_DIR:-/tmp/zerobus_fdw-build}

if [ "$(id -u)" -eq 0 ]; then
  TEST_USER=${ZB_TEST_USER:-postgres}
else
  TEST_USER=$(id -un)
fi

as_user() {
  if [ "$(id -un)" = "$TEST_USER" ]; then
    "$@"
  else
    runuser -u "$TEST_USER" -- env PATH="$PATH" "$@"
  fi
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

stage_and_build() {
  "$REPO/scripts/deps.sh"
  export PATH="/usr/lib/postgresql/15/bin:$PATH"
  mkdir -p "$BUILD_DIR"
  rsync -a --delete \
    --exclude .git --exclude '*.o' --exclude '*.so' --exclude '*.pb-c.[ch]' \
    --exclude results --exclude tmp_check --exclude 'tmp_check_*' --exclude log \
    --exclude regression.diffs --exclude regression.out --exclude __pycache__ \
    "$REPO/" "$BUILD_DIR/"
  if [ "$(id -u)" -eq 0 ]; then chown -R "$TEST_USER" "$BUILD_DIR"; fi
  as_user make -C "$BUILD_DIR" -s -j2
  if [ -w "$(pg_config --pkglibdir)" ]; then
    make -C "$BUILD_DIR" -s install
  else
    as_root make -C "$BUILD_DIR" -s install PG_CONFIG="$(command -v pg_config)"
  fi
}
