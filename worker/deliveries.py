"""Dead letters and the delivery limit: nothing loops forever.

A notification ends in the dead-letter list (``worker.store.deadletters``) with
its error and attempt count, and its transaction in review, when:

- its task failed past the retry limit, or raised something the pipeline did
  not expect (:func:`give_up`, from the task; :func:`dead_letter`, from the pipeline);
- it keeps killing its worker: deliveries are counted on the transaction record
  before any work, and a delivery past ``worker.max_deliveries`` does nothing but
  this (:func:`stop_redelivery`), so the task is acknowledged and not seen again.
"""

from __future__ import annotations

import logging

from worker import actions
from worker.metrics import DEAD_LETTERS
from worker.store.archive import Archive
from worker.store.deadletters import DeadLetters
from worker.store.records import LockBusy, RecordStore, TransactionRecord
from worker.store.review import ReviewQueue

log = logging.getLogger("vipflow.deliveries")

# Reasons (the metric's label values): a closed set.
RETRIES_EXHAUSTED = "retries_exhausted"
UNEXPECTED_ERROR = "unexpected_error"
MAX_DELIVERIES = "max_deliveries"
# States in which nothing is left to escalate: already in a person's hands, or finished.
_SETTLED = frozenset({"approved", "rejected", "failed", "review"})


def dead_letter(letters: DeadLetters | None, entry_id: str, transaction_id: str | None, error: str,
                attempts: int, reason: str) -> None:
    """Append one dead letter (``error`` must be free of personal data) and count it by ``reason``."""
    DEAD_LETTERS.labels(reason).inc()
    log.error("dead letter", extra={"transaction_id": transaction_id, "entry_id": entry_id,
                                    "error": error, "attempts": attempts, "reason": reason})
    if letters is None:  # tests that build Deps without a dead-letter list
        return
    letters.push(entry_id, transaction_id, error, attempts)


def stop_redelivery(entry_id: str, rec: TransactionRecord, save: actions.Save, reviews: ReviewQueue,
                    letters: DeadLetters | None, max_deliveries: int) -> TransactionRecord:
    """A delivery past the limit: dead letter and review, nothing else (the task is then acknowledged)."""
    error = f"delivered {rec.deliveries} times without finishing (limit {max_deliveries})"
    dead_letter(letters, entry_id, rec.transaction_id, error, rec.deliveries, MAX_DELIVERIES)
    return actions.send_to_review(rec, save, reviews, error)


def give_up(entry_id: str, *, archive: Archive, records: RecordStore, reviews: ReviewQueue,
            letters: DeadLetters, error: str, attempts: int, reason: str, lock_wait_s: float = 10.0) -> None:
    """The task stops trying ``entry_id``: dead letter, and its transaction to review when the lock allows.

    Raises (StoreError, RedisError) when Redis cannot take even the dead letter:
    the archive then keeps the entry pending for ``vipflow replay --unprocessed``.
    """
    entry = archive.get(entry_id)
    txid = entry.transaction_id if entry is not None else None
    dead_letter(letters, entry_id, txid, error, attempts, reason)
    if txid is None:
        return
    lock = records.lock(txid)
    try:
        lock.acquire(wait_s=lock_wait_s)
    except LockBusy:
        log.warning("dead letter left for replay: another worker holds the transaction",
                    extra={"transaction_id": txid, "entry_id": entry_id})
        return
    try:
        rec = records.load(txid) or TransactionRecord(transaction_id=txid)
        if rec.state not in _SETTLED:
            rec = records.save(rec.with_error(error), lock)
            actions.send_to_review(rec, records.writer(lock), reviews, error)
        archive.mark_processed(entry_id)
    finally:
        lock.release()
