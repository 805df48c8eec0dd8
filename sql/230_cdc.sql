--
-- Change capture (docs/DESIGN.md, "Change capture"): create_stream with a
-- source, its validation, zerobus.streams, peek_changes, resync_stream,
-- drop.  Decoding in depth (every type, every change, the snapshot under
-- concurrent writes, large and rolled-back transactions, partitions, the
-- progress record) is tested by t/040_cdc_decode.pl and t/041_cdc_snapshot.pl.
-- The instance runs with wal_level = logical (test/regress.conf).
--
\getenv grpc ZB_EMU_GRPC
\getenv http ZB_EMU_HTTP
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE EXTENSION zerobus_fdw;
-- Minor releases from 2026 on load only the output plugins that
-- output_plugin_libraries names (t/040_cdc_decode.pl shows the refusal):
-- for this session, and for the processes that peek_changes starts (they
-- read the database's settings, as a stream's worker does).
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_settings WHERE name = 'output_plugin_libraries') THEN
    SET output_plugin_libraries = pgoutput, test_decoding, zerobus_fdw;
    EXECUTE format('ALTER DATABASE %I SET output_plugin_libraries = pgoutput, test_decoding, zerobus_fdw',
                   current_database());
  END IF;
END
$$;
CREATE SERVER emu FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http', zerobus_endpoint :'grpc');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');

CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(12,2),
                     status text, placed date, tags text[], paid boolean);
INSERT INTO orders VALUES (1, 'ann', 10.50, 'placed', '2024-01-01', '{a}', false),
                          (2, 'bob', 20.00, 'paid', '2024-01-02', '{}', true);

-- queue and source: one of them, not both, not neither
SELECT zerobus.create_stream('c', server => 'emu', target => 'main.default.orders_changes');
SELECT zerobus.create_stream('c', queue => 'orders', source => 'orders', server => 'emu',
                             target => 'main.default.orders_changes');
-- snapshot and update_preimage belong to change capture
CREATE TABLE q (id bigint);
SELECT zerobus.create_stream('c', 'q', 'emu', 'main.default.orders_changes', snapshot => false);
SELECT zerobus.create_stream('c', 'q', 'emu', 'main.default.orders_changes', update_preimage => true);
-- NULLs where a value is needed
SELECT zerobus.create_stream('c', source => 'orders', server => NULL, target => 'main.default.x');
SELECT zerobus.create_stream('c', source => 'orders', server => 'emu', target => 'main.default.x',
                             snapshot => NULL);

-- What can be captured
CREATE VIEW orders_view AS SELECT * FROM orders;
SELECT zerobus.create_stream('c', source => 'orders_view', server => 'emu', target => 'main.default.x');
CREATE UNLOGGED TABLE scratch (id bigint PRIMARY KEY);
SELECT zerobus.create_stream('c', source => 'scratch', server => 'emu', target => 'main.default.x');
CREATE TABLE no_key (id bigint, v text);
SELECT zerobus.create_stream('c', source => 'no_key', server => 'emu', target => 'main.default.x');
ALTER TABLE no_key REPLICA IDENTITY FULL;
SELECT zerobus.create_stream('c', source => 'no_key', server => 'emu', target => 'main.default.x',
                             start => false);
SELECT zerobus.drop_stream('c');
SELECT zerobus.create_stream('c', source => 'orders', server => 'emu', target => 'main.default.x',
                             update_preimage => true);
SELECT zerobus.create_stream('c', source => 'pg_class', server => 'emu', target => 'main.default.x');
CREATE TABLE reserved (id bigint PRIMARY KEY, "_SEQ" bigint);
SELECT zerobus.create_stream('c', source => 'reserved', server => 'emu', target => 'main.default.x');
CREATE TABLE odd_type (id bigint PRIMARY KEY, p point);
SELECT zerobus.create_stream('c', source => 'odd_type', server => 'emu', target => 'main.default.x');
SELECT zerobus.create_stream('c', source => 'orders', server => 'emu', target => 'main.default.x',
                             workers => 2);
