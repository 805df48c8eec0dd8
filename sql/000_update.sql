--
-- The update path: CREATE EXTENSION ... VERSION '0.1' followed by ALTER
-- EXTENSION ... UPDATE ends with exactly the objects of a fresh install of
-- the current version (docs/DESIGN.md, "Versions").  Both are described
-- completely, without OIDs, and compared; then a series of one-line changes
-- shows that the description notices each kind of difference.
--
\set VERBOSITY terse
SET client_min_messages = warning;

-- Privileges as sorted grantor:grantee:privilege[*] items; NULL (the
-- built-in default) expanded, so that an explicit default compares equal.
CREATE FUNCTION pg_temp.acl(acl aclitem[], kind "char", owner oid) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT coalesce(string_agg(format('%s:%s:%s%s',
                                    pg_get_userbyid(a.grantor),
                                    CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
                                    a.privilege_type, CASE WHEN a.is_grantable THEN '*' ELSE '' END),
                             ' ' ORDER BY 1), '(none)')
    FROM aclexplode(coalesce(acl, acldefault(kind, owner))) a
$$;

-- Everything an installation of zerobus_fdw consists of, one row per fact:
-- (object, aspect, value).  Objects are the extension's members and,
-- recursively, what belongs to them (columns, constraints, indexes, row
-- types, rules, triggers, policies, sequences of serial columns).
CREATE TEMP VIEW zb_description AS
WITH RECURSIVE ext AS (
    SELECT * FROM pg_extension WHERE extname = 'zerobus_fdw'
), objs(classid, objid, member) AS (
    SELECT d.classid, d.objid, true
      FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
    UNION
    SELECT d.classid, d.objid, false
      FROM pg_depend d JOIN objs o ON d.refclassid = o.classid AND d.refobjid = o.objid
     WHERE d.deptype IN ('a', 'i')
), obj AS (
    -- an object reached both as member and as part counts once, as member.
    -- Left out, being named after OIDs: TOAST tables (storage) and the
    -- internal triggers of foreign keys (the constraint describes them).
    SELECT classid, objid, bool_or(member) AS member,
           pg_describe_object(classid, objid, 0) AS name
      FROM objs
     WHERE NOT (classid = 'pg_class'::regclass
                AND (SELECT relnamespace FROM pg_class WHERE oid = objid) = 'pg_toast'::regnamespace)
       AND NOT (classid = 'pg_type'::regclass
                AND (SELECT typnamespace FROM pg_type WHERE oid = objid) = 'pg_toast'::regnamespace)
       AND NOT (classid = 'pg_trigger'::regclass
                AND (SELECT tgisinternal FROM pg_trigger WHERE oid = objid))
     GROUP BY classid, objid
)
-- which objects exist, and which are members
SELECT name AS object, 'exists' AS aspect, CASE WHEN member THEN 'member' ELSE 'part' END AS value
  FROM obj
UNION ALL
-- the extension itself: schema, relocatability, configuration tables for pg_dump
SELECT 'extension zerobus_fdw', 'schema', extnamespace::regnamespace::text FROM ext
UNION ALL
SELECT 'extension zerobus_fdw', 'relocatable', extrelocatable::text FROM ext
UNION ALL
SELECT 'extension zerobus_fdw', 'config dump',
       format('%s where %L', c.cfg::regclass, ext.extcondition[c.n])
  FROM ext, unnest(ext.extconfig) WITH ORDINALITY AS c(cfg, n)
UNION ALL
-- functions and procedures: the full definition (language, body, volatility,
-- strictness, SECURITY DEFINER, SET options, parallel safety, cost, rows),
-- the same attributes spelled out, and privileges
SELECT o.name, 'definition', pg_get_functiondef(p.oid)
  FROM obj o JOIN pg_proc p ON o.classid = 'pg_proc'::regclass AND p.oid = o.objid
 WHERE p.prokind <> 'a'
UNION ALL
SELECT o.name, 'attributes',
       format('kind=%s secdef=%s config=%s volatile=%s strict=%s leakproof=%s parallel=%s returns=%s owner=%s',
              p.prokind, p.prosecdef, p.proconfig, p.provolatile, p.proisstrict, p.proleakproof,
              p.proparallel, pg_get_function_result(p.oid), pg_get_userbyid(p.proowner))
  FROM obj o JOIN pg_proc p ON o.classid = 'pg_proc'::regclass AND p.oid = o.objid
