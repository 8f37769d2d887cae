"""Intake: archive, de-duplicate and enqueue one authenticated notification.

This is where "nothing lost, nothing queued twice" is kept. Per transaction a
hash ``{prefix}:seen:{transaction_id}`` maps each body's sha256 to its archive
entry, its status, whether its task was queued, and a short publishing lease.
One Lua script decides, archives and (by default) pushes the Celery task
message (built by Celery's and kombu's own code, see ``taskmessage``) atomically, so two concurrent deliveries of one
body cannot both archive or both queue, and nothing is archived unqueued:

- a new transaction: archived ``valid``, queued;
- the same body again, already queued: counted as a duplicate, nothing else;
- the same body again, archived but never queued (only possible with a separate
  ``Publisher`` whose broker failed): queued now;
- another body for a known transaction: archived ``conflict`` and queued (the
  worker escalates it to review).

With a ``Publisher`` (e.g. ``CeleryPublisher``) the message is sent after the
script, under a short lease that makes concurrent duplicates wait for it.
Error notifications are de-duplicated apart (``{prefix}:seen:error:{id}``), so
that an error about a deposit is not taken for a conflicting deposit.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import redis

from worker.errors import StoreError, reason
from worker.store import keys
from worker.store.archive import Archive, archive_key, now_ms, pending_key, tx_index_key
from worker.store.publisher import Publisher
from worker.store.replication import NotReplicated, ReplicaAcks
from worker.store.taskmessage import LUA_HELPERS, TaskMessages

if TYPE_CHECKING:
    from worker.config import Settings
    from worker.notification import Notification

Outcome = Literal["accepted", "duplicate", "conflict", "invalid"]

_CLAIM = LUA_HELPERS + """
local seen, sha, now, lease = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local inline = ARGV[8] == '1'
local function enqueue(id)
  redis.call('LPUSH', KEYS[5], task_message(id, 10))
  redis.call('HSET', seen, sha .. ':q', '1')
  redis.call('HDEL', seen, sha .. ':lease')
end
local id = redis.call('HGET', seen, sha)
if id then
  local status = redis.call('HGET', seen, sha .. ':s')
  if redis.call('HGET', seen, sha .. ':q') == '1' then
    redis.call('HINCRBY', seen, 'duplicates', 1)
    return {'duplicate', id, status}
  end
  if tonumber(redis.call('HGET', seen, sha .. ':lease') or '0') > now then
    return {'busy', id, status}
  end
  if inline then enqueue(id) return {'queued', id, status} end
  redis.call('HSET', seen, sha .. ':lease', now + lease)
  return {'publish', id, status}
end
local status = 'valid'
if redis.call('HSETNX', seen, 'first', sha) == 0 then status = 'conflict' end
id = redis.call('XADD', KEYS[2], '*', 'body', ARGV[6], 'kind', ARGV[5], 'received_at', ARGV[2],
  'status', status, 'transaction_id', ARGV[7], 'body_sha256', sha, 'error', '', 'route', ARGV[9])
