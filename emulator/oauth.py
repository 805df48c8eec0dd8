"""The OAuth M2M token endpoint (``POST /oidc/v1/token``) and the token registry.

A token issued without ``resource`` is an SQL-API token; one issued with the
ZeroBus resource (``api://databricks/workspaces/<id>/zerobusDirectWriteApi``)
is valid only for ZeroBus, on the tables its ``authorization_details`` grant.
Tokens live in memory only: after a restart every client must fetch a new one.
"""

import base64
import binascii
import json
import re
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from httpfront import Response, with_hang

ZEROBUS_RESOURCE = re.compile(r"^api://databricks/workspaces/([A-Za-z0-9_-]+)/zerobusDirectWriteApi$")
OBJECT_PARTS = {"CATALOG": 1, "SCHEMA": 2, "TABLE": 3}
KIND_SQL = "sql"
KIND_ZEROBUS = "zerobus"


@dataclass
class Token:
    """What the registry knows about one issued token."""

    client_id: str
    kind: str
    expires_at: float
    workspace_id: str = None
    grants: dict = field(default_factory=dict)  # (object_type, path) -> set(privileges)

    def has(self, object_type, path, privileges):
        return set(privileges) <= self.grants.get((object_type, path.lower()), set())


class OAuthError(Exception):
    """A refused token request: HTTP status, OAuth error code, description."""

    def __init__(self, status, error, description):
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


class TokenRegistry:
    """Issues and checks tokens; the token endpoint's logic."""

    def __init__(self, clients, ttl, token_size, workspace_id, faults, stats):
        self.clients = dict(clients)
        self.ttl = ttl
        self.token_size = token_size
        self.workspace_id = workspace_id
        self.faults = faults
        self.stats = stats
        self._lock = threading.Lock()
        self._tokens = {}

    # ------------------------------------------------------------ endpoint

    def handle_token_request(self, request):
        """``POST /oidc/v1/token``."""
        self.stats.incr("token_requests")
        self.stats.client_seen("oauth", request.headers.get("User-Agent"))
        try:
            failure = self.faults.take_token_failure()
            if failure:
                raise OAuthError(failure, "temporarily_unavailable" if failure >= 500
                                 else "invalid_request", "token endpoint failure injected by "
                                 "the emulator (HTTP %d)" % failure)
            token, ttl = self._issue(request)
        except OAuthError as exc:
            self.stats.incr("token_failures")
            return Response(exc.status, {"error": exc.error, "error_description": exc.description})
        self.stats.incr("tokens_issued")
        return with_hang(Response(200, {"access_token": token, "token_type": "Bearer",
                                        "expires_in": ttl, "scope": "all-apis"},
                                  headers={"Cache-Control": "no-store"}),
                         self.faults, self.stats, "token")

    def _issue(self, request):
        form = self._parse_form(request)
        client_id = self._authenticate(request, form)
        if form.get("grant_type") != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type",
                             "grant_type must be client_credentials")
        if form.get("scope") != "all-apis":
            raise OAuthError(400, "invalid_scope", "scope must be all-apis")
        resource = form.get("resource")
        details = form.get("authorization_details")
        ttl = self.faults.get("token_ttl_s") or self.ttl
        token = Token(client_id, KIND_SQL, time.time() + ttl)
        if resource is not None:
            match = ZEROBUS_RESOURCE.match(resource)
            if not match:
                raise OAuthError(400, "invalid_target", "unsupported resource %r" % resource)
            if self.workspace_id and match.group(1) != self.workspace_id:
                raise OAuthError(400, "invalid_target", "resource names workspace %s, this is "
                                 "workspace %s" % (match.group(1), self.workspace_id))
            token.kind, token.workspace_id = KIND_ZEROBUS, match.group(1)
            if details is not None:
                token.grants = parse_authorization_details(details)
        elif details is not None:
            raise OAuthError(400, "invalid_request", "authorization_details requires resource")
        text = self._mint(token)
        with self._lock:
            self._tokens[text] = token
        return text, ttl

    @staticmethod
    def _parse_form(request):
        try:
            pairs = urllib.parse.parse_qsl(request.body.decode("utf-8"), keep_blank_values=True,
                                           strict_parsing=bool(request.body))
        except (UnicodeDecodeError, ValueError):
            raise OAuthError(400, "invalid_request",
                             "body must be application/x-www-form-urlencoded") from None
        return dict(pairs)

    def _authenticate(self, request, form):
        header = request.headers.get("Authorization", "")
        client_id = secret = None
        if header.startswith("Basic "):
            try:
                decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
                client_id, _, secret = decoded.partition(":")
                client_id = urllib.parse.unquote(client_id)
                secret = urllib.parse.unquote(secret)
            except (binascii.Error, UnicodeDecodeError):
                pass
        elif "client_id" in form:
            client_id, secret = form.get("client_id"), form.get("client_secret")
        if client_id is None or self.clients.get(client_id) != secret or secret is None:
            raise OAuthError(401, "invalid_client", "Client authentication failed")
        return client_id

    def _mint(self, token):
        """A JWT-shaped opaque token of about ``token_size`` characters."""
        def b64(obj):
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
        head = b64({"alg": "RS256", "typ": "JWT", "kid": "zerobus-emulator"})
        body = b64({"sub": token.client_id, "kind": token.kind, "exp": int(token.expires_at),
                    "jti": secrets.token_hex(8)})
        prefix = head + "." + body + "."
        signature_len = max(43, self.token_size - len(prefix))
        return prefix + secrets.token_urlsafe(signature_len)[:signature_len]

    # ------------------------------------------------------------ checks

    def lookup(self, text):
        """The live Token for a bearer string, or None (unknown or expired)."""
        with self._lock:
            token = self._tokens.get(text)
            if token is not None and token.expires_at <= time.time():
                del self._tokens[text]
                token = None
            return token

    def expire_all(self):
        """Invalidate every token issued so far."""
        with self._lock:
            self._tokens.clear()

    def check_zerobus(self, text, table_name):
        """Check a ZeroBus bearer token for a table.

        Return None when allowed, else ("UNAUTHENTICATED"|"PERMISSION_DENIED", message).
        """
        token = self.lookup(text) if text else None
        if token is None:
            return ("UNAUTHENTICATED", "Invalid or expired access token" if text
                    else "Missing bearer token in authorization metadata")
        if token.kind != KIND_ZEROBUS:
            return ("PERMISSION_DENIED", "Token was not issued for the ZeroBus direct write "
                    "API (resource api://databricks/workspaces/<id>/zerobusDirectWriteApi)")
        catalog, schema, _ = table_name.lower().split(".")
        if not (token.has("TABLE", table_name, ("SELECT", "MODIFY"))
                and token.has("SCHEMA", catalog + "." + schema, ("USE SCHEMA",))
                and token.has("CATALOG", catalog, ("USE CATALOG",))):
            return ("PERMISSION_DENIED", "Token does not grant SELECT and MODIFY on table %s "
                    "with USE SCHEMA and USE CATALOG" % table_name)
        return None

    def check_sql(self, text):
        """Check an SQL-API bearer token: None if fine, else (HTTP status, message)."""
        token = self.lookup(text) if text else None
        if token is None:
            return (401, "Invalid access token." if text else "Missing bearer token.")
        if token.kind != KIND_SQL:
            return (403, "Token is scoped to the ZeroBus direct write API and cannot call the "
                    "SQL Statement Execution API.")
        return None


