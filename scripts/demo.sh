#!/usr/bin/env bash
# zerobus_fdw demo: the whole loop on this machine, against the local
# Databricks emulator (no workspace needed).
#
#   ./scripts/demo.sh              run for DEMO_SECONDS (default 20), then stop
#   ./scripts/demo.sh --keep       leave PostgreSQL and the emulator running
#
# It installs what is missing, builds the extension, starts the emulator
# and a PostgreSQL server with zerobus_fdw preloaded, checks the connection,
# creates a transactions queue and its stream, inserts traffic, and shows
# the live metrics and what arrived in the emulator's Delta table.
set -euo pipefail
. "$(dirname "$0")/common.sh"

KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1
SECONDS_TO_RUN=${DEMO_SECONDS:-20}
DEMO_DIR=$BUILD_DIR/demo
PORT=${DEMO_PORT:-54329}

stage_and_build
mkdir -p "$DEMO_DIR"
[ "$(id -u)" -eq 0 ] && chown "$TEST_USER" "$DEMO_DIR"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
psql_demo() { as_user "$PG_BIN/psql" -h "$DEMO_DIR" -p "$PORT" -X -v ON_ERROR_STOP=1 -d postgres "$@"; }

cleanup() {
  if [ $KEEP -eq 0 ]; then
    as_user "$PG_BIN/pg_ctl" -D "$DEMO_DIR/data" -m fast stop >/dev/null 2>&1 || true
    [ -n "${EMU_PID:-}" ] && kill "$EMU_PID" 2>/dev/null || true
    [ -n "${LOAD_PID:-}" ] && kill "$LOAD_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

say "Starting the Databricks emulator (ZeroBus, OAuth, SQL Statement API)"
pkill -u "$TEST_USER" -f "zerobus_emulator.py --ports-file $DEMO_DIR/" 2>/dev/null || true
rm -f "$DEMO_DIR/ports.json"
as_user /usr/bin/python3 "$BUILD_DIR/src/emulator/zerobus_emulator.py" \
  --ports-file "$DEMO_DIR/ports.json" --tls-dir "$DEMO_DIR/tls" --db "$DEMO_DIR/lakehouse.db" \
  --log "$DEMO_DIR/emulator.log" >>"$DEMO_DIR/emulator.out" 2>&1 &
EMU_PID=$!
for _ in $(seq 1 100); do [ -s "$DEMO_DIR/ports.json" ] && break; sleep 0.1; done
port() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$DEMO_DIR/ports.json" "$1"; }
GRPCS="https://localhost:$(port grpcs)"
HTTPS="https://localhost:$(port https)"
HTTP="http://127.0.0.1:$(port http)"
echo "ZeroBus endpoint $GRPCS, workspace $HTTPS (TLS, test CA $DEMO_DIR/tls/ca.crt)"
curl -s -X POST "$HTTP/emulator/tables" -H 'Content-Type: application/json' -d '{
  "name": "main.default.financial_transactions",
  "columns": [
    {"name": "txn_id", "type": "STRING", "nullable": false},
    {"name": "sender", "type": "STRING"}, {"name": "receiver", "type": "STRING"},
    {"name": "amount", "type": "DECIMAL(12,2)"}, {"name": "currency", "type": "STRING"},
    {"name": "txn_type", "type": "STRING"}, {"name": "status", "type": "STRING"},
    {"name": "risk_score", "type": "DOUBLE"}, {"name": "ts", "type": "TIMESTAMP"}]}' >/dev/null

say "Starting PostgreSQL 15 with shared_preload_libraries = 'zerobus_fdw' (port $PORT)"
if [ ! -d "$DEMO_DIR/data" ]; then
  as_user "$PG_BIN/initdb" -D "$DEMO_DIR/data" -A trust -U postgres >/dev/null
  cat >> "$DEMO_DIR/data/postgresql.conf" <<EOF
shared_preload_libraries = 'zerobus_fdw'
max_worker_processes = 16
track_commit_timestamp = on
listen_addresses = ''
unix_socket_directories = '$DEMO_DIR'
port = $PORT
EOF
fi
as_user "$PG_BIN/pg_ctl" -D "$DEMO_DIR/data" -l "$DEMO_DIR/postgres.log" -w start >/dev/null

