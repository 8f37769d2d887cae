"""Celery's Redis transports (kombu's), with one fix for a broker lost under load and one client per channel.

When the broker connection breaks while tasks are in flight, Celery closes
the connection and kombu closes its channels: the channel drops its pool and
then restores its unacknowledged messages, building a new pool from a
transport whose client kombu has already set to None. kombu 5.7 then raises
``AttributeError: 'NoneType' object has no attribute 'hostname'``, which
Celery takes for an unrecoverable error: the worker stops instead of
reconnecting (seen in two of four failovers under load while writing
``tests/integration/test_redis_failover.py``). Here that case is a
connection error, which kombu ignores while closing: the consumer reconnects
(through the sentinels, to the new master), and the unacknowledged messages
stay in Redis' unacked hash, given back after the visibility timeout (their
tasks are idempotent; the recovery sweep does not wait for that).

kombu's channel also builds a new ``redis.Redis`` client (on its one connection
pool) for every message it takes and every acknowledgement: two per task. With
redis-py 8 a client's construction fills a table of some 300 response callbacks;
the end-to-end bench's profile showed it at 3-4 % of a worker's CPU. A client on
a pool holds no connection of its own and is safe to share between threads (each
command takes a connection from the pool), so the channels here keep one per pool
and build a new one only when kombu replaced the pool (after a reconnection).
That depends on kombu's ``Channel._create_client``: hence kombu's upper bound.

``create_celery`` names these classes in ``broker_transport``; the URL scheme
(``redis://`` or ``sentinel://``) is parsed as kombu parses it.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


def _check_open(channel: Any) -> None:
    if channel.connection is None or channel.connection.client is None:
        raise redis.exceptions.ConnectionError(
            "the broker connection was closed before its unacknowledged messages could be given back; "
            "they return after the visibility timeout")


class _OneClient:
    """Mixin for kombu's channels: the synchronous client is built once per connection pool."""

    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]  # kombu is untyped
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:  # type: ignore[attr-defined]
            client = self._shared_client = super()._create_client()  # type: ignore[misc]
        return client


class Channel(_OneClient, kombu_redis.Channel):
    """kombu's Redis channel; see the module docstring."""

    def _connparams(self, asynchronous: bool = False) -> Any:
        _check_open(self)
        return super()._connparams(asynchronous)  # type: ignore[no-untyped-call]  # kombu is untyped


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


class SentinelChannel(_OneClient, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel; see the module docstring."""

    def _connparams(self, asynchronous: bool = False) -> Any:
        _check_open(self)
        return super()._connparams(asynchronous)  # type: ignore[no-untyped-call]  # kombu is untyped


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport with :class:`SentinelChannel`."""

    Channel = SentinelChannel


def transport_name(sentinels: bool) -> str:
    """The ``broker_transport`` Celery is given: this module's Sentinel or plain Redis transport."""
    return f"{__name__}:{'SentinelTransport' if sentinels else 'Transport'}"
