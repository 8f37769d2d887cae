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
_MAX_DIGITS = len(str(MAX_CENTS))


class MoneyError(RuleError):
    """An amount that cannot be compared exactly."""


def to_cents(value: Decimal | int | str) -> int:
    """Dollars to integer cents; MoneyError for fractions of a cent or huge values.

    Exact at any size: the digits are read from the Decimal itself, never through
    Decimal arithmetic (which rounds to 28 digits, so 1.00000000000000000000000000001
    would pass as 1.00) nor a conversion to int (1e999999999 would build a billion digits).
    """
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise MoneyError(f"{value!r} is not an amount") from None
    if not amount.is_finite():
        raise MoneyError("an amount must be a finite number")
    sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite
    shift = exponent + 2  # the power of ten of the last digit, counted in cents
    if shift < 0:
        if any(digits[shift:]):
            raise MoneyError(f"{_short(amount)} has a fraction of a cent")
        digits, shift = digits[:shift], 0
    significant = "".join(map(str, digits)).lstrip("0")
    if not significant:
        return 0
    if len(significant) + shift > _MAX_DIGITS:
        raise MoneyError(f"{_short(amount)} is too large to compare exactly")
    whole: int = int(significant) * 10**shift
    if whole > MAX_CENTS:
        raise MoneyError(f"{_short(amount)} is too large to compare exactly")
    return -whole if sign else whole


def _short(amount: Decimal) -> str:
    """The amount as given, cut to a readable length for an error message."""
    text = str(amount)
    return text if len(text) <= 40 else text[:20] + "..." + text[-12:]
