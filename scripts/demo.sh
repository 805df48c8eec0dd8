#!/usr/bin/env bash
# zerobus_fdw demo: the whole loop on this machine, against the local
# Databricks emulator (no workspace needed).
#
#   ./scripts/demo.sh                      the transactions stream for DEMO_SECONDS (default 20), then stop
#   ./scripts/demo.sh --profile sensors    one profile: transactions | sensors | orders | weblogs
#   ./scripts/demo.sh --profile all        all four streams at once
#   ./scripts/demo.sh --keep               leave PostgreSQL and the emulator running
#   ./scripts/demo.sh --stop               stop what an earlier --keep left running
#
# It installs what is missing, builds the extension, starts the emulator
# and a PostgreSQL server with zerobus_fdw preloaded, checks the connection,
# and for each profile creates the Delta table (zerobus.execute_remote), a
# queue table and its stream, runs the built-in generator, shows the live
# metrics, reads the Delta table back through the foreign data wrapper as
# the dashboards do (as their read-only role), and says where each
# dashboard's data is. The weblogs profile gets an incident (a burst of slow
# 503s) for its anomaly panel.
#
# Next to the queue streams it streams an ordinary table's own changes when
# the build has change capture (create_stream takes a source): the orders
# generator runs a shop in public.orders (orders placed, paid, shipped,
# delivered, some cancelled, finished ones deleted), a change-capture stream
# delivers every INSERT, UPDATE and DELETE of it to main.default.orders_changes,
# and the demo rebuilds the table from that change log (what an AUTO CDC
# pipeline does in Databricks, README "AUTO CDC") and compares it with the
# table. Without change capture it says so and goes on without it.
#
# Without --keep, everything it started is stopped when it ends (also on
# Ctrl-C or an error): the server with pg_ctl, the emulator by its process
# group (it runs in its own session, so runuser and the emulator under it go
# together; the group id is in $DEMO_DIR/emulator.pgid).
#
# Against a real Databricks workspace, the same SQL runs with the server's
# workspace_url, zerobus_endpoint and warehouse_id set to yours, a user
# mapping with a service principal's OAuth secret, and the Delta tables
# created in Unity Catalog first (zerobus.generator_profiles() gives their
# columns); see README.md, "Pointing at a real Databricks workspace".
set -euo pipefail
. "$(dirname "$0")/common.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
KEEP=0
STOP=0
PROFILE=transactions
while [ $# -gt 0 ]; do
  case $1 in
    --keep) KEEP=1 ;;
    --stop) STOP=1 ;;
    --profile) PROFILE=${2:-}; shift ;;
    --profile=*) PROFILE=${1#--profile=} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
ALL_PROFILES=(transactions sensors orders weblogs)
case $PROFILE in
  all) PROFILES=("${ALL_PROFILES[@]}") ;;
  transactions|sensors|orders|weblogs) PROFILES=("$PROFILE") ;;
  *) echo "demo.sh: --profile must be one of ${ALL_PROFILES[*]} all" >&2; exit 2 ;;
esac
SECONDS_TO_RUN=${DEMO_SECONDS:-20}
DEMO_DIR=$BUILD_DIR/demo
PORT=${DEMO_PORT:-54329}
PGID_FILE=$DEMO_DIR/emulator.pgid

# Each profile: stream, queue table, Delta table, foreign table, dashboard
declare -A STREAM=([transactions]=tx [sensors]=sensors [orders]=orders [weblogs]=weblogs)
declare -A DELTA=([transactions]=financial_transactions [sensors]=sensor_readings [orders]=orders
                  [weblogs]=web_logs)
declare -A BOARD=([transactions]=zerobus [sensors]=sensors [orders]=orders [weblogs]=weblogs)

