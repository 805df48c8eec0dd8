"""The ZeroBus Ingest gRPC service: ``databricks.zerobus.Zerobus/EphemeralStream``.

Each stream runs as a handler generator that yields responses, fed through a
queue by a reader thread that validates, decodes and stores requests, so acks
(possibly delayed) pipeline with incoming requests as on the real service.
"""

import collections
import logging
import queue
import threading
import time
import uuid

import grpc

from records import JsonDecoder, ProtoDecoder, RecordError, SchemaMismatch
from store import NAME_PART

log = logging.getLogger("zerobus_emulator.zerobus")
SERVICE = "databricks.zerobus.Zerobus"
METHOD = "EphemeralStream"
TABLE_HEADER = "x-databricks-zerobus-table-name"
SDK_HEADER = "x-zerobus-sdk"  # the client identifier, recorded (GET /emulator/clients)
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
TIMEOUT_MESSAGE = "Stream timeout reached. Please create a new stream. 6002"


class StreamEnd(Exception):
    """Ends the RPC with a non-OK gRPC status."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


class ServiceOptions:
    """Behaviour fixed at start-up (CLI options)."""

    def __init__(self, sink=False, ack_delay_ms=0, stream_lifetime_s=900.0,
                 close_signal_duration_s=5.0):
        self.sink = sink
        self.ack_delay_ms = ack_delay_ms
        self.stream_lifetime_s = stream_lifetime_s
        self.close_signal_duration_s = close_signal_duration_s


class ZerobusService:
    """Validates and serves EphemeralStream calls."""

    def __init__(self, messages, store, tokens, faults, stats, options, connection_cutter=None):
        self.messages = messages
        self.store = store
        self.tokens = tokens
        self.faults = faults
        self.stats = stats
        self.options = options
        self.connection_cutter = connection_cutter  # callable(peer) -> bool, from the proxy

    def rpc_handler(self):
        """The grpc.GenericRpcHandler to add to a grpc.server."""
        request_class = self.messages.EphemeralStreamRequest

        def deserialize(raw):
            return request_class.FromString(raw), len(raw)

        return grpc.method_handlers_generic_handler(SERVICE, {
            METHOD: grpc.stream_stream_rpc_method_handler(
                self._ephemeral_stream, request_deserializer=deserialize,
                response_serializer=self.messages.EphemeralStreamResponse.SerializeToString)})

    def _ephemeral_stream(self, request_iterator, context):
        return StreamSession(self, request_iterator, context).run()


class StreamSession:
    """One EphemeralStream call, from metadata checks to its final status."""

    def __init__(self, service, request_iterator, context):
        self.service = service
        self.requests = request_iterator
        self.context = context
        self.events = queue.Queue()
        self.stream_id = None
        self.table_name = None
        self.table = None
        self.decoder = None
        self.record_type = None
        self.plan = {}
        self.withholding = False  # this stream withheld an ack: it acks nothing more

    # ------------------------------------------------------------ handler side

    def run(self):
        """The response generator handed to grpcio."""
        end = "OK"
        try:
            yield from self._serve()
        except StreamEnd as exc:
            end = "%s: %s" % (exc.code.name, exc.message)
            self.context.abort(exc.code, exc.message)
        finally:
            if self.stream_id is not None:
                self.service.stats.stream_closed(self.stream_id, end)

    def _serve(self):
        service, messages = self.service, self.service.messages
        metadata = dict(self.context.invocation_metadata())
        service.stats.client_seen("zerobus", metadata.get(SDK_HEADER))
        authorization = metadata.get("authorization", "")
        token = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
        if token is None or service.tokens.lookup(token) is None:
            raise StreamEnd(grpc.StatusCode.UNAUTHENTICATED,
                            "Invalid or expired access token" if token
                            else "Missing bearer token in authorization metadata")
        header_table = metadata.get(TABLE_HEADER)
        if not header_table:
            raise StreamEnd(grpc.StatusCode.INVALID_ARGUMENT,
                            "Missing %s metadata" % TABLE_HEADER)
        first = self._next_request()
        if first is None:
            return
        request, _ = first
        if request.WhichOneof("payload") != "create_stream":
            raise StreamEnd(grpc.StatusCode.INVALID_ARGUMENT,
                            "The first message of a stream must be create_stream "
                            "(CreateIngestStreamRequest), got %s"
                            % (request.WhichOneof("payload") or "an empty message"))
        self._open(request.create_stream, header_table, token)
        self.stream_id = str(uuid.uuid4())
        service.stats.stream_opened(self.stream_id, self.table_name,
                                    messages.record_type_names[self.record_type],
                                    self.context.peer())
        self.plan = service.faults.take_stream_faults()
        response = messages.EphemeralStreamResponse()
        response.create_stream_response.stream_id = self.stream_id
        yield response
        self.context.add_callback(lambda: self.events.put(("cancelled",)))
        threading.Thread(target=self._read_loop, name="zb-reader-" + self.stream_id[:8],
                         daemon=True).start()
        yield from self._respond()

    def _next_request(self):
        try:
            return next(self.requests)
        except StopIteration:
            return None

    def _open(self, create, header_table, token):
        """Validate create_stream; set table, record type and decoder."""
        service, messages = self.service, self.service.messages
        name = create.table_name
        parts = name.split(".")
        if len(parts) != 3 or not all(NAME_PART.match(p) for p in parts):
            raise StreamEnd(grpc.StatusCode.INVALID_ARGUMENT,
                            "Invalid table name %r: expected catalog.schema.table using ASCII "
                            "letters, digits and underscores" % name)
        if header_table.lower() != name.lower():
            raise StreamEnd(grpc.StatusCode.INVALID_ARGUMENT,
                            "Table name in %s metadata (%s) does not match create_stream "
                            "table_name (%s)" % (TABLE_HEADER, header_table, name))
        denied = service.tokens.check_zerobus(token, name)
        if denied:
            raise StreamEnd(getattr(grpc.StatusCode, denied[0]), denied[1])
        self.table_name = name.lower()
        self.record_type = create.record_type
        if self.record_type not in (messages.RECORD_TYPE_PROTO, messages.RECORD_TYPE_JSON):
            raise StreamEnd(grpc.StatusCode.INVALID_ARGUMENT,
                            "record_type must be PROTO or JSON, got %s" % messages.
                            record_type_names.get(self.record_type, self.record_type))
        if service.options.sink:
            return
        self.table = service.store.get(name)
        if self.table is None:
            raise StreamEnd(grpc.StatusCode.NOT_FOUND, "Table %s not found" % name)
        try:
            if self.record_type == messages.RECORD_TYPE_PROTO:
                if not create.HasField("descriptor_proto"):
                    raise SchemaMismatch("record_type PROTO needs descriptor_proto")
                self.decoder = ProtoDecoder(self.table, create.descriptor_proto)
            else:
                self.decoder = JsonDecoder(self.table)
        except SchemaMismatch as exc:
            raise StreamEnd(grpc.StatusCode.INVALID_ARGUMENT,
                            "Schema mismatch for table %s: %s" % (name, exc)) from None

    def _respond(self):
        """Yield acks and close signals as reader events and deadlines come due."""
        options, stats, messages = self.service.options, self.service.stats, self.service.messages
        pending = collections.deque()  # (due time, offset)
        now = time.monotonic()
        lifetime_at = now + options.stream_lifetime_s if options.stream_lifetime_s > 0 else None
        close_deadline = None
        finished = False  # the client half-closed
        while True:
            now = time.monotonic()
            top = None
            while pending and pending[0][0] <= now:
                top = pending.popleft()[1]
            if top is not None:
                response = messages.EphemeralStreamResponse()
                response.ingest_record_response.durability_ack_up_to_offset = top
                stats.incr("acks_sent")
                yield response
            if finished and not pending:
                return
            if lifetime_at is not None and now >= lifetime_at and close_deadline is None:
                yield self._close_signal(options.close_signal_duration_s)
                close_deadline = now + options.close_signal_duration_s
            if close_deadline is not None and now >= close_deadline:
                raise StreamEnd(grpc.StatusCode.UNAVAILABLE, TIMEOUT_MESSAGE)
            deadlines = [t for t in (pending[0][0] if pending else None,
                                     lifetime_at if close_deadline is None else None,
                                     close_deadline) if t is not None]
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            try:
                event = self.events.get(timeout=timeout)
            except queue.Empty:
                continue
            while True:
                kind = event[0]
                if kind == "ack":
                    pending.append((event[2], event[1]))
                elif kind == "close_signal":
                    yield self._close_signal(event[1])
                    deadline = time.monotonic() + event[1]
                    close_deadline = min(close_deadline or deadline, deadline)
                elif kind == "end":
                    raise StreamEnd(event[1], event[2])
                elif kind == "drop":
                    cut = self.service.connection_cutter
                    if cut is not None and cut(self.context.peer()):
                        stats.incr("connections_dropped")
                    raise StreamEnd(grpc.StatusCode.UNAVAILABLE, "connection dropped")
                elif kind == "eof":
                    finished = True
                elif kind == "cancelled":
                    return
                try:
                    event = self.events.get_nowait()
                except queue.Empty:
                    break

    def _close_signal(self, duration_s):
        response = self.service.messages.EphemeralStreamResponse()
        duration = response.close_stream_signal.duration
        duration.seconds = int(duration_s)
        duration.nanos = int(round((duration_s - int(duration_s)) * 1e9))
        self.service.stats.incr("close_signals_sent")
        return response

    # ------------------------------------------------------------ reader side

    def _read_loop(self):
        """Validate, decode and store requests; turn each into an event."""
        try:
            self._check_plan(0)
            done = 0
            for request, size in self.requests:
                if not self._ingest(request, size, done):
                    return
                done += 1
                if not self._check_plan(done):
                    return
        except grpc.RpcError:
            pass  # the call ended under us (client cancel, abort)
        except Exception:
            log.exception("stream %s reader failed", self.stream_id)
            self.events.put(("end", grpc.StatusCode.INTERNAL, "emulator internal error"))
            return
        self.events.put(("eof",))

    def _check_plan(self, done):
        """Apply this stream's faults once ``done`` requests are processed.
        Return False when the stream must stop reading."""
        spec = self.plan.get("close_signal")
        if spec and spec["after_requests"] == done:
            self.events.put(("close_signal", spec["duration_ms"] / 1000.0))
        spec = self.plan.get("end_stream")
        if spec and spec["after_requests"] == done:
            self.events.put(("end", getattr(grpc.StatusCode, spec["status"]), spec["message"]))
            return False
        spec = self.plan.get("drop_connection")
        if spec and spec["after_requests"] == done:
            self.events.put(("drop",))
            return False
        return True

    def _ingest(self, request, size, expected_offset):
        """Handle one ingest request; return False if the stream must end."""
        messages, service = self.service.messages, self.service
        kind = request.WhichOneof("payload")
        proto_stream = self.record_type == messages.RECORD_TYPE_PROTO
        if kind == "ingest_record":
            body = request.ingest_record
            which = body.WhichOneof("record")
            records = None if which is None else [getattr(body, which)]
            expected_which = "proto_encoded_record" if proto_stream else "json_record"
        elif kind == "ingest_record_batch":
            body = request.ingest_record_batch
            which = body.WhichOneof("batch")
            records = None if which is None else getattr(body, which).records
            expected_which = "proto_encoded_batch" if proto_stream else "json_batch"
        else:
            return self._fail("Unexpected %s after the stream was created"
                              % (kind or "empty message"))
        if not body.HasField("offset_id") or body.offset_id != expected_offset:
            return self._fail("Invalid offset_id %s: expected %d (offsets start at 0 on each "
                              "stream and rise by exactly 1)" % (
                                  body.offset_id if body.HasField("offset_id") else "(unset)",
                                  expected_offset))
        if which != expected_which:
            return self._fail("Request carries %s but the stream's record_type is %s"
                              % (which or "no records", messages.record_type_names[
                                  self.record_type]))
        arrival = time.monotonic()
        service.stats.stream_batch(self.stream_id, len(records), size)
        faults = service.faults
        if not service.options.sink:
            try:
                rows = [self.decoder.decode(i, r) for i, r in enumerate(records)]
                self._check_reject_fault(records, rows)
            except RecordError as exc:
                service.stats.incr("rejected_batches")
                return self._fail(str(exc))
        # Acks are cumulative: acking a later offset would declare the withheld
        # request durable, though it was never stored.  Once a stream withholds,
        # it stays silent, even after the fault is cleared.
        if self.withholding or faults.get("withhold_acks"):
            self.withholding = True
            return True
        if not service.options.sink:
            service.store.insert_rows(self.table, [c.name for c in self.decoder.columns], rows)
        delay = faults.get("ack_delay_ms")
        delay = service.options.ack_delay_ms if delay is None else delay
        self.events.put(("ack", body.offset_id, arrival + delay / 1000.0))
        return True

    def _check_reject_fault(self, records, rows):
        spec = self.service.faults.get("reject_record")
        if not spec:
            return
        needle = spec["contains"]
        for index, (record, row) in enumerate(zip(records, rows)):
            if (isinstance(record, str) and needle in record) or any(
                    isinstance(v, str) and needle in v for v in row):
                raise RecordError("Record %d of the request is invalid: rejected by the "
                                  "emulator's reject_record fault (contains %r)"
                                  % (index, needle))

    def _fail(self, message):
        self.events.put(("end", grpc.StatusCode.INVALID_ARGUMENT, message))
        return False
