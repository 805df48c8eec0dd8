"""A TCP proxy in front of grpcio's internal listeners.

grpcio cannot drop a connection without an HTTP/2 GOAWAY, nor speak anything but
gRPC; the proxy gives the emulator both abilities:

* ``cut(peer)`` aborts the client connection whose upstream leg grpcio sees as
  ``peer`` (a TCP reset: no gRPC status, no GOAWAY);
* a new connection can be answered by ``FakeHttp2`` (see below) instead of
  being forwarded, for the ``garbage`` and ``not_grpc`` faults.

Forwarding is two threads per connection copying with 1 MiB buffers.
"""

import logging
import socket
import ssl
import struct
import threading

log = logging.getLogger("zerobus_emulator.proxy")
BUFFER_BYTES = 1 << 20
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class _Connection:
    def __init__(self, client, upstream):
        self.client = client
        self.upstream = upstream
        self.cut = False


class TcpProxy:
    """Listens on 127.0.0.1:``port`` and forwards to 127.0.0.1:``upstream_port``."""

    def __init__(self, port, upstream_port, faults, tls_context=None):
        self.upstream_port = upstream_port
        self.faults = faults
        self.tls_context = tls_context  # for FakeHttp2 on a TLS port
        self._listener = socket.create_server(("127.0.0.1", port), backlog=128)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._by_upstream_port = {}
        self._closed = False

    def start(self):
        threading.Thread(target=self._accept_loop, name="zb-proxy-%d" % self.port,
                         daemon=True).start()

    def close(self):
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()

    def cut(self, peer):
        """Abort the connection grpcio sees as ``peer`` ("ipv4:127.0.0.1:PORT").
        Return whether such a connection was found."""
        try:
            port = int(peer.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            return False
        with self._lock:
            conn = self._by_upstream_port.get(port)
        if conn is None:
            return False
        conn.cut = True
        conn.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for sock, how in ((conn.client, socket.SHUT_RD), (conn.upstream, socket.SHUT_RDWR)):
            try:
                sock.shutdown(how)
            except OSError:
                pass
        return True

    def _accept_loop(self):
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fault = self.faults.take_connection_fault()
        if fault is not None:
            FakeHttp2(fault[0], fault[1], self.tls_context).serve(client)
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError as exc:
            log.warning("proxy cannot reach upstream port %d: %s", self.upstream_port, exc)
            client.close()
            return
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(client, upstream)
        key = upstream.getsockname()[1]
        with self._lock:
            self._by_upstream_port[key] = conn
        back = threading.Thread(target=self._pump, args=(conn, upstream, client), daemon=True)
        back.start()
        self._pump(conn, client, upstream)
        back.join()
        with self._lock:
            self._by_upstream_port.pop(key, None)
        client.close()  # with SO_LINGER 0 after cut(): a TCP reset
        upstream.close()

    @staticmethod
    def _pump(conn, src, dst):
        buffer = bytearray(BUFFER_BYTES)
        view = memoryview(buffer)
        try:
            while True:
                count = src.recv_into(buffer)
                if count == 0:
                    break
                dst.sendall(view[:count])
        except OSError:
            for sock in (conn.client, conn.upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return
        if not conn.cut:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass


class FakeHttp2:
    """Answers one connection with something that is not a working gRPC server.

    * ``not_grpc``: a plain HTTP/2 web server: SETTINGS, then on the client's
      first stream HEADERS ``:status 404``, ``content-type text/html`` and a DATA
      frame with a small HTML page, END_STREAM;
    * ``garbage``/``frames``: HEADERS ``:status 200``, ``content-type
      application/grpc``, then one DATA frame (END_STREAM) holding a gRPC message
      prefix that announces a 4 GiB - 1 message followed by 16 junk bytes;
    * ``garbage``/``protobuf``: a well-framed gRPC message whose 8 bytes (0xFF...)
      are not a valid protobuf, then trailers ``grpc-status: 0``;
    * ``garbage``/``http``: bytes that are not HTTP/2 at all (an HTTP/1.1 400
      response), then the connection is closed.

    Header blocks use HPACK literals without indexing (no Huffman, no table).
    """

    def __init__(self, fault, kind, tls_context):
        self.fault = fault
        self.kind = kind
        self.tls_context = tls_context

    def serve(self, sock):
        sock.settimeout(10)
        try:
            if self.tls_context is not None:
                sock = self.tls_context.wrap_socket(sock, server_side=True)
            if self.kind == "http":
                sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: 21\r\nConnection: close\r\n\r\n"
                             b"not an HTTP/2 server\n")
                return
            self._exchange(sock)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.debug("fake HTTP/2 responder: %s", exc)
        finally:
            sock.close()

    def _exchange(self, sock):
        reader = _Reader(sock)
        if reader.read(len(PREFACE)) != PREFACE:
            raise ValueError("no HTTP/2 connection preface")
        sock.sendall(frame(0x4, 0, 0, b""))  # our SETTINGS
        answered = False
        while True:
            header = reader.read(9)
            if len(header) < 9:
                return
            length = int.from_bytes(header[:3], "big")
            ftype, flags = header[3], header[4]
            stream_id = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
            payload = reader.read(length)
            if ftype == 0x4 and not flags & 0x1:
                sock.sendall(frame(0x4, 0x1, 0, b""))  # SETTINGS ACK
            elif ftype == 0x6 and not flags & 0x1:
                sock.sendall(frame(0x6, 0x1, 0, payload))  # PING ACK
            elif ftype == 0x1 and not answered:
                sock.sendall(self._answer(stream_id))
                answered = True

    def _answer(self, stream_id):
        if self.fault == "not_grpc":
            page = b"<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>" \
                   b"</body></html>\n"
            return (frame(0x1, 0x4, stream_id, hpack([
                (":status", "404"), ("content-type", "text/html; charset=utf-8"),
                ("content-length", str(len(page)))]))
                + frame(0x0, 0x1, stream_id, page))
        headers = frame(0x1, 0x4, stream_id, hpack([(":status", "200"),
                                                    ("content-type", "application/grpc")]))
        if self.kind == "frames":
            return headers + frame(0x0, 0x1, stream_id, b"\x00\xff\xff\xff\xff" + b"\xde\xad" * 8)
        return (headers + frame(0x0, 0x0, stream_id, b"\x00\x00\x00\x00\x08" + b"\xff" * 8)
                + frame(0x1, 0x5, stream_id, hpack([("grpc-status", "0")])))


class _Reader:
    def __init__(self, sock):
        self.sock = sock

    def read(self, count):
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                break
            data += chunk
        return data


def frame(ftype, flags, stream_id, payload):
    """One HTTP/2 frame."""
    return len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + \
        stream_id.to_bytes(4, "big") + payload


def _hpack_int(value, prefix_bits, first_byte=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first_byte | value,))
    out = bytearray((first_byte | limit,))
    value -= limit
    while value >= 128:
        out.append((value % 128) + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def hpack(headers):
    """An HPACK header block of literal fields without indexing, new names."""
    block = bytearray()
    for name, value in headers:
        block += b"\x00"
        for text in (name.encode(), value.encode()):
            block += _hpack_int(len(text), 7) + text
    return bytes(block)
