"""A VipApi that times every call of the one it wraps (``vipflow_vip_call_seconds`` by endpoint)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from worker.errors import VipRejectedError, VipTransientError
from worker.metrics import VIP_CALL_SECONDS, VIP_CALLS
from worker.vip.models import AccountInquiry, ApprovalResult, TransactionStatus
from worker.vip.protocol import ApprovalKind, VipApi

T = TypeVar("T")


class TimedVip:
    """Delegates to ``inner``; observes latency and result per endpoint (no ids in labels)."""

    def __init__(self, inner: VipApi):
        self.inner = inner

    def _timed(self, endpoint: str, call: Callable[[], T]) -> T:
        start = time.perf_counter()
        result = "error"
        try:
            value = call()
            result = "ok"
            return value
        except VipTransientError:
            result = "transient"
            raise
        except VipRejectedError:
            result = "rejected"
            raise
        finally:
            VIP_CALL_SECONDS.labels(endpoint).observe(time.perf_counter() - start)
            VIP_CALLS.labels(endpoint, result).inc()

    def account_inquiry(self, vip_card_number: str, product_type: str | None) -> AccountInquiry:
        """The wrapped account inquiry, timed as ``account_inquiry``."""
        return self._timed("account_inquiry", lambda: self.inner.account_inquiry(vip_card_number, product_type))

    def approve(self, kind: ApprovalKind, body: Mapping[str, Any]) -> ApprovalResult:
        """The wrapped approval, timed as ``deposit_approval`` or ``withdraw_approval``."""
        return self._timed(f"{kind}_approval", lambda: self.inner.approve(kind, body))

    def lookup_transaction(self, transaction_id: str) -> TransactionStatus | None:
        """The wrapped transaction lookup, timed as ``transaction_lookup``."""
        return self._timed("transaction_lookup", lambda: self.inner.lookup_transaction(transaction_id))
