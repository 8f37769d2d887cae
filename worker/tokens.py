"""VIP Connect's JWTs: minting the operator's bearer tokens and verifying callbacks.

Both directions use HS256 with a base64-decoded shared key (SecretKey1 or
SecretKey2, either accepted so that keys can be rotated). The algorithm is
pinned: a token that names any other algorithm, ``none`` included, is refused.

``exp``, ``nbf`` and ``aud`` are required (and ``iss`` when an issuer is set);
``iat`` is optional, because VIP's own sample token generators differ: one sets
``iat`` with ``nbf`` five minutes back, another omits ``iat`` and sets ``nbf``
five seconds ahead. A token's lifetime (``exp`` minus ``iat``, or minus ``nbf``
without ``iat``) past the policy's ``max_lifetime_s`` is refused.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("exp", "nbf", "aud")


def _required(policy: TokenPolicy) -> list[str]:
    return [*REQUIRED_CLAIMS, "iss"] if policy.issuer else list(REQUIRED_CLAIMS)


class TokenInvalid(Exception):
    """A bearer token failed verification; the message is a one-line reason, no token in it."""


@dataclass(frozen=True)
class TokenPolicy:
    """What a valid token must carry: issuer, audience, and the allowed clock skew."""

    issuer: str
    audience: str
    leeway_s: int = 60
    max_lifetime_s: int | None = None  # exp - (iat, else nbf); None: no bound


def mint(key: bytes, issuer: str, audience: str, ttl_s: int, now: float | None = None) -> str:
    """Sign an HS256 token with iss, aud, nbf, iat and exp, valid for ``ttl_s`` seconds."""
    t = int(now if now is not None else time.time())
    claims = {"iss": issuer, "aud": audience, "iat": t, "nbf": t, "exp": t + ttl_s}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify(token: str, keys: Sequence[bytes], policy: TokenPolicy) -> dict[str, Any]:
    """Return the claims of a token signed with one of ``keys``; raise TokenInvalid otherwise."""
    if not keys:
        raise TokenInvalid("no verification key is configured")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenInvalid("malformed bearer token") from None
    if header.get("alg") != ALGORITHM:
        raise TokenInvalid(f"token algorithm must be {ALGORITHM}")
    last: jwt.PyJWTError | None = None
    for key in keys:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=policy.audience,
                issuer=policy.issuer or None,
                leeway=policy.leeway_s,
                options={"require": _required(policy)},
            )
        except jwt.InvalidSignatureError as exc:
            last = exc
            continue
        except jwt.ExpiredSignatureError:
            raise TokenInvalid("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenInvalid("token is not yet valid (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise TokenInvalid("token audience does not match") from None
        except jwt.InvalidIssuerError:
            raise TokenInvalid("token issuer does not match") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenInvalid(f"token lacks the required claim '{exc.claim}'") from None
        except jwt.PyJWTError:
            raise TokenInvalid("malformed bearer token") from None
        _check_lifetime(claims, policy)
        return claims
    assert last is not None
    raise TokenInvalid("token signature does not match any configured key")


class VerifiedTokens:
    """Tokens that :func:`verify` accepted, kept until they expire, so that a sender reusing its bearer
    token (vipflow's own :class:`TokenCache` does, for minutes; VIP's sample apps give tokens lifetimes of
    20-33 minutes) is not verified in full on every request: PyJWT's decoding and HMAC were 15-17 % of the
    ingestor's CPU per notification.

    Only accepted tokens are kept (a refused one is verified again every time), at most ``size`` of
    them (the oldest goes first), for one set of keys and one policy: build one per ``Authenticator``,
    which is rebuilt with the settings. On a hit the time claims are checked again as PyJWT checks them
    (in whole seconds: valid from ``nbf`` and ``iat`` minus the leeway until before ``exp`` plus the
    leeway), so a kept token expires exactly when it would have. Tokens are bearer secrets: they are
    kept in memory only, never logged.
    """

    def __init__(self, keys: Sequence[bytes], policy: TokenPolicy, size: int = 256):
        self._keys, self._policy, self._size = tuple(keys), policy, size
        self._kept: dict[str, tuple[dict[str, Any], int, int]] = {}  # token -> (claims, not before, exp)

    def verify(self, token: str, now: float | None = None) -> dict[str, Any]:
        """The claims of ``token`` (a copy), from the kept ones or from :func:`verify`; TokenInvalid as
        :func:`verify` raises it, or "token has expired" / "token is not yet valid" for a kept one whose
        time has passed (``now``: epoch seconds, for tests)."""
        kept = self._kept.get(token)
        if kept is not None:
            claims, nbf, exp = kept
            t = time.time() if now is None else now
            leeway = self._policy.leeway_s
            if t >= exp + leeway:
                self._kept.pop(token, None)
                raise TokenInvalid("token has expired")
            if t < nbf - leeway:
                raise TokenInvalid("token is not yet valid (nbf/iat in the future)")
            return dict(claims)
        claims = verify(token, self._keys, self._policy)
        try:
            # As PyJWT reads them (whole seconds, int() of the claim), iat counting as a not-before too.
            exp = int(claims["exp"])
            nbf = max(int(claims["nbf"]), int(claims["iat"])) if "iat" in claims else int(claims["nbf"])
        except (KeyError, TypeError, ValueError, OverflowError):
            return claims  # PyJWT accepted time claims of a shape not kept here: verified every time
        if len(self._kept) >= self._size:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):  # changed meanwhile by another thread
                self._kept.pop(next(iter(self._kept)))
        self._kept[token] = (dict(claims), nbf, exp)
        return claims


def _check_lifetime(claims: dict[str, Any], policy: TokenPolicy) -> None:
    """TokenInvalid when exp minus iat (or nbf, without iat) exceeds the policy's bound."""
    if policy.max_lifetime_s is None:
        return
    start: Any = claims.get("iat", claims.get("nbf"))
    try:
        lifetime = int(claims["exp"]) - int(start)
    except (TypeError, ValueError):
        raise TokenInvalid("malformed bearer token (exp, iat or nbf is not a number)") from None
    if lifetime > policy.max_lifetime_s:
        raise TokenInvalid(f"token lifetime {lifetime} s exceeds ingest.auth.max_token_lifetime_s "
                           f"({policy.max_lifetime_s} s); sign tokens that live less long")


class TokenCache:
    """Mints the operator's token once and reuses it until shortly before it expires."""

    def __init__(self, key: bytes, issuer: str, audience: str, ttl_s: int, margin_s: int = 30):
        self._key, self._issuer, self._audience = key, issuer, audience
        self._ttl_s = ttl_s
        self._margin_s = min(margin_s, ttl_s // 2)
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        """A token with at least the margin of its lifetime left."""
        with self._lock:
            now = time.time()
            if self._token is None or now >= self._expires - self._margin_s:
                self._token = mint(self._key, self._issuer, self._audience, self._ttl_s, now)
                self._expires = int(now) + self._ttl_s
            return self._token


def bearer(header_value: str | None) -> str:
    """The token of an ``Authorization: Bearer ...`` header; TokenInvalid when absent or malformed."""
    if not header_value:
        raise TokenInvalid("missing Authorization bearer token")
    scheme, _, token = header_value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenInvalid("Authorization header is not 'Bearer <token>'")
    return token.strip()
