"""The review queue: transactions waiting for a human, oldest first.

A sorted set ``{prefix}:review`` of transaction ids scored by enqueue time; why
each one is there is kept on its transaction record (``review_reason``), so the
queue itself holds nothing personal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReviewItem:
    """One queued transaction and when it entered the queue (epoch seconds)."""

    transaction_id: str
    enqueued_at: float


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ReviewQueue:
    """List, get, add and remove transactions awaiting review."""

    def __init__(self, redis: Any, prefix: str):
        self._redis = redis
        self.key = f"{prefix}:review"

    def enqueue(self, transaction_id: str, at: float | None = None) -> bool:
        """Queue a transaction once (a second call keeps the first time); True when newly queued."""
        added = self._redis.zadd(self.key, {transaction_id: time.time() if at is None else at}, nx=True)
        return bool(added)

    def get(self, transaction_id: str) -> ReviewItem | None:
        """The queued item, or None when the transaction is not waiting for review."""
        score = self._redis.zscore(self.key, transaction_id)
        return None if score is None else ReviewItem(transaction_id, float(score))

    def list(self, limit: int = 100, offset: int = 0) -> list[ReviewItem]:
        """Queued transactions, oldest first."""
        rows = self._redis.zrange(self.key, offset, offset + limit - 1, withscores=True)
        return [ReviewItem(_text(member), float(score)) for member, score in rows]

    def count(self) -> int:
        """How many transactions wait for review."""
        return int(self._redis.zcard(self.key))

    def remove(self, transaction_id: str) -> bool:
        """Take a transaction off the queue; True when it was there."""
        return bool(self._redis.zrem(self.key, transaction_id))
