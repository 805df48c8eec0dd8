-- History: the foreign-data wrapper's SQL-callable helpers.

CREATE FUNCTION zerobus.quote_ident(identifier text)
RETURNS text
AS 'MODULE_PATHNAME', 'zerobus_quote_ident'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION zerobus.quote_ident(text) IS
  'Quote a Databricks SQL identifier: in backticks, a backtick inside doubled (the quoting the FDW uses)';

CREATE FUNCTION zerobus.execute_remote(server name, statement text, VARIADIC args text[] DEFAULT '{}')
RETURNS bigint
AS 'MODULE_PATHNAME', 'zerobus_execute_remote'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION zerobus.execute_remote(name, text, text[]) IS
  'Run one statement on the server''s SQL warehouse (args are the STRING parameters :p1, :p2, ...); returns the rows affected or returned';

REVOKE ALL ON FUNCTION zerobus.execute_remote(name, text, text[]) FROM PUBLIC;
