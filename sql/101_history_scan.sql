--
-- History FDW: reading Delta tables through the SQL Statement Execution API
-- of the emulator.  Setup, every Databricks type converted to PostgreSQL
-- types, IMPORT FOREIGN SCHEMA, options, and the errors a user meets.
--
\getenv http ZB_EMU_HTTP
\set VERBOSITY default
\set SHOW_CONTEXT errors
SET timezone = 'UTC';
SET extra_float_digits = 0;
SET datestyle = 'ISO, YMD';
CREATE EXTENSION zerobus_fdw;

CREATE SERVER emu FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http', warehouse_id 'emulator-wh');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');

-- A remote table with every Databricks type, made through execute_remote:
-- values travel as the parameters :p1, :p2, ...
SELECT zerobus.execute_remote('emu', 'DROP TABLE IF EXISTS main.hist.types');
SELECT zerobus.execute_remote('emu', $$
  CREATE TABLE main.hist.types (
    id INT NOT NULL, tiny TINYINT, small SMALLINT, big BIGINT, flag BOOLEAN,
    f FLOAT, d DOUBLE, amount DECIMAL(12,2), huge DECIMAL(38,10),
    s STRING, vc VARCHAR(10), ch CHAR(3), day DATE, ts TIMESTAMP, ntz TIMESTAMP_NTZ,
    bin BINARY, arr ARRAY<STRING>, nums ARRAY<INT>, m MAP<STRING,INT>,
    st STRUCT<a:INT,b:STRING>, v VARIANT, nested ARRAY<ARRAY<INT>>)$$);
SELECT zerobus.execute_remote('emu', $$
  INSERT INTO main.hist.types VALUES (
    1, CAST(:p1 AS TINYINT), CAST(:p2 AS SMALLINT), CAST(:p3 AS BIGINT), CAST(:p4 AS BOOLEAN),
    CAST(:p5 AS FLOAT), CAST(:p6 AS DOUBLE), CAST(:p7 AS DECIMAL(12,2)),
    CAST(:p8 AS DECIMAL(38,10)), :p9, :p10, :p11, CAST(:p12 AS DATE),
    CAST(:p13 AS TIMESTAMP), CAST(:p14 AS TIMESTAMP_NTZ), unbase64(:p15),
    from_json(:p16, 'ARRAY<STRING>'), from_json(:p17, 'ARRAY<INT>'),
    from_json(:p18, 'MAP<STRING,INT>'), from_json(:p19, 'STRUCT<a:INT,b:STRING>'),
    parse_json(:p20), from_json(:p21, 'ARRAY<ARRAY<INT>>'))$$,
  '-128', '-32768', '9223372036854775807', 'true', '1.5', '-2.25e-5', '-1234567890.12',
  '12345.1234567890', 'héllo "wörld" \ ''quoted''', 'short', 'abc',
  '2024-02-29', '2024-02-29T23:59:59.123456Z', '2024-03-01 12:00:00.5', 'AAECA/8=',
  '["a","b\"c",null]', '[1,2,null]', '{"x":1,"y":null}', '{"a":1,"b":"z"}',
  '{"k":[1,{"z":null}],"t":true}', '[[1,2],[3]]');
SELECT zerobus.execute_remote('emu', 'INSERT INTO main.hist.types (id) VALUES (2)');

CREATE SCHEMA hist;
IMPORT FOREIGN SCHEMA "main.hist" LIMIT TO (types) FROM SERVER emu INTO hist;
\d hist.types
\x on
SELECT * FROM hist.types ORDER BY id;
\x off

-- The same remote columns read as other PostgreSQL types.
CREATE FOREIGN TABLE types_as (
    id integer, tiny integer, big numeric, flag text, f double precision, d real,
    amount double precision, huge text, s varchar, day timestamp, ts timestamp,
    ntz timestamptz, bin text, arr text[], nums integer[], m json, st text, v text)
    SERVER emu OPTIONS (table 'main.hist.types');
