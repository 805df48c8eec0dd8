--
-- Injection-proof pushdown: values and identifiers full of quotes, backticks,
-- backslashes, :name look-alikes and comment markers.  Values reach
-- Databricks only as statement parameters, identifiers only backtick-quoted
-- (t/101_history_fdw.pl checks what the emulator received).
--
\getenv http ZB_EMU_HTTP
\set VERBOSITY default
CREATE EXTENSION zerobus_fdw;
CREATE SERVER emu FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http', warehouse_id 'emulator-wh');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');

-- Nasty names: the remote columns are created with zerobus.quote_ident.
CREATE TABLE names (pos int, name text);
INSERT INTO names VALUES
  (1, 'we`ird "col'), (2, 'it''s -- not a comment'), (3, 'back\slash /* x */'),
  (4, ':p1'), (5, '`'), (6, '; DROP TABLE x; --');
SELECT zerobus.execute_remote('emu', 'DROP TABLE IF EXISTS main.inj.t');
SELECT zerobus.execute_remote('emu', 'CREATE TABLE main.inj.t (id INT NOT NULL, '
    || string_agg(zerobus.quote_ident(name) || ' STRING', ', ' ORDER BY pos) || ')')
  FROM names;
-- Nasty values, as parameters.
CREATE TABLE lv (id int, a text COLLATE "C", b text COLLATE "C", c text COLLATE "C",
                 d text COLLATE "C", e text COLLATE "C", f text COLLATE "C");
INSERT INTO lv VALUES
  (1, 'it''s', 'x'' OR ''1''=''1', 'back\slash', ':p1', '-- comment', '/* not */ a comment'),
  (2, '`tick`', ':p2 :name ?', E'line\nbreak', '\''', '"; DROP TABLE t; --', '%_\%'),
  (3, '', NULL, '\', ':p1:p2', '--', '*/'),
  (4, 'Ünï''`\', 'plain', 'plain', 'plain', 'plain', 'plain');
SELECT sum(zerobus.execute_remote('emu',
    'INSERT INTO main.inj.t VALUES (CAST(:p1 AS INT), :p2, :p3, :p4, :p5, :p6, :p7)',
    id::text, a, b, c, d, e, f)) FROM lv;

CREATE FOREIGN TABLE ft (
    id int,
    a text OPTIONS (column_name 'we`ird "col') COLLATE "C",
    b text OPTIONS (column_name 'it''s -- not a comment') COLLATE "C",
    c text OPTIONS (column_name 'back\slash /* x */') COLLATE "C",
    d text OPTIONS (column_name ':p1') COLLATE "C",
    e text OPTIONS (column_name '`') COLLATE "C",
    f text OPTIONS (column_name '; DROP TABLE x; --') COLLATE "C")
    SERVER emu OPTIONS (table 'main.inj.t');

CREATE FUNCTION pg_temp.same(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE f text[]; l text[];
BEGIN
  EXECUTE format('SELECT array_agg(t::text ORDER BY t::text) FROM (%s) t', replace(q, '$T', 'ft')) INTO f;
  EXECUTE format('SELECT array_agg(t::text ORDER BY t::text) FROM (%s) t', replace(q, '$T', 'lv')) INTO l;
  RETURN CASE WHEN f IS NOT DISTINCT FROM l THEN format('same (%s rows)', coalesce(cardinality(f), 0))
              ELSE format('DIFFERENT: %s / %s', f, l) END;
END $$;

SELECT pg_temp.same('SELECT * FROM $T');
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id FROM ft WHERE a = 'it''s' OR b = 'x'' OR ''1''=''1' OR c = 'back\slash' OR d = ':p1'
    OR e = '-- comment' OR f = '/* not */ a comment';
SELECT pg_temp.same($q$SELECT id FROM $T WHERE a = 'it''s' OR b = 'x'' OR ''1''=''1'
    OR c = 'back\slash' OR d = ':p1' OR e = '-- comment' OR f = '/* not */ a comment'$q$);
SELECT id FROM ft WHERE b = 'x'' OR ''1''=''1';
SELECT id FROM ft WHERE b = 'x'' OR ''1''=''1'' --';
SELECT id FROM ft WHERE a IN ('`tick`', 'Ünï''`\', ':p1') ORDER BY id;
SELECT id FROM ft WHERE c = E'line\nbreak' AND d = '\''' AND b LIKE ':p2 %';
SELECT id FROM ft WHERE f LIKE '\%\_\\\%' AND e LIKE '"; DROP%';
SELECT id FROM ft WHERE a = '' AND c = '\' AND d = ':p1:p2' AND e = '--' AND f = '*/';
-- ordered and grouped by the nasty columns
EXPLAIN (VERBOSE, COSTS OFF) SELECT d, count(*) FROM ft GROUP BY d ORDER BY d;
SELECT d, count(*) FROM ft GROUP BY d ORDER BY d;
SELECT pg_temp.same('SELECT d, count(*), max(e), min(f) FROM $T GROUP BY d HAVING count(*) >= 1');
-- a nasty foreign table name, used as the remote name: quoted, and not found
CREATE FOREIGN TABLE "bad`name; --" (id int) SERVER emu;
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM "bad`name; --";
\set VERBOSITY terse
SELECT * FROM "bad`name; --";
\set VERBOSITY default
-- DELETE with nasty values and names
EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM ft WHERE d = '\''' OR f = '*/';
DELETE FROM ft WHERE d = '\''' OR f = '*/';
SELECT id FROM ft ORDER BY id;

\set VERBOSITY terse
DROP EXTENSION zerobus_fdw CASCADE;
