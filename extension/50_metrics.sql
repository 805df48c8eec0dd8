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
    OUT started_at timestamptz,
    OUT slot_lag_bytes bigint,
    OUT slot_status text,
    OUT oldest_unacked_age_ms double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'zerobus_metrics'
LANGUAGE C STRICT VOLATILE;

-- The views of this file bind every function and operator to pg_catalog's
-- (docs/DESIGN.md, "Security model"): whatever search_path the extension is
-- installed under, no user's object can be captured into them.
--
-- They are created in the extension's schema (@extschema@: the first schema
-- of search_path at CREATE EXTENSION, or the one its SCHEMA clause names),
-- not in zerobus, so that SELECT * FROM zb_metrics works with a default
-- search_path (README, "Metrics").  Everything else is in zerobus.
CREATE VIEW @extschema@.zb_metrics AS
  SELECT m.*, pg_catalog.now() OPERATOR(pg_catalog.-) m.started_at AS uptime
    FROM zerobus.metrics() m;
COMMENT ON VIEW @extschema@.zb_metrics IS
  'One row per stream: state, rows sent/acked/failed/dead-lettered, in flight, queue depth, throughput, ack latency, change capture''s slot lag';

REVOKE ALL ON FUNCTION zerobus.metrics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION zerobus.metrics() TO pg_monitor;
GRANT SELECT ON @extschema@.zb_metrics TO pg_monitor;

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
CREATE VIEW @extschema@.zb_metrics_history AS
  SELECT h.*, h."time" AS ts FROM zerobus.metrics_history() h ORDER BY h."time", h.stream;
COMMENT ON VIEW @extschema@.zb_metrics_history IS
  'Per-second samples of every stream (the last 17 minutes): rates, latency percentiles, queue depth';

CREATE FUNCTION zerobus.reset_metrics(stream text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'zerobus_reset_metrics'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION zerobus.reset_metrics(text) IS
  'Zero the counters, latency histograms and history of one stream of this database, or of all; returns how many';

-- One line per stream for psql's \watch 1: the pipeline at a glance, with a
-- throughput sparkline of the last 30 seconds.
CREATE VIEW @extschema@.zb_dashboard AS
  SELECT m.stream,
         m.state,
         pg_catalog.round(m.generated_per_sec)::pg_catalog.int8 AS "gen/s",
         pg_catalog.round(m.rows_per_sec)::pg_catalog.int8 AS "acked/s",
         (SELECT pg_catalog.string_agg(pg_catalog.substr('▁▂▃▄▅▆▇█',
                  1 OPERATOR(pg_catalog.+) LEAST(7, pg_catalog.floor(
                      (8::pg_catalog.float8 OPERATOR(pg_catalog.*) h.rows_per_sec)
                      OPERATOR(pg_catalog./) NULLIF(mx.peak, 0::pg_catalog.float8)))::pg_catalog.int4, 1), ''
                  ORDER BY h."time")
            FROM (SELECT x."time", x.rows_per_sec FROM zerobus.metrics_history() x
                   WHERE x.stream OPERATOR(pg_catalog.=) m.stream
                     AND x.database OPERATOR(pg_catalog.=) m.database
                   ORDER BY x."time" DESC LIMIT 30) h,
                 (SELECT pg_catalog.max(y.rows_per_sec) AS peak FROM zerobus.metrics_history() y
                   WHERE y.stream OPERATOR(pg_catalog.=) m.stream
                     AND y.database OPERATOR(pg_catalog.=) m.database
                     AND y."time" OPERATOR(pg_catalog.>)
                         (pg_catalog.now() OPERATOR(pg_catalog.-) '30 seconds'::pg_catalog.interval)) mx) AS "last 30 s",
         m.rows_acked AS acked,
         m.queue_depth AS queued,
         m.rows_in_flight AS in_flight,
         pg_catalog.round(m.ack_latency_p50_ms::pg_catalog.numeric, 1) AS "ack p50 ms",
         pg_catalog.round(m.ack_latency_p99_ms::pg_catalog.numeric, 1) AS "ack p99 ms",
         pg_catalog.round(m.commit_to_ack_p99_ms::pg_catalog.numeric, 1) AS "commit→ack p99 ms",
         m.rows_dead_lettered AS dead,
         m.reconnects,
         pg_catalog."left"(m.last_error, 60) AS last_error
    FROM zerobus.metrics() m
   ORDER BY m.database, m.stream;
COMMENT ON VIEW @extschema@.zb_dashboard IS 'The pipeline at a glance, for \watch 1';

REVOKE ALL ON FUNCTION zerobus.metrics_history() FROM PUBLIC;
REVOKE ALL ON FUNCTION zerobus.reset_metrics(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION zerobus.metrics_history() TO pg_monitor;
GRANT SELECT ON @extschema@.zb_metrics_history, @extschema@.zb_dashboard TO pg_monitor;
