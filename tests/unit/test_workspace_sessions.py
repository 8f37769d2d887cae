"""Workspace sessions (producers.web.workspace.session): a session ends past its age or idle time, when
its user is disabled or reset, and CSRF tokens are compared exactly; failed logins are bounded in Redis."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from producers.web.workspace.session import LoginLimiter, LoginNeeded, PageError, Sessions, check_csrf, csrf_token
from worker.config import Settings, WebSettings
from worker.ledger import Ledger
from worker.ledger.users import UserStore
from worker.review_roles import Role

PASSWORD = "correct horse battery"


def request(session: dict[str, Any], path: str = "/queue") -> Any:
    from starlette.requests import Request

    return Request({"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": [],
                    "session": session})


@pytest.fixture
def sessions(ledger: Ledger) -> Sessions:
    users = UserStore(ledger.engine)
    users.add("alice", Role.REVIEWER, PASSWORD, "os:test")
    return Sessions(Settings(web=WebSettings(session_max_age_s=3600, session_idle_s=600)), users)


def opened(sessions: Sessions) -> dict[str, Any]:
    user = sessions.users.get("alice")
    assert user is not None
    req = request({"csrf": "anonymous-token" * 3})
    sessions.open(req, user)
    return dict(req.session)


def test_a_live_session_gives_its_user(sessions: Sessions) -> None:
    """A fresh session answers its user and renews its last-seen time; the anonymous CSRF token is replaced."""
    session = opened(sessions)
    assert session["csrf"] != "anonymous-token" * 3
    req = request(session)
    assert sessions.current(req).username == "alice"
    assert req.session["seen_at"] >= session["seen_at"]


@pytest.mark.parametrize(("shift", "why"), [({"login_at": -3601, "seen_at": -1}, "logged in too long ago"),
                                            ({"seen_at": -601}, "without use")])
def test_an_old_or_idle_session_ends(sessions: Sessions, shift: dict[str, float], why: str) -> None:
    """Past web.session_max_age_s since login, or web.session_idle_s since the last request: log in again."""
    session = opened(sessions)
    for key, delta in shift.items():
        session[key] = time.time() + delta
    req = request(session, "/tx/abc")
    with pytest.raises(LoginNeeded, match=why) as caught:
        sessions.current(req)
    assert caught.value.next_path == "/tx/abc" and req.session == {}


@pytest.mark.parametrize("change", ["disable", "reset"])
def test_disabling_or_resetting_the_user_ends_the_session(sessions: Sessions, change: str) -> None:
    """The session's epoch is older than the user's after a disable or a reset."""
    session = opened(sessions)
    if change == "disable":
        sessions.users.disable("alice", "user:admin")
    else:
        sessions.users.reset("alice", "another long passphrase", "user:admin")
    with pytest.raises(LoginNeeded, match="changed or disabled"):
        sessions.current(request(session))


def test_no_session_means_login() -> None:
    """Without a user in the session, the person is sent to log in."""
    with pytest.raises(LoginNeeded):
        Sessions(Settings(), None).current(request({}))  # type: ignore[arg-type]


def test_csrf_is_the_sessions_token_exactly() -> None:
    """Missing, empty or another token: 403; the session's own passes."""
    req = request({})
    token = csrf_token(req)
    assert len(token) >= 32 and csrf_token(req) == token
    check_csrf(req, token)
    for sent in (None, "", token[:-1], token + "x"):
        with pytest.raises(PageError) as caught:
            check_csrf(req, sent)
        assert caught.value.status == 403


def test_failed_logins_are_bounded_per_name_and_expire(redis_url: str) -> None:
    """Three failures block the name (not another name); the counters expire with the window; a success
    clears the name's count."""
    client = redis.Redis.from_url(redis_url)
    limiter = LoginLimiter(client, "lt", max_failures=3, window_s=120, max_per_address=10)
    for _ in range(3):
        assert limiter.blocked("alice", "10.0.0.1") is None
        limiter.failed("alice", "10.0.0.1")
    wait = limiter.blocked("alice", "10.0.0.1")
    assert wait is not None and 0 < wait <= 120
    assert limiter.blocked("bob", "10.0.0.2") is None
    assert all(0 < client.ttl(k) <= 120 for k in client.keys("lt:login:*"))
    assert not any(b"alice" in k or b"10.0.0.1" in k for k in client.keys("lt:login:*"))  # digests only
    limiter.succeeded("alice")
    assert limiter.blocked("alice", "10.0.0.9") is None
    client.close()
