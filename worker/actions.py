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
           amount: Decimal) -> TransactionRecord:
    """Hold ``amount`` in the patron's wallet, keyed by transaction id (at most one hold)."""
    if rec.action_done("freeze"):
        return rec
    rec = save(rec.with_action("freeze", "started", {"amount": str(amount)}))
    try:
        hold = wallet.hold(rec.transaction_id, patron_id, amount)
    except WalletRefusedError as exc:
        save(rec.with_action("freeze", "failed", {"reason": exc.reason}))
        ACTIONS.labels("freeze", "refused").inc()
        raise FreezeRefused(exc.reason) from None
    return save.stage(rec.with_action("freeze", "done", _json(hold)).moved(State.FROZEN),
                      after=_count("freeze", "done"))


def release(rec: TransactionRecord, save: Save, wallet: Wallet) -> TransactionRecord:
    """Release this transaction's hold, if one was made and not released yet."""
    held = rec.last_action("freeze")
    if held is None or rec.action_done("release"):
        return rec
    rec = save(rec.with_action("release", "started"))
    released = wallet.release(rec.transaction_id)
    return save.stage(rec.with_action("release", "done", {"released": released}), after=_count("release", "done"))


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
            sleep: Callable[[float], None], retry_failed: bool = False) -> TransactionRecord:
    """Approve at most once through VIP Connect; a refusal or giving up goes to review.

    ``retry_failed`` (a reviewer's explicit approval) tries again after a failed
    approval, reconciling with VIP's lookup first; a done approval is never repeated.
    """
    last = rec.last_action("approve")
    if last is not None and last.status != "started" and not (retry_failed and last.status == "failed"):
        return rec
    # A start without a result: the earlier call may have reached VIP. Ask before repeating.
    outcome_unknown = last is not None
    rec = save(rec.with_action("approve", "started", {"outcome_unknown": outcome_unknown})
               .moved(State.APPROVING))
    state = {"rec": rec}

    def on_attempt(attempt: dict[str, Any]) -> None:
        # A success is stored with the approval's "done" step; anything else at once, before a retry.
        write = save.stage if attempt.get("outcome") == "approved" else save
        state["rec"] = write(state["rec"].with_action("approve_attempt", "done", attempt))

    outcome = approve_with_reconciliation(
        vip, kind, body, max_attempts=max_attempts, backoff_base_s=backoff_base_s,
        backoff_max_s=backoff_max_s, outcome_unknown=outcome_unknown, sleep=sleep, on_attempt=on_attempt)
    rec = state["rec"]
    if outcome.attempts > 1:
        RETRIES.labels("vip_approval").inc(outcome.attempts - 1)
    result = {"status": outcome.status, "attempts": outcome.attempts, "result": outcome.result,
              "error": outcome.error}
    if outcome.status in ("approved", "already_approved"):
        log.info("approved", extra={"transaction_id": rec.transaction_id, "vip_status": outcome.status})
        return save.stage(rec.with_action("approve", "done", result).moved(State.APPROVED),
                          after=_count("approve", outcome.status))
    rec = save(rec.with_action("approve", "failed", result))
    ACTIONS.labels("approve", outcome.status).inc()
    if outcome.status == "rejected":
        err = outcome.error or {}
        reason = f"VIP Connect refused the approval (HTTP {err.get('status')}); see its error body"
    else:
        reason = f"VIP Connect could not be reached after {plural(outcome.attempts, 'attempt')}"
    return send_to_review(rec, save, reason)
