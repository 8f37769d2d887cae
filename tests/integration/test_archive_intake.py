"""Intake on a real Redis: archive, de-duplicate and enqueue, exactly once."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from worker.config import RedisSettings
from worker.errors import StoreError
from worker.notification import decode_body, parse_notification
from worker.store import Intake, MemoryPublisher, connect

pytestmark = pytest.mark.integration

BODY = b'{"TransactionId": "tx00000001", "Amount": "89.76", "VipCardNumber": "7210642759"}'
OTHER = b'{"TransactionId": "tx00000001", "Amount": "99.00", "VipCardNumber": "7210642759"}'


def note(raw: bytes, kind: str = "deposit"):  # type: ignore[no-untyped-def]
    return parse_notification(decode_body(raw), kind)  # type: ignore[arg-type]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = connect(RedisSettings(url=redis_url))
    yield c
    c.close()


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
def intake(client: redis.Redis, publisher: MemoryPublisher) -> Intake:
    return Intake(client, "t", publisher)


def test_first_delivery_is_archived_valid_and_queued(
    intake: Intake, publisher: MemoryPublisher
) -> None:
    """A new transaction is archived as valid and its entry id is published once."""
    result = intake.accept("deposit", BODY, note(BODY), None)
    assert result.status == "accepted"
    assert publisher.published == [result.entry_id]
    entry = intake.archive.get(result.entry_id)
    assert entry is not None and entry.status == "valid" and entry.body == BODY


def test_duplicate_is_neither_archived_nor_queued_again(
    intake: Intake, publisher: MemoryPublisher
) -> None:
    """The same body twice gives one archive entry, one message and a duplicate count of one."""
    first = intake.accept("deposit", BODY, note(BODY), None)
    second = intake.accept("deposit", BODY, note(BODY), None)
    assert (second.status, second.entry_id) == ("duplicate", first.entry_id)
    assert len(publisher.published) == 1
    assert len(intake.archive.by_transaction("tx00000001")) == 1
    assert intake.duplicates("deposit", "tx00000001") == 1


def test_failed_publish_is_queued_by_the_next_delivery(
    intake: Intake, publisher: MemoryPublisher
) -> None:
    """A body archived but not queued (broker down) is queued, not re-archived, next time."""
    publisher.fail = True
    with pytest.raises(StoreError):
        intake.accept("deposit", BODY, note(BODY), None)
    publisher.fail = False
    result = intake.accept("deposit", BODY, note(BODY), None)
    assert result.status == "accepted"
    assert publisher.published == [result.entry_id]
    assert len(intake.archive.by_transaction("tx00000001")) == 1


def test_other_body_for_known_transaction_is_a_queued_conflict(
    intake: Intake, publisher: MemoryPublisher
) -> None:
    """A different body under a known transaction id is archived as conflict and queued."""
    intake.accept("deposit", BODY, note(BODY), None)
    result = intake.accept("deposit", OTHER, note(OTHER), None)
    assert result.status == "conflict"
    entry = intake.archive.get(result.entry_id)
    assert entry is not None and entry.status == "conflict"
    assert publisher.published[-1] == result.entry_id and len(publisher.published) == 2


def test_error_notification_is_not_a_conflict_with_its_deposit(intake: Intake) -> None:
    """An error notification about a deposit is archived valid, apart from the deposit."""
    intake.accept("deposit", BODY, note(BODY), None)
    err = b'{"TransactionId": "tx00000001", "ErrorCode": 99}'
    assert intake.accept("error", err, note(err, "error"), None).status == "accepted"


def test_invalid_body_is_archived_invalid_and_not_queued(
    intake: Intake, publisher: MemoryPublisher
) -> None:
    """An invalid body is archived with its error and status invalid, and nothing is published."""
    result = intake.accept("deposit", b'{"Amount": 5}', None, "transactionId: Field required")
    entry = intake.archive.get(result.entry_id)
    assert entry is not None and (entry.status, entry.error) == (
        "invalid",
        "transactionId: Field required",
    )
    assert publisher.published == []


def test_concurrent_duplicates_queue_once(intake: Intake, publisher: MemoryPublisher) -> None:
    """Eight threads delivering the same body at once publish exactly one message."""
    barrier = threading.Barrier(8)
    results: list[str] = []

    def deliver() -> None:
        barrier.wait()
        results.append(intake.accept("deposit", BODY, note(BODY), None).status)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(publisher.published) == 1
    assert sorted(results) == ["accepted"] + ["duplicate"] * 7


def test_celery_publisher_queues_through_the_broker(redis_url: str, client: redis.Redis) -> None:
    """With CeleryPublisher, a new notification ends up as one message on the queue list."""
    from worker.config import Settings
    from worker.store import CeleryPublisher

    settings = Settings(redis=RedisSettings(url=redis_url))
    intake = Intake.from_settings(settings, client, CeleryPublisher.from_settings(settings))
    assert intake.accept("deposit", BODY, note(BODY), None).status == "accepted"
    assert intake.accept("deposit", BODY, note(BODY), None).status == "duplicate"
    assert client.llen(settings.worker.queue) == 1


def test_celery_publisher_fails_fast_when_the_broker_is_down() -> None:
    """A broker where nothing listens gives StoreError within a second, not Celery's retries."""
    import socket
    import time

    from worker.config import Settings
    from worker.store import CeleryPublisher

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    publisher = CeleryPublisher.from_settings(Settings(redis=RedisSettings(url=f"redis://127.0.0.1:{port}/0")))
    started = time.monotonic()
    with pytest.raises(StoreError, match="broker"):
        publisher.publish("1-0")
    assert time.monotonic() - started < 1.0
