"""Find whose transaction a notification is: the patron whose wallet a withdrawal is paid from.

VIP Connect's documented withdrawal notification carries the VIP card number but no PatronId. The
patron is found, in this order, by:

1. ``notification``: the notification's own PatronId;
2. ``session``: the patron of the session opened through vipflow for this transaction id (open only);
3. ``ledger``: the VIP card's patron, learned from every earlier notification that named both
   (``worker.ledger.patron_cards``);
4. ``wallet``: the wallet's answer for the card (``Wallet.patron_for_card``).

Else the patron is unknown and a withdrawal that needs a hold goes to review with
:data:`UNKNOWN_PATRON`. The source that found it is recorded on the freeze step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from worker.ledger.patron_cards import PatronCards
from worker.ledger.sessions import PatronSession, SessionStore
from worker.notification import Notification
from worker.wallet.protocol import Wallet

PatronSource = Literal["notification", "session", "ledger", "wallet"]
SOURCES: tuple[PatronSource, ...] = ("notification", "session", "ledger", "wallet")

UNKNOWN_PATRON = ("the patron is unknown: the notification names none, no open session was issued for its "
                  "transaction id, no earlier notification named its VIP card's patron, and the wallet does "
                  "not know the card")


@dataclass(frozen=True)
class FoundPatron:
    """The patron id and the source that named it; both None when no source knows the patron."""

    patron_id: str | None
    source: PatronSource | None


class PatronFinder:
    """Finds one notification's patron (see the module docstring), asking each source at most once.

    ``sessions`` and ``cards`` are the ledger's (None: not asked). LedgerUnavailable propagates (the
    task is delivered again); so do the wallet's errors (``WalletError``): a caller decides what a
    wallet that cannot answer means, and a later :meth:`find` asks it again.

    ``defer_session``: the session is taken to be absent without reading it (still asked, so its facts
    read "not found"); the caller's first write of the transaction must then carry the session guard
    (``worker.ledger.session_guard``), which refuses it when an open session exists.
    """

    def __init__(self, note: Notification, *, sessions: SessionStore | None, cards: PatronCards | None,
                 wallet: Wallet, defer_session: bool = False):
        self.note, self._sessions, self._cards, self._wallet = note, sessions, cards, wallet
        self._session_read = defer_session
        self._session: PatronSession | None = None
        self._found: FoundPatron | None = None

    @property
    def reads_sessions(self) -> bool:
        """True when the ledger's patron sessions are asked."""
        return self._sessions is not None

    def session(self) -> PatronSession | None:
        """The open session of the notification's transaction id, read once (None without one)."""
        if not self._session_read:
            if self._sessions is not None and self.note.transaction_id:
                self._session = self._sessions.open_session(self.note.transaction_id)
            self._session_read = True
        return self._session

    def find(self) -> FoundPatron:
        """The patron and its source, the first source that knows it winning; searched once (a search that
        raised is not kept: the next call searches again)."""
        if self._found is None:
            self._found = self._search()
        return self._found

    def _search(self) -> FoundPatron:
        if self.note.patron_id:
            return FoundPatron(self.note.patron_id, "notification")
        session = self.session()
        if session is not None and session.patron_id:
            return FoundPatron(session.patron_id, "session")
        card = self.note.vip_card_number
        if not card:
            return FoundPatron(None, None)
        if self._cards is not None and (learned := self._cards.patron_of(card)):
            return FoundPatron(learned, "ledger")
        if patron := self._wallet.patron_for_card(card):
            return FoundPatron(patron, "wallet")
        return FoundPatron(None, None)
