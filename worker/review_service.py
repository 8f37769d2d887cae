"""The review queue's human side: list, show, approve and reject escalated transactions.

The queue is the ledger's transactions in state ``review``, oldest first by when
they entered it. Approve runs the worker's own idempotent approve action
(``worker.actions``: recorded ``started`` before VIP Connect is called and
``done`` after, with VIP's lookup before any repeat) under the transaction lock,
each step committed to the ledger at once, so a double click or a crash cannot
approve twice. Reject releases any freeze. Each is recorded as a
``review_approve``/``review_reject`` step whose result carries the authenticated
``actor`` (``worker.ledger.actor``), a ``human`` event in the ledger; a name the
reviewer states is kept beside it, never instead of it.

The review workspace (``worker.review_workspace``) passes a ``gate``: a check run under the same lock,
on the record as the lock found it, that refuses (a role, a limit, someone else's claim) or turns an
approval above ``review.four_eyes_amount`` into a recorded first approval (``review_first``) that
calls nobody; the second, by a different senior reviewer, then approves as here.

A reviewer's approval leaves ``review`` (review -> frozen -> approving ->
approved). If it fails, the transaction goes back to review with the error; if
the process dies on the way, the transaction waits in ``frozen``/``approving``
with the approval's start recorded: it is listed again ("interrupted") and a new
approve reconciles with VIP Connect before anything is repeated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from rules.errors import VipflowError
from worker import actions
from worker.errors import InputError, WalletError, reason
from worker.ledger import Ledger, RecordWriter, State, Stored, TransactionRecord
from worker.ledger.states import IN_FLIGHT, is_final
from worker.notification import decode_body, parse_notification
from worker.pipeline import Deps, finder, freeze_for
from worker.store.locks import TxLock
from worker.velocity_marks import mark_from_ledger
from worker.vip.protocol import ApprovalKind

log = logging.getLogger("vipflow.review")
LOCK_WAIT_S = 10.0
INTERRUPTED = ("a reviewer's approval started and did not finish (still running, or its process died); "
               "approve again to reconcile with VIP Connect")
# The states a reviewer's approval passes through on its way out of review (where an interrupted one waits).
_PASSING = sorted(IN_FLIGHT)
FIRST_APPROVAL = "review_first"  # the first of a four-eyes approval: recorded, VIP Connect not called


class NotInReview(InputError):
    """The transaction is not waiting for review (never was, or someone already settled it)."""


class ReviewInputError(InputError):
    """A reviewer's command is missing something it needs (an actor, a reason)."""


class ReviewActionFailed(VipflowError):
    """The approval or release failed; the transaction stays in review with the error recorded."""


@dataclass(frozen=True)
class QueuedItem:
    """One transaction waiting for review, as ``vipflow review list`` shows it (times in epoch seconds)."""

    transaction_id: str
    transaction_type: str | None
    amount: str | None
    enqueued_at: float
    age_s: float
    overdue: bool
    matched: tuple[str, ...]
    reason: str | None
    state: str
    first_approver: str | None = None  # the actor of a standing first approval (four eyes), if any


@dataclass(frozen=True)
class GateAnswer:
    """What a gate (see the module docstring) lets an approval do: go on to VIP Connect (``proceed``), or
    stop at a recorded first approval; ``note`` is kept with the reviewer's step (e.g. the first approver)."""

    proceed: bool = True
    note: Mapping[str, Any] = field(default_factory=dict)


Gate = Callable[[TransactionRecord], GateAnswer]


def first_approval(rec: TransactionRecord) -> str | None:
    """The actor of the standing first approval of ``rec`` (four eyes), or None. A first approval stands
    until the transaction is decided again (a forced replay) or leaves review."""
    last = rec.last_action(FIRST_APPROVAL)
    if last is None or last.status != "done" or last.at < rec.decided_at:
        return None
    return str((last.result or {}).get("actor") or "") or None


def interrupted(rec: TransactionRecord) -> bool:
    """True when a reviewer's approval started and never finished (its process died): the transaction
    waits in frozen/approving for a reviewer to approve again."""
    last = rec.last_action("review_approve")
    return rec.state in _PASSING and last is not None and last.status == "started"


def queued(ledger: Ledger, max_age_s: float, *, limit: int = 1000, now: float | None = None) -> list[QueuedItem]:
    """Up to ``limit`` queued transactions, oldest first; ``overdue`` past ``max_age_s`` seconds.
    Interrupted reviewer approvals are listed too (since their start)."""
    now = time.time() if now is None else now
    waiting = ledger.in_state(State.REVIEW, limit=limit)
    for state in _PASSING:  # few rows: these states are passed through in a moment
        for rec, _ in ledger.in_state(state, limit=limit):
            start = rec.last_action("review_approve")
            if interrupted(rec) and start is not None:
                waiting.append((rec, start.at))
    items = []
    for rec, since in sorted(waiting, key=lambda pair: pair[1])[:limit]:
        decision = rec.decision or {}
        age = max(0.0, now - since)
        items.append(QueuedItem(
            rec.transaction_id, rec.transaction_type, rec.amount, since, age, age > max_age_s,
            tuple(str(m.get("id")) for m in decision.get("matched", ())),
            INTERRUPTED if interrupted(rec) else rec.review_reason, str(rec.state), first_approval(rec)))
    return items


