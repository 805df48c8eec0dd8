"""Counters shown by ``GET /emulator/stats``."""

import threading
import time

COUNTERS = (
    "streams_opened", "streams_active", "requests", "records", "bytes", "acks_sent",
    "close_signals_sent", "rejected_batches", "connections_dropped", "token_requests",
    "tokens_issued", "token_failures", "statements", "cancels", "external_fetches", "external_bytes", "sql_http_refusals",
    "requests_held",
)
MAX_STREAM_DETAILS = 1000
MAX_CLIENTS = 100  # distinct client identifiers kept per API
CLIENT_APIS = ("zerobus", "oauth", "sql", "storage")


class Stats:
    """Thread-safe counters plus per-stream details (the most recent streams)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        with self._lock:
            active = getattr(self, "_counters", {}).get("streams_active", 0)
            self._counters = dict.fromkeys(COUNTERS, 0)
            self._counters["streams_active"] = active
            self._streams = {}
            self._clients = {api: {} for api in CLIENT_APIS}

    def client_seen(self, api, identifier):
        """Count one request of ``api`` from the client that called itself ``identifier``
        (the ``x-zerobus-sdk`` metadata of a ZeroBus stream, the ``User-Agent`` of an
        HTTP request; None if it sent none)."""
        identifier = "" if identifier is None else identifier
        with self._lock:
            seen = self._clients[api]
            if identifier in seen or len(seen) < MAX_CLIENTS:
                seen[identifier] = seen.get(identifier, 0) + 1

    def clients(self):
        """{api: {identifier: requests}} since the last reset."""
        with self._lock:
            return {api: dict(seen) for api, seen in self._clients.items()}

    def incr(self, name, amount=1):
        with self._lock:
            self._counters[name] += amount

    def stream_opened(self, stream_id, table, record_type, peer):
        with self._lock:
            self._counters["streams_opened"] += 1
            self._counters["streams_active"] += 1
            self._streams[stream_id] = {
                "stream_id": stream_id, "table": table, "record_type": record_type,
                "peer": peer, "requests": 0, "records": 0, "active": True,
                "opened_at": time.time(), "end": None}
            while len(self._streams) > MAX_STREAM_DETAILS:
                del self._streams[next(iter(self._streams))]

    def stream_batch(self, stream_id, records, nbytes):
        """Count one ingest request of ``records`` records and ``nbytes`` bytes."""
        with self._lock:
            self._counters["requests"] += 1
            self._counters["records"] += records
            self._counters["bytes"] += nbytes
            detail = self._streams.get(stream_id)
            if detail:
                detail["requests"] += 1
                detail["records"] += records

    def stream_closed(self, stream_id, end):
        with self._lock:
            self._counters["streams_active"] -= 1
            detail = self._streams.get(stream_id)
            if detail:
                detail["active"] = False
                detail["end"] = end

    def snapshot(self):
        with self._lock:
            out = dict(self._counters)
            out["streams"] = [dict(d) for d in self._streams.values()]
            return out
