-- The built-in traffic generator: a background worker per running generator
-- fills a stream's queue with realistic rows, paced to a rate.

CREATE TABLE zerobus.generators (
    stream     text PRIMARY KEY REFERENCES zerobus.stream_settings (name) ON DELETE CASCADE ON UPDATE CASCADE,
    profile    text NOT NULL,
    throttle   integer CONSTRAINT generators_throttle_check
                 CHECK (throttle OPERATOR(pg_catalog.>=) 1 AND throttle OPERATOR(pg_catalog.<=) 100),
    rate       double precision NOT NULL CONSTRAINT generators_rate_check
                 CHECK (rate OPERATOR(pg_catalog.>) 0::pg_catalog.float8),
    enabled    boolean NOT NULL DEFAULT true,
    started_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- an ordinary table in which the profile's lifecycle runs instead of
    -- queue inserts (orders: INSERT, UPDATE, DELETE), or NULL
    lifecycle_table regclass
);
COMMENT ON TABLE zerobus.generators IS
  'Generators: each fills one stream''s queue with rows of a profile at a rate, or runs the profile''s lifecycle in an ordinary table';
SELECT pg_catalog.pg_extension_config_dump('zerobus.generators', '');
GRANT SELECT ON zerobus.generators TO PUBLIC;
CREATE TRIGGER generators_changed
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON zerobus.generators
  FOR EACH STATEMENT EXECUTE FUNCTION zerobus.streams_changed();

CREATE FUNCTION zerobus.generator_profiles(
    OUT profile text, OUT description text, OUT queue_columns text, OUT delta_columns text,
    OUT lifecycle_columns text, OUT changes_delta_columns text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'zerobus_generator_profiles'
LANGUAGE C STRICT IMMUTABLE;
COMMENT ON FUNCTION zerobus.generator_profiles() IS
  'The generator''s profiles, with the columns of their queue table and of the Delta table; for a profile with a lifecycle, the columns of its table and of the Delta table of that table''s change stream';

CREATE FUNCTION zerobus.generator_create_queue(profile text, queue text)
RETURNS regclass
AS 'MODULE_PATHNAME', 'zerobus_generator_create_queue'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION zerobus.generator_create_queue(text, text) IS
  'Create a queue table with the columns of a generator profile';

CREATE FUNCTION zerobus.generator_create_table(profile text, name text)
RETURNS regclass
AS 'MODULE_PATHNAME', 'zerobus_generator_create_table'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION zerobus.generator_create_table(text, text) IS
  'Create a table for a generator profile''s lifecycle (orders), with the index that finds its due rows';

CREATE FUNCTION zerobus.generator_start(stream text, profile text DEFAULT NULL,
                                        rate double precision DEFAULT NULL,
                                        throttle integer DEFAULT NULL,
                                        lifecycle_table regclass DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_generator_start'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION zerobus.generator_start(text, text, double precision, integer, regclass) IS
  'Start filling a stream''s queue with rows of a profile, or running its lifecycle in lifecycle_table, at rate rows (changes)/s or at a throttle of 1-100';

CREATE FUNCTION zerobus.generator_throttle(stream text, throttle integer)
RETURNS double precision
AS 'MODULE_PATHNAME', 'zerobus_generator_throttle'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION zerobus.generator_throttle(text, integer) IS
  'Set a generator''s speed, 1-100: 10 x 10^(4 (throttle - 1) / 99) rows/s, from 10 to 100,000; returns that rate';

CREATE FUNCTION zerobus.generator_stop(stream text)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_generator_stop'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION zerobus.generator_status(
    OUT stream text, OUT profile text, OUT running boolean, OUT throttle integer,
    OUT target_rate double precision, OUT actual_rate double precision,
    OUT rows_generated bigint, OUT started_at timestamptz, OUT last_error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'zerobus_generator_status'
LANGUAGE C STRICT VOLATILE;

REVOKE ALL ON FUNCTION
    zerobus.generator_create_queue(text, text),
    zerobus.generator_create_table(text, text),
    zerobus.generator_start(text, text, double precision, integer, regclass),
    zerobus.generator_throttle(text, integer),
    zerobus.generator_stop(text)
  FROM PUBLIC;
REVOKE ALL ON FUNCTION zerobus.generator_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION zerobus.generator_status() TO pg_monitor;
