--
-- Options of zerobus_fdw objects: every typo, wrong type and malformed value
-- is refused with a SQLSTATE and a hint; nothing is half-created.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE EXTENSION zerobus_fdw;
SELECT extname, extversion FROM pg_extension WHERE extname = 'zerobus_fdw';

-- A valid server and user mapping.
CREATE SERVER lakehouse FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (
    workspace_url    'https://dbc-1234.cloud.databricks.com/',
    zerobus_endpoint 'https://1234567890.zerobus.us-west-2.cloud.databricks.com',
    warehouse_id     'abcdef1234567890',
    catalog 'main', schema 'default',
    connect_timeout '5s', request_timeout '2min');
CREATE USER MAPPING FOR CURRENT_USER SERVER lakehouse
    OPTIONS (client_id 'my-client', client_secret 'not-a-real-secret');

-- Unknown options, and typos of real ones (with their SQLSTATE).
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (workspace 'x');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (zerobus_endpont 'https://x.example.com');
\echo :LAST_ERROR_SQLSTATE
-- Options on the wrong object.
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (client_secret 'x');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (table 'main.default.t');
CREATE USER MAPPING FOR PUBLIC SERVER lakehouse OPTIONS (workspace_url 'https://x.example.com');
CREATE USER MAPPING FOR PUBLIC SERVER lakehouse OPTIONS (token 'x');
ALTER FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (workspace_url 'https://x.example.com');

-- Malformed URLs.
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (workspace_url 'dbc-1234.cloud.databricks.com');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (workspace_url 'ftp://dbc-1234.cloud.databricks.com');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (workspace_url 'https://');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (workspace_url 'https://me:pw@dbc-1234.cloud.databricks.com');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (workspace_url 'https://dbc-1234.cloud.databricks.com/api/2.0');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (workspace_url 'https://dbc-1234.cloud.databricks.com?o=1');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (zerobus_endpoint 'http://1234.zerobus.us-west-2.cloud.databricks.com');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (zerobus_endpoint 'https://bad host');
-- Plain http is fine on loopback (a local emulator).
CREATE SERVER local_emu FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (
    workspace_url 'http://127.0.0.1:8080', zerobus_endpoint 'http://localhost:8081');
-- Plain http only to a loopback address, decided on the parsed host (a numeric
-- loopback address or exactly localhost), never on a "127." prefix: these names
-- are anybody's, and the client secret would travel to them in clear text.
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (workspace_url 'http://127.attacker.example');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (workspace_url 'http://127.0.0.1.nip.io:8080');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (zerobus_endpoint 'http://localhost.attacker.example:8081');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (zerobus_endpoint 'http://10.0.0.1:8081');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (workspace_url 'http://[::ffff:10.0.0.1]:8080');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (workspace_url 'http://[fe80::1]:8080');
\echo :LAST_ERROR_SQLSTATE
-- Other spellings of loopback are fine, and https:// to any host.
CREATE SERVER local_emu2 FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (
    workspace_url 'http://127.1.2.3:8080', zerobus_endpoint 'http://[::1]:8081');
ALTER SERVER local_emu2 OPTIONS (SET workspace_url 'http://LocalHost:8080');
ALTER SERVER local_emu2 OPTIONS (SET zerobus_endpoint 'https://127.attacker.example');

-- Wrong types and out-of-range values.
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (connect_timeout 'soon');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (connect_timeout '-1');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (request_timeout '5 parsecs');
-- Timeouts have maxima: a minute to connect, ten minutes per request (and the
-- remote statement_timeout fits an int of milliseconds).
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (connect_timeout '61s');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (request_timeout '3600s');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (request_timeout '25d');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (request_timeout '600001ms');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (statement_timeout '25d');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (connect_timeout '0.4ms');
ALTER SERVER local_emu2 OPTIONS (ADD connect_timeout '1min', ADD request_timeout '10min',
                                  ADD statement_timeout '24d');
