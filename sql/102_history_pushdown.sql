--
-- History FDW pushdown: the Remote SQL of each case (EXPLAIN VERBOSE), and
-- the same query's result on the foreign table and on a local table holding
-- the same rows.
--
\getenv http ZB_EMU_HTTP
\set VERBOSITY default
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
CREATE EXTENSION zerobus_fdw;
CREATE SERVER emu FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http', warehouse_id 'emulator-wh');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');

-- 40 rows, with NULLs everywhere, negative and zero numbers, mixed-case and
-- non-ASCII strings, LIKE wildcards and backslashes in the data.
CREATE TABLE lt (
    id bigint NOT NULL, cur text COLLATE "C", amount numeric(12,2), qty integer,
    small smallint, rate double precision, ok boolean, ts timestamptz,
    ntz timestamp, day date, note text COLLATE "C", raw bytea);
INSERT INTO lt
SELECT i,
       (ARRAY['USD', 'EUR', 'usd', 'GBP', NULL, 'JPY', 'Ünï'])[1 + i % 7],
       CASE WHEN i % 5 = 4 THEN NULL ELSE round(i * 37.25 - 200, 2) END,
       CASE WHEN i % 6 = 5 THEN NULL ELSE i % 4 END,
       (i % 3 - 1)::smallint,
       CASE WHEN i % 7 = 6 THEN NULL ELSE i * 0.5 - 3 END,
       CASE WHEN i % 4 = 3 THEN NULL ELSE i % 2 = 0 END,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '7 hours 13 minutes 1.000123 seconds',
       timestamp '2024-03-01 12:00:00' + i * interval '1 day 1 second',
       date '2024-01-15' + i * 3,
       CASE i % 5 WHEN 0 THEN 'plain' WHEN 1 THEN '100% sure' WHEN 2 THEN 'under_score'
                  WHEN 3 THEN 'back\slash' END,
       CASE WHEN i % 3 = 0 THEN NULL ELSE decode(md5(i::text), 'hex') END
  FROM generate_series(1, 40) i;

SELECT zerobus.execute_remote('emu', 'DROP TABLE IF EXISTS main.pushdown.tx');
SELECT zerobus.execute_remote('emu', 'CREATE TABLE main.pushdown.tx (id BIGINT NOT NULL,
    cur STRING, amount DECIMAL(12,2), qty INT, small SMALLINT, rate DOUBLE, ok BOOLEAN,
    ts TIMESTAMP, ntz TIMESTAMP_NTZ, day DATE, note STRING, raw BINARY)');
SELECT sum(zerobus.execute_remote('emu', 'INSERT INTO main.pushdown.tx VALUES (
    CAST(:p1 AS BIGINT), :p2, CAST(:p3 AS DECIMAL(12,2)), CAST(:p4 AS INT),
    CAST(:p5 AS SMALLINT), CAST(:p6 AS DOUBLE), CAST(:p7 AS BOOLEAN), CAST(:p8 AS TIMESTAMP),
    CAST(:p9 AS TIMESTAMP_NTZ), CAST(:p10 AS DATE), :p11, unbase64(:p12))',
    id::text, cur, amount::text, qty::text, small::text, rate::text, ok::text,
    to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    to_char(ntz, 'YYYY-MM-DD HH24:MI:SS.US'), day::text, note, encode(raw, 'base64')))
    AS rows_inserted FROM lt;

CREATE FOREIGN TABLE ft (
    id bigint NOT NULL, cur text COLLATE "C", amount numeric(12,2), qty integer,
    small smallint, rate double precision, ok boolean, ts timestamptz,
    ntz timestamp, day date, note text COLLATE "C", raw bytea)
    SERVER emu OPTIONS (table 'main.pushdown.tx');

