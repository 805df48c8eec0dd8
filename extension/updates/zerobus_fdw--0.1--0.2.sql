-- zerobus_fdw 0.1 -> 0.2: the changes to the objects of extension/*.sql, as upgrade statements

-- Streams: an optional per-row dedup key in every record (dedup_column).
ALTER TABLE zerobus.streams ADD COLUMN dedup_column text
    CHECK (dedup_column ~ '^[A-Za-z_][A-Za-z0-9_]*$' AND length(dedup_column) <= 255);

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

REVOKE ALL ON FUNCTION
    zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean, text),
    zerobus.alter_stream(text, name, text, text, integer, integer, integer, integer, interval, text)
  FROM PUBLIC;

-- The new signatures keep the EXECUTE grants the old ones had, then the old ones go.
DO $$
DECLARE
    f record;
    g record;
BEGIN
    FOR f IN SELECT * FROM (VALUES
        ('zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean)',
         'zerobus.create_stream(text, regclass, name, text, text, integer, integer, integer, integer, interval, boolean, text)'),
        ('zerobus.alter_stream(text, name, text, text, integer, integer, integer, integer, interval)',
         'zerobus.alter_stream(text, name, text, text, integer, integer, integer, integer, interval, text)'))
        AS v(old_sig, new_sig)
    LOOP
        FOR g IN SELECT a.grantee, a.is_grantable
                   FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
                  WHERE p.oid OPERATOR(pg_catalog.=) f.old_sig::pg_catalog.regprocedure
                    AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
                    AND a.grantee OPERATOR(pg_catalog.<>) 0
                    AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
        LOOP
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', f.new_sig,
                                      g.grantee::pg_catalog.regrole::pg_catalog.text,
                                      CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
        EXECUTE pg_catalog.format('DROP FUNCTION %s', f.old_sig);
    END LOOP;
END
$$;
