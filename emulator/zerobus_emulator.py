#!/usr/bin/python3
"""Local Databricks emulator for zerobus_fdw: ZeroBus Ingest (gRPC), the OAuth M2M
token endpoint and the SQL Statement Execution API, over one SQLite store.

Run with Debian's interpreter: ``/usr/bin/python3 emulator/zerobus_emulator.py``.
See emulator/README.md for options, the control API and the fault keys.
"""

import argparse
import concurrent.futures
import json
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading

import grpc

from admin import ControlApi
from faults import FaultState
from httpfront import HttpServer, Router
from oauth import TokenRegistry
from protos import WireMessages
from proxy import TcpProxy
from sqlapi import StatementManager
from stats import Stats
from store import Store
from zerobus_service import MAX_MESSAGE_BYTES, ServiceOptions, ZerobusService

HERE = os.path.dirname(os.path.abspath(__file__))
log = logging.getLogger("zerobus_emulator")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports-file", help="write the listening ports here as JSON once up")
    for name in ("grpc", "grpcs", "http", "https"):
        parser.add_argument("--%s-port" % name, type=int, default=0,
                            help="port for %s on 127.0.0.1 (default: a free port)" % name)
    parser.add_argument("--tls-dir", help="directory with ca.crt, server.crt, server.key "
                        "(generated there if missing; default: a temporary directory)")
    parser.add_argument("--sink", action="store_true",
                        help="benchmark mode: count and ack records, store nothing")
    parser.add_argument("--no-proxy", action="store_true",
                        help="serve gRPC from grpcio directly (no drop/garbage/not_grpc faults)")
    parser.add_argument("--client", action="append", metavar="ID:SECRET",
                        help="OAuth client (repeatable; default zb-test-client:zb-test-secret)")
    parser.add_argument("--token-ttl", type=int, default=3600, help="token lifetime, seconds")
    parser.add_argument("--token-size", type=int, default=4500,
                        help="approximate access token length in characters")
    parser.add_argument("--workspace-id", help="workspace id the ZeroBus resource must name")
    parser.add_argument("--warehouse-id", action="append",
                        help="known SQL warehouse id (repeatable; default emulator-wh)")
    parser.add_argument("--ack-delay-ms", type=int, default=0, help="delay of every ack")
    parser.add_argument("--chunk-rows", type=int, default=10000,
                        help="rows per SQL API result chunk")
    parser.add_argument("--inline-limit-bytes", type=int, default=25 * 1024 * 1024,
                        help="largest INLINE result before the statement fails")
    parser.add_argument("--link-ttl", type=int, default=900,
                        help="lifetime of EXTERNAL_LINKS pre-signed links, seconds")
    parser.add_argument("--db", help="SQLite file (kept across restarts; default: temporary)")
    parser.add_argument("--stream-lifetime", type=float, default=900.0,
                        help="seconds before a stream gets CloseStreamSignal (0: never)")
    parser.add_argument("--close-signal-duration", type=float, default=5.0,
                        help="duration announced by CloseStreamSignal, seconds")
    parser.add_argument("--grpc-workers", type=int, default=64,
                        help="gRPC handler threads (one per open stream)")
    parser.add_argument("--log", help="log file (default: stderr)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    clients = {}
    for spec in args.client or ["zb-test-client:zb-test-secret"]:
        client_id, sep, secret = spec.partition(":")
        if not sep or not client_id or not secret:
            parser.error("--client must be ID:SECRET")
        clients[client_id] = secret
    args.clients = clients
    args.warehouse_id = args.warehouse_id or ["emulator-wh"]
    return args


def ensure_certs(tls_dir):
    """Make sure tls_dir holds ca.crt, server.crt and server.key (via make_certs.sh)."""
    needed = ("ca.crt", "server.crt", "server.key", "wrong-ca.crt")
    if not all(os.path.exists(os.path.join(tls_dir, f)) for f in needed):
        subprocess.run(["sh", os.path.join(HERE, "make_certs.sh"), tls_dir], check=True)


class Emulator:
    """All listeners and shared state of one emulator process."""

    def __init__(self, args, workdir):
        self.args = args
        self.tls_dir = args.tls_dir or os.path.join(workdir, "tls")
        ensure_certs(self.tls_dir)
        self.store = Store(args.db or os.path.join(workdir, "lakehouse.db"))
        self.faults = FaultState()
        self.stats = Stats()
        self.tokens = TokenRegistry(args.clients, args.token_ttl, args.token_size,
                                    args.workspace_id, self.faults, self.stats)
        self.statements = StatementManager(self.store, self.tokens, self.faults, self.stats,
                                           args.warehouse_id, args.chunk_rows,
                                           args.inline_limit_bytes, args.link_ttl)
        self.proxies = []
        self.http_servers = []
        self.grpc_server = None
        self.ports = {}

    def _file(self, name):
        return os.path.join(self.tls_dir, name)

    def start(self):
        args = self.args
        with open(self._file("server.key"), "rb") as f:
            key = f.read()
        with open(self._file("server.crt"), "rb") as f:
            cert = f.read()
        service = ZerobusService(
            WireMessages(), self.store, self.tokens, self.faults, self.stats,
            ServiceOptions(args.sink, args.ack_delay_ms, args.stream_lifetime,
                           args.close_signal_duration),
            connection_cutter=self._cut)
        self.grpc_server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=args.grpc_workers,
                                                  thread_name_prefix="zb-grpc"),
            handlers=[service.rpc_handler()],
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.so_reuseport", 0),
                     ("grpc.http2.max_ping_strikes", 0)])
        credentials = grpc.ssl_server_credentials([(key, cert)])
        if args.no_proxy:
            self.ports["grpc"] = self._grpc_port(args.grpc_port, None)
            self.ports["grpcs"] = self._grpc_port(args.grpcs_port, credentials)
        else:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self._file("server.crt"), self._file("server.key"))
            tls.set_alpn_protocols(["h2"])
            for name, port, creds, context in (("grpc", args.grpc_port, None, None),
                                               ("grpcs", args.grpcs_port, credentials, tls)):
                proxy = TcpProxy(port, self._grpc_port(0, creds), self.faults, context)
                self.proxies.append(proxy)
                self.ports[name] = proxy.port
        self.grpc_server.start()
        for proxy in self.proxies:
            proxy.start()

        router = Router()
        router.add("POST", "/oidc/v1/token", self.tokens.handle_token_request)
        self.statements.register(router)
        ControlApi(self.store, self.faults, self.stats, self.tokens, self.statements,
                   proxied=not args.no_proxy).register(router)
        https_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        https_context.load_cert_chain(self._file("server.crt"), self._file("server.key"))
        https_context.set_alpn_protocols(["http/1.1"])
        for name, port, context in (("http", args.http_port, None),
                                    ("https", args.https_port, https_context)):
            server = HttpServer(("127.0.0.1", port), router, context)
            threading.Thread(target=server.serve_forever, name="zb-" + name,
                             daemon=True).start()
            self.http_servers.append(server)
            self.ports[name] = server.port
        self.ports.update(ca_file=self._file("ca.crt"), wrong_ca_file=self._file("wrong-ca.crt"),
                          db=self.store.path, pid=os.getpid())

    def _grpc_port(self, port, credentials):
        address = "127.0.0.1:%d" % port
        if credentials is None:
            bound = self.grpc_server.add_insecure_port(address)
        else:
            bound = self.grpc_server.add_secure_port(address, credentials)
        if bound == 0:
            raise OSError("cannot bind gRPC port %s" % address)
        return bound

    def _cut(self, peer):
        return any(proxy.cut(peer) for proxy in self.proxies)

    def stop(self):
        for server in self.http_servers:
            server.shutdown()
            server.server_close()
        for proxy in self.proxies:
            proxy.close()
        if self.grpc_server is not None:
            self.grpc_server.stop(grace=1).wait()


def write_ports_file(path, ports):
    """Write the ports JSON atomically (tmp file + rename)."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(ports, f)
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(filename=args.log, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    workdir = tempfile.mkdtemp(prefix="zb-emulator-")
    emulator = Emulator(args, workdir)
    try:
        emulator.start()
        log.info("listening: %s", json.dumps(emulator.ports))
        if args.ports_file:
            write_ports_file(args.ports_file, emulator.ports)
        while not stop.wait(3600):
            pass
    finally:
        emulator.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
