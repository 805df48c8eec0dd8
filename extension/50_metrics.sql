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
    OUT queue_depth bigint,
    OUT bytes_sent bigint,
    OUT bytes_acked bigint,
    OUT requests_sent bigint,
    OUT requests_acked bigint,
    OUT batches bigint,
    OUT streams_opened bigint,
    OUT reconnects bigint,
    OUT rows_per_sec double precision,
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
