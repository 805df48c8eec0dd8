--
-- zerobus.check_connection against the local emulator: success over h2c and
-- TLS, and the exact error and hint a user sees for each common mistake.
--
\getenv grpc ZB_EMU_GRPC
\getenv grpcs ZB_EMU_GRPCS
\getenv http ZB_EMU_HTTP
\getenv https ZB_EMU_HTTPS
\getenv ca ZB_EMU_CA
\getenv wrong_ca ZB_EMU_WRONG_CA
CREATE EXTENSION zerobus_fdw;

-- Ports differ from run to run: mask them in what we print.
CREATE FUNCTION pg_temp.masked(t text) RETURNS text LANGUAGE sql AS
$$ SELECT regexp_replace(regexp_replace(t, '(127\.0\.0\.1|localhost)( port |:)\d+', '\1\2PORT', 'g'),
                         'after \d+ ms', 'after N ms', 'g') $$;

-- h2c (plain HTTP/2 on loopback).
CREATE SERVER emu FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http', zerobus_endpoint :'grpc');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
SELECT ok, token_ok, stream_id ~ '^[0-9a-f-]{36}$' AS stream_id_is_uuid,
       round_trip_ms > 0 AS measured, error_code, error, hint
  FROM zerobus.check_connection('emu', 'main.default.regress_events');

-- TLS with the test CA.
CREATE SERVER emu_tls FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'https', zerobus_endpoint :'grpcs', ca_file :'ca');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu_tls
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
SELECT ok, token_ok, stream_id IS NOT NULL AS has_stream_id, error_code
  FROM zerobus.check_connection('emu_tls', 'main.default.regress_events');

-- Plain http:// (OAuth and h2c) to the emulator by the name localhost: each
-- connection is checked to have gone to a loopback address, and it has.
SELECT replace(:'http', '127.0.0.1', 'localhost') AS http_named,
       replace(:'grpc', '127.0.0.1', 'localhost') AS grpc_named \gset
CREATE SERVER emu_named FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http_named', zerobus_endpoint :'grpc_named');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu_named
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
SELECT ok, token_ok, stream_id IS NOT NULL AS has_stream_id, error_code
  FROM zerobus.check_connection('emu_named', 'main.default.regress_events');

\x on
-- Unknown table.
SELECT ok, token_ok, error_code, error, hint
  FROM zerobus.check_connection('emu', 'main.default.no_such_table');

-- Wrong secret.
ALTER USER MAPPING FOR CURRENT_USER SERVER emu OPTIONS (SET client_secret 'wrong');
SELECT ok, token_ok, error_code, pg_temp.masked(error) AS error, hint
  FROM zerobus.check_connection('emu', 'main.default.regress_events');
-- The secret never shows in the error.
SELECT error LIKE '%wrong%' AS secret_leaked
  FROM zerobus.check_connection('emu', 'main.default.regress_events');
ALTER USER MAPPING FOR CURRENT_USER SERVER emu OPTIONS (SET client_secret 'zb-test-secret');

-- TLS verification is on by default: the system CAs do not know the emulator.
CREATE SERVER emu_tls_noca FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'https', zerobus_endpoint :'grpcs');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu_tls_noca
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
SELECT ok, token_ok, error_code, hint
  FROM zerobus.check_connection('emu_tls_noca', 'main.default.regress_events');
-- A wrong CA, on the ZeroBus endpoint only (the token comes over h2c).
CREATE SERVER emu_wrong_ca FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http', zerobus_endpoint :'grpcs', ca_file :'wrong_ca');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu_wrong_ca
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
SELECT ok, token_ok, error_code, hint
  FROM zerobus.check_connection('emu_wrong_ca', 'main.default.regress_events');

-- Nothing listens there.
CREATE SERVER emu_down FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http', zerobus_endpoint 'http://127.0.0.1:1');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu_down
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
SELECT ok, token_ok, error_code, pg_temp.masked(error) AS error, hint
  FROM zerobus.check_connection('emu_down', 'main.default.regress_events');

-- The workspace URL given as the ZeroBus endpoint: not a gRPC service.
CREATE SERVER emu_not_grpc FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'https', zerobus_endpoint :'https', ca_file :'ca');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu_not_grpc
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
SELECT ok, token_ok, error_code, pg_temp.masked(error) AS error, hint
  FROM zerobus.check_connection('emu_not_grpc', 'main.default.regress_events');
\x off

\set VERBOSITY terse
DROP EXTENSION zerobus_fdw CASCADE;