UNION ALL
SELECT o.name, 'privileges', pg_temp.acl(p.proacl, 'f', p.proowner)
  FROM obj o JOIN pg_proc p ON o.classid = 'pg_proc'::regclass AND p.oid = o.objid
UNION ALL
-- relations: kind and options, privileges, view definitions, index definitions
SELECT o.name, 'relation',
       format('kind=%s persistence=%s options=%s rls=%s force_rls=%s replica_identity=%s owner=%s',
              c.relkind, c.relpersistence, c.reloptions, c.relrowsecurity, c.relforcerowsecurity,
              c.relreplident, pg_get_userbyid(c.relowner))
  FROM obj o JOIN pg_class c ON o.classid = 'pg_class'::regclass AND c.oid = o.objid
UNION ALL
SELECT o.name, 'privileges',
       pg_temp.acl(c.relacl, (CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char", c.relowner)
  FROM obj o JOIN pg_class c ON o.classid = 'pg_class'::regclass AND c.oid = o.objid
 WHERE c.relkind NOT IN ('i', 'I', 'c')
UNION ALL
SELECT o.name, 'view definition', pg_get_viewdef(c.oid)
  FROM obj o JOIN pg_class c ON o.classid = 'pg_class'::regclass AND c.oid = o.objid
 WHERE c.relkind IN ('v', 'm')
UNION ALL
SELECT o.name, 'index definition', pg_get_indexdef(c.oid)
  FROM obj o JOIN pg_class c ON o.classid = 'pg_class'::regclass AND c.oid = o.objid
 WHERE c.relkind IN ('i', 'I')
UNION ALL
SELECT o.name, 'sequence',
       format('type=%s start=%s increment=%s min=%s max=%s cache=%s cycle=%s owned_by=%s',
              s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
              s.seqcycle, pg_get_serial_sequence_owner.owner)
  FROM obj o JOIN pg_sequence s ON o.classid = 'pg_class'::regclass AND s.seqrelid = o.objid
  LEFT JOIN LATERAL (SELECT pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid) AS owner
                       FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
                        AND d.deptype IN ('a', 'i') AND d.refobjsubid <> 0) pg_get_serial_sequence_owner ON true
UNION ALL
-- columns, in their order: type, nullability, default, identity, generation,
-- collation, options, privileges (of tables, views and composite types)
SELECT pg_describe_object('pg_class'::regclass, c.oid, a.attnum), 'column',
       format('position=%s type=%s not_null=%s default=%s identity=%s generated=%s collation=%s options=%s privileges=%s',
              row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
              format_type(a.atttypid, a.atttypmod), a.attnotnull,
              pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated,
              CASE WHEN a.attcollation <> 0 THEN a.attcollation::regcollation::text END,
              -- (pg_attver, which recent minor releases keep in attoptions, numbers
              -- the column's version: server bookkeeping, not a definition)
              (SELECT array_agg(opt ORDER BY opt) FROM unnest(a.attoptions) opt
                WHERE opt NOT LIKE 'pg\_attver=%'), a.attacl)
  FROM obj o JOIN pg_class c ON o.classid = 'pg_class'::regclass AND c.oid = o.objid
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
 WHERE c.relkind NOT IN ('i', 'I', 'S')
UNION ALL
-- constraints (of tables and domains), triggers, policies, rules
SELECT o.name, 'constraint', pg_get_constraintdef(k.oid)
  FROM obj o JOIN pg_constraint k ON o.classid = 'pg_constraint'::regclass AND k.oid = o.objid
UNION ALL
SELECT o.name, 'trigger', format('%s enabled=%s', pg_get_triggerdef(t.oid), t.tgenabled)
  FROM obj o JOIN pg_trigger t ON o.classid = 'pg_trigger'::regclass AND t.oid = o.objid
UNION ALL
SELECT o.name, 'policy',
       format('command=%s permissive=%s roles=%s using=%s check=%s', p.polcmd, p.polpermissive,
              (SELECT string_agg(CASE r WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(r) END, ',' ORDER BY 1)
                 FROM unnest(p.polroles) r),
              pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
  FROM obj o JOIN pg_policy p ON o.classid = 'pg_policy'::regclass AND p.oid = o.objid
UNION ALL
SELECT o.name, 'rule', pg_get_ruledef(r.oid)
  FROM obj o JOIN pg_rewrite r ON o.classid = 'pg_rewrite'::regclass AND r.oid = o.objid
 WHERE r.rulename <> '_RETURN'
UNION ALL
-- event triggers
SELECT o.name, 'event trigger',
       format('event=%s enabled=%s tags=%s function=%s owner=%s', e.evtevent, e.evtenabled,
              e.evttags, e.evtfoid::regprocedure, pg_get_userbyid(e.evtowner))
  FROM obj o JOIN pg_event_trigger e ON o.classid = 'pg_event_trigger'::regclass AND e.oid = o.objid
UNION ALL
-- schemas, types, the foreign-data wrapper
SELECT o.name, 'schema',
       format('owner=%s privileges=%s', pg_get_userbyid(n.nspowner), pg_temp.acl(n.nspacl, 'n', n.nspowner))
  FROM obj o JOIN pg_namespace n ON o.classid = 'pg_namespace'::regclass AND n.oid = o.objid
UNION ALL
SELECT o.name, 'type',
       format('type=%s base=%s not_null=%s default=%s labels=%s privileges=%s', t.typtype,
              NULLIF(t.typbasetype, 0)::regtype, t.typnotnull, t.typdefault,
              (SELECT string_agg(enumlabel::text, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = t.oid),
              pg_temp.acl(t.typacl, 'T', t.typowner))
  FROM obj o JOIN pg_type t ON o.classid = 'pg_type'::regclass AND t.oid = o.objid
UNION ALL
SELECT o.name, 'foreign-data wrapper',
       format('handler=%s validator=%s options=%s owner=%s privileges=%s',
              NULLIF(w.fdwhandler, 0)::regproc, NULLIF(w.fdwvalidator, 0)::regproc, w.fdwoptions,
              pg_get_userbyid(w.fdwowner), pg_temp.acl(w.fdwacl, 'F', w.fdwowner))
  FROM obj o JOIN pg_foreign_data_wrapper w ON o.classid = 'pg_foreign_data_wrapper'::regclass AND w.oid = o.objid
UNION ALL
-- comments, on every object and on columns
SELECT pg_describe_object(d.classoid, d.objoid, d.objsubid), 'comment', d.description
  FROM obj o JOIN pg_description d ON d.classoid = o.classid AND d.objoid = o.objid
UNION ALL
-- initial privileges recorded for pg_dump (privtype 'e': set by the script)
SELECT pg_describe_object(i.classoid, i.objoid, i.objsubid), 'initial privileges ' || i.privtype::text,
       pg_temp.acl(i.initprivs, 'r', 10)
  FROM obj o JOIN pg_init_privs i ON i.classoid = o.classid AND i.objoid = o.objid;

-- 0.1, then the update scripts up to the default version.
CREATE EXTENSION zerobus_fdw VERSION '0.1';
SELECT extversion FROM pg_extension WHERE extname = 'zerobus_fdw';
ALTER EXTENSION zerobus_fdw UPDATE;
SELECT extversion = default_version AS at_default_version
  FROM pg_extension JOIN pg_available_extensions ON name = extname
 WHERE extname = 'zerobus_fdw';
CREATE TEMP TABLE updated AS SELECT * FROM zb_description;

-- The library says which version it was built as (18's pg_get_loaded_modules;
-- earlier majors have no such list, and print the same line).
SELECT current_setting('server_version_num')::int >= 180000 AS pg18 \gset
\if :pg18
SELECT m.version = e.default_version AS library_ok
  FROM pg_get_loaded_modules() m, pg_available_extensions e
 WHERE m.module_name = 'zerobus_fdw' AND e.name = 'zerobus_fdw' \gset
\else
SELECT true AS library_ok \gset
\endif
SELECT :'library_ok'::boolean AS library_is_default_version;

-- A fresh install of the default version.
DROP EXTENSION zerobus_fdw;
CREATE EXTENSION zerobus_fdw;
CREATE TEMP TABLE fresh AS SELECT * FROM zb_description;

-- The description covers every kind of object the install script makes.
SELECT kind FROM unnest(ARRAY['exists', 'config dump', 'definition', 'attributes', 'relation',
                              'view definition', 'index definition', 'sequence', 'column',
                              'constraint', 'trigger', 'policy', 'schema', 'type',
                              'foreign-data wrapper', 'comment', 'initial privileges e']) AS kind
EXCEPT SELECT aspect FROM fresh;

-- The comparison: no row differs.
(SELECT 'only after update' AS where_, * FROM updated EXCEPT ALL SELECT 'only after update', * FROM fresh)
UNION ALL
(SELECT 'only in fresh install', * FROM fresh EXCEPT ALL SELECT 'only in fresh install', * FROM updated)
ORDER BY 2, 3, 1;

-- The comparison notices a difference of each kind.  Probe objects of every
-- kind are added to the extension (so that these checks do not depend on
-- what the install script holds), the description is taken, and then each
-- change below is made and undone (savepoints); the whole is rolled back.
BEGIN;
CREATE TABLE zerobus.zb_probe (id integer NOT NULL DEFAULT 1, note text);
CREATE INDEX zb_probe_note ON zerobus.zb_probe (note);
ALTER TABLE zerobus.zb_probe ENABLE ROW LEVEL SECURITY;
CREATE POLICY zb_probe_policy ON zerobus.zb_probe USING (id > 0);
CREATE FUNCTION zerobus.zb_probe_fn() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS 'BEGIN RETURN NULL; END';
CREATE TRIGGER zb_probe_trigger AFTER INSERT ON zerobus.zb_probe
    FOR EACH STATEMENT EXECUTE FUNCTION zerobus.zb_probe_fn();
CREATE SEQUENCE zerobus.zb_probe_seq;
CREATE VIEW zerobus.zb_probe_view AS SELECT id FROM zerobus.zb_probe;
CREATE FUNCTION zerobus.zb_probe_ddl() RETURNS event_trigger LANGUAGE plpgsql AS 'BEGIN END';
CREATE EVENT TRIGGER zb_probe_ddl ON ddl_command_end EXECUTE FUNCTION zerobus.zb_probe_ddl();
COMMENT ON TABLE zerobus.zb_probe IS 'probe';
COMMENT ON COLUMN zerobus.zb_probe.note IS 'probe column';
ALTER EXTENSION zerobus_fdw ADD TABLE zerobus.zb_probe;
ALTER EXTENSION zerobus_fdw ADD FUNCTION zerobus.zb_probe_fn();
ALTER EXTENSION zerobus_fdw ADD SEQUENCE zerobus.zb_probe_seq;
ALTER EXTENSION zerobus_fdw ADD VIEW zerobus.zb_probe_view;
ALTER EXTENSION zerobus_fdw ADD FUNCTION zerobus.zb_probe_ddl();
ALTER EXTENSION zerobus_fdw ADD EVENT TRIGGER zb_probe_ddl;
CREATE TEMP TABLE probed AS SELECT * FROM zb_description;
SELECT count(*) > 0 AS probes_described FROM probed WHERE object LIKE '%zb\_probe%';
CREATE FUNCTION pg_temp.differs() RETURNS text LANGUAGE sql AS $$
  SELECT CASE WHEN EXISTS ((TABLE probed EXCEPT ALL TABLE zb_description)
                           UNION ALL (TABLE zb_description EXCEPT ALL TABLE probed))
              THEN 'differs' ELSE 'same' END
$$;
SELECT 'nothing changed' AS change, pg_temp.differs();
SAVEPOINT s;
CREATE FUNCTION zerobus.zb_probe_added() RETURNS int LANGUAGE sql AS 'SELECT 1';
ALTER EXTENSION zerobus_fdw ADD FUNCTION zerobus.zb_probe_added();
SELECT 'new member function' AS change, pg_temp.differs();
ROLLBACK TO s;
CREATE OR REPLACE FUNCTION zerobus.zb_probe_fn() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS 'BEGIN RETURN NEW; END';
SELECT 'function body' AS change, pg_temp.differs();
ROLLBACK TO s;
ALTER FUNCTION zerobus.zb_probe_fn() RESET search_path;
SELECT 'function SET option' AS change, pg_temp.differs();
ROLLBACK TO s;
ALTER FUNCTION zerobus.zb_probe_fn() SECURITY DEFINER;
SELECT 'SECURITY DEFINER' AS change, pg_temp.differs();
ROLLBACK TO s;
ALTER FUNCTION zerobus.zb_probe_fn() STABLE;
SELECT 'volatility' AS change, pg_temp.differs();
ROLLBACK TO s;
REVOKE EXECUTE ON FUNCTION zerobus.zb_probe_fn() FROM PUBLIC;
SELECT 'function privilege' AS change, pg_temp.differs();
ROLLBACK TO s;
GRANT SELECT ON zerobus.zb_probe_view TO PUBLIC;
SELECT 'view privilege' AS change, pg_temp.differs();
ROLLBACK TO s;
CREATE OR REPLACE VIEW zerobus.zb_probe_view AS SELECT id FROM zerobus.zb_probe WHERE id > 1;
SELECT 'view definition' AS change, pg_temp.differs();
ROLLBACK TO s;
ALTER TABLE zerobus.zb_probe ALTER COLUMN id SET DEFAULT 2;
SELECT 'column default' AS change, pg_temp.differs();
ROLLBACK TO s;
ALTER TABLE zerobus.zb_probe ALTER COLUMN note TYPE varchar(10);
SELECT 'column type' AS change, pg_temp.differs();
ROLLBACK TO s;
ALTER TABLE zerobus.zb_probe ALTER COLUMN id DROP NOT NULL;
SELECT 'NOT NULL' AS change, pg_temp.differs();
ROLLBACK TO s;
ALTER TABLE zerobus.zb_probe ADD COLUMN extra integer;
SELECT 'column added' AS change, pg_temp.differs();
ROLLBACK TO s;
GRANT UPDATE (note) ON zerobus.zb_probe TO PUBLIC;
SELECT 'column privilege' AS change, pg_temp.differs();
ROLLBACK TO s;
ALTER TABLE zerobus.zb_probe ADD CHECK (id < 1000000);
SELECT 'constraint' AS change, pg_temp.differs();
ROLLBACK TO s;
CREATE INDEX ON zerobus.zb_probe (id);
SELECT 'index' AS change, pg_temp.differs();
ROLLBACK TO s;
ALTER POLICY zb_probe_policy ON zerobus.zb_probe USING (true);
SELECT 'policy' AS change, pg_temp.differs();
ROLLBACK TO s;
ALTER TABLE zerobus.zb_probe FORCE ROW LEVEL SECURITY;
SELECT 'row level security' AS change, pg_temp.differs();
ROLLBACK TO s;
ALTER TABLE zerobus.zb_probe DISABLE TRIGGER zb_probe_trigger;
SELECT 'trigger' AS change, pg_temp.differs();
ROLLBACK TO s;
ALTER SEQUENCE zerobus.zb_probe_seq CACHE 10;
SELECT 'sequence' AS change, pg_temp.differs();
ROLLBACK TO s;
ALTER EVENT TRIGGER zb_probe_ddl DISABLE;
SELECT 'event trigger' AS change, pg_temp.differs();
ROLLBACK TO s;
COMMENT ON COLUMN zerobus.zb_probe.note IS 'changed';
SELECT 'column comment' AS change, pg_temp.differs();
ROLLBACK TO s;
COMMENT ON TABLE zerobus.zb_probe IS NULL;
SELECT 'comment dropped' AS change, pg_temp.differs();
ROLLBACK TO s;
ALTER EXTENSION zerobus_fdw DROP TABLE zerobus.zb_probe;
SELECT 'member dropped' AS change, pg_temp.differs();
ROLLBACK TO s;
GRANT CREATE ON SCHEMA zerobus TO PUBLIC;
SELECT 'schema privilege' AS change, pg_temp.differs();
ROLLBACK TO s;
GRANT USAGE ON FOREIGN DATA WRAPPER zerobus_fdw TO PUBLIC;
SELECT 'foreign-data wrapper privilege' AS change, pg_temp.differs();
ROLLBACK TO s;
UPDATE pg_catalog.pg_extension SET extcondition[1] = 'WHERE false' WHERE extname = 'zerobus_fdw';
SELECT 'config dump condition' AS change, pg_temp.differs();
ROLLBACK TO s;
ROLLBACK;

DROP EXTENSION zerobus_fdw;
