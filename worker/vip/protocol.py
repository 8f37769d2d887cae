"""The VIP Connect API as the worker needs it: three calls behind one small protocol.

``VipClient`` (HTTP) and ``FakeVip`` (in memory) implement it; the contract
tests run the same claims against both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

from worker.vip.models import AccountInquiry, ApprovalResult, TransactionStatus

ApprovalKind = Literal["deposit", "withdraw"]


class VipApi(Protocol):
    """Account inquiry, one approval attempt, and the transaction lookup."""

    def account_inquiry(self, vip_card_number: str, product_type: str | None) -> AccountInquiry:
        """The patron's account; ``found=False`` when VIP has no such card (404, 204, null)."""
        ...

    def approve(self, kind: ApprovalKind, body: Mapping[str, Any]) -> ApprovalResult:
        """Call Deposit/WithdrawApproval once.

        Raises VipRejectedError on 4xx or a result other than "Success", and
        VipTransientError (with ``maybe_sent``) on 5xx, timeouts and refused connections.
        """
        ...

    def lookup_transaction(self, transaction_id: str) -> TransactionStatus | None:
        """What VIP Connect knows of a transaction; None when it knows nothing (204)."""
        ...


PatronKind = Literal["existing", "new"]


class PatronSessionApi(Protocol):
    """Opening a patron session (the operator site's side, before any notification)."""

    def open_patron_session(self, patron_kind: PatronKind, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST patronsession/existing or /new once; VIP's answer (it carries ``sessionId``).

        Raises VipRejectedError on 4xx or an answer without a session id, VipTransientError on 5xx,
        timeouts and refused connections (never retried here: the caller decides).
        """
        ...
