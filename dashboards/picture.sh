#!/usr/bin/env bash
# Make the README's pictures of the dashboards' data from real runs, with
# scripts/plot_metrics.py:
#
#   metrics  dashboards/zerobus-metrics.png: scripts/demo.sh --keep leaves the
#            emulator and a server running; a generator stream ("gen",
#            transactions profile) runs at rising throttle levels, stops, and
#            its queue drains; the stream's zb_metrics_history is plotted.
#   boards   dashboards/sensors.png, orders.png, weblogs.png: scripts/demo.sh
#            --profile all --keep streams the four profiles (weblogs with an
#            incident) for PICTURE_SECONDS (default 150); each dashboard's
#            panels' SQL is then run as its role (grafana_reader) and plotted.
#
#   ./dashboards/picture.sh [metrics|boards|all] [--keep]   (default all; about 3 + 4 minutes)
#
# --keep leaves the last demo running afterwards (scripts/demo.sh --stop ends it).
# PICTURE_STEPS="30:20 55:20 70:20 85:25" sets the metrics run's throttle:seconds steps.
set -euo pipefail
. "$(dirname "$0")/../scripts/common.sh"

KEEP=0
WHAT=all
for a in "$@"; do
  case $a in
    --keep) KEEP=1 ;;
    metrics|boards|all) WHAT=$a ;;
    *) echo "picture.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done
STEPS=${PICTURE_STEPS:-"30:20 55:20 70:20 85:25"}
OUT=${PICTURE_OUT:-$REPO/dashboards/zerobus-metrics.png}
DEMO_DIR=$BUILD_DIR/demo
PORT=${DEMO_PORT:-54329}

mkdir -p "$BUILD_DIR"
psql_demo() { as_user "$PG_BIN/psql" -h "$DEMO_DIR" -p "$PORT" -X -q -v ON_ERROR_STOP=1 -d postgres "$@"; }
port() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$DEMO_DIR/ports.json" "$1"; }
stop_demo() { [ $KEEP -eq 1 ] || "$REPO/scripts/demo.sh" --stop >/dev/null; }
trap stop_demo EXIT
export PATH="$PG_BIN:$PATH"

boards() {
  local secs=${PICTURE_SECONDS:-150} start k
  echo "boards: the demo with all four profiles for $secs s (log: $BUILD_DIR/picture-boards-demo.log)"
  start=$(date +%s)
  DEMO_SECONDS=$secs "$REPO/scripts/demo.sh" --profile all --keep >"$BUILD_DIR/picture-boards-demo.log" 2>&1
  for k in sensors orders weblogs; do
    as_user /usr/bin/python3 "$BUILD_DIR/src/scripts/plot_metrics.py" --psql "$PG_BIN/psql" \
      --board "$BUILD_DIR/src/dashboards/$k.json" \
      --dsn "host=$DEMO_DIR port=$PORT dbname=postgres user=grafana_reader" \
      --seconds $(( $(date +%s) - start + 5 )) -o "$BUILD_DIR/$k.png"
    cp "$BUILD_DIR/$k.png" "$REPO/dashboards/$k.png"
    echo "wrote $REPO/dashboards/$k.png"
  done
}

metrics() {
echo "metrics: starting the demo (log: $BUILD_DIR/picture-demo.log)"
DEMO_SECONDS=${DEMO_SECONDS:-5} "$REPO/scripts/demo.sh" --keep >"$BUILD_DIR/picture-demo.log" 2>&1

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
}

case $WHAT in
  metrics) metrics ;;
  boards) boards ;;
  all) boards; metrics ;;
esac
