"""Who may post notifications: VIP Connect's bearer JWT, checked against the configured keys."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from worker.config import Settings
from worker.tokens import TokenInvalid, TokenPolicy, VerifiedTokens, bearer


@dataclass(frozen=True)
class Authenticator:
    """Checks an Authorization header; ``required`` is False only in mode ``none``."""

    required: bool
    keys: tuple[bytes, ...]
    policy: TokenPolicy
    # Tokens already accepted with these keys and this policy, until they expire (worker.tokens).
    verified: VerifiedTokens = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verified", VerifiedTokens(self.keys, self.policy))

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        """SecretKey1/2 plus the optional callback key, with the ingest issuer/audience/leeway/lifetime bound."""
        auth = settings.ingest.auth
        keys = list(settings.vip.signing_keys())
        if auth.callback_key is not None:
            keys.append(base64.b64decode(auth.callback_key.get_secret_value()))
        policy = TokenPolicy(auth.issuer, auth.audience, auth.leeway_s, auth.max_token_lifetime_s)
        return cls(required=auth.mode == "jwt", keys=tuple(keys), policy=policy)

    def check(self, header: str | None) -> None:
        """Return when the request may be accepted; else TokenInvalid with a one-line reason."""
        if not self.required:
            return
        self.verified.verify(bearer(header))


__all__ = ["Authenticator", "TokenInvalid"]
