"""An in-memory wallet: the fake for tests, the simulator's store, and an example ``wallet.class``.

With ``adapter: python`` and ``class: worker.wallet.fake:InMemoryWallet`` the
worker runs against it, which is only useful for demonstrations.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal

from worker.errors import WalletRefusedError
from worker.wallet.protocol import Credit, Hold


class InMemoryWallet:
    """Balances, holds and credits in dicts. ``holds_created``, ``captures``, ``releases``, ``reversals`` and
    ``credits_made`` count, per key, the times money actually moved (never more than 1 each)."""

    def __init__(self, balances: Mapping[str, Decimal] | None = None, cards: Mapping[str, str] | None = None):
        self._lock = threading.Lock()
        self._balances: dict[str, Decimal] = dict(balances or {})
        self._cards: dict[str, str] = dict(cards or {})  # VIP card number -> patron id
        self.card_lookups: Counter[str] = Counter()  # patron_for_card calls per card
        self._holds: dict[str, Hold] = {}
        self._keys_of: defaultdict[str, list[str]] = defaultdict(list)  # patron id -> its hold keys
        self._credits: dict[str, Credit] = {}
        self.holds_created: Counter[str] = Counter()
        self.captures: Counter[str] = Counter()
        self.releases: Counter[str] = Counter()
        self.reversals: Counter[str] = Counter()
        self.credits_made: Counter[str] = Counter()

    def set_balance(self, patron_id: str, balance: Decimal) -> None:
        """Seed or replace a patron's total balance."""
        with self._lock:
            self._balances[patron_id] = balance

    def set_card(self, vip_card_number: str, patron_id: str) -> None:
        """Seed or replace the patron of a VIP card."""
        with self._lock:
            self._cards[vip_card_number] = patron_id

    def patron_for_card(self, vip_card_number: str) -> str | None:
        """The patron of ``vip_card_number``; None for a card the wallet does not know."""
        with self._lock:
            self.card_lookups[vip_card_number] += 1
            return self._cards.get(vip_card_number)

    def holds(self) -> dict[str, Hold]:
        """A snapshot of every hold by key."""
        with self._lock:
            return dict(self._holds)

    def credits(self) -> dict[str, Credit]:
        """A snapshot of every credit by key."""
        with self._lock:
            return dict(self._credits)

    def _available(self, patron_id: str) -> Decimal:
        # The patron's own holds, not every hold: the simulator asks for a balance per notification.
        holds = (self._holds[key] for key in self._keys_of.get(patron_id, ()))
        held = sum((h.amount for h in holds if h.status == "held"), Decimal(0))
        return self._balances[patron_id] - held

    def balance(self, patron_id: str) -> Decimal | None:
        """Total balance minus the funds held; None for an unknown patron."""
        with self._lock:
            if patron_id not in self._balances:
                return None
            return self._available(patron_id)

    def hold(self, key: str, patron_id: str, amount: Decimal) -> Hold:
        """Freeze funds once per key; refuse unknown patrons, short balances, reused keys."""
        with self._lock:
            existing = self._holds.get(key)
            if existing is not None:
                if existing.patron_id != patron_id or existing.amount != amount:
                    raise WalletRefusedError(
                        "key_conflict", f"hold {key} already exists for another patron or amount"
                    )
                return existing
            if patron_id not in self._balances:
                raise WalletRefusedError(
                    "unknown_patron", f"hold {key}: the wallet has no such patron"
                )
            if amount <= 0 or not amount.is_finite():
                raise WalletRefusedError("invalid_amount", f"hold {key}: amount must be positive")
            if self._available(patron_id) < amount:
                raise WalletRefusedError("insufficient_funds", f"hold {key}: insufficient funds")
            hold = Hold(key, patron_id, amount, "held")
            self._holds[key] = hold
            self._keys_of[patron_id].append(key)
            self.holds_created[key] += 1
            return hold

    def release(self, key: str) -> bool:
        """Make held funds available again; False when there is no such hold. WalletRefusedError
        ``wrong_state`` for a captured or reversed hold (its money already moved)."""
        with self._lock:
            existing = self._holds.get(key)
            if existing is None:
                return False
            if existing.status in ("captured", "reversed"):
                raise WalletRefusedError("wrong_state", f"release {key}: the hold was {existing.status}")
            if existing.status == "held":
                self._holds[key] = replace(existing, status="released")
                self.releases[key] += 1
            return True

    def capture(self, key: str) -> Hold:
        """Take the held amount out of the patron's balance, once."""
        with self._lock:
            existing = self._existing(key, "capture")
            if existing.status in ("released", "reversed"):
                raise WalletRefusedError("wrong_state", f"capture {key}: the hold was {existing.status}")
            if existing.status == "held":
                self._balances[existing.patron_id] -= existing.amount
                existing = self._holds[key] = replace(existing, status="captured")
                self.captures[key] += 1
            return existing

    def reverse(self, key: str) -> Hold:
        """Give a captured amount back to the patron's balance, once."""
        with self._lock:
            existing = self._existing(key, "reverse")
            if existing.status in ("held", "released"):
                raise WalletRefusedError("wrong_state", f"reverse {key}: the hold was never captured")
            if existing.status == "captured":
                self._balances[existing.patron_id] += existing.amount
                existing = self._holds[key] = replace(existing, status="reversed")
                self.reversals[key] += 1
            return existing

    def credit(self, key: str, patron_id: str, amount: Decimal) -> Credit:
        """Add a confirmed deposit to the patron's balance once per key."""
        with self._lock:
            existing = self._credits.get(key)
            if existing is not None:
                if existing.patron_id != patron_id or existing.amount != amount:
                    raise WalletRefusedError("key_conflict", f"credit {key} already exists for another patron "
                                             "or amount")
                return existing
            if patron_id not in self._balances:
                raise WalletRefusedError("unknown_patron", f"credit {key}: the wallet has no such patron")
            if amount <= 0 or not amount.is_finite():
                raise WalletRefusedError("invalid_amount", f"credit {key}: amount must be positive")
            credit = self._credits[key] = Credit(key, patron_id, amount)
            self._balances[patron_id] += amount
            self.credits_made[key] += 1
            return credit

    def _existing(self, key: str, what: str) -> Hold:
        existing = self._holds.get(key)
        if existing is None:
            raise WalletRefusedError("no_such_hold", f"{what} {key}: the wallet has no such hold")
        return existing
