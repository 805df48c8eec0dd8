#!/usr/bin/python3
"""The obvious alternative to zerobus_fdw's workers: a client that polls a
queue table with SQL and streams the rows to ZeroBus over gRPC.

Written the way a careful user would write it, and no further: one process,
one ZeroBus stream, one prepared claim statement, batches of rows.

    loop:
        BEGIN
        EXECUTE claim(batch)      -- DELETE ... RETURNING the oldest rows
        build one record per row  (PROTO: a message class from a descriptor
                                   built from the table's columns; JSON: json.dumps)
        send one IngestRecordBatchRequest, wait for its durable ack
        COMMIT                    -- rows leave the queue only after the ack
    until a claim returns no row

The queue needs a key to claim the oldest rows by, so the table given here
must have a bigint primary key (the benchmark gives this client's copy of the
rows `PRIMARY KEY (id)`; zerobus_fdw's own queues need no index).

Run with Debian's interpreter (python3-psycopg2, python3-grpcio,
python3-protobuf, protobuf-c-compiler):

    /usr/bin/python3 bench/polling_client.py --dsn 'host=/tmp port=5432 dbname=bench' \\
        --queue poll_queue --key id --http http://127.0.0.1:PORT --grpc 127.0.0.1:PORT \\
        --target main.default.bench [--format proto|json] [--batch 5000]

Prints one JSON line: rows, requests, seconds, rows_per_s, cpu_s (this process)
and backend_cpu_s (its PostgreSQL backend's, read from /proc when the server
runs on this machine and /proc is readable; else null).
"""

import argparse
import base64
import datetime
import decimal
import json
import os
import queue
import resource
import sys
import time
import urllib.parse
import urllib.request

import grpc
import psycopg2
from google.protobuf import descriptor_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "emulator"))
# Message classes from proto/zerobus.proto via protoc-c --descriptor_set_out,
# and a record class from a DescriptorProto (the emulator's loaders).
from protos import WireMessages, record_class_from_descriptor  # noqa: E402

METHOD = "/databricks.zerobus.Zerobus/EphemeralStream"
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
EPOCH_NAIVE = datetime.datetime(1970, 1, 1)
EPOCH_DATE = datetime.date(1970, 1, 1)
ONE_US = datetime.timedelta(microseconds=1)
FDP = descriptor_pb2.FieldDescriptorProto

