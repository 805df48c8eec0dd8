"""The OAuth M2M token endpoint."""

import json
import time

from harness import CLIENT_ID, CLIENT_SECRET, EmulatorTestCase

FORM = {"grant_type": "client_credentials", "scope": "all-apis"}
RESOURCE = "api://databricks/workspaces/42/zerobusDirectWriteApi"


class OAuthTest(EmulatorTestCase):
    EMULATOR_ARGS = ("--workspace-id", "42", "--client", "other:s3cret",
                     "--client", "%s:%s" % (CLIENT_ID, CLIENT_SECRET))

    def test_sql_token(self):
        status, body = self.emulator.token_request(FORM)
        self.assertEqual(status, 200)
        self.assertEqual((body["token_type"], body["expires_in"], body["scope"]),
                         ("Bearer", 3600, "all-apis"))
        self.assertGreater(len(body["access_token"]), 4096)

    def test_second_client_and_form_credentials(self):
        self.assertEqual(self.emulator.token_request(FORM, client=("other", "s3cret"))[0], 200)
        status, _ = self.emulator.token_request(
            dict(FORM, client_id="other", client_secret="s3cret"), client=None)
        self.assertEqual(status, 200)

    def test_bad_secret(self):
        status, body = self.emulator.token_request(FORM, client=(CLIENT_ID, "wrong"))
        self.assertEqual(status, 401)
        self.assertEqual(body, {"error": "invalid_client",
                                "error_description": "Client authentication failed"})

    def test_bad_grant_and_scope(self):
        status, body = self.emulator.token_request(dict(FORM, grant_type="password"))
        self.assertEqual((status, body["error"]), (400, "unsupported_grant_type"))
        status, body = self.emulator.token_request(dict(FORM, scope="sql"))
        self.assertEqual((status, body["error"]), (400, "invalid_scope"))

    def test_authorization_details_validation(self):
        for details, fragment in (("not json", "not valid JSON"),
                                  ("{}", "non-empty JSON array"),
                                  (json.dumps([{"type": "x"}]), "unity_catalog_privileges"),
                                  (json.dumps([{"type": "unity_catalog_privileges",
                                                "privileges": ["SELECT"], "object_type": "TABLE",
                                                "object_full_path": "a.b"}]), "a.b")):
            status, body = self.emulator.token_request(
                dict(FORM, resource=RESOURCE, authorization_details=details))
            self.assertEqual((status, body["error"]), (400, "invalid_request"))
            self.assertIn(fragment, body["error_description"])

    def test_resource_must_name_workspace(self):
        status, body = self.emulator.token_request(dict(
            FORM, resource="api://databricks/workspaces/7/zerobusDirectWriteApi"))
        self.assertEqual((status, body["error"]), (400, "invalid_target"))

    def test_zerobus_token_cannot_call_sql_api(self):
        status, body = self.emulator.token_request(dict(FORM, resource=RESOURCE))
        self.assertEqual(status, 200)
        status, body = self.emulator.http("POST", "/api/2.0/sql/statements", {
            "statement": "SELECT 1", "warehouse_id": "emulator-wh"}, token=body["access_token"])
        self.assertEqual((status, body["error_code"]), (403, "PERMISSION_DENIED"))

    def test_injected_failures(self):
        self.emulator.control("POST", "/faults", {"token_endpoint_fail": {"status": 503,
                                                                          "count": 2}})
        self.assertEqual(self.emulator.token_request(FORM)[0], 503)
        status, body = self.emulator.token_request(FORM)
        self.assertEqual((status, body["error"]), (503, "temporarily_unavailable"))
        self.assertEqual(self.emulator.token_request(FORM)[0], 200)
        stats = self.emulator.control("GET", "/stats")
        self.assertEqual((stats["token_requests"], stats["token_failures"],
                          stats["tokens_issued"]), (3, 2, 1))

    def test_expiry(self):
        self.emulator.control("POST", "/faults", {"token_ttl_s": 1})
        status, body = self.emulator.token_request(FORM)
        self.assertEqual(body["expires_in"], 1)
        request = {"statement": "SELECT 1", "warehouse_id": "emulator-wh"}
        token = body["access_token"]
        self.assertEqual(self.emulator.http("POST", "/api/2.0/sql/statements", request,
                                            token=token)[0], 200)
        time.sleep(1.2)
        status, body = self.emulator.http("POST", "/api/2.0/sql/statements", request, token=token)
        self.assertEqual((status, body["error_code"]), (401, "UNAUTHENTICATED"))

    def test_over_tls(self):
        self.assertEqual(self.emulator.token_request(FORM, tls=True)[0], 200)
