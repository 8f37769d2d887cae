"""Recovery: notifications archived but not finished are queued again, without a human.

A notification is *pending* from the moment intake archives it (the intake
buffer's pending set, ``{prefix}:archive:pending``, and the ledger's unfinished
notifications once the drain moved it) until its task finished. Its task
message can be lost on the way: the task never queued, a worker killed
(SIGKILL, out of memory) with the message still unacknowledged at the broker,
a retry that could not be published while Redis was down (Celery then drops
the message), a message acknowledged by mistake. Celery's own answer, the
broker's visibility timeout, stays long (``worker.visibility_timeout_s``, an
hour: tasks call slow services); recovery does not wait for it.

One worker at a time (a lease in Redis, ``{prefix}:lock:recovery``), every
``recover_after_s / 10`` seconds (0.5 s to 15 s), looks at every pending
notification received more than ``worker.recover_after_s`` ago (about once per
``recover_after_s``, the ledger's unfinished notifications of the last
``ledger.dedupe_window_s`` that Redis does not list are made pending again first):

- its transaction's lock is held: a task works on it (a live task renews the
  lock with every write): nothing to do;
- its transaction's delivery count (``{prefix}:deliveries:{id}``, counted by
  every task as it starts) moved since the last look: a task ran since
  (a retry waits in a worker for its countdown, at most 30 s): watched again
  from now;
- otherwise it is *idle* since the first look that saw it so. Idle for
  ``recover_after_s`` less two rounds, and not on the queue (the queue's list
  is read only then): its task message was lost, so it is queued again through
  Celery (``worker.store.publisher.CeleryPublisher``) and watched again from now.

So a notification whose worker died is queued again within ``recover_after_s``
after its lock expired (``worker.lock_ttl_s`` after the task's last write).
What this guarantees rests on what the task already guarantees: a second
delivery of a notification (a message recovered while the lost one comes back
after the visibility timeout) leaves it as it is once decided and acted on; an
approval whose outcome is unknown is reconciled with VIP Connect's transaction
lookup before any repeat, so VIP approves once; the delivery limit
(``worker.max_deliveries``) counts every delivery that did not finish, so a
notification that kills its worker each time ends in the dead letters and review
instead of looping. The watch list (``{prefix}:recovery:watch``, a hash of entry
id to ``first idle ms:delivery count:transaction id``, ``busy`` for the time while
a task holds the lock) holds pending entries only and expires when no worker sweeps.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from worker.errors import reason
from worker.ledger import Ledger
from worker.metrics import RECOVERED
from worker.store import keys
from worker.store.archive import Archive
from worker.store.publisher import Publisher
from worker.store.taskmessage import TASK_NAME, read_task

log = logging.getLogger("vipflow.recovery")
BATCH = 500  # pending entries read per Redis round trip
QUEUE_PAGE = 1000  # queued messages read per round trip when the queue is searched
# Take the lease, or keep it when it is ours. KEYS: lease. ARGV: token, ttl ms.
_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""


def interval_s(recover_after_s: float) -> float:
    """Seconds between two rounds: a tenth of ``recover_after_s``, kept within 0.5 s .. 15 s."""
    return min(max(recover_after_s / 10, 0.5), 15.0)


@dataclass
class RecoveryRound:
    """What one round saw and did (entry ids)."""

    looked_at: int = 0
    requeued: list[str] = field(default_factory=list)
    still_queued: list[str] = field(default_factory=list)  # idle long, but their message waits on the queue
    missing: list[str] = field(default_factory=list)  # pending, but neither the buffer nor the ledger has them


@dataclass(frozen=True)
class _Seen:
    entry_id: str
    transaction_id: str | None


class Recovery:
    """Finds pending notifications whose task message was lost and queues them again; see the module."""

    def __init__(self, client: Any, prefix: str, archive: Archive, ledger: Ledger, publisher: Publisher, *,
                 queue: str, recover_after_s: float, ledger_window_s: float = 7 * 86_400):
        self._redis, self._prefix, self._archive, self._ledger = client, prefix, archive, ledger
        self._publisher, self._queue = publisher, queue
        self.recover_after_s = recover_after_s
        self.interval_s = interval_s(recover_after_s)
        self._ledger_window_ms = int(ledger_window_s * 1000)
        self._ledger_every = max(1, round(recover_after_s / self.interval_s))  # rounds between ledger looks
        self._rounds = 0
        self._lease_ms = int(max(3 * self.interval_s, 5.0) * 1000)
        self._token = secrets.token_hex(8)
        self._lease_script = client.register_script(_LEASE)
        self._watch = keys.recovery_watch(prefix)
        self._lease = keys.recovery_lease(prefix)

    def once(self, now: float | None = None) -> RecoveryRound:
        """One round at ``now`` (epoch seconds; default the clock). Empty when another worker holds the
        lease. Raises StoreError/LedgerUnavailable (and redis errors) when Redis or the ledger fail."""
        now = time.time() if now is None else now
        out = RecoveryRound()
        if not self._lease_script(keys=[self._lease], args=[self._token, self._lease_ms]):
            return out
        now_ms = int(now * 1000)
        old_ms = now_ms - int(self.recover_after_s * 1000)
        pending = {i.decode() for i in self._redis.smembers(keys.pending(self._prefix))}
        ledger_only: set[str] = set()
        if self._rounds % self._ledger_every == 0:  # about once per recover_after_s: the query is the costly part
            recent = self._ledger.unprocessed(since_ms=now_ms - self._ledger_window_ms)
            ledger_only = {n.entry_id for n in recent if n.received_at <= old_ms} - pending
        self._rounds += 1
        if ledger_only:  # Redis lost them (or never had them): pending again, so the task's finish clears them
            self._redis.sadd(keys.pending(self._prefix), *ledger_only)
            pending |= ledger_only
        watched = {k.decode(): v.decode() for k, v in self._redis.hgetall(self._watch).items()}
        gone = [i for i in watched if i not in pending]
        if gone:
            self._redis.hdel(self._watch, *gone)
        old = sorted((i for i in pending if _received_ms(i) <= old_ms), key=_order)
        idle_for_ms = int(max(self.recover_after_s - 2 * self.interval_s, 0) * 1000)
        stuck: list[tuple[_Seen, int]] = []
        updates: dict[str, str] = {}
        for batch in _batches(old, BATCH):
            seen = self._transactions(batch, watched)
            for item, (locked, count) in zip(seen, self._activity(seen), strict=True):
                out.looked_at += 1
                mark = watched.get(item.entry_id)
                since, last, _ = _parse(mark)
                if locked:  # a task works on it: not idle (the transaction id is kept: no lookup next time)
                    wanted = f"busy:{count}:{item.transaction_id or ''}"
                elif since is None or last != str(count):
                    wanted = f"{now_ms}:{count}:{item.transaction_id or ''}"
                else:
                    wanted = mark or ""
                    if now_ms - since >= idle_for_ms:
                        stuck.append((item, count))
                if wanted != mark:
                    updates[item.entry_id] = wanted
        if stuck:
            self._settle(stuck, now_ms, updates, out)
        forget = [k for k, v in updates.items() if not v]
        keep = {k: v for k, v in updates.items() if v}
        pipe = self._redis.pipeline(transaction=False)
        if forget:
            pipe.hdel(self._watch, *forget)
        if keep:
            pipe.hset(self._watch, mapping=keep)
        pipe.pexpire(self._watch, max(self._lease_ms * 10, int(self.recover_after_s * 4000)))
        pipe.execute()
        if out.requeued or out.missing:
            log.warning("recovery: queued again %d notification(s) whose task message was lost",
                        len(out.requeued), extra={"requeued": out.requeued[:20], "missing": out.missing[:20]})
        return out

    def _settle(self, stuck: list[tuple[_Seen, int]], now_ms: int, updates: dict[str, str],
                out: RecoveryRound) -> None:
        """Queue again the stuck entries whose message is not on the queue; each is watched again from now."""
        queued = self._on_queue({item.entry_id for item, _ in stuck})
        for item, count in stuck:
            updates[item.entry_id] = f"{now_ms}:{count}:{item.transaction_id or ''}"
            if item.entry_id in queued:
                out.still_queued.append(item.entry_id)
            elif item.transaction_id is None:
                # Pending but nowhere to be read: a task could do nothing with it either. Said once, loudly.
                self._redis.srem(keys.pending(self._prefix), item.entry_id)
                updates[item.entry_id] = ""
                out.missing.append(item.entry_id)
                RECOVERED.labels("missing").inc()
                log.error("recovery: a pending notification is in neither the intake buffer nor the ledger",
                          extra={"entry_id": item.entry_id})
            else:
                self._publisher.publish(item.entry_id)
                out.requeued.append(item.entry_id)
                RECOVERED.labels("requeued").inc()
                log.warning("recovery: queued again", extra={"entry_id": item.entry_id,
                                                               "transaction_id": item.transaction_id})

    def _transactions(self, entry_ids: list[str], watched: dict[str, str]) -> list[_Seen]:
        """Each entry's transaction id: from the watch list when it was seen before, else from the intake
        buffer, else the ledger (None: neither has it)."""
        known = {e: _parse(watched.get(e))[2] for e in entry_ids}
        unknown = [e for e in entry_ids if not known[e]]
        pipe = self._redis.pipeline(transaction=False)
        for entry_id in unknown:
            pipe.xrange(keys.archive(self._prefix), entry_id, entry_id, count=1)
        found = dict(zip(unknown, pipe.execute() if unknown else [], strict=True))
        out = []
        for entry_id in entry_ids:
            if known[entry_id]:
                out.append(_Seen(entry_id, known[entry_id]))
                continue
            rows = found[entry_id]
            txid = None
            if rows:
                txid = (rows[0][1].get(b"transaction_id") or b"").decode() or None
            else:
                stored = self._ledger.notification(entry_id)
                txid = stored.transaction_id if stored is not None else None
            out.append(_Seen(entry_id, txid))
        return out

    def _activity(self, seen: list[_Seen]) -> list[tuple[bool, int]]:
        """Per entry: whether its transaction's lock is held, and how many deliveries it has had."""
        pipe = self._redis.pipeline(transaction=False)
        for item in seen:
            txid = item.transaction_id or ""
            pipe.exists(keys.tx_lock(self._prefix, txid))
            pipe.hget(keys.deliveries(self._prefix, txid), "n")
        raw = pipe.execute()
        return [(bool(raw[2 * i]), int(raw[2 * i + 1] or 0)) for i in range(len(seen))]

    def _on_queue(self, wanted: set[str]) -> set[str]:
        """Which of ``wanted`` have a ``process_notification`` message waiting on the queue's lists."""
        from kombu.transport.redis import PRIORITY_STEPS, Channel

        found: set[str] = set()
        for step in PRIORITY_STEPS:  # kombu's list per priority step: the queue's name, then name + sep + step
            name = self._queue if not step else f"{self._queue}{Channel.sep}{step}"
            start = 0
            while True:
                page = self._redis.lrange(name, start, start + QUEUE_PAGE - 1)
                for raw in page:
                    task = read_task(raw)
                    if task is not None and task[0] == TASK_NAME and task[1] and str(task[1][0]) in wanted:
                        found.add(str(task[1][0]))
                if len(page) < QUEUE_PAGE:
                    break
                start += QUEUE_PAGE
        return found

    def release(self) -> None:
        """Give the lease up (a worker shutting down), so another takes over at once."""
        if self._redis.get(self._lease) == self._token.encode():
            self._redis.delete(self._lease)


