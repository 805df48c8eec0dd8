-- zerobus_fdw 0.1, generated from the files in extension/: edit those
\echo Use "CREATE EXTENSION zerobus_fdw" to load this file. \quit

-- 00_core.sql
-- Core: the schema every other part lives in.

CREATE SCHEMA zerobus;
COMMENT ON SCHEMA zerobus IS 'zerobus_fdw: streams to Databricks ZeroBus, and Delta history';
-- Everyone may look up names here; each function and table has its own grants.
GRANT USAGE ON SCHEMA zerobus TO PUBLIC;

-- 10_fdw.sql
-- The foreign-data wrapper: handler, validator, and the wrapper itself.

CREATE FUNCTION zerobus.fdw_handler()
RETURNS fdw_handler
AS 'MODULE_PATHNAME', 'zerobus_fdw_handler'
LANGUAGE C STRICT;

CREATE FUNCTION zerobus.fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_fdw_validator'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER zerobus_fdw
  HANDLER zerobus.fdw_handler
  VALIDATOR zerobus.fdw_validator;

-- 20_diagnostics.sql
-- Diagnostics: connection check and transport benchmark.

CREATE FUNCTION zerobus.check_connection(
    server name,
    target text,
    timeout interval DEFAULT '10 seconds',
    OUT ok boolean,
    OUT token_ok boolean,
    OUT stream_id text,
    OUT round_trip_ms double precision,
    OUT error_code text,
    OUT error text,
    OUT hint text)
RETURNS record
AS 'MODULE_PATHNAME', 'zerobus_check_connection'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION zerobus.check_connection(name, text, interval) IS
  'Fetch a ZeroBus token for the target table, open a stream to it, and report what happened';

REVOKE ALL ON FUNCTION zerobus.check_connection(name, text, interval) FROM PUBLIC;

CREATE FUNCTION zerobus.bench_transport(
    server name,
    target text,
    records bigint DEFAULT 1000000,
    batch_size integer DEFAULT 1000,
    record_bytes integer DEFAULT 200,
    max_inflight integer DEFAULT 16,
    OUT records_sent bigint,
    OUT requests bigint,
    OUT acked_requests bigint,
    OUT bytes_sent bigint,
    OUT seconds double precision,
    OUT records_per_sec double precision,
    OUT mb_per_sec double precision)
RETURNS record
AS 'MODULE_PATHNAME', 'zerobus_bench_transport'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION zerobus.bench_transport(name, text, bigint, integer, integer, integer) IS
  'Stream synthetic (id bigint, payload string) records to a table through ZeroBus and measure the rate';

REVOKE ALL ON FUNCTION zerobus.bench_transport(name, text, bigint, integer, integer, integer) FROM PUBLIC;

-- 30_history.sql
-- History: the foreign-data wrapper's SQL-callable helpers.

CREATE FUNCTION zerobus.quote_ident(identifier text)
RETURNS text
AS 'MODULE_PATHNAME', 'zerobus_quote_ident'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION zerobus.quote_ident(text) IS
  'Quote a Databricks SQL identifier: in backticks, a backtick inside doubled (the quoting the FDW uses)';

CREATE FUNCTION zerobus.execute_remote(server name, statement text, VARIADIC args text[] DEFAULT '{}')
RETURNS bigint
AS 'MODULE_PATHNAME', 'zerobus_execute_remote'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION zerobus.execute_remote(name, text, text[]) IS
  'Run one statement on the server''s SQL warehouse (args are the STRING parameters :p1, :p2, ...); returns the rows affected or returned';

REVOKE ALL ON FUNCTION zerobus.execute_remote(name, text, text[]) FROM PUBLIC;

-- 40_streams.sql
-- Ingestion: streams deliver the rows of queue tables to ZeroBus.

