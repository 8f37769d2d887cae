"""An in-memory VIP Connect for tests: seedable accounts, injectable faults, approvals counted.

Faults are queued and consumed one per approval call, in order:
``500`` (or any 5xx) fails without recording; a 4xx answers VIP's error model;
``"timeout"`` fails as a timeout without recording; ``"commit_then_timeout"``
records the approval and then fails as a timeout, as a lost answer would.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from worker.errors import VipRejectedError, VipTransientError
from worker.vip.models import AccountInquiry, ApprovalResult, TransactionStatus, field, jsonable
from worker.vip.protocol import ApprovalKind

Fault = int | str | tuple[int, dict[str, Any]]


def vip_error_body(code: int = 99, message: str = "Approval failed") -> dict[str, Any]:
    """A body in VIP Connect's error model."""
    return {
        "errorCode": code,
        "transactionStage": "Approval",
        "operatorErrorMessage": message,
        "operatorDeclineDescription": message,
        "patronErrorMessage": "The transaction could not be completed",
        "resolution": "Contact VIP Preferred customer service",
    }


class FakeVip:
    """VipApi in memory. Thread-safe; ``approvals`` counts approval calls that took effect."""

    def __init__(self, accounts: Mapping[str, AccountInquiry] | None = None):
        self._lock = threading.Lock()
        self.accounts: dict[str, AccountInquiry] = dict(accounts or {})
        self.approvals: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self._failed: dict[str, dict[str, Any]] = {}
        self._approval_faults: list[Fault] = []
        self._lookup_faults: list[Fault] = []

    def add_account(self, vip_card_number: str, inquiry: AccountInquiry) -> None:
        """Seed one account."""
        with self._lock:
            self.accounts[vip_card_number] = inquiry

    def fail_next_approvals(self, *faults: Fault) -> None:
        """Queue faults for the next approvals (see the module docstring for the kinds)."""
        with self._lock:
            self._approval_faults.extend(faults)

    def fail_next_lookups(self, *faults: Fault) -> None:
        """Queue faults for the next transaction lookups (5xx or "timeout")."""
        with self._lock:
            self._lookup_faults.extend(faults)

    def account_inquiry(self, vip_card_number: str, product_type: str | None) -> AccountInquiry:
        """The seeded account, or not found."""
        with self._lock:
            self.calls["account_inquiry"] += 1
            return self.accounts.get(vip_card_number) or AccountInquiry.not_found()

    def approve(self, kind: ApprovalKind, body: Mapping[str, Any]) -> ApprovalResult:
        """Record one approval unless a queued fault says otherwise."""
        txid = str(field(dict(body), "transactionId") or "")
        with self._lock:
            self.calls["approve"] += 1
            fault = self._approval_faults.pop(0) if self._approval_faults else None
            if not 8 <= len(txid) <= 25:
                raise VipRejectedError(
                    400,
                    vip_error_body(99, "transactionId must be 8 to 25 characters"),
                    f"VIP Connect {kind} approval: HTTP 400: errorCode 99",
                )
            if fault == "commit_then_timeout":
                self.approvals[txid] += 1
                raise VipTransientError(
                    f"VIP Connect {kind} approval of {txid}: timed out", maybe_sent=True
                )
            if fault == "timeout":
                raise VipTransientError(
                    f"VIP Connect {kind} approval of {txid}: timed out", maybe_sent=True
                )
            if fault is not None:
                status, error = fault if isinstance(fault, tuple) else (int(fault), None)
                if status >= 500:
                    raise VipTransientError(
                        f"VIP Connect {kind} approval of {txid}: HTTP {status}",
                        maybe_sent=True,
                        status=status,
                    )
                error = error or vip_error_body()
                self._failed[txid] = error
                raise VipRejectedError(
                    status,
                    error,
                    f"VIP Connect {kind} approval of {txid}: "
                    f"HTTP {status}: errorCode {error.get('errorCode')}",
                )
            self.approvals[txid] += 1
            self._failed.pop(txid, None)
            raw = {
                "transactionId": txid,
                "amount": jsonable(field(dict(body), "amount")),
                "transactionType": kind,
                "transactionResult": "Success",
            }
            return ApprovalResult(transaction_id=txid, transaction_result="Success", raw=raw)

    def lookup_transaction(self, transaction_id: str) -> TransactionStatus | None:
        """COMPLETE once approved, FAILED after a refused approval, None when never seen."""
        with self._lock:
            self.calls["lookup"] += 1
            fault = self._lookup_faults.pop(0) if self._lookup_faults else None
            if fault is not None:
                raise VipTransientError(
                    f"VIP Connect transaction lookup of {transaction_id}: {fault}", maybe_sent=True
                )
            if self.approvals[transaction_id]:
                entry = {
                    "transactionId": transaction_id,
                    "requiresApproval": True,
                    "approvalCompleted": True,
                    "transactionStatus": "COMPLETE",
                }
            elif transaction_id in self._failed:
                entry = {
                    "transactionId": transaction_id,
                    "requiresApproval": True,
                    "approvalCompleted": False,
                    "transactionStatus": "FAILED",
                    "errorMessage": self._failed[transaction_id].get("operatorErrorMessage"),
                }
            else:
                return None
            return TransactionStatus.model_validate({**entry, "raw": entry})
