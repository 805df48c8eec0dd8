"""Fault injection state, scriptable from tests through ``/emulator/faults``.

Faults are kept as one JSON-like dict. Some stay until cleared (``ack_delay_ms``,
``withhold_acks``, ``reject_record``, ``sql_delay_ms``, ``token_ttl_s``, ``link_ttl_s``,
``not_grpc`` given as ``true``); others are consumed: per stream
(``close_signal``, ``end_stream``, ``drop_connection``), per TCP connection
(``garbage``, ``not_grpc`` given as an object), per token request
(``token_endpoint_fail``) or per SQL statement (``sql_fail``) or per SQL API request (``sql_malformed``,
``sql_http_fail``, ``hang``).

``hang`` holds back the answers of the next ``count`` requests of one kind: the request is
processed (a token issued, a statement started, a cancel applied) but its response waits
``ms`` milliseconds, or with ``ms`` 0 until the fault is changed, removed or cleared (which
releases every held response) -- and is never sent if the client goes away first.
"""

import copy
import threading

GRPC_STATUS_NAMES = {
    "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
}
GARBAGE_KINDS = ("frames", "protobuf", "http")
MALFORMED_KINDS = ("not_json", "truncated", "bad_row", "invalid_utf8", "mutate")
MALFORMED_TARGETS = ("statement", "chunk")
PROXY_FAULTS = ("drop_connection", "garbage", "not_grpc")
HANG_TARGETS = ("token", "submit", "poll", "chunk", "cancel")


class FaultError(ValueError):
    """A fault specification is malformed."""