say "CREATE EXTENSION, a server for the workspace, a user mapping, and a connection check"
psql_demo -q <<EOF
DROP EXTENSION IF EXISTS zerobus_fdw CASCADE;
DROP TABLE IF EXISTS tx_queue;
CREATE EXTENSION zerobus_fdw;
CREATE SERVER lakehouse FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (
    workspace_url '$HTTPS', zerobus_endpoint '$GRPCS', ca_file '$DEMO_DIR/tls/ca.crt',
    warehouse_id 'emulator-wh');
CREATE USER MAPPING FOR CURRENT_USER SERVER lakehouse
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
EOF
psql_demo -x -c "SELECT * FROM zerobus.check_connection('lakehouse', 'main.default.financial_transactions')"

say "A queue table and its stream: rows inserted here go to main.default.financial_transactions"
psql_demo -q <<'EOF'
CREATE TABLE tx_queue (txn_id text NOT NULL, sender text, receiver text, amount numeric(12,2),
                       currency text, txn_type text, status text, risk_score double precision,
                       ts timestamptz NOT NULL DEFAULT now());
SELECT zerobus.create_stream('tx', queue => 'tx_queue', server => 'lakehouse',
                             target => 'main.default.financial_transactions');
EOF
psql_demo -c "SELECT name, queue, target, record_format, workers, enabled FROM zerobus.streams"

say "Traffic: an application inserting transactions (about 2,000 rows/s) for $SECONDS_TO_RUN s"
psql_demo -q -v secs="$SECONDS_TO_RUN" >/dev/null 2>&1 <<'EOF' &
SELECT set_config('demo.until', (clock_timestamp() + :'secs' * interval '1 second')::text, false);
DO $$
BEGIN
  WHILE clock_timestamp() < current_setting('demo.until')::timestamptz LOOP
    INSERT INTO tx_queue (txn_id, sender, receiver, amount, currency, txn_type, status, risk_score)
    SELECT md5(random()::text), 'ACC' || (random() * 9999)::int, 'ACC' || (random() * 9999)::int,
           round((1 + random() * 49999)::numeric, 2),
           (ARRAY['USD','EUR','GBP','JPY','CHF'])[1 + (random() * 4)::int],
           (ARRAY['transfer','payment','withdrawal','deposit'])[1 + (random() * 3)::int],
           (ARRAY['completed','completed','completed','pending','failed'])[1 + (random() * 4)::int],
           CASE WHEN random() < 0.05 THEN 0.8 + random() * 0.2 ELSE random() * 0.3 END
      FROM generate_series(1, 200);
    COMMIT;
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
EOF
LOAD_PID=$!

end=$((SECONDS + SECONDS_TO_RUN))
while [ $SECONDS -lt $end ]; do
  sleep 2
  psql_demo -c "SELECT stream, state, rows_acked, rows_in_flight, queue_depth,
                       round(rows_per_sec) AS rows_per_sec,
                       round(ack_latency_p50_ms::numeric, 1) AS ack_p50_ms,
                       round(ack_latency_p99_ms::numeric, 1) AS ack_p99_ms,
                       round(commit_to_ack_p99_ms::numeric, 1) AS commit_to_ack_p99_ms
                  FROM zb_metrics"
done
wait $LOAD_PID 2>/dev/null || true
LOAD_PID=

say "flush: wait until every committed row is durably acknowledged"
psql_demo -c "SELECT zerobus.flush('tx') AS rows_waited_for, (SELECT count(*) FROM tx_queue) AS still_queued"

say "What arrived in the Delta table (the emulator's store)"
curl -s -X POST "$HTTP/emulator/sql" -H 'Content-Type: application/json' \
  -d '{"sql": "SELECT currency, count(*), round(sum(amount), 2) FROM \"main.default.financial_transactions\" GROUP BY currency ORDER BY currency"}' |
  /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print('currency  rows  amount'); [print('%-8s %5d  %s' % tuple(r)) for r in d['rows']]"
psql_demo -x -c "SELECT * FROM zb_metrics"

if [ $KEEP -eq 1 ]; then
  say "Left running. Explore with:"
  echo "  runuser -u $TEST_USER -- $PG_BIN/psql -h $DEMO_DIR -p $PORT postgres"
  echo "  SELECT * FROM zb_metrics \\watch 1"
  echo "Stop with: runuser -u $TEST_USER -- $PG_BIN/pg_ctl -D $DEMO_DIR/data stop; kill $EMU_PID"
fi