-- same(q): run q with $T as ft and as lt; equal results (as multisets, or in
-- order when ordered) print "same (n rows)".
CREATE FUNCTION pg_temp.same(q text, ordered boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  f text[];
  l text[];
  agg text := CASE WHEN ordered THEN 'array_agg(t::text)' ELSE 'array_agg(t::text ORDER BY t::text)' END;
BEGIN
  EXECUTE format('SELECT %s FROM (%s) t', agg, replace(q, '$T', 'ft')) INTO f;
  EXECUTE format('SELECT %s FROM (%s) t', agg, replace(q, '$T', 'lt')) INTO l;
  IF f IS NOT DISTINCT FROM l THEN
    RETURN format('same (%s rows)', coalesce(cardinality(f), 0));
  END IF;
  RETURN format('DIFFERENT: foreign %s local %s', f, l);
END $$;

-- EXPLAIN ANALYZE without timings or buffers, row counts as integers (18
-- prints them with two decimals)
CREATE FUNCTION pg_temp.explain_analyze(q text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  line text;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF) ' || q
  LOOP
    RETURN NEXT regexp_replace(line, 'rows=(\d+)\.00 ', 'rows=\1 ', 'g');
  END LOOP;
END $$;

-- every row and column converts back to what was inserted
SELECT pg_temp.same('SELECT * FROM $T');
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft;

-- ===== WHERE =====
-- comparisons on every type
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE qty = 2;
SELECT pg_temp.same('SELECT id FROM $T WHERE qty = 2');
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE amount > 100.5 AND amount <= 1000;
SELECT pg_temp.same('SELECT id FROM $T WHERE amount > 100.5 AND amount <= 1000');
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE cur <> 'USD' AND cur >= 'GBP';
SELECT pg_temp.same('SELECT id FROM $T WHERE cur <> ''USD'' AND cur >= ''GBP''');
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE ok AND NOT ok IS NULL;
SELECT pg_temp.same('SELECT id FROM $T WHERE ok AND NOT ok IS NULL');
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE ok = false;
SELECT pg_temp.same('SELECT id FROM $T WHERE ok = false');
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE day BETWEEN '2024-02-01' AND '2024-03-01';
SELECT pg_temp.same('SELECT id FROM $T WHERE day BETWEEN ''2024-02-01'' AND ''2024-03-01''');
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE ts >= '2024-01-05 12:00:00+02' AND ts < '2024-01-09';
SELECT pg_temp.same('SELECT id FROM $T WHERE ts >= ''2024-01-05 12:00:00+02'' AND ts < ''2024-01-09''');
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE ntz > '2024-03-20 12:00:19' AND ntz > day;
SELECT pg_temp.same('SELECT id FROM $T WHERE ntz > ''2024-03-20 12:00:19'' AND ntz > day');
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE rate < 2.5 AND small = -1;
SELECT pg_temp.same('SELECT id FROM $T WHERE rate < 2.5 AND small = -1');
-- boolean logic, IS [NOT] NULL
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE (qty = 1 OR cur IS NULL) AND NOT (amount IS NOT NULL AND id > 30);
SELECT pg_temp.same('SELECT id FROM $T WHERE (qty = 1 OR cur IS NULL) AND NOT (amount IS NOT NULL AND id > 30)');
-- IN, = ANY, NOT IN, <> ALL, with NULL elements
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE cur IN ('EUR', 'Ünï', NULL);
SELECT pg_temp.same('SELECT id FROM $T WHERE cur IN (''EUR'', ''Ünï'', NULL)');
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE qty = ANY ('{1,3}') AND id <> ALL (ARRAY[1, 5, id - 0]);
SELECT pg_temp.same('SELECT id FROM $T WHERE qty = ANY (''{1,3}'') AND id <> ALL (ARRAY[1, 5, 7])');
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE cur NOT IN ('USD', 'usd');
SELECT pg_temp.same('SELECT id FROM $T WHERE cur NOT IN (''USD'', ''usd'')');
-- LIKE (with %, _ and \ in the data), NOT LIKE
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE note LIKE '%\%%' OR note LIKE 'under\_%';
SELECT pg_temp.same('SELECT id FROM $T WHERE note LIKE ''%\%%'' OR note LIKE ''under\_%''');
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE note NOT LIKE '%\\%' AND cur LIKE 'U__';
SELECT pg_temp.same('SELECT id FROM $T WHERE note NOT LIKE ''%\\%'' AND cur LIKE ''U__''');
-- case mapping (ILIKE, lower, upper) follows the collation: only under one
-- that maps non-ASCII letters like Databricks does; "C" maps ASCII only
-- (under an ICU collation: 105_history_pushdown_icu)
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE cur ILIKE 'us%';
-- functions, CASE, coalesce, arithmetic, widening casts
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE length(note) > 6 AND abs(amount) > 50 AND round(amount, -1) <> 0;
SELECT pg_temp.same('SELECT id FROM $T WHERE length(note) > 6 AND abs(amount) > 50 AND round(amount, -1) <> 0');
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE coalesce(qty, -1) < 1 AND CASE WHEN ok THEN amount ELSE 0 END >= 0;
SELECT pg_temp.same('SELECT id FROM $T WHERE coalesce(qty, -1) < 1 AND CASE WHEN ok THEN amount ELSE 0 END >= 0');
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE (id + qty) * 2 > 30 AND id % 3 = 1 AND -rate < 0 AND qty > 1.5 AND rate / 2 > small;
SELECT pg_temp.same('SELECT id FROM $T WHERE (id + qty) * 2 > 30 AND id % 3 = 1 AND -rate < 0 AND qty > 1.5 AND rate / 2 > small');
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE note || cur = 'plainUSD';
SELECT pg_temp.same('SELECT id FROM $T WHERE note || cur = ''plainUSD''');
-- not pushed (evaluated locally): integer division truncates in PostgreSQL,
-- float round is half-even, volatile functions, casts to text
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE qty / 2 = 1 AND round(rate) >= 2 AND random() >= 0 AND id::text LIKE '%6';
SELECT pg_temp.same('SELECT id FROM $T WHERE qty / 2 = 1 AND round(rate) >= 2 AND random() >= 0 AND id::text LIKE ''%6''');
-- stable expressions with no column are evaluated once and sent as parameters
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE ts > now() - interval '100 years' AND day < current_date + 36500;
SELECT pg_temp.same('SELECT id FROM $T WHERE ts > now() - interval ''100 years'' AND day < current_date + 36500');
-- parameters of prepared statements, custom and generic plans
PREPARE by_cur(text, int) AS SELECT id FROM ft WHERE cur = $1 AND qty >= $2 ORDER BY id;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE by_cur('USD', 1);
EXECUTE by_cur('USD', 1);
SET plan_cache_mode = force_generic_plan;
PREPARE by_cur_generic(text, int) AS SELECT id FROM ft WHERE cur = $1 AND qty >= $2 ORDER BY id;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE by_cur_generic('usd', 0);
EXECUTE by_cur_generic('usd', 0);
EXECUTE by_cur_generic(NULL, 0);
RESET plan_cache_mode;

-- ===== ORDER BY, LIMIT, OFFSET =====
EXPLAIN (VERBOSE, COSTS OFF) SELECT id, amount FROM ft ORDER BY amount DESC, id;
SELECT pg_temp.same('SELECT id, amount FROM $T ORDER BY amount DESC, id', true);
EXPLAIN (VERBOSE, COSTS OFF) SELECT id, cur FROM ft ORDER BY cur NULLS FIRST, ts DESC NULLS LAST;
SELECT pg_temp.same('SELECT id, cur FROM $T ORDER BY cur NULLS FIRST, ts DESC NULLS LAST', true);
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE qty > 0 ORDER BY ts DESC LIMIT 5 OFFSET 3;
SELECT pg_temp.same('SELECT id FROM $T WHERE qty > 0 ORDER BY ts DESC LIMIT 5 OFFSET 3', true);
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft ORDER BY id OFFSET 37;
SELECT pg_temp.same('SELECT id FROM $T ORDER BY id OFFSET 37', true);
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft ORDER BY id LIMIT ALL;
EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*) FROM (SELECT id FROM ft LIMIT 7) s;
SELECT count(*) FROM (SELECT id FROM ft LIMIT 7) s;
-- a condition evaluated locally keeps LIMIT local (else fewer rows would come back)
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft WHERE id::text LIKE '1%' ORDER BY id LIMIT 3;
SELECT pg_temp.same('SELECT id FROM $T WHERE id::text LIKE ''1%'' ORDER BY id LIMIT 3', true);
-- ORDER BY what cannot be sorted remotely: sorted locally
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft ORDER BY id::text LIMIT 3;
-- WITH TIES is not pushed down
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft ORDER BY qty FETCH FIRST 2 ROWS WITH TIES;
SELECT pg_temp.same('SELECT id FROM $T ORDER BY qty FETCH FIRST 2 ROWS WITH TIES');

