"""Where a returning patron goes next: a transaction's state, amount and configured redirect.

Answers the operator's site (``GET /api/v1/transactions/{id}``) from the ledger: the
transaction's current state when VIP has notified it, ``pending`` when only its session is
open. Nothing personal: no patron id, card, name or bank, only what the site needs to route.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.config import RedirectSettings
from worker.ledger import Ledger
from worker.ledger.sessions import SessionStore
from worker.patron_sessions import money

PENDING = "pending"  # a session is open and VIP has not notified the transaction yet


@dataclass(frozen=True)
class TransactionStatus:
    """What the status API answers. ``amount`` in dollars, printed with two decimals."""

    transaction_id: str
    state: str
    transaction_type: str | None
    amount: str | None
    redirect: str

    def to_dict(self) -> dict[str, Any]:
        """The API's JSON answer."""
        return {"transaction_id": self.transaction_id, "state": self.state,
                "transaction_type": self.transaction_type, "amount": self.amount, "redirect": self.redirect}


def transaction_status(transaction_id: str, *, ledger: Ledger, sessions: SessionStore,
                       redirects: RedirectSettings) -> TransactionStatus | None:
    """The status of ``transaction_id``, or None when vipflow knows neither a transaction nor an open
    session of that id. Raises LedgerUnavailable."""
    stored = ledger.load(transaction_id)
    session = sessions.open_session(transaction_id)
    if stored is None and session is None:
        return None
    if stored is not None:
        rec = stored.record
        state = str(rec.state)
        ttype = rec.transaction_type or (session.transaction_type if session else None)
        amount = rec.amount if rec.amount not in (None, "None") else (session.amount if session else None)
    else:
        assert session is not None
        state, ttype, amount = PENDING, session.transaction_type, session.amount
    return TransactionStatus(transaction_id, state, ttype, money(amount) if amount is not None else None,
                             redirects.target(ttype, state))
