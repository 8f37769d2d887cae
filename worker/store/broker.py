"""Celery's Redis transports (kombu's), with one fix for a broker lost under load.

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


class Channel(kombu_redis.Channel):
    """kombu's Redis channel; see the module docstring."""

    def _connparams(self, asynchronous: bool = False) -> Any:
        _check_open(self)
        return super()._connparams(asynchronous)  # type: ignore[no-untyped-call]  # kombu is untyped


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


class SentinelChannel(kombu_redis.SentinelChannel):
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