# The command prefix that runs a program as $TEST_USER (as_user, as a prefix)
if [ "$(id -un)" = "$TEST_USER" ]; then AS_USER=(); SHOW_AS=; else AS_USER=(runuser -u "$TEST_USER" -- env PATH="$PATH"); SHOW_AS="runuser -u $TEST_USER -- "; fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
psql_demo() { as_user "$PG_BIN/psql" -h "$DEMO_DIR" -p "$PORT" -X -v ON_ERROR_STOP=1 -d postgres "$@"; }
# as the dashboards' role: pg_monitor and SELECT on the history schema
psql_reader() { psql_demo -U grafana_reader "$@"; }
port() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$DEMO_DIR/ports.json" "$1"; }

# Stop an emulator process group, if it is a demo emulator of this DEMO_DIR
stop_emulator_group() {
  local pgid=$1 pid
  [ -n "$pgid" ] || return 0
  # the group's members, checked to be this demo's emulator (a pid file can be stale)
  for pid in $(pgrep -g "$pgid" 2>/dev/null); do
    if grep -qF -- "--ports-file $DEMO_DIR/ports.json" <(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null); then
      kill -TERM -- "-$pgid" 2>/dev/null || true
      for _ in $(seq 1 100); do pgrep -g "$pgid" >/dev/null || break; sleep 0.1; done
      kill -KILL -- "-$pgid" 2>/dev/null || true
      break
    fi
  done
  [ -n "${EMU_JOB:-}" ] && wait "$EMU_JOB" 2>/dev/null || true
  rm -f "$PGID_FILE"
}

stop_demo() {
  if [ -f "$DEMO_DIR/data/PG_VERSION" ] && [ -x "$PG_BIN/pg_ctl" ]; then
    as_user "$PG_BIN/pg_ctl" -D "$DEMO_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  [ -f "$PGID_FILE" ] && stop_emulator_group "$(cat "$PGID_FILE")"
  return 0
}

if [ $STOP -eq 1 ]; then
  stop_demo
  echo "demo stopped"
  exit 0
fi

