#!/usr/bin/env bash
# Make dashboards/zerobus-metrics.png, the README's picture of the dashboard
# data, from a real run: scripts/demo.sh --keep leaves the emulator and a
# server running; a generator stream ("gen", transactions profile) then runs
# at rising throttle levels, stops, and its queue drains; scripts/plot_metrics.py
# plots the stream's zb_metrics_history.
#
#   ./dashboards/picture.sh              run (about 3 minutes), plot, stop the demo
#   ./dashboards/picture.sh --keep       leave the demo running afterwards
#
# PICTURE_STEPS="30:20 55:20 70:20 85:25" sets the throttle:seconds steps.
set -euo pipefail
. "$(dirname "$0")/../scripts/common.sh"

KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1
STEPS=${PICTURE_STEPS:-"30:20 55:20 70:20 85:25"}
OUT=${PICTURE_OUT:-$REPO/dashboards/zerobus-metrics.png}
DEMO_DIR=$BUILD_DIR/demo
PORT=${DEMO_PORT:-54329}

mkdir -p "$BUILD_DIR"
psql_demo() { as_user "$PG_BIN/psql" -h "$DEMO_DIR" -p "$PORT" -X -q -v ON_ERROR_STOP=1 -d postgres "$@"; }
port() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$DEMO_DIR/ports.json" "$1"; }
stop_demo() {
  if [ $KEEP -eq 0 ] && [ -f "$DEMO_DIR/ports.json" ]; then
    as_user "$PG_BIN/pg_ctl" -D "$DEMO_DIR/data" -m fast stop >/dev/null 2>&1 || true
    local pid
    pid=$(port pid 2>/dev/null) || return 0
    # only the demo's emulator (the pid file may be from an earlier run)
    if grep -qF "$DEMO_DIR/ports.json" "/proc/$pid/cmdline" 2>/dev/null; then kill "$pid"; fi
  fi
}
trap stop_demo EXIT

# demo.sh creates the schema history each run but does not drop it: drop it
# from an earlier run's database first
if [ -f "$DEMO_DIR/data/PG_VERSION" ] && [ -x "$PG_BIN/pg_ctl" ]; then
  as_user "$PG_BIN/pg_ctl" -D "$DEMO_DIR/data" status >/dev/null 2>&1 ||
    as_user "$PG_BIN/pg_ctl" -D "$DEMO_DIR/data" -l "$DEMO_DIR/postgres.log" -w start >/dev/null
  as_user "$PG_BIN/psql" -h "$DEMO_DIR" -p "$PORT" -X -q -d postgres -c "DROP SCHEMA IF EXISTS history CASCADE" >/dev/null
  as_user "$PG_BIN/pg_ctl" -D "$DEMO_DIR/data" -m fast -w stop >/dev/null
fi
echo "starting the demo (log: $BUILD_DIR/picture-demo.log)"
DEMO_SECONDS=${DEMO_SECONDS:-5} "$REPO/scripts/demo.sh" --keep >"$BUILD_DIR/picture-demo.log" 2>&1
export PATH="$PG_BIN:$PATH"

# The Delta table of the transactions profile, in the emulator
columns=$(psql_demo -At -c "SELECT delta_columns FROM zerobus.generator_profiles() WHERE profile = 'transactions'")
json=$(/usr/bin/python3 - "$columns" <<'EOF'
import json, re, sys
cols = []
for c in re.split(r",\s+(?=\w+\s)", sys.argv[1]):
    m = re.match(r"(\w+)\s+(\S+)(\s+NOT NULL)?$", c)
    cols.append({"name": m.group(1), "type": m.group(2), "nullable": not m.group(3)})
print(json.dumps({"name": "main.default.generated_transactions", "columns": cols}))
EOF
)
curl -sf -X POST "http://127.0.0.1:$(port http)/emulator/tables" -H 'Content-Type: application/json' \
  -d "$json" >/dev/null || true    # already there from an earlier run

psql_demo <<'EOF'
SELECT zerobus.drop_stream('gen', if_exists => true);
DROP TABLE IF EXISTS gen_queue;
SELECT zerobus.generator_create_queue('transactions', 'gen_queue');
SELECT zerobus.create_stream('gen', 'gen_queue', 'lakehouse', 'main.default.generated_transactions');
EOF
sleep 3
start=$(date +%s)
first=1
for step in $STEPS; do
  throttle=${step%%:*}; secs=${step##*:}
  if [ $first -eq 1 ]; then
    psql_demo -c "SELECT zerobus.generator_start('gen', 'transactions', throttle => $throttle)" >/dev/null
    first=0
  else
    psql_demo -c "SELECT zerobus.generator_throttle('gen', $throttle)" >/dev/null
  fi
  echo "throttle $throttle for $secs s"
  sleep "$secs"
done
psql_demo -c "SELECT zerobus.generator_stop('gen')" >/dev/null
echo "generator stopped; draining the queue"
psql_demo -c "SELECT zerobus.flush('gen', '5 min')" >/dev/null
sleep 10
psql_demo -c "SELECT stream, rows_acked, rows_generated, round(ack_latency_p50_ms::numeric, 1) AS ack_p50_ms,
                     round(ack_latency_p99_ms::numeric, 1) AS ack_p99_ms FROM zb_metrics WHERE stream = 'gen'"

as_user /usr/bin/python3 "$BUILD_DIR/src/scripts/plot_metrics.py" --psql "$PG_BIN/psql" \
  --dsn "host=$DEMO_DIR port=$PORT dbname=postgres" --stream gen \
  --seconds $(( $(date +%s) - start + 5 )) \
  --title "zerobus_fdw: a transactions generator at rising throttle levels (emulator, TLS, this machine)" \
  -o "$BUILD_DIR/zerobus-metrics.png"
cp "$BUILD_DIR/zerobus-metrics.png" "$OUT"
echo "wrote $OUT"
