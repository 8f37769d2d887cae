"""The review queue's human side: list, show, approve and reject escalated transactions.

Approve runs the worker's own idempotent approve action (``worker.actions``:
recorded ``started`` before VIP Connect is called and ``done`` after, with
VIP's lookup before any repeat) under the transaction lock, so a double click
or a crash cannot approve twice. Reject releases any freeze. Each is recorded
on the transaction as a ``review_approve``/``review_reject`` action holding the
reviewer and the reason; the item leaves the queue only once that is stored.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import NoReturn

from rules.errors import VipflowError
from worker import actions
from worker.errors import WalletError
from worker.notification import decode_body, parse_notification
from worker.pipeline import Deps
from worker.store.records import RecordStore, TransactionRecord, TxLock
from worker.store.review import ReviewQueue
from worker.vip.protocol import ApprovalKind

log = logging.getLogger("vipflow.review")
LOCK_WAIT_S = 10.0


class NotInReview(VipflowError):
    """The transaction is not waiting for review (never was, or someone already settled it)."""


class ReviewInputError(VipflowError):
    """A reviewer's command is missing something it needs (a name, a reason)."""


class ReviewActionFailed(VipflowError):
    """The approval or release failed; the transaction stays in review with the error recorded."""


@dataclass(frozen=True)
class QueuedItem:
    """One transaction waiting for review, as ``vipflow review list`` shows it."""

    transaction_id: str
    transaction_type: str | None
    amount: str | None
    enqueued_at: float
    age_s: float
    overdue: bool
    matched: tuple[str, ...]
    reason: str | None
    state: str | None


def queued(records: RecordStore, reviews: ReviewQueue, max_age_s: float, *, limit: int = 1000,
           now: float | None = None) -> list[QueuedItem]:
    """Up to ``limit`` queued transactions, oldest first; ``overdue`` past ``max_age_s``."""
    now = time.time() if now is None else now
    items = []
    for item in reviews.list(limit=limit):
        rec = records.load(item.transaction_id)
        decision = (rec.decision if rec is not None else None) or {}
        age = max(0.0, now - item.enqueued_at)
        items.append(QueuedItem(
            item.transaction_id, rec.transaction_type if rec else None, rec.amount if rec else None,
            item.enqueued_at, age, age > max_age_s, tuple(str(m.get("id")) for m in decision.get("matched", ())),
            rec.review_reason if rec else None, rec.state if rec else None))
    return items


def queued_record(records: RecordStore, reviews: ReviewQueue, transaction_id: str) -> TransactionRecord:
    """The record of a queued transaction; NotInReview when it is not in the queue."""
    rec = records.load(transaction_id)
    if reviews.get(transaction_id) is None or rec is None:
        state = f" (it is {rec.state})" if rec is not None else " (vipflow has no record of it)"
        raise NotInReview(f"transaction {transaction_id} is not waiting for review{state}; "
                          "see vipflow review list")
    return rec


def _who(reviewer: str, reason: str | None, verdict: str) -> dict[str, str | None]:
    if not reviewer.strip():
        raise ReviewInputError("--reviewer: give the name of the person deciding")
    return {"reviewer": reviewer.strip(), "reason": (reason or "").strip() or None, "verdict": verdict}


def _locked(deps: Deps, transaction_id: str) -> TxLock:
    lock = deps.records.lock(transaction_id)
    lock.acquire(wait_s=LOCK_WAIT_S)
    return lock