cleanup() {
  local rc=$?
  if [ $KEEP -eq 0 ] || [ $rc -ne 0 ]; then stop_demo; fi
  return $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stage_and_build
mkdir -p "$DEMO_DIR"
[ "$(id -u)" -eq 0 ] && chown "$TEST_USER" "$DEMO_DIR"
stop_demo    # what an earlier --keep left running

say "Starting the Databricks emulator (ZeroBus, OAuth, SQL Statement API)"
rm -f "$DEMO_DIR/ports.json"
# setsid: its own session and process group, which the clean-up ends as a whole
setsid "${AS_USER[@]}" /usr/bin/python3 "$BUILD_DIR/src/emulator/zerobus_emulator.py" \
  --ports-file "$DEMO_DIR/ports.json" --tls-dir "$DEMO_DIR/tls" --db "$DEMO_DIR/lakehouse.db" \
  --log "$DEMO_DIR/emulator.log" >>"$DEMO_DIR/emulator.out" 2>&1 </dev/null &
EMU_JOB=$!
for _ in $(seq 1 100); do [ -s "$DEMO_DIR/ports.json" ] && break; sleep 0.1; done
[ -s "$DEMO_DIR/ports.json" ] || { echo "the emulator did not start: $DEMO_DIR/emulator.log"; exit 1; }
EMU_PID=$(port pid)
EMU_PGID=$(ps -o pgid= -p "$EMU_PID" | tr -d ' ')
if [ "$EMU_PGID" = "$(ps -o pgid= -p $$ | tr -d ' ')" ]; then
  echo "the emulator is in the demo's own process group (setsid failed)"; exit 1
fi
echo "$EMU_PGID" > "$PGID_FILE"
GRPCS="https://localhost:$(port grpcs)"
HTTPS="https://localhost:$(port https)"
echo "ZeroBus endpoint $GRPCS, workspace $HTTPS (TLS, test CA $DEMO_DIR/tls/ca.crt)"
echo "emulator pid $EMU_PID, process group $EMU_PGID ($PGID_FILE)"

say "Starting PostgreSQL 15 with shared_preload_libraries = 'zerobus_fdw' (port $PORT)"
if [ ! -d "$DEMO_DIR/data" ]; then
  as_user "$PG_BIN/initdb" -D "$DEMO_DIR/data" -A trust -U postgres >/dev/null
  cat >> "$DEMO_DIR/data/postgresql.conf" <<EOF
shared_preload_libraries = 'zerobus_fdw'
max_worker_processes = 16
track_commit_timestamp = on
wal_level = logical
listen_addresses = ''
unix_socket_directories = '$DEMO_DIR'
port = $PORT
EOF
fi
# change capture reads the WAL: a server made by an earlier demo may lack this
grep -q '^wal_level' "$DEMO_DIR/data/postgresql.conf" || echo "wal_level = logical" >> "$DEMO_DIR/data/postgresql.conf"
as_user "$PG_BIN/pg_ctl" -D "$DEMO_DIR/data" -l "$DEMO_DIR/postgres.log" -w start >/dev/null

say "CREATE EXTENSION, a server for the workspace, a user mapping, and a connection check"
psql_demo -q <<EOF
DROP EXTENSION IF EXISTS zerobus_fdw CASCADE;
DROP TABLE IF EXISTS tx_queue, sensors_queue, orders_queue, weblogs_queue, public.orders;
DROP SCHEMA IF EXISTS history CASCADE;
SELECT 'DROP OWNED BY grafana_reader' FROM pg_roles WHERE rolname = 'grafana_reader' \gexec
DROP ROLE IF EXISTS grafana_reader;
CREATE EXTENSION zerobus_fdw;
CREATE SERVER lakehouse FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (
    workspace_url '$HTTPS', zerobus_endpoint '$GRPCS', ca_file '$DEMO_DIR/tls/ca.crt',
    warehouse_id 'emulator-wh');
CREATE USER MAPPING FOR CURRENT_USER SERVER lakehouse
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
EOF
psql_demo -x -c "SELECT * FROM zerobus.check_connection('lakehouse', 'main.default.financial_transactions')"

say "For each profile (${PROFILES[*]}): its Delta table, a queue table with its columns, and a stream"
for p in "${PROFILES[@]}"; do
  # on Databricks you would run the same CREATE TABLE in a SQL editor, or from here
  psql_demo -q -At <<EOF
SELECT 'main.default.${DELTA[$p]} (' || delta_columns || ')' FROM zerobus.generator_profiles() WHERE profile = '$p';
SELECT zerobus.execute_remote('lakehouse', 'DROP TABLE IF EXISTS main.default.${DELTA[$p]}') \\g /dev/null
SELECT zerobus.execute_remote('lakehouse', 'CREATE TABLE main.default.${DELTA[$p]} (' || delta_columns || ') USING DELTA')
  FROM zerobus.generator_profiles() WHERE profile = '$p' \\g /dev/null
SELECT zerobus.generator_create_queue('$p', '${STREAM[$p]}_queue') \\g /dev/null
SELECT zerobus.create_stream('${STREAM[$p]}', queue => '${STREAM[$p]}_queue', server => 'lakehouse',
                             target => 'main.default.${DELTA[$p]}') \\g /dev/null
EOF
done
# Change capture: is it in this build?  (create_stream takes a source)
CDC=$(psql_demo -At -c "SELECT count(*) > 0 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                         WHERE n.nspname = 'zerobus' AND p.proname = 'create_stream' AND 'source' = ANY(p.proargnames)")
if [ "$CDC" = t ]; then
  say "Change capture: public.orders, an ordinary table, and a stream of its own changes"
  # recent minor releases load only the output plugins output_plugin_libraries names
  psql_demo -q -At <<'SQL'
SELECT 'ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, zerobus_fdw'
  FROM pg_settings WHERE name = 'output_plugin_libraries' \gexec
SELECT pg_reload_conf() \g /dev/null
SQL
  psql_demo -q -At <<'SQL'
SELECT zerobus.generator_create_table('orders', 'public.orders') \g /dev/null
SELECT 'main.default.orders_changes (' || changes_delta_columns || ')' FROM zerobus.generator_profiles() WHERE profile = 'orders';
SELECT zerobus.execute_remote('lakehouse', 'DROP TABLE IF EXISTS main.default.orders_changes') \g /dev/null
SELECT zerobus.execute_remote('lakehouse', 'CREATE TABLE main.default.orders_changes (' || changes_delta_columns || ') USING DELTA')
  FROM zerobus.generator_profiles() WHERE profile = 'orders' \g /dev/null
SELECT zerobus.create_stream('orders_changes', source => 'public.orders', server => 'lakehouse',
                             target => 'main.default.orders_changes') \g /dev/null
SQL
  psql_demo -c "SELECT name, source, target, record_format, enabled FROM zerobus.streams WHERE source IS NOT NULL"
else
  say "Change capture: not in this build (zerobus.create_stream has no source parameter); the demo goes on with the queues"
fi

# a stream that had the same name in an earlier run (the server restarted with it, against
# that run's emulator) may still show that run's last error: start from zero
psql_demo -q -At -c "SELECT zerobus.reset_metrics()" >/dev/null
psql_demo -c "SELECT name, queue, target, record_format, workers, enabled FROM zerobus.streams ORDER BY name"

if [ ${#PROFILES[@]} -eq 1 ]; then T1=45; T2=70; else T1=35; T2=50; fi
rate() { psql_demo -At -c "SELECT round(10 * 10 ^ (4 * ($1 - 1) / 99.0))"; }
say "The generators: throttle $T1 (about $(rate $T1) rows/s each), then $T2 (about $(rate $T2) rows/s), for $SECONDS_TO_RUN s"
for p in "${PROFILES[@]}"; do
  psql_demo -q -c "SELECT zerobus.generator_start('${STREAM[$p]}', profile => '$p', throttle => $T1)"
done
# the shop: the orders generator changes public.orders (changes/s at the same throttle)
GEN_STREAMS=()
for p in "${PROFILES[@]}"; do GEN_STREAMS+=("${STREAM[$p]}"); done
if [ "$CDC" = t ]; then
  psql_demo -q -c "SELECT zerobus.generator_start('orders_changes', profile => 'orders', throttle => $T1,
                                                  lifecycle_table => 'public.orders')"
  GEN_STREAMS+=(orders_changes)
fi
end=$((SECONDS + SECONDS_TO_RUN))
half=$((SECONDS + SECONDS_TO_RUN / 2))
incident=$((SECONDS + SECONDS_TO_RUN * 2 / 3))
throttled=0
incident_done=0
while [ $SECONDS -lt $end ]; do
  sleep 2
  if [ $throttled -eq 0 ] && [ $SECONDS -ge $half ]; then
    for st in "${GEN_STREAMS[@]}"; do
      psql_demo -At -c "SELECT '$st: throttle $T2, ' || round(zerobus.generator_throttle('$st', $T2)) || ' rows/s'"
    done
    throttled=1
  fi
  if [ $incident_done -eq 0 ] && [ $SECONDS -ge $incident ] && [[ " ${PROFILES[*]} " == *" weblogs "* ]]; then
    # an incident for the weblogs board's anomaly panel: 1,500 slow 503s in one second
    psql_demo -q -c "INSERT INTO weblogs_queue (client_ip, method, path, status, response_bytes, latency_ms, user_agent)
                     SELECT '10.66.0.' || i % 256, 'GET', '/api/cart', 503, 512, 2000 + random() * 1500, 'curl/7.88.1'
                       FROM generate_series(1, 1500) i"
    echo "weblogs: an incident, 1,500 slow 503 responses"
    incident_done=1
  fi
  psql_demo -c "SELECT * FROM zb_dashboard"
done
for st in "${GEN_STREAMS[@]}"; do psql_demo -q -c "SELECT zerobus.generator_stop('$st')"; done
psql_demo -c "SELECT stream, profile, round(target_rate) AS target_rate, round(actual_rate) AS actual_rate, rows_generated FROM zerobus.generator_status() ORDER BY stream"

say "flush: wait until every committed row is durably acknowledged"
for p in "${PROFILES[@]}"; do
  psql_demo -c "SELECT '${STREAM[$p]}' AS stream, zerobus.flush('${STREAM[$p]}') AS rows_waited_for,
                       (SELECT count(*) FROM ${STREAM[$p]}_queue) AS still_queued"
done
if [ "$CDC" = t ]; then
  if ! psql_demo -c "SELECT 'orders_changes' AS stream, zerobus.flush('orders_changes', '2 min') AS waited_for"; then
    psql_demo -c "SELECT stream, state, last_error FROM zb_metrics WHERE stream = 'orders_changes'"
    say "The change stream did not deliver everything (above); the demo goes on without its part"
    CDC=f
  fi
fi

say "The history: the Delta tables as foreign tables (SQL Statement Execution API), and the dashboards' role"
# the sensors, orders and weblogs dashboards' foreign tables (with an epoch column for time
# buckets), in the schema history
psql_demo -q -v server=lakehouse -v delta_schema=main.default -f "$BUILD_DIR/src/dashboards/history.sql"
if [[ " ${PROFILES[*]} " == *" transactions "* ]]; then
  psql_demo -q -c 'IMPORT FOREIGN SCHEMA "main.default" LIMIT TO (financial_transactions) FROM SERVER lakehouse INTO history'
fi
psql_demo -c '\det history.*'
# the planner learns each table's size (one remote count(*)); only the Delta
# tables of the profiles run exist in the emulator
for p in "${PROFILES[@]}"; do psql_demo -q -c "ANALYZE history.${DELTA[$p]}"; done
psql_demo -q <<'SQL'
CREATE ROLE grafana_reader LOGIN;
GRANT pg_monitor TO grafana_reader;
GRANT USAGE ON SCHEMA history TO grafana_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA history TO grafana_reader;
CREATE USER MAPPING FOR grafana_reader SERVER lakehouse
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
SQL

for p in "${PROFILES[@]}"; do
  say "$p: what dashboards/${BOARD[$p]}.json shows, read as grafana_reader"
  case $p in
    transactions)
      echo "-- aggregates run remotely; only the result rows come back:"
      psql_reader -c "EXPLAIN (VERBOSE, COSTS OFF)
        SELECT currency, count(*), sum(amount) FROM history.financial_transactions
         WHERE created_at > now() - interval '1 hour' GROUP BY currency"
      psql_reader -c "SELECT currency, count(*) AS transactions, sum(amount) AS volume,
                             count(*) FILTER (WHERE is_anomaly) AS anomalies
                        FROM history.financial_transactions
                       WHERE created_at > now() - interval '1 hour'
                       GROUP BY currency ORDER BY volume DESC"
      psql_reader -c "SELECT txn_id, amount, currency, txn_type, status, round(risk_score::numeric, 2) AS risk, created_at
                        FROM history.financial_transactions
                       ORDER BY created_at DESC LIMIT 5 OFFSET 10" ;;
    sensors)
      echo "-- the map's latest positions (5 of them): one remote statement finds the stalest device's"
      echo "-- latest reading, a second fetches only the readings since then"
      psql_reader -c "SELECT * FROM (
                        SELECT DISTINCT ON (device_id) device_id, round(latitude::numeric, 5) AS latitude,
                               round(longitude::numeric, 5) AS longitude, battery_pct, speed_kmh, recorded_at
                          FROM history.sensor_readings
                         WHERE recorded_at >= (SELECT max(recorded_at) FROM history.sensor_readings
                                                WHERE recorded_at > now() - interval '5 minutes'
                                                GROUP BY device_id ORDER BY 1 LIMIT 1)
                         ORDER BY device_id, recorded_at DESC) latest
                       ORDER BY battery_pct LIMIT 5"
      echo "-- the Fleet panel: 5-second buckets of the epoch column, grouped on the warehouse:"
      psql_reader -c "EXPLAIN (VERBOSE, COSTS OFF)
        SELECT epoch - epoch % 5 AS time, avg(battery_pct), avg(speed_kmh), count(DISTINCT device_id)
          FROM history.sensor_readings WHERE recorded_at > now() - interval '15 minutes' GROUP BY 1 ORDER BY 1"
      psql_reader -c "SELECT to_timestamp(epoch - epoch % 5) AS time, round(avg(battery_pct), 1) AS battery,
                             round(avg(speed_kmh)::numeric, 1) AS speed_kmh, count(DISTINCT device_id) AS devices
                        FROM history.sensor_readings WHERE recorded_at > now() - interval '15 minutes'
                       GROUP BY epoch - epoch % 5 ORDER BY 1" ;;
    orders)
      echo "-- Top products: grouping, ordering and LIMIT on the warehouse:"
      psql_reader -c "EXPLAIN (VERBOSE, COSTS OFF)
        SELECT product, sum(total) AS revenue, sum(quantity) AS units FROM history.orders
         WHERE ordered_at > now() - interval '15 minutes' AND status <> 'cancelled'
         GROUP BY product ORDER BY revenue DESC LIMIT 5"
      psql_reader -c "SELECT product, sum(total) AS revenue, sum(quantity) AS units FROM history.orders
                       WHERE ordered_at > now() - interval '15 minutes' AND status <> 'cancelled'
                       GROUP BY product ORDER BY revenue DESC LIMIT 5"
      psql_reader -c "SELECT to_timestamp(epoch - epoch % 10) AS time, count(*) * 6 AS orders_per_min,
                             round(sum(total) * 6) AS revenue_per_min
                        FROM history.orders WHERE ordered_at > now() - interval '15 minutes'
                       GROUP BY epoch - epoch % 10 ORDER BY 1" ;;
    weblogs)
      psql_reader -c "SELECT status_class, count(*) AS requests, round(avg(latency_ms)::numeric, 1) AS mean_ms
                        FROM history.web_logs WHERE logged_at > now() - interval '15 minutes'
                       GROUP BY status_class ORDER BY 1"
      echo "-- the anomaly panels' rule, per second: mean latency or 5xx share above the mean of the"
      echo "-- previous 60 seconds by three standard deviations (per-second sums on the warehouse)"
      psql_reader -c "WITH b AS (SELECT epoch AS t, count(*) AS requests, avg(latency_ms) AS latency,
                                        sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors
                                   FROM history.web_logs WHERE logged_at > now() - interval '15 minutes'
                                  GROUP BY 1 ORDER BY 1),
                           s AS (SELECT t, requests, latency, 100.0 * errors / requests AS err,
                                        avg(latency) OVER w AS lat_mean, stddev_samp(latency) OVER w AS lat_sd,
                                        avg(100.0 * errors / requests) OVER w AS err_mean,
                                        stddev_samp(100.0 * errors / requests) OVER w AS err_sd, count(*) OVER w AS n
                                   FROM b WINDOW w AS (ORDER BY t ROWS BETWEEN 60 PRECEDING AND 1 PRECEDING))
                      SELECT to_timestamp(t) AS second, requests, round(latency::numeric, 1) AS mean_latency_ms,
                             round((lat_mean + 3 * lat_sd)::numeric, 1) AS latency_limit, round(err, 2) AS pct_5xx,
                             round((err_mean + 3 * err_sd)::numeric, 2) AS pct_5xx_limit
                        FROM s WHERE n >= 10 AND (latency > lat_mean + 3 * lat_sd OR err > err_mean + 3 * err_sd)
                       ORDER BY t" ;;
  esac
