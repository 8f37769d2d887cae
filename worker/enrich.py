"""Enrichment: what the worker asks before deciding (account inquiry, wallet, velocity).

A failed inquiry leaves its facts unknown (None) and a note on the record rather
than stopping the decision: the rules see unknown facts as never matching a
comparison, so a rule set decides what an unknown account means. A Redis error
is not caught here: the task is redelivered instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from worker.errors import VipApiError, WalletError
from worker.facts import Enrichment
from worker.notification import Notification
from worker.store.accounts import AccountCache
from worker.store.velocity import VelocityStore
from worker.vip.models import AccountInquiry
from worker.vip.protocol import VipApi
from worker.wallet.protocol import Wallet

log = logging.getLogger("vipflow.enrich")


@dataclass(frozen=True)
class Enriched:
    """The enrichment and the problems met while gathering it (messages without personal data)."""

    found: Enrichment
    problems: tuple[str, ...] = ()


def enrich(note: Notification, received_at_s: float, *, vip: VipApi, accounts: AccountCache,
           wallet: Wallet, velocity: VelocityStore) -> Enriched:
    """Ask VIP Connect (through the cache), the wallet and the velocity store about ``note``."""
    problems: list[str] = []
    account: AccountInquiry | None = None
    if note.vip_card_number:
        try:
            account = accounts.inquire(vip, note.vip_card_number, note.product_type)
        except VipApiError as exc:
            problems.append(f"account inquiry failed ({type(exc).__name__}); account facts unknown")
    balance: Decimal | None = None
    if note.patron_id:
        try:
            balance = wallet.balance(note.patron_id)
        except WalletError as exc:
            problems.append(f"wallet balance failed ({type(exc).__name__}); wallet.balance unknown")
    seen = None
    if note.vip_card_number and note.amount is not None and note.transaction_type:
        seen = velocity.observe(note.transaction_type, note.vip_card_number, note.transaction_id,
                                note.amount, received_at_s)
    for problem in problems:
        log.warning(problem, extra={"transaction_id": note.transaction_id})
    return Enriched(Enrichment(account=account, wallet_balance=balance, velocity=seen), tuple(problems))
