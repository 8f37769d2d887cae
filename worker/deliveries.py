"""Dead letters and the delivery limit: nothing loops forever.

A notification ends in the ledger's dead letters (``dead_letters`` table, and a
``dead_letter`` event on its transaction) with its error and attempt count, and
its transaction in review, when:

- its task failed past the retry limit, or raised something the pipeline did
  not expect (:func:`give_up`, from the task; :func:`dead_letter`, from the pipeline);
- it keeps killing its worker: deliveries are counted (in Redis, with the lock)
  before any work, and a delivery past ``worker.max_deliveries`` does nothing but
  this (:func:`stop_redelivery`), so the task is acknowledged and not seen again.
  A delivery that ends in the task's own retry (a store or wallet failure) ended:
  it is not counted against the limit; ``worker.max_retries`` bounds those.
"""

from __future__ import annotations

import logging
import time

from worker import actions
from worker.ledger import Ledger, RecordWriter, TransactionRecord
from worker.ledger.events import NewEvent
from worker.ledger.states import is_settled
from worker.metrics import DEAD_LETTERS
from worker.store.archive import Archive
from worker.store.locks import LockBusy, Locks
from worker.wording import plural

log = logging.getLogger("vipflow.deliveries")

# Reasons (the metric's label values): a closed set.
RETRIES_EXHAUSTED = "retries_exhausted"
UNEXPECTED_ERROR = "unexpected_error"
MAX_DELIVERIES = "max_deliveries"
CONFLICT_AFTER_END = "conflict_after_end"  # a changed body for a transaction that had already ended


def _event(entry_id: str, error: str, attempts: int, reason: str) -> NewEvent:
    return NewEvent("dead_letter", time.time(), data={"entry_id": entry_id, "error": error,
                                                      "attempts": attempts, "reason": reason})


def dead_letter(ledger: Ledger, entry_id: str, transaction_id: str | None, error: str, attempts: int,
                reason: str, save: RecordWriter | None = None) -> None:
    """Keep one dead letter (``error`` must be free of personal data), count it by ``reason``, and with
    ``save`` (the transaction's writer) add a ``dead_letter`` event to its log."""
    DEAD_LETTERS.labels(reason).inc()
    log.error("dead letter", extra={"transaction_id": transaction_id, "entry_id": entry_id,
                                    "error": error, "attempts": attempts, "reason": reason})
    ledger.add_dead_letter(entry_id, transaction_id, error, reason, attempts)
    if save is not None and save.latest is not None:
        save(save.latest, extra=[_event(entry_id, error, attempts, reason)])


def stop_redelivery(entry_id: str, rec: TransactionRecord, save: actions.Save, ledger: Ledger,
                    max_deliveries: int, unfinished: int | None = None) -> TransactionRecord:
    """A delivery past the limit: dead letter and review, nothing else (the task is then acknowledged).
    ``unfinished``: the deliveries that neither finished nor ended in the task's own retry."""
    times = rec.deliveries if unfinished is None else unfinished
    error = f"delivered {plural(times, 'time')} without finishing (limit {max_deliveries})"
    dead_letter(ledger, entry_id, rec.transaction_id, error, times, MAX_DELIVERIES, save=save)
    return actions.send_to_review(save.latest or rec, save, error)


def give_up(entry_id: str, *, archive: Archive, ledger: Ledger, locks: Locks, error: str, attempts: int,
            reason: str, lock_wait_s: float = 10.0) -> None:
    """The task stops trying ``entry_id``: dead letter, and its transaction to review when the lock allows.

    Raises StoreError when neither Redis nor the ledger can take even the dead letter:
    the intake buffer then keeps the entry pending, and the recovery sweep (``worker.recovery``) queues it
    again once Redis and the ledger answer (``vipflow replay --unprocessed`` does the same by hand).
    """
    entry = archive.get(entry_id) or ledger.notification(entry_id)
    txid = entry.transaction_id if entry is not None else None
    if txid is None or entry is None:
        dead_letter(ledger, entry_id, txid, error, attempts, reason)
        return
    lock = locks.lock(txid)
    try:
        lock.acquire(wait_s=lock_wait_s)
    except LockBusy:
        dead_letter(ledger, entry_id, txid, error, attempts, reason)
        log.warning("dead letter left for replay: another worker holds the transaction",
                    extra={"transaction_id": txid, "entry_id": entry_id})
        return
    finished = False
    try:
        stored = ledger.load(txid)
        save = RecordWriter(ledger, lock, stored, notification=entry)
        rec = stored.record if stored else TransactionRecord(transaction_id=txid)
        rec = save(rec.with_error(error))
        dead_letter(ledger, entry_id, txid, error, attempts, reason, save=save)
        if not is_settled(rec.state):
            actions.send_to_review(save.latest or rec, save, error)
        save.finish(done_entry=entry_id)
        finished = True
    finally:
        if not finished:
            lock.release()
