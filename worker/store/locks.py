"""Per-transaction locks in Redis (``SET NX PX`` with a random token), released only by their owner.

The lock keeps two workers off one transaction at a time; the ledger's
``transactions.seq`` is the fencing token behind it (a writer whose lock
expired and whose transaction moved on cannot write: ``LockLost``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import NoScriptError

from worker.errors import StoreError
from worker.store import keys


class LockBusy(StoreError):
    """Another worker holds the transaction's lock; try again later."""


class LockLost(StoreError):
    """The lock expired and another worker may own the transaction: stop without writing."""


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Take the lock and count the delivery, in one round trip. KEYS: lock, delivery counter (a hash: n, the
# deliveries; r, those that ended in the task's own retry; known = 1 when the ledger is known to hold the
# transaction). ARGV: token, lock ttl ms, counter ttl ms.
# {0}: the lock is busy; else {the delivery's number, known, deliveries that ended in a retry}.
_BEGIN = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0, 0, 0} end
local n = redis.call('HINCRBY', KEYS[2], 'n', 1)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local got = redis.call('HMGET', KEYS[2], 'known', 'r')
return {n, tonumber(got[1] or '0'), tonumber(got[2] or '0')}
"""
# A delivery that ends in the task's own retry (a store or wallet failure, caught and re-queued) ended: it
# is not one that killed its worker, so the delivery limit does not count it. It also marks the ledger as
# possibly holding the transaction (the next delivery reads it first). KEYS: lock, counter. ARGV: token.
_RETRYING = """
redis.call('HINCRBY', KEYS[2], 'r', 1)
redis.call('HSET', KEYS[2], 'known', 1)
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
# The last Redis step of a task, after the ledger committed: the buffer entry leaves the pending set
# and the stream (the ledger holds it now), and the lock is released if still ours.
# KEYS: lock, pending set, stream. ARGV: token, entry id or ''.
_FINISH = """
if ARGV[2] ~= '' then
  redis.call('SREM', KEYS[2], ARGV[2])
  redis.call('XDEL', KEYS[3], ARGV[2])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


class Locks:
    """Makes the locks of one Redis client and key prefix (the scripts registered once)."""

    def __init__(self, redis: Any, prefix: str, ttl_s: float = 120.0, count_ttl_s: float = 7 * 86_400):
        self.redis, self.prefix, self.ttl_s = redis, prefix, ttl_s
        self.count_ttl_ms = int(count_ttl_s * 1000)  # how long a transaction's delivery count is kept
        self.begin_script = redis.register_script(_BEGIN)
        self.release_script = redis.register_script(_RELEASE)
        self.renew_script = redis.register_script(_RENEW)
        self.finish_script = redis.register_script(_FINISH)
        self.retrying_script = redis.register_script(_RETRYING)

    def lock(self, transaction_id: str) -> TxLock:
        """A (not yet acquired) lock for one transaction."""
        return TxLock(self, keys.tx_lock(self.prefix, transaction_id), transaction_id)

    def restart_deliveries(self, transaction_id: str) -> None:
        """Count a transaction's deliveries from zero again (a forced replay re-decides it from the start),
        noting that the ledger holds it (so its next task reads the ledger first)."""
        key = keys.deliveries(self.prefix, transaction_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"n": 0, "known": 1})
        pipe.pexpire(key, self.count_ttl_ms)
        pipe.execute()


class TxLock:
    """One transaction's lock; ``renew_if_due`` keeps it while a long task runs."""

    def __init__(self, locks: Locks, key: str, transaction_id: str = ""):
        self._locks = locks
        self.key = key
        self.transaction_id = transaction_id
        self.token = secrets.token_hex(16)
        self.ttl_ms = int(locks.ttl_s * 1000)
        self._renewed = 0.0  # monotonic seconds of the last acquire or renew

    def acquire(self, wait_s: float = 0.0, poll_s: float = 0.05) -> None:
        """Take the lock, waiting up to ``wait_s`` seconds; LockBusy when another owner keeps it."""
        deadline = time.monotonic() + wait_s
        while not self._locks.redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
            if time.monotonic() >= deadline:
                raise LockBusy(f"transaction lock {self.key} is held by another worker; retry later")
            time.sleep(poll_s)
        self._renewed = time.monotonic()

    def begin(self, wait_s: float = 0.0, poll_s: float = 0.05) -> tuple[int, bool, int]:
        """Take the lock (waiting up to ``wait_s`` seconds) and count this delivery of the transaction, in
        one round trip: (the delivery's number, whether the ledger is known to hold the transaction, how many
        earlier deliveries ended in the task's own retry). LockBusy when another owner keeps the lock."""
        counter = keys.deliveries(self._locks.prefix, self.transaction_id)
        args = [self.token, self.ttl_ms, self._locks.count_ttl_ms]
        deadline = time.monotonic() + wait_s
        while not (out := self._locks.begin_script(keys=[self.key, counter], args=args))[0]:
            if time.monotonic() >= deadline:
                raise LockBusy(f"transaction lock {self.key} is held by another worker; retry later")
            time.sleep(poll_s)
        self._renewed = time.monotonic()
        return int(out[0]), bool(int(out[1])), int(out[2])

    def retrying(self) -> None:
        """This delivery ends in the task's own retry: not counted against ``worker.max_deliveries`` (the
        task bounds its retries with ``worker.max_retries``); the lock is released if still ours."""
        counter = keys.deliveries(self._locks.prefix, self.transaction_id)
        self._locks.retrying_script(keys=[self.key, counter], args=[self.token])

    def renew(self) -> None:
        """Extend the lock; LockLost when it is no longer ours."""
        if not self._locks.renew_script(keys=[self.key], args=[self.token, self.ttl_ms]):
            raise LockLost(f"transaction lock {self.key} expired; another delivery will finish the work")
        self._renewed = time.monotonic()

    def renew_if_due(self) -> None:
        """Renew once a third of the lifetime has passed (a round trip saved on quick tasks)."""
        if time.monotonic() - self._renewed > self.ttl_ms / 3000:
            self.renew()

    def release(self) -> None:
        """Release the lock if we still own it."""
        self._locks.release_script(keys=[self.key], args=[self.token])

    def finish(self, entry_id: str | None, also: Callable[[Any], None] | None = None,
               reload: Callable[[], None] | None = None) -> None:
        """One round trip: drop ``entry_id`` from the intake buffer and its pending set, release the lock;
        ``also`` queues more commands on the same pipeline (e.g. a velocity mark, by script SHA: a pipeline
        given Script objects asks SCRIPT EXISTS first, a round trip more). After a Redis restart emptied
        the script cache, the scripts are loaded (``reload`` loads those of ``also``) and it runs again."""
        p = self._locks.prefix
        keys_ = [self.key, keys.pending(p), keys.archive(p)]
        args = [self.token, entry_id or ""]
        if also is None:
            self._locks.finish_script(keys=keys_, args=args)
            return
        for attempt in (1, 2):
            pipe = self._locks.redis.pipeline(transaction=False)
            also(pipe)
            pipe.evalsha(self._locks.finish_script.sha, len(keys_), *keys_, *args)
            try:
                pipe.execute()
                return
            except NoScriptError:
                if attempt == 2:
                    raise
                self._locks.redis.script_load(_FINISH)
                if reload is not None:
                    reload()
