--
-- Streams: creation, validation, changes, privileges.  Delivery itself is
-- tested by the TAP tests (t/01*.pl); here, what SQL users see.
--
\getenv grpc ZB_EMU_GRPC
\getenv http ZB_EMU_HTTP
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE EXTENSION zerobus_fdw;
CREATE SERVER emu FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http', zerobus_endpoint :'grpc');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');

CREATE TABLE tx_queue (txn_id text NOT NULL, amount numeric(12,2), currency text,
                       ts timestamptz, tags text[]);

-- A stream, created stopped so that nothing here depends on the workers.
SELECT zerobus.create_stream('tx', 'tx_queue', 'emu', 'main.default.regress_events',
                             start => false);
SELECT name, queue, server, target, owner = current_user::regrole AS owned,
       record_format, batch_rows, batch_bytes, workers, max_inflight, ack_timeout, enabled
  FROM zerobus.streams;
-- The queue gains a statement trigger that wakes the workers at commit.
SELECT tgname, tgtype, tgfoid::regproc FROM pg_trigger WHERE tgrelid = 'tx_queue'::regclass;
-- Inserting into the queue is unchanged for applications.
INSERT INTO tx_queue VALUES ('t1', 12.50, 'USD', '2024-01-01 00:00:00+00', '{a,b}');
COPY tx_queue FROM STDIN;
t2	1.00	EUR	2024-01-02 00:00:00+00	{}
\.
SELECT count(*) FROM tx_queue;

-- Names, duplicates, one stream per queue.
SELECT zerobus.create_stream('tx', 'tx_queue', 'emu', 'main.default.regress_events');
CREATE TABLE other_queue (id bigint);
SELECT zerobus.create_stream('tx2', 'tx_queue', 'emu', 'main.default.regress_events');
SELECT zerobus.create_stream('my-stream', 'other_queue', 'emu', 'main.default.regress_events');
SELECT zerobus.create_stream('1tx', 'other_queue', 'emu', 'main.default.regress_events');
SELECT zerobus.create_stream(NULL, 'other_queue', 'emu', 'main.default.regress_events');

-- Queue tables must be logged, plain, heap tables.
CREATE UNLOGGED TABLE unlogged_queue (id bigint);
SELECT zerobus.create_stream('u', 'unlogged_queue', 'emu', 'main.default.regress_events');
CREATE TEMP TABLE temp_queue (id bigint);
SELECT zerobus.create_stream('t', 'temp_queue', 'emu', 'main.default.regress_events');
CREATE TABLE part_queue (id bigint) PARTITION BY RANGE (id);
SELECT zerobus.create_stream('p', 'part_queue', 'emu', 'main.default.regress_events');
CREATE VIEW view_queue AS SELECT 1 AS id;
SELECT zerobus.create_stream('v', 'view_queue', 'emu', 'main.default.regress_events');
SELECT zerobus.create_stream('c', 'pg_class', 'emu', 'main.default.regress_events');

-- Columns ZeroBus cannot carry.
CREATE TABLE bad_types (id bigint, at time);
SELECT zerobus.create_stream('b', 'bad_types', 'emu', 'main.default.regress_events');
CREATE TABLE bad_types2 (id bigint, span int4range);
SELECT zerobus.create_stream('b', 'bad_types2', 'emu', 'main.default.regress_events');
CREATE TABLE bad_types3 (id bigint, grid int[][]);
SELECT zerobus.create_stream('b', 'bad_types3', 'emu', 'main.default.regress_events') AS arrays_of_any_dimension_are_one_type;
SELECT zerobus.drop_stream('b');
CREATE TABLE bad_name ("order-id" bigint);
SELECT zerobus.create_stream('b', 'bad_name', 'emu', 'main.default.regress_events');
CREATE TABLE bad_name2 ("2nd" bigint);
SELECT zerobus.create_stream('b', 'bad_name2', 'emu', 'main.default.regress_events');
CREATE TABLE no_columns ();
SELECT zerobus.create_stream('b', 'no_columns', 'emu', 'main.default.regress_events');
DO $$ BEGIN
  EXECUTE 'CREATE TABLE wide (' ||
    (SELECT string_agg('c' || i || ' int', ', ') FROM generate_series(1, 1600) i) || ')';
