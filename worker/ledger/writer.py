"""How a task or a reviewer writes one transaction: under its Redis lock, into the ledger.

``writer(rec)`` commits ``rec`` now (its events and the current row, in one
database transaction): every ``started`` step goes this way, so it is durable
before its side effect (an approval's start before the call to VIP Connect).
``writer.stage(rec)`` keeps ``rec`` for the next write or :meth:`RecordWriter.finish`:
a ``done`` step written after an idempotent side effect may wait, because if
the worker dies first the next delivery repeats the step safely (a hold is keyed
by transaction id, an approval whose start has no result is reconciled with
VIP's lookup, review and reject are recorded again). ``after`` callbacks run
once the staged record is committed (metrics that must count a stored fact once).

:meth:`RecordWriter.finish` commits what is staged with the notification's
"done" mark, then (one Redis round trip) takes the notification out of the
intake buffer and releases the lock: every event of a task is in the ledger
before the task is acknowledged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from worker.ledger.events import NewEvent
from worker.ledger.patron_cards import CardSeen
from worker.ledger.record import TransactionRecord
from worker.ledger.store import Ledger, Stored
from worker.store.archive import ArchivedNotification
from worker.store.locks import TxLock


class RecordWriter:
    """Writes one locked transaction's record into the ledger, at once or staged."""

    def __init__(self, ledger: Ledger, lock: TxLock, stored: Stored | None, *, deferred: bool = False,
                 notification: ArchivedNotification | None = None):
        self.ledger, self.lock, self.deferred = ledger, lock, deferred
        self.stored = stored  # what the ledger holds now (None: nothing yet)
        self.latest: TransactionRecord | None = stored.record if stored else None  # newest written or staged
        self._notification = notification  # kept with the first write
        self._staged: TransactionRecord | None = None
        self._card: CardSeen | None = None  # a VIP card's patron to learn with the next write
        self._after: list[Callable[[], None]] = []
        # The decision was made without reading the patron session: the first write is refused
        # (SessionUnread, nothing written) when an open one exists (``worker.ledger.session_guard``).
        self.session_unread = False

    def __call__(self, record: TransactionRecord, extra: Sequence[NewEvent] = ()) -> TransactionRecord:
        """Commit ``record`` now (with anything staged before it: ``record`` is the newer copy)."""
        self._staged = None
        self.lock.renew_if_due()
        self._commit(record, extra=extra)
        self._run_after()
        assert self.latest is not None
        return self.latest

    def stage(self, record: TransactionRecord, after: Callable[[], None] | None = None) -> TransactionRecord:
        """Keep ``record`` for the next write (committed at once when the writer is not deferred)."""
        if after is not None:
            self._after.append(after)
        if not self.deferred:
            return self(record)
        self._staged = self.latest = record
        return record

    def learn(self, card: CardSeen) -> None:
        """Teach the ledger ``card``'s patron with the next write of this transaction (no write of its own)."""
        self._card = card

    def finish(self, done_entry: str | None = None,
               also: Callable[[TransactionRecord | None], Callable[[Any], None] | None] | None = None,
               reload: Callable[[], None] | None = None) -> TransactionRecord | None:
        """Commit what is staged (and ``done_entry``'s done mark), then drop the entry from the intake
        buffer and release the lock in one Redis round trip; ``also(latest record)`` may give more Redis
        commands to queue on that round trip (``reload`` loads their scripts after a Redis restart)."""
        staged, self._staged = self._staged, None
        if staged is not None or done_entry:
            self._commit(staged or self.latest, done_entry=done_entry)
        self._run_after()
        self.lock.finish(done_entry, also(self.latest) if also is not None else None, reload)
        return self.latest

    def _commit(self, record: TransactionRecord | None, *, done_entry: str | None = None,
                extra: Sequence[NewEvent] = ()) -> None:
        if record is None:
            if done_entry:
                self.ledger.mark_done(done_entry)
            return
        self.stored = self.ledger.write(self.stored, record, notification=self._notification,
                                        done_entry=done_entry, extra=extra, card=self._card,
                                        session_unread=self.session_unread and self.stored is None)
        self._notification = self._card = None
        self.latest = self.stored.record

    def _run_after(self) -> None:
        after, self._after = self._after, []
        for callback in after:
            callback()
