"""The review workspace's users in the ledger: argon2id password hashes, roles, limits, disabling.

A password is kept only as an argon2id hash (argon2-cffi's defaults, RFC 9106's second recommended
profile); a login with an unknown name still spends one hash (against a dummy), so its time does not
tell which names exist. ``session_epoch`` grows on every reset or disable: a session cookie carries
the epoch it was signed in, and one older than the user's is no longer honoured.

Acts on users (add, disable, reset) and logins are kept in ``workspace_events`` with their actor:
append-only, and listed by the audit page beside the human events of transactions.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from worker.errors import InputError
from worker.ledger import tables as t
from worker.ledger.commit import unavailable
from worker.review_roles import Reviewer, Role, check_limit

_NAME = re.compile(r"[a-z][a-z0-9._-]{1,63}")
MIN_PASSWORD = 12
_HASHER = PasswordHasher()
_DUMMY = _HASHER.hash("vipflow: a password nobody has")


class UserRefused(InputError):
    """A user could not be added, changed or found (bad name, role or password; a name in use; no such user)."""


@dataclass(frozen=True)
class User:
    """A workspace user as listed (never the hash). Amounts in dollars; times epoch seconds."""

    username: str
    role: Role
    review_limit: Decimal | None
    session_epoch: int
    created_at: float
    created_by: str
    disabled_at: float | None = None
    has_password: bool = True

    @property
    def actor(self) -> str:
        """How the ledger records this user's acts."""
        return f"user:{self.username}"

    @property
    def active(self) -> bool:
        """False once disabled."""
        return self.disabled_at is None

    def reviewer(self) -> Reviewer:
        """The user as the role checks see them."""
        return Reviewer(self.actor, self.role, self.review_limit)


def check_name(name: str) -> str:
    """A user name: 2 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter."""
    if not _NAME.fullmatch(name or ""):
        raise UserRefused(f"user name {name!r}: use 2 to 64 lower-case letters, digits, '.', '_' or '-', "
                          "starting with a letter")
    return name


def check_password(password: str) -> str:
    """A password of at least 12 characters (NIST SP 800-63B: length over composition rules)."""
    if len(password or "") < MIN_PASSWORD:
        raise UserRefused(f"a password needs at least {MIN_PASSWORD} characters")
    return password


def _user(row: Any) -> User:
    return User(row.username, Role(row.role), Decimal(row.review_limit) if row.review_limit is not None else None,
                int(row.session_epoch), row.created_at, row.created_by, row.disabled_at, row.password_hash is not None)


