"""The dead-letter list: tasks that failed past their retry limit, kept for replay.

A Redis list ``{prefix}:dlq``, oldest first, of JSON objects ``{entry_id,
transaction_id, error, attempts, at}``. ``error`` is a short message free of
personal data (an exception type and what was being done), never a body.
``vipflow replay --dlq`` re-queues the archive entries named here.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class DeadLetter:
    """One task that gave up: which archive entry, which transaction, why, after how many attempts."""

    entry_id: str
    transaction_id: str | None
    error: str
    attempts: int
    at: float  # epoch seconds


def dlq_key(prefix: str) -> str:
    """The Redis list of dead letters."""
    return f"{prefix}:dlq"


def _letter(raw: Any) -> DeadLetter | None:
    try:
        data = json.loads(raw)
        return DeadLetter(str(data["entry_id"]), data.get("transaction_id"), str(data.get("error", "")),
                          int(data.get("attempts", 0)), float(data.get("at", 0.0)))
    except (ValueError, TypeError, KeyError):
        return None  # not ours: left in the list, never replayed blindly


class DeadLetters:
    """Append, list and remove dead letters."""

    def __init__(self, redis: Any, prefix: str):
        self._redis = redis
        self.key = dlq_key(prefix)

    def push(self, entry_id: str, transaction_id: str | None, error: str, attempts: int,
             at: float | None = None) -> DeadLetter:
        """Append one dead letter (the newest goes last)."""
        letter = DeadLetter(entry_id, transaction_id, error, attempts, time.time() if at is None else at)
        self._redis.rpush(self.key, json.dumps(asdict(letter), separators=(",", ":")))
        return letter

    def list(self) -> list[DeadLetter]:
        """Every readable dead letter, oldest first."""
        letters = (_letter(raw) for raw in self._redis.lrange(self.key, 0, -1))
        return [letter for letter in letters if letter is not None]

    def count(self) -> int:
        """How many dead letters there are."""
        return int(self._redis.llen(self.key))

    def remove(self, entry_id: str) -> int:
        """Drop every dead letter of archive entry ``entry_id`` (after it was re-queued); how many."""
        removed = 0
        for raw in self._redis.lrange(self.key, 0, -1):
            letter = _letter(raw)
            if letter is not None and letter.entry_id == entry_id:
                removed += int(self._redis.lrem(self.key, 1, raw))
        return removed
