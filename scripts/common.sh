# Shared by scripts/test.sh, scripts/demo.sh, bench/run.sh and
# dashboards/picture.sh (sourced, not run).
#
# PostgreSQL refuses to run as root, so as root we stage the source into a
# build directory owned by the unprivileged "postgres" user and build and
# test there as that user.  The extension is installed into a private copy
# of a PostgreSQL installation inside the build directory (PostgreSQL installs
# are relocatable), so tests never touch the system installation and two
# checkouts can be tested at the same time.
#
# One build directory per PostgreSQL major ($ZB_PG_MAJOR, default 15):
# $BUILD_BASE-pg<major>/src (the staged tree) and .../pg (the private
# installation).  15 is Debian's package; other majors are built once per
# machine from Debian's source package (scripts/pgsource.sh).  ZB_BUILD_DIR
# names the build directory of the one major a caller uses (bench/).

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_BASE=/tmp/zerobus_fdw-build-$(printf '%s' "$REPO" | md5sum | cut -c1-8)
DEBIAN_MAJOR=15     # the major Debian 12 packages (scripts/deps.sh)

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

# Point BUILD_DIR, PG_ROOT, PG_BIN and PG_CONFIG at one major's build.
use_major() {
  ZB_PG_MAJOR=$1
  BUILD_DIR=${ZB_BUILD_DIR:-$BUILD_BASE-pg$ZB_PG_MAJOR}
  PG_ROOT=$BUILD_DIR/pg
  if [ "$ZB_PG_MAJOR" = "$DEBIAN_MAJOR" ]; then
    PG_SYSTEM=/usr/lib/postgresql/$ZB_PG_MAJOR
    PG_BIN=$PG_ROOT$PG_SYSTEM/bin
  else
    PG_SYSTEM=""
    PG_BIN=$PG_ROOT/bin
  fi
  PG_CONFIG=$PG_BIN/pg_config
}
use_major "${ZB_PG_MAJOR:-$DEBIAN_MAJOR}"

# Copy the major's PostgreSQL into $PG_ROOT (refreshed if the system's minor
# release changed), stage the source, build (extra compiler flags in
# $ZB_COPT: scripts/test.sh passes -Werror) and install.
stage_and_build() {
  local prefix fingerprint
  "$REPO/scripts/deps.sh" || return 1
  if [ -n "$PG_SYSTEM" ]; then
    mkdir -p "$PG_ROOT/usr/lib/postgresql" "$PG_ROOT/usr/share/postgresql" "$PG_ROOT/usr/include"
    rsync -a --delete "$PG_SYSTEM" "$PG_ROOT/usr/lib/postgresql/"
    rsync -a --delete "/usr/share/postgresql/$ZB_PG_MAJOR" "$PG_ROOT/usr/share/postgresql/"
    rsync -a --delete /usr/include/postgresql "$PG_ROOT/usr/include/"
  else
    prefix=$("$REPO/scripts/pgsource.sh" "$ZB_PG_MAJOR" | tail -n 1) || return 1
    mkdir -p "$PG_ROOT"
    rsync -a --delete "$prefix/" "$PG_ROOT/"
  fi
  stage_source "$BUILD_DIR/src"
  export PATH="$PG_BIN:$PATH"
  # objects built against another PostgreSQL (a new minor release, other
  # configure options) are not reused: make does not track its headers
  fingerprint=$("$PG_CONFIG" --version --configure --cflags | md5sum | cut -c1-32)
  if [ "$(cat "$BUILD_DIR/src/.pg-fingerprint" 2>/dev/null)" != "$fingerprint" ]; then
    as_user make -C "$BUILD_DIR/src" -s clean PG_CONFIG="$PG_CONFIG" >/dev/null 2>&1 || true
    echo "$fingerprint" > "$BUILD_DIR/src/.pg-fingerprint"
  fi
  as_user make -C "$BUILD_DIR/src" -s -j2 PG_CONFIG="$PG_CONFIG" COPT="${ZB_COPT:-}" &&
    as_user make -C "$BUILD_DIR/src" -s install PG_CONFIG="$PG_CONFIG" COPT="${ZB_COPT:-}"
}

# The repository's files (no build products) into $1, owned by $TEST_USER.
stage_source() {
  mkdir -p "$1"
  rsync -a --delete \
    --exclude .git --exclude '*.o' --exclude '*.bc' --exclude '*.so' --exclude '*.pb-c.[ch]' \
    --exclude results --exclude tmp_check --exclude 'tmp_check_*' --exclude log \
    --exclude regression.diffs --exclude regression.out --exclude __pycache__ \
    --exclude node_modules --exclude .pg-fingerprint \
    "$REPO/" "$1/"
  if [ "$(id -u)" -eq 0 ]; then chown -R "$TEST_USER" "$(dirname "$1")"; fi
}

# Compile (and link) the extension against the server headers of a major
# that is not tested here (scripts/pgheaders.sh), with Debian's PGXS and -Werror.
compile_only() {
  local major=$1 headers dir=$BUILD_BASE-pg$1/src
  "$REPO/scripts/deps.sh" || return 1
  headers=$("$REPO/scripts/pgheaders.sh" "$major" | tail -n 1) || return 1
  stage_source "$dir"
  as_user make -C "$dir" -s clean PG_CONFIG="/usr/lib/postgresql/$DEBIAN_MAJOR/bin/pg_config" &&
    as_user make -C "$dir" -s -j2 COPT=-Werror \
      PG_CONFIG="/usr/lib/postgresql/$DEBIAN_MAJOR/bin/pg_config" includedir_server="$headers" &&
    echo "compiled and linked against $(grep -o 'PG_VERSION_STR "[^"]*' "$headers/pg_config.h" | cut -d'"' -f2 | cut -d' ' -f1-2) headers ($headers)"
}