CREATE TABLE zerobus.streams (
    name          text PRIMARY KEY
                  CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]*$' AND length(name) < 64),
    queue         regclass NOT NULL UNIQUE,
    server        name NOT NULL,
    target        text NOT NULL,
    owner         regrole NOT NULL,
    record_format text NOT NULL DEFAULT 'proto' CHECK (record_format IN ('proto', 'json')),
    batch_rows    integer NOT NULL DEFAULT 5000 CHECK (batch_rows BETWEEN 1 AND 100000),
    batch_bytes   integer NOT NULL DEFAULT 4194304 CHECK (batch_bytes BETWEEN 1024 AND 10000000),
    workers       integer NOT NULL DEFAULT 1 CHECK (workers BETWEEN 1 AND 16),
    max_inflight  integer NOT NULL DEFAULT 50000 CHECK (max_inflight BETWEEN 1 AND 1000000),
    ack_timeout   interval NOT NULL DEFAULT '60 seconds' CHECK (ack_timeout > '0'),
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE zerobus.streams IS
  'Streams: each delivers the rows of one queue table to one Databricks table through ZeroBus';
SELECT pg_catalog.pg_extension_config_dump('zerobus.streams', '');
-- Nothing secret here; changes go through the functions below.
GRANT SELECT ON zerobus.streams TO PUBLIC;

CREATE TABLE zerobus.dead_letters (
    id         bigserial PRIMARY KEY,
    stream     text NOT NULL,
    owner      regrole NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now(),
    error      text NOT NULL,
    record     jsonb NOT NULL
);
COMMENT ON TABLE zerobus.dead_letters IS
  'Rows ZeroBus refused (or that cannot be encoded), with the reason; the stream went on without them';
