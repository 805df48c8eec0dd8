#!/usr/bin/env bash
# Fetch the server headers of a PostgreSQL major that is only compiled
# against, never run (see README, "PostgreSQL versions"), and print the
# directory to pass as includedir_server (the last line of stdout).
#
#   scripts/pgheaders.sh 17
#
# Debian 13 (trixie) ships postgresql-server-dev-17; its .deb is fetched with
# a private apt source list (the machine's apt configuration is untouched)
# and unpacked, not installed, under $ZB_PG_CACHE/<major>/headers-<version>.
# Later runs reuse it without asking the archive.  No Debian suite served
# here has 16, so 16 is neither compiled nor tested.
set -euo pipefail

major=${1:?usage: pgheaders.sh <major>}
cache=${ZB_PG_CACHE:-/tmp/zerobus_fdw-pg}
log() { echo "pgheaders: $*" >&2; }

case $major in
  17) suite=trixie ;;
  *) log "no Debian suite served here has postgresql-server-dev-$major"; exit 1 ;;
esac

mkdir -p "$cache/$major"
exec 9>"$cache/$major/lock"
flock 9

found=$(ls -1d "$cache/$major"/headers-*/complete 2>/dev/null | sort -V | tail -n 1 || true)
if [ -n "$found" ] && [ "${ZB_PG_REFETCH:-0}" != 1 ]; then
  dir=$(dirname "$found")
  log "PostgreSQL $major headers (cached: $dir)"
  echo "$dir/usr/include/postgresql/$major/server"
  exit 0
fi

d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkdir -p "$d/lists/partial" "$d/archives/partial"
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$uri" ] || uri=http://deb.debian.org/debian
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" > "$d/src.list"
O=(-o Dir::Etc::sourcelist="$d/src.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$d/lists"
   -o Dir::Cache::archives="$d/archives" -o Dir::State::status=/dev/null -o APT::Sandbox::User=root)
log "fetching postgresql-server-dev-$major ($suite) from $uri"
apt-get "${O[@]}" -qq update >&2
(cd "$d" && apt-get "${O[@]}" -qq download "postgresql-server-dev-$major" >&2)
deb=$(ls "$d"/postgresql-server-dev-"$major"_*.deb)
version=$(dpkg-deb -f "$deb" Version)
dir=$cache/$major/headers-$version
rm -rf "$dir"
mkdir -p "$dir"
dpkg-deb -x "$deb" "$dir"
# pg_config.h describes the C library the package was built with: trixie's
# glibc has strlcpy/strlcat (2.38+), this machine's may not.  Say what this
# libc has, or port.h would not declare PostgreSQL's own replacements.
if ! printf '#include <string.h>\nint main(void){char b[2]; return (int) strlcpy(b, "", 2);}\n' |
    gcc -x c -Werror=implicit-function-declaration -o /dev/null - 2>/dev/null; then
  sed -i -e 's/^#define HAVE_DECL_STRLCPY 1/#define HAVE_DECL_STRLCPY 0/' \
         -e 's/^#define HAVE_DECL_STRLCAT 1/#define HAVE_DECL_STRLCAT 0/' \
         -e 's|^#define HAVE_STRLCPY 1|/* #undef HAVE_STRLCPY */|' \
         -e 's|^#define HAVE_STRLCAT 1|/* #undef HAVE_STRLCAT */|' \
         "$dir/usr/include/postgresql/$major/server/pg_config.h"
fi
chmod -R a+rX "$dir"
touch "$dir/complete"
log "PostgreSQL $major headers $version in $dir"
echo "$dir/usr/include/postgresql/$major/server"