def approve(deps: Deps, transaction_id: str, reviewer: str, reason: str | None = None) -> TransactionRecord:
    """Approve a queued transaction once through VIP Connect; ReviewActionFailed leaves it queued."""
    who = _who(reviewer, reason, "approve")
    lock = _locked(deps, transaction_id)
    try:
        rec = queued_record(deps.records, deps.reviews, transaction_id)

        save = deps.records.writer(lock)  # every step stored at once

        earlier = rec.last_action("approve")
        if earlier is not None and earlier.status == "done":  # approved, then a crash before dequeueing
            return _settled(deps, save(replace(rec.with_action("review_approve", "done", who), state="approved")))
        entries = [e for e in deps.archive.by_transaction(transaction_id) if e.kind != "error"]
        if not entries:
            raise ReviewActionFailed(f"the notification of {transaction_id} is no longer archived, so the "
                                     "approval cannot be built; approve it in VIP Connect's portal")
        entry = next((e for e in entries if e.status == "valid"), entries[0])
        kind: ApprovalKind = "withdraw" if entry.kind == "withdraw" else "deposit"
        body = decode_body(entry.body)
        rec = save(rec.with_action("review_approve", "started", who))
        if kind == "withdraw":
            rec = _freeze(deps, rec, save, body)
        vip = deps.settings.vip
        rec = actions.approve(rec, save, deps.vip, kind, actions.approval_body(kind, body),
                              reviews=deps.reviews, max_attempts=vip.max_attempts,
                              backoff_base_s=vip.backoff_base_s, backoff_max_s=vip.backoff_max_s,
                              sleep=deps.sleep, retry_failed=True)
        if rec.state != "approved":
            save(replace(rec.with_action("review_approve", "failed", {**who, "error": rec.review_reason}),
                         state="review"))
            raise ReviewActionFailed(f"{transaction_id} was not approved: {rec.review_reason}; "
                                     "it stays in review")
        return _settled(deps, save(rec.with_action("review_approve", "done", who)))
    finally:
        lock.release()


def _freeze(deps: Deps, rec: TransactionRecord, save: actions.Save, body: object) -> TransactionRecord:
    # A withdrawal is paid out of the wallet: hold the funds before VIP pays, as the worker does.
    note = parse_notification(body, "withdraw")
    if not note.patron_id or note.amount is None:
        return _fail(rec, save, "cannot freeze: the notification has no patron id or amount")
    try:
        return actions.freeze(rec, save, deps.wallet, note.patron_id, note.amount)
    except actions.FreezeRefused as exc:
        return _fail(deps.records.load(rec.transaction_id) or rec, save,
                     f"the wallet refused the freeze ({exc.reason})")
    except WalletError as exc:
        return _fail(deps.records.load(rec.transaction_id) or rec, save,
                     f"the wallet failed ({type(exc).__name__})")


def _fail(rec: TransactionRecord, save: actions.Save, error: str) -> NoReturn:
    last = rec.last_action("review_approve") or rec.last_action("review_reject")
    name = last.name if last is not None else "review_approve"
    who = dict(last.result or {}) if last is not None else {}
    save(rec.with_error(error).with_action(name, "failed", {**who, "error": error}))
    raise ReviewActionFailed(f"{rec.transaction_id}: {error}; it stays in review")


def _settled(deps: Deps, rec: TransactionRecord) -> TransactionRecord:
    deps.reviews.remove(rec.transaction_id)
    last = rec.last_action("review_approve") or rec.last_action("review_reject")
    log.info("review settled", extra={"transaction_id": rec.transaction_id, "state": rec.state,
                                      "verdict": (last.result or {}).get("verdict") if last else None})
    return rec


def reject(deps: Deps, transaction_id: str, reviewer: str, reason: str) -> TransactionRecord:
    """Reject a queued transaction, releasing any freeze; ReviewActionFailed leaves it queued."""
    if not (reason or "").strip():
        raise ReviewInputError("--reason: a rejection needs a reason, kept on the record")
    who = _who(reviewer, reason, "reject")
    lock = _locked(deps, transaction_id)
    try:
        rec = queued_record(deps.records, deps.reviews, transaction_id)

        save = deps.records.writer(lock)  # every step stored at once

        last = rec.last_action("approve")
        if last is not None and last.status in ("started", "done"):
            # VIP Connect may already have paid: rejecting now would release funds that are gone.
            raise ReviewActionFailed(f"an approval of {transaction_id} was started"
                                     f"{' and completed' if last.status == 'done' else ''}; "
                                     "approve it to reconcile with VIP Connect instead of rejecting")
        rec = save(rec.with_action("review_reject", "started", who))
        try:
            rec = actions.reject(rec, save, deps.wallet)
        except WalletError as exc:
            _fail(deps.records.load(transaction_id) or rec, save,
                  f"the wallet could not release the freeze ({type(exc).__name__})")
        return _settled(deps, save(rec.with_action("review_reject", "done", who)))
    finally:
        lock.release()
