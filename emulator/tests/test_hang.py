"""The ``hang`` fault: a request is processed but its answer is held back."""

import json
import socket
import threading
import time

from harness import EmulatorTestCase

WH = "emulator-wh"
TOKEN_FORM = {"grant_type": "client_credentials", "scope": "all-apis"}


class HangFaultTest(EmulatorTestCase):

    def faults(self, body):
        return self.emulator.control("POST", "/faults", body)

    def held(self):
        return self.emulator.control("GET", "/stats")["requests_held"]

    def wait_held(self, n, timeout=10):
        deadline = time.time() + timeout
        while self.held() < n and time.time() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.held(), n)

    def in_thread(self, fn):
        """Run fn() in a thread; returns a dict that gets 'result' (and 'done_at')."""
        out = {}

        def run():
            out["result"] = fn()
            out["done_at"] = time.time()
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        out["thread"] = thread
        return out

    def test_validation(self):
        for bad in ({"target": "everything"}, {"target": "token", "ms": -1},
                    {"target": "poll", "count": 0}, {"target": "poll", "when": 1}):
            status, body = self.emulator.http("POST", "/emulator/faults", {"hang": bad})
            self.assertEqual(status, 400, bad)
        self.assertEqual(self.faults({"hang": {"target": "submit"}})["hang"],
                         {"target": "submit", "ms": 0, "count": 1})

    def test_delayed_token(self):
        self.faults({"hang": {"target": "token", "ms": 400}})
        started = time.time()
        status, body = self.emulator.token_request(TOKEN_FORM)
        self.assertEqual(status, 200, body)
        self.assertGreaterEqual(time.time() - started, 0.4)
        self.assertEqual(self.held(), 1)
        # only the next request was held
        started = time.time()
        self.assertEqual(self.emulator.token_request(TOKEN_FORM)[0], 200)
        self.assertLess(time.time() - started, 0.4)
        self.assertEqual(self.held(), 1)

    def test_submit_held_until_released(self):
        token = self.emulator.sql_token()
        self.faults({"hang": {"target": "submit"}, "sql_delay_ms": 30000})
        call = self.in_thread(lambda: self.emulator.http(
            "POST", "/api/2.0/sql/statements",
            {"statement": "SELECT 1", "warehouse_id": WH, "wait_timeout": "0s"}, token=token))
        self.wait_held(1)
        # the statement exists and runs while its submit's answer is held back
        log = self.emulator.control("GET", "/statements")["statements"]
        self.assertEqual([s["state"] for s in log], ["RUNNING"])
        time.sleep(0.3)
        self.assertNotIn("result", call)
        released = time.time()
        self.faults({"hang": None})
        call["thread"].join(10)
        status, body = call["result"]
        self.assertEqual(status, 200, body)
        self.assertEqual(body["statement_id"], log[0]["statement_id"])
        self.assertLess(call["done_at"] - released, 2)

    def test_client_that_leaves_gets_nothing(self):
        self.faults({"hang": {"target": "token"}})
        payload = "grant_type=client_credentials&scope=all-apis"
        request = ("POST /oidc/v1/token HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: Basic emItdGVzdC1jbGllbnQ6emItdGVzdC1zZWNyZXQ=\r\n"
                   "Content-Type: application/x-www-form-urlencoded\r\n"
                   "Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
        sock = socket.create_connection(("127.0.0.1", self.emulator.ports["http"]))
        sock.sendall(request.encode())
        self.wait_held(1)
        sock.settimeout(0.3)
        with self.assertRaises(socket.timeout):
            sock.recv(1)                       # nothing comes while held
        sock.close()
        self.faults({"hang": None})
        # the emulator goes on serving
        status, body = self.emulator.token_request(TOKEN_FORM)
        self.assertEqual(status, 200, json.dumps(body))

    def test_clear_releases(self):
        self.faults({"hang": {"target": "token", "count": 2}})
        calls = [self.in_thread(lambda: self.emulator.token_request(TOKEN_FORM))
                 for _ in range(2)]
        self.wait_held(2)
        self.emulator.control("DELETE", "/faults")
        for call in calls:
            call["thread"].join(10)
            self.assertEqual(call["result"][0], 200)