# PostgreSQL type -> (proto field type, value converter) (docs/DESIGN.md, "Records")
TYPES = {
    "smallint": (FDP.TYPE_INT32, int),
    "integer": (FDP.TYPE_INT32, int),
    "bigint": (FDP.TYPE_INT64, int),
    "boolean": (FDP.TYPE_BOOL, bool),
    "real": (FDP.TYPE_FLOAT, float),
    "double precision": (FDP.TYPE_DOUBLE, float),
    "text": (FDP.TYPE_STRING, str),
    "character varying": (FDP.TYPE_STRING, str),
    "character": (FDP.TYPE_STRING, str),
    "numeric": (FDP.TYPE_STRING, str),
    "uuid": (FDP.TYPE_STRING, str),
    "jsonb": (FDP.TYPE_STRING, json.dumps),
    "json": (FDP.TYPE_STRING, json.dumps),
    "bytea": (FDP.TYPE_BYTES, bytes),
    "date": (FDP.TYPE_INT32, lambda d: (d - EPOCH_DATE).days),
    "timestamp with time zone": (FDP.TYPE_INT64, lambda t: (t - EPOCH) // ONE_US),
    "timestamp without time zone": (FDP.TYPE_INT64, lambda t: (t - EPOCH_NAIVE) // ONE_US),
}


def json_value(v):
    if isinstance(v, datetime.datetime):
        return (v - (EPOCH if v.tzinfo else EPOCH_NAIVE)) // ONE_US
    if isinstance(v, datetime.date):
        return (v - EPOCH_DATE).days
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (bytes, memoryview)):
        return base64.b64encode(bytes(v)).decode()
    return v


def table_columns(conn, table):
    """[(name, type name, not null)] of the table's user columns, in order."""
    with conn.cursor() as cur:
        cur.execute("""SELECT attname, format_type(atttypid, NULL), attnotnull
                         FROM pg_attribute
                        WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped
                        ORDER BY attnum""", (table,))
        return cur.fetchall()


def descriptor_for(columns):
    proto = descriptor_pb2.DescriptorProto(name="queue_row")
    for number, (name, typ, notnull) in enumerate(columns, 1):
        if typ not in TYPES:
            raise SystemExit("column %s: type %s not supported by this client" % (name, typ))
        proto.field.add(name=name, number=number, type=TYPES[typ][0],
                        label=FDP.LABEL_REQUIRED if notnull else FDP.LABEL_OPTIONAL)
    return proto


def zerobus_token(http_url, client, secret, workspace, table):
    catalog, schema, _ = table.split(".")
    details = [
        {"type": "unity_catalog_privileges", "privileges": ["USE CATALOG"],
         "object_type": "CATALOG", "object_full_path": catalog},
        {"type": "unity_catalog_privileges", "privileges": ["USE SCHEMA"],
         "object_type": "SCHEMA", "object_full_path": catalog + "." + schema},
        {"type": "unity_catalog_privileges", "privileges": ["SELECT", "MODIFY"],
         "object_type": "TABLE", "object_full_path": table}]
    body = urllib.parse.urlencode({
        "grant_type": "client_credentials", "scope": "all-apis",
        "resource": "api://databricks/workspaces/%s/zerobusDirectWriteApi" % workspace,
        "authorization_details": json.dumps(details)}).encode()
    req = urllib.request.Request(http_url.rstrip("/") + "/oidc/v1/token", data=body, headers={
        "Authorization": "Basic " + base64.b64encode(("%s:%s" % (client, secret)).encode()).decode(),
        "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)["access_token"]


class Stream:
    """One EphemeralStream: requests go in through a queue, acks come back in order."""

    def __init__(self, channel, wire, token, table, record_type, descriptor):
        self.wire = wire
        self._requests = queue.Queue()
        call = channel.stream_stream(METHOD, request_serializer=lambda m: m.SerializeToString(),
                                     response_deserializer=wire.EphemeralStreamResponse.FromString)
        self._responses = call(iter(self._requests.get, None), metadata=[
            ("authorization", "Bearer " + token),
            ("x-databricks-zerobus-table-name", table),
            ("x-zerobus-sdk", "bench-polling-client/1")])
        first = wire.EphemeralStreamRequest()
        first.create_stream.table_name = table
        first.create_stream.record_type = record_type
        if descriptor is not None:
            first.create_stream.descriptor_proto = descriptor.SerializeToString()
        self._requests.put(first)
        reply = next(self._responses)
        if not reply.HasField("create_stream_response"):
            raise RuntimeError("unexpected first reply: %s" % reply)
        self.offset = 0

    def send_batch_and_wait(self, records, proto):
        """Send one batch request and block until it is durable."""
        request = self.wire.EphemeralStreamRequest()
        batch = request.ingest_record_batch
        batch.offset_id = self.offset
        if proto:
            batch.proto_encoded_batch.records.extend(records)
        else:
            batch.json_batch.records.extend(records)
        self._requests.put(request)
        while True:
            reply = next(self._responses)
            if reply.HasField("ingest_record_response"):
                if reply.ingest_record_response.durability_ack_up_to_offset >= self.offset:
                    break
            elif reply.HasField("close_stream_signal"):
                raise RuntimeError("server asked to close the stream (not handled here)")
        self.offset += 1

    def close(self):
        self._requests.put(None)
        for _ in self._responses:
            pass


def proc_cpu_s(pid):
    """utime + stime of a local process, seconds; None if unreadable."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def main():
    ap = argparse.ArgumentParser(description="poll a queue table and stream it to ZeroBus")
    ap.add_argument("--dsn", required=True, help="libpq connection string")
    ap.add_argument("--queue", required=True, help="queue table (with a bigint key)")
    ap.add_argument("--key", default="id", help="the queue's key column (default id)")
    ap.add_argument("--http", required=True, help="workspace URL (token endpoint)")
    ap.add_argument("--grpc", required=True, help="ZeroBus host:port (h2c)")
    ap.add_argument("--target", required=True, help="catalog.schema.table")
    ap.add_argument("--workspace", default="1234567890")
    ap.add_argument("--client", default="zb-test-client")
    ap.add_argument("--secret", default="zb-test-secret")
    ap.add_argument("--format", choices=("proto", "json"), default="proto")
    ap.add_argument("--batch", type=int, default=5000, help="rows per claim/request")
    ap.add_argument("--max-rows", type=int, default=0, help="stop after this many rows (0: until empty)")
    args = ap.parse_args()

    wire = WireMessages()
    conn = psycopg2.connect(args.dsn, application_name="bench polling client")
    columns = table_columns(conn, args.queue)
    names = [c[0] for c in columns]
    proto = args.format == "proto"
    descriptor = descriptor_for(columns) if proto else None
    if proto:
        record_class = record_class_from_descriptor(descriptor.SerializeToString())
        converters = [TYPES[t][1] for _, t, _ in columns]

        def encode(row):
            return record_class(**{n: conv(v) for n, conv, v in zip(names, converters, row)
                                   if v is not None}).SerializeToString()
    else:
        def encode(row):
            return json.dumps({n: json_value(v) for n, v in zip(names, row)})

    cols = ", ".join('"%s"' % n for n in names)
    with conn.cursor() as cur:
        # prepared once; each EXECUTE claims the oldest `batch` rows nobody else holds
        cur.execute('PREPARE claim(int) AS DELETE FROM {q} WHERE "{k}" = ANY(ARRAY('
                    'SELECT "{k}" FROM {q} ORDER BY "{k}" LIMIT $1 FOR UPDATE SKIP LOCKED)) '
                    'RETURNING {c}'.format(q=args.queue, k=args.key, c=cols))
    conn.commit()

    token = zerobus_token(args.http, args.client, args.secret, args.workspace, args.target)
    channel = grpc.insecure_channel(args.grpc, options=[
        ("grpc.max_send_message_length", 16 << 20), ("grpc.max_receive_message_length", 16 << 20)])
    stream = Stream(channel, wire, token, args.target,
                    wire.RECORD_TYPE_PROTO if proto else wire.RECORD_TYPE_JSON, descriptor)

    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    conn.commit()

    rows = requests = 0
    bcpu0 = proc_cpu_s(backend)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    with conn.cursor() as cur:
        while True:
            cur.execute("EXECUTE claim(%s)", (args.batch,))
            batch = cur.fetchall()
            if not batch:
                conn.rollback()
                break
            stream.send_batch_and_wait([encode(r) for r in batch], proto)
            conn.commit()
            rows += len(batch)
            requests += 1
            if args.max_rows and rows >= args.max_rows:
                break
    elapsed = time.monotonic() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    bcpu1 = proc_cpu_s(backend)
    stream.close()
    channel.close()
    conn.close()
    print(json.dumps({
        "rows": rows, "requests": requests, "seconds": round(elapsed, 3),
        "rows_per_s": round(rows / elapsed) if elapsed > 0 else None,
        "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 3),
        "backend_cpu_s": round(bcpu1 - bcpu0, 3) if bcpu0 is not None and bcpu1 is not None else None}))


if __name__ == "__main__":
    main()
