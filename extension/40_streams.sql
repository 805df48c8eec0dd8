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
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- a record field carrying each row's dedup key (docs/DESIGN.md), or NULL
    dedup_column  text CHECK (dedup_column ~ '^[A-Za-z_][A-Za-z0-9_]*$' AND length(dedup_column) <= 255)
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
    zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean, text),
    zerobus.alter_stream(text, name, text, text, integer, integer, integer, integer, interval, text),
    zerobus.drop_stream(text, boolean),
    zerobus.start_stream(text),
    zerobus.stop_stream(text),
    zerobus.flush(text, interval)
  FROM PUBLIC;
