"""to_cents' shortcut for ordinary amounts gives exactly what the general digit-by-digit path gives."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.money import MAX_CENTS, MoneyError, to_cents


def _slow(value: Decimal) -> int:
    """The general path, written out: the digits read from the Decimal itself."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    cents = int("".join(map(str, digits)) or "0") * 10 ** (exponent + 2) if exponent >= -2 else None
    assert cents is not None
    return -cents if sign else cents


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1), st.sampled_from([-2, -1, 0]))
def test_whole_cents_up_to_fifteen_digits_take_the_shortcut_exactly(units: int, exponent: int) -> None:
    """Amounts of at most 15 digits with 0-2 decimals: the same cents as counting the digits."""
    value = Decimal(units).scaleb(exponent)
    if abs(_slow(value)) > MAX_CENTS:
        with pytest.raises(MoneyError):
            to_cents(value)
    else:
        assert to_cents(value) == _slow(value)


@pytest.mark.parametrize(("text", "cents"), [
    ("0.00", 0), ("-0.00", 0), ("89.76", 8976), ("-12.5", -1250), ("7", 700), ("1.10", 110),
    ("999999999999.99", 99999999999999), ("90071992547409.91", 9007199254740991)])
def test_ordinary_and_boundary_amounts(text: str, cents: int) -> None:
    """Typical amounts, a negative one, a whole one and the largest exact one."""
    assert to_cents(Decimal(text)) == cents


def test_what_the_shortcut_does_not_take_is_still_refused() -> None:
    """A fraction of a cent, 28+ digit fractions and amounts past 2**53 cents still raise."""
    for text in ("1.001", "1.00000000000000000000000000001", "90071992547409.92", "1E+20"):
        with pytest.raises(MoneyError):
            to_cents(Decimal(text))
