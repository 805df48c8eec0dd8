"""Test harness: run the emulator as a subprocess and talk to it like a client."""

import base64
import json
import os
import queue
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import grpc
from google.protobuf import descriptor_pb2

EMULATOR_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, EMULATOR_DIR)

from protos import WireMessages, record_class_from_descriptor  # noqa: E402

PYTHON = "/usr/bin/python3"
CLIENT_ID, CLIENT_SECRET = "zb-test-client", "zb-test-secret"
METHOD = "/databricks.zerobus.Zerobus/EphemeralStream"
MESSAGES = WireMessages()
FDP = descriptor_pb2.FieldDescriptorProto


class Emulator:
    """One emulator subprocess with its ports."""

    def __init__(self, *extra_args, tls_dir=None, db=None):
        self.workdir = tempfile.mkdtemp(prefix="zb-emu-test-")
        self.tls_dir = tls_dir or os.path.join(self.workdir, "tls")
        self.db = db
        self.extra_args = list(extra_args)
        self.process = None
        self.ports = None

    def start(self, timeout=30):
        ports_file = os.path.join(self.workdir, "ports.json")
        if os.path.exists(ports_file):
            os.unlink(ports_file)
        cmd = [PYTHON, os.path.join(EMULATOR_DIR, "zerobus_emulator.py"),
               "--ports-file", ports_file, "--tls-dir", self.tls_dir,
               "--log", os.path.join(self.workdir, "emulator.log")] + self.extra_args
        if self.db:
            cmd += ["--db", self.db]
        self.process = subprocess.Popen(cmd)
        deadline = time.time() + timeout
        while not os.path.exists(ports_file):
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError("emulator did not start; log:\n" + self.log())
            time.sleep(0.05)
        with open(ports_file) as f:
            self.ports = json.load(f)
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log(self):
        try:
            with open(os.path.join(self.workdir, "emulator.log")) as f:
                return f.read()[-5000:]
        except OSError:
            return ""

    # ------------------------------------------------------------ HTTP

    def http(self, method, path, body=None, token=None, tls=False, form=None, headers=None,
             ca_file=None):
        """Return (status, parsed JSON or raw bytes)."""
        scheme, port = ("https", self.ports["https"]) if tls else ("http", self.ports["http"])
        host = "localhost" if tls else "127.0.0.1"
        data = None
        all_headers = dict(headers or {})
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        if token:
            all_headers["Authorization"] = "Bearer " + token
        request = urllib.request.Request("%s://%s:%d%s" % (scheme, host, port, path), data=data,
                                         headers=all_headers, method=method)
        context = ssl.create_default_context(cafile=ca_file or self.ports["ca_file"]) \
            if tls else None
        try:
            with urllib.request.urlopen(request, timeout=60, context=context) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload

    def control(self, method, path, body=None):
        status, payload = self.http(method, "/emulator" + path, body)
        if status >= 300:
            raise AssertionError("control %s %s -> %s %s" % (method, path, status, payload))
        return payload

    def create_table(self, name, columns):
        """columns: [(name, type)]; a type ending in "!" is NOT NULL."""
        return self.control("POST", "/tables", {"name": name, "columns": [
            {"name": n, "type": t.rstrip("!"), "nullable": not t.endswith("!")}
            for n, t in columns]})

    def token_request(self, form, client=(CLIENT_ID, CLIENT_SECRET), tls=False):
        headers = {}
        if client:
            headers["Authorization"] = "Basic " + base64.b64encode(
                ("%s:%s" % client).encode()).decode()
        return self.http("POST", "/oidc/v1/token", form=form, headers=headers, tls=tls)

    def zerobus_token(self, table, workspace="1234567890"):
        catalog, schema, _ = table.split(".")
        details = [
            {"type": "unity_catalog_privileges", "privileges": ["USE CATALOG"],
             "object_type": "CATALOG", "object_full_path": catalog},
            {"type": "unity_catalog_privileges", "privileges": ["USE SCHEMA"],
             "object_type": "SCHEMA", "object_full_path": catalog + "." + schema},
            {"type": "unity_catalog_privileges", "privileges": ["SELECT", "MODIFY"],
             "object_type": "TABLE", "object_full_path": table}]
        status, body = self.token_request({
            "grant_type": "client_credentials", "scope": "all-apis",
            "resource": "api://databricks/workspaces/%s/zerobusDirectWriteApi" % workspace,
            "authorization_details": json.dumps(details)})
        assert status == 200, body
        return body["access_token"]

    def sql_token(self):
        status, body = self.token_request({"grant_type": "client_credentials",
                                           "scope": "all-apis"})
        assert status == 200, body
        return body["access_token"]

    # ------------------------------------------------------------ gRPC

    def channel(self, tls=False, ca_file=None):
        if not tls:
            return grpc.insecure_channel("127.0.0.1:%d" % self.ports["grpc"])
        with open(ca_file or self.ports["ca_file"], "rb") as f:
            credentials = grpc.ssl_channel_credentials(f.read())
        return grpc.secure_channel("localhost:%d" % self.ports["grpcs"], credentials)


