-- History: the foreign-data wrapper's SQL-callable helpers.

CREATE FUNCTION zerobus.quote_ident(identifier text)
RETURNS text
AS 'MODULE_PATHNAME', 'zerobus_quote_ident'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION zerobus.quote_ident(text) IS
  'Quote a Databricks SQL identifier: in backticks, a backtick inside doubled (the quoting the FDW uses)';
