"""TLS, persistence across restarts, and sink-mode throughput."""

import os
import time
import unittest

import grpc

from harness import (FDP, Emulator, Stream, batch_request, create_request, proto_descriptor,
                     record_encoder)

TABLE = "main.default.t"
DESCRIPTOR = proto_descriptor("T", [("id", FDP.TYPE_INT64, FDP.LABEL_OPTIONAL),
                                    ("payload", FDP.TYPE_STRING, FDP.LABEL_OPTIONAL)])
encode = record_encoder(DESCRIPTOR)


def ingest(emulator, channel, token, batches):
    stream = Stream(channel, token, TABLE)
    stream.send(create_request(TABLE, "PROTO", DESCRIPTOR))
    stream.next()
    for offset, records in enumerate(batches):
        stream.send(batch_request(offset, records))
    stream.close()
    return stream.read_all()


class TlsAndRestartTest(unittest.TestCase):

    def setUp(self):
        self.emulator = Emulator()
        self.emulator.db = os.path.join(self.emulator.workdir, "lake.db")  # kept on restart
        self.emulator.start()
        self.emulator.create_table(TABLE, [("id", "BIGINT"), ("payload", "STRING")])
        self.token = self.emulator.zerobus_token(TABLE)

    def tearDown(self):
        self.emulator.cleanup()

    def test_grpc_over_tls(self):
        channel = self.emulator.channel(tls=True)
        responses, status, _ = ingest(self.emulator, channel, self.token, [[encode(id=1)]])
        channel.close()
        self.assertEqual(status, grpc.StatusCode.OK)
        self.assertEqual(responses[-1].ingest_record_response.durability_ack_up_to_offset, 0)

    def test_wrong_ca_fails(self):
        channel = self.emulator.channel(tls=True, ca_file=self.emulator.ports["wrong_ca_file"])
        stream = Stream(channel, self.token, TABLE)
        stream.send(create_request(TABLE, "PROTO", DESCRIPTOR))
        stream.close()
        _, status, _ = stream.read_all()
        channel.close()
        self.assertEqual(status, grpc.StatusCode.UNAVAILABLE)
        with self.assertRaises(Exception) as ctx:
            self.emulator.http("GET", "/emulator/stats", tls=True,
                               ca_file=self.emulator.ports["wrong_ca_file"])
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(ctx.exception))

    def test_rows_survive_restart(self):
        channel = self.emulator.channel()
        ingest(self.emulator, channel, self.token, [[encode(id=1), encode(id=2)]])
        channel.close()
        self.emulator.stop()
        self.emulator.start()
        self.assertEqual(self.emulator.control("GET", "/tables/%s/count" % TABLE)["count"], 2)
        channel = self.emulator.channel()
        stream = Stream(channel, self.token, TABLE)  # tokens do not survive a restart
        stream.send(create_request(TABLE, "PROTO", DESCRIPTOR))
        stream.close()
        self.assertEqual(stream.read_all()[1], grpc.StatusCode.UNAUTHENTICATED)
        channel.close()


class SinkThroughputTest(unittest.TestCase):
    """Measures sink mode (printed, not asserted): 200-byte records, 5,000 per batch."""

    RECORDS = 400000
    BATCH = 5000

    def measure(self, *args):
        emulator = Emulator("--sink", *args).start()
        try:
            token = emulator.zerobus_token(TABLE)
            record = encode(id=123456789, payload="x" * 185)
            batch = [record] * self.BATCH
            requests = [batch_request(i, batch).SerializeToString()
                        for i in range(self.RECORDS // self.BATCH)]
            channel = emulator.channel()
            call = channel.stream_stream("/databricks.zerobus.Zerobus/EphemeralStream",
                                         request_serializer=lambda b: b,
                                         response_deserializer=lambda b: b)
            first = create_request(TABLE, "PROTO", DESCRIPTOR).SerializeToString()
            started = time.monotonic()
            responses = list(call(iter([first] + requests), metadata=[
                ("authorization", "Bearer " + token),
                ("x-databricks-zerobus-table-name", TABLE)]))
            elapsed = time.monotonic() - started
            channel.close()
            stats = emulator.control("GET", "/stats")
            self.assertEqual(stats["records"], self.RECORDS)
            self.assertGreater(len(responses), 1)
            rate = self.RECORDS / elapsed
            print("\nsink%s: %d records of %d bytes in %.2fs = %.0f records/s (%.0f MB/s)" % (
                " " + " ".join(args) if args else "", self.RECORDS, len(record), elapsed, rate,
                self.RECORDS * len(record) / elapsed / 1e6))
            return rate
        finally:
            emulator.cleanup()

    def test_sink_through_proxy(self):
        self.measure()

    def test_sink_without_proxy(self):
        self.measure("--no-proxy")
