-- Ingestion: streams deliver the rows of queue tables, or the committed
-- changes of any table (change capture, docs/DESIGN.md), to ZeroBus.

-- The stored settings of each stream.  Readers use the view zerobus.streams,
-- which adds the owner: a queue stream belongs to whoever owns its queue
-- table (read from pg_class each time, never copied, so that ALTER TABLE …
-- OWNER TO, REASSIGN OWNED and DROP ROLE act on streams the way they act on
-- the table's other dependents); a change-capture stream to its capture
-- role, the role that created it.
CREATE TABLE zerobus.stream_settings (
    name          text NOT NULL,
    queue         regclass,
    server        name NOT NULL,
    target        text NOT NULL,
    record_format text NOT NULL DEFAULT 'proto',
    batch_rows    integer NOT NULL DEFAULT 5000,
    batch_bytes   integer NOT NULL DEFAULT 4194304,
    workers       integer NOT NULL DEFAULT 1,
    max_inflight  integer NOT NULL DEFAULT 50000,
    ack_timeout   interval NOT NULL DEFAULT '60 seconds',
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- a record field carrying each row's dedup key (docs/DESIGN.md), or NULL
    dedup_column  text,
    -- change capture (docs/DESIGN.md, "Change capture"): the captured table
    -- instead of a queue, the role that reads it, whether the rows that
    -- exist at the start are sent first, update_preimage records, the
    -- replication slot, the first _seq of that slot, and when its initial
    -- copy was committed (NULL: the worker creates the slot and copies)
    source        regclass,
    capture_role  regrole,
    snapshot      boolean NOT NULL DEFAULT true,
    update_preimage boolean NOT NULL DEFAULT false,
    slot_name     name,
    seq_base      bigint,
    cdc_started_at timestamptz,
    CONSTRAINT streams_pkey PRIMARY KEY (name),
    CONSTRAINT streams_queue_key UNIQUE (queue),
    CONSTRAINT streams_name_check
      CHECK (name OPERATOR(pg_catalog.~) '^[A-Za-z_][A-Za-z0-9_]*$'
             AND pg_catalog.length(name) OPERATOR(pg_catalog.<) 64),
    CONSTRAINT streams_record_format_check
      CHECK (record_format OPERATOR(pg_catalog.=) ANY (ARRAY['proto', 'json'])),
    CONSTRAINT streams_batch_rows_check
      CHECK (batch_rows OPERATOR(pg_catalog.>=) 1 AND batch_rows OPERATOR(pg_catalog.<=) 100000),
    CONSTRAINT streams_batch_bytes_check
      CHECK (batch_bytes OPERATOR(pg_catalog.>=) 1024 AND batch_bytes OPERATOR(pg_catalog.<=) 10000000),
    CONSTRAINT streams_workers_check
      CHECK (workers OPERATOR(pg_catalog.>=) 1 AND workers OPERATOR(pg_catalog.<=) 16),
    CONSTRAINT streams_max_inflight_check
      CHECK (max_inflight OPERATOR(pg_catalog.>=) 1 AND max_inflight OPERATOR(pg_catalog.<=) 1000000),
    CONSTRAINT streams_ack_timeout_check
      CHECK (ack_timeout OPERATOR(pg_catalog.>) '0 seconds'::pg_catalog.interval),
    CONSTRAINT streams_dedup_column_check
      CHECK (dedup_column OPERATOR(pg_catalog.~) '^[A-Za-z_][A-Za-z0-9_]*$'
             AND pg_catalog.length(dedup_column) OPERATOR(pg_catalog.<=) 255),
    CONSTRAINT streams_queue_or_source_check
      CHECK ((queue IS NULL) OPERATOR(pg_catalog.<>) (source IS NULL)),
    CONSTRAINT streams_source_check
      CHECK (source IS NULL
             OR (capture_role IS NOT NULL AND slot_name IS NOT NULL AND seq_base IS NOT NULL
                 AND workers OPERATOR(pg_catalog.=) 1 AND dedup_column IS NULL))
);
COMMENT ON TABLE zerobus.stream_settings IS
  'The stored settings of each stream; read zerobus.streams, which adds the owner';
SELECT pg_catalog.pg_extension_config_dump('zerobus.stream_settings', '');
GRANT SELECT ON zerobus.stream_settings TO PUBLIC;

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
-- Nothing secret here; changes go through the functions below.
GRANT SELECT ON zerobus.streams TO PUBLIC;

CREATE TABLE zerobus.dead_letters (
    id         bigserial PRIMARY KEY,
    stream     text NOT NULL,
    owner      regrole NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
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
-- Only create_stream attaches it (EXECUTE is not granted), and it refuses
-- to run on a table that is not a stream's queue.
CREATE FUNCTION zerobus.queue_wakeup()
RETURNS trigger
AS 'MODULE_PATHNAME', 'zerobus_queue_wakeup'
LANGUAGE C;
REVOKE ALL ON FUNCTION zerobus.queue_wakeup() FROM PUBLIC;

-- Tells the launcher, at commit, to re-read this database's streams.  Runs
-- only on zerobus.stream_settings and zerobus.generators.
CREATE FUNCTION zerobus.streams_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'zerobus_streams_changed'
LANGUAGE C;
REVOKE ALL ON FUNCTION zerobus.streams_changed() FROM PUBLIC;
CREATE TRIGGER streams_changed
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON zerobus.stream_settings
  FOR EACH STATEMENT EXECUTE FUNCTION zerobus.streams_changed();

-- Dropping a queue table drops its stream (and generator) with it, in the
-- same transaction, the way a table's triggers and indexes go with it.
CREATE FUNCTION zerobus.queue_dropped()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'zerobus_queue_dropped'
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION zerobus.queue_dropped() FROM PUBLIC;
CREATE EVENT TRIGGER zerobus_queue_dropped ON sql_drop
  EXECUTE FUNCTION zerobus.queue_dropped();

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

CREATE FUNCTION zerobus.drop_stream(name text, if_exists boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_drop_stream'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION zerobus.drop_stream(text, boolean) IS
  'Stop delivering a queue table (rows still queued stay in it) or a table''s changes (its replication slot is dropped at commit)';

CREATE FUNCTION zerobus.start_stream(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_start_stream'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION zerobus.stop_stream(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_stop_stream'
LANGUAGE C STRICT VOLATILE;

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

CREATE FUNCTION zerobus.flush(name text, timeout interval DEFAULT '5 minutes')
RETURNS bigint
AS 'MODULE_PATHNAME', 'zerobus_flush'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION zerobus.flush(text, interval) IS
  'Wait until every row committed before the call has been durably acknowledged; returns how many were waited for';

REVOKE ALL ON FUNCTION
    zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean, text, regclass, boolean, boolean),
    zerobus.resync_stream(text),
    zerobus.peek_changes(text, integer, interval),
    zerobus.record_descriptor(text),
    zerobus.alter_stream(text, name, text, text, integer, integer, integer, integer, interval, text),
    zerobus.drop_stream(text, boolean),
    zerobus.start_stream(text),
    zerobus.stop_stream(text),
    zerobus.flush(text, interval)
  FROM PUBLIC;
