"""ZeroBus EphemeralStream: happy paths and every validation error."""

import json
import time

import grpc

from harness import (FDP, EmulatorTestCase, Stream, batch_request, create_request,
                     proto_descriptor, record_encoder, single_request)

TABLE = "main.default.tx"
COLUMNS = [("id", "BIGINT!"), ("name", "STRING"), ("amount", "DECIMAL(12,2)"),
           ("ts", "TIMESTAMP"), ("day", "DATE"), ("ok", "BOOLEAN"), ("tags", "ARRAY<STRING>"),
           ("raw", "BINARY"), ("score", "DOUBLE"), ("small", "SMALLINT")]
FIELDS = [("id", FDP.TYPE_INT64, FDP.LABEL_REQUIRED), ("name", FDP.TYPE_STRING, FDP.LABEL_OPTIONAL),
          ("amount", FDP.TYPE_STRING, FDP.LABEL_OPTIONAL), ("ts", FDP.TYPE_INT64, FDP.LABEL_OPTIONAL),
          ("day", FDP.TYPE_INT32, FDP.LABEL_OPTIONAL), ("ok", FDP.TYPE_BOOL, FDP.LABEL_OPTIONAL),
          ("tags", FDP.TYPE_STRING, FDP.LABEL_REPEATED), ("raw", FDP.TYPE_BYTES, FDP.LABEL_OPTIONAL),
          ("score", FDP.TYPE_DOUBLE, FDP.LABEL_OPTIONAL),
          ("small", FDP.TYPE_SINT32, FDP.LABEL_OPTIONAL)]
DESCRIPTOR = proto_descriptor("Tx", FIELDS)
encode = record_encoder(DESCRIPTOR)


