"""The operator site's API tokens: bearer tokens stored only as a sha256, scoped, revocable, every use kept.

A token is 32 random bytes (``secrets.token_urlsafe``) behind a ``vf_`` prefix: high entropy, so a
plain sha256 is the right hash (a slow password hash such as argon2 protects guessable secrets, and
would cost every API call tens of milliseconds). The token is returned once, by :meth:`create`;
the ledger keeps its hash, name, scopes and who created and revoked it, and one row per use.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from worker.errors import LedgerError
from worker.ledger import tables as t
from worker.ledger.commit import unavailable

SCOPES = ("sessions", "status", "labels")
PREFIX = "vf_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class TokenRefused(LedgerError):
    """A token could not be created or revoked (bad name or scope, a name in use, no such token)."""


@dataclass(frozen=True)
class ApiToken:
    """A token as listed: never the token itself. Times epoch seconds."""

    name: str
    scopes: tuple[str, ...]
    created_at: float
    created_by: str
    revoked_at: float | None = None
    revoked_by: str | None = None
    last_used_at: float | None = None
    uses: int = 0


def digest(token: str) -> str:
    """The sha256 (hex) a token is stored as."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The scopes, deduplicated in the canonical order; TokenRefused naming an unknown one."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise TokenRefused(f"scope {unknown[0] if unknown else '(none)'!r} is not one of: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in scopes)


class TokenStore:
    """API tokens on the ledger's engine. Database failures raise LedgerUnavailable."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def create(self, name: str, scopes: list[str] | tuple[str, ...], actor: str) -> str:
        """A new token named ``name`` with ``scopes``; returns the token (the only time it is seen)."""
        if not _NAME.fullmatch(name):
            raise TokenRefused(f"token name {name!r}: use 1 to 100 letters, digits, '.', '_' or '-'")
        canonical = check_scopes(scopes)
        token = PREFIX + secrets.token_urlsafe(32)
        row = {"name": name, "token_sha256": digest(token), "scopes": " ".join(canonical),
               "created_at": time.time(), "created_by": actor}
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(t.api_tokens).values(**row))
        except IntegrityError:
            raise TokenRefused(f"a token named {name!r} exists already; revoke it or pick another name") from None
        except SQLAlchemyError as exc:
            raise unavailable("create the token", exc) from None
        return token

    def revoke(self, name: str, actor: str) -> None:
        """Revoke ``name`` (a second revoke changes nothing); TokenRefused when there is no such token."""
        c = t.api_tokens.c
        try:
            with self.engine.begin() as conn:
                found = conn.execute(select(c.revoked_at).where(c.name == name)).first()
                if found is None:
                    raise TokenRefused(f"no token named {name!r} (see `vipflow tokens list`)")
                if found.revoked_at is None:
                    conn.execute(update(t.api_tokens).where(c.name == name)
                                 .values(revoked_at=time.time(), revoked_by=actor))
        except SQLAlchemyError as exc:
            raise unavailable("revoke the token", exc) from None

    def authenticate(self, token: str) -> ApiToken | None:
        """The live (not revoked) token that ``token`` is, or None."""
        if not token.startswith(PREFIX):
            return None
        wanted = digest(token)
        c = t.api_tokens.c
        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(t.api_tokens).where(c.token_sha256 == wanted)).first()
        except SQLAlchemyError as exc:
            raise unavailable("check an API token", exc) from None
        # The lookup is by an index on the hash; compare again in constant time all the same.
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_sha256, wanted):
            return None
        return ApiToken(row.name, tuple(row.scopes.split()), row.created_at, row.created_by)

    def record_use(self, name: str, method: str, route: str, status: int) -> None:
        """Keep one use of token ``name``: the method, the route's template and the answer's status."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(t.api_token_uses).values(token_name=name, at=time.time(), method=method[:8],
                                                             route=route[:200], status=status))
        except SQLAlchemyError as exc:
            raise unavailable("record the token's use", exc) from None

    def listing(self) -> list[ApiToken]:
        """Every token (revoked ones too), by name, with its use count and last use."""
        from sqlalchemy import func

        u = t.api_token_uses.c
        uses = (select(u.token_name, func.count().label("uses"), func.max(u.at).label("last"))
                .group_by(u.token_name).subquery())
        c = t.api_tokens.c
        q = (select(t.api_tokens, uses.c.uses, uses.c.last)
             .outerjoin(uses, uses.c.token_name == c.name).order_by(c.name))
        try:
            with self.engine.connect() as conn:
                rows = list(conn.execute(q))
        except SQLAlchemyError as exc:
            raise unavailable("list the tokens", exc) from None
        return [ApiToken(r.name, tuple(r.scopes.split()), r.created_at, r.created_by, r.revoked_at, r.revoked_by,
                         r.last, int(r.uses or 0)) for r in rows]