CREATE INDEX ON zerobus.dead_letters (stream, failed_at);
SELECT pg_catalog.pg_extension_config_dump('zerobus.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('zerobus.dead_letters_id_seq', '');
-- A stream's owner sees and clears its own dead letters.
ALTER TABLE zerobus.dead_letters ENABLE ROW LEVEL SECURITY;
CREATE POLICY dead_letters_of_owner ON zerobus.dead_letters
  USING (pg_catalog.pg_has_role(owner, 'USAGE'));
GRANT SELECT, DELETE ON zerobus.dead_letters TO PUBLIC;

-- Wakes a queue's workers when a transaction that inserted into it commits.
CREATE FUNCTION zerobus.queue_wakeup()
RETURNS trigger
AS 'MODULE_PATHNAME', 'zerobus_queue_wakeup'
LANGUAGE C;

-- Tells the launcher, at commit, to re-read this database's streams.
CREATE FUNCTION zerobus.streams_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'zerobus_streams_changed'
LANGUAGE C;
CREATE TRIGGER streams_changed
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON zerobus.streams
  FOR EACH STATEMENT EXECUTE FUNCTION zerobus.streams_changed();

CREATE FUNCTION zerobus.create_stream(
    name text,
    queue regclass,
    server name,
    target text,
    record_format text DEFAULT 'proto',
    batch_rows integer DEFAULT 5000,
    batch_bytes integer DEFAULT 4194304,
    workers integer DEFAULT 1,
    max_inflight integer DEFAULT 50000,
    ack_timeout interval DEFAULT '60 seconds',
    start boolean DEFAULT true)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_create_stream'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean) IS
  'Deliver the rows inserted into a queue table to a Databricks table through ZeroBus';

CREATE FUNCTION zerobus.alter_stream(
    name text,
    server name DEFAULT NULL,
    target text DEFAULT NULL,
    record_format text DEFAULT NULL,
    batch_rows integer DEFAULT NULL,
    batch_bytes integer DEFAULT NULL,
    workers integer DEFAULT NULL,
    max_inflight integer DEFAULT NULL,
    ack_timeout interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_alter_stream'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION zerobus.alter_stream(text, name, text, text, integer, integer, integer, integer, interval) IS
  'Change a stream''s settings (NULL keeps a setting); its workers restart with them';

CREATE FUNCTION zerobus.drop_stream(name text, if_exists boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_drop_stream'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION zerobus.drop_stream(text, boolean) IS
  'Stop delivering a queue table; rows still queued stay in it';

CREATE FUNCTION zerobus.start_stream(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_start_stream'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION zerobus.stop_stream(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_stop_stream'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION zerobus.flush(name text, timeout interval DEFAULT '5 minutes')
RETURNS bigint
AS 'MODULE_PATHNAME', 'zerobus_flush'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION zerobus.flush(text, interval) IS
  'Wait until every row committed before the call has been durably acknowledged; returns how many were waited for';

REVOKE ALL ON FUNCTION
    zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean),
    zerobus.alter_stream(text, name, text, text, integer, integer, integer, integer, interval),
    zerobus.drop_stream(text, boolean),
    zerobus.start_stream(text),
    zerobus.stop_stream(text),
    zerobus.flush(text, interval)
  FROM PUBLIC;

-- 50_metrics.sql
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

-- 60_generator.sql
-- The built-in traffic generator: a background worker per running generator
-- fills a stream's queue with realistic rows, paced to a rate.

CREATE TABLE zerobus.generators (
    stream     text PRIMARY KEY REFERENCES zerobus.streams (name) ON DELETE CASCADE ON UPDATE CASCADE,
    profile    text NOT NULL,
    throttle   integer CHECK (throttle BETWEEN 1 AND 100),
    rate       double precision NOT NULL CHECK (rate > 0),
    enabled    boolean NOT NULL DEFAULT true,
    started_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE zerobus.generators IS
  'Generators: each fills one stream''s queue with rows of a profile at a rate';
SELECT pg_catalog.pg_extension_config_dump('zerobus.generators', '');
GRANT SELECT ON zerobus.generators TO PUBLIC;
CREATE TRIGGER generators_changed
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON zerobus.generators
  FOR EACH STATEMENT EXECUTE FUNCTION zerobus.streams_changed();

CREATE FUNCTION zerobus.generator_profiles(
    OUT profile text, OUT description text, OUT queue_columns text, OUT delta_columns text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'zerobus_generator_profiles'
LANGUAGE C STRICT IMMUTABLE;
COMMENT ON FUNCTION zerobus.generator_profiles() IS
  'The generator''s profiles, with the columns of their queue table and of the Delta table';

CREATE FUNCTION zerobus.generator_create_queue(profile text, queue text)
RETURNS regclass
AS 'MODULE_PATHNAME', 'zerobus_generator_create_queue'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION zerobus.generator_create_queue(text, text) IS
  'Create a queue table with the columns of a generator profile';

CREATE FUNCTION zerobus.generator_start(stream text, profile text DEFAULT NULL,
                                        rate double precision DEFAULT NULL,
                                        throttle integer DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_generator_start'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION zerobus.generator_start(text, text, double precision, integer) IS
  'Start filling a stream''s queue with rows of a profile, at rate rows/s or at a throttle of 1-100';

CREATE FUNCTION zerobus.generator_throttle(stream text, throttle integer)
RETURNS double precision
AS 'MODULE_PATHNAME', 'zerobus_generator_throttle'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION zerobus.generator_throttle(text, integer) IS
  'Set a generator''s speed, 1-100: 10 x 10^(4 (throttle - 1) / 99) rows/s, from 10 to 100,000; returns that rate';

CREATE FUNCTION zerobus.generator_stop(stream text)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_generator_stop'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION zerobus.generator_status(
    OUT stream text, OUT profile text, OUT running boolean, OUT throttle integer,
    OUT target_rate double precision, OUT actual_rate double precision,
    OUT rows_generated bigint, OUT started_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'zerobus_generator_status'
LANGUAGE C STRICT VOLATILE;

REVOKE ALL ON FUNCTION
    zerobus.generator_create_queue(text, text),
    zerobus.generator_start(text, text, double precision, integer),
    zerobus.generator_throttle(text, integer),
    zerobus.generator_stop(text)
  FROM PUBLIC;
REVOKE ALL ON FUNCTION zerobus.generator_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION zerobus.generator_status() TO pg_monitor;