\x on
SELECT * FROM types_as WHERE id = 1;
\x off
-- Dates and timestamps also convert to JSON (as strings), numbers as numbers.
CREATE FOREIGN TABLE types_json (id jsonb, day jsonb, ts jsonb, amount jsonb, flag jsonb,
                                 s jsonb, arr jsonb)
    SERVER emu OPTIONS (table 'main.hist.types');
SELECT day, ts, amount, flag, arr FROM types_json WHERE id = '1';

-- A value that does not convert names its column and the remote type.
CREATE FOREIGN TABLE bad_int (id integer, s integer) SERVER emu OPTIONS (table 'main.hist.types');
SELECT * FROM bad_int;
CREATE FOREIGN TABLE bad_small (id integer, big smallint) SERVER emu OPTIONS (table 'main.hist.types');
SELECT * FROM bad_small;
CREATE FOREIGN TABLE bad_json (id integer, s jsonb) SERVER emu OPTIONS (table 'main.hist.types');
SELECT * FROM bad_json;
CREATE FOREIGN TABLE bad_array (id integer, st integer[]) SERVER emu OPTIONS (table 'main.hist.types');
-- (the message and where; array_in's DETAIL is PostgreSQL's and differs between majors)
DO $$
DECLARE
  ctx text;
BEGIN
  PERFORM * FROM bad_array;
EXCEPTION WHEN invalid_text_representation THEN
  GET STACKED DIAGNOSTICS ctx = PG_EXCEPTION_CONTEXT;
  RAISE NOTICE '%; context: %', SQLERRM, split_part(ctx, E'\n', 1);
END $$;
CREATE FOREIGN TABLE bad_nested (id integer, nested integer[]) SERVER emu OPTIONS (table 'main.hist.types');
SELECT * FROM bad_nested WHERE id = 1;
CREATE FOREIGN TABLE bad_elem (id integer, arr integer[]) SERVER emu OPTIONS (table 'main.hist.types');
SELECT * FROM bad_elem WHERE id = 1;

-- column_name maps a column; a query can be the source.
CREATE FOREIGN TABLE renamed (key integer OPTIONS (column_name 'id'), label text OPTIONS (column_name 's'))
    SERVER emu OPTIONS (table 'main.hist.types');
SELECT key, label FROM renamed ORDER BY key;
CREATE FOREIGN TABLE from_query (id integer, twice bigint)
    SERVER emu OPTIONS (query 'SELECT id, id * 2 AS twice FROM main.hist.types');
SELECT * FROM from_query ORDER BY id;
-- a query may end with a comment
CREATE FOREIGN TABLE commented (id integer)
    SERVER emu OPTIONS (query 'SELECT id FROM main.hist.types -- every id');
SELECT * FROM commented WHERE id > 1;
-- the query's output names are the columns: extra ones are ignored, missing ones named
CREATE FOREIGN TABLE wrong_query (id integer, s text)
    SERVER emu OPTIONS (query 'SELECT id AS ident, s FROM main.hist.types');
SELECT * FROM wrong_query;
-- With no table option, the foreign table's name in the server's catalog and schema.
CREATE SERVER emu_hist FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http', warehouse_id 'emulator-wh', catalog 'main', schema 'hist');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu_hist
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
CREATE FOREIGN TABLE types (id integer, s text) SERVER emu_hist;
SELECT id, s FROM types ORDER BY id;

-- IMPORT FOREIGN SCHEMA: LIMIT TO, EXCEPT, a schema named alone (server catalog).
SELECT zerobus.execute_remote('emu', 'CREATE TABLE main.hist.other (k BIGINT NOT NULL, `Mixed Case` STRING)');
SELECT zerobus.execute_remote('emu', 'CREATE TABLE main.hist.third (x DOUBLE)');
CREATE SCHEMA imp1;
IMPORT FOREIGN SCHEMA "main.hist" EXCEPT (types, third) FROM SERVER emu INTO imp1;
\det+ imp1.*
\d imp1.other
CREATE SCHEMA imp2;
IMPORT FOREIGN SCHEMA "hist" FROM SERVER emu_hist INTO imp2;
\det imp2.*
IMPORT FOREIGN SCHEMA "main.nope" FROM SERVER emu INTO imp2;
IMPORT FOREIGN SCHEMA "hist" FROM SERVER emu INTO imp2;
IMPORT FOREIGN SCHEMA "a.b.c" FROM SERVER emu INTO imp2;