ALTER SERVER local_emu2 OPTIONS (SET connect_timeout '60001ms');
SELECT srvname, srvoptions FROM pg_foreign_server WHERE srvname = 'local_emu2';
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (ca_file 'certs/ca.pem');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (catalog 'my-catalog');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (warehouse_id '');
CREATE USER MAPPING FOR PUBLIC SERVER lakehouse OPTIONS (client_id '');
-- user_agent: words appended to the client identifier of every request,
-- which travels in HTTP headers: printable ASCII, 1 to 200 characters.
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (user_agent '');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (user_agent E'acme\r\nauthorization: Bearer x');
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (user_agent 'café/1.0');
SELECT repeat('x', 201) AS long_agent \gset
CREATE SERVER bad FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (user_agent :'long_agent');
CREATE USER MAPPING FOR PUBLIC SERVER lakehouse OPTIONS (user_agent 'acme/1');
ALTER SERVER lakehouse OPTIONS (ADD user_agent 'acme-ingest/2.1 (team data-platform)');
ALTER SERVER lakehouse OPTIONS (DROP user_agent);
-- ALTER is validated the same way, and a failed ALTER changes nothing.
ALTER SERVER lakehouse OPTIONS (SET connect_timeout 'never');
ALTER SERVER lakehouse OPTIONS (ADD zerobus_endpoint 'https://x.example.com');
SELECT srvname, srvoptions FROM pg_foreign_server WHERE srvname = 'lakehouse';
-- Nothing half-created.
SELECT count(*) AS bad_servers FROM pg_foreign_server WHERE srvname = 'bad';

-- Foreign tables and columns.
CREATE FOREIGN TABLE ft_bad (a int) SERVER lakehouse OPTIONS (table 'main.default');
CREATE FOREIGN TABLE ft_bad (a int) SERVER lakehouse OPTIONS (table 'main.default.my-table');
CREATE FOREIGN TABLE ft_bad (a int) SERVER lakehouse OPTIONS (table 'a.b.c', query 'SELECT 1');
CREATE FOREIGN TABLE ft_bad (a int) SERVER lakehouse OPTIONS (tablename 'a.b.c');
CREATE FOREIGN TABLE ft_bad (a int OPTIONS (colname 'x')) SERVER lakehouse OPTIONS (table 'a.b.c');
CREATE FOREIGN TABLE ft_ok (a int OPTIONS (column_name 'A')) SERVER lakehouse
    OPTIONS (table 'main.default.events');

-- Secrets stay in the user mapping: a non-superuser sees no options.
CREATE ROLE zb_regress_user;
GRANT USAGE ON FOREIGN SERVER lakehouse TO zb_regress_user;
SET ROLE zb_regress_user;
SELECT srvname, umoptions FROM pg_user_mappings WHERE srvname = 'lakehouse';
-- Control functions are not granted to PUBLIC.
SELECT * FROM zerobus.check_connection('lakehouse', 'main.default.events');
RESET ROLE;

-- check_connection's own argument checks.
SELECT * FROM zerobus.check_connection('nosuchserver', 'main.default.events');
SELECT * FROM zerobus.check_connection('lakehouse', 'events');
SELECT * FROM zerobus.check_connection('lakehouse', 'main.default.events', '0 seconds');
CREATE FOREIGN DATA WRAPPER other_fdw;
CREATE SERVER other FOREIGN DATA WRAPPER other_fdw;
SELECT * FROM zerobus.check_connection('other', 'main.default.events');
-- A server without a user mapping for this user.
CREATE SERVER no_mapping FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (
    workspace_url 'https://dbc-1234.cloud.databricks.com',
    zerobus_endpoint 'https://1234567890.zerobus.us-west-2.cloud.databricks.com');
SELECT * FROM zerobus.check_connection('no_mapping', 'main.default.events');
-- A mapping without a secret.
CREATE USER MAPPING FOR CURRENT_USER SERVER no_mapping OPTIONS (client_id 'x');
SELECT * FROM zerobus.check_connection('no_mapping', 'main.default.events');
-- A server without the ZeroBus endpoint.
CREATE SERVER sql_only FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (
    workspace_url 'https://dbc-1234.cloud.databricks.com', warehouse_id 'abc');
CREATE USER MAPPING FOR CURRENT_USER SERVER sql_only OPTIONS (client_id 'x', client_secret 'y');
SELECT * FROM zerobus.check_connection('sql_only', 'main.default.events');

DROP SERVER other;
DROP FOREIGN DATA WRAPPER other_fdw;
\set VERBOSITY terse
DROP EXTENSION zerobus_fdw CASCADE;
DROP ROLE zb_regress_user;