-- ===== aggregates =====
EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*) FROM ft;
SELECT count(*) FROM ft;
EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*), count(cur), count(DISTINCT cur), sum(amount), sum(qty), sum(id), sum(rate), min(cur), max(note), min(ts), max(day), min(ntz), avg(rate) FROM ft;
SELECT pg_temp.same('SELECT count(*), count(cur), count(DISTINCT cur), sum(amount), sum(qty), sum(id), sum(rate), min(cur), max(note), min(ts), max(day), min(ntz), avg(rate) FROM $T');
-- avg of integers and numerics: remote sum and count, divided here exactly as PostgreSQL does
EXPLAIN (VERBOSE, COSTS OFF) SELECT avg(amount), avg(qty), avg(id), avg(DISTINCT qty) FROM ft;
SELECT avg(amount), avg(qty), avg(id), avg(DISTINCT qty) FROM ft;
SELECT pg_temp.same('SELECT avg(amount), avg(qty), avg(id), avg(DISTINCT qty) FROM $T');
-- GROUP BY, HAVING, ORDER BY on aggregates, LIMIT
EXPLAIN (VERBOSE, COSTS OFF) SELECT cur, count(*), sum(amount), avg(amount) FROM ft WHERE qty IS NOT NULL GROUP BY cur HAVING count(*) > 2 ORDER BY sum(amount) DESC NULLS LAST, cur;
SELECT cur, count(*), sum(amount), avg(amount) FROM ft WHERE qty IS NOT NULL GROUP BY cur HAVING count(*) > 2 ORDER BY sum(amount) DESC NULLS LAST, cur;
SELECT pg_temp.same('SELECT cur, count(*), sum(amount), avg(amount) FROM $T WHERE qty IS NOT NULL GROUP BY cur HAVING count(*) > 2 ORDER BY sum(amount) DESC NULLS LAST, cur', true);
EXPLAIN (VERBOSE, COSTS OFF) SELECT ok, qty, max(amount) - min(amount) AS spread FROM ft GROUP BY ok, qty ORDER BY ok, qty LIMIT 4;
SELECT pg_temp.same('SELECT ok, qty, max(amount) - min(amount) AS spread FROM $T GROUP BY ok, qty ORDER BY ok, qty LIMIT 4', true);
EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*) FROM ft GROUP BY qty % 2;
SELECT pg_temp.same('SELECT count(*) FROM $T GROUP BY qty % 2');
-- an expression over a remote avg is computed locally from the pushed sum and count
EXPLAIN (VERBOSE, COSTS OFF) SELECT cur, round(avg(qty) * 10, 3) FROM ft GROUP BY cur;
SELECT pg_temp.same('SELECT cur, round(avg(qty) * 10, 3) FROM $T GROUP BY cur');
-- HAVING that cannot run remotely keeps the whole aggregation local
EXPLAIN (VERBOSE, COSTS OFF) SELECT cur, count(*) FROM ft GROUP BY cur HAVING avg(qty) > 1;
SELECT pg_temp.same('SELECT cur, count(*) FROM $T GROUP BY cur HAVING avg(qty) > 1');
-- a local WHERE keeps aggregation local; so does an aggregate with no Databricks match
EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*) FROM ft WHERE id::text LIKE '2%';
EXPLAIN (VERBOSE, COSTS OFF) SELECT string_agg(cur, ',') FROM ft;
EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*) FILTER (WHERE ok) FROM ft;
SELECT pg_temp.same('SELECT count(*) FILTER (WHERE ok) FROM $T');
-- an aggregate over an empty set
SELECT pg_temp.same('SELECT count(*), sum(qty), avg(qty), min(cur) FROM $T WHERE id < 0');

