"""The ingestor's Authenticator: which keys it trusts and when it checks at all."""

from __future__ import annotations

import base64

import pytest

from producers.ingest.auth import Authenticator, TokenInvalid
from worker.config import IngestAuthSettings, IngestSettings, Settings, VipSettings
from worker.tokens import mint

KEY1 = b"secret-key-one-0123456789abcdef!"
CALLBACK = b"callback-key-0123456789abcdef!!!"


def settings(**auth: object) -> Settings:
    return Settings(
        vip=VipSettings(secret_key1=base64.b64encode(KEY1).decode()),
        ingest=IngestSettings(auth=IngestAuthSettings(**auth)),
    )


def test_trusts_secret_key1_and_the_callback_key() -> None:
    """The keys are SecretKey1/2 first, then the base64-decoded callback key."""
    a = Authenticator.from_settings(settings(callback_key=base64.b64encode(CALLBACK).decode()))
    assert a.keys == (KEY1, CALLBACK)


def test_token_signed_with_callback_key_passes() -> None:
    """A token signed with the callback key and the configured issuer is accepted."""
    a = Authenticator.from_settings(
        settings(callback_key=base64.b64encode(CALLBACK).decode(), issuer="vip")
    )
    a.check("Bearer " + mint(CALLBACK, "vip", "vip-api", 600))


def test_wrong_issuer_is_refused() -> None:
    """A token whose issuer is not the configured one is refused with a reason."""
    a = Authenticator.from_settings(settings(issuer="vip"))
    with pytest.raises(TokenInvalid, match="issuer"):
        a.check("Bearer " + mint(KEY1, "someone", "vip-api", 600))


def test_missing_header_is_refused_in_jwt_mode() -> None:
    """Without an Authorization header, jwt mode refuses."""
    with pytest.raises(TokenInvalid, match="missing"):
        Authenticator.from_settings(settings()).check(None)


def test_mode_none_checks_nothing() -> None:
    """Mode none (with allow_unauthenticated) accepts a request without a header."""
    Authenticator.from_settings(settings(mode="none", allow_unauthenticated=True)).check(None)
