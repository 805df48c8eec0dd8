#!/usr/bin/env bash
# Run a command with the Databricks emulator up on free loopback ports.
#
# Exports, for the command (pg_regress reads them with psql's \getenv):
#   ZB_EMU_GRPC   http://127.0.0.1:<port>    ZeroBus over h2c
#   ZB_EMU_GRPCS  https://localhost:<port>   ZeroBus over TLS
#   ZB_EMU_HTTP   http://127.0.0.1:<port>    OAuth + SQL API + control API
#   ZB_EMU_HTTPS  https://localhost:<port>   the same over TLS
#   ZB_EMU_CA, ZB_EMU_WRONG_CA               the test CA, and an unrelated one
# and creates the tables listed in test/emulator_tables.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

# The emulator is Python with Debian's modules (python3 on PATH may be another
# interpreter): say what is missing rather than failing on a traceback.
if ! /usr/bin/python3 -c 'import grpc, google.protobuf, sqlglot' 2>/dev/null; then
  echo "with_emulator.sh: the emulator needs /usr/bin/python3 with grpcio, protobuf and sqlglot" >&2
  echo "  (Debian: apt-get install python3-grpcio python3-protobuf python3-sqlglot, or 'make deps')" >&2
  exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/zb-emu.XXXXXX")

/usr/bin/python3 "$root/emulator/zerobus_emulator.py" \
  --ports-file "$work/ports.json" --tls-dir "$work/tls" --log "$work/emulator.log" \
  ${ZB_EMU_ARGS:-} >>"$work/emulator.stderr" 2>&1 &
emu_pid=$!
cleanup() { kill "$emu_pid" 2>/dev/null || true; wait "$emu_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

for _ in $(seq 1 300); do
  [ -s "$work/ports.json" ] && break
  kill -0 "$emu_pid" 2>/dev/null || { echo "emulator died:"; cat "$work/emulator.log"; exit 1; }
  sleep 0.1
done
[ -s "$work/ports.json" ] || { echo "emulator did not start"; cat "$work/emulator.log"; exit 1; }

port() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/ports.json" "$1"; }
export ZB_EMU_GRPC="http://127.0.0.1:$(port grpc)"
export ZB_EMU_GRPCS="https://localhost:$(port grpcs)"
export ZB_EMU_HTTP="http://127.0.0.1:$(port http)"
export ZB_EMU_HTTPS="https://localhost:$(port https)"
export ZB_EMU_CA="$work/tls/ca.crt"
export ZB_EMU_WRONG_CA="$work/tls/wrong-ca.crt"
export ZB_EMU_LOG="$work/emulator.log"

/usr/bin/python3 - "$here/emulator_tables.json" "$ZB_EMU_HTTP" <<'PY'
import json, sys, urllib.request
tables = json.load(open(sys.argv[1]))
for t in tables:
    req = urllib.request.Request(sys.argv[2] + "/emulator/tables", data=json.dumps(t).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req).read()
PY

"$@"
