"""The actions a decision leads to, each idempotent and recorded before and after its effect.

Every action writes a ``started`` entry on the transaction record before it
touches the outside world and a ``done``/``failed`` entry after, so that the
next delivery of a task whose worker died knows what may already have happened:
an approval that started without a recorded result is reconciled with VIP
Connect's transaction lookup before anything is repeated.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from worker.errors import WalletRefusedError
from worker.ledger import RecordWriter, State, TransactionRecord
from worker.metrics import ACTIONS, RETRIES
from worker.vip.approve import approve_with_reconciliation
from worker.vip.models import fold, jsonable
from worker.vip.protocol import ApprovalKind, VipApi
from worker.wallet.protocol import Wallet
from worker.wording import plural

log = logging.getLogger("vipflow.actions")

# ``save(rec)`` stores at once (every ``started`` step, before its side effect); ``save.stage(rec)``
# may wait for the next write (a ``done`` step after an idempotent effect): see RecordWriter.
Save = RecordWriter

# The approval request's fields, in the order of VIP Connect's page examples.
APPROVAL_FIELDS: dict[str, tuple[str, ...]] = {
    "deposit": ("PatronId", "TransactionId", "Amount", "BankName", "MaskedBankAccountNumber",
                "BankRoutingNumber", "VipCardNumber", "LastName", "FirstName", "HomePhoneNumber",
                "Location", "TransactionType", "Timestamp", "InstantPaymentEligible", "ProductType",
                "OneClickDiscountApplied", "OperatorLimits"),
    "withdraw": ("transactionId", "amount", "bankName", "maskedBankAccountNumber", "bankRoutingNumber",
                 "vipCardNumber", "firstName", "lastName", "homePhoneNumber", "location",
                 "transactionType", "timestamp", "fundTransferType", "productType"),
}


class FreezeRefused(Exception):
    """The wallet refused to hold the funds; the transaction goes to review."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def approval_body(kind: ApprovalKind, body: Mapping[str, Any]) -> dict[str, Any]:
    """The documented fields of the notification ``body``, under the keys and values VIP sent.

    Echoing VIP's own keys and values keeps the approval exactly what VIP
    notified; fields beyond the documented ones are not sent back.
    """
    by_fold = {fold(str(k)): k for k in body}
    out: dict[str, Any] = {}
    for name in APPROVAL_FIELDS[kind]:
        key = by_fold.get(fold(name))
        if key is not None:
            out[str(key)] = body[key]
    return out


def _json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    elif hasattr(value, "model_dump"):
        value = value.model_dump()
    return jsonable(value)


def _count(action: str, result: str) -> Callable[[], None]:
    """Count an action's result in the metrics once its step is stored (a step staged and lost in a
    crash is done again on redelivery, and counted then)."""
    return lambda: ACTIONS.labels(action, result).inc()


def freeze(rec: TransactionRecord, save: Save, wallet: Wallet, patron_id: str,
           amount: Decimal, *, patron_source: str | None = None) -> TransactionRecord:
    """Hold ``amount`` in the patron's wallet, keyed by transaction id (at most one hold); ``patron_source``
    (which source named the patron, ``worker.patron``) is recorded on the started step."""
    if rec.succeeded("freeze"):  # a refused hold (failed) may be asked again, e.g. by a reviewer
        return rec
    started: dict[str, Any] = {"amount": str(amount)}
    if patron_source is not None:
        started["patron_source"] = patron_source
    rec = save(rec.with_action("freeze", "started", started))
    try:
        hold = wallet.hold(rec.transaction_id, patron_id, amount)
    except WalletRefusedError as exc:
        save(rec.with_action("freeze", "failed", {"reason": exc.reason}))
        ACTIONS.labels("freeze", "refused").inc()
        raise FreezeRefused(exc.reason) from None
    return save.stage(rec.with_action("freeze", "done", _json(hold)).moved(State.FROZEN),
                      after=_count("freeze", "done"))


def holding(rec: TransactionRecord) -> bool:
    """True while this transaction's funds are frozen: a hold was made and neither released nor captured."""
    return rec.succeeded("freeze") and not rec.succeeded("release") and not rec.succeeded("capture")


