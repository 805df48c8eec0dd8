-- Diagnostics: connection check and transport benchmark.

CREATE FUNCTION zerobus.check_connection(
    server name,
    target text,
    timeout interval DEFAULT '10 seconds',
    OUT ok boolean,
    OUT token_ok boolean,
    OUT stream_id text,
    OUT round_trip_ms double precision,
    OUT error_code text,
    OUT error text,
    OUT hint text)
RETURNS record
AS 'MODULE_PATHNAME', 'zerobus_check_connection'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION zerobus.check_connection(name, text, interval) IS
  'Fetch a ZeroBus token for the target table, open a stream to it, and report what happened';

REVOKE ALL ON FUNCTION zerobus.check_connection(name, text, interval) FROM PUBLIC;

CREATE FUNCTION zerobus.bench_transport(
    server name,
    target text,
    records bigint DEFAULT 1000000,
    batch_size integer DEFAULT 1000,
    record_bytes integer DEFAULT 200,
    max_inflight integer DEFAULT 16,
    OUT records_sent bigint,
    OUT requests bigint,
    OUT acked_requests bigint,
    OUT bytes_sent bigint,
    OUT seconds double precision,
    OUT records_per_sec double precision,
    OUT mb_per_sec double precision)
RETURNS record
AS 'MODULE_PATHNAME', 'zerobus_bench_transport'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION zerobus.bench_transport(name, text, bigint, integer, integer, integer) IS
  'Stream synthetic (id bigint, payload string) records to a table through ZeroBus and measure the rate';

REVOKE ALL ON FUNCTION zerobus.bench_transport(name, text, bigint, integer, integer, integer) FROM PUBLIC;
