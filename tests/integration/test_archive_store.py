"""The notification archive on a real Redis: what is appended is read back exactly."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from worker.config import RedisSettings
from worker.errors import StoreError
from worker.store import Archive, connect

pytestmark = pytest.mark.integration

BODY = b'{"TransactionId": "tx00000001", "Amount": "89.76"}'


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = connect(RedisSettings(url=redis_url))
    yield c
    c.close()


@pytest.fixture
def archive(client: redis.Redis) -> Archive:
    return Archive(client, "t")


def test_append_then_get_returns_the_raw_body_and_fields(archive: Archive) -> None:
    """An appended body is read back byte for byte with its kind, status and transaction id."""
    entry_id = archive.append(
        "deposit", BODY, status="valid", transaction_id="tx00000001", error=None
    )
    got = archive.get(entry_id)
    assert got is not None
    assert (got.body, got.kind, got.status, got.transaction_id, got.error) == (
        BODY,
        "deposit",
        "valid",
        "tx00000001",
        None,
    )
    assert len(got.body_sha256) == 64
    assert abs(got.received_at - time.time() * 1000) < 5000


def test_archive_entries_hold_no_authorization_field(archive: Archive, client: redis.Redis) -> None:
    """The stream entry has exactly the documented fields, so no header can slip in."""
    archive.append("deposit", BODY, status="valid", transaction_id="tx00000001", error=None)
    [(_, fields)] = client.xrange("t:archive")
    assert set(fields) == {
        b"body",
        b"kind",
        b"received_at",
        b"status",
        b"transaction_id",
        b"body_sha256",
        b"error",
        b"route",
    }


def test_by_transaction_lists_every_entry_of_that_transaction(archive: Archive) -> None:
    """by_transaction finds all entries of one transaction and none of another."""
    a = archive.append("deposit", BODY, status="valid", transaction_id="tx00000001", error=None)
    archive.append("deposit", b"{}", status="valid", transaction_id="tx-00000002", error=None)
    b = archive.append("deposit", b"x", status="conflict", transaction_id="tx00000001", error=None)
    assert [e.entry_id for e in archive.by_transaction("tx00000001")] == [a, b]


def test_unprocessed_lists_valid_entries_until_forgotten(archive: Archive, client: redis.Redis) -> None:
    """Valid entries are pending until the ledger holds them and their task finished (forget);
    invalid ones never are. Forgetting also takes the entry out of the stream."""
    a = archive.append("deposit", BODY, status="valid", transaction_id="tx00000001", error=None)
    archive.append("deposit", b"{", status="invalid", transaction_id=None, error="body: bad")
    assert [e.entry_id for e in archive.unprocessed()] == [a]
    archive.forget(a)
    assert archive.unprocessed() == [] and archive.get(a) is None and client.xlen("t:archive") == 1


def test_iter_range_pages_through_all_entries_in_order(archive: Archive) -> None:
    """iter_range with a small batch still yields every entry once, oldest first."""
    ids = [
        archive.append("withdraw", b"%d" % i, status="valid", transaction_id=None, error=None)
        for i in range(7)
    ]
    assert [e.entry_id for e in archive.iter_range(batch=3)] == ids


def test_iter_range_respects_the_time_window(archive: Archive) -> None:
    """Entries received before since_ms are left out."""
    archive.append("deposit", b"old", status="valid", transaction_id=None, error=None)
    time.sleep(0.005)
    cut = int(time.time() * 1000)
    time.sleep(0.005)
    new = archive.append("deposit", b"new", status="valid", transaction_id=None, error=None)
    assert [e.entry_id for e in archive.iter_range(since_ms=cut)] == [new]


def test_the_transaction_index_expires_with_the_dedupe_window(client: redis.Redis) -> None:
    """The per-transaction index of buffer entries has a lifetime: the dedupe window given to the buffer."""
    Archive(client, "t", index_ttl_ms=60_000).append("deposit", BODY, status="valid",
                                                     transaction_id="tx00000001", error=None)
    assert 0 < client.pttl("t:archive:tx:tx00000001") <= 60_000


def test_redis_down_raises_store_error() -> None:
    """An unreachable Redis turns into StoreError, not a redis-py exception."""
    dead = connect(RedisSettings(url="redis://127.0.0.1:1/0"))
    with pytest.raises(StoreError, match="Redis"):
        Archive(dead, "t").append("deposit", BODY, status="valid", transaction_id=None, error=None)