redis.call('HSET', seen, sha, id, sha .. ':s', status)
redis.call('PEXPIRE', seen, ARGV[4])
redis.call('RPUSH', KEYS[4], id)
redis.call('PEXPIRE', KEYS[4], ARGV[4])
redis.call('SADD', KEYS[3], id)
if inline then enqueue(id) return {'queued', id, status} end
redis.call('HSET', seen, sha .. ':lease', now + lease)
return {'publish', id, status}
"""

_QUEUED = """
redis.call('HSET', KEYS[1], ARGV[1] .. ':q', '1')
redis.call('HDEL', KEYS[1], ARGV[1] .. ':lease')
"""


@dataclass(frozen=True)
class IntakeResult:
    """What intake did with a notification; ``status`` is what the ingestor answers."""

    status: Outcome
    entry_id: str
    transaction_id: str | None


def seen_key(prefix: str, kind: str, transaction_id: str) -> str:
    """The de-duplication hash of one transaction (error notifications apart)."""
    return keys.seen(prefix, kind, transaction_id)


class Intake:
    """Archive + de-duplicate + enqueue; every Redis or broker failure is a StoreError."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        publisher: Publisher | None = None,
        *,
        messages: TaskMessages | None = None,
        queue: str = "vipflow",
        retention_ms: int = 7 * 86_400_000,  # the dedupe window: how long seen-markers live
        lease_ms: int = 10_000,
        busy_wait_s: float = 1.0,
        replica_acks: int = 0,
        replica_ack_timeout_ms: int = 500,
    ):
        # With replicas wanted, every write intake acknowledges is confirmed by WAIT (worker.store.replication).
        self._acks = ReplicaAcks(client, replica_acks, replica_ack_timeout_ms)
        self.archive = Archive(client, prefix, index_ttl_ms=retention_ms, acks=self._acks)
        self._prefix = prefix
        self._publisher = publisher
        if publisher is None and messages is None:
            raise ValueError("intake needs a publisher or the task messages it pushes itself (TaskMessages)")
        self._messages = messages if publisher is None else None
        self._queue = queue
        self._retention_ms = retention_ms
        self._lease_ms = lease_ms
        self._busy_wait_s = busy_wait_s
        self._claim = client.register_script(_CLAIM)
        self._queued = client.register_script(_QUEUED)
        self._redis = client

    @classmethod
    def from_settings(
        cls, settings: Settings, client: redis.Redis, publisher: Publisher | None = None
    ) -> Intake:
        """An intake on the configured prefix and queue; seen-markers live ``ledger.dedupe_window_s``; replicas
        confirm every write as ``redis.replica_acks`` says."""
        retention_ms = int(settings.ledger.dedupe_window_s * 1000)
        messages = TaskMessages.from_settings(settings) if publisher is None else None
        return cls(client, settings.redis.key_prefix, publisher, messages=messages,
                   queue=settings.worker.queue, retention_ms=retention_ms,
                   replica_acks=settings.redis.wanted_replica_acks(),
                   replica_ack_timeout_ms=settings.redis.replica_ack_timeout_ms)

    def prepare(self) -> None:
        """Have Celery and kombu build the task message template now (one Redis round trip) rather than on the
        first notification; StoreError when they cannot (the first notification then tries again)."""
        if self._messages is not None:
            self._messages.envelope()

    def accept(
        self,
        kind: str,
        raw_body: bytes,
        notification: Notification | None,
        error: str | None,
        *,
        transaction_id: str | None = None,
        route: str | None = None,
    ) -> IntakeResult:
        """Archive (and, when valid, queue) one authenticated body; StoreError when not stored."""
        if notification is None:
            entry_id = self.archive.append(
                kind, raw_body, status="invalid", transaction_id=transaction_id, error=error, route=route
            )
            return IntakeResult("invalid", entry_id, transaction_id)
        return self._accept_valid(kind, raw_body, notification.transaction_id, route or "")

    def _accept_valid(self, kind: str, raw_body: bytes, tx: str, route: str) -> IntakeResult:
        sha = hashlib.sha256(raw_body).hexdigest()
        seen = seen_key(self._prefix, kind, tx)
        envelope = self._messages.envelope() if self._messages else None
        keys = [seen, archive_key(self._prefix), pending_key(self._prefix),
                tx_index_key(self._prefix, tx), envelope.key if envelope else self._queue]
        inline = ["1", route, *envelope.pieces] if envelope else ["0", route]
        deadline = time.monotonic() + self._busy_wait_s
        while True:
            args: list[str | int | bytes] = [
                sha, now_ms(), self._lease_ms, self._retention_ms, kind, raw_body, tx, *inline
            ]
            try:
                verdict, raw_id, raw_status = self._run(partial(self._acks.run, self._claim, keys, args))
            except NotReplicated as exc:
                if exc.result is not None and exc.result[0] == b"publish":  # the next delivery publishes it
                    self._run(lambda: self._redis.hdel(seen, f"{sha}:lease"))
                raise
            if verdict != b"busy":
                break
            # Another delivery of this very body is being queued right now: wait
            # for it rather than queue a second task.
            if time.monotonic() >= deadline:
                raise StoreError(
                    "another delivery of this notification is being queued; retry shortly"
                )
            time.sleep(0.01)
        entry_id = raw_id.decode()
        archived: Outcome = "conflict" if raw_status == b"conflict" else "accepted"
        if verdict == b"duplicate":
            return IntakeResult("duplicate", entry_id, tx)
        if verdict == b"queued" or self._publisher is None:
            return IntakeResult(archived, entry_id, tx)
        try:
            self._publisher.publish(entry_id)
        except StoreError:
            # Let the next delivery take the lease at once and queue it.
            self._run(lambda: self._redis.hdel(seen, f"{sha}:lease"))
            raise
        self._run(lambda: self._queued(keys=[seen], args=[sha]))
        return IntakeResult(archived, entry_id, tx)

    def duplicates(self, kind: str, transaction_id: str) -> int:
        """How many duplicate deliveries of this transaction were answered without queueing."""
        raw = self._run(
            lambda: self._redis.hget(seen_key(self._prefix, kind, transaction_id), "duplicates")
        )
        return int(raw or 0)

    def _run(self, op: Callable[[], Any]) -> Any:
        try:
            return op()
        except redis.RedisError as exc:
            raise StoreError(
                f"cannot store the notification: Redis failed ({reason(exc)}); "
                "check that Redis is up"
            ) from None
