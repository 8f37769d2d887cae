"""Redis connections and key names shared by every part of the store: the one place that builds clients.

With ``redis.sentinels`` set, every client (the ingestor's, the workers' hot
path, the CLI's, the web service's) is a Sentinel-managed master client: it
asks the sentinels for the master of ``redis.master_name`` when it connects,
and again after a connection fails or the old master turns replica, so a
failover is followed without a restart. While no sentinel knows a healthy
master, commands fail with redis-py's ``MasterNotFoundError`` (a
``ConnectionError``), which the store turns into ``StoreError`` (the
ingestor's 503). Celery's broker URL comes from here too (:func:`broker_url`).
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from worker.config import RedisSettings, Settings
from worker.errors import ConfigError, StoreError
from worker.urls import redacted, redis_db

log = logging.getLogger("vipflow.store")

# Short timeouts: a Redis that does not answer must turn into a 503 quickly,
# not a request that hangs until VIP Connect gives up on it.
CONNECT_TIMEOUT_S = 1.0
SOCKET_TIMEOUT_S = 2.0
HEALTH_CHECK_INTERVAL_S = 15


def connect(settings: RedisSettings) -> redis.Redis:
    """A Redis client on ``settings.url`` with short timeouts, health checks and raw bytes (it connects on
    first use); with ``redis.sentinels``, on the master the sentinels name (see the module docstring).
    ConfigError naming ``redis.url`` when the URL is not one redis-py can use."""
    if settings.sentinels:
        return _sentinel_master(settings)
    try:
        return redis.Redis.from_url(
            settings.url,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            health_check_interval=HEALTH_CHECK_INTERVAL_S,
            decode_responses=False,
        )
    except ValueError as exc:
        raise ConfigError("redis.url", f"{shown_url(settings.url)} cannot be used ({exc}); "
                                       "write it as redis://HOST:PORT/DB") from None


def _sentinel_master(settings: RedisSettings) -> redis.Redis:
    parts = urlsplit(settings.url)
    if parts.scheme.lower() == "unix":
        raise ConfigError("redis.url", "with redis.sentinels, redis.url gives the database and the master's "
                                       "password: write it as redis://[:PASSWORD@]ANY-HOST/DB, not a unix socket")
    # Each sentinel is asked once per look-up (the look-up goes on to the next one, and the caller's own
    # retries ask again): redis-py's default ten retries per sentinel made a look-up with the sentinels
    # down take ~8 s instead of milliseconds, a CLI command or an ingestor's 503 waiting as long.
    sentinel_kwargs: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT_S,
                                       "socket_timeout": SOCKET_TIMEOUT_S, "retry": Retry(NoBackoff(), 0)}
    if settings.sentinel_password is not None:
        sentinel_kwargs["password"] = settings.sentinel_password.get_secret_value()
    # redis-py's Sentinel is untyped; master_for returns a redis.Redis on a SentinelConnectionPool.
    sentinel = Sentinel(settings.sentinel_addresses(), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        settings.master_name,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        decode_responses=False,
        db=redis_db(settings.url),
        username=unquote(parts.username) if parts.username else None,  # as redis-py's from_url reads them
        password=unquote(parts.password) if parts.password else None,
        ssl=parts.scheme.lower() == "rediss",
    )
    return client


def broker_url(settings: RedisSettings) -> str:
    """Celery's broker URL: ``redis.url`` itself, or with sentinels kombu's Sentinel transport form
    ``sentinel://[:PASSWORD@]HOST:PORT/DB;sentinel://...`` (each entry carries the master's password and
    database; the master's name goes in :func:`broker_options`)."""
    if not settings.sentinels:
        return settings.url
    parts = urlsplit(settings.url)
    auth = ""
    if parts.password:  # kept percent-encoded, as written in redis.url (kombu decodes it)
        auth = parts.netloc.rpartition("@")[0] + "@"
    db = redis_db(settings.url)
    return ";".join(f"sentinel://{auth}{hostport}/{db}" for hostport in settings.sentinels)


def broker_options(settings: RedisSettings) -> dict[str, Any]:
    """Transport options Celery needs beyond the URL: with sentinels, ``master_name`` and the sentinels'
    own password (``sentinel_kwargs``); nothing without."""
    if not settings.sentinels:
        return {}
    options: dict[str, Any] = {"master_name": settings.master_name}
    sentinel_kwargs: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT_S,
                                       "socket_timeout": SOCKET_TIMEOUT_S}
    if settings.sentinel_password is not None:
        sentinel_kwargs["password"] = settings.sentinel_password.get_secret_value()
    options["sentinel_kwargs"] = sentinel_kwargs
    return options


def shown_url(url: str) -> str:
    """``url`` fit for a message: its password replaced by ``***`` (``redis://:***@host:6379/0``)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "(a URL that cannot be read)"


def where(settings: RedisSettings) -> str:
    """The Redis a process uses, for people: its URL (password hidden) and database number, or with
    sentinels the master's name and the sentinels (``master 'mymaster' via sentinels h1:26379, h2:26379
    (database 0)``)."""
    if settings.sentinels:
        return (f"master '{settings.master_name}' via sentinels {', '.join(settings.sentinels)} "
                f"(database {redis_db(settings.url)})")
    return f"{redacted(settings.url)} (database {redis_db(settings.url)})"


def answers(settings: RedisSettings) -> bool:
    """True when Redis answers one PING now."""
    client = connect(settings)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def wait_for_redis(settings: RedisSettings, timeout_s: float) -> None:
    """Return once Redis answers PING; each failed try is logged as a warning, and after ``timeout_s``
    seconds without an answer StoreError names the URL (password hidden) and what to do."""
    client = connect(settings)
    deadline = time.monotonic() + timeout_s
    pause = 0.5
    try:
        while True:
            try:
                client.ping()
                return
            except redis.RedisError as exc:
                problem = type(exc).__name__
            left = deadline - time.monotonic()
            if left <= 0:
                # Raised outside the except block: this line, with the wait it names, is the one reported
                # (producers.exits reports a store error raised while handling a Redis error as that error).
                fix = ("check redis.sentinels and redis.master_name" if settings.sentinels
                       else "start it or fix redis.url")
                raise StoreError(f"Redis at {where(settings)} did not answer within {timeout_s:g} s ({problem}); "
                                 f"{fix} (worker.broker_connect_timeout_s sets the wait)")
            log.warning("Redis at %s does not answer (%s); trying again for up to %.0f s more",
                        where(settings), problem, left, extra={"retry_in_s": min(pause, left)})
            time.sleep(min(pause, left))  # the pause between polls, growing to 5 s
            pause = min(pause * 2, 5.0)
    finally:
        client.close()


def key(settings: Settings | RedisSettings, *parts: str) -> str:
    """The key ``{key_prefix}:part:...``: ``key(settings, "archive")`` -> ``vipflow:archive``."""
    prefix = settings.redis.key_prefix if isinstance(settings, Settings) else settings.key_prefix
    return ":".join((prefix, *parts))
