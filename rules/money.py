"""Money in the rules: Decimal dollars compared exactly, as integer cents.

durable_rules compares numbers as C doubles. Whole numbers up to 2**53 are
exact in a double, so every amount is turned into integer cents before it
reaches either evaluator; a boundary (10.00 vs 10.00, 0.1 + 0.2 vs 0.3) then
compares exactly. An amount with a fraction of a cent is refused, not rounded.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from rules.errors import RuleError

MAX_CENTS = 2**53 - 1


class MoneyError(RuleError):
    """An amount that cannot be compared exactly."""


def to_cents(value: Decimal | int | str) -> int:
    """Dollars to integer cents; MoneyError for fractions of a cent or huge values."""
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise MoneyError(f"{value!r} is not an amount") from None
    if not amount.is_finite():
        raise MoneyError("an amount must be a finite number")
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise MoneyError(f"{amount} has a fraction of a cent")
    whole = int(cents)
    if abs(whole) > MAX_CENTS:
        raise MoneyError(f"{amount} is too large to compare exactly")
    return whole
