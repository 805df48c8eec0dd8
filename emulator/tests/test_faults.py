"""Fault injection: acks, close signals, stream ends, rejects, proxy faults."""

import time

import grpc

from harness import (FDP, EmulatorTestCase, Stream, batch_request, create_request,
                     proto_descriptor, record_encoder)

TABLE = "main.default.f"
DESCRIPTOR = proto_descriptor("F", [("id", FDP.TYPE_INT64, FDP.LABEL_OPTIONAL),
                                    ("s", FDP.TYPE_STRING, FDP.LABEL_OPTIONAL)])
encode = record_encoder(DESCRIPTOR)


class FaultTest(EmulatorTestCase):

    def setUp(self):
        super().setUp()
        self.emulator.create_table(TABLE, [("id", "BIGINT"), ("s", "STRING")])
        self.token = self.emulator.zerobus_token(TABLE)
        self.channel = self.emulator.channel()

    def tearDown(self):
        self.channel.close()

    def faults(self, body):
        return self.emulator.control("POST", "/faults", body)

    def open(self):
        stream = Stream(self.channel, self.token, TABLE)
        stream.send(create_request(TABLE, "PROTO", DESCRIPTOR))
        stream.next()
        return stream

    def count(self):
        return self.emulator.control("GET", "/tables/%s/count" % TABLE)["count"]

    def test_fault_state_roundtrip_and_validation(self):
        self.faults({"ack_delay_ms": 5, "reject_record": {"contains": "x"}})
        self.assertEqual(self.emulator.control("GET", "/faults"),
                         {"ack_delay_ms": 5, "reject_record": {"contains": "x"}})
        self.faults({"ack_delay_ms": None})
        self.assertNotIn("ack_delay_ms", self.emulator.control("GET", "/faults"))
        status, body = self.emulator.http("POST", "/emulator/faults", {"bogus": 1})
        self.assertEqual(status, 400)
        self.assertIn("bogus", body["message"])
        self.emulator.control("DELETE", "/faults")
        self.assertEqual(self.emulator.control("GET", "/faults"), {})

    def test_withhold_acks(self):
        self.faults({"withhold_acks": True})
        stream = self.open()
        stream.send(batch_request(0, [encode(id=1)]))
        time.sleep(0.3)
        stream.close()
        responses, status, _ = stream.read_all()
        self.assertEqual(responses, [])
        self.assertEqual(self.count(), 0)

    def test_withheld_stream_stays_silent(self):
        # an ack for a later offset would cover the withheld, unstored request
        self.faults({"withhold_acks": True})
        stream = self.open()
        stream.send(batch_request(0, [encode(id=1)]))
        time.sleep(0.3)
        self.emulator.control("DELETE", "/faults")
        stream.send(batch_request(1, [encode(id=2)]))
        time.sleep(0.3)
        stream.close()
        responses, status, _ = stream.read_all()
        self.assertEqual(responses, [])
        self.assertEqual(self.count(), 0)
        # a new stream is served normally
        stream = self.open()
        stream.send(batch_request(0, [encode(id=3)]))
        stream.close()
        responses, status, _ = stream.read_all()
        self.assertEqual(responses[-1].ingest_record_response.durability_ack_up_to_offset, 0)
        self.assertEqual(self.count(), 1)

    def test_close_signal(self):
        self.faults({"close_signal": {"after_requests": 1, "duration_ms": 400}})
        stream = self.open()
        stream.send(batch_request(0, [encode(id=1)]))
        kinds = [stream.next().WhichOneof("payload") for _ in range(2)]
        self.assertEqual(sorted(kinds), ["close_stream_signal", "ingest_record_response"])
        stream.send(batch_request(1, [encode(id=2)]))  # still acked during the grace period
        responses, status, details = stream.read_all()
        self.assertEqual(responses[-1].ingest_record_response.durability_ack_up_to_offset, 1)
        self.assertEqual(status, grpc.StatusCode.UNAVAILABLE)
        self.assertIn("6002", details)
        self.assertEqual(self.emulator.control("GET", "/stats")["close_signals_sent"], 1)

    def test_close_signal_then_client_finishes(self):
        self.faults({"close_signal": {"after_requests": 0, "duration_ms": 5000}})
        stream = self.open()
        self.assertEqual(stream.next().close_stream_signal.duration.seconds, 5)
        stream.close()
        self.assertEqual(stream.read_all()[1], grpc.StatusCode.OK)

    def test_end_stream(self):
        self.faults({"end_stream": {"after_requests": 2, "status": "UNAVAILABLE",
                                    "message": "injected"}})
        stream = self.open()
        for offset in range(4):
            stream.send(batch_request(offset, [encode(id=offset)]))
        _, status, details = stream.read_all()
        self.assertEqual((status, details), (grpc.StatusCode.UNAVAILABLE, "injected"))
        self.assertEqual(self.count(), 2)
        stream = self.open()  # only the next stream was affected
        stream.send(batch_request(0, [encode(id=9)]))
        stream.next()
        stream.close()
        self.assertEqual(stream.read_all()[1], grpc.StatusCode.OK)

    def test_reject_record(self):
        self.faults({"reject_record": {"contains": "poison"}})
        stream = self.open()
        stream.send(batch_request(0, [encode(id=1, s="fine"), encode(id=2, s="a poison pill")]))
        _, status, details = stream.read_all()
        self.assertEqual(status, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("Record 1", details)
        self.assertEqual(self.count(), 0)

    def test_drop_connection(self):
        self.faults({"drop_connection": {"after_requests": 1}})
        stream = self.open()
        stream.send(batch_request(0, [encode(id=1)]))
        _, status, details = stream.read_all()
        self.assertEqual(status, grpc.StatusCode.UNAVAILABLE, details)
        self.assertEqual(self.count(), 1)
        self.assertEqual(self.emulator.control("GET", "/stats")["connections_dropped"], 1)

    def test_garbage_and_not_grpc(self):
        for fault, expected in (({"garbage": {"kind": "frames"}}, None),
                                ({"garbage": {"kind": "protobuf"}}, None),
                                ({"garbage": {"kind": "http"}}, None),
                                ({"not_grpc": {"streams": 1}}, grpc.StatusCode.UNIMPLEMENTED)):
            self.faults(fault)
            channel = self.emulator.channel()  # a new connection meets the fault
            stream = Stream(channel, self.token, TABLE)
            stream.send(create_request(TABLE, "PROTO", DESCRIPTOR))
            stream.close()
            _, status, details = stream.read_all()
            channel.close()
            self.assertNotEqual(status, grpc.StatusCode.OK, fault)
            if expected:
                self.assertEqual(status, expected, details)

    def test_expire_tokens(self):
        self.faults({"expire_tokens": True})
        stream = Stream(self.channel, self.token, TABLE)
        stream.send(create_request(TABLE, "PROTO", DESCRIPTOR))
        stream.close()
        self.assertEqual(stream.read_all()[1], grpc.StatusCode.UNAUTHENTICATED)
        self.assertNotIn("expire_tokens", self.emulator.control("GET", "/faults"))

    def test_stats_reset(self):
        stream = self.open()
        stream.close()
        stream.read_all()
        self.emulator.control("POST", "/reset")
        stats = self.emulator.control("GET", "/stats")
        self.assertEqual((stats["streams_opened"], stats["streams"]), (0, []))


class StreamLifetimeTest(EmulatorTestCase):
    EMULATOR_ARGS = ("--stream-lifetime", "0.5", "--close-signal-duration", "0.5")

    def test_lifetime_close_signal_then_timeout(self):
        self.emulator.create_table(TABLE, [("id", "BIGINT"), ("s", "STRING")])
        channel = self.emulator.channel()
        stream = Stream(channel, self.emulator.zerobus_token(TABLE), TABLE)
        stream.send(create_request(TABLE, "PROTO", DESCRIPTOR))
        stream.next()
        signal = stream.next()
        self.assertEqual(signal.close_stream_signal.duration.nanos, 500000000)
        _, status, details = stream.read_all()
        channel.close()
        self.assertEqual(status, grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(details, "Stream timeout reached. Please create a new stream. 6002")