SELECT zerobus.create_stream('c', source => 'orders', server => 'emu', target => 'main.default.x',
                             dedup_column => 'zb_key');
-- a partitioned table is captured as its root; a foreign partition is not in the WAL
CREATE TABLE logs (id bigint, region text) PARTITION BY LIST (region);
CREATE TABLE logs_eu PARTITION OF logs FOR VALUES IN ('eu');
ALTER TABLE logs_eu REPLICA IDENTITY FULL;
CREATE FOREIGN TABLE logs_us PARTITION OF logs FOR VALUES IN ('us')
    SERVER emu OPTIONS (table 'main.default.logs_us');
SELECT zerobus.create_stream('c', source => 'logs', server => 'emu', target => 'main.default.x');
DROP TABLE logs;
CREATE TABLE events (id bigint, region text, v int, PRIMARY KEY (id, region))
    PARTITION BY LIST (region);
CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');
INSERT INTO events VALUES (1, 'eu', 1), (2, 'us', 2);
SELECT zerobus.create_stream('ev', source => 'events', server => 'emu', target => 'main.default.events',
                             start => false);
SELECT change_type, record - '{_commit_lsn,_commit_timestamp,_seq}'::text[] AS record
  FROM zerobus.peek_changes('ev') ORDER BY seq;

-- The stream: created by the capture role, named slot, not established yet
SELECT zerobus.create_stream('oc', source => 'orders', server => 'emu',
                             target => 'main.default.orders_changes', start => false);
SELECT name, queue, source, owner = current_user::regrole AS owned, workers, snapshot,
       update_preimage, slot_name ~ '^zerobus_[0-9]+_[0-9]+$' AS slot_named,
       cdc_started_at IS NULL AS not_started, dedup_column
  FROM zerobus.streams WHERE name = 'oc';
-- it has no trigger on the table: changes are read from the WAL
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass;
-- and no slot until its worker starts it
SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'zerobus%';
-- a second stream of the same table is allowed (its own slot)
SELECT zerobus.create_stream('oc2', source => 'orders', server => 'emu',
                             target => 'main.default.orders_changes2', record_format => 'json',
                             snapshot => false, start => false);
SELECT count(DISTINCT slot_name) FROM zerobus.streams WHERE source = 'orders'::regclass;

-- peek_changes: the initial copy first, then the changes committed since,
-- with _seq from the stream's base; nothing is confirmed, so twice the same
SELECT seq - (SELECT seq_base FROM zerobus.stream_settings WHERE name = 'oc') AS n,
       change_type, record - '{_commit_lsn,_commit_timestamp,_seq}'::text[] AS record,
       (record->>'_seq')::bigint = seq AS seq_in_record,
       commit_lsn - '0/0'::pg_lsn = (record->>'_commit_lsn')::numeric AS lsn_in_record,
       length(data) > 0 AS has_bytes, error
  FROM zerobus.peek_changes('oc');
SELECT count(*) FROM zerobus.peek_changes('oc');
-- the ephemeral slot of a peek is gone afterwards
SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'zerobus%';
-- a stream without the initial copy shows nothing until a change commits
SELECT count(*) FROM zerobus.peek_changes('oc2');
SELECT count(*) FROM zerobus.peek_changes('oc', max_records => 1);
SELECT zerobus.peek_changes('oc', max_records => -1);
SELECT zerobus.peek_changes('q');
SELECT zerobus.peek_changes('nope');
SELECT zerobus.peek_changes(NULL);

-- flush and resync
SELECT zerobus.flush('oc');
SELECT zerobus.resync_stream('q');
CREATE TEMP TABLE before AS SELECT slot_name, seq_base FROM zerobus.stream_settings WHERE name = 'oc';
SELECT zerobus.resync_stream('oc');
SELECT s.slot_name <> b.slot_name AS new_slot, s.seq_base >= b.seq_base AS seq_continues,
       s.snapshot, s.cdc_started_at IS NULL AS not_started
  FROM zerobus.stream_settings s, before b WHERE s.name = 'oc';
