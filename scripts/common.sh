# Shared by scripts/test.sh and scripts/bench (sourced, not run).
#
# PostgreSQL refuses to run as root, so as root we stage the source into a
# build directory owned by the unprivileged "postgres" user and build and
# test there as that user.  The extension is installed into a private copy
# of the PostgreSQL 15 tree inside the build directory (PostgreSQL installs
# are relocatable), so tests never touch the system installation and two
# checkouts can be tested at the same time.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${ZB_BUILD_DIR:-/tmp/zerobus_fdw-build-$(printf '%s' "$REPO" | md5sum | cut -c1-8)}
PG_SYSTEM=/usr/lib/postgresql/15
PG_ROOT=$BUILD_DIR/pg
PG_BIN=$PG_ROOT$PG_SYSTEM/bin
PG_CONFIG=$PG_BIN/pg_config

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

stage_and_build() {
  "$REPO/scripts/deps.sh"
  mkdir -p "$BUILD_DIR/src" "$PG_ROOT/usr/lib/postgresql" "$PG_ROOT/usr/share/postgresql" "$PG_ROOT/usr/include"
  # private PostgreSQL tree (refreshed if the system's minor release changed)
  rsync -a "$PG_SYSTEM" "$PG_ROOT/usr/lib/postgresql/"
  rsync -a /usr/share/postgresql/15 "$PG_ROOT/usr/share/postgresql/"
  rsync -a /usr/include/postgresql "$PG_ROOT/usr/include/"
  rsync -a --delete \
    --exclude .git --exclude '*.o' --exclude '*.so' --exclude '*.pb-c.[ch]' \
    --exclude results --exclude tmp_check --exclude 'tmp_check_*' --exclude log \
    --exclude regression.diffs --exclude regression.out --exclude __pycache__ \
    "$REPO/" "$BUILD_DIR/src/"
  if [ "$(id -u)" -eq 0 ]; then chown -R "$TEST_USER" "$BUILD_DIR"; fi
  export PATH="$PG_BIN:$PATH"
  as_user make -C "$BUILD_DIR/src" -s -j2 PG_CONFIG="$PG_CONFIG" &&
    as_user make -C "$BUILD_DIR/src" -s install PG_CONFIG="$PG_CONFIG"
}
