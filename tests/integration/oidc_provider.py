"""A small OpenID Connect provider for the tests, run in the test process on a free port.

It does what a real provider does on the authorization code flow with PKCE: discovery, a JWKS of its own
RSA key, ``/authorize`` (no login form: it signs in ``provider.user``, who a test sets, and sends the
browser back with a one-time code), and ``/token`` (checks the client's secret, the redirect URI and
the PKCE verifier, then answers an RS256 ID token with the nonce). Nothing here is mocked on vipflow's
side: vipflow talks to it over real HTTP, and the browser is really redirected through it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey


class Provider:
    """The provider's state: its key, client, codes issued, and who signs in next."""

    def __init__(self, client_id: str, client_secret: str):
        self.client_id, self.client_secret = client_id, client_secret
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig", "alg": "RS256"})
        self.user: str | None = None  # preferred_username of whoever signs in next
        self.codes: dict[str, dict[str, Any]] = {}
        self.issuer = ""
        self.tokens_issued = 0

    def id_token(self, grant: dict[str, Any]) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": f"sub-{grant['user']}", "aud": self.client_id, "iat": now,
                  "exp": now + 300, "nonce": grant["nonce"], "preferred_username": grant["user"]}
        return jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, self.key)


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/.well-known/openid-configuration":
                self._json(200, {"issuer": provider.issuer, "authorization_endpoint": f"{provider.issuer}/authorize",
                                 "token_endpoint": f"{provider.issuer}/token", "jwks_uri": f"{provider.issuer}/jwks",
                                 "response_types_supported": ["code"], "subject_types_supported": ["public"],
                                 "id_token_signing_alg_values_supported": ["RS256"],
                                 "code_challenge_methods_supported": ["S256"]})
            elif url.path == "/jwks":
                self._json(200, KeySet([provider.key]).as_dict(private=False))
            elif url.path == "/authorize":
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                ok = (q.get("client_id") == provider.client_id and q.get("response_type") == "code"
                      and "openid" in q.get("scope", "").split() and q.get("code_challenge_method") == "S256"
                      and provider.user is not None)
                if not ok:
                    self._json(400, {"error": "invalid_request"})
                    return
                code = secrets.token_urlsafe(16)
                provider.codes[code] = {"user": provider.user, "nonce": q.get("nonce"),
                                        "challenge": q.get("code_challenge"), "redirect_uri": q.get("redirect_uri")}
                self.send_response(302)
                self.send_header("Location", f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}")
                self.end_headers()
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            form = {k: v[0] for k, v in parse_qs(body).items()}
            basic = self.headers.get("Authorization", "")
            expected = "Basic " + base64.b64encode(f"{provider.client_id}:{provider.client_secret}".encode()).decode()
            if urlparse(self.path).path != "/token" or basic != expected:
                self._json(401, {"error": "invalid_client"})
                return
            grant = provider.codes.pop(form.get("code", ""), None)  # a code is good once
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if grant is None or grant["challenge"] != challenge or grant["redirect_uri"] != form.get("redirect_uri"):
                self._json(400, {"error": "invalid_grant"})
                return
            provider.tokens_issued += 1
            self._json(200, {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 300,
                             "id_token": provider.id_token(grant)})

    return Handler


@contextmanager
def running_provider(client_id: str, client_secret: str) -> Iterator[Provider]:
    """The provider on a free port of 127.0.0.1 (``provider.issuer`` is its URL), stopped afterwards."""
    provider = Provider(client_id, client_secret)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider))
    provider.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
