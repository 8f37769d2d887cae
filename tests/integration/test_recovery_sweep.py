"""The recovery sweep on a real Redis and ledger: what it queues again, and what it leaves alone."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import archived_note
from worker.celery_app import create_celery
from worker.config import RedisSettings, Settings
from worker.ledger import Ledger
from worker.recovery import Recovery, interval_s
from worker.store import keys
from worker.store.archive import Archive
from worker.store.intake import Intake
from worker.store.locks import Locks
from worker.store.publisher import MemoryPublisher
from worker.store.taskmessage import TaskMessages

pytestmark = pytest.mark.integration

PREFIX, QUEUE, AFTER_S = "rc", "rcq", 20.0
DEPOSIT = b'{"TransactionId": "%s", "Amount": "25.00", "VipCardNumber": "7210642759"}'


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


def sweep(client: redis.Redis, ledger: Ledger, publisher: MemoryPublisher) -> Recovery:
    return Recovery(client, PREFIX, Archive(client, PREFIX), ledger, publisher, queue=QUEUE,
                    recover_after_s=AFTER_S)


def archived(client: redis.Redis, tx: str) -> str:
    """A pending notification in the intake buffer with no task message anywhere (a lost message)."""
    return Archive(client, PREFIX).append("deposit", DEPOSIT % tx.encode(), status="valid", transaction_id=tx,
                                          error=None)


def test_a_notification_without_a_message_is_queued_again_once_idle_long_enough(
        client: redis.Redis, ledger: Ledger, publisher: MemoryPublisher) -> None:
    """Archived, no message, no lock: watched on first sight, queued again recover_after_s later, once."""
    entry = archived(client, "rc-lost-1")
    rec = sweep(client, ledger, publisher)
    t0 = time.time() + AFTER_S  # received recover_after_s ago by then
    assert rec.once(t0).requeued == [] and rec.once(t0 + AFTER_S / 2).requeued == []
    assert rec.once(t0 + AFTER_S).requeued == [entry]
    assert publisher.published == [entry]
    assert rec.once(t0 + AFTER_S + 1).requeued == []  # watched again from the re-queue


def test_a_young_notification_is_not_looked_at(client: redis.Redis, ledger: Ledger,
                                               publisher: MemoryPublisher) -> None:
    """Received less than recover_after_s ago: not even watched."""
    archived(client, "rc-young")
    rec = sweep(client, ledger, publisher)
    assert rec.once().looked_at == 0
    assert client.hlen(keys.recovery_watch(PREFIX)) == 0


def test_a_locked_transaction_is_left_to_its_task(client: redis.Redis, ledger: Ledger,
                                                  publisher: MemoryPublisher) -> None:
    """A task holds the transaction's lock: however long it takes, the sweep does not queue it again."""
    archived(client, "rc-locked")
    Locks(client, PREFIX, 600).lock("rc-locked").acquire()
    rec = sweep(client, ledger, publisher)
    t0 = time.time() + AFTER_S
    for step in range(5):
        assert rec.once(t0 + step * AFTER_S).requeued == []
    assert publisher.published == []


def test_a_new_delivery_restarts_the_watch(client: redis.Redis, ledger: Ledger,
                                           publisher: MemoryPublisher) -> None:
    """A task started between two looks (its delivery counted): idle from the later look only."""
    entry = archived(client, "rc-retrying")
    rec = sweep(client, ledger, publisher)
    t0 = time.time() + AFTER_S
    rec.once(t0)
    lock = Locks(client, PREFIX, 600).lock("rc-retrying")
    lock.begin()
    lock.retrying()  # ended in the task's own retry: released, its countdown running
    assert rec.once(t0 + AFTER_S).requeued == []
    assert rec.once(t0 + 2 * AFTER_S).requeued == [entry]


def test_a_message_still_on_the_queue_is_not_queued_twice(
        redis_url: str, client: redis.Redis, ledger: Ledger, publisher: MemoryPublisher) -> None:
    """A backlog: the notification's message waits on the queue longer than recover_after_s; left there."""
    settings = Settings(redis=RedisSettings(url=redis_url, key_prefix=PREFIX))
    intake = Intake(client, PREFIX, messages=TaskMessages(create_celery(settings), QUEUE), queue=QUEUE)
    from worker.notification import decode_body, parse_notification

    raw = DEPOSIT % b"rcqueued01"
    entry = intake.accept("deposit", raw, parse_notification(decode_body(raw), "deposit"), None).entry_id
    rec = sweep(client, ledger, publisher)
    t0 = time.time() + AFTER_S
    rec.once(t0)
    found = rec.once(t0 + AFTER_S)
    assert found.requeued == [] and found.still_queued == [entry]
    client.delete(QUEUE)  # the message is lost now
    assert rec.once(t0 + 2 * AFTER_S).requeued == [entry]


