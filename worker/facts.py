"""Building the facts a ruleset decides on, following ``rules.catalogue`` exactly.

Pure: a notification and what enrichment found in, a nested mapping out, every
catalogued path present and None when unknown. Money stays Decimal here; the
stored copy (:func:`facts_for_record`) has money as strings and no personal data
beyond the identifiers the rules may name (card number, patron id, routing number, the
device's IP address for the lists); every view of it masks those (``worker.masking``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rules.catalogue import CATALOGUE, blank_facts
from worker.config import LimitsSettings
from worker.ledger.sessions import PatronSession
from worker.notification import Notification
from worker.store.velocity import WINDOWS_S, Velocity
from worker.vip.models import AccountInquiry

VELOCITY_KINDS = ("attempts", "approved", "pending", "committed")

_NOTIFICATION_FIELDS = (
    "transaction_id", "transaction_type", "amount", "patron_id", "vip_card_number", "bank_name",
    "bank_routing_number", "location", "product_type", "fund_transfer_type", "instant_payment_eligible",
    "one_click_discount_applied", "is_warrantied",
)
_LIMITS = ("min_deposit", "max_deposit", "remaining_daily_deposit", "min_withdraw", "max_withdraw")


@dataclass(frozen=True)
class Enrichment:
    """What the worker learnt beyond the notification; None where it could not find out."""

    account: AccountInquiry | None = None
    wallet_balance: Decimal | None = None
    velocity: Velocity | None = None
    session_required: bool | None = None  # sessions.required
    session_asked: bool = False  # the ledger was asked for the session (else session.* is unknown)
    session: PatronSession | None = None  # the open session of this transaction id
    session_age_s: int | None = None


def effective_limits(note: Notification, defaults: LimitsSettings) -> dict[str, Decimal | None]:
    """The notification's operator limits where given, else the configured defaults."""
    given = note.operator_limits
    out: dict[str, Decimal | None] = {}
    for name in _LIMITS:
        value = getattr(given, name, None) if given is not None else None
        out[name] = value if value is not None else getattr(defaults, name, None)
    return out


def build_facts(note: Notification, found: Enrichment, defaults: LimitsSettings) -> dict[str, Any]:
    """The nested facts for ``note``: every catalogued path, None when unknown."""
    facts: dict[str, Any] = blank_facts()
    for name in _NOTIFICATION_FIELDS:
        facts[name] = _typed(name, getattr(note, name))
    if note.operator_limits is not None:
        for name in (*_LIMITS, "wallet_balance"):
            facts["operator_limits"][name] = getattr(note.operator_limits, name)
    facts["limits"].update(effective_limits(note, defaults))
    account = found.account
    if account is not None:
        facts["account"].update(
            found=account.found,
            is_in_good_standing=account.is_in_good_standing,
            available_amount=account.available_amount,
            limit_amount=account.limit_amount,
            one_click_discount_eligible=account.one_click_discount_eligible,
        )
        if account.found:
            bank = account.bank_account(note.masked_bank_account_number, note.bank_routing_number)
            facts["bank"]["found"] = bank is not None
            if bank is not None:
                facts["bank"]["instant_payment_eligible"] = bank.instant_payment_eligible
                facts["bank"]["available_amount"] = bank.available_amount
    facts["wallet"]["balance"] = found.wallet_balance
    facts["session"]["required"] = found.session_required
    if found.session_asked:
        session = found.session
        facts["session"]["found"] = session is not None
        if session is not None:
            facts["session"].update(amount=session.amount, transaction_type=session.transaction_type,
                                    age_s=found.session_age_s)
    if found.velocity is not None:
        for window in WINDOWS_S:  # the attempts under their first names, kept for existing rule files
            facts["velocity"][f"count_{window}"] = found.velocity.counts.get(window)
            facts["velocity"][f"amount_{window}"] = found.velocity.amounts.get(window)
        for kind in VELOCITY_KINDS:
            tally = found.velocity.tally(kind)
            if tally is None:
                continue
            for window in WINDOWS_S:
                facts["velocity"][kind][f"count_{window}"] = tally.counts.get(window)
                facts["velocity"][kind][f"amount_{window}"] = tally.amounts.get(window)
    return facts


def _typed(path: str, value: Any) -> Any:
    # The lenient notification keeps unexpected types as sent (e.g. a numeric patron id):
    # give the rules the catalogue's type, or unknown when it cannot be had.
    kind = CATALOGUE[path].type
    if value is None:
        return None
    if kind == "string":
        return str(value)
    if kind == "bool":
        return value if isinstance(value, bool) else None
    return value


def facts_for_record(facts: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-ready copy for the transaction record: money as strings, nothing else changed."""
    out: dict[str, Any] = {}
    for key, value in facts.items():
        if isinstance(value, Mapping):
            out[key] = facts_for_record(value)
        elif isinstance(value, Decimal):
            out[key] = str(value)
        else:
            out[key] = value
    return out


def facts_from_record(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The facts as stored on a record, money back to Decimal (for a backtest that re-decides)."""
    def walk(node: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, Mapping):
                out[key] = walk(value, path + ".")
            elif value is not None and path in CATALOGUE and CATALOGUE[path].type == "money":
                out[key] = Decimal(str(value))
            else:
                out[key] = value
        return out

    return walk(stored, "")