def parse_authorization_details(text):
    """Parse the ``authorization_details`` JSON array into {(type, path): privileges}."""
    try:
        details = json.loads(text)
    except ValueError as exc:
        raise OAuthError(400, "invalid_request",
                         "authorization_details is not valid JSON: %s" % exc) from None
    if not isinstance(details, list) or not details:
        raise OAuthError(400, "invalid_request", "authorization_details must be a non-empty "
                         "JSON array")
    grants = {}
    for index, item in enumerate(details):
        where = "authorization_details[%d]" % index
        if not isinstance(item, dict):
            raise OAuthError(400, "invalid_request", where + " must be an object")
        if item.get("type") != "unity_catalog_privileges":
            raise OAuthError(400, "invalid_request",
                             where + ".type must be unity_catalog_privileges")
        privileges = item.get("privileges")
        if not isinstance(privileges, list) or not privileges or \
                not all(isinstance(p, str) for p in privileges):
            raise OAuthError(400, "invalid_request",
                             where + ".privileges must be a list of strings")
        object_type = item.get("object_type")
        if object_type not in OBJECT_PARTS:
            raise OAuthError(400, "invalid_request",
                             where + ".object_type must be CATALOG, SCHEMA or TABLE")
        path = item.get("object_full_path")
        if not isinstance(path, str) or len(path.split(".")) != OBJECT_PARTS[object_type]:
            raise OAuthError(400, "invalid_request", where + ".object_full_path %r does not "
                             "name a %s" % (path, object_type.lower()))
        key = (object_type, path.lower())
        grants[key] = grants.get(key, set()) | {p.upper() for p in privileges}
    return grants