class UserStore:
    """Users and workspace events on the ledger's engine. Database failures raise LedgerUnavailable."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def add(self, username: str, role: Role, password: str | None, actor: str, *,
            limit: Decimal | None = None) -> User:
        """A new user; UserRefused when the name is taken or the name or password is not acceptable.
        ``password`` None: no local password (the user logs in through OpenID Connect only). ``limit``
        (Decimal dollars) is a reviewer's own; InputError for another role or out of range (check_limit)."""
        check_name(username)
        check_limit(role, limit)
        if password is not None:
            check_password(password)
        now = time.time()
        row = {"username": username, "password_hash": _HASHER.hash(password) if password is not None else None,
               "role": role.value,
               "review_limit": limit, "session_epoch": 1, "created_at": now, "created_by": actor,
               "password_changed_at": now}
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(t.users).values(**row))
                self._event(conn, actor, "user_add", username,
                            {"role": role.value, "limit": None if limit is None else f"{limit:.2f}",
                             "local_password": password is not None})
        except IntegrityError:
            raise UserRefused(f"a user named {username!r} exists already; pick another name "
                              "(or `vipflow users reset` theirs)") from None
        except SQLAlchemyError as exc:
            raise unavailable("add the user", exc) from None
        found = self.get(username)
        assert found is not None
        return found

    def get(self, username: str) -> User | None:
        """The user named ``username`` (disabled too), or None."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(t.users).where(t.users.c.username == username)).first()
        except SQLAlchemyError as exc:
            raise unavailable("read a user", exc) from None
        return None if row is None else _user(row)

    def listing(self) -> list[User]:
        """Every user, by name."""
        try:
            with self.engine.connect() as conn:
                return [_user(r) for r in conn.execute(select(t.users).order_by(t.users.c.username))]
        except SQLAlchemyError as exc:
            raise unavailable("list the users", exc) from None

    def authenticate(self, username: str, password: str) -> User | None:
        """The active user whose password this is, or None (unknown, disabled, or a wrong password).
        Costs one argon2 verification whatever the answer."""
        c = t.users.c
        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(t.users).where(c.username == username)).first()
        except SQLAlchemyError as exc:
            raise unavailable("check a login", exc) from None
        stored = row.password_hash if row is not None and row.password_hash else _DUMMY
        try:
            _HASHER.verify(stored, password)
            good = row is not None and row.password_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            good = False
        if not good or row is None or row.disabled_at is not None:
            return None
        if _HASHER.check_needs_rehash(row.password_hash):  # the library's parameters grew: store anew
            self._set(username, password_hash=_HASHER.hash(password))
        return _user(row)

    def disable(self, username: str, actor: str) -> User:
        """Disable ``username`` (ending their sessions); a second disable changes nothing."""
        user = self.existing(username)
        if user.active:
            self._set(username, disabled_at=time.time(), disabled_by=actor,
                      session_epoch=t.users.c.session_epoch + 1, event=(actor, "user_disable", {}))
        return self.existing(username)

    def enable(self, username: str, actor: str) -> User:
        """Enable a disabled ``username`` again."""
        user = self.existing(username)
        if not user.active:
            self._set(username, disabled_at=None, disabled_by=None, event=(actor, "user_enable", {}))
        return self.existing(username)

    def reset(self, username: str, password: str, actor: str, *, role: Role | None = None,
              limit: Decimal | None = None) -> User:
        """Set a new password (and optionally role or limit) for ``username``, ending their sessions.
        ``limit`` (Decimal dollars) only for a user who is (or becomes) a reviewer: InputError otherwise. A
        reviewer made senior, viewer or admin loses their own limit (a later reviewer gets the default)."""
        user = self.existing(username)
        check_limit(role or user.role, limit)
        check_password(password)
        values: dict[str, Any] = {"password_hash": _HASHER.hash(password), "password_changed_at": time.time(),
                                  "session_epoch": t.users.c.session_epoch + 1}
        changed: dict[str, Any] = {}
        if role is not None and role != user.role:
            values["role"] = changed["role"] = role.value
            if role != Role.REVIEWER and user.review_limit is not None:
                values["review_limit"] = changed["limit"] = None  # a limit binds reviewers only
        if limit is not None:
            values["review_limit"] = limit
            changed["limit"] = f"{limit:.2f}"
        self._set(username, **values, event=(actor, "user_reset", changed))
        return self.existing(username)

    def existing(self, username: str) -> User:
        """The user named ``username`` (disabled too); UserRefused naming ``vipflow users list`` when none."""
        user = self.get(username)
        if user is None:
            raise UserRefused(f"no user named {username!r} (see `vipflow users list`)")
        return user

    def _set(self, username: str, event: tuple[str, str, dict[str, Any]] | None = None, **values: Any) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(update(t.users).where(t.users.c.username == username).values(**values))
                if event is not None:
                    self._event(conn, event[0], event[1], username, event[2])
        except SQLAlchemyError as exc:
            raise unavailable("change the user", exc) from None

    def record(self, actor: str, action: str, subject: str | None = None,
               data: dict[str, Any] | None = None) -> None:
        """Keep one workspace event (a login, a refused login, a logout) with its actor."""
        try:
            with self.engine.begin() as conn:
                self._event(conn, actor, action, subject, data)
        except SQLAlchemyError as exc:
            raise unavailable("record the workspace event", exc) from None

    @staticmethod
    def _event(conn: Any, actor: str, action: str, subject: str | None, data: dict[str, Any] | None) -> None:
        conn.execute(insert(t.workspace_events).values(at=time.time(), actor=actor[:200], action=action[:32],
                                                       subject=(subject or None) and subject[:200], data=data))
