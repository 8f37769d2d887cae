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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
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
    unasked: tuple[str, ...] = ()  # sources not asked at decision time: no rule read them (facts unknown)
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
        out: dict[str, Any] = json.loads(self.to_json())
        return out

    def to_json(self) -> str:
        """The stored form: compact JSON (money as strings).

        Written by hand rather than through ``dataclasses.asdict``, which deep-copies
        every nested mapping: the record is stored several times per transaction.
        """
        return _ENCODER.encode({
            "transaction_id": self.transaction_id,
            "transaction_type": self.transaction_type,
            "amount": self.amount,
            "references": self.references,
            "notifications": [{"entry_id": n.entry_id, "kind": n.kind, "status": n.status,
                               "received_at": n.received_at} for n in self.notifications],
            "state": self.state,
            "decision": self.decision,
            "shadow_decision": self.shadow_decision,
            "facts": self.facts,
            "unasked": list(self.unasked),
            "actions": [{"name": a.name, "status": a.status, "at": a.at, "result": a.result}
                        for a in self.actions],
            "deliveries": self.deliveries,
            "errors": self.errors,
            "review_reason": self.review_reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TransactionRecord:
        """Rebuild from :meth:`to_dict`."""
        d = dict(data)
        d["notifications"] = tuple(NotificationSeen(**n) for n in d.get("notifications", ()))
        d["actions"] = tuple(ActionEntry(**a) for a in d.get("actions", ()))
        d["errors"] = tuple(d.get("errors", ()))
        d["unasked"] = tuple(d.get("unasked", ()))
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
# Take the lock and read the record in one round trip; a first delivery stores ARGV[3] as the record.
# KEYS: lock, record. ARGV: token, ttl ms, the new record. {0}: busy; {1}: stored new; {1, old}: existing.
_BEGIN = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
local old = redis.call('GET', KEYS[2])
if old then return {1, old} end
redis.call('SET', KEYS[2], ARGV[3])
return {1}
"""
# The last write of a task: store the record (only while the lock is ours), take the archive entry
# off the pending set, release the lock. KEYS: lock, record, pending set. ARGV: token, record or '',
# entry id or ''. 0: the lock was lost and the record was not written.
_FINISH = """
local owned = redis.call('GET', KEYS[1]) == ARGV[1]
if ARGV[2] ~= '' then
  if not owned then return 0 end
  redis.call('SET', KEYS[2], ARGV[2])
end
if ARGV[3] ~= '' then redis.call('SREM', KEYS[3], ARGV[3]) end
if owned then redis.call('DEL', KEYS[1]) end
return 1
"""


class _Scripts:
    """The Lua scripts, registered once per client (called by SHA, not sent each time)."""

    def __init__(self, redis: Any):
        self.save = redis.register_script(_SAVE)
        self.release = redis.register_script(_RELEASE)
        self.renew = redis.register_script(_RENEW)
        self.begin = redis.register_script(_BEGIN)
        self.finish = redis.register_script(_FINISH)


class TxLock:
    """A per-transaction lock (``SET NX PX`` with a random token), released only by its owner."""

    def __init__(self, redis: Any, key: str, ttl_s: float, scripts: _Scripts | None = None):
        import secrets

        self._redis = redis
        self._scripts = scripts or _Scripts(redis)
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
        if not self._scripts.renew(keys=[self.key], args=[self.token, self.ttl_ms]):
            raise LockLost(f"transaction lock {self.key} expired; another delivery will finish the work")

    def release(self) -> None:
        """Release the lock if we still own it."""
        self._scripts.release(keys=[self.key], args=[self.token])


def _json_default(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot store a {type(value).__name__} in a transaction record")


_ENCODER = json.JSONEncoder(default=_json_default, separators=(",", ":"))


def _lost(lock: TxLock) -> LockLost:
    return LockLost(f"transaction lock {lock.key} expired before the record was saved; "
                    "another delivery will finish the work")


class RecordStore:
    """Transaction records and their locks in Redis."""

    def __init__(self, redis: Any, prefix: str, lock_ttl_s: float = 120.0):
        self._redis = redis
        self._prefix = prefix
        self._lock_ttl_s = lock_ttl_s
        self._scripts = _Scripts(redis)

    def record_key(self, transaction_id: str) -> str:
        """The Redis key of a transaction's record."""
        return f"{self._prefix}:tx:{transaction_id}"

    def lock(self, transaction_id: str) -> TxLock:
        """A (not yet acquired) lock for one transaction."""
        return TxLock(self._redis, f"{self._prefix}:lock:tx:{transaction_id}", self._lock_ttl_s, self._scripts)

    def load(self, transaction_id: str) -> TransactionRecord | None:
        """The stored record, or None; StoreError when the stored value is not a record."""
        raw = self._redis.get(self.record_key(transaction_id))
        return None if raw is None else self._parse(transaction_id, raw)

    def _parse(self, transaction_id: str, raw: bytes | str) -> TransactionRecord:
        try:
            return TransactionRecord.from_dict(json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise StoreError(f"record {self.record_key(transaction_id)} is not a transaction record "
                             f"({type(exc).__name__}); inspect it before deleting") from None

    def begin(self, fresh: TransactionRecord, wait_s: float,
              poll_s: float = 0.05) -> tuple[TxLock, TransactionRecord, bool]:
        """Lock ``fresh``'s transaction and read its record, in one round trip while the lock is free.

        When no record exists, ``fresh`` is stored as it (a first delivery). Returns the
        held lock, the record (the stored one or ``fresh``) and whether ``fresh`` was stored.
        LockBusy when another owner keeps the lock for ``wait_s``.
        """
        txid = fresh.transaction_id
        lock = self.lock(txid)
        now = time.time()
        fresh = replace(fresh, created_at=fresh.created_at or now, updated_at=now)
        keys, args = [lock.key, self.record_key(txid)], [lock.token, lock.ttl_ms, fresh.to_json()]
        deadline = time.monotonic() + wait_s
        while not (out := self._scripts.begin(keys=keys, args=args))[0]:
            if time.monotonic() >= deadline:
                raise LockBusy(f"transaction lock {lock.key} is held by another worker; retry later")
            time.sleep(poll_s)
        if len(out) == 1:
            return lock, fresh, True
        return lock, self._parse(txid, out[1]), False

    def save(self, record: TransactionRecord, lock: TxLock) -> TransactionRecord:
        """Store ``record`` if ``lock`` is still ours (extending it); LockLost otherwise."""
        record = _stamped(record)
        ok = self._scripts.save(keys=[lock.key, self.record_key(record.transaction_id)],
                                args=[lock.token, record.to_json(), lock.ttl_ms])
        if not ok:
            raise _lost(lock)
        return record

    def finish(self, record: TransactionRecord | None, lock: TxLock,
               processed: tuple[str, str] | None = None) -> TransactionRecord | None:
        """One round trip: store ``record`` (if any; LockLost when the lock is no longer ours), remove
        ``processed`` = (pending set key, archive entry id) from the pending set, release the lock."""
        if record is not None:
            record = _stamped(record)
        pending, entry_id = processed or ("", "")  # unused keys are passed as the lock's (never written)
        ok = self._scripts.finish(
            keys=[lock.key, self.record_key(record.transaction_id) if record else lock.key, pending or lock.key],
            args=[lock.token, record.to_json() if record else "", entry_id])
        if not ok:
            raise _lost(lock)
        return record

    def writer(self, lock: TxLock, *, deferred: bool = False) -> RecordWriter:
        """A :class:`RecordWriter` for one transaction under ``lock``."""
        return RecordWriter(self, lock, deferred=deferred)

    def ids(self, match: str = "*", count: int = 1000) -> list[str]:
        """Transaction ids with a record (a scan: for tools, not for the hot path)."""
        head = f"{self._prefix}:tx:"
        out = []
        for key in self._redis.scan_iter(match=head + match, count=count):
            text = key.decode() if isinstance(key, bytes) else str(key)
            out.append(text[len(head):])
        return sorted(out)


def _stamped(record: TransactionRecord) -> TransactionRecord:
    now = time.time()
    return replace(record, updated_at=now, created_at=record.created_at or now)


class RecordWriter:
    """How an action writes a transaction's record: at once, or staged until the next write.

    ``writer(rec)`` stores ``rec`` now: every ``started`` step, written before its
    side effect, goes this way. ``writer.stage(rec)`` keeps ``rec`` for the next
    write (or :meth:`finish`): a ``done`` step, written after an idempotent side
    effect, may wait, because if the worker dies first the next delivery repeats
    the step safely (a hold is keyed by transaction id, an approval whose start has
    no result is reconciled with VIP's lookup, review and reject are recorded again).
    That saves a round trip per step on the hot path. ``after`` callbacks run once the
    staged record is stored (metrics that must count a stored fact exactly once).

    A writer built with ``deferred=False`` stores staged records at once (the
    reviewer's commands, which hold the lock briefly and want every step stored).
    """

    def __init__(self, store: RecordStore, lock: TxLock, *, deferred: bool = False):
        self.store, self.lock, self.deferred = store, lock, deferred
        self.latest: TransactionRecord | None = None  # the newest record written or staged
        self._staged: TransactionRecord | None = None
        self._after: list[Callable[[], None]] = []

    def __call__(self, record: TransactionRecord) -> TransactionRecord:
        """Store ``record`` now (with anything staged before it: ``record`` is the newer copy)."""
        self._staged = None
        self.latest = self.store.save(record, self.lock)
        self._run_after()
        return self.latest

    def stage(self, record: TransactionRecord, after: Callable[[], None] | None = None) -> TransactionRecord:
        """Keep ``record`` for the next write (stored at once when the writer is not deferred)."""
        if after is not None:
            self._after.append(after)
        if not self.deferred:
            return self(record)
        self._staged = self.latest = record
        return record

    def finish(self, processed: tuple[str, str] | None = None) -> TransactionRecord | None:
        """Store what is staged, mark the archive entry processed, release the lock: one round trip."""
        staged, self._staged = self._staged, None
        stored = self.store.finish(staged, self.lock, processed)
        if stored is not None:
            self.latest = stored
        self._run_after()
        return self.latest

    def _run_after(self) -> None:
        after, self._after = self._after, []
        for callback in after:
            callback()
