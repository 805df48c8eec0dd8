"""The control API for tests (``/emulator/...``): tables, raw SQL, faults, stats, clients.

No authentication; requests from addresses other than loopback are refused.
"""

import base64
import sqlite3

from faults import PROXY_FAULTS, FaultError
from httpfront import Response, error_response
from store import TableError

TABLE_ERROR_STATUS = {"not_found": 404, "exists": 409, "invalid": 400}


class ControlApi:
    """Handlers for /emulator/*; ``register`` adds them to a Router."""

    def __init__(self, store, faults, stats, tokens, statements, proxied):
        self.store = store
        self.faults = faults
        self.stats = stats
        self.tokens = tokens
        self.statements = statements
        self.proxied = proxied  # whether the gRPC ports go through the TCP proxy

    def register(self, router):
        routes = [
            ("POST", r"/emulator/tables", self.create_table),
            ("GET", r"/emulator/tables", self.list_tables),
            ("DELETE", r"/emulator/tables/(?P<name>[^/]+)", self.drop_table),
            ("GET", r"/emulator/tables/(?P<name>[^/]+)/rows", self.table_rows),
            ("GET", r"/emulator/tables/(?P<name>[^/]+)/count", self.table_count),
            ("POST", r"/emulator/sql", self.raw_sql),
            ("GET", r"/emulator/faults", self.get_faults),
            ("POST", r"/emulator/faults", self.set_faults),
            ("DELETE", r"/emulator/faults", self.clear_faults),
            ("GET", r"/emulator/stats", self.get_stats),
            ("GET", r"/emulator/clients", self.get_clients),
            ("POST", r"/emulator/reset", self.reset),
            ("GET", r"/emulator/statements", self.statement_log),
            ("GET", r"/emulator/damaged", self.damage_log),
        ]
        for method, pattern, handler in routes:
            router.add(method, pattern, _loopback_only(handler))

    def create_table(self, request):
        body = _json_body(request)
        if isinstance(body, Response):
            return body
        try:
            table, _ = self.store.create_table(body.get("name"), body.get("columns"),
                                               if_not_exists=bool(body.get("if_not_exists")))
        except TableError as exc:
            return error_response(TABLE_ERROR_STATUS[exc.kind], exc.kind.upper(), str(exc))
        return Response(201, table.describe())

    def list_tables(self, request):
        return Response(200, {"tables": [t.describe() for t in self.store.tables()]})

    def drop_table(self, request, name):
        try:
            self.store.drop_table(name)
        except TableError as exc:
            return error_response(TABLE_ERROR_STATUS[exc.kind], exc.kind.upper(), str(exc))
        return Response(200, {"dropped": name})

    def table_rows(self, request, name):
        table = self.store.get(name)
        if table is None:
            return error_response(404, "NOT_FOUND", "table %s does not exist" % name)
        return Response(200, {"columns": [c.describe() for c in table.columns],
                              "rows": self.store.rows(table)})

    def table_count(self, request, name):
        table = self.store.get(name)
        if table is None:
            return error_response(404, "NOT_FOUND", "table %s does not exist" % name)
        return Response(200, {"count": self.store.count(table)})

    def raw_sql(self, request):
        body = _json_body(request)
        if isinstance(body, Response):
            return body
        try:
            names, rows = self.store.raw_sql(str(body.get("sql", "")))
        except sqlite3.Error as exc:
            return error_response(400, "SQLITE_ERROR", str(exc))
        return Response(200, {"columns": names, "rows": [[_jsonable(v) for v in row]
                                                         for row in rows]})

    def get_faults(self, request):
        return Response(200, self.faults.snapshot())

    def set_faults(self, request):
        body = _json_body(request)
        if isinstance(body, Response):
            return body
        body = dict(body)
        expire = body.pop("expire_tokens", None)
        if expire not in (None, True, False):
            return error_response(400, "INVALID_FAULT", "expire_tokens must be true")
        if not self.proxied and any(body.get(k) for k in PROXY_FAULTS):
            return error_response(400, "INVALID_FAULT", "%s need the TCP proxy (started with "
                                  "--no-proxy)" % "/".join(PROXY_FAULTS))
        try:
            state = self.faults.merge(body)
        except FaultError as exc:
            return error_response(400, "INVALID_FAULT", str(exc))
        if expire:
            self.tokens.expire_all()
        return Response(200, state)

    def clear_faults(self, request):
        self.faults.clear()
        return Response(200, {})

    def get_stats(self, request):
        return Response(200, self.stats.snapshot())

    def get_clients(self, request):
        return Response(200, self.stats.clients())

    def reset(self, request):
        body = _json_body(request)
        if isinstance(body, Response):
            return body
        self.faults.clear()
        self.stats.reset()
        self.statements.clear_log()
        if body.get("tables"):
            self.store.drop_all()
        return Response(200, {"reset": True})

    def statement_log(self, request):
        return Response(200, {"statements": self.statements.log()})

    def damage_log(self, request):
        return Response(200, {"responses": self.statements.damage_log()})


def _loopback_only(handler):
    def guarded(request, **kwargs):
        host = request.client_address[0]
        if not (host.startswith("127.") or host == "::1"):
            return error_response(403, "PERMISSION_DENIED", "control API is loopback-only")
        return handler(request, **kwargs)
    return guarded


def _json_body(request):
    """The request's JSON object, or an error Response."""
    try:
        body = request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        return error_response(400, "MALFORMED_REQUEST", "body is not JSON: %s" % exc)
    if not isinstance(body, dict):
        return error_response(400, "MALFORMED_REQUEST", "body must be a JSON object")
    return body


def _jsonable(value):
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value