def proto_descriptor(name, fields):
    """A serialized proto2 DescriptorProto; fields: [(name, FDP.TYPE_x, label)]."""
    proto = descriptor_pb2.DescriptorProto(name=name)
    for number, (fname, ftype, label) in enumerate(fields, 1):
        proto.field.add(name=fname, number=number, type=ftype, label=label)
    return proto.SerializeToString()


def record_encoder(descriptor_bytes):
    """A function(**values) -> serialized record for a descriptor."""
    cls = record_class_from_descriptor(descriptor_bytes)

    def encode(**values):
        message = cls()
        for key, value in values.items():
            if isinstance(value, list):
                getattr(message, key).extend(value)
            else:
                setattr(message, key, value)
        return message.SerializePartialToString()
    return encode


def create_request(table, record_type="PROTO", descriptor=None):
    request = MESSAGES.EphemeralStreamRequest()
    request.create_stream.table_name = table
    request.create_stream.record_type = {"PROTO": 1, "JSON": 2, "UNSPECIFIED": 0}[record_type]
    if descriptor is not None:
        request.create_stream.descriptor_proto = descriptor
    return request


def batch_request(offset, records):
    request = MESSAGES.EphemeralStreamRequest()
    request.ingest_record_batch.offset_id = offset
    if records and isinstance(records[0], str):
        request.ingest_record_batch.json_batch.records.extend(records)
    else:
        request.ingest_record_batch.proto_encoded_batch.records.extend(records)
    return request


def single_request(offset, record):
    request = MESSAGES.EphemeralStreamRequest()
    request.ingest_record.offset_id = offset
    if isinstance(record, str):
        request.ingest_record.json_record = record
    else:
        request.ingest_record.proto_encoded_record = record
    return request


class Stream:
    """A bidirectional EphemeralStream call fed from a queue."""

    def __init__(self, channel, token, table, header_table=None, extra_metadata=()):
        self._queue = queue.Queue()
        metadata = [("x-databricks-zerobus-table-name", header_table or table)]
        metadata.extend(extra_metadata)
        if token is not None:
            metadata.append(("authorization", "Bearer " + token))
        call = channel.stream_stream(
            METHOD, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=MESSAGES.EphemeralStreamResponse.FromString)
        self.responses = call(iter(self._queue.get, None), metadata=metadata)

    def send(self, request):
        self._queue.put(request)

    def close(self):
        self._queue.put(None)

    def next(self):
        return next(self.responses)

    def read_all(self):
        """All remaining responses, then the final status: (responses, code, details)."""
        out = []
        try:
            for response in self.responses:
                out.append(response)
        except grpc.RpcError as exc:
            return out, exc.code(), exc.details()
        return out, grpc.StatusCode.OK, None

    def cancel(self):
        self.responses.cancel()


class EmulatorTestCase(unittest.TestCase):
    """Starts one emulator for the class (arguments in EMULATOR_ARGS)."""

    EMULATOR_ARGS = ()
    emulator = None

    @classmethod
    def setUpClass(cls):
        cls.emulator = Emulator(*cls.EMULATOR_ARGS).start()

    @classmethod
    def tearDownClass(cls):
        cls.emulator.cleanup()

    def setUp(self):
        self.emulator.control("POST", "/reset", {"tables": True})
