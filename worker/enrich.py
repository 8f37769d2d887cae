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

from redis.exceptions import NoScriptError

from worker.errors import VipApiError, WalletError
from worker.facts import Enrichment
from worker.notification import Notification
from worker.store.accounts import AccountCache
from worker.store.velocity import Velocity, VelocityStore
from worker.vip.models import AccountInquiry
from worker.vip.protocol import VipApi
from worker.vip.retry import RetryPolicy
from worker.wallet.protocol import Wallet

log = logging.getLogger("vipflow.enrich")


# The sources a rule set may read beyond the notification; velocity is always kept (it is history).
SOURCES = frozenset({"account", "wallet"})


@dataclass(frozen=True)
class Enriched:
    """The enrichment, the problems met while gathering it (messages without personal data), and
    the sources not asked because no rule reads them (their facts are unknown on the record)."""

    found: Enrichment
    problems: tuple[str, ...] = ()
    unasked: tuple[str, ...] = ()


def enrich(note: Notification, received_at_s: float, *, vip: VipApi, accounts: AccountCache,
           wallet: Wallet, velocity: VelocityStore, asks: frozenset[str] = SOURCES,
           retry: RetryPolicy | None = None) -> Enriched:
    """Ask VIP Connect (through the cache), the wallet and the velocity store about ``note``.

    Only the sources in ``asks`` are asked (the pipeline passes those its rules read). The account
    inquiry is asked again on 5xx, timeouts and resets as ``retry`` allows before its facts become unknown.
    The account-cache read and the velocity script share one Redis round trip.
    """
    problems: list[str] = []
    card, product = note.vip_card_number, note.product_type
    ask_account = "account" in asks and bool(card)
    observe = bool(card and note.amount is not None and note.transaction_type)
    cached, seen = _redis_lookups(note, received_at_s, accounts, velocity, ask_account, observe)
    account: AccountInquiry | None = None
    if ask_account and card:
        try:
            account = accounts.resolve(cached, vip, card, product, retry)
        except VipApiError as exc:
            tries = f" after {retry.max_attempts} attempts" if retry is not None else ""
            problems.append(f"account inquiry failed{tries} ({type(exc).__name__}); account facts unknown")
    balance: Decimal | None = None
    if "wallet" in asks and note.patron_id:
        try:
            balance = wallet.balance(note.patron_id)
        except WalletError as exc:
            problems.append(f"wallet balance failed ({type(exc).__name__}); wallet.balance unknown")
    for problem in problems:
        log.warning(problem, extra={"transaction_id": note.transaction_id})
    return Enriched(Enrichment(account=account, wallet_balance=balance, velocity=seen), tuple(problems),
                    tuple(sorted(SOURCES - asks)))


def _redis_lookups(note: Notification, at: float, accounts: AccountCache, velocity: VelocityStore,
                   ask_account: bool, observe: bool) -> tuple[bytes | None, Velocity | None]:
    """The cached account (raw) and the velocity windows, in one pipeline (Redis errors propagate)."""
    for attempt in (1, 2):
        pipe = accounts.client.pipeline(transaction=False)
        queued = ask_account and accounts.queue_get(pipe, str(note.vip_card_number), note.product_type)
        if observe:
            velocity.queue_observe(pipe, str(note.transaction_type), str(note.vip_card_number),
                                   note.transaction_id, note.amount or Decimal(0), at)
        if not (queued or observe):
            return None, None
        try:
            out = pipe.execute()
        except NoScriptError:
            if attempt == 2:
                raise
            velocity.load_script()  # Redis restarted and forgot the script: load it, run again
            continue
        return (out[0] if queued else None), (VelocityStore.parse(out[-1]) if observe else None)
    raise AssertionError("unreachable")  # pragma: no cover
