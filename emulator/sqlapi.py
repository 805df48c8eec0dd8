"""The SQL Statement Execution API (``/api/2.0/sql/statements``).

Each statement runs in a thread of its own on a fresh SQLite connection:
PENDING → RUNNING → SUCCEEDED | FAILED | CANCELED, and CLOSED once its result
is older than an hour. Results are rendered Databricks-style (every value a
JSON string or null) and kept as pre-serialized JSON chunks of ``chunk_rows``
rows, so large results cost bytes, not Python objects.
"""

import base64
import datetime
import json
import logging
import random
import re
import secrets
import sqlite3
import threading
import time
import uuid

import deltatypes as dt
from httpfront import Response, error_response, with_hang
from sqltranslate import Executor, SqlError

log = logging.getLogger("zerobus_emulator.sql")
STATEMENTS_PATH = "/api/2.0/sql/statements"
STORAGE_PATH = "/emulator-storage"
STORAGE_KEY_HEADER = "x-zb-storage-key"
LINK_TTL_S = 900
RESULT_TTL_S = 3600
MAX_LOG = 10000
INLINE_LIMIT_BYTES = 25 * 1024 * 1024
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED", "CLOSED")
WAIT_RE = re.compile(r"^(\d+)s$")


class RequestError(Exception):
    """A refused request (non-200 response)."""

    def __init__(self, status, error_code, message):
        super().__init__(message)
        self.response = error_response(status, error_code, message)


class Statement:
    """One submitted statement and, once done, its result chunks."""

    def __init__(self, text, parameters, catalog, schema, row_limit, byte_limit):
        self.id = str(uuid.uuid4())
        self.text = text
        self.parameters = parameters  # name -> (value or None, DeltaType)
        self.catalog = catalog
        self.schema = schema
        self.row_limit = row_limit
        self.byte_limit = byte_limit
        self.state = "PENDING"
        self.disposition = "INLINE"
        self.error = None
        self.columns = []
        self.chunks = []  # [(row_offset, row_count, serialized data_array)]
        self.total_rows = 0
        self.truncated = False
        self.created = time.time()
        self.finished = threading.Event()
        self.cancel_requested = threading.Event()
        self.lock = threading.Lock()
        self.conn = None

    def cancel(self):
        self.cancel_requested.set()
        with self.lock:
            if self.conn is not None:
                self.conn.interrupt()

    def current_state(self):
        if self.state in ("SUCCEEDED", "FAILED", "CANCELED") and \
                time.time() - self.created > RESULT_TTL_S:
            return "CLOSED"
        return self.state