END $$;
SELECT zerobus.create_stream('w', 'wide', 'emu', 'main.default.regress_events') AS sixteen_hundred_columns_are_fine;
SELECT zerobus.drop_stream('w');
-- Domains map as their base type.
CREATE DOMAIN positive_amount AS numeric(12,2) CHECK (VALUE > 0);
CREATE TABLE domain_queue (id bigint, amount positive_amount);
SELECT zerobus.create_stream('d', 'domain_queue', 'emu', 'main.default.regress_events', start => false);

-- Servers and user mappings.
SELECT zerobus.create_stream('s', 'other_queue', 'nosuchserver', 'main.default.regress_events');
CREATE SERVER no_mapping FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http', zerobus_endpoint :'grpc');
SELECT zerobus.create_stream('s', 'other_queue', 'no_mapping', 'main.default.regress_events');
CREATE SERVER no_endpoint FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (workspace_url :'http');
CREATE USER MAPPING FOR CURRENT_USER SERVER no_endpoint OPTIONS (client_id 'a', client_secret 'b');
SELECT zerobus.create_stream('s', 'other_queue', 'no_endpoint', 'main.default.regress_events');

-- Settings.
SELECT zerobus.create_stream('s', 'other_queue', 'emu', 'events');
SELECT zerobus.create_stream('s', 'other_queue', 'emu', 'main.default.regress_events', record_format => 'avro');
SELECT zerobus.create_stream('s', 'other_queue', 'emu', 'main.default.regress_events', batch_rows => 0);
SELECT zerobus.create_stream('s', 'other_queue', 'emu', 'main.default.regress_events', batch_bytes => 20000000);
SELECT zerobus.create_stream('s', 'other_queue', 'emu', 'main.default.regress_events', workers => 17);
SELECT zerobus.create_stream('s', 'other_queue', 'emu', 'main.default.regress_events', max_inflight => 0);
SELECT zerobus.create_stream('s', 'other_queue', 'emu', 'main.default.regress_events', ack_timeout => '10 ms');
SELECT count(*) AS nothing_half_created FROM zerobus.streams WHERE name NOT IN ('tx', 'd');

-- A dedup key in every record (dedup_column): a valid field name that no
-- queue column has, ignoring case as Delta does.  (In one transaction that
-- is rolled back: committed stream changes would each start a rescan.)
BEGIN;
\set ON_ERROR_ROLLBACK on
SELECT zerobus.create_stream('k', 'other_queue', 'emu', 'main.default.regress_events', dedup_column => 'id');
SELECT zerobus.create_stream('k', 'other_queue', 'emu', 'main.default.regress_events', dedup_column => 'ID');
SELECT zerobus.create_stream('k', 'other_queue', 'emu', 'main.default.regress_events', dedup_column => 'zb-key');
SELECT zerobus.create_stream('k', 'other_queue', 'emu', 'main.default.regress_events', dedup_column => '1key');
SELECT zerobus.create_stream('k', 'other_queue', 'emu', 'main.default.regress_events', dedup_column => repeat('k', 256));
SELECT count(*) AS nothing_half_created FROM zerobus.streams WHERE name = 'k';
SELECT zerobus.create_stream('k', 'other_queue', 'emu', 'main.default.regress_events', dedup_column => 'zb_key', start => false);
SELECT name, dedup_column FROM zerobus.streams WHERE name = 'k';
SELECT zerobus.alter_stream('k', dedup_column => 'Id');
SELECT zerobus.alter_stream('k', dedup_column => 'row key');
SELECT zerobus.alter_stream('k', batch_rows => 10);
SELECT name, dedup_column, batch_rows FROM zerobus.streams WHERE name = 'k';
SELECT zerobus.alter_stream('k', dedup_column => 'zb_row');
SELECT name, dedup_column FROM zerobus.streams WHERE name = 'k';
-- '' removes it (and means none in create_stream).
SELECT zerobus.alter_stream('k', dedup_column => '');
SELECT name, dedup_column IS NULL AS no_key FROM zerobus.streams WHERE name = 'k';
SELECT zerobus.drop_stream('k');
SELECT zerobus.create_stream('k', 'other_queue', 'emu', 'main.default.regress_events', dedup_column => '', start => false);
SELECT name, dedup_column IS NULL AS no_key FROM zerobus.streams WHERE name = 'k';
-- The catalog refuses a bad name written around the functions, too.
\set VERBOSITY terse
UPDATE zerobus.stream_settings SET dedup_column = 'a b' WHERE name = 'k';
\set VERBOSITY default
ROLLBACK;
\set ON_ERROR_ROLLBACK off

