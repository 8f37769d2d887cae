"""Celery's Redis channel (worker.store.broker): one synchronous client per connection pool, shared by the
messages and acknowledgements of every task, rebuilt when kombu replaces the pool; a real Redis."""

from __future__ import annotations

from kombu import Connection

from worker.store.broker import Transport


def test_one_client_per_pool_and_a_new_one_after_the_pool_changes(redis_url: str) -> None:
    with Connection(redis_url, transport=Transport) as conn:
        channel = conn.default_channel
        first = channel._create_client()
        assert channel._create_client() is first  # kombu asks for one per message and per ack
        with channel.conn_or_acquire() as client:
            assert client is first and client.ping()
        assert channel._create_client(asynchronous=True) is not first  # the event loop's own, as kombu's
        channel._pool.disconnect()
        channel._pool = None  # what kombu does when the connection is lost
        second = channel._create_client()
        assert second is not first and second.connection_pool is channel.pool and second.ping()