SELECT zerobus.alter_stream('oc', workers => 2);
SELECT zerobus.alter_stream('oc', dedup_column => 'zb_key');
SELECT zerobus.alter_stream('oc', batch_rows => 100);

-- Who may capture: the owner, or REPLICATION + SELECT; nobody row-level
-- security applies to; peek only for the stream's role
CREATE ROLE zb_cdc_reader;
CREATE ROLE zb_cdc_repl REPLICATION;
GRANT USAGE ON FOREIGN SERVER emu TO zb_cdc_reader, zb_cdc_repl;
GRANT EXECUTE ON FUNCTION
    zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean, text, regclass, boolean, boolean),
    zerobus.peek_changes(text, integer, interval), zerobus.drop_stream(text, boolean)
  TO zb_cdc_reader, zb_cdc_repl;
CREATE USER MAPPING FOR zb_cdc_reader SERVER emu
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
CREATE USER MAPPING FOR zb_cdc_repl SERVER emu
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
GRANT SELECT ON orders TO zb_cdc_reader;
SET ROLE zb_cdc_reader;
SELECT zerobus.create_stream('r', source => 'orders', server => 'emu', target => 'main.default.x');
SELECT * FROM zerobus.peek_changes('oc');
RESET ROLE;
SET ROLE zb_cdc_repl;
SELECT zerobus.create_stream('r', source => 'orders', server => 'emu', target => 'main.default.x');
RESET ROLE;
GRANT SELECT ON orders TO zb_cdc_repl;
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_ann ON orders USING (customer = 'ann');
SET ROLE zb_cdc_repl;
SELECT zerobus.create_stream('r', source => 'orders', server => 'emu', target => 'main.default.x');
RESET ROLE;
DROP POLICY only_ann ON orders;
ALTER TABLE orders DISABLE ROW LEVEL SECURITY;
SET ROLE zb_cdc_repl;
SELECT zerobus.create_stream('r', source => 'orders', server => 'emu', target => 'main.default.x',
                             start => false);
SELECT name, owner FROM zerobus.streams WHERE name = 'r';
SELECT count(*) > 0 AS peeked FROM zerobus.peek_changes('r');
RESET ROLE;
-- a table's owner captures it without REPLICATION, unless forced row-level
-- security applies to it
CREATE ROLE zb_cdc_owner;
GRANT USAGE ON FOREIGN SERVER emu TO zb_cdc_owner;
GRANT CREATE ON SCHEMA public TO zb_cdc_owner;
GRANT EXECUTE ON FUNCTION
    zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean, text, regclass, boolean, boolean),
    zerobus.peek_changes(text, integer, interval)
  TO zb_cdc_owner;
CREATE USER MAPPING FOR zb_cdc_owner SERVER emu
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
SET ROLE zb_cdc_owner;
CREATE TABLE owned (id bigint PRIMARY KEY, v int);
INSERT INTO owned VALUES (1, 1);
SELECT zerobus.create_stream('own', source => 'owned', server => 'emu', target => 'main.default.owned',
                             start => false);
SELECT change_type, record->'id' AS id FROM zerobus.peek_changes('own');
ALTER TABLE owned ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
SELECT zerobus.peek_changes('own');
RESET ROLE;
-- the capture role losing SELECT: the stream can no longer be read
REVOKE SELECT ON orders FROM zb_cdc_repl;
SELECT zerobus.peek_changes('r');
SELECT zerobus.drop_stream('r');

-- Dropping the table drops its streams (their slots at commit)
DROP TABLE no_key;
DROP TABLE orders CASCADE;
SELECT name FROM zerobus.streams ORDER BY name;
SELECT zerobus.drop_stream('ev');
SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'zerobus%';

DROP TABLE owned;
DROP EXTENSION zerobus_fdw CASCADE;
REVOKE CREATE ON SCHEMA public FROM zb_cdc_owner;
DROP ROLE zb_cdc_reader, zb_cdc_repl, zb_cdc_owner;