def test_one_worker_at_a_time(client: redis.Redis, ledger: Ledger, publisher: MemoryPublisher) -> None:
    """Two sweeps: the second finds the lease taken and does nothing; the first keeps it round after round."""
    archived(client, "rc-lease")
    first, second = sweep(client, ledger, publisher), sweep(client, ledger, publisher)
    t0 = time.time() + AFTER_S
    assert first.once(t0).looked_at == 1
    assert second.once(t0).looked_at == 0
    assert first.once(t0 + 1).looked_at == 1
    first.release()
    assert second.once(t0 + 2).looked_at == 1


def test_an_unfinished_notification_only_the_ledger_holds_is_recovered(
        client: redis.Redis, ledger: Ledger, publisher: MemoryPublisher) -> None:
    """Redis lost it (the ledger holds it unfinished, the pending set does not): pending again, then queued."""
    received = int(time.time() * 1000) - 1000
    entry = f"{received}-0"
    ledger.add_notifications([archived_note(entry, "rc-ledger", received_at_ms=received)])
    rec = sweep(client, ledger, publisher)
    t0 = time.time() + AFTER_S
    rec.once(t0)
    assert client.sismember(keys.pending(PREFIX), entry)
    assert rec.once(t0 + AFTER_S).requeued == [entry]


def test_a_pending_id_nothing_holds_is_reported_and_dropped(
        client: redis.Redis, ledger: Ledger, publisher: MemoryPublisher) -> None:
    """A pending id in neither the buffer nor the ledger: named as missing once, never queued."""
    entry = f"{int(time.time() * 1000)}-7"
    client.sadd(keys.pending(PREFIX), entry)
    rec = sweep(client, ledger, publisher)
    t0 = time.time() + AFTER_S
    rec.once(t0)
    found = rec.once(t0 + AFTER_S)
    assert found.missing == [entry] and found.requeued == [] and publisher.published == []
    assert not client.sismember(keys.pending(PREFIX), entry)


def test_the_watch_list_holds_pending_entries_only_and_expires(
        client: redis.Redis, ledger: Ledger, publisher: MemoryPublisher) -> None:
    """The watch keeps the entry's transaction id (no lookup next round); once the entry finishes, the next
    round forgets it; the list has a lifetime."""
    entry = archived(client, "rc-done")
    rec = sweep(client, ledger, publisher)
    t0 = time.time() + AFTER_S
    rec.once(t0)
    assert client.hget(keys.recovery_watch(PREFIX), entry).endswith(b":rc-done")  # type: ignore[union-attr]
    assert client.pttl(keys.recovery_watch(PREFIX)) > 0
    Archive(client, PREFIX).forget(entry)
    rec.once(t0 + 1)
    assert not client.exists(keys.recovery_watch(PREFIX)) or not client.hexists(keys.recovery_watch(PREFIX), entry)


def test_rounds_are_a_tenth_of_the_wait_within_bounds() -> None:
    """The round interval: recover_after_s / 10, at least 0.5 s, at most 15 s."""
    assert interval_s(120) == 12 and interval_s(2) == 0.5 and interval_s(3600) == 15


def test_vipflow_status_counts_what_the_sweep_is_watching(
        redis_url: str, client: redis.Redis, ledger: Ledger, publisher: MemoryPublisher) -> None:
    """A lost message seen idle by the sweep shows in `vipflow status` as recovering, until it is queued again."""
    from worker.config import WorkerSettings
    from worker.status import gather

    archived(client, "rc-status-1")
    settings = Settings(redis=RedisSettings(url=redis_url, key_prefix=PREFIX), worker=WorkerSettings(queue=QUEUE))
    assert gather(settings, redis_client=client, ledger=ledger).unprocessed["recovering"] == 0
    rec = sweep(client, ledger, publisher)
    t0 = time.time() + AFTER_S
    rec.once(t0)
    report = gather(settings, redis_client=client, ledger=ledger)
    assert report.unprocessed["recovering"] == 1 and report.unprocessed["in_redis"] == 1
    assert "recovering" not in report.to_dict()  # shown once, inside "unprocessed"
