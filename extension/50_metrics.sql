-- Metrics: live pipeline state from shared memory.

CREATE FUNCTION zerobus.metrics(
    OUT stream text,
    OUT database name,
    OUT state text,
    OUT workers_running integer,
    OUT workers integer,
    OUT rows_sent bigint,
    OUT rows_acked bigint,
    OUT rows_failed bigint,
    OUT rows_dead_lettered bigint,
    OUT rows_in_flight bigint,
    OUT max_in_flight bigint,
    OUT queue_depth bigint,
    OUT bytes_sent bigint,
    OUT bytes_acked bigint,
    OUT requests_sent bigint,
    OUT requests_acked bigint,
    OUT batches bigint,
    OUT streams_opened bigint,
    OUT reconnects bigint,
    OUT rows_per_sec double precision,
    OUT rows_generated bigint,
    OUT generated_per_sec double precision,
    OUT ack_latency_min_ms double precision,
    OUT ack_latency_p50_ms double precision,
    OUT ack_latency_avg_ms double precision,
    OUT ack_latency_p95_ms double precision,
    OUT ack_latency_p99_ms double precision,
    OUT ack_latency_max_ms double precision,
    OUT commit_to_ack_p50_ms double precision,
    OUT commit_to_ack_p99_ms double precision,
    OUT success_rate double precision,
    OUT last_error text,
    OUT last_error_at timestamptz,
    OUT started_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'zerobus_metrics'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW zb_metrics AS
  SELECT *, now() - started_at AS uptime FROM zerobus.metrics();
COMMENT ON VIEW zb_metrics IS
  'One row per stream: state, rows sent/acked/failed/dead-lettered, in flight, queue depth, throughput, ack latency';

REVOKE ALL ON FUNCTION zerobus.metrics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION zerobus.metrics() TO pg_monitor;
GRANT SELECT ON zb_metrics TO pg_monitor;

CREATE FUNCTION zerobus.metrics_history(
    OUT "time" timestamptz,
    OUT stream text,
    OUT database name,
    OUT rows_per_sec double precision,
    OUT generated_per_sec double precision,
    OUT bytes_per_sec double precision,
    OUT dead_letters_per_sec double precision,
    OUT ack_latency_p50_ms double precision,
    OUT ack_latency_p95_ms double precision,
    OUT ack_latency_p99_ms double precision,
    OUT commit_to_ack_p50_ms double precision,
    OUT commit_to_ack_p99_ms double precision,
    OUT queue_depth bigint,
    OUT rows_in_flight bigint,
    OUT errors integer,
    OUT reconnects integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'zerobus_metrics_history'
LANGUAGE C STRICT VOLATILE;

-- Long and narrow, sorted by time: what Grafana's time-series format wants
-- ($__timeFilter(time); the stream column becomes the series label).  ts is
-- the same instant under a shorter name, for queries that prefer it.
CREATE VIEW zb_metrics_history AS
  SELECT *, "time" AS ts FROM zerobus.metrics_history() ORDER BY "time", stream;
COMMENT ON VIEW zb_metrics_history IS
  'Per-second samples of every stream (the last 17 minutes): rates, latency percentiles, queue depth';

CREATE FUNCTION zerobus.reset_metrics(stream text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'zerobus_reset_metrics'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION zerobus.reset_metrics(text) IS
  'Zero the counters, latency histograms and history of one stream of this database, or of all; returns how many';

-- One line per stream for psql's \watch 1: the pipeline at a glance, with a
-- throughput sparkline of the last 30 seconds.
CREATE VIEW zb_dashboard AS
  SELECT m.stream,
         m.state,
         round(m.generated_per_sec)::bigint AS "gen/s",
         round(m.rows_per_sec)::bigint AS "acked/s",
         (SELECT string_agg(substr('▁▂▃▄▅▆▇█',
                  1 + least(7, floor(8 * h.rows_per_sec / nullif(mx.peak, 0)))::int, 1), ''
                  ORDER BY h."time")
            FROM (SELECT "time", rows_per_sec FROM zerobus.metrics_history() x
                   WHERE x.stream = m.stream AND x.database = m.database
                   ORDER BY "time" DESC LIMIT 30) h,
                 (SELECT max(rows_per_sec) AS peak FROM zerobus.metrics_history() y
                   WHERE y.stream = m.stream AND y.database = m.database
                     AND y."time" > now() - interval '30 seconds') mx) AS "last 30 s",
         m.rows_acked AS acked,
         m.queue_depth AS queued,
         m.rows_in_flight AS in_flight,
         round(m.ack_latency_p50_ms::numeric, 1) AS "ack p50 ms",
         round(m.ack_latency_p99_ms::numeric, 1) AS "ack p99 ms",
         round(m.commit_to_ack_p99_ms::numeric, 1) AS "commit→ack p99 ms",
         m.rows_dead_lettered AS dead,
         m.reconnects,
         left(m.last_error, 60) AS last_error
    FROM zerobus.metrics() m
   ORDER BY m.database, m.stream;
COMMENT ON VIEW zb_dashboard IS 'The pipeline at a glance, for \watch 1';

REVOKE ALL ON FUNCTION zerobus.metrics_history() FROM PUBLIC;
REVOKE ALL ON FUNCTION zerobus.reset_metrics(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION zerobus.metrics_history() TO pg_monitor;
GRANT SELECT ON zb_metrics_history, zb_dashboard TO pg_monitor;
