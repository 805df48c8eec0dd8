-- zerobus_fdw 0.1 -> 0.2 (ALTER EXTENSION zerobus_fdw UPDATE).
--
-- Every SQL change made to extension/*.sql since 0.1 (frozen in
-- extension/versions/zerobus_fdw--0.1.sql) is also written here, so that an
-- updated installation ends with exactly the objects of a fresh 0.2 install.
-- sql/000_update.sql checks that, object by object (docs/DESIGN.md, "Versions").
-- Append each change under a comment naming its part of extension/.
\echo Use "ALTER EXTENSION zerobus_fdw UPDATE TO '0.2'" to load this file. \quit

-- 40_streams.sql (issue 8, security): a stream's owner is its queue table's
-- owner, read from pg_class; the settings move to zerobus.stream_settings and
-- zerobus.streams becomes a view that adds the owner.
ALTER TABLE zerobus.streams RENAME TO stream_settings;
-- PostgreSQL 18 names NOT NULL constraints after their table: rename them as a
-- fresh install names them (15-17 have none to rename).
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT con.conname
               FROM pg_catalog.pg_constraint con
              WHERE con.conrelid OPERATOR(pg_catalog.=) 'zerobus.stream_settings'::pg_catalog.regclass
                AND con.contype OPERATOR(pg_catalog.=) 'n'
                AND con.conname OPERATOR(pg_catalog.~) '^streams_.*_not_null$'
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE zerobus.stream_settings RENAME CONSTRAINT %I TO %I',
                                  c.conname,
                                  'stream_settings_' OPERATOR(pg_catalog.||)
                                  pg_catalog.substr(c.conname, 9));
    END LOOP;
END
$$;
ALTER TABLE zerobus.stream_settings DROP COLUMN owner;
ALTER TABLE zerobus.stream_settings ALTER COLUMN created_at SET DEFAULT pg_catalog.now();
-- Streams: an optional per-row dedup key in every record (dedup_column).
ALTER TABLE zerobus.stream_settings ADD COLUMN dedup_column text
    CONSTRAINT streams_dedup_column_check
      CHECK (dedup_column OPERATOR(pg_catalog.~) '^[A-Za-z_][A-Za-z0-9_]*$'
             AND pg_catalog.length(dedup_column) OPERATOR(pg_catalog.<=) 255);
COMMENT ON TABLE zerobus.stream_settings IS
  'The stored settings of each stream; read zerobus.streams, which adds the owner';
CREATE VIEW zerobus.streams AS
  SELECT s.name, s.queue, s.server, s.target,
         c.relowner::pg_catalog.regrole AS owner,
         s.record_format, s.batch_rows, s.batch_bytes, s.workers, s.max_inflight,
         s.ack_timeout, s.enabled, s.created_at, s.dedup_column
    FROM zerobus.stream_settings s
    LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.queue::pg_catalog.oid;
COMMENT ON VIEW zerobus.streams IS
  'Streams: each delivers the rows of one queue table to one Databricks table through ZeroBus; the owner is the queue table''s';
GRANT SELECT ON zerobus.streams TO PUBLIC;

ALTER TABLE zerobus.dead_letters ALTER COLUMN failed_at SET DEFAULT pg_catalog.now();

-- 40_streams.sql: only create_stream attaches the trigger functions, and they
-- refuse other tables.
REVOKE ALL ON FUNCTION zerobus.queue_wakeup() FROM PUBLIC;
REVOKE ALL ON FUNCTION zerobus.streams_changed() FROM PUBLIC;

-- 40_streams.sql: dropping a queue table drops its stream.
CREATE FUNCTION zerobus.queue_dropped()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'zerobus_queue_dropped'
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION zerobus.queue_dropped() FROM PUBLIC;
CREATE EVENT TRIGGER zerobus_queue_dropped ON sql_drop
  EXECUTE FUNCTION zerobus.queue_dropped();

-- 50_metrics.sql: the views bind every function and operator to pg_catalog's.
CREATE OR REPLACE VIEW zb_metrics AS
  SELECT m.*, pg_catalog.now() OPERATOR(pg_catalog.-) m.started_at AS uptime
    FROM zerobus.metrics() m;
CREATE OR REPLACE VIEW zb_metrics_history AS
  SELECT h.*, h."time" AS ts FROM zerobus.metrics_history() h ORDER BY h."time", h.stream;
CREATE OR REPLACE VIEW zb_dashboard AS
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

-- 60_generator.sql: generator_status() says why a generator makes no rows.
ALTER TABLE zerobus.generators ALTER COLUMN started_at SET DEFAULT pg_catalog.now();
DROP FUNCTION zerobus.generator_status();
CREATE FUNCTION zerobus.generator_status(
    OUT stream text, OUT profile text, OUT running boolean, OUT throttle integer,
    OUT target_rate double precision, OUT actual_rate double precision,
    OUT rows_generated bigint, OUT started_at timestamptz, OUT last_error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'zerobus_generator_status'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION zerobus.generator_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION zerobus.generator_status() TO pg_monitor;

-- 40_streams.sql: create_stream and alter_stream take dedup_column.

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
    start boolean DEFAULT true,
    dedup_column text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_create_stream'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean, text) IS
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
    ack_timeout interval DEFAULT NULL,
    dedup_column text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_alter_stream'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION zerobus.alter_stream(text, name, text, text, integer, integer, integer, integer, interval, text) IS
  'Change a stream''s settings (NULL keeps a setting, dedup_column => '''' removes the key); its workers restart with them';

REVOKE ALL ON FUNCTION
    zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean, text),
    zerobus.alter_stream(text, name, text, text, integer, integer, integer, integer, interval, text)
  FROM PUBLIC;

-- The new signatures keep the EXECUTE grants the old ones had, then the old ones go.
DO $$
DECLARE
    f record;
    g record;
BEGIN
    FOR f IN SELECT * FROM (VALUES
        ('zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean)',
         'zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean, text)'),
        ('zerobus.alter_stream(text, name, text, text, integer, integer, integer, integer, interval)',
         'zerobus.alter_stream(text, name, text, text, integer, integer, integer, integer, interval, text)'))
        AS v(old_sig, new_sig)
    LOOP
        FOR g IN SELECT a.grantee, a.is_grantable
                   FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
                  WHERE p.oid OPERATOR(pg_catalog.=) f.old_sig::pg_catalog.regprocedure
                    AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
                    AND a.grantee OPERATOR(pg_catalog.<>) 0
                    AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
        LOOP
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', f.new_sig,
                                      g.grantee::pg_catalog.regrole::pg_catalog.text,
                                      CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
        EXECUTE pg_catalog.format('DROP FUNCTION %s', f.old_sig);
    END LOOP;
END
$$;

-- 40_streams.sql (issue 11, change capture): a stream consumes a queue or
-- captures the changes of a source table; create_stream takes source,
-- snapshot and update_preimage; resync_stream and peek_changes.
ALTER TABLE zerobus.stream_settings ALTER COLUMN queue DROP NOT NULL;
ALTER TABLE zerobus.stream_settings
    ADD COLUMN source regclass,
    ADD COLUMN capture_role regrole,
    ADD COLUMN snapshot boolean NOT NULL DEFAULT true,
    ADD COLUMN update_preimage boolean NOT NULL DEFAULT false,
    ADD COLUMN slot_name name,
    ADD COLUMN seq_base bigint,
    ADD COLUMN cdc_started_at timestamptz,
    ADD CONSTRAINT streams_queue_or_source_check
      CHECK ((queue IS NULL) OPERATOR(pg_catalog.<>) (source IS NULL)),
    ADD CONSTRAINT streams_source_check
      CHECK (source IS NULL
             OR (capture_role IS NOT NULL AND slot_name IS NOT NULL AND seq_base IS NOT NULL
                 AND workers OPERATOR(pg_catalog.=) 1 AND dedup_column IS NULL));
DROP VIEW zerobus.streams;
CREATE VIEW zerobus.streams AS
  SELECT s.name, s.queue, s.source, s.server, s.target,
         COALESCE(s.capture_role, c.relowner::pg_catalog.regrole) AS owner,
         s.record_format, s.batch_rows, s.batch_bytes, s.workers, s.max_inflight,
         s.ack_timeout, s.enabled, s.created_at, s.dedup_column,
         s.snapshot, s.update_preimage, s.slot_name, s.cdc_started_at
    FROM zerobus.stream_settings s
    LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.queue::pg_catalog.oid;
COMMENT ON VIEW zerobus.streams IS
  'Streams: each delivers the rows of one queue table (queue), or the committed changes of one table (source), to one Databricks table through ZeroBus; the owner is the queue table''s, or the role that created a change-capture stream';
GRANT SELECT ON zerobus.streams TO PUBLIC;
COMMENT ON FUNCTION zerobus.drop_stream(text, boolean) IS
  'Stop delivering a queue table (rows still queued stay in it) or a table''s changes (its replication slot is dropped at commit)';

-- queue => a queue table (its rows are delivered, then deleted) or source =>
-- any table (its committed changes are delivered, docs/DESIGN.md "Change
-- capture"); positional (name, queue, server, target) is a queue stream.
CREATE FUNCTION zerobus.create_stream(
    name text,
    queue regclass DEFAULT NULL,
    server name DEFAULT NULL,
    target text DEFAULT NULL,
    record_format text DEFAULT 'proto',
    batch_rows integer DEFAULT 5000,
    batch_bytes integer DEFAULT 4194304,
    workers integer DEFAULT 1,
    max_inflight integer DEFAULT 50000,
    ack_timeout interval DEFAULT '60 seconds',
    start boolean DEFAULT true,
    dedup_column text DEFAULT NULL,
    source regclass DEFAULT NULL,
    snapshot boolean DEFAULT true,
    update_preimage boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_create_stream'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean, text, regclass, boolean, boolean) IS
  'Deliver the rows inserted into a queue table, or the committed changes of a table (source), to a Databricks table through ZeroBus';

CREATE FUNCTION zerobus.resync_stream(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_resync_stream'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION zerobus.resync_stream(text) IS
  'Start a change-capture stream over: a new replication slot and a new copy of the table, _seq continuing above';

CREATE FUNCTION zerobus.peek_changes(
    stream text,
    max_records integer DEFAULT 100,
    wait interval DEFAULT '0 seconds',
    OUT seq bigint,
    OUT change_type text,
    OUT commit_lsn pg_lsn,
    OUT commit_time timestamptz,
    OUT record jsonb,
    OUT data bytea,
    OUT error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'zerobus_peek_changes'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION zerobus.peek_changes(text, integer, interval) IS
  'The records a change-capture stream would send next (data: as sent; record: as JSON), without sending or confirming anything';

CREATE FUNCTION zerobus.record_descriptor(stream text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'zerobus_record_descriptor'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION zerobus.record_descriptor(text) IS
  'The protobuf DescriptorProto of the stream''s records, as its workers send it';

REVOKE ALL ON FUNCTION
    zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean, text, regclass, boolean, boolean),
    zerobus.resync_stream(text),
    zerobus.peek_changes(text, integer, interval),
    zerobus.record_descriptor(text)
  FROM PUBLIC;

-- create_stream's new signature keeps the EXECUTE grants the old one had, then the old one goes.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT a.grantee, a.is_grantable
               FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
              WHERE p.oid OPERATOR(pg_catalog.=) 'zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean, text)'::pg_catalog.regprocedure
                AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
                AND a.grantee OPERATOR(pg_catalog.<>) 0
                AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s',
                                  'zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean, text, regclass, boolean, boolean)',
                                  g.grantee::pg_catalog.regrole::pg_catalog.text,
                                  CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    DROP FUNCTION zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean, text);
END
$$;

-- 50_metrics.sql (issue 11): change capture's slot lag, slot status and the
-- age of the oldest unacknowledged change; the views that read metrics()
-- are made again with it.
DROP VIEW zb_dashboard;
DROP VIEW zb_metrics;
DROP FUNCTION zerobus.metrics();
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
REVOKE ALL ON FUNCTION zerobus.metrics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION zerobus.metrics() TO pg_monitor;
CREATE VIEW zb_metrics AS
  SELECT m.*, pg_catalog.now() OPERATOR(pg_catalog.-) m.started_at AS uptime
    FROM zerobus.metrics() m;
COMMENT ON VIEW zb_metrics IS
  'One row per stream: state, rows sent/acked/failed/dead-lettered, in flight, queue depth, throughput, ack latency, change capture''s slot lag';
GRANT SELECT ON zb_metrics TO pg_monitor;
CREATE VIEW zb_dashboard AS
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
COMMENT ON VIEW zb_dashboard IS 'The pipeline at a glance, for \watch 1';
GRANT SELECT ON zb_dashboard TO pg_monitor;

-- 60_generator.sql (issue 11): the orders profile's lifecycle in an ordinary
-- table (generator_create_table, generator_start(…, lifecycle_table)), and the
-- columns of that table and of its change stream's Delta table in
-- generator_profiles().
ALTER TABLE zerobus.generators ADD COLUMN lifecycle_table regclass;
COMMENT ON TABLE zerobus.generators IS
  'Generators: each fills one stream''s queue with rows of a profile at a rate, or runs the profile''s lifecycle in an ordinary table';
DROP FUNCTION zerobus.generator_profiles();
CREATE FUNCTION zerobus.generator_profiles(
    OUT profile text, OUT description text, OUT queue_columns text, OUT delta_columns text,
    OUT lifecycle_columns text, OUT changes_delta_columns text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'zerobus_generator_profiles'
LANGUAGE C STRICT IMMUTABLE;
COMMENT ON FUNCTION zerobus.generator_profiles() IS
  'The generator''s profiles, with the columns of their queue table and of the Delta table; for a profile with a lifecycle, the columns of its table and of the Delta table of that table''s change stream';
CREATE FUNCTION zerobus.generator_create_table(profile text, name text)
RETURNS regclass
AS 'MODULE_PATHNAME', 'zerobus_generator_create_table'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION zerobus.generator_create_table(text, text) IS
  'Create a table for a generator profile''s lifecycle (orders), with the index that finds its due rows';
CREATE FUNCTION zerobus.generator_start(stream text, profile text DEFAULT NULL,
                                        rate double precision DEFAULT NULL,
                                        throttle integer DEFAULT NULL,
                                        lifecycle_table regclass DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_generator_start'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION zerobus.generator_start(text, text, double precision, integer, regclass) IS
  'Start filling a stream''s queue with rows of a profile, or running its lifecycle in lifecycle_table, at rate rows (changes)/s or at a throttle of 1-100';
REVOKE ALL ON FUNCTION
    zerobus.generator_create_table(text, text),
    zerobus.generator_start(text, text, double precision, integer, regclass)
  FROM PUBLIC;
-- generator_start's new signature keeps the EXECUTE grants the old one had,
-- then the old one goes.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT a.grantee, a.is_grantable
               FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
              WHERE p.oid OPERATOR(pg_catalog.=)
                    'zerobus.generator_start(text, text, double precision, integer)'::pg_catalog.regprocedure
                AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
                AND a.grantee OPERATOR(pg_catalog.<>) 0
                AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s',
                                  'zerobus.generator_start(text, text, double precision, integer, regclass)',
                                  g.grantee::pg_catalog.regrole::pg_catalog.text,
                                  CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$$;
DROP FUNCTION zerobus.generator_start(text, text, double precision, integer);