done
if [ "$CDC" = t ]; then
  say "orders: the table's change log in the lakehouse, and the table rebuilt from it"
  psql_demo -q <<'SQL'
IMPORT FOREIGN SCHEMA "main.default" LIMIT TO (orders_changes) FROM SERVER lakehouse INTO history;
GRANT SELECT ON history.orders_changes TO grafana_reader;
-- What an AUTO CDC pipeline keeps in Databricks (README, "AUTO CDC"): per key the
-- latest change by _seq after the last truncate record (an initial copy starts
-- with one), unless it is a delete.
CREATE OR REPLACE VIEW history.orders_mirror AS
  SELECT order_id, customer_id, product, quantity, unit_price, total, status, region, ordered_at, updated_at
    FROM (SELECT DISTINCT ON (order_id) * FROM history.orders_changes
           WHERE _change_type IN ('insert', 'update_postimage', 'delete')
             AND _seq > coalesce((SELECT max(_seq) FROM history.orders_changes
                                   WHERE _change_type = 'truncate'), -1)
           ORDER BY order_id, _seq DESC) latest
   WHERE _change_type <> 'delete';
GRANT SELECT ON history.orders_mirror TO grafana_reader;
SQL
  echo "-- the change log: one record per INSERT, UPDATE and DELETE, after the truncate record that starts the"
  echo "-- initial copy (counted on the warehouse)"
  psql_reader -c "SELECT _change_type, count(*) AS records, min(_seq) AS first_seq, max(_seq) AS last_seq
                    FROM history.orders_changes GROUP BY 1 ORDER BY 2 DESC"
  echo "-- an order's life, change by change"
  psql_reader -c "SELECT _seq, _change_type, order_id, status, _commit_timestamp
                    FROM history.orders_changes
                   WHERE order_id = (SELECT order_id FROM history.orders_changes
                                      WHERE _change_type = 'delete' ORDER BY _seq LIMIT 1)
                   ORDER BY _seq"
  echo "-- the mirror rebuilt from the change log next to public.orders, by status"
  psql_demo -c "SELECT coalesce(m.status, t.status) AS status, m.orders AS in_the_mirror, t.orders AS in_public_orders
                  FROM (SELECT status, count(*) AS orders FROM history.orders_mirror GROUP BY 1) m
                  FULL JOIN (SELECT status, count(*) AS orders FROM public.orders GROUP BY 1) t USING (status)
                 ORDER BY 1"
  psql_demo -At -c "SELECT CASE WHEN NOT EXISTS (SELECT * FROM history.orders_mirror EXCEPT SELECT order_id, customer_id,
                             product, quantity, unit_price, total, status, region, ordered_at, updated_at FROM public.orders)
                         AND NOT EXISTS (SELECT order_id, customer_id, product, quantity, unit_price, total, status, region,
                             ordered_at, updated_at FROM public.orders EXCEPT SELECT * FROM history.orders_mirror)
                    THEN 'the mirror equals public.orders, row for row'
                    ELSE 'the mirror differs from public.orders' END"
