"""Transaction records: what vipflow knows and did about one VIP Connect transaction.

One JSON document per transaction under ``{prefix}:tx:{transaction_id}``. The
record is written before and after every side effect, so that a worker killed
anywhere leaves enough behind for the next delivery to finish the job without
repeating an action. Money is kept as strings, personal data is never kept
(references are masked; the raw body stays in the archive).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from worker.errors import StoreError

State = Literal["received", "decided", "frozen", "approving", "approved", "review", "rejected", "failed"]
STATES: tuple[str, ...] = ("received", "decided", "frozen", "approving", "approved", "review",
                           "rejected", "failed")
# States after which nothing more happens automatically (a reviewer may still act on "review").
FINAL_STATES = frozenset({"approved", "review", "rejected", "failed"})


@dataclass(frozen=True)
class NotificationSeen:
    """One archived notification for this transaction (a duplicate adds another)."""

    entry_id: str
    kind: str
    status: str
    received_at: str


@dataclass(frozen=True)
class ActionEntry:
    """One step of an action: ``started`` is written before the side effect, ``done``/``failed`` after."""

    name: str  # freeze | approve | review | reject | release | fail
    status: str  # started | done | failed
    at: float
    result: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TransactionRecord:
    """Everything vipflow received, decided and did for one transaction id."""

    transaction_id: str
    transaction_type: str | None = None
    amount: str | None = None
    references: Mapping[str, str | None] = field(default_factory=dict)
    notifications: tuple[NotificationSeen, ...] = ()
    state: str = "received"
    decision: Mapping[str, Any] | None = None
    shadow_decision: Mapping[str, Any] | None = None  # rules.shadow's decision: recorded, never acted on
    facts: Mapping[str, Any] | None = None
    actions: tuple[ActionEntry, ...] = ()
    deliveries: int = 0
    errors: tuple[Mapping[str, Any], ...] = ()
    review_reason: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    def last_action(self, name: str) -> ActionEntry | None:
        """The latest entry of action ``name``, or None when it never started."""
        for entry in reversed(self.actions):
            if entry.name == name:
                return entry
        return None

    def action_done(self, name: str) -> bool:
        """True when action ``name`` finished (successfully or not) and nothing restarted it."""
        last = self.last_action(name)
        return last is not None and last.status in ("done", "failed")

    def with_action(self, name: str, status: str, result: Mapping[str, Any] | None = None) -> TransactionRecord:
        """A copy with one more action entry."""
        entry = ActionEntry(name=name, status=status, at=time.time(), result=result)
        return replace(self, actions=(*self.actions, entry))

    def with_error(self, message: str) -> TransactionRecord:
        """A copy with one more error note (the message must already be free of personal data)."""
        return replace(self, errors=(*self.errors, {"at": time.time(), "message": message}))

    def with_notification(self, seen: NotificationSeen) -> TransactionRecord:
        """A copy listing ``seen`` once (a redelivered archive entry is not listed twice)."""
        if any(n.entry_id == seen.entry_id for n in self.notifications):
            return self
        return replace(self, notifications=(*self.notifications, seen))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: lists, not tuples (so masking and JSON tools walk every part)."""
        out: dict[str, Any] = json.loads(json.dumps(asdict(self), default=_json_default))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TransactionRecord:
        """Rebuild from :meth:`to_dict`."""
        d = dict(data)
        d["notifications"] = tuple(NotificationSeen(**n) for n in d.get("notifications", ()))
        d["actions"] = tuple(ActionEntry(**a) for a in d.get("actions", ()))
        d["errors"] = tuple(d.get("errors", ()))
        return cls(**d)


class LockBusy(StoreError):
    """Another worker holds the transaction's lock; try again later."""


class LockLost(StoreError):
    """The lock expired and another worker may own the transaction: stop without writing."""


# Write the record only while our token still owns the lock, and extend the lock.
_SAVE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class TxLock:
    """A per-transaction lock (``SET NX PX`` with a random token), released only by its owner."""

    def __init__(self, redis: Any, key: str, ttl_s: float):
        import secrets

        self._redis = redis
        self.key = key
        self.token = secrets.token_hex(16)
        self.ttl_ms = int(ttl_s * 1000)

    def acquire(self, wait_s: float = 0.0, poll_s: float = 0.1) -> None:
        """Take the lock, waiting up to ``wait_s``; LockBusy when another owner keeps it."""
        deadline = time.monotonic() + wait_s
        while not self._redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
            if time.monotonic() >= deadline:
                raise LockBusy(f"transaction lock {self.key} is held by another worker; retry later")
            time.sleep(poll_s)

    def renew(self) -> None:
        """Extend the lock; LockLost when it is no longer ours."""
        if not self._redis.eval(_RENEW, 1, self.key, self.token, self.ttl_ms):
            raise LockLost(f"transaction lock {self.key} expired; another delivery will finish the work")

    def release(self) -> None:
        """Release the lock if we still own it."""
        self._redis.eval(_RELEASE, 1, self.key, self.token)


def _json_default(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot store a {type(value).__name__} in a transaction record")


class RecordStore:
    """Transaction records and their locks in Redis."""

    def __init__(self, redis: Any, prefix: str, lock_ttl_s: float = 120.0):
        self._redis = redis
        self._prefix = prefix
        self._lock_ttl_s = lock_ttl_s

    def record_key(self, transaction_id: str) -> str:
        """The Redis key of a transaction's record."""
        return f"{self._prefix}:tx:{transaction_id}"

    def lock(self, transaction_id: str) -> TxLock:
        """A (not yet acquired) lock for one transaction."""
        return TxLock(self._redis, f"{self._prefix}:lock:tx:{transaction_id}", self._lock_ttl_s)

    def load(self, transaction_id: str) -> TransactionRecord | None:
        """The stored record, or None; StoreError when the stored value is not a record."""
        raw = self._redis.get(self.record_key(transaction_id))
        if raw is None:
            return None
        try:
            return TransactionRecord.from_dict(json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise StoreError(f"record {self.record_key(transaction_id)} is not a transaction record "
                             f"({type(exc).__name__}); inspect it before deleting") from None

    def save(self, record: TransactionRecord, lock: TxLock) -> TransactionRecord:
        """Store ``record`` if ``lock`` is still ours (extending it); LockLost otherwise."""
        now = time.time()
        record = replace(record, updated_at=now, created_at=record.created_at or now)
        text = json.dumps(record.to_dict(), default=_json_default, separators=(",", ":"))
        ok = self._redis.eval(_SAVE, 2, lock.key, self.record_key(record.transaction_id),
                              lock.token, text, lock.ttl_ms)
        if not ok:
            raise LockLost(f"transaction lock {lock.key} expired before the record was saved; "
                           "another delivery will finish the work")
        return record

    def ids(self, match: str = "*", count: int = 1000) -> list[str]:
        """Transaction ids with a record (a scan: for tools, not for the hot path)."""
        head = f"{self._prefix}:tx:"
        out = []
        for key in self._redis.scan_iter(match=head + match, count=count):
            text = key.decode() if isinstance(key, bytes) else str(key)
            out.append(text[len(head):])
        return sorted(out)