class ZerobusTest(EmulatorTestCase):

    def setUp(self):
        super().setUp()
        self.emulator.create_table(TABLE, COLUMNS)
        self.token = self.emulator.zerobus_token(TABLE)
        self.channel = self.emulator.channel()

    def tearDown(self):
        self.channel.close()

    def open(self, record_type="PROTO", descriptor=DESCRIPTOR, token=None, table=TABLE,
             header_table=None):
        stream = Stream(self.channel, self.token if token is None else token, table, header_table)
        stream.send(create_request(table, record_type, descriptor))
        return stream

    def expect_error(self, stream, code, fragment):
        stream.close()
        _, status, details = stream.read_all()
        self.assertEqual(status, code, details)
        self.assertIn(fragment, details)
        return details

    def rows(self):
        return self.emulator.control("GET", "/tables/%s/rows" % TABLE)["rows"]

    # ------------------------------------------------------------ happy paths

    def test_proto_batch_and_single(self):
        stream = self.open()
        created = stream.next()
        self.assertEqual(len(created.create_stream_response.stream_id), 36)
        stream.send(batch_request(0, [encode(id=i, name="n%d" % i, amount="12.50",
                                             ts=1700000000123456, day=19700, ok=i % 2 == 0,
                                             tags=["a", "b"], raw=b"\x00\xff", score=1.5,
                                             small=-3) for i in range(3)]))
        self.assertEqual(stream.next().ingest_record_response.durability_ack_up_to_offset, 0)
        stream.send(single_request(1, encode(id=7)))
        self.assertEqual(stream.next().ingest_record_response.durability_ack_up_to_offset, 1)
        stream.close()
        self.assertEqual(stream.read_all()[1], grpc.StatusCode.OK)
        rows = self.rows()
        self.assertEqual(rows[0], [0, "n0", "12.50", 1700000000123456, 19700, True, ["a", "b"],
                                   "AP8=", 1.5, -3])
        self.assertEqual(rows[3], [7] + [None] * 9)
        stats = self.emulator.control("GET", "/stats")
        self.assertEqual((stats["requests"], stats["records"], stats["acks_sent"]), (2, 4, 2))
        self.assertEqual(stats["streams"][-1]["record_type"], "PROTO")

    def test_json_records(self):
        stream = self.open("JSON", descriptor=None)
        stream.next()
        stream.send(batch_request(0, [json.dumps({"id": 1, "name": "j", "amount": 3.25,
                                                  "ts": 5, "day": 2, "ok": False,
                                                  "tags": ["x"], "raw": "AQI="}),
                                      json.dumps({"id": 2, "amount": "10"})]))
        self.assertEqual(stream.next().ingest_record_response.durability_ack_up_to_offset, 0)
        stream.send(single_request(1, json.dumps({"id": 3})))
        stream.next()
        stream.close()
        self.assertEqual(stream.read_all()[1], grpc.StatusCode.OK)
        rows = self.rows()
        self.assertEqual(rows[0][:8], [1, "j", "3.25", 5, 2, False, ["x"], "AQI="])
        self.assertEqual(rows[1][2], "10.00")
        self.assertEqual(len(rows), 3)

    def test_acks_are_cumulative_and_pipelined(self):
        self.emulator.control("POST", "/faults", {"ack_delay_ms": 300})
        stream = self.open()
        stream.next()
        started = time.monotonic()
        for offset in range(20):
            stream.send(batch_request(offset, [encode(id=offset)]))
        stream.close()
        responses, status, _ = stream.read_all()
        elapsed = time.monotonic() - started
        acks = [r.ingest_record_response.durability_ack_up_to_offset for r in responses]
        self.assertEqual(status, grpc.StatusCode.OK)
        self.assertEqual(acks[-1], 19)
        self.assertEqual(acks, sorted(acks))
        self.assertLess(elapsed, 3.0, "delayed acks must pipeline, not serialize")

    # ------------------------------------------------------------ validation

    def test_missing_token(self):
        stream = Stream(self.channel, None, TABLE)
        stream.send(create_request(TABLE, "PROTO", DESCRIPTOR))
        self.expect_error(stream, grpc.StatusCode.UNAUTHENTICATED, "Missing bearer token")

    def test_unknown_token(self):
        stream = self.open(token="not-a-token")
        self.expect_error(stream, grpc.StatusCode.UNAUTHENTICATED, "Invalid or expired")

    def test_sql_token_is_not_a_zerobus_token(self):
        stream = self.open(token=self.emulator.sql_token())
        self.expect_error(stream, grpc.StatusCode.PERMISSION_DENIED, "ZeroBus")

    def test_token_for_another_table(self):
        self.emulator.create_table("main.default.other", COLUMNS)
        stream = self.open(table="main.default.other")
        self.expect_error(stream, grpc.StatusCode.PERMISSION_DENIED, "SELECT and MODIFY")

    def test_header_table_mismatch(self):
        stream = self.open(header_table="main.default.other")
        self.expect_error(stream, grpc.StatusCode.INVALID_ARGUMENT, "does not match")

    def test_first_message_must_be_create_stream(self):
        stream = Stream(self.channel, self.token, TABLE)
        stream.send(batch_request(0, [encode(id=1)]))
        self.expect_error(stream, grpc.StatusCode.INVALID_ARGUMENT, "first message")

    def test_unknown_table(self):
        token = self.emulator.zerobus_token("main.default.missing")
        stream = self.open(token=token, table="main.default.missing")
        self.expect_error(stream, grpc.StatusCode.NOT_FOUND, "main.default.missing")

    def test_bad_table_name(self):
        stream = self.open(table="main.default.bad-name")
        self.expect_error(stream, grpc.StatusCode.INVALID_ARGUMENT, "Invalid table name")

    def test_record_type_unspecified(self):
        stream = self.open("UNSPECIFIED")
        self.expect_error(stream, grpc.StatusCode.INVALID_ARGUMENT, "record_type")

    def test_descriptor_unknown_column(self):
        descriptor = proto_descriptor("Tx", FIELDS[:1] + [("nope", FDP.TYPE_STRING,
                                                           FDP.LABEL_OPTIONAL)])
        self.expect_error(self.open(descriptor=descriptor), grpc.StatusCode.INVALID_ARGUMENT,
                          "nope is not a column")

    def test_descriptor_wrong_type(self):
        descriptor = proto_descriptor("Tx", [("id", FDP.TYPE_INT32, FDP.LABEL_REQUIRED)])
        self.expect_error(self.open(descriptor=descriptor), grpc.StatusCode.INVALID_ARGUMENT,
                          "does not match column type BIGINT")

    def test_descriptor_missing_not_null_column(self):
        descriptor = proto_descriptor("Tx", FIELDS[1:2])
        self.expect_error(self.open(descriptor=descriptor), grpc.StatusCode.INVALID_ARGUMENT,
                          "id of table")

    def test_descriptor_garbage(self):
        self.expect_error(self.open(descriptor=b"\xff\xff\xff"),
                          grpc.StatusCode.INVALID_ARGUMENT, "DescriptorProto")

    def test_offsets_start_at_zero(self):
        stream = self.open()
        stream.next()
        stream.send(batch_request(1, [encode(id=1)]))
        self.expect_error(stream, grpc.StatusCode.INVALID_ARGUMENT, "expected 0")

    def test_offsets_rise_by_one(self):
        stream = self.open()
        stream.next()
        stream.send(batch_request(0, [encode(id=1)]))
        stream.send(batch_request(2, [encode(id=2)]))
        self.expect_error(stream, grpc.StatusCode.INVALID_ARGUMENT, "expected 1")
        self.assertEqual(len(self.rows()), 1)

    def test_record_that_does_not_decode_rejects_batch(self):
        stream = self.open()
        stream.next()
        stream.send(batch_request(0, [encode(id=1), b"\x0a\xff\xff"]))
        self.expect_error(stream, grpc.StatusCode.INVALID_ARGUMENT, "Record 1")
        self.assertEqual(self.rows(), [])
        self.assertEqual(self.emulator.control("GET", "/stats")["rejected_batches"], 1)

    def test_missing_required_field(self):
        stream = self.open()
        stream.next()
        stream.send(batch_request(0, [encode(name="no id")]))
        self.expect_error(stream, grpc.StatusCode.INVALID_ARGUMENT, "Record 0")

    def test_decimal_out_of_range(self):
        stream = self.open()
        stream.next()
        stream.send(batch_request(0, [encode(id=1, amount="1.234")]))
        self.expect_error(stream, grpc.StatusCode.INVALID_ARGUMENT, "does not fit DECIMAL(12,2)")

    def test_smallint_out_of_range(self):
        stream = self.open()
        stream.next()
        stream.send(batch_request(0, [encode(id=1), encode(id=2, small=40000)]))
        self.expect_error(stream, grpc.StatusCode.INVALID_ARGUMENT, "Record 1")

    def test_json_errors(self):
        for record, fragment in ((json.dumps({"id": 1, "bogus": 2}), "unknown column bogus"),
                                 (json.dumps({"name": "x"}), "NOT NULL"),
                                 (json.dumps({"id": "1"}), "expected an integer"),
                                 ("{not json", "not valid JSON")):
            stream = self.open("JSON", descriptor=None)
            stream.next()
            stream.send(batch_request(0, [json.dumps({"id": 0}), record]))
            self.expect_error(stream, grpc.StatusCode.INVALID_ARGUMENT, fragment)

    def test_json_record_on_proto_stream(self):
        stream = self.open()
        stream.next()
        stream.send(single_request(0, json.dumps({"id": 1})))
        self.expect_error(stream, grpc.StatusCode.INVALID_ARGUMENT, "record_type is PROTO")

    def test_oversized_request(self):
        stream = self.open()
        stream.next()
        stream.send(batch_request(0, [encode(id=1, name="x" * 1024 * 1024)] * 11))
        self.expect_error(stream, grpc.StatusCode.RESOURCE_EXHAUSTED, "")
