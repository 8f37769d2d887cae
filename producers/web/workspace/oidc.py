"""The review workspace's optional OpenID Connect login (``web.oidc``; off while ``issuer`` is empty).

The authorization code flow with PKCE (RFC 7636) and a nonce, as OpenID Connect Core 1.0 §3.1 has it:
``/login/oidc`` keeps a random state, nonce and code verifier in the session and sends the browser to
the provider (its endpoints from ``{issuer}/.well-known/openid-configuration``); the provider sends it
back to ``/login/oidc/callback`` with a code, which authlib exchanges for tokens at the token endpoint.
The ID token is checked with joserfc against the provider's JWKS: signature, ``iss`` (the configured
issuer), ``aud`` (the client id), ``exp``/``iat`` (with ``leeway_s``) and the nonce.

The provider says who the person is; vipflow says what they may do: the claim ``username_claim`` must
name an active workspace user (``vipflow users add NAME --role R --no-password``), whose role is
vipflow's own.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import requests

from worker.config import OidcSettings


class OidcFailed(Exception):
    """The single sign-on did not prove who the person is; the message says why (never a token)."""


class OidcClient:
    """One provider's client (discovery and keys cached for an hour)."""

    def __init__(self, settings: OidcSettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._meta: tuple[float, dict[str, Any]] | None = None

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document; OidcFailed when it cannot be read or names another issuer."""
        with self._lock:
            if self._meta is not None and time.monotonic() - self._meta[0] < 3600:
                return self._meta[1]
        issuer = self.settings.issuer.rstrip("/")
        meta = self._get(f"{issuer}/.well-known/openid-configuration", "the discovery document")
        if str(meta.get("issuer", "")).rstrip("/") != issuer:
            raise OidcFailed(f"the provider's discovery document names issuer {meta.get('issuer')!r}, not {issuer!r}")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(meta.get(key), str):
                raise OidcFailed(f"the provider's discovery document has no {key}")
        with self._lock:
            self._meta = (time.monotonic(), meta)
        return meta

    def _get(self, url: str, what: str) -> dict[str, Any]:
        try:
            answer = requests.get(url, timeout=self.settings.timeout_s)
            answer.raise_for_status()
            data = answer.json()
        except (requests.RequestException, ValueError) as exc:
            raise OidcFailed(f"cannot read {what} of the identity provider ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise OidcFailed(f"{what} of the identity provider is not a JSON object")
        return data

    def _session(self, redirect_uri: str) -> Any:
        from authlib.integrations.requests_client import OAuth2Session

        secret = self.settings.client_secret
        return OAuth2Session(self.settings.client_id, secret.get_secret_value() if secret else None,
                             scope=self.settings.scope, redirect_uri=redirect_uri, code_challenge_method="S256",
                             token_endpoint_auth_method="client_secret_basic" if secret else "none")

    def start(self, redirect_uri: str) -> tuple[str, dict[str, str]]:
        """The provider's authorization URL and what to keep in the session until the callback."""
        keep = {"state": secrets.token_urlsafe(24), "nonce": secrets.token_urlsafe(24),
                "verifier": secrets.token_urlsafe(48)}
        url, _ = self._session(redirect_uri).create_authorization_url(
            self.metadata()["authorization_endpoint"], state=keep["state"], nonce=keep["nonce"],
            code_verifier=keep["verifier"])
        return str(url), keep

    def finish(self, redirect_uri: str, code: str, kept: dict[str, str]) -> dict[str, Any]:
        """Exchange ``code`` and check the ID token; its claims. OidcFailed saying why otherwise."""
        from joserfc import jwt
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        meta = self.metadata()
        try:
            token = self._session(redirect_uri).fetch_token(meta["token_endpoint"], code=code,
                                                            code_verifier=kept["verifier"],
                                                            timeout=self.settings.timeout_s)
        except Exception as exc:  # noqa: BLE001 - authlib raises its own, requests' and ValueError: all "refused"
            raise OidcFailed(f"the identity provider refused the code ({type(exc).__name__})") from None
        id_token = token.get("id_token") if isinstance(token, dict) else None
        if not isinstance(id_token, str):
            raise OidcFailed("the identity provider sent no ID token")
        keys = KeySet.import_key_set(self._get(meta["jwks_uri"], "the signing keys"))  # type: ignore[arg-type]
        try:
            decoded = jwt.decode(id_token, keys, algorithms=["RS256", "ES256", "PS256"])
            registry = jwt.JWTClaimsRegistry(
                leeway=self.settings.leeway_s, iss={"essential": True, "value": str(meta["issuer"])},
                aud={"essential": True, "value": self.settings.client_id}, exp={"essential": True},
                sub={"essential": True}, nonce={"essential": True, "value": kept["nonce"]})
            registry.validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise OidcFailed(f"the ID token did not check out ({type(exc).__name__}: {exc})") from None
        return dict(decoded.claims)