class StatementManager:
    """Submission, polling, chunk retrieval and cancellation of statements."""

    def __init__(self, store, tokens, faults, stats, warehouses, chunk_rows,
                 inline_limit=INLINE_LIMIT_BYTES, link_ttl=LINK_TTL_S):
        self.store = store
        self.tokens = tokens
        self.faults = faults
        self.stats = stats
        self.warehouses = set(warehouses)
        self.chunk_rows = chunk_rows
        self.inline_limit = inline_limit
        self._lock = threading.Lock()
        self._statements = {}
        self._log = []
        self._damage_log = []  # responses a sql_malformed fault damaged, for tests' oracles
        self._current = threading.local()  # the statement the request being handled is about
        self.link_ttl = link_ttl
        self._links = {}  # token -> (statement, chunk index, header key, expiry)

    def register(self, router):
        router.add("POST", STATEMENTS_PATH, self._noting(self.submit))
        router.add("GET", STATEMENTS_PATH + r"/(?P<statement_id>[^/]+)", self._noting(self.get))
        router.add("POST", STATEMENTS_PATH + r"/(?P<statement_id>[^/]+)/cancel", self.cancel)
        router.add("GET", STATEMENTS_PATH +
                   r"/(?P<statement_id>[^/]+)/result/chunks/(?P<chunk_index>\d+)",
                   self._noting(self.chunk))
        router.add("GET", STORAGE_PATH + r"/(?P<token>[A-Za-z0-9_-]+)", self._noting(self.storage))

    def _noting(self, handler):
        """The handler, remembering (for the damage log) which statement the request is
        about: the one in the path, or the one a storage link belongs to."""
        def noted(request, **kwargs):
            statement_id = kwargs.get("statement_id")
            if statement_id is None and "token" in kwargs:
                with self._lock:
                    entry = self._links.get(kwargs["token"])
                statement_id = entry[0].id if entry else None
            self._current.statement_id = statement_id
            try:
                return handler(request, **kwargs)
            finally:
                self._current.statement_id = None
        return noted

    # ------------------------------------------------------------ handlers

    def submit(self, request):
        try:
            self._authorize(request)
            body = self._parse_body(request)
        except RequestError as exc:
            return exc.response
        statement = Statement(body["statement"], body["parameters"], body.get("catalog"),
                              body.get("schema"), body["row_limit"], body["byte_limit"])
        statement.disposition = body["disposition"]
        self.stats.incr("statements")
        with self._lock:
            self._expire_old()
            self._statements[statement.id] = statement
            self._log.append({"statement_id": statement.id, "statement": statement.text,
                              "parameters": body["raw_parameters"],
                              "catalog": statement.catalog, "schema": statement.schema,
                              "warehouse_id": body["warehouse_id"]})
            del self._log[:-MAX_LOG]
        threading.Thread(target=self._run, args=(statement,), daemon=True,
                         name="zb-sql-" + statement.id[:8]).start()
        if body["wait_s"] > 0 and not statement.finished.wait(body["wait_s"]) and \
                body["on_wait_timeout"] == "CANCEL":
            self._cancel(statement)
            statement.finished.wait(5)
        return with_hang(self._damaged("statement", Response(200, self._describe(statement, request))),
                         self.faults, self.stats, "submit")

    def get(self, request, statement_id):
        try:
            self._authorize(request)
            statement = self._find(statement_id)
        except RequestError as exc:
            return exc.response
        return with_hang(self._damaged("statement", Response(200, self._describe(statement, request))),
                         self.faults, self.stats, "poll")

    def cancel(self, request, statement_id):
        try:
            self._authorize(request)
            statement = self._find(statement_id)
        except RequestError as exc:
            return exc.response
        self._cancel(statement)
        return with_hang(Response(200, {}), self.faults, self.stats, "cancel")

    def chunk(self, request, statement_id, chunk_index):
        try:
            self._authorize(request)
            statement = self._find(statement_id)
            if statement.current_state() != "SUCCEEDED":
                raise RequestError(400, "INVALID_PARAMETER_VALUE", "statement %s is %s; results "
                                   "exist only for SUCCEEDED statements"
                                   % (statement_id, statement.current_state()))
            index = int(chunk_index)
            if index >= len(statement.chunks):
                raise RequestError(400, "INVALID_PARAMETER_VALUE", "chunk index %d is out of "
                                   "range (statement has %d chunks)"
                                   % (index, len(statement.chunks)))
        except RequestError as exc:
            return exc.response
        if statement.disposition == "EXTERNAL_LINKS":
            response = self._damaged("chunk", Response(200, {"external_links": [
                self._link(statement, index, request)]}))
        else:
            response = self._damaged("chunk", Response(
                200, _result_json(*self._result(statement, index)).encode()))
        return with_hang(response, self.faults, self.stats, "chunk")

    def storage(self, request, token):
        """The emulated cloud storage behind EXTERNAL_LINKS: a pre-signed URL that must
        come without our Authorization header and with the link's http_headers."""
        self.stats.client_seen("storage", request.headers.get("User-Agent"))
        with self._lock:
            entry = self._links.get(token)
        if entry is None:
            return Response(404, b"<Error><Code>NoSuchKey</Code></Error>",
                            content_type="application/xml")
        statement, index, key, expires = entry
        if request.headers.get("Authorization") is not None:
            return Response(400, b"<Error><Code>InvalidArgument</Code><Message>Only one auth "
                            b"mechanism allowed</Message></Error>", content_type="application/xml")
        if request.headers.get(STORAGE_KEY_HEADER) != key:
            return Response(403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>",
                            content_type="application/xml")
        if time.time() > expires:
            return Response(403, b"<Error><Code>AccessDenied</Code><Message>Request has "
                            b"expired</Message></Error>", content_type="application/xml")
        encoded = statement.chunks[index][2].encode()
        self.stats.incr("external_fetches")
        self.stats.incr("external_bytes", len(encoded))
        return self._damaged("chunk", Response(200, encoded))

    def log(self):
        """The statements received, with their current state."""
        with self._lock:
            entries = [dict(e) for e in self._log]
            states = {i: s.current_state() for i, s in self._statements.items()}
        for entry in entries:
            entry["state"] = states.get(entry["statement_id"], "CLOSED")
        return entries

    def clear_log(self):
        with self._lock:
            self._log.clear()
            self._damage_log.clear()

    def damage_log(self):
        """Each response a sql_malformed fault damaged, in order: target, kind, statement
        id, and the body before and after (base64), so a test can tell what a correct
        client had to do with it."""
        with self._lock:
            return [dict(e) for e in self._damage_log]

    def _expire_old(self):
        """Forget statements long past their result lifetime (caller holds the lock)."""
        horizon = time.time() - 2 * RESULT_TTL_S
        for statement_id in [i for i, s in self._statements.items() if s.created < horizon]:
            del self._statements[statement_id]

    # ------------------------------------------------------------ request checks

    def _authorize(self, request):
        self.stats.client_seen("sql", request.headers.get("User-Agent"))
        failure = self.faults.take_sql_http_failure()
        if failure:
            status, retry_after = failure
            self.stats.incr("sql_http_refusals")
            exc = RequestError(status, "RESOURCE_EXHAUSTED" if status == 429
                               else "TEMPORARILY_UNAVAILABLE",
                               "Request refused by emulator fault injection (HTTP %d)" % status)
            if retry_after is not None:
                exc.response.headers["Retry-After"] = str(retry_after)
            raise exc
        refused = self.tokens.check_sql(request.bearer_token())
        if refused:
            status, message = refused
            raise RequestError(status, "UNAUTHENTICATED" if status == 401
                               else "PERMISSION_DENIED", message)

    def _find(self, statement_id):
        with self._lock:
            statement = self._statements.get(statement_id)
        if statement is None:
            raise RequestError(404, "RESOURCE_DOES_NOT_EXIST",
                               "Statement %s does not exist" % statement_id)
        return statement

    def _parse_body(self, request):
        def bad(message):
            return RequestError(400, "INVALID_PARAMETER_VALUE", message)

        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(400, "MALFORMED_REQUEST", "Could not parse request body: %s"
                               % exc) from None
        if not isinstance(body, dict):
            raise RequestError(400, "MALFORMED_REQUEST", "request body must be a JSON object")
        if not isinstance(body.get("statement"), str) or not body["statement"].strip():
            raise bad("statement is required")
        warehouse = body.get("warehouse_id")
        if not isinstance(warehouse, str) or not warehouse:
            raise bad("warehouse_id is required")
        if warehouse not in self.warehouses:
            raise RequestError(404, "RESOURCE_DOES_NOT_EXIST",
                               "Warehouse %s does not exist" % warehouse)
        for key in ("catalog", "schema"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise bad("%s must be a string" % key)
        wait = WAIT_RE.match(str(body.get("wait_timeout", "10s")))
        wait_s = int(wait.group(1)) if wait else -1
        if not (wait_s == 0 or 5 <= wait_s <= 50):
            raise bad("wait_timeout must be 0s or between 5s and 50s, got %r"
                      % body.get("wait_timeout"))
        on_wait = body.get("on_wait_timeout", "CONTINUE")
        if on_wait not in ("CONTINUE", "CANCEL"):
            raise bad("on_wait_timeout must be CONTINUE or CANCEL")
        disposition = body.get("disposition", "INLINE")
        if disposition not in ("INLINE", "EXTERNAL_LINKS"):
            raise bad("disposition must be INLINE or EXTERNAL_LINKS")
        fmt = body.get("format", "JSON_ARRAY")
        if fmt not in ("JSON_ARRAY", "ARROW_STREAM", "CSV"):
            raise bad("format must be JSON_ARRAY, ARROW_STREAM or CSV")
        if disposition == "INLINE" and fmt != "JSON_ARRAY":
            raise bad("format %s requires disposition EXTERNAL_LINKS; INLINE supports only "
                      "JSON_ARRAY" % fmt)
        if fmt != "JSON_ARRAY":
            raise RequestError(400, "NOT_IMPLEMENTED",
                               "format %s is not implemented by the emulator" % fmt)
        limits = {}
        for key in ("row_limit", "byte_limit"):
            value = body.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 0):
                raise bad("%s must be a non-negative integer" % key)
            limits[key] = value
        return dict(body, wait_s=wait_s, on_wait_timeout=on_wait, warehouse_id=warehouse,
                    disposition=disposition,
                    parameters=_parse_parameters(body.get("parameters"), bad),
                    raw_parameters=body.get("parameters") or [], **limits)

    # ------------------------------------------------------------ execution

    def _cancel(self, statement):
        self.stats.incr("cancels")
        statement.cancel()

    def _run(self, statement):
        statement.state = "RUNNING"
        delay = self.faults.get("sql_delay_ms") or 0
        if statement.cancel_requested.wait(delay / 1000.0):
            return self._finish(statement, "CANCELED")
        failure = self.faults.take_sql_failure()
        if failure:
            return self._finish(statement, "FAILED", failure)
        conn = self.store.connect()
        try:
            with statement.lock:
                statement.conn = conn
            if statement.cancel_requested.is_set():
                return self._finish(statement, "CANCELED")
            executor = Executor(self.store, conn, statement.catalog, statement.schema,
                                statement.parameters)
            result = executor.execute(statement.text)
            self._materialize(statement, result)
        except SqlError as exc:
            return self._finish(statement, "FAILED", (exc.error_code, exc.message))
        except sqlite3.OperationalError as exc:
            if statement.cancel_requested.is_set():
                return self._finish(statement, "CANCELED")
            return self._finish(statement, "FAILED", ("INTERNAL_ERROR", str(exc)))
        except Exception as exc:  # an emulator bug must still end the statement
            log.exception("statement %s failed unexpectedly", statement.id)
            return self._finish(statement, "FAILED", ("INTERNAL_ERROR", "emulator error: %r"
                                                      % exc))
        finally:
            with statement.lock:
                statement.conn = None
            conn.close()
        if statement.cancel_requested.is_set():
            return self._finish(statement, "CANCELED")
        return self._finish(statement, "SUCCEEDED")

    def _materialize(self, statement, result):
        """Render rows into serialized chunks, applying row/byte limits."""
        statement.columns = result.columns
        types = [t for _, t in result.columns]
        rows = result.rows
        if statement.row_limit is not None and len(rows) > statement.row_limit:
            rows = rows[:statement.row_limit]
            statement.truncated = True
        total_bytes, offset = 0, 0
        for start in range(0, len(rows), self.chunk_rows):
            data = [[_render(t, v) for t, v in zip(types, row)]
                    for row in rows[start:start + self.chunk_rows]]
            if statement.byte_limit is not None:
                data = self._limit_bytes(statement, data, total_bytes)
            encoded = json.dumps(data, separators=(",", ":"))
            total_bytes += len(encoded)
            if total_bytes > self.inline_limit and statement.disposition == "INLINE":
                raise SqlError("[INLINE_RESULT_TOO_LARGE] The result exceeds the %d-byte limit "
                               "of disposition INLINE; use EXTERNAL_LINKS or a smaller result."
                               % self.inline_limit)
            if data:
                statement.chunks.append((offset, len(data), encoded))
            offset += len(data)
            if statement.truncated and statement.byte_limit is not None:
                break
        statement.total_rows = offset

    @staticmethod
    def _limit_bytes(statement, data, used):
        kept = []
        for row in data:
            used += len(json.dumps(row, separators=(",", ":"))) + 1
            if used > statement.byte_limit:
                statement.truncated = True
                break
            kept.append(row)
        return kept

    def _finish(self, statement, state, error=None):
        if error is not None:
            statement.error = {"error_code": error[0], "message": error[1]}
        statement.state = state
        statement.finished.set()

    # ------------------------------------------------------------ responses

    def _describe(self, statement, request):
        """The StatementResponse JSON (bytes, with the first chunk spliced in)."""
        state = statement.current_state()
        status = {"state": state}
        if state == "FAILED":
            status["error"] = statement.error
        response = {"statement_id": statement.id, "status": status}
        if state != "SUCCEEDED":
            return _spliced(response, None, None)
        columns = []
        for position, (name, dtype) in enumerate(statement.columns):
            column = {"name": name, "position": position, "type_name": dtype.api_name,
                      "type_text": dtype.text}
            if dtype.name == "DECIMAL":
                column["type_precision"] = dtype.precision
                column["type_scale"] = dtype.scale
            columns.append(column)
        schema = {"column_count": len(columns)}
        if columns:
            schema["columns"] = columns
        response["manifest"] = {
            "format": "JSON_ARRAY", "schema": schema,
            "total_chunk_count": len(statement.chunks),
            "chunks": [{"chunk_index": i, "row_offset": o, "row_count": n}
                       for i, (o, n, _) in enumerate(statement.chunks)],
            "total_row_count": statement.total_rows, "truncated": statement.truncated}
        if not statement.chunks:
            response["result"] = {"chunk_index": 0, "row_offset": 0, "row_count": 0}
            return _spliced(response, None, None)
        if statement.disposition == "EXTERNAL_LINKS":
            response["result"] = {"external_links": [self._link(statement, 0, request)]}
            return _spliced(response, None, None)
        response["result"] = None
        return _spliced(response, self._result(statement, 0), "result")

    def _link(self, statement, index, request):
        """A fresh pre-signed link to one chunk (ExternalLink JSON)."""
        token = secrets.token_urlsafe(18)
        key = secrets.token_hex(12)
        ttl = self.faults.get("link_ttl_s")
        expires = time.time() + (self.link_ttl if ttl is None else ttl)
        offset, count, encoded = statement.chunks[index]
        with self._lock:
            now = time.time()
            for stale in [t for t, e in self._links.items() if e[3] < now - 60]:
                del self._links[stale]
            self._links[token] = (statement, index, key, expires)
        link = {"chunk_index": index, "row_offset": offset, "row_count": count,
                "byte_count": len(encoded),
                "external_link": "%s://%s%s/%s" % (request.scheme, request.headers.get(
                    "Host", "127.0.0.1"), STORAGE_PATH, token),
                "expiration": datetime.datetime.fromtimestamp(
                    expires, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "http_headers": {STORAGE_KEY_HEADER: key}}
        if index + 1 < len(statement.chunks):
            link["next_chunk_index"] = index + 1
            link["next_chunk_internal_link"] = "%s/%s/result/chunks/%d" % (
                STATEMENTS_PATH, statement.id, index + 1)
        return link

    def _damaged(self, target, response):
        """Apply a pending sql_malformed fault for this target to a 200 response."""
        payload = response.encode()
        taken = self.faults.take_sql_malformed(target, b"[[" in payload)
        if taken is None:
            return response
        statement_id = getattr(self._current, "statement_id", None)
        if statement_id is None:
            # a submit: the new statement's id is in the response
            try:
                statement_id = json.loads(payload).get("statement_id")
            except (ValueError, AttributeError):
                statement_id = None
        kind, seed = taken
        if kind == "mutate":
            damaged = Response(200, _mutate(payload, seed))
        elif kind == "not_json":
            damaged = Response(200, b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                               content_type="text/html")
        elif kind == "truncated":
            damaged = Response(200, payload[:max(1, len(payload) // 2)])
        elif kind == "invalid_utf8":
            damaged = Response(200, payload.replace(b'"', b'"\xff', 1) if b'"' in payload
                               else b"\xff" + payload)
        else:
            # bad_row: the first row of the data gets one value too many
            damaged = Response(200, payload.replace(b"[[", b'[["zb-extra",', 1))
        with self._lock:
            self._damage_log.append({
                "target": target, "kind": kind, "statement_id": statement_id,
                "original": base64.b64encode(payload).decode("ascii"),
                "damaged": base64.b64encode(damaged.encode()).decode("ascii")})
            del self._damage_log[:-MAX_LOG]
        return damaged

    @staticmethod
    def _result(statement, index):
        """(ResultData dict without data_array, serialized data_array)."""
        offset, count, encoded = statement.chunks[index]
        result = {"chunk_index": index, "row_offset": offset, "row_count": count}
        if index + 1 < len(statement.chunks):
            result["next_chunk_index"] = index + 1
            result["next_chunk_internal_link"] = "%s/%s/result/chunks/%d" % (
                STATEMENTS_PATH, statement.id, index + 1)
        return result, encoded


def _mutate(payload, seed):
    """Fuzzing: a few random byte flips, insertions of JSON-ish tokens, deletions
    and maybe a truncation, reproducible from the seed."""
    rng = random.Random(seed)
    data = bytearray(payload)
    tokens = [b'"', b"\\", b"\\u", b"\\ud800", b"[", b"]", b"{", b"}", b",", b":", b"null",
              b"1e999", b"-", b"\x00", b"\xff", b"\xc3", b'"data_array":', b"[[", b"]]"]
    for _ in range(rng.randint(1, 6)):
        if not data:
            break
        pos = rng.randrange(len(data))
        action = rng.random()
        if action < 0.4:
            data[pos] = rng.randrange(256)
        elif action < 0.8:
            data[pos:pos] = rng.choice(tokens)
        else:
            del data[pos:pos + rng.randint(1, 8)]
    if rng.random() < 0.2:
        data = data[:rng.randrange(len(data) + 1)]
    return bytes(data)


def _spliced(document, result, key):
    """Serialize ``document`` with ``result`` = (dict, serialized data_array) at ``key``."""
    if result is None:
        return json.dumps(document, separators=(",", ":")).encode()
    marker = "\x00zb-result\x00"
    text = json.dumps(dict(document, **{key: marker}), separators=(",", ":"))
    return text.replace(json.dumps(marker), _result_json(*result)).encode()


def _result_json(fields, encoded):
    """ResultData JSON text: ``fields`` plus the already serialized data_array."""
    inner = json.dumps(dict(fields, data_array=None), separators=(",", ":"))
    return inner.replace('"data_array":null', '"data_array":' + encoded)


def _render(dtype, value):
    try:
        return dt.render(dtype, value)
    except (ValueError, TypeError, OverflowError):
        return None if value is None else str(value)


def _parse_parameters(parameters, bad):
    """[{name, value, type}] → {name: (value or None, DeltaType)}."""
    if parameters is None:
        return {}
    if not isinstance(parameters, list):
        raise bad("parameters must be a list")
    parsed = {}
    for index, item in enumerate(parameters):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) \
                or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", item["name"]):
            raise bad("parameters[%d] needs a name made of letters, digits and _" % index)
        value = item.get("value")
        if value is not None and not isinstance(value, str):
            raise bad("parameters[%d].value must be a string" % index)
        try:
            dtype = dt.parse_type(item.get("type") or "STRING")
        except dt.TypeParseError as exc:
            raise bad("parameters[%d].type: %s" % (index, exc)) from None
        parsed[item["name"]] = (value, dtype)
    return parsed
