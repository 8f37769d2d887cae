"""Redis connections and key names shared by every part of the store."""

from __future__ import annotations

import redis

from worker.config import RedisSettings, Settings

# Short timeouts: a Redis that does not answer must turn into a 503 quickly,
# not a request that hangs until VIP Connect gives up on it.
CONNECT_TIMEOUT_S = 1.0
SOCKET_TIMEOUT_S = 2.0
HEALTH_CHECK_INTERVAL_S = 15


def connect(settings: RedisSettings) -> redis.Redis:
    """A Redis client on ``settings.url`` with short timeouts, health checks and raw bytes."""
    return redis.Redis.from_url(
        settings.url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        decode_responses=False,
    )


def key(settings: Settings | RedisSettings, *parts: str) -> str:
    """The key ``{key_prefix}:part:...``: ``key(settings, "archive")`` -> ``vipflow:archive``."""
    prefix = settings.redis.key_prefix if isinstance(settings, Settings) else settings.key_prefix
    return ":".join((prefix, *parts))
