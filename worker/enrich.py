"""Enrichment: what the worker asks before deciding (account inquiry, wallet, velocity, the patron session).

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
from worker.patron import PatronFinder
from worker.store.accounts import AccountCache
from worker.store.velocity import Velocity, VelocityStore
from worker.vip.models import AccountInquiry
from worker.vip.protocol import VipApi
from worker.vip.retry import RetryPolicy
from worker.wallet.protocol import Wallet
from worker.wording import plural

log = logging.getLogger("vipflow.enrich")


# The sources a rule set may read beyond the notification; velocity is always kept (it is history).
SOURCES = frozenset({"account", "wallet", "session"})


@dataclass(frozen=True)
class Enriched:
    """The enrichment, the problems met while gathering it (messages without personal data), and
    the sources not asked because no rule reads them (their facts are unknown on the record)."""

    found: Enrichment
    problems: tuple[str, ...] = ()
    unasked: tuple[str, ...] = ()


def enrich(note: Notification, received_at_s: float, *, vip: VipApi, accounts: AccountCache,
           wallet: Wallet, velocity: VelocityStore, asks: frozenset[str] = SOURCES,
           patrons: PatronFinder | None = None, sessions_required: bool | None = None,
           retry: RetryPolicy | None = None) -> Enriched:
    """Ask VIP Connect (through the cache), the wallet, the velocity store and the ledger's patron
    sessions about ``note``.

    Only the sources in ``asks`` are asked (the pipeline passes those its rules read). The wallet's
    balance is the patron's that ``patrons`` finds (``worker.patron``: the notification's PatronId,
    else the session's, the card's learned in the ledger, the wallet's for the card); without a
    finder only the notification's PatronId is used and no session is read. The account inquiry is
    asked again on 5xx, timeouts and resets as ``retry`` allows before its facts become unknown. The
    account-cache read and the velocity script share one Redis round trip.
    """
    problems: list[str] = []
    patrons = patrons or PatronFinder(note, sessions=None, cards=None, wallet=wallet)
    session = patrons.session() if "session" in asks else None
    card, product = note.vip_card_number, note.product_type
    ask_account = "account" in asks and bool(card)
    observe = bool(card and note.amount is not None and note.transaction_type)
    cached, seen = _redis_lookups(note, received_at_s, accounts, velocity, ask_account, observe)
    account: AccountInquiry | None = None
    if ask_account and card:
        try:
            account = accounts.resolve(cached, vip, card, product, retry)
        except VipApiError as exc:
            tries = f" after {plural(retry.max_attempts, 'attempt')}" if retry is not None else ""
            problems.append(f"account inquiry failed{tries} ({exc}); account facts unknown")
    balance: Decimal | None = None
    if "wallet" in asks:
        try:
            patron = patrons.find().patron_id
        except WalletError as exc:
            patron = None
            problems.append(f"wallet patron lookup failed ({exc}); wallet.balance unknown")
        try:
            balance = wallet.balance(patron) if patron else None
        except WalletError as exc:
            problems.append(f"wallet balance failed ({exc}); wallet.balance unknown")
    for problem in problems:
        log.warning(problem, extra={"transaction_id": note.transaction_id})
    asked_session = patrons.reads_sessions and "session" in asks
    age = session.age_s(received_at_s) if session is not None else None
    found = Enrichment(account=account, wallet_balance=balance, velocity=seen, session_required=sessions_required,
                       session_asked=asked_session, session=session if asked_session else None, session_age_s=age)
    unasked = SOURCES - asks if patrons.reads_sessions else (SOURCES - asks) | {"session"}
    return Enriched(found, tuple(problems), tuple(sorted(unasked)))


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
