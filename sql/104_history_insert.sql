--
-- INSERT and COPY into a history foreign table go through ZeroBus, and
-- return when every row is durably acknowledged; the rows read back the same.
--
\getenv http ZB_EMU_HTTP
\getenv grpc ZB_EMU_GRPC
\set VERBOSITY default
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
CREATE EXTENSION zerobus_fdw;
CREATE SERVER emu FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http', zerobus_endpoint :'grpc', warehouse_id 'emulator-wh');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');

SELECT zerobus.execute_remote('emu', 'DROP TABLE IF EXISTS main.ins.events');
SELECT zerobus.execute_remote('emu', 'CREATE TABLE main.ins.events (id BIGINT NOT NULL,
    qty INT, small SMALLINT, ok BOOLEAN, ratio FLOAT, rate DOUBLE, label STRING,
    amount DECIMAL(12,2), day DATE, ts TIMESTAMP, ntz TIMESTAMP_NTZ, raw BINARY,
    tags ARRAY<STRING>, doc VARIANT)');
CREATE FOREIGN TABLE events (
    id bigint NOT NULL, qty integer, small smallint, ok boolean, ratio real,
    rate double precision, label text, amount numeric(12,2), day date, ts timestamptz,
    ntz timestamp, raw bytea, tags text[], doc jsonb)
    SERVER emu OPTIONS (table 'main.ins.events');

CREATE TABLE local_events (LIKE events);
INSERT INTO local_events
SELECT i, i % 7, (i % 3 - 1)::smallint, i % 2 = 0, i * 0.25, i * 1.5 - 10,
       CASE WHEN i % 4 = 0 THEN NULL ELSE 'label ' || i || ' ''q'' \ é' END,
       i * 10.25, date '2024-01-01' + i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1.000001 s',
       timestamp '2024-06-01 12:00:00' + i * interval '1 minute',
       CASE WHEN i % 5 = 0 THEN NULL ELSE decode(md5(i::text), 'hex') END,
       CASE WHEN i % 3 = 0 THEN NULL ELSE ARRAY['a' || i, 'b'] END,
       jsonb_build_object('i', i, 'even', i % 2 = 0)
  FROM generate_series(1, 2000) i;

EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO events SELECT * FROM local_events;
INSERT INTO events SELECT * FROM local_events;
-- every row is durable when INSERT returns: they read back the same
CREATE FUNCTION pg_temp.same(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE f text[]; l text[];
BEGIN
  EXECUTE format('SELECT array_agg(t::text ORDER BY t::text) FROM (%s) t', replace(q, '$T', 'events')) INTO f;
  EXECUTE format('SELECT array_agg(t::text ORDER BY t::text) FROM (%s) t', replace(q, '$T', 'local_events')) INTO l;
  RETURN CASE WHEN f IS NOT DISTINCT FROM l THEN format('same (%s rows)', coalesce(cardinality(f), 0))
              ELSE 'DIFFERENT' END;
END $$;
SELECT pg_temp.same('SELECT * FROM $T');

-- RETURNING gives the rows as sent; COPY goes the same way
INSERT INTO events (id, label) VALUES (5001, 'returned') RETURNING id, label, qty;
COPY events (id, label, tags) FROM STDIN;
6001	copied	{x,y}
6002	\N	\N
\.
SELECT id, label, tags FROM events WHERE id > 5000 ORDER BY id;

-- not transactional: rows acknowledged before a rollback stay
BEGIN;
INSERT INTO events (id, label) VALUES (7001, 'rolled back, still there');
ROLLBACK;
SELECT id, label FROM events WHERE id = 7001;

-- what cannot be inserted
INSERT INTO events (id) VALUES (NULL);
INSERT INTO events (id) VALUES (1) ON CONFLICT DO NOTHING;
CREATE FOREIGN TABLE events_query (id bigint) SERVER emu OPTIONS (query 'SELECT id FROM main.ins.events');
INSERT INTO events_query VALUES (1);
CREATE FOREIGN TABLE events_noname (id bigint) SERVER emu;
INSERT INTO events_noname VALUES (1);
CREATE FOREIGN TABLE events_extra (id bigint, nope text) SERVER emu OPTIONS (table 'main.ins.events');
INSERT INTO events_extra VALUES (1, 'x');
CREATE FOREIGN TABLE events_badname (id bigint, "we ird" text) SERVER emu OPTIONS (table 'main.ins.events');
INSERT INTO events_badname VALUES (1, 'x');
CREATE FOREIGN TABLE events_badtype (id bigint, p point) SERVER emu OPTIONS (table 'main.ins.events');
INSERT INTO events_badtype VALUES (1, '(1,2)');
CREATE FOREIGN TABLE events_missing (id bigint) SERVER emu OPTIONS (table 'main.ins.missing');
INSERT INTO events_missing VALUES (1);
CREATE SERVER emu_sql_only FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http', warehouse_id 'emulator-wh');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu_sql_only
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
CREATE FOREIGN TABLE events_nozb (id bigint) SERVER emu_sql_only OPTIONS (table 'main.ins.events');
INSERT INTO events_nozb VALUES (1);
SELECT count(*) FROM events;

\set VERBOSITY terse
DROP EXTENSION zerobus_fdw CASCADE;
