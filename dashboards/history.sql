-- The foreign tables the sensors, orders and weblogs dashboards read
-- (dashboards/sensors.json, orders.json, weblogs.json): each is the Delta
-- table a generator profile's stream fills, read through zerobus_fdw, with a
-- few columns computed on the SQL warehouse so that the panels' grouping can
-- run there too (PostgreSQL cannot send date or regex functions; see
-- dashboards/README.md, "What runs on the warehouse"):
--
--   epoch         whole seconds since 1970-01-01 UTC of the row's timestamp:
--                 the panels bucket time with  epoch - epoch % <seconds>,
--                 which the FDW sends to Databricks (integer % and -)
--   status_class  web logs: '2xx' .. '5xx'
--   endpoint      web logs: the path without its query string and item id
--
--   psql -v server=lakehouse -v delta_schema=main.default -f dashboards/history.sql
--
-- server defaults to lakehouse, delta_schema (catalog.schema of the Delta
-- tables) to main.default. Tables that exist already are left alone. The
-- transactions dashboard (zerobus.json) reads history.financial_transactions:
--   IMPORT FOREIGN SCHEMA "main.default" LIMIT TO (financial_transactions)
--       FROM SERVER lakehouse INTO history;
\set ON_ERROR_STOP 1
\if :{?server}
\else
\set server lakehouse
\endif
\if :{?delta_schema}
\else
\set delta_schema main.default
\endif

CREATE SCHEMA IF NOT EXISTS history;

-- sensors: <delta_schema>.sensor_readings
SELECT format($$
CREATE FOREIGN TABLE IF NOT EXISTS history.sensor_readings (
    device_id     text NOT NULL,
    latitude      double precision NOT NULL,
    longitude     double precision NOT NULL,
    speed_kmh     double precision NOT NULL,
    battery_pct   smallint NOT NULL,
    signal_dbm    smallint NOT NULL,
    temperature_c real NOT NULL,
    recorded_at   timestamptz NOT NULL,
    epoch         bigint NOT NULL)
  SERVER %I OPTIONS (query %L)$$, :'server',
  'SELECT device_id, latitude, longitude, speed_kmh, battery_pct, signal_dbm, temperature_c, '
  'recorded_at, CAST(recorded_at AS BIGINT) AS epoch FROM ' || :'delta_schema' || '.sensor_readings')
\gexec

-- orders: <delta_schema>.orders
SELECT format($$
CREATE FOREIGN TABLE IF NOT EXISTS history.orders (
    order_id      text NOT NULL,
    customer_id   text NOT NULL,
    product       text NOT NULL,
    quantity      integer NOT NULL,
    unit_price    numeric(10,2) NOT NULL,
    total         numeric(12,2) NOT NULL,
    status        text NOT NULL,
    region        text NOT NULL,
    ordered_at    timestamptz NOT NULL,
    epoch         bigint NOT NULL)
  SERVER %I OPTIONS (query %L)$$, :'server',
  'SELECT order_id, customer_id, product, quantity, unit_price, total, status, region, '
  'ordered_at, CAST(ordered_at AS BIGINT) AS epoch FROM ' || :'delta_schema' || '.orders')
\gexec

-- weblogs: <delta_schema>.web_logs
SELECT format($$
CREATE FOREIGN TABLE IF NOT EXISTS history.web_logs (
    client_ip      text NOT NULL,
    method         text NOT NULL,
    path           text NOT NULL,
    status         smallint NOT NULL,
    response_bytes integer NOT NULL,
    latency_ms     double precision NOT NULL,
    user_agent     text NOT NULL,
    logged_at      timestamptz NOT NULL,
    epoch          bigint NOT NULL,
    status_class   text NOT NULL,
    endpoint       text NOT NULL)
  SERVER %I OPTIONS (query %L)$$, :'server',
  'SELECT client_ip, method, path, status, response_bytes, latency_ms, user_agent, logged_at, '
  'CAST(logged_at AS BIGINT) AS epoch, '
  'CONCAT(CAST(status DIV 100 AS STRING), ''xx'') AS status_class, '
  'CASE WHEN path LIKE ''/api/items/%'' THEN ''/api/items/{id}'' '
  '     WHEN path LIKE ''/search%'' THEN ''/search'' ELSE path END AS endpoint '
  'FROM ' || :'delta_schema' || '.web_logs')
\gexec