def _int(value, key, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FaultError("%s must be an integer >= %d" % (key, minimum))
    return value


def _obj(value, key, allowed):
    if not isinstance(value, dict):
        raise FaultError("%s must be an object" % key)
    unknown = set(value) - set(allowed)
    if unknown:
        raise FaultError("%s: unknown field(s) %s" % (key, ", ".join(sorted(unknown))))
    return dict(value)


def _counted(spec, key, field="streams"):
    spec[field] = _int(spec.get(field, 1), key + "." + field, 1)
    return spec


def _validate(key, value):
    """Return the normalized value of one fault key, or raise FaultError."""
    if key in ("ack_delay_ms", "sql_delay_ms"):
        return _int(value, key)
    if key == "token_ttl_s":
        return _int(value, key, 1)
    if key == "link_ttl_s":
        return _int(value, key, 0)
    if key == "sql_malformed":
        spec = _obj(value, key, ("kind", "target", "count", "seed"))
        spec["seed"] = _int(spec.get("seed", 0), key + ".seed")
        if spec.get("kind", "not_json") not in MALFORMED_KINDS:
            raise FaultError("sql_malformed.kind must be one of %s" % ", ".join(MALFORMED_KINDS))
        if spec.get("target", "statement") not in MALFORMED_TARGETS:
            raise FaultError("sql_malformed.target must be statement or chunk")
        spec["kind"] = spec.get("kind", "not_json")
        spec["target"] = spec.get("target", "statement")
        return _counted(spec, key, "count")
    if key == "withhold_acks":
        if not isinstance(value, bool):
            raise FaultError("withhold_acks must be true or false")
        return value
    if key == "close_signal":
        spec = _obj(value, key, ("after_requests", "duration_ms", "streams"))
        spec["after_requests"] = _int(spec.get("after_requests", 0), key + ".after_requests")
        spec["duration_ms"] = _int(spec.get("duration_ms", 5000), key + ".duration_ms")
        return _counted(spec, key)
    if key == "end_stream":
        spec = _obj(value, key, ("after_requests", "status", "message", "streams"))
        spec["after_requests"] = _int(spec.get("after_requests", 0), key + ".after_requests")
        status = spec.get("status", "UNAVAILABLE")
        if status not in GRPC_STATUS_NAMES:
            raise FaultError("end_stream.status must be a gRPC status name other than OK")
        spec["status"] = status
        spec["message"] = str(spec.get("message", "Stream ended by emulator fault injection"))
        return _counted(spec, key)
    if key == "drop_connection":
        spec = _obj(value, key, ("after_requests", "streams"))
        spec["after_requests"] = _int(spec.get("after_requests", 0), key + ".after_requests")
        return _counted(spec, key)
    if key == "reject_record":
        spec = _obj(value, key, ("contains",))
        if not isinstance(spec.get("contains"), str) or not spec["contains"]:
            raise FaultError("reject_record.contains must be a non-empty string")
        return spec
    if key == "token_endpoint_fail":
        spec = _obj(value, key, ("status", "count"))
        status = _int(spec.get("status", 500), key + ".status", 400)
        if status > 599:
            raise FaultError("token_endpoint_fail.status must be 400..599")
        spec["status"] = status
        return _counted(spec, key, "count")
    if key == "sql_http_fail":
        spec = _obj(value, key, ("status", "count", "retry_after"))
        status = _int(spec.get("status", 503), key + ".status", 400)
        if status > 599:
            raise FaultError("sql_http_fail.status must be 400..599")
        spec["status"] = status
        if spec.get("retry_after") is not None:
            spec["retry_after"] = _int(spec["retry_after"], key + ".retry_after")
        return _counted(spec, key, "count")
    if key == "sql_fail":
        spec = _obj(value, key, ("error_code", "message", "count"))
        spec["error_code"] = str(spec.get("error_code", "INTERNAL_ERROR"))
        spec["message"] = str(spec.get("message", "Statement failed by emulator fault injection"))
        return _counted(spec, key, "count")
    if key == "garbage":
        spec = _obj(value, key, ("kind", "streams"))
        if spec.get("kind", "frames") not in GARBAGE_KINDS:
            raise FaultError("garbage.kind must be one of %s" % ", ".join(GARBAGE_KINDS))
        spec["kind"] = spec.get("kind", "frames")
        return _counted(spec, key)
    if key == "not_grpc":
        if value is True:
            return True
        return _counted(_obj(value, key, ("streams",)), key)
    if key == "hang":
        spec = _obj(value, key, ("target", "ms", "count"))
        if spec.get("target") not in HANG_TARGETS:
            raise FaultError("hang.target must be one of %s" % ", ".join(HANG_TARGETS))
        spec["ms"] = _int(spec.get("ms", 0), key + ".ms")
        return _counted(spec, key, "count")
    raise FaultError("unknown fault key %r" % key)


class FaultState:
    """The current faults; every method is thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._faults = {}
        self._hang_generation = 0  # bumped when held responses must go out

    def merge(self, update):
        """Merge validated keys into the state; a null value removes a key."""
        if not isinstance(update, dict):
            raise FaultError("the fault body must be a JSON object")
        validated = {k: (None if v is None else _validate(k, v)) for k, v in update.items()}
        with self._lock:
            for key, value in validated.items():
                if value is None:
                    self._faults.pop(key, None)
                else:
                    self._faults[key] = value
            if "hang" in validated:
                self._hang_generation += 1
            return copy.deepcopy(self._faults)

    def clear(self):
        with self._lock:
            self._faults.clear()
            self._hang_generation += 1

    def snapshot(self):
        with self._lock:
            return copy.deepcopy(self._faults)

    def get(self, key, default=None):
        with self._lock:
            return copy.deepcopy(self._faults.get(key, default))

    def _take(self, key, field):
        """Consume one use of a counted fault; return its spec or None."""
        spec = self._faults.get(key)
        if not isinstance(spec, dict):
            return None
        spec[field] -= 1
        if spec[field] <= 0:
            del self._faults[key]
        return dict(spec)

    def take_stream_faults(self):
        """The per-stream faults a newly opened stream must apply (consumed)."""
        with self._lock:
            plan = {}
            for key in ("close_signal", "end_stream", "drop_connection"):
                spec = self._take(key, "streams")
                if spec:
                    plan[key] = spec
            return plan

    def take_connection_fault(self):
        """For a new proxied connection: ("garbage", kind), ("not_grpc", None) or None."""
        with self._lock:
            if self._faults.get("not_grpc") is True:
                return ("not_grpc", None)
            if self._take("not_grpc", "streams"):
                return ("not_grpc", None)
            spec = self._take("garbage", "streams")
            return ("garbage", spec["kind"]) if spec else None

    def take_token_failure(self):
        """The HTTP status the next token request must fail with, or None."""
        with self._lock:
            spec = self._take("token_endpoint_fail", "count")
            return spec["status"] if spec else None

    def take_sql_malformed(self, target, has_rows):
        """The kind of damage to do to the next response of this target, or None.
        A bad_row fault waits for a response that carries rows."""
        with self._lock:
            spec = self._faults.get("sql_malformed")
            if not isinstance(spec, dict) or spec["target"] != target:
                return None
            if spec["kind"] in ("bad_row", "mutate") and not has_rows:
                return None
            taken = self._take("sql_malformed", "count")
            # each use of a counted fault gets its own mutation, reproducibly
            return (taken["kind"], taken["seed"] * 100003 + taken["count"])

    def take_sql_http_failure(self):
        """(status, retry_after or None) the next SQL API request must be refused with."""
        with self._lock:
            spec = self._take("sql_http_fail", "count")
            return (spec["status"], spec.get("retry_after")) if spec else None

    def take_hang(self, target):
        """For a request of this target (token, submit, poll, chunk, cancel): None, or
        (ms, released) where ``released()`` turns true once the hang fault is changed,
        removed or cleared (consumes one use)."""
        with self._lock:
            spec = self._faults.get("hang")
            if not isinstance(spec, dict) or spec["target"] != target:
                return None
            taken = self._take("hang", "count")
            generation = self._hang_generation
        return taken["ms"], lambda: self._hang_generation != generation

    def take_sql_failure(self):
        """(error_code, message) the next statement must fail with, or None."""
        with self._lock:
            spec = self._take("sql_fail", "count")
            return (spec["error_code"], spec["message"]) if spec else None
