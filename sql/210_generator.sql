--
-- The generator and the metrics views: what SQL users see.  Rates achieved
-- are measured by bench/, not asserted here.
--
\getenv grpc ZB_EMU_GRPC
\getenv http ZB_EMU_HTTP
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE EXTENSION zerobus_fdw;
CREATE SERVER emu FOREIGN DATA WRAPPER zerobus_fdw
    OPTIONS (workspace_url :'http', zerobus_endpoint :'grpc');
CREATE USER MAPPING FOR CURRENT_USER SERVER emu
    OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');

SELECT profile, description FROM zerobus.generator_profiles();
SELECT profile, delta_columns FROM zerobus.generator_profiles() WHERE profile = 'transactions';

-- A profile can create its own queue.
SELECT zerobus.generator_create_queue('transactions', 'gen_queue');
\d gen_queue
SELECT zerobus.generator_create_queue('nope', 'x');
SELECT zerobus.generator_create_queue('sensors', 'gen_queue');

SELECT zerobus.create_stream('tx', 'gen_queue', 'emu', 'main.default.regress_events', start => false);

-- Starting needs a profile the queue can take, and a sane rate.
SELECT zerobus.generator_start('tx');
SELECT zerobus.generator_start('tx', 'orders');
SELECT zerobus.generator_start('tx', 'transactions', throttle => 0);
SELECT zerobus.generator_start('tx', 'transactions', rate => -5);
SELECT zerobus.generator_start('nosuch', 'transactions');
SELECT zerobus.generator_start('tx', 'transactions', throttle => 1);
SELECT stream, profile, throttle, round(rate::numeric, 2) AS rate, enabled FROM zerobus.generators;

-- The speed slider: 10 × 10^(4 (throttle − 1) / 99) rows/s.
SELECT t AS throttle, round(zerobus.generator_throttle('tx', t)) AS rows_per_sec
  FROM unnest(ARRAY[1, 10, 25, 50, 75, 90, 100]) t;
SELECT zerobus.generator_throttle('tx', 101);
-- An explicit rate instead of a throttle.
SELECT zerobus.generator_start('tx', rate => 250);
SELECT stream, profile, throttle, rate, enabled FROM zerobus.generators;
SELECT zerobus.generator_stop('tx');
SELECT enabled FROM zerobus.generators;
SELECT zerobus.generator_throttle('nosuch', 5);

-- Dropping the stream drops its generator.
SELECT zerobus.drop_stream('tx');
SELECT count(*) AS generators_left FROM zerobus.generators;

-- Metrics functions and views: shapes and privileges.
SELECT count(*) FROM zb_metrics_history;
SELECT column_name, data_type FROM information_schema.columns
 WHERE table_name = 'zb_metrics_history' ORDER BY ordinal_position;
-- The launcher forgets a dropped stream after the commit (asynchronously).
DO $$
BEGIN
  FOR i IN 1..300 LOOP
    EXIT WHEN (SELECT count(*) FROM zb_dashboard) = 0;
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
SELECT count(*) FROM zb_dashboard;
SELECT zerobus.reset_metrics();
SELECT zerobus.reset_metrics('nosuch');
CREATE ROLE zb_nobody;
SET ROLE zb_nobody;
SELECT count(*) FROM zb_metrics_history;
SELECT zerobus.reset_metrics();
SELECT * FROM zerobus.generator_status();
SELECT zerobus.generator_throttle('tx', 5);
RESET ROLE;
DROP ROLE zb_nobody;

\set VERBOSITY terse
DROP EXTENSION zerobus_fdw CASCADE;
