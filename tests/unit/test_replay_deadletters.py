"""The dead-letter list that ``vipflow replay --dlq`` reads."""

from __future__ import annotations

import redis

from worker.store.deadletters import DeadLetters


def test_letters_come_back_oldest_first_with_their_fields(redis_url: str) -> None:
    """Pushed letters are listed oldest first with entry, transaction, error and attempts."""
    dlq = DeadLetters(redis.Redis.from_url(redis_url), "t")
    dlq.push("1-0", "tx00000001", "StoreError after retries", 6, at=10.0)
    dlq.push("2-0", "tx00000002", "unexpected KeyError", 1, at=20.0)
    assert [(d.entry_id, d.transaction_id, d.error, d.attempts, d.at) for d in dlq.list()] == [
        ("1-0", "tx00000001", "StoreError after retries", 6, 10.0),
        ("2-0", "tx00000002", "unexpected KeyError", 1, 20.0),
    ]


def test_remove_drops_only_that_entry(redis_url: str) -> None:
    """Removing an entry id leaves the other letters in place."""
    dlq = DeadLetters(redis.Redis.from_url(redis_url), "t")
    dlq.push("1-0", "tx00000001", "e", 1)
    dlq.push("2-0", "tx00000002", "e", 1)
    assert dlq.remove("1-0") == 1
    assert [d.entry_id for d in dlq.list()] == ["2-0"]
    assert dlq.count() == 1


def test_a_foreign_value_is_not_listed(redis_url: str) -> None:
    """A value that is not a dead letter is skipped rather than replayed blindly."""
    client = redis.Redis.from_url(redis_url)
    client.rpush("t:dlq", b"not json")
    assert DeadLetters(client, "t").list() == []
