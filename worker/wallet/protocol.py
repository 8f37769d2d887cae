"""The operator's wallet as the worker needs it: a balance, and holds (frozen funds) by key.

A hold's key is chosen by the worker (one per transaction), so a repeated
``hold`` with the same key freezes nothing more and returns the same hold.
Errors: ``WalletRefusedError`` (``reason``: ``insufficient_funds``,
``unknown_patron``, ``key_conflict``) is final; ``WalletTransientError`` may be retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Protocol

HoldStatus = Literal["held", "released"]


@dataclass(frozen=True)
class Hold:
    """Funds frozen in a patron's wallet under ``key``."""

    key: str
    patron_id: str
    amount: Decimal
    status: HoldStatus = "held"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (amount as a string)."""
        return {
            "key": self.key,
            "patron_id": self.patron_id,
            "amount": str(self.amount),
            "status": self.status,
        }


class Wallet(Protocol):
    """Balance, idempotent hold, idempotent release."""

    def balance(self, patron_id: str) -> Decimal | None:
        """The patron's available balance; None when the wallet does not know the patron."""
        ...

    def hold(self, key: str, patron_id: str, amount: Decimal) -> Hold:
        """Freeze ``amount`` under ``key``; the same key again returns the same hold."""
        ...

    def release(self, key: str) -> bool:
        """Release the hold ``key``; True if it exists (released now or before), False if not."""
        ...
