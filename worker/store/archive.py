"""The intake buffer: every authenticated body, exactly as received, in a Redis stream.

The stream ``{prefix}:archive`` holds a notification from the moment the
ingestor accepts it until the ledger holds it (``worker.drain``; a task also
copies its own). Beside it live a small index of entry ids per transaction
(``{prefix}:archive:tx:{id}``, expiring with the dedupe window) and the set of
entries whose task has not finished (``{prefix}:archive:pending``). Key names
come from ``worker.store.keys``. The Authorization header is never stored.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import redis

from worker.errors import StoreError, reason
from worker.store import keys

if TYPE_CHECKING:
    from worker.store.replication import ReplicaAcks

Status = Literal["valid", "invalid", "conflict"]
STATUSES: tuple[Status, ...] = ("valid", "invalid", "conflict")


@dataclass(frozen=True)
class ArchivedNotification:
    """One archived notification: the raw body and what intake decided about it."""

    entry_id: str
    kind: str
    body: bytes
    received_at: int  # epoch milliseconds
    status: Status
    transaction_id: str | None
    body_sha256: str
    error: str | None
    route: str | None = None  # the path it was posted to


def archive_key(prefix: str) -> str:
    """The stream holding the intake buffer."""
    return keys.archive(prefix)


def tx_index_key(prefix: str, transaction_id: str) -> str:
    """The list of buffer entry ids for one transaction."""
    return keys.archive_tx(prefix, transaction_id)


def pending_key(prefix: str) -> str:
    """The set of entries whose task has not finished."""
    return keys.pending(prefix)


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def entry_ms(entry_id: bytes | str) -> int | None:
    """The receipt time (epoch ms) in an intake buffer entry id (``ms-seq``), None when it is not one."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    head = text.partition("-")[0]
    return int(head) if head.isdigit() else None


def oldest_age_s(entry_ids: Iterable[bytes | str], now: float) -> float:
    """Seconds since the oldest of ``entry_ids`` was received (0.0 when there are none), at ``now`` (epoch s)."""
    times = [ms for ms in (entry_ms(e) for e in entry_ids) if ms is not None]
    return max(0.0, now - min(times) / 1000) if times else 0.0


def _text(fields: dict[bytes, bytes], name: bytes) -> str | None:
    value = fields.get(name)
    return value.decode() if value else None


def _entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> ArchivedNotification:
    status = (fields.get(b"status") or b"").decode()
    if status not in STATUSES:
        raise StoreError(
            f"archive entry {entry_id!r} has an unknown status; was the stream written by vipflow?"
        )
    return ArchivedNotification(
        entry_id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
        kind=(fields.get(b"kind") or b"").decode(),
        body=fields.get(b"body", b""),
        received_at=int(fields.get(b"received_at") or 0),
        status=status,
        transaction_id=_text(fields, b"transaction_id"),
        body_sha256=(fields.get(b"body_sha256") or b"").decode(),
        error=_text(fields, b"error"),
        route=_text(fields, b"route"),
    )


# XADD and its index entries in one script, so that an entry is never archived
# without being findable by transaction and by the pending sweep.
_APPEND = """
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
if ARGV[1] == '1' then
  redis.call('RPUSH', KEYS[2], id)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
if ARGV[2] == '1' then redis.call('SADD', KEYS[3], id) end
return id
"""