def release(rec: TransactionRecord, save: Save, wallet: Wallet) -> TransactionRecord:
    """Release this transaction's hold, if one was asked for (its answer may have been lost: the wallet
    says False when it has none) and not released or captured yet (a captured hold: see :func:`unwind`)."""
    if rec.last_action("freeze") is None or rec.succeeded("release") or rec.succeeded("capture"):
        return rec
    rec = save(rec.with_action("release", "started"))
    released = wallet.release(rec.transaction_id)
    return save.stage(rec.with_action("release", "done", {"released": released}), after=_count("release", "done"))


def reverse(rec: TransactionRecord, save: Save, wallet: Wallet) -> TransactionRecord:
    """Give back a captured hold's amount (VIP Connect failed the withdrawal after it was captured);
    once: the wallet's reversal is idempotent by key. WalletRefusedError when the wallet has no
    captured hold to reverse; WalletTransientError to retry."""
    if not rec.succeeded("capture") or rec.succeeded("reverse"):
        return rec
    rec = save(rec.with_action("reverse", "started"))
    hold = wallet.reverse(rec.transaction_id)
    return save.stage(rec.with_action("reverse", "done", _json(hold)), after=_count("reverse", "done"))


def unwind(rec: TransactionRecord, save: Save, wallet: Wallet) -> TransactionRecord:
    """Put the patron's money back the way it went: a hold still held is released, a captured one is
    reversed; nothing when there was no hold."""
    return reverse(rec, save, wallet) if rec.succeeded("capture") else release(rec, save, wallet)


def needs_unwinding(rec: TransactionRecord) -> bool:
    """True when this transaction's money is still frozen or captured (see :func:`unwind`)."""
    return holding(rec) or (rec.succeeded("capture") and not rec.succeeded("reverse"))


def settling_state(rec: TransactionRecord, kind: ApprovalKind, credit_deposits: bool) -> State:
    """The state after VIP Connect approves: ``capturing`` for a withdrawal whose funds are held,
    ``crediting`` for a deposit when ``wallet.credit_deposits`` is on, else ``approved``."""
    if kind == "withdraw" and holding(rec):
        return State.CAPTURING
    if kind == "deposit" and credit_deposits and not rec.succeeded("credit"):
        return State.CREDITING
    return State.APPROVED


class SettlementRefused(Exception):
    """The wallet refused to capture or credit (a final answer): the transaction goes to review."""

    def __init__(self, action: str, reason: str):
        self.action, self.reason = action, reason
        super().__init__(f"the wallet refused the {action} ({reason})")


def settle(rec: TransactionRecord, save: Save, wallet: Wallet, *, patron_id: str | None,
           amount: Decimal | None) -> TransactionRecord:
    """The wallet's side of an approval VIP Connect accepted: in ``capturing``, capture the hold (the
    held amount is paid out); in ``crediting``, credit the deposit's ``amount`` (Decimal dollars) to
    ``patron_id``, keyed by transaction id. Then ``approved``. Any other state: nothing to do.

    The step's start is committed with its end (both calls are idempotent; see the comment inside).
    WalletTransientError propagates once the start is committed (the task is delivered again and settles
    then); a refusal is recorded as the step's failure and raises SettlementRefused.
    """
    if rec.state not in (State.CAPTURING, State.CREDITING):
        return rec
    step = "capture" if rec.state == State.CAPTURING else "credit"
    txid = rec.transaction_id
    if step == "capture":
        def call() -> Any:
            return wallet.capture(txid)
    elif patron_id and amount is not None:
        def call() -> Any:
            return wallet.credit(txid, patron_id, amount)
    else:
        raise SettlementRefused("credit", "no patron id or amount in the notification")
    # The step's start is staged, not committed on its own (one commit fewer per withdrawal): both calls
    # are idempotent by transaction id, and the approval before them is durable (its start was committed
    # before VIP's call). A worker that dies during the call leaves a delivery that reconciles the
    # approval with VIP's lookup and calls the wallet again, to the same effect. A call that fails
    # commits the start with what is staged before it (the approval's done), so VIP is not asked again.
    rec = save.stage(rec.with_action(step, "started"))
    try:
        done = call()
    except WalletRefusedError as exc:
        save(rec.with_action(step, "failed", {"reason": exc.reason}))
        ACTIONS.labels(step, "refused").inc()
        raise SettlementRefused(step, exc.reason) from None
    except Exception:
        save(rec)
        raise
    log.info("settled in the wallet", extra={"transaction_id": rec.transaction_id, "step": step})
    return save.stage(rec.with_action(step, "done", _json(done)).moved(State.APPROVED), after=_count(step, "done"))


