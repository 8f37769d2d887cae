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
    """An amount that cannot be compared exactly; ``problem`` says why without the value (for messages
    that must not show it)."""

    def __init__(self, message: str, problem: str):
        self.problem = problem
        super().__init__(message)


def to_cents(value: Decimal | int | str) -> int:
    """Dollars to integer cents; MoneyError for fractions of a cent or huge values.

    Exact at any size: the digits are read from the Decimal itself, never through
    Decimal arithmetic (which rounds to 28 digits, so 1.00000000000000000000000000001
    would pass as 1.00) nor a conversion to int (1e999999999 would build a billion digits).
    """
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise MoneyError(f"'{value}' is not an amount; give dollars with at most two decimals, e.g. 61.90",
                         "is not a number") from None
    if not amount.is_finite():
        raise MoneyError("an amount must be a finite number", "is not a finite number")
    sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite
    if -2 <= exponent <= 0 and len(digits) + exponent <= 13:
        # The common case (10.00, 123.4, 7): whole cents, at most 15 digits of them, so below 10**15 <
        # 2**53, and scaleb exact (far below the context's 28 digits). A third of the general path's time.
        return int(amount.scaleb(2))
    shift = exponent + 2  # the power of ten of the last digit, counted in cents
    if shift < 0:
        if any(digits[shift:]):
            raise MoneyError(f"{_short(amount)} has a fraction of a cent; amounts have at most two decimals",
                             "has a fraction of a cent")
        digits, shift = digits[:shift], 0
    significant = "".join(map(str, digits)).lstrip("0")
    if not significant:
        return 0
    if len(significant) + shift > _MAX_DIGITS:
        raise MoneyError(f"{_short(amount)} is too large to compare exactly", "is too large to compare exactly")
    whole: int = int(significant) * 10**shift
    if whole > MAX_CENTS:
        raise MoneyError(f"{_short(amount)} is too large to compare exactly", "is too large to compare exactly")
    return -whole if sign else whole


def _short(amount: Decimal) -> str:
    """The amount as given, cut to a readable length for an error message."""
    text = str(amount)
    return text if len(text) <= 40 else text[:20] + "..." + text[-12:]


def format_amount(value: Decimal | int | float | str | None) -> str:
    """Money as people read and paste it: two decimals (``61.9`` -> ``61.90``, ``351`` -> ``351.00``),
    more only when the value really has them (never rounded away); ``?`` when unknown; a value that is
    not a number as it is."""
    if value is None:
        return "?"
    if isinstance(value, bool):
        return str(value)
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        return str(value)
    if not amount.is_finite():
        return str(value)
    try:
        cents = amount.quantize(_CENT)
    except InvalidOperation:  # more digits than the context holds: shown as they are
        return f"{amount:f}"
    return f"{cents if cents == amount else amount:f}"


_CENT = Decimal("0.01")