def _waiting(stored: Stored | None, transaction_id: str) -> TransactionRecord:
    if stored is None:
        raise NotInReview(f"transaction {transaction_id} is not waiting for review (vipflow has no record of "
                          "it); see vipflow review list")
    rec = stored.record
    if rec.state != State.REVIEW and not interrupted(rec):
        raise NotInReview(f"transaction {transaction_id} is not waiting for review (it is {rec.state}); "
                          "see vipflow review list")
    return rec


def queued_record(ledger: Ledger, transaction_id: str) -> TransactionRecord:
    """The record of a queued transaction; NotInReview when it is not waiting for review."""
    return _waiting(ledger.load(transaction_id), transaction_id)


def waiting_since(rec: TransactionRecord, events: Sequence[Mapping[str, Any]]) -> float | None:
    """When ``rec`` entered its current wait (epoch seconds), from its events (``{"at", "state"}``, in
    order); None when it is not waiting."""
    start = rec.last_action("review_approve")
    if interrupted(rec) and start is not None:
        return start.at
    since = None
    for event in reversed(events):
        if event.get("state") != State.REVIEW:
            break
        since = float(event["at"])
    return since


def _who(actor: str, stated_name: str | None, reason: str | None, verdict: str) -> dict[str, str | None]:
    if not actor.strip():
        raise ReviewInputError("no actor to record: a human action needs the identity of who takes it "
                               "(ledger.actor, or the operating-system user)")
    return {"actor": actor.strip(), "stated_name": (stated_name or "").strip() or None,
            "reason": (reason or "").strip() or None, "verdict": verdict}


def locked(deps: Deps, transaction_id: str) -> TxLock:
    """The transaction's lock, taken (waiting up to LOCK_WAIT_S seconds; LockBusy past that): the lock
    every reviewer's act on a transaction is taken under; release it when done."""
    lock = deps.locks.lock(transaction_id)
    lock.acquire(wait_s=LOCK_WAIT_S)
    return lock


def approve(deps: Deps, transaction_id: str, actor: str, reason: str | None = None, *,
            stated_name: str | None = None, gate: Gate | None = None,
            note: Mapping[str, Any] | None = None) -> TransactionRecord:
    """Approve a queued transaction once through VIP Connect, recorded as ``actor``'s act (``note``: more
    to keep with it, such as a reason code); ReviewActionFailed leaves it queued, NotInReview when it is
    not waiting. With ``gate`` (see the module docstring): whatever it raises, or the record with a first
    approval (``review_first``) when it says not to proceed."""
    who: dict[str, Any] = {**_who(actor, stated_name, reason, "approve"), **(note or {})}
    lock = locked(deps, transaction_id)
    try:
        save = RecordWriter(deps.ledger, lock, deps.ledger.load(transaction_id))  # every step committed at once
        rec = _waiting(save.stored, transaction_id)
        if gate is not None:
            answer = gate(rec)
            who.update(answer.note)
            if not answer.proceed:
                return save(rec.with_action(FIRST_APPROVAL, "done", {**who, "verdict": "first_approval"}))
        notes = [n for n in deps.ledger.notifications_of(transaction_id) if n.kind != "error"]
        entry = next((n for n in notes if n.status == "valid"), None)
        kind: ApprovalKind = "withdraw" if (entry.kind if entry else rec.transaction_type) == "withdraw" \
            else "deposit"
        body = decode_body(entry.body) if entry is not None else {}
        earlier = rec.last_action("approve")
        vip_approved = earlier is not None and earlier.status == "done"  # only the wallet's side may be left
        if entry is None and not vip_approved:
            raise ReviewActionFailed(f"the ledger holds no valid notification of {transaction_id}, so the "
                                     "approval cannot be built; approve it in VIP Connect's portal")
        credit = deps.settings.wallet.credit_deposits
        rec = save(rec.with_action("review_approve", "started", who))
        try:
            if vip_approved:
                rec = save(rec.moved(actions.settling_state(rec, kind, credit)))
            else:
                if kind == "withdraw":
                    rec = _freeze(deps, rec, save, body)
                vip = deps.settings.vip
                rec = actions.approve(rec, save, deps.vip, kind, actions.approval_body(kind, body),
                                      max_attempts=vip.max_attempts, backoff_base_s=vip.backoff_base_s,
                                      backoff_max_s=vip.backoff_max_s, sleep=deps.sleep, retry_failed=True,
                                      then=actions.settling_state(rec, kind, credit))
            rec = _settle(deps, rec, save, body, kind)
        except ReviewActionFailed:
            raise
        except BaseException as exc:
            _back_to_review(save, f"unexpected {type(exc).__name__} during the approval")
            raise
        if rec.state != State.APPROVED:
            _fail(rec, save, f"not approved: {rec.review_reason}")
        return _settled(deps, save(rec.with_action("review_approve", "done", who)))
    finally:
        lock.release()


