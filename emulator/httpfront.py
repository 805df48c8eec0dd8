"""The HTTP/1.1 front end shared by the OAuth, SQL Statement and control APIs.

Handlers are plain functions ``handler(request, **url_groups) -> Response``
registered on a Router; HttpServer serves a router over plain TCP or TLS.
"""

import json
import logging
import re
import select
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("zerobus_emulator.http")
MAX_BODY = 64 * 1024 * 1024


@dataclass
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    query: dict
    headers: object  # email.message.Message: case-insensitive .get()
    body: bytes
    client_address: tuple
    scheme: str = "http"

    def json(self):
        """The body as JSON (an empty body is an empty object); raises ValueError."""
        if not self.body.strip():
            return {}
        return json.loads(self.body.decode("utf-8"))

    def bearer_token(self):
        header = self.headers.get("Authorization", "")
        return header[7:].strip() if header.startswith("Bearer ") else None


class Hold:
    """Keeps a response back (the ``hang`` fault): for ``ms`` milliseconds, or with ``ms``
    0 until ``released()`` is true (at most HOLD_LIMIT_S); a client that closes its
    connection meanwhile gets nothing."""

    HOLD_LIMIT_S = 600

    def __init__(self, ms, released):
        self.ms = ms
        self.released = released

    def wait(self, sock):
        """True: send the response now; False: drop it (the client is gone, or the
        unlimited hold ran out)."""
        end = time.monotonic() + (self.ms / 1000.0 if self.ms else self.HOLD_LIMIT_S)
        while not self.released():
            left = end - time.monotonic()
            if left <= 0:
                return bool(self.ms)
            if _client_gone(sock, min(left, 0.05)):
                return False
        return True


def with_hang(response, faults, stats, target):
    """Apply a ``hang`` fault for this request target to the response, if one is set."""
    taken = faults.take_hang(target)
    if taken:
        stats.incr("requests_held")
        response.hold = Hold(*taken)
    return response


def _client_gone(sock, timeout):
    """Whether the peer closed the connection (waits up to timeout for news)."""
    readable, _, _ = select.select([sock], [], [], timeout)
    if not readable:
        return False
    if isinstance(sock, ssl.SSLSocket):
        # no MSG_PEEK under TLS: reading would consume a pipelined request
        time.sleep(timeout)
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


@dataclass
class Response:
    """A reply; a non-bytes body is sent as JSON.  ``hold`` (a Hold) delays it."""

    status: int
    body: object = None
    headers: dict = field(default_factory=dict)
    content_type: str = "application/json"
    hold: object = None

    def encode(self):
        if isinstance(self.body, bytes):
            return self.body
        if self.body is None:
            return b""
        return json.dumps(self.body, separators=(",", ":")).encode("utf-8")


def error_response(status, error_code, message):
    """The Databricks REST error shape: {error_code, message}."""
    return Response(status, {"error_code": error_code, "message": message})


class Router:
    """Maps (method, path regex) to handlers."""

    def __init__(self):
        self._routes = []

    def add(self, method, pattern, handler):
        self._routes.append((method, re.compile("^" + pattern + "$"), handler))

    def dispatch(self, request):
        allowed = False
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if not match:
                continue
            if method != request.method:
                allowed = True
                continue
            return handler(request, **{k: urllib.parse.unquote(v)
                                       for k, v in match.groupdict().items()})
        if allowed:
            return error_response(405, "METHOD_NOT_ALLOWED", "method %s not allowed on %s"
                                  % (request.method, request.path))
        return error_response(404, "ENDPOINT_NOT_FOUND", "no API found for %s %s"
                              % (request.method, request.path))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "zerobus-emulator"

    def _serve(self):
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._send(error_response(411, "LENGTH_REQUIRED", "chunked bodies are not supported"))
            self.close_connection = True
            return
        try:
            size = int(length or 0)
        except ValueError:
            size = -1
        if not 0 <= size <= MAX_BODY:
            self._send(error_response(400, "INVALID_REQUEST", "bad Content-Length"))
            self.close_connection = True
            return
        body = self.rfile.read(size) if size else b""
        url = urllib.parse.urlsplit(self.path)
        request = Request(self.command, url.path, dict(urllib.parse.parse_qsl(url.query)),
                          self.headers, body, self.client_address,
                          "https" if self.server.ssl_context else "http")
        try:
            response = self.server.router.dispatch(request)
        except Exception:  # a bug in a handler must not kill the connection silently
            log.exception("handler failed for %s %s", self.command, url.path)
            response = error_response(500, "INTERNAL_ERROR", "emulator internal error")
        self._send(response)

    def _send(self, response):
        if response.hold is not None and not response.hold.wait(self.connection):
            log.debug("held response to %s dropped", self.client_address)
            self.close_connection = True
            return
        payload = response.encode()
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)


class HttpServer(ThreadingHTTPServer):
    """A threading HTTP/1.1 server for a Router, optionally over TLS."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, router, ssl_context=None):
        super().__init__(address, _Handler)
        self.router = router
        self.ssl_context = ssl_context

    def finish_request(self, request, client_address):
        """Runs in the request's own thread: the TLS handshake happens here, so a slow
        client cannot stall the accept loop."""
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    @property
    def port(self):
        return self.server_address[1]
