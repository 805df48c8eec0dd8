#!/usr/bin/env bash
# Install the Debian packages that zerobus_fdw's build, tests and demo need,
# when any is missing.  Needs root (or sudo) only when something is missing.
#
#   scripts/deps.sh              the packages below
#   scripts/deps.sh bison flex   only the packages named (scripts/pgsource.sh)
set -euo pipefail

PACKAGES=(
  postgresql-15 postgresql-server-dev-15 postgresql-contrib
  libcurl4-openssl-dev libssl-dev libprotobuf-c-dev protobuf-c-compiler
  python3-grpcio python3-protobuf python3-sqlglot python3-psycopg2
  libipc-run-perl openssl curl make gcc rsync
  python3-matplotlib
)
# Node.js and npm for the dashboards' schema check (test/dashboards): Debian's,
# unless the machine already has a node and npm of its own on PATH.
if [ $# -eq 0 ] && { ! command -v node >/dev/null || ! command -v npm >/dev/null; }; then
  PACKAGES+=(nodejs npm)
fi
[ $# -gt 0 ] && PACKAGES=("$@")

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "deps: missing packages and not root: ${missing[*]}" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