-- ANALYZE takes the remote row count (no sample), for the planner.
ANALYZE hist.types;
SELECT reltuples FROM pg_class WHERE oid = 'hist.types'::regclass;

-- Options of the history FDW are validated like the rest.
ALTER SERVER emu OPTIONS (ADD wait_timeout '3s');
ALTER SERVER emu OPTIONS (ADD wait_timeout '51s');
ALTER SERVER emu OPTIONS (ADD disposition 'somewhere');
ALTER SERVER emu OPTIONS (ADD fdw_tuple_cost '-1');
ALTER SERVER emu OPTIONS (ADD statement_timeout 'soon');
ALTER FOREIGN TABLE renamed OPTIONS (ADD wait_timeout '5s');
ALTER SERVER emu OPTIONS (ADD wait_timeout '5s', ADD disposition 'external_links',
                          ADD statement_timeout '1min', ADD fdw_startup_cost '50',
                          ADD fdw_tuple_cost '0.1');
-- results through EXTERNAL_LINKS read the same
SELECT key, label FROM renamed ORDER BY key;
ALTER SERVER emu OPTIONS (DROP wait_timeout, DROP disposition, DROP statement_timeout,
                          DROP fdw_startup_cost, DROP fdw_tuple_cost);

-- Errors a user meets: each names what to fix.
CREATE FOREIGN TABLE missing (id integer) SERVER emu OPTIONS (table 'main.hist.missing');
SELECT * FROM missing;
CREATE FOREIGN TABLE missing_col (id integer, nope text) SERVER emu OPTIONS (table 'main.hist.types');
SELECT * FROM missing_col;
CREATE SERVER emu_nowh FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (workspace_url :'http');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu_nowh
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
CREATE FOREIGN TABLE nowh (id integer) SERVER emu_nowh OPTIONS (table 'main.hist.types');
SELECT * FROM nowh;
ALTER SERVER emu_nowh OPTIONS (ADD warehouse_id 'no-such-warehouse');
SELECT * FROM nowh;
CREATE SERVER emu_nomap FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http', warehouse_id 'emulator-wh');
CREATE FOREIGN TABLE nomap (id integer) SERVER emu_nomap OPTIONS (table 'main.hist.types');
SELECT * FROM nomap;
-- planning needs no user mapping and no network: EXPLAIN works offline
EXPLAIN (COSTS OFF) SELECT * FROM nomap;
CREATE USER MAPPING FOR CURRENT_USER SERVER emu_nomap
    OPTIONS (client_id 'zb-test-client', client_secret 'wrong-secret');
\set VERBOSITY terse
SELECT * FROM nomap;
\set VERBOSITY default
-- the secret never appears in the error
DO $$
DECLARE msg text; detail text; hint text; ctx text;
BEGIN
  PERFORM * FROM nomap;
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
                          hint = PG_EXCEPTION_HINT, ctx = PG_EXCEPTION_CONTEXT;
  RAISE NOTICE 'secret in the error: %',
    concat_ws(' ', msg, detail, hint, ctx) LIKE '%wrong-secret%';
END $$;
-- execute_remote is not for everyone
CREATE ROLE zb_hist_user;
GRANT USAGE ON FOREIGN SERVER emu TO zb_hist_user;
SET ROLE zb_hist_user;
SELECT zerobus.execute_remote('emu', 'DROP TABLE main.hist.types');
RESET ROLE;
REVOKE USAGE ON FOREIGN SERVER emu FROM zb_hist_user;
DROP ROLE zb_hist_user;

-- The identifier quoting every pushed-down name gets.
SELECT zerobus.quote_ident(x) FROM (VALUES ('plain'), ('with space'), ('back`tick'), ('``'),
    ('it''s "q" \ -- /* :p1')) v(x);

\set VERBOSITY terse
DROP EXTENSION zerobus_fdw CASCADE;
