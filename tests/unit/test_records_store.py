"""Transaction records and their per-transaction lock, on a real Redis."""

from __future__ import annotations

import pytest
import redis

from worker.store.records import LockBusy, LockLost, RecordStore, TransactionRecord


@pytest.fixture
def store(redis_url: str) -> RecordStore:
    return RecordStore(redis.Redis.from_url(redis_url), "t", lock_ttl_s=5)


def test_record_round_trips_through_redis(store: RecordStore) -> None:
    """A saved record loads back equal, actions and errors included."""
    lock = store.lock("tx000001")
    lock.acquire()
    rec = TransactionRecord("tx000001", amount="10.50").with_action("freeze", "done", {"amount": "10.50"})
    saved = store.save(rec.with_error("boom"), lock)
    assert store.load("tx000001") == saved


def test_a_held_lock_refuses_a_second_owner(store: RecordStore) -> None:
    """While one owner holds the lock, another cannot take it."""
    store.lock("tx000002").acquire()
    with pytest.raises(LockBusy):
        store.lock("tx000002").acquire(wait_s=0.2)


def test_save_refuses_once_the_lock_is_someone_elses(store: RecordStore, redis_url: str) -> None:
    """A worker whose lock expired and was taken over cannot overwrite the record."""
    first = store.lock("tx000003")
    first.acquire()
    redis.Redis.from_url(redis_url).delete(first.key)  # as if it expired
    store.lock("tx000003").acquire()
    with pytest.raises(LockLost):
        store.save(TransactionRecord("tx000003"), first)


def test_release_by_a_non_owner_keeps_the_lock(store: RecordStore) -> None:
    """Releasing with a stale token does not free another owner's lock."""
    owner = store.lock("tx000004")
    owner.acquire()
    store.lock("tx000004").release()
    with pytest.raises(LockBusy):
        store.lock("tx000004").acquire()


def test_masked_view_hides_personal_data_inside_actions() -> None:
    """The record's dict form lets masking reach identifiers nested in action results."""
    from worker.masking import mask_mapping

    rec = TransactionRecord("tx000005").with_action("freeze", "done", {"patron_id": "P0001234"})
    masked = mask_mapping(rec.to_dict())
    assert masked["actions"][0]["result"]["patron_id"] == "****1234"


def test_every_field_is_stored() -> None:
    """The hand-written stored form names every field of the record (a new field cannot be forgotten)."""
    from dataclasses import fields

    assert set(TransactionRecord("tx000006").to_dict()) == {f.name for f in fields(TransactionRecord)}


def test_begin_stores_a_first_delivery_and_reads_a_later_one(store: RecordStore) -> None:
    """One call locks and, with no record yet, stores the given one; the next call gets the stored one."""
    lock, rec, created = store.begin(TransactionRecord("tx000007", deliveries=1), wait_s=0)
    assert created and store.load("tx000007") == rec and rec.created_at > 0
    with pytest.raises(LockBusy):
        store.begin(TransactionRecord("tx000007", deliveries=1), wait_s=0.1)
    lock.release()
    again, old, created = store.begin(TransactionRecord("tx000007", deliveries=99), wait_s=0)
    assert not created and old == rec and old.deliveries == 1
    again.release()


def test_staged_records_wait_for_the_next_write_or_finish(store: RecordStore, redis_url: str) -> None:
    """A deferred writer keeps a staged record until the next write; finish stores it, takes the entry
    off the pending set and releases the lock, and callbacks run once the record is stored."""
    client = redis.Redis.from_url(redis_url)
    client.sadd("t:pending", "1-0", "2-0")
    lock, rec, _ = store.begin(TransactionRecord("tx000008"), wait_s=0)
    write = store.writer(lock, deferred=True)
    counted: list[str] = []
    write.stage(rec.with_action("freeze", "done"), after=lambda: counted.append("freeze"))
    assert store.load("tx000008") == rec and counted == []  # not stored yet
    stored = write(write.latest.with_action("approve", "started") if write.latest else rec)
    assert [a.name for a in stored.actions] == ["freeze", "approve"] and counted == ["freeze"]
    write.stage(stored.with_action("approve", "done"))
    write.finish(processed=("t:pending", "1-0"))
    assert [a.status for a in (store.load("tx000008") or rec).actions] == ["done", "started", "done"]
    assert client.smembers("t:pending") == {b"2-0"} and not client.exists(lock.key)


def test_finish_refuses_a_staged_record_once_the_lock_is_lost(store: RecordStore, redis_url: str) -> None:
    """Staged work is never written over another owner's: LockLost, and the entry stays pending."""
    client = redis.Redis.from_url(redis_url)
    client.sadd("t:pending", "1-0")
    lock, rec, _ = store.begin(TransactionRecord("tx000009"), wait_s=0)
    write = store.writer(lock, deferred=True)
    write.stage(rec.with_action("reject", "done"))
    client.delete(lock.key)  # as if it expired
    with pytest.raises(LockLost):
        write.finish(processed=("t:pending", "1-0"))
    assert store.load("tx000009") == rec and client.smembers("t:pending") == {b"1-0"}


def test_a_writer_that_is_not_deferred_stores_at_once(store: RecordStore) -> None:
    """The reviewer's writer stores a staged record immediately."""
    lock, rec, _ = store.begin(TransactionRecord("tx000010"), wait_s=0)
    store.writer(lock).stage(rec.with_action("review", "done"))
    assert [a.name for a in (store.load("tx000010") or rec).actions] == ["review"]
    lock.release()
