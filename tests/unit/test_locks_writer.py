"""The per-transaction lock (Redis) and the record writer (the ledger) behind every task."""

from __future__ import annotations

import pytest
import redis

from worker.ledger import Ledger, RecordWriter, State, TransactionRecord
from worker.store.locks import LockBusy, LockLost, Locks


@pytest.fixture
def locks(redis_url: str) -> Locks:
    return Locks(redis.Redis.from_url(redis_url), "t", ttl_s=5)


def test_a_held_lock_refuses_a_second_owner(locks: Locks) -> None:
    """While one owner holds a transaction's lock, another cannot take it."""
    first = locks.lock("tx1")
    first.acquire()
    with pytest.raises(LockBusy, match="held by another worker"):
        locks.lock("tx1").acquire(wait_s=0.05)
    first.release()
    locks.lock("tx1").acquire()


def test_release_by_a_non_owner_keeps_the_lock(locks: Locks) -> None:
    """Only the owner's token releases the lock."""
    owner = locks.lock("tx2")
    owner.acquire()
    locks.lock("tx2").release()
    with pytest.raises(LockBusy):
        locks.lock("tx2").acquire(wait_s=0.05)


def test_renew_refuses_once_the_lock_is_someone_elses(locks: Locks) -> None:
    """A lock that expired and was taken by another worker cannot be renewed."""
    mine = locks.lock("tx3")
    mine.acquire()
    locks.redis.delete(mine.key)  # expired
    locks.lock("tx3").acquire()
    with pytest.raises(LockLost):
        mine.renew()


def test_staged_records_wait_for_the_next_write_or_finish(locks: Locks, ledger: Ledger) -> None:
    """A staged record is not in the ledger until the next write or finish commits it, with its events."""
    lock = locks.lock("tx4")
    lock.acquire()
    save = RecordWriter(ledger, lock, None, deferred=True)
    save(TransactionRecord("tx4", deliveries=1))
    save.stage(TransactionRecord("tx4", deliveries=1).with_action("review", "done", {"reason": "x"})
               .moved(State.REVIEW))
    held = ledger.load("tx4")
    assert held is not None and held.record.state == "received"
    save.finish()
    held = ledger.load("tx4")
    assert held is not None and held.record.state == "review"
    assert [e.kind for e in ledger.events("tx4")] == ["delivered", "review"]


def test_a_stale_writer_cannot_write_over_a_newer_one(locks: Locks, ledger: Ledger) -> None:
    """Two writers that read the same row: the second to commit gets LockLost and writes nothing."""
    ledger.write(None, TransactionRecord("tx5", deliveries=1))
    first, second = ledger.load("tx5"), ledger.load("tx5")
    assert first is not None and second is not None
    ledger.write(first, first.record.with_action("review", "done").moved(State.REVIEW))
    with pytest.raises(LockLost):
        ledger.write(second, second.record.moved(State.DECIDED))
    held = ledger.load("tx5")
    assert held is not None and held.record.state == "review" and held.seq == 2


def test_a_writer_that_is_not_deferred_commits_at_once(locks: Locks, ledger: Ledger) -> None:
    """The reviewer's writer commits staged records at once."""
    lock = locks.lock("tx6")
    lock.acquire()
    save = RecordWriter(ledger, lock, None)
    save.stage(TransactionRecord("tx6", deliveries=1))
    held = ledger.load("tx6")
    assert held is not None and held.record.deliveries == 1
    lock.release()
