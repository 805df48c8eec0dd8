--
-- Who a stream belongs to, and what other roles cannot do with it
-- (docs/DESIGN.md, "Security model").  Workers' behaviour under DDL and the
-- escalation attempts are TAP tests; here, what SQL users see.
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

CREATE ROLE zb_sec_owner;
CREATE ROLE zb_sec_member IN ROLE zb_sec_owner;
CREATE ROLE zb_sec_other;
GRANT USAGE ON FOREIGN SERVER emu TO zb_sec_owner, zb_sec_member;
CREATE USER MAPPING FOR zb_sec_owner SERVER emu
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
GRANT EXECUTE ON FUNCTION
    zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean, text, regclass, boolean, boolean),
    zerobus.alter_stream(text, name, text, text, integer, integer, integer, integer, interval, text),
    zerobus.drop_stream(text, boolean),
    zerobus.reset_metrics(text)
  TO zb_sec_owner, zb_sec_member, zb_sec_other;
CREATE SCHEMA sec AUTHORIZATION zb_sec_owner;
SET ROLE zb_sec_owner;
CREATE TABLE sec.q (id bigint, payload text);
RESET ROLE;

-- A stream belongs to its queue table's owner.  A member of that role may
-- create it (the owner's user mapping is the one used); zerobus.streams
-- shows the table's current owner.
SET ROLE zb_sec_member;
SELECT zerobus.create_stream('sec', 'sec.q', 'emu', 'main.default.regress_events', start => false);
RESET ROLE;
SELECT name, queue, owner FROM zerobus.streams;
-- The internal table has no owner column to go stale.
SELECT count(*) AS owner_columns FROM pg_attribute
 WHERE attrelid = 'zerobus.stream_settings'::regclass AND attname = 'owner' AND NOT attisdropped;
-- The stream moves with the table.
ALTER TABLE sec.q OWNER TO zb_sec_other;
SELECT name, owner FROM zerobus.streams;
SET ROLE zb_sec_member;
SELECT zerobus.alter_stream('sec', batch_rows => 10);
RESET ROLE;
ALTER TABLE sec.q OWNER TO zb_sec_owner;
-- DROP ROLE is refused while the role owns the queue (and so the stream).
\set VERBOSITY terse
DROP ROLE zb_sec_owner;
\set VERBOSITY default
SELECT pg_describe_object(classid, objid, objsubid) AS owned_by_zb_sec_owner
  FROM pg_shdepend WHERE refobjid = 'zb_sec_owner'::regrole AND deptype = 'o' ORDER BY 1;

-- The owner, who connects, needs USAGE on the server and a user mapping.
CREATE TABLE other_q (id bigint);
ALTER TABLE other_q OWNER TO zb_sec_other;
SELECT zerobus.create_stream('o', 'other_q', 'emu', 'main.default.regress_events', start => false);
GRANT USAGE ON FOREIGN SERVER emu TO zb_sec_other;
SELECT zerobus.create_stream('o', 'other_q', 'emu', 'main.default.regress_events', start => false);
REVOKE USAGE ON FOREIGN SERVER emu FROM zb_sec_other;

-- Trigger functions: nobody but the extension may attach them...
CREATE SCHEMA other AUTHORIZATION zb_sec_other;
SET ROLE zb_sec_other;
CREATE TABLE other.mine (id int);
CREATE TRIGGER t AFTER INSERT ON other.mine FOR EACH STATEMENT EXECUTE FUNCTION zerobus.streams_changed();
CREATE TRIGGER t AFTER INSERT ON other.mine FOR EACH STATEMENT EXECUTE FUNCTION zerobus.queue_wakeup();
RESET ROLE;
DROP SCHEMA other CASCADE;
-- ...and attached elsewhere (here by a superuser), they refuse to run.
CREATE TABLE not_a_queue (id int);
CREATE TRIGGER w AFTER INSERT ON not_a_queue FOR EACH STATEMENT EXECUTE FUNCTION zerobus.queue_wakeup();
INSERT INTO not_a_queue VALUES (1);
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER w ON not_a_queue;
CREATE TRIGGER c AFTER INSERT ON not_a_queue FOR EACH STATEMENT EXECUTE FUNCTION zerobus.streams_changed();
INSERT INTO not_a_queue VALUES (1);
\echo :LAST_ERROR_SQLSTATE
DROP TABLE not_a_queue;
-- The queue itself still takes rows.
INSERT INTO sec.q VALUES (1, 'a');

-- reset_metrics: a stream's metrics are its owner's.  (Metrics appear once
-- the launcher has registered the stream.)
DO $$
BEGIN
  FOR i IN 1 .. 600 LOOP
    EXIT WHEN EXISTS (SELECT FROM zerobus.metrics() WHERE stream = 'sec');
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SET ROLE zb_sec_other;
SELECT zerobus.reset_metrics('sec');
\echo :LAST_ERROR_SQLSTATE
SELECT zerobus.reset_metrics() AS reset_of_others;
SET ROLE zb_sec_member;
SELECT zerobus.reset_metrics('sec');
RESET ROLE;

-- bench_transport needs USAGE on the server, even with a PUBLIC user mapping.
CREATE SERVER emu_public FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http', zerobus_endpoint :'grpc');
CREATE USER MAPPING FOR PUBLIC SERVER emu_public
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
GRANT EXECUTE ON FUNCTION zerobus.bench_transport(name, text, bigint, integer, integer, integer)
  TO zb_sec_other;
SET ROLE zb_sec_other;
SELECT records_sent FROM zerobus.bench_transport('emu_public', 'main.default.regress_events', 10);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- ack_timeout is at most a day.
SELECT zerobus.alter_stream('sec', ack_timeout => '36500 days');
\echo :LAST_ERROR_SQLSTATE
SELECT zerobus.alter_stream('sec', ack_timeout => '25 hours');
SELECT zerobus.alter_stream('sec', ack_timeout => '1 day');
SELECT ack_timeout FROM zerobus.streams WHERE name = 'sec';

-- Dropping a queue table drops its stream, and its generator; dead letters stay.
SELECT zerobus.generator_start('sec', profile => 'weblogs', throttle => 1) AS needs_a_matching_queue;
CREATE TABLE gen_q (client_ip text NOT NULL, method text NOT NULL, path text NOT NULL,
    status smallint NOT NULL, response_bytes integer NOT NULL, latency_ms double precision NOT NULL,
    user_agent text NOT NULL, logged_at timestamptz NOT NULL DEFAULT now());
SELECT zerobus.create_stream('gen', 'gen_q', 'emu', 'main.default.regress_events', start => false);
SELECT zerobus.generator_start('gen', profile => 'weblogs', throttle => 1);
INSERT INTO zerobus.dead_letters (stream, owner, error, record) VALUES ('gen', current_user::regrole, 'test', '{}');
DROP TABLE gen_q;
SELECT name FROM zerobus.streams ORDER BY name;
SELECT count(*) AS generators_left FROM zerobus.generators;
SELECT stream, error FROM zerobus.dead_letters;
-- So does dropping its schema; a rolled-back DROP keeps it.
BEGIN;
DROP SCHEMA sec CASCADE;
SELECT count(*) AS streams_in_the_transaction FROM zerobus.streams;
ROLLBACK;
SELECT name FROM zerobus.streams;
-- The event trigger acts for any role that may drop the table.
SET ROLE zb_sec_owner;
\set VERBOSITY terse
DROP SCHEMA sec CASCADE;
\set VERBOSITY default
RESET ROLE;
SELECT count(*) AS streams_left FROM zerobus.streams;
-- drop_stream(if_exists) on a stream that is gone is a NOTICE.
SELECT zerobus.drop_stream('sec', if_exists => true);

DROP EXTENSION zerobus_fdw CASCADE;
DROP TABLE other_q;
DROP ROLE zb_sec_owner, zb_sec_member, zb_sec_other;
