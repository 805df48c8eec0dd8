"""The SQL Statement Execution API and the Databricks SQL subset."""

import base64
import json
import time
import urllib.error
import urllib.request

from harness import EmulatorTestCase

WH = "emulator-wh"
TABLE = "`main`.`default`.`tx`"


class SqlApiTest(EmulatorTestCase):
    EMULATOR_ARGS = ("--chunk-rows", "3")

    def setUp(self):
        super().setUp()
        self.token = self.emulator.sql_token()
        self.sql("CREATE TABLE main.default.tx (id BIGINT NOT NULL, cur STRING, "
                 "amount DECIMAL(12,2), ts TIMESTAMP, day DATE, ok BOOLEAN, tags ARRAY<STRING>, "
                 "raw BINARY)")
        self.sql("INSERT INTO %s VALUES "
                 "(1, 'USD', 10.50, '2024-01-31 12:34:56.789', '2024-01-31', true, NULL, NULL), "
                 "(2, 'EUR', 20.25, '2024-02-01T00:00:00Z', '2024-02-01', false, NULL, "
                 "unbase64('AAE=')), "
                 "(3, 'USD', 0.01, NULL, NULL, NULL, NULL, NULL), "
                 "(4, 'usd', 100, NULL, NULL, NULL, NULL, NULL), "
                 "(5, NULL, NULL, NULL, NULL, NULL, NULL, NULL)" % TABLE)

    def post(self, body, token=None):
        return self.emulator.http("POST", "/api/2.0/sql/statements", dict(
            {"warehouse_id": WH}, **body), token=token or self.token)

    def sql(self, statement, **extra):
        status, body = self.post(dict(extra, statement=statement))
        self.assertEqual(status, 200, body)
        self.assertEqual(body["status"]["state"], "SUCCEEDED", body)
        return body

    def failed(self, statement, **extra):
        status, body = self.post(dict(extra, statement=statement))
        self.assertEqual((status, body["status"]["state"]), (200, "FAILED"), body)
        return body["status"]["error"]

    def rows(self, statement, **extra):
        body = self.sql(statement, **extra)
        rows = list(body["result"].get("data_array", []))
        link = body["result"].get("next_chunk_internal_link")
        while link:
            status, chunk = self.emulator.http("GET", link, token=self.token)
            self.assertEqual(status, 200, chunk)
            rows += chunk["data_array"]
            link = chunk.get("next_chunk_internal_link")
        return rows

    # ------------------------------------------------------------ results

    def test_rendering_and_manifest(self):
        body = self.sql("SELECT id, amount, ts, day, ok, base64(raw), CAST(ts AS STRING), "
                        "date_format(ts, 'yyyy-MM-dd HH:mm') AS f FROM %s WHERE id <= 2 "
                        "ORDER BY id" % TABLE)
        self.assertEqual(body["result"]["data_array"], [
            ["1", "10.50", "2024-01-31T12:34:56.789Z", "2024-01-31", "true", None,
             "2024-01-31 12:34:56.789", "2024-01-31 12:34"],
            ["2", "20.25", "2024-02-01T00:00:00.000Z", "2024-02-01", "false", "AAE=",
             "2024-02-01 00:00:00", "2024-02-01 00:00"]])
        columns = body["manifest"]["schema"]["columns"]
        self.assertEqual([c["type_name"] for c in columns],
                         ["LONG", "DECIMAL", "TIMESTAMP", "DATE", "BOOLEAN", "STRING", "STRING",
                          "STRING"])
        self.assertEqual((columns[1]["type_precision"], columns[1]["type_scale"]), (12, 2))
        self.assertEqual(columns[7]["name"], "f")

    def test_aggregates(self):
        body = self.sql("SELECT cur, count(*) AS n, sum(amount) AS total, avg(id) AS a, "
                        "min(id), max(id) FROM %s WHERE cur IS NOT NULL GROUP BY cur "
                        "HAVING count(*) >= 1 ORDER BY cur" % TABLE)
        self.assertEqual(body["result"]["data_array"], [
            ["EUR", "1", "20.25", "2.0", "2", "2"], ["USD", "2", "10.51", "2.0", "1", "3"],
            ["usd", "1", "100.00", "4.0", "4", "4"]])
        types = [c["type_text"] for c in body["manifest"]["schema"]["columns"]]
        self.assertEqual(types, ["STRING", "BIGINT", "DECIMAL(22,2)", "DOUBLE", "BIGINT",
                                 "BIGINT"])

    def test_predicates(self):
        self.assertEqual(self.rows("SELECT id FROM %s WHERE cur LIKE 'US%%' ORDER BY id"
                                   % TABLE), [["1"], ["3"]])
        self.assertEqual(self.rows("SELECT id FROM %s WHERE cur ILIKE 'us%%' ORDER BY id"
                                   % TABLE), [["1"], ["3"], ["4"]])
        self.assertEqual(self.rows("SELECT id FROM %s WHERE id IN (2, 4) OR cur IS NULL "
                                   "ORDER BY id DESC" % TABLE), [["5"], ["4"], ["2"]])
        self.assertEqual(self.rows("SELECT id FROM %s WHERE ts > '2024-02-01' OR day < "
                                   "'2024-02-01'" % TABLE), [["1"]])
        self.assertEqual(self.rows("SELECT lower(cur), upper(cur), length(cur), "
                                   "coalesce(cur, 'none'), abs(-id), round(amount, 1) FROM %s "
                                   "WHERE id = 5 OR id = 1 ORDER BY id" % TABLE),
                         [["usd", "USD", "3", "USD", "1", "10.50"],
                          [None, None, None, "none", "5", None]])

    def test_limit_offset_and_chunks(self):
        body = self.sql("SELECT id FROM %s ORDER BY id LIMIT 4 OFFSET 1" % TABLE)
        manifest = body["manifest"]
        self.assertEqual((manifest["total_chunk_count"], manifest["total_row_count"]), (2, 4))
        self.assertEqual(manifest["chunks"][1], {"chunk_index": 1, "row_offset": 3,
                                                 "row_count": 1})
        self.assertEqual(body["result"]["next_chunk_index"], 1)
        self.assertEqual(self.rows("SELECT id FROM %s ORDER BY id LIMIT 4 OFFSET 1" % TABLE),
                         [["2"], ["3"], ["4"], ["5"]])

    def test_row_limit_truncates(self):
        body = self.sql("SELECT id FROM %s" % TABLE, row_limit=2)
        self.assertTrue(body["manifest"]["truncated"])
        self.assertEqual(body["manifest"]["total_row_count"], 2)

    def test_parameters(self):
        params = [{"name": "cur", "value": "USD"}, {"name": "lo", "value": "1", "type": "BIGINT"},
                  {"name": "since", "value": "2024-01-01T00:00:00Z", "type": "TIMESTAMP"},
                  {"name": "nothing", "type": "STRING"}]
        rows = self.rows("SELECT id, :nothing IS NULL FROM %s WHERE cur = :cur AND id > :lo "
                         "AND ts >= :since" % TABLE, parameters=params)
        self.assertEqual(rows, [])
        rows = self.rows("SELECT id, :nothing IS NULL FROM %s WHERE cur = :cur AND id >= :lo"
                         % TABLE, parameters=params)
        self.assertEqual(rows, [["1", "true"], ["3", "true"]])
        # a value is data, never SQL
        rows = self.rows("SELECT count(*) FROM %s WHERE cur = :cur" % TABLE,
                         parameters=[{"name": "cur", "value": "x' OR '1'='1"}])
        self.assertEqual(rows, [["0"]])
        log = self.emulator.control("GET", "/statements")["statements"]
        self.assertEqual(log[-1]["parameters"], [{"name": "cur", "value": "x' OR '1'='1"}])
        self.assertEqual(log[-1]["state"], "SUCCEEDED")

    def test_information_schema(self):
        rows = self.rows("SELECT COLUMN_NAME, ORDINAL_POSITION, IS_NULLABLE, FULL_DATA_TYPE, "
                         "NUMERIC_PRECISION, NUMERIC_SCALE FROM main.information_schema.columns "
                         "WHERE TABLE_SCHEMA = :s AND TABLE_NAME = 'tx' ORDER BY "
                         "ORDINAL_POSITION LIMIT 3", parameters=[{"name": "s",
                                                                   "value": "default"}])
        self.assertEqual(rows, [["id", "1", "NO", "bigint", "64", "0"],
                                ["cur", "2", "YES", "string", None, None],
                                ["amount", "3", "YES", "decimal(12,2)", "12", "2"]])

    def test_dml_and_ddl(self):
        body = self.sql("DELETE FROM %s WHERE id > :n" % TABLE,
                        parameters=[{"name": "n", "value": "3", "type": "INT"}])
        self.assertEqual(body["result"]["data_array"], [["2"]])
        self.sql("TRUNCATE TABLE %s" % TABLE)
        self.assertEqual(self.rows("SELECT count(*) FROM %s" % TABLE), [["0"]])
        self.sql("DROP TABLE %s" % TABLE)
        self.sql("DROP TABLE IF EXISTS %s" % TABLE)
        self.sql("CREATE TABLE IF NOT EXISTS main.s.t (a INT)")
        self.sql("CREATE TABLE IF NOT EXISTS main.s.t (a INT)")

    # ------------------------------------------------------------ failures

    def test_failed_statements(self):
        error = self.failed("SELECT * FROM main.default.nope")
        self.assertEqual(error["error_code"], "BAD_REQUEST")
        self.assertIn("[TABLE_OR_VIEW_NOT_FOUND]", error["message"])
        self.assertIn("`main`.`default`.`nope`", error["message"])
        self.assertIn("SQLSTATE: 42P01", error["message"])
        self.assertIn("[UNRESOLVED_COLUMN", self.failed("SELECT bogus FROM %s" % TABLE)["message"])
        self.assertIn("[PARSE_SYNTAX_ERROR]", self.failed("SELEC 1")["message"])
        self.assertIn("[UNBOUND_SQL_PARAMETER]", self.failed("SELECT :x")["message"])
        self.assertIn("[CAST_INVALID_INPUT]", self.failed(
            "SELECT CAST('abc' AS INT)")["message"])
        self.assertIn("[DELTA_NOT_NULL_CONSTRAINT_VIOLATED]", self.failed(
            "INSERT INTO %s (cur) VALUES ('x')" % TABLE)["message"])
        self.assertIn("[TABLE_OR_VIEW_ALREADY_EXISTS]", self.failed(
            "CREATE TABLE main.default.tx (a INT)")["message"])
        self.emulator.control("POST", "/faults", {"sql_fail": {"error_code": "TEMPORARILY_"
                                                               "UNAVAILABLE", "message": "busy"}})
        self.assertEqual(self.failed("SELECT 1"), {"error_code": "TEMPORARILY_UNAVAILABLE",
                                                   "message": "busy"})
        self.sql("SELECT 1")

    def test_refused_requests(self):
        cases = [({"statement": "SELECT 1", "warehouse_id": "nope"}, 404,
                  "RESOURCE_DOES_NOT_EXIST"),
                 ({"statement": "SELECT 1", "wait_timeout": "3s"}, 400, "INVALID_PARAMETER_VALUE"),
                 ({"statement": "SELECT 1", "format": "CSV"}, 400, "INVALID_PARAMETER_VALUE"),
                 ({"statement": "SELECT 1", "disposition": "EXTERNAL_LINKS", "format": "CSV"},
                  400, "NOT_IMPLEMENTED"),
                 ({"statement": "SELECT 1", "disposition": "SOMEWHERE"}, 400,
                  "INVALID_PARAMETER_VALUE"),
                 ({"warehouse_id": WH}, 400, "INVALID_PARAMETER_VALUE")]
        for body, status, code in cases:
            got_status, got = self.post(body)
            self.assertEqual((got_status, got["error_code"]), (status, code), body)
        status, body = self.post({"statement": "SELECT 1"}, token="bogus")
        self.assertEqual((status, body["error_code"]), (401, "UNAUTHENTICATED"))
        status, _ = self.emulator.http("GET", "/api/2.0/sql/statements/nope", token=self.token)
        self.assertEqual(status, 404)

    # ------------------------------------------------------------ async

    def test_async_polling_and_cancel(self):
        self.emulator.control("POST", "/faults", {"sql_delay_ms": 700})
        status, body = self.post({"statement": "SELECT 1", "wait_timeout": "0s"})
        self.assertIn(body["status"]["state"], ("PENDING", "RUNNING"))
        path = "/api/2.0/sql/statements/" + body["statement_id"]
        deadline = time.time() + 10
        while body["status"]["state"] in ("PENDING", "RUNNING") and time.time() < deadline:
            time.sleep(0.1)
            body = self.emulator.http("GET", path, token=self.token)[1]
        self.assertEqual(body["result"]["data_array"], [["1"]])

        self.emulator.control("POST", "/faults", {"sql_delay_ms": 30000})
        status, body = self.post({"statement": "SELECT 1", "wait_timeout": "0s"})
        path = "/api/2.0/sql/statements/" + body["statement_id"]
        self.assertEqual(self.emulator.http("POST", path + "/cancel", token=self.token)[0], 200)
        deadline = time.time() + 5
        while body["status"]["state"] != "CANCELED" and time.time() < deadline:
            time.sleep(0.05)
            body = self.emulator.http("GET", path, token=self.token)[1]
        self.assertEqual(body["status"]["state"], "CANCELED")
        self.assertEqual(self.emulator.control("GET", "/stats")["cancels"], 1)

    def test_wait_timeout_cancel(self):
        self.emulator.control("POST", "/faults", {"sql_delay_ms": 30000})
        started = time.time()
        status, body = self.post({"statement": "SELECT 1", "wait_timeout": "5s",
                                  "on_wait_timeout": "CANCEL"})
        self.assertEqual(body["status"]["state"], "CANCELED")
        self.assertLess(time.time() - started, 8)

    def test_https(self):
        status, body = self.emulator.http("POST", "/api/2.0/sql/statements", {
            "statement": "SELECT 'x' AS s", "warehouse_id": WH}, token=self.token, tls=True)
        self.assertEqual(body["result"]["data_array"], [["x"]])


    # ------------------------------------------------------------ EXTERNAL_LINKS

    @staticmethod
    def fetch(link, headers=None):
        request = urllib.request.Request(link["external_link"], headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def test_external_links(self):
        body = self.sql("SELECT id FROM %s ORDER BY id" % TABLE, disposition="EXTERNAL_LINKS")
        self.assertEqual(body["manifest"]["total_chunk_count"], 2)
        self.assertNotIn("data_array", body["result"])
        link = body["result"]["external_links"][0]
        self.assertEqual((link["chunk_index"], link["row_count"], link["next_chunk_index"]),
                         (0, 3, 1))
        # our Authorization header must not travel to storage; the link's headers must
        status, _ = self.fetch(link, dict(link["http_headers"],
                                          Authorization="Bearer " + self.token))
        self.assertEqual(status, 400)
        self.assertEqual(self.fetch(link)[0], 403)
        status, data = self.fetch(link, link["http_headers"])
        self.assertEqual((status, json.loads(data)), (200, [["1"], ["2"], ["3"]]))
        status, chunk = self.emulator.http("GET", link["next_chunk_internal_link"],
                                           token=self.token)
        self.assertEqual(status, 200)
        link = chunk["external_links"][0]
        self.assertNotIn("next_chunk_index", link)
        self.assertEqual(json.loads(self.fetch(link, link["http_headers"])[1]), [["4"], ["5"]])
        stats = self.emulator.control("GET", "/stats")
        self.assertEqual((stats["external_fetches"], stats["external_bytes"]), (2, 32))

    def test_external_links_expire_and_skip_inline_limit(self):
        self.emulator.control("POST", "/faults", {"link_ttl_s": 0})
        body = self.sql("SELECT id FROM %s" % TABLE, disposition="EXTERNAL_LINKS")
        link = body["result"]["external_links"][0]
        time.sleep(0.05)
        status, data = self.fetch(link, link["http_headers"])
        self.assertEqual(status, 403)
        self.assertIn(b"expired", data)

    def test_malformed_faults(self):
        for kind, check in (("not_json", lambda raw: raw.startswith(b"<html>")),
                            ("truncated", lambda raw: not raw.endswith(b"}")),
                            ("invalid_utf8", lambda raw: b"\xff" in raw),
                            ("bad_row", lambda raw: b'[["zb-extra",' in raw)):
            self.emulator.control("POST", "/faults", {"sql_malformed": {"kind": kind}})
            status, raw = self.post({"statement": "SELECT id FROM %s ORDER BY id" % TABLE})
            self.assertEqual(status, 200)
            if not isinstance(raw, bytes):
                raw = json.dumps(raw, separators=(",", ":")).encode()
            self.assertTrue(check(raw), (kind, raw[:200]))
            self.sql("SELECT 1")  # consumed: the next response is whole
        self.emulator.control("POST", "/faults", {"sql_malformed": {"kind": "bad_row",
                                                                    "target": "chunk"}})
        body = self.sql("SELECT id FROM %s ORDER BY id" % TABLE)
        status, chunk = self.emulator.http("GET", body["result"]["next_chunk_internal_link"],
                                           token=self.token)
        self.assertEqual(chunk["data_array"][0], ["zb-extra", "4"])
        # the damage log has each damaged response, before and after
        last = self.emulator.control("GET", "/damaged")["responses"][-1]
        self.assertEqual((last["target"], last["kind"], last["statement_id"]),
                         ("chunk", "bad_row", body["statement_id"]))
        self.assertEqual(json.loads(base64.b64decode(last["damaged"]))["data_array"][0],
                         ["zb-extra", "4"])
        self.assertEqual(json.loads(base64.b64decode(last["original"]))["data_array"][0], ["4"])

    def test_exotic_identifiers_and_offset(self):
        name = 'we`ird "col -- :x /* */'
        self.emulator.create_table("main.default.odd", [("id", "BIGINT"), (name, "STRING")])
        quoted = "`" + name.replace("`", "``") + "`"
        self.sql("INSERT INTO main.default.odd VALUES (1, 'a'), (2, 'b`c')")
        rows = self.rows("SELECT `id`, %s FROM `main`.`default`.`odd` WHERE (%s = :p1)"
                         % (quoted, quoted), parameters=[{"name": "p1", "value": "b`c"}])
        self.assertEqual(rows, [["2", "b`c"]])
        body = self.sql("SELECT %s FROM `main`.`default`.`odd`" % quoted)
        self.assertEqual(body["manifest"]["schema"]["columns"][0]["name"], name)
        self.assertEqual(self.rows("SELECT id FROM %s ORDER BY id OFFSET 3" % TABLE),
                         [["4"], ["5"]])

    def test_http_refusals(self):
        self.emulator.control("POST", "/faults", {"sql_http_fail": {"status": 429, "count": 2,
                                                                    "retry_after": 3}})
        for _ in range(2):
            status, body = self.post({"statement": "SELECT 1"})
            self.assertEqual((status, body["error_code"]), (429, "RESOURCE_EXHAUSTED"))
        self.sql("SELECT 1")
        self.assertEqual(self.emulator.control("GET", "/stats")["sql_http_refusals"], 2)