-- ===== rescans =====
-- same parameters: the result is re-read, not re-run; new parameters: a new statement
EXPLAIN (VERBOSE, COSTS OFF)
SELECT l.q, (SELECT count(*) FROM ft WHERE ft.qty = l.q) FROM (VALUES (0), (1), (2), (NULL)) l(q);
SELECT l.q, (SELECT count(*) FROM ft WHERE ft.qty = l.q) FROM (VALUES (0), (1), (2), (NULL)) l(q);
-- the inner side of a nested loop, rescanned with no parameter: one chunk, read twice
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SET enable_material = off;
ALTER SERVER emu OPTIONS (ADD fdw_startup_cost '0', ADD fdw_tuple_cost '0');
SELECT pg_temp.explain_analyze('SELECT l.id, ft.cur FROM generate_series(3, 4) l(id) JOIN ft ON ft.id = l.id');
SELECT l.id, ft.cur FROM generate_series(3, 4) l(id) JOIN ft ON ft.id = l.id ORDER BY 1;
ALTER SERVER emu OPTIONS (DROP fdw_startup_cost, DROP fdw_tuple_cost);
RESET enable_hashjoin;
RESET enable_mergejoin;
RESET enable_material;

-- ===== DELETE and TRUNCATE run remotely =====
EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM ft WHERE cur = 'JPY' OR amount < -100;
DELETE FROM ft WHERE cur = 'JPY' OR amount < -100;
DELETE FROM lt WHERE cur = 'JPY' OR amount < -100;
SELECT pg_temp.same('SELECT * FROM $T');
-- a condition that cannot run remotely cannot delete (no row identity)
DELETE FROM ft WHERE id::text = '7';
DELETE FROM ft RETURNING id;
UPDATE ft SET qty = 0;
EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM ft;
TRUNCATE ft;
SELECT count(*) FROM ft;

\set VERBOSITY terse
DROP EXTENSION zerobus_fdw CASCADE;
