#!/usr/bin/env bash
# zerobus_fdw demo: the whole loop on this machine, against the local
# Databricks emulator (no workspace needed).
#
#   ./scripts/demo.sh              run for DEMO_SECONDS (default 20), then stop
#   ./scripts/demo.sh --keep       leave PostgreSQL and the emulator running
#
# It installs what is missing, builds the extension, starts the emulator
# and a PostgreSQL server with zerobus_fdw preloaded, checks the connection,
# creates a transactions queue and its stream, runs the built-in generator,
# shows the live metrics, then reads the Delta table back through the
# foreign data wrapper.
#
# Against a real Databricks workspace, the same SQL runs with the server's
# workspace_url, zerobus_endpoint and warehouse_id set to yours, a user
# mapping with a service principal's OAuth secret, and the Delta table
# created in Unity Catalog first (zerobus.generator_profiles() gives its
# columns); see README.md, "Pointing at a real Databricks workspace".
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
DROP SCHEMA IF EXISTS history CASCADE;
CREATE EXTENSION zerobus_fdw;
CREATE SERVER lakehouse FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (
    workspace_url '$HTTPS', zerobus_endpoint '$GRPCS', ca_file '$DEMO_DIR/tls/ca.crt',
    warehouse_id 'emulator-wh');
CREATE USER MAPPING FOR CURRENT_USER SERVER lakehouse
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
EOF
psql_demo -x -c "SELECT * FROM zerobus.check_connection('lakehouse', 'main.default.financial_transactions')"

say "A queue table from the generator's transactions profile, and its stream"
DELTA_COLUMNS=$(psql_demo -At -c "SELECT delta_columns FROM zerobus.generator_profiles() WHERE profile = 'transactions'")
echo "Delta table main.default.financial_transactions ($DELTA_COLUMNS)"
/usr/bin/python3 - "$HTTP" "$DELTA_COLUMNS" <<'PY'
import json, re, sys, urllib.error, urllib.request
name = "main.default.financial_transactions"
try:  # a fresh table on every run
    urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/emulator/tables/" + name,
                                                  method="DELETE")).read()
except urllib.error.HTTPError:
    pass
cols = []
for part in re.split(r",(?![^(]*\))", sys.argv[2]):
    m = re.match(r"\s*(\w+)\s+(\S+)(\s+NOT NULL)?", part)
    cols.append({"name": m.group(1), "type": m.group(2), "nullable": not m.group(3)})
req = urllib.request.Request(sys.argv[1] + "/emulator/tables", method="POST",
                             data=json.dumps({"name": name, "columns": cols}).encode(),
                             headers={"Content-Type": "application/json"})
urllib.request.urlopen(req).read()
PY
psql_demo -q <<'SQL'
SELECT zerobus.generator_create_queue('transactions', 'tx_queue');
SELECT zerobus.create_stream('tx', queue => 'tx_queue', server => 'lakehouse',
                             target => 'main.default.financial_transactions');
SQL
psql_demo -c "SELECT name, queue, target, record_format, workers, enabled FROM zerobus.streams"

say "The generator: throttle 45 (about 660 rows/s), then 70 (about 6,300 rows/s), for $SECONDS_TO_RUN s"
psql_demo -c "SELECT zerobus.generator_start('tx', profile => 'transactions', throttle => 45)"
end=$((SECONDS + SECONDS_TO_RUN))
half=$((SECONDS + SECONDS_TO_RUN / 2))
throttled=0
while [ $SECONDS -lt $end ]; do
  sleep 2
  if [ $throttled -eq 0 ] && [ $SECONDS -ge $half ]; then
    psql_demo -At -c "SELECT 'throttle 70: ' || round(zerobus.generator_throttle('tx', 70)) || ' rows/s'"
    throttled=1
  fi
  psql_demo -c "SELECT * FROM zb_dashboard"
done
psql_demo -c "SELECT zerobus.generator_stop('tx')"
psql_demo -c "SELECT stream, profile, round(target_rate) AS target_rate, round(actual_rate) AS actual_rate, rows_generated FROM zerobus.generator_status()"

say "flush: wait until every committed row is durably acknowledged"
psql_demo -c "SELECT zerobus.flush('tx') AS rows_waited_for, (SELECT count(*) FROM tx_queue) AS still_queued"

say "The history, read back through the foreign data wrapper (SQL Statement Execution API)"
psql_demo -q <<'SQL'
CREATE SCHEMA history;
IMPORT FOREIGN SCHEMA "main.default" LIMIT TO (financial_transactions)
    FROM SERVER lakehouse INTO history;
SQL
echo "-- aggregates run remotely; only the result rows come back:"
psql_demo -c "EXPLAIN (VERBOSE, COSTS OFF)
  SELECT currency, count(*), sum(amount) FROM history.financial_transactions
   WHERE created_at > now() - interval '1 hour' GROUP BY currency"
psql_demo -c "SELECT currency, count(*) AS transactions, sum(amount) AS volume,
                     count(*) FILTER (WHERE is_anomaly) AS anomalies
                FROM history.financial_transactions
               WHERE created_at > now() - interval '1 hour'
               GROUP BY currency ORDER BY volume DESC"
psql_demo -c "SELECT txn_id, amount, currency, txn_type, status, round(risk_score::numeric, 2) AS risk, created_at
                FROM history.financial_transactions
               ORDER BY created_at DESC LIMIT 5 OFFSET 10"
psql_demo -c "SELECT (SELECT count(*) FROM history.financial_transactions) AS in_delta,
                     (SELECT sum(rows_generated) FROM zerobus.generator_status()) AS generated,
                     (SELECT count(*) FROM tx_queue) AS still_queued"
psql_demo -x -c "SELECT * FROM zb_metrics"

if [ $KEEP -eq 1 ]; then
  say "Left running. Explore with:"
  echo "  runuser -u $TEST_USER -- $PG_BIN/psql -h $DEMO_DIR -p $PORT postgres"
  echo "  SELECT * FROM zb_metrics \\watch 1"
  echo "Stop with: runuser -u $TEST_USER -- $PG_BIN/pg_ctl -D $DEMO_DIR/data stop; kill $EMU_PID"
fi
