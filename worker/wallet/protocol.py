"""The operator's wallet as the worker needs it: a balance, holds (frozen funds) by key through
their whole life, and credits.

A hold's key is chosen by the worker (the transaction id), so every call is idempotent: a repeated
``hold`` with the same key freezes nothing more and returns the same hold; ``capture`` settles the
held amount (the patron's balance goes down by it, once); ``release`` makes held funds available
again; ``reverse`` gives a captured amount back (VIP Connect failed the withdrawal after it was paid
out of the wallet). A hold moves held -> captured -> reversed, or held -> released, never back.
``credit`` adds a confirmed deposit's amount to the patron's balance once per key.
``patron_for_card`` names the patron of a VIP card number (a documented withdrawal names only the card).

Errors: ``WalletRefusedError`` (``reason``: ``insufficient_funds``, ``unknown_patron``,
``key_conflict``, ``no_such_hold``, ``wrong_state``) is final; ``WalletTransientError`` may be retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Protocol

HoldStatus = Literal["held", "released", "captured", "reversed"]
HOLD_STATUSES: tuple[HoldStatus, ...] = ("held", "released", "captured", "reversed")


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


@dataclass(frozen=True)
class Credit:
    """A confirmed deposit's ``amount`` (Decimal dollars) added to ``patron_id``'s balance under ``key``."""

    key: str
    patron_id: str
    amount: Decimal

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (amount as a string)."""
        return {"key": self.key, "patron_id": self.patron_id, "amount": str(self.amount), "status": "credited"}


class Wallet(Protocol):
    """Balance; the patron of a VIP card; idempotent hold, capture, release and reverse by key; idempotent
    credit."""

    def balance(self, patron_id: str) -> Decimal | None:
        """The patron's available balance; None when the wallet does not know the patron."""
        ...

    def patron_for_card(self, vip_card_number: str) -> str | None:
        """The operator's patron id of the VIP card ``vip_card_number``; None when the wallet does not know
        the card. Asked for a withdrawal that names no patron (VIP documents it so) when neither a session
        nor an earlier notification named the card's patron."""
        ...

    def hold(self, key: str, patron_id: str, amount: Decimal) -> Hold:
        """Freeze ``amount`` under ``key``; the same key again returns the same hold."""
        ...

    def release(self, key: str) -> bool:
        """Release the hold ``key``; True if it exists (released now or before), False if not.
        WalletRefusedError ``wrong_state`` when it was captured (reverse it instead)."""
        ...

    def capture(self, key: str) -> Hold:
        """Settle the held amount of ``key`` (status ``captured``); the same key again returns the same
        capture. WalletRefusedError ``no_such_hold``, or ``wrong_state`` when it was released."""
        ...

    def reverse(self, key: str) -> Hold:
        """Give the captured amount of ``key`` back to the patron (status ``reversed``); idempotent.
        WalletRefusedError ``no_such_hold``, or ``wrong_state`` when it was never captured."""
        ...

    def credit(self, key: str, patron_id: str, amount: Decimal) -> Credit:
        """Add ``amount`` (Decimal dollars) to the patron's balance once per ``key``; the same key again
        returns the same credit. WalletRefusedError ``unknown_patron``, ``key_conflict`` (the key was
        used for another patron or amount)."""
        ...
