"""The drain: moves the intake buffer (a Redis stream) into the ledger, so Redis stays bounded.

The ingestor answers VIP Connect once a body is in the buffer; a task copies
its own notification into the ledger on its first write. The drain, a daemon
thread of every ``vipflow worker`` (one at a time, under a lease in Redis),
copies buffered entries into the ledger's ``notifications`` table (invalid
ones too, marked done: they are never queued) and then deletes them from the
stream. An entry whose task has not finished is left to that task for a minute
(the task copies it with its first write); after that the drain copies it too.
Such entries stay in the pending set, so they remain findable for replay; their
body is then read from the ledger.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any

from worker.ledger import Ledger
from worker.store import keys
from worker.store.archive import Archive, _entry

log = logging.getLogger("vipflow.drain")
BATCH = 500
_DROP_IF_EMPTY = "if redis.call('XLEN', KEYS[1]) == 0 then return redis.call('DEL', KEYS[1]) end return 0"


def drain_once(client: Any, archive: Archive, ledger: Ledger, prefix: str, lease_s: float = 30.0,
               leave_pending_s: float = 60.0) -> int:
    """Copy buffered entries into the ledger and drop them from the stream; how many moved (0 when
    another worker holds the lease). An entry whose task has not finished is left to that task (which
    copies it with its first write) for ``leave_pending_s`` seconds after its receipt, so a backlog is
    not copied twice. Raises StoreError/LedgerUnavailable on failures."""
    token = secrets.token_hex(8)
    lease = keys.drain_lease(prefix)
    if not client.set(lease, token, nx=True, px=int(lease_s * 1000)):
        return 0
    moved = 0
    try:
        start = "-"
        pending = archive.pending_ids()  # one read per round: an entry that finishes meanwhile waits a round
        while True:
            rows = client.xrange(archive.key, start, "+", count=BATCH)
            if not rows:
                break
            cut_ms = int((time.time() - leave_pending_s) * 1000)
            entries = [e for e in (_entry(entry_id, fields) for entry_id, fields in rows)
                       if e.entry_id not in pending or e.received_at < cut_ms]
            start = "(" + (rows[-1][0].decode() if isinstance(rows[-1][0], bytes) else str(rows[-1][0]))
            if not entries:
                if len(rows) < BATCH:
                    break
                continue
            invalid = [e.entry_id for e in entries if e.status == "invalid" or not e.transaction_id]
            ledger.add_notifications(entries, done=invalid)
            ids = [e.entry_id for e in entries]
            pipe = client.pipeline(transaction=True)
            pipe.xdel(archive.key, *ids)
            if invalid:
                pipe.srem(keys.pending(prefix), *invalid)
            pipe.execute()
            moved += len(ids)
            if len(rows) < BATCH:
                break
        # An empty stream is still a key: drop it (atomically, so an XADD in between is never lost).
        client.eval(_DROP_IF_EMPTY, 1, archive.key)
    finally:
        if client.get(lease) == token.encode():
            client.delete(lease)
    if moved:
        log.info("intake buffer drained into the ledger", extra={"moved": moved})
    return moved


class Drainer:
    """Runs :func:`drain_once` now and every ``interval_s`` seconds in a daemon thread."""

    def __init__(self, client: Any, archive: Archive, ledger: Ledger, prefix: str, interval_s: float):
        self._args = (client, archive, ledger, prefix)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vipflow-drain", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (waits for a round in progress)."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            try:
                drain_once(*self._args)
            except Exception as exc:  # noqa: BLE001 - the next round tries again; the worker goes on
                log.warning("drain failed (%s); trying again later", type(exc).__name__)
            if self._stop.wait(self._interval_s):
                return
