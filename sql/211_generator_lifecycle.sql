--
-- The orders profile's lifecycle in an ordinary table (issue 11): what SQL
-- users see.  That the lifecycle happens (statuses advance, rows are
-- deleted) is t/021_generator_lifecycle.pl's.
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

-- Which profiles have a lifecycle, the columns of its table and of the Delta
-- table of that table's change stream.
SELECT profile, lifecycle_columns IS NOT NULL AS has_lifecycle FROM zerobus.generator_profiles();
SELECT lifecycle_columns, changes_delta_columns FROM zerobus.generator_profiles() WHERE profile = 'orders';

-- A table for the lifecycle: the key is an identity column, the short text
-- and numeric columns are kept inline (an UPDATE that leaves one unchanged can
-- be captured without REPLICA IDENTITY FULL), the index finds due orders by
-- status and age.
SELECT zerobus.generator_create_table('orders', 'shop_orders');
SELECT attname, format_type(atttypid, atttypmod), attnotnull, attidentity, attstorage, pg_get_expr(d.adbin, d.adrelid) AS "default"
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE attrelid = 'shop_orders'::regclass AND attnum > 0 ORDER BY attnum;
SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'shop_orders'::regclass ORDER BY 1;
SELECT zerobus.generator_create_table('transactions', 'nope');
SELECT zerobus.generator_create_table('nosuch', 'nope');
SELECT zerobus.generator_create_table('orders', 'shop_orders');
SELECT zerobus.generator_create_table(NULL, 'nope') IS NULL AS strict;

-- A generator belongs to a stream; with a lifecycle table its queue gets nothing.
SELECT zerobus.generator_create_queue('orders', 'shop_queue');
SELECT zerobus.create_stream('shop', 'shop_queue', 'emu', 'main.default.regress_orders', start => false);
SELECT zerobus.generator_start('shop', 'orders', throttle => 1, lifecycle_table => 'shop_orders');
SELECT stream, profile, throttle, lifecycle_table, enabled FROM zerobus.generators;
-- without a profile it resumes as it was, lifecycle table included
SELECT zerobus.generator_stop('shop');
SELECT zerobus.generator_start('shop', rate => 5);
SELECT stream, profile, rate, lifecycle_table, enabled FROM zerobus.generators;
-- naming the profile without a table goes back to the queue
SELECT zerobus.generator_start('shop', 'orders', throttle => 1);
SELECT stream, profile, lifecycle_table FROM zerobus.generators;

-- What a lifecycle table must be.
SELECT zerobus.generator_start('shop', 'transactions', lifecycle_table => 'shop_orders');
SELECT zerobus.generator_start('shop', 'orders', lifecycle_table => 'shop_queue');
CREATE TABLE few_columns (order_id bigint GENERATED ALWAYS AS IDENTITY, status text);
SELECT zerobus.generator_start('shop', 'orders', lifecycle_table => 'few_columns');
CREATE TABLE no_key_default (LIKE shop_orders);
SELECT zerobus.generator_start('shop', 'orders', lifecycle_table => 'no_key_default');
CREATE TEMP TABLE temp_orders (LIKE shop_orders INCLUDING ALL);
SELECT zerobus.generator_start('shop', 'orders', lifecycle_table => 'temp_orders');
CREATE VIEW orders_view AS SELECT * FROM shop_orders;
SELECT zerobus.generator_start('shop', 'orders', lifecycle_table => 'orders_view');
SELECT zerobus.generator_start('shop', 'orders', lifecycle_table => 'no_such_table');
-- a table of one's own whose key has a default of its own will do
CREATE SEQUENCE own_ids;
CREATE TABLE own_orders (LIKE shop_orders);
ALTER TABLE own_orders ALTER COLUMN order_id SET DEFAULT nextval('own_ids');
SELECT zerobus.generator_start('shop', 'orders', lifecycle_table => 'own_orders');
SELECT stream, lifecycle_table FROM zerobus.generators;

-- The generator changes the table as the stream's owner, who needs SELECT,
-- INSERT, UPDATE and DELETE on it and USAGE on its schema.
CREATE ROLE zb_shopkeeper;
CREATE SCHEMA shop;
CREATE TABLE shop.orders (LIKE shop_orders INCLUDING ALL);
ALTER TABLE shop_queue OWNER TO zb_shopkeeper;
SELECT owner FROM zerobus.streams WHERE name = 'shop';
SELECT zerobus.generator_start('shop', 'orders', lifecycle_table => 'shop.orders');
GRANT USAGE ON SCHEMA shop TO zb_shopkeeper;
SELECT zerobus.generator_start('shop', 'orders', lifecycle_table => 'shop.orders');
GRANT SELECT, INSERT, UPDATE ON shop.orders TO zb_shopkeeper;
SELECT zerobus.generator_start('shop', 'orders', lifecycle_table => 'shop.orders');
GRANT DELETE ON shop.orders TO zb_shopkeeper;
SELECT zerobus.generator_start('shop', 'orders', lifecycle_table => 'shop.orders');
SELECT stream, lifecycle_table FROM zerobus.generators;

-- Dropping the stream drops its generator; the lifecycle table stays.
SELECT zerobus.drop_stream('shop');
SELECT count(*) AS generators_left FROM zerobus.generators;
SELECT count(*) AS orders_table_kept FROM shop.orders;

\set VERBOSITY terse
DROP TABLE shop_queue, shop_orders, few_columns, no_key_default, own_orders, shop.orders CASCADE;
DROP SEQUENCE own_ids;
DROP SCHEMA shop;
DROP ROLE zb_shopkeeper;
DROP EXTENSION zerobus_fdw CASCADE;
