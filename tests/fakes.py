"""Fakes the tests share beyond those the packages ship beside their real adapters."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from worker.wallet.fake import InMemoryWallet


class BreakableWallet(InMemoryWallet):
    """An in-memory wallet whose holds raise an unexpected error (not a wallet error) while ``broken``."""

    def __init__(self, balances: Mapping[str, Decimal] | None = None, *, broken: bool = False):
        super().__init__(balances)
        self.broken = broken

    def hold(self, key: str, patron_id: str, amount: Decimal) -> Any:
        if self.broken:
            raise RuntimeError("the wallet's driver crashed")
        return super().hold(key, patron_id, amount)