def _parse(mark: str | None) -> tuple[int | None, str, str | None]:
    """A watch value ``since:count:transaction id`` (``since`` is ``busy`` while a task holds the lock):
    (since in epoch ms or None, the delivery count seen, the transaction id or None)."""
    if not mark:
        return None, "", None
    since, _, rest = mark.partition(":")
    count, _, txid = rest.partition(":")
    return (int(since) if since.isdigit() else None), count, (txid or None)


def _received_ms(entry_id: str) -> int:
    head = entry_id.partition("-")[0]
    return int(head) if head.isdigit() else 0


def _order(entry_id: str) -> tuple[int, int]:
    head, _, tail = entry_id.partition("-")
    return (int(head) if head.isdigit() else 0, int(tail) if tail.isdigit() else 0)


def _batches(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class Recoverer:
    """Runs :meth:`Recovery.once` every ``interval_s`` seconds in a daemon thread."""

    def __init__(self, recovery: Recovery):
        self._recovery = recovery
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vipflow-recovery", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (waits for a round in progress) and give the lease up."""
        self._stop.set()
        self._thread.join(timeout=30)
        try:
            self._recovery.release()
        except Exception as exc:  # noqa: BLE001 - the lease expires by itself
            log.debug("recovery lease not released (%s)", reason(exc))

    def _loop(self) -> None:
        while not self._stop.wait(self._recovery.interval_s):
            try:
                self._recovery.once()
            except Exception as exc:  # noqa: BLE001 - the next round tries again; the worker goes on
                log.warning("recovery round failed (%s); trying again in %g s", reason(exc),
                            self._recovery.interval_s)
