-- The foreign-data wrapper: handler, validator, and the wrapper itself.

CREATE FUNCTION zerobus.fdw_handler()
RETURNS fdw_handler
AS 'MODULE_PATHNAME', 'zerobus_fdw_handler'
LANGUAGE C STRICT;

CREATE FUNCTION zerobus.fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_fdw_validator'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER zerobus_fdw
  HANDLER zerobus.fdw_handler
  VALIDATOR zerobus.fdw_validator;