def send_to_review(rec: TransactionRecord, save: Save, reason: str) -> TransactionRecord:
    """Queue the transaction for a human with ``reason`` (kept on the record; the review queue is the
    ledger's transactions in state ``review``)."""
    if rec.state == State.REVIEW and rec.action_done("review"):
        return rec
    log.info("sent to review", extra={"transaction_id": rec.transaction_id, "reason": reason})
    return save.stage(replace(rec.with_action("review", "done", {"reason": reason}),
                              review_reason=reason).moved(State.REVIEW),
                      after=_count("review", "done"))


def reject(rec: TransactionRecord, save: Save, wallet: Wallet) -> TransactionRecord:
    """Record the rejection (VIP Connect has no reject call: not approving is rejecting)."""
    rec = release(rec, save, wallet)
    return save.stage(rec.with_action("reject", "done").moved(State.REJECTED), after=_count("reject", "done"))


def approve(rec: TransactionRecord, save: Save, vip: VipApi, kind: ApprovalKind, body: Mapping[str, Any],
            *, max_attempts: int, backoff_base_s: float, backoff_max_s: float,
            sleep: Callable[[float], None], retry_failed: bool = False,
            then: State = State.APPROVED) -> TransactionRecord:
    """Approve at most once through VIP Connect; a refusal or giving up goes to review.

    ``retry_failed`` (a reviewer's explicit approval) tries again after a failed
    approval, reconciling with VIP's lookup first; a done approval is never repeated.
    ``then``: the state once VIP approved (``approved``, or ``capturing``/``crediting`` when the
    wallet's side follows: see :func:`settling_state` and :func:`settle`).
    """
    last = rec.last_action("approve")
    if last is not None and last.status != "started" and not (retry_failed and last.status == "failed"):
        return rec
    # A start without a result: the earlier call may have reached VIP. Ask before repeating.
    outcome_unknown = last is not None
    rec = save(rec.with_action("approve", "started", {"outcome_unknown": outcome_unknown})
               .moved(State.APPROVING))
    state = {"rec": rec}
    succeeded: dict[str, Any] = {}

    def on_attempt(attempt: dict[str, Any]) -> None:
        # A failed attempt is its own step, stored at once, before a retry; the attempt that succeeded
        # is kept inside the approval's "done" step rather than repeated beside it.
        if attempt.get("outcome") == "approved":  # its answer is the step's result: keep only when and which
            succeeded.update({k: attempt[k] for k in ("attempt", "at") if k in attempt})
            return
        state["rec"] = save(state["rec"].with_action("approve_attempt", "done", attempt))

    outcome = approve_with_reconciliation(
        vip, kind, body, max_attempts=max_attempts, backoff_base_s=backoff_base_s,
        backoff_max_s=backoff_max_s, outcome_unknown=outcome_unknown, sleep=sleep, on_attempt=on_attempt)
    rec = state["rec"]
    if outcome.attempts > 1:
        RETRIES.labels("vip_approval").inc(outcome.attempts - 1)
    result = {"status": outcome.status, "attempts": outcome.attempts, "result": outcome.result,
              "error": outcome.error, **({"attempt": succeeded} if succeeded else {})}
    if outcome.status in ("approved", "already_approved"):
        log.info("approved", extra={"transaction_id": rec.transaction_id, "vip_status": outcome.status})
        return save.stage(rec.with_action("approve", "done", result).moved(then),
                          after=_count("approve", outcome.status))
    rec = save(rec.with_action("approve", "failed", result))
    ACTIONS.labels("approve", outcome.status).inc()
    if outcome.status == "rejected":
        err = outcome.error or {}
        reason = f"VIP Connect refused the approval (HTTP {err.get('status')}); see its error body"
    else:
        reason = f"VIP Connect could not be reached after {plural(outcome.attempts, 'attempt')}"
    return send_to_review(rec, save, reason)
