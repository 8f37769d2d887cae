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
