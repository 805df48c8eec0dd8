#!/usr/bin/env bash
# Build a PostgreSQL major from Debian's source package, once per machine,
# and print the installation prefix (the last line of stdout).
#
#   scripts/pgsource.sh 18
#
# Debian 12 ships PostgreSQL 15 only.  Debian's source package of a newer
# major (suite sid) is fetched with a private apt source list, so the
# machine's own apt configuration is untouched; the build is cached under
# $ZB_PG_CACHE (default /tmp/zerobus_fdw-pg), keyed by the upstream version
# and the tarball's SHA-256, so later runs skip both download and build.
#
#   ZB_PG_CACHE       cache root
#   ZB_PG_SRC_DIR     where the source package is downloaded (default
#                     $ZB_PG_CACHE/<major>/download); a directory already
#                     holding a verified .orig.tar.bz2 and .dsc is reused
#   ZB_PG_REFETCH=1   ask the archive again even if a download is present
#   ZB_PG_CONFIGURE_EXTRA  more configure options (e.g. --enable-cassert
#                     --enable-debug, to look for assertion failures), cached
#                     under a key of their own
set -euo pipefail

major=${1:?usage: pgsource.sh <major>}
here=$(cd "$(dirname "$0")" && pwd)
cache=${ZB_PG_CACHE:-/tmp/zerobus_fdw-pg}
dl=${ZB_PG_SRC_DIR:-$cache/$major/download}
log() { echo "pgsource: $*" >&2; }

# Everything a source build needs; the test tree needs nothing more.
"$here/deps.sh" bison flex gcc make perl bzip2 zlib1g-dev libssl-dev libipc-run-perl ca-certificates dpkg-dev >&2

mkdir -p "$cache/$major" "$dl"
exec 9>"$cache/$major/lock"
flock 9    # one download/build at a time per machine (parallel test runs wait)

# The newest downloaded tarball whose SHA-256 matches its .dsc, if any.
verified_tarball() {
  local dsc tar sum
  for dsc in $(ls -1 "$dl"/postgresql-"$major"_*.dsc 2>/dev/null | sort -V -r); do
    tar=$(awk '/^Checksums-Sha256:/ {s=1; next} /^[^ ]/ {s=0} s && /\.orig\.tar\./ {print $3; exit}' "$dsc")
    sum=$(awk '/^Checksums-Sha256:/ {s=1; next} /^[^ ]/ {s=0} s && /\.orig\.tar\./ {print $1; exit}' "$dsc")
    [ -n "$tar" ] && [ -f "$dl/$tar" ] || continue
    if [ "$(sha256sum "$dl/$tar" | cut -d' ' -f1)" = "$sum" ]; then
      echo "$dl/$tar"; return 0
    fi
    log "$tar does not match $dsc; ignoring it"
  done
  return 1
}

fetch() {
  local d uri O
  d=$(mktemp -d)
  mkdir -p "$d/lists/partial"
  # the Debian archive this machine already uses (deb822 or one-line format)
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $2 !~ /^\[/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || uri=http://deb.debian.org/debian
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri sid main" > "$d/sid.list"
  # (APT::Sandbox::User=root: the private directories are not readable by _apt)
  O=(-o Dir::Etc::sourcelist="$d/sid.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$d/lists"
     -o APT::Sandbox::User=root)
  log "fetching Debian's source package postgresql-$major (sid) from $uri"
  apt-get "${O[@]}" -qq update >&2
  (cd "$dl" && apt-get "${O[@]}" -qq source --download-only "postgresql-$major" >&2)
  rm -rf "$d"
}

tarball=""
if [ "${ZB_PG_REFETCH:-0}" != 1 ]; then tarball=$(verified_tarball || true); fi
if [ -z "$tarball" ]; then
  fetch
  tarball=$(verified_tarball) || { log "no verified postgresql-$major tarball after download"; exit 1; }
fi

version=$(basename "$tarball"); version=${version#postgresql-"$major"_}; version=${version%.orig.tar.*}
sum=$(sha256sum "$tarball" | cut -c1-12)
extra=${ZB_PG_CONFIGURE_EXTRA:-}
# contrib modules the tests use (Debian's 15 ships them in postgresql-contrib):
# pageinspect (t/014 looks at frozen rows), test_decoding (logical decoding
# comparisons).  The list is part of the cache key.
contrib="pageinspect test_decoding"
key=$cache/$major/$version-$sum-$(printf '%s|%s' "$extra" "$contrib" | md5sum | cut -c1-8)
prefix=$key/install

if [ -f "$key/complete" ]; then
  log "PostgreSQL $version (cached: $key)"
  echo "$prefix"
  exit 0
fi

log "building PostgreSQL $version from $(basename "$tarball") into $key (once per machine)"
start=$(date +%s)
rm -rf "$key"
mkdir -p "$key/build"
tar -xjf "$tarball" -C "$key/build" --strip-components=1
(
  cd "$key/build"
  ./configure --prefix="$prefix" --without-icu --without-readline \
              --enable-tap-tests --with-openssl $extra >"$key/configure.log" 2>&1 ||
    { tail -n 40 "$key/configure.log" >&2; exit 1; }
  make -s -j"$(nproc)" >"$key/build.log" 2>&1 || { tail -n 60 "$key/build.log" >&2; exit 1; }
  make -s install >>"$key/build.log" 2>&1 || { tail -n 60 "$key/build.log" >&2; exit 1; }
  for m in $contrib; do
    make -s -C "contrib/$m" install >>"$key/build.log" 2>&1 || { tail -n 60 "$key/build.log" >&2; exit 1; }
  done
)
rm -rf "$key/build"      # the install tree is all the tests use
chmod -R a+rX "$key"
touch "$key/complete"
log "PostgreSQL $version built in $(( $(date +%s) - start )) s"
echo "$prefix"