-- Changing a stream.
SELECT zerobus.alter_stream('tx', workers => 2, record_format => 'json', ack_timeout => '30 s');
SELECT name, workers, record_format, ack_timeout, batch_rows FROM zerobus.streams WHERE name = 'tx';
SELECT zerobus.alter_stream('tx', workers => 0);
SELECT zerobus.alter_stream('tx', target => 'a.b');
SELECT zerobus.alter_stream('nosuch', workers => 1);
SELECT zerobus.start_stream('nosuch');

-- flush needs a running stream.
SELECT zerobus.flush('tx');
SELECT zerobus.flush('nosuch');

-- Privileges: control functions are not for PUBLIC; a stream's queue must be
-- owned by its creator, who needs a user mapping of their own.
CREATE ROLE zb_alice;
CREATE ROLE zb_bob;
GRANT USAGE ON FOREIGN SERVER emu TO zb_alice, zb_bob;
SET ROLE zb_alice;
SELECT zerobus.create_stream('a', 'other_queue', 'emu', 'main.default.regress_events');
RESET ROLE;
GRANT EXECUTE ON FUNCTION zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean, text, regclass, boolean, boolean),
                          zerobus.stop_stream(text), zerobus.drop_stream(text, boolean)
  TO zb_alice, zb_bob;
SET ROLE zb_alice;
SELECT zerobus.create_stream('a', 'other_queue', 'emu', 'main.default.regress_events');
RESET ROLE;
CREATE SCHEMA alice AUTHORIZATION zb_alice;
SET ROLE zb_alice;
CREATE TABLE alice.alice_queue (id bigint);
SELECT zerobus.create_stream('a', 'alice.alice_queue', 'emu', 'main.default.regress_events');
RESET ROLE;
CREATE USER MAPPING FOR zb_alice SERVER emu
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
SET ROLE zb_alice;
SELECT zerobus.create_stream('a', 'alice.alice_queue', 'emu', 'main.default.regress_events', start => false);
SELECT name, queue, owner FROM zerobus.streams WHERE name = 'a';
-- Bob can see streams, but cannot change Alice's.
SET ROLE zb_bob;
SELECT name FROM zerobus.streams ORDER BY name;
SELECT zerobus.stop_stream('a');
SELECT zerobus.drop_stream('a');
-- Metrics are for pg_monitor.
SELECT count(*) FROM zb_metrics;
RESET ROLE;
GRANT pg_monitor TO zb_bob;
SET ROLE zb_bob;
SELECT count(*) >= 0 AS readable FROM zb_metrics;
RESET ROLE;
SET ROLE zb_alice;
SELECT zerobus.drop_stream('a');
RESET ROLE;

-- Dead letters: each owner sees their own.
INSERT INTO zerobus.dead_letters (stream, owner, error, record)
    VALUES ('a', 'zb_alice', 'test', '{"id": 1}'), ('tx', current_user::regrole, 'test', '{}');
SET ROLE zb_alice;
SELECT stream, error, record FROM zerobus.dead_letters;
RESET ROLE;
SELECT count(*) FROM zerobus.dead_letters;

-- Dropping.
SELECT zerobus.drop_stream('nosuch');
SELECT zerobus.drop_stream('nosuch', if_exists => true);
SELECT zerobus.drop_stream('d');
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'domain_queue'::regclass AND tgname = 'zerobus_wakeup';
-- The queue keeps its rows.
SELECT count(*) FROM tx_queue;

-- DROP EXTENSION takes the wake-up triggers with it; queue tables and rows stay.
\set VERBOSITY terse
DROP EXTENSION zerobus_fdw CASCADE;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgname = 'zerobus_wakeup';
SELECT count(*) FROM tx_queue;
INSERT INTO tx_queue VALUES ('t3', 1, 'USD', now(), NULL);
DROP SCHEMA alice CASCADE;
DROP ROLE zb_alice;
DROP ROLE zb_bob;
