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


class _Counting:
    """Counts calls of worker.tokens.verify (the full check: PyJWT's decoding and HMAC)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        import worker.tokens

        self.calls = 0
        real = worker.tokens.verify

        def counting(*args: object, **kwargs: object) -> object:
            self.calls += 1
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(worker.tokens, "verify", counting)


def test_an_accepted_token_is_not_verified_again_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same bearer token twice: one full verification; past its exp (plus the leeway) it is refused."""
    import time

    counted = _Counting(monkeypatch)
    a = Authenticator.from_settings(settings())
    issued = time.time()
    token = mint(KEY1, "", "vip-api", 600, now=issued)
    a.check("Bearer " + token)
    a.check("Bearer " + token)
    assert counted.calls == 1
    leeway = a.policy.leeway_s
    assert a.verified.verify(token, now=int(issued) + 600 + leeway - 0.001)["aud"] == "vip-api"
    with pytest.raises(TokenInvalid, match="not yet valid"):
        a.verified.verify(token, now=int(issued) - leeway - 1)
    with pytest.raises(TokenInvalid, match="expired"):
        a.verified.verify(token, now=int(issued) + 600 + leeway)  # PyJWT: expired when exp <= now - leeway
    assert token not in a.verified._kept  # an expired token is dropped
    assert counted.calls == 1


def test_a_refused_token_is_checked_every_time_and_keys_are_not_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals are not kept; a token kept by one Authenticator means nothing to one with other keys."""
    counted = _Counting(monkeypatch)
    a = Authenticator.from_settings(settings(issuer="vip"))
    wrong = mint(KEY1, "someone", "vip-api", 600)
    for _ in range(2):
        with pytest.raises(TokenInvalid, match="issuer"):
            a.check("Bearer " + wrong)
    assert counted.calls == 2
    token = mint(KEY1, "", "vip-api", 600)
    Authenticator.from_settings(settings()).check("Bearer " + token)
    other = Authenticator.from_settings(Settings(
        vip=VipSettings(secret_key1=base64.b64encode(CALLBACK).decode()), ingest=IngestSettings()))
    with pytest.raises(TokenInvalid, match="signature"):
        other.check("Bearer " + token)


def test_at_most_size_tokens_are_kept() -> None:
    """The oldest kept token goes first when the cache is full."""
    from worker.tokens import TokenPolicy, VerifiedTokens

    kept = VerifiedTokens((KEY1,), TokenPolicy("", "vip-api"), size=2)
    tokens = [mint(KEY1, "", "vip-api", 600 + i) for i in range(3)]
    for token in tokens:
        kept.verify(token)
    assert list(kept._kept) == tokens[1:]


def test_a_kept_token_expires_when_pyjwt_would_refuse_it() -> None:
    """Time claims with fractions of a second: PyJWT reads whole seconds (int of the claim), and so does
    the kept token's check, for exp, nbf and iat alike (found by a new user's trial: a kept token with
    exp n+2.9 was accepted at n+2.5)."""
    import time

    import jwt

    from worker.tokens import TokenPolicy, VerifiedTokens

    policy = TokenPolicy("", "vip-api", leeway_s=0)
    n = int(time.time())
    token = jwt.encode({"aud": "vip-api", "nbf": n - 10.5, "iat": n - 0.5, "exp": n + 30.9}, KEY1,
                       algorithm="HS256")
    kept = VerifiedTokens((KEY1,), policy)
    kept.verify(token)  # now: between n and n + 30
    assert kept._kept[token][1:] == (n - 1, n + 30)  # not before: int(iat), the later of nbf and iat
    assert kept.verify(token, now=n + 29.9)["aud"] == "vip-api"
    with pytest.raises(TokenInvalid, match="not yet valid"):
        kept.verify(token, now=n - 1.5)
    with pytest.raises(TokenInvalid, match="expired"):
        kept.verify(token, now=n + 30.5)  # int(exp) = n + 30: PyJWT refuses from n + 30 on
    assert token not in kept._kept
