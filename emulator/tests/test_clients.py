"""GET /emulator/clients: the client identifiers each API received."""

from harness import EmulatorTestCase, Stream, create_request, proto_descriptor, FDP

TABLE = "main.default.clients"
DESCRIPTOR = proto_descriptor("Row", [("id", FDP.TYPE_INT64, FDP.LABEL_OPTIONAL)])
FORM = {"grant_type": "client_credentials", "scope": "all-apis"}


class ClientsTest(EmulatorTestCase):

    def clients(self):
        return self.emulator.control("GET", "/clients")

    def test_starts_empty(self):
        self.assertEqual(self.clients(), {"zerobus": {}, "oauth": {}, "sql": {}, "storage": {}})

    def test_each_api_records_what_it_received(self):
        self.emulator.create_table(TABLE, [("id", "BIGINT")])
        status, _ = self.emulator.token_request(FORM)
        self.assertEqual(status, 200)
        self.emulator.http("POST", "/oidc/v1/token", form=FORM,
                           headers={"User-Agent": "zerobus_fdw/9.9 acme/1.0",
                                    "Authorization": "Basic eDp5"})
        token = self.emulator.sql_token()
        for _ in range(2):
            status, body = self.emulator.http(
                "POST", "/api/2.0/sql/statements", {"statement": "SELECT 1 AS one",
                                                    "warehouse_id": "emulator-wh"},
                token=token, headers={"User-Agent": "sql-client/2"})
            self.assertEqual(status, 200, body)
        channel = self.emulator.channel()
        try:
            stream = Stream(channel, self.emulator.zerobus_token(TABLE), TABLE,
                            extra_metadata=[("x-zerobus-sdk", "zerobus_fdw/9.9 acme/1.0")])
            stream.send(create_request(TABLE, "PROTO", DESCRIPTOR))
            self.assertTrue(stream.next().create_stream_response.stream_id)
            stream.close()
            stream.read_all()
            # without the metadata: recorded as ""
            stream = Stream(channel, self.emulator.zerobus_token(TABLE), TABLE)
            stream.send(create_request(TABLE, "PROTO", DESCRIPTOR))
            stream.next()
            stream.close()
            stream.read_all()
        finally:
            channel.close()

        clients = self.clients()
        self.assertEqual(clients["zerobus"], {"zerobus_fdw/9.9 acme/1.0": 1, "": 1})
        self.assertEqual(clients["sql"], {"sql-client/2": 2})
        # the harness's token requests carry urllib's own User-Agent
        self.assertEqual(clients["oauth"].pop("zerobus_fdw/9.9 acme/1.0"), 1)
        self.assertEqual(list(clients["oauth"]), [
            k for k in clients["oauth"] if k.startswith("Python-urllib/")])
        self.assertEqual(clients["storage"], {})

    def test_reset_clears(self):
        self.emulator.token_request(FORM)
        self.assertNotEqual(self.clients()["oauth"], {})
        self.emulator.control("POST", "/reset", {})
        self.assertEqual(self.clients()["oauth"], {})
