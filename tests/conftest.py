"""Shared fixtures: a real Redis, flushed per test.

The Redis used by tests is ``$VIPFLOW_TEST_REDIS_URL`` (default db 15 on the
local server, so a developer's db 0 is never flushed). With none reachable, a
test that needs it fails under CI (``CI`` set) and is skipped elsewhere, saying so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEST_REDIS_URL = os.environ.get("VIPFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


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