class Archive:
    """Append to, read and trim the archive stream; every Redis failure becomes StoreError."""

    def __init__(self, client: redis.Redis, prefix: str, *, index_ttl_ms: int = 7 * 86_400_000,
                 acks: ReplicaAcks | None = None):
        self._redis = client
        self._prefix = prefix
        self.key = archive_key(prefix)
        self._pending = pending_key(prefix)
        self.pending_set = self._pending  # the set of entries whose decision is not stored yet
        self._append = client.register_script(_APPEND)
        self._index_ttl_ms = index_ttl_ms
        self._acks = acks  # intake's: an appended body is acknowledged once replicas hold it

    def append(
        self,
        kind: str,
        raw_body: bytes,
        *,
        status: Status,
        transaction_id: str | None,
        error: str | None,
        pending: bool | None = None,
        route: str | None = None,
    ) -> str:
        """Archive one body, return its entry id; valid and conflict entries start pending."""
        fields: dict[str, bytes | str | int] = {
            "body": raw_body,
            "kind": kind,
            "received_at": now_ms(),
            "status": status,
            "transaction_id": transaction_id or "",
            "body_sha256": hashlib.sha256(raw_body).hexdigest(),
            "error": error or "",
            "route": route or "",
        }
        if pending is None:
            pending = status != "invalid"
        keys = [self.key, tx_index_key(self._prefix, transaction_id or ""), self._pending]
        args: list[bytes | str | int] = [1 if transaction_id else 0, 1 if pending else 0, self._index_ttl_ms]
        for name, value in fields.items():
            args += [name, value]
        if self._acks is not None:
            acks = self._acks
            entry_id = self._call(lambda: acks.run(self._append, keys, args), "archive the body")
        else:
            entry_id = self._call(lambda: self._append(keys=keys, args=args), "archive the body")
        return bytes(entry_id).decode()

    def get(self, entry_id: str) -> ArchivedNotification | None:
        """The entry with this id, or None when there is none (or it was trimmed)."""
        rows = self._call(lambda: self._redis.xrange(self.key, entry_id, entry_id, count=1))
        return _entry(*rows[0]) if rows else None

    def iter_range(
        self, since_ms: int | None = None, until_ms: int | None = None, batch: int = 1000
    ) -> Iterator[ArchivedNotification]:
        """Entries received in [since_ms, until_ms], oldest first, read ``batch`` at a time."""
        start = "-" if since_ms is None else f"{since_ms}-0"
        end = "+" if until_ms is None else f"{until_ms}-{2**64 - 1}"
        while True:
            rows = self._call(partial(self._redis.xrange, self.key, start, end, count=batch))
            for entry_id, fields in rows:
                yield _entry(entry_id, fields)
            if len(rows) < batch:
                return
            start = "(" + rows[-1][0].decode()

    def by_transaction(self, transaction_id: str) -> list[ArchivedNotification]:
        """Every entry still archived for this transaction, oldest first."""
        index = tx_index_key(self._prefix, transaction_id)
        ids = self._call(lambda: self._redis.lrange(index, 0, -1))
        found = (self.get(i.decode()) for i in ids)
        return [e for e in found if e is not None]

    def forget(self, *entry_ids: str) -> None:
        """Drop entries the ledger holds (and whose tasks finished) from the buffer and its pending set."""
        if not entry_ids:
            return
        pipe = self._redis.pipeline(transaction=True)
        pipe.srem(self._pending, *entry_ids)
        pipe.xdel(self.key, *entry_ids)
        self._call(pipe.execute, "drop entries from the intake buffer")

    def pending_ids(self) -> set[str]:
        """The ids of entries whose task has not finished."""
        return {i.decode() for i in self._call(lambda: self._redis.smembers(self._pending))}

    def unprocessed(self) -> list[ArchivedNotification]:
        """Entries archived as valid or conflict whose decision was never recorded, oldest first."""
        ids = sorted(
            (i.decode() for i in self._call(lambda: self._redis.smembers(self._pending))),
            key=lambda i: tuple(int(p) for p in i.split("-")),
        )
        found = (self.get(i) for i in ids)
        return [e for e in found if e is not None]

    def _call(self, op: Callable[[], Any], doing: str = "read the archive") -> Any:
        try:
            return op()
        except redis.RedisError as exc:
            raise StoreError(
                f"cannot {doing}: Redis failed ({reason(exc)}); check redis.url and that Redis is up"
            ) from None
