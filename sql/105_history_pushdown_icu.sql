--
-- History FDW pushdown under an ICU collation: case mapping is shipped only
-- under a collation that maps non-ASCII letters as Databricks does, ordering
-- only under a code-point one (docs/DESIGN.md, "Deparse").  Needs a server
-- built with ICU; PostgreSQL 18 as CI builds it (--without-icu) has none,
-- and this file stops at once there (expected/105_history_pushdown_icu_1.out).
--
SELECT NOT EXISTS (SELECT FROM pg_collation WHERE collname = 'und-x-icu') AS no_icu \gset
\if :no_icu
\echo 'no ICU collations in this server: skipped'
\quit
\endif
\getenv http ZB_EMU_HTTP
\set VERBOSITY default
CREATE EXTENSION zerobus_fdw;
CREATE SERVER emu FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http', warehouse_id 'emulator-wh');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');

-- mixed-case and non-ASCII strings, locally and remotely
CREATE TABLE lt_icu (id bigint NOT NULL, cur text COLLATE "C");
INSERT INTO lt_icu SELECT i, (ARRAY['USD', 'EUR', 'usd', 'GBP', NULL, 'JPY', 'Ünï'])[1 + i % 7]
  FROM generate_series(1, 40) i;
SELECT zerobus.execute_remote('emu', 'DROP TABLE IF EXISTS main.pushdown.icu');
SELECT zerobus.execute_remote('emu', 'CREATE TABLE main.pushdown.icu (id BIGINT NOT NULL, cur STRING)');
SELECT sum(zerobus.execute_remote('emu', 'INSERT INTO main.pushdown.icu VALUES (CAST(:p1 AS BIGINT), :p2)',
                                  id::text, cur)) AS rows_inserted FROM lt_icu;
CREATE FOREIGN TABLE ft_icu (id bigint NOT NULL, cur text COLLATE "C")
    SERVER emu OPTIONS (table 'main.pushdown.icu');

-- same(q): q on ft_icu and on lt_icu ($T) give the same rows
CREATE FUNCTION pg_temp.same(q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  f text[];
  l text[];
BEGIN
  EXECUTE format('SELECT array_agg(t::text ORDER BY t::text) FROM (%s) t', replace(q, '$T', 'ft_icu')) INTO f;
  EXECUTE format('SELECT array_agg(t::text ORDER BY t::text) FROM (%s) t', replace(q, '$T', 'lt_icu')) INTO l;
  IF f IS NOT DISTINCT FROM l THEN
    RETURN format('same (%s rows)', coalesce(cardinality(f), 0));
  END IF;
  RETURN format('DIFFERENT: foreign %s local %s', f, l);
END $$;

-- case mapping under ICU's root collation (maps non-ASCII letters): shipped
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft_icu WHERE cur COLLATE "und-x-icu" ILIKE 'us%' AND lower(cur COLLATE "und-x-icu") <> 'ünï';
SELECT pg_temp.same('SELECT id FROM $T WHERE cur COLLATE "und-x-icu" ILIKE ''us%'' AND lower(cur COLLATE "und-x-icu") <> ''ünï''');
-- ordering comparisons of text only under a code-point collation: not shipped
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft_icu WHERE cur COLLATE "und-x-icu" > 'a';
SELECT pg_temp.same('SELECT id FROM $T WHERE cur COLLATE "und-x-icu" > ''a''');
-- ORDER BY what cannot be sorted remotely: sorted locally
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM ft_icu ORDER BY cur COLLATE "und-x-icu", id LIMIT 3;

SELECT zerobus.execute_remote('emu', 'DROP TABLE main.pushdown.icu');
DROP TABLE lt_icu;
DROP EXTENSION zerobus_fdw CASCADE;
