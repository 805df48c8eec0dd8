-- Core: the schema every other part lives in.
\echo Use "CREATE EXTENSION zerobus_fdw" to load this file. \quit

CREATE SCHEMA zerobus;
COMMENT ON SCHEMA zerobus IS 'zerobus_fdw: streams to Databricks ZeroBus, and Delta history';
-- Everyone may look up names here; each function and table has its own grants.
GRANT USAGE ON SCHEMA zerobus TO PUBLIC;