fi
psql_demo -c "SELECT stream, state, rows_acked, rows_failed, rows_dead_lettered, reconnects,
                     round(ack_latency_p50_ms::numeric, 1) AS ack_p50_ms, round(ack_latency_p99_ms::numeric, 1) AS ack_p99_ms
                FROM zb_metrics ORDER BY stream"

say "Where each dashboard's data is"
fmt='%-25s %-16s %-8s %-14s %-37s %s\n'
printf "$fmt" dashboard uid stream "queue table" "Delta table (in the emulator)" "foreign table"
for p in "${PROFILES[@]}"; do
  uid=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['uid'])" "$REPO/dashboards/${BOARD[$p]}.json")
  printf "$fmt" "dashboards/${BOARD[$p]}.json" "$uid" "${STREAM[$p]}" "${STREAM[$p]}_queue" \
    "main.default.${DELTA[$p]}" "history.${DELTA[$p]}"
done
if [ "$CDC" = t ]; then
  printf "$fmt" "(psql: history.orders_mirror)" "-" orders_changes "public.orders (source)" \
    "main.default.orders_changes" "history.orders_changes"
fi
cat <<EOF

Live panels read zb_metrics and zb_metrics_history (the stream); the rest read the foreign
tables, which run their statements on the (emulated) SQL warehouse. Grafana's role is
grafana_reader: pg_monitor, SELECT on schema history, a user mapping. As that role:
  $SHOW_AS$PG_BIN/psql -h $DEMO_DIR -p $PORT -U grafana_reader postgres
Grafana itself: dashboards/README.md (provisioning files, the data source uid zerobus-pg; this
demo's server listens on its Unix socket only).
EOF

if [ $KEEP -eq 1 ]; then
  say "Left running. Explore with:"
  echo "  $SHOW_AS$PG_BIN/psql -h $DEMO_DIR -p $PORT postgres"
  echo "  SELECT * FROM zb_metrics \\watch 1"
  echo "Stop with: $0 --stop"
fi