def _settle(deps: Deps, rec: TransactionRecord, save: RecordWriter, body: object,
            kind: ApprovalKind) -> TransactionRecord:
    # VIP approved: capture the hold, or credit the deposit, as the worker does.
    note = parse_notification(body, kind) if body else None
    try:
        return actions.settle(rec, save, deps.wallet, patron_id=note.patron_id if note else None,
                              amount=note.amount if note else None)
    except actions.SettlementRefused as exc:
        _fail(save.latest or rec, save, f"VIP Connect approved it but {exc}")
    except WalletError as exc:
        _fail(save.latest or rec, save, f"VIP Connect approved it but the wallet failed ({reason(exc)}); "
              "approve again to retry the wallet's side")


def _freeze(deps: Deps, rec: TransactionRecord, save: RecordWriter, body: object) -> TransactionRecord:
    # A withdrawal is paid out of the wallet: hold the funds before VIP pays, as the worker does.
    note = parse_notification(body, "withdraw")
    try:
        refused = freeze_for(rec, save, deps.wallet, finder(note, deps))
    except WalletError as exc:
        _fail(save.latest or rec, save, f"the wallet failed ({exc})")
    if refused is not None:
        _fail(save.latest or rec, save, refused)
    return save.latest or rec


def _fail(rec: TransactionRecord, save: RecordWriter, error: str) -> NoReturn:
    """Record the reviewer's step as failed, the transaction back in review, and raise."""
    last = rec.last_action("review_approve") or rec.last_action("review_reject")
    name = last.name if last is not None else "review_approve"
    who = dict(last.result or {}) if last is not None else {}
    rec = rec.with_error(error).with_action(name, "failed", {**who, "error": error})
    save(rec if rec.state == State.REVIEW else rec.moved(State.REVIEW))
    raise ReviewActionFailed(f"{rec.transaction_id}: {error}; it stays in review")


def _back_to_review(save: RecordWriter, error: str) -> None:
    """After an unexpected failure mid-approval: record it and put the transaction back in review, if the
    ledger answers (else it waits as an interrupted approval, listed by :func:`queued`). An approval
    started without a result stays so: the next approve asks VIP Connect before calling again."""
    rec = save.latest
    last = rec.last_action("review_approve") if rec is not None else None
    if rec is None or last is None or last.status != "started" or is_final(rec.state):
        return
    try:
        rec = rec.with_error(error).with_action("review_approve", "failed", {**(last.result or {}), "error": error})
        save(rec if rec.state == State.REVIEW else rec.moved(State.REVIEW))
    except Exception:  # noqa: BLE001 - the original error is the one to raise; this one is logged
        log.warning("could not put the transaction back in review", extra={"transaction_id": rec.transaction_id})


def _settled(deps: Deps, rec: TransactionRecord) -> TransactionRecord:
    last = rec.last_action("review_approve") or rec.last_action("review_reject")
    result = (last.result or {}) if last else {}
    log.info("review settled", extra={"transaction_id": rec.transaction_id, "state": str(rec.state),
                                      "verdict": result.get("verdict"), "actor": result.get("actor")})
    mark_from_ledger(deps.velocity, deps.ledger, rec)  # approved, or out of the pending tally
    return rec


def reject(deps: Deps, transaction_id: str, actor: str, reason: str, *,
           stated_name: str | None = None, gate: Gate | None = None,
           note: Mapping[str, Any] | None = None) -> TransactionRecord:
    """Reject a queued transaction as ``actor``, releasing any freeze; ReviewActionFailed leaves it queued.
    ``gate`` may refuse (under the lock); ``note`` is kept with the step."""
    if not (reason or "").strip():
        raise ReviewInputError("--reason: a rejection needs a reason, kept on the record")
    who: dict[str, Any] = {**_who(actor, stated_name, reason, "reject"), **(note or {})}
    lock = locked(deps, transaction_id)
    try:
        save = RecordWriter(deps.ledger, lock, deps.ledger.load(transaction_id))  # every step committed at once
        rec = _waiting(save.stored, transaction_id)
        if gate is not None:
            who.update(gate(rec).note)
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
            _fail(save.latest or rec, save, f"the wallet could not release the freeze ({exc})")
        return _settled(deps, save(rec.with_action("review_reject", "done", who)))
    finally:
        lock.release()
