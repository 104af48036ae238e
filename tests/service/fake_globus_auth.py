"""A local stand-in for Globus Auth: the two OAuth2 endpoints the fabric uses, on 127.0.0.1.

* ``POST /v2/oauth2/token/introspect`` (HTTP basic auth of the service's confidential
  client): the answer registered for the token with ``add_token``, else ``{"active": false}``.
* ``POST /v2/oauth2/token``: ``grant_type=client_credentials`` (basic auth of a client
  added with ``add_client``) and ``grant_type=authorization_code`` (a native app's
  ``code`` from ``add_code``, with its PKCE ``code_verifier``); each issues a new active
  token for the requested scope.

globus-sdk is pointed here with ``GLOBUS_SDK_SERVICE_URL_AUTH=fake.url``. Every request is
counted per path in ``requests``. The server runs on a thread of the test process; ``stop``
closes its port (so a service asking it later gets "connection refused").
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

INTROSPECT = "/v2/oauth2/token/introspect"
TOKEN = "/v2/oauth2/token"


class FakeGlobusAuth:
    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.tokens: dict[str, dict[str, Any]] = {}
        self.clients: dict[str, tuple[str, str]] = {}  # confidential client id -> (secret, identity)
        self.codes: dict[str, tuple[str, str]] = {}  # authorization code -> (identity, scope it grants)
        self.verifiers: list[str] = []  # PKCE code_verifiers the code exchanges carried
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-globus-auth", daemon=True)
        self.thread.start()

    # -- what the tests set up -----------------------------------------------------------
    def add_token(self, scope: str, sub: str, *, username: str | None = None, active: bool = True,
                  expires_in: float = 3600.0) -> str:
        token = secrets.token_urlsafe(24)
        answer: dict[str, Any] = {"active": active}
        if active:
            answer.update(scope=scope, sub=sub, username=username or f"{sub}@example.org",
                          exp=int(time.time() + expires_in), client_id=self.client_id, token_type="Bearer")
        self.tokens[token] = answer
        return token

    def add_client(self, client_id: str, secret: str, identity: str) -> None:
        self.clients[client_id] = (secret, identity)

    def add_code(self, code: str, identity: str, scope: str) -> None:
        """A code the user got by consenting to ``scope`` in the browser (``fabric login --globus``)."""
        self.codes[code] = (identity, scope)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    # -- the HTTP side ---------------------------------------------------------------------
    def _basic_client(self, header: str | None) -> tuple[str, str] | None:
        if not header or not header.startswith("Basic "):
            return None
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return client_id, secret

    def _answer(self, path: str, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests[path] += 1
        client = self._basic_client(authorization)
        if path == INTROSPECT:
            if client != (self.client_id, self.client_secret):
                return 401, {"error": "invalid_client"}
            return 200, self.tokens.get(form.get("token", ""), {"active": False})
        if path == TOKEN:
            return self._grant(form, client)
        return 404, {"error": "not_found"}

    def _grant(self, form: dict[str, str], client: tuple[str, str] | None) -> tuple[int, dict[str, Any]]:
        grant, scope = form.get("grant_type"), form.get("scope", "")
        if grant == "client_credentials":
            if client is None or self.clients.get(client[0], ("", ""))[0] != client[1] or not client[1]:
                return 401, {"error": "invalid_client"}
            identity = self.clients[client[0]][1]
        elif grant == "authorization_code":
            identity, scope = self.codes.pop(form.get("code", ""), ("", ""))
            if not identity or not form.get("code_verifier"):
                return 400, {"error": "invalid_grant"}
            self.verifiers.append(form["code_verifier"])
        else:
            return 400, {"error": "unsupported_grant_type"}
        token = self.add_token(scope, identity)
        return 200, {"access_token": token, "scope": scope, "expires_in": 3600, "token_type": "Bearer",
                     "resource_server": "fabric-service", "other_tokens": []}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                form = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
                status, answer = fake._answer(urllib.parse.urlsplit(self.path).path, form,
                                              self.headers.get("Authorization"))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        return Handler
