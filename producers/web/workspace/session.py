"""Who is logged in to the review workspace: cookie sessions, CSRF tokens and the login rate limit.

The session is Starlette's signed cookie (itsdangerous; HttpOnly, SameSite=Lax, Secure with
``web.cookie_secure``) holding the user name, the user's ``session_epoch`` when signed in, the login
time, the time of the last request and a CSRF token. Each request reads the user again from the
ledger: a disabled user, or one whose password was reset since (a higher epoch), is logged out at
once; so is a session older than ``web.session_max_age_s`` or idle past ``web.session_idle_s``.

Every form carries the session's CSRF token (synchroniser token pattern, OWASP); a POST without it, or
with another, is refused with 403 before anything is done. Failed logins are counted in Redis per user
name and per client address, both only as sha256 digests (``worker.store.keys.login_failures``),
in a window of ``web.login_window_s``; past ``web.login_max_failures`` for a name (or
``web.login_max_failures_per_address`` for an address) logins are refused (429) until the window
passes, the right password included.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from worker.config import Settings
from worker.ledger.users import User, UserStore
from worker.store import keys


class PageError(Exception):
    """A page cannot be served: ``status`` and one line for the person (never personal data)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class LoginNeeded(Exception):
    """No live session: the person is sent to the login page, and back to ``next`` after it."""

    def __init__(self, next_path: str, why: str | None = None):
        super().__init__(why or "log in")
        self.next_path, self.why = next_path, why


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def check_csrf(request: Request, sent: str | None) -> None:
    """PageError 403 unless ``sent`` is the session's CSRF token."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or not sent or not hmac.compare_digest(token.encode(), sent.encode()):
        raise PageError(403, "the form's security token is missing or out of date (CSRF check); nothing was "
                             "done: reload the page and try again")


@dataclass(frozen=True)
class Sessions:
    """Opens, checks and ends sessions for one app."""

    settings: Settings
    users: UserStore

    def current(self, request: Request) -> User:
        """The logged-in user; LoginNeeded (session cleared) when there is no live session."""
        s = request.session
        name, now = s.get("user"), time.time()
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if not isinstance(name, str):
            raise LoginNeeded(path)
        web = self.settings.web
        why = None
        if now - float(s.get("login_at", 0)) > web.session_max_age_s:
            why = "your session ended (logged in too long ago); log in again"
        elif now - float(s.get("seen_at", 0)) > web.session_idle_s:
            why = "your session ended after a while without use; log in again"
        user = None if why else self.users.get(name)
        if why is None and (user is None or not user.active or user.session_epoch != s.get("epoch")):
            why = "your session ended (your account was changed or disabled); log in again"
        if why is not None or user is None:
            s.clear()
            raise LoginNeeded(path, why)
        s["seen_at"] = now
        return user

    def open(self, request: Request, user: User) -> None:
        """A new session for ``user`` (a fresh CSRF token: nothing of the anonymous session is kept)."""
        now = time.time()
        request.session.clear()
        request.session.update({"user": user.username, "epoch": user.session_epoch, "login_at": now,
                                "seen_at": now, "csrf": secrets.token_urlsafe(32)})

    def close(self, request: Request) -> None:
        """End the session."""
        request.session.clear()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class LoginLimiter:
    """Failed-login counters in Redis (see the module docstring)."""

    redis: Any
    prefix: str
    max_failures: int  # per user name
    window_s: int
    max_per_address: int

    def _keys(self, username: str, address: str) -> list[str]:
        return [keys.login_failures(self.prefix, "user", _digest(username.lower())),
                keys.login_failures(self.prefix, "addr", _digest(address))]

    def blocked(self, username: str, address: str) -> int | None:
        """Seconds until a login may be tried again, or None when it may now."""
        names = self._keys(username, address)
        counts = self.redis.mget(names)
        for name, count, bound in zip(names, counts, (self.max_failures, self.max_per_address), strict=True):
            if count is not None and int(count) >= bound:
                return max(1, int(self.redis.ttl(name)))
        return None

    def failed(self, username: str, address: str) -> None:
        """Count one failure against the name and the address (each key expires with the window)."""
        pipe = self.redis.pipeline()
        for name in self._keys(username, address):
            pipe.set(name, 0, ex=self.window_s, nx=True)
            pipe.incr(name)
        pipe.execute()

    def succeeded(self, username: str) -> None:
        """Forget the name's failures (the address's stay until the window passes)."""
        self.redis.delete(self._keys(username, "")[0])


def safe_next(path: str) -> str:
    """Where to go after a login: only a path on this site (no scheme, no host, no ``//``), never an open
    redirect; ``/`` otherwise."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path or "\n" in path or "\r" in path:
        return "/"
    return path
