"""The fact catalogue: every fact the worker provides to the rules, with its type.

A rule may name only these paths. The worker gives every path a value, ``None``
when unknown (VIP did not say, the account was not found, ...), so that a
comparison with an unknown fact is false and ``exists: false`` is true.

Types: ``money`` is a Decimal amount in dollars (compared exactly, in integer
cents); ``count`` a whole number; ``string`` and ``bool`` as usual. A ``string``
with a closed value list refuses any other literal in a rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FactType = Literal["money", "count", "string", "bool"]


@dataclass(frozen=True)
class Fact:
    """One catalogued fact path."""

    path: str
    type: FactType
    description: str
    values: tuple[str, ...] = ()


def _f(path: str, type_: FactType, description: str, values: tuple[str, ...] = ()) -> Fact:
    return Fact(path, type_, description, values)


_LIMITS = ("min_deposit", "max_deposit", "remaining_daily_deposit", "min_withdraw", "max_withdraw")
_WINDOWS = ("1h", "24h", "7d")
# What each velocity tally counts (worker.store.velocity).
_KINDS = {
    "attempts": "transactions notified, whatever became of them",
    "approved": "transactions VIP Connect approved (money that moved)",
    "pending": "transactions decided but not ended (held, approval in flight, waiting in review)",
    "committed": "approved or pending together (money moved or held to move)",
}

FACTS: tuple[Fact, ...] = (
    # The notification
    _f("transaction_id", "string", "the operator-assigned transaction id"),
    _f("transaction_type", "string", "deposit or withdraw", ("deposit", "withdraw")),
    _f("amount", "money", "the amount of the deposit or withdrawal"),
    _f("patron_id", "string", "the operator's patron id"),
    _f("vip_card_number", "string", "the patron's VIP card number"),
    _f("bank_name", "string", "the bank the patron chose"),
    _f("bank_routing_number", "string", "the routing number of the patron's bank account"),
    _f("location", "string", "the device's IP address, as VIP Connect sends it (Location)"),
    _f("product_type", "string", "VIP product: preferred or online", ("preferred", "online")),
    _f("fund_transfer_type", "string", "ACH, SDA (same-day ACH), INP (instant), or what VIP sends"),
    _f("instant_payment_eligible", "bool", "the notification says the bank supports instant payment"),
    _f("one_click_discount_applied", "bool", "the one-click discount was applied"),
    _f("is_warrantied", "bool", "Hybrid ACH: VIP warranties the transaction"),
    *(_f(f"operator_limits.{k}", "money", f"{k} as the notification gives it") for k in _LIMITS),
    _f("operator_limits.wallet_balance", "money", "wallet balance as the notification gives it"),
    # Effective limits: the notification's operator limits, else the configured defaults
    *(_f(f"limits.{k}", "money", f"effective {k}") for k in _LIMITS),
    # Account inquiry
    _f("account.found", "bool", "VIP knows this VIP card (false: 404 or no data)"),
    _f("account.is_in_good_standing", "bool", "VIP says the account is in good standing"),
    _f("account.available_amount", "money", "VIP Preferred: the user-level available amount"),
    _f("account.limit_amount", "money", "VIP's limit amount for the account"),
    _f("account.one_click_discount_eligible", "bool", "eligible for the one-click discount"),
    # The account's bank entry that matches the notification's bank account
    _f("bank.found", "bool", "the account inquiry lists the notification's bank account"),
    _f("bank.instant_payment_eligible", "bool", "that bank supports instant payment"),
    _f("bank.available_amount", "money", "VIP Online: the bank-level available amount"),
    # The operator's wallet
    _f("wallet.balance", "money", "the patron's wallet balance (before any freeze for this one)"),
    # The patron session vipflow opened for this transaction id (`vipflow web`), if any
    _f("session.required", "bool", "sessions.required: every notification should follow a session opened by vipflow"),
    _f("session.found", "bool", "vipflow opened a session with this transaction id and VIP accepted it"),
    _f("session.amount", "money", "the amount the patron asked for when the session was opened"),
    _f("session.transaction_type", "string", "the session's type: deposit or withdraw", ("deposit", "withdraw")),
    _f("session.age_s", "count", "seconds from the session's opening to the notification's receipt"),
    # Velocity: same transaction type, same VIP card, before this transaction, by what became of it
    *(_f(f"velocity.{kind}.count_{w}", "count", f"{what}, this type and card, in {w}")
      for kind, what in _KINDS.items() for w in _WINDOWS),
    *(_f(f"velocity.{kind}.amount_{w}", "money", f"the sum of their amounts ({kind}) in {w}")
      for kind in _KINDS for w in _WINDOWS),
    # The attempts under their first names (rule files written before the tallies had kinds)
    *(_f(f"velocity.count_{w}", "count", f"same as velocity.attempts.count_{w}") for w in _WINDOWS),
    *(_f(f"velocity.amount_{w}", "money", f"same as velocity.attempts.amount_{w}") for w in _WINDOWS),
)

CATALOGUE: dict[str, Fact] = {f.path: f for f in FACTS}


def blank_facts() -> dict[str, object]:
    """A nested facts mapping with every catalogued path set to None."""
    out: dict[str, object] = {}
    for fact in FACTS:
        node = out
        *parents, leaf = fact.path.split(".")
        for p in parents:
            node = node.setdefault(p, {})  # type: ignore[assignment]
        node[leaf] = None
    return out
