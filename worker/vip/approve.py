"""Approve a transaction at most once, retrying VIP Connect's transient failures safely.

VIP Connect publishes no idempotency guarantee for its approval calls, so a
repeat is only made after the transaction lookup says the approval has not
completed. Whenever an earlier call may have reached VIP (a crash, a timeout,
a 5xx after the request was sent) the lookup comes first; when the lookup
itself fails, no approval is attempted in that round.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from worker.errors import VipRejectedError, VipTransientError
from worker.vip.models import TransactionStatus, field, jsonable
from worker.vip.protocol import ApprovalKind, VipApi
from worker.vip.retry import backoff_delay, wait_s

Status = Literal["approved", "already_approved", "rejected", "gave_up"]


@dataclass(frozen=True)
class ApprovalOutcome:
    """How an approval ended. ``attempts`` counts rounds (a lookup and/or one approval call)."""

    status: Status
    attempts: int
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


def _transient(exc: VipTransientError) -> dict[str, Any]:
    return {
        "type": "transient",
        "message": str(exc),
        "status": exc.status,
        "maybe_sent": exc.maybe_sent,
        **({"retry_after_s": exc.retry_after_s} if exc.retry_after_s is not None else {}),
    }


def _rejected(exc: VipRejectedError) -> dict[str, Any]:
    return {
        "type": "rejected",
        "message": str(exc),
        "status": exc.status,
        "body": jsonable(exc.body),
    }


class _Run:
    def __init__(self, api: VipApi, txid: str, on_attempt: Callable[[dict[str, Any]], None] | None):
        self.api, self.txid, self.on_attempt = api, txid, on_attempt

    def record(self, attempt: int, action: str, outcome: str, **more: Any) -> None:
        if self.on_attempt is not None:
            self.on_attempt(
                jsonable(
                    {
                        "attempt": attempt,
                        "action": action,
                        "outcome": outcome,
                        "transaction_id": self.txid,
                        "at": time.time(),
                        **more,
                    }
                )
            )

    def reconcile(self, attempt: int) -> TransactionStatus | VipTransientError | None:
        """The lookup's answer, or the transient error that kept us from knowing."""
        try:
            found = self.api.lookup_transaction(self.txid)
        except VipTransientError as exc:
            self.record(attempt, "lookup", "unknown", error=_transient(exc))
            return exc
        except VipRejectedError as exc:
            # A lookup VIP refuses tells us nothing; treat as unknown rather than approve blindly.
            self.record(attempt, "lookup", "unknown", error=_rejected(exc))
            return VipTransientError(str(exc), maybe_sent=True, status=exc.status)
        self.record(
            attempt,
            "lookup",
            "approved" if found and found.approved else "not_approved",
            lookup=found.raw if found else None,
        )
        return found


def approve_with_reconciliation(
    api: VipApi,
    kind: ApprovalKind,
    body: Mapping[str, Any],
    *,
    max_attempts: int,
    backoff_base_s: float,
    backoff_max_s: float,
    outcome_unknown: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    on_attempt: Callable[[dict[str, Any]], None] | None = None,
) -> ApprovalOutcome:
    """Approve ``body`` with retries, never approving twice (see the module docstring)."""
    run = _Run(api, str(field(dict(body), "transactionId")), on_attempt)
    must_reconcile = outcome_unknown
    last: dict[str, Any] | None = None
    for attempt in range(1, max_attempts + 1):
        if attempt > 1:
            after = (last or {}).get("retry_after_s")
            sleep(wait_s(attempt - 1, after, backoff_base_s, backoff_max_s))
        if must_reconcile:
            found = run.reconcile(attempt)
            if isinstance(found, VipTransientError):
                last = _transient(found)
                continue
            if found is not None and found.approved:
                return ApprovalOutcome("already_approved", attempt, result=found.raw)
        try:
            result = api.approve(kind, body)
        except VipRejectedError as exc:
            run.record(attempt, "approve", "rejected", error=_rejected(exc))
            return ApprovalOutcome("rejected", attempt, error=_rejected(exc))
        except VipTransientError as exc:
            last = _transient(exc)
            run.record(attempt, "approve", "transient", error=last)
            must_reconcile = exc.maybe_sent
            continue
        run.record(attempt, "approve", "approved", result=result.raw)
        return ApprovalOutcome("approved", attempt, result=dict(result.raw))
    if must_reconcile:
        # One last look so that an approval that did land is not escalated as failed.
        found = run.reconcile(max_attempts)
        if isinstance(found, TransactionStatus) and found.approved:
            return ApprovalOutcome("already_approved", max_attempts, result=found.raw)
    return ApprovalOutcome("gave_up", max_attempts, error=last)


__all__ = ["ApprovalOutcome", "Status", "approve_with_reconciliation", "backoff_delay"]
